/* hardcases.c: what the leak check must survive at exit (tests/leaks/hard.sh), one per argument:
 *   blocked      a thread that blocks every signal keeps a pointer on its stack
 *   busy         two threads allocate and free as fast as they can while main exits
 *   handler      the program has its own handler for the signal the check stops threads with
 *   fork         parent and child both exit normally, each with a leak of its own
 *   thread_exit  a thread calls exit while main waits with a pointer in its frame
 *   ondemand     tally_dump_leaks(argv[2]) while a thread holds a block, then more leaks
 *   onsignal     raise(SIGUSR2) (TALLY_SIGNAL=USR2), wait for the dump argv[2].1, go on
 * Each keeps one block reachable and loses one (24 bytes), so the kinds can be checked. */
#include <dlfcn.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

void *kept;
static void *volatile sink;
static int ready[2], never[2];

static void lose(size_t n) {
    sink = malloc(n);
    sink = NULL;
}

static void wait_ready(void) {
    char c;
    if (read(ready[0], &c, 1) != 1)
        abort();
}

static void say_ready(void) {
    char c = 1;
    if (write(ready[1], &c, 1) != 1)
        abort();
}

static void *blocked_thread(void *arg) {
    (void)arg;
    sigset_t all;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, NULL);
    void *volatile mine = malloc(4000); /* only this frame points to it */
    say_ready();
    char c;
    if (read(never[0], &c, 1) < 0)
        abort();
    sink = mine;
    return NULL;
}

static void *busy_thread(void *arg) {
    (void)arg;
    void *slot[64] = {0};
    say_ready();
    for (unsigned long i = 0;; i++) {
        unsigned k = (unsigned)(i * 2654435761u) % 64;
        free(slot[k]);
        slot[k] = malloc(16 + (i % 700));
    }
    return NULL;
}

static volatile sig_atomic_t handled;
static void on_rt(int sig) {
    (void)sig;
    handled++;
}

static void *exiting_thread(void *arg) {
    (void)arg;
    wait_ready(); /* main is waiting now */
    lose(24);
    exit(0);
}

int main(int argc, char **argv) {
    if (argc < 2 || pipe(ready) != 0 || pipe(never) != 0)
        return 2;
    const char *c = argv[1];
    pthread_t t;
    kept = malloc(100);
    lose(24);
    if (strcmp(c, "blocked") == 0) {
        if (pthread_create(&t, NULL, blocked_thread, NULL) != 0)
            return 1;
        wait_ready();
    } else if (strcmp(c, "busy") == 0) {
        for (int i = 0; i < 2; i++) {
            if (pthread_create(&t, NULL, busy_thread, NULL) != 0)
                return 1;
            wait_ready();
        }
        usleep(20000);
    } else if (strcmp(c, "handler") == 0) {
        int sig = SIGRTMAX - 4; /* the leak check's own */
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = on_rt;
        sigaction(sig, &sa, NULL);
        raise(sig);
        if (handled != 1)
            return 3;
        if (pthread_create(&t, NULL, blocked_thread, NULL) != 0) /* something to stop */
            return 1;
        wait_ready();
    } else if (strcmp(c, "fork") == 0) {
        pid_t pid = fork();
        if (pid < 0)
            return 1;
        if (pid == 0) {
            lose(24);
            exit(0);
        }
        int st;
        if (waitpid(pid, &st, 0) != pid || !WIFEXITED(st) || WEXITSTATUS(st) != 0)
            return 4;
    } else if (strcmp(c, "thread_exit") == 0) {
        void *volatile mine = malloc(300); /* in main's frame while main waits */
        if (pthread_create(&t, NULL, exiting_thread, NULL) != 0)
            return 1;
        say_ready();
        pthread_join(t, NULL); /* never returns: the thread exits the process */
        sink = mine;
        return 5;
    } else if (strcmp(c, "ondemand") == 0 && argc == 3) {
        if (pthread_create(&t, NULL, blocked_thread, NULL) != 0)
            return 1;
        wait_ready();
        /* the library's API, found as a program that may run without it would find it */
        int (*dump_leaks)(const char *) = (int (*)(const char *))dlsym(RTLD_DEFAULT, "tally_dump_leaks");
        if (!dump_leaks || dump_leaks(argv[2]) != 0)
            return 6;
        lose(48); /* after the check: only in the exit dump */
    } else if (strcmp(c, "onsignal") == 0 && argc == 3) {
        char path[4096];
        snprintf(path, sizeof path, "%s.1", argv[2]);
        raise(SIGUSR2);
        for (int i = 0; i < 500 && access(path, F_OK) != 0; i++)
            usleep(10000);
        if (access(path, F_OK) != 0)
            return 7;
        lose(48);
    } else {
        return 2;
    }
    return 0; /* nothing printed: glibc's stdout buffer would be one more block */
}
