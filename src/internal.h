/* internal.h: the contracts between the library's files, grouped by the file that provides them.
 * Dependencies run one way: os <- arena <- pool/heap <- alloc; stats and init read everything.
 * Bool results mean true = success. */
#ifndef TALLY_INTERNAL_H
#define TALLY_INTERNAL_H

#include "config.h"
#include "types.h"

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define likely(x) __builtin_expect(!!(x), 1)
#define unlikely(x) __builtin_expect(!!(x), 0)
#define noinline __attribute__((noinline))
#define cold __attribute__((cold))
#define TALLY_EXPORT __attribute__((visibility("default")))
#define TLS_IE __attribute__((tls_model("initial-exec")))

static const bool config_debug = TALLY_DEBUG;

/* sig.c: a fatal signal that came while its thread was inside the library's own code waits
 * until the thread leaves it, at a poll where a lock is released or the profiler left. */
extern _Atomic int sig_fatal_pending;
void sig_fatal_deferred(void);
static inline void sig_fatal_poll(void) {
    if (unlikely(atomic_load_explicit(&sig_fatal_pending, memory_order_relaxed)))
        sig_fatal_deferred();
}
/* The library's locks this thread holds or is taking (spin_lock, lib_lock): a fatal signal's
 * dump waits until it holds none (sig.c). A fork's child starts from 0 (sig.c). */
extern __thread int tls_locks_held TLS_IE;

/* A spinlock for the few instructions of a rare path (os.c's registry, alloc.c's early blocks):
 * no call inside, nothing that could sleep. A holder that a fork leaves behind keeps it held in
 * the child: os.c resets its own; alloc.c's is used only before the profiler starts. */
static inline void spin_lock(atomic_flag *f) {
    tls_locks_held++;
    atomic_signal_fence(memory_order_seq_cst);
    while (atomic_flag_test_and_set_explicit(f, memory_order_acquire))
        ;
}

static inline void spin_unlock(atomic_flag *f) {
    atomic_flag_clear_explicit(f, memory_order_release);
    atomic_signal_fence(memory_order_seq_cst);
    tls_locks_held--;
    sig_fatal_poll();
}

/* The library's mutexes, counted as its spinlocks are. */
static inline void lib_lock(pthread_mutex_t *m) {
    tls_locks_held++;
    atomic_signal_fence(memory_order_seq_cst);
    pthread_mutex_lock(m);
}

static inline int lib_trylock(pthread_mutex_t *m) {
    tls_locks_held++;
    atomic_signal_fence(memory_order_seq_cst);
    int r = pthread_mutex_trylock(m);
    if (r != 0) {
        tls_locks_held--;
        sig_fatal_poll();
    }
    return r;
}

static inline void lib_unlock(pthread_mutex_t *m) {
    pthread_mutex_unlock(m);
    atomic_signal_fence(memory_order_seq_cst);
    tls_locks_held--;
    sig_fatal_poll();
}

/* glibc's own allocator, exported at GLIBC_2.2.5. We call these, never define them.
 * __libc_free and __libc_realloc we define (alloc.c): glibc's are reached through glibc.c. */
extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_memalign(size_t, size_t);
extern void *__libc_valloc(size_t);
extern void *__libc_pvalloc(size_t);

/* ---- os.c: the only file that makes memory system calls ----------------------------------- */
void *os_reserve(size_t *size);           /* PROT_NONE range aligned to ARENA_SIZE; shrinks *size */
bool os_commit(void *addr, size_t size);  /* make part of the range readable and writable */
void *os_map(size_t size);                /* fresh zeroed RW memory for our own metadata */
void os_unmap(void *p, size_t size);
void os_discard(void *p, size_t size);    /* the pages' memory back to the system; they stay mapped
                                             and read as zero */
/* The os_map ranges now mapped, as pairs [lo, hi) into out (2 * max words); *complete is false
 * when some were not recorded (the registry is full) or did not fit. */
unsigned os_meta_ranges(uintptr_t *out, unsigned max, bool *complete);
/* Bytes of the library's own metadata mappings that are resident (mincore): the profiler's
 * tables, the large-block table, the unwinder's caches. Async-signal-safe. */
uint64_t os_meta_resident(void);
void os_fork_child(void);
bool os_write_all(int fd, const char *buf, size_t len); /* false on a write error */

/* ---- fmt.c: formatting without allocating; messages to stderr ----------------------------- */
typedef struct fmt_s {
    char *buf;
    size_t cap, len;
    int fd; /* flushed here when full; -1 to truncate instead */
    bool failed; /* a write to fd failed */
    /* If set, a flush hands the text to sink instead of writing it to fd (a compressor);
     * false from it counts as a failed write. */
    bool (*sink)(void *ctx, const char *buf, size_t len);
    void *sink_ctx;
} fmt_t;
void fmt_init(fmt_t *f, char *buf, size_t cap, int fd);
void fmt_strn_full(fmt_t *f, const char *s, size_t n);
/* Into the buffer while it has room, with no call (a constant string is a few moves); else
 * fmt_strn_full flushes it, or drops the rest of a truncating one. */
