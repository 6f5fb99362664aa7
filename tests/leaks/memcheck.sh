#!/bin/bash
# tests/leaks/memcheck.sh - the leak check against valgrind memcheck. Each leak program of
# tests/leaks runs under `tally run --leaks` and under
# `valgrind --leak-check=full --show-leak-kinds=all`; memcheck_cmp.py wants the same LEAK SUMMARY
# (bytes and blocks of each of the four kinds, and the heuristics' lines) and the same loss
# records from both: 15 programs of ours, git, sqlite3 and CPython. The one difference it allows, a thread's DTV being 16 or 32 bytes larger
# under tallymalloc because the library and libunwind have thread-local storage, is explained
# there. memcheck frees glibc's and libstdc++'s own memory at exit (--run-libc-freeres,
# --run-cxx-freeres); the programs print nothing, so that glibc's stdio buffers are not live.
. "$top_srcdir/tests/preload/common.sh"
tally=$top_builddir/tools/tally
[ -x "$tally" ] || hard_error "$tally is not built"
need valgrind valgrind
cmp=$top_srcdir/tests/leaks/memcheck_cmp.py
# Both runs see the same environment: tally run would add PYTHONMALLOC=malloc, and a program that
# copies its environment (git does) would then allocate one pointer more under tally.
export PYTHONMALLOC=malloc

# compare NAME [VALGRIND_OPTION...] -- PROGRAM ARGS... (stdin from $tmp/NAME.in if it exists)
compare() {
    local name=$1 vgopts=() input=/dev/null
    shift
    while [ "$1" != -- ]; do vgopts+=("$1"); shift; done
    shift
    [ -f "$tmp/$name.in" ] && input=$tmp/$name.in
    "$tally" run --leaks --lib "$TALLY_LIB" -o "$tmp/$name.tly" -- "$@" <"$input" \
        >"$tmp/$name.out" 2>"$tmp/$name.run" || fail "$name: tally run --leaks failed: $(cat "$tmp/$name.run")"
    "$tally" leaks --kinds all "$tmp/$name.tly" >"$tmp/$name.tally" 2>&1 ||
        fail "$name: tally leaks failed: $(cat "$tmp/$name.tally")"
    # tally run printed the report tally leaks prints (the kinds shown by default), between its
    # own lines.
    "$tally" leaks "$tmp/$name.tly" >"$tmp/$name.default" 2>&1
    grep -v '^tally: ' "$tmp/$name.run" | diff - "$tmp/$name.default" >/dev/null ||
        fail "$name: tally run did not print the leak report: $(cat "$tmp/$name.run")"
    timeout 300 valgrind --leak-check=full --show-leak-kinds=all --gen-suppressions=all \
        "${vgopts[@]}" --log-file="$tmp/$name.vg" "$@" <"$input" >/dev/null 2>&1 ||
        fail "$name: valgrind failed: $(tail -5 "$tmp/$name.vg")"
    # memcheck's own suppressions for what it found (its lines without the ==PID== prefix)
    # suppress every record of ours too, unless told how many to leave.
    grep -v '^==' "$tmp/$name.vg" >"$tmp/$name.supp"
    if [ -n "${supp_left:-}" ]; then
        "$tally" leaks --kinds all --suppressions "$tmp/$name.supp" "$tmp/$name.tly" >"$tmp/$name.supped" 2>&1 ||
            fail "$name: tally leaks --suppressions failed: $(cat "$tmp/$name.supped")"
        left=$(grep -cE 'are (definitely|indirectly|possibly) lost|are still reachable' "$tmp/$name.supped")
        [ "$left" = "$supp_left" ] || fail "$name: memcheck's suppressions left $left records, want $supp_left:
$(cat "$tmp/$name.supped")"
    fi
    # tally report and tally leaks agree on what is live: blocks and bytes
    "$tally" report --json --top 0 "$tmp/$name.tly" >"$tmp/$name.rj" 2>&1
    "$tally" leaks --json --kinds all "$tmp/$name.tly" >"$tmp/$name.lj" 2>&1
    python3 - "$tmp/$name.rj" "$tmp/$name.lj" <<'PY' || fail "$name: tally report and tally leaks disagree on what is live"
import json, sys
r = json.load(open(sys.argv[1]))["totals"]
l = json.load(open(sys.argv[2]))["summary"]
if (r["live_count"], r["live_bytes"]) != (l["blocks"], l["bytes"]):
    print("report: %d blocks, %d B; leaks: %d blocks, %d B" % (r["live_count"], r["live_bytes"], l["blocks"], l["bytes"]))
    sys.exit(1)
PY
    if python3 "$cmp" --dtv-frame start_holder "$tmp/$name.vg" "$tmp/$name.tally" >"$tmp/$name.cmp"; then
        say "$name: $(cat "$tmp/$name.cmp")"
    else
        fail "$name: tally and memcheck differ:
$(cat "$tmp/$name.cmp")
--- memcheck:
$(sed 's/^==[0-9]*== //' "$tmp/$name.vg" | grep -A12 'LEAK SUMMARY')
--- tally:
$(grep -A10 'LEAK SUMMARY' "$tmp/$name.tally")"
    fi
}

