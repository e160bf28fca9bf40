# common.sh — sourced by the scripts in tests/programs (bash): a real program runs once on glibc's
# malloc and once on the drop-in (LD_PRELOAD=libhostmem-malloc.so), and what it wrote must match.
#
#   . common.sh "$@"            # $1: the path of libhostmem-malloc.so (ctest passes $<TARGET_FILE>)
#   need /usr/bin/prog ...       # fail loudly when a program is missing
#   compare NAME [VAR=VALUE...] PROGRAM ARGS...
#
# compare runs the command with its standard input from $STDIN (default /dev/null), first without the
# preload, then with it and HOSTMEM_OPTIONS=report=FILE[,$DROPIN_OPTIONS], each run stopped after
# $RUN_TIMEOUT seconds (100 by default). The exit statuses must be equal (and $EXPECT_STATUS, 0 by
# default), the standard outputs equal byte for byte (a diff -u is printed otherwise), and the report
# FILE must exist: the drop-in was loaded and the process ran its exit path. Files go to $WORK, a
# temporary directory removed at exit (kept with HM_KEEP_WORK=1).
set -u
set -o pipefail

fail() {
    printf 'FAIL: %s\n' "$*" >&2
    exit 1
}

[ $# -ge 1 ] || { echo "usage: $0 /path/to/libhostmem-malloc.so" >&2; exit 2; }
HM_LIB=$1
shift
case $HM_LIB in /*) ;; *) HM_LIB=$PWD/$HM_LIB ;; esac
[ -f "$HM_LIB" ] || fail "no drop-in library at $HM_LIB (build the target hostmem_malloc)"

# Nothing of the caller's may change the runs: no preload, no options, the same locale and time zone.
unset LD_PRELOAD HOSTMEM_OPTIONS HOSTMEM_RUN_PID PYTHONMALLOC PYTHONDEVMODE MALLOC_CHECK_ GLIBC_TUNABLES
export LC_ALL=C.UTF-8 TZ=UTC

WORK=$(mktemp -d "${TMPDIR:-/tmp}/hostmem-programs.XXXXXX") || fail "mktemp -d failed"
cleanup() {
    if [ "${HM_KEEP_WORK:-0}" = 1 ]; then
        echo "work files kept in $WORK" >&2
    else
        rm -rf "$WORK"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP

need() {
    local p
    for p in "$@"; do
        [ -x "$p" ] || fail "$p is missing; install it (make test does, through scripts/deps.sh: python3 sqlite3 lua5.4 git redis-server redis-tools libpython3.11-testsuite)"
    done
}

# describe STATUS: the exit status in words
describe() {
    if [ "$1" = 124 ]; then
        printf '124 (timed out: still running after %s s)' "${RUN_TIMEOUT:-100}"
    elif [ "$1" -gt 128 ]; then
        printf '%s (killed by signal %s: %s)' "$1" $(($1 - 128)) "$(kill -l $(($1 - 128)) 2>/dev/null || echo '?')"
    else
        printf '%s' "$1"
    fi
}

show_err() { # FILE LABEL
    if [ -s "$1" ]; then
        echo "--- $2 stderr (last 40 lines) ---" >&2
        tail -n 40 "$1" >&2
    fi
}

compare() {
    local name=$1
    shift
    local in=${STDIN:-/dev/null} want=${EXPECT_STATUS:-0} limit=${RUN_TIMEOUT:-100}
    local opts="report=$WORK/$name.report${DROPIN_OPTIONS:+,$DROPIN_OPTIONS}"
    local g=$WORK/$name.glibc d=$WORK/$name.dropin rg rd bad=0

    timeout -k 10 "$limit" env "$@" <"$in" >"$g.out" 2>"$g.err"
    rg=$?
    timeout -k 10 "$limit" env LD_PRELOAD="$HM_LIB" HOSTMEM_OPTIONS="$opts" "$@" <"$in" >"$d.out" 2>"$d.err"
    rd=$?

    if [ "$rg" != "$want" ]; then
        echo "$name: on glibc the program exited $(describe "$rg"), expected $want: the test itself is wrong here" >&2
        show_err "$g.err" "glibc"
        bad=1
    fi
    if [ "$rd" != "$rg" ]; then
        echo "$name: on the drop-in the program exited $(describe "$rd"); on glibc $(describe "$rg")" >&2
        show_err "$d.err" "drop-in"
        bad=1
    fi
    if ! cmp -s "$g.out" "$d.out"; then
        echo "$name: standard output differs (--- glibc, +++ drop-in):" >&2
        diff -u "$g.out" "$d.out" | head -n 80 >&2
        show_err "$d.err" "drop-in"
        bad=1
    fi
    if [ ! -s "$WORK/$name.report" ]; then
        echo "$name: the drop-in wrote no report at exit to $WORK/$name.report: was it loaded, did the process exit normally?" >&2
        show_err "$d.err" "drop-in"
        bad=1
    fi
    if [ $bad != 0 ]; then
        echo "reproduce: env LD_PRELOAD=$HM_LIB HOSTMEM_OPTIONS=$opts $* <$in   (HM_KEEP_WORK=1 keeps $WORK)" >&2
        fail "$name"
    fi
    echo "ok $name: exit $rg, $(wc -l <"$d.out") lines of output equal on glibc and on the drop-in"
}
