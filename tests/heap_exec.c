/* heap_exec.c — executable heaps (SPEC 4, MALLOC_EXECUTABLE): code written into blocks runs, small
 * and large, debug blocks included, through free, reuse, realloc, calloc, trim and destroy, with the
 * manager's charge equal to the committed pages throughout. ctest runs this program twice: as the
 * system allows (here pages may be writable and executable at once), and with
 * HOSTMEM_EXEC_VIEWS=dual, the two-view layout used where W^X forbids that (heap.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "heap/heap.h"
#include "testutil.h"
#include "heap_testutil.h"
#include "vmap/vmap.h"

#define KiB ((size_t)1 << 10)

static bool dual(void)
{
    const char *v = getenv("HOSTMEM_EXEC_VIEWS");
    return v && !strcmp(v, "dual");
}

#if defined(__x86_64__)
/* mov eax, imm32; ret: a function returning v */
static void emit(hm_heap *h, void *p, uint32_t v)
{
    unsigned char *w = hm_heap_writable(h, p);
    assert_non_null(w);
    if (dual()) assert_ptr_not_equal(w, p);
    else assert_ptr_equal(w, p);
    w[0] = 0xB8;
    memcpy(w + 1, &v, 4);
    w[5] = 0xC3;
}
static uint32_t run(void *p)
{
    uint32_t (*fn)(void) = (uint32_t (*)(void))(uintptr_t)p;
    return fn();
}
#endif

static void test_code_runs(void **state)
{
    (void)state;
    fprintf(stderr, "executable heaps: %s\n", dual() ? "two views (HOSTMEM_EXEC_VIEWS=dual)" : "one view, read-write-execute");
    hm_manager *m;
    assert_int_equal(hm_manager_create("limit=256M", &m), HM_OK);
    for (uint32_t flags = HM_HEAP_EXECUTABLE; flags <= (HM_HEAP_EXECUTABLE | HM_HEAP_THREADSAFE); flags++) {
        if (!(flags & HM_HEAP_EXECUTABLE)) continue;
        hm_heap *h;
        assert_int_equal(hm_heap_create(m, flags, &h), HM_OK);
        static const size_t sizes[] = {16, 100, 4096, 30000, 40 * KiB, 300 * KiB, 3 << 20};
        void *p[7];
        for (int i = 0; i < 7; i++) {
            assert_int_equal(hm_heap_alloc(h, sizes[i], HM_LEVEL_TASK, &p[i]), HM_OK);
            /* the block itself is not writable where two views are kept: code is written elsewhere */
            assert_int_equal(tu_writable(p[i]), dual() ? 0 : 1);
            assert_int_equal(tu_readable(p[i]), 1);
#if defined(__x86_64__)
            emit(h, p[i], 1000u + (uint32_t)i);
            assert_int_equal(run(p[i]), 1000u + (uint32_t)i);
#endif
        }
        assert_int_equal(tu_charge(m), heap_charge(h));
        /* free, and the next block of the size may be the same: it runs the new code */
        for (int i = 0; i < 7; i++) assert_int_equal(hm_heap_free(h, p[i]), HM_OK);
        assert_null(hm_heap_writable(h, p[0])); /* no live block */
        assert_int_equal(hm_heap_free(h, p[1]), HM_E_HOST_INVALIDOPERATION);
        for (int i = 0; i < 7; i++) {
            assert_int_equal(hm_heap_alloc(h, sizes[i], HM_LEVEL_TASK, &p[i]), HM_OK);
#if defined(__x86_64__)
            emit(h, p[i], 2000u + (uint32_t)i);
            assert_int_equal(run(p[i]), 2000u + (uint32_t)i);
#endif
        }
        /* debug blocks, calloc, realloc: their words go to the writable view too */
        void *d;
        assert_int_equal(hm_heap_alloc_debug(h, 64, HM_LEVEL_TASK, "jit.c", 7, &d), HM_OK);
#if defined(__x86_64__)
        emit(h, d, 7);
        assert_int_equal(run(d), 7u);
#endif
        void *z;
        assert_int_equal(hm_heap_calloc(h, 10, 100, HM_LEVEL_TASK, &z), HM_OK);
        for (int i = 0; i < 1000; i++) assert_int_equal(((unsigned char *)z)[i], 0);
        void *r;
        assert_int_equal(hm_heap_realloc(h, p[1], 50000, HM_LEVEL_TASK, &r), HM_OK); /* small -> large */
#if defined(__x86_64__)
        assert_int_equal(run(r), 2001u); /* the code moved with the block */
#endif
        p[1] = r;
        assert_int_equal(tu_charge(m), heap_charge(h));
        assert_int_equal(hm_heap_free(h, d), HM_OK);
        assert_int_equal(hm_heap_free(h, z), HM_OK);
        for (int i = 0; i < 7; i++) assert_int_equal(hm_heap_free(h, p[i]), HM_OK);
        assert_int_equal(hm_heap_trim(h), HM_OK);
        assert_int_equal(tu_charge(m), heap_charge(h));
        if (hm_vmap_check(KERNEL_CHECK) != HM_OK) fail_msg("map check: %s", hm_last_detail());
        assert_int_equal(hm_heap_destroy(h), HM_OK);
        assert_int_equal(tu_charge(m), 0);
        if (hm_vmap_check(KERNEL_CHECK) != HM_OK) fail_msg("map check after destroy: %s", hm_last_detail());
    }
    assert_int_equal(hm_manager_destroy(m), HM_OK);
}

/* Pages that a two-view heap decommits give their memory back (the memfd's holes are punched) and
 * read zero when they come back; many segments come and go without leaking descriptors. */
static void test_churn_and_destroy(void **state)
{
    (void)state;
    hm_manager *m;
    assert_int_equal(hm_manager_create("limit=256M", &m), HM_OK);
    for (int round = 0; round < 20; round++) {
        hm_heap *h;
        assert_int_equal(hm_heap_create(m, HM_HEAP_EXECUTABLE | HM_HEAP_THREADSAFE, &h), HM_OK);
        void *p[300];
        for (int i = 0; i < 300; i++) { /* 300 x 16 KiB: two segments */
            assert_int_equal(hm_heap_alloc(h, 16 * KiB, HM_LEVEL_TASK, &p[i]), HM_OK);
            memset(hm_heap_writable(h, p[i]), 0xC3, 16 * KiB);
        }
        for (int i = 0; i < 300; i++) assert_int_equal(hm_heap_free(h, p[i]), HM_OK);
        assert_int_equal(hm_heap_trim(h), HM_OK);
        assert_int_equal(tu_charge(m), heap_charge(h));
        assert_int_equal(hm_heap_calloc(h, 1, 16 * KiB, HM_LEVEL_TASK, &p[0]), HM_OK);
        for (size_t k = 0; k < 16 * KiB; k++)
            if (((unsigned char *)p[0])[k]) fail_msg("round %d: byte %zu of a calloc block is %#x", round, k, ((unsigned char *)p[0])[k]);
        assert_int_equal(hm_heap_destroy(h), HM_OK);
        assert_int_equal(tu_charge(m), 0);
    }
    if (hm_vmap_check(KERNEL_CHECK) != HM_OK) fail_msg("map check: %s", hm_last_detail());
    assert_int_equal(hm_manager_destroy(m), HM_OK);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_code_runs),
        cmocka_unit_test(test_churn_and_destroy),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
