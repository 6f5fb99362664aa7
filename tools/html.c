/* html.c: `tally html`: one self-contained page (no network, no external file) with the
 * summary, a sortable table of the top call sites with their stacks, the flame graph of the
 * peak (tools/flame.c's SVG, embedded), the memory timeline, the size and lifetime histograms
 * and the size-class occupancy as SVG charts drawn here, and the blocks still live at exit. The page's script only sorts the
 * table and reports its own errors in the page (#errors), so that a test can see them. */
#define _GNU_SOURCE
#include "html.h"

#include "flame.h"
#include "report.h"

#include <stdlib.h>
#include <string.h>

static void esc(FILE *f, const char *s) {
    for (; s && *s; s++) {
        switch (*s) {
        case '<': fputs("&lt;", f); break;
        case '>': fputs("&gt;", f); break;
        case '&': fputs("&amp;", f); break;
        case '"': fputs("&quot;", f); break;
        default: fputc(*s, f);
        }
    }
}

static void base64(FILE *f, const unsigned char *p, size_t n) {
    static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    for (size_t i = 0; i < n; i += 3) {
        unsigned v = (unsigned)p[i] << 16 | (i + 1 < n ? (unsigned)p[i + 1] << 8 : 0) |
                     (i + 2 < n ? p[i + 2] : 0);
        fputc(tab[v >> 18 & 63], f);
        fputc(tab[v >> 12 & 63], f);
        fputc(i + 1 < n ? tab[v >> 6 & 63] : '=', f);
        fputc(i + 2 < n ? tab[v & 63] : '=', f);
    }
}

static const char style[] =
    "body{font:14px/1.4 system-ui,sans-serif;margin:24px auto;max-width:1240px;color:#222}"
    "h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid"
    " #ccd}.sub{color:#666}dl.sum{display:grid;grid-template-columns:max-content auto;gap:2px 16px}"
    "dl.sum dt{color:#555}dl.sum dd{margin:0;font-variant-numeric:tabular-nums}"
    "table{border-collapse:collapse;width:100%;font-variant-numeric:tabular-nums}"
    "th,td{padding:3px 8px;border-bottom:1px solid #e4e4ec;text-align:right;vertical-align:top}"
    "th{background:#f3f3f8;cursor:pointer;user-select:none}th.txt,td.txt{text-align:left}"
    "th.sorted::after{content:' \\25BE'}details summary{cursor:pointer}"
    "pre.stack{margin:4px 0 0;font-size:12px;white-space:pre-wrap}"
    "#errors{color:#b00;white-space:pre-wrap}.chart text{font-size:11px;fill:#444}"
    "object.flame{width:100%;border:1px solid #ddd}";

/* The page's script: sorting, and its own errors shown in #errors. */
static const char script[] =
    "window.onerror=function(msg,src,line){var e=document.getElementById('errors');"
    "e.textContent+=msg+' (line '+line+')\\n';};\n"
    "function sortTable(th){var t=th.closest('table'),col=th.cellIndex,b=t.tBodies[0];"
    "var rows=Array.prototype.slice.call(b.rows);var num=th.dataset.num==='1';"
    "var dir=th.classList.contains('sorted')&&th.dataset.dir==='-1'?1:-1;"
    "rows.sort(function(x,y){var a=x.cells[col].dataset.v,c=y.cells[col].dataset.v;"
    "if(num){a=+a;c=+c;}return a<c?-dir:a>c?dir:0;});"
    "rows.forEach(function(r){b.appendChild(r);});"
    "Array.prototype.forEach.call(t.tHead.rows[0].cells,function(h){h.classList.remove('sorted');});"
    "th.classList.add('sorted');th.dataset.dir=dir;}\n"
    "document.addEventListener('DOMContentLoaded',function(){"
    "document.querySelectorAll('th[data-sort]').forEach(function(th){"
    "th.addEventListener('click',function(){sortTable(th);});});"
    /* page.html#selftest: sort by allocations, as a click would, and say what came first */
    "if(location.hash==='#selftest'){var th=document.querySelectorAll('#sites th')[5];"
    "th.click();var r=document.querySelector('#sites tbody tr');"
    "document.body.dataset.sortedFirst=r?r.cells[5].dataset.v:'';}"
    "document.body.dataset.ready='1';});\n";

