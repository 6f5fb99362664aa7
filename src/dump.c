/* dump.c: writes the profiler's dump, the text format of docs/FORMAT.md, and decides when:
 * at exit when TALLY_OUT is set, and on request (tally_dump). Nothing here symbolizes: the dump
 * carries the module map with build-ids and raw return addresses, and `tally` symbolizes
 * offline. The text is compressed as one zstd frame when libzstd.so.1 can be loaded. A dump goes
 * to a temporary file in the target's directory, created 0600 without following symlinks, and
 * is renamed into place when complete, so a reader never sees half a dump. Exports tally_dump
 * and prof_dump_at_exit. */
#include "prof.h"
#include "tally.h"

#include <dlfcn.h>
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <link.h>
#include <linux/futex.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define DUMP_BUF (64 * 1024)

extern char *program_invocation_name;

enum dump_reason { DUMP_EXIT, DUMP_API, DUMP_SIGNAL, DUMP_INTERVAL, DUMP_FATAL };
static const char *const reason_name[] = {"exit", "api", "signal", "interval", "fatal"};
static int fatal_signal; /* the signal a DUMP_FATAL dump was written on */

static pid_t start_pid;

/* Bytes a reader could mistake for separators are written %XX. */
void dump_put_enc(fmt_t *f, const char *s) {
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c <= ' ' || c == '%' || c == ',' || c == '=' || c >= 0x7f) {
            fmt_char(f, '%');
            fmt_char(f, "0123456789ABCDEF"[c >> 4]);
            fmt_char(f, "0123456789ABCDEF"[c & 15]);
        } else {
            fmt_char(f, (char)c);
        }
    }
}

static void kv(fmt_t *f, const char *key, uint64_t v) {
    fmt_char(f, ' ');
    fmt_str(f, key);
    fmt_char(f, '=');
    fmt_u64(f, v);
}

static void put_i64(fmt_t *f, int64_t v) {
    if (v < 0) {
        fmt_char(f, '-');
        fmt_u64(f, (uint64_t)(-(v + 1)) + 1);
    } else {
        fmt_u64(f, (uint64_t)v);
    }
}

static void kvs(fmt_t *f, const char *key, int64_t v) {
    fmt_char(f, ' ');
    fmt_str(f, key);
    fmt_char(f, '=');
    put_i64(f, v);
}

/* Counters that are 0 are left out (FORMAT.md: a missing field is 0). */
static void kv0(fmt_t *f, const char *key, uint64_t v) {
    if (v)
        kv(f, key, v);
}

static void kvs0(fmt_t *f, const char *key, int64_t v) {
    if (v)
        kvs(f, key, v);
}

/* A histogram as bucket:count pairs of the non-zero buckets; nothing at all when empty. */
static void hist(fmt_t *f, const char *key, const uint64_t *h) {
    bool any = false;
    for (unsigned b = 0; b < PROF_NHIST; b++) {
        uint64_t v = __atomic_load_n(&h[b], __ATOMIC_RELAXED);
        if (!v)
            continue;
        if (!any) {
            fmt_char(f, ' ');
            fmt_str(f, key);
            fmt_char(f, '=');
        } else {
            fmt_char(f, ',');
        }
        fmt_u64(f, b);
        fmt_char(f, ':');
        fmt_u64(f, v);
        any = true;
    }
}

/* ---- the module map ------------------------------------------------------------------------
 * Taken at dump time with dl_iterate_phdr, plus the modules unloaded since start: the dlclose
 * wrapper (init.c) records a module before it goes, so that frames captured while it was
 * loaded can still be symbolized. */
typedef struct module_s {
    uintptr_t base, lo, hi;
    uint32_t gen_lo, gen_hi; /* the generations whose frames it holds (prof.h) */
    bool superseded;         /* gone, and another module was since loaded over it */
    char build_id[65]; /* hex, or "-" */
    char path[512];
} module_t;

#define GONE_MAX 256
static module_t *gone; /* ring of unloaded modules, under gone_lock */
static unsigned ngone;
static pthread_mutex_t gone_lock = PTHREAD_MUTEX_INITIALIZER;

/* Loaded modules whose frames start at a generation above 0: those loaded over a module that
 * was unloaded, under gone_lock. */
typedef struct lgen_s {
    uintptr_t base, lo, hi;
    uint32_t gen_lo;
} lgen_t;
static lgen_t *lgen;
static unsigned nlgen;

/* The entry of t for the module at base covering [lo, hi), or -1. */
static int lgen_find(const lgen_t *t, unsigned n, uintptr_t base, uintptr_t lo, uintptr_t hi) {
    for (unsigned i = 0; i < n; i++)
        if (t[i].base == base && t[i].lo == lo && t[i].hi == hi)
            return (int)i;
    return -1;
}

static void build_id_of(struct dl_phdr_info *info, char *out) {
    strcpy(out, "-");
    for (int i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        if (ph->p_type != PT_NOTE)
            continue;
        const char *p = (const char *)(info->dlpi_addr + ph->p_vaddr);
        const char *end = p + ph->p_memsz;
        while (p + sizeof(ElfW(Nhdr)) <= end) {
            const ElfW(Nhdr) *n = (const ElfW(Nhdr) *)p;
            const char *name = p + sizeof *n;
            const unsigned char *desc =
                (const unsigned char *)(name + ((n->n_namesz + 3) & ~3u));
            if ((const char *)desc + n->n_descsz > end)
                break;
            if (n->n_type == NT_GNU_BUILD_ID && n->n_namesz == 4 && memcmp(name, "GNU", 4) == 0 &&
                n->n_descsz <= 32) {
                for (unsigned k = 0; k < n->n_descsz; k++) {
                    out[2 * k] = "0123456789abcdef"[desc[k] >> 4];
                    out[2 * k + 1] = "0123456789abcdef"[desc[k] & 15];
                }
                out[2 * n->n_descsz] = '\0';
                return;
            }
            p = (const char *)desc + ((n->n_descsz + 3) & ~3u);
        }
    }
}

/* false for objects that are not worth listing (no PT_LOAD, the vDSO) */
static bool module_of(struct dl_phdr_info *info, module_t *m) {
    uintptr_t lo, hi;
    prof_load_range(info, &lo, &hi);
    const char *path = info->dlpi_name;
    if (hi == 0 || (path && strncmp(path, "linux-vdso", 10) == 0))
        return false;
    m->base = info->dlpi_addr;
    m->lo = lo;
    m->hi = hi;
    m->gen_lo = m->gen_hi = 0;
    m->superseded = false;
    build_id_of(info, m->build_id);
    if (!path || !*path) { /* the main program */
        ssize_t n = readlink("/proc/self/exe", m->path, sizeof m->path - 1);
        if (n <= 0) {
            strncpy(m->path, program_invocation_name, sizeof m->path - 1);
            n = (ssize_t)strlen(m->path);
        }
        m->path[n] = '\0';
    } else {
        strncpy(m->path, path, sizeof m->path - 1);
        m->path[sizeof m->path - 1] = '\0';
    }
    return true;
}

static void put_module_rec(fmt_t *f, const module_t *m, bool unloaded) {
    fmt_str(f, "module base=");
    fmt_hex(f, m->base);
    fmt_str(f, " lo=");
    fmt_hex(f, m->lo);
    fmt_str(f, " hi=");
    fmt_hex(f, m->hi);
    fmt_str(f, " build_id=");
    fmt_str(f, m->build_id);
    kv0(f, "gen_lo", m->gen_lo);
    if (unloaded) {
        fmt_str(f, " unloaded=1");
        kv(f, "gen_hi", m->gen_hi);
    }
    fmt_str(f, " path=");
    dump_put_enc(f, m->path);
    fmt_char(f, '\n');
}

typedef struct mod_walk_s {
    fmt_t *f;
    const module_t *find; /* put_module: mark a gone module that is loaded again */
    bool found;
    const lgen_t *lgen;   /* a copy, for put_module */
    unsigned nlgen;
} mod_walk_t;

static int put_module(struct dl_phdr_info *info, size_t size, void *arg) {
    (void)size;
    mod_walk_t *w = arg;
    module_t m;
    if (module_of(info, &m)) {
        int k = lgen_find(w->lgen, w->nlgen, m.base, m.lo, m.hi);
        if (k >= 0)
            m.gen_lo = w->lgen[k].gen_lo;
        put_module_rec(w->f, &m, false);
    }
    return 0;
}

