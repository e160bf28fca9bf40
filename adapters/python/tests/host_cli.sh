#!/bin/sh
# host_cli.sh HOSTMEM WORKDIR — `hostmem host python` end to end: a script that fits (status 0), one
# that runs out of its budget (MemoryError's traceback and the report, status 1), one that recovers,
# SystemExit, bad arguments (status 2 with a message), --report in text and JSON, --plot.
set -u
hm=$1 work=$2 dir=$(dirname "$0")/scripts
mkdir -p "$work"
fails=0 passes=0
# expect NAME STATUS PATTERN FILE -- COMMAND...: the status, and PATTERN (grep -E) in FILE (out|err|path)
expect() {
  name=$1 want=$2 pat=$3 where=$4
  shift 5
  "$@" >"$work/out" 2>"$work/err"
  got=$?
  f=$work/$where
  [ "$where" = out ] || [ "$where" = err ] || f=$where
  if [ "$got" -eq "$want" ] && grep -Eq -- "$pat" "$f"; then
    passes=$((passes + 1))
  else
    fails=$((fails + 1))
    echo "FAIL $name: status $got (want $want), /$pat/ in $where:"
    sed 's/^/  out: /' "$work/out"
    sed 's/^/  err: /' "$work/err"
  fi
}
tight=limit=32M,reserve.process=2M
expect fits 0 "ok \['a', 'b'\] 488890 True" out -- "$hm" host python "$dir/ok.py" a b
expect fits-report 0 "tenant python: limit" err -- "$hm" host python "$dir/ok.py"
expect hog 1 "^MemoryError" err -- "$hm" host python -o $tight "$dir/hog.py"
expect hog-traceback 1 "Traceback \(most recent call last\)" err -- "$hm" host python -o $tight "$dir/hog.py"
expect hog-report 1 "refused: task [1-9]" err -- "$hm" host python -o $tight "$dir/hog.py"
expect recover 0 "recovered after True 488890" out -- "$hm" host python -o $tight "$dir/recover.py"
expect fail 1 "ValueError: expected failure" err -- "$hm" host python "$dir/fail.py"
expect exit0 0 "before exit" out -- "$hm" host python "$dir/exit0.py"
expect no-collect 1 "collections asked 0" err -- "$hm" host python -o $tight --no-collect "$dir/hog.py"
expect bad-option 2 "option 'limit'" err -- "$hm" host python -o limit=lots "$dir/ok.py"
expect bad-arg 2 "unknown argument '--bogus'" err -- "$hm" host python --bogus "$dir/ok.py"
expect bad-level 2 "--level wants" err -- "$hm" host python --level high "$dir/ok.py"
expect no-script 2 "no script to run" err -- "$hm" host python
expect missing-script 2 "cannot read the script" err -- "$hm" host python "$work/nonexistent.py"
expect directory-script 2 "it is a directory" err -- "$hm" host python "$work"
# a budget too small for CPython's start-up: CPython's fatal error comes back as a message and status 1
expect tiny-budget 1 "could not start within the budget" err -- "$hm" host python -o limit=1M "$dir/ok.py"
expect tiny-budget-report 1 "tenant python: limit 1.0 MiB" err -- "$hm" host python -o limit=1M "$dir/ok.py"
rm -f "$work/report.txt" "$work/report.json" "$work/plot.svg"
expect report-file 1 "tenant python: limit 32.0 MiB" "$work/report.txt" -- "$hm" host python -o $tight --report "$work/report.txt" "$dir/hog.py"
expect report-json 0 '"name":"python"' "$work/report.json" -- "$hm" host python --report "$work/report.json" --report-format json "$dir/ok.py"
expect plot 0 "<svg" "$work/plot.svg" -- "$hm" host python --plot "$work/plot.svg" "$dir/ok.py"
echo "$passes passed, $fails failed"
[ "$fails" -eq 0 ]
