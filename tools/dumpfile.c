/* dumpfile.c: reads a tallymalloc dump (docs/FORMAT.md, version 1) into a dump_t.
 *
 * A dump comes from a program that may have crashed, been killed, or been a different version;
 * or the file may not be a dump at all. Every failure is one line naming the file and, where it
 * helps, the line: a version this reader does not know, a missing end (truncated), a malformed
 * number, a record that refers to a frame, stack or site that was not defined. The reader never
 * trusts a count or an id to size memory: arrays grow with the records actually read, stacks
 * deeper than 1024 frames are refused, and ids are looked up in hash maps. Fields it does not know
 * are ignored (the format adds fields without a new version); records it does not know are not. */
#define _GNU_SOURCE
#include "dumpfile.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zstd.h>

#ifdef DUMP_MAX_TEXT /* the fuzz target's is smaller */
#define MAX_TEXT ((size_t)(DUMP_MAX_TEXT))
#else
#define MAX_TEXT ((size_t)8 << 30) /* a dump of more than 8 GiB of text is not one we wrote */
#endif
#define MAX_DEPTH 1024
static const char magic[] = "tally-dump "; /* how every dump starts, then its version */
/* A compressed dump may expand to this many times its size, and at least MIN_EXPANDED: the
 * library's dumps compress 5 to 15 times (zstd level 1 on text); a file of zeros 30,000 times. */
#define MAX_RATIO 200
#define MIN_EXPANDED ((size_t)64 << 20)

static size_t max_text; /* dump_set_max_text: 0 for the default bounds */

void dump_set_max_text(size_t bytes) {
    max_text = bytes;
}

/* ---- text made safe to show -------------------------------------------------------------------
 * Program names, paths and symbols come from files tally did not write. Shown raw, an ESC or BEL
 * in one would reach the user's terminal as a command, and a newline would forge a line. So
 * every byte that is a control (C0, DEL, C1, raw or UTF-8-encoded) or not UTF-8 is shown as
 * \xNN (\r, \n, \t for those three); valid UTF-8 passes. */
static size_t utf8_len(const unsigned char *s) {
    unsigned c = s[0], n, cp;
    if (c < 0x80)
        return 1;
    if (c >= 0xc2 && c <= 0xdf)
        n = 2, cp = c & 0x1f;
    else if (c >= 0xe0 && c <= 0xef)
        n = 3, cp = c & 0x0f;
    else if (c >= 0xf0 && c <= 0xf4)
        n = 4, cp = c & 0x07;
    else
        return 0;
    for (unsigned i = 1; i < n; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        cp = cp << 6 | (s[i] & 0x3f);
    }
    static const unsigned least[5] = {0, 0, 0x80, 0x800, 0x10000};
    if (cp < least[n] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff) || cp < 0xa0)
        return 0; /* overlong, out of range, a surrogate, or a C1 control */
    return n;
}

size_t text_escape(char *out, size_t cap, const char *in) {
    const unsigned char *s = (const unsigned char *)in;
    size_t len = 0;
    for (size_t n; *s; s += n) {
        char tmp[5];
        const char *piece = tmp;
        size_t k;
        n = *s >= 0x20 && *s != 0x7f ? utf8_len(s) : 0;
        if (n) {
            piece = (const char *)s;
            k = n;
        } else {
            n = 1;
            if (*s == '\n' || *s == '\r' || *s == '\t') {
                tmp[0] = '\\';
                tmp[1] = *s == '\n' ? 'n' : *s == '\r' ? 'r' : 't';
                k = 2;
            } else {
                snprintf(tmp, sizeof tmp, "\\x%02x", *s);
                k = 4;
            }
        }
        if (out && len + k < cap)
            memcpy(out + len, piece, k);
        else if (out && cap)
            cap = len + 1; /* full: stop writing, keep counting */
        len += k;
    }
    if (out && cap)
        out[len < cap ? len : cap - 1] = '\0';
    return len;
}

char *text_shown(const char *in) {
    if (!in)
        return NULL;
    size_t n = text_escape(NULL, 0, in) + 1;
    char *out = malloc(n);
    if (out)
        text_escape(out, n, in);
    return out;
}

/* ---- a small u32 -> u32 map (ids to indexes) ---------------------------------------------- */
typedef struct idmap_s {
    uint32_t *keys, *vals; /* key UINT32_MAX: empty */
    size_t cap, used;
} idmap_t;

static bool idmap_put(idmap_t *m, uint32_t key, uint32_t val) {
    if ((m->used + 1) * 2 > m->cap) {
        size_t cap = m->cap ? m->cap * 2 : 1024;
        uint32_t *k = malloc(cap * sizeof *k), *v = malloc(cap * sizeof *v);
        if (!k || !v) {
            free(k);
            free(v);
            return false;
        }
        memset(k, 0xff, cap * sizeof *k);
        for (size_t i = 0; i < m->cap; i++) {
            if (m->keys[i] == UINT32_MAX)
                continue;
            size_t j = (m->keys[i] * 2654435761u) & (cap - 1);
            while (k[j] != UINT32_MAX)
                j = (j + 1) & (cap - 1);
            k[j] = m->keys[i];
            v[j] = m->vals[i];
        }
        free(m->keys);
        free(m->vals);
        m->keys = k;
        m->vals = v;
        m->cap = cap;
    }
    size_t j = (key * 2654435761u) & (m->cap - 1);
    while (m->keys[j] != UINT32_MAX) {
        if (m->keys[j] == key)
            return false; /* defined twice */
        j = (j + 1) & (m->cap - 1);
    }
    m->keys[j] = key;
    m->vals[j] = val;
    m->used++;
    return true;
}

static bool idmap_get(const idmap_t *m, uint32_t key, uint32_t *val) {
    if (!m->cap)
        return false;
    for (size_t j = (key * 2654435761u) & (m->cap - 1); m->keys[j] != UINT32_MAX;
         j = (j + 1) & (m->cap - 1))
        if (m->keys[j] == key) {
            *val = m->vals[j];
            return true;
        }
    return false;
}

static void idmap_free(idmap_t *m) {
    free(m->keys);
    free(m->vals);
}

/* ---- growing arrays ------------------------------------------------------------------------ */
static bool reserve(void **p, size_t *cap, size_t n, size_t elem) {
    if (n < *cap)
        return true;
    size_t c = *cap ? *cap * 2 : 64;
    while (c <= n)
        c *= 2;
    void *q = realloc(*p, c * elem);
    if (!q)
        return false;
    memset((char *)q + *cap * elem, 0, (c - *cap) * elem);
    *p = q;
    *cap = c;
    return true;
}

