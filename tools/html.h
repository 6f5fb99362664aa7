/* html.h: `tally html` (tools/html.c). */
#ifndef TALLY_HTML_H
#define TALLY_HTML_H

#include "util.h"

typedef struct html_opts_s {
    FILE *out;
    size_t top; /* call sites in the table */
} html_opts_t;

int cmd_html(const dump_t *d, symbolizer_t *sym, const html_opts_t *o);

#endif
