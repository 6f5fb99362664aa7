#!/bin/bash
# cxx_new.sh - the library's operator new and delete (every form: array, nothrow, sized,
# aligned; out of memory with and without a new-handler) against libstdc++'s own: cxx_new
# prints what it saw, and must print the same with and without the library, with the library's
# operator new the one the program binds. cxx_new_own replaces the plain and aligned operator
# new and delete itself: the array, nothrow and sized forms, which the library also defines,
# must still reach the program's own (it counts them), and its nothrow new of too much must
# still return nullptr, not throw.

[ -n "${BASH_VERSION:-}" ] || exec bash "$0" "$@"
. "$(dirname "$0")/common.sh"

dir=${top_builddir:?top_builddir is not set}/tests/preload
for p in cxx_new cxx_new_own; do
    [ -x "$dir/$p" ] || hard_error "$dir/$p is not built (make check builds it)"
done
so=${TALLYMALLOC_SO:-${TALLY_LIB:?}}

cd "$tmp" || hard_error "cannot cd to $tmp"
which=$(LD_PRELOAD=$so "$dir/cxx_new" which)
[ "$(readlink -f "$which")" = "$(readlink -f "$so")" ] ||
    fail "operator new binds to $which under the library, not to the library"
which=$("$dir/cxx_new" which)
case $which in
    *libstdc++*) ;;
    *) fail "without the library operator new binds to $which, not libstdc++" ;;
esac

run_plain "$dir/cxx_new"
run_tally "$dir/cxx_new"
check_status plain 0
check_same
grep -q "^aligned: ok$" "$tmp/out/tally.out" || fail "misaligned blocks from aligned new"
grep -q "^with a handler: called 1 time(s), then std::bad_alloc$" "$tmp/out/tally.out" ||
    fail "the new-handler was not called once before std::bad_alloc"
small_served

run_plain -n own_plain "$dir/cxx_new_own"
run_tally -n own_tally "$dir/cxx_new_own"
check_status own_plain 0
check_same own_plain own_tally
grep -q "^own new used, own delete used, own aligned new used, own aligned delete used$" \
    "$tmp/out/own_tally.out" || fail "the program's own operator new/delete were bypassed"
grep -q "^nothrow out of memory: null null$" "$tmp/out/own_tally.out" ||
    fail "nothrow new did not return nullptr over the program's throwing operator new"
finish
