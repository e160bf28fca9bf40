#!/usr/bin/env bash
# bench_dropin.sh — the drop-in malloc (libhostmem-malloc.so, LD_PRELOAD) against glibc, jemalloc,
# mimalloc and tcmalloc on real programs, and what `hostmem run` (budget and report) adds to it.
#
#   bench/bench_dropin.sh BUILD_DIR [--quick] [--reps N] [--only W1,W2,...]
#
# BUILD_DIR is a build tree with HM_BUILD_BENCH=ON (libhostmem-malloc.so, hostmem, bench/bench_dropin_churn).
#
# Contenders (every program runs unchanged; only its malloc differs):
#   glibc        no preload (redis-server links jemalloc, so there libc.so.6 is preloaded: glibc's malloc)
#   jemalloc     LD_PRELOAD=libjemalloc.so.2          (Debian: libjemalloc2)
#   mimalloc     LD_PRELOAD=libmimalloc.so.2          (libmimalloc2.0)
#   tcmalloc     LD_PRELOAD=libtcmalloc_minimal.so.4  (libtcmalloc-minimal4)
#   hostmem      LD_PRELOAD=libhostmem-malloc.so      (the build tree's)
#   hostmem run  hostmem run -o limit=16G --report FILE -- PROGRAM: the same library with a budget and
#                the report written at exit (the report goes to a file in the temporary directory)
# A missing library is reported and its contender skipped.
#
# Workloads (bench/dropin/; each about 1-2 s on glibc on a 2-core VM):
#   churn-small    bench_dropin_churn small: 20 000 live blocks of 16..512 B replaced at random
#   churn-mixed    bench_dropin_churn mixed: the same, 16 B..256 KiB (70 % <= 256 B, 1 % >= 32 KiB)
#   churn-threads  bench_dropin_churn threads: 2 producer -> consumer pairs (4 threads), every block
#                  freed by another thread than the one that allocated it
#   python         python3 work.py: dict/list/str churn, json dumps/loads of a 5 MB structure
#   python-malloc  the same (half the work) with PYTHONMALLOC=malloc: every object from malloc, not
#                  from pymalloc's arenas (which shield the allocator in the default configuration)
#   lua            lua5.4 work.lua: table and string churn (Lua allocates through realloc/free)
#   sqlite         sqlite3 :memory: < work.sql: 200 000 rows by a recursive CTE, index, group by,
#                  update, delete
#   redis          redis-server, then redis-benchmark -n 100000 -q -t set,get,lpush,lpop on 127.0.0.1
#                  (a free port): time = the redis-benchmark run, RSS = the server's VmHWM before
#                  SHUTDOWN NOSAVE; the client always runs on glibc
# Pinning: taskset -c 0 for everything except churn-threads (both CPUs) and redis (server on CPU 0,
# client on CPU 1).
#
# Method: every run is a process of its own. Its wall time and CPU time (user + system, every thread
# and child process included) come from bash's `time` (getrusage of the children, to the millisecond;
# for redis: the benchmark's wall time and the server's own CPU time from /proc/PID/stat, to 10 ms);
# the peak RSS is GNU time's %M (the child's ru_maxrss). On a shared machine the CPU time is the
# steadier figure: it does not count the time the run waited for a CPU that another process had.
# Rounds (5 by default, --reps N; --quick: 3 rounds of shorter inputs, no warm-up) each run every
# workload under every contender, the contenders interleaved, their order rotating from one round to
# the next and reversed every other round; before the rounds, an untimed warm-up run of each pair (not redis). Figures are medians
# over the rounds. Every run must exit 0, its stderr must not say that a preload failed, and its stdout
# (redis: the tests run and the keys left) must be identical across contenders and rounds; otherwise
# the run is reported as FAILED with a command that reproduces it, left out of the figures, and the
# script exits 1.
set -uo pipefail
export LC_ALL=C

die() { echo "bench_dropin: $*" >&2; exit 2; }

