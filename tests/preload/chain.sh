#!/bin/bash
# chain.sh - tallymalloc's pools in front of another allocator. With
# LD_PRELOAD="libtallymalloc.so LIB" for jemalloc, tcmalloc and mimalloc (Debian's), the blocks
# the pools do not serve go to LIB (TALLY_STATS names it): the server workloads of
# bench/server.c (threads coming and going, blocks freed by other threads, sizes on both sides
# of 512 B), CPython and sqlite3 run and print what they print without any preload, in sample
# mode (the default), off and all; tests/prof/marked (every entry point of the API, sampled
# blocks with the library's header before them, realloc across the limit) reads the same bytes
# as without the library. all mode and the leak check keep glibc (another allocator's records of
# its blocks look like pointers to them): the leak kinds are memcheck's as without it, and are
# flagged approximate when TALLY_LARGE names the other allocator. TALLY_LARGE=glibc keeps glibc
# behind the pools, TALLY_LARGE=NAME picks a loaded library, and a NAME that is not loaded is
# said in one line.
#
# mimalloc 2.0.9 (Debian 12) returns blocks misaligned for posix_memalign(256) in marked's
# sequence with no tallymalloc loaded at all, so marked runs under jemalloc and tcmalloc only.
. "$(dirname "$0")/common.sh"
need python3 python3
need sqlite3 sqlite3
server=$top_builddir/tests/preload/server
marked=$top_builddir/tests/prof/marked
[ -x "$server" ] && [ -x "$marked" ] || hard_error "tests/preload/server or tests/prof/marked is not built"
libdir=/usr/lib/x86_64-linux-gnu
workload=$top_srcdir/tests/preload/workload.py

PYTHONMALLOC=malloc PYTHONHASHSEED=0 timeout 100 /usr/bin/python3 "$workload" >"$tmp/py.want" ||
    hard_error "python3 failed without the library"
sql="create table t(a, b); with recursive c(x) as (select 1 union all select x + 1 from c where x < 20000) insert into t select x, printf('%0*d', x % 900 + 1, x) from c; select count(*), sum(length(b)), max(b) from t where a % 7 = 3;"
timeout 60 sqlite3 :memory: "$sql" >"$tmp/sql.want" || hard_error "sqlite3 failed without the library"
env "$marked" >"$tmp/marked.want" || hard_error "marked failed without the library"

# chained LABEL LIB [ENV=VALUE...] -- CMD...: run CMD with the pools in front of LIB
chained() {
    local label=$1 lib=$2
    shift 2
    local envs=()
    while [ "$1" != -- ]; do envs+=("$1"); shift; done
    shift
    timeout 120 env "${envs[@]}" LD_PRELOAD="$TALLY_LIB $lib" "$@" >"$tmp/$label.out" 2>"$tmp/$label.err"
}

for name in jemalloc tcmalloc_minimal mimalloc; do
    lib=$(ls "$libdir"/lib$name.so.* 2>/dev/null | head -n 1)
    [ -n "$lib" ] || hard_error "lib$name is not installed (.ci/setup installs it)"
    base=$(basename "$lib")
    for mode in sample off all; do
        for w in "larson -d 1" "mstress -i 40" "gthread -d 1"; do
            label=$name.$mode.${w%% *}
            chained "$label" "$lib" TALLY_PROFILE=$mode TALLY_STATS=1 -- "$server" $w ||
                fail "$base, $mode: server $w failed: $(tail -3 "$tmp/$label.err")"
            grep -q "^ns_per_op=.* mode=${w%% *}$" "$tmp/$label.out" ||
                fail "$base, $mode: server $w printed $(cat "$tmp/$label.out")"
            want=$base # all mode keeps glibc (the leak check's kinds need it) unless told
            [ "$mode" = all ] && want=glibc
            grep -q "sent to the system malloc, $want's" "$tmp/$label.err" ||
                fail "$base, $mode: the large blocks did not go to $want: $(grep requests "$tmp/$label.err")"
        done
        chained "$name.$mode.py" "$lib" TALLY_PROFILE=$mode PYTHONMALLOC=malloc PYTHONHASHSEED=0 -- \
            /usr/bin/python3 "$workload" || fail "$base, $mode: python3 failed: $(tail -3 "$tmp/$name.$mode.py.err")"
        cmp -s "$tmp/py.want" "$tmp/$name.$mode.py.out" || fail "$base, $mode: python3 printed something else"
        chained "$name.$mode.sql" "$lib" TALLY_PROFILE=$mode -- sqlite3 :memory: "$sql" ||
            fail "$base, $mode: sqlite3 failed: $(tail -3 "$tmp/$name.$mode.sql.err")"
        cmp -s "$tmp/sql.want" "$tmp/$name.$mode.sql.out" || fail "$base, $mode: sqlite3 printed something else"
    done
    if [ "$name" != mimalloc ]; then
        for rate in 1 4k; do
            chained "$name.marked.$rate" "$lib" TALLY_SAMPLE=$rate -- "$marked" ||
                fail "$base, TALLY_SAMPLE=$rate: marked failed: $(cat "$tmp/$name.marked.$rate.err")"
            cmp -s "$tmp/marked.want" "$tmp/$name.marked.$rate.out" ||
                fail "$base, TALLY_SAMPLE=$rate: marked read other bytes"
        done
    fi
    say "$base behind the pools: server workloads, python3, sqlite3 in sample, off and all mode"
