#!/bin/bash
# tests/check/corpus.sh - TALLY_CHECK against valgrind memcheck on a corpus of heap bugs
# (corpus.cpp: overruns of a pool-sized block, of a block that fills its size class and of a
# large one, an underrun, a write after free, double frees in and after the quarantine, frees of
# a stack, global, interior (near and far from the start) and mmap'd pointer, realloc of a freed block, mismatched new[]/delete,
# new/free and malloc/delete, the same errors in a thread and in a forked child). Each case runs
# under `valgrind --xml=yes` and under the library with TALLY_CHECK; check_cmp.py wants every
# error memcheck reports at a free, a realloc or a write into a freed block or past either end
# of one among tally's, with the same kind, headline, address description and allocation and
# free stacks, and nothing more. What memcheck sees and the check cannot (reads of freed
# memory, uses of uninitialised values) is listed by check_cmp.py as it goes. Then: the bad free
# is skipped (the program goes on), the fill shows in an uninitialised read, tally run --check
# prints the report and --error-exitcode, TALLY_CHECK=abort, the library's own lines, and
# memcheck's generated suppressions suppress the same errors in tally errors.
[ -n "${BASH_VERSION:-}" ] || exec bash "$0" "$@"
. "$top_srcdir/tests/preload/common.sh"
tally=$top_builddir/tools/tally
corpus=$top_builddir/tests/check/corpus
cmp=$top_srcdir/tests/check/check_cmp.py
[ -x "$tally" ] || hard_error "$tally is not built"
[ -x "$corpus" ] || hard_error "$corpus is not built"
need valgrind valgrind
cd "$tmp" || hard_error "cannot cd to $tmp"

cases=$("$corpus")
[ "$(echo "$cases" | wc -l)" -ge 20 ] || fatal "the corpus lists $(echo "$cases" | wc -l) cases"
for c in $cases; do
    d=$tmp/$c
    mkdir -p "$d"
    timeout 300 valgrind -q --xml=yes --xml-file="$d/vg.%p.xml" --gen-suppressions=all \
        "$corpus" "$c" >"$d/vg.out" 2>"$d/vg.err"
    rc=$?
    [ "$rc" = 0 ] || fail "$c: valgrind exited with $rc: $(tail -3 "$d/vg.err")"
    timeout 120 env LD_PRELOAD="$TALLY_LIB" TALLY_CHECK=quiet TALLY_OUT="$d/t.%p.tly" \
        "$corpus" "$c" >"$d/t.out" 2>"$d/t.err"
    rc=$?
    # the bad call was skipped: a double free handed on would have made glibc abort
    [ "$rc" = 0 ] || fail "$c: the program exited with $rc under TALLY_CHECK: $(tail -3 "$d/t.err")"
    [ -s "$d/t.err" ] && fail "$c: TALLY_CHECK=quiet printed: $(head -3 "$d/t.err")"
    js=()
    for f in "$d"/t.*.tly; do
        [ -e "$f" ] || continue
        "$tally" errors --json "$f" >"$f.json" 2>"$f.err" || fail "$c: tally errors $f: $(cat "$f.err")"
        js+=("$f.json")
    done
    if python3 "$cmp" "$d/vg.*.xml" "${js[@]}" >"$d/cmp" 2>&1; then
        say "$c: $(cat "$d/cmp")"
    else
        fail "$c: $(cat "$d/cmp")"
    fi
done

