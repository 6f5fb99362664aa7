/* alloc.c: the exported malloc API. Small requests (0..512 bytes, alignment <= 16) are popped
 * from the calling thread's pools; everything else goes to glibc's allocator. free routes by
 * address: inside our reserved range is ours, anything else is glibc's. Exports malloc, free,
 * calloc, realloc, reallocarray, memalign, aligned_alloc, posix_memalign, valloc, pvalloc,
 * malloc_usable_size, cfree, free_sized, free_aligned_sized, __libc_free, __libc_realloc. */
#include "internal.h"

#include "prof.h"

#include <dlfcn.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define CALLER() __builtin_return_address(0)

static _Atomic uint64_t large_unowned; /* system-malloc requests from threads without a heap */

uint64_t alloc_large_unowned(void) {
    return atomic_load_explicit(&large_unowned, memory_order_relaxed);
}

/* ---- blocks from before the profiler started ------------------------------------------------
 * glibc blocks allocated before our constructor started the profiler (by the constructors of the
 * libraries initialized before ours) are noted here, so that `all` mode can adopt them
 * (prof_start: a leak check must follow the pointers they hold). Freed ones are forgotten. */
#define EARLY_MAX 256
static struct {
    void *p;
    size_t n;
} early[EARLY_MAX];
static unsigned early_used;
static bool early_closed;
static _Atomic unsigned early_live; /* early_used, for free's test without the lock */
static atomic_flag early_lock = ATOMIC_FLAG_INIT;

static noinline void early_note(void *p, size_t n) {
    spin_lock(&early_lock);
    if (!early_closed && early_used < EARLY_MAX) {
        early[early_used].p = p;
        early[early_used].n = n;
        atomic_store_explicit(&early_live, ++early_used, memory_order_relaxed);
    }
    spin_unlock(&early_lock);
}

static noinline void early_forget(void *p) {
    spin_lock(&early_lock);
    for (unsigned i = 0; i < early_used; i++)
        if (early[i].p == p) {
            early[i] = early[--early_used];
            break;
        }
    atomic_store_explicit(&early_live, early_used, memory_order_relaxed);
    spin_unlock(&early_lock);
}

void alloc_early_forget(void *p) {
    if (unlikely(atomic_load_explicit(&early_live, memory_order_relaxed) != 0))
        early_forget(p);
}

void alloc_early_take(void (*fn)(void *p, size_t n, void *arg), void *arg) {
    spin_lock(&early_lock);
    early_closed = true;
    for (unsigned i = 0; i < early_used; i++)
        fn(early[i].p, early[i].n, arg);
    early_used = 0;
    atomic_store_explicit(&early_live, 0, memory_order_relaxed);
    spin_unlock(&early_lock);
}

/* ---- sampled blocks in sample mode -------------------------------------------------------
 * In sample mode the profiler's table of large blocks holds the blocks it sampled and nothing
 * else. Each is glibc's block q with a header before the pointer p the program gets: p[-2] is q,
 * p[-1] a mark (mark_of(p), top bit set). Before the pointer of any other glibc block lies
 * glibc's chunk size, which never has the top bit set: free, realloc and malloc_usable_size know
 * a sampled block by that one word, read where glibc's free reads it, and ask the table only
 * about a marked block, as jemalloc and tcmalloc know theirs from their own metadata. (all mode
 * tracks every block, and asks the table at every free.) */
static inline uintptr_t mark_of(const void *p) {
    return (((uintptr_t)p * 0x9E3779B97F4A7C15ULL) ^ g.free_key) | ((uintptr_t)1 << 63);
}

/* p: a pointer that is not ours, handed to free, realloc or malloc_usable_size. Whether it is
 * a marked block. p[-1] is read only where it is mapped: glibc keeps a header there, and any
 * block that does not start a page has the word before it in its own page. Another allocator's
 * block may start a page with nothing mapped before it (jemalloc's do), so under another
 * allocator no marked block starts a page (marked_alloc), and a block that does is not looked
 * at. There the word before a block is another block's data: taking it for a mark needs it to
 * equal a 63-bit value keyed by a secret of this process. */
static inline bool is_marked(const void *p) {
    return prof.mode == PROFILE_SAMPLE && (raw_is_glibc || ((uintptr_t)p & 4095) != 0) &&
           ((const uintptr_t *)p)[-1] == mark_of(p);
}

/* Whether a sampled block aligned to align can be marked: not page-aligned ones under another
 * allocator than glibc (never sampled there). */
static inline bool can_mark(size_t align) {
    return raw_is_glibc || align < 4096;
}

/* Whether the profiler's table may hold the block at a pointer not ours, marked or not: every
 * block in all mode while it holds any, the marked ones in sample mode. */
static inline bool large_tracked(bool marked) {
    return prof.mode == PROFILE_SAMPLE
               ? marked
               : atomic_load_explicit(&prof.ltab_live, memory_order_relaxed) != 0;
}

static inline void *marked_base(const void *p) {
    return (void *)((const uintptr_t *)p)[-2];
}

/* A marked block of n bytes aligned to align (a power of two, 16 or more; 16 when zero), zeroed
 * if zero; NULL (errno ENOMEM) when the allocator behind the pools has no memory. */
static void *marked_alloc(size_t n, size_t align, bool zero) {
    size_t extra = raw_is_glibc ? align : 2 * align; /* room to step off a page's start */
    if (n > SIZE_MAX - extra) {
        errno = ENOMEM;
        return NULL;
    }
    /* zeroed by calloc: a big calloc stays untouched pages until the program writes them */
    char *q = zero               ? raw_calloc(1, n + extra)
              : align <= ALIGNMENT ? raw_malloc(n + extra)
                                   : raw_memalign(align, n + extra);
    if (q == NULL)
        return NULL;
    uintptr_t *p = (uintptr_t *)(q + align);
    if (!raw_is_glibc && ((uintptr_t)p & 4095) == 0)
        p = (uintptr_t *)((char *)p + align); /* see is_marked */
    p[-2] = (uintptr_t)q;
    p[-1] = mark_of(p);
    return p;
}

/* glibc's free of a block that is not ours, marked or not (the mark is wiped first). */
static void large_release(void *p, bool marked) {
    if (marked) {
        void *q = marked_base(p);
        ((uintptr_t *)p)[-1] = 0;
        p = q;
    }
    raw_free(p);
}

