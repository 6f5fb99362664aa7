/* prof.h: the call-site profiler's data, shared by prof.c (recording) and dump.c (writing).
 *
 * WHAT IS RECORDED
 *   A call site is an allocating call stack. Stacks are interned: identical stacks share one
 *   site_t, whose index is the site id (0 is "untracked": blocks allocated before the profiler
 *   started, or by the profiler's own unwinder). A site's counters are in "weighted units":
 *   in `all` mode every allocation counts 1 and its requested bytes; in `sample` mode a sampled
 *   allocation of n bytes stands for 1/P(n) allocations and n/P(n) bytes, P(n) = 1 - exp(-n/R)
 *   being the chance that a byte-Poisson process of mean interval R hits it (jemalloc's
 *   unbiasing). Counts are kept multiplied by count_scale (1 in `all`, PROF_COUNT_SCALE in
 *   `sample`) so that fractional weights do not round away.
 *
 * WHERE A LIVE BLOCK'S SITE IS KEPT
 *   `all` mode, pool blocks: the pool's side table (pool_t.prof), one ptag_t per block, made
 *   with the pool (or at its first tracked block if the pool is older than the profiler); free
 *   tests `pool->prof` on the header line it reads anyway. Large blocks: an open-addressing
 *   table keyed by address (ltab), probed by free only while it holds something.
 *   `sample` mode: a sampled small request is served by the allocator behind the pools instead
 *   of a pool and goes in the large table, with the class it would have had (jemalloc promotes
 *   sampled small objects for the same reason): pools never get a side table, so free's pool
 *   path costs nothing. Every sampled block carries a mark before it (alloc.c), and only a
 *   marked block is looked up in the table; in `all` mode frees ask a counting filter of the
 *   table's addresses without a lock (only a hit takes the lock).
 *
 * PEAK
 *   The program-wide peak of live bytes, and each site's live bytes at that moment, are kept
 *   exactly and in O(1) per event with epochs: every new peak bumps g_peak_epoch; a site
 *   saves its live bytes into peak_live the first time it changes after a new epoch (its value
 *   then is still the value it had at the peak). At dump time a site not touched since the last
 *   peak has peak_live = live_bytes.
 */
#ifndef TALLY_PROF_H
#define TALLY_PROF_H

#include "internal.h"

#include <link.h>

#define PROF_COUNT_SCALE 1024u    /* counts are scaled by this in sample mode */
#define PROF_NHIST 48             /* power-of-two histogram buckets */
#define PROF_SITES_PER_CHUNK 1024u
#define PROF_MAX_CHUNKS 1024u     /* at most 1M distinct stacks; more go to site 1 */

#define PROF_SITE_OVERFLOW 1u
#define PROF_SITE_EARLY 2u    /* all mode: blocks live when the profiler started (no stack) */
#define PROF_SITE_BITS 20         /* site ids: PROF_SITES_PER_CHUNK * PROF_MAX_CHUNKS */
#define PROF_SLACK_BITS 9         /* granted - requested of a pool block: 0..511 */
#define PROF_TIMELINE_MAX 4096u

/* A pool block's entry in its pool's side table: the site, the slack (so the requested size is
 * exact for every block, a realloc that shrinks in place included) and the allocation stamp
 * (its low 32 bits: lifetimes are kept modulo 2^32 allocations). */
typedef struct ptag_s {
    uint32_t sw;    /* site | slack << PROF_SITE_BITS; 0: no tracked block here */
    uint32_t stamp;
} ptag_t;

static inline ptag_t ptag_make(uint32_t site, uint32_t slack, uint64_t stamp) {
    return (ptag_t){site | slack << PROF_SITE_BITS, (uint32_t)stamp};
}
static inline uint32_t ptag_site(ptag_t t) {
    return t.sw & ((1u << PROF_SITE_BITS) - 1);
}
static inline uint32_t ptag_slack(ptag_t t) {
    return (t.sw >> PROF_SITE_BITS) & ((1u << PROF_SLACK_BITS) - 1);
}
/* The block holds a code object the Python walker interned: its free tells python.c. */
#define PTAG_WATCH (1u << 31)

