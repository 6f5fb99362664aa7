#!/usr/bin/env bash
# tally_read.sh - how fast `tally` reads a big dump: a synthetic all-mode dump of N call sites
# (default 100,000) whose stacks of 24 frames are return addresses inside the real functions of
# a real binary (python3.11, so that symbolization does real DWARF work when its debug file is
# installed, and symbol-table work otherwise), drawn from 30,000 call instructions' worth of
# return addresses as a large program has, then the time of `tally report`, `tally leaks`,
# `tally flame --folded` and `tally report --json --top 0` (every stack symbolized), medians of
# 3 runs.
#
#   bench/tally_read.sh [--tally PATH] [--sites N]
set -eu
export LC_ALL=C
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
tally=$here/../tools/tally
sites=100000
while [[ $# -gt 0 ]]; do
    case $1 in
    --tally) tally=$2; shift 2 ;;
    --sites) sites=$2; shift 2 ;;
    *) echo "usage: $0 [--tally PATH] [--sites N]" >&2; exit 2 ;;
    esac
done
[[ -x $tally ]] || { echo "tally_read.sh: $tally not built" >&2; exit 1; }
bin=$(readlink -f /usr/bin/python3)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
/usr/bin/python3 - "$bin" "$sites" "$tmp/big.tly" <<'PY'
import random, subprocess, sys
binary, nsites, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
funcs = []
for line in subprocess.run(["nm", "-S", "--defined-only", binary], capture_output=True, text=True).stdout.splitlines():
    p = line.split()
    if len(p) == 4 and p[2] in "tT" and int(p[1], 16) > 16:
        funcs.append((int(p[0], 16), int(p[1], 16)))
if not funcs:  # stripped: the dynamic symbols
    for line in subprocess.run(["nm", "-D", "-S", "--defined-only", binary], capture_output=True, text=True).stdout.splitlines():
        p = line.split()
        if len(p) == 4 and p[2] in "tT" and int(p[1], 16) > 16:
            funcs.append((int(p[0], 16), int(p[1], 16)))
rng = random.Random(1)
calls = [(a + 1 + rng.randrange(s - 1), 0) for a, s in (rng.choice(funcs) for _ in range(30000))]
lo = min(a for a, _ in funcs) & ~0xfff
hi = max(a + s for a, s in funcs)
w = open(out, "w")
w.write("tally-dump 1\n")
w.write("header program=%s pid=1 ppid=0 mode=all sample_interval=0 count_scale=1 depth=32 unwinder=fast start_ns=0 dump_ns=0 duration_ns=1000000000 reason=exit version=bench\n" % binary)
w.write("totals alloc_bytes=%d live_bytes=0 peak_bytes=%d sites=%d\n" % (nsites * 1000, nsites * 100, nsites + 1))
w.write("module base=0x0 lo=%#x hi=%#x build_id=- path=%s\n" % (lo, hi, binary))
# stacks share outer frames, as real ones do: a pool of prefixes, then distinct inner frames
prefixes = [[rng.choice(calls) for _ in range(16)] for _ in range(200)]
# the frames as the library writes them: a prefix tree from the outermost frame
node, trie = 0, {}
for i in range(2, nsites + 2):
    frames = [rng.choice(calls) for _ in range(8)] + rng.choice(prefixes)  # innermost first
    parent = 0
    for a, _ in reversed(frames):
        key = (parent, a)
        if key not in trie:
            node += 1
            trie[key] = node
            w.write("frame id=%d parent=%d ip=%#x\n" % (node, parent, a))
        parent = trie[key]
    w.write("stack id=%d frame=%d depth=%d\n" % (i, parent, len(frames)))
    n = rng.randrange(1, 1000)
    w.write("site id=%d stack=%d alloc_count=%d alloc_bytes=%d granted_bytes=%d free_count=%d free_bytes=%d live_count=1 live_bytes=64 max_live_bytes=%d peak_live_bytes=%d samples=%d size_hist=6:%d life_hist=3:%d\n"
            % (i, i, n, 64 * n, 64 * n, n - 1, 64 * (n - 1), 64 * n, 64 * rng.randrange(n), n, n, n - 1))
for i in range(2, nsites + 2):
    w.write("block site=%d addr=%#x size=64\n" % (i, 0x10000000 + 64 * i))
w.write("end\n")
PY
ls -l "$tmp/big.tly" | awk '{printf "dump: %s sites, %.1f MB of text\n", '"$sites"', $5 / 1048576}'
. "$here/median.sh"
time_it() { # LABEL ARGS...
    local label=$1
    shift
    for r in 1 2 3; do
        /usr/bin/time -f '%e %M' -o "$tmp/t" "$tally" "$@" >/dev/null || { echo "$label: failed" >&2; return; }
        cat "$tmp/t"
    done >"$tmp/ts"
    printf '| %s | %s | %s |\n' "$label" "$(awk '{print $1}' "$tmp/ts" | median)" \
        "$(awk '{print $2}' "$tmp/ts" | median | awk '{printf "%.0f", $1 / 1024}')"
}
echo "| command | seconds (median of 3) | peak RSS MiB |"
echo "|---|---|---|"
time_it "tally report" report "$tmp/big.tly"
time_it "tally leaks" leaks "$tmp/big.tly"
time_it "tally flame --folded" flame --folded "$tmp/big.tly"
time_it "tally report --json --top 0" report --json --top 0 "$tmp/big.tly"