/* ---- the parser ------------------------------------------------------------------------------ */
typedef struct parser_s {
    const char *name;
    char *err;
    size_t errlen;
    size_t lineno;
    dump_t *d;
    size_t cap_modules, cap_sites, cap_classes, cap_timeline, cap_tsites, cap_blocks, cap_nodes,
        cap_errors;
    uint32_t *node_depth;
    size_t cap_depth;
    idmap_t stacks; /* stack id -> node (depths are checked when the stack is read) */
    idmap_t stack_depth;
    idmap_t sites;  /* site id -> index */
    idmap_t pycodes; /* pycode id -> index */
    size_t cap_pycodes;
    bool py_frames;  /* some frame is a Python frame (its code id, until the end maps it) */
    bool seen_header, seen_totals, seen_arena;
} parser_t;

static bool fail(parser_t *p, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int n = p->lineno ? snprintf(p->err, p->errlen, "%s:%zu: ", p->name, p->lineno)
                      : snprintf(p->err, p->errlen, "%s: ", p->name);
    if (n >= 0 && (size_t)n < p->errlen)
        vsnprintf(p->err + n, p->errlen - (size_t)n, fmt, ap);
    va_end(ap);
    return false;
}

static bool parse_u64(const char *s, size_t n, uint64_t *out) {
    if (n == 0 || n > 20)
        return false;
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        unsigned dgt = (unsigned)(s[i] - '0');
        if (v > (UINT64_MAX - dgt) / 10)
            return false;
        v = v * 10 + dgt;
    }
    *out = v;
    return true;
}

static bool parse_i64(const char *s, size_t n, int64_t *out) {
    bool neg = n > 0 && s[0] == '-';
    uint64_t v;
    if (!parse_u64(s + neg, n - neg, &v) || v > (uint64_t)INT64_MAX + neg)
        return false;
    *out = neg ? (int64_t)(0 - v) : (int64_t)v;
    return true;
}

static bool parse_hex(const char *s, size_t n, uint64_t *out) {
    if (n < 3 || n > 18 || s[0] != '0' || s[1] != 'x')
        return false;
    uint64_t v = 0;
    for (size_t i = 2; i < n; i++) {
        char c = s[i];
        unsigned h;
        if (c >= '0' && c <= '9')
            h = (unsigned)(c - '0');
        else if (c >= 'a' && c <= 'f')
            h = (unsigned)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F')
            h = (unsigned)(c - 'A' + 10);
        else
            return false;
        v = v << 4 | h;
    }
    *out = v;
    return true;
}

static int hexval(char c) {
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* %XX-encoded text; NULL on a broken escape. */
static char *parse_text(const char *s, size_t n) {
    char *out = malloc(n + 1), *o = out;
    if (!out)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '%') {
            int hi, lo;
            if (i + 2 >= n || (hi = hexval(s[i + 1])) < 0 || (lo = hexval(s[i + 2])) < 0) {
                free(out);
                return NULL;
            }
            *o++ = (char)(hi << 4 | lo);
            i += 2;
        } else {
            *o++ = s[i];
        }
    }
    *o = '\0';
    return out;
}

/* "bucket:count,bucket:count" */
static bool parse_hist(const char *s, size_t n, uint64_t *h) {
    size_t i = 0;
    while (i < n) {
        size_t c = i;
        while (c < n && s[c] != ':')
            c++;
        size_t e = c;
        while (e < n && s[e] != ',')
            e++;
        uint64_t b, v;
        if (c >= n || !parse_u64(s + i, c - i, &b) || b >= DUMP_NHIST ||
            !parse_u64(s + c + 1, e - c - 1, &v))
            return false;
        h[b] = v;
        i = e + 1;
        if (e == n - 1)
            return false; /* a trailing comma */
    }
    return true;
}

/* One field of a record. */
typedef struct field_s {
    const char *key, *val;
    size_t klen, vlen;
} field_t;

#define MAX_FIELDS 64

static bool key_is(const field_t *f, const char *k) {
    return f->klen == strlen(k) && memcmp(f->key, k, f->klen) == 0;
}

/* Looks up key among the fields; NULL if absent. */
static const field_t *find(const field_t *fs, size_t n, const char *k) {
    for (size_t i = 0; i < n; i++)
        if (key_is(&fs[i], k))
            return &fs[i];
    return NULL;
}

/* The field k: false with a message if it is missing and needed; *f NULL if it is missing. */
static bool field(parser_t *p, const field_t *fs, size_t n, const char *k, bool need,
                  const field_t **f) {
    *f = find(fs, n, k);
    return *f || !need || fail(p, "field %s is missing", k);
}

static bool not_a_number(parser_t *p, const char *k, const field_t *f) {
    return fail(p, "%s=%.*s is not a number", k, (int)(f->vlen > 40 ? 40 : f->vlen), f->val);
}

static bool get_u64(parser_t *p, const field_t *fs, size_t n, const char *k, bool need,
                    uint64_t *out) {
    const field_t *f;
    *out = 0;
    if (!field(p, fs, n, k, need, &f))
        return false;
    return !f || parse_u64(f->val, f->vlen, out) || not_a_number(p, k, f);
}

static bool get_i64(parser_t *p, const field_t *fs, size_t n, const char *k, bool need,
                    int64_t *out) {
    const field_t *f;
    *out = 0;
    if (!field(p, fs, n, k, need, &f))
        return false;
    return !f || parse_i64(f->val, f->vlen, out) || not_a_number(p, k, f);
}

static bool get_u32(parser_t *p, const field_t *fs, size_t n, const char *k, bool need,
                    uint32_t *out) {
    uint64_t v;
    if (!get_u64(p, fs, n, k, need, &v))
        return false;
    if (v > UINT32_MAX)
        return fail(p, "%s=%llu is too large", k, (unsigned long long)v);
    *out = (uint32_t)v;
    return true;
}

static bool get_hex(parser_t *p, const field_t *fs, size_t n, const char *k, uint64_t *out) {
    const field_t *f = find(fs, n, k);
    if (!f)
        return fail(p, "field %s is missing", k);
    if (!parse_hex(f->val, f->vlen, out))
        return fail(p, "%s=%.*s is not a hexadecimal address", k,
                    (int)(f->vlen > 40 ? 40 : f->vlen), f->val);
    return true;
}

static bool get_text(parser_t *p, const field_t *fs, size_t n, const char *k, bool need,
                     char **out) {
    const field_t *f = find(fs, n, k);
    *out = NULL;
    if (!f)
        return need ? fail(p, "field %s is missing", k) : true;
    if (f->vlen == 1 && f->val[0] == '-')
        return true;
    *out = parse_text(f->val, f->vlen);
    if (!*out)
        return fail(p, "%s has a broken %%XX escape", k);
    return true;
}

