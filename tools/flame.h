/* flame.h: `tally flame` (tools/flame.c). */
#ifndef TALLY_FLAME_H
#define TALLY_FLAME_H

#include "util.h"

typedef struct flame_opts_s {
    const char *measure; /* peak, allocated, live, leaked */
    bool folded;         /* folded stacks instead of SVG */
    bool json;           /* the tree as JSON instead of SVG */
} flame_opts_t;

bool flame_measure_valid(const char *m);
int cmd_flame(const dump_t *d, symbolizer_t *sym, const flame_opts_t *o);
/* The same to f (the HTML page embeds the SVG). */
int flame_write(FILE *f, const dump_t *d, symbolizer_t *sym, const flame_opts_t *o);

#endif
