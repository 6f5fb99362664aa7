// userprogs_cxx.cpp: C++ containers leaked the way ordinary programs leak them, with their
// pointers in main's locals, built at -O0 and at -O2 and compared with valgrind memcheck by
// tests/leaks/memcheck.sh.
//   map        a std::map<int, std::string> allocated with new and dropped
//   unordered  a std::unordered_map<std::string, std::vector<int>> allocated with new and dropped
//   vector     a kept std::vector<long>(6): its end-of-storage pointer is one past its 48-byte
//              block, where the next pool block starts; a 48-byte block leaked right after it
#include <cstdio>
#include <cstring>
#include <map>
#include <string>
#include <unordered_map>
#include <vector>

static int map() {
    auto *m = new std::map<int, std::string>;
    for (int i = 0; i < 100; i++)
        (*m)[i] = "value number " + std::to_string(i) + " long enough for the heap";
    int n = (int)m->size();
    m = nullptr; // the tree, its nodes and their strings leak
    return n;
}

static int unordered() {
    auto *m = new std::unordered_map<std::string, std::vector<int>>;
    for (int i = 0; i < 300; i++)
        (*m)["a key that is not short " + std::to_string(i)].assign(i % 7 + 1, i);
    int n = (int)m->bucket_count();
    m = nullptr; // the table, its bucket array, nodes, keys and vectors leak
    return n;
}

std::vector<long> *kept; // reachable

__attribute__((noinline)) static long sum(const long *v, int n) {
    long s = 0;
    for (int i = 0; i < n; i++)
        s += v[i];
    return s;
}

static int vector() {
    kept = new std::vector<long>(6);
    long *next = new long[6];
    for (int i = 0; i < 6; i++)
        next[i] = i;
    int r = (int)sum(next, 6);
    next = nullptr; // leaked: nothing points to its start
    return r;
}

int main(int argc, char **argv) {
    const char *c = argc > 1 ? argv[1] : "";
    if (!strcmp(c, "map"))
        return map() != 100;
    if (!strcmp(c, "unordered"))
        return unordered() == 0;
    if (!strcmp(c, "vector"))
        return vector() != 15;
    std::fprintf(stderr, "usage: userprogs_cxx map|unordered|vector\n");
    return 2;
}
