/* diff.h: `tally diff` (tools/diff.c). */
#ifndef TALLY_DIFF_H
#define TALLY_DIFF_H

#include "util.h"

typedef struct diff_opts_s {
    const char *sort; /* live, allocated, count, peak: the measure whose growth sorts */
    size_t top;
    bool json;
} diff_opts_t;

bool diff_measure_valid(const char *m);
int cmd_diff(const dump_t *old, const dump_t *new_, symbolizer_t *sold, symbolizer_t *snew,
             const diff_opts_t *o);

#endif
