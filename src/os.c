/* os.c: every memory system call the allocator makes. Exports os_reserve (the PROT_NONE range
 * that holds all arenas), os_commit (make an arena usable), os_map (metadata), os_write_all, and
 * the registry of our metadata mappings that the leak check leaves out of its roots.
 * Nothing here allocates or touches errno visibly: callers that must preserve errno save it. */
#include "internal.h"

#include <errno.h>
#include <stdatomic.h>
#include <sys/mman.h>
#include <unistd.h>

void *os_reserve(size_t *size) {
    /* Halve on failure: `ulimit -v` or a small vm.max_map_count-limited process must still run.
     * The range is address space only (MAP_NORESERVE, PROT_NONE): it costs no memory and no
     * commit charge until os_commit. */
    for (size_t want = *size; want >= RESERVE_MIN; want /= 2) {
        size_t len = want + ARENA_SIZE; /* slack to align the start to an arena boundary */
        void *p = mmap(NULL, len, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (p == MAP_FAILED)
            continue;
        uintptr_t start = ((uintptr_t)p + ARENA_SIZE - 1) & ~(uintptr_t)(ARENA_SIZE - 1);
        uintptr_t end = start + want;
        if (start > (uintptr_t)p)
            munmap(p, start - (uintptr_t)p);
        if ((uintptr_t)p + len > end)
            munmap((void *)end, (uintptr_t)p + len - end);
        *size = want;
        return (void *)start;
    }
    *size = 0;
    return NULL;
}

bool os_commit(void *addr, size_t size) {
    return mprotect(addr, size, PROT_READ | PROT_WRITE) == 0;
}

/* ---- the registry of metadata mappings ------------------------------------------------------
 * Every os_map is recorded here, so that the leak check (leak.c) can leave the allocator's and
 * the profiler's own memory out of its roots: the large-block table holds the address of every
 * live large block, and would otherwise make each of them reachable. A slot with size 0 is free.
 * The lock is a spinlock held for a few instructions; the child of a fork resets it. */
#define META_MAX 16384
static struct {
    uintptr_t addr, size;
} meta[META_MAX];
static unsigned nmeta; /* slots in use or freed: [0, nmeta) */
static _Atomic bool meta_full;
static atomic_flag meta_lock = ATOMIC_FLAG_INIT;

__thread int tls_locks_held TLS_IE;

static void meta_add(void *p, size_t size) {
    spin_lock(&meta_lock);
    unsigned i = 0;
    while (i < nmeta && meta[i].size != 0)
        i++;
    if (i < META_MAX) {
        meta[i].addr = (uintptr_t)p;
        meta[i].size = size;
        if (i == nmeta)
            nmeta++;
    } else {
        atomic_store(&meta_full, true);
    }
    spin_unlock(&meta_lock);
}

static void meta_remove(void *p) {
    spin_lock(&meta_lock);
    for (unsigned i = 0; i < nmeta; i++)
        if (meta[i].addr == (uintptr_t)p && meta[i].size) {
            meta[i].size = 0;
            break;
        }
    while (nmeta > 0 && meta[nmeta - 1].size == 0)
        nmeta--;
    spin_unlock(&meta_lock);
}

unsigned os_meta_ranges(uintptr_t *out, unsigned max, bool *complete) {
    spin_lock(&meta_lock);
    unsigned n = 0;
    for (unsigned i = 0; i < nmeta && n < max; i++)
        if (meta[i].size) {
            out[2 * n] = meta[i].addr;
            out[2 * n + 1] = meta[i].addr + meta[i].size;
            n++;
        }
    *complete = !atomic_load(&meta_full) && n <= max;
    spin_unlock(&meta_lock);
    return n;
}

uint64_t os_meta_resident(void) {
    unsigned char vec[4096];
    const size_t page = 4096;
    uint64_t bytes = 0;
    for (unsigned i = 0;; i++) {
        spin_lock(&meta_lock);
        if (i >= nmeta) {
            spin_unlock(&meta_lock);
            break;
        }
        uintptr_t a = meta[i].addr, size = meta[i].size;
        spin_unlock(&meta_lock);
        /* a range freed meanwhile makes mincore fail (ENOMEM): it counts nothing */
        for (uintptr_t off = 0; off < size; off += sizeof vec * page) {
            size_t len = size - off < sizeof vec * page ? size - off : sizeof vec * page;
            int saved = errno;
            if (mincore((void *)(a + off), len, vec) != 0) {
                errno = saved;
                break;
            }
            for (size_t k = 0; k < (len + page - 1) / page; k++)
                bytes += (vec[k] & 1) ? page : 0;
        }
    }
    return bytes;
}

void os_fork_child(void) {
    atomic_flag_clear(&meta_lock);
}

void *os_map(size_t size) {
    void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        return NULL;
    meta_add(p, size);
    return p;
}

void os_unmap(void *p, size_t size) {
    meta_remove(p);
    munmap(p, size);
}

void os_discard(void *p, size_t size) {
    int saved = errno;
    madvise(p, size, MADV_DONTNEED);
    errno = saved;
}

bool os_write_all(int fd, const char *buf, size_t len) {
    int saved = errno;
    while (len > 0) {
        ssize_t n = write(fd, buf, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            errno = saved;
            return false;
        }
        buf += n;
        len -= (size_t)n;
    }
    errno = saved;
    return true;
}
