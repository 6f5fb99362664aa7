/* report.c: `tally report` (the summary, the top call sites, the size-class table) and
 * `tally leaks` (the blocks still live at exit, by call site), as text for people or JSON
 * (docs/JSON.md). */
#define _GNU_SOURCE
#include "report.h"
#include "flame.h"

#include "suppress.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

totals_t totals_of(const dump_t *d) {
    totals_t t = {0};
    for (size_t i = 0; i < d->nsites; i++) {
        const dsite_t *s = &d->sites[i];
        t.alloc_count += dump_count(d, s->alloc_count);
        t.alloc_bytes += (double)s->alloc_bytes;
        t.granted_bytes += (double)s->granted_bytes;
        t.free_count += dump_count(d, s->free_count);
        t.free_bytes += (double)s->free_bytes;
        t.temporary += dump_count(d, s->temporary);
        t.live_count += dump_count(d, (uint64_t)(s->live_count > 0 ? s->live_count : 0));
        t.live_bytes += (double)s->live_bytes;
    }
    return t;
}

/* ---- sorting ------------------------------------------------------------------------------ */
bool report_measure_valid(const char *m) {
    return measure_find(m) != NULL;
}

static const dump_t *sort_dump;
static const char *sort_measure;

/* Sampled figures whose interval is wider than themselves say little about their order: the
 * sites they belong to come after the others. */
static int by_measure(const void *a, const void *b) {
    const dsite_t *x = *(const dsite_t *const *)a, *y = *(const dsite_t *const *)b;
    bool rx = site_rankable(sort_dump, x, sort_measure);
    bool ry = site_rankable(sort_dump, y, sort_measure);
    if (rx != ry)
        return rx ? -1 : 1;
    double mx = site_measure(sort_dump, x, sort_measure), my = site_measure(sort_dump, y, sort_measure);
    if (mx != my)
        return mx > my ? -1 : 1;
    if (x->alloc_bytes != y->alloc_bytes)
        return x->alloc_bytes > y->alloc_bytes ? -1 : 1;
    return x->id < y->id ? -1 : x->id > y->id;
}

const dsite_t **sorted_sites(const dump_t *d, const char *measure, size_t *n) {
    const dsite_t **v = malloc((d->nsites ? d->nsites : 1) * sizeof *v);
    if (!v)
        return NULL;
    size_t k = 0;
    for (size_t i = 0; i < d->nsites; i++) /* site 0: memory from before the profiler */
        if (d->sites[i].id != 0 && (d->sites[i].alloc_count || d->sites[i].pinned_bytes))
            v[k++] = &d->sites[i];
    sort_dump = d;
    sort_measure = measure;
    qsort(v, k, sizeof *v, by_measure);
    *n = k;
    return v;
}

/* ---- text ---------------------------------------------------------------------------------- */
void print_header(FILE *f, const dump_t *d, const char *what) {
    char when[64];
    fprintf(f, "%s: %s (pid %llu), %s, dump %s after %.2f s\n", what,
            d->program ? d->program : "?", (unsigned long long)d->pid,
            d->all_mode ? "every allocation recorded" : "sampled", dump_when(d, when),
            (double)d->duration_ns / 1e9);
    if (!d->all_mode) {
        char b[32];
        fprintf(f, "  sample mode: one allocation recorded per %s on average; counts and bytes "
                   "marked ~ are estimates\n",
                fmt_size(b, (double)d->sample_interval));
    }
    char note[512];
    if (unprofiled_note(d, note, sizeof note))
        fprintf(f, "  note: %s\n", note);
}

void print_stack(FILE *f, symbolizer_t *sym, const dump_t *d, const dsite_t *s,
                 const char *indent) {
    sym_frame_t fr[TOOL_MAX_FRAMES];
    int n = site_stack(sym, d, s, fr, TOOL_MAX_FRAMES);
    for (int i = 0; i < n; i++)
        print_frame(f, indent, i == 0 ? "at" : "by", &fr[i]);
    if (n == 0)
        fprintf(f, "%s(no stack: allocated before the profiler started)\n", indent);
}

