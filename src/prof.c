/* prof.c: the call-site profiler's recording side (see prof.h for what is kept and why).
 * alloc.c calls prof_alloc when a heap's byte counter runs out (every allocation in `all` mode,
 * one per ~TALLY_SAMPLE bytes in `sample` mode), prof_free_small when a freed block's pool has a
 * side table, and prof_free_large while the large-block table holds anything. Stacks come from
 * libunwind's unw_backtrace, loaded with dlopen(RTLD_LOCAL) so that it never takes over the
 * program's C++ exception unwinding or backtrace() (see BRIEF.md, libunwind side effects).
 *
 * Recursion: the unwinder may allocate (dynamic TLS on a thread's first unwind), and so may
 * dlopen at start; a thread-local flag makes those allocations untracked. Locks: site_lock
 * (interning), the large table's shard locks, tab_lock (side tables), tl_lock (timeline); none
 * is held while taking another (but by fork and the leak check, which take them all in one
 * order), none is held across a call into the unwinder, and tab_lock is the only one taken
 * under a heap lock. */
#include "prof.h"

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <link.h>
#include <sched.h>
#include <sys/single_threaded.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

prof_state_t prof;

static pthread_mutex_t site_lock = PTHREAD_MUTEX_INITIALIZER;
/* The large-block table, in shards by address, each with its own lock: in `all` mode every
 * large block of every thread goes through it, and one lock for all had the threads of a server
 * queue on it (futex calls a quarter of the time of larson with 4 threads). A lock is held for a
 * probe or two: a waiter spins a while before it sleeps in the kernel (glibc's adaptive mutex),
 * which spared two threads sampling at once 450 futex calls in 0.1 s. */
#define LTAB_LOCK_INIT PTHREAD_ADAPTIVE_MUTEX_INITIALIZER_NP
#define LTAB_SHARDS 16
typedef struct ltab_shard_s {
    _Alignas(64) pthread_mutex_t lock;
    lent_t *tab; /* cap entries; read and written only under the lock */
    size_t cap, used, tomb, live;
    lent_t *spare; /* see ltab_rehash_locked */
    size_t spare_cap;
} ltab_shard_t;
static ltab_shard_t ltab_shards[LTAB_SHARDS] = {
#define LTAB_SHARD_INIT {.lock = LTAB_LOCK_INIT}
    LTAB_SHARD_INIT, LTAB_SHARD_INIT, LTAB_SHARD_INIT, LTAB_SHARD_INIT,
    LTAB_SHARD_INIT, LTAB_SHARD_INIT, LTAB_SHARD_INIT, LTAB_SHARD_INIT,
    LTAB_SHARD_INIT, LTAB_SHARD_INIT, LTAB_SHARD_INIT, LTAB_SHARD_INIT,
    LTAB_SHARD_INIT, LTAB_SHARD_INIT, LTAB_SHARD_INIT, LTAB_SHARD_INIT,
};
static __thread int tls_ltab_held TLS_IE; /* this thread holds a shard's lock */
static __thread int tls_own TLS_IE;       /* in prof_enter: the library's own calls (dlopen...) */
__thread void *prof_inflight[2] TLS_IE;

/* The flag covers the lock and unlock calls themselves: a signal handler that comes in while
 * either runs must not wait for the lock either. */
static void ltab_acquire(ltab_shard_t *sh) {
    tls_ltab_held++;
    atomic_signal_fence(memory_order_seq_cst);
    lib_lock(&sh->lock);
}

static void ltab_release(ltab_shard_t *sh) {
    lib_unlock(&sh->lock);
    atomic_signal_fence(memory_order_seq_cst);
    tls_ltab_held--;
    sig_fatal_poll();
}

/* Every shard, in order (the leak check, fork, the dump's walk). */
static void ltab_acquire_all(void) {
    for (unsigned i = 0; i < LTAB_SHARDS; i++)
        ltab_acquire(&ltab_shards[i]);
}

static void ltab_release_all(void) {
    for (unsigned i = LTAB_SHARDS; i-- > 0;)
        ltab_release(&ltab_shards[i]);
}
static pthread_mutex_t tab_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_mutex_t tl_lock = PTHREAD_MUTEX_INITIALIZER;

static bool need_helper_check; /* a forked child: start its dump thread at the next record */
static __thread int tls_in_prof TLS_IE;
static __thread unsigned tls_tl_countdown TLS_IE;

static int (*unw_bt)(void **, int);
static int (*unw_flush)(void *, uintptr_t, uintptr_t);
static void **unw_local_as;

/* Global stack table: open addressing over site ids (0 = empty), under site_lock. */
static uint32_t *stab;
static size_t stab_cap;
/* Frames of interned stacks, append-only. */
static uintptr_t *frame_arena;
static size_t frame_left;

/* ---- small math without libm (the library links only libc) ---------------------------------- */
static double prof_ln(double x) { /* x > 0 */
    int e = 0;
    while (x >= 2.0) {
        x *= 0.5;
        e++;
    }
    while (x < 1.0) {
        x *= 2.0;
        e--;
    }
    /* ln(m) = 2 atanh((m-1)/(m+1)), m in [1,2): s < 1/3, so 8 terms give ~1e-11 */
    double s = (x - 1.0) / (x + 1.0), s2 = s * s, term = s, sum = 0.0;
    for (int k = 1; k <= 15; k += 2) {
        sum += term / k;
        term *= s2;
    }
    return 2.0 * sum + e * 0.69314718055994530942;
}

static double prof_exp_neg(double x) { /* e^-x, x >= 0 */
    if (x > 700.0)
        return 0.0;
    int k = (int)(x / 0.69314718055994530942);
    double r = x - k * 0.69314718055994530942; /* [0, ln 2) */
    double term = 1.0, sum = 1.0;
    for (int i = 1; i <= 18; i++) {
        term *= -r / i;
        sum += term;
    }
    while (k-- > 0)
        sum *= 0.5;
    return sum;
}

uint64_t prof_now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

uint64_t prof_rss_bytes(void) {
    int fd = open("/proc/self/statm", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    char buf[128];
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0)
        return 0;
    buf[n] = '\0';
    const char *s = buf;
    while (*s && *s != ' ')
        s++;
    uint64_t pages = 0;
    for (s++; *s >= '0' && *s <= '9'; s++)
        pages = pages * 10 + (uint64_t)(*s - '0');
    return pages * (uint64_t)sysconf(_SC_PAGESIZE);
}

/* ---- sampling -------------------------------------------------------------------------------- */
static uint64_t rng_next(heap_t *h) {
    uint64_t x = h->rng; /* xorshift64* */
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    h->rng = x;
    return x * 0x2545F4914F6CDD1DULL;
}

/* Bytes until the next sample: exponential with mean R (a Poisson process over bytes). */
static int64_t draw_interval(heap_t *h) {
    double u = ((double)(rng_next(h) >> 11) + 1.0) / 9007199254740992.0; /* (0, 1] */
    double v = -prof_ln(u) * (double)prof.rate;
    if (v > 9.0e18)
        v = 9.0e18;
    return (int64_t)v + 1;
}

/* reset_counter's cases other than a started all mode */
static noinline void reset_counter_slow(heap_t *h) {
    if (!prof.started) /* all mode tags pool blocks even before the start (adopt_early) */
        h->sample_left = opt.profile == PROFILE_ALL ? 0 : INT64_MAX;
    else if (prof.mode == PROFILE_OFF)
        h->sample_left = INT64_MAX;
    else
        h->sample_left = draw_interval(h);
}

/* The next sample's distance, drawn anew; all mode's, 0, without a call. */
static inline __attribute__((always_inline)) void reset_counter(heap_t *h) {
    if (likely(prof.started && prof.mode == PROFILE_ALL))
        h->sample_left = 0;
    else
        reset_counter_slow(h);
}

void prof_heap_init(heap_t *h) {
    if (h->rng == 0)
        h->rng = ((uint64_t)(uintptr_t)h * 0x9E3779B97F4A7C15ULL) ^ prof_now_ns() ^ 1;
    reset_counter(h);
}

/* Weights of one recorded allocation of n requested bytes (prof.h), and in sample mode the
 * variance it adds to a count and to a bytes figure. */
typedef struct weights_s {
    uint64_t count, bytes;
    double inv_p;
    double var_count, var_bytes;
} weights_t;

static inline weights_t weights_of(uint64_t n) {
    weights_t w;
    if (likely(prof.mode == PROFILE_ALL)) {
        w.count = 1;
        w.bytes = n;
        w.inv_p = 1.0;
        w.var_count = w.var_bytes = 0;
        return w;
    }
    double x = (double)(n ? n : 1) / (double)prof.rate;
    double p = x < 1e-3 ? x * (1.0 - x * 0.5 + x * x / 6.0) : 1.0 - prof_exp_neg(x);
    w.inv_p = 1.0 / p;
    w.count = (uint64_t)(PROF_COUNT_SCALE * w.inv_p + 0.5);
    w.bytes = (uint64_t)((double)n * w.inv_p + 0.5);
    w.var_count = (1.0 - p) * w.inv_p * w.inv_p;
    w.var_bytes = w.var_count * (double)n * (double)n;
    return w;
}

