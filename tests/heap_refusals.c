/* heap_refusals.c — what a heap does when the kernel refuses to give memory back: a Free of a large
 * block whose release fails changes nothing (SPEC 4, the README's all-or-nothing rule) in every heap
 * kind; realloc's old block and a thread cache's evicted blocks are kept (parked) and given back
 * later; trim reports what it could not give back. Run twice by ctest: executable heaps as the
 * system allows them, and in the two-view layout (HOSTMEM_EXEC_VIEWS=dual). */
#include <inttypes.h>

#include "heap_testutil.h"
#include "heap_pages.h"
#include "os/os.h"

#define MiB ((size_t)1 << 20)

static const uint32_t kinds[] = {HM_HEAP_THREADSAFE, 0, HM_HEAP_THREADSAFE | HM_HEAP_EXECUTABLE, HM_HEAP_EXECUTABLE};
static const hm_os_call_t calls[] = {HM_OS_MPROTECT, HM_OS_MADVISE, HM_OS_MUNMAP, HM_OS_MMAP};
static const char *const call_names[] = {"mprotect", "madvise", "munmap", "mmap"};

/* A pattern the block's owner wrote: word i of a block filled with key. */
static uint64_t pat(uint64_t key, size_t i) { return key * 0x9E3779B97F4A7C15ull ^ (i * 0x100000001b3ull); }

static void fill(hm_heap *h, void *p, size_t size, uint64_t key)
{
    uint64_t *w = hm_heap_writable(h, p);
    assert_non_null(w);
    for (size_t i = 0; i < size / 8; i += 509) w[i] = pat(key, i);
    w[1] = pat(key, 1); /* bytes 8..15: where a cache's tag would land */
    w[size / 8 - 1] = pat(key, size / 8 - 1);
}

static void check_fill(const void *p, size_t size, uint64_t key, const char *what)
{
    const uint64_t *w = p;
    for (size_t i = 0; i < size / 8; i += 509)
        if (w[i] != pat(key, i)) fail_msg("%s: word %zu of the block changed", what, i);
    if (w[1] != pat(key, 1)) fail_msg("%s: bytes 8..15 of the block changed (%#" PRIx64 ")", what, w[1]);
    if (w[size / 8 - 1] != pat(key, size / 8 - 1)) fail_msg("%s: the block's last word changed", what);
}

/* A manager whose state goes Low at the first refusal and stays there (notify.low=1: the load never
 * falls that far), so that freed large blocks are released, not cached. */
static hm_manager *low_manager(void)
{
    hm_manager *m = make("limit=64M,notify.low=1,notify.high=95");
    void *big = (void *)1;
    assert_int_equal(hm_virtual_alloc(m, NULL, 128 * MiB, HM_MEM_RESERVE | HM_MEM_COMMIT, HM_PAGE_READWRITE, &big),
                     HM_E_COMMITMENT_LIMIT);
    assert_int_equal(tu_stats(m).memory_state, HM_MEMORY_LOW);
    return m;
}

/* Defect of issue 11: Free of a 1 MiB block, memory Low, each kind of kernel call refused in turn
 * (once: the rollback's own calls go through). */
static void test_free_large_refused(void **state)
{
    (void)state;
    for (size_t k = 0; k < sizeof kinds / sizeof kinds[0]; k++)
        for (size_t c = 0; c < sizeof calls / sizeof calls[0]; c++) {
            hm_manager *m = low_manager();
            hm_heap *h = mk_heap(m, kinds[k]);
            void *p, *q;
            assert_int_equal(hm_heap_alloc(h, MiB, HM_LEVEL_PROCESS, &p), HM_OK);
            assert_int_equal(hm_heap_alloc(h, 100, HM_LEVEL_PROCESS, &q), HM_OK); /* a segment too */
            fill(h, p, MiB, 1);
            hm_heap_stats before = hstats(h);
            uint64_t charged = tu_charge(m);
            unsigned long hit = hm_os_faults_injected();
            hm_os_fault_inject(calls[c], 1, ENOMEM, false);
            hm_status st = hm_heap_free(h, p);
            hm_os_fault_clear();
            bool refused = hm_os_faults_injected() != hit;
            print_message("heap %#x, %s refused: Free = %#x%s\n", kinds[k], call_names[c], (unsigned)st,
                          refused ? "" : " (no such call made)");
            if (!refused) {
                assert_int_equal(st, HM_OK);
            } else {
                if (hm_status_hresult(st) != HM_E_OUTOFMEMORY) /* (8, ERROR_NOT_ENOUGH_MEMORY, in the C API) */
                    fail_msg("heap %#x, %s refused: Free = %#x, not E_OUTOFMEMORY", kinds[k], call_names[c], (unsigned)st);
                check_fill(p, MiB, 1, "after a refused Free");
                assert_int_equal(hm_heap_usable_size(h, p), MiB);
                hm_heap_stats after = hstats(h);
                assert_int_equal(after.live_blocks, before.live_blocks);
                assert_int_equal(after.large_bytes, before.large_bytes);
                assert_int_equal(tu_charge(m), charged);
                check_books();
                assert_int_equal(hm_heap_free(h, p), HM_OK); /* the retry */
            }
            assert_int_equal(hm_heap_free(h, q), HM_OK);
            assert_int_equal(hm_heap_free(h, p), HM_E_HOST_INVALIDOPERATION);
            assert_int_equal(hm_heap_trim(h), HM_OK);
            assert_int_equal(hstats(h).live_blocks, 0);
            assert_int_equal(hstats(h).large_bytes, 0);
            assert_int_equal(tu_charge(m), heap_charge(h));
            check_books();
            destroy_heap(h);
            assert_int_equal(tu_charge(m), 0);
            destroy_mgr(m);
        }
}

