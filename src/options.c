/* options.c: the runtime options, one table, read once from TALLY_<NAME> environment variables.
 * Parsing never allocates (it may run inside the first malloc, before libc is initialised). A
 * bad value or an unknown TALLY_ name prints one warning and keeps the default. Exports
 * options_init, options_print and the `opt` values. */
#include "internal.h"

#include <signal.h>
#include <string.h>
#include <strings.h>

options_t opt = {
    .stats = STATS_OFF,
    .stats_file = NULL,
    .reserve = RESERVE_DEFAULT,
    .verbose = false,
    .deepbind = false,
    .profile = PROFILE_SAMPLE,
    .sample = (size_t)512 << 10,
    .depth = 32,
    .unwind = UNWIND_FAST,
    .out = NULL,
    .signal = 0,
    .interval = 0,
    .compress = true,
    .leaks = LEAKS_OFF,
    .python = true,
    .check = CHECK_OFF,
    .quarantine = (size_t)4 << 20,
    .fatal = true,
};
static bool profile_given; /* TALLY_PROFILE was set: TALLY_LEAKS says so if it overrides it */

enum opt_type { OPT_BOOL, OPT_SIZE, OPT_STATS, OPT_STRING, OPT_PROFILE, OPT_DEPTH, OPT_SIGNAL,
                OPT_SECONDS, OPT_UNWIND, OPT_LEAKS, OPT_CHECK };

typedef struct option_desc_s {
    const char *name; /* without the TALLY_ prefix */
    enum opt_type type;
    void *value;
    const char *help;
} option_desc_t;

static const option_desc_t options[] = {
    {"STATS", OPT_STATS, &opt.stats, "print allocator statistics at exit: 0, 1 (text) or json"},
    {"STATS_FILE", OPT_STRING, &opt.stats_file, "write them to this file (%p pid, %e program)"},
    {"RESERVE", OPT_SIZE, &opt.reserve, "address space reserved for arenas (e.g. 64G)"},
    {"VERBOSE", OPT_BOOL, &opt.verbose, "print the options in effect and notable events"},
    {"DEEPBIND", OPT_BOOL, &opt.deepbind, "keep RTLD_DEEPBIND in dlopen (unsafe, see README)"},
    {"LARGE", OPT_STRING, &opt.large, "the allocator behind the pools: auto (the next in line), glibc, or a loaded library's name"},
    {"PROFILE", OPT_PROFILE, &opt.profile, "call-site profiling: off, sample or all"},
    {"SAMPLE", OPT_SIZE, &opt.sample, "mean bytes between samples in sample mode (e.g. 512k)"},
    {"DEPTH", OPT_DEPTH, &opt.depth, "frames kept per call stack, 1..128"},
    {"UNWIND", OPT_UNWIND, &opt.unwind, "stack walker: fast (cached CFI), libunwind, or check (both, compared)"},
    {"PYTHON", OPT_BOOL, &opt.python, "in a CPython process, put the Python frames in the stacks (1) or not (0)"},
    {"OUT", OPT_STRING, &opt.out, "write a dump here at exit (%p pid, %e program)"},
    {"SIGNAL", OPT_SIGNAL, &opt.signal, "write a dump on this signal (e.g. USR2)"},
    {"INTERVAL", OPT_SECONDS, &opt.interval, "write a dump every this many seconds"},
    {"COMPRESS", OPT_BOOL, &opt.compress, "compress dumps with zstd (libzstd.so.1) when it loads"},
    {"LEAKS", OPT_LEAKS, &opt.leaks, "leak kinds by reachability at exit: 0, 1 (and a summary on stderr) or quiet; implies PROFILE=all"},
    {"CHECK", OPT_CHECK, &opt.check, "heap error detection (overruns, double and invalid frees, writes after free): 0, 1, abort, or quiet (no stderr); implies PROFILE=all"},
    {"QUARANTINE", OPT_SIZE, &opt.quarantine, "with CHECK: bytes of freed blocks each thread holds back before reuse (e.g. 4M)"},
    {"FATAL", OPT_BOOL, &opt.fatal, "with OUT, LEAKS or CHECK: write the dump when SIGTERM, SIGINT, SIGHUP, SIGQUIT or a crash (SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT) ends the program and it has no handler of its own"},
};
#define NOPTIONS (sizeof options / sizeof options[0])

