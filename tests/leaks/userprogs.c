/* userprogs.c: leaks written the way ordinary C programs leak, with their pointers in main's
 * locals (not globals, unlike leakcases.c), built at -O0 and at -O2 and compared with valgrind
 * memcheck by tests/leaks/memcheck.sh. The dropped pointers survive in stale stack slots of the
 * frames that run after main, where memcheck sees undefined words and ignores them.
 *   tree      a binary search tree whose root is dropped
 *   hash      a chained hash table whose table (and bucket array) is dropped
 *   grow      a buffer grown by realloc and dropped, and a kept one shrunk in place
 *   adjacent  a kept vector (begin, end, end of storage) of 48 bytes, and a 48-byte block leaked
 *             right after its storage: pool blocks are adjacent, so the end of one could be the
 *             next one's start, and keep it reachable where memcheck says definitely lost
 *   dlerror   a dlopen that failed, its error never read (curl --version leaves one): the
 *             thread's dlerror state and its text stay reachable, whatever the library does at
 *             exit (a dlsym there would free them)
 *   dlopen    a library opened and kept: the dynamic loader's blocks for it
 *   realloc_kept  the old pointer kept, the new one dropped, after a realloc that stays in
 *             place here and moves under memcheck: a documented difference (README) */
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct node {
    int key;
    struct node *left, *right;
};

static struct node *insert(struct node *t, int key) {
    if (!t) {
        t = malloc(sizeof *t);
        t->key = key;
        t->left = t->right = NULL;
        return t;
    }
    if (key < t->key)
        t->left = insert(t->left, key);
    else
        t->right = insert(t->right, key);
    return t;
}

static int tree(void) {
    struct node *root = NULL;
    for (int i = 0; i < 100; i++)
        root = insert(root, (i * 7919) % 1000);
    int top = root->key;
    root = NULL; /* the whole tree leaks */
    return top;
}

struct entry {
    char *key;
    int value;
    struct entry *next;
};

struct table {
    struct entry **buckets;
    size_t nbuckets;
};

static int hash(void) {
    struct table *t = malloc(sizeof *t);
    t->nbuckets = 64;
    t->buckets = calloc(t->nbuckets, sizeof *t->buckets);
    for (int i = 0; i < 200; i++) {
        char key[32];
        snprintf(key, sizeof key, "key%d", i);
        size_t h = 0;
        for (const char *c = key; *c; c++)
            h = h * 31 + (unsigned char)*c;
        struct entry *e = malloc(sizeof *e);
        e->key = strdup(key);
        e->value = i;
        e->next = t->buckets[h % t->nbuckets];
        t->buckets[h % t->nbuckets] = e;
    }
    int first = t->buckets[0] != NULL;
    t = NULL; /* the table, its buckets and every entry leak */
    return first;
}

char *kept; /* a global: what it points to stays reachable */

static int grow(void) {
    size_t cap = 8, len = 0;
    char *buf = malloc(cap);
    for (int i = 0; i < 3000; i++) {
        if (len + 1 > cap) {
            cap *= 2;
            buf = realloc(buf, cap);
        }
        buf[len++] = (char)('a' + i % 26);
    }
    int last = buf[len - 1];
    buf = NULL; /* the grown buffer leaks */
    kept = malloc(300);
    memset(kept, 'x', 300);
    kept = realloc(kept, 260); /* shrunk in place: still reachable, 260 bytes */
    return last;
}

struct vec {
    long *begin, *end, *cap; /* a std::vector's three pointers */
} kept_vec;

__attribute__((noinline)) static long sum(const long *v, int n) {
    long s = 0;
    for (int i = 0; i < n; i++)
        s += v[i];
    return s;
}

static int adjacent(void) {
    kept_vec.begin = malloc(6 * sizeof(long));
    kept_vec.end = kept_vec.cap = kept_vec.begin + 6; /* one past the end: the next block's start? */
    for (long *p = kept_vec.begin; p < kept_vec.end; p++)
        *p = p - kept_vec.begin;
    long *next = malloc(6 * sizeof(long));
    for (int i = 0; i < 6; i++)
        next[i] = i;
    int r = (int)sum(next, 6);
    next = NULL; /* leaked: nothing points to its start, whatever follows the vector's storage */
    return r;
}

static int dlerror_left(void) {
    return dlopen("/nonexistent/libnothing.so.1", RTLD_NOW) == NULL;
}

void *plugin;

static int dlopen_kept(void) {
    plugin = dlopen("libelf.so.1", RTLD_NOW);
    return plugin != NULL;
}

char *old_pointer;

static int realloc_kept(void) {
    char *p = malloc(100);
    memset(p, 1, 100);
    old_pointer = p;
    p = realloc(p, 90); /* in place here: the same class, less than a quarter shed */
    int r = p[0];
    p = NULL;
    return r;
}

int main(int argc, char **argv) {
    const char *c = argc > 1 ? argv[1] : "";
    if (!strcmp(c, "tree"))
        return tree() != 0;
    if (!strcmp(c, "hash"))
        return hash() < 0;
    if (!strcmp(c, "grow"))
        return grow() == 0;
    if (!strcmp(c, "adjacent"))
        return !adjacent();
    if (!strcmp(c, "dlerror"))
        return !dlerror_left();
    if (!strcmp(c, "dlopen"))
        return !dlopen_kept();
    if (!strcmp(c, "realloc_kept"))
        return realloc_kept() != 1;
    fprintf(stderr, "usage: userprogs tree|hash|grow|adjacent|dlerror|dlopen|realloc_kept\n");
    return 2;
}
