/* diff.c: `tally diff OLD NEW`: how each call site grew between two dumps of the same program,
 * for leaks that grow over time (a series of TALLY_INTERVAL or TALLY_SIGNAL dumps, or two runs).
 * Sites are matched by their stacks as module+offset of every frame (and generation), which
 * holds across runs whatever the load addresses. */
#define _GNU_SOURCE
#include "diff.h"

#include <stdlib.h>
#include <string.h>

static const char *const measures[] = {"live", "allocated", "count", "peak", NULL};

bool diff_measure_valid(const char *m) {
    for (int i = 0; measures[i]; i++)
        if (strcmp(m, measures[i]) == 0)
            return true;
    return false;
}

/* ---- matching ------------------------------------------------------------------------------ */
/* The key of a site: for each frame, its module's name and offset (or the address when in no
 * module), and the generation. */
static char *site_key(const dump_t *d, const dsite_t *s) {
    uint64_t ips[1024];
    uint32_t n = dump_frames(d, s, ips, 1024);
    if (n > 1024)
        n = 1024;
    size_t cap = 32 + (size_t)n * 96, len = 0;
    for (uint32_t i = 0; i < n; i++)
        if (dump_ip_is_py(ips[i]) && dump_py_code(ips[i]) < d->npycodes)
            cap += strlen(d->pycodes[dump_py_code(ips[i])].file) +
                   strlen(d->pycodes[dump_py_code(ips[i])].name);
    char *k = malloc(cap);
    if (!k)
        return NULL;
    len += (size_t)snprintf(k + len, cap - len, "%u", s->gen);
    for (uint32_t i = 0; i < n; i++) {
        int m = sym_module_of(d, ips[i], s->gen);
        if (dump_ip_is_py(ips[i]) && dump_py_code(ips[i]) < d->npycodes) /* Python: by name */
            len += (size_t)snprintf(k + len, cap - len, ";py:%s:%s:%u",
                                    d->pycodes[dump_py_code(ips[i])].file,
                                    d->pycodes[dump_py_code(ips[i])].name, dump_py_line(ips[i]));
        else if (m >= 0)
            len += (size_t)snprintf(k + len, cap - len, ";%s+%llx",
                                    sym_basename(d->modules[m].path),
                                    (unsigned long long)(ips[i] - d->modules[m].base));
        else
            len += (size_t)snprintf(k + len, cap - len, ";%llx", (unsigned long long)ips[i]);
        if (len >= cap)
            len = cap - 1;
    }
    return k;
}

typedef struct pair_s {
    const dsite_t *old, *new_;
    char *key;
    double delta; /* of the measure */
} pair_t;

static size_t khash(const char *s) {
    return (size_t)str_hash(s);
}

static int by_delta(const void *a, const void *b) {
    const pair_t *x = a, *y = b;
    if (x->delta != y->delta)
        return x->delta > y->delta ? -1 : 1;
    return strcmp(x->key, y->key);
}

/* Every site of either dump, once, with its counterpart in the other (or NULL). */
static pair_t *pair_sites(const dump_t *a, const dump_t *b, size_t *npairs) {
    size_t cap = 1;
    while (cap < 2 * (a->nsites + b->nsites) + 2)
        cap *= 2;
    size_t *slot = malloc(cap * sizeof *slot); /* index + 1 into pairs, 0: empty */
    pair_t *pairs = calloc(a->nsites + b->nsites + 1, sizeof *pairs);
    size_t n = 0;
    if (!slot || !pairs) {
        free(slot);
        free(pairs);
        return NULL;
    }
    memset(slot, 0, cap * sizeof *slot);
    for (int side = 0; side < 2; side++) {
        const dump_t *d = side ? b : a;
        for (size_t i = 0; i < d->nsites; i++) {
            const dsite_t *s = &d->sites[i];
            if (s->id == 0)
                continue; /* memory from before the profiler started */
            char *key = site_key(d, s);
            if (!key)
                continue;
            size_t j = khash(key) & (cap - 1);
            while (slot[j] && strcmp(pairs[slot[j] - 1].key, key) != 0)
                j = (j + 1) & (cap - 1);
            if (!slot[j]) {
                pairs[n].key = key;
                slot[j] = ++n;
            } else {
                free(key);
            }
            pair_t *p = &pairs[slot[j] - 1];
            if (side)
                p->new_ = s;
            else
                p->old = s;
        }
    }
    free(slot);
    *npairs = n;
    return pairs;
}

