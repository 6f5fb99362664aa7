/* os.c: every memory system call the allocator makes. Exports os_reserve (the PROT_NONE range
 * that holds all arenas), os_commit (make an arena usable), os_map (metadata) and os_write_all.
 * Nothing here allocates or touches errno visibly: callers that must preserve errno save it. */
#include "internal.h"

#include <errno.h>
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

void *os_map(size_t size) {
    void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    return p == MAP_FAILED ? NULL : p;
}

void os_unmap(void *p, size_t size) {
    munmap(p, size);
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
