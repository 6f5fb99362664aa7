"""nesting.py PYTHON_VIEW_JSON NATIVE_VIEW_JSON: the stacks of tests/python/app.py show the
function nesting the program has (tests/python/frames.sh).

Each check names the innermost Python frame of a site (function, file, marked line) and the
functions its callers must include, in order (a subsequence, so that the comprehension frames
of CPython 3.11, inlined from 3.12 on, may or may not be there)."""
import json
import os
import re
import sys

here = os.path.dirname(os.path.abspath(__file__))


def line_of(path, name):
    for n, text in enumerate(open(os.path.join(here, path)), 1):
        if re.search(r"#\s*(via\s+|native\s+)?%s\b" % name, text):
            return n
    raise SystemExit("no line marked %s in %s" % (name, path))


CHECKS = [
    ("LEAF_STRINGS", "app.py", ["leaf_strings", "middle", "main", "<module>"]),
    ("RECURSE_BOTTOM", "app.py", ["recurse"] * 13 + ["main", "<module>"]),
    ("GENERATOR", "app.py", ["generate", "main", "<module>"]),
    ("RECORD_PAYLOAD", "app.py", ["Record.__init__", "main", "<module>"]),
    ("LAMBDA_DEF", "app.py", ["main.<locals>.<lambda>", "main", "<module>"]),
    ("MOD_POINTS", "appmod.py", ["Shape.__init__", "Shape.make", "main", "<module>"]),
    ("MOD_AREA", "appmod.py", ["Shape.area", "main", "<module>"]),
    ("MOD_TABLE", "appmod.py", ["build_table", "main", "<module>"]),
    ("FAIL_BLOB", "app.py", ["fail_deep", "catch_it", "main", "<module>"]),
    ("CAUGHT", "app.py", ["catch_it", "main", "<module>"]),
    ("EXEC", "app.py", ["main", "<module>"]),
    ("WORKER", "app.py", ["worker", "_WorkItem.run", "_worker", "Thread.run"]),
]


def subsequence(want, names):
    it = iter(names)
    return all(any(w == n for n in it) for w in want)


def main():
    py = json.load(open(sys.argv[1]))["sites"]
    native = json.load(open(sys.argv[2]))["sites"]
    bad = 0
    for mark, path, want in CHECKS:
        line = line_of(path, mark)
        stacks = [s["frames"] for s in py
                  if s["frames"] and s["frames"][0].get("python") and
                  os.path.basename(s["frames"][0]["file"]) == path and
                  s["frames"][0]["line"] == line]
        if mark == "EXEC":  # the exec'd code's frames are <string>'s, its callers app.py's
            stacks = [s["frames"] for s in py if s["frames"] and
                      s["frames"][0].get("file") == "<string>" and s["live_bytes"] > 10000]
        names = [[f["function"] for f in st] for st in stacks]
        ok = any(subsequence(want, n) for n in names) and all(
            all(f.get("python") for f in st) for st in stacks)
        bad += not ok
        print("%-4s %-15s %s:%d  %s" % ("ok" if ok else "BAD", mark, path, line,
                                       " <- ".join(names[0]) if names else "no such site"))
    # ctypes calling the C library's malloc from Python: the native frames below the Python
    # frame that made the call, in the merged stack
    line = line_of("app.py", "NATIVE")
    hits = [s for s in native if s["alloc_bytes"] == 123457]
    ok = False
    for s in hits:
        fr = s["frames"]
        first_py = next((i for i, f in enumerate(fr) if f.get("python")), None)
        ok |= (first_py is not None and first_py > 0 and
               fr[first_py]["function"] == "alloc_native" and fr[first_py]["line"] == line and
               any(f.get("module") and re.search(r"ctypes|ffi", os.path.basename(f["module"]))
                   for f in fr[:first_py]))
    bad += not ok
    print("%-4s %-15s %s" % ("ok" if ok else "BAD", "NATIVE", " <- ".join(
        (f["function"] or os.path.basename(f["module"] or "?")) for f in hits[0]["frames"][:12])
        if hits else "no site of 123457 bytes"))
    return 1 if bad else 0


sys.exit(main())
