/* unwind.c - stacks that the profiler's walker (src/unwind.c) must get right, or hand to
 * libunwind: run under TALLY_UNWIND=check, every stack the walker returns is compared with
 * libunwind's (tests/prof/unwind.sh). Each site_* function allocates a known number of blocks,
 * all kept live, so the dump names them by function (dumpcheck.by_function).
 *
 *   deep       recursion 40, 50 and 60 deep: stacks cut at TALLY_DEPTH
 *   paths      two callers of one allocating function at the same stack depth, alternating:
 *              the walker must not take the other path's frames for this one's
 *   alloca     variable-size frames, whose CFI says CFA = rbp + 16 (frame-pointer frames)
 *   realign    a 64-byte aligned local beside a variable-length array: gcc realigns the stack
 *              through a register (DRAP) and describes the frame with DWARF expressions, which
 *              the walker hands to libunwind
 *   signal     allocations in a signal handler, on the thread's stack and on sigaltstack
 *   context    allocations on a makecontext stack, which is no thread's stack
 *   apis       malloc, calloc, realloc, aligned_alloc and large requests in turn from one frame:
 *              different paths through the allocator put different numbers of its own frames
 *              above the program's
 *   pads       malloc from a frame of swept size, then calloc, which has one more frame of the
 *              allocator's own: at some size the two share the allocator's innermost frame
 *   threads    four threads, each allocating at its own depth
 *   jit        (only with the argument "jit") malloc called from code in an anonymous
 *              executable mapping: no CFI describes it, so the stack ends there */
#define _GNU_SOURCE
#include <alloca.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <ucontext.h>

static void *keep[100000];
static unsigned nkeep;
static void hold(void *p) {
    if (!p)
        abort();
    __atomic_store_n(&keep[__atomic_fetch_add(&nkeep, 1, __ATOMIC_RELAXED)], p,
                     __ATOMIC_RELAXED);
}

/* The compiler must not merge, inline or turn these into tail calls. */
#define NOINL __attribute__((noinline, noclone))
#define BARRIER() __asm__ volatile("" ::: "memory")

NOINL void site_deep(void) {
    hold(malloc(24));
    BARRIER();
}
NOINL void recurse(int n) {
    if (n == 0)
        site_deep();
    else
        recurse(n - 1);
    BARRIER();
}

NOINL void site_leaf(int n) {
    hold(malloc((size_t)n));
    BARRIER();
}
NOINL void site_path_a(int n) {
    site_leaf(n);
    BARRIER();
}
NOINL void site_path_b(int n) {
    site_leaf(n);
    BARRIER();
}

NOINL void site_alloca(size_t n) {
    char *buf = alloca(n);
    memset(buf, 1, n);
    __asm__ volatile("" : : "r"(buf) : "memory");
    hold(malloc(40));
    BARRIER();
}

NOINL void site_realign(int n) {
    _Alignas(64) char buf[64];
    char vla[n];
    memset(buf, 2, sizeof buf);
    memset(vla, 3, (size_t)n);
    __asm__ volatile("" : : "r"(buf), "r"(vla) : "memory");
    hold(malloc(56));
    BARRIER();
}

NOINL void site_apis(int i) {
    switch (i % 6) {
    case 0: hold(malloc(48)); break;
    case 1: hold(calloc(3, 16)); break;
    case 2: hold(realloc(NULL, 64)); break;
    case 3: hold(aligned_alloc(64, 128)); break;
    case 4: hold(malloc(4000)); break;
    default: hold(calloc(1, 3000)); break;
    }
    BARRIER();
}

NOINL void site_pad_malloc(size_t pad) {
    char *b = alloca(pad + 1);
    b[0] = 1;
    __asm__ volatile("" : : "r"(b) : "memory");
    hold(malloc(40));
    BARRIER();
}
NOINL void site_pad_calloc(void) {
    hold(calloc(5, 8));
    BARRIER();
}

static void site_handler(int sig) {
    (void)sig;
    hold(malloc(72));
}

NOINL void site_context_body(void) {
    for (int i = 0; i < 10; i++)
        hold(malloc(88));
}

static void *site_thread(void *arg) {
    int depth = (int)(intptr_t)arg;
    for (int i = 0; i < 100; i++)
        recurse(depth);
    return NULL;
}

static void run_jit(void) {
    /* sub rsp,8; mov edi,100; mov rax,malloc; call rax; add rsp,8; ret */
    unsigned char code[] = {0x48, 0x83, 0xEC, 0x08, 0xBF, 100, 0, 0, 0, 0x48, 0xB8,
                            0, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xD0, 0x48, 0x83, 0xC4, 0x08, 0xC3};
    void *(*m)(size_t) = malloc;
    memcpy(&code[11], &m, sizeof m);
    void *page = mmap(NULL, 4096, PROT_READ | PROT_WRITE | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS,
                      -1, 0);
    if (page == MAP_FAILED) {
        perror("mmap");
        exit(1);
    }
    memcpy(page, code, sizeof code);
    void *(*jit)(void) = (void *(*)(void))page;
    for (int i = 0; i < 30; i++)
        hold(jit());
    printf("jit %p\n", page);
}

int main(int argc, char **argv) {
    if (argc > 1 && strcmp(argv[1], "jit") == 0) {
        run_jit();
        return 0;
    }
    for (int i = 0; i < 100; i++) {
        recurse(40);
        recurse(50);
        recurse(60);
    }
    for (int i = 0; i < 1000; i++) {
        site_path_a(32);
        site_path_b(32);
    }
    for (size_t i = 0; i < 200; i++)
        site_alloca(16 + 16 * (i % 37));
    for (int i = 0; i < 50; i++)
        site_realign(8 + i);
    for (int i = 0; i < 600; i++)
        site_apis(i);
    for (size_t pad = 0; pad < 800; pad += 8) {
        site_pad_malloc(pad);
        site_pad_calloc();
    }

    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = site_handler;
    sigaction(SIGUSR1, &sa, NULL);
    for (int i = 0; i < 20; i++)
        raise(SIGUSR1);
    stack_t ss = {.ss_sp = malloc(65536), .ss_size = 65536};
    sigaltstack(&ss, NULL);
    sa.sa_flags = SA_ONSTACK;
    sigaction(SIGUSR2, &sa, NULL);
    sa.sa_handler = site_handler;
    for (int i = 0; i < 20; i++)
        raise(SIGUSR2);

    static ucontext_t main_ctx, co_ctx;
    getcontext(&co_ctx);
    co_ctx.uc_stack.ss_sp = malloc(65536);
    co_ctx.uc_stack.ss_size = 65536;
    co_ctx.uc_link = &main_ctx;
    makecontext(&co_ctx, site_context_body, 0);
    swapcontext(&main_ctx, &co_ctx);

    pthread_t t[4];
    for (int i = 0; i < 4; i++)
        pthread_create(&t[i], NULL, site_thread, (void *)(intptr_t)(5 + 7 * i));
    for (int i = 0; i < 4; i++)
        pthread_join(t[i], NULL);
    printf("done %u\n", nkeep);
    return 0;
}
