#!/bin/sh
# coverage.sh [BUILD_DIR] — line and branch coverage of src/ by the whole test suite (`make coverage`).
# Installs gcovr when missing (deps.sh), configures a gcc --coverage Debug build in BUILD_DIR
# (default build/coverage; no sanitizers, no benchmarks), runs every ctest test (the fuzz_corpus_*
# replays included) except `install`, which rebuilds the library uninstrumented in a scratch prefix
# (slow, and it adds nothing to this build's counters). Then it prints, for src/ only: the per-file
# line and branch tables, the summary, and the files under MIN_LINE % (default 80) line coverage;
# an HTML report goes to BUILD_DIR/html/index.html. The report comes first either way; a failing
# test then fails the script (the exit status of ctest).
# Environment: JOBS (parallel build and tests, default 2), MIN_LINE, COVERAGE_EXCLUDE (a ctest -E
# regex, default '^install$'; empty runs everything).
set -e
src=$(cd "$(dirname "$0")/.." && pwd)
cd "$src"
build=${1:-build/coverage}
jobs=${JOBS:-2}
min_line=${MIN_LINE:-80}
exclude=${COVERAGE_EXCLUDE-^install\$}

HM_EXTRA_PACKAGES="gcovr" ./scripts/deps.sh

# gcc, whatever CC says: gcov reads only gcc's notes. (A build dir configured with another compiler
# keeps it in its cache: then start afresh.)
if [ -f "$build/CMakeCache.txt" ] && ! grep -q '^CMAKE_C_COMPILER:[A-Z]*=.*gcc' "$build/CMakeCache.txt"; then
  echo "coverage.sh: $build was configured with another compiler; removing it"
  rm -rf "$build"
fi
# -fprofile-update=atomic: the tests run threads, and racing plain counter updates get lost, which
# leaves gcov with negative branch counts that gcovr cannot read.
CC=gcc cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Debug -DHM_SANITIZE= -DHM_FUZZ=OFF -DHM_BUILD_TESTS=ON \
  -DHM_BUILD_BENCH=OFF "-DCMAKE_C_FLAGS=--coverage -fprofile-update=atomic -DHM_COVERAGE" -DCMAKE_EXE_LINKER_FLAGS=--coverage -DCMAKE_SHARED_LINKER_FLAGS=--coverage \
  -DCMAKE_SHARED_LINKER_FLAGS=--coverage >/dev/null
cmake --build "$build" -j "$jobs"

# Counters of an earlier run would add up with this one's.
find "$build" -name '*.gcda' -delete

status=0
if [ -n "$exclude" ]; then
  ctest --test-dir "$build" --output-on-failure -j "$jobs" --timeout 900 -E "$exclude" || status=$?
else
  ctest --test-dir "$build" --output-on-failure -j "$jobs" --timeout 900 || status=$?
fi

# One gcov pass over this build's counters only (not every build dir under the root) into a
# tracefile; every report is made from it. gcov derives some branch counts by subtraction, and code
# left through a signal handler or a fork gives a few negative ones, which gcovr cannot parse: those
# lines are skipped (its warnings go to gcovr.log). No -j: gcovr 5.2 hangs when a worker fails.
trace="$build/coverage.json"
gcovr --root . --filter 'src/' --object-directory "$build" --exclude-unreachable-branches \
  --gcov-ignore-parse-errors --json "$trace" "$build" 2>"$build/gcovr.log"
skipped=$(grep -c 'UnknownLineType' "$build/gcovr.log" || true)
[ "$skipped" = 0 ] || echo "coverage.sh: gcovr skipped $skipped gcov line(s) it could not parse (negative counts; $build/gcovr.log)"
report() { gcovr --root . --filter 'src/' --add-tracefile "$trace" "$@"; }
echo
echo "== line coverage of src/"
report --txt
echo
echo "== branch coverage of src/"
report --txt --branches
mkdir -p "$build/html"
report --html-details "$build/html/index.html" --html-title "hostmem: coverage of src/"
echo
echo "== summary of src/"
report --json-summary "$build/summary.json" --print-summary
echo
echo "== files under ${min_line}% line coverage"
python3 - "$build/summary.json" "$min_line" <<'EOF'
import json, sys
data = json.load(open(sys.argv[1]))
low = [f for f in data["files"] if f["line_total"] and f["line_percent"] < float(sys.argv[2])]
for f in sorted(low, key=lambda f: f["line_percent"]):
    print("  %-28s %5.1f%% lines (%d of %d), %5.1f%% branches" % (
        f["filename"], f["line_percent"], f["line_covered"], f["line_total"], f.get("branch_percent") or 0.0))
if not low:
    print("  (none)")
EOF
echo
echo "HTML report: $build/html/index.html"
if [ "$status" != 0 ]; then
  echo "coverage.sh: some tests failed (ctest status $status): see above" >&2
fi
exit "$status"