/* A text field that is only ever shown: kept escaped (text_shown). */
static bool get_shown(parser_t *p, const field_t *fs, size_t n, const char *k, bool need,
                      char **out) {
    char *raw;
    if (!get_text(p, fs, n, k, need, &raw))
        return false;
    *out = text_shown(raw);
    bool ok = !raw || *out || fail(p, "out of memory");
    free(raw);
    return ok;
}

static bool get_hist(parser_t *p, const field_t *fs, size_t n, const char *k, uint64_t *h) {
    const field_t *f = find(fs, n, k);
    if (f && !parse_hist(f->val, f->vlen, h))
        return fail(p, "%s is not a histogram (bucket:count,...)", k);
    return true;
}

static bool rec_header(parser_t *p, const field_t *fs, size_t n) {
    dump_t *d = p->d;
    if (p->seen_header)
        return fail(p, "a second header");
    p->seen_header = true;
    if (!get_shown(p, fs, n, "program", false, &d->program) ||
        !get_text(p, fs, n, "mode", true, &d->mode) ||
        !get_shown(p, fs, n, "unwinder", false, &d->unwinder) ||
        !get_shown(p, fs, n, "reason", false, &d->reason) ||
        !get_shown(p, fs, n, "version", false, &d->version) ||
        !get_shown(p, fs, n, "python", false, &d->python) ||
        !get_u64(p, fs, n, "pid", true, &d->pid) || !get_u64(p, fs, n, "ppid", false, &d->ppid) ||
        !get_u64(p, fs, n, "sample_interval", false, &d->sample_interval) ||
        !get_u64(p, fs, n, "count_scale", true, &d->count_scale) ||
        !get_u64(p, fs, n, "depth", false, &d->depth) ||
        !get_u64(p, fs, n, "fatal_signal", false, &d->fatal_signal) ||
        !get_u32(p, fs, n, "gen", false, &d->gen) ||
        !get_u64(p, fs, n, "start_ns", false, &d->start_ns) ||
        !get_u64(p, fs, n, "dump_ns", false, &d->dump_ns) ||
        !get_u64(p, fs, n, "duration_ns", false, &d->duration_ns))
        return false;
    if (!d->mode || (strcmp(d->mode, "all") != 0 && strcmp(d->mode, "sample") != 0))
        return fail(p, "mode=%s: want all or sample", d->mode ? d->mode : "-");
    if (d->count_scale == 0)
        return fail(p, "count_scale=0");
    d->all_mode = strcmp(d->mode, "all") == 0;
    uint64_t pyf = 1; /* absent: the frames are there */
    if (find(fs, n, "python_frames") && !get_u64(p, fs, n, "python_frames", false, &pyf))
        return false;
    d->python_frames = d->python && pyf != 0;
    const field_t *c = find(fs, n, "check");
    d->check = c && !(c->vlen == 1 && c->val[0] == '0');
    return true;
}

const char *const dkind_names[DKIND_N] = {"definite", "indirect", "possible", "reachable"};
const char *const dheur_names[DHEUR_N] = {"none", "stdstring", "length64", "newarray",
                                          "multipleinheritance"};

/* A field whose value is one of names[0..n): its index; absent: dflt. */
static bool get_word(parser_t *p, const field_t *fs, size_t n, const char *k,
                     const char *const *names, unsigned nnames, unsigned dflt, uint8_t *out) {
    const field_t *f = find(fs, n, k);
    *out = (uint8_t)dflt;
    if (!f)
        return true;
    for (unsigned i = 0; i < nnames; i++)
        if (strlen(names[i]) == f->vlen && memcmp(names[i], f->val, f->vlen) == 0) {
            *out = (uint8_t)i;
            return true;
        }
    return fail(p, "%s=%.*s is not one of the values docs/FORMAT.md lists", k, (int)f->vlen,
                f->val);
}

static bool rec_totals(parser_t *p, const field_t *fs, size_t n) {
    dump_t *d = p->d;
    if (p->seen_totals)
        return fail(p, "a second totals record");
    p->seen_totals = true;
    uint64_t check = 0;
    if (!get_u64(p, fs, n, "leak_check", false, &check) ||
        !get_u64(p, fs, n, "leak_approx", false, &d->leak_approx) ||
        !get_u64(p, fs, n, "leak_foreign_large", false, &d->leak_foreign_large) ||
        !get_u64(p, fs, n, "leak_threads", false, &d->leak_threads) ||
        !get_u64(p, fs, n, "leak_unstopped", false, &d->leak_unstopped) ||
        !get_u64(p, fs, n, "leak_scan_ns", false, &d->leak_scan_ns) ||
        !get_u64(p, fs, n, "leak_root_bytes", false, &d->leak_root_bytes) ||
        !get_u64(p, fs, n, "leak_block_bytes", false, &d->leak_block_bytes) ||
        !get_u64(p, fs, n, "check_errors", false, &d->check_errors) ||
        !get_u64(p, fs, n, "check_contexts", false, &d->check_contexts) ||
        !get_u64(p, fs, n, "check_dropped", false, &d->check_dropped) ||
        !get_u64(p, fs, n, "check_quarantine", false, &d->check_quarantine))
        return false;
    d->leak_check = check != 0;
    for (unsigned h = 1; h < DHEUR_N; h++) {
        char kc[64], kb[64];
        snprintf(kc, sizeof kc, "leak_%s_count", dheur_names[h]);
        snprintf(kb, sizeof kb, "leak_%s_bytes", dheur_names[h]);
        if (!get_u64(p, fs, n, kc, false, &d->heur_blocks[h]) ||
            !get_u64(p, fs, n, kb, false, &d->heur_bytes[h]))
            return false;
    }
    return get_u64(p, fs, n, "alloc_bytes", false, &d->total_alloc_bytes) &&
           get_i64(p, fs, n, "live_bytes", false, &d->total_live_bytes) &&
           get_i64(p, fs, n, "peak_bytes", false, &d->peak_bytes) &&
           get_u64(p, fs, n, "sites", false, &d->nsites_total) &&
           get_u64(p, fs, n, "pinned_pool_bytes", false, &d->pinned_pool_bytes) &&
           get_u64(p, fs, n, "pinned_large_bytes", false, &d->pinned_large_bytes) &&
           get_u64(p, fs, n, "max_rss_bytes", false, &d->max_rss_bytes) &&
           get_u64(p, fs, n, "meta_resident_bytes", false, &d->meta_resident_bytes) &&
           get_u64(p, fs, n, "python_stopped", false, &d->python_stopped);
}