supp_left=0 # memcheck's suppressions leave nothing of these
for c in dropped cycle list globals static_local thread_stack tls interior large_inside nested \
    heuristics clean; do
    compare "leakcases-$c" -- "$top_builddir/tests/leaks/leakcases" "$c"
done
for c in members bases; do
    compare "leakcases_cxx-$c" -- "$top_builddir/tests/leaks/leakcases_cxx" "$c"
done
# Leaks as ordinary programs write them (pointers in main's locals), at -O0 and -O2: their dropped
# pointers survive in stale slots of the frames that run after main, which memcheck ignores as
# undefined; and a kept vector whose end is the start of a leaked block.
# (memcheck compares 32 frames, as tallymalloc does: the tree's recursive stacks are deeper than
# its default of 12, which would merge their records.)
for o in O0 O2; do
    for c in tree hash grow adjacent; do
        compare "userprogs-$o-$c" --num-callers=32 -- "$top_builddir/tests/leaks/userprogs_$o" "$c"
    done
    for c in map unordered vector; do
        compare "userprogs_cxx-$o-$c" -- "$top_builddir/tests/leaks/userprogs_cxx_$o" "$c"
    done
done
# Nothing the library does at exit changes the program's memory: a pending dlerror() (its state
# and its text) is still there for the check, as memcheck sees it (told not to free glibc's
# memory first, which would free that too).
compare userprogs-dlerror --run-libc-freeres=no -- "$top_builddir/tests/leaks/userprogs_O0" dlerror
# A library dlopened and kept: the loader's blocks are reachable, as memcheck says, and each
# names its first frame in the loader (its records would otherwise all read "by main"). The
# loader's table for _dl_find_object is not the program's here (the library's own dlopen made
# it first): that record is left out of the comparison.
name=userprogs-dlopen
"$tally" run --leaks --lib "$TALLY_LIB" -o "$tmp/$name.tly" -- "$top_builddir/tests/leaks/userprogs_O0" dlopen \
    >/dev/null 2>&1 || fail "$name: tally run failed"
"$tally" leaks --kinds all "$tmp/$name.tly" >"$tmp/$name.tally" 2>&1
valgrind --leak-check=full --show-leak-kinds=all --run-libc-freeres=no \
    "$top_builddir/tests/leaks/userprogs_O0" dlopen 2>&1 >/dev/null | sed 's/^==[0-9]*== //' >"$tmp/$name.vg"
vg=$(grep 'still reachable:' "$tmp/$name.vg")
ours=$(grep 'still reachable:' "$tmp/$name.tally")
[ -n "$vg" ] && [ "$vg" = "$ours" ] || fail "$name: memcheck: $vg; tally: $ours"
grep -q '^   at _dl_new_object (dl-object.c:' "$tmp/$name.tally" ||
    fail "$name: no record names the loader's _dl_new_object:
$(cat "$tmp/$name.tally")"
# A documented difference (README): realloc in place here, always moving under memcheck. The
# old pointer, kept, still points at the block here; under memcheck at freed memory.
name=userprogs-realloc_kept
"$tally" run --leaks --lib "$TALLY_LIB" -o "$tmp/$name.tly" -- "$top_builddir/tests/leaks/userprogs_O0" realloc_kept \
    >/dev/null 2>"$tmp/$name.run" || fail "$name: tally run failed"
valgrind --leak-check=full "$top_builddir/tests/leaks/userprogs_O0" realloc_kept 2>&1 >/dev/null |
    sed 's/^==[0-9]*== //' >"$tmp/$name.vg"
