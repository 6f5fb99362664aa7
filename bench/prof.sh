#!/usr/bin/env bash
# prof.sh - what profiling costs: each workload run plainly (no preload), under tallymalloc with
# TALLY_PROFILE=off, sample and all, under heaptrack 1.4, and under valgrind 3.19's heap profiler
# massif and its memcheck (with --leak-check=full, what tallymalloc's leak check is compared with),
# alternating run by run; medians of wall time, the slowdowns against the plain run and against
# `off`, and the size of the files written (tallymalloc's dump, heaptrack's compressed data
# file, massif's output).
#
#   bench/prof.sh [--lib PATH/libtallymalloc.so] [--runs N] [--builddir DIR]
#
# Workloads: allocs (bench/allocs.c, 10 million malloc/free pairs), python (CPython with
# PYTHONMALLOC=malloc running tests/preload/workload.py), perl (tests/preload/workload.pl),
# sqlite (sqlite3 building and querying an in-memory table, bench/sqlite.sql), churn
# (bench/throughput single).
set -u
export LC_ALL=C
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
lib=$here/../src/.libs/libtallymalloc.so
runs=5
builddir=""
while [[ $# -gt 0 ]]; do
    case $1 in
    --lib) lib=$2; shift 2 ;;
    --runs) runs=$2; shift 2 ;;
    --builddir) builddir=$2; shift 2 ;;
    *) echo "usage: $0 [--lib PATH] [--runs N] [--builddir DIR]" >&2; exit 2 ;;
    esac
done
[[ $runs =~ ^[1-9][0-9]*$ ]] || { echo "prof.sh: --runs wants a positive integer" >&2; exit 2; }
[[ -f $lib ]] || { echo "prof.sh: $lib not found; build first" >&2; exit 1; }
lib=$(cd "$(dirname "$lib")" && pwd)/$(basename "$lib")
if [[ -z $builddir ]]; then
    builddir=$(mktemp -d)
    trap 'rm -rf "$builddir"' EXIT
fi
mkdir -p "$builddir/out"
cc=${CC:-cc}
$cc -O2 -o "$builddir/allocs" "$here/allocs.c" || exit 1
$cc -O2 -pthread -o "$builddir/throughput" "$here/throughput.c" || exit 1
have_heaptrack=1
command -v heaptrack >/dev/null || have_heaptrack=0
have_valgrind=1
command -v valgrind >/dev/null || have_valgrind=0

declare -A cmd
cmd[allocs]="$builddir/allocs"
cmd[python]="/usr/bin/python3 $here/../tests/preload/workload.py"
cmd[perl]="/usr/bin/perl $here/../tests/preload/workload.pl"
cmd[sqlite]="/usr/bin/sqlite3 :memory: .read\ $here/sqlite.sql"
cmd[churn]="$builddir/throughput single -n 10000000"
workloads="allocs python perl sqlite churn"
modes="plain off sample all heaptrack massif memcheck"

results=$builddir/results.tsv
: >"$results"
total=$((5 * 7 * runs))
n=0
for r in $(seq "$runs"); do
    for w in $workloads; do
        for m in $modes; do
            n=$((n + 1))
            echo "[$n/$total] $w $m run $r/$runs" >&2
            out=$builddir/out/$w.$m
            rm -rf "$out"*
            case $m in
            plain) pre=(env PYTHONMALLOC=malloc) ;;
            heaptrack)
                [[ $have_heaptrack = 1 ]] || { echo -e "$w\t$m\tmissing\t0" >>"$results"; continue; }
                pre=(env PYTHONMALLOC=malloc heaptrack -o "$out") ;;
            massif)
                [[ $have_valgrind = 1 ]] || { echo -e "$w\t$m\tmissing\t0" >>"$results"; continue; }
                pre=(env PYTHONMALLOC=malloc valgrind --tool=massif --massif-out-file="$out.massif") ;;
            memcheck)
                [[ $have_valgrind = 1 ]] || { echo -e "$w\t$m\tmissing\t0" >>"$results"; continue; }
                pre=(env PYTHONMALLOC=malloc valgrind --leak-check=full --log-file="$out.log") ;;
            *) pre=(env PYTHONMALLOC=malloc LD_PRELOAD="$lib" TALLY_PROFILE=$m TALLY_OUT="$out.%p.tly") ;;
            esac
            eval "words=(${cmd[$w]})"
            # Wall time, and CPU time (user + system of the whole process tree, heaptrack's
            # interpreter included): on a shared VM the CPU time is the steadier of the two.
            /usr/bin/time -o "$builddir/time" -f '%e %U %S' \
                timeout 600 "${pre[@]}" "${words[@]}" >/dev/null 2>"$builddir/err"
            rc=$?
            size=$(cat "$out"* 2>/dev/null | wc -c)
            if [[ $rc -ne 0 ]]; then
                echo -e "$w\t$m\tfailed($rc)\t0\t0" >>"$results"
            else
                read -r wall user sys <"$builddir/time"
                echo -e "$w\t$m\t$wall\t$size\t$(awk -v u="$user" -v s="$sys" 'BEGIN {printf "%.2f", u + s}')" >>"$results"
            fi
        done
    done
done

. "$here/median.sh"
echo "## Profiler overhead"
echo
echo "- date: $(date -u '+%Y-%m-%d %H:%M UTC'); machine: $(nproc) CPUs, $(uname -r); heaptrack: $(dpkg-query -W -f='${Version}' heaptrack 2>/dev/null || echo missing); valgrind: $(valgrind --version 2>/dev/null || echo missing)"
echo "- command: \`bench/prof.sh --runs $runs\`; medians of $runs alternating runs; wall time, and CPU"
echo "  time (user + system of the process tree); ratios to the plain run and to \`off\`"
echo
echo "| workload | mode | wall s | × plain | CPU s | CPU × plain | CPU × off | output file |"
echo "|---|---|---|---|---|---|---|---|"
for w in $workloads; do
    p=$(awk -F'\t' -v w="$w" '$1==w && $2=="plain" {print $3}' "$results" | median nan)
    pc=$(awk -F'\t' -v w="$w" '$1==w && $2=="plain" {print $5}' "$results" | median nan)
    oc=$(awk -F'\t' -v w="$w" '$1==w && $2=="off" {print $5}' "$results" | median nan)
    for m in $modes; do
        vals=$(awk -F'\t' -v w="$w" -v m="$m" '$1==w && $2==m {print $3}' "$results")
        if grep -qv '^[0-9.]*$' <<<"$vals"; then
            echo "| $w | $m | $(head -1 <<<"$vals" | grep -v '^[0-9.]*$' | head -1) | | | | | |"
            continue
        fi
        t=$(median nan <<<"$vals")
        tc=$(awk -F'\t' -v w="$w" -v m="$m" '$1==w && $2==m {print $5}' "$results" | median nan)
        sz=$(awk -F'\t' -v w="$w" -v m="$m" '$1==w && $2==m {print $4}' "$results" | median nan)
        case $m in
        plain | off | memcheck) file="–" ;;
        *) file=$(awk -v b="$sz" 'BEGIN { if (b >= 1048576) printf "%.1f MB", b / 1048576; else printf "%.1f KB", b / 1024 }') ;;
        esac
        awk -v w="$w" -v m="$m" -v t="$t" -v p="$p" -v tc="$tc" -v pc="$pc" -v oc="$oc" -v f="$file" \
            'BEGIN {printf "| %s | %s | %.3f | %.2f | %.2f | %.2f | %.2f | %s |\n", w, m, t, t/p, tc, tc/pc, tc/oc, f}'
    done
done
