/* win32_query.c — VirtualQuery conformance (SPEC 2.5): struct layout, every field, regions, free memory, errors. */
#include <hostmem/win32.h>

#include "win32_testutil.h"

/* ---- helpers ---------------------------------------------------------------------------------- */

#define QUERY_FAILS(addr, len, err) query_fails((const void *)(addr), (len), (err), __LINE__)
/* SPEC 2.5: a failing VirtualQuery returns 0 with the last error, writes nothing and changes nothing. */
static void query_fails(const void *addr, SIZE_T len, DWORD err, int line)
{
    MEMORY_BASIC_INFORMATION m, orig;
    memset(&m, 0xAB, sizeof m);
    memcpy(&orig, &m, sizeof m);
    tu_snapshot_take(&snap_before);
    SetLastError(POISON);
    SIZE_T n = VirtualQuery(addr, &m, len);
    DWORD e = GetLastError();
    if (n != 0) fail_msg("line %d: VirtualQuery(%p, len %zu) = %zu, expected 0", line, addr, len, n);
    if (e != err) fail_msg("line %d: VirtualQuery(%p, len %zu): last error %u, expected %u", line, addr, len, e, err);
    if (memcmp(&m, &orig, sizeof m) != 0) fail_msg("line %d: a failed VirtualQuery wrote the buffer", line);
    snap_check_unchanged(line);
}

/* SPEC 2.5 table: MEMORY_BASIC_INFORMATION's x86-64 layout, 48 bytes. */
static void test_mbi_layout(void **state)
{
    (void)state;
#if UINTPTR_MAX == 0xFFFFFFFFFFFFFFFFu
    _Static_assert(sizeof(MEMORY_BASIC_INFORMATION) == 48, "size");
    assert_int_equal(offsetof(MEMORY_BASIC_INFORMATION, BaseAddress), 0);
    assert_int_equal(offsetof(MEMORY_BASIC_INFORMATION, AllocationBase), 8);
    assert_int_equal(offsetof(MEMORY_BASIC_INFORMATION, AllocationProtect), 16);
    assert_int_equal(offsetof(MEMORY_BASIC_INFORMATION, PartitionId), 20);
    assert_int_equal(offsetof(MEMORY_BASIC_INFORMATION, RegionSize), 24);
    assert_int_equal(offsetof(MEMORY_BASIC_INFORMATION, State), 32);
    assert_int_equal(offsetof(MEMORY_BASIC_INFORMATION, Protect), 36);
    assert_int_equal(offsetof(MEMORY_BASIC_INFORMATION, Type), 40);
    assert_int_equal(sizeof(MEMORY_BASIC_INFORMATION), 48);
#endif
    MEMORY_BASIC_INFORMATION m;
    assert_int_equal(sizeof m.PartitionId, 2);
    assert_int_equal(sizeof m.AllocationProtect, 4);
    assert_int_equal(sizeof m.State, 4);
    assert_int_equal(sizeof m.Protect, 4);
    assert_int_equal(sizeof m.Type, 4);
    assert_int_equal(sizeof m.RegionSize, sizeof(void *));
    PMEMORY_BASIC_INFORMATION pm = &m;
    assert_ptr_equal(pm, &m);
}

/* SPEC 2.5: every field of a committed and a reserved region; BaseAddress is the address rounded down to
 * a page; the return value is 48; every byte of the struct is written. */