static inline void fmt_strn(fmt_t *f, const char *s, size_t n) {
    if (__builtin_expect(n <= f->cap - f->len, 1)) {
        __builtin_memcpy(f->buf + f->len, s, n);
        f->len += n;
        return;
    }
    fmt_strn_full(f, s, n);
}
static inline void fmt_str(fmt_t *f, const char *s) {
    fmt_strn(f, s, __builtin_strlen(s));
}
static inline void fmt_char(fmt_t *f, char c) {
    if (__builtin_expect(f->len < f->cap, 1)) {
        f->buf[f->len++] = c;
        return;
    }
    fmt_strn_full(f, &c, 1);
}
void fmt_u64(fmt_t *f, uint64_t v);
void fmt_u64_grouped(fmt_t *f, uint64_t v); /* 1,234,567 (memcheck's numbers) */
void fmt_u64w(fmt_t *f, uint64_t v, int width); /* right-aligned in width columns */
void fmt_strw(fmt_t *f, const char *s, int width); /* left-aligned, padded */
void fmt_fixed(fmt_t *f, double v, int decimals);
void fmt_bytes(fmt_t *f, uint64_t v); /* 1.5 MiB */
void fmt_json_str(fmt_t *f, const char *s);
void fmt_flush(fmt_t *f);
void fmt_hex(fmt_t *f, uint64_t v); /* 0x1f */
/* pattern with %p (pid), %e (program name), %% -> out; false if it does not fit */
bool fmt_expand_path(char *out, size_t cap, const char *pattern);
/* The descriptor the library's messages go to: the program's first stderr, kept at the start
 * (fmt_keep_stderr, when a message at exit is asked for) while it is still that file, else 2. */
void fmt_keep_stderr(void);
int message_fd(void);
/* One line "tally: a b c\n" to stderr; rate-limited so a broken program cannot flood it. */
void tally_message(const char *a, const char *b, const char *c);

/* ---- options.c ---------------------------------------------------------------------------- */
enum stats_mode { STATS_OFF = 0, STATS_TEXT, STATS_JSON };
enum profile_mode { PROFILE_OFF = 0, PROFILE_SAMPLE, PROFILE_ALL };
enum unwind_mode { UNWIND_FAST = 0, UNWIND_LIBUNWIND, UNWIND_CHECK };
enum leaks_mode { LEAKS_OFF = 0, LEAKS_REPORT, LEAKS_QUIET };
#define PROF_MAX_DEPTH 128
typedef struct options_s {
    int stats;              /* enum stats_mode: TALLY_STATS */
    const char *stats_file; /* TALLY_STATS_FILE: path with %p (pid) and %e (program) */
    size_t reserve;         /* TALLY_RESERVE: address space to reserve for arenas */
    bool verbose;           /* TALLY_VERBOSE */
    bool deepbind;          /* TALLY_DEEPBIND: keep RTLD_DEEPBIND instead of stripping it */
    bool python;            /* TALLY_PYTHON: merge CPython's frames into the stacks */
    int profile;            /* enum profile_mode: TALLY_PROFILE */
    size_t sample;          /* TALLY_SAMPLE: mean bytes between samples */
    unsigned depth;         /* TALLY_DEPTH: frames per stack */
    int unwind;             /* enum unwind_mode: TALLY_UNWIND */
    const char *out;        /* TALLY_OUT: dump path at exit (%p, %e) */
    const char *large;      /* TALLY_LARGE: the allocator behind the pools (read by glibc.c) */
    int signal;             /* TALLY_SIGNAL: dump on this signal; 0 for none */
    unsigned interval;      /* TALLY_INTERVAL: dump every this many seconds; 0 for never */
    bool compress;          /* TALLY_COMPRESS: dumps as zstd when libzstd.so.1 loads */
    int leaks;              /* enum leaks_mode: TALLY_LEAKS, the reachability check at exit */
    int perturb;            /* glibc's MALLOC_PERTURB_ (or its tunable): 0, or the fill byte */
    int check;              /* enum check_mode: TALLY_CHECK, heap error detection (check.c) */
    size_t quarantine;      /* TALLY_QUARANTINE: bytes of freed blocks a thread holds back */
    bool fatal;             /* TALLY_FATAL: the dump when a fatal signal ends the program */
} options_t;
enum check_mode { CHECK_OFF = 0, CHECK_ON, CHECK_ABORT, CHECK_QUIET }; /* quiet: nothing on stderr */
extern options_t opt;
void options_init(char **env); /* reads TALLY_* once; warns on unknown or malformed values */
void options_print(void);

