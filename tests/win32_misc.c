/* win32_misc.c — GetSystemInfo, GetLargePageMinimum, per-thread last error, write-watch argument errors, Windows type widths and constants. */
#include <hostmem/win32.h>
#include <pthread.h>

#include "win32_testutil.h"

/* SPEC 2.1, 5: GetSystemInfo reports 4 KiB pages, 64 KiB granularity, 0x10000 as the lowest address, the
 * highest user address, and at least one processor. */
static void test_system_info(void **state)
{
    (void)state;
    SYSTEM_INFO si;
    memset(&si, 0xAB, sizeof si);
    GetSystemInfo(&si);
    assert_int_equal(si.dwPageSize, 4096);
    assert_int_equal(si.dwAllocationGranularity, 65536);
    assert_ptr_equal(si.lpMinimumApplicationAddress, (void *)0x10000);
    uintptr_t max = (uintptr_t)si.lpMaximumApplicationAddress;
    assert_true(max > 0x10000);
    assert_int_equal(max & 0xFFF, 0xFFF); /* the highest usable byte: the last byte of a page */
#if UINTPTR_MAX == 0xFFFFFFFFFFFFFFFFu
    assert_true(max >= ((uintptr_t)1 << 32)); /* a 64-bit address space */
    assert_true(max < ((uintptr_t)1 << 57));
#endif
    assert_true(si.dwNumberOfProcessors > 0);
    /* agrees with the hm_* view */
    hm_system_info hi;
    hm_get_system_info(&hi);
    assert_int_equal(hi.page_size, si.dwPageSize);
    assert_int_equal(hi.allocation_granularity, si.dwAllocationGranularity);
    assert_int_equal(hi.min_address, (uintptr_t)si.lpMinimumApplicationAddress);
    assert_int_equal(hi.max_address, max);
    assert_int_equal(hi.processors, si.dwNumberOfProcessors);
    /* the highest address is the last one VirtualQuery accepts */
    MEMORY_BASIC_INFORMATION m;
    assert_int_equal(VirtualQuery((void *)max, &m, sizeof m), sizeof m);
    SetLastError(POISON);
    assert_int_equal(VirtualQuery((void *)(max + 1), &m, sizeof m), 0);
    assert_int_equal(GetLastError(), ERROR_INVALID_PARAMETER);
    /* a second call gives the same answer */
    SYSTEM_INFO s2;
    GetSystemInfo(&s2);
    assert_int_equal(s2.dwPageSize, si.dwPageSize);
    assert_ptr_equal(s2.lpMaximumApplicationAddress, si.lpMaximumApplicationAddress);
    assert_int_equal(s2.dwNumberOfProcessors, si.dwNumberOfProcessors);
}

/* SPEC 2.1: the large-page minimum is 2 MiB. */
static void test_large_page_minimum(void **state)
{
    (void)state;
    SIZE_T l = GetLargePageMinimum();
    assert_int_equal(l, (SIZE_T)2 << 20);
    assert_int_equal(l & (l - 1), 0);
    assert_int_equal(l, hm_large_page_minimum());
}

static void *thread_last_error(void *arg)
{
    DWORD *out = arg;
    out[0] = GetLastError(); /* a new thread's own value */
    SetLastError(5678);
    out[1] = GetLastError();
    /* a failing call in this thread sets this thread's value only */
    void *p = VirtualAlloc(NULL, 0, MEM_RESERVE, PAGE_READWRITE);
    out[2] = p == NULL ? GetLastError() : 0;
    return NULL;
}

/* SPEC 5: GetLastError / SetLastError keep one value per thread; failures set the calling thread's value;
 * successful calls do not have to change it. */