static bool rec_module(parser_t *p, const field_t *fs, size_t n) {
    dump_t *d = p->d;
    if (!reserve((void **)&d->modules, &p->cap_modules, d->nmodules, sizeof *d->modules))
        return fail(p, "out of memory");
    dmodule_t *m = &d->modules[d->nmodules];
    uint64_t unloaded = 0;
    uint32_t gen_hi = UINT32_MAX;
    bool ok = get_hex(p, fs, n, "base", &m->base) && get_hex(p, fs, n, "lo", &m->lo) &&
              get_hex(p, fs, n, "hi", &m->hi) &&
              get_text(p, fs, n, "build_id", false, &m->build_id) &&
              get_text(p, fs, n, "path", true, &m->path) &&
              (m->shown = text_shown(m->path)) != NULL &&
              get_u32(p, fs, n, "gen_lo", false, &m->gen_lo) &&
              get_u64(p, fs, n, "unloaded", false, &unloaded);
    if (ok && find(fs, n, "gen_hi"))
        ok = get_u32(p, fs, n, "gen_hi", true, &gen_hi);
    d->nmodules++; /* so that dump_free frees what was read */
    if (!ok)
        return false;
    if (m->hi <= m->lo)
        return fail(p, "module %s covers no addresses", m->shown);
    m->unloaded = unloaded != 0;
    m->gen_hi = m->unloaded ? gen_hi : UINT32_MAX;
    return true;
}

static bool rec_frame(parser_t *p, const field_t *fs, size_t n) {
    dump_t *d = p->d;
    uint32_t id = 0, parent = 0;
    uint64_t ip = 0;
    if (!get_u32(p, fs, n, "parent", true, &parent))
        return false;
    if (!find(fs, n, "id")) /* version 2: the next id */
        id = (uint32_t)(d->nnodes + 1 > UINT32_MAX ? 0 : d->nnodes + 1);
    else if (!get_u32(p, fs, n, "id", true, &id))
        return false;
    const field_t *py = find(fs, n, "py");
    if (py) { /* a Python frame: CODE:LINE */
        const char *colon = memchr(py->val, ':', py->vlen);
        uint64_t code = 0, line = 0;
        if (!colon || !parse_u64(py->val, (size_t)(colon - py->val), &code) ||
            !parse_u64(colon + 1, py->vlen - (size_t)(colon - py->val) - 1, &line) ||
            code >= (1ull << 32) || line >= (1ull << DUMP_PY_LINE_BITS))
            return fail(p, "py=%.*s is not CODE:LINE", (int)(py->vlen > 40 ? 40 : py->vlen),
                        py->val);
        ip = DUMP_PYFRAME(code, line);
        p->py_frames = true;
    } else if (!get_hex(p, fs, n, "ip", &ip)) {
        return false;
    } else if (dump_ip_is_py(ip)) {
        return fail(p, "ip=%#llx is not an address", (unsigned long long)ip);
    }
    if (id != d->nnodes + 1)
        return fail(p, "frame %u out of order (expected %zu)", id, d->nnodes + 1);
    if (parent >= id)
        return fail(p, "frame %u names parent %u, which does not come before it", id, parent);
    if (!reserve((void **)&d->node_ip, &p->cap_nodes, id, sizeof *d->node_ip))
        return fail(p, "out of memory");
    if (p->cap_depth != p->cap_nodes) { /* node_parent and node_depth follow node_ip's size */
        size_t cap = p->cap_nodes;
        uint32_t *np = realloc(d->node_parent, cap * sizeof *np);
        if (!np)
            return fail(p, "out of memory");
        d->node_parent = np;
        uint32_t *nd = realloc(p->node_depth, cap * sizeof *nd);
        if (!nd)
            return fail(p, "out of memory");
        p->node_depth = nd;
        p->cap_depth = cap;
    }
    if (d->nnodes == 0) {
        d->node_parent[0] = 0;
        p->node_depth[0] = 0;
    }
    uint32_t depth = p->node_depth[parent] + 1;
    if (depth > MAX_DEPTH)
        return fail(p, "frame %u is %u frames deep; at most %d", id, depth, MAX_DEPTH);
    d->node_ip[id] = ip;
    d->node_parent[id] = parent;
    p->node_depth[id] = depth;
    d->nnodes = id;
    return true;
}

static bool rec_stack(parser_t *p, const field_t *fs, size_t n) {
    uint32_t id = 0, frame = 0, depth = 0;
    if (!get_u32(p, fs, n, "id", true, &id) || !get_u32(p, fs, n, "frame", true, &frame) ||
        !get_u32(p, fs, n, "depth", true, &depth))
        return false;
    if (frame > p->d->nnodes)
        return fail(p, "stack %u names frame %u, which is not defined", id, frame);
    uint32_t have = frame ? p->node_depth[frame] : 0; /* frame <= nnodes: defined */
    if (have != depth)
        return fail(p, "stack %u says depth=%u, its frames are %u", id, depth, have);
    if (!idmap_put(&p->stacks, id, frame) || !idmap_put(&p->stack_depth, id, depth))
        return fail(p, "stack %u is defined twice", id);
    return true;
}

