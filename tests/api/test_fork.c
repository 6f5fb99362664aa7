/* fork() while other threads allocate: the child must be able to allocate, free its own and
 * the other threads' blocks, and exit cleanly; the parent goes on. Repeated, so a fork that
 * lands inside a slow path is likely. */
#define _GNU_SOURCE
#include "../test.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static _Atomic int stop;
static void *shared[4096];
static pthread_mutex_t shared_lock = PTHREAD_MUTEX_INITIALIZER;

static void *allocator(void *arg) {
    uint32_t s = (uint32_t)(uintptr_t)arg * 2654435761u + 1;
    void *mine[256] = {0};
    while (!atomic_load(&stop)) {
        s ^= s << 13, s ^= s >> 17, s ^= s << 5;
        unsigned i = s % 256;
        free(mine[i]);
        mine[i] = malloc(1 + s % 700);
        if (s % 8 == 0) {
            pthread_mutex_lock(&shared_lock);
            unsigned k = (s >> 8) % 4096;
            free(shared[k]);
            shared[k] = malloc(1 + (s >> 3) % 512);
            pthread_mutex_unlock(&shared_lock);
        }
    }
    for (int i = 0; i < 256; i++)
        free(mine[i]);
    return NULL;
}

static int child_work(void) {
    /* Free what the (now absent) threads left in the shared table, then allocate a lot. */
    for (int k = 0; k < 4096; k++) {
        free(shared[k]);
        shared[k] = NULL;
    }
    void *v[2000];
    for (int round = 0; round < 5; round++) {
        for (int i = 0; i < 2000; i++) {
            v[i] = malloc((size_t)(i % 600) + 1);
            if (!v[i])
                return 2;
            memset(v[i], i, (size_t)(i % 600) + 1);
        }
        for (int i = 0; i < 2000; i++)
            free(v[i]);
    }
    /* threads work in the child too */
    pthread_t t;
    atomic_store(&stop, 0);
    if (pthread_create(&t, NULL, allocator, (void *)9) != 0)
        return 3;
    usleep(2000);
    atomic_store(&stop, 1);
    pthread_join(t, NULL);
    return 0;
}

int main(void) {
    pthread_t t[3];
    for (int i = 0; i < 3; i++)
        assert_true(pthread_create(&t[i], NULL, allocator, (void *)(uintptr_t)(i + 1)) == 0);
    int forks = 60, bad = 0;
    for (int i = 0; i < forks; i++) {
        /* Hold the program's own lock across fork, as any correct program must, so the child
         * never sees the table half-updated. The allocator's locks are its own business. */
        pthread_mutex_lock(&shared_lock);
        pid_t pid = fork();
        pthread_mutex_unlock(&shared_lock);
        assert_true(pid >= 0);
        if (pid == 0)
            _exit(child_work());
        int st;
        /* bounded: a deadlocked child would hang the test, so poll with a deadline */
        int waited = 0;
        while (waitpid(pid, &st, WNOHANG) == 0) {
            if (++waited > 2000) { /* 20 s */
                kill(pid, SIGKILL);
                waitpid(pid, &st, 0);
                fprintf(stderr, "child %d hung after fork\n", i);
                break;
            }
            usleep(10000);
        }
        if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
            fprintf(stderr, "fork %d: child status %d\n", i, st);
            bad++;
        }
        usleep(1000);
    }
    atomic_store(&stop, 1);
    for (int i = 0; i < 3; i++)
        pthread_join(t[i], NULL);
    expect_eq(bad, 0);
    return test_result();
}
