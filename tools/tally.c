/* tally.c: the `tally` command. `tally run` runs a program with libtallymalloc.so preloaded and
 * says where its dump went; the other subcommands read dumps (docs/FORMAT.md) and print them
 * for people or as JSON (tools/report.c). This file: the command line, the help, and `run`. */
#define _GNU_SOURCE
#include "diff.h"
#include "export.h"
#include "flame.h"
#include "html.h"
#include "report.h"

#include <errno.h>
#include <getopt.h>
#include <glob.h>
#include <limits.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef TALLY_LIBDIR
#define TALLY_LIBDIR "/usr/local/lib"
#endif
#ifndef TALLY_VERSION
#define TALLY_VERSION "0.0"
#endif

static const char usage_main[] =
    "usage: tally COMMAND [OPTIONS] ...\n"
    "\n"
    "Profile a program's memory with tallymalloc, and read what it recorded.\n"
    "\n"
    "commands:\n"
    "  run [OPTIONS] [--] PROGRAM [ARGS...]   run PROGRAM with the profiler; write a dump\n"
    "  report [OPTIONS] DUMP                  totals, the top call sites, the size classes\n"
    "  leaks [OPTIONS] DUMP                   leaks by kind (memcheck's), with their call sites\n"
    "  errors [OPTIONS] DUMP                  heap errors (tally run --check), as memcheck says\n"
    "  flame [OPTIONS] DUMP                   a flame graph (SVG), or folded stacks\n"
    "  diff [OPTIONS] OLD NEW                 how each call site grew from one dump to another\n"
    "  html [OPTIONS] DUMP -o PAGE.html       all of it on one self-contained page\n"
    "  export --format FORMAT DUMP [-o FILE]  the dump for pprof, massif (ms_print) or speedscope\n"
    "  help [COMMAND]                         this text, or a command's\n"
    "\n"
    "`tally help COMMAND` or `tally COMMAND --help` tells more; see also tally(1).\n";

static const char usage_run[] =
    "usage: tally run [-o FILE] [--all | --sample BYTES] [--leaks] [--check]\n"
    "                 [--error-exitcode N] [--suppressions FILE] [--stats] [--lib PATH]\n"
    "                 [--] PROGRAM [ARGS...]\n"
    "\n"
    "Runs PROGRAM with libtallymalloc.so preloaded, passes its exit status through, and says\n"
    "where the dump went, the peak, the blocks still live at exit, and what to type next.\n"
    "Processes it forks or execs are profiled too, each writing its own dump; the run ends\n"
    "when the last of them exits, and every dump is named.\n"
    "\n"
    "  -o, --output FILE   the dump's name (%p: the process id, %e: the program's name);\n"
    "                      without %p, FILE is the program's and the other processes write\n"
    "                      FILE with their pid before its extension (out.1234.tly);\n"
    "                      default tally.PROGRAM.%p.tly in the working directory\n"
    "      --all           record every allocation exactly (needed for leaks)\n"
    "      --sample BYTES  record one allocation per BYTES on average (default 512k)\n"
    "      --leaks         --all, and at exit the leak check: every live block classified as\n"
    "                      memcheck does (definitely, indirectly, possibly lost, still\n"
    "                      reachable); the leaks and memcheck's LEAK SUMMARY are printed\n"
    "      --check         --all, and the heap checks (TALLY_CHECK=1): overruns, underruns,\n"
    "                      double, invalid and mismatched frees, writes after free; each is\n"
    "                      one line as it happens, and the errors are printed at exit as\n"
    "                      `tally errors` prints them (memcheck's words)\n"
    "      --error-exitcode N  with --leaks or --check: exit with N when anything is\n"
    "                      definitely, indirectly or possibly lost, or a heap error was found\n"
    "      --suppressions FILE  with --leaks or --check: as in `tally leaks` and `tally errors`\n"
    "      --stats         also print the allocator's statistics at exit\n"
    "      --lib PATH      the library to preload (default: the build tree's, then the one\n"
    "                      installed beside tally, then the configured libdir's)\n"
    "\n"
    "PYTHONMALLOC=malloc is set unless PYTHONMALLOC is: CPython's own allocator takes memory\n"
    "with mmap, where the profiler does not see it.\n";

static const char usage_report[] =
    "usage: tally report [--sort MEASURE] [--top N] [--json] [--histograms] [--debug-dir DIR] DUMP\n"
    "\n"
    "The dump's totals (allocations, bytes, peak, live now, temporary allocations), the top\n"
    "call sites with their symbolized stacks, and the allocator's size-class table. In sample\n"
    "mode the figures are unbiased estimates, marked ~.\n"
    "\n"
    "  --sort MEASURE   peak (bytes live at the program-wide peak, the default), live (now),\n"
    "                   allocated (bytes), count (allocations), temporary, pinned (the pool\n"
    "                   memory the site's live blocks keep), slack (bytes granted beyond the\n"
    "                   requests), leaked, and with the leak check definite, indirect,\n"
    "                   possible or reachable\n"
    "  --top N          how many call sites (default 10; 0 for all)\n"
    "  --json           JSON instead of text (docs/JSON.md)\n"
    "  --tree[=top-down|bottom-up]  the call tree instead, each function with its inclusive\n"
    "                   figure of the --sort measure: callers to callees (top-down), or the\n"
    "                   allocating functions, then their callers (bottom-up)\n"
    "  --function NAME  one function's callers and callees (both trees; with --tree, the one\n"
    "                   side), named as flame names frames (func, or func (file.py:LINE))\n"
    "  --tree-depth N   levels of the tree shown (default 12)\n"
    "  --threshold PCT  nodes under PCT% of the whole summed into one line (default 1)\n"
    "  --histograms     each call site's requested sizes and lifetimes as bar charts, as the\n"
    "                   report shows them for every call site together\n"
    "  --alloc-fn GLOB  one more allocator wrapper (repeatable; massif's option): a call site\n"
    "                   is named by its first frame that is not one (xmalloc, zmalloc*,\n"
    "                   g_malloc*, PyMem_Malloc and others are built in)\n"
    "  --raw            keep the wrappers' frames\n"
    "  --ignore-fn GLOB leave out what a function matching GLOB allocates directly (its\n"
    "                   call sites, as massif's option; the program-wide peak stays the dump's)\n"
    "  --native         a Python program: the merged stacks, native frames and Python frames\n"
    "                   (default: its Python frames only, native ones folded into them)\n"
    "  --by line|function  a Python program: one call site per innermost Python line or\n"
    "                   function (tracemalloc's lineno view)\n"
    "  --debug-dir DIR  also look for separate debug files under DIR, as under /usr/lib/debug\n"
    "  --max-text SIZE  read a dump of up to SIZE of text (default: a compressed dump may\n"
    "                   expand 200 times, to at least 64M; 8G uncompressed)\n";