/* The same for a debug block: its header and its site's counts stay. */
static void test_free_large_debug_refused(void **state)
{
    (void)state;
    for (size_t k = 0; k < sizeof kinds / sizeof kinds[0]; k++)
        for (size_t c = 0; c < sizeof calls / sizeof calls[0]; c++) {
            hm_manager *m = low_manager();
            hm_heap *h = mk_heap(m, kinds[k]);
            void *p;
            assert_int_equal(hm_heap_alloc_debug(h, 2 * MiB, HM_LEVEL_PROCESS, "site.c", 7, &p), HM_OK);
            fill(h, p, 2 * MiB, 2);
            size_t usable = hm_heap_usable_size(h, p);
            assert_true(usable >= 2 * MiB);
            unsigned long hit = hm_os_faults_injected();
            hm_os_fault_inject(calls[c], 1, ENOMEM, false);
            hm_status st = hm_heap_free(h, p);
            hm_os_fault_clear();
            if (hm_os_faults_injected() != hit) {
                assert_int_equal(hm_status_hresult(st), HM_E_OUTOFMEMORY);
                check_fill(p, 2 * MiB, 2, "debug block after a refused Free");
                assert_int_equal(hm_heap_usable_size(h, p), usable);
                assert_int_equal(hstats(h).live_blocks, 1);
                assert_int_equal(hm_heap_free(h, p), HM_OK);
            } else {
                assert_int_equal(st, HM_OK);
            }
            assert_int_equal(hstats(h).live_blocks, 0);
            destroy_heap(h);
            assert_int_equal(tu_charge(m), 0);
            destroy_mgr(m);
        }
}

/* realloc moves a large block; the old one's release is refused at each possible call in turn: the
 * realloc still succeeds (the move is made), the old block is kept and goes at the next trim. */
static void test_realloc_old_block_refused(void **state)
{
    (void)state;
    for (size_t k = 0; k < sizeof kinds / sizeof kinds[0]; k++)
        for (unsigned long n = 1; n < 64; n++) {
            hm_manager *m = low_manager();
            hm_heap *h = mk_heap(m, kinds[k]);
            void *p, *q = NULL;
            assert_int_equal(hm_heap_alloc(h, MiB, HM_LEVEL_PROCESS, &p), HM_OK);
            fill(h, p, MiB, 1);
            unsigned long hit = hm_os_faults_injected();
            hm_os_fault_inject(HM_OS_MPROTECT, n, ENOMEM, false);
            hm_status st = hm_heap_realloc(h, p, 8 * MiB, HM_LEVEL_PROCESS, &q);
            hm_os_fault_clear();
            bool refused = hm_os_faults_injected() != hit;
            if (st == HM_OK) {
                assert_non_null(q);
                check_fill(q, MiB, 1, "realloc's copy");
            } else {
                assert_true(refused);
                assert_null(q);
                check_fill(p, MiB, 1, "a block realloc failed to move");
                q = p;
            }
            assert_int_equal(hm_heap_free(h, q), HM_OK);
            assert_int_equal(hm_heap_trim(h), HM_OK);
            hm_heap_stats s = hstats(h);
            assert_int_equal(s.live_blocks, 0);
            assert_int_equal(s.cached_large_bytes, 0);
            assert_int_equal(tu_charge(m), heap_charge(h));
            check_books();
            destroy_heap(h);
            assert_int_equal(tu_charge(m), 0);
            destroy_mgr(m);
            if (!refused) break; /* every call of the realloc has been refused once */
        }
}

/* Trim says when the kernel keeps it from giving cached blocks back; they stay cached, and the next
 * trim gives them back. */
