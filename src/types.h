/* types.h: the design of tallymalloc's small-object allocator, as data.
 *
 * Every struct and tunable lives here, with the reasoning next to it. Other files include this
 * through internal.h; nothing outside src/ sees it.
 *
 * THE PICTURE
 *
 *   reserved range [base, base + reserve)    PROT_NONE + MAP_NORESERVE, 1 MiB aligned, 64 GiB
 *   |- arena 0 (1 MiB, made RW on demand) -|- arena 1 -|- ... never returned to the OS
 *   |pool|pool|pool| ... 64 pools of 16 KiB
 *   pool = | header 128 B | block | block | ... |   blocks of one size class (16..512 B)
 *
 *   Ownership test: p - base < reserve. One subtraction and one compare; it reads no memory, so
 *   pointers from glibc, from before we were loaded, or from memalign are safe to test. Arenas
 *   are bump-allocated inside the range, so "inside the range" and "ours" are the same thing.
 *
 * SIZE CLASSES
 *   class c serves requests of (c*16, (c+1)*16] bytes: 16, 32, ..., 512 (pymalloc's 64-bit
 *   geometry). malloc(0) is class 0, so it returns a unique pointer. Index = (n - 1) >> 4.
 *
 * POOL STATES, and what moves a pool between them
 *   FRESH    never used; part of an arena beyond the carve mark. -> OWNED when a heap needs a pool.
 *   OWNED    in exactly one thread heap's list for its class; only that thread touches `free`,
 *            `used`, `next`/`prev`. Other threads free into it by a CAS push on `thread_free`.
 *            -> FULL when it has no free block left; -> EMPTY when its last block comes back.
 *            -> UNOWNED when its thread exits (abandoned).
 *   FULL     still owned, but in the heap's full list, not its class list (pymalloc: full pools
 *            are in no used list). A flush of the owner's bin that returns a block to it moves
 *            it back. TF_FULL is set in `thread_free`: the first remote free clears it in
 *            its push CAS and so wins the duty to tell the owner, by pushing the pool on the
 *            owner heap's lock-free `delayed` stack (mimalloc v2's delayed free). The owner
 *            drains that stack in its slow path and moves those pools back to the class list.
 *   UNOWNED  abandoned by an exited thread: on its class's global abandoned list, with the
 *            TF_UNOWNED bit set in `thread_free` (the "ownership bit in the thread-free word" of
 *            mimalloc v3). Frees into it are plain remote pushes. A heap that needs a pool of the
 *            class claims it by clearing the bit with a CAS, collects the pushed blocks and owns
 *            it (-> OWNED). Frees never adopt a pool: a thread that frees much and allocates
 *            little (a consumer, or main joining workers) would hoard pools.
 *   EMPTY    no live block. Kept in the heap's small cache, else on the global empty stack, and
 *            reused by any class. Never unmapped (arenas are never returned to the OS).
 *
 * THREAD MODEL
 *   Each thread has a heap (initial-exec TLS pointer; a static empty heap until first use, so the
 *   fast path never asks "initialised?"). In front of its pools, a heap has a bin per class (see
 *   bin_t): malloc pops a block pointer, free pushes one, whichever thread owns the block's pool,
 *   with no atomic instruction and no lock. Pools are visited only in batches: a refill takes
 *   half a bin from the heap's own pools; a flush gives the older half back, to pools the heap
 *   owns directly and to other pools by a CAS on their remote list (one per run of blocks). Global state (the arena bump pointer, the empty
 *   stack, the abandoned lists) sits behind one mutex that only slow paths take, at most once per
 *   pool's worth of allocations.
 */
#ifndef TALLY_TYPES_H
#define TALLY_TYPES_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

/* ---- Geometry (pymalloc's 64-bit constants, CPython >= 3.10) ------------------------------ */
#define ALIGNMENT_SHIFT 4
#define ALIGNMENT ((size_t)1 << ALIGNMENT_SHIFT) /* 16: x86-64 max_align_t */
#define SMALL_MAX ((size_t)512)                  /* largest request served by pools */
#define NCLASSES ((unsigned)(SMALL_MAX >> ALIGNMENT_SHIFT)) /* 32 */
#define POOL_SHIFT 14
#define POOL_SIZE ((size_t)1 << POOL_SHIFT) /* 16 KiB */
#define ARENA_SHIFT 20
#define ARENA_SIZE ((size_t)1 << ARENA_SHIFT) /* 1 MiB */
#define POOLS_PER_ARENA (ARENA_SIZE / POOL_SIZE) /* 64: arenas are aligned, none is lost */
#define POOL_HEADER ((size_t)128)               /* two cache lines, see pool_t */
#define RESERVE_DEFAULT ((size_t)64 << 30)      /* 64 GiB of address space, not memory */
#define RESERVE_MIN ((size_t)16 << 20)          /* below this we give up and use glibc only */

