/* tests/tools/wrappers.c - call sites behind allocator wrappers: parse() allocates through
 * my_alloc() and xmalloc() (one of tally's built-in wrappers), load() through xmalloc() alone.
 * tally report names the sites by load and my_alloc, with --alloc-fn 'my_*' by parse, with
 * --raw by xmalloc (tests/tools/tally.sh). */
#include <stdlib.h>
#include <string.h>
void *keep[100];
__attribute__((noinline)) void *xmalloc(size_t n) { void *p = malloc(n); if (!p) abort(); return p; }
__attribute__((noinline)) void *my_alloc(size_t n) { return xmalloc(n); }
__attribute__((noinline)) void parse(int i) { keep[i] = my_alloc(64); }
__attribute__((noinline)) void load(int i) { keep[50 + i] = xmalloc(128); }
int main(void) { for (int i = 0; i < 50; i++) { parse(i); load(i); } return 0; }