static void stack_pre(FILE *f, symbolizer_t *sym, const dump_t *d, const dsite_t *s,
                      char *first, size_t cap) {
    sym_frame_t fr[TOOL_MAX_FRAMES];
    /* unfolded, the whole stack; named by its first frame that is not an allocator wrapper,
     * as site_stack folds them */
    bool fold = view_fold;
    view_fold = false;
    int n = site_stack(sym, d, s, fr, TOOL_MAX_FRAMES);
    view_fold = fold;
    int named = 0;
    while (fold && named + 1 < n && alloc_fn_frame(&fr[named]))
        named++;
    first[0] = '\0';
    char *buf = NULL;
    size_t len = 0;
    long at = 0; /* where the naming frame's line starts */
    FILE *m = open_memstream(&buf, &len);
    if (!m)
        return;
    for (int i = 0; i < n; i++) {
        if (i == named)
            at = ftell(m);
        print_frame(m, "", i == 0 ? "at" : "by", &fr[i]);
    }
    fclose(m);
    if (n > 0) {
        const char *line = buf + at + 3; /* after "at " or "by " */
        snprintf(first, cap, "%.*s", (int)strcspn(line, "\n"), line);
    } else {
        snprintf(first, cap, "(no stack)");
    }
    fputs("<details><summary>", f);
    esc(f, first);
    fputs("</summary><pre class=\"stack\">", f);
    esc(f, buf);
    fputs("</pre></details>", f);
    free(buf);
}

static void td_num(FILE *f, double v, bool bytes, const char *est) {
    char b[32];
    fprintf(f, "<td data-v=\"%.0f\">%s%s</td>", v, v != 0 ? est : "",
            bytes ? fmt_size(b, v) : fmt_count(b, v));
}

/* A site's figure; sampled, with its 95% interval under it, small. */
static void td_site(FILE *f, const dump_t *d, const dsite_t *s, const char *measure, bool bytes) {
    if (d->all_mode)
        return td_num(f, site_measure(d, s, measure), bytes, "");
    char b[32], iv[96];
    double v = site_measure(d, s, measure);
    fprintf(f, "<td data-v=\"%.0f\">~%s<br><small>%s</small></td>", v,
            bytes ? fmt_size(b, v) : fmt_count(b, v),
            fmt_interval(iv, d, site_interval(d, s, measure), bytes));
}

/* A "nice" axis step: 1, 2 or 5 times a power of ten, about max/5 (bytes: of the unit the
 * labels use, so that they read 10 MiB, 20 MiB rather than 19.1 MiB). */
static double nice_step_raw(double max);
static double nice_step(double max, bool bytes) {
    double unit = 1;
    while (bytes && max / unit >= 1024 * 5)
        unit *= 1024;
    return unit * nice_step_raw(max / unit);
}

static double nice_step_raw(double max) {
    double raw = max / 5, p = 1;
    while (p * 10 <= raw)
        p *= 10;
    while (p > raw && p > 1e-9)
        p /= 10;
    return raw <= p ? p : raw <= 2 * p ? 2 * p : raw <= 5 * p ? 5 * p : 10 * p;
}

