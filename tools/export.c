/* export.c: `tally export`, a dump in another tool's format.
 *
 * massif: valgrind's heap profiler's output file (massif.out.PID), as ms_print and
 * massif-visualizer read it. Its snapshots are the dump's timeline (time in ms; the heap the
 * bytes live then), detailed where the timeline point has its top call sites (`sites`): their
 * tree, and what the others held as one node; then the peak, detailed: the call tree of the bytes live at the program-wide
 * peak, allocation functions at the root and their callers below, as massif draws it, each node
 * of 1% of the total or more (massif's threshold) and the rest of a node's callers summed in one
 * "in N places" line; and the last snapshot, detailed too: what is live at the dump.
 *
 * speedscope: its JSON file format (the schema speedscope's release ships), one "sampled"
 * profile a measure (bytes live at the peak, bytes allocated, bytes live at the dump), in bytes:
 * a call site is a sample, its stack outermost first, its bytes its weight; frames shared.
 *
 * pprof: profile.proto (github.com/google/pprof/proto/profile.proto), gzip-compressed, as
 * `go tool pprof` and the continuous-profiling back-ends read it. A small encoder of our own
 * writes the few messages the format has (the schema is fixed and tested with go tool pprof),
 * and zlib the gzip. Sample types as Go's heap profiles name them (alloc_objects, alloc_space,
 * inuse_objects, inuse_space), then peak_space, temporary_objects, pinned_space and, with the leak
 * check, definite_space, indirect_space, possible_space; a call site is a sample; a return address is a location (its inlined calls as
 * lines, innermost first), in the mapping of its module (with its build-id, so pprof can
 * symbolize itself); a Python frame a location of its own, with its file and line. */
#define _GNU_SOURCE
#include "export.h"

#include <stdlib.h>
#include <string.h>
#include <zlib.h>