static bool rec_site(parser_t *p, const field_t *fs, size_t n) {
    dump_t *d = p->d;
    uint32_t id = 0, stack = 0, node = 0, depth = 0;
    if (!get_u32(p, fs, n, "id", true, &id))
        return false;
    if (find(fs, n, "frame")) { /* version 2: the stack in the site */
        if (!get_u32(p, fs, n, "frame", true, &node) || !get_u32(p, fs, n, "depth", true, &depth))
            return false;
        if (node > d->nnodes)
            return fail(p, "site %u names frame %u, which is not defined", id, node);
        uint32_t have = node ? p->node_depth[node] : 0;
        if (have != depth)
            return fail(p, "site %u says depth=%u, its frames are %u", id, depth, have);
    } else if (!get_u32(p, fs, n, "stack", true, &stack)) {
        return false;
    } else if (!idmap_get(&p->stacks, stack, &node) || !idmap_get(&p->stack_depth, stack, &depth)) {
        return fail(p, "site %u names stack %u, which is not defined", id, stack);
    }
    if (!reserve((void **)&d->sites, &p->cap_sites, d->nsites, sizeof *d->sites))
        return fail(p, "out of memory");
    dsite_t *s = &d->sites[d->nsites];
    memset(s, 0, sizeof *s);
    s->id = id;
    s->node = node;
    s->nframes = depth;
    if (!get_u64(p, fs, n, "alloc_count", false, &s->alloc_count) ||
        !get_u64(p, fs, n, "alloc_bytes", false, &s->alloc_bytes) ||
        !get_u64(p, fs, n, "granted_bytes", false, &s->granted_bytes) ||
        !get_u64(p, fs, n, "free_count", false, &s->free_count) ||
        !get_u64(p, fs, n, "free_bytes", false, &s->free_bytes) ||
        !get_i64(p, fs, n, "live_count", false, &s->live_count) ||
        !get_i64(p, fs, n, "live_bytes", false, &s->live_bytes) ||
        !get_i64(p, fs, n, "max_live_bytes", false, &s->max_live_bytes) ||
        !get_i64(p, fs, n, "peak_live_bytes", false, &s->peak_live_bytes) ||
        !get_u64(p, fs, n, "temporary", false, &s->temporary) ||
        !get_u64(p, fs, n, "samples", false, &s->samples) ||
        !get_u64(p, fs, n, "pinned_bytes", false, &s->pinned_bytes) ||
        !get_u64(p, fs, n, "sd_alloc_count", false, &s->sd_alloc_count) ||
        !get_u64(p, fs, n, "sd_alloc_bytes", false, &s->sd_alloc_bytes) ||
        !get_u64(p, fs, n, "sd_live_count", false, &s->sd_live_count) ||
        !get_u64(p, fs, n, "sd_live_bytes", false, &s->sd_live_bytes) ||
        !get_u64(p, fs, n, "sd_peak_bytes", false, &s->sd_peak_bytes) ||
        !get_u64(p, fs, n, "sd_temporary", false, &s->sd_temporary) ||
        !get_u32(p, fs, n, "gen", false, &s->gen) ||
        !get_u64(p, fs, n, "truncated", false, &s->truncated) ||
        !get_u64(p, fs, n, "held_bytes", false, &s->held_bytes) ||
        !get_u64(p, fs, n, "definite_count", false, &s->kind_blocks[DKIND_DEFINITE]) ||
        !get_u64(p, fs, n, "definite_bytes", false, &s->kind_bytes[DKIND_DEFINITE]) ||
        !get_u64(p, fs, n, "indirect_count", false, &s->kind_blocks[DKIND_INDIRECT]) ||
        !get_u64(p, fs, n, "indirect_bytes", false, &s->kind_bytes[DKIND_INDIRECT]) ||
        !get_u64(p, fs, n, "possible_count", false, &s->kind_blocks[DKIND_POSSIBLE]) ||
        !get_u64(p, fs, n, "possible_bytes", false, &s->kind_bytes[DKIND_POSSIBLE]) ||
        !get_u64(p, fs, n, "reachable_count", false, &s->kind_blocks[DKIND_REACHABLE]) ||
        !get_u64(p, fs, n, "reachable_bytes", false, &s->kind_bytes[DKIND_REACHABLE]) ||
        !get_hist(p, fs, n, "size_hist", s->size_hist) ||
        !get_hist(p, fs, n, "life_hist", s->life_hist))
        return false;
    if (d->all_mode && !find(fs, n, "samples")) /* version 2 leaves it out in all mode */
        s->samples = s->alloc_count;
    if (!idmap_put(&p->sites, id, (uint32_t)d->nsites))
        return fail(p, "site %u is defined twice", id);
    d->nsites++;
    return true;
}

static bool rec_class(parser_t *p, const field_t *fs, size_t n) {
    dump_t *d = p->d;
    if (!reserve((void **)&d->classes, &p->cap_classes, d->nclasses, sizeof *d->classes))
        return fail(p, "out of memory");
    dclass_t *c = &d->classes[d->nclasses];
    if (!get_u64(p, fs, n, "size", true, &c->size) || !get_u64(p, fs, n, "pools", false, &c->pools) ||
        !get_u64(p, fs, n, "blocks_in_use", false, &c->blocks_in_use) ||
        !get_u64(p, fs, n, "free_blocks", false, &c->free_blocks) ||
        !get_u64(p, fs, n, "blocks_cached", false, &c->blocks_cached) ||
        !get_u64(p, fs, n, "mallocs", false, &c->mallocs) ||
        !get_u64(p, fs, n, "bytes_requested", false, &c->bytes_requested) ||
        !get_u64(p, fs, n, "bytes_granted", false, &c->bytes_granted) ||
        !get_u64(p, fs, n, "bytes_held", false, &c->bytes_held))
        return false;
    d->nclasses++;
    return true;
}

static bool rec_arena(parser_t *p, const field_t *fs, size_t n) {
    dump_t *d = p->d;
    if (p->seen_arena)
        return fail(p, "a second arena record");
    p->seen_arena = d->have_arena = true;
    return get_u64(p, fs, n, "arenas", false, &d->arenas) &&
           get_u64(p, fs, n, "arena_bytes", false, &d->arena_bytes) &&
           get_u64(p, fs, n, "in_use_bytes", false, &d->in_use_bytes) &&
           get_u64(p, fs, n, "free_block_bytes", false, &d->free_block_bytes) &&
           get_u64(p, fs, n, "pool_overhead_bytes", false, &d->pool_overhead_bytes) &&
           get_u64(p, fs, n, "empty_pool_bytes", false, &d->empty_pool_bytes) &&
           get_u64(p, fs, n, "never_used_bytes", false, &d->never_used_bytes) &&
           get_u64(p, fs, n, "large_mallocs", false, &d->large_mallocs) &&
           get_u64(p, fs, n, "small_mallocs", false, &d->small_mallocs) &&
           get_u64(p, fs, n, "system_heap_bytes", false, &d->system_heap_bytes);
}

static bool rec_timeline(parser_t *p, const field_t *fs, size_t n) {
    dump_t *d = p->d;
    if (!reserve((void **)&d->timeline, &p->cap_timeline, d->ntimeline, sizeof *d->timeline))
        return fail(p, "out of memory");
    dpoint_t *t = &d->timeline[d->ntimeline];
    if (!get_u64(p, fs, n, "t_ns", true, &t->t_ns) ||
        !get_i64(p, fs, n, "live_bytes", false, &t->live_bytes) ||
        !get_u64(p, fs, n, "rss_bytes", false, &t->rss_bytes) ||
        !get_u64(p, fs, n, "alloc_bytes", false, &t->alloc_bytes) ||
        !get_u64(p, fs, n, "alloc_count", false, &t->alloc_count))
        return false;
    t->detailed = false;
    t->first = d->ntsites;
    t->nsites = 0;
    const field_t *f = find(fs, n, "sites");
    if (f) { /* id:live:allocated,... of sites defined above; an unknown id is left out */
        t->detailed = true;
        const char *v = f->val, *end = f->val + f->vlen;
        while (v < end) {
            const char *c1 = memchr(v, ':', (size_t)(end - v));
            const char *c2 = c1 ? memchr(c1 + 1, ':', (size_t)(end - c1 - 1)) : NULL;
            const char *e = c2 ? memchr(c2 + 1, ',', (size_t)(end - c2 - 1)) : NULL;
            if (!e)
                e = end;
            uint64_t id, alloc;
            int64_t live;
            if (!c2 || !parse_u64(v, (size_t)(c1 - v), &id) || id > UINT32_MAX ||
                !parse_i64(c1 + 1, (size_t)(c2 - c1 - 1), &live) ||
                !parse_u64(c2 + 1, (size_t)(e - c2 - 1), &alloc) || e == end - 1)
                return fail(p, "sites is not a list of site:live:allocated");
            uint32_t idx;
            if (idmap_get(&p->sites, (uint32_t)id, &idx)) {
                if (!reserve((void **)&d->tsites, &p->cap_tsites, d->ntsites, sizeof *d->tsites))
                    return fail(p, "out of memory");
                d->tsites[d->ntsites++] = (dtsite_t){idx, live, alloc};
                t->nsites++;
            }
            v = e + 1;
        }
    }
    d->ntimeline++;
    return true;
}

