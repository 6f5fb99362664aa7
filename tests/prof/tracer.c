/* tracer.c: an exact record of every malloc-API call a program makes, the oracle the profiler's
 * figures are checked against (tests/prof/exact.sh, exact_check.py). Preloaded before
 * libtallymalloc.so, it records each call and passes it on to the next definition (the
 * library's). Records go into a file mapped shared, TRACE_OUT with %p as the pid, so that
 * nothing is lost whenever the process ends and nothing here allocates.
 *
 * A record is 32 bytes: op, own, 6 bytes of pad, then three words: the pointer argument (or the
 * alignment), the size argument, the result. `own` is 1 when libtallymalloc.so is on the stack
 * of the call: the library's own allocations (the dynamic loader working for its dlopen, glibc
 * reading the stack bounds for its walker), which it leaves out on purpose; a free made there
 * is still the program's when its block is. Op 0 ends the file; op MARK is written once, by this
 * library's constructor, which runs after the library's (its profiler has started by then). */

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <link.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#include <unwind.h>

enum { OP_END = 0, OP_MALLOC, OP_CALLOC, OP_REALLOC, OP_FREE, OP_MEMALIGN, OP_MARK };

typedef struct rec_s {
    uint8_t op, own;
    uint8_t pad[6];
    uint64_t a, n, r;
} rec_t;

#define MAP_BYTES ((size_t)1 << 30) /* sparse: 32 M records */

static rec_t *recs;
static _Atomic size_t nrec;
static _Atomic int opened; /* 0 no, 1 opening, 2 open, 3 failed */
static uintptr_t lib_lo, lib_hi;
static __thread int busy;

static void *(*next_malloc)(size_t);
static void (*next_free)(void *);
static void *(*next_calloc)(size_t, size_t);
static void *(*next_realloc)(void *, size_t);
static void *(*next_memalign)(size_t, size_t);
static void *(*next_valloc)(size_t);
static void *(*next_pvalloc)(size_t);
static int (*next_posix_memalign)(void **, size_t, size_t);

/* dlsym may allocate (its error state): served from here, never given back. */
static char boot[65536];
static size_t boot_used;

static void *boot_alloc(size_t n) {
    size_t at = (boot_used + 15) & ~(size_t)15;
    if (at + n > sizeof boot)
        return NULL;
    boot_used = at + n;
    return boot + at;
}

static int is_boot(const void *p) {
    return (const char *)p >= boot && (const char *)p < boot + sizeof boot;
}

static void resolve(void) {
    if (next_malloc)
        return;
    busy++;
    next_free = (void (*)(void *))dlsym(RTLD_NEXT, "free");
    next_calloc = (void *(*)(size_t, size_t))dlsym(RTLD_NEXT, "calloc");
    next_realloc = (void *(*)(void *, size_t))dlsym(RTLD_NEXT, "realloc");
    next_memalign = (void *(*)(size_t, size_t))dlsym(RTLD_NEXT, "memalign");
    next_valloc = (void *(*)(size_t))dlsym(RTLD_NEXT, "valloc");
    next_pvalloc = (void *(*)(size_t))dlsym(RTLD_NEXT, "pvalloc");
    next_posix_memalign = (int (*)(void **, size_t, size_t))dlsym(RTLD_NEXT, "posix_memalign");
    next_malloc = (void *(*)(size_t))dlsym(RTLD_NEXT, "malloc");
    busy--;
}

static int find_lib(struct dl_phdr_info *info, size_t size, void *arg) {
    (void)size;
    (void)arg;
    if (!strstr(info->dlpi_name, "libtallymalloc.so"))
        return 0;
    uintptr_t lo = UINTPTR_MAX, hi = 0;
    for (int i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        if (ph->p_type != PT_LOAD)
            continue;
        uintptr_t a = info->dlpi_addr + ph->p_vaddr;
        lo = a < lo ? a : lo;
        hi = a + ph->p_memsz > hi ? a + ph->p_memsz : hi;
    }
    lib_lo = lo;
    lib_hi = hi;
    return 1;
}

static void open_out(void) {
    int expect = 0;
    if (!atomic_compare_exchange_strong(&opened, &expect, 1)) {
        while (atomic_load(&opened) == 1)
            ;
        return;
    }
    const char *pat = getenv("TRACE_OUT");
    char path[4096];
    size_t k = 0;
    for (const char *c = pat ? pat : ""; *c && k + 24 < sizeof path; c++) {
        if (c[0] == '%' && c[1] == 'p') {
            char digits[24];
            int nd = 0;
            for (unsigned long v = (unsigned long)getpid(); v || nd == 0; v /= 10)
                digits[nd++] = (char)('0' + v % 10);
            while (nd)
                path[k++] = digits[--nd];
            c++;
        } else {
            path[k++] = *c;
        }
    }
    path[k] = '\0';
    int fd = k ? open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600) : -1;
    void *m = MAP_FAILED;
    if (fd >= 0 && ftruncate(fd, (off_t)MAP_BYTES) == 0)
        m = mmap(NULL, MAP_BYTES, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (fd >= 0)
        close(fd);
    if (m == MAP_FAILED) {
        atomic_store(&opened, 3);
        return;
    }
    recs = m;
    dl_iterate_phdr(find_lib, NULL);
    atomic_store(&opened, 2);
}

