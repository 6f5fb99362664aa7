/* Allocations with known counts and bytes at known call sites, for tests/prof/known.sh. Every
 * allocating function is noinline and named site_*: the checker finds a site by the innermost
 * frame of its stack that lies in this program. What each one must show is written next to it
 * and in known.sh. Optional argument: "fork" forks once after the first phase; the child
 * allocates at site_child and both exit normally. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define NOINLINE __attribute__((noinline))

static void *sink[4096];

/* 1000 x 40 B, each freed at once: all temporary */
NOINLINE void site_temp(void) {
    for (int i = 0; i < 1000; i++) {
        char *p = malloc(40);
        p[0] = 1;
        free(p);
        __asm__ volatile("" ::: "memory");
    }
}

/* 300 x calloc(1, 100), kept to the end: 300 live, 30000 bytes */
NOINLINE void site_keep(void **out) {
    for (int i = 0; i < 300; i++)
        out[i] = calloc(1, 100);
}

/* 400 x 24 B; site_half_free frees 200 of them: 200 live */
NOINLINE void site_half(void **out) {
    for (int i = 0; i < 400; i++)
        out[i] = malloc(24);
}

NOINLINE void site_half_free(void **in) {
    for (int i = 0; i < 400; i += 2)
        free(in[i]);
}

/* 10 x 100000 B (the system malloc's); 4 freed: 6 live, 600000 bytes */
NOINLINE void site_large(void **out) {
    for (int i = 0; i < 10; i++)
        out[i] = malloc(100000);
    for (int i = 0; i < 4; i++)
        free(out[i]);
}

/* 50 x malloc(16), then each realloc'd to 1000 B at site_grow: site_new ends with 50 freed
 * (by realloc), site_grow with 50 live of 1000 bytes */
NOINLINE void site_new(void **out) {
    for (int i = 0; i < 50; i++)
        out[i] = malloc(16);
}

NOINLINE void site_grow(void **io) {
    for (int i = 0; i < 50; i++)
        io[i] = realloc(io[i], 1000);
}

/* 20 x aligned_alloc(64, 256): alignment over 16 goes to glibc; 20 live, 5120 bytes */
NOINLINE void site_aligned(void **out) {
    for (int i = 0; i < 20; i++)
        out[i] = aligned_alloc(64, 256);
}

/* 4 threads x 250 x 64 B; the main thread frees 500 of them: 500 live */
static void *thread_blocks[4][250];

NOINLINE void site_thread(void **out) {
    for (int i = 0; i < 250; i++)
        out[i] = malloc(64);
}

static void *thread_main(void *arg) {
    site_thread(arg);
    return NULL;
}

/* in the forked child only: 70 x 48 B kept */
NOINLINE void site_child(void **out) {
    for (int i = 0; i < 70; i++)
        out[i] = malloc(48);
}

/* "api PATH": ask the preloaded library for a dump by tally_dump(PATH), then tally_dump(NULL);
 * prints both results. */
static void api_dumps(const char *path) {
    int (*dump)(const char *) = (int (*)(const char *))dlsym(RTLD_DEFAULT, "tally_dump");
    if (!dump) {
        printf("no tally_dump\n");
        return;
    }
    int a = dump(path);
    int b = dump(NULL);
    printf("tally_dump: %d %d\n", a, b);
}

int main(int argc, char **argv) {
    int do_fork = argc > 1 && strcmp(argv[1], "fork") == 0;
    const char *api = argc > 2 && strcmp(argv[1], "api") == 0 ? argv[2] : NULL;
    site_temp();
    site_keep(sink);
    site_half(sink + 300);
    site_half_free(sink + 300);
    site_large(sink + 700);
    site_new(sink + 800);
    site_grow(sink + 800);
    site_aligned(sink + 900);
    pthread_t t[4];
    for (int i = 0; i < 4; i++)
        pthread_create(&t[i], NULL, thread_main, thread_blocks[i]);
    for (int i = 0; i < 4; i++)
        pthread_join(t[i], NULL);
    for (int i = 0; i < 4; i++)
        for (int j = 0; j < 250; j += 2)
            free(thread_blocks[i][j]);
    if (do_fork) {
        pid_t pid = fork();
        if (pid == 0) {
            site_child(sink + 1000);
            printf("child done\n");
            fflush(stdout);
            exit(0);
        }
        int st;
        waitpid(pid, &st, 0);
        if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
            return 1;
    }
    if (api)
        api_dumps(api);
    printf("done\n");
    return 0;
}