double prof_inv_p(uint64_t n) {
    return weights_of(n).inv_p;
}

/* Allocations made so far, for lifetimes: exact in `all` mode. In `sample` mode a clock that
 * every thread adds its own new allocations to at its sampled events (one atomic add, on a line
 * of its own): exact in a single-threaded program; in a threaded one, behind by what the other
 * threads allocated since their last sample (a lifetime is an estimate there), and never going
 * back. Each thread's count is its heap's (32 bin counters and the large one, its own lines).
 * Reading every other heap's count instead was 8% of a 200-thread server's time, and reading
 * a word each heap published was still 2%: a cache miss per thread per sampled event. */
static struct {
    _Alignas(64) _Atomic uint64_t n; /* the struct's size is the line's */
} sample_clock;

static uint64_t heap_count(const heap_t *h) {
    uint64_t n = h->stats.nlarge;
    for (unsigned c = 0; c < NCLASSES; c++)
        n += h->bin[c].nmalloc;
    return n;
}

static noinline uint64_t stamp_now_sampled(void) {
    heap_t *self = tls_heap;
    if (self->kind == HEAP_REAL) {
        uint64_t n = heap_count(self), add = n - self->nalloc_pub;
        self->nalloc_pub = n;
        if (add)
            return atomic_fetch_add_explicit(&sample_clock.n, add, memory_order_relaxed) + add;
    }
    return atomic_load_explicit(&sample_clock.n, memory_order_relaxed);
}

static inline uint64_t stamp_now(void) {
    if (prof.mode == PROFILE_ALL)
        return atomic_load_explicit(&prof.seq, memory_order_relaxed);
    return stamp_now_sampled();
}

static unsigned log2_bucket(uint64_t v) {
    unsigned b = v ? 63u - (unsigned)__builtin_clzll(v) : 0;
    return b < PROF_NHIST ? b : PROF_NHIST - 1;
}

static unsigned life_bucket(uint64_t life) {
    unsigned b = life ? 64u - (unsigned)__builtin_clzll(life) : 0;
    return b < PROF_NHIST ? b : PROF_NHIST - 1;
}

/* ---- the timeline ---------------------------------------------------------------------------- */
/* Into top[0..*n) (at most PROF_TL_TOP, largest key first): site id if its key is among the
 * largest. */
static void top_put(tsite_t *top, int64_t *key, unsigned *n, uint32_t id, int64_t k) {
    if (k <= 0 || (*n == PROF_TL_TOP && k <= key[*n - 1]))
        return;
    unsigned i = *n < PROF_TL_TOP ? (*n)++ : PROF_TL_TOP - 1;
    for (; i > 0 && key[i - 1] < k; i--) {
        top[i] = top[i - 1];
        key[i] = key[i - 1];
    }
    top[i].id = id;
    key[i] = k;
}

/* A detailed point: the sites that hold the most now and those that allocated the most since
 * the last detailed point (massif's detailed snapshot, with the second list so that a time range
 * can say what was allocated in it). One read of every site's first line: the next detailed
 * point waits PROF_TL_BUDGET times as long as this took, so the scans cost at most 1% of the
 * time whatever the number of sites. */
static void timeline_sites_locked(tpoint_t *t, uint64_t now) {
    uint32_t n = atomic_load_explicit(&prof.nsites, memory_order_acquire);
    tsite_t live[PROF_TL_TOP], fresh[PROF_TL_TOP];
    int64_t klive[PROF_TL_TOP], kfresh[PROF_TL_TOP];
    unsigned nl = 0, nf = 0;
    for (uint32_t id = 1; id < n; id++) {
        const site_t *s = prof_site(id);
        /* a cache miss per site: the lines ahead are asked for, so that the misses overlap */
        if (id + PROF_TL_AHEAD < n)
            __builtin_prefetch(prof_site(id + PROF_TL_AHEAD));
        uint64_t a = __atomic_load_n(&s->alloc_bytes, __ATOMIC_RELAXED);
        if (a == 0)
            continue;
        top_put(live, klive, &nl, id, site_live_bytes(s));
        if (prof.tl_mark) {
            top_put(fresh, kfresh, &nf, id, (int64_t)(a - prof.tl_mark[id]));
            prof.tl_mark[id] = a;
        }
    }
    unsigned k = 0;
    for (unsigned i = 0; i < nl; i++)
        t->sites[k++].id = live[i].id;
    for (unsigned i = 0; i < nf; i++) {
        bool dup = false;
        for (unsigned j = 0; j < nl && !dup; j++)
            dup = live[j].id == fresh[i].id;
        if (!dup)
            t->sites[k++].id = fresh[i].id;
    }
    for (unsigned i = 0; i < k; i++) {
        const site_t *s = prof_site(t->sites[i].id);
        t->sites[i].live_bytes = site_live_bytes(s);
        t->sites[i].alloc_bytes = __atomic_load_n(&s->alloc_bytes, __ATOMIC_RELAXED);
    }
    t->nsites = k;
    uint64_t took = prof_now_ns() - now;
    prof.tl_detail_ns = now + took * PROF_TL_BUDGET;
}

static void timeline_point_locked(uint64_t now, bool detailed) {
    if (prof.ntimeline == PROF_TIMELINE_MAX) {
        /* Full: keep every other point and sample half as often. */
        for (unsigned i = 0; i < PROF_TIMELINE_MAX / 2; i++)
            prof.timeline[i] = prof.timeline[2 * i + 1];
        prof.ntimeline = PROF_TIMELINE_MAX / 2;
        prof.tl_interval_ns *= 2;
    }
    tpoint_t *t = &prof.timeline[prof.ntimeline++];
    t->t_ns = now - prof.t0_ns;
    t->live_bytes = atomic_load_explicit(&prof.live_bytes, memory_order_relaxed);
    t->alloc_bytes = prof_alloc_bytes_total();
    t->alloc_count = prof_alloc_count_total();
    t->rss_bytes = prof_rss_bytes();
    t->nsites = 0;
    if (detailed || now >= prof.tl_detail_ns)
        timeline_sites_locked(t, now);
    prof.tl_last_ns = now;
}

/* A point now, detailed: the dump's. */
void prof_timeline_point(void) {
    if (!prof.timeline)
        return;
    lib_lock(&tl_lock);
    timeline_point_locked(prof_now_ns(), true);
    lib_unlock(&tl_lock);
}

static void timeline_maybe(void) {
    /* In `all` mode look at the clock every 256 events, not on each. */
    if (prof.mode == PROFILE_ALL && tls_tl_countdown-- != 0)
        return;
    tls_tl_countdown = 255;
    uint64_t now = prof_now_ns();
    if (now - __atomic_load_n(&prof.tl_last_ns, __ATOMIC_RELAXED) < prof.tl_interval_ns)
        return;
    if (lib_trylock(&tl_lock) != 0)
        return;
    if (now - prof.tl_last_ns >= prof.tl_interval_ns)
        timeline_point_locked(now, false);
    lib_unlock(&tl_lock);
}

/* ---- stacks ---------------------------------------------------------------------------------- */
typedef struct stack_s {
    const uintptr_t *f; /* innermost first */
    unsigned n;
    uint32_t gen;         /* prof.gen when it was taken: part of its identity */
    bool truncated;       /* cut at TALLY_DEPTH: the stack went on */
    /* stack_sums_t with the length and generation: 128 bits that are the site's hashes before
     * stack_fmix (a bijection), so the per-thread cache compares them unfinished */
    uint64_t key, key2;
    /* A CPython thread's stack: n is the merged stack's length, f[0..native) its native
     * frames, py its runs of Python frames; the merged frames are written out only when they
     * are needed (stack_frames) */
    const py_merge_t *py;
    unsigned native;
    bool memoable; /* the walker's stack, its Python merge (if it ran) traced: unwind_memo_store */
    bool merged;   /* the Python merge ran */
    uintptr_t buf[PROF_MAX_DEPTH + 1 + UNW_OWN_FRAMES];
} stack_t;

uint64_t prof_pow_ba[PROF_MAX_DEPTH + 1], prof_pow_bb[PROF_MAX_DEPTH + 1]; /* B^k */

/* The sums of frames f[0..k): from the walker's suffix sums (sums[k] is the rest of its stack,
 * zero where it ends), else computed. */
