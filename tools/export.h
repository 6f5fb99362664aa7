/* export.h: `tally export` (tools/export.c): a dump in another tool's format. */
#ifndef TALLY_EXPORT_H
#define TALLY_EXPORT_H

#include "util.h"

typedef struct export_opts_s {
    const char *format; /* massif */
    FILE *out;          /* NULL: stdout */
} export_opts_t;

bool export_format_valid(const char *f);
int cmd_export(const dump_t *d, symbolizer_t *sym, const export_opts_t *o);

#endif
