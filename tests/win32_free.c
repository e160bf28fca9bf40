/* win32_free.c — VirtualFree conformance: release, decommit and every error of SPEC 2.3. */
#include <hostmem/win32.h>

#include "win32_testutil.h"

/* ---- helpers ---------------------------------------------------------------------------------- */

#define FREE_FAILS(addr, size, type, err) free_fails((void *)(addr), (size), (type), (err), __LINE__)
/* SPEC 2.3 / 2.7.3: a failing VirtualFree returns FALSE, sets the last error and changes nothing. */
static void free_fails(void *addr, SIZE_T size, DWORD type, DWORD err, int line)
{
    tu_snapshot_take(&snap_before);
    SetLastError(POISON);
    BOOL r = VirtualFree(addr, size, type);
    DWORD e = GetLastError();
    if (r) fail_msg("line %d: VirtualFree(%p, %#zx, %#x) succeeded, expected last error %u", line, addr, size, type, err);
    if (e != err)
        fail_msg("line %d: VirtualFree(%p, %#zx, %#x): last error %u (%#x), expected %u", line, addr, size, type, e,
                 e, err);
    snap_check_unchanged(line);
}

#define FREE_OK(addr, size, type) free_ok((void *)(addr), (size), (type), __LINE__)
static void free_ok(void *addr, SIZE_T size, DWORD type, int line)
{
    SetLastError(POISON);
    if (!VirtualFree(addr, size, type))
        fail_msg("line %d: VirtualFree(%p, %#zx, %#x) failed with %u (%s)", line, addr, size, type, GetLastError(),
                 hm_last_detail());
}

/* ---- MEM_RELEASE ------------------------------------------------------------------------------ */

/* SPEC 2.3 MEM_RELEASE: at the base with size 0, the whole allocation goes, whatever its pages' states. */
static void test_release_whole_allocation(void **state)
{
    (void)state;
    char *p = ALLOC_OK(NULL, 4 * GRAN, MEM_RESERVE, PAGE_READWRITE, NULL);
    ALLOC_OK(p, PG, MEM_COMMIT, PAGE_READWRITE, p);
    ALLOC_OK(p + 2 * PG, PG, MEM_COMMIT, PAGE_READONLY, p + 2 * PG);
    ALLOC_OK(p + 4 * PG, PG, MEM_COMMIT, PAGE_NOACCESS, p + 4 * PG);
    ALLOC_OK(p + GRAN, GRAN, MEM_COMMIT, PAGE_EXECUTE_READ, p + GRAN);
    ALLOC_OK(p + 4 * GRAN - PG, PG, MEM_COMMIT, PAGE_EXECUTE_READWRITE, p + 4 * GRAN - PG);
    p[0] = 1;
    FREE_OK(p, 0, MEM_RELEASE);
    for (SIZE_T off = 0; off < 4 * GRAN; off += PG) {
        MEMORY_BASIC_INFORMATION m;
        assert_int_equal(VirtualQuery(p + off, &m, sizeof m), sizeof m);
        assert_int_equal(m.State, MEM_FREE);
        assert_null(m.AllocationBase);
        assert_int_equal(m.Protect, PAGE_NOACCESS);
        assert_int_equal(m.Type, 0);
    }
    assert_int_equal(tu_readable(p), 0);
    assert_int_equal(tu_readable(p + GRAN), 0);
    /* the space can be reserved again at the same address */
    ALLOC_OK(p, 4 * GRAN, MEM_RESERVE, PAGE_READONLY, p);
    REGION(p, p, p, PAGE_READONLY, 4 * GRAN, MEM_RESERVE, 0, MEM_PRIVATE);
    FREE_OK(p, 0, MEM_RELEASE);

    /* fully committed, and purely reserved */
    char *c = ALLOC_OK(NULL, 3 * PG, MEM_RESERVE | MEM_COMMIT, PAGE_READWRITE, NULL);
    FREE_OK(c, 0, MEM_RELEASE);
    REGION(c, c, NULL, 0, ANY, MEM_FREE, PAGE_NOACCESS, 0);
    char *r = ALLOC_OK(NULL, 3 * PG, MEM_RESERVE, PAGE_READWRITE, NULL);
    FREE_OK(r, 0, MEM_RELEASE);
    REGION(r, r, NULL, 0, ANY, MEM_FREE, PAGE_NOACCESS, 0);
    /* fully decommitted again */
    char *d = ALLOC_OK(NULL, 3 * PG, MEM_RESERVE | MEM_COMMIT, PAGE_READWRITE, NULL);
    FREE_OK(d, 0, MEM_DECOMMIT);
    FREE_OK(d, 0, MEM_RELEASE);
    REGION(d, d, NULL, 0, ANY, MEM_FREE, PAGE_NOACCESS, 0);
}

