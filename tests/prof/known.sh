#!/bin/bash
# tests/prof/known.sh - the profiler's dump of a program with known allocations at known call
# sites, checked exactly in `all` mode (tests/prof/known_check.py), then the same program
# forking once: parent and child each write their own dump, each exact.
. "$top_srcdir/tests/preload/common.sh"
need nm binutils

prog=$top_builddir/tests/prof/known
[ -x "$prog" ] || hard_error "$prog is not built"
export PYTHONPATH=$top_srcdir/tests/prof

run_prof() { # LABEL ARGS...: run known under TALLY_PROFILE=all, dump to $tmp/LABEL.%p.tly
    local label=$1
    shift
    say "run $label: known $*"
    timeout 60 env LD_PRELOAD="$TALLY_LIB" TALLY_PROFILE=all TALLY_OUT="$tmp/$label.%p.tly" \
        "$prog" "$@" >"$tmp/$label.out" 2>"$tmp/$label.err"
    local rc=$?
    [ "$rc" -eq 0 ] || { fail "$label exited with status $rc"; cat "$tmp/$label.err" >&2; }
    [ -s "$tmp/$label.err" ] && { fail "$label printed on stderr:"; cat "$tmp/$label.err" >&2; }
}

run_prof plain
dumps=("$tmp"/plain.*.tly)
[ "${#dumps[@]}" -eq 1 ] && [ -f "${dumps[0]}" ] || fatal "expected one dump, got: ${dumps[*]}"
/usr/bin/python3 "$top_srcdir/tests/prof/known_check.py" "${dumps[0]}" "$prog" ||
    fail "the dump of known is not exact"
ls "$tmp"/*.tmp.* >/dev/null 2>&1 && fail "a temporary dump file was left behind"
perm=$(stat -c %a "${dumps[0]}")
[ "$perm" = 600 ] || fail "dump mode is $perm, want 600"
# Compressed by default (one zstd frame); TALLY_COMPRESS=0 writes the same text as is.
[ "$(head -c4 "${dumps[0]}" | od -An -tx1 | tr -d ' ')" = 28b52ffd ] ||
    fail "the default dump is not a zstd frame"
timeout 60 env LD_PRELOAD="$TALLY_LIB" TALLY_PROFILE=all TALLY_COMPRESS=0 TALLY_OUT="$tmp/text.tly" \
    "$prog" >/dev/null 2>&1 || fail "known failed under TALLY_COMPRESS=0"
[ "$(head -1 "$tmp/text.tly")" = "tally-dump 3" ] || fail "TALLY_COMPRESS=0 did not write text"
/usr/bin/python3 "$top_srcdir/tests/prof/known_check.py" "$tmp/text.tly" "$prog" ||
    fail "the text dump of known is not exact"

run_prof forked fork
grep -q 'child done' "$tmp/forked.out" || fail "the forked child did not finish"
dumps=("$tmp"/forked.*.tly)
[ "${#dumps[@]}" -eq 2 ] || fatal "expected two dumps (parent and child), got: ${dumps[*]}"
for d in "${dumps[@]}"; do
    pid=$(dump_text "$d" | sed -n 's/^header .* pid=\([0-9]*\) .*/\1/p')
    [ "$d" = "$tmp/forked.$pid.tly" ] || fail "$d names pid $pid in its header"
done
# The child is the one whose ppid is the other's pid.
p1=$(dump_text "${dumps[0]}" | sed -n 's/^header .* pid=\([0-9]*\) .*/\1/p')
pp2=$(dump_text "${dumps[1]}" | sed -n 's/^header .* ppid=\([0-9]*\) .*/\1/p')
if [ "$p1" = "$pp2" ]; then parent=${dumps[0]} child=${dumps[1]}; else parent=${dumps[1]} child=${dumps[0]}; fi
/usr/bin/python3 "$top_srcdir/tests/prof/known_check.py" "$parent" "$prog" ||
    fail "the parent's dump is not exact"
/usr/bin/python3 "$top_srcdir/tests/prof/known_check.py" "$child" "$prog" child ||
    fail "the child's dump is not exact"

# tally_dump(): to a path, and with NULL to tally.<program>.<pid>.tly in the working directory,
# each a complete dump with reason=api; with profiling off it returns -1 and writes nothing.
mkdir "$tmp/api"
(cd "$tmp/api" && timeout 60 env LD_PRELOAD="$TALLY_LIB" TALLY_PROFILE=all "$prog" api \
    "$tmp/api/asked.tly" >"$tmp/api.out" 2>&1) || fail "known api failed: $(cat "$tmp/api.out")"
grep -q 'tally_dump: 0 0' "$tmp/api.out" || fail "tally_dump did not return 0 twice: $(cat "$tmp/api.out")"
default=$(ls "$tmp"/api/tally.known.*.tly 2>/dev/null)
[ -n "$default" ] || fail "tally_dump(NULL) wrote no tally.known.<pid>.tly in the working directory"
for d in "$tmp/api/asked.tly" $default; do
    dump_text "$d" 2>/dev/null | grep ' reason=api ' >/dev/null || fail "$d is not an api dump"
    /usr/bin/python3 -c 'import sys, dumpcheck; dumpcheck.parse(sys.argv[1])' "$d" ||
        fail "$d is not a complete dump"
done
(cd "$tmp/api" && env LD_PRELOAD="$TALLY_LIB" TALLY_PROFILE=off "$prog" api off.tly \
    >"$tmp/api_off.out" 2>&1)
grep -q 'tally_dump: -1 -1' "$tmp/api_off.out" || fail "with profiling off tally_dump should return -1: $(cat "$tmp/api_off.out")"
[ -e "$tmp/api/off.tly" ] && fail "tally_dump wrote a file with profiling off"

# Across exec: a profiled shell that execs the program (same pid) leaves one dump, the
# program's, named after it: the library was loaded again in the new image and profiled it.
say "run exec: sh -c 'exec known'"
timeout 60 env LD_PRELOAD="$TALLY_LIB" TALLY_PROFILE=all TALLY_OUT="$tmp/exec.%e.%p.tly" \
    /bin/sh -c "exec \"$prog\"" >"$tmp/exec.out" 2>&1 || fail "sh -c 'exec known' failed"
kd=$(ls "$tmp"/exec.*.tly 2>/dev/null)
if [ "$(echo "$kd" | wc -w)" != 1 ] || [[ $kd != "$tmp"/exec.known.* ]]; then
    fail "expected one dump named after known, got: $kd"
else
    /usr/bin/python3 "$top_srcdir/tests/prof/known_check.py" "$kd" "$prog" ||
        fail "the exec'd program's dump is not exact"
fi
finish
