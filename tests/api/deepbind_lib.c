/* A plugin loaded with RTLD_DEEPBIND: it frees what the program allocated and the program frees
 * what it allocates. Bound to glibc's malloc, either would crash. */
#include <stdlib.h>
#include <string.h>

char *plugin_take_and_make(char *from_program) {
    free(from_program);
    char *s = malloc(32);
    strcpy(s, "made by the plugin");
    return s;
}
