/* export.c: `tally export`, a dump in another tool's format.
 *
 * massif: valgrind's heap profiler's output file (massif.out.PID), as ms_print and
 * massif-visualizer read it. Its snapshots are the dump's timeline (time in ms; the heap the
 * bytes live then), then the peak, detailed: the call tree of the bytes live at the program-wide
 * peak, allocation functions at the root and their callers below, as massif draws it, each node
 * of 1% of the total or more (massif's threshold) and the rest of a node's callers summed in one
 * "in N places" line; and the last snapshot, detailed too: what is live at the dump.
 *
 * speedscope: its JSON file format (the schema speedscope's release ships), one "sampled"
 * profile a measure (bytes live at the peak, bytes allocated, bytes live at the dump), in bytes:
 * a call site is a sample, its stack outermost first, its bytes its weight; frames shared. */
#define _GNU_SOURCE
#include "export.h"

#include <stdlib.h>
#include <string.h>

bool export_format_valid(const char *f) {
    return strcmp(f, "massif") == 0 || strcmp(f, "speedscope") == 0;
}

/* ---- the call tree, innermost frames at the top -------------------------------------------- */
typedef struct xnode_s {
    char *name;
    double value;
    struct xnode_s *child, *next;
} xnode_t;

static xnode_t *xnode_child(xnode_t *p, const char *name) {
    for (xnode_t *c = p->child; c; c = c->next)
        if (strcmp(c->name, name) == 0)
            return c;
    xnode_t *c = calloc(1, sizeof *c);
    if (!c || !(c->name = strdup(name))) {
        free(c);
        return NULL;
    }
    c->next = p->child;
    p->child = c;
    return c;
}

static void xnode_free(xnode_t *n) {
    while (n) {
        xnode_t *next = n->next;
        xnode_free(n->child);
        free(n->name);
        free(n);
        n = next;
    }
}

/* A frame as massif writes one: "0xADDR: function (file:line)", "(in module)" without lines;
 * the address is the call's (the return address less one), as massif's.
 * '#' starts a comment for ms_print, and a newline would end the line: both become ' '. */
static void massif_frame(char *out, size_t cap, const sym_frame_t *f) {
    if (f->python)
        snprintf(out, cap, "0x0: %s (%s:%u)", f->function ? f->function : "???",
                 f->file ? f->file : "?", f->line);
    else if (f->function && f->file)
        snprintf(out, cap, "0x%llX: %s (%s:%u)", (unsigned long long)f->ip - 1, f->function,
                 sym_basename(f->file), f->line);
    else if (f->function)
        snprintf(out, cap, "0x%llX: %s (in %s)", (unsigned long long)f->ip - 1, f->function,
                 f->module ? f->module : "???");
    else
        snprintf(out, cap, "0x%llX: ??? (in %s)", (unsigned long long)f->ip - 1,
                 f->module ? f->module : "???");
    for (char *p = out; *p; p++)
        if (*p == '#' || *p == '\n' || *p == '\r')
            *p = ' ';
}

/* The tree of one measure (peak: bytes live at the peak; live: live at the dump). */
static xnode_t *build_tree(const dump_t *d, symbolizer_t *sym, bool peak) {
    xnode_t *root = calloc(1, sizeof *root);
    sym_frame_t *fr = malloc(TOOL_MAX_FRAMES * sizeof *fr);
    if (!root || !fr || !(root->name = strdup("(heap allocation functions) malloc/new/new[], "
                                              "--alloc-fns, etc."))) {
        free(fr);
        xnode_free(root);
        return NULL;
    }
    char name[1024];
    for (size_t i = 0; i < d->nsites; i++) {
        const dsite_t *s = &d->sites[i];
        double v = (double)(peak ? s->peak_live_bytes : s->live_bytes);
        if (v <= 0 || s->id == 0)
            continue;
        root->value += v;
        int n = site_stack(sym, d, s, fr, TOOL_MAX_FRAMES);
        xnode_t *node = root;
        for (int k = 0; k < n && node; k++) {
            massif_frame(name, sizeof name, &fr[k]);
            if ((node = xnode_child(node, name)))
                node->value += v;
        }
    }
    free(fr);
    return root;
}

