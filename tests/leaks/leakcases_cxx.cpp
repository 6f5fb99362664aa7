// leakcases_cxx.cpp: the C++ cases of tests/leaks/memcheck.sh. Objects with std::string and
// std::vector members, kept and dropped; arrays made by new[] (a count before the elements);
// and a pointer to the second base of a class with two bases (into the object's middle). The
// variables holding pointers are global, so that no store to them (nor the allocation) is dropped.
#include <cstring>
#include <memory>
#include <string>
#include <vector>

struct Person {
    std::string name;
    std::vector<int> scores;
    std::string note;
    Person(const char *n, int k) : name(n), scores(static_cast<size_t>(k), 7), note() {}
};

struct A {
    virtual ~A() {}
    long a = 1;
};
struct B {
    virtual ~B() {}
    long b = 2;
};
struct C : A, B {
    long c = 3;
};

struct Counted { // a destructor, so new[] stores the count before the elements
    ~Counted() { v = 0; }
    long v = 1;
};

Person *kept;
std::vector<std::string> names;
B *second_base;
Counted *array_kept;
static void *volatile sink;

static __attribute__((noinline)) void members() {
    kept = new Person("a name long enough to need the heap", 40);
    Person *lost = new Person("another name longer than fifteen", 300);
    sink = lost;
    sink = nullptr;
    Person *short_lost = new Person("short", 2); // name in place: no buffer of its own
    sink = short_lost;
    sink = nullptr;
    for (int i = 0; i < 5; i++)
        names.push_back(std::string(40, static_cast<char>('a' + i)));
}

static __attribute__((noinline)) void bases_and_arrays() {
    second_base = new C(); // a B* is 16 bytes into the C
    B *lost = new C();
    sink = lost;
    sink = nullptr;
    array_kept = new Counted[4];
    Counted *array_lost = new Counted[6];
    sink = array_lost;
    sink = nullptr;
    std::unique_ptr<int[]> freed(new int[100]);
}

// Below a zeroed frame that exit's frames later lie on (see run_case in leakcases.c).
static __attribute__((noinline)) void run_case(void (*fn)()) {
    volatile char pad[16384];
    memset(const_cast<char *>(pad), 0, sizeof pad);
    fn();
    pad[0] = 0;
}

int main(int argc, char **argv) {
    if (argc != 2)
        return 2;
    if (strcmp(argv[1], "members") == 0)
        run_case(members);
    else if (strcmp(argv[1], "bases") == 0)
        run_case(bases_and_arrays);
    else
        return 2;
    return 0;
}
