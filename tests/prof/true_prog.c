/* true_prog.c: allocates a little and exits (tests/prof/dump_safety.sh). */
#include <stdlib.h>
int main(void) {
    void *volatile p = malloc(100);
    free(p);
    p = malloc(1000);
    return 0;
}
