#!/usr/bin/env bash
# run.sh - run the tallymalloc benchmarks against glibc, jemalloc, mimalloc and tcmalloc; print a
# markdown report.
#
#   bench/run.sh --lib PATH/libtallymalloc.so [--quick] [--runs N] [--builddir DIR]
#
# Allocators: glibc, jemalloc (Debian's libjemalloc2), mimalloc (libmimalloc2.0), tcmalloc
# (libtcmalloc-minimal4), and tallymalloc with TALLY_PROFILE=off, sample and all. Workloads: the
# micro benchmarks of throughput.c, server.c and frag.c, and real programs timed by the wall clock
# (CPython, sqlite3, gcc, git). Each says what it stresses (the `workloads` table below).
#
# Builds throughput, server and frag (bench/*.c) into DIR if they are missing or older than their source;
# without --builddir it uses a temporary directory that is removed at exit. Allocators are
# alternated run by run (run 1 of each, then run 2 of each, ...) so slow phases of a noisy machine
# spread over all of them instead of landing on one. The report goes to stdout, progress to
# stderr, and every run's raw result to DIR/results.tsv.
#
# Environment: CC (default cc), JEMALLOC_LIB, MIMALLOC_LIB, TCMALLOC_LIB (default the Debian
# paths), BENCH_TIMEOUT (seconds per run, default 300).
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
  --only LIST     only these workloads (comma-separated names from the report's first table)
  --chained       also tallymalloc (sample mode) in front of jemalloc, mimalloc and tcmalloc
                  (tally+jemalloc, ...: LD_PRELOAD="libtallymalloc.so LIB", TALLY_LARGE=auto)
  --write         also write the report to bench/RESULTS.md, the raw runs to bench/results.tsv,
                  and the charts bench/time.svg and bench/rss.svg (bench/chart.py)
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
only=""
write=0
chained=0
while [[ $# -gt 0 ]]; do
    case $1 in
    --lib) [[ $# -ge 2 ]] || usage; lib=$2; shift 2 ;;
    --lib=*) lib=${1#--lib=}; shift ;;
    --quick) quick=1; shift ;;
    --runs) [[ $# -ge 2 ]] || usage; runs=$2; shift 2 ;;
    --runs=*) runs=${1#--runs=}; shift ;;
    --builddir) [[ $# -ge 2 ]] || usage; builddir=$2; shift 2 ;;
    --builddir=*) builddir=${1#--builddir=}; shift ;;
    --only) [[ $# -ge 2 ]] || usage; only=$2; shift 2 ;;
    --only=*) only=${1#--only=}; shift ;;
    --chained) chained=1; shift ;;
    --write) write=1; shift ;;
    -h | --help) usage ;;
    *) echo "run.sh: unknown argument: $1" >&2; usage ;;
    esac
done

if [[ -z $runs ]]; then
    runs=$((quick ? 3 : 7))
fi
[[ $runs =~ ^[1-9][0-9]*$ ]] || die "--runs wants a positive integer, got '$runs'"

# Workloads: kind (tp: throughput.c, srv: server.c, ns per malloc+free; frag: frag.c, memory; wall: a real
# program, seconds), arguments, and what each stresses. At full size a tp run takes well under a
# second with jemalloc on a 2-core EPYC VM; --quick halves them.
declare -A wl_args wl_kind wl_what wl_env wl_stdin
workloads=()
# workload NAME KIND ARGS WHAT: one row of the table (gcc's and git's arguments come with the build)
workload() {
    workloads+=("$1")
    wl_kind[$1]=$2
    wl_args[$1]=$3
    wl_what[$1]=$4
}
h=$((quick ? 2 : 1))
workload single tp "single -n $((20000000 / h))" \
    "small-object churn, one thread: 4096 live blocks, random sizes 16..512 B"
workload multi tp "multi -t 2 -n $((20000000 / h))" \
    "the same on two threads at once, each on its own blocks: thread-local scaling"
workload xthread tp "xthread -n $((10000000 / h))" \
    "two threads, a quarter of each one's blocks freed by the other"
workload prodcons tp "prodcons -n $((10000000 / h))" \
    "producer/consumer: one thread allocates, the other frees every block"
workload large tp "single -n $((1000000 / h)) -a 513 -b 65536" \
    "large blocks, 513 B..64 KiB: what tallymalloc hands to glibc's malloc"
workload mixed tp "single -n $((4000000 / h)) -a 16 -b 4096" \
    "mixed sizes 16 B..4 KiB: seven in eight above tallymalloc's 512 B limit"
workload larson srv "larson -t 4 -d $((2 / h))" \
    "Larson-Krishnan server: 4 threads replace random blocks of 8..1000 B, each handing its blocks on to a new thread every 10,000 ops"
workload mstress srv "mstress -t 6 -i $((400 / h))" \
    "many short-lived threads (6 at a time), sizes mostly 8..256 B with some up to 64 KiB, blocks kept across thread lifetimes"
workload gthread srv "gthread -t 4 -d $((2 / h))" \
    "glibc's bench-malloc-thread: 4 threads each churning random sizes 8..1024 B (smaller likelier)"
workload frag frag "-r 6 -m $((64 / h))" \
    "fragmentation: fill with mixed small sizes, free a random 90%, refill with others"
workload python wall "/usr/bin/python3 $here/../tests/preload/workload.py" \
    "CPython (PYTHONMALLOC=malloc) building and dropping dicts, lists, strings, objects"
wl_env[python]="PYTHONMALLOC=malloc PYTHONHASHSEED=0"
workload sqlite wall "/usr/bin/sqlite3 :memory:" \
    "sqlite3 building, indexing and querying a 200,000-row table"
wl_stdin[sqlite]=$here/sqlite.sql
workload gcc wall "" "gcc -O2 compiling a generated 800-function C file"
workload git wall "" "git log -p --stat over this repository's history"
workload redis redis "-n $((200000 / h)) -c 50 -P 16 -d 64 -t set,get,lpush,lpop,incr,hset" \
    "redis-server under load from redis-benchmark on 127.0.0.1 (time: the benchmark's; RSS: the server's peak)"
allocators=(glibc jemalloc mimalloc tcmalloc tally-off tally-sample tally-all)
if [[ -n $only ]]; then
    keep=()
    for w in ${only//,/ }; do
        [[ -n ${wl_kind[$w]:-} ]] || die "--only: no workload '$w' (${workloads[*]})"
        keep+=("$w")
    done
    workloads=("${keep[@]}")
fi
timeout_s=${BENCH_TIMEOUT:-300}
[[ $timeout_s =~ ^[1-9][0-9]*$ ]] || die "BENCH_TIMEOUT wants seconds, got '$timeout_s'"

declare -A alloc_lib alloc_env
alloc_lib[glibc]=""
alloc_lib[jemalloc]=${JEMALLOC_LIB:-/usr/lib/x86_64-linux-gnu/libjemalloc.so.2}
alloc_lib[mimalloc]=${MIMALLOC_LIB:-/usr/lib/x86_64-linux-gnu/libmimalloc.so.2}
alloc_lib[tcmalloc]=${TCMALLOC_LIB:-/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4}
for m in off sample all; do
    alloc_lib[tally-$m]=$lib
    alloc_env[tally-$m]="TALLY_PROFILE=$m"
done
if ((chained)); then
    for a in jemalloc mimalloc tcmalloc; do
        allocators+=("tally+$a")
        alloc_lib[tally+$a]="$lib ${alloc_lib[$a]}"
    done
fi

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

for prog in throughput server frag; do
    if [[ ! -x $builddir/$prog || $here/$prog.c -nt $builddir/$prog ]]; then
        echo "run.sh: building $builddir/$prog" >&2
        # shellcheck disable=SC2086 # CC may carry flags, as in make
        ${CC:-cc} -O2 -pthread -o "$builddir/$prog" "$here/$prog.c" ||
            die "failed to build $prog"
    fi
done

# gcc's input: 3,000 functions of loops, switches and arithmetic, generated the same each time.
if [[ ! -s $builddir/big.c ]]; then
    awk 'BEGIN {
        for (i = 0; i < 800; i++) {
            printf "int f%d(int *a, int n) {\n  int s = %d;\n", i, i
            printf "  for (int k = 0; k < n; k++) {\n    switch ((a[k] + %d) %% 5) {\n", i
            for (c = 0; c < 5; c++)
                printf "    case %d: s += a[k] * %d - (s >> %d); break;\n", c, c + i % 7, c + 1
            printf "    }\n  }\n  return s ^ %d;\n}\n", i * 7
        }
    }' >"$builddir/big.c"
fi
wl_args[gcc]="gcc -O2 -c -o /dev/null $builddir/big.c"
gitdir=$(cd "$here/.." && pwd)
wl_args[git]="git -C $gitdir log -p --stat"

# GNU time gives the child's peak RSS for the throughput runs; frag reports its own.
have_time=0
if [[ -x /usr/bin/time ]] && /usr/bin/time -f %M -o /dev/null true 2>/dev/null; then
    have_time=1
fi

# --- run --------------------------------------------------------------------------------------

results=$builddir/results.tsv
fields=(workload allocator run status time peak_rss_kb end_rss_kb peak_live_kb end_live_kb
    cross_pct)
(IFS=$'\t'; echo "${fields[*]}") >"$results"

declare -A state # workload/allocator -> ok | missing | crashed (why)
present=()
for a in "${allocators[@]}"; do
    readable=1
    for l in ${alloc_lib[$a]}; do [[ -r $l ]] || readable=0; done
    if ((!readable)); then
        echo "run.sh: $a: ${alloc_lib[$a]} not found, skipping" >&2
        for w in "${workloads[@]}"; do state[$w/$a]=missing; done
    else
        present+=("$a")
        for w in "${workloads[@]}"; do state[$w/$a]=ok; done
    fi
done
# A real program that is not installed (or a git history that is not there) is missing for all.
for w in "${workloads[@]}"; do
    [[ ${wl_kind[$w]} == wall || ${wl_kind[$w]} == redis ]] || continue
    prog=${wl_args[$w]%% *}
    [[ $w == redis ]] && prog=redis-benchmark && ! command -v redis-server >/dev/null && prog=redis-server
    ok=1
    command -v "$prog" >/dev/null 2>&1 || ok=0
    [[ $w == git ]] && ! git -C "$gitdir" rev-parse --git-dir >/dev/null 2>&1 && ok=0
    if ((!ok)); then
        echo "run.sh: $w: $prog (or its input) not found, skipping" >&2
        for a in "${allocators[@]}"; do state[$w/$a]=missing; done
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

# run_redis ALLOCATOR OUT ERR TIMEF: a redis-server under the allocator on a free port of
# 127.0.0.1, redis-benchmark against it (timed by GNU time into TIMEF), then the server's peak RSS
# (VmHWM) appended to TIMEF and the server shut down. Returns redis-benchmark's status, or 1 when
# the server does not come up.
run_redis() {
    local a=$1 out=$2 err=$3 timef=$4 port pid ok=0
    local -a env_args=()
    [[ -n ${alloc_lib[$a]} ]] && env_args+=("LD_PRELOAD=${alloc_lib[$a]}")
    # shellcheck disable=SC2206
    [[ -n ${alloc_env[$a]:-} ]] && env_args+=(${alloc_env[$a]})
    for attempt in 1 2 3 4 5; do
        port=$((20000 + (RANDOM + attempt * 631) % 20000))
        env "${env_args[@]}" redis-server --port "$port" --bind 127.0.0.1 --save '' \
            --appendonly no --daemonize no >"$builddir/redis.log" 2>&1 &
        pid=$!
        for _ in $(seq 50); do
            if redis-cli -h 127.0.0.1 -p "$port" ping 2>/dev/null | grep -qx PONG; then
                ok=1
                break
            fi
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        ((ok)) && break
        kill "$pid" 2>/dev/null
        wait "$pid" 2>/dev/null
    done
    if ((!ok)); then
        echo "redis-server did not come up: $(tail -n 3 "$builddir/redis.log")" >"$err"
        return 1
    fi
    # shellcheck disable=SC2086 # the arguments are ours
    /usr/bin/time -f "%e %M" -o "$timef" timeout -k 10 "$timeout_s" \
        redis-benchmark -h 127.0.0.1 -p "$port" ${wl_args[redis]} -q >"$out" 2>"$err"
    local rc=$?
    local hwm
    hwm=$(awk '/^VmHWM/ {print $2}' "/proc/$pid/status" 2>/dev/null)
    # the server's peak RSS replaces the benchmark client's in the second field
    [[ -s $timef && -n $hwm ]] && awk -v h="$hwm" '{print $1, h}' "$timef" >"$timef.x" && mv "$timef.x" "$timef"
    redis-cli -h 127.0.0.1 -p "$port" shutdown nosave >/dev/null 2>&1
    for _ in $(seq 50); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -9 "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
    return $rc
}

# run_one WORKLOAD ALLOCATOR RUN: runs one benchmark and appends a line to $results.
run_one() {
    local w=$1 a=$2 r=$3
    local out=$builddir/run.out err=$builddir/run.err rssf=$builddir/run.rss input=/dev/null
    local kind=${wl_kind[$w]}
    local -a cmd=()
    rm -f "$rssf"
    if ((have_time)) && [[ $kind != frag ]]; then
        # time reports the largest RSS among the children timeout reaps, i.e. the benchmark's
        # (gcc: the largest of the driver, cc1 and as), and the wall time of a real program.
        cmd+=(/usr/bin/time -f "%e %M" -o "$rssf")
    fi
    # timeout must be the benchmark's parent: its -k KILL reaches only a child that is still
    # running, so a program that ignores TERM behind another process would outlive the run.
    # env applies the preload to the benchmark alone, not to time or timeout.
    cmd+=(timeout -k 10 "$timeout_s" env)
    # xthread then reports on stderr how many blocks really crossed threads.
    [[ $w == xthread ]] && cmd+=(THROUGHPUT_VERBOSE=1)
    # shellcheck disable=SC2206 # the strings are ours and split on spaces
    [[ -n ${wl_env[$w]:-} ]] && cmd+=(${wl_env[$w]})
    [[ -n ${alloc_lib[$a]} ]] && cmd+=("LD_PRELOAD=${alloc_lib[$a]}")
    # shellcheck disable=SC2206
    [[ -n ${alloc_env[$a]:-} ]] && cmd+=(${alloc_env[$a]})
    case $kind in
    tp) cmd+=("$builddir/throughput") ;;
    srv) cmd+=("$builddir/server") ;;
    frag) cmd+=("$builddir/frag") ;;
    esac
    # shellcheck disable=SC2206 # the argument strings are ours and split on spaces
    cmd+=(${wl_args[$w]})
    [[ -n ${wl_stdin[$w]:-} ]] && input=${wl_stdin[$w]}

    # The outer redirection swallows bash's own "Segmentation fault" notice: the crash is
    # reported below, once, in our words.
    local rc
    if [[ $kind == redis ]]; then
        run_redis "$a" "$out" "$err" "$rssf" 2>/dev/null
        rc=$?
    else
        { "${cmd[@]}" <"$input" >"$out" 2>"$err"; } 2>/dev/null
        rc=$?
    fi

    local t=- peak=- endrss=- plive=- elive=- cross=- why=""
    if ((rc != 0)); then
        why=$(describe_failure "$rc")
    elif [[ $kind == frag ]]; then
        read -r peak endrss plive elive < <(awk '{
            for (i = 1; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] }
            print v["peak_rss_kb"], v["end_rss_kb"], v["peak_live_kb"], v["end_live_kb"]
        }' "$out")
        [[ ${peak:-} =~ ^[0-9]+$ && ${endrss:-} =~ ^[0-9]+$ ]] || why="bad output"
    else
        if [[ $kind == tp || $kind == srv ]]; then
            t=$(awk '{ for (i = 1; i <= NF; i++) if ($i ~ /^ns_per_op=/) print substr($i, 11) }' \
                "$out")
        elif [[ -s $rssf ]]; then
            t=$(tail -n 1 "$rssf" | awk '{print $1}')
        fi
        [[ $t =~ ^[0-9]+(\.[0-9]+)?$ ]] || why="bad output"
        if [[ -z $why && -s $rssf ]]; then
            peak=$(tail -n 1 "$rssf" | awk '{print $2}')
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
        "$w" "$a" "$r" "$t" "$peak" "$endrss" "$plive" "$elive" "$cross" >>"$results"
}