/* ---- arena.c: the reserved range, arenas, and the global pool lists ----------------------- */
typedef struct global_s {
    /* Read by every free; alone on their cache line so slow-path writes never evict them. */
    _Alignas(64) uintptr_t base; /* start of the reserved range (0 before init: nothing is ours) */
    size_t reserve;              /* its size */
    _Atomic size_t span;         /* its read-write part, [base, base + span): what is ours */
    uintptr_t free_key;          /* random, non-zero: word 1 of a free pool block (alloc.c) */
    _Alignas(64) uintptr_t next_pool;    /* next never-used pool (global lock) */
    uintptr_t committed;    /* end of the RW part of the range (global lock) */
    pool_t *empty;          /* stack of empty pools, any class (global lock) */
    size_t nempty;
    uint32_t *trimmed;      /* indexes of pools malloc_trim gave back (global lock; arena_trim) */
    size_t ntrimmed;
    atomic_flag trimming;   /* one arena_trim at a time */
    pool_t *abandoned[NCLASSES];          /* partial pools of exited threads (global lock) */
    _Atomic unsigned nabandoned[NCLASSES]; /* read without the lock to skip it */
    pthread_mutex_t lock;
} global_t;
extern global_t g;

/* In the arenas made so far. The reserved range beyond them was never handed out. */
static inline bool ptr_is_ours(const void *p) {
    return (uintptr_t)p - g.base < atomic_load_explicit(&g.span, memory_order_relaxed);
}
static inline bool ptr_in_reserve(const void *p) {
    return (uintptr_t)p - g.base < g.reserve;
}
static inline unsigned size_class(size_t n) { /* 0..512 -> 0..31; malloc(0) is class 0 */
    return n ? (unsigned)((n - 1) >> ALIGNMENT_SHIFT) : 0;
}
static inline pool_t *pool_of(const void *p) {
    return (pool_t *)((uintptr_t)p & ~(uintptr_t)(POOL_SIZE - 1));
}
bool arena_init(void);               /* reserve the range; false leaves everything to glibc */
pool_t *arena_pool_fresh_or_empty(void); /* NULL when the range is exhausted */
void arena_pool_push_empty(pool_t *p);
void arena_abandoned_link(pool_t *p);    /* before the pool is unowned, see pool_abandon */
void arena_abandoned_unlink(pool_t *p);  /* take a listed pool off again (it turned out empty) */
pool_t *arena_abandoned_claim(unsigned c); /* a partial pool of class c, now owned by the caller */
void arena_lock(void);
void arena_unlock(void);
void arena_fork_child(void);
size_t arena_trim(void); /* empty pools on the global stack give back their memory; how many */

/* ---- pool.c: operations on one pool, by its owner unless said otherwise ------------------- */
void pool_init(pool_t *p, unsigned c, struct heap_s *h);
/* Owner: moves up to max free blocks to dst (the free list first, then virgin blocks carved in
 * address order); returns how many. They count as used. */
unsigned pool_take(pool_t *p, void **dst, unsigned max);
unsigned pool_collect(pool_t *p);  /* take the remote frees; returns how many */
bool pool_set_full(pool_t *p);     /* owner: set TF_FULL; false if a remote free arrived */
bool pool_clear_full(pool_t *p);   /* owner: clear TF_FULL; false if a notifier cleared it first */
bool pool_claim_unowned(pool_t *p); /* any thread: become the owner of an abandoned pool */
void pool_abandon(pool_t *p);      /* hand a pool we own to nobody: empty stack or abandoned list */
/* Any thread: push q onto p's remote list and return the word it replaced. If that word had
 * TF_FULL, the caller must notify the owner (heap_notify). An unowned pool stays unowned. */
uintptr_t pool_push_remote(pool_t *p, block_t *q);
uintptr_t pool_push_remote_list(pool_t *p, block_t *head, block_t *tail); /* head..tail linked */

/* ---- heap.c: thread heaps ----------------------------------------------------------------- */
extern pool_t pool_sentinel;       /* free == NULL: an empty class list, never written */
extern heap_t heap_empty;          /* the heap of a thread that has not allocated yet */
extern heap_t heap_dead;           /* the heap of a thread whose key destructor has run */
extern __thread heap_t *tls_heap TLS_IE;
heap_t *heap_thread_init(void);    /* the calling thread's real heap, made on first use; NULL on failure */
void *heap_refill(heap_t *h, unsigned c); /* malloc's slow path, under h->lock: refill bin c from
                                             the pools and return one block, or NULL */
