#!/bin/bash
# redis.sh - redis-server on 127.0.0.1 with and without libtallymalloc.so:
# redis-benchmark drives it through SET/GET/LPUSH/LPOP/INCR/HSET, then
# redis-cli runs a fixed script (strings, lists, hashes, sorted sets, Lua
# loops creating and deleting 20,000 keys) whose replies must be the same
# in both sessions and as expected, then SHUTDOWN NOSAVE; the server must
# exit 0 and, with the library, leave a stats file with small mallocs.
# In the tally session the clients run with the library too.
#
# Only 127.0.0.1 is ever contacted; every step is bounded in time and the
# exit trap stops a server left running.

[ -n "${BASH_VERSION:-}" ] || exec bash "$0" "$@"
. "$(dirname "$0")/common.sh"

need redis-server redis-server
need redis-cli redis-tools
need redis-benchmark redis-tools

server_pid=
stop_server() {
    if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then
        say "stopping the server left running (pid $server_pid)" >&2
        kill -TERM "$server_pid" 2>/dev/null
        # timeout(1) passes the TERM on and SIGKILLs after --kill-after.
        wait "$server_pid" 2>/dev/null
    fi
    server_pid=
}
on_exit stop_server

port_free() {
    /usr/bin/python3 -I -c '
import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1])))
' "$1" 2>/dev/null
}

cli() { timeout 10 redis-cli -h 127.0.0.1 -p "$port" "$@"; }

# start_server KIND: start redis-server and wait until it answers; sets
# port and server_pid.  Retries on another port if the one picked was
# taken in the meantime.
start_server() {
    local kind=$1 attempt i rc
    for attempt in 0 1 2 3 4 5 6 7; do
        port=$((20000 + ($$ + attempt * 631) % 10000))
        port_free "$port" || continue
        start_bg "$kind" "${kind}_server" redis-server --port "$port" --bind 127.0.0.1 \
            --save '' --appendonly no --daemonize no --dir "$tmp/$kind" --logfile '' \
            --protected-mode yes --loglevel notice
        server_pid=$bg_pid
        for ((i = 0; i < 100; i++)); do
            kill -0 "$server_pid" 2>/dev/null || break
            if [ "$(cli ping 2>/dev/null)" = PONG ]; then
                # Make sure it is our server that answers.
                if [ "$(cli config get dir | sed -n 2p)" != "$tmp/$kind" ]; then
                    fatal "something else answers on 127.0.0.1:$port"
                fi
                say "$kind server up on 127.0.0.1:$port after $((i / 10)).$((i % 10))s"
                return 0
            fi
            sleep 0.1
        done
        if ! kill -0 "$server_pid" 2>/dev/null; then
            wait "$server_pid"
            rc=$?
            server_pid=
            if grep -q 'Address already in use' "$tmp/out/${kind}_server.out"; then
                continue
            fi
            tail -n 20 "$tmp/out/${kind}_server.out" >&2
            show_stderr "${kind}_server"
            if [ "$rc" -gt 128 ]; then
                fatal "redis-server ($kind) died of signal $((rc - 128)) before answering PING"
            fi
            fatal "redis-server ($kind) exited with status $rc before answering PING"
        fi
        stop_server
        tail -n 20 "$tmp/out/${kind}_server.out" >&2
        show_stderr "${kind}_server"
        fatal "redis-server ($kind) did not answer PING within 10s"
    done
    fatal "found no free port on 127.0.0.1"
}

cat >"$tmp/commands.txt" <<'CMDS'
FLUSHALL
DBSIZE
SET greeting hello
GET greeting
APPEND greeting ", world"
GET greeting
INCR counter
INCRBY counter 41
GET counter
RPUSH list a b c d e f g
LRANGE list 0 -1
LPOP list 2
LRANGE list 0 -1
HSET user:1 name tally lang c year 2024
HGETALL user:1
HINCRBY user:1 year 1
HGET user:1 year
SADD set x y z x
SCARD set
SORT set ALPHA
ZADD z 1 one 2 two 3 three
ZRANGE z 0 -1 WITHSCORES
EVAL "for i = 1, 20000 do redis.call('SET', 'k:' .. i, string.rep('v', i % 300)) end return redis.call('DBSIZE')" 0
EVAL "local n = 0 for i = 1, 20000, 3 do n = n + redis.call('STRLEN', 'k:' .. i) end return n" 0
EVAL "for i = 1, 5000 do redis.call('HSET', 'h', 'f' .. i, i) end return redis.call('HLEN', 'h')" 0
EVAL "for i = 1, 5000 do redis.call('ZADD', 'zz', i % 97, 'm' .. i) end return redis.call('ZCARD', 'zz')" 0
ZRANGE zz 0 4
ZCOUNT zz 10 20
EVAL "for i = 1, 3000 do redis.call('RPUSH', 'big', string.rep('x', i % 700)) end return redis.call('LLEN', 'big')" 0
LINDEX big 1500
EVAL "for i = 1, 20000, 2 do redis.call('DEL', 'k:' .. i) end return redis.call('DBSIZE')" 0
KEYS greet*
DEL h zz big
DBSIZE
FLUSHALL
DBSIZE
CMDS

# What redis-cli prints for that script (raw mode, as when not on a tty).
cat >"$tmp/expected.txt" <<'EXPECTED'
OK
0
OK
hello
12
hello, world
1
42
42
7
a
b
c
d
e
f
g
a
b
c
d
e
f
g
3
name
tally
lang
c
year
2024
2025
2025
3
3
x
y
z
3
one
1
two
2
three
3
20006
993400
5000
5000
m1067
m1164
m1261
m1358
m1455
572
3000
xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx
10009
greeting
3
10006
OK
0
EXPECTED

session() {
    local kind=$1 t
    mkdir -p "$tmp/$kind"
    start_server "$kind"
    local pid
    pid=$(cli info server | tr -d '\r' | sed -n 's/^process_id://p')
    echo "$pid" >"$tmp/$kind.pid"

    run_timeout=60 run_$kind -n "${kind}_bench" redis-benchmark -h 127.0.0.1 -p "$port" \
        -n 20000 -r 10000 -q -t set,get,lpush,lpop,incr,hset
    check_status "${kind}_bench" 0
    for t in SET GET LPUSH LPOP INCR HSET; do
        if ! tr '\r' '\n' <"$tmp/out/${kind}_bench.out" |
            grep -Eq "^$t: [0-9.]+ requests per second"; then
            fail "redis-benchmark ($kind) printed no result for $t"
        fi
    done

    run_timeout=30 run_$kind -n "${kind}_cli" -i "$tmp/commands.txt" \
        redis-cli -h 127.0.0.1 -p "$port"
    check_status "${kind}_cli" 0

    run_timeout=15 run_$kind -n "${kind}_shutdown" redis-cli -h 127.0.0.1 -p "$port" \
        shutdown nosave
    check_status "${kind}_shutdown" 0
    if wait_bg "${kind}_server" "$server_pid" 15; then
        server_pid=
        check_status "${kind}_server" 0 || tail -n 20 "$tmp/out/${kind}_server.out" >&2
    else
        stop_server
    fi
}

session plain
session tally

check_same plain_cli tally_cli
if ! diff -u --label expected --label plain "$tmp/expected.txt" "$tmp/out/plain_cli.out" >&2
then
    fail "redis-cli's replies (plain) are not the expected ones"
fi
small_served "$(cat "$tmp/tally.pid")"
small_served
finish
