/* pyview.h: the Python view of a dump's call sites (tools/pyview.c). */
#ifndef TALLY_PYVIEW_H
#define TALLY_PYVIEW_H

#include "dumpfile.h"

enum py_group {
    PYGROUP_STACK,    /* the Python frames of each stack */
    PYGROUP_LINE,     /* the innermost Python line */
    PYGROUP_FUNCTION, /* the innermost Python function */
};

/* Rewrites d's sites and frame tree: the stacks with Python frames keep only those (grouped as
 * `by` says), and sites whose stacks are then the same become one. False with a line in err
 * when memory runs out (d unchanged). */
bool dump_python_view(dump_t *d, enum py_group by, char *err, size_t errlen);

#endif