_Static_assert(PROF_SITES_PER_CHUNK * PROF_MAX_CHUNKS == 1u << PROF_SITE_BITS, "site ids fit");
_Static_assert(SMALL_MAX - 1 < 1u << PROF_SLACK_BITS && PROF_SITE_BITS + PROF_SLACK_BITS <= 31,
               "every slack fits");

/* (ptr - first block) / bsize by a multiply: with r = ceil(2^32 / bsize) and offsets below
 * 2^14, (k * bsize * r) >> 32 is exactly k (and so is floor for an interior offset). */
#define PROF_RECIP(c) (uint32_t)((((uint64_t)1 << 32) + CLASS_SIZE(c) - 1) / CLASS_SIZE(c))
static const uint32_t prof_recip[NCLASSES] = {
    PROF_RECIP(0),  PROF_RECIP(1),  PROF_RECIP(2),  PROF_RECIP(3),  PROF_RECIP(4),
    PROF_RECIP(5),  PROF_RECIP(6),  PROF_RECIP(7),  PROF_RECIP(8),  PROF_RECIP(9),
    PROF_RECIP(10), PROF_RECIP(11), PROF_RECIP(12), PROF_RECIP(13), PROF_RECIP(14),
    PROF_RECIP(15), PROF_RECIP(16), PROF_RECIP(17), PROF_RECIP(18), PROF_RECIP(19),
    PROF_RECIP(20), PROF_RECIP(21), PROF_RECIP(22), PROF_RECIP(23), PROF_RECIP(24),
    PROF_RECIP(25), PROF_RECIP(26), PROF_RECIP(27), PROF_RECIP(28), PROF_RECIP(29),
    PROF_RECIP(30), PROF_RECIP(31),
};

/* The index of the block of class c at byte offset off past the pool header. */
static inline unsigned block_index_of(unsigned c, uint64_t off) {
    return (unsigned)((off * prof_recip[c]) >> 32);
}

static inline unsigned block_index(const pool_t *p, const void *ptr) {
    return block_index_of(p->szidx, (uintptr_t)ptr - (uintptr_t)p - POOL_HEADER);
}

typedef struct site_s {
    /* Line 0: what every allocation and free of the site writes, under `lock` (a spinlock: one
     * atomic instruction per event instead of one per counter; none while the process has one
     * thread). Read by the dump without it. Live counts are allocated minus freed. */
    _Alignas(64) _Atomic uint8_t lock;
    uint8_t pad0[7];
    uint64_t peak_epoch;
    uint64_t alloc_count, alloc_bytes;
    uint64_t free_count, free_bytes;
    uint64_t granted_bytes;
    int64_t max_live_bytes;
    /* Line 1: written now and then; all of site_touch's fields (a site's last lines are
     * then seldom touched: in all mode never, where the whole site on a page of its own
     * would cost two page faults for nothing). */
    int64_t peak_live_bytes; /* saved at the first change after a new peak epoch */
    uint64_t temporary; /* freed with no other allocation in between */
    uint64_t samples;   /* raw allocations recorded (not weighted); sample mode only */
    uint64_t hash; /* the global table's: stack_fmix of the stack's first key (prof.c) */
    const uintptr_t *frames; /* innermost first */
    uint16_t nframes;
    bool truncated;          /* its stack was cut at TALLY_DEPTH frames */
    uint8_t pad1;
    uint32_t gen;            /* the module generation its frames belong to */
    /* sample mode: the variance of each estimate, unscaled. A sampled allocation of n bytes
     * taken with probability p adds n^2 (1-p) / p^2 to a bytes figure's and (1-p) / p^2 to a
     * count's (the Horvitz-Thompson estimator's, estimated from the sample); a free takes them
     * out of the live ones. var_peak_bytes is var_live_bytes at the peak (as peak_live_bytes). */
    double var_live_bytes, var_peak_bytes;
    uint64_t size_hist[PROF_NHIST]; /* weighted counts by floor(log2(requested)) */
    uint64_t life_hist[PROF_NHIST]; /* bucket 0: lifetime 0; k: [2^(k-1), 2^k) */
    double var_alloc_count, var_alloc_bytes, var_live_count, var_temporary;
    double pad2[4];
} site_t;
_Static_assert(sizeof(site_t) % 64 == 0, "sites are whole cache lines");
_Static_assert(offsetof(site_t, var_peak_bytes) < 128, "site_touch writes two lines");
_Static_assert(PROF_MAX_DEPTH <= UINT16_MAX, "a stack's length fits nframes");

