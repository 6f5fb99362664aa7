#!/bin/bash
# tests/tools/html.sh - `tally html` in a real browser: pages of four dumps (tests/tools/golden,
# C; golden_cxx, C++; tests/tools/page_app.py under CPython; tests/prof/phases, memory over time)
# are clicked through in headless Chromium by its WebDriver (Debian's chromium-driver, driven by
# tests/tools/webdriver.py): every view renders with no script error, sorting, the text filter,
# switching measures, zooming the flame graph, opening and closing tree nodes, one function's
# callers, hovering and selecting a time range show what `tally report --json` and `tally leaks
# --json` say of the same dump (tests/tools/page_check.py). The pages load nothing from the
# network. Screenshots of the views go to tests/tools/page-shots/ (docs/screenshots/ are copies).
. "$top_srcdir/tests/preload/common.sh"
need chromium chromium
need chromedriver chromium-driver
tally=$top_builddir/tools/tally
[ -x "$tally" ] || hard_error "$tally is not built"
shots=$top_builddir/tests/tools/page-shots
rm -rf "$shots"
mkdir -p "$shots"
export PYTHONPATH=$top_srcdir/tests/tools

page() { # KIND DUMP LEAKS(yes|no): the page of DUMP, checked
    local kind=$1 dump=$2 leaks=$3
    "$tally" html -o "$tmp/$kind.html" "$dump" 2>"$tmp/e.txt" ||
        { fail "tally html $kind failed: $(cat "$tmp/e.txt")"; return; }
    grep -qiE '(src|href)="https?:' "$tmp/$kind.html" && fail "the $kind page loads something from the network"
    "$tally" report --json --top 0 "$dump" >"$tmp/$kind.json" || fail "tally report --json $kind failed"
    local lj=-
    if [ "$leaks" = yes ]; then
        "$tally" leaks --json --kinds all "$dump" >"$tmp/$kind.leaks.json"
        lj=$tmp/$kind.leaks.json
    fi
    timeout 300 /usr/bin/python3 "$top_srcdir/tests/tools/page_check.py" "$tmp/$kind.html" \
        "$tmp/$kind.json" "$lj" "$kind" "$shots" || fail "the $kind page did not show what the dump says"
}

"$tally" run --leaks --lib "$TALLY_LIB" -o "$tmp/g.tly" -- "$top_builddir/tests/tools/golden" \
    >/dev/null 2>&1 || fatal "no dump of golden"
page c "$tmp/g.tly" yes
"$tally" run --leaks --lib "$TALLY_LIB" -o "$tmp/cxx.tly" -- "$top_builddir/tests/tools/golden_cxx" \
    >/dev/null 2>&1 || fatal "no dump of golden_cxx"
page cxx "$tmp/cxx.tly" yes
(cd "$tmp" && "$tally" run --all --lib "$TALLY_LIB" -o "$tmp/py.tly" -- /usr/bin/python3 \
    "$top_srcdir/tests/tools/page_app.py" >/dev/null 2>&1) || fatal "no dump of page_app.py"
page python "$tmp/py.tly" no
"$tally" run --all --lib "$TALLY_LIB" -o "$tmp/ph.tly" -- "$top_builddir/tests/prof/phases" \
    >/dev/null 2>&1 || fatal "no dump of phases"
page phases "$tmp/ph.tly" no
for f in "$shots"/*.png; do
    [ "$(head -c 8 "$f" | od -An -tx1 | tr -d ' ')" = 89504e470d0a1a0a ] || fail "$f is not a PNG"
done
say "screenshots: $shots"

browse() { # URL OUT...: chromium's DOM of URL after its scripts ran
    timeout 120 chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
        --disable-background-networking --disable-component-update --disable-sync \
        --user-data-dir="$tmp/profile" --virtual-time-budget=5000 "$@" 2>>"$tmp/chromium.log"
}

# Names from a dump are data, never markup: a program name and a module path made of HTML and
# script end up as text (the page's JSON escapes <, > and &), the page still runs clean.
zstd -dcqf "$tmp/g.tly" |
    sed '1,/^header /s/ program=[^ ]*/ program=<\/script><img%20src%3Dx%20onerror%3Ddocument.title%3D1>/' |
    awk '/^module .*golden$/ && !done {sub(/ path=[^ ]*/, " path=/nonexistent/<img%20src%3Dx%20onerror%3Dalert(1)>"); done=1} {print}' \
        >"$tmp/evil.tly"
grep -q '^module .*nonexistent' "$tmp/evil.tly" || fatal "could not plant the names"
"$tally" html -o "$tmp/evil.html" "$tmp/evil.tly" 2>/dev/null || fail "tally html failed on the planted names"
browse --dump-dom "file://$tmp/evil.html" >"$tmp/evil.dom" || fail "chromium failed on the planted names"
/usr/bin/python3 - "$tmp/evil.dom" <<'PY' || fail "a planted name became markup"
import re, sys
dom = open(sys.argv[1]).read()
bad = []
if re.search(r"<img\b", dom, re.I):
    bad.append("an <img> element in the page")
if not re.search(r'<body[^>]*data-ready="1"', dom):
    bad.append("the page's script did not finish")
m = re.search(r'<pre id="errors">(.*?)</pre>', dom, re.S)
if not m or m.group(1):
    bad.append("script errors: %r" % (m.group(1) if m else None))
if "&lt;img src=x onerror=alert(1)&gt;" not in dom:
    bad.append("the module's name is not shown as text")
for b in bad:
    print("FAIL:", b)
sys.exit(1 if bad else 0)
PY

# A sampled dump: the estimates come with their 95% intervals, and the page runs clean.
"$tally" run --lib "$TALLY_LIB" -o "$tmp/sampled.tly" -- "$top_builddir/tests/prof/phases" \
    >/dev/null 2>&1 || fatal "no sampled dump of phases"
"$tally" html -o "$tmp/sampled.html" "$tmp/sampled.tly" || fail "tally html failed on a sampled dump"
browse --dump-dom "file://$tmp/sampled.html" >"$tmp/sampled.dom" || fail "chromium failed on the sampled page"
grep -q '<body[^>]*data-ready="1"' "$tmp/sampled.dom" && grep -q '<pre id="errors"></pre>' "$tmp/sampled.dom" ||
    fail "the sampled page's script did not run clean"
grep -q '95%: ' "$tmp/sampled.dom" || fail "the sampled page shows no intervals"
grep -q '~[0-9.,]* [KM]*i*B' "$tmp/sampled.dom" || fail "the sampled page does not mark its estimates with ~"

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
