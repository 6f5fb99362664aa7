"""unwind_check.py CHECK_DUMP JIT_DUMP BINARY JIT_PAGE: the stacks of tests/prof/unwind.c.

CHECK_DUMP was written with TALLY_UNWIND=check (every stack the fast walker returned was also
taken by libunwind and compared, and every site the stack memo answered with was compared with
the walked stack's); JIT_DUMP with the default walker, running the program's jit
case, whose code page JIT_PAGE (hex) lies in no module."""
import sys

import dumpcheck

check_path, jit_path, binary, jit_page = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4], 16)
failures = []


def want(what, ok):
    if not ok:
        failures.append(what)


d = dumpcheck.parse(check_path)
h, t = d["header"], d["totals"]
print("walker:", {k: v for k, v in t.items() if k.startswith("unwind")})
want("unwinder is check, not %r" % h["unwinder"], h["unwinder"] == "check")
want("the walker disagreed with libunwind on %d stacks" % t.get("unwind_mismatch", -1),
     t.get("unwind_mismatch") == 0)
want("%d of %d stacks were compared with libunwind" % (t.get("unwind_checked", 0),
                                                       t["unwind_stacks"]),
     t.get("unwind_checked") == t["unwind_stacks"] >= 3500)
# 20 + 20 signal handler stacks, 10 on the makecontext stack, 50 through a DRAP frame.
want("%d stacks went to libunwind, want at least 100" % t["unwind_foreign"],
     t["unwind_foreign"] >= 100)
want("no stack was taken from the previous one", t["unwind_reused"] > 0)
# The stack memo answered for most stacks, and each answer was compared with the walk's (a
# differing site counts in unwind_mismatch).
want("the stack memo answered for %d stacks, want at least 1000" % t.get("unwind_memo", 0),
     t.get("unwind_memo", 0) >= 1000)

mod = next(m for m in d["module"] if m["path"].endswith("/" + binary.split("/")[-1]))
funcs = dumpcheck.functions(binary)


def names(stack):
    out = []
    for ip in stack:
        if mod["lo"] <= ip < mod["hi"]:
            off = ip - mod["base"] - 1
            out.append(next((f[2] for f in funcs if f[0] <= off < f[1]), "?"))
        else:
            out.append("-")
    return out


sites = [(names(d["stacks"][s["stack"]]), s["alloc_count"]) for s in d["site"]]


def count(pred):
    return sum(c for n, c in sites if pred(n))


# deep: main's 40, 50 and 60 deep recursions give one stack, cut at 32 frames.
deep = [(n, c) for n, c in sites if n and n[0] == "site_deep" and "site_thread" not in n]
want("main's deep recursion: %r" % [(len(n), c) for n, c in deep],
     len(deep) == 1 and deep[0][1] == 300 and deep[0][0] == ["site_deep"] + ["recurse"] * 31)
# threads: depth 5, 12, 19 and 26, each its own stack of recurse frames under site_thread.
for depth in (5, 12, 19, 26):
    c = count(lambda n: n[:depth + 3] == ["site_deep"] + ["recurse"] * (depth + 1) + ["site_thread"])
    want("thread at depth %d: %d allocations" % (depth, c), c == 100)
# paths: each caller of site_leaf gets its own 1000, never the other's frames.
for p in ("site_path_a", "site_path_b"):
    c = count(lambda n: n[:3] == ["site_leaf", p, "main"])
    want("%s: %d allocations through it, want 1000" % (p, c), c == 1000)
want("a stack holds both paths", count(lambda n: "site_path_a" in n and "site_path_b" in n) == 0)
for fn, n_want in (("site_alloca", 200), ("site_realign", 50), ("site_context_body", 10),
                   ("site_apis", 600), ("site_pad_malloc", 100), ("site_pad_calloc", 100)):
    c = count(lambda n: n[:1] == [fn])
    want("%s: %d allocations, want %d" % (fn, c, n_want), c == n_want)
want("site_alloca called from main", count(lambda n: n[:2] == ["site_alloca", "main"]) == 200)
want("site_realign called from main", count(lambda n: n[:2] == ["site_realign", "main"]) == 50)
want("site_apis called from main", count(lambda n: n[:2] == ["site_apis", "main"]) == 600)
# The handler's stacks go through the signal frame back to main (libunwind's part).
c = count(lambda n: n[:1] == ["site_handler"] and "main" in n)
want("site_handler: %d allocations with main below them, want 40" % c, c == 40)

j = dumpcheck.parse(jit_path)
want("the jit run's unwinder is %r" % j["header"]["unwinder"], j["header"]["unwinder"] == "fast")
jit_sites = [s for s in j["site"] if s["alloc_count"] == 30 and
             any(jit_page <= ip < jit_page + 4096 for ip in j["stacks"][s["stack"]])]
want("no site of 30 allocations from the jit page", len(jit_sites) == 1)
for s in jit_sites:
    st = j["stacks"][s["stack"]]
    print("jit stack:", [hex(ip) for ip in st])
    want("the jit stack goes past code nothing describes: %r" % st,
         len(st) == 1 and jit_page <= st[0] < jit_page + 4096)

for f in failures:
    print("FAIL:", f)
sys.exit(1 if failures else 0)
