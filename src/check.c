/* check.c: TALLY_CHECK, heap error detection (memcheck's heap errors, found by the allocator).
 *
 * THE CHECKED BLOCK
 *   With the check on, every block the program gets is made here, with a header before it and a
 *   guard after it: a pool block of the class that holds all three when it fits (then the guard
 *   runs to the block's end), else a block of the allocator behind the pools. The profiler, which
 *   the check puts in `all` mode so that every block's allocating stack is known, keeps a pool
 *   block in its pool's side table and a large one in its large table, as it does any block:
 *
 *     q              p - 32                 p                    p + n            p + n + G
 *     | (alignment)  | size | sites | base | mark | data (n bytes) | guard (G bytes) |
 *
 *   A pool block's q is the block's start: the program's pointer is 32 bytes in, never a block
 *   start, so free reaches the check through its slow path (leak.c and dump.c take a pool
 *   block's data at pool_data_offset()).
 *
 *   - size: the requested n; sites: the allocating and freeing call sites (written at the free,
 *     the allocating one from the profiler's table); base: p - q, the kind of call that made it
 *     (malloc, new, new[]) and a 16-bit check of both, so a corrupted header is never followed;
 *   - mark: a 64-bit function of p, a secret of the process and the block's state (live, freed
 *     and in quarantine, released to the allocator). free knows a block by it, as memcheck knows
 *     its blocks by its table; a state change is one compare-and-swap, so two threads freeing a
 *     block at once find one of them a double free;
 *   - guard: G = 16 bytes plus the round-up of n to 16 (to the end of a pool block), 0xFD; new
 *     data is filled with 0xCD and freed data with 0xDD (CPython's PYTHONMALLOC=debug bytes,
 *     which Python developers know at a glance).
 *
 * WHAT IS CHECKED, WHEN
 *   free, delete and realloc: the mark (live, freed, or neither: a double free, or a pointer no
 *   allocation returned; inside one of our blocks, on this thread's stack, or nothing known), the
 *   call against the allocating kind (new/delete[], malloc/delete...), the mark's bytes for an
 *   underrun, the guard for an overrun. A freed block is poisoned and queued (the thread's FIFO
 *   quarantine, TALLY_QUARANTINE bytes); when it leaves, its poison and guard are checked again
 *   (a write after free), then it goes back to its pool or the allocator behind. At exit and at
 *   each dump, every live block's guard and every quarantined block's poison are checked too.
 *   A bad free or realloc is reported and skipped: nothing of the heap is touched by it.
 *
 * An error is kept as a context (its kind and its stacks, memcheck's "contexts"), counted, and
 * written into the dump as an `error` record (docs/FORMAT.md); the first of each context is one
 * line on stderr. TALLY_CHECK=abort aborts at the first error instead, for a debugger. */
#include "internal.h"

#include "prof.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

#define CHK_HDR ((size_t)CHECK_HDR)
#define CHK_FRESH 0xCD
#define CHK_DEAD 0xDD
#define CHK_GUARD 0xFD
#define CHK_QCAP 32768u   /* blocks a thread's quarantine holds at most */
#define CHK_MAX_ERRORS 4096u /* contexts kept; more are counted only */
#define CHK_PRINT_MAX 100u   /* contexts printed on stderr */

enum chk_state { CS_LIVE = 1, CS_FREED = 2, CS_RELEASED = 3 };

static inline uint64_t chk_mark(uintptr_t p, unsigned state) {
    uint64_t x = (p ^ g.free_key) * 0xD6E8FEB86659FD93ULL;
    x ^= x >> 29;
    return x * 0x9E3779B97F4A7C15ULL + state * 0xC2B2AE3D27D4EB4FULL;
}

static inline uint64_t *chk_hdr(uintptr_t p) {
    return (uint64_t *)(p - CHK_HDR);
}

static inline size_t chk_guard(size_t n) {
    return 16 + ((0 - n) & 15);
}

/* The guard of the block at p of n bytes: to the end of its pool block (a pool block), or
 * chk_guard(n). A size read from a damaged header is clamped to the pool block. */
static inline size_t guard_of(uintptr_t p, uint64_t n) {
    if (!ptr_is_ours((void *)p))
        return chk_guard(n);
    size_t room = pool_of((void *)p)->bsize - CHK_HDR;
    return n < room ? room - n : 0;
}

/* header word 2: p - q (32 bits), the kind (8 bits), and 16 bits that check both */
static inline uint64_t chk_w2(uintptr_t p, uint64_t off, unsigned kind) {
    uint64_t v = (off & 0xffffffffu) | (uint64_t)(kind & 0xff) << 32;
    return v | (chk_mark(p ^ v, 7) >> 48) << 48;
}
static inline bool chk_w2_ok(uintptr_t p, uint64_t w2) {
    return chk_w2(p, w2 & 0xffffffffu, (unsigned)(w2 >> 32) & 0xff) == w2;
}

/* ---- errors ------------------------------------------------------------------------------------ */
typedef struct chk_err_s {
    uint8_t kind;  /* enum check_kind */
    uint8_t call;  /* enum check_call: the call that made or found it */
    uint8_t state; /* enum check_addr: what the address is */
    uint8_t pad;
    uint32_t len;  /* bytes found changed (writes), from offset on */
    uint32_t where, alloc, free; /* site ids; 0 unknown */
    uint64_t addr, block, size;  /* the address; the block it is in or near, and its size */
    int64_t offset;              /* addr - block */
    uint64_t count;
} chk_err_t;

