/* arena.c: the reserved address range, the arenas carved from it, and the two global pool lists
 * (the empty stack, any class; the abandoned partial pools, per class). Everything here is behind
 * one mutex that only slow paths take. Arenas are never returned to the operating system. */
#include "internal.h"

#include <string.h>
#include <sys/auxv.h>
#include <sys/resource.h>

global_t g = {
    .lock = PTHREAD_MUTEX_INITIALIZER,
    .trimming = ATOMIC_FLAG_INIT,
};

void arena_lock(void) {
    lib_lock(&g.lock);
}

void arena_unlock(void) {
    lib_unlock(&g.lock);
}

/* Under an address-space limit (`ulimit -v`, RLIMIT_AS), the reservation counts against the
 * program's budget: it takes an eighth of it, not as much as fits (which left the program half
 * its budget: a 1 GB bytearray failed under `ulimit -v 2000000`). Requests the arenas cannot
 * serve go to glibc. TALLY_RESERVE sets it outright. */
bool arena_init(void) {
    size_t size = opt.reserve;
    struct rlimit rl;
    if (opt.reserve == RESERVE_DEFAULT && getrlimit(RLIMIT_AS, &rl) == 0 &&
        rl.rlim_cur != RLIM_INFINITY && size > rl.rlim_cur / 8)
        size = rl.rlim_cur / 8;
    if (size < RESERVE_MIN) {
        if (opt.reserve < RESERVE_MIN)
            tally_message("TALLY_RESERVE is below the least the arenas need: 16M reserved", NULL,
                          NULL);
        size = RESERVE_MIN;
    }
    size &= ~(ARENA_SIZE - 1);
    void *base = os_reserve(&size);
    if (!base) {
        if (opt.verbose)
            tally_message("cannot reserve address space for arenas; ",
                          "every request goes to the system malloc", NULL);
        return false;
    }
    g.next_pool = g.committed = (uintptr_t)base;
    g.base = (uintptr_t)base;
    /* The key free writes into a block (alloc.c): random, so that no program's data is it by
     * chance (glibc's tcache key is made the same way). */
    const uint8_t *rnd = (const uint8_t *)getauxval(AT_RANDOM);
    uintptr_t key = (uintptr_t)base ^ 0x9E3779B97F4A7C15ULL;
    if (rnd)
        for (int i = 0; i < 8; i++)
            key = key * 0x100000001B3ULL ^ ((uintptr_t)rnd[i] << (8 * i)) ^ rnd[8 + i];
    g.free_key = key | 1; /* odd: never an aligned pointer, never 0 */
    /* Publish the range last: the free fast path reads base and reserve without a lock. */
    __atomic_store_n(&g.reserve, size, __ATOMIC_RELEASE);
    return true;
}

pool_t *arena_pool_fresh_or_empty(void) {
    pool_t *p = NULL;
    arena_lock();
    if (g.empty) {
        p = g.empty;
        g.empty = p->gnext;
        g.nempty--;
    } else if (g.ntrimmed) {
        p = (pool_t *)(g.base + (uintptr_t)g.trimmed[--g.ntrimmed] * POOL_SIZE);
    } else {
        if (g.next_pool == g.committed) {
            if (g.committed - g.base + ARENA_SIZE <= g.reserve &&
                os_commit((void *)g.committed, ARENA_SIZE)) {
                g.committed += ARENA_SIZE;
                atomic_store_explicit(&g.span, g.committed - g.base, memory_order_release);
            }
        }
        if (g.next_pool < g.committed) {
            p = (pool_t *)g.next_pool;
            g.next_pool += POOL_SIZE;
        }
    }
    arena_unlock();
    if (p)
        p->gnext = NULL;
    return p;
}

void arena_pool_push_empty(pool_t *p) {
    p->state = POOL_EMPTY;
    atomic_store_explicit(&p->owner, NULL, memory_order_relaxed);
    arena_lock();
    p->gnext = g.empty;
    g.empty = p;
    g.nempty++;
    arena_unlock();
}

