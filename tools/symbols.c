/* symbols.c: symbolization of a dump's return addresses with elfutils' libdwfl.
 *
 * Each module of the dump gets its own Dwfl session, opened at its first use: the module's file
 * is reported at the base the dump recorded, and libdwfl's standard callbacks find separate
 * debug files (by build-id under /usr/lib/debug/.build-id, or by debuglink). A file whose
 * build-id differs from the dump's (rebuilt since) is not trusted: the debug file of the dump's
 * build-id is tried instead, and failing that the frame prints as module+offset. Modules that
 * cover the same addresses in different generations (docs/FORMAT.md) are told apart by the
 * stack's generation.
 *
 * A return address is looked up at ip - 1, inside the call. Inlined calls come from the DWARF
 * scopes at that address (dwarf_getscopes, then the concrete tree above the innermost scope,
 * dwarf_getscopes_die): the innermost inlined function at the line table's
 * line, each caller at the DW_AT_call_file/DW_AT_call_line of the inlined instance below it,
 * and last the real function. C++ names are demangled with the C++ runtime's __cxa_demangle.
 * Results are cached per (address, module). */
#define _GNU_SOURCE
#include "symbols.h"

#include <dwarf.h>
#include <elfutils/libdw.h>
#include <elfutils/libdwfl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

extern char *__cxa_demangle(const char *mangled, char *buf, size_t *len, int *status);

#define MAX_INLINE 32

typedef struct falias_s {
    GElf_Addr addr;
    const char *name;
} falias_t;

typedef struct smod_s {
    bool tried, ok;
    Dwfl *dwfl;
    Dwfl_Module *mod;
    falias_t *fn; /* its function symbols by address, made when aliases are first wanted */
    size_t nfn;
    bool fn_done;
} smod_t;

typedef struct sentry_s {
    uint64_t ip;
    int module; /* -1: none */
    int nframes;
    sym_frame_t *frames;
    struct sentry_s *next;
} sentry_t;

struct symbolizer_s {
    const dump_t *d;
    smod_t *mods;
    char *debuginfo_path;
    Dwfl_Callbacks cb;
    sentry_t **table;
    size_t cap, used;
    /* interned strings */
    char **strs;
    size_t nstrs, cap_strs;
    bool want_aliases;
};

void sym_want_aliases(symbolizer_t *s) {
    s->want_aliases = true;
}

const char *sym_basename(const char *path) {
    const char *s = path ? strrchr(path, '/') : NULL;
    return s ? s + 1 : path;
}

/* A copy of str kept until sym_free; names from binaries are kept escaped (text_shown), since
 * they are only ever shown. raw: str is already safe (a list of escaped names). */
static const char *intern_as(symbolizer_t *s, const char *str, bool raw) {
    if (!str)
        return NULL;
    /* A linear intern would be slow; names repeat per address only, so plain copies do. */
    if (s->nstrs == s->cap_strs) {
        size_t cap = s->cap_strs ? s->cap_strs * 2 : 256;
        char **n = realloc(s->strs, cap * sizeof *n);
        if (!n)
            return NULL;
        s->strs = n;
        s->cap_strs = cap;
    }
    char *c = raw ? strdup(str) : text_shown(str);
    if (c)
        s->strs[s->nstrs++] = c;
    return c;
}

static const char *intern(symbolizer_t *s, const char *str) {
    return intern_as(s, str, false);
}

static const char *demangled(symbolizer_t *s, const char *name) {
    if (!name)
        return NULL;
    if (name[0] == '_' && name[1] == 'Z') {
        int status = 0;
        char *dm = __cxa_demangle(name, NULL, NULL, &status);
        if (dm && status == 0) {
            const char *r = intern(s, dm);
            free(dm);
            return r;
        }
        free(dm);
    }
    return intern(s, name);
}

symbolizer_t *sym_new(const dump_t *d, const char *extra_debug_dir) {
    symbolizer_t *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    s->d = d;
    s->mods = calloc(d->nmodules ? d->nmodules : 1, sizeof *s->mods);
    /* libdwfl's default path, and the extra directory: ":.debug:/usr/lib/debug[:DIR]" */
    size_t n = 64 + (extra_debug_dir ? strlen(extra_debug_dir) : 0);
    s->debuginfo_path = malloc(n);
    if (!s->mods || !s->debuginfo_path) {
        sym_free(s);
        return NULL;
    }
    snprintf(s->debuginfo_path, n, ":.debug:/usr/lib/debug%s%s", extra_debug_dir ? ":" : "",
             extra_debug_dir ? extra_debug_dir : "");
    s->cb.find_elf = dwfl_build_id_find_elf;
    s->cb.find_debuginfo = dwfl_standard_find_debuginfo;
    s->cb.section_address = dwfl_offline_section_address;
    s->cb.debuginfo_path = &s->debuginfo_path;
    return s;
}

