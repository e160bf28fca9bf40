/* api_status.c — the hm_* C API: status values and conversions, names and messages, out-pointer checks, failure details, conveniences, statistics and the manager argument. */
#include <hostmem/hostmem.h>
#include <pthread.h>

#include "win32_testutil.h"

#define EXPECT_STATUS(call, expect) \
    do { \
        tu_snapshot_take(&snap_before); \
        hm_status s_ = (call); \
        if (s_ != (hm_status)(expect)) \
            fail_msg("line %d: %s = %#x (%s), expected %#x", __LINE__, #call, (unsigned)s_, hm_status_name(s_), \
                     (unsigned)(expect)); \
        snap_check_unchanged(__LINE__); \
    } while (0)

/* SPEC 1.1: the status values are HRESULTs with Microsoft's values. */
static void test_status_values(void **state)
{
    (void)state;
    assert_int_equal(HM_OK, 0);
    assert_int_equal((uint32_t)HM_E_INVALID_PARAMETER, 0x80070057u);
    assert_int_equal((uint32_t)HM_E_INVALIDARG, 0x80070057u);
    assert_int_equal((uint32_t)HM_E_INVALID_ADDRESS, 0x800701E7u);
    assert_int_equal((uint32_t)HM_E_NOT_ENOUGH_MEMORY, 0x80070008u);
    assert_int_equal((uint32_t)HM_E_BAD_LENGTH, 0x80070018u);
    assert_int_equal((uint32_t)HM_E_NOT_SUPPORTED, 0x80070032u);
    assert_int_equal((uint32_t)HM_E_NOACCESS, 0x800703E6u);
    assert_int_equal((uint32_t)HM_E_COMMITMENT_LIMIT, 0x800705AFu);
    assert_int_equal((uint32_t)HM_E_NOTIMPL, 0x80004001u);
    assert_int_equal((uint32_t)HM_E_NOINTERFACE, 0x80004002u);
    assert_int_equal((uint32_t)HM_E_POINTER, 0x80004003u);
    assert_int_equal((uint32_t)HM_E_FAIL, 0x80004005u);
    assert_int_equal((uint32_t)HM_E_OUTOFMEMORY, 0x8007000Eu);
    assert_int_equal((uint32_t)HM_E_HOST_INVALIDOPERATION, 0x80131022u);
    assert_int_equal((uint32_t)HM_E_HOST_CLRNOTAVAILABLE, 0x80131023u);
    assert_int_equal((uint32_t)HM_E_HOST_TIMEOUT, 0x80131024u);
    assert_int_equal((uint32_t)HM_E_HOST_NOT_OWNER, 0x80131025u);
    assert_int_equal((uint32_t)HM_E_HOST_ABANDONED, 0x80131026u);
    /* HRESULT_FROM_WIN32: 0x80070000 | e for e > 0; 0 stays 0 */
    assert_int_equal((uint32_t)HM_STATUS_FROM_WIN32(87), 0x80070057u);
    assert_int_equal((uint32_t)HM_STATUS_FROM_WIN32(487), 0x800701E7u);
    assert_int_equal((uint32_t)HM_STATUS_FROM_WIN32(0), 0);
    /* failure iff bit 31 */
    assert_true(HM_FAILED(HM_E_INVALID_PARAMETER));
    assert_true(HM_FAILED(HM_E_FAIL));
    assert_true(HM_SUCCEEDED(HM_OK));
    assert_true(HM_SUCCEEDED((hm_status)1)); /* S_FALSE is a success code */
    assert_false(HM_FAILED(HM_OK));
    assert_int_equal(sizeof(hm_status), 4);
}