static int find_module(struct dl_phdr_info *info, size_t size, void *arg) {
    (void)size;
    mod_walk_t *w = arg;
    if (info->dlpi_addr == w->find->base && info->dlpi_name &&
        strcmp(info->dlpi_name, w->find->path) == 0)
        w->found = true;
    return w->found;
}

/* gone_lock is never held across dl_iterate_phdr (which holds the loader's lock, and
 * remember_module runs inside it): the list is copied out first. */
static void put_modules(fmt_t *f) {
    size_t sz = GONE_MAX * sizeof(module_t), lsz = GONE_MAX * sizeof(lgen_t);
    module_t *copy = os_map(sz);
    lgen_t *lcopy = os_map(lsz);
    unsigned n = 0, nl = 0;
    if (copy && lcopy) {
        lib_lock(&gone_lock);
        n = ngone < GONE_MAX ? ngone : GONE_MAX;
        if (n)
            memcpy(copy, gone, n * sizeof *copy);
        nl = nlgen;
        if (nl)
            memcpy(lcopy, lgen, nl * sizeof *lcopy);
        lib_unlock(&gone_lock);
    }
    mod_walk_t w = {.f = f, .lgen = lcopy, .nlgen = nl};
    unwind_iterate_phdr(put_module, &w);
    for (unsigned i = 0; i < n; i++) {
        mod_walk_t q = {.find = &copy[i]};
        unwind_iterate_phdr(find_module, &q); /* dlclose may not have unloaded it after all */
        if (!q.found)
            put_module_rec(f, &copy[i], true);
    }
    if (copy)
        os_unmap(copy, sz);
    if (lcopy)
        os_unmap(lcopy, lsz);
}

typedef struct close_walk_s {
    uintptr_t base;
    const char *name;
    module_t m;
    bool found;
} close_walk_t;

static int remember_module(struct dl_phdr_info *info, size_t size, void *arg) {
    (void)size;
    close_walk_t *c = arg;
    if (info->dlpi_addr != c->base || !info->dlpi_name || strcmp(info->dlpi_name, c->name) != 0)
        return 0;
    c->found = module_of(info, &c->m);
    return 1;
}

/* From the dlclose wrapper, before the real dlclose: remember what the handle names. */
void prof_module_closing(uintptr_t base, const char *name, uintptr_t *lo, uintptr_t *hi) {
    *lo = *hi = 0;
    if (!prof.started || !name || !*name)
        return;
    close_walk_t c = {.base = base, .name = name};
    prof_enter();
    unwind_iterate_phdr(remember_module, &c);
    if (c.found) {
        *lo = c.m.lo;
        *hi = c.m.hi;
        lib_lock(&gone_lock);
        if (!gone)
            gone = os_map(GONE_MAX * sizeof *gone);
        int k = lgen_find(lgen, nlgen, c.m.base, c.m.lo, c.m.hi);
        c.m.gen_lo = k >= 0 ? lgen[k].gen_lo : 0;
        c.m.gen_hi = atomic_load(&prof.gen);
        if (k >= 0)
            lgen[k] = lgen[--nlgen]; /* loaded no more */
        if (gone) {
            /* The same file at the same place in the same generations is listed once. */
            module_t *dup = NULL;
            for (unsigned i = 0; i < ngone && i < GONE_MAX; i++)
                if (gone[i].base == c.m.base && strcmp(gone[i].path, c.m.path) == 0 &&
                    strcmp(gone[i].build_id, c.m.build_id) == 0 && gone[i].gen_lo == c.m.gen_lo)
                    dup = &gone[i];
            if (dup) {
                dup->gen_hi = c.m.gen_hi;
                dup->superseded = false;
            } else {
                gone[ngone++ % GONE_MAX] = c.m;
            }

        }
        lib_unlock(&gone_lock);
    }
    prof_leave();
}

/* From the walker (unwind.c), outside the loader's lock, once per new return address while
 * some module has been unloaded. A module loaded where an unloaded one was, that is not the same
 * file at the same place, makes the addresses there ambiguous: a new generation starts, and
 * stacks taken from now on are told apart from older ones by it (prof.h). */
void prof_module_seen(uintptr_t base, uintptr_t lo, uintptr_t hi, const char *build_id) {
    lib_lock(&gone_lock);
    bool known = lgen_find(lgen, nlgen, base, lo, hi) >= 0;
    if (!lgen)
        lgen = os_map(GONE_MAX * sizeof *lgen);
    unsigned ng = ngone < GONE_MAX ? ngone : GONE_MAX;
    bool clash = false;
    for (unsigned k = 0; k < ng && !known && lgen; k++) {
        module_t *g = &gone[k];
        if (g->superseded || g->hi <= lo || hi <= g->lo)
            continue;
        if (g->base == base && strcmp(g->build_id, build_id) == 0 && strcmp(build_id, "-") != 0)
            continue; /* the same code at the same addresses */
        g->superseded = true;
        clash = true;
    }
    if (clash && nlgen < GONE_MAX)
        lgen[nlgen++] = (lgen_t){base, lo, hi, atomic_fetch_add(&prof.gen, 1) + 1};
    lib_unlock(&gone_lock);
}

void prof_build_id(const struct dl_phdr_info *info, char out[65]) {
    build_id_of((struct dl_phdr_info *)info, out);
}

void prof_dump_fork_prepare(void) {
    lib_lock(&gone_lock);
}

void prof_dump_fork_parent(void) {
    lib_unlock(&gone_lock);
}

/* ---- pinned memory --------------------------------------------------------------------------
 * A pool's 16 KiB is shared among the call sites of its live blocks, block by block, with
 * integer shares that add up to the pool's size exactly. Blocks the profiler does not know
 * (untracked) go to site 0. In `sample` mode each sampled block stands for its weight in blocks
 * of its pool's share. */
typedef struct pin_ctx_s {
    uint64_t *pinned;   /* per site */
    uint16_t *cached;   /* per pool: blocks held in bins */
    uint32_t nsites;
    uint64_t npools;
    uint64_t pool_bytes;  /* pools shared out */
    uint64_t large_bytes; /* granted bytes of tracked large blocks (weighted) */
    const struct tally_stats *st;
} pin_ctx_t;

static void count_cached(heap_t *h, void *arg) {
    pin_ctx_t *c = arg;
    for (unsigned k = 0; k < NCLASSES; k++) {
        bin_t *bn = &h->bin[k];
        for (void **t = bn->low; t && t < bn->top && t < bn->high; t++) {
            uintptr_t i = ((uintptr_t)*t - g.base) / POOL_SIZE;
            if (i < c->npools && c->cached[i] < UINT16_MAX)
                c->cached[i]++;
        }
    }
}

/* all mode only: in sample mode pools hold no tracked block (sampled small requests are
 * promoted), so pool memory is not shared out and pinned_pool_bytes stays 0 (FORMAT.md). */
static void pin_pools(pin_ctx_t *c) {
    if (prof.mode != PROFILE_ALL)
        return;
    for (uint64_t i = 0; i < c->npools; i++) {
        const pool_t *p = (const pool_t *)(g.base + i * POOL_SIZE);
        if (p->state != POOL_OWNED && p->state != POOL_FULL && p->state != POOL_UNOWNED)
            continue;
        uint64_t used = p->used, pend = pool_pending_remote(p) + c->cached[i];
        uint64_t live = used > pend ? used - pend : 0;
        c->pool_bytes += POOL_SIZE;
        if (live == 0) {
            c->pinned[0] += POOL_SIZE; /* only free blocks cached in bins keep it */
            continue;
        }
        const ptag_t *t = atomic_load_explicit(&((pool_t *)p)->prof, memory_order_acquire);
        uint64_t k = 0; /* live blocks shared out so far */
        if (t) {
            for (uint32_t b = 0; b < p->carved && k < live; b++) {
                uint32_t id = ptag_site(t[b]);
                if (!id || id >= c->nsites)
                    continue;
                c->pinned[id] += POOL_SIZE * (k + 1) / live - POOL_SIZE * k / live;
                k++;
            }
        }
        if (k < live)
            c->pinned[0] += POOL_SIZE - POOL_SIZE * k / live; /* the untracked rest */
    }
}

