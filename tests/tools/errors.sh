#!/bin/bash
# tests/tools/errors.sh - bad input to tally: files that are not dumps, or broken ones
# (truncated, another version, corrupted fields and compressed data, dangling references), and
# malformed command lines. Each gets exactly one line on stderr that names the problem, exit
# status 2, nothing on stdout, and no crash or hang.
. "$top_srcdir/tests/preload/common.sh"
tally=$top_builddir/tools/tally
[ -x "$tally" ] || hard_error "$tally is not built"

# A real dump to break: golden's, as text and compressed.
"$tally" run --leaks --lib "$TALLY_LIB" -o "$tmp/good.tly" -- "$top_builddir/tests/tools/golden" \
    >/dev/null 2>&1 || fatal "could not make a dump"
zstd -dcq "$tmp/good.tly" >"$tmp/good.txt" || fatal "the dump does not decompress"

bad() { # LABEL PATTERN FILE: tally report FILE fails with one line matching PATTERN
    local label=$1 pattern=$2 file=$3
    timeout 20 "$tally" report "$file" >"$tmp/o.txt" 2>"$tmp/e.txt"
    local rc=$?
    [ "$rc" = 2 ] || fail "$label: exit status $rc, want 2"
    [ -s "$tmp/o.txt" ] && fail "$label: printed on stdout: $(head -3 "$tmp/o.txt")"
    [ "$(wc -l <"$tmp/e.txt")" = 1 ] || fail "$label: want one line on stderr, got: $(cat "$tmp/e.txt")"
    grep -q -- "$pattern" "$tmp/e.txt" || fail "$label: '$(cat "$tmp/e.txt")' does not say '$pattern'"
}

bad missing 'No such file' "$tmp/nonexistent.tly"
bad directory 'not a regular file' "$tmp"
: >"$tmp/empty"
bad empty 'empty file' "$tmp/empty"
head -c 4096 /dev/urandom | tr -d '\050' >"$tmp/random" # no zstd magic
bad random 'not a tallymalloc dump' "$tmp/random"
bad text 'not a tallymalloc dump' "$top_srcdir/README.md"
sed '1s/.*/tally-dump 4/' "$tmp/good.txt" >"$tmp/v4"
bad version 'version 4; this tally reads versions 1 to 3' "$tmp/v4"
head -c $(($(wc -c <"$tmp/good.txt") - 200)) "$tmp/good.txt" >"$tmp/cut.txt"
bad truncated-text 'truncated' "$tmp/cut.txt"
head -c $(($(wc -c <"$tmp/good.tly") / 2)) "$tmp/good.tly" >"$tmp/cut.zst"
bad truncated-zstd 'truncated\|broken zstd' "$tmp/cut.zst"
{ head -c 4 "$tmp/good.tly"; head -c 2000 /dev/urandom; } >"$tmp/badzstd"
bad corrupt-zstd 'broken zstd\|truncated' "$tmp/badzstd"
sed '0,/^site .*alloc_count/s/alloc_count=[0-9]*/alloc_count=12x/' "$tmp/good.txt" >"$tmp/num"
bad bad-number ':[0-9]*: alloc_count=12x is not a number' "$tmp/num"
sed '0,/^site .* frame=[1-9]/s/ frame=[0-9]*/ frame=99999/' "$tmp/good.txt" >"$tmp/dangling"
bad dangling-stack 'names frame 99999, which is not defined' "$tmp/dangling"
awk '/^frame /{n++} n==2 && /^frame /{print "frame id=9 parent=0 ip=0x1"; next} {print}' "$tmp/good.txt" >"$tmp/order"
bad frame-order 'frame 9 out of order' "$tmp/order"
awk '/^frame /{n++} n==2 && /^frame /{print "frame parent=7 ip=0x1"; next} {print}' "$tmp/good.txt" >"$tmp/parent"
bad frame-parent 'frame 2 names parent 7, which does not come before it' "$tmp/parent"
sed '3s/^/frobnicate x=1\n/' "$tmp/good.txt" >"$tmp/tag"
bad unknown-record "unknown record 'frobnicate'" "$tmp/tag"
sed '0,/^block /s/ site=[0-9]*/ site=4000000000/' "$tmp/good.txt" >"$tmp/block"
bad dangling-block 'names site 4000000000, which is not defined' "$tmp/block"
sed '0,/^block /s/ kind=[a-z]*/ kind=misplaced/' "$tmp/good.txt" >"$tmp/kind"
bad bad-kind 'kind=misplaced is not one of the values' "$tmp/kind"
sed '0,/^block /s/ kind=[a-z]*//' "$tmp/good.txt" >"$tmp/nokind"
bad missing-kind 'lacks a kind, but totals say the leak check ran' "$tmp/nokind"
sed 's/ heuristic=[a-z]*//; 0,/^block \(.*\)$/s//block \1 heuristic=hunch/' "$tmp/good.txt" >"$tmp/heur"
bad bad-heuristic 'heuristic=hunch is not one of the values' "$tmp/heur"
sed '0,/^module /s/ path=[^ ]*/ path=%zz/' "$tmp/good.txt" >"$tmp/esc"
bad bad-escape 'broken %XX escape' "$tmp/esc"