/* SPEC 2.3 MEM_RELEASE: "the address, rounded down to a page, the allocation's base": an address inside
 * the allocation's first page releases it. */
static void test_release_interior_first_page(void **state)
{
    (void)state;
    char *p = ALLOC_OK(NULL, 2 * PG, MEM_RESERVE | MEM_COMMIT, PAGE_READWRITE, NULL);
    FREE_OK(p + 100, 0, MEM_RELEASE);
    REGION(p, p, NULL, 0, ANY, MEM_FREE, PAGE_NOACCESS, 0);
    char *q = ALLOC_OK(NULL, GRAN, MEM_RESERVE, PAGE_READWRITE, NULL);
    FREE_OK(q + PG - 1, 0, MEM_RELEASE);
    REGION(q, q, NULL, 0, ANY, MEM_FREE, PAGE_NOACCESS, 0);
}

/* SPEC 2.3 table: release with size not 0 is 87; not at the base 487; in no allocation 487; NULL 87. */
static void test_release_errors(void **state)
{
    (void)state;
    char *p = ALLOC_OK(NULL, 2 * GRAN, MEM_RESERVE, PAGE_READWRITE, NULL);
    ALLOC_OK(p, 2 * PG, MEM_COMMIT, PAGE_READWRITE, p);
    fill(p, 2 * PG);
    FREE_FAILS(p, PG, MEM_RELEASE, ERROR_INVALID_PARAMETER);
    FREE_FAILS(p, 2 * GRAN, MEM_RELEASE, ERROR_INVALID_PARAMETER);
    FREE_FAILS(p, 1, MEM_RELEASE, ERROR_INVALID_PARAMETER);
    FREE_FAILS(p + PG, 0, MEM_RELEASE, ERROR_INVALID_ADDRESS);
    FREE_FAILS(p + GRAN, 0, MEM_RELEASE, ERROR_INVALID_ADDRESS);
    FREE_FAILS(p + 2 * GRAN - 1, 0, MEM_RELEASE, ERROR_INVALID_ADDRESS);
    FREE_FAILS(p + 2 * PG, 0, MEM_RELEASE, ERROR_INVALID_ADDRESS);
    FREE_FAILS(NULL, 0, MEM_RELEASE, ERROR_INVALID_PARAMETER);
    char *f = free_range(GRAN);
    FREE_FAILS(f, 0, MEM_RELEASE, ERROR_INVALID_ADDRESS);
    FREE_FAILS(f + PG, 0, MEM_RELEASE, ERROR_INVALID_ADDRESS);
    assert_pattern(p, 2 * PG);
    FREE_OK(p, 0, MEM_RELEASE);
    /* released memory is in no allocation any more */
    FREE_FAILS(p, 0, MEM_RELEASE, ERROR_INVALID_ADDRESS);
    /* the free tail of a short allocation's granule */
    char *s = ALLOC_OK(NULL, PG, MEM_RESERVE, PAGE_READWRITE, NULL);
    FREE_FAILS(s + PG, 0, MEM_RELEASE, ERROR_INVALID_ADDRESS);
    FREE_FAILS(s + GRAN - PG, 0, MEM_RELEASE, ERROR_INVALID_ADDRESS);
    FREE_OK(s, 0, MEM_RELEASE);
}

/* ---- MEM_DECOMMIT ----------------------------------------------------------------------------- */

/* SPEC 2.3 MEM_DECOMMIT, 2.7 trap 2: every page touching [address, address+size) becomes reserved and
 * loses its contents (a later commit reads zero); the other pages keep theirs. */
