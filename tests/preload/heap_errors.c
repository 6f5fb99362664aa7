/* heap_errors.c: heap misuse that glibc's malloc stops with a message and abort(), and that
 * tallymalloc must stop too, with no option set (tests/preload/heap_errors.sh). One per
 * argument; `fine` does everything right, near every error, and must run to its end.
 *   double         free(p); free(p)
 *   double_later   free(p), other blocks of its class come and go, free(p) again
 *   double_thread  another thread frees p, then main frees it again
 *   double_cxx     delete twice (C++ reaches free through operator delete)
 *   realloc_freed  realloc of a freed block
 *   interior       free of a pointer 16 bytes into a block
 *   misaligned     free of a pointer 3 bytes into a block
 *   never          free of a pointer into a pool, on a block never handed out
 *   beyond         free of a pointer in the allocator's range, beyond what it has made */
#include <malloc.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void *volatile keep[64];
static void *volatile hold;

/* Through a volatile pointer: the compiler must not see what is freed. */
static void (*volatile release)(void *) = free;

/* A block of n bytes from the allocator's pools, when there are any: in the default sample mode
 * one request in many is served by glibc (the profiler tracks it there), and glibc would then
 * catch the misuse itself. Told apart by the usable size: a pool block has its whole class
 * (n rounded up to 16), a glibc chunk n rounded to 8 past 16 bytes, minus its header (so never
 * a multiple of 16 for these sizes). Without the library, the first block. */
static void *pool_block(size_t n) {
    void *first = malloc(n);
    for (int i = 0; i < 16 && malloc_usable_size(first) != ((n + 15) & ~(size_t)15); i++)
        first = malloc(n); /* the glibc block stays allocated: nothing else changes */
    return first;
}

static void *other(void *p) {
    release(p);
    return NULL;
}

int main(int argc, char **argv) {
    const char *c = argc > 1 ? argv[1] : "";
    char *p = pool_block(40);
    memset(p, 'x', 40);
    if (!strcmp(c, "fine")) {
        /* every legal use next to the illegal ones: a block whose word 1 holds whatever the
         * program wrote, freed and taken again; blocks of every class; realloc in place */
        for (int round = 0; round < 1000; round++) {
            for (int i = 0; i < 64; i++) {
                keep[i] = malloc((size_t)(i * 8 + 1));
                memset(keep[i], round, (size_t)(i * 8 + 1));
            }
            for (int i = 0; i < 64; i += 2)
                release(keep[i]);
            for (int i = 1; i < 64; i += 2)
                keep[i] = realloc(keep[i], (size_t)(i * 8));
            for (int i = 1; i < 64; i += 2)
                release(keep[i]);
        }
        uint64_t *q = malloc(16); /* a 16-byte block: both its words are the program's */
        q[0] = q[1] = UINT64_MAX;
        release(q);
        q = malloc(16);
        release(q);
        release(p);
        puts("fine");
        return 0;
    }
    if (!strcmp(c, "double")) {
        release(p);
        release(p);
    } else if (!strcmp(c, "double_later")) {
        release(p);
        for (int i = 0; i < 64; i++)
            keep[i] = malloc(40);
        for (int i = 0; i < 64; i++)
            release(keep[i]);
        release(p);
    } else if (!strcmp(c, "double_thread")) {
        pthread_t t;
        if (pthread_create(&t, NULL, other, p) != 0 || pthread_join(t, NULL) != 0)
            return 3;
        release(p);
    } else if (!strcmp(c, "realloc_freed")) {
        release(p);
        hold = realloc(p, 80);
    } else if (!strcmp(c, "interior")) {
        release(p + 16);
    } else if (!strcmp(c, "misaligned")) {
        release(p + 3);
    } else if (!strcmp(c, "never")) {
        char *q = pool_block(48);
        release(q + 48 * 100);
    } else if (!strcmp(c, "beyond")) {
        release(p + ((uintptr_t)1 << 30));
    } else {
        return 2;
    }
    puts("survived");
    return 0;
}