static void pin_large(const lent_t *e, void *arg) {
    pin_ctx_t *c = arg;
    if (e->site >= c->nsites)
        return;
    if (e->cls != LENT_LARGE && e->cls < NCLASSES) {
        /* A promoted sample (sample mode): it stands for weight blocks of its class, each
         * holding the class's pool bytes per live block. */
        const struct tally_class_stats *k = &c->st->classes[e->cls];
        double per_block = (double)k->bytes_held / (double)(k->blocks_in_use ? k->blocks_in_use : 1);
        c->pinned[e->site] += (uint64_t)(prof_inv_p(e->size) * per_block + 0.5);
        return;
    }
    uint64_t granted = large_usable_size((void *)e->addr);
    if (prof.mode != PROFILE_ALL)
        granted = (uint64_t)(prof_inv_p(e->size) * (double)granted + 0.5);
    c->pinned[e->site] += granted;
    c->large_bytes += granted;
}

/* ---- live blocks (all mode, at exit) ---------------------------------------------------------- */
static void put_block_fields(fmt_t *f, uint32_t site, uintptr_t addr, uint64_t size) {
    fmt_str(f, "block");
    kv(f, "site", site);
    fmt_str(f, " addr=");
    fmt_hex(f, addr);
    kv(f, "size", size);
}

static void put_block(fmt_t *f, uint32_t site, uintptr_t addr, uint64_t size) {
    put_block_fields(f, site, addr, size);
    fmt_char(f, '\n');
}

static void put_classified(uintptr_t addr, uint64_t size, uint32_t site, unsigned kind,
                           unsigned heur, void *arg) {
    static const char *const kinds[LEAK_NKINDS] = {"definite", "indirect", "possible",
                                                   "reachable"};
    fmt_t *f = arg;
    put_block_fields(f, site, addr, size);
    fmt_str(f, " kind=");
    fmt_str(f, kinds[kind]);
    if (heur) {
        fmt_str(f, " heuristic=");
        fmt_str(f, leak_heuristic_name(heur));
    }
    fmt_char(f, '\n');
}

static void blocks_large(const lent_t *e, void *arg) {
    put_block(arg, e->site, e->addr, e->size);
}

static void blocks_pools(uint32_t site, uintptr_t addr, uint64_t size, void *arg) {
    put_block(arg, site, addr, size);
}

/* sqrt(var) * scale, rounded; a variance that sums to a little below 0 is 0. */
static uint64_t sd_of(double var, double scale) {
    if (!(var > 0))
        return 0;
    double r;
    __asm__("sqrtsd %1, %0" : "=x"(r) : "x"(var)); /* the library links no libm */
    return (uint64_t)(r * scale + 0.5);
}

/* ---- stacks as a prefix tree -----------------------------------------------------------------
 * Stacks share their outer frames (main, the event loop, the interpreter), so the dump writes
 * each (parent, return address) node once, parents first: `frame parent=P ip=...`, its id one
 * more than the last one's. A stack is its innermost node.
 * The sites are taken in the order of their stacks read from the outermost frame. Stacks that
 * share outer frames are then next to each other: what a stack shares with the tree so far is
 * what it shares with the stack before it, and every frame after that is a new node. So no table
 * of nodes is needed (its probes, missing the cache, were most of a dump's time: the CPython
 * workload's 32,000 stacks of 1.2 million frames are 152,000 nodes). */
typedef struct tree_s {
    uint32_t next_id;
    uint32_t last_n; /* the stack put last, from its outermost frame */
    uintptr_t last_ip[PROF_MAX_DEPTH];
    uint32_t last_node[PROF_MAX_DEPTH];
} tree_t;

/* The node of frames[0..n) (innermost first), writing the nodes that are new. */
static uint32_t tree_put(tree_t *t, fmt_t *f, const uintptr_t *frames, uint32_t n) {
    uint32_t parent = 0, d = 0; /* d: depth from the outermost frame */
    if (n > PROF_MAX_DEPTH)
        n = PROF_MAX_DEPTH;
    while (d < n && d < t->last_n && t->last_ip[d] == frames[n - 1 - d])
        parent = t->last_node[d++];
    for (uint32_t k = n - d; k-- > 0; d++) {
        uintptr_t ip = frames[k];
        fmt_str(f, "frame");
        kv(f, "parent", parent);
        if (ip & PY_FRAME_TAG) { /* a Python frame: its code object and line */
            fmt_str(f, " py=");
            fmt_u64(f, (ip & ~PY_FRAME_TAG) >> PY_LINE_BITS);
            fmt_char(f, ':');
            fmt_u64(f, ip & ((1u << PY_LINE_BITS) - 1));
        } else {
            fmt_str(f, " ip=");
            fmt_hex(f, ip);
        }
        fmt_char(f, '\n');
        parent = t->next_id++;
        t->last_ip[d] = ip;
        t->last_node[d] = parent;
    }
    t->last_n = n;
    return parent;
}

/* A site to write, as the sort of the stacks reads it (not from its record, which would miss
 * the cache at every look). */
typedef struct stack_ref_s {
    const uintptr_t *f; /* its frames, innermost first */
    uint32_t n, id;
} stack_ref_t;

/* The frame of r at depth d from the outermost, 0 past its last (no frame is 0). */
static inline uintptr_t frame_at_depth(const stack_ref_t *r, uint32_t d) {
    return d < r->n ? r->f[r->n - 1 - d] : 0;
}

/* a and b, equal above depth d, by their stacks from there: negative, zero or positive. */
static int stack_order(const stack_ref_t *a, const stack_ref_t *b, uint32_t d) {
    for (;; d++) {
        uintptr_t x = frame_at_depth(a, d), y = frame_at_depth(b, d);
        if (x != y)
            return x < y ? -1 : 1;
        if (x == 0)
            return 0;
    }
}

static inline void swap_refs(stack_ref_t *a, stack_ref_t *b) {
    stack_ref_t t = *a;
    *a = *b;
    *b = t;
}

/* r[0..n), equal above depth d, sorted by their stacks (a multikey quicksort: each frame is read
 * about once per level of the partition, not once per comparison as a sort of whole stacks reads
 * the outer frames that most stacks share). The two smaller parts are sorted by recursion, so it
 * goes at most log2(n) calls deep; the largest by the loop. */
static void sort_by_stack(stack_ref_t *r, size_t n, uint32_t d) {
    while (n > 1) {
        if (n < 12) {
            for (size_t i = 1; i < n; i++)
                for (size_t j = i; j > 0 && stack_order(&r[j], &r[j - 1], d) < 0; j--)
                    swap_refs(&r[j], &r[j - 1]);
            return;
        }
        uintptr_t x = frame_at_depth(&r[0], d), y = frame_at_depth(&r[n / 2], d),
                  z = frame_at_depth(&r[n - 1], d);
        uintptr_t v = x < y ? (y < z ? y : x < z ? z : x) : (x < z ? x : y < z ? z : y);
        size_t lt = 0, i = 0, gt = n;
        while (i < gt) {
            uintptr_t k = frame_at_depth(&r[i], d);
            if (k < v)
                swap_refs(&r[lt++], &r[i++]);
            else if (k > v)
                swap_refs(&r[i], &r[--gt]);
            else
                i++;
        }
        size_t nl = lt, ne = gt - lt, ng = n - gt;
        if (ne >= nl && ne >= ng) {
            sort_by_stack(r, nl, d);
            sort_by_stack(r + gt, ng, d);
            if (v == 0)
                return; /* stacks that end here are equal */
            r += lt;
            n = ne;
            d++;
        } else if (nl >= ng) {
            if (v != 0)
                sort_by_stack(r + lt, ne, d + 1);
            sort_by_stack(r + gt, ng, d);
            n = nl;
        } else {
            sort_by_stack(r, nl, d);
            if (v != 0)
                sort_by_stack(r + lt, ne, d + 1);
            r += gt;
            n = ng;
        }
    }
}

