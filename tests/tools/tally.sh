#!/bin/bash
# tests/tools/tally.sh - golden files of tally's output: `tally report` and `tally leaks`, as
# text and as JSON, on dumps that `tally run --leaks` makes of tests/tools/golden.c (C, -O1 -g)
# and tests/tools/golden_cxx.cpp (C++, -O2 -g: inlined frames, demangled names), normalized by
# tests/tools/normalize.py. Then a stripped copy of golden: without its debug file every frame
# of the program is module+offset, with it (--debug-dir) the output equals the unstripped one.
# GOLDEN_UPDATE=1 rewrites the golden files instead of comparing.
. "$top_srcdir/tests/preload/common.sh"
need objcopy binutils
tally=$top_builddir/tools/tally
golden_dir=$top_srcdir/tests/tools/expected
export PYTHONPATH=$top_srcdir/tests/prof
for f in "$tally" "$top_builddir/tests/tools/golden" "$top_builddir/tests/tools/golden_cxx"; do
    [ -x "$f" ] || hard_error "$f is not built"
done

profile() { # NAME PROGRAM ARGS...: tally run --leaks, the dump in $tmp/NAME.tly
    local name=$1
    shift
    "$tally" run --leaks --lib "$TALLY_LIB" -o "$tmp/$name.tly" -- "$@" >"$tmp/$name.out" \
        2>"$tmp/$name.err" || fail "tally run $name failed: $(cat "$tmp/$name.err")"
    [ -s "$tmp/$name.tly" ] || fail "tally run $name wrote no $tmp/$name.tly"
}

check() { # GOLDEN KIND ARGS...: tally ARGS..., normalized, against golden/GOLDEN
    local g=$1 kind=$2
    shift 2
    "$tally" "$@" >"$tmp/raw" 2>"$tmp/err" || fail "tally $*: exit $?: $(cat "$tmp/err")"
    [ -s "$tmp/err" ] && fail "tally $* printed on stderr: $(cat "$tmp/err")"
    /usr/bin/python3 "$top_srcdir/tests/tools/normalize.py" "$kind" <"$tmp/raw" >"$tmp/got" ||
        { fail "tally $*: output not normalizable"; return; }
    if [ "${GOLDEN_UPDATE:-}" = 1 ]; then
        cp "$tmp/got" "$golden_dir/$g"
        say "updated $g"
    elif ! diff -u "$golden_dir/$g" "$tmp/got" >"$tmp/diff"; then
        fail "tally $* differs from $g:"
        head -60 "$tmp/diff" >&2
    fi
}

profile golden "$top_builddir/tests/tools/golden"
grep -qx 'golden done' "$tmp/golden.out" || fail "golden's output went missing under tally run"
check golden.report.txt text report "$tmp/golden.tly"
check golden.report-count.txt text report --sort count --top 4 "$tmp/golden.tly"
check golden.report-live.txt text report --sort live --top 3 "$tmp/golden.tly"
check golden.report-hist.txt text report --histograms --sort count --top 2 "$tmp/golden.tly"
check golden.tree.txt text report --tree "$tmp/golden.tly"
check golden.tree-bottom-up.txt text report --tree=bottom-up --sort count --threshold 2 "$tmp/golden.tly"
check golden.function.txt text report --function lose_list --sort count "$tmp/golden.tly"
check golden.report.json json report --json --top 0 "$tmp/golden.tly"
check golden.leaks.txt text leaks "$tmp/golden.tly"
check golden.leaks.json json leaks --json "$tmp/golden.tly"

check golden.flame.folded text flame --folded "$tmp/golden.tly"
check golden.flame-leaked.folded text flame --folded --measure leaked "$tmp/golden.tly"
check golden.flame.json json flame --json "$tmp/golden.tly"
check golden.flame-inverted-count.folded text flame --folded --inverted --measure count "$tmp/golden.tly"
# Every measure the flame graph and the report take adds up to the dump's own figures: the leak
# kinds to the sites' kind bytes (memcheck's kinds, compared with valgrind in tests/leaks), slack
# to granted less requested.
for m in definite indirect possible reachable slack pinned; do
    "$tally" flame --folded --measure "$m" "$tmp/golden.tly" >"$tmp/m.folded" ||
        fail "tally flame --measure $m failed"
    /usr/bin/python3 - "$m" "$tmp/m.folded" "$tmp/golden.tly" <<'PY' || fail "flame --measure $m does not add up"