static inline int64_t site_live_count(const site_t *s) {
    return (int64_t)(__atomic_load_n(&s->alloc_count, __ATOMIC_RELAXED) -
                     __atomic_load_n(&s->free_count, __ATOMIC_RELAXED));
}
static inline int64_t site_live_bytes(const site_t *s) {
    return (int64_t)(__atomic_load_n(&s->alloc_bytes, __ATOMIC_RELAXED) -
                     __atomic_load_n(&s->free_bytes, __ATOMIC_RELAXED));
}

/* Large-block table entry. addr 0 is empty, 1 a tombstone. */
typedef struct lent_s {
    uintptr_t addr;
    uint64_t size;  /* requested */
    uint64_t stamp;
    uint32_t site;
    uint8_t cls;    /* LENT_LARGE, or the class of a promoted sampled small request */
    uint8_t watch;  /* holds a code object the Python walker interned (PTAG_WATCH) */
    uint8_t pad[2];
} lent_t;
#define LENT_LARGE 0xff

/* A call site at a detailed timeline point: what massif's detailed snapshots keep. */
#define PROF_TL_TOP 8               /* the top sites by live bytes, and by bytes allocated since */
#define PROF_TL_SITES (2 * PROF_TL_TOP) /* the last detailed point: at most this many in all */
#define PROF_TL_BUDGET 100          /* a scan of the sites may take 1/100 of the time between */
#define PROF_TL_AHEAD 16            /* sites prefetched ahead of the scan */
typedef struct tsite_s {
    uint32_t id;
    int64_t live_bytes;   /* weighted, then */
    uint64_t alloc_bytes; /* weighted, allocated by the site so far */
} tsite_t;

typedef struct tpoint_s {
    uint64_t t_ns;      /* since the profiler started */
    int64_t live_bytes; /* weighted live bytes */
    uint64_t rss_bytes;
    uint64_t alloc_bytes; /* weighted bytes allocated so far */
    uint64_t alloc_count; /* weighted allocations so far */
    uint32_t nsites;      /* a detailed point: sites[0..nsites) (0: not detailed) */
    tsite_t sites[PROF_TL_SITES];
} tpoint_t;

typedef struct prof_state_s {
    int mode;              /* enum profile_mode in effect (off until prof_start) */
    bool started;
    bool have_unwinder;
    uint64_t rate;          /* sample interval R in bytes */
    uint64_t count_scale;
    unsigned depth;
    uint64_t t0_ns;         /* CLOCK_MONOTONIC at start */
    uint64_t t0_real_ns;    /* CLOCK_REALTIME at start */
    _Atomic uint32_t nsites; /* ids below this exist */
    _Atomic uint32_t gen;    /* module generation: bumped when a module is loaded where another
                              * was unloaded; part of a stack's identity (dump.c) */
    site_t *chunks[PROF_MAX_CHUNKS];
    _Atomic int64_t live_bytes, peak_bytes;
    _Atomic uint64_t peak_epoch, peak_t_ns;
    _Atomic uint64_t seq; /* tracked allocations so far (all mode stamps) */
    /* timeline, under tl_lock */
    tpoint_t *timeline;
    unsigned ntimeline;
    uint64_t tl_interval_ns;
    uint64_t tl_last_ns;
    uint64_t tl_detail_ns;  /* no detailed point before this time (the scans' budget) */
    uint64_t *tl_mark;      /* per site: its alloc_bytes at the last detailed point */
    /* large table: its shards are prof.c's */
    _Atomic size_t ltab_live; /* free skips the probe while this is 0 */
    /* our own code's address range, for skipping allocator frames */
    uintptr_t self_lo, self_hi;
} prof_state_t;

