/* heap_guard.c — the heap.guard option (SPEC 4, hardening): every heap segment ends in a page that is
 * never committed, so running off the end of the last block of a segment faults; without the option
 * the segment's last page holds blocks. Also the option's syntax. */
#include "testutil.h"
#include "vmap/vmap.h"

#define SEG ((uintptr_t)4 << 20)
#define PAGE64K ((uintptr_t)64 << 10)

/* Fills one segment with 32 KiB blocks; returns the highest block address seen in the first segment. */
static uintptr_t highest_block(hm_heap *h, void **blocks, int n)
{
    uintptr_t seg = 0, high = 0;
    for (int i = 0; i < n; i++) {
        assert_int_equal(hm_heap_alloc(h, 32 << 10, HM_LEVEL_PROCESS, &blocks[i]), HM_OK);
        uintptr_t b = (uintptr_t)blocks[i];
        if (!seg) seg = b & ~(SEG - 1);
        if ((b & ~(SEG - 1)) == seg && b > high) high = b;
    }
    return high;
}

static void test_guard_on(void **state)
{
    (void)state;
    hm_manager *m;
    assert_int_equal(hm_manager_create("limit=64M,heap.guard=on", &m), HM_OK);
    hm_heap *h;
    assert_int_equal(hm_heap_create(m, HM_HEAP_THREADSAFE, &h), HM_OK);
    static void *blocks[140];
    uintptr_t high = highest_block(h, blocks, 140); /* 62 pages x 2 blocks fill a segment */
    uintptr_t seg = high & ~(SEG - 1);
    assert_true(high < seg + SEG - PAGE64K);            /* no block in the last page */
    assert_int_equal(tu_readable((void *)(seg + SEG - PAGE64K)), 0); /* the guard faults */
    assert_int_equal(tu_readable((void *)(high + (32 << 10) - 1)), 1);
    assert_int_equal(hm_heap_destroy(h), HM_OK);
    assert_int_equal(hm_manager_destroy(m), HM_OK);
}

static void test_guard_off(void **state)
{
    (void)state;
    hm_manager *m;
    assert_int_equal(hm_manager_create("limit=64M", &m), HM_OK);
    hm_heap *h;
    assert_int_equal(hm_heap_create(m, HM_HEAP_THREADSAFE, &h), HM_OK);
    static void *blocks[140];
    uintptr_t high = highest_block(h, blocks, 140);
    assert_true(high >= (high & ~(SEG - 1)) + SEG - PAGE64K); /* the last page holds blocks */
    /* Without guards, a thread-cached heap's pages read as zeros while not committed (a second Free
     * racing the first may look at a page just decommitted, heap.c segment_new); trimmed pages take no
     * write (pages that never held a block are read-write from the start: fresh_pages.c). */
    uintptr_t seg = high & ~(SEG - 1);
    for (int i = 0; i < 140; i++) assert_int_equal(hm_heap_free(h, blocks[i]), HM_OK);
    assert_int_equal(hm_heap_trim(h), HM_OK);
    unsigned char *last = (unsigned char *)(seg + SEG - PAGE64K);
    hm_region r;
    assert_int_equal(hm_virtual_query(m, last, &r), HM_OK);
    assert_int_equal(r.state, HM_MEM_RESERVE);
    assert_int_equal(tu_readable(last), 1);
    assert_int_equal(*(volatile unsigned char *)last, 0);
    assert_int_equal(tu_writable(last), 0);
    assert_int_equal(hm_vmap_check(KERNEL_CHECK), HM_OK);
    assert_int_equal(hm_heap_destroy(h), HM_OK);
    assert_int_equal(hm_manager_destroy(m), HM_OK);
}

static void test_guard_syntax(void **state)
{
    (void)state;
    const char *good[] = {"heap.guard=on", "heap.guard=OFF", "heap.guard=true", "heap.guard=0", "heap.guard=yes"};
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        hm_manager *m = NULL;
        assert_int_equal(hm_manager_create(good[i], &m), HM_OK);
        assert_int_equal(hm_manager_destroy(m), HM_OK);
    }
    hm_manager *m = (hm_manager *)1;
    assert_int_equal(hm_manager_create("heap.guard=maybe", &m), HM_E_INVALIDARG);
    assert_null(m);
    assert_non_null(strstr(hm_last_detail(), "heap.guard"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_guard_on), cmocka_unit_test(test_guard_off),
                                       cmocka_unit_test(test_guard_syntax)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