grep -q '^   still reachable: 90 bytes in 1 blocks$' "$tmp/$name.run" &&
    grep -q '^   definitely lost: 90 bytes in 1 blocks$' "$tmp/$name.vg" ||
    fail "$name: the documented difference does not hold: $(grep -A4 'LEAK SUMMARY' "$tmp/$name.run" "$tmp/$name.vg")"
supp_left=1 # the blocks of before the start have no stack: one record no stack can match
# A library's constructor fills a registry before tallymalloc's constructor: its blocks are
# adopted at the start, and what the registry holds later is reachable, as memcheck says. Its
# destructor frees a vector of strings: freed before the check, as memcheck sees them.
compare early -- "$top_builddir/tests/leaks/early_main"
supp_left="" # real programs: not checked (valgrind intercepts some of libc, setenv for one)

# Real programs: git over a small repository, sqlite3 over a script. They keep glibc's own memory
# (stdio buffers, locale data) live at exit; memcheck frees it before its check unless told not to
# (--run-libc-freeres=no), and a program's preloaded allocator cannot free glibc's memory safely
# (other threads may still use it), so memcheck is told.
need git git
need sqlite3 sqlite3
repo=$tmp/repo
git init -q "$repo" && for i in 1 2 3 4 5; do
    echo "line $i" >>"$repo/file.txt"
    git -C "$repo" add file.txt && git -C "$repo" -c user.name=t -c user.email=t@t commit -qm "commit $i"
done || hard_error "cannot make a git repository"
compare git-log --run-libc-freeres=no -- git -C "$repo" log --stat
printf '%s\n' "create table t(a integer primary key, b text);" \
    "insert into t(b) select printf('row %d', value) from generate_series(1, 2000);" \
    "create index tb on t(b);" "select count(*), max(b) from t where b like 'row 1%';" >"$tmp/sqlite3.in"
compare sqlite3 --run-libc-freeres=no -- sqlite3 :memory:

# CPython, with its allocations all through malloc, a fixed hash seed (hash randomization would
# make two runs allocate differently), and memcheck comparing 32 frames as tallymalloc does (it
# compares 12 by default, merging records that tallymalloc keeps apart). It loads no extension
# module (-I -S, and modules built into the interpreter): the tables the dynamic loader makes at
# the first dlopen that needs them are tallymalloc's own when its dlopen of libunwind comes first,
# and whether a later one needs another depends on the machine, so their kinds would too.
need /usr/bin/python3 python3
# memcheck's loss records are by native stack: the Python frames (which would split them by
# Python line) stay out of this comparison; tests/python/frames.sh checks them.
export PYTHONMALLOC=malloc PYTHONHASHSEED=0 TALLY_PYTHON=0
compare cpython --run-libc-freeres=no --num-callers=32 -- /usr/bin/python3 -I -S -c \
    'import collections, re, textwrap; d = {str(i): [i] * 3 for i in range(2000)}; c = collections.Counter(re.findall(r"[0-9]+", repr(d))); print(len(c), len(textwrap.wrap(repr(d)[:5000])))'
unset PYTHONMALLOC PYTHONHASHSEED TALLY_PYTHON

# The comparison can fail: a report with one block moved to another kind is caught.
sed 's/are possibly lost/are definitely lost/' "$tmp/leakcases-interior.tally" >"$tmp/moved.tally"
python3 "$cmp" "$tmp/leakcases-interior.vg" "$tmp/moved.tally" >/dev/null &&
    fail "memcheck_cmp.py did not notice a record of another kind"

# LeakSanitizer's format: a pattern that names the function suppresses its records (the list
# and what it leads to), and they are counted as suppressed.
printf '# a comment\nleak:^list_of$\n' >"$tmp/lsan.supp"
"$tally" leaks --kinds all --suppressions "$tmp/lsan.supp" "$tmp/leakcases-list.tly" >"$tmp/lsan.out" 2>&1
grep -qx '        suppressed: 656 bytes in 17 blocks' "$tmp/lsan.out" || fail "leak:^list_of\$ did not suppress the lists: $(cat "$tmp/lsan.out")"
grep -qx '   definitely lost: 0 bytes in 0 blocks' "$tmp/lsan.out" || fail "the lost list is still reported: $(cat "$tmp/lsan.out")"

finish