static inline stack_sums_t window_sums(const uintptr_t *f, const stack_sums_t *sums, unsigned k) {
    if (!sums)
        return stack_sums(f, k);
    uint64_t a = prof_pow_ba[k] * sums[k].a, b = prof_pow_bb[k] * sums[k].b;
    __asm__("" : "+r"(a), "+r"(b)); /* two scalar multiplies, not an SSE2 emulation of them */
    return (stack_sums_t){sums[0].a - a, sums[0].b - b};
}

/* How many of libunwind's innermost frames are ours (record, and the malloc path where it is
 * not a tail call). */
static int own_frames(const uintptr_t *fr, int n) {
    int i = 0;
    while (i < n && fr[i] >= prof.self_lo && fr[i] < prof.self_hi)
        i++;
    return i;
}
static inline __attribute__((always_inline)) void stack_finish(stack_t *st, stack_sums_t s);
static _Atomic uint64_t unwind_checked, unwind_mismatch, memo_mismatch;

/* TALLY_UNWIND=check: the same stack from libunwind, compared frame by frame (and the hash
 * with one computed from scratch). */
static noinline void check_against_libunwind(const stack_t *st) {
    void *buf[PROF_MAX_DEPTH + UNW_OWN_FRAMES];
    if (!prof.have_unwinder)
        return;
    int n = unw_bt(buf, (int)prof.depth + UNW_OWN_FRAMES), i = own_frames((uintptr_t *)buf, n);
    unsigned k = (unsigned)(n - i) < prof.depth ? (unsigned)(n - i) : prof.depth;
    bool same = k == st->n;
    for (unsigned j = 0; same && j < k; j++)
        same = (uintptr_t)buf[i + j] == st->f[j];
    stack_t again = *st;
    stack_finish(&again, stack_sums(st->f, st->n));
    same = same && again.key == st->key && again.key2 == st->key2;
    atomic_fetch_add_explicit(&unwind_checked, 1, memory_order_relaxed);
    if (!same && atomic_fetch_add_explicit(&unwind_mismatch, 1, memory_order_relaxed) < 4 &&
        opt.verbose) {
        char line[64];
        fmt_t f;
        fmt_init(&f, line, sizeof line, -1);
        fmt_str(&f, "frames ");
        fmt_u64(&f, st->n);
        fmt_str(&f, " vs ");
        fmt_u64(&f, k);
        fmt_char(&f, '\0');
        tally_message("unwind check: the fast walker and libunwind disagree: ", line, NULL);
    }
}

void prof_unwind_checked(uint64_t *checked, uint64_t *mismatch) {
    *checked = atomic_load_explicit(&unwind_checked, memory_order_relaxed);
    *mismatch = atomic_load_explicit(&unwind_mismatch, memory_order_relaxed) +
                atomic_load_explicit(&memo_mismatch, memory_order_relaxed);
}

static inline __attribute__((always_inline)) void stack_finish(stack_t *st, stack_sums_t s) {
    st->gen = atomic_load_explicit(&prof.gen, memory_order_relaxed);
    st->key = s.a ^ st->n ^ (uint64_t)st->gen << 32;
    st->key2 = s.b + st->n + (uint64_t)st->gen * 0x9E3779B97F4A7C15ULL;
}

/* A CPython thread: the eval loop's frames replaced by the Python frames they run.
 * The merged stack's hash is not computed anew over its 30-odd frames (a serial chain of
 * multiplies): it is the native stack's, each replaced frame's term traded for its run's,
 * itself a sum of independent products (prof_pow_r*, summed by the walk in python.c). The hash is still a function of the merged
 * stack alone: a run sits where its eval frame was, and the native frames keep their places. */
uint64_t prof_pow_ra[PROF_MAX_DEPTH + 1], prof_pow_rb[PROF_MAX_DEPTH + 1];
#define RUN_HASH_BA 0x9FB21C651E98DF25ULL
#define RUN_HASH_BB 0xC6A4A7935BD1E995ULL

static inline __attribute__((always_inline)) void
capture_python(heap_t *h, stack_t *st, const stack_sums_t *sums, stack_sums_t *sum,
               const unw_sps_t *spi) {
    /* the frames' stack pointers, and the CFA beyond the last frame kept (0: not known) */
    const uintptr_t *sps = sums ? spi->sp : NULL;
    uintptr_t top = !sums ? 0 : st->n < spi->avail ? spi->sp[st->n] : spi->end;
    const py_merge_t *pm;
    int m = python_merge(h, st->f, sps, top, st->n, prof.depth, &pm);
    if (m <= 0)
        return;
    stack_sums_t s = *sum;
    unsigned kc = pm->kcut;
    if (kc < st->n) /* the merged stack ends before the native window did */
        s = window_sums(st->f, sums, kc);
    s.a += pm->delta.a; /* each eval frame's term traded for its run's */
    s.b += pm->delta.b;
    st->py = pm;
    st->native = kc;
    st->n = (unsigned)m;
    st->truncated = st->truncated || pm->cut;
    *sum = s;
}

/* The stack's frames, the merged ones written out into tmp (PROF_MAX_DEPTH words) if it is a
 * CPython thread's. */
static const uintptr_t *stack_frames(const stack_t *st, uintptr_t *tmp) {
    if (!st->py)
        return st->f;
    python_materialize(st->py, st->f, st->native, st->n, tmp);
    return tmp;
}

/* The calling thread's stack into *st; false when the stack memo knew it (mq->payload). */
static inline __attribute__((always_inline)) bool capture(heap_t *h, stack_t *st, void *caller,
                                                          unw_memo_q_t *mq) {
    const uintptr_t *fr = NULL;
    const stack_sums_t *sums = NULL;
    unw_sps_t spi = {NULL, 0, 0};
    int n = -1, i = 0;
    st->memoable = st->merged = false;
    /* one frame more than kept: if it is there, the stack is marked cut */
    if (opt.unwind != UNWIND_LIBUNWIND) {
        n = unwind_stack(h, prof.depth + 1, prof.self_lo, prof.self_hi, &fr, &sums, &spi, mq);
        if (n == UNWIND_MEMO_HIT)
            return false;
        st->memoable = n >= 0;
    }
    if (n < 0 && prof.have_unwinder) {
        n = unw_bt((void **)st->buf, (int)prof.depth + 1 + UNW_OWN_FRAMES);
        fr = st->buf;
        sums = NULL;
        i = own_frames(fr, n);
    }
    if (i >= n) {
        st->buf[0] = (uintptr_t)caller;
        st->f = st->buf;
        st->n = 1;
        st->py = NULL;
        st->truncated = false;
        st->memoable = false;
        stack_finish(st, stack_sums(st->f, 1));
        return true;
    }
    unsigned k = (unsigned)(n - i) < prof.depth ? (unsigned)(n - i) : prof.depth;
    st->truncated = (unsigned)(n - i) > prof.depth;
    stack_sums_t sum = window_sums(fr + i, sums, k);
    st->f = fr + i;
    st->n = k;
    st->py = NULL;
    if (unlikely(opt.unwind == UNWIND_CHECK) && sums) {
        stack_finish(st, sum);
        check_against_libunwind(st);
    }
    if (unlikely(__atomic_load_n(&python_active, __ATOMIC_RELAXED))) {
        capture_python(h, st, sums, &sum, &spi);
        st->merged = true;
    }
    stack_finish(st, sum);
    return true;
}

static bool frames_equal(const site_t *s, const uintptr_t *f, unsigned n) {
    if (s->nframes != n)
        return false;
    const uintptr_t *g = s->frames;
    uintptr_t diff = 0;
    for (unsigned i = 0; i < n; i++) /* stacks are short: no call to memcmp */
        diff |= g[i] ^ f[i];
    return diff == 0;
}

static site_t *site_slot_locked(uint32_t id) {
    unsigned c = id / PROF_SITES_PER_CHUNK;
    if (!prof.chunks[c]) {
        prof.chunks[c] = os_map(PROF_SITES_PER_CHUNK * sizeof(site_t));
        if (!prof.chunks[c])
            return NULL;
    }
    return prof_site(id);
}

static bool stab_grow_locked(void) {
    size_t cap = stab_cap ? stab_cap * 2 : 4096;
    uint32_t *t = os_map(cap * sizeof *t);
    if (!t)
        return false;
    for (size_t i = 0; i < stab_cap; i++) {
        uint32_t id = stab[i];
        if (!id)
            continue;
        size_t j = prof_site(id)->hash & (cap - 1);
        while (t[j])
            j = (j + 1) & (cap - 1);
        t[j] = id;
    }
    if (stab)
        os_unmap(stab, stab_cap * sizeof *stab);
    stab = t;
    stab_cap = cap;
    return true;
}

static const uintptr_t *frames_store_locked(const uintptr_t *f, unsigned n) {
    if (frame_left < n) {
        size_t words = (size_t)1 << 17; /* 1 MiB */
        frame_arena = os_map(words * sizeof(uintptr_t));
        if (!frame_arena) {
            frame_left = 0;
            return NULL;
        }
        frame_left = words;
    }
    uintptr_t *dst = frame_arena;
    memcpy(dst, f, n * sizeof *f);
    frame_arena += n;
    frame_left -= n;
    return dst;
}

