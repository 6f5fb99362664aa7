#!/bin/bash
# tests/prof/dump_safety.sh - a dump never harms what is at its path, and the library's dump
# thread never touches the program's descriptors.
#   TALLY_OUT at a character device made in a temporary directory (as root; /dev/null itself is
#   only ever written, never replaced), at a FIFO with a reader (the dump streams through it)
#   and without one (no dump, one line, no hang), at a symbolic link and at another user's
#   file (refused, untouched), `-` (standard output); a new file is 0600.
#   A process killed while it writes a dump leaves no PATH.tmp.PID behind (the file has no name
#   until it is complete).
#   A program that closes every descriptor at start and then talks to itself through a pipe,
#   with TALLY_INTERVAL and TALLY_SIGNAL set: every message comes back (the dump thread once
#   kept a pipe whose numbers the program reused, read the program's data and hung it).
. "$top_srcdir/tests/preload/common.sh"
need zstd zstd
d=$top_builddir/tests/prof
for p in true_prog manysites daemon; do [ -x "$d/$p" ] || hard_error "$d/$p is not built"; done
cd "$tmp" || fatal "no scratch dir"
run() { # TALLY_OUT value, then the program's output on stdout; stderr to run.err
    timeout 30 env LD_PRELOAD="$TALLY_LIB" TALLY_PROFILE=all TALLY_OUT="$1" "$d/true_prog" 2>run.err
}

# a character device
if [ "$(id -u)" = 0 ] && mknod null c 1 3 2>/dev/null; then
    run "$tmp/null" >/dev/null || fail "a run with TALLY_OUT at a device failed: $(cat run.err)"
    [ -c null ] || fail "the device node was replaced: $(ls -l null)"
    [ -s run.err ] && fail "writing to a device said: $(cat run.err)"
    say "device node: written as a stream, still a device"
else
    run /dev/null >/dev/null || fail "a run with TALLY_OUT=/dev/null failed: $(cat run.err)"
    [ -c /dev/null ] || fail "/dev/null is no longer a device"
    say "not root: /dev/null written as a stream (a device of our own needs mknod)"
fi
ls ./*.tmp.* /dev/null.tmp.* 2>/dev/null && fail "a temporary file was left behind"

# a FIFO: with a reader the dump streams through; without one, no dump and no hang
mkfifo fifo
cat fifo >from-fifo &
reader=$!
# the reader must have the FIFO open before the program looks for one (else: no reader, no dump)
for w in $(seq 100); do
    ls -l /proc/$reader/fd 2>/dev/null | grep -q "$tmp/fifo" && break
    sleep 0.05
done
run "$tmp/fifo" >/dev/null || fail "a run with a FIFO being read failed: $(cat run.err)"
for w in $(seq 300); do kill -0 $reader 2>/dev/null || break; sleep 0.1; done
kill -0 $reader 2>/dev/null && { kill $reader; fail "the FIFO's reader got no end of file: $(cat run.err)"; }
wait $reader
[ "$(zstd -dcq from-fifo | head -1)" = "tally-dump 3" ] || fail "no dump came through the FIFO"
[ -p fifo ] || fail "the FIFO was replaced"
run "$tmp/fifo" >/dev/null
[ $? = 124 ] && fail "a FIFO nobody reads hung the program"
grep -q '^tally: not writing the dump to .*fifo: a FIFO that nobody reads$' run.err ||
    fail "a FIFO nobody reads: $(cat run.err)"

# a symbolic link, and another user's file: refused, left as they were
echo kept >target
ln -s target link
run "$tmp/link" >/dev/null
[ -L link ] && [ "$(cat target)" = kept ] || fail "the symlink or its target was changed"
grep -q 'not writing the dump to .*link: it is a symbolic link$' run.err || fail "symlink: $(cat run.err)"
if [ "$(id -u)" = 0 ]; then
    echo theirs >other
    chown 65534 other
    run "$tmp/other" >/dev/null
    [ "$(cat other)" = theirs ] || fail "another user's file was replaced"
    grep -q "not writing the dump to .*other: another user's file$" run.err || fail "other's file: $(cat run.err)"
fi

# standard output, and a new file
[ "$(run - | zstd -dcq | head -1)" = "tally-dump 3" ] || fail "TALLY_OUT=- wrote no dump on stdout"
run "$tmp/new.tly" >/dev/null
[ "$(stat -c %a new.tly)" = 600 ] || fail "a new dump is $(stat -c %a new.tly), want 600"

# killed while writing: nothing left behind (16384 stacks: a dump takes about 0.1 s)
mkdir killed
for i in 1 2 3 4 5 6 7 8; do
    env LD_PRELOAD="$TALLY_LIB" TALLY_PROFILE=all TALLY_SIGNAL=USR2 TALLY_OUT="$tmp/killed/d.tly" \
        "$d/manysites" >ms.out 2>ms.err &
    pid=$!
    for w in $(seq 100); do grep -q ready ms.out 2>/dev/null && break; sleep 0.05; done
    kill -USR2 $pid
    sleep "0.0$((i * 11 % 10))"
    kill -KILL $pid
    wait $pid 2>/dev/null
done
left=$(ls killed | grep tmp)
[ -z "$left" ] || fail "killed while writing, the dumps left: $left"
say "8 processes killed while they wrote dumps: $(ls killed | wc -l) complete dumps, no temporary file"

# a program that closes every descriptor, then talks to itself through a pipe
out=$(timeout 30 env LD_PRELOAD="$TALLY_LIB" TALLY_INTERVAL=1 TALLY_SIGNAL=USR2 \
    TALLY_OUT="$tmp/daemon.tly" "$d/daemon" 2>daemon.err)
rc=$?
[ $rc = 0 ] && [ "$out" = "60 of 60" ] || fail "the daemon-style program: status $rc, '$out' (its messages were read by someone else?) $(cat daemon.err)"
ls daemon.tly.1 >/dev/null 2>&1 || fail "the signal or the interval made no dump: $(ls)"
finish
