#!/bin/bash
# tests/check/programs.sh - real programs with the heap checks on (TALLY_CHECK=1): python3 with
# PYTHONMALLOC=malloc, sqlite3, git, perl, gcc, the C++ thrower and redis, each as its own test
# in tests/preload runs it (PRELOAD_CHECK=1, see common.sh): the same output as without the
# library, not one heap error reported, and every block served by the checked path.
[ -n "${BASH_VERSION:-}" ] || exec bash "$0" "$@"
. "$top_srcdir/tests/preload/common.sh"
for t in python_workload sqlite3 git perl gcc cxx_exceptions redis; do
    start=$(date +%s%N)
    if PRELOAD_CHECK=1 bash "$top_srcdir/tests/preload/$t.sh" >"$tmp/$t.log" 2>&1; then
        say "$t: passed with TALLY_CHECK=1 in $((($(date +%s%N) - start) / 1000000)) ms; $(grep -c 'run \|start ' "$tmp/$t.log") runs"
        grep -q 'PRELOAD_CHECK: no heap error reported' "$tmp/$t.log" || fail "$t: the checks' verdict is missing"
        grep -h 'small_served: ' "$tmp/$t.log" | sed "s/^/  /"
    else
        fail "$t with TALLY_CHECK=1:"
        tail -n 25 "$tmp/$t.log" >&2
    fi
done
finish