done

# The leak check: with jemalloc preloaded after the library it keeps glibc behind the pools
# (jemalloc's records of its blocks would make leaks "still reachable"), and its kinds are
# memcheck's, as without jemalloc; with jemalloc named by TALLY_LARGE, the dump and tally leaks
# say the kinds are approximate.
leaks=$top_builddir/tests/leaks/leakcases
jem=$(ls "$libdir"/libjemalloc.so.* | head -n 1)
timeout 60 env LD_PRELOAD="$TALLY_LIB" TALLY_LEAKS=1 TALLY_OUT="$tmp/lk.glibc.tly" "$leaks" dropped \
    >/dev/null 2>"$tmp/lk.glibc.err"
timeout 60 env LD_PRELOAD="$TALLY_LIB $jem" TALLY_LEAKS=1 TALLY_OUT="$tmp/lk.auto.tly" "$leaks" dropped \
    >/dev/null 2>"$tmp/lk.auto.err"
summary() { grep -E "(definitely|indirectly|possibly) lost:|still reachable:" "$1"; }
[ -n "$(summary "$tmp/lk.glibc.err")" ] && [ "$(summary "$tmp/lk.glibc.err")" = "$(summary "$tmp/lk.auto.err")" ] ||
    fail "the leak check with jemalloc preloaded differs: $(summary "$tmp/lk.auto.err") against $(summary "$tmp/lk.glibc.err")"
timeout 60 env LD_PRELOAD="$TALLY_LIB $jem" TALLY_LARGE=libjemalloc.so TALLY_LEAKS=1 \
    TALLY_OUT="$tmp/lk.named.tly" "$leaks" dropped >/dev/null 2>"$tmp/lk.named.err"
dump_text "$tmp/lk.named.tly" >"$tmp/lk.named.txt0" # a file: grep -q would cut the pipe short
grep -q "leak_foreign_large=1" "$tmp/lk.named.txt0" ||
    fail "TALLY_LARGE=libjemalloc.so with the leak check: the dump does not say its kinds are approximate"
"$top_builddir/tools/tally" leaks "$tmp/lk.named.tly" >"$tmp/lk.named.txt" 2>&1
grep -q "approximate: the blocks above 512 bytes were another allocator's" "$tmp/lk.named.txt" ||
    fail "tally leaks does not say the kinds are approximate: $(head -3 "$tmp/lk.named.txt")"

# TALLY_LARGE: glibc kept, a library named, one that is not loaded said once
chained large.glibc "$jem" TALLY_LARGE=glibc TALLY_STATS=1 -- "$server" larson -d 1 ||
    fail "TALLY_LARGE=glibc: server failed"
grep -q "sent to the system malloc, glibc's" "$tmp/large.glibc.err" ||
    fail "TALLY_LARGE=glibc: $(grep requests "$tmp/large.glibc.err")"
timeout 60 env LD_PRELOAD="$TALLY_LIB" TALLY_LARGE=libnosuch.so TALLY_STATS=1 "$server" larson -d 1 \
    >"$tmp/nosuch.out" 2>"$tmp/nosuch.err" || fail "TALLY_LARGE=libnosuch.so: server failed"
[ "$(grep -c "TALLY_LARGE" "$tmp/nosuch.err")" = 1 ] &&
    grep -q "TALLY_LARGE: libnosuch.so is not loaded" "$tmp/nosuch.err" &&
    grep -q "sent to the system malloc, glibc's" "$tmp/nosuch.err" ||
    fail "TALLY_LARGE=libnosuch.so: $(cat "$tmp/nosuch.err")"
tc=$(ls "$libdir"/libtcmalloc_minimal.so.* | head -n 1)
timeout 60 env LD_PRELOAD="$TALLY_LIB $jem $tc" TALLY_LARGE=libtcmalloc_minimal.so TALLY_STATS=1 \
    "$server" larson -d 1 >"$tmp/named.out" 2>"$tmp/named.err" || fail "TALLY_LARGE named: server failed"
grep -q "sent to the system malloc, $(basename "$tc")'s" "$tmp/named.err" ||
    fail "TALLY_LARGE=libtcmalloc_minimal.so: $(grep requests "$tmp/named.err")"
finish
