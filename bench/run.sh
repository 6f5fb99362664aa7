#!/usr/bin/env bash
# run.sh - run the tallymalloc benchmarks against glibc and jemalloc; print a markdown report.
#
#   bench/run.sh --lib PATH/libtallymalloc.so [--quick] [--runs N] [--builddir DIR]
#
# Builds throughput and frag (bench/*.c) into DIR if they are missing or older than their source;
# without --builddir it uses a temporary directory that is removed at exit. Allocators are
# alternated run by run (run 1 of each, then run 2 of each, ...) so slow phases of a noisy machine
# spread over all of them instead of landing on one. The report goes to stdout, progress to
# stderr, and every run's raw result to DIR/results.tsv.
#
# Environment: CC (default cc), JEMALLOC_LIB (default the Debian libjemalloc2 path),
# BENCH_TIMEOUT (seconds per run, default 300).
set -u
export LC_ALL=C # awk and printf must agree on the decimal point

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

usage() {
    cat >&2 <<EOF
usage: $0 --lib PATH/libtallymalloc.so [--quick] [--runs N] [--builddir DIR]
  --lib PATH      the tallymalloc shared library to preload (default: src/.libs/libtallymalloc.so)
  --quick         3 runs and half-size workloads
  --runs N        runs per allocator and workload (default 7, 3 with --quick)
  --builddir DIR  where to build and keep the benchmark programs and raw results
EOF
    exit 2
}

die() {
    echo "run.sh: $*" >&2
    exit 1
}

