/*
 * server.c - the allocation patterns of multi-threaded servers, meant to be run under LD_PRELOAD.
 *
 *   server larson  [-t THREADS] [-w SLOTS] [-r ROUNDS] [-d SECONDS] [-a MIN -b MAX] [-s SEED]
 *   server mstress [-t THREADS] [-w SLOTS] [-i ITERATIONS] [-r ROUNDS] [-s SEED]
 *   server gthread [-t THREADS] [-w SLOTS] [-d SECONDS] [-a MIN -b MAX] [-s SEED]
 *
 * larson:  the Larson-Krishnan server benchmark, rewritten: THREADS threads (default 4) each own
 *          an array of SLOTS blocks (default 1000) and replace a random slot with a new block of
 *          a random size in MIN..MAX (default 8..1000) ROUNDS times (default 10000); then the
 *          thread hands its array on to a new thread and exits. The new thread frees the blocks
 *          its predecessor allocated as it goes on, so most frees are of another thread's blocks,
 *          and threads come and go all the time. Runs for SECONDS (default 2).
 * mstress: after mimalloc-bench's mstress and rptest: ITERATIONS (default 400) rounds in which
 *          THREADS threads (default 6) are started, each allocating ROUNDS (default 2000) blocks,
 *          mostly small (8..256 B), one in eight medium (up to 4 KiB), one in 100 large (up to
 *          64 KiB), keeping SLOTS (default 500) of them live; each thread leaves a quarter of its
 *          live blocks in a shared table, where a thread of a later round takes them over and
 *          frees them: blocks outlive the thread that made them.
 * gthread: after glibc's bench-malloc-thread: THREADS threads (default 4) each keep SLOTS
 *          (default 500) blocks and replace a random one with a block of a random size in
 *          MIN..MAX (default 8..1024, smaller sizes likelier), for SECONDS (default 2).
 *
 * An op is one malloc plus one free. Prints one line on stdout:
 * "ns_per_op=<float> ops_per_sec=<float> ops=<N> threads=<T> mode=<mode>", ns_per_op being the
 * wall time over all ops (so threads that scale lower it). Every block is stamped with its size
 * and checked when it is freed: exit status 1 on a corrupted block, 2 on bad usage, 3 when a
 * thread cannot be started.
 */
#define _POSIX_C_SOURCE 200809L

#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static _Noreturn void die_usage(const char *msg)
{
    fprintf(stderr,
            "server: %s\n"
            "usage: server larson  [-t THREADS] [-w SLOTS] [-r ROUNDS] [-d SECONDS] [-a MIN -b MAX] [-s SEED]\n"
            "       server mstress [-t THREADS] [-w SLOTS] [-i ITERATIONS] [-r ROUNDS] [-s SEED]\n"
            "       server gthread [-t THREADS] [-w SLOTS] [-d SECONDS] [-a MIN -b MAX] [-s SEED]\n",
            msg);
    exit(2);
}

#include "bench.h"

enum { MAX_THREADS = 256 };

typedef struct options_s {
    uint64_t threads, slots, rounds, iterations, seconds, min, max, seed;
} options_t;

static options_t opt;
static atomic_bool stop;
static _Atomic uint64_t total_ops;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static _Noreturn void die_corrupt(const char *mode, const void *p, size_t n)
{
    fprintf(stderr, "server %s: block %p of %zu bytes corrupted\n", mode, p, n);
    exit(1);
}

/* A new block of n >= 8 bytes: its size in its first word, and past that a byte at its end. */
static void *take(size_t n)
{
    unsigned char *p = malloc(n);
    if (!p) {
        fprintf(stderr, "server: out of memory (%zu bytes)\n", n);
        exit(1);
    }
    memcpy(p, &n, sizeof n);
    if (n > sizeof n)
        p[n - 1] = (unsigned char)n;
    return p;
}

static void give(void *block, const char *mode)
{
    unsigned char *p = block;
    size_t n;
    if (!p)
        return;
    memcpy(&n, p, sizeof n);
    if (n < 8 || n > (1u << 20) || (n > sizeof n && p[n - 1] != (unsigned char)n))
        die_corrupt(mode, p, n);
    free(p);
}

/* A size in [lo, hi], uniform. */
static size_t uniform(uint64_t *rng, uint64_t lo, uint64_t hi)
{
    return (size_t)(lo + rng_next(rng) % (hi - lo + 1));
}

/* A thread's array of opt.slots block pointers, all NULL; exit status 1 without memory. */
static void **new_slots(const char *mode)
{
    void **live = calloc(opt.slots, sizeof(void *));
    if (!live) {
        fprintf(stderr, "server %s: out of memory\n", mode);
        exit(1);
    }
    return live;
}

static void start_or_die(pthread_t *t, void *(*fn)(void *), void *arg)
{
    int e = pthread_create(t, NULL, fn, arg);
    if (e) {
        fprintf(stderr, "server: cannot start a thread: %s\n", strerror(e));
        exit(3);
    }
}

// ---------------------------------------------------------------------------------------------
// larson