size_t large_usable_size(void *p) {
    if (unlikely(opt.check)) /* the library's own question, about a block it knows is one */
        return check_block_size(p);
    if (is_marked(p)) {
        char *q = marked_base(p);
        return raw_usable_size_of(q) - (size_t)((char *)p - q);
    }
    return raw_usable_size_of(p);
}

/* TALLY_CHECK, for an allocation: the options are read in the first call of all, which may be
 * this one (a slow path: the fast paths never ask) */
static inline bool check_wanted(void) {
    return opt.check || (tally_init_global() && opt.check);
}

/* ---- system malloc ------------------------------------------------------------------------
 * Every block glibc gives us passes here: counted, and offered to the profiler by the same byte
 * counter as pool blocks. A thread's first request may be a large one: it gets its heap here,
 * so that `all` mode sees it. In sample mode the counter is asked before glibc (large_sampled),
 * so that a sampled block can be made marked. */
static inline heap_t *large_heap(void) {
    heap_t *h = tls_heap;
    if (h->kind == HEAP_EMPTY)
        h = heap_thread_init();
    return h != NULL && h->kind == HEAP_REAL ? h : NULL;
}

static inline void large_count(heap_t *h, size_t n) {
    uint64_t c = h->stats.nlarge + 1;
    __asm__("" : "+r"(c)); /* two scalar adds: GCC's SSE2 pair of them went through the stack */
    h->stats.nlarge = c;
    h->stats.nlarge_bytes += n;
}

noinline void *large_done(void *p, size_t n, void *caller) {
    if (p == NULL)
        return NULL;
    heap_t *h = large_heap();
    if (h == NULL) {
        atomic_fetch_add_explicit(&large_unowned, 1, memory_order_relaxed);
        return p;
    }
    if (unlikely(!prof.started) && opt.profile == PROFILE_ALL && !early_closed)
        early_note(p, n);
    large_count(h, n);
    /* sample mode tracks marked blocks only: its counter was asked before (large_sampled) */
    if (prof.mode != PROFILE_SAMPLE && (h->sample_left -= (int64_t)n) <= 0)
        return prof_alloc(h, p, n, caller);
    return p;
}

/* Sample mode: whether the counter runs out on a large request of n bytes; then the block is
 * made marked and recorded (large_sampled_done). Sets *hp to the heap (NULL: none). A counter
 * that runs out when the profiler cannot take the block (not started, or busy in this thread)
 * stays run out, for the next request. */
static inline bool large_sampled(heap_t **hp, size_t n, size_t align) {
    heap_t *h = *hp = large_heap();
    return h != NULL && prof.mode == PROFILE_SAMPLE && can_mark(align) &&
           (h->sample_left -= (int64_t)n) <= 0 && prof_promotes(h);
}

static noinline void *large_sampled_done(heap_t *h, void *p, size_t n, void *caller) {
    if (p == NULL)
        return NULL;
    large_count(h, n);
    return prof_alloc(h, p, n, caller);
}

/* The counter ran out on a large request in sample mode (the thread has its heap). */
static noinline void *large_sample_hit(heap_t *h, size_t n, void *caller) {
    if (prof_promotes(h))
        return large_sampled_done(h, marked_alloc(n, ALIGNMENT, false), n, caller);
    large_count(h, n);
    return raw_malloc(n);
}

/* A thread without its heap yet (or after it), or a mode that tracks every block. */
static noinline void *large_malloc_other(size_t n, void *caller, unsigned kind) {
    if (unlikely(check_wanted()))
        return check_alloc(n, 0, kind, false, caller);
    heap_t *h;
    if (unlikely(large_sampled(&h, n, ALIGNMENT)))
        return large_sampled_done(h, marked_alloc(n, ALIGNMENT, false), n, caller);
    return large_done(raw_malloc(n), n, caller);
}

static noinline void *large_malloc(size_t n, void *caller, unsigned kind) {
    heap_t *h = tls_heap;
    /* sample mode, or profiling off: a thread with its heap asks the counter (sample mode),
     * counts the request as sent, and ends in the allocator behind, by a jump: nothing here
     * keeps a register across a call (the rarer cases are functions of their own) */
    if (likely(h->kind == HEAP_REAL) &&
        (prof.mode == PROFILE_SAMPLE || opt.profile == PROFILE_OFF)) {
        if (prof.mode == PROFILE_SAMPLE && unlikely((h->sample_left -= (int64_t)n) <= 0))
            return large_sample_hit(h, n, caller);
        large_count(h, n);
        return raw_malloc(n);
    }
    return large_malloc_other(n, caller, kind);
}

/* ---- small requests ------------------------------------------------------------------------
 * The fast path: class by shift, pop the thread's bin of that class. No lock, no atomic, no
 * "initialised?" test (a thread without a heap has the static empty heap, whose bins have no
 * slots), and no write outside the bin's own cache line. */
static noinline cold void *small_slow(size_t n, void *caller, unsigned kind);
/* not cold: in all mode every small request takes it */
static noinline void *small_sampled(heap_t *h, size_t n, void *caller, unsigned kind);

static inline __attribute__((always_inline)) void *small_alloc(size_t n, void *caller,
                                                               unsigned kind) {
    unsigned c = size_class(n);
    heap_t *h = tls_heap;
    bin_t *bn = &h->bin[c];
    void **t = bn->top;
    if (unlikely(t == bn->low))
        return small_slow(n, caller, kind);
    /* The profiler's whole cost here: one counter and one compare. */
    if (unlikely((h->sample_left -= (int64_t)n) <= 0))
        return small_sampled(h, n, caller, kind);
    bn->top = --t;
    bn->nmalloc++;
    bn->nreq += n;
    void *b = *t;
    ((uintptr_t *)b)[1] = 0; /* no longer free (see free_inline) */
    return b;
}

/* The bin of class c is empty: a block from the heap's pools, or NULL. */
static noinline void *small_refill(heap_t *h, unsigned c) {
    if (h->in_slow)
        return NULL;
    heap_lock_slow(h);
    void *b = heap_refill(h, c);
    heap_unlock_slow(h);
    return b;
}

/* A pool block of class c for a request of n bytes, without looking at the profiler's counter;
 * NULL if none can be had. */
