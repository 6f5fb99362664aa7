/* pyview.c: a Python program's call sites as a Python developer reads them.
 *
 * A dump of a CPython process has merged stacks: native frames, with the Python frames each
 * eval-loop call ran in its place. What a Python user asks first is "which line of my code", so
 * by default every reader shows the Python frames only (memray's default): the native frames of
 * a stack fold into the Python frame that called them, and call sites whose stacks become the
 * same are one site, every figure summed (leak kinds and pinned memory too). Stacks with no
 * Python frame at all (the interpreter starting, a native thread) keep their native frames.
 * `--native` keeps the merged stacks; `--by line` names a site by its innermost Python line
 * only (file and line, as tracemalloc's statistics('lineno') and Fil group; the function named
 * is one of the file's code objects at that line), `--by function` by its innermost Python
 * function.
 *
 * Code objects with the same file, name and first line (one freed and compiled again) are one. */
#define _GNU_SOURCE
#include "pyview.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const dump_t *cmp_dump;

static int by_code(const void *a, const void *b) {
    const dpycode_t *x = &cmp_dump->pycodes[*(const uint32_t *)a];
    const dpycode_t *y = &cmp_dump->pycodes[*(const uint32_t *)b];
    int c = strcmp(x->file, y->file);
    if (!c)
        c = strcmp(x->name, y->name);
    if (!c)
        c = (x->first > y->first) - (x->first < y->first);
    if (!c)
        c = (*(const uint32_t *)a > *(const uint32_t *)b) - (*(const uint32_t *)a < *(const uint32_t *)b);
    return c;
}

/* canon[i]: the first index of the code objects equal to i's (by_file: of the same file, for
 * sites named by file and line alone, as tracemalloc's are) */
static uint32_t *canonical_codes(const dump_t *d, bool by_file) {
    uint32_t *order = malloc((d->npycodes + 1) * sizeof *order);
    uint32_t *canon = malloc((d->npycodes + 1) * sizeof *canon);
    if (!order || !canon) {
        free(order);
        free(canon);
        return NULL;
    }
    for (uint32_t i = 0; i < d->npycodes; i++)
        order[i] = i;
    cmp_dump = d;
    qsort(order, d->npycodes, sizeof *order, by_code);
    for (size_t k = 0; k < d->npycodes; k++) {
        const dpycode_t *x = &d->pycodes[order[k]];
        const dpycode_t *p = k ? &d->pycodes[order[k - 1]] : NULL;
        bool same = p && strcmp(x->file, p->file) == 0 &&
                    (by_file || (strcmp(x->name, p->name) == 0 && x->first == p->first));
        canon[order[k]] = same ? canon[order[k - 1]] : order[k];
    }
    free(order);
    return canon;
}

/* ---- the new frame tree ---------------------------------------------------------------------- */
typedef struct tree_s {
    uint64_t *ip;
    uint32_t *parent;
    size_t n, cap;
    uint32_t *slot; /* hash of (parent, ip) -> node */
    size_t scap;
} tree_t;

static size_t node_hash(uint32_t parent, uint64_t ip) {
    uint64_t h = (uint64_t)parent * 0x9E3779B97F4A7C15ULL ^ ip * 0xC2B2AE3D27D4EB4FULL;
    return (size_t)(h ^ (h >> 29));
}

static bool tree_grow(tree_t *t) {
    size_t scap = t->scap ? t->scap * 2 : 1024;
    uint32_t *s = calloc(scap, sizeof *s);
    if (!s)
        return false;
    for (size_t k = 1; k <= t->n; k++) {
        size_t j = node_hash(t->parent[k], t->ip[k]) & (scap - 1);
        while (s[j])
            j = (j + 1) & (scap - 1);
        s[j] = (uint32_t)k;
    }
    free(t->slot);
    t->slot = s;
    t->scap = scap;
    return true;
}

static uint32_t tree_node(tree_t *t, uint32_t parent, uint64_t ip) {
    if ((t->n + 1) * 2 > t->scap && !tree_grow(t))
        return UINT32_MAX;
    size_t j = node_hash(parent, ip) & (t->scap - 1);
    for (uint32_t k; (k = t->slot[j]) != 0; j = (j + 1) & (t->scap - 1))
        if (t->parent[k] == parent && t->ip[k] == ip)
            return k;
    if (t->n + 2 > t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 1024;
        uint64_t *ip2 = realloc(t->ip, cap * sizeof *ip2);
        if (!ip2)
            return UINT32_MAX;
        t->ip = ip2;
        uint32_t *p2 = realloc(t->parent, cap * sizeof *p2);
        if (!p2)
            return UINT32_MAX;
        t->parent = p2;
        t->cap = cap;
    }
    uint32_t k = (uint32_t)++t->n;
    t->ip[k] = ip;
    t->parent[k] = parent;
    t->slot[j] = k;
    return k;
}

