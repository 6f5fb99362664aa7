/* errors.c: `tally errors DUMP`, the heap errors TALLY_CHECK found (the dump's `error` records),
 * in memcheck's words and shape: the headline, the stack of the call, what the address is, the
 * stacks of the block's free and allocation; then memcheck's ERROR SUMMARY and a count per
 * kind. Also `--json`, valgrind-format suppressions and `--error-exitcode`. */
#include "report.h"
#include "suppress.h"

#include <stdlib.h>
#include <string.h>

/* memcheck's suppression kind of an error: Free, or AddrN for a write of N bytes (the largest of
 * 16, 8, 4, 2, 1 that the changed bytes cover) */
static const char *memcheck_kind(const derror_t *e, char buf[16]) {
    if (e->kind == DERR_INVALID_FREE || e->kind == DERR_DOUBLE_FREE || e->kind == DERR_MISMATCHED)
        return "Free";
    unsigned n = 16;
    while (n > 1 && e->len < n)
        n /= 2;
    snprintf(buf, 16, "Addr%u", n);
    return buf;
}

const char *error_headline(const derror_t *e, char buf[64]) {
    switch (e->kind) {
    case DERR_MISMATCHED: return "Mismatched free() / delete / delete []";
    case DERR_OVERRUN:
    case DERR_UNDERRUN:
    case DERR_WRITE_AFTER_FREE:
        snprintf(buf, 64, "Invalid write of size %u", e->len ? e->len : 1);
        return buf;
    default: return "Invalid free() / delete / delete[] / realloc()";
    }
}

/* the call, as the first line of its stack names it */
static const char *call_text(unsigned call) {
    static const char *const t[DCALL_N] = {"free()",     "operator delete()",
                                           "operator delete[]()", "realloc()",
                                           NULL,         NULL,
                                           "malloc_usable_size()"};
    return call < DCALL_N ? t[call] : NULL;
}

/* where a write was seen, when it was not at the call that wrote it (we see writes late) */
const char *error_seen_text(const derror_t *e) {
    if (e->kind != DERR_OVERRUN && e->kind != DERR_UNDERRUN && e->kind != DERR_WRITE_AFTER_FREE)
        return NULL;
    switch (e->call) {
    case DCALL_QUARANTINE: return "seen when the block left the quarantine, at a later free";
    case DCALL_SCAN: return "seen by the check of every block at exit or at a dump";
    case DCALL_REALLOC: return "seen when the block was reallocated";
    default: return "seen when the block was freed";
    }
}

/* "Address 0x... is 8 bytes after a block of size 24 alloc'd" */
void error_address_text(char *out, size_t cap, const derror_t *e) {
    char a[32], b[32];
    if (e->state == DSTATE_ALLOC || e->state == DSTATE_FREE) {
        const char *where;
        uint64_t k;
        if (e->offset < 0) {
            where = "before";
            k = (uint64_t)-e->offset;
        } else if ((uint64_t)e->offset >= e->size && !(e->offset == 0 && e->size == 0)) {
            where = "after";
            k = (uint64_t)e->offset - e->size;
        } else {
            where = "inside";
            k = (uint64_t)e->offset;
        }
        snprintf(out, cap, "Address %#llx is %s bytes %s a block of size %s %s",
                 (unsigned long long)e->addr, fmt_count(a, (double)k), where,
                 fmt_count(b, (double)e->size), e->state == DSTATE_ALLOC ? "alloc'd" : "free'd");
    } else if (e->state == DSTATE_STACK) {
        snprintf(out, cap, "Address %#llx is on a thread's stack", (unsigned long long)e->addr);
    } else if (e->kind == DERR_DOUBLE_FREE) {
        snprintf(out, cap, "Address %#llx was freed before, and its block has left the "
                           "quarantine (no stacks are kept after that)",
                 (unsigned long long)e->addr);
    } else {
        snprintf(out, cap, "Address %#llx is not stack'd, malloc'd or (recently) free'd",
                 (unsigned long long)e->addr);
    }
}

static const dsite_t *site_of(const dump_t *d, uint32_t ref) {
    return ref ? &d->sites[ref - 1] : NULL;
}

static void stack_or(FILE *f, symbolizer_t *sym, const dump_t *d, uint32_t ref,
                     const char *none) {
    if (ref)
        print_stack(f, sym, d, site_of(d, ref), "   ");
    else
        fprintf(f, "   (%s)\n", none);
}