/* malloc_trim: every empty pool on the global stack gives all its memory back, header
 * included, so a trimmed pool reads as one never used (state FRESH, nothing carved, no profiler
 * table) and is set up afresh when reused. Its link is gone with its header, so trimmed pools
 * are kept out of line: their indexes on a stack of their own, mapped at the first trim (4
 * bytes per pool of the reservation, touched only as far as it is used), taken before fresh
 * pools. A stale free of one of its old blocks still fails free's check (nothing carved).
 * One trim at a time: the pools being discarded are on neither stack meanwhile, their indexes
 * waiting above the trimmed stack's top, which only the trimmer raises. */
size_t arena_trim(void) {
    if (atomic_flag_test_and_set_explicit(&g.trimming, memory_order_acquire))
        return 0; /* another thread is trimming */
    size_t n = 0, cap = g.reserve / POOL_SIZE;
    arena_lock();
    if (!g.trimmed)
        g.trimmed = os_map((cap * sizeof(uint32_t) + 4095) & ~(size_t)4095);
    size_t top = g.ntrimmed;
    while (g.trimmed && g.empty && top + n < cap) {
        pool_t *p = g.empty;
        g.empty = p->gnext;
        g.nempty--;
        g.trimmed[top + n++] = (uint32_t)(((uintptr_t)p - g.base) / POOL_SIZE);
    }
    arena_unlock();
    for (size_t i = 0; i < n; i++) {
        pool_t *p = (pool_t *)(g.base + (uintptr_t)g.trimmed[top + i] * POOL_SIZE);
        prof_pool_release(p);
        __atomic_store_n(&p->carve_end, 0, __ATOMIC_RELEASE);
        os_discard(p, POOL_SIZE);
    }
    arena_lock();
    /* Pools taken meanwhile lowered the top (only the trimmer pushes): ours go on it. */
    memmove(g.trimmed + g.ntrimmed, g.trimmed + top, n * sizeof *g.trimmed);
    g.ntrimmed += n;
    arena_unlock();
    atomic_flag_clear_explicit(&g.trimming, memory_order_release);
    return n;
}

/* The abandoned lists are doubly linked (gnext/gprev) so that pool_abandon can unlink a pool it
 * listed and then found empty in O(1): a program that churns threads can leave many behind. */
void arena_abandoned_link(pool_t *p) {
    arena_lock();
    if (!p->on_abandoned) {
        pool_t **head = &g.abandoned[p->szidx];
        p->on_abandoned = 1;
        p->gprev = NULL;
        p->gnext = *head;
        if (*head)
            (*head)->gprev = p;
        *head = p;
        atomic_fetch_add_explicit(&g.nabandoned[p->szidx], 1, memory_order_relaxed);
    }
    arena_unlock();
}

static void abandoned_remove_locked(pool_t *p) {
    if (p->gprev)
        p->gprev->gnext = p->gnext;
    else
        g.abandoned[p->szidx] = p->gnext;
    if (p->gnext)
        p->gnext->gprev = p->gprev;
    p->gnext = p->gprev = NULL;
    p->on_abandoned = 0;
    atomic_fetch_sub_explicit(&g.nabandoned[p->szidx], 1, memory_order_relaxed);
}

void arena_abandoned_unlink(pool_t *p) {
    arena_lock();
    if (p->on_abandoned)
        abandoned_remove_locked(p);
    arena_unlock();
}

pool_t *arena_abandoned_claim(unsigned c) {
    if (atomic_load_explicit(&g.nabandoned[c], memory_order_relaxed) == 0)
        return NULL;
    pool_t *found = NULL;
    arena_lock();
    for (pool_t *p = g.abandoned[c]; p; p = p->gnext) {
        /* A listed pool may still be owned for a moment (its thread links it before letting
         * go): skip it. */
        if (pool_claim_unowned(p)) {
            found = p;
            abandoned_remove_locked(p);
            break;
        }
    }
    arena_unlock();
    return found;
}

void arena_fork_child(void) {
    pthread_mutex_init(&g.lock, NULL);
    /* a trim another thread was making is lost with it: its pools stay out of both stacks */
    atomic_flag_clear(&g.trimming);
}
