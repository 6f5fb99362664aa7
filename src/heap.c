/* heap.c: thread heaps. A heap owns pools (a list per class, whose head is where malloc pops);
 * this file moves pools in and out of it: refill when the head runs dry, full pools parked and
 * woken again, hand-over at thread exit and in the child after fork. Every change to
 * a heap's lists happens under the heap's own mutex (uncontended but for fork), so that fork's
 * prepare handler can wait for a consistent picture; the fast paths never take it. */
#include "internal.h"

#include <sched.h>
#include <string.h>

pool_t pool_sentinel; /* free == NULL, so a fast path that meets it falls to the slow path */

#define SENTINELS {[0 ... NCLASSES - 1] = &pool_sentinel}
heap_t heap_empty = {.sample_left = INT64_MAX, .cur = SENTINELS, .kind = HEAP_EMPTY,
                     .lock = PTHREAD_MUTEX_INITIALIZER};
heap_t heap_dead = {.sample_left = INT64_MAX, .cur = SENTINELS, .kind = HEAP_DEAD,
                    .lock = PTHREAD_MUTEX_INITIALIZER};

__thread heap_t *tls_heap TLS_IE = &heap_empty;

static pthread_mutex_t reg_lock = PTHREAD_MUTEX_INITIALIZER;
static heap_t *reg_head;
static pthread_key_t heap_key;
static bool heap_key_ok;

/* ---- class lists (owner, under h->lock) --------------------------------------------------- */
static void list_push_front(heap_t *h, pool_t *p) {
    pool_t *head = h->cur[p->szidx];
    p->prev = NULL;
    p->next = head == &pool_sentinel ? NULL : head;
    if (p->next)
        head->prev = p;
    h->cur[p->szidx] = p;
}

/* Behind the head: the head keeps serving, and a pool coming back from the full list gathers
 * more frees before malloc drains it again, so a pool hovering at full does not move between the
 * two lists on every free, as it would at the front (pymalloc's place for it). */
static void list_push_second(heap_t *h, pool_t *p) {
    pool_t *head = h->cur[p->szidx];
    if (head == &pool_sentinel) {
        list_push_front(h, p);
        return;
    }
    p->prev = head;
    p->next = head->next;
    if (head->next)
        head->next->prev = p;
    head->next = p;
}

static void list_remove(heap_t *h, pool_t *p) {
    if (p->prev)
        p->prev->next = p->next;
    else
        h->cur[p->szidx] = p->next ? p->next : &pool_sentinel;
    if (p->next)
        p->next->prev = p->prev;
    p->next = p->prev = NULL;
}

static void full_push(heap_t *h, pool_t *p) {
    p->state = POOL_FULL;
    p->prev = NULL;
    p->next = h->full;
    if (h->full)
        h->full->prev = p;
    h->full = p;
}

static void full_remove(heap_t *h, pool_t *p) {
    if (p->prev)
        p->prev->next = p->next;
    else
        h->full = p->next;
    if (p->next)
        p->next->prev = p->prev;
    p->next = p->prev = NULL;
    p->state = POOL_OWNED;
}

/* Full pools that remote frees woke up go back to their class lists. */
static void heap_drain_delayed(heap_t *h) {
    pool_t *p = atomic_exchange_explicit(&h->delayed, NULL, memory_order_acquire);
    while (p) {
        pool_t *next = p->dnext;
        if (p->in_delayed) {
            p->in_delayed = 0;
            h->nexpect--;
        }
        if (p->state == POOL_FULL) {
            full_remove(h, p);
            list_push_second(h, p);
        }
        p = next;
    }
}

void heap_notify(pool_t *p) {
    /* We cleared TF_FULL, so the owner cannot change before it has seen this pool: its exit
     * waits for every notification it knows is in flight (see heap_abandon_all). */
    heap_t *o = atomic_load_explicit(&p->owner, memory_order_acquire);
    pool_t *old = atomic_load_explicit(&o->delayed, memory_order_relaxed);
    do {
        p->dnext = old;
    } while (!atomic_compare_exchange_weak_explicit(&o->delayed, &old, p, memory_order_release,
                                                    memory_order_relaxed));
}

static void bin_flush(heap_t *h, unsigned c, unsigned n);

