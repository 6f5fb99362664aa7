/* leak.c: the leak check at exit (TALLY_LEAKS): valgrind memcheck's four kinds of live block,
 * decided the way memcheck decides them, inside the process, at allocator speed.
 *
 * WHEN
 *   From the exit handler (dump.c), which the constructor registered first and so runs last:
 *   after the program's atexit handlers, its C++ static destructors and every ELF destructor.
 *
 * THE BLOCKS
 *   `all` mode knows every live block: a pool block is live iff its side-table tag names a site,
 *   a large block iff it is in the large table. They are gathered into "slots" in address order
 *   (pool slots first: the pools' range lies apart from glibc's heap; then the large blocks,
 *   sorted), which is the order memcheck's chunk array has. Sizes are the requested sizes.
 *
 * FREEZING
 *   The large table's lock is taken first (no tracked large block can be freed, so the scan may
 *   read them), then every other thread is stopped: a queued real-time signal carrying a cookie
 *   (rt_tgsigqueueinfo), whose handler saves the thread's registers and stack pointer and waits
 *   on a futex. Nothing the scan does afterwards takes a lock a stopped thread could hold: it
 *   reads /proc with raw system calls and maps its memory with mmap. A thread that blocks the
 *   signal (read from /proc/self/task/TID/status) or does not answer within a second keeps
 *   running; its stack is then scanned whole, and the result says the scan was approximate.
 *   Reads of root memory are guarded: a fault (a mapping gone, a file mapping past its end)
 *   skips the page.
 *
 * ROOTS (memcheck's: every readable and writable mapping that is not the heap)
 *   Every rw mapping in /proc/self/maps, less: the arena range (blocks are reached, not roots),
 *   every mapping of the allocator's and profiler's own metadata (os.c's registry), this
 *   library's own data, glibc's heap ([heap], the heaps of its other arenas, and the extent of
 *   every tracked large block wherever it lies), device mappings, and the part of each stopped
 *   thread's stack below its stack pointer's red zone. Then the saved registers of every thread.
 *
 * MARKING (memcheck's, state by state; see the numbered comments below)
 *   Phase 1 marks from the roots: a pointer to a block's start from a root or from a Reachable
 *   block makes it Reachable; any other pointer makes an Unreached block Possible. memcheck's
 *   four heuristics may accept an interior pointer as a start pointer. Phase 2 walks the blocks
 *   still Unreached in address order: each leads a clique, and every Unreached block it reaches
 *   (by any pointer) becomes indirectly lost, its bytes added to the leader's. Leaders that stay
 *   Unreached are definitely lost. */
#include "prof.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/futex.h>
#include <setjmp.h>
#include <signal.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <ucontext.h>
#include <unistd.h>

/* A slot's state: memcheck's four, in its order; then not a block: an untracked block (S_NONE,
 * the library's own or ld.so's on its behalf: a root), a free one (S_FREE). */
enum { S_REACHABLE = 0, S_POSSIBLE, S_INDIRECT, S_UNREACHED, S_NONE, S_FREE };
#define GLIBC_HEAP_MAX ((uintptr_t)64 << 20) /* HEAP_MAX_SIZE of a non-main glibc arena */
#define STOP_WAIT_NS 1000000000ull
#define MAX_THREADS 8192
#define STOP_COOKIE ((void *)(uintptr_t)0x9a11eda7ac0ffee1ull) /* not a user-space address */

typedef struct lpool_s {
    uint32_t first;  /* its block i is slot first + i */
    uint16_t carved; /* 0: a pool not in use (or with no block carved), not looked at */
    uint8_t cls;
    uint8_t pad;
} lpool_t;

typedef struct lblk_s {
    uintptr_t addr;
    uint64_t size;
    uint32_t site;
    uint32_t stamp; /* the allocation stamp's low 32 bits */
} lblk_t;

typedef struct mark_s {
    uint64_t slot;
    uintptr_t start;
} mark_t;

typedef struct range_s {
    uintptr_t lo, hi;
} range_t;

typedef struct mapping_s {
    uintptr_t lo, hi;
    uint8_t r, w, x, file, heap, dev;
} mapping_t;

typedef struct thread_rec_s {
    pid_t tid;
    _Atomic int state; /* 0 sent, 1 stopped, 2 left, 3 blocks the signal, 4 gone */
    uintptr_t sp;
    uintptr_t regs[NGREG];
} thread_rec_t;

/* Everything the check builds lives in mappings made here and dropped after the dump. */
static struct {
    /* blocks */
    uintptr_t base, span;  /* the pools' range [base, base + span) */
    lpool_t *pools;
    uint64_t npools, npslots, nslots;
    lblk_t *large, *own; /* the large blocks; the library's own (site 0, roots) */
    uint64_t nlarge, nown, large_cap;
    uint32_t *live;         /* the pools in use, by address */
    uint64_t nlive;
    uintptr_t lmin, lspan;  /* large blocks lie in [lmin, lmin + lspan) */
    uint32_t *site;         /* per slot: the block's site (state says whether it is one) */
    uint16_t *psize;        /* per pool slot: requested size */
    uint32_t *pstamp;       /* per pool slot: allocation stamp (low 32 bits) */
    uint8_t *state, *heur;
    uint64_t *ind;          /* per slot: indirect bytes of a clique leader */
    /* the mark stack */
    struct mark_s *stack;
    uint64_t nstack, capstack;
    uint8_t *pending;
    /* memory */
    mapping_t *maps;
    size_t nmaps;
    range_t *excl;
    size_t nexcl, capexcl;
    thread_rec_t *threads;
    unsigned nthreads;
    pid_t helper;            /* the library's dump thread: neither stopped nor scanned */
    uintptr_t helper_stack;  /* an address on its stack */
    bool failed;
} L;

static leak_result_t result;

/* ---- scratch memory ----------------------------------------------------------------------- */
typedef struct scratch_s {
    void *p;
    size_t size;
} scratch_t;
#define NSCRATCH 64
static scratch_t scratch[NSCRATCH];
static unsigned nscratch;

static void *grab(size_t bytes) {
    bytes = (bytes + 4095) & ~(size_t)4095;
    if (bytes == 0)
        bytes = 4096;
    void *p = nscratch < NSCRATCH ? os_map(bytes) : NULL;
    if (!p) {
        L.failed = true;
        return NULL;
    }
    scratch[nscratch++] = (scratch_t){p, bytes};
    return p;
}

/* A bigger copy of old (grabbed before); old is unmapped. */
static void *regrow(void *old, size_t oldbytes, size_t bytes) {
    void *p = grab(bytes);
    if (!p || !old)
        return p;
    memcpy(p, old, oldbytes);
    for (unsigned i = 0; i < nscratch; i++)
        if (scratch[i].p == old) {
            os_unmap(old, scratch[i].size);
            scratch[i] = scratch[--nscratch];
            break;
        }
    return p;
}