static void print_error(FILE *f, symbolizer_t *sym, const dump_t *d, const derror_t *e) {
    char h[64], addr[256];
    fprintf(f, "%s\n", error_headline(e, h));
    const char *seen = error_seen_text(e), *call = call_text(e->call);
    if (seen)
        fprintf(f, "   (%s%s%s)\n", seen, e->where && call ? ": " : "",
                e->where && call ? call : "");
    else if (call)
        fprintf(f, "   in %s\n", call);
    if (e->where)
        print_stack(f, sym, d, site_of(d, e->where), "   ");
    else if (!seen)
        fprintf(f, "   (no stack: the call came before the profiler started, or from inside "
                   "the library)\n");
    error_address_text(addr, sizeof addr, e);
    fprintf(f, " %s\n", addr);
    if (e->state == DSTATE_FREE) {
        stack_or(f, sym, d, e->free, "the free's stack is not known");
        fprintf(f, " Block was alloc'd at\n");
        stack_or(f, sym, d, e->alloc, "no stack: allocated before the profiler started");
    } else if (e->state == DSTATE_ALLOC) {
        stack_or(f, sym, d, e->alloc, "no stack: allocated before the profiler started");
    }
}

static void json_stack(FILE *f, symbolizer_t *sym, const dump_t *d, const char *key,
                       uint32_t ref, bool *first) {
    json_key(f, key, first);
    if (!ref) {
        fputs("null", f);
        return;
    }
    sym_frame_t fr[TOOL_MAX_FRAMES];
    int n = site_stack(sym, d, site_of(d, ref), fr, TOOL_MAX_FRAMES);
    json_frames(f, fr, n);
}