typedef struct larson_s {
    void **blocks;
    uint64_t rng;
    atomic_bool done; /* the chain's last thread has stopped: the blocks are main's again */
} larson_t;

static pthread_attr_t detached;

static void *larson_thread(void *arg)
{
    larson_t *st = arg;
    uint64_t ops = 0;
    for (uint64_t r = 0; r < opt.rounds; r++) {
        size_t i = (size_t)(rng_next(&st->rng) % opt.slots);
        give(st->blocks[i], "larson");
        st->blocks[i] = take(uniform(&st->rng, opt.min, opt.max));
        ops++;
    }
    atomic_fetch_add_explicit(&total_ops, ops, memory_order_relaxed);
    if (atomic_load_explicit(&stop, memory_order_acquire)) {
        atomic_store_explicit(&st->done, true, memory_order_release);
        return NULL;
    }
    /* hand the array on: a new thread goes on with it, and this one ends */
    pthread_t next;
    int e = pthread_create(&next, &detached, larson_thread, st);
    if (e) {
        fprintf(stderr, "server: cannot start a thread: %s\n", strerror(e));
        exit(3);
    }
    return NULL;
}

static void run_larson(void)
{
    static larson_t st[MAX_THREADS];
    pthread_attr_init(&detached);
    pthread_attr_setdetachstate(&detached, PTHREAD_CREATE_DETACHED);
    for (unsigned k = 0; k < opt.threads; k++) {
        st[k].blocks = calloc(opt.slots, sizeof(void *));
        if (!st[k].blocks)
            die_usage("out of memory for the slots");
        st[k].rng = opt.seed * 0x9E3779B97F4A7C15ULL + k + 1;
        for (uint64_t i = 0; i < opt.slots; i++)
            st[k].blocks[i] = take(uniform(&st[k].rng, opt.min, opt.max));
    }
    double t0 = now_s();
    for (unsigned k = 0; k < opt.threads; k++) {
        pthread_t t;
        int e = pthread_create(&t, &detached, larson_thread, &st[k]);
        if (e) {
            fprintf(stderr, "server: cannot start a thread: %s\n", strerror(e));
            exit(3);
        }
    }
    struct timespec d = {(time_t)opt.seconds, 0}, y = {0, 1000000};
    nanosleep(&d, NULL);
    atomic_store_explicit(&stop, true, memory_order_release);
    for (unsigned k = 0; k < opt.threads; k++)
        while (!atomic_load_explicit(&st[k].done, memory_order_acquire))
            nanosleep(&y, NULL);
    double t = now_s() - t0;
    uint64_t ops = atomic_load(&total_ops);
    for (unsigned k = 0; k < opt.threads; k++) {
        for (uint64_t i = 0; i < opt.slots; i++)
            give(st[k].blocks[i], "larson");
        free(st[k].blocks);
    }
    printf("ns_per_op=%.2f ops_per_sec=%.0f ops=%" PRIu64 " threads=%" PRIu64 " mode=larson\n",
           t * 1e9 / (double)ops, (double)ops / t, ops, opt.threads);
}

// ---------------------------------------------------------------------------------------------
// mstress

static _Atomic(void *) *shared; /* blocks left behind by threads of earlier rounds */
static uint64_t nshared;

typedef struct mstress_s {
    uint64_t rng;
    uint64_t ops;
} mstress_t;

static size_t mstress_size(uint64_t *rng)
{
    uint64_t r = rng_next(rng) % 100;
    if (r == 0)
        return uniform(rng, 4097, 65536);
    if (r < 13)
        return uniform(rng, 257, 4096);
    return uniform(rng, 8, 256);
}

static void *mstress_thread(void *arg)
{
    mstress_t *st = arg;
    void **live = new_slots("mstress");
    uint64_t ops = 0;
    /* take over blocks that threads of earlier rounds left */
    for (uint64_t k = 0; k < opt.slots / 4; k++) {
        uint64_t j = rng_next(&st->rng) % nshared;
        give(atomic_exchange_explicit(&shared[j], NULL, memory_order_acq_rel), "mstress");
    }
    for (uint64_t r = 0; r < opt.rounds; r++) {
        size_t i = (size_t)(rng_next(&st->rng) % opt.slots);
        give(live[i], "mstress");
        live[i] = take(mstress_size(&st->rng));
        ops++;
    }
    /* a quarter of what is live outlives the thread; the rest is freed here */
    for (uint64_t i = 0; i < opt.slots; i++) {
        if (live[i] && i % 4 == 0) {
            uint64_t j = rng_next(&st->rng) % nshared;
            give(atomic_exchange_explicit(&shared[j], live[i], memory_order_acq_rel), "mstress");
        } else {
            give(live[i], "mstress");
        }
    }
    free(live);
    st->ops = ops;
    return NULL;
}