static void release_all(void) {
    while (nscratch > 0) {
        nscratch--;
        os_unmap(scratch[nscratch].p, scratch[nscratch].size);
    }
}

static pid_t my_tid(void) {
    return (pid_t)syscall(SYS_gettid);
}

/* Reads fd into buf from n on until the end of the file or until buf (cap bytes, one kept for
 * the NUL) is full; returns the new length. */
static size_t read_more(int fd, char *buf, size_t n, size_t cap) {
    while (n + 1 < cap) {
        ssize_t r = read(fd, buf + n, cap - 1 - n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        n += (size_t)r;
    }
    return n;
}

/* A small /proc file into buf (NUL-terminated); false if it cannot be read. */
static bool read_small(const char *path, char *buf, size_t cap) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return false;
    size_t n = read_more(fd, buf, 0, cap);
    close(fd);
    buf[n] = '\0';
    return n > 0;
}

/* The whole of a /proc file, in scratch memory; NULL if it cannot be read. */
static char *read_proc(const char *path, size_t *len) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return NULL;
    size_t cap = 1 << 16, n = 0;
    char *buf = grab(cap);
    while (buf && (n = read_more(fd, buf, n, cap)) + 1 == cap) { /* full: there may be more */
        buf = regrow(buf, n, cap * 2);
        cap *= 2;
    }
    close(fd);
    if (buf)
        buf[n] = '\0';
    *len = n;
    return buf;
}

static uintptr_t parse_hex(const char **s) {
    uintptr_t v = 0;
    for (;; (*s)++) {
        char c = **s;
        if (c >= '0' && c <= '9')
            v = v * 16 + (uintptr_t)(c - '0');
        else if (c >= 'a' && c <= 'f')
            v = v * 16 + (uintptr_t)(c - 'a' + 10);
        else
            return v;
    }
}

/* ---- the blocks --------------------------------------------------------------------------- */
static void count_large(const lent_t *e, void *arg) {
    (void)e;
    (*(uint64_t *)arg)++;
}

static void add_large(const lent_t *e, void *arg) {
    (void)arg;
    if (e->site == 0) { /* the library's own: a root, not a block */
        if (L.nown < L.large_cap)
            L.own[L.nown++] = (lblk_t){e->addr, e->size, 0, 0};
    } else if (L.nlarge < L.large_cap) {
        L.large[L.nlarge++] = (lblk_t){e->addr, e->size, e->site, (uint32_t)e->stamp};
    }
}

/* Heapsort: no recursion, no allocation. */
static void swap_bytes(char *a, char *b, size_t width) {
    for (size_t i = 0; i < width; i++) {
        char t = a[i];
        a[i] = b[i];
        b[i] = t;
    }
}

static void sift_down(char *v, uint64_t r, uint64_t n, size_t width,
                      bool (*less)(const void *, const void *)) {
    for (;;) {
        uint64_t c = 2 * r + 1;
        if (c >= n)
            return;
        if (c + 1 < n && less(v + c * width, v + (c + 1) * width))
            c++;
        if (!less(v + r * width, v + c * width))
            return;
        swap_bytes(v + r * width, v + c * width, width);
        r = c;
    }
}

static void heap_sort(void *base, uint64_t n, size_t width,
                      bool (*less)(const void *, const void *)) {
    char *v = base;
    for (uint64_t i = n / 2; i-- > 0;)
        sift_down(v, i, n, width, less);
    for (uint64_t end = n; end-- > 1;) {
        swap_bytes(v, v + end * width, width);
        sift_down(v, 0, end, width, less);
    }
}

static bool addr_less(const void *a, const void *b) {
    return ((const lblk_t *)a)->addr < ((const lblk_t *)b)->addr;
}

static bool u64_less(const void *a, const void *b) {
    return *(const uint64_t *)a < *(const uint64_t *)b;
}

/* The slot of the carved pool block an address lies in, and that block's start; UINT64_MAX if
 * the address is in no gathered pool's carved blocks (a header, a pool not in use). */
static inline uint64_t pool_slot_of(uintptr_t w, uintptr_t *start) {
    uintptr_t off = w - L.base;
    if (off >= L.span)
        return UINT64_MAX;
    const lpool_t *lp = &L.pools[off >> POOL_SHIFT];
    uint64_t boff = (off & (POOL_SIZE - 1)) - POOL_HEADER; /* wraps in the header */
    if (boff >= (uint64_t)lp->carved * CLASS_SIZE(lp->cls))
        return UINT64_MAX;
    unsigned idx = block_index_of(lp->cls, boff);
    *start = (w - boff) + (uintptr_t)idx * CLASS_SIZE(lp->cls) + pool_data_offset();
    return lp->first + idx;
}

static void free_one(const void *b) {
    uintptr_t start;
    uint64_t s = pool_slot_of((uintptr_t)b, &start);
    if (s != UINT64_MAX && L.state[s] == S_NONE)
        L.state[s] = S_FREE;
}

static void free_bins(heap_t *h, void *arg) {
    (void)arg;
    if (h->kind != HEAP_REAL)
        return;
    for (unsigned c = 0; c < NCLASSES; c++)
        for (void **sl = h->bin[c].low; sl < h->bin[c].top && sl < h->bin[c].high; sl++)
            free_one(*sl);
}

/* The carved pool blocks that no tag names are free (in a pool's free list, its remote list, or
 * a thread's bin) or untracked: blocks the library allocated for itself, among them what ld.so
 * allocated for the libraries it dlopened (their link maps are in ld.so's list of the program's:
 * the scan takes them as roots). With the threads stopped, the lists are still. */
static void mark_free_blocks(void) {
    for (uint64_t k = 0; k < L.nlive; k++) {
        const pool_t *p = (const pool_t *)(g.base + (uint64_t)L.live[k] * POOL_SIZE);
        unsigned n = 0, lim = 2 * p->capacity;
        for (const block_t *b = p->free; b && n < lim; b = b->next, n++)
            free_one(b);
        uintptr_t tf = atomic_load_explicit(&((pool_t *)p)->thread_free, memory_order_acquire);
        for (const block_t *b = (const block_t *)(tf & ~TF_FLAGS); b && n < 2 * lim; b = b->next, n++)
            free_one(b);
    }
    heap_foreach_unlocked(free_bins, NULL);
}

static void scan_root(uintptr_t lo, uintptr_t hi);

/* The untracked live blocks, as roots (after the memory map's). */
static void scan_untracked(void) {
    for (uint64_t i = 0; i < L.nown; i++) {
        scan_root(L.own[i].addr, L.own[i].addr + L.own[i].size);
        result.untracked_bytes += L.own[i].size;
    }
    for (uint64_t k = 0; k < L.nlive; k++) {
        const lpool_t *lp = &L.pools[L.live[k]];
        uintptr_t first = L.base + (uint64_t)L.live[k] * POOL_SIZE + POOL_HEADER;
        for (unsigned b = 0; b < lp->carved; b++)
            if (L.state[lp->first + b] == S_NONE) {
                uintptr_t a = first + (uintptr_t)b * CLASS_SIZE(lp->cls);
                scan_root(a, a + CLASS_SIZE(lp->cls));
                result.untracked_bytes += CLASS_SIZE(lp->cls);
            }
    }
}

