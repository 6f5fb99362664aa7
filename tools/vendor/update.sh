#!/bin/bash
# tools/vendor/update.sh - fetch the vendored libraries of the HTML page from the npm registry
# and check them against the sums in README.md. Run from anywhere; needs npm.
set -eu
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
d3=7.9.2
flame=5.0.0
t=$(mktemp -d)
trap 'rm -rf "$t"' EXIT
cd "$t"
npm pack -q "d3@$d3" "d3-flame-graph@$flame" >/dev/null
mkdir d3 flame
tar xzf "d3-$d3.tgz" -C d3
tar xzf "d3-flame-graph-$flame.tgz" -C flame
cp d3/package/dist/d3.min.js flame/package/dist/d3-flamegraph.umd.min.js .
for f in d3.min.js d3-flamegraph.umd.min.js; do
    want=$(grep -F "\`$f\`" "$here/README.md" | grep -o '`[0-9a-f]\{64\}`' | tr -d '`')
    got=$(sha256sum "$f" | cut -d' ' -f1)
    [ "$want" = "$got" ] || { echo "update.sh: $f has sha256 $got, README.md says $want" >&2; exit 1; }
done
cp d3.min.js d3-flamegraph.umd.min.js "$here/"
cp d3/package/LICENSE "$here/LICENSE.d3"
cp flame/package/LICENSE "$here/LICENSE.d3-flame-graph"
echo "update.sh: d3 $d3 and d3-flame-graph $flame are in $here"