total=$((${#workloads[@]} * ${#present[@]} * runs))
n=0
started=$(date +%s)
for w in "${workloads[@]}"; do
    for ((r = 1; r <= runs; r++)); do
        for a in "${present[@]}"; do
            n=$((n + 1))
            if [[ ${state[$w/$a]} != ok ]]; then
                # A crash is usually deterministic, and a hang costs the full timeout each time.
                [[ ${state[$w/$a]} == missing ]] || echo "[$n/$total] $w $a run $r/$runs: skipped, crashed earlier" >&2
                continue
            fi
            el=$(($(date +%s) - started))
            left=$((n > 1 ? el * (total - n + 1) / (n - 1) : 0))
            printf '[%d/%d] %s %s run %d/%d (%dm%02ds so far, about %dm%02ds left)\n' "$n" "$total" \
                "$w" "$a" "$r" "$runs" $((el / 60)) $((el % 60)) $((left / 60)) $((left % 60)) >&2
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
unit() { case ${wl_kind[$1]} in tp | srv) echo "ns/op" ;; wall | redis) echo "s" ;; *) echo "" ;; esac; }

declare -A med_t med_rss
for w in "${workloads[@]}"; do
    for a in "${allocators[@]}"; do
        [[ ${state[$w/$a]} == ok ]] || continue
        read -r m _ _ < <(stats "$w" "$a" time)
        med_t[$w/$a]=${m:-}
        read -r m _ _ < <(stats "$w" "$a" peak_rss_kb)
        med_rss[$w/$a]=${m:-}
    done
