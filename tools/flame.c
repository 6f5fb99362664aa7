/* flame.c: `tally flame`: the call sites as a flame graph, weighed by a measure (bytes at the
 * peak, allocated, live now, or still live at exit), either as folded stacks (one line a stack,
 * outermost frame first, `a;b;c VALUE`, which flamegraph.pl, inferno and speedscope read), as
 * the tree in JSON (d3-flame-graph's shape), or as one self-contained interactive SVG: hover for
 * a frame's figures, click to zoom into it, search to highlight. */
#define _GNU_SOURCE
#include "flame.h"

#include <stdlib.h>
#include <string.h>

bool flame_measure_valid(const char *m) {
    return measure_find(m) != NULL;
}

static bool measure_bytes(const char *m) {
    const measure_t *mi = measure_find(m);
    return !mi || mi->bytes;
}

static double weight(const dump_t *d, const dsite_t *s, const char *m) {
    double v = site_measure(d, s, m);
    return v > 0 ? v : 0; /* a live figure can dip below 0 in sample mode */
}

/* A frame as one name: "func", "func [inlined]" is not kept apart (a flame graph merges by
 * name), "module+0x..." or "0x..." when nothing names it; a Python frame "func (file.py:LINE)",
 * as py-spy names them: its line is what a Python user looks for. */
void flame_frame_name(char *out, size_t cap, const sym_frame_t *f) {
    if (f->python)
        snprintf(out, cap, "%s (%s:%u)", f->function ? f->function : "?",
                 f->file ? sym_basename(f->file) : "?", f->line);
    else
        frame_label(out, cap, f);
    for (char *p = out; *p; p++)
        if (*p == ';' || *p == '\n')
            *p = ':'; /* the folded format's separators */
}

/* ---- the tree ------------------------------------------------------------------------------ */
typedef struct fnode_s {
    char *name;
    double value;
    struct fnode_s *child, *next; /* children in insertion order */
    struct fnode_s *last;
} fnode_t;

static fnode_t *node_new(const char *name) {
    fnode_t *n = calloc(1, sizeof *n);
    if (n)
        n->name = strdup(name);
    return n;
}

static fnode_t *child_named(fnode_t *p, const char *name) {
    for (fnode_t *c = p->child; c; c = c->next)
        if (strcmp(c->name, name) == 0)
            return c;
    fnode_t *c = node_new(name);
    if (!c || !c->name) {
        free(c);
        return NULL;
    }
    if (p->last)
        p->last->next = c;
    else
        p->child = c;
    p->last = c;
    return c;
}

static void tree_free(fnode_t *n) {
    while (n) {
        fnode_t *next = n->next;
        tree_free(n->child);
        free(n->name);
        free(n);
        n = next;
    }
}

static int by_name(const void *a, const void *b) {
    return strcmp((*(fnode_t *const *)a)->name, (*(fnode_t *const *)b)->name);
}

/* Children in name order, as flamegraph.pl lays them out: the same input gives the same graph. */
static void tree_sort(fnode_t *n) {
    size_t k = 0;
    for (fnode_t *c = n->child; c; c = c->next)
        k++;
    if (k > 1) {
        fnode_t **v = malloc(k * sizeof *v);
        if (v) {
            size_t i = 0;
            for (fnode_t *c = n->child; c; c = c->next)
                v[i++] = c;
            qsort(v, k, sizeof *v, by_name);
            for (i = 0; i + 1 < k; i++)
                v[i]->next = v[i + 1];
            v[k - 1]->next = NULL;
            n->child = v[0];
            n->last = v[k - 1];
            free(v);
        }
    }
    for (fnode_t *c = n->child; c; c = c->next)
        tree_sort(c);
}

/* ---- SVG ----------------------------------------------------------------------------------- */
#define ROW 18
#define WIDTH 1200
#define PAD 10

static void xml_text(FILE *f, const char *s) {
    for (; *s; s++) {
        switch (*s) {
        case '<': fputs("&lt;", f); break;
        case '>': fputs("&gt;", f); break;
        case '&': fputs("&amp;", f); break;
        case '"': fputs("&quot;", f); break;
        default:
            if ((unsigned char)*s >= 0x20 || *s == '\t')
                fputc(*s, f);
        }
    }
}

static unsigned depth_of(const fnode_t *n) {
    unsigned best = 0;
    for (const fnode_t *c = n->child; c; c = c->next) {
        unsigned d = depth_of(c) + 1;
        if (d > best)
            best = d;
    }
    return best;
}

