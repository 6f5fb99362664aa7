#!/bin/bash
# tests/tools/hostile.sh - tally on input made to hurt it (issue 13): a dump that is a FIFO, a
# dump whose module (or that module's debug file) is a FIFO, zstd bombs, and names holding
# terminal controls. tally must not hang or balloon, must say what is wrong in one line, and
# must never write a control byte from a dump or a binary to the terminal, in any output.
. "$top_srcdir/tests/preload/common.sh"
tally=$top_builddir/tools/tally
golden=$top_builddir/tests/tools/golden
evil_src=$top_builddir/tests/tools/evil_names
[ -x "$tally" ] && [ -x "$golden" ] && [ -x "$evil_src" ] || hard_error "tally or the test programs are not built"
need objcopy binutils

"$tally" run --leaks --lib "$TALLY_LIB" -o "$tmp/good.tly" -- "$golden" >/dev/null 2>&1 ||
    fatal "could not make a dump"
zstd -dcq "$tmp/good.tly" >"$tmp/good.txt" || fatal "the dump does not decompress"

# limited LABEL SECS CMD...: runs CMD (stdout, stderr to $tmp/LABEL.{out,err}); its status in
# rc, its peak RSS in KiB in rss; fails the test if it takes longer than SECS.
limited() {
    local label=$1 secs=$2
    shift 2
    read -r rc rss < <(/usr/bin/python3 - "$secs" "$tmp/$label.out" "$tmp/$label.err" "$@" <<'PY'
import resource, subprocess, sys
secs, out, err, cmd = float(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4:]
with open(out, "wb") as o, open(err, "wb") as e:
    try:
        rc = subprocess.run(cmd, stdout=o, stderr=e, stdin=subprocess.DEVNULL, timeout=secs).returncode
    except subprocess.TimeoutExpired:
        rc = 124
print(rc, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
PY
)
    [ "$rc" = 124 ] && fail "$label: still running after ${secs}s (a hang)"
}

one_line() { # LABEL PATTERN: the run failed with status 2 and one line on stderr matching it
    [ "$rc" = 2 ] || fail "$1: exit status $rc, want 2"
    [ "$(wc -l <"$tmp/$1.err")" = 1 ] || fail "$1: want one line on stderr: $(cat "$tmp/$1.err")"
    grep -q -- "$2" "$tmp/$1.err" || fail "$1: '$(cat "$tmp/$1.err")' does not say '$2'"
}

# 1. A FIFO as the dump: refused at once, never opened for a blocking read.
mkfifo "$tmp/fifo.tly"
limited fifo_dump 10 "$tally" report "$tmp/fifo.tly"
one_line fifo_dump 'not a regular file (a FIFO)'

# 2. A module path that is a FIFO: symbolization skips it, the report is written.
mkfifo "$tmp/fifo.so"
awk -v p="$tmp/fifo.so" '/^module / && !done {sub(/ path=[^ ]*/, " path=" p); done=1} {print}' \
    "$tmp/good.txt" >"$tmp/fifo_module.txt"
grep -q "path=$tmp/fifo.so" "$tmp/fifo_module.txt" || fatal "could not plant the FIFO module"
limited fifo_module 20 "$tally" report "$tmp/fifo_module.txt"
[ "$rc" = 0 ] || fail "fifo_module: exit status $rc: $(cat "$tmp/fifo_module.err")"

# 3. The same care for debug files: the module is a stripped copy of golden whose
# .gnu_debuglink and build-id debug file are FIFOs (elfutils opens those itself).
gpath=$(grep -o "^module [^\n]*path=[^ ]*golden\b[^ ]*" "$tmp/good.txt" | head -1 | sed 's/.* path=//')
[ -n "$gpath" ] || fatal "no module record for golden in the dump"
bid=$(grep "^module .*path=$gpath" "$tmp/good.txt" | head -1 | sed 's/.* build_id=\([0-9a-f]*\).*/\1/')
objcopy --strip-debug --strip-unneeded "$golden" "$tmp/golden.stripped" || fatal "objcopy failed"
: >"$tmp/golden.debug"
objcopy --add-gnu-debuglink="$tmp/golden.debug" "$tmp/golden.stripped" || fatal "objcopy failed"
rm "$tmp/golden.debug" && mkfifo "$tmp/golden.debug"
mkdir -p "$tmp/.debug" "$tmp/dbg/.build-id/${bid:0:2}" && mkfifo "$tmp/.debug/golden.debug"
mkfifo "$tmp/dbg/.build-id/${bid:0:2}/${bid:2}.debug"
sed "s|path=$gpath|path=$tmp/golden.stripped|" "$tmp/good.txt" >"$tmp/fifo_debug.txt"
limited fifo_debug 20 "$tally" report --debug-dir "$tmp/dbg" "$tmp/fifo_debug.txt"
[ "$rc" = 0 ] || fail "fifo_debug: exit status $rc: $(cat "$tmp/fifo_debug.err")"
# (no symbol is left in the stripped copy: its frames show as module+offset, and its stacks end
# at its main, below which libc's start-up is hidden)
grep -q '^   at golden.stripped+0x' "$tmp/fifo_debug.out" ||
    fail "fifo_debug: the stripped module's frames are missing: $(head -20 "$tmp/fifo_debug.out")"
sed "s|path=$gpath|path=$tmp/nonexistent|" "$tmp/good.txt" >"$tmp/fifo_buildid.txt"
limited fifo_buildid 20 "$tally" report --debug-dir "$tmp/dbg" "$tmp/fifo_buildid.txt"
[ "$rc" = 0 ] || fail "fifo_buildid: exit status $rc: $(cat "$tmp/fifo_buildid.err")"

# 4. zstd bombs: 2 GB of zeros in a 60 KB file, bare and behind a dump's first line. Rejected
# in a moment and in little memory, with the option that reads larger dumps named; with the
# option, rejected at its bound.
head -c 2000000000 /dev/zero | zstd -q -19 -c >"$tmp/bomb.tly"
{ printf 'tally-dump 1\n'; head -c 2000000000 /dev/zero; } | zstd -q -19 -c >"$tmp/bomb_header.tly"
limited bomb 20 "$tally" report "$tmp/bomb.tly"
one_line bomb 'zstd data that is not a tallymalloc dump'
[ "$rss" -lt 100000 ] || fail "bomb: $rss KiB of memory"
limited bomb_header 20 "$tally" report "$tmp/bomb_header.tly"
one_line bomb_header 'decompresses to more than 64 MiB.*--max-text'
[ "$rss" -lt 300000 ] || fail "bomb_header: $rss KiB of memory"
limited bomb_raised 20 "$tally" leaks --max-text 128M "$tmp/bomb_header.tly"
one_line bomb_raised 'decompresses to more than 128 MiB'
limited bad_max 5 "$tally" report --max-text lots "$tmp/good.tly"
one_line bad_max '--max-text lots: want a size'
limited big_ok 20 "$tally" report --max-text 1G "$tmp/good.tly"
[ "$rc" = 0 ] || fail "--max-text 1G on a good dump: status $rc: $(cat "$tmp/big_ok.err")"

# 5. Control bytes. A dump whose program and module path hold ESC sequences, BEL, CR and a line
# break (as %XX escapes, valid in the format), and a binary whose function symbol holds them:
# no output of any command may carry a control byte, a C1 control or a byte that is not UTF-8.
cp "$evil_src" "$tmp/evil"
/usr/bin/python3 - "$tmp/evil" <<'PY' || fatal "could not rename the symbol"
import sys
p = sys.argv[1]
d = open(p, "rb").read()
old, new = b"evilQ_0_pwnedRSfakeQline", b"evil\x1b]0;pwned\x07\nfake\x9bline"
assert len(old) == len(new) and d.count(old) >= 1, d.count(old)
open(p, "wb").write(d.replace(old, new))
PY
"$tally" run --leaks --lib "$TALLY_LIB" -o "$tmp/evil.tly" -- "$tmp/evil" >/dev/null 2>&1 ||
    fatal "could not profile the renamed program"
zstd -dcq "$tmp/evil.tly" |
    sed '1,/^header /s/ program=[^ ]*/ program=%1B]0;title%07%1B[2J%0D%0Afake%C2%9Bline/' |
    awk '/^module .*path=[^ ]*libc\.so/ && !done {sub(/ path=/, " path=%1B[31m%0A"); done=1} {print}' \
        >"$tmp/evil.txt"
grep -q 'program=%1B' "$tmp/evil.txt" && grep -q 'path=%1B' "$tmp/evil.txt" ||
    fatal "could not plant the names"
i=0
for cmd in "report" "report --json" "leaks" "leaks --json" "leaks --kinds all" "flame" \
    "flame --folded --measure leaked" "flame --json" "html"; do
    i=$((i + 1))
    # shellcheck disable=SC2086  # cmd is a command and its options
    limited "show$i" 60 "$tally" $cmd "$tmp/evil.txt"
    [ "$rc" = 0 ] || fail "tally $cmd on the crafted dump: status $rc: $(cat "$tmp/show$i.err")"
    files+=("$tmp/show$i.out" "$tmp/show$i.err")
    names+=("tally $cmd: stdout" "tally $cmd: stderr")
done
limited diff_text 60 "$tally" diff "$tmp/evil.txt" "$tmp/evil.tly"
limited diff_json 60 "$tally" diff --json "$tmp/evil.txt" "$tmp/evil.tly"
files+=("$tmp/diff_text.out" "$tmp/diff_text.err" "$tmp/diff_json.out")
# the JSON outputs parse, and carry the planted name as text
for j in "$tmp/show2.out" "$tmp/show4.out" "$tmp/show8.out" "$tmp/diff_json.out"; do
    /usr/bin/python3 -c 'import json, sys; json.loads(open(sys.argv[1], "rb").read().decode("utf-8"))' "$j" ||
        fail "$j: not JSON"
done
grep -q 'evil' "$tmp/show2.out" || fail "report --json lost the renamed function"
names+=("tally diff" "tally diff: stderr" "tally diff --json")
grep -q 'evil\\x1b\]0;pwned\\x07\\nfake\\x9bline' "$tmp/show1.out" ||
    fail "the renamed function is not shown escaped: $(grep -a evil "$tmp/show1.out" | head -3)"
/usr/bin/python3 - "${files[@]}" -- "${names[@]}" <<'PY' || fail "control bytes reached the output"
import re, sys
args = sys.argv[1:]
k = args.index("--")
files, names = args[:k], args[k + 1:]
bad = re.compile(rb"[\x00-\x08\x0b-\x1f\x7f]")
ok = True
for f, n in zip(files, names):
    data = open(f, "rb").read()
    m = bad.search(data)
    try:
        text = data.decode("utf-8")
        c1 = [c for c in text if 0x80 <= ord(c) < 0xa0]
    except UnicodeDecodeError as e:
        print("%s: not UTF-8 at byte %d" % (n, e.start)); ok = False; continue
    if m or c1:
        at = m.start() if m else text.index(c1[0])
        print("%s: control byte in %r" % (n, data[max(0, at - 40):at + 20])); ok = False
sys.exit(0 if ok else 1)
PY
# The SVG is XML: it must still parse.
/usr/bin/python3 -c 'import sys, xml.etree.ElementTree as E; E.parse(sys.argv[1])' "$tmp/show6.out" ||
    fail "the flame graph of the crafted dump is not well-formed XML"

# 6. An error that quotes the dump: a CRLF dump's version line shows its \r.
printf 'tally-dump 1\r\nheader x=1\r\nend\r\n' >"$tmp/crlf.tly"
limited crlf 10 "$tally" report "$tmp/crlf.tly"
one_line crlf 'format version 1\\r; this tally reads versions 1 to 3'
printf 'tally-dump \0337\033[2J\n' >"$tmp/esc_version.tly"
limited esc_version 10 "$tally" report "$tmp/esc_version.tly"
one_line esc_version 'format version \\x1b7\\x1b\[2J'
# 7. Output that cannot be written (a full disk): exit 1 and one line saying what failed, for
# every command; a page or an export written with -o is not left half-written.
for cmd in report leaks "flame --folded" "export --format pprof" "export --format massif" html; do
    label=full_${cmd%% *}
    "$tally" $cmd "$tmp/good.tly" >/dev/full 2>"$tmp/$label.err"
    rc=$?
    [ "$rc" = 1 ] || fail "$label: exit status $rc, want 1"
    [ "$(wc -l <"$tmp/$label.err")" = 1 ] && grep -q "No space left on device" "$tmp/$label.err" ||
        fail "$label: want one line naming the full disk: $(cat "$tmp/$label.err")"
done
"$tally" diff "$tmp/good.tly" "$tmp/good.tly" >/dev/full 2>"$tmp/full_diff.err" &&
    fail "diff to /dev/full succeeded"
grep -q "cannot write the output: No space left on device" "$tmp/full_diff.err" ||
    fail "diff to /dev/full: $(cat "$tmp/full_diff.err")"

# 8. tally diff of two programs, or of two builds of one, warns that few sites can match.
"$tally" run --lib "$TALLY_LIB" -o "$tmp/true.tly" -- /bin/true 2>/dev/null || fatal "no dump of true"
"$tally" diff "$tmp/true.tly" "$tmp/good.tly" >/dev/null 2>"$tmp/diffprog.err" ||
    fail "diff of two programs failed: $(cat "$tmp/diffprog.err")"
grep -q "warning: OLD is a dump of true and NEW of golden" "$tmp/diffprog.err" ||
    fail "diff of two programs does not warn: $(cat "$tmp/diffprog.err")"
/usr/bin/python3 - "$golden" "$tmp/golden" "$bid" <<'PY' || fatal "could not give golden another build-id"
import sys
data, old = open(sys.argv[1], "rb").read(), bytes.fromhex(sys.argv[3])
assert data.count(old) == 1
open(sys.argv[2], "wb").write(data.replace(old, bytes(range(20))))
PY
chmod +x "$tmp/golden"
"$tally" run --leaks --lib "$TALLY_LIB" -o "$tmp/rebuilt.tly" -- "$tmp/golden" >/dev/null 2>&1 ||
    fatal "no dump of the rebuilt golden"
"$tally" diff "$tmp/good.tly" "$tmp/rebuilt.tly" >/dev/null 2>"$tmp/diffbuild.err" ||
    fail "diff of two builds failed: $(cat "$tmp/diffbuild.err")"
grep -q "warning: OLD and NEW are of two builds of golden" "$tmp/diffbuild.err" ||
    fail "diff of two builds does not warn: $(cat "$tmp/diffbuild.err")"
"$tally" diff "$tmp/good.tly" "$tmp/good.tly" >/dev/null 2>"$tmp/diffsame.err" &&
    [ ! -s "$tmp/diffsame.err" ] || fail "diff of a dump with itself: $(cat "$tmp/diffsame.err")"
finish