static void test_query_fields(void **state)
{
    (void)state;
    char *p = ALLOC_OK(NULL, 4 * PG, MEM_RESERVE, PAGE_READONLY, NULL);
    ALLOC_OK(p + PG, PG, MEM_COMMIT, PAGE_READWRITE, p + PG);
    MEMORY_BASIC_INFORMATION m;
    memset(&m, 0xAB, sizeof m);
    SetLastError(POISON);
    assert_int_equal(VirtualQuery(p + 0x1234, &m, sizeof m), 48);
    assert_ptr_equal(m.BaseAddress, p + 0x1000);
    assert_ptr_equal(m.AllocationBase, p);
    assert_int_equal(m.AllocationProtect, PAGE_READONLY);
    assert_int_equal(m.PartitionId, 0);
    assert_int_equal(m.RegionSize, PG);
    assert_int_equal(m.State, MEM_COMMIT);
    assert_int_equal(m.Protect, PAGE_READWRITE);
    assert_int_equal(m.Type, MEM_PRIVATE);

    memset(&m, 0xAB, sizeof m);
    assert_int_equal(VirtualQuery(p + 2 * PG + 5, &m, sizeof m), 48);
    assert_ptr_equal(m.BaseAddress, p + 2 * PG);
    assert_ptr_equal(m.AllocationBase, p);
    assert_int_equal(m.AllocationProtect, PAGE_READONLY);
    assert_int_equal(m.PartitionId, 0);
    assert_int_equal(m.RegionSize, 2 * PG);
    assert_int_equal(m.State, MEM_RESERVE);
    assert_int_equal(m.Protect, 0); /* SPEC 2.7 trap 4 */
    assert_int_equal(m.Type, MEM_PRIVATE);

    REGION(p, p, p, PAGE_READONLY, PG, MEM_RESERVE, 0, MEM_PRIVATE);
    REGION(p + PG - 1, p, p, PAGE_READONLY, PG, MEM_RESERVE, 0, MEM_PRIVATE);
    REGION(p + 4 * PG - 1, p + 3 * PG, p, PAGE_READONLY, PG, MEM_RESERVE, 0, MEM_PRIVATE);

    /* a larger buffer is fine: 48 bytes written, the rest untouched */
    unsigned char big[64];
    memset(big, 0xCD, sizeof big);
    assert_int_equal(VirtualQuery(p + PG, (PMEMORY_BASIC_INFORMATION)(void *)big, sizeof big), 48);
    for (size_t i = 48; i < sizeof big; i++) assert_int_equal(big[i], 0xCD);
    release(p);

    /* AllocationProtect is the protection given at allocation, for every base value */
    static const DWORD prots[] = {PAGE_NOACCESS, PAGE_READONLY, PAGE_READWRITE, PAGE_EXECUTE, PAGE_EXECUTE_READ,
                                  PAGE_EXECUTE_READWRITE};
    for (size_t i = 0; i < sizeof prots / sizeof prots[0]; i++) {
        char *r = ALLOC_OK(NULL, 2 * PG, MEM_RESERVE, prots[i], NULL);
        REGION(r, r, r, prots[i], 2 * PG, MEM_RESERVE, 0, MEM_PRIVATE);
        ALLOC_OK(r, PG, MEM_COMMIT, PAGE_READWRITE, r);
        REGION(r, r, r, prots[i], PG, MEM_COMMIT, PAGE_READWRITE, MEM_PRIVATE);
        release(r);
        char *c = ALLOC_OK(NULL, PG, MEM_RESERVE | MEM_COMMIT, prots[i], NULL);
        REGION(c, c, c, prots[i], PG, MEM_COMMIT, prots[i], MEM_PRIVATE);
        DWORD old;
        assert_true(VirtualProtect(c, PG, prots[(i + 1) % 6], &old));
        REGION(c, c, c, prots[i], PG, MEM_COMMIT, prots[(i + 1) % 6], MEM_PRIVATE); /* unchanged by protect */
        release(c);
    }
}

/* SPEC 2.5 RegionSize: adjacent runs with the same state and protection form one region, whatever calls
 * made them; a region ends where state or protection changes, and at the allocation's end. */
