"""The Python test application (tests/python/frames.sh): known allocations at known lines.

APP_MODE=tracemalloc: tracemalloc traces it (plain CPython) and its statistics('lineno') of
what is live at the end go to the file argv[1] as JSON. APP_MODE=tally: the same work under
tallymalloc, which dumps at the same point (tally_dump(), through ctypes). Every line that
allocates what stays live is marked with a comment naming it, so that the test can find it.
"""
import concurrent.futures
import ctypes
import gc
import json
import os
import sys
import threading
import tracemalloc

import appmod

MODE = os.environ.get("APP_MODE", "tally")
keep = []


def leaf_strings(n):
    return ["s%06d" % i for i in range(n)]  # LEAF_STRINGS


def middle(n):
    return leaf_strings(n)  # via MIDDLE


def recurse(depth):
    if depth == 0:
        return [bytearray(100) for _ in range(50)]  # RECURSE_BOTTOM
    return recurse(depth - 1)  # via RECURSE_STEP


def generate(n):
    for i in range(n):
        yield {"value": i, "text": "item%d" % i}  # GENERATOR


class Record:
    def __init__(self, i):
        self.i = i
        self.payload = bytes(200) + str(i).encode()  # RECORD_PAYLOAD


def fail_deep(n):
    blob = bytearray(5000)  # FAIL_BLOB
    keep.append(blob)
    raise ValueError("deep %d" % n)


def catch_it():
    try:
        fail_deep(3)
    except ValueError as e:
        keep.append(str(e) * 100)  # CAUGHT


def alloc_native(n):
    libc = ctypes.CDLL(None)
    libc.malloc.restype = ctypes.c_void_p
    return libc.malloc(n)  # native NATIVE


def worker(k):
    return [k * 1000 + j for j in range(300)]  # WORKER


def main():
    if MODE == "tracemalloc":
        tracemalloc.start(1)
    keep.append(middle(3000))
    keep.append(recurse(12))
    keep.append(list(generate(2000)))
    keep.append([Record(i) for i in range(500)])  # RECORDS
    make = lambda n: bytearray(n)  # LAMBDA_DEF
    keep.append([make(300) for _ in range(40)])  # LAMBDA_CALL
    shape = appmod.Shape.make(800)
    keep.append(shape)
    keep.append(shape.area())
    keep.append(appmod.build_table(1500))
    ns = {}
    # compiling frees dicts, lists and tuples into CPython's free lists, and the lines that
    # reuse them later are charged for them by tracemalloc (_PyTraceMalloc_NewReference), never
    # by an allocator, which does not see the reuse: up to 4 KiB more here than tracemalloc says
    exec("data = [bytearray(48) for _ in range(400)]", ns)  # EXEC ~4096
    keep.append(ns)
    catch_it()
    if MODE == "tally":  # tracemalloc does not see a C library's malloc
        keep.append(alloc_native(123457))
    with concurrent.futures.ThreadPoolExecutor(max_workers=3) as pool:
        keep.append(list(pool.map(worker, range(20))))
    gc.collect()  # what is garbage now is held by no line, whatever the collector did so far
    if MODE == "tracemalloc":
        snap = tracemalloc.take_snapshot()
        tracemalloc.stop()
        stats = [(s.traceback[0].filename, s.traceback[0].lineno, s.size, s.count)
                 for s in snap.statistics("lineno")]
        with open(sys.argv[1], "w") as f:
            json.dump(stats, f)
    else:
        ctypes.CDLL(None).tally_dump(None)
        os._exit(0)  # no exit dump over it


main()