/* Is ptr, a block of p, free now (in a bin, its pool's lists, or an unused pool)? Best effort
 * under concurrent change, never faults. */
bool heap_block_is_free(pool_t *p, const void *ptr);
/* Slow path of free: the bin is full (or the thread has none); p is pool_of(ptr). */
void heap_free_slow(heap_t *h, pool_t *p, void *ptr);
void heap_notify(pool_t *p);                     /* a remote free woke a full pool */
void heap_lock_slow(heap_t *h);
void heap_unlock_slow(heap_t *h);
void heap_fork_prepare(void);
void heap_fork_parent(void);
void heap_fork_child(void);
/* Calls fn on every heap ever made, under the registry lock (stats). */
void heap_foreach(void (*fn)(heap_t *, void *), void *arg);
/* The same without the lock (heaps are never freed; a heap made meanwhile may be missed). */
void heap_foreach_unlocked(void (*fn)(heap_t *, void *), void *arg);
void heap_global_init(void);        /* the thread-exit key and the fork handlers */
void heap_set_perturb(int byte);    /* mallopt(M_PERTURB): 0 off, else glibc's fill byte */
/* malloc_trim: the calling thread's bins back to their pools, every heap's cached empty pools
 * to the global stack, then the pages of the empty pools back to the system (arena_trim).
 * Returns how many pools were trimmed. */
size_t heap_trim(void);

/* ---- glibc.c: glibc's allocator and its introspection -------------------------------------- */
void glibc_init(void);               /* find glibc's entry points (no dlsym, no lock) */
void glibc_malloc_setup(void);       /* glibc's malloc set up on this (the main) thread */
/* The allocator behind the pools (glibc.c): glibc's, or the one next in line, or TALLY_LARGE's.
 * Its entry points are read once (raw_resolve), before the first block is had from it. */
typedef struct raw_s {
    void *(*malloc)(size_t);
    void *(*calloc)(size_t, size_t);
    void *(*memalign)(size_t, size_t);
    void *(*realloc)(void *, size_t);
    size_t (*usable)(void *);
    void *(*valloc)(size_t);  /* glibc's; NULL for another: memalign */
    void *(*pvalloc)(size_t); /* likewise */
    const char *name;         /* the library's file name, or "glibc" */
    void (*_Atomic free)(void *); /* stored last: the "resolved" flag */
} raw_t;
extern raw_t raw;
void raw_resolve(void);
static inline void raw_ready(void) {
    if (unlikely(!atomic_load_explicit(&raw.free, memory_order_acquire)))
        raw_resolve();
}
/* malloc and free, inline: the large path's two calls (alloc.c), each its caller's last, a
 * jump that keeps no register (the first call of all resolves, then calls, in glibc.c) */
void *raw_malloc_first(size_t n);
void raw_free_first(void *p);
static inline void *raw_malloc(size_t n) {
    if (unlikely(!atomic_load_explicit(&raw.free, memory_order_acquire)))
        return raw_malloc_first(n);
    return raw.malloc(n);
}
static inline void raw_free(void *p) {
    void (*f)(void *) = atomic_load_explicit(&raw.free, memory_order_acquire);
    if (unlikely(!f))
        return raw_free_first(p);
    f(p);
}
void *raw_calloc(size_t n, size_t size);
void *raw_memalign(size_t align, size_t n);
void *raw_valloc(size_t n);
void *raw_pvalloc(size_t n);
void *raw_realloc(void *p, size_t n);
size_t raw_usable_size_of(void *p);  /* its malloc_usable_size */
const char *raw_allocator_name(void); /* "glibc", or the file name of the library */
const char *base_name(const char *path); /* what follows its last '/' */
extern bool raw_is_glibc;             /* it is glibc's (false until it is known) */
size_t large_usable_size(void *p);   /* that of a block not ours, sampled (alloc.c) or not */
uintptr_t glibc_code_address(void);  /* an address in libc's code */
struct mallinfo2 glibc_mallinfo2(void); /* glibc's figures alone */
/* The address of name in the object loaded at base with that dynamic section, from its GNU
 * hash table (as the loader looks it up); 0 if it has none. */
uintptr_t elf_lookup(uintptr_t base, const void *dynamic, const char *name);
void elf_before_us(const char *const *names, unsigned n, uintptr_t *found); /* the program's own */
uintptr_t elf_global_lookup(const char *name); /* the first definition in the loader's list */
uintptr_t elf_after_us(const char *name); /* the first definition after this library */
/* The same, with the symbol's size in *size (when size is not NULL). */
uintptr_t elf_lookup_sized(uintptr_t base, const void *dynamic, const char *name, size_t *size);

/* ---- init.c ------------------------------------------------------------------------------- */
bool tally_init_global(void);      /* once per process; false if the range can't be reserved */
/* dlopen of one of the library's own dependencies (RTLD_LOCAL | RTLD_DEEPBIND). */
void *init_dlopen_own(const char *file);

