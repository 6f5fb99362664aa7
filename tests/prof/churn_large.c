/* churn_large.c: 1,000 live blocks above 512 bytes, replaced N times (argv[1], default 5
 * million), then 64 threads that come and go, each replacing blocks too (tests/prof/churn.sh).
 * Prints its peak RSS after the first fifth of the replacements and at the end: the profiler's
 * tables must stay proportional to what is live, so the two must be about the same. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static long rss_kb(void) {
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long kb = -1;
    while (f && fgets(line, sizeof line, f))
        if (strncmp(line, "VmRSS:", 6) == 0)
            kb = strtol(line + 6, NULL, 10);
    if (f)
        fclose(f);
    return kb;
}

static void *slots[1000];

static void churn(unsigned long n, unsigned long seed) {
    for (unsigned long i = 0; i < n; i++) {
        unsigned long k = (i * 2654435761u + seed) % 1000;
        free(slots[k]);
        slots[k] = malloc(600 + (i % 4000));
    }
}

static void *worker(void *arg) {
    void *mine[16];
    for (int i = 0; i < 16; i++)
        mine[i] = malloc(1000 + (size_t)i);
    for (int i = 0; i < 16; i++)
        free(mine[i]);
    (void)arg;
    return NULL;
}

int main(int argc, char **argv) {
    unsigned long n = argc > 1 ? strtoul(argv[1], NULL, 10) : 5000000;
    churn(n / 5, 1);
    long early = rss_kb();
    churn(n - n / 5, 2);
    long mid = rss_kb();
    for (int round = 0; round < 250; round++) {
        pthread_t t[64];
        for (int i = 0; i < 64; i++)
            pthread_create(&t[i], NULL, worker, NULL);
        for (int i = 0; i < 64; i++)
            pthread_join(t[i], NULL);
    }
    long late = rss_kb();
    printf("%ld %ld %ld\n", early, mid, late);
    return 0;
}
