/*
 * throughput.c - malloc/free throughput benchmark, meant to be run under LD_PRELOAD.
 *
 *   throughput single   [-n OPS] [-w SLOTS] [-a MIN -b MAX] [-s SEED]
 *   throughput multi    [-n OPS] [-w SLOTS] [-t THREADS] [-a MIN -b MAX] [-s SEED]
 *   throughput xthread  [-n OPS] [-w SLOTS] [-x CROSS_PERCENT] [-a MIN -b MAX] [-s SEED]
 *   throughput prodcons [-n OPS] [-a MIN -b MAX] [-s SEED]
 *
 * single:   one thread keeps SLOTS live blocks (default 4096) and replaces a random one per op.
 * multi:    THREADS threads (default 2) do single's loop at once, each on its own blocks: a
 *           thread-local allocator scales, one behind a lock does not. OPS are shared out.
 * xthread:  two threads each keep SLOTS live blocks (default 2048) of their own and also hand
 *           CROSS_PERCENT (default 25) of their new blocks to the other thread through a
 *           lock-free SPSC ring, so each thread frees blocks that the other allocated.
 * prodcons: one thread allocates, the other frees every block it is handed (a queue of work
 *           items): all frees are remote.
 *
 * An op is one malloc plus one free; sizes are uniform in MIN..MAX (default 16..512; -a 513
 * -b 65536 for large blocks, which tallymalloc hands to the system malloc). ns_per_op is the
 * wall time over all ops (so two threads that scale halve it). Prints one line on stdout:
 * "ns_per_op=<float> ops=<N> threads=<T>". Only the benchmarked malloc/free calls run inside the
 * timed region: no stdio, no setup allocations. Exit status 1 on a corrupted block, 2 on bad usage.
 * With THROUGHPUT_VERBOSE set, xthread also prints how many blocks crossed threads on stderr.
 */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <sched.h>
#include <stdalign.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

enum {
    BLOCK_MIN = 16,
    BLOCK_MAX = 512,
    // Power of two so the index is a mask; deep enough that a descheduled consumer on a 2-core
    // machine does not push the producer into the ring-full fallback after a few microseconds.
    RING_CAP = 4096,
    CACHE_LINE = 64,
};

_Static_assert((RING_CAP & (RING_CAP - 1)) == 0, "RING_CAP must be a power of two");
_Static_assert(BLOCK_MIN >= 9, "xthread stamps a 4-byte size, a 4-byte serial and a tag byte");

// ---------------------------------------------------------------------------------------------
// Helpers shared by both modes

static _Noreturn void die_usage(const char *msg)
{
    fprintf(stderr,
            "throughput: %s\n"
            "usage: throughput single   [-n OPS] [-w SLOTS] [-a MIN -b MAX] [-s SEED]\n"
            "       throughput multi    [-n OPS] [-w SLOTS] [-t THREADS] [-a MIN -b MAX] [-s SEED]\n"
            "       throughput xthread  [-n OPS] [-w SLOTS] [-x CROSS_PERCENT] [-a MIN -b MAX] [-s SEED]\n"
            "       throughput prodcons [-n OPS] [-a MIN -b MAX] [-s SEED]\n",
            msg);
    exit(2);
}

// The size range (-a, -b): requests are uniform in [size_lo, size_hi].
static size_t size_lo = BLOCK_MIN, size_hi = BLOCK_MAX;

#include "bench.h"

static _Noreturn void die_oom(size_t size)
{
    fprintf(stderr, "throughput: malloc(%zu) returned NULL\n", size);
    exit(1);
}

static double now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

// Uniform in [0, n) by multiply-shift of the high 32 bits: a divide would cost as much as the
// allocator's fast path and blur what we measure.
static inline uint32_t rng_below(uint64_t *state, uint32_t n)
{
    return (uint32_t)(((rng_next(state) >> 32) * n) >> 32);
}

static inline size_t rng_size(uint64_t *state)
{
    return size_lo + rng_below(state, (uint32_t)(size_hi - size_lo + 1));
}

// ---------------------------------------------------------------------------------------------
// single

