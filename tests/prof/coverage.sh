#!/bin/bash
# tests/prof/coverage.sh - sampled estimates and their intervals. A program with known figures
# (coverage.c) runs 60 times in sample mode (TALLY_SAMPLE=64k: each run samples anew); for each
# of its sites, the 95% intervals `tally report --json` gives the allocated bytes and count, the
# bytes at the peak and the bytes live at exit must hold the true figure in at least 51 of the
# 60 runs (a well-made 95% interval fails that about once in a thousand runs of this test); and
# the interval must not be wider than statistics allows: its median width for the 2 MB site,
# about 30 samples, is checked against the 72% a 95% interval has. A site none of whose samples were live at the peak has an
# estimate of 0 there: its interval must still reach the truth.
. "$top_srcdir/tests/preload/common.sh"
prog=$top_builddir/tests/prof/coverage
tally=$top_builddir/tools/tally
[ -x "$prog" ] && [ -x "$tally" ] || hard_error "coverage or tally is not built"
runs=60
for i in $(seq $runs); do
    timeout 60 env LD_PRELOAD="$TALLY_LIB" TALLY_SAMPLE=64k TALLY_OUT="$tmp/c$i.tly" "$prog" \
        >/dev/null 2>"$tmp/c$i.err" || fail "run $i failed: $(cat "$tmp/c$i.err")"
    "$tally" report --json --top 0 "$tmp/c$i.tly" >"$tmp/c$i.json" 2>"$tmp/c$i.jerr" ||
        fail "tally report $i failed: $(cat "$tmp/c$i.jerr")"
done
/usr/bin/python3 - "$tmp" $runs <<'PY' || fail "the intervals do not cover the true figures"
import json, sys, statistics
tmp, runs = sys.argv[1], int(sys.argv[2])
# site: (alloc_bytes, alloc_count, peak_bytes, live_bytes)
truth = {"site_churn": (20000000, 200000, 0, 0),
         "site_small": (192000, 4000, 192000, 192000),
         "site_mid": (2000000, 2000, 2000000, 1000000),
         "site_big": (262144, 1, 262144, 262144),  # each of its three calls is a site
         "site_mixed": (960000, 20000, 48000, 48000)}
keys = ("alloc_bytes", "alloc_count", "peak_bytes", "live_bytes")
hits = {(s, k): 0 for s in truth for k in keys}
seen = {s: 0 for s in truth}
zero_peak = 0
widths = []
for i in range(1, runs + 1):
    d = json.load(open("%s/c%d.json" % (tmp, i)))
    for site in d["sites"]:
        name = next((f["function"] for f in site["frames"] if f["function"] in truth), None)
        if not name:
            continue
        seen[name] += 1
        for j, k in enumerate(keys):
            lo, hi = site["intervals"][k]
            hits[(name, k)] += lo <= truth[name][j] <= hi
        if name == "site_mixed" and site["peak_bytes"] == 0:
            zero_peak += 1
        if name == "site_mid":
            lo, hi = site["intervals"]["alloc_bytes"]
            widths.append((hi - lo) / truth[name][0])
bad = []
for s in truth:
    # a site none of whose allocations was sampled is not in the dump: site_small, with 192 KB
    # at R = 64 KiB, has no sample in e^-2.9 = 5% of runs
    if seen[s] < runs * 3 // 4:
        bad.append("%s is in %d dumps of %d" % (s, seen[s], runs))
for (s, k), n in sorted(hits.items()):
    print("%-10s %-12s covered in %d of %d runs" % (s, k, n, seen[s]))
    if n < seen[s] * 51 / 60:
        bad.append("%s %s: covered in %d of %d" % (s, k, n, seen[s]))
w = statistics.median(widths)
print("site_mid: median width of the allocated bytes' interval %.1f%% of the truth" % (100 * w))
# about 30 samples: the width of a 95% interval is near 2 x 1.96 / sqrt(30) = 72% of the figure
if not 0.5 < w < 1.0:
    bad.append("site_mid's interval is %.0f%% wide, want about 72%%" % (100 * w))
print("site_mixed: no sample live at the peak in %d runs" % zero_peak)
if zero_peak == 0:
    bad.append("site_mixed never had its estimate at the peak at 0: the case is not tested")
for b in bad:
    print("FAIL:", b)
sys.exit(1 if bad else 0)
PY
finish