void sym_free(symbolizer_t *s) {
    if (!s)
        return;
    for (size_t i = 0; s->mods && i < s->d->nmodules; i++) {
        if (s->mods[i].dwfl)
            dwfl_end(s->mods[i].dwfl);
        free(s->mods[i].fn);
    }
    for (size_t i = 0; i < s->cap; i++)
        for (sentry_t *e = s->table[i], *n; e; e = n) {
            n = e->next;
            free(e->frames);
            free(e);
        }
    for (size_t i = 0; i < s->nstrs; i++)
        free(s->strs[i]);
    free(s->strs);
    free(s->table);
    free(s->mods);
    free(s->debuginfo_path);
    free(s);
}

int sym_module_of(const dump_t *d, uint64_t ip, uint32_t gen) {
    int best = -1;
    for (size_t i = 0; i < d->nmodules; i++) {
        const dmodule_t *m = &d->modules[i];
        if (ip < m->lo || ip >= m->hi || gen < m->gen_lo || gen > m->gen_hi)
            continue;
        if (best < 0 || (d->modules[best].unloaded && !m->unloaded))
            best = (int)i; /* FORMAT.md: exactly one matches; prefer a loaded one if not */
    }
    return best;
}

static bool build_id_matches(Dwfl_Module *mod, const char *want) {
    const unsigned char *bits;
    GElf_Addr vaddr;
    int len = dwfl_module_build_id(mod, &bits, &vaddr);
    if (!want)
        return true; /* the dump has none to compare */
    if (len <= 0 || (size_t)len * 2 != strlen(want))
        return false;
    for (int i = 0; i < len; i++) {
        char hex[3];
        snprintf(hex, sizeof hex, "%02x", bits[i]);
        if (memcmp(hex, want + 2 * i, 2) != 0)
            return false;
    }
    return true;
}

static Dwfl_Module *report(symbolizer_t *s, smod_t *sm, const dmodule_t *m, const char *file) {
    if (sm->dwfl)
        dwfl_end(sm->dwfl);
    sm->dwfl = dwfl_begin(&s->cb);
    if (!sm->dwfl)
        return NULL;
    dwfl_report_begin(sm->dwfl);
    Dwfl_Module *mod = dwfl_report_elf(sm->dwfl, sym_basename(m->path), file, -1, m->base, false);
    dwfl_report_end(sm->dwfl, NULL, NULL);
    return mod;
}

static smod_t *open_module(symbolizer_t *s, int i) {
    smod_t *sm = &s->mods[i];
    if (sm->tried)
        return sm->ok ? sm : NULL;
    sm->tried = true;
    const dmodule_t *m = &s->d->modules[i];
    Dwfl_Module *mod = access(m->path, R_OK) == 0 ? report(s, sm, m, m->path) : NULL;
    if (mod && !build_id_matches(mod, m->build_id))
        mod = NULL; /* rebuilt since the dump: its addresses would lie */
    if (!mod && m->build_id && strlen(m->build_id) > 2) {
        /* The debug file of the dump's build-id has the symbols and the DWARF at the same
         * addresses. */
        char *dirs = strdup(s->debuginfo_path), *save = NULL;
        for (char *dir = dirs ? strtok_r(dirs, ":", &save) : NULL; dir && !mod;
             dir = strtok_r(NULL, ":", &save)) {
            if (dir[0] != '/')
                continue;
            char path[4096];
            snprintf(path, sizeof path, "%s/.build-id/%.2s/%s.debug", dir, m->build_id,
                     m->build_id + 2);
            if (access(path, R_OK) == 0) {
                mod = report(s, sm, m, path);
                if (mod && !build_id_matches(mod, m->build_id))
                    mod = NULL;
            }
        }
        free(dirs);
    }
    if (!mod) {
        if (sm->dwfl)
            dwfl_end(sm->dwfl);
        sm->dwfl = NULL;
        return NULL;
    }
    sm->mod = mod;
    sm->ok = true;
    return sm;
}

static const char *die_linkage_name(Dwarf_Die *die) {
    Dwarf_Attribute attr;
    const char *name = dwarf_formstring(dwarf_attr_integrate(die, DW_AT_linkage_name, &attr));
    if (!name)
        name = dwarf_formstring(dwarf_attr_integrate(die, DW_AT_MIPS_linkage_name, &attr));
    if (!name)
        name = dwarf_diename(die);
    return name;
}