static void test_query_coalescing(void **state)
{
    (void)state;
    char *x = free_range(2 * GRAN);
    char *p = ALLOC_OK(x, 16 * PG, MEM_RESERVE, PAGE_READWRITE, x);
    char *n = ALLOC_OK(x + GRAN, GRAN, MEM_RESERVE, PAGE_READWRITE, x + GRAN); /* adjacent neighbour */
    ALLOC_OK(p, 4 * PG, MEM_COMMIT, PAGE_READWRITE, p);
    ALLOC_OK(p + 4 * PG, 2 * PG, MEM_COMMIT, PAGE_READWRITE, p + 4 * PG);
    ALLOC_OK(p + 6 * PG, 2 * PG, MEM_COMMIT, PAGE_READONLY, p + 6 * PG);
    REGION(p, p, p, PAGE_READWRITE, 6 * PG, MEM_COMMIT, PAGE_READWRITE, MEM_PRIVATE);
    REGION(p + 2 * PG, p + 2 * PG, p, PAGE_READWRITE, 4 * PG, MEM_COMMIT, PAGE_READWRITE, MEM_PRIVATE);
    REGION(p + 6 * PG, p + 6 * PG, p, PAGE_READWRITE, 2 * PG, MEM_COMMIT, PAGE_READONLY, MEM_PRIVATE);
    REGION(p + 8 * PG, p + 8 * PG, p, PAGE_READWRITE, 8 * PG, MEM_RESERVE, 0, MEM_PRIVATE);
    /* the same protection again: one region */
    DWORD old;
    assert_true(VirtualProtect(p + 6 * PG, 2 * PG, PAGE_READWRITE, &old));
    REGION(p, p, p, PAGE_READWRITE, 8 * PG, MEM_COMMIT, PAGE_READWRITE, MEM_PRIVATE);
    /* a hole in the middle, then filled again */
    assert_true(VirtualFree(p + 3 * PG, PG, MEM_DECOMMIT));
    REGION(p, p, p, PAGE_READWRITE, 3 * PG, MEM_COMMIT, PAGE_READWRITE, MEM_PRIVATE);
    REGION(p + 3 * PG, p + 3 * PG, p, PAGE_READWRITE, PG, MEM_RESERVE, 0, MEM_PRIVATE);
    REGION(p + 4 * PG, p + 4 * PG, p, PAGE_READWRITE, 4 * PG, MEM_COMMIT, PAGE_READWRITE, MEM_PRIVATE);
    ALLOC_OK(p + 3 * PG, PG, MEM_COMMIT, PAGE_READWRITE, p + 3 * PG);
    REGION(p, p, p, PAGE_READWRITE, 8 * PG, MEM_COMMIT, PAGE_READWRITE, MEM_PRIVATE);
    /* every page committed: one region of the allocation's size, not into the neighbour */
    ALLOC_OK(p, 16 * PG, MEM_COMMIT, PAGE_READWRITE, p);
    ALLOC_OK(n, GRAN, MEM_COMMIT, PAGE_READWRITE, n);
    REGION(p, p, p, PAGE_READWRITE, 16 * PG, MEM_COMMIT, PAGE_READWRITE, MEM_PRIVATE);
    /* decommitted again: the reserved region ends at the allocation's end */
    assert_true(VirtualFree(p, 0, MEM_DECOMMIT));
    assert_true(VirtualFree(n, 0, MEM_DECOMMIT));
    REGION(p, p, p, PAGE_READWRITE, 16 * PG, MEM_RESERVE, 0, MEM_PRIVATE);
    release(p);
    release(n);
}

/* SPEC 2.5: regions never cross an allocation's end; adjacent allocations are never merged, even with
 * identical attributes. */
static void test_query_adjacent_not_merged(void **state)
{
    (void)state;
    char *x = free_range(3 * GRAN);
    ALLOC_OK(x, GRAN, MEM_RESERVE | MEM_COMMIT, PAGE_READWRITE, x);
    ALLOC_OK(x + GRAN, GRAN, MEM_RESERVE | MEM_COMMIT, PAGE_READWRITE, x + GRAN);
    ALLOC_OK(x + 2 * GRAN, GRAN, MEM_RESERVE, PAGE_READWRITE, x + 2 * GRAN);
    REGION(x, x, x, PAGE_READWRITE, GRAN, MEM_COMMIT, PAGE_READWRITE, MEM_PRIVATE);
    REGION(x + PG, x + PG, x, PAGE_READWRITE, GRAN - PG, MEM_COMMIT, PAGE_READWRITE, MEM_PRIVATE);
    REGION(x + GRAN, x + GRAN, x + GRAN, PAGE_READWRITE, GRAN, MEM_COMMIT, PAGE_READWRITE, MEM_PRIVATE);
    REGION(x + 2 * GRAN - 1, x + 2 * GRAN - PG, x + GRAN, PAGE_READWRITE, PG, MEM_COMMIT, PAGE_READWRITE, MEM_PRIVATE);
    assert_true(VirtualFree(x + GRAN, 0, MEM_DECOMMIT));
    REGION(x + GRAN, x + GRAN, x + GRAN, PAGE_READWRITE, GRAN, MEM_RESERVE, 0, MEM_PRIVATE);
    REGION(x + 2 * GRAN, x + 2 * GRAN, x + 2 * GRAN, PAGE_READWRITE, GRAN, MEM_RESERVE, 0, MEM_PRIVATE);
    release(x);
    release(x + GRAN);
    release(x + 2 * GRAN);
}

/* SPEC 2.5, 2.7 trap 4: free memory is MEM_FREE, PAGE_NOACCESS, Type 0, AllocationBase NULL,
 * AllocationProtect 0, and its RegionSize reaches exactly the next allocation. */