/* ---- the whole dump ------------------------------------------------------------------------------ */
static uint64_t realtime_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Site id's record, its stack node `top`. */
static void put_site(fmt_t *f, uint32_t id, uint32_t top, const pin_ctx_t *pc,
                     const leak_result_t *lr) {
    const site_t *s = prof_site(id);
    fmt_str(f, "site");
    kv(f, "id", id);
    kv(f, "frame", top);
    kv(f, "depth", s->nframes);
    kv0(f, "truncated", s->truncated);
    kv0(f, "alloc_count", __atomic_load_n(&s->alloc_count, __ATOMIC_RELAXED));
    kv0(f, "alloc_bytes", __atomic_load_n(&s->alloc_bytes, __ATOMIC_RELAXED));
    kv0(f, "granted_bytes", __atomic_load_n(&s->granted_bytes, __ATOMIC_RELAXED));
    kv0(f, "free_count", __atomic_load_n(&s->free_count, __ATOMIC_RELAXED));
    kv0(f, "free_bytes", __atomic_load_n(&s->free_bytes, __ATOMIC_RELAXED));
    kvs0(f, "live_count", site_live_count(s));
    kvs0(f, "live_bytes", site_live_bytes(s));
    kvs0(f, "max_live_bytes", __atomic_load_n(&s->max_live_bytes, __ATOMIC_RELAXED));
    kvs0(f, "peak_live_bytes", prof_site_peak_live(s));
    kv0(f, "temporary", __atomic_load_n(&s->temporary, __ATOMIC_RELAXED));
    if (prof.mode != PROFILE_ALL) /* all mode: it is alloc_count */
        kv0(f, "samples", __atomic_load_n(&s->samples, __ATOMIC_RELAXED));
    kv0(f, "pinned_bytes", pc->pinned && pc->pinned[id] != UINT64_MAX ? pc->pinned[id] : 0);
    kv0(f, "gen", s->gen);
    if (prof.mode != PROFILE_ALL) { /* the standard deviations of the estimates */
        double cs = (double)prof.count_scale;
        kv0(f, "sd_alloc_count", sd_of(s->var_alloc_count, cs));
        kv0(f, "sd_alloc_bytes", sd_of(s->var_alloc_bytes, 1));
        kv0(f, "sd_live_count", sd_of(s->var_live_count, cs));
        kv0(f, "sd_live_bytes", sd_of(s->var_live_bytes, 1));
        kv0(f, "sd_peak_bytes", sd_of(prof_site_peak_var(s), 1));
        kv0(f, "sd_temporary", sd_of(s->var_temporary, cs));
    }
    if (lr->done && id < lr->nsites) {
        static const char *const kc[LEAK_NKINDS] = {"definite_count", "indirect_count",
                                                    "possible_count", "reachable_count"};
        static const char *const kb[LEAK_NKINDS] = {"definite_bytes", "indirect_bytes",
                                                    "possible_bytes", "reachable_bytes"};
        const leak_site_t *ls = &lr->sites[id];
        for (unsigned k = 0; k < LEAK_NKINDS; k++) {
            kv0(f, kc[k], ls->count[k]);
            kv0(f, kb[k], ls->bytes[k]);
        }
        kv0(f, "held_bytes", ls->held_bytes);
    }
    hist(f, "size_hist", s->size_hist);
    hist(f, "life_hist", s->life_hist);
    fmt_char(f, '\n');
}

/* A site an error names is written even with no allocation: its pinned figure is made non-zero
 * for the loop's test, and put_site leaves out a pinned figure of UINT64_MAX. */
static void want_site(uint32_t site, void *arg) {
    pin_ctx_t *c = arg;
    if (site && site < c->nsites && c->pinned[site] == 0)
        c->pinned[site] = UINT64_MAX;
}

