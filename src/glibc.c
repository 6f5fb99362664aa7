/* glibc.c: the allocator behind ours (glibc's, or the next in line), and glibc's introspection
 * API over both.
 *
 * Requests above 512 bytes go to the allocator behind the pools (see "the allocator behind the
 * pools" below); and the library exports glibc's introspection calls (mallinfo2, mallinfo,
 * malloc_stats, malloc_info, mallopt, malloc_trim) with the pools added in, since a monitor that
 * reads glibc's alone sees 9 KB of a program's 5.5 MB. It also exports __libc_free and
 * __libc_realloc (alloc.c): a program that frees our block through them must not crash.
 *
 * Exporting those names means the library cannot reach glibc's by name: a reference from here
 * would bind to our own definition. So glibc's entry points are looked up in libc.so.6's own
 * dynamic symbol table (found through the loader's r_debug list, with no lock and no call), the
 * way the loader does: no dlsym, which takes the loader's lock and clears the thread's dlerror()
 * text. */
#include "internal.h"
#include "tally.h"

#include <dlfcn.h>
#include <errno.h>
#include <link.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

static struct {
    void (*_Atomic free)(void *);
    struct mallinfo2 (*mallinfo2)(void);
    void (*malloc_stats)(void);
    int (*malloc_info)(int, FILE *);
    int (*mallopt)(int, int);
    int (*malloc_trim)(size_t);
} libc_fn;

/* ---- symbols without dlsym ------------------------------------------------------------------ */
static uint32_t gnu_hash(const char *s) {
    uint32_t h = 5381;
    for (; *s; s++)
        h = h * 33 + (uint8_t)*s;
    return h;
}

uintptr_t elf_lookup(uintptr_t base, const void *dynamic, const char *name) {
    return elf_lookup_sized(base, dynamic, name, NULL);
}

uintptr_t elf_lookup_sized(uintptr_t base, const void *dynamic, const char *name, size_t *size) {
    const ElfW(Dyn) *dyn = dynamic;
    const uint32_t *gh = NULL;
    const ElfW(Sym) *symtab = NULL;
    const char *strtab = NULL;
    if (!dyn)
        return 0;
    for (; dyn->d_tag != DT_NULL; dyn++) {
        /* ld.so relocates these in place; an object it did not load may not be */
        uintptr_t v = dyn->d_un.d_ptr < base ? dyn->d_un.d_ptr + base : dyn->d_un.d_ptr;
        if (dyn->d_tag == DT_GNU_HASH)
            gh = (const uint32_t *)v;
        else if (dyn->d_tag == DT_SYMTAB)
            symtab = (const ElfW(Sym) *)v;
        else if (dyn->d_tag == DT_STRTAB)
            strtab = (const char *)v;
    }
    if (!gh || !symtab || !strtab || gh[0] == 0)
        return 0;
    uint32_t nbuckets = gh[0], symoff = gh[1], bloom_words = gh[2];
    const uint32_t *buckets = gh + 4 + bloom_words * (sizeof(ElfW(Addr)) / 4);
    const uint32_t *chain = buckets + nbuckets;
    uint32_t h = gnu_hash(name);
    for (uint32_t i = buckets[h % nbuckets]; i >= symoff && i != 0; i++) {
        uint32_t c = chain[i - symoff];
        const ElfW(Sym) *sym = &symtab[i];
        if ((c | 1) == (h | 1) && sym->st_shndx != SHN_UNDEF && sym->st_value &&
            strcmp(strtab + sym->st_name, name) == 0) {
            if (size)
                *size = sym->st_size;
            return base + sym->st_value;
        }
        if (c & 1)
            break;
    }
    return 0;
}

const char *base_name(const char *path) {
    const char *b = path;
    for (const char *c = path; *c; c++)
        if (*c == '/')
            b = c + 1;
    return b;
}

/* libc.so.6 in the loader's list of the initial namespace. The list only grows at its end while
 * libc is loaded (it never is unloaded), so walking it without the loader's lock is safe. */
static const struct link_map *libc_map(void) {
    for (const struct link_map *m = _r_debug.r_map; m; m = m->l_next)
        if (m->l_name && strncmp(base_name(m->l_name), "libc.so.", 8) == 0)
            return m;
    return NULL;
}

