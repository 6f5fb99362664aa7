/* suppress.h: leak suppressions for `tally leaks --suppressions FILE` (tools/suppress.c), in the
 * two formats people already have:
 *
 *   LeakSanitizer's: one `leak:PATTERN` a line. PATTERN matches a stack when it matches the
 *   function, the source file or the module of any of its frames; it is a substring match, with
 *   `*` for any characters, `^` anchoring it at the start and `$` at the end.
 *
 *   valgrind's: blocks of
 *       {
 *          a name
 *          Memcheck:Leak
 *          match-leak-kinds: definite,possible     (optional; all kinds when absent)
 *          fun:malloc
 *          fun:make_*
 *          obj:/usr/lib/x86_64-linux-gnu/libfoo.so*
 *          ...
 *       }
 *   matched frame by frame from the innermost, `fun:` against the function's name as the
 *   object has it (mangled for C++; the demangled name is also tried), `obj:` against the
 *   module's path, `...` for any number of frames, `*` and `?` as in shell patterns. memcheck's
 *   stacks start inside malloc, tallymalloc's at its caller: leading `fun:` lines that name
 *   allocation functions are skipped. Memcheck:Free and Memcheck:Addr1/2/4/8/16 blocks apply to
 *   `tally errors` (TALLY_CHECK's heap errors), matched against the stack of the bad call (a
 *   write found later: the block's allocating stack too); free and delete lead memcheck's
 *   stacks there and are skipped in the same way. Blocks for other tools or kinds are read and
 *   ignored.
 *
 * Comments (`#`) and blank lines are allowed in both. */
#ifndef TALLY_SUPPRESS_H
#define TALLY_SUPPRESS_H

#include "symbols.h"

#include <stdbool.h>
#include <stddef.h>

typedef struct supp_s {
    char *name;      /* the block's name, or the leak: line */
    char *kind;      /* a heap-error block's Memcheck:KIND (Free, Addr4, Addr*); NULL: a leak */
    bool lsan;       /* a leak: pattern (else a valgrind frame list) */
    unsigned kinds;  /* bits 1 << enum dkind it applies to */
    char **frames;   /* valgrind: "fun:PAT", "obj:PAT", "..."; lsan: one, the pattern */
    size_t nframes;
    unsigned long long records, blocks, bytes; /* what it suppressed */
} supp_t;

typedef struct supps_s {
    supp_t *v;
    size_t n;
} supps_t;

/* Reads a suppression file; false with one line in err ("FILE:LINE: what is wrong"). */
bool supp_load(const char *path, supps_t *out, char *err, size_t errlen);
void supp_free(supps_t *s);
/* The first suppression that matches a record of this kind with this stack (innermost first,
 * every frame, the library's own removed), or NULL. */
supp_t *supp_match(supps_t *s, const sym_frame_t *fr, int n, unsigned kind);
/* The same for a heap error of memcheck's kind mkind ("Free", "Addr1" ...): the blocks of
 * Memcheck:KIND whose KIND (a shell pattern) matches it. */
supp_t *supp_match_error(supps_t *s, const sym_frame_t *fr, int n, const char *mkind);

#endif