static inline __attribute__((always_inline)) void *small_pop(heap_t *h, unsigned c, size_t n) {
    bin_t *bn = &h->bin[c];
    void *b;
    if (likely(bn->top != bn->low))
        b = *--bn->top;
    else if ((b = small_refill(h, c)) == NULL)
        return NULL;
    bn->nmalloc++;
    bn->nreq += n;
    ((uintptr_t *)b)[1] = 0;
    return b;
}

/* TALLY_CHECK (check.c): a pool block of class c for a checked request of n bytes. */
void *alloc_check_pool_block(size_t n, unsigned c) {
    heap_t *h = tls_heap;
    if (h->kind == HEAP_EMPTY)
        h = heap_thread_init();
    if (h == NULL || h->kind != HEAP_REAL)
        return NULL;
    return small_pop(h, c, n);
}

/* A sampled small request in sample mode: served by glibc and tracked in the profiler's large
 * table (prof.h: pools then never need a side table, so free stays as fast as with profiling
 * off). NULL if glibc has no memory. */
static void *promoted_malloc(heap_t *h, size_t n, void *caller) {
    void *p = marked_alloc(n ? n : 1, ALIGNMENT, false);
    if (p == NULL)
        return NULL;
    large_count(h, n);
    return prof_alloc_promoted(h, p, n, caller);
}

/* The class a request of n bytes takes. Under the leak check, a request that fills its class
 * exactly takes the next one up (512 bytes go to glibc): pool blocks are adjacent, and a pointer
 * one past the end of a block, such as a std::vector's end of storage, would otherwise be the
 * start of the next block and keep it "reachable" (memcheck's redzones keep them apart). */
static inline size_t leak_fit(size_t n) {
    return n + (opt.leaks != LEAKS_OFF && n % ALIGNMENT == 0 && n != 0);
}

/* The counter ran out on a small request: promoted in sample mode, a pool block tagged by the
 * profiler in all mode. */
static noinline void *small_sampled(heap_t *h, size_t n, void *caller, unsigned kind) {
    /* TALLY_CHECK: every request comes here or to small_slow (all mode's counter is 0) */
    if (unlikely(opt.check))
        return check_alloc(n, 0, kind, false, caller);
    if (prof_promotes(h)) {
        void *p = promoted_malloc(h, n, caller);
        if (p)
            return p;
    }
    size_t fit = leak_fit(n);
    if (unlikely(fit > SMALL_MAX))
        return large_malloc(n, caller, CK_MALLOC);
    void *b = small_pop(h, size_class(fit), n);
    if (!b)
        return large_malloc(n, caller, CK_MALLOC);
    return prof_alloc(h, b, n, caller);
}

static noinline cold void *small_slow(size_t n, void *caller, unsigned kind) {
    /* TALLY_CHECK: the bins stay empty, so every small request comes here */
    if (unlikely(check_wanted()))
        return check_alloc(n, 0, kind, false, caller);
    heap_t *h = tls_heap;
    if (h->kind != HEAP_REAL) {
        /* First allocation of this thread, or one after its key destructor ran (glibc keeps
         * going after it): the dead thread's small requests go to glibc, which is correct
         * because free routes by address. */
        if (h->kind == HEAP_DEAD || (h = heap_thread_init()) == NULL)
            return large_malloc(n, caller, kind);
    }
    if (h->in_slow)
        return large_malloc(n, caller, kind); /* a signal handler interrupted our slow path */
    if ((h->sample_left -= (int64_t)n) <= 0)
        return small_sampled(h, n, caller, kind);
    void *b = small_pop(h, size_class(n), n); /* the bin is empty: a refill */
    if (unlikely(b == NULL))
        return large_malloc(n, caller, kind); /* address range exhausted or commit refused */
    return b;
}

/* kind: what the call is to TALLY_CHECK (malloc, new, new[]); a constant that only the slow
 * paths' calls take */
static inline __attribute__((always_inline)) void *do_malloc(size_t n, void *caller,
                                                             unsigned kind) {
    if (likely(n - 1 < SMALL_MAX)) /* 1..512; n == 0 wraps and takes the other branch */
        return small_alloc(n, caller, kind);
    if (n == 0)
        return small_alloc(0, caller, kind); /* a unique 16-byte block, as glibc gives */
    return large_malloc(n, caller, kind);
}

TALLY_EXPORT void *malloc(size_t n) {
    return do_malloc(n, CALLER(), CK_MALLOC);
}

/* ---- free ----------------------------------------------------------------------------------
 * Push on the thread's bin of the block's class, whoever owns the pool (jemalloc's tcache does
 * the same): the block goes back to its pool, or to its owner's remote list, only when the bin
 * overflows, in a batch. The pool header's first line is read (for the class), never written.
 *
 * Never less safe than glibc. Its free aborts on a double free of a block in its thread cache
 * (a key in the block) and on a pointer that is no chunk; silently taking either would hand the
 * same block out twice and corrupt the program far from the bug. So free checks, with no lock
 * and no table:
 *   - that the pointer is the start of a block handed out so far: its offset in the pool is a
 *     multiple of the block size, below the carve mark (one multiply by the pool's div_magic);
 *     inside our reserved range but beyond the arenas made so far is never handed out either;
 *   - that word 1 of the block is not the key free writes there (malloc clears it, as glibc's
 *     tcache does): a block freed twice has it. Then the block is looked for where free blocks
 *     are (heap_block_is_free), so that a program that stored that random value itself is
 *     never stopped.
 * Either error is one line on stderr, naming the call, and abort(), as glibc does. */
/* TALLY_CHECK's name of a freeing call */
static unsigned check_call(const char *fn) {
    return strcmp(fn, "operator delete") == 0     ? CC_DELETE
           : strcmp(fn, "operator delete[]") == 0 ? CC_DELETE_ARRAY
           : strcmp(fn, "realloc") == 0           ? CC_REALLOC
                                                  : CC_FREE;
}

void alloc_say_caller(fmt_t *f, uintptr_t ip) {
    Dl_info info;
    if (dladdr((void *)ip, &info) && info.dli_fname) {
        const char *base = info.dli_fname;
        for (const char *c = base; *c; c++)
            if (*c == '/' && c[1])
                base = c + 1;
        if (info.dli_sname) {
            fmt_str(f, info.dli_sname);
            fmt_char(f, '+');
            fmt_hex(f, ip - (uintptr_t)info.dli_saddr);
            fmt_str(f, " in ");
        }
        fmt_str(f, base);
        fmt_char(f, '+');
        fmt_hex(f, ip - (uintptr_t)info.dli_fbase);
    } else {
        fmt_hex(f, ip);
    }
}

