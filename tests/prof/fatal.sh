#!/bin/bash
# tests/prof/fatal.sh - the dump when a signal ends the program (issue 17): SIGTERM, SIGINT,
# SIGHUP, SIGQUIT and the crashes (SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT) each leave the
# dump at TALLY_OUT, reason=fatal, with what was recorded, and the signal still takes its
# course: the same wait status as without the library, core dump flag included. The handler is
# invisible (sigaction and signal say SIG_DFL), the program's own handler or SIG_IGN wins, SIG_DFL
# set again brings the dump back; CPython still raises KeyboardInterrupt; signals landing while
# threads are inside the allocator and profiler never hang; TALLY_FATAL=0 turns it off.
# The checks want the default dispositions: a shell without job control that started this in
# the background left SIGINT and SIGQUIT ignored, and an ignored signal stays so across exec.
if [ -z "${FATAL_SIGNALS_DEFAULT:-}" ]; then
    FATAL_SIGNALS_DEFAULT=1 exec env --default-signal=INT,QUIT,HUP,TERM bash "$0" "$@"
fi
. "$top_srcdir/tests/preload/common.sh"
prog=$top_builddir/tests/prof/fatal
prog_std=$top_builddir/tests/prof/fatal_std
tally=$top_builddir/tools/tally
[ -x "$prog" ] && [ -x "$prog_std" ] && [ -x "$tally" ] || hard_error "the test programs are not built"
cd "$tmp" || fatal "no $tmp"

# status NAME ENV... -- PROG ARGS: runs it (cwd $tmp, core files allowed), prints its wait status
# as "exit N" or "signal N core|nocore", and its stdout in $tmp/NAME.out, stderr in NAME.err.
status() {
    local name=$1
    shift
    /usr/bin/python3 - "$tmp/$name" "$@" <<'PY'
import os, resource, sys
base, args = sys.argv[1], sys.argv[2:]
k = args.index("--")
env = dict(os.environ)
env.pop("LD_PRELOAD", None)
for kv in args[:k]:
    key, val = kv.split("=", 1)
    env[key] = val
pid = os.fork()
if pid == 0:
    resource.setrlimit(resource.RLIMIT_CORE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
    os.dup2(os.open(base + ".out", os.O_WRONLY | os.O_CREAT | os.O_TRUNC), 1)
    os.dup2(os.open(base + ".err", os.O_WRONLY | os.O_CREAT | os.O_TRUNC), 2)
    os.execvpe(args[k + 1], args[k + 1:], env)
_, st = os.waitpid(pid, 0)
if os.WIFSIGNALED(st):
    print("signal %d %s" % (os.WTERMSIG(st), "core" if os.WCOREDUMP(st) else "nocore"))
else:
    print("exit %d" % os.WEXITSTATUS(st))
PY
    rm -f "$tmp"/core "$tmp"/core.*
}

# the dump's header line, decompressed
header() { dump_text "$1" | sed -n 2p; }

# the known blocks: keep_blocks' 100 blocks of 100 bytes, live when the signal came
kept_ok() { # DUMP
    "$tally" report --json --top 0 --sort live "$1" >"$tmp/r.json" 2>"$tmp/r.err" ||
        { fail "$1: tally report failed: $(cat "$tmp/r.err")"; return; }
    /usr/bin/python3 - "$tmp/r.json" <<'PY' || fail "$1: keep_blocks' 10,000 live bytes are not in the dump"
import json, sys
r = json.load(open(sys.argv[1]))
ok = any(any("keep_blocks" in (f.get("function") or "") for f in s["frames"]) and
         s["live_bytes"] >= 10000 for s in r["sites"])
sys.exit(0 if ok else 1)
PY
}

signals="TERM:15 INT:2 HUP:1 QUIT:3 ABRT:6 SEGV:11 BUS:7 FPE:8 ILL:4"
for pair in $signals; do
    name=${pair%:*} num=${pair#*:}
    want=$(status plain_$name -- "$prog" raise "$name")
    rm -f "$tmp/f.tly"
    got=$(status raise_$name TALLY_PROFILE=all TALLY_OUT="$tmp/f.tly" LD_PRELOAD="$TALLY_LIB" -- "$prog" raise "$name")
    [ "$got" = "$want" ] || fail "raise SIG$name: '$got' under the library, '$want' without"
    [ -s "$tmp/f.tly" ] || { fail "raise SIG$name: no dump"; continue; }
    header "$tmp/f.tly" | grep -q " reason=fatal fatal_signal=$num " ||
        fail "raise SIG$name: the header does not say reason=fatal fatal_signal=$num: $(header "$tmp/f.tly")"
    kept_ok "$tmp/f.tly"
    say "raise SIG$name: $got, dump written"
done

# Real crashes: a fault (the instruction faults again under SIG_DFL) and abort().
for mode in segv abort; do
    want=$(status plain_$mode -- "$prog" $mode)
    rm -f "$tmp/f.tly"
    got=$(status $mode TALLY_PROFILE=all TALLY_OUT="$tmp/f.tly" LD_PRELOAD="$TALLY_LIB" -- "$prog" $mode)
    [ "$got" = "$want" ] || fail "$mode: '$got' under the library, '$want' without"
    case $want in *" core") ;; *) say "note: core dumps are off here ($want): the flag is compared as it is" ;; esac
    [ -s "$tmp/f.tly" ] || { fail "$mode: no dump"; continue; }
    kept_ok "$tmp/f.tly"
    # all mode: the live blocks are listed, so tally leaks shows them
    "$tally" leaks "$tmp/f.tly" >"$tmp/$mode.leaks" 2>&1 || fail "$mode: tally leaks failed: $(cat "$tmp/$mode.leaks")"
    grep -q "keep_blocks" "$tmp/$mode.leaks" || fail "$mode: tally leaks does not show keep_blocks' blocks"
    say "$mode: $got, dump written"
