/* Threads: glibc's main arena left to the main thread, producer/consumer rings where every
 * block is freed by another thread (contents checked), thread churn with blocks freed after
 * their thread exited, and a pthread key whose destructor allocates and frees after ours has
 * handed the heap over. */
#define _GNU_SOURCE
#include "tally.h"
#include "../test.h"

#include <pthread.h>
#include <sched.h>
#include <spawn.h>
#include <sys/wait.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>

#define RING 1024 /* power of two */
#define PER_THREAD 300000

/* Single-producer single-consumer ring: every block a thread makes is freed by the other. */
typedef struct {
    unsigned char *slot[RING];
    _Atomic unsigned head, tail;
    _Atomic unsigned bad;
} ring_t;

static ring_t rings[2];

static uint32_t rnd(uint32_t *s) {
    *s ^= *s << 13;
    *s ^= *s >> 17;
    *s ^= *s << 5;
    return *s;
}

/* Each block carries its size and a pattern derived from it. */
static unsigned char *make(uint32_t *seed) {
    size_t n = 16 + rnd(seed) % 497;
    unsigned char *p = malloc(n);
    if (!p)
        return NULL;
    memcpy(p, &n, sizeof n);
    for (size_t i = sizeof n; i < n; i++)
        p[i] = (unsigned char)(n + i);
    return p;
}

static int intact(const unsigned char *p) {
    size_t n;
    memcpy(&n, p, sizeof n);
    if (n < 16 || n > 512)
        return 0;
    for (size_t i = sizeof n; i < n; i++)
        if (p[i] != (unsigned char)(n + i))
            return 0;
    return 1;
}

static void *worker(void *arg) {
    int me = (int)(intptr_t)arg;
    ring_t *out = &rings[me], *in = &rings[1 - me];
    uint32_t seed = 12345u + (uint32_t)me;
    unsigned char *local[512] = {0};
    unsigned made = 0, taken = 0;
    while (made < PER_THREAD || taken < PER_THREAD) {
        unsigned h = atomic_load_explicit(&out->head, memory_order_relaxed);
        if (made < PER_THREAD && h - atomic_load_explicit(&out->tail, memory_order_acquire) < RING) {
            out->slot[h % RING] = make(&seed);
            atomic_store_explicit(&out->head, h + 1, memory_order_release);
            made++;
        }
        unsigned t = atomic_load_explicit(&in->tail, memory_order_relaxed);
        if (taken < PER_THREAD && atomic_load_explicit(&in->head, memory_order_acquire) != t) {
            unsigned char *q = in->slot[t % RING];
            atomic_store_explicit(&in->tail, t + 1, memory_order_release);
            if (!intact(q))
                atomic_fetch_add(&in->bad, 1);
            free(q); /* made by the other thread */
            taken++;
        } else if (made == PER_THREAD) {
            sched_yield();
        }
        unsigned j = rnd(&seed) % 512;
        if (local[j] && !intact(local[j]))
            atomic_fetch_add(&out->bad, 1);
        free(local[j]);
        local[j] = make(&seed);
    }
    for (int j = 0; j < 512; j++)
        free(local[j]);
    return NULL;
}

static void test_cross_thread(void) {
    struct tally_stats s0, s1;
    tally_stats_get(&s0, sizeof s0);
    pthread_t t[2];
    for (int i = 0; i < 2; i++)
        assert_true(pthread_create(&t[i], NULL, worker, (void *)(intptr_t)i) == 0);
    for (int i = 0; i < 2; i++)
        pthread_join(t[i], NULL);
    for (int r = 0; r < 2; r++) {
        expect_eq(atomic_load(&rings[r].bad), 0);
        expect_eq(atomic_load(&rings[r].head), PER_THREAD);
        expect_eq(atomic_load(&rings[r].tail), PER_THREAD);
    }
    tally_stats_get(&s1, sizeof s1);
    /* A block freed by the other thread goes to that thread's bin and may be reused there; the
     * rest reach their owner's pool by remote pushes when a bin overflows or its thread exits. */
    expect_true(s1.remote_frees > s0.remote_frees);
    expect_true(s1.small_mallocs > s0.small_mallocs + 2 * PER_THREAD);
}

/* ---- churn: threads exit leaving blocks; others free them and reuse the pools ------------ */
#define CHURN_THREADS 200
#define CHURN_BLOCKS 300
static unsigned char *leftovers[CHURN_THREADS][CHURN_BLOCKS];

static void *churn(void *arg) {
    int id = (int)(intptr_t)arg;
    uint32_t seed = 777u + (uint32_t)id;
    for (int i = 0; i < CHURN_BLOCKS; i++)
        leftovers[id][i] = make(&seed);
    return NULL;
}

static void test_thread_churn(void) {
    struct tally_stats s0, s1;
    tally_stats_get(&s0, sizeof s0);
    for (int round = 0; round < CHURN_THREADS; round += 4) {
        pthread_t t[4];
        for (int i = 0; i < 4; i++)
            pthread_create(&t[i], NULL, churn, (void *)(intptr_t)(round + i));
        for (int i = 0; i < 4; i++)
            pthread_join(t[i], NULL);
        /* free half of what the exited threads left, now */
        for (int i = 0; i < 4; i++)
            for (int j = 0; j < CHURN_BLOCKS; j += 2) {
                expect_true(intact(leftovers[round + i][j]));
                free(leftovers[round + i][j]);
                leftovers[round + i][j] = NULL;
            }
    }
    for (int i = 0; i < CHURN_THREADS; i++)
        for (int j = 1; j < CHURN_BLOCKS; j += 2) {
            expect_true(intact(leftovers[i][j]));
            free(leftovers[i][j]);
        }
    tally_stats_get(&s1, sizeof s1);
    /* Heaps are reused after thread exit, and exited threads' pools were handed over rather
     * than leaked: the arenas stay far below 200 threads' worth of private pools. */
    expect_true(s1.threads - s0.threads <= 8);
    expect_true(s1.pools_adopted > s0.pools_adopted);
    if (s1.arena_bytes >= 32u << 20)
        test_fail_("arenas grew to %llu bytes", (unsigned long long)s1.arena_bytes);
}

