/* util.h: what the tally subcommands share: numbers for people, JSON, and a site's stack as it
 * is shown (symbolized, the allocator's and libc's innermost frames left out). */
#ifndef TALLY_UTIL_H
#define TALLY_UTIL_H

#include "dumpfile.h"
#include "symbols.h"

#include <stdio.h>

#define TOOL_MAX_FRAMES 512 /* shown frames of one stack, inlined ones included */
/* the outermost frame of a stack cut at TALLY_DEPTH (the site's `truncated`) */
#define TRUNCATED_FRAME "[truncated]"

/* "4,545,241" */
const char *fmt_count(char buf[32], double v);
/* "2.1 MiB", "434 KiB", "512 B" */
const char *fmt_size(char buf[32], double bytes);
/* "12.6%" of part in whole ("-" when whole is 0) */
const char *fmt_pct(char buf[16], double part, double whole);

/* FNV-1a of a string: the hash of the tools' string tables */
uint64_t str_hash(const char *s);

/* JSON */
void json_str(FILE *f, const char *s); /* a string literal, or null */
void json_key(FILE *f, const char *key, bool *first); /* ,"key": */

/* The stack of site s as shown: symbolized, innermost first, with leading frames in libc, the
 * dynamic loader and operator new dropped, and the outermost ones that start the program or a
 * thread (libc's, and _start), unless nothing else is left. Returns the number of frames
 * written to out. */
int site_stack(symbolizer_t *sym, const dump_t *d, const dsite_t *s, sym_frame_t *out, int max);
/* The same with every frame the dump has (libc's and the loader's too). */
int site_stack_all(symbolizer_t *sym, const dump_t *d, const dsite_t *s, sym_frame_t *out,
                   int max);

/* A frame's name: its function, or MODULE+0xOFF, or 0xIP when nothing names it. */
void frame_label(char *out, size_t cap, const sym_frame_t *f);

/* "at FUNC (FILE:LINE)" / "by FUNC (in MODULE)" / "by MODULE+0xOFF" / "by 0xIP" */
void print_frame(FILE *f, const char *indent, const char *verb, const sym_frame_t *fr);
void json_frames(FILE *f, const sym_frame_t *fr, int n);

/* The measures a site can be weighed by (report --sort, flame --measure, the page's selector):
 * peak (bytes live at the program-wide peak), live (bytes live when dumped), allocated (bytes),
 * count (allocations), temporary (allocations freed before the next one), pinned (pool memory
 * its live blocks keep), slack (bytes granted beyond the requests: the size classes' rounding),
 * leaked (bytes still live at exit, from the block list; with the leak check, the lost ones),
 * and with the leak check each kind: definite, indirect, possible, reachable (bytes). */
typedef struct measure_s {
    const char *name;
    const char *what;   /* "bytes live at the program-wide peak" */
    const char *suffix; /* "at the peak": after a figure */
    bool bytes;         /* a size, else a count */
    unsigned needs;     /* MEASURE_BLOCKS, MEASURE_KINDS: what the dump must have */
} measure_t;
#define MEASURE_BLOCKS 1u /* the blocks live at exit (`tally run --leaks` or --all) */
#define MEASURE_KINDS 2u  /* the leak check's kinds (`tally run --leaks`) */
extern const measure_t tool_measures[]; /* ends with a NULL name */
const measure_t *measure_find(const char *name);
/* "peak, live, ... or reachable": for a usage error */
const char *measure_names(void);
/* NULL when dump d has what measure m needs, else a sentence saying what is missing. */
const char *measure_missing(const dump_t *d, const measure_t *m);
/* A site's figure by measure name; 0 for a NULL site. */
double site_measure(const dump_t *d, const dsite_t *s, const char *m);

/* The 95% interval of an estimate. In all mode every figure is exact: [v, v]. In sample mode
 * an estimate est with standard deviation sd (the library's, from the weights of its samples)
 * is taken as m times a Poisson count k, k = est^2 / sd^2 samples of m = sd^2 / est each, and
 * the interval is m times the Garwood interval of k; with no sample behind it (est 0), m is
 * `unit`, what one sample stands for, and the interval [0, 3.7 unit] (no sample in B bytes
 * has probability exp(-B / R)). */
typedef struct interval_s {
    double lo, hi;
} interval_t;
interval_t estimate_interval(double est, double sd, double unit);
/* A site's figure by name (as site_measure) and its interval. */
interval_t site_interval(const dump_t *d, const dsite_t *s, const char *m);
/* A figure can rank sites when its interval is no wider than itself (always in all mode). */
bool site_rankable(const dump_t *d, const dsite_t *s, const char *m);
/* "" in all mode; else "95%: LO to HI" (or "95%: up to HI"), as sizes (bytes) or counts */
const char *fmt_interval(char buf[96], const dump_t *d, interval_t iv, bool bytes);

/* The dump is of a CPython process (a python* or libpython* module). */
bool dump_is_python(const dump_t *d);
/* When the process's peak RSS is far above the profiled peak, a sentence saying so and naming
 * the likely cause into buf; false when there is nothing to say. */
bool unprofiled_note(const dump_t *d, char *buf, size_t n);

/* Reports failure of the reader in one line and returns the exit status for it. After a
 * load, a dump with Python frames is shown as view_native and view_by say (tools/pyview.c). */
int load_or_complain(const char *path, dump_t *d);
extern bool view_native;   /* --native: the merged native and Python stacks as recorded */
extern int view_by;        /* --by: enum py_group */
/* The view of a dump read with dump_load: 1 (one line said, d freed) when memory runs out. */
int view_apply(dump_t *d);
/* "--by line|function|stack" */
bool view_by_parse(const char *s);

/* When the dump was written: "at exit", "when SIGTERM ended it", or the dump's reason */
const char *dump_when(const dump_t *d, char buf[64]);

/* Allocator wrappers (xmalloc, zmalloc, g_malloc, PyMem_Malloc, ... and --alloc-fn's globs):
 * with view_fold, site_stack folds them away from the top of a stack. */
extern bool view_fold;
bool alloc_fn_add(const char *pattern); /* --alloc-fn */
bool alloc_fn_frame(const sym_frame_t *fr);
/* --ignore-fn (massif's): the allocations made directly in a function matching the glob (the
 * first frame of the stack as shown, wrappers folded) are left out of the dump altogether. */
bool ignore_fn_add(const char *pattern);
/* Applies --ignore-fn to d: 0, or 1 when memory runs out (said). */
int view_ignore(dump_t *d, symbolizer_t *sym);

extern const char *tool_name; /* "tally" */
/* Flushes f: false when a write to it failed, and then the first failure's errno is in
 * out_errno, for the command to say what failed (a full disk, a closed pipe's EPIPE). */
bool out_ok(FILE *f);
extern int out_errno;
void tool_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