done

# The program's own handler runs, and the dump is the exit one it makes... here _exit: none.
rm -f "$tmp/f.tly"
got=$(status own TALLY_OUT="$tmp/f.tly" LD_PRELOAD="$TALLY_LIB" -- "$prog" own)
[ "$got" = "exit 3" ] && grep -q "own handler" "$tmp/own.out" ||
    fail "own: the program's SIGTERM handler did not run ($got): $(cat "$tmp/own.out" "$tmp/own.err")"
[ -e "$tmp/f.tly" ] && fail "own: a dump was written on a signal the program handles"
got=$(status ignore TALLY_OUT="$tmp/f.tly" LD_PRELOAD="$TALLY_LIB" -- "$prog" ignore)
[ "$got" = "exit 0" ] && grep -q ignored "$tmp/ignore.out" || fail "ignore: SIG_IGN did not hold ($got)"
header "$tmp/f.tly" | grep -q " reason=exit " || fail "ignore: no exit dump"

# What the program is told: SIG_DFL; its handler replaces ours; SIG_DFL brings the dump back.
for p in "$prog" "$prog_std"; do
    rm -f "$tmp/f.tly"
    got=$(status query TALLY_OUT="$tmp/f.tly" LD_PRELOAD="$TALLY_LIB" -- "$p" query)
    printf '%s\n' "sigaction SIGINT: SIG_DFL" "signal SIGTERM was: SIG_DFL" \
        "sigaction SIGTERM was: its own" "sigaction SIGTERM now: SIG_DFL" >"$tmp/query.want"
    diff -u "$tmp/query.want" "$tmp/query.out" >&2 || fail "$(basename "$p"): the program sees the library's handler"
    [ "$got" = "signal 15 nocore" ] || fail "$(basename "$p") query: $got"
    header "$tmp/f.tly" 2>/dev/null | grep -q " reason=fatal fatal_signal=15 " ||
        fail "$(basename "$p"): no dump on SIGTERM after SIG_DFL was set again"
