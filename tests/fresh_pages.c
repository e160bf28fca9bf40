/* fresh_pages.c — a writable reservation (vmap.h, HM_RESERVE_WRITABLE; runs.h, HM_RUN_FRESH), what a
 * thread-cached heap's segments are:
 *   - its pages start read-write in the kernel and reserved in the books (a query says MEM_RESERVE,
 *     one region with the other reserved pages; the kernel check agrees);
 *   - committing them read-write makes no system call; at another protection, one;
 *   - once decommitted they are as any readable allocation's: PROT_READ, no write, and committing
 *     them again is a system call (whose refusal changes nothing);
 *   - its release gives the chunk space back PROT_NONE and empty, fresh pages included (a stray
 *     write into one does not survive into the next allocation there);
 *   - a heap's segment: its pages are committed with no mprotect after the segment's own. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdint.h>
#include <string.h>

#include "testutil.h"
#include "manager/manager.h"
#include "os/os.h"
#include "vmap/vmap.h"

#define PAGE ((size_t)4096)
#define GRAN ((size_t)65536)
#define TAG ((uintptr_t)0x7a90) /* (a layer's tag: nothing reads it here) */

static void expect(hm_manager *m, void *p, uint32_t state, uint32_t protect, size_t size)
{
    hm_region r;
    assert_int_equal(hm_virtual_query(m, p, &r), HM_OK);
    assert_int_equal(r.state, state);
    assert_int_equal(r.protect, protect);
    assert_int_equal(r.size, size);
}

static unsigned long mprotects(void) { return hm_os_calls(HM_OS_MPROTECT); }

static void test_fresh_pages(void **state)
{
    (void)state;
    hm_manager *m;
    assert_int_equal(hm_manager_create("limit=64M", &m), HM_OK);
    char *p;
    assert_int_equal(hm_vmap_reserve_tagged(&m->acct, GRAN, GRAN, TAG, HM_RESERVE_READABLE | HM_RESERVE_WRITABLE, (void **)&p),
                     HM_OK);
    expect(m, p, HM_MEM_RESERVE, 0, GRAN);
    assert_int_equal(tu_writable(p + 15 * PAGE), 1); /* fresh: read-write in the kernel */
    assert_int_equal(hm_vmap_check(true), HM_OK);

    /* read-write commits: no call */
    uint64_t c0 = m->acct.charge;
    unsigned long n0 = mprotects();
    void *out;
    assert_int_equal(hm_manager_alloc(m, HM_LEVEL_PROCESS, p, 4 * PAGE, HM_MEM_COMMIT, HM_PAGE_READWRITE, &out), HM_OK);
    assert_int_equal(mprotects(), n0);
    assert_int_equal(m->acct.charge - c0, 4 * PAGE);
    expect(m, p, HM_MEM_COMMIT, HM_PAGE_READWRITE, 4 * PAGE);
    expect(m, p + 4 * PAGE, HM_MEM_RESERVE, 0, 12 * PAGE);
    assert_int_equal(*(volatile unsigned char *)p, 0);
    memset(p, 0x5a, 4 * PAGE);
    assert_int_equal(hm_vmap_check(true), HM_OK);

    /* another protection: one call */
    assert_int_equal(hm_manager_alloc(m, HM_LEVEL_PROCESS, p + 4 * PAGE, 2 * PAGE, HM_MEM_COMMIT, HM_PAGE_READONLY, &out), HM_OK);
    assert_int_equal(mprotects(), n0 + 1);
    expect(m, p + 4 * PAGE, HM_MEM_COMMIT, HM_PAGE_READONLY, 2 * PAGE);
    assert_int_equal(tu_writable(p + 4 * PAGE), 0);
    assert_int_equal(hm_vmap_check(true), HM_OK);

    /* decommitted: PROT_READ, no write, its data gone; reserved pages beside it merge into one region
     * with the fresh ones in a query */
    assert_int_equal(hm_manager_free(m, p, 4 * PAGE, HM_MEM_DECOMMIT), HM_OK);
    expect(m, p, HM_MEM_RESERVE, 0, 4 * PAGE);
    assert_int_equal(tu_readable(p), 1);
    assert_int_equal(*(volatile unsigned char *)(p + PAGE), 0);
    assert_int_equal(tu_writable(p), 0);
    assert_int_equal(hm_manager_free(m, p + 4 * PAGE, 2 * PAGE, HM_MEM_DECOMMIT), HM_OK);
    expect(m, p, HM_MEM_RESERVE, 0, GRAN);
    assert_int_equal(hm_vmap_check(true), HM_OK);

    /* committed again: a call, and its refusal changes nothing */
    n0 = mprotects();
    uint64_t c1 = m->acct.charge;
    hm_os_fault_inject(HM_OS_MPROTECT, 1, ENOMEM, false);
    assert_int_not_equal(hm_manager_alloc(m, HM_LEVEL_PROCESS, p, 2 * PAGE, HM_MEM_COMMIT, HM_PAGE_READWRITE, &out), HM_OK);
    hm_os_fault_clear();
    assert_int_equal(m->acct.charge, c1);
    expect(m, p, HM_MEM_RESERVE, 0, GRAN);
    assert_int_equal(tu_writable(p), 0);
    assert_int_equal(hm_vmap_check(true), HM_OK);
    assert_int_equal(hm_manager_alloc(m, HM_LEVEL_PROCESS, p, 2 * PAGE, HM_MEM_COMMIT, HM_PAGE_READWRITE, &out), HM_OK);
    assert_true(mprotects() >= n0 + 2);
    assert_int_equal(*(volatile unsigned char *)p, 0);
    /* a commit across a fresh page and a decommitted one: one call for the range */
    n0 = mprotects();
    assert_int_equal(hm_manager_alloc(m, HM_LEVEL_PROCESS, p + 5 * PAGE, 2 * PAGE, HM_MEM_COMMIT, HM_PAGE_READWRITE, &out), HM_OK);
    assert_int_equal(mprotects(), n0 + 1);
    assert_int_equal(tu_writable(p + 6 * PAGE), 1);
    assert_int_equal(hm_vmap_check(true), HM_OK);

    /* released with a stray write in a fresh page: the chunk space is empty and PROT_NONE again */
    *(volatile unsigned char *)(p + 15 * PAGE) = 0x77;
    assert_int_equal(hm_manager_free(m, p, 0, HM_MEM_RELEASE), HM_OK);
    assert_int_equal(tu_readable(p + 15 * PAGE), 0);
    assert_int_equal(hm_vmap_check(true), HM_OK);
    assert_int_equal(m->acct.charge, c0);
    assert_int_equal(hm_manager_destroy(m), HM_OK);
}