static bool word_is(const char *s, const char *const *words) {
    for (; *words; words++)
        if (strcasecmp(s, *words) == 0)
            return true;
    return false;
}

static bool parse_bool(const char *s, bool *out) {
    static const char *const yes[] = {"1", "true", "on", "yes", NULL};
    static const char *const no[] = {"0", "false", "off", "no", "", NULL};
    if (word_is(s, yes))
        *out = true;
    else if (word_is(s, no))
        *out = false;
    else
        return false;
    return true;
}

/* "123", "64G", "512k", "1MiB": K/M/G/T are powers of 1024. */
static bool parse_size(const char *s, size_t *out) {
    if (*s < '0' || *s > '9')
        return false;
    unsigned long long v = 0;
    for (; *s >= '0' && *s <= '9'; s++) {
        if (v > (~0ULL - 9) / 10)
            return false;
        v = v * 10 + (unsigned)(*s - '0');
    }
    unsigned shift = 0;
    switch (*s | 0x20) {
    case 'k': shift = 10; s++; break;
    case 'm': shift = 20; s++; break;
    case 'g': shift = 30; s++; break;
    case 't': shift = 40; s++; break;
    default: break;
    }
    if (shift && (strcasecmp(s, "ib") == 0 || strcasecmp(s, "b") == 0))
        s += strlen(s);
    if (*s != '\0' || (shift && v > (~0ULL >> shift)))
        return false;
    *out = (size_t)(v << shift);
    return true;
}

static bool parse_stats(const char *s, int *out) {
    bool b;
    if (strcasecmp(s, "json") == 0)
        *out = STATS_JSON;
    else if (strcasecmp(s, "text") == 0)
        *out = STATS_TEXT;
    else if (parse_bool(s, &b))
        *out = b ? STATS_TEXT : STATS_OFF;
    else
        return false;
    return true;
}

static bool parse_profile(const char *s, int *out) {
    if (strcasecmp(s, "off") == 0 || strcmp(s, "0") == 0)
        *out = PROFILE_OFF;
    else if (strcasecmp(s, "sample") == 0)
        *out = PROFILE_SAMPLE;
    else if (strcasecmp(s, "all") == 0)
        *out = PROFILE_ALL;
    else
        return false;
    return true;
}

static bool parse_check(const char *s, int *out) {
    bool b;
    if (strcasecmp(s, "abort") == 0)
        *out = CHECK_ABORT;
    else if (strcasecmp(s, "quiet") == 0)
        *out = CHECK_QUIET;
    else if (parse_bool(s, &b))
        *out = b ? CHECK_ON : CHECK_OFF;
    else
        return false;
    return true;
}

static bool parse_unwind(const char *s, int *out) {
    if (strcasecmp(s, "fast") == 0)
        *out = UNWIND_FAST;
    else if (strcasecmp(s, "libunwind") == 0)
        *out = UNWIND_LIBUNWIND;
    else if (strcasecmp(s, "check") == 0)
        *out = UNWIND_CHECK;
    else
        return false;
    return true;
}

static bool parse_leaks(const char *s, int *out) {
    bool b;
    if (strcasecmp(s, "quiet") == 0)
        *out = LEAKS_QUIET;
    else if (parse_bool(s, &b))
        *out = b ? LEAKS_REPORT : LEAKS_OFF;
    else
        return false;
    return true;
}

static bool parse_uint(const char *s, unsigned lo, unsigned hi, unsigned *out) {
    size_t v;
    if (!parse_size(s, &v) || (s[strlen(s) - 1] < '0' || s[strlen(s) - 1] > '9') || v < lo ||
        v > hi)
        return false;
    *out = (unsigned)v;
    return true;
}