/* Whether m is this library: it defines our tally_version. */
static bool is_self(const struct link_map *m) {
    return elf_lookup(m->l_addr, m->l_ld, "tally_version") == (uintptr_t)&tally_version;
}

/* Definitions of names in the objects the loader puts before this library (the executable, the
 * libraries preloaded before it): what the program defines for itself. found[i] gets the first,
 * 0 where none does. */
void elf_before_us(const char *const *names, unsigned n, uintptr_t *found) {
    for (const struct link_map *m = _r_debug.r_map; m; m = m->l_next) {
        if (is_self(m))
            return;
        for (unsigned i = 0; i < n; i++)
            if (!found[i])
                found[i] = elf_lookup(m->l_addr, m->l_ld, names[i]);
    }
}

/* The first definition of name in an object after this library in the loader's list (for the
 * C++ operators, libstdc++'s); 0 if none. */
uintptr_t elf_after_us(const char *name) {
    bool after = false;
    for (const struct link_map *m = _r_debug.r_map; m; m = m->l_next) {
        if (!after) {
            after = is_self(m);
            continue;
        }
        uintptr_t a = elf_lookup(m->l_addr, m->l_ld, name);
        if (a)
            return a;
    }
    return 0;
}

/* The first definition of name in the loader's list of the initial namespace, as a call to it
 * from the program would bind; 0 if none. */
uintptr_t elf_global_lookup(const char *name) {
    for (const struct link_map *m = _r_debug.r_map; m; m = m->l_next) {
        uintptr_t a = elf_lookup(m->l_addr, m->l_ld, name);
        if (a)
            return a;
    }
    return 0;
}

/* A libc we cannot read (never seen on glibc): the next definition after ours, which is
 * glibc's unless the program links another allocator (Debian's redis has jemalloc next in line,
 * which would take glibc's blocks for its own: hence libc.so.6's own table first). Not from
 * inside the first allocation, whose dlsym could allocate and wait for itself. */
static bool may_dlsym;

static void *libc_sym(const struct link_map *m, const char *name) {
    void *p = m ? (void *)elf_lookup(m->l_addr, m->l_ld, name) : NULL;
    return p || !may_dlsym ? p : dlsym(RTLD_NEXT, name);
}

/* ---- the allocator behind the pools ---------------------------------------------------------
 * Blocks the pools do not serve go to the allocator next in line: by default the first object
 * after ours in the loader's list that defines malloc, when that is not libc.so.6 (a user's
 * LD_PRELOAD="libtallymalloc.so libmimalloc.so.2", or a program linked with jemalloc); else
 * glibc. TALLY_LARGE=glibc keeps glibc; TALLY_LARGE=NAME names a loaded library (its path, file
 * name, or file name up to a dot). Chosen once, at the first call that needs it, before any
 * block is had from it: every block not ours then comes from one allocator and goes back to it.
 * Its functions are read from its own symbol table, as glibc's are: a name bound by the loader
 * could be another library's (tcmalloc exports __libc_malloc). */
raw_t raw;

extern char **__environ;

static const char *env_value(const char *name) {
    size_t n = strlen(name);
    for (char **e = __environ; e && *e; e++)
        if (strncmp(*e, name, n) == 0 && (*e)[n] == '=')
            return *e + n + 1;
    return NULL;
}

/* Does the loaded object at path answer to want (its path, file name, or file name up to a dot)? */
static bool answers_to(const char *path, const char *want) {
    const char *b = base_name(path);
    size_t n = strlen(want);
    return strcmp(path, want) == 0 || strcmp(b, want) == 0 ||
           (strncmp(b, want, n) == 0 && b[n] == '.');
}