static chk_err_t *errs;
static unsigned nerrs;
static atomic_flag err_lock = ATOMIC_FLAG_INIT;
static _Atomic uint64_t err_total, err_dropped;
static _Atomic unsigned printed;
static __thread int tls_in_report TLS_IE;

static const char *const kind_name[CHECK_NKINDS] = {
    [CHECK_INVALID_FREE] = "invalid_free", [CHECK_DOUBLE_FREE] = "double_free",
    [CHECK_MISMATCHED] = "mismatched_free", [CHECK_OVERRUN] = "overrun",
    [CHECK_UNDERRUN] = "underrun", [CHECK_WRITE_AFTER_FREE] = "write_after_free",
};
static const char *const call_name[CHECK_NCALLS] = {
    [CC_FREE] = "free", [CC_DELETE] = "delete", [CC_DELETE_ARRAY] = "delete[]",
    [CC_REALLOC] = "realloc", [CC_QUARANTINE] = "quarantine", [CC_SCAN] = "scan",
    [CC_USABLE] = "malloc_usable_size",
};
static const char *const state_name[] = {"none", "alloc", "free", "stack"};

static void print_error(const chk_err_t *e, void *caller) {
    static const char *const head[CHECK_NKINDS] = {
        [CHECK_INVALID_FREE] = "Invalid free() / delete / delete[] / realloc()",
        [CHECK_DOUBLE_FREE] = "Invalid free() / delete / delete[] / realloc()",
        [CHECK_MISMATCHED] = "Mismatched free() / delete / delete []",
        [CHECK_OVERRUN] = "Invalid write", [CHECK_UNDERRUN] = "Invalid write",
        [CHECK_WRITE_AFTER_FREE] = "Invalid write",
    };
    char buf[768];
    fmt_t f;
    fmt_init(&f, buf, sizeof buf - 1, -1);
    fmt_str(&f, "tally: ");
    fmt_str(&f, head[e->kind]);
    if (e->len) {
        fmt_str(&f, " of size ");
        fmt_u64(&f, e->len);
    }
    fmt_str(&f, ": address ");
    fmt_hex(&f, e->addr);
    if (e->state == CA_ALLOC || e->state == CA_FREE) {
        fmt_str(&f, " is ");
        uint64_t off = (uint64_t)e->offset;
        if (e->offset < 0) {
            fmt_u64_grouped(&f, (uint64_t)-e->offset);
            fmt_str(&f, " bytes before");
        } else if (off >= e->size && !(off == 0 && e->size == 0)) {
            fmt_u64_grouped(&f, off - e->size);
            fmt_str(&f, " bytes after");
        } else {
            fmt_u64_grouped(&f, off);
            fmt_str(&f, " bytes inside");
        }
        fmt_str(&f, " a block of size ");
        fmt_u64_grouped(&f, e->size);
        fmt_str(&f, e->state == CA_ALLOC ? " alloc'd" : " free'd");
    } else if (e->state == CA_STACK) {
        fmt_str(&f, " is on this thread's stack");
    } else {
        fmt_str(&f, " is not stack'd, malloc'd or (recently) free'd");
    }
    if (e->kind == CHECK_MISMATCHED) {
        fmt_str(&f, " (freed by ");
        fmt_str(&f, call_name[e->call]);
        fmt_str(&f, ")");
    }
    if (caller) {
        fmt_str(&f, "; in ");
        fmt_str(&f, call_name[e->call]);
        fmt_str(&f, "() called from ");
        alloc_say_caller(&f, (uintptr_t)caller);
    } else if (e->call == CC_SCAN) {
        fmt_str(&f, "; found by the check at exit or at a dump");
    }
    fmt_char(&f, '\n');
    os_write_all(check_fd(), f.buf, f.len);
}

/* Keeps e as a new context or counts it in its context; prints the first of a context. */
static noinline cold void report(chk_err_t *e, void *caller) {
    atomic_fetch_add_explicit(&err_total, 1, memory_order_relaxed);
    int saved = errno;
    bool fresh = false;
    if (tls_in_report) { /* a signal handler that came in while we hold the lock */
        atomic_fetch_add_explicit(&err_dropped, 1, memory_order_relaxed);
        return;
    }
    tls_in_report = 1;
    spin_lock(&err_lock);
    if (!errs)
        errs = os_map(CHK_MAX_ERRORS * sizeof *errs);
    unsigned i = 0;
    for (; errs && i < nerrs; i++) {
        chk_err_t *o = &errs[i];
        if (o->kind == e->kind && o->call == e->call && o->state == e->state &&
            o->where == e->where && o->alloc == e->alloc && o->free == e->free &&
            (e->where || o->block == e->block))
            break;
    }
    if (errs && i < nerrs) {
        errs[i].count++;
    } else if (errs && nerrs < CHK_MAX_ERRORS) {
        e->count = 1;
        errs[nerrs++] = *e;
        fresh = true;
    } else {
        atomic_fetch_add_explicit(&err_dropped, 1, memory_order_relaxed);
    }
    spin_unlock(&err_lock);
    if (fresh && opt.check != CHECK_QUIET &&
        atomic_fetch_add_explicit(&printed, 1, memory_order_relaxed) < CHK_PRINT_MAX)
        print_error(e, caller);
    tls_in_report = 0;
    errno = saved;
    sig_fatal_poll();
    if (opt.check == CHECK_ABORT) {
        static const char m[] = "tally: TALLY_CHECK=abort: aborting at the first error\n";
        os_write_all(check_fd(), m, sizeof m - 1);
        abort();
    }
}