static void test_query_free(void **state)
{
    (void)state;
    char *x = free_range(4 * GRAN);
    ALLOC_OK(x, GRAN, MEM_RESERVE, PAGE_READWRITE, x);
    ALLOC_OK(x + 3 * GRAN, GRAN, MEM_RESERVE, PAGE_READWRITE, x + 3 * GRAN);
    MEMORY_BASIC_INFORMATION m;
    memset(&m, 0xAB, sizeof m);
    assert_int_equal(VirtualQuery(x + GRAN + 0x123, &m, sizeof m), 48);
    assert_ptr_equal(m.BaseAddress, x + GRAN);
    assert_null(m.AllocationBase);
    assert_int_equal(m.AllocationProtect, 0);
    assert_int_equal(m.PartitionId, 0);
    assert_int_equal(m.RegionSize, 2 * GRAN);
    assert_int_equal(m.State, MEM_FREE);
    assert_int_equal(m.Protect, PAGE_NOACCESS);
    assert_int_equal(m.Type, 0);
    REGION(x + 2 * GRAN + PG, x + 2 * GRAN + PG, NULL, 0, GRAN - PG, MEM_FREE, PAGE_NOACCESS, 0);
    REGION(x + 3 * GRAN - 1, x + 3 * GRAN - PG, NULL, 0, PG, MEM_FREE, PAGE_NOACCESS, 0);
    release(x);
    release(x + 3 * GRAN);

    /* the unusable tail of a short allocation reaches the next allocation */
    char *y = free_range(2 * GRAN);
    ALLOC_OK(y, PG, MEM_RESERVE | MEM_COMMIT, PAGE_READWRITE, y);
    ALLOC_OK(y + GRAN, PG, MEM_RESERVE, PAGE_READWRITE, y + GRAN);
    REGION(y, y, y, PAGE_READWRITE, PG, MEM_COMMIT, PAGE_READWRITE, MEM_PRIVATE);
    REGION(y + PG, y + PG, NULL, 0, GRAN - PG, MEM_FREE, PAGE_NOACCESS, 0);
    REGION(y + GRAN + PG, y + GRAN + PG, NULL, 0, ANY, MEM_FREE, PAGE_NOACCESS, 0);
    release(y);
    release(y + GRAN);
    /* after release, the same addresses are free */
    REGION(y, y, NULL, 0, ANY, MEM_FREE, PAGE_NOACCESS, 0);
}

/* SPEC 2.5, 2.7 trap 4: scanning the whole user address space from 0 with VirtualQuery terminates (no
 * region of size 0), sees every allocation with its regions, and free regions always reach an allocation
 * (two free regions never follow each other). */
static void test_query_scan_address_space(void **state)
{
    (void)state;
    SYSTEM_INFO si;
    GetSystemInfo(&si);
    uintptr_t max = (uintptr_t)si.lpMaximumApplicationAddress;
    char *a = ALLOC_OK(NULL, 3 * PG, MEM_RESERVE, PAGE_READWRITE, NULL);
    ALLOC_OK(a + PG, PG, MEM_COMMIT, PAGE_READONLY, a + PG);
    char *b = ALLOC_OK(NULL, 2 * GRAN, MEM_RESERVE | MEM_COMMIT, PAGE_EXECUTE_READ, NULL);
    char *c = ALLOC_OK(NULL, PG, MEM_RESERVE | MEM_TOP_DOWN, PAGE_NOACCESS, NULL);
    int seen_a = 0, seen_b = 0, seen_c = 0, prev_free = 0;
    uintptr_t addr = 0;
    size_t iterations = 0;
    while (addr <= max) {
        MEMORY_BASIC_INFORMATION m;
        SetLastError(POISON);
        SIZE_T n = VirtualQuery((void *)addr, &m, sizeof m);
        if (n != sizeof m) fail_msg("VirtualQuery(%#lx) = %zu, last error %u", (unsigned long)addr, n, GetLastError());
        assert_ptr_equal(m.BaseAddress, (void *)addr);
        if (m.RegionSize == 0 || m.RegionSize % PG) fail_msg("VirtualQuery(%#lx): RegionSize %#zx", (unsigned long)addr, m.RegionSize);
        if (m.State == MEM_FREE) {
            if (prev_free) fail_msg("two free regions in a row at %#lx", (unsigned long)addr);
            assert_null(m.AllocationBase);
            assert_int_equal(m.Protect, PAGE_NOACCESS);
            assert_int_equal(m.Type, 0);
        } else {
            assert_non_null(m.AllocationBase);
            assert_true((char *)m.AllocationBase <= (char *)m.BaseAddress);
            assert_int_equal(m.Type, MEM_PRIVATE);
        }
        prev_free = m.State == MEM_FREE;
        if (m.AllocationBase == a) {
            if (addr == (uintptr_t)a) assert_true(m.State == MEM_RESERVE && m.RegionSize == PG);
            if (addr == (uintptr_t)a + PG) assert_true(m.State == MEM_COMMIT && m.RegionSize == PG && m.Protect == PAGE_READONLY);
            if (addr == (uintptr_t)a + 2 * PG) assert_true(m.State == MEM_RESERVE && m.RegionSize == PG);
            seen_a++;
        }
        if (m.AllocationBase == b) {
            assert_true(addr == (uintptr_t)b && m.RegionSize == 2 * GRAN && m.Protect == PAGE_EXECUTE_READ);
            seen_b++;
        }
        if (m.AllocationBase == c) {
            assert_true(addr == (uintptr_t)c && m.RegionSize == PG && m.State == MEM_RESERVE);
            seen_c++;
        }
        if (addr + m.RegionSize < addr) fail_msg("RegionSize at %#lx wraps", (unsigned long)addr);
        addr += m.RegionSize;
        if (++iterations > 10000000) fail_msg("the scan does not end");
    }
    assert_int_equal(seen_a, 3);
    assert_int_equal(seen_b, 1);
    assert_int_equal(seen_c, 1);
    release(a);
    release(b);
    release(c);
}

