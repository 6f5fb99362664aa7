#!/bin/bash
# tests/prof/exact.sh - the profiler's figures in all mode against an exact record of every
# malloc-API call, made by a preload of the tests' own (tests/prof/tracer.c) that passes each
# call on to the library: allocations and frees (counts and bytes), temporary allocations as
# heaptrack counts them (a realloc is a free and an allocation), the peak, and no negative
# figure at any site (exact_check.py). On every way realloc can go (reallocs.c: a shrink by each
# amount from 1 to 511 bytes among them), with and without the leak check's layout, then on
# sqlite3 and on gcc (the driver, cc1 and as, each its own process and dump).
. "$top_srcdir/tests/preload/common.sh"
need sqlite3 sqlite3
need gcc gcc
tracer=$top_builddir/tests/prof/.libs/tracer.so
[ -f "$tracer" ] || hard_error "$tracer is not built"
export PYTHONPATH=$top_srcdir/tests/prof
check=$top_srcdir/tests/prof/exact_check.py

# exact LABEL [ENV=VALUE...] -- CMD...: one run under both; every process's trace and dump compared
exact() {
    local label=$1 envs=()
    shift
    while [ "$1" != -- ]; do envs+=("$1"); shift; done
    shift
    mkdir -p "$tmp/$label"
    timeout 300 env "${envs[@]}" TALLY_PROFILE=all TRACE_OUT="$tmp/$label/trace.%p" \
        TALLY_OUT="$tmp/$label/dump.%p.tly" LD_PRELOAD="$tracer $TALLY_LIB" "$@" \
        >"$tmp/$label.out" 2>"$tmp/$label.err" <"${input:-/dev/null}" ||
        { fail "$label: exit status $?: $(tail -3 "$tmp/$label.err")"; return; }
    local n=0 t pid
    for t in "$tmp/$label"/trace.*; do
        pid=${t##*.}
        [ -f "$tmp/$label/dump.$pid.tly" ] || { fail "$label: process $pid wrote no dump"; continue; }
        if python3 "$check" "$t" "$tmp/$label/dump.$pid.tly" >"$tmp/$label.$pid.cmp" 2>&1; then
            say "$label ($pid): exact: $(grep -E '^(alloc_count|temporary|peak_bytes)' "$tmp/$label.$pid.cmp" | awk '{printf "%s %s  ", $1, $3}')"
        else
            fail "$label ($pid): the dump differs from the exact record:
$(cat "$tmp/$label.$pid.cmp")"
        fi
        n=$((n + 1))
    done
    [ "$n" -ge "${want:-1}" ] || fail "$label: $n processes traced, want ${want:-1}"
}

exact reallocs -- "$top_builddir/tests/prof/reallocs"
# The leak check's layout: a request that fills its class takes the next one up
exact reallocs-leaks TALLY_LEAKS=quiet -- "$top_builddir/tests/prof/reallocs"

printf '%s\n' "create table t(a integer primary key, b text, c real);" \
    "with recursive n(i) as (select 1 union all select i+1 from n where i < 20000) insert into t select i, printf('row-%d-%s', i, hex(randomblob(8))), i*1.5 from n;" \
    "create index tb on t(b);" "select count(*), sum(length(b)) from t where b like 'row-1%';" \
    "update t set b = b || b where a % 3 = 0;" "delete from t where a % 5 = 0;" "vacuum;" >"$tmp/sqlite.sql"
input=$tmp/sqlite.sql exact sqlite3 -- sqlite3 :memory:
want=3 exact gcc -- gcc -O2 -c -o "$tmp/gcc_input.o" "$top_srcdir/tests/preload/gcc_input.c"

# The comparison can fail: one byte more in one allocation of the record is seen.
t=$(ls "$tmp"/reallocs/trace.* | head -1)
python3 - "$t" <<'PY'
import struct, sys
p = sys.argv[1]
raw = bytearray(open(p, "rb").read(1 << 20))
for off in range(0, len(raw) - 31, 32):
    if raw[off] == 1 and not raw[off + 1]:  # the program's first malloc
        n = struct.unpack_from("<Q", raw, off + 16)[0]
        struct.pack_into("<Q", raw, off + 16, n + 1)
        break
open(p + ".cut", "wb").write(raw)
PY
pid=${t##*.}
python3 "$check" "$t.cut" "$tmp/reallocs/dump.$pid.tly" >"$tmp/cut.cmp" 2>&1 &&
    fail "exact_check.py did not notice a byte more: $(cat "$tmp/cut.cmp")"
finish
