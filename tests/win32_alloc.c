/* win32_alloc.c — VirtualAlloc conformance: roundings, states, reset/undo, every error of SPEC 2.2. */
#include <hostmem/win32.h>
#include <stdio.h>

#include "win32_testutil.h"

/* ---- helpers ---------------------------------------------------------------------------------- */

#define ALLOC_FAILS(addr, size, type, prot, err) alloc_fails((void *)(addr), (size), (type), (prot), (err), __LINE__)
/* SPEC 2.2 / 2.7.3: a failing VirtualAlloc returns NULL, sets the last error and changes nothing. */
static void alloc_fails(void *addr, SIZE_T size, DWORD type, DWORD prot, DWORD err, int line)
{
    tu_snapshot_take(&snap_before);
    SetLastError(POISON);
    void *r = VirtualAlloc(addr, size, type, prot);
    DWORD e = GetLastError();
    if (r != NULL) {
        if (addr == NULL || (type & MEM_RESERVE)) VirtualFree(r, 0, MEM_RELEASE);
        fail_msg("line %d: VirtualAlloc(%p, %#zx, %#x, %#x) = %p, expected NULL with last error %u", line, addr,
                 size, type, prot, r, err);
    }
    if (e != err)
        fail_msg("line %d: VirtualAlloc(%p, %#zx, %#x, %#x): last error %u (%#x), expected %u", line, addr, size,
                 type, prot, e, e, err);
    snap_check_unchanged(line);
}

/* ---- rounding --------------------------------------------------------------------------------- */

/* SPEC 2.2 rounding (address NULL): 64 KiB aligned start, size rounded up to a page. */
static void test_null_reserve_rounding(void **state)
{
    (void)state;
    char *p = ALLOC_OK(NULL, 5000, MEM_RESERVE, PAGE_READWRITE, NULL);
    assert_int_equal((uintptr_t)p % GRAN, 0);
    REGION(p, p, p, PAGE_READWRITE, 2 * PG, MEM_RESERVE, 0, MEM_PRIVATE);
    REGION(p + 8191, p + PG, p, PAGE_READWRITE, PG, MEM_RESERVE, 0, MEM_PRIVATE);
    /* the rest of the granule is not part of the allocation: it queries free */
    REGION(p + 2 * PG, p + 2 * PG, NULL, 0, ANY, MEM_FREE, PAGE_NOACCESS, 0);
    release(p);

    char *q = ALLOC_OK(NULL, 1, MEM_RESERVE | MEM_COMMIT, PAGE_READWRITE, NULL);
    assert_int_equal((uintptr_t)q % GRAN, 0);
    REGION(q, q, q, PAGE_READWRITE, PG, MEM_COMMIT, PAGE_READWRITE, MEM_PRIVATE);
    release(q);
}

/* SPEC 2.2 rounding, 2.7 trap 1: a NULL-address 4 KiB reservation blocks its whole 64 KiB granule, whose
 * tail queries MEM_FREE. */
static void test_null_4k_blocks_granule(void **state)
{
    (void)state;
    char *p = ALLOC_OK(NULL, PG, MEM_RESERVE, PAGE_READWRITE, NULL);
    assert_int_equal((uintptr_t)p % GRAN, 0);
    REGION(p, p, p, PAGE_READWRITE, PG, MEM_RESERVE, 0, MEM_PRIVATE);
    REGION(p + PG, p + PG, NULL, 0, ANY, MEM_FREE, PAGE_NOACCESS, 0);
    REGION(p + GRAN - 1, p + GRAN - PG, NULL, 0, ANY, MEM_FREE, PAGE_NOACCESS, 0);
    MEMORY_BASIC_INFORMATION m;
    assert_int_equal(VirtualQuery(p + PG, &m, sizeof m), sizeof m);
    assert_true(m.RegionSize >= GRAN - PG);

    /* a reservation in the tail rounds down to p's granule: taken */
    ALLOC_FAILS(p + PG, PG, MEM_RESERVE, PAGE_READWRITE, ERROR_INVALID_ADDRESS);
    ALLOC_FAILS(p + 0x8000, PG, MEM_RESERVE, PAGE_READWRITE, ERROR_INVALID_ADDRESS);
    ALLOC_FAILS(p + GRAN - PG, PG, MEM_RESERVE | MEM_COMMIT, PAGE_READWRITE, ERROR_INVALID_ADDRESS);
    /* and the tail is not reserved, so it cannot be committed */
    ALLOC_FAILS(p + PG, PG, MEM_COMMIT, PAGE_READWRITE, ERROR_INVALID_ADDRESS);
    ALLOC_FAILS(p, 2 * PG, MEM_COMMIT, PAGE_READWRITE, ERROR_INVALID_ADDRESS);

    /* allocations made meanwhile never land in p's granule */
    void *more[16];
    for (int i = 0; i < 16; i++) {
        more[i] = ALLOC_OK(NULL, PG, MEM_RESERVE, PAGE_READWRITE, NULL);
        assert_false((char *)more[i] >= p && (char *)more[i] < p + GRAN);
    }
    for (int i = 0; i < 16; i++) release(more[i]);
    release(p);
}

/* SPEC 2.2 rounding (address given, MEM_RESERVE): start rounded down to 64 KiB, size
 * round_up(address + size, 4K) - start; the returned pointer lies below the one passed. */
static void test_reserve_address_rounding(void **state)
{
    (void)state;
    char *x = free_range(4 * GRAN);
    char *r = ALLOC_OK(x + 0x1234, 0x1000, MEM_RESERVE, PAGE_READWRITE, x);
    assert_true(r < x + 0x1234);
    REGION(x, x, x, PAGE_READWRITE, 0x3000, MEM_RESERVE, 0, MEM_PRIVATE);
    REGION(x + 0x3000, x + 0x3000, NULL, 0, ANY, MEM_FREE, PAGE_NOACCESS, 0);
    release(x);

    /* crossing a granule boundary: [x, round_up(x + 0xFFFF + 2, 4K)) = 0x11000 bytes */
    r = ALLOC_OK(x + 0xFFFF, 2, MEM_RESERVE, PAGE_READONLY, x);
    REGION(x, x, x, PAGE_READONLY, 0x11000, MEM_RESERVE, 0, MEM_PRIVATE);
    REGION(x + 0x11000, x + 0x11000, NULL, 0, ANY, MEM_FREE, PAGE_NOACCESS, 0);
    release(x);

    /* an address in the second granule rounds down to that granule */
    r = ALLOC_OK(x + GRAN + 0x10, 0x10, MEM_RESERVE, PAGE_READWRITE, x + GRAN);
    REGION(x + GRAN, x + GRAN, x + GRAN, PAGE_READWRITE, PG, MEM_RESERVE, 0, MEM_PRIVATE);
    REGION(x, x, NULL, 0, GRAN, MEM_FREE, PAGE_NOACCESS, 0);
    release(x + GRAN);
}

/* SPEC 2.2 rounding (address given, commit only): start rounded down to a page, size
 * round_up(address + size, 4K) - start. */
