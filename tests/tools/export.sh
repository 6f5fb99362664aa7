#!/bin/bash
# tests/tools/export.sh - `tally export`. massif: against valgrind's massif itself: the
# test suite's golden program runs under `valgrind --tool=massif` and under `tally run --all`;
# ms_print reads both files, and the peak snapshot of ours has massif's peak bytes and the same
# allocation sites at the top of its tree (function, file:line and bytes each, for every site
# over massif's 1% threshold). Then the export's own consistency: every node holds at least its
# children, the timeline is in time order, the last snapshot is what the dump says is live.
# speedscope: its schema, its totals, and speedscope's own viewer in headless chromium.
# pprof: go tool pprof's figures per function and its traces.
[ -n "${BASH_VERSION:-}" ] || exec bash "$0" "$@"
. "$top_srcdir/tests/preload/common.sh"
tally=$top_builddir/tools/tally
golden=$top_builddir/tests/tools/golden
[ -x "$tally" ] || hard_error "$tally is not built"
[ -x "$golden" ] || hard_error "$golden is not built"
need valgrind valgrind
need ms_print valgrind
cd "$tmp" || hard_error "cannot cd to $tmp"

timeout 300 valgrind -q --tool=massif --massif-out-file=vg.massif "$golden" >/dev/null 2>vg.err ||
    fatal "massif failed: $(cat vg.err)"
"$tally" run --all --lib "$TALLY_LIB" -o g.tly -- "$golden" >/dev/null 2>run.err ||
    fatal "tally run failed: $(cat run.err)"
"$tally" export --format massif -o t.massif g.tly 2>exp.err || fatal "tally export failed: $(cat exp.err)"
ms_print t.massif >t.ms 2>t.err || fail "ms_print cannot read the export: $(cat t.err)"
grep -q "Detailed snapshots: \[\([0-9]*, \)*[0-9]* (peak)\(, [0-9]*\)*\]" t.ms || fail "ms_print sees no peak snapshot: $(grep -i snapshots t.ms)"
ms_print vg.massif >vg.ms 2>&1 || fatal "ms_print cannot read massif's own file"
"$tally" report --json g.tly >r.json 2>r.err || fatal "tally report --json failed: $(cat r.err)"
/usr/bin/python3 - vg.massif t.massif r.json <<'PY' || fail "the export differs from massif"
import json, re, sys

def snapshots(path):
    snaps, cur, tree = [], None, None
    for line in open(path):
        line = line.rstrip("\n")
        m = re.match(r"^(snapshot|time|mem_heap_B|mem_heap_extra_B|mem_stacks_B|heap_tree)=(.*)$", line)
        if m:
            if m.group(1) == "snapshot":
                cur = {"tree": []}
                snaps.append(cur)
            cur[m.group(1)] = m.group(2)
        elif re.match(r"^\s*n\d+:", line) and cur is not None:
            cur["tree"].append(line)
    return snaps

def top_sites(tree):
    """depth-1 nodes: (function (file:line), bytes), the address left out"""
    out = []
    for line in tree:
        m = re.match(r"^ n\d+: (\d+) 0x[0-9A-Fa-f]+: (.*)$", line)
        if m:
            out.append((m.group(2), int(m.group(1))))
    return sorted(out)

def check_sums(tree):
    """every node holds at least the sum of its children"""
    stack, bad = [], []
    for line in tree:
        m = re.match(r"^( *)n(\d+): (\d+)", line)
        depth, b = len(m.group(1)), int(m.group(3))
        while stack and stack[-1][0] >= depth:
            stack.pop()
        if stack:
            stack[-1][2] -= b
            if stack[-1][2] < 0:
                bad.append(line)
        stack.append([depth, b, b])
    return bad

vg, t = snapshots(sys.argv[1]), snapshots(sys.argv[2])
report = json.load(open(sys.argv[3]))
bad = []
vp = [s for s in vg if s["heap_tree"] == "peak"][0]
tp = [s for s in t if s["heap_tree"] == "peak"]
if len(tp) != 1:
    print("want one peak snapshot in the export, got %d" % len(tp)); sys.exit(1)
tp = tp[0]
if int(tp["mem_heap_B"]) != int(vp["mem_heap_B"]):
    bad.append("peak heap %s B, massif's %s B" % (tp["mem_heap_B"], vp["mem_heap_B"]))
if int(tp["mem_heap_B"]) != report["totals"]["peak_bytes"]:
    bad.append("peak heap %s B, the dump's peak %s B" % (tp["mem_heap_B"], report["totals"]["peak_bytes"]))
if top_sites(tp["tree"]) != top_sites(vp["tree"]):
    bad.append("peak sites %s, massif's %s" % (top_sites(tp["tree"]), top_sites(vp["tree"])))