/* A frame's two names: demangled for people, and as valgrind names it for suppressions. */
static void name_frame(symbolizer_t *s, sym_frame_t *f, const char *raw, const char *supp) {
    f->function = demangled(s, raw);
    f->mangled = supp ? intern(s, supp) : NULL;
}

static int by_addr(const void *a, const void *b) {
    const falias_t *x = a, *y = b;
    return x->addr < y->addr ? -1 : x->addr > y->addr;
}

/* Every other name of the function symbol at start, '\n'-separated ("strdup" for "__strdup"):
 * tools that read the same symbol table pick different aliases (suppressions). */
static const char *aliases_of(symbolizer_t *s, smod_t *sm, GElf_Addr start, const char *name) {
    if (!sm->fn_done) {
        sm->fn_done = true;
        int n = dwfl_module_getsymtab(sm->mod);
        sm->fn = n > 0 ? malloc((size_t)n * sizeof *sm->fn) : NULL;
        for (int i = 0; sm->fn && i < n; i++) {
            GElf_Sym sym;
            GElf_Addr addr;
            const char *nm = dwfl_module_getsym_info(sm->mod, i, &sym, &addr, NULL, NULL, NULL);
            if (nm && *nm && (GELF_ST_TYPE(sym.st_info) == STT_FUNC ||
                              GELF_ST_TYPE(sym.st_info) == STT_GNU_IFUNC))
                sm->fn[sm->nfn++] = (falias_t){addr, nm};
        }
        if (sm->fn)
            qsort(sm->fn, sm->nfn, sizeof *sm->fn, by_addr);
    }
    size_t lo = 0, hi = sm->nfn;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (sm->fn[mid].addr < start)
            lo = mid + 1;
        else
            hi = mid;
    }
    char buf[2048];
    size_t len = 0;
    for (size_t i = lo; i < sm->nfn && sm->fn[i].addr == start; i++) {
        if (name && strcmp(sm->fn[i].name, name) == 0)
            continue;
        char *shown = text_shown(sm->fn[i].name);
        int w = shown ? snprintf(buf + len, sizeof buf - len, "%s%s", len ? "\n" : "", shown) : -1;
        free(shown);
        if (w < 0 || (size_t)w >= sizeof buf - len)
            break;
        len += (size_t)w;
    }
    return len ? intern_as(s, buf, true) : NULL;
}

/* The frames at address a (ip - 1) of an open module. */
static int resolve(symbolizer_t *s, smod_t *sm, const dmodule_t *m, uint64_t ip,
                   sym_frame_t *out, int max) {
    Dwarf_Addr a = ip - 1;
    GElf_Off off = 0;
    GElf_Sym sym;
    const char *symname = dwfl_module_addrinfo(sm->mod, a, &off, &sym, NULL, NULL, NULL);
    const char *file = NULL;
    int line = 0;
    Dwfl_Line *l = dwfl_module_getsrc(sm->mod, a);
    if (l)
        file = dwfl_lineinfo(l, NULL, &line, NULL, NULL, NULL);
    sym_frame_t base = {.module = m->shown, .offset = ip - m->base, .ip = ip};
    const char *aliases = symname && s->want_aliases ? aliases_of(s, sm, a - off, symname) : NULL;
    int n = 0;
    Dwarf_Addr bias = 0;
    Dwarf_Die *cudie = dwfl_module_addrdie(sm->mod, a, &bias);
    Dwarf_Die *scopes = NULL;
    int nscopes = cudie ? dwarf_getscopes(cudie, a - bias, &scopes) : 0;
    if (nscopes > 0) {
        /* dwarf_getscopes climbs from an inlined instance into its abstract origin's
         * definition; the chain of inlined instances that holds the address is the concrete
         * DIE tree above the innermost scope (as eu-addr2line -i reads it). */
        Dwarf_Die inner;
        Dwarf_Addr dbias;
        Dwarf *dw = dwfl_module_getdwarf(sm->mod, &dbias);
        bool found = dw && dwarf_offdie(dw, dwarf_dieoffset(&scopes[0]), &inner) != NULL;
        free(scopes);
        scopes = NULL;
        nscopes = found ? dwarf_getscopes_die(&inner, &scopes) : 0;
        if (nscopes < 0)
            nscopes = 0;
    }
    Dwarf_Files *files = NULL;
    size_t nfiles = 0;
    if (cudie && dwarf_getsrcfiles(cudie, &files, &nfiles) != 0)
        files = NULL;
    const char *cur_file = file;
    unsigned cur_line = line > 0 ? (unsigned)line : 0;
    bool done = false;
    for (int i = 0; i < nscopes && n < max - 1 && !done; i++) {
        Dwarf_Die *die = &scopes[i];
        int tag = dwarf_tag(die);
        if (tag != DW_TAG_inlined_subroutine && tag != DW_TAG_subprogram &&
            tag != DW_TAG_entry_point)
            continue;
        sym_frame_t f = base;
        f.file = intern(s, cur_file);
        f.line = cur_line;
        if (tag == DW_TAG_inlined_subroutine) {
            name_frame(s, &f, die_linkage_name(die), dwarf_diename(die));
            f.inlined = true;
            out[n++] = f;
            /* The caller's location is where this instance was inlined. */
            Dwarf_Attribute attr;
            Dwarf_Word fidx = 0, cl = 0;
            cur_file = NULL;
            cur_line = 0;
            if (dwarf_formudata(dwarf_attr(die, DW_AT_call_file, &attr), &fidx) == 0 && files)
                cur_file = dwarf_filesrc(files, fidx, NULL, NULL);
            if (dwarf_formudata(dwarf_attr(die, DW_AT_call_line, &attr), &cl) == 0)
                cur_line = (unsigned)cl;
        } else {
            /* The real function: the ELF symbol's name has the full C++ signature. */
            const char *raw = symname ? symname : die_linkage_name(die);
            name_frame(s, &f, raw, raw);
            f.aliases = aliases;
            out[n++] = f;
            done = true;
        }
    }
    free(scopes);
    if (!done) {
        sym_frame_t f = base;
        name_frame(s, &f, symname, symname);
        f.aliases = aliases;
        f.file = intern(s, cur_file);
        f.line = cur_line;
        out[n++] = f;
    }
    return n;
}

