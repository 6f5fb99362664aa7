/*
 * frag.c - fragmentation benchmark: how much memory an allocator keeps when live data shrinks
 * and the next burst of allocations asks for other sizes.
 *
 *   frag [-r ROUNDS] [-m LIVE_MB] [-s SEED]
 *
 * Each round fills the heap with small blocks until the requested bytes reach LIVE_MB MiB
 * (default 64), then frees a random 90% of all live blocks. Round k draws sizes from a band of
 * eight 16-byte classes that moves with k, so survivors of earlier rounds pin pages whose size
 * classes the next round does not want. Prints one line on stdout:
 *   peak_rss_kb=<N> peak_live_kb=<N> end_rss_kb=<N> end_live_kb=<N>
 * RSS comes from VmHWM (peak) and VmRSS (end) in /proc/self/status; live figures are requested
 * bytes as counted here.
 */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum {
    BLOCK_MIN = 16,
    BLOCK_MAX = 512,
    CLASS_SIZE = 16,
    CLASS_COUNT = BLOCK_MAX / CLASS_SIZE, // classes 0..31 hold sizes (16c, 16c + 16]
    BAND_CLASSES = 8,
    // Odd step that shares no factor with the number of band positions, so the first rounds all
    // land on different bands: 0, 7, 14, 21, 3, 10, ...
    BAND_STEP = 7,
};

_Static_assert(BLOCK_MAX % CLASS_SIZE == 0, "classes must tile 16..512");
_Static_assert(BAND_CLASSES <= CLASS_COUNT, "band wider than the class range");

// The bookkeeping lives inside the blocks (an intrusive list: next pointer, then the requested
// size), so the benchmark itself adds no memory of its own to the RSS figures.
struct block {
    struct block *next;
    uint16_t size;
};

_Static_assert(sizeof(struct block) <= BLOCK_MIN, "list node must fit the smallest block");

static _Noreturn void die_usage(const char *msg)
{
    fprintf(stderr, "frag: %s\nusage: frag [-r ROUNDS] [-m LIVE_MB] [-s SEED]\n", msg);
    exit(2);
}

#include "bench.h"

// Bias of the modulo is below 2^-40 for the ranges used here; not worth a rejection loop.
static uint64_t rng_below(uint64_t *state, uint64_t n)
{
    return rng_next(state) % n;
}

// Finds "key:   <digits> kB" in a /proc status text; returns 0 if absent.
static uint64_t status_field_kb(const char *text, const char *key)
{
    size_t klen = strlen(key);
    for (const char *line = text; *line != '\0';) {
        if (strncmp(line, key, klen) == 0) {
            const char *p = line + klen;
            while (*p == ' ' || *p == '\t')
                p++;
            uint64_t v = 0;
            while (*p >= '0' && *p <= '9')
                v = v * 10 + (uint64_t)(*p++ - '0');
            return v;
        }
        const char *nl = strchr(line, '\n');
        if (nl == NULL)
            break;
        line = nl + 1;
    }
    return 0;
}

// Reads VmHWM and VmRSS with open/read into a stack buffer: stdio would allocate through the
// allocator under test and move the very numbers we are reading.
static void read_rss_kb(uint64_t *hwm_kb, uint64_t *rss_kb)
{
    char buf[8192];
    size_t len = 0;
    int fd = open("/proc/self/status", O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        perror("frag: open /proc/self/status");
        exit(1);
    }
    for (;;) {
        ssize_t n = read(fd, buf + len, sizeof buf - 1 - len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        len += (size_t)n;
        if (len == sizeof buf - 1)
            break;
    }
    close(fd);
    buf[len] = '\0';
    *hwm_kb = status_field_kb(buf, "VmHWM:");
    *rss_kb = status_field_kb(buf, "VmRSS:");
    if (*hwm_kb == 0 || *rss_kb == 0) {
        fprintf(stderr, "frag: VmHWM/VmRSS not found in /proc/self/status\n");
        exit(1);
    }
}

int main(int argc, char **argv)
{
    uint64_t rounds = 6;
    uint64_t live_mb = 64;
    uint64_t seed = 0x9E3779B97F4A7C15ull;

    int c;
    while ((c = getopt(argc, argv, "r:m:s:")) != -1) {
        switch (c) {
        case 'r': rounds = parse_u64(optarg, "-r wants a positive integer"); break;
        case 'm': live_mb = parse_u64(optarg, "-m wants a positive integer (MiB)"); break;
        case 's': seed = parse_u64(optarg, "-s wants an integer"); break;
        default: die_usage("unknown option");
        }
    }
    if (optind != argc)
        die_usage("unexpected argument");
    if (rounds == 0 || live_mb == 0 || live_mb > (UINT64_C(1) << 30))
        die_usage("-r and -m must be positive");
    if (seed == 0)
        seed = 1; // xorshift's one fixed point

    const uint64_t target = live_mb << 20;
    const uint64_t band_positions = CLASS_COUNT - BAND_CLASSES + 1;
    uint64_t rng = seed;
    struct block *live = NULL;
    uint64_t live_n = 0, live_bytes = 0, peak_live = 0;

    for (uint64_t k = 0; k < rounds; k++) {
        uint64_t first = (k * BAND_STEP) % band_positions;
        uint64_t lo = first * CLASS_SIZE + 1;
        uint64_t hi = (first + BAND_CLASSES) * CLASS_SIZE;
        if (lo < BLOCK_MIN)
            lo = BLOCK_MIN;

        while (live_bytes < target) {
            uint16_t size = (uint16_t)(lo + rng_below(&rng, hi - lo + 1));
            struct block *b = malloc(size);
            if (b == NULL) {
                fprintf(stderr, "frag: malloc(%u) returned NULL\n", (unsigned)size);
                return 1;
            }
            // Writing the node touches the block's first bytes, so RSS reflects every block.
            b->next = live;
            b->size = size;
            live = b;
            live_n++;
            live_bytes += size;
        }
        if (live_bytes > peak_live)
            peak_live = live_bytes;

        // Free exactly 90% in one pass over the list: keep each block with probability
        // (still to keep) / (still to see), which picks a uniform random subset (Knuth's
        // selection sampling) without an index array that would add to our own RSS.
        uint64_t keep = live_n / 10, seen = 0, kept = 0;
        struct block **link = &live;
        while (*link != NULL) {
            struct block *b = *link;
            if (rng_below(&rng, live_n - seen) < keep - kept) {
                kept++;
                link = &b->next;
            } else {
                *link = b->next;
                live_bytes -= b->size;
                free(b);
            }
            seen++;
        }
        live_n = kept;
    }

    uint64_t hwm_kb, rss_kb;
    read_rss_kb(&hwm_kb, &rss_kb);
    printf("peak_rss_kb=%" PRIu64 " peak_live_kb=%" PRIu64 " end_rss_kb=%" PRIu64
           " end_live_kb=%" PRIu64 "\n",
           hwm_kb, peak_live >> 10, rss_kb, live_bytes >> 10);
    return 0;
}
