/* tally.h: the public interface of libtallymalloc.
 *
 * Most programs never include this: preloading the library (LD_PRELOAD=libtallymalloc.so)
 * replaces malloc and friends with no recompiling. A program that links the library directly
 * (-ltallymalloc) can also read the allocator's statistics with the functions below.
 *
 * Self-contained and usable from C and C++. */
#ifndef TALLY_H
#define TALLY_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define TALLY_VERSION_MAJOR 0
#define TALLY_VERSION_MINOR 1
#define TALLY_VERSION_PATCH 0
#define TALLY_VERSION_STRING "0.1.0"

#define TALLY_NCLASSES 32 /* size classes 16, 32, ..., 512 bytes */

/* One size class. "Cumulative" figures count every request since the start; the others are
 * the state at the moment of the call. */
struct tally_class_stats {
    uint64_t size;            /* block size of the class in bytes */
    uint64_t pools;           /* pools of this class now */
    uint64_t blocks_in_use;   /* blocks handed out and not freed */
    uint64_t free_blocks;     /* blocks free (or never carved) in those pools, cached included */
    uint64_t blocks_cached;   /* free blocks held in the threads' bins (part of free_blocks) */
    uint64_t mallocs;         /* cumulative requests served */
    uint64_t bytes_requested; /* cumulative bytes asked for by those requests */
    uint64_t bytes_granted;   /* cumulative bytes handed out (mallocs * size) */
    uint64_t bytes_held;      /* pools * pool size */
};

/* The whole allocator. The arena figures add up exactly:
 *   arena_bytes = in_use_bytes + free_block_bytes + pool_overhead_bytes
 *                 + empty_pool_bytes + never_used_bytes
 * and fragmentation = 1 - in_use_bytes / arena_bytes. Arenas are never returned to the
 * operating system, so arena_bytes never shrinks. */
struct tally_stats {
    uint32_t struct_size; /* set by tally_stats_get to the size it filled */
    uint32_t nclasses;    /* TALLY_NCLASSES */
    struct tally_class_stats classes[TALLY_NCLASSES];
    uint64_t reserve_bytes;       /* address space reserved for arenas */
    uint64_t arenas;              /* arenas mapped */
    uint64_t arena_bytes;         /* arenas * arena size */
    uint64_t in_use_bytes;        /* bytes in blocks handed out */
    uint64_t free_block_bytes;    /* bytes in free or uncarved blocks of pools in use */
    uint64_t pool_overhead_bytes; /* pool headers and the tail no block fits in */
    uint64_t empty_pool_bytes;    /* pools with no block in use, kept for reuse by any class */
    uint64_t never_used_bytes;    /* arena space not yet carved into pools */
    double fragmentation;         /* 1 - in_use_bytes / arena_bytes; 0 with no arena */
    uint64_t small_mallocs;       /* cumulative requests served by the pools */
    uint64_t large_mallocs;       /* cumulative requests sent to the system malloc */
    uint64_t large_bytes_requested;
    uint64_t remote_frees;        /* blocks a thread's bin gave back to another thread's pool */
    uint64_t pools_adopted;       /* pools taken over from other threads */
    uint64_t system_heap_bytes;   /* glibc's heap (mallinfo2: arena + mmapped) */
    uint64_t threads;             /* thread heaps made so far (reused after thread exit) */
};

/* The library's version, "0.1.0". */
const char *tally_version(void);

/* Fills *out (of `size` bytes: pass sizeof(struct tally_stats)). Returns 0, or -1 when the
 * allocator is inactive (its address range could not be reserved) or size is too small. */
int tally_stats_get(struct tally_stats *out, size_t size);

/* Writes the statistics table to fd: as text, or as one JSON document if json != 0, the same
 * output as TALLY_STATS=1 / TALLY_STATS=json at exit. Returns 0, or -1 on bad arguments. */
int tally_stats_print(int fd, int json);

/* Writes a profile dump now (docs/FORMAT.md) to `path`, or, if path is NULL, to TALLY_OUT or
 * else tally.<program>.<pid>.tly in the working directory; %p and %e expand to the pid and the
 * program name. Returns 0, or -1 if profiling is off (TALLY_PROFILE=off) or the file cannot be
 * written (one line on stderr says why). */
int tally_dump(const char *path);

/* The same with the leak check first, as at exit under TALLY_LEAKS: every live block classified
 * as valgrind's memcheck classifies it (definitely, indirectly, possibly lost, still reachable),
 * the kinds in the dump, the program going on afterwards (LeakSanitizer's
 * __lsan_do_recoverable_leak_check). The other threads are stopped for the check, by a signal:
 * a system call of theirs may return EINTR. Needs every allocation recorded (TALLY_PROFILE=all,
 * or TALLY_LEAKS); returns 0, or -1 with one line on stderr. With TALLY_LEAKS set, the dumps
 * TALLY_SIGNAL and TALLY_INTERVAL ask for have the check too. */
int tally_dump_leaks(const char *path);

#ifdef __cplusplus
}
#endif

#endif /* TALLY_H */