/* Thread bins (see heap_t): each class caches up to BIN_BYTES worth of free blocks, at least
 * BIN_MIN and at most BIN_MAX of them. A bin that runs dry is refilled with half its capacity; a
 * bin that overflows returns its older half to the pools. */
#define BIN_BYTES ((size_t)16384)
#define BIN_MIN 32u
#define BIN_MAX 128u
#define BIN_CAP(c)                                                                             \
    ((unsigned)(BIN_BYTES / CLASS_SIZE(c)) < BIN_MIN   ? BIN_MIN                                \
     : (unsigned)(BIN_BYTES / CLASS_SIZE(c)) > BIN_MAX ? BIN_MAX                                \
                                                       : (unsigned)(BIN_BYTES / CLASS_SIZE(c)))
#define HEAP_EMPTY_CACHE 4 /* empty pools a heap keeps before giving them to the global stack */

#define CLASS_SIZE(c) (((size_t)(c) + 1) << ALIGNMENT_SHIFT)
#define POOL_CAPACITY(c) ((unsigned)((POOL_SIZE - POOL_HEADER) / CLASS_SIZE(c)))

_Static_assert(SMALL_MAX % ALIGNMENT == 0, "classes must tile the small range");
_Static_assert(NCLASSES == 32, "pymalloc's 64-bit geometry has 32 classes");
_Static_assert(ARENA_SIZE % POOL_SIZE == 0, "arenas hold whole pools");
_Static_assert(POOL_HEADER % ALIGNMENT == 0, "first block must be 16-byte aligned");
_Static_assert((POOL_SIZE - POOL_HEADER) / SMALL_MAX == 31, "31 blocks of 512 B per pool");
_Static_assert((POOL_SIZE - POOL_HEADER) / ALIGNMENT == 1016, "1016 blocks of 16 B per pool");

/* ---- Blocks and pools --------------------------------------------------------------------- */
typedef struct block_s {
    struct block_s *next; /* intrusive free list: the first word of a free block */
} block_t;

struct heap_s;

enum pool_state { POOL_FRESH = 0, POOL_OWNED, POOL_FULL, POOL_UNOWNED, POOL_EMPTY };

/* Low bits of thread_free (blocks are 16-aligned, so 4 bits are free). At most one is set. */
#define TF_UNOWNED ((uintptr_t)1) /* abandoned: a heap claims it from the abandoned list */
#define TF_FULL ((uintptr_t)2)    /* owned and full: the next remote free notifies the owner */
#define TF_FLAGS ((uintptr_t)15)

typedef struct pool_s {
    /* Line 0: the owner's. Read and written without atomics by the owning thread only. */
    block_t *free;        /* LIFO free list; NULL when exhausted */
    uint32_t used;        /* blocks handed out and not yet collected back */
    uint16_t carved;      /* blocks carved so far; the rest of the pool is untouched */
    uint16_t carve_end;   /* carved * bsize: the bytes past the header handed out so far (free's
                           * check that a pointer is a block; read by any thread) */
    uint32_t capacity;    /* POOL_CAPACITY(szidx) */
    uint32_t bsize;       /* CLASS_SIZE(szidx) */
    uint8_t szidx;        /* size class */
    uint8_t state;        /* enum pool_state; for stats and debug checks */
    uint8_t on_abandoned; /* on a global abandoned list (guarded by the global lock) */
    uint8_t in_delayed;   /* owner knows a notifier has it (or will put it) on the delayed stack */
    uint32_t div_magic;   /* ceil(2^32 / bsize): off is a multiple of bsize iff
                           * (uint32_t)(off * div_magic) < div_magic, for off < 2^14 (Lemire,
                           * Kaser and Kurz 2019): free's check, without a division */
    struct heap_s *_Atomic owner; /* heap that owns it, NULL when unowned or empty */
    struct pool_s *next;          /* heap's class list, or its full list (owner) */
    struct pool_s *prev;
    /* The profiler's side table (prof.h), one entry per block; NULL when no block is tracked.
     * On this line because every free reads it. */
    struct ptag_s *_Atomic prof;
    /* Line 1: shared. Frees from other threads push here; the owner collects. The cold fields
     * after it are touched only under the global lock or by the profiler. */
    _Alignas(64) _Atomic uintptr_t thread_free; /* block* | TF_UNOWNED */
    struct pool_s *gnext; /* global empty stack, or abandoned list (global lock) */
    struct pool_s *gprev; /* abandoned list only */
    struct pool_s *dnext; /* owner heap's delayed stack (written by the notifier) */
    uint8_t pad1[32];
} pool_t;