static unsigned hash(const char *s) {
    unsigned h = 2166136261u;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 16777619u;
    return h;
}

static void svg_nodes(FILE *f, const fnode_t *n, double x, unsigned level, unsigned height,
                      double scale, double total, const char *unit_bytes) {
    for (const fnode_t *c = n->child; c; c = c->next) {
        double w = c->value * scale;
        if (w >= 0.3) {
            double y = (double)height - ROW * (level + 1) - PAD;
            unsigned h = hash(c->name);
            char v[32];
            if (*unit_bytes)
                fmt_size(v, c->value);
            else
                fmt_count(v, c->value);
            fputs("<g class=\"f\"><title>", f);
            xml_text(f, c->name);
            fprintf(f, " (%s, %.2f%%)</title><rect x=\"%.1f\" y=\"%.0f\" width=\"%.1f\" "
                       "height=\"%d\" fill=\"rgb(%u,%u,%u)\" rx=\"2\"/><text x=\"%.1f\" y=\"%.0f\">",
                    v, total > 0 ? 100.0 * c->value / total : 0.0, x, y, w, ROW - 1,
                    205 + h % 50, 80 + (h >> 8) % 120, 40 + (h >> 16) % 50, x + 3, y + 12);
            /* the label as fits at 7 pixels a character (the script refits it on zoom) */
            size_t fit = w > 6 ? (size_t)((w - 6) / 7) : 0, len = strlen(c->name);
            if (fit >= 3) {
                char label[1024];
                snprintf(label, sizeof label, "%.*s%s", (int)(len <= fit ? len : fit - 2), c->name,
                         len <= fit ? "" : "..");
                xml_text(f, label);
            }
            fputs("</text></g>\n", f);
            svg_nodes(f, c, x, level + 1, height, scale, total, unit_bytes);
        }
        x += w;
    }
}

/* The script: frames are laid out in file order; zooming rescales the x of every frame from its
 * original (data-x, data-w). Text is fitted to its box. Search highlights and sums matches. */
static const char svg_script[] =
    "<script type=\"text/ecmascript\"><![CDATA[\n"
    "'use strict';\n"
    "var W, frames = [], details, matchedText;\n"
    "function init(evt) {\n"
    "  W = +document.documentElement.getAttribute('data-width');\n"
    "  details = document.getElementById('details');\n"
    "  matchedText = document.getElementById('matched');\n"
    "  var gs = document.getElementsByClassName('f');\n"
    "  for (var i = 0; i < gs.length; i++) {\n"
    "    var g = gs[i], r = g.getElementsByTagName('rect')[0];\n"
    "    g.ox = +r.getAttribute('x'); g.ow = +r.getAttribute('width'); g.oy = +r.getAttribute('y');\n"
    "    g.name = g.getElementsByTagName('title')[0].textContent;\n"
    "    g.onclick = function() { zoom(this); };\n"
    "    g.onmouseover = function() { details.textContent = this.name; };\n"
    "    g.onmouseout = function() { details.textContent = ' '; };\n"
    "    frames.push(g);\n"
    "  }\n"
    "  document.getElementById('reset').onclick = function() { unzoom(); };\n"
    "  document.getElementById('search').onclick = function() { search(); };\n"
    "  unzoom();\n"
    "  document.documentElement.setAttribute('data-ready', frames.length);\n"
    "}\n"
    "function place(g, x, w) {\n"
    "  var r = g.getElementsByTagName('rect')[0], t = g.getElementsByTagName('text')[0];\n"
    "  r.setAttribute('x', x); r.setAttribute('width', Math.max(w, 0));\n"
    "  t.setAttribute('x', x + 3);\n"
    "  var label = g.name.replace(/ \\([^()]*\\)$/, ''), fit = Math.floor((w - 6) / 7);\n"
    "  t.textContent = fit < 3 ? '' : label.length <= fit ? label : label.slice(0, fit - 2) + '..';\n"
    "  g.style.display = w < 0.3 ? 'none' : '';\n"
    "}\n"
    "function zoom(z) {\n"
    "  var scale = (W - 20) / z.ow;\n"
    "  for (var i = 0; i < frames.length; i++) {\n"
    "    var g = frames[i];\n"
    "    var inside = g.ox + 1e-6 >= z.ox && g.ox + g.ow <= z.ox + z.ow + 1e-6;\n"
    "    if (inside && g.oy <= z.oy) { place(g, 10 + (g.ox - z.ox) * scale, g.ow * scale); g.style.opacity = 1; }\n"
    "    else if (g.oy > z.oy && g.ox <= z.ox + 1e-6 && g.ox + g.ow >= z.ox + z.ow - 1e-6) { place(g, 10, W - 20); g.style.opacity = 0.5; }\n"
    "    else { g.style.display = 'none'; }\n"
    "  }\n"
    "}\n"
    "function unzoom() {\n"
    "  for (var i = 0; i < frames.length; i++) { place(frames[i], frames[i].ox, frames[i].ow); frames[i].style.opacity = 1; }\n"
    "}\n"
    "function search() {\n"
    "  var term = prompt('Frames to highlight (a regular expression):', '');\n"
    "  if (term === null) return;\n"
    "  var re = new RegExp(term), hit = 0, seen = [];\n"
    "  for (var i = 0; i < frames.length; i++) {\n"
    "    var g = frames[i], r = g.getElementsByTagName('rect')[0];\n"
    "    if (!r.orig) r.orig = r.getAttribute('fill');\n"
    "    if (term !== '' && re.test(g.name)) {\n"
    "      r.setAttribute('fill', 'rgb(230,0,230)');\n"
    "      var nested = false;\n"
    "      for (var k = 0; k < seen.length; k++) if (g.ox >= seen[k][0] && g.ox + g.ow <= seen[k][1]) nested = true;\n"
    "      if (!nested) { hit += g.ow; seen.push([g.ox, g.ox + g.ow]); }\n"
    "    } else r.setAttribute('fill', r.orig);\n"
    "  }\n"
    "  matchedText.textContent = term === '' ? ' ' : 'matched: ' + (100 * hit / (W - 20)).toFixed(1) + '%';\n"
    "}\n"
    "]]></script>\n";

