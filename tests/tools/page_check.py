"""page_check.py PAGE REPORT_JSON LEAKS_JSON KIND SHOTS: the page `tally html` wrote, clicked
through in headless chromium (tests/tools/webdriver.py), against the figures `tally report
--json --top 0` (REPORT_JSON) and `tally leaks --json --kinds all` (LEAKS_JSON, or - for none)
give for the same dump. KIND: c (tests/tools/golden: its known figures too),
cxx, python (tests/tools/page_app.py) or phases (tests/prof/phases: memory over time).
Screenshots of the views go to SHOTS/KIND-VIEW.png. Prints what failed; exit 1 if anything did."""
import json
import os
import sys
import time

from webdriver import Browser, WebDriverError

page, report_path, leaks_path, kind, shots = sys.argv[1:6]
rep = json.load(open(report_path))
leaks = json.load(open(leaks_path)) if leaks_path != "-" else None
bad = []


def want(what, ok):
    if not ok:
        bad.append(what)
    return ok


def fmt_size(b):
    units = ["B", "KiB", "MiB", "GiB", "TiB"]
    v, u = abs(b), 0
    while v >= 1024 and u < 4:
        v /= 1024
        u += 1
    s = "%.0f" % v if u == 0 else "%.*f" % (2 if v < 10 else 1 if v < 100 else 0, v)
    return ("-" if b < 0 else "") + s + " " + units[u]


def fmt_count(v):
    return "{:,}".format(int(round(v)))


sites = [s for s in rep["sites"] if s["id"] != 0]
totals = rep["totals"]
b = Browser(profile=os.path.join(shots, "profile-" + kind), width=1280, height=1100,
            log=open(os.path.join(shots, "chromedriver-%s.log" % kind), "w"))


def shot(view):
    time.sleep(0.6)  # d3's transitions end
    b.screenshot(os.path.join(shots, "%s-%s.png" % (kind, view)))


def tab(name):
    b.find("#tab-" + name).click()
    return b.wait("return document.getElementById('view-%s').classList.contains('on')" % name)


def choose(select_id, value):
    b.find("#%s option[value='%s']" % (select_id, value)).click()


def text(css):
    return b.js("var e = document.querySelector(arguments[0]); return e ? e.textContent : null;", css)


def tree_rows(container):
    """[(name, value, depth)] of the rows shown (not inside a closed node)."""
    return b.js("""
        var out = [], sel = arguments[0];
        document.querySelectorAll(sel + ' .row[data-name], ' + sel + ' .more').forEach(function (r) {
            if (r.offsetParent === null) return;
            var d = 0, n = r.parentElement;
            while (n && n.id !== sel.slice(1)) { if (n.classList.contains('kids')) d++; n = n.parentElement; }
            out.push([r.dataset.name || '(more)', +r.dataset.value, d]);
        });
        return out;""", container)


def row_named(container, name):
    for r in b.find_all(container + " .row[data-name]"):
        if r.attr("data-name") == name:
            return r
    return None