static uint32_t intern_locked(const stack_t *st, const uintptr_t *f) {
    if (!stab && !stab_grow_locked())
        return PROF_SITE_OVERFLOW;
    uint64_t hash = stack_fmix(st->key);
    size_t j = hash & (stab_cap - 1);
    for (uint32_t id; (id = stab[j]) != 0; j = (j + 1) & (stab_cap - 1)) {
        site_t *s = prof_site(id);
        if (s->hash == hash && s->gen == st->gen && frames_equal(s, f, st->n))
            return id;
    }
    uint32_t id = atomic_load_explicit(&prof.nsites, memory_order_relaxed);
    if (id >= PROF_SITES_PER_CHUNK * PROF_MAX_CHUNKS)
        return PROF_SITE_OVERFLOW;
    site_t *s = site_slot_locked(id);
    const uintptr_t *stored = s ? frames_store_locked(f, st->n) : NULL;
    if (!stored)
        return PROF_SITE_OVERFLOW;
    s->hash = hash;
    s->gen = st->gen;
    s->nframes = st->n;
    s->truncated = st->truncated;
    s->frames = stored;
    atomic_store_explicit(&prof.nsites, id + 1, memory_order_release);
    stab[j] = id;
    if ((size_t)(id + 1) * 2 > stab_cap)
        stab_grow_locked();
    return id;
}

/* A stack the thread's cache of stacks does not hold: its site from the global table, which
 * compares frames (written out first for a merged Python stack), then cached. */
static noinline uint32_t intern_miss(heap_t *h, const stack_t *st, unsigned slot) {
    uint32_t id;
    uintptr_t tmp[PROF_MAX_DEPTH];
    const uintptr_t *f = stack_frames(st, tmp);
    lib_lock(&site_lock);
    id = intern_locked(st, f);
    lib_unlock(&site_lock);
    if (id != PROF_SITE_OVERFLOW) { /* the site's stack: its keys are this one's */
        h->scache[slot].key = st->key;
        h->scache[slot].key2 = st->key2;
        h->scache[slot].id = id;
    }
    return id;
}

/* The stack's site: from the thread's cache of stacks when it holds it, which it nearly always
 * does, without a call. The cache trusts 128 bits of hash (the keys, unfinished); two different
 * stacks share both with a chance of about 2^-128 per pair. */
static inline __attribute__((always_inline)) uint32_t intern(heap_t *h, const stack_t *st) {
    unsigned slot = (unsigned)((st->key * 0x9E3779B97F4A7C15ULL) >> 40) & (PROF_SCACHE - 1);
    uint32_t id = h->scache[slot].id;
    if (likely(id && h->scache[slot].key == st->key && h->scache[slot].key2 == st->key2))
        return id;
    return intern_miss(h, st, slot);
}

/* The site of the calling thread's stack: the stack memo's answer when it knows the stack,
 * else the stack's, walked and interned, then remembered. TALLY_UNWIND=check walks every
 * stack and counts the memo's answers that differ (none should). */
static inline __attribute__((always_inline)) uint32_t capture_site(heap_t *h, void *caller) {
    stack_t st;
    unw_memo_q_t mq;
    mq.gen = atomic_load_explicit(&prof.gen, memory_order_relaxed);
    mq.check = opt.unwind == UNWIND_CHECK;
    mq.hit = false;
    if (!capture(h, &st, caller, &mq))
        return (uint32_t)mq.payload;
    uint32_t id = intern(h, &st);
    if (st.memoable && id != PROF_SITE_OVERFLOW) {
        if (unlikely(mq.check) && mq.hit && (uint32_t)mq.payload != id &&
            atomic_fetch_add_explicit(&memo_mismatch, 1, memory_order_relaxed) < 4 &&
            opt.verbose)
            tally_message("unwind check: the stack memo's site is not the walked stack's", "",
                          NULL);
        unwind_memo_store(h, id | (uint64_t)st.gen << 32, st.merged);
    }
    return id;
}

/* ---- per-site counters ------------------------------------------------------------------------
 * While the process has one thread (glibc's __libc_single_threaded), the site lock and the
 * global counters need no atomic instruction. The flag cannot turn false while this thread is
 * in here: only this thread could create another, and signal handlers stay out (tls_in_prof).
 * pthread_create then publishes what we wrote. It turns true again only in a fork child, whose
 * handler releases every site lock. */
static inline bool alone(void) {
    return __libc_single_threaded;
}

/* The site's lock is held for a few dozen instructions, but its holder can lose its CPU in
 * them: with more threads than CPUs, spinning until it comes back took whole time slices from
 * every thread that wanted the same site (27% of a 200-thread server's time on 2 CPUs). So a
 * waiter spins briefly, then yields its CPU (sched_yield: a system call, no lock, no memory). */
static noinline void site_wait(site_t *s) {
    for (unsigned spins = 0;; spins++) {
        if (!atomic_load_explicit(&s->lock, memory_order_relaxed) &&
            !atomic_exchange_explicit(&s->lock, 1, memory_order_acquire))
            return;
        if (spins < 64)
            __builtin_ia32_pause();
        else
            sched_yield();
    }
}

static inline void site_enter(site_t *s) {
    if (alone())
        return;
    if (unlikely(atomic_exchange_explicit(&s->lock, 1, memory_order_acquire)))
        site_wait(s);
}

static inline void site_leave(site_t *s, bool locked) {
    if (locked)
        atomic_store_explicit(&s->lock, 0, memory_order_release);
}

static inline int64_t counter_add(_Atomic int64_t *c, int64_t d) {
    if (alone()) {
        int64_t v = atomic_load_explicit(c, memory_order_relaxed) + d;
        atomic_store_explicit(c, v, memory_order_relaxed);
        return v;
    }
    return atomic_fetch_add_explicit(c, d, memory_order_relaxed) + d;
}

/* Under the site's lock. */
static inline void site_touch(site_t *s) {
    uint64_t e = atomic_load_explicit(&prof.peak_epoch, memory_order_relaxed);
    if (s->peak_epoch != e) {
        s->peak_live_bytes = (int64_t)(s->alloc_bytes - s->free_bytes);
        s->var_peak_bytes = s->var_live_bytes;
        s->peak_epoch = e;
    }
}

static bool peak_is_now(const site_t *s) { /* not touched since the last peak */
    return __atomic_load_n(&s->peak_epoch, __ATOMIC_RELAXED) !=
           atomic_load_explicit(&prof.peak_epoch, memory_order_relaxed);
}

int64_t prof_site_peak_live(const site_t *s) {
    return peak_is_now(s) ? site_live_bytes(s)
                          : __atomic_load_n(&s->peak_live_bytes, __ATOMIC_RELAXED);
}

double prof_site_peak_var(const site_t *s) {
    return peak_is_now(s) ? s->var_live_bytes : s->var_peak_bytes;
}

static inline __attribute__((always_inline)) void record_alloc(heap_t *h, site_t *s, uint64_t n,
                                                              weights_t w, uint64_t granted) {
    bool locked = !alone();
    site_enter(s);
    site_touch(s);
    s->alloc_count += w.count;
    s->alloc_bytes += w.bytes;
    s->granted_bytes += prof.mode == PROFILE_ALL ? granted
                                                 : (uint64_t)((double)granted * w.inv_p + 0.5);
    if (prof.mode != PROFILE_ALL) {
        s->samples++; /* in all mode, alloc_count */
        s->var_alloc_count += w.var_count;
        s->var_alloc_bytes += w.var_bytes;
        s->var_live_count += w.var_count;
        s->var_live_bytes += w.var_bytes;
    }
    int64_t live = (int64_t)(s->alloc_bytes - s->free_bytes);
    if (live > s->max_live_bytes)
        s->max_live_bytes = live;
    s->size_hist[log2_bucket(n)] += w.count;
    site_leave(s, locked);
    h->prof_alloc_bytes += w.bytes;
    h->prof_alloc_count += w.count;
    int64_t now = counter_add(&prof.live_bytes, (int64_t)w.bytes);
    int64_t pk = atomic_load_explicit(&prof.peak_bytes, memory_order_relaxed);
    if (now > pk && alone()) {
        atomic_store_explicit(&prof.peak_bytes, now, memory_order_relaxed);
        atomic_store_explicit(&prof.peak_epoch,
                              atomic_load_explicit(&prof.peak_epoch, memory_order_relaxed) + 1,
                              memory_order_relaxed);
        return;
    }
    while (now > pk) {
        if (atomic_compare_exchange_weak_explicit(&prof.peak_bytes, &pk, now,
                                                  memory_order_relaxed, memory_order_relaxed)) {
            atomic_fetch_add_explicit(&prof.peak_epoch, 1, memory_order_relaxed);
            break;
        }
    }
}

