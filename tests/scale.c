/* scale.c — many more 64 KiB reservations than vm.max_map_count, and a 256 GiB reservation with 100 committed runs costing at most 64 KiB of map records (SPEC 2.2, 2.5; arena.h). */
#define _GNU_SOURCE
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

#include "testutil.h"
#include "vmap/vmap.h"

#define PAGE ((uintptr_t)4096)
#define GRAN ((uintptr_t)65536)
#define MIN_COUNT 100000
#define MAX_COUNT 200000
#define COMMIT_EVERY 64

static long read_max_map_count(void)
{
    long v = 65530;
    FILE *f = fopen("/proc/sys/vm/max_map_count", "r");
    if (f) {
        if (fscanf(f, "%ld", &v) != 1) v = 65530;
        fclose(f);
    }
    return v;
}

static int cmp_ptr(const void *a, const void *b)
{
    uintptr_t x = *(const uintptr_t *)a, y = *(const uintptr_t *)b;
    return x < y ? -1 : x > y;
}

/* One query, every field compared. */
static void expect_region(const void *addr, const void *base, const void *alloc_base, uint32_t alloc_prot,
                          size_t size, uint32_t state, uint32_t protect, uint32_t type)
{
    hm_region r;
    hm_status st = hm_virtual_query(NULL, addr, &r);
    if (st != HM_OK || r.base != base || r.allocation_base != alloc_base || r.allocation_protect != alloc_prot ||
        r.partition_id != 0 || r.size != size || r.state != state || r.protect != protect || r.type != type)
        fail_msg("query %p: status %s, base %p, allocation base %p, allocation protect %#x, size %zu, state %#x, "
                 "protect %#x, type %#x; expected base %p, allocation base %p, allocation protect %#x, size %zu, "
                 "state %#x, protect %#x, type %#x", addr, hm_status_name(st), r.base, r.allocation_base,
                 r.allocation_protect, r.size, r.state, r.protect, r.type, base, alloc_base, alloc_prot, size, state,
                 protect, type);
}

static void expect_same_books(const hm_vm_stats *a, const hm_vm_stats *b)
{
    assert_int_equal(b->allocations, a->allocations);
    assert_int_equal(b->runs, a->runs);
    assert_int_equal(b->reserved_bytes, a->reserved_bytes);
    assert_int_equal(b->committed_bytes, a->committed_bytes);
}

