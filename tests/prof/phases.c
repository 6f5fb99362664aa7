/* Memory over time by call site, for tests/prof/phases.sh: three call sites whose live bytes
 * follow known phases, with pauses between the steps so that the profiler's timeline (a point
 * at most every 10 ms) sees each phase.
 *   1. site_early: 2,000 x 1,000 B, kept (2,000,000 B live), then every block freed;
 *   2. site_late: 3,000 x 500 B, kept to the end (1,500,000 B live), while site_churn
 *      allocates and frees 64 B 102,000 times (6,528,000 B allocated, never more than 64 live). */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define NOINLINE __attribute__((noinline))

static void *early[2000], *late[3000];

static void pause_ms(long ms) {
    struct timespec t = {0, ms * 1000000L};
    nanosleep(&t, NULL);
}

/* the asm keeps each call a call (not a jump): the function is in the stack */
NOINLINE void *site_early(void) {
    void *p = malloc(1000);
    __asm__ volatile("" : : "r"(p) : "memory");
    return p;
}

NOINLINE void *site_late(void) {
    void *p = malloc(500);
    __asm__ volatile("" : : "r"(p) : "memory");
    return p;
}

static void *volatile churned; /* so that the compiler keeps the malloc and the free */

NOINLINE void site_churn(void) {
    churned = malloc(64);
    free(churned);
    __asm__ volatile("" ::: "memory");
}

int main(void) {
    for (int i = 0; i < 2000; i++) {
        early[i] = site_early();
        memset(early[i], 2, 1000);
        if (i % 100 == 99)
            pause_ms(3);
    }
    pause_ms(40);
    for (int i = 0; i < 2000; i++)
        free(early[i]);
    pause_ms(40);
    for (int i = 0; i < 3000; i++) {
        late[i] = site_late();
        for (int k = 0; k < 34; k++)
            site_churn();
        if (i % 100 == 99)
            pause_ms(3);
    }
    pause_ms(40);
    return 0;
}