static noinline cold void heap_error(const char *fn, const char *what, const void *ptr,
                                     size_t size, void *caller) {
    char buf[1024];
    fmt_t f;
    fmt_init(&f, buf, sizeof buf - 1, -1);
    fmt_str(&f, "tally: ");
    fmt_str(&f, fn);
    fmt_str(&f, "(): ");
    fmt_str(&f, what);
    fmt_str(&f, ": ");
    fmt_hex(&f, (uintptr_t)ptr);
    if (size) {
        fmt_str(&f, " (a ");
        fmt_u64(&f, size);
        fmt_str(&f, "-byte block)");
    }
    fmt_str(&f, ", called from ");
    alloc_say_caller(&f, (uintptr_t)caller);
    /* The callers beyond, when the profiler's walker can take them (it reads only this
     * thread's stack and the programs' unwind tables). */
    heap_t *h = tls_heap;
    const uintptr_t *fr;
    const stack_sums_t *sums;
    int n = prof.started && h->kind == HEAP_REAL
                ? unwind_stack(h, 8, prof.self_lo, prof.self_hi, &fr, &sums, NULL, NULL)
                : -1;
    for (int i = 1; i < n && f.len + 100 < f.cap; i++) {
        fmt_str(&f, " <- ");
        alloc_say_caller(&f, fr[i]);
    }
    fmt_char(&f, '\n');
    os_write_all(message_fd(), f.buf, f.len);
    abort();
}

/* The start of a block of p handed out so far? Its offset past the header (wrapping below it)
 * is under the carve mark and a multiple of the block size (pool_t.div_magic: one multiply). */
static inline __attribute__((always_inline)) bool block_start_ok(const pool_t *p, const void *ptr) {
    uint32_t off = (uint32_t)((uintptr_t)ptr & (POOL_SIZE - 1)) - (uint32_t)POOL_HEADER;
    uint32_t m = p->div_magic;
    return off < __atomic_load_n(&p->carve_end, __ATOMIC_RELAXED) && off * m < m;
}

/* The rare case, on its own: an invalid pointer or a double free ends the program; a block
 * whose word 1 merely holds the key (the program put it there) goes on. fn: the call. */
static noinline cold void check_suspect(pool_t *p, void *ptr, void *caller, const char *fn) {
    if (!block_start_ok(p, ptr)) {
        /* a pool that malloc_trim gave back reads as never used, but was used */
        if (p->state == POOL_FRESH && (uintptr_t)p < __atomic_load_n(&g.next_pool, __ATOMIC_RELAXED))
            heap_error(fn, "double free or invalid pointer (its pool has no block in use: "
                           "malloc_trim gave its memory back)", ptr, 0, caller);
        heap_error(fn, "invalid pointer (not a block this allocator handed out)", ptr, 0, caller);
    }
    if (heap_block_is_free(p, ptr))
        heap_error(fn, "double free detected (the block is free already)", ptr, p->bsize, caller);
}

static inline __attribute__((always_inline)) bool is_suspect(const pool_t *p, const void *ptr,
                                                             uintptr_t key) {
    return !block_start_ok(p, ptr) || ((const uintptr_t *)ptr)[1] == key;
}

static inline __attribute__((always_inline)) void bin_push(pool_t *p, unsigned c, void *ptr);

/* The rare branches of free are tail calls that finish the free themselves, so that the fast
 * path holds nothing across a call and saves no register. */
static noinline void free_full_bin(heap_t *h, pool_t *p, void *ptr) {
    int saved = errno;
    heap_free_slow(h, p, ptr);
    errno = saved;
}

static noinline void free_profiled(pool_t *p, void *ptr) {
    uintptr_t hidden = prof_hold(ptr, 1); /* across the call: prof_hide */
    prof_free_small(p, ptr); /* the pool holds a tracked block: is it this one? */
    bin_push(p, p->szidx, prof_release(hidden, 1));
}

/* A tracked block (the profiler's table has it), or one noted before the profiler started. */
static noinline void free_large_noted(void *ptr, bool marked, bool tracked) {
    if (tracked) {
        uintptr_t hidden = prof_hold(ptr, 1); /* across the call: prof_hide */
        prof_free_large(ptr);
        ptr = prof_release(hidden, 1);
    } else {
        early_forget(ptr);
    }
    large_release(ptr, marked); /* glibc's block, or one from before us: glibc checks it */
}

/* fn: the call, as an error names it (free, operator delete, operator delete[]) */
static noinline void free_large(void *ptr, void *caller, const char *fn) {
    if (unlikely(opt.check))
        return check_free(ptr, caller, check_call(fn));
    if (unlikely(ptr_in_reserve(ptr)))
        heap_error(fn, "invalid pointer (never handed out: beyond the arenas made so far)", ptr,
                   0, caller);
    bool marked = is_marked(ptr), tracked = large_tracked(marked);
    if (unlikely(tracked) ||
        unlikely(atomic_load_explicit(&early_live, memory_order_relaxed) != 0))
        return free_large_noted(ptr, marked, tracked);
    raw_free(ptr); /* the allocator's free, as a jump */
}

static inline __attribute__((always_inline)) void bin_push(pool_t *p, unsigned c, void *ptr) {
    heap_t *h = tls_heap;
    /* c < NCLASSES always: pool_init writes nothing else, fresh arena memory is 0. */
    bin_t *bn = &h->bin[c];
    void **t = bn->top;
    if (unlikely(t == bn->high))
        return free_full_bin(h, p, ptr);
    *t = ptr;
    bn->top = t + 1;
}

/* ptr (of class c) passed the checks: the key goes in, then the block goes to a bin. */
static inline __attribute__((always_inline)) void free_pool(pool_t *p, unsigned c, uintptr_t key,
                                                            void *ptr) {
    /* the header's field first: to the compiler, the store below could change it */
    struct ptag_s *tab = atomic_load_explicit(&p->prof, memory_order_relaxed);
    ((uintptr_t *)ptr)[1] = key;
    if (unlikely(tab != NULL))
        return free_profiled(p, ptr);
    return bin_push(p, c, ptr);
}