static const char usage_leaks[] =
    "usage: tally leaks [--kinds LIST] [--suppressions FILE] [--error-exitcode N] [--json]\n"
    "                   [--debug-dir DIR] DUMP\n"
    "\n"
    "The blocks still live when the program exited, as valgrind memcheck reports them: loss\n"
    "records (a call site and a kind: definitely, indirectly or possibly lost, or still\n"
    "reachable), smallest first, each with its symbolized stack, then memcheck's LEAK SUMMARY.\n"
    "It needs the dump of `tally run --leaks` (TALLY_LEAKS=1). A dump of every allocation\n"
    "written at exit without the check lists the live blocks by call site, unclassified.\n"
    "\n"
    "  --kinds LIST        the kinds to show: definite, indirect, possible, reachable, or all\n"
    "                      (default definite,indirect,possible); the summary counts them all\n"
    "  --suppressions FILE leaks not to report: LeakSanitizer's `leak:PATTERN` lines or\n"
    "                      valgrind's Memcheck:Leak blocks; counted as \"suppressed\"\n"
    "  --error-exitcode N  exit with N when a block of the kinds shown is live (for CI jobs)\n"
    "  --json              JSON instead of text (docs/JSON.md)\n"
    "  --native, --by line|function  a Python program's stacks (see tally help report)\n"
    "  --debug-dir DIR     also look for separate debug files under DIR\n"
    "  --max-text SIZE     read a larger dump than the default bounds (see report)\n";

static const char usage_errors[] =
    "usage: tally errors [--suppressions FILE] [--error-exitcode N] [--json] [--debug-dir DIR]\n"
    "                    DUMP\n"
    "\n"
    "The heap errors the library found with its checks on (`tally run --check`, TALLY_CHECK=1),\n"
    "as valgrind memcheck reports them: invalid, double and mismatched frees, writes past either\n"
    "end of a block, writes to a freed block; each with the stack of the call, and the stacks\n"
    "of the block's allocation and free, then memcheck's ERROR SUMMARY and a count per kind.\n"
    "A write is seen late: when the block is freed, leaves the quarantine, or at exit.\n"
    "\n"
    "  --suppressions FILE errors not to report: valgrind's Memcheck:Free and Memcheck:Addr1,\n"
    "                      Addr2, Addr4, Addr8, Addr16 blocks (fun:, obj:, ...)\n"
    "  --error-exitcode N  exit with N when an error is reported (for CI jobs)\n"
    "  --json              JSON instead of text (docs/JSON.md)\n"
    "  --debug-dir DIR     also look for separate debug files under DIR\n"
    "  --max-text SIZE     read a larger dump than the default bounds (see report)\n";

static const char usage_export[] =
    "usage: tally export --format massif|speedscope|pprof [-o FILE] [--debug-dir DIR] DUMP\n"
    "\n"
    "The dump in another tool's format, on standard output or in FILE.\n"
    "\n"
    "  --format massif     valgrind massif's output file, as ms_print and massif-visualizer\n"
    "                      read it: the timeline as snapshots (time in ms), the peak and the\n"
    "                      state at the dump as call trees (allocation sites at the root, their\n"
    "                      callers below; nodes under 1% of the total summed, as massif does)\n"
    "  --format speedscope speedscope's JSON (speedscope.app, or `speedscope FILE`): one profile\n"
    "                      for the bytes live at the peak, one for the bytes allocated, one for\n"
    "                      the bytes live at the dump, in bytes, a call site a sample\n"
    "  --format pprof      profile.proto, gzipped, as go tool pprof, Pyroscope, Parca and\n"
    "                      Google Cloud Profiler read it: alloc_objects, alloc_space,\n"
    "                      inuse_objects, inuse_space (Go's heap profile's types), peak_space,\n"
    "                      temporary_objects, pinned_space, and with the leak check\n"
    "                      definite_space, indirect_space, possible_space\n"
    "  -o, --output FILE   write FILE instead of standard output\n"
    "  --native, --by line|function  a Python program's stacks (see tally help report)\n"
    "  --alloc-fn GLOB, --raw, --ignore-fn GLOB  wrappers folded or kept, functions' own\n"
    "                     allocations left out (see tally help report)\n"
    "  --debug-dir DIR     also look for separate debug files under DIR\n"
    "  --max-text SIZE     read a larger dump than the default bounds (see report)\n";

static const char usage_flame[] =
    "usage: tally flame [--measure MEASURE] [--inverted] [--folded | --json] [--debug-dir DIR]\n"
    "                   DUMP > graph.svg\n"
    "\n"
    "The call sites as a flame graph: one self-contained interactive SVG on standard output\n"
    "(hover for figures, click a frame to zoom, Search to highlight), or with --folded the\n"
    "folded-stack text that flamegraph.pl, inferno and speedscope read.\n"
    "\n"
    "  --measure MEASURE  peak (bytes at the program-wide peak, the default), allocated (bytes),\n"
    "                     live (bytes live when dumped), leaked (bytes still live at exit;\n"
    "                     with the leak check, those definitely, indirectly or possibly lost),\n"
    "                     count (allocations), temporary (allocations freed before the next),\n"
    "                     pinned (pool memory the live blocks keep), slack (bytes granted\n"
    "                     beyond the requests), and with the leak check definite, indirect,\n"
    "                     possible or reachable (the bytes of each kind)\n"
    "  --inverted         the stacks from the allocating function out: its callers above it\n"
    "  --folded           `outermost;...;innermost VALUE` lines instead of SVG\n"
    "  --json             one JSON document whose .root is the tree d3-flame-graph reads\n"
    "                     ({name, value, children}; docs/JSON.md)\n"
    "  --native, --by line|function  a Python program's stacks (see tally help report)\n"
    "  --alloc-fn GLOB, --raw, --ignore-fn GLOB  wrappers folded or kept, functions' own\n"
    "                     allocations left out (see tally help report)\n"
    "  --debug-dir DIR    also look for separate debug files under DIR\n"
    "  --max-text SIZE    read a larger dump than the default bounds (see report)\n";

