/* flame.h: `tally flame` (tools/flame.c). */
#ifndef TALLY_FLAME_H
#define TALLY_FLAME_H

#include "util.h"

typedef struct flame_opts_s {
    const char *measure; /* peak, allocated, live, leaked */
    bool folded;         /* folded stacks instead of SVG */
    bool json;           /* the tree as JSON instead of SVG */
    bool inverted;       /* stacks from the allocating function out (an icicle of callers) */
} flame_opts_t;

/* tally report --tree: the call tree as indented text, each node with its inclusive figure */
typedef struct tree_opts_s {
    const char *measure; /* any of report's --sort measures */
    bool bottom_up;      /* allocating functions first, then their callers */
    unsigned depth;      /* levels shown */
    double threshold;    /* nodes under this % of the whole are summed into one line */
    const char *focus;   /* a function (as flame names frames): its callees (top-down) or its
                          * callers (bottom-up) alone */
} tree_opts_t;
int tree_write(FILE *f, const dump_t *d, symbolizer_t *sym, const tree_opts_t *o);

bool flame_measure_valid(const char *m);
int cmd_flame(const dump_t *d, symbolizer_t *sym, const flame_opts_t *o);
int flame_write(FILE *f, const dump_t *d, symbolizer_t *sym, const flame_opts_t *o);
/* A frame as the flame graph and the trees name it (frames of one name are one node): its
 * function, MODULE+0xOFF, or for Python "func (file.py:LINE)" */
void flame_frame_name(char *out, size_t cap, const sym_frame_t *f);

#endif
