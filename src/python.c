/* python.c: CPython's own frames inside the profiler's stacks.
 *
 * WHAT IT DOES
 *   In 3.11 and later one C frame of the eval loop (_PyEval_EvalFrameDefault) runs a whole chain
 *   of Python calls, so a native stack of a Python program says nothing of the program. Each
 *   stack the profiler takes in a CPython process has every eval-loop frame replaced by the
 *   Python frames it is running, innermost first, the native frames around them kept (py-spy's
 *   and memray's --native stacks). A Python frame is one word, PY_FRAME(code id, line): the code
 *   object is interned here the first time a stack shows it (file, qualified name, first line
 *   and its location table, copied into the library's own memory), and the line is computed from
 *   that table at the frame's instruction, as tracemalloc's PyCode_Addr2Line computes it (once
 *   per code object and instruction: a per-heap cache keeps the words). Lines rather than
 *   instructions in the stacks: two allocations on one line are one call site.
 *
 * HOW THE FRAMES ARE FOUND, with no call into the interpreter and no lock of its
 *   The thread's PyThreadState is, in 3.11, the GIL holder's (_PyRuntime's tstate_current) when
 *   that is this thread, as it is whenever Python code allocates; else the value of the
 *   interpreter's own TSS key (_PyRuntime's autoTSSkey, set for every thread that has a thread
 *   state; threads of an extension that never ran Python code have none and keep native
 *   stacks). Either way its thread_id must be this thread.
 *   3.11 and 3.12: every call of the eval loop keeps a _PyCFrame on its C stack, linked from
 *   tstate->cframe outwards; its current_frame is the innermost Python frame of that call, whose
 *   `previous` chain ends at the frame marked is_entry (3.11) or at the shim frame the call
 *   pushed (3.12, owner FRAME_OWNED_BY_CSTACK). 3.13 has no _PyCFrame: the chain from
 *   tstate->current_frame is cut at those shim frames, which live on the eval call's C stack too.
 *   Either way each run of Python frames comes with an address on the C stack (the _PyCFrame or
 *   the shim), and the native walker knows each native frame's extent [sp, CFA): the eval-loop
 *   frame that runs the Python frames is the one whose extent holds that address. That needs no
 *   symbol (the eval loop's .cold part, a renamed or inlined eval function are found alike);
 *   without the walker's stack pointers (libunwind's stacks) the frames in
 *   _PyEval_EvalFrameDefault's symbol are matched in order instead.
 *
 * SAFETY
 *   The chain belongs to this thread and this thread is inside malloc, so it is consistent unless
 *   the interpreter is mid-update; still every word read must lie in memory known readable (the
 *   library's arenas, this thread's stack, a readable mapping of /proc/self/maps, snapshotted and
 *   read under a sequence lock, read again when an address is missing at most every millisecond,
 *   backing off to a second, or else a page the kernel says is readable: process_vm_readv of
 *   ourselves), every frame and code object must be aligned, a code object must have
 *   PyCode_Type as its type, chains are bounded. A check that fails ends the Python part of the
 *   stack there (the eval frames left stay native) and is counted (`python_stopped`).
 *
 * CODE OBJECTS FREED AND REUSED
 *   A code object is interned by address; a later one at the same address must not take its
 *   name. In `all` mode the block that holds an interned code object is marked (PTAG_WATCH, the
 *   large table's `watch`) and its free drops the entry (python_code_freed). Where it cannot be
 *   marked (sample mode, pymalloc's arenas) every hit compares the object with the copy: the
 *   same name, file and table objects, the same first line and a hash of their contents. Code
 *   in a module's image (3.11's deep-frozen modules) is never freed.
 *
 * VERSIONS
 *   Offsets per minor version in `layouts` (3.11, 3.12, 3.13, from their headers); 3.13's
 *   _PyRuntime starts with _Py_DebugOffsets, whose offsets are used where its cookie and version
 *   agree. Any other version is named in the dump's header and gets native stacks. The
 *   interpreter is looked for at the start and at each later dlopen until found (an embedded
 *   one), never inside an allocation: dl_iterate_phdr takes the loader's lock. */
#include "internal.h"
#include "prof.h"

#include <errno.h>
#include <fcntl.h>
#include <link.h>
#include <pthread.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

bool python_active;

/* ---- versions ---------------------------------------------------------------------------- */
typedef struct layout_s {
    unsigned minor;
    uint32_t rt_tss;       /* _PyRuntime: Py_tss_t autoTSSkey = {int initialized; key} */
    uint32_t ts_thread_id; /* PyThreadState.thread_id (pthread_self of its thread) */
    uint32_t ts_cframe;    /* .cframe (3.11, 3.12) */
    uint32_t ts_frame;     /* .current_frame (3.13) */
    uint32_t cf_frame, cf_previous; /* _PyCFrame.current_frame, .previous */
    uint32_t fr_code, fr_previous, fr_instr, fr_owner; /* _PyInterpreterFrame */
    int32_t fr_is_entry;   /* 3.11's is_entry; -1: the eval call pushes a shim frame instead */
    uint32_t fr_size;      /* bytes of the frame read: past the last field used */
    uint32_t co_filename, co_qualname, co_linetable, co_firstlineno, co_code; /* PyCodeObject */
    uint32_t str_ascii, str_compact; /* where a compact str's characters start */
    uint32_t rt_current;   /* _PyRuntime.gilstate.tstate_current (3.11): the GIL holder's; 0 */
} layout_t;

#define OWNED_BY_CSTACK 3
static const layout_t layouts[] = {
    {11, 592, 152, 56, 0, 8, 16, 32, 48, 56, 69, 68, 72, 112, 128, 136, 72, 184, 48, 72, 576},
    {12, 1544, 136, 56, 0, 0, 8, 0, 8, 56, 70, -1, 72, 112, 128, 136, 68, 192, 40, 56, 0},
    {13, 2160, 152, 0, 72, 0, 0, 0, 8, 56, 70, -1, 72, 112, 128, 136, 68, 200, 40, 56, 0},
};

static struct {
    layout_t L;
    unsigned version;        /* Py_Version: 0x030b02f0 is 3.11.2 */
    char name[24];           /* "3.11.2", or what the module's name says */
    bool found, supported, from_debug_offsets;
    unsigned table; /* L is layouts[table - 1] as it is (the walks use its offsets as constants) */
    uintptr_t runtime, code_type, unicode_type, bytes_type;
    uintptr_t eval_lo, eval_hi; /* _PyEval_EvalFrameDefault */
    _Atomic uint64_t stopped;          /* walks a failed check ended */
} py;

/* 3.13's _Py_DebugOffsets: the words at these offsets in _PyRuntime. */
enum {
    DBG_VERSION = 8, DBG_FREE_THREADED = 16,
    DBG_TS_CURRENT_FRAME = 184, DBG_TS_THREAD_ID = 192,
    DBG_FR_SIZE = 224, DBG_FR_PREVIOUS = 232, DBG_FR_EXECUTABLE = 240, DBG_FR_INSTR = 248,
    DBG_FR_OWNER = 264,
    DBG_CO_FILENAME = 280, DBG_CO_QUALNAME = 296, DBG_CO_LINETABLE = 304,
    DBG_CO_FIRSTLINENO = 312, DBG_CO_CODE = 344,
};

static void put_dec(char *out, size_t cap, size_t *k, unsigned v) {
    char d[12];
    int n = 0;
    do
        d[n++] = (char)('0' + v % 10);
    while ((v /= 10) && n < 11);
    while (n && *k + 1 < cap)
        out[(*k)++] = d[--n];
    out[*k] = '\0';
}

static void name_version(unsigned hex) {
    size_t k = 0;
    put_dec(py.name, sizeof py.name, &k, hex >> 24);
    py.name[k++] = '.';
    put_dec(py.name, sizeof py.name, &k, (hex >> 16) & 0xff);
    py.name[k++] = '.';
    put_dec(py.name, sizeof py.name, &k, (hex >> 8) & 0xff);
}

/* A module named like libpython3.10.so or python3.9: "3.10" for the dump, when Py_Version is
 * missing (before 3.11). */
static bool name_from_path(const char *path) {
    const char *b = base_name(path);
    if (strncmp(b, "lib", 3) == 0)
        b += 3;
    if (strncmp(b, "python", 6) != 0 || b[6] < '0' || b[6] > '9')
        return false;
    size_t k = 0;
    for (b += 6; *b && ((*b >= '0' && *b <= '9') || *b == '.') && k + 1 < sizeof py.name; b++)
        py.name[k++] = *b;
    while (k && py.name[k - 1] == '.')
        k--;
    py.name[k] = '\0';
    return k > 0;
}

