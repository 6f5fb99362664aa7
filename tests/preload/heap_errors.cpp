// heap_errors.cpp: a C++ object deleted twice (tests/preload/heap_errors.sh).
#include <cstdio>
#include <malloc.h>
#include <vector>

struct Order {
    std::vector<int> lines;
};
static_assert(sizeof(Order) == 24, "a 32-byte pool block: the usable-size test in main");

__attribute__((noinline)) static void settle(Order *o) {
    delete o;
}

int main() {
    // A pool block (see pool_block in heap_errors.c): in sample mode one request in many goes
    // to glibc, which would catch the double delete itself.
    Order *o = new Order{{1, 2, 3}};
    for (int i = 0; i < 16 && malloc_usable_size(o) != 32; i++)
        o = new Order{{1, 2, 3}};
    settle(o);
    settle(o);
    std::puts("survived");
    return 0;
}
