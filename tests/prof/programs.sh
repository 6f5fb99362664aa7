#!/bin/bash
# tests/prof/programs.sh - real programs profiled in `all` mode: the Python workload under
# PYTHONMALLOC=malloc and a C++ program throwing exceptions across threads. Each must print
# what it prints without the library, and write a complete dump whose figures agree with
# each other (site sums against totals, live blocks against live counts, pinned shares against
# the pools held), with the stacks unwound (many frames, many sites). They run with
# TALLY_UNWIND=check, as do gcc (cc1 and as, in children) and perl: every stack the profiler's
# walker takes is also taken by libunwind, and the two must agree on every one.
. "$top_srcdir/tests/preload/common.sh"
export PYTHONPATH=$top_srcdir/tests/prof

profile() { # LABEL CMD...
    local label=$1
    shift
    say "profile $label: $*"
    timeout 300 env LD_PRELOAD="$TALLY_LIB" TALLY_PROFILE=all TALLY_UNWIND=check \
        TALLY_OUT="$tmp/$label.%p.tly" "$@" >"$tmp/$label.prof.out" 2>"$tmp/$label.prof.err"
    echo $? >"$tmp/$label.prof.rc"
    timeout 300 "$@" >"$tmp/$label.plain.out" 2>"$tmp/$label.plain.err"
    echo $? >"$tmp/$label.plain.rc"
    cmp -s "$tmp/$label.prof.rc" "$tmp/$label.plain.rc" ||
        fail "$label: exit status $(cat "$tmp/$label.prof.rc") profiled, $(cat "$tmp/$label.plain.rc") plain"
    cmp -s "$tmp/$label.prof.out" "$tmp/$label.plain.out" ||
        fail "$label: output differs when profiled"
    [ -s "$tmp/$label.plain.out" ] || fail "$label printed nothing"
}

walker_agrees() { # LABEL MIN_STACKS: in every dump of LABEL, the walker agreed with libunwind
    /usr/bin/python3 - "$tmp" "$1" "$2" <<'PY' || fail "$1: the walker and libunwind disagree"
import glob, sys, dumpcheck
tmp, label, min_stacks = sys.argv[1], sys.argv[2], int(sys.argv[3])
checked = mismatch = stacks = 0
for path in glob.glob("%s/%s.*.tly" % (tmp, label)):
    t = dumpcheck.parse(path)["totals"]
    stacks += t["unwind_stacks"]
    checked += t["unwind_checked"]
    mismatch += t["unwind_mismatch"]
print("%s: %d stacks walked, %d compared with libunwind, %d differ" % (label, stacks, checked, mismatch))
sys.exit(0 if mismatch == 0 and checked == stacks and checked >= min_stacks else 1)
PY
}

check_dumps() { # LABEL MIN_SITES
    /usr/bin/python3 - "$tmp" "$1" "$2" <<'PY' || fail "$1: dump check failed"
import glob, sys, dumpcheck
tmp, label, min_sites = sys.argv[1], sys.argv[2], int(sys.argv[3])
files = glob.glob("%s/%s.*.tly" % (tmp, label))
if len(files) != 1:
    sys.exit("expected one dump, found %r" % files)
d = dumpcheck.parse(files[0])
t, bad = d["totals"], []
if len(d["site"]) < min_sites:
    bad.append("only %d sites" % len(d["site"]))
if sum(r["live_bytes"] for r in d["site"]) != t["live_bytes"]:
    bad.append("site live bytes do not add up to the total")
deep = sum(1 for f in d["stacks"].values() if len(f) >= 5)
if deep < len(d["stacks"]) // 2:
    bad.append("only %d of %d stacks have 5 frames or more" % (deep, len(d["stacks"])))
blocks = {}
for b in d["block"]:
    blocks[b["site"]] = blocks.get(b["site"], 0) + 1
for r in d["site"]:
    if r["id"] and blocks.get(r["id"], 0) != r["live_count"]:
        bad.append("site %d: %d blocks listed, live_count %d" % (r["id"], blocks.get(r["id"], 0), r["live_count"]))
        break
if sum(c["bytes_held"] for c in d["class"]) != t["pinned_pool_bytes"]:
    bad.append("pinned pool bytes differ from the pools held")
if sum(r["pinned_bytes"] for r in d["site"]) != t["pinned_pool_bytes"] + t["pinned_large_bytes"]:
    bad.append("pinned shares do not add up")
allocs = sum(r["alloc_count"] for r in d["site"])
print("%s: %d sites, %d allocations recorded, peak %d bytes, %d live blocks, %d bytes"
      % (label, len(d["site"]), allocs, t["peak_bytes"], len(d["block"]),
         __import__("os").path.getsize(files[0])))
for b in bad:
    print("FAIL:", b)
sys.exit(1 if bad else 0)
PY
}

profile python env PYTHONMALLOC=malloc /usr/bin/python3 "$top_srcdir/tests/preload/workload.py"
check_dumps python 500
walker_agrees python 1000000
profile cxx "$top_builddir/tests/preload/cxx_throw"
check_dumps cxx 3
walker_agrees cxx 100000
profile gcc sh -c 'gcc -O2 -c "$1" -o "$2" && cksum <"$2" | cut -c1-4' sh \
    "$top_srcdir/tests/preload/gcc_input.c" "$tmp/gcc_input.o"
walker_agrees gcc 10000
profile perl perl "$top_srcdir/tests/preload/workload.pl"
walker_agrees perl 100000
finish
