#!/bin/bash
# tests/prof/hard_cases.sh - the allocator's hard-case tests again, profiled in `all` mode:
# thread churn and cross-thread frees, fork while threads allocate (a child once hung on a site
# spinlock held by a thread that the fork left behind), exit while threads allocate, and
# allocation before constructors and in dynamic TLS. Each must pass as it does unprofiled, and
# every dump it leaves must be complete (test_fork's children leave with _exit: no dump). Then
# forks while other threads dlopen and dlclose (tests/prof/forkdl.c): no child may hang.
. "$top_srcdir/tests/preload/common.sh"
export PYTHONPATH=$top_srcdir/tests/prof
for t in test_threads test_fork test_exit_busy test_early_tls; do
    prog=$top_builddir/tests/api/$t
    [ -x "$prog" ] || hard_error "$prog is not built"
    mkdir "$tmp/$t"
    say "run $t under TALLY_PROFILE=all"
    timeout 300 env TALLY_PROFILE=all TALLY_OUT="$tmp/$t/%p.tly" "$prog" >"$tmp/$t.out" 2>&1
    rc=$?
    [ "$rc" -eq 0 ] || { fail "$t failed under all mode (status $rc)"; tail -5 "$tmp/$t.out" >&2; }
done
forkdl=$top_builddir/tests/prof/forkdl
gen_a=$top_builddir/tests/prof/.libs/gen_a.so
[ -x "$forkdl" ] && [ -f "$gen_a" ] || hard_error "$forkdl or $gen_a is not built"
for mode in all sample; do
    say "run forkdl under TALLY_PROFILE=$mode"
    timeout 600 env LD_PRELOAD="$TALLY_LIB" TALLY_PROFILE=$mode "$forkdl" "$gen_a" 150 \
        >"$tmp/forkdl.$mode.out" 2>&1 ||
        fail "forkdl under $mode mode: $(cat "$tmp/forkdl.$mode.out")"
done

/usr/bin/python3 - "$tmp" <<'PY' || fail "a dump is broken"
import glob, sys, dumpcheck
files = glob.glob(sys.argv[1] + "/test_*/*.tly")
bad = 0
for f in files:
    try:
        d = dumpcheck.parse(f)  # complete and well-formed (other threads may still run at
        if not d["site"]:       # exit, so the sums are not checked here)
            raise dumpcheck.DumpError("no call sites")
    except Exception as e:
        print("FAIL:", f, e)
        bad += 1
print("%d dumps read, %d broken" % (len(files), bad))
sys.exit(1 if bad or len(files) < 4 else 0)
PY
finish
