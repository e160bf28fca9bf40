#!/bin/sh
# fuzz.sh BUILD_DIR SECONDS [TARGET...] — runs each libFuzzer target of BUILD_DIR/fuzz for SECONDS,
# starting from its seed corpus (fuzz/corpus/NAME, never written) in a working corpus under
# BUILD_DIR/fuzz/work/NAME that grows between runs. A crash input lands in
# BUILD_DIR/fuzz/artifacts/NAME/; the script then stops with failure and says how to keep it.
set -e
build=$1; secs=$2; shift 2
src=$(cd "$(dirname "$0")/.." && pwd)
targets="$*"
[ -n "$targets" ] || targets=$(cd "$src/fuzz" && ls fuzz_*.c | sed 's/\.c$//')
status=0
for t in $targets; do
  name=${t#fuzz_}
  work="$build/fuzz/work/$name"; art="$build/fuzz/artifacts/$name"
  mkdir -p "$work" "$art"
  echo "== $t: ${secs}s from fuzz/corpus/$name"
  if ! "$build/fuzz/$t" -max_total_time="$secs" -print_final_stats=1 -timeout=20 -rss_limit_mb=4096 \
        -artifact_prefix="$art/" "$work" "$src/fuzz/corpus/$name" >"$build/fuzz/$t.log" 2>&1; then
    tail -n 60 "$build/fuzz/$t.log"
    echo "!! $t failed; input(s) in $art/. Keep one as a regression test:" \
         "cp $art/<file> fuzz/corpus/$name/ (then 'make test' runs it)"
    status=1
  fi
  grep -E '^stat::number_of_executed_units|^stat::average_exec_per_sec|^#[0-9]+.*DONE' "$build/fuzz/$t.log" | sed "s/^/   /" || true
done
exit $status