lib="$here/../src/.libs/libtallymalloc.so"
quick=0
runs=""
builddir=""
while [[ $# -gt 0 ]]; do
    case $1 in
    --lib) [[ $# -ge 2 ]] || usage; lib=$2; shift 2 ;;
    --lib=*) lib=${1#--lib=}; shift ;;
    --quick) quick=1; shift ;;
    --runs) [[ $# -ge 2 ]] || usage; runs=$2; shift 2 ;;
    --runs=*) runs=${1#--runs=}; shift ;;
    --builddir) [[ $# -ge 2 ]] || usage; builddir=$2; shift 2 ;;
    --builddir=*) builddir=${1#--builddir=}; shift ;;
    -h | --help) usage ;;
    *) echo "run.sh: unknown argument: $1" >&2; usage ;;
    esac
done

if [[ -z $runs ]]; then
    runs=$((quick ? 3 : 7))
fi
[[ $runs =~ ^[1-9][0-9]*$ ]] || die "--runs wants a positive integer, got '$runs'"

# Workload arguments. At full size a run takes well under a second with glibc or jemalloc on a
# 2-core EPYC VM; --quick halves them, which leaves room for an allocator ten times slower.
declare -A wl_args
if ((quick)); then
    wl_args[single]="single -n 10000000"
    wl_args[xthread]="xthread -n 5000000"
    wl_args[frag]="-r 6 -m 32"
else
    wl_args[single]="single -n 20000000"
    wl_args[xthread]="xthread -n 10000000"
    wl_args[frag]="-r 6 -m 64"
fi
workloads=(single xthread frag)
allocators=(glibc jemalloc tallymalloc)
timeout_s=${BENCH_TIMEOUT:-300}
[[ $timeout_s =~ ^[1-9][0-9]*$ ]] || die "BENCH_TIMEOUT wants seconds, got '$timeout_s'"

declare -A alloc_lib
alloc_lib[glibc]=""
alloc_lib[jemalloc]=${JEMALLOC_LIB:-/usr/lib/x86_64-linux-gnu/libjemalloc.so.2}
alloc_lib[tallymalloc]=$lib

# The runner and its helpers must never run under a preload: only the benchmark programs do.
unset LD_PRELOAD

# --- build ------------------------------------------------------------------------------------

if [[ -z $builddir ]]; then
    builddir=$(mktemp -d "${TMPDIR:-/tmp}/tallybench.XXXXXX") || die "mktemp failed"
    trap 'rm -rf "$builddir"' EXIT
else
    mkdir -p "$builddir" || die "cannot create $builddir"
fi
builddir=$(cd "$builddir" && pwd)

for prog in throughput frag; do
    if [[ ! -x $builddir/$prog || $here/$prog.c -nt $builddir/$prog ]]; then
        echo "run.sh: building $builddir/$prog" >&2
        # shellcheck disable=SC2086 # CC may carry flags, as in make
        ${CC:-cc} -O2 -pthread -o "$builddir/$prog" "$here/$prog.c" ||
            die "failed to build $prog"
    fi
done

# GNU time gives the child's peak RSS for the throughput runs; frag reports its own.
have_time=0
if [[ -x /usr/bin/time ]] && /usr/bin/time -f %M -o /dev/null true 2>/dev/null; then
    have_time=1
fi

# --- run --------------------------------------------------------------------------------------

results=$builddir/results.tsv
fields=(workload allocator run status ns_per_op peak_rss_kb end_rss_kb peak_live_kb end_live_kb
    cross_pct)
(IFS=$'\t'; echo "${fields[*]}") >"$results"

declare -A state # workload/allocator -> ok | missing | crashed (why)
present=()
for a in "${allocators[@]}"; do
    if [[ -n ${alloc_lib[$a]} && ! -r ${alloc_lib[$a]} ]]; then
        echo "run.sh: $a: ${alloc_lib[$a]} not found, skipping" >&2
        for w in "${workloads[@]}"; do state[$w/$a]=missing; done
    else
        present+=("$a")
        for w in "${workloads[@]}"; do state[$w/$a]=ok; done
    fi
done

# Describes a failed run from its exit status: 124 from timeout, 128+signal when the benchmark
# died of a signal (timeout and GNU time pass that on), anything else is the program's own exit.
describe_failure() {
    local rc=$1
    if ((rc == 124)); then
        echo "timeout ${timeout_s}s"
    elif ((rc == 137)); then
        echo "SIGKILL: timeout -k or the OOM killer"
    elif ((rc > 128)); then
        echo "signal $(kill -l $((rc - 128)) 2>/dev/null || echo $((rc - 128)))"
    else
        echo "exit $rc"
    fi
}

# run_one WORKLOAD ALLOCATOR RUN: runs one benchmark and appends a line to $results.
run_one() {
    local w=$1 a=$2 r=$3
    local out=$builddir/run.out err=$builddir/run.err rssf=$builddir/run.rss
    local -a cmd=()
    rm -f "$rssf"
    if ((have_time)) && [[ $w != frag ]]; then
        # time reports the largest RSS among the children timeout reaps, i.e. the benchmark's.
        cmd+=(/usr/bin/time -f %M -o "$rssf")
    fi
    # timeout must be the benchmark's parent: its -k KILL reaches only a child that is still
    # running, so a program that ignores TERM behind another process would outlive the run.
    # env applies the preload to the benchmark alone, not to time or timeout.
    cmd+=(timeout -k 10 "$timeout_s" env)
    # xthread then reports on stderr how many blocks really crossed threads.
    [[ $w == xthread ]] && cmd+=(THROUGHPUT_VERBOSE=1)
    [[ -n ${alloc_lib[$a]} ]] && cmd+=("LD_PRELOAD=${alloc_lib[$a]}")
    local prog=throughput
    [[ $w == frag ]] && prog=frag
    # shellcheck disable=SC2206 # the argument strings are ours and split on spaces
    cmd+=("$builddir/$prog" ${wl_args[$w]})

    # The outer redirection swallows bash's own "Segmentation fault" notice: the crash is
    # reported below, once, in our words.
    { "${cmd[@]}" >"$out" 2>"$err"; } 2>/dev/null
    local rc=$?

    local ns=- peak=- endrss=- plive=- elive=- cross=- why=""
    if ((rc != 0)); then
        why=$(describe_failure "$rc")
    elif [[ $w == frag ]]; then
        read -r peak endrss plive elive < <(awk '{
            for (i = 1; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] }
            print v["peak_rss_kb"], v["end_rss_kb"], v["peak_live_kb"], v["end_live_kb"]
        }' "$out")
        [[ ${peak:-} =~ ^[0-9]+$ && ${endrss:-} =~ ^[0-9]+$ ]] || why="bad output"
    else
        ns=$(awk '{ for (i = 1; i <= NF; i++) if ($i ~ /^ns_per_op=/) print substr($i, 11) }' \
            "$out")
        [[ $ns =~ ^[0-9]+(\.[0-9]+)?$ ]] || why="bad output"
        if [[ -z $why && -s $rssf ]]; then
            peak=$(tail -n 1 "$rssf")
            [[ $peak =~ ^[0-9]+$ ]] || peak=-
        fi
        if [[ -z $why && $w == xthread ]]; then
            cross=$(awk '
                FNR == NR { for (i = 1; i <= NF; i++) if ($i ~ /^ops=/) ops = substr($i, 5); next }
                { for (i = 1; i <= NF; i++) if ($i ~ /^cross_blocks=/) c = substr($i, 14) }
                END { if (ops > 0 && c != "") printf "%.1f\n", 100 * c / ops; else print "-" }
            ' "$out" "$err")
        fi
    fi

    if [[ -n $why ]]; then
        state[$w/$a]="crashed ($why, run $r)"
        printf '%s\t%s\t%s\tcrashed\t-\t-\t-\t-\t-\t-\n' "$w" "$a" "$r" >>"$results"
        echo "run.sh: $w $a run $r crashed: $why" >&2
        [[ -s $err ]] && sed 's/^/    /' "$err" | head -n 5 >&2
        return
    fi
    printf '%s\t%s\t%s\tok\t%s\t%s\t%s\t%s\t%s\t%s\n' \
        "$w" "$a" "$r" "$ns" "$peak" "$endrss" "$plive" "$elive" "$cross" >>"$results"
}

total=$((${#workloads[@]} * ${#present[@]} * runs))
n=0
for w in "${workloads[@]}"; do
    for ((r = 1; r <= runs; r++)); do
        for a in "${present[@]}"; do
            n=$((n + 1))
            if [[ ${state[$w/$a]} != ok ]]; then
                # A crash is usually deterministic, and a hang costs the full timeout each time.
                echo "[$n/$total] $w $a run $r/$runs: skipped, crashed earlier" >&2
                continue
            fi
            echo "[$n/$total] $w $a run $r/$runs" >&2
            run_one "$w" "$a" "$r"
        done
    done
done

# --- report -----------------------------------------------------------------------------------

# stats WORKLOAD ALLOCATOR FIELD: prints "median min max" of a results column (empty if none).
stats() {
    awk -F'\t' -v w="$1" -v a="$2" -v f="$3" '
        NR == 1 { for (i = 1; i <= NF; i++) if ($i == f) col = i; next }
        $1 == w && $2 == a && $4 == "ok" && $col != "-" { print $col }
    ' "$results" | sort -g | awk '
        { v[++n] = $1 }
        END {
            if (n == 0) exit
            m = n % 2 ? v[(n + 1) / 2] : (v[n / 2] + v[n / 2 + 1]) / 2
            print m, v[1], v[n]
        }'
}

# ratio X Y: X / Y to two decimals, or n/a when there is no Y (jemalloc missing or crashed).
ratio() {
    awk -v x="$1" -v y="$2" 'BEGIN {
        if (x == "" || y == "" || y == 0) print "n/a"; else printf "%.2f\n", x / y
    }'
}
mib() { awk -v k="$1" 'BEGIN { printf "%.1f\n", k / 1024 }'; }

declare -A med_ns med_rss
for w in "${workloads[@]}"; do
    for a in "${allocators[@]}"; do
        [[ ${state[$w/$a]} == ok ]] || continue
        read -r m _ _ < <(stats "$w" "$a" ns_per_op)
        med_ns[$w/$a]=${m:-}
        read -r m _ _ < <(stats "$w" "$a" peak_rss_kb)
        med_rss[$w/$a]=${m:-}
    done
done

echo "## tallymalloc benchmarks"
echo
echo "- date: $(date '+%Y-%m-%d %H:%M:%S %Z')"
cpu=$(awk -F': *' '/^model name/ { print $2; exit }' /proc/cpuinfo 2>/dev/null)
echo "- machine: $(nproc) CPUs, ${cpu:-unknown CPU}, Linux $(uname -r)"
if command -v dpkg-query >/dev/null 2>&1; then
    vers=$(dpkg-query -W -f='${Package} ${Version}, ' libc6 libjemalloc2 2>/dev/null)
    echo "- packages: ${vers%, }"
else
    echo "- glibc: $(ldd --version 2>/dev/null | head -n 1)"
fi
echo "- compiler: $(${CC:-cc} --version 2>/dev/null | head -n 1)"
for a in jemalloc tallymalloc; do
    # The library's mtime tells which build of a library under development was measured.
    if [[ ${state[single/$a]} == missing ]]; then
        echo "- $a: ${alloc_lib[$a]} (missing)"
    else
        echo "- $a: ${alloc_lib[$a]} (modified $(date -r "${alloc_lib[$a]}" '+%Y-%m-%d %H:%M:%S'))"
    fi
done
echo "- runs: $runs per allocator and workload, alternated; timeout ${timeout_s}s per run$(
    ((quick)) && echo '; --quick')"
echo "- arguments: single: \`${wl_args[single]#single }\`," \
    "xthread: \`${wl_args[xthread]#xthread }\`, frag: \`${wl_args[frag]}\`"
echo "- ns/op: one malloc+free pair; peak RSS: /usr/bin/time %M (throughput), VmHWM (frag)." \
    "Ratios are median / jemalloc median; lower is better."
echo
echo "| workload | allocator | ns/op median (min–max) | ratio to jemalloc" \
    "| peak RSS MiB median | RSS ratio to jemalloc |"
echo "|---|---|---|---|---|---|"
for w in "${workloads[@]}"; do
    for a in "${allocators[@]}"; do
        s=${state[$w/$a]}
        if [[ $s != ok ]]; then
            echo "| $w | $a | $s | – | – | – |"
            continue
        fi
        nscell=– nsratio=– rsscell=– rssratio=–
        read -r m lo hi < <(stats "$w" "$a" ns_per_op)
        if [[ -n ${m:-} ]]; then
            nscell=$(awk -v m="$m" -v lo="$lo" -v hi="$hi" \
                'BEGIN { printf "%.1f (%.1f–%.1f)", m, lo, hi }')
            nsratio=$(ratio "$m" "${med_ns[$w/jemalloc]:-}")
        fi
        m=${med_rss[$w/$a]:-}
        if [[ -n $m ]]; then
            rsscell=$(mib "$m")
            rssratio=$(ratio "$m" "${med_rss[$w/jemalloc]:-}")
        fi
        echo "| $w | $a | $nscell | $nsratio | $rsscell | $rssratio |"
    done
done

# The xthread rows compare like with like only if each allocator got about the same share of
# remote frees: a thread stalled inside the allocator fills the ring and the peer frees locally.
echo
line="xthread blocks freed by the other thread, % of ops, median (min–max); -x asks for 25%:"
for a in "${allocators[@]}"; do
    [[ ${state[xthread/$a]} == ok ]] || continue
    read -r m lo hi < <(stats xthread "$a" cross_pct)
    [[ -n ${m:-} ]] && line+=" $a $m ($lo–$hi);"
done
echo "${line%;}"

# Fragmentation detail: end RSS against what the program still holds shows what each allocator
# keeps after live data shrinks.
echo
echo "frag detail (MiB, medians; overhead = RSS / requested live bytes):"
echo
echo "| allocator | peak RSS (min–max) | peak live | peak overhead" \
    "| end RSS | end live | end overhead |"
echo "|---|---|---|---|---|---|---|"
for a in "${allocators[@]}"; do
    s=${state[frag/$a]}
    if [[ $s != ok ]]; then
        echo "| $a | $s | – | – | – | – | – |"
        continue
    fi
    read -r pm plo phi < <(stats frag "$a" peak_rss_kb)
    read -r em _ _ < <(stats frag "$a" end_rss_kb)
    read -r plm _ _ < <(stats frag "$a" peak_live_kb)
    read -r elm _ _ < <(stats frag "$a" end_live_kb)
    if [[ -z ${pm:-} ]]; then
        echo "| $a | no data | – | – | – | – | – |"
        continue
    fi
    awk -v a="$a" -v pm="$pm" -v plo="$plo" -v phi="$phi" -v em="$em" -v plm="$plm" -v elm="$elm" '
        BEGIN {
            printf "| %s | %.1f (%.1f–%.1f) | %.1f | %.2f | %.1f | %.1f | %.2f |\n", a,
                pm / 1024, plo / 1024, phi / 1024, plm / 1024, pm / plm,
                em / 1024, elm / 1024, em / elm
        }'
done
