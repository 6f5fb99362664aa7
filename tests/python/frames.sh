#!/bin/bash
# frames.sh - Python frames in the profiler's stacks (issue 14), on CPython 3.11 (Debian's
# python3; tests/python/):
#  * app.py, known allocations at marked lines (lists, dicts, strings, bytearrays, instances;
#    nested calls, recursion, a generator, a lambda, a class method, exec, a thread pool, an
#    exception caught two frames up, a module of its own): what `tally report --by line` says
#    is live at each marked line equals what tracemalloc's statistics('lineno') says for the
#    same program (linecmp.py: the one difference the two definitions allow, CPython's free
#    lists, is explained there), in `all` mode exactly and in `sample` mode within the 95%
#    intervals; the stacks show the calls the program makes (nesting.py), and ctypes calling
#    the C library's malloc shows libffi's and _ctypes' frames under the Python frame;
#  * a 40-deep recursion reached from two functions: TALLY_DEPTH=8 keeps 8 frames of the merged
#    stack, marked cut, the two callers' allocations one site (the hash covers the kept frames
#    only); TALLY_DEPTH=128 keeps them all, the callers apart;
#  * torn.py, a frame chain broken on purpose: the walker ends the Python part there and
#    counts it, the program goes on;
#  * threads.py, threads that come and go while another allocates: the same output as
#    without the library, Python frames in the threads' stacks;
#  * leak.py, blocks leaked through ctypes: `tally run --leaks` names the Python line;
#  * reuse.py, code objects freed and made again at the same addresses: every block is charged
#    to the function that allocated it, in all mode (frees of code objects tracked) and in
#    sample mode (every hit compared with the copy);
#  * a CPython the walker does not read (pyenv's 3.10, when there): named in the dump, native
#    stacks, no harm;
#  * the pyenv builds of 3.12 and 3.13 when the machine has them (shared libpython; 3.13's
#    offsets from _Py_DebugOffsets): the same nesting.
[ -n "${BASH_VERSION:-}" ] || exec bash "$0" "$@"
. "$top_srcdir/tests/preload/common.sh"
need /usr/bin/python3 python3
need zstd zstd
here=$top_srcdir/tests/python
tally=$top_builddir/tools/tally
export PYTHONMALLOC=malloc PYTHONHASHSEED=0 PYTHONDONTWRITEBYTECODE=1
export PYTHONPATH=$top_srcdir/tests/prof

app() { # app MODE PYTHON [ENV...]: the application once, under the library
    local py=$1
    shift
    rm -f "$tmp/app.tly"
    env APP_MODE=tally TALLY_OUT="$tmp/app.tly" LD_PRELOAD="$TALLY_LIB" "$@" "$py" "$here/app.py" \
        >"$tmp/app.out" 2>&1 || fail "app.py under the library failed: $(tail -5 "$tmp/app.out")"
    [ -f "$tmp/app.tly" ] || fail "app.py wrote no dump"
}

# the oracle: tracemalloc, in plain CPython
env APP_MODE=tracemalloc /usr/bin/python3 "$here/app.py" "$tmp/tm.json" >"$tmp/tm.out" 2>&1 ||
    hard_error "app.py under tracemalloc failed: $(tail -5 "$tmp/tm.out")"

say "all mode against tracemalloc"
app /usr/bin/python3 TALLY_PROFILE=all
"$tally" report --json --by line --top 0 "$tmp/app.tly" >"$tmp/lines.json" ||
    fail "tally report --by line failed"
python3 "$here/linecmp.py" "$tmp/tm.json" "$tmp/lines.json" "$here/app.py" "$here/appmod.py" \
    >"$tmp/cmp.all" || fail "all mode and tracemalloc differ by line:
