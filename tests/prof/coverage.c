/* coverage.c: known allocations for tests/prof/coverage.sh, which checks that the intervals
 * tally gives sampled estimates cover the true figures as often as they say (95%). Live memory
 * only grows until the program-wide peak (every block kept), so the peak is one moment, the
 * same in truth and in the samples; half of site_mid's blocks are freed after it.
 *   site_churn  200000 x 100 B, each freed at once (temporary)
 *   site_small  4000 x 48 B kept: about 3 samples at R = 64 KiB, sometimes none live
 *   site_mid    2000 x 1000 B kept, half of them freed after the peak
 *   site_big    3 x 256 KiB kept: each sampled with probability 1 - e^-4
 *   site_mixed  20000 x 48 B, one in 20 kept (48 KB at the peak): its samples are mostly of the
 *               freed ones, and in about half the runs none of them is live at the peak */
#include <stdio.h>
#include <stdlib.h>

#define NOINLINE __attribute__((noinline))

static void *volatile small[4000], *volatile mid[2000], *volatile big[3], *volatile mixed[1000];

NOINLINE void site_churn(void) {
    for (int i = 0; i < 200000; i++) {
        char *volatile p = malloc(100);
        p[0] = 1;
        free(p);
    }
}

NOINLINE void site_small(void) {
    for (int i = 0; i < 4000; i++)
        small[i] = malloc(48);
}

NOINLINE void site_mid(void) {
    for (int i = 0; i < 2000; i++)
        mid[i] = malloc(1000);
}

NOINLINE void site_big(void) {
    for (int i = 0; i < 3; i++)
        big[i] = malloc(256 << 10);
}

NOINLINE void site_mixed(void) {
    for (int i = 0; i < 20000; i++) {
        char *volatile p = malloc(48);
        if (i % 20 == 0)
            mixed[i / 20] = p;
        else
            free(p);
    }
}

int main(void) {
    site_churn();
    site_mixed();
    site_small();
    site_mid();
    site_big();
    for (int i = 0; i < 2000; i += 2)
        free(mid[i]);
    puts("done");
    return 0;
}
