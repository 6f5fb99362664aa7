/* suppress.c: leak suppressions, LeakSanitizer's `leak:` lines and valgrind's Memcheck:Leak
 * blocks (suppress.h). */
#include "suppress.h"

#include "dumpfile.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Shell-style: `*` any run of characters, `?` one; the whole of s must match. */
static bool glob_match(const char *p, const char *s) {
    const char *star = NULL, *resume = NULL;
    while (*s) {
        if (*p == '*') {
            star = p++;
            resume = s;
        } else if (*p == '?' || *p == *s) {
            p++;
            s++;
        } else if (star) {
            p = star + 1;
            s = ++resume;
        } else {
            return false;
        }
    }
    while (*p == '*')
        p++;
    return *p == '\0';
}

/* LeakSanitizer's: a substring match unless `^`/`$` anchor it; `*` any run of characters. */
static bool lsan_match(const char *pat, const char *s) {
    if (!s)
        return false;
    size_t n = strlen(pat);
    bool start = n && pat[0] == '^', end = n > (size_t)start && pat[n - 1] == '$';
    char g[1024];
    snprintf(g, sizeof g, "%s%.*s%s", start ? "" : "*", (int)(n - start - end), pat + start,
             end ? "" : "*");
    return glob_match(g, s);
}

static const char *const alloc_fns[] = {
    "malloc", "calloc", "realloc", "reallocarray", "memalign", "posix_memalign", "aligned_alloc",
    "valloc", "pvalloc", "_Znwm", "_Znam", "_ZnwmRKSt9nothrow_t", "_ZnamRKSt9nothrow_t",
    "_ZnwmSt11align_val_t", "_ZnamSt11align_val_t", "_ZnwmSt11align_val_tRKSt9nothrow_t",
    "_ZnamSt11align_val_tRKSt9nothrow_t", "operator new(unsigned long)",
    "operator new[](unsigned long)", "free", "cfree", "_ZdlPv", "_ZdaPv", "_ZdlPvm", "_ZdaPvm",
    "operator delete(void*)", "operator delete[](void*)", "operator delete(void*, unsigned long)",
    "operator delete[](void*, unsigned long)", NULL};

static bool is_allocator(const char *name) {
    for (const char *const *a = alloc_fns; *a; a++)
        if (strcmp(name, *a) == 0)
            return true;
    return false;
}

/* A suppression line that names only an allocation function (memcheck's stacks start there). */
static bool names_allocator(const char *line) {
    if (strncmp(line, "fun:", 4) != 0)
        return false;
    for (const char *const *a = alloc_fns; *a; a++)
        if (glob_match(line + 4, *a))
            return true;
    return false;
}

/* s without its symbol version ("pthread_create@@GLIBC_2.34" -> "pthread_create") in buf. */
static const char *unversioned(const char *s, char *buf, size_t cap) {
    const char *at = strchr(s, '@');
    if (!at)
        return s;
    snprintf(buf, cap, "%.*s", (int)(at - s), s);
    return buf;
}

/* A fun: pattern against a name: as is, and both without their symbol versions (one address
 * can have several: valgrind may name pthread_create@@GLIBC_2.34 what elfutils names
 * pthread_create@GLIBC_2.2.5). glibc's clone3 is "clone" to valgrind, which does not offer
 * clone3, so that glibc falls back to clone under it. */
static bool fun_match(const char *pat, const char *name) {
    if (!name)
        return false;
    if (glob_match(pat, name))
        return true;
    char pb[1024], nb[1024];
    const char *p = unversioned(pat, pb, sizeof pb), *n = unversioned(name, nb, sizeof nb);
    if (glob_match(p, n))
        return true;
    return (strcmp(n, "clone3") == 0 || strcmp(n, "__clone3") == 0) && glob_match(p, "clone");
}

static bool frame_match(const char *line, const sym_frame_t *f) {
    if (strncmp(line, "fun:", 4) == 0) {
        if (strcmp(line + 4, "(below main)") == 0) /* valgrind's name for what starts main */
            return f->function && (strstr(f->function, "__libc_start") || strcmp(f->function, "_start") == 0);
        if (fun_match(line + 4, f->mangled) || fun_match(line + 4, f->function))
            return true;
        for (const char *a = f->aliases; a && *a;) { /* the symbol's other names */
            size_t len = strcspn(a, "\n");
            char one[1024];
            snprintf(one, sizeof one, "%.*s", (int)len, a);
            if (fun_match(line + 4, one))
                return true;
            a += len + (a[len] == '\n');
        }
        return false;
    }
    if (strncmp(line, "obj:", 4) == 0)
        return f->module && glob_match(line + 4, f->module);
    if (strncmp(line, "src:", 4) == 0 && f->file) { /* src:FILE or src:FILE:LINE */
        char at[4096];
        snprintf(at, sizeof at, "%s:%u", sym_basename(f->file), f->line);
        return glob_match(line + 4, at) || glob_match(line + 4, sym_basename(f->file));
    }
    return false;
}