/* ---- output -------------------------------------------------------------------------------- */
static void header_line(FILE *f, const char *label, const dump_t *d) {
    char when[64];
    fprintf(f, "  %s %s (pid %llu), %s, dumped %s after %.2f s\n", label, d->path_shown,
            (unsigned long long)d->pid, d->all_mode ? "every allocation" : "sampled",
            dump_when(d, when), (double)d->duration_ns / 1e9);
}

static void signed_size(char buf[40], double v) {
    char t[32];
    fmt_size(t, v < 0 ? -v : v);
    snprintf(buf, 40, "%s%s", v < 0 ? "-" : "+", t);
}

static void signed_count(char buf[40], double v) {
    char t[32];
    fmt_count(t, v < 0 ? -v : v);
    snprintf(buf, 40, "%s%s", v < 0 ? "-" : "+", t);
}

static double live_count(const dump_t *d, const dsite_t *s) {
    return s ? dump_count(d, (uint64_t)(s->live_count > 0 ? s->live_count : 0)) : 0;
}

static void json_side(FILE *f, const char *key, const dump_t *d, const dsite_t *s, bool *first) {
    json_key(f, key, first);
    if (!s) {
        fputs("null", f);
        return;
    }
    fprintf(f, "{\"alloc_count\":%.0f,\"alloc_bytes\":%llu,\"live_count\":%.0f,"
               "\"live_bytes\":%lld,\"peak_bytes\":%lld}",
            dump_count(d, s->alloc_count), (unsigned long long)s->alloc_bytes, live_count(d, s),
            (long long)s->live_bytes, (long long)s->peak_live_bytes);
}

static void json_info(FILE *f, const char *key, const dump_t *d, bool *first) {
    json_key(f, key, first);
    fputs("{\"path\":", f);
    json_str(f, d->path_shown);
    fprintf(f, ",\"program\":");
    json_str(f, d->program);
    fprintf(f, ",\"pid\":%llu,\"mode\":", (unsigned long long)d->pid);
    json_str(f, d->mode);
    fprintf(f, ",\"reason\":");
    json_str(f, d->reason);
    fprintf(f, ",\"duration_ns\":%llu,\"live_bytes\":%lld,\"peak_bytes\":%lld}",
            (unsigned long long)d->duration_ns, (long long)d->total_live_bytes,
            (long long)d->peak_bytes);
}