$(cat "$tmp/cmp.all")"
say "$(grep -c '^ok' "$tmp/cmp.all") marked lines agree with tracemalloc"
"$tally" report --json --top 0 "$tmp/app.tly" >"$tmp/py.json"
"$tally" report --json --native --top 0 "$tmp/app.tly" >"$tmp/native.json"
python3 "$here/nesting.py" "$tmp/py.json" "$tmp/native.json" >"$tmp/nest.all" ||
    fail "the stacks do not show the program's calls:
$(cat "$tmp/nest.all")"
# every reader shows the Python frames, marked (outputs go to files: pipefail and grep -q)
"$tally" report --top 3 "$tmp/app.tly" >"$tmp/r.txt"
grep -q '^   at .* (.*app.py:[0-9]*) \[py\]$' "$tmp/r.txt" ||
    fail "tally report shows no Python frame as 'at function (file:line) [py]'"
"$tally" flame --folded "$tmp/app.tly" >"$tmp/folded.txt"
grep -q '^<module> (app.py:[0-9]*);main (app.py:[0-9]*);middle (app.py:[0-9]*);leaf_strings (app.py:[0-9]*)' "$tmp/folded.txt" ||
    fail "tally flame --folded has no Python stack"
cp "$tmp/app.tly" "$tmp/app_all.tly"
"$tally" html -o "$tmp/app.html" "$tmp/app.tly" && grep -q 'leaf_strings' "$tmp/app.html" ||
    fail "tally html shows no Python frame"
"$tally" report --by function --top 0 "$tmp/app.tly" >"$tmp/byfn.txt"
grep -q '^   at build_table.* (.*appmod.py:[0-9]*) \[py\]$' "$tmp/byfn.txt" ||
    fail "--by function does not name build_table"

say "sample mode against tracemalloc"
app /usr/bin/python3 TALLY_PROFILE=sample TALLY_SAMPLE=16k
"$tally" report --json --by line --top 0 "$tmp/app.tly" >"$tmp/lines.json"
python3 "$here/linecmp.py" --sample 16384 "$tmp/tm.json" "$tmp/lines.json" "$here/app.py" \
    "$here/appmod.py" >"$tmp/cmp.sample" || fail "sample mode and tracemalloc differ by line:
$(cat "$tmp/cmp.sample")"

say "a broken frame chain"
rm -f "$tmp/torn.tly"
env TALLY_PROFILE=all TALLY_OUT="$tmp/torn.tly" LD_PRELOAD="$TALLY_LIB" /usr/bin/python3 \
    "$here/torn.py" >"$tmp/torn.out" 2>&1 && grep -q '^torn: ok 3500015$' "$tmp/torn.out" ||
    fail "torn.py did not go on as without the library: $(tail -5 "$tmp/torn.out")"
stopped=$(dump_text "$tmp/torn.tly" | grep -o 'python_stopped=[0-9]*' | cut -d= -f2)
[ "${stopped:-0}" -ge 4 ] || fail "torn.py: want at least 4 walks stopped, the dump says ${stopped:-0}"
"$tally" report --json --native --top 0 "$tmp/torn.tly" >"$tmp/torn.json"
python3 - "$tmp/torn.json" <<'PY' || fail "torn.py: the broken stacks are not cut at the break"
import json, sys
cut = 0
for s in json.load(open(sys.argv[1]))["sites"]:
    names = [f["function"] for f in s["frames"] if f.get("python")]
    if names[:1] == ["broken_alloc"]:
        # cut at the break: broken_alloc, then middle or nothing (middle's own link or code
        # object broken), never past middle to the module
        if "<module>" not in names[:3] and len(s["frames"]) <= 128:
            cut += 1
print("torn: %d cut stacks" % cut)
sys.exit(0 if cut >= 4 else 1)
PY

# diff: what torn.py has that app.py had not, by Python frames
"$tally" diff --json --top 0 --sort allocated "$tmp/app_all.tly" "$tmp/torn.tly" >"$tmp/diff.json" || fail "tally diff failed"
grep -q '"function": *"broken_alloc"' "$tmp/diff.json" || fail "tally diff shows no Python frame"