/* Under the large table's locks (prof_ltab_lock), with the other threads stopped. */
static bool gather_blocks(void) {
    L.base = g.base;
    L.span = g.next_pool - g.base;
    L.npools = L.span / POOL_SIZE;
    L.pools = grab(L.npools * sizeof(lpool_t));
    uint64_t slots = 0;
    for (uint64_t i = 0; L.pools && i < L.npools; i++) {
        pool_t *p = (pool_t *)(g.base + i * POOL_SIZE);
        if (p->carved == 0 ||
            (p->state != POOL_OWNED && p->state != POOL_FULL && p->state != POOL_UNOWNED))
            continue;
        L.pools[i] = (lpool_t){(uint32_t)slots, (uint16_t)p->carved, p->szidx, 0};
        slots += p->carved;
        L.nlive++;
    }
    L.live = grab(L.nlive * sizeof(uint32_t));
    for (uint64_t i = 0, k = 0; L.live && i < L.npools; i++)
        if (L.pools[i].carved)
            L.live[k++] = (uint32_t)i;
    L.npslots = slots;
    uint64_t nl = 0;
    prof_ltab_foreach_locked(count_large, &nl);
    L.large_cap = nl;
    L.large = grab(nl * sizeof(lblk_t));
    L.own = grab(nl * sizeof(lblk_t));
    if (L.failed || slots + nl >= UINT32_MAX)
        return false;
    prof_ltab_foreach_locked(add_large, NULL);
    heap_sort(L.large, L.nlarge, sizeof(lblk_t), addr_less);
    L.nslots = slots + L.nlarge;
    L.site = grab(L.nslots * sizeof(uint32_t));
    L.psize = grab(L.npslots * sizeof(uint16_t));
    L.pstamp = grab(L.npslots * sizeof(uint32_t));
    L.state = grab(L.nslots);
    L.heur = grab(L.nslots);
    L.pending = grab(L.nslots);
    L.ind = grab(L.nslots * sizeof(uint64_t));
    if (L.failed)
        return false;
    memset(L.state, S_NONE, L.nslots);
    for (uint64_t i = 0; i < L.npools; i++) {
        const lpool_t *lp = &L.pools[i];
        if (!lp->carved)
            continue;
        pool_t *p = (pool_t *)(g.base + i * POOL_SIZE);
        const ptag_t *t = atomic_load_explicit(&p->prof, memory_order_acquire);
        for (unsigned b = 0; t && b < lp->carved; b++) {
            if (!t[b].sw)
                continue;
            L.site[lp->first + b] = ptag_site(t[b]);
            L.psize[lp->first + b] = (uint16_t)(CLASS_SIZE(lp->cls) - ptag_slack(t[b]));
            L.pstamp[lp->first + b] = t[b].stamp;
            L.state[lp->first + b] = S_UNREACHED;
        }
    }
    for (uint64_t i = 0; i < L.nlarge; i++) {
        L.site[L.npslots + i] = L.large[i].site;
        L.state[L.npslots + i] = S_UNREACHED;
    }
    mark_free_blocks();
    if (L.nlarge) {
        L.lmin = L.large[0].addr;
        const lblk_t *last = &L.large[L.nlarge - 1];
        L.lspan = last->addr + (last->size ? last->size : 1) - L.lmin;
    }
    return true;
}

/* The block a word points into: its slot, start and requested size, or false. memcheck's
 * test: data <= w < data + max(size, 1). */
static inline bool find_block(uintptr_t w, uint64_t *slot, uintptr_t *start, uint64_t *size) {
    if (w - L.base < L.span) {
        uintptr_t b;
        uint64_t s = pool_slot_of(w, &b);
        if (s == UINT64_MAX || L.state[s] >= S_NONE)
            return false;
        uint64_t n = L.psize[s];
        if (w - b >= (n ? n : 1))
            return false;
        *slot = s;
        *start = b;
        *size = n;
        return true;
    }
    if (w - L.lmin < L.lspan) {
        uint64_t lo = 0, hi = L.nlarge; /* the last block with addr <= w */
        while (hi - lo > 1) {
            uint64_t mid = (lo + hi) / 2;
            if (L.large[mid].addr <= w)
                lo = mid;
            else
                hi = mid;
        }
        const lblk_t *b = &L.large[lo];
        if (w < b->addr || w - b->addr >= (b->size ? b->size : 1))
            return false;
        *slot = L.npslots + lo;
        *start = b->addr;
        *size = b->size;
        return true;
    }
    return false;
}

static inline bool maybe_block(uintptr_t w) {
    return w - L.base < L.span || w - L.lmin < L.lspan;
}

/* A slot's start and size, for the blocks on the mark stack. */
static void slot_block(uint64_t s, uintptr_t *start, uint64_t *size) {
    if (s >= L.npslots) {
        *start = L.large[s - L.npslots].addr;
        *size = L.large[s - L.npslots].size;
        return;
    }
    uint64_t lo = 0, hi = L.nlive; /* the last pool whose first slot is <= s */
    while (hi - lo > 1) {
        uint64_t mid = (lo + hi) / 2;
        if (L.pools[L.live[mid]].first <= s)
            lo = mid;
        else
            hi = mid;
    }
    const lpool_t *lp = &L.pools[L.live[lo]];
    *start = L.base + (uint64_t)L.live[lo] * POOL_SIZE + POOL_HEADER +
             (s - lp->first) * CLASS_SIZE(lp->cls) + pool_data_offset();
    *size = L.psize[s];
}

static void push(uint64_t s, uintptr_t start) {
    if (L.pending[s])
        return;
    if (L.nstack == L.capstack) {
        uint64_t cap = L.capstack ? L.capstack * 2 : 65536;
        mark_t *n = regrow(L.stack, L.nstack * sizeof(mark_t), cap * sizeof(mark_t));
        if (!n)
            return; /* L.failed: the result is thrown away */
        L.stack = n;
        L.capstack = cap;
    }
    L.pending[s] = 1;
    L.stack[L.nstack++] = (mark_t){s, start};
}

static uint64_t slot_size(uint64_t s) {
    return s >= L.npslots ? L.large[s - L.npslots].size : L.psize[s];
}

/* Pops up to MARK_BATCH blocks and asks for their memory before reading any: a heap of lists
 * is a chase from pointer to pointer, and a batch is that many chases in flight. */
#define MARK_BATCH 16
static unsigned pop_batch(mark_t *out) {
    unsigned k = 0;
    while (k < MARK_BATCH && L.nstack > 0) {
        mark_t m = L.stack[--L.nstack];
        L.pending[m.slot] = 0;
        __builtin_prefetch((const void *)m.start);
        out[k++] = m;
    }
    return k;
}

