#!/bin/bash
# tests/prof/plugin.sh - a plugin unloaded before the dump is still in the dump's module map
# (unloaded=1), and its allocations' frames fall in it; loading, unloading and loading again
# under the profiler (whose unwinder caches must be flushed at dlclose) runs cleanly.
. "$top_srcdir/tests/preload/common.sh"
prog=$top_builddir/tests/prof/plugin
[ -x "$prog" ] || hard_error "$prog is not built"
export PYTHONPATH=$top_srcdir/tests/prof

timeout 60 env LD_PRELOAD="$TALLY_LIB" TALLY_PROFILE=all TALLY_OUT="$tmp/p.tly" "$prog" \
    >"$tmp/p.out" 2>"$tmp/p.err" || fail "the program failed: $(cat "$tmp/p.err")"
grep -q done "$tmp/p.out" || fail "the program did not finish"
/usr/bin/python3 - "$tmp/p.tly" <<'PY' || fail "the dump does not account for the unloaded plugin"
import sys, dumpcheck
d = dumpcheck.parse(sys.argv[1])
mods = [m for m in d["module"] if m["path"].endswith("/tls_lib.so")]
print("tls_lib.so records:", [(hex(m["base"]), m.get("unloaded")) for m in mods])
if not mods or any(m.get("unloaded") != 1 for m in mods):
    sys.exit("tls_lib.so is missing or not marked unloaded")
if any(m["build_id"] is None for m in mods):
    sys.exit("tls_lib.so has no build-id")
# The plugin's own malloc call makes 64 allocations a round (1..505 bytes); glibc may also
# allocate the plugin's dynamic TLS from its first instruction, another site in the plugin.
counts = []
for s in d["site"]:
    frames = d["stacks"].get(s["stack"], [])
    if frames and any(m["lo"] <= frames[0] < m["hi"] for m in mods):
        counts.append(s["alloc_count"])
print("allocations by call sites whose innermost frame is in tls_lib.so:", counts)
sys.exit(0 if 128 in counts else "no site in tls_lib.so with 128 allocations (2 rounds x 64)")
PY
finish
