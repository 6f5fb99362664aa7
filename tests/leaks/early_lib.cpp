// early_lib.cpp: a library whose constructor makes a registry on the heap before tallymalloc's
// constructor runs (libraries a program links are initialized before a preloaded one). The
// registry later holds the program's blocks: a leak check that did not know the blocks of before
// its start would call them lost (tests/leaks/memcheck.sh, case "early"). It also has a global
// that its destructor frees at exit: the leak check must run after that destructor, which runs
// after the destructors of a preloaded library, so the check cannot be one of those.
#include <string>
#include <vector>

namespace {
struct Registry {
    std::vector<void *> items;
    std::string name{"a registry made by a constructor"};
};
Registry *registry = new Registry;
} // namespace

std::vector<std::string> names; // freed by this library's destructor

void early_register(void *p) {
    registry->items.push_back(p);
}

void early_name(const char *s) {
    names.push_back(std::string(s) + ", with enough text to need a buffer of its own");
}