static void test_last_error_per_thread(void **state)
{
    (void)state;
    SetLastError(1234);
    assert_int_equal(GetLastError(), 1234);
    SetLastError(0xdeadbeef);
    assert_int_equal(GetLastError(), 0xdeadbeef);
    SetLastError(1234);
    DWORD seen[3] = {POISON, POISON, POISON};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, thread_last_error, seen), 0);
    assert_int_equal(pthread_join(t, NULL), 0);
    assert_int_equal(seen[0], 0);
    assert_int_equal(seen[1], 5678);
    assert_int_equal(seen[2], ERROR_INVALID_PARAMETER);
    assert_int_equal(GetLastError(), 1234);
    /* a failure here sets this thread's value */
    assert_null(VirtualAlloc(NULL, 0, MEM_RESERVE, PAGE_READWRITE));
    assert_int_equal(GetLastError(), ERROR_INVALID_PARAMETER);
    SetLastError(0);
    assert_int_equal(GetLastError(), 0);
}

static void ww_result(UINT r, DWORD err, const char *what, int line)
{
    DWORD e = GetLastError();
    if (r != (UINT)-1) fail_msg("line %d: %s = %u, expected (UINT)-1", line, what, r);
    if (e != err) fail_msg("line %d: %s: last error %u, expected %u", line, what, e, err);
    snap_check_unchanged(line);
}

