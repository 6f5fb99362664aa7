#!/bin/bash
# tests/tools/html.sh - `tally html` in a real browser: the page of golden's dump is opened in
# headless Chromium (Debian's chromium), whose DOM after the page's script has run must show
# no script error, the sortable table with golden's eight call sites (and sorting by a column
# must work), the flame graph (its own script run: every frame set up), the charts drawn (the
# size and lifetime histograms adding up to golden's 683 allocations and 560 frees), and
# the leaks; a screenshot is saved as tests/tools/html-screenshot.png.
. "$top_srcdir/tests/preload/common.sh"
need chromium chromium
tally=$top_builddir/tools/tally
[ -x "$tally" ] || hard_error "$tally is not built"

"$tally" run --leaks --lib "$TALLY_LIB" -o "$tmp/g.tly" -- "$top_builddir/tests/tools/golden" \
    >/dev/null 2>&1 || fatal "no dump"
"$tally" html -o "$tmp/page.html" "$tmp/g.tly" 2>"$tmp/e.txt" || fail "tally html failed: $(cat "$tmp/e.txt")"
[ -s "$tmp/page.html" ] || fatal "no page"
grep -qiE '(src|href)="https?:' "$tmp/page.html" && fail "the page loads something from the network"

browse() { # URL OUT...: chromium's DOM of URL after its scripts ran
    timeout 120 chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
        --disable-background-networking --disable-component-update --disable-sync \
        --user-data-dir="$tmp/profile" --virtual-time-budget=5000 "$@" 2>>"$tmp/chromium.log"
}
browse --dump-dom "file://$tmp/page.html#selftest" >"$tmp/dom.html" || fail "chromium failed: $(tail -3 "$tmp/chromium.log")"
/usr/bin/python3 - "$tmp/dom.html" "$tmp/flame.svg" <<'PY' || fail "the page did not render as it should"
import base64, re, sys
dom = open(sys.argv[1]).read()
bad = []
def want(what, ok):
    if not ok:
        bad.append(what)
body = re.search(r"<body([^>]*)>", dom)
want("the page's script did not finish (no data-ready)", body and 'data-ready="1"' in body.group(1))
errors = re.search(r'<pre id="errors">(.*?)</pre>', dom, re.S)
want("script errors: %r" % (errors.group(1) if errors else "no #errors"), errors and errors.group(1) == "")
sites = re.search(r'<table id="sites">.*?<tbody>(.*?)</tbody>', dom, re.S)
rows = re.findall(r"<tr>", sites.group(1)) if sites else []
want("the call-site table has %d rows, want 8" % len(rows), len(rows) == 8)
for fn in ("big_blocks", "build_table", "make_name", "parse_records", "lose_list"):
    want("no %s in the table" % fn, sites and fn in sites.group(1))
want("sorting by allocations did not put parse_records' 500 first",
     body and 'data-sorted-first="500"' in body.group(1))
tl = re.search(r'<svg class="chart" id="timeline".*?</svg>', dom, re.S)
series = re.findall(r'<polyline class="series"[^>]*points="([^"]+)"', tl.group(0)) if tl else []
want("the timeline has %d series, want 2 with points" % len(series),
     len(series) == 2 and all(len(s.split()) >= 2 for s in series))
cl = re.search(r'<svg class="chart" id="classes".*?</svg>', dom, re.S)
want("the size-class chart has no bars", cl and cl.group(0).count('class="bar"') >= 3)
for chart, total in (("sizes", 683), ("lifetimes", 560)):
    h = re.search(r'<svg class="chart" id="%s".*?</svg>' % chart, dom, re.S)
    counts = [int(c) for c in re.findall(r'data-count="(\d+)"', h.group(0))] if h else []
    want("the %s histogram's bars add up to %d, want golden's %d" % (chart, sum(counts), total),
         sum(counts) == total)
want("the sizes histogram lacks parse_records' 500 blocks of [64 B, 128 B)",
     re.search(r'\[64 B, 128 B\): 501</title>', dom))
want("no leak summary of golden's 123 blocks",
     '<p id="leak-summary">134,848 bytes in 123 blocks: 960 lost. Kinds as valgrind' in dom)
want("the LEAK SUMMARY table lacks golden's 19 indirectly lost blocks",
     re.search(r'<td class="txt">indirectly lost</td><td>912</td><td>19</td>', dom))