int cmd_errors(const dump_t *d, symbolizer_t *sym, const errors_opts_t *o) {
    FILE *f = o->out ? o->out : stdout;
    if (!d->check) {
        tool_error("%s: no heap checks in this dump (run the program with `tally run --check`, "
                   "or TALLY_CHECK=1)",
                   d->path_shown);
        return 2;
    }
    bool *sup = calloc(d->nerrors + 1, sizeof *sup);
    if (!sup) {
        tool_error("out of memory");
        return 1;
    }
    uint64_t sup_errors = 0, sup_contexts = 0;
    if (o->suppressions) {
        supps_t s;
        char err[512];
        if (!supp_load(o->suppressions, &s, err, sizeof err)) {
            tool_error("%s", err);
            free(sup);
            return 2;
        }
        sym_want_aliases(sym); /* before any frame is symbolized: frames are cached */
        for (size_t i = 0; i < d->nerrors; i++) {
            const derror_t *e = &d->errors[i];
            char kb[16];
            const char *mk = memcheck_kind(e, kb);
            sym_frame_t fr[TOOL_MAX_FRAMES];
            supp_t *sp = NULL;
            /* the bad call's stack; a write seen later also by the block's allocation */
            uint32_t refs[2] = {e->where, error_seen_text(e) ? e->alloc : 0};
            for (unsigned k = 0; k < 2 && !sp; k++) {
                if (!refs[k])
                    continue;
                int nf = site_stack_all(sym, d, site_of(d, refs[k]), fr, TOOL_MAX_FRAMES);
                sp = supp_match_error(&s, fr, nf, mk);
            }
            if (sp) {
                sup[i] = true;
                sp->records++;
                sup_errors += e->count;
                sup_contexts++;
            }
        }
        supp_free(&s);
    }
    uint64_t errors = 0, contexts = 0, by_kind[DERR_N] = {0};
    for (size_t i = 0; i < d->nerrors; i++)
        if (!sup[i]) {
            errors += d->errors[i].count;
            contexts++;
            by_kind[d->errors[i].kind] += d->errors[i].count;
        }
    /* errors beyond the contexts the library could keep are counted in the totals only */
    uint64_t listed = errors + sup_errors;
    uint64_t unlisted = d->check_errors > listed ? d->check_errors - listed : 0;
    if (o->json) {
        bool first = true;
        fputc('{', f);
        json_num(f, "tally_json", 1, &first);
        json_key(f, "command", &first);
        json_str(f, "errors");
        json_dump_info(f, d, &first);
        json_key(f, "summary", &first);
        bool fi = true;
        fputc('{', f);
        json_num(f, "errors", (double)(errors + unlisted), &fi);
        json_num(f, "contexts", (double)contexts, &fi);
        json_num(f, "suppressed_errors", (double)sup_errors, &fi);
        json_num(f, "suppressed_contexts", (double)sup_contexts, &fi);
        json_num(f, "unlisted_errors", (double)unlisted, &fi);
        json_num(f, "quarantine_bytes", (double)d->check_quarantine, &fi);
        json_key(f, "by_kind", &fi);
        bool fk = true;
        fputc('{', f);
        for (unsigned k = 0; k < DERR_N; k++)
            json_num(f, derr_names[k], (double)by_kind[k], &fk);
        fputs("}}", f);
        json_key(f, "errors", &first);
        fputc('[', f);
        bool fe = true;
        for (size_t i = 0; i < d->nerrors; i++) {
            const derror_t *e = &d->errors[i];
            char h[64], kb[16], addr[256];
            if (!fe)
                fputc(',', f);
            fe = false;
            bool fi2 = true;
            fputc('{', f);
            json_key(f, "kind", &fi2);
            json_str(f, derr_names[e->kind]);
            json_key(f, "memcheck_kind", &fi2);
            json_str(f, memcheck_kind(e, kb));
            json_key(f, "what", &fi2);
            json_str(f, error_headline(e, h));
            json_key(f, "call", &fi2);
            json_str(f, dcall_names[e->call]);
            json_num(f, "count", (double)e->count, &fi2);
            json_num(f, "address", (double)e->addr, &fi2);
            error_address_text(addr, sizeof addr, e);
            json_key(f, "address_text", &fi2);
            json_str(f, addr);
            json_key(f, "block_state", &fi2);
            json_str(f, dstate_names[e->state]);
            if (e->state == DSTATE_ALLOC || e->state == DSTATE_FREE) {
                json_num(f, "block", (double)e->block, &fi2);
                json_num(f, "size", (double)e->size, &fi2);
                json_num(f, "offset", (double)e->offset, &fi2);
            }
            if (e->len)
                json_num(f, "len", (double)e->len, &fi2);
            json_key(f, "suppressed", &fi2);
            fputs(sup[i] ? "true" : "false", f);
            json_stack(f, sym, d, "stack", e->where, &fi2);
            json_stack(f, sym, d, "alloc_stack", e->alloc, &fi2);
            json_stack(f, sym, d, "free_stack", e->free, &fi2);
            fputc('}', f);
        }
        fputs("]}\n", f);
    } else {
        print_header(f, d, "tally errors");
        size_t k = 0;
        char a[32], b[32], c[32], e2[32];
        for (size_t i = 0; i < d->nerrors; i++) {
            if (sup[i])
                continue;
            k++;
            fprintf(f, "\n%s error%s in context %s of %s:\n", fmt_count(a, (double)d->errors[i].count),
                    d->errors[i].count == 1 ? "" : "s", fmt_count(b, (double)k),
                    fmt_count(c, (double)contexts));
            print_error(f, sym, d, &d->errors[i]);
        }
        if (k)
            fputc('\n', f);
        fprintf(f, "ERROR SUMMARY: %s error%s from %s context%s (suppressed: %s from %s)\n",
                fmt_count(a, (double)(errors + unlisted)), errors + unlisted == 1 ? "" : "s",
                fmt_count(b, (double)contexts), contexts == 1 ? "" : "s",
                fmt_count(c, (double)sup_errors), fmt_count(e2, (double)sup_contexts));
        if (errors) {
            fputs("  by kind:", f);
            bool firstk = true;
            for (unsigned j = 0; j < DERR_N; j++)
                if (by_kind[j]) {
                    fprintf(f, "%s %s %s", firstk ? "" : ",", derr_names[j],
                            fmt_count(a, (double)by_kind[j]));
                    firstk = false;
                }
            fputc('\n', f);
        }
        if (unlisted)
            fprintf(f, "  %s more errors were counted but not kept (over 4,096 contexts)\n",
                    fmt_count(a, (double)unlisted));
    }
    free(sup);
    if (!out_ok(f))
        return 1;
    return (errors + unlisted) && o->error_exitcode ? o->error_exitcode : 0;
}