static const char usage_diff[] =
    "usage: tally diff [--sort MEASURE] [--top N] [--json] [--debug-dir DIR] OLD NEW\n"
    "\n"
    "How each call site grew from the dump OLD to the dump NEW of the same program: a series\n"
    "of TALLY_INTERVAL or TALLY_SIGNAL dumps of a long-running process, or two runs. Sites are\n"
    "matched by their stacks (module and offset of every frame), whatever the load addresses.\n"
    "\n"
    "  --sort MEASURE   live (bytes live, the default), allocated (bytes), count (allocations),\n"
    "                   peak (bytes at the program-wide peak): the growth that sorts the sites\n"
    "  --top N          how many call sites (default 10; 0 for all)\n"
    "  --json           JSON instead of text (docs/JSON.md)\n"
    "  --native, --by line|function  a Python program's stacks (see tally help report)\n"
    "  --alloc-fn GLOB, --raw, --ignore-fn GLOB  wrappers folded or kept, functions' own\n"
    "                     allocations left out (see tally help report)\n"
    "  --debug-dir DIR  also look for separate debug files under DIR\n"
    "  --max-text SIZE  read larger dumps than the default bounds (see report)\n";

static const char usage_html[] =
    "usage: tally html [-o FILE] [--top N] [--debug-dir DIR] DUMP\n"
    "\n"
    "One self-contained HTML page (it needs no network and no other file; d3 and d3-flame-graph\n"
    "are in it): the summary, then views that one measure selector (peak, live, allocated,\n"
    "count, temporary, pinned, slack, leaked, the leak kinds), a text filter, a module filter\n"
    "and a raw-stack switch apply to: the table of call sites (sortable, each stack unfolding\n"
    "with its own size and lifetime histograms), the flame graph (zoom, search, icicle,\n"
    "allocating functions at the root), the call tree top-down or bottom-up with inclusive\n"
    "figures, one function's callers and callees; memory over time stacked by the top call\n"
    "sites with the RSS and allocations per second (hover for figures, drag across it for what\n"
    "a time range allocated), the histograms, the size classes, the loss records.\n"
    "\n"
    "  -o, --output FILE  write the page here (default: standard output)\n"
    "  --top N            call sites in the table (default 100; 0 for all); the trees and\n"
    "                     the flame graph have them all\n"
    "  --native, --by line|function  a Python program's stacks (see tally help report)\n"
    "  --alloc-fn GLOB, --raw, --ignore-fn GLOB  wrappers folded or kept, functions' own\n"
    "                     allocations left out (see tally help report)\n"
    "  --debug-dir DIR    also look for separate debug files under DIR\n"
    "  --max-text SIZE    read a larger dump than the default bounds (see report)\n";

static const struct {
    const char *name;
    const char *usage;
} commands[] = {{"run", usage_run},
                {"html", usage_html},
                {"diff", usage_diff},
                {"report", usage_report},
                {"leaks", usage_leaks},
                {"errors", usage_errors},
                {"export", usage_export},
                {"flame", usage_flame}};

static const char *usage_of(const char *cmd) {
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (strcmp(commands[i].name, cmd) == 0)
            return commands[i].usage;
    return NULL;
}

static int bad_usage(const char *cmd, const char *fmt, const char *arg) {
    char msg[1024];
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wformat-nonliteral"
    snprintf(msg, sizeof msg, fmt, arg);
#pragma GCC diagnostic pop
    tool_error("%s (see `tally help %s`)", msg, cmd); /* escaped: arg is the user's text */
    return 2;
}

static bool parse_size(const char *s, unsigned long long *out) {
    char *end;
    errno = 0;
    if (*s < '0' || *s > '9')
        return false;
    unsigned long long v = strtoull(s, &end, 10);
    unsigned shift = 0;
    switch (*end | 0x20) {
    case 'k': shift = 10; end++; break;
    case 'm': shift = 20; end++; break;
    case 'g': shift = 30; end++; break;
    default: break;
    }
    if (errno || *end || v == 0 || (shift && v > (~0ULL >> shift)))
        return false;
    *out = v << shift;
    return true;
}

/* "--max-text SIZE": the most text a dump may hold, compressed or not */
static bool set_max_text(const char *s) {
    unsigned long long v;
    if (!parse_size(s, &v) || v > SIZE_MAX / 2)
        return false;
    dump_set_max_text((size_t)v);
    return true;
}

/* "--error-exitcode N": 1..255, as valgrind takes it */
static bool parse_exitcode(const char *s, int *out) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (*s < '0' || *s > '9' || *end || errno || v < 1 || v > 255)
        return false;
    *out = (int)v;
    return true;
}

/* "--top N": 0 means all */
static bool parse_top(const char *s, size_t *out) {
    char *end;
    errno = 0;
    unsigned long v = strtoul(s, &end, 10);
    if (*s < '0' || *s > '9' || *end || errno)
        return false;
    *out = v ? v : (size_t)-1;
    return true;
}

