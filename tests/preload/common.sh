# shellcheck shell=bash disable=SC2034  # sets variables for the tests that source it
# tests/preload/common.sh - helpers shared by the real-program tests.
#
# Sourced (never run) by tests/preload/*.sh.  Each test runs a real program
# twice, once plainly and once with libtallymalloc.so preloaded, checks that
# both runs print the same thing, and checks from the JSON stats files that
# the library really served small requests from its own pools.
#
# Environment (set by Makefile.am): TALLY_LIB or TALLYMALLOC_SO (absolute
# path of the built library), top_srcdir, top_builddir, srcdir.
#
# Exports to the tests:
#   tmp                     per-test scratch dir, removed at exit
#   preload_srcdir          the directory holding this file (and the inputs)
#   need PROG PACKAGE       exit 99 unless PROG is installed
#   run_plain [-n LABEL] [-i STDIN] CMD...
#   run_tally [-n LABEL] [-i STDIN] CMD...
#                           run CMD without / with the library; stdout,
#                           stderr and exit status go to $tmp/out/LABEL.*
#                           (LABEL defaults to "plain" / "tally")
#   start_bg KIND LABEL CMD... / wait_bg LABEL PID SECS
#                           the same in the background (KIND plain|tally)
#   check_same [PLAIN TALLY]
#                           both runs printed the same stdout, same status
#   check_status LABEL WANT the run LABEL exited with status WANT
#   small_served [PID]      sum of totals.small_mallocs over every stats file
#                           written by the tally runs (or by process PID);
#                           fails if there is none or the sum is 0
#   fail MSG / fatal MSG / hard_error MSG / on_exit CMD / finish
#
# Knobs for a person running a test by hand: PRELOAD_TEST_TIMEOUT (seconds
# one run may take, default 100), PRELOAD_KEEP_TMP=1 (keep the scratch dir).
# PRELOAD_CHECK=1 (tests/check/programs.sh) runs the program with the heap
# checks on (TALLY_CHECK=1, and TALLY_VERBOSE=1 to show they were): the same
# output is wanted, and no heap error (finish fails on any, and on a run
# whose options did not have the checks on).
# They are not TALLY_* names: the library warns about TALLY_* it does not know.
#
# Exit codes follow Automake's parallel harness: 0 pass, 1 fail, 99 hard
# error.  We never skip (77): the project's setup installs every program.

set -u
set -o pipefail

# Never let the library leak into the checking commands: the only process
# that sees LD_PRELOAD is the one run_tally starts (and its children).
unset LD_PRELOAD TALLY_STATS TALLY_STATS_FILE

test_name=$(basename "${0%.sh}")
preload_srcdir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
failures=0
exit_hooks=()

# Seconds one run_plain/run_tally may take before it is killed.
run_timeout=${PRELOAD_TEST_TIMEOUT:-100}

say() { printf '%s: %s\n' "$test_name" "$*"; }

# The text of a profiler dump, compressed (zstd, the default) or not.
dump_text() { zstd -dcqf -- "$1"; }

hard_error() {
    say "HARD ERROR: $*" >&2
    exit 99
}

# Record a failure and keep going, so one run reports everything it can.
fail() {
    say "FAIL: $*" >&2
    failures=$((failures + 1))
}

# A failure after which the test cannot usefully continue.
fatal() {
    say "FAIL: $*" >&2
    exit 1
}