# ---- arguments ------------------------------------------------------------------------------------
BUILD=""; QUICK=0; REPS=""; ONLY=""
while [ $# -gt 0 ]; do
    case "$1" in
        --quick) QUICK=1 ;;
        --reps) shift; REPS="${1:-}"; [[ "$REPS" =~ ^[1-9][0-9]*$ ]] || die "--reps wants a positive number" ;;
        --only) shift; ONLY="${1:-}" ;;
        -h|--help) sed -n '2,/^set -uo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        -*) die "unknown argument '$1' (usage: $0 BUILD_DIR [--quick] [--reps N] [--only W1,W2])" ;;
        *) [ -z "$BUILD" ] || die "one build directory, not '$BUILD' and '$1'"; BUILD="$1" ;;
    esac
    shift
done
[ -n "$BUILD" ] || die "usage: $0 BUILD_DIR [--quick] [--reps N] [--only W1,W2]"
BUILD="$(cd "$BUILD" 2>/dev/null && pwd)" || die "no build directory '$BUILD'"
HERE="$(cd "$(dirname "$0")" && pwd)"
DROPIN="$HERE/dropin"
HMLIB="$BUILD/libhostmem-malloc.so"
HMCLI="$BUILD/hostmem"
CHURN="$BUILD/bench/bench_dropin_churn"
for f in "$HMLIB" "$HMCLI" "$CHURN"; do
    [ -e "$f" ] || die "$f is missing: build the tree with -DHM_BUILD_BENCH=ON (targets hostmem_malloc, hostmem_cli, bench_dropin_churn)"
done
[ -n "$REPS" ] || { [ $QUICK = 1 ] && REPS=3 || REPS=5; }
[ -n "${EPOCHREALTIME:-}" ] || die "bash 5 is needed (EPOCHREALTIME)"
TIMEFORMAT='%3R %3U %3S'
CLK_TCK=$(getconf CLK_TCK 2>/dev/null || echo 100)