/* A site's bytes by a measure, never below 0 (sample mode's live figures can dip) */
static double weight_of(const dump_t *d, const dsite_t *s, const char *m) {
    double v = site_measure(d, s, m);
    return v > 0 ? v : 0;
}

static int by_value(const void *a, const void *b) {
    double x = (*(xnode_t *const *)a)->value, y = (*(xnode_t *const *)b)->value;
    return x < y ? 1 : x > y ? -1 : strcmp((*(xnode_t *const *)a)->name, (*(xnode_t *const *)b)->name);
}

/* massif's node lines: " nK: BYTES details", one space of indent a level; children of 1% of
 * total or more, largest first, then the others summed. */
static void put_node(FILE *f, const xnode_t *n, double total, int depth) {
    size_t k = 0;
    for (const xnode_t *c = n->child; c; c = c->next)
        k++;
    xnode_t **v = k ? malloc(k * sizeof *v) : NULL;
    size_t sig = 0, insig = 0;
    double rest = 0;
    if (v) {
        size_t i = 0;
        for (xnode_t *c = n->child; c; c = c->next)
            v[i++] = c;
        qsort(v, k, sizeof *v, by_value);
        for (i = 0; i < k; i++) {
            if (v[i]->value * 100 >= total && total > 0)
                sig++;
            else {
                insig++;
                rest += v[i]->value;
            }
        }
    }
    fprintf(f, "%*sn%zu: %.0f %s\n", depth, "", sig + (insig ? 1 : 0), n->value, n->name);
    for (size_t i = 0; i < sig; i++)
        put_node(f, v[i], total, depth + 1);
    if (insig)
        fprintf(f, "%*sn0: %.0f in %zu place%s below massif's threshold (1.00%%)\n", depth + 1,
                "", rest, insig, insig == 1 ? "," : "s, all");
    free(v);
}

static void put_snapshot(FILE *f, unsigned num, uint64_t ms, double heap, const char *tree) {
    fprintf(f, "#-----------\nsnapshot=%u\n#-----------\ntime=%llu\nmem_heap_B=%.0f\n"
               "mem_heap_extra_B=0\nmem_stacks_B=0\nheap_tree=%s\n",
            num, (unsigned long long)ms, heap > 0 ? heap : 0, tree);
}

static int export_massif(FILE *f, const dump_t *d, symbolizer_t *sym) {
    xnode_t *peak = build_tree(d, sym, true), *live = build_tree(d, sym, false);
    if (!peak || !live) {
        xnode_free(peak);
        xnode_free(live);
        tool_error("out of memory");
        return 1;
    }
    fprintf(f, "desc: tally export --format massif %s (%s)\ncmd: ",
            d->path_shown ? d->path_shown : "?", d->all_mode ? "every allocation" : "sampled");
    for (const char *p = d->program ? d->program : "?"; *p; p++)
        fputc(*p == '\n' ? ' ' : *p, f);
    fputs("\ntime_unit: ms\n", f);
    /* at most 100 timeline snapshots, as massif keeps; the one of the highest live bytes is
     * followed by the peak */
    size_t nt = d->ntimeline, step = nt > 100 ? (nt + 99) / 100 : 1, top = 0;
    for (size_t i = 0; i < nt; i++)
        if (d->timeline[i].live_bytes > d->timeline[top].live_bytes)
            top = i;
    unsigned num = 0;
    uint64_t last_ms = 0;
    bool peak_put = false;
    for (size_t i = 0; i < nt; i++) {
        if (i % step && i != top)
            continue;
        last_ms = d->timeline[i].t_ns / 1000000;
        put_snapshot(f, num++, last_ms, (double)d->timeline[i].live_bytes, "empty");
        if (i == top) {
            put_snapshot(f, num++, last_ms, peak->value, "peak");
            put_node(f, peak, peak->value, 0);
            peak_put = true;
        }
    }
    if (!peak_put) {
        put_snapshot(f, num++, last_ms, peak->value, "peak");
        put_node(f, peak, peak->value, 0);
    }
    uint64_t end_ms = d->duration_ns / 1000000;
    put_snapshot(f, num++, end_ms > last_ms ? end_ms : last_ms, live->value, "detailed");
    put_node(f, live, live->value, 0);
    xnode_free(peak);
    xnode_free(live);
    return 0;
}