/* ---- key destructors that run after ours and still use malloc ---------------------------- */
static pthread_key_t late_key;
static _Atomic int late_ok;

static void late_destructor(void *v) {
    free(v); /* a block from this thread's pools, freed after our heap may be gone */
    void *p = malloc(100);
    void *q = malloc(5000);
    memset(p, 1, 100);
    free(p);
    free(q);
    atomic_fetch_add(&late_ok, 1);
}

static void *late_thread(void *arg) {
    (void)arg;
    for (int i = 0; i < 50; i++)
        free(malloc(64));
    pthread_setspecific(late_key, malloc(48));
    return NULL;
}

static void test_late_destructors(void) {
    /* Created after the library's own key, so glibc runs it later in the same round. */
    assert_true(pthread_key_create(&late_key, late_destructor) == 0);
    for (int i = 0; i < 20; i++) {
        pthread_t t;
        pthread_create(&t, NULL, late_thread, NULL);
        pthread_join(t, NULL);
    }
    expect_eq(atomic_load(&late_ok), 20);
}

/* ---- glibc's arenas: the main one stays the main thread's ------------------------------------
 * glibc (2.34 on) sets its malloc up in the first call that needs it and attaches main_arena to
 * the thread that made that call, without counting it. Under the library the main thread may
 * never call glibc's malloc itself (the pools serve it), so the first call could come from two
 * workers at once, both attached to main_arena, counted once: the second to exit aborted in
 * glibc ("a->attached_threads > 0"). The library sets glibc's malloc up in its constructor, on
 * the main thread, as an ordinary program's first malloc does. Seen from here: a worker's first
 * large block comes from an arena of its own (mmap'd), not from main_arena's brk heap, as under
 * glibc alone. */
static int in_brk_heap(const void *p) {
    FILE *f = fopen("/proc/self/maps", "r");
    char line[512];
    int in = 0;
    while (f && fgets(line, sizeof line, f)) {
        unsigned long lo, hi;
        if (strstr(line, "[heap]") && sscanf(line, "%lx-%lx", &lo, &hi) == 2 &&
            (uintptr_t)p >= lo && (uintptr_t)p < hi)
            in = 1;
    }
    if (f)
        fclose(f);
    return in;
}

static void *first_large(void *arg) {
    (void)arg;
    void *p = malloc(5000); /* above the pools: glibc's */
    memset(p, 2, 5000);
    int in = in_brk_heap(p);
    free(p);
    return (void *)(intptr_t)in;
}

static void test_glibc_main_arena(void) {
    pthread_t t;
    void *in = NULL;
    assert_true(pthread_create(&t, NULL, first_large, NULL) == 0);
    pthread_join(t, &in);
    if (in)
        test_fail_("%s", "a worker's first large block came from glibc's main arena");
}

/* The same in a fresh process with profiling off, where nothing of the profiler's start-up
 * calls glibc's malloc on the main thread before the workers do. */
static void test_glibc_main_arena_off(void) {
    extern char **environ;
    char *args[] = {"test_threads", "glibc-arena", NULL};
    char *env[256];
    int n = 0;
    env[n++] = "TALLY_PROFILE=off";
    for (char **e = environ; *e && n < 255; e++) /* glibc's arena settings: its defaults */
        if (strncmp(*e, "TALLY_PROFILE=", 14) != 0 && strncmp(*e, "MALLOC_ARENA_", 13) != 0 &&
            strncmp(*e, "GLIBC_TUNABLES=", 15) != 0)
            env[n++] = *e;
    env[n] = NULL;
    pid_t pid;
    int st = 0;
    assert_true(posix_spawn(&pid, "/proc/self/exe", NULL, NULL, args, env) == 0);
    assert_true(waitpid(pid, &st, 0) == pid);
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
        test_fail_("TALLY_PROFILE=off: the glibc arena check ended with status %#x", st);
}

static void report(const char *phase) {
    struct tally_stats s;
    tally_stats_get(&s, sizeof s);
    fprintf(stderr, "after %s: arenas %llu KiB, in use %llu KiB, empty pools %llu KiB, "
            "adopted %llu\n", phase, (unsigned long long)s.arena_bytes >> 10,
            (unsigned long long)s.in_use_bytes >> 10, (unsigned long long)s.empty_pool_bytes >> 10,
            (unsigned long long)s.pools_adopted);
}

int main(int argc, char **argv) {
    /* first: before anything calls glibc's malloc; where the environment limits glibc's arenas
     * (MALLOC_ARENA_MAX=1 puts every thread on the main one) only the fresh process below,
     * which runs without those settings, can tell */
    if (!getenv("MALLOC_ARENA_MAX") && !getenv("GLIBC_TUNABLES"))
        test_glibc_main_arena();
    if (argc > 1 && strcmp(argv[1], "glibc-arena") == 0)
        return test_result();
    test_glibc_main_arena_off();
    test_cross_thread();
    report("cross-thread");
    test_thread_churn();
    report("churn");
    test_late_destructors();
    report("late destructors");
    return test_result();
}
