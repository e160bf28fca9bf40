# work.py — the Python workload of bench_dropin.sh: dict/list/str churn, then json dumps/loads of a
# structure of about 5 MB. `python3 work.py [SCALE]`; prints lines that depend only on SCALE (never on
# the allocator), which the script compares across contenders. Deterministic: a seeded random, and
# nothing printed depends on set or hash order.
import hashlib
import json
import random
import sys

scale = float(sys.argv[1]) if len(sys.argv) > 1 else 1.0
rnd = random.Random(42)


def churn(rounds):
    """Dicts of string keys to lists and tuples, replaced at random: a live set that keeps changing."""
    live = {}
    total = 0
    for i in range(rounds):
        k = "key-%d" % rnd.randrange(20000)
        n = rnd.randrange(1, 24)
        if k in live:
            total += len(live.pop(k)["items"])
        live[k] = {
            "name": k * (1 + n % 3),
            "items": [("x%d" % j, j * i) for j in range(n)],
            "tags": {"t%d" % (j % 7) for j in range(n)},
        }
        if i % 1000 == 0:  # string building: joins, formats, splits
            s = ",".join(v["name"] for v in list(live.values())[-200:])
            total += len(s.split(","))
    return total + len(live)


def document(n):
    """A JSON-shaped structure: records of strings, numbers, lists and nested dicts."""
    return {
        "records": [
            {
                "id": i,
                "name": "record-%06d" % i,
                "score": rnd.random(),
                "flags": [rnd.random() < 0.5 for _ in range(4)],
                "attrs": {"a%d" % j: "v%d" % rnd.randrange(1000) for j in range(rnd.randrange(2, 8))},
                "text": " ".join("w%d" % rnd.randrange(5000) for _ in range(rnd.randrange(3, 12))),
            }
            for i in range(n)
        ]
    }


c = churn(int(25000 * scale))
print("churn", c)
doc = document(int(22000 * scale))
digest = None
for _ in range(2):
    text = json.dumps(doc, sort_keys=True)
    back = json.loads(text)
    assert back == doc
    digest = hashlib.sha256(text.encode()).hexdigest()
print("json", len(text), digest)