bool export_format_valid(const char *f) {
    return strcmp(f, "massif") == 0 || strcmp(f, "speedscope") == 0 || strcmp(f, "pprof") == 0;
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

/* The tree of the bytes w[i] of site i (sites with w[i] <= 0 left out). */
static xnode_t *build_tree_of(const dump_t *d, symbolizer_t *sym, const double *w) {
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
        double v = w[i];
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

/* The tree of one measure (peak: bytes live at the peak; live: live at the dump). */
static xnode_t *build_tree(const dump_t *d, symbolizer_t *sym, bool peak) {
    double *w = calloc(d->nsites ? d->nsites : 1, sizeof *w);
    if (!w)
        return NULL;
    for (size_t i = 0; i < d->nsites; i++)
        w[i] = (double)(peak ? d->sites[i].peak_live_bytes : d->sites[i].live_bytes);
    xnode_t *t = build_tree_of(d, sym, w);
    free(w);
    return t;
}

/* A detailed timeline point's tree: the sites it lists by their live bytes then; what the
 * others held is one line, as massif's nodes below its threshold are. */
static xnode_t *point_tree(const dump_t *d, symbolizer_t *sym, const dpoint_t *p, double *w) {
    memset(w, 0, (d->nsites ? d->nsites : 1) * sizeof *w);
    for (uint32_t k = 0; k < p->nsites; k++) {
        const dtsite_t *t = &d->tsites[p->first + k];
        w[t->site] = (double)t->live_bytes;
    }
    xnode_t *root = build_tree_of(d, sym, w);
    double rest = (double)p->live_bytes - (root ? root->value : 0);
    xnode_t *other = root && rest > 0 ? xnode_child(root, "0x0: (other call sites, not kept at this point)") : NULL;
    if (other) {
        other->value = rest;
        root->value += rest;
    }
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
    /* about 100 timeline snapshots, as massif keeps, and up to 50 of the detailed points, whose
     * trees are the call sites they list (massif's detailed snapshots); the one of the highest
     * live bytes is followed by the peak */
    size_t nt = d->ntimeline, step = nt > 100 ? (nt + 99) / 100 : 1, top = 0, ndet = 0;
    for (size_t i = 0; i < nt; i++) {
        if (d->timeline[i].live_bytes > d->timeline[top].live_bytes)
            top = i;
        ndet += d->timeline[i].nsites > 0;
    }
    size_t dstep = ndet > 50 ? (ndet + 49) / 50 : 1, di = 0;
    double *w = calloc(d->nsites ? d->nsites : 1, sizeof *w);
    if (!w) {
        xnode_free(peak);
        xnode_free(live);
        tool_error("out of memory");
        return 1;
    }
    unsigned num = 0;
    uint64_t last_ms = 0;
    bool peak_put = false;
    for (size_t i = 0; i < nt; i++) {
        const dpoint_t *p = &d->timeline[i];
        bool detail = p->nsites > 0 && di++ % dstep == 0;
        if (i % step && i != top && !detail)
            continue;
        last_ms = p->t_ns / 1000000;
        xnode_t *t = detail ? point_tree(d, sym, p, w) : NULL;
        put_snapshot(f, num++, last_ms, (double)p->live_bytes, t ? "detailed" : "empty");
        if (t)
            put_node(f, t, t->value, 0);
        xnode_free(t);
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
    free(w);
    xnode_free(peak);
    xnode_free(live);
    return 0;
}

/* ---- interned strings ------------------------------------------------------------------------ */
/* Strings interned in order of first use, by an open-addressing index (slot: index + 1). The
 * pprof string table; and, with keys made into strings, speedscope's frames and pprof's
 * locations and functions. */
typedef struct strtab_s {
    char **v;
    size_t n, cap;
    uint32_t *slot;
    size_t nslot;
} strtab_t;

/* The index of s (NULL: ""), interned; *fresh (if given) says it was not there before. -1 when
 * memory runs out. */
static int64_t str_index(strtab_t *t, const char *s, bool *fresh) {
    if (fresh)
        *fresh = false;
    if (!s)
        s = "";
    if ((t->n + 1) * 2 > t->nslot) {
        size_t ns = t->nslot ? t->nslot * 2 : 1024;
        uint32_t *slot = calloc(ns, sizeof *slot);
        if (!slot)
            return -1;
        for (size_t i = 0; i < t->n; i++) {
            size_t j = str_hash(t->v[i]) & (ns - 1);
            while (slot[j])
                j = (j + 1) & (ns - 1);
            slot[j] = (uint32_t)i + 1;
        }
        free(t->slot);
        t->slot = slot;
        t->nslot = ns;
    }
    size_t j = str_hash(s) & (t->nslot - 1);
    for (; t->slot[j]; j = (j + 1) & (t->nslot - 1))
        if (strcmp(t->v[t->slot[j] - 1], s) == 0)
            return t->slot[j] - 1;
    if (t->n == t->cap) {
        size_t nc = t->cap ? t->cap * 2 : 1024;
        char **v = realloc(t->v, nc * sizeof *v);
        if (!v)
            return -1;
        t->v = v;
        t->cap = nc;
    }
    if (!(t->v[t->n] = strdup(s)))
        return -1;
    t->slot[j] = (uint32_t)++t->n;
    if (fresh)
        *fresh = true;
    return (int64_t)t->n - 1;
}

static void str_free(strtab_t *t) {
    for (size_t k = 0; k < t->n; k++)
        free(t->v[k]);
    free(t->v);
    free(t->slot);
}

/* ---- speedscope ------------------------------------------------------------------------------- */
/* The shared frames: "name US file US line" interned (US, the unit separator, is in no name),
 * in order of first use. A native function is one frame whatever line its call is at (a flame
 * graph merges by function); a Python frame keeps its line, which is what a Python user looks
 * for. The index of the frame, or -1 when memory runs out. */
static long sframe_index(strtab_t *t, const sym_frame_t *f) {
    char name[1024], key[2200];
    frame_label(name, sizeof name, f);
    snprintf(key, sizeof key, "%s\x1f%s\x1f%u", name, f->file ? f->file : "",
             f->python ? f->line : 0);
    return (long)str_index(t, key, NULL);
}

/* One shared frame of speedscope's: {"name", "file", "line"} from its key. */
static void put_sframe(FILE *f, const char *key) {
    const char *a = strchr(key, '\x1f'), *b = a ? strchr(a + 1, '\x1f') : NULL;
    if (!a || !b)
        return;
    char *name = strndup(key, (size_t)(a - key)), *file = strndup(a + 1, (size_t)(b - a - 1));
    fputs("{\"name\":", f);
    json_str(f, name ? name : "?");
    if (file && *file) {
        fputs(",\"file\":", f);
        json_str(f, file);
        if (strcmp(b + 1, "0") != 0)
            fprintf(f, ",\"line\":%s", b + 1);
    }
    fputc('}', f);
    free(name);
    free(file);
}

static int export_speedscope(FILE *f, const dump_t *d, symbolizer_t *sym) {
    static const struct {
        const char *measure, *title;
    } prof[] = {{"peak", "bytes live at the peak"},
                {"allocated", "bytes allocated"},
                {"live", "bytes live at the dump"}};
    strtab_t t = {0};
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
            if (i)
                fputc(',', f);
            put_sframe(f, t.v[i]);
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
    str_free(&t);
    free(stacks);
    free(depth);
    free(fr);
    return r;
}

/* ---- pprof ------------------------------------------------------------------------------------ */
typedef struct pb_s {
    unsigned char *b;
    size_t n, cap;
    bool failed;
} pb_t;

static void pb_put(pb_t *p, const void *data, size_t len) {
    if (p->failed)
        return;
    if (p->n + len > p->cap) {
        size_t nc = p->cap ? p->cap * 2 : 4096;
        while (nc < p->n + len)
            nc *= 2;
        unsigned char *b = realloc(p->b, nc);
        if (!b) {
            p->failed = true;
            return;
        }
        p->b = b;
        p->cap = nc;
    }
    memcpy(p->b + p->n, data, len);
    p->n += len;
}

static void pb_varint(pb_t *p, uint64_t v) {
    unsigned char buf[10];
    size_t k = 0;
    do {
        buf[k] = (unsigned char)(v & 0x7f);
        v >>= 7;
        if (v)
            buf[k] |= 0x80;
        k++;
    } while (v);
    pb_put(p, buf, k);
}

static void pb_uint(pb_t *p, unsigned field, uint64_t v) { /* wire type 0 */
    pb_varint(p, (uint64_t)field << 3);
    pb_varint(p, v);
}

static void pb_bytes(pb_t *p, unsigned field, const void *data, size_t len) { /* wire type 2 */
    pb_varint(p, (uint64_t)field << 3 | 2);
    pb_varint(p, len);
    pb_put(p, data, len);
}

/* A nested message: encoded into sub, appended as field, sub emptied. */
static void pb_msg(pb_t *p, unsigned field, pb_t *sub) {
    if (sub->failed)
        p->failed = true;
    pb_bytes(p, field, sub->b, sub->n);
    sub->n = 0;
}

/* gzip of the encoded profile to f */
static bool gzip_to(FILE *f, const unsigned char *data, size_t len) {
    z_stream z;
    memset(&z, 0, sizeof z);
    if (deflateInit2(&z, 6, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK)
        return false;
    unsigned char out[65536];
    z.next_in = (unsigned char *)data;
    size_t left = len;
    int rc;
    do {
        unsigned chunk = left > (1u << 30) ? 1u << 30 : (unsigned)left;
        z.next_in = (unsigned char *)data + (len - left);
        z.avail_in = chunk;
        left -= chunk;
        do {
            z.next_out = out;
            z.avail_out = sizeof out;
            rc = deflate(&z, left ? Z_NO_FLUSH : Z_FINISH);
            if (rc == Z_STREAM_ERROR || fwrite(out, 1, sizeof out - z.avail_out, f) !=
                                            sizeof out - z.avail_out) {
                deflateEnd(&z);
                return false;
            }
        } while (z.avail_out == 0);
    } while (left);
    deflateEnd(&z);
    return rc == Z_STREAM_END;
}

static int export_pprof(FILE *f, const dump_t *d, symbolizer_t *sym) {
    strtab_t st = {0}, locs = {0}, funcs = {0}; /* locations and functions by their keys */
    pb_t prof = {0}, msg = {0}, sub = {0}, locbuf = {0}, funcbuf = {0};
    sym_frame_t *fr = malloc(TOOL_MAX_FRAMES * sizeof *fr);
    uint64_t *ids = malloc(1024 * sizeof *ids);
    int r = fr && ids ? 0 : 1;
    str_index(&st, "", NULL);
    /* the sample types: (type, unit), and how each site's value is had */
    enum { V_ALLOC_N, V_ALLOC_B, V_INUSE_N, V_INUSE_B, V_PEAK_B, V_TEMP_N, V_PINNED_B,
           V_DEFINITE_B, V_INDIRECT_B, V_POSSIBLE_B, V_N };
    static const char *const vt[V_N][2] = {
        {"alloc_objects", "count"},     {"alloc_space", "bytes"},   {"inuse_objects", "count"},
        {"inuse_space", "bytes"},       {"peak_space", "bytes"},    {"temporary_objects", "count"},
        {"pinned_space", "bytes"},      {"definite_space", "bytes"}, {"indirect_space", "bytes"},
        {"possible_space", "bytes"}};
    unsigned nv = d->leak_check ? V_N : V_DEFINITE_B; /* the leak kinds with the leak check */
    for (unsigned k = 0; k < nv; k++) {
        pb_uint(&msg, 1, (uint64_t)str_index(&st, vt[k][0], NULL));
        pb_uint(&msg, 2, (uint64_t)str_index(&st, vt[k][1], NULL));
        pb_msg(&prof, 1, &msg); /* sample_type */
    }
    /* the mappings: one a module, id = index + 1 */
    for (size_t m = 0; m < d->nmodules; m++) {
        const dmodule_t *mo = &d->modules[m];
        pb_uint(&msg, 1, m + 1);
        pb_uint(&msg, 2, mo->lo);
        pb_uint(&msg, 3, mo->hi);
        pb_uint(&msg, 4, mo->lo - mo->base); /* file_offset of memory_start */
        pb_uint(&msg, 5, (uint64_t)str_index(&st, mo->path, NULL));
        pb_uint(&msg, 6, (uint64_t)str_index(&st, mo->build_id ? mo->build_id : "", NULL));
        pb_uint(&msg, 7, 1); /* has_functions */
        pb_uint(&msg, 8, 1); /* has_filenames */
        pb_uint(&msg, 9, 1); /* has_line_numbers */
        pb_uint(&msg, 10, 1); /* has_inline_frames */
        pb_msg(&prof, 3, &msg);
    }
    for (size_t i = 0; i < d->nsites && r == 0; i++) {
        const dsite_t *s = &d->sites[i];
        if (s->id == 0)
            continue;
        double val[V_N] = {
            dump_count(d, s->alloc_count), (double)s->alloc_bytes,
            s->live_count < 0 ? 0 : dump_count(d, (uint64_t)s->live_count),
            (double)s->live_bytes, (double)s->peak_live_bytes, dump_count(d, s->temporary),
            (double)s->pinned_bytes, (double)s->kind_bytes[DKIND_DEFINITE],
            (double)s->kind_bytes[DKIND_INDIRECT], (double)s->kind_bytes[DKIND_POSSIBLE]};
        /* the site's stack: its return addresses, innermost first, each a location */
        uint32_t n = dump_frames(d, s, ids, 1024);
        if (n > 1024)
            n = 1024;
        for (uint32_t k = 0; k < n; k++) {
            uint64_t ip = ids[k];
            bool fresh;
            char key[48]; /* a native return address in its generation, or a Python frame word */
            snprintf(key, sizeof key, dump_ip_is_py(ip) ? "%llx" : "%llx/%u",
                     (unsigned long long)ip, s->gen);
            int64_t li = str_index(&locs, key, &fresh);
            if (li < 0) {
                r = 1;
                break;
            }
            uint64_t id = (uint64_t)li + 1;
            pb_uint(&msg, 1, id); /* location_id */
            if (!fresh)
                continue;
            /* a new location: its lines (inlined calls innermost first), each a function */
            int nl = sym_lookup(sym, ip, s->gen, fr, TOOL_MAX_FRAMES);
            pb_uint(&sub, 1, id);
            int mi = dump_ip_is_py(ip) ? -1 : sym_module_of(d, ip, s->gen);
            if (mi >= 0)
                pb_uint(&sub, 2, (uint64_t)mi + 1);
            if (!dump_ip_is_py(ip))
                pb_uint(&sub, 3, ip - 1); /* the call's address, as pprof shows it */
            for (int l = 0; l < nl; l++) {
                char name[1024], fkey[64];
                frame_label(name, sizeof name, &fr[l]);
                int64_t ni = str_index(&st, name, NULL), fi = str_index(&st, fr[l].file, NULL),
                        si = str_index(&st, fr[l].mangled ? fr[l].mangled : name, NULL);
                if (ni < 0 || fi < 0 || si < 0) {
                    r = 1;
                    break;
                }
                bool ffresh;
                snprintf(fkey, sizeof fkey, "%lld %lld %lld", (long long)ni, (long long)si,
                         (long long)fi);
                int64_t fx = str_index(&funcs, fkey, &ffresh);
                if (fx < 0) {
                    r = 1;
                    break;
                }
                uint64_t fid = (uint64_t)fx + 1;
                if (ffresh) {
                    pb_t fm = {0};
                    pb_uint(&fm, 1, fid);
                    pb_uint(&fm, 2, (uint64_t)ni);
                    pb_uint(&fm, 3, (uint64_t)si);
                    pb_uint(&fm, 4, (uint64_t)fi);
                    pb_msg(&funcbuf, 5, &fm); /* Profile.function */
                    free(fm.b);
                }
                pb_t lm = {0};
                pb_uint(&lm, 1, fid);
                pb_uint(&lm, 2, fr[l].line);
                pb_msg(&sub, 4, &lm); /* Location.line */
                free(lm.b);
            }
            pb_msg(&locbuf, 4, &sub); /* Profile.location */
        }
        for (unsigned k = 0; k < nv; k++)
            pb_uint(&msg, 2, (uint64_t)(int64_t)(val[k] + (val[k] >= 0 ? 0.5 : -0.5)));
        pb_msg(&prof, 2, &msg); /* sample */
    }
    pb_put(&prof, locbuf.b, locbuf.n);
    pb_put(&prof, funcbuf.b, funcbuf.n);
    /* the comments and the period, then the string table last (every index is taken by now) */
    char c1[512], c2[160];
    snprintf(c1, sizeof c1, "program: %s", d->program ? d->program : "?");
    snprintf(c2, sizeof c2, "pid %llu, %s, dump %s", (unsigned long long)d->pid,
             d->all_mode ? "every allocation recorded" : "sampled: figures are estimates",
             d->reason ? d->reason : "?");
    int64_t i1 = str_index(&st, c1, NULL), i2 = str_index(&st, c2, NULL);
    pb_uint(&prof, 9, d->start_ns);     /* time_nanos */
    pb_uint(&prof, 10, d->duration_ns); /* duration_nanos */
    pb_uint(&msg, 1, (uint64_t)str_index(&st, "space", NULL));
    pb_uint(&msg, 2, (uint64_t)str_index(&st, "bytes", NULL));
    pb_msg(&prof, 11, &msg);                      /* period_type */
    pb_uint(&prof, 12, d->all_mode ? 1 : d->sample_interval); /* period */
    pb_uint(&prof, 13, (uint64_t)i1);             /* comment */
    pb_uint(&prof, 13, (uint64_t)i2);
    pb_uint(&prof, 14, (uint64_t)str_index(&st, "alloc_space", NULL)); /* default_sample_type */
    for (size_t k = 0; k < st.n; k++)
        pb_bytes(&prof, 6, st.v[k], strlen(st.v[k])); /* string_table */
    if (r == 0 && (prof.failed || msg.failed || sub.failed || locbuf.failed || funcbuf.failed))
        r = 1;
    if (r == 0 && !gzip_to(f, prof.b, prof.n))
        r = 1;
    if (r)
        tool_error("cannot write the pprof profile (out of memory or a write error)");
    str_free(&st);
    str_free(&locs);
    str_free(&funcs);
    free(prof.b);
    free(msg.b);
    free(sub.b);
    free(locbuf.b);
    free(funcbuf.b);
    free(fr);
    free(ids);
    return r;
}

int cmd_export(const dump_t *d, symbolizer_t *sym, const export_opts_t *o) {
    FILE *f = o->out ? o->out : stdout;
    int r = strcmp(o->format, "speedscope") == 0 ? export_speedscope(f, d, sym)
            : strcmp(o->format, "pprof") == 0    ? export_pprof(f, d, sym)
                                                  : export_massif(f, d, sym);
    return out_ok(f) && r == 0 ? 0 : 1;
}