static double run_single(uint64_t ops, uint32_t slots_n, uint64_t seed)
{
    // The slot array comes from the allocator under test too, but before the clock starts.
    unsigned char **slot = calloc(slots_n, sizeof *slot);
    if (slot == NULL)
        die_oom(slots_n * sizeof *slot);
    uint64_t rng = seed;

    // Prefill so every timed op is a real free+malloc pair, not a free(NULL).
    for (uint32_t i = 0; i < slots_n; i++) {
        size_t size = rng_size(&rng);
        slot[i] = malloc(size);
        if (slot[i] == NULL)
            die_oom(size);
        slot[i][0] = (unsigned char)size;
        slot[i][size - 1] = (unsigned char)i;
    }

    double t0 = now_ns();
    for (uint64_t op = 0; op < ops; op++) {
        uint32_t i = rng_below(&rng, slots_n);
        size_t size = rng_size(&rng);
        free(slot[i]);
        unsigned char *p = malloc(size);
        if (p == NULL)
            die_oom(size);
        // Touch both ends so an allocator cannot get away with handing out unbacked memory.
        p[0] = (unsigned char)op;
        p[size - 1] = (unsigned char)size;
        slot[i] = p;
    }
    double t1 = now_ns();

    for (uint32_t i = 0; i < slots_n; i++)
        free(slot[i]);
    free(slot);
    return t1 - t0;
}

// ---------------------------------------------------------------------------------------------
// xthread

// Single-producer/single-consumer ring. Each side keeps a cached copy of the other side's index so
// the shared cache line is read only when the ring looks full (producer) or empty (consumer).
struct ring {
    alignas(CACHE_LINE) _Atomic size_t tail; // next slot to write; stored only by the producer
    size_t head_cache;                       // producer's last view of head
    alignas(CACHE_LINE) _Atomic size_t head; // next slot to read; stored only by the consumer
    size_t tail_cache;                       // consumer's last view of tail
    alignas(CACHE_LINE) void *slot[RING_CAP];
};

static bool ring_push(struct ring *r, void *p)
{
    size_t t = atomic_load_explicit(&r->tail, memory_order_relaxed);
    if (t - r->head_cache == RING_CAP) {
        // Acquire pairs with the consumer's release: its read of the slot is done before reuse.
        r->head_cache = atomic_load_explicit(&r->head, memory_order_acquire);
        if (t - r->head_cache == RING_CAP)
            return false;
    }
    r->slot[t & (RING_CAP - 1)] = p;
    // Release publishes the slot and the block's pattern bytes written before the push.
    atomic_store_explicit(&r->tail, t + 1, memory_order_release);
    return true;
}

static void *ring_pop(struct ring *r)
{
    size_t h = atomic_load_explicit(&r->head, memory_order_relaxed);
    if (h == r->tail_cache) {
        r->tail_cache = atomic_load_explicit(&r->tail, memory_order_acquire);
        if (h == r->tail_cache)
            return NULL;
    }
    void *p = r->slot[h & (RING_CAP - 1)];
    atomic_store_explicit(&r->head, h + 1, memory_order_release);
    return p;
}

// Block pattern: bytes 0..3 the requested size, 4..7 a serial, last byte a tag of both. The ring
// is FIFO, so the consumer knows which serial comes next; a block handed out twice while live, or
// scribbled on by the allocator's metadata, fails the size, serial or tag check.
static inline unsigned char block_tag(uint32_t size, uint32_t serial)
{
    return (unsigned char)((size * 31u + serial) ^ 0x5Au);
}

static inline void block_stamp(unsigned char *p, uint32_t size, uint32_t serial)
{
    memcpy(p, &size, sizeof size);
    memcpy(p + 4, &serial, sizeof serial);
    p[size - 1] = block_tag(size, serial);
}

static _Noreturn void block_corrupt(int thread, const char *where, const unsigned char *p)
{
    uint32_t size, serial;
    memcpy(&size, p, sizeof size);
    memcpy(&serial, p + 4, sizeof serial);
    fprintf(stderr, "throughput: thread %d: corrupted %s block %p (size field %" PRIu32
            ", serial field %" PRIu32 ")\n", thread, where, (const void *)p, size, serial);
    exit(1);
}