/* ---- alloc.c ---------------------------------------------------------------------------- */
uint64_t alloc_large_unowned(void);
/* The glibc blocks allocated before the profiler started (all mode), each once, to fn; none are
 * noted after this. */
void alloc_early_forget(void *p); /* a block noted before the start is freed (TALLY_CHECK) */
void alloc_early_take(void (*fn)(void *p, size_t n, void *arg), void *arg);

/* ---- check.c: TALLY_CHECK, heap errors ------------------------------------------------------ */
#define CHECK_HDR 32 /* a checked block's header: the program's pointer is this far in */
/* Where a pool block's data starts for the program: past the header with the checks on (every
 * pool block is then a checked one), at its start otherwise (leak.c, dump.c). */
static inline uintptr_t pool_data_offset(void) {
    return opt.check ? CHECK_HDR : 0;
}
enum check_alloc_kind { CK_MALLOC = 0, CK_NEW, CK_NEW_ARRAY };
/* the call that made or found an error */
enum check_call { CC_FREE = 0, CC_DELETE, CC_DELETE_ARRAY, CC_REALLOC, CC_QUARANTINE, CC_SCAN,
                  CC_USABLE, CHECK_NCALLS };
enum check_kind { CHECK_INVALID_FREE = 0, CHECK_DOUBLE_FREE, CHECK_MISMATCHED, CHECK_OVERRUN,
                  CHECK_UNDERRUN, CHECK_WRITE_AFTER_FREE, CHECK_NKINDS };
enum check_addr { CA_NONE = 0, CA_ALLOC, CA_FREE, CA_STACK }; /* what an error's address is */
/* A checked block of n bytes aligned to align (0: 16), of that kind, zeroed or filled; NULL
 * (errno ENOMEM) when the allocator behind has no memory. */
void *check_alloc(size_t n, size_t align, unsigned kind, bool zero, void *caller);
void check_free(void *ptr, void *caller, unsigned call); /* any pointer but NULL-safe */
void *check_realloc(void *ptr, size_t n, void *caller);
size_t check_usable_size(void *ptr); /* malloc_usable_size: the requested size, 0 if no block */
size_t check_block_size(void *ptr);  /* the same of a block known to be a checked one */
void check_scan(void);        /* every live and quarantined block, now (a dump, exit) */
bool check_in_report(void);   /* this thread records an error (holds the errors' lock) */
uint64_t check_errors(uint64_t *contexts); /* errors so far, and their contexts */
void check_put_totals(fmt_t *f);
void check_put_errors(fmt_t *f);
void check_sites(void (*fn)(uint32_t site, void *arg), void *arg); /* sites errors name */
void check_summary(const char *dump_path); /* exit: memcheck's ERROR SUMMARY, if errors */
void check_fork_child(void);
void check_fork_child_heap(heap_t *h);
static inline int check_fd(void) {
    return message_fd();
}
void alloc_say_caller(fmt_t *f, uintptr_t ip); /* symbol+off in object+off (alloc.c) */
void *large_done(void *p, size_t n, void *caller); /* a block from the allocator behind,
                                                      counted and profiled (alloc.c) */
/* alloc.c for check.c: a pool block of class c for a checked request of n bytes (NULL: none,
 * or no heap), and one handed back after its checks (its profiler tag already taken). */
void *alloc_check_pool_block(size_t n, unsigned c);
void alloc_check_pool_release(void *b);

/* ---- prof.c: the call-site profiler (prof.h) --------------------------------------------- */
/* A heap's sample_left ran out: record ptr (n bytes requested) if profiling; returns ptr. */
void *prof_alloc(heap_t *h, void *ptr, size_t n, void *caller);
void *prof_alloc_promoted(heap_t *h, void *ptr, size_t n, void *caller);
void prof_free_small(pool_t *p, void *ptr); /* p->prof != NULL */

void prof_free_large(void *ptr);
/* The interned site of the calling stack, recording nothing; 0 when it cannot be taken now. */
uint32_t prof_site_here(heap_t *h, void *caller);
void prof_pool_init(pool_t *p, unsigned c); /* before p is set up for class c */
void prof_pool_release(pool_t *p);          /* an empty pool gives up its table (malloc_trim) */
void prof_heap_init(heap_t *h);
void prof_start(void);                      /* from the constructor */
void prof_fork_prepare(void);
void prof_fork_parent(void);
void prof_fork_child(void);
void prof_enter(void);
void prof_leave(void);
void prof_timeline_point(void);