try:
    b.open("file://" + os.path.abspath(page))
    want("the page's script did not finish", b.wait("return document.body.dataset.ready === '1'"))
    err = text("#errors")
    want("script errors on load: %r" % err, err == "")

    # ---- the table ------------------------------------------------------------------------
    tab("sites")
    nrows = len(b.find_all("#sites > tbody > tr"))
    want("the table has %d rows, the dump %d call sites" % (nrows, len(sites)),
         nrows == min(len(sites), 100))
    b.find("#sites th[data-key='count']").click()
    top = max(sites, key=lambda s: s["alloc_count"])
    first = b.js("var c = document.querySelector('#sites tbody tr td[data-key=count]'); return c && +c.dataset.v;")
    want("sorted by allocations, the first row has %r, want %d" % (first, top["alloc_count"]),
         first == top["alloc_count"])
    shot("sites")
    fn = next((f["function"] for f in top["frames"] if f["function"]), None)
    if fn:
        b.find("#filter").type(fn)
        time.sleep(0.4)
        expect = sum(1 for s in sites if any(fn.lower() in (f["function"] or "").lower()
                                             for f in s["frames"]))
        got = len(b.find_all("#sites > tbody > tr"))
        want("filtering by %r leaves %d rows, want %d" % (fn, got, expect), got == expect and got >= 1)
        b.find("#filter").clear()
        b.js("document.getElementById('filter').dispatchEvent(new Event('input'))")
        time.sleep(0.4)

    # ---- the flame graph: every measure ----------------------------------------------------
    tab("flame")
    choose("measure", "count")
    b.wait("return document.querySelectorAll('#flame-chart svg g rect').length > 0")
    total = text("#flame-total") or ""
    want("flame graph by allocations says %r, want %s allocations" % (total, fmt_count(totals["alloc_count"])),
         total.startswith(fmt_count(totals["alloc_count"]) + " allocations in all"))
    nframes = len(b.find_all("#flame-chart svg g rect"))
    want("the flame graph has %d frames" % nframes, nframes >= 2)
    shot("flame")
    choose("measure", "allocated")
    total = text("#flame-total") or ""
    want("flame graph by bytes allocated says %r, want %s" % (total, fmt_size(totals["alloc_bytes"])),
         total.startswith(fmt_size(totals["alloc_bytes"]) + " allocated in all"))
    # zoom: a click on the frame of the allocating function widens it to the whole graph
    if fn:
        zoomed = b.js("""
            var gs = document.querySelectorAll('#flame-chart svg g');
            for (var i = 0; i < gs.length; i++) {
                var t = gs[i].querySelector('title');
                if (t && t.textContent.indexOf(arguments[0]) === 0) {
                    gs[i].dispatchEvent(new MouseEvent('click', {bubbles: true}));
                    return true;
                }
            }
            return false;""", fn)
        if want("no frame of %s in the flame graph" % fn, zoomed):
            time.sleep(0.5)
            full = b.js("""
                var w = +document.querySelector('#flame-chart svg').getAttribute('width'), best = 0, fn = arguments[0];
                document.querySelectorAll('#flame-chart svg g').forEach(function (g) {
                    var t = g.querySelector('title'), r = g.querySelector('rect');
                    if (t && r && t.textContent.indexOf(fn) === 0)
                        best = Math.max(best, +r.getAttribute('width') / w);
                });
                return best;""", fn)
            want("after a click %s spans %.0f%% of the graph" % (fn, 100 * (full or 0)), (full or 0) > 0.95)
        b.find("#flame-reset").click()
    b.find("#flame-inverted").click()
    want("the icicle has no frames", b.wait("return document.querySelectorAll('#flame-chart svg g rect').length > 0"))
    b.find("#flame-inverted").click()

    # ---- the call tree ----------------------------------------------------------------------
    choose("measure", "count")
    tab("tree")
    rows = tree_rows("#tree")
    roots = [r for r in rows if r[2] == 0]
    with_stack = sum(s["alloc_count"] for s in sites if s["frames"])
    want("the top-down tree's first level sums to %d allocations, want %d" %
         (sum(r[1] for r in roots), with_stack), sum(r[1] for r in roots) == with_stack)
    if roots:
        name = roots[0][0]
        r = row_named("#tree", name)
        before = len(tree_rows("#tree"))
        r.click()  # opened at first (the heaviest path): closes
        after = len(tree_rows("#tree"))
        r.click()
        again = len(tree_rows("#tree"))
        want("clicking %s did not close and reopen it (%d, %d, %d rows)" % (name, before, after, again),
             after < before and again == before)
        kids = [x for x in tree_rows("#tree") if x[2] == 1]
        want("the children of %s add up to more than it" % name, sum(k[1] for k in kids) <= roots[0][1])
    shot("tree")
    b.find("#tree-bottom-up").click()
    rows = tree_rows("#tree")
    leafs = {}
    for s in sites:
        if s["frames"]:
            f = s["frames"][0]
            nm = f["function"]
            leafs[nm] = leafs.get(nm, 0) + s["alloc_count"]
    tops = [r for r in rows if r[2] == 0]
    want("the bottom-up tree's first level sums to %d, want %d" % (sum(r[1] for r in tops), with_stack),
         sum(r[1] for r in tops) == with_stack)

    # ---- one function's callers and callees ------------------------------------------------------
    if fn and kind != "python":
        r = row_named("#tree", fn)
        if want("no row of %s in the bottom-up tree" % fn, r is not None):
            r.find("button").click()
            b.wait("return document.getElementById('view-function').classList.contains('on')")
            through = sum(s["alloc_count"] for s in sites if any(f["function"] == fn for f in s["frames"]))
            t = text("#fn-total") or ""
            want("callers/callees of %s says %r, want %s allocations through it" % (fn, t, fmt_count(through)),
                 t.startswith("%s: %s allocations through it" % (fn, fmt_count(through))))
            callers = tree_rows("#fn-callers")
            want("no caller of %s" % fn, len(callers) >= 1 or through == 0)
            shot("function")

    # ---- histograms -------------------------------------------------------------------------
    tab("hist")
    for chart, field in (("sizes", "alloc_count"), ("lifetimes", "free_count")):
        counts = b.js("return Array.prototype.map.call(document.querySelectorAll('#%s rect.bar'), function (r) { return +r.dataset.count; });" % chart)
        want("the %s histogram adds up to %d, want %d" % (chart, sum(counts), totals[field]),
             sum(counts) == totals[field])
    shot("hist")

    # ---- size classes (drawn by tally) --------------------------------------------------------
    tab("classes")
    bars = b.js("return document.querySelectorAll('#view-classes svg rect.bar').length")
    want("the size-class chart has no bars", bars >= 1)
    err = text("#errors")
    want("script errors on the size classes: %r" % err, err == "")

    # ---- memory over time ---------------------------------------------------------------------
    tab("time")
    want("no stacked chart", b.wait("return document.querySelectorAll('#time-svg path.series').length > 0"))
    svg = b.find("#time-svg")
    b.pointer([("move", svg, 100, 0)])
    tip = b.js("var t = document.querySelector('.tip'); return t.style.display === 'block' ? t.textContent : '';")
    want("hovering the chart shows no figures", " s: " in (tip or "") and "live" in (tip or ""))
    x0, x1 = (0, 450) if kind == "phases" else (-300, 250)  # phases: its second half
    b.pointer([("move", svg, x0, 40), ("down",), ("move", svg, x1, 40), ("up",)])
    rt = text("#range-total") or ""
    want("selecting a range says %r" % rt, rt.startswith("From "))
    shot("time")

    # ---- leaks --------------------------------------------------------------------------------
    tab("leaks")
    if leaks and leaks["leaks"]:
        got = b.js("return Array.prototype.map.call(document.querySelectorAll('#leaks tbody tr td:first-child'), function (c) { return +c.dataset.v; });")
        recs = sorted((r["bytes"] + r.get("indirect_bytes", 0) for r in leaks["leaks"]), reverse=True)
        want("the leaks table has %s, the dump's loss records %s" % (got, recs), got == recs)
        shot("leaks")

    # ---- what each program must show --------------------------------------------------------
    if kind == "c":  # tests/tools/golden.c
        tab("tree")
        b.find("input[name=tree-mode][value=top-down]").click()
        main = row_named("#tree", "main")
        rows = tree_rows("#tree")
        want("golden: parse_records' 500 allocations under main", ["parse_records", 500, 1] in rows)
        want("golden: the LEAK SUMMARY lacks its 19 indirectly lost blocks",
             "indirectlylost91219" in (text("#leak-kinds") or "").replace(" ", "").replace(",", ""))
    if kind == "cxx":
        tab("flame")
        names = b.js("return Array.prototype.map.call(document.querySelectorAll('#flame-chart svg g title'), function (t) { return t.textContent; });")
        want("C++: no demangled inventory::fill in the flame graph",
             any(n.startswith("inventory::fill(") for n in names))
    if kind == "python":
        tab("tree")
        b.find("input[name=tree-mode][value=top-down]").click()
        rows = tree_rows("#tree")
        names = [r[0] for r in rows]
        want("Python: no <module> frame of page_app.py at the root: %s" % names[:5],
             any(r[2] == 0 and r[0].startswith("<module> (page_app.py:") for r in rows))
        want("Python: make_rows is not under build: %s" % names[:12],
             any(n.startswith("make_rows (page_app.py:") for n in names))
        cls = b.js("var r = document.querySelector('#tree .node.py .row'); return r ? r.dataset.name : null;")
        want("Python frames are not marked as such", cls is not None)
    if kind == "phases":
        legend = text("#time-legend") or ""
        want("the legend lacks site_early and site_late: %r" % legend,
             "site_early" in legend and "site_late" in legend)
        # a range over the second half: site_churn and site_late allocated in it
        rows = b.js("return Array.prototype.map.call(document.querySelectorAll('#range-sites tbody tr summary'), function (s) { return s.textContent; });")
        want("the range's table lacks site_churn or site_late: %r" % rows,
             any("site_churn" in r for r in rows) and any("site_late" in r for r in rows))
    err = text("#errors")
    want("script errors after the clicks: %r" % err, err == "")
    sev = [m for m in b.console_errors() if "favicon" not in m]
    want("console errors: %r" % sev, not sev)
except WebDriverError as e:
    bad.append("webdriver: %s" % e)
finally:
    b.close()
for x in bad:
    print("FAIL (%s):" % kind, x)
print("%s: %d checks failed" % (kind, len(bad)))
sys.exit(1 if bad else 0)