for s in t:
    if s["tree"]:
        bad += ["a node smaller than its children: " + l for l in check_sums(s["tree"])]
times = [int(s["time"]) for s in t]
if times != sorted(times):
    bad.append("snapshot times out of order: %s" % times)
if int(t[-1]["mem_heap_B"]) != report["totals"]["live_bytes"] or t[-1]["heap_tree"] != "detailed":
    bad.append("the last snapshot (%s B, %s) is not the dump's live %s B, detailed" %
               (t[-1]["mem_heap_B"], t[-1]["heap_tree"], report["totals"]["live_bytes"]))
for b in bad:
    print("FAIL:", b)
print("peak %s B; %d sites over the threshold, as massif's" % (tp["mem_heap_B"], len(top_sites(tp["tree"]))))
sys.exit(1 if bad else 0)
PY
# speedscope: the file validates against the schema speedscope's release ships, each profile's
# weights add up to the dump's figure, and speedscope itself (its release, served over HTTP as
# speedscope.app serves it) opens it in headless chromium: the profiles are listed, no script
# error.
ss=/usr/local/share/tallymalloc-tests/speedscope/package/dist/release
[ -f "$ss/file-format-schema.json" ] || hard_error "speedscope's release is not in $ss (.ci/setup fetches it from npm)"
need chromium chromium
"$tally" export --format speedscope -o g.speedscope.json g.tly 2>exp.err || fail "export --format speedscope failed: $(cat exp.err)"
/usr/bin/python3 - "$ss/file-format-schema.json" g.speedscope.json r.json <<'PY' || fail "the speedscope file is not what it should be"
import json, sys, jsonschema
schema, doc, report = (json.load(open(p)) for p in sys.argv[1:4])
jsonschema.validate(doc, schema)
t = report["totals"]
want = {"bytes live at the peak": t["peak_bytes"], "bytes allocated": t["alloc_bytes"],
        "bytes live at the dump": t["live_bytes"]}
bad = []
names = [f["name"] for f in doc["shared"]["frames"]]
for p in doc["profiles"]:
    what = p["name"].split(": ", 1)[1]
    if p["unit"] != "bytes" or sum(p["weights"]) != want[what] or p["endValue"] != want[what]:
        bad.append("%s: %s B in %s, want %s B" % (p["name"], sum(p["weights"]), p["unit"], want[what]))
    if len(p["samples"]) != len(p["weights"]):
        bad.append("%s: %d samples, %d weights" % (p["name"], len(p["samples"]), len(p["weights"])))
    for s in p["samples"]:
        if not s or names[s[0]] != "main":
            bad.append("%s: a sample does not start at main: %s" % (p["name"], [names[i] for i in s]))
            break
peak = {names[s[-1]]: w for s, w in zip(doc["profiles"][0]["samples"], doc["profiles"][0]["weights"])}
if peak.get("build_table") != 20000 or "big_blocks" not in peak:
    bad.append("the peak profile's leaves: %s" % peak)
for b in bad:
    print("FAIL:", b)
sys.exit(1 if bad else 0)
PY
mkdir -p web && cp -r "$ss"/. web/ && cp g.speedscope.json web/ || fatal "cannot copy speedscope"
/usr/bin/python3 -c '
import functools, http.server, os, sys
http.server.SimpleHTTPRequestHandler.log_message = lambda *a: None
h = functools.partial(http.server.SimpleHTTPRequestHandler, directory=sys.argv[1])
s = http.server.ThreadingHTTPServer(("127.0.0.1", 0), h)
open(sys.argv[2], "w").write(str(s.server_address[1]))
s.serve_forever()' "$tmp/web" "$tmp/port" &
server=$!
on_exit "kill $server 2>/dev/null"
for _ in $(seq 50); do [ -s port ] && break; sleep 0.1; done
port=$(cat port)
timeout 120 chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
    --disable-background-networking --disable-component-update --disable-sync \
    --user-data-dir="$tmp/profile" --enable-logging=stderr --v=0 --virtual-time-budget=5000 \
    --dump-dom "http://127.0.0.1:$port/index.html#profileURL=http://127.0.0.1:$port/g.speedscope.json" \
    >ss.dom 2>ss.log || fail "chromium failed on speedscope: $(tail -3 ss.log)"
grep -q 'Importing as speedscope json file' ss.log || fail "speedscope did not import the file: $(grep CONSOLE ss.log | tail -3)"
grep -q '<title>golden - speedscope' ss.dom || fail "speedscope's page does not show the profile: $(head -c 400 ss.dom)"
grep -q 'golden: bytes live at the peak' ss.dom || fail "speedscope does not list the peak profile"
grep -E 'Uncaught|:ERROR:CONSOLE' ss.log && fail "script errors in speedscope"
kill "$server" 2>/dev/null

