"""linecmp.py TRACEMALLOC_JSON TALLY_JSON SOURCE...: compare, line by line, what tracemalloc
and tallymalloc saw live in the test application (tests/python/app.py).

TRACEMALLOC_JSON: [[file, line, size, count], ...] from snapshot.statistics('lineno').
TALLY_JSON: `tally report --json --by line --top 0` of the tally run's dump.
Only the lines of SOURCE files marked with a `# NAME` comment are compared: those allocate what
stays live inside the traced region. Prints one line per marked line; exits 1 when any differs
by more than the tolerance (see tests/python/frames.sh for why there is one).
"""
import json
import os
import re
import sys


def marked(sources):
    """{(file, line): (NAME, extra bytes tally may see)} for `# NAME` or `# NAME ~BYTES`
    (`# via NAME` and `# native NAME` lines are not compared)."""
    out = {}
    for path in sources:
        for n, text in enumerate(open(path), 1):
            m = re.search(r"#\s*([A-Z][A-Z_]+)(?:\s+~(\d+))?\s*$", text)
            if m and not re.search(r"#\s*(via|native)\s", text):
                out[(os.path.basename(path), n)] = (m.group(1), int(m.group(2) or 0))
    return out


def main():
    sample = sys.argv[1] == "--sample"
    if sample:  # --sample R: the dump's mean sampling interval
        rate = int(sys.argv[2])
        del sys.argv[1:3]
    tm_path, tally_path, *sources = sys.argv[1:]
    want = marked(sources)
    tm = {}
    for f, line, size, count in json.load(open(tm_path)):
        key = (os.path.basename(f), line)
        if key in want:
            a = tm.setdefault(key, [0, 0])
            a[0] += size
            a[1] += count
    ta, iv = {}, {}
    for s in json.load(open(tally_path))["sites"]:
        fr = s["frames"][0] if s["frames"] else None
        if not fr or not fr.get("python"):
            continue
        key = (os.path.basename(fr["file"]), fr["line"])
        if key in want:
            a = ta.setdefault(key, [0, 0])
            a[0] += s["live_bytes"]
            a[1] += s["live_count"]
            i = iv.setdefault(key, [0, 0])
            lo, hi = s.get("intervals", {}).get("live_bytes", [s["live_bytes"]] * 2)
            i[0] += lo
            i[1] += hi
    bad = 0
    for key in sorted(want):
        name, extra = want[key]
        t, y = tm.get(key, [0, 0]), ta.get(key, [0, 0])
        if sample:
            # The 95% interval of the estimate holds tracemalloc's figure, give or take what
            # CPython's free lists move (below); of 15 lines, 4 or more outside by chance has a
            # probability of 0.5%.
            # no sample at all: [0, 3.7 R] (no sample in B bytes has probability exp(-B / R))
            lo, hi = iv.get(key, [0, int(3.7 * rate)])
            slack = 1024 + t[0] // 50 + extra
            ok = lo - slack <= t[0] <= hi + slack
        else:
            # The same requests seen by two tracers, neither counting its own tables. What can
            # differ is what CPython's free lists (dicts, lists, tuples, 80 of each at most) hand
            # out again: tracemalloc charges a reused object to the line that reuses it
            # (_PyTraceMalloc_NewReference), an allocator to the line that made it. So: 2% or
            # 1 KiB, and 16 blocks, besides what the line's ~BYTES allows.
            tol = max(1024, t[0] // 50)
            ok = (-tol <= y[0] - t[0] <= tol + extra and
                  abs(t[1] - y[1]) <= max(16, t[1] // 50) + extra // 32 and (t[0] > 0 or extra))
        bad += not ok
        print("%-4s %-16s %s:%d  tracemalloc %d B in %d, tally %d B in %d%s" % (
            "ok" if ok else "BAD", name, key[0], key[1], t[0], t[1], y[0], y[1],
            "  (95%%: %d..%d)" % tuple(iv.get(key, [0, 0])) if sample else ""))
    if sample:
        return 1 if bad > 3 else 0
    return 1 if bad else 0


sys.exit(main())
