#!/usr/bin/env python3
"""make_win32_seeds.py — writes the seed corpus of fuzz_win32 (fuzz/corpus/win32/): small sequences of
8-byte operations in the encoding that fuzz/fuzz_win32.c decodes (see its `op` comment), each aimed at
one area of SPEC 2 and 3.1-3.4. Run from anywhere: python3 fuzz/corpus/make_win32_seeds.py
The tables below are indexes into fuzz_win32.c's tables; keep them in step with it."""
import os

# op kinds: indexes into op_kinds[]
ALLOC, FREE, PROTECT, QUERY, WRITE, TOUCH, GETWW, RESETWW, MANAGER, PAGEOUT = 0, 4, 6, 8, 9, 11, 12, 13, 14, 15
# surfaces (sel bits 3-4): the Win32 names, hm_* on the default manager, hm_* on extra managers 1 and 2
W32, HM0, M1, M2 = 0, 1, 2, 3
# alloc_types[]
COMMIT, RESERVE, RC, RWW, RCWW, RTD, RCTD, RESET, UNDO = 0, 4, 6, 8, 9, 10, 11, 12, 14
CTD, RPHYS, T0, TD, RESET_C, UNDO_C, C_WW, WW_ONLY = 16, 17, 18, 19, 20, 21, 22, 23
RCPHYS, RLARGE, RCLARGE, R4MB, RROUND, T_DECOMMIT, T_RELC, RCUNK = 24, 25, 26, 27, 28, 29, 30, 31
# free_types[]
DECOMMIT, RELEASE, F0, FFREE, FDR, FRES, FCOM, FRELUNK = 0, 5, 10, 11, 12, 13, 14, 15
# prots[]
RW, RO, NA, X, XR, XRW, RWG, ROG, XRG, XRWG = 0, 3, 4, 5, 6, 7, 8, 9, 10, 11
RWNC, ROWC, XRWNC, RWWC, P0, WCOPY, XWCOPY, GNA = 12, 13, 14, 15, 16, 17, 18, 19
RWNCWC, NCNA, RWGNC, RORW, RW800, G, NC, WCNA, XG, RWGWC = 20, 21, 22, 23, 24, 25, 26, 27, 30, 31
# address modes (amode bits 0-3)
IN, BASE, END, TAIL, NEXTG, BELOW, NUL, LOW, ZONE, TOP, BEYOND, OTHER, FOREIGN = 0, 3, 4, 5, 6, 7, 8, 9, 10, 12, 13, 14, 15
# size modes (smode bits 0-3)
S0, PAGES, UNAL, TINY, WHOLE, TOEND, PAST, TOGRAN, SMAX, S62, WRAP, TOTOP, S40, GRANS = 0, 1, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15


def op(kind, slot=0, via=W32, level=None, amode=IN, bump=None, poff=0, smode=PAGES, sadj=0, tflag=0, prot=RW, cnt=1,
       size0=None):
    """One operation. level: hm_virtual_alloc_level's level (0-3) instead of hm_virtual_alloc. bump: an
    unaligned byte offset ((bump + 1) * 0x2A1). size0: for MEM_RELEASE, False asks for the size mode instead
    of size 0."""
    sel = slot | via << 3 | ((4 + level) << 5 if level is not None else 0)
    am = amode | ((0x10 | bump << 5) if bump is not None else 0)
    sm = smode | sadj << 4
    if size0 is False:
        sm |= 0x80
    return bytes([kind, sel, am, poff, sm, tflag, prot, cnt])


def zone(z, gran):
    """poff for address mode ZONE: zone z (0 chunk space, 1 mappings of their own, 2 across a chunk's end)."""
    return z + 3 * gran


def reserve(pages, slot=0, via=W32, t=RESERVE, prot=RW, **kw):
    return op(ALLOC, slot=slot, via=via, amode=NUL, smode=PAGES, cnt=pages, tflag=t, prot=prot, **kw)


def commit(slot, first, pages, prot=RW, via=W32, **kw):
    return op(ALLOC, slot=slot, via=via, amode=IN, poff=first, smode=PAGES, cnt=pages, tflag=COMMIT, prot=prot, **kw)


