#!/bin/bash
# cxx_exceptions.sh - cxx_throw (four threads throwing std::string-carrying
# exceptions through RAII frames, freeing each other's objects, and an
# exception_ptr rethrown in main) with and without libtallymalloc.so; its
# counts and checksums must match.
#
# The Makefile builds $top_builddir/tests/preload/cxx_throw; CXX_THROW
# overrides the path.

[ -n "${BASH_VERSION:-}" ] || exec bash "$0" "$@"
. "$(dirname "$0")/common.sh"

prog=${CXX_THROW:-${top_builddir:?top_builddir is not set}/tests/preload/cxx_throw}
if [ ! -x "$prog" ]; then
    hard_error "$prog is not built (make check builds it; or set CXX_THROW)"
fi

cd "$tmp" || hard_error "cannot cd to $tmp"
run_plain "$prog"
run_tally "$prog"
check_status plain 0
check_same
small_served
finish
