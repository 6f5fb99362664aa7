/* API conformance: every exported function against glibc's documented semantics, linked to the
 * shared library so that these calls are tallymalloc's. */
#define _GNU_SOURCE
#include "tally.h"
#include "../test.h"

#include <errno.h>
#include <malloc.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

#define ALIGNED(p, a) (((uintptr_t)(p) & ((a)-1)) == 0)

static uint64_t small_served(void) {
    struct tally_stats s;
    assert_true(tally_stats_get(&s, sizeof s) == 0);
    return s.small_mallocs;
}

static void fill(unsigned char *p, size_t n, unsigned seed) {
    for (size_t i = 0; i < n; i++)
        p[i] = (unsigned char)(seed + i * 7);
}

static int check(const unsigned char *p, size_t n, unsigned seed) {
    for (size_t i = 0; i < n; i++)
        if (p[i] != (unsigned char)(seed + i * 7))
            return 0;
    return 1;
}

static void test_malloc_free(void) {
    uint64_t before = small_served();
    void *ps[1100];
    for (size_t n = 0; n < 1100; n++) {
        ps[n] = malloc(n);
        assert_true(ps[n] != NULL);
        expect_true(ALIGNED(ps[n], 16));
        expect_true(malloc_usable_size(ps[n]) >= n);
        fill(ps[n], n, (unsigned)n);
    }
    for (size_t n = 0; n < 1100; n++) {
        expect_true(check(ps[n], n, (unsigned)n));
        for (size_t m = n + 1; m < n + 3 && m < 1100; m++)
            expect_true(ps[n] != ps[m]);
    }
    for (size_t n = 0; n < 1100; n++)
        free(ps[n]);
    expect_true(small_served() - before >= 513); /* 0..512 came from the pools */
    /* malloc(0) gives distinct, freeable pointers */
    void *z1 = malloc(0), *z2 = malloc(0);
    expect_true(z1 && z2 && z1 != z2);
    free(z1);
    free(z2);
    free(NULL);
    /* usable size: class size for ours, glibc's for large */
    void *s = malloc(100);
    expect_eq(malloc_usable_size(s), 112);
    free(s);
    expect_eq(malloc_usable_size(NULL), 0);
    /* out of memory: NULL and ENOMEM */
    errno = 0;
    expect_true(malloc(SIZE_MAX - 4096) == NULL);
    expect_eq(errno, ENOMEM);
}

static void test_free_preserves_errno(void) {
    void *a = malloc(10), *b = malloc(5000);
    errno = 1234;
    free(a);
    free(b);
    expect_eq(errno, 1234);
}

static void test_calloc(void) {
    /* dirty blocks first, so calloc must clear reused ones */
    for (size_t n = 1; n <= 512; n++) {
        unsigned char *p = malloc(n);
        memset(p, 0xAB, n);
        free(p);
        unsigned char *q = calloc(1, n);
        assert_true(q != NULL);
        for (size_t i = 0; i < n; i++)
            if (q[i]) {
                test_fail_("calloc(1, %zu) byte %zu not zero", n, i);
                break;
            }
        free(q);
    }
    unsigned char *big = calloc(1000, 10);
    for (size_t i = 0; i < 10000; i++)
        if (big[i]) {
            test_fail_("large calloc byte %zu not zero", i);
            break;
        }
    free(big);
    errno = 0;
    expect_true(calloc(SIZE_MAX / 2, 3) == NULL);
    expect_eq(errno, ENOMEM);
    void *z = calloc(0, 5);
    expect_true(z != NULL);
    free(z);
}

static void test_realloc(void) {
    /* grow and shrink across every class and the 512-byte boundary, contents kept */
    static const size_t sizes[] = {1, 16, 17, 100, 255, 256, 511, 512, 513, 1000, 4096,
                                   100000, 300, 20, 600, 8, 512, 513, 1};
    unsigned char *p = NULL;
    size_t have = 0;
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        size_t n = sizes[i];
        unsigned char *q = realloc(p, n);
        assert_true(q != NULL);
        expect_true(ALIGNED(q, 16));
        size_t keep = have < n ? have : n;
        expect_true(check(q, keep, 3));
        fill(q, n, 3);
        p = q;
        have = n;
    }
    free(p);
    /* in place within the class */
    void *a = malloc(40);
    expect_true(realloc(a, 48) == a);
    expect_true(realloc(a, 33) == a);
    /* realloc(p, 0) frees and returns NULL; realloc(NULL, n) is malloc */
    expect_true(realloc(a, 0) == NULL);
    void *b = realloc(NULL, 30);
    expect_true(b != NULL);
    /* failure leaves the block untouched */
    fill(b, 30, 9);
    errno = 0;
    expect_true(realloc(b, SIZE_MAX - 4096) == NULL);
    expect_eq(errno, ENOMEM);
    expect_true(check(b, 30, 9));
    free(b);
    /* reallocarray */
    void *r = reallocarray(NULL, 10, 10);
    expect_true(r != NULL);
    errno = 0;
    expect_true(reallocarray(r, SIZE_MAX / 2, 3) == NULL);
    expect_eq(errno, ENOMEM);
    free(r);
}

