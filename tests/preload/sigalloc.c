/* sigalloc.c: a signal handler that allocates, while the interrupted code allocates too
 * (tests/preload/sigalloc.sh). malloc in a signal handler is undefined behaviour, and glibc
 * alone may crash on it; a profiler must not turn it into a hang (it once waited, in the
 * handler, for a lock the interrupted code held). The large blocks are all above glibc's mmap
 * threshold, which is fixed, and larger than the free space at the top of glibc's heap can be,
 * so that glibc serves every one with mmap and its heap stays out of the way: glibc alone
 * survives this. (Below that size the free space at the top of glibc's heap serves them whatever
 * the threshold: glibc makes its heap, 132 KiB, at its first allocation, its thread cache's. The
 * blocks were 70 to 120 KB, so they came from the top, and a handler's malloc that came in while
 * the program's was splitting it corrupted the heap: "malloc(): corrupted top size", seen once in
 * make check under load. That is the program's undefined behaviour, with or without a library;
 * the test is of what the library adds.) Runs for 2000 timer ticks, or argv[1]: with the heap
 * checks on, each 300 KB block is filled, poisoned and scanned, fresh pages every time, and a
 * tick can take milliseconds on a loaded VM (a run of 2000 once took 30 s). */
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

static volatile sig_atomic_t ticks, stopping;

/* The next tick comes 200 us after this one's handler returns, not 200 us after it began: with
 * the heap checks on, a handler on a loaded VM can take longer than that, and a periodic timer
 * then kept the handler running back to back, the program starved between them, never reaching
 * the test of its loop (tens of thousands of ticks in 15 s, seen in make check under load).
 * setitimer is not on POSIX's list of async-signal-safe functions, but glibc's is the bare
 * system call, which is. */
static void arm(void) {
    struct itimerval once = {{0, 0}, {0, 200}};
    setitimer(ITIMER_REAL, &once, NULL);
}

static void on_tick(int sig) {
    (void)sig;
    void *volatile p = malloc(300000 + (size_t)(ticks % 64) * 16); /* glibc's (mmap), tracked */
    void *volatile q = malloc(24);
    free(q);
    free(p);
    ticks++;
    if (!stopping)
        arm();
}

int main(int argc, char **argv) {
    long want = argc > 1 ? atol(argv[1]) : 2000;
    mallopt(M_MMAP_THRESHOLD, 65536);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_tick;
    sa.sa_flags = SA_RESTART;
    sigaction(SIGALRM, &sa, NULL);
    arm();
    void *keep[32] = {0};
    for (unsigned long i = 0; ticks < want; i++) {
        unsigned k = (unsigned)(i * 2654435761u) % 32;
        free(keep[k]);
        keep[k] = malloc(290000 + (i % 50000));
    }
    stopping = 1; /* a handler from now on does not arm the timer again */
    struct itimerval off = {{0, 0}, {0, 0}};
    setitimer(ITIMER_REAL, &off, NULL);
    puts("sigalloc done");
    return 0;
}
