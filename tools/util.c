/* util.c: formatting, JSON, and stacks as tally shows them (util.h). */
#define _GNU_SOURCE
#include "util.h"
#include "pyview.h"

#include <errno.h>
#include <fnmatch.h>
#include <stdlib.h>
#include <math.h>

#include <stdarg.h>
#include <string.h>

const char *tool_name = "tally";

/* One line on stderr, escaped (text_escape): an error names files and quotes dumps that may
 * hold terminal controls or line breaks. */
void tool_error(const char *fmt, ...) {
    char raw[2048], shown[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(raw, sizeof raw, fmt, ap);
    va_end(ap);
    text_escape(shown, sizeof shown, raw);
    fprintf(stderr, "%s: %s\n", tool_name, shown);
}

int out_errno;

bool out_ok(FILE *f) {
    errno = 0;
    if (fflush(f) == 0 && !ferror(f))
        return true;
    if (!out_errno)
        out_errno = errno ? errno : EIO; /* the stream failed earlier: its errno is gone */
    return false;
}

/* "at exit", "when SIGTERM ended it", or the reason as the dump says it */
const char *dump_when(const dump_t *d, char buf[64]) {
    if (!d->reason)
        return "?";
    if (strcmp(d->reason, "exit") == 0)
        return "at exit";
    if (strcmp(d->reason, "fatal") == 0) {
        const char *abbrev = d->fatal_signal > 0 && d->fatal_signal < 65
                                 ? sigabbrev_np((int)d->fatal_signal)
                                 : NULL;
        if (abbrev)
            snprintf(buf, 64, "when SIG%s ended it", abbrev);
        else
            snprintf(buf, 64, "when signal %llu ended it", (unsigned long long)d->fatal_signal);
        return buf;
    }
    return d->reason;
}

const measure_t tool_measures[] = {
    {"peak", "bytes live at the program-wide peak", "at the peak", true, 0},
    {"live", "bytes live now", "live now", true, 0},
    {"allocated", "bytes allocated", "allocated", true, 0},
    {"count", "number of allocations", "allocations", false, 0},
    {"temporary", "temporary allocations", "temporary allocations", false, 0},
    {"pinned", "the pool and block memory its live blocks keep", "pinned", true, 0},
    {"slack", "size-class slack, bytes granted beyond the requests", "slack", true, 0},
    {"leaked", "bytes still live at exit, lost ones with the leak check", "leaked", true,
     MEASURE_BLOCKS},
    {"definite", "bytes definitely lost", "definitely lost", true, MEASURE_KINDS},
    {"indirect", "bytes indirectly lost", "indirectly lost", true, MEASURE_KINDS},
    {"possible", "bytes possibly lost", "possibly lost", true, MEASURE_KINDS},
    {"reachable", "bytes still reachable at exit", "still reachable", true, MEASURE_KINDS},
    {NULL, NULL, NULL, false, 0},
};

const measure_t *measure_find(const char *name) {
    for (const measure_t *m = tool_measures; name && m->name; m++)
        if (strcmp(m->name, name) == 0)
            return m;
    return NULL;
}

const char *measure_names(void) {
    return "peak, live, allocated, count, temporary, pinned, slack, leaked, definite, "
           "indirect, possible or reachable";
}

const char *measure_missing(const dump_t *d, const measure_t *m) {
    if ((m->needs & MEASURE_KINDS) && !d->leak_check)
        return "needs a dump with the leak check's kinds (`tally run --leaks`)";
    if ((m->needs & MEASURE_BLOCKS) && !d->has_blocks)
        return "needs a dump of every allocation written at exit (`tally run --leaks`)";
    return NULL;
}

double site_measure(const dump_t *d, const dsite_t *s, const char *m) {
    if (!s)
        return 0;
    if (strcmp(m, "peak") == 0)
        return (double)s->peak_live_bytes;
    if (strcmp(m, "live") == 0)
        return (double)s->live_bytes;
    if (strcmp(m, "allocated") == 0)
        return (double)s->alloc_bytes;
    if (strcmp(m, "count") == 0)
        return dump_count(d, s->alloc_count);
    if (strcmp(m, "temporary") == 0)
        return dump_count(d, s->temporary);
    if (strcmp(m, "pinned") == 0)
        return (double)s->pinned_bytes;
    if (strcmp(m, "slack") == 0)
        return s->granted_bytes > s->alloc_bytes ? (double)(s->granted_bytes - s->alloc_bytes) : 0;
    if (strcmp(m, "definite") == 0)
        return (double)s->kind_bytes[DKIND_DEFINITE];
    if (strcmp(m, "indirect") == 0)
        return (double)s->kind_bytes[DKIND_INDIRECT];
    if (strcmp(m, "possible") == 0)
        return (double)s->kind_bytes[DKIND_POSSIBLE];
    if (strcmp(m, "reachable") == 0)
        return (double)s->kind_bytes[DKIND_REACHABLE];
    return (double)s->leak_bytes;
}

/* The p-quantile of a chi-squared distribution with nu degrees of freedom (nu > 0), by
 * Wilson and Hilferty's cube-root normal approximation (z: the normal quantile of p). */
static double chi2_quantile(double z, double nu) {
    double c = 2.0 / (9.0 * nu), t = 1.0 - c + z * sqrt(c);
    return t > 0 ? nu * t * t * t : 0;
}

#define Z975 1.959963985

interval_t estimate_interval(double est, double sd, double unit) {
    if (est < 0)
        est = 0;
    if (sd <= 0 && est > 0)
        return (interval_t){est, est}; /* every block sampled for sure: exact */
    double k = est > 0 ? est * est / (sd * sd) : 0, m = est > 0 ? sd * sd / est : unit;
    double lo = k > 0 ? chi2_quantile(-Z975, 2 * k) / 2 : 0;
    double hi = chi2_quantile(Z975, 2 * k + 2) / 2;
    return (interval_t){m * lo, m * hi};
}

interval_t site_interval(const dump_t *d, const dsite_t *s, const char *m) {
    double v = site_measure(d, s, m);
    if (d->all_mode || !s)
        return (interval_t){v, v};
    double scale = d->count_scale ? (double)d->count_scale : 1, r = (double)d->sample_interval;
    double n = dump_count(d, s->alloc_count);
    double mean = n > 0 && s->alloc_bytes > n ? (double)s->alloc_bytes / n : 1; /* bytes */
    if (strcmp(m, "peak") == 0)
        return estimate_interval(v, (double)s->sd_peak_bytes, r);
    if (strcmp(m, "live") == 0)
        return estimate_interval(v, (double)s->sd_live_bytes, r);
    if (strcmp(m, "allocated") == 0)
        return estimate_interval(v, (double)s->sd_alloc_bytes, r);
    if (strcmp(m, "count") == 0)
        return estimate_interval(v, (double)s->sd_alloc_count / scale, r / mean);
    if (strcmp(m, "temporary") == 0)
        return estimate_interval(v, (double)s->sd_temporary / scale, r / mean);
    return (interval_t){v, v};
}

bool site_rankable(const dump_t *d, const dsite_t *s, const char *m) {
    if (d->all_mode)
        return true;
    interval_t iv = site_interval(d, s, m);
    return iv.hi - iv.lo <= site_measure(d, s, m);
}

const char *fmt_interval(char buf[96], const dump_t *d, interval_t iv, bool bytes) {
    char a[32], b[32];
    if (d->all_mode)
        buf[0] = '\0';
    else if (iv.lo <= 0)
        snprintf(buf, 96, "95%%: up to %s", bytes ? fmt_size(b, iv.hi) : fmt_count(b, iv.hi));
    else
        snprintf(buf, 96, "95%%: %s to %s", bytes ? fmt_size(a, iv.lo) : fmt_count(a, iv.lo),
                 bytes ? fmt_size(b, iv.hi) : fmt_count(b, iv.hi));
    return buf;
}

bool dump_is_python(const dump_t *d) {
    for (size_t i = 0; i < d->nmodules; i++) {
        const char *b = sym_basename(d->modules[i].path);
        if (b && (strncmp(b, "python", 6) == 0 || strncmp(b, "libpython", 9) == 0))
            return true;
    }
    return false;
}

/* RSS far above the profiled peak: more than twice the peak and 64 MiB more than it (a program's
 * own code, libraries and stacks are in RSS too, and are not allocations). */
bool unprofiled_note(const dump_t *d, char *buf, size_t n) {
    double rss = (double)d->max_rss_bytes, peak = d->peak_bytes > 0 ? (double)d->peak_bytes : 0;
    double own = (double)d->meta_resident_bytes; /* the profiler's own tables */
    if (rss <= 2 * peak || rss - peak <= (double)(64 << 20))
        return false;
    char r[32], p[32], o[32];
    if (rss - peak - own <= (double)(64 << 20) || rss - own <= 2 * peak) {
        /* the gap is the library's own memory, not the program's: say so, rather than blame
         * the program */
        snprintf(buf, n,
                 "the process's RSS reached %s, the profiled peak is %s%s: %s of the difference "
                 "is the profiler's own tables (%s), not the program's memory",
                 fmt_size(r, rss), d->all_mode ? "" : "~", fmt_size(p, peak), fmt_size(o, own),
                 d->all_mode ? "every live block's record and every call site's stack"
                             : "its call sites and their stacks");
        return true;
    }
    bool py = dump_is_python(d);
    char mine[96] = "";
    if (own >= (double)(16 << 20))
        snprintf(mine, sizeof mine, "; %s of it is the profiler's own tables", fmt_size(o, own));
    snprintf(buf, n,
             "the process's RSS reached %s but the profiled peak is %s%s: the rest did not come "
             "from malloc (%s)%s",
             fmt_size(r, rss), d->all_mode ? "" : "~", fmt_size(p, peak),
             py ? "Python's own allocator, pymalloc, takes memory with mmap: run with "
                  "PYTHONMALLOC=malloc, as `tally run` does unless PYTHONMALLOC is set"
                : "mapped files, the program's own mmap, or an allocator of its own",
             mine);
    return true;
}

bool view_native;
int view_by = PYGROUP_STACK;

bool view_by_parse(const char *s) {
    static const char *const names[] = {"stack", "line", "function"};
    for (int i = 0; i < 3; i++)
        if (strcmp(s, names[i]) == 0) {
            view_by = i;
            return true;
        }
    return false;
}

int view_apply(dump_t *d) {
    char err[512];
    if (d->npycodes && (!view_native || view_by != PYGROUP_STACK) &&
        !dump_python_view(d, (enum py_group)view_by, err, sizeof err)) {
        tool_error("%s", err);
        dump_free(d);
        return 1;
    }
    return 0;
}

int load_or_complain(const char *path, dump_t *d) {
    char err[512];
    if (!dump_load(path, d, err, sizeof err)) {
        tool_error("%s", err);
        return 2;
    }
    if (view_by != PYGROUP_STACK && !d->npycodes) {
        tool_error("%s: --by %s: the dump has no Python frames", d->path_shown ? d->path_shown : path,
                   view_by == PYGROUP_LINE ? "line" : "function");
        dump_free(d);
        return 2;
    }
    return view_apply(d);
}

const char *fmt_count(char buf[32], double v) {
    char tmp[32];
    bool neg = v < 0;
    unsigned long long u = (unsigned long long)((neg ? -v : v) + 0.5);
    int n = snprintf(tmp, sizeof tmp, "%llu", u);
    char *o = buf;
    if (neg)
        *o++ = '-';
    for (int i = 0; i < n; i++) {
        *o++ = tmp[i];
        if ((n - i - 1) % 3 == 0 && i != n - 1)
            *o++ = ',';
    }
    *o = '\0';
    return buf;
}

const char *fmt_size(char buf[32], double bytes) {
    static const char *const unit[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    bool neg = bytes < 0;
    double v = neg ? -bytes : bytes;
    unsigned u = 0;
    while (v >= 1024 && u < 4) {
        v /= 1024;
        u++;
    }
    if (u == 0)
        snprintf(buf, 32, "%s%.0f B", neg ? "-" : "", v);
    else
        snprintf(buf, 32, "%s%.*f %s", neg ? "-" : "", v < 10 ? 2 : v < 100 ? 1 : 0, v, unit[u]);
    return buf;
}

const char *fmt_pct(char buf[16], double part, double whole) {
    if (whole == 0)
        snprintf(buf, 16, "-");
    else
        snprintf(buf, 16, "%.1f%%", 100.0 * part / whole);
    return buf;
}

uint64_t str_hash(const char *s) {
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

void json_str(FILE *f, const char *s) {
    if (!s) {
        fputs("null", f);
        return;
    }
    fputc('"', f);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\')
            fprintf(f, "\\%c", *p);
        else if (*p < 0x20)
            fprintf(f, "\\u%04x", *p);
        else
            fputc(*p, f);
    }
    fputc('"', f);
}

void json_key(FILE *f, const char *key, bool *first) {
    if (!*first)
        fputc(',', f);
    *first = false;
    json_str(f, key);
    fputc(':', f);
}

/* The allocator's own frames: those of the C library and the dynamic loader (strdup, fopen
 * and the like are libc calling malloc), and C++'s operator new; and at the other end, libc's
 * frames that start the program or a thread. (The loader's first frame of its own is shown:
 * site_stack.) */
static bool hidden(const sym_frame_t *fr) {
    const char *m = sym_basename(fr->module);
    if (m && (strncmp(m, "libc.so", 7) == 0 || strncmp(m, "ld-linux", 8) == 0))
        return true;
    return fr->function && (strncmp(fr->function, "operator new", 12) == 0 ||
                            strncmp(fr->function, "operator delete", 15) == 0);
}

int site_stack_all(symbolizer_t *sym, const dump_t *d, const dsite_t *s, sym_frame_t *out,
                   int max) {
    uint64_t ips[1024];
    uint32_t n = dump_frames(d, s, ips, 1024);
    if (n > 1024)
        n = 1024;
    int k = 0;
    for (uint32_t i = 0; i < n && k < max; i++)
        k += sym_lookup(sym, ips[i], s->gen, out + k, max - k);
    if (s->truncated && k < max) { /* a root of its own: the callers beyond TALLY_DEPTH */
        memset(&out[k], 0, sizeof out[k]);
        out[k++].function = TRUNCATED_FRAME;
    }
    return k;
}

/* A frame of the dynamic loader's that is not one of its allocator wrappers (rtld-malloc.h's
 * calloc, malloc, realloc, inlined into their callers). */
static bool loader_frame(const sym_frame_t *fr) {
    const char *m = sym_basename(fr->module), *f = fr->function;
    if (!m || strncmp(m, "ld-linux", 8) != 0)
        return false;
    if (f && strncmp(f, "__rtld_", 7) == 0)
        f += 7;
    return !f || (strcmp(f, "malloc") != 0 && strcmp(f, "calloc") != 0 &&
                  strcmp(f, "realloc") != 0 && strcmp(f, "free") != 0);
}

/* The program's _start: by its name, or in a stripped program (no name), by what it called:
 * libc's __libc_start_main. */
static bool starts_program(const sym_frame_t *fr, const sym_frame_t *inner) {
    if (fr->function)
        return strcmp(fr->function, "_start") == 0;
    return !fr->python && inner->function && hidden(inner) &&
           strncmp(inner->function, "__libc_start_main", 17) == 0;
}

/* ---- allocator wrappers ---------------------------------------------------------------------
 * Functions that only wrap malloc: a call site named by one (25 rows of zmalloc_usable for
 * redis) says nothing. Their frames at the top of a stack are folded away, as massif's
 * --alloc-fn does, and the site is named by its first frame that is not one. */
static const char *const builtin_alloc_fns[] = {
    /* GNU and BSD programs, git */
    "xmalloc", "xcalloc", "xrealloc", "xzalloc", "xstrdup", "xstrndup", "xmemdup*", "xmallocz",
    "xmallocz_gently", "xreallocarray", "xnmalloc", "xnrealloc", "xcharalloc", "ximalloc",
    "xicalloc", "xirealloc", "emalloc", "ecalloc", "erealloc", "estrdup", "safe_malloc",
    /* redis */
    "zmalloc*", "zcalloc*", "zrealloc*", "ztrymalloc*", "ztrycalloc*", "ztryrealloc*",
    "zstrdup", "zmalloc_usable*", "extend_to_usable",
    /* GLib */
    "g_malloc*", "g_try_malloc*", "g_realloc*", "g_try_realloc*", "g_strdup*", "g_strndup",
    "g_memdup*", "g_slice_alloc*", "g_new*",
    /* CPython's allocator layer */
    "PyMem_Malloc", "PyMem_Calloc", "PyMem_Realloc", "PyMem_RawMalloc", "PyMem_RawCalloc",
    "PyMem_RawRealloc", "_PyMem_RawMalloc", "_PyMem_RawCalloc", "_PyMem_RawRealloc",
    "_PyMem_Debug*", "PyObject_Malloc", "PyObject_Calloc", "PyObject_Realloc",
    "_PyObject_Malloc", "_PyObject_Calloc", "_PyObject_Realloc", "pymalloc_*",
    /* Perl, SQLite, Lua, APR, libxml2 */
    "Perl_safesysmalloc", "Perl_safesyscalloc", "Perl_safesysrealloc", "sqlite3MemMalloc",
    "sqlite3MemRealloc", "sqlite3Malloc", "sqlite3DbMallocRaw*", "sqlite3DbMallocZero",
    "sqlite3DbRealloc", "sqlite3Realloc", "sqlite3MallocZero", "dbMallocRawFinish",
    "mallocWithAlarm", "l_alloc", "luaM_malloc_", "luaM_realloc_", "apr_palloc",
    "xmlMalloc*", "xmlRealloc*",
    /* C++ */
    "operator new*", "std::allocator<*>::allocate*", "__gnu_cxx::new_allocator<*>::allocate*",
    "std::__new_allocator<*>::allocate*", "std::allocator_traits<*>::allocate*",
    NULL};
static const char **user_alloc_fns;
static size_t n_user_alloc_fns;
bool view_fold = false;

/* One more glob in a list of them (--alloc-fn, --ignore-fn) */
static bool glob_add(const char ***v, size_t *n, const char *pattern) {
    const char **w = realloc(*v, (*n + 1) * sizeof *w);
    if (!w)
        return false;
    *v = w;
    w[(*n)++] = pattern;
    return true;
}

bool alloc_fn_add(const char *pattern) {
    return glob_add(&user_alloc_fns, &n_user_alloc_fns, pattern);
}

static bool name_matches(const char *name, const char *pattern) {
    if (fnmatch(pattern, name, 0) == 0)
        return true;
    const char *paren = strchr(name, '('); /* a C++ name without its parameters */
    if (paren && paren != name && strchr(pattern, '(') == NULL) {
        char base[512];
        size_t k = (size_t)(paren - name) < sizeof base - 1 ? (size_t)(paren - name) : sizeof base - 1;
        memcpy(base, name, k);
        base[k] = '\0';
        return fnmatch(pattern, base, 0) == 0;
    }
    return false;
}

bool alloc_fn_frame(const sym_frame_t *fr) {
    if (fr->python || !fr->function)
        return false;
    for (size_t i = 0; i < n_user_alloc_fns; i++)
        if (name_matches(fr->function, user_alloc_fns[i]))
            return true;
    for (size_t i = 0; builtin_alloc_fns[i]; i++)
        if (name_matches(fr->function, builtin_alloc_fns[i]))
            return true;
    return false;
}

static const char **ignore_fns;
static size_t n_ignore_fns;

bool ignore_fn_add(const char *pattern) {
    return glob_add(&ignore_fns, &n_ignore_fns, pattern);
}

int view_ignore(dump_t *d, symbolizer_t *sym) {
    if (!n_ignore_fns || !d->nsites)
        return 0;
    bool *drop = calloc(d->nsites, sizeof *drop);
    sym_frame_t *fr = malloc(TOOL_MAX_FRAMES * sizeof *fr);
    if (!drop || !fr) {
        free(drop);
        free(fr);
        tool_error("out of memory");
        return 1;
    }
    for (size_t i = 0; i < d->nsites; i++) {
        int n = site_stack(sym, d, &d->sites[i], fr, TOOL_MAX_FRAMES);
        const char *fn = n > 0 ? fr[0].function : NULL;
        for (size_t k = 0; fn && k < n_ignore_fns && !drop[i]; k++)
            drop[i] = name_matches(fn, ignore_fns[k]);
    }
    bool ok = dump_drop_sites(d, drop);
    free(drop);
    free(fr);
    if (!ok) {
        tool_error("out of memory");
        return 1;
    }
    return 0;
}

int site_stack(symbolizer_t *sym, const dump_t *d, const dsite_t *s, sym_frame_t *out,
               int max) {
    int k = site_stack_all(sym, d, s, out, max);
    int drop = 0, loader = -1;
    while (drop < k && hidden(&out[drop])) {
        if (loader < 0 && loader_frame(&out[drop]))
            loader = drop;
        drop++;
    }
    if (drop == k)
        return k; /* nothing but the allocator and libc: show it all */
    /* The dynamic loader allocating for a dlopen (its link maps, its TLS and lookup tables)
     * keeps its first frame of its own, as memcheck shows it: otherwise all of it would be
     * named by the program's dlopen call alone. */
    if (loader >= 0)
        out[--drop] = out[loader];
    else if (view_fold) /* the allocator wrappers: named by their first caller */
        while (k - drop > 1 && alloc_fn_frame(&out[drop]))
            drop++;
    /* ... and the outermost ones that only start the program or the thread (libc's
     * __libc_start_main, start_thread, clone; _start, which crt1.o puts in the program), as
     * valgrind leaves out what is below main. */
    while (k > drop + 1 && (hidden(&out[k - 1]) || starts_program(&out[k - 1], &out[k - 2])))
        k--;
    memmove(out, out + drop, (size_t)(k - drop) * sizeof *out);
    return k - drop;
}

void frame_label(char *out, size_t cap, const sym_frame_t *f) {
    if (f->function)
        snprintf(out, cap, "%s", f->function);
    else if (f->module)
        snprintf(out, cap, "%s+%#llx", sym_basename(f->module), (unsigned long long)f->offset);
    else
        snprintf(out, cap, "%#llx", (unsigned long long)f->ip);
}

void print_frame(FILE *f, const char *indent, const char *verb, const sym_frame_t *fr) {
    fprintf(f, "%s%s ", indent, verb);
    if (fr->python) { /* the file as the program named it: a module's path tells its package */
        fputs(fr->function ? fr->function : "?", f);
        if (fr->line)
            fprintf(f, " (%s:%u) [py]\n", fr->file ? fr->file : "?", fr->line);
        else
            fprintf(f, " (%s) [py]\n", fr->file ? fr->file : "?");
        return;
    }
    if (fr->function) {
        fputs(fr->function, f);
        if (fr->file && fr->line)
            fprintf(f, " (%s:%u)", sym_basename(fr->file), fr->line);
        else if (fr->module)
            fprintf(f, " (in %s)", sym_basename(fr->module));
        if (fr->inlined)
            fputs(" [inlined]", f);
    } else if (fr->module) {
        fprintf(f, "%s+%#llx", sym_basename(fr->module), (unsigned long long)fr->offset);
    } else {
        fprintf(f, "%#llx (in no module)", (unsigned long long)fr->ip);
    }
    fputc('\n', f);
}

void json_frames(FILE *f, const sym_frame_t *fr, int n) {
    fputc('[', f);
    for (int i = 0; i < n; i++) {
        bool first = true;
        fputs(i ? ",{" : "{", f);
        json_key(f, "function", &first);
        json_str(f, fr[i].function);
        json_key(f, "file", &first);
        json_str(f, fr[i].file);
        json_key(f, "line", &first);
        if (fr[i].line)
            fprintf(f, "%u", fr[i].line);
        else
            fputs("null", f);
        json_key(f, "module", &first);
        json_str(f, fr[i].module);
        json_key(f, "offset", &first);
        if (fr[i].module)
            fprintf(f, "%llu", (unsigned long long)fr[i].offset);
        else
            fputs("null", f);
        json_key(f, "inlined", &first);
        fputs(fr[i].inlined ? "true" : "false", f);
        json_key(f, "python", &first);
        fputs(fr[i].python ? "true" : "false", f);
        fputc('}', f);
    }
    fputc(']', f);
}
