#!/bin/bash
# redis.sh — redis-server on 127.0.0.1 (a random free port, no persistence), once as it is ("native":
# Debian's redis links libjemalloc.so dynamically, redis-cli and redis-benchmark use glibc's malloc)
# and once on the drop-in (the preload takes malloc, calloc, realloc, free and malloc_usable_size
# from jemalloc; nallocx and mallctl stay jemalloc's; redis-cli and redis-benchmark run on the
# drop-in too in that round). Each round: redis-benchmark (SET, GET, LPUSH, LPOP, INCR; 20 000
# requests each), a SET/GET round trip of a 100 KiB value, a fixed list of commands whose replies must
# be equal in both rounds, PING, INFO memory, then SHUTDOWN NOSAVE: the server must exit 0, and its
# log must show no crash. Timings differ, so the benchmark's lines are only checked to be there.
. "$(dirname "$0")/common.sh" "$@"
SERVER=/usr/bin/redis-server CLI=/usr/bin/redis-cli BENCH=/usr/bin/redis-benchmark
need $SERVER $CLI $BENCH

# The value of the round trip, and the commands (database 1; the benchmark uses database 0). Replies
# must not depend on the process (no hash table iteration order, no timings, no random seeds).
VALUE=$(printf 'v%05d-' $(seq 1 15000))
{
    echo "FLUSHDB"
    echo "SET big $VALUE"
    echo "STRLEN big"
    echo "APPEND big -tail"
    echo "GETRANGE big -20 -1"
    echo "SETRANGE big 100000 XYZ"
    echo "GETRANGE big 99990 100010"
    printf 'RPUSH list'; for i in $(seq 1 3000); do printf ' item%d' "$i"; done; echo
    echo "LRANGE list 0 5"
    echo "LTRIM list 100 1099"
    echo "LLEN list"
    echo "LINDEX list 500"
    for i in $(seq 1 400); do echo "HSET hash field$i value$((i * i))"; done
    echo "HLEN hash"
    echo "HGET hash field333"
    echo "HINCRBY hash field1 41"
    printf 'SADD set'; for i in $(seq 1 2000); do printf ' m%d' $((i * 7 % 1500)); done; echo
    echo "SCARD set"
    echo "SORT set ALPHA LIMIT 0 5"
    echo "SISMEMBER set m21"
    printf 'ZADD zset'; for i in $(seq 1 2000); do printf ' %d z%d' $((i * 37 % 1000)) "$i"; done; echo
    echo "ZCARD zset"
    echo "ZRANGE zset 0 4 WITHSCORES"
    echo "ZRANGEBYSCORE zset 500 501"
    echo "ZREMRANGEBYRANK zset 0 999"
    echo "ZCARD zset"
    for i in $(seq 1 300); do echo "XADD stream $i-1 k $i payload p$((i * 3))"; done
    echo "XLEN stream"
    echo "XRANGE stream 100-0 102-9"
    echo "XTRIM stream MAXLEN 10"
    echo "XLEN stream"
    echo "INCRBY counter 1000000"
    echo "INCRBYFLOAT fl 2.5"
    echo "SETBIT bits 100000 1"
    echo "BITCOUNT bits"
    printf 'PFADD hll'; for i in $(seq 1 1000); do printf ' e%d' "$i"; done; echo
    echo "PFCOUNT hll"
    printf 'MSET'; for i in $(seq 1 500); do printf ' k%d %d' "$i" $((i * 11)); done; echo
    echo "MGET k1 k250 k500 k501"
    echo "EVAL \"local t = {} for i = 1, 5000 do t[i] = tostring(i) end return #table.concat(t, ',')\" 0"
    echo "OBJECT ENCODING list"
    echo "OBJECT ENCODING hash"
    echo "OBJECT ENCODING zset"
    echo "DEL list hash set zset stream"
    echo "DBSIZE"
    echo "FLUSHDB"
    echo "DBSIZE"
} >"$WORK/commands"

SERVER_PID=
stop_server() {
    if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
        kill -9 "$SERVER_PID" 2>/dev/null
        wait "$SERVER_PID" 2>/dev/null
    fi
    SERVER_PID=
}
trap 'stop_server; cleanup' EXIT

# prefix MODE WHO: sets PRE to what runs a command as it is (native) or on the drop-in (its report
# to $WORK/WHO.dropin.report)
prefix() {
    if [ "$1" = dropin ]; then
        PRE=(env LD_PRELOAD="$HM_LIB" HOSTMEM_OPTIONS="report=$WORK/$2.dropin.report")
    else
        PRE=(env)
    fi
}