extern prof_state_t prof;

/* Sample mode: should this sampled request be served by glibc and tracked there (a small one),
 * or marked and tracked (a large one)? Only sample mode promotes: the mode is tested here, so
 * that the other modes' allocations make no call. */
bool prof_promotes_now(heap_t *h);
static inline bool prof_promotes(heap_t *h) {
    return prof.mode == PROFILE_SAMPLE && prof_promotes_now(h);
}

static inline site_t *prof_site(uint32_t id) {
    return &prof.chunks[id / PROF_SITES_PER_CHUNK][id % PROF_SITES_PER_CHUNK];
}

/* A block's address, hidden while it is kept across a call. The leak check scans every live
 * stack frame, and cannot tell a slot the program wrote from one left over from an earlier,
 * deeper call (memcheck knows: such a slot is undefined to it). A function that keeps a value
 * across a call keeps it in a callee-saved register, which its callees push onto the stack; the
 * profiler's calls go 1.5 KB deep on every allocation, and the program's later calls take that
 * memory for frames of their own without writing every slot. So the allocator and the profiler
 * keep no block address in a register across a call: they keep it xor'd with a constant that
 * makes it a non-canonical address, which is no pointer to anything. The asm makes the value
 * opaque, so that the compiler cannot keep the plain one instead. */
#define PROF_HIDE_MASK 0xa5a5000000000000ull
static inline __attribute__((always_inline)) uintptr_t prof_hide(const void *p) {
    uintptr_t v = (uintptr_t)p ^ PROF_HIDE_MASK;
    __asm__ volatile("" : "+r"(v));
    return v;
}
static inline __attribute__((always_inline)) void *prof_reveal(uintptr_t v) {
    __asm__ volatile("" : "+r"(v));
    return (void *)(v ^ PROF_HIDE_MASK);
}
/* While a block's address is hidden, a leak check that stops this thread must still see it:
 * the block being allocated (slot 0) or freed (slot 1) is in the thread's TLS, which the check
 * scans, and only until the call is over. */
extern __thread void *prof_inflight[2] TLS_IE;
static inline __attribute__((always_inline)) uintptr_t prof_hold(void *p, int slot) {
    prof_inflight[slot] = p;
    return prof_hide(p);
}
static inline __attribute__((always_inline)) void *prof_release(uintptr_t v, int slot) {
    __atomic_store_n(&prof_inflight[slot], NULL, __ATOMIC_RELAXED);
    return prof_reveal(v);
}
/* The start-up's dead stack, zeroed once (init.c): n bytes below the caller, no further than the
 * thread's stack goes. */
void prof_stack_scrub(size_t n);
static inline __attribute__((always_inline)) void prof_scrub_below(size_t n) {
    size_t room = unwind_stack_below((uintptr_t)__builtin_frame_address(0));
    if (room > 64)
        prof_stack_scrub((n < room - 64 ? n : room - 64) & ~(size_t)7);
}

/* realloc moving a pool block: its free is credited before the new block is recorded (a free
 * then an allocation, as heaptrack counts a realloc); put back if the move fails. */
typedef struct prof_taken_s {
    ptag_t tag;
    uint32_t life; /* the lifetime the free was credited with */
} prof_taken_t;
bool prof_small_take(pool_t *p, void *ptr, prof_taken_t *out);
void prof_small_put_back(pool_t *p, void *ptr, const prof_taken_t *t);
/* The site and requested size of the tracked block ptr lies in; false if it is not tracked. */
bool prof_small_peek(pool_t *p, const void *ptr, uint32_t *site, uint64_t *size);
/* Every tracked block of the pools in use: its site, the address the program has (its data:
 * pool_data_offset() into the block) and its requested size. Read without a lock: a block freed
 * meanwhile may be passed or missed. */
void prof_pool_blocks_foreach(void (*fn)(uint32_t site, uintptr_t addr, uint64_t size, void *arg),
                              void *arg);