/* ---- reading subcommands --------------------------------------------------------------------- */
static int read_cmd(const char *cmd, int argc, char **argv) {
    report_opts_t ro = {.sort = "peak", .top = 10, .threshold = 1.0};
    leaks_opts_t lo = {0};
    errors_opts_t eo = {0};
    export_opts_t xo = {0};
    flame_opts_t fo = {.measure = "peak"};
    html_opts_t ho = {.top = 100};
    const char *output = NULL;
    const char *debug_dir = NULL;
    static const struct option opts[] = {
        {"sort", required_argument, NULL, 's'},      {"top", required_argument, NULL, 't'},
        {"json", no_argument, NULL, 'j'},            {"debug-dir", required_argument, NULL, 'd'},
        {"error-exitcode", required_argument, NULL, 'e'}, {"help", no_argument, NULL, 'h'},
        {"measure", required_argument, NULL, 'm'},   {"folded", no_argument, NULL, 'f'},
        {"output", required_argument, NULL, 'o'},    {"kinds", required_argument, NULL, 'k'},
        {"suppressions", required_argument, NULL, 'S'}, {"max-text", required_argument, NULL, 'M'},
        {"native", no_argument, NULL, 'N'},          {"by", required_argument, NULL, 'B'},
        {"format", required_argument, NULL, 'F'},   {"histograms", no_argument, NULL, 'H'},
        {"alloc-fn", required_argument, NULL, 'A'}, {"raw", no_argument, NULL, 'R'},
        {"ignore-fn", required_argument, NULL, 'G'},
        {"tree", optional_argument, NULL, 'T'},     {"tree-depth", required_argument, NULL, 'D'},
        {"threshold", required_argument, NULL, 'P'}, {"function", required_argument, NULL, 'U'},
        {"inverted", no_argument, NULL, 'I'},
        {NULL, 0, NULL, 0}};
    bool raw = false;
    bool is_report = strcmp(cmd, "report") == 0, is_leaks = strcmp(cmd, "leaks") == 0,
         is_flame = strcmp(cmd, "flame") == 0, is_html = strcmp(cmd, "html") == 0,
         is_errors = strcmp(cmd, "errors") == 0, is_export = strcmp(cmd, "export") == 0;
    int c;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, is_html || is_export ? ":ho:" : ":h", opts, NULL)) !=
           -1) {
        switch (c) {
        case 'o':
            if (!is_html && !is_export)
                return bad_usage(cmd, "-o: an option of html, export and run%s", "");
            output = optarg;
            break;
        case 'F':
            if (!is_export || !export_format_valid(optarg))
                return bad_usage(cmd, is_export ? "--format %s: want massif, speedscope or pprof"
                                                : "--format: an option of export (%s)",
                                 optarg);
            xo.format = optarg;
            break;
        case 's':
            if (!is_report)
                return bad_usage(cmd, "--sort: an option of report and diff (%s)", optarg);
            if (!report_measure_valid(optarg)) {
                char m[256];
                snprintf(m, sizeof m, "--sort %s: want %s", optarg, measure_names());
                return bad_usage(cmd, "%s", m);
            }
            ro.sort = optarg;
            break;
        case 't':
            if (!(is_report || is_html) || !parse_top(optarg, is_html ? &ho.top : &ro.top))
                return bad_usage(cmd, "--top %s: want a number", optarg);
            break;
        case 'j':
            if (is_html)
                return bad_usage(cmd, "--json: not an option of html%s", "");
            ro.json = lo.json = fo.json = eo.json = true;
            break;
        case 'm':
            if (!is_flame)
                return bad_usage(cmd, "--measure: an option of flame (%s)", optarg);
            if (!flame_measure_valid(optarg)) {
                char m[256];
                snprintf(m, sizeof m, "--measure %s: want %s", optarg, measure_names());
                return bad_usage(cmd, "%s", m);
            }
            fo.measure = optarg;
            break;
        case 'A':
            if (is_leaks || is_errors)
                return bad_usage(cmd, "--alloc-fn: leaks and errors show whole stacks, as "
                                      "memcheck does (%s)", optarg);
            if (!alloc_fn_add(optarg)) {
                tool_error("out of memory");
                return 1;
            }
            break;
        case 'G':
            if (is_leaks || is_errors)
                return bad_usage(cmd, "--ignore-fn: leaks and errors show every block, as "
                                      "memcheck does (%s)", optarg);
            if (!ignore_fn_add(optarg)) {
                tool_error("out of memory");
                return 1;
            }
            break;
        case 'R':
            if (is_leaks || is_errors)
                return bad_usage(cmd, "--raw: leaks and errors show whole stacks already%s", "");
            raw = true;
            break;
        case 'I':
            if (!is_flame)
                return bad_usage(cmd, "--inverted: an option of flame%s", "");
            fo.inverted = true;
            break;
        case 'U':
            if (!is_report)
                return bad_usage(cmd, "--function: an option of report (%s)", optarg);
            ro.focus = optarg;
            break;
        case 'T':
            if (!is_report)
                return bad_usage(cmd, "--tree: an option of report%s", "");
            ro.tree = optarg ? optarg : "top-down";
            if (strcmp(ro.tree, "top-down") != 0 && strcmp(ro.tree, "bottom-up") != 0)
                return bad_usage(cmd, "--tree=%s: want top-down or bottom-up", ro.tree);
            break;
        case 'D': {
            size_t n;
            if (!is_report || !parse_top(optarg, &n) || n == 0 || n > 1000)
                return bad_usage(cmd, "--tree-depth %s: want a number from 1 to 1000", optarg);
            ro.tree_depth = (unsigned)n;
            break;
        }
        case 'P': {
            char *end;
            errno = 0;
            double p = strtod(optarg, &end);
            if (!is_report || end == optarg || *end || errno || !(p >= 0 && p <= 100))
                return bad_usage(cmd, "--threshold %s: want a percentage from 0 to 100", optarg);
            ro.threshold = p;
            break;
        }
        case 'H':
            if (!is_report)
                return bad_usage(cmd, "--histograms: an option of report%s", "");
            ro.histograms = true;
            break;
        case 'f':
            if (!is_flame)
                return bad_usage(cmd, "--folded: an option of flame%s", "");
            fo.folded = true;
            break;
        case 'd': debug_dir = optarg; break;
        case 'M':
            if (!set_max_text(optarg))
                return bad_usage(cmd, "--max-text %s: want a size such as 2G", optarg);
            break;
        case 'N': view_native = true; break;
        case 'B':
            if (!view_by_parse(optarg))
                return bad_usage(cmd, "--by %s: want line, function or stack", optarg);
            break;
        case 'S':
            if (!is_leaks && !is_errors)
                return bad_usage(cmd, "--suppressions: an option of leaks and errors (%s)",
                                 optarg);
            lo.suppressions = eo.suppressions = optarg;
            break;
        case 'k':
            if (!is_leaks || !leak_kinds_parse(optarg, &lo.kinds))
                return bad_usage(cmd, is_leaks ? "--kinds %s: want a list of definite, indirect, "
                                                 "possible, reachable, or all"
                                               : "--kinds: an option of leaks (%s)",
                                 optarg);
            break;
        case 'e':
            if ((!is_leaks && !is_errors) || !parse_exitcode(optarg, &lo.error_exitcode))
                return bad_usage(cmd, "--error-exitcode %s: want a number from 1 to 255", optarg);
            eo.error_exitcode = lo.error_exitcode;
            break;
        case 'h': fputs(usage_of(cmd), stdout); return 0;
        case ':': return bad_usage(cmd, "%s needs a value", argv[optind - 1]);
        default: return bad_usage(cmd, "unknown option %s", argv[optind - 1]);
        }
    }
    if (optind != argc - 1)
        return bad_usage(cmd, optind == argc ? "which dump?%s" : "one dump at a time%s", "");
    if (fo.folded && fo.json)
        return bad_usage(cmd, "--folded and --json: one or the other%s", "");
    if ((ro.tree || ro.focus) && ro.json)
        return bad_usage(cmd, "--tree and --function: text only (flame --json gives the tree "
                              "as JSON)%s", "");
    if ((ro.tree_depth || ro.threshold != 1.0) && !ro.tree && !ro.focus)
        return bad_usage(cmd, "--tree-depth and --threshold go with --tree%s", "");
    if (ro.histograms && ro.json)
        return bad_usage(cmd, "--histograms: the JSON has every site's histograms already%s", "");
    view_fold = !raw && !is_leaks && !is_errors; /* allocator wrappers folded away */
    if (is_export && !xo.format)
        return bad_usage(cmd, "which format? (--format massif, speedscope or pprof)%s", "");
    dump_t d;
    int r = load_or_complain(argv[optind], &d);
    if (r)
        return r;
    symbolizer_t *sym = sym_new(&d, debug_dir);
    if (!sym) {
        tool_error("out of memory");
        dump_free(&d);
        return 1;
    }
    if (view_ignore(&d, sym) != 0) {
        sym_free(sym);
        dump_free(&d);
        return 1;
    }
    if (is_html || (is_export && output)) {
        /* written to a temporary file and renamed: a half-written page never replaces one */
        char tmp[4096];
        ho.out = stdout;
        if (output) {
            snprintf(tmp, sizeof tmp, "%s.tmp.%ld", output, (long)getpid());
            ho.out = fopen(tmp, "w");
            if (!ho.out) {
                tool_error("cannot write %s: %s", tmp, strerror(errno));
                sym_free(sym);
                dump_free(&d);
                return 1;
            }
        }
        xo.out = ho.out;
        r = is_html ? cmd_html(&d, sym, &ho) : cmd_export(&d, sym, &xo);
        if (output) {
            if (fclose(ho.out) != 0 && !out_errno)
                out_errno = errno;
            if (out_errno) {
                tool_error("cannot write %s: %s", output, strerror(out_errno));
                out_errno = 0; /* said */
                r = 1;
            }
            if (r == 0 && rename(tmp, output) != 0) {
                tool_error("cannot write %s: %s", output, strerror(errno));
                r = 1;
            }
            if (r)
                unlink(tmp);
        }
    } else {
        r = is_report   ? cmd_report(&d, sym, &ro)
            : is_leaks  ? cmd_leaks(&d, sym, &lo)
            : is_errors ? cmd_errors(&d, sym, &eo)
            : is_export ? cmd_export(&d, sym, &xo)
                        : cmd_flame(&d, sym, &fo);
    }
    sym_free(sym);
    dump_free(&d);
    return r;
}

