/* tests/prof/fatal.c - a program ended by a signal (issue 17's dumps on fatal signals).
 * Every mode first keeps 100 blocks of 100 bytes from keep_blocks, then:
 *   raise SIG          raise(SIG), SIG one of TERM INT HUP QUIT ABRT SEGV BUS FPE ILL
 *   segv | abort       a real fault (a write to address 16) | abort()
 *   churn N            N threads allocate and free until a signal ends the program
 *   own                its own SIGTERM handler: prints "own handler", exits 3
 *   ignore             SIGTERM set to SIG_IGN, then raised: prints "ignored", exits 0
 *   query              what sigaction and signal say (SIG_DFL where the library's handler is),
 *                      then its handler on SIGTERM and back to SIG_DFL, then raise(SIGTERM)
 *   overrun            writes past a block, frees it, then faults (with TALLY_CHECK)
 *   vfork              its own SIGSEGV handler; a vfork child puts SIG_DFL back before its exec,
 *                      as CPython's subprocess does; then what sigaction says, SIG_DFL, raise(SIGSEGV)
 *   forkterm N         a thread allocates while N children are forked, each sent SIGTERM at once:
 *                      prints how many outlived it by 2 s (killed then)
 * Built twice: as fatal, whose signal() is glibc's BSD one, and as fatal_std (-std=c99
 * -DSTRICT_SYSV), whose signal() is __sysv_signal, as in any strict ISO C program. */
#ifndef STRICT_SYSV
#define _DEFAULT_SOURCE
#endif
#define _POSIX_C_SOURCE 200809L
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern pid_t vfork(void); /* not in POSIX 2008, which fatal_std asks for */

void *kept[100]; /* global: the stores stay */

__attribute__((noinline)) static void keep_blocks(void) {
    for (int i = 0; i < 100; i++)
        kept[i] = malloc(100);
}

static void *churn(void *arg) {
    (void)arg;
    void *mine[512] = {0};
    for (unsigned long i = 0;; i++) {
        unsigned k = (unsigned)(i * 2654435761u) % 512;
        free(mine[k]);
        mine[k] = malloc(16 + i % 2000);
    }
    return NULL;
}

static void on_term(int sig) {
    (void)sig;
    static const char m[] = "own handler\n";
    write(1, m, sizeof m - 1);
    _exit(3);
}

static int signum(const char *name) {
    static const struct { const char *n; int s; } t[] = {
        {"TERM", SIGTERM}, {"INT", SIGINT}, {"HUP", SIGHUP}, {"QUIT", SIGQUIT}, {"ABRT", SIGABRT},
        {"SEGV", SIGSEGV}, {"BUS", SIGBUS}, {"FPE", SIGFPE}, {"ILL", SIGILL}};
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++)
        if (strcmp(t[i].n, name) == 0)
            return t[i].s;
    return 0;
}

int main(int argc, char **argv) {
    const char *mode = argc > 1 ? argv[1] : "";
    keep_blocks();
    if (strcmp(mode, "raise") == 0 && argc > 2 && signum(argv[2])) {
        raise(signum(argv[2]));
    } else if (strcmp(mode, "segv") == 0) {
        *(volatile int *)16 = 1;
    } else if (strcmp(mode, "abort") == 0) {
        abort();
    } else if (strcmp(mode, "churn") == 0) {
        int n = argc > 2 ? atoi(argv[2]) : 2;
        pthread_t t;
        for (int i = 1; i < n; i++)
            pthread_create(&t, NULL, churn, NULL);
        printf("ready\n");
        fflush(stdout);
        churn(NULL);
    } else if (strcmp(mode, "own") == 0) {
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = on_term;
        sigaction(SIGTERM, &sa, NULL);
        raise(SIGTERM);
    } else if (strcmp(mode, "ignore") == 0) {
        signal(SIGTERM, SIG_IGN);
        raise(SIGTERM);
        printf("ignored\n");
        return 0;
    } else if (strcmp(mode, "query") == 0) {
        struct sigaction sa, back;
        sigaction(SIGINT, NULL, &sa);
        printf("sigaction SIGINT: %s\n", sa.sa_handler == SIG_DFL ? "SIG_DFL" : "a handler");
        void (*was)(int) = signal(SIGTERM, on_term);
        printf("signal SIGTERM was: %s\n", was == SIG_DFL ? "SIG_DFL" : "a handler");
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = SIG_DFL;
        sigaction(SIGTERM, &sa, &back);
        printf("sigaction SIGTERM was: %s\n", back.sa_handler == on_term ? "its own" : "another");
        sigaction(SIGTERM, NULL, &back);
        printf("sigaction SIGTERM now: %s\n", back.sa_handler == SIG_DFL ? "SIG_DFL" : "a handler");
        fflush(stdout);
        raise(SIGTERM);
    } else if (strcmp(mode, "overrun") == 0) {
        char *p = malloc(40);
        memset(p, 'x', 48); /* 8 bytes past the end */
        free(p);
        *(volatile int *)16 = 1;
    } else if (strcmp(mode, "vfork") == 0) {
        struct sigaction sa, back;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = on_term;
        sigaction(SIGSEGV, &sa, NULL);
        pid_t pid = vfork();
        if (pid == 0) {
            struct sigaction dfl;
            memset(&dfl, 0, sizeof dfl);
            dfl.sa_handler = SIG_DFL;
            sigaction(SIGSEGV, &dfl, NULL); /* the child's, not the parent's */
            execl("/bin/true", "true", (char *)NULL);
            _exit(127);
        }
        waitpid(pid, NULL, 0);
        sigaction(SIGSEGV, NULL, &back);
        printf("sigaction SIGSEGV after vfork: %s\n", back.sa_handler == on_term ? "its own" : "another");
        fflush(stdout);
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = SIG_DFL;
        sigaction(SIGSEGV, &sa, NULL);
        raise(SIGSEGV);
    } else if (strcmp(mode, "forkterm") == 0) {
        int n = argc > 2 ? atoi(argv[2]) : 50, outlived = 0;
        pthread_t t;
        pthread_create(&t, NULL, churn, NULL);
        for (int i = 0; i < n; i++) {
            pid_t pid = fork();
            if (pid == 0) {
                struct timespec ts = {30, 0};
                nanosleep(&ts, NULL);
                _exit(0);
            }
            kill(pid, SIGTERM);
            int w = 0;
            for (; w < 200 && waitpid(pid, NULL, WNOHANG) != pid; w++) {
                struct timespec ts = {0, 10 * 1000 * 1000};
                nanosleep(&ts, NULL);
            }
            if (w == 200) {
                outlived++;
                kill(pid, SIGKILL);
                waitpid(pid, NULL, 0);
            }
        }
        printf("outlived SIGTERM: %d of %d\n", outlived, n);
        return 0;
    } else {
        fprintf(stderr, "usage: fatal raise SIG|segv|abort|churn N|own|ignore|query|overrun|"
                        "vfork|forkterm N\n");
        return 2;
    }
    return 1; /* not reached where a signal ends it */
}