def release(slot, via=W32):
    return op(FREE, slot=slot, via=via, amode=BASE, tflag=RELEASE)


def decommit(slot, first, pages, via=W32):
    return op(FREE, slot=slot, via=via, amode=IN, poff=first, smode=PAGES, cnt=pages, tflag=DECOMMIT)


def protect(slot, first, pages, prot, via=W32, **kw):
    return op(PROTECT, slot=slot, via=via, amode=IN, poff=first, smode=PAGES, cnt=pages, prot=prot, **kw)


def write(slot, first, pages):
    return op(WRITE, slot=slot, poff=first, cnt=pages - 1)


def touch(slot, first, pages, offset=0):
    return op(TOUCH, slot=slot, poff=first, cnt=pages - 1, amode=offset)


def query(slot, amode=IN, poff=0, via=W32, tflag=0):
    return op(QUERY, slot=slot, via=via, amode=amode, poff=poff, tflag=tflag)


def getww(slot, flags=0, count=64, via=W32, amode=BASE, poff=0, smode=WHOLE, cnt_ptrs=0, bump=None):
    """cnt_ptrs: 6 passes lpAddresses NULL, 7 lpdwGranularity NULL; count 70: lpdwCount NULL."""
    tf = {0: 0, 1: 4, 'bad2': 6, 'bad': 7}[flags]
    return op(GETWW, slot=slot, via=via, amode=amode, bump=bump, poff=poff, smode=smode, tflag=tf, prot=cnt_ptrs,
              cnt=count)


def resetww(slot, first=0, pages=None, via=W32):
    if pages is None:
        return op(RESETWW, slot=slot, via=via, amode=BASE, smode=WHOLE)
    return op(RESETWW, slot=slot, via=via, amode=IN, poff=first, smode=PAGES, cnt=pages)


def pageout(slot, first, pages):
    return op(PAGEOUT, slot=slot, poff=first, cnt=pages - 1)


def manager(which, shutdown=False, again=False):
    return op(MANAGER, sel_slot(which), tflag=(1 if shutdown else 0) | (2 if again else 0))


def sel_slot(which):
    return which - 1  # sel bit 0 picks manager 1 or 2