# The reader must ignore fields it does not know (FORMAT.md): this one still reads.
sed 's/^site /site future_field=7 /' "$tmp/good.txt" >"$tmp/newer"
"$tally" report "$tmp/newer" >/dev/null 2>"$tmp/e.txt" || fail "an unknown field was refused: $(cat "$tmp/e.txt")"

usage() { # LABEL PATTERN ARGS...: a command-line error, one line, exit 2
    local label=$1 pattern=$2
    shift 2
    timeout 20 "$tally" "$@" >"$tmp/o.txt" 2>"$tmp/e.txt" </dev/null
    local rc=$?
    [ "$rc" = 2 ] || fail "$label: exit status $rc, want 2"
    [ "$(wc -l <"$tmp/e.txt")" = 1 ] || fail "$label: want one line on stderr, got: $(cat "$tmp/e.txt")"
    grep -q -- "$pattern" "$tmp/e.txt" || fail "$label: '$(cat "$tmp/e.txt")' does not say '$pattern'"
}
usage no-file 'which dump' report
usage two-files 'one dump at a time' report "$tmp/good.tly" "$tmp/good.tly"
usage bad-sort '--sort bogus: want peak' report --sort bogus "$tmp/good.tly"
usage bad-top '--top x: want a number' report --top x "$tmp/good.tly"
usage bad-exitcode '--error-exitcode 0' leaks --error-exitcode 0 "$tmp/good.tly"
usage bad-kinds '--kinds lost: want a list of definite' leaks --kinds lost "$tmp/good.tly"
usage empty-kind '--kinds definite,: want a list' leaks --kinds definite, "$tmp/good.tly"
usage kinds-report '--kinds: an option of leaks' report --kinds all "$tmp/good.tly"
usage run-exitcode '--error-exitcode: an option of --leaks' run --error-exitcode 3 -- true
usage supp-report '--suppressions: an option of leaks' report --suppressions x "$tmp/good.tly"
usage run-supp '--suppressions: an option of --leaks' run --suppressions x -- true
# Broken suppression files: one line naming the file and the line.
usage supp-missing "nonexistent.supp: cannot read the suppressions" leaks --suppressions "$tmp/nonexistent.supp" "$tmp/good.tly"
printf 'leak:ok\nwhat is this\n' >"$tmp/junk.supp"
usage supp-junk 'junk.supp:2: want leak:PATTERN' leaks --suppressions "$tmp/junk.supp" "$tmp/good.tly"
printf '{\n  name\n  Memcheck:Leak\n  fun:main\n' >"$tmp/open.supp"
usage supp-open 'open.supp:4: a block that does not end' leaks --suppressions "$tmp/open.supp" "$tmp/good.tly"
printf '{\n  name\n  Memcheck:Leak\n  match-leak-kinds: lost\n  fun:main\n}\n' >"$tmp/kinds.supp"
usage supp-kinds 'kinds.supp:4: match-leak-kinds: want definite' leaks --suppressions "$tmp/kinds.supp" "$tmp/good.tly"
usage run-supp-missing '--suppressions /nonexistent' run --leaks --suppressions /nonexistent -- true
usage unknown-option 'unknown option --frob' report --frob "$tmp/good.tly"
usage unknown-command "no command 'frob'" frob
usage flame-measure '--measure bogus: want peak, live, allocated' flame --measure bogus "$tmp/good.tly"
usage html-json '--json: not an option of html' html --json "$tmp/good.tly"
usage flame-both '--folded and --json' flame --folded --json "$tmp/good.tly"
usage diff-one 'want two dumps' diff "$tmp/good.tly"
usage diff-sort '--sort temporary: want live' diff --sort temporary "$tmp/good.tly" "$tmp/good.tly"
usage run-nothing 'which program' run
usage run-sample '--sample 0' run --sample 0 -- true
usage run-both '--all and --sample' run --all --sample 1M -- true
"$tally" >/dev/null 2>"$tmp/e.txt"
[ $? = 2 ] && grep -q '^usage: tally' "$tmp/e.txt" || fail "tally without a command: want its usage and 2"
for c in run report leaks flame diff html; do
    "$tally" help "$c" | grep "^usage: tally $c" >/dev/null || fail "tally help $c"
    "$tally" "$c" --help | grep "^usage: tally $c" >/dev/null || fail "tally $c --help"