static void test_trim_refused(void **state)
{
    (void)state;
    for (size_t k = 0; k < sizeof kinds / sizeof kinds[0]; k++) {
        hm_manager *m = make("limit=256M");
        hm_heap *h = mk_heap(m, kinds[k]);
        void *p;
        assert_int_equal(hm_heap_alloc(h, 4 * MiB, HM_LEVEL_PROCESS, &p), HM_OK);
        assert_int_equal(hm_heap_free(h, p), HM_OK);
        uint64_t charged = tu_charge(m);
        hm_heap_stats before = hstats(h);
        unsigned long hit = hm_os_faults_injected();
        hm_os_fault_inject(HM_OS_MPROTECT, 1, ENOMEM, false);
        hm_status st = hm_heap_trim(h);
        hm_os_fault_clear();
        if (hm_os_faults_injected() != hit) {
            assert_int_equal(hm_status_hresult(st), HM_E_OUTOFMEMORY);
            assert_int_equal(tu_charge(m), charged);
            assert_int_equal(hstats(h).cached_large_bytes, before.cached_large_bytes);
            check_books();
        } else {
            assert_int_equal(st, HM_OK); /* (a dual heap keeps no freed large block: nothing to give back) */
        }
        assert_int_equal(hm_heap_trim(h), HM_OK);
        assert_int_equal(hstats(h).cached_large_bytes, 0);
        assert_int_equal(tu_charge(m), heap_charge(h));
        destroy_heap(h);
        destroy_mgr(m);
    }
}

/* Emptied medium spans wait whole in the span cache (segment.c); a trim whose decommit of them the
 * kernel refuses keeps them cached and charged, says so, and the page invariants hold; the next trim
 * gives them back. Each kind of call refused in turn, once, in every heap kind. */
static void test_trim_refused_spans(void **state)
{
    (void)state;
    for (size_t k = 0; k < sizeof kinds / sizeof kinds[0]; k++)
        for (size_t c = 0; c < 2; c++) { /* mprotect, madvise */
            hm_manager *m = make("limit=256M");
            hm_heap *h = mk_heap(m, kinds[k]);
            void *p[6];
            for (int i = 0; i < 6; i++) {
                assert_int_equal(hm_heap_alloc(h, 256 * 1024, HM_LEVEL_PROCESS, &p[i]), HM_OK);
                fill(h, p[i], 256 * 1024, (uint64_t)i + 1);
            }
            for (int i = 0; i < 5; i++) assert_int_equal(hm_heap_free(h, p[i]), HM_OK);
            assert_true(h->nspan_pages > 0);
            uint64_t charged = tu_charge(m);
            unsigned long hit = hm_os_faults_injected();
            hm_os_fault_inject(calls[c], 1, ENOMEM, false);
            hm_status st = hm_heap_trim(h);
            hm_os_fault_clear();
            if (hm_os_faults_injected() != hit) {
                if (st == HM_OK) fail_msg("kind %#x, %s refused: trim says OK", kinds[k], call_names[c]);
                assert_true(tu_charge(m) <= charged);
                assert_int_equal(tu_charge(m), heap_charge(h));
                check_books();
            }
            check_pages(h, NULL, NULL);
            check_fill(p[5], 256 * 1024, 6, "the live block after a refused trim");
            assert_int_equal(hm_heap_trim(h), HM_OK);
            assert_int_equal(h->nspan_pages, 0);
            assert_int_equal(tu_charge(m), heap_charge(h));
            check_pages(h, NULL, NULL);
            /* the cache works on: spans are made and emptied again */
            for (int i = 0; i < 5; i++) assert_int_equal(hm_heap_alloc(h, 256 * 1024, HM_LEVEL_PROCESS, &p[i]), HM_OK);
            for (int i = 0; i < 6; i++) assert_int_equal(hm_heap_free(h, p[i]), HM_OK);
            check_pages(h, NULL, NULL);
            destroy_heap(h);
            destroy_mgr(m);
        }
}

/* A heap whose destroy is refused stays whole enough to be destroyed again. */
static void test_destroy_refused(void **state)
{
    (void)state;
    for (size_t k = 0; k < sizeof kinds / sizeof kinds[0]; k++)
        for (size_t c = 0; c < sizeof calls / sizeof calls[0]; c++) {
            hm_manager *m = make("limit=256M");
            hm_heap *h = mk_heap(m, kinds[k]);
            void *p, *q;
            assert_int_equal(hm_heap_alloc(h, 3 * MiB, HM_LEVEL_PROCESS, &p), HM_OK);
            assert_int_equal(hm_heap_alloc(h, 64, HM_LEVEL_PROCESS, &q), HM_OK);
            hm_os_fault_inject(calls[c], 1, ENOMEM, false);
            hm_status st = hm_heap_destroy(h);
            hm_os_fault_clear();
            if (st != HM_OK) {
                print_message("heap %#x: destroy with %s refused = %#x; again\n", kinds[k], call_names[c], (unsigned)st);
                check_books();
                destroy_heap(h);
            }
            assert_int_equal(tu_charge(m), 0);
            check_books();
            destroy_mgr(m);
        }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_free_large_refused),
        cmocka_unit_test(test_free_large_debug_refused),
        cmocka_unit_test(test_realloc_old_block_refused),
        cmocka_unit_test(test_trim_refused),
        cmocka_unit_test(test_trim_refused_spans),
        cmocka_unit_test(test_destroy_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
