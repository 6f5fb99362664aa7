// heap_errors.cpp: a C++ object deleted twice (tests/preload/heap_errors.sh).
#include <cstdio>
#include <vector>

struct Order {
    std::vector<int> lines;
};

__attribute__((noinline)) static void settle(Order *o) {
    delete o;
}

int main() {
    Order *o = new Order{{1, 2, 3}};
    settle(o);
    settle(o);
    std::puts("survived");
    return 0;
}
