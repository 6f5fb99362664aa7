/* conflicts.c: a program that exports functions of the same names as libzstd's and
 * libunwind's (-rdynamic), as rustc's libLLVM exports a ZSTD_* of its own
 * (tests/preload/conflicts.sh). The library's private dependencies must bind to themselves:
 * each of these, if ever called, says so and aborts. Every name libzstd 1.5 and libunwind 1.6
 * call through their PLT. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void called(const char *name) {
    char line[160];
    int n = snprintf(line, sizeof line, "conflicts: the program's %s was called\n", name);
    if (write(2, line, (size_t)n) < 0) {
    }
    abort();
}

#define STUB(name)                                                                             \
    void name(void);                                                                           \
    void name(void) {                                                                          \
        called(#name);                                                                         \
    }

STUB(ZSTD_CCtxParams_getParameter) STUB(ZSTD_CCtxParams_init) STUB(ZSTD_CCtxParams_reset)
STUB(ZSTD_CCtxParams_setParameter) STUB(ZSTD_CCtx_loadDictionary)
STUB(ZSTD_CCtx_loadDictionary_advanced) STUB(ZSTD_CCtx_refCDict)
STUB(ZSTD_CCtx_refPrefix_advanced) STUB(ZSTD_CCtx_reset) STUB(ZSTD_CCtx_setParameter)
STUB(ZSTD_CCtx_setPledgedSrcSize) STUB(ZSTD_cParam_getBounds) STUB(ZSTD_checkCParams)
STUB(ZSTD_compress2) STUB(ZSTD_compressBegin_usingCDict) STUB(ZSTD_compressBegin_usingDict)
STUB(ZSTD_compressBlock) STUB(ZSTD_compressBound) STUB(ZSTD_compressCCtx)
STUB(ZSTD_compressContinue) STUB(ZSTD_compressEnd) STUB(ZSTD_compressStream2)
STUB(ZSTD_compressStream2_simpleArgs) STUB(ZSTD_compress_usingCDict)
STUB(ZSTD_compress_usingDict) STUB(ZSTD_createCCtx) STUB(ZSTD_createCCtx_advanced)
STUB(ZSTD_createCDict) STUB(ZSTD_createCDict_advanced) STUB(ZSTD_createCDict_advanced2)
STUB(ZSTD_createCStream_advanced) STUB(ZSTD_estimateCCtxSize_usingCCtxParams)
STUB(ZSTD_estimateCCtxSize_usingCParams) STUB(ZSTD_estimateCDictSize_advanced)
STUB(ZSTD_estimateCStreamSize_usingCCtxParams) STUB(ZSTD_estimateCStreamSize_usingCParams)
STUB(ZSTD_freeCCtx) STUB(ZSTD_freeCDict) STUB(ZSTD_getCParams) STUB(ZSTD_getErrorCode)
STUB(ZSTD_getParams) STUB(ZSTD_initStaticCCtx) STUB(ZSTD_isError) STUB(ZSTD_maxCLevel)
STUB(ZSTD_minCLevel) STUB(ZSTD_sequenceBound) STUB(ZSTD_sizeof_CCtx) STUB(ZSTD_sizeof_CDict)
STUB(_ULx86_64_dwarf_search_unwind_table) STUB(_ULx86_64_get_proc_info)
STUB(_ULx86_64_get_proc_info_by_ip) STUB(_ULx86_64_get_reg) STUB(_ULx86_64_init_local)
STUB(_ULx86_64_is_signal_frame) STUB(_ULx86_64_resume) STUB(_ULx86_64_set_reg)
STUB(_ULx86_64_step) STUB(_U_dyn_info_list_addr) STUB(_Ux86_64_flush_cache)
STUB(_Ux86_64_get_elf_image) STUB(_Ux86_64_get_exe_image_path) STUB(_Ux86_64_getcontext)
STUB(_Ux86_64_is_fpreg) STUB(unw_backtrace)

static void *volatile keep[64];

__attribute__((noinline)) static void fill(int n) {
    for (int i = 0; i < n; i++) {
        keep[i % 64] = malloc((size_t)(16 + i % 700));
        memset(keep[i % 64], i, 16);
    }
}

int main(void) {
    fill(5000);
    puts("conflicts done");
    return 0;
}