SEEDS = {
    # SPEC 2.2-2.5 basics: reserve, commit, write, protect, re-commit keeps data, decommit zeroes, release
    "basic_lifecycle": [
        reserve(16), commit(0, 0, 5), write(0, 0, 5), protect(0, 1, 2, RO), touch(0, 0, 5),
        commit(0, 1, 3, RW), touch(0, 0, 5), decommit(0, 2, 2), commit(0, 2, 2, RW), touch(0, 0, 5),
        query(0, IN, 3), release(0)],
    "basic_hm": [
        reserve(8, via=HM0), commit(0, 0, 8, XRW, via=HM0), write(0, 0, 8), protect(0, 0, 8, XR, via=HM0),
        touch(0, 0, 8), protect(0, 2, 1, X, via=HM0), decommit(0, 0, 3, via=HM0), release(0, via=HM0)],
    "reserve_commit_all_prots": [reserve(4, slot=0, t=RC, prot=p) for p in (RW, RO, NA, X, XR)]
    + [touch(0, 0, 4), touch(1, 0, 4), touch(3, 0, 4), touch(4, 0, 4)],
    "size_rounding": [
        op(ALLOC, amode=NUL, smode=UNAL, sadj=3, cnt=3, tflag=RESERVE),
        op(ALLOC, amode=IN, bump=2, poff=0, smode=UNAL, sadj=1, cnt=2, tflag=COMMIT, prot=RW),
        op(ALLOC, amode=NUL, smode=TINY, tflag=RC),
        query(0, TAIL), query(1, END), query(0, NEXTG), write(0, 0, 3), touch(0, 0, 3),
        op(ALLOC, amode=TAIL, poff=1, smode=PAGES, cnt=1, tflag=COMMIT),
        op(PROTECT, amode=TAIL, smode=PAGES, cnt=1, prot=RO),
        op(FREE, amode=TAIL, smode=PAGES, cnt=1, tflag=DECOMMIT)],
    # SPEC 2.1: NOCACHE / WRITECOMBINE belong to the allocation
    "modifiers": [
        reserve(8, t=RC, prot=RWNC), protect(0, 0, 2, RO), protect(0, 2, 2, ROWC), query(0, IN, 1),
        reserve(4, slot=1, t=RESERVE, prot=RWWC), commit(1, 0, 2, RW), protect(1, 0, 1, XRWNC),
        protect(1, 1, 1, RWGNC), commit(1, 2, 2, RWNC)],
    # SPEC 2.6 guard pages
    "guard_pages": [
        reserve(8, t=RC, prot=RWG), query(0), touch(0, 0, 1), write(0, 1, 2), touch(0, 0, 4, offset=3),
        protect(0, 0, 4, XRG), touch(0, 2, 1), commit(0, 4, 2, ROG), touch(0, 4, 2), protect(0, 5, 2, RW),
        decommit(0, 6, 2), commit(0, 6, 2, RWG), write(0, 6, 2)],
    "guard_protect_old": [
        reserve(6), commit(0, 0, 6, XG), protect(0, 0, 3, RW), protect(0, 2, 2, RWG), touch(0, 3, 1),
        protect(0, 3, 1, RO), write(0, 0, 6)],
    # SPEC 2.6 write watch
    "write_watch": [
        reserve(16, t=RCWW), getww(0), write(0, 2, 3), getww(0), getww(0, flags=1), getww(0), write(0, 5, 4),
        resetww(0, 6, 2), getww(0), decommit(0, 5, 2), getww(0), commit(0, 5, 2, RW), write(0, 0, 1), getww(0)],
    "write_watch_count": [
        reserve(16, t=RCWW), write(0, 0, 10), getww(0, flags=1, count=1), getww(0, count=3),
        getww(0, flags=1, count=2), getww(0, count=0), getww(0, count=70), getww(0, cnt_ptrs=6),
        getww(0, cnt_ptrs=7), getww(0, flags='bad'), getww(0, flags='bad2'), getww(0)],
    "write_watch_ranges": [
        reserve(12, t=RWW), commit(0, 0, 12, RW), write(0, 0, 12), protect(0, 0, 6, RO),
        getww(0, amode=IN, poff=3, smode=PAGES), getww(0, amode=IN, poff=10, smode=PAST),
        getww(0, amode=IN, bump=1, poff=4, smode=UNAL), resetww(0, 11, 3), getww(0, smode=S0),
        op(RESETWW, amode=BASE, smode=S0), getww(0, amode=FOREIGN), op(RESETWW, amode=FOREIGN, smode=PAGES),
        protect(0, 0, 6, RW), write(0, 0, 3), getww(0, flags=1)],
    "write_watch_plain_alloc": [reserve(4, t=RC), getww(0), resetww(0), op(ALLOC, amode=NUL, tflag=C_WW, cnt=4),
                                op(ALLOC, amode=NUL, tflag=WW_ONLY, cnt=4)],
    "write_watch_guard": [reserve(8, t=RCWW), protect(0, 0, 4, RWG), write(0, 0, 2), getww(0), touch(0, 2, 2),
                          getww(0, flags=1), write(0, 3, 2), getww(0)],
    # SPEC 2.1 / 2.6 MEM_RESET and MEM_RESET_UNDO
    "reset_undo": [
        reserve(8, t=RC), write(0, 0, 8), op(ALLOC, amode=IN, poff=0, cnt=8, tflag=RESET, prot=RW), touch(0, 0, 8),
        op(ALLOC, amode=IN, poff=0, cnt=8, tflag=UNDO), touch(0, 0, 8),
        op(ALLOC, amode=IN, poff=2, cnt=2, tflag=RESET, prot=NA), protect(0, 2, 1, RO),
        op(ALLOC, amode=IN, poff=0, cnt=8, tflag=UNDO), decommit(0, 2, 1), op(ALLOC, amode=IN, poff=0, cnt=8, tflag=UNDO)],
    "reset_args": [
        reserve(8), commit(0, 0, 4), op(ALLOC, amode=IN, cnt=8, tflag=RESET), op(ALLOC, amode=IN, cnt=9, tflag=RESET),
        op(ALLOC, amode=IN, cnt=2, tflag=RESET_C), op(ALLOC, amode=IN, cnt=2, tflag=UNDO_C),
        op(ALLOC, amode=IN, cnt=2, tflag=RESET, prot=P0), op(ALLOC, amode=NUL, cnt=2, tflag=RESET),
        op(ALLOC, amode=TAIL, cnt=1, tflag=RESET), op(ALLOC, amode=IN, cnt=1, tflag=UNDO)],
    # memory pressure after MEM_RESET: dropped pages read zero, and MEM_RESET_UNDO must say so (8)
    "reset_pageout_undo": [
        reserve(8, t=RC), write(0, 0, 8), op(ALLOC, amode=IN, cnt=8, tflag=RESET), pageout(0, 0, 4), touch(0, 0, 8),
        op(ALLOC, amode=IN, cnt=8, tflag=UNDO), op(ALLOC, amode=IN, poff=4, cnt=4, tflag=UNDO), touch(0, 0, 8),
        write(0, 0, 2), op(ALLOC, amode=IN, cnt=2, tflag=UNDO), op(ALLOC, amode=IN, cnt=8, tflag=RESET),
        write(0, 2, 6), pageout(0, 0, 8), op(ALLOC, amode=IN, poff=2, cnt=6, tflag=UNDO)],
    "reset_pageout_watch": [
        reserve(8, t=RCWW), write(0, 0, 6), getww(0, flags=1), op(ALLOC, amode=IN, cnt=8, tflag=RESET), pageout(0, 0, 8),
        getww(0), write(0, 1, 1), pageout(0, 0, 8), getww(0), op(ALLOC, amode=IN, cnt=8, tflag=UNDO), getww(0)],
    "reset_guard_undo": [
        reserve(6, t=RC), write(0, 0, 6), protect(0, 0, 3, RWG), op(ALLOC, amode=IN, cnt=6, tflag=RESET),
        op(ALLOC, amode=IN, cnt=6, tflag=UNDO), op(ALLOC, amode=IN, poff=3, cnt=3, tflag=UNDO), touch(0, 0, 1),
        op(ALLOC, amode=IN, cnt=6, tflag=UNDO), commit(0, 1, 1, XRWG), op(ALLOC, amode=IN, cnt=6, tflag=UNDO)],
    "reset_watch_undo": [reserve(4, t=RCWW), write(0, 0, 4), getww(0, flags=1),
                         op(ALLOC, amode=IN, cnt=4, tflag=RESET), op(ALLOC, amode=IN, cnt=4, tflag=UNDO), getww(0)],
    # SPEC 2.2 explicit addresses, the zones of fuzz_win32.c
    "explicit_zone0": [
        op(ALLOC, amode=ZONE, poff=zone(0, 3), cnt=8, tflag=RESERVE),
        op(ALLOC, amode=ZONE, poff=zone(0, 4), bump=3, cnt=5, tflag=RC),
        op(ALLOC, amode=ZONE, poff=zone(0, 3), cnt=1, tflag=RESERVE),
        op(ALLOC, amode=TAIL, slot=0, cnt=1, tflag=RESERVE), op(ALLOC, amode=NEXTG, slot=0, cnt=16, tflag=RESERVE),
        op(ALLOC, amode=BELOW, slot=1, poff=0, smode=PAGES, cnt=2, tflag=RESERVE),
        commit(0, 4, 8), commit(0, 0, 8), query(0, NEXTG), release(1), release(0)],
    "explicit_zone1": [
        op(ALLOC, amode=ZONE, poff=zone(1, 2), cnt=12, tflag=RESERVE, prot=RO),
        op(ALLOC, amode=ZONE, poff=zone(1, 3), bump=0, cnt=20, tflag=RC, prot=RWNC),
        commit(0, 0, 12, RW), write(0, 0, 12), write(1, 0, 16), decommit(0, 4, 4), release(1),
        op(ALLOC, amode=ZONE, poff=zone(1, 3), cnt=80, tflag=RCWW), write(1, 0, 16), getww(1), release(0)],
    "explicit_zone2": [
        op(ALLOC, amode=ZONE, poff=zone(2, 14), cnt=48, tflag=RC), write(0, 0, 16), write(0, 32, 16),
        protect(0, 10, 30, RO), decommit(0, 0, 48), commit(0, 15, 2, XRW), release(0),
        op(ALLOC, amode=ZONE, poff=zone(2, 15), bump=5, smode=GRANS, cnt=1, tflag=RESERVE), commit(0, 0, 17)],
    "top_down": [reserve(4, t=RTD), reserve(4, slot=1, t=RCTD), op(ALLOC, amode=NUL, cnt=3, tflag=CTD),
                 op(ALLOC, amode=NEXTG, slot=1, cnt=1, tflag=RESERVE), op(ALLOC, amode=BELOW, slot=0, cnt=1, tflag=RESERVE),
                 op(ALLOC, amode=IN, cnt=4, tflag=CTD), query(1, TAIL)],
    # SPEC 2.3 VirtualFree rules
    "free_rules": [
        reserve(8), commit(0, 0, 8), op(FREE, amode=IN, poff=2, tflag=RELEASE), op(FREE, amode=BASE, tflag=RELEASE, size0=False, smode=TINY),
        op(FREE, amode=BASE, bump=0, tflag=RELEASE, size0=False, smode=S0),
        op(FREE, amode=IN, poff=2, smode=S0, tflag=DECOMMIT), op(FREE, amode=IN, poff=6, smode=PAST, tflag=DECOMMIT),
        op(FREE, amode=TAIL, smode=PAGES, tflag=DECOMMIT), op(FREE, amode=NUL, tflag=RELEASE),
        op(FREE, amode=BASE, tflag=F0), op(FREE, amode=BASE, tflag=FFREE), op(FREE, amode=BASE, tflag=FDR),
        op(FREE, amode=BASE, tflag=FRES), op(FREE, amode=BASE, tflag=FRELUNK), op(FREE, amode=FOREIGN, tflag=RELEASE),
        op(FREE, amode=IN, poff=1, smode=SMAX, tflag=DECOMMIT), op(FREE, amode=BASE, smode=S0, tflag=DECOMMIT),
        op(FREE, amode=BASE, bump=4, tflag=RELEASE)],
    # SPEC 2.4 VirtualProtect rules
    "protect_rules": [
        reserve(8), commit(0, 0, 4), protect(0, 2, 4, RO), protect(0, 0, 4, RO, tflag=15), protect(0, 0, 1, WCOPY),
        protect(0, 0, 1, GNA), protect(0, 0, 1, RWNCWC), protect(0, 0, 1, P0), op(PROTECT, amode=IN, smode=S0, prot=RO),
        op(PROTECT, amode=TAIL, smode=PAGES, prot=RO), op(PROTECT, amode=IN, poff=3, smode=PAST, prot=RO),
        op(PROTECT, amode=FOREIGN, prot=RO), op(PROTECT, amode=BEYOND, poff=1, prot=RO),
        op(PROTECT, amode=IN, poff=0, bump=6, smode=UNAL, sadj=2, cnt=2, prot=XR)],
    # SPEC 2.2 argument errors: 87
    "alloc_bad_types": [reserve(4)] + [op(ALLOC, amode=IN if t in (COMMIT, RESET, UNDO) else NUL, cnt=1, tflag=t)
                                       for t in (T0, TD, RESET_C, UNDO_C, C_WW, WW_ONLY, RCPHYS, RLARGE, RCLARGE, R4MB,
                                                 RROUND, T_DECOMMIT, T_RELC, RCUNK)],
    "alloc_bad_prots": [reserve(4)] + [op(ALLOC, amode=NUL, cnt=1, tflag=RESERVE, prot=p)
                                       for p in (P0, WCOPY, XWCOPY, GNA, RWNCWC, NCNA, RWGNC, RORW, RW800, G, NC, WCNA, RWGWC)]
    + [commit(0, 0, 1, p) for p in (P0, WCOPY, GNA, RWGWC)],
    "alloc_bad_sizes_addresses": [
        reserve(4), op(ALLOC, amode=NUL, smode=S0, tflag=RESERVE), op(ALLOC, amode=NUL, smode=SMAX, tflag=RESERVE),
        op(ALLOC, amode=NUL, smode=S62, tflag=RC), op(ALLOC, amode=NUL, smode=S40, tflag=RESERVE),
        op(ALLOC, amode=LOW, poff=3, tflag=RESERVE), op(ALLOC, amode=LOW, poff=1, bump=2, tflag=COMMIT),
        op(ALLOC, amode=TOP, poff=0, smode=PAGES, cnt=2, tflag=COMMIT), op(ALLOC, amode=TOP, poff=1, smode=TOTOP, tflag=COMMIT),
        op(ALLOC, amode=BEYOND, poff=1, tflag=RESERVE), op(ALLOC, amode=BEYOND, poff=2, tflag=COMMIT),
        op(ALLOC, amode=IN, smode=WRAP, tflag=COMMIT), op(ALLOC, amode=IN, smode=S40, tflag=COMMIT),
        op(ALLOC, amode=IN, smode=TOTOP, tflag=RESERVE), op(ALLOC, amode=FOREIGN, tflag=COMMIT),
        op(ALLOC, amode=NUL, bump=1, poff=1, tflag=RESERVE)],
    "physical": [reserve(4, t=RPHYS), commit(0, 0, 1), op(ALLOC, amode=NUL, cnt=2, tflag=RPHYS, prot=RO),
                 protect(0, 0, 1, RO), op(ALLOC, amode=IN, cnt=4, tflag=RESET), decommit(0, 0, 4), release(0)],
    # SPEC 2.5 VirtualQuery
    "query_variants": [
        reserve(6, t=RC), query(0, IN, 1), query(0, IN, 1, tflag=5), query(0, IN, 1, tflag=6), query(0, IN, 1, tflag=7),
        query(0, IN, 1, tflag=0x80), query(0, IN, 1, via=HM0, tflag=0x80), query(0, TAIL), query(0, NEXTG),
        query(0, BELOW), query(0, TOP, 0), query(0, BEYOND, 1), query(0, BEYOND, 2), query(0, FOREIGN), query(0, LOW, 2),
        query(0, NUL)],
    # SPEC 3.1-3.4: managers, ownership, budgets, lifecycle
    "owners": [
        reserve(8), reserve(8, slot=1, via=M1), reserve(4, slot=2, via=M2, t=RCWW),
        commit(0, 0, 2, via=M1), commit(1, 0, 2, via=W32), op(FREE, slot=1, amode=BASE, tflag=RELEASE),
        op(FREE, slot=0, via=M2, amode=BASE, tflag=RELEASE), protect(1, 0, 1, RO, via=HM0), query(1, IN, 0),
        query(0, IN, 0, via=M1), getww(2), resetww(2), getww(2, via=M2), op(ALLOC, slot=1, amode=IN, cnt=1, tflag=RESET),
        op(ALLOC, slot=2, via=M1, amode=IN, cnt=1, tflag=UNDO), commit(1, 0, 8, via=M1), write(1, 0, 8),
        release(1, via=M1), release(0)],
    "adjacent_owners": [
        op(ALLOC, via=M1, amode=ZONE, poff=zone(0, 6), cnt=16, tflag=RESERVE),
        op(ALLOC, via=M2, amode=ZONE, poff=zone(0, 7), cnt=16, tflag=RESERVE),
        op(ALLOC, amode=ZONE, poff=zone(0, 6), cnt=20, tflag=RESERVE),
        op(ALLOC, via=M1, slot=0, amode=IN, poff=12, smode=PAST, cnt=8, tflag=COMMIT),
        op(PROTECT, via=M1, slot=0, amode=IN, poff=15, smode=PAGES, cnt=2, prot=RO),
        query(0, NEXTG, 0, via=M1), query(0, NEXTG, 0, via=M2)],
    # manager 1: limit 256K, reserves 32K + 32K: levels admit up to 48, 56 and 64 pages
    "budget_m1_levels": [
        reserve(64, via=M1), commit(0, 0, 40, via=M1, level=0), commit(0, 40, 10, via=M1, level=0),
        commit(0, 40, 10, via=M1, level=1), commit(0, 50, 8, via=M1, level=1), commit(0, 50, 6, via=M1, level=1),
        commit(0, 56, 8, via=M1, level=2), decommit(0, 60, 4, via=M1), commit(0, 60, 1, via=M1),
        commit(0, 60, 8, via=M1), reserve(2, slot=1, via=M1, t=RC, level=2), reserve(2, slot=1, via=M1, t=RC, level=0)],
    "budget_m1": [
        reserve(32, via=M1), commit(0, 0, 32, via=M1), commit(0, 0, 16, via=M1, level=0), commit(0, 16, 16, via=M1, level=0),
        commit(0, 16, 8, via=M1, level=1), commit(0, 24, 8, via=M1, level=1), commit(0, 24, 8, via=M1, level=2),
        commit(0, 0, 1, via=M1, level=3), reserve(8, slot=1, via=M1, t=RC), decommit(0, 0, 8, via=M1),
        reserve(8, slot=1, via=M1, t=RC, level=2), op(ALLOC, via=M1, amode=NUL, smode=S40, tflag=RC)],
    "budget_m2_va": [reserve(64, via=M2), reserve(64, slot=1, via=M2), reserve(64, slot=2, via=M2),
                     op(ALLOC, via=M2, amode=NUL, cnt=1, tflag=RESERVE), release(1, via=M2), reserve(64, slot=1, via=M2, t=RC),
                     commit(0, 0, 64, via=M2), commit(2, 0, 64, via=M2)],
    "shutdown_destroy": [
        reserve(8, via=M1, t=RC), write(0, 0, 8), manager(1, shutdown=True), commit(0, 0, 1, via=M1),
        query(0, IN, 0, via=M1), query(0, IN, 0), op(FREE, via=M1, amode=BASE, tflag=RELEASE),
        getww(0, via=M1), resetww(0, via=M1), protect(0, 0, 1, RO, via=M1), commit(0, 0, 1, via=M1, level=3),
        touch(0, 0, 8), manager(1, again=True), manager(1), reserve(4, via=M1), manager(1), manager(2),
        reserve(4, slot=1, via=M2, t=RCWW), write(1, 0, 4), manager(2, shutdown=True), manager(2)],
    "destroy_zone1": [op(ALLOC, via=M2, amode=ZONE, poff=zone(1, 8), cnt=16, tflag=RC), reserve(4, slot=1, via=M2),
                      op(ALLOC, via=M2, amode=ZONE, poff=zone(2, 15), cnt=40, tflag=RESERVE), manager(2)],
    "many_slots": [reserve(64, slot=i, t=RC if i % 2 else RESERVE, prot=[RW, XR, RWG, NA, RO, RWNC][i]) for i in range(6)]
    + [reserve(2), write(1, 0, 16), protect(1, 0, 16, RO), decommit(1, 0, 64), release(3), reserve(64, slot=3, t=RCWW),
       write(3, 60, 4), getww(3)],
}


def main():
    out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "win32")
    os.makedirs(out, exist_ok=True)
    for name in os.listdir(out):
        if name.startswith("seed_"):
            os.remove(os.path.join(out, name))
    total = 0
    for name, ops in SEEDS.items():
        assert len(ops) <= 64, name
        data = b"".join(ops)
        with open(os.path.join(out, "seed_" + name), "wb") as f:
            f.write(data)
        total += len(data)
    print("%d seeds, %d bytes in %s" % (len(SEEDS), total, out))


if __name__ == "__main__":
    main()
