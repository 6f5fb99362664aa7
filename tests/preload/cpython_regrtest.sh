#!/bin/bash
# cpython_regrtest.sh - a handful of CPython's own regression tests (Debian's
# libpython3.11-testsuite) with every object allocated by malloc
# (PYTHONMALLOC=malloc), run serially with and without libtallymalloc.so.
# Both runs must end with "Tests result: SUCCESS" and the same summary.
#
# The tests were picked because they pass here without the library, take
# about 20 s together, and stress the allocator: dict/list/set/str resizing,
# json and pickle, re's caches, gc and weakref callbacks, and threads
# (test_threading also starts child interpreters, which inherit the
# library).  Left out: test_str, which does not exist in 3.11 (its tests
# are in test_unicode); anything slower than a few seconds.
#
# Then the tests of frames, generators, tracebacks, sys and threads, in
# TALLY_PROFILE=all with the Python walker reading every thread's frame
# chain at every allocation (tests/python/frames.sh checks what it reads):
# the same results as without the library, and every dump with Python
# frames in it. Last, the process pools of test_concurrent_futures whose
# workers crash and are terminated, with the dump on fatal signals armed.

[ -n "${BASH_VERSION:-}" ] || exec bash "$0" "$@"
. "$(dirname "$0")/common.sh"

need /usr/bin/python3 python3
if [ ! -f /usr/lib/python3.11/test/regrtest.py ] ||
    [ ! -f /usr/lib/python3.11/test/test_dict.py ]; then
    hard_error "CPython's test suite is not installed; it comes with the Debian" \
        "package 'libpython3.11-testsuite' (apt-get install libpython3.11-testsuite)"
fi

tests=(test_dict test_list test_set test_unicode test_json test_re test_collections
       test_threading test_pickle test_weakref test_gc)

# -s: no user site-packages; not -E/-I, which would drop PYTHONMALLOC.
regrtest=(env -u PYTHONPATH -u PYTHONHOME -u PYTHONSTARTUP
    PYTHONMALLOC=malloc PYTHONDONTWRITEBYTECODE=1 TMPDIR="$tmp" LC_ALL=C.UTF-8
    /usr/bin/python3 -s -m test)
py=("${regrtest[@]}" --timeout=90 "${tests[@]}")

cd "$tmp" || hard_error "cannot cd to $tmp"
run_plain "${py[@]}"
run_tally "${py[@]}"

# The summary lines only: the rest holds timings and load averages.
summary() {
    grep -E '^(Tests result: |All [0-9]+ tests OK|[0-9]+ tests? (OK|failed|skipped|omitted))' \
        "$tmp/out/$1.out" >"$tmp/out/$1_summary.out"
    run_status "$1" >"$tmp/out/$1_summary.rc"
}
summary plain
summary tally

# succeeded NAME WHAT: the run NAME ended with "Tests result: SUCCESS", or WHAT fails
succeeded() {
    grep -qx 'Tests result: SUCCESS' "$tmp/out/$1_summary.out" && return
    fail "$2:"
    tail -n 30 "$tmp/out/$1.out" >&2
    show_stderr "$1"
}
for kind in plain tally; do
    succeeded "$kind" "the $kind run did not end with 'Tests result: SUCCESS'"
done
check_status plain 0
check_same plain_summary tally_summary
small_served

frames=(test_sys test_generators test_traceback test_frame test_threading)
py=("${regrtest[@]}" --timeout=150 "${frames[@]}")
mkdir -p "$tmp/dumps"
run_timeout=300
run_plain -n plain_frames "${py[@]}"
run_tally -n walker_frames env TALLY_PROFILE=all TALLY_OUT="$tmp/dumps/%p.tly" "${py[@]}"
summary plain_frames
summary walker_frames
succeeded walker_frames "the frame tests did not succeed under TALLY_PROFILE=all"
check_same plain_frames_summary walker_frames_summary
# Every process of the run writes a dump; those that ran Python code with the allocator (the
# test runner's above all, the largest) have Python frames in their stacks. A child that runs
# with PYTHONMALLOC=pymalloc or debug (test_sys starts such) has too little left for malloc
# to show one, so the test wants most of them, and the runner's.
ndumps=0
nwith=0
biggest=
for f in "$tmp"/dumps/*.tly; do
    [ -f "$f" ] || continue
    ndumps=$((ndumps + 1))
    [ -z "$biggest" ] || [ "$(stat -c %s "$f")" -gt "$(stat -c %s "$biggest")" ] && biggest=$f
    if dump_text "$f" >"$tmp/dump.txt" && grep -q '^pycode ' "$tmp/dump.txt"; then
        nwith=$((nwith + 1))
    else
        say "no Python frame in $(grep -o '^header program=[^ ]*' "$tmp/dump.txt") ($(grep -c '^site ' "$tmp/dump.txt") sites)"
    fi
done
say "frame tests: $ndumps dumps, $nwith with Python frames"
[ "$ndumps" -gt 0 ] && [ $((nwith * 10)) -ge $((ndumps * 9)) ] ||
    fail "want at least 90% of the frame tests' dumps with Python frames: $nwith of $ndumps"
[ -n "$biggest" ] && dump_text "$biggest" >"$tmp/dump.txt" && grep -q '^pycode ' "$tmp/dump.txt" ||
    fail "the test runner's dump has no Python frame"

# Process pools whose workers crash (faulthandler._sigsegv() after faulthandler.disable(), in
# workers forked from a process that has started subprocesses through vfork) and are then shut
# down with SIGTERM, some of it sent as soon as a worker is forked: with the dump on fatal
# signals armed (TALLY_OUT), as without the library. Under the library a worker once survived
# its raise(SIGSEGV) and a SIGTERM was lost, and the pool's shutdown hung.
py=("${regrtest[@]}" --timeout=60 test_concurrent_futures -m ProcessPoolForkExecutorDeadlockTest)
mkdir -p "$tmp/pool"
run_plain -n plain_pool "${py[@]}"
run_tally -n tally_pool env TALLY_PROFILE=all TALLY_OUT="$tmp/pool/%p.tly" "${py[@]}"
summary plain_pool
summary tally_pool
succeeded tally_pool "ProcessPoolForkExecutorDeadlockTest did not succeed under the library"
check_same plain_pool_summary tally_pool_summary
finish
