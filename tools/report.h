/* report.h: the reading subcommands (tools/report.c). */
#ifndef TALLY_REPORT_H
#define TALLY_REPORT_H

#include "util.h"

typedef struct report_opts_s {
    const char *sort; /* peak, live, allocated, count, temporary */
    size_t top;
    bool json;
} report_opts_t;

typedef struct leaks_opts_s {
    bool json;
    int error_exitcode; /* exit with this when there are leaks; 0: never */
} leaks_opts_t;

bool report_measure_valid(const char *m);
int cmd_report(const dump_t *d, symbolizer_t *sym, const report_opts_t *o);
int cmd_leaks(const dump_t *d, symbolizer_t *sym, const leaks_opts_t *o);

#endif
