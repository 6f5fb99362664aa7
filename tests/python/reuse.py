"""reuse.py: code objects freed and made again at the same addresses (tests/python/frames.sh).
Each round compiles a function of its own name, f<i>, has it allocate a block of a size of its
own, and drops it: the next round's code objects take the freed memory. Every block must be
charged to the function that allocated it, never to an earlier one that lived at its address."""
import sys

keep = []
addresses = set()
for i in range(60):
    ns = {}
    exec("def f%d():\n    return bytearray(%d)\nblock = f%d()\n" % (i, 100000 + 16 * i, i), ns)
    keep.append(ns["block"])
    addresses.add(id(ns["f%d" % i].__code__))
    ns.clear()  # the function and its module are a cycle: break it, so that they go now
print("reuse: ok", len(keep), "rounds,", len(addresses), "code object addresses")