/* TALLY_CHECK: a checked pool block back to its pool, its checks done (check.c) */
void alloc_check_pool_release(void *b) {
    pool_t *p = pool_of(b);
    free_pool(p, p->szidx, g.free_key, b);
}

static noinline cold void free_suspect(pool_t *p, void *ptr, void *caller, const char *fn) {
    if (unlikely(opt.check)) /* a checked block is 32 bytes into its pool block: never a start */
        return check_free(ptr, caller, check_call(fn));
    check_suspect(p, ptr, caller, fn);
    free_pool(p, p->szidx, g.free_key, ptr);
}

static inline __attribute__((always_inline)) void free_as(void *ptr, void *caller,
                                                          const char *fn) {
    if (likely(ptr_is_ours(ptr))) {
        pool_t *p = pool_of(ptr);
        unsigned c = p->szidx;
        uintptr_t key = g.free_key;
        if (unlikely(is_suspect(p, ptr, key)))
            return free_suspect(p, ptr, caller, fn);
        return free_pool(p, c, key, ptr);
    }
    if (ptr)
        return free_large(ptr, caller, fn);
}

static inline __attribute__((always_inline)) void free_inline(void *ptr, void *caller) {
    free_as(ptr, caller, "free");
}

TALLY_EXPORT void free(void *ptr) {
    free_inline(ptr, CALLER());
}

TALLY_EXPORT void cfree(void *ptr) {
    free_inline(ptr, CALLER());
}

TALLY_EXPORT void free_sized(void *ptr, size_t size) {
    (void)size;
    free_inline(ptr, CALLER());
}

TALLY_EXPORT void free_aligned_sized(void *ptr, size_t alignment, size_t size) {
    (void)alignment;
    (void)size;
    free_inline(ptr, CALLER());
}

/* ---- the rest of the API -------------------------------------------------------------------- */
TALLY_EXPORT void *calloc(size_t n, size_t size) {
    size_t total;
    if (unlikely(__builtin_mul_overflow(n, size, &total))) {
        errno = ENOMEM;
        return NULL;
    }
    if (total <= SMALL_MAX) {
        /* Reused blocks hold old data, so always clear; at most 512 bytes. */
        void *p = small_alloc(total, CALLER(), CK_MALLOC);
        if (p)
            memset(p, 0, total);
        return p;
    }
    if (unlikely(check_wanted()))
        return check_alloc(total, 0, CK_MALLOC, true, CALLER());
    heap_t *h;
    if (unlikely(large_sampled(&h, total, ALIGNMENT)))
        return large_sampled_done(h, marked_alloc(total, ALIGNMENT, true), total, CALLER());
    return large_done(raw_calloc(n, size), total, CALLER());
}

/* realloc of a glibc block: its record (if tracked) is taken out before glibc can free the
 * address and another thread reuse it, and put back if glibc fails. */
static noinline void *realloc_large(void *ptr, size_t n, void *caller) {
    bool marked = is_marked(ptr), tracked = large_tracked(marked);
    lent_t old;
    uintptr_t hidden = prof_hold(ptr, 1); /* across the calls: prof_hide */
    if (tracked)
        tracked = prof_large_take(ptr, &old);
    else if (unlikely(atomic_load_explicit(&early_live, memory_order_relaxed) != 0))
        early_forget(ptr); /* the new block is noted again if the profiler has not started */
    heap_t *h;
    void *r;
    bool sampled = large_sampled(&h, n, ALIGNMENT);
    if (marked && sampled) {
        /* A sampled block stays one: the allocator's realloc moves it with its header, as it
         * would move the block (glibc remaps a mapped chunk instead of copying it), and the
         * mark is made for the new address. */
        char *q = marked_base(prof_reveal(hidden));
        size_t off = (size_t)((char *)prof_reveal(hidden) - q);
        char *q2 = n <= SIZE_MAX - off ? raw_realloc(q, n + off) : NULL;
        prof_release(hidden, 1);
        if (q2 == NULL) {
            if (tracked)
                prof_large_put_back(&old);
            errno = ENOMEM;
            return NULL;
        }
        uintptr_t *p2 = (uintptr_t *)(q2 + off);
        if (tracked)
            prof_large_freed(&old);
        if (!raw_is_glibc && ((uintptr_t)p2 & 4095) == 0) {
            /* a mark may not start a page there (see is_marked): the data moves to the start
             * of the block, which stays unmarked; the counter stays run out for the next one */
            memmove(q2, p2, n);
            return large_done(q2, n, caller);
        }
        p2[-2] = (uintptr_t)q2;
        p2[-1] = mark_of(p2);
        return large_sampled_done(h, p2, n, caller);
    }
    if (unlikely(sampled || marked)) {
        /* into a new block, marked if sampled; a marked block's header is not glibc's to move */
        size_t have = large_usable_size(prof_reveal(hidden));
        r = sampled ? marked_alloc(n, ALIGNMENT, false) : raw_malloc(n);
        if (r != NULL) {
            memcpy(r, prof_reveal(hidden), n < have ? n : have);
            large_release(prof_release(hidden, 1), marked);
        } else {
            prof_release(hidden, 1);
        }
        if (r != NULL && tracked)
            prof_large_freed(&old);
        else if (r == NULL && tracked)
            prof_large_put_back(&old);
        if (r == NULL)
            return NULL;
        return sampled ? large_sampled_done(h, r, n, caller) : large_done(r, n, caller);
    }
    r = raw_realloc(prof_release(hidden, 1), n);
    if (r == NULL) {
        if (tracked)
            prof_large_put_back(&old);
        return NULL;
    }
    if (tracked)
        prof_large_freed(&old);
    return large_done(r, n, caller);
}

