#!/bin/bash
# tests/tools/fuzz.sh - a short run of the dump reader's libFuzzer target (tools/fuzz_dump.c),
# built with clang's -fsanitize=fuzzer,address,undefined and seeded with real dumps (text and
# zstd): 20 seconds of mutated input must not crash, hang, leak or refuse without a message.
. "$top_srcdir/tests/preload/common.sh"
need clang clang
tally=$top_builddir/tools/tally
[ -x "$tally" ] || hard_error "$tally is not built"
libs="-ldw -lelf -lzstd -lstdc++ -lm"
clang -g -O1 -fsanitize=fuzzer,address,undefined -DDUMP_MAX_TEXT='(64u<<20)' \
    -I"$top_srcdir/tools" "$top_srcdir/tools/fuzz_dump.c" "$top_srcdir/tools/dumpfile.c" \
    "$top_srcdir/tools/symbols.c" "$top_srcdir/tools/pyview.c" $libs -o "$tmp/fuzz_dump" 2>"$tmp/cc.err" ||
    hard_error "cannot build the fuzz target (Debian packages clang libclang-rt-14-dev): $(head -5 "$tmp/cc.err")"
mkdir -p "$tmp/corpus"
"$tally" run --leaks --lib "$TALLY_LIB" -o "$tmp/corpus/golden.tly" -- "$top_builddir/tests/tools/golden" \
    >/dev/null 2>&1 || fatal "no seed dump"
"$tally" run --lib "$TALLY_LIB" -o "$tmp/corpus/sampled.tly" -- "$top_builddir/tests/tools/golden" \
    >/dev/null 2>&1 || fatal "no seed dump"
zstd -dcq "$tmp/corpus/golden.tly" >"$tmp/corpus/golden.txt"
# a Python program's: frames py=CODE:LINE under a native one, a site on them, two pycode
# records alike (one function compiled twice), a live block of that site
awk '/^frame / {n++}
     /^class / && !done {print "frame parent=1 py=1:7"; print "frame parent=" n + 1 " py=2:9";
         print "site id=99999 frame=" n + 2 " depth=3 alloc_count=1 alloc_bytes=16 live_count=1 live_bytes=16";
         print "pycode id=1 first=3 file=a.py name=f"; print "pycode id=2 first=3 file=a.py name=f"; done = 1}
     {print}' "$tmp/corpus/golden.txt" >"$tmp/corpus/python.txt"
"$tally" report --by line "$tmp/corpus/python.txt" >"$tmp/python.out" 2>&1 &&
    grep -q '^   at f (a.py:9) \[py\]' "$tmp/python.out" || fatal "the Python seed is not read: $(head -3 "$tmp/python.out")"
(cd "$tmp" && timeout 120 ./fuzz_dump -max_total_time=20 -rss_limit_mb=1024 -max_len=65536 \
    -timeout=10 -print_final_stats=1 corpus >fuzz.log 2>&1)
rc=$?
grep -E '^(Done|stat::number_of_executed_units|stat::peak_rss_mb)' "$tmp/fuzz.log"
[ $rc = 0 ] || { fail "the fuzz target failed (exit $rc):"; grep -A30 -E 'ERROR|SUMMARY|crash|timeout' "$tmp/fuzz.log" | head -60 >&2; }
ls "$tmp"/crash-* "$tmp"/leak-* "$tmp"/timeout-* 2>/dev/null && fail "the fuzzer left a reproducer"

# The inputs the fuzzer made (mutated names and paths among them, bytes that are not UTF-8)
# through tally's JSON writers: whatever tally reads, its JSON must parse, and be UTF-8.
n=0 read_ok=0
for f in $(ls "$tmp/corpus" | head -300); do
    n=$((n + 1))
    for cmd in "report --json --top 0" "leaks --json --kinds all" "flame --json"; do
        # shellcheck disable=SC2086  # cmd is a command and its options
        timeout 20 "$tally" $cmd "$tmp/corpus/$f" >"$tmp/j.out" 2>/dev/null || continue
        read_ok=$((read_ok + 1))
        /usr/bin/python3 -c 'import json, sys; json.loads(open(sys.argv[1], "rb").read().decode("utf-8"))' \
            "$tmp/j.out" 2>"$tmp/j.err" ||
            { fail "tally $cmd on the fuzzer's input $f: not JSON: $(tail -1 "$tmp/j.err")"; cp "$tmp/corpus/$f" "$tmp/bad-json-$f"; }
    done
done
say "the JSON of $read_ok outputs of tally on $n of the fuzzer's inputs parses"
[ "$read_ok" -gt 0 ] || fail "tally read none of the fuzzer's inputs"
finish
