/* gcc_input.c - the program gcc.sh compiles with and without libtallymalloc.so.
 *
 * Only its compilation matters: it gives cc1 some structs, loops, inline
 * functions, a switch and a few hundred lines to optimise at -O2.  Once
 * built it prints deterministic results, so the two executables can be
 * compared by what they print as well as byte for byte.
 */

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

/* ---- a tiny PRNG ---------------------------------------------------- */

typedef struct {
    uint64_t state;
} rng_t;

static inline uint64_t rng_next(rng_t *r)
{
    /* xorshift64* */
    r->state ^= r->state >> 12;
    r->state ^= r->state << 25;
    r->state ^= r->state >> 27;
    return r->state * 2685821657736338717ULL;
}

static inline uint32_t rng_below(rng_t *r, uint32_t n)
{
    return (uint32_t)(rng_next(r) % n);
}

/* ---- vectors and matrices ------------------------------------------- */

typedef struct {
    double x, y, z;
} vec3;

static inline vec3 vec3_add(vec3 a, vec3 b)
{
    return (vec3){a.x + b.x, a.y + b.y, a.z + b.z};
}

static inline vec3 vec3_scale(vec3 a, double s)
{
    return (vec3){a.x * s, a.y * s, a.z * s};
}

static inline double vec3_dot(vec3 a, vec3 b)
{
    return a.x * b.x + a.y * b.y + a.z * b.z;
}

static inline vec3 vec3_cross(vec3 a, vec3 b)
{
    return (vec3){a.y * b.z - a.z * b.y, a.z * b.x - a.x * b.z, a.x * b.y - a.y * b.x};
}

typedef struct {
    int n;
    long *cells;
} matrix;

static matrix matrix_new(int n)
{
    matrix m = {n, calloc((size_t)n * n, sizeof(long))};
    if (!m.cells) {
        perror("calloc");
        exit(2);
    }
    return m;
}

static inline long *matrix_at(matrix *m, int i, int j)
{
    return &m->cells[(size_t)i * m->n + j];
}

static void matrix_mul(matrix *out, matrix *a, matrix *b)
{
    int n = a->n;
    for (int i = 0; i < n; i++) {
        for (int j = 0; j < n; j++) {
            long sum = 0;
            for (int k = 0; k < n; k++)
                sum += *matrix_at(a, i, k) * *matrix_at(b, k, j);
            *matrix_at(out, i, j) = sum % 1000003;
        }
    }
}

static long matrix_trace(matrix *m)
{
    long t = 0;
    for (int i = 0; i < m->n; i++)
        t += *matrix_at(m, i, i);
    return t;
}

/* ---- a chained hash table of strings -------------------------------- */

typedef struct entry {
    struct entry *next;
    uint32_t hash;
    int count;
    char key[];
} entry;

typedef struct {
    entry **buckets;
    size_t nbuckets;
    size_t size;
} table;

static inline uint32_t fnv1a(const char *s)
{
    uint32_t h = 2166136261u;
    while (*s) {
        h ^= (unsigned char)*s++;
        h *= 16777619u;
    }
    return h;
}

static void table_init(table *t, size_t nbuckets)
{
    t->buckets = calloc(nbuckets, sizeof(entry *));
    t->nbuckets = nbuckets;
    t->size = 0;
}

static void table_grow(table *t)
{
    size_t n = t->nbuckets * 2;
    entry **b = calloc(n, sizeof(entry *));
    for (size_t i = 0; i < t->nbuckets; i++) {
        entry *e = t->buckets[i];
        while (e) {
            entry *next = e->next;
            e->next = b[e->hash % n];
            b[e->hash % n] = e;
            e = next;
        }
    }
    free(t->buckets);
    t->buckets = b;
    t->nbuckets = n;
}