static void test_decommit_touching_pages(void **state)
{
    (void)state;
    char *p = ALLOC_OK(NULL, 16 * PG, MEM_RESERVE | MEM_COMMIT, PAGE_READWRITE, NULL);
    fill(p, 16 * PG);
    FREE_OK(p + 0x1800, 0x1000, MEM_DECOMMIT); /* touches pages 1 and 2 */
    REGION(p, p, p, PAGE_READWRITE, PG, MEM_COMMIT, PAGE_READWRITE, MEM_PRIVATE);
    REGION(p + PG, p + PG, p, PAGE_READWRITE, 2 * PG, MEM_RESERVE, 0, MEM_PRIVATE);
    REGION(p + 3 * PG, p + 3 * PG, p, PAGE_READWRITE, 13 * PG, MEM_COMMIT, PAGE_READWRITE, MEM_PRIVATE);
    assert_int_equal(tu_readable(p + PG), 0);
    assert_int_equal(tu_readable(p + 3 * PG - 1), 0);
    assert_pattern(p, PG);
    for (SIZE_T i = 3 * PG; i < 16 * PG; i++) assert_int_equal((unsigned char)p[i], pattern(i));

    FREE_OK(p + 5 * PG + 1, 1, MEM_DECOMMIT); /* page 5 only */
    REGION(p + 4 * PG, p + 4 * PG, p, PAGE_READWRITE, PG, MEM_COMMIT, PAGE_READWRITE, MEM_PRIVATE);
    REGION(p + 5 * PG, p + 5 * PG, p, PAGE_READWRITE, PG, MEM_RESERVE, 0, MEM_PRIVATE);
    REGION(p + 6 * PG, p + 6 * PG, p, PAGE_READWRITE, 10 * PG, MEM_COMMIT, PAGE_READWRITE, MEM_PRIVATE);

    FREE_OK(p + 8 * PG - 1, 2, MEM_DECOMMIT); /* straddles: pages 7 and 8 */
    REGION(p + 7 * PG, p + 7 * PG, p, PAGE_READWRITE, 2 * PG, MEM_RESERVE, 0, MEM_PRIVATE);

    /* contents are gone: a commit reads zero */
    ALLOC_OK(p + PG, 8 * PG, MEM_COMMIT, PAGE_READWRITE, p + PG);
    assert_zero(p + PG, 2 * PG);
    assert_zero(p + 5 * PG, PG);
    assert_zero(p + 7 * PG, 2 * PG);
    for (SIZE_T i = 3 * PG; i < 5 * PG; i++) assert_int_equal((unsigned char)p[i], pattern(i));
    assert_int_equal((unsigned char)p[6 * PG], pattern(6 * PG));
    REGION(p, p, p, PAGE_READWRITE, 16 * PG, MEM_COMMIT, PAGE_READWRITE, MEM_PRIVATE);
    FREE_OK(p, 0, MEM_RELEASE);
}

/* SPEC 2.3 MEM_DECOMMIT: "whatever it was": decommitting reserved pages succeeds; mixed ranges too;
 * any protection (NOACCESS, READONLY) is decommitted. */
static void test_decommit_reserved_and_mixed(void **state)
{
    (void)state;
    char *p = ALLOC_OK(NULL, GRAN, MEM_RESERVE, PAGE_READWRITE, NULL);
    FREE_OK(p, 4 * PG, MEM_DECOMMIT);
    REGION(p, p, p, PAGE_READWRITE, GRAN, MEM_RESERVE, 0, MEM_PRIVATE);
    ALLOC_OK(p + PG, PG, MEM_COMMIT, PAGE_NOACCESS, p + PG);
    ALLOC_OK(p + 3 * PG, PG, MEM_COMMIT, PAGE_READONLY, p + 3 * PG);
    FREE_OK(p, 5 * PG, MEM_DECOMMIT);
    REGION(p, p, p, PAGE_READWRITE, GRAN, MEM_RESERVE, 0, MEM_PRIVATE);
    /* twice in a row */
    FREE_OK(p, 5 * PG, MEM_DECOMMIT);
    REGION(p, p, p, PAGE_READWRITE, GRAN, MEM_RESERVE, 0, MEM_PRIVATE);
    FREE_OK(p, 0, MEM_RELEASE);
}

/* SPEC 2.3 MEM_DECOMMIT: size 0 at the base decommits the whole allocation (which stays reserved). */
static void test_decommit_size0_at_base(void **state)
{
    (void)state;
    char *p = ALLOC_OK(NULL, 3 * GRAN, MEM_RESERVE, PAGE_READONLY, NULL);
    ALLOC_OK(p, PG, MEM_COMMIT, PAGE_READWRITE, p);
    ALLOC_OK(p + GRAN, GRAN, MEM_COMMIT, PAGE_READWRITE, p + GRAN);
    ALLOC_OK(p + 3 * GRAN - PG, PG, MEM_COMMIT, PAGE_EXECUTE_READ, p + 3 * GRAN - PG);
    fill(p + GRAN, GRAN);
    FREE_OK(p, 0, MEM_DECOMMIT);
    REGION(p, p, p, PAGE_READONLY, 3 * GRAN, MEM_RESERVE, 0, MEM_PRIVATE);
    REGION(p + 3 * GRAN - 1, p + 3 * GRAN - PG, p, PAGE_READONLY, PG, MEM_RESERVE, 0, MEM_PRIVATE);
    ALLOC_OK(p, 3 * GRAN, MEM_COMMIT, PAGE_READWRITE, p);
    assert_zero(p, 3 * GRAN);
    FREE_OK(p, 0, MEM_RELEASE);
}

/* SPEC 2.3 table: size-0 decommit not at the base 487; decommit past the allocation's end 87; address in
 * no allocation 487; NULL 87. Nothing changes. */