/* ---- M_PERTURB -------------------------------------------------------------------------------
 * glibc fills a chunk with ~byte when its malloc takes it from a bin and with byte when its free
 * puts it in one, but not on the way in and out of its thread cache. The pools do the same where
 * blocks move between a pool and a thread's bin: a refill fills them with ~byte, a flush back to
 * the pools with byte. Words 0 and 1 stay the allocator's (the free-list link, and free's key,
 * which its double-free check reads), as glibc keeps its fd and bk. Never on the fast path. */
static _Atomic int perturb_byte;

void heap_set_perturb(int byte) {
    atomic_store_explicit(&perturb_byte, byte & 0xff, memory_order_relaxed);
}

static void perturb(void *b, size_t bsize, int byte, bool fresh) {
    if (fresh)
        memset(b, byte, sizeof(void *));
    memset((char *)b + 2 * sizeof(void *), byte, bsize - 2 * sizeof(void *));
}

/* While a slow path rewrites a bin, the bin looks empty and full at once, so that a signal
 * handler's malloc or free on this thread takes its slow path, which sees in_slow and stays away
 * from the bin (glibc for malloc, a remote push for free). Returns the real top. */
static void **bin_close(bin_t *bn) {
    void **top = bn->top;
    bn->top = bn->high = bn->low;
    atomic_signal_fence(memory_order_seq_cst);
    return top;
}

static void bin_open(bin_t *bn, void **top) {
    atomic_signal_fence(memory_order_seq_cst);
    bn->high = bn->low + bn->cap;
    bn->top = top;
}

static void heap_cache_empty(heap_t *h, pool_t *p) {
    if (h->nempty < HEAP_EMPTY_CACHE) {
        p->state = POOL_EMPTY;
        atomic_store_explicit(&p->owner, NULL, memory_order_relaxed);
        h->empty[h->nempty++] = p;
    } else {
        arena_pool_push_empty(p);
    }
}

/* in_slow covers the lock and unlock calls themselves: a signal handler that comes in while
 * either runs must stay away from the heap's lock too. */
void heap_lock_slow(heap_t *h) {
    h->in_slow = 1;
    atomic_signal_fence(memory_order_seq_cst);
    lib_lock(&h->lock);
}

void heap_unlock_slow(heap_t *h) {
    lib_unlock(&h->lock);
    atomic_signal_fence(memory_order_seq_cst);
    h->in_slow = 0;
    sig_fatal_poll();
}

/* ---- creation, registry, thread exit ------------------------------------------------------ */
/* Hands every pool of h to nobody. With `wait`, first makes sure no notification is still in
 * flight towards h (a remote free that cleared TF_FULL but has not pushed yet): h may be reused
 * by the next thread, which must not receive pools it does not own. After fork, the notifiers
 * are gone with their threads, so the child does not wait. */
static void heap_abandon_all(heap_t *h, bool wait) {
    for (unsigned c = 0; c < NCLASSES; c++)
        bin_flush(h, c, (unsigned)(h->bin[c].top - h->bin[c].low));
    heap_drain_delayed(h);
    for (pool_t *p = h->full; p; p = p->next) {
        if (!p->in_delayed && !pool_clear_full(p)) {
            p->in_delayed = 1;
            h->nexpect++;
        }
    }
    while (wait && h->nexpect > 0) {
        sched_yield();
        heap_drain_delayed(h);
    }
    for (pool_t *p = h->full; p; p = p->next)
        p->in_delayed = 0;
    h->nexpect = 0;
    while (h->full) {
        pool_t *p = h->full;
        full_remove(h, p);
        pool_abandon(p);
    }
    for (unsigned c = 0; c < NCLASSES; c++) {
        while (h->cur[c] != &pool_sentinel) {
            pool_t *p = h->cur[c];
            list_remove(h, p);
            p->in_delayed = 0;
            pool_abandon(p);
        }
    }
    while (h->nempty > 0)
        arena_pool_push_empty(h->empty[--h->nempty]);
}

static void heap_thread_done(void *arg) {
    heap_t *h = arg;
    heap_lock_slow(h);
    heap_abandon_all(h, true);
    heap_unlock_slow(h);
    /* From here on this thread's mallocs go to glibc and its frees take the remote path: glibc
     * still frees on this thread after the key destructors (__libc_thread_freeres). */
    tls_heap = &heap_dead;
    lib_lock(&reg_lock);
    h->in_use = 0;
    lib_unlock(&reg_lock);
}

static unsigned heap_slots(void) {
    unsigned n = 0;
    for (unsigned c = 0; c < NCLASSES; c++)
        n += BIN_CAP(c);
    return n;
}