_Static_assert(sizeof(pool_t) == POOL_HEADER, "pool header is two cache lines");
_Static_assert(POOL_SIZE - POOL_HEADER <= UINT16_MAX, "carved and carve_end fit 16 bits");
_Static_assert(offsetof(pool_t, thread_free) == 64, "remote frees must not share the owner's line");

/* ---- Thread heaps ------------------------------------------------------------------------- */
/* A bin: a stack of free blocks of one class, as pointers in an array (jemalloc's cache_bin).
 * malloc pops, free pushes, and neither touches the block or its pool header's owner line:
 * pools are only visited in batches, when a bin runs dry (refill) or over (flush). The bins of
 * the static heaps have no slots (top == low == high), so both fast paths fall through. */
typedef struct bin_s {
    void **top;       /* next empty slot: cached blocks are [low, top) */
    void **low;       /* top == low: empty */
    void **high;      /* top == high: full */
    uint64_t nmalloc; /* small requests served from this class */
    uint64_t nreq;    /* bytes requested by them */
    uint32_t cap;     /* high - low */
    uint32_t pad[5];
} bin_t;
_Static_assert(sizeof(bin_t) == 64, "one cache line per bin");

typedef struct heap_stats_s {
    uint64_t nlarge;            /* requests sent to the system malloc */
    uint64_t nlarge_bytes;
    uint64_t nremote_free;      /* frees of blocks owned by another heap (or none) */
    uint64_t nadopt;            /* unowned pools this heap took over */
} heap_stats_t;

enum heap_kind { HEAP_REAL = 0, HEAP_EMPTY, HEAP_DEAD };

#define PROF_SCACHE 256 /* per-heap cache of interned stacks (prof.c) */

typedef struct heap_s {
    /* Bytes the heap may still allocate before the profiler looks (prof.c): decremented by
     * every request; INT64_MAX with profiling off, 0 in `all` mode, exponential in `sample`. */
    int64_t sample_left;
    uint64_t rng;
    uint64_t prof_alloc_bytes; /* bytes the profiler recorded on this thread (weighted) */
    uint64_t prof_alloc_count; /* and allocations (weighted) */
    _Alignas(64) bin_t bin[NCLASSES]; /* the fast paths touch only these */
    pool_t *cur[NCLASSES]; /* head of each class list; &pool_sentinel when the list is empty */
    pool_t *full;          /* full pools, still owned (doubly linked through next/prev) */
    uint32_t nexpect;      /* pools with in_delayed set: deliveries still to come */
    heap_stats_t stats;
    pthread_mutex_t lock;  /* held across this heap's slow paths, so fork sees it consistent */
    uint8_t kind;          /* enum heap_kind */
    uint8_t in_slow;       /* re-entered from a signal handler while in a slow path */
    uint8_t in_use;        /* registry: a live thread has it */
    uint8_t nempty;
    pool_t *empty[HEAP_EMPTY_CACHE];
    struct heap_s *reg_next; /* registry of every heap ever made (never freed, reused) */
    struct unw_cache_s *unw; /* the profiler's last stack (unwind.c), made at the first walk */
    struct py_cache_s *pyc;  /* Python frames seen last (python.c), made at the first merge */
    struct chk_q_s *chq;     /* TALLY_CHECK: the quarantine of freed blocks (check.c) */
    uint64_t nalloc_pub;     /* sample mode: its allocations added to the profiler's clock so
                              * far (prof.c's stamp_now); the owner's alone */
    /* Written by other threads: full pools that got a remote free. Its own cache line. */
    _Alignas(64) pool_t *_Atomic delayed;
    struct {
        uint64_t key, key2; /* 128 bits: a stack's keys (prof.c's stack_t) */
        uint32_t id;
        uint32_t pad;
    } scache[PROF_SCACHE];
} heap_t;
/* A real heap is followed in memory by its bins' slots, HEAP_SLOTS pointers. */

#endif /* TALLY_TYPES_H */