/* SPEC 1.1: the Win32 last error a status stands for. */
static void test_status_win32_error(void **state)
{
    (void)state;
    assert_int_equal(hm_status_win32_error(HM_OK), 0);
    assert_int_equal(hm_status_win32_error((hm_status)1), 0);
    assert_int_equal(hm_status_win32_error(HM_E_INVALID_PARAMETER), 87);
    assert_int_equal(hm_status_win32_error(HM_E_INVALID_ADDRESS), 487);
    assert_int_equal(hm_status_win32_error(HM_E_NOT_ENOUGH_MEMORY), 8);
    assert_int_equal(hm_status_win32_error(HM_E_COMMITMENT_LIMIT), 1455);
    assert_int_equal(hm_status_win32_error(HM_E_BAD_LENGTH), 24);
    assert_int_equal(hm_status_win32_error(HM_E_NOACCESS), 998);
    assert_int_equal(hm_status_win32_error(HM_E_NOT_SUPPORTED), 50);
    assert_int_equal(hm_status_win32_error(HM_STATUS_FROM_WIN32(1234)), 1234);
    /* every failure maps to some non-zero error */
    static const hm_status others[] = {HM_E_NOTIMPL, HM_E_NOINTERFACE, HM_E_POINTER, HM_E_FAIL, HM_E_OUTOFMEMORY,
                                       HM_E_HOST_INVALIDOPERATION, HM_E_HOST_CLRNOTAVAILABLE, HM_E_HOST_TIMEOUT,
                                       HM_E_HOST_NOT_OWNER, HM_E_HOST_ABANDONED, (hm_status)0x80000000u,
                                       (hm_status)0xC0000005u};
    for (size_t i = 0; i < sizeof others / sizeof others[0]; i++) assert_int_not_equal(hm_status_win32_error(others[i]), 0);
}

/* SPEC 1.1: the COM HRESULT: memory refusals (8 and 1455) become E_OUTOFMEMORY; the rest stay. */
static void test_status_hresult(void **state)
{
    (void)state;
    assert_int_equal((uint32_t)hm_status_hresult(HM_E_NOT_ENOUGH_MEMORY), 0x8007000Eu);
    assert_int_equal((uint32_t)hm_status_hresult(HM_E_COMMITMENT_LIMIT), 0x8007000Eu);
    assert_int_equal((uint32_t)hm_status_hresult(HM_E_OUTOFMEMORY), 0x8007000Eu);
    assert_int_equal(hm_status_hresult(HM_OK), 0);
    assert_int_equal((uint32_t)hm_status_hresult(HM_E_INVALID_PARAMETER), 0x80070057u);
    assert_int_equal((uint32_t)hm_status_hresult(HM_E_INVALID_ADDRESS), 0x800701E7u);
    assert_int_equal((uint32_t)hm_status_hresult(HM_E_NOACCESS), 0x800703E6u);
    assert_int_equal((uint32_t)hm_status_hresult(HM_E_POINTER), 0x80004003u);
    assert_int_equal((uint32_t)hm_status_hresult(HM_E_FAIL), 0x80004005u);
    assert_int_equal((uint32_t)hm_status_hresult(HM_E_HOST_NOT_OWNER), 0x80131025u);
}

/* hostmem.h: names and messages are never NULL (nor empty), known or not. */
static void test_status_names_messages(void **state)
{
    (void)state;
    static const hm_status all[] = {HM_OK, HM_E_NOT_ENOUGH_MEMORY, HM_E_BAD_LENGTH, HM_E_NOT_SUPPORTED,
                                    HM_E_INVALID_PARAMETER, HM_E_INVALID_ADDRESS, HM_E_NOACCESS,
                                    HM_E_COMMITMENT_LIMIT, HM_E_NOTIMPL, HM_E_NOINTERFACE, HM_E_POINTER, HM_E_FAIL,
                                    HM_E_OUTOFMEMORY, HM_E_HOST_INVALIDOPERATION, HM_E_HOST_CLRNOTAVAILABLE,
                                    HM_E_HOST_TIMEOUT, HM_E_HOST_NOT_OWNER, HM_E_HOST_ABANDONED, (hm_status)1,
                                    (hm_status)0x12345678, (hm_status)-1, (hm_status)0x80070000u,
                                    HM_STATUS_FROM_WIN32(999), (hm_status)0x80000000u, (hm_status)0xC0000005u};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) {
        const char *n = hm_status_name(all[i]), *m = hm_status_message(all[i]);
        assert_non_null(n);
        assert_non_null(m);
        assert_true(strlen(n) > 0);
        assert_true(strlen(m) > 0);
    }
    assert_string_equal(hm_status_name(HM_E_INVALID_ADDRESS), "ERROR_INVALID_ADDRESS");
    assert_string_equal(hm_status_name(HM_E_FAIL), "E_FAIL");
    /* distinct known codes have distinct names */
    assert_string_not_equal(hm_status_name(HM_E_INVALID_PARAMETER), hm_status_name(HM_E_INVALID_ADDRESS));
    assert_string_not_equal(hm_status_name(HM_E_NOT_ENOUGH_MEMORY), hm_status_name(HM_E_COMMITMENT_LIMIT));
}

