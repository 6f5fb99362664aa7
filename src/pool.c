/* pool.c: operations on one pool. The owner's list (`free`, `used`, `carved`) needs no atomics;
 * the shared word `thread_free` carries both the remote-free list and the TF_UNOWNED bit, so
 * that pushing a block and taking ownership of an unowned pool are one CAS. */
#include "internal.h"

#include <stdlib.h>

void pool_init(pool_t *p, unsigned c, heap_t *h) {
    prof_pool_init(p, c); /* reads the old class: first */
    p->free = NULL;
    p->used = 0;
    p->carved = 0;
    p->carve_end = 0;
    p->szidx = (uint8_t)c;
    p->bsize = (uint32_t)CLASS_SIZE(c);
    p->div_magic = (uint32_t)((((uint64_t)1 << 32) + CLASS_SIZE(c) - 1) / CLASS_SIZE(c));
    p->capacity = POOL_CAPACITY(c);
    p->state = POOL_OWNED;
    p->next = p->prev = NULL;
    atomic_store_explicit(&p->owner, h, memory_order_relaxed);
    /* An empty pool has no block out, so nothing can be pushed on it: the word is already 0. */
    atomic_store_explicit(&p->thread_free, 0, memory_order_relaxed);
}

unsigned pool_take(pool_t *p, void **dst, unsigned max) {
    unsigned n = 0;
    block_t *b = p->free;
    while (b && n < max) {
        dst[n++] = b;
        b = b->next;
    }
    p->free = b;
    if (n < max && p->carved < p->capacity) {
        /* Virgin blocks go straight to the bin, in address order, without a write to any of
         * them: a pool's memory is first touched by the program that uses it (pymalloc: "never
         * touch a piece of memory until it's actually needed"). */
        unsigned k = max - n;
        if (k > p->capacity - p->carved)
            k = p->capacity - p->carved;
        char *first = (char *)p + POOL_HEADER + (size_t)p->carved * p->bsize;
        for (unsigned i = 0; i < k; i++)
            dst[n++] = first + (size_t)i * p->bsize;
        p->carved = (uint16_t)(p->carved + k);
        __atomic_store_n(&p->carve_end, (uint16_t)(p->carved * p->bsize), __ATOMIC_RELAXED);
    }
    p->used += n;
    return n;
}

unsigned pool_collect(pool_t *p) {
    if (atomic_load_explicit(&p->thread_free, memory_order_relaxed) == 0)
        return 0;
    /* Owned pools never carry TF_UNOWNED, so exchanging with 0 keeps the pool owned. */
    uintptr_t x = atomic_exchange_explicit(&p->thread_free, 0, memory_order_acquire);
    block_t *head = (block_t *)(x & ~TF_FLAGS);
    if (!head)
        return 0;
    unsigned n = 1;
    block_t *tail = head;
    while (tail->next) {
        tail = tail->next;
        n++;
        if (config_debug && n > p->capacity) {
            tally_message("corrupted remote free list (double free?)", NULL, NULL);
            abort();
        }
    }
    tail->next = p->free;
    p->free = head;
    p->used -= n;
    return n;
}

bool pool_set_full(pool_t *p) {
    uintptr_t expected = 0;
    return atomic_compare_exchange_strong_explicit(&p->thread_free, &expected, TF_FULL,
                                                   memory_order_release, memory_order_relaxed);
}

bool pool_clear_full(pool_t *p) {
    uintptr_t old = atomic_load_explicit(&p->thread_free, memory_order_relaxed);
    while (old & TF_FULL) {
        if (atomic_compare_exchange_weak_explicit(&p->thread_free, &old, old & ~TF_FULL,
                                                  memory_order_acq_rel, memory_order_relaxed))
            return true;
    }
    return false;
}

bool pool_claim_unowned(pool_t *p) {
    uintptr_t old = atomic_load_explicit(&p->thread_free, memory_order_relaxed);
    while (old & TF_UNOWNED) {
        if (atomic_compare_exchange_weak_explicit(&p->thread_free, &old, old & ~TF_UNOWNED,
                                                  memory_order_acquire, memory_order_relaxed))
            return true;
    }
    return false;
}

uintptr_t pool_push_remote_list(pool_t *p, block_t *head, block_t *tail) {
    uintptr_t old = atomic_load_explicit(&p->thread_free, memory_order_relaxed);
    uintptr_t next;
    do {
        /* TF_FULL is always cleared: whoever clears it notifies the owner, exactly once.
         * TF_UNOWNED stays: the pool waits on the abandoned list for a thread that allocates. */
        tail->next = (block_t *)(old & ~TF_FLAGS);
        next = (uintptr_t)head | (old & TF_UNOWNED);
    } while (!atomic_compare_exchange_weak_explicit(&p->thread_free, &old, next,
                                                    memory_order_acq_rel, memory_order_relaxed));
    return old;
}

uintptr_t pool_push_remote(pool_t *p, block_t *q) {
    return pool_push_remote_list(p, q, q);
}

void pool_abandon(pool_t *p) {
    heap_t *was = atomic_load_explicit(&p->owner, memory_order_relaxed);
    for (;;) {
        pool_collect(p);
        if (p->used == 0) {
            arena_abandoned_unlink(p);
            arena_pool_push_empty(p);
            return;
        }
        /* It goes on its class's abandoned list, where the next heap that needs a pool of this
         * class claims it. Frees into it only push (they never adopt it: a thread that frees
         * but seldom allocates would hoard pools). Link before letting go. */
        arena_abandoned_link(p);
        p->state = POOL_UNOWNED;
        atomic_store_explicit(&p->owner, NULL, memory_order_relaxed);
        uintptr_t expected = 0;
        if (atomic_compare_exchange_strong_explicit(&p->thread_free, &expected, TF_UNOWNED,
                                                    memory_order_release, memory_order_relaxed))
            return;
        p->state = POOL_OWNED; /* a remote free arrived: collect it and decide again */
        atomic_store_explicit(&p->owner, was, memory_order_relaxed);
    }
}
