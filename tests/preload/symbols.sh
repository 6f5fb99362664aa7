#!/bin/bash
# The library shares the program's symbol namespace: it must export the malloc API, its own
# tally_* functions, the dlopen/dlclose wrappers, glibc's introspection calls (which include the
# pools), __libc_free/__libc_realloc (which take our blocks) and C++'s operator new and delete in
# every form (as jemalloc and tcmalloc export them), sigaction and the signal() family (which
# hide the handler that writes the dump when a fatal signal ends the program: src/sig.c), and
# nothing else.
set -u
so=${TALLYMALLOC_SO:?}
allowed="aligned_alloc calloc cfree dlclose dlopen free free_aligned_sized free_sized malloc
malloc_usable_size memalign posix_memalign sigaction signal bsd_signal sysv_signal __sysv_signal pvalloc realloc reallocarray tally_dump tally_dump_leaks tally_stats_get
tally_stats_print tally_version valloc mallinfo mallinfo2 malloc_stats malloc_info mallopt malloc_trim
__libc_free __libc_realloc
_Znwm _Znam _ZnwmRKSt9nothrow_t _ZnamRKSt9nothrow_t _ZnwmSt11align_val_t _ZnamSt11align_val_t
_ZnwmSt11align_val_tRKSt9nothrow_t _ZnamSt11align_val_tRKSt9nothrow_t
_ZdlPv _ZdaPv _ZdlPvm _ZdaPvm _ZdlPvRKSt9nothrow_t _ZdaPvRKSt9nothrow_t
_ZdlPvSt11align_val_t _ZdaPvSt11align_val_t _ZdlPvmSt11align_val_t _ZdaPvmSt11align_val_t
_ZdlPvSt11align_val_tRKSt9nothrow_t _ZdaPvSt11align_val_tRKSt9nothrow_t"
got=$(nm -D --defined-only "$so" | awk '{print $3}' | sed 's/@.*//' | sort -u)
want=$(echo $allowed | tr ' ' '\n' | sort -u)
if [ "$got" != "$want" ]; then
    echo "exported symbols differ from the allowed set:"
    diff <(echo "$want") <(echo "$got")
    exit 1
fi
# No dependency on libunwind or anything else that could take over the program's symbols.
deps=$(readelf -d "$so" | awk '/NEEDED/ {print $5}' | tr -d '[]' | sort | tr '\n' ' ')
case "$deps" in
    "libc.so.6 "|"ld-linux-x86-64.so.2 libc.so.6 ") ;;
    *) echo "unexpected DT_NEEDED: $deps"; exit 1 ;;
esac
# All thread-local storage is initial-exec: no __tls_get_addr, which can call malloc.
if nm -D "$so" | grep -q __tls_get_addr; then
    echo "the library uses dynamic TLS (__tls_get_addr)"
    exit 1
fi
echo "exports and dependencies ok: $deps"
