// tests/check/corpus.cpp - heap bugs, one per case, for TALLY_CHECK against valgrind memcheck
// (tests/check/corpus.sh). Each case allocates through make_block (or new) and makes one
// mistake; the helpers are noinline so that both tools see the same stacks. Cases print
// nothing but what they are asked to (the uninitialised read prints the value it read).
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#define NOINLINE __attribute__((noinline))

static int global_int;
static char *volatile sink; // keeps the compiler from seeing through the bugs

NOINLINE char *make_block(size_t n) {
    char *p = (char *)malloc(n);
    sink = p;
    return p;
}

NOINLINE void poke(char *p, long off, char v) {
    p[off] = v;
}

NOINLINE void release(void *p) {
    free(p);
}

NOINLINE void overrun_small() {
    char *p = make_block(10);
    poke(p, 10, 1);
    release(p);
}

NOINLINE void overrun_exact() { // fills its 16-byte size class exactly
    char *p = make_block(16);
    poke(p, 16, 1);
    release(p);
}

NOINLINE void overrun_large() {
    char *p = make_block(100000);
    poke(p, 100000, 1);
    release(p);
}

NOINLINE void underrun() {
    char *p = make_block(24);
    poke(p, -1, 1);
    release(p);
}

NOINLINE void uaf_write() {
    char *p = make_block(32);
    release(p);
    poke(p, 3, 7);
}

NOINLINE void double_free() {
    char *p = make_block(10);
    release(p);
    release(p);
}

// the block leaves the quarantine (4 MiB a thread) before its second free; memcheck keeps 20 MB
// of freed blocks, so it still knows it
NOINLINE void double_free_late() {
    char *p = make_block(40);
    release(p);
    for (int i = 0; i < 1500; i++)
        release(make_block(4096));
    release(p);
}

NOINLINE void free_stack() {
    char buf[32];
    sink = buf;
    release(sink);
}

NOINLINE void free_global() {
    release(&global_int);
}

NOINLINE void free_interior() {
    char *p = make_block(24);
    release(p + 8);
    release(p);
}

NOINLINE void free_interior_large() { // far from the start: no header near it
    char *p = make_block(100000);
    release(p + 50000);
    release(p);
}

NOINLINE void free_mmap() {
    void *m = mmap(NULL, 8192, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    release(m);
    munmap(m, 8192);
}

NOINLINE void realloc_freed() {
    char *p = make_block(10);
    release(p);
    sink = (char *)realloc(p, 20);
}

NOINLINE char *make_array(size_t n) {
    char *p = new char[n];
    sink = p;
    return p;
}

NOINLINE int *make_int() {
    int *p = new int(1);
    sink = (char *)p;
    return p;
}

NOINLINE void delete_scalar(char *p) {
    delete p;
}

NOINLINE void delete_array_of_new() {
    char *p = make_array(10);
    delete_scalar(p);
}

NOINLINE void free_of_new() {
    int *p = make_int();
    release(p);
}

NOINLINE void delete_of_malloc() {
    char *p = make_block(12);
    delete_scalar(p);
}

// reads of memory never written: the fill makes them show in what the program does
NOINLINE void uninit_read() {
    unsigned *p = (unsigned *)make_block(sizeof *p);
    printf("%08x\n", *(volatile unsigned *)p);
    release(p);
}

// what the check cannot see: a read of a freed block (only writes change its poison)
NOINLINE void read_after_free() {
    char *p = make_block(16);
    memset(p, 1, 16);
    release(p);
    printf("%d\n", ((volatile char *)p)[2] != 1);
}

static void *thread_main(void *) {
    overrun_small();
    return NULL;
}

NOINLINE void thread_overrun() {
    pthread_t t;
    pthread_create(&t, NULL, thread_main, NULL);
    pthread_join(t, NULL);
}

NOINLINE void fork_double_free() {
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        double_free();
        exit(0);
    }
    int st;
    waitpid(pid, &st, 0);
}

static const struct {
    const char *name;
    void (*fn)();
} cases[] = {
    {"overrun_small", overrun_small},
    {"overrun_exact", overrun_exact},
    {"overrun_large", overrun_large},
    {"underrun", underrun},
    {"uaf_write", uaf_write},
    {"double_free", double_free},
    {"double_free_late", double_free_late},
    {"free_stack", free_stack},
    {"free_global", free_global},
    {"free_interior", free_interior},
    {"free_interior_large", free_interior_large},
    {"free_mmap", free_mmap},
    {"realloc_freed", realloc_freed},
    {"delete_array_of_new", delete_array_of_new},
    {"free_of_new", free_of_new},
    {"delete_of_malloc", delete_of_malloc},
    {"uninit_read", uninit_read},
    {"read_after_free", read_after_free},
    {"thread_overrun", thread_overrun},
    {"fork_double_free", fork_double_free},
};

int main(int argc, char **argv) {
    if (argc < 2) {
        for (const auto &c : cases)
            printf("%s\n", c.name);
        return 0;
    }
    for (const auto &c : cases)
        if (strcmp(argv[1], c.name) == 0) {
            c.fn();
            return 0;
        }
    fprintf(stderr, "corpus: no case %s\n", argv[1]);
    return 2;
}
