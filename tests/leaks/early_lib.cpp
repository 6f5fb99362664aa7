// early_lib.cpp: a library whose constructor makes a registry on the heap before tallymalloc's
// constructor runs (libraries a program links are initialized before a preloaded one). The
// registry later holds the program's blocks: a leak check that did not know the blocks of before
// its start would call them lost (tests/leaks/memcheck.sh, case "early").
#include <string>
#include <vector>

namespace {
struct Registry {
    std::vector<void *> items;
    std::string name{"a registry made by a constructor"};
};
Registry *registry = new Registry;
} // namespace

void early_register(void *p) {
    registry->items.push_back(p);
}