/* ---- memcheck's heuristics (--leak-check-heuristics=all, its default) --------------------- */
enum { H_NONE = 0, H_STDSTRING, H_LENGTH64, H_NEWARRAY, H_MULTIPLEINHERITANCE, H_N };
static const char *const heur_names[H_N] = {"none", "stdstring", "length64", "newarray",
                                             "multipleinheritance"};

static const mapping_t *mapping_of(uintptr_t a) {
    size_t lo = 0, hi = L.nmaps;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (L.maps[mid].hi <= a)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < L.nmaps && L.maps[lo].lo <= a ? &L.maps[lo] : NULL;
}

/* A vtable: in a readable file mapping, and among its first 21 words, two non-zero ones that
 * point into executable file mappings before any that does not. */
static bool is_vtable(uintptr_t v) {
    const mapping_t *m = mapping_of(v);
    if (!m || !m->file || !m->r)
        return false;
    unsigned ok = 0;
    for (unsigned i = 0; i < 21 && v + (i + 1) * 8 <= m->hi - 8; i++) {
        uintptr_t f = ((const uintptr_t *)v)[i];
        if (f == 0)
            continue;
        const mapping_t *fm = mapping_of(f);
        if (!fm || !fm->file || !fm->x)
            return false;
        if (++ok == 2)
            return true;
    }
    return false;
}

/* Only for an interior pointer w into the block [b, b + n). Block words are always readable. */
static unsigned heuristic(uintptr_t w, uintptr_t b, uint64_t n) {
    const uintptr_t *d = (const uintptr_t *)b;
    if (w == b + 24 && n >= 24) { /* the old std::string: length, capacity, refcount, chars */
        uintptr_t cap = d[1];
        if (24 + cap + 1 == n && d[0] <= cap)
            return H_STDSTRING;
    }
    if (w == b + 8 && n >= 8) {
        if (d[0] > 0 && n - 8 == d[0])
            return H_LENGTH64;
        if (d[0] > 0 && (n - 8) % d[0] == 0)
            return H_NEWARRAY;
    }
    if ((w & 7) == 0 && n >= 8 && w + 8 <= b + n) {
        uintptr_t inner = *(const uintptr_t *)w, first = d[0];
        if ((inner & 7) == 0 && inner >= 4096 && (first & 7) == 0 && first >= 4096 &&
            is_vtable(inner) && is_vtable(first))
            return H_MULTIPLEINHERITANCE;
    }
    return H_NONE;
}

/* ---- phase 1: from the roots ----------------------------------------------------------------- */
static void push_root(uintptr_t w, bool prior_definite) {
    uint64_t s, n;
    uintptr_t b;
    if (!find_block(w, &s, &b, &n))
        return;
    if (L.state[s] == S_REACHABLE) {
        if (L.heur[s] && w == b)
            L.heur[s] = H_NONE;
        return;
    }
    bool via_start = w == b;
    if (!via_start) {
        L.heur[s] = (uint8_t)heuristic(w, b, n); /* memcheck overwrites it, even with none */
        via_start = L.heur[s] != H_NONE;
    }
    if (via_start && prior_definite) {
        L.state[s] = S_REACHABLE;
        push(s, b);
    } else if (L.state[s] == S_UNREACHED) {
        L.state[s] = S_POSSIBLE;
        push(s, b);
    }
}

static void scan_block_words(uintptr_t b, uint64_t n, bool prior_definite) {
    const uintptr_t *p = (const uintptr_t *)b, *end = (const uintptr_t *)((b + n) & ~(uintptr_t)7);
    for (; p < end; p++)
        if (maybe_block(*p))
            push_root(*p, prior_definite);
}

static void mark_from_stack(void) {
    mark_t batch[MARK_BATCH];
    unsigned k;
    while (!L.failed && (k = pop_batch(batch)) > 0)
        for (unsigned i = 0; i < k; i++) {
            uint64_t n = slot_size(batch[i].slot);
            result.block_bytes += n;
            scan_block_words(batch[i].start, n, L.state[batch[i].slot] != S_POSSIBLE);
        }
}

/* ---- reading root memory, guarded against faults --------------------------------------------- */
static sigjmp_buf fault_jmp;
static volatile sig_atomic_t fault_armed;
static volatile uintptr_t fault_addr;
static pid_t scanner_tid;
static struct sigaction old_segv, old_bus;

static void on_fault(int sig, siginfo_t *si, void *uc) {
    if (fault_armed && my_tid() == scanner_tid) {
        fault_addr = (uintptr_t)si->si_addr;
        fault_armed = 0;
        siglongjmp(fault_jmp, 1);
    }
    /* another thread's own fault: hand it to the program's handler */
    const struct sigaction *old = sig == SIGSEGV ? &old_segv : &old_bus;
    if ((old->sa_flags & SA_SIGINFO) && old->sa_sigaction) {
        old->sa_sigaction(sig, si, uc);
    } else if (old->sa_handler != SIG_DFL && old->sa_handler != SIG_IGN) {
        old->sa_handler(sig);
    } else {
        sigaction(sig, old, NULL); /* the fault repeats, under the default action */
    }
}

static void scan_root(uintptr_t lo, uintptr_t hi) {
    lo = (lo + 7) & ~(uintptr_t)7;
    hi &= ~(uintptr_t)7;
    volatile uintptr_t pos = lo;
    while (pos < hi) {
        if (sigsetjmp(fault_jmp, 0)) {
            uintptr_t next = (fault_addr & ~(uintptr_t)4095) + 4096;
            pos = next > pos ? next : pos + 4096;
            result.root_faults++;
            continue;
        }
        fault_armed = 1;
        const uintptr_t *p = (const uintptr_t *)pos, *end = (const uintptr_t *)hi;
        for (; p < end; p++)
            if (maybe_block(*p))
                push_root(*p, true);
        fault_armed = 0;
        result.root_bytes += hi - pos;
        break;
    }
}