done

report() {
echo "## tallymalloc benchmarks"
echo
echo "- date: $(date '+%Y-%m-%d %H:%M:%S %Z')"
cpu=$(awk -F': *' '/^model name/ { print $2; exit }' /proc/cpuinfo 2>/dev/null)
echo "- machine: $(nproc) CPUs, ${cpu:-unknown CPU}, $(awk '/^MemTotal/ {printf "%.0f GiB", $2 / 1048576}' /proc/meminfo) RAM, Linux $(uname -r)"
if command -v dpkg-query >/dev/null 2>&1; then
    vers=$(dpkg-query -W -f='${Package} ${Version}, ' libc6 libjemalloc2 libmimalloc2.0 \
        libtcmalloc-minimal4 python3.11 sqlite3 gcc-12 git 2>/dev/null)
    echo "- packages: ${vers%, }"
fi
echo "- compiler of the micro benchmarks: $(${CC:-cc} --version 2>/dev/null | head -n 1)"
echo "- tallymalloc: $lib (modified $(date -r "$lib" '+%Y-%m-%d %H:%M:%S'))"
for a in jemalloc mimalloc tcmalloc; do
    [[ ${state[${workloads[0]}/$a]} == missing ]] && echo "- $a: ${alloc_lib[$a]} (missing)"
done
echo "- runs: $runs per allocator and workload, allocators alternated run by run; timeout" \
    "${timeout_s}s per run$( ((quick)) && echo '; --quick (half-size workloads)')"
echo "- time: ns per malloc+free pair (micro benchmarks) or seconds of wall time (programs);" \
    "peak RSS: /usr/bin/time %M (VmHWM for frag). Ratios are median / jemalloc's median:" \
    "lower is better."
echo
echo "| workload | what it stresses | arguments |"
echo "|---|---|---|"
for w in "${workloads[@]}"; do
    echo "| $w | ${wl_what[$w]} | \`${wl_args[$w]/#$here\/..\//}\` |"
done
echo
echo "| workload | allocator | time median (min–max) | time / jemalloc | peak RSS MiB | RSS / jemalloc |"
echo "|---|---|---|---|---|---|"
for w in "${workloads[@]}"; do
    for a in "${allocators[@]}"; do
        s=${state[$w/$a]}
        if [[ $s != ok ]]; then
            echo "| $w | $a | $s | – | – | – |"
            continue
        fi
        tcell=– tratio=– rsscell=– rssratio=–
        read -r m lo hi < <(stats "$w" "$a" time)
        if [[ -n ${m:-} ]]; then
            tcell=$(awk -v m="$m" -v lo="$lo" -v hi="$hi" -v u="$(unit "$w")" \
                'BEGIN { printf "%.2f (%.2f–%.2f) %s", m, lo, hi, u }')
            tratio=$(ratio "$m" "${med_t[$w/jemalloc]:-}")
        fi
        m=${med_rss[$w/$a]:-}
        if [[ -n $m ]]; then
            rsscell=$(mib "$m")
            rssratio=$(ratio "$m" "${med_rss[$w/jemalloc]:-}")
        fi
        echo "| $w | $a | $tcell | $tratio | $rsscell | $rssratio |"
    done
done

# Geometric means of the ratios over the workloads where both the allocator and jemalloc have a
# figure: one number per allocator, as mimalloc-bench reports.
echo
echo "Geometric mean of the ratios to jemalloc over the workloads (time: all but frag):"
echo
echo "| allocator | time / jemalloc | peak RSS / jemalloc | workloads |"
echo "|---|---|---|---|"
for a in "${allocators[@]}"; do
    lt=0 lr=0 nt=0 nr=0
    for w in "${workloads[@]}"; do
        [[ ${state[$w/$a]} == ok && ${state[$w/jemalloc]} == ok ]] || continue
        x=${med_t[$w/$a]:-} y=${med_t[$w/jemalloc]:-}
        if [[ -n $x && -n $y && ${wl_kind[$w]} != frag ]]; then
            lt=$(awk -v s="$lt" -v x="$x" -v y="$y" 'BEGIN { printf "%.9f", s + log(x / y) }')
            nt=$((nt + 1))
        fi
        x=${med_rss[$w/$a]:-} y=${med_rss[$w/jemalloc]:-}
        if [[ -n $x && -n $y ]]; then
            lr=$(awk -v s="$lr" -v x="$x" -v y="$y" 'BEGIN { printf "%.9f", s + log(x / y) }')
            nr=$((nr + 1))
        fi
    done
    awk -v a="$a" -v lt="$lt" -v nt="$nt" -v lr="$lr" -v nr="$nr" 'BEGIN {
        printf "| %s | %s | %s | %d |\n", a, nt ? sprintf("%.2f", exp(lt / nt)) : "–",
            nr ? sprintf("%.2f", exp(lr / nr)) : "–", (nt > nr ? nt : nr) }'
