#!/bin/bash
# tests/preload/hangs.sh - programs that once hung or crashed under the library, each compared
# with its run without it:
#   getattr    threads that ask for their own stack bounds (pthread_getattr_np, as Rust's
#              runtime and Ruby do): glibc allocates while it holds the thread's lock, and the
#              walker asked the same of glibc and waited forever; in all, leak and sample mode
#              (every allocation sampled)
#   sigalloc   a signal handler that allocates large blocks while the program does: the handler
#              waited for the large table's lock the interrupted code held; 5 runs, and 3
#              with the heap checks on (TALLY_CHECK=1: the handler's blocks are checked too)
#   conflicts  a program that exports libzstd's and libunwind's names: the library's private
#              copies must bind to themselves (rustc's libLLVM exports ZSTD_*, and libzstd freed
#              its context with LLVM's); with the dump compressed, and stacks from libunwind
. "$top_srcdir/tests/preload/common.sh"
d=$top_builddir/tests/preload
for p in getattr sigalloc conflicts; do [ -x "$d/$p" ] || hard_error "$d/$p is not built"; done

# [args=ARGS] same LABEL PROGRAM ENV...: the run under the library ends (30 s at most) as the
# plain one does
same() {
    local label=$1 prog=$2
    shift 2
    timeout 30 "$prog" ${args:-} >"$tmp/$label.plain" 2>&1
    local want=$?
    timeout -k 5 30 env LD_PRELOAD="$TALLY_LIB" TALLY_OUT="$tmp/$label.tly" "$@" "$prog" ${args:-} >"$tmp/$label.out" 2>"$tmp/$label.err"
    local rc=$?
    { [ $rc = 124 ] || [ $rc = 137 ]; } && { fail "$label: hung (killed after 30 s)"; return 1; }
    [ $rc = "$want" ] || { fail "$label: exit status $rc, $want without the library: $(tail -3 "$tmp/$label.err")"; return 1; }
    diff -q "$tmp/$label.plain" "$tmp/$label.out" >/dev/null ||
        { fail "$label: output differs: $(cat "$tmp/$label.out")"; return 1; }
    grep -qE '^tally: (Invalid|Mismatched|ERROR SUMMARY)' "$tmp/$label.err" &&
        { fail "$label: heap errors reported: $(head -3 "$tmp/$label.err")"; return 1; }
    say "$label ($*): $(tail -1 "$tmp/$label.out")"
}

same getattr-all "$d/getattr" TALLY_PROFILE=all
same getattr-leaks "$d/getattr" TALLY_LEAKS=quiet
same getattr-sample "$d/getattr" TALLY_PROFILE=sample TALLY_SAMPLE=1
same getattr-check "$d/getattr" TALLY_CHECK=1
for i in 1 2 3 4 5; do
    same "sigalloc-$i" "$d/sigalloc" TALLY_PROFILE=all || break
done
for i in 1 2 3; do # 500 ticks: the checks make each tick's 300 KB blocks cost (sigalloc.c)
    args=500 same "sigalloc-check-$i" "$d/sigalloc" TALLY_CHECK=1 || break
done
for u in fast libunwind check; do
    same "conflicts-$u" "$d/conflicts" TALLY_PROFILE=all TALLY_UNWIND=$u
    [ "$(head -c4 "$tmp/conflicts-$u.tly" | od -An -tx1 | tr -d ' ')" = 28b52ffd ] ||
        fail "conflicts-$u: the dump is not zstd-compressed"
done
same conflicts-leaks "$d/conflicts" TALLY_LEAKS=quiet
finish
