/* sig.c: the dump written when a signal ends the program (issue 17). heaptrack and memray
 * stream what they record, so a killed program keeps it; we write at exit, which a program
 * killed by SIGTERM or crashing in SIGSEGV never reaches. So, when a dump is asked for
 * (TALLY_OUT, TALLY_LEAKS, TALLY_CHECK) and TALLY_FATAL is on, the library puts a handler on
 * each fatal signal the program has left at SIG_DFL: it writes the dump, puts SIG_DFL back and
 * lets the signal take its course (the same status, the core dump still made).
 *
 * The handler must stay invisible: CPython installs its KeyboardInterrupt handler on SIGINT
 * only where it finds SIG_DFL, and a program that saves and restores a disposition must get
 * back what it set. So sigaction, signal, bsd_signal and sysv_signal are wrapped: for a signal
 * whose handler is ours, the program sees SIG_DFL; setting a handler of its own (or SIG_IGN)
 * replaces ours; setting SIG_DFL again brings ours back. glibc's internal calls (abort, system,
 * posix_spawn) bypass the wrappers and see ours, which is what they should do with it.
 *
 * In the handler: a thread inside the library's own code (a profiler record, a heap's slow
 * path, the large table's lock) may hold a lock the dump needs. Then an asynchronous signal
 * (SIGTERM, SIGINT, SIGHUP, SIGQUIT) is left pending and handled where that thread leaves the
 * library (sig_fatal_poll); a crash there ends the program at once, without a dump. A second
 * fatal signal while a dump is written waits for it, then takes its course. Exports the
 * wrappers, sig_init and sig_fatal_deferred. */
#include "internal.h"
#include "prof.h"

#include <dlfcn.h>
#include <errno.h>
#include <signal.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

extern int __sigaction(int, const struct sigaction *, struct sigaction *); /* glibc's */

static const int fatal_sigs[] = {SIGHUP, SIGINT, SIGQUIT, SIGILL, SIGABRT,
                                 SIGBUS, SIGFPE, SIGSEGV, SIGTERM};
#define NFATAL (sizeof fatal_sigs / sizeof fatal_sigs[0])
#define BIT(sig) ((sig) > 0 && (sig) < 32 ? 1u << (sig) : 0u)

static _Atomic uint32_t wanted;  /* the signals the library looks after (0 until sig_init) */
static _Atomic uint32_t managed; /* of those, where our handler is in place */
static atomic_flag state_lock = ATOMIC_FLAG_INIT;
/* The process `managed` describes. A vfork child (CPython's subprocess, posix_spawn done by
 * hand) shares this memory but not the signal dispositions: what it sets before its exec must
 * not change the parent's view (the parent kept its handlers while `managed` said ours). */
static _Atomic pid_t state_pid;
_Atomic int sig_fatal_pending;   /* an asynchronous fatal signal left pending (internal.h) */
static _Atomic pid_t pending_pid; /* the process it came to: a fork's child keeps only its own */
static _Atomic int fatal_state;  /* 0: none, 1: a dump is being written, 2: written */

/* ---- the next definitions (glibc's, or another wrapper's) ------------------------------------ */
typedef int (*sigaction_fn)(int, const struct sigaction *, struct sigaction *);
typedef sighandler_t (*signal_fn)(int, sighandler_t);
enum { NEXT_SIGNAL, NEXT_BSD_SIGNAL, NEXT_SYSV_SIGNAL, NEXT_SYSV_SIGNAL2, NEXT_N };
static const char *const next_names[NEXT_N] = {"signal", "bsd_signal", "sysv_signal",
                                               "__sysv_signal"};
static sigaction_fn _Atomic next_sigaction_fn;
static signal_fn _Atomic next_signal_fn[NEXT_N];

static noinline void resolve_next(void) {
    prof_enter(); /* what dlsym may allocate is the library's */
    sigaction_fn a = (sigaction_fn)dlsym(RTLD_NEXT, "sigaction");
    /* glibc's own, if no next one is found (a program linked oddly): never ours */
    atomic_store(&next_sigaction_fn, a ? a : (sigaction_fn)__sigaction);
    for (int i = 0; i < NEXT_N; i++)
        atomic_store(&next_signal_fn[i], (signal_fn)dlsym(RTLD_NEXT, next_names[i]));
    prof_leave();
}

static int next_sigaction(int sig, const struct sigaction *act, struct sigaction *old) {
    sigaction_fn f = atomic_load_explicit(&next_sigaction_fn, memory_order_acquire);
    if (unlikely(!f)) {
        resolve_next();
        f = atomic_load(&next_sigaction_fn);
    }
    return f(sig, act, old);
}

