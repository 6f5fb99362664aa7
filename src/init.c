/* init.c: start-up and the hooks into the dynamic linker. The allocator initialises itself
 * lazily on the first call from any context (ld.so and libstdc++ allocate before constructors
 * run); the constructor then reads what needs a running libc. Exports tally_version and the
 * dlopen wrapper that keeps RTLD_DEEPBIND libraries from binding to glibc's malloc. */
#include "internal.h"
#include "prof.h"
#include "tally.h"

#include <dlfcn.h>
#include <link.h>
#include <sched.h>
#include <stdlib.h>
#include <unistd.h>

extern char **__environ;
extern int __cxa_atexit(void (*fn)(void *), void *arg, void *dso);

static _Atomic int init_state; /* 0 not yet, 1 running, 2 done, 3 failed (all to glibc) */

bool tally_init_global(void) {
    int s = atomic_load_explicit(&init_state, memory_order_acquire);
    if (likely(s >= 2))
        return s == 2;
    int expected = 0;
    if (atomic_compare_exchange_strong(&init_state, &expected, 1)) {
        /* Nothing here allocates: getenv-free option parsing, mmap, a pthread key (one of the
         * first 32, static storage) and pthread_atfork (static storage for 48 handlers).
         * Registering atfork this early makes our prepare handler run last and our child
         * handler first. */
        glibc_init();
        options_init(__environ);
        heap_set_perturb(opt.perturb);
        bool ok = arena_init();
        heap_global_init();
        atomic_store_explicit(&init_state, ok ? 2 : 3, memory_order_release);
        return ok;
    }
    while ((s = atomic_load_explicit(&init_state, memory_order_acquire)) == 1)
        sched_yield();
    return s == 2;
}

/* ---- glibc's dlopen and dlclose, which ours wrap ---------------------------------------------- */
static void *(*_Atomic real_dlopen)(const char *, int);
static int (*_Atomic real_dlclose)(void *);

static void resolve_next(void) {
    prof_enter(); /* what dlopen allocates here is ours: untracked, never adopted */
    /* the next definition after ours is glibc's (dlsym(RTLD_NEXT) makes no allocator call on
     * glibc 2.36) */
    if (!atomic_load(&real_dlopen))
        atomic_store(&real_dlopen,
                     (void *(*)(const char *, int))dlsym(RTLD_NEXT, "dlopen"));
    if (!atomic_load(&real_dlclose))
        atomic_store(&real_dlclose, (int (*)(void *))dlsym(RTLD_NEXT, "dlclose"));
    prof_leave();
}

/* A library opened with RTLD_DEEPBIND binds malloc and free to glibc's before ours, then frees
 * our blocks with glibc's free and crashes. heaptrack strips the flag for the same reason; so
 * do we (TALLY_DEEPBIND=1 keeps it). The call to the real dlopen is a tail call, so glibc still
 * sees the program's return address and uses the caller's RUNPATH and $ORIGIN. */
TALLY_EXPORT void *dlopen(const char *file, int flags) {
    if ((flags & RTLD_DEEPBIND) && !opt.deepbind) {
        flags &= ~RTLD_DEEPBIND;
        if (opt.verbose)
            tally_message("dlopen: ignoring RTLD_DEEPBIND for ", file ? file : "(main)",
                          " (it would bypass this malloc)");
    }
    void *(*f)(const char *, int) = atomic_load_explicit(&real_dlopen, memory_order_relaxed);
    if (unlikely(!f)) {
        resolve_next();
        f = atomic_load(&real_dlopen);
    }
    python_dlopened(); /* an embedded interpreter, maybe */
    return f(file, flags);
}

/* The library's own dependencies (libunwind, libzstd): RTLD_LOCAL, so that they never take over
 * the program's symbols (libunwind's _Unwind_RaiseException, say), and RTLD_DEEPBIND, so that
 * theirs resolve within themselves first, whatever the program exports (rustc's libLLVM exports
 * a ZSTD_* of its own, and libzstd freed its context with LLVM's copy). */
void *init_dlopen_own(const char *file) {
    void *(*f)(const char *, int) = atomic_load_explicit(&real_dlopen, memory_order_relaxed);
    if (unlikely(!f)) {
        resolve_next();
        f = atomic_load(&real_dlopen);
    }
    return f ? f(file, RTLD_NOW | RTLD_LOCAL | RTLD_DEEPBIND) : NULL;
}

/* The profiler must know when code goes away: the module's record is kept for the dump (frames
 * captured while it was loaded still name it), and libunwind's caches, which could describe a
 * library mapped later at the same address, are flushed. */
TALLY_EXPORT int dlclose(void *handle) {
    int (*f)(void *) = atomic_load_explicit(&real_dlclose, memory_order_relaxed);
    if (unlikely(!f)) {
        resolve_next();
        f = atomic_load(&real_dlclose);
    }
    struct link_map *lm = NULL;
    void *h = handle;
    uintptr_t lo = 0, hi = 0;
    __asm__("" : "+r"(h)); /* glibc declares it nonnull; a broken program may still pass NULL */
    if (h && dlinfo(h, RTLD_DI_LINKMAP, &lm) == 0 && lm)
        prof_module_closing(lm->l_addr, lm->l_name, &lo, &hi);
    int r = f(handle);
    prof_modules_changed(lo, hi);
    return r;
}

TALLY_EXPORT const char *tally_version(void) {
    return TALLY_VERSION_STRING;
}

__attribute__((constructor)) static void tally_constructor(void) {
    options_init(__environ); /* no-op if the first malloc already read them */
    /* something will be said at exit: to the stderr the program started with */
    if (opt.leaks == LEAKS_REPORT || opt.check == CHECK_ON || opt.check == CHECK_ABORT ||
        (opt.stats != STATS_OFF && !opt.stats_file) || opt.verbose)
        fmt_keep_stderr();
    tally_init_global();
    glibc_malloc_setup(); /* before any thread of the program's can make that first call */
    resolve_next();
    prof_start();
    prof_dump_init();
    if (opt.verbose) {
        options_print();
        if (g.reserve) {
            char line[96];
            fmt_t f;
            fmt_init(&f, line, sizeof line - 1, -1);
            fmt_bytes(&f, g.reserve);
            line[f.len] = '\0';
            tally_message("arenas: ", line,
                          " of address space reserved; pools serve requests up to 512 bytes");
        }
    }
    /* The exit handlers must see the program's final state: after its own atexit handlers and
     * every ELF destructor. atexit() from a library registers under the library's DSO handle,
     * and __cxa_finalize runs such a handler at that library's turn in _dl_fini, before the
     * destructors of the libraries initialized before ours (the program's own libraries,
     * libstdc++). A handler without a DSO handle runs only from exit's list, in reverse order of
     * registration: ours come before _dl_fini's (registered by __libc_start_main after the
     * constructors), so they run after it. */
    if (opt.stats != STATS_OFF)
        __cxa_atexit(stats_print_at_exit, NULL, NULL);
    if ((opt.out || opt.leaks != LEAKS_OFF || opt.check) && opt.profile != PROFILE_OFF)
        __cxa_atexit(prof_dump_at_exit, NULL, NULL);
    /* The start-up just above (dlopen of libunwind: ld.so's deep frames, its blocks made and
     * freed) left pointers into the pools in stack memory that main's frames take over without
     * writing every slot; the leak check would take them for the program's pointers. */
    if (opt.leaks != LEAKS_OFF) {
        unwind_stack_bounds(); /* raw reads of /proc/self/maps: no allocation */
        prof_scrub_below(64 << 10);
    }
}