TALLY_EXPORT void *realloc(void *ptr, size_t n) {
    void *caller = CALLER();
    if (ptr == NULL)
        return do_malloc(n, caller, CK_MALLOC);
    if (unlikely(opt.check))
        return check_realloc(ptr, n, caller);
    if (n == 0) {
        free_inline(ptr, caller); /* glibc's REALLOC_ZERO_BYTES_FREES */
        return NULL;
    }
    if (!ptr_is_ours(ptr)) {
        if (unlikely(ptr_in_reserve(ptr)))
            heap_error("realloc",
                       "invalid pointer (never handed out: beyond the arenas made so far)", ptr,
                       0, caller);
        /* Never move a glibc block into the pools: we could not know how much of it is valid
         * (pymalloc's rule). */
        return realloc_large(ptr, n, caller);
    }
    pool_t *p = pool_of(ptr);
    if (unlikely(is_suspect(p, ptr, g.free_key)))
        check_suspect(p, ptr, caller, "realloc");
    size_t have = p->bsize, fit = leak_fit(n);
    /* Both blocks' addresses are kept hidden across calls (prof_hide); the old one stays
     * visible to a leak check in this thread's TLS until it is freed. */
    uintptr_t hold = prof_hold(ptr, 1);
    if (fit <= have) {
        /* Stay in place within the class, or when shrinking by less than a quarter. To the
         * profiler it is still a free and an allocation at this call site. */
        if ((fit - 1) >> ALIGNMENT_SHIFT == p->szidx || 4 * fit > 3 * have) {
            if (unlikely(atomic_load_explicit(&p->prof, memory_order_relaxed) != NULL))
                prof_free_small(p, ptr);
            heap_t *h = tls_heap;
            if (likely(h->kind != HEAP_REAL || (h->sample_left -= (int64_t)n) > 0))
                return prof_release(hold, 1);
            if (!prof_promotes(h))
                return prof_alloc(h, prof_release(hold, 1), n, caller); /* all mode: re-tagged */
            /* sample mode: the new allocation is sampled, so it moves to glibc (see malloc) */
            void *r = promoted_malloc(h, n, caller);
            if (r == NULL) {
                prof_release(hold, 1);
                return NULL;
            }
            memcpy(r, prof_reveal(hold), n);
            uintptr_t hnew = prof_hold(r, 0);
            free_inline(prof_release(hold, 1), caller);
            return prof_release(hnew, 0);
        }
    }
    /* Moving: to the profiler the old block is freed before the new one is allocated (so a
     * realloc of the block allocated last is a temporary allocation, as heaptrack counts it). */
    prof_taken_t old;
    bool tracked = atomic_load_explicit(&p->prof, memory_order_relaxed) != NULL &&
                   prof_small_take(p, ptr, &old);
    void *r = do_malloc(n, caller, CK_MALLOC);
    if (r == NULL) {
        if (tracked)
            prof_small_put_back(p, prof_reveal(hold), &old);
        prof_release(hold, 1);
        return NULL; /* errno is ENOMEM; the old block is untouched */
    }
    memcpy(r, prof_reveal(hold), n < have ? n : have);
    uintptr_t hnew = prof_hold(r, 0);
    free_inline(prof_release(hold, 1), caller);
    return prof_release(hnew, 0);
}

/* glibc's own entry points under their internal names: a program (or a library that bypassed
 * malloc hooks) that hands one of our blocks to them must get the same as from free and realloc,
 * not glibc's "free(): invalid pointer". glibc's own calls to them are internal and never come
 * here; the library reaches glibc's through glibc.c. */
TALLY_EXPORT void __libc_free(void *ptr) __attribute__((alias("free"), copy(free)));
TALLY_EXPORT void *__libc_realloc(void *ptr, size_t n) __attribute__((alias("realloc"), copy(realloc)));

TALLY_EXPORT void *reallocarray(void *ptr, size_t n, size_t size) {
    size_t total;
    if (__builtin_mul_overflow(n, size, &total)) {
        errno = ENOMEM;
        return NULL;
    }
    return realloc(ptr, total);
}

/* glibc 2.36 semantics: aligned_alloc is memalign (any alignment, rounded up to a power of two;
 * size need not be a multiple). Alignments up to 16 are what every pool block has already. */
static inline __attribute__((always_inline)) void *do_memalign(size_t alignment, size_t n,
                                                               void *caller, unsigned kind) {
    if (alignment <= ALIGNMENT)
        return do_malloc(n, caller, kind);
    heap_t *h;
    size_t a = ALIGNMENT; /* a power of two, as glibc rounds it */
    while (a < alignment && a <= SIZE_MAX / 4)
        a <<= 1;
    if (unlikely(check_wanted()))
        return check_alloc(n, a, kind, false, caller);
    if (unlikely(large_sampled(&h, n, a)) && a >= alignment)
        return large_sampled_done(h, marked_alloc(n, a, false), n, caller);
    return large_done(raw_memalign(alignment, n), n, caller);
}

TALLY_EXPORT void *memalign(size_t alignment, size_t n) {
    return do_memalign(alignment, n, CALLER(), CK_MALLOC);
}

TALLY_EXPORT void *aligned_alloc(size_t alignment, size_t n) {
    return do_memalign(alignment, n, CALLER(), CK_MALLOC);
}

TALLY_EXPORT int posix_memalign(void **out, size_t alignment, size_t n) {
    if (alignment % sizeof(void *) != 0 || alignment == 0 ||
        (alignment & (alignment - 1)) != 0)
        return EINVAL;
    int saved = errno; /* posix_memalign reports through its result, never errno */
    void *p = do_memalign(alignment, n, CALLER(), CK_MALLOC);
    errno = saved;
    if (p == NULL)
        return ENOMEM;
    *out = p;
    return 0;
}

TALLY_EXPORT void *valloc(size_t n) {
    heap_t *h;
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    if (unlikely(check_wanted()))
        return check_alloc(n, page, CK_MALLOC, false, CALLER());
    if (unlikely(large_sampled(&h, n, page)))
        return large_sampled_done(h, marked_alloc(n, page, false), n, CALLER());
    return large_done(raw_valloc(n), n, CALLER());
}

TALLY_EXPORT void *pvalloc(size_t n) {
    heap_t *h;
    size_t page = (size_t)sysconf(_SC_PAGESIZE), up = n ? (n + page - 1) & ~(page - 1) : page;
    if (unlikely(check_wanted()))
        return up >= n ? check_alloc(up, page, CK_MALLOC, false, CALLER()) : NULL;
    if (up >= n && unlikely(large_sampled(&h, n, page)))
        return large_sampled_done(h, marked_alloc(up, page, false), n, CALLER());
    return large_done(raw_pvalloc(n), n, CALLER());
}

