#!/bin/bash
# tests/prof/generations.sh - addresses reused by another module after dlclose: gen_a.so makes 16
# allocations and is unloaded, gen_b.so (other code at the same offsets) is loaded at the same
# address and makes 24. The dump must let a reader tell the two apart: the sites carry the
# module generation of their stack and the module records the generations they cover, so that
# each site's frames resolve to the plugin that was really there (by nm), 16 to gen_alloc_a and
# 24 to gen_alloc_b.
. "$top_srcdir/tests/preload/common.sh"
need nm binutils
prog=$top_builddir/tests/prof/generations
a=$top_builddir/tests/prof/.libs/gen_a.so
b=$top_builddir/tests/prof/.libs/gen_b.so
for f in "$prog" "$a" "$b"; do [ -e "$f" ] || hard_error "$f is not built"; done
export PYTHONPATH=$top_srcdir/tests/prof

timeout 60 env LD_PRELOAD="$TALLY_LIB" TALLY_PROFILE=all TALLY_OUT="$tmp/g.tly" "$prog" "$a" "$b" \
    >"$tmp/g.out" 2>"$tmp/g.err" || fail "the program failed: $(cat "$tmp/g.err")"
cat "$tmp/g.out"
base_a=$(sed -n 's/^a //p' "$tmp/g.out")
base_b=$(sed -n 's/^b //p' "$tmp/g.out")
[ -n "$base_a" ] && [ "$base_a" = "$base_b" ] ||
    fail "gen_b.so was not loaded where gen_a.so was ($base_a, $base_b): nothing to tell apart"
/usr/bin/python3 - "$tmp/g.tly" "$a" "$b" <<'PY' || fail "the sites do not resolve to the right plugin"
import os, sys, dumpcheck
d = dumpcheck.parse(sys.argv[1])
files = {os.path.realpath(p): p for p in sys.argv[2:]}
mods = [m for m in d["module"] if os.path.realpath(m["path"]) in files]
print("header gen", d["header"].get("gen"), "modules:",
      [(os.path.basename(m["path"]), m.get("gen_lo", 0), m.get("gen_hi")) for m in mods])
funcs = {m["path"]: dumpcheck.functions(m["path"]) for m in mods}

def module_for(ip, g):
    """FORMAT.md: the module covering ip whose generations hold g."""
    hits = [m for m in mods if m["lo"] <= ip < m["hi"] and m.get("gen_lo", 0) <= g and
            (m.get("gen_hi") is None or g <= m["gen_hi"])]
    return hits

got, bad = {}, []
for s in d["site"]:
    for ip in d["stacks"][s["stack"]]:
        hits = module_for(ip, s.get("gen", 0))
        if not hits:
            continue
        if len(hits) > 1:
            bad.append("site %d: frame %#x is in %d modules of generation %d" % (s["id"], ip, len(hits), s.get("gen", 0)))
        m = hits[0]
        off = ip - m["base"] - 1
        name = next((f[2] for f in funcs[m["path"]] if f[0] <= off < f[1]), None)
        if name and name.startswith("gen_alloc"):
            got[name] = got.get(name, 0) + s["alloc_count"]
            break
print("allocations by plugin function:", got)
if d["header"].get("gen", 0) < 1:
    bad.append("the generation did not change when gen_b.so took gen_a.so's place")
if got != {"gen_alloc_a": 16, "gen_alloc_b": 24}:
    bad.append("want 16 in gen_alloc_a and 24 in gen_alloc_b")
for b in bad:
    print("FAIL:", b)
sys.exit(1 if bad else 0)
PY
finish
