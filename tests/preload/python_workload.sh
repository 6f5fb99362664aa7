#!/bin/bash
# python_workload.sh - Debian's CPython with every object allocated by malloc
# (PYTHONMALLOC=malloc) runs workload.py with and without libtallymalloc.so;
# the printed checksums must match and the pools must have served requests.

[ -n "${BASH_VERSION:-}" ] || exec bash "$0" "$@"
. "$(dirname "$0")/common.sh"

need /usr/bin/python3 python3

# -s: no user site-packages; not -E/-I, which would drop PYTHONMALLOC.
py=(env -u PYTHONPATH -u PYTHONHOME -u PYTHONSTARTUP
    PYTHONMALLOC=malloc PYTHONHASHSEED=0 PYTHONDONTWRITEBYTECODE=1
    /usr/bin/python3 -s "$preload_srcdir/workload.py")

cd "$tmp" || hard_error "cannot cd to $tmp"
run_plain "${py[@]}"
run_tally "${py[@]}"
check_status plain 0
check_same
small_served
finish
