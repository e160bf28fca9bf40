#!/bin/sh
# cli.sh HOSTMEM RUNTIME SCRIPT HOG WORKDIR [REFERENCE...] — `hostmem host RUNTIME` as a user runs it:
#   SCRIPT succeeds with the output REFERENCE (the runtime's own command, e.g. lua5.4 SCRIPT) gives, or
#     with some output when no reference command is installed; the report goes to stderr;
#   HOG under limit=12M fails with status 1, the runtime's memory error and the report;
#   bad arguments are status 2 with a message; --report FILE (text and JSON) and --plot FILE.svg are written.
set -u
hostmem=$1 rt=$2 script=$3 hog=$4 work=$5
shift 5
mkdir -p "$work" && cd "$work" || exit 1
fail() { echo "FAIL: $*"; for f in out err; do [ -f $f ] && { echo "--- $f"; head -c 2000 $f; }; done; exit 1; }

"$hostmem" host "$rt" "$script" >out 2>err; rc=$?
[ $rc = 0 ] || fail "$rt $script: status $rc"
grep -q "^tenant $rt: limit" err || fail "no report on stderr"
[ -s out ] || fail "no output"
if [ $# -gt 0 ] && command -v "$1" >/dev/null; then
  "$@" >want 2>/dev/null || fail "the reference $* failed"
  cmp -s out want || { diff out want | head; fail "output differs from $*"; }
  echo "same output as $*"
fi

"$hostmem" host "$rt" -o limit=12M "$hog" >out 2>err; rc=$?
[ $rc = 1 ] || fail "$hog under limit=12M: status $rc, not 1"
case $rt in
  lua) grep -q "not enough memory" err || fail "no 'not enough memory'" ;;
  sqlite) grep -q "out of memory" err || fail "no 'out of memory'" ;;
esac
grep -q "^tenant $rt: limit 12.0 MiB" err || fail "no report after the failure"
grep -Eq "refused: task [1-9]" err || fail "the report counts no refusal"

for bad in "-o limit=lots $script" "--level urgent $script" "--frobnicate $script" "" "--report-format xml $script" \
           "--report /nonexistent/dir/r $script" "$work/missing-script"; do
  # shellcheck disable=SC2086
  "$hostmem" host "$rt" $bad >out 2>err; rc=$?
  if [ "$bad" = "$work/missing-script" ]; then
    [ $rc = 2 ] || fail "a missing script: status $rc, not 2"; grep -q "missing-script" err || fail "a missing script: no message naming it"
  else
    [ $rc = 2 ] || fail "'$bad': status $rc, not 2"
    [ -s err ] || fail "'$bad': no message"
  fi
done
"$hostmem" host "$rt" -o limit=lots "$script" 2>&1 | grep -q "limit" || fail "the bad option is not named"

rm -f r.txt r.json p.svg
"$hostmem" host "$rt" --report r.txt --plot p.svg "$script" >out 2>err || fail "--report/--plot: status $?"
grep -q "^tenant $rt: limit" r.txt || fail "--report: no report in the file"
grep -q "^tenant" err && fail "--report: the report went to stderr too"
grep -q "<svg" p.svg || fail "--plot: no SVG"
"$hostmem" host "$rt" --report r.json --report-format json "$script" >out 2>err || fail "json report: status $?"
grep -q "\"name\":\"$rt\"" r.json || fail "--report-format json: no JSON"
if [ "$rt" = lua ]; then # a script that ends the process itself: its status, and the report all the same
  echo "print('bye') os.exit(3)" >exit.lua
  "$hostmem" host lua exit.lua >out 2>err; rc=$?
  [ $rc = 3 ] && grep -q bye out && grep -q "^tenant lua: limit" err || fail "os.exit(3): status $rc, or no report"
  echo 'error(setmetatable({}, {__tostring = function() return "custom error" end}))' >obj.lua
  "$hostmem" host lua obj.lua >out 2>err; rc=$?
  [ $rc = 1 ] && grep -q "hostmem host lua: custom error" err || fail "an error object with __tostring: status $rc"
  echo 'error({})' >obj.lua
  "$hostmem" host lua obj.lua >out 2>err; rc=$?
  [ $rc = 1 ] && grep -q "error object is a table value" err || fail "an error table: status $rc"
fi
if [ "$rt" = sqlite ]; then # the database file of --db: written, and there for the next run
  rm -f t.db
  "$hostmem" host sqlite --db t.db "$script" >out 2>err || fail "--db t.db: status $?"
  "$hostmem" host sqlite --db t.db "$script" >out 2>err; rc=$?
  [ $rc = 1 ] && grep -q "already exists" err || fail "--db t.db a second time: status $rc, no 'already exists'"
  "$hostmem" host sqlite "$script" --db x.db >out 2>err; rc=$?
  [ $rc = 2 ] && grep -q "takes no arguments" err || fail "arguments after an SQL script: status $rc, not 2"
  "$hostmem" host sqlite --db >out 2>err; rc=$?
  [ $rc = 2 ] || fail "--db without a file: status $rc, not 2"
  # a script written for the sqlite3 shell: output dot-commands, .bail off over an error, .quit
  dot=$(dirname "$script")/dot.sql
  "$hostmem" host sqlite "$dot" >out 2>err; rc=$?
  [ $rc = 1 ] && grep -q "no such table" err || fail "dot.sql: status $rc (1 after its failed statement), or no message"
  if command -v sqlite3 >/dev/null; then
    sqlite3 :memory: ".read $dot" >want 2>/dev/null
    cmp -s out want || { diff out want | head; fail "dot.sql: output differs from sqlite3's"; }
    echo "dot-commands: same output as sqlite3"
    # .read: the file's statements run there, its .quit ends it alone; .exit N ends everything with N
    printf '.print before\n.read %s\n.print after\n' "$dot" >top.sql
    printf 'SELECT 1;\n.exit 3\nSELECT 2;\n' >exit3.sql
    printf '.read %s/exit3.sql\nSELECT 9;\n' "$PWD" >top3.sql
    for s in top.sql top3.sql; do
      "$hostmem" host sqlite $s >out 2>err; rc=$?
      sqlite3 :memory: ".read $s" >want 2>/dev/null; want_rc=$?
      [ $rc = $want_rc ] && cmp -s out want || { diff out want | head; fail "$s: status $rc (sqlite3: $want_rc) or output differs"; }
    done
    echo ".read, .quit and .exit: as sqlite3"
  fi
  printf '.frobnicate\nSELECT 1;\n' >unknown.sql
  "$hostmem" host sqlite unknown.sql >out 2>err; rc=$?
  [ $rc = 1 ] && grep -q "frobnicate" err && [ ! -s out ] || fail "an unknown dot-command: status $rc, not 1 before any statement"
fi
echo "ok: hostmem host $rt"