static void run_mstress(void)
{
    nshared = opt.slots * opt.threads;
    shared = calloc(nshared, sizeof *shared);
    if (!shared)
        die_usage("out of memory for the shared table");
    pthread_t t[MAX_THREADS];
    mstress_t st[MAX_THREADS];
    uint64_t rng = opt.seed * 0x9E3779B97F4A7C15ULL + 7, ops = 0;
    double t0 = now_s();
    for (uint64_t it = 0; it < opt.iterations; it++) {
        for (unsigned k = 0; k < opt.threads; k++) {
            st[k].rng = rng_next(&rng) | 1;
            start_or_die(&t[k], mstress_thread, &st[k]);
        }
        for (unsigned k = 0; k < opt.threads; k++) {
            pthread_join(t[k], NULL);
            ops += st[k].ops;
        }
    }
    for (uint64_t j = 0; j < nshared; j++)
        give(atomic_load(&shared[j]), "mstress");
    double s = now_s() - t0;
    free(shared);
    printf("ns_per_op=%.2f ops_per_sec=%.0f ops=%" PRIu64 " threads=%" PRIu64 " mode=mstress\n",
           s * 1e9 / (double)ops, (double)ops / s, ops, opt.threads);
}

// ---------------------------------------------------------------------------------------------
// gthread

typedef struct gthread_s {
    uint64_t rng;
    uint64_t ops;
} gthread_t;

/* Sizes in MIN..MAX, smaller ones likelier (bench-malloc-thread draws from a 1/x-like spread):
 * a uniform draw in MIN..MAX, then, half the time, a second one below it. */
static size_t gthread_size(uint64_t *rng)
{
    size_t n = uniform(rng, opt.min, opt.max);
    if (rng_next(rng) & 1)
        n = uniform(rng, opt.min, n);
    return n;
}

static void *gthread_thread(void *arg)
{
    gthread_t *st = arg;
    void **live = new_slots("gthread");
    uint64_t ops = 0;
    while (!atomic_load_explicit(&stop, memory_order_relaxed)) {
        for (int b = 0; b < 256; b++) { /* look at the flag now and then */
            size_t i = (size_t)(rng_next(&st->rng) % opt.slots);
            give(live[i], "gthread");
            live[i] = take(gthread_size(&st->rng));
        }
        ops += 256;
    }
    for (uint64_t i = 0; i < opt.slots; i++)
        give(live[i], "gthread");
    free(live);
    st->ops = ops;
    return NULL;
}

static void run_gthread(void)
{
    pthread_t t[MAX_THREADS];
    gthread_t st[MAX_THREADS];
    double t0 = now_s();
    for (unsigned k = 0; k < opt.threads; k++) {
        st[k].rng = opt.seed * 0x9E3779B97F4A7C15ULL + 3 * k + 1;
        start_or_die(&t[k], gthread_thread, &st[k]);
    }
    struct timespec d = {(time_t)opt.seconds, 0};
    nanosleep(&d, NULL);
    atomic_store_explicit(&stop, true, memory_order_relaxed);
    uint64_t ops = 0;
    for (unsigned k = 0; k < opt.threads; k++) {
        pthread_join(t[k], NULL);
        ops += st[k].ops;
    }
    double s = now_s() - t0;
    printf("ns_per_op=%.2f ops_per_sec=%.0f ops=%" PRIu64 " threads=%" PRIu64 " mode=gthread\n",
           s * 1e9 / (double)ops, (double)ops / s, ops, opt.threads);
}

// ---------------------------------------------------------------------------------------------

int main(int argc, char **argv)
{
    if (argc < 2)
        die_usage("no mode");
    const char *mode = argv[1];
    bool larson = !strcmp(mode, "larson"), mstress = !strcmp(mode, "mstress"),
         gthread = !strcmp(mode, "gthread");
    if (!larson && !mstress && !gthread)
        die_usage("unknown mode");
    opt = (options_t){.threads = mstress ? 6 : 4,
                      .slots = larson ? 1000 : 500,
                      .rounds = larson ? 10000 : 2000,
                      .iterations = 400,
                      .seconds = 2,
                      .min = 8,
                      .max = gthread ? 1024 : 1000,
                      .seed = 1};
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        if (a[0] != '-' || a[1] == '\0' || a[2] != '\0' || i + 1 >= argc)
            die_usage("bad option");
        uint64_t v = parse_u64(argv[++i], "bad option value");
        switch (a[1]) {
        case 't': opt.threads = v; break;
        case 'w': opt.slots = v; break;
        case 'r': opt.rounds = v; break;
        case 'i': opt.iterations = v; break;
        case 'd': opt.seconds = v; break;
        case 'a': opt.min = v; break;
        case 'b': opt.max = v; break;
        case 's': opt.seed = v; break;
        default: die_usage("unknown option");
        }
    }
    if (opt.threads < 1 || opt.threads > MAX_THREADS)
        die_usage("-t wants 1..256 threads");
    if (opt.slots < 4 || opt.rounds < 1 || opt.iterations < 1 || opt.seconds < 1)
        die_usage("-w wants 4 or more slots; -r, -i and -d at least 1");
    if (opt.min < 8 || opt.max < opt.min || opt.max > (1u << 20))
        die_usage("sizes: 8 <= MIN <= MAX <= 1 MiB");
    if (larson)
        run_larson();
    else if (mstress)
        run_mstress();
    else
        run_gthread();
    return 0;
}
