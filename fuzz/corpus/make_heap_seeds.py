#!/usr/bin/env python3
"""make_heap_seeds.py — writes the seed corpus of fuzz/fuzz_heap.c into fuzz/corpus/heap/.

Each seed is one run in the target's byte encoding (see LLVMFuzzerTestOneInput and run_op there):
a header (shape, the managers' option bytes, the heaps' flags), then operations. The seeds name the
scenarios the target is for (large blocks, hostile pointers, tight budgets, faults, two views,
another manager, ...); libFuzzer mutates from them. Run from anywhere: python3 make_heap_seeds.py
(deterministic: the random seeds use a fixed generator)."""
import os
import random

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "heap")

# limits[a % 12] in the target: 1M 2M 3M 4M 6M 8M 12M 16M 24M 32M 48M 64M; band = a // 12 % 4
LIMIT = {"1M": 0, "2M": 1, "3M": 2, "4M": 3, "6M": 4, "8M": 5, "12M": 6, "16M": 7, "24M": 8, "32M": 9, "48M": 10, "64M": 11}
TS, EXEC = 1, 2


def mgr(limit="64M", band=0, ra=0, rp=0, guard=False, va=None, waits=False):
    """The two option bytes of a manager. ra: 0, 1 (L/8) or 2 (L/32); rp: 0, 4 (L/4) or 8 (4 KiB);
    va: None, '64M' or '1G'; waits: wait.task=1ms (needs a >= 200 and both high bits of b)."""
    a = LIMIT[limit] + 12 * band
    if waits:
        a = LIMIT[limit] + 12 * 17  # (a >= 200)
    b = ra | rp | (16 if guard else 0)
    if va:
        b |= 32 | (64 if va == "64M" else 0)
    if waits:
        b |= 0xC0
    return bytes([a & 0xFF, b & 0xFF])


def header(heaps_a, heaps_b=None, a=None, b=None):
    """heaps_a: 1..4 flag values; heaps_b: None or 1..2 flag values."""
    shape = (len(heaps_a) - 1) | (4 if heaps_b else 0) | (8 if heaps_b and len(heaps_b) == 2 else 0)
    out = bytes([shape]) + (a or mgr()) + bytes(heaps_a)
    if heaps_b:
        out += (b or mgr("16M")) + bytes(heaps_b)
    return out


# ---- sizes (pick_size) --------------------------------------------------------------------------
def tiny(n):  # 0..255
    return bytes([0, n])


def small(n):  # 0..2048
    return bytes([5, n >> 8, n & 0xFF])


def medium(n):  # 0..32999
    return bytes([8, n >> 8, n & 0xFF])


def large_k(kib, extra=0):  # (kib % 1024 + 1) KiB + extra
    v = (kib - 1) % 1024
    return bytes([10, v >> 8, v & 0xFF, extra])


def mib(m, extra=0):  # (m % 9 + 1) MiB + extra
    return bytes([12, (m - 1) % 9, extra >> 8, extra & 0xFF])


HOSTILE = ["0", "1", "15", "16", "17", "4095", "4096", "4097", "16383", "32752", "32767", "32768", "32769",
           "65536", "1M", "SIZE_MAX", "SIZE_MAX-15", "SIZE_MAX-16", "SIZE_MAX-4095", "SIZE_MAX/2", "SIZE_MAX/2+1",
           "2^47", "2^47+1", "2^40", "2^32", "2^63", "64M+1", "256M+1", "limit+1", "limit"]


def hostile(name):
    return bytes([13, HOSTILE.index(name)])


# ---- operations (run_op) -------------------------------------------------------------------------
def lvl(v):  # 0, 1, 2; 3 and 0x7fffffff are invalid
    return bytes([{0: 0, 1: 1, 2: 2, 3: 9, "max": 10}[v]])


def alloc(heap, size, level=0):
    return bytes([0, heap]) + size + lvl(level)


def calloc(heap, count, size, level=0, overflow=None):
    # count < 64 and not a multiple of 8 (sel % 8 == 0 picks an overflowing pair: overflow 0..5);
    # size is clipped below 64 KiB
    assert overflow is not None or (count < 64 and count % 8)
    sel = overflow * 8 if overflow is not None else count
    return bytes([2, heap]) + size + lvl(level) + bytes([sel & 0xFF])


def aligned(heap, size, align_log2, level=0):  # 13..19: invalid alignments
    return bytes([3, heap]) + size + lvl(level) + bytes([align_log2])


def debug(heap, size, level=0, file=0, line=1):
    return bytes([4, heap]) + size + lvl(level) + bytes([file, line])