/* ---- the memory map ------------------------------------------------------------------------- */
static bool read_maps(void) {
    size_t len;
    char *text = read_proc("/proc/self/maps", &len);
    if (!text)
        return false;
    size_t lines = 1;
    for (size_t i = 0; i < len; i++)
        lines += text[i] == '\n';
    L.maps = grab(lines * sizeof(mapping_t));
    if (!L.maps)
        return false;
    const char *s = text;
    while (*s) {
        const char *eol = strchr(s, '\n');
        if (!eol)
            eol = s + strlen(s);
        mapping_t m = {0};
        m.lo = parse_hex(&s);
        if (*s == '-')
            s++;
        m.hi = parse_hex(&s);
        if (*s == ' ' && eol - s > 5) {
            m.r = s[1] == 'r';
            m.w = s[2] == 'w';
            m.x = s[3] == 'x';
            /* offset, device, inode, then the path after spaces */
            unsigned fields = 0;
            const char *q = s + 5;
            while (q < eol && fields < 3) {
                while (q < eol && *q == ' ')
                    q++;
                while (q < eol && *q != ' ')
                    q++;
                fields++;
            }
            while (q < eol && *q == ' ')
                q++;
            size_t plen = (size_t)(eol - q);
            m.file = plen > 0 && q[0] == '/';
            m.heap = plen == 6 && memcmp(q, "[heap]", 6) == 0;
            m.dev = plen > 5 && memcmp(q, "/dev/", 5) == 0 && !(plen >= 9 && memcmp(q, "/dev/zero", 9) == 0) &&
                    !(plen > 9 && memcmp(q, "/dev/shm/", 9) == 0);
            if (m.hi > m.lo)
                L.maps[L.nmaps++] = m;
        }
        s = *eol ? eol + 1 : eol;
    }
    return L.nmaps > 0;
}

static void exclude(uintptr_t lo, uintptr_t hi) {
    if (hi <= lo)
        return;
    if (L.nexcl == L.capexcl) {
        size_t cap = L.capexcl ? L.capexcl * 2 : 4096;
        range_t *n = regrow(L.excl, L.nexcl * sizeof(range_t), cap * sizeof(range_t));
        if (!n)
            return;
        L.excl = n;
        L.capexcl = cap;
    }
    L.excl[L.nexcl++] = (range_t){lo, hi};
}

static void sort_ranges(range_t *v, size_t n) {
    for (size_t gap = n / 2; gap > 0; gap /= 2) /* shell sort: a few thousand ranges */
        for (size_t i = gap; i < n; i++) {
            range_t t = v[i];
            size_t j = i;
            for (; j >= gap && v[j - gap].lo > t.lo; j -= gap)
                v[j] = v[j - gap];
            v[j] = t;
        }
}

/* A heap of one of glibc's other arenas: 64 MiB aligned, starting with its heap_info (arena,
 * previous heap, size, mprotect_size), the arena either just after it or in another heap. */
static bool is_glibc_heap(const mapping_t *m) {
    if ((m->lo & (GLIBC_HEAP_MAX - 1)) != 0 || m->file || !m->r || !m->w)
        return false;
    const uintptr_t *h = (const uintptr_t *)m->lo;
    uintptr_t ar = h[0], prev = h[1], size = h[2], mprot = h[3];
    if (size == 0 || size > GLIBC_HEAP_MAX || mprot < size || size > m->hi - m->lo)
        return false;
    if (prev == 0)
        return ar > m->lo && ar < m->lo + 128;
    return (prev & (GLIBC_HEAP_MAX - 1)) == 0 && (ar & ~(GLIBC_HEAP_MAX - 1)) != m->lo;
}

/* glibc's main arena, struct malloc_state in libc's data (2.26 and later: mutex, flags,
 * have_fastchunks, 10 fastbins, top, last_remainder, 254 bin pointers, binmap, next, ...). It is
 * allocator state, which memcheck (whose malloc replaces glibc's) never has: its top and bin
 * pointers name chunk headers, and a chunk's header lies in the last 8 bytes of the live block
 * before it when the block's size leaves no slack, so they would make that block "possibly lost".
 * Found by its signature: an empty bin's two pointers both point at the bin itself (bin_at:
 * the pair's address minus 16), a bin is never half empty, and most bins of any process are
 * empty. */
#define MSTATE_BINS 112
#define MSTATE_NBINS 127 /* bins 1..126 */
#define MSTATE_SIZE 2200
static bool is_main_arena(uintptr_t a) {
    const uintptr_t *w = (const uintptr_t *)a;
    unsigned empty = 0;
    for (unsigned i = 1; i < MSTATE_NBINS; i++) {
        uintptr_t pair = a + MSTATE_BINS + (uintptr_t)(i - 1) * 16, bin = pair - 16;
        uintptr_t fd = w[(pair - a) / 8], bk = w[(pair - a) / 8 + 1];
        if (fd == bin && bk == bin)
            empty++;
        else if (fd == bin || bk == bin || fd == 0 || bk == 0)
            return false;
    }
    return empty >= 32;
}

static void exclude_main_arena(void) {
    uintptr_t lo, hi;
    if (!unwind_object_range(glibc_code_address(), &lo, &hi))
        return;
    for (size_t i = 0; i < L.nmaps; i++) {
        const mapping_t *m = &L.maps[i];
        if (!m->r || !m->w || m->hi <= lo || m->lo >= hi || m->hi - m->lo < MSTATE_SIZE)
            continue;
        /* the largest bins are empty in practice: a cheap first test */
        for (uintptr_t a = m->lo; a + MSTATE_SIZE <= m->hi; a += 8) {
            uintptr_t last = a + MSTATE_BINS + (MSTATE_NBINS - 2) * 16;
            if (*(const uintptr_t *)last != last - 16 &&
                *(const uintptr_t *)(last - 16) != last - 32)
                continue;
            if (is_main_arena(a)) {
                exclude(a, a + MSTATE_SIZE);
                return;
            }
        }
    }
}

/* Where the calling thread's live stack starts, and its registers there. memcheck scans at the
 * exit_group system call, and counts only defined words: of the frames below exit's caller
 * (exit's, glibc's __run_exit_handlers, our handler), it sees the registers they saved and the
 * words glibc wrote, never the unwritten slots, which still hold the program's stale words (a
 * dropped pointer to a leaked tree at -O2, in __run_exit_handlers' frame). Those frames are
 * glibc's and ours: the scan starts at exit's caller instead, with that frame's callee-saved
 * registers, recovered through the CFI of every frame in between (unwind_caller). For a check
 * the program asks for, the same from the first frame outside the library. *r is the state of
 * the library's frame; false if a frame's CFI cannot be followed. */
static bool program_frame(unwind_regs_t *r, bool exiting, uintptr_t exit_lo, uintptr_t exit_hi) {
    const mapping_t *m = mapping_of(r->rsp);
    if (!m || (exiting && exit_lo == exit_hi))
        return false;
    for (unsigned i = 0; i < 256; i++) {
        uintptr_t pc = r->rip - 1; /* a return address: the call is before it */
        bool here = exiting ? pc >= exit_lo && pc < exit_hi
                            : pc - prof.self_lo >= prof.self_hi - prof.self_lo;
        if (here)
            return !exiting || unwind_caller(r, m->hi); /* exit's frame: one more */
        if (!unwind_caller(r, m->hi))
            return false;
    }
    return false;
}

/* Without the CFI: find the return address into exit above sp (slot A, the top of the frame
 * exit called), then the slot B below it whose return address has the CFI rule "CFA = rsp +
 * off" with B + 8 + off == A + 8: the frame exit called was at B + 8 when it called on. Without
 * both, sp stays. The registers are then the library frame's. */