static void print_classes(FILE *f, const dump_t *d) {
    char b1[32], b2[32], b3[32], b4[32], p[16];
    if (!d->nclasses && !d->have_arena)
        return;
    fprintf(f, "\nSize classes (16-byte classes in 16 KiB pools; arenas are never returned to "
               "the system):\n");
    fprintf(f, "  %6s %6s %9s %9s %8s %12s %10s %10s %6s %10s\n", "class", "pools", "in use",
            "free", "cached", "mallocs", "requested", "granted", "slack", "held");
    for (size_t i = 0; i < d->nclasses; i++) {
        const dclass_t *c = &d->classes[i];
        char m[32];
        fprintf(f, "  %6llu %6llu %9llu %9llu %8llu %12s %10s %10s %6s %10s\n",
                (unsigned long long)c->size, (unsigned long long)c->pools,
                (unsigned long long)c->blocks_in_use, (unsigned long long)c->free_blocks,
                (unsigned long long)c->blocks_cached, fmt_count(m, (double)c->mallocs),
                fmt_size(b1, (double)c->bytes_requested), fmt_size(b2, (double)c->bytes_granted),
                fmt_pct(p, (double)(c->bytes_granted - c->bytes_requested),
                        (double)c->bytes_granted),
                fmt_size(b3, (double)c->bytes_held));
    }
    if (d->have_arena) {
        fprintf(f, "  arena memory %s = in use %s", fmt_size(b1, (double)d->arena_bytes),
                fmt_size(b2, (double)d->in_use_bytes));
        fprintf(f, " + free blocks %s", fmt_size(b3, (double)d->free_block_bytes));
        fprintf(f, " + pool overhead %s", fmt_size(b4, (double)d->pool_overhead_bytes));
        fprintf(f, " + empty pools %s", fmt_size(b1, (double)d->empty_pool_bytes));
        fprintf(f, " + not yet used %s\n", fmt_size(b2, (double)d->never_used_bytes));
        fprintf(f, "  fragmentation: %s of arena memory is not in live blocks\n",
                fmt_pct(p, (double)(d->arena_bytes - d->in_use_bytes), (double)d->arena_bytes));
    }
}

/* The interval of a program-wide figure (allocated, peak, live): the sites' estimates are
 * independent, so their variances add up. */
static interval_t totals_interval(const dump_t *d, const char *m) {
    double est = 0, var = 0;
    for (size_t i = 0; i < d->nsites; i++) {
        const dsite_t *s = &d->sites[i];
        double sd = strcmp(m, "peak") == 0 ? (double)s->sd_peak_bytes
                    : strcmp(m, "live") == 0 ? (double)s->sd_live_bytes
                                             : (double)s->sd_alloc_bytes;
        est += site_measure(d, s, m);
        var += sd * sd;
    }
    if (strcmp(m, "peak") == 0)
        est = (double)d->peak_bytes;
    if (d->all_mode)
        return (interval_t){est, est};
    return estimate_interval(est, sqrt(var), (double)d->sample_interval);
}

/* A bucket's bounds as a person reads them: "[16 B, 32 B)" for sizes, "[4, 8)" allocations for
 * lifetimes (bucket 0: "0 (temporary)"). */
void hist_totals(const dump_t *d, uint64_t *size, uint64_t *life) {
    memset(size, 0, DUMP_NHIST * sizeof *size);
    memset(life, 0, DUMP_NHIST * sizeof *life);
    for (size_t i = 0; i < d->nsites; i++)
        for (int k = 0; k < DUMP_NHIST; k++) {
            size[k] += d->sites[i].size_hist[k];
            life[k] += d->sites[i].life_hist[k];
        }
}