static void test_more_reservations_than_max_map_count(void **state)
{
    (void)state;
    assert_int_equal(hm_init(), HM_OK);
    long mmc = read_max_map_count();
    long want = mmc + 10000;
    if (want < MIN_COUNT) want = MIN_COUNT;
    if (want > MAX_COUNT) {
        print_message("vm.max_map_count is %ld: capping at %d reservations (fewer than the limit)\n", mmc, MAX_COUNT);
        want = MAX_COUNT;
    }
    size_t n = (size_t)want;
    print_message("vm.max_map_count %ld: %zu reservations of 64 KiB\n", mmc, n);

    hm_vm_stats before, mid, after;
    hm_vm_get_stats(&before);
    uintptr_t *b = calloc(n, sizeof *b);
    uintptr_t *sorted = calloc(n, sizeof *sorted);
    assert_non_null(b);
    assert_non_null(sorted);

    for (size_t i = 0; i < n; i++) {
        void *p = NULL;
        hm_status st = hm_virtual_alloc(NULL, NULL, 65536, HM_MEM_RESERVE, HM_PAGE_READWRITE, &p);
        if (st != HM_OK)
            fail_msg("reservation %zu of %zu failed: %s (%s)", i, n, hm_status_name(st), hm_last_detail());
        if ((uintptr_t)p % GRAN) fail_msg("reservation %zu at %p is not 64 KiB aligned", i, p);
        b[i] = (uintptr_t)p;
    }
    hm_vm_get_stats(&mid);
    assert_int_equal(mid.allocations, before.allocations + n);
    assert_int_equal(mid.reserved_bytes, before.reserved_bytes + n * 65536);
    assert_int_equal(mid.committed_bytes, before.committed_bytes);

    memcpy(sorted, b, n * sizeof *b);
    qsort(sorted, n, sizeof *sorted, cmp_ptr);
    for (size_t i = 1; i < n; i++)
        if (sorted[i] - sorted[i - 1] < GRAN)
            fail_msg("reservations at %#" PRIxPTR " and %#" PRIxPTR " overlap", sorted[i - 1], sorted[i]);

    for (size_t i = 0; i < n; i++) {
        void *p = (void *)b[i];
        expect_region(p, p, p, HM_PAGE_READWRITE, 65536, HM_MEM_RESERVE, 0, HM_MEM_PRIVATE);
        expect_region((char *)p + 65535, (char *)p + 61440, p, HM_PAGE_READWRITE, 4096, HM_MEM_RESERVE, 0, HM_MEM_PRIVATE);
        if (i % 997 == 0) assert_int_equal(tu_readable(p), 0); /* reserved: no access */
    }

    /* One page committed in every 64th reservation, at a page that moves through the granule. */
    for (size_t i = 0; i < n; i += COMMIT_EVERY) {
        size_t pg = (i / COMMIT_EVERY) % 16;
        char *p = (char *)b[i], *c = p + pg * PAGE;
        hm_status st = hm_commit(NULL, c, PAGE, HM_PAGE_READWRITE);
        if (st != HM_OK) fail_msg("commit in reservation %zu failed: %s (%s)", i, hm_status_name(st), hm_last_detail());
        assert_int_equal(*(volatile uint64_t *)c, 0);
        *(volatile uint64_t *)c = 0xC0FFEE0000000000ull + i;
        *(volatile uint64_t *)(c + PAGE - 8) = ~(uint64_t)i;
        if (pg) expect_region(p, p, p, HM_PAGE_READWRITE, pg * PAGE, HM_MEM_RESERVE, 0, HM_MEM_PRIVATE);
        expect_region(c + 100, c, p, HM_PAGE_READWRITE, PAGE, HM_MEM_COMMIT, HM_PAGE_READWRITE, HM_MEM_PRIVATE);
        if (pg < 15)
            expect_region(c + PAGE, c + PAGE, p, HM_PAGE_READWRITE, 65536 - (pg + 1) * PAGE, HM_MEM_RESERVE, 0,
                          HM_MEM_PRIVATE);
    }
    size_t ncommit = (n + COMMIT_EVERY - 1) / COMMIT_EVERY;
    hm_vm_get_stats(&mid);
    assert_int_equal(mid.committed_bytes, before.committed_bytes + ncommit * PAGE);
    for (size_t i = 0; i < n; i += COMMIT_EVERY) { /* everything written is still there */
        char *c = (char *)b[i] + ((i / COMMIT_EVERY) % 16) * PAGE;
        assert_int_equal(*(volatile uint64_t *)c, 0xC0FFEE0000000000ull + i);
        assert_int_equal(*(volatile uint64_t *)(c + PAGE - 8), ~(uint64_t)i);
    }
    /* A neighbour of a committed reservation is still untouched. */
    if (n > 1) expect_region((void *)b[1], (void *)b[1], (void *)b[1], HM_PAGE_READWRITE, 65536, HM_MEM_RESERVE, 0,
                             HM_MEM_PRIVATE);
    if (hm_vmap_check(true) != HM_OK) fail_msg("map check (with the kernel's mappings): %s", hm_last_detail());

    for (size_t i = 0; i < n; i++) {
        hm_status st = hm_release(NULL, (void *)b[i]);
        if (st != HM_OK) fail_msg("release %zu (%#" PRIxPTR ") failed: %s (%s)", i, b[i], hm_status_name(st), hm_last_detail());
    }
    for (size_t i = 0; i < n; i++) {
        hm_region r;
        assert_int_equal(hm_virtual_query(NULL, (void *)b[i], &r), HM_OK);
        if (r.state != HM_MEM_FREE || r.allocation_base != NULL || r.protect != HM_PAGE_NOACCESS || r.type != 0 ||
            r.size < GRAN || r.base != (void *)b[i])
            fail_msg("after release, query %#" PRIxPTR ": state %#x, allocation base %p, protect %#x, type %#x, size %zu",
                     b[i], r.state, r.allocation_base, r.protect, r.type, r.size);
        if (i % COMMIT_EVERY == 0 && i % 997 == 0) /* committed pages are gone with the release */
            assert_int_equal(tu_readable((char *)b[i] + ((i / COMMIT_EVERY) % 16) * PAGE), 0);
    }
    hm_vm_get_stats(&after);
    expect_same_books(&before, &after);
    if (hm_vmap_check(false) != HM_OK) fail_msg("map check: %s", hm_last_detail());
    free(b);
    free(sorted);
}

#define HUGE_SIZE ((uintptr_t)256 << 30)
#define NRUNS 100
#define RUN ((uintptr_t)65536)

