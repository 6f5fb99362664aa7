/* Unit tests of the size classes, pools, arenas and the pool ownership protocol, linked
 * against the library's internals. The test program's own malloc is tallymalloc. */
#include "internal.h"
#include "tally.h"
#include "../test.h"

#include <string.h>
#include <unistd.h>

static void test_classes(void) {
    for (size_t n = 1; n <= SMALL_MAX; n++) {
        unsigned c = (unsigned)((n - 1) >> ALIGNMENT_SHIFT);
        expect_true(c < NCLASSES);
        expect_true(CLASS_SIZE(c) >= n);
        expect_true(CLASS_SIZE(c) - n < ALIGNMENT);
    }
    for (unsigned c = 0; c < NCLASSES; c++) {
        expect_eq(CLASS_SIZE(c) % ALIGNMENT, 0);
        expect_true(POOL_HEADER + POOL_CAPACITY(c) * CLASS_SIZE(c) <= POOL_SIZE);
        expect_true(POOL_HEADER + (POOL_CAPACITY(c) + 1) * CLASS_SIZE(c) > POOL_SIZE);
    }
    expect_eq(POOL_CAPACITY(0), 1016);
    expect_eq(POOL_CAPACITY(NCLASSES - 1), 31);
}

static void test_arena_range(void) {
    void *p = malloc(24);
    assert_true(p != NULL);
    expect_true(g.reserve >= RESERVE_MIN);
    expect_eq(g.base % ARENA_SIZE, 0);
    expect_true(ptr_is_ours(p));
    expect_eq((uintptr_t)p % ALIGNMENT, 0);
    pool_t *pl = pool_of(p);
    expect_eq(pl->szidx, 1);
    expect_eq(pl->bsize, 32);
    expect_eq(((uintptr_t)p - (uintptr_t)pl - POOL_HEADER) % 32, 0);
    void *big = malloc(4096);
    expect_true(!ptr_is_ours(big));
    expect_true(!ptr_is_ours(NULL));
    int local;
    expect_true(!ptr_is_ours(&local));
    free(big);
    free(p);
}

