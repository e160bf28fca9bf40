/* smoke.c — the library starts, reserves, commits, queries and releases. */
#include "testutil.h"
#include "vmap/vmap.h"

static void test_cycle(void **state)
{
    (void)state;
    void *p = NULL;
    assert_int_equal(hm_init(), HM_OK);
    assert_int_equal(hm_reserve(NULL, 1 << 20, &p), HM_OK);
    assert_non_null(p);
    assert_int_equal((uintptr_t)p % 65536, 0);
    assert_int_equal(tu_readable(p), 0);
    assert_int_equal(hm_commit(NULL, p, 4096, HM_PAGE_READWRITE), HM_OK);
    assert_int_equal(tu_writable(p), 1);
    hm_region r;
    assert_int_equal(hm_virtual_query(NULL, p, &r), HM_OK);
    assert_int_equal(r.state, HM_MEM_COMMIT);
    assert_int_equal(r.size, 4096);
    assert_int_equal(hm_virtual_protect(NULL, (char *)p + 4096 * 0, 4096, HM_PAGE_READONLY, &(uint32_t){0}), HM_OK);
    assert_int_equal(hm_commit(NULL, (char *)p + 8192, 8192, HM_PAGE_EXECUTE_READ), HM_OK);
    if (hm_vmap_check(true) != HM_OK) fail_msg("%s", hm_last_detail());
    assert_int_equal(hm_release(NULL, p), HM_OK);
    if (hm_vmap_check(true) != HM_OK) fail_msg("%s", hm_last_detail());
    assert_int_equal(hm_virtual_query(NULL, p, &r), HM_OK);
    assert_int_equal(r.state, HM_MEM_FREE);
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_cycle)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