/* valgrind's matching: entry i against frame j, "..." for zero or more frames. */
static bool frames_match(char **e, size_t ne, const sym_frame_t *fr, int n) {
    if (ne == 0)
        return true;
    if (strcmp(e[0], "...") == 0) {
        for (int k = 0; k <= n; k++)
            if (frames_match(e + 1, ne - 1, fr + k, n - k))
                return true;
        return false;
    }
    return n > 0 && frame_match(e[0], &fr[0]) && frames_match(e + 1, ne - 1, fr + 1, n - 1);
}

static bool valgrind_match(const supp_t *sp, const sym_frame_t *fr, int n);

supp_t *supp_match_error(supps_t *s, const sym_frame_t *fr, int n, const char *mkind) {
    for (size_t i = 0; i < s->n; i++) {
        supp_t *sp = &s->v[i];
        if (sp->kind && glob_match(sp->kind, mkind) && valgrind_match(sp, fr, n))
            return sp;
    }
    return NULL;
}

/* memcheck's stacks start in its malloc or free, ours at its caller; an allocation function can
 * still lead ours where it was inlined (ld.so's calloc wrapper) */
static bool valgrind_match(const supp_t *sp, const sym_frame_t *fr, int n) {
    size_t skip = 0;
    int fskip = 0;
    while (skip < sp->nframes && names_allocator(sp->frames[skip]))
        skip++;
    while (fskip < n && fr[fskip].mangled && is_allocator(fr[fskip].mangled))
        fskip++;
    return frames_match(sp->frames + skip, sp->nframes - skip, fr + fskip, n - fskip);
}

supp_t *supp_match(supps_t *s, const sym_frame_t *fr, int n, unsigned kind) {
    for (size_t i = 0; i < s->n; i++) {
        supp_t *sp = &s->v[i];
        if (sp->kind || (kind < DKIND_N && !(sp->kinds >> kind & 1)))
            continue;
        if (sp->lsan) {
            for (int k = 0; k < n; k++)
                if (lsan_match(sp->frames[0], fr[k].function) ||
                    lsan_match(sp->frames[0], fr[k].file) || lsan_match(sp->frames[0], fr[k].module))
                    return sp;
            continue;
        }
        if (valgrind_match(sp, fr, n))
            return sp;
    }
    return NULL;
}

/* ---- reading ---------------------------------------------------------------------------------- */
static char *trim(char *s) {
    while (isspace((unsigned char)*s))
        s++;
    size_t n = strlen(s);
    while (n && isspace((unsigned char)s[n - 1]))
        s[--n] = '\0';
    return s;
}

static bool add(supps_t *o, supp_t *sp) {
    supp_t *v = realloc(o->v, (o->n + 1) * sizeof *v);
    if (!v)
        return false;
    o->v = v;
    o->v[o->n++] = *sp;
    return true;
}

static bool push_frame(supp_t *sp, const char *f) {
    char **v = realloc(sp->frames, (sp->nframes + 1) * sizeof *v);
    if (!v)
        return false;
    sp->frames = v;
    return (sp->frames[sp->nframes++] = strdup(f)) != NULL;
}

static void free_one(supp_t *sp) {
    for (size_t i = 0; i < sp->nframes; i++)
        free(sp->frames[i]);
    free(sp->frames);
    free(sp->name);
    free(sp->kind);
}

static bool parse_kinds(const char *s, unsigned *out) {
    unsigned bits = 0;
    char buf[256];
    snprintf(buf, sizeof buf, "%s", s);
    for (char *save = NULL, *w = strtok_r(buf, ", ", &save); w; w = strtok_r(NULL, ", ", &save)) {
        if (strcmp(w, "all") == 0)
            bits |= (1u << DKIND_N) - 1;
        else if (strcmp(w, "definite") == 0)
            bits |= 1u << DKIND_DEFINITE;
        else if (strcmp(w, "indirect") == 0)
            bits |= 1u << DKIND_INDIRECT;
        else if (strcmp(w, "possible") == 0)
            bits |= 1u << DKIND_POSSIBLE;
        else if (strcmp(w, "reachable") == 0)
            bits |= 1u << DKIND_REACHABLE;
        else if (strcmp(w, "none") != 0)
            return false;
    }
    *out = bits;
    return true;
}

