// cxx_new: every form of operator new and delete, their alignment, out of memory (the
// new-handler called, then std::bad_alloc; nullptr from the nothrow forms), and, with
// `own`, a program that replaces the plain operator new and delete (and the aligned ones):
// the standard defines the array, nothrow and sized forms by calls to those, so all of them
// must reach the program's own. Prints what it saw; run with and without the library the output
// must be the same. With `which`, prints the file that defines operator new as the program's
// calls bind it (the library's when it is preloaded).
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <dlfcn.h>
#include <new>
#include <string>
#include <vector>

#ifdef OWN
// Counted replacements of the plain forms, on malloc and free.
static unsigned long own_new, own_delete, own_new_al, own_delete_al;
void *operator new(std::size_t n) {
    own_new++;
    if (void *p = std::malloc(n ? n : 1))
        return p;
    throw std::bad_alloc();
}
void operator delete(void *p) noexcept {
    if (p)
        own_delete++;
    std::free(p);
}
void *operator new(std::size_t n, std::align_val_t al) {
    own_new_al++;
    void *p = nullptr;
    if (posix_memalign(&p, static_cast<std::size_t>(al), n ? n : 1) == 0)
        return p;
    throw std::bad_alloc();
}
void operator delete(void *p, std::align_val_t) noexcept {
    if (p)
        own_delete_al++;
    std::free(p);
}
#endif

struct alignas(64) Line {
    char c[64];
};
struct Big {
    char c[40];
    virtual ~Big() {} // a class with a destructor: `delete` is sized
};

static int handler_calls;
static void *reserve;
static void handler() {
    handler_calls++;
    std::free(reserve); // frees what it can; the retry still fails, then no handler is left
    reserve = nullptr;
    std::set_new_handler(nullptr);
}

static bool aligned(const void *p, std::size_t a) {
    return (reinterpret_cast<std::uintptr_t>(p) & (a - 1)) == 0;
}

int main(int argc, char **argv) {
    if (argc > 1 && std::strcmp(argv[1], "which") == 0) {
        Dl_info info;
        void *f = dlsym(RTLD_DEFAULT, "_Znwm");
        if (f && dladdr(f, &info) && info.dli_fname)
            std::printf("%s\n", info.dli_fname);
        return 0;
    }
    unsigned long sum = 0;
    // the plain and array forms, and the containers that use them
    for (int i = 0; i < 20000; i++) {
        int *a = new int(i);
        char *b = new char[1 + i % 3000];
        std::memset(b, 'x', 1 + i % 3000);
        Big *c = new Big;
        std::string s(static_cast<std::size_t>(i % 700), 'y');
        std::vector<int> v(static_cast<std::size_t>(i % 300), i);
        sum += static_cast<unsigned long>(*a) + static_cast<unsigned long>(b[i % 3000 ? 0 : 0]) +
               s.size() + v.size();
        delete a;
        delete[] b;
        delete c; // sized delete
    }
    std::printf("plain and array: sum %lu\n", sum);
    // nothrow
    int *n1 = new (std::nothrow) int[100];
    std::printf("nothrow: %s\n", n1 ? "ok" : "null");
    delete[] n1;
    // aligned
    bool al_ok = true;
    for (int i = 0; i < 1000; i++) {
        Line *l = new Line;
        Line *la = new Line[1 + i % 40];
        void *p4k = ::operator new(100, std::align_val_t(4096));
        void *pn = ::operator new[](5000, std::align_val_t(256), std::nothrow);
        al_ok = al_ok && aligned(l, 64) && aligned(la, 64) && aligned(p4k, 4096) && pn &&
                aligned(pn, 256);
        delete l;
        delete[] la;
        ::operator delete(p4k, std::align_val_t(4096));
        ::operator delete[](pn, std::align_val_t(256), std::nothrow);
    }
    std::printf("aligned: %s\n", al_ok ? "ok" : "MISALIGNED");
    // out of memory: nothrow forms return nullptr, the others throw std::bad_alloc
    std::size_t huge = SIZE_MAX / 4;
    void *z = ::operator new(huge, std::nothrow);
    void *za = ::operator new[](huge, std::align_val_t(64), std::nothrow);
    std::printf("nothrow out of memory: %s %s\n", z ? "non-null" : "null", za ? "non-null" : "null");
    try {
        void *q = ::operator new(huge);
        std::printf("operator new(huge) returned %s\n", q ? "a block" : "null");
    } catch (const std::bad_alloc &) {
        std::printf("operator new(huge): std::bad_alloc\n");
    }
    try {
        void *q = ::operator new[](huge, std::align_val_t(128));
        std::printf("aligned operator new[](huge) returned %s\n", q ? "a block" : "null");
    } catch (const std::bad_alloc &) {
        std::printf("aligned operator new[](huge): std::bad_alloc\n");
    }
    // the new-handler: called, then bad_alloc once it has removed itself
    reserve = std::malloc(1000);
    std::set_new_handler(handler);
    try {
        void *q = ::operator new(huge);
        std::printf("with a handler: returned %s\n", q ? "a block" : "null");
    } catch (const std::bad_alloc &) {
        std::printf("with a handler: called %d time(s), then std::bad_alloc\n", handler_calls);
    }
#ifdef OWN
    std::printf("own new %s, own delete %s, own aligned new %s, own aligned delete %s\n",
                own_new >= 20000 * 4 ? "used" : "NOT USED", own_delete >= 20000 * 3 ? "used" : "NOT USED",
                own_new_al >= 3000 ? "used" : "NOT USED", own_delete_al >= 3000 ? "used" : "NOT USED");
#endif
    return 0;
}
