/* evil_names.c: a program whose function's symbol is renamed by tests/tools/hostile.sh, in a
 * copy of the binary, to a name holding terminal controls (ESC, BEL, CSI), a line break and a
 * byte that is not UTF-8: its symbolized stacks must reach the user's terminal escaped. The
 * placeholder name has the length of the name it becomes. */
#include <stdio.h>
#include <stdlib.h>

void *evil(size_t n) __asm__("evilQ_0_pwnedRSfakeQline");

__attribute__((noinline)) void *evil(size_t n) {
    void *p = malloc(n);
    __asm__ volatile("" ::: "memory");
    return p;
}

int main(void) {
    void *keep[100];
    for (int i = 0; i < 100; i++)
        keep[i] = evil(100 + (size_t)i);
    for (int i = 0; i < 100; i += 2)
        free(keep[i]);
    puts("done"); /* the other half stays live: leaked at exit */
    return 0;
}