/* ---- run ------------------------------------------------------------------------------------- */
static bool readable(const char *p) {
    return access(p, R_OK) == 0;
}

/* The library: beside the command once installed (bin/../lib), in the build tree when run from
 * it (tools/../src/.libs), or in the configured libdir. */
static bool find_library(char *out, size_t cap) {
    char self[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n > 0) {
        self[n] = '\0';
        char *slash = strrchr(self, '/');
        if (slash) {
            *slash = '\0';
            static const char *const rel[] = {"/../src/.libs/libtallymalloc.so",
                                              "/../lib/libtallymalloc.so"};
            for (size_t i = 0; i < 2; i++) {
                if ((size_t)snprintf(out, cap, "%s%s", self, rel[i]) >= cap)
                    continue;
                char real[PATH_MAX];
                if (readable(out) && realpath(out, real)) {
                    snprintf(out, cap, "%s", real);
                    return true;
                }
            }
        }
    }
    snprintf(out, cap, "%s/libtallymalloc.so", TALLY_LIBDIR);
    return readable(out);
}

/* pattern with %p and %e expanded as the library does */
static void expand(char *out, size_t cap, const char *pattern, const char *pid, const char *name) {
    size_t k = 0;
    for (const char *s = pattern; *s && k + 1 < cap; s++) {
        if (s[0] == '%' && s[1] == 'p') {
            k += (size_t)snprintf(out + k, cap - k, "%s", pid);
            s++;
        } else if (s[0] == '%' && s[1] == 'e') {
            k += (size_t)snprintf(out + k, cap - k, "%s", name);
            s++;
        } else if (s[0] == '%' && s[1] == '%') {
            out[k++] = '%';
            s++;
        } else {
            out[k++] = *s;
        }
        if (k >= cap)
            k = cap - 1;
    }
    out[k] = '\0';
}

/* Waits for the processes the program left running (they were reparented to us, a subreaper). */
static void wait_descendants(const char *prog) {
    bool said = false;
    for (;;) {
        int st;
        pid_t p = waitpid(-1, &st, said ? 0 : WNOHANG);
        if (p < 0 && errno == EINTR)
            continue;
        if (p < 0)
            return; /* ECHILD: none left */
        if (p == 0) {
            fprintf(stderr, "%s: %s has exited; waiting for the processes it left running, "
                            "whose dumps come when they exit\n",
                    tool_name, prog);
            said = true;
        }
    }
}

/* The dump of process pid, whatever program it ran last (%e). */
static bool find_dump(const char *pattern, const char *pid, const char *name, char *out,
                      size_t cap) {
    char pat[PATH_MAX + 64];
    expand(pat, sizeof pat, pattern, pid, strstr(pattern, "%e") ? "*" : name);
    glob_t g;
    if (glob(pat, 0, NULL, &g) != 0)
        return false;
    bool found = g.gl_pathc > 0;
    if (found)
        snprintf(out, cap, "%s", g.gl_pathv[0]);
    globfree(&g);
    return found;
}

