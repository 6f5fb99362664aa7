#!/usr/bin/env bash
# prof.sh - what profiling costs: each workload run plainly (no preload), under tallymalloc with
# TALLY_PROFILE=off, sample and all, and under heaptrack 1.4, alternating run by run; medians of
# wall time, the slowdowns against the plain run and against `off`, and the size of the files
# written (tallymalloc's dump against heaptrack's compressed data file).
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

declare -A cmd
cmd[allocs]="$builddir/allocs"
cmd[python]="/usr/bin/python3 $here/../tests/preload/workload.py"
cmd[perl]="/usr/bin/perl $here/../tests/preload/workload.pl"
cmd[sqlite]="/usr/bin/sqlite3 :memory: .read\ $here/sqlite.sql"
cmd[churn]="$builddir/throughput single -n 10000000"
workloads="allocs python perl sqlite churn"
modes="plain off sample all heaptrack"

results=$builddir/results.tsv
: >"$results"
total=$((5 * 5 * runs))
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
            *) pre=(env PYTHONMALLOC=malloc LD_PRELOAD="$lib" TALLY_PROFILE=$m TALLY_OUT="$out.%p.tly") ;;
            esac
            t0=$(date +%s.%N)
            # shellcheck disable=SC2086
            eval "words=(${cmd[$w]})"
            timeout 600 "${pre[@]}" "${words[@]}" >/dev/null 2>"$builddir/err"
            rc=$?
            t1=$(date +%s.%N)
            size=$(cat "$out"* 2>/dev/null | wc -c)
            if [[ $rc -ne 0 ]]; then
                echo -e "$w\t$m\tfailed($rc)\t0" >>"$results"
            else
                echo -e "$w\t$m\t$(awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.3f", b - a}')\t$size" >>"$results"
            fi
        done
    done
done

median() { sort -g | awk '{v[NR]=$1} END {if (NR==0) print "nan"; else if (NR%2) print v[(NR+1)/2]; else print (v[NR/2]+v[NR/2+1])/2}'; }
echo "## Profiler overhead"
echo
echo "- date: $(date -u '+%Y-%m-%d %H:%M UTC'); machine: $(nproc) CPUs, $(uname -r); heaptrack: $(dpkg-query -W -f='${Version}' heaptrack 2>/dev/null || echo missing)"
echo "- command: \`bench/prof.sh --runs $runs\`; wall time medians of $runs alternating runs"
echo
echo "| workload | mode | seconds | × plain | × off | output file |"
echo "|---|---|---|---|---|---|"
for w in $workloads; do
    p=$(awk -F'\t' -v w="$w" '$1==w && $2=="plain" {print $3}' "$results" | median)
    o=$(awk -F'\t' -v w="$w" '$1==w && $2=="off" {print $3}' "$results" | median)
    for m in $modes; do
        vals=$(awk -F'\t' -v w="$w" -v m="$m" '$1==w && $2==m {print $3}' "$results")
        if grep -qv '^[0-9.]*$' <<<"$vals"; then
            echo "| $w | $m | $(head -1 <<<"$vals" | grep -v '^[0-9.]*$' | head -1) | | | |"
            continue
        fi
        t=$(median <<<"$vals")
        sz=$(awk -F'\t' -v w="$w" -v m="$m" '$1==w && $2==m {print $4}' "$results" | median)
        case $m in
        plain | off) file="–" ;;
        *) file=$(awk -v b="$sz" 'BEGIN { if (b >= 1048576) printf "%.1f MB", b / 1048576; else printf "%.1f KB", b / 1024 }') ;;
        esac
        awk -v w="$w" -v m="$m" -v t="$t" -v p="$p" -v o="$o" -v f="$file" \
            'BEGIN {printf "| %s | %s | %.3f | %.2f | %.2f | %s |\n", w, m, t, t/p, t/o, f}'
    done
done