import sys
import dumpcheck
m, folded, dump = sys.argv[1:]
got = sum(int(l.rsplit(" ", 1)[1]) for l in open(folded) if l.strip())
sites = [s for s in dumpcheck.parse(dump)["site"] if s["id"] != 0]
key = {"definite": "definite_bytes", "indirect": "indirect_bytes", "possible": "possible_bytes",
       "reachable": "reachable_bytes", "pinned": "pinned_bytes"}
want = sum(s.get(key[m], 0) if m in key else max(s["granted_bytes"] - s["alloc_bytes"], 0)
           for s in sites)
print("%s: %d in the flame graph, %d in the dump" % (m, got, want))
sys.exit(0 if got == want and (want > 0 or m == "possible") else 1)
PY
done
"$tally" report --sort slack --top 1 "$tmp/golden.tly" >"$tmp/slack.txt" || fail "report --sort slack failed"
grep -q '^#1 7.81 KiB slack' "$tmp/slack.txt" || fail "report --sort slack: parse_records' 500 x 16 B of slack is not first: $(sed -n '/^#1/p' "$tmp/slack.txt")"
"$tally" run --all --lib "$TALLY_LIB" -o "$tmp/nokinds.tly" -- "$top_builddir/tests/tools/golden" >/dev/null 2>&1
out=$("$tally" report --sort definite "$tmp/nokinds.tly" 2>&1 >/dev/null)
[ $? = 2 ] && [[ $out == *"needs a dump with the leak check's kinds"* ]] ||
    fail "report --sort definite without the leak check: $out"
# --ignore-fn (massif's): what parse_records allocates directly is left out everywhere.
"$tally" report --ignore-fn parse_records --top 0 "$tmp/golden.tly" >"$tmp/ign.txt" ||
    fail "report --ignore-fn failed"
grep -q '^  allocations  183, ' "$tmp/ign.txt" || fail "--ignore-fn parse_records: $(sed -n 2p "$tmp/ign.txt"), want 683 - 500 = 183 allocations"
grep -q 'parse_records' "$tmp/ign.txt" && fail "--ignore-fn parse_records still shows it"
"$tally" flame --folded --measure count --ignore-fn 'parse_*' "$tmp/golden.tly" | grep -q parse_records &&
    fail "flame --ignore-fn 'parse_*' still shows parse_records"
"$tally" diff --ignore-fn parse_records "$tmp/golden.tly" "$tmp/golden.tly" >/dev/null ||
    fail "diff --ignore-fn failed"
out=$("$tally" leaks --ignore-fn main "$tmp/golden.tly" 2>&1 >/dev/null)
[ $? = 2 ] && [[ $out == *"--ignore-fn: leaks and errors"* ]] || fail "leaks --ignore-fn: $out"
# The SVG: well-formed, the whole at the root, a frame per function with its share.
"$tally" flame --measure allocated "$tmp/golden.tly" >"$tmp/g.svg" || fail "tally flame failed"
/usr/bin/python3 - "$tmp/g.svg" "$tmp/golden.tly" <<'PY' || fail "the flame graph is not right"
import sys, xml.dom.minidom
import dumpcheck
svg = xml.dom.minidom.parse(sys.argv[1])
titles = [t.firstChild.data for t in svg.getElementsByTagName("title")]
total = sum(s["alloc_bytes"] for s in dumpcheck.parse(sys.argv[2])["site"] if s["id"] != 0)
print("root:", titles[0], "- allocated in the dump:", total)
bad = []
if titles[0] != "all (%s KiB, 100%%)" % ("%.0f" % (total / 1024)):
    bad.append("the root is %r, want the %d bytes allocated" % (titles[0], total))
for fn in ("main", "big_blocks", "parse_records", "make_name", "grow_buffer", "lose_list"):
    if not any(t.startswith(fn + " (") for t in titles):
        bad.append("no frame for %s" % fn)
if not svg.getElementsByTagName("script"):
    bad.append("no script: not interactive")
for b in bad:
    print("FAIL:", b)
sys.exit(1 if bad else 0)
PY

# Allocator wrappers folded away: a site is named by its first frame that is not one
# (xmalloc built in, --alloc-fn globs), --raw keeps them, leaks keep whole stacks as memcheck.
wrappers=$top_builddir/tests/tools/wrappers
[ -x "$wrappers" ] || hard_error "$wrappers is not built"
profile wrappers "$wrappers"
named() { "$tally" "$@" 2>&1 | sed -n 's/^   at \([a-z_]*\) .*/\1/p' | tr '\n' ' '; }
[ "$(named report --top 2 "$tmp/wrappers.tly")" = "load my_alloc " ] ||
    fail "report does not fold xmalloc: $(named report --top 2 "$tmp/wrappers.tly")"
