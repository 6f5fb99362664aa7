/* introspect.c: glibc's introspection API on a heap made of small blocks, run with and without
 * the library by introspect.sh. Every check here must hold under glibc alone (the oracle) and
 * under the library: mallinfo2/mallinfo count the blocks in use, malloc_stats and malloc_info
 * report them, M_PERTURB fills blocks, malloc_trim gives memory back, and __libc_free and
 * __libc_realloc take blocks that malloc returned.
 *
 * usage: introspect mallinfo | stats | info FILE | perturb | perturb-env BYTE | trim |
 *        trim-threads | libc | trim-double-free
 * Prints "<mode> ok" and exits 0, or one line per failed check and exits 1. */
#include <malloc.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

extern void __libc_free(void *);
extern void *__libc_realloc(void *, size_t);
extern void *__libc_malloc(size_t);

static int failed;
#define CHECK(cond, ...)                                                                       \
    do {                                                                                       \
        if (!(cond)) {                                                                         \
            printf("FAIL %s:%d: ", __FILE__, __LINE__);                                        \
            printf(__VA_ARGS__);                                                               \
            printf("\n");                                                                      \
            failed = 1;                                                                        \
        }                                                                                      \
    } while (0)

#define NBLOCKS 100000
#define BSIZE 48

static void **make_blocks(size_t n, size_t size) {
    void **v = malloc(n * sizeof *v);
    for (size_t i = 0; i < n; i++) {
        v[i] = malloc(size);
        memset(v[i], (int)i, size);
    }
    return v;
}

