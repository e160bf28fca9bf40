#!/bin/sh
# run_cli.sh HOSTMEM PROGRAM — `hostmem run`: exit statuses, bad options, the report (text and JSON,
# the program's and its children's), --sites naming the program's own function, --plot.
set -u
hm=$1 prog=$2
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
fail=0
bad() { echo "FAIL: $*"; fail=1; }

"$hm" run -o limit=abc -- /bin/true 2>"$dir/err"; s=$?
[ $s -eq 2 ] || bad "bad option: status $s, not 2"
grep -q "'limit'" "$dir/err" || bad "bad option: the message does not name 'limit': $(cat "$dir/err")"
"$hm" run -o nosuch=1 -- /bin/true 2>"$dir/err"; s=$?
[ $s -eq 2 ] && grep -q "nosuch" "$dir/err" || bad "unknown key: status $s, message $(cat "$dir/err")"
"$hm" run --bogus -- /bin/true 2>/dev/null; s=$?
[ $s -eq 2 ] || bad "unknown argument: status $s"
"$hm" run -- /nonexistent/program 2>"$dir/err"; s=$?
[ $s -eq 127 ] || bad "missing program: status $s, not 127"
"$hm" run -- /bin/sh -c 'exit 7' 2>/dev/null; s=$?
[ $s -eq 7 ] || bad "exit 7: status $s"
"$hm" run -- /bin/sh -c 'kill -TERM $$' 2>/dev/null; s=$?
[ $s -eq 143 ] || bad "SIGTERM: status $s, not 143"

# text report on stderr, with the refusal counted
"$hm" run -o limit=64M -- "$prog" >"$dir/out" 2>"$dir/err"; s=$?
[ $s -eq 0 ] || bad "program: status $s"
grep -q "kept yes, big no" "$dir/out" || bad "program output: $(cat "$dir/out")"
grep -q "^hostmem report: run_prog" "$dir/err" || bad "no text report on stderr: $(cat "$dir/err")"
grep -Eq "process +[0-9]+ +[1-9]" "$dir/err" || bad "the text report shows no process-level refusal"

# JSON to a file; the child's report beside it, named with its PID
"$hm" run -o limit=64M --report "$dir/r.json" --report-format json -- "$prog" child >/dev/null 2>"$dir/err"; s=$?
[ $s -eq 0 ] || bad "json run: status $s: $(cat "$dir/err")"
/usr/bin/python3 - "$dir/r.json" <<'PY' || bad "JSON report: see above"
import json, sys
d = json.load(open(sys.argv[1]))
assert d["hostmem_report"] == 1 and d["program"] == "run_prog", d
assert d["limit"] == 64 << 20, d["limit"]
lv = {x["level"]: x for x in d["levels"]}
assert lv["process"]["refused"] >= 1, lv
assert d["charge"]["peak"] >= 1 << 20 and d["resident"]["peak"] > 0, d
assert any(h["name"] == "malloc" for h in d["heaps"]), d["heaps"]
PY
ls "$dir"/r.json.* >/dev/null 2>&1 || bad "no report of the child process (r.json.PID)"

# --sites: the program's own function, resolved
"$hm" run -o limit=64M --sites=4 -- "$prog" >/dev/null 2>"$dir/err"
grep -q "live blocks at exit by allocating stack" "$dir/err" || bad "--sites: no section: $(cat "$dir/err")"
grep -q "keep_a_mebibyte" "$dir/err" || bad "--sites: keep_a_mebibyte not named: $(cat "$dir/err")"
grep -q "1048576 bytes in 1 live blocks" "$dir/err" || bad "--sites: the 1 MiB block not counted"
"$hm" run -o limit=64M --sites --report "$dir/s.json" --report-format json -- "$prog" >/dev/null 2>&1
/usr/bin/python3 - "$dir/s.json" <<'PY' || bad "--sites JSON: see above"
import json, sys
d = json.load(open(sys.argv[1]))
top = d["sites"][0]
assert top["live_bytes"] == 1 << 20 and top["frames"][0]["function"] == "keep_a_mebibyte", top
PY

# --plot: an SVG with the refusal marked
"$hm" run -o limit=64M --plot "$dir/p.svg" -- "$prog" >/dev/null 2>&1
grep -q "<svg" "$dir/p.svg" 2>/dev/null || bad "--plot: no SVG written"
grep -q "process refusal" "$dir/p.svg" 2>/dev/null || bad "--plot: the refusal is not marked"

# stats=on from HOSTMEM_OPTIONS, without hostmem run
LD_PRELOAD=$(dirname "$hm")/libhostmem-malloc.so HOSTMEM_OPTIONS=stats=on "$prog" >/dev/null 2>"$dir/err"
grep -q "^hostmem report: run_prog" "$dir/err" || bad "stats=on: no report"

# a block of libc's own malloc freed through the drop-in: named as such
"$hm" run -o malloc.invalid_free=ignore -- "$prog" libc >/dev/null 2>"$dir/err"; s=$?
[ $s -eq 0 ] || bad "libc's block, ignored: status $s"
grep -q "brk heap, which hostmem never uses" "$dir/err" || bad "libc's block: not named: $(cat "$dir/err")"
"$hm" run -- "$prog" libc >/dev/null 2>&1; s=$?
[ $s -eq 134 ] || bad "libc's block, default: status $s, not 134 (SIGABRT)"

[ $fail -eq 0 ] && echo "hostmem run: all checks passed"
exit $fail