static void write_dump(fmt_t *f, enum dump_reason why) {
    uint32_t nsites = atomic_load_explicit(&prof.nsites, memory_order_acquire);
    const leak_result_t *lr = leak_result(); /* done only inside dump_checked */
    uint64_t npools = (g.next_pool - g.base) / POOL_SIZE;
    prof_timeline_point();

    struct tally_stats st;
    if (why == DUMP_FATAL)
        stats_collect_pools(&st); /* glibc's figures take its lock, which the thread the signal
                                   * interrupted may hold: system_heap_bytes is 0 */
    else
        stats_collect(&st);

    /* Pinned memory first: it needs scratch arrays, mapped for the dump and unmapped after. */
    pin_ctx_t pc = {.nsites = nsites, .npools = npools, .st = &st};
    size_t pin_sz = ((size_t)nsites * sizeof(uint64_t) + 4095) & ~(size_t)4095;
    size_t cache_sz = ((size_t)npools * sizeof(uint16_t) + 4095) & ~(size_t)4095;
    pc.pinned = os_map(pin_sz);
    pc.cached = npools ? os_map(cache_sz) : NULL;
    if (pc.pinned && (pc.cached || !npools)) {
        heap_foreach(count_cached, &pc);
        pin_pools(&pc);
        prof_ltab_foreach(pin_large, &pc);
    }


    fmt_str(f, "tally-dump 3\n");
    fmt_str(f, "header program=");
    dump_put_enc(f, program_invocation_name);
    kv(f, "pid", (uint64_t)getpid());
    kv(f, "ppid", (uint64_t)getppid());
    fmt_str(f, " mode=");
    fmt_str(f, prof.mode == PROFILE_ALL ? "all" : "sample");
    kv(f, "sample_interval", prof.mode == PROFILE_ALL ? 0 : prof.rate);
    kv(f, "count_scale", prof.count_scale);
    kv(f, "depth", prof.depth);
    kv0(f, "gen", atomic_load(&prof.gen));
    fmt_str(f, " unwinder=");
    fmt_str(f, opt.unwind == UNWIND_FAST    ? "fast"
               : opt.unwind == UNWIND_CHECK ? "check"
               : prof.have_unwinder         ? "libunwind"
                                            : "caller");
    kv(f, "start_ns", prof.t0_real_ns);
    kv(f, "dump_ns", realtime_ns());
    kv(f, "duration_ns", prof_now_ns() - prof.t0_ns);
    fmt_str(f, " reason=");
    fmt_str(f, reason_name[why]);
    if (why == DUMP_FATAL)
        kv(f, "fatal_signal", (uint64_t)fatal_signal);
    python_put_header(f);
    if (opt.check)
        fmt_str(f, opt.check == CHECK_ABORT ? " check=abort" : " check=1"); /* quiet: 1 */
    fmt_str(f, " version=" TALLY_VERSION_STRING "\n");

    fmt_str(f, "totals");
    kvs(f, "alloc_bytes", (int64_t)prof_alloc_bytes_total());
    kvs(f, "live_bytes", atomic_load(&prof.live_bytes));
    kvs(f, "peak_bytes", atomic_load(&prof.peak_bytes));
    kv(f, "sites", nsites);
    kv(f, "pinned_pool_bytes", pc.pool_bytes);
    kv(f, "pinned_large_bytes", pc.large_bytes);
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) == 0) /* the kernel's high-water mark, in KiB */
        kv(f, "max_rss_bytes", (uint64_t)ru.ru_maxrss * 1024);
    kv(f, "meta_resident_bytes", os_meta_resident());
    unwind_counts_t uc;
    unwind_counts(&uc);
    kv(f, "unwind_stacks", uc.stacks);
    kv(f, "unwind_foreign", uc.foreign);
    kv(f, "unwind_walked", uc.walked);
    kv(f, "unwind_reused", uc.reused);
    kv(f, "unwind_memo", uc.memo);
    if (opt.unwind == UNWIND_CHECK) {
        uint64_t checked, mismatch;
        prof_unwind_checked(&checked, &mismatch);
        kv(f, "unwind_checked", checked);
        kv(f, "unwind_mismatch", mismatch);
    }
    python_put_totals(f);
    check_put_totals(f);
    if (lr->done) {
        kv(f, "leak_check", 1);
        kv0(f, "leak_approx", lr->approx);
        kv0(f, "leak_foreign_large", lr->foreign_large);
        kv(f, "leak_threads", lr->threads);
        kv0(f, "leak_unstopped", lr->unstopped);
        kv(f, "leak_scan_ns", lr->scan_ns);
        kv(f, "leak_root_bytes", lr->root_bytes);
        kv(f, "leak_block_bytes", lr->block_bytes);
        kv0(f, "leak_untracked_bytes", lr->untracked_bytes);
        static const char *const hc[LEAK_NHEUR] = {NULL, "leak_stdstring_count",
                                                    "leak_length64_count", "leak_newarray_count",
                                                    "leak_multipleinheritance_count"};
        static const char *const hb[LEAK_NHEUR] = {NULL, "leak_stdstring_bytes",
                                                    "leak_length64_bytes", "leak_newarray_bytes",
                                                    "leak_multipleinheritance_bytes"};
        for (unsigned h = 1; h < LEAK_NHEUR; h++) {
            kv0(f, hc[h], lr->heur_count[h]);
            kv0(f, hb[h], lr->heur_bytes[h]);
        }
    }
    fmt_char(f, '\n');

    put_modules(f);

    /* The sites written: those with an allocation or pinned memory, their stacks in the order
     * of the tree (see tree_t) and the sites after them in id order; with no memory for that, each
     * site after its stack's new nodes, in id order. */
    tree_t tr = {.next_id = 1};
    size_t refs_sz = ((size_t)nsites * sizeof(stack_ref_t) + 4095) & ~(size_t)4095;
    size_t node_sz = ((size_t)nsites * sizeof(uint32_t) + 4095) & ~(size_t)4095;
    stack_ref_t *refs = nsites ? os_map(refs_sz) : NULL;
    uint32_t *node = refs ? os_map(node_sz) : NULL, nw = 0;
    /* the stacks TALLY_CHECK's errors name (a free's stack has no allocation): as pinned */
    if (opt.check && pc.pinned)
        check_sites(want_site, &pc);
    for (uint32_t id = 0; id < nsites; id++) {
        const site_t *s = prof_site(id);
        if (__atomic_load_n(&s->alloc_count, __ATOMIC_RELAXED) == 0 &&
            !(pc.pinned && pc.pinned[id]))
            continue;
        uint32_t n = s->nframes < PROF_MAX_DEPTH ? s->nframes : PROF_MAX_DEPTH;
        if (node)
            refs[nw++] = (stack_ref_t){s->frames, n, id};
        else
            put_site(f, id, tree_put(&tr, f, s->frames, n), &pc, lr);
    }
    if (node) {
        sort_by_stack(refs, nw, 0);
        memset(node, 0xff, (size_t)nsites * sizeof *node); /* UINT32_MAX: not written */
        for (uint32_t i = 0; i < nw; i++)
            node[refs[i].id] = tree_put(&tr, f, refs[i].f, refs[i].n);
        for (uint32_t id = 0; id < nsites; id++)
            if (node[id] != UINT32_MAX)
                put_site(f, id, node[id], &pc, lr);
    }
    if (node)
        os_unmap(node, node_sz);
    if (refs)
        os_unmap(refs, refs_sz);
    python_put_codes(f); /* after the sites: every code object they show is interned by now */
    if (pc.pinned)
        os_unmap(pc.pinned, pin_sz);
    if (pc.cached)
        os_unmap(pc.cached, cache_sz);

    for (unsigned c = 0; c < NCLASSES; c++) {
        const struct tally_class_stats *k = &st.classes[c];
        if (!k->pools && !k->mallocs)
            continue;
        fmt_str(f, "class");
        kv(f, "size", k->size);
        kv(f, "pools", k->pools);
        kv(f, "blocks_in_use", k->blocks_in_use);
        kv(f, "free_blocks", k->free_blocks);
        kv(f, "blocks_cached", k->blocks_cached);
        kv(f, "mallocs", k->mallocs);
        kv(f, "bytes_requested", k->bytes_requested);
        kv(f, "bytes_granted", k->bytes_granted);
        kv(f, "bytes_held", k->bytes_held);
        fmt_char(f, '\n');
    }
    fmt_str(f, "arena");
    kv(f, "arenas", st.arenas);
    kv(f, "arena_bytes", st.arena_bytes);
    kv(f, "in_use_bytes", st.in_use_bytes);
    kv(f, "free_block_bytes", st.free_block_bytes);
    kv(f, "pool_overhead_bytes", st.pool_overhead_bytes);
    kv(f, "empty_pool_bytes", st.empty_pool_bytes);
    kv(f, "never_used_bytes", st.never_used_bytes);
    kv(f, "large_mallocs", st.large_mallocs);
    kv(f, "small_mallocs", st.small_mallocs);
    kv(f, "system_heap_bytes", st.system_heap_bytes);
    fmt_char(f, '\n');

    for (unsigned i = 0; i < prof.ntimeline; i++) {
        const tpoint_t *t = &prof.timeline[i];
        fmt_str(f, "timeline");
        kv(f, "t_ns", t->t_ns);
        kvs(f, "live_bytes", t->live_bytes);
        kv(f, "rss_bytes", t->rss_bytes);
        kv(f, "alloc_bytes", t->alloc_bytes);
        kv(f, "alloc_count", t->alloc_count);
        if (t->nsites) {
            fmt_str(f, " sites=");
            for (unsigned k = 0; k < t->nsites; k++) {
                if (k)
                    fmt_char(f, ',');
                fmt_u64(f, t->sites[k].id);
                fmt_char(f, ':');
                put_i64(f, t->sites[k].live_bytes);
                fmt_char(f, ':');
                fmt_u64(f, t->sites[k].alloc_bytes);
            }
        }
        fmt_char(f, '\n');
    }

    if (lr->done) {
        leak_foreach_block(put_classified, f);
    } else if (prof.mode == PROFILE_ALL && (why == DUMP_EXIT || why == DUMP_FATAL)) {
        prof_pool_blocks_foreach(blocks_pools, f);
        prof_ltab_foreach(blocks_large, f);
    }
    if (opt.check)
        check_put_errors(f);
    fmt_str(f, "end\n");
}

static _Atomic unsigned dump_seq; /* signal and interval dumps so far */

/* Expands the pattern. A forked child whose pattern has no %p gets ".<pid>" appended, so that
 * it never overwrites its parent's dump; signal and interval dumps get ".<n>" (1, 2, ...), so
 * that a series can be compared (tally diff) and the exit dump keeps the plain name. */
static bool dump_path(char *out, size_t cap, const char *pattern, unsigned seq) {
    if (!fmt_expand_path(out, cap, pattern))
        return false;
    size_t len = strlen(out);
    fmt_t f;
    fmt_init(&f, out + len, cap - len - 1, -1);
    if (getpid() != start_pid && !strstr(pattern, "%p")) {
        fmt_char(&f, '.');
        fmt_u64(&f, (uint64_t)getpid());
    }
    if (seq) {
        fmt_char(&f, '.');
        fmt_u64(&f, seq);
    }
    if (f.len >= cap - len - 1)
        return false;
    out[len + f.len] = '\0';
    return true;
}

/* ---- compression ---------------------------------------------------------------------------
 * zstd at level 1, about a tenth of the text's size at some 360 MB/s (zlib's level 1 made the
 * CPython workload's native stacks, 5.9 MB of text, 1.1 MB in 28 ms). libzstd is dlopen'ed
 * RTLD_LOCAL at the start when a dump is asked for (TALLY_OUT, TALLY_LEAKS, TALLY_SIGNAL,
 * TALLY_INTERVAL), else at the first tally_dump(), so a process that never dumps never loads it;
 * its memory comes from mmap (ZSTD_customMem) rather than from the heap being described.
 * Without it the dump is the plain text. */
typedef struct zmem_s {
    void *(*alloc)(void *opaque, size_t size);
    void (*free)(void *opaque, void *address);
    void *opaque;
} zmem_t;
typedef struct zin_s {
    const void *src;
    size_t size, pos;
} zin_t;
typedef struct zout_s {
    void *dst;
    size_t size, pos;
} zout_t;
enum { ZSTD_C_LEVEL = 100, ZSTD_C_WINDOWLOG = 101, ZSTD_E_CONTINUE = 0, ZSTD_E_END = 2 };

static struct {
    void *(*create)(zmem_t);
    size_t (*release)(void *);
    size_t (*set)(void *, int, int);
    size_t (*stream)(void *, zout_t *, zin_t *, int);
    unsigned (*is_error)(size_t);
} zstd;
static pthread_once_t zstd_once = PTHREAD_ONCE_INIT;