int sym_lookup(symbolizer_t *s, uint64_t ip, uint32_t gen, sym_frame_t *out, int max) {
    if (dump_ip_is_py(ip)) {
        if (max < 1)
            return 0;
        uint32_t c = dump_py_code(ip);
        const dpycode_t *pc = c < s->d->npycodes ? &s->d->pycodes[c] : NULL;
        out[0] = (sym_frame_t){.ip = ip, .python = true, .line = dump_py_line(ip)};
        if (pc) {
            out[0].function = pc->name_shown;
            out[0].mangled = pc->name;
            out[0].file = pc->file_shown;
        }
        return 1;
    }
    int mi = sym_module_of(s->d, ip, gen);
    size_t h = (size_t)((ip * 0x9E3779B97F4A7C15ULL + (uint64_t)(mi + 1)) >> 20);
    if (s->cap) {
        for (sentry_t *e = s->table[h & (s->cap - 1)]; e; e = e->next)
            if (e->ip == ip && e->module == mi) {
                int k = e->nframes < max ? e->nframes : max;
                memcpy(out, e->frames, (size_t)k * sizeof *out);
                return k;
            }
    }
    sym_frame_t tmp[MAX_INLINE];
    int n = 0;
    smod_t *sm = mi >= 0 ? open_module(s, mi) : NULL;
    if (sm)
        n = resolve(s, sm, &s->d->modules[mi], ip, tmp, MAX_INLINE);
    if (n == 0) {
        tmp[0] = (sym_frame_t){.ip = ip};
        if (mi >= 0) {
            tmp[0].module = s->d->modules[mi].shown;
            tmp[0].offset = ip - s->d->modules[mi].base;
        }
        n = 1;
    }
    /* remember it */
    if ((s->used + 1) * 2 > s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 4096;
        sentry_t **t = calloc(cap, sizeof *t);
        if (t) {
            for (size_t i = 0; i < s->cap; i++)
                for (sentry_t *e = s->table[i], *nx; e; e = nx) {
                    nx = e->next;
                    size_t hh = (size_t)((e->ip * 0x9E3779B97F4A7C15ULL + (uint64_t)(e->module + 1)) >> 20);
                    e->next = t[hh & (cap - 1)];
                    t[hh & (cap - 1)] = e;
                }
            free(s->table);
            s->table = t;
            s->cap = cap;
        }
    }
    sentry_t *e = s->cap ? malloc(sizeof *e) : NULL;
    if (e) {
        e->frames = malloc((size_t)n * sizeof *e->frames);
        if (e->frames) {
            memcpy(e->frames, tmp, (size_t)n * sizeof *tmp);
            e->ip = ip;
            e->module = mi;
            e->nframes = n;
            e->next = s->table[h & (s->cap - 1)];
            s->table[h & (s->cap - 1)] = e;
            s->used++;
        } else {
            free(e);
        }
    }
    int k = n < max ? n : max;
    memcpy(out, tmp, (size_t)k * sizeof *out);
    return k;
}