static int walk_count(const hm_region *r, void *arg)
{
    (void)r;
    ++*(size_t *)arg;
    return 0;
}

/* hostmem.h: a NULL out-pointer is HM_E_POINTER (HM_E_NOACCESS for VirtualProtect's old protection, as
 * the Win32 rule 998), and nothing changes. */
static void test_null_out_pointers(void **state)
{
    (void)state;
    void *p = NULL;
    assert_int_equal(hm_reserve(NULL, GRAN, &p), HM_OK);
    EXPECT_STATUS(hm_virtual_alloc(NULL, NULL, GRAN, HM_MEM_RESERVE, HM_PAGE_READWRITE, NULL), HM_E_POINTER);
    EXPECT_STATUS(hm_virtual_alloc(NULL, p, PG, HM_MEM_COMMIT, HM_PAGE_READWRITE, NULL), HM_E_POINTER);
    EXPECT_STATUS(hm_reserve(NULL, GRAN, NULL), HM_E_POINTER);
    EXPECT_STATUS(hm_virtual_query(NULL, p, NULL), HM_E_POINTER);
    EXPECT_STATUS(hm_vm_walk(NULL, NULL, NULL), HM_E_POINTER);
    assert_int_equal(hm_commit(NULL, p, PG, HM_PAGE_READWRITE), HM_OK);
    EXPECT_STATUS(hm_virtual_protect(NULL, p, PG, HM_PAGE_READONLY, NULL), HM_E_NOACCESS);
    assert_int_equal(tu_writable(p), 1);
    assert_int_equal(hm_release(NULL, p), HM_OK);
    /* the stats pointer and the system info pointer may be NULL without harm */
    hm_vm_get_stats(NULL);
    hm_get_system_info(NULL);
}

/* hostmem.h: hm_last_detail is non-empty after a failure. */
static void test_last_detail(void **state)
{
    (void)state;
    void *p = (void *)1;
    assert_int_equal(hm_virtual_alloc(NULL, NULL, 0, HM_MEM_RESERVE, HM_PAGE_READWRITE, &p), HM_E_INVALID_PARAMETER);
    assert_null(p);
    assert_non_null(hm_last_detail());
    assert_true(strlen(hm_last_detail()) > 0);
    void *q = NULL;
    assert_int_equal(hm_reserve(NULL, GRAN, &q), HM_OK);
    assert_int_equal(hm_virtual_free(NULL, (char *)q + PG, 0, HM_MEM_RELEASE), HM_E_INVALID_ADDRESS);
    assert_true(strlen(hm_last_detail()) > 0);
    assert_int_equal(hm_release(NULL, q), HM_OK);
    /* a layer over hostmem sets its own (truncated to 255 bytes, never overflowing) */
    hm_set_last_detail("adapter: %s %d", "refused", 42);
    assert_string_equal(hm_last_detail(), "adapter: refused 42");
    char long_text[600];
    memset(long_text, 'x', sizeof long_text - 1);
    long_text[sizeof long_text - 1] = 0;
    hm_set_last_detail("%s", long_text);
    assert_int_equal(strlen(hm_last_detail()), 255);
}

static void *thread_detail_empty(void *arg)
{
    int *ok = arg;
    const char *d = hm_last_detail();
    *ok = d != NULL && d[0] == 0;
    return NULL;
}

/* hostmem.h: the detail is per thread: a new thread starts with "". */
static void test_last_detail_per_thread(void **state)
{
    (void)state;
    void *p = NULL;
    assert_int_equal(hm_virtual_alloc(NULL, NULL, 0, HM_MEM_RESERVE, HM_PAGE_READWRITE, &p), HM_E_INVALID_PARAMETER);
    assert_true(strlen(hm_last_detail()) > 0);
    int ok = 0;
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, thread_detail_empty, &ok), 0);
    assert_int_equal(pthread_join(t, NULL), 0);
    assert_true(ok);
    assert_true(strlen(hm_last_detail()) > 0);
}