say "threads that come and go"
/usr/bin/python3 "$here/threads.py" >"$tmp/threads.plain" 2>&1
rm -f "$tmp/threads.tly"
env TALLY_PROFILE=all TALLY_OUT="$tmp/threads.tly" LD_PRELOAD="$TALLY_LIB" /usr/bin/python3 \
    "$here/threads.py" >"$tmp/threads.out" 2>&1 || fail "threads.py failed under the library"
cmp -s "$tmp/threads.plain" "$tmp/threads.out" || fail "threads.py printed something else"
"$tally" report --by function --sort allocated --top 0 "$tmp/threads.tly" >"$tmp/thr.txt"
grep -q '^   at work.* (.*threads.py:[0-9]*) \[py\]$' "$tmp/thr.txt" || fail "threads.py: no site of work()"
# the live blocks at exit, with their Python frames (memcheck's format)
"$tally" leaks --kinds all "$tmp/threads.tly" >"$tmp/thr.leaks"
grep -q '^   by .* (.*threads.py:[0-9]*) \[py\]$' "$tmp/thr.leaks" ||
    fail "tally leaks shows no Python frame"

say "a leak report by Python line"
"$tally" run --leaks --lib "$TALLY_LIB" -o "$tmp/leak.tly" -- /usr/bin/python3 "$here/leak.py" \
    >"$tmp/leak.out" 2>"$tmp/leak.err" || fail "tally run --leaks failed: $(tail -3 "$tmp/leak.err")"
leakline=$(grep -n '# LEAKED' "$here/leak.py" | cut -d: -f1)
grep -A1 'bytes in [0-9]* blocks are definitely lost' "$tmp/leak.err" >"$tmp/leak.rec"
grep -q "^   at lose (.*leak.py:$leakline) \[py\]\$" "$tmp/leak.rec" ||
    fail "tally run --leaks does not name lose (leak.py:$leakline): $(head -5 "$tmp/leak.rec")"
"$tally" leaks --by line --kinds definite "$tmp/leak.tly" >"$tmp/leak.byline"
grep -q "^   at lose (.*leak.py:$leakline) \[py\]\$" "$tmp/leak.byline" ||
    fail "tally leaks --by line does not name leak.py:$leakline"

say "code objects freed and made again"
for mode in "TALLY_PROFILE=all" "TALLY_PROFILE=sample TALLY_SAMPLE=1"; do
    rm -f "$tmp/reuse.tly"
    env $mode TALLY_OUT="$tmp/reuse.tly" LD_PRELOAD="$TALLY_LIB" /usr/bin/python3 "$here/reuse.py" \
        >"$tmp/reuse.out" 2>&1 || fail "reuse.py failed under $mode: $(tail -3 "$tmp/reuse.out")"
    "$tally" report --json --native --top 0 "$tmp/reuse.tly" >"$tmp/reuse.json"
    python3 "$here/reusecheck.py" "$tmp/reuse.json" >"$tmp/reuse.cmp" ||
        fail "$mode: blocks charged to another function than theirs: $(head -5 "$tmp/reuse.cmp")"
    say "$mode: $(cat "$tmp/reuse.out"); $(head -1 "$tmp/reuse.cmp")"
done

say "lines in a 200-line function (the location table read from its checkpoints) as tracemalloc's"
/usr/bin/python3 - "$tmp/long.py" <<'PY'
import sys
lines = ["import sys, json, tracemalloc, ctypes, os", "keep = []", "def long_function():"]
for i in range(200):
    lines.append("    x%d = [1] * 3; keep.append(bytearray(%d))" % (i, 1000 + i * 8))
lines += ["if sys.argv[1] == 'tracemalloc':", "    tracemalloc.start(1)", "    long_function()",
          "    s = tracemalloc.take_snapshot().statistics('lineno')",
          "    json.dump([(t.traceback[0].lineno, t.size) for t in s", 
          "               if t.traceback[0].filename == __file__], open(sys.argv[2], 'w'))",
          "else:", "    long_function()", "    ctypes.CDLL(None).tally_dump(None)", "    os._exit(0)"]