static void timeline_chart(FILE *f, const dump_t *d) {
    const int W = 1200, H = 300, L = 70, R = 20, T = 20, B = 40;
    double tmax = 0, ymax = 0;
    for (size_t i = 0; i < d->ntimeline; i++) {
        const dpoint_t *p = &d->timeline[i];
        tmax = (double)p->t_ns / 1e9 > tmax ? (double)p->t_ns / 1e9 : tmax;
        ymax = (double)p->rss_bytes > ymax ? (double)p->rss_bytes : ymax;
        ymax = (double)p->live_bytes > ymax ? (double)p->live_bytes : ymax;
    }
    if (tmax <= 0)
        tmax = 1;
    if (ymax <= 0)
        ymax = 1;
    double ystep = nice_step(ymax, true), tstep = nice_step(tmax, false);
    ymax = ystep * (double)(int)(ymax / ystep + 0.999);
    fprintf(f, "<svg class=\"chart\" id=\"timeline\" width=\"%d\" height=\"%d\" viewBox=\"0 0 %d %d\" "
               "xmlns=\"http://www.w3.org/2000/svg\">\n",
            W, H, W, H);
#define X(t) (L + (W - L - R) * (t) / tmax)
#define Y(v) (H - B - (H - T - B) * (v) / ymax)
    for (double v = 0; v <= ymax + ystep / 2; v += ystep) {
        char b[32];
        fprintf(f, "<line x1=\"%d\" x2=\"%d\" y1=\"%.1f\" y2=\"%.1f\" stroke=\"#e4e4ec\"/>"
                   "<text x=\"%d\" y=\"%.1f\" text-anchor=\"end\">%s</text>\n",
                L, W - R, Y(v), Y(v), L - 6, Y(v) + 4, fmt_size(b, v));
    }
    for (double t = 0; t <= tmax + tstep / 2; t += tstep)
        fprintf(f, "<text x=\"%.1f\" y=\"%d\" text-anchor=\"middle\">%g s</text>\n", X(t), H - B + 18,
                t);
    static const char *const name[] = {"RSS", "live bytes (profiled)"};
    static const char *const color[] = {"#7a8cc8", "#d9532c"};
    for (int s = 0; s < 2; s++) {
        fprintf(f, "<polyline class=\"series\" fill=\"none\" stroke=\"%s\" stroke-width=\"2\" "
                   "points=\"",
                color[s]);
        for (size_t i = 0; i < d->ntimeline; i++) {
            const dpoint_t *p = &d->timeline[i];
            double v = s ? (double)(p->live_bytes > 0 ? p->live_bytes : 0) : (double)p->rss_bytes;
            fprintf(f, "%.1f,%.1f ", X((double)p->t_ns / 1e9), Y(v));
        }
        fprintf(f, "\"/><rect x=\"%d\" y=\"%d\" width=\"12\" height=\"3\" fill=\"%s\"/>"
                   "<text x=\"%d\" y=\"%d\">%s</text>\n",
                L + 20 + 200 * s, T, color[s], L + 36 + 200 * s, T + 5, name[s]);
    }
    char pk[32];
    fprintf(f, "<text x=\"%d\" y=\"%d\" text-anchor=\"end\">peak %s</text>\n", W - R, T + 5,
            fmt_size(pk, (double)d->peak_bytes));
#undef X
#undef Y
    fputs("</svg>\n", f);
}

static void class_chart(FILE *f, const dump_t *d) {
    const int W = 1200, L = 70, R = 160, ROW = 18;
    int H = 40 + ROW * (int)d->nclasses;
    double max = 1;
    for (size_t i = 0; i < d->nclasses; i++)
        max = (double)d->classes[i].bytes_held > max ? (double)d->classes[i].bytes_held : max;
    fprintf(f, "<svg class=\"chart\" id=\"classes\" width=\"%d\" height=\"%d\" viewBox=\"0 0 %d %d\" "
               "xmlns=\"http://www.w3.org/2000/svg\">\n",
            W, H, W, H);
    static const char *const name[] = {"in use", "free", "cached in threads", "pool overhead"};
    static const char *const color[] = {"#d9532c", "#c9d3ee", "#8fb98b", "#bbbbbb"};
    for (int k = 0; k < 4; k++)
        fprintf(f, "<rect x=\"%d\" y=\"6\" width=\"12\" height=\"10\" fill=\"%s\"/>"
                   "<text x=\"%d\" y=\"15\">%s</text>\n",
                L + 170 * k, color[k], L + 16 + 170 * k, name[k]);
    for (size_t i = 0; i < d->nclasses; i++) {
        const dclass_t *c = &d->classes[i];
        double parts[4] = {(double)(c->blocks_in_use * c->size),
                           (double)((c->free_blocks - (c->blocks_cached < c->free_blocks
                                                           ? c->blocks_cached
                                                           : c->free_blocks)) *
                                    c->size),
                           (double)((c->blocks_cached < c->free_blocks ? c->blocks_cached
                                                                        : c->free_blocks) *
                                    c->size),
                           0};
        double used = parts[0] + parts[1] + parts[2];
        parts[3] = (double)c->bytes_held > used ? (double)c->bytes_held - used : 0;
        double x = L;
        int y = 28 + ROW * (int)i;
        fprintf(f, "<text x=\"%d\" y=\"%d\" text-anchor=\"end\">%llu B</text>\n", L - 6, y + 12,
                (unsigned long long)c->size);
        for (int k = 0; k < 4; k++) {
            double w = (W - L - R) * parts[k] / max;
            if (w > 0)
                fprintf(f, "<rect class=\"bar\" x=\"%.1f\" y=\"%d\" width=\"%.1f\" height=\"%d\" "
                           "fill=\"%s\"><title>%llu B: %s %.0f bytes</title></rect>\n",
                        x, y, w, ROW - 4, color[k], (unsigned long long)c->size, name[k], parts[k]);
            x += w;
        }
        char b[32], p[16];
        fprintf(f, "<text x=\"%.1f\" y=\"%d\">%s held, %s in use</text>\n", x + 6, y + 12,
                fmt_size(b, (double)c->bytes_held), fmt_pct(p, parts[0], (double)c->bytes_held));
    }
    fputs("</svg>\n", f);
}