/* A free (sign 1), or its undoing (sign -1: a realloc that failed after crediting it). */
static inline __attribute__((always_inline)) void credit_free(site_t *s, weights_t w,
                                                             uint64_t lifetime, int sign) {
    bool locked = !alone();
    uint64_t count = sign > 0 ? w.count : -w.count, bytes = sign > 0 ? w.bytes : -w.bytes;
    site_enter(s);
    site_touch(s);
    s->free_count += count;
    s->free_bytes += bytes;
    s->life_hist[life_bucket(lifetime)] += count;
    if (lifetime == 0)
        s->temporary += count;
    if (prof.mode != PROFILE_ALL) {
        s->var_live_count -= sign * w.var_count;
        s->var_live_bytes -= sign * w.var_bytes;
        if (lifetime == 0)
            s->var_temporary += sign * w.var_count;
    }
    site_leave(s, locked);
    counter_add(&prof.live_bytes, -(int64_t)bytes);
}

static void sum_alloc_bytes(heap_t *h, void *arg) {
    *(uint64_t *)arg += h->prof_alloc_bytes;
}

static void sum_alloc_count(heap_t *h, void *arg) {
    *(uint64_t *)arg += h->prof_alloc_count;
}

uint64_t prof_alloc_count_total(void) {
    uint64_t sum = 0;
    heap_foreach_unlocked(sum_alloc_count, &sum);
    return sum;
}

uint64_t prof_alloc_bytes_total(void) {
    uint64_t sum = 0;
    heap_foreach_unlocked(sum_alloc_bytes, &sum);
    return sum;
}

/* ---- side tables of pools ---------------------------------------------------------------------- */
static ptag_t *tab_free[NCLASSES]; /* recycled tables per class, linked through their first word */
static char *tab_chunk;
static size_t tab_left;

static ptag_t *table_get_locked(unsigned c) {
    ptag_t *t = tab_free[c];
    if (t) {
        tab_free[c] = *(ptag_t **)t;
        *(ptag_t **)t = NULL; /* the link we kept in it */
        return t;
    }
    size_t sz = POOL_CAPACITY(c) * sizeof(ptag_t);
    if (tab_left < sz) {
        tab_chunk = os_map((size_t)1 << 20);
        if (!tab_chunk) {
            tab_left = 0;
            return NULL;
        }
        tab_left = (size_t)1 << 20;
    }
    t = (ptag_t *)tab_chunk;
    tab_chunk += sz;
    tab_left -= sz;
    return t;
}

static void table_put_locked(ptag_t *t, unsigned c) {
    /* Every entry is 0 again: each tracked block's free cleared its own. */
    *(ptag_t **)t = tab_free[c];
    tab_free[c] = t;
}

void prof_pool_init(pool_t *p, unsigned c) {
    ptag_t *old = atomic_load_explicit(&p->prof, memory_order_relaxed);
    bool want = prof.started && prof.mode == PROFILE_ALL;
    if (old && want && p->szidx == c)
        return; /* the same class again: keep its table */
    if (!old && !want)
        return;
    lib_lock(&tab_lock);
    if (old)
        table_put_locked(old, p->szidx);
    atomic_store_explicit(&p->prof, want ? table_get_locked(c) : NULL, memory_order_release);
    lib_unlock(&tab_lock);
}

void prof_pool_release(pool_t *p) {
    ptag_t *old = atomic_load_explicit(&p->prof, memory_order_relaxed);
    if (!old)
        return;
    lib_lock(&tab_lock);
    table_put_locked(old, p->szidx);
    atomic_store_explicit(&p->prof, NULL, memory_order_release);
    lib_unlock(&tab_lock);
}

/* all mode: entries change without a lock; only the block's owner of the moment writes its
 * entry, and the table lives as long as the pool serves its class. */
/* all mode: a pool set up before the profiler started gets its table at its first tracked
 * block; it keeps it for as long as it serves this class. */
static ptag_t *table_install(pool_t *p) {
    lib_lock(&tab_lock);
    ptag_t *t = atomic_load_explicit(&p->prof, memory_order_relaxed);
    if (!t) {
        t = table_get_locked(p->szidx);
        atomic_store_explicit(&p->prof, t, memory_order_release);
    }
    lib_unlock(&tab_lock);
    return t;
}

/* Takes the tag of ptr out of its pool's table; false if the block is not tracked. */
static inline __attribute__((always_inline)) bool untag_block(pool_t *p, void *ptr,
                                                              ptag_t *out) {
    ptag_t *t = atomic_load_explicit(&p->prof, memory_order_acquire);
    if (!t)
        return false;
    unsigned i = block_index(p, ptr);
    *out = t[i];
    t[i] = (ptag_t){0, 0};
    if (unlikely(out->sw & PTAG_WATCH))
        python_code_freed((uintptr_t)ptr, p->bsize);
    return out->sw != 0;
}

/* ---- the large-block table ---------------------------------------------------------------------- */
static inline size_t ltab_hash(uintptr_t a) {
    a ^= a >> 33;
    a *= 0xff51afd7ed558ccdULL;
    a ^= a >> 33;
    return (size_t)a;
}

/* Without the lock, free asks a counting filter (a counter per hash of the address, never
 * unmapped), not the table: the table itself is read and written only under the lock, so a
 * rehash can unmap the old one and the table stays proportional to what is live (old tables
 * were kept for lock-free readers; a program that replaced 1,000 large blocks 5 million times
 * grew from 4 to 170 MB). Counters saturate and then stay (a free there just takes the lock). */
#define LTAB_FILTER_BITS 16
#define LTAB_MIN 64
static _Atomic uint16_t *ltab_filter;

static inline size_t filter_slot(uintptr_t a) {
    return ltab_hash(a) >> (64 - LTAB_FILTER_BITS);
}

/* The filter serves all mode, where every free asks about its block. In sample mode the table
 * holds marked blocks alone, and only a marked block is asked about (alloc.c): no filter, and
 * none of its 128 KiB. */
static inline bool ltab_filtered(void) {
    return prof.mode != PROFILE_SAMPLE;
}

static void filter_add(uintptr_t a, int d) {
    if (!ltab_filtered())
        return;
    _Atomic uint16_t *c = &ltab_filter[filter_slot(a)];
    uint16_t v = atomic_load_explicit(c, memory_order_relaxed);
    if (v != UINT16_MAX) /* saturated: stays */
        atomic_store_explicit(c, (uint16_t)(v + d), memory_order_release);
}

static inline ltab_shard_t *ltab_shard(uintptr_t a) {
    return &ltab_shards[ltab_hash(a) >> 60]; /* the top bits; a slot is from the low ones */
}

/* A shard's table is rehashed into one of about 4 entries per live one (at least LTAB_MIN), and
 * the old one freed: only holders of the lock read it. A small table that a rehash of its own
 * size replaced is kept (zeroed at its next use) for the next such rehash: one that only clears
 * deleted entries happens every few dozen inserts when few blocks are live (sample mode), and
 * unmapping each old table cost every other CPU of a threaded program a TLB shootdown (2 threads:
 * 140 munmaps in 0.1 s). */
#define LTAB_SPARE_MAX 4096 /* entries: 128 KiB */
#define LTAB_KEEP 1024      /* entries: 32 KiB, a table this small is kept at its size */
/* Whether a shard's table is to shrink: above LTAB_KEEP entries, with under a sixteenth live. */
static inline bool ltab_too_big(const ltab_shard_t *sh) {
    return sh->cap > LTAB_KEEP && sh->live * 16 < sh->cap;
}

static bool ltab_rehash_locked(ltab_shard_t *sh) {
    size_t cap = LTAB_MIN;
    while (cap < 4 * (sh->live + 1))
        cap *= 2;
    /* A table shrinks only when under a sixteenth of it is live (ltab_remove), and never below
     * LTAB_KEEP entries, not whenever a rehash that clears deleted entries finds fewer live than
     * a quarter: a shard's live count in sample mode swings by half its mean, and across such a
     * boundary every other rehash halved the table and the next doubled it, an mmap and an
     * munmap each time (500 pairs in 500,000 replacements of 513 B-64 KiB blocks). */
    if (cap < sh->cap && !ltab_too_big(sh))
        cap = sh->cap;
    lent_t *t;
    if (sh->spare && sh->spare_cap == cap) {
        t = sh->spare;
        sh->spare = NULL;
        memset(t, 0, cap * sizeof *t);
    } else if (!(t = os_map(cap * sizeof *t))) {
        return false;
    }
    lent_t *old = sh->tab;
    for (size_t i = 0; i < sh->cap; i++) {
        lent_t *e = &old[i];
        if (e->addr <= 1)
            continue;
        size_t j = ltab_hash(e->addr) & (cap - 1);
        while (t[j].addr)
            j = (j + 1) & (cap - 1);
        t[j] = *e;
    }
    if (old && sh->cap == cap && cap <= LTAB_SPARE_MAX && !sh->spare) {
        sh->spare = old;
        sh->spare_cap = cap;
    } else if (old) {
        os_unmap(old, sh->cap * sizeof *old);
    }
    if (sh->spare && sh->spare_cap != cap) { /* the table changed size: the spare is no use */
        os_unmap(sh->spare, sh->spare_cap * sizeof *sh->spare);
        sh->spare = NULL;
    }
    sh->tab = t;
    sh->used -= sh->tomb;
    sh->tomb = 0;
    sh->cap = cap;
    return true;
}

