/* dumpfile.h: a tallymalloc dump (docs/FORMAT.md, version 1) in memory, as tools/dumpfile.c
 * reads it. The reader is strict about what it needs (a version it knows, the end line, every
 * number well formed, every id it refers to defined) and ignores fields it does not know, as
 * the format asks. Nothing here knows the library's internals: only the documented format. */
#ifndef TALLY_DUMPFILE_H
#define TALLY_DUMPFILE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define DUMP_NHIST 64

/* A live block's kind from the leak check (memcheck's), in memcheck's report order. */
enum dkind { DKIND_DEFINITE = 0, DKIND_INDIRECT, DKIND_POSSIBLE, DKIND_REACHABLE, DKIND_N };
/* memcheck's heuristics that can make an interior pointer count as a start pointer */
enum dheur { DHEUR_NONE = 0, DHEUR_STDSTRING, DHEUR_LENGTH64, DHEUR_NEWARRAY,
             DHEUR_MULTIPLEINHERITANCE, DHEUR_N };
extern const char *const dkind_names[DKIND_N]; /* "definite", ... as in the dump */
extern const char *const dheur_names[DHEUR_N];

typedef struct dmodule_s {
    uint64_t base, lo, hi;
    char *build_id; /* hex, or NULL for "-" */
    char *path;  /* as the dump has it: the file to open */
    char *shown; /* the same, safe to print (text_shown) */
    bool unloaded;
    uint32_t gen_lo, gen_hi; /* gen_hi is UINT32_MAX for a loaded module */
} dmodule_t;

/* A Python code object the stacks show (the `pycode` record). */
typedef struct dpycode_s {
    uint32_t id;
    uint32_t first;     /* its first line */
    char *file, *name;  /* co_filename, co_qualname, as the dump has them */
    char *file_shown, *name_shown; /* the same, safe to print */
} dpycode_t;

/* A frame of a stack is a return address, or (top bit set) a Python frame: the code object's
 * index into pycodes and the line (0: none), as DUMP_PYFRAME makes it. */
#define DUMP_PY_TAG ((uint64_t)1 << 63)
#define DUMP_PY_LINE_BITS 24
#define DUMP_PYFRAME(code, line) (DUMP_PY_TAG | (uint64_t)(code) << DUMP_PY_LINE_BITS | (uint64_t)(line))
static inline bool dump_ip_is_py(uint64_t ip) {
    return (ip & DUMP_PY_TAG) != 0;
}
static inline uint32_t dump_py_code(uint64_t ip) {
    return (uint32_t)((ip & ~DUMP_PY_TAG) >> DUMP_PY_LINE_BITS);
}
static inline uint32_t dump_py_line(uint64_t ip) {
    return (uint32_t)(ip & ((1u << DUMP_PY_LINE_BITS) - 1));
}

typedef struct dsite_s {
    uint32_t id;
    uint64_t alloc_count, alloc_bytes, granted_bytes, free_count, free_bytes;
    int64_t live_count, live_bytes, max_live_bytes, peak_live_bytes;
    uint64_t temporary, samples, pinned_bytes;
    /* sample mode: the standard deviations of the estimates (counts times count_scale) */
    uint64_t sd_alloc_count, sd_alloc_bytes, sd_live_count, sd_live_bytes, sd_peak_bytes,
        sd_temporary;
    uint32_t gen;
    uint64_t size_hist[DUMP_NHIST], life_hist[DUMP_NHIST];
    /* the stack: its innermost node in the frame tree (0: empty), and its depth */
    uint32_t node, nframes;
    uint64_t truncated; /* the stack was cut at the header's depth: it went on */
    /* leak check: its live blocks by kind, and the indirectly lost bytes its definitely lost
     * blocks lead to */
    uint64_t kind_blocks[DKIND_N], kind_bytes[DKIND_N];
    uint64_t held_bytes;
    /* filled by the readers of the dump */
    uint64_t leak_blocks, leak_bytes; /* `block` records of this site (with a leak check: lost) */
} dsite_t;

typedef struct dclass_s {
    uint64_t size, pools, blocks_in_use, free_blocks, blocks_cached, mallocs, bytes_requested,
        bytes_granted, bytes_held;
} dclass_t;

/* A call site at a detailed timeline point (`sites`): one of the top ones then. */
typedef struct dtsite_s {
    uint32_t site;        /* index into sites */
    int64_t live_bytes;   /* then */
    uint64_t alloc_bytes; /* allocated by it up to then */
} dtsite_t;

typedef struct dpoint_s {
    uint64_t t_ns, rss_bytes, alloc_bytes, alloc_count;
    int64_t live_bytes;
    bool detailed;       /* the point has `sites`: tsites[first .. first + nsites) */
    size_t first;
    uint32_t nsites;
} dpoint_t;

typedef struct dblock_s {
    uint32_t site; /* index into sites, not id */
    uint8_t kind;  /* enum dkind; DKIND_N when the dump has no leak check */
    uint8_t heur;  /* enum dheur */
    uint64_t addr, size;
} dblock_t;

/* TALLY_CHECK's heap errors (the `error` record), in the dump's words */
enum derr { DERR_INVALID_FREE = 0, DERR_DOUBLE_FREE, DERR_MISMATCHED, DERR_OVERRUN,
            DERR_UNDERRUN, DERR_WRITE_AFTER_FREE, DERR_N };
enum dcall { DCALL_FREE = 0, DCALL_DELETE, DCALL_DELETE_ARRAY, DCALL_REALLOC, DCALL_QUARANTINE,
             DCALL_SCAN, DCALL_USABLE, DCALL_N };