/* A histogram of every call site (sizes or lifetimes) as horizontal bars, one per bucket from
 * the first non-empty one to the last, labelled as tally report labels them. */
static void hist_chart(FILE *f, const dump_t *d, const char *id, const uint64_t *h, bool life) {
    int lo, hi;
    double max, total;
    if (!hist_extent(d, h, &lo, &hi, &max, &total)) {
        fputs("<p>(none)</p>\n", f);
        return;
    }
    const int W = 1200, L = 170, R = 200, ROW = 18;
    int H = 10 + ROW * (hi - lo + 1);
    fprintf(f, "<svg class=\"chart\" id=\"%s\" width=\"%d\" height=\"%d\" viewBox=\"0 0 %d %d\" "
               "xmlns=\"http://www.w3.org/2000/svg\">\n",
            id, W, H, W, H);
    for (int k = lo; k <= hi; k++) {
        char label[48], c[32], p[16];
        double v = dump_count(d, h[k]);
        double w = (W - L - R) * v / max;
        int y = 4 + ROW * (k - lo);
        hist_label(label, sizeof label, k, life);
        fprintf(f, "<text x=\"%d\" y=\"%d\" text-anchor=\"end\">%s</text>\n", L - 6, y + 12, label);
        if (v > 0)
            fprintf(f, "<rect class=\"bar\" x=\"%d\" y=\"%d\" width=\"%.1f\" height=\"%d\" "
                       "fill=\"%s\" data-count=\"%.0f\"><title>%s: %s%s</title></rect>\n",
                    L, y, w > 1 ? w : 1, ROW - 4, life ? "#8fb98b" : "#d9532c", v, label,
                    d->all_mode ? "" : "~", fmt_count(c, v));
        fprintf(f, "<text x=\"%.1f\" y=\"%d\">%s%s (%s)</text>\n", L + (w > 1 ? w : 1) + 6, y + 12,
                d->all_mode ? "" : "~", fmt_count(c, v), fmt_pct(p, v, total));
    }
    fputs("</svg>\n", f);
}

