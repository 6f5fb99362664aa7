/* stats.c: the allocator's statistics, gathered from the arenas (a walk over every pool header)
 * and the thread heaps' counters, then written as a text table or as JSON by one emitter.
 * Exports tally_stats_get, tally_stats_print and stats_print_at_exit (TALLY_STATS). Reads may
 * race with threads still running; figures are then approximate, never unsafe: every pool
 * header read lies in committed arena memory. */
#include "internal.h"
#include "tally.h"

#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <string.h>
#include <unistd.h>

static void sum_heap(heap_t *h, void *arg) {
    struct tally_stats *s = arg;
    for (unsigned c = 0; c < NCLASSES; c++) {
        s->classes[c].mallocs += h->bin[c].nmalloc;
        s->classes[c].bytes_requested += h->bin[c].nreq;
        s->classes[c].blocks_cached += (uint64_t)(h->bin[c].top - h->bin[c].low);
    }
    s->large_mallocs += h->stats.nlarge;
    s->large_bytes_requested += h->stats.nlarge_bytes;
    s->remote_frees += h->stats.nremote_free;
    s->pools_adopted += h->stats.nadopt;
    s->threads++;
}

/* Blocks freed by other threads and not yet collected still count in `used`. Count them by
 * walking the remote list, bounded and only ever reading inside the pool: the owner may be
 * collecting concurrently, which makes the figure approximate but never unsafe. */
uint64_t pool_pending_remote(const pool_t *p) {
    uintptr_t lo = (uintptr_t)p + POOL_HEADER, hi = (uintptr_t)p + POOL_SIZE;
    const block_t *b = (const block_t *)(atomic_load_explicit(
        &((pool_t *)p)->thread_free, memory_order_acquire) & ~TF_FLAGS);
    uint64_t n = 0;
    while (b && (uintptr_t)b >= lo && (uintptr_t)b < hi && n < p->capacity) {
        n++;
        b = __atomic_load_n(&b->next, __ATOMIC_RELAXED);
    }
    return n;
}

void stats_collect_pools(struct tally_stats *s) {
    memset(s, 0, sizeof *s);
    s->struct_size = sizeof *s;
    s->nclasses = NCLASSES;
    arena_lock();
    uintptr_t end = g.next_pool, committed = g.committed;
    arena_unlock();
    s->reserve_bytes = g.reserve;
    s->arena_bytes = committed - g.base;
    s->arenas = s->arena_bytes / ARENA_SIZE;
    s->never_used_bytes = committed - end;
    for (uintptr_t a = g.base; a < end; a += POOL_SIZE) {
        const pool_t *p = (const pool_t *)a;
        if (p->state == POOL_EMPTY || p->state == POOL_FRESH) {
            s->empty_pool_bytes += POOL_SIZE;
            continue;
        }
        unsigned c = p->szidx < NCLASSES ? p->szidx : 0;
        uint64_t used = p->used <= p->capacity ? p->used : p->capacity;
        uint64_t pending = pool_pending_remote(p);
        used = pending < used ? used - pending : 0;
        uint64_t bsize = CLASS_SIZE(c), cap = POOL_CAPACITY(c);
        s->classes[c].pools++;
        s->classes[c].blocks_in_use += used;
        s->classes[c].free_blocks += cap - used;
        s->in_use_bytes += used * bsize;
        s->free_block_bytes += (cap - used) * bsize;
        s->pool_overhead_bytes += POOL_SIZE - cap * bsize;
    }
    heap_foreach(sum_heap, s);
    s->large_mallocs += alloc_large_unowned();
    for (unsigned c = 0; c < NCLASSES; c++) {
        struct tally_class_stats *k = &s->classes[c];
        /* Blocks in the threads' bins are out of their pools but free. */
        uint64_t cached = k->blocks_cached < k->blocks_in_use ? k->blocks_cached
                                                              : k->blocks_in_use;
        k->blocks_cached = cached;
        k->blocks_in_use -= cached;
        k->free_blocks += cached;
        s->in_use_bytes -= cached * CLASS_SIZE(c);
        s->free_block_bytes += cached * CLASS_SIZE(c);
        k->size = CLASS_SIZE(c);
        k->bytes_granted = k->mallocs * k->size;
        k->bytes_held = k->pools * POOL_SIZE;
        s->small_mallocs += k->mallocs;
    }
    s->fragmentation =
        s->arena_bytes ? 1.0 - (double)s->in_use_bytes / (double)s->arena_bytes : 0.0;
}

