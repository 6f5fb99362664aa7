/* A plugin built twice (GEN_VARIANT 1 and 2) into two files with different code at the same
 * offsets, for tests/prof/generations.sh. */
#include <stdlib.h>

#if GEN_VARIANT == 2
#define GEN_ALLOC gen_alloc_b
/* Moves gen_alloc_b away from where gen_alloc_a is in the other file. */
__attribute__((noinline)) int gen_pad(int x) {
    volatile int v = x;
    for (int i = 0; i < 40; i++)
        v = v * 31 + i;
    return v;
}
#else
#define GEN_ALLOC gen_alloc_a
#endif

void *gen_keep[64];

__attribute__((noinline)) void *GEN_ALLOC(size_t n) {
    void *p = malloc(n);
    __asm__ volatile("" ::: "memory");
    return p;
}

int gen_work(int count) {
    for (int i = 0; i < count && i < 64; i++)
        gen_keep[i] = GEN_ALLOC(24 + (size_t)i);
    return 0;
}
