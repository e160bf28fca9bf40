#!/bin/sh
# fuzz.sh BUILD_DIR SECONDS [TARGET[:VAR=VALUE]...] — runs libFuzzer targets of BUILD_DIR/fuzz for
# SECONDS each, starting from the seed corpus (fuzz/corpus/NAME, never written) in a working corpus
# under BUILD_DIR/fuzz/work/NAME that grows from run to run. TARGET:VAR=VALUE runs it with that
# environment variable set (the process-wide choices: HOSTMEM_WRITE_WATCH=fallback,
# HOSTMEM_EXEC_VIEWS=dual). Without targets: every target, and the variants listed below. A crash
# input lands in BUILD_DIR/fuzz/artifacts/NAME/; the script then fails and says how to keep it.
# FUZZ_FLAGS adds libFuzzer flags (e.g. -seed=1 for CI).
set -e
build=$1; secs=$2; shift 2
src=$(cd "$(dirname "$0")/.." && pwd)
runs="$*"
if [ -z "$runs" ]; then
  for f in "$src"/fuzz/fuzz_*.c; do runs="$runs $(basename "$f" .c)"; done
  [ -f "$src/fuzz/fuzz_win32.c" ] && runs="$runs fuzz_win32:HOSTMEM_WRITE_WATCH=fallback"
  [ -f "$src/fuzz/fuzz_heap.c" ] && runs="$runs fuzz_heap:HOSTMEM_EXEC_VIEWS=dual"
fi
status=0; passed=0; failed=0
for run in $runs; do
  t=${run%%:*}; var=; [ "$run" != "$t" ] && var=${run#*:}
  name=${t#fuzz_}
  work="$build/fuzz/work/$name"; art="$build/fuzz/artifacts/$name"; log="$build/fuzz/$t${var:+.$var}.log"
  mkdir -p "$work" "$art"
  echo "== $t${var:+ with $var}: ${secs}s from fuzz/corpus/$name"
  # shellcheck disable=SC2086
  if ! env $var "$build/fuzz/$t" -max_total_time="$secs" -print_final_stats=1 -timeout=30 -rss_limit_mb=4096 \
        -artifact_prefix="$art/" $FUZZ_FLAGS "$work" "$src/fuzz/corpus/$name" >"$log" 2>&1; then
    tail -n 60 "$log"
    echo "!! $t failed${var:+ with $var}; its input is in $art/. To keep it as a regression test:"
    echo "!!   cp $art/<file> fuzz/corpus/$name/regress_<what>   (then 'make test' replays it)"
    status=1; failed=$((failed + 1))
  else
    passed=$((passed + 1))
  fi
  grep -E '^stat::number_of_executed_units|^stat::average_exec_per_sec' "$log" | sed 's/^stat::/   /' || true
done
echo "fuzz: $passed passed, $failed failed"
exit $status
