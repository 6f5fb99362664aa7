// early_main.cpp: hands blocks to early_lib.cpp's registry, and loses one.
#include <cstdlib>

void early_register(void *p);
static void *volatile sink;

int main() {
    for (int i = 0; i < 5; i++)
        early_register(malloc(40 + static_cast<size_t>(i)));
    sink = malloc(33);
    sink = nullptr;
    return 0;
}
