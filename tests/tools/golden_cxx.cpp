// golden_cxx.cpp - C++ for tally's golden files (tests/tools/tally.sh): objects made through an
// inlined helper, with std::string and std::vector members, half of them kept to the end. The
// stacks go through inlined frames (make_record, the library's templates) and C++ names.
#include <cstdio>
#include <string>
#include <vector>

namespace inventory {

struct Record {
    std::string name;
    std::vector<int> counts;
};

static inline __attribute__((always_inline)) Record *make_record(int i) {
    return new Record{"record number " + std::to_string(i * 1000003), std::vector<int>(i % 7 + 1)};
}

__attribute__((noinline)) void fill(std::vector<Record *> &out, int n) {
    for (int i = 0; i < n; i++)
        out.push_back(make_record(i));
}

} // namespace inventory

int main() {
    std::vector<inventory::Record *> v;
    inventory::fill(v, 64);
    for (size_t i = 0; i < v.size(); i += 2)
        delete v[i];
    std::printf("golden_cxx done %zu\n", v.size());
    return 0;
}