def big(heap, kind, m, extra=0, level=0, tail=b""):  # kind 0 alloc, 1 calloc, 2 aligned, 3 debug
    return bytes([5, heap, kind, m - 1, extra >> 16 & 0xFF, extra >> 8 & 0xFF, extra & 0xFF]) + lvl(level) + tail


def free(block):
    return bytes([6, block])


def realloc(block, size, level=0):
    return bytes([8, block]) + size + lvl(level)


def grow(block, steps, level=0):
    return bytes([9, block, steps]) + lvl(level)


def trim(heap):
    return bytes([10, heap])


# hostile_ptr kinds: 0 interior, 1 in segment, 2 large block pages/tail, 3 the block, 4 freed (ring),
# 5 wild, 6 stack/global/malloc/plain allocation, 7 writable alias, 8 debug header, 9 NULL
def hptr(kind, block=0, o=0, extra=b""):
    return bytes([kind, block, o]) + extra


def hfree(heap, ptr):
    return bytes([11, heap]) + ptr


def husable(heap, ptr):
    return bytes([12, heap]) + ptr


def hrealloc(heap, ptr, level=0):
    return bytes([13, heap]) + ptr + lvl(level)


def wrong(block, heap):
    return bytes([14, block, heap])


def free_all(heap):
    return bytes([15, heap])


def destroy(heap, new_flags):
    return bytes([16, heap, 0, new_flags])


def bad_create(sel):
    return bytes([17, sel])


def shutdown():
    return bytes([18, 0])


FAULT_KIND = {"mmap": 0, "munmap": 1, "mprotect": 2, "madvise": 3}
FAULT_OPS = {"alloc": 0, "calloc": 1, "aligned": 2, "debug": 3, "big": 4, "free": 5, "realloc": 6, "grow": 7,
             "trim": 8, "free_all": 9}


def fault(kind, nth, op, args):
    """args: the sub-operation's bytes without its opcode."""
    return bytes([23, FAULT_KIND[kind], nth - 1, FAULT_OPS[op]]) + args


THREAD_OPS = {"alloc": 0, "aligned": 1, "debug": 2, "big": 3, "free": 4, "realloc": 6, "grow": 7, "trim": 8,
              "hfree": 9, "wrong": 10}


def thread(*ops):
    """Operations on a new thread that then exits: (name, the operation's bytes without its opcode)."""
    assert 1 <= len(ops) <= 4
    return bytes([22, len(ops) - 1]) + b"".join(bytes([THREAD_OPS[n]]) + a for n, a in ops)