int cmd_diff(const dump_t *a, const dump_t *b, symbolizer_t *sa, symbolizer_t *sb,
             const diff_opts_t *o) {
    FILE *f = stdout;
    size_t n = 0;
    pair_t *pairs = pair_sites(a, b, &n);
    if (!pairs) {
        tool_error("out of memory");
        return 1;
    }
    for (size_t i = 0; i < n; i++)
        pairs[i].delta = site_measure(b, pairs[i].new_, o->sort) - site_measure(a, pairs[i].old, o->sort);
    qsort(pairs, n, sizeof *pairs, by_delta);
    size_t shown = n < o->top ? n : o->top;
    sym_frame_t *fr = malloc(TOOL_MAX_FRAMES * sizeof *fr);
    if (!fr) {
        free(pairs);
        return 1;
    }
    if (o->json) {
        bool first = true;
        fputc('{', f);
        json_key(f, "tally_json", &first);
        fputs("1", f);
        json_key(f, "command", &first);
        json_str(f, "diff");
        json_info(f, "old", a, &first);
        json_info(f, "new", b, &first);
        json_key(f, "sort", &first);
        json_str(f, o->sort);
        json_key(f, "sites", &first);
        fputc('[', f);
        for (size_t i = 0; i < shown; i++) {
            const pair_t *p = &pairs[i];
            bool fi = true;
            fputs(i ? ",{" : "{", f);
            json_side(f, "old", a, p->old, &fi);
            json_side(f, "new", b, p->new_, &fi);
            json_key(f, "delta", &fi);
            fprintf(f, "{\"alloc_count\":%.0f,\"alloc_bytes\":%.0f,\"live_count\":%.0f,"
                       "\"live_bytes\":%.0f}",
                    site_measure(b, p->new_, "count") - site_measure(a, p->old, "count"),
                    site_measure(b, p->new_, "allocated") - site_measure(a, p->old, "allocated"),
                    live_count(b, p->new_) - live_count(a, p->old),
                    site_measure(b, p->new_, "live") - site_measure(a, p->old, "live"));
            json_key(f, "frames", &fi);
            json_frames(f, fr,
                        p->new_ ? site_stack(sb, b, p->new_, fr, TOOL_MAX_FRAMES)
                                : site_stack(sa, a, p->old, fr, TOOL_MAX_FRAMES));
            fputc('}', f);
        }
        fputs("]}\n", f);
    } else {
        char x[32], y[32], z[40];
        fprintf(f, "tally diff:\n");
        header_line(f, "old", a);
        header_line(f, "new", b);
        signed_size(z, (double)(b->total_live_bytes - a->total_live_bytes));
        fprintf(f, "  live  %s -> %s (%s)\n", fmt_size(x, (double)a->total_live_bytes),
                fmt_size(y, (double)b->total_live_bytes), z);
        signed_size(z, (double)(b->peak_bytes - a->peak_bytes));
        fprintf(f, "  peak  %s -> %s (%s)\n", fmt_size(x, (double)a->peak_bytes),
                fmt_size(y, (double)b->peak_bytes), z);
        static const char *const what[] = {"live", "live bytes", "allocated", "bytes allocated",
                                           "count", "allocations", "peak",
                                           "bytes at the program's peak"};
        const char *desc = o->sort;
        for (int k = 0; k < 8; k += 2)
            if (strcmp(what[k], o->sort) == 0)
                desc = what[k + 1];
        fprintf(f, "\nTop %zu call sites by growth of %s:\n", shown, desc);
        for (size_t i = 0; i < shown; i++) {
            const pair_t *p = &pairs[i];
            bool bytes = strcmp(o->sort, "count") != 0;
            if (bytes)
                signed_size(z, p->delta);
            else
                signed_count(z, p->delta);
            double ov = site_measure(a, p->old, o->sort), nv = site_measure(b, p->new_, o->sort);
            fprintf(f, "\n#%zu %s %s (%s -> %s)%s\n", i + 1, z, desc,
                    bytes ? fmt_size(x, ov) : fmt_count(x, ov),
                    bytes ? fmt_size(y, nv) : fmt_count(y, nv),
                    !p->old ? ", new" : !p->new_ ? ", gone" : "");
            char lb[40], lc[40], ac[40];
            signed_size(lb, site_measure(b, p->new_, "live") - site_measure(a, p->old, "live"));
            signed_count(lc, live_count(b, p->new_) - live_count(a, p->old));
            signed_count(ac, site_measure(b, p->new_, "count") - site_measure(a, p->old, "count"));
            fprintf(f, "   live %s in %s blocks; %s allocations\n", lb, lc, ac);
            int k = p->new_ ? site_stack(sb, b, p->new_, fr, TOOL_MAX_FRAMES)
                            : site_stack(sa, a, p->old, fr, TOOL_MAX_FRAMES);
            for (int j = 0; j < k; j++)
                print_frame(f, "   ", j == 0 ? "at" : "by", &fr[j]);
        }
    }
    free(fr);
    for (size_t i = 0; i < n; i++)
        free(pairs[i].key);
    free(pairs);
    return out_ok(f) ? 0 : 1;
}
