#!/usr/bin/env bash
# python.sh - what a Python memory profile costs, tool by tool, on the same script: CPython 3.11
# (Debian's python3, PYTHONMALLOC=malloc so that every object goes through malloc) running
# tests/preload/workload.py plainly, under tallymalloc (TALLY_PROFILE=sample, the default; all
# with the Python walker, the merged native and Python stacks; all with TALLY_PYTHON=0, native
# stacks only), under tracemalloc (-X tracemalloc=25, the standard library's exact per-line
# tracer, 25 frames as tallymalloc keeps 32), under heaptrack 1.4 (native stacks) and under
# memory_profiler (Debian's python3-memory-profiler, every function line-profiled as with
# @profile: bench/mprof_lines.py). Runs alternate tool by tool; the table has the median wall
# time, the slowdown against the plain run, the peak RSS and what each tool wrote. memory_profiler
# is run once (it takes minutes).
#
#   bench/python.sh [--lib PATH/libtallymalloc.so] [--runs N]
set -u
export LC_ALL=C
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
lib=$here/../src/.libs/libtallymalloc.so
runs=5
while [[ $# -gt 0 ]]; do
    case $1 in
    --lib) lib=$2; shift 2 ;;
    --runs) runs=$2; shift 2 ;;
    *) echo "usage: $0 [--lib PATH] [--runs N]" >&2; exit 2 ;;
    esac
done
[[ $runs =~ ^[1-9][0-9]*$ ]] || { echo "python.sh: --runs wants a positive integer" >&2; exit 2; }
[[ -f $lib ]] || { echo "python.sh: $lib not found; build first" >&2; exit 1; }
lib=$(cd "$(dirname "$lib")" && pwd)/$(basename "$lib")
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
script=$here/../tests/preload/workload.py
py=/usr/bin/python3
export PYTHONMALLOC=malloc PYTHONHASHSEED=0

run() { # run TOOL OUTFILE: one run; prints "seconds maxrss_kb bytes_written"
    local tool=$1 out=$tmp/out.$1
    rm -rf "$out"
    mkdir -p "$out"
    local t0 t1
    case $tool in
    plain) set -- "$py" "$script" ;;
    sample) set -- env LD_PRELOAD="$lib" TALLY_OUT="$out/d.tly" "$py" "$script" ;;
    all) set -- env LD_PRELOAD="$lib" TALLY_PROFILE=all TALLY_OUT="$out/d.tly" "$py" "$script" ;;
    all_native) set -- env LD_PRELOAD="$lib" TALLY_PROFILE=all TALLY_PYTHON=0 TALLY_OUT="$out/d.tly" "$py" "$script" ;;
    tracemalloc) set -- "$py" -X tracemalloc=25 "$script" ;;
    heaptrack) set -- heaptrack -o "$out/h" "$py" "$script" ;;
    memory_profiler) set -- "$py" "$here/mprof_lines.py" "$script" ;;
    esac
    /usr/bin/time -f "%e %M" -o "$tmp/time" "$@" >"$out/stdout" 2>"$out/stderr" ||
        { echo "python.sh: $tool failed: $(tail -3 "$out/stderr")" >&2; return 1; }
    local bytes
    bytes=$(find "$out" -type f ! -name stderr ! -name stdout -printf '%s\n' | awk '{s += $1} END {print s + 0}')
    [ "$tool" = memory_profiler ] && bytes=$(stat -c %s "$out/stdout")
    echo "$(cat "$tmp/time") $bytes"
}

tools="plain sample all all_native tracemalloc"
command -v heaptrack >/dev/null && tools="$tools heaptrack"
for r in $(seq "$runs"); do
    for t in $tools; do
        echo "$t $(run "$t")" >>"$tmp/results"
    done
done
if [ -z "${NO_MPROF:-}" ] && "$py" -c "import memory_profiler" 2>/dev/null; then
    echo "memory_profiler $(run memory_profiler)" >>"$tmp/results"
fi

median() { sort -n | awk '{v[NR] = $1} END {print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }
base=$(awk '$1 == "plain" {print $2}' "$tmp/results" | median)
printf '| tool | time (s) | vs plain | peak RSS | written |\n|---|---|---|---|---|\n'
for t in $tools memory_profiler; do
    grep -q "^$t " "$tmp/results" || continue
    s=$(awk -v t="$t" '$1 == t {print $2}' "$tmp/results" | median)
    rss=$(awk -v t="$t" '$1 == t {print $3}' "$tmp/results" | median)
    w=$(awk -v t="$t" '$1 == t {print $4}' "$tmp/results" | median)
    awk -v t="$t" -v s="$s" -v b="$base" -v r="$rss" -v w="$w" 'BEGIN {
        printf "| %s | %.2f | %.2fx | %.0f MiB | %s |\n", t, s, s / b, r / 1024,
            (w > 0 ? sprintf("%.0f KiB", w / 1024) : "-") }'
done
echo
echo "($runs alternating runs each, medians; memory_profiler once; $(nproc) CPUs, $(date -u +%Y-%m-%d))"