/* hostmem.h, SPEC 2.2-2.5: the conveniences are the Win32 calls: reserve (64 KiB aligned, reserved),
 * commit (zero, writable), decommit (reserved again), release (free); failures return the Win32 status
 * and *base is NULL. */
static void test_conveniences(void **state)
{
    (void)state;
    assert_int_equal(hm_init(), HM_OK);
    void *p = NULL;
    assert_int_equal(hm_reserve(NULL, 3 * GRAN, &p), HM_OK);
    assert_non_null(p);
    assert_int_equal((uintptr_t)p % GRAN, 0);
    hm_region r;
    assert_int_equal(hm_virtual_query(NULL, p, &r), HM_OK);
    assert_ptr_equal(r.base, p);
    assert_ptr_equal(r.allocation_base, p);
    assert_int_equal(r.state, HM_MEM_RESERVE);
    assert_int_equal(r.protect, 0);
    assert_int_equal(r.size, 3 * GRAN);
    assert_int_equal(r.type, HM_MEM_PRIVATE);
    assert_int_equal(tu_readable(p), 0);

    assert_int_equal(hm_commit(NULL, (char *)p + GRAN, 2 * PG, HM_PAGE_READWRITE), HM_OK);
    assert_int_equal(hm_virtual_query(NULL, (char *)p + GRAN, &r), HM_OK);
    assert_int_equal(r.state, HM_MEM_COMMIT);
    assert_int_equal(r.protect, HM_PAGE_READWRITE);
    assert_int_equal(r.size, 2 * PG);
    assert_int_equal(((char *)p)[GRAN], 0);
    ((char *)p)[GRAN] = 7;
    assert_int_equal(tu_writable((char *)p + GRAN + PG), 1);

    assert_int_equal(hm_decommit(NULL, (char *)p + GRAN, PG), HM_OK);
    assert_int_equal(hm_virtual_query(NULL, (char *)p + GRAN, &r), HM_OK);
    assert_int_equal(r.state, HM_MEM_RESERVE);
    assert_int_equal(r.size, PG);
    assert_int_equal(hm_commit(NULL, (char *)p + GRAN, PG, HM_PAGE_READWRITE), HM_OK);
    assert_int_equal(((char *)p)[GRAN], 0);

    uint32_t old = 0;
    assert_int_equal(hm_virtual_protect(NULL, (char *)p + GRAN, PG, HM_PAGE_READONLY, &old), HM_OK);
    assert_int_equal(old, HM_PAGE_READWRITE);

    /* failures: the Win32 errors as statuses, nothing changed */
    EXPECT_STATUS(hm_commit(NULL, (char *)p + 3 * GRAN - PG, 2 * PG, HM_PAGE_READWRITE), HM_E_INVALID_ADDRESS);
    EXPECT_STATUS(hm_commit(NULL, p, PG, HM_PAGE_WRITECOPY), HM_E_INVALID_PARAMETER);
    EXPECT_STATUS(hm_decommit(NULL, (char *)p + 3 * GRAN - PG, 2 * PG), HM_E_INVALID_PARAMETER);
    EXPECT_STATUS(hm_release(NULL, (char *)p + GRAN), HM_E_INVALID_ADDRESS);
    EXPECT_STATUS(hm_release(NULL, NULL), HM_E_INVALID_PARAMETER);
    EXPECT_STATUS(hm_virtual_protect(NULL, p, PG, HM_PAGE_READONLY, &old), HM_E_INVALID_ADDRESS);
    void *b = (void *)1;
    EXPECT_STATUS(hm_reserve(NULL, 0, &b), HM_E_INVALID_PARAMETER);
    assert_null(b);
    b = (void *)1;
    EXPECT_STATUS(hm_virtual_alloc(NULL, p, GRAN, HM_MEM_RESERVE, HM_PAGE_READWRITE, &b), HM_E_INVALID_ADDRESS);
    assert_null(b);
    EXPECT_STATUS(hm_virtual_query(NULL, (void *)-4096, &r), HM_E_INVALID_PARAMETER);

    assert_int_equal(hm_release(NULL, p), HM_OK);
    assert_int_equal(hm_virtual_query(NULL, p, &r), HM_OK);
    assert_int_equal(r.state, HM_MEM_FREE);
    assert_null(r.allocation_base);
    EXPECT_STATUS(hm_release(NULL, p), HM_E_INVALID_ADDRESS);
}

