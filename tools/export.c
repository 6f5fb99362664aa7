/* export.c: `tally export`, a dump in another tool's format.
 *
 * massif: valgrind's heap profiler's output file (massif.out.PID), as ms_print and
 * massif-visualizer read it. Its snapshots are the dump's timeline (time in ms; the heap the
 * bytes live then), then the peak, detailed: the call tree of the bytes live at the program-wide
 * peak, allocation functions at the root and their callers below, as massif draws it, each node
 * of 1% of the total or more (massif's threshold) and the rest of a node's callers summed in one
 * "in N places" line; and the last snapshot, detailed too: what is live at the dump. */
#define _GNU_SOURCE
#include "export.h"

#include <stdlib.h>
#include <string.h>

bool export_format_valid(const char *f) {
    return strcmp(f, "massif") == 0;
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

int cmd_export(const dump_t *d, symbolizer_t *sym, const export_opts_t *o) {
    FILE *f = o->out ? o->out : stdout;
    int r = export_massif(f, d, sym);
    return r == 0 && fflush(f) == 0 && !ferror(f) ? 0 : 1;
}