static lent_t *ltab_find_locked(ltab_shard_t *sh, uintptr_t a) {
    lent_t *t = sh->tab;
    if (!t)
        return NULL;
    for (size_t j = ltab_hash(a) & (sh->cap - 1);; j = (j + 1) & (sh->cap - 1)) {
        lent_t *e = &t[j];
        if (e->addr == a)
            return e;
        if (e->addr == 0)
            return NULL;
    }
}

/* Without the lock: could a be in the table? A block being freed was inserted (its counter
 * raised) before the program could hand it to free. */
static bool ltab_maybe_has(uintptr_t a) {
    if (!ltab_filtered())
        return true;
    _Atomic uint16_t *f = atomic_load_explicit(&ltab_filter, memory_order_acquire);
    return f && atomic_load_explicit(&f[filter_slot(a)], memory_order_acquire) != 0;
}

static void ltab_insert(uintptr_t a, uint64_t size, uint64_t stamp, uint32_t site, uint8_t cls) {
    ltab_shard_t *sh = ltab_shard(a);
    uintptr_t hidden = prof_hide((void *)a); /* across the lock: prof_hide */
    if (!atomic_load_explicit(&ltab_filter, memory_order_acquire) && ltab_filtered()) {
        _Atomic uint16_t *f = os_map(((size_t)1 << LTAB_FILTER_BITS) * sizeof *f), *none = NULL;
        if (!f)
            return;
        if (!atomic_compare_exchange_strong_explicit(&ltab_filter, &none, f, memory_order_acq_rel,
                                                     memory_order_acquire))
            os_unmap(f, ((size_t)1 << LTAB_FILTER_BITS) * sizeof *f); /* another thread's won */
    }
    ltab_acquire(sh);
    a = (uintptr_t)prof_reveal(hidden);
    lent_t *e = ltab_find_locked(sh, a);
    if (!e) {
        if ((sh->used + 1) * 2 > sh->cap && !ltab_rehash_locked(sh)) {
            ltab_release(sh);
            return;
        }
        size_t j = ltab_hash(a) & (sh->cap - 1);
        while (sh->tab[j].addr > 1)
            j = (j + 1) & (sh->cap - 1);
        e = &sh->tab[j];
        if (e->addr == 0)
            sh->used++;
        else
            sh->tomb--;
        sh->live++;
        filter_add(a, 1);
        atomic_fetch_add_explicit(&prof.ltab_live, 1, memory_order_relaxed);
    }
    e->size = size;
    e->stamp = stamp;
    e->site = site;
    e->cls = cls;
    e->watch = 0;
    __atomic_store_n(&e->addr, a, __ATOMIC_RELEASE);
    ltab_release(sh);
}

/* out->addr comes back hidden (prof_hide): the callers keep it on their stacks. */
static bool ltab_remove(uintptr_t a, lent_t *out) {
    if (!ltab_maybe_has(a))
        return false;
    ltab_shard_t *sh = ltab_shard(a);
    uintptr_t hidden = prof_hide((void *)a);
    ltab_acquire(sh);
    lent_t *e = ltab_find_locked(sh, (uintptr_t)prof_reveal(hidden));
    bool found = e != NULL;
    if (found) {
        *out = *e;
        out->addr = hidden;
        filter_add(e->addr, -1);
        __atomic_store_n(&e->addr, 1, __ATOMIC_RELAXED);
        sh->tomb++;
        sh->live--;
        atomic_fetch_sub_explicit(&prof.ltab_live, 1, memory_order_relaxed);
        if (ltab_too_big(sh))
            ltab_rehash_locked(sh); /* shrink with what is live */
    }
    ltab_release(sh);
    return found;
}

/* fn on each entry of one shard; under its lock. */
static void shard_foreach_locked(const ltab_shard_t *sh, void (*fn)(const lent_t *, void *),
                                 void *arg) {
    for (size_t i = 0; i < sh->cap; i++)
        if (sh->tab[i].addr > 1)
            fn(&sh->tab[i], arg);
}

/* Under every shard's lock (prof_ltab_lock). */
void prof_ltab_foreach_locked(void (*fn)(const lent_t *, void *), void *arg) {
    for (unsigned k = 0; k < LTAB_SHARDS; k++)
        shard_foreach_locked(&ltab_shards[k], fn, arg);
}

/* Shard by shard, each under its lock. */
void prof_ltab_foreach(void (*fn)(const lent_t *, void *), void *arg) {
    for (unsigned k = 0; k < LTAB_SHARDS; k++) {
        ltab_acquire(&ltab_shards[k]);
        shard_foreach_locked(&ltab_shards[k], fn, arg);
        ltab_release(&ltab_shards[k]);
    }
}

void prof_ltab_lock(void) {
    ltab_acquire_all();
}

void prof_ltab_unlock(void) {
    ltab_release_all();
}

/* ---- the start-up's dead stack (init.c) ------------------------------------------------------
 * Zeroes the n bytes below its own return address (n a multiple of 8). Nothing there is live: a
 * signal handler that comes in meanwhile puts its frame there and is gone before the next
 * store. */
__asm__(".text\n"
        ".globl prof_stack_scrub\n"
        ".hidden prof_stack_scrub\n"
        ".type prof_stack_scrub, @function\n"
        "prof_stack_scrub:\n"
        ".cfi_startproc\n"
        "    mov %rdi, %rcx\n"
        "    mov %rsp, %rdi\n"
        "    sub %rcx, %rdi\n"
        "    shr $3, %rcx\n"
        "    xor %eax, %eax\n"
        "    rep stosq\n"
        "    ret\n"
        ".cfi_endproc\n"
        ".size prof_stack_scrub, .-prof_stack_scrub\n");

/* ---- the hooks ---------------------------------------------------------------------------------- */
bool prof_promotes_now(heap_t *h) {
    return prof.started && prof.mode == PROFILE_SAMPLE && !tls_in_prof && !h->in_slow;
}

static void *record(heap_t *h, void *ptr, size_t n, void *caller, uint8_t cls);
static void early_tag(void *ptr, size_t n);

void *prof_alloc(heap_t *h, void *ptr, size_t n, void *caller) {
    return record(h, ptr, n, caller, LENT_LARGE);
}

void *prof_alloc_promoted(heap_t *h, void *ptr, size_t n, void *caller) {
    return record(h, ptr, n, caller, (uint8_t)size_class(n));
}

static void *record(heap_t *h, void *ptr, size_t n, void *caller, uint8_t cls) {
    if (unlikely(!prof.started) && opt.profile == PROFILE_ALL && !tls_in_prof && ptr &&
        h->kind == HEAP_REAL && !h->in_slow && ptr_is_ours(ptr))
        early_tag(ptr, n); /* before the start: adopted by prof_start */
    if (!prof.started || tls_in_prof || tls_ltab_held || ptr == NULL || h->kind != HEAP_REAL ||
        h->in_slow || (prof.mode == PROFILE_SAMPLE && ptr_is_ours(ptr))) {
        /* Not started, or re-entered from the unwinder or from a signal handler that
         * interrupted us, a heap slow path (which may hold tab_lock) or the large table's lock
         * (it would wait for it forever), or a pool block in sample mode (sampled small
         * requests are promoted, see prof.h): untracked. */
        if (h->kind == HEAP_REAL && !tls_in_prof)
            reset_counter(h);
        /* The library's own glibc blocks (the dynamic loader's records of what it dlopens for
         * us sit in its list of the program's) go in the table under site 0, uncounted: the
         * leak check scans them as roots (pool blocks it finds by their missing tags). */
        if (tls_own && !tls_ltab_held && ptr && cls == LENT_LARGE && !ptr_is_ours(ptr) &&
            opt.profile == PROFILE_ALL && h->kind == HEAP_REAL && !h->in_slow)
            ltab_insert((uintptr_t)ptr, n, 0, 0, LENT_LARGE);
        return ptr;
    }
    tls_in_prof = 1;
    int saved = errno;
    /* From here on the block's address is hidden (prof_hide): what follows goes deep. */
    pool_t *p = ptr_is_ours(ptr) ? pool_of(ptr) : NULL;
    unsigned idx = p ? block_index(p, ptr) : 0;
    uintptr_t hidden = prof_hold(ptr, 0);
    reset_counter(h);
    uint32_t id = capture_site(h, caller);
    weights_t w = weights_of(n);
    uint64_t stamp = prof.mode == PROFILE_ALL
                         ? (uint64_t)counter_add((_Atomic int64_t *)&prof.seq, 1)
                         : stamp_now();
    uint64_t granted;
    if (p) {
        granted = p->bsize;
        ptag_t tag = ptag_make(id, (uint32_t)(p->bsize - n), stamp);
        ptag_t *t = atomic_load_explicit(&p->prof, memory_order_acquire);
        if (t || (t = table_install(p)) != NULL)
            t[idx] = tag;
    } else if (cls != LENT_LARGE) {
        granted = CLASS_SIZE(cls); /* what the pool would have granted */
        ltab_insert((uintptr_t)prof_reveal(hidden), n, stamp, id, cls);
    } else {
        granted = large_usable_size(prof_reveal(hidden));
        ltab_insert((uintptr_t)prof_reveal(hidden), n, stamp, id, LENT_LARGE);
    }
    record_alloc(h, prof_site(id), n, w, granted);
    timeline_maybe();
    if (unlikely(need_helper_check)) {
        need_helper_check = false;
        prof_dump_helper_check(); /* a forked child starts its own dump thread */
    }
    errno = saved;
    tls_in_prof = 0;
    sig_fatal_poll();
    return prof_release(hidden, 0);
}