done
"$tally" --help | grep "^usage: tally COMMAND" >/dev/null || fail "tally --help"

# leaks on a dump that has no list of live blocks (sample mode): one line, exit 2.
"$tally" run --lib "$TALLY_LIB" -o "$tmp/sampled.tly" -- "$top_builddir/tests/tools/golden" >/dev/null 2>&1
timeout 20 "$tally" leaks "$tmp/sampled.tly" >"$tmp/o.txt" 2>"$tmp/e.txt"
[ $? = 2 ] && [ "$(wc -l <"$tmp/e.txt")" = 1 ] && grep -q 'no list of live blocks: it is a sample-mode dump' "$tmp/e.txt" ||
    fail "leaks on a sample-mode dump: $(cat "$tmp/e.txt")"
timeout 20 "$tally" flame --measure leaked "$tmp/sampled.tly" >"$tmp/o.txt" 2>"$tmp/e.txt"
[ $? = 2 ] && [ "$(wc -l <"$tmp/e.txt")" = 1 ] && [ ! -s "$tmp/o.txt" ] ||
    fail "flame --measure leaked on a sample-mode dump: $(cat "$tmp/e.txt")"
# A broken NEW in diff: one line naming it.
timeout 20 "$tally" diff "$tmp/good.tly" "$tmp/cut.txt" >"$tmp/o.txt" 2>"$tmp/e.txt"
[ $? = 2 ] && [ "$(wc -l <"$tmp/e.txt")" = 1 ] && grep -q 'cut.txt: truncated' "$tmp/e.txt" ||
    fail "diff with a truncated NEW: $(cat "$tmp/e.txt")"
# --error-exitcode: N with leaks, 0 without.
"$tally" leaks --error-exitcode 3 "$tmp/good.tly" >/dev/null
[ $? = 3 ] || fail "--error-exitcode 3 with leaks did not exit 3"
"$tally" run --leaks --lib "$TALLY_LIB" -o "$tmp/clean.tly" -- "$top_builddir/tests/tools/golden" clean >/dev/null 2>&1
"$tally" leaks --error-exitcode 3 "$tmp/clean.tly" >"$tmp/o.txt"
[ $? = 0 ] || fail "--error-exitcode with no leaks did not exit 0: $(cat "$tmp/o.txt")"
grep -qx 'All heap blocks were freed -- no leaks are possible' "$tmp/o.txt" ||
    fail "no-leak summary: $(cat "$tmp/o.txt")"
finish
