/* Two hard cases of a preloaded malloc.
 *
 * Before constructors: a function in this executable's .preinit_array runs before the
 * initializer of every shared library, tallymalloc's included (ld.so runs preinit_array first).
 * It allocates and frees there; main then checks those blocks came from the pools and frees the
 * ones it kept.
 *
 * Dynamic TLS: a dlopen'd plugin's thread-local variables are allocated by glibc's
 * __tls_get_addr with malloc on each new thread's first touch, and freed after the thread's key
 * destructors (ours included) ran. 200 threads, 4 at a time, each touching the plugin's TLS;
 * then the plugin is closed and opened again and the round repeats. */
#include "../test.h"
#include "tally.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>

static void *early_kept[100];
static int early_ok = -1;
static size_t early_usable[100];

static void early_init(int argc, char **argv, char **envp) {
    (void)argc, (void)argv, (void)envp;
    early_ok = 1;
    for (int i = 0; i < 100; i++) {
        void *tmp = malloc((size_t)i * 5 + 1);
        char *keep = calloc(1, (size_t)i * 5 + 1);
        if (!tmp || !keep) {
            early_ok = 0;
            return;
        }
        memset(tmp, 0x5a, (size_t)i * 5 + 1);
        free(tmp);
        memset(keep, i, (size_t)i * 5 + 1);
        early_kept[i] = keep;
        early_usable[i] = malloc_usable_size(keep);
    }
}
__attribute__((section(".preinit_array"), used)) static void (*preinit)(int, char **,
                                                                        char **) = early_init;

static void test_before_constructors(void) {
    expect_eq(early_ok, 1);
    /* A pool block of class 16, not glibc's (glibc's usable size for 1 byte is 24). */
    expect_eq(early_usable[0], 16);
    struct tally_stats s;
    assert_true(tally_stats_get(&s, sizeof s) == 0);
    /* 100 kept calloc blocks of 1..496 bytes are small: they must be in the pools. */
    uint64_t small_in_use = 0;
    for (unsigned c = 0; c < TALLY_NCLASSES; c++)
        small_in_use += s.classes[c].blocks_in_use;
    expect_true(small_in_use >= 100);
    for (int i = 0; i < 100; i++) {
        unsigned char *p = early_kept[i];
        size_t n = (size_t)i * 5 + 1;
        expect_true(early_usable[i] >= n && early_usable[i] < n + 16);
        expect_eq((uintptr_t)p % 16, 0);
        for (size_t j = 0; j < n; j++)
            if (p[j] != (unsigned char)i) {
                expect_true(!"early block intact");
                break;
            }
        free(p);
    }
}

static int (*plugin_work)(unsigned);
static _Atomic int tls_failures;

static void *tls_thread(void *arg) {
    unsigned id = (unsigned)(uintptr_t)arg;
    int r = plugin_work(id);
    if (r != 0) {
        fprintf(stderr, "thread %u: plugin_tls_work returned %d\n", id, r);
        atomic_fetch_add(&tls_failures, 1);
    }
    /* Leave something for the thread-exit path to hand over, too. */
    void *keep = malloc(100);
    free(keep);
    return NULL;
}

static void test_dynamic_tls(void) {
    for (int round = 0; round < 2; round++) {
        void *h = dlopen("tls_lib.so", RTLD_NOW);
        if (!h) {
            fprintf(stderr, "dlopen: %s\n", dlerror());
            test_fail_("dlopen %s", "tls_lib.so");
            return;
        }
        plugin_work = (int (*)(unsigned))dlsym(h, "plugin_tls_work");
        assert_true(plugin_work != NULL);
        expect_eq(plugin_work(1000 + (unsigned)round), 0); /* the main thread too */
        for (unsigned t = 0; t < 200; t += 4) {
            pthread_t th[4];
            for (unsigned i = 0; i < 4; i++)
                assert_true(pthread_create(&th[i], NULL, tls_thread,
                                           (void *)(uintptr_t)(t + i + 1)) == 0);
            for (unsigned i = 0; i < 4; i++)
                pthread_join(th[i], NULL);
        }
        expect_eq(dlclose(h), 0);
    }
    expect_eq(atomic_load(&tls_failures), 0);
}

int main(void) {
    test_before_constructors();
    test_dynamic_tls();
    return test_result();
}