/* ---- the handler ------------------------------------------------------------------------------ */
static bool is_crash(int sig, const siginfo_t *si) {
    /* a fault of the code that was running (si_code > 0 is the kernel's), or abort */
    return sig == SIGABRT ||
           ((sig == SIGSEGV || sig == SIGBUS || sig == SIGFPE || sig == SIGILL) && si &&
            si->si_code > 0);
}

/* SIG_DFL back, and the signal on its course: a fault happens again when the handler returns;
 * any other signal is sent again to this thread, where it waits (blocked in the handler, or
 * in sig_fatal_deferred's mask) until the handler returns. */
static void take_course(int sig, bool refaults) {
    struct sigaction dfl;
    memset(&dfl, 0, sizeof dfl);
    dfl.sa_handler = SIG_DFL;
    next_sigaction(sig, &dfl, NULL);
    atomic_fetch_and(&managed, ~BIT(sig));
    if (!refaults)
        syscall(SYS_tgkill, getpid(), syscall(SYS_gettid), sig);
}

static void wait_for_dump(void) {
    /* another thread writes the dump: wait for it (a minute at most), then go */
    struct timespec ts = {0, 10 * 1000 * 1000};
    for (int i = 0; i < 6000 && atomic_load(&fatal_state) == 1; i++)
        nanosleep(&ts, NULL);
}

static _Atomic long dumper; /* the thread writing the dump */

/* The dump, then the signal's course; from the handler or from sig_fatal_deferred. */
static void dump_and_die(int sig, bool crash, bool refaults) {
    int expected = 0;
    if (atomic_compare_exchange_strong(&fatal_state, &expected, 1)) {
        atomic_store(&dumper, syscall(SYS_gettid));
        prof_dump_fatal(sig, crash);
        atomic_store(&fatal_state, 2);
    } else {
        wait_for_dump();
    }
    take_course(sig, refaults);
}

static void fatal_handler(int sig, siginfo_t *si, void *uc) {
    (void)uc;
    int saved = errno;
    bool crash = is_crash(sig, si), refaults = crash && sig != SIGABRT;
    if (prof_thread_busy()) {
        if (!crash) {
            /* handled where this thread leaves the library's code (sig_fatal_poll) */
            int none = 0;
            atomic_store(&pending_pid, getpid());
            atomic_compare_exchange_strong(&sig_fatal_pending, &none, sig);
            errno = saved;
            return;
        }
        tally_message("the program crashed inside the allocator's own code: no dump", NULL,
                      NULL);
        take_course(sig, refaults);
        errno = saved;
        return;
    }
    dump_and_die(sig, crash, refaults);
    errno = saved;
}

void sig_fatal_deferred(void) {
    if (prof_thread_busy())
        return; /* still inside: its outermost exit handles it */
    if (atomic_load(&fatal_state) == 1 && atomic_load(&dumper) == syscall(SYS_gettid))
        return; /* this thread writes the dump, and takes the signal's course after it */
    int sig = atomic_exchange(&sig_fatal_pending, 0);
    if (!sig)
        return;
    /* outside any handler: the signal sent again waits in the mask until the dump is done */
    sigset_t block, old;
    sigemptyset(&block);
    sigaddset(&block, sig);
    pthread_sigmask(SIG_BLOCK, &block, &old);
    dump_and_die(sig, false, false);
    pthread_sigmask(SIG_SETMASK, &old, NULL); /* delivered now: the default action */
}

/* Registered last, so run last in a fork's child: the fork handlers' locks are not held. A
 * signal that came to the child while they were (SIGTERM sent to a worker as soon as it
 * exists) is handled now. */
static void fork_child_last(void) {
    tls_locks_held = 0;
    sig_fatal_poll();
}

static void install_locked(int sig) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = fatal_handler;
    sa.sa_flags = SA_SIGINFO | SA_RESTART | SA_ONSTACK; /* the program's alternate stack, if any */
    sigemptyset(&sa.sa_mask);
    for (size_t i = 0; i < NFATAL; i++)
        sigaddset(&sa.sa_mask, fatal_sigs[i]);
    if (next_sigaction(sig, &sa, NULL) == 0)
        atomic_fetch_or(&managed, BIT(sig));
}

