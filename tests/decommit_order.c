/* decommit_order.c — the two orders of a kernel decommit (vmap_internal.h, hm_decommit_plan) and what
 * each failure leaves:
 *   - a whole allocation whose ends touch nothing of the same protection is emptied first, then
 *     protected: one discard (madvise) before any mprotect;
 *   - a range that cuts a committed run (an end would split a kernel mapping) is protected first;
 *   - discard first, the discard refused: nothing changed, the data is there;
 *   - discard first, the mprotect after it refused once: tried again, so the decommit completes
 *     (the pages are reserved, PROT_NONE in the kernel, the charge went back, they read zero after a
 *     new commit);
 *   - refused for good: E_FAIL (the contents are gone, nothing can be put back: SPEC 3.4), the map's
 *     own invariants intact and the manager failed;
 *   - protect first, the mprotect refused: nothing changed, as before. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>

#include "testutil.h"
#include "os/os.h"
#include "vmap/vmap.h"

#define PAGE ((size_t)4096)
#define GRAN ((size_t)65536)

static hm_manager *M;

static uint64_t charge(void)
{
    hm_manager_stats s;
    assert_int_equal(hm_manager_get_stats(M, &s), HM_OK);
    return s.charge;
}

static void expect(void *p, uint32_t state, uint32_t protect, size_t size)
{
    hm_region r;
    assert_int_equal(hm_virtual_query(M, p, &r), HM_OK);
    assert_int_equal(r.state, state);
    assert_int_equal(r.protect, protect);
    assert_int_equal(r.size, size);
}

/* A committed read-write 64 KiB allocation with a pattern in every page, alone in its granules: the
 * neighbours of a fresh process's arena are free chunk space. */
static char *fresh(void)
{
    void *p;
    assert_int_equal(hm_virtual_alloc(M, NULL, GRAN, HM_MEM_RESERVE | HM_MEM_COMMIT, HM_PAGE_READWRITE, &p), HM_OK);
    for (size_t off = 0; off < GRAN; off += PAGE) *(volatile uint64_t *)((char *)p + off) = 0xC0FFEE00u + off;
    return p;
}

static void intact(char *p, size_t from, size_t to)
{
    for (size_t off = from; off < to; off += PAGE) assert_int_equal(*(volatile uint64_t *)(p + off), 0xC0FFEE00u + off);
}

/* Which call a decommit makes first: inject a refusal of the first madvise and see whether an
 * mprotect ran before it. */
static bool discards_first(char *p, size_t off, size_t len)
{
    unsigned long prot0 = hm_os_calls(HM_OS_MPROTECT);
    hm_os_fault_inject(HM_OS_MADVISE, 1, ENOMEM, false);
    hm_status st = hm_virtual_free(M, p + off, len, HM_MEM_DECOMMIT);
    hm_os_fault_clear();
    assert_int_equal(st, HM_E_NOT_ENOUGH_MEMORY);
    return hm_os_calls(HM_OS_MPROTECT) == prot0;
}

static void test_whole_discards_first(void **state)
{
    (void)state;
    char *p = fresh();
    uint64_t c0 = charge();
    assert_true(discards_first(p, 0, GRAN));
    /* the refused discard changed nothing */
    expect(p, HM_MEM_COMMIT, HM_PAGE_READWRITE, GRAN);
    assert_int_equal(charge(), c0);
    intact(p, 0, GRAN);
    assert_int_equal(hm_vmap_check(true), HM_OK);
    /* and without a fault it completes */
    assert_int_equal(hm_virtual_free(M, p, GRAN, HM_MEM_DECOMMIT), HM_OK);
    expect(p, HM_MEM_RESERVE, 0, GRAN);
    assert_int_equal(charge(), c0 - GRAN);
    assert_int_equal(tu_readable(p), 0);
    assert_int_equal(hm_vmap_check(true), HM_OK);
    assert_int_equal(hm_release(M, p), HM_OK);
}