open(sys.argv[1], "w").write("\n".join(lines) + "\n")
PY
/usr/bin/python3 "$tmp/long.py" tracemalloc "$tmp/long.tm.json" || fail "long.py under tracemalloc failed"
"$tally" run --all --lib "$TALLY_LIB" -o "$tmp/long.tly" /usr/bin/python3 "$tmp/long.py" tally >/dev/null 2>&1 ||
    fail "tally run long.py failed"
"$tally" report --by line --json --top 0 "$tmp/long.tly" >"$tmp/long.json"
/usr/bin/python3 - "$tmp/long.tm.json" "$tmp/long.json" "$tmp/long.py" <<'PY' || fail "the long function's lines differ from tracemalloc's"
import json, sys
tm = dict(json.load(open(sys.argv[1])))
got = {}
for s in json.load(open(sys.argv[2]))["sites"]:
    f = s["frames"][0] if s["frames"] else {}
    if f.get("file") == sys.argv[3]:
        got[f["line"]] = got.get(f["line"], 0) + s["live_bytes"]
bad = [(l, tm.get(l), got.get(l)) for l in range(4, 204) if abs(tm.get(l, 0) - got.get(l, 0)) > 100]
print("200 lines: %d differ" % len(bad), bad[:5])
sys.exit(1 if bad or len(tm) < 200 else 0)
PY

say "a stack cut at TALLY_DEPTH stays marked in the Python view"
cat >"$tmp/deep.py" <<'EOF2'
def r(n):
    if n == 0:
        return [bytearray(100000) for _ in range(10)]
    return list(map(r, [n - 1]))[0]
k = r(60)
EOF2
"$tally" run --all --lib "$TALLY_LIB" -o "$tmp/deep.tly" /usr/bin/python3 "$tmp/deep.py" >/dev/null 2>&1 ||
    fail "tally run deep.py failed"
"$tally" flame --folded --measure peak "$tmp/deep.tly" >"$tmp/deep.folded" 2>&1
grep -q '^\[truncated\];r (deep\.py:4);.*r (deep\.py:3);r.<locals>.<listcomp> (deep\.py:3) 100[0-9]\{4\}$' "$tmp/deep.folded" ||
    fail "the 60-deep recursion's million bytes at the peak are not under a [truncated] root: $(grep 'deep.py' "$tmp/deep.folded" | tail -2 | cut -c1-200)"

say "TALLY_DEPTH counts Python frames: a deep stack keeps that many, stacks equal in them are one site"
cat >"$tmp/depth.py" <<'EOF2'
def rec(n):
    if n == 0:
        return [bytearray(1000) for _ in range(50)]
    return rec(n - 1)
def a():
    return rec(40)
def b():
    return rec(40)
keep = [a(), b()]
EOF2
for d in 8 128; do
    rm -f "$tmp/depth$d.tly"
    env TALLY_PROFILE=all TALLY_DEPTH=$d TALLY_OUT="$tmp/depth$d.tly" LD_PRELOAD="$TALLY_LIB" \
        /usr/bin/python3 "$tmp/depth.py" || fail "depth.py failed with TALLY_DEPTH=$d"
    "$tally" report --json --native --raw --top 0 "$tmp/depth$d.tly" >"$tmp/depth$d.json" ||
        fail "tally report depth$d.tly failed"
done
python3 - "$tmp/depth8.json" "$tmp/depth128.json" <<'PY' || fail "TALLY_DEPTH and Python frames: see above"
import json, sys
def sites(path):  # the sites under the list comprehension, as (frame names, allocations)
    out = []
    for s in json.load(open(path))["sites"]:
        names = ["%s:%s" % (f["function"], f["line"]) if f["python"] or not f["module"] else
                 "%s+%#x" % (f["module"], f["offset"] or 0) for f in s["frames"]]
        if "rec.<locals>.<listcomp>:3" in names:
            out.append((names, s["alloc_count"]))
    return out