/* SPEC 2.5: a buffer shorter than the struct is 24; an address above the user address space is 87. */
static void test_query_errors(void **state)
{
    (void)state;
    SYSTEM_INFO si;
    GetSystemInfo(&si);
    uintptr_t max = (uintptr_t)si.lpMaximumApplicationAddress;
    char *p = ALLOC_OK(NULL, PG, MEM_RESERVE | MEM_COMMIT, PAGE_READWRITE, NULL);
    QUERY_FAILS(p, 0, ERROR_BAD_LENGTH);
    QUERY_FAILS(p, 1, ERROR_BAD_LENGTH);
    QUERY_FAILS(p, 24, ERROR_BAD_LENGTH);
    QUERY_FAILS(p, sizeof(MEMORY_BASIC_INFORMATION) - 1, ERROR_BAD_LENGTH);
    QUERY_FAILS(max + 1, sizeof(MEMORY_BASIC_INFORMATION), ERROR_INVALID_PARAMETER);
    QUERY_FAILS(max + 1 + PG, sizeof(MEMORY_BASIC_INFORMATION), ERROR_INVALID_PARAMETER);
    QUERY_FAILS((uintptr_t)1 << 47, sizeof(MEMORY_BASIC_INFORMATION), ERROR_INVALID_PARAMETER);
    QUERY_FAILS((uintptr_t)1 << 56, sizeof(MEMORY_BASIC_INFORMATION), ERROR_INVALID_PARAMETER);
    QUERY_FAILS((uintptr_t)0 - PG, sizeof(MEMORY_BASIC_INFORMATION), ERROR_INVALID_PARAMETER);
    QUERY_FAILS((uintptr_t)0 - 1, sizeof(MEMORY_BASIC_INFORMATION), ERROR_INVALID_PARAMETER);
    /* the highest user address itself is fine */
    MEMORY_BASIC_INFORMATION m;
    assert_int_equal(VirtualQuery((void *)max, &m, sizeof m), 48);
    assert_ptr_equal(m.BaseAddress, (void *)(max & ~(uintptr_t)(PG - 1)));
    assert_int_equal(m.State, MEM_FREE);
    assert_true(m.RegionSize > 0);
    /* the lowest addresses are ordinary free memory */
    assert_int_equal(VirtualQuery(NULL, &m, sizeof m), 48);
    assert_null(m.BaseAddress);
    assert_int_equal(m.State, MEM_FREE);
    assert_true(m.RegionSize >= 0x10000);
    release(p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_mbi_layout),
        cmocka_unit_test(test_query_fields),
        cmocka_unit_test(test_query_coalescing),
        cmocka_unit_test(test_query_adjacent_not_merged),
        cmocka_unit_test(test_query_free),
        cmocka_unit_test(test_query_scan_address_space),
        cmocka_unit_test(test_query_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