void stats_collect(struct tally_stats *s) {
    stats_collect_pools(s);
    struct mallinfo2 mi = glibc_mallinfo2();
    s->system_heap_bytes = mi.arena + mi.hblkhd;
}

static double ratio(uint64_t a, uint64_t b) {
    return b ? (double)a / (double)b : 0.0;
}

static void emit_text(fmt_t *f, const struct tally_stats *s) {
    fmt_str(f, "tally: tallymalloc " TALLY_VERSION_STRING " statistics, pid ");
    fmt_u64(f, (uint64_t)getpid());
    fmt_str(f, " (");
    fmt_str(f, program_invocation_short_name);
    fmt_str(f, ")\n");
    fmt_str(f, "tally:  class  pools   in use     free      mallocs    requested      granted"
               "  slack       held\n");
    for (unsigned c = 0; c < NCLASSES; c++) {
        const struct tally_class_stats *k = &s->classes[c];
        if (!k->pools && !k->mallocs)
            continue;
        fmt_str(f, "tally: ");
        fmt_u64w(f, k->size, 6);
        fmt_u64w(f, k->pools, 7);
        fmt_u64w(f, k->blocks_in_use, 9);
        fmt_u64w(f, k->free_blocks, 9);
        fmt_u64w(f, k->mallocs, 13);
        fmt_u64w(f, k->bytes_requested, 13);
        fmt_u64w(f, k->bytes_granted, 13);
        fmt_str(f, "  ");
        double slack = k->bytes_granted ? 100.0 * (1.0 - ratio(k->bytes_requested,
                                                                 k->bytes_granted)) : 0.0;
        fmt_fixed(f, slack, 1);
        fmt_str(f, slack < 10 ? "%  " : "% ");
        fmt_bytes(f, k->bytes_held);
        fmt_char(f, '\n');
    }
    fmt_str(f, "tally: requests: ");
    fmt_u64(f, s->small_mallocs);
    fmt_str(f, " served by pools, ");
    fmt_u64(f, s->large_mallocs);
    fmt_str(f, " sent to the system malloc, ");
    fmt_str(f, raw_allocator_name());
    fmt_str(f, "'s (over 512 bytes, aligned over 16, or sampled by the profiler; ");
    fmt_bytes(f, s->large_bytes_requested);
    fmt_str(f, " requested)\n");
    fmt_str(f, "tally: arenas: ");
    fmt_u64(f, s->arenas);
    fmt_str(f, " of 1 MiB mapped (");
    fmt_bytes(f, s->arena_bytes);
    fmt_str(f, "), never returned to the OS; ");
    fmt_bytes(f, s->reserve_bytes);
    fmt_str(f, " of address space reserved\n");
    fmt_str(f, "tally: arena memory ");
    fmt_bytes(f, s->arena_bytes);
    fmt_str(f, " = in use ");
    fmt_bytes(f, s->in_use_bytes);
    fmt_str(f, " + free blocks ");
    fmt_bytes(f, s->free_block_bytes);
    fmt_str(f, " + pool overhead ");
    fmt_bytes(f, s->pool_overhead_bytes);
    fmt_str(f, " + empty pools ");
    fmt_bytes(f, s->empty_pool_bytes);
    fmt_str(f, " + not yet used ");
    fmt_bytes(f, s->never_used_bytes);
    fmt_char(f, '\n');
    fmt_str(f, "tally: fragmentation: ");
    fmt_fixed(f, 100.0 * s->fragmentation, 1);
    fmt_str(f, "% of arena memory is not in live blocks\n");
    fmt_str(f, "tally: threads: ");
    fmt_u64(f, s->threads);
    fmt_str(f, " heaps; ");
    fmt_u64(f, s->remote_frees);
    fmt_str(f, " cross-thread frees; ");
    fmt_u64(f, s->pools_adopted);
    fmt_str(f, " pools adopted; system malloc heap ");
    fmt_bytes(f, s->system_heap_bytes);
    fmt_char(f, '\n');
}