short, full = sites(sys.argv[1]), sites(sys.argv[2])
bad = [n for n, _ in short if len(n) != 9 or n[-1] != "[truncated]:None"]
if not short or bad:
    sys.exit("TALLY_DEPTH=8: %d sites, cut elsewhere than 8 frames: %s" % (len(short), bad[:1]))
keys = [tuple(n) for n, _ in short]
if len(set(keys)) != len(keys):
    sys.exit("TALLY_DEPTH=8: two sites with the same 8 frames (the hash saw frames beyond them)")
if not any(c == 100 for _, c in short):
    sys.exit("TALLY_DEPTH=8: no site holds both callers' 100 allocations: %s" % [c for _, c in short])
callers = {c for n, _ in full for c in ("a:6", "b:8") if c in n}
deep = [n for n, _ in full if n.count("rec:4") == 40]
if callers != {"a:6", "b:8"} or not deep:
    sys.exit("TALLY_DEPTH=128: the whole stack (41 rec frames under a and b) is not there")
print("8 frames: %d sites, 100 allocations in one; 128: a and b apart" % len(short))
PY

say "tally run's summary and report --json say the frames are there"
"$tally" run --lib "$TALLY_LIB" -o "$tmp/run.tly" /usr/bin/python3 "$here/reuse.py" >/dev/null \
    2>"$tmp/run.err" || fail "tally run python3 failed: $(cat "$tmp/run.err")"
grep -q "CPython 3\.11\.[0-9]*, its Python frames in the stacks" "$tmp/run.err" ||
    fail "tally run does not say the Python frames are in the stacks: $(cat "$tmp/run.err")"
"$tally" report --json "$tmp/run.tly" | python3 -c '
import json, sys
d = json.load(sys.stdin)["dump"]
sys.exit(0 if d.get("python_frames") is True and d.get("python", "").startswith("3.11") else 1)' ||
    fail "report --json does not say python_frames: true"

for v in /root/.pyenv/versions/3.10*/bin/python3; do
    [ -x "$v" ] || continue
    say "a CPython without its frames: $v"
    rm -f "$tmp/old.tly"
    env TALLY_PROFILE=all TALLY_OUT="$tmp/old.tly" LD_PRELOAD="$TALLY_LIB" "$v" "$here/reuse.py" \
        >"$tmp/old.out" 2>&1 || fail "reuse.py failed under $v"
    dump_text "$tmp/old.tly" >"$tmp/old.txt"
    grep -q '^header .* python=3\.10 python_frames=0 ' "$tmp/old.txt" ||
        fail "$v: the dump does not say python=3.10 python_frames=0"
    grep -q '^pycode ' "$tmp/old.txt" && fail "$v: Python frames from an interpreter not read"
done

for v in /root/.pyenv/versions/3.12*/bin/python3 /root/.pyenv/versions/3.13*/bin/python3; do
    [ -x "$v" ] || continue
    ver=$("$v" -c 'import sys; print("%d.%d.%d" % sys.version_info[:3])')
    say "CPython $ver ($v)"
    app "$v" TALLY_PROFILE=all
    dump_text "$tmp/app.tly" >"$tmp/app.txt"
    grep -q "^header .* python=$ver " "$tmp/app.txt" || fail "$ver: the dump does not name python=$ver"
    "$tally" report --json --top 0 "$tmp/app.tly" >"$tmp/py.json"
    "$tally" report --json --native --top 0 "$tmp/app.tly" >"$tmp/native.json"
    python3 "$here/nesting.py" "$tmp/py.json" "$tmp/native.json" >"$tmp/nest.$ver" ||
        fail "$ver: the stacks do not show the program's calls:
$(cat "$tmp/nest.$ver")"
done
finish