uint64_t check_errors(uint64_t *contexts) {
    if (contexts)
        *contexts = __atomic_load_n(&nerrs, __ATOMIC_RELAXED);
    return atomic_load_explicit(&err_total, memory_order_relaxed);
}

/* ---- reading a word that may not be mapped ------------------------------------------------------
 * A pointer handed to free that is no live block of ours may point anywhere (a freed block given
 * back to the allocator behind, a wild value): the word before it is read by the kernel, which
 * fails where nothing is mapped instead of faulting. Only errors and the rare untracked block
 * come here. */
static bool read_word(uintptr_t a, uint64_t *out) {
    struct iovec local = {out, 8}, remote = {(void *)a, 8};
    ssize_t r = process_vm_readv(getpid(), &local, 1, &remote, 1, 0);
    if (r == 8)
        return true;
    if (r < 0 && errno == EFAULT)
        return false;
    /* the call is refused (a seccomp filter): read it where it is in the pointer's own page */
    if ((a & 4095) > 4096 - 16)
        return false;
    *out = __atomic_load_n((uint64_t *)a, __ATOMIC_ACQUIRE);
    return true;
}

static heap_t *chk_heap(void) {
    heap_t *h = tls_heap;
    return h->kind == HEAP_REAL ? h : NULL;
}

/* The site of the calling stack (0 when the profiler cannot take it now). */
static uint32_t here(void *caller) {
    heap_t *h = tls_heap;
    return h->kind == HEAP_REAL ? prof_site_here(h, caller) : 0;
}

/* The first byte of [p, p + n) that is not b, or n. */
static size_t first_not(const unsigned char *p, size_t n, unsigned char b) {
    uint64_t w = 0x0101010101010101ULL * b;
    size_t i = 0;
    while (i < n && ((uintptr_t)(p + i) & 7))
        if (p[i++] != b)
            return i - 1;
    for (; i + 8 <= n; i += 8)
        if (*(const uint64_t *)(const void *)(p + i) != w)
            break;
    for (; i < n; i++)
        if (p[i] != b)
            return i;
    return n;
}

/* How many bytes from i on differ from b, in a row (at least 1). */
static uint32_t run_not(const unsigned char *p, size_t i, size_t n, unsigned char b) {
    size_t j = i;
    while (j < n && p[j] != b && j - i < 4096)
        j++;
    return (uint32_t)(j > i ? j - i : 1);
}

/* ---- allocation ---------------------------------------------------------------------------------- */
void *check_alloc(size_t n, size_t align, unsigned kind, bool zero, void *caller) {
    if (align < ALIGNMENT)
        align = ALIGNMENT;
    size_t hdr = align <= CHK_HDR ? CHK_HDR : align, guard = chk_guard(n);
    if (n > SIZE_MAX / 2 - hdr - guard || hdr > 0xffffffffu) {
        errno = ENOMEM;
        return NULL;
    }
    size_t total = hdr + n + guard;
    /* A small one is a pool block (the profiler's side tables then hold it, as any pool
     * block); its guard runs to the block's end. */
    char *q = total <= SMALL_MAX && align == ALIGNMENT
                  ? alloc_check_pool_block(n, size_class(total))
                  : NULL;
    bool pooled = q != NULL;
    if (pooled)
        guard = pool_of(q)->bsize - hdr - n;
    else
        q = align <= ALIGNMENT ? raw_malloc(total) : raw_memalign(align, total);
    if (q == NULL) {
        errno = ENOMEM;
        return NULL;
    }
    uintptr_t hid = prof_hold(q + hdr, 0);
    uintptr_t p = (uintptr_t)prof_reveal(hid);
    uint64_t *w = chk_hdr(p);
    w[0] = n;
    w[1] = 0;
    w[2] = chk_w2(p, hdr, kind);
    memset((void *)p, zero ? 0 : CHK_FRESH, n);
    memset((char *)prof_reveal(hid) + n, CHK_GUARD, guard);
    __atomic_store_n(&chk_hdr((uintptr_t)prof_reveal(hid))[3],
                     chk_mark((uintptr_t)prof_reveal(hid), CS_LIVE), __ATOMIC_RELEASE);
    if (pooled)
        return prof_alloc(tls_heap, prof_release(hid, 0), n, caller);
    return large_done(prof_release(hid, 0), n, caller);
}

size_t check_block_size(void *ptr) {
    return chk_hdr((uintptr_t)ptr)[0];
}

/* Whether p is a live checked block, and its requested size. */
static bool live_size(uintptr_t p, uint64_t *have) {
    uint64_t m;
    if (ptr_is_ours((void *)p)) {
        pool_t *pl = pool_of((void *)p);
        uint32_t off = (uint32_t)((p - CHK_HDR) & (POOL_SIZE - 1)) - (uint32_t)POOL_HEADER;
        uint32_t site;
        if (!(off < __atomic_load_n(&pl->carve_end, __ATOMIC_RELAXED) && off % pl->bsize == 0))
            return false;
        if (prof_small_peek(pl, (void *)p, &site, have))
            return true;
        *have = chk_hdr(p)[0];
        return chk_hdr(p)[3] == chk_mark(p, CS_LIVE) && *have <= pl->bsize - CHK_HDR;
    }
    lent_t e;
    if (prof_large_peek((void *)p, &e)) {
        *have = e.size;
        return true;
    }
    if ((p & 15) == 0 && read_word(p - 8, &m) && m == chk_mark(p, CS_LIVE)) {
        *have = chk_hdr(p)[0];
        return true;
    }
    return false;
}