static void json_field(fmt_t *f, const char *name, uint64_t v, bool comma) {
    fmt_json_str(f, name);
    fmt_char(f, ':');
    fmt_u64(f, v);
    if (comma)
        fmt_char(f, ',');
}

static void emit_json(fmt_t *f, const struct tally_stats *s) {
    fmt_str(f, "{\"tallymalloc\":\"" TALLY_VERSION_STRING "\",");
    json_field(f, "pid", (uint64_t)getpid(), true);
    fmt_str(f, "\"program\":");
    fmt_json_str(f, program_invocation_short_name);
    fmt_str(f, ",\"pool_size\":");
    fmt_u64(f, POOL_SIZE);
    fmt_str(f, ",\"arena_size\":");
    fmt_u64(f, ARENA_SIZE);
    fmt_str(f, ",\"arenas_returned_to_os\":false,\"classes\":[");
    for (unsigned c = 0; c < NCLASSES; c++) {
        const struct tally_class_stats *k = &s->classes[c];
        fmt_str(f, c ? ",{" : "{");
        json_field(f, "size", k->size, true);
        json_field(f, "pools", k->pools, true);
        json_field(f, "blocks_in_use", k->blocks_in_use, true);
        json_field(f, "free_blocks", k->free_blocks, true);
        json_field(f, "blocks_cached", k->blocks_cached, true);
        json_field(f, "mallocs", k->mallocs, true);
        json_field(f, "bytes_requested", k->bytes_requested, true);
        json_field(f, "bytes_granted", k->bytes_granted, true);
        json_field(f, "bytes_held", k->bytes_held, false);
        fmt_char(f, '}');
    }
    fmt_str(f, "],\"totals\":{");
    json_field(f, "small_mallocs", s->small_mallocs, true);
    json_field(f, "large_mallocs", s->large_mallocs, true);
    json_field(f, "large_bytes_requested", s->large_bytes_requested, true);
    json_field(f, "reserve_bytes", s->reserve_bytes, true);
    json_field(f, "arenas", s->arenas, true);
    json_field(f, "arena_bytes", s->arena_bytes, true);
    json_field(f, "in_use_bytes", s->in_use_bytes, true);
    json_field(f, "free_block_bytes", s->free_block_bytes, true);
    json_field(f, "pool_overhead_bytes", s->pool_overhead_bytes, true);
    json_field(f, "empty_pool_bytes", s->empty_pool_bytes, true);
    json_field(f, "never_used_bytes", s->never_used_bytes, true);
    fmt_str(f, "\"fragmentation\":");
    fmt_fixed(f, s->fragmentation, 6);
    fmt_char(f, ',');
    json_field(f, "remote_frees", s->remote_frees, true);
    json_field(f, "pools_adopted", s->pools_adopted, true);
    json_field(f, "threads", s->threads, true);
    json_field(f, "system_heap_bytes", s->system_heap_bytes, false);
    fmt_str(f, "}}\n");
}

static void stats_write(int fd, bool json) {
    struct tally_stats s;
    char buf[4096];
    fmt_t f;
    stats_collect(&s);
    fmt_init(&f, buf, sizeof buf, fd);
    if (json)
        emit_json(&f, &s);
    else
        emit_text(&f, &s);
    fmt_flush(&f);
}

TALLY_EXPORT int tally_stats_get(struct tally_stats *out, size_t size) {
    if (out == NULL || size < sizeof *out)
        return -1;
    if (!tally_init_global())
        return -1;
    stats_collect(out);
    return 0;
}

TALLY_EXPORT int tally_stats_print(int fd, int json) {
    if (fd < 0)
        return -1;
    tally_init_global();
    stats_write(fd, json != 0);
    return 0;
}

void stats_print_at_exit(void *unused) {
    (void)unused;
    int saved = errno;
    int fd = message_fd();
    if (opt.stats_file) {
        char path[4096];
        if (!fmt_expand_path(path, sizeof path, opt.stats_file)) {
            tally_message("TALLY_STATS_FILE is too long; statistics not written", NULL, NULL);
            return;
        }
        /* No symlink following and owner-only: the file may live in a shared directory. */
        fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (fd < 0) {
            tally_message("cannot write statistics to ", path, NULL);
            errno = saved;
            return;
        }
    }
    stats_write(fd, opt.stats == STATS_JSON);
    if (opt.stats_file)
        close(fd);
    errno = saved;
}
