/* bench.h: what the benchmark programs share. Each program defines die_usage(msg) before
 * including this file. */
#ifndef TALLY_BENCH_H
#define TALLY_BENCH_H

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>

static _Noreturn void die_usage(const char *msg);

/* A non-negative decimal option value, or a usage error naming `what`. */
static uint64_t parse_u64(const char *s, const char *what)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || s[0] == '-')
        die_usage(what);
    return v;
}

// xorshift64: a handful of cycles per draw, so the PRNG does not dominate a ~10 ns malloc+free.
static inline uint64_t rng_next(uint64_t *state)
{
    uint64_t x = *state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    *state = x;
    return x;
}

#endif