static void test_pool_lifecycle(void) {
    heap_t *h = tls_heap;
    assert_true(h->kind == HEAP_REAL);
    pool_t *p = arena_pool_fresh_or_empty();
    assert_true(p != NULL);
    expect_eq((uintptr_t)p % POOL_SIZE, 0);
    pool_init(p, 3, h); /* 64-byte blocks */
    expect_eq(p->capacity, (POOL_SIZE - POOL_HEADER) / 64);
    expect_true(p->free == NULL);
    /* take: virgin blocks in address order, disjoint, counted as used */
    void *got[1024];
    unsigned n = pool_take(p, got, 10);
    expect_eq(n, 10);
    expect_eq(p->carved, 10);
    expect_eq(p->used, 10);
    for (unsigned i = 1; i < n; i++)
        expect_eq((char *)got[i] - (char *)got[i - 1], 64);
    expect_eq((char *)got[0] - (char *)p, POOL_HEADER);
    n = pool_take(p, got + 10, 1024);
    expect_eq(n, p->capacity - 10);
    expect_eq(p->carved, p->capacity);
    expect_eq(pool_take(p, got, 1), 0); /* exhausted */
    /* give them all back through the free list, then take again: the list comes first */
    for (unsigned i = 0; i < p->capacity; i++) {
        block_t *b = got[i];
        b->next = p->free;
        p->free = b;
    }
    p->used = 0;
    n = pool_take(p, got, 3);
    expect_eq(n, 3);
    expect_true(got[0] == (char *)p + POOL_HEADER + (size_t)(p->capacity - 1) * 64);
    for (unsigned i = 0; i < 3; i++) {
        block_t *b = got[2 - i];
        b->next = p->free;
        p->free = b;
    }
    p->used = 0;

    /* take three blocks, free two remotely, collect them */
    block_t *a = p->free;
    block_t *b = a->next;
    block_t *c = b->next;
    p->free = c->next;
    p->used = 3;
    expect_eq(pool_push_remote(p, a), 0);
    expect_eq(pool_push_remote(p, b), (uintptr_t)a);
    expect_eq(pool_collect(p), 2);
    expect_eq(p->used, 1);
    expect_eq(pool_collect(p), 0);

    /* full -> the first remote free sees TF_FULL and must notify; later ones do not */
    expect_true(pool_set_full(p));
    expect_eq(pool_push_remote(p, c), TF_FULL);
    expect_true(!pool_clear_full(p)); /* the notifier cleared it */
    expect_eq(pool_collect(p), 1);
    expect_eq(p->used, 0);
    expect_true(pool_set_full(p));
    expect_true(pool_clear_full(p)); /* nobody had: we clear it ourselves */

    /* abandon with a live block: it goes on the class's abandoned list, unowned */
    block_t *d = p->free;
    p->free = d->next;
    p->used = 1;
    pool_abandon(p);
    expect_true(atomic_load(&p->thread_free) & TF_UNOWNED);
    expect_eq(p->state, POOL_UNOWNED);
    expect_true(p->on_abandoned);
    pool_t *q = arena_abandoned_claim(3);
    expect_true(q == p);
    expect_true(!p->on_abandoned);
    expect_true(!(atomic_load(&p->thread_free) & TF_UNOWNED));
    expect_true(arena_abandoned_claim(3) == NULL);

    /* unowned again; a free only pushes, the pool stays unowned and listed */
    pool_abandon(p);
    expect_eq(pool_push_remote(p, d), TF_UNOWNED);
    expect_true(atomic_load(&p->thread_free) & TF_UNOWNED);
    expect_true(p->on_abandoned);
    /* the next heap that needs class 3 claims it and collects the pushed block */
    q = arena_abandoned_claim(3);
    expect_true(q == p);
    expect_eq(pool_collect(p), 1);
    expect_eq(p->used, 0);
    pool_abandon(p); /* used == 0: back to the empty stack */
    expect_eq(p->state, POOL_EMPTY);
    pool_t *r = arena_pool_fresh_or_empty();
    expect_true(r == p);
    arena_pool_push_empty(r);
}

static void test_stats_add_up(void) {
    void *keep[3000];
    for (int i = 0; i < 3000; i++)
        keep[i] = malloc((size_t)(i % 512) + 1);
    for (int i = 0; i < 3000; i += 2)
        free(keep[i]);
    struct tally_stats s;
    assert_true(tally_stats_get(&s, sizeof s) == 0);
    expect_eq(s.arena_bytes, s.in_use_bytes + s.free_block_bytes + s.pool_overhead_bytes +
                                 s.empty_pool_bytes + s.never_used_bytes);
    expect_eq(s.arena_bytes, s.arenas * ARENA_SIZE);
    uint64_t in_use = 0, held = 0;
    for (unsigned c = 0; c < NCLASSES; c++) {
        in_use += s.classes[c].blocks_in_use * s.classes[c].size;
        held += s.classes[c].bytes_held;
        expect_true(s.classes[c].bytes_requested <= s.classes[c].bytes_granted);
    }
    expect_eq(in_use, s.in_use_bytes);
    expect_eq(held + s.empty_pool_bytes + s.never_used_bytes, s.arena_bytes);
    expect_true(s.in_use_bytes >= 1500 * 16);
    expect_true(s.small_mallocs >= 3000);
    expect_true(tally_stats_get(&s, sizeof s - 1) == -1);
    for (int i = 1; i < 3000; i += 2)
        free(keep[i]);
}

int main(int argc, char **argv) {
    /* The allocator alone: in sample mode a sampled small request is served by glibc, which
     * would make "this block is ours" checks flaky. The environment is read at start. */
    (void)argc;
    if (!getenv("TALLY_PROFILE")) {
        setenv("TALLY_PROFILE", "off", 1);
        execv("/proc/self/exe", argv);
        return 1;
    }
    test_classes();
    test_arena_range();
    test_pool_lifecycle();
    test_stats_add_up();
    return test_result();
}