static heap_t *heap_alloc_locked(void) {
    /* The heap and its bins' slots in one mapping of their own: a few pages per thread, made
     * once and reused after the thread exits. */
    size_t sz = sizeof(heap_t) + heap_slots() * sizeof(void *);
    heap_t *h = os_map((sz + 4095) & ~(size_t)4095);
    if (!h)
        return NULL;
    void **slot = (void **)(h + 1);
    for (unsigned c = 0; c < NCLASSES; c++) {
        bin_t *bn = &h->bin[c];
        bn->cap = BIN_CAP(c);
        bn->low = bn->top = slot;
        bn->high = slot + bn->cap;
        slot += bn->cap;
        h->cur[c] = &pool_sentinel;
    }
    pthread_mutex_init(&h->lock, NULL);
    h->kind = HEAP_REAL;
    h->reg_next = reg_head;
    __atomic_store_n(&reg_head, h, __ATOMIC_RELEASE);
    return h;
}

heap_t *heap_thread_init(void) {
    if (!tally_init_global())
        return NULL;
    lib_lock(&reg_lock);
    heap_t *h = reg_head;
    while (h && h->in_use)
        h = h->reg_next;
    if (!h)
        h = heap_alloc_locked();
    if (h)
        h->in_use = 1;
    lib_unlock(&reg_lock);
    if (!h)
        return NULL;
    prof_heap_init(h);
    tls_heap = h;
    /* Our key was made in the first malloc, so it is one of the first 32 and setting it never
     * allocates (keys >= 32 make glibc calloc a second-level block). */
    if (heap_key_ok)
        pthread_setspecific(heap_key, h);
    return h;
}

void heap_global_init(void) {
    heap_key_ok = pthread_key_create(&heap_key, heap_thread_done) == 0;
    pthread_atfork(heap_fork_prepare, heap_fork_parent, heap_fork_child);
}

/* ---- slow paths ---------------------------------------------------------------------------- */
static pool_t *heap_pool_new(heap_t *h, unsigned c) {
    pool_t *p;
    if (h->nempty > 0) {
        p = h->empty[--h->nempty];
        pool_init(p, c, h);
        return p;
    }
    if ((p = arena_abandoned_claim(c)) != NULL) {
        p->state = POOL_OWNED;
        atomic_store_explicit(&p->owner, h, memory_order_relaxed);
        pool_collect(p);
        h->stats.nadopt++;
        return p;
    }
    if ((p = arena_pool_fresh_or_empty()) != NULL)
        pool_init(p, c, h);
    return p;
}

void *heap_refill(heap_t *h, unsigned c) {
    bin_t *bn = &h->bin[c];
    unsigned want = bn->cap / 2, got = 0;
    void **dst = bn->low;
    bin_close(bn); /* it is empty: top == low */
    if (atomic_load_explicit(&h->delayed, memory_order_relaxed))
        heap_drain_delayed(h);
    while (got < want) {
        pool_t *p = h->cur[c];
        if (p == &pool_sentinel) {
            if (!(p = heap_pool_new(h, c)))
                break; /* address range exhausted or commit refused: serve what we have */
            list_push_front(h, p);
        }
        got += pool_take(p, dst + got, want - got);
        if (got == want)
            break;
        if (pool_collect(p))
            continue;
        /* Exhausted: park it in the full list, still ours. A pool already promised to our
         * delayed stack must not be promised twice, so it gets no TF_FULL. */
        list_remove(h, p);
        if (p->in_delayed || pool_set_full(p))
            full_push(h, p);
        else
            list_push_front(h, p); /* a remote free raced in; the next turn collects it */
    }
    if (got == 0) {
        bin_open(bn, bn->low);
        return NULL;
    }
    /* pool_take gave address order; malloc pops from the top, so reverse to hand them out
     * ascending. The caller gets the first one. */
    for (unsigned i = 0, j = got - 1; i < j; i++, j--) {
        void *t = dst[i];
        dst[i] = dst[j];
        dst[j] = t;
    }
    int byte = atomic_load_explicit(&perturb_byte, memory_order_relaxed);
    if (unlikely(byte != 0))
        for (unsigned i = 0; i < got; i++)
            perturb(dst[i], CLASS_SIZE(c), byte ^ 0xff, true);
    bin_open(bn, dst + got - 1);
    return dst[got - 1];
}