/* "USR2", "SIGUSR2", "12": the signals a person would pick for a dump. */
static bool parse_signal(const char *s, int *out) {
    static const struct {
        const char *name;
        int sig;
    } names[] = {{"USR1", SIGUSR1}, {"USR2", SIGUSR2}, {"HUP", SIGHUP},   {"PROF", SIGPROF},
                 {"URG", SIGURG},   {"WINCH", SIGWINCH}, {"PWR", SIGPWR}};
    unsigned n;
    if (strncasecmp(s, "SIG", 3) == 0)
        s += 3;
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (strcasecmp(s, names[i].name) == 0) {
            *out = names[i].sig;
            return true;
        }
    if (strncasecmp(s, "RTMIN+", 6) == 0 && parse_uint(s + 6, 0, 15, &n)) {
        *out = SIGRTMIN + (int)n;
        return true;
    }
    /* A number, but not one the program or the kernel needs for something else. */
    if (!parse_uint(s, 1, 64, &n) || n == SIGKILL || n == SIGSTOP || n == SIGSEGV ||
        n == SIGBUS || n == SIGFPE || n == SIGILL || n == SIGABRT || n == SIGCHLD)
        return false;
    *out = (int)n;
    return true;
}

static void option_set(const option_desc_t *d, const char *val) {
    bool ok;
    switch (d->type) {
    case OPT_BOOL: ok = parse_bool(val, (bool *)d->value); break;
    case OPT_SIZE:
        /* a sample interval of 0 bytes would be `all` mode at sample mode's cost */
        ok = parse_size(val, (size_t *)d->value) && !(d->value == &opt.sample && opt.sample == 0);
        if (!ok && d->value == &opt.sample)
            opt.sample = (size_t)512 << 10;
        break;
    case OPT_STATS: ok = parse_stats(val, (int *)d->value); break;
    case OPT_PROFILE:
        ok = parse_profile(val, (int *)d->value);
        profile_given |= ok;
        break;
    case OPT_LEAKS: ok = parse_leaks(val, (int *)d->value); break;
    case OPT_CHECK: ok = parse_check(val, (int *)d->value); break;
    case OPT_UNWIND: ok = parse_unwind(val, (int *)d->value); break;
    case OPT_DEPTH: ok = parse_uint(val, 1, PROF_MAX_DEPTH, (unsigned *)d->value); break;
    case OPT_SIGNAL: ok = parse_signal(val, (int *)d->value); break;
    case OPT_SECONDS: ok = parse_uint(val, 1, 86400 * 365, (unsigned *)d->value); break;
    case OPT_STRING: {
        /* Copied: programs rewrite their environment (setproctitle in redis, for one). */
        static char store[4][4096];
        static unsigned used;
        size_t n = strlen(val);
        ok = n < sizeof store[0] && used < 4;
        if (ok) {
            memcpy(store[used], val, n + 1);
            *(const char **)d->value = n ? store[used++] : NULL;
        }
        break;
    }
    default: ok = false; break;
    }
    if (!ok)
        tally_message("ignoring malformed TALLY_", d->name, val[0] ? "; keeping the default" :
                      " (empty); keeping the default");
}

/* glibc's tunable numbers: decimal, 0x hex or 0 octal, all of the text, within 0..255 (glibc
 * ignores a value out of the tunable's range). end: where the text stops (':' in a list). */
static bool parse_perturb(const char *s, char end, int *out) {
    unsigned base = 10, v = 0, digits = 0;
    if (s[0] == '0' && (s[1] | 0x20) == 'x')
        base = 16, s += 2;
    else if (s[0] == '0')
        base = 8;
    for (; *s && *s != end; s++, digits++) {
        unsigned d = *s >= '0' && *s <= '9' ? (unsigned)(*s - '0')
                     : (*s | 0x20) >= 'a' && (*s | 0x20) <= 'f' ? (unsigned)((*s | 0x20) - 'a' + 10)
                                                                : 99;
        if (d >= base || (v = v * base + d) > 255)
            return false;
    }
    if (digits == 0)
        return false;
    *out = (int)v;
    return true;
}

/* glibc's M_PERTURB set from the environment, as glibc reads it for its own heap: the pools fill
 * their blocks the same way (heap.c). GLIBC_TUNABLES=...:glibc.malloc.perturb=N:... or
 * MALLOC_PERTURB_=N. */