/* ---- unwind.c: call stacks from cached DWARF CFI ------------------------------------------- */
#define UNW_OWN_FRAMES 8 /* frames of ours above the program's: unwound, then dropped */
/* Stacks are hashed as two polynomials, sum(mix(f[j]) * B^j) with two mixes and bases: 128
 * bits that identify a stack in a thread's cache of stacks (a full comparison is made when a
 * stack is first interned). The walker keeps the sums of every suffix of its stack (sums[k]
 * covers frames k..n-1), so the sums of any window [i, i+d) are sums[i] - B^d * sums[i+d]: O(1)
 * whatever the depth. */
typedef struct stack_sums_s {
    uint64_t a, b;
} stack_sums_t;
#define STACK_HASH_BA 0xC2B2AE3D27D4EB4FULL
#define STACK_HASH_BB 0x165667B19E3779F9ULL
static inline stack_sums_t stack_sums_push(stack_sums_t s, uintptr_t f) {
    uint64_t x = f * 0x9E3779B97F4A7C15ULL, y = (f ^ 0x5851F42D4C957F2DULL) * 0xD6E8FEB86659FD93ULL;
    s.a = (x ^ (x >> 31)) + STACK_HASH_BA * s.a;
    s.b = (y ^ (y >> 29)) + STACK_HASH_BB * s.b;
    return s;
}
static inline stack_sums_t stack_sums(const uintptr_t *f, unsigned n) {
    stack_sums_t s = {0, 0};
    while (n--)
        s = stack_sums_push(s, f[n]);
    return s;
}
static inline uint64_t stack_fmix(uint64_t x) {
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ULL;
    return x ^ (x >> 33);
}
typedef struct unw_sps_s {
    const uintptr_t *sp; /* sp[k]: the stack pointer of the k-th frame returned */
    unsigned avail;      /* how many frames from there on the walker holds */
    uintptr_t end;       /* the CFA beyond the last of them: the stack's top, 0 if not known */
} unw_sps_t;
/* The calling thread's stack: *out points to up to depth return addresses, innermost first,
 * after the innermost ones that lie in [self_lo, self_hi) (the caller's own code, at most
 * UNW_OWN_FRAMES); *sums to their suffix sums, one more than returned (the last may be zero);
 * *sps (if not NULL) to their stack pointers. Valid until h's next walk. Returns their number,
 * or -1 when this stack needs libunwind (a signal frame, CFI the walker does not model, a
 * stack it does not know). */
struct unw_memo_q_s;
int unwind_stack(heap_t *h, unsigned depth, uintptr_t self_lo, uintptr_t self_hi,
                 const uintptr_t **out, const stack_sums_t **sums, unw_sps_t *sps,
                 struct unw_memo_q_s *mq);
/* The stack memo: a thread's stacks remembered whole, each with what it was interned as
 * (payload), keyed by the program's innermost frame (and the innermost Python frame). With mq,
 * unwind_stack first looks the stack up, reading again every word the walk (and the Python
 * merge) that made the entry read that its answer depends on: on a hit it returns
 * UNWIND_MEMO_HIT with mq->payload, and walks nothing (mq->check: it walks all the same, and
 * mq->hit says whether it was a hit). unwind_memo_store remembers the stack the last walk
 * with mq found, as payload; py: the Python merge of that walk ran (python_memo_save). */
#define UNWIND_MEMO_HIT (-2)
typedef struct unw_memo_q_s {
    uint32_t gen;     /* in: payloads of another generation (payload >> 32) are no hit */
    bool check;       /* in: walk anyway (TALLY_UNWIND=check compares the two) */
    bool hit;         /* in: false; out: true on a hit */
    uint64_t payload; /* out, on a hit */
} unw_memo_q_t;
void unwind_memo_store(heap_t *h, uint64_t payload, bool py);
void unwind_forget(uintptr_t lo, uintptr_t hi); /* after dlclose: code in [lo, hi) is gone */
/* The CFA of the frame that returns to ra, when its CFI rule is rsp + offset: that offset. */
bool unwind_rsp_offset(uintptr_t ra, uintptr_t *off);
/* A frame's state for unwind_caller: rip (where the frame goes on), rsp, and the callee-saved
 * registers rbp, rbx, r12..r15 (cs[]), each valid where `known` has its bit (rbp 1, cs[k] 2 << k). */
typedef struct unwind_regs_s {
    uintptr_t rip, rsp, rbp;
    uintptr_t cs[5]; /* rbx, r12, r13, r14, r15 */
    uint32_t known;
} unwind_regs_t;
/* The caller's state (the frame of the function that called unwind_getcontext's caller). */
void unwind_getcontext(unwind_regs_t *r);
/* One step out, by the DWARF CFI of r->rip, every callee-saved register followed; every word read
 * lies in [r->rsp, hi). False where the CFI cannot be followed (r unchanged). */
