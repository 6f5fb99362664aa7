#!/usr/bin/env python3
"""chart.py RESULTS.TSV OUTDIR: the two charts of the benchmark suite (bench/run.sh --write), as
self-contained SVG files: OUTDIR/time.svg and OUTDIR/rss.svg. For each workload, one bar per
allocator: its median (time, or peak RSS) over jemalloc's median, on a log scale centred on 1
(left of the line: better than jemalloc). A workload without jemalloc's figure, or an allocator
without one (missing, crashed), gets no bar; the label says so.

Only the standard library: the SVG is written by hand.
"""
import csv
import html
import math
import os
import statistics
import sys

COLORS = {
    "glibc": "#8c8c8c",
    "jemalloc": "#4c72b0",
    "mimalloc": "#55a868",
    "tcmalloc": "#8172b2",
    "tally-off": "#dd8452",
    "tally-sample": "#e8a96b",
    "tally-all": "#c44e52",
}
LO, HI = 1 / 16, 16  # the axis: ratios outside are drawn at the edge, with their value


def medians(path, field):
    runs = {}
    order_w, order_a = [], []
    with open(path, newline="") as f:
        for row in csv.DictReader(f, delimiter="\t"):
            w, a = row["workload"], row["allocator"]
            if w not in order_w:
                order_w.append(w)
            if a not in order_a:
                order_a.append(a)
            if row["status"] != "ok" or row[field] in ("-", ""):
                continue
            runs.setdefault((w, a), []).append(float(row[field]))
    return order_w, order_a, {k: statistics.median(v) for k, v in runs.items()}


def chart(path, field, title, out):
    workloads, allocators, med = medians(path, field)
    workloads = [w for w in workloads if any((w, a) in med for a in allocators)]
    bar, gap, left, width = 11, 10, 120, 560
    height = 70 + len(workloads) * (len(allocators) * bar + gap) + 30 + 18 * ((len(allocators) + 3) // 4)

    def x(r):
        r = min(max(r, LO), HI)
        return left + width * (math.log(r) - math.log(LO)) / (math.log(HI) - math.log(LO))

    s = ['<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-family="sans-serif" '
         'font-size="11">' % (left + width + 80, height),
         '<rect width="100%" height="100%" fill="white"/>',
         '<text x="%d" y="20" font-size="14" font-weight="bold">%s</text>' % (left, html.escape(title)),
         '<text x="%d" y="36" fill="#555">median over jemalloc\'s median, log scale; left of the '
         'line is better</text>' % left]
    top = 50
    for r in (1 / 16, 1 / 4, 1 / 2, 1, 2, 4, 16):
        xx = x(r)
        s.append('<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="%s" stroke-width="%s"/>' %
                 (xx, top, xx, height - 40 - 18 * ((len(allocators) + 3) // 4),
                  "#333" if r == 1 else "#ddd", "1.5" if r == 1 else "1"))
        label = ("1/%d" % round(1 / r)) if r < 1 else "%g" % r
        s.append('<text x="%.1f" y="%d" text-anchor="middle" fill="#555">%s×</text>' %
                 (xx, top - 2, label))
    y = top + 6
    for w in workloads:
        base = med.get((w, "jemalloc"))
        s.append('<text x="%d" y="%d" text-anchor="end" font-weight="bold">%s</text>' %
                 (left - 8, y + len(allocators) * bar / 2 + 4, html.escape(w)))
        for a in allocators:
            v = med.get((w, a))
            if base and v is not None:
                r = v / base
                x0, x1 = x(1), x(r)
                s.append('<rect x="%.1f" y="%d" width="%.1f" height="%d" fill="%s"><title>%s %s: '
                         '%.2f×</title></rect>' % (min(x0, x1), y, max(abs(x1 - x0), 1), bar - 2,
                                                  COLORS.get(a, "#999"), html.escape(w), a, r))
                s.append('<text x="%.1f" y="%d" fill="#333" font-size="9">%.2f</text>' %
                         (max(x0, x1) + 3, y + bar - 3, r))
            else:
                s.append('<text x="%.1f" y="%d" fill="#999" font-size="9">%s: no figure</text>' %
                         (x(1) + 3, y + bar - 3, a))
            y += bar
        y += gap
    y += 14
    for i, a in enumerate(allocators):
        lx, ly = left + (i % 4) * 150, y + (i // 4) * 18
        s.append('<rect x="%d" y="%d" width="12" height="10" fill="%s"/>' % (lx, ly - 9, COLORS.get(a, "#999")))
        s.append('<text x="%d" y="%d">%s</text>' % (lx + 16, ly, html.escape(a)))
    s.append("</svg>")
    with open(out, "w") as f:
        f.write("\n".join(s) + "\n")


def main():
    if len(sys.argv) != 3:
        sys.stderr.write("usage: chart.py RESULTS.TSV OUTDIR\n")
        return 2
    path, outdir = sys.argv[1], sys.argv[2]
    chart(path, "time", "Time, against jemalloc", os.path.join(outdir, "time.svg"))
    chart(path, "peak_rss_kb", "Peak RSS, against jemalloc", os.path.join(outdir, "rss.svg"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
