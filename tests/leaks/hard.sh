#!/bin/bash
# tests/leaks/hard.sh - the leak check where it is hard (tests/leaks/hardcases.c): threads that
# block every signal (not stopped: their stacks scanned whole, the dump says approximate), threads
# allocating while the process exits (stopped mid-malloc: no hang, no crash), a program that owns
# the signal the check stops threads with (its handler still works), fork (each process checks
# itself), exit from a thread (main is stopped and its frame is a root), /proc hidden (one line,
# a dump without kinds), and TALLY_LEAKS with another TALLY_PROFILE (one line, all mode).
. "$top_srcdir/tests/preload/common.sh"
prog=$top_builddir/tests/leaks/hardcases
tally=$top_builddir/tools/tally
[ -x "$prog" ] || hard_error "$prog is not built"
cd "$tmp" || fatal "no scratch dir"

totals() { zstd -dcqf -- "$1" | grep '^totals'; }
field() { totals "$1" | tr ' ' '\n' | sed -n "s/^$2=//p"; }

# run CASE: the program under the check, with a timeout; the dump is CASE.tly
run() {
    timeout 60 env LD_PRELOAD="$TALLY_LIB" TALLY_LEAKS=quiet TALLY_OUT="$tmp/$1.tly" "$prog" "$1" \
        >"$1.out" 2>"$1.err"
}

summary() { # DUMP KIND: "BYTES BLOCKS" of that kind, from tally leaks
    "$tally" leaks --kinds all "$1" | sed -n "s/^ *$2: \([0-9,]*\) bytes in \([0-9,]*\) blocks$/\1 \2/p" | tr -d ,
}

run blocked
[ $? = 0 ] || fail "blocked: exit status, $(cat blocked.err)"
[ "$(field blocked.tly leak_check)" = 1 ] || fail "blocked: no leak check in the dump"
[ "$(field blocked.tly leak_unstopped)" = 1 ] || fail "blocked: want 1 thread not stopped: $(totals blocked.tly)"
[ "$(field blocked.tly leak_approx)" = 1 ] || fail "blocked: the dump does not say approximate"
"$tally" leaks blocked.tly | grep -q 'approximate: 1 thread kept running' || fail "blocked: tally leaks does not say approximate"
# its stack is scanned whole: its 4000-byte block is reachable, with main's 100
[ "$(summary blocked.tly 'still reachable')" = "4100 2" ] || fail "blocked: reachable $(summary blocked.tly 'still reachable')"
[ "$(summary blocked.tly 'definitely lost')" = "24 1" ] || fail "blocked: lost $(summary blocked.tly 'definitely lost')"

for i in 1 2 3 4 5; do
    run busy
    rc=$?
    [ $rc = 0 ] || { fail "busy (run $i): exit status $rc, $(cat busy.err)"; break; }
    [ "$(field busy.tly leak_threads)" = 2 ] || fail "busy (run $i): want 2 threads stopped: $(totals busy.tly)"
    [ "$(summary busy.tly 'definitely lost')" = "24 1" ] || fail "busy (run $i): lost $(summary busy.tly 'definitely lost')"
done

run handler
rc=$?
[ $rc = 0 ] || fail "handler: exit status $rc (3: the program's own handler did not run), $(cat handler.err)"
[ "$(field handler.tly leak_check)" = 1 ] || fail "handler: no leak check"
[ "$(summary handler.tly 'definitely lost')" = "24 1" ] || fail "handler: lost $(summary handler.tly 'definitely lost')"

timeout 60 env LD_PRELOAD="$TALLY_LIB" TALLY_LEAKS=quiet TALLY_OUT="$tmp/fork.%p.tly" "$prog" fork >fork.out 2>fork.err
[ $? = 0 ] || fail "fork: exit status, $(cat fork.err)"
n=0
for d in fork.*.tly; do
    n=$((n + 1))
    [ "$(field "$d" leak_check)" = 1 ] || fail "fork: $d has no leak check"
done
[ $n = 2 ] || fail "fork: want 2 dumps, got $n"
lost=$(for d in fork.*.tly; do summary "$d" 'definitely lost'; done | sort | tr '\n' ' ')
[ "$lost" = "24 1 48 2 " ] || fail "fork: lost per process: $lost (want the child's own 24 and the parent's 24 + the child's)"

run thread_exit
[ $? = 0 ] || fail "thread_exit: exit status, $(cat thread_exit.err)"
[ "$(field thread_exit.tly leak_threads)" = 1 ] || fail "thread_exit: want main stopped: $(totals thread_exit.tly)"
[ "$(summary thread_exit.tly 'still reachable')" = "400 2" ] || fail "thread_exit: reachable $(summary thread_exit.tly 'still reachable') (main's frame holds 300)"
[ "$(summary thread_exit.tly 'definitely lost')" = "48 2" ] || fail "thread_exit: lost $(summary thread_exit.tly 'definitely lost')"

# On demand, while the program runs: tally_dump_leaks() and, with TALLY_LEAKS, TALLY_SIGNAL. The
# dump has the kinds as they were then; the program goes on, and its exit dump has the later leak.
timeout 60 env LD_PRELOAD="$TALLY_LIB" TALLY_LEAKS=quiet TALLY_OUT="$tmp/od-exit.tly" "$prog" ondemand "$tmp/od.tly" >od.out 2>od.err
[ $? = 0 ] || fail "ondemand: exit status, $(cat od.err)"
[ "$(field od.tly leak_check)" = 1 ] || fail "ondemand: no leak check in the dump: $(totals od.tly)"
[ "$(field od.tly leak_threads)" = 0 ] && [ "$(field od.tly leak_unstopped)" = 1 ] ||
    fail "ondemand: the thread that blocks signals kept running: $(totals od.tly)"