static int write_svg(FILE *f, const dump_t *d, fnode_t *root, const char *measure,
                     bool inverted) {
    unsigned depth = depth_of(root);
    unsigned height = ROW * (depth + 1) + 3 * PAD + 40;
    double scale = root->value > 0 ? (WIDTH - 2 * PAD) / root->value : 0;
    bool bytes = measure_bytes(measure);
    char total[32];
    if (bytes)
        fmt_size(total, root->value);
    else
        fmt_count(total, root->value);
    const measure_t *mi = measure_find(measure);
    char title[128];
    snprintf(title, sizeof title, "call site, %s", mi ? mi->what : measure);
    fprintf(f, "<?xml version=\"1.0\" standalone=\"no\"?>\n"
               "<svg version=\"1.1\" width=\"%d\" height=\"%u\" viewBox=\"0 0 %d %u\" "
               "xmlns=\"http://www.w3.org/2000/svg\" onload=\"init(evt)\" data-width=\"%d\">\n",
            WIDTH, height, WIDTH, height, WIDTH);
    fputs("<style type=\"text/css\">text { font-family: monospace; font-size: 12px; fill: #000; }"
          " .f:hover rect { stroke: #000; stroke-width: 0.5; cursor: pointer; }"
          " #title { font-size: 16px; } .button { fill: #335; cursor: pointer; }</style>\n",
          f);
    fputs(svg_script, f);
    fprintf(f, "<rect x=\"0\" y=\"0\" width=\"%d\" height=\"%u\" fill=\"#f8f8f0\"/>\n", WIDTH,
            height);
    fprintf(f, "<text id=\"title\" x=\"%d\" y=\"24\" text-anchor=\"middle\">", WIDTH / 2);
    xml_text(f, sym_basename(d->program ? d->program : "?"));
    fprintf(f, ": %s by %s%s</text>\n", total, title,
            inverted ? " (inverted: allocating functions at the root)" : "");
    fprintf(f, "<text id=\"reset\" class=\"button\" x=\"%d\" y=\"24\">Reset zoom</text>\n", PAD);
    fprintf(f, "<text id=\"search\" class=\"button\" x=\"%d\" y=\"24\">Search</text>\n",
            WIDTH - PAD - 60);
    fprintf(f, "<text id=\"matched\" x=\"%d\" y=\"%u\"> </text>\n", WIDTH - PAD - 160,
            height - 8);
    fprintf(f, "<text id=\"details\" x=\"%d\" y=\"%u\"> </text>\n", PAD, height - 8);
    /* the root: everything */
    fprintf(f, "<g class=\"f\"><title>all (%s, 100%%)</title><rect x=\"%d\" y=\"%u\" "
               "width=\"%d\" height=\"%d\" fill=\"rgb(230,180,80)\" rx=\"2\"/>"
               "<text x=\"%d\" y=\"%u\"></text></g>\n",
            total, PAD, height - ROW - PAD - 30, WIDTH - 2 * PAD, ROW - 1, PAD + 3,
            height - ROW - PAD - 30 + 12);
    svg_nodes(f, root, PAD, 1, height - 30, scale, root->value, bytes ? "b" : "");
    fputs("</svg>\n", f);
    return 0;
}