/* May this thread credit a free now? Not from inside the profiler's own recording: a signal
 * handler that interrupted it may be waiting for a site's lock it holds. Inside the library's own
 * calls (prof_enter: a dump, the dynamic loader working for us) it may, and must: the block is
 * the program's, freed on its behalf. */
static inline bool may_credit(void) {
    return tls_in_prof == tls_own;
}


/* Takes ptr's tag out of its pool's table and credits the free; false (nothing done) if the
 * block is not tracked. *out keeps what prof_small_put_back needs. */
static inline __attribute__((always_inline)) bool small_take(pool_t *p, void *ptr,
                                                             prof_taken_t *out) {
    if (!untag_block(p, ptr, &out->tag) || !prof.started)
        return false; /* untracked, or tagged before the start: nothing was counted yet */
    /* Re-entered from a signal handler that interrupted the profiler: the entry is cleared,
     * the free is not credited. */
    if (!may_credit())
        return false;
    tls_in_prof++;
    uint64_t n = p->bsize - ptag_slack(out->tag);
    out->life = (uint32_t)(stamp_now() - out->tag.stamp);
    credit_free(prof_site(ptag_site(out->tag)), weights_of(n), out->life, 1);
    tls_in_prof--;
    sig_fatal_poll();
    return true;
}

bool prof_small_take(pool_t *p, void *ptr, prof_taken_t *out) {
    return small_take(p, ptr, out);
}

/* realloc could not move the block after all: its tag and its counters are as they were. */
void prof_small_put_back(pool_t *p, void *ptr, const prof_taken_t *t) {
    tls_in_prof++;
    uint64_t n = p->bsize - ptag_slack(t->tag);
    credit_free(prof_site(ptag_site(t->tag)), weights_of(n), t->life, -1);
    ptag_t *tab = atomic_load_explicit(&p->prof, memory_order_acquire);
    tab[block_index(p, ptr)] = t->tag;
    tls_in_prof--;
    sig_fatal_poll();
}

bool prof_small_peek(pool_t *p, const void *ptr, uint32_t *site, uint64_t *size) {
    ptag_t *t = atomic_load_explicit(&p->prof, memory_order_acquire);
    if (!t)
        return false;
    ptag_t tag = t[block_index(p, ptr)];
    if (!tag.sw)
        return false;
    *site = ptag_site(tag);
    *size = p->bsize - ptag_slack(tag);
    return true;
}

void prof_pool_blocks_foreach(void (*fn)(uint32_t site, uintptr_t addr, uint64_t size, void *arg),
                              void *arg) {
    uintptr_t end = __atomic_load_n(&g.next_pool, __ATOMIC_ACQUIRE), off = pool_data_offset();
    for (uintptr_t a = g.base; a + POOL_SIZE <= end; a += POOL_SIZE) {
        pool_t *p = (pool_t *)a;
        const ptag_t *t = atomic_load_explicit(&p->prof, memory_order_acquire);
        uint8_t st = __atomic_load_n(&p->state, __ATOMIC_RELAXED);
        if (!t || (st != POOL_OWNED && st != POOL_FULL && st != POOL_UNOWNED))
            continue;
        uint32_t bsize = p->bsize, carved = __atomic_load_n(&p->carved, __ATOMIC_RELAXED);
        for (uint32_t j = 0; j < carved; j++) {
            ptag_t tag = t[j];
            if (tag.sw && ptag_slack(tag) <= bsize)
                fn(ptag_site(tag), a + POOL_HEADER + (uintptr_t)j * bsize + off,
                   bsize - ptag_slack(tag), arg);
        }
    }
}

void prof_free_small(pool_t *p, void *ptr) {
    prof_taken_t t;
    small_take(p, ptr, &t);
}

void prof_large_freed(const lent_t *e) {
    if (e->site == 0)
        return; /* the library's own: never counted */
    tls_in_prof++;
    credit_free(prof_site(e->site), weights_of(e->size), stamp_now() - e->stamp, 1);
    tls_in_prof--;
    sig_fatal_poll();
}

bool prof_large_take(void *ptr, lent_t *out) {
    if (!may_credit() || tls_ltab_held)
        return false; /* a handler interrupted us while we may hold a shard's lock or a site's */
    if (!ltab_remove((uintptr_t)ptr, out))
        return false;
    if (unlikely(out->watch))
        python_code_freed((uintptr_t)ptr, out->size);
    return true;
}

bool prof_watch_code(uintptr_t addr) {
    if (prof.mode != PROFILE_ALL)
        return false;
    if (ptr_is_ours((void *)addr)) {
        pool_t *p = pool_of((void *)addr);
        ptag_t *t = atomic_load_explicit(&p->prof, memory_order_acquire);
        if (!t || addr < (uintptr_t)p + POOL_HEADER)
            return false;
        unsigned i = block_index(p, (void *)addr);
        if (i >= p->carved || !t[i].sw)
            return false;
        __atomic_fetch_or(&t[i].sw, PTAG_WATCH, __ATOMIC_RELAXED);
        return true;
    }
    bool found = false;
    for (int k = 0; k < 2 && !found; k++) { /* the object, or after a 16-byte header */
        uintptr_t a = addr - 16 * (uintptr_t)k;
        ltab_shard_t *sh = ltab_shard(a);
        ltab_acquire(sh);
        lent_t *e = ltab_find_locked(sh, a);
        if (e)
            found = (e->watch = 1) != 0;
        ltab_release(sh);
    }
    return found;
}

bool prof_large_peek(void *ptr, lent_t *out) {
    if (tls_ltab_held || atomic_load_explicit(&prof.ltab_live, memory_order_relaxed) == 0)
        return false;
    ltab_shard_t *sh = ltab_shard((uintptr_t)ptr);
    ltab_acquire(sh);
    lent_t *e = ltab_find_locked(sh, (uintptr_t)ptr);
    if (e)
        *out = *e;
    ltab_release(sh);
    return e != NULL;
}

/* A stack for TALLY_CHECK's reports (the free of a block, the call that found an error),
 * interned as an allocation's is, with nothing counted. */
uint32_t prof_site_here(heap_t *h, void *caller) {
    if (!prof.started || tls_in_prof || tls_ltab_held || h->kind != HEAP_REAL || h->in_slow)
        return 0;
    tls_in_prof = 1;
    int saved = errno;
    stack_t st;
    capture(h, &st, caller, NULL);
    uint32_t id = intern(h, &st);
    errno = saved;
    tls_in_prof = 0;
    sig_fatal_poll();
    return id;
}

void prof_large_put_back(const lent_t *e) {
    ltab_insert((uintptr_t)prof_reveal(e->addr), e->size, e->stamp, e->site, e->cls);
}

void prof_free_large(void *ptr) {
    lent_t e;
    if (prof_large_take(ptr, &e))
        prof_large_freed(&e);
}

/* ---- start, fork, locks ---------------------------------------------------------------------- */
void prof_load_range(const struct dl_phdr_info *info, uintptr_t *lo, uintptr_t *hi) {
    *lo = UINTPTR_MAX;
    *hi = 0;
    for (int i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        if (ph->p_type != PT_LOAD)
            continue;
        uintptr_t a = info->dlpi_addr + ph->p_vaddr;
        *lo = a < *lo ? a : *lo;
        *hi = a + ph->p_memsz > *hi ? a + ph->p_memsz : *hi;
    }
}

