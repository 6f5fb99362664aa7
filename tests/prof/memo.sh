#!/bin/bash
# tests/prof/memo.sh - the stack memo (src/unwind.c) in the default mode, where its answers are
# taken without a walk: each call stack must get the allocations it gets when every stack is
# walked (TALLY_UNWIND=check, where the memo is looked up but every stack is walked and interned
# all the same). The programs allocate the same way every run: sqlite3 building and querying a
# table (bench/sqlite.sql: 1.4 million allocations from some 500 stacks), tests/prof/unwind
# (two paths at one depth, frame-pointer frames, recursion cut at TALLY_DEPTH, threads), and
# CPython running tests/preload/workload.py (4.5 million allocations, 29,000 merged stacks of
# native and Python frames, whose Python callers a memo key does not hold). Stacks are compared
# by their frames, native ones as module and offset, Python ones as file, function and line.
. "$top_srcdir/tests/preload/common.sh"
need sqlite3 sqlite3
need /usr/bin/python3 python3
prog=$top_builddir/tests/prof/unwind
[ -x "$prog" ] || hard_error "$prog is not built"
export PYTHONPATH=$top_srcdir/tests/prof

run_both() { # LABEL CMD...: one run walking every stack, one with the memo; stdin from $input
    local label=$1 m
    shift
    for m in check default; do
        local u=$m
        [ $m = default ] && u=fast
        timeout 120 env LD_PRELOAD="$TALLY_LIB" TALLY_PROFILE=all TALLY_UNWIND=$u \
            TALLY_OUT="$tmp/$label.$m.tly" "$@" <"${input:-/dev/null}" >"$tmp/$label.$m.out" \
            2>"$tmp/$label.$m.err" || fail "$label ($m): the program failed: $(tail -2 "$tmp/$label.$m.err")"
    done
    /usr/bin/python3 - "$tmp/$label.check.tly" "$tmp/$label.default.tly" "$label" <<'PY' ||
import collections, sys, dumpcheck

def stacks(path):
    d = dumpcheck.parse(path)
    mods = d["module"]

    def where(ip):
        if isinstance(ip, tuple):  # a Python frame: ("py", file, name, line)
            return ip
        for m in mods:
            if m["lo"] <= ip < m["hi"]:
                return (m["path"].rsplit("/", 1)[-1], ip - m["base"])
        return ("?", ip)

    counts = collections.Counter()
    for r in d["site"]:
        counts[tuple(where(ip) for ip in d["stacks"].get(r["id"], ()))] += r["alloc_count"]
    return counts, d["totals"]

walked, tw = stacks(sys.argv[1])
memo, tm = stacks(sys.argv[2])
differ = [k for k in set(walked) | set(memo) if walked[k] != memo[k]]
print("%s: %d stacks, %d allocations walked, %d with the memo (it answered %d, %d walked);"
      " %d stacks differ; check mode: %d memo answers, %d mismatches"
      % (sys.argv[3], len(walked), sum(walked.values()), sum(memo.values()), tm["unwind_memo"],
         tm["unwind_stacks"], len(differ), tw["unwind_memo"], tw["unwind_mismatch"]))
for k in differ[:3]:
    print("  walked %d, memo %d: %s" % (walked[k], memo[k], k[:4]))
ok = (not differ and tw["unwind_mismatch"] == 0 and sum(walked.values()) > 1000
      and tm["unwind_memo"] > tm["unwind_stacks"])
sys.exit(0 if ok else 1)
PY
        fail "$label: the memo's stacks are not the walked ones"
}

input=$top_srcdir/bench/sqlite.sql run_both sqlite sqlite3 :memory:
run_both unwind "$prog"
PYTHONMALLOC=malloc PYTHONHASHSEED=0 run_both python /usr/bin/python3 "$top_srcdir/tests/preload/workload.py"
finish