/* ---- speedscope ------------------------------------------------------------------------------- */
/* The shared frames: (name, file, line) interned, in order of first use. */
typedef struct sframe_s {
    char *name;
    const char *file;
    uint32_t line;
} sframe_t;
typedef struct sframes_s {
    sframe_t *v;
    size_t n, cap;
    uint32_t *slot; /* open addressing: index + 1, 0 empty */
    size_t nslot;
} sframes_t;

static uint64_t sframe_hash(const char *name, const char *file, uint32_t line) {
    uint64_t h = 1469598103934665603ull ^ line;
    for (const char *p = name; *p; p++)
        h = (h ^ (unsigned char)*p) * 1099511628211ull;
    h = (h ^ 0xff) * 1099511628211ull;
    for (const char *p = file ? file : ""; *p; p++)
        h = (h ^ (unsigned char)*p) * 1099511628211ull;
    return h;
}

static bool sframes_grow(sframes_t *t) {
    size_t ns = t->nslot ? t->nslot * 2 : 4096;
    uint32_t *slot = calloc(ns, sizeof *slot);
    if (!slot)
        return false;
    for (size_t i = 0; i < t->n; i++) {
        size_t j = sframe_hash(t->v[i].name, t->v[i].file, t->v[i].line) & (ns - 1);
        while (slot[j])
            j = (j + 1) & (ns - 1);
        slot[j] = (uint32_t)i + 1;
    }
    free(t->slot);
    t->slot = slot;
    t->nslot = ns;
    return true;
}

/* The index of the frame, or -1 when memory runs out. */
static long sframe_index(sframes_t *t, const sym_frame_t *f) {
    char name[1024];
    if (f->function)
        snprintf(name, sizeof name, "%s", f->function);
    else if (f->module)
        snprintf(name, sizeof name, "%s+%#llx", sym_basename(f->module),
                 (unsigned long long)f->offset);
    else
        snprintf(name, sizeof name, "%#llx", (unsigned long long)f->ip);
    /* a native function is one frame whatever line its call is at (a flame graph merges by
     * function); a Python frame keeps its line, which is what a Python user looks for */
    const char *file = f->file;
    uint32_t line = f->python ? f->line : 0;
    if ((t->n + 1) * 2 > t->nslot && !sframes_grow(t))
        return -1;
    size_t j = sframe_hash(name, file, line) & (t->nslot - 1);
    for (; t->slot[j]; j = (j + 1) & (t->nslot - 1)) {
        const sframe_t *e = &t->v[t->slot[j] - 1];
        if (e->line == line && strcmp(e->name, name) == 0 &&
            strcmp(e->file ? e->file : "", file ? file : "") == 0)
            return (long)t->slot[j] - 1;
    }
    if (t->n == t->cap) {
        size_t nc = t->cap ? t->cap * 2 : 1024;
        sframe_t *v = realloc(t->v, nc * sizeof *v);
        if (!v)
            return -1;
        t->v = v;
        t->cap = nc;
    }
    if (!(t->v[t->n].name = strdup(name)))
        return -1;
    t->v[t->n].file = file;
    t->v[t->n].line = line;
    t->slot[j] = (uint32_t)++t->n;
    return (long)t->n - 1;
}

