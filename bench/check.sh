#!/usr/bin/env bash
# check.sh - what the heap checks cost (TALLY_CHECK, issue 16): each workload run plainly, with
# the library's checks on (TALLY_CHECK=quiet: every block checked, quarantined and profiled, no
# dump unless an error is found), under valgrind memcheck, and, for the programs built here,
# compiled with AddressSanitizer; alternating run by run, medians of wall time and the ratios
# to the plain run.
#
#   bench/check.sh [--lib PATH/libtallymalloc.so] [--runs N] [--builddir DIR]
#
# Workloads: allocs (bench/allocs.c, 10 million malloc/free pairs), python (CPython with
# PYTHONMALLOC=malloc running tests/preload/workload.py), sqlite (sqlite3 building and querying a
# table, bench/sqlite.sql), perl (tests/preload/workload.pl), gcc (gcc -O2 -c of
# tests/preload/gcc_input.c), corpus (the 19 cases of tests/check/corpus.cpp, one process each:
# start-up and a few blocks, what a test suite's many short runs cost). ASan needs a recompile,
# so only allocs and corpus have an asan column.
set -u
export LC_ALL=C
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
lib=$here/../src/.libs/libtallymalloc.so
runs=3
builddir=""
while [[ $# -gt 0 ]]; do
    case $1 in
    --lib) lib=$2; shift 2 ;;
    --runs) runs=$2; shift 2 ;;
    --builddir) builddir=$2; shift 2 ;;
    *) echo "usage: $0 [--lib PATH] [--runs N] [--builddir DIR]" >&2; exit 2 ;;
    esac
done
[[ $runs =~ ^[1-9][0-9]*$ ]] || { echo "check.sh: --runs wants a positive integer" >&2; exit 2; }
[[ -f $lib ]] || { echo "check.sh: $lib not found; build first" >&2; exit 1; }
have_valgrind=1
command -v valgrind >/dev/null || have_valgrind=0
if [[ -z $builddir ]]; then
    builddir=$(mktemp -d)
    trap 'rm -rf "$builddir"' EXIT
fi
mkdir -p "$builddir/out"
cc=${CC:-cc}
cxx=${CXX:-c++}
$cc -O2 -o "$builddir/allocs" "$here/allocs.c" || exit 1
$cc -O2 -fsanitize=address -o "$builddir/allocs.asan" "$here/allocs.c" || exit 1
cflags=(-std=c++17 -O1 -g -fno-optimize-sibling-calls -pthread)
$cxx "${cflags[@]}" -o "$builddir/corpus" "$here/../tests/check/corpus.cpp" || exit 1
$cxx "${cflags[@]}" -fsanitize=address -o "$builddir/corpus.asan" "$here/../tests/check/corpus.cpp" || exit 1
# every case of the corpus, one process each; a case's error status (ASan stops at its first
# error) is part of the run, not a failure
cat >"$builddir/corpus.sh" <<'EOF'
for c in $("$1"); do "$1" "$c" >/dev/null 2>&1; done
exit 0
EOF

. "$here/median.sh"

declare -A cmd
cmd[allocs]="$builddir/allocs"
cmd[python]="/usr/bin/python3 $here/../tests/preload/workload.py"
cmd[sqlite]="/usr/bin/sqlite3 :memory: .read\ $here/sqlite.sql"
cmd[perl]="/usr/bin/perl $here/../tests/preload/workload.pl"
cmd[gcc]="/usr/bin/gcc -O2 -c -o $builddir/out/gcc_input.o $here/../tests/preload/gcc_input.c"
cmd[corpus]="/bin/bash $builddir/corpus.sh $builddir/corpus"
workloads="allocs python sqlite perl gcc corpus"
modes="plain check memcheck asan"
results=$builddir/results.tsv
: >"$results"
n=0
for r in $(seq "$runs"); do
    for w in $workloads; do
        for m in $modes; do
            n=$((n + 1))
            eval "words=(${cmd[$w]})"
            case $m in
            plain) pre=(env PYTHONMALLOC=malloc) ;;
            check) pre=(env PYTHONMALLOC=malloc LD_PRELOAD="$lib" TALLY_CHECK=quiet) ;;
            memcheck)
                [[ $have_valgrind = 1 ]] || continue
                pre=(env PYTHONMALLOC=malloc valgrind -q --trace-children=yes
                     --log-file="$builddir/out/$w.vg.%p") ;;
            asan)
                case $w in
                allocs) words=("$builddir/allocs.asan") ;;
                corpus) words=(/bin/bash "$builddir/corpus.sh" "$builddir/corpus.asan") ;;
                *) continue ;;
                esac
                pre=(env ASAN_OPTIONS=detect_leaks=0) ;;
            esac
            echo "[run $r/$runs] $w $m" >&2
            /usr/bin/time -o "$builddir/time" -f '%e %U %S' \
                timeout 1800 "${pre[@]}" "${words[@]}" >/dev/null 2>"$builddir/err"
            rc=$?
            if [[ $rc -ne 0 ]]; then
                echo -e "$w\t$m\tfailed($rc)" >>"$results"
            else
                read -r wall user sys <"$builddir/time"
                echo -e "$w\t$m\t$wall" >>"$results"
            fi
        done
    done
done

echo "| workload | plain | TALLY_CHECK | memcheck | ASan | check / plain | memcheck / plain | ASan / plain |"
echo "|---|---|---|---|---|---|---|---|"
for w in $workloads; do
    declare -A med
    for m in $modes; do
        med[$m]=$(awk -F'\t' -v w="$w" -v m="$m" '$1 == w && $2 == m && $3 ~ /^[0-9.]+$/ {print $3}' "$results" | median)
        fails=$(awk -F'\t' -v w="$w" -v m="$m" '$1 == w && $2 == m && $3 !~ /^[0-9.]+$/ {print $3}' "$results" | sort -u | tr '\n' ' ')
        [[ -n $fails ]] && med[$m]="${med[$m]} ($fails)"
    done
    awk -v w="$w" -v p="${med[plain]}" -v c="${med[check]}" -v v="${med[memcheck]}" -v a="${med[asan]}" '
        function ratio(x, y) { return (x + 0 > 0 && y + 0 > 0) ? sprintf("%.1f×", x / y) : "-" }
        function secs(x) { return x == "-" ? "-" : x " s" }
        BEGIN { printf "| %s | %s | %s | %s | %s | %s | %s | %s |\n", w, secs(p), secs(c), secs(v), secs(a),
                ratio(c, p), ratio(v, p), ratio(a, p) }'
done
echo
echo "runs: $runs, alternating; $(nproc) cores; $(valgrind --version 2>/dev/null || echo 'no valgrind'); $($cc --version | head -1)"