static void test_256_gib_reservation(void **state)
{
    (void)state;
    assert_int_equal(hm_init(), HM_OK);
    hm_vm_stats before, mid, after;
    hm_vm_reset_peak();
    hm_vm_get_stats(&before);

    void *p = NULL;
    hm_status st = hm_virtual_alloc(NULL, NULL, HUGE_SIZE, HM_MEM_RESERVE, HM_PAGE_READWRITE, &p);
    if (st != HM_OK) fail_msg("256 GiB reservation failed: %s (%s)", hm_status_name(st), hm_last_detail());
    uintptr_t base = (uintptr_t)p;
    assert_int_equal(base % GRAN, 0);
    expect_region(p, p, p, HM_PAGE_READWRITE, HUGE_SIZE, HM_MEM_RESERVE, 0, HM_MEM_PRIVATE);
    expect_region((void *)(base + HUGE_SIZE - 1), (void *)(base + HUGE_SIZE - PAGE), p, HM_PAGE_READWRITE, PAGE,
                  HM_MEM_RESERVE, 0, HM_MEM_PRIVATE);

    /* 100 runs of 64 KiB, spread over the reservation, none at its start or end */
    uintptr_t off[NRUNS];
    uintptr_t spacing = (HUGE_SIZE / NRUNS) & ~(GRAN - 1);
    for (int k = 0; k < NRUNS; k++) {
        off[k] = (uintptr_t)k * spacing + ((uintptr_t)1 << 20) + (uintptr_t)(k % 7) * PAGE;
        char *c = (char *)(base + off[k]);
        st = hm_commit(NULL, c, RUN, HM_PAGE_READWRITE);
        if (st != HM_OK) fail_msg("commit of run %d at %p failed: %s (%s)", k, (void *)c, hm_status_name(st), hm_last_detail());
        assert_int_equal(*(volatile uint64_t *)c, 0);
        *(volatile uint64_t *)c = 0xABCD000000000000ull + (uint64_t)k;
        *(volatile uint64_t *)(c + RUN - 8) = ~(uint64_t)k;
    }
    assert_true(off[NRUNS - 1] + RUN < HUGE_SIZE);
    hm_vm_get_stats(&mid);
    assert_int_equal(mid.allocations, before.allocations + 1);
    assert_int_equal(mid.reserved_bytes, before.reserved_bytes + HUGE_SIZE);
    assert_int_equal(mid.committed_bytes, before.committed_bytes + NRUNS * RUN);

    /* the leading gap, each run, each gap after it */
    expect_region(p, p, p, HM_PAGE_READWRITE, off[0], HM_MEM_RESERVE, 0, HM_MEM_PRIVATE);
    for (int k = 0; k < NRUNS; k++) {
        char *c = (char *)(base + off[k]);
        expect_region(c, c, p, HM_PAGE_READWRITE, RUN, HM_MEM_COMMIT, HM_PAGE_READWRITE, HM_MEM_PRIVATE);
        expect_region(c + RUN - 1, c + RUN - PAGE, p, HM_PAGE_READWRITE, PAGE, HM_MEM_COMMIT, HM_PAGE_READWRITE,
                      HM_MEM_PRIVATE);
        uintptr_t gap_end = k + 1 < NRUNS ? off[k + 1] : HUGE_SIZE;
        expect_region(c + RUN, c + RUN, p, HM_PAGE_READWRITE, gap_end - off[k] - RUN, HM_MEM_RESERVE, 0, HM_MEM_PRIVATE);
        uintptr_t mid_gap = ((off[k] + RUN + gap_end) / 2) & ~(PAGE - 1);
        expect_region((void *)(base + mid_gap + 5), (void *)(base + mid_gap), p, HM_PAGE_READWRITE, gap_end - mid_gap,
                      HM_MEM_RESERVE, 0, HM_MEM_PRIVATE);
        assert_int_equal(*(volatile uint64_t *)c, 0xABCD000000000000ull + (uint64_t)k);
        assert_int_equal(*(volatile uint64_t *)(c + RUN - 8), ~(uint64_t)k);
    }
    if (hm_vmap_check(false) != HM_OK) fail_msg("map check: %s", hm_last_detail());
    print_message("metadata: %zu bytes before, peak %zu with the 256 GiB reservation and %d runs (growth %zu)\n",
                  before.metadata_bytes, mid.metadata_peak, NRUNS, mid.metadata_peak - before.metadata_bytes);
    if (mid.metadata_peak - before.metadata_bytes > 65536)
        fail_msg("map records grew by %zu bytes (peak %zu, before %zu); at most 65536 expected",
                 mid.metadata_peak - before.metadata_bytes, mid.metadata_peak, before.metadata_bytes);

    assert_int_equal(hm_release(NULL, p), HM_OK);
    hm_region r;
    assert_int_equal(hm_virtual_query(NULL, p, &r), HM_OK);
    assert_int_equal(r.state, HM_MEM_FREE);
    assert_null(r.allocation_base);
    assert_true(r.size >= HUGE_SIZE);
    assert_int_equal(hm_virtual_query(NULL, (void *)(base + off[NRUNS / 2]), &r), HM_OK);
    assert_int_equal(r.state, HM_MEM_FREE);
    hm_vm_get_stats(&after);
    expect_same_books(&before, &after);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_more_reservations_than_max_map_count),
        cmocka_unit_test(test_256_gib_reservation),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