size_t check_usable_size(void *ptr) {
    uint64_t have;
    return live_size((uintptr_t)ptr, &have) ? have : 0;
}

/* ---- the quarantine ------------------------------------------------------------------------------ */
typedef struct qent_s {
    uintptr_t p;
    uint64_t n;
} qent_t;
struct chk_q_s {
    atomic_flag lock;
    uint32_t head, tail; /* entries [head, tail), indexes mod CHK_QCAP */
    uint64_t bytes;
    qent_t e[CHK_QCAP];
};

/* A released block's word 2: its allocation and free sites (20 bits each), its size (20 bits,
 * 0 when larger) and a 4-bit check. */
static uint64_t released_word(uintptr_t p, uint32_t alloc, uint32_t free, uint64_t n) {
    uint64_t v = (uint64_t)(alloc & 0xfffff) | (uint64_t)(free & 0xfffff) << 20 |
                 (uint64_t)(n < (1u << 20) ? n : 0) << 40;
    return v | (chk_mark(p ^ v, 9) >> 60) << 60;
}

/* Back to the allocator behind, after the check that nothing wrote to it while it waited. */
static void release(uintptr_t p, uint64_t n, unsigned call, void *caller) {
    uint64_t *w = chk_hdr(p);
    const unsigned char *b = (const unsigned char *)p;
    size_t guard = guard_of(p, n), i = first_not(b, n, CHK_DEAD);
    if (i == n) {
        i = n + first_not(b + n, guard, CHK_GUARD);
    }
    if (i < n + guard) {
        bool in = i < n;
        chk_err_t e = {.kind = CHECK_WRITE_AFTER_FREE, .call = (uint8_t)call, .state = CA_FREE,
                       .len = run_not(b, i, n + guard, in ? CHK_DEAD : CHK_GUARD),
                       .alloc = (uint32_t)w[1], .free = (uint32_t)(w[1] >> 32),
                       .addr = p + i, .block = p, .size = n, .offset = (int64_t)i};
        e.where = caller ? here(caller) : 0;
        report(&e, caller);
    }
    uint64_t w2 = w[2];
    if (!chk_w2_ok(p, w2))
        return; /* its header was overwritten (reported at its free): never handed back */
    /* Word 2 is not needed any more: it keeps the sites and the size for a later double free
     * (the allocator behind writes its links into words 0 and 1, and only into 2 and 3 for a
     * chunk in a large bin, which then takes the mark too). */
    w[2] = released_word(p, (uint32_t)w[1], (uint32_t)(w[1] >> 32), n);
    __atomic_store_n(&w[3], chk_mark(p, CS_RELEASED), __ATOMIC_RELEASE);
    if (ptr_is_ours((void *)p))
        alloc_check_pool_release((void *)(p - CHK_HDR));
    else
        raw_free((void *)(p - (w2 & 0xffffffffu)));
}

static struct chk_q_s *queue_of(heap_t *h) {
    if (h->chq == NULL && opt.quarantine)
        h->chq = os_map(sizeof(struct chk_q_s));
    return h->chq;
}

/* The freed block p (n bytes, poisoned) joins the thread's quarantine, and the oldest leave it
 * while it holds more than TALLY_QUARANTINE bytes; without a quarantine it is released now. */
static void quarantine(heap_t *h, uintptr_t p, uint64_t n, void *caller) {
    struct chk_q_s *q = h ? queue_of(h) : NULL;
    if (q == NULL || atomic_flag_test_and_set_explicit(&q->lock, memory_order_acquire)) {
        release(p, n, CC_QUARANTINE, caller); /* no heap, or a signal handler inside us */
        return;
    }
    uint64_t cost = n + CHK_HDR + guard_of(p, n);
    q->e[q->tail % CHK_QCAP] = (qent_t){p, n};
    q->tail++;
    q->bytes += cost;
    qent_t out[16];
    unsigned nout = 0;
    while (nout < 16 && q->head != q->tail &&
           (q->bytes > opt.quarantine || q->tail - q->head >= CHK_QCAP)) {
        qent_t *e = &q->e[q->head % CHK_QCAP];
        out[nout++] = *e;
        q->bytes -= e->n + CHK_HDR + guard_of(e->p, e->n);
        q->head++;
    }
    /* the blocks to leave next are cold by now (a quarantine outgrows the caches): their
     * first lines are fetched while these few are checked */
    if (q->head + 6 < q->tail) {
        const qent_t *e = &q->e[(q->head + 6) % CHK_QCAP];
        const char *b = (const char *)e->p - CHK_HDR;
        for (uint64_t off = 0; off < e->n + 2 * CHK_HDR && off < 1024; off += 64)
            __builtin_prefetch(b + off);
    }
    atomic_flag_clear_explicit(&q->lock, memory_order_release);
    for (unsigned i = 0; i < nout; i++)
        release(out[i].p, out[i].n, CC_QUARANTINE, caller);
}

/* ---- free ---------------------------------------------------------------------------------------- */
static const uint8_t kind_of_call[CHECK_NCALLS] = {
    [CC_FREE] = CK_MALLOC, [CC_DELETE] = CK_NEW, [CC_DELETE_ARRAY] = CK_NEW_ARRAY,
    [CC_REALLOC] = CK_MALLOC,
};