[ "$(named report --top 2 --alloc-fn 'my_*' "$tmp/wrappers.tly")" = "load parse " ] ||
    fail "--alloc-fn 'my_*' does not fold my_alloc: $(named report --top 2 --alloc-fn 'my_*' "$tmp/wrappers.tly")"
[ "$(named report --top 2 --raw "$tmp/wrappers.tly")" = "xmalloc xmalloc " ] ||
    fail "--raw folds: $(named report --top 2 --raw "$tmp/wrappers.tly")"
"$tally" flame --folded "$tmp/wrappers.tly" >"$tmp/wrappers.folded"
printf 'main;load 6400\nmain;parse;my_alloc 3200\n' | diff -u - "$tmp/wrappers.folded" >&2 ||
    fail "flame --folded does not fold the wrappers"
"$tally" leaks --kinds all "$tmp/wrappers.tly" | grep -q "^   at xmalloc (wrappers.c:" ||
    fail "leaks folds the wrappers (memcheck shows them)"
"$tally" html -o "$tmp/wrappers.html" "$tmp/wrappers.tly" || fail "tally html failed"
/usr/bin/python3 - "$tmp/wrappers.html" <<'PY' || fail "the page does not name the site by load with xmalloc one click away"
import json, re, sys
d = json.loads(re.search(r'<script type="application/json" id="tally-data">(.*?)</script>',
                         open(sys.argv[1]).read(), re.S).group(1))
shown = lambda st: [d["frames"][i][1] for i in st]
ok = [s for s in d["sites"] if shown(s["f"])[0].startswith("load (wrappers.c:")
      and "r" in s and shown(s["r"])[0].startswith("xmalloc (wrappers.c:")]
print("sites named by load, xmalloc in the raw stack:", len(ok))
sys.exit(0 if ok else 1)
PY
"$tally" leaks --alloc-fn x "$tmp/wrappers.tly" >/dev/null 2>&1 && fail "leaks took --alloc-fn"

# diff: from a run that frees everything to one that does not.
profile clean "$top_builddir/tests/tools/golden" clean
check golden.diff.txt text diff "$tmp/clean.tly" "$tmp/golden.tly"
check golden.diff-count.txt text diff --sort count --top 3 "$tmp/clean.tly" "$tmp/golden.tly"
check golden.diff.json json diff --json --top 5 "$tmp/clean.tly" "$tmp/golden.tly"

profile cxx "$top_builddir/tests/tools/golden_cxx"
check cxx.leaks.txt text leaks "$tmp/cxx.tly"
check cxx.leaks.json json leaks --json "$tmp/cxx.tly"
check cxx.report.txt text report --top 4 "$tmp/cxx.tly"

# A stripped copy, and its debug file where --debug-dir finds it by build-id.
objcopy --only-keep-debug "$top_builddir/tests/tools/golden" "$tmp/golden.debug"
objcopy --strip-all "$top_builddir/tests/tools/golden" "$tmp/stripped"
bid=$(readelf -n "$tmp/stripped" | sed -n 's/.*Build ID: \([0-9a-f]*\).*/\1/p')
[ -n "$bid" ] || fatal "the stripped copy has no build-id"
mkdir -p "$tmp/dbg/.build-id/${bid:0:2}"
mv "$tmp/golden.debug" "$tmp/dbg/.build-id/${bid:0:2}/${bid:2}.debug"
profile stripped "$tmp/stripped"
"$tally" leaks --kinds all "$tmp/stripped.tly" >"$tmp/bare.txt" 2>&1 || fail "tally leaks on the stripped binary failed"
grep -q 'golden\.c' "$tmp/bare.txt" && fail "file names without debug information:
$(cat "$tmp/bare.txt")"
n_frames=$(grep -c '^   \(at\|by\) stripped+0x[0-9a-f]*$' "$tmp/bare.txt")
[ "$n_frames" -ge 10 ] || fail "want the stripped program's frames as stripped+0x..., got:
$(cat "$tmp/bare.txt")"
"$tally" leaks --debug-dir "$tmp/dbg" "$tmp/stripped.tly" >"$tmp/dbg.txt" 2>&1 ||
    fail "tally leaks --debug-dir failed"
/usr/bin/python3 "$top_srcdir/tests/tools/normalize.py" text <"$tmp/dbg.txt" >"$tmp/dbg.norm"
diff -u "$golden_dir/golden.leaks.txt" "$tmp/dbg.norm" >"$tmp/diff" ||
    { fail "with its debug file the stripped program's leaks differ from the unstripped one's:"; cat "$tmp/diff" >&2; }
finish