TALLY_EXPORT size_t malloc_usable_size(void *ptr) {
    if (ptr == NULL)
        return 0;
    if (unlikely(opt.check))
        return check_usable_size(ptr);
    if (ptr_is_ours(ptr))
        return pool_of(ptr)->bsize;
    return large_usable_size(ptr);
}

/* ---- C++: operator new and delete --------------------------------------------------------------
 * Exported as jemalloc and tcmalloc export them: a C++ program's new and delete come here in one
 * call (libstdc++'s call malloc and free one level down), and its sized deletes too.
 *
 * The standard defines the array, nothrow and sized forms, and their aligned twins, by calls to
 * the plain forms, so that a program replacing only `operator new(size_t)` or `operator
 * delete(void*)` has every form use its own (and a nothrow form catches what the program's
 * throws). Ours go straight to malloc and free, unless an object before this library (the
 * executable, a library preloaded before it) defines a form this one is defined by: then they
 * hand the call to the next definition after ours, libstdc++'s, which makes those calls as the
 * standard says (and catches in C++, which this C code cannot). Definitions are found in the
 * loader's list, as the allocator behind the pools is (glibc.c): no dlsym, which the first
 * allocations cannot call.
 *
 * Out of memory: the program's new-handler is called and the allocation tried again for as long
 * as there is one; then the throwing forms throw std::bad_alloc through libstdc++'s own
 * std::__throw_bad_alloc (a C++ program has libstdc++ loaded), and the nothrow forms return NULL.
 * A new-handler that throws from inside a nothrow form is not caught here: it reaches the
 * caller. */
enum { CXX_NW, CXX_NA, CXX_DL, CXX_DA, CXX_NW_AL, CXX_NA_AL, CXX_DL_AL, CXX_DA_AL, CXX_BASES };
static const char *const cxx_base_names[CXX_BASES] = {
    "_Znwm", "_Znam", "_ZdlPv", "_ZdaPv", "_ZnwmSt11align_val_t", "_ZnamSt11align_val_t",
    "_ZdlPvSt11align_val_t", "_ZdaPvSt11align_val_t",
};
/* the forms defined by calls to others: their names, and the bases they are defined by */
enum {
    CXD_NA, CXD_NW_NT, CXD_NA_NT, CXD_NA_AL, CXD_NW_AL_NT, CXD_NA_AL_NT,
    CXD_DA, CXD_DL_SZ, CXD_DA_SZ, CXD_DL_NT, CXD_DA_NT,
    CXD_DA_AL, CXD_DL_SZ_AL, CXD_DA_SZ_AL, CXD_DL_AL_NT, CXD_DA_AL_NT, CXD_N
};
static const struct {
    const char *name;
    uint8_t base, base2;
} cxx_derived[CXD_N] = {
    [CXD_NA] = {"_Znam", CXX_NW, CXX_NW},
    [CXD_NW_NT] = {"_ZnwmRKSt9nothrow_t", CXX_NW, CXX_NW},
    [CXD_NA_NT] = {"_ZnamRKSt9nothrow_t", CXX_NA, CXX_NW},
    [CXD_NA_AL] = {"_ZnamSt11align_val_t", CXX_NW_AL, CXX_NW_AL},
    [CXD_NW_AL_NT] = {"_ZnwmSt11align_val_tRKSt9nothrow_t", CXX_NW_AL, CXX_NW_AL},
    [CXD_NA_AL_NT] = {"_ZnamSt11align_val_tRKSt9nothrow_t", CXX_NA_AL, CXX_NW_AL},
    [CXD_DA] = {"_ZdaPv", CXX_DL, CXX_DL},
    [CXD_DL_SZ] = {"_ZdlPvm", CXX_DL, CXX_DL},
    [CXD_DA_SZ] = {"_ZdaPvm", CXX_DA, CXX_DL},
    [CXD_DL_NT] = {"_ZdlPvRKSt9nothrow_t", CXX_DL, CXX_DL},
    [CXD_DA_NT] = {"_ZdaPvRKSt9nothrow_t", CXX_DA, CXX_DL},
    [CXD_DA_AL] = {"_ZdaPvSt11align_val_t", CXX_DL_AL, CXX_DL_AL},
    [CXD_DL_SZ_AL] = {"_ZdlPvmSt11align_val_t", CXX_DL_AL, CXX_DL_AL},
    [CXD_DA_SZ_AL] = {"_ZdaPvmSt11align_val_t", CXX_DA_AL, CXX_DL_AL},
    [CXD_DL_AL_NT] = {"_ZdlPvSt11align_val_tRKSt9nothrow_t", CXX_DL_AL, CXX_DL_AL},
    [CXD_DA_AL_NT] = {"_ZdaPvSt11align_val_tRKSt9nothrow_t", CXX_DA_AL, CXX_DL_AL},
};
static uintptr_t cxx_defer_to[CXD_N]; /* the definition a form hands its calls to; 0: none */
static _Atomic bool cxx_resolved;

static noinline cold void cxx_resolve(void) {
    uintptr_t own[CXX_BASES] = {0};
    elf_before_us(cxx_base_names, CXX_BASES, own);
    for (unsigned i = 0; i < CXD_N; i++) {
        unsigned a = cxx_derived[i].base, b = cxx_derived[i].base2;
        if (own[a] || own[b]) {
            uintptr_t next = elf_after_us(cxx_derived[i].name);
            /* no libstdc++ after us (never seen: the program's definitions came from C++):
             * the program's own base, called directly */
            cxx_defer_to[i] = next ? next : own[a] ? own[a] : own[b];
        }
    }
    atomic_store_explicit(&cxx_resolved, true, memory_order_release);
}

/* The definition form i hands its calls to, or 0 to serve them itself. */
static inline uintptr_t cxx_defer(unsigned i) {
    if (unlikely(!atomic_load_explicit(&cxx_resolved, memory_order_acquire)))
        cxx_resolve();
    return cxx_defer_to[i];
}

typedef void (*cxx_handler_t)(void);