/* A block back into a pool we own, under h->lock. */
static void pool_free_local(heap_t *h, pool_t *p, block_t *b) {
    b->next = p->free;
    p->free = b;
    p->used--;
    if (likely(b->next != NULL) && likely(p->used != 0))
        return;
    if (p->state == POOL_FULL) {
        /* Back to its class list. If a remote free already cleared TF_FULL, its notification
         * is on the way and will find the pool relinked. */
        full_remove(h, p);
        list_push_second(h, p);
        if (!p->in_delayed && !pool_clear_full(p)) {
            p->in_delayed = 1;
            h->nexpect++;
        }
    }
    /* An empty pool goes to the cache, except the only pool of its class: a loop that mallocs
     * and frees one block must not move a pool back and forth. */
    if (p->used == 0 && !p->in_delayed && !(h->cur[p->szidx] == p && p->next == NULL)) {
        list_remove(h, p);
        heap_cache_empty(h, p);
    }
}

/* Gives another heap's (or nobody's) pool its blocks back: one CAS per run of blocks of the
 * same pool. */
static void push_remote_run(pool_t *p, block_t *head, block_t *tail) {
    if (pool_push_remote_list(p, head, tail) & TF_FULL)
        heap_notify(p);
}

/* Returns the n oldest blocks of bin c to their pools, under h->lock. */
static void bin_flush(heap_t *h, unsigned c, unsigned n) {
    bin_t *bn = &h->bin[c];
    void **top = bin_close(bn);
    pool_t *rp = NULL; /* the pool of the pending run of remote blocks */
    block_t *rhead = NULL, *rtail = NULL;
    int byte = atomic_load_explicit(&perturb_byte, memory_order_relaxed);
    for (unsigned i = 0; i < n; i++) {
        block_t *b = bn->low[i];
        pool_t *p = pool_of(b);
        if (unlikely(byte != 0))
            perturb(b, CLASS_SIZE(c), byte, false);
        if (atomic_load_explicit(&p->owner, memory_order_relaxed) == h) {
            pool_free_local(h, p, b);
            continue;
        }
        h->stats.nremote_free++;
        if (p == rp) {
            rtail->next = b;
            rtail = b;
            continue;
        }
        if (rp)
            push_remote_run(rp, rhead, rtail);
        rp = p;
        rhead = rtail = b;
    }
    if (rp)
        push_remote_run(rp, rhead, rtail);
    size_t left = (size_t)(top - bn->low) - n;
    memmove(bn->low, bn->low + n, left * sizeof(void *));
    bin_open(bn, bn->low + left);
}

void heap_free_slow(heap_t *h, pool_t *p, void *ptr) {
    if (h->kind != HEAP_REAL || h->in_slow) {
        /* A thread without bins (it never allocated, or its key destructor ran), or a signal
         * handler that interrupted our slow path: hand the block straight back to its pool.
         * Lock-free, and right even when the pool is our own (we then notify ourselves). */
        if (h->kind == HEAP_REAL)
            h->stats.nremote_free++;
        int byte = atomic_load_explicit(&perturb_byte, memory_order_relaxed);
        if (unlikely(byte != 0))
            perturb(ptr, p->bsize, byte, false);
        push_remote_run(p, ptr, ptr);
        return;
    }
    heap_lock_slow(h);
    bin_t *bn = &h->bin[p->szidx];
    bin_flush(h, p->szidx, bn->cap / 2);
    *bn->top = ptr; /* open again, with room for it */
    bn->top++;
    heap_unlock_slow(h);
}

/* ---- malloc_trim ----------------------------------------------------------------------------
 * Only the calling thread's bins can be emptied (another thread's are its own, touched without a
 * lock); every heap's cache of empty pools is under its lock. Lock order as for fork. */
size_t heap_trim(void) {
    heap_t *me = tls_heap;
    lib_lock(&reg_lock);
    for (heap_t *h = reg_head; h; h = h->reg_next) {
        if (h->kind != HEAP_REAL || (h == me && h->in_slow)) /* a signal inside our slow path */
            continue;
        if (h == me) {
            heap_lock_slow(h);
            if (atomic_load_explicit(&h->delayed, memory_order_relaxed))
                heap_drain_delayed(h);
            for (unsigned c = 0; c < NCLASSES; c++)
                bin_flush(h, c, (unsigned)(h->bin[c].top - h->bin[c].low));
        } else {
            lib_lock(&h->lock);
        }
        while (h->nempty > 0)
            arena_pool_push_empty(h->empty[--h->nempty]);
        if (h == me)
            heap_unlock_slow(h);
        else
            lib_unlock(&h->lock);
    }
    lib_unlock(&reg_lock);
    return arena_trim();
}