static void test_aligned(void) {
    static const size_t aligns[] = {1, 2, 4, 8, 16, 32, 64, 128, 256, 4096, 65536};
    for (size_t i = 0; i < sizeof aligns / sizeof aligns[0]; i++) {
        size_t a = aligns[i];
        for (size_t n = 0; n <= 1024; n += 100) {
            void *p = memalign(a, n);
            assert_true(p != NULL);
            expect_true(ALIGNED(p, a < 16 ? 16 : a));
            memset(p, 1, n);
            free(p);
            p = aligned_alloc(a, n);
            assert_true(p != NULL);
            expect_true(ALIGNED(p, a));
            free(p);
            if (a >= sizeof(void *)) {
                void *q = (void *)1;
                expect_eq(posix_memalign(&q, a, n), 0);
                expect_true(ALIGNED(q, a));
                expect_true(malloc_usable_size(q) >= n);
                free(q);
            }
        }
    }
    /* posix_memalign: EINVAL, output untouched, errno untouched */
    void *out = (void *)0x1234;
    errno = 77;
    expect_eq(posix_memalign(&out, 3 * sizeof(void *), 10), EINVAL);
    expect_eq(posix_memalign(&out, 4, 10), EINVAL);
    expect_eq(posix_memalign(&out, 0, 10), EINVAL);
    expect_eq(posix_memalign(&out, 64, SIZE_MAX - 4096), ENOMEM);
    expect_true(out == (void *)0x1234);
    expect_eq(errno, 77);
    /* memalign with a non-power of two rounds up, as glibc 2.36 does */
    void *m = memalign(48, 100);
    expect_true(m != NULL && ALIGNED(m, 64));
    free(m);
    long page = sysconf(_SC_PAGESIZE);
    void *v = valloc(100);
    expect_true(v && ALIGNED(v, (size_t)page));
    free(v);
    void *pv = pvalloc(100);
    expect_true(pv && ALIGNED(pv, (size_t)page));
    expect_true(malloc_usable_size(pv) >= (size_t)page);
    free(pv);
}

static void test_foreign_pointers(void) {
    /* glibc's own blocks reach our free, realloc and malloc_usable_size. */
    extern void *__libc_malloc(size_t);
    void *g1 = __libc_malloc(40);
    expect_true(malloc_usable_size(g1) >= 40);
    fill(g1, 40, 5);
    void *g2 = realloc(g1, 60); /* stays with glibc, contents kept */
    expect_true(check(g2, 40, 5));
    free(g2);
    void *g3 = __libc_malloc(24);
    free(g3);
}

static void test_version_and_print(void) {
    expect_true(strcmp(tally_version(), TALLY_VERSION_STRING) == 0);
    expect_eq(tally_stats_print(-1, 0), -1);
    int fds[2];
    assert_true(pipe(fds) == 0);
    expect_eq(tally_stats_print(fds[1], 1), 0);
    close(fds[1]);
    char buf[65536];
    ssize_t n = read(fds[0], buf, sizeof buf - 1);
    close(fds[0]);
    assert_true(n > 0);
    buf[n] = '\0';
    expect_true(strstr(buf, "\"small_mallocs\":") != NULL);
    expect_true(strstr(buf, "\"arenas_returned_to_os\":false") != NULL);
}

int main(int argc, char **argv) {
    /* These tests check the allocator's own answers (which requests the pools serve, usable
     * sizes), so the profiler is off: in sample mode a sampled small request is served by
     * glibc (docs/ARCHITECTURE.md). The environment is read at start, hence the re-exec. */
    (void)argc;
    if (!getenv("TALLY_PROFILE")) {
        setenv("TALLY_PROFILE", "off", 1);
        execv("/proc/self/exe", argv);
        perror("execv");
        return 1;
    }
    test_malloc_free();
    test_free_preserves_errno();
    test_calloc();
    test_realloc();
    test_aligned();
    test_foreign_pointers();
    test_version_and_print();
    return test_result();
}