static noinline cold void *cxx_new_failed(size_t n, size_t align, bool nothrow, void *caller,
                                          unsigned kind) {
    for (;;) {
        cxx_handler_t (*get)(void) =
            (cxx_handler_t(*)(void))elf_global_lookup("_ZSt15get_new_handlerv");
        cxx_handler_t handler = get ? get() : NULL;
        if (handler == NULL) {
            if (nothrow)
                return NULL;
            void (*throw_bad_alloc)(void) =
                (void (*)(void))elf_global_lookup("_ZSt17__throw_bad_allocv");
            if (throw_bad_alloc)
                throw_bad_alloc(); /* does not return */
            tally_message("operator new: out of memory, and no libstdc++ to throw std::bad_alloc",
                          "", "");
            abort();
        }
        handler();
        void *p = align ? do_memalign(align, n, caller, kind) : do_malloc(n, caller, kind);
        if (p)
            return p;
    }
}

static inline __attribute__((always_inline)) void *cxx_new(size_t n, bool nothrow, void *caller,
                                                          unsigned kind) {
    void *p = do_malloc(n, caller, kind);
    if (likely(p != NULL))
        return p;
    return cxx_new_failed(n, 0, nothrow, caller, kind);
}

/* align_val_t: a power of two (the standard's precondition); do_memalign rounds any other up */
static inline __attribute__((always_inline)) void *cxx_new_al(size_t n, size_t al, bool nothrow,
                                                              void *caller, unsigned kind) {
    void *p = do_memalign(al, n, caller, kind);
    if (likely(p != NULL))
        return p;
    return cxx_new_failed(n, al ? al : 1, nothrow, caller, kind);
}

TALLY_EXPORT void *_Znwm(size_t n) {
    return cxx_new(n, false, CALLER(), CK_NEW);
}

TALLY_EXPORT void *_ZnwmSt11align_val_t(size_t n, size_t al) {
    return cxx_new_al(n, al, false, CALLER(), CK_NEW);
}

#define CXX_DELETE "operator delete"
#define CXX_DELETE_ARRAY "operator delete[]"

TALLY_EXPORT void _ZdlPv(void *p) {
    free_as(p, CALLER(), CXX_DELETE);
}

TALLY_EXPORT void _ZdlPvSt11align_val_t(void *p, size_t al) {
    (void)al;
    free_as(p, CALLER(), CXX_DELETE);
}

/* The derived forms: handed on when the program defines a base, else served here. */
#define CXX_FORM(ret, name, i, params, types, args, serve)                                        \
    TALLY_EXPORT ret name params {                                                               \
        uintptr_t to = cxx_defer(i);                                                             \
        if (unlikely(to))                                                                        \
            return ((ret(*) types)to) args;                                                      \
        serve;                                                                                   \
    }
CXX_FORM(void *, _Znam, CXD_NA, (size_t n), (size_t), (n),
         return cxx_new(n, false, CALLER(), CK_NEW_ARRAY))
CXX_FORM(void *, _ZnwmRKSt9nothrow_t, CXD_NW_NT, (size_t n, const void *nt),
         (size_t, const void *), (n, nt), return cxx_new(n, true, CALLER(), CK_NEW))
CXX_FORM(void *, _ZnamRKSt9nothrow_t, CXD_NA_NT, (size_t n, const void *nt),
         (size_t, const void *), (n, nt), return cxx_new(n, true, CALLER(), CK_NEW_ARRAY))
CXX_FORM(void *, _ZnamSt11align_val_t, CXD_NA_AL, (size_t n, size_t al), (size_t, size_t),
         (n, al), return cxx_new_al(n, al, false, CALLER(), CK_NEW_ARRAY))
CXX_FORM(void *, _ZnwmSt11align_val_tRKSt9nothrow_t, CXD_NW_AL_NT,
         (size_t n, size_t al, const void *nt), (size_t, size_t, const void *), (n, al, nt),
         return cxx_new_al(n, al, true, CALLER(), CK_NEW))
CXX_FORM(void *, _ZnamSt11align_val_tRKSt9nothrow_t, CXD_NA_AL_NT,
         (size_t n, size_t al, const void *nt), (size_t, size_t, const void *), (n, al, nt),
         return cxx_new_al(n, al, true, CALLER(), CK_NEW_ARRAY))
CXX_FORM(void, _ZdaPv, CXD_DA, (void *p), (void *), (p), free_as(p, CALLER(), CXX_DELETE_ARRAY))
CXX_FORM(void, _ZdlPvm, CXD_DL_SZ, (void *p, size_t n), (void *, size_t), (p, n),
         free_as(p, CALLER(), CXX_DELETE))
CXX_FORM(void, _ZdaPvm, CXD_DA_SZ, (void *p, size_t n), (void *, size_t), (p, n),
         free_as(p, CALLER(), CXX_DELETE_ARRAY))
CXX_FORM(void, _ZdlPvRKSt9nothrow_t, CXD_DL_NT, (void *p, const void *nt), (void *, const void *),
         (p, nt), free_as(p, CALLER(), CXX_DELETE))
CXX_FORM(void, _ZdaPvRKSt9nothrow_t, CXD_DA_NT, (void *p, const void *nt), (void *, const void *),
         (p, nt), free_as(p, CALLER(), CXX_DELETE_ARRAY))
CXX_FORM(void, _ZdaPvSt11align_val_t, CXD_DA_AL, (void *p, size_t al), (void *, size_t), (p, al),
         free_as(p, CALLER(), CXX_DELETE_ARRAY))
CXX_FORM(void, _ZdlPvmSt11align_val_t, CXD_DL_SZ_AL, (void *p, size_t n, size_t al),
         (void *, size_t, size_t), (p, n, al), free_as(p, CALLER(), CXX_DELETE))
CXX_FORM(void, _ZdaPvmSt11align_val_t, CXD_DA_SZ_AL, (void *p, size_t n, size_t al),
         (void *, size_t, size_t), (p, n, al), free_as(p, CALLER(), CXX_DELETE_ARRAY))
CXX_FORM(void, _ZdlPvSt11align_val_tRKSt9nothrow_t, CXD_DL_AL_NT,
         (void *p, size_t al, const void *nt), (void *, size_t, const void *), (p, al, nt),
         free_as(p, CALLER(), CXX_DELETE))
CXX_FORM(void, _ZdaPvSt11align_val_tRKSt9nothrow_t, CXD_DA_AL_NT,
         (void *p, size_t al, const void *nt), (void *, size_t, const void *), (p, al, nt),
         free_as(p, CALLER(), CXX_DELETE_ARRAY))
#undef CXX_FORM
