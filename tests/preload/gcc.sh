#!/bin/bash
# gcc.sh - gcc -O2 compiles gcc_input.c to an object and to an executable,
# once plainly and once with libtallymalloc.so preloaded into the driver and
# every program it starts (cc1, as, collect2, ld).  The objects and the
# executables must be byte-identical, the executables must print the same,
# and the compiler's processes must have been served by the pools.

[ -n "${BASH_VERSION:-}" ] || exec bash "$0" "$@"
. "$(dirname "$0")/common.sh"

need gcc gcc
need as binutils
need cmp diffutils

src=$preload_srcdir/gcc_input.c
# The same source path and flags in both runs; only the output dirs differ,
# and gcc does not record those.  Temporary files stay in $tmp.
cc=(env -u GCC_EXEC_PREFIX -u COMPILER_PATH -u LIBRARY_PATH -u C_INCLUDE_PATH -u CPATH
    TMPDIR="$tmp" LC_ALL=C gcc -std=c11 -O2 -Wall)
mkdir -p "$tmp/plain" "$tmp/tally"
cd "$tmp" || hard_error "cannot cd to $tmp"

for kind in plain tally; do
    run_$kind -n ${kind}_obj "${cc[@]}" -c "$src" -o "$tmp/$kind/gcc_input.o"
    run_$kind -n ${kind}_exe "${cc[@]}" "$src" -o "$tmp/$kind/gcc_input"
done
check_status plain_obj 0
check_status plain_exe 0
check_status tally_obj 0
check_status tally_exe 0
# The compiler's own processes must have used the pools.
small_served

for f in gcc_input.o gcc_input; do
    if [ ! -f "$tmp/tally/$f" ]; then
        fail "the tally run did not produce $f"
    elif ! cmp "$tmp/plain/$f" "$tmp/tally/$f" >&2; then
        fail "$f differs between the plain and the tally compile"
        objdump -d "$tmp/plain/$f" >"$tmp/plain.dis" 2>&1
        objdump -d "$tmp/tally/$f" >"$tmp/tally.dis" 2>&1
        diff -u "$tmp/plain.dis" "$tmp/tally.dis" | head -n 40 >&2
    else
        say "$f is byte-identical ($(wc -c <"$tmp/plain/$f") bytes)"
    fi
done

# Both executables print the same; so does the plain one under the library.
if [ -x "$tmp/plain/gcc_input" ] && [ -x "$tmp/tally/gcc_input" ]; then
    run_plain -n from_plain "$tmp/plain/gcc_input"
    run_plain -n from_tally "$tmp/tally/gcc_input"
    run_tally -n under_tally "$tmp/plain/gcc_input"
    check_status from_plain 0
    check_same from_plain from_tally
    check_same from_plain under_tally
fi
finish
