/* report.h: the reading subcommands (tools/report.c). */
#ifndef TALLY_REPORT_H
#define TALLY_REPORT_H

#include "util.h"

typedef struct report_opts_s {
    const char *sort; /* peak, live, allocated, count, temporary */
    size_t top;
    bool json;
    bool histograms; /* --histograms: each call site's size and lifetime histograms */
    const char *tree;   /* --tree: NULL, "top-down" or "bottom-up" */
    const char *focus;  /* --function: one function's callers and callees */
    unsigned tree_depth;
    double threshold;   /* --threshold: % */
} report_opts_t;

/* A histogram bucket's bounds as reports show them: "[16 B, 32 B)"; lifetimes "0 (temporary)",
 * "1", "[2, 4)" allocations. */
void hist_label(char *out, size_t n, int k, bool life);
/* The size and lifetime histograms of every site together */
void hist_totals(const dump_t *d, uint64_t *size, uint64_t *life);
/* Its first and last non-empty buckets, its largest count and its total; false if empty. */
bool hist_extent(const dump_t *d, const uint64_t *h, int *lo, int *hi, double *max,
                 double *total);

typedef struct leaks_opts_s {
    bool json;
    int error_exitcode; /* exit with this when there are leaks of the kinds shown; 0: never */
    unsigned kinds;     /* bits 1 << enum dkind; 0: LEAKS_DEFAULT_KINDS */
    FILE *out;          /* NULL: stdout */
    const char *suppressions; /* a suppression file (tools/suppress.h), or NULL */
} leaks_opts_t;
#define LEAKS_DEFAULT_KINDS                                                                    \
    (1u << DKIND_DEFINITE | 1u << DKIND_INDIRECT | 1u << DKIND_POSSIBLE)
extern const char *const leak_kind_text[DKIND_N]; /* "definitely lost", ... */
/* "definite,possible" or "all" into bits; false if a word is not a kind */
bool leak_kinds_parse(const char *s, unsigned *out);

typedef struct totals_s {
    double alloc_count, alloc_bytes, granted_bytes, free_count, free_bytes, temporary;
    double live_count, live_bytes;
} totals_t;

/* Over every site of the dump, in events (counts divided by count_scale). */
totals_t totals_of(const dump_t *d);
/* The sites but site 0, largest first by measure (report_measure_valid); free() the array. */
const dsite_t **sorted_sites(const dump_t *d, const char *measure, size_t *n);

/* A loss record: with a leak check in the dump, one (call site, kind) pair, as memcheck's is one
 * (allocation stack, kind) pair; without, a site's live blocks (kind DKIND_N). */
typedef struct loss_s {
    const dsite_t *site;
    unsigned kind;
    uint64_t blocks, bytes, held; /* held: indirectly lost bytes a definite record leads to */
    bool suppressed;              /* by `tally leaks --suppressions` */
} loss_t;
/* Every loss record of the dump, in memcheck's order; free() it. NULL only when out of memory. */
loss_t *loss_records(const dump_t *d, size_t *n);

/* TALLY_CHECK's heap errors: `tally errors` (tools/errors.c) */
typedef struct errors_opts_s {
    bool json;
    int error_exitcode;       /* exit with this when an error is not suppressed; 0: never */
    const char *suppressions; /* valgrind's Memcheck:Free / Memcheck:Addr* blocks, or NULL */
    FILE *out;                /* NULL: stdout */
} errors_opts_t;
int cmd_errors(const dump_t *d, symbolizer_t *sym, const errors_opts_t *o);
/* memcheck's headline of an error ("Invalid write of size 1"), its line about the address
 * ("Address 0x... is 0 bytes after a block of size 10 alloc'd"), and where a write was seen
 * when not at the call that made it (NULL for the frees) */
const char *error_headline(const derror_t *e, char buf[64]);
void error_address_text(char *out, size_t cap, const derror_t *e);
const char *error_seen_text(const derror_t *e);

/* shared by the reading subcommands */
void print_header(FILE *f, const dump_t *d, const char *what);
void print_stack(FILE *f, symbolizer_t *sym, const dump_t *d, const dsite_t *s,
                 const char *indent);
void json_num(FILE *f, const char *key, double v, bool *first);
void json_dump_info(FILE *f, const dump_t *d, bool *first); /* ,"dump":{...} */

bool report_measure_valid(const char *m);
int cmd_report(const dump_t *d, symbolizer_t *sym, const report_opts_t *o);
int cmd_leaks(const dump_t *d, symbolizer_t *sym, const leaks_opts_t *o);

#endif
