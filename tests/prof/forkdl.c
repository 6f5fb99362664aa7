/* forkdl.c: fork while other threads dlopen and dlclose a library that allocates (so the
 * profiler's stack walker keeps meeting code it has no rule for), and allocate in each child
 * from call sites the walker has not seen. A fork taken while a thread is inside dlopen or
 * dlclose leaves the child with the loader's lock held: a child that then calls
 * dl_iterate_phdr waits forever. Before the walker used _dl_find_object, about one child in
 * eight hung here. Exits 0 when no child hung or failed; prints how many did.
 *
 *   forkdl LIBRARY.so FORKS */
#include <dlfcn.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

static atomic_int stop;
static const char *lib;

static void *churn(void *arg) {
    (void)arg;
    while (!atomic_load(&stop)) {
        void *h = dlopen(lib, RTLD_NOW);
        if (!h) {
            fprintf(stderr, "forkdl: %s\n", dlerror());
            exit(3);
        }
        int (*work)(int) = (int (*)(int))dlsym(h, "gen_work");
        if (!work || work(5) < 0)
            exit(3);
        dlclose(h);
    }
    return NULL;
}

/* Call sites of the child's own, each new to the walker. */
#define SITE(n)                                                                                \
    static __attribute__((noinline)) void *site##n(size_t k) {                                 \
        return malloc(16 + k);                                                                 \
    }
SITE(0) SITE(1) SITE(2) SITE(3) SITE(4) SITE(5) SITE(6) SITE(7)
static void *(*const sites[])(size_t) = {site0, site1, site2, site3, site4, site5, site6, site7};

int main(int argc, char **argv) {
    if (argc != 3)
        return 2;
    lib = argv[1];
    int forks = atoi(argv[2]), hung = 0, failed = 0;
    pthread_t t[2];
    for (int i = 0; i < 2; i++)
        if (pthread_create(&t[i], NULL, churn, NULL) != 0)
            return 1;
    for (int i = 0; i < forks; i++) {
        pid_t p = fork();
        if (p < 0)
            return 1;
        if (p == 0) {
            for (size_t k = 0; k < 64; k++)
                free(sites[k % 8](k));
            _exit(0);
        }
        int st, waited = 0;
        while (waitpid(p, &st, WNOHANG) == 0) {
            if (++waited > 500) { /* 5 s: a child that allocates 64 blocks */
                kill(p, SIGKILL);
                waitpid(p, &st, 0);
                hung++;
                break;
            }
            usleep(10000);
        }
        if (waited <= 500 && (!WIFEXITED(st) || WEXITSTATUS(st) != 0))
            failed++;
    }
    atomic_store(&stop, 1);
    for (int i = 0; i < 2; i++)
        pthread_join(t[i], NULL);
    printf("forkdl: %d forks, %d children hung, %d failed\n", forks, hung, failed);
    return hung || failed;
}
