#!/bin/bash
# tests/preload/introspect.sh - glibc's introspection API sees the pools. introspect.c checks
# each call on a heap of small blocks; every check runs without the library first (glibc is the
# oracle: a check it fails is a wrong test) and then with it, in the default mode and with the
# leak check, and both runs must print the same thing:
#   mallinfo2/mallinfo count the 4.8 MB of 48-byte blocks in use, and not once they are freed;
#   malloc_stats' last "in use bytes" and malloc_info's totals include them (the XML parsed);
#   mallopt(M_PERTURB), MALLOC_PERTURB_ and GLIBC_TUNABLES fill blocks as glibc fills chunks;
#   malloc_trim(0) gives back the memory of 50 MB of freed blocks, which then work again, and
#   trims running beside two threads that churn blocks of every small size lose no content;
#   __libc_free and __libc_realloc take blocks from malloc; a double free after a trim aborts.
. "$top_srcdir/tests/preload/common.sh"
prog=$top_builddir/tests/preload/introspect
[ -x "$prog" ] || hard_error "introspect is not built"

# both LABEL [ENV...] -- ARGS...: the mode plainly, then with the library, same output
both() {
    local label=$1 envs=()
    shift
    while [ "$1" != -- ]; do envs+=("$1"); shift; done
    shift
    run_plain -n "$label.plain" env "${envs[@]}" "$prog" "$@"
    grep -q ' ok$' "$tmp/out/$label.plain.out" ||
        hard_error "$label fails under glibc alone: $(cat "$tmp/out/$label.plain.out")"
    for mode in sample leaks; do
        local extra=()
        [ $mode = leaks ] && extra=(TALLY_LEAKS=quiet TALLY_OUT="$tmp/$label.tly")
        run_tally -n "$label.$mode" env "${envs[@]}" "${extra[@]}" "$prog" "$@"
        check_same "$label.plain" "$label.$mode"
    done
}

both mallinfo -- mallinfo
both perturb -- perturb
both perturb_env MALLOC_PERTURB_=165 -- perturb-env 165
both perturb_tunable GLIBC_TUNABLES=glibc.malloc.check=0:glibc.malloc.perturb=0x3c -- perturb-env 0x3c
both trim -- trim
both trim_threads -- trim-threads
both libc -- libc

# malloc_stats: the last "in use bytes" is the total, and holds the 4.8 MB of blocks.
both stats -- stats
for run in stats.plain stats.sample; do
    n=$(grep 'in use bytes' "$tmp/out/$run.err" | tail -1 | tr -dc 0-9)
    [ "${n:-0}" -ge 4800000 ] ||
        fail "$run: malloc_stats' total in use is ${n:-missing}, want >= 4800000: $(cat "$tmp/out/$run.err")"
done
grep -q '^Pools (tallymalloc' "$tmp/out/stats.sample.err" || fail "malloc_stats does not list the pools"

# malloc_info: well-formed XML whose totals hold the blocks; the pools are one more heap.
for kind in plain tally; do
    if [ $kind = plain ]; then run_plain -n info.$kind "$prog" info "$tmp/$kind.xml"
    else run_tally -n info.$kind "$prog" info "$tmp/$kind.xml"; fi
    check_status info.$kind 0
    /usr/bin/python3 - "$tmp/$kind.xml" $kind <<'PY' || fail "malloc_info ($kind): $(cat "$tmp/$kind.xml")"
import sys, xml.etree.ElementTree as ET
root = ET.parse(sys.argv[1]).getroot()
cur = [int(e.get("size")) for e in root.findall("system") if e.get("type") == "current"]
assert cur and cur[0] >= 4800000, ("system current", cur)
heaps = root.findall("heap")
pools = [h for h in heaps if h.get("type") == "tallymalloc-pools"]
if sys.argv[2] == "tally":
    assert len(pools) == 1, "no pools heap"
    own = sum(int(e.get("size")) for e in pools[0].findall("system") if e.get("type") == "current")
    total = sum(int(e.get("size")) for h in heaps for e in h.findall("system")
                if e.get("type") == "current")
    assert own >= 4800000 and total == cur[0], (own, total, cur)
    assert [int(h.get("nr")) for h in heaps] == list(range(len(heaps)))
PY
done

# A double free of a block in a trimmed pool still stops the program.
run_tally -n trim_df "$prog" trim-double-free
check_status trim_df 134
grep -q '^tally: free(): double free or invalid pointer (its pool has no block in use' "$tmp/out/trim_df.err" ||
    fail "double free after malloc_trim: $(cat "$tmp/out/trim_df.err")"

finish