rows = re.search(r'<table id="leaks">.*?<tbody>(.*?)</tbody>', dom, re.S)
recs = re.findall(r'<tr><td data-v="(\d+)">[^<]*</td><td data-v="(\d+)">[^<]*</td><td class="txt" data-v="([a-z ]+)"',
                  rows.group(1) if rows else "")
want("the leaks table: want golden's 7 loss records, largest first, got %s" % recs,
     len(recs) == 7 and recs[0] == ("100000", "1", "still reachable")
     and [int(r[0]) for r in recs] == sorted((int(r[0]) for r in recs), reverse=True))
want("the leaks table lacks the definitely lost list (960 bytes with what it leads to)",
     ("960", "1", "definitely lost") in recs)
fl = re.search(r'<object class="flame" id="flame" [^>]*data="data:image/svg\+xml;base64,([^"]+)"', dom)
want("no flame graph object", fl)
if fl:
    open(sys.argv[2], "wb").write(base64.b64decode(fl.group(1)))
for b in bad:
    print("FAIL:", b)
sys.exit(1 if bad else 0)
PY
# The flame graph's own script, in its own document: every frame set up, no error.
if [ -s "$tmp/flame.svg" ]; then
    browse --dump-dom "file://$tmp/flame.svg" >"$tmp/flame.dom" || fail "chromium failed on the flame graph"
    n=$(sed -n 's/.*data-ready="\([0-9]*\)".*/\1/p' "$tmp/flame.dom" | head -1)
    frames=$(grep -o '<g class="f">' "$tmp/flame.svg" | wc -l)
    [ "$frames" -ge 5 ] || fail "the flame graph has only $frames frames"
    [ "$n" = "$frames" ] || fail "the flame graph's script set up ${n:-no} frames of $frames"
fi
shot=$top_builddir/tests/tools/html-screenshot.png
rm -f "$shot"
browse --screenshot="$shot" --window-size=1280,2000 "file://$tmp/page.html" >/dev/null ||
    fail "no screenshot"
[ -s "$shot" ] && [ "$(head -c 8 "$shot" | od -An -tx1 | tr -d ' ')" = 89504e470d0a1a0a ] ||
    fail "the screenshot is not a PNG"
say "screenshot: $shot"

# A dump with heap errors (TALLY_CHECK): the page lists them, with their stacks, and its script
# still runs clean.
corpus=$top_builddir/tests/check/corpus
"$tally" run --check --lib "$TALLY_LIB" -o "$tmp/chk.tly" -- "$corpus" delete_array_of_new \
    >/dev/null 2>&1 || fatal "no check dump"
"$tally" html -o "$tmp/chk.html" "$tmp/chk.tly" 2>"$tmp/e.txt" || fail "tally html failed: $(cat "$tmp/e.txt")"
browse --dump-dom "file://$tmp/chk.html" >"$tmp/chk.dom" || fail "chromium failed on the errors page"
/usr/bin/python3 - "$tmp/chk.dom" <<'PY' || fail "the heap errors did not render as they should"
import re, sys
dom = open(sys.argv[1]).read()
bad = []
def want(what, ok):
    if not ok:
        bad.append(what)
errors = re.search(r'<pre id="errors">(.*?)</pre>', dom, re.S)
want("script errors: %r" % (errors.group(1) if errors else "no #errors"), errors and errors.group(1) == "")
want("no ERROR SUMMARY", '<p id="error-summary">ERROR SUMMARY: 1 error from 1 context' in dom)
t = re.search(r'<table id="heap-errors">.*?<tbody>(.*?)</tbody>', dom, re.S)
rows = re.findall(r"<tr>(.*?)</tr>", t.group(1), re.S) if t else []
want("want one error row, got %d" % len(rows), len(rows) == 1)
if rows:
    r = rows[0]
    want("not the mismatched free", "Mismatched free() / delete / delete []" in r)
    want("no address line", "is 0 bytes inside a block of size 10 alloc&#39;d" in r or
         "is 0 bytes inside a block of size 10 alloc'd" in r)
    want("the call's stack lacks delete_scalar", "delete_scalar" in r)
    want("the allocation's stack lacks make_array", "make_array" in r)
for b in bad:
    print("FAIL:", b)
sys.exit(1 if bad else 0)
PY
finish