void sig_init(void) {
    if (!opt.fatal || !prof.started || (!opt.out && !opt.leaks && !opt.check))
        return;
    resolve_next();
    spin_lock(&state_lock);
    uint32_t w = 0;
    for (size_t i = 0; i < NFATAL; i++) {
        int sig = fatal_sigs[i];
        struct sigaction cur;
        if (sig == opt.signal || next_sigaction(sig, NULL, &cur) != 0)
            continue; /* TALLY_SIGNAL's own handler is visible, as documented */
        w |= BIT(sig);
        if (!(cur.sa_flags & SA_SIGINFO) && cur.sa_handler == SIG_DFL)
            install_locked(sig);
    }
    atomic_store(&wanted, w);
    atomic_store(&state_pid, getpid());
    spin_unlock(&state_lock);
    pthread_atfork(NULL, NULL, fork_child_last);
}

void sig_fork_child(void) {
    tls_locks_held = 0;
    atomic_flag_clear(&state_lock);
    atomic_store(&fatal_state, 0);
    pid_t self = getpid();
    atomic_store(&state_pid, self);
    /* the parent's pending signal is the parent's; one sent to this child stays for
     * fork_child_last */
    if (atomic_load(&pending_pid) != self)
        atomic_store(&sig_fatal_pending, 0);
}

/* ---- the wrappers --------------------------------------------------------------------------- */
/* sigaction for a signal the library looks after: the program's view is SIG_DFL where ours is
 * in place. */
static int managed_action(int sig, const struct sigaction *act, struct sigaction *old) {
    struct sigaction want, prev;
    if (act)
        want = *act; /* act and old may be the same */
    spin_lock(&state_lock);
    bool ours = atomic_load(&managed) & BIT(sig);
    int r = 0;
    if (ours) {
        memset(&prev, 0, sizeof prev);
        prev.sa_handler = SIG_DFL;
    }
    if (act && !(want.sa_flags & SA_SIGINFO) && want.sa_handler == SIG_DFL) {
        if (!ours) {
            r = next_sigaction(sig, NULL, &prev);
            if (r == 0)
                install_locked(sig); /* the default again: the dump comes back with it */
        }
    } else if (act) {
        r = next_sigaction(sig, &want, ours ? NULL : &prev);
        if (r == 0)
            atomic_fetch_and(&managed, ~BIT(sig)); /* the program's own handler, or SIG_IGN */
    } else if (!ours) {
        r = next_sigaction(sig, NULL, &prev);
    }
    spin_unlock(&state_lock);
    if (r == 0 && old)
        *old = prev;
    return r;
}

TALLY_EXPORT int sigaction(int sig, const struct sigaction *act, struct sigaction *old) {
    if (likely(!(atomic_load_explicit(&wanted, memory_order_relaxed) & BIT(sig))) ||
        getpid() != atomic_load_explicit(&state_pid, memory_order_relaxed))
        return next_sigaction(sig, act, old); /* or a vfork child's, soon exec'd: its own */
    return managed_action(sig, act, old);
}

/* signal() and its variants as glibc makes them from sigaction. */
static sighandler_t wrap_signal(int which, int sig, sighandler_t handler, int flags,
                                bool mask_self) {
    if (likely(!(atomic_load_explicit(&wanted, memory_order_relaxed) & BIT(sig)))) {
        signal_fn f = atomic_load_explicit(&next_signal_fn[which], memory_order_acquire);
        if (unlikely(!f)) {
            resolve_next();
            f = atomic_load(&next_signal_fn[which]);
        }
        if (f)
            return f(sig, handler);
    }
    if (handler == SIG_ERR) {
        errno = EINVAL;
        return SIG_ERR;
    }
    struct sigaction sa, old;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = handler;
    sa.sa_flags = flags;
    sigemptyset(&sa.sa_mask);
    if (mask_self)
        sigaddset(&sa.sa_mask, sig);
    if (sigaction(sig, &sa, &old) < 0)
        return SIG_ERR;
    return old.sa_handler;
}

TALLY_EXPORT sighandler_t signal(int sig, sighandler_t handler) {
    return wrap_signal(NEXT_SIGNAL, sig, handler, SA_RESTART, true);
}

TALLY_EXPORT sighandler_t bsd_signal(int sig, sighandler_t handler) {
    return wrap_signal(NEXT_BSD_SIGNAL, sig, handler, SA_RESTART, true);
}

TALLY_EXPORT sighandler_t sysv_signal(int sig, sighandler_t handler) {
    return wrap_signal(NEXT_SYSV_SIGNAL, sig, handler, SA_RESETHAND | SA_NODEFER, false);
}

/* what signal() is in a program built with -std=c99 and no _DEFAULT_SOURCE */
TALLY_EXPORT sighandler_t __sysv_signal(int sig, sighandler_t handler) {
    return wrap_signal(NEXT_SYSV_SIGNAL2, sig, handler, SA_RESETHAND | SA_NODEFER, false);
}