done
say "sigaction, signal and __sysv_signal show SIG_DFL; SIG_DFL again brings the dump back"

# A vfork child shares the parent's memory, not its signal dispositions: what it sets before its
# exec (CPython's subprocess puts SIG_DFL back) must not change what the parent is told or what
# SIG_DFL does there. It did: the parent was then told SIG_DFL for its own handler, and its own
# SIG_DFL later was taken for ours and not set (CPython's faulthandler.disable() in a pool's
# worker left faulthandler's handler in place, and the worker survived its raise(SIGSEGV)).
for p in "$prog" "$prog_std"; do
    want=$(status vfork0 -- "$p" vfork)
    rm -f "$tmp/f.tly"
    got=$(status vfork TALLY_OUT="$tmp/f.tly" LD_PRELOAD="$TALLY_LIB" -- "$p" vfork)
    echo "sigaction SIGSEGV after vfork: its own" | diff -u - "$tmp/vfork0.out" >&2 ||
        fail "$(basename "$p") vfork: wrong without the library"
    diff -u "$tmp/vfork0.out" "$tmp/vfork.out" >&2 ||
        fail "$(basename "$p") vfork: the parent is told another handler after a vfork child's sigaction"
    [ "$got" = "$want" ] && [ "$want" = "signal 11 core" ] ||
        fail "$(basename "$p") vfork: ended with $got, $want without the library"
    header "$tmp/f.tly" 2>/dev/null | grep -q " reason=fatal fatal_signal=11 " ||
        fail "$(basename "$p") vfork: no dump at SIGSEGV after SIG_DFL was set again"
done
say "a vfork child's sigaction leaves the parent's handlers and its view of them alone"

# SIGTERM sent to a child as soon as fork returns lands while the child runs the library's fork
# handlers, which hold its locks: it is left pending, and must still end the child (it was lost:
# 97 of 100 children outlived it, and a process pool shut down after a worker crashed hung).
got=$(TALLY_OUT=/dev/null TALLY_PROFILE=all LD_PRELOAD="$TALLY_LIB" "$prog" forkterm 60 2>"$tmp/forkterm.err")
[ "$got" = "outlived SIGTERM: 0 of 60" ] ||
    fail "forkterm: children outlived the SIGTERM sent to them right after fork: $got $(head -3 "$tmp/forkterm.err")"
say "SIGTERM sent to 60 children right after fork ends each of them"

# TALLY_FATAL=0: no handler, no dump.
rm -f "$tmp/f.tly"
got=$(status off TALLY_FATAL=0 TALLY_OUT="$tmp/f.tly" LD_PRELOAD="$TALLY_LIB" -- "$prog" raise TERM)
[ "$got" = "signal 15 nocore" ] || fail "TALLY_FATAL=0: $got"
[ -e "$tmp/f.tly" ] && fail "TALLY_FATAL=0: a dump was written"

# TALLY_CHECK: a heap overrun, then a crash: the error is reported and in the dump.
rm -f "$tmp/f.tly"
got=$(status overrun TALLY_CHECK=1 TALLY_OUT="$tmp/f.tly" LD_PRELOAD="$TALLY_LIB" -- "$prog" overrun)
case $got in "signal 11 "*) ;; *) fail "overrun: $got" ;; esac
grep -q "ERROR SUMMARY: 1 error from 1 context" "$tmp/overrun.err" ||
    fail "overrun: no ERROR SUMMARY at the crash: $(cat "$tmp/overrun.err")"
"$tally" errors "$tmp/f.tly" >"$tmp/overrun.errors" 2>&1
grep -q "Invalid write of size 8" "$tmp/overrun.errors" ||
    fail "overrun: tally errors does not show the overrun: $(head -5 "$tmp/overrun.errors")"

