/* golden.c - a deterministic program whose dump tally's golden files describe
 * (tests/tools/tally.sh): known call sites, some freed, some temporary, some still live at exit,
 * through malloc, calloc, realloc, a large block and a dropped linked list. One thread, no
 * randomness, one line of output. Line numbers matter: the golden files name them. With the
 * argument "clean" it frees everything it allocates and prints nothing. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NOINLINE __attribute__((noinline))

static void *keep[256];

NOINLINE char *make_name(int i) {
    char *s = malloc(32);
    snprintf(s, 32, "name-%d", i);
    return s;
}

NOINLINE void parse_records(void) {
    for (int i = 0; i < 500; i++) {
        char *rec = malloc(64);
        memset(rec, i, 64);
        free(rec);
    }
}

NOINLINE void build_table(void) {
    for (int i = 0; i < 50; i++)
        keep[100 + i] = calloc(10, 40);
}

NOINLINE void *grow_buffer(void) {
    char *b = NULL;
    for (size_t n = 16; n <= 8192; n *= 2) {
        b = realloc(b, n);
        memset(b, 1, n);
    }
    return b;
}

NOINLINE void big_blocks(void) {
    void *gone = malloc(200000);
    memset(gone, 2, 200000);
    keep[200] = malloc(100000);
    free(gone);
}

struct node {
    struct node *next;
    char payload[40];
};

NOINLINE void lose_list(void) {
    struct node *head = NULL;
    for (int i = 0; i < 20; i++) {
        struct node *n = malloc(sizeof *n);
        n->next = head;
        head = n;
    }
    head = NULL; /* dropped */
}

int main(int argc, char **argv) {
    if (argc > 1 && strcmp(argv[1], "clean") == 0) { /* everything freed: nothing leaks */
        for (int i = 0; i < 100; i++)
            free(make_name(i));
        parse_records();
        return 0;
    }
    for (int i = 0; i < 100; i++)
        keep[i] = make_name(i);
    parse_records();
    build_table();
    keep[201] = grow_buffer();
    big_blocks();
    lose_list();
    for (int i = 0; i < 100; i += 2)
        free(keep[i]); /* half the names */
    printf("golden done\n");
    return 0;
}
