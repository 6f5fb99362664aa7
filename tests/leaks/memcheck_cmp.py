#!/usr/bin/env python3
"""memcheck_cmp.py VALGRIND_LOG TALLY_LEAKS_TEXT: do valgrind memcheck and `tally leaks --kinds all`
report the same leaks? Exit 0 if so; otherwise print the differences and exit 1.

Compared exactly: the LEAK SUMMARY (each of the four kinds in bytes and blocks, and the "of which
reachable via heuristic" lines), or memcheck's "All heap blocks were freed"; and the loss records
as a multiset of (kind, bytes, direct and indirect bytes, blocks), with their number.

One documented difference is allowed, and only where it must be: the block glibc allocates for each
thread's DTV (dynamic thread vector, one 16-byte slot per module with thread-local storage, reached
from the thread's control block through a pointer to its second slot: possibly lost for both tools).
Under tallymalloc the process has one or two more such modules (libtallymalloc.so itself, and
libunwind when the profiler loaded it), so each DTV block is 16 or 32 bytes larger than under
valgrind. Records whose stack passes through the function named by --dtv-frame (the program's call
of pthread_create) and that are possibly lost compare their blocks exactly and their bytes up to
that difference; the summary's "possibly lost" bytes may differ by the same total.

And blocks allocated before tallymalloc's constructor ran (by the constructors of libraries
initialized before it: their stacks pass through the dynamic loader's _dl_init) have no stack in
tallymalloc's report, so they form one record per kind there where memcheck has one per stack:
those records are compared as totals per kind (blocks and bytes), and the record count may differ
by as many.
"""
import argparse
import re
import sys

HEADER = re.compile(
    r"^([\d,]+)(?: \(([\d,]+) direct, ([\d,]+) indirect\))? bytes in ([\d,]+) blocks are "
    r"(definitely lost|indirectly lost|possibly lost|still reachable) in loss record ([\d,]+) of ([\d,]+)$")
SUMMARY = re.compile(r"^\s*(definitely lost|indirectly lost|possibly lost|still reachable|suppressed"
                     r"|stdstring|length64|newarray|multipleinheritance)\s*: ([\d,]+) bytes in ([\d,]+) blocks$")
DTV_SLOT = 16


def num(s):
    return int(s.replace(",", "")) if s else 0


def parse(path):
    lines = []
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            lines.append(re.sub(r"^==\d+== ?", "", line.rstrip("\n")))
    records, summary, freed, total = [], {}, False, None
    i = 0
    while i < len(lines):
        m = HEADER.match(lines[i])
        if m:
            frames = []
            i += 1
            while i < len(lines) and re.match(r"^\s+(at|by) ", lines[i]):
                frames.append(lines[i].strip())
                i += 1
            records.append({"kind": m.group(5), "bytes": num(m.group(1)), "direct": num(m.group(2)),
                            "indirect": num(m.group(3)), "blocks": num(m.group(4)), "frames": frames})
            total = num(m.group(7))
            continue
        if "All heap blocks were freed -- no leaks are possible" in lines[i]:
            freed = True
        if lines[i].strip() == "LEAK SUMMARY:":
            i += 1
            while i < len(lines):
                s = SUMMARY.match(lines[i])
                if s:
                    summary[s.group(1)] = (num(s.group(2)), num(s.group(3)))
                elif "of which reachable via heuristic" not in lines[i]:
                    break
                i += 1
            continue
        i += 1
    return {"records": records, "summary": summary, "freed": freed, "total": total}


def is_dtv(rec, frame):
    return frame and rec["kind"] == "possibly lost" and any(frame + " (" in f for f in rec["frames"])


def is_early(rec, tool):
    if tool == "tally":
        return not rec["frames"]
    return any("_dl_init " in f or "call_init " in f for f in rec["frames"])


def key(rec, frame):
    if is_dtv(rec, frame):
        return (rec["kind"], "DTV", rec["blocks"])
    return (rec["kind"], rec["bytes"], rec["direct"], rec["indirect"], rec["blocks"])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("valgrind_log")
    ap.add_argument("tally_text")
    ap.add_argument("--dtv-frame", default="")
    a = ap.parse_args()
    vg, ta = parse(a.valgrind_log), parse(a.tally_text)
    bad = []
    if vg["freed"] != ta["freed"]:
        bad.append("all blocks freed: memcheck %s, tally %s" % (vg["freed"], ta["freed"]))
    if not vg["freed"] and not vg["summary"]:
        bad.append("no LEAK SUMMARY in " + a.valgrind_log)
    if not ta["freed"] and not ta["summary"]:
        bad.append("no LEAK SUMMARY in " + a.tally_text)
    dtv_delta = 0
    for rv, rt in zip(sorted((r for r in vg["records"] if is_dtv(r, a.dtv_frame)), key=lambda r: r["bytes"]),
                      sorted((r for r in ta["records"] if is_dtv(r, a.dtv_frame)), key=lambda r: r["bytes"])):
        d = rt["bytes"] - rv["bytes"]
        if rv["blocks"] != rt["blocks"] or d not in (DTV_SLOT * rv["blocks"], 2 * DTV_SLOT * rv["blocks"]):
            bad.append("DTV record: memcheck %d bytes in %d blocks, tally %d bytes in %d blocks" %
                       (rv["bytes"], rv["blocks"], rt["bytes"], rt["blocks"]))
        dtv_delta += d
    for k in sorted(set(vg["summary"]) | set(ta["summary"])):
        v, t = vg["summary"].get(k), ta["summary"].get(k)
        if k == "possibly lost" and v and t and v[1] == t[1] and t[0] - v[0] == dtv_delta:
            continue
        if v != t:
            bad.append("%s: memcheck %s, tally %s" % (k, v, t))
    early = {}
    for tool, recs in (("memcheck", vg["records"]), ("tally", ta["records"])):
        for r in recs:
            if is_early(r, tool):
                t = early.setdefault((tool, r["kind"]), [0, 0, 0])
                t[0] += r["bytes"]
                t[1] += r["blocks"]
                t[2] += 1
    for kind in sorted({k for _, k in early}):
        v, t = early.get(("memcheck", kind), [0, 0, 0]), early.get(("tally", kind), [0, 0, 0])
        if v[:2] != t[:2]:
            bad.append("%s before the start: memcheck %d bytes in %d blocks, tally %d bytes in %d blocks" %
                       (kind, v[0], v[1], t[0], t[1]))
    merged = sum(early.get(("memcheck", k), [0, 0, 0])[2] - early.get(("tally", k), [0, 0, 0])[2]
                 for k in {k for _, k in early})
    kv = sorted(key(r, a.dtv_frame) for r in vg["records"] if not is_early(r, "memcheck"))
    kt = sorted(key(r, a.dtv_frame) for r in ta["records"] if not is_early(r, "tally"))
    if kv != kt:
        bad.append("loss records differ:\n  memcheck only: %s\n  tally only:    %s" %
                   ([x for x in kv if x not in kt], [x for x in kt if x not in kv]))
    if vg["total"] is not None and ta["total"] is not None and vg["total"] - merged != ta["total"]:
        bad.append("number of loss records: memcheck %s, tally %s" % (vg["total"], ta["total"]))
    for line in bad:
        print(line)
    if not bad:
        s = ta["summary"]
        print("same: " + ("all heap blocks freed" if ta["freed"] else ", ".join(
            "%s %d B in %d" % (k, s[k][0], s[k][1]) for k in
            ("definitely lost", "indirectly lost", "possibly lost", "still reachable") if k in s)) +
            (" (DTV +%d B)" % dtv_delta if dtv_delta else ""))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