static entry *table_add(table *t, const char *key)
{
    uint32_t h = fnv1a(key);
    for (entry *e = t->buckets[h % t->nbuckets]; e; e = e->next) {
        if (e->hash == h && strcmp(e->key, key) == 0) {
            e->count++;
            return e;
        }
    }
    if (t->size * 4 > t->nbuckets * 3)
        table_grow(t);
    size_t len = strlen(key);
    entry *e = malloc(sizeof *e + len + 1);
    memcpy(e->key, key, len + 1);
    e->hash = h;
    e->count = 1;
    e->next = t->buckets[h % t->nbuckets];
    t->buckets[h % t->nbuckets] = e;
    t->size++;
    return e;
}

static void table_free(table *t)
{
    for (size_t i = 0; i < t->nbuckets; i++) {
        entry *e = t->buckets[i];
        while (e) {
            entry *next = e->next;
            free(e);
            e = next;
        }
    }
    free(t->buckets);
}

static int cmp_entries(const void *pa, const void *pb)
{
    const entry *a = *(entry *const *)pa, *b = *(entry *const *)pb;
    if (a->count != b->count)
        return b->count - a->count;
    return strcmp(a->key, b->key);
}

/* ---- a binary heap ---------------------------------------------------- */

typedef struct {
    int *v;
    int len, cap;
} heap;

static inline void heap_swap(int *a, int *b)
{
    int t = *a;
    *a = *b;
    *b = t;
}

static void heap_push(heap *h, int x)
{
    if (h->len == h->cap) {
        h->cap = h->cap ? h->cap * 2 : 16;
        h->v = realloc(h->v, (size_t)h->cap * sizeof(int));
    }
    int i = h->len++;
    h->v[i] = x;
    while (i > 0 && h->v[(i - 1) / 2] > h->v[i]) {
        heap_swap(&h->v[(i - 1) / 2], &h->v[i]);
        i = (i - 1) / 2;
    }
}

static int heap_pop(heap *h)
{
    int top = h->v[0];
    h->v[0] = h->v[--h->len];
    int i = 0;
    for (;;) {
        int l = 2 * i + 1, r = l + 1, m = i;
        if (l < h->len && h->v[l] < h->v[m])
            m = l;
        if (r < h->len && h->v[r] < h->v[m])
            m = r;
        if (m == i)
            break;
        heap_swap(&h->v[i], &h->v[m]);
        i = m;
    }
    return top;
}

/* ---- a tiny stack machine ------------------------------------------- */

enum op { OP_PUSH, OP_ADD, OP_MUL, OP_DUP, OP_SWAP, OP_ROT, OP_DROP, OP_MOD, OP_JNZ, OP_DEC, OP_HALT };

typedef struct {
    enum op op;
    long arg;
} insn;

static long run_program(const insn *code, size_t len)
{
    long stack[64];
    int sp = 0;
    size_t pc = 0;
    long steps = 0;
    while (pc < len && steps < 1000000) {
        const insn *in = &code[pc++];
        steps++;
        switch (in->op) {
        case OP_PUSH: stack[sp++] = in->arg; break;
        case OP_ADD: sp--; stack[sp - 1] += stack[sp]; break;
        case OP_MUL: sp--; stack[sp - 1] *= stack[sp]; break;
        case OP_MOD: sp--; stack[sp - 1] %= stack[sp]; break;
        case OP_DUP: stack[sp] = stack[sp - 1]; sp++; break;
        case OP_SWAP: {
            long t = stack[sp - 1];
            stack[sp - 1] = stack[sp - 2];
            stack[sp - 2] = t;
            break;
        }
        case OP_ROT: { /* a b c -> b c a */
            long t = stack[sp - 3];
            stack[sp - 3] = stack[sp - 2];
            stack[sp - 2] = stack[sp - 1];
            stack[sp - 1] = t;
            break;
        }
        case OP_DROP: sp--; break;
        case OP_DEC: stack[sp - 1]--; break;
        case OP_JNZ:
            if (stack[sp - 1] != 0)
                pc = (size_t)in->arg;
            break;
        case OP_HALT: return stack[sp - 1] + steps;
        }
    }
    return sp > 0 ? stack[sp - 1] : -1;
}

