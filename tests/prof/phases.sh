#!/bin/bash
# tests/prof/phases.sh - memory over time by call site: the timeline's detailed points (`sites`)
# of tests/prof/phases.c in `all` mode follow its phases exactly (tests/prof/phases_check.py);
# in `sample` mode they are there and tally reads them; a dump whose `sites` is malformed is
# refused with one line.
. "$top_srcdir/tests/preload/common.sh"
need nm binutils

prog=$top_builddir/tests/prof/phases
[ -x "$prog" ] || hard_error "$prog is not built"
export PYTHONPATH=$top_srcdir/tests/prof
tally=$top_builddir/tools/tally

say "all mode"
timeout 60 env LD_PRELOAD="$TALLY_LIB" TALLY_PROFILE=all TALLY_COMPRESS=0 TALLY_OUT="$tmp/all.tly" \
    "$prog" || fail "phases failed under all mode"
/usr/bin/python3 "$top_srcdir/tests/prof/phases_check.py" "$tmp/all.tly" "$prog" ||
    fail "the timeline of phases does not follow its phases"

say "massif's detailed snapshots"
if command -v ms_print >/dev/null; then
    "$tally" export --format massif -o "$tmp/all.massif" "$tmp/all.tly" || fail "tally export failed"
    ms_print "$tmp/all.massif" >"$tmp/all.ms" || fail "ms_print cannot read the export"
    # site_late's tree at several points of its growth, not only at the peak and the end
    n=$(grep -E '^->[0-9.]+% \([0-9,]+B\) 0x[0-9A-F]+: site_late' "$tmp/all.ms" |
        sed 's/.*(\([0-9,]*\)B).*/\1/' | sort -u | wc -l)
    [ "$n" -ge 3 ] || fail "ms_print shows site_late with $n different sizes, want 3 or more"
fi

say "sample mode"
timeout 60 env LD_PRELOAD="$TALLY_LIB" TALLY_COMPRESS=0 TALLY_OUT="$tmp/sample.tly" "$prog" ||
    fail "phases failed under sample mode"
n=$(grep -c '^timeline .* sites=' "$tmp/sample.tly")
[ "$n" -ge 3 ] || fail "sample mode: $n detailed timeline points, want 3 or more"
"$tally" report "$tmp/sample.tly" >/dev/null || fail "tally cannot read the sample-mode dump"

say "a malformed sites field"
for bad in 'sites=3:1' 'sites=3:1:2,' 'sites=x:1:2' 'sites=3:1:-2'; do
    sed "0,/^timeline /s/^timeline \(.*\)/timeline \1 $bad/" "$tmp/all.tly" >"$tmp/bad.tly"
    out=$("$tally" report "$tmp/bad.tly" 2>&1 >/dev/null)
    rc=$?
    [ "$rc" = 2 ] && [ "$(printf '%s\n' "$out" | wc -l)" = 1 ] && [[ $out == *sites* ]] ||
        fail "$bad: tally said (status $rc): $out"
done
finish
