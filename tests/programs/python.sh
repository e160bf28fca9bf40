#!/bin/bash
# python.sh — CPython (Debian's /usr/bin/python3) runs a workload on glibc and on the drop-in, once with
# its own small-object allocator (pymalloc, the default: arenas it maps itself, larger blocks from
# malloc) and once with PYTHONMALLOC=malloc (every object from malloc); the output must be equal.
# The workload: dicts, lists, strings, a JSON round trip, re, big integers, a class hierarchy, gc
# cycles, 4 threads building structures, objects made on one thread and freed on another, os.fork
# (also while another thread allocates), a multiprocessing pool of 2 (fork), bytes/bytearray growth.
. "$(dirname "$0")/common.sh" "$@"
PY=/usr/bin/python3
need $PY

cat >"$WORK/workload.py" <<'PYEOF'
import array, collections, fractions, decimal, gc, hashlib, io, json, multiprocessing, os, pickle
import queue, random, re, struct, sys, threading, weakref, zlib
sys.set_int_max_str_digits(0)

def p(*a):
    print(*a)

# dicts: growth, deletion, re-insertion, nesting
d = {}
for i in range(200000):
    d["k%d" % i] = i * i
for i in range(0, 200000, 3):
    del d["k%d" % i]
for i in range(0, 200000, 6):
    d["k%d" % i] = -i
p("dict", len(d), sum(d.values()) % 1000003, list(d.items())[:3], list(d)[-2:])
nested = {i: {j: str(j) * (j % 4) for j in range(i % 17)} for i in range(20000)}
p("nested", sum(len(v) for v in nested.values()), sum(len(s) for v in nested.values() for s in v.values()))
del nested
p("counter", collections.Counter("abracadabra" * 1000).most_common(3))
od = collections.OrderedDict((str(i), i) for i in range(10000))
for i in range(0, 10000, 2):
    od.move_to_end(str(i))
p("ordereddict", list(od)[:4], list(od)[-4:])

