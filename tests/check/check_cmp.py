#!/usr/bin/env python3
"""Compares TALLY_CHECK's heap errors with valgrind memcheck's, for one run of a program.

usage: check_cmp.py VALGRIND_XML_GLOB TALLY_JSON...

The valgrind side is memcheck's XML (--xml=yes --xml-file=...%p.xml: one file a process); the
tally side is `tally errors --json` of every dump of the run. Every error memcheck reports at a
free, a realloc, or a write into a freed block or just past either end of a block must be one of
tally's, with:
  - the same kind: InvalidFree is tally's invalid_free or double_free, MismatchedFree its
    mismatched_free, InvalidWrite its overrun (memcheck: "N bytes after a block ... alloc'd"),
    underrun ("before") or write_after_free ("inside a block ... free'd");
  - the same headline (memcheck's <what>: "Invalid write of size 1", ...);
  - the same address description for a heap block ("is 0 bytes after a block of size 10
    alloc'd"): the offset, the size, alloc'd or free'd. For an address that is no heap block
    memcheck names the stack or the data symbol ("is on thread 1's stack", "is 0 bytes inside
    data symbol"), tally "on a thread's stack" or "not stack'd, malloc'd or (recently) free'd";
    those must agree on stack versus not;
  - the same allocating stack and freeing stack (function names, innermost first, memcheck's
    malloc/free/new/delete frames dropped, up to main or the thread's start function).
The call's own stack is compared for the frees (both tools take it at the free). For a write it
is not: memcheck stops at the writing instruction, tally sees the write later, at the block's
free, when it leaves the quarantine, or at exit (FORMAT.md).
And tally reports nothing memcheck does not: every tally error must be matched.

What memcheck reports and tally cannot, skipped here with the reason printed: reads of freed or
unallocated memory (InvalidRead: only a write changes the poison), uses of uninitialised values
(UninitCondition, UninitValue: the fill makes them visible in the program's behaviour only), and
writes that land beyond the guard (InvalidWrite more than 16 bytes past the end, or into another
live block, where memcheck also sees nothing)."""
import glob
import json
import re
import sys
import xml.etree.ElementTree as ET

ALLOC = {"malloc", "calloc", "realloc", "free", "memalign", "posix_memalign", "aligned_alloc",
         "valloc", "operator new(unsigned long)", "operator new[](unsigned long)",
         "operator delete(void*)", "operator delete[](void*)",
         "operator delete(void*, unsigned long)", "operator delete[](void*, unsigned long)"}
UNSEEN = {"InvalidRead": "a read of freed or unallocated memory changes nothing tally can check",
          "UninitCondition": "uninitialised values are made visible by the 0xCD fill, not reported",
          "UninitValue": "uninitialised values are made visible by the 0xCD fill, not reported",
          "SyscallParam": "a system call's argument is not the allocator's to check"}


def trim(fns):
    """Function names innermost first, the allocator's dropped, ending at main or a thread's
    start routine (what lies beyond differs between the tools: libc's start-up frames)."""
    out = [f for f in fns if f not in ALLOC]
    for i, f in enumerate(out):
        if f in ("main", "thread_main(void*)") or (f or "").startswith("start_thread"):
            return out[:i + 1]
    return out


def memcheck_errors(pattern):
    errs = []
    for path in sorted(glob.glob(pattern)):
        root = ET.parse(path).getroot()
        for e in root.findall("error"):
            kind = e.findtext("kind")
            stacks, aux = [], []
            for ch in e:
                if ch.tag == "stack":
                    stacks.append(trim([fr.findtext("fn") for fr in ch.findall("frame")]))
                elif ch.tag == "auxwhat":
                    aux.append(ch.text or "")
            what = e.findtext("what") or (e.find("xwhat").findtext("text") if e.find("xwhat") is not None else "")
            errs.append({"kind": kind, "what": what, "aux": aux, "stacks": stacks,
                         "file": path})
    return errs


def tally_errors(paths):
    errs = []
    for p in paths:
        d = json.load(open(p))
        for e in d["errors"]:
            e["_stack"] = trim([f["function"] for f in (e["stack"] or [])])
            e["_alloc"] = trim([f["function"] for f in (e["alloc_stack"] or [])])
            e["_free"] = trim([f["function"] for f in (e["free_stack"] or [])])
            errs.append(e)
    return errs