/* hostmem.h: hm_vm_get_stats counts live allocations, reserved and committed bytes (SPEC 3.2 charge:
 * recommitting costs nothing more, MEM_RESET does not change it, decommit and release give it back). */
static void test_stats(void **state)
{
    (void)state;
    hm_vm_stats s0, s;
    hm_vm_get_stats(&s0);
    void *p = NULL, *q = NULL, *b = NULL;
    assert_int_equal(hm_reserve(NULL, 4 * GRAN, &p), HM_OK);
    hm_vm_get_stats(&s);
    assert_int_equal(s.allocations, s0.allocations + 1);
    assert_int_equal(s.reserved_bytes, s0.reserved_bytes + 4 * GRAN);
    assert_int_equal(s.committed_bytes, s0.committed_bytes);

    assert_int_equal(hm_commit(NULL, p, 3 * PG, HM_PAGE_READWRITE), HM_OK);
    hm_vm_get_stats(&s);
    assert_int_equal(s.committed_bytes, s0.committed_bytes + 3 * PG);
    /* recommitting committed pages: no change; one more page: one more page */
    assert_int_equal(hm_commit(NULL, p, 4 * PG, HM_PAGE_READONLY), HM_OK);
    hm_vm_get_stats(&s);
    assert_int_equal(s.committed_bytes, s0.committed_bytes + 4 * PG);
    /* MEM_RESET: no change */
    assert_int_equal(hm_virtual_alloc(NULL, p, 4 * PG, HM_MEM_RESET, HM_PAGE_NOACCESS, &b), HM_OK);
    hm_vm_get_stats(&s);
    assert_int_equal(s.committed_bytes, s0.committed_bytes + 4 * PG);
    /* reserve+commit in one call */
    assert_int_equal(hm_virtual_alloc(NULL, NULL, 5 * PG, HM_MEM_RESERVE | HM_MEM_COMMIT, HM_PAGE_READWRITE, &q), HM_OK);
    hm_vm_get_stats(&s);
    assert_int_equal(s.allocations, s0.allocations + 2);
    assert_int_equal(s.reserved_bytes, s0.reserved_bytes + 4 * GRAN + 5 * PG);
    assert_int_equal(s.committed_bytes, s0.committed_bytes + 9 * PG);
    /* a failed call: no change */
    void *f = NULL;
    assert_int_equal(hm_virtual_alloc(NULL, p, 4 * GRAN + PG, HM_MEM_COMMIT, HM_PAGE_READWRITE, &f), HM_E_INVALID_ADDRESS);
    hm_vm_stats s2;
    hm_vm_get_stats(&s2);
    assert_int_equal(s2.allocations, s.allocations);
    assert_int_equal(s2.committed_bytes, s.committed_bytes);
    assert_int_equal(s2.reserved_bytes, s.reserved_bytes);
    /* decommit (partly reserved range) gives back the committed pages only */
    assert_int_equal(hm_decommit(NULL, (char *)p + 2 * PG, 4 * PG), HM_OK);
    hm_vm_get_stats(&s);
    assert_int_equal(s.committed_bytes, s0.committed_bytes + 7 * PG);
    /* release gives back everything */
    assert_int_equal(hm_release(NULL, q), HM_OK);
    hm_vm_get_stats(&s);
    assert_int_equal(s.allocations, s0.allocations + 1);
    assert_int_equal(s.committed_bytes, s0.committed_bytes + 2 * PG);
    assert_int_equal(hm_release(NULL, p), HM_OK);
    hm_vm_get_stats(&s);
    assert_int_equal(s.allocations, s0.allocations);
    assert_int_equal(s.reserved_bytes, s0.reserved_bytes);
    assert_int_equal(s.committed_bytes, s0.committed_bytes);
    assert_true(s.metadata_peak >= s.metadata_bytes);
    hm_vm_reset_peak();
    hm_vm_get_stats(&s);
    assert_int_equal(s.metadata_peak, s.metadata_bytes);
}