/* ---- fork ----------------------------------------------------------------------------------
 * Lock order everywhere: python.c's scan lock, registry, heaps (registry order), the global
 * arena lock. */
void heap_fork_prepare(void) {
    python_fork_scan_lock();
    lib_lock(&reg_lock);
    for (heap_t *h = reg_head; h; h = h->reg_next)
        lib_lock(&h->lock);
    arena_lock();
    prof_fork_prepare();
}

void heap_fork_parent(void) {
    prof_fork_parent();
    arena_unlock();
    for (heap_t *h = reg_head; h; h = h->reg_next)
        lib_unlock(&h->lock);
    lib_unlock(&reg_lock);
    python_fork_scan_unlock();
}

void heap_fork_child(void) {
    /* Only the forking thread exists now. The other threads' heaps are consistent (we held
     * their locks), so hand their pools over as if those threads had exited: the child can then
     * free their blocks and reuse the memory. */
    os_fork_child();
    arena_fork_child();
    prof_fork_child();
    pthread_mutex_init(&reg_lock, NULL);
    check_fork_child();
    for (heap_t *h = reg_head; h; h = h->reg_next) {
        pthread_mutex_init(&h->lock, NULL);
        h->in_slow = 0;
        check_fork_child_heap(h);
        if (h->in_use && h != tls_heap) {
            heap_abandon_all(h, false);
            h->in_use = 0;
        }
    }
}

void heap_foreach_unlocked(void (*fn)(heap_t *, void *), void *arg) {
    for (heap_t *h = __atomic_load_n(&reg_head, __ATOMIC_ACQUIRE); h; h = h->reg_next)
        fn(h, arg);
}

void heap_foreach(void (*fn)(heap_t *, void *), void *arg) {
    lib_lock(&reg_lock);
    for (heap_t *h = reg_head; h; h = h->reg_next)
        fn(h, arg);
    lib_unlock(&reg_lock);
}

/* ---- is this block free? (a double free's confirmation, alloc.c) ---------------------------
 * free found the key in ptr's word 1: the block is free unless the program wrote that value
 * there. Look for it where free blocks are: every heap's bin of its class, its pool's free list
 * and remote list, or a pool with no block in use. Other threads may be changing all of these:
 * every pointer followed must lie on a block of this pool and every walk is bounded, so the
 * answer can be wrong under a race but nothing read can fault. */
static bool block_of_pool(const pool_t *p, const block_t *b) {
    uintptr_t off = (uintptr_t)b - (uintptr_t)p - POOL_HEADER;
    return pool_of(b) == p && (uintptr_t)b >= (uintptr_t)p + POOL_HEADER &&
           off % CLASS_SIZE(p->szidx) == 0;
}

static bool list_has(const pool_t *p, const block_t *b, const void *ptr) {
    for (unsigned n = 0; b && n <= POOL_CAPACITY(0); n++) {
        if (b == ptr)
            return true;
        if (!block_of_pool(p, b))
            return false;
        b = __atomic_load_n(&b->next, __ATOMIC_RELAXED);
    }
    return false;
}

typedef struct bin_find_s {
    unsigned c;
    const void *ptr;
    bool found;
} bin_find_t;

static void bin_has(heap_t *h, void *arg) {
    bin_find_t *q = arg;
    if (h->kind != HEAP_REAL || q->found)
        return;
    const bin_t *bn = &h->bin[q->c];
    void **low = __atomic_load_n(&bn->low, __ATOMIC_RELAXED);
    void **top = __atomic_load_n(&bn->top, __ATOMIC_RELAXED);
    if (top < low || top > low + bn->cap)
        return;
    for (void **sl = low; sl < top; sl++)
        if (__atomic_load_n(sl, __ATOMIC_RELAXED) == q->ptr) {
            q->found = true;
            return;
        }
}

bool heap_block_is_free(pool_t *p, const void *ptr) {
    if (p->state == POOL_EMPTY || p->state == POOL_FRESH)
        return true;
    bin_find_t q = {p->szidx, ptr, false};
    heap_foreach_unlocked(bin_has, &q);
    if (q.found)
        return true;
    if (list_has(p, __atomic_load_n(&p->free, __ATOMIC_RELAXED), ptr))
        return true;
    uintptr_t tf = atomic_load_explicit(&p->thread_free, memory_order_acquire);
    return list_has(p, (const block_t *)(tf & ~TF_FLAGS), ptr);
}
