/* dlopen/dlclose under the profiler (tests/prof/plugin.sh): tls_lib.so is loaded, called (it
 * makes 64 allocations from its own code) and closed, twice; then deepbind_lib.so is loaded and
 * closed. The plugins are found through this program's RUNPATH. */
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(void) {
    for (int round = 0; round < 2; round++) {
        void *h = dlopen("tls_lib.so", RTLD_NOW);
        if (!h) {
            fprintf(stderr, "dlopen: %s\n", dlerror());
            return 1;
        }
        int (*work)(unsigned) = (int (*)(unsigned))dlsym(h, "plugin_tls_work");
        if (!work || work(7 + (unsigned)round) != 0)
            return 2;
        if (dlclose(h) != 0)
            return 3;
    }
    void *h = dlopen("deepbind_lib.so", RTLD_NOW);
    if (!h)
        return 4;
    char *(*fn)(char *) = (char *(*)(char *))dlsym(h, "plugin_take_and_make");
    char *mine = malloc(24);
    strcpy(mine, "from the program");
    free(fn(mine));
    dlclose(h);
    printf("done\n");
    return 0;
}
