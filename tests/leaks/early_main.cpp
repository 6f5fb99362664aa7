// early_main.cpp: hands blocks to early_lib.cpp's registry and names to its global vector, and
// loses one block.
#include <cstdlib>

void early_register(void *p);
void early_name(const char *s);
static void *volatile sink;

int main() {
    for (int i = 0; i < 5; i++)
        early_register(malloc(40 + static_cast<size_t>(i)));
    for (int i = 0; i < 4; i++)
        early_name("a name");
    sink = malloc(33);
    sink = nullptr;
    return 0;
}