static bool use_debug_offsets(void) {
    const char *rt = (const char *)py.runtime;
    if (memcmp(rt, "xdebugpy", 8) != 0)
        return false;
    uint64_t w[64];
    memcpy(w, rt, sizeof w);
    if (w[DBG_VERSION / 8] != py.version || w[DBG_FREE_THREADED / 8] != 0)
        return false;
    layout_t *L = &py.L;
    L->ts_frame = (uint32_t)w[DBG_TS_CURRENT_FRAME / 8];
    L->ts_thread_id = (uint32_t)w[DBG_TS_THREAD_ID / 8];
    L->fr_previous = (uint32_t)w[DBG_FR_PREVIOUS / 8];
    L->fr_code = (uint32_t)w[DBG_FR_EXECUTABLE / 8];
    L->fr_instr = (uint32_t)w[DBG_FR_INSTR / 8];
    L->fr_owner = (uint32_t)w[DBG_FR_OWNER / 8];
    L->fr_size = (uint32_t)w[DBG_FR_SIZE / 8];
    L->co_filename = (uint32_t)w[DBG_CO_FILENAME / 8];
    L->co_qualname = (uint32_t)w[DBG_CO_QUALNAME / 8];
    L->co_linetable = (uint32_t)w[DBG_CO_LINETABLE / 8];
    L->co_firstlineno = (uint32_t)w[DBG_CO_FIRSTLINENO / 8];
    L->co_code = (uint32_t)w[DBG_CO_CODE / 8];
    uint32_t most = L->fr_previous > L->fr_code ? L->fr_previous : L->fr_code;
    most = L->fr_instr > most ? L->fr_instr : most;
    if (L->fr_size < most + 8 || L->fr_size > 4096 || L->fr_owner + 1 > L->fr_size ||
        L->co_code > 4096 || L->ts_frame > 65536 || L->ts_thread_id > 65536)
        return false;
    return true;
}

static int find_python(struct dl_phdr_info *info, size_t size, void *arg) {
    (void)size;
    (void)arg;
    const ElfW(Dyn) *dyn = NULL;
    for (int i = 0; i < info->dlpi_phnum; i++)
        if (info->dlpi_phdr[i].p_type == PT_DYNAMIC)
            dyn = (const ElfW(Dyn) *)(info->dlpi_addr + info->dlpi_phdr[i].p_vaddr);
    if (!dyn)
        return 0;
    uintptr_t base = info->dlpi_addr;
    uintptr_t runtime = elf_lookup(base, dyn, "_PyRuntime");
    uintptr_t code_type = elf_lookup(base, dyn, "PyCode_Type");
    if (!runtime || !code_type)
        return 0;
    py.found = true;
    py.runtime = runtime;
    py.code_type = code_type;
    py.unicode_type = elf_lookup(base, dyn, "PyUnicode_Type");
    py.bytes_type = elf_lookup(base, dyn, "PyBytes_Type");
    size_t esize = 0;
    py.eval_lo = elf_lookup_sized(base, dyn, "_PyEval_EvalFrameDefault", &esize);
    py.eval_hi = py.eval_lo + esize;
    const unsigned long *ver = (const unsigned long *)elf_lookup(base, dyn, "Py_Version");
    py.version = ver ? (unsigned)*ver : 0;
    if (!py.version) {
        if (!name_from_path(info->dlpi_name && *info->dlpi_name ? info->dlpi_name
                                                                 : program_invocation_name))
            memcpy(py.name, "unknown", 8);
        return 1;
    }
    name_version(py.version);
    unsigned minor = (py.version >> 16) & 0xff;
    if (py.version >> 24 != 3 || !py.unicode_type || !py.bytes_type)
        return 1;
    for (size_t i = 0; i < sizeof layouts / sizeof *layouts; i++)
        if (layouts[i].minor == minor) {
            py.L = layouts[i];
            py.supported = true;
        }
    if (py.supported && minor >= 13) {
        py.from_debug_offsets = use_debug_offsets();
        py.supported = py.from_debug_offsets; /* a free-threaded 3.13, or a layout we do not know */
    }
    for (size_t i = 0; i < sizeof layouts / sizeof *layouts; i++)
        if (py.supported && memcmp(&py.L, &layouts[i], sizeof py.L) == 0)
            py.table = (unsigned)i + 1;
    return 1;
}

/* Never from inside an allocation: dl_iterate_phdr takes the loader's lock, which a forked
 * child may have inherited taken. fork waits for a scan under way before it takes any lock of
 * ours (python_fork_scan_lock): a scan waits for the loader's lock, whose holder (a dlclose)
 * frees, and a free may need what fork's handlers hold. */
static pthread_mutex_t scan_lock = PTHREAD_MUTEX_INITIALIZER;

static void scan(void) {
    if (lib_trylock(&scan_lock) != 0)
        return;
    if (!py.found) {
        dl_iterate_phdr(find_python, NULL);
        if (py.found && py.supported)
            __atomic_store_n(&python_active, true, __ATOMIC_RELEASE);
    }
    lib_unlock(&scan_lock);
}

/* stack_sums_push({0, 0}, n): the term of a run's length */
static stack_sums_t run_len_term[PROF_MAX_DEPTH + 1];

void python_init(void) {
    for (unsigned n = 0; n <= PROF_MAX_DEPTH; n++)
        run_len_term[n] = stack_sums_push((stack_sums_t){0, 0}, n);
    if (opt.python)
        scan();
}

/* An interpreter a program loads with dlopen (an embedded Python) is looked for at its next
 * dlopen: importing an extension module is one. */
void python_dlopened(void) {
    if (opt.python && !py.found && prof.started)
        scan();
}

/* ---- which memory may be read ----------------------------------------------------------------
 * A snapshot of the readable mappings, sorted and merged, read without a lock under a sequence
 * count. */
#define MAPS_CAP 16384
static struct {
    _Atomic unsigned seq;
    _Atomic size_t n;
    uintptr_t *r; /* lo, hi pairs */
    pthread_mutex_t lock;
    uint64_t next_ns, backoff_ns;
} maps = {.lock = PTHREAD_MUTEX_INITIALIZER};

#define OK_RANGES 4 /* the mappings that answered last, per thread: frames, code, ... */
static __thread uintptr_t tls_ok[OK_RANGES][2] TLS_IE;
static __thread uintptr_t tls_stack_lo TLS_IE, tls_stack_hi TLS_IE; /* this thread's stack */
static __thread unsigned tls_ok_next TLS_IE;

static uintptr_t hex_field(const char **p, const char *end, char stop) {
    uintptr_t v = 0;
    const char *s = *p;
    for (; s < end && *s != stop; s++)
        v = v * 16 + (uintptr_t)(*s <= '9' ? *s - '0' : (*s | 32) - 'a' + 10);
    *p = s < end ? s + 1 : s;
    return v;
}