int cmd_html(const dump_t *d, symbolizer_t *sym, const html_opts_t *o) {
    FILE *f = o->out;
    totals_t t = totals_of(d);
    const char *est = d->all_mode ? "" : "~";
    char a[32], b[32], c[32], p[16];
    fputs("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n<title>tally: ", f);
    esc(f, sym_basename(d->program ? d->program : "?"));
    fprintf(f, "</title>\n<style>%s</style>\n<script>%s</script>\n</head><body>\n", style,
            script);
    fputs("<h1>tally: ", f);
    esc(f, d->program ? d->program : "?");
    char when[64];
    fprintf(f, "</h1>\n<div class=\"sub\">pid %llu, %s, dump %s after %.2f s%s</div>\n",
            (unsigned long long)d->pid, d->all_mode ? "every allocation recorded" : "sampled",
            dump_when(d, when),
            (double)d->duration_ns / 1e9,
            d->all_mode ? "" : "; figures marked ~ are estimates");
    fputs("<pre id=\"errors\"></pre>\n<h2>Summary</h2>\n<dl class=\"sum\">\n", f);
    fprintf(f, "<dt>allocations</dt><dd>%s%s, %s%s requested, %s%s granted (%s slack)</dd>\n",
            est, fmt_count(a, t.alloc_count), est, fmt_size(b, t.alloc_bytes), est,
            fmt_size(c, t.granted_bytes),
            fmt_pct(p, t.granted_bytes - t.alloc_bytes, t.granted_bytes));
    fprintf(f, "<dt>frees</dt><dd>%s%s, %s%s</dd>\n", est, fmt_count(a, t.free_count), est,
            fmt_size(b, t.free_bytes));
    fprintf(f, "<dt>temporary</dt><dd>%s%s (%s of allocations)</dd>\n", est,
            fmt_count(a, t.temporary), fmt_pct(p, t.temporary, t.alloc_count));
    fprintf(f, "<dt>peak</dt><dd>%s%s live</dd>\n", est, fmt_size(a, (double)d->peak_bytes));
    fprintf(f, "<dt>live now</dt><dd>%s%s in %s%s blocks</dd>\n", est, fmt_size(a, t.live_bytes),
            est, fmt_count(b, t.live_count));
    size_t n = 0;
    const dsite_t **v = sorted_sites(d, "peak", &n);
    if (!v)
        return 1;
    fprintf(f, "<dt>call sites</dt><dd>%s</dd>\n</dl>\n", fmt_count(a, (double)n));

    if (d->check) { /* the heap errors first: they are what to fix */
        uint64_t errs = 0;
        for (size_t i = 0; i < d->nerrors; i++)
            errs += d->errors[i].count;
        fputs("<h2>Heap errors</h2>\n", f);
        fprintf(f, "<p id=\"error-summary\">ERROR SUMMARY: %s error%s from %s context%s "
                   "(<code>TALLY_CHECK</code>: memcheck's words; click a row for its stacks)</p>\n",
                fmt_count(a, (double)errs), errs == 1 ? "" : "s",
                fmt_count(b, (double)d->nerrors), d->nerrors == 1 ? "" : "s");
        if (d->nerrors)
            fputs("<table id=\"heap-errors\"><thead><tr><th data-sort data-num=\"1\">errors</th>"
                  "<th data-sort class=\"txt\">error</th><th class=\"txt\">address</th>"
                  "<th class=\"txt\">stacks</th></tr></thead><tbody>\n",
                  f);
        for (size_t i = 0; i < d->nerrors; i++) {
            const derror_t *e = &d->errors[i];
            char h[64], addr[256], first[512];
            fprintf(f, "<tr><td data-v=\"%llu\">%s</td><td class=\"txt\" data-v=\"%s\">",
                    (unsigned long long)e->count, fmt_count(a, (double)e->count),
                    derr_names[e->kind]);
            esc(f, error_headline(e, h));
            fputs("</td><td class=\"txt\">", f);
            error_address_text(addr, sizeof addr, e);
            esc(f, addr);
            fputs("</td><td class=\"txt\">", f);
            const char *seen = error_seen_text(e);
            struct {
                const char *label;
                uint32_t ref;
            } st[3] = {{seen ? seen : "the call", e->where},
                       {"the block's free", e->free},
                       {"the block's allocation", e->alloc}};
            for (unsigned k = 0; k < 3; k++) {
                if (!st[k].ref)
                    continue;
                fputs("<div class=\"sub\">", f);
                esc(f, st[k].label);
                fputs("</div>", f);
                stack_pre(f, sym, d, &d->sites[st[k].ref - 1], first, sizeof first);
            }
            fputs("</td></tr>\n", f);
        }
        if (d->nerrors)
            fputs("</tbody></table>\n", f);
    }

    fputs("<h2>Memory over time</h2>\n", f);
    if (d->ntimeline)
        timeline_chart(f, d);
    else
        fputs("<p>(no timeline in this dump)</p>\n", f);

    size_t shown = n < o->top ? n : o->top;
    fprintf(f, "<h2>Top %zu call sites</h2>\n<p class=\"sub\">Sorted by bytes at the program's "
               "peak; click a column to sort by it, a stack to unfold it.</p>\n",
            shown);
    fputs("<table id=\"sites\"><thead><tr><th data-sort data-num=\"1\">#</th>"
          "<th data-sort data-num=\"1\" class=\"sorted\" data-dir=\"-1\">at the peak</th>"
          "<th data-sort data-num=\"1\">live now</th><th data-sort data-num=\"1\">max live</th>"
          "<th data-sort data-num=\"1\">allocated</th><th data-sort data-num=\"1\">allocations</th>"
          "<th data-sort data-num=\"1\">temporary</th><th data-sort class=\"txt\">call site</th>"
          "</tr></thead><tbody>\n",
          f);
    char first[512];
    for (size_t i = 0; i < shown; i++) {
        const dsite_t *s = v[i];
        /* a sampled site whose figure at the peak is less sure than it is big gets no rank */
        if (site_rankable(d, s, "peak"))
            fprintf(f, "<tr><td data-v=\"%zu\">%zu</td>", i + 1, i + 1);
        else
            fprintf(f, "<tr><td data-v=\"%zu\" title=\"too few samples to rank\">-</td>", i + 1);
        td_site(f, d, s, "peak", true);
        td_site(f, d, s, "live", true);
        td_num(f, (double)s->max_live_bytes, true, est);
        td_site(f, d, s, "allocated", true);
        td_site(f, d, s, "count", false);
        td_site(f, d, s, "temporary", false);
        fputs("<td class=\"txt\" data-v=\"", f);
        /* the stack goes through a buffer: its first frame is the column's sort key */
        char *buf = NULL;
        size_t len = 0;
        FILE *m = open_memstream(&buf, &len);
        if (m) {
            stack_pre(m, sym, d, s, first, sizeof first);
            fclose(m);
            esc(f, first);
            fprintf(f, "\">%s</td></tr>\n", buf);
            free(buf);
        } else {
            fputs("\"></td></tr>\n", f);
        }
    }
    fputs("</tbody></table>\n", f);
    free(v);

    fputs("<h2>Flame graph of the peak</h2>\n<p class=\"sub\">Click a frame to zoom, Reset zoom "
          "to go back.</p>\n",
          f);
    char *svg = NULL;
    size_t svglen = 0;
    FILE *m = open_memstream(&svg, &svglen);
    flame_opts_t fo = {.measure = "peak"};
    if (m && flame_write(m, d, sym, &fo) == 0 && fclose(m) == 0) {
        unsigned height = 400;
        const char *hp = strstr(svg, " height=\"");
        if (hp)
            sscanf(hp, " height=\"%u\"", &height);
        fprintf(f, "<object class=\"flame\" id=\"flame\" type=\"image/svg+xml\" "
                   "style=\"height:%upx\" data=\"data:image/svg+xml;base64,",
                height + 4);
        base64(f, (const unsigned char *)svg, svglen);
        fputs("\"></object>\n", f);
    } else {
        fputs("<p>(no flame graph)</p>\n", f);
    }
    free(svg);

    uint64_t size[DUMP_NHIST] = {0}, life[DUMP_NHIST] = {0};
    for (size_t i = 0; i < d->nsites; i++)
        for (int k = 0; k < DUMP_NHIST; k++) {
            size[k] += d->sites[i].size_hist[k];
            life[k] += d->sites[i].life_hist[k];
        }
    fputs("<h2>Requested sizes</h2>\n<p class=\"sub\">Allocations by requested size, every call "
          "site together (tally report --histograms shows each site's).</p>\n", f);
    hist_chart(f, d, "sizes", size, false);
    fputs("<h2>Lifetimes</h2>\n<p class=\"sub\">Freed blocks by how many allocations were made "
          "between their allocation and their free (0: temporary).</p>\n", f);
    hist_chart(f, d, "lifetimes", life, true);

    fputs("<h2>Size classes</h2>\n", f);
    if (d->nclasses)
        class_chart(f, d);
    if (d->have_arena) {
        char e[32], g[32], h[32];
        fprintf(f, "<p>Arena memory %s = in use %s + free blocks %s + pool overhead %s + empty "
                   "pools %s + not yet used %s; %s of it is not in live blocks.</p>\n",
                fmt_size(a, (double)d->arena_bytes), fmt_size(b, (double)d->in_use_bytes),
                fmt_size(c, (double)d->free_block_bytes), fmt_size(e, (double)d->pool_overhead_bytes),
                fmt_size(g, (double)d->empty_pool_bytes), fmt_size(h, (double)d->never_used_bytes),
                fmt_pct(p, (double)(d->arena_bytes - d->in_use_bytes), (double)d->arena_bytes));
    }

    fputs("<h2>Still live at exit</h2>\n", f);
    if (!d->has_blocks) {
        fputs("<p>This dump lists no live blocks: it was not written at exit with every "
              "allocation recorded (<code>tally run --leaks</code>).</p>\n",
              f);
    } else {
        size_t nl = 0;
        loss_t *lv = loss_records(d, &nl);
        uint64_t blocks = 0, bytes = 0;
        for (size_t i = 0; lv && i < nl; i++) {
            blocks += lv[i].blocks;
            bytes += lv[i].bytes;
        }
        if (d->leak_check) {
            /* memcheck's LEAK SUMMARY, as a table */
            fputs("<table id=\"leak-kinds\"><thead><tr><th class=\"txt\">LEAK SUMMARY</th>"
                  "<th>bytes</th><th>blocks</th></tr></thead><tbody>\n", f);
            for (unsigned k = 0; k < DKIND_N; k++)
                fprintf(f, "<tr><td class=\"txt\">%s</td><td>%s</td><td>%s</td></tr>\n",
                        leak_kind_text[k], fmt_count(a, (double)d->kind_bytes[k]),
                        fmt_count(b, (double)d->kind_blocks[k]));
            fputs("</tbody></table>\n", f);
            fprintf(f, "<p id=\"leak-summary\">%s bytes in %s blocks: %s lost%s. Kinds as "
                       "valgrind's memcheck decides them.</p>\n",
                    fmt_count(a, (double)bytes), fmt_count(b, (double)blocks),
                    fmt_count(c, (double)(d->kind_bytes[DKIND_DEFINITE] +
                                          d->kind_bytes[DKIND_INDIRECT] +
                                          d->kind_bytes[DKIND_POSSIBLE])),
                    d->leak_foreign_large
                        ? " (approximate: the blocks above 512 bytes were another allocator's)"
                    : d->leak_approx ? " (approximate: some thread kept running during the check)"
                                     : "");
        } else {
            fprintf(f, "<p id=\"leak-summary\">%s bytes in %s blocks from %s call sites "
                       "(not classified: run with <code>tally run --leaks</code> for the "
                       "kinds).</p>\n",
                    fmt_count(a, (double)bytes), fmt_count(b, (double)blocks),
                    fmt_count(c, (double)nl));
        }
        fputs("<table id=\"leaks\"><thead><tr><th data-sort data-num=\"1\">bytes</th>"
              "<th data-sort data-num=\"1\">blocks</th><th data-sort class=\"txt\">kind</th>"
              "<th data-sort class=\"txt\">call site</th></tr></thead><tbody>\n",
              f);
        for (size_t i = nl; lv && i-- > 0;) { /* largest first */
            char *buf = NULL;
            size_t len = 0;
            FILE *mm = open_memstream(&buf, &len);
            if (!mm)
                break;
            stack_pre(mm, sym, d, lv[i].site, first, sizeof first);
            fclose(mm);
            const char *kind = lv[i].kind < DKIND_N ? leak_kind_text[lv[i].kind] : "live";
            fprintf(f, "<tr><td data-v=\"%llu\">%s</td><td data-v=\"%llu\">%s</td>"
                       "<td class=\"txt\" data-v=\"%s\">%s</td><td class=\"txt\" data-v=\"",
                    (unsigned long long)(lv[i].bytes + lv[i].held),
                    fmt_count(a, (double)(lv[i].bytes + lv[i].held)),
                    (unsigned long long)lv[i].blocks, fmt_count(b, (double)lv[i].blocks), kind,
                    kind);
            esc(f, first);
            fprintf(f, "\">%s</td></tr>\n", buf);
            free(buf);
        }
        free(lv);
        fputs("</tbody></table>\n", f);
    }
    fputs("</body></html>\n", f);
    return out_ok(f) ? 0 : 1;
}