// Checks a block before freeing it; expected_serial < 0 skips the serial check (local blocks).
static inline void block_check(int thread, const char *where, const unsigned char *p,
                               int64_t expected_serial)
{
    uint32_t size, serial;
    memcpy(&size, p, sizeof size);
    memcpy(&serial, p + 4, sizeof serial);
    if (size < size_lo || size > size_hi || p[size - 1] != block_tag(size, serial) ||
        (expected_serial >= 0 && serial != (uint32_t)expected_serial))
        block_corrupt(thread, where, p);
}

struct worker {
    int id;
    uint64_t ops;       // mallocs this thread does in the timed region
    uint32_t slots_n;   // size of the local working set
    uint32_t cross_pct; // share of new blocks offered to the peer
    uint64_t seed;
    struct ring *out;   // blocks we allocated, for the peer to free
    struct ring *in;    // blocks the peer allocated, for us to free
    double end_ns;      // when this thread had freed everything it was sent
    uint64_t sent, received, ring_full;
};

// Start line and finish flags, each on its own cache line so spinning on one does not slow the
// other thread's ring traffic.
static alignas(CACHE_LINE) _Atomic int start_ready;
static alignas(CACHE_LINE) _Atomic int start_go;
static struct {
    alignas(CACHE_LINE) _Atomic bool done;
} finished[2];

static struct ring rings[2];

static void *xthread_main(void *arg)
{
    struct worker *w = arg;
    uint64_t rng = w->seed;
    uint32_t next_out = 0; // serial stamped on the next block we push
    uint32_t next_in = 0;  // serial we expect on the next block we pop
    int peer = 1 - w->id;

    unsigned char **slot = calloc(w->slots_n, sizeof *slot);
    if (slot == NULL)
        die_oom(w->slots_n * sizeof *slot);
    for (uint32_t i = 0; i < w->slots_n; i++) {
        uint32_t size = (uint32_t)rng_size(&rng);
        slot[i] = malloc(size);
        if (slot[i] == NULL)
            die_oom(size);
        block_stamp(slot[i], size, UINT32_MAX);
    }

    atomic_fetch_add_explicit(&start_ready, 1, memory_order_acq_rel);
    while (!atomic_load_explicit(&start_go, memory_order_acquire))
        sched_yield();

    for (uint64_t op = 0; op < w->ops; op++) {
        // Drain before producing: up to two pops per op outpaces the peer's cross_pct pushes per
        // op, so the rings stay short whenever both threads are running.
        for (int k = 0; k < 2; k++) {
            unsigned char *q = ring_pop(w->in);
            if (q == NULL)
                break; // empty: the rest of this op is local work
            block_check(w->id, "cross-thread", q, next_in++);
            free(q);
        }

        uint32_t size = (uint32_t)rng_size(&rng);
        unsigned char *p = malloc(size);
        if (p == NULL)
            die_oom(size);
        block_stamp(p, size, next_out);

        if (rng_below(&rng, 100) < w->cross_pct) {
            if (ring_push(w->out, p)) {
                next_out++;
                continue;
            }
            // Ring full: the peer is not consuming (likely descheduled). Fall through and free
            // locally rather than spin, so the benchmark cannot deadlock.
            w->ring_full++;
        }
        uint32_t i = rng_below(&rng, w->slots_n);
        block_check(w->id, "local", slot[i], -1);
        free(slot[i]);
        slot[i] = p;
    }

    // Our pushes are complete; tell the peer, then free whatever it still sends us. The peer's
    // pushes happen before its done flag, so once we see the flag one more drain empties the ring.
    atomic_store_explicit(&finished[w->id].done, true, memory_order_release);
    for (;;) {
        bool peer_done = atomic_load_explicit(&finished[peer].done, memory_order_acquire);
        unsigned char *q;
        while ((q = ring_pop(w->in)) != NULL) {
            block_check(w->id, "cross-thread", q, next_in++);
            free(q);
        }
        if (peer_done)
            break;
        sched_yield(); // with 2 cores and other load, the peer may need ours to finish
    }
    w->end_ns = now_ns();
    w->sent = next_out;
    w->received = next_in;

    for (uint32_t i = 0; i < w->slots_n; i++)
        free(slot[i]);
    free(slot);
    return NULL;
}