/* ---- JSON: the tree as d3-flame-graph reads it ------------------------------------------------ */
static void json_node(FILE *f, const fnode_t *n) {
    fputs("{\"name\":", f);
    json_str(f, n->name);
    fprintf(f, ",\"value\":%.0f,\"children\":[", n->value);
    for (const fnode_t *c = n->child; c; c = c->next) {
        json_node(f, c);
        if (c->next)
            fputc(',', f);
    }
    fputs("]}", f);
}

/* The folded lines of the tree under n: a node whose own value (not its children's) is a byte
 * or more is a line, its path from the root's child down, and the root's own value (sites with
 * no stack) is "[no stack]". */
static void folded_node(FILE *f, const fnode_t *n, const fnode_t **path, int depth) {
    double self = n->value;
    for (const fnode_t *c = n->child; c; c = c->next)
        self -= c->value;
    if (self >= 0.5) {
        if (depth == 0)
            fputs("[no stack]", f);
        for (int k = 1; k < depth; k++) {
            fputs(path[k]->name, f);
            fputc(';', f);
        }
        if (depth > 0)
            fputs(n->name, f);
        fprintf(f, " %.0f\n", self);
    }
    if (depth >= TOOL_MAX_FRAMES)
        return;
    path[depth] = n;
    for (const fnode_t *c = n->child; c; c = c->next)
        folded_node(f, c, path, depth + 1);
}

/* ---- the command ------------------------------------------------------------------------------ */
/* ---- call trees as text (tally report --tree) ------------------------------------------------ */
static int by_value(const void *a, const void *b) {
    double x = (*(fnode_t *const *)a)->value, y = (*(fnode_t *const *)b)->value;
    int c = (x < y) - (x > y); /* largest first */
    return c ? c : strcmp((*(fnode_t *const *)a)->name, (*(fnode_t *const *)b)->name);
}

static void tree_print(FILE *f, const dump_t *d, const fnode_t *n, double total, bool bytes,
                       unsigned level, const tree_opts_t *o) {
    size_t k = 0;
    for (fnode_t *c = n->child; c; c = c->next)
        k++;
    fnode_t **v = k ? malloc(k * sizeof *v) : NULL;
    if (!v)
        return;
    size_t i = 0;
    for (fnode_t *c = n->child; c; c = c->next)
        v[i++] = c;
    qsort(v, k, sizeof *v, by_value);
    double cut = total * o->threshold / 100, left_v = 0;
    size_t left = 0;
    for (i = 0; i < k; i++) {
        if (v[i]->value < cut || v[i]->value <= 0) {
            left++;
            left_v += v[i]->value;
            continue;
        }
        char val[32], pct[16];
        fprintf(f, "%6s %10s%s  %*s%s\n", fmt_pct(pct, v[i]->value, total),
                bytes ? fmt_size(val, v[i]->value) : fmt_count(val, v[i]->value),
                d->all_mode ? " " : "~", (int)(2 * level), "", v[i]->name);
        if (level + 1 < o->depth)
            tree_print(f, d, v[i], total, bytes, level + 1, o);
        else if (v[i]->child)
            fprintf(f, "%18s %*s...\n", "", (int)(2 * level + 2), "");
    }
    if (left) {
        char val[32];
        fprintf(f, "%18s %*s(%zu more under %.1f%%: %s%s)\n", "", (int)(2 * level), "", left,
                o->threshold, d->all_mode ? "" : "~",
                bytes ? fmt_size(val, left_v) : fmt_count(val, left_v));
    }
    free(v);
}

/* The tree of every call site's stack weighted by measure: from the outermost frame in
 * (bottom_up: from the innermost out); with focus, only the stacks through that function, from
 * it in (or out). NULL when memory runs out (said). */