/* ---- merging sites ----------------------------------------------------------------------------- */
static double sq(uint64_t v) {
    return (double)v * (double)v;
}

typedef struct acc_s {
    double var[6]; /* the sd fields' squares */
} acc_t;

static void add_site(dsite_t *to, acc_t *a, const dsite_t *s) {
    to->alloc_count += s->alloc_count;
    to->alloc_bytes += s->alloc_bytes;
    to->granted_bytes += s->granted_bytes;
    to->free_count += s->free_count;
    to->free_bytes += s->free_bytes;
    to->live_count += s->live_count;
    to->live_bytes += s->live_bytes;
    to->max_live_bytes += s->max_live_bytes; /* an upper bound: the sites' maxima need not meet */
    to->peak_live_bytes += s->peak_live_bytes;
    to->temporary += s->temporary;
    to->samples += s->samples;
    to->pinned_bytes += s->pinned_bytes;
    a->var[0] += sq(s->sd_alloc_count);
    a->var[1] += sq(s->sd_alloc_bytes);
    a->var[2] += sq(s->sd_live_count);
    a->var[3] += sq(s->sd_live_bytes);
    a->var[4] += sq(s->sd_peak_bytes);
    a->var[5] += sq(s->sd_temporary);
    for (int k = 0; k < DUMP_NHIST; k++) {
        to->size_hist[k] += s->size_hist[k];
        to->life_hist[k] += s->life_hist[k];
    }
    for (int k = 0; k < DKIND_N; k++) {
        to->kind_blocks[k] += s->kind_blocks[k];
        to->kind_bytes[k] += s->kind_bytes[k];
    }
    to->held_bytes += s->held_bytes;
    to->leak_blocks += s->leak_blocks;
    to->leak_bytes += s->leak_bytes;
}

static void finish_site(dsite_t *s, const acc_t *a) {
    s->sd_alloc_count = (uint64_t)llround(sqrt(a->var[0]));
    s->sd_alloc_bytes = (uint64_t)llround(sqrt(a->var[1]));
    s->sd_live_count = (uint64_t)llround(sqrt(a->var[2]));
    s->sd_live_bytes = (uint64_t)llround(sqrt(a->var[3]));
    s->sd_peak_bytes = (uint64_t)llround(sqrt(a->var[4]));
    s->sd_temporary = (uint64_t)llround(sqrt(a->var[5]));
}

typedef struct key_s {
    uint32_t node, gen, special; /* special: sites 0..2 stay apart (their id + 1) */
    uint32_t idx;                 /* the new site */
} gkey_t;

static size_t key_hash(const gkey_t *k) {
    uint64_t h = ((uint64_t)k->node << 32 | k->gen) * 0x9E3779B97F4A7C15ULL ^ k->special;
    return (size_t)(h ^ (h >> 31));
}