static double run_xthread(uint64_t ops, uint32_t slots_n, uint32_t cross_pct, uint64_t seed)
{
    struct worker w[2];
    pthread_t tid[2];

    for (int i = 0; i < 2; i++) {
        w[i] = (struct worker){
            .id = i,
            .ops = ops / 2 + (i == 0 ? ops % 2 : 0),
            .slots_n = slots_n,
            .cross_pct = cross_pct,
            .seed = seed + UINT64_C(0x9E3779B97F4A7C15) * (uint64_t)(i + 1),
            .out = &rings[i],
            .in = &rings[1 - i],
        };
    }
    for (int i = 0; i < 2; i++) {
        int err = pthread_create(&tid[i], NULL, xthread_main, &w[i]);
        if (err != 0) {
            fprintf(stderr, "throughput: pthread_create: %s\n", strerror(err));
            exit(1);
        }
    }

    // Start the clock only after both threads have built their working sets.
    while (atomic_load_explicit(&start_ready, memory_order_acquire) < 2)
        sched_yield();
    double t0 = now_ns();
    atomic_store_explicit(&start_go, 1, memory_order_release);

    for (int i = 0; i < 2; i++)
        pthread_join(tid[i], NULL);

    double t1 = w[0].end_ns > w[1].end_ns ? w[0].end_ns : w[1].end_ns;
    if (w[0].sent != w[1].received || w[1].sent != w[0].received) {
        fprintf(stderr, "throughput: lost blocks: sent %" PRIu64 "/%" PRIu64
                ", received %" PRIu64 "/%" PRIu64 "\n",
                w[0].sent, w[1].sent, w[1].received, w[0].received);
        exit(1);
    }
    // How many blocks really crossed: a full ring turns a planned cross-thread free into a local
    // one, so an allocator that stalls a thread gets fewer remote frees than -x asked for.
    if (getenv("THROUGHPUT_VERBOSE") != NULL)
        fprintf(stderr, "throughput: cross_blocks=%" PRIu64 " ring_full=%" PRIu64 "\n",
                w[0].sent + w[1].sent, w[0].ring_full + w[1].ring_full);
    return t1 - t0;
}

// ---------------------------------------------------------------------------------------------
// multi: single's loop on several threads at once

struct multi_arg {
    uint64_t ops, seed;
    uint32_t slots_n;
    double ns;
};

static _Atomic int multi_ready, multi_go;

static void *multi_main(void *arg)
{
    struct multi_arg *a = arg;
    atomic_fetch_add_explicit(&multi_ready, 1, memory_order_acq_rel);
    while (!atomic_load_explicit(&multi_go, memory_order_acquire))
        sched_yield();
    a->ns = run_single(a->ops, a->slots_n, a->seed);
    return NULL;
}

static double run_multi(uint64_t ops, uint32_t slots_n, uint32_t threads, uint64_t seed)
{
    struct multi_arg a[64];
    pthread_t tid[64];
    for (uint32_t i = 0; i < threads; i++) {
        a[i] = (struct multi_arg){.ops = ops / threads + (i == 0 ? ops % threads : 0),
                                  .seed = seed + UINT64_C(0x9E3779B97F4A7C15) * (i + 1),
                                  .slots_n = slots_n};
        int err = pthread_create(&tid[i], NULL, multi_main, &a[i]);
        if (err != 0) {
            fprintf(stderr, "throughput: pthread_create: %s\n", strerror(err));
            exit(1);
        }
    }
    while (atomic_load_explicit(&multi_ready, memory_order_acquire) < (int)threads)
        sched_yield();
    double t0 = now_ns();
    atomic_store_explicit(&multi_go, 1, memory_order_release);
    for (uint32_t i = 0; i < threads; i++)
        pthread_join(tid[i], NULL);
    return now_ns() - t0; /* includes each thread's final frees: all of it is allocator work */
}

// ---------------------------------------------------------------------------------------------
// prodcons: every block freed by the thread that did not allocate it

struct prodcons_arg {
    uint64_t ops, seed;
    double end_ns;
};