static bool rec_block(parser_t *p, const field_t *fs, size_t n) {
    dump_t *d = p->d;
    uint32_t site = 0, idx = 0;
    if (!reserve((void **)&d->blocks, &p->cap_blocks, d->nblocks, sizeof *d->blocks))
        return fail(p, "out of memory");
    dblock_t *b = &d->blocks[d->nblocks];
    if (!get_u32(p, fs, n, "site", true, &site) || !get_hex(p, fs, n, "addr", &b->addr) ||
        !get_u64(p, fs, n, "size", true, &b->size) ||
        !get_word(p, fs, n, "kind", dkind_names, DKIND_N, DKIND_N, &b->kind) ||
        !get_word(p, fs, n, "heuristic", dheur_names, DHEUR_N, DHEUR_NONE, &b->heur))
        return false;
    if (b->kind == DKIND_REACHABLE)
        return fail(p, "block at %#llx is still reachable: only lost blocks are listed",
                    (unsigned long long)b->addr);
    if (!idmap_get(&p->sites, site, &idx))
        return fail(p, "block at %#llx names site %u, which is not defined",
                    (unsigned long long)b->addr, site);
    if (d->leak_check != (b->kind != DKIND_N))
        return fail(p, "block at %#llx %s a kind, but totals say %s", (unsigned long long)b->addr,
                    b->kind != DKIND_N ? "has" : "lacks",
                    d->leak_check ? "the leak check ran" : "no leak check ran");
    b->site = idx;
    d->sites[idx].leak_blocks++;
    d->sites[idx].leak_bytes += b->size;
    d->nblocks++;
    return true;
}

const char *const derr_names[DERR_N] = {"invalid_free", "double_free", "mismatched_free",
                                        "overrun", "underrun", "write_after_free"};
const char *const dcall_names[DCALL_N] = {"free", "delete", "delete[]", "realloc",
                                          "quarantine", "scan", "malloc_usable_size"};
const char *const dstate_names[DSTATE_N] = {"none", "alloc", "free", "stack"};

/* a site id of an error record: its index + 1, or 0 for id 0 (unknown) */
static bool error_site(parser_t *p, const field_t *fs, size_t n, const char *k, uint32_t *out) {
    uint32_t id = 0, idx = 0;
    *out = 0;
    if (!get_u32(p, fs, n, k, false, &id))
        return false;
    if (id == 0)
        return true;
    if (!idmap_get(&p->sites, id, &idx))
        return fail(p, "error names site %u (%s), which is not defined", id, k);
    *out = idx + 1;
    return true;
}

static bool rec_error(parser_t *p, const field_t *fs, size_t n) {
    dump_t *d = p->d;
    if (!reserve((void **)&d->errors, &p->cap_errors, d->nerrors, sizeof *d->errors))
        return fail(p, "out of memory");
    derror_t *e = &d->errors[d->nerrors];
    memset(e, 0, sizeof *e);
    if (!find(fs, n, "kind"))
        return fail(p, "error without a kind");
    if (!get_word(p, fs, n, "kind", derr_names, DERR_N, DERR_N, &e->kind) ||
        !get_word(p, fs, n, "call", dcall_names, DCALL_N, DCALL_FREE, &e->call) ||
        !get_word(p, fs, n, "state", dstate_names, DSTATE_N, DSTATE_NONE, &e->state) ||
        !get_hex(p, fs, n, "addr", &e->addr) || !get_u32(p, fs, n, "len", false, &e->len) ||
        !get_u64(p, fs, n, "size", false, &e->size) ||
        !get_i64(p, fs, n, "offset", false, &e->offset) ||
        !get_u64(p, fs, n, "count", true, &e->count) ||
        !error_site(p, fs, n, "where", &e->where) || !error_site(p, fs, n, "alloc", &e->alloc) ||
        !error_site(p, fs, n, "free", &e->free))
        return false;
    if (find(fs, n, "block") && !get_hex(p, fs, n, "block", &e->block))
        return false;
    d->nerrors++;
    return true;
}

static bool rec_pycode(parser_t *p, const field_t *fs, size_t n) {
    dump_t *d = p->d;
    if (!reserve((void **)&d->pycodes, &p->cap_pycodes, d->npycodes, sizeof *d->pycodes))
        return fail(p, "out of memory");
    dpycode_t *c = &d->pycodes[d->npycodes];
    memset(c, 0, sizeof *c);
    bool ok = get_u32(p, fs, n, "id", true, &c->id) && get_u32(p, fs, n, "first", false, &c->first) &&
              get_text(p, fs, n, "file", true, &c->file) &&
              get_text(p, fs, n, "name", true, &c->name);
    d->npycodes++; /* so that dump_free frees what was read */
    if (!ok)
        return false;
    if (!c->file)
        c->file = strdup("?");
    if (!c->name)
        c->name = strdup("?");
    if (!c->file || !c->name || !(c->file_shown = text_shown(c->file)) ||
        !(c->name_shown = text_shown(c->name)))
        return fail(p, "out of memory");
    if (!idmap_put(&p->pycodes, c->id, (uint32_t)(d->npycodes - 1)))
        return fail(p, "pycode %u is defined twice", c->id);
    return true;
}

static const struct {
    const char *tag;
    bool (*fn)(parser_t *, const field_t *, size_t);
} records[] = {
    {"header", rec_header}, {"totals", rec_totals}, {"module", rec_module},
    {"frame", rec_frame},   {"stack", rec_stack},   {"site", rec_site},
    {"class", rec_class},   {"arena", rec_arena},   {"timeline", rec_timeline},
    {"block", rec_block},   {"pycode", rec_pycode}, {"error", rec_error},
};

