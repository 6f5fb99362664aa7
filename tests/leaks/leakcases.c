/* leakcases.c: one leak situation per argument, run both under `tally run --leaks` and under
 * valgrind memcheck by tests/leaks/memcheck.sh, which wants the same four kinds from both.
 * The variables that hold pointers are global (not static), so that no compiler may drop a store
 * to them and then the allocation as unused (the build also asks for -O0, but a CFLAGS of the
 * person building comes after it). See run_case for the stack. */
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct node {
    struct node *next;
    long payload[3];
};

static void *volatile sink; /* to drop a pointer on purpose */

static void drop(void *p) {
    sink = p;
    sink = NULL;
}

static struct node *list_of(int n, size_t size) {
    struct node *head = NULL;
    for (int i = 0; i < n; i++) {
        struct node *x = calloc(1, size);
        x->next = head;
        head = x;
    }
    return head;
}

/* ---- the cases ------------------------------------------------------------------------------ */
static void dropped(void) {
    drop(malloc(24));
    drop(malloc(100));
    drop(malloc(600)); /* a large block: glibc's */
    drop(calloc(10, 10));
    drop(realloc(malloc(40), 4000)); /* across the 512-byte boundary */
    void *a;
    if (posix_memalign(&a, 64, 256) == 0)
        drop(a);
    drop(aligned_alloc(4096, 8192));
    drop(malloc(0));
}

static void cycle(void) {
    struct node *a = calloc(1, 48), *b = calloc(1, 48);
    a->next = b;
    b->next = a;
    drop(a);
    struct node *x = calloc(1, 64), *y = calloc(1, 64), *z = calloc(1, 64);
    x->next = y;
    y->next = z;
    z->next = x;
    drop(x);
}

struct node *kept_list;

static void list(void) {
    drop(list_of(10, 32));
    kept_list = list_of(7, 48);
}

void *globals_arr[4];
struct {
    int tag;
    void *a, *b;
} globals_rec;

static void globals(void) {
    for (int i = 0; i < 4; i++)
        globals_arr[i] = malloc(16 * (size_t)(i + 1));
    globals_rec.a = malloc(200);
    globals_rec.b = malloc(2000);
    drop(malloc(72));
}

static void *cached(void) {
    static char *cache; /* a static local */
    if (!cache)
        cache = malloc(128);
    return cache;
}

static void static_local(void) {
    cached();
    cached();
    drop(malloc(8));
}

/* A thread that keeps pointers in its own frame and its own thread-local storage, then blocks
 * until the process exits. */
__thread void *tls_slot;
static pthread_key_t key;
static int ready[2], never[2];

static void *holder(void *arg) {
    int use_tls = arg != NULL;
    void *volatile local1 = malloc(40);
    void *volatile local2 = malloc(5000);
    if (use_tls) {
        tls_slot = malloc(56);
        pthread_setspecific(key, malloc(88));
    }
    char c = 1;
    if (write(ready[1], &c, 1) != 1)
        abort();
    if (read(never[0], &c, 1) < 0) /* blocks: nobody writes */
        abort();
    sink = local1;
    sink = local2;
    return NULL;
}

static void start_holder(int use_tls) {
    if (pipe(ready) != 0 || pipe(never) != 0)
        abort();
    pthread_t t;
    if (pthread_create(&t, NULL, holder, use_tls ? &t : NULL) != 0)
        abort();
    char c;
    if (read(ready[0], &c, 1) != 1)
        abort();
}

static void thread_stack(void) {
    start_holder(0);
    drop(malloc(30));
}

static void tls(void) {
    pthread_key_create(&key, NULL);
    tls_slot = malloc(24); /* the main thread's own */
    start_holder(1);
}

char *interior_ptr, *interior_far;
void **interior_holder;

static void interior(void) {
    interior_ptr = (char *)calloc(1, 64) + 16; /* only the middle: possibly lost */
    interior_far = (char *)calloc(1, 3000) + 2999; /* the last byte of a large block */
    interior_holder = malloc(32);
    interior_holder[0] = (char *)calloc(1, 80) + 40; /* from a reachable block */
    interior_holder[1] = (char *)calloc(1, 80) + 80; /* one past the end: no pointer at all */
}

void **big_kept;

static void large_inside(void) {
    big_kept = malloc(10000);
    for (int i = 0; i < 50; i++)
        big_kept[i] = malloc(24 + (size_t)i);
    big_kept[50] = NULL;
    void **big_lost = malloc(20000);
    for (int i = 0; i < 20; i++)
        big_lost[i] = malloc(40);
    big_lost[20] = malloc(70000); /* a large block only a lost one points to */
    drop(big_lost);
}

struct node *chain;

static void nested(void) {
    chain = calloc(1, 32);
    chain->next = calloc(1, 300);
    chain->next->next = calloc(1, 3000);
    chain->next->next->next = calloc(1, 32);
    /* reached only through an interior pointer: it and what it points to are possibly lost */
    struct node *x = calloc(1, 96);
    x->next = calloc(1, 48);
    x->next->next = calloc(1, 48);
    chain->payload[0] = (long)((char *)x + 8);
}

/* memcheck's heuristics (its default, --leak-check-heuristics=all) */
void *h_len, *h_arr, *h_str, *h_none;

static void heuristics(void) {
    uint64_t *b = malloc(48); /* length64: a size prefix, the pointer after it */
    b[0] = 40;
    h_len = b + 1;
    uint64_t *c = malloc(40); /* newarray: a count that divides the rest */
    c[0] = 4;
    h_arr = c + 1;
    uint64_t *s = malloc(24 + 10 + 1); /* the old std::string: length, capacity, refcount */
    s[0] = 5;
    s[1] = 10;
    s[2] = 0;
    h_str = s + 3;
    uint64_t *n = malloc(40); /* a count that does not divide: no heuristic */
    n[0] = 3;
    h_none = n + 1;
}

/* Every block of a kind freed again, and a clean exit: nothing live. */
static void clean(void) {
    struct node *l = list_of(20, 32);
    while (l) {
        struct node *n = l->next;
        free(l);
        l = n;
    }
    free(malloc(1000));
}

static const struct {
    const char *name;
    void (*fn)(void);
} cases[] = {
    {"dropped", dropped},     {"cycle", cycle},       {"list", list},
    {"globals", globals},     {"static_local", static_local},
    {"thread_stack", thread_stack}, {"tls", tls},     {"interior", interior},
    {"large_inside", large_inside}, {"nested", nested}, {"heuristics", heuristics},
    {"clean", clean},
};

/* The case runs below a zeroed 16 KiB frame, and exit's frames later lie on those zeros: no
 * word left by the case can sit in a frame that is live at exit. (memcheck would not count such a
 * word anyway: a new frame's bytes are undefined to it, and it only counts defined words. An
 * in-process scan cannot know what is defined.) */
static __attribute__((noinline)) void run_case(void (*fn)(void)) {
    volatile char pad[16384];
    memset((char *)pad, 0, sizeof pad);
    fn();
    pad[0] = 0;
}

int main(int argc, char **argv) {
    if (argc != 2)
        return 2;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        if (strcmp(argv[1], cases[i].name) == 0) {
            run_case(cases[i].fn);
            return 0;
        }
    return 2;
}