/* The live large block whose data or guard holds in.p (an error's slow search: every entry). */
struct inside_s {
    uintptr_t p;
    bool found;
    lent_t e;
};
static void find_inside(const lent_t *le, void *arg) {
    struct inside_s *in = arg;
    if (!in->found && in->p > le->addr &&
        in->p - le->addr < le->size + chk_guard(le->size)) {
        in->found = true;
        in->e = *le;
    }
}

/* What a pointer that is no live block of ours is: inside one of our blocks (live or freed) that
 * starts earlier in its page (or a live large block anywhere), on this thread's stack, or
 * nothing known. Fills e's address part. */
static void describe(uintptr_t p, chk_err_t *e) {
    e->addr = p;
    e->state = CA_NONE;
    uintptr_t page = p & ~(uintptr_t)4095;
    uint64_t probe;
    if (ptr_is_ours((void *)p)) /* a pool's memory is all mapped: from its first block on */
        page = (uintptr_t)pool_of((void *)p) + POOL_HEADER;
    else if (!read_word(page, &probe))
        page = p; /* not mapped: nothing is looked at */
    for (uintptr_t c = (p - 1) & ~(uintptr_t)15; c >= page + 8 && c + 4096 > p; c -= 16) {
        uint64_t m = *(const uint64_t *)(c - 8);
        unsigned st = m == chk_mark(c, CS_LIVE) ? CA_ALLOC : m == chk_mark(c, CS_FREED) ? CA_FREE : 0;
        if (!st || c < page + CHK_HDR)
            continue;
        const uint64_t *w = chk_hdr(c);
        if (w[0] > (1ull << 47) || p >= c + w[0] + guard_of(c, w[0]))
            break; /* past the block nearest before it */
        e->state = (uint8_t)st;
        e->block = c;
        e->size = w[0];
        e->offset = (int64_t)(p - c);
        if (st == CA_FREE) {
            e->alloc = (uint32_t)w[1];
            e->free = (uint32_t)(w[1] >> 32);
        } else if (!ptr_is_ours((void *)c)) {
            lent_t le;
            if (prof_large_peek((void *)c, &le))
                e->alloc = le.site;
        } else {
            uint64_t sz;
            uint32_t site;
            if (prof_small_peek(pool_of((void *)c), (void *)c, &site, &sz))
                e->alloc = site;
        }
        return;
    }
    if (!ptr_is_ours((void *)p)) { /* far into a large block: the table has it */
        struct inside_s in = {.p = p};
        prof_ltab_foreach(find_inside, &in);
        if (in.found) {
            e->state = CA_ALLOC;
            e->block = in.e.addr;
            e->size = in.e.size;
            e->offset = (int64_t)(p - in.e.addr);
            e->alloc = in.e.site;
            return;
        }
    }
    uintptr_t lo, hi;
    if (unwind_thread_stack(&lo, &hi) && p >= lo && p < hi)
        e->state = CA_STACK;
}

/* What the profiler knew of a block being freed: its site and size (tracked), and for a large
 * block its record, whose free is credited once the checks are done (a pool block's was, as its
 * tag was taken). */
typedef struct known_s {
    bool tracked;
    uint32_t site;
    uint64_t size;
    lent_t *te;
} known_t;

/* Frees a live block: its checks, its poison, its quarantine. mark_ok: its mark was intact (and
 * is now "freed"); else the profiler knew it (k), and its mark was overwritten. */
static void free_live(uintptr_t hid, unsigned call, void *caller, bool mark_ok, const known_t *k) {
    uintptr_t p = (uintptr_t)prof_reveal(hid);
    uint64_t *w = chk_hdr(p);
    uint64_t n = w[0], w2 = w[2];
    uint32_t where = here(caller);
    p = (uintptr_t)prof_reveal(hid);
    w = chk_hdr(p);
    bool tracked = k->tracked;
    uint32_t asite = tracked ? k->site : 0;
    bool hdr_ok = chk_w2_ok(p, w2) && (!tracked || k->size == n) &&
                  (!ptr_is_ours((void *)p) || n <= pool_of((void *)p)->bsize - CHK_HDR);
    if (!mark_ok || !hdr_ok) {
        /* an underrun: the bytes before the block changed */
        uint64_t want = chk_mark(p, CS_LIVE), have = w[3];
        int64_t at = -1;
        uint32_t len = 1;
        if (have != want) {
            int k = 7;
            while (k > 0 && ((have ^ want) >> (8 * k) & 0xff) == 0)
                k--;
            at = -(int64_t)(8 - k); /* the byte nearest the block that changed */
            len = (uint32_t)(8 - k);
        } else {
            at = -(int64_t)CHK_HDR + 16; /* the size or the base word */
            len = 8;
        }
        if (tracked)
            n = k->size;
        chk_err_t e = {.kind = CHECK_UNDERRUN, .call = (uint8_t)call, .state = CA_ALLOC,
                       .len = len, .where = where, .alloc = asite, .addr = p + (uint64_t)at,
                       .block = p, .size = n, .offset = at};
        report(&e, caller);
        if (!hdr_ok) { /* the base cannot be trusted: the block is never handed back */
            if (k->te)
                prof_large_freed(k->te);
            __atomic_store_n(&w[3], chk_mark(p, CS_FREED), __ATOMIC_RELEASE);
            return;
        }
        __atomic_store_n(&w[3], chk_mark(p, CS_FREED), __ATOMIC_RELEASE);
    }
    unsigned kind = (unsigned)(w2 >> 32) & 0xff;
    if (call < CC_QUARANTINE && kind != kind_of_call[call]) {
        chk_err_t e = {.kind = CHECK_MISMATCHED, .call = (uint8_t)call, .state = CA_ALLOC,
                       .where = where, .alloc = asite, .addr = p, .block = p, .size = n,
                       .offset = 0};
        report(&e, caller);
    }
    const unsigned char *b = (const unsigned char *)p;
    size_t guard = guard_of(p, n), j = first_not(b + n, guard, CHK_GUARD);
    if (j < guard) {
        chk_err_t e = {.kind = CHECK_OVERRUN, .call = (uint8_t)call, .state = CA_ALLOC,
                       .len = run_not(b, n + j, n + guard, CHK_GUARD), .where = where,
                       .alloc = asite, .addr = p + n + j, .block = p, .size = n,
                       .offset = (int64_t)(n + j)};
        report(&e, caller);
        memset((void *)(p + n), CHK_GUARD, guard); /* reported once: its release checks again */
    }
    if (k->te)
        prof_large_freed(k->te);
    w[1] = asite | (uint64_t)where << 32;
    memset((void *)p, CHK_DEAD, n);
    quarantine(chk_heap(), (uintptr_t)prof_reveal(hid), n, caller);
}