enum dstate { DSTATE_NONE = 0, DSTATE_ALLOC, DSTATE_FREE, DSTATE_STACK, DSTATE_N };
extern const char *const derr_names[DERR_N];
extern const char *const dcall_names[DCALL_N];
extern const char *const dstate_names[DSTATE_N];
typedef struct derror_s {
    uint8_t kind, call, state; /* enum derr, dcall, dstate */
    uint32_t len;              /* bytes found changed, from addr on (writes) */
    uint64_t addr, block, size;
    int64_t offset;            /* addr - block */
    /* the stacks: index + 1 into sites, 0 when unknown */
    uint32_t where, alloc, free;
    uint64_t count;
} derror_t;
typedef struct dump_s {
    const char *path;  /* the file read */
    char *path_shown;  /* the same, safe to print */
    /* header */
    char *program, *mode, *unwinder, *reason, *version;
    char *python;        /* the CPython version the process ran (header `python`), or NULL */
    bool python_frames;  /* its frames are in the stacks (header python_frames is not 0) */
    uint64_t python_stopped; /* walks of its frame chain a check ended (totals) */
    uint64_t pid, ppid, sample_interval, count_scale, depth, start_ns, dump_ns, duration_ns;
    uint64_t fatal_signal; /* reason "fatal": the signal that ended the program */
    uint32_t gen;
    /* totals */
    uint64_t total_alloc_bytes, nsites_total, pinned_pool_bytes, pinned_large_bytes;
    uint64_t max_rss_bytes; /* 0: not in the dump */
    uint64_t meta_resident_bytes; /* the library's own tables, resident (0: not in the dump) */
    int64_t total_live_bytes, peak_bytes;
    bool leak_check; /* the blocks carry their kinds */
    uint64_t leak_foreign_large; /* the large blocks were another allocator's (TALLY_LARGE) */
    uint64_t leak_approx, leak_threads, leak_unstopped, leak_scan_ns, leak_root_bytes,
        leak_block_bytes;
    uint64_t kind_blocks[DKIND_N], kind_bytes[DKIND_N]; /* over every site */
    uint64_t heur_blocks[DHEUR_N], heur_bytes[DHEUR_N]; /* memcheck's "reachable via heuristic" */
    /* records */
    dmodule_t *modules;
    size_t nmodules;
    dsite_t *sites; /* in file order */
    size_t nsites;
    dclass_t *classes;
    size_t nclasses;
    bool have_arena;
    uint64_t arenas, arena_bytes, in_use_bytes, free_block_bytes, pool_overhead_bytes,
        empty_pool_bytes, never_used_bytes, large_mallocs, small_mallocs, system_heap_bytes;
    dpoint_t *timeline;
    size_t ntimeline;
    dtsite_t *tsites; /* the detailed points' sites */
    size_t ntsites;
    dblock_t *blocks;
    size_t nblocks;
    /* TALLY_CHECK: the header's check field, the totals' counts and the error records */
    bool check;
    uint64_t check_errors, check_contexts, check_dropped, check_quarantine;
    derror_t *errors;
    size_t nerrors;
    bool all_mode;      /* mode=all: counts are exact */
    bool has_blocks;    /* an all-mode exit dump: the live blocks are listed */
    /* Python code objects, by index (frames name the index; the dump's ids map to them) */
    dpycode_t *pycodes;
    size_t npycodes;
    /* the frame tree: node k (1..nnodes) is ip[k] called from node parent[k] */
    uint64_t *node_ip;
    uint32_t *node_parent;
    size_t nnodes;
    char *text;
} dump_t;

/* The return addresses of a site's stack, innermost first: up to max of them; returns how many
 * the stack has. */
static inline uint32_t dump_frames(const dump_t *d, const dsite_t *s, uint64_t *out,
                                   uint32_t max) {
    uint32_t k = 0;
    for (uint32_t n = s->node; n && k < max; n = d->node_parent[n])
        out[k++] = d->node_ip[n];
    return s->nframes;
}

/* Reads path (the text, or a zstd frame of it). On failure returns false with one line in err
 * ("FILE: what is wrong"), and d holds nothing to free. */
bool dump_load(const char *path, dump_t *d, char *err, size_t errlen);
/* The same from memory (the fuzz target): data is copied. */
bool dump_parse(const char *name, const char *data, size_t len, dump_t *d, char *err,
                size_t errlen);
void dump_free(dump_t *d);
/* Removes the sites i with drop[i] (and their blocks; the timeline's and the errors' references
 * to them), recomputing the leak kinds' totals from the sites left. False when memory runs out
 * (d unchanged). */
bool dump_drop_sites(dump_t *d, const bool *drop);
/* The most text a dump may hold (0: the default, 8 GiB, and a compressed one at most 200 times
 * its size, at least 64 MiB): `--max-text`. */
void dump_set_max_text(size_t bytes);

/* Text from a file tally did not write (a dump's names, a binary's symbols), safe to print:
 * control bytes, C1 controls and bytes that are not UTF-8 become \xNN (\r, \n, \t). A copy
 * (malloc'd; NULL on failure). text_escape writes it into out (cap bytes, truncated, always
 * terminated when cap > 0) and returns its full length. */
char *text_shown(const char *in);
size_t text_escape(char *out, size_t cap, const char *in);

/* Counts in the dump are multiplied by count_scale: this turns one into a number of events. */
static inline double dump_count(const dump_t *d, uint64_t v) {
    return d->count_scale ? (double)v / (double)d->count_scale : (double)v;
}

#endif