/* Runs before each GetWriteWatch / ResetWriteWatch failure: snapshot and poison. */
static void ww_prepare(void)
{
    tu_snapshot_take(&snap_before);
    SetLastError(POISON);
}
#define WW(call, err) \
    do { \
        ww_prepare(); \
        UINT r_ = (call); \
        ww_result(r_, (err), #call, __LINE__); \
    } while (0)

/* SPEC 2.6: GetWriteWatch / ResetWriteWatch argument errors: 998 for a NULL addresses, count or
 * granularity pointer while *count > 0; 87 for *count 0, flags other than 0 or 1, size 0 or a range that
 * is not inside one write-watched allocation (here: an ordinary one). tests/watch.c has the rest. */
static void test_write_watch_arguments(void **state)
{
    (void)state;
    char *p = VirtualAlloc(NULL, GRAN, MEM_RESERVE | MEM_COMMIT, PAGE_READWRITE);
    assert_non_null(p);
    PVOID addrs[16];
    ULONG_PTR count = 16;
    DWORD gran = 0;
    /* NULL out pointers while *count > 0: 998 */
    count = 16;
    WW(GetWriteWatch(0, p, GRAN, NULL, &count, &gran), ERROR_NOACCESS);
    count = 16;
    WW(GetWriteWatch(0, p, GRAN, addrs, &count, NULL), ERROR_NOACCESS);
    WW(GetWriteWatch(0, p, GRAN, addrs, NULL, &gran), ERROR_NOACCESS);
    count = 16;
    WW(GetWriteWatch(WRITE_WATCH_FLAG_RESET, p, GRAN, NULL, &count, NULL), ERROR_NOACCESS);
    /* *count 0: 87 */
    count = 0;
    WW(GetWriteWatch(0, p, GRAN, addrs, &count, &gran), ERROR_INVALID_PARAMETER);
    count = 0;
    WW(GetWriteWatch(0, p, GRAN, NULL, &count, &gran), ERROR_INVALID_PARAMETER);
    /* flags other than 0 or 1: 87 */
    static const DWORD bad_flags[] = {2, 3, 0x80000000u, 0xFFFFFFFFu};
    for (size_t i = 0; i < sizeof bad_flags / sizeof bad_flags[0]; i++) {
        count = 16;
        WW(GetWriteWatch(bad_flags[i], p, GRAN, addrs, &count, &gran), ERROR_INVALID_PARAMETER);
    }
    /* size 0: 87 */
    count = 16;
    WW(GetWriteWatch(0, p, 0, addrs, &count, &gran), ERROR_INVALID_PARAMETER);
    /* a range not inside one write-watched allocation: 87 (an ordinary allocation, free memory, NULL) */
    count = 16;
    WW(GetWriteWatch(0, p, GRAN, addrs, &count, &gran), ERROR_INVALID_PARAMETER);
    count = 16;
    WW(GetWriteWatch(WRITE_WATCH_FLAG_RESET, p, PG, addrs, &count, &gran), ERROR_INVALID_PARAMETER);
    count = 16;
    WW(GetWriteWatch(0, p + 2 * GRAN, GRAN, addrs, &count, &gran), ERROR_INVALID_PARAMETER);
    count = 16;
    WW(GetWriteWatch(0, NULL, GRAN, addrs, &count, &gran), ERROR_INVALID_PARAMETER);
    /* ResetWriteWatch: size 0 or a range outside a write-watched allocation: 87 */
    WW(ResetWriteWatch(p, 0), ERROR_INVALID_PARAMETER);
    WW(ResetWriteWatch(p, GRAN), ERROR_INVALID_PARAMETER);
    WW(ResetWriteWatch(p, PG), ERROR_INVALID_PARAMETER);
    WW(ResetWriteWatch(NULL, GRAN), ERROR_INVALID_PARAMETER);
    /* the allocation is untouched */
    MEMORY_BASIC_INFORMATION m;
    assert_int_equal(VirtualQuery(p, &m, sizeof m), sizeof m);
    assert_int_equal(m.State, MEM_COMMIT);
    assert_int_equal(m.RegionSize, GRAN);
    assert_true(VirtualFree(p, 0, MEM_RELEASE));
}

/* SPEC 5: the types have Windows' widths; ULONG is the same type as DWORD. */
static void test_type_widths(void **state)
{
    (void)state;
    _Static_assert(sizeof(DWORD) == 4, "DWORD");
    _Static_assert(sizeof(ULONG) == 4, "ULONG");
    _Static_assert(sizeof(WORD) == 2, "WORD");
    _Static_assert(sizeof(UINT) == 4, "UINT");
    _Static_assert(sizeof(BOOL) == 4, "BOOL");
    _Static_assert(sizeof(ULONG_PTR) == sizeof(void *), "ULONG_PTR");
    _Static_assert(sizeof(SIZE_T) == sizeof(void *), "SIZE_T");
    _Static_assert(sizeof(PVOID) == sizeof(void *), "PVOID");
    _Static_assert(_Generic((ULONG *)0, DWORD *: 1, default: 0), "ULONG is DWORD");
    _Static_assert(_Generic((PDWORD)0, DWORD *: 1, default: 0), "PDWORD");
    _Static_assert(_Generic((LPVOID)0, void *: 1, default: 0), "LPVOID");
    _Static_assert(_Generic((LPCVOID)0, const void *: 1, default: 0), "LPCVOID");
    _Static_assert(_Generic((LPSYSTEM_INFO)0, SYSTEM_INFO *: 1, default: 0), "LPSYSTEM_INFO");
    _Static_assert(_Generic((PMEMORY_BASIC_INFORMATION)0, MEMORY_BASIC_INFORMATION *: 1, default: 0), "PMBI");
    assert_int_equal(sizeof(DWORD), 4);
    assert_int_equal(sizeof(ULONG), 4);
    assert_int_equal(sizeof(WORD), 2);
    assert_int_equal(sizeof(ULONG_PTR), sizeof(void *));
    assert_int_equal(sizeof(SIZE_T), sizeof(void *));
    /* unsigned, as on Windows */
    assert_true((DWORD)-1 > 0);
    assert_true((ULONG)-1 > 0);
    assert_true((WORD)-1 > 0);
    assert_true((SIZE_T)-1 > 0);
    assert_true((ULONG_PTR)-1 > 0);
    assert_true((UINT)-1 > 0);
    assert_int_equal(TRUE, 1);
    assert_int_equal(FALSE, 0);
    /* the Windows prototypes, exactly */
    UINT (*gww)(DWORD, PVOID, SIZE_T, PVOID *, ULONG_PTR *, DWORD *) = GetWriteWatch;
    UINT (*rww)(LPVOID, SIZE_T) = ResetWriteWatch;
    LPVOID (*va)(LPVOID, SIZE_T, DWORD, DWORD) = VirtualAlloc;
    BOOL (*vf)(LPVOID, SIZE_T, DWORD) = VirtualFree;
    SIZE_T (*vq)(LPCVOID, PMEMORY_BASIC_INFORMATION, SIZE_T) = VirtualQuery;
    BOOL (*vp)(LPVOID, SIZE_T, DWORD, PDWORD) = VirtualProtect;
    DWORD (*gle)(void) = GetLastError;
    void (*sle)(DWORD) = SetLastError;
    void (*gsi)(LPSYSTEM_INFO) = GetSystemInfo;
    SIZE_T (*glpm)(void) = GetLargePageMinimum;
    assert_non_null(gww);
    assert_non_null(rww);
    assert_non_null(va);
    assert_non_null(vf);
    assert_non_null(vq);
    assert_non_null(vp);
    assert_non_null(gle);
    assert_non_null(sle);
    assert_non_null(gsi);
    assert_non_null(glpm);
}

/* SPEC 2.1, 2.5, 5: the constants have winnt.h / winerror.h values. */
static void test_constant_values(void **state)
{
    (void)state;
    assert_int_equal(MEM_COMMIT, 0x1000);
    assert_int_equal(MEM_RESERVE, 0x2000);
    assert_int_equal(MEM_DECOMMIT, 0x4000);
    assert_int_equal(MEM_RELEASE, 0x8000);
    assert_int_equal(MEM_FREE, 0x10000);
    assert_int_equal(MEM_PRIVATE, 0x20000);
    assert_int_equal(MEM_MAPPED, 0x40000);
    assert_int_equal(MEM_RESET, 0x80000);
    assert_int_equal(MEM_TOP_DOWN, 0x100000);
    assert_int_equal(MEM_WRITE_WATCH, 0x200000);
    assert_int_equal(MEM_PHYSICAL, 0x400000);
    assert_int_equal(MEM_IMAGE, 0x1000000);
    assert_int_equal(MEM_RESET_UNDO, 0x1000000);
    assert_int_equal(MEM_LARGE_PAGES, 0x20000000);
    assert_int_equal(PAGE_NOACCESS, 0x01);
    assert_int_equal(PAGE_READONLY, 0x02);
    assert_int_equal(PAGE_READWRITE, 0x04);
    assert_int_equal(PAGE_WRITECOPY, 0x08);
    assert_int_equal(PAGE_EXECUTE, 0x10);
    assert_int_equal(PAGE_EXECUTE_READ, 0x20);
    assert_int_equal(PAGE_EXECUTE_READWRITE, 0x40);
    assert_int_equal(PAGE_EXECUTE_WRITECOPY, 0x80);
    assert_int_equal(PAGE_GUARD, 0x100);
    assert_int_equal(PAGE_NOCACHE, 0x200);
    assert_int_equal(PAGE_WRITECOMBINE, 0x400);
    assert_int_equal(WRITE_WATCH_FLAG_RESET, 1);
    assert_int_equal(ERROR_NOT_ENOUGH_MEMORY, 8);
    assert_int_equal(ERROR_BAD_LENGTH, 24);
    assert_int_equal(ERROR_INVALID_PARAMETER, 87);
    assert_int_equal(ERROR_INVALID_ADDRESS, 487);
    assert_int_equal(ERROR_NOACCESS, 998);
    assert_int_equal(ERROR_COMMITMENT_LIMIT, 1455);
    assert_int_equal(STATUS_GUARD_PAGE_VIOLATION, 0x80000001u);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_system_info),
        cmocka_unit_test(test_large_page_minimum),
        cmocka_unit_test(test_last_error_per_thread),
        cmocka_unit_test(test_write_watch_arguments),
        cmocka_unit_test(test_type_widths),
        cmocka_unit_test(test_constant_values),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