# lists
random.seed(12345)
l = list(range(300000))
random.shuffle(l)
l.sort(key=lambda x: -x)
p("list", l[:5], len(l))
ll = [[i] * (i % 50) for i in range(20000)]
p("lists", sum(map(len, ll)))
while len(ll) > 10:
    del ll[len(ll) // 2:]
    ll.extend([[0] * 3] * 2)
p("shrink", len(ll))
del ll, l
dq = collections.deque()
for i in range(100000):
    dq.append(i)
    if i % 3 == 0:
        dq.popleft()
p("deque", len(dq), dq[0], dq[-1])
arr = array.array("d", (i / 7 for i in range(100000)))
p("array", len(arr), round(sum(arr), 6))

# strings
s = "".join(chr(0x41 + i % 26) + ("\u00e9" if i % 7 == 0 else "") + ("\U0001F600" if i % 1001 == 0 else "")
            for i in range(200000))
p("str", len(s), hashlib.sha256(s.encode()).hexdigest())
parts = s.split("A")
p("split", len(parts), max(map(len, parts)))
p("replace", hashlib.md5(s.replace("B", "bb").upper().encode("utf-16")).hexdigest())
buf = io.StringIO()
for i in range(50000):
    buf.write(f"{i:08x}|{i * 3.5:.3f}|{'x' * (i % 9)}\n")
p("stringio", hashlib.sha1(buf.getvalue().encode()).hexdigest())
acc = ""
for i in range(20000):
    acc += str(i)
p("concat", len(acc), acc[-10:])
p("format", "%s|%10.4f|%-8d|%r" % ("é", 3.14159, 42, "q"), "{:>20,}".format(10**15))
del s, parts, buf, acc

# JSON round trip
obj = {"list": [{"id": i, "name": "n%d" % i, "vals": [i / 3, -i, None, True], "s": "é\u2603" * (i % 5)}
                for i in range(20000)],
       "meta": {"x": 1.5e300, "nested": [[[[i]]] for i in range(100)]}}
txt = json.dumps(obj, sort_keys=True)
back = json.loads(txt)
p("json", len(txt), back == obj, hashlib.sha256(txt.encode()).hexdigest())
p("json-indent", len(json.dumps(back, indent=2, ensure_ascii=False)))
del obj, back, txt

# re
text = " ".join("word%d foo@bar%d.com 192.168.%d.%d" % (i, i, i % 256, (i * 7) % 256) for i in range(20000))
emails = re.findall(r"[\w.]+@[\w.]+\.com", text)
ips = re.findall(r"\b(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})\b", text)
p("re", len(emails), len(ips), emails[-1], re.sub(r"word(\d+)", lambda m: m.group(1)[::-1], text)[:60])
pats = [re.compile("x%dy(\\d+)z" % i) for i in range(700)]  # more than re's cache holds
p("re-compiled", sum(1 for pt in pats if pt.search("x7y123z x70y1z")))
p("re-split", len(re.split(r"\s+|\.", text)))
del text, emails, ips, pats

# big integers, decimals, fractions
f = 1
for i in range(2, 3000):
    f *= i
p("factorial", len(str(f)), f % (10**9 + 7))
p("pow", pow(3, 100000, 10**40), len(str(2**100000)))
fib = [0, 1]
for i in range(5000):
    fib.append(fib[-1] + fib[-2])
p("fib", fib[-1] % 99991, (fib[-1] * fib[-2]).bit_length(), divmod(fib[-1], fib[-300])[0] % 1000)
decimal.getcontext().prec = 200
p("decimal", str(decimal.Decimal(2).sqrt())[-20:])
p("fraction", sum(fractions.Fraction(1, i) for i in range(1, 300)).denominator % 1000003)
del f, fib

# a class hierarchy, dynamic classes, slots, properties
class Shape:
    count = 0
    def __init__(self, name):
        self.name = name
        Shape.count += 1
    def area(self):
        raise NotImplementedError
    def __repr__(self):
        return f"{type(self).__name__}({self.name}, {self.area()})"
class Rect(Shape):
    def __init__(self, w, h):
        super().__init__("rect")
        self.w, self.h = w, h
    def area(self):
        return self.w * self.h
class Square(Rect):
    def __init__(self, s):
        super().__init__(s, s)
        self.name = "square"
class Circle(Shape):
    def __init__(self, r):
        super().__init__("circle")
        self.r = r
    def area(self):
        return 3 * self.r * self.r
    @property
    def diameter(self):
        return 2 * self.r
class Point:
    __slots__ = ("x", "y")
    def __init__(self, x, y):
        self.x, self.y = x, y
shapes = [Rect(i, i + 1) if i % 3 == 0 else Square(i) if i % 3 == 1 else Circle(i) for i in range(30000)]
p("classes", Shape.count, sum(s.area() for s in shapes), repr(shapes[:4]),
  collections.Counter(type(s).__name__ for s in shapes).most_common(), [c.__name__ for c in Square.__mro__])
dyn = [type("T%d" % i, (Square if i % 2 else Circle,), {"extra": i, "area": lambda self, i=i: i}) for i in range(500)]
objs = [cls(3) for cls in dyn]
p("dynamic", sum(o.area() for o in objs), sum(o.extra for o in objs), objs[8].diameter)
pts = [Point(i, -i) for i in range(100000)]
p("slots", sum(pt.x - pt.y for pt in pts))
del shapes, dyn, objs, pts

# gc: cycles through objects, dicts and lists; weak references; finalizers
class Node:
    finalized = 0
    def __init__(self, v):
        self.v = v
        self.next = None
        self.other = None
class Fin(Node):
    def __del__(self):
        Node.finalized += 1
gc.collect()
for rnd in range(5):
    nodes = [(Fin if i % 100 == 0 else Node)(i) for i in range(20000)]
    for i, n in enumerate(nodes):
        n.next = nodes[(i + 1) % len(nodes)]
        n.other = {"back": n, "l": [n, nodes[i // 2]]}
    w = weakref.ref(nodes[0])
    wd = weakref.WeakValueDictionary((i, nodes[i]) for i in range(0, 20000, 7))
    del nodes, n
    c = gc.collect()
    p("gc", rnd, c >= 20000, w() is None, len(wd), Node.finalized)
p("gc-stats", len(gc.get_stats()), gc.isenabled())

# bytes and bytearray growth
ba = bytearray()
for i in range(100000):
    ba += struct.pack("<IQ", i, i * i)
p("bytearray", len(ba), zlib.crc32(ba))
b = b""
for i in range(5000):
    b += bytes([i % 256]) * (i % 13)
p("bytes", len(b), zlib.adler32(b))
g = bytearray(b"0123456789")
for i in range(20):
    g.extend(g)
p("doubling", len(g), zlib.crc32(g))
del g[::2]
g[100:200] = b"x" * 100000
p("slicing", len(g), zlib.crc32(g))
comp = zlib.compress(bytes(ba), 9)
p("zlib", len(comp) < len(ba), zlib.decompress(comp) == ba)
pk = pickle.dumps({"ba": ba, "b": b, "t": [(i, str(i)) for i in range(10000)]}, protocol=5)
p("pickle", len(pickle.loads(pk)["t"]), pickle.loads(pk)["ba"] == ba)
del ba, b, g, comp, pk

# threads: 4 build structures of their own; then objects made on one thread are freed on another
def worker(k, results):
    local = {}
    for i in range(30000):
        local.setdefault(i % 1000, []).append(str(i * k))
    lst = sorted(local.items())
    txt = json.dumps(lst)
    blob = bytearray()
    for v in lst:
        blob += ",".join(v[1]).encode()
    results[k] = (len(local), sum(len(v) for v in local.values()), hashlib.md5(txt.encode()).hexdigest(),
                  zlib.crc32(blob))
results = {}
ts = [threading.Thread(target=worker, args=(k, results)) for k in range(4)]
for t in ts:
    t.start()
for t in ts:
    t.join()
for k in range(4):
    p("thread", k, results[k])

q = queue.Queue(maxsize=64)
def producer(k):
    for i in range(2000):
        q.put([str(k)] * (i % 40) + [bytearray(i % 300)])
    q.put(None)
got = [0]
def consumer():
    done = 0
    while done < 2:
        item = q.get()
        if item is None:
            done += 1
        else:
            got[0] += len(item)
ths = [threading.Thread(target=producer, args=(k,)) for k in range(2)] + [threading.Thread(target=consumer)]
for t in ths:
    t.start()
for t in ths:
    t.join()
p("handoff", got[0])

# fork: the child allocates and prints; then a fork while another thread allocates
def child_work(tag):
    x = [str(i) * 3 for i in range(100000)]
    d = dict.fromkeys(x)
    print("child", tag, len(d), sum(map(len, x)))
    sys.stdout.flush()
    os._exit(7)
sys.stdout.flush()
pid = os.fork()
if pid == 0:
    child_work("plain")
p("child exit", os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]))

stop = threading.Event()
def churn():
    while not stop.is_set():
        junk = [bytearray(64) for _ in range(1000)]
        del junk
churner = threading.Thread(target=churn)
churner.start()
sys.stdout.flush()
for n in range(3):
    pid = os.fork()
    if pid == 0:
        child_work("threaded%d" % n)
    p("child exit", n, os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]))
    sys.stdout.flush()
stop.set()
churner.join()

# a multiprocessing pool of 2 (fork): the workers build and return structures
def pool_task(n):
    d = {i: str(i) * (n % 7) for i in range(n * 100)}
    return n, len(d), sum(len(v) for v in d.values())
if __name__ == "__main__":
    with multiprocessing.get_context("fork").Pool(2) as pool:
        p("pool", pool.map(pool_task, range(24)))
        p("pool-imap", sum(r[2] for r in pool.imap_unordered(pool_task, range(50, 60))))

gc.collect()
p("done")
PYEOF

cd "$WORK" || fail "cd $WORK"
# The same hash seed in every run: set iteration orders do not change between them.
compare python_pymalloc PYTHONHASHSEED=0 $PY "$WORK/workload.py"
compare python_malloc PYTHONHASHSEED=0 PYTHONMALLOC=malloc $PY "$WORK/workload.py"
