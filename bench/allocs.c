/* allocs.c - 10 million malloc/free pairs from one call site, 4096 live blocks of 16..215 bytes:
 * the allocation-bound C program on which bench/prof.sh compares the profiler with heaptrack.
 * Prints "ok". */
#include <stdlib.h>
#include <stdio.h>
__attribute__((noinline)) void *node(size_t n) { return malloc(n); }
__attribute__((noinline)) void work(void **slot, unsigned n, unsigned long long *rng) {
    for (unsigned i = 0; i < n; i++) {
        *rng = *rng * 6364136223846793005ULL + 1442695040888963407ULL;
        unsigned k = (unsigned)(*rng >> 33) % 4096;
        free(slot[k]);
        slot[k] = node(16 + (*rng >> 20) % 200);
    }
}
int main(void) {
    static void *slot[4096];
    unsigned long long rng = 42;
    for (int r = 0; r < 10; r++) work(slot, 1000000, &rng);
    for (int k = 0; k < 4096; k++) free(slot[k]);
    printf("ok\n");
    return 0;
}
