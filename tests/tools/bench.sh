#!/bin/bash
# tests/tools/bench.sh - the benchmark suite's harness works (it asserts no timing: performance
# lives in bench/, measured, never in make check). bench/run.sh --quick --runs 1 on four
# workloads (one of them server.c's larson, threads that come and go) gives a row for every
# allocator with a figure, the geometric means and the frag detail; an allocator whose library
# is missing is reported as missing and the suite goes on; a workload that is not one is refused
# in one line; bench/chart.py draws both charts from the raw runs as well-formed SVG with a bar
# per allocator and workload.
. "$top_srcdir/tests/preload/common.sh"
run=$top_srcdir/bench/run.sh
[ -f "$run" ] || hard_error "$run is missing"

MIMALLOC_LIB=/nonexistent/libmimalloc.so timeout 600 bash "$run" --lib "$TALLY_LIB" --quick \
    --runs 1 --only single,larson,frag,sqlite --builddir "$tmp/b" >"$tmp/report.md" 2>"$tmp/err" ||
    fail "bench/run.sh failed: $(tail -5 "$tmp/err")"
for w in single larson sqlite; do
    for a in glibc jemalloc tcmalloc tally-off tally-sample tally-all; do
        grep -qE "^\| $w \| $a \| [0-9.]+ \([0-9.]+–[0-9.]+\) (ns/op|s) \| [0-9.]+ \| [0-9.]+ \| [0-9.]+ \|$" \
            "$tmp/report.md" || fail "no figures for $w under $a: $(grep "^| $w | $a |" "$tmp/report.md")"
    done
    grep -qx "| $w | mimalloc | missing | – | – | – |" "$tmp/report.md" ||
        fail "the missing mimalloc is not reported as missing for $w"
done
grep -q '^| frag | tally-off | – | – | [0-9.]* | [0-9.]* |$' "$tmp/report.md" || fail "no frag row for tally-off"
grep -qE '^\| tally-off \| [0-9.]+ \([0-9.]+–[0-9.]+\) \| [0-9.]+ \| [0-9.]+ \| [0-9.]+ \| [0-9.]+ \| [0-9.]+ \|$' \
    "$tmp/report.md" || fail "no frag detail for tally-off"
grep -qE '^\| jemalloc \| 1\.00 \| 1\.00 \| 4 \|$' "$tmp/report.md" || fail "jemalloc's geometric mean is not 1"
grep -q '^\[[0-9]*/24\] sqlite tally-all run 1/1 (.* so far, about .* left)$' "$tmp/err" ||
    fail "no progress line: $(tail -3 "$tmp/err")"

bash "$run" --only nosuch >/dev/null 2>"$tmp/e2"
[ $? = 1 ] && [ "$(wc -l <"$tmp/e2")" = 1 ] && grep -q "no workload 'nosuch'" "$tmp/e2" ||
    fail "--only nosuch: $(cat "$tmp/e2")"

/usr/bin/python3 "$top_srcdir/bench/chart.py" "$tmp/b/results.tsv" "$tmp" || fail "chart.py failed"
/usr/bin/python3 - "$tmp" <<'PY' || fail "the charts are not right"
import sys, xml.dom.minidom
bad = []
for name in ("time.svg", "rss.svg"):
    doc = xml.dom.minidom.parse(sys.argv[1] + "/" + name)
    bars = [r for r in doc.getElementsByTagName("rect") if r.getElementsByTagName("title")]
    titles = sorted(r.getElementsByTagName("title")[0].firstChild.data.split(":")[0] for r in bars)
    want = 6 * (4 if name == "rss.svg" else 3)  # six allocators with figures; frag has no time
    if len(bars) != want:
        bad.append("%s: %d bars, want %d: %s" % (name, len(bars), want, titles))
for b in bad:
    print("FAIL:", b)
sys.exit(1 if bad else 0)
PY
finish