bool unwind_caller(unwind_regs_t *r, uintptr_t hi);
/* Bytes of this thread's stack below sp, less a page: 0 if sp is not on it (a signal's
 * alternate stack) or its bounds are not known (the walker learns them at its first walk, or
 * unwind_stack_bounds; neither allocates nor takes a lock). */
size_t unwind_stack_below(uintptr_t sp);
void unwind_stack_bounds(void);
/* At the start (prof_start): what the walker must not look up inside an allocation. */
void unwind_init(void);
/* The address range the loaded object holding pc maps (lock-free, _dl_find_object). */
bool unwind_object_range(uintptr_t pc, uintptr_t *lo, uintptr_t *hi);
typedef struct unwind_counts_s {
    uint64_t stacks;  /* walks done here */
    uint64_t foreign; /* walks handed to libunwind */
    uint64_t walked;  /* frames stepped with a rule */
    uint64_t reused;  /* frames taken from the previous stack after checking them */
    uint64_t memo;    /* stacks found whole in the thread's memo (no walk) */
} unwind_counts_t;
void unwind_counts(unwind_counts_t *sum); /* over every heap, read racily */
/* dl_iterate_phdr under the lock fork's prepare handler holds (see unwind.c): every call of the
 * library's goes through it. */
struct dl_phdr_info;
int unwind_iterate_phdr(int (*cb)(struct dl_phdr_info *, size_t, void *), void *arg);
void unwind_fork_prepare(void);
void unwind_fork_parent(void);
void unwind_fork_child(void);

/* This thread's stack as the walker knows it; false before its first walk. */
bool unwind_thread_stack(uintptr_t *lo, uintptr_t *hi);

/* ---- python.c: CPython's frames inside the profiler's stacks ------------------------------- */
/* A Python frame in a stack is a word with the top bit set: the interned code object's id and
 * the line it is at (0: none), as PY_FRAME(code, line) (docs/FORMAT.md). */
#define PY_FRAME_TAG ((uint64_t)1 << 63)
#define PY_LINE_BITS 24
#define PY_FRAME(code, line) (PY_FRAME_TAG | (uint64_t)(code) << PY_LINE_BITS | (uint64_t)(line))
void python_init(void);     /* prof_start: is this process a CPython we know? */
void python_dlopened(void); /* dlopen, before it loads: look again, if not found yet */
extern bool python_active;  /* a CPython was found whose frames can be read */
/* The merged stack of this thread: native frames fr[0..n) innermost first, with their stack
 * pointers sp[0..n) and the outermost one's CFA sp_top (sp NULL: match CPython's eval frames
 * by their symbol; sp_top 0: unknown), each frame of CPython's eval loop replaced by the
 * Python frames it runs, cut at cap frames (no frame beyond is read). python_merge finds the
 * runs of Python frames and their words, and returns the merged stack's length, or -1 when
 * this thread runs no Python code (then fr stays the stack); *pm (the heap's, valid until its
 * next merge) describes it, and python_materialize writes it out. The profiler needs the frames themselves only for a
 * stack its thread has not seen (its cache of stacks trusts the hash), so most allocations
 * never copy the native frames. */
typedef struct py_run_s {
    uint32_t k;        /* the native frame it replaced */
    uint32_t at, n;    /* its Python frames, out[at .. at + n) of the merged stack */
    uint32_t w;        /* and their words, words[w .. w + n) */
} py_run_t;
/* The powers a stack's hash weighs its frames with by place (B^k), and those the hash of a run
 * of Python frames weighs its frames with (prof.c) */
extern uint64_t prof_pow_ba[PROF_MAX_DEPTH + 1], prof_pow_bb[PROF_MAX_DEPTH + 1];
extern uint64_t prof_pow_ra[PROF_MAX_DEPTH + 1], prof_pow_rb[PROF_MAX_DEPTH + 1];
#define PY_MAX_RUNS 64
typedef struct py_merge_s {
    unsigned nruns;
    unsigned kcut; /* the native frames fr[0..kcut) the merged stack covers */
    bool cut;      /* it was cut at cap frames: frames (native or Python) went on */
    /* What the native stack's hash sums gain when each replaced frame's term is traded for its
     * run's: stack_sums_push({0, 0}, n) plus the sum over the run of stack_sums_push({0, 0},
     * word) * prof_pow_r[j + 1], all weighed by prof_pow_b[k]. */
    stack_sums_t delta;
    py_run_t runs[PY_MAX_RUNS];
    uintptr_t words[PROF_MAX_DEPTH];
} py_merge_t;
int python_merge(heap_t *h, const uintptr_t *fr, const uintptr_t *sp, uintptr_t sp_top,
                 unsigned n, unsigned cap, const py_merge_t **pm);