void hist_label(char *out, size_t n, int k, bool life) {
    if (life) {
        if (k == 0)
            snprintf(out, n, "0 (temporary)");
        else if (k == 1)
            snprintf(out, n, "1");
        else
            snprintf(out, n, "[%llu, %llu)", 1ULL << (k - 1), k < 64 ? 1ULL << k : 0ULL);
        return;
    }
    static const char *const unit[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
    int u = k / 10, lo = k % 10, hi = lo + 1;
    if (k == 0) {
        snprintf(out, n, "[0 B, 2 B)");
        return;
    }
    if (hi == 10)
        snprintf(out, n, "[%llu %s, 1 %s)", 1ULL << lo, unit[u], unit[u + 1 < 7 ? u + 1 : 6]);
    else
        snprintf(out, n, "[%llu %s, %llu %s)", 1ULL << lo, unit[u], 1ULL << hi, unit[u]);
}

bool hist_extent(const dump_t *d, const uint64_t *h, int *lo, int *hi, double *max,
                 double *total) {
    *lo = *hi = -1;
    *max = *total = 0;
    for (int k = 0; k < DUMP_NHIST; k++)
        if (h[k]) {
            double v = dump_count(d, h[k]);
            *lo = *lo < 0 ? k : *lo;
            *hi = k;
            *total += v;
            *max = v > *max ? v : *max;
        }
    return *lo >= 0;
}

/* A histogram as a bar chart, from its first non-empty bucket to its last. */
static void print_hist(FILE *f, const dump_t *d, const uint64_t *h, bool life, const char *indent) {
    int lo, hi;
    double total, max;
    if (!hist_extent(d, h, &lo, &hi, &max, &total)) {
        fprintf(f, "%s(none)\n", indent);
        return;
    }
    for (int k = lo; k <= hi; k++) {
        char label[48], c[32], p[16], bar[41];
        double v = dump_count(d, h[k]);
        int w = max > 0 ? (int)(40 * v / max + 0.5) : 0;
        if (v > 0 && w == 0)
            w = 1;
        memset(bar, '#', (size_t)w);
        bar[w] = '\0';
        hist_label(label, sizeof label, k, life);
        fprintf(f, "%s%-24s %-40s %s%s (%s)\n", indent, label, bar, d->all_mode ? "" : "~",
                fmt_count(c, v), fmt_pct(p, v, total));
    }
}

static void print_hists(FILE *f, const dump_t *d, const uint64_t *size, const uint64_t *life,
                        const char *indent) {
    fprintf(f, "%sRequested sizes (allocations):\n", indent);
    char in2[16];
    snprintf(in2, sizeof in2, "%s  ", indent);
    print_hist(f, d, size, false, in2);
    fprintf(f, "%sLifetimes of the freed blocks (allocations made in between):\n", indent);
    print_hist(f, d, life, true, in2);
}

static int report_text(FILE *f, const dump_t *d, symbolizer_t *sym, const char *measure,
                       size_t top, bool hists) {
    totals_t t = totals_of(d);
    const char *est = d->all_mode ? "" : "~";
    char a[32], b[32], c[32], p[16];
    print_header(f, d, "tally report");
    char iv[96], ivp[100];
    /* " (95%: ...)" after an estimate, nothing after an exact figure */
#define PAREN(ivl) (d->all_mode ? "" : (snprintf(ivp, sizeof ivp, " (%s)", ivl), ivp))
    fprintf(f, "  allocations  %s%s, %s%s requested%s, %s%s granted (%s slack)\n", est,
            fmt_count(a, t.alloc_count), est, fmt_size(b, t.alloc_bytes),
            PAREN(fmt_interval(iv, d, totals_interval(d, "allocated"), true)), est,
            fmt_size(c, t.granted_bytes), fmt_pct(p, t.granted_bytes - t.alloc_bytes, t.granted_bytes));
    fprintf(f, "  frees        %s%s, %s%s\n", est, fmt_count(a, t.free_count), est,
            fmt_size(b, t.free_bytes));
    fprintf(f, "  temporary    %s%s (%s of allocations: freed before any other allocation)\n",
            est, fmt_count(a, t.temporary), fmt_pct(p, t.temporary, t.alloc_count));
    fprintf(f, "  peak         %s%s live%s\n", est, fmt_size(a, (double)d->peak_bytes),
            PAREN(fmt_interval(iv, d, totals_interval(d, "peak"), true)));
    fprintf(f, "  live now     %s%s in %s%s blocks%s%s\n", est, fmt_size(a, t.live_bytes), est,
            fmt_count(b, t.live_count),
            PAREN(fmt_interval(iv, d, totals_interval(d, "live"), true)),
            d->has_blocks ? " (candidate leaks: tally leaks)" : "");
#undef PAREN
    size_t n = 0;
    const dsite_t **v = sorted_sites(d, measure, &n);
    if (!v)
        return 1;
    fprintf(f, "  call sites   %s\n", fmt_count(a, (double)n));
    size_t shown = n < top ? n : top;
    const measure_t *mi = measure_find(measure);
    const char *desc = mi ? mi->what : measure;
    fprintf(f, "\nTop %zu call sites by %s (%s):\n", shown, measure, desc);
    double total_measure = 0;
    for (size_t i = 0; i < n; i++)
        total_measure += site_measure(d, v[i], measure);
    for (size_t i = 0; i < shown; i++) {
        const dsite_t *s = v[i];
        char m1[32], m2[32], m3[32], m4[32], m5[32], m6[32], m7[32], q[16];
        double val = site_measure(d, s, measure);
        bool bytes = !mi || mi->bytes;
        const char *sfx = mi ? mi->suffix : measure;
        bool ranked = site_rankable(d, s, measure);
        if (!ranked && (i == 0 || site_rankable(d, v[i - 1], measure)))
            fprintf(f, "\n%s call sites with too few samples to rank by %s (each one's interval "
                       "is wider than its estimate):\n",
                    i == 0 ? "All" : "Then the", measure);
        char rank[32] = "*";
        if (ranked)
            snprintf(rank, sizeof rank, "#%zu", i + 1);
        fprintf(f, "\n%s %s%s %s (%s%s%s)\n", rank, est,
                bytes ? fmt_size(m1, val) : fmt_count(m1, val), sfx,
                fmt_pct(q, val, total_measure), d->all_mode ? "" : "; ",
                fmt_interval(iv, d, site_interval(d, s, measure), bytes));
        double nalloc = dump_count(d, s->alloc_count);
        double nlive = dump_count(d, (uint64_t)(s->live_count > 0 ? s->live_count : 0));
        fprintf(f, "   %s%s allocation%s of %s%s; %s%s at the peak, at most %s%s live; %s%s live "
                   "now in %s%s block%s; %s%s temporary\n",
                est, fmt_count(m1, nalloc), nalloc == 1 ? "" : "s", est,
                fmt_size(m2, (double)s->alloc_bytes), est, fmt_size(m3, (double)s->peak_live_bytes),
                est, fmt_size(m4, (double)s->max_live_bytes), est,
                fmt_size(m5, (double)s->live_bytes), est, fmt_count(m6, nlive),
                nlive == 1 ? "" : "s", est, fmt_count(m7, dump_count(d, s->temporary)));
        print_stack(f, sym, d, s, "   ");
        if (hists)
            print_hists(f, d, s->size_hist, s->life_hist, "   ");
    }
    free(v);
    uint64_t size[DUMP_NHIST], life[DUMP_NHIST];
    hist_totals(d, size, life);
    fputs("\nEvery call site:\n", f);
    print_hists(f, d, size, life, "  ");
    print_classes(f, d);
    return 0;
}

/* ---- JSON ---------------------------------------------------------------------------------- */
void json_num(FILE *f, const char *key, double v, bool *first) {
    json_key(f, key, first);
    fprintf(f, "%.0f", v);
}

void json_dump_info(FILE *f, const dump_t *d, bool *first) {
    json_key(f, "dump", first);
    bool fi = true;
    fputc('{', f);
    json_key(f, "program", &fi);
    json_str(f, d->program);
    json_num(f, "pid", (double)d->pid, &fi);
    json_key(f, "mode", &fi);
    json_str(f, d->mode);
    json_key(f, "estimates", &fi);
    fputs(d->all_mode ? "false" : "true", f);
    json_num(f, "sample_interval", (double)d->sample_interval, &fi);
    json_key(f, "reason", &fi);
    json_str(f, d->reason);
    if (d->fatal_signal) {
        json_key(f, "fatal_signal", &fi);
        fprintf(f, "%llu", (unsigned long long)d->fatal_signal);
    }
    json_num(f, "duration_ns", (double)d->duration_ns, &fi);
    if (d->max_rss_bytes)
        json_num(f, "max_rss_bytes", (double)d->max_rss_bytes, &fi);
    if (d->meta_resident_bytes)
        json_num(f, "meta_resident_bytes", (double)d->meta_resident_bytes, &fi);
    if (d->python) {
        json_key(f, "python", &fi);
        json_str(f, d->python);
        json_key(f, "python_frames", &fi);
        fputs(d->python_frames ? "true" : "false", f);
        if (d->python_stopped)
            json_num(f, "python_stopped", (double)d->python_stopped, &fi);
    }
    char note[512];
    if (unprofiled_note(d, note, sizeof note)) {
        json_key(f, "note", &fi);
        json_str(f, note);
    }
    fputc('}', f);
}

static void json_site(FILE *f, symbolizer_t *sym, const dump_t *d, const dsite_t *s,
                      bool ranked) {
    bool fi = true;
    fputc('{', f);
    json_num(f, "id", s->id, &fi);
    json_key(f, "ranked", &fi); /* false: its sort figure's interval is wider than the figure */
    fputs(ranked ? "true" : "false", f);
    json_num(f, "alloc_count", dump_count(d, s->alloc_count), &fi);
    json_num(f, "alloc_bytes", (double)s->alloc_bytes, &fi);
    json_num(f, "granted_bytes", (double)s->granted_bytes, &fi);
    json_num(f, "free_count", dump_count(d, s->free_count), &fi);
    json_num(f, "free_bytes", (double)s->free_bytes, &fi);
    json_num(f, "live_count", dump_count(d, (uint64_t)(s->live_count > 0 ? s->live_count : 0)),
             &fi);
    json_num(f, "live_bytes", (double)s->live_bytes, &fi);
    json_num(f, "peak_bytes", (double)s->peak_live_bytes, &fi);
    json_num(f, "max_live_bytes", (double)s->max_live_bytes, &fi);
    json_num(f, "temporary", dump_count(d, s->temporary), &fi);
    json_num(f, "pinned_bytes", (double)s->pinned_bytes, &fi);
    json_num(f, "samples", (double)s->samples, &fi);
    if (!d->all_mode) { /* the 95% intervals of the estimates */
        static const char *const m[] = {"count", "allocated", "live", "peak", "temporary"};
        static const char *const key[] = {"alloc_count", "alloc_bytes", "live_bytes", "peak_bytes",
                                          "temporary"};
        json_key(f, "intervals", &fi);
        bool jf = true;
        fputc('{', f);
        for (int k = 0; k < 5; k++) {
            interval_t iv = site_interval(d, s, m[k]);
            json_key(f, key[k], &jf);
            fprintf(f, "[%.0f,%.0f]", iv.lo, iv.hi);
        }
        fputc('}', f);
    }
    for (int h = 0; h < 2; h++) {
        json_key(f, h ? "lifetime_histogram" : "size_histogram", &fi);
        const uint64_t *hist = h ? s->life_hist : s->size_hist;
        bool hf = true;
        fputc('{', f);
        for (int b = 0; b < DUMP_NHIST; b++)
            if (hist[b]) {
                char k[8];
                snprintf(k, sizeof k, "%d", b);
                json_num(f, k, dump_count(d, hist[b]), &hf);
            }
        fputc('}', f);
    }
    json_key(f, "frames", &fi);
    sym_frame_t fr[TOOL_MAX_FRAMES];
    json_frames(f, fr, site_stack(sym, d, s, fr, TOOL_MAX_FRAMES));
    fputc('}', f);
}

static void json_leaks(FILE *f, symbolizer_t *sym, const dump_t *d, unsigned kinds, bool *first);

static int report_json(FILE *f, const dump_t *d, symbolizer_t *sym, const char *measure,
                       size_t top) {
    totals_t t = totals_of(d);
    bool first = true;
    fputc('{', f);
    json_num(f, "tally_json", 1, &first);
    json_key(f, "command", &first);
    json_str(f, "report");
    json_dump_info(f, d, &first);
    json_key(f, "totals", &first);
    bool fi = true;
    fputc('{', f);
    json_num(f, "alloc_count", t.alloc_count, &fi);
    json_num(f, "alloc_bytes", t.alloc_bytes, &fi);
    json_num(f, "granted_bytes", t.granted_bytes, &fi);
    json_num(f, "free_count", t.free_count, &fi);
    json_num(f, "free_bytes", t.free_bytes, &fi);
    json_num(f, "temporary", t.temporary, &fi);
    json_num(f, "peak_bytes", (double)d->peak_bytes, &fi);
    json_num(f, "live_count", t.live_count, &fi);
    json_num(f, "live_bytes", t.live_bytes, &fi);
    size_t n = 0;
    const dsite_t **v = sorted_sites(d, measure, &n);
    if (!v)
        return 1;
    json_num(f, "sites", (double)n, &fi);
    if (!d->all_mode) {
        static const char *const m[] = {"allocated", "peak", "live"};
        static const char *const key[] = {"alloc_bytes", "peak_bytes", "live_bytes"};
        json_key(f, "intervals", &fi);
        bool jf = true;
        fputc('{', f);
        for (int k = 0; k < 3; k++) {
            interval_t iv = totals_interval(d, m[k]);
            json_key(f, key[k], &jf);
            fprintf(f, "[%.0f,%.0f]", iv.lo, iv.hi);
        }
        fputc('}', f);
    }
    fputc('}', f);
    json_key(f, "sort", &first);
    json_str(f, measure);
    json_key(f, "sites", &first);
    fputc('[', f);
    for (size_t i = 0; i < n && i < top; i++) {
        if (i)
            fputc(',', f);
        json_site(f, sym, d, v[i], site_rankable(d, v[i], measure));
    }
    fputc(']', f);
    free(v);
    json_key(f, "classes", &first);
    fputc('[', f);
    for (size_t i = 0; i < d->nclasses; i++) {
        const dclass_t *c = &d->classes[i];
        bool cf = true;
        fputs(i ? ",{" : "{", f);
        json_num(f, "size", (double)c->size, &cf);
        json_num(f, "pools", (double)c->pools, &cf);
        json_num(f, "blocks_in_use", (double)c->blocks_in_use, &cf);
        json_num(f, "free_blocks", (double)c->free_blocks, &cf);
        json_num(f, "blocks_cached", (double)c->blocks_cached, &cf);
        json_num(f, "mallocs", (double)c->mallocs, &cf);
        json_num(f, "bytes_requested", (double)c->bytes_requested, &cf);
        json_num(f, "bytes_granted", (double)c->bytes_granted, &cf);
        json_num(f, "bytes_held", (double)c->bytes_held, &cf);
        fputc('}', f);
    }
    fputc(']', f);
    if (d->have_arena) {
        json_key(f, "arena", &first);
        bool af = true;
        fputc('{', f);
        json_num(f, "arenas", (double)d->arenas, &af);
        json_num(f, "arena_bytes", (double)d->arena_bytes, &af);
        json_num(f, "in_use_bytes", (double)d->in_use_bytes, &af);
        json_num(f, "free_block_bytes", (double)d->free_block_bytes, &af);
        json_num(f, "pool_overhead_bytes", (double)d->pool_overhead_bytes, &af);
        json_num(f, "empty_pool_bytes", (double)d->empty_pool_bytes, &af);
        json_num(f, "never_used_bytes", (double)d->never_used_bytes, &af);
        fputc('}', f);
    }
    json_leaks(f, sym, d, LEAKS_DEFAULT_KINDS, &first);
    fputs("}\n", f);
    return 0;
}

int cmd_report(const dump_t *d, symbolizer_t *sym, const report_opts_t *o) {
    FILE *f = stdout;
    const measure_t *mi = measure_find(o->sort);
    const char *missing = mi ? measure_missing(d, mi) : NULL;
    if (missing) {
        tool_error("%s: --sort %s %s", d->path_shown, o->sort, missing);
        return 2;
    }
    if (o->tree || o->focus) {
        print_header(f, d, "tally report");
        tree_opts_t t = {.measure = o->sort,
                         .bottom_up = o->tree && strcmp(o->tree, "bottom-up") == 0,
                         .depth = o->tree_depth ? o->tree_depth : 12,
                         .threshold = o->threshold, .focus = o->focus};
        int r = 0;
        if (o->focus && !o->tree) { /* both sides of it */
            t.bottom_up = true;
            r = tree_write(f, d, sym, &t);
            t.bottom_up = false;
        }
        if (r == 0)
            r = tree_write(f, d, sym, &t);
        return out_ok(f) ? r : 1;
    }
    int r = o->json ? report_json(f, d, sym, o->sort, o->top)
                    : report_text(f, d, sym, o->sort, o->top, o->histograms);
    return out_ok(f) ? r : 1;
}

/* ---- leaks: memcheck's loss records -------------------------------------------------------------
 * With a leak check in the dump, a loss record is one (call site, kind) pair, as memcheck's is one
 * (allocation stack, kind) pair, and they are sorted as memcheck sorts them: by bytes (a
 * definitely lost record counting the indirectly lost bytes it leads to), then reachable,
 * possible, indirect, definite, then by blocks. Without one, a record is a site's live blocks. */
static unsigned kind_rank(unsigned k) { /* memcheck's Reachable < Possible < Indirect < Definite */
    static const unsigned rank[DKIND_N + 1] = {3, 2, 1, 0, 4};
    return rank[k];
}

static int by_loss(const void *a, const void *b) {
    const loss_t *x = a, *y = b;
    uint64_t tx = x->bytes + x->held, ty = y->bytes + y->held;
    if (tx != ty)
        return tx < ty ? -1 : 1;
    if (kind_rank(x->kind) != kind_rank(y->kind))
        return kind_rank(x->kind) < kind_rank(y->kind) ? -1 : 1;
    if (x->blocks != y->blocks)
        return x->blocks < y->blocks ? -1 : 1;
    return x->site->id < y->site->id ? -1 : x->site->id > y->site->id;
}

loss_t *loss_records(const dump_t *d, size_t *n) {
    size_t per = d->leak_check ? DKIND_N : 1, k = 0;
    loss_t *v = malloc((d->nsites ? d->nsites : 1) * per * sizeof *v);
    for (size_t i = 0; v && i < d->nsites; i++) {
        const dsite_t *st = &d->sites[i];
        if (!d->leak_check) {
            if (st->leak_blocks && st->id != 0)
                v[k++] = (loss_t){st, DKIND_N, st->leak_blocks, st->leak_bytes, 0, false};
            continue;
        }
        for (unsigned kd = 0; kd < DKIND_N; kd++)
            if (st->kind_blocks[kd])
                v[k++] = (loss_t){st, kd, st->kind_blocks[kd], st->kind_bytes[kd],
                                  kd == DKIND_DEFINITE ? st->held_bytes : 0, false};
    }
    if (v)
        qsort(v, k, sizeof *v, by_loss);
    *n = k;
    return v;
}

static bool shown(const loss_t *l, unsigned kinds) {
    return !l->suppressed && (l->kind == DKIND_N || (kinds >> l->kind & 1));
}

/* What the LEAK SUMMARY counts: the kinds less what suppressions took, and what they took. */
typedef struct leak_totals_s {
    uint64_t blocks[DKIND_N], bytes[DKIND_N];
    uint64_t sup_blocks, sup_bytes;
} leak_totals_t;

/* Marks the records a suppression matches (each with every frame of its stack, as memcheck
 * matches them); false with one line on stderr if the file cannot be read. */
static bool apply_suppressions(const dump_t *d, symbolizer_t *sym, const char *path, loss_t *v,
                               size_t n, leak_totals_t *t) {
    for (unsigned k = 0; k < DKIND_N; k++) {
        t->blocks[k] = d->kind_blocks[k];
        t->bytes[k] = d->kind_bytes[k];
    }
    if (!path)
        return true;
    supps_t s;
    char err[512];
    if (!supp_load(path, &s, err, sizeof err)) {
        tool_error("%s", err);
        return false;
    }
    sym_want_aliases(sym); /* before any frame is symbolized: frames are cached */
    for (size_t i = 0; i < n; i++) {
        sym_frame_t fr[TOOL_MAX_FRAMES];
        int nf = site_stack_all(sym, d, v[i].site, fr, TOOL_MAX_FRAMES);
        supp_t *sp = supp_match(&s, fr, nf, v[i].kind);
        if (!sp)
            continue;
        v[i].suppressed = true;
        sp->records++;
        sp->blocks += v[i].blocks;
        sp->bytes += v[i].bytes;
        t->sup_blocks += v[i].blocks; /* memcheck: the direct bytes go to "suppressed" */
        t->sup_bytes += v[i].bytes;
        if (v[i].kind < DKIND_N) {
            t->blocks[v[i].kind] -= v[i].blocks;
            t->bytes[v[i].kind] -= v[i].bytes;
        }
    }
    supp_free(&s);
    return true;
}

static void json_kind_totals(FILE *f, const char *key, const uint64_t *blocks,
                             const uint64_t *bytes, const char *const *names, unsigned from,
                             unsigned n, bool *first) {
    json_key(f, key, first);
    bool fk = true;
    fputc('{', f);
    for (unsigned k = from; k < n; k++) {
        json_key(f, names[k], &fk);
        bool fi = true;
        fputc('{', f);
        json_num(f, "blocks", (double)blocks[k], &fi);
        json_num(f, "bytes", (double)bytes[k], &fi);
        fputc('}', f);
    }
    fputc('}', f);
}

static void json_leak_records(FILE *f, symbolizer_t *sym, const dump_t *d, const loss_t *v,
                              size_t n, unsigned kinds, bool *first) {
    json_key(f, "leaks", first);
    if (!v) {
        fputs("null", f); /* not an all-mode exit dump: no list of live blocks */
        return;
    }
    fputc('[', f);
    bool fl = true;
    for (size_t i = 0; i < n; i++) {
        if (!shown(&v[i], kinds))
            continue;
        bool fi = true;
        fputs(fl ? "{" : ",{", f);
        fl = false;
        json_num(f, "record", (double)(i + 1), &fi);
        json_key(f, "kind", &fi);
        json_str(f, v[i].kind == DKIND_N ? NULL : dkind_names[v[i].kind]);
        json_num(f, "site", v[i].site->id, &fi);
        json_num(f, "count", (double)v[i].blocks, &fi);
        json_num(f, "bytes", (double)v[i].bytes, &fi);
        json_num(f, "indirect_bytes", (double)v[i].held, &fi);
        json_key(f, "frames", &fi);
        sym_frame_t fr[TOOL_MAX_FRAMES];
        json_frames(f, fr, site_stack(sym, d, v[i].site, fr, TOOL_MAX_FRAMES));
        fputc('}', f);
    }
    fputc(']', f);
}

static void json_leaks(FILE *f, symbolizer_t *sym, const dump_t *d, unsigned kinds, bool *first) {
    size_t n = 0;
    loss_t *v = d->has_blocks ? loss_records(d, &n) : NULL;
    json_leak_records(f, sym, d, v, n, kinds, first);
    free(v);
}

static void summary_line(FILE *f, const char *label, uint64_t bytes, uint64_t blocks) {
    char a[32], b[32];
    fprintf(f, "%s%s bytes in %s blocks\n", label, fmt_count(a, (double)bytes),
            fmt_count(b, (double)blocks));
}

/* memcheck's LEAK SUMMARY, line for line. */
static void print_leak_summary(FILE *f, const dump_t *d, const leak_totals_t *t) {
    fprintf(f, "\nLEAK SUMMARY:\n");
    summary_line(f, "   definitely lost: ", t->bytes[DKIND_DEFINITE], t->blocks[DKIND_DEFINITE]);
    summary_line(f, "   indirectly lost: ", t->bytes[DKIND_INDIRECT], t->blocks[DKIND_INDIRECT]);
    summary_line(f, "     possibly lost: ", t->bytes[DKIND_POSSIBLE], t->blocks[DKIND_POSSIBLE]);
    summary_line(f, "   still reachable: ", t->bytes[DKIND_REACHABLE], t->blocks[DKIND_REACHABLE]);
    bool any = false;
    for (unsigned h = 1; h < DHEUR_N; h++)
        any |= d->heur_blocks[h] != 0;
    if (any) {
        fprintf(f, "                      of which reachable via heuristic:\n");
        for (unsigned h = 1; h < DHEUR_N; h++)
            if (d->heur_blocks[h]) {
                char label[64];
                snprintf(label, sizeof label, "                        %-19s: ", dheur_names[h]);
                summary_line(f, label, d->heur_bytes[h], d->heur_blocks[h]);
            }
    }
    summary_line(f, "        suppressed: ", t->sup_bytes, t->sup_blocks);
}

int cmd_leaks(const dump_t *d, symbolizer_t *sym, const leaks_opts_t *o) {
    FILE *f = o->out ? o->out : stdout;
    if (!d->has_blocks) {
        tool_error("%s: no list of live blocks: it is a %s dump%s (run the program with "
                   "`tally run --leaks`, or TALLY_LEAKS=1)",
                   d->path_shown, d->all_mode ? "all-mode" : "sample-mode",
                   d->all_mode ? " written before exit" : "");
        return 2;
    }
    unsigned kinds = o->kinds ? o->kinds : LEAKS_DEFAULT_KINDS;
    size_t n = 0;
    loss_t *v = loss_records(d, &n);
    if (!v)
        return 1;
    leak_totals_t lt = {0};
    if (!apply_suppressions(d, sym, o->suppressions, v, n, &lt)) {
        free(v);
        return 2;
    }
    uint64_t blocks = 0, bytes = 0, sites = 0, hit = 0;
    for (size_t i = 0; i < n; i++)
        if (shown(&v[i], kinds)) {
            blocks += v[i].blocks;
            bytes += v[i].bytes;
            sites++;
        }
    hit = blocks;
    if (o->json) {
        bool first = true;
        fputc('{', f);
        json_num(f, "tally_json", 1, &first);
        json_key(f, "command", &first);
        json_str(f, "leaks");
        json_dump_info(f, d, &first);
        json_key(f, "summary", &first);
        bool fi = true;
        fputc('{', f);
        json_num(f, "blocks", (double)blocks, &fi);
        json_num(f, "bytes", (double)bytes, &fi);
        json_num(f, "records", (double)sites, &fi);
        json_key(f, "classified", &fi);
        fputs(d->leak_check ? "true" : "false", f);
        if (d->leak_check) {
            json_key(f, "approximate", &fi);
            fputs(d->leak_approx ? "true" : "false", f);
            json_kind_totals(f, "kinds", lt.blocks, lt.bytes, dkind_names, 0, DKIND_N, &fi);
            json_kind_totals(f, "reachable_via_heuristic", d->heur_blocks, d->heur_bytes,
                             dheur_names, 1, DHEUR_N, &fi);
        }
        json_key(f, "suppressed", &fi);
        fprintf(f, "{\"blocks\":%llu,\"bytes\":%llu}", (unsigned long long)lt.sup_blocks,
                (unsigned long long)lt.sup_bytes);
        fputc('}', f);
        json_leak_records(f, sym, d, v, n, kinds, &first);
        fputs("}\n", f);
    } else if (d->leak_check) {
        print_header(f, d, "tally leaks");
        if (d->leak_approx && d->leak_unstopped)
            fprintf(f, "  approximate: %llu thread%s kept running during the scan (they block "
                       "signals or did not answer)\n",
                    (unsigned long long)d->leak_unstopped, d->leak_unstopped == 1 ? "" : "s");
        if (d->leak_foreign_large)
            fputs("  approximate: the blocks above 512 bytes were another allocator's, whose own "
                  "records of them look like pointers and can make leaks reachable "
                  "(TALLY_LARGE=glibc gives memcheck's kinds)\n", f);
        for (size_t i = 0; i < n; i++) {
            if (!shown(&v[i], kinds))
                continue;
            char a[32], b[32], c[32], e[32], g[32], h[32];
            if (v[i].held)
                fprintf(f, "\n%s (%s direct, %s indirect) bytes in %s blocks are definitely lost "
                           "in loss record %s of %s\n",
                        fmt_count(a, (double)(v[i].bytes + v[i].held)),
                        fmt_count(b, (double)v[i].bytes), fmt_count(c, (double)v[i].held),
                        fmt_count(e, (double)v[i].blocks), fmt_count(g, (double)(i + 1)),
                        fmt_count(h, (double)n));
            else
                fprintf(f, "\n%s bytes in %s blocks are %s in loss record %s of %s\n",
                        fmt_count(a, (double)v[i].bytes), fmt_count(b, (double)v[i].blocks),
                        leak_kind_text[v[i].kind], fmt_count(c, (double)(i + 1)),
                        fmt_count(e, (double)n));
            print_stack(f, sym, d, v[i].site, "   ");
        }
        uint64_t live = 0;
        for (unsigned k = 0; k < DKIND_N; k++)
            live += d->kind_blocks[k];
        if (live == 0)
            fprintf(f, "\nAll heap blocks were freed -- no leaks are possible\n");
        else
            print_leak_summary(f, d, &lt);
        if (!(kinds >> DKIND_REACHABLE & 1) && d->kind_blocks[DKIND_REACHABLE])
            fprintf(f, "Reachable blocks (those to which a pointer was found) are not shown.\n"
                       "To see them, add: --kinds all\n");
    } else {
        char a[32], b[32], c[32];
        print_header(f, d, "tally leaks");
        fprintf(f, "  no leak check in this dump (TALLY_LEAKS was not set): every block still "
                   "live at exit is listed\n");
        for (size_t i = 0; i < n; i++) {
            if (v[i].suppressed)
                continue;
            fprintf(f, "\n%s bytes in %s block%s still live at exit, from call site %zu of %zu:\n",
                    fmt_count(a, (double)v[i].bytes), fmt_count(b, (double)v[i].blocks),
                    v[i].blocks == 1 ? "" : "s", i + 1, n);
            print_stack(f, sym, d, v[i].site, "   ");
        }
        fprintf(f, "\nLEAK SUMMARY: %s bytes in %s blocks still live at exit, from %s call "
                   "sites\n",
                fmt_count(a, (double)bytes), fmt_count(b, (double)blocks), fmt_count(c, (double)n));
    }
    free(v);
    if (!out_ok(f))
        return 1;
    return hit && o->error_exitcode ? o->error_exitcode : 0;
}

const char *const leak_kind_text[DKIND_N] = {"definitely lost", "indirectly lost", "possibly lost",
                                             "still reachable"};

bool leak_kinds_parse(const char *s, unsigned *out) {
    unsigned bits = 0;
    while (*s) {
        size_t n = strcspn(s, ",");
        bool ok = false;
        if (n == 3 && strncmp(s, "all", 3) == 0) {
            bits |= (1u << DKIND_N) - 1;
            ok = true;
        }
        for (unsigned k = 0; k < DKIND_N && !ok; k++)
            if (strlen(dkind_names[k]) == n && strncmp(s, dkind_names[k], n) == 0) {
                bits |= 1u << k;
                ok = true;
            }
        if (!ok)
            return false;
        s += n;
        if (*s == ',' && *++s == '\0')
            return false;
    }
    *out = bits;
    return bits != 0;
}
