#!/bin/bash
# tests/prof/churn.sh - the profiler's memory stays proportional to what is live. churn_large
# keeps 1,000 blocks above 512 bytes and replaces them 2 million times, then 16,000 short
# threads come and go (64 at a time), in all mode and in leak mode: its RSS after the first
# fifth of the replacements and after all of them must be the same within 1 MiB (the large
# table's old copies were never unmapped: 1,000 blocks replaced 5 million times grew from 4 to
# 170 MB), and the threads may add what 64 threads at a time need, not what 16,000 did (331 MB).
. "$top_srcdir/tests/preload/common.sh"
prog=$top_builddir/tests/prof/churn_large
[ -x "$prog" ] || hard_error "$prog is not built"
read -r e0 m0 l0 < <("$prog" 2000000)
say "without the library: ${e0} KiB after a fifth, ${m0} KiB after all, ${l0} KiB after the threads"
for mode in "TALLY_PROFILE=all" "TALLY_LEAKS=quiet"; do
    read -r e m l < <(timeout 120 env LD_PRELOAD="$TALLY_LIB" $mode TALLY_OUT="$tmp/c.tly" "$prog" 2000000)
    say "$mode: ${e} KiB after a fifth, ${m} KiB after all, ${l} KiB after the threads"
    [ -n "$l" ] || { fail "$mode: the program failed"; continue; }
    [ $((m - e)) -le 1024 ] || fail "$mode: RSS grew by $((m - e)) KiB over the churn"
    [ $((l - m)) -le 8192 ] || fail "$mode: RSS grew by $((l - m)) KiB over 16,000 threads"
done
finish