static void zstd_load(void) {
    void *lib = init_dlopen_own("libzstd.so.1");
    if (!lib)
        return;
    zstd.release = (size_t(*)(void *))dlsym(lib, "ZSTD_freeCCtx");
    zstd.set = (size_t(*)(void *, int, int))dlsym(lib, "ZSTD_CCtx_setParameter");
    zstd.stream = (size_t(*)(void *, zout_t *, zin_t *, int))dlsym(lib, "ZSTD_compressStream2");
    zstd.is_error = (unsigned (*)(size_t))dlsym(lib, "ZSTD_isError");
    void *create = dlsym(lib, "ZSTD_createCCtx_advanced");
    if (zstd.release && zstd.set && zstd.stream && zstd.is_error)
        zstd.create = (void *(*)(zmem_t))create; /* set last: it says the rest is there */
}

static void *zalloc(void *opaque, size_t size) {
    (void)opaque;
    size_t sz = (size + 16 + 4095) & ~(size_t)4095;
    char *p = os_map(sz);
    if (!p)
        return NULL;
    memcpy(p, &sz, sizeof sz);
    return p + 16;
}

static void zfree(void *opaque, void *address) {
    (void)opaque;
    if (!address)
        return;
    char *p = (char *)address - 16;
    size_t sz;
    memcpy(&sz, p, sizeof sz);
    os_unmap(p, sz);
}

typedef struct zsink_s {
    void *cctx;
    int fd;
    char *out;
    size_t cap;
} zsink_t;

static bool zsink_push(zsink_t *z, const char *buf, size_t len, int mode) {
    zin_t in = {buf, len, 0};
    for (;;) {
        zout_t out = {z->out, z->cap, 0};
        size_t left = zstd.stream(z->cctx, &out, &in, mode);
        if (zstd.is_error(left))
            return false;
        if (out.pos && !os_write_all(z->fd, z->out, out.pos))
            return false;
        if (mode == ZSTD_E_END ? left == 0 : in.pos == in.size)
            return true;
    }
}

static bool zsink_write(void *ctx, const char *buf, size_t len) {
    return zsink_push(ctx, buf, len, ZSTD_E_CONTINUE);
}

/* Sets f up to compress into fd; false (and f untouched) without libzstd. */
static bool zsink_open(zsink_t *z, fmt_t *f, int fd) {
    if (!opt.compress)
        return false;
    pthread_once(&zstd_once, zstd_load);
    if (!zstd.create)
        return false;
    z->cctx = zstd.create((zmem_t){zalloc, zfree, NULL});
    z->fd = fd;
    z->cap = DUMP_BUF;
    z->out = os_map(z->cap);
    /* Level 1 with an 8 MiB window (any zstd reads it: a window up to 128 MiB needs no option).
     * Long-distance matching would find more of the stacks that repeat megabytes apart, but at
     * half the speed: the CPython workload's 9.7 MB of text became 0.92 MB in 85 to 110 ms with
     * it, 0.97 MB in 63 to 74 ms without, the time the process takes to exit. */
    if (!z->cctx || !z->out || zstd.is_error(zstd.set(z->cctx, ZSTD_C_LEVEL, 1)) ||
        zstd.is_error(zstd.set(z->cctx, ZSTD_C_WINDOWLOG, 23))) {
        if (z->cctx)
            zstd.release(z->cctx);
        if (z->out)
            os_unmap(z->out, z->cap);
        return false;
    }
    f->sink = zsink_write;
    f->sink_ctx = z;
    return true;
}

static bool zsink_close(zsink_t *z, bool ok) {
    ok = ok && zsink_push(z, NULL, 0, ZSTD_E_END);
    zstd.release(z->cctx);
    os_unmap(z->out, z->cap);
    return ok;
}

/* ---- where a dump goes ------------------------------------------------------------------------
 * A dump never harms what is at its path. A new or replaced regular file is written unnamed
 * (O_TMPFILE) and only then given a name, PATH.tmp.PID, which is renamed over PATH at once: a
 * process killed while it writes leaves nothing behind. A regular file is replaced only when
 * this user owns it. A character device or a FIFO (/dev/null, /dev/stdout, a pipe a collector
 * reads) is written as a stream, and so is `-`, the standard output: never renamed over. A
 * symbolic link, a directory, a socket or someone else's file: one line, and no dump. */
enum { DUMP_RENAME, DUMP_STREAM };

typedef struct dump_file_s {
    int fd, how;
    bool named; /* DUMP_RENAME: tmp is created under its name (no O_TMPFILE here) */
    char tmp[4200];
} dump_file_t;

static bool refuse(const char *path, const char *why) {
    tally_message("not writing the dump to ", path, why);
    return false;
}

