/* generations.c - two different plugins loaded one after the other (tests/prof/generations.sh):
 * PATH_A makes 16 allocations and is closed, then PATH_B, loaded where PATH_A was, makes 24
 * and is closed. Prints each plugin's load address. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: generations PATH_A PATH_B\n");
        return 2;
    }
    int counts[2] = {16, 24};
    for (int k = 0; k < 2; k++) {
        void *h = dlopen(argv[1 + k], RTLD_NOW);
        if (!h) {
            fprintf(stderr, "dlopen: %s\n", dlerror());
            return 1;
        }
        int (*work)(int) = (int (*)(int))dlsym(h, "gen_work");
        Dl_info di;
        if (!work || !dladdr((void *)work, &di) || work(counts[k]) != 0)
            return 1;
        printf("%s %p\n", k ? "b" : "a", di.dli_fbase);
        if (dlclose(h) != 0)
            return 1;
    }
    return 0;
}
