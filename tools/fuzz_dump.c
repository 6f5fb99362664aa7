/* fuzz_dump.c - a libFuzzer target for the dump reader (tools/dumpfile.c): any bytes, as text
 * or as a zstd frame, must be read or refused with a message, never crash, hang or leak. Built
 * and run for a short while by tests/tools/fuzz.sh, with clang's -fsanitize=fuzzer,address.
 * For longer runs:
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -DDUMP_MAX_TEXT='(64u<<20)' \
 *       -Itools tools/fuzz_dump.c tools/dumpfile.c tools/symbols.c tools/pyview.c -ldw -lelf \
 *       -lzstd -lstdc++ -lm \
 *       -o fuzz_dump && ./fuzz_dump CORPUS_DIR */
#include "dumpfile.h"
#include "pyview.h"
#include "symbols.h"

#include <stdint.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    dump_t d;
    char err[512];
    if (!dump_parse("fuzz", (const char *)data, size, &d, err, sizeof err)) {
        if (err[0] == '\0' || !memchr(err, '\0', sizeof err))
            __builtin_trap(); /* a refusal must say why */
        return 0;
    }
    /* Everything a subcommand walks: every stack, every frame's module. */
    uint64_t ips[1024];
    uint64_t sum = 0;
    for (size_t i = 0; i < d.nsites; i++) {
        uint32_t n = dump_frames(&d, &d.sites[i], ips, 1024);
        for (uint32_t k = 0; k < n && k < 1024; k++)
            sum += (uint64_t)sym_module_of(&d, ips[k], d.sites[i].gen);
    }
    for (size_t i = 0; i < d.nblocks; i++)
        sum += d.sites[d.blocks[i].site].leak_blocks;
    /* A Python program's views (tools/pyview.c), each on a dump of its own. */
    for (int by = PYGROUP_STACK; d.npycodes && by <= PYGROUP_FUNCTION; by++) {
        dump_t v;
        if (!dump_parse("fuzz", (const char *)data, size, &v, err, sizeof err))
            __builtin_trap(); /* read once, read again */
        if (dump_python_view(&v, (enum py_group)by, err, sizeof err))
            for (size_t i = 0; i < v.nsites; i++)
                sum += dump_frames(&v, &v.sites[i], ips, 1024);
        for (size_t i = 0; i < v.nblocks; i++)
            sum += v.sites[v.blocks[i].site].alloc_count;
        dump_free(&v);
    }
    __asm__ volatile("" : : "r"(sum));
    dump_free(&d);
    return 0;
}
