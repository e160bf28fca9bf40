#!/bin/bash
# python_regrtest.sh — CPython's own regression tests (Debian's libpython3.11-testsuite) run on the
# drop-in: modules that stress containers, strings, the gc, threads and fork. They must all pass
# ("Tests result: SUCCESS"). With a second argument "malloc" they run with PYTHONMALLOC=malloc, so
# that every object comes from the drop-in rather than from pymalloc's arenas (a shorter list: the
# thread and fork modules mostly sleep, and they ran already in the default mode).
. "$(dirname "$0")/common.sh" "$@"
PY=/usr/bin/python3
need $PY
mode=${2:-pymalloc}
[ -d /usr/lib/python3.11/test/libregrtest ] ||
    fail "CPython's test suite is missing: install libpython3.11-testsuite"

if [ "$mode" = malloc ]; then
    export PYTHONMALLOC=malloc
    tests="test_list test_dict test_set test_bytes test_unicode test_re test_json test_gc test_weakref
           test_array test_memoryview test_deque test_long test_tuple test_pickle test_string test_slice"
else
    tests="test_list test_dict test_set test_bytes test_unicode test_re test_json test_threading test_fork1
           test_gc test_weakref test_array test_memoryview test_deque test_long test_tuple test_collections
           test_pickle test_queue test_thread test_userstring test_string test_slice"
fi
for t in $tests; do
    [ -e "/usr/lib/python3.11/test/$t.py" ] || [ -d "/usr/lib/python3.11/test/$t" ] ||
        fail "/usr/lib/python3.11/test/$t is missing: install libpython3.11-testsuite"
done

cd "$WORK" || fail "cd $WORK"
# regrtest's own temporary files go to $WORK; -u none: no network, no large resources; --timeout
# dumps the stacks (faulthandler) of a module that hangs instead of waiting for ctest's timeout.
# shellcheck disable=SC2086
TMPDIR=$WORK LD_PRELOAD=$HM_LIB HOSTMEM_OPTIONS=report=$WORK/report \
    $PY -m test -u none --timeout 300 $tests >"$WORK/out" 2>&1
rc=$?
tail -n 30 "$WORK/out"
if [ $rc != 0 ] || ! grep -q '^Tests result: SUCCESS' "$WORK/out"; then
    echo "--- failures ---" >&2
    grep -E '^(test_|FAIL|ERROR|Fatal|Traceback|Tests result|hostmem)' "$WORK/out" | head -n 60 >&2
    echo "reproduce: cd /tmp && ${PYTHONMALLOC:+PYTHONMALLOC=$PYTHONMALLOC }LD_PRELOAD=$HM_LIB $PY -m test -u none -v $tests" >&2
    fail "CPython's regression tests on the drop-in ($mode): exit $(describe $rc)"
fi
[ -s "$WORK/report" ] || fail "the drop-in wrote no report: was it loaded?"
echo "ok CPython regression tests ($mode): $(echo "$tests" | wc -w) modules pass on the drop-in"