static fnode_t *build_tree(const dump_t *d, symbolizer_t *sym, const char *measure,
                           bool bottom_up, const char *focus) {
    fnode_t *root = node_new(focus ? focus : "all");
    sym_frame_t *fr = malloc(TOOL_MAX_FRAMES * sizeof *fr);
    if (!root || !root->name || !fr) {
        tree_free(root);
        free(fr);
        tool_error("out of memory");
        return NULL;
    }
    char name[1024];
    for (size_t i = 0; i < d->nsites; i++) {
        const dsite_t *s = &d->sites[i];
        double v = weight(d, s, measure);
        if (v <= 0 || s->id == 0)
            continue;
        int n = site_stack(sym, d, s, fr, TOOL_MAX_FRAMES);
        int lo = 0, hi = n; /* the frames that go in: all, or those beyond the focus */
        if (focus) {
            /* the focus's outermost call in the stack: callees from it inward, callers outward */
            int at = -1;
            for (int k = n - 1; k >= 0 && at < 0; k--) {
                flame_frame_name(name, sizeof name, &fr[k]);
                if (strcmp(name, focus) == 0)
                    at = k;
            }
            if (at < 0)
                continue;
            if (bottom_up)
                lo = at + 1;
            else
                hi = at;
        }
        fnode_t *node = root;
        root->value += v;
        for (int j = 0; j < hi - lo && node; j++) {
            int k = bottom_up ? lo + j : hi - 1 - j;
            flame_frame_name(name, sizeof name, &fr[k]);
            node = child_named(node, name);
            if (node)
                node->value += v;
        }
    }
    free(fr);
    return root;
}

int tree_write(FILE *f, const dump_t *d, symbolizer_t *sym, const tree_opts_t *o) {
    fnode_t *root = build_tree(d, sym, o->measure, o->bottom_up, o->focus);
    if (!root)
        return 1;
    bool bytes = measure_bytes(o->measure);
    char val[32];
    if (o->focus)
        fprintf(f, "\n%s of %s, by %s, inclusive: %s%s through it; under %.1f%% left out, %u "
                   "levels at most\n",
                o->bottom_up ? "Callers" : "Callees", o->focus, o->measure,
                d->all_mode ? "" : "~",
                bytes ? fmt_size(val, root->value) : fmt_count(val, root->value), o->threshold,
                o->depth);
    else
        fprintf(f, "\nCall tree, %s (%s), by %s, inclusive: %s%s in all; under %.1f%% left "
                   "out, %u levels at most\n",
                o->bottom_up ? "bottom-up" : "top-down",
                o->bottom_up ? "allocating functions, then their callers" : "callers to callees",
                o->measure, d->all_mode ? "" : "~",
                bytes ? fmt_size(val, root->value) : fmt_count(val, root->value), o->threshold,
                o->depth);
    if (o->focus && root->value <= 0)
        fprintf(f, "(no call site's stack passes through %s)\n", o->focus);
    else if (o->focus) {
        double inner = 0;
        for (fnode_t *c = root->child; c; c = c->next)
            inner += c->value;
        char pct[16];
        if (root->value - inner > 0) /* its own allocations, or the stacks that start with it */
            fprintf(f, "%6s %10s%s  (%s)\n", fmt_pct(pct, root->value - inner, root->value),
                    bytes ? fmt_size(val, root->value - inner)
                          : fmt_count(val, root->value - inner),
                    d->all_mode ? " " : "~",
                    o->bottom_up ? "where the stacks start" : "allocated in it directly");
    }
    if (root->value > 0)
        tree_print(f, d, root, root->value, bytes, 0, o);
    tree_free(root);
    return 0;
}

int cmd_flame(const dump_t *d, symbolizer_t *sym, const flame_opts_t *o) {
    return flame_write(stdout, d, sym, o);
}

int flame_write(FILE *f, const dump_t *d, symbolizer_t *sym, const flame_opts_t *o) {
    const measure_t *mi = measure_find(o->measure);
    const char *missing = mi ? measure_missing(d, mi) : NULL;
    if (missing) {
        tool_error("%s: --measure %s %s", d->path_shown, o->measure, missing);
        return 2;
    }
    fnode_t *root = build_tree(d, sym, o->measure, o->inverted, NULL);
    if (!root)
        return 1;
    int r = 0;
    if (o->folded) {
        /* one line a distinct stack: call sites whose stacks show the same names (two return
         * addresses in one function, a Python line reached from two places in C) are one */
        tree_sort(root);
        const fnode_t *path[TOOL_MAX_FRAMES + 1];
        folded_node(f, root, path, 0);
    } else if (o->json) {
        tree_sort(root);
        fprintf(f, "{\"tally_json\":1,\"command\":\"flame\",\"measure\":");
        json_str(f, o->measure);
        fputs(",\"root\":", f);
        json_node(f, root);
        fputs("}\n", f);
    } else if (!o->folded) {
        tree_sort(root);
        r = write_svg(f, d, root, o->measure, o->inverted);
    }
    tree_free(root);
    return out_ok(f) ? r : 1;
}
