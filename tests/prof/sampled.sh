#!/bin/bash
# tests/prof/sampled.sh - sample mode (the default) on known allocations, TALLY_SAMPLE=64k.
# A site's byte estimate has a relative standard deviation of about sqrt(R / bytes): 7.2% for
# 12.8 MB, 1.3% for 400 MB. The checks allow 5 standard deviations (a false failure about once
# in two million runs). Blocks of 1 MiB are sampled with probability 1 - e^-16, so their
# figures are exact. Sampled blocks through every entry point of the API (tests/prof/marked).
# Also: TALLY_PROFILE=off writes nothing, and neither does sample mode without TALLY_OUT.
. "$top_srcdir/tests/preload/common.sh"
prog=$top_builddir/tests/prof/sampled
[ -x "$prog" ] || hard_error "$prog is not built"
export PYTHONPATH=$top_srcdir/tests/prof

timeout 120 env LD_PRELOAD="$TALLY_LIB" TALLY_SAMPLE=64k TALLY_OUT="$tmp/s.tly" "$prog" \
    >"$tmp/s.out" 2>"$tmp/s.err" || fail "the program failed: $(cat "$tmp/s.err")"
/usr/bin/python3 - "$tmp/s.tly" "$prog" <<'PY' || fail "the sampled estimates are off"
import math, sys, dumpcheck
d = dumpcheck.parse(sys.argv[1])
h, bad = d["header"], []
if h["mode"] != "sample" or h["sample_interval"] != 65536:
    bad.append("header says mode %s, interval %s" % (h["mode"], h["sample_interval"]))
scale = h["count_scale"]
sites = dumpcheck.by_function(d, sys.argv[2])
R = 65536.0

def near(name, field, got, want, sigma):
    err = abs(got - want) / want
    print("%s.%s: estimate %.0f, true %.0f, error %.2f%% (allowed %.2f%%)"
          % (name, field, got, want, 100 * err, 500 * sigma))
    if err > 5 * sigma:
        bad.append("%s.%s off by %.1f%%" % (name, field, 100 * err))

for name, n, size, live in (("site_many", 200000, 64, 200000), ("site_churn", 2000000, 200, 0)):
    s = sites.get(name)
    if not s:
        bad.append("no site %s" % name)
        continue
    sigma = math.sqrt(R / (n * size))
    near(name, "alloc_bytes", s["alloc_bytes"], n * size, sigma)
    near(name, "alloc_count", s["alloc_count"] / scale, n, sigma)
    if live:
        near(name, "live_bytes", s["live_bytes"], live * size, sigma)
    elif s["live_bytes"] != 0 or s["temporary"] != s["alloc_count"]:
        bad.append("%s: live %d, temporary %d of %d" % (name, s["live_bytes"], s["temporary"],
                                                        s["alloc_count"]))
    if not 0 < s["samples"] < n / 20:
        bad.append("%s: %d samples for %d allocations: not sampling" % (name, s["samples"], n))
s = sites.get("site_big")
if not s or s["samples"] != 100 or round(s["alloc_count"] / scale) != 100 \
        or abs(s["live_bytes"] - 50 * 2**20) > 64:
    bad.append("site_big: %r" % s)
# Pools are not shared out in sample mode (FORMAT.md: pinned_pool_bytes is 0).
if d["totals"]["pinned_pool_bytes"] != 0:
    bad.append("pinned_pool_bytes %d in sample mode" % d["totals"]["pinned_pool_bytes"])
for b in bad:
    print("FAIL:", b)
sys.exit(1 if bad else 0)
PY

# Sampled blocks are glibc's with a header of the library's before them (alloc.c), known at free
# by that header with no table lookup. tests/prof/marked goes through every entry point of the
# malloc API and across the 512-byte limit both ways, checking every byte: it must read the same
# with profiling off, with every block sampled (TALLY_SAMPLE=1) and with some (4k). With every
# block of 700 bytes or more sampled (probability 1 - e^-700), its 64 kept blocks are exactly the
# live ones of its allocating function: no freed block stayed in the table.
marked=$top_builddir/tests/prof/marked
[ -x "$marked" ] || hard_error "$marked is not built"
env LD_PRELOAD="$TALLY_LIB" TALLY_PROFILE=off "$marked" >"$tmp/m.off" 2>"$tmp/m.err" ||
    fail "marked failed with profiling off: $(cat "$tmp/m.err")"
for rate in 1 4k; do
    env LD_PRELOAD="$TALLY_LIB" TALLY_SAMPLE=$rate TALLY_OUT="$tmp/m$rate.tly" "$marked" \
        >"$tmp/m.$rate" 2>"$tmp/m.err" || fail "marked failed with TALLY_SAMPLE=$rate: $(cat "$tmp/m.err")"
    cmp -s "$tmp/m.off" "$tmp/m.$rate" ||
        fail "marked read other bytes with TALLY_SAMPLE=$rate: $(cat "$tmp/m.$rate")"
done
# A sampled calloc stays calloc: 1 GiB of zero pages the program does not touch is not resident.
rss=$(env LD_PRELOAD="$TALLY_LIB" /usr/bin/time -f %M "$marked" bigcalloc 2>&1 >/dev/null | tail -n 1)
[[ $rss =~ ^[0-9]+$ ]] && [ "$rss" -lt 65536 ] ||
    fail "a sampled calloc of 1 GiB made the peak RSS $rss KB (its pages were touched)"
# And a sampled block grown by realloc moves as glibc moves it (mremap), not by a copy.
rss=$(env LD_PRELOAD="$TALLY_LIB" /usr/bin/time -f %M "$marked" biggrow 2>&1 >/dev/null | tail -n 1)
[[ $rss =~ ^[0-9]+$ ]] && [ "$rss" -lt 65536 ] ||
    fail "a sampled block grown to 512 MiB by realloc made the peak RSS $rss KB (it was copied)"
/usr/bin/python3 - "$tmp/m1.tly" "$marked" <<'PY' || fail "the sampled blocks' figures are off"
import sys, dumpcheck
d = dumpcheck.parse(sys.argv[1])
scale = d["header"]["count_scale"]
s = dumpcheck.by_function(d, sys.argv[2], prefix="make").get("make")
want = 64 * 700 + 13 * sum(range(64))
print("make: live %s bytes in %s blocks, want %d in 64" %
      (s and s["live_bytes"], s and s["live_count"] / scale, want))
sys.exit(0 if s and s["live_bytes"] == want and s["live_count"] == 64 * scale else 1)
PY

mkdir "$tmp/cwd"
(cd "$tmp/cwd" && env LD_PRELOAD="$TALLY_LIB" "$prog" >/dev/null) || fail "run without TALLY_OUT failed"
(cd "$tmp/cwd" && env LD_PRELOAD="$TALLY_LIB" TALLY_PROFILE=off TALLY_OUT="$tmp/cwd/off.tly" \
    "$prog" >/dev/null) || fail "run with TALLY_PROFILE=off failed"
left=$(ls -A "$tmp/cwd")
[ -z "$left" ] && say "no file written without TALLY_OUT or with profiling off" ||
    fail "files left behind: $left"
finish