/* Names every other dump the run wrote (the pattern's, newer than the run): each process of a
 * run writes its own. */
static void list_other_dumps(const char *pattern, const char *main_dump,
                             const struct timespec *started, const char *cwd) {
    char pat[PATH_MAX + 64];
    expand(pat, sizeof pat, pattern, "[0-9]*", "*");
    glob_t g;
    if (glob(pat, 0, NULL, &g) != 0)
        return;
    size_t n = 0, cl = strlen(cwd);
    for (size_t i = 0; i < g.gl_pathc; i++) {
        struct stat st;
        const char *f = g.gl_pathv[i];
        if (strcmp(f, main_dump) == 0 || stat(f, &st) != 0 ||
            st.st_mtim.tv_sec < started->tv_sec ||
            (st.st_mtim.tv_sec == started->tv_sec && st.st_mtim.tv_nsec < started->tv_nsec))
            continue; /* another run's */
        if (n++ == 0)
            fprintf(stderr, "%s: the dumps of the processes it started:\n", tool_name);
        fprintf(stderr, "%s:   %s\n", tool_name,
                strncmp(f, cwd, cl) == 0 && f[cl] == '/' ? f + cl + 1 : f);
    }
    globfree(&g);
}

static int cmd_run(int argc, char **argv) {
    const char *output = NULL, *lib_opt = NULL;
    unsigned long long sample = 0;
    bool all = false, leaks = false, stats = false, check = false;
    int leak_exitcode = 0;
    const char *suppressions = NULL;
    static const struct option opts[] = {
        {"output", required_argument, NULL, 'o'}, {"all", no_argument, NULL, 'a'},
        {"sample", required_argument, NULL, 's'}, {"leaks", no_argument, NULL, 'l'},
        {"stats", no_argument, NULL, 'S'},        {"lib", required_argument, NULL, 'L'},
        {"help", no_argument, NULL, 'h'},         {"error-exitcode", required_argument, NULL, 'e'},
        {"suppressions", required_argument, NULL, 'U'}, {"check", no_argument, NULL, 'c'},
        {NULL, 0, NULL, 0}};
    int c;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "+:o:h", opts, NULL)) != -1) {
        switch (c) {
        case 'o': output = optarg; break;
        case 'a': all = true; break;
        case 's':
            if (!parse_size(optarg, &sample))
                return bad_usage("run", "--sample %s: want a number of bytes (512k, 1M, ...)",
                                 optarg);
            break;
        case 'l': leaks = all = true; break;
        case 'c': check = all = true; break;
        case 'S': stats = true; break;
        case 'U': suppressions = optarg; break;
        case 'L': lib_opt = optarg; break;
        case 'e':
            if (!parse_exitcode(optarg, &leak_exitcode))
                return bad_usage("run", "--error-exitcode %s: want a number from 1 to 255", optarg);
            break;
        case 'h': fputs(usage_run, stdout); return 0;
        case ':': return bad_usage("run", "%s needs a value", argv[optind - 1]);
        default: return bad_usage("run", "unknown option %s", argv[optind - 1]);
        }
    }
    if (all && sample)
        return bad_usage("run", "--all and --sample %s: one or the other", "");
    if (leak_exitcode && !leaks && !check)
        return bad_usage("run", "--error-exitcode: an option of --leaks and --check%s", "");
    if (suppressions && !leaks && !check)
        return bad_usage("run", "--suppressions: an option of --leaks and --check%s", "");
    if (suppressions && !readable(suppressions)) {
        tool_error("--suppressions %s: %s", suppressions, strerror(errno));
        return 2;
    }
    if (optind >= argc)
        return bad_usage("run", "which program?%s", "");
    char lib[PATH_MAX];
    if (lib_opt) {
        if (!realpath(lib_opt, lib) || !readable(lib)) {
            tool_error("--lib %s: %s", lib_opt, strerror(errno));
            return 2;
        }
    } else if (!find_library(lib, sizeof lib)) {
        tool_error("libtallymalloc.so not found beside tally, in the build tree, or in %s "
                   "(use --lib PATH)",
                   TALLY_LIBDIR);
        return 2;
    }
    const char *prog = argv[optind];
    const char *name = sym_basename(prog);
    char pattern[PATH_MAX + 64], cwd[PATH_MAX];
    if (!getcwd(cwd, sizeof cwd)) {
        tool_error("cannot tell the working directory: %s", strerror(errno));
        return 2;
    }
    /* Every process of the run writes a dump of its own (a pattern with %p). -o FILE without
     * %p names the program's own dump: the others go beside it, FILE with their pid before its
     * extension, and the program's is renamed to FILE when the run is over. */
    char wanted[PATH_MAX + 64] = "";
    if (output && strstr(output, "%p")) {
        snprintf(pattern, sizeof pattern, "%s%s%s", output[0] == '/' ? "" : cwd,
                 output[0] == '/' ? "" : "/", output);
    } else if (output) {
        snprintf(wanted, sizeof wanted, "%s%s%s", output[0] == '/' ? "" : cwd,
                 output[0] == '/' ? "" : "/", output);
        const char *base = strrchr(wanted, '/') + 1, *dot = strrchr(base, '.');
        size_t stem = dot && dot != base ? (size_t)(dot - wanted) : strlen(wanted);
        snprintf(pattern, sizeof pattern, "%.*s.%%p%s", (int)stem, wanted, wanted + stem);
    } else {
        snprintf(pattern, sizeof pattern, "%s/tally.%s.%%p.tly", cwd, name);
    }
    struct timespec started;
    clock_gettime(CLOCK_REALTIME_COARSE, &started); /* the clock file times come from */
    bool python_env_set = getenv("PYTHONMALLOC") != NULL;

    /* The child's environment: the library first in LD_PRELOAD. */
    const char *old = getenv("LD_PRELOAD");
    size_t plen = strlen(lib) + (old ? strlen(old) : 0) + 2;
    char *preload = malloc(plen);
    if (!preload) {
        tool_error("out of memory");
        return 1;
    }
    snprintf(preload, plen, "%s%s%s", lib, old && *old ? ":" : "", old ? old : "");
    char sample_s[32];
    snprintf(sample_s, sizeof sample_s, "%llu", sample);

    struct sigaction ign = {.sa_handler = SIG_IGN}, old_int, old_quit;
    sigaction(SIGINT, &ign, &old_int);
    sigaction(SIGQUIT, &ign, &old_quit);
    /* The processes the program leaves behind come to us when their parent exits: the run is
     * over, and every dump written, when the last of them is gone. */
    prctl(PR_SET_CHILD_SUBREAPER, 1);
    pid_t pid = fork();
    if (pid < 0) {
        tool_error("fork: %s", strerror(errno));
        return 1;
    }
    if (pid == 0) {
        sigaction(SIGINT, &old_int, NULL);
        sigaction(SIGQUIT, &old_quit, NULL);
        setenv("LD_PRELOAD", preload, 1);
        setenv("TALLY_PROFILE", all ? "all" : "sample", 1);
        setenv("TALLY_OUT", pattern, 1);
        if (sample)
            setenv("TALLY_SAMPLE", sample_s, 1);
        if (stats)
            setenv("TALLY_STATS", "1", 1);
        if (leaks)
            setenv("TALLY_LEAKS", "quiet", 1); /* tally prints the report, symbolized */
        if (check)
            setenv("TALLY_CHECK", "quiet", 1); /* tally prints them, symbolized */
        /* CPython's pymalloc takes its memory with mmap, out of the profiler's sight: with
         * this, Python objects come through malloc too. Harmless to any other program. */
        if (!python_env_set)
            setenv("PYTHONMALLOC", "malloc", 1);
        execvp(prog, argv + optind);
        int e = errno;
        fprintf(stderr, "%s: cannot run %s: %s\n", tool_name, prog, strerror(e));
        _exit(e == ENOENT ? 127 : 126);
    }
    int status;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    sigaction(SIGINT, &old_int, NULL);
    sigaction(SIGQUIT, &old_quit, NULL);
    free(preload);
    wait_descendants(prog);
    int rc = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    char pid_s[32];
    snprintf(pid_s, sizeof pid_s, "%ld", (long)pid);
    if (WIFEXITED(status) && (rc == 126 || rc == 127)) {
        char probe[PATH_MAX];
        expand(probe, sizeof probe, pattern, pid_s, name);
        if (!readable(probe))
            return rc; /* exec failed (we said why), or the program ran and said 127 itself */
    }

    /* Where the dumps went: the program's own (it may have exec'd another program, %e), and
     * those of the processes it started. */
    char main_dump[PATH_MAX + 64];
    if (!find_dump(pattern, pid_s, name, main_dump, sizeof main_dump))
        expand(main_dump, sizeof main_dump, pattern, pid_s, name);
    if (*wanted && readable(main_dump)) {
        char final[PATH_MAX + 64];
        expand(final, sizeof final, wanted, pid_s, name);
        if (rename(main_dump, final) == 0)
            snprintf(main_dump, sizeof main_dump, "%s", final);
        else
            tool_error("cannot rename %s to %s: %s", main_dump, final, strerror(errno));
    }
    if (!WIFEXITED(status))
        fprintf(stderr, "%s: %s was killed by signal %d (%s)\n", tool_name, prog,
                WTERMSIG(status), strsignal(WTERMSIG(status)));
    dump_t d;
    char err[512];
    if (!readable(main_dump)) {
        fprintf(stderr, "%s: %s wrote no dump%s\n", tool_name, prog,
                WIFEXITED(status) ? " (did it call _exit, or exec another program?)"
                                  : ": the dump is written at exit and when SIGTERM, SIGINT, "
                                    "SIGHUP, SIGQUIT or a crash ends it, not on SIGKILL or a "
                                    "signal it handles itself");
    } else if (!dump_load(main_dump, &d, err, sizeof err)) {
        tool_error("%s", err);
    } else if (view_apply(&d) == 0) { /* a Python program's leaks by its Python frames */
        char a[32], b[32], p[32];
        double allocs = 0;
        for (size_t i = 0; i < d.nsites; i++)
            allocs += dump_count(&d, d.sites[i].alloc_count);
        const char *shown = main_dump;
        size_t cl = strlen(cwd);
        if (strncmp(main_dump, cwd, cl) == 0 && main_dump[cl] == '/')
            shown = main_dump + cl + 1;
        bool python = dump_is_python(&d);
        char frames[160] = "";
        if (d.python && d.python_frames)
            snprintf(frames, sizeof frames, "; CPython %s, its Python frames in the stacks",
                     d.python);
        else if (d.python)
            snprintf(frames, sizeof frames, "; CPython %s, whose frames the library cannot read: "
                     "native stacks", d.python);
        fprintf(stderr, "%s: dump %s (%s): %s%s allocations, peak %s%s%s%s\n", tool_name, shown,
                d.all_mode ? "every allocation" : "sampled", d.all_mode ? "" : "~",
                fmt_count(a, allocs), d.all_mode ? "" : "~", fmt_size(p, (double)d.peak_bytes),
                python && !python_env_set
                    ? "; Python ran with PYTHONMALLOC=malloc, so its objects are in it"
                    : "",
                frames);
        char note[512];
        if (unprofiled_note(&d, note, sizeof note))
            tool_error("note: %s", note);
        if (d.leak_check) {
            /* what memcheck and LeakSanitizer print at exit: the leaks and the summary */
            symbolizer_t *sym = sym_new(&d, NULL);
            leaks_opts_t lo = {.out = stderr, .error_exitcode = leak_exitcode,
                               .suppressions = suppressions};
            int lr = sym ? cmd_leaks(&d, sym, &lo) : 1;
            sym_free(sym);
            if (lr == leak_exitcode && leak_exitcode && rc == 0)
                rc = leak_exitcode;
        }
        if (d.check) {
            /* memcheck's errors and ERROR SUMMARY, with their stacks */
            symbolizer_t *sym = sym_new(&d, NULL);
            errors_opts_t eo = {.out = stderr, .error_exitcode = leak_exitcode,
                                .suppressions = suppressions};
            int er = sym ? cmd_errors(&d, sym, &eo) : 1;
            sym_free(sym);
            if (er == leak_exitcode && leak_exitcode && rc == 0)
                rc = leak_exitcode;
        }
        if (!d.leak_check && d.has_blocks && !d.check) {
            uint64_t blocks = 0, bytes = 0;
            for (size_t i = 0; i < d.nsites; i++)
                if (d.sites[i].id != 0) {
                    blocks += d.sites[i].leak_blocks;
                    bytes += d.sites[i].leak_bytes;
                }
            fprintf(stderr, "%s: %s blocks (%s) still live at exit\n", tool_name,
                    fmt_count(a, (double)blocks), fmt_size(b, (double)bytes));
        }
        fprintf(stderr, "%s: next: tally %s %s\n", tool_name,
                d.check && d.check_errors ? "errors"
                : leaks || (d.has_blocks && !sample) ? "leaks"
                                                     : "report",
                shown);
        dump_free(&d);
    }
    list_other_dumps(pattern, main_dump, &started, cwd);
    return rc;
}