static void *consumer_main(void *arg)
{
    struct prodcons_arg *a = arg;
    for (uint64_t got = 0; got < a->ops;) {
        unsigned char *q = ring_pop(&rings[0]);
        if (q == NULL) {
            sched_yield(); /* two cores, perhaps other load: let the producer run */
            continue;
        }
        block_check(1, "consumed", q, (int64_t)(uint32_t)got);
        free(q);
        got++;
    }
    a->end_ns = now_ns();
    return NULL;
}

static double run_prodcons(uint64_t ops, uint64_t seed)
{
    struct prodcons_arg a = {.ops = ops, .seed = seed};
    pthread_t tid;
    double t0 = now_ns();
    int err = pthread_create(&tid, NULL, consumer_main, &a);
    if (err != 0) {
        fprintf(stderr, "throughput: pthread_create: %s\n", strerror(err));
        exit(1);
    }
    uint64_t rng = seed;
    for (uint64_t i = 0; i < ops; i++) {
        uint32_t size = (uint32_t)rng_size(&rng);
        unsigned char *p = malloc(size);
        if (p == NULL)
            die_oom(size);
        block_stamp(p, size, (uint32_t)i);
        while (!ring_push(&rings[0], p))
            sched_yield(); /* full: never free here, every free is the consumer's */
    }
    pthread_join(tid, NULL);
    return a.end_ns - t0;
}

// ---------------------------------------------------------------------------------------------

int main(int argc, char **argv)
{
    if (argc < 2)
        die_usage("missing MODE");
    const char *mode = argv[1];
    bool xthread = strcmp(mode, "xthread") == 0, multi = strcmp(mode, "multi") == 0,
         prodcons = strcmp(mode, "prodcons") == 0;
    if (!xthread && !multi && !prodcons && strcmp(mode, "single") != 0)
        die_usage("MODE must be single, multi, xthread or prodcons");

    uint64_t ops = xthread || prodcons ? 10000000 : 20000000;
    uint64_t slots_n = xthread ? 2048 : 4096;
    uint64_t cross_pct = 25, threads = 2, lo = BLOCK_MIN, hi = BLOCK_MAX;
    uint64_t seed = 0x2545F4914F6CDD1Dull;

    // Skip MODE so getopt sees only the options.
    optind = 2;
    int c;
    while ((c = getopt(argc, argv, "n:w:x:s:t:a:b:")) != -1) {
        switch (c) {
        case 't': threads = parse_u64(optarg, "-t wants a number of threads"); break;
        case 'a': lo = parse_u64(optarg, "-a wants a size in bytes"); break;
        case 'b': hi = parse_u64(optarg, "-b wants a size in bytes"); break;
        case 'n': ops = parse_u64(optarg, "-n wants a positive integer"); break;
        case 'w': slots_n = parse_u64(optarg, "-w wants a positive integer"); break;
        case 'x': cross_pct = parse_u64(optarg, "-x wants a percentage 0..100"); break;
        case 's': seed = parse_u64(optarg, "-s wants an integer"); break;
        default: die_usage("unknown option");
        }
    }
    if (optind != argc)
        die_usage("unexpected argument");
    if (ops == 0 || slots_n == 0 || slots_n > UINT32_MAX)
        die_usage("-n and -w must be positive (and -w below 2^32)");
    if (cross_pct > 100)
        die_usage("-x wants a percentage 0..100");
    if (threads == 0 || threads > 64)
        die_usage("-t wants 1..64 threads");
    if (lo < BLOCK_MIN || hi < lo || hi > (UINT64_C(1) << 30))
        die_usage("-a and -b want 16 <= MIN <= MAX <= 2^30");
    size_lo = (size_t)lo;
    size_hi = (size_t)hi;
    if (seed == 0)
        seed = 1; // xorshift's one fixed point

    double ns = xthread    ? run_xthread(ops, (uint32_t)slots_n, (uint32_t)cross_pct, seed)
                : multi    ? run_multi(ops, (uint32_t)slots_n, (uint32_t)threads, seed)
                : prodcons ? run_prodcons(ops, seed)
                           : run_single(ops, (uint32_t)slots_n, seed);
    int nthreads = xthread || prodcons ? 2 : multi ? (int)threads : 1;
    printf("ns_per_op=%.3f ops=%" PRIu64 " threads=%d\n", ns / (double)ops, ops, nthreads);
    return 0;
}