finish() {
    # With the heap checks on: not one error in any run with the library.
    if [ -n "${PRELOAD_CHECK:-}" ]; then
        local k label
        for k in "$tmp"/out/*.kind; do
            [ -e "$k" ] && [ "$(cat "$k")" = tally ] || continue
            label=$(basename "$k" .kind)
            if grep -qE '^tally: (Invalid|Mismatched|ERROR SUMMARY)' "$tmp/out/$label.err"; then
                fail "$label: TALLY_CHECK reported heap errors:"
                grep -E '^tally: ' "$tmp/out/$label.err" | head -n 10 >&2
            fi
            grep -qE '^tally: TALLY_CHECK += 1 ' "$tmp/out/$label.err" ||
                fail "$label: the checks were not on (no TALLY_CHECK = 1 among the options)"
        done
        say "PRELOAD_CHECK: no heap error reported"
    fi
    if [ "$failures" -ne 0 ]; then
        say "$failures check(s) failed"
        exit 1
    fi
    say "PASS"
    exit 0
}

on_exit() { exit_hooks+=("$1"); }

run_exit_hooks() {
    local status=$? hook
    for hook in "${exit_hooks[@]}"; do
        eval "$hook" || true
    done
    if [ -n "${tmp:-}" ] && [ -d "$tmp" ]; then
        if [ -n "${PRELOAD_KEEP_TMP:-}" ]; then
            say "keeping $tmp" >&2
        else
            rm -rf "$tmp"
        fi
    fi
    exit "$status"
}

need() {
    local prog=$1 package=$2
    if [[ $prog == /* ]]; then
        [ -x "$prog" ] && return 0
    elif command -v "$prog" >/dev/null 2>&1; then
        return 0
    fi
    hard_error "$prog is not installed; it comes with the Debian package" \
        "'$package' (apt-get install $package)"
}

need timeout coreutils
need diff diffutils
need /usr/bin/python3 python3

# The library's path: TALLY_LIB, or TALLYMALLOC_SO as Makefile.am calls it.
TALLY_LIB=${TALLY_LIB:-${TALLYMALLOC_SO:-}}
if [ -z "$TALLY_LIB" ]; then
    hard_error "neither TALLY_LIB nor TALLYMALLOC_SO is set" \
        "(the absolute path of libtallymalloc.so)"
fi
if [ ! -f "$TALLY_LIB" ]; then
    hard_error "TALLY_LIB=$TALLY_LIB does not exist; build the library first"
fi
case $TALLY_LIB in
/*) ;;
*) hard_error "TALLY_LIB=$TALLY_LIB is not an absolute path" ;;
esac

tmp=$(mktemp -d "${TMPDIR:-/tmp}/tally-$test_name.XXXXXX") ||
    hard_error "mktemp -d failed"
trap run_exit_hooks EXIT
trap 'exit 1' INT TERM HUP
mkdir -p "$tmp/out" "$tmp/stats"

# preload_env KIND: sets the array run_env to the words that start a
# command plainly or with the library.  `timeout` and `env` themselves start
# without the library; env puts LD_PRELOAD in place just before it execs.
# TALLY_LIB is the harness's, not one of the library's TALLY_* options, so
# the commands do not see it (the library warns about unknown TALLY_*).
preload_env() {
    run_env=(timeout --kill-after=10 "$run_timeout" env -u TALLY_LIB -u TALLYMALLOC_SO)
    if [ "$1" = tally ]; then
        run_env+=(LD_PRELOAD="$TALLY_LIB" TALLY_STATS=json
                  TALLY_STATS_FILE="$tmp/stats/stats.%p.json")
        [ -n "${PRELOAD_CHECK:-}" ] && run_env+=(TALLY_CHECK=1 TALLY_VERBOSE=1)
    fi
}

# check_exit LABEL RC KIND: report timeouts, signals and loader errors.
check_exit() {
    local label=$1 rc=$2 kind=$3 err=$tmp/out/$1.err
    echo "$rc" >"$tmp/out/$label.rc"
    if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
        fail "$label did not finish within ${run_timeout}s or was killed (status $rc)"
    elif [ "$rc" -gt 128 ]; then
        say "$label died of signal $((rc - 128))" >&2
    fi
    if [ "$kind" = tally ] && grep -q 'cannot be preloaded' "$err"; then
        fail "$label: the dynamic loader did not load $TALLY_LIB:"
        grep 'cannot be preloaded' "$err" | head -n 3 >&2
    fi
}

# run_cmd KIND [-n LABEL] [-i STDIN] CMD...: the body of run_plain and
# run_tally.
run_cmd() {
    local kind=$1 label=$1 stdin=/dev/null rc
    shift
    while [ $# -gt 0 ]; do
        case $1 in
        -n) label=$2; shift 2 ;;
        -i) stdin=$2; shift 2 ;;
        *) break ;;
        esac
    done
    local out=$tmp/out/$label
    preload_env "$kind"
    echo "$kind" >"$out.kind"
    say "run $label: $*"
    "${run_env[@]}" "$@" <"$stdin" >"$out.out" 2>"$out.err"
    rc=$?
    check_exit "$label" "$rc" "$kind"
    return 0
}

# start_bg KIND LABEL CMD...: start CMD in the background, plainly or with
# the library, output to $tmp/out/LABEL.*; sets bg_pid (the pid of the
# `timeout` around CMD: a TERM to it reaches CMD).  wait_bg LABEL PID SECS
# waits at most SECS seconds for it and records its exit status; returns 1
# if it is still running then.
start_bg() {
    local kind=$1 label=$2
    shift 2
    preload_env "$kind"
    echo "$kind" >"$tmp/out/$label.kind"
    say "start $label: $*"
    "${run_env[@]}" "$@" </dev/null >"$tmp/out/$label.out" 2>"$tmp/out/$label.err" &
    bg_pid=$!
}

wait_bg() {
    local label=$1 pid=$2 secs=$3 i rc kind
    for ((i = 0; i < secs * 10; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        fail "$label is still running after ${secs}s"
        return 1
    fi
    wait "$pid"
    rc=$?
    kind=$(cat "$tmp/out/$label.kind")
    check_exit "$label" "$rc" "$kind"
    return 0
}

run_plain() { run_cmd plain "$@"; }
run_tally() { run_cmd tally "$@"; }

# show_stderr LABEL: the tail of a run's stderr, for failure reports.
show_stderr() {
    local err=$tmp/out/$1.err
    if [ -s "$err" ]; then
        say "--- last lines of $1's stderr:" >&2
        tail -n 25 "$err" >&2
        say "---" >&2
    fi
}

run_status() { cat "$tmp/out/$1.rc"; }

check_status() {
    local label=$1 want=$2 got
    got=$(run_status "$label")
    if [ "$got" != "$want" ]; then
        fail "$label exited with status $got, expected $want"
        show_stderr "$label"
        return 1
    fi
    return 0
}

# check_same [PLAIN TALLY]: identical stdout and exit status.
check_same() {
    local a=${1:-plain} b=${2:-tally} ok=0 ra rb
    ra=$(run_status "$a")
    rb=$(run_status "$b")
    if [ "$ra" != "$rb" ]; then
        fail "exit status differs: $a=$ra $b=$rb"
        show_stderr "$a"
        show_stderr "$b"
        ok=1
    fi
    if ! cmp -s "$tmp/out/$a.out" "$tmp/out/$b.out"; then
        fail "stdout differs between $a and $b:"
        diff -u --label "$a" --label "$b" \
            "$tmp/out/$a.out" "$tmp/out/$b.out" | head -n 60 >&2
        [ "$ok" -eq 1 ] || show_stderr "$b"
        ok=1
    fi
    if [ ! -s "$tmp/out/$a.out" ]; then
        fail "$a printed nothing on stdout; the comparison proves nothing"
        show_stderr "$a"
        ok=1
    fi
    [ "$ok" -eq 0 ] && say "$a and $b agree ($(wc -l <"$tmp/out/$a.out") lines, status $ra)"
    return "$ok"
}

# small_served [PID]: prints the sum of totals.small_mallocs over all stats
# files of this test's tally runs (or over the one of process PID); fails
# the test if there is no such file, a file that is not valid JSON, or a
# sum of 0.
small_served() {
    local pattern="stats.*.json" what="stats file(s)" report nfiles total
    if [ $# -gt 0 ]; then
        pattern="stats.$1.json"
        what="stats file(s) of pid $1"
    fi
    report=$(/usr/bin/python3 -I -c '
import glob, json, os, sys
files = sorted(glob.glob(os.path.join(sys.argv[1], sys.argv[2])))
total, bad = 0, []
for name in files:
    try:
        with open(name) as f:
            doc = json.load(f)
        total += int(doc["totals"]["small_mallocs"])
    except Exception as e:
        bad.append("%s: %s: %s" % (name, type(e).__name__, e))
print(len(files), total)
for b in bad:
    print(b)
' "$tmp/stats" "$pattern") || {
        fail "could not read the stats files in $tmp/stats"
        return 1
    }
    read -r nfiles total <<<"$(head -n 1 <<<"$report")"
    if [ "$(wc -l <<<"$report")" -gt 1 ]; then
        fail "stats files that are not valid tallymalloc JSON:"
        tail -n +2 <<<"$report" | head -n 10 >&2
    fi
    if [ "$nfiles" -eq 0 ]; then
        fail "no $what in $tmp/stats (TALLY_STATS=json," \
            "TALLY_STATS_FILE=$tmp/stats/stats.%p.json): was the library loaded?"
        return 1
    fi
    if [ "$total" -eq 0 ]; then
        fail "small_mallocs is 0 over $nfiles $what: the pools served nothing"
        return 1
    fi
    say "small_served: $total small mallocs over $nfiles $what"
    return 0
}