static void perturb_from_env(const char *e) {
    static const char tun[] = "glibc.malloc.perturb=";
    if (strncmp(e, "MALLOC_PERTURB_=", 16) == 0) {
        parse_perturb(e + 16, '\0', &opt.perturb);
    } else if (strncmp(e, "GLIBC_TUNABLES=", 15) == 0) {
        for (const char *t = e + 15; t; t = strchr(t, ':')) {
            if (*t == ':')
                t++;
            if (strncmp(t, tun, sizeof tun - 1) == 0)
                parse_perturb(t + sizeof tun - 1, ':', &opt.perturb);
        }
    }
}

void options_init(char **env) {
    static bool done;
    if (done || env == NULL)
        return;
    done = true;
    for (char **e = env; *e; e++) {
        if (strncmp(*e, "TALLY_", 6) != 0) {
            perturb_from_env(*e);
            continue;
        }
        const char *name = *e + 6;
        const char *eq = strchr(name, '=');
        if (!eq)
            continue;
        size_t len = (size_t)(eq - name);
        const option_desc_t *d = NULL;
        for (size_t i = 0; i < NOPTIONS; i++)
            if (strlen(options[i].name) == len && strncmp(options[i].name, name, len) == 0)
                d = &options[i];
        if (d) {
            option_set(d, eq + 1);
        } else {
            char nm[64];
            size_t n = len < sizeof nm - 1 ? len : sizeof nm - 1;
            memcpy(nm, name, n);
            nm[n] = '\0';
            tally_message("ignoring unknown option TALLY_", nm, " (see TALLY_VERBOSE=1)");
        }
    }
    /* The leak check classifies every live block, so it needs every allocation recorded. */
    if (opt.leaks != LEAKS_OFF && opt.profile != PROFILE_ALL) {
        if (profile_given)
            tally_message("TALLY_LEAKS needs every allocation recorded: using TALLY_PROFILE=all",
                          NULL, NULL);
        opt.profile = PROFILE_ALL;
    }
    /* The checks report every block's allocating stack. */
    if (opt.check != CHECK_OFF && opt.profile != PROFILE_ALL) {
        if (profile_given)
            tally_message("TALLY_CHECK needs every allocation recorded: using TALLY_PROFILE=all",
                          NULL, NULL);
        opt.profile = PROFILE_ALL;
    }
}

void options_print(void) {
    char buf[1024];
    fmt_t f;
    fmt_init(&f, buf, sizeof buf, message_fd());
    for (size_t i = 0; i < NOPTIONS; i++) {
        const option_desc_t *d = &options[i];
        fmt_str(&f, "tally: TALLY_");
        fmt_strw(&f, d->name, 11);
        fmt_str(&f, "= ");
        switch (d->type) {
        case OPT_BOOL: fmt_str(&f, *(bool *)d->value ? "1" : "0"); break;
        case OPT_SIZE: fmt_bytes(&f, *(size_t *)d->value); break;
        case OPT_STATS: {
            static const char *const m[] = {"0", "1", "json"};
            fmt_str(&f, m[*(int *)d->value]);
            break;
        }
        case OPT_PROFILE: {
            static const char *const m[] = {"off", "sample", "all"};
            fmt_str(&f, m[*(int *)d->value]);
            break;
        }
        case OPT_CHECK: {
            static const char *const m[] = {"0", "1", "abort", "quiet"};
            fmt_str(&f, m[*(int *)d->value]);
            break;
        }
        case OPT_LEAKS: {
            static const char *const m[] = {"0", "1", "quiet"};
            fmt_str(&f, m[*(int *)d->value]);
            break;
        }
        case OPT_UNWIND: {
            static const char *const m[] = {"fast", "libunwind", "check"};
            fmt_str(&f, m[*(int *)d->value]);
            break;
        }
        case OPT_DEPTH:
        case OPT_SECONDS:
            fmt_u64(&f, *(unsigned *)d->value);
            break;
        case OPT_SIGNAL:
            if (*(int *)d->value)
                fmt_u64(&f, (uint64_t) * (int *)d->value);
            else
                fmt_str(&f, "(unset)");
            break;
        case OPT_STRING: {
            const char *s = *(const char **)d->value;
            fmt_str(&f, s ? s : "(unset)");
            break;
        }
        }
        fmt_str(&f, "  # ");
        fmt_str(&f, d->help);
        fmt_char(&f, '\n');
    }
    fmt_flush(&f);
}