DESC = re.compile(r"is (\d[\d,]*) bytes (inside|after|before) a block of size (\d[\d,]*) (alloc'd|free'd)")


def desc(text):
    m = DESC.search(text or "")
    return m.groups() if m else None


def expected_kinds(m):
    d = desc(m["aux"][0] if m["aux"] else "")
    if m["kind"] == "InvalidFree":
        return {"invalid_free", "double_free"}
    if m["kind"] == "MismatchedFree":
        return {"mismatched_free"}
    if m["kind"] == "InvalidWrite" and d:
        if d[1] == "after" and d[3] == "alloc'd":
            return {"overrun"}
        if d[1] == "before" and d[3] == "alloc'd":
            return {"underrun"}
        if d[3] == "free'd":
            return {"write_after_free"}
    return None


def compare(m, t):
    """What differs between memcheck's error m and tally's t, as a list of sentences."""
    why = []
    if t["kind"] not in expected_kinds(m):
        why.append("kind %s, memcheck's is %s" % (t["kind"], m["kind"]))
    if t["what"] != m["what"]:
        why.append("headline %r, memcheck's %r" % (t["what"], m["what"]))
    md = desc(m["aux"][0] if m["aux"] else "")
    td = desc(t["address_text"])
    if md != td:
        if md is None and td is None:
            mstack = "stack" in (m["aux"][0] if m["aux"] else "")
            tstack = "stack" in t["address_text"]
            if mstack != tstack:
                why.append("address %r, memcheck's %r" % (t["address_text"], m["aux"][:1]))
        else:
            why.append("address %r, memcheck's %r" % (t["address_text"], m["aux"][:1]))
    # memcheck's stacks: [call, then the free's (if free'd), then the allocation's]
    st = m["stacks"]
    if m["kind"] != "InvalidWrite" and st and st[0] != t["_stack"]:
        why.append("the call's stack %s, memcheck's %s" % (t["_stack"], st[0]))
    if md and md[3] == "free'd":
        if len(st) >= 3:
            if st[1] != t["_free"]:
                why.append("free stack %s, memcheck's %s" % (t["_free"], st[1]))
            if st[2] != t["_alloc"]:
                why.append("allocation stack %s, memcheck's %s" % (t["_alloc"], st[2]))
    elif md and len(st) >= 2 and st[1] != t["_alloc"]:
        why.append("allocation stack %s, memcheck's %s" % (t["_alloc"], st[1]))
    return why


def main():
    m_errs = memcheck_errors(sys.argv[1])
    t_errs = tally_errors(sys.argv[2:])
    used = set()
    problems, matched, skipped = [], 0, []
    for m in m_errs:
        if m["kind"] in UNSEEN:
            skipped.append("%s (%s)" % (m["kind"], UNSEEN[m["kind"]]))
            continue
        if m["kind"].startswith("Leak_"):
            continue
        kinds = expected_kinds(m)
        if kinds is None:
            skipped.append("%s %r (beyond the guard: tally sees no such write)" %
                           (m["kind"], m["aux"][:1]))
            continue
        best = None
        for i, t in enumerate(t_errs):
            if i in used:
                continue
            why = compare(m, t)
            if not why:
                best = (i, [])
                break
            if t["kind"] in kinds and best is None:
                best = (i, why)
        if best is None:
            problems.append("memcheck's %s %r (%s) is not among tally's errors" %
                            (m["kind"], m["what"], m["aux"][:1]))
            continue
        used.add(best[0])
        if best[1]:
            problems.append("memcheck's %s %r: %s" % (m["kind"], m["what"], "; ".join(best[1])))
        else:
            matched += 1
    for i, t in enumerate(t_errs):
        if i not in used:
            problems.append("tally's %s (%s) is not one of memcheck's errors" %
                            (t["kind"], t["address_text"]))
    for p in problems:
        print("MISMATCH: " + p)
    print("%d error(s) the same in both%s" % (matched, "".join("; memcheck only: " + s
                                                               for s in skipped)))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
