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
grep -q '^done 3800$' "$tmp/c.out" || fail "the program did not finish: $(cat "$tmp/c.out")"
[ -s "$tmp/c.err" ] && fail "it printed on stderr: $(cat "$tmp/c.err")"
# A stack cut at TALLY_DEPTH is marked (site truncated=1): its root in a flame graph is
# [truncated], not a frame of the recursion; a whole stack is not marked. Both walkers.
tally=$top_builddir/tools/tally
timeout 60 env LD_PRELOAD="$TALLY_LIB" TALLY_PROFILE=all TALLY_UNWIND=libunwind \
    TALLY_OUT="$tmp/lu.tly" "$prog" >/dev/null 2>&1 || fail "the libunwind run failed"
for d in c lu; do
    "$tally" flame --folded "$tmp/$d.tly" >"$tmp/$d.folded" 2>&1 || fail "$d: tally flame failed"
    # main's recursion is 40 to 60 deep (one stack once cut); the threads' are shallower
    deep=$(grep 'site_deep' "$tmp/$d.folded" | grep -vc '^site_thread;')
    cut=$(grep -c '^\[truncated\];recurse;recurse.*site_deep' "$tmp/$d.folded")
    [ "$deep" = 1 ] && [ "$cut" = 1 ] ||
        fail "$d: $cut of $deep stacks of main's 40-60 deep recursion start at [truncated]"
    grep 'site_deep' "$tmp/$d.folded" | grep -q '^site_thread;' ||
        fail "$d: the threads' whole stacks do not start at site_thread"
    grep 'site_leaf' "$tmp/$d.folded" | grep -q '^\[truncated\]' &&
        fail "$d: a shallow stack is marked truncated"
    grep 'site_leaf' "$tmp/$d.folded" | grep -q '^main;' ||
        fail "$d: the shallow stacks do not start at main: $(grep site_leaf "$tmp/$d.folded" | head -2)"
done
say "stacks cut at 32 frames start at [truncated] (fast walker and libunwind); whole ones at main"

# Shallow depths cut most stacks, and the walker must still stop exactly at depth frames of the
# program's whatever number of the allocator's own frames are above them.
for depth in 1 3 7; do
    timeout 60 env LD_PRELOAD="$TALLY_LIB" TALLY_PROFILE=all TALLY_UNWIND=check TALLY_DEPTH=$depth \
        TALLY_OUT="$tmp/d$depth.tly" "$prog" >/dev/null 2>&1 || fail "the depth $depth run failed"
    /usr/bin/python3 - "$tmp/d$depth.tly" "$depth" <<'PY' || fail "depth $depth: the walker and libunwind disagree"
import sys, dumpcheck
d = dumpcheck.parse(sys.argv[1])
t, depth = d["totals"], int(sys.argv[2])
print("depth %d:" % depth, {k: v for k, v in t.items() if k.startswith("unwind")})
long = [s for s in d["stacks"].values() if len(s) > depth]
sys.exit(1 if t["unwind_mismatch"] or t["unwind_checked"] != t["unwind_stacks"] or long else 0)
PY
done
# Without /proc (a sandbox), glibc cannot tell the main thread's stack: the walker falls back to
# __libc_stack_end and RLIMIT_STACK instead of handing every stack to libunwind. Hiding /proc
# takes a mount namespace, so this part needs root (CI runs as root).
if unshare -m sh -c 'mount -t tmpfs none /proc && ! test -e /proc/self/maps' 2>/dev/null; then
    unshare -m sh -c 'mount -t tmpfs none /proc && exec "$@"' sh \
        env LD_PRELOAD="$TALLY_LIB" TALLY_PROFILE=all TALLY_UNWIND=check TALLY_OUT="$tmp/np.tly" \
        "$prog" >"$tmp/np.out" 2>&1 || fail "the run without /proc failed: $(cat "$tmp/np.out")"
    /usr/bin/python3 - "$tmp/np.tly" <<'PY' || fail "without /proc the walker handed its stacks to libunwind"
import sys, dumpcheck
t = dumpcheck.parse(sys.argv[1])["totals"]
print("without /proc:", {k: v for k, v in t.items() if k.startswith("unwind")})
sys.exit(1 if t["unwind_mismatch"] or t["unwind_foreign"] > 200 or t["unwind_checked"] < 3000 else 0)
PY
else
    say "not run: the walker without /proc (hiding /proc needs a mount namespace: root)"
fi
timeout 60 env LD_PRELOAD="$TALLY_LIB" TALLY_PROFILE=all TALLY_OUT="$tmp/j.tly" \
    "$prog" jit >"$tmp/j.out" 2>"$tmp/j.err" || fail "the jit run failed: $(cat "$tmp/j.err")"
page=$(sed -n 's/^jit \(0x[0-9a-f]*\)$/\1/p' "$tmp/j.out")
[ -n "$page" ] || fail "the jit run printed no page address"
/usr/bin/python3 "$top_srcdir/tests/prof/unwind_check.py" "$tmp/c.tly" "$tmp/j.tly" "$prog" "${page:-0}" ||
    fail "the stacks are not right"
finish
