#!/bin/bash
# tests/preload/heap_errors.sh - never less safe than glibc. With no option set, each misuse of
# heap_errors.c (double frees, in one thread and across two, a realloc of a freed block,
# pointers that are no block: interior, misaligned, never handed out, beyond the arenas made so
# far) and a C++ double delete must end the program as glibc ends it: one line on stderr naming
# the problem and the call, then abort(). Each case also runs without the library: whatever
# glibc stops, tallymalloc stops. A program that does everything right next to them runs to its
# end in every profiling mode.
. "$top_srcdir/tests/preload/common.sh"
prog=$top_builddir/tests/preload/heap_errors
cxx=$top_builddir/tests/preload/heap_errors_cxx
[ -x "$prog" ] && [ -x "$cxx" ] || hard_error "heap_errors is not built"

# expect LABEL WHAT CMD...: the run under the library aborts with one line that says WHAT and
# names the call (CALL: free unless set, as "operator delete" for a C++ delete)
expect() {
    local label=$1 what=$2 call=${CALL:-[a-z]*}
    shift 2
    timeout 60 "$@" >"$tmp/$label.plain.out" 2>"$tmp/$label.plain.err"
    local plain=$?
    timeout 60 env LD_PRELOAD="$TALLY_LIB" "$@" >"$tmp/$label.out" 2>"$tmp/$label.err"
    local rc=$?
    [ "$rc" = 134 ] || fail "$label: exit status $rc, want 134 (SIGABRT); stderr: $(cat "$tmp/$label.err")"
    grep -q survived "$tmp/$label.out" && fail "$label: the program went on after the error"
    [ "$(wc -l <"$tmp/$label.err")" = 1 ] || fail "$label: want one line on stderr: $(cat "$tmp/$label.err")"
    grep -q "^tally: $call(): $what.*, called from [^ ]" "$tmp/$label.err" ||
        fail "$label: the message does not say '$what' and the call: $(cat "$tmp/$label.err")"
    local glibc="lets it pass"
    [ "$plain" = 134 ] && glibc="aborts: $(head -1 "$tmp/$label.plain.err")"
    [ "$plain" -gt 128 ] && [ "$plain" != 134 ] && glibc="dies of signal $((plain - 128))"
    say "$label: $(cat "$tmp/$label.err")   [glibc $glibc]"
}

expect double "double free detected" "$prog" double
expect double_later "double free detected" "$prog" double_later
expect double_thread "double free detected" "$prog" double_thread
expect realloc_freed "double free detected" "$prog" realloc_freed
expect interior "invalid pointer" "$prog" interior
expect misaligned "invalid pointer" "$prog" misaligned
expect never "invalid pointer" "$prog" never
expect beyond "invalid pointer" "$prog" beyond
CALL="operator delete" expect double_cxx "double free detected" "$cxx"
grep -q 'called from .*heap_errors_cxx+0x' "$tmp/double_cxx.err" ||
    fail "double_cxx: the call's program frame is not named: $(cat "$tmp/double_cxx.err")"

# Nothing is stopped that is right, in any mode.
for mode in off sample all leaks; do
    envs=(TALLY_PROFILE=$mode)
    [ $mode = leaks ] && envs=(TALLY_LEAKS=quiet TALLY_OUT="$tmp/fine.tly")
    out=$(timeout 60 env LD_PRELOAD="$TALLY_LIB" "${envs[@]}" "$prog" fine 2>"$tmp/fine.$mode.err")
    rc=$?
    [ "$rc" = 0 ] && [ "$out" = fine ] && [ ! -s "$tmp/fine.$mode.err" ] ||
        fail "fine ($mode): status $rc, out '$out', err $(cat "$tmp/fine.$mode.err")"
done
finish