/* The library whose allocator goes behind ours, or NULL for glibc. */
static const struct link_map *next_allocator(const struct link_map *libc, const char *want) {
    if (want && strcasecmp(want, "glibc") == 0)
        return NULL;
    bool after_us = false;
    for (const struct link_map *m = _r_debug.r_map; m; m = m->l_next) {
        if (!m->l_name)
            continue;
        if (want) {
            if (m != libc && m->l_name[0] && answers_to(m->l_name, want))
                return m;
            continue;
        }
        if (!after_us) {
            after_us = is_self(m);
            continue;
        }
        if (elf_lookup(m->l_addr, m->l_ld, "malloc"))
            return m == libc ? NULL : m;
    }
    if (want)
        tally_message("TALLY_LARGE: ", want,
                      " is not loaded (put it in LD_PRELOAD after libtallymalloc.so): glibc serves the large blocks");
    return NULL;
}

bool raw_is_glibc; /* set before raw.free is */

/* An environment value that turns an option on: set, and not 0/false/off/no. */
static bool env_on(const char *name) {
    const char *v = env_value(name);
    return v && *v && strcmp(v, "0") != 0 && strcasecmp(v, "false") != 0 &&
           strcasecmp(v, "off") != 0 && strcasecmp(v, "no") != 0;
}

noinline void raw_resolve(void) {
    const struct link_map *libc = libc_map();
    const char *want = env_value("TALLY_LARGE");
    if (want && (!*want || strcasecmp(want, "auto") == 0))
        want = NULL;
    /* all mode (and the leak check it makes possible) keeps glibc unless told otherwise: another
     * allocator's records of its blocks look like pointers to them, and would make leaks
     * "still reachable" (the leak check then says its kinds are approximate) */
    const char *profile = env_value("TALLY_PROFILE");
    bool exact = env_on("TALLY_LEAKS") || (profile && strcasecmp(profile, "all") == 0);
    const struct link_map *m = want || !exact ? next_allocator(libc, want) : NULL;
    if (m) {
        raw.malloc = (void *(*)(size_t))elf_lookup(m->l_addr, m->l_ld, "malloc");
        raw.calloc = (void *(*)(size_t, size_t))elf_lookup(m->l_addr, m->l_ld, "calloc");
        raw.memalign = (void *(*)(size_t, size_t))elf_lookup(m->l_addr, m->l_ld, "memalign");
        raw.realloc = (void *(*)(void *, size_t))elf_lookup(m->l_addr, m->l_ld, "realloc");
        raw.usable = (size_t(*)(void *))elf_lookup(m->l_addr, m->l_ld, "malloc_usable_size");
        void (*f)(void *) = (void (*)(void *))elf_lookup(m->l_addr, m->l_ld, "free");
        if (raw.malloc && raw.calloc && raw.memalign && raw.realloc && raw.usable && f) {
            raw.valloc = raw.pvalloc = NULL;
            raw.name = base_name(m->l_name);
            atomic_store_explicit(&raw.free, f, memory_order_release);
            return;
        }
        if (want) /* asked for by name: say why not; in auto mode glibc serves, silently */
            tally_message("TALLY_LARGE: ", base_name(m->l_name),
                          " lacks one of malloc, free, calloc, realloc, memalign, malloc_usable_size: glibc serves the large blocks");
    }
    raw.malloc = (void *(*)(size_t))libc_sym(libc, "__libc_malloc");
    raw.calloc = (void *(*)(size_t, size_t))libc_sym(libc, "__libc_calloc");
    raw.memalign = (void *(*)(size_t, size_t))libc_sym(libc, "__libc_memalign");
    raw.realloc = (void *(*)(void *, size_t))libc_sym(libc, "__libc_realloc");
    raw.usable = (size_t(*)(void *))libc_sym(libc, "malloc_usable_size");
    raw.valloc = (void *(*)(size_t))libc_sym(libc, "__libc_valloc");
    raw.pvalloc = (void *(*)(size_t))libc_sym(libc, "__libc_pvalloc");
    raw.name = "glibc";
    raw_is_glibc = true;
    atomic_store_explicit(&raw.free, (void (*)(void *))libc_sym(libc, "__libc_free"),
                          memory_order_release);
}

noinline void *raw_malloc_first(size_t n) {
    raw_ready();
    return raw.malloc(n);
}

noinline void raw_free_first(void *p) {
    raw_ready();
    atomic_load_explicit(&raw.free, memory_order_relaxed)(p);
}

