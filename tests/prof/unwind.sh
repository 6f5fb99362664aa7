#!/bin/bash
# tests/prof/unwind.sh - the profiler's own stack walker (src/unwind.c) against libunwind: the
# stacks of tests/prof/unwind.c (cut at depth, two paths at one depth, frame-pointer frames,
# DRAP frames, signal handlers, sigaltstack, makecontext, threads) are taken with
# TALLY_UNWIND=check, which compares every stack the walker returns with libunwind's; and malloc
# called from JIT code ends its stack there without reading wild memory.
. "$top_srcdir/tests/preload/common.sh"
need nm binutils
prog=$top_builddir/tests/prof/unwind
[ -x "$prog" ] || hard_error "$prog is not built"
export PYTHONPATH=$top_srcdir/tests/prof

timeout 60 env LD_PRELOAD="$TALLY_LIB" TALLY_PROFILE=all TALLY_UNWIND=check TALLY_OUT="$tmp/c.tly" \
    "$prog" >"$tmp/c.out" 2>"$tmp/c.err" || fail "the program failed: $(cat "$tmp/c.err")"
grep -q '^done 3000$' "$tmp/c.out" || fail "the program did not finish: $(cat "$tmp/c.out")"
[ -s "$tmp/c.err" ] && fail "it printed on stderr: $(cat "$tmp/c.err")"
timeout 60 env LD_PRELOAD="$TALLY_LIB" TALLY_PROFILE=all TALLY_OUT="$tmp/j.tly" \
    "$prog" jit >"$tmp/j.out" 2>"$tmp/j.err" || fail "the jit run failed: $(cat "$tmp/j.err")"
page=$(sed -n 's/^jit \(0x[0-9a-f]*\)$/\1/p' "$tmp/j.out")
[ -n "$page" ] || fail "the jit run printed no page address"
/usr/bin/python3 "$top_srcdir/tests/prof/unwind_check.py" "$tmp/c.tly" "$tmp/j.tly" "$prog" "${page:-0}" ||
    fail "the stacks are not right"
finish