static void test_commit_address_rounding(void **state)
{
    (void)state;
    char *p = ALLOC_OK(NULL, GRAN, MEM_RESERVE, PAGE_NOACCESS, NULL);
    char *r = ALLOC_OK(p + 0x1234, 0x1000, MEM_COMMIT, PAGE_READWRITE, p + 0x1000);
    assert_true(r < p + 0x1234);
    REGION(p, p, p, PAGE_NOACCESS, PG, MEM_RESERVE, 0, MEM_PRIVATE);
    REGION(p + 0x1000, p + 0x1000, p, PAGE_NOACCESS, 0x2000, MEM_COMMIT, PAGE_READWRITE, MEM_PRIVATE);
    REGION(p + 0x3000, p + 0x3000, p, PAGE_NOACCESS, GRAN - 0x3000, MEM_RESERVE, 0, MEM_PRIVATE);

    /* 2 bytes straddling a page boundary commit two pages */
    ALLOC_OK(p + 0x5FFF, 2, MEM_COMMIT, PAGE_READONLY, p + 0x5000);
    REGION(p + 0x4000, p + 0x4000, p, PAGE_NOACCESS, PG, MEM_RESERVE, 0, MEM_PRIVATE);
    REGION(p + 0x5000, p + 0x5000, p, PAGE_NOACCESS, 2 * PG, MEM_COMMIT, PAGE_READONLY, MEM_PRIVATE);
    REGION(p + 0x7000, p + 0x7000, p, PAGE_NOACCESS, GRAN - 0x7000, MEM_RESERVE, 0, MEM_PRIVATE);

    /* the last byte of the allocation */
    ALLOC_OK(p + GRAN - 1, 1, MEM_COMMIT, PAGE_READWRITE, p + GRAN - PG);
    REGION(p + GRAN - PG, p + GRAN - PG, p, PAGE_NOACCESS, PG, MEM_COMMIT, PAGE_READWRITE, MEM_PRIVATE);
    release(p);
}

/* ---- reserve + commit, recommit, zero ---------------------------------------------------------- */

/* SPEC 2.2: MEM_COMMIT|MEM_RESERVE reserves and commits in one step (NULL address); MEM_COMMIT alone with
 * a NULL address does the same (Windows). Committed memory reads zero (SPEC 2.1 MEM_COMMIT). */
static void test_reserve_commit_null(void **state)
{
    (void)state;
    char *p = ALLOC_OK(NULL, 3 * PG, MEM_COMMIT | MEM_RESERVE, PAGE_READWRITE, NULL);
    assert_int_equal((uintptr_t)p % GRAN, 0);
    REGION(p, p, p, PAGE_READWRITE, 3 * PG, MEM_COMMIT, PAGE_READWRITE, MEM_PRIVATE);
    assert_zero(p, 3 * PG);
    fill(p, 3 * PG);
    assert_pattern(p, 3 * PG);
    release(p);

    char *q = ALLOC_OK(NULL, 2 * PG, MEM_COMMIT, PAGE_EXECUTE_READ, NULL);
    assert_int_equal((uintptr_t)q % GRAN, 0);
    REGION(q, q, q, PAGE_EXECUTE_READ, 2 * PG, MEM_COMMIT, PAGE_EXECUTE_READ, MEM_PRIVATE);
    assert_zero(q, 2 * PG);
    assert_int_equal(tu_writable(q), 0);
    release(q);
}

/* SPEC 2.2: MEM_COMMIT|MEM_RESERVE with an address: the range (rounded as a reservation) must be free;
 * it is reserved and committed in one step. */
static void test_reserve_commit_address(void **state)
{
    (void)state;
    char *x = free_range(2 * GRAN);
    char *r = ALLOC_OK(x + 0x2000, 0x3000, MEM_COMMIT | MEM_RESERVE, PAGE_READWRITE, x);
    (void)r;
    REGION(x, x, x, PAGE_READWRITE, 0x5000, MEM_COMMIT, PAGE_READWRITE, MEM_PRIVATE);
    REGION(x + 0x5000, x + 0x5000, NULL, 0, ANY, MEM_FREE, PAGE_NOACCESS, 0);
    assert_zero(x, 0x5000);
    fill(x, 0x5000);
    /* the range is no longer free */
    ALLOC_FAILS(x + 0x1000, 0x1000, MEM_COMMIT | MEM_RESERVE, PAGE_READWRITE, ERROR_INVALID_ADDRESS);
    ALLOC_FAILS(x, GRAN, MEM_COMMIT | MEM_RESERVE, PAGE_READWRITE, ERROR_INVALID_ADDRESS);
    assert_pattern(x, 0x5000);
    release(x);
}

/* SPEC 2.1 MEM_COMMIT, 2.7 trap 2: committing a committed page keeps its data and applies the new
 * protection; committing reserved pages gives zero-filled pages. */
static void test_recommit_keeps_data(void **state)
{
    (void)state;
    char *p = ALLOC_OK(NULL, GRAN, MEM_RESERVE, PAGE_READWRITE, NULL);
    ALLOC_OK(p, 2 * PG, MEM_COMMIT, PAGE_READWRITE, p);
    fill(p, 2 * PG);
    ALLOC_OK(p, 2 * PG, MEM_COMMIT, PAGE_READONLY, p);
    assert_pattern(p, 2 * PG);
    REGION(p, p, p, PAGE_READWRITE, 2 * PG, MEM_COMMIT, PAGE_READONLY, MEM_PRIVATE);
    assert_int_equal(tu_readable(p), 1);
    assert_int_equal(tu_writable(p), 0);
    assert_int_equal(tu_writable(p + PG), 0);

    /* one committed page and two reserved ones in one call */
    ALLOC_OK(p + PG, 3 * PG, MEM_COMMIT, PAGE_READWRITE, p + PG);
    REGION(p, p, p, PAGE_READWRITE, PG, MEM_COMMIT, PAGE_READONLY, MEM_PRIVATE);
    REGION(p + PG, p + PG, p, PAGE_READWRITE, 3 * PG, MEM_COMMIT, PAGE_READWRITE, MEM_PRIVATE);
    assert_pattern(p, 2 * PG);
    assert_zero(p + 2 * PG, 2 * PG);
    assert_int_equal(tu_writable(p + PG), 1);
    assert_int_equal(tu_writable(p + 3 * PG), 1);

    /* recommit to NOACCESS, then back: data still there */
    ALLOC_OK(p, 2 * PG, MEM_COMMIT, PAGE_NOACCESS, p);
    REGION(p, p, p, PAGE_READWRITE, 2 * PG, MEM_COMMIT, PAGE_NOACCESS, MEM_PRIVATE);
    assert_int_equal(tu_readable(p), 0);
    ALLOC_OK(p, 2 * PG, MEM_COMMIT, PAGE_READWRITE, p);
    assert_pattern(p, 2 * PG);
    release(p);
}

/* SPEC 2.1 MEM_COMMIT: committed pages read zero until written (whole 64 KiB, every byte). */
static void test_committed_reads_zero(void **state)
{
    (void)state;
    char *p = ALLOC_OK(NULL, 4 * GRAN, MEM_RESERVE, PAGE_READWRITE, NULL);
    ALLOC_OK(p, 4 * GRAN, MEM_COMMIT, PAGE_READWRITE, p);
    assert_zero(p, 4 * GRAN);
    release(p);
    /* the same address space again (it was just given back) reads zero too */
    char *q = ALLOC_OK(NULL, 4 * GRAN, MEM_RESERVE | MEM_COMMIT, PAGE_READWRITE, NULL);
    assert_zero(q, 4 * GRAN);
    fill(q, 4 * GRAN);
    release(q);
    char *s = ALLOC_OK(NULL, 4 * GRAN, MEM_RESERVE | MEM_COMMIT, PAGE_READWRITE, NULL);
    assert_zero(s, 4 * GRAN);
    release(s);
}

/* ---- 487: state errors -------------------------------------------------------------------------- */

/* SPEC 2.1 MEM_COMMIT, 2.2 table, 2.7 trap 5: with an address and no MEM_RESERVE the whole range must be
 * reserved inside ONE allocation, else 487 and nothing changes. */
