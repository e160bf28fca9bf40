#!/bin/bash
# python_limit.sh — CPython under a cap: HOSTMEM_OPTIONS=limit=128M. A request beyond the budget
# raises MemoryError, the program catches it and goes on; memory filled to the cap with small objects
# and given back can be filled again, five times over (and by four threads at once); the process
# exits 0, and the JSON report counts refusals at the process level.
#
# Both allocators of CPython: with PYTHONMALLOC=malloc every object comes from malloc; with pymalloc
# (the default) small objects live in 256 KiB arenas that CPython maps itself, which the drop-in
# counts through its mmap (src/preload/mmap.c): the fill reaches MemoryError either way.
. "$(dirname "$0")/common.sh" "$@"
PY=/usr/bin/python3
need $PY

cat >"$WORK/big.py" <<'PYEOF'
import sys
for attempt in range(3):
    try:
        b = bytearray(512 * 1024 * 1024)
        print("no MemoryError for 512 MiB under a 128 MiB limit")
        sys.exit(1)
    except MemoryError:
        print("512 MiB: MemoryError", attempt)
x = bytearray(32 * 1024 * 1024)   # well under the limit: granted
x[-1] = 1
print("32 MiB:", len(x), sum(x[-10:]))
print("OK")
PYEOF

cat >"$WORK/fill.py" <<'PYEOF'
import gc, sys, threading

def fill():
    l = []
    try:
        while True:
            l.append(bytes(100))
    except MemoryError:
        pass
    return l

counts = []
for r in range(5):
    l = fill()
    n = len(l)
    del l
    gc.collect()
    again = [bytes(100) for _ in range(200000)]   # some 30 MiB: allocates again after the refusal
    counts.append(n)
    print("round", r, "MemoryError caught; allocated again:", len(again))
    del again
    gc.collect()
print("objects per round:", counts, file=sys.stderr)
if min(counts) < 200000:
    sys.exit("too few objects before the MemoryError: %r" % counts)
if min(counts) < 0.9 * max(counts):
    sys.exit("memory given back was not usable again: %r" % counts)

# four threads fill memory at once, each catches its MemoryError
res = [None] * 4
start = threading.Barrier(5)    # every thread runs before any fills memory
def worker(k):
    l = []
    start.wait()
    try:
        while True:
            l.append(bytes(100) + bytes([k]))
    except MemoryError:
        res[k] = len(l) > 0
    del l
ts = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
for t in ts:
    t.start()
start.wait()
for t in ts:
    t.join()
gc.collect()
print("threads:", res)
again = [str(i) for i in range(200000)]
print("after threads:", len(again))
print("OK")
PYEOF

check_out() { # NAME FILE STATUS EXPECTED-FILE
    if [ "$3" != 0 ] || ! cmp -s "$2" "$4"; then
        echo "$1: exit $(describe "$3"); output (--- expected, +++ got):" >&2
        diff -u "$4" "$2" >&2
        show_err "$2.err" "$1"
        fail "$1"
    fi
    echo "ok $1"
}

cat >"$WORK/big.want" <<'TXT'
512 MiB: MemoryError 0
512 MiB: MemoryError 1
512 MiB: MemoryError 2
32 MiB: 33554432 1
OK
TXT
for mode in pymalloc malloc; do
    PYTHONMALLOC=$mode LD_PRELOAD="$HM_LIB" HOSTMEM_OPTIONS=limit=128M $PY "$WORK/big.py" >"$WORK/big.$mode" 2>"$WORK/big.$mode.err"
    check_out "python_limit_big_$mode" "$WORK/big.$mode" $? "$WORK/big.want"
done

{
    for r in 0 1 2 3 4; do echo "round $r MemoryError caught; allocated again: 200000"; done
    echo "threads: [True, True, True, True]"
    echo "after threads: 200000"
    echo "OK"
} >"$WORK/fill.want"
for mode in malloc pymalloc; do
PYTHONMALLOC=$mode LD_PRELOAD="$HM_LIB" HOSTMEM_OPTIONS=limit=128M,report=$WORK/fill.json,report.format=json \
    $PY "$WORK/fill.py" >"$WORK/fill.out" 2>"$WORK/fill.out.err"
check_out python_limit_fill_$mode "$WORK/fill.out" $? "$WORK/fill.want"
cat "$WORK/fill.out.err"
[ -s "$WORK/fill.json" ] || fail "no JSON report in $WORK/fill.json"
$PY - "$WORK/fill.json" <<'PYEOF' || fail "the JSON report does not count the refusals (above)"
import json, sys
r = json.load(open(sys.argv[1]))
lv = {l["level"]: l for l in r["levels"]}
print("report: limit", r["limit"], "charge", r["charge"], "process level", lv["process"])
assert r["limit"] == 128 << 20, r["limit"]
assert lv["process"]["refused"] > 0, lv["process"]
assert lv["process"]["granted"] > 0, lv["process"]
assert r["charge"]["peak"] <= r["limit"], r["charge"]
PYEOF
echo "ok python_limit_report_$mode"
done