static uintptr_t exit_frame_sp(uintptr_t sp, uintptr_t exit_lo, uintptr_t exit_hi) {
    const mapping_t *m = mapping_of(sp);
    if (!m || exit_lo == exit_hi)
        return sp;
    uintptr_t lim = m->hi - 8 < sp + 65536 ? m->hi - 8 : sp + 65536, a;
    for (a = sp; a <= lim; a += 8) {
        uintptr_t v = *(const uintptr_t *)a;
        if (v > exit_lo && v <= exit_hi) /* a return address follows its call: exit is noreturn,
                                            its last call may end it */
            break;
    }
    if (a > lim)
        return sp;
    for (uintptr_t b = a - 8; b >= sp; b -= 8) {
        uintptr_t off;
        if (unwind_rsp_offset(*(const uintptr_t *)b, &off) && b + 8 + off == a + 8)
            return b + 8;
    }
    return sp;
}

/* The mapping around a stack pointer, below it and its red zone, is dead stack. A thread
 * stopped by a signal may be in a leaf function that keeps data in the 128 bytes below its
 * stack pointer; the exiting thread is in a call, and its red zone is dead too. */
static void exclude_dead_stack(uintptr_t sp, uintptr_t redzone) {
    const mapping_t *m = mapping_of(sp);
    if (m && sp - redzone > m->lo)
        exclude(m->lo, sp - redzone);
}

#define META_RANGES 16384

static void build_exclusions(uintptr_t self_sp) {
    exclude(g.base, g.base + g.reserve);
    exclude(prof.self_lo, prof.self_hi);
    for (size_t i = 0; i < L.nmaps; i++) {
        const mapping_t *m = &L.maps[i];
        if (m->heap || is_glibc_heap(m))
            exclude(m->lo, m->hi);
    }
    /* every large block in the table, header and all, wherever glibc put it (the library's
     * own are scanned on their own) */
    for (uint64_t i = 0; i < L.nlarge + L.nown; i++) {
        const lblk_t *b = i < L.nlarge ? &L.large[i] : &L.own[i - L.nlarge];
        uintptr_t csize = ((const uintptr_t *)b->addr)[-1] & ~(uintptr_t)7;
        if (csize < 32 || csize > ((uintptr_t)1 << 46))
            csize = b->size + 16;
        exclude(b->addr - 16, b->addr - 16 + csize);
    }
    exclude_main_arena();
    exclude_dead_stack(self_sp, 0);
    if (L.helper) { /* the library's dump thread: its whole stack is ours */
        const mapping_t *m = mapping_of(L.helper_stack);
        if (m)
            exclude(m->lo, m->hi);
    }
    for (unsigned i = 0; i < L.nthreads; i++)
        if (atomic_load(&L.threads[i].state) == 1)
            exclude_dead_stack(L.threads[i].sp, 128);
    /* Last, our own mappings, this scan's among them: everything is mapped by now. */
    uintptr_t *meta = grab(2 * META_RANGES * sizeof(uintptr_t));
    range_t *room = L.nexcl + META_RANGES + 1 > L.capexcl
                        ? regrow(L.excl, L.nexcl * sizeof(range_t),
                                 (L.nexcl + META_RANGES + 1) * sizeof(range_t))
                        : L.excl;
    if (!meta || !room)
        return;
    L.excl = room;
    L.capexcl = L.nexcl + META_RANGES + 1;
    bool complete;
    unsigned n = os_meta_ranges(meta, META_RANGES, &complete);
    for (unsigned i = 0; i < n; i++)
        exclude(meta[2 * i], meta[2 * i + 1]);
    result.approx |= !complete;
    sort_ranges(L.excl, L.nexcl);
    size_t k = 0; /* merged: sorted, disjoint */
    for (size_t i = 0; i < L.nexcl; i++) {
        if (k > 0 && L.excl[i].lo <= L.excl[k - 1].hi) {
            if (L.excl[i].hi > L.excl[k - 1].hi)
                L.excl[k - 1].hi = L.excl[i].hi;
        } else {
            L.excl[k++] = L.excl[i];
        }
    }
    L.nexcl = k;
}

static void scan_roots(void) {
    size_t e = 0;
    for (size_t i = 0; i < L.nmaps && !L.failed; i++) {
        const mapping_t *m = &L.maps[i];
        if (!m->r || !m->w || m->dev)
            continue;
        uintptr_t lo = m->lo;
        while (lo < m->hi) {
            while (e < L.nexcl && L.excl[e].hi <= lo)
                e++;
            if (e < L.nexcl && L.excl[e].lo <= lo) { /* lo is excluded */
                lo = L.excl[e].hi;
                continue;
            }
            uintptr_t end = e < L.nexcl && L.excl[e].lo < m->hi ? L.excl[e].lo : m->hi;
            scan_root(lo, end);
            lo = end;
        }
    }
}

/* ---- stopping the other threads --------------------------------------------------------------- */
static _Atomic int stw_phase; /* 1 while threads are being stopped or are stopped */
static _Atomic uint32_t stw_release;
static _Atomic uint32_t stw_arrived;
static int stop_sig;
static struct sigaction old_stop;
static bool stop_installed;

static long futex(_Atomic uint32_t *w, int op, uint32_t val, const struct timespec *ts) {
    return syscall(SYS_futex, (uint32_t *)w, op, val, ts, NULL, 0);
}

static void on_stop(int sig, siginfo_t *si, void *ucv) {
    if (si->si_code != SI_QUEUE || si->si_value.sival_ptr != STOP_COOKIE) {
        if ((old_stop.sa_flags & SA_SIGINFO) && old_stop.sa_sigaction)
            old_stop.sa_sigaction(sig, si, ucv);
        else if (old_stop.sa_handler != SIG_DFL && old_stop.sa_handler != SIG_IGN)
            old_stop.sa_handler(sig);
        return;
    }
    if (!atomic_load(&stw_phase))
        return; /* late: the scan is over */
    int saved = errno;
    pid_t tid = my_tid();
    thread_rec_t *me = NULL;
    unsigned n = __atomic_load_n(&L.nthreads, __ATOMIC_ACQUIRE);
    for (unsigned i = 0; i < n; i++)
        if (L.threads[i].tid == tid)
            me = &L.threads[i];
    if (me) {
        const ucontext_t *uc = ucv;
        memcpy(me->regs, uc->uc_mcontext.gregs, sizeof me->regs);
        me->sp = (uintptr_t)uc->uc_mcontext.gregs[REG_RSP];
        atomic_store(&me->state, 1);
        atomic_fetch_add(&stw_arrived, 1);
        futex(&stw_arrived, FUTEX_WAKE_PRIVATE, 1, NULL);
        while (atomic_load(&stw_release) == 0)
            futex(&stw_release, FUTEX_WAIT_PRIVATE, 0, NULL);
        atomic_store(&me->state, 2);
    }
    errno = saved;
}