static void test_commit_requires_one_allocation(void **state)
{
    (void)state;
    /* free memory */
    char *f = free_range(GRAN);
    ALLOC_FAILS(f, PG, MEM_COMMIT, PAGE_READWRITE, ERROR_INVALID_ADDRESS);
    ALLOC_FAILS(f + 0x1234, 10, MEM_COMMIT, PAGE_READWRITE, ERROR_INVALID_ADDRESS);

    /* running past the end of an allocation */
    char *p = ALLOC_OK(NULL, GRAN, MEM_RESERVE, PAGE_READWRITE, NULL);
    ALLOC_OK(p, PG, MEM_COMMIT, PAGE_READWRITE, p);
    fill(p, PG);
    ALLOC_FAILS(p + GRAN - PG, 2 * PG, MEM_COMMIT, PAGE_READWRITE, ERROR_INVALID_ADDRESS);
    ALLOC_FAILS(p, GRAN + 1, MEM_COMMIT, PAGE_READWRITE, ERROR_INVALID_ADDRESS);
    ALLOC_FAILS(p + GRAN, PG, MEM_COMMIT, PAGE_READWRITE, ERROR_INVALID_ADDRESS);
    assert_pattern(p, PG);
    release(p);

    /* into the unusable tail of a short allocation */
    char *s = ALLOC_OK(NULL, 2 * PG, MEM_RESERVE, PAGE_READWRITE, NULL);
    ALLOC_FAILS(s + PG, 2 * PG, MEM_COMMIT, PAGE_READWRITE, ERROR_INVALID_ADDRESS);
    ALLOC_FAILS(s + 2 * PG, PG, MEM_COMMIT, PAGE_READWRITE, ERROR_INVALID_ADDRESS);
    release(s);

    /* spanning two adjacent allocations */
    char *x = free_range(2 * GRAN);
    ALLOC_OK(x, GRAN, MEM_RESERVE, PAGE_READWRITE, x);
    ALLOC_OK(x + GRAN, GRAN, MEM_RESERVE, PAGE_READWRITE, x + GRAN);
    ALLOC_FAILS(x + GRAN - PG, 2 * PG, MEM_COMMIT, PAGE_READWRITE, ERROR_INVALID_ADDRESS);
    ALLOC_FAILS(x, 2 * GRAN, MEM_COMMIT, PAGE_READWRITE, ERROR_INVALID_ADDRESS);
    ALLOC_FAILS(x + GRAN - 1, 2, MEM_COMMIT, PAGE_READWRITE, ERROR_INVALID_ADDRESS);
    /* each alone is fine */
    ALLOC_OK(x + GRAN - PG, PG, MEM_COMMIT, PAGE_READWRITE, x + GRAN - PG);
    ALLOC_OK(x + GRAN, PG, MEM_COMMIT, PAGE_READWRITE, x + GRAN);
    /* both edge pages committed, the range still spans two allocations */
    ALLOC_FAILS(x + GRAN - PG, 2 * PG, MEM_COMMIT, PAGE_READONLY, ERROR_INVALID_ADDRESS);
    release(x);
    release(x + GRAN);
}

/* SPEC 2.1 MEM_RESERVE, 2.2 table: a reservation may not overlap any allocation: 487, nothing changes. */
static void test_reserve_overlap(void **state)
{
    (void)state;
    char *x = free_range(4 * GRAN);
    ALLOC_OK(x + GRAN, GRAN, MEM_RESERVE, PAGE_READWRITE, x + GRAN);
    ALLOC_FAILS(x + GRAN, GRAN, MEM_RESERVE, PAGE_READWRITE, ERROR_INVALID_ADDRESS);
    ALLOC_FAILS(x + GRAN + 0x8000, PG, MEM_RESERVE, PAGE_READWRITE, ERROR_INVALID_ADDRESS);
    ALLOC_FAILS(x, 2 * GRAN, MEM_RESERVE, PAGE_READWRITE, ERROR_INVALID_ADDRESS);
    ALLOC_FAILS(x, GRAN + 1, MEM_RESERVE, PAGE_READWRITE, ERROR_INVALID_ADDRESS);
    ALLOC_FAILS(x, 4 * GRAN, MEM_RESERVE, PAGE_READWRITE, ERROR_INVALID_ADDRESS);
    ALLOC_FAILS(x + GRAN + GRAN - 1, 2, MEM_RESERVE, PAGE_READWRITE, ERROR_INVALID_ADDRESS);
    ALLOC_FAILS(x, 3 * GRAN, MEM_RESERVE | MEM_COMMIT, PAGE_READWRITE, ERROR_INVALID_ADDRESS);
    ALLOC_FAILS(x + GRAN, PG, MEM_RESERVE | MEM_COMMIT, PAGE_READWRITE, ERROR_INVALID_ADDRESS);
    /* the neighbours are still free: adjacent reservations succeed */
    ALLOC_OK(x, GRAN, MEM_RESERVE, PAGE_READWRITE, x);
    ALLOC_OK(x + 2 * GRAN, GRAN, MEM_RESERVE | MEM_COMMIT, PAGE_READWRITE, x + 2 * GRAN);
    release(x);
    release(x + GRAN);
    release(x + 2 * GRAN);
}

/* ---- 87: type and protection ------------------------------------------------------------------- */

/* SPEC 2.1 (unknown bits, none of COMMIT/RESERVE/RESET/RESET_UNDO), 2.2 table: bad type is 87. */
static void test_invalid_type(void **state)
{
    (void)state;
    char *p = ALLOC_OK(NULL, GRAN, MEM_RESERVE, PAGE_READWRITE, NULL);
    ALLOC_OK(p, PG, MEM_COMMIT, PAGE_READWRITE, p);
    static const DWORD none[] = {0, MEM_TOP_DOWN, MEM_LARGE_PAGES, MEM_PHYSICAL, MEM_TOP_DOWN | MEM_LARGE_PAGES,
                                 MEM_DECOMMIT, MEM_RELEASE, MEM_FREE};
    for (size_t i = 0; i < sizeof none / sizeof none[0]; i++) {
        ALLOC_FAILS(NULL, GRAN, none[i], PAGE_READWRITE, ERROR_INVALID_PARAMETER);
        ALLOC_FAILS(p, PG, none[i], PAGE_READWRITE, ERROR_INVALID_PARAMETER);
    }
    /* unknown bits next to valid ones; MEM_DECOMMIT / MEM_RELEASE are free types, not allocation types */
    static const DWORD bad_bits[] = {0x1, 0x2, 0x10, 0x800, MEM_DECOMMIT, MEM_RELEASE, MEM_FREE, MEM_PRIVATE,
                                     MEM_MAPPED, 0x4000000, 0x80000000u};
    for (size_t i = 0; i < sizeof bad_bits / sizeof bad_bits[0]; i++) {
        ALLOC_FAILS(NULL, GRAN, MEM_RESERVE | bad_bits[i], PAGE_READWRITE, ERROR_INVALID_PARAMETER);
        ALLOC_FAILS(NULL, GRAN, MEM_RESERVE | MEM_COMMIT | bad_bits[i], PAGE_READWRITE, ERROR_INVALID_PARAMETER);
        ALLOC_FAILS(p, PG, MEM_COMMIT | bad_bits[i], PAGE_READWRITE, ERROR_INVALID_PARAMETER);
    }
    /* MEM_RESET must be used alone */
    static const DWORD with_reset[] = {MEM_COMMIT, MEM_RESERVE, MEM_TOP_DOWN, MEM_RESET_UNDO, MEM_WRITE_WATCH,
                                       MEM_COMMIT | MEM_RESERVE, MEM_LARGE_PAGES, MEM_PHYSICAL};
    for (size_t i = 0; i < sizeof with_reset / sizeof with_reset[0]; i++)
        ALLOC_FAILS(p, PG, MEM_RESET | with_reset[i], PAGE_READWRITE, ERROR_INVALID_PARAMETER);
    /* MEM_RESET_UNDO must be used alone */
    static const DWORD with_undo[] = {MEM_COMMIT, MEM_RESERVE, MEM_TOP_DOWN, MEM_WRITE_WATCH,
                                      MEM_COMMIT | MEM_RESERVE, MEM_LARGE_PAGES, MEM_PHYSICAL};
    for (size_t i = 0; i < sizeof with_undo / sizeof with_undo[0]; i++)
        ALLOC_FAILS(p, PG, MEM_RESET_UNDO | with_undo[i], PAGE_READWRITE, ERROR_INVALID_PARAMETER);
    /* MEM_WRITE_WATCH only together with MEM_RESERVE */
    ALLOC_FAILS(p, PG, MEM_COMMIT | MEM_WRITE_WATCH, PAGE_READWRITE, ERROR_INVALID_PARAMETER);
    ALLOC_FAILS(NULL, GRAN, MEM_COMMIT | MEM_WRITE_WATCH, PAGE_READWRITE, ERROR_INVALID_PARAMETER);
    ALLOC_FAILS(NULL, GRAN, MEM_WRITE_WATCH, PAGE_READWRITE, ERROR_INVALID_PARAMETER);
    release(p);
}