# round native|dropin
round() {
    local mode=$1 port log=$WORK/redis.$1.log rc out
    for _ in 1 2 3 4 5; do
        port=$((20000 + RANDOM % 40000))
        rm -f "$log"
        prefix "$mode" server
        "${PRE[@]}" "$SERVER" --bind 127.0.0.1 --port "$port" --save "" --appendonly no --daemonize no \
            --dir "$WORK" --logfile "$log" --loglevel notice --protected-mode yes &
        SERVER_PID=$!
        for _ in $(seq 1 100); do
            [ "$($CLI -h 127.0.0.1 -p "$port" ping 2>/dev/null)" = PONG ] && break
            kill -0 "$SERVER_PID" 2>/dev/null || break
            sleep 0.1
        done
        if [ "$($CLI -h 127.0.0.1 -p "$port" ping 2>/dev/null)" = PONG ]; then
            break
        fi
        stop_server
        if grep -q "Address already in use" "$log" 2>/dev/null; then
            echo "port $port is taken; another"
            continue
        fi
        echo "--- redis-server log ---" >&2
        cat "$log" >&2
        fail "redis-server ($mode) does not answer on 127.0.0.1:$port (can it bind 127.0.0.1?)"
    done
    [ -n "$SERVER_PID" ] || fail "redis-server ($mode): no free port on 127.0.0.1 in 5 tries"
    echo "redis-server ($mode) on 127.0.0.1:$port, pid $SERVER_PID"

    prefix "$mode" cli
    local cli=("${PRE[@]}" "$CLI" -h 127.0.0.1 -p "$port")
    prefix "$mode" bench
    timeout 120 "${PRE[@]}" \
        "$BENCH" -h 127.0.0.1 -p "$port" -n 20000 -q -t set,get,lpush,lpop,incr --threads 2 \
        >"$WORK/bench.$mode" 2>&1
    rc=$?
    tr '\r' '\n' <"$WORK/bench.$mode" | grep 'requests per second' | grep -v 'rps=' | tee "$WORK/bench.$mode.lines"
    [ $rc = 0 ] || { cat "$WORK/bench.$mode" >&2; fail "redis-benchmark ($mode) exited $(describe $rc)"; }
    for t in SET GET LPUSH LPOP INCR; do
        grep -q "^$t: .*requests per second" "$WORK/bench.$mode.lines" ||
            fail "redis-benchmark ($mode): no result line for $t"
    done

    out=$(timeout 30 "${cli[@]}" -n 2 set roundtrip "$VALUE") || fail "redis-cli set ($mode)"
    [ "$out" = OK ] || fail "redis-cli set ($mode) answered '$out'"
    out=$(timeout 30 "${cli[@]}" -n 2 get roundtrip) || fail "redis-cli get ($mode)"
    [ "$out" = "$VALUE" ] || fail "redis-cli get ($mode): the value read back is not the one written (${#out} bytes, not ${#VALUE})"

    timeout 60 "${cli[@]}" -n 1 <"$WORK/commands" >"$WORK/replies.$mode" 2>&1 || {
        cat "$WORK/replies.$mode" >&2
        fail "redis-cli with the commands ($mode)"
    }
    out=$(timeout 30 "${cli[@]}" ping) || fail "redis-cli ping ($mode)"
    [ "$out" = PONG ] || fail "redis-cli ping ($mode) answered '$out'"
    timeout 30 "${cli[@]}" info memory >"$WORK/info.$mode" || fail "redis-cli info memory ($mode)"
    grep -E '^(used_memory|used_memory_peak|mem_allocator):' "$WORK/info.$mode" | tr -d '\r'
    grep -q '^used_memory:' "$WORK/info.$mode" || fail "INFO memory ($mode) has no used_memory"

    timeout 30 "${cli[@]}" shutdown nosave >/dev/null 2>&1
    for _ in $(seq 1 100); do
        kill -0 "$SERVER_PID" 2>/dev/null || break
        sleep 0.1
    done
    kill -0 "$SERVER_PID" 2>/dev/null && { stop_server; fail "redis-server ($mode) still runs 10 s after SHUTDOWN NOSAVE"; }
    wait "$SERVER_PID"
    rc=$?
    SERVER_PID=
    if [ $rc != 0 ] || grep -qE 'crashed by signal|REDIS BUG REPORT|ASSERTION FAILED|Guru Meditation|Fatal' "$log"; then
        echo "--- redis-server log ($mode) ---" >&2
        tail -n 60 "$log" >&2
        fail "redis-server ($mode) exited $(describe $rc) or logged a crash"
    fi
    grep -q 'ready to exit, bye bye' "$log" || { tail -n 20 "$log" >&2; fail "redis-server ($mode) did not log its shutdown"; }
    if [ "$mode" = dropin ]; then
        local r
        for r in server bench cli; do
            [ -s "$WORK/$r.dropin.report" ] || fail "no drop-in report from $r: was the drop-in loaded?"
        done
    fi
    echo "ok redis ($mode): server exit 0"
}

round native
round dropin
if ! cmp -s "$WORK/replies.native" "$WORK/replies.dropin"; then
    echo "replies to the commands differ (--- native, +++ drop-in):" >&2
    diff -u "$WORK/replies.native" "$WORK/replies.dropin" | cut -c1-300 | head -n 80 >&2
    fail "redis replies"
fi
echo "ok redis: $(wc -l <"$WORK/replies.dropin") reply lines equal without the preload and on the drop-in"
