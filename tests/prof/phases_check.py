"""phases_check.py DUMP BINARY: the timeline of tests/prof/phases.c's dump (all mode) carries
the call sites as they were: its detailed points (`sites`) name site_early as the top site
while it held its 2,000,000 bytes and site_late after, site_churn among the sites that
allocated most between two points, every figure within the site's own totals, and the
allocation count of the last point equal to the sum over the sites."""
import sys

import dumpcheck

path, binary = sys.argv[1], sys.argv[2]
d = dumpcheck.parse(path)
failures = []
sites = dumpcheck.by_function(d, binary)
name_of = {}
for name, agg in sites.items():
    for i in agg["ids"]:
        name_of[i] = name
for name in ("site_early", "site_late", "site_churn"):
    if name not in sites:
        failures.append("%s: no call site in the dump" % name)
record = {s["id"]: s for s in d["site"]}

tl = d["timeline"]
detailed = [p for p in tl if "sites" in p]
if len(detailed) < 5:
    failures.append("only %d detailed timeline points of %d" % (len(detailed), len(tl)))
counts = [p.get("alloc_count", 0) for p in tl]
if counts != sorted(counts):
    failures.append("alloc_count goes down along the timeline: %s" % counts)
total = sum(s["alloc_count"] for s in d["site"])
if counts and counts[-1] != total:
    failures.append("the last point's alloc_count is %d, the sites' sum %d" % (counts[-1], total))

last_alloc = {}
for p in detailed:
    ids = [s for s, _, _ in p["sites"]]
    if len(ids) != len(set(ids)) or len(ids) > 16:
        failures.append("t=%d: sites listed twice or more than 16: %s" % (p["t_ns"], ids))
    for sid, live, alloc in p["sites"]:
        if sid not in record:
            failures.append("t=%d: site %d is not in the dump" % (p["t_ns"], sid))
            continue
        r = record[sid]
        if not 0 <= live <= alloc or alloc > r["alloc_bytes"]:
            failures.append("t=%d: site %d live %d allocated %d (in all: %d)"
                            % (p["t_ns"], sid, live, alloc, r["alloc_bytes"]))
        if alloc < last_alloc.get(sid, 0):
            failures.append("site %d: allocated bytes go down along the timeline" % sid)
        last_alloc[sid] = alloc
    # listed by live bytes first: the first is the largest then
    lives = [live for _, live, _ in p["sites"] if live > 0]
    if lives and lives[0] != max(lives):
        failures.append("t=%d: the first site is not the one holding most" % p["t_ns"])

def top_at(p):
    return name_of.get(p["sites"][0][0]) if p["sites"] and p["sites"][0][1] > 0 else None

tops = [top_at(p) for p in detailed]
early = [i for i, p in enumerate(detailed)
         if any(name_of.get(s) == "site_early" and live >= 1000000 for s, live, _ in p["sites"])]
late = [i for i, p in enumerate(detailed)
        if any(name_of.get(s) == "site_late" and live >= 1000000 for s, live, _ in p["sites"])]
if not early or any(tops[i] != "site_early" for i in early):
    failures.append("site_early is not the top site while it holds 1 MB or more: %s" % tops)
if not late or any(tops[i] != "site_late" for i in late):
    failures.append("site_late is not the top site while it holds 1 MB or more: %s" % tops)
if early and late and max(early) >= min(late):
    failures.append("site_late's phase does not come after site_early's")
churned = [p for p in detailed
           if any(name_of.get(s) == "site_churn" and a > 0 for s, _, a in p["sites"])]
if not churned:
    failures.append("site_churn (6.5 MB allocated, nothing kept) is never among the sites listed")
final = {name_of.get(s): (live, a) for s, live, a in detailed[-1]["sites"]} if detailed else {}
if final.get("site_late") != (1500000, 1500000):
    failures.append("at the end site_late shows %r, want (1500000, 1500000)" % (final.get("site_late"),))
if "site_churn" in final and final["site_churn"][1] != 102000 * 64:
    failures.append("at the end site_churn allocated %d, want %d" % (final["site_churn"][1], 102000 * 64))

for f in failures:
    print("FAIL:", f)
print("%s: %d timeline points, %d detailed, tops %s; %d checks failed"
      % (path, len(tl), len(detailed), [t for t in tops if t], len(failures)))
sys.exit(1 if failures else 0)