/* SPEC 2.1 protection table: 0, two base bits, WRITECOPY values, illegal modifier combinations and
 * unknown bits are 87, for every allocation type including a pure MEM_RESERVE and MEM_RESET. */
static void test_invalid_protection(void **state)
{
    (void)state;
    static const DWORD bad[] = {
        0,
        PAGE_READONLY | PAGE_READWRITE,
        PAGE_NOACCESS | PAGE_READWRITE,
        PAGE_EXECUTE | PAGE_EXECUTE_READ,
        PAGE_READONLY | PAGE_EXECUTE_READWRITE,
        PAGE_NOACCESS | PAGE_EXECUTE,
        PAGE_WRITECOPY,
        PAGE_EXECUTE_WRITECOPY,
        PAGE_READWRITE | PAGE_WRITECOPY,
        PAGE_READWRITE | PAGE_NOCACHE | PAGE_WRITECOMBINE,
        PAGE_NOACCESS | PAGE_NOCACHE,
        PAGE_NOACCESS | PAGE_WRITECOMBINE,
        PAGE_NOACCESS | PAGE_GUARD,
        PAGE_READWRITE | PAGE_GUARD | PAGE_NOCACHE,
        PAGE_READWRITE | PAGE_GUARD | PAGE_WRITECOMBINE,
        PAGE_NOCACHE,
        PAGE_WRITECOMBINE,
        PAGE_GUARD,
        PAGE_READWRITE | 0x800,
        PAGE_READWRITE | 0x1000,
        PAGE_READWRITE | 0x80000,
        0x800,
    };
    char *p = ALLOC_OK(NULL, GRAN, MEM_RESERVE, PAGE_READWRITE, NULL);
    ALLOC_OK(p, PG, MEM_COMMIT, PAGE_READWRITE, p);
    char *x = free_range(GRAN);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ALLOC_FAILS(NULL, GRAN, MEM_RESERVE, bad[i], ERROR_INVALID_PARAMETER);
        ALLOC_FAILS(x, GRAN, MEM_RESERVE, bad[i], ERROR_INVALID_PARAMETER);
        ALLOC_FAILS(NULL, GRAN, MEM_RESERVE | MEM_COMMIT, bad[i], ERROR_INVALID_PARAMETER);
        ALLOC_FAILS(x, GRAN, MEM_RESERVE | MEM_COMMIT, bad[i], ERROR_INVALID_PARAMETER);
        ALLOC_FAILS(NULL, GRAN, MEM_COMMIT, bad[i], ERROR_INVALID_PARAMETER);
        ALLOC_FAILS(p, PG, MEM_COMMIT, bad[i], ERROR_INVALID_PARAMETER);
        ALLOC_FAILS(p + PG, PG, MEM_COMMIT, bad[i], ERROR_INVALID_PARAMETER);
        ALLOC_FAILS(p, PG, MEM_RESET, bad[i], ERROR_INVALID_PARAMETER); /* flProtect still validated */
    }
    release(p);
}

/* SPEC 2.6: guard protections and MEM_WRITE_WATCH reservations are accepted where the SPEC allows
 * them (tests/guard.c and tests/watch.c test what they do); the combinations it does not allow are 87. */
static void test_guard_and_write_watch_flags(void **state)
{
    (void)state;
    static const DWORD guarded[] = {PAGE_READWRITE | PAGE_GUARD, PAGE_READONLY | PAGE_GUARD,
                                    PAGE_EXECUTE_READ | PAGE_GUARD};
    char *p = ALLOC_OK(NULL, GRAN, MEM_RESERVE, PAGE_READWRITE, NULL);
    for (size_t i = 0; i < sizeof guarded / sizeof guarded[0]; i++) {
        release(ALLOC_OK(NULL, GRAN, MEM_RESERVE | MEM_COMMIT, guarded[i], NULL));
        release(ALLOC_OK(NULL, GRAN, MEM_RESERVE, guarded[i], NULL));
        ALLOC_OK(p, PG, MEM_COMMIT, guarded[i], p);
    }
    release(ALLOC_OK(NULL, GRAN, MEM_RESERVE | MEM_WRITE_WATCH, PAGE_READWRITE, NULL));
    release(ALLOC_OK(NULL, GRAN, MEM_RESERVE | MEM_COMMIT | MEM_WRITE_WATCH, PAGE_READWRITE, NULL));
    char *x = free_range(GRAN);
    release(ALLOC_OK(x, GRAN, MEM_RESERVE | MEM_WRITE_WATCH, PAGE_READWRITE, x));
    /* not with large pages or MEM_PHYSICAL */
    ALLOC_FAILS(NULL, 2 << 20, MEM_RESERVE | MEM_COMMIT | MEM_LARGE_PAGES | MEM_WRITE_WATCH, PAGE_READWRITE,
                ERROR_INVALID_PARAMETER);
    ALLOC_FAILS(NULL, GRAN, MEM_RESERVE | MEM_PHYSICAL | MEM_WRITE_WATCH, PAGE_READWRITE, ERROR_INVALID_PARAMETER);
    release(p);
}

/* ---- 87: size and address --------------------------------------------------------------------- */

/* SPEC 2.2 table: size 0 is 87. */
static void test_size_zero(void **state)
{
    (void)state;
    char *p = ALLOC_OK(NULL, GRAN, MEM_RESERVE | MEM_COMMIT, PAGE_READWRITE, NULL);
    char *x = free_range(GRAN);
    ALLOC_FAILS(NULL, 0, MEM_RESERVE, PAGE_READWRITE, ERROR_INVALID_PARAMETER);
    ALLOC_FAILS(NULL, 0, MEM_RESERVE | MEM_COMMIT, PAGE_READWRITE, ERROR_INVALID_PARAMETER);
    ALLOC_FAILS(NULL, 0, MEM_COMMIT, PAGE_READWRITE, ERROR_INVALID_PARAMETER);
    ALLOC_FAILS(x, 0, MEM_RESERVE, PAGE_READWRITE, ERROR_INVALID_PARAMETER);
    ALLOC_FAILS(p, 0, MEM_COMMIT, PAGE_READWRITE, ERROR_INVALID_PARAMETER);
    ALLOC_FAILS(p + 0x123, 0, MEM_COMMIT, PAGE_READWRITE, ERROR_INVALID_PARAMETER);
    ALLOC_FAILS(p, 0, MEM_RESET, PAGE_NOACCESS, ERROR_INVALID_PARAMETER);
    release(p);
}

/* SPEC 2.2 table: an address below 0x10000, a wrapping range, a range beyond the user address space or a
 * size larger than the address space is 87. */