if [ ! -x /usr/bin/time ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        echo "bench_dropin: installing GNU time (package time)" >&2
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq time >/dev/null 2>&1
    fi
    [ -x /usr/bin/time ] || die "/usr/bin/time (GNU time, package 'time') is needed for the peak RSS"
fi
NCPU=$(nproc 2>/dev/null || echo 1)
if command -v taskset >/dev/null; then
    PIN0=(taskset -c 0)
    if [ "$NCPU" -ge 2 ]; then PIN1=(taskset -c 1); else PIN1=(taskset -c 0); fi
else
    PIN0=(); PIN1=()
    echo "bench_dropin: no taskset: nothing is pinned" >&2
fi

TMP="$(mktemp -d /tmp/bench_dropin.XXXXXX)" || die "mktemp failed"
SERVER_PID=""
cleanup() {
    if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then kill "$SERVER_PID" 2>/dev/null; fi
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---- contenders -----------------------------------------------------------------------------------
LIBDIR=/usr/lib/x86_64-linux-gnu
[ -d "$LIBDIR" ] || LIBDIR=/usr/lib/$(uname -m)-linux-gnu
LIBC="$(ldd /bin/true 2>/dev/null | awk '/libc\.so/ {print $3; exit}')"
HMRUN_OPTS="limit=16G"
declare -A LIB=(
    [glibc]=""
    [jemalloc]="$LIBDIR/libjemalloc.so.2"
    [mimalloc]="$LIBDIR/libmimalloc.so.2"
    [tcmalloc]="$LIBDIR/libtcmalloc_minimal.so.4"
    [hostmem]="$HMLIB"
    [hostmem-run]="$HMLIB"
)
CONTENDERS=()
for c in glibc jemalloc mimalloc tcmalloc hostmem hostmem-run; do
    lib="${LIB[$c]}"
    if [ -n "$lib" ]; then
        if [ ! -e "$lib" ]; then
            echo "bench_dropin: $c skipped: $lib is missing (Debian: apt-get install libjemalloc2 libmimalloc2.0 libtcmalloc-minimal4)" >&2
            continue
        fi
        # ld.so only warns when a preload fails, and the program runs on glibc: check it loads
        msg="$(LD_PRELOAD="$lib" /bin/true 2>&1)"
        [ -z "$msg" ] || die "$lib cannot be preloaded: $msg"
    fi
    CONTENDERS+=("$c")
done
display() { [ "$1" = hostmem-run ] && echo "hostmem run" || echo "$1"; }

# ---- workloads ------------------------------------------------------------------------------------
if [ $QUICK = 1 ]; then
    CHURN_SCALE=0.25; PY_SCALE=0.3; LUA_SCALE=0.3; SQL_ROWS=50000; REDIS_N=20000
else
    CHURN_SCALE=1; PY_SCALE=1; LUA_SCALE=1; SQL_ROWS=200000; REDIS_N=100000
fi
PY_MALLOC_SCALE=$(awk -v s="$PY_SCALE" 'BEGIN { print s / 2 }')

ALL_WORKLOADS=(churn-small churn-mixed churn-threads python python-malloc lua sqlite redis)
WORKLOADS=()
want() { [ -z "$ONLY" ] || [[ ",$ONLY," == *",$1,"* ]]; }
for w in "${ALL_WORKLOADS[@]}"; do
    want "$w" || continue
    case "$w" in
        python*) command -v python3 >/dev/null || { echo "bench_dropin: $w skipped: no python3" >&2; continue; } ;;
        lua) command -v lua5.4 >/dev/null || { echo "bench_dropin: lua skipped: no lua5.4 (package lua5.4)" >&2; continue; } ;;
        sqlite) command -v sqlite3 >/dev/null || { echo "bench_dropin: sqlite skipped: no sqlite3 (package sqlite3)" >&2; continue; } ;;
        redis) { command -v redis-server && command -v redis-benchmark && command -v redis-cli; } >/dev/null ||
                   { echo "bench_dropin: redis skipped: no redis-server/redis-benchmark (packages redis-server, redis-tools)" >&2; continue; } ;;
    esac
    WORKLOADS+=("$w")
done
if [ -n "$ONLY" ]; then
    for w in ${ONLY//,/ }; do [[ " ${ALL_WORKLOADS[*]} " == *" $w "* ]] || die "unknown workload '$w' (${ALL_WORKLOADS[*]})"; done
fi
[ ${#WORKLOADS[@]} -gt 0 ] || die "no workload to run"

# Sets PIN (array), ENVS (array of VAR=value), CMD (array) and IN (stdin file) for workload $1.
workload() {
    PIN=("${PIN0[@]}"); ENVS=(); IN=/dev/null
    case "$1" in
        churn-small) CMD=("$CHURN" small "$CHURN_SCALE") ;;
        churn-mixed) CMD=("$CHURN" mixed "$CHURN_SCALE") ;;
        churn-threads) PIN=(); CMD=("$CHURN" threads "$CHURN_SCALE") ;;
        python) ENVS=(PYTHONHASHSEED=0); CMD=(python3 "$DROPIN/work.py" "$PY_SCALE") ;;
        python-malloc) ENVS=(PYTHONHASHSEED=0 PYTHONMALLOC=malloc); CMD=(python3 "$DROPIN/work.py" "$PY_MALLOC_SCALE") ;;
        lua) CMD=(lua5.4 "$DROPIN/work.lua" "$LUA_SCALE") ;;
        sqlite) CMD=(sqlite3 -batch -cmd ".parameter set @n $SQL_ROWS" :memory:); IN="$DROPIN/work.sql" ;;
        redis) CMD=(redis-server --port "$PORT" --bind 127.0.0.1 --save "" --appendonly no --daemonize no
                    --protected-mode yes --logfile "") ;;
    esac
}