void *raw_calloc(size_t n, size_t size) {
    raw_ready();
    return raw.calloc(n, size);
}

void *raw_memalign(size_t align, size_t n) {
    raw_ready();
    return raw.memalign(align, n);
}

void *raw_valloc(size_t n) {
    raw_ready();
    return raw.valloc ? raw.valloc(n) : raw.memalign((size_t)sysconf(_SC_PAGESIZE), n);
}

void *raw_pvalloc(size_t n) {
    raw_ready();
    if (raw.pvalloc)
        return raw.pvalloc(n);
    size_t page = (size_t)sysconf(_SC_PAGESIZE), up = (n + page - 1) & ~(page - 1);
    if (up < n) {
        errno = ENOMEM;
        return NULL;
    }
    return raw.memalign(page, up ? up : page);
}

void *raw_realloc(void *p, size_t n) {
    raw_ready();
    return raw.realloc(p, n);
}

size_t raw_usable_size_of(void *p) {
    raw_ready();
    return raw.usable ? raw.usable(p) : 0;
}

const char *raw_allocator_name(void) {
    raw_ready();
    return raw.name;
}

/* From the first allocation (tally_init_global), and again from whichever call needs glibc
 * if that failed. free is stored last: it is the "resolved" flag. Racing callers store the
 * same values. */
static noinline void glibc_resolve(void) {
    const struct link_map *m = libc_map();
    libc_fn.mallinfo2 = (struct mallinfo2(*)(void))libc_sym(m, "mallinfo2");
    libc_fn.malloc_stats = (void (*)(void))libc_sym(m, "malloc_stats");
    libc_fn.malloc_info = (int (*)(int, FILE *))libc_sym(m, "malloc_info");
    libc_fn.mallopt = (int (*)(int, int))libc_sym(m, "mallopt");
    libc_fn.malloc_trim = (int (*)(size_t))libc_sym(m, "malloc_trim");
    atomic_store_explicit(&libc_fn.free, (void (*)(void *))libc_sym(m, "__libc_free"),
                          memory_order_release);
}

void glibc_init(void) {
    if (!atomic_load_explicit(&libc_fn.free, memory_order_acquire))
        glibc_resolve();
    may_dlsym = true;
}

static inline void glibc_ready(void) {
    if (unlikely(!atomic_load_explicit(&libc_fn.free, memory_order_acquire)))
        glibc_resolve();
}


uintptr_t glibc_code_address(void) {
    glibc_ready();
    return (uintptr_t)atomic_load_explicit(&libc_fn.free, memory_order_relaxed);
}

struct mallinfo2 glibc_mallinfo2(void) {
    glibc_ready();
    struct mallinfo2 mi;
    memset(&mi, 0, sizeof mi);
    if (libc_fn.mallinfo2)
        mi = libc_fn.mallinfo2();
    return mi;
}

/* glibc (2.34 on) sets its malloc up in the first call that needs it, and that call attaches
 * main_arena to its thread without counting it: main_arena starts counted once, for the main
 * thread. In a program whose main thread the pools serve, that first call can come from two
 * workers at once (their first blocks above 512 bytes): both are attached to main_arena, it is
 * counted once, and the second to exit aborts in __malloc_arena_thread_freeres ("a->attached_
 * threads > 0"). The constructor makes the first call, on the main thread, as an ordinary
 * program's first malloc would; mallinfo2 sets up and reads, and allocates nothing. */
void glibc_malloc_setup(void) {
    (void)glibc_mallinfo2();
}

/* ---- introspection over both allocators -------------------------------------------------- */
typedef struct pools_s {
    uint64_t arena;       /* committed arena bytes: the pools' "system bytes" */
    uint64_t in_use;      /* bytes in blocks handed out */
    uint64_t free_bytes;  /* the rest of the arenas */
    uint64_t free_blocks; /* free blocks of pools in use (cached and uncarved included) */
    uint64_t class_free[NCLASSES];
} pools_t;