/* A thread-cached heap's first segment: the reservation's one mprotect, then its pages committed
 * with none while a segment's worth of 32 KiB blocks is allocated; trimmed, they are PROT_READ and
 * their next commits are calls again. */
static void test_heap_segment(void **state)
{
    (void)state;
    hm_manager *m;
    assert_int_equal(hm_manager_create("limit=64M", &m), HM_OK);
    hm_heap *h;
    assert_int_equal(hm_heap_create(m, HM_HEAP_THREADSAFE, &h), HM_OK);
    enum { N = 100 }; /* 50 pages of a 64-page segment */
    static void *b[N];
    unsigned long n0 = mprotects();
    for (int i = 0; i < N; i++) assert_int_equal(hm_heap_alloc(h, 32 << 10, HM_LEVEL_PROCESS, &b[i]), HM_OK);
    assert_int_equal(mprotects() - n0, 1);
    assert_int_equal(hm_vmap_check(true), HM_OK);
    for (int i = 0; i < N; i++) assert_int_equal(hm_heap_free(h, b[i]), HM_OK);
    assert_int_equal(hm_heap_trim(h), HM_OK);
    assert_int_equal(tu_writable(b[N - 1]), 0);
    assert_int_equal(hm_vmap_check(true), HM_OK);
    n0 = mprotects();
    for (int i = 0; i < N; i++) assert_int_equal(hm_heap_alloc(h, 32 << 10, HM_LEVEL_PROCESS, &b[i]), HM_OK);
    assert_true(mprotects() > n0);
    for (int i = 0; i < N; i++) assert_int_equal(hm_heap_free(h, b[i]), HM_OK);
    assert_int_equal(hm_vmap_check(true), HM_OK);
    assert_int_equal(hm_heap_destroy(h), HM_OK);
    assert_int_equal(hm_manager_destroy(m), HM_OK);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fresh_pages),
        cmocka_unit_test(test_heap_segment),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
