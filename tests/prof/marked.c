/* marked.c: sample mode's sampled blocks (glibc's blocks with a header the library puts before
 * them, see alloc.c) through every entry point of the malloc API, for tests/prof/sampled.sh.
 * Every block is filled with a pattern and checked before it is freed or after it is moved;
 * calloc's blocks must be zero, aligned ones aligned, malloc_usable_size at least what was
 * asked. Blocks from every entry point are reallocated across the 512-byte limit both ways and
 * freed; the blocks of keep_site() stay live. Prints a checksum of what it read, the same
 * whatever the allocator. Exit status 1 on the first wrong byte, alignment or size.
 * `marked bigcalloc`: one calloc of 1 GiB (always sampled), read and written at two bytes.
 * `marked biggrow`: one block grown by realloc from 1 MiB to 512 MiB, written at its ends. */
#define _GNU_SOURCE
#include <malloc.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static unsigned long sum;

static void fill(unsigned char *p, size_t n, unsigned seed) {
    for (size_t i = 0; i < n; i++)
        p[i] = (unsigned char)(seed + i * 7);
}

static void check(const unsigned char *p, size_t n, unsigned seed, const char *what) {
    for (size_t i = 0; i < n; i++) {
        if (p[i] != (unsigned char)(seed + i * 7)) {
            fprintf(stderr, "marked: %s: byte %zu of %zu is wrong\n", what, i, n);
            exit(1);
        }
        sum += p[i];
    }
}

static void usable(void *p, size_t n, const char *what) {
    if (malloc_usable_size(p) < n) {
        fprintf(stderr, "marked: %s: usable size %zu below %zu\n", what, malloc_usable_size(p), n);
        exit(1);
    }
}

static void aligned(void *p, size_t a, const char *what) {
    if (p == NULL || (uintptr_t)p % a != 0) {
        fprintf(stderr, "marked: %s: %p not aligned to %zu\n", what, p, a);
        exit(1);
    }
}

/* A block from entry point k of n bytes, filled. */
static __attribute__((noinline)) void *make(unsigned k, size_t n, unsigned seed) {
    void *p = NULL;
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    switch (k % 7) {
    case 0: p = malloc(n); break;
    case 1:
        p = calloc(1, n);
        for (size_t i = 0; p && i < n; i++)
            if (((unsigned char *)p)[i] != 0) {
                fprintf(stderr, "marked: calloc: byte %zu of %zu is not zero\n", i, n);
                exit(1);
            }
        break;
    case 2: p = memalign(64, n); aligned(p, 64, "memalign"); break;
    case 3: if (posix_memalign(&p, 256, n) != 0) p = NULL; aligned(p, 256, "posix_memalign"); break;
    case 4: p = aligned_alloc(4096, n); aligned(p, 4096, "aligned_alloc"); break;
    case 5: p = valloc(n); aligned(p, page, "valloc"); break;
    case 6: p = realloc(NULL, n); break;
    }
    if (p == NULL) {
        fprintf(stderr, "marked: no memory for %zu bytes\n", n);
        exit(1);
    }
    usable(p, n, "make");
    fill(p, n, seed);
    return p;
}

static void *keep[64];

static __attribute__((noinline)) void keep_site(unsigned i) {
    keep[i] = make(i, 700 + 13 * i, i);
}

int main(int argc, char **argv) {
    if (argc > 1 && strcmp(argv[1], "bigcalloc") == 0) {
        /* a sampled calloc of 1 GiB: zero, and pages untouched until written (peak RSS small) */
        unsigned char *p = calloc(1, (size_t)1 << 30);
        if (p == NULL || p[12345] != 0 || p[((size_t)1 << 30) - 1] != 0)
            return 1;
        p[12345] = 7;
        printf("%d\n", p[12345] + p[99999]);
        free(p);
        return 0;
    }
    if (argc > 1 && strcmp(argv[1], "biggrow") == 0) {
        /* a sampled block grown from 1 MiB to 512 MiB by realloc, its last byte written at each
         * size: glibc remaps it, and nothing else of it becomes resident */
        size_t n = (size_t)1 << 20;
        unsigned char *p = malloc(n);
        if (p == NULL)
            return 1;
        p[0] = 5;
        for (int i = 0; i < 9; i++) {
            p = realloc(p, n * 2);
            if (p == NULL || p[0] != 5 || p[n - 1] != (i ? 6 : p[n - 1]))
                return 1;
            n *= 2;
            p[n - 1] = 6;
        }
        printf("%d\n", p[0] + p[n - 1]);
        free(p);
        return 0;
    }
    static const size_t sizes[] = {1, 24, 100, 511, 512, 513, 900, 4000, 70000, 300000};
    const unsigned ns = sizeof sizes / sizeof sizes[0];
    for (unsigned round = 0; round < 40; round++) {
        for (unsigned k = 0; k < 7; k++) {
            for (unsigned i = 0; i < ns; i++) {
                size_t n = sizes[i], m = sizes[(i + round + 1) % ns];
                unsigned seed = round * 31 + k * 7 + i;
                unsigned char *p = make(k, n, seed);
                /* moved or resized across the limit and back: what was there stays */
                unsigned char *q = realloc(p, m);
                if (q == NULL)
                    return 1;
                check(q, n < m ? n : m, seed, "realloc");
                usable(q, m, "realloc");
                fill(q, m, seed + 1);
                q = realloc(q, n);
                if (q == NULL)
                    return 1;
                check(q, n < m ? n : m, seed + 1, "realloc back");
                free(q);
            }
        }
        void *pv = pvalloc(5000); /* rounded up to whole pages */
        aligned(pv, (size_t)sysconf(_SC_PAGESIZE), "pvalloc");
        usable(pv, 5000, "pvalloc");
        fill(pv, 5000, round);
        check(pv, 5000, round, "pvalloc");
        free(pv);
    }
    for (unsigned i = 0; i < 64; i++)
        keep_site(i);
    for (unsigned i = 0; i < 64; i++)
        check(keep[i], 700 + 13 * i, i, "kept");
    printf("sum=%lu\n", sum);
    return 0;
}
