#!/bin/bash
# tests/preload/runtimes.sh - language runtimes nobody here wrote, under the library in sample
# (the default), all and leak mode, each against its run without it: Ruby (its threads ask for
# their stack bounds, which once hung the library's walker), Node.js (a JIT: code in no module,
# and worker threads) and a Rust program built here with Debian's rustc (its runtime asks for
# the main thread's stack bounds before main: under the library it once never started).
. "$top_srcdir/tests/preload/common.sh"
need ruby ruby
need node nodejs
need /usr/bin/rustc rustc

ruby_prog='ts = 8.times.map { |i| Thread.new { a = (1..20000).map { |x| (x * i).to_s * 3 }; a.size } }; puts ts.map(&:value).sum'
node_prog='const { Worker } = require("worker_threads"); let a = []; for (let i = 0; i < 100000; i++) a.push({ i, s: "x" + i });
new Worker("let x = 0; for (let i = 0; i < 1e6; i++) x += i; require(\"worker_threads\").parentPort.postMessage(x)", { eval: true })
  .on("message", (x) => console.log(a.length, x));'
cat >"$tmp/hello.rs" <<'RS'
use std::collections::HashMap;
fn main() {
    let hs: Vec<_> = (0..8).map(|i| std::thread::spawn(move || {
        let mut m = HashMap::new();
        for k in 0..2000u64 { m.insert(k, format!("{}-{}", i, k)); }
        m.len()
    })).collect();
    let total: usize = hs.into_iter().map(|h| h.join().unwrap()).sum();
    println!("hello {}", total);
}
RS
/usr/bin/rustc -O -o "$tmp/hello_rs" "$tmp/hello.rs" 2>"$tmp/rustc.err" || hard_error "rustc failed: $(cat "$tmp/rustc.err")"

# check LABEL CMD...: the same output and status in each mode as without the library
check() {
    local label=$1
    shift
    timeout 120 "$@" >"$tmp/$label.plain" 2>&1
    local want=$?
    [ $want = 0 ] || fail "$label without the library: status $want: $(tail -3 "$tmp/$label.plain")"
    for mode in sample all leaks; do
        local envs=(TALLY_PROFILE=$mode)
        [ $mode = leaks ] && envs=(TALLY_LEAKS=quiet)
        timeout -k 5 120 env LD_PRELOAD="$TALLY_LIB" TALLY_OUT="$tmp/$label.$mode.tly" "${envs[@]}" "$@" \
            >"$tmp/$label.$mode.out" 2>"$tmp/$label.$mode.err"
        local rc=$?
        { [ $rc = 124 ] || [ $rc = 137 ]; } && { fail "$label ($mode): hung"; continue; }
        [ $rc = "$want" ] && diff -q "$tmp/$label.plain" "$tmp/$label.$mode.out" >/dev/null ||
            { fail "$label ($mode): status $rc, output $(head -c 200 "$tmp/$label.$mode.out") $(tail -3 "$tmp/$label.$mode.err")"; continue; }
        [ -s "$tmp/$label.$mode.tly" ] || fail "$label ($mode): no dump"
    done
    say "$label: $(cat "$tmp/$label.plain") in every mode"
}

check ruby ruby -e "$ruby_prog"
check node node -e "$node_prog"
check rust "$tmp/hello_rs"
finish