bool dump_python_view(dump_t *d, enum py_group by, char *err, size_t errlen) {
    uint32_t *canon = canonical_codes(d, false);
    uint32_t *file_of = by == PYGROUP_LINE ? canonical_codes(d, true) : NULL;
    /* --by line: a (file, line) is named by the first code object seen there */
    uint64_t *line_key = NULL, *line_ip = NULL;
    size_t lcap = 16;
    while (lcap < 2 * (d->nsites + 1))
        lcap *= 2;
    if (file_of) {
        line_key = calloc(lcap, sizeof *line_key);
        line_ip = calloc(lcap, sizeof *line_ip);
    }
    tree_t t = {0};
    gkey_t *keys = NULL;
    dsite_t *sites = malloc((d->nsites + 1) * sizeof *sites);
    acc_t *acc = calloc(d->nsites + 1, sizeof *acc);
    uint32_t *map = malloc((d->nsites + 1) * sizeof *map); /* old site index -> new */
    uint64_t *ips = malloc(1024 * sizeof *ips), *keep = malloc(1024 * sizeof *keep);
    size_t kcap = 16;
    while (kcap < 2 * (d->nsites + 1))
        kcap *= 2;
    keys = calloc(kcap, sizeof *keys);
    size_t nsites = 0;
    t.cap = 1024;
    t.ip = malloc(t.cap * sizeof *t.ip);
    t.parent = malloc(t.cap * sizeof *t.parent);
    bool ok = canon && sites && acc && map && ips && keep && keys && t.ip && t.parent &&
              (by != PYGROUP_LINE || (file_of && line_key && line_ip)) && tree_grow(&t);
    for (size_t i = 0; ok && i < d->nsites; i++) {
        const dsite_t *s = &d->sites[i];
        uint32_t n = dump_frames(d, s, ips, 1024);
        if (n > 1024)
            n = 1024;
        uint32_t m = 0;
        bool any_py = false;
        for (uint32_t k = 0; k < n; k++)
            any_py |= dump_ip_is_py(ips[k]);
        for (uint32_t k = 0; k < n; k++) {
            uint64_t ip = ips[k];
            if (any_py && !dump_ip_is_py(ip))
                continue;
            if (dump_ip_is_py(ip)) {
                uint32_t c = canon[dump_py_code(ip)];
                uint32_t line = by == PYGROUP_FUNCTION ? d->pycodes[c].first : dump_py_line(ip);
                ip = DUMP_PYFRAME(c, line);
                if (by == PYGROUP_LINE) {
                    uint64_t key = DUMP_PYFRAME(file_of[c], line);
                    size_t j = (size_t)(key * 0x9E3779B97F4A7C15ULL >> 20) & (lcap - 1);
                    while (line_key[j] && line_key[j] != key)
                        j = (j + 1) & (lcap - 1);
                    if (!line_key[j]) {
                        line_key[j] = key;
                        line_ip[j] = ip;
                    }
                    ip = line_ip[j];
                }
            }
            keep[m++] = ip;
            if (any_py && by != PYGROUP_STACK)
                break; /* the innermost Python frame alone */
        }
        uint32_t node = 0;
        for (uint32_t k = m; ok && k-- > 0;)
            ok = (node = tree_node(&t, node, keep[k])) != UINT32_MAX;
        if (!ok)
            break;
        gkey_t want = {node, s->gen, s->id <= 2 ? s->id + 1 : 0, 0};
        size_t j = key_hash(&want) & (kcap - 1);
        while (keys[j].idx &&
               !(keys[j].node == node && keys[j].gen == s->gen && keys[j].special == want.special))
            j = (j + 1) & (kcap - 1);
        if (!keys[j].idx) {
            want.idx = (uint32_t)++nsites; /* 1-based in the table */
            keys[j] = want;
            dsite_t *ns = &sites[nsites - 1];
            memset(ns, 0, sizeof *ns);
            ns->id = s->id;
            ns->gen = s->gen;
            ns->node = node;
            ns->nframes = m;
        }
        uint32_t to = keys[j].idx - 1;
        if (s->id < sites[to].id)
            sites[to].id = s->id;
        add_site(&sites[to], &acc[to], s);
        if (by == PYGROUP_STACK || !any_py) /* a stack cut at TALLY_DEPTH stays marked */
            sites[to].truncated |= s->truncated;
        map[i] = to;
    }
    if (!ok) {
        snprintf(err, errlen, "out of memory");
    } else {
        for (size_t i = 0; i < nsites; i++)
            finish_site(&sites[i], &acc[i]);
        for (size_t b = 0; b < d->nblocks; b++)
            d->blocks[b].site = map[d->blocks[b].site];
        for (size_t e = 0; e < d->nerrors; e++) { /* index + 1, 0 for none */
            derror_t *er = &d->errors[e];
            if (er->where)
                er->where = map[er->where - 1] + 1;
            if (er->alloc)
                er->alloc = map[er->alloc - 1] + 1;
            if (er->free)
                er->free = map[er->free - 1] + 1;
        }
        /* a detailed timeline point's sites: those merged into one are summed */
        for (size_t i = 0; i < d->ntimeline; i++) {
            dpoint_t *p = &d->timeline[i];
            dtsite_t *v = d->tsites + p->first;
            uint32_t n = 0;
            for (uint32_t k = 0; k < p->nsites; k++) {
                dtsite_t x = v[k];
                x.site = map[x.site];
                uint32_t j = 0;
                while (j < n && v[j].site != x.site)
                    j++;
                if (j < n) {
                    v[j].live_bytes += x.live_bytes;
                    v[j].alloc_bytes += x.alloc_bytes;
                } else {
                    v[n++] = x;
                }
            }
            p->nsites = n;
        }
        free(d->sites);
        d->sites = sites;
        d->nsites = nsites;
        sites = NULL;
        free(d->node_ip);
        free(d->node_parent);
        t.ip[0] = 0;
        t.parent[0] = 0;
        d->node_ip = t.ip;
        d->node_parent = t.parent;
        d->nnodes = t.n;
        t.ip = NULL;
        t.parent = NULL;
    }
    free(canon);
    free(file_of);
    free(line_key);
    free(line_ip);
    free(t.ip);
    free(t.parent);
    free(t.slot);
    free(keys);
    free(sites);
    free(acc);
    free(map);
    free(ips);
    free(keep);
    return ok;
}