bool supp_load(const char *path, supps_t *out, char *err, size_t errlen) {
    memset(out, 0, sizeof *out);
    FILE *f = fopen(path, "r");
    if (!f) {
        snprintf(err, errlen, "%s: cannot read the suppressions: %s", path, strerror(errno));
        return false;
    }
    char line[4096];
    unsigned lineno = 0;
    bool in_block = false, ok = true;
    unsigned state = 0; /* in a block: 0 wants the name, 1 the tool:kind, 2 kinds or frames */
    supp_t cur = {0};
    bool cur_leak = false;
    const char *why = NULL;
    while (ok && fgets(line, sizeof line, f)) {
        lineno++;
        if (!strchr(line, '\n') && !feof(f)) {
            why = "line too long";
            ok = false;
            break;
        }
        char *s = trim(line);
        if (*s == '\0' || *s == '#')
            continue;
        if (!in_block) {
            if (strcmp(s, "{") == 0) {
                in_block = true;
                state = 0;
                memset(&cur, 0, sizeof cur);
                cur.kinds = (1u << DKIND_N) - 1;
            } else if (strncmp(s, "leak:", 5) == 0 && s[5]) {
                supp_t sp = {.lsan = true, .kinds = (1u << DKIND_N) - 1};
                ok = (sp.name = strdup(s)) && push_frame(&sp, s + 5) && add(out, &sp);
                if (!ok) {
                    free_one(&sp);
                    why = "out of memory";
                }
            } else {
                why = "want leak:PATTERN (LeakSanitizer) or a { ... } block (valgrind)";
                ok = false;
            }
            continue;
        }
        if (strcmp(s, "}") == 0) {
            in_block = false;
            if (state < 2) {
                why = "a block without a name and a Tool:kind line";
                ok = false;
            } else if (cur_leak && cur.nframes == 0) {
                why = "a Memcheck block without frames";
                ok = false;
            } else if (cur_leak) {
                ok = add(out, &cur);
                if (ok)
                    memset(&cur, 0, sizeof cur);
                else
                    why = "out of memory";
            }
            free_one(&cur);
            memset(&cur, 0, sizeof cur);
            continue;
        }
        if (state == 0) {
            cur.name = strdup(s);
            state = 1;
        } else if (state == 1) {
            if (!strchr(s, ':')) {
                why = "want Tool:kind (Memcheck:Leak) after the name";
                ok = false;
            }
            cur_leak = strcmp(s, "Memcheck:Leak") == 0;
            if (!cur_leak && strncmp(s, "Memcheck:", 9) == 0 &&
                (strcmp(s + 9, "Free") == 0 || strncmp(s + 9, "Addr", 4) == 0)) {
                cur_leak = true; /* kept: a heap error's, as a leak's is */
                if (!(cur.kind = strdup(s + 9))) {
                    why = "out of memory";
                    ok = false;
                }
            }
            state = 2;
        } else if (strncmp(s, "match-leak-kinds:", 17) == 0) {
            if (!parse_kinds(trim(s + 17), &cur.kinds)) {
                why = "match-leak-kinds: want definite, indirect, possible, reachable, all or none";
                ok = false;
            }
        } else if (strncmp(s, "fun:", 4) == 0 || strncmp(s, "obj:", 4) == 0 ||
                   strncmp(s, "src:", 4) == 0 || strcmp(s, "...") == 0) {
            if (!push_frame(&cur, s)) {
                why = "out of memory";
                ok = false;
            }
        } else if (cur_leak) {
            why = "want fun:, obj:, src: or ... in a Memcheck block";
            ok = false;
        }
    }
    if (ok && in_block) {
        why = "a block that does not end (no })";
        ok = false;
    }
    fclose(f);
    if (!ok) {
        free_one(&cur);
        snprintf(err, errlen, "%s:%u: %s", path, lineno, why ? why : "cannot be read");
        supp_free(out);
    }
    return ok;
}

void supp_free(supps_t *s) {
    for (size_t i = 0; i < s->n; i++)
        free_one(&s->v[i]);
    free(s->v);
    memset(s, 0, sizeof *s);
}