static void test_bad_address_and_size(void **state)
{
    (void)state;
    SYSTEM_INFO si;
    GetSystemInfo(&si);
    uintptr_t max = (uintptr_t)si.lpMaximumApplicationAddress;
    uintptr_t top = (max + 1) & ~(uintptr_t)(GRAN - 1); /* first granule above user space */
    static const DWORD types[] = {MEM_RESERVE, MEM_RESERVE | MEM_COMMIT, MEM_COMMIT, MEM_RESET};
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++) {
        DWORD t = types[i], pr = t == MEM_RESET ? PAGE_NOACCESS : PAGE_READWRITE;
        /* below the lowest usable address */
        ALLOC_FAILS(0x1000, PG, t, pr, ERROR_INVALID_PARAMETER);
        ALLOC_FAILS(0xF000, PG, t, pr, ERROR_INVALID_PARAMETER);
        ALLOC_FAILS(0xFFFF, 1, t, pr, ERROR_INVALID_PARAMETER);
        ALLOC_FAILS(0x8000, 0x8000, t, pr, ERROR_INVALID_PARAMETER);
        /* wrapping */
        ALLOC_FAILS(0x20000, (SIZE_T)0 - 0x10000, t, pr, ERROR_INVALID_PARAMETER);
        ALLOC_FAILS(top - GRAN, (SIZE_T)0 - PG, t, pr, ERROR_INVALID_PARAMETER);
        ALLOC_FAILS(0x7F0000000000, (SIZE_T)-1, t, pr, ERROR_INVALID_PARAMETER);
        /* beyond the user address space */
        ALLOC_FAILS(top, GRAN, t, pr, ERROR_INVALID_PARAMETER);
        ALLOC_FAILS(max + 1, PG, t, pr, ERROR_INVALID_PARAMETER);
        ALLOC_FAILS(top - GRAN, 2 * GRAN, t, pr, ERROR_INVALID_PARAMETER);
        ALLOC_FAILS((uintptr_t)1 << 48, GRAN, t, pr, ERROR_INVALID_PARAMETER);
        ALLOC_FAILS((uintptr_t)0 - GRAN, PG, t, pr, ERROR_INVALID_PARAMETER);
    }
    /* sizes larger than the address space */
    static const DWORD ntypes[] = {MEM_RESERVE, MEM_RESERVE | MEM_COMMIT, MEM_COMMIT};
    for (size_t i = 0; i < sizeof ntypes / sizeof ntypes[0]; i++) {
        ALLOC_FAILS(NULL, (SIZE_T)1 << 48, ntypes[i], PAGE_READWRITE, ERROR_INVALID_PARAMETER);
        ALLOC_FAILS(NULL, (SIZE_T)1 << 62, ntypes[i], PAGE_READWRITE, ERROR_INVALID_PARAMETER);
        ALLOC_FAILS(NULL, (SIZE_T)-1, ntypes[i], PAGE_READWRITE, ERROR_INVALID_PARAMETER);
        ALLOC_FAILS(NULL, (SIZE_T)0 - PG, ntypes[i], PAGE_READWRITE, ERROR_INVALID_PARAMETER);
        ALLOC_FAILS(0x10000, (SIZE_T)1 << 48, ntypes[i], PAGE_READWRITE, ERROR_INVALID_PARAMETER);
    }
}

/* SPEC 2.2: the highest and lowest usable granules are usable addresses (the bounds are exact). The
 * kernel may hold the lowest granule (mmap_min_addr) or the top one, so only the error code is judged:
 * success, or ERROR_NOT_ENOUGH_MEMORY / ERROR_INVALID_ADDRESS, never 87. */
static void test_address_bounds_not_87(void **state)
{
    (void)state;
    SYSTEM_INFO si;
    GetSystemInfo(&si);
    uintptr_t max = (uintptr_t)si.lpMaximumApplicationAddress;
    uintptr_t cand[] = {(max + 1 - GRAN) & ~(uintptr_t)(GRAN - 1), 0x10000};
    for (size_t i = 0; i < 2; i++) {
        SetLastError(POISON);
        void *r = VirtualAlloc((void *)cand[i], GRAN, MEM_RESERVE, PAGE_READWRITE);
        if (r) {
            assert_ptr_equal(r, (void *)cand[i]);
            release(r);
        } else {
            DWORD e = GetLastError();
            if (e != ERROR_NOT_ENOUGH_MEMORY && e != ERROR_INVALID_ADDRESS)
                fail_msg("VirtualAlloc(%#lx, 64K, MEM_RESERVE) failed with %u", (unsigned long)cand[i], e);
        }
    }
}

/* ---- large pages, physical, top-down ----------------------------------------------------------- */

/* SPEC 2.1 MEM_LARGE_PAGES: only with MEM_RESERVE|MEM_COMMIT; size and address multiples of
 * GetLargePageMinimum(); else 87. */
static void test_large_pages_invalid(void **state)
{
    (void)state;
    SIZE_T lpm = GetLargePageMinimum();
    assert_true(lpm >= GRAN);
    ALLOC_FAILS(NULL, lpm, MEM_LARGE_PAGES, PAGE_READWRITE, ERROR_INVALID_PARAMETER);
    ALLOC_FAILS(NULL, lpm, MEM_RESERVE | MEM_LARGE_PAGES, PAGE_READWRITE, ERROR_INVALID_PARAMETER);
    ALLOC_FAILS(NULL, lpm, MEM_COMMIT | MEM_LARGE_PAGES, PAGE_READWRITE, ERROR_INVALID_PARAMETER);
    ALLOC_FAILS(NULL, lpm + PG, MEM_RESERVE | MEM_COMMIT | MEM_LARGE_PAGES, PAGE_READWRITE, ERROR_INVALID_PARAMETER);
    ALLOC_FAILS(NULL, PG, MEM_RESERVE | MEM_COMMIT | MEM_LARGE_PAGES, PAGE_READWRITE, ERROR_INVALID_PARAMETER);
    ALLOC_FAILS(NULL, lpm / 2, MEM_RESERVE | MEM_COMMIT | MEM_LARGE_PAGES, PAGE_READWRITE, ERROR_INVALID_PARAMETER);
    ALLOC_FAILS(NULL, lpm, MEM_RESET | MEM_LARGE_PAGES, PAGE_READWRITE, ERROR_INVALID_PARAMETER);
    /* an address that is 64 KiB aligned but not a multiple of the large-page minimum */
    char *x = free_range(3 * lpm);
    char *odd = ((uintptr_t)x % lpm) ? x : x + GRAN;
    ALLOC_FAILS(odd, lpm, MEM_RESERVE | MEM_COMMIT | MEM_LARGE_PAGES, PAGE_READWRITE, ERROR_INVALID_PARAMETER);
    /* bad protection still 87 */
    ALLOC_FAILS(NULL, lpm, MEM_RESERVE | MEM_COMMIT | MEM_LARGE_PAGES, 0, ERROR_INVALID_PARAMETER);
    ALLOC_FAILS(NULL, lpm, MEM_RESERVE | MEM_COMMIT | MEM_LARGE_PAGES, PAGE_WRITECOPY, ERROR_INVALID_PARAMETER);
}

/* Checks a valid MEM_LARGE_PAGES request: success with usable committed memory, or NULL with
 * ERROR_NOT_ENOUGH_MEMORY and nothing changed. */
static void large_pages_request(void *addr, SIZE_T size)
{
    tu_snapshot_take(&snap_before);
    SetLastError(POISON);
    char *r = VirtualAlloc(addr, size, MEM_RESERVE | MEM_COMMIT | MEM_LARGE_PAGES, PAGE_READWRITE);
    if (!r) {
        DWORD e = GetLastError();
        if (e != ERROR_NOT_ENOUGH_MEMORY)
            fail_msg("MEM_LARGE_PAGES(%p, %#zx) failed with %u, expected success or %u", addr, size, e,
                     (unsigned)ERROR_NOT_ENOUGH_MEMORY);
        snap_check_unchanged(__LINE__);
        return;
    }
    if (addr) assert_ptr_equal(r, addr);
    assert_int_equal((uintptr_t)r % GRAN, 0);
    REGION(r, r, r, PAGE_READWRITE, size, MEM_COMMIT, PAGE_READWRITE, MEM_PRIVATE);
    assert_int_equal(r[0], 0);
    assert_int_equal(r[size - 1], 0);
    r[0] = 1;
    r[size / 2] = 2;
    r[size - 1] = 3;
    assert_int_equal(r[0] + r[size / 2] + r[size - 1], 6);
    release(r);
    REGION(r, r, NULL, 0, ANY, MEM_FREE, PAGE_NOACCESS, 0);
}

