/* A program that allocates at a known site, says "ready", then sits idle (no allocation) until
 * its stdin closes: for dumps requested by signal (tests/prof/signal.sh). It also counts the
 * SIGUSR1s it gets, to show the program's own signals still reach it. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static volatile sig_atomic_t usr1;

static void on_usr1(int sig) {
    (void)sig;
    usr1++;
}

__attribute__((noinline)) void site_idle(void **out) {
    for (int i = 0; i < 1000; i++)
        out[i] = malloc(100);
}

int main(void) {
    static void *keep[1000];
    signal(SIGUSR1, on_usr1);
    site_idle(keep);
    printf("ready\n");
    fflush(stdout);
    char buf[64];
    while (read(0, buf, sizeof buf) != 0)
        ;
    printf("usr1=%d\n", (int)usr1);
    return 0;
}