static void pools_get(pools_t *o) {
    struct tally_stats s;
    memset(o, 0, sizeof *o);
    if (!g.base)
        return;
    stats_collect_pools(&s); /* the callers ask glibc for its own figures */
    o->arena = s.arena_bytes;
    o->in_use = s.in_use_bytes;
    o->free_bytes = s.arena_bytes - s.in_use_bytes;
    for (unsigned c = 0; c < NCLASSES; c++) {
        o->free_blocks += s.classes[c].free_blocks;
        o->class_free[c] = s.classes[c].free_blocks;
    }
}

/* glibc's figures for its heap plus the pools: `arena` (non-mmapped bytes from the system) gains
 * the arenas, `uordblks` the blocks in use, `fordblks` the rest of the arenas, `ordblks` the free
 * pool blocks, so that arena + hblkhd is still what the allocators hold and uordblks + hblkhd
 * what the program has. */
TALLY_EXPORT struct mallinfo2 mallinfo2(void) {
    struct mallinfo2 mi = glibc_mallinfo2();
    pools_t p;
    pools_get(&p);
    mi.arena += p.arena;
    mi.uordblks += p.in_use;
    mi.fordblks += p.free_bytes;
    mi.ordblks += p.free_blocks;
    return mi;
}

/* The deprecated int version: glibc truncates the same way. */
TALLY_EXPORT struct mallinfo mallinfo(void) {
    struct mallinfo2 m = mallinfo2();
    struct mallinfo r;
    r.arena = (int)m.arena;
    r.ordblks = (int)m.ordblks;
    r.smblks = (int)m.smblks;
    r.hblks = (int)m.hblks;
    r.hblkhd = (int)m.hblkhd;
    r.usmblks = (int)m.usmblks;
    r.fsmblks = (int)m.fsmblks;
    r.uordblks = (int)m.uordblks;
    r.fordblks = (int)m.fordblks;
    r.keepcost = (int)m.keepcost;
    return r;
}

/* glibc's report of its arenas, then the pools in the same layout, then the totals of both. */
TALLY_EXPORT void malloc_stats(void) {
    glibc_ready();
    if (libc_fn.malloc_stats)
        libc_fn.malloc_stats();
    struct mallinfo2 mi = glibc_mallinfo2();
    pools_t p;
    pools_get(&p);
    flockfile(stderr);
    fprintf(stderr, "Pools (tallymalloc, requests of 1 to %zu bytes):\n", SMALL_MAX);
    fprintf(stderr, "system bytes     = %10zu\n", (size_t)p.arena);
    fprintf(stderr, "in use bytes     = %10zu\n", (size_t)p.in_use);
    fprintf(stderr, "Total (incl. mmap and pools):\n");
    fprintf(stderr, "system bytes     = %10zu\n", (size_t)(mi.arena + mi.hblkhd + p.arena));
    fprintf(stderr, "in use bytes     = %10zu\n", (size_t)(mi.uordblks + mi.hblkhd + p.in_use));
    funlockfile(stderr);
}

/* The totals after glibc's last heap, with the pools added: a line of the form
 * <TAG type="T" count="C" size="S"/> or without count. Others pass through. */
static void info_total(FILE *fp, const char *line, size_t len, const pools_t *p) {
    char tag[16], type[16];
    unsigned long long count = 0, size = 0;
    int with_count = 1;
    char buf[160];
    if (len >= sizeof buf)
        goto raw;
    memcpy(buf, line, len);
    buf[len] = '\0';
    if (sscanf(buf, "<%15[a-z] type=\"%15[a-z]\" count=\"%llu\" size=\"%llu\"/>", tag, type,
               &count, &size) != 4) {
        with_count = 0;
        if (sscanf(buf, "<%15[a-z] type=\"%15[a-z]\" size=\"%llu\"/>", tag, type, &size) != 3)
            goto raw;
    }
    if (strcmp(tag, "total") == 0 && strcmp(type, "rest") == 0) {
        count += p->free_blocks;
        size += p->free_bytes;
    } else if ((strcmp(tag, "system") == 0 && strcmp(type, "current") == 0) ||
               (strcmp(tag, "system") == 0 && strcmp(type, "max") == 0) ||
               strcmp(tag, "aspace") == 0) {
        size += p->arena; /* arenas are never returned: current and max alike */
    } else {
        goto raw;
    }
    if (with_count)
        fprintf(fp, "<%s type=\"%s\" count=\"%llu\" size=\"%llu\"/>\n", tag, type, count, size);
    else
        fprintf(fp, "<%s type=\"%s\" size=\"%llu\"/>\n", tag, type, size);
    return;
raw:
    fwrite(line, 1, len, fp);
    fputc('\n', fp);
}