/* Is sig blocked in thread tid? Unknown counts as not. */
static bool blocks_signal(pid_t tid, int sig) {
    char path[64];
    fmt_t f;
    fmt_init(&f, path, sizeof path - 1, -1);
    fmt_str(&f, "/proc/self/task/");
    fmt_u64(&f, (uint64_t)tid);
    fmt_str(&f, "/status");
    path[f.len] = '\0';
    char st[4096];
    const char *p = read_small(path, st, sizeof st) ? strstr(st, "\nSigBlk:") : NULL;
    if (!p)
        return false;
    p += 8;
    while (*p == ' ' || *p == '\t')
        p++;
    uint64_t mask = parse_hex(&p);
    return (mask >> (sig - 1)) & 1;
}

static bool known_thread(pid_t tid) {
    for (unsigned i = 0; i < L.nthreads; i++)
        if (L.threads[i].tid == tid)
            return true;
    return false;
}

/* Sends the stop signal to every thread not yet known; returns how many were new. */
static int stop_new_threads(pid_t self) {
    int fd = open("/proc/self/task", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    int added = 0;
    char buf[4096];
    long n;
    while ((n = syscall(SYS_getdents64, fd, buf, sizeof buf)) > 0) {
        for (long off = 0; off < n;) {
            const char *ent = buf + off;
            unsigned short reclen;
            memcpy(&reclen, ent + 16, sizeof reclen);
            const char *name = ent + 19;
            off += reclen;
            pid_t tid = 0;
            for (const char *c = name; *c >= '0' && *c <= '9'; c++)
                tid = tid * 10 + (*c - '0');
            if (tid <= 0 || tid == self || tid == L.helper || known_thread(tid) ||
                L.nthreads >= MAX_THREADS)
                continue;
            /* The record is published before the signal goes: the handler looks for it. */
            thread_rec_t *t = &L.threads[L.nthreads];
            t->tid = tid;
            atomic_store(&t->state, 0);
            __atomic_store_n(&L.nthreads, L.nthreads + 1, __ATOMIC_RELEASE);
            added++;
            if (blocks_signal(tid, stop_sig)) {
                atomic_store(&t->state, 3);
            } else {
                siginfo_t si;
                memset(&si, 0, sizeof si);
                si.si_signo = stop_sig;
                si.si_code = SI_QUEUE;
                si.si_pid = getpid();
                si.si_uid = getuid();
                si.si_value.sival_ptr = STOP_COOKIE;
                if (syscall(SYS_rt_tgsigqueueinfo, getpid(), tid, stop_sig, &si) != 0)
                    atomic_store(&t->state, 4); /* gone already */
            }
        }
    }
    close(fd);
    return added;
}

static unsigned count_state(int st) {
    unsigned k = 0;
    for (unsigned i = 0; i < L.nthreads; i++)
        k += atomic_load(&L.threads[i].state) == st;
    return k;
}

static bool stop_world(void) {
    stop_sig = SIGRTMAX - 4;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_stop;
    sa.sa_flags = SA_SIGINFO | SA_RESTART;
    sigfillset(&sa.sa_mask);
    if (sigaction(stop_sig, &sa, &old_stop) != 0)
        return false;
    stop_installed = true;
    L.threads = grab(MAX_THREADS * sizeof(thread_rec_t));
    if (!L.threads)
        return false;
    atomic_store(&stw_release, 0);
    atomic_store(&stw_arrived, 0);
    atomic_store(&stw_phase, 1);
    pid_t self = my_tid();
    uint64_t deadline = prof_now_ns() + STOP_WAIT_NS;
    /* Threads stopped cannot make new ones; loop until a listing finds none new. */
    for (;;) {
        int added = stop_new_threads(self);
        if (added < 0)
            return false;
        while (count_state(0) > 0 && prof_now_ns() < deadline) {
            uint32_t seen = atomic_load(&stw_arrived);
            if (count_state(0) == 0)
                break;
            struct timespec ts = {0, 10 * 1000000};
            futex(&stw_arrived, FUTEX_WAIT_PRIVATE, seen, &ts);
        }
        if (added == 0 || prof_now_ns() >= deadline)
            break;
    }
    result.threads = count_state(1);
    result.unstopped = count_state(0) + count_state(3);
    result.approx |= result.unstopped > 0;
    result.foreign_large = strcmp(raw_allocator_name(), "glibc") != 0;
    result.approx |= result.foreign_large;
    return true;
}

static void start_world(void) {
    if (!stop_installed)
        return;
    atomic_store(&stw_release, 1);
    futex(&stw_release, FUTEX_WAKE_PRIVATE, INT32_MAX, NULL);
    /* Wait (a little) for the stopped ones to leave the handler: their records are unmapped
     * after the dump. */
    uint64_t deadline = prof_now_ns() + STOP_WAIT_NS;
    while (count_state(1) > 0 && prof_now_ns() < deadline)
        sched_yield();
    atomic_store(&stw_phase, 0);
    /* A signal still pending (a thread that never answered) would meet the default action of a
     * real-time signal, which ends the process: keep the handler then (it returns at once). */
    if (count_state(0) == 0)
        sigaction(stop_sig, &old_stop, NULL);
}

/* ---- phase 2 and the result ------------------------------------------------------------------- */
static void clique_scan(uint64_t leader) {
    mark_t batch[MARK_BATCH];
    unsigned nb;
    while (!L.failed && (nb = pop_batch(batch)) > 0)
        for (unsigned i = 0; i < nb; i++) {
            uintptr_t b = batch[i].start;
            uint64_t n = slot_size(batch[i].slot);
            const uintptr_t *p = (const uintptr_t *)b, *end = (const uintptr_t *)((b + n) & ~(uintptr_t)7);
            for (; p < end; p++) {
                uint64_t k, kn;
                uintptr_t kb;
                if (!maybe_block(*p) || !find_block(*p, &k, &kb, &kn))
                    continue;
                if (L.state[k] != S_UNREACHED || k == leader)
                    continue;
                push(k, kb);
                L.ind[leader] += kn + L.ind[k];
                L.state[k] = S_INDIRECT;
            }
        }
}

/* The slot at position i of address order: the large blocks below the pools' range, the
 * pools, the large blocks above it. */
static uint64_t slot_by_address(uint64_t i, uint64_t below) {
    return i < below              ? L.npslots + i
           : i < below + L.npslots ? i - below
                                   : L.npslots + (i - L.npslots);
}

/* Phase 2. memcheck takes the unreached blocks as clique leaders in address order, and on its
 * own allocator (fresh memory handed out upwards) that is, in practice, the order they were
 * allocated in: a lost structure is led by its first block, the container (a std::map, the
 * table of a hash table) rather than a node. Our blocks of different sizes lie in different
 * pools, whose order says nothing of time, so the leaders are taken oldest first (by allocation
 * stamp), address order breaking ties. */
static void cliques(void) {
    uint64_t below = 0, nu = 0;
    while (below < L.nlarge && L.large[below].addr < L.base)
        below++;
    for (uint64_t s = 0; s < L.nslots; s++)
        nu += L.state[s] == S_UNREACHED;
    uint64_t *order = grab(nu * sizeof(uint64_t));
    if (!order)
        return;
    uint32_t now = (uint32_t)atomic_load_explicit(&prof.seq, memory_order_relaxed);
    uint64_t k = 0;
    for (uint64_t i = 0; i < L.nslots && k < nu; i++) {
        uint64_t s = slot_by_address(i, below);
        if (L.state[s] != S_UNREACHED)
            continue;
        uint32_t stamp = s < L.npslots ? L.pstamp[s] : L.large[s - L.npslots].stamp;
        uint32_t age = now - stamp;
        order[k++] = (uint64_t)(UINT32_MAX - age) << 32 | i;
    }
    heap_sort(order, k, sizeof(uint64_t), u64_less);
    for (uint64_t j = 0; j < k && !L.failed; j++) {
        uint64_t s = slot_by_address(order[j] & UINT32_MAX, below);
        if (L.state[s] != S_UNREACHED)
            continue;
        uintptr_t b;
        uint64_t n;
        slot_block(s, &b, &n);
        push(s, b);
        clique_scan(s);
    }
}

static unsigned kind_of(uint64_t slot) {
    switch (L.state[slot]) {
    case S_UNREACHED: return LEAK_DEFINITE;
    case S_INDIRECT: return LEAK_INDIRECT;
    case S_POSSIBLE: return LEAK_POSSIBLE;
    default: return LEAK_REACHABLE;
    }
}

static void tally_results(uint32_t nsites) {
    result.sites = grab((size_t)nsites * sizeof(leak_site_t));
    if (!result.sites)
        return;
    result.nsites = nsites;
    for (uint64_t s = 0; s < L.nslots; s++) {
        if (L.state[s] >= S_NONE)
            continue;
        unsigned kind = kind_of(s);
        uint64_t n = slot_size(s);
        result.count[kind]++;
        result.bytes[kind] += n;
        if (L.heur[s]) {
            result.heur_count[L.heur[s]]++;
            result.heur_bytes[L.heur[s]] += n;
        }
        uint32_t site = L.site[s];
        if (site < nsites) {
            leak_site_t *ls = &result.sites[site];
            ls->count[kind]++;
            ls->bytes[kind] += n;
            if (kind == LEAK_DEFINITE)
                ls->held_bytes += L.ind[s];
        }
    }
}

void leak_foreach_block(void (*fn)(uintptr_t addr, uint64_t size, uint32_t site, unsigned kind,
                                   unsigned heur, void *arg),
                        void *arg) {
    if (!result.done)
        return;
    for (uint64_t i = 0; i < L.npools; i++) {
        const lpool_t *lp = &L.pools[i];
        for (unsigned b = 0; b < lp->carved; b++) {
            uint64_t s = lp->first + b;
            if (L.state[s] >= S_NONE || L.state[s] == S_REACHABLE)
                continue;
            fn(L.base + i * POOL_SIZE + POOL_HEADER + (uintptr_t)b * CLASS_SIZE(lp->cls) +
                   pool_data_offset(),
               L.psize[s], L.site[s], kind_of(s), L.heur[s], arg);
        }
    }
    for (uint64_t i = 0; i < L.nlarge; i++) {
        uint64_t s = L.npslots + i;
        if (L.state[s] == S_REACHABLE)
            continue;
        fn(L.large[i].addr, L.large[i].size, L.large[i].site, kind_of(s), L.heur[s], arg);
    }
}

const char *leak_heuristic_name(unsigned h) {
    return h < H_N ? heur_names[h] : "none";
}

const leak_result_t *leak_result(void) {
    return &result;
}

void leak_release(void) {
    release_all();
    memset(&L, 0, sizeof L);
    result.done = false;
}

/* ---- the check ---------------------------------------------------------------------------------- */
bool leak_check(const unwind_regs_t *here, bool exiting, uintptr_t exit_lo, uintptr_t exit_hi) {
    uint64_t t0 = prof_now_ns();
    memset(&result, 0, sizeof result);
    memset(&L, 0, sizeof L);
    prof_enter();
    uint32_t nsites = 0;
    scanner_tid = my_tid();
    if (!prof_dump_helper(&L.helper, &L.helper_stack))
        L.helper = 0;
    prof_ltab_lock();
    bool stopped = stop_world();
    bool ok = stopped && read_maps() && gather_blocks();
    /* No thread makes a site now (those still running allocated no block gathered). */
    nsites = atomic_load_explicit(&prof.nsites, memory_order_acquire);
    if (ok) {
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_sigaction = on_fault;
        sa.sa_flags = SA_SIGINFO | SA_NODEFER;
        sigaction(SIGSEGV, &sa, &old_segv);
        sigaction(SIGBUS, &sa, &old_bus);
        unwind_regs_t me = *here;
        if (!program_frame(&me, exiting, exit_lo, exit_hi)) {
            me = *here;
            me.rsp = exiting ? exit_frame_sp(here->rsp, exit_lo, exit_hi) : here->rsp;
        }
        if (scanner_tid == L.helper)
            me.known = 0; /* the check runs on the dump thread: its registers are ours */
        build_exclusions(me.rsp);
        scan_roots(); /* 1. the memory roots, in address order, then the untracked blocks */
        scan_untracked();
        /* 2. the registers: the calling thread's (those its frame keeps), then the others' */
        if ((me.known & 1) && maybe_block(me.rbp))
            push_root(me.rbp, true);
        for (unsigned i = 0; i < 5; i++)
            if ((me.known >> (i + 1) & 1) && maybe_block(me.cs[i]))
                push_root(me.cs[i], true);
        for (unsigned t = 0; t < L.nthreads; t++)
            if (atomic_load(&L.threads[t].state) == 1)
                for (unsigned i = 0; i < NGREG; i++)
                    if (maybe_block(L.threads[t].regs[i]))
                        push_root(L.threads[t].regs[i], true);
        mark_from_stack(); /* 3. everything reachable from them */
        cliques(); /* 4. what is left, clique by clique */
        sigaction(SIGSEGV, &old_segv, NULL);
        sigaction(SIGBUS, &old_bus, NULL);
        ok = !L.failed;
    }
    start_world();
    prof_ltab_unlock();
    if (ok)
        tally_results(nsites);
    ok = ok && !L.failed;
    if (!ok) {
        tally_message(stopped ? "leak check failed: cannot read /proc/self/maps or map memory"
                              : "leak check failed: cannot list or stop the threads (/proc/self/task)",
                      "; live blocks are not classified", NULL);
        release_all();
    }
    result.done = ok;
    result.scan_ns = prof_now_ns() - t0;
    prof_leave();
    return ok;
}