static int export_speedscope(FILE *f, const dump_t *d, symbolizer_t *sym) {
    static const struct {
        const char *measure, *title;
    } prof[] = {{"peak", "bytes live at the peak"},
                {"allocated", "bytes allocated"},
                {"live", "bytes live at the dump"}};
    sframes_t t = {0};
    sym_frame_t *fr = malloc(TOOL_MAX_FRAMES * sizeof *fr);
    /* each site's stack as frame indices, outermost first, once for every profile */
    long **stacks = calloc(d->nsites + 1, sizeof *stacks);
    int *depth = calloc(d->nsites + 1, sizeof *depth);
    int r = fr && stacks && depth ? 0 : 1;
    for (size_t i = 0; i < d->nsites && r == 0; i++) {
        const dsite_t *s = &d->sites[i];
        if (s->id == 0)
            continue;
        int n = site_stack(sym, d, s, fr, TOOL_MAX_FRAMES);
        if (!(stacks[i] = malloc(((size_t)n + 1) * sizeof **stacks))) {
            r = 1;
            break;
        }
        for (int k = 0; k < n; k++)
            if ((stacks[i][n - 1 - k] = sframe_index(&t, &fr[k])) < 0)
                r = 1;
        depth[i] = n;
    }
    if (r == 0) {
        fputs("{\"$schema\":\"https://www.speedscope.app/file-format-schema.json\","
              "\"exporter\":\"tally " TALLY_VERSION "\",\"name\":", f);
        json_str(f, d->program ? sym_basename(d->program) : "?");
        fputs(",\"activeProfileIndex\":0,\"shared\":{\"frames\":[", f);
        for (size_t i = 0; i < t.n; i++) {
            fputs(i ? ",{\"name\":" : "{\"name\":", f);
            json_str(f, t.v[i].name);
            if (t.v[i].file) {
                fputs(",\"file\":", f);
                json_str(f, t.v[i].file);
                if (t.v[i].line)
                    fprintf(f, ",\"line\":%u", t.v[i].line);
            }
            fputc('}', f);
        }
        fputs("]},\"profiles\":[", f);
        for (size_t p = 0; p < sizeof prof / sizeof prof[0]; p++) {
            double total = 0;
            for (size_t i = 0; i < d->nsites; i++)
                if (stacks[i])
                    total += weight_of(d, &d->sites[i], prof[p].measure);
            fprintf(f, "%s{\"type\":\"sampled\",\"name\":", p ? "," : "");
            char title[256];
            snprintf(title, sizeof title, "%s: %s%s", d->program ? sym_basename(d->program) : "?",
                     prof[p].title, d->all_mode ? "" : " (estimated from samples)");
            json_str(f, title);
            fprintf(f, ",\"unit\":\"bytes\",\"startValue\":0,\"endValue\":%.0f,\"samples\":[",
                    total);
            bool first = true;
            for (size_t i = 0; i < d->nsites; i++) {
                if (!stacks[i] || weight_of(d, &d->sites[i], prof[p].measure) < 0.5)
                    continue;
                fputs(first ? "[" : ",[", f);
                first = false;
                for (int k = 0; k < depth[i]; k++)
                    fprintf(f, k ? ",%ld" : "%ld", stacks[i][k]);
                fputc(']', f);
            }
            fputs("],\"weights\":[", f);
            first = true;
            for (size_t i = 0; i < d->nsites; i++) {
                double v;
                if (!stacks[i] || (v = weight_of(d, &d->sites[i], prof[p].measure)) < 0.5)
                    continue;
                fprintf(f, first ? "%.0f" : ",%.0f", v);
                first = false;
            }
            fputs("]}", f);
        }
        fputs("]}\n", f);
    } else {
        tool_error("out of memory");
    }
    for (size_t i = 0; stacks && i < d->nsites; i++)
        free(stacks[i]);
    for (size_t i = 0; i < t.n; i++)
        free(t.v[i].name);
    free(t.v);
    free(t.slot);
    free(stacks);
    free(depth);
    free(fr);
    return r;
}

int cmd_export(const dump_t *d, symbolizer_t *sym, const export_opts_t *o) {
    FILE *f = o->out ? o->out : stdout;
    int r = strcmp(o->format, "speedscope") == 0 ? export_speedscope(f, d, sym)
                                                  : export_massif(f, d, sym);
    return r == 0 && fflush(f) == 0 && !ferror(f) ? 0 : 1;
}
