#!/bin/bash
# perl.sh - perl runs workload.pl (hashes, arrays, regexes, string building,
# sorting, objects) with and without libtallymalloc.so; the output must match.

[ -n "${BASH_VERSION:-}" ] || exec bash "$0" "$@"
. "$(dirname "$0")/common.sh"

need perl perl-base

# Fixed hash seed: the script sorts keys anyway, this only makes the two
# runs allocate alike.
pl=(env -u PERL5LIB -u PERL5OPT PERL_HASH_SEED=0 PERL_PERTURB_KEYS=0
    perl "$preload_srcdir/workload.pl")

cd "$tmp" || hard_error "cannot cd to $tmp"
run_plain "${pl[@]}"
run_tally "${pl[@]}"
check_status plain 0
check_same
small_served
finish