# Every case that makes a heap error the check can see has exactly one error context in its dumps.
for c in overrun_small overrun_exact overrun_large underrun uaf_write double_free double_free_late \
    free_stack free_global free_interior free_interior_large free_mmap realloc_freed \
    delete_array_of_new free_of_new \
    delete_of_malloc thread_overrun fork_double_free; do
    n=$(cat "$tmp/$c"/t.*.json 2>/dev/null | python3 -c 'import json,sys
n=0
for line in sys.stdin.read().split("\n"):
    if line.strip(): n += len(json.loads(line)["errors"])
print(n)')
    [ "$n" = 1 ] || fail "$c: $n error contexts in its dumps, want 1"
done
# the fork case: the child's dump has the error, the parent's none
[ "$(ls "$tmp"/fork_double_free/t.*.tly | wc -l)" = 2 ] || fail "fork_double_free: want two dumps"

# The fill: a read of memory never written sees 0xCD bytes, as under PYTHONMALLOC=debug.
[ "$(cat "$tmp/uninit_read/t.out")" = cdcdcdcd ] ||
    fail "uninit_read read $(cat "$tmp/uninit_read/t.out") from a fresh block, want cdcdcdcd"
# A read after free reads the poison (0xDD), which the program notices.
[ "$(cat "$tmp/read_after_free/t.out")" = 1 ] || fail "read_after_free did not read the poison"

# tally run --check: the report at exit, memcheck's summary, and --error-exitcode.
"$tally" run --check --lib "$TALLY_LIB" -o "$tmp/run.tly" -- "$corpus" overrun_small >"$tmp/run.out" 2>"$tmp/run.err"
rc=$?
[ "$rc" = 0 ] || fail "tally run --check exited with $rc without --error-exitcode"
grep -q '^Invalid write of size 1$' "$tmp/run.err" || fail "tally run --check did not print the error: $(cat "$tmp/run.err")"
grep -q "Address 0x[0-9a-f]* is 0 bytes after a block of size 10 alloc'd" "$tmp/run.err" ||
    fail "tally run --check: no address line"
grep -q 'by overrun_small() (corpus.cpp:[0-9]*)' "$tmp/run.err" ||
    fail "tally run --check: the allocation stack is not symbolized: $(cat "$tmp/run.err")"
grep -q '^ERROR SUMMARY: 1 error from 1 context (suppressed: 0 from 0)$' "$tmp/run.err" ||
    fail "tally run --check: no ERROR SUMMARY"
"$tally" run --check --error-exitcode 7 --lib "$TALLY_LIB" -o "$tmp/run7.tly" -- "$corpus" double_free >/dev/null 2>&1
rc=$?
[ "$rc" = 7 ] || fail "tally run --check --error-exitcode 7 exited with $rc on a double free"
"$tally" run --check --error-exitcode 7 --lib "$TALLY_LIB" -o "$tmp/run0.tly" -- "$corpus" uninit_read >/dev/null 2>"$tmp/run0.err"
rc=$?
[ "$rc" = 0 ] || fail "tally run --check --error-exitcode 7 exited with $rc with no error"
grep -q '^ERROR SUMMARY: 0 errors from 0 contexts' "$tmp/run0.err" || fail "no ERROR SUMMARY for a clean run: $(cat "$tmp/run0.err")"
"$tally" errors "$tmp/run.tly" >"$tmp/errors.txt" 2>&1 || fail "tally errors failed: $(cat "$tmp/errors.txt")"
grep -q '^1 error in context 1 of 1:$' "$tmp/errors.txt" || fail "tally errors: no context line"
"$tally" errors --error-exitcode 3 "$tmp/run.tly" >/dev/null 2>&1
[ $? = 3 ] || fail "tally errors --error-exitcode 3 did not exit with 3"

# TALLY_CHECK=1: one line per error as it happens, and memcheck's summary at exit.
env LD_PRELOAD="$TALLY_LIB" TALLY_CHECK=1 TALLY_OUT="$tmp/one.tly" "$corpus" double_free >/dev/null 2>"$tmp/one.err"
grep -q "^tally: Invalid free() / delete / delete\[\] / realloc(): address 0x[0-9a-f]* is 0 bytes inside a block of size 10 free'd; in free() called from " "$tmp/one.err" ||
    fail "TALLY_CHECK=1: no error line: $(cat "$tmp/one.err")"
grep -q "^tally: ERROR SUMMARY: 1 error from 1 context; stacks: tally errors $tmp/one.tly$" "$tmp/one.err" ||
    fail "TALLY_CHECK=1: no summary line: $(cat "$tmp/one.err")"
# TALLY_CHECK=abort: the first error aborts, for a debugger.
env LD_PRELOAD="$TALLY_LIB" TALLY_CHECK=abort "$corpus" overrun_small >/dev/null 2>"$tmp/abort.err"
rc=$?
[ "$rc" = 134 ] || fail "TALLY_CHECK=abort exited with $rc, want 134 (SIGABRT)"
grep -q 'TALLY_CHECK=abort: aborting' "$tmp/abort.err" || fail "TALLY_CHECK=abort said nothing"

# memcheck's own suppressions (--gen-suppressions) of its Free errors suppress tally's, and a
# hand-written Memcheck:Addr1 naming the allocating function suppresses the overrun.
for c in double_free delete_array_of_new free_interior; do
    python3 -c 'import sys, xml.etree.ElementTree as ET
for p in sys.argv[1:]:
    for r in ET.parse(p).getroot().iter("rawtext"):
        print(r.text.strip())' "$tmp/$c"/vg.*.xml >"$tmp/$c.supp"
    grep -q 'Memcheck:Free' "$tmp/$c.supp" || { fail "$c: memcheck made no suppression"; continue; }
    "$tally" errors --suppressions "$tmp/$c.supp" --error-exitcode 5 "$tmp/$c"/t.*.tly >"$tmp/$c.supped" 2>&1
    rc=$?
    [ "$rc" = 0 ] && grep -q '^ERROR SUMMARY: 0 errors from 0 contexts (suppressed: 1 from 1)$' "$tmp/$c.supped" ||
        fail "$c: memcheck's suppression did not suppress tally's error (status $rc): $(cat "$tmp/$c.supped")"
done
printf '{\n   overrun\n   Memcheck:Addr1\n   fun:make_block*\n   fun:overrun_small*\n}\n' >"$tmp/addr.supp"
"$tally" errors --suppressions "$tmp/addr.supp" "$tmp/overrun_small"/t.*.tly >"$tmp/addr.out" 2>&1
grep -q '(suppressed: 1 from 1)' "$tmp/addr.out" || fail "a Memcheck:Addr1 suppression did not apply: $(cat "$tmp/addr.out")"
printf '{\n   other\n   Memcheck:Addr4\n   fun:make_block*\n}\n' >"$tmp/addr4.supp"
"$tally" errors --suppressions "$tmp/addr4.supp" "$tmp/overrun_small"/t.*.tly >"$tmp/addr4.out" 2>&1
grep -q '(suppressed: 0 from 0)' "$tmp/addr4.out" || fail "a Memcheck:Addr4 suppression applied to a 1-byte write"
# The leak check with the checks on: the same kinds as without (a checked block's data starts 32
# bytes into its pool block, and the leak check takes that as its start).
for c in dropped cycle interior large_inside heuristics; do
    for mode in leaks check; do
        opts=(--leaks)
        [ "$mode" = check ] && opts+=(--check)
        "$tally" run "${opts[@]}" --lib "$TALLY_LIB" -o "$tmp/lk-$c-$mode.tly" -- \
            "$top_builddir/tests/leaks/leakcases" "$c" >/dev/null 2>"$tmp/lk-$c-$mode.err"
        grep -A6 'LEAK SUMMARY' "$tmp/lk-$c-$mode.err" | grep -v '^tally' >"$tmp/lk-$c-$mode.sum"
    done
    [ -s "$tmp/lk-$c-leaks.sum" ] || fail "leakcases $c: no LEAK SUMMARY"
    cmp -s "$tmp/lk-$c-leaks.sum" "$tmp/lk-$c-check.sum" ||
        fail "leakcases $c: --leaks --check gives other kinds than --leaks:
$(diff "$tmp/lk-$c-leaks.sum" "$tmp/lk-$c-check.sum")"
done

# a dump without the checks
env LD_PRELOAD="$TALLY_LIB" TALLY_PROFILE=all TALLY_OUT="$tmp/nocheck.tly" "$corpus" uninit_read >/dev/null 2>&1
"$tally" errors "$tmp/nocheck.tly" >"$tmp/nocheck.out" 2>&1
[ $? = 2 ] && grep -q 'no heap checks in this dump' "$tmp/nocheck.out" ||
    fail "tally errors on a dump without checks: $(cat "$tmp/nocheck.out")"
finish