/* realloc of a large block: take its record out, then either credit the free or put it back. */
bool prof_large_take(void *ptr, lent_t *out);
bool prof_large_peek(void *ptr, lent_t *out); /* its record, left in the table; false if none */
void prof_large_put_back(const lent_t *e);
void prof_large_freed(const lent_t *e);
void prof_ltab_foreach(void (*fn)(const lent_t *, void *), void *arg);
/* The same under the table's lock, held by the caller (the leak check holds it throughout:
 * no tracked large block can be freed meanwhile). */
void prof_ltab_foreach_locked(void (*fn)(const lent_t *, void *), void *arg);
void prof_ltab_lock(void);
void prof_ltab_unlock(void);

/* all mode: mark the block holding addr (a code object python.c interned) so that its free
 * calls python_code_freed; false if it is no tracked block of ours. */
bool prof_watch_code(uintptr_t addr);

/* For dump.c. */
int64_t prof_site_peak_live(const site_t *s);
double prof_site_peak_var(const site_t *s); /* var_peak_bytes, as prof_site_peak_live */
uint64_t prof_rss_bytes(void);
void prof_unwind_checked(uint64_t *checked, uint64_t *mismatch); /* TALLY_UNWIND=check */
uint64_t prof_now_ns(void);
uint64_t prof_alloc_bytes_total(void); /* sum over heaps */
uint64_t prof_alloc_count_total(void);
double prof_inv_p(uint64_t n); /* 1 / P(a request of n bytes is sampled); 1 in all mode */

/* ---- leak.c: the reachability check at exit (TALLY_LEAKS) ---------------------------------- */
enum leak_kind { LEAK_DEFINITE = 0, LEAK_INDIRECT, LEAK_POSSIBLE, LEAK_REACHABLE, LEAK_NKINDS };
#define LEAK_NHEUR 5 /* memcheck's heuristics, 1..4; 0 is none */
typedef struct leak_site_s {
    uint64_t count[LEAK_NKINDS], bytes[LEAK_NKINDS];
    uint64_t held_bytes; /* indirectly lost bytes the site's definitely lost blocks lead to */
} leak_site_t;
typedef struct leak_result_s {
    bool done;   /* the check ran and the rest is valid */
    bool approx; /* some thread kept running, or some of our mappings went unlisted, or: */
    bool foreign_large; /* another allocator than glibc serves the large blocks (its own records
                         * of them look like pointers to them) */
    leak_site_t *sites; /* by site id, below nsites */
    uint32_t nsites;
    uint64_t count[LEAK_NKINDS], bytes[LEAK_NKINDS];
    uint64_t heur_count[LEAK_NHEUR], heur_bytes[LEAK_NHEUR]; /* "of which reachable via" */
    uint64_t scan_ns, root_bytes, block_bytes, root_faults;
    uint64_t untracked_bytes; /* of the roots: the library's own live pool blocks */
    unsigned threads, unstopped; /* other threads stopped; not stopped */
} leak_result_t;
/* here: the state of the library's frame that asks for the check (unwind_getcontext). The
 * calling thread's stack is scanned from the program's frame above it: exit's caller when
 * exiting ([exit_lo, exit_hi) the code of exit, 0, 0 if unknown), else the first frame outside
 * the library. Writes one line to stderr if it cannot run. */
bool leak_check(const unwind_regs_t *here, bool exiting, uintptr_t exit_lo, uintptr_t exit_hi);
const leak_result_t *leak_result(void);
/* Every block the check found lost (definitely, indirectly or possibly), by address (pools, then
 * large blocks); the reachable ones are counted in the result only. */
void leak_foreach_block(void (*fn)(uintptr_t addr, uint64_t size, uint32_t site, unsigned kind,
                                   unsigned heur, void *arg),
                        void *arg);
const char *leak_heuristic_name(unsigned h);
void leak_release(void); /* unmaps the check's memory */
/* The dump helper thread (TALLY_SIGNAL/TALLY_INTERVAL), if it runs: its tid and an address on
 * its stack. */
bool prof_dump_helper(pid_t *tid, uintptr_t *stack_addr);

#endif /* TALLY_PROF_H */