/* SPEC 2.1 MEM_LARGE_PAGES, 2.2 (8 when the OS refuses): a valid request succeeds or fails with 8. */
static void test_large_pages_valid(void **state)
{
    (void)state;
    SIZE_T lpm = GetLargePageMinimum();
    large_pages_request(NULL, lpm);
    large_pages_request(NULL, 2 * lpm);
    char *x = free_range(3 * lpm);
    char *aligned = (char *)(((uintptr_t)x + lpm - 1) & ~(uintptr_t)(lpm - 1));
    /* [aligned, aligned + lpm) lies inside what was just an allocation: free in the map */
    MEMORY_BASIC_INFORMATION m;
    assert_int_equal(VirtualQuery(aligned, &m, sizeof m), sizeof m);
    assert_int_equal(m.State, MEM_FREE);
    assert_true(m.RegionSize >= lpm);
    large_pages_request(aligned, lpm);
}

/* SPEC 2.1 MEM_PHYSICAL: only with MEM_RESERVE (no MEM_COMMIT) and PAGE_READWRITE; else 87. */
static void test_physical(void **state)
{
    (void)state;
    char *p = ALLOC_OK(NULL, GRAN, MEM_RESERVE | MEM_PHYSICAL, PAGE_READWRITE, NULL);
    assert_int_equal((uintptr_t)p % GRAN, 0);
    MEMORY_BASIC_INFORMATION m;
    assert_int_equal(VirtualQuery(p, &m, sizeof m), sizeof m);
    assert_ptr_equal(m.AllocationBase, p);
    assert_int_equal(m.State, MEM_RESERVE);
    release(p);
    REGION(p, p, NULL, 0, ANY, MEM_FREE, PAGE_NOACCESS, 0);

    ALLOC_FAILS(NULL, GRAN, MEM_PHYSICAL, PAGE_READWRITE, ERROR_INVALID_PARAMETER);
    ALLOC_FAILS(NULL, GRAN, MEM_COMMIT | MEM_PHYSICAL, PAGE_READWRITE, ERROR_INVALID_PARAMETER);
    ALLOC_FAILS(NULL, GRAN, MEM_RESERVE | MEM_COMMIT | MEM_PHYSICAL, PAGE_READWRITE, ERROR_INVALID_PARAMETER);
    static const DWORD prots[] = {PAGE_NOACCESS, PAGE_READONLY, PAGE_EXECUTE, PAGE_EXECUTE_READ,
                                  PAGE_EXECUTE_READWRITE, PAGE_READWRITE | PAGE_NOCACHE,
                                  PAGE_READWRITE | PAGE_WRITECOMBINE};
    for (size_t i = 0; i < sizeof prots / sizeof prots[0]; i++)
        ALLOC_FAILS(NULL, GRAN, MEM_RESERVE | MEM_PHYSICAL, prots[i], ERROR_INVALID_PARAMETER);
}

/* SPEC 2.1 MEM_TOP_DOWN: placed at the highest free address, so above a normal allocation made at the
 * same time. */
static void test_top_down(void **state)
{
    (void)state;
    char *a = ALLOC_OK(NULL, GRAN, MEM_RESERVE, PAGE_READWRITE, NULL);
    char *t = ALLOC_OK(NULL, GRAN, MEM_RESERVE | MEM_TOP_DOWN, PAGE_READWRITE, NULL);
    char *b = ALLOC_OK(NULL, GRAN, MEM_RESERVE, PAGE_READWRITE, NULL);
    char *tc = ALLOC_OK(NULL, 2 * PG, MEM_RESERVE | MEM_COMMIT | MEM_TOP_DOWN, PAGE_READWRITE, NULL);
    assert_int_equal((uintptr_t)t % GRAN, 0);
    assert_int_equal((uintptr_t)tc % GRAN, 0);
    assert_true(t > a && t > b);
    assert_true(tc > a && tc > b);
    REGION(t, t, t, PAGE_READWRITE, GRAN, MEM_RESERVE, 0, MEM_PRIVATE);
    REGION(tc, tc, tc, PAGE_READWRITE, 2 * PG, MEM_COMMIT, PAGE_READWRITE, MEM_PRIVATE);
    assert_zero(tc, 2 * PG);
    release(a);
    release(t);
    release(b);
    release(tc);
}

/* ---- PAGE_NOCACHE / PAGE_WRITECOMBINE --------------------------------------------------------- */

/* SPEC 2.1: NOCACHE / WRITECOMBINE belong to the allocation: reported with the base protection on every
 * committed page and in VirtualProtect's old protection; a VirtualProtect without the modifier keeps it;
 * adding it to an allocation made without it is accepted and sets only the base protection. */
static void test_cache_modifiers(void **state)
{
    (void)state;
    static const DWORD mods[] = {PAGE_NOCACHE, PAGE_WRITECOMBINE};
    for (size_t i = 0; i < 2; i++) {
        DWORD mod = mods[i];
        DWORD old = 0;
        char *p = ALLOC_OK(NULL, 4 * PG, MEM_RESERVE | MEM_COMMIT, PAGE_READWRITE | mod, NULL);
        REGION(p, p, p, PAGE_READWRITE | mod, 4 * PG, MEM_COMMIT, PAGE_READWRITE | mod, MEM_PRIVATE);
        assert_int_equal(tu_writable(p), 1);
        assert_zero(p, 4 * PG);
        SetLastError(POISON);
        assert_true(VirtualProtect(p, PG, PAGE_READONLY, &old));
        assert_int_equal(old, PAGE_READWRITE | mod);
        REGION(p, p, p, PAGE_READWRITE | mod, PG, MEM_COMMIT, PAGE_READONLY | mod, MEM_PRIVATE);
        REGION(p + PG, p + PG, p, PAGE_READWRITE | mod, 3 * PG, MEM_COMMIT, PAGE_READWRITE | mod, MEM_PRIVATE);
        assert_int_equal(tu_writable(p), 0);
        assert_true(VirtualProtect(p, PG, PAGE_EXECUTE_READWRITE | mod, &old));
        assert_int_equal(old, PAGE_READONLY | mod);
        REGION(p, p, p, PAGE_READWRITE | mod, PG, MEM_COMMIT, PAGE_EXECUTE_READWRITE | mod, MEM_PRIVATE);
        /* a commit inside the allocation reports the modifier too */
        assert_true(VirtualFree(p + 3 * PG, PG, MEM_DECOMMIT));
        REGION(p + 3 * PG, p + 3 * PG, p, PAGE_READWRITE | mod, PG, MEM_RESERVE, 0, MEM_PRIVATE);
        ALLOC_OK(p + 3 * PG, PG, MEM_COMMIT, PAGE_EXECUTE_READ, p + 3 * PG);
        REGION(p + 3 * PG, p + 3 * PG, p, PAGE_READWRITE | mod, PG, MEM_COMMIT, PAGE_EXECUTE_READ | mod, MEM_PRIVATE);
        release(p);

        /* reserved with the modifier, committed later */
        char *r = ALLOC_OK(NULL, GRAN, MEM_RESERVE, PAGE_READONLY | mod, NULL);
        REGION(r, r, r, PAGE_READONLY | mod, GRAN, MEM_RESERVE, 0, MEM_PRIVATE);
        ALLOC_OK(r, PG, MEM_COMMIT, PAGE_READWRITE, r);
        REGION(r, r, r, PAGE_READONLY | mod, PG, MEM_COMMIT, PAGE_READWRITE | mod, MEM_PRIVATE);
        release(r);

        /* an allocation made without it: VirtualProtect with it is accepted, sets only the base */
        char *q = ALLOC_OK(NULL, 2 * PG, MEM_RESERVE | MEM_COMMIT, PAGE_READWRITE, NULL);
        old = 0;
        SetLastError(POISON);
        assert_true(VirtualProtect(q, PG, PAGE_READONLY | mod, &old));
        assert_int_equal(old, PAGE_READWRITE);
        REGION(q, q, q, PAGE_READWRITE, PG, MEM_COMMIT, PAGE_READONLY, MEM_PRIVATE);
        assert_true(VirtualProtect(q, 2 * PG, PAGE_READWRITE | mod, &old));
        assert_int_equal(old, PAGE_READONLY);
        REGION(q, q, q, PAGE_READWRITE, 2 * PG, MEM_COMMIT, PAGE_READWRITE, MEM_PRIVATE);
        release(q);
    }
    /* every writable and executable base takes the modifiers */
    static const DWORD bases[] = {PAGE_READONLY, PAGE_READWRITE, PAGE_EXECUTE, PAGE_EXECUTE_READ,
                                  PAGE_EXECUTE_READWRITE};
    for (size_t b = 0; b < sizeof bases / sizeof bases[0]; b++)
        for (size_t i = 0; i < 2; i++) {
            char *p = ALLOC_OK(NULL, PG, MEM_RESERVE | MEM_COMMIT, bases[b] | mods[i], NULL);
            REGION(p, p, p, bases[b] | mods[i], PG, MEM_COMMIT, bases[b] | mods[i], MEM_PRIVATE);
            release(p);
        }
}

