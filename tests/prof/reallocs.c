/* reallocs.c: every way realloc can go, for tests/prof/exact.sh, which checks the profiler's
 * figures against an exact record of every call. A 512-byte block shrunk by every amount from 1
 * to 511 bytes (in place while the new size keeps to its class or loses less than a quarter,
 * moved otherwise); blocks grown within their class, into the next ones and out of the pools;
 * glibc's blocks grown and shrunk; realloc(NULL, n) and realloc(p, 0); reallocs of the block
 * allocated last (temporary, as heaptrack counts them) and of older ones. Half of it is kept. */
#include <stdlib.h>
#include <string.h>

#define N 511

static void *volatile keep[4 * N];

int main(void) {
    unsigned k = 0;
    for (unsigned cut = 1; cut <= N; cut++) {
        char *p = malloc(512);
        memset(p, 1, 512);
        p = realloc(p, 512 - cut);
        if (!p)
            return 1;
        keep[k++] = p;
    }
    for (unsigned n = 1; n <= 1200; n += 7) { /* growing, one step at a time */
        char *p = realloc(NULL, n);
        for (unsigned m = n + 1; m < n + 40; m += 3)
            p = realloc(p, m);
        keep[k++] = p;
    }
    char *old = malloc(100), *big = malloc(5000);
    big = realloc(big, 9000);  /* glibc, grown */
    big = realloc(big, 700);   /* glibc, shrunk: stays glibc's */
    old = realloc(old, 60);    /* an older block: not temporary */
    keep[k++] = old;
    keep[k++] = big;
    char *gone = malloc(48);
    if (realloc(gone, 0) != NULL) /* frees */
        return 2;
    for (unsigned i = 0; i < k; i += 2) {
        free(keep[i]);
        keep[i] = NULL;
    }
    return 0;
}