# CPython: KeyboardInterrupt as ever; SIGTERM leaves a dump with its Python frames.
cat >"$tmp/kb.py" <<'EOF'
import os, signal, sys, time
print(signal.getsignal(signal.SIGINT) is signal.default_int_handler)
try:
    os.kill(os.getpid(), signal.SIGINT)
    time.sleep(5)
except KeyboardInterrupt:
    print("KeyboardInterrupt")
def hold():
    return [str(i) * 10 for i in range(20000)]
kept = hold()
os.kill(os.getpid(), signal.SIGTERM)
time.sleep(5)
EOF
rm -f "$tmp/f.tly"
got=$(status py PYTHONMALLOC=malloc TALLY_PROFILE=all TALLY_OUT="$tmp/f.tly" LD_PRELOAD="$TALLY_LIB" -- /usr/bin/python3 "$tmp/kb.py")
printf 'True\nKeyboardInterrupt\n' | diff -u - "$tmp/py.out" >&2 ||
    fail "CPython's SIGINT handler is not its own under the library"
[ "$got" = "signal 15 nocore" ] || fail "python: $got: $(cat "$tmp/py.err")"
"$tally" report --by line --top 3 "$tmp/f.tly" >"$tmp/py.report" 2>&1 || fail "python: tally report failed"
grep -q "hold (.*kb.py:9)" "$tmp/py.report" ||
    fail "python: the dump at SIGTERM does not name hold's line: $(head -20 "$tmp/py.report")"
say "CPython: KeyboardInterrupt still raised; SIGTERM's dump names hold (kb.py:9)"

# tally run: a program killed by SIGTERM still has its dump read.
"$tally" run --lib "$TALLY_LIB" -o "$tmp/run.tly" -- "$prog" raise TERM >/dev/null 2>"$tmp/run.err"
rc=$?
[ "$rc" = 143 ] || fail "tally run: exit status $rc, want 143"
grep -q "killed by signal 15" "$tmp/run.err" && grep -q "dump run.tly\|dump $tmp/run.tly" "$tmp/run.err" ||
    fail "tally run does not read the dump of a killed program: $(cat "$tmp/run.err")"

# Signals that land anywhere, inside the allocator and the profiler included (all mode, threads
# allocating): each run ends by SIGTERM within seconds, with a dump tally reads. With the leak
# check too (TALLY_LEAKS): the threads are stopped and the blocks classified.
hangs=0 bad=0
for i in $(seq 1 16); do
    env_extra=
    [ $((i % 2)) = 0 ] && env_extra="TALLY_LEAKS=quiet"
    rm -f "$tmp/c.tly"
    env LD_PRELOAD="$TALLY_LIB" TALLY_PROFILE=all $env_extra TALLY_OUT="$tmp/c.tly" "$prog" churn 3 \
        >"$tmp/churn.out" 2>"$tmp/churn.err" &
    pid=$!
    for _ in $(seq 100); do grep -q ready "$tmp/churn.out" && break; sleep 0.05; done
    sleep "0.$((RANDOM % 5))$((RANDOM % 10))"
    kill -TERM "$pid"
    for _ in $(seq 300); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then
        hangs=$((hangs + 1))
        kill -KILL "$pid"
    fi
    wait "$pid"
    rc=$?
    if [ "$rc" != 143 ] || ! "$tally" report "$tmp/c.tly" >/dev/null 2>&1; then
        bad=$((bad + 1))
        say "run $i ($env_extra): status $rc, $(ls -l "$tmp/c.tly" 2>&1 | head -1); $(head -3 "$tmp/churn.err")"
    fi
done
[ "$hangs" = 0 ] || fail "$hangs of 16 runs still ran 30 s after SIGTERM (a hang)"
[ "$bad" = 0 ] || fail "$bad of 16 runs ended otherwise than by SIGTERM with a readable dump"
say "16 SIGTERMs into 3 allocating threads (8 with the leak check): each ended by it, with a dump"
finish