/* ---- MEM_RESET / MEM_RESET_UNDO ---------------------------------------------------------------- */

/* SPEC 2.1 MEM_RESET, 2.2: pages stay committed with their protection, contents unchanged or zero; reset
 * of reserved pages of the allocation succeeds and leaves them reserved; across the allocation's end
 * (or in free memory) 487. */
static void test_reset(void **state)
{
    (void)state;
    char *p = ALLOC_OK(NULL, 8 * PG, MEM_RESERVE, PAGE_READWRITE, NULL);
    ALLOC_OK(p, 4 * PG, MEM_COMMIT, PAGE_READWRITE, p);
    ALLOC_OK(p + 4 * PG, 2 * PG, MEM_COMMIT, PAGE_READONLY, p + 4 * PG);
    fill(p, 4 * PG);
    /* flProtect is validated but not applied */
    ALLOC_OK(p, 6 * PG, MEM_RESET, PAGE_NOACCESS, p);
    REGION(p, p, p, PAGE_READWRITE, 4 * PG, MEM_COMMIT, PAGE_READWRITE, MEM_PRIVATE);
    REGION(p + 4 * PG, p + 4 * PG, p, PAGE_READWRITE, 2 * PG, MEM_COMMIT, PAGE_READONLY, MEM_PRIVATE);
    REGION(p + 6 * PG, p + 6 * PG, p, PAGE_READWRITE, 2 * PG, MEM_RESERVE, 0, MEM_PRIVATE);
    for (SIZE_T i = 0; i < 4 * PG; i++)
        if (p[i] != 0 && (unsigned char)p[i] != pattern(i)) fail_msg("byte %zu after MEM_RESET is %#x", i, p[i]);
    assert_zero(p + 4 * PG, 2 * PG);
    assert_int_equal(tu_writable(p), 1);
    assert_int_equal(tu_writable(p + 4 * PG), 0);
    /* the pages stay usable */
    fill(p, 4 * PG);
    assert_pattern(p, 4 * PG);

    /* rounding: commit-style */
    ALLOC_OK(p + 0x1234, 0x100, MEM_RESET, PAGE_READWRITE, p + 0x1000);
    /* reserved pages of the allocation: success, still reserved */
    ALLOC_OK(p + 6 * PG, 2 * PG, MEM_RESET, PAGE_NOACCESS, p + 6 * PG);
    REGION(p + 6 * PG, p + 6 * PG, p, PAGE_READWRITE, 2 * PG, MEM_RESERVE, 0, MEM_PRIVATE);
    ALLOC_OK(p + 3 * PG, 5 * PG, MEM_RESET, PAGE_NOACCESS, p + 3 * PG);
    REGION(p + 6 * PG, p + 6 * PG, p, PAGE_READWRITE, 2 * PG, MEM_RESERVE, 0, MEM_PRIVATE);
    REGION(p + 4 * PG, p + 4 * PG, p, PAGE_READWRITE, 2 * PG, MEM_COMMIT, PAGE_READONLY, MEM_PRIVATE);

    /* across the end of the allocation, or in free memory: 487 */
    ALLOC_FAILS(p + 7 * PG, 2 * PG, MEM_RESET, PAGE_NOACCESS, ERROR_INVALID_ADDRESS);
    ALLOC_FAILS(p, 9 * PG, MEM_RESET, PAGE_NOACCESS, ERROR_INVALID_ADDRESS);
    ALLOC_FAILS(p + 8 * PG, PG, MEM_RESET, PAGE_NOACCESS, ERROR_INVALID_ADDRESS);
    char *f = free_range(GRAN);
    ALLOC_FAILS(f, PG, MEM_RESET, PAGE_NOACCESS, ERROR_INVALID_ADDRESS);
    release(p);
}

/* SPEC 2.1 MEM_RESET_UNDO, 2.6: after MEM_RESET on written pages, with no memory pressure, the undo
 * succeeds and every byte is intact; on never-reset pages it succeeds too. */
static void test_reset_undo(void **state)
{
    (void)state;
    char *p = ALLOC_OK(NULL, 8 * PG, MEM_RESERVE | MEM_COMMIT, PAGE_READWRITE, NULL);
    fill(p, 8 * PG);
    ALLOC_OK(p, 8 * PG, MEM_RESET, PAGE_NOACCESS, p);
    ALLOC_OK(p, 8 * PG, MEM_RESET_UNDO, PAGE_NOACCESS, p);
    assert_pattern(p, 8 * PG);
    REGION(p, p, p, PAGE_READWRITE, 8 * PG, MEM_COMMIT, PAGE_READWRITE, MEM_PRIVATE);
    /* a partial reset, then an undo with an unaligned address (commit-style rounding) */
    ALLOC_OK(p + 2 * PG, 3 * PG, MEM_RESET, PAGE_NOACCESS, p + 2 * PG);
    ALLOC_OK(p + 0x1234, 5 * PG, MEM_RESET_UNDO, PAGE_READWRITE, p + PG);
    assert_pattern(p, 8 * PG);
    /* the pages keep working after the undo */
    p[0] = 42;
    assert_int_equal(p[0], 42);
    release(p);

    /* never reset: written pages and never-written pages */
    char *q = ALLOC_OK(NULL, 4 * PG, MEM_RESERVE | MEM_COMMIT, PAGE_READWRITE, NULL);
    fill(q, 2 * PG);
    ALLOC_OK(q, 4 * PG, MEM_RESET_UNDO, PAGE_READWRITE, q);
    assert_pattern(q, 2 * PG);
    assert_zero(q + 2 * PG, 2 * PG);
    REGION(q, q, q, PAGE_READWRITE, 4 * PG, MEM_COMMIT, PAGE_READWRITE, MEM_PRIVATE);
    /* SPEC 2.2 table: like MEM_RESET, a range not inside one allocation is 487 */
    ALLOC_FAILS(q + 3 * PG, 2 * PG, MEM_RESET_UNDO, PAGE_READWRITE, ERROR_INVALID_ADDRESS);
    ALLOC_FAILS(q + 4 * PG, PG, MEM_RESET_UNDO, PAGE_READWRITE, ERROR_INVALID_ADDRESS);
    release(q);
    ALLOC_FAILS(q, PG, MEM_RESET_UNDO, PAGE_READWRITE, ERROR_INVALID_ADDRESS);
}

