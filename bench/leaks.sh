#!/usr/bin/env bash
# leaks.sh - what the leak check costs (issue 5), in two tables:
#
#  1. The scan alone: bench/leakheap.c builds a live heap of 25, 100 and 400 MB (lists of small
#     nodes, large blocks of pointers) and exits under TALLY_LEAKS; the dump's totals say how long
#     the check took (leak_scan_ns: stopping threads, reading the memory map, marking, classifying)
#     and how many bytes of blocks it read. Median over the runs, and per 100 MB of live heap.
#  2. End to end: each workload run plainly, under `tally run --leaks` (library, check, dump and
#     the symbolized report) and under `valgrind --leak-check=full --show-leak-kinds=all`,
#     alternating run by run; medians of wall and CPU time, and the ratios.
#
#   bench/leaks.sh [--lib PATH/libtallymalloc.so] [--tally PATH/tally] [--runs N] [--builddir DIR]
#
# Workloads: allocs (bench/allocs.c, 10 million malloc/free pairs), heap100 (leakheap 100),
# python (CPython with PYTHONMALLOC=malloc running tests/preload/workload.py), sqlite (sqlite3
# building and querying a table, bench/sqlite.sql).
set -u
export LC_ALL=C
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
lib=$here/../src/.libs/libtallymalloc.so
tally=$here/../tools/tally
runs=3
builddir=""
while [[ $# -gt 0 ]]; do
    case $1 in
    --lib) lib=$2; shift 2 ;;
    --tally) tally=$2; shift 2 ;;
    --runs) runs=$2; shift 2 ;;
    --builddir) builddir=$2; shift 2 ;;
    *) echo "usage: $0 [--lib PATH] [--tally PATH] [--runs N] [--builddir DIR]" >&2; exit 2 ;;
    esac
done
[[ $runs =~ ^[1-9][0-9]*$ ]] || { echo "leaks.sh: --runs wants a positive integer" >&2; exit 2; }
[[ -f $lib ]] || { echo "leaks.sh: $lib not found; build first" >&2; exit 1; }
[[ -x $tally ]] || { echo "leaks.sh: $tally not found; build first" >&2; exit 1; }
have_valgrind=1
command -v valgrind >/dev/null || have_valgrind=0
if [[ -z $builddir ]]; then
    builddir=$(mktemp -d)
    trap 'rm -rf "$builddir"' EXIT
fi
mkdir -p "$builddir/out"
cc=${CC:-cc}
$cc -O2 -o "$builddir/allocs" "$here/allocs.c" || exit 1
$cc -O2 -o "$builddir/leakheap" "$here/leakheap.c" || exit 1

. "$here/median.sh"

# ---- 1. the scan alone ----------------------------------------------------------------------
echo "| live heap | blocks read | leak check (median) | per 100 MB |"
echo "|---|---|---|---|"
for mb in 25 100 400; do
    : >"$builddir/scan"
    for r in $(seq "$runs"); do
        echo "[scan] $mb MB run $r/$runs" >&2
        d=$builddir/out/heap.tly
        rm -f "$d"
        env LD_PRELOAD="$lib" TALLY_LEAKS=quiet TALLY_OUT="$d" "$builddir/leakheap" "$mb" >/dev/null ||
            { echo "leaks.sh: leakheap $mb failed" >&2; continue; }
        zstd -dcqf "$d" | sed -n 's/^totals .*leak_scan_ns=\([0-9]*\) .*leak_block_bytes=\([0-9]*\).*/\1 \2/p' >>"$builddir/scan"
    done
    ns=$(awk '{print $1}' "$builddir/scan" | median)
    bytes=$(awk '{print $2}' "$builddir/scan" | median)
    awk -v ns="$ns" -v b="$bytes" -v mb="$mb" 'BEGIN {
        printf "| %d MB | %.1f MB | %.3f s | %.3f s |\n", mb, b / 1048576, ns / 1e9, ns / 1e9 / (b / 104857600) }'
done
echo

# ---- 2. end to end ----------------------------------------------------------------------------
declare -A cmd
cmd[allocs]="$builddir/allocs"
cmd[heap100]="$builddir/leakheap 100"
cmd[python]="/usr/bin/python3 $here/../tests/preload/workload.py"
cmd[sqlite]="/usr/bin/sqlite3 :memory: .read\ $here/sqlite.sql"
workloads="allocs heap100 python sqlite"
modes="plain tally memcheck"
results=$builddir/results.tsv
: >"$results"
total=$((4 * 3 * runs))
n=0
for r in $(seq "$runs"); do
    for w in $workloads; do
        for m in $modes; do
            n=$((n + 1))
            echo "[$n/$total] $w $m run $r/$runs" >&2
            case $m in
            plain) pre=(env PYTHONMALLOC=malloc) ;;
            tally) pre=(env PYTHONMALLOC=malloc "$tally" run --leaks --lib "$lib" -o "$builddir/out/$w.tly" --) ;;
            memcheck)
                [[ $have_valgrind = 1 ]] || { echo -e "$w\t$m\tmissing\t0" >>"$results"; continue; }
                pre=(env PYTHONMALLOC=malloc valgrind --leak-check=full --show-leak-kinds=all
                     --log-file="$builddir/out/$w.vg") ;;
            esac
            eval "words=(${cmd[$w]})"
            /usr/bin/time -o "$builddir/time" -f '%e %U %S' \
                timeout 1800 "${pre[@]}" "${words[@]}" >/dev/null 2>"$builddir/err"
            rc=$?
            if [[ $rc -ne 0 ]]; then
                echo -e "$w\t$m\tfailed($rc)\t0" >>"$results"
            else
                read -r wall user sys <"$builddir/time"
                echo -e "$w\t$m\t$wall\t$(awk -v u="$user" -v s="$sys" 'BEGIN {printf "%.2f", u + s}')" >>"$results"
            fi
        done
    done
done

echo "| workload | plain | tally run --leaks | memcheck | tally / plain | memcheck / plain | memcheck / tally |"
echo "|---|---|---|---|---|---|---|"
for w in $workloads; do
    declare -A med
    for m in $modes; do
        med[$m]=$(awk -F'\t' -v w="$w" -v m="$m" '$1 == w && $2 == m && $3 ~ /^[0-9.]+$/ {print $3}' "$results" | median)
        fails=$(awk -F'\t' -v w="$w" -v m="$m" '$1 == w && $2 == m && $3 !~ /^[0-9.]+$/ {print $3}' "$results" | sort -u | tr '\n' ' ')
        [[ -n $fails ]] && med[$m]="${med[$m]} ($fails)"
    done
    awk -v w="$w" -v p="${med[plain]}" -v t="${med[tally]}" -v v="${med[memcheck]}" '
        function ratio(a, b) { return (a + 0 > 0 && b + 0 > 0) ? sprintf("%.1f×", a / b) : "-" }
        BEGIN { printf "| %s | %s s | %s s | %s s | %s | %s | %s |\n", w, p, t, v, ratio(t, p), ratio(v, p), ratio(v, t) }'
done
echo
echo "CPU time (user + system), medians:"
for w in $workloads; do
    line="  $w:"
    for m in $modes; do
        c=$(awk -F'\t' -v w="$w" -v m="$m" '$1 == w && $2 == m && $3 ~ /^[0-9.]+$/ {print $4}' "$results" | median)
        line="$line $m $c s;"
    done
    echo "$line"
done
echo
echo "runs: $runs, alternating; $(nproc) cores; $(valgrind --version 2>/dev/null || echo 'no valgrind')"