static int find_self(struct dl_phdr_info *info, size_t size, void *arg) {
    (void)size;
    uintptr_t me = (uintptr_t)arg, lo, hi;
    prof_load_range(info, &lo, &hi);
    if (me >= lo && me < hi) {
        prof.self_lo = lo;
        prof.self_hi = hi;
        return 1;
    }
    return 0;
}

/* ---- adopting the blocks of before the start (all mode) ----------------------------------------
 * The constructors of the libraries initialized before ours allocate before the profiler starts.
 * Their blocks are adopted under PROF_SITE_EARLY (no stack): a leak check must know them, or a
 * registry made then would hide what it later points to. Pool blocks are tagged as they are
 * allocated (early_tag, with their requested size); large ones were noted by alloc.c. */
static void early_tag(void *ptr, size_t n) {
    pool_t *p = pool_of(ptr);
    ptag_t *t = atomic_load_explicit(&p->prof, memory_order_acquire);
    if (t || (t = table_install(p)) != NULL)
        t[block_index(p, ptr)] = ptag_make(PROF_SITE_EARLY, (uint32_t)(p->bsize - n), 0);
}

static void adopt_one(heap_t *h, uint64_t n, uint64_t granted) {
    record_alloc(h, prof_site(PROF_SITE_EARLY), n, weights_of(n), granted);
}

static void adopt_large(void *p, size_t n, void *arg) {
    ltab_insert((uintptr_t)p, n, (uint64_t)counter_add((_Atomic int64_t *)&prof.seq, 1),
                PROF_SITE_EARLY, LENT_LARGE);
    adopt_one(arg, n, large_usable_size(p));
}

static void adopt_early(void) {
    heap_t *h = tls_heap;
    alloc_early_take(adopt_large, h);
    uint64_t npools = (g.next_pool - g.base) / POOL_SIZE;
    for (uint64_t i = 0; i < npools; i++) {
        pool_t *p = (pool_t *)(g.base + i * POOL_SIZE);
        ptag_t *t = atomic_load_explicit(&p->prof, memory_order_acquire);
        if (!t || (p->state != POOL_OWNED && p->state != POOL_FULL && p->state != POOL_UNOWNED))
            continue;
        for (unsigned j = 0; j < p->carved; j++) {
            if (ptag_site(t[j]) != PROF_SITE_EARLY)
                continue;
            uint64_t stamp = (uint64_t)counter_add((_Atomic int64_t *)&prof.seq, 1);
            uint32_t slack = ptag_slack(t[j]);
            t[j].stamp = (uint32_t)stamp;
            adopt_one(h, p->bsize - slack, p->bsize);
        }
    }
}

static void heap_reset_counter(heap_t *h, void *arg) {
    (void)arg;
    if (h->kind == HEAP_REAL)
        prof_heap_init(h);
}

void prof_start(void) {
    if (opt.profile == PROFILE_OFF || prof.started || !g.reserve)
        return;
    tls_in_prof = 1; /* dlopen below allocates: untracked */
    tls_own = 1;
    prof.mode = opt.profile;
    prof.rate = opt.sample ? opt.sample : 1;
    prof.depth = opt.depth ? opt.depth : 32;
    prof_pow_ba[0] = prof_pow_bb[0] = prof_pow_ra[0] = prof_pow_rb[0] = 1;
    for (unsigned d = 1; d <= PROF_MAX_DEPTH; d++) {
        prof_pow_ba[d] = prof_pow_ba[d - 1] * STACK_HASH_BA;
        prof_pow_bb[d] = prof_pow_bb[d - 1] * STACK_HASH_BB;
        prof_pow_ra[d] = prof_pow_ra[d - 1] * RUN_HASH_BA;
        prof_pow_rb[d] = prof_pow_rb[d - 1] * RUN_HASH_BB;
    }
    prof.count_scale = prof.mode == PROFILE_ALL ? 1 : PROF_COUNT_SCALE;
    /* Site 0: untracked blocks; site 1: stacks beyond the table's capacity; in all mode, site 2:
     * the blocks live at the start, adopted first (before anything below allocates). */
    lib_lock(&site_lock);
    site_slot_locked(0);
    for (uint32_t id = 0; id <= PROF_SITE_EARLY; id++)
        prof.chunks[0][id].frames = (const uintptr_t *)"";
    atomic_store(&prof.nsites, prof.mode == PROFILE_ALL ? PROF_SITE_EARLY + 1 : 2);
    lib_unlock(&site_lock);
    if (prof.mode == PROFILE_ALL && prof.chunks[0])
        adopt_early();
    unwind_iterate_phdr(find_self, (void *)(uintptr_t)&prof_start);
    unwind_init();
    void *lib = init_dlopen_own("libunwind.so.8");
    if (lib) {
        unw_bt = (int (*)(void **, int))dlsym(lib, "unw_backtrace");
        /* unw_flush_cache and unw_local_addr_space, by their exported names */
        unw_flush = (int (*)(void *, uintptr_t, uintptr_t))dlsym(lib, "_Ux86_64_flush_cache");
        unw_local_as = (void **)dlsym(lib, "_ULx86_64_local_addr_space");
    }
    prof.have_unwinder = unw_bt != NULL;
    python_init();
    if (!prof.have_unwinder && opt.verbose && opt.unwind == UNWIND_LIBUNWIND)
        tally_message("libunwind.so.8 not found (Debian package libunwind8): call sites are "
                      "the immediate callers only", NULL, NULL);
    struct timespec rt;
    clock_gettime(CLOCK_REALTIME, &rt);
    prof.t0_real_ns = (uint64_t)rt.tv_sec * 1000000000u + (uint64_t)rt.tv_nsec;
    prof.t0_ns = prof_now_ns();
    prof.timeline = os_map(PROF_TIMELINE_MAX * sizeof(tpoint_t));
    prof.tl_interval_ns = 10 * 1000000ull;
    prof.tl_mark = os_map((size_t)PROF_SITES_PER_CHUNK * PROF_MAX_CHUNKS * sizeof(uint64_t));
    atomic_thread_fence(memory_order_seq_cst);
    prof.started = true;
    heap_foreach(heap_reset_counter, NULL);
    if (prof.timeline)
        prof_timeline_point();
    tls_own = 0;
    tls_in_prof = 0;
}

static void prof_lock_all(void) {
    lib_lock(&site_lock);
    ltab_acquire_all();
    lib_lock(&tl_lock);
}

static void prof_unlock_all(void) {
    lib_unlock(&tl_lock);
    ltab_release_all();
    lib_unlock(&site_lock);
}

/* tab_lock nests inside heap locks, so fork takes it after them (heap_fork_prepare). */
void prof_fork_prepare(void) {
    python_fork_prepare();
    prof_lock_all();
    lib_lock(&tab_lock);
    prof_dump_fork_prepare();
    unwind_fork_prepare();
}

void prof_fork_parent(void) {
    unwind_fork_parent();
    prof_dump_fork_parent();
    lib_unlock(&tab_lock);
    prof_unlock_all();
    python_fork_parent();
}

void prof_fork_child(void) {
    /* Site spinlocks held by threads that do not exist in the child would never be released.
     * A site caught mid-update may be off by that one event. */
    uint32_t n = atomic_load_explicit(&prof.nsites, memory_order_relaxed);
    for (uint32_t id = 0; id < n; id++)
        if (prof.chunks[id / PROF_SITES_PER_CHUNK])
            atomic_store_explicit(&prof_site(id)->lock, 0, memory_order_relaxed);
    need_helper_check = true;
    unwind_fork_child();
    prof_dump_fork_child();
    pthread_mutex_init(&site_lock, NULL);
    for (unsigned i = 0; i < LTAB_SHARDS; i++)
        ltab_shards[i].lock = (pthread_mutex_t)LTAB_LOCK_INIT;
    pthread_mutex_init(&tl_lock, NULL);
    pthread_mutex_init(&tab_lock, NULL);
    python_fork_child();
    tls_ltab_held = 0;
    tls_in_prof = 0;
}

void prof_modules_changed(uintptr_t lo, uintptr_t hi) {
    if (!prof.started)
        return;
    if (hi)
        unwind_forget(lo, hi);
    if (prof.have_unwinder && unw_flush && unw_local_as)
        unw_flush(*unw_local_as, 0, 0);
}

void prof_enter(void) {
    tls_in_prof++;
    tls_own++;
}

void prof_leave(void) {
    tls_own--;
    tls_in_prof--;
    sig_fatal_poll();
}

bool prof_thread_busy(void) {
    heap_t *h = tls_heap;
    return tls_in_prof || tls_ltab_held || tls_locks_held || (h && h->in_slow) ||
           check_in_report();
}