/* A second free of a block freed before: in the quarantine (mark m says freed) or released. */
static void double_free(uintptr_t p, uint64_t m, unsigned call, void *caller) {
    const uint64_t *w = chk_hdr(p);
    chk_err_t e = {.kind = CHECK_DOUBLE_FREE, .call = (uint8_t)call, .state = CA_FREE,
                   .addr = p, .block = p, .offset = 0};
    if (m == chk_mark(p, CS_FREED)) { /* in the quarantine */
        e.size = w[0];
        e.alloc = (uint32_t)w[1];
        e.free = (uint32_t)(w[1] >> 32);
    } else { /* released: what word 2 kept, if it is intact */
        uint64_t v = w[2];
        if (released_word(p, (uint32_t)v & 0xfffff, (uint32_t)(v >> 20) & 0xfffff,
                          (v >> 40) & 0xfffff) == v && (v >> 40 & 0xfffff)) {
            e.alloc = (uint32_t)v & 0xfffff;
            e.free = (uint32_t)(v >> 20) & 0xfffff;
            e.size = (v >> 40) & 0xfffff;
        } else {
            e.state = CA_NONE;
        }
    }
    e.where = here(caller);
    report(&e, caller);
}

static void invalid_free(uintptr_t p, unsigned call, void *caller) {
    chk_err_t e = {.kind = CHECK_INVALID_FREE, .call = (uint8_t)call};
    e.where = here(caller); /* first: the walk learns this thread's stack */
    describe(p, &e);
    report(&e, caller);
}

/* A pointer into the pools: a checked block is 32 bytes into its pool block, whose tag in the
 * pool's side table is the profiler's record of it. */
static void free_pooled(uintptr_t hid, unsigned call, void *caller) {
    uintptr_t p = (uintptr_t)prof_reveal(hid);
    pool_t *pl = pool_of((void *)p);
    uint32_t off = (uint32_t)((p - CHK_HDR) & (POOL_SIZE - 1)) - (uint32_t)POOL_HEADER;
    if (!(off < __atomic_load_n(&pl->carve_end, __ATOMIC_RELAXED) && off % pl->bsize == 0)) {
        invalid_free(p, call, caller);
        return;
    }
    uint64_t m = __atomic_load_n(&chk_hdr(p)[3], __ATOMIC_ACQUIRE);
    if (m == chk_mark(p, CS_FREED) || m == chk_mark(p, CS_RELEASED)) {
        double_free(p, m, call, caller);
        return;
    }
    bool mark_ok = m == chk_mark(p, CS_LIVE) &&
                   __atomic_compare_exchange_n(&chk_hdr(p)[3], &m, chk_mark(p, CS_FREED), false,
                                               __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE);
    if (!mark_ok && m == chk_mark(p, CS_FREED)) { /* a free in another thread won the race */
        double_free(p, m, call, caller);
        return;
    }
    prof_taken_t t;
    known_t k = {.tracked = prof_small_take(pl, prof_reveal(hid), &t)};
    if (k.tracked) {
        k.site = ptag_site(t.tag);
        k.size = pl->bsize - ptag_slack(t.tag);
    }
    if (!mark_ok && !k.tracked) { /* a block the profiler never had, and no mark: not ours */
        invalid_free(p, call, caller);
        return;
    }
    free_live(hid, call, caller, mark_ok, &k);
}