static bool parse_line(parser_t *p, const char *s, size_t len) {
    size_t t = 0;
    while (t < len && s[t] != ' ')
        t++;
    field_t fs[MAX_FIELDS];
    size_t n = 0;
    for (size_t i = t + 1; i < len + 1 && t < len;) {
        size_t e = i;
        while (e < len && s[e] != ' ')
            e++;
        const char *eq = memchr(s + i, '=', e - i);
        if (!eq || eq == s + i)
            return fail(p, "'%.*s' is not key=value", (int)(e - i > 40 ? 40 : e - i), s + i);
        if (n < MAX_FIELDS)
            fs[n++] = (field_t){s + i, eq + 1, (size_t)(eq - (s + i)), (size_t)(s + e - eq - 1)};
        i = e + 1;
    }
    for (size_t r = 0; r < sizeof records / sizeof records[0]; r++)
        if (strlen(records[r].tag) == t && memcmp(records[r].tag, s, t) == 0) {
            if (r > 0 && !p->seen_header)
                return fail(p, "%s before the header", records[r].tag);
            return records[r].fn(p, fs, n);
        }
    return fail(p, "unknown record '%.*s' (this tally reads format versions 1 to 3)",
                (int)(t > 40 ? 40 : t), s);
}

static bool parse_text_dump(parser_t *p, const char *text, size_t len) {
    if (len < sizeof magic - 1 || memcmp(text, magic, sizeof magic - 1) != 0)
        return fail(p, "not a tallymalloc dump (no 'tally-dump' line at the start)");
    const char *nl = memchr(text, '\n', len);
    if (!nl)
        return fail(p, "truncated: the first line does not end");
    size_t vlen = (size_t)(nl - text) - (sizeof magic - 1);
    if (vlen != 1 || text[sizeof magic - 1] < '1' || text[sizeof magic - 1] > '3')
        return fail(p, "dump format version %.*s; this tally reads versions 1 to 3",
                    (int)(vlen > 20 ? 20 : vlen), text + sizeof magic - 1);
    if (len < 5 || memcmp(text + len - 4, "end\n", 4) != 0 || text[len - 5] != '\n')
        return fail(p, "truncated: no 'end' line (the program may have died while dumping)");
    const char *s = nl + 1, *end = text + len - 4;
    p->lineno = 2;
    while (s < end) {
        const char *e = memchr(s, '\n', (size_t)(end - s));
        if (!e)
            e = end;
        if (e == s)
            return fail(p, "an empty line");
        if (memchr(s, '\0', (size_t)(e - s)))
            return fail(p, "a NUL byte: not text");
        if (!parse_line(p, s, (size_t)(e - s)))
            return false;
        s = e + 1;
        p->lineno++;
    }
    p->lineno = 0;
    if (!p->seen_header)
        return fail(p, "no header record");
    if (!p->seen_totals)
        return fail(p, "no totals record");
    for (size_t k = 1; p->py_frames && k <= p->d->nnodes; k++) { /* code ids to indexes */
        uint64_t ip = p->d->node_ip[k];
        uint32_t idx;
        if (!dump_ip_is_py(ip))
            continue;
        if (!idmap_get(&p->pycodes, dump_py_code(ip), &idx))
            return fail(p, "frame %zu names pycode %u, which is not defined", k, dump_py_code(ip));
        p->d->node_ip[k] = DUMP_PYFRAME(idx, dump_py_line(ip));
    }
    /* FORMAT.md: an all-mode dump at exit lists every live block, even when there is none */
    p->d->has_blocks = p->d->all_mode && ((p->d->reason && (strcmp(p->d->reason, "exit") == 0 ||
                                                            strcmp(p->d->reason, "fatal") == 0)) ||
                                          p->d->leak_check);
    for (size_t i = 0; p->d->leak_check && i < p->d->nsites; i++) /* the kinds, over all sites */
        for (unsigned k = 0; k < DKIND_N; k++) {
            p->d->kind_blocks[k] += p->d->sites[i].kind_blocks[k];
            p->d->kind_bytes[k] += p->d->sites[i].kind_bytes[k];
        }
    return true;
}

/* ---- input ----------------------------------------------------------------------------------- */
/* A zstd frame of a dump, decompressed into memory. Bounded by what a dump can be: it must start
 * as one (checked in the first 64 KiB, so a file of zeros stops at once), and expand at most
 * MAX_RATIO times (at least to MIN_EXPANDED), unless --max-text says otherwise. */
static bool decompress(parser_t *p, const char *in, size_t inlen, char **out, size_t *outlen) {
    size_t limit = max_text;
    if (!limit) {
        limit = inlen > MAX_TEXT / MAX_RATIO ? MAX_TEXT : inlen * MAX_RATIO;
        if (limit < MIN_EXPANDED)
            limit = MIN_EXPANDED;
    }
    ZSTD_DCtx *z = ZSTD_createDCtx();
    if (!z)
        return fail(p, "out of memory");
    size_t cap = 65536, len = 0;
    char *buf = malloc(cap);
    ZSTD_inBuffer ib = {in, inlen, 0};
    size_t ret = 1;
    bool ok = buf != NULL || fail(p, "out of memory"), checked = false;
    while (ok) {
        if (!checked && (len >= sizeof magic - 1 || len == cap)) {
            checked = true;
            if (memcmp(buf, magic, sizeof magic - 1) != 0) {
                ok = fail(p, "zstd data that is not a tallymalloc dump (no 'tally-dump' line "
                             "at the start)");
                break;
            }
        }
        if (len == cap) {
            if (cap >= limit) {
                ok = fail(p, "decompresses to more than %zu MiB (%zu times its size): not a dump "
                             "tally wrote; --max-text SIZE reads larger ones",
                          limit >> 20, limit / (inlen ? inlen : 1));
                break;
            }
            size_t ncap = cap * 2 < limit ? cap * 2 : limit;
            char *nb = realloc(buf, ncap);
            if (!nb) {
                ok = fail(p, "out of memory");
                break;
            }
            buf = nb;
            cap = ncap;
        }
        ZSTD_outBuffer ob = {buf + len, (checked ? cap : sizeof magic - 1) - len, 0};
        ret = ZSTD_decompressStream(z, &ob, &ib);
        len += ob.pos;
        if (ZSTD_isError(ret)) {
            ok = fail(p, "broken zstd data (%s)", ZSTD_getErrorName(ret));
            break;
        }
        if (ret == 0 && ib.pos == ib.size)
            break; /* the frame is complete and all input used */
        if (ib.pos == ib.size && ob.pos < ob.size) {
            ok = fail(p, "truncated: the zstd frame ends early");
            break;
        }
    }
    ZSTD_freeDCtx(z);
    if (!ok) {
        free(buf);
        return false;
    }
    *out = buf;
    *outlen = len;
    return true;
}