/* Sites are matched by module and offset: two programs, or two builds of one, share few. */
static void diff_warn(const dump_t *a, const dump_t *b) {
    const char *pa = a->program ? sym_basename(a->program) : "?";
    const char *pb = b->program ? sym_basename(b->program) : "?";
    if (strcmp(pa, pb) != 0) {
        tool_error("warning: OLD is a dump of %s and NEW of %s: only call sites in the code "
                   "they share (the same libraries) can match",
                   pa, pb);
        return;
    }
    const dmodule_t *ma = a->nmodules ? &a->modules[0] : NULL;
    const dmodule_t *mb = b->nmodules ? &b->modules[0] : NULL;
    if (ma && mb && ma->build_id && mb->build_id && strcmp(ma->build_id, mb->build_id) != 0 &&
        strcmp(sym_basename(ma->path), sym_basename(mb->path)) == 0)
        tool_error("warning: OLD and NEW are of two builds of %s (their build-ids differ): its "
                   "own call sites match only where its code did not move",
                   sym_basename(ma->path));
}

static int diff_cmd(int argc, char **argv) {
    diff_opts_t o = {.sort = "live", .top = 10};
    const char *debug_dir = NULL;
    static const struct option opts[] = {
        {"sort", required_argument, NULL, 's'}, {"top", required_argument, NULL, 't'},
        {"json", no_argument, NULL, 'j'},       {"debug-dir", required_argument, NULL, 'd'},
        {"help", no_argument, NULL, 'h'},       {"max-text", required_argument, NULL, 'M'},
        {"native", no_argument, NULL, 'N'},     {"by", required_argument, NULL, 'B'},
        {"alloc-fn", required_argument, NULL, 'A'}, {"raw", no_argument, NULL, 'R'},
        {"ignore-fn", required_argument, NULL, 'G'},
        {NULL, 0, NULL, 0}};
    int c;
    optind = 1;
    opterr = 0;
    view_fold = true;
    while ((c = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
        switch (c) {
        case 's':
            if (!diff_measure_valid(optarg))
                return bad_usage("diff", "--sort %s: want live, allocated, count or peak", optarg);
            o.sort = optarg;
            break;
        case 't':
            if (!parse_top(optarg, &o.top))
                return bad_usage("diff", "--top %s: want a number", optarg);
            break;
        case 'j': o.json = true; break;
        case 'd': debug_dir = optarg; break;
        case 'A':
            if (!alloc_fn_add(optarg)) {
                tool_error("out of memory");
                return 1;
            }
            break;
        case 'G':
            if (!ignore_fn_add(optarg)) {
                tool_error("out of memory");
                return 1;
            }
            break;
        case 'R': view_fold = false; break;
        case 'N': view_native = true; break;
        case 'B':
            if (!view_by_parse(optarg))
                return bad_usage("diff", "--by %s: want line, function or stack", optarg);
            break;
        case 'M':
            if (!set_max_text(optarg))
                return bad_usage("diff", "--max-text %s: want a size such as 2G", optarg);
            break;
        case 'h': fputs(usage_diff, stdout); return 0;
        case ':': return bad_usage("diff", "%s needs a value", argv[optind - 1]);
        default: return bad_usage("diff", "unknown option %s", argv[optind - 1]);
        }
    }
    if (argc - optind != 2)
        return bad_usage("diff", "want two dumps, OLD and NEW%s", "");
    dump_t a, b;
    int r = load_or_complain(argv[optind], &a);
    if (r)
        return r;
    r = load_or_complain(argv[optind + 1], &b);
    if (r) {
        dump_free(&a);
        return r;
    }
    diff_warn(&a, &b);
    symbolizer_t *sa = sym_new(&a, debug_dir), *sb = sym_new(&b, debug_dir);
    if (!sa || !sb) {
        tool_error("out of memory");
        r = 1;
    } else if (!(r = view_ignore(&a, sa)) && !(r = view_ignore(&b, sb))) {
        r = cmd_diff(&a, &b, sa, sb, &o);
    }
    sym_free(sa);
    sym_free(sb);
    dump_free(&a);
    dump_free(&b);
    return r;
}

/* What a command printed may not have reached its file (a full disk, a closed pipe): say so. */
static int finish(int r) {
    if (!out_ok(stdout) || out_errno) {
        tool_error("cannot write the output: %s", strerror(out_errno));
        return 1;
    }
    return r;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fputs(usage_main, stderr);
        return 2;
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0) {
        fputs(usage_main, stdout);
        return 0;
    }
    if (strcmp(cmd, "--version") == 0) {
        printf("tally (tallymalloc) %s\n", TALLY_VERSION);
        return 0;
    }
    if (strcmp(cmd, "help") == 0) {
        if (argc == 2) {
            fputs(usage_main, stdout);
            return 0;
        }
        const char *u = usage_of(argv[2]);
        if (!u) {
            tool_error("no command '%s' (see `tally --help`)", argv[2]);
            return 2;
        }
        fputs(u, stdout);
        return 0;
    }
    if (strcmp(cmd, "run") == 0)
        return cmd_run(argc - 1, argv + 1);
    if (strcmp(cmd, "diff") == 0)
        return finish(diff_cmd(argc - 1, argv + 1));
    if (strcmp(cmd, "report") == 0 || strcmp(cmd, "leaks") == 0 || strcmp(cmd, "flame") == 0 ||
        strcmp(cmd, "html") == 0 || strcmp(cmd, "errors") == 0 || strcmp(cmd, "export") == 0)
        return finish(read_cmd(cmd, argc - 1, argv + 1));
    tool_error("no command '%s' (see `tally --help`)", cmd);
    return 2;
}
