/* manysites.c: 16384 distinct allocating stacks (a binary recursion 14 calls deep, left or right
 * at each level), so that a dump takes a while to write; then it waits to be signalled or
 * killed (tests/prof/dump_safety.sh). Prints "ready" when the stacks are made. */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#define DEPTH 14
static void *volatile keep[1 << DEPTH];

__attribute__((noinline)) static void rec(int level, unsigned path);

__attribute__((noinline)) static void left(int level, unsigned path) {
    rec(level + 1, path);
    __asm__ volatile(""); /* not a tail call: each side keeps its frame */
}

__attribute__((noinline)) static void right(int level, unsigned path) {
    rec(level + 1, path);
    __asm__ volatile("");
}

__attribute__((noinline)) static void rec(int level, unsigned path) {
    if (level == DEPTH) {
        keep[path] = malloc(32);
        return;
    }
    if (path >> level & 1)
        right(level, path);
    else
        left(level, path);
    __asm__ volatile("");
}

int main(void) {
    for (unsigned p = 0; p < 1u << DEPTH; p++)
        rec(0, p);
    puts("ready");
    fflush(stdout);
    for (int i = 0; i < 300; i++)
        usleep(100000);
    return 0;
}