/* data is the file's bytes; own: data is malloc'd and becomes the dump's text (no copy). */
static bool parse_bytes(const char *name, char *data, size_t len, bool own, dump_t *d, char *err,
                        size_t errlen) {
    memset(d, 0, sizeof *d);
    d->path = name;
    d->path_shown = text_shown(name);
    parser_t p = {.name = name, .err = err, .errlen = errlen, .d = d};
    if (!d->path_shown) {
        snprintf(err, errlen, "out of memory");
        return false;
    }
    char *text = NULL;
    size_t tlen = 0;
    bool ok;
    if (len >= 4 && (unsigned char)data[0] == 0x28 && (unsigned char)data[1] == 0xb5 &&
        (unsigned char)data[2] == 0x2f && (unsigned char)data[3] == 0xfd) {
        ok = decompress(&p, data, len, &text, &tlen);
        if (own)
            free(data);
    } else if (len == 0) {
        ok = fail(&p, "empty file: not a tallymalloc dump");
        if (own)
            free(data);
    } else if (own) {
        text = data;
        tlen = len;
        ok = true;
    } else {
        text = malloc(len);
        ok = text != NULL || fail(&p, "out of memory");
        if (ok) {
            memcpy(text, data, len);
            tlen = len;
        }
    }
    if (ok) {
        d->text = text;
        ok = parse_text_dump(&p, text, tlen);
    } else {
        free(text);
    }
    idmap_free(&p.stacks);
    idmap_free(&p.stack_depth);
    idmap_free(&p.sites);
    idmap_free(&p.pycodes);
    free(p.node_depth);
    if (!ok)
        dump_free(d);
    return ok;
}

bool dump_parse(const char *name, const char *data, size_t len, dump_t *d, char *err,
                size_t errlen) {
    return parse_bytes(name, (char *)data, len, false, d, err, errlen);
}

bool dump_load(const char *path, dump_t *d, char *err, size_t errlen) {
    memset(d, 0, sizeof *d);
    /* O_NONBLOCK: opening a FIFO nobody writes would wait forever */
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
    if (fd < 0) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return false;
    }
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        snprintf(err, errlen, "%s: not a regular file (%s): not a dump", path,
                 S_ISFIFO(st.st_mode)  ? "a FIFO"
                 : S_ISCHR(st.st_mode) ? "a character device"
                 : S_ISDIR(st.st_mode) ? "a directory"
                 : S_ISSOCK(st.st_mode) ? "a socket"
                                        : "a device");
        close(fd);
        return false;
    }
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
    size_t most = max_text ? max_text : MAX_TEXT;
    if ((uint64_t)st.st_size > most) {
        snprintf(err, errlen, "%s: larger than %zu MiB: not a tallymalloc dump%s", path,
                 most >> 20, max_text ? "" : " (--max-text SIZE reads larger ones)");
        close(fd);
        return false;
    }
    size_t len = (size_t)st.st_size, got = 0;
    char *buf = malloc(len ? len : 1);
    if (!buf) {
        snprintf(err, errlen, "%s: out of memory", path);
        close(fd);
        return false;
    }
    while (got < len) {
        ssize_t r = read(fd, buf + got, len - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            snprintf(err, errlen, "%s: %s", path, r < 0 ? strerror(errno) : "shorter than its size");
            free(buf);
            close(fd);
            return false;
        }
        got += (size_t)r;
    }
    close(fd);
    return parse_bytes(path, buf, len, true, d, err, errlen);
}

bool dump_drop_sites(dump_t *d, const bool *drop) {
    size_t *to = malloc((d->nsites ? d->nsites : 1) * sizeof *to), n = 0;
    if (!to)
        return false;
    for (size_t i = 0; i < d->nsites; i++) {
        to[i] = drop[i] ? SIZE_MAX : n;
        if (!drop[i])
            d->sites[n++] = d->sites[i];
    }
    d->nsites = n;
    size_t nb = 0;
    for (size_t b = 0; b < d->nblocks; b++)
        if (to[d->blocks[b].site] != SIZE_MAX) {
            d->blocks[nb] = d->blocks[b];
            d->blocks[nb++].site = (uint32_t)to[d->blocks[b].site];
        }
    d->nblocks = nb;
    for (size_t e = 0; e < d->nerrors; e++) { /* index + 1, 0 for none */
        uint32_t *ref[3] = {&d->errors[e].where, &d->errors[e].alloc, &d->errors[e].free};
        for (int k = 0; k < 3; k++)
            if (*ref[k])
                *ref[k] = to[*ref[k] - 1] == SIZE_MAX ? 0 : (uint32_t)to[*ref[k] - 1] + 1;
    }
    for (size_t i = 0; i < d->ntimeline; i++) {
        dpoint_t *p = &d->timeline[i];
        uint32_t k = 0;
        for (uint32_t j = 0; j < p->nsites; j++) {
            dtsite_t x = d->tsites[p->first + j];
            if (to[x.site] != SIZE_MAX) {
                x.site = (uint32_t)to[x.site];
                d->tsites[p->first + k++] = x;
            }
        }
        p->nsites = k;
    }
    if (d->leak_check)
        for (unsigned k = 0; k < DKIND_N; k++) {
            d->kind_blocks[k] = d->kind_bytes[k] = 0;
            for (size_t i = 0; i < d->nsites; i++) {
                d->kind_blocks[k] += d->sites[i].kind_blocks[k];
                d->kind_bytes[k] += d->sites[i].kind_bytes[k];
            }
        }
    free(to);
    return true;
}

void dump_free(dump_t *d) {
    for (size_t i = 0; i < d->nmodules; i++) {
        free(d->modules[i].build_id);
        free(d->modules[i].path);
        free(d->modules[i].shown);
    }
    free(d->modules);
    for (size_t i = 0; i < d->npycodes; i++) {
        free(d->pycodes[i].file);
        free(d->pycodes[i].name);
        free(d->pycodes[i].file_shown);
        free(d->pycodes[i].name_shown);
    }
    free(d->pycodes);
    free(d->python);
    free(d->program);
    free(d->mode);
    free(d->unwinder);
    free(d->reason);
    free(d->version);
    free(d->sites);
    free(d->classes);
    free(d->timeline);
    free(d->tsites);
    free(d->blocks);
    free(d->errors);
    free(d->node_ip);
    free(d->node_parent);
    free(d->text);
    free(d->path_shown);
    const char *path = d->path;
    memset(d, 0, sizeof *d);
    d->path = path;
}