/* ---- main ------------------------------------------------------------- */

int main(void)
{
    rng_t rng = {0x9E3779B97F4A7C15ULL};

    /* Vectors. */
    vec3 acc = {0, 0, 0};
    for (int i = 0; i < 100000; i++) {
        vec3 a = {rng_below(&rng, 100) / 10.0, rng_below(&rng, 100) / 10.0, 1.0};
        vec3 b = {1.0, rng_below(&rng, 50) / 5.0, rng_below(&rng, 20) / 2.0};
        acc = vec3_add(acc, vec3_scale(vec3_cross(a, b), 0.001));
        acc.z += vec3_dot(a, b) * 1e-6;
    }
    printf("vec %.3f %.3f %.3f\n", acc.x, acc.y, acc.z);

    /* Matrices. */
    matrix a = matrix_new(48), b = matrix_new(48), c = matrix_new(48);
    for (int i = 0; i < 48; i++)
        for (int j = 0; j < 48; j++) {
            *matrix_at(&a, i, j) = rng_below(&rng, 1000);
            *matrix_at(&b, i, j) = (i * 31 + j * 17) % 101;
        }
    for (int round = 0; round < 5; round++) {
        matrix_mul(&c, &a, &b);
        matrix t = a;
        a = c;
        c = t;
    }
    printf("matrix trace %ld\n", matrix_trace(&a));
    free(a.cells);
    free(b.cells);
    free(c.cells);

    /* Words in a hash table. */
    static const char *syll[] = {"ka", "lo", "mi", "nu", "pe", "ra", "si", "to", "vu", "ze"};
    table t;
    table_init(&t, 16);
    char word[32];
    for (int i = 0; i < 200000; i++) {
        int n = 1 + rng_below(&rng, 4);
        word[0] = '\0';
        for (int k = 0; k < n; k++)
            strcat(word, syll[rng_below(&rng, ARRAY_LEN(syll))]);
        table_add(&t, word);
    }
    entry **all = malloc(t.size * sizeof(entry *));
    size_t k = 0;
    for (size_t i = 0; i < t.nbuckets; i++)
        for (entry *e = t.buckets[i]; e; e = e->next)
            all[k++] = e;
    qsort(all, k, sizeof(entry *), cmp_entries);
    printf("words %zu distinct, top:", t.size);
    for (size_t i = 0; i < 5 && i < k; i++)
        printf(" %s=%d", all[i]->key, all[i]->count);
    printf("\n");
    free(all);
    table_free(&t);

    /* Heap sort. */
    heap h = {0};
    for (int i = 0; i < 50000; i++)
        heap_push(&h, (int)rng_below(&rng, 1000000));
    long checksum = 0;
    int prev = -1, sorted = 1;
    for (int i = 0; i < 50000; i++) {
        int x = heap_pop(&h);
        if (x < prev)
            sorted = 0;
        prev = x;
        checksum = (checksum * 31 + x) % 1000000007;
    }
    free(h.v);
    printf("heap sorted=%d checksum=%ld\n", sorted, checksum);

    /* Stack machine: the sum of i*i mod 97 for i = 1000..1. */
    insn prog[] = {
        {OP_PUSH, 0},                                    /* acc */
        {OP_PUSH, 1000},                                 /* acc i */
        {OP_DUP, 0},     {OP_DUP, 0},  {OP_MUL, 0},      /* 2: acc i i*i */
        {OP_PUSH, 97},   {OP_MOD, 0},                    /* acc i r */
        {OP_ROT, 0},     {OP_ADD, 0},  {OP_SWAP, 0},     /* acc+r i */
        {OP_DEC, 0},     {OP_JNZ, 2},                    /* loop while i != 0 */
        {OP_DROP, 0},    {OP_HALT, 0},
    };
    printf("vm %ld\n", run_program(prog, ARRAY_LEN(prog)));
    return 0;
}
