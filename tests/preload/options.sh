#!/bin/bash
# TALLY_* options under LD_PRELOAD: silence unless asked, one warning line for bad values,
# statistics whose parts add up (text and JSON), a safe statistics file, a reservation that
# shrinks under `ulimit -v`, and messages at exit that survive a program closing its stderr.
set -u
so=${TALLYMALLOC_SO:?}
py=/usr/bin/python3
[ -x $py ] || { echo "needs /usr/bin/python3 (Debian package python3)"; exit 99; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail=0
bad() { echo "FAIL: $*"; fail=1; }

# 1. Not asked, not a word: stderr of a real program is empty.
LD_PRELOAD=$so ls / >/dev/null 2>"$tmp/err" || bad "ls failed"
[ -s "$tmp/err" ] && bad "printed without being asked: $(cat "$tmp/err")"

# 2. Malformed and unknown values: exactly one line each, the program unaffected.
for case in "TALLY_STATS=banana" "TALLY_RESERVE=12Q" "TALLY_VERBOSE=maybe" "TALLY_NOSUCH=1" \
    "TALLY_PROFILE=most" "TALLY_SAMPLE=0" "TALLY_SAMPLE=-5" "TALLY_DEPTH=0" "TALLY_DEPTH=500" \
    "TALLY_SIGNAL=KILL" "TALLY_SIGNAL=SEGV" "TALLY_SIGNAL=nope" "TALLY_INTERVAL=0" \
    "TALLY_INTERVAL=1.5" "TALLY_UNWIND=gdb" "TALLY_UNWIND=" "TALLY_COMPRESS=zip"; do
    out=$(env "$case" LD_PRELOAD=$so echo hello 2>"$tmp/err")
    [ "$out" = hello ] || bad "$case changed the program's output"
    n=$(wc -l <"$tmp/err")
    [ "$n" = 1 ] || bad "$case: expected one warning line, got $n: $(cat "$tmp/err")"
    grep -q '^tally: ignoring' "$tmp/err" || bad "$case: warning not recognisable: $(cat "$tmp/err")"
done

# 2b. A dump that cannot be written: one line, the program's output and status unaffected.
out=$(env TALLY_OUT=/nonexistent/dir/x.tly LD_PRELOAD=$so $py -c "print('hello')" 2>"$tmp/err")
[ "$out" = hello ] || bad "an unwritable TALLY_OUT changed the program's output"
[ "$(wc -l <"$tmp/err")" = 1 ] && grep -q '^tally: cannot create the dump' "$tmp/err" ||
    bad "unwritable TALLY_OUT: expected one 'cannot create the dump' line, got: $(cat "$tmp/err")"

# 3. Text statistics at exit, with the arena identity stated.
TALLY_STATS=1 LD_PRELOAD=$so PYTHONMALLOC=malloc $py -c 'x=[str(i) for i in range(50000)]' \
    2>"$tmp/err" || bad "python failed under TALLY_STATS=1"
grep -q '^tally: fragmentation: ' "$tmp/err" || bad "no fragmentation line"
grep -q '^tally: arena memory .* = in use .* + free blocks .* + pool overhead .* + empty pools .* + not yet used' \
    "$tmp/err" || bad "no arena breakdown line"
grep -q 'never returned to the OS' "$tmp/err" || bad "stats do not say arenas are never returned"

# 4. JSON statistics to a file named by pid; the parts add up; mode 0600.
TALLY_STATS=json TALLY_STATS_FILE="$tmp/s.%p.%e.json" LD_PRELOAD=$so PYTHONMALLOC=malloc \
    $py -c 'd={i: [i]*3 for i in range(20000)}' || bad "python failed under TALLY_STATS=json"
f=$(ls "$tmp"/s.*.python3*.json 2>/dev/null | head -1)
if [ -z "$f" ]; then
    bad "no statistics file written"
else
    [ "$(stat -c %a "$f")" = 600 ] || bad "statistics file mode is $(stat -c %a "$f")"
    $py - "$f" <<'PY' || fail=1
import json, sys
s = json.load(open(sys.argv[1]))
t = s["totals"]
parts = sum(t[k] for k in ("in_use_bytes", "free_block_bytes", "pool_overhead_bytes",
                           "empty_pool_bytes", "never_used_bytes"))
ok = True
if parts != t["arena_bytes"]:
    print("FAIL: arena parts %d != arena_bytes %d" % (parts, t["arena_bytes"])); ok = False
if t["small_mallocs"] < 20000:
    print("FAIL: small_mallocs %d" % t["small_mallocs"]); ok = False
if len(s["classes"]) != 32 or [c["size"] for c in s["classes"]] != list(range(16, 513, 16)):
    print("FAIL: size classes"); ok = False
if sum(c["mallocs"] for c in s["classes"]) != t["small_mallocs"]:
    print("FAIL: class mallocs do not add up"); ok = False
if s["arenas_returned_to_os"] is not False:
    print("FAIL: arenas_returned_to_os"); ok = False
sys.exit(0 if ok else 1)
PY
fi

# 5. The statistics file never follows a symlink planted at its path.
echo precious >"$tmp/target"
ln -s "$tmp/target" "$tmp/planted.json"
TALLY_STATS=json TALLY_STATS_FILE="$tmp/planted.json" LD_PRELOAD=$so /bin/true 2>"$tmp/err"
[ "$(cat "$tmp/target")" = precious ] || bad "statistics were written through a symlink"
grep -q 'cannot write statistics' "$tmp/err" || bad "no message for the refused file"

# 6. Under a 2 GB address-space limit the 64 GiB reservation shrinks and pools still serve.
( ulimit -v 2000000
  TALLY_STATS=json TALLY_STATS_FILE="$tmp/ulimit.json" LD_PRELOAD=$so PYTHONMALLOC=malloc \
      $py -c 'print(sum(len(str(i)) for i in range(100000)))' >"$tmp/out" ) || bad "python failed under ulimit -v"
[ "$(cat "$tmp/out")" = 488890 ] || bad "wrong output under ulimit -v: $(cat "$tmp/out")"
$py -c '
import json, sys
t = json.load(open(sys.argv[1]))["totals"]
assert 0 < t["reserve_bytes"] < 2 * 2**30, t["reserve_bytes"]
assert t["small_mallocs"] > 100000, t["small_mallocs"]
assert t["reserve_bytes"] <= 2000000 * 1024 // 8, t["reserve_bytes"]
' "$tmp/ulimit.json" || bad "reservation did not adapt to ulimit -v"

# 6b. The reservation leaves the program its budget: a 1000 MB bytearray fits under a 2 GB limit
# exactly as it does without the library (it failed when the arenas took half the limit).
for run in plain tally; do
    pre=; [ $run = tally ] && pre=$so
    ( ulimit -v 2000000
      LD_PRELOAD=$pre PYTHONMALLOC=malloc $py -c 'b = bytearray(1000 * 2**20); print(len(b))' \
          >"$tmp/big.$run" 2>&1 ) || true
done
[ "$(cat "$tmp/big.plain")" = 1048576000 ] ||
    { echo "HARD ERROR: the bytearray fails even without the library: $(cat "$tmp/big.plain")"; exit 99; }
[ "$(cat "$tmp/big.tally")" = 1048576000 ] ||
    bad "1000 MB bytearray under ulimit -v 2000000 failed with the library: $(tail -1 "$tmp/big.tally")"

# 6c. TALLY_VERBOSE states the reservation actually made; a TALLY_RESERVE below the minimum
# is raised to it with one warning.
( ulimit -v 2000000; TALLY_VERBOSE=1 LD_PRELOAD=$so /bin/true 2>"$tmp/err" )
grep -q '^tally: arenas: 2[0-9][0-9]\(\.[0-9]*\)\? MiB of address space reserved' "$tmp/err" ||
    bad "TALLY_VERBOSE under ulimit -v does not state the reservation: $(grep arenas "$tmp/err")"
out=$(env TALLY_RESERVE=4M LD_PRELOAD=$so echo hello 2>"$tmp/err")
[ "$out" = hello ] || bad "TALLY_RESERVE=4M changed the program's output"
[ "$(wc -l <"$tmp/err")" = 1 ] && grep -q 'TALLY_RESERVE is below .*16M reserved' "$tmp/err" ||
    bad "TALLY_RESERVE=4M: expected one warning, got: $(cat "$tmp/err")"

# 7. TALLY_VERBOSE lists the options in effect.
TALLY_VERBOSE=1 LD_PRELOAD=$so /bin/true 2>"$tmp/err"
grep -q '^tally: TALLY_RESERVE' "$tmp/err" || bad "TALLY_VERBOSE=1 did not list the options"

# 8. What is said at exit reaches the stderr the program started with, even when the program
# closed it first (python closes its fd 2 here; coreutils do in an atexit handler), and the
# library keeps no descriptor of its own unless it has something to say at exit.
TALLY_LEAKS=1 PYTHONMALLOC=malloc LD_PRELOAD=$so $py -c 'import os; os.close(2)' 2>"$tmp/err" ||
    bad "python closing its stderr failed under TALLY_LEAKS=1"
grep -q '^tally: LEAK SUMMARY' "$tmp/err" ||
    bad "TALLY_LEAKS=1: no LEAK SUMMARY after the program closed its stderr: $(cat "$tmp/err")"
TALLY_LEAKS=1 LD_PRELOAD=$so ls / >/dev/null 2>"$tmp/err"
grep -q '^tally: LEAK SUMMARY' "$tmp/err" || bad "TALLY_LEAKS=1 ls: no LEAK SUMMARY (ls closes its stderr at exit)"
TALLY_STATS=1 LD_PRELOAD=$so $py -c 'import os; os.close(2)' 2>"$tmp/err"
grep -q 'statistics' "$tmp/err" || bad "TALLY_STATS=1: no statistics after the program closed its stderr"
plain=$(ls /proc/self/fd | wc -l)
[ "$(LD_PRELOAD=$so ls /proc/self/fd | wc -l)" = "$plain" ] ||
    bad "the library left a descriptor open in a program that asked for nothing"
[ "$(TALLY_LEAKS=quiet LD_PRELOAD=$so ls /proc/self/fd | wc -l)" = "$plain" ] ||
    bad "TALLY_LEAKS=quiet (nothing said at exit) kept a descriptor"
# the kept descriptor is close-on-exec: a child sees the same descriptors as without the library
[ "$(TALLY_LEAKS=1 LD_PRELOAD=$so env -u LD_PRELOAD ls /proc/self/fd 2>/dev/null | wc -l)" = "$plain" ] ||
    bad "a child inherited the library's descriptor"

exit $fail