[ "$(summary od.tly 'definitely lost')" = "24 1" ] || fail "ondemand: lost $(summary od.tly 'definitely lost')"
[ "$(summary od.tly 'still reachable')" = "4100 2" ] || fail "ondemand: reachable $(summary od.tly 'still reachable')"
[ "$(summary od-exit.tly 'definitely lost')" = "72 2" ] || fail "ondemand: the exit dump lost $(summary od-exit.tly 'definitely lost')"
timeout 60 env LD_PRELOAD="$TALLY_LIB" TALLY_LEAKS=quiet TALLY_SIGNAL=USR2 TALLY_OUT="$tmp/sig.tly" "$prog" onsignal "$tmp/sig.tly" >sig.out 2>sig.err
[ $? = 0 ] || fail "onsignal: exit status (7: no dump on the signal), $(cat sig.err)"
[ "$(field sig.tly.1 leak_check)" = 1 ] || fail "onsignal: no leak check in the signal's dump"
[ "$(summary sig.tly.1 'definitely lost')" = "24 1" ] || fail "onsignal: lost $(summary sig.tly.1 'definitely lost')"
[ "$(summary sig.tly 'definitely lost')" = "72 2" ] || fail "onsignal: the exit dump lost $(summary sig.tly 'definitely lost')"
# The dump thread TALLY_SIGNAL starts is the library's: the check neither stops it (it blocks
# every signal) nor takes its stack as a root, and is not approximate on its account.
[ -z "$(field sig.tly leak_unstopped)" ] && [ -z "$(field sig.tly leak_approx)" ] ||
    fail "onsignal: the library's dump thread counted as the program's: $(totals sig.tly)"
[ "$(field sig.tly.1 leak_threads)" = 1 ] || fail "onsignal: the check on the dump thread did not stop main: $(totals sig.tly.1)"
env LD_PRELOAD="$TALLY_LIB" TALLY_PROFILE=sample TALLY_OUT="$tmp/s.tly" "$prog" ondemand "$tmp/s-od.tly" >/dev/null 2>s.err
[ $? = 6 ] && grep -q 'tally_dump_leaks: the leak check needs every allocation recorded' s.err ||
    fail "tally_dump_leaks in sample mode: $(cat s.err)"

# TALLY_LEAKS=1 prints memcheck's summary itself; with another profile mode it says it uses all.
env LD_PRELOAD="$TALLY_LIB" TALLY_LEAKS=1 TALLY_PROFILE=sample TALLY_OUT="$tmp/p.tly" "$prog" blocked >/dev/null 2>p.err
grep -q '^tally: TALLY_LEAKS needs every allocation recorded: using TALLY_PROFILE=all$' p.err || fail "no word of the profile mode: $(cat p.err)"
grep -q '^tally:    definitely lost: 24 bytes in 1 blocks$' p.err || fail "TALLY_LEAKS=1 printed no summary: $(cat p.err)"
grep -q "^tally: the call sites: tally leaks $tmp/p.tly\$" p.err || fail "TALLY_LEAKS=1 did not say where the dump is: $(cat p.err)"
# Nothing live at exit: memcheck's one line instead of the summary, and nothing else.
env LD_PRELOAD="$TALLY_LIB" TALLY_LEAKS=1 TALLY_OUT="$tmp/clean.tly" "$top_builddir/tests/leaks/leakcases" clean >/dev/null 2>clean.err
grep -qx "tally: all heap blocks were freed -- no leaks are possible (pid [0-9]*)" clean.err &&
    [ "$(wc -l <clean.err)" = 1 ] || fail "TALLY_LEAKS=1 with nothing live: $(cat clean.err)"
env LD_PRELOAD="$TALLY_LIB" TALLY_LEAKS=maybe TALLY_OUT="$tmp/m.tly" "$prog" fork >/dev/null 2>m.err
grep -q "ignoring malformed TALLY_LEAKS" m.err || fail "a malformed TALLY_LEAKS went unnoticed: $(cat m.err)"

# Without /proc (a mount namespace where it is an empty tmpfs): one line, the dump without kinds.
if unshare -m sh -c 'mount -t tmpfs none /proc && ! test -e /proc/self/maps' 2>/dev/null; then
    unshare -m sh -c 'mount -t tmpfs none /proc && exec "$@"' sh \
        env LD_PRELOAD="$TALLY_LIB" TALLY_LEAKS=quiet TALLY_OUT="$tmp/np.tly" "$prog" fork >/dev/null 2>np.err
    [ $? = 0 ] || fail "no /proc: exit status, $(cat np.err)"
    grep -q 'leak check failed: cannot list or stop the threads' np.err || fail "no /proc: $(cat np.err)"
    [ -z "$(field np.tly leak_check)" ] || fail "no /proc: the dump claims a leak check"
    "$tally" leaks np.tly | grep -q 'no leak check in this dump' || fail "no /proc: tally leaks on it"
else
    say "no mount namespace here: the no-/proc case is checked where unshare works (CI runs as root)"
fi

finish