struct walk_s {
    int own, n;
};

static _Unwind_Reason_Code on_frame(struct _Unwind_Context *ctx, void *arg) {
    struct walk_s *w = arg;
    uintptr_t ip = _Unwind_GetIP(ctx);
    if (ip > lib_lo && ip <= lib_hi) {
        w->own = 1;
        return _URC_END_OF_STACK;
    }
    return ++w->n < 128 ? _URC_NO_REASON : _URC_END_OF_STACK;
}

static void log_op(int op, uint64_t a, uint64_t n, uint64_t r) {
    if (atomic_load_explicit(&opened, memory_order_acquire) != 2) {
        open_out();
        if (atomic_load(&opened) != 2)
            return;
    }
    struct walk_s w = {0, 0};
    if (op != OP_MARK && lib_hi)
        _Unwind_Backtrace(on_frame, &w);
    size_t i = atomic_fetch_add(&nrec, 1);
    if ((i + 2) * sizeof(rec_t) > MAP_BYTES)
        return;
    rec_t *e = &recs[i];
    e->a = a;
    e->n = n;
    e->r = r;
    e->own = (uint8_t)w.own;
    atomic_store_explicit((_Atomic uint8_t *)&e->op, (uint8_t)op, memory_order_release);
}

#define ENTER()                                                                                \
    int nested = busy++;                                                                       \
    resolve()
#define LEAVE() busy--

void *malloc(size_t n) {
    if (!next_malloc && busy)
        return boot_alloc(n);
    ENTER();
    void *r = next_malloc(n);
    if (!nested)
        log_op(OP_MALLOC, 0, n, (uintptr_t)r);
    LEAVE();
    return r;
}

void *calloc(size_t k, size_t n) {
    if (!next_malloc && busy)
        return boot_alloc(k * n); /* boot is zeroed */
    ENTER();
    void *r = next_calloc(k, n);
    if (!nested)
        log_op(OP_CALLOC, k, n, (uintptr_t)r);
    LEAVE();
    return r;
}

void free(void *p) {
    if (!p || is_boot(p))
        return;
    ENTER();
    next_free(p);
    if (!nested)
        log_op(OP_FREE, (uintptr_t)p, 0, 0);
    LEAVE();
}

void cfree(void *p) {
    free(p);
}

void free_sized(void *p, size_t n) {
    (void)n;
    free(p);
}

void free_aligned_sized(void *p, size_t al, size_t n) {
    (void)al;
    (void)n;
    free(p);
}

void *realloc(void *p, size_t n) {
    if (is_boot(p)) {
        void *q = malloc(n);
        if (q)
            memcpy(q, p, n);
        return q;
    }
    ENTER();
    void *r = next_realloc(p, n);
    if (!nested)
        log_op(OP_REALLOC, (uintptr_t)p, n, (uintptr_t)r);
    LEAVE();
    return r;
}

void *reallocarray(void *p, size_t k, size_t n) {
    size_t t;
    if (__builtin_mul_overflow(k, n, &t)) {
        errno = ENOMEM; /* no call made: nothing to record */
        return NULL;
    }
    return realloc(p, t);
}

void *memalign(size_t al, size_t n) {
    ENTER();
    void *r = next_memalign(al, n);
    if (!nested)
        log_op(OP_MEMALIGN, al, n, (uintptr_t)r);
    LEAVE();
    return r;
}

void *aligned_alloc(size_t al, size_t n) {
    return memalign(al, n);
}

void *valloc(size_t n) {
    ENTER();
    void *r = next_valloc(n);
    if (!nested)
        log_op(OP_MEMALIGN, 4096, n, (uintptr_t)r);
    LEAVE();
    return r;
}

void *pvalloc(size_t n) {
    ENTER();
    void *r = next_pvalloc(n);
    if (!nested)
        log_op(OP_MEMALIGN, 4096, n, (uintptr_t)r);
    LEAVE();
    return r;
}

int posix_memalign(void **out, size_t al, size_t n) {
    ENTER();
    int e = next_posix_memalign(out, al, n);
    if (!nested)
        log_op(OP_MEMALIGN, al, n, e == 0 ? (uintptr_t)*out : 0);
    LEAVE();
    return e;
}

static void after_fork(void) {
    /* the child writes a file of its own */
    recs = NULL;
    atomic_store(&nrec, 0);
    atomic_store(&opened, 0);
}

__attribute__((constructor)) static void tracer_start(void) {
    resolve();
    pthread_atfork(NULL, NULL, after_fork);
    busy++;
    log_op(OP_MARK, 0, 0, 0);
    busy--;
}
