"""exact_check.py TRACE DUMP - the profiler's totals against an exact record of every call.

TRACE is what tests/prof/tracer.c wrote for one process, DUMP that process's dump (all mode).
The trace is replayed the way heaptrack counts: a realloc is a free of the old block and an
allocation of the new one (in place or not); an allocation is temporary when it is freed before
any other allocation. Calls made from inside libtallymalloc.so (its own allocations) are left
out, and so are blocks allocated before the profiler started, except those still live then:
the dump counts them once, at its "blocks of before the start" site (id 2). Prints the figures
and exits 1 on any difference.
"""
import struct
import sys

import dumpcheck

OP_END, OP_MALLOC, OP_CALLOC, OP_REALLOC, OP_FREE, OP_MEMALIGN, OP_MARK = range(7)
EARLY_SITE = 2


def records(path):
    """The trace's records up to its end (the file is a sparse mapping: zeros after it)."""
    with open(path, "rb") as f:
        while True:
            chunk = f.read(1 << 20)
            for off in range(0, len(chunk) - 31, 32):
                rec = struct.unpack_from("<BB6xQQQ", chunk, off)
                if rec[0] == OP_END:
                    return
                yield rec
            if len(chunk) < 1 << 20:
                return


def replay(path):
    live = {}  # ptr -> size, the program's blocks
    f = {"alloc_count": 0, "alloc_bytes": 0, "free_count": 0, "free_bytes": 0, "temporary": 0,
         "own_allocs": 0, "peak_bytes": 0, "early_count": 0, "early_bytes": 0, "marked": 0}
    started = False
    last = None  # the block of the last allocation (heaptrack's lastAllocationPtr)
    cur = 0

    def alloc(ptr, n):
        nonlocal last, cur
        live[ptr] = n
        last = ptr
        if started:
            f["alloc_count"] += 1
            f["alloc_bytes"] += n
        cur += n
        f["peak_bytes"] = max(f["peak_bytes"], cur) if started else 0

    def free(ptr):
        nonlocal last, cur
        if ptr not in live:
            return  # the library's own, or unknown
        n = live.pop(ptr)
        cur -= n
        if started:
            f["free_count"] += 1
            f["free_bytes"] += n
            if ptr == last:
                f["temporary"] += 1
        last = None if ptr == last else last

    own = set()
    for op, is_own, a, n, r in records(path):
        if op == OP_MARK:
            # the profiler started before this: what is live now is its site 2
            started = True
            f["marked"] = 1
            f["early_count"] = len(live)
            f["early_bytes"] = sum(live.values())
            f["alloc_count"] += len(live)
            f["alloc_bytes"] += f["early_bytes"]
            f["peak_bytes"] = cur
            continue
        if op == OP_FREE:
            if a in own:
                own.discard(a)
            else:
                free(a)
            continue
        if op == OP_REALLOC:
            if a and a in own:
                own.discard(a) if r else None
                if r:
                    own.add(r)
                continue
            if a and n == 0:  # glibc frees
                free(a)
                continue
            if not r:
                continue  # failed: the old block stays
            if a:
                free(a)
            if is_own:
                own.add(r)
                f["own_allocs"] += 1
            else:
                alloc(r, n)
            continue
        if not r:
            continue
        size = a * n if op == OP_CALLOC else n
        if is_own:
            own.add(r)
            f["own_allocs"] += 1
        else:
            alloc(r, size)
    f["live_count"] = len(live)
    f["live_bytes"] = sum(live.values())
    return f


def main():
    trace, dump = sys.argv[1:3]
    t = replay(trace)
    d = dumpcheck.parse(dump)
    if d["header"]["mode"] != "all":
        print("the dump is not of all mode")
        return 1
    sites = d["site"]
    got = {k: sum(s[k] for s in sites) for k in ("alloc_count", "alloc_bytes", "free_count",
                                                  "free_bytes", "temporary")}
    got["peak_bytes"] = d["totals"]["peak_bytes"]
    early = [s for s in sites if s["id"] == EARLY_SITE]
    got["early_count"] = early[0]["alloc_count"] if early else 0
    got["early_bytes"] = early[0]["alloc_bytes"] if early else 0
    neg = [(s["id"], k) for s in sites for k in dumpcheck.SITE_FIELDS
           if isinstance(s[k], int) and s[k] < 0]
    bad = 0
    if not t["marked"]:
        print("the trace has no start mark")
        bad += 1
    for k in ("alloc_count", "alloc_bytes", "free_count", "free_bytes", "temporary", "peak_bytes",
              "early_count", "early_bytes"):
        mark = "" if got[k] == t[k] else "   <- differs"
        bad += got[k] != t[k]
        print("%-12s exact %12d  tally %12d%s" % (k, t[k], got[k], mark))
    if neg:
        print("negative figures:", neg[:10])
        bad += 1
    print("(the library's own allocations, left out: %d)" % t["own_allocs"])
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