static void test_cut_run_protects_first(void **state)
{
    (void)state;
    char *p = fresh();
    uint64_t c0 = charge();
    /* [4, 8) of a run of 16 read-write pages: both ends would split the kernel's mapping */
    assert_false(discards_first(p, 4 * PAGE, 4 * PAGE));
    expect(p, HM_MEM_COMMIT, HM_PAGE_READWRITE, GRAN);
    intact(p, 0, GRAN);
    assert_int_equal(charge(), c0);
    /* its mprotect refused: nothing changed either */
    hm_os_fault_inject(HM_OS_MPROTECT, 1, ENOMEM, false);
    assert_int_equal(hm_virtual_free(M, p + 4 * PAGE, 4 * PAGE, HM_MEM_DECOMMIT), HM_E_NOT_ENOUGH_MEMORY);
    hm_os_fault_clear();
    expect(p, HM_MEM_COMMIT, HM_PAGE_READWRITE, GRAN);
    intact(p, 0, GRAN);
    assert_int_equal(charge(), c0);
    assert_int_equal(hm_vmap_check(true), HM_OK);
    /* the rest of the run, [8, 16) once [4, 8) is reserved: the end at 8 now meets PROT_NONE pages,
     * the end at 16 free chunk space: discard first */
    assert_int_equal(hm_virtual_free(M, p + 4 * PAGE, 4 * PAGE, HM_MEM_DECOMMIT), HM_OK);
    assert_true(discards_first(p, 8 * PAGE, 8 * PAGE));
    intact(p, 8 * PAGE, GRAN);
    assert_int_equal(hm_virtual_free(M, p + 8 * PAGE, 8 * PAGE, HM_MEM_DECOMMIT), HM_OK);
    expect(p, HM_MEM_COMMIT, HM_PAGE_READWRITE, 4 * PAGE);
    expect(p + 4 * PAGE, HM_MEM_RESERVE, 0, 12 * PAGE);
    intact(p, 0, 4 * PAGE);
    assert_int_equal(hm_vmap_check(true), HM_OK);
    assert_int_equal(hm_release(M, p), HM_OK);
}

static void test_protect_refused_once(void **state)
{
    (void)state;
    char *p = fresh();
    uint64_t c0 = charge();
    unsigned long mad0 = hm_os_calls(HM_OS_MADVISE);
    hm_os_fault_inject(HM_OS_MPROTECT, 1, ENOMEM, false);
    hm_status st = hm_virtual_free(M, p, 0, HM_MEM_DECOMMIT);
    hm_os_fault_clear();
    assert_int_equal(hm_os_calls(HM_OS_MADVISE), mad0 + 1); /* one discard, then the refused mprotect */
    assert_int_equal(st, HM_OK);                            /* tried again: done */
    expect(p, HM_MEM_RESERVE, 0, GRAN);
    assert_int_equal(charge(), c0 - GRAN);
    assert_int_equal(tu_readable(p), 0);
    assert_int_equal(hm_vmap_check(true), HM_OK);
    void *q;
    assert_int_equal(hm_virtual_alloc(M, p, GRAN, HM_MEM_COMMIT, HM_PAGE_READWRITE, &q), HM_OK);
    for (size_t off = 0; off < GRAN; off += PAGE) assert_int_equal(*(volatile uint64_t *)(p + off), 0);
    /* the same through a release: its committed span goes the same way */
    hm_os_fault_inject(HM_OS_MPROTECT, 1, ENOMEM, false);
    assert_int_equal(hm_release(M, p), HM_OK);
    hm_os_fault_clear();
    assert_int_equal(charge(), c0 - GRAN);
    assert_int_equal(hm_vmap_check(true), HM_OK);
}

static void test_protect_refused_for_good(void **state)
{
    (void)state;
    hm_manager *mine;
    assert_int_equal(hm_manager_create("", &mine), HM_OK);
    hm_manager *keep = M;
    M = mine;
    char *p = fresh();
    hm_os_fault_inject(HM_OS_MPROTECT, 1, ENOMEM, true);
    hm_status st = hm_virtual_free(M, p, 0, HM_MEM_DECOMMIT);
    hm_os_fault_clear();
    assert_int_equal(st, HM_E_FAIL); /* the discard cannot be undone, the protection not made */
    assert_int_equal(hm_vmap_check(false), HM_OK);
    hm_region r;
    assert_int_equal(hm_virtual_query(M, p, &r), HM_E_HOST_CLRNOTAVAILABLE);
    M = keep;
    assert_int_equal(hm_manager_destroy(mine), HM_OK); /* releases what it held */
    assert_int_equal(hm_vmap_check(true), HM_OK);
}

static int group_setup(void **state)
{
    (void)state;
    if (hm_init() != HM_OK || hm_manager_create("", &M) != HM_OK) return -1;
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    hm_os_fault_clear();
    return M && hm_manager_destroy(M) != HM_OK ? -1 : 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_whole_discards_first),
        cmocka_unit_test(test_cut_run_protects_first),
        cmocka_unit_test(test_protect_refused_once),
        cmocka_unit_test(test_protect_refused_for_good),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