static void test_decommit_errors(void **state)
{
    (void)state;
    char *p = ALLOC_OK(NULL, GRAN, MEM_RESERVE | MEM_COMMIT, PAGE_READWRITE, NULL);
    fill(p, GRAN);
    FREE_FAILS(p + PG, 0, MEM_DECOMMIT, ERROR_INVALID_ADDRESS);
    FREE_FAILS(p + GRAN - PG, 0, MEM_DECOMMIT, ERROR_INVALID_ADDRESS);
    FREE_FAILS(p + GRAN - PG, 2 * PG, MEM_DECOMMIT, ERROR_INVALID_PARAMETER);
    FREE_FAILS(p, GRAN + 1, MEM_DECOMMIT, ERROR_INVALID_PARAMETER);
    FREE_FAILS(p, 2 * GRAN, MEM_DECOMMIT, ERROR_INVALID_PARAMETER);
    FREE_FAILS(p + GRAN - 1, 2, MEM_DECOMMIT, ERROR_INVALID_PARAMETER);
    FREE_FAILS(NULL, 0, MEM_DECOMMIT, ERROR_INVALID_PARAMETER);
    FREE_FAILS(NULL, PG, MEM_DECOMMIT, ERROR_INVALID_PARAMETER);
    char *f = free_range(GRAN);
    FREE_FAILS(f, PG, MEM_DECOMMIT, ERROR_INVALID_ADDRESS);
    FREE_FAILS(f + 0x123, 0, MEM_DECOMMIT, ERROR_INVALID_ADDRESS);
    assert_pattern(p, GRAN);
    FREE_OK(p, 0, MEM_RELEASE);

    /* a short allocation: decommit into the unusable tail of its granule runs past its end */
    char *s = ALLOC_OK(NULL, 2 * PG, MEM_RESERVE | MEM_COMMIT, PAGE_READWRITE, NULL);
    FREE_FAILS(s + PG, 2 * PG, MEM_DECOMMIT, ERROR_INVALID_PARAMETER);
    FREE_FAILS(s + 2 * PG, PG, MEM_DECOMMIT, ERROR_INVALID_ADDRESS);
    FREE_OK(s, 0, MEM_RELEASE);

    /* two adjacent allocations: a range across both runs past the first one's end */
    char *x = free_range(2 * GRAN);
    ALLOC_OK(x, GRAN, MEM_RESERVE | MEM_COMMIT, PAGE_READWRITE, x);
    ALLOC_OK(x + GRAN, GRAN, MEM_RESERVE | MEM_COMMIT, PAGE_READWRITE, x + GRAN);
    FREE_FAILS(x + GRAN - PG, 2 * PG, MEM_DECOMMIT, ERROR_INVALID_PARAMETER);
    FREE_FAILS(x, 2 * GRAN, MEM_DECOMMIT, ERROR_INVALID_PARAMETER);
    /* release with a size is 87 even when it names both allocations exactly */
    FREE_FAILS(x, 2 * GRAN, MEM_RELEASE, ERROR_INVALID_PARAMETER);
    FREE_OK(x + GRAN, 0, MEM_RELEASE);
    FREE_OK(x, 0, MEM_RELEASE);
}

/* SPEC 2.3 table: free type 0, MEM_FREE, MEM_DECOMMIT|MEM_RELEASE and any other value are 87. */
static void test_free_type_errors(void **state)
{
    (void)state;
    static const DWORD bad[] = {0,
                                MEM_FREE,
                                MEM_DECOMMIT | MEM_RELEASE,
                                MEM_COMMIT,
                                MEM_RESERVE,
                                MEM_RESET,
                                MEM_DECOMMIT | MEM_FREE,
                                MEM_RELEASE | MEM_FREE,
                                MEM_DECOMMIT | 0x80000000u,
                                MEM_RELEASE | 0x80000000u,
                                MEM_RELEASE | MEM_COMMIT,
                                MEM_DECOMMIT | MEM_RESERVE,
                                0x10,
                                0xFFFFFFFFu};
    char *p = ALLOC_OK(NULL, GRAN, MEM_RESERVE, PAGE_READWRITE, NULL);
    ALLOC_OK(p, 2 * PG, MEM_COMMIT, PAGE_READWRITE, p);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        FREE_FAILS(p, 0, bad[i], ERROR_INVALID_PARAMETER);
        FREE_FAILS(p, PG, bad[i], ERROR_INVALID_PARAMETER);
        FREE_FAILS(p + PG, PG, bad[i], ERROR_INVALID_PARAMETER);
    }
    FREE_OK(p, 0, MEM_RELEASE);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_release_whole_allocation),
        cmocka_unit_test(test_release_interior_first_page),
        cmocka_unit_test(test_release_errors),
        cmocka_unit_test(test_decommit_touching_pages),
        cmocka_unit_test(test_decommit_reserved_and_mixed),
        cmocka_unit_test(test_decommit_size0_at_base),
        cmocka_unit_test(test_decommit_errors),
        cmocka_unit_test(test_free_type_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