static void free_blocks(void **v, size_t n) {
    for (size_t i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

static size_t in_use(void) {
    struct mallinfo2 mi = mallinfo2();
    return mi.uordblks + mi.hblkhd;
}

static int mode_mallinfo(void) {
    size_t before = in_use();
    void **v = make_blocks(NBLOCKS, BSIZE);
    struct mallinfo2 mi = mallinfo2();
    size_t live = mi.uordblks + mi.hblkhd - before;
    CHECK(live >= (size_t)NBLOCKS * BSIZE && live <= (size_t)NBLOCKS * BSIZE * 2,
          "mallinfo2: %zu blocks of %d bytes live, uordblks+hblkhd grew by %zu", (size_t)NBLOCKS,
          BSIZE, live);
    CHECK(mi.arena >= mi.uordblks, "mallinfo2: arena %zu < uordblks %zu", mi.arena, mi.uordblks);
    CHECK(mi.arena == mi.uordblks + mi.fordblks || mi.fordblks < mi.arena,
          "mallinfo2: fordblks %zu does not fit in arena %zu", mi.fordblks, mi.arena);
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
    struct mallinfo old = mallinfo(); /* deprecated, still called by monitors */
    CHECK((size_t)old.uordblks + (size_t)old.hblkhd >= before + (size_t)NBLOCKS * BSIZE,
          "mallinfo: uordblks %d", old.uordblks);
    free_blocks(v, NBLOCKS);
    size_t after = in_use();
    CHECK(after < before + (size_t)NBLOCKS * BSIZE / 10,
          "mallinfo2: %zu bytes still in use after the blocks were freed (%zu before)", after,
          before);
    return failed;
}

static int mode_stats(void) {
    void **v = make_blocks(NBLOCKS, BSIZE);
    fflush(stdout);
    malloc_stats(); /* introspect.sh reads its last "in use bytes" line */
    free_blocks(v, NBLOCKS);
    return failed;
}

static int mode_info(const char *path) {
    void **v = make_blocks(NBLOCKS, BSIZE);
    FILE *f = fopen(path, "w");
    CHECK(f != NULL, "cannot write %s", path);
    if (f) {
        CHECK(malloc_info(0, f) == 0, "malloc_info failed");
        fclose(f);
    }
    CHECK(malloc_info(1, stdout) != 0, "malloc_info(1, ...) was accepted");
    free_blocks(v, NBLOCKS);
    return failed;
}

/* Share of the n blocks whose bytes [from, to) are all c. */
static double filled(void **v, size_t n, size_t step, size_t from, size_t to, unsigned char c) {
    size_t k = 0, all = 0;
    for (size_t i = 0; i < n; i += step, all++) {
        const unsigned char *b = v[i];
        size_t j = from;
        while (j < to && b[j] == c)
            j++;
        k += j == to;
    }
    return (double)k / (double)all;
}

/* glibc fills a block with ~byte when it hands it out from its bins and with byte when a free
 * puts it back in them (not through its thread cache). Every other block stays live, so that
 * glibc merges no freed chunk with a neighbour (which would rewrite its bytes) or into the top
 * of the heap (which may be unmapped). Bytes 16..191 of a 200-byte block are checked: glibc
 * keeps its links in the first 16 and the next chunk's size field in the last 8. */
static int perturb_check(unsigned char byte) {
    enum { N = 600, SIZE = 200 };
    void **v = malloc(N * sizeof *v);
    for (size_t i = 0; i < N; i++)
        v[i] = malloc(SIZE);
    double fresh = filled(v, N, 1, 16, 192, (unsigned char)~byte);
    CHECK(fresh >= 0.9, "only %.0f%% of new blocks were filled with 0x%02x", 100 * fresh,
          (unsigned char)~byte);
    for (size_t i = 0; i < N; i += 2)
        free(v[i]);
    double freed = filled(v, N, 2, 16, 192, byte); /* reads freed memory on purpose */
    CHECK(freed >= 0.5, "only %.0f%% of freed blocks were filled with 0x%02x", 100 * freed, byte);
    for (size_t i = 1; i < N; i += 2)
        free(v[i]);
    free(v);
    return failed;
}

static size_t rss_bytes(void) {
    FILE *f = fopen("/proc/self/statm", "r");
    unsigned long size = 0, rss = 0;
    if (f) {
        if (fscanf(f, "%lu %lu", &size, &rss) != 2)
            rss = 0;
        fclose(f);
    }
    return rss * (size_t)sysconf(_SC_PAGESIZE);
}

/* 50 MB of 256-byte blocks, all freed: after malloc_trim(0) most of it is back with the system
 * (glibc gives it back at free already; the pools keep empty pools until asked). The memory is
 * then used again and must read as written. */
static int mode_trim(void) {
    enum { N = 200000, SIZE = 256 };
    void **v = make_blocks(N, SIZE);
    size_t peak = rss_bytes();
    free_blocks(v, N);
    int r = malloc_trim(0);
    size_t after = rss_bytes();
    CHECK(peak - after >= (size_t)N * SIZE * 8 / 10,
          "malloc_trim(0) returned %d; RSS %zu MB at the peak, %zu MB after the trim", r,
          peak >> 20, after >> 20);
    v = make_blocks(N, SIZE);
    size_t bad = 0;
    for (size_t i = 0; i < N; i++)
        for (size_t j = 0; j < SIZE; j++)
            bad += ((unsigned char *)v[i])[j] != (unsigned char)i;
    CHECK(bad == 0, "%zu bytes of the blocks made after the trim read back wrong", bad);
    free_blocks(v, N);
    return failed;
}

/* malloc_trim from one thread while two others allocate, fill, check and free blocks of every
 * small size, many of them freed by the other thread: no block may lose its content. */
#define TT_ROUNDS 300
#define TT_SLOTS 2000
static void *volatile tt_shared[2][TT_SLOTS];
static size_t tt_bad;

static void tt_fill(unsigned char *b, size_t n, unsigned tag) {
    b[0] = (unsigned char)n;
    for (size_t j = 1; j < n; j++)
        b[j] = (unsigned char)(tag + j);
}

static int tt_ok(const unsigned char *b, unsigned tag) {
    size_t n = b[0] ? b[0] : 256;
    for (size_t j = 1; j < n; j++)
        if (b[j] != (unsigned char)(tag + j))
            return 0;
    return 1;
}

static void *tt_worker(void *arg) {
    unsigned me = (unsigned)(uintptr_t)arg, seed = me * 7919 + 1;
    for (int r = 0; r < TT_ROUNDS; r++) {
        for (int i = 0; i < TT_SLOTS; i++) {
            seed = seed * 1103515245 + 12345;
            size_t n = (seed >> 8) % 256 + 1;
            /* shared[x] holds blocks the other thread made (tag !x): take what it left for
             * us and free it here; leave ours in its row, freeing what it has not taken */
            void *theirs = __atomic_exchange_n(&tt_shared[me][i], NULL, __ATOMIC_ACQ_REL);
            if (theirs && !tt_ok(theirs, !me))
                __atomic_add_fetch(&tt_bad, 1, __ATOMIC_RELAXED);
            free(theirs);
            if (r % 4 == 3) { /* a round that only frees: pools empty out for the trims */
                void *mine = __atomic_exchange_n(&tt_shared[!me][i], NULL, __ATOMIC_ACQ_REL);
                if (mine && !tt_ok(mine, me))
                    __atomic_add_fetch(&tt_bad, 1, __ATOMIC_RELAXED);
                free(mine);
                continue;
            }
            unsigned char *b = malloc(n);
            tt_fill(b, n, me);
            void *old = __atomic_exchange_n(&tt_shared[!me][i], b, __ATOMIC_ACQ_REL);
            if (old && !tt_ok(old, me))
                __atomic_add_fetch(&tt_bad, 1, __ATOMIC_RELAXED);
            free(old);
        }
    }
    return NULL;
}

static int mode_trim_threads(void) {
    pthread_t t[2];
    for (unsigned i = 0; i < 2; i++)
        pthread_create(&t[i], NULL, tt_worker, (void *)(uintptr_t)i);
    int trimmed = 0;
    for (int i = 0; i < 2000; i++) {
        trimmed += malloc_trim(0);
        usleep(100);
    }
    for (unsigned i = 0; i < 2; i++)
        pthread_join(t[i], NULL);
    CHECK(tt_bad == 0, "%zu blocks lost their content while malloc_trim ran", tt_bad);
    CHECK(trimmed > 0, "no malloc_trim call gave anything back");
    return failed;
}

/* A double free of a block whose pool was trimmed must still stop the program. */
static int mode_trim_double_free(void) {
    enum { N = 20000, SIZE = 96 };
    void **v = make_blocks(N, SIZE);
    void *victim = v[N / 2];
    free_blocks(v, N);
    malloc_trim(0);
    free(victim);
    printf("the double free passed\n");
    return 1;
}

static int mode_libc(void) {
    char *p = malloc(40);
    strcpy(p, "small block");
    p = __libc_realloc(p, 100);
    CHECK(p && strcmp(p, "small block") == 0, "__libc_realloc lost a small block's content");
    p = __libc_realloc(p, 5000);
    CHECK(p && strcmp(p, "small block") == 0, "__libc_realloc to 5000 lost the content");
    __libc_free(p);
    for (int i = 0; i < 1000; i++)
        __libc_free(malloc((size_t)(i % 600) + 1));
    char *q = __libc_malloc(64); /* glibc's block, through the ordinary calls */
    strcpy(q, "glibc block");
    q = realloc(q, 30);
    CHECK(q && strcmp(q, "glibc block") == 0, "realloc lost a __libc_malloc block's content");
    free(q);
    __libc_free(__libc_malloc(32));
    return failed;
}

int main(int argc, char **argv) {
    if (argc < 2)
        return 2;
    const char *m = argv[1];
    int r;
    if (strcmp(m, "mallinfo") == 0)
        r = mode_mallinfo();
    else if (strcmp(m, "stats") == 0)
        r = mode_stats();
    else if (strcmp(m, "info") == 0 && argc > 2)
        r = mode_info(argv[2]);
    else if (strcmp(m, "perturb") == 0) {
        mallopt(M_PERTURB, 0xa5);
        r = perturb_check(0xa5);
    } else if (strcmp(m, "perturb-env") == 0 && argc > 2) {
        r = perturb_check((unsigned char)strtoul(argv[2], NULL, 0)); /* set by the environment */
    } else if (strcmp(m, "trim") == 0)
        r = mode_trim();
    else if (strcmp(m, "trim-threads") == 0)
        r = mode_trim_threads();
    else if (strcmp(m, "trim-double-free") == 0)
        r = mode_trim_double_free();
    else if (strcmp(m, "libc") == 0)
        r = mode_libc();
    else
        return 2;
    if (r == 0)
        printf("%s ok\n", m);
    return r;
}
