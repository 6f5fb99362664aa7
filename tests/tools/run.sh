#!/bin/bash
# tests/tools/run.sh - `tally run`: the program's output and exit status pass through (a signal
# as 128+N), the dumps land where asked (the program's and those of the processes it starts),
# the closing lines say where, the peak, the live blocks and the next command (each process of the
# run writes its own dump, and tally run waits for every one of them), and the options
# reach the library (--sample, --stats). A program that cannot run: 127 and one line.
. "$top_srcdir/tests/preload/common.sh"
tally=$top_builddir/tools/tally
golden=$top_builddir/tests/tools/golden
[ -x "$tally" ] || hard_error "$tally is not built"
export PYTHONPATH=$top_srcdir/tests/prof

cd "$tmp" || fatal "no scratch dir"
"$tally" run --all --lib "$TALLY_LIB" -- "$golden" >o.txt 2>e.txt
rc=$?
[ $rc = 0 ] || fail "exit status $rc, want 0"
[ "$(cat o.txt)" = "golden done" ] || fail "the program's output: $(cat o.txt)"
dumps=(tally.golden.*.tly)
[ ${#dumps[@]} = 1 ] && [ -f "${dumps[0]}" ] || fail "want one dump tally.golden.PID.tly, got: ${dumps[*]}"
grep -q "^tally: dump ${dumps[0]} (every allocation): 683 allocations, peak 324 KiB$" e.txt ||
    fail "the dump line: $(cat e.txt)"
grep -q '^tally: 123 blocks (132 KiB) still live at exit$' e.txt || fail "the live-blocks line: $(cat e.txt)"
grep -q "^tally: next: tally leaks ${dumps[0]}$" e.txt || fail "the next-command line: $(cat e.txt)"
[ "$(wc -l <e.txt)" = 3 ] || fail "want three lines on stderr: $(cat e.txt)"
rm -f tally.golden.*.tly

# --leaks: the leak check's report (as `tally leaks` prints it) between the dump line and the next
# command; --error-exitcode N when something is lost, the program's own status when nothing is.
"$tally" run --leaks --lib "$TALLY_LIB" -o lk.tly -- "$golden" >o.txt 2>e.txt
[ $? = 0 ] || fail "--leaks: exit status $?, want 0"
"$tally" leaks lk.tly >want.txt || fail "tally leaks lk.tly failed"
head -1 e.txt | grep -q '^tally: dump lk.tly (every allocation): 683 allocations' || fail "--leaks: the dump line: $(head -1 e.txt)"
sed -n '2,$p' e.txt | sed '$d' | diff - want.txt >/dev/null || fail "--leaks: the report is not tally leaks': $(cat e.txt)"
tail -1 e.txt | grep -qx 'tally: next: tally leaks lk.tly' || fail "--leaks: the last line: $(tail -1 e.txt)"
grep -qx '   definitely lost: 48 bytes in 1 blocks' e.txt || fail "--leaks: no LEAK SUMMARY: $(cat e.txt)"
"$tally" run --leaks --error-exitcode 9 --lib "$TALLY_LIB" -o lk.tly -- "$golden" >/dev/null 2>&1
[ $? = 9 ] || fail "--leaks --error-exitcode 9 with a leak did not exit 9"
"$tally" run --leaks --error-exitcode 9 --lib "$TALLY_LIB" -o lk.tly -- "$golden" clean >/dev/null 2>e.txt
[ $? = 0 ] || fail "--error-exitcode 9 without leaks did not exit 0"
grep -qx 'All heap blocks were freed -- no leaks are possible' e.txt || fail "clean: $(cat e.txt)"
"$tally" run --error-exitcode 9 --lib "$TALLY_LIB" -o lk.tly -- "$golden" >/dev/null 2>e.txt
[ $? = 2 ] && grep -q -- '--error-exitcode: an option of --leaks' e.txt || fail "--error-exitcode without --leaks: $(cat e.txt)"

# Exit status and signals pass through.
"$tally" run --lib "$TALLY_LIB" -o st.tly -- sh -c 'exit 7' >/dev/null 2>&1
[ $? = 7 ] || fail "exit 7 did not pass through"
"$tally" run --lib "$TALLY_LIB" -o sig.tly -- sh -c 'kill -TERM $$' >/dev/null 2>e.txt
[ $? = 143 ] || fail "a SIGTERM death did not give 143"
grep -q 'was killed by signal 15' e.txt || fail "no word of the signal: $(cat e.txt)"
"$tally" run --lib "$TALLY_LIB" -- ./no-such-program >/dev/null 2>e.txt
[ $? = 127 ] || fail "a missing program did not give 127"
[ "$(wc -l <e.txt)" = 1 ] && grep -q 'cannot run ./no-such-program: No such file' e.txt ||
    fail "a missing program: $(cat e.txt)"

# Forks: a shell that runs golden twice. dash leaves with _exit, which runs no exit handler,
# so the shell writes no dump, and tally says so; the two children each leave theirs, named
# after the command tally ran, and tally names them.
mkdir fork && cd fork || fatal "mkdir"
"$tally" run --all --lib "$TALLY_LIB" -- sh -c "'$golden' >/dev/null; '$golden' clean" >/dev/null 2>e.txt ||
    fail "the shell failed"
n=$(ls tally.sh.*.tly 2>/dev/null | wc -l)
[ "$n" = 2 ] || fail "want 2 dumps (the shell's two children), got $n: $(ls)"
grep -q '^tally: sh wrote no dump' e.txt || fail "no word of the shell's missing dump: $(cat e.txt)"
grep -q '^tally: the dumps of the processes it started:$' e.txt &&
    [ "$(grep -c '^tally:   tally\.sh\.[0-9]*\.tly$' e.txt)" = 2 ] || fail "no word of the children: $(cat e.txt)"
cd .. || fatal "cd"

# -o FILE: every process of the run its own dump, FILE the program's, each named. The shell
# leaves a subshell running (it sleeps, then runs true) and exits first: tally run waits for it,
# and the program the subshell runs last does not write over the shell's dump.
mkdir own && cd own || fatal "mkdir"
"$tally" run --leaks --lib "$TALLY_LIB" -o fy.tly -- bash -c '(sleep 0.5; /bin/true) & echo x' >o.txt 2>e.txt ||
    fail "bash under tally run failed: $(cat e.txt)"
[ "$(cat o.txt)" = x ] || fail "bash's output: $(cat o.txt)"
prog_of() { /usr/bin/python3 -c 'import sys, dumpcheck; print(dumpcheck.parse(sys.argv[1])["header"]["program"])' "$1"; }
[ "$(prog_of fy.tly)" = bash ] || fail "fy.tly is $(prog_of fy.tly)'s dump, want bash's"
others=$(ls fy.[0-9]*.tly 2>/dev/null | sort)
progs=$(for f in $others; do prog_of "$f"; done | sort | tr '\n' ' ')
[ "$progs" = "/bin/true sleep " ] || fail "want the dumps of true and sleep beside fy.tly, got: $others ($progs)"
for f in $others; do
    grep -qx "tally:   $f" e.txt || fail "tally run did not name $f: $(cat e.txt)"
    pid=$(/usr/bin/python3 -c 'import sys, dumpcheck; print(dumpcheck.parse(sys.argv[1])["header"]["pid"])' "$f")
    [ "$f" = "fy.$pid.tly" ] || fail "$f holds the dump of pid $pid"
done
grep -q "^tally: dump fy.tly (every allocation)" e.txt || fail "the program's dump is not fy.tly: $(cat e.txt)"
cd .. || fatal "cd"

# -o with %p and %e, --sample and --stats reach the library.
"$tally" run --sample 64k --stats --lib "$TALLY_LIB" -o 'custom-%e-%p.tly' -- "$golden" >/dev/null 2>e.txt
f=$(ls custom-golden-*.tly 2>/dev/null)
[ -n "$f" ] || fail "-o custom-%e-%p.tly wrote nothing: $(ls)"
/usr/bin/python3 -c 'import sys, dumpcheck; h = dumpcheck.parse(sys.argv[1])["header"]; sys.exit(h["mode"] != "sample" or h["sample_interval"] != 65536)' "$f" ||
    fail "--sample 64k did not give a sample-mode dump with interval 65536"
grep -q '^tally: arena memory' e.txt || fail "--stats printed no statistics: $(head -3 e.txt)"
grep -q "^tally: next: tally report $f" e.txt || fail "a sampled run should suggest report: $(cat e.txt)"
# In sample mode the report's figures are estimates, and say so.
"$tally" report "$f" >rep.txt 2>e.txt || fail "report of a sampled dump failed: $(cat e.txt)"
grep -q '^  sample mode: one allocation recorded per 64.0 KiB on average' rep.txt &&
    grep -q '^  allocations  ~' rep.txt || fail "the sampled report does not mark its estimates: $(head -5 rep.txt)"
"$tally" report --json "$f" | /usr/bin/python3 -c 'import json, sys; sys.exit(0 if json.load(sys.stdin)["dump"]["estimates"] is True else 1)' ||
    fail "the sampled report's JSON does not say estimates: true"

# Python: tally run sets PYTHONMALLOC=malloc (pymalloc would take its memory with mmap, out of
# the profiler's sight) and says so; with the user's own PYTHONMALLOC=pymalloc, the run and the
# report say that RSS went far above the profiled peak, and why.
py='x = [str(i) * 3 for i in range(1000000)]; print(len(x))'
"$tally" run --lib "$TALLY_LIB" -o py.tly -- /usr/bin/python3 -c "$py" >o.txt 2>e.txt ||
    fail "python3 under tally run failed: $(cat e.txt)"
grep -q '^tally: dump py.tly .*; Python ran with PYTHONMALLOC=malloc' e.txt ||
    fail "the summary does not say PYTHONMALLOC=malloc: $(cat e.txt)"
grep -q 'note:' e.txt && fail "a note on a fully profiled Python run: $(cat e.txt)"
/usr/bin/python3 -c 'import sys, dumpcheck; t = dumpcheck.parse(sys.argv[1])["totals"]; sys.exit(t["peak_bytes"] < 60 << 20)' py.tly ||
    fail "with PYTHONMALLOC=malloc the peak should hold the million strings (over 60 MB)"
# Through a script that finds python3 on PATH (a pyenv shim, if that is what PATH has first).
printf '#!/usr/bin/env python3\nx = [str(i) for i in range(100000)]\n' >wrapped.py && chmod +x wrapped.py
"$tally" run --lib "$TALLY_LIB" -o wrapped.tly -- ./wrapped.py >o.txt 2>e.txt ||
    fail "a #!/usr/bin/env python3 script under tally run failed: $(cat e.txt)"
grep -q '^tally: dump wrapped.tly .*; Python ran with PYTHONMALLOC=malloc' e.txt ||
    fail "the wrapped Python run does not say PYTHONMALLOC=malloc: $(head -3 e.txt)"
PYTHONMALLOC=pymalloc "$tally" run --lib "$TALLY_LIB" -o pym.tly -- /usr/bin/python3 -c "$py" >o.txt 2>e.txt ||
    fail "python3 with pymalloc under tally run failed: $(cat e.txt)"
grep -q 'PYTHONMALLOC=malloc, so' e.txt && fail "the user's PYTHONMALLOC was overridden: $(cat e.txt)"
grep -q "^tally: note: the process's RSS reached .* but the profiled peak is .*pymalloc" e.txt ||
    fail "no note on the unprofiled memory of pymalloc: $(cat e.txt)"
"$tally" report pym.tly >rep.txt 2>&1 && grep -q '^  note: .*PYTHONMALLOC=malloc' rep.txt ||
    fail "the report does not explain the unprofiled memory: $(head -5 rep.txt)"
"$tally" report --json pym.tly | /usr/bin/python3 -c 'import json, sys; d = json.load(sys.stdin)["dump"]; sys.exit(0 if "pymalloc" in d["note"] and d["max_rss_bytes"] > 80 << 20 else 1)' ||
    fail "the JSON report has no note or max_rss_bytes"
"$tally" report "$f" | grep -q 'note:' && fail "a note on golden's report: $("$tally" report "$f" | head -4)"
# When the gap between RSS and the profiled peak is the profiler's own tables (80,000 Python lines
# are 80,000 call sites in all mode), the note says so and does not blame the program.
many='for c in range(80):
    exec("\n".join("x%d = [%d] * 3" % (i, i) for i in range(1000)))'
"$tally" run --all --lib "$TALLY_LIB" -o many.tly -- /usr/bin/python3 -c "$many" >o.txt 2>e.txt ||
    fail "the program of many lines failed: $(cat e.txt)"
grep -q "^tally: note: the process's RSS reached .* of the difference is the profiler's own tables" e.txt ||
    fail "the note does not name the profiler's own tables: $(cat e.txt)"
grep -q "pymalloc" e.txt && fail "the note blames pymalloc for the profiler's tables: $(cat e.txt)"
/usr/bin/python3 -c 'import sys, dumpcheck; t = dumpcheck.parse(sys.argv[1])["totals"]; sys.exit(not (64 << 20) < t["meta_resident_bytes"] < t["max_rss_bytes"])' many.tly ||
    fail "meta_resident_bytes is not between 64 MiB and the RSS"

# A stripped program's stacks end at its main, as memcheck's do: not in libc's start-up and the
# program's unnamed _start (the names that find them otherwise are gone).
cp "$golden" stripped && strip stripped || fatal "cannot strip a copy of golden"
"$tally" run --leaks --lib "$TALLY_LIB" -o stripped.tly -- ./stripped >o.txt 2>e.txt ||
    fail "the stripped golden under tally run failed: $(cat e.txt)"
"$tally" leaks stripped.tly >l.txt 2>&1
grep -q 'definitely lost in loss record' l.txt || fail "no leak report for the stripped golden: $(cat l.txt)"
grep -qE '__libc_start|_start|libc\.so' l.txt && fail "a stripped program's stacks go below main: $(cat l.txt)"
# its definitely lost record: lose_list, then main: two frames, as with symbols
awk '/definitely lost in loss record/ {on = 1; next} on && /^   (at|by) / {n++} on && !/^   / {exit} END {exit !(n == 2)}' l.txt ||
    fail "the stripped golden's definitely lost record has not two frames: $(cat l.txt)"
finish