/* Reads /proc/self/maps into the snapshot; the caller holds maps.lock. */
static void maps_refresh_locked(void) {
    if (!maps.r && !(maps.r = os_map(MAPS_CAP * 2 * sizeof(uintptr_t))))
        return;
    int fd = open("/proc/self/maps", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return;
    atomic_fetch_add_explicit(&maps.seq, 1, memory_order_relaxed); /* odd: being written */
    atomic_thread_fence(memory_order_release);
    size_t n = 0;
    char buf[4096];
    size_t have = 0;
    for (;;) {
        ssize_t got = read(fd, buf + have, sizeof buf - have);
        if (got <= 0)
            break;
        have += (size_t)got;
        size_t start = 0;
        for (size_t i = 0; i < have; i++) {
            if (buf[i] != '\n')
                continue;
            const char *p = buf + start, *end = buf + i;
            uintptr_t lo = hex_field(&p, end, '-'), hi = hex_field(&p, end, ' ');
            bool r = p < end && *p == 'r';
            bool special = memchr(p, '[', (size_t)(end - p)) != NULL &&
                           (memmem(p, (size_t)(end - p), "[vvar]", 6) ||
                            memmem(p, (size_t)(end - p), "[vsyscall]", 10));
            start = i + 1;
            if (!r || special || hi <= lo)
                continue;
            if (n && __atomic_load_n(&maps.r[2 * n - 1], __ATOMIC_RELAXED) == lo) {
                __atomic_store_n(&maps.r[2 * n - 1], hi, __ATOMIC_RELAXED);
            } else if (n < MAPS_CAP) {
                __atomic_store_n(&maps.r[2 * n], lo, __ATOMIC_RELAXED);
                __atomic_store_n(&maps.r[2 * n + 1], hi, __ATOMIC_RELAXED);
                n++;
            }
        }
        memmove(buf, buf + start, have - start);
        have -= start;
        if (have == sizeof buf)
            have = 0; /* a line longer than the buffer */
    }
    close(fd);
    atomic_store_explicit(&maps.n, n, memory_order_relaxed);
    atomic_thread_fence(memory_order_release);
    atomic_fetch_add_explicit(&maps.seq, 1, memory_order_relaxed);
}

/* [a, a + len) inside one mapping of the snapshot: its bounds in *lo, *hi. */
static bool maps_find(uintptr_t a, size_t len, uintptr_t *lo, uintptr_t *hi) {
    if (!maps.r)
        return false;
    for (int tries = 0; tries < 4; tries++) {
        unsigned s = atomic_load_explicit(&maps.seq, memory_order_acquire);
        if (s & 1)
            continue;
        size_t n = atomic_load_explicit(&maps.n, memory_order_relaxed), b = 0, e;
        e = n < MAPS_CAP ? n : MAPS_CAP;
        while (b < e) { /* the first range whose hi is above a */
            size_t m = (b + e) / 2;
            if (__atomic_load_n(&maps.r[2 * m + 1], __ATOMIC_RELAXED) <= a)
                b = m + 1;
            else
                e = m;
        }
        uintptr_t l = 0, h = 0;
        if (b < (n < MAPS_CAP ? n : MAPS_CAP)) {
            l = __atomic_load_n(&maps.r[2 * b], __ATOMIC_RELAXED);
            h = __atomic_load_n(&maps.r[2 * b + 1], __ATOMIC_RELAXED);
        }
        atomic_thread_fence(memory_order_acquire);
        if (atomic_load_explicit(&maps.seq, memory_order_relaxed) != s)
            continue;
        if (a >= l && len <= h - a && a < h) {
            *lo = l;
            *hi = h;
            return true;
        }
        return false;
    }
    return false;
}

/* The pages of [a, a + len) readable now, asked of the kernel: process_vm_readv of our own
 * memory fails with EFAULT where a read would fault. For what is newer than the snapshot (a
 * thread's first frames, mapped a moment ago) while the maps may not be read again yet. */
static bool probe(uintptr_t a, size_t len, uintptr_t *lo, uintptr_t *hi) {
    char buf[64];
    uintptr_t first = a & ~(uintptr_t)4095, last = (a + len - 1) & ~(uintptr_t)4095;
    if (last - first > 4096)
        return false;
    for (uintptr_t p = first; p <= last; p += 4096) {
        struct iovec local = {buf, 1}, remote = {(void *)(p > a ? p : a), 1};
        if (syscall(SYS_process_vm_readv, getpid(), &local, 1UL, &remote, 1UL, 0UL) != 1)
            return false;
    }
    *lo = first;
    *hi = last + 4096;
    return true;
}

static noinline bool readable_slow(uintptr_t a, size_t len) {
    uintptr_t lo, hi;
    if (a + len < a)
        return false;
    bool ok = maps_find(a, len, &lo, &hi);
    if (!ok) {
        /* Maybe mapped since the snapshot: read the maps again, unless that was done a moment
         * ago. An address still missing after a fresh read doubles the wait (up to a second). */
        uint64_t now = prof_now_ns();
        if (now >= __atomic_load_n(&maps.next_ns, __ATOMIC_RELAXED) &&
            lib_trylock(&maps.lock) == 0) {
            if (now >= maps.next_ns) {
                maps_refresh_locked();
                ok = maps_find(a, len, &lo, &hi);
                uint64_t b = maps.backoff_ns;
                b = ok || !b ? 1000000 : b * 2 > 1000000000 ? 1000000000 : b * 2;
                maps.backoff_ns = b;
                __atomic_store_n(&maps.next_ns, now + b, __ATOMIC_RELAXED);
            }
            lib_unlock(&maps.lock);
        }
        if (!ok)
            ok = probe(a, len, &lo, &hi);
    }
    if (ok) {
        unsigned i = tls_ok_next++ % OK_RANGES;
        tls_ok[i][0] = lo;
        tls_ok[i][1] = hi;
    }
    return ok;
}

/* The ranges that answered last first: frames live in the thread's data stack chunks (mapped by
 * CPython), asked most often. */
static inline bool readable(uintptr_t a, size_t len) {
    for (unsigned i = 0; i < OK_RANGES; i++)
        if (a >= tls_ok[i][0] && a < tls_ok[i][1] && len <= tls_ok[i][1] - a)
            return true;
    if (ptr_is_ours((void *)a) && ptr_is_ours((void *)(a + len - 1)))
        return true;
    if (a >= tls_stack_lo && a < tls_stack_hi && len <= tls_stack_hi - a)
        return true;
    return readable_slow(a, len);
}

static inline uintptr_t word_at(uintptr_t a) {
    return *(const volatile uintptr_t *)a;
}

/* ---- interned code objects --------------------------------------------------------------------- */
#define CODE_WATCHED 1u /* its block is marked: its free drops the entry */
#define CODE_STATIC 2u  /* in a module's image: never freed */
#define CODES_PER_CHUNK 4096u
#define CODE_MAX_CHUNKS 4096u
#define STR_MAX 4096u            /* bytes of a name or file name kept */
#define TABLE_MAX (256u << 10)   /* bytes of a location table kept */

typedef struct code_rec_s {
    uintptr_t addr;                         /* the code object */
    uintptr_t filename, qualname, linetable; /* its objects when interned */
    int32_t firstlineno;
    uint32_t flags;
    uint64_t content; /* hash of the three objects' contents */
    const char *file, *name;
    const uint8_t *table;
    uint32_t table_len;
    uint32_t nchecks;
    const struct lcheck_s *checks; /* code_line's starting points into table (code_checks) */
} code_rec_t;

typedef struct centry_s {
    _Atomic uintptr_t addr; /* 0: empty */
    _Atomic uint32_t id;    /* 0: freed since */
} centry_t;

typedef struct ctab_s {
    size_t mask, used;
    struct ctab_s *older; /* the tables this one replaced: never unmapped (readers), kept for
                           * python_code_freed */
    centry_t e[];
} ctab_t;

static code_rec_t *code_chunks[CODE_MAX_CHUNKS];
static _Atomic uint64_t code_epoch; /* bumped by every free of an interned code object */
static _Atomic uint32_t ncodes = 1; /* ids below this exist; 0 is none */
static ctab_t *_Atomic ctab;
static pthread_mutex_t code_lock = PTHREAD_MUTEX_INITIALIZER;
static char *text_arena;
static size_t text_left;
static char scratch[STR_MAX + 1]; /* a name being copied, under code_lock */

static inline code_rec_t *code_rec(uint32_t id) {
    return &code_chunks[id / CODES_PER_CHUNK][id % CODES_PER_CHUNK];
}

static inline size_t chash(uintptr_t a) {
    return (size_t)((a * 0x9E3779B97F4A7C15ULL) >> 29);
}

static uint32_t ctab_get(uintptr_t a) {
    const ctab_t *t = atomic_load_explicit(&ctab, memory_order_acquire);
    if (!t)
        return 0;
    for (size_t j = chash(a) & t->mask;; j = (j + 1) & t->mask) {
        uintptr_t k = atomic_load_explicit(&t->e[j].addr, memory_order_acquire);
        if (k == a)
            return atomic_load_explicit(&t->e[j].id, memory_order_acquire);
        if (k == 0)
            return 0;
    }
}

static bool ctab_put_locked(uintptr_t a, uint32_t id) {
    ctab_t *t = atomic_load_explicit(&ctab, memory_order_relaxed);
    if (!t || (t->used + 1) * 2 > t->mask + 1) {
        size_t cap = t ? (t->mask + 1) * 2 : 1024;
        ctab_t *nt = os_map(sizeof *nt + cap * sizeof(centry_t));
        if (!nt)
            return false;
        nt->mask = cap - 1;
        nt->older = t;
        for (size_t i = 0; t && i <= t->mask; i++) {
            uintptr_t k = atomic_load_explicit(&t->e[i].addr, memory_order_relaxed);
            uint32_t v = atomic_load_explicit(&t->e[i].id, memory_order_relaxed);
            if (!k || !v)
                continue;
            size_t j = chash(k) & nt->mask;
            while (atomic_load_explicit(&nt->e[j].addr, memory_order_relaxed))
                j = (j + 1) & nt->mask;
            atomic_store_explicit(&nt->e[j].id, v, memory_order_relaxed);
            atomic_store_explicit(&nt->e[j].addr, k, memory_order_relaxed);
            nt->used++;
        }
        atomic_store_explicit(&ctab, nt, memory_order_release);
        t = nt;
    }
    size_t j = chash(a) & t->mask;
    for (;; j = (j + 1) & t->mask) {
        uintptr_t k = atomic_load_explicit(&t->e[j].addr, memory_order_relaxed);
        if (k == a || k == 0)
            break;
    }
    atomic_store_explicit(&t->e[j].id, id, memory_order_release);
    if (atomic_load_explicit(&t->e[j].addr, memory_order_relaxed) == 0) {
        atomic_store_explicit(&t->e[j].addr, a, memory_order_release);
        t->used++;
    }
    return true;
}

void python_code_freed(uintptr_t start, size_t size) {
    atomic_fetch_add_explicit(&code_epoch, 1, memory_order_release);
    /* The object may sit after a header of the interpreter's (a GC or pre-header). */
    for (const ctab_t *t = atomic_load_explicit(&ctab, memory_order_acquire); t; t = t->older)
        for (uintptr_t a = start; a < start + size && a <= start + 32; a += 16)
            for (size_t j = chash(a) & t->mask;; j = (j + 1) & t->mask) {
                uintptr_t k = atomic_load_explicit(&t->e[j].addr, memory_order_acquire);
                if (k == a)
                    atomic_store_explicit((_Atomic uint32_t *)&t->e[j].id, 0,
                                          memory_order_release);
                if (k == a || k == 0)
                    break;
            }
}

static void *text_alloc_locked(size_t n) {
    n = (n + 7) & ~(size_t)7;
    if (text_left < n) {
        size_t chunk = (size_t)1 << 20;
        if (n > chunk)
            return NULL;
        char *c = os_map(chunk);
        if (!c)
            return NULL;
        text_arena = c;
        text_left = chunk;
    }
    void *p = text_arena;
    text_arena += n;
    text_left -= n;
    return p;
}

static uint64_t hash_bytes(uint64_t h, const uint8_t *p, size_t n) {
    for (size_t i = 0; i < n; i++)
        h = (h ^ p[i]) * 0x100000001b3ULL;
    return h;
}

/* A str object's characters as the interpreter keeps them: *kind bytes each, *len of them. */
static const uint8_t *str_data(uintptr_t s, size_t *len, unsigned *kind) {
    if (!s || (s & 7) || !readable(s, py.L.str_compact) || word_at(s + 8) != py.unicode_type)
        return NULL;
    size_t n = word_at(s + 16);
    uint32_t state = *(const volatile uint32_t *)(s + 32);
    unsigned k = (state >> 2) & 7, compact = (state >> 5) & 1, ascii = (state >> 6) & 1;
    if (!compact || (k != 1 && k != 2 && k != 4) || n > (1u << 24))
        return NULL;
    uintptr_t data = s + (ascii ? py.L.str_ascii : py.L.str_compact);
    if (n && !readable(data, n * k))
        return NULL;
    *len = n;
    *kind = k;
    return (const uint8_t *)data;
}

/* The str's text as UTF-8 into out (at most STR_MAX bytes and a NUL); its length. */
static size_t str_utf8(uintptr_t s, char *out) {
    size_t n, k = 0;
    unsigned kind;
    const uint8_t *d = str_data(s, &n, &kind);
    if (!d) {
        memcpy(out, "?", 2);
        return 1;
    }
    for (size_t i = 0; i < n; i++) {
        uint32_t c = kind == 1 ? d[i] : kind == 2 ? ((const uint16_t *)d)[i]
                                                  : ((const uint32_t *)d)[i];
        if (c == 0)
            c = '?';
        unsigned need = c < 0x80 ? 1 : c < 0x800 ? 2 : c < 0x10000 ? 3 : 4;
        if (k + need > STR_MAX)
            break;
        if (need == 1) {
            out[k++] = (char)c;
        } else if (need == 2) {
            out[k++] = (char)(0xc0 | c >> 6);
            out[k++] = (char)(0x80 | (c & 0x3f));
        } else if (need == 3) {
            out[k++] = (char)(0xe0 | c >> 12);
            out[k++] = (char)(0x80 | ((c >> 6) & 0x3f));
            out[k++] = (char)(0x80 | (c & 0x3f));
        } else {
            out[k++] = (char)(0xf0 | c >> 18);
            out[k++] = (char)(0x80 | ((c >> 12) & 0x3f));
            out[k++] = (char)(0x80 | ((c >> 6) & 0x3f));
            out[k++] = (char)(0x80 | (c & 0x3f));
        }
    }
    out[k] = '\0';
    return k;
}

static const uint8_t *bytes_data(uintptr_t b, size_t *len) {
    if (!b || (b & 7) || !readable(b, 32) || word_at(b + 8) != py.bytes_type)
        return NULL;
    size_t n = word_at(b + 16);
    if (n > TABLE_MAX || (n && !readable(b + 32, n)))
        return NULL;
    *len = n;
    return (const uint8_t *)(b + 32);
}

/* A hash of what the reader is told about the code: its objects' contents. */
static bool content_of(uintptr_t file, uintptr_t qual, uintptr_t table, uint64_t *h) {
    size_t n;
    unsigned kind;
    uint64_t v = 0xcbf29ce484222325ULL;
    const uint8_t *d = str_data(file, &n, &kind);
    if (!d)
        return false;
    v = hash_bytes(v ^ kind, d, n * kind);
    if (!(d = str_data(qual, &n, &kind)))
        return false;
    v = hash_bytes(v ^ (kind << 8), d, n * kind);
    if (!(d = bytes_data(table, &n)))
        return false;
    *h = hash_bytes(v ^ 0x10000, d, n);
    return true;
}

/* The code object's fields the reader needs, read once. */
typedef struct code_view_s {
    uintptr_t filename, qualname, linetable;
    int32_t firstlineno;
} code_view_t;

static inline void code_fields(uintptr_t code, code_view_t *v) {
    v->filename = word_at(code + py.L.co_filename);
    v->qualname = word_at(code + py.L.co_qualname);
    v->linetable = word_at(code + py.L.co_linetable);
    v->firstlineno = *(const volatile int32_t *)(code + py.L.co_firstlineno);
}

static bool code_same(const code_rec_t *r, uintptr_t code) {
    code_view_t v;
    code_fields(code, &v);
    if (r->addr != code || v.filename != r->filename || v.qualname != r->qualname ||
        v.linetable != r->linetable || v.firstlineno != r->firstlineno)
        return false;
    if (r->flags & (CODE_WATCHED | CODE_STATIC))
        return true;
    uint64_t h;
    return content_of(v.filename, v.qualname, v.linetable, &h) && h == r->content;
}

static void code_checks_locked(code_rec_t *r);

static uint32_t intern_locked(uintptr_t code) {
    uint32_t id = ctab_get(code);
    if (id && code_same(code_rec(id), code))
        return id;
    id = atomic_load_explicit(&ncodes, memory_order_relaxed);
    unsigned c = id / CODES_PER_CHUNK;
    if (c >= CODE_MAX_CHUNKS)
        return 0;
    if (!code_chunks[c] && !(code_chunks[c] = os_map(CODES_PER_CHUNK * sizeof(code_rec_t))))
        return 0;
    code_view_t v;
    code_fields(code, &v);
    code_rec_t *r = code_rec(id);
    memset(r, 0, sizeof *r);
    r->addr = code;
    r->filename = v.filename;
    r->qualname = v.qualname;
    r->linetable = v.linetable;
    r->firstlineno = v.firstlineno;
    if (!content_of(v.filename, v.qualname, v.linetable, &r->content))
        return 0;
    char *tmp = scratch; /* under code_lock: no 4 KiB on the stack of an allocation */
    size_t fn = str_utf8(v.filename, tmp);
    char *file = text_alloc_locked(fn + 1);
    if (!file)
        return 0;
    memcpy(file, tmp, fn + 1);
    size_t qn = str_utf8(v.qualname, tmp);
    char *name = text_alloc_locked(qn + 1);
    if (!name)
        return 0;
    memcpy(name, tmp, qn + 1);
    size_t tn = 0;
    const uint8_t *td = bytes_data(v.linetable, &tn);
    uint8_t *table = td && tn ? text_alloc_locked(tn) : NULL;
    if (table)
        memcpy(table, td, tn);
    r->file = file;
    r->name = name;
    r->table = table;
    r->table_len = table ? (uint32_t)tn : 0;
    code_checks_locked(r);
    uintptr_t lo, hi;
    if (!ptr_is_ours((void *)code) && unwind_object_range(code, &lo, &hi))
        r->flags |= CODE_STATIC;
    else if (prof_watch_code(code))
        r->flags |= CODE_WATCHED;
    atomic_store_explicit(&ncodes, id + 1, memory_order_release);
    if (!ctab_put_locked(code, id))
        return 0;
    return id;
}

static uint32_t code_id(uintptr_t code) {
    uint32_t id = ctab_get(code);
    if (likely(id) && likely(code_same(code_rec(id), code)))
        return id;
    lib_lock(&code_lock);
    id = intern_locked(code);
    lib_unlock(&code_lock);
    return id;
}

/* ---- lines ----------------------------------------------------------------------------------
 * The location table of 3.11 and later (Objects/locations.md): entries of 1..8 code units, each
 * a first byte 1CCCCLLL (code C, L + 1 units) and its data. C 15: no line; 14 (long) and 13 (no
 * columns): a signed varint line delta; 10, 11, 12: delta 0, 1, 2; 0..9: delta 0. Varints are
 * 6-bit groups, bit 6 set on all but the last; a signed one keeps its sign in bit 0. The line of
 * instruction i is that of the entry covering it, as PyCode_Addr2Line computes it; before the
 * first instruction it is the first line, as tracemalloc has it. */
static unsigned varint(const uint8_t *p, const uint8_t *end, const uint8_t **next) {
    unsigned v = 0, shift = 0;
    while (p < end) {
        uint8_t b = *p++;
        v |= (unsigned)(b & 63) << shift;
        shift += 6;
        if (!(b & 64) || shift > 24)
            break;
    }
    *next = p;
    return v;
}

/* The location table is read from its start to the instruction: a long function's (a module's
 * body) took thousands of steps at each cache miss, 9% of the CPython workload's instructions
 * in all mode. So every LINE_CHECK_EVERY entries the state before the entry is kept (its byte
 * offset, the instructions before it, the line), and code_line starts from the last one at or
 * before the instruction. */
#define LINE_CHECK_EVERY 16
typedef struct lcheck_s {
    uint32_t off, at;
    int32_t line;
} lcheck_t;

/* One entry of the table at p: the line after it (into *line), its length in code units, and
 * the next entry; code 15 says it has no line. */
static inline const uint8_t *line_entry(const uint8_t *p, const uint8_t *end, int *line,
                                        unsigned *len, unsigned *code) {
    uint8_t b = *p;
    *code = (b >> 3) & 15;
    *len = (b & 7) + 1u;
    const uint8_t *q = p + 1;
    if (*code == 13 || *code == 14) {
        unsigned u = varint(q, end, &q);
        *line += u & 1 ? -(int)(u >> 1) : (int)(u >> 1);
    } else if (*code >= 11 && *code <= 12) {
        *line += (int)*code - 10;
    }
    for (p++; p < end && !(*p & 128); p++) /* to the next entry */
        ;
    return p;
}

/* Under code_lock, at interning: the starting points of a table of more than two spans. */
static void code_checks_locked(code_rec_t *r) {
    const uint8_t *p = r->table, *end = p + r->table_len;
    uint32_t entries = 0;
    for (const uint8_t *q = p; q < end; q++)
        entries += (*q & 128) != 0;
    if (entries < 2 * LINE_CHECK_EVERY)
        return;
    uint32_t n = entries / LINE_CHECK_EVERY + 1, i = 0, k = 0;
    lcheck_t *c = text_alloc_locked(n * sizeof *c);
    if (!c)
        return;
    uint32_t at = 0;
    int line = r->firstlineno;
    while (p < end && i < n) {
        if (k++ % LINE_CHECK_EVERY == 0)
            c[i++] = (lcheck_t){(uint32_t)(p - r->table), at, line};
        unsigned len, code;
        p = line_entry(p, end, &line, &len, &code);
        at += len;
    }
    r->checks = c;
    r->nchecks = i;
}

static int code_line(const code_rec_t *r, uint64_t instr) {
    if (instr == 0)
        return r->firstlineno;
    uint64_t want = instr - 1, at = 0;
    int line = r->firstlineno;
    const uint8_t *p = r->table, *end = p + r->table_len;
    if (r->nchecks) { /* checks[0] is the table's start */
        uint32_t lo = 0, hi = r->nchecks; /* the last check at or before want */
        while (hi - lo > 1) {
            uint32_t mid = (lo + hi) / 2;
            if (r->checks[mid].at <= want)
                lo = mid;
            else
                hi = mid;
        }
        p += r->checks[lo].off;
        at = r->checks[lo].at;
        line = r->checks[lo].line;
    }
    while (p < end) {
        unsigned len, code;
        p = line_entry(p, end, &line, &len, &code);
        if (want < at + len)
            return code == 15 ? -1 : line;
        at += len;
    }
    return -1;
}

/* ---- the frame chain ------------------------------------------------------------------------ */
#define PY_MAX_SEGS 64    /* eval-loop calls in one stack */
#define PY_MAX_CHAIN 4096 /* 3.13: frames followed in one walk */
#define PYC_SLOTS 512
#define PY_MEMO 128       /* frames remembered by their address */

/* A thread's Python frames already turned into words: (code object, instruction pointer) to
 * word, valid while no interned code object has been freed (code_epoch), and only for code
 * objects whose free would be seen (watched) or that are never freed (static). */
typedef struct py_cache_s {
    struct {
        uintptr_t code, ip;
        uint64_t word;
        uint64_t epoch;
    } e[PYC_SLOTS];
    /* Frames seen before, by their address: a frame at the same address whose instruction is
     * the same has the same word, and one whose code object is the same needs no check of it
     * (the innermost frame, moved on to its next allocation). Only cacheable words (see e[])
     * are kept; cleared when code_epoch moves. */
    uint64_t memo_epoch;
    struct {
        _Alignas(64) uintptr_t f; /* an entry a cache line, found by a shift */
        uintptr_t ip, code;
        uint64_t word;
        stack_sums_t term; /* stack_sums_push({0, 0}, word) */
    } memo[PY_MEMO];
    uintptr_t ts_ok;  /* the thread state last found readable */
    py_merge_t merge; /* the last merge */
    /* what the last merge read (python_memo_save packs it): f[] is indexed as merge.words */
    struct {
        bool ok;
        uintptr_t ts;
        uint64_t epoch;
        unsigned ncf;
        uint8_t nfr[PY_MEMO_CF];
        uintptr_t cf[PY_MEMO_CF];
        uintptr_t f[PROF_MAX_DEPTH];
    } tr;
} py_cache_t;

typedef struct walk_s {
    py_cache_t *c;
    uint64_t epoch; /* code_epoch when the walk started */
    unsigned chain; /* 3.13: frames followed */
    bool stopped;
    bool more;     /* a run was cut at the frames wanted: it went on */
    bool uncached; /* a word came from a code object whose free would not be seen */
} walk_t;

/* ts, if it is a thread state of this thread's. Its address is checked for readable memory
 * once (c->ts_ok): a thread state of this thread's stays live while the thread runs in it. */
static inline bool ts_mine(py_cache_t *c, const layout_t *L, uintptr_t ts) {
    if (!ts || (ts & 7))
        return false;
    if (ts != c->ts_ok) {
        if (!readable(ts, L->ts_thread_id + 8))
            return false;
        c->ts_ok = ts;
    }
    /* pthread_self() without the call: on x86-64 glibc's thread pointer is the thread's
     * struct pthread, whose address pthread_self returns */
    return word_at(ts + L->ts_thread_id) == (uintptr_t)__builtin_thread_pointer();
}

/* This thread's PyThreadState, or 0: 3.11's GIL holder's (the runtime's tstate_current) when
 * that is this thread, as it is when Python code allocates; else the value of the
 * interpreter's own key for this thread. */
static inline uintptr_t thread_state(py_cache_t *c, const layout_t *L) {
    const volatile int *tss = (const volatile int *)(py.runtime + L->rt_tss);
    if (tss[0] != 1)
        return 0; /* not initialized, or finalized */
    if (L->rt_current) {
        uintptr_t ts = __atomic_load_n((const uintptr_t *)(py.runtime + L->rt_current),
                                       __ATOMIC_RELAXED);
        if (likely(ts == c->ts_ok && ts_mine(c, L, ts)))
            return ts;
    }
    uintptr_t ts = (uintptr_t)pthread_getspecific((pthread_key_t)tss[1]);
    return ts_mine(c, L, ts) ? ts : 0;
}

static inline unsigned code_slot(uintptr_t code, uintptr_t ip) {
    return (unsigned)(((code ^ (ip << 7)) * 0x9E3779B97F4A7C15ULL) >> 55) & (PYC_SLOTS - 1);
}

/* The word of a frame running code at ip, from the code object: 0 (w->stopped) when the code
 * fails a check, else 1, or 2 when the word may be cached (it went into the cache). */
static noinline int frame_word_slow(walk_t *w, uintptr_t code, uintptr_t ip, uint64_t epoch,
                                    unsigned slot, uintptr_t *word) {
    const layout_t *L = &py.L;
    if ((code & 7) || !readable(code, L->co_code) || word_at(code + 8) != py.code_type) {
        w->stopped = true;
        return 0;
    }
    uint32_t id = code_id(code);
    if (!id) {
        w->stopped = true;
        return 0;
    }
    const code_rec_t *r = code_rec(id);
    uintptr_t start = code + L->co_code;
    uint64_t units = word_at(code + 16), instr = 0; /* ob_size: code units */
    if (ip >= start && ((ip - start) & 1) == 0 && (ip - start) / 2 < units)
        instr = (ip - start) / 2 + 1;
    int line = code_line(r, instr);
    *word = PY_FRAME(id, line > 0 && line < (1 << PY_LINE_BITS) ? (unsigned)line : 0u);
    if (!(r->flags & (CODE_WATCHED | CODE_STATIC)))
        return 1;
    w->c->e[slot].code = code;
    w->c->e[slot].ip = ip;
    w->c->e[slot].word = *word;
    w->c->e[slot].epoch = epoch;
    return 2;
}

static inline bool frame_ok(const layout_t *L, uintptr_t f) {
    return f && !(f & 7) && readable(f, L->fr_size);
}

/* Frames are 64 bytes and more apart on the interpreter's stack: no two of a stack up to
 * 16 * PY_MEMO bytes deep share a slot. */
static inline unsigned memo_slot(uintptr_t f) {
    return (unsigned)(f >> 4) & (PY_MEMO - 1);
}

/* Frame f's word, and its hash term, for a frame not remembered as it is (memo[]); false
 * (w->stopped) when f or its code fails a check. checked: f is known readable. */
static noinline bool frame_word_miss(walk_t *w, uintptr_t f, bool checked, uintptr_t *word,
                                     stack_sums_t *term) {
    const layout_t *L = &py.L;
    py_cache_t *c = w->c;
    if (!checked && !frame_ok(L, f)) {
        w->stopped = true;
        return false;
    }
    uintptr_t code = word_at(f + L->fr_code), ip = word_at(f + L->fr_instr);
    if (!code) { /* never a key of the cache */
        w->stopped = true;
        return false;
    }
    unsigned slot = code_slot(code, ip);
    int got = 2; /* only cacheable words are in the cache */
    if (c->e[slot].code == code && c->e[slot].ip == ip && c->e[slot].epoch == w->epoch)
        *word = c->e[slot].word;
    else if (!(got = frame_word_slow(w, code, ip, w->epoch, slot, word)))
        return false;
    *term = stack_sums_push((stack_sums_t){0, 0}, *word);
    w->uncached |= got != 2;
    if (got == 2) {
        unsigned at = memo_slot(f);
        c->memo[at].f = f;
        c->memo[at].ip = ip;
        c->memo[at].code = code;
        c->memo[at].word = *word;
        c->memo[at].term = *term;
    }
    return true;
}

/* Frame f's word and its hash term; false (w->stopped) when f or its code fails a check.
 * A frame remembered at the same address needs no check: a walk checked it before, it is
 * reached through the chain as it is now. At the same instruction its word is the one it had
 * (the instruction pointer lies inside the code object, and an interned code object freed
 * moves code_epoch, which clears memo[]); with the same code object at another instruction,
 * the word is the cache's for that pair. */
static inline __attribute__((always_inline)) bool frame_word(walk_t *w, const layout_t *L,
                                                             uintptr_t f, bool checked,
                                                             uintptr_t *word, stack_sums_t *term) {
    py_cache_t *c = w->c;
    unsigned at = memo_slot(f);
    if (c->memo[at].f == f) {
        uintptr_t ip = word_at(f + L->fr_instr);
        if (likely(c->memo[at].ip == ip)) {
            *word = c->memo[at].word;
            term->a = c->memo[at].term.a;
            term->b = c->memo[at].term.b;
            return true;
        }
        uintptr_t code = word_at(f + L->fr_code);
        unsigned slot = code_slot(code, ip);
        if (code == c->memo[at].code && c->e[slot].code == code && c->e[slot].ip == ip &&
            c->e[slot].epoch == w->epoch) {
            *word = c->e[slot].word;
            *term = stack_sums_push((stack_sums_t){0, 0}, *word);
            c->memo[at].ip = ip;
            c->memo[at].word = *word;
            c->memo[at].term = *term;
            return true;
        }
        checked = true;
    }
    /* through a local of its own: the caller's term stays in registers on the paths above */
    stack_sums_t t;
    bool ok = frame_word_miss(w, f, checked, word, &t);
    *term = t;
    return ok;
}

/* walk_segment, for 3.12 (v312: the eval call's shim frame ends its frames) or 3.11 (the
 * entered frame is marked is_entry). */
static inline __attribute__((always_inline)) unsigned
walk_segment_as(walk_t *w, const layout_t *L, uintptr_t f, uintptr_t *out, unsigned cap,
                stack_sums_t *sums, uintptr_t *fs) {
    const bool v312 = L->fr_is_entry < 0;
    const uint32_t is_entry = (uint32_t)L->fr_is_entry, owner = L->fr_owner,
                   previous = L->fr_previous;
    unsigned o = 0;
    uint64_t a = 0, b = 0;
    stack_sums_t t;
    while (f) {
        if (v312) {
            if (!frame_ok(L, f)) {
                w->stopped = true;
                break;
            }
            if (*(const volatile uint8_t *)(f + owner) == OWNED_BY_CSTACK)
                break;
        }
        if (o == cap) {
            w->more = true;
            break;
        }
        if (!frame_word(w, L, f, v312, &out[o], &t))
            break;
        if (fs)
            fs[o] = f;
        o++;
        a += t.a * prof_pow_ra[o];
        b += t.b * prof_pow_rb[o];
        if (!v312 && *(const volatile uint8_t *)(f + is_entry))
            break;
        f = word_at(f + previous);
    }
    sums->a = a;
    sums->b = b;
    return o;
}

/* 3.11, 3.12: the frames one eval call runs, innermost f first, into out[0..cap); how many.
 * Their hash terms, weighed by place, are summed into *sums. cap bounds the frames read: the
 * merged stack's room, so a cycle in a torn chain ends there. */
static noinline unsigned walk_segment(walk_t *w, uintptr_t f, uintptr_t *out, unsigned cap,
                                      stack_sums_t *sums) {
    return walk_segment_as(w, &py.L, f, out, cap, sums, NULL);
}

/* The native frame, from k on (k < n), whose extent holds m: the last whose stack pointer is at
 * or below it. Full-width index: no extension in the loop. */
static inline unsigned frame_holding(const uintptr_t *sp, unsigned k, unsigned n, uintptr_t m) {
    size_t j = k, last = n - 1;
    while (j < last && sp[j + 1] <= m)
        j++;
    return (unsigned)j;
}

static inline bool in_eval(uintptr_t pc) {
    return pc - py.eval_lo < py.eval_hi - py.eval_lo;
}

/* A run of got Python frames, their words at words[nw], replaces native frame k (native, the
 * return address there), at o in the merged stack; its hash terms sum to sums. */
static inline __attribute__((always_inline)) void run_add(py_merge_t *pm, unsigned nruns,
                                                          unsigned k, unsigned o, unsigned got,
                                                          unsigned nw, stack_sums_t sums,
                                                          uintptr_t native, stack_sums_t *d) {
    pm->runs[nruns] = (py_run_t){k, o, got, nw};
    stack_sums_t nt = stack_sums_push((stack_sums_t){0, 0}, native);
    stack_sums_t rt = run_len_term[got];
    d->a += prof_pow_ba[k] * (rt.a + sums.a - nt.a);
    d->b += prof_pow_bb[k] * (rt.b + sums.b - nt.b);
}

/* The native frames [*k, j) go before the run of eval frame j: false when they fill the stack
 * (then *k counts those kept). */
static inline bool natives_to(unsigned j, unsigned *k, unsigned *o, unsigned cap) {
    if (j - *k >= cap - *o) {
        *k += cap - *o;
        *o = cap;
        return false;
    }
    *o += j - *k;
    *k = j;
    return true;
}

/* What a merge found: nruns runs, o frames placed, native frames [0, k) used; the native frames
 * from k on follow, as many as cap leaves room for. */
static int merge_end(const walk_t *w, py_merge_t *pm, unsigned nruns, unsigned o, unsigned k,
                     unsigned n, unsigned cap, stack_sums_t delta) {
    pm->nruns = nruns;
    pm->delta = delta;
    if (!nruns)
        return -1;
    unsigned rest = n - k;
    pm->cut = w->more || rest > cap - o;
    if (rest > cap - o)
        rest = cap - o;
    pm->kcut = k + rest;
    return (int)(o + rest);
}

/* 3.11, 3.12 with the walker's stack pointers, the common case: each _PyCFrame, from
 * tstate->cframe outwards, lies in the extent [sp, CFA) of the eval frame that runs its
 * Python frames. The _PyCFrames up to the outermost native frame's end are followed; the
 * frames between are counted, not copied. */
static inline __attribute__((always_inline)) int
merge_cframes(walk_t *w, const layout_t *L, uintptr_t ts, const uintptr_t *fr,
              const uintptr_t *sp, uintptr_t sp_top, unsigned n, unsigned cap, py_merge_t *pm) {
    uintptr_t limit = sp_top ? sp_top : UINTPTR_MAX;
    uintptr_t cf = word_at(ts + L->ts_cframe);
    unsigned o = 0, k = 0, nw = 0, nruns = 0, segs = 0;
    stack_sums_t delta = {0, 0};
    /* the trace (python_memo_save): each cframe value looked at, and the frames walked at it */
    __typeof__(w->c->tr) *tr = &w->c->tr;
    const bool tracing = L->fr_is_entry >= 0; /* 3.12's runs end at a frame not walked */
    unsigned ncf = 0;
    bool bad = !tracing;
    for (;;) {
        unsigned at = ncf++;
        if (at < PY_MEMO_CF) {
            tr->cf[at] = cf;
            tr->nfr[at] = 0;
        }
        if (!(cf && cf < limit && k < n && segs++ < PY_MAX_SEGS))
            break;
        /* One off this thread's stack is in no native frame's extent: the thread state's own
         * root_cframe, which ends the list. */
        if (cf < tls_stack_lo || cf >= tls_stack_hi - (L->cf_previous + 8))
            break;
        if (cf & 7) {
            w->stopped = true;
            break;
        }
        uintptr_t m = cf, f = word_at(cf + L->cf_frame);
        cf = word_at(cf + L->cf_previous); /* outer calls' are further up */
        if (m < sp[k])
            continue; /* an eval call whose frame is not among these */
        unsigned j = frame_holding(sp, k, n, m);
        /* m < limit: in frame j's extent, unless that is not known (the walk stopped short of
         * the stack's end) and the frame is no eval frame */
        if (j + 1 == n && !sp_top && !in_eval(fr[j]))
            break;
        if (nruns == PY_MAX_RUNS)
            break;
        if (!natives_to(j, &k, &o, cap))
            break; /* the native frames before it fill the stack */
        stack_sums_t sums;
        unsigned got = walk_segment_as(w, L, f, pm->words + nw, cap - o, &sums, tr->f + nw);
        if (at < PY_MEMO_CF)
            tr->nfr[at] = (uint8_t)got;
        bad |= got == 0;
        if (got) {
            run_add(pm, nruns++, k, o, got, nw, sums, fr[k], &delta);
            nw += got;
            o += got;
            k++;
        } /* else a run the checks cut short: the native frame stays */
        if (w->stopped || o >= cap)
            break;
    }
    tr->ncf = ncf;
    tr->ok = !bad && ncf <= PY_MEMO_CF;
    return merge_end(w, pm, nruns, o, k, n, cap, delta);
}

/* The other cases: 3.13's one chain, cut at the shim frames each eval call pushes on its C
 * stack; or no stack pointers (libunwind's stacks), where the eval frames are the ones in the
 * eval loop's symbol, matched in order. The runs are found first, then placed. */
typedef struct seg_s {
    uintptr_t marker; /* on the C stack: the eval call's _PyCFrame or shim frame */
    uintptr_t frame;  /* 3.11, 3.12: its innermost frame, walked when it is needed */
    uint32_t first, end; /* 3.13: its words in frames[] */
} seg_t;

typedef struct segs_s {
    seg_t s[PY_MAX_SEGS];
    unsigned n;
    uintptr_t frames[PROF_MAX_DEPTH]; /* 3.13: words, innermost first */
    unsigned nframes;
} segs_t;

static void walk_cframes(walk_t *w, segs_t *g, uintptr_t ts) {
    const layout_t *L = &py.L;
    uintptr_t cf = word_at(ts + L->ts_cframe);
    while (cf && g->n < PY_MAX_SEGS) {
        bool on_stack = cf >= tls_stack_lo && cf < tls_stack_hi - (L->cf_previous + 8);
        if ((cf & 7) || (!on_stack && !readable(cf, L->cf_previous + 8))) {
            w->stopped = true;
            break;
        }
        g->s[g->n++] = (seg_t){.marker = cf, .frame = word_at(cf + L->cf_frame)};
        cf = word_at(cf + L->cf_previous);
    }
}

static void walk_chain(walk_t *w, segs_t *g, uintptr_t ts) {
    const layout_t *L = &py.L;
    uintptr_t f = word_at(ts + L->ts_frame);
    unsigned first = 0;
    while (f && w->chain++ < PY_MAX_CHAIN && g->n < PY_MAX_SEGS) {
        if (!frame_ok(L, f)) {
            w->stopped = true;
            break;
        }
        if (*(const volatile uint8_t *)(f + L->fr_owner) == OWNED_BY_CSTACK) {
            g->s[g->n++] = (seg_t){.marker = f, .first = first, .end = g->nframes};
            first = g->nframes;
        } else {
            uintptr_t word;
            stack_sums_t term;
            if (!frame_word(w, L, f, true, &word, &term))
                break;
            if (g->nframes < PROF_MAX_DEPTH)
                g->frames[g->nframes++] = word;
        }
        f = word_at(f + L->fr_previous);
    }
}

/* sp[k], the frame's stack pointer; at k == n the outermost frame's CFA */
#define SP(k) ((k) < n ? sp[k] : sp_top)

static noinline int merge_segments(walk_t *w, uintptr_t ts, const uintptr_t *fr,
                                   const uintptr_t *sp, uintptr_t sp_top, unsigned n,
                                   unsigned cap, py_merge_t *pm) {
    segs_t g;
    g.n = g.nframes = 0;
    bool lazy = py.L.ts_cframe != 0;
    if (lazy)
        walk_cframes(w, &g, ts);
    else
        walk_chain(w, &g, ts);
    unsigned o = 0, k = 0, nw = 0, nruns = 0;
    stack_sums_t delta = {0, 0};
    for (unsigned si = 0; si < g.n && k < n && o < cap && !w->stopped; si++) {
        /* the native frame whose extent holds the run's marker (or, with no stack pointers,
         * the next frame in the eval loop's symbol) */
        unsigned j = k;
        uintptr_t m = g.s[si].marker;
        if (sp) {
            if (m < sp[k])
                continue; /* a run whose eval call is not among these frames */
            j = frame_holding(sp, k, n, m);
            if (j + 1 == n && sp_top && sp_top <= m)
                j++;
            if (j < n && !SP(j + 1) && !in_eval(fr[j]))
                break; /* the outermost frame's extent is not known, and it is no eval frame */
        } else {
            while (j < n && !in_eval(fr[j]))
                j++;
        }
        if (j >= n || nruns >= PY_MAX_RUNS)
            break;
        if (!natives_to(j, &k, &o, cap))
            break; /* the native frames before it fill the stack */
        const seg_t *s = &g.s[si];
        unsigned got;
        stack_sums_t sums = {0, 0};
        if (lazy) {
            got = walk_segment(w, s->frame, pm->words + nw, cap - o, &sums);
        } else {
            got = s->end - s->first;
            if (got > cap - o) {
                got = cap - o;
                w->more = true;
            }
            memcpy(pm->words + nw, g.frames + s->first, got * sizeof *pm->words);
            for (unsigned i = 0; i < got; i++) {
                stack_sums_t t = stack_sums_push((stack_sums_t){0, 0}, pm->words[nw + i]);
                sums.a += t.a * prof_pow_ra[i + 1];
                sums.b += t.b * prof_pow_rb[i + 1];
            }
        }
        if (!got)
            continue; /* a run the checks cut short: the native frame stays */
        run_add(pm, nruns++, k, o, got, nw, sums, fr[k], &delta);
        nw += got;
        o += got;
        k++;
    }
    return merge_end(w, pm, nruns, o, k, n, cap, delta);
}

/* python_merge with layout L: one of the table's (its offsets constants in the code made of
 * this), or py.L. */
static inline __attribute__((always_inline)) int
merge_as(heap_t *h, const layout_t *L, const uintptr_t *fr, const uintptr_t *sp,
         uintptr_t sp_top, unsigned n, unsigned cap, const py_merge_t **pm) {
    if (unlikely(!tls_stack_hi))
        unwind_thread_stack(&tls_stack_lo, &tls_stack_hi);
    if (unlikely(!h->pyc) && !(h->pyc = os_map(sizeof(py_cache_t))))
        return -1; /* no memory for the cache: native stacks */
    walk_t w = {h->pyc, atomic_load_explicit(&code_epoch, memory_order_acquire), 0, false,
                false, false};
    uintptr_t ts = thread_state(w.c, L);
    w.c->tr.ts = ts;
    w.c->tr.epoch = w.epoch;
    w.c->tr.ncf = 0;
    w.c->tr.ok = !ts; /* a thread with no Python: nothing read but that */
    if (!ts)
        return -1;
    if (w.c->memo_epoch != w.epoch) {
        memset(w.c->memo, 0, sizeof w.c->memo);
        w.c->memo_epoch = w.epoch;
    }
    if (cap > PROF_MAX_DEPTH)
        cap = PROF_MAX_DEPTH;
    int m = L->ts_cframe && sp ? merge_cframes(&w, L, ts, fr, sp, sp_top, n, cap, &w.c->merge)
                               : merge_segments(&w, ts, fr, sp, sp_top, n, cap, &w.c->merge);
    w.c->tr.ok &= !w.stopped && !w.uncached;
    if (w.stopped)
        atomic_fetch_add_explicit(&py.stopped, 1, memory_order_relaxed);
    *pm = &w.c->merge;
    return m;
}

int python_merge(heap_t *h, const uintptr_t *fr, const uintptr_t *sp, uintptr_t sp_top,
                 unsigned n, unsigned cap, const py_merge_t **pm) {
    if (!__atomic_load_n(&python_active, __ATOMIC_ACQUIRE))
        return -1;
    /* 3.11 and 3.12 as the table has them: a copy each, its offsets constants */
    if (py.table == 1)
        return merge_as(h, &layouts[0], fr, sp, sp_top, n, cap, pm);
    if (py.table == 2)
        return merge_as(h, &layouts[1], fr, sp, sp_top, n, cap, pm);
    return merge_as(h, &py.L, fr, sp, sp_top, n, cap, pm);
}

/* ---- the stack memo's part (unwind.c) ----------------------------------------------------
 * A later stack is the one a merge traced when every word the merge read that its answer
 * depends on is the same: the thread state, the _PyCFrame pointers in order, and each walked
 * frame's address, instruction pointer and is_entry flag (the frame's word follows from its
 * instruction pointer as memo[] has it: the same code object while code_epoch stands). The
 * words read again are where the traced merge read them: a _PyCFrame it followed lies on this
 * thread's stack, and a frame reached through the chain now at the address it was checked at
 * is a live frame of this thread's. */
static inline const layout_t *layout_now(void) {
    return py.table == 1 ? &layouts[0] : py.table == 2 ? &layouts[1] : &py.L;
}

/* What the memo keeps of a frame: its instruction pointer, the low bit its is_entry (3.11). */
static inline uintptr_t frame_ip_entry(const layout_t *L, uintptr_t f) {
    return word_at(f + L->fr_instr) |
           (*(const volatile uint8_t *)(f + (uint32_t)L->fr_is_entry) != 0);
}

static inline __attribute__((always_inline)) void memo_key_as(const layout_t *L, py_cache_t *c,
                                                               py_memo_key_t *k) {
    uintptr_t ts = thread_state(c, L);
    k->ts = ts;
    if (!ts || !L->ts_cframe)
        return;
    uintptr_t cf = word_at(ts + L->ts_cframe);
    if (cf - tls_stack_lo >= tls_stack_hi - (L->cf_previous + 8) - tls_stack_lo || (cf & 7))
        return;
    uintptr_t f = word_at(cf + L->cf_frame);
    k->f = f;
    if (!f || c->memo[memo_slot(f)].f != f)
        return;
    /* a frame checked before, reached through the chain; and its caller's, in 3.11 when it
     * is a Python frame of the same run */
    k->ip = word_at(f + L->fr_instr);
    if (L->fr_is_entry < 0 || *(const volatile uint8_t *)(f + (uint32_t)L->fr_is_entry))
        return;
    uintptr_t g = word_at(f + L->fr_previous);
    if (g && c->memo[memo_slot(g)].f == g)
        k->ip2 = word_at(g + L->fr_instr);
}

void python_memo_key(heap_t *h, py_memo_key_t *k) {
    k->ts = k->f = k->ip = k->ip2 = 0;
    py_cache_t *c = h->pyc;
    if (!c || !tls_stack_hi)
        return;
    if (py.table == 1)
        memo_key_as(&layouts[0], c, k);
    else
        memo_key_as(&py.L, c, k);
}

size_t python_memo_save(heap_t *h, uintptr_t *w, size_t cap, unsigned *ncf) {
    py_cache_t *c = h->pyc;
    if (!c || !c->tr.ok)
        return 0;
    const layout_t *L = layout_now();
    unsigned n = c->tr.ncf, frames = 0;
    uint64_t runs = 0;
    for (unsigned i = 0; i < n; i++) {
        runs |= (uint64_t)c->tr.nfr[i] << (8 * i);
        frames += c->tr.nfr[i];
    }
    size_t used = 3 + n + 2 * (size_t)frames;
    if (used > cap)
        return 0;
    w[0] = c->tr.ts;
    w[1] = c->tr.epoch;
    w[2] = runs;
    for (unsigned i = 0; i < n; i++)
        w[3 + i] = c->tr.cf[i];
    uintptr_t *fw = w + 3 + n;
    for (unsigned j = 0; j < frames; j++) {
        uintptr_t f = c->tr.f[j];
        fw[2 * j] = f;
        fw[2 * j + 1] = frame_ip_entry(L, f);
    }
    *ncf = n;
    return used;
}

static inline __attribute__((always_inline)) bool memo_same_as(const layout_t *L,
                                                              const uintptr_t *w, unsigned n,
                                                              uintptr_t ts) {
    if (atomic_load_explicit(&code_epoch, memory_order_acquire) != w[1])
        return false;
    uintptr_t cf = word_at(ts + L->ts_cframe);
    uint64_t runs = w[2];
    const uintptr_t *cfs = w + 3, *fw = w + 3 + n;
    for (unsigned i = 0;; i++, runs >>= 8) {
        if (cf != cfs[i])
            return false;
        unsigned m = (unsigned)(runs & 0xff);
        if (m) {
            uintptr_t f = word_at(cf + L->cf_frame);
            for (;;) {
                if ((f ^ fw[0]) | (frame_ip_entry(L, f) ^ fw[1]))
                    return false;
                fw += 2;
                if (--m == 0)
                    break;
                f = word_at(f + L->fr_previous);
            }
        }
        if (i + 1 == n)
            return true;
        cf = word_at(cf + L->cf_previous);
    }
}

bool python_memo_same(const uintptr_t *w, unsigned ncf, uintptr_t ts) {
    if (w[0] != ts)
        return false;
    if (!ts)
        return true;
    if (!ncf)
        return false;
    if (py.table == 1)
        return memo_same_as(&layouts[0], w, ncf, ts);
    return memo_same_as(&py.L, w, ncf, ts);
}

void python_materialize(const py_merge_t *pm, const uintptr_t *fr, unsigned n, unsigned m,
                        uintptr_t *out) {
    unsigned o = 0, k = 0;
    for (unsigned r = 0; r < pm->nruns; r++) {
        const py_run_t *run = &pm->runs[r];
        memcpy(out + o, fr + k, (run->at - o) * sizeof *out); /* the native frames before */
        memcpy(out + run->at, pm->words + run->w, run->n * sizeof *out);
        o = run->at + run->n;
        k = run->k + 1U;
    }
    unsigned rest = m - o < n - k ? m - o : n - k;
    memcpy(out + o, fr + k, rest * sizeof *out);
}

/* ---- the dump ---------------------------------------------------------------------------------- */
void python_put_header(fmt_t *f) {
    if (!py.found)
        return;
    fmt_str(f, " python=");
    fmt_str(f, py.name);
    if (!py.supported)
        fmt_str(f, " python_frames=0");
}

void python_put_totals(fmt_t *f) {
    if (!python_active)
        return;
    fmt_str(f, " python_codes=");
    fmt_u64(f, atomic_load_explicit(&ncodes, memory_order_acquire) - 1);
    uint64_t s = atomic_load_explicit(&py.stopped, memory_order_relaxed);
    if (s) {
        fmt_str(f, " python_stopped=");
        fmt_u64(f, s);
    }
}

void python_put_codes(fmt_t *f) {
    uint32_t n = atomic_load_explicit(&ncodes, memory_order_acquire);
    for (uint32_t id = 1; id < n; id++) {
        const code_rec_t *r = code_rec(id);
        fmt_str(f, "pycode id=");
        fmt_u64(f, id);
        fmt_str(f, " first=");
        fmt_u64(f, r->firstlineno > 0 ? (uint64_t)r->firstlineno : 0);
        fmt_str(f, " file=");
        dump_put_enc(f, r->file);
        fmt_str(f, " name=");
        dump_put_enc(f, r->name);
        fmt_char(f, '\n');
    }
}

/* ---- fork ---------------------------------------------------------------------------------------- */
void python_fork_scan_lock(void) {
    lib_lock(&scan_lock);
}

void python_fork_scan_unlock(void) {
    lib_unlock(&scan_lock);
}

void python_fork_prepare(void) {
    lib_lock(&code_lock);
    lib_lock(&maps.lock);
}

void python_fork_parent(void) {
    lib_unlock(&maps.lock);
    lib_unlock(&code_lock);
}

void python_fork_child(void) {
    pthread_mutex_init(&scan_lock, NULL);
    pthread_mutex_init(&maps.lock, NULL);
    pthread_mutex_init(&code_lock, NULL);
}