/* hostmem.h: this version has only the process-default manager: a non-NULL hm_manager is refused with
 * HM_E_INVALID_PARAMETER and nothing changes. */
/* SPEC 3.1: a second manager sees and changes only its own allocations; the default's are not its. */
static void test_other_manager_not_owner(void **state)
{
    (void)state;
    hm_manager *m = NULL;
    assert_int_equal(hm_manager_create("limit=16M", &m), HM_OK);
    assert_non_null(m);
    void *p = NULL;
    assert_int_equal(hm_reserve(NULL, GRAN, &p), HM_OK);
    assert_int_equal(hm_commit(NULL, p, PG, HM_PAGE_READWRITE), HM_OK);
    EXPECT_STATUS(hm_commit(m, (char *)p + PG, PG, HM_PAGE_READWRITE), HM_E_HOST_NOT_OWNER);
    EXPECT_STATUS(hm_decommit(m, p, PG), HM_E_HOST_NOT_OWNER);
    EXPECT_STATUS(hm_release(m, p), HM_E_HOST_NOT_OWNER);
    EXPECT_STATUS(hm_virtual_free(m, p, 0, HM_MEM_RELEASE), HM_E_HOST_NOT_OWNER);
    uint32_t old = 0;
    EXPECT_STATUS(hm_virtual_protect(m, p, PG, HM_PAGE_READONLY, &old), HM_E_HOST_NOT_OWNER);
    hm_region r;
    EXPECT_STATUS(hm_virtual_query(m, p, &r), HM_E_HOST_NOT_OWNER);
    assert_true(strlen(hm_last_detail()) > 0);
    void *q = NULL;
    assert_int_equal(hm_reserve(m, GRAN, &q), HM_OK);
    EXPECT_STATUS(hm_virtual_query(NULL, q, &r), HM_E_HOST_NOT_OWNER);
    size_t n = 0;
    assert_int_equal(hm_vm_walk(m, walk_count, &n), HM_OK);
    assert_int_equal(n, 1); /* its one reservation, not the default manager's */
    assert_int_equal(hm_manager_destroy(m), HM_OK);
    assert_int_equal(hm_virtual_query(NULL, q, &r), HM_OK);
    assert_int_equal(r.state, HM_MEM_FREE);
    assert_int_equal(tu_writable(p), 1);
    assert_int_equal(hm_release(NULL, p), HM_OK);
}

/* hostmem.h: hm_vm_walk reports every region of every allocation in address order, as queries would. */
static void test_walk(void **state)
{
    (void)state;
    size_t n0 = 0, n1 = 0;
    assert_int_equal(hm_vm_walk(NULL, walk_count, &n0), HM_OK);
    void *p = NULL;
    assert_int_equal(hm_reserve(NULL, GRAN, &p), HM_OK);
    assert_int_equal(hm_commit(NULL, (char *)p + PG, PG, HM_PAGE_READWRITE), HM_OK);
    assert_int_equal(hm_vm_walk(NULL, walk_count, &n1), HM_OK);
    assert_int_equal(n1, n0 + 3);
    tu_snapshot_take(&snap_before);
    for (size_t i = 1; i < snap_before.n; i++)
        assert_true((char *)snap_before.r[i].base >= (char *)snap_before.r[i - 1].base + snap_before.r[i - 1].size);
    assert_int_equal(hm_release(NULL, p), HM_OK);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_status_values),
        cmocka_unit_test(test_status_win32_error),
        cmocka_unit_test(test_status_hresult),
        cmocka_unit_test(test_status_names_messages),
        cmocka_unit_test(test_null_out_pointers),
        cmocka_unit_test(test_last_detail),
        cmocka_unit_test(test_last_detail_per_thread),
        cmocka_unit_test(test_conveniences),
        cmocka_unit_test(test_stats),
        cmocka_unit_test(test_other_manager_not_owner),
        cmocka_unit_test(test_walk),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
