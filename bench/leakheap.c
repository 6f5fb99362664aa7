/* leakheap.c - a live heap of MB megabytes for the leak check to scan (bench/leaks.sh): lists of
 * small nodes (16..256 bytes, each pointing to the next) hung from a global table, one list in
 * ten dropped, and a large block (8..64 KiB) of pointers per 4 MiB. Everything is still live at
 * exit, so the check marks the whole heap. Prints "ok".
 *
 *   leakheap MB */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct node {
    struct node *next;
    char data[];
};

#define LISTS 4096
struct node *lists[LISTS];
void **tables[4096];

int main(int argc, char **argv) {
    long mb = argc > 1 ? strtol(argv[1], NULL, 10) : 100;
    if (mb < 1 || mb > 65536) {
        fprintf(stderr, "usage: leakheap MB\n");
        return 2;
    }
    unsigned long long rng = 7, want = (unsigned long long)mb << 20, have = 0;
    unsigned ntables = 0;
    while (have < want) {
        rng = rng * 6364136223846793005ULL + 1442695040888963407ULL;
        unsigned k = (unsigned)(rng >> 33) % LISTS;
        size_t n = 16 + (size_t)((rng >> 20) % 241);
        struct node *x = malloc(n);
        memset(x->data, 0, n - sizeof *x);
        x->next = lists[k];
        lists[k] = x;
        have += n;
        if ((have >> 22) > ntables && ntables < 4096) { /* a large block of pointers per 4 MiB */
            size_t m = (size_t)(8 + (rng >> 40) % 57) << 10;
            void **t = malloc(m);
            for (size_t i = 0; i < m / sizeof *t; i++)
                t[i] = lists[(k + i) % LISTS];
            tables[ntables++] = t;
            have += m;
        }
    }
    for (unsigned k = 0; k < LISTS; k += 10) /* dropped: lost, unless a table still points in */
        lists[k] = NULL;
    printf("ok\n");
    return 0;
}
