"""A deterministic pure-Python allocation workload for python_workload.sh.

Run as `PYTHONMALLOC=malloc PYTHONHASHSEED=0 /usr/bin/python3 workload.py`
so that every object goes through malloc: the script builds and drops many
dicts, lists, strings, tuples, sets and class instances, round-trips JSON and
sorts, and prints checksums that must be the same with and without the
library.  It must not print anything that depends on addresses, time or
the environment.
"""

import collections
import hashlib
import json
import random
import sys
import zlib

rng = random.Random(20240531)


def crc(obj):
    """A stable checksum of a value's repr (sets are sorted first)."""
    return zlib.crc32(repr(obj).encode()) & 0xFFFFFFFF


def report(name, *values):
    print(name, *values)


class Point:
    __slots__ = ("x", "y")

    def __init__(self, x, y):
        self.x = x
        self.y = y

    def norm1(self):
        return abs(self.x) + abs(self.y)


class Node:
    """A plain class with a __dict__, linked into trees."""

    def __init__(self, key, left=None, right=None):
        self.key = key
        self.left = left
        self.right = right
        self.tags = {"k%d" % key: key}


def build_tree(keys):
    root = None
    for k in keys:
        if root is None:
            root = Node(k)
            continue
        cur = root
        while True:
            if k < cur.key:
                if cur.left is None:
                    cur.left = Node(k)
                    break
                cur = cur.left
            else:
                if cur.right is None:
                    cur.right = Node(k)
                    break
                cur = cur.right
    return root


def inorder(root):
    out, stack, cur = [], [], root
    while stack or cur is not None:
        while cur is not None:
            stack.append(cur)
            cur = cur.left
        cur = stack.pop()
        out.append(cur.key)
        cur = cur.right
    return out


def dicts_and_lists():
    total = 0
    for round_ in range(40):
        d = {}
        for i in range(2000):
            d["key-%d-%d" % (round_, i)] = [i, str(i), (i, i * 2)]
        for i in range(0, 2000, 3):
            del d["key-%d-%d" % (round_, i)]
        total += sum(v[0] for v in d.values())
        total += len(d)
    report("dicts_and_lists", total)


def strings():
    words = []
    for i in range(30000):
        n = rng.randrange(1, 40)
        words.append("".join(chr(97 + rng.randrange(26)) for _ in range(n % 12 + 1)))
    joined = " ".join(words)
    upper = joined.upper()
    parts = upper.split(" ")
    counts = collections.Counter(w[:2] for w in parts)
    top = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:5]
    report("strings", len(joined), crc(top), hashlib.sha256(joined.encode()).hexdigest()[:16])
    # Many short-lived concatenations and slices.
    s = ""
    for i in range(5000):
        s = (s + str(i))[-300:]
    report("concat", crc(s))


def tuples_and_sets():
    tuples = [(i % 97, i % 89, str(i % 83)) for i in range(60000)]
    uniq = set(tuples)
    frozen = frozenset(t[0] for t in tuples)
    inter = {t for t in uniq if t[0] < 50} & {t for t in uniq if t[1] < 50}
    report("tuples_and_sets", len(uniq), len(frozen), len(inter), crc(sorted(inter)[:20]))


def instances():
    pts = [Point(rng.randint(-1000, 1000), rng.randint(-1000, 1000)) for _ in range(50000)]
    pts.sort(key=lambda p: (p.norm1(), p.x, p.y))
    report("points", sum(p.norm1() for p in pts[:1000]), pts[0].x, pts[-1].y)
    keys = list(range(4000))
    rng.shuffle(keys)
    tree = build_tree(keys)
    walked = inorder(tree)
    report("tree", walked == sorted(keys), len(walked), crc(walked[::397]))
    del tree, pts


def json_roundtrips():
    docs = []
    for i in range(300):
        doc = {
            "id": i,
            "name": "item-%04d" % i,
            "tags": ["t%d" % (i % 7), "u%d" % (i % 11)],
            "nested": {"values": list(range(i % 50)), "flag": i % 2 == 0, "none": None},
            "score": round(i * 1.25, 2),
        }
        docs.append(doc)
    text = json.dumps(docs, sort_keys=True)
    for _ in range(10):
        docs = json.loads(text)
        text = json.dumps(docs, sort_keys=True, indent=1)
    back = json.loads(text)
    report("json", len(text), crc(text), back[123]["name"], sum(d["score"] for d in back))


def sorting():
    data = [rng.random() for _ in range(100000)]
    ints = [int(x * 1e6) for x in data]
    ints.sort()
    strs = sorted(map(str, ints[:20000]))
    pairs = sorted(zip(strs, range(len(strs))), reverse=True)
    report("sorting", ints[0], ints[-1], ints[50000], strs[0], crc(pairs[:10]))


def churn():
    # Grow and shrink containers so realloc paths run too.
    lst = []
    live = collections.deque()
    acc = 0
    for i in range(200000):
        lst.append(i)
        if i % 1000 == 999:
            del lst[: len(lst) // 2]
        live.append({"i": i, "s": "x" * (i % 64)})
        if len(live) > 500:
            acc += len(live.popleft()["s"])
    ba = bytearray()
    for i in range(20000):
        ba += bytes([i & 0xFF]) * (i % 7)
    report("churn", len(lst), acc, len(ba), zlib.crc32(bytes(ba)))


def main():
    dicts_and_lists()
    strings()
    tuples_and_sets()
    instances()
    json_roundtrips()
    sorting()
    churn()
    report("done", sys.version_info[:2] >= (3, 0))


if __name__ == "__main__":
    main()