void check_free(void *ptr, void *caller, unsigned call) {
    if (ptr == NULL)
        return;
    int saved = errno;
    uintptr_t hid = prof_hold(ptr, 1); /* across the calls: prof_hide */
    uintptr_t p = (uintptr_t)ptr;
    uint64_t m = 0;
    lent_t te;
    if (ptr_is_ours(ptr)) {
        free_pooled(hid, call, caller);
        goto out;
    }
    /* A live block is in the profiler's table (but for the few it could not take: allocated
     * in a signal handler inside the library, or before it started): then its header is ours
     * to read. */
    if (prof_large_take(prof_reveal(hid), &te)) {
        known_t k = {.tracked = true, .site = te.site, .size = te.size, .te = &te};
        p = (uintptr_t)prof_reveal(hid);
        m = __atomic_load_n(&chk_hdr(p)[3], __ATOMIC_ACQUIRE);
        uint64_t live = chk_mark(p, CS_LIVE);
        if (m == live && __atomic_compare_exchange_n(&chk_hdr(p)[3], &m, chk_mark(p, CS_FREED),
                                                     false, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
            free_live(hid, call, caller, true, &k);
        else if (m == chk_mark(p, CS_FREED)) /* a free of it in another thread won the race */
            prof_large_freed(&te);
        else
            free_live(hid, call, caller, false, &k); /* an underrun overwrote the mark */
        goto out;
    }
    p = (uintptr_t)prof_reveal(hid);
    bool readable = (p & 15) == 0 && read_word(p - 8, &m);
    uint64_t live = chk_mark(p, CS_LIVE);
    while (readable && m == live) {
        if (__atomic_compare_exchange_n(&chk_hdr(p)[3], &m, chk_mark(p, CS_FREED), false,
                                        __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) {
            alloc_early_forget(prof_reveal(hid)); /* freed before the profiler started */
            known_t k = {.tracked = false};
            free_live(hid, call, caller, true, &k);
            goto out;
        }
    }
    if (readable && (m == chk_mark(p, CS_FREED) || m == chk_mark(p, CS_RELEASED)))
        double_free(p, m, call, caller);
    else
        invalid_free(p, call, caller);
out:
    prof_release(hid, 1);
    errno = saved;
}

void *check_realloc(void *ptr, size_t n, void *caller) {
    if (ptr == NULL)
        return check_alloc(n, 0, CK_MALLOC, false, caller);
    if (n == 0) {
        check_free(ptr, caller, CC_REALLOC); /* glibc's REALLOC_ZERO_BYTES_FREES */
        return NULL;
    }
    uint64_t have;
    if (!live_size((uintptr_t)ptr, &have)) {
        check_free(ptr, caller, CC_REALLOC); /* reported there; nothing is freed */
        return NULL;
    }
    /* Always moved, as memcheck does: a pointer kept to the old block is then a use after free. */
    uintptr_t hid = prof_hold(ptr, 1);
    void *r = check_alloc(n, 0, CK_MALLOC, false, caller);
    if (r == NULL) {
        prof_release(hid, 1);
        return NULL;
    }
    memcpy(r, prof_reveal(hid), have < n ? have : n);
    uintptr_t hr = prof_hold(r, 0);
    check_free(prof_release(hid, 1), caller, CC_REALLOC);
    return prof_release(hr, 0);
}

/* ---- checks of every block: at exit and at each dump ---------------------------------------------- */
static void scan_block(uintptr_t p, uint64_t size, uint32_t site);

static void scan_live(const lent_t *le, void *arg) {
    (void)arg;
    if ((le->addr & 15) || le->addr < 4096)
        return;
    scan_block(le->addr, le->size, le->site);
}

/* A tagged (live) block of the pools. Another thread may free one meanwhile: what looks
 * damaged is read again, and reported only if the block is still the same live one. */
static void scan_pooled(uint32_t site, uintptr_t addr, uint64_t size, void *arg) {
    (void)arg;
    scan_block(addr, size, site);
}

static void scan_block(uintptr_t p, uint64_t size, uint32_t site) {
    uint64_t m = chk_hdr(p)[3];
    if (m == chk_mark(p, CS_FREED))
        return; /* being freed now: its free checks it */
    if (m != chk_mark(p, CS_LIVE)) {
        if (chk_hdr(p)[3] != m || chk_hdr(p)[0] != size || !chk_w2_ok(p, chk_hdr(p)[2]))
            return; /* freed and reused meanwhile, or damaged beyond the mark: its free says */
        chk_err_t e = {.kind = CHECK_UNDERRUN, .call = CC_SCAN, .state = CA_ALLOC, .len = 1,
                       .alloc = site, .addr = p - 1, .block = p, .size = size, .offset = -1};
        report(&e, NULL);
        __atomic_store_n(&chk_hdr(p)[3], chk_mark(p, CS_LIVE), __ATOMIC_RELEASE); /* once */
        return;
    }
    const unsigned char *b = (const unsigned char *)p;
    size_t n = size, guard = guard_of(p, n), j = first_not(b + n, guard, CHK_GUARD);
    if (j < guard) {
        if (chk_hdr(p)[3] != chk_mark(p, CS_LIVE) || chk_hdr(p)[0] != size)
            return; /* freed meanwhile */
        chk_err_t e = {.kind = CHECK_OVERRUN, .call = CC_SCAN, .state = CA_ALLOC,
                       .len = run_not(b, n + j, n + guard, CHK_GUARD), .alloc = site,
                       .addr = p + n + j, .block = p, .size = n, .offset = (int64_t)(n + j)};
        report(&e, NULL);
        memset((void *)(p + n), CHK_GUARD, guard); /* reported once */
    }
}

static void scan_queue(heap_t *h, void *arg) {
    (void)arg;
    struct chk_q_s *q = h->chq;
    if (q == NULL || atomic_flag_test_and_set_explicit(&q->lock, memory_order_acquire))
        return; /* busy: its next release checks */
    for (uint32_t i = q->head; i != q->tail; i++) {
        const qent_t *qe = &q->e[i % CHK_QCAP];
        const unsigned char *b = (const unsigned char *)qe->p;
        size_t n = qe->n, guard = guard_of(qe->p, n), k = first_not(b, n, CHK_DEAD);
        if (k == n) {
            k = n + first_not(b + n, guard, CHK_GUARD);
        }
        if (k < n + guard) {
            const uint64_t *w = chk_hdr(qe->p);
            chk_err_t e = {.kind = CHECK_WRITE_AFTER_FREE, .call = CC_SCAN, .state = CA_FREE,
                           .len = run_not(b, k, n + guard, k < n ? CHK_DEAD : CHK_GUARD),
                           .alloc = (uint32_t)w[1], .free = (uint32_t)(w[1] >> 32),
                           .addr = qe->p + k, .block = qe->p, .size = n, .offset = (int64_t)k};
            report(&e, NULL);
            /* reported once: poisoned again */
            memset((void *)qe->p, CHK_DEAD, n);
            memset((void *)(qe->p + n), CHK_GUARD, guard);
        }
    }
    atomic_flag_clear_explicit(&q->lock, memory_order_release);
}

bool check_in_report(void) {
    return tls_in_report != 0;
}

void check_scan(void) {
    if (!opt.check || tls_in_report)
        return;
    prof_ltab_foreach(scan_live, NULL);
    prof_pool_blocks_foreach(scan_pooled, NULL);
    heap_foreach_unlocked(scan_queue, NULL);
}

/* ---- the dump ------------------------------------------------------------------------------------ */
void check_put_totals(fmt_t *f) {
    if (!opt.check)
        return;
    uint64_t contexts, total = check_errors(&contexts);
    fmt_str(f, " check_errors=");
    fmt_u64(f, total);
    fmt_str(f, " check_contexts=");
    fmt_u64(f, contexts);
    uint64_t d = atomic_load_explicit(&err_dropped, memory_order_relaxed);
    if (d) {
        fmt_str(f, " check_dropped=");
        fmt_u64(f, d);
    }
    fmt_str(f, " check_quarantine=");
    fmt_u64(f, opt.quarantine);
}

void check_sites(void (*fn)(uint32_t site, void *arg), void *arg) {
    spin_lock(&err_lock);
    for (unsigned i = 0; i < nerrs; i++) {
        fn(errs[i].where, arg);
        fn(errs[i].alloc, arg);
        fn(errs[i].free, arg);
    }
    spin_unlock(&err_lock);
}

void check_put_errors(fmt_t *f) {
    spin_lock(&err_lock);
    unsigned n = nerrs;
    spin_unlock(&err_lock); /* contexts are only appended, and a count may be one behind */
    for (unsigned i = 0; i < n; i++) {
        const chk_err_t *e = &errs[i];
        fmt_str(f, "error kind=");
        fmt_str(f, kind_name[e->kind]);
        fmt_str(f, " call=");
        fmt_str(f, call_name[e->call]);
        fmt_str(f, " state=");
        fmt_str(f, state_name[e->state]);
        fmt_str(f, " addr=");
        fmt_hex(f, e->addr);
        if (e->state == CA_ALLOC || e->state == CA_FREE) {
            fmt_str(f, " block=");
            fmt_hex(f, e->block);
            fmt_str(f, " size=");
            fmt_u64(f, e->size);
            fmt_str(f, " offset=");
            if (e->offset < 0)
                fmt_char(f, '-');
            fmt_u64(f, e->offset < 0 ? (uint64_t)-e->offset : (uint64_t)e->offset);
        }
        if (e->len) {
            fmt_str(f, " len=");
            fmt_u64(f, e->len);
        }
        /* a site id read back from a block's memory may be garbage: only those that exist */
        uint32_t ns = atomic_load_explicit(&prof.nsites, memory_order_acquire);
        fmt_str(f, " where=");
        fmt_u64(f, e->where < ns ? e->where : 0);
        fmt_str(f, " alloc=");
        fmt_u64(f, e->alloc < ns ? e->alloc : 0);
        fmt_str(f, " free=");
        fmt_u64(f, e->free < ns ? e->free : 0);
        fmt_str(f, " count=");
        fmt_u64(f, __atomic_load_n(&e->count, __ATOMIC_RELAXED));
        fmt_char(f, '\n');
    }
}

/* At exit, after the last dump: memcheck's summary line, when there were errors. */
void check_summary(const char *dump_path) {
    uint64_t contexts, total = check_errors(&contexts);
    if (!total || opt.check == CHECK_QUIET)
        return;
    char buf[640];
    fmt_t f;
    fmt_init(&f, buf, sizeof buf - 1, -1);
    fmt_str(&f, "tally: ERROR SUMMARY: ");
    fmt_u64_grouped(&f, total);
    fmt_str(&f, total == 1 ? " error from " : " errors from ");
    fmt_u64_grouped(&f, contexts);
    fmt_str(&f, contexts == 1 ? " context" : " contexts");
    if (dump_path && *dump_path) {
        fmt_str(&f, "; stacks: tally errors ");
        fmt_str(&f, dump_path);
    }
    fmt_char(&f, '\n');
    os_write_all(check_fd(), f.buf, f.len);
}

void check_fork_child_heap(heap_t *h) {
    if (h->chq)
        atomic_flag_clear(&h->chq->lock);
}

void check_fork_child(void) {
    atomic_flag_clear(&err_lock);
    tls_in_report = 0;
}
