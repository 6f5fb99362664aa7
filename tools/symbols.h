/* symbols.h: return addresses of a dump to functions, files and lines, offline, with elfutils'
 * libdwfl (tools/symbols.c). */
#ifndef TALLY_SYMBOLS_H
#define TALLY_SYMBOLS_H

#include "dumpfile.h"

typedef struct sym_frame_s {
    const char *function; /* demangled; NULL when nothing names the code */
    const char *mangled;  /* the name valgrind's suppressions use: the symbol's (mangled for
                           * C++), or for an inlined call its DWARF short name */
    const char *aliases;  /* the symbol's other names, '\n'-separated (sym_want_aliases) */
    const char *file;     /* as the line table has it (usually absolute); NULL if unknown */
    unsigned line;        /* 0 if unknown */
    const char *module;   /* the module's path; NULL for code in no module */
    uint64_t offset;      /* ip - the module's base: what `module+offset` prints */
    uint64_t ip;          /* the return address */
    bool inlined;         /* a call inlined into the frame after it */
    bool python;          /* a Python frame: function is its qualified name, file its
                           * co_filename as the program named it, module NULL */
} sym_frame_t;

typedef struct symbolizer_s symbolizer_t;

/* extra_debug_dir: also look for separate debug files under it (DIR/.build-id/xx/rest.debug and
 * DIR/<path>.debug), as under /usr/lib/debug; may be NULL. */
symbolizer_t *sym_new(const dump_t *d, const char *extra_debug_dir);
/* From now on, frames also carry their symbol's other names (for suppressions). */
void sym_want_aliases(symbolizer_t *s);
void sym_free(symbolizer_t *s);

/* The frames of return address ip in a stack of generation gen, innermost first: the inlined
 * calls at that address, then the function that holds them. At most max; returns how many
 * (at least 1). The strings live as long as s. */
int sym_lookup(symbolizer_t *s, uint64_t ip, uint32_t gen, sym_frame_t *out, int max);

/* The module (index into d->modules) that held ip for a stack of generation gen, or -1. */
int sym_module_of(const dump_t *d, uint64_t ip, uint32_t gen);

/* The file name without its directories. */
const char *sym_basename(const char *path);

#endif
