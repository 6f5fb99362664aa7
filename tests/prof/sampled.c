/* Known allocations for the sample-mode test (tests/prof/sampled.sh): many small blocks kept,
 * a heavy churn of temporaries, and large blocks that are always sampled. */
#include <stdlib.h>
#include <stdio.h>

#define NOINLINE __attribute__((noinline))

static void *many[200000];
static void *big[100];

/* 200000 x 64 B kept: 12.8 MB live */
NOINLINE void site_many(void) {
    for (int i = 0; i < 200000; i++)
        many[i] = malloc(64);
}

/* 2000000 x 200 B, each freed at once: 400 MB allocated, all temporary */
NOINLINE void site_churn(void) {
    for (int i = 0; i < 2000000; i++) {
        char *p = malloc(200);
        p[0] = (char)i;
        free(p);
    }
}

/* 100 x 1 MiB, 50 freed: sampled with probability 1 - e^-16 each at R = 64 KiB */
NOINLINE void site_big(void) {
    for (int i = 0; i < 100; i++)
        big[i] = malloc(1 << 20);
    for (int i = 0; i < 50; i++)
        free(big[i]);
}

int main(void) {
    site_many();
    site_churn();
    site_big();
    printf("done\n");
    return 0;
}