/* The kernel mapping [lo, hi) holding addr, from /proc/self/maps; 0 if none. */
static int kernel_mapping(uintptr_t addr, uintptr_t *lo, uintptr_t *hi)
{
    FILE *f = fopen("/proc/self/maps", "r");
    if (!f) return 0;
    char line[512];
    int found = 0;
    while (fgets(line, sizeof line, f)) {
        unsigned long s, e;
        if (sscanf(line, "%lx-%lx", &s, &e) == 2 && addr >= s && addr < e) {
            *lo = s;
            *hi = e;
            found = 1;
            break;
        }
    }
    fclose(f);
    return found;
}

/* SPEC 2.1 MEM_RESERVE, 2.2: a reservation fails with 487 only when it overlaps an allocation. A range
 * the map reports free, whose address space the kernel holds only for hostmem's own placement, must be
 * reservable even where it straddles the end of that placement space (explicit address). Skipped when
 * the kernel has something else mapped right after. */
static void test_reserve_free_range_straddling_arena(void **state)
{
    (void)state;
    char *p = ALLOC_OK(NULL, GRAN, MEM_RESERVE, PAGE_NOACCESS, NULL);
    uintptr_t lo = 0, hi = 0, l2, h2;
    assert_true(kernel_mapping((uintptr_t)p, &lo, &hi));
    release(p);
    /* either edge of the kernel mapping that held p: one granule inside, one outside */
    uintptr_t cand[2] = {hi - GRAN, lo - GRAN}, outside[2] = {hi, lo - GRAN};
    for (int i = 0; i < 2; i++) {
        MEMORY_BASIC_INFORMATION m1, m2;
        assert_int_equal(VirtualQuery((void *)cand[i], &m1, sizeof m1), sizeof m1);
        assert_int_equal(VirtualQuery((void *)(cand[i] + GRAN), &m2, sizeof m2), sizeof m2);
        if (cand[i] % GRAN || m1.State != MEM_FREE || m2.State != MEM_FREE || m1.RegionSize < 2 * GRAN ||
            kernel_mapping(outside[i], &l2, &h2) || kernel_mapping(outside[i] + GRAN - 1, &l2, &h2))
            continue;
        char *r = ALLOC_OK(cand[i], 2 * GRAN, MEM_RESERVE, PAGE_READWRITE, cand[i]);
        REGION(r, r, r, PAGE_READWRITE, 2 * GRAN, MEM_RESERVE, 0, MEM_PRIVATE);
        ALLOC_OK(r + GRAN - PG, 2 * PG, MEM_COMMIT, PAGE_READWRITE, r + GRAN - PG);
        assert_zero(r + GRAN - PG, 2 * PG);
        release(r);
        return;
    }
    print_message("skipped: the kernel maps something else next to both edges of [%#lx, %#lx)\n",
                  (unsigned long)lo, (unsigned long)hi);
}

/* SPEC 2.1 MEM_RESERVE, 2.2: a large reservation (256 MiB and more) at an explicit address whose range the
 * map reports free and which lies entirely inside address space hostmem itself holds for placement
 * (the kernel mapping that held a fresh 64 KiB reservation) succeeds. Skipped if the range does not fit
 * in that mapping. */
static void test_reserve_large_in_placement_space(void **state)
{
    (void)state;
    SIZE_T big = (SIZE_T)300 << 20;
    char *p = ALLOC_OK(NULL, GRAN, MEM_RESERVE, PAGE_NOACCESS, NULL);
    uintptr_t lo = 0, hi = 0;
    assert_true(kernel_mapping((uintptr_t)p, &lo, &hi));
    release(p);
    MEMORY_BASIC_INFORMATION m;
    assert_int_equal(VirtualQuery(p, &m, sizeof m), sizeof m);
    if (m.State != MEM_FREE || m.RegionSize < big || (uintptr_t)p + big > hi) {
        print_message("skipped: [%p, +300 MiB) is not free inside [%#lx, %#lx)\n", (void *)p, (unsigned long)lo,
                      (unsigned long)hi);
        return;
    }
    char *r = ALLOC_OK(p, big, MEM_RESERVE, PAGE_READWRITE, p);
    REGION(r, r, r, PAGE_READWRITE, big, MEM_RESERVE, 0, MEM_PRIVATE);
    release(r);
}

/* SPEC 2.2: large reservations (own mapping) follow the same rules: query, commit, release, and a
 * reservation at the same address afterwards. */
static void test_large_reservation(void **state)
{
    (void)state;
    SIZE_T big = (SIZE_T)512 << 20;
    char *p = ALLOC_OK(NULL, big, MEM_RESERVE, PAGE_READWRITE, NULL);
    assert_int_equal((uintptr_t)p % GRAN, 0);
    REGION(p, p, p, PAGE_READWRITE, big, MEM_RESERVE, 0, MEM_PRIVATE);
    ALLOC_OK(p + big / 2 + 0x10, PG - 0x10, MEM_COMMIT, PAGE_READWRITE, p + big / 2);
    REGION(p, p, p, PAGE_READWRITE, big / 2, MEM_RESERVE, 0, MEM_PRIVATE);
    REGION(p + big / 2, p + big / 2, p, PAGE_READWRITE, PG, MEM_COMMIT, PAGE_READWRITE, MEM_PRIVATE);
    REGION(p + big - 1, p + big - PG, p, PAGE_READWRITE, PG, MEM_RESERVE, 0, MEM_PRIVATE);
    assert_zero(p + big / 2, PG);
    ALLOC_FAILS(p + big - PG, 2 * PG, MEM_COMMIT, PAGE_READWRITE, ERROR_INVALID_ADDRESS);
    ALLOC_FAILS(p + GRAN, GRAN, MEM_RESERVE, PAGE_READWRITE, ERROR_INVALID_ADDRESS);
    release(p);
    REGION(p, p, NULL, 0, ANY, MEM_FREE, PAGE_NOACCESS, 0);
    ALLOC_OK(p, big, MEM_RESERVE | MEM_COMMIT, PAGE_READONLY, p);
    REGION(p, p, p, PAGE_READONLY, big, MEM_COMMIT, PAGE_READONLY, MEM_PRIVATE);
    assert_int_equal(p[big - 1], 0);
    release(p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_null_reserve_rounding),
        cmocka_unit_test(test_null_4k_blocks_granule),
        cmocka_unit_test(test_reserve_address_rounding),
        cmocka_unit_test(test_commit_address_rounding),
        cmocka_unit_test(test_reserve_commit_null),
        cmocka_unit_test(test_reserve_commit_address),
        cmocka_unit_test(test_recommit_keeps_data),
        cmocka_unit_test(test_committed_reads_zero),
        cmocka_unit_test(test_commit_requires_one_allocation),
        cmocka_unit_test(test_reserve_overlap),
        cmocka_unit_test(test_invalid_type),
        cmocka_unit_test(test_invalid_protection),
        cmocka_unit_test(test_guard_and_write_watch_flags),
        cmocka_unit_test(test_size_zero),
        cmocka_unit_test(test_bad_address_and_size),
        cmocka_unit_test(test_address_bounds_not_87),
        cmocka_unit_test(test_large_pages_invalid),
        cmocka_unit_test(test_large_pages_valid),
        cmocka_unit_test(test_physical),
        cmocka_unit_test(test_top_down),
        cmocka_unit_test(test_cache_modifiers),
        cmocka_unit_test(test_reset),
        cmocka_unit_test(test_reset_undo),
        cmocka_unit_test(test_large_reservation),
        cmocka_unit_test(test_reserve_free_range_straddling_arena),
        cmocka_unit_test(test_reserve_large_in_placement_space),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