static bool dump_open(const char *path, dump_file_t *o) {
    struct stat st;
    o->fd = -1;
    o->named = false;
    if (strcmp(path, "-") == 0) {
        o->how = DUMP_STREAM;
        o->fd = 1;
        return true;
    }
    if (lstat(path, &st) == 0) {
        if (S_ISLNK(st.st_mode))
            return refuse(path, ": it is a symbolic link");
        if (S_ISCHR(st.st_mode) || S_ISFIFO(st.st_mode)) {
            o->how = DUMP_STREAM;
            /* a FIFO nobody reads would block the program forever: then no dump */
            o->fd = open(path, O_WRONLY | O_NOCTTY | O_CLOEXEC | O_NONBLOCK);
            if (o->fd < 0)
                return refuse(path, errno == ENXIO ? ": a FIFO that nobody reads"
                                                   : ": it cannot be opened for writing");
            fcntl(o->fd, F_SETFL, fcntl(o->fd, F_GETFL) & ~O_NONBLOCK);
            return true;
        }
        if (!S_ISREG(st.st_mode))
            return refuse(path, ": it is not a regular file");
        if (st.st_uid != geteuid())
            return refuse(path, ": another user's file");
    } else if (errno != ENOENT) {
        return refuse(path, ": it cannot be looked at");
    }
    o->how = DUMP_RENAME;
    fmt_t tf;
    fmt_init(&tf, o->tmp, sizeof o->tmp - 1, -1);
    fmt_str(&tf, path);
    fmt_str(&tf, ".tmp.");
    fmt_u64(&tf, (uint64_t)getpid());
    o->tmp[tf.len] = '\0';
    /* the directory of path, for the unnamed file */
    char dir[4096];
    const char *slash = strrchr(path, '/');
    size_t dl = slash ? (size_t)(slash - path) : 1;
    if (dl >= sizeof dir)
        return refuse(path, ": the path is too long");
    memcpy(dir, slash ? path : ".", dl ? dl : 1);
    dir[dl ? dl : 1] = '\0';
    /* named later through /proc/self/fd (linkat's AT_EMPTY_PATH wants a capability) */
    if (access("/proc/self/fd", X_OK) == 0) {
        o->fd = open(dir, O_TMPFILE | O_WRONLY | O_CLOEXEC, 0600);
        if (o->fd >= 0)
            return true;
    }
    /* no O_TMPFILE on this file system (or no /proc): a named one, removed on failure */
    o->named = true;
    o->fd = open(o->tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (o->fd < 0 && errno == EEXIST && unlink(o->tmp) == 0) /* a stale one of ours */
        o->fd = open(o->tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (o->fd < 0) {
        tally_message("cannot create the dump ", path,
                      errno == ENOENT   ? ": no such directory"
                      : errno == EACCES ? ": permission denied"
                      : errno == EROFS  ? ": a read-only file system"
                                        : NULL);
        return false;
    }
    return true;
}

/* Gives the written dump its name; false (nothing left behind) if it cannot. */
static bool dump_commit(dump_file_t *o, const char *path, bool ok) {
    if (o->how == DUMP_STREAM)
        return (o->fd == 1 || close(o->fd) == 0) && ok;
    if (ok && !o->named) {
        char self[64];
        fmt_t f;
        fmt_init(&f, self, sizeof self - 1, -1);
        fmt_str(&f, "/proc/self/fd/");
        fmt_u64(&f, (uint64_t)o->fd);
        self[f.len] = '\0';
        unlink(o->tmp); /* a stale one of ours */
        ok = linkat(AT_FDCWD, self, AT_FDCWD, o->tmp, AT_SYMLINK_FOLLOW) == 0;
        o->named = ok;
    }
    ok = close(o->fd) == 0 && ok;
    if (ok && rename(o->tmp, path) == 0)
        return true;
    if (o->named)
        unlink(o->tmp);
    return false;
}

/* Writes a dump; the final path goes to out_path (4096 bytes) when given. */
static int dump_to(const char *pattern, enum dump_reason why, char *out_path) {
    if (!prof.started)
        return -1;
    int saved = errno;
    char path[4096];
    unsigned seq = why == DUMP_SIGNAL || why == DUMP_INTERVAL ? atomic_fetch_add(&dump_seq, 1) + 1 : 0;
    if (!dump_path(path, sizeof path, pattern, seq)) {
        tally_message("dump path too long: ", pattern, NULL);
        return -1;
    }
    dump_file_t o;
    char *buf = NULL;
    if (!dump_open(path, &o) || !(buf = os_map(DUMP_BUF))) {
        if (o.fd >= 0)
            dump_commit(&o, path, false);
        errno = saved;
        return -1;
    }
    if (why != DUMP_EXIT)
        check_scan(); /* the exit handler has made it */
    prof_enter(); /* nothing below may be recorded (dl_iterate_phdr, the stats, libzstd) */
    fmt_t f;
    fmt_init(&f, buf, DUMP_BUF, o.fd);
    zsink_t z;
    bool compressed = zsink_open(&z, &f, o.fd);
    write_dump(&f, why);
    fmt_flush(&f);
    if (compressed && !zsink_close(&z, !f.failed))
        f.failed = true;
    prof_leave();
    os_unmap(buf, DUMP_BUF);
    if (!dump_commit(&o, path, !f.failed)) {
        tally_message("cannot write the dump ", path, NULL);
        errno = saved;
        return -1;
    }
    if (out_path)
        memcpy(out_path, path, sizeof path);
    errno = saved;
    return 0;
}

#define DEFAULT_DUMP "tally.%e.%p.tly"

TALLY_EXPORT int tally_dump(const char *path) {
    if (!tally_init_global() || !prof.started)
        return -1;
    return dump_to(path ? path : opt.out ? opt.out : DEFAULT_DUMP, DUMP_API, NULL);
}

static void summary_line(fmt_t *f, const char *label, uint64_t bytes, uint64_t blocks) {
    fmt_str(f, label);
    fmt_u64_grouped(f, bytes);
    fmt_str(f, " bytes in ");
    fmt_u64_grouped(f, blocks);
    fmt_str(f, " blocks\n");
}

/* TALLY_LEAKS=1: memcheck's LEAK SUMMARY on stderr, and where the call sites are. */
static void print_leak_summary(const char *path) {
    const leak_result_t *r = leak_result();
    char buf[2048];
    fmt_t f;
    fmt_init(&f, buf, sizeof buf, message_fd());
    uint64_t live = 0;
    for (unsigned k = 0; k < LEAK_NKINDS; k++)
        live += r->count[k];
    if (live == 0) {
        fmt_str(&f, "tally: all heap blocks were freed -- no leaks are possible (pid ");
        fmt_u64(&f, (uint64_t)getpid());
        fmt_str(&f, ")\n");
        fmt_flush(&f);
        return;
    }
    fmt_str(&f, "tally: LEAK SUMMARY (pid ");
    fmt_u64(&f, (uint64_t)getpid());
    fmt_str(&f, r->approx ? ", approximate: see the dump):\n" : "):\n");
    summary_line(&f, "tally:    definitely lost: ", r->bytes[LEAK_DEFINITE], r->count[LEAK_DEFINITE]);
    summary_line(&f, "tally:    indirectly lost: ", r->bytes[LEAK_INDIRECT], r->count[LEAK_INDIRECT]);
    summary_line(&f, "tally:      possibly lost: ", r->bytes[LEAK_POSSIBLE], r->count[LEAK_POSSIBLE]);
    summary_line(&f, "tally:    still reachable: ", r->bytes[LEAK_REACHABLE], r->count[LEAK_REACHABLE]);
    bool any = false;
    for (unsigned h = 1; h < LEAK_NHEUR; h++)
        any |= r->heur_count[h] != 0;
    if (any) {
        fmt_str(&f, "tally:                       of which reachable via heuristic:\n");
        for (unsigned h = 1; h < LEAK_NHEUR; h++) {
            if (!r->heur_count[h])
                continue;
            fmt_str(&f, "tally:                         ");
            fmt_strw(&f, leak_heuristic_name(h), 19);
            summary_line(&f, ": ", r->heur_bytes[h], r->heur_count[h]);
        }
    }
    summary_line(&f, "tally:         suppressed: ", 0, 0);
    if (path) {
        fmt_str(&f, "tally: the call sites: tally leaks ");
        fmt_str(&f, path);
        fmt_char(&f, '\n');
    }
    fmt_flush(&f);
}

/* exit's code, for the leak check (leak.c: where the exiting thread's live stack starts), found
 * at the start: dladdr never touches dlerror's state, but nothing at exit may. */
static uintptr_t exit_lo, exit_hi;

static void exit_code_range(void) {
    Dl_info info;
    const ElfW(Sym) *sym = NULL;
    void *fn = (void *)&exit;
    if (dladdr1(fn, &info, (void **)&sym, RTLD_DL_SYMENT) && sym && sym->st_size) {
        exit_lo = (uintptr_t)fn;
        exit_hi = exit_lo + sym->st_size;
    }
}

/* ---- a symbol of a loaded object, without dlsym ----------------------------------------------
 * dlsym, even when it succeeds, frees the calling thread's pending dlerror() text: a program that
 * left one (curl does) would lose it, and 82 bytes the check should call reachable. At exit the
 * library looks symbols up itself, in each object's GNU hash table, as the dynamic loader does. */
typedef struct sym_find_s {
    const char *name;
    uintptr_t addr;
} sym_find_t;

static int find_symbol(struct dl_phdr_info *info, size_t size, void *arg) {
    (void)size;
    sym_find_t *q = arg;
    const ElfW(Dyn) *dyn = NULL;
    for (int i = 0; i < info->dlpi_phnum; i++)
        if (info->dlpi_phdr[i].p_type == PT_DYNAMIC)
            dyn = (const ElfW(Dyn) *)(info->dlpi_addr + info->dlpi_phdr[i].p_vaddr);
    if (!dyn || !info->dlpi_addr)
        return 0; /* the program itself has no libstdc++ internals; the vDSO no dynamic table */
    q->addr = elf_lookup(info->dlpi_addr, dyn, q->name);
    return q->addr != 0;
}

/* The first definition of name among the loaded objects (not the program), or NULL. */
static void *lookup_symbol(const char *name) {
    sym_find_t q = {name, 0};
    unwind_iterate_phdr(find_symbol, &q);
    return (void *)q.addr;
}

/* A dump with the leak check first (its kinds go in it). The check's state is one per process:
 * one such dump at a time. The check scans the calling thread's stack from the frame that
 * called exit (exiting; exit_lo/hi: exit's code, or 0 if unknown) or the library's API, with
 * that frame's callee-saved registers: the frames in between are ours and glibc's, and their
 * unwritten slots hold stale words of the program's that memcheck, which counts only defined
 * words, never sees. */
static pthread_mutex_t leak_dump_lock = PTHREAD_MUTEX_INITIALIZER;

static noinline int dump_checked(const char *pattern, enum dump_reason why, char *path,
                                 bool exiting) {
    unwind_regs_t here; /* this frame's state: leak.c steps out to the program's frame */
    unwind_getcontext(&here);
    lib_lock(&leak_dump_lock);
    leak_check(&here, exiting, exit_lo, exit_hi);
    int r = dump_to(pattern, why, path);
    if (opt.leaks == LEAKS_REPORT && leak_result()->done)
        print_leak_summary(r == 0 ? path : NULL);
    leak_release();
    lib_unlock(&leak_dump_lock);
    return r;
}

TALLY_EXPORT int tally_dump_leaks(const char *path) {
    if (!tally_init_global() || !prof.started)
        return -1;
    if (prof.mode != PROFILE_ALL) {
        tally_message("tally_dump_leaks: the leak check needs every allocation recorded ",
                      "(TALLY_LEAKS=1 or TALLY_PROFILE=all)", NULL);
        return -1;
    }
    char out[4096];
    return dump_checked(path ? path : opt.out ? opt.out : DEFAULT_DUMP, DUMP_API, out, false);
}

/* The last dump's TALLY_CHECK: every block checked once more; then a dump only where errors
 * were found, unless one is asked for. False: no dump to write. */
static bool last_check_wants_dump(void) {
    if (!opt.check)
        return true;
    check_scan();
    return check_errors(NULL) || opt.out || opt.leaks != LEAKS_OFF;
}

noinline void prof_dump_at_exit(void *unused) {
    (void)unused;
    char path[4096];
    path[0] = '\0';
    if (!last_check_wants_dump())
        return;
    if (opt.leaks == LEAKS_OFF || !prof.started) {
        if (dump_to(opt.out ? opt.out : DEFAULT_DUMP, DUMP_EXIT, path) != 0)
            path[0] = '\0';
        if (opt.check)
            check_summary(path);
        return;
    }
    /* What valgrind does before its check (--run-cxx-freeres=yes, its default): libstdc++ frees
     * its own memory, the exception emergency pool above all. Every destructor has run; only a
     * thread still running that throws with no memory left could want it. glibc's counterpart
     * (__libc_freeres) is not called: stdio is flushed after this handler. */
    void (*cxx_freeres)(void) = (void (*)(void))lookup_symbol("_ZN9__gnu_cxx9__freeresEv");
    if (cxx_freeres)
        cxx_freeres(); /* its frees are the program's: recorded */
    if (dump_checked(opt.out ? opt.out : DEFAULT_DUMP, DUMP_EXIT, path, true) != 0)
        path[0] = '\0';
    if (opt.check)
        check_summary(path);
}

/* The last dump, when a fatal signal ends the program (sig.c): what the exit dump would have
 * been (the leak check too, as memcheck makes it when a signal kills the program), but after a
 * crash, where the heap may be broken, without the leak check's walk of every block. */
void prof_dump_fatal(int sig, bool crash) {
    if (!prof.started)
        return;
    fatal_signal = sig;
    char path[4096];
    path[0] = '\0';
    if (!last_check_wants_dump())
        return;
    const char *pattern = opt.out ? opt.out : DEFAULT_DUMP;
    int r = opt.leaks != LEAKS_OFF && prof.mode == PROFILE_ALL && !crash
                ? dump_checked(pattern, DUMP_FATAL, path, false)
                : dump_to(pattern, DUMP_FATAL, path);
    if (r != 0)
        path[0] = '\0';
    if (opt.check)
        check_summary(path);
}

/* ---- dumps on a signal and on a timer ---------------------------------------------------------
 * Writing a dump takes locks and walks the heap, which a signal handler must not do. So the
 * handler only bumps a word and wakes a helper thread through a futex on it (both
 * async-signal-safe), and the helper, started only when TALLY_SIGNAL or TALLY_INTERVAL is set,
 * waits on that word (with a timeout for the interval) and writes the dump. No file descriptor:
 * a program that closes every descriptor it did not open (daemons, os.closerange) would close
 * ours and then reuse the number, and the helper would read the program's data. The helper
 * blocks every signal, so the program's own signals never land on it. After fork the child's
 * helper is started by its first recorded allocation (not in the atfork handler, where creating
 * a thread is not safe). */
static _Atomic uint32_t wake_word; /* bumped by each signal */
static _Atomic bool helper_running;
static _Atomic bool helper_wanted;

static long futex_word(_Atomic uint32_t *w, int op, uint32_t val, const struct timespec *ts) {
    return syscall(SYS_futex, (uint32_t *)w, op, val, ts, NULL, 0);
}

static void on_dump_signal(int sig) {
    (void)sig;
    int saved = errno;
    atomic_fetch_add(&wake_word, 1);
    futex_word(&wake_word, FUTEX_WAKE_PRIVATE, 1, NULL);
    errno = saved;
}

/* With TALLY_LEAKS, a dump on the signal or the timer has the leak check too: a server's leaks,
 * on demand, while it runs. */
static void helper_dump(enum dump_reason why) {
    char path[4096];
    if (opt.leaks != LEAKS_OFF && prof.mode == PROFILE_ALL)
        dump_checked(opt.out ? opt.out : DEFAULT_DUMP, why, path, false);
    else
        dump_to(opt.out ? opt.out : DEFAULT_DUMP, why, path);
}

/* The helper thread, for the leak check: its tid and an address on its stack. It is the
 * library's, not the program's: the check neither stops it nor scans its stack. */
static _Atomic pid_t helper_tid;
static _Atomic uintptr_t helper_stack;

bool prof_dump_helper(pid_t *tid, uintptr_t *stack_addr) {
    *tid = atomic_load(&helper_tid);
    *stack_addr = atomic_load(&helper_stack);
    return *tid != 0;
}

static void *helper_main(void *arg) {
    (void)arg;
    atomic_store(&helper_stack, (uintptr_t)__builtin_frame_address(0));
    atomic_store(&helper_tid, (pid_t)syscall(SYS_gettid));
    uint64_t next = opt.interval ? prof_now_ns() + (uint64_t)opt.interval * 1000000000u : 0;
    uint32_t handled = 0; /* a signal that came before this thread ran is still due */
    for (;;) {
        uint32_t seen = atomic_load(&wake_word);
        if (seen != handled) {
            handled = seen; /* signals that came while a dump was written make one more */
            helper_dump(DUMP_SIGNAL);
            continue;
        }
        uint64_t now = prof_now_ns();
        if (next && now >= next) {
            helper_dump(DUMP_INTERVAL);
            next += (uint64_t)opt.interval * 1000000000u;
            continue;
        }
        struct timespec ts = {(time_t)((next - now) / 1000000000u), (long)((next - now) % 1000000000u)};
        futex_word(&wake_word, FUTEX_WAIT_PRIVATE, seen, next ? &ts : NULL);
    }
    return NULL;
}

static void helper_start(void) {
    bool expected = false;
    if (!atomic_compare_exchange_strong(&helper_running, &expected, true))
        return;
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    pthread_t t;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    pthread_attr_setstacksize(&attr, 256 * 1024);
    prof_enter(); /* what pthread_create allocates for it (its DTV) is ours, untracked */
    int err = pthread_create(&t, &attr, helper_main, NULL);
    prof_leave();
    if (err != 0) {
        atomic_store(&helper_running, false);
        tally_message("cannot start the dump thread: TALLY_SIGNAL/TALLY_INTERVAL inactive",
                      NULL, NULL);
    }
    pthread_attr_destroy(&attr);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
}

/* From the first recorded allocation of a forked child (prof.c). */
void prof_dump_helper_check(void) {
    if (atomic_load_explicit(&helper_wanted, memory_order_relaxed) &&
        !atomic_load_explicit(&helper_running, memory_order_relaxed))
        helper_start();
}

void prof_dump_fork_child(void) {
    sig_fork_child();
    pthread_mutex_init(&gone_lock, NULL);
    atomic_store(&dump_seq, 0);
    if (!atomic_load(&helper_wanted))
        return;
    /* The parent's helper thread did not come along; the parent's signals were the parent's. */
    atomic_store(&wake_word, 0);
    atomic_store(&helper_running, false);
    atomic_store(&helper_tid, 0);
    atomic_store(&helper_stack, 0);
}

/* A fork while a leak check runs on another thread waits for it: the check holds the large
 * table's lock, which fork's prepare handler (heap_fork_prepare, later) takes. This handler is
 * registered after that one, so its prepare runs before it and its child handler after. */
static void leak_fork_prepare(void) {
    lib_lock(&leak_dump_lock);
}

static void leak_fork_parent(void) {
    lib_unlock(&leak_dump_lock);
}

static void leak_fork_child(void) {
    pthread_mutex_init(&leak_dump_lock, NULL);
}

void prof_dump_init(void) {
    start_pid = getpid();
    exit_code_range();
    /* libzstd now, when a dump is asked for: a dlopen at the dump would reset the dlerror() of
     * the thread that writes it, which may be the program's at exit */
    if (prof.started && opt.compress &&
        (opt.out || opt.leaks || opt.check || opt.signal || opt.interval)) {
        prof_enter();
        pthread_once(&zstd_once, zstd_load);
        prof_leave();
    }
    if (prof.started && prof.mode == PROFILE_ALL)
        pthread_atfork(leak_fork_prepare, leak_fork_parent, leak_fork_child);
    sig_init();
    if (!prof.started || (!opt.signal && !opt.interval))
        return;
    if (opt.signal) {
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = on_dump_signal;
        sa.sa_flags = SA_RESTART;
        sigemptyset(&sa.sa_mask);
        sigaction(opt.signal, &sa, NULL);
    }
    atomic_store(&helper_wanted, true);
    helper_start();
}
