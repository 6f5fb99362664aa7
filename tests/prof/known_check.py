"""known_check.py DUMP BINARY [child]: exact checks of tests/prof/known.c's dump (all mode)."""
import sys

import dumpcheck

path, binary = sys.argv[1], sys.argv[2]
child = len(sys.argv) > 3 and sys.argv[3] == "child"
d = dumpcheck.parse(path)
failures = []


def check(what, got, want):
    if got != want:
        failures.append("%s: got %r, want %r" % (what, got, want))


h = d["header"]
check("mode", h["mode"], "all")
check("count_scale", h["count_scale"], 1)
check("reason", h["reason"], "exit")
check("unwinder", h["unwinder"], "fast")

sites = dumpcheck.by_function(d, binary)
# name: alloc_count, alloc_bytes, granted_bytes, free_count, live_count, live_bytes, temporary
want = {
    "site_temp": (1000, 40000, 48000, 1000, 0, 0, 1000),
    "site_keep": (300, 30000, 300 * 112, 0, 300, 30000, 0),
    "site_half": (400, 9600, 400 * 32, 200, 200, 4800, 0),
    "site_large": (10, 1000000, None, 4, 6, 600000, 0),
    "site_new": (50, 800, 800, 50, 0, 0, 0),
    "site_grow": (50, 50000, None, 0, 50, 50000, 0),
    "site_aligned": (20, 5120, None, 0, 20, 5120, 0),
    "site_thread": (1000, 64000, 64000, 500, 500, 32000, 0),
}
if child:
    want["site_child"] = (70, 3360, 70 * 48, 0, 70, 3360, 0)
fields = ("alloc_count", "alloc_bytes", "granted_bytes", "free_count", "live_count",
          "live_bytes", "temporary")
for name, values in want.items():
    s = sites.get(name)
    if s is None:
        failures.append("%s: no call site found in the dump" % name)
        continue
    for field, v in zip(fields, values):
        if v is not None:
            check("%s.%s" % (name, field), s[field], v)
    if values[2] is None:  # glibc's usable size: at least the request
        if s["granted_bytes"] < s["alloc_bytes"]:
            failures.append("%s: granted %d < requested %d" % (name, s["granted_bytes"],
                                                               s["alloc_bytes"]))
    check("%s: one stack" % name, len(s["ids"]), 1)
    hist = dumpcheck.parse(path)  # noqa: size histogram checked below from the raw record
extra = set(sites) - set(want)
if extra:
    failures.append("unexpected call sites: %s" % sorted(extra))

# Size histograms: powers of two of the requested size.
raw = {r["id"]: r for r in d["site"]}
for name, bucket in (("site_temp", 5), ("site_keep", 6), ("site_large", 16)):
    if name in sites:
        r = raw[sites[name]["ids"][0]]
        check("%s.size_hist" % name, r["size_hist"], {bucket: want[name][0]})
# Lifetimes: site_temp's are all 0 (temporary); site_new's blocks were freed by realloc after
# 1..50 allocations of site_grow's.
if "site_temp" in sites:
    check("site_temp.life_hist", raw[sites["site_temp"]["ids"][0]]["life_hist"], {0: 1000})
if "site_new" in sites:
    lh = raw[sites["site_new"]["ids"][0]]["life_hist"] or {}
    check("site_new lifetimes counted", sum(lh.values()), 50)
    if min(lh) < 1 or max(lh) > 6:
        failures.append("site_new lifetimes outside 1..50 allocations: %r" % lh)

# Whole-program identities.
t = d["totals"]
check("sum of live bytes", sum(r["live_bytes"] for r in d["site"]), t["live_bytes"])
peak_sum = sum(r["peak_live_bytes"] for r in d["site"])
if abs(peak_sum - t["peak_bytes"]) > t["peak_bytes"] // 100:
    failures.append("sum of peak_live_bytes %d is not within 1%% of peak_bytes %d"
                    % (peak_sum, t["peak_bytes"]))
if t["peak_bytes"] < 30000 + 4800 + 600000 + 50000 + 5120:
    failures.append("peak_bytes %d is below what was live at the end" % t["peak_bytes"])
for r in d["site"]:
    if r["max_live_bytes"] < r["peak_live_bytes"] or r["max_live_bytes"] < r["live_bytes"]:
        failures.append("site %d: max_live_bytes below peak or live" % r["id"])

# Live blocks at exit: one block line per live block, by site.
blocks = {}
for b in d["block"]:
    c = blocks.setdefault(b["site"], [0, 0])
    c[0] += 1
    c[1] += b["size"]
for r in d["site"]:
    got = blocks.get(r["id"], [0, 0])
    if r["id"] != 0:
        check("site %d blocks listed" % r["id"], got, [r["live_count"], r["live_bytes"]])

# Pinned memory: shares add up to the pools held plus the large blocks.
pool_bytes = sum(c["bytes_held"] for c in d["class"])
check("pinned_pool_bytes = pool bytes held", t["pinned_pool_bytes"], pool_bytes)
check("sum of pinned", sum(r["pinned_bytes"] for r in d["site"]),
      t["pinned_pool_bytes"] + t["pinned_large_bytes"])
if "site_keep" in sites and sites["site_keep"]["pinned_bytes"] < 30000:
    failures.append("site_keep pins %d bytes, less than its live bytes"
                    % sites["site_keep"]["pinned_bytes"])

tl = d["timeline"]
if not tl or any(a["t_ns"] > b["t_ns"] for a, b in zip(tl, tl[1:])):
    failures.append("timeline missing or not in time order")

for f in failures:
    print("FAIL:", f)
print("%s: %d sites, %d stacks, %d live blocks, %d checks failed"
      % (path, len(d["site"]), len(d["stacks"]), len(d["block"]), len(failures)))
sys.exit(1 if failures else 0)