# The whole command line of workload $1 under contender $2, in FULL (array); the report of `hostmem run`
# goes to $3.
command_line() {
    local w="$1" c="$2" report="$3" lib="${LIB[$2]}"
    workload "$w"
    if [ "$w" = redis ] && [ "$c" = glibc ]; then lib="$LIBC"; fi
    FULL=("${PIN[@]}" env "${ENVS[@]}")
    case "$c" in
        glibc) [ -z "$lib" ] || FULL+=("LD_PRELOAD=$lib"); FULL+=("${CMD[@]}") ;;
        hostmem-run) FULL+=("$HMCLI" run -o "$HMRUN_OPTS" --report "$report" -- "${CMD[@]}") ;;
        *) FULL+=("LD_PRELOAD=$lib" "${CMD[@]}") ;;
    esac
}

quote() { local s="" a; for a in "$@"; do s+="$(printf '%q' "$a") "; done; echo "${s% }"; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.4f", b - a }'; }
# CPU seconds (user + system) of process $1 so far, from /proc/PID/stat (fields after the command name)
cpu_of() { sed 's/^.*) //' "/proc/$1/stat" 2>/dev/null | awk -v hz="$CLK_TCK" '{ printf "%.3f", ($12 + $13) / hz }'; }

RESULTS="$TMP/results"   # workload contender round wall_s cpu_s rss_kb
FAILED="$TMP/failed"     # workload contender
: >"$RESULTS"; : >"$FAILED"
declare -A REF           # workload -> sha256 of the first stdout
declare -A REFWHO        # workload -> which run gave it
NFAIL=0

# Records a failed run: what happened, the command that reproduces it, the tail of its output.
failure() {
    local w="$1" c="$2" what="$3" repro="$4" out="$5" err="$6"
    NFAIL=$((NFAIL + 1))
    echo "$w $c" >>"$FAILED"
    {
        echo "FAILED: $w under $(display "$c"): $what"
        echo "  reproduce: $repro"
        if [ -s "$err" ]; then echo "  stderr (last lines):"; tail -n 15 "$err" | sed 's/^/    /'; fi
        if [ -s "$out" ]; then echo "  stdout (first lines):"; head -n 8 "$out" | sed 's/^/    /'; fi
    } >&2
}

# Compares the run's stdout with the workload's first one; returns 1 (after reporting) on a mismatch.
check_output() {
    local w="$1" c="$2" out="$3" repro="$4" err="$5" h
    h="$(sha256sum <"$out" | cut -c1-64)"
    if [ -z "${REF[$w]:-}" ]; then
        REF[$w]="$h"; REFWHO[$w]="$c"; cp "$out" "$TMP/ref.$w"
        return 0
    fi
    [ "$h" = "${REF[$w]}" ] && return 0
    failure "$w" "$c" "stdout differs from the $(display "${REFWHO[$w]}") run's (sha256 ${h:0:12} vs ${REF[$w]:0:12}); diff:" "$repro" /dev/null "$err"
    diff "$TMP/ref.$w" "$out" | head -n 20 | sed 's/^/    /' >&2
    return 1
}

# One run of a program workload: sets T (wall seconds), U (CPU seconds) and M (peak RSS, KiB);
# returns 1 if it failed.
run_program() {
    local w="$1" c="$2" out="$TMP/out" err="$TMP/err" rss="$TMP/rss" tf="$TMP/times" rc
    command_line "$w" "$c" "$TMP/report"
    local repro="$(quote "${FULL[@]}")"
    [ "$IN" = /dev/null ] || repro+=" < $(printf '%q' "$IN")"
    { time /usr/bin/time -f "%M" -o "$rss" "${FULL[@]}" <"$IN" >"$out" 2>"$err"; } 2>"$tf"
    rc=$?
    if [ $rc -ne 0 ]; then
        failure "$w" "$c" "exit status $rc ($(head -n 1 "$rss" 2>/dev/null))" "$repro" "$out" "$err"
        return 1
    fi
    if grep -q "cannot be preloaded" "$err"; then
        failure "$w" "$c" "the preload failed (the run was on glibc)" "$repro" "$out" "$err"
        return 1
    fi
    check_output "$w" "$c" "$out" "$repro" "$err" || return 1
    read -r T U <<<"$(awk '{ printf "%.3f %.3f", $1, $2 + $3 }' "$tf")"
    M=$(tail -n 1 "$rss")
    return 0
}

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# A port below the kernel's range of ephemeral ports (which redis-benchmark's 50 connections draw
# from), not listened on.
pick_port() {
    local lo i p
    lo=$(awk '{ print $1 }' /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null)
    [[ "$lo" =~ ^[0-9]+$ ]] && [ "$lo" -gt 12000 ] || lo=61000
    for i in $(seq 100); do
        p=$((10000 + RANDOM % (lo - 10000)))
        if port_free "$p"; then PORT=$p; return 0; fi
    done
    return 1
}

# One redis run: a server under the contender, redis-benchmark (glibc) against it. Sets T (the
# benchmark's wall seconds), U (the server's CPU seconds) and M (the server's VmHWM, KiB).
run_redis() {
    local w=redis c="$1" out="$TMP/out" err="$TMP/err" log="$TMP/server.log" t0 t1 rc i pid attempt repro
    for attempt in 1 2 3 4 5; do
        PORT=""
        pick_port || { failure redis "$c" "no free port found" "-" /dev/null /dev/null; return 1; }
        command_line redis "$c" "$TMP/report"
        repro="$(quote "${FULL[@]}") & $(quote "${PIN1[@]}" redis-benchmark -h 127.0.0.1 -p "$PORT" -n "$REDIS_N" -q -t set,get,lpush,lpop)"
        "${FULL[@]}" >"$log" 2>&1 </dev/null &
        SERVER_PID=$!
        for i in $(seq 200); do
            [ "$(redis-cli -h 127.0.0.1 -p "$PORT" ping 2>/dev/null)" = PONG ] && break
            kill -0 "$SERVER_PID" 2>/dev/null || break
            sleep 0.05
        done
        [ "$(redis-cli -h 127.0.0.1 -p "$PORT" ping 2>/dev/null)" = PONG ] && break
        kill "$SERVER_PID" 2>/dev/null; wait "$SERVER_PID" 2>/dev/null; rc=$?; SERVER_PID=""
        grep -q "Address already in use" "$log" && continue # the port was taken meanwhile: another one
        failure redis "$c" "the server did not answer PING within 10 s (status $rc)" "$repro" /dev/null "$log"
        return 1
    done
    if [ -z "$SERVER_PID" ]; then
        failure redis "$c" "no port could be bound in 5 attempts" "$repro" /dev/null "$log"
        return 1
    fi
    pid="$(redis-cli -h 127.0.0.1 -p "$PORT" info server | tr -d '\r' | awk -F: '$1 == "process_id" { print $2 }')"
    t0=$EPOCHREALTIME
    "${PIN1[@]}" redis-benchmark -h 127.0.0.1 -p "$PORT" -n "$REDIS_N" -q -t set,get,lpush,lpop >"$err" 2>&1 </dev/null
    rc=$?
    t1=$EPOCHREALTIME
    M="$(awk '$1 == "VmHWM:" { print $2 }' "/proc/$pid/status" 2>/dev/null)"
    U="$(cpu_of "$pid")"
    {
        tr '\r' '\n' <"$err" | awk -F: '/requests per second/ { printf "%s ", $1 } END { print "" }'
        echo "dbsize $(redis-cli -h 127.0.0.1 -p "$PORT" dbsize)"
        echo "value $(redis-cli -h 127.0.0.1 -p "$PORT" get key:__rand_int__)"
        echo "llen $(redis-cli -h 127.0.0.1 -p "$PORT" llen mylist)"
    } >"$out" 2>&1
    redis-cli -h 127.0.0.1 -p "$PORT" shutdown nosave >/dev/null 2>&1
    local srv=0
    for i in $(seq 200); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.05; done
    if kill -0 "$SERVER_PID" 2>/dev/null; then
        kill -9 "$SERVER_PID" 2>/dev/null; wait "$SERVER_PID" 2>/dev/null; SERVER_PID=""
        failure redis "$c" "the server did not exit within 10 s of SHUTDOWN NOSAVE" "$repro" /dev/null "$log"
        return 1
    fi
    wait "$SERVER_PID"; srv=$?; SERVER_PID=""
    if [ $rc -ne 0 ]; then failure redis "$c" "redis-benchmark exit status $rc" "$repro" "$out" "$err"; return 1; fi
    if [ $srv -ne 0 ]; then failure redis "$c" "server exit status $srv" "$repro" "$out" "$log"; return 1; fi
    if grep -q "cannot be preloaded" "$log"; then failure redis "$c" "the preload failed" "$repro" "$out" "$log"; return 1; fi
    [ -n "$M" ] && [ -n "$U" ] || { failure redis "$c" "no VmHWM or CPU time for the server (pid '$pid')" "$repro" "$out" "$log"; return 1; }
    check_output redis "$c" "$out" "$repro" "$log" || return 1
    T=$(elapsed "$t0" "$t1")
    return 0
}

run_one() {
    if [ "$1" = redis ]; then run_redis "$2"; else run_program "$1" "$2"; fi
}

# ---- the runs -------------------------------------------------------------------------------------
K=${#CONTENDERS[@]}
LOAD0="$(cut -d' ' -f1-3 /proc/loadavg)"
START=$EPOCHREALTIME
if [ $QUICK = 0 ]; then
    echo "bench_dropin: warm-up (one untimed run of each workload under each contender; redis excluded)" >&2
    for w in "${WORKLOADS[@]}"; do
        [ "$w" = redis ] && continue
        for c in "${CONTENDERS[@]}"; do run_one "$w" "$c" || true; done
    done
fi
for ((r = 0; r < REPS; r++)); do
    echo "bench_dropin: round $((r + 1))/$REPS" >&2
    for w in "${WORKLOADS[@]}"; do
        for ((j = 0; j < K; j++)); do
            # rotated by the round, and reversed every other round: each contender runs in every
            # position and after more than one neighbour
            if ((r % 2)); then c="${CONTENDERS[$(((r - j + K) % K))]}"; else c="${CONTENDERS[$(((r + j) % K))]}"; fi
            if run_one "$w" "$c"; then echo "$w $c $r $T $U $M" >>"$RESULTS"; fi
        done
    done
done
LOAD1="$(cut -d' ' -f1-3 /proc/loadavg)"
MINUTES=$(awk -v a="$START" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", (b - a) / 60 }')

# ---- the table ------------------------------------------------------------------------------------
echo
echo "bench_dropin: drop-in mallocs under unchanged programs; median of $REPS rounds$([ $QUICK = 1 ] && echo " (--quick: shorter inputs, no warm-up)"), contenders interleaved"
echo "  $(uname -r), $NCPU CPUs ($(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo)); load average $LOAD0 before, $LOAD1 after; $MINUTES min"
echo "  pinned with taskset -c 0, except churn-threads (4 threads on both CPUs) and redis (server CPU 0, redis-benchmark CPU 1)"
echo "  wall: seconds of the run (redis: of redis-benchmark -n $REDIS_N); cpu: its user + system seconds, all threads (redis: the"
echo "  server's); +-: (max - min) / 2 / median over the rounds; RSS: peak resident set, MiB (redis: the server's VmHWM)"
echo "  'hostmem run' = hostmem run -o $HMRUN_OPTS --report FILE; redis's 'glibc' preloads libc.so.6 (redis-server links jemalloc)"
awk -v W="${WORKLOADS[*]}" -v C="${CONTENDERS[*]}" -v failed="$FAILED" -v reps="$REPS" '
function sortv(v, n,   i, j, x) {
    for (i = 2; i <= n; i++) { x = v[i]; for (j = i - 1; j >= 1 && v[j] > x; j--) v[j + 1] = v[j]; v[j + 1] = x }
}
function median(v, n) { sortv(v, n); return n % 2 ? v[(n + 1) / 2] : (v[n / 2] + v[n / 2 + 1]) / 2 }
function spread(v, n, m) { sortv(v, n); return m > 0 ? (v[n] - v[1]) / 2 / m * 100 : 0 }
function name(c) { return c == "hostmem-run" ? "hostmem run" : c }
function have(w, c) { return ((w, c) in MT) && !((w, c) in FAIL) }
function ratio(A, w, c, base) { return (have(w, base) && A[w, base] > 0) ? sprintf("%.2f", A[w, c] / A[w, base]) : "-" }
# one summary line: ratios of A to mimalloc over the workloads both completed
function summary(A, c, label,   i, w, m, s, q, worst, ww, tq) {
    m = 0; s = 0; worst = 0; ww = "-"
    for (i = 1; i <= nw; i++) {
        w = wl[i]
        if (!have(w, c) || !have(w, "mimalloc") || A[w, "mimalloc"] <= 0) continue
        m++; q = A[w, c] / A[w, "mimalloc"]; tq[m] = q; s += log(q)
        if (q > worst) { worst = q; ww = w }
    }
    if (!m) return "-"
    GM[label, c] = exp(s / m); MD[label, c] = median(tq, m); WR[label, c] = worst; WN[label, c] = ww
    return sprintf("%7.3f %7.3f %7.3f %-16s", GM[label, c], MD[label, c], worst, "(" ww ")")
}
function rssmed(c,   i, w, m, rq) {
    m = 0
    for (i = 1; i <= nw; i++) {
        w = wl[i]
        if (!have(w, c) || !have(w, "mimalloc")) continue
        m++; rq[m] = MR[w, c] / MR[w, "mimalloc"]
    }
    NW[c] = m
    return m ? (RM[c] = median(rq, m)) : 0
}
# hostmem run against hostmem preload, in A: geometric mean over the workloads, and each
function runcost(A, label,   i, w, m, s, q, per) {
    m = 0; s = 0; per = ""
    for (i = 1; i <= nw; i++) {
        w = wl[i]
        if (!have(w, "hostmem") || !have(w, "hostmem-run") || A[w, "hostmem"] <= 0) continue
        m++; q = A[w, "hostmem-run"] / A[w, "hostmem"]; s += log(q)
        per = per sprintf("%s%s %+.1f%%", m > 1 ? ", " : "", w, (q - 1) * 100)
    }
    if (m) printf "  %s %+.1f%% (geometric mean over %d workloads: %s)\n", label, (exp(s / m) - 1) * 100, m, per
}
function target(label) {
    printf "  by %-4s time: median ratio %.3f (<= 1.10: %s), worst %.3f in %s (<= 1.50: %s)\n", label,
           MD[label, "hostmem"], MD[label, "hostmem"] <= 1.10 ? "met" : "MISSED", WR[label, "hostmem"], WN[label, "hostmem"],
           WR[label, "hostmem"] <= 1.5 ? "met" : "MISSED"
}
BEGIN {
    nw = split(W, wl, " "); nc = split(C, cl, " ")
    while ((getline line < failed) > 0) { split(line, f, " "); FAIL[f[1], f[2]] = 1 }
}
{ k = $1 SUBSEP $2; n[k]++; T[k, n[k]] = $4; U[k, n[k]] = $5; R[k, n[k]] = $6 }
END {
    for (i = 1; i <= nw; i++) for (j = 1; j <= nc; j++) {
        k = wl[i] SUBSEP cl[j]
        if (!(k in n)) continue
        for (x = 1; x <= n[k]; x++) { tv[x] = T[k, x]; uv[x] = U[k, x]; rv[x] = R[k, x] }
        MT[k] = median(tv, n[k]); MU[k] = median(uv, n[k]); MR[k] = median(rv, n[k]) / 1024
        ST[k] = spread(tv, n[k], MT[k]); SU[k] = spread(uv, n[k], MU[k]); NRUN[k] = n[k]
    }
    printf "\n%-14s %-12s %7s %5s %7s %5s %7s   %-11s   %-11s   %s\n", "", "", "", "", "", "", "", "wall ratio", "cpu ratio", "RSS ratio"
    printf "%-14s %-12s %7s %5s %7s %5s %7s   %5s %5s   %5s %5s   %5s\n", "workload", "contender", "wall s", "+-", "cpu s", "+-", "RSS MiB",
           "/mi", "/glibc", "/mi", "/glibc", "/mi"
    for (i = 1; i <= nw; i++) {
        w = wl[i]
        for (j = 1; j <= nc; j++) {
            c = cl[j]; k = w SUBSEP c
            if (!have(w, c)) { printf "%-14s %-12s %7s\n", w, name(c), ((w, c) in FAIL) ? "FAILED" : "-"; continue }
            printf "%-14s %-12s %7.3f %4.0f%% %7.3f %4.0f%% %7.1f   %5s %5s   %5s %5s   %5s%s\n", w, name(c), MT[k], ST[k], MU[k], SU[k], MR[k],
                   ratio(MT, w, c, "mimalloc"), ratio(MT, w, c, "glibc"), ratio(MU, w, c, "mimalloc"), ratio(MU, w, c, "glibc"),
                   ratio(MR, w, c, "mimalloc"), NRUN[k] < reps ? sprintf("  (%d of %d rounds)", NRUN[k], reps) : ""
        }
        print ""
    }
    printf "summary: ratios to mimalloc over the workloads (time: geometric mean, median, worst; RSS: median)\n"
    printf "%-12s   %-39s   %-39s   %s\n", "", "wall time", "cpu time", "RSS"
    printf "%-12s   %7s %7s %7s %-16s   %7s %7s %7s %-16s   %6s %3s\n", "contender", "geomean", "median", "worst", "(workload)",
           "geomean", "median", "worst", "(workload)", "median", "n"
    for (j = 1; j <= nc; j++) {
        c = cl[j]
        r = rssmed(c)
        if (!NW[c]) { printf "%-12s   -\n", name(c); continue }
        printf "%-12s   %39s   %39s   %6.3f %3d\n", name(c), summary(MT, c, "wall"), summary(MU, c, "cpu"), r, NW[c]
    }
    if (("wall", "hostmem") in GM && ("wall", "hostmem-run") in GM) {
        printf "\nhostmem run vs hostmem preload:\n"
        runcost(MT, "wall")
        runcost(MU, "cpu ")
        m = 0
        for (i = 1; i <= nw; i++) if (have(wl[i], "hostmem") && have(wl[i], "hostmem-run")) { m++; rr[m] = MR[wl[i], "hostmem-run"] / MR[wl[i], "hostmem"] }
        if (m) printf "  RSS  %+.1f%% (median)\n", (median(rr, m) - 1) * 100
    }
    if (("wall", "hostmem") in GM) {
        printf "\ntargets for hostmem (preload) against mimalloc:\n"
        target("wall"); target("cpu")
        printf "  RSS: median ratio %.3f (<= 1.10: %s)\n", RM["hostmem"], RM["hostmem"] <= 1.10 ? "met" : "MISSED"
    }
}' "$RESULTS"

if [ "$NFAIL" -gt 0 ]; then
    echo
    echo "bench_dropin: $NFAIL run(s) FAILED (exit status, failed preload or output mismatch; details above on stderr):"
    sort "$FAILED" | uniq -c | awk '{ printf "  %s under %s: %d run(s)\n", $2, ($3 == "hostmem-run" ? "hostmem run" : $3), $1 }'
    exit 1
fi
exit 0
