#!/bin/bash
# tests/prof/signal.sh - a dump requested by signal from a running, idle program
# (TALLY_SIGNAL): it appears as OUT.1, complete, while the program runs; a second signal gives
# OUT.2; the exit dump keeps the plain name; the program's own signal handlers still work.
. "$top_srcdir/tests/preload/common.sh"
prog=$top_builddir/tests/prof/idle
[ -x "$prog" ] || hard_error "$prog is not built"
export PYTHONPATH=$top_srcdir/tests/prof

mkfifo "$tmp/in"
timeout 60 env LD_PRELOAD="$TALLY_LIB" TALLY_PROFILE=all TALLY_SIGNAL=USR2 \
    TALLY_OUT="$tmp/idle.tly" "$prog" <"$tmp/in" >"$tmp/idle.out" 2>"$tmp/idle.err" &
pid=$!
exec 3>"$tmp/in" # keeps its stdin open until we close it
for _ in $(seq 100); do grep -q ready "$tmp/idle.out" && break; sleep 0.1; done
grep -q ready "$tmp/idle.out" || fatal "the program did not start"
child=$(pgrep -P "$pid" -x idle || pgrep -P "$pid")
[ -n "$child" ] || fatal "cannot find the program's pid"

wait_file() {
    for _ in $(seq 100); do [ -f "$1" ] && return 0; sleep 0.1; done
    return 1
}
kill -USR2 "$child"
wait_file "$tmp/idle.tly.1" || fail "no dump idle.tly.1 10 s after SIGUSR2"
kill -USR1 "$child"
kill -USR2 "$child"
wait_file "$tmp/idle.tly.2" || fail "no dump idle.tly.2 after a second SIGUSR2"
[ -e "$tmp/idle.tly" ] && fail "an exit dump exists while the program still runs"
exec 3>&-
wait "$pid"
rc=$?
[ "$rc" -eq 0 ] || fail "the program exited with status $rc"
grep -q 'usr1=1' "$tmp/idle.out" || fail "the program's own SIGUSR1 handler did not run: $(cat "$tmp/idle.out")"
[ -s "$tmp/idle.err" ] && { fail "the program printed on stderr:"; cat "$tmp/idle.err" >&2; }

/usr/bin/python3 - "$tmp" "$prog" <<'PY' || fail "the dumps are wrong"
import sys, dumpcheck
tmp, prog = sys.argv[1], sys.argv[2]
bad = 0
for name, reason in (("idle.tly.1", "signal"), ("idle.tly.2", "signal"), ("idle.tly", "exit")):
    d = dumpcheck.parse("%s/%s" % (tmp, name))
    s = dumpcheck.by_function(d, prog).get("site_idle")
    ok = d["header"]["reason"] == reason and s and s["live_count"] == 1000 \
        and s["live_bytes"] == 100000
    print("%s: reason %s, site_idle %s" % (name, d["header"]["reason"],
          s and (s["live_count"], s["live_bytes"])))
    bad += not ok
sys.exit(bad)
PY

# TALLY_INTERVAL=1: an idle program that lives about 2.5 s writes .1 and .2 on its own.
mkfifo "$tmp/in2"
timeout 60 env LD_PRELOAD="$TALLY_LIB" TALLY_INTERVAL=1 TALLY_OUT="$tmp/iv.tly" "$prog" \
    <"$tmp/in2" >"$tmp/iv.out" 2>&1 &
pid=$!
exec 3>"$tmp/in2"
sleep 2.5
exec 3>&-
wait "$pid" || fail "the interval run failed: $(cat "$tmp/iv.out")"
for f in iv.tly.1 iv.tly.2 iv.tly; do
    [ -f "$tmp/$f" ] || fail "TALLY_INTERVAL=1 over 2.5 s: no $f"
done
dump_text "$tmp/iv.tly.1" 2>/dev/null | grep ' reason=interval ' >/dev/null || fail "iv.tly.1 is not an interval dump"
finish