def seeds():
    s = {}
    H = header
    # each heap kind, small blocks of every class region, frees, reuse
    for name, flags in (("ts", TS), ("st", 0), ("exec", EXEC), ("exec_ts", TS | EXEC)):
        s["kind_" + name] = H([flags]) + alloc(0, tiny(0)) + alloc(0, tiny(24)) + alloc(0, small(1000)) + \
            alloc(0, medium(32768)) + alloc(0, medium(32767)) + alloc(0, large_k(40)) + free(1) + \
            alloc(0, tiny(24)) + realloc(0, small(2000)) + grow(2, 3) + calloc(0, 7, small(100)) + \
            debug(0, tiny(40)) + aligned(0, small(100), 12) + free(0) + free(0) + trim(0)
    # all four kinds in one manager, cross-heap frees (NOT_OWNER)
    s["four_heaps_wrong_owner"] = H([0, TS, EXEC, TS | EXEC]) + b"".join(alloc(h, tiny(16 + 16 * h)) for h in range(4)) + \
        b"".join(wrong(b, (b + 1) % 4) for b in range(4)) + b"".join(alloc(h, large_k(100)) for h in range(4)) + \
        b"".join(wrong(b, (b + 3) % 4) for b in range(4, 8)) + free(4) + free(4)
    # a second manager: its heaps' blocks freed through the first manager's heaps and back
    s["two_managers"] = H([TS, 0], [TS, EXEC]) + alloc(0, tiny(48)) + alloc(2, tiny(48)) + alloc(3, large_k(64)) + \
        alloc(1, small(700)) + wrong(0, 2) + wrong(1, 0) + wrong(2, 1) + wrong(3, 3) + \
        hfree(0, hptr(3, 1)) + hfree(2, hptr(3, 0)) + hfree(1, hptr(6, 0, 5))
    # large blocks: several MiB, realloc growth in place, large cache reuse, trim
    s["large_cycle"] = H([TS]) + big(0, 0, 3) + big(0, 0, 1, 4096) + free(0) + big(0, 0, 2) + grow(0, 20) + \
        grow(0, 200) + realloc(1, mib(5)) + free(1) + trim(0) + big(0, 0, 4) + free(0)
    s["large_cycle_st"] = H([0]) + big(0, 0, 2) + free(0) + big(0, 0, 3) + free(0) + big(0, 0, 1) + realloc(0, tiny(5)) + \
        realloc(0, mib(2)) + trim(0)
    s["large_exec"] = H([EXEC, TS | EXEC]) + big(0, 0, 2) + big(1, 0, 1) + grow(0, 50) + grow(1, 10) + free(0) + \
        big(0, 1, 1, 0, 0, bytes([1])) + husable(0, hptr(7, 0, 0)) + hfree(1, hptr(7, 1, 1)) + trim(1)
    s["large_debug"] = H([TS, 0]) + big(0, 3, 1, 100, 0, bytes([0, 3])) + big(1, 3, 2, 0, 2, bytes([1, 4])) + \
        hfree(0, hptr(8, 0, 0)) + hfree(1, hptr(8, 0, 1)) + realloc(0, mib(3)) + free(0) + free(0)
    # tight budgets: refusals at each level, memory state Low
    s["tight_1M"] = H([TS, 0], a=mgr("1M", ra=1, rp=4)) + alloc(0, tiny(64)) + alloc(1, small(900)) + \
        big(0, 0, 1, 0, 0) + big(0, 0, 1, 0, 2) + alloc(0, large_k(200), 1) + alloc(0, large_k(200), 2) + \
        free(0) + alloc(0, large_k(300), 2) + trim(0) + trim(1)
    s["tight_4M_levels"] = H([TS], a=mgr("4M", band=1, ra=1, rp=4)) + b"".join(
        alloc(0, large_k(500), lv) for lv in (0, 1, 2, 0, 1, 2)) + free(0) + free(0) + alloc(0, large_k(700), 2) + trim(0)
    s["tight_guard_va"] = H([0, TS], a=mgr("6M", band=2, guard=True, va="64M")) + big(0, 0, 2) + big(1, 0, 2) + \
        alloc(0, tiny(32)) + alloc(1, tiny(32)) + hfree(0, hptr(1, 2, 63)) + hfree(1, hptr(1, 3, 0)) + free(0) + trim(0)
    s["waits"] = H([TS], a=mgr("2M", waits=True)) + big(0, 0, 1) + big(0, 0, 1) + alloc(0, large_k(900), 2) + free(0)
    s["notify_bands"] = H([TS, 0], a=mgr("8M", band=2)) + big(0, 0, 5) + free(0) + big(1, 0, 3) + big(1, 0, 4) + \
        free(0) + free(0) + trim(0) + trim(1)
    # hostile sizes, levels, alignments
    hs = b""
    for i, name in enumerate(HOSTILE):
        hs += alloc(i % 2, hostile(name), i % 3)
    s["hostile_sizes"] = H([TS, 0]) + hs
    s["hostile_sizes_debug_calloc"] = H([TS, EXEC]) + b"".join(
        debug(i % 2, hostile(n), 2) for i, n in enumerate(("SIZE_MAX", "SIZE_MAX-15", "SIZE_MAX-16", "2^47", "0", "32752", "32767"))) + \
        b"".join(calloc(0, 1, tiny(1), 0, ov) for ov in range(6)) + calloc(1, 1, hostile("SIZE_MAX"))
    s["levels_invalid"] = H([TS, 0]) + alloc(0, tiny(10), 3) + alloc(1, tiny(10), "max") + aligned(0, tiny(8), 4, 3) + \
        debug(1, tiny(8), "max") + calloc(0, 3, tiny(5), 3) + alloc(0, tiny(10)) + realloc(0, tiny(8), 3) + \
        realloc(0, small(1500), "max") + realloc(0, large_k(50), 3)
    s["alignments"] = H([TS, 0]) + b"".join(aligned(i % 2, small(100 + 37 * i), i) for i in range(20)) + \
        b"".join(aligned(0, medium(30000), i) for i in (12, 11, 10)) + aligned(1, large_k(40), 12)
    # hostile pointers
    s["hostile_interior"] = H([TS, 0]) + alloc(0, small(300)) + alloc(1, small(300)) + alloc(0, tiny(16)) + alloc(0, tiny(16)) + \
        b"".join(hfree(h, hptr(0, b, o)) for h in (0, 1) for b in range(4) for o in range(16))
    s["hostile_segment"] = H([TS, 0]) + alloc(0, tiny(80)) + alloc(1, small(1200)) + \
        b"".join(hfree(b % 2, hptr(1, b % 2, o * 7, bytes([o]))) for b in range(2) for o in range(12)) + \
        b"".join(husable(0, hptr(1, 0, o, bytes([o % 8]))) for o in (0, 1, 62, 63))
    s["hostile_large_tail"] = H([TS, 0]) + big(0, 0, 1) + big(1, 0, 2) + alloc(0, large_k(64)) + \
        b"".join(hfree(h, hptr(2, b, o)) for h in (0, 1) for b in range(3) for o in range(0, 32, 3)) + \
        b"".join(hrealloc(0, hptr(2, b, o)) for b in range(3) for o in (0, 1, 2, 3))
    s["hostile_wild"] = H([TS, EXEC]) + alloc(0, tiny(32)) + b"".join(hfree(i % 2, hptr(5, 0, i)) for i in range(21)) + \
        b"".join(husable(0, hptr(5, 0, i)) for i in range(0, 21, 2)) + \
        hfree(0, hptr(5, 0, 19, bytes([0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xf0]))) + \
        hfree(1, hptr(5, 0, 20, bytes([0x00, 0x00, 0x7f, 0x12, 0x34, 0x56, 0x78, 0x90]))) + \
        b"".join(hrealloc(0, hptr(5, 0, i)) for i in range(0, 21, 3))
    s["hostile_foreign_memory"] = H([TS, 0], [0]) + alloc(0, tiny(32)) + \
        b"".join(hfree(h, hptr(6, 0, o)) for h in (0, 1, 2) for o in range(6)) + \
        b"".join(husable(1, hptr(6, 0, o)) for o in range(6)) + b"".join(hrealloc(2, hptr(6, 0, o)) for o in range(6)) + \
        hfree(0, hptr(9)) + hrealloc(1, hptr(9)) + husable(2, hptr(9))
    s["double_free_stale"] = H([TS, 0]) + alloc(0, tiny(48)) + alloc(1, tiny(48)) + big(0, 0, 1) + alloc(1, large_k(100)) + \
        free(0) + free(0) + free(0) + free(0) + b"".join(hfree(i % 2, hptr(4, 0, i, bytes([i]))) for i in range(8)) + \
        alloc(0, tiny(48)) + b"".join(hfree(i % 2, hptr(4, 0, i, bytes([4]))) for i in range(8)) + \
        b"".join(husable(0, hptr(4, 0, i, bytes([1]))) for i in range(4))
    s["debug_blocks"] = H([TS, 0, EXEC]) + b"".join(debug(i % 3, tiny(i * 9), i % 3, i % 6, i % 5) for i in range(12)) + \
        b"".join(hfree(i % 3, hptr(8, 0, i)) for i in range(6)) + realloc(0, small(1800)) + realloc(1, tiny(1)) + \
        free(2) + free(2) + debug(0, tiny(1), 0, 5, 250) + debug(1, tiny(2), 0, 2, 251)
    s["dual_alias"] = H([EXEC, TS | EXEC]) + alloc(0, small(500)) + alloc(1, tiny(64)) + debug(0, tiny(99)) + \
        b"".join(hfree(h, hptr(7, b, o)) for h in (0, 1) for b in range(3) for o in (0, 1)) + \
        b"".join(husable(h, hptr(7, b, 0)) for h in (0, 1) for b in range(3))
    # faults: each kind, small and large operations
    f = b""
    for kind in FAULT_KIND:
        for nth in (1, 2, 3):
            f += fault(kind, nth, "alloc", bytes([0]) + large_k(100 * nth) + lvl(0))
            f += fault(kind, nth, "free", bytes([0]))
    s["faults_large_ts"] = H([TS]) + big(0, 0, 1) + big(0, 0, 1) + f
    s["faults_large_st"] = H([0]) + big(0, 0, 1) + big(0, 0, 1) + f
    s["faults_large_exec"] = H([EXEC]) + big(0, 0, 1) + big(0, 0, 1) + f
    f2 = b""
    for kind in FAULT_KIND:
        for nth in (1, 2, 4):
            f2 += fault(kind, nth, "alloc", bytes([0]) + medium(20000 + nth) + lvl(1))
            f2 += fault(kind, nth, "debug", bytes([1]) + small(1000) + lvl(2) + bytes([0, 1]))
            f2 += fault(kind, nth, "trim", bytes([nth % 2]))
            f2 += fault(kind, nth, "free_all", bytes([0]))
    s["faults_small"] = H([TS, 0]) + f2
    s["faults_small_exec"] = H([EXEC, TS | EXEC]) + f2
    f3 = b""
    for kind in FAULT_KIND:
        for nth in (1, 2):
            f3 += fault(kind, nth, "realloc", bytes([0]) + mib(2) + lvl(2))
            f3 += fault(kind, nth, "grow", bytes([0, 30]) + lvl(2))
            f3 += fault(kind, nth, "big", bytes([0, 3, 0, 0, 0, 0]) + lvl(1) + bytes([0, 2]))
    s["faults_realloc"] = H([TS, 0]) + big(0, 0, 1) + big(1, 0, 1) + f3
    s["faults_low_state"] = H([TS, 0], a=mgr("4M", band=2)) + big(0, 0, 2) + big(1, 0, 1) + alloc(0, large_k(900), 2) + \
        fault("mprotect", 1, "free", bytes([0])) + fault("madvise", 1, "free", bytes([0])) + \
        fault("munmap", 1, "free", bytes([0])) + trim(0) + trim(1)
    # lifecycle: destroy and re-create with live blocks, shutdown of the second manager
    s["destroy_recreate"] = H([TS, 0]) + alloc(0, tiny(32)) + big(0, 0, 1) + debug(0, tiny(20)) + alloc(1, small(600)) + \
        destroy(0, EXEC) + hfree(1, hptr(4, 0, 0)) + hfree(1, hptr(4, 0, 1)) + alloc(0, tiny(32)) + destroy(1, TS) + \
        alloc(1, tiny(32)) + free_all(0) + free_all(1)
    s["shutdown_second"] = H([TS], [TS, 0]) + alloc(1, tiny(32)) + alloc(2, large_k(60)) + alloc(0, tiny(16)) + shutdown() + \
        free(0) + alloc(1, tiny(8)) + wrong(0, 0) + wrong(2, 1) + hfree(1, hptr(9)) + trim(2) + realloc(0, tiny(8)) + \
        realloc(1, tiny(8)) + destroy(1, 0) + shutdown() + free(2)
    s["bad_create"] = H([0]) + b"".join(bad_create(i) for i in range(6))
    # another thread: frees of this thread's blocks (its xfree stacks), blocks it leaves behind, its exit
    s["thread_cross_free"] = H([TS, TS]) + b"".join(alloc(i % 2, tiny(32)) for i in range(6)) + \
        thread(("free", bytes([0])), ("free", bytes([0])), ("alloc", bytes([0]) + tiny(32) + lvl(0)),
               ("alloc", bytes([1]) + large_k(300) + lvl(0))) + \
        b"".join(alloc(0, tiny(32)) for _ in range(4)) + free(0) + free(0) + free(0)
    s["thread_large_exit"] = H([TS, 0]) + big(0, 0, 1) + \
        thread(("big", bytes([0, 0, 0, 0, 0, 0]) + lvl(0)), ("free", bytes([1])), ("alloc", bytes([0]) + large_k(500) + lvl(1))) + \
        thread(("free", bytes([0])), ("hfree", bytes([1]) + hptr(4, 0, 0, bytes([1]))), ("wrong", bytes([0, 1]))) + \
        trim(0) + free_all(0) + trim(0)
    pages = H([TS]) + b"".join(alloc(0, tiny(48)) for _ in range(30))
    for k in range(3):
        pages += thread(*[("free", bytes([7 * k + i])) for i in range(4)])
    s["thread_pages"] = pages + b"".join(alloc(0, tiny(48)) for _ in range(8)) + free_all(0) + trim(0)
    # free lists and pages: many blocks of one class, freed in waves
    w = H([TS, 0])
    for rnd in range(3):
        w += b"".join(alloc(rnd % 2, tiny(32)) for _ in range(20)) + b"".join(free(i) for i in range(0, 30, 2))
    s["waves"] = w + free_all(0) + free_all(1) + trim(0) + trim(1)
    # random bodies after each kind of header
    rng = random.Random(2026)
    for i in range(8):
        hdr = H([rng.randrange(4) for _ in range(rng.randrange(1, 5))], [rng.randrange(4)] if i % 2 else None,
                a=bytes([rng.randrange(256), rng.randrange(256) & 0x3F]))
        s["random_%d" % i] = hdr + bytes(rng.randrange(256) for _ in range(rng.randrange(150, 400)))
    return s


def main():
    os.makedirs(OUT, exist_ok=True)
    for name in os.listdir(OUT):
        os.remove(os.path.join(OUT, name))
    total = 0
    for name, data in sorted(seeds().items()):
        with open(os.path.join(OUT, name), "wb") as f:
            f.write(data)
        total += len(data)
    print("%d seeds, %d bytes in %s" % (len(seeds()), total, OUT))


if __name__ == "__main__":
    main()
