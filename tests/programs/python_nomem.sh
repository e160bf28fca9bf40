#!/bin/bash
# python_nomem.sh — CPython's failure injection on the drop-in: _testcapi.set_nomemory(start, stop)
# makes the interpreter's allocations number start..stop fail (0: every one from start on), which
# sends CPython down its error paths (objects half built and freed again, MemoryError raised through
# realloc, dict and list growth). The script loops over many windows, catches MemoryError, removes
# the hooks with _testcapi.remove_mem_hooks(), and goes on. The hooks count CPython's calls, not the
# allocator's, so the output is the same on glibc: it is compared, and the process must exit 0.
# (_testcapi is in Debian's libpython3.11-stdlib, which python3 depends on.)
. "$(dirname "$0")/common.sh" "$@"
PY=/usr/bin/python3
need $PY
$PY -c 'import _testcapi; _testcapi.set_nomemory; _testcapi.remove_mem_hooks' ||
    fail "$PY has no _testcapi.set_nomemory (it comes with libpython3.11-stdlib)"

cat >"$WORK/nomem.py" <<'PYEOF'
import _testcapi, gc, json, re, sys

class Base:
    def __init__(self, v):
        self.v = v
class Derived(Base):
    def __init__(self, v):
        super().__init__(v)
        self.tags = {"t%d" % v: v}

def containers(i):
    d = {str(k): [k] * 3 for k in range(60)}
    s = "-".join(d) * 2
    b = bytearray(s.encode()) + bytes(1000)
    l = []
    for k in range(300):
        l.append((k, str(k)))
    return len(s) + len(b) + sum(len(v) for v in d.values()) + len(l)

def growth(i):
    ba = bytearray()
    for k in range(60):
        ba += b"x" * (k * 5)
    l = list(range(200))
    l.extend(range(300))
    del l[100:400]
    st = {k * 7 for k in range(100)}
    return len(ba) + len(l) + len(st)

digits = re.compile(r"\d+")   # compiled before the loop: re's compiler loops forever when every
                              # allocation fails (CPython's, on glibc too: _optimize_charset)
def text(i):
    txt = json.dumps({"a": [1, 2.5, None, "é" * 10], "b": {"c": list(range(50))}})
    back = json.loads(txt)
    m = digits.findall(txt)
    u = ("\u2603" * 40 + "abc").upper().encode("utf-8").decode("utf-8")
    return len(txt) + len(back["b"]["c"]) + len(m) + len(u)

def objects(i):
    objs = [Derived(k) if k % 2 else Base(k) for k in range(200)]
    cyc = []
    for o in objs:
        o.peer = objs[-1]
        cyc.append(o)
    try:
        raise ValueError("x" * 100)
    except ValueError as e:
        msg = str(e)
    return sum(o.v for o in cyc) + len(msg)

def bigints(i):
    f = 1
    for k in range(2, 200):
        f *= k
    return len(str(f)) + (3 ** 500) % 1000

for fn in (containers, growth, text, objects, bigints):
    ok = err = 0
    first_ok = None
    for start in range(1, 3000, 11):
        for width in (1, 7, 0):
            try:
                _testcapi.set_nomemory(start, start + width if width else 0)
                try:
                    r = fn(start)
                finally:
                    _testcapi.remove_mem_hooks()
                ok += 1
                if first_ok is None:
                    first_ok = (start, width, r)
            except MemoryError:
                _testcapi.remove_mem_hooks()
                err += 1
    gc.collect()
    print(fn.__name__, "completed", ok, "MemoryError", err, "first completed", first_ok, "check", fn(0))
    sys.stdout.flush()
print("done")
PYEOF

cd "$WORK" || fail "cd $WORK"
compare python_nomem_pymalloc PYTHONHASHSEED=0 $PY "$WORK/nomem.py"
compare python_nomem_malloc PYTHONHASHSEED=0 PYTHONMALLOC=malloc $PY "$WORK/nomem.py"