/* The merged stack of m frames (python_merge's answer) into out, which must not overlap fr. */
void python_materialize(const py_merge_t *pm, const uintptr_t *fr, unsigned n, unsigned m,
                        uintptr_t *out);
/* The stack memo's Python part (unwind.c keeps it in its entries): what the last merge read
 * that its answer depends on, so that a later stack can be shown to be the same one by reading
 * those words again: the thread state (0: none, a native thread), the _PyCFrame pointers the
 * merge followed, in order, the first to the last it looked at, and at each the Python frames
 * it walked (none, or a run) with their addresses and instruction pointers (the low bit:
 * is_entry). Kept only when the merge could be replayed so (3.11 with the walker's stack
 * pointers; nothing stopped it; every word cacheable); code_epoch must not have moved since.
 * Packed as words: ts, epoch, the runs' lengths (a byte each), the _PyCFrame pointers, then
 * (address, instruction pointer) for each frame. */
#define PY_MEMO_CF 8
/* The key part: this thread's state, its innermost Python frame (address, instruction pointer
 * where it is known) and its caller's instruction pointer, zeros for none. */
typedef struct py_memo_key_s {
    uintptr_t ts, f, ip, ip2;
} py_memo_key_t;
void python_memo_key(heap_t *h, py_memo_key_t *k);
/* The last merge's trace into w[0..cap): the words used, 0 if it cannot be replayed (or does
 * not fit); *ncf its _PyCFrame pointers. */
size_t python_memo_save(heap_t *h, uintptr_t *w, size_t cap, unsigned *ncf);
/* Whether the merge traced in w would read the same words now (ts from python_memo_key). */
bool python_memo_same(const uintptr_t *w, unsigned ncf, uintptr_t ts);
/* all mode: the block [start, start + size) is being freed and was marked by prof_watch_code:
 * it held a code object the profiler interned. */
void python_code_freed(uintptr_t start, size_t size);
/* For the dump: the header's fields, the totals', and the pycode records. */
void python_put_header(fmt_t *f);
void python_put_totals(fmt_t *f);
void python_put_codes(fmt_t *f);
void python_fork_scan_lock(void); /* first of all fork's locks (python.c's scan) */
void python_fork_scan_unlock(void); /* the parent's; the child's is made anew */
void python_fork_prepare(void);
void python_fork_parent(void);
void python_fork_child(void);

/* ---- dump.c ------------------------------------------------------------------------------ */
void prof_dump_at_exit(void *unused); /* the exit handler (__cxa_atexit) */
void dump_put_enc(fmt_t *f, const char *s); /* text, with what a reader could split on as %XX */
void prof_dump_init(void); /* after prof_start: the pid, and the signal/interval helper */
void prof_dump_fork_child(void);
/* The dump when a fatal signal ends the program (sig.c); crash: a fault or abort, when the
 * heap may be broken (no leak check then). */
void prof_dump_fatal(int sig, bool crash);
/* This thread is inside the library's own code, where it may hold a lock a dump takes. */
bool prof_thread_busy(void);

/* ---- sig.c: the fatal signals' handler, hidden behind wrappers of sigaction and signal ----- */
void sig_init(void);       /* from prof_dump_init: the handlers, where the program left SIG_DFL */
void sig_fork_child(void); /* the child of a fork: no dump in progress */
void prof_dump_fork_prepare(void);
void prof_dump_fork_parent(void);
void prof_dump_helper_check(void);
/* dlclose, before: remembers the module; *lo, *hi get its range (0, 0 if not found) */
void prof_module_closing(uintptr_t base, const char *name, uintptr_t *lo, uintptr_t *hi);
void prof_modules_changed(uintptr_t lo, uintptr_t hi);       /* dlclose, after */
/* The walker met code of a module (build_id in hex or "-") after some module was unloaded:
 * a module loaded where an unloaded one was starts a new generation (prof.h). */
void prof_module_seen(uintptr_t base, uintptr_t lo, uintptr_t hi, const char *build_id);
struct dl_phdr_info;
void prof_build_id(const struct dl_phdr_info *info, char out[65]); /* hex, or "-" */
/* The address range [*lo, *hi) an ELF object's PT_LOAD segments cover; *hi is 0 if none. */
void prof_load_range(const struct dl_phdr_info *info, uintptr_t *lo, uintptr_t *hi);

/* ---- stats.c ------------------------------------------------------------------------------ */
void stats_print_at_exit(void *unused); /* the exit handler (__cxa_atexit) */
struct tally_stats;
void stats_collect(struct tally_stats *s);
void stats_collect_pools(struct tally_stats *s); /* the same without glibc's system_heap_bytes */
uint64_t pool_pending_remote(const pool_t *p); /* remote frees not yet collected (bounded walk) */

#endif /* TALLY_INTERNAL_H */