# pprof: go tool pprof (Debian's golang-go) reads the gzipped profile.proto; -top with every
# sample index gives, per function of golden's, exactly the figures the dump has for the call
# sites that function allocates from; -traces has golden's stacks; the header carries the
# program's name and build-id.
need go golang-go
"$tally" export --format pprof -o g.pb.gz g.tly 2>exp.err || fail "export --format pprof failed: $(cat exp.err)"
[ "$(head -c2 g.pb.gz | od -An -tx1 | tr -d ' ')" = 1f8b ] || fail "the pprof file is not gzipped"
export GOCACHE=$tmp/gocache GOFLAGS=-mod=mod HOME=$tmp
for idx in alloc_objects alloc_space inuse_objects inuse_space peak_space temporary_objects \
    pinned_space; do
    go tool pprof -top -nodecount=1000 -nodefraction=0 -unit=B -sample_index=$idx g.pb.gz \
        >"pprof.$idx" 2>"pprof.$idx.err" || { fail "go tool pprof -sample_index=$idx failed: $(tail -3 "pprof.$idx.err")"; continue; }
done
/usr/bin/python3 - r.json <<'PY' || fail "go tool pprof's figures are not the dump's"
import json, re, sys
report = json.load(open(sys.argv[1]))
field = {"alloc_objects": "alloc_count", "alloc_space": "alloc_bytes", "inuse_objects": "live_count",
         "inuse_space": "live_bytes", "peak_space": "peak_bytes", "temporary_objects": "temporary",
         "pinned_space": "pinned_bytes"}
fns = {"big_blocks", "parse_records", "build_table", "grow_buffer", "make_name", "lose_list"}
bad, checked = [], 0
for idx, f in field.items():
    want = {}
    for s in report["sites"]:
        if s["frames"] and s["frames"][0]["function"] in fns:
            fn = s["frames"][0]["function"]
            want[fn] = want.get(fn, 0) + s[f]
    got = {}
    for line in open("pprof." + idx):
        m = re.match(r"^\s*(\d+)B?\s+[\d.]+%\s+[\d.]+%\s+\d+B?\s+[\d.]+%\s+(\S+)$", line)
        if m and m.group(2) in fns:
            got[m.group(2)] = int(m.group(1))
    want = {k: v for k, v in want.items() if v}
    if got != want:
        bad.append("%s: pprof %s, the dump %s" % (idx, got, want))
    checked += len(want)
for b in bad:
    print("FAIL:", b)
print("go tool pprof: %d function figures the dump's" % checked)
sys.exit(1 if bad or checked < 15 else 0)
PY
# with the leak check, the lost bytes of each kind: pprof's totals are memcheck's LEAK SUMMARY's
"$tally" run --leaks --lib "$TALLY_LIB" -o lk.tly -- "$golden" >/dev/null 2>&1 || fatal "tally run --leaks failed"
"$tally" export --format pprof -o lk.pb.gz lk.tly || fail "export of a leak-checked dump failed"
"$tally" leaks --json lk.tly >lk.json || fail "tally leaks --json failed"
for k in definite indirect possible; do
    got=$(go tool pprof -top -unit=B -sample_index=${k}_space lk.pb.gz 2>/dev/null |
          sed -n 's/^Duration: .*Total samples = \([0-9]*\)B.*/\1/p')
    want=$(/usr/bin/python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["summary"]["kinds"][sys.argv[2]]["bytes"])' lk.json $k)
    [ "${got:-0}" = "$want" ] || fail "pprof's ${k}_space total is ${got:-none} B, the leak check's $want B"
done
go tool pprof -traces -sample_index=alloc_space g.pb.gz >pprof.traces 2>/dev/null
awk '/^ *[0-9.]+k?B +big_blocks$/ {getline n; if (n ~ /^ +main$/) ok = 1} END {exit !ok}' pprof.traces ||
    fail "go tool pprof -traces lacks big_blocks called from main: $(head -20 pprof.traces)"
grep -q '^File: golden$' pprof.alloc_space && grep -q '^Build ID: [0-9a-f]\{40\}$' pprof.alloc_space ||
    fail "the pprof header lacks the program or its build-id: $(head -5 pprof.alloc_space)"

# bad use: one line, status 2
"$tally" export g.tly >o.txt 2>e.txt
[ $? = 2 ] && grep -q 'which format' e.txt || fail "export without --format: $(cat e.txt)"
"$tally" export --format pdf g.tly >o.txt 2>e.txt
[ $? = 2 ] && grep -q 'want massif, speedscope or pprof' e.txt || fail "export --format pdf: $(cat e.txt)"
finish