done

in_list() { [[ " ${workloads[*]} " == *" $1 "* ]]; }
# The xthread rows compare like with like only if each allocator got about the same share of
# remote frees: a thread stalled inside the allocator fills the ring and the peer frees locally.
in_list xthread && echo
in_list xthread && line="xthread blocks freed by the other thread, % of ops, median (min–max); -x asks for 25%:"
for a in "${allocators[@]}"; do
    [[ ${state[xthread/$a]:-} == ok ]] || continue
    read -r m lo hi < <(stats xthread "$a" cross_pct)
    [[ -n ${m:-} ]] && line+=" $a $m ($lo–$hi);"
done
in_list xthread && echo "${line%;}"
in_list frag || return 0

# Fragmentation detail: RSS against what the program holds, at the peak and at the end.
echo
echo "frag detail (MiB, medians; overhead = RSS / requested live bytes):"
echo
echo "| allocator | peak RSS (min–max) | peak live | peak overhead" \
    "| end RSS | end live | end overhead |"
echo "|---|---|---|---|---|---|---|"
for a in "${allocators[@]}"; do
    s=${state[frag/$a]:-not run}
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
}

if ((write)); then
    report >"$builddir/report.md"
    cat "$builddir/report.md"
    cp "$builddir/report.md" "$here/RESULTS.md" && cp "$results" "$here/results.tsv" &&
        python3 "$here/chart.py" "$results" "$here" ||
        die "cannot write $here/RESULTS.md, results.tsv and the charts"
    echo "run.sh: wrote $here/RESULTS.md, $here/results.tsv, $here/time.svg and $here/rss.svg" >&2
else
    report
fi
