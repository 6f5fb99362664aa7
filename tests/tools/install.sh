#!/bin/bash
# tests/tools/install.sh - what `make install` puts in place works where it is put: the library,
# tally.h and tallymalloc.pc (a program built with `pkg-config --cflags --libs tallymalloc` links
# and runs, and reads the statistics), the two man pages (tally(1), tallymalloc(3): rendered by
# man with no warning), and the documents in $(docdir).
[ -n "${BASH_VERSION:-}" ] || exec bash "$0" "$@"
. "$top_srcdir/tests/preload/common.sh"
need pkg-config pkg-config
need man man-db
dest=$tmp/dest
env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL make -s -C "$top_builddir" install DESTDIR="$dest" \
    >"$tmp/install.log" 2>&1 || fatal "make install failed: $(tail -5 "$tmp/install.log")"
prefix=$(sed -n 's/^prefix=//p' "$top_builddir/src/tallymalloc.pc")
pc=$(find "$dest" -name tallymalloc.pc)
[ -n "$pc" ] || fatal "no tallymalloc.pc installed"
[ "$(dirname "$pc")" = "$dest$prefix/lib/pkgconfig" ] || fail "tallymalloc.pc is in $(dirname "$pc")"
export PKG_CONFIG_PATH=$dest$prefix/lib/pkgconfig PKG_CONFIG_SYSROOT_DIR=$dest
flags=$(pkg-config --cflags --libs tallymalloc) || fatal "pkg-config cannot read tallymalloc.pc"
[ "$(pkg-config --modversion tallymalloc)" = "$(sed -n 's/^#define TALLY_VERSION_STRING "\(.*\)"/\1/p' "$top_srcdir/include/tally.h")" ] ||
    fail "tallymalloc.pc's version is not tally.h's"
cat >"$tmp/use.c" <<'C'
#include <stdio.h>
#include <stdlib.h>
#include <tally.h>
int main(void) {
    void *p = malloc(100);
    struct tally_stats s;
    if (tally_stats_get(&s, sizeof s) != 0 || s.small_mallocs == 0 || s.arenas == 0)
        return 1;
    free(p);
    printf("%s %u\n", tally_version(), s.nclasses);
    return 0;
}
C
# shellcheck disable=SC2086 # the flags are words
cc -o "$tmp/use" "$tmp/use.c" $flags || fatal "a program did not build with pkg-config's flags ($flags)"
out=$(LD_LIBRARY_PATH=$dest$prefix/lib "$tmp/use") || fail "the program linked with -ltallymalloc failed"
[ "$out" = "$(pkg-config --modversion tallymalloc) 32" ] || fail "the linked program said '$out'"
for m in man1/tally.1 man3/tallymalloc.3; do
    f=$dest$prefix/share/man/$m
    [ -s "$f" ] || { fail "$m is not installed"; continue; }
    warn=$(MANWIDTH=100 man --warnings -l "$f" 2>&1 >/dev/null)
    [ -z "$warn" ] || fail "man $m warns: $warn"
    MANWIDTH=100 man -l "$f" 2>/dev/null | grep -q . || fail "man $m renders nothing"
done
MANWIDTH=200 man -l "$dest$prefix/share/man/man3/tallymalloc.3" 2>/dev/null | grep -q 'TALLY_CHECK' ||
    fail "tallymalloc(3) does not document TALLY_CHECK"
# every TALLY_ option the library reads is in tallymalloc(3)
for o in $(grep -o '{"[A-Z_]*", OPT_' "$top_srcdir/src/options.c" | sed 's/{"\([A-Z_]*\)".*/\1/'); do
    grep -q "^\.B TALLY_$o\$" "$top_srcdir/src/tallymalloc.3" || fail "tallymalloc(3) lacks TALLY_$o"
done
for d in README.md ARCHITECTURE.md FORMAT.md JSON.md; do
    [ -s "$dest$prefix/share/doc/tallymalloc/$d" ] || fail "$d is not installed in the docdir"
done
[ -s "$dest$prefix/include/tally.h" ] || fail "tally.h is not installed"
say "installed under $prefix: library, tally.h, tallymalloc.pc, tally(1), tallymalloc(3), the docs"
finish