/* glibc's XML with the pools as one more <heap>, after glibc's own, and the totals that follow
 * the heaps including them. The pools' <sizes> list the free blocks of each class, as glibc's
 * list its free chunks. */
TALLY_EXPORT int malloc_info(int options, FILE *fp) {
    glibc_ready();
    if (options != 0)
        return EINVAL; /* as glibc does */
    if (!libc_fn.malloc_info)
        return -1;
    char *text = NULL;
    size_t len = 0;
    FILE *mem = open_memstream(&text, &len);
    if (!mem)
        return libc_fn.malloc_info(options, fp);
    int r = libc_fn.malloc_info(options, mem);
    if (fclose(mem) != 0 || r != 0 || !text) {
        free(text);
        return r != 0 ? r : libc_fn.malloc_info(options, fp);
    }
    /* after the last </heap> (glibc's per-arena reports) come the totals */
    char *cut = NULL;
    unsigned nheaps = 0;
    for (char *s = text; (s = strstr(s, "<heap nr=")) != NULL; s++)
        nheaps++;
    for (char *s = text; (s = strstr(s, "</heap>\n")) != NULL; s++)
        cut = s + 8;
    pools_t p;
    pools_get(&p);
    if (!cut || !p.arena) {
        fwrite(text, 1, len, fp);
        free(text);
        return 0;
    }
    fwrite(text, 1, (size_t)(cut - text), fp);
    fprintf(fp, "<heap nr=\"%u\" type=\"tallymalloc-pools\">\n<sizes>\n", nheaps);
    for (unsigned c = 0; c < NCLASSES; c++)
        if (p.class_free[c])
            fprintf(fp, "  <size from=\"%zu\" to=\"%zu\" total=\"%llu\" count=\"%llu\"/>\n",
                    CLASS_SIZE(c) - ALIGNMENT + 1, CLASS_SIZE(c),
                    (unsigned long long)(p.class_free[c] * CLASS_SIZE(c)),
                    (unsigned long long)p.class_free[c]);
    fprintf(fp, "</sizes>\n<total type=\"fast\" count=\"0\" size=\"0\"/>\n");
    fprintf(fp, "<total type=\"rest\" count=\"%llu\" size=\"%llu\"/>\n",
            (unsigned long long)p.free_blocks, (unsigned long long)p.free_bytes);
    static const char *const sys[] = {"system type=\"current\"", "system type=\"max\"",
                                      "aspace type=\"total\"", "aspace type=\"mprotect\""};
    for (unsigned i = 0; i < 4; i++)
        fprintf(fp, "<%s size=\"%llu\"/>\n", sys[i], (unsigned long long)p.arena);
    fprintf(fp, "</heap>\n");
    for (char *s = cut; *s;) {
        char *nl = strchr(s, '\n');
        size_t n = nl ? (size_t)(nl - s) : strlen(s);
        info_total(fp, s, n, &p);
        s += n + (nl != NULL);
    }
    free(text);
    return 0;
}

/* glibc takes every parameter for its own heap; M_PERTURB also fills the pools' blocks as
 * glibc fills its chunks (heap.c: when they move between pools and bins, the counterpart of
 * glibc's chunks leaving and entering its bins). */
TALLY_EXPORT int mallopt(int param, int value) {
    glibc_ready();
    int r = libc_fn.mallopt ? libc_fn.mallopt(param, value) : 0;
    if (param == M_PERTURB)
        heap_set_perturb(value);
    return r;
}

/* glibc trims its heap; the pools give back the pages of every empty pool (heap_trim). */
TALLY_EXPORT int malloc_trim(size_t pad) {
    glibc_ready();
    int r = libc_fn.malloc_trim ? libc_fn.malloc_trim(pad) : 0;
    if (g.base && heap_trim() > 0)
        r = 1;
    return r;
}
