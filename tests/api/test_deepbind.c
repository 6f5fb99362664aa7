/* dlopen with RTLD_DEEPBIND must not split the program between two allocators, and the dlopen
 * wrapper must keep the caller's RUNPATH: the plugin is found only through this program's
 * RUNPATH (set at link time to the plugin's directory). */
#include "../test.h"

#include <dlfcn.h>
#include <string.h>

int main(void) {
    void *h = dlopen("deepbind_lib.so", RTLD_NOW | RTLD_DEEPBIND);
    if (!h) {
        fprintf(stderr, "dlopen: %s\n", dlerror());
        return 1;
    }
    char *(*fn)(char *) = (char *(*)(char *))dlsym(h, "plugin_take_and_make");
    assert_true(fn != NULL);
    for (int i = 0; i < 1000; i++) {
        char *mine = malloc(24);
        strcpy(mine, "from the program");
        char *theirs = fn(mine);
        expect_true(strcmp(theirs, "made by the plugin") == 0);
        free(theirs);
    }
    dlclose(h);
    return test_result();
}
