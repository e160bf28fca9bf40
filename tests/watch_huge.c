/* watch_huge.c — write-watched and guarded allocations larger than the special-page record's 4096-page
 * blocks (special.h): committing a terabyte with write watch costs what its touched pages cost (it
 * used to write a byte per page of metadata: 256 MiB and seconds for 1 TiB), and random commits,
 * decommits, protections and guards across block boundaries keep the kernel's protections, the
 * queries and the write-watch reports exact. ctest runs it with the machine's mechanism and with
 * HOSTMEM_WRITE_WATCH=fallback. */
#include <stdio.h>
#include <stdlib.h>

#include "heap_testutil.h"

#define PG ((size_t)4096)
#define BLOCKPAGES 4096 /* special.h: HM_SPECIAL_BLOCK_SHIFT */

/* Resident memory of this process in bytes (/proc/self/statm). */
static size_t rss(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    unsigned long size = 0, res = 0;
    assert_non_null(f);
    assert_int_equal(fscanf(f, "%lu %lu", &size, &res), 2);
    fclose(f);
    return res * PG;
}

/* Issue 11: MEM_RESERVE|MEM_COMMIT|MEM_WRITE_WATCH of 1 TiB, a few pages written and listed: the
 * metadata stays untouched (resident memory grows by well under a MiB per GiB reserved). */
static void test_terabyte(void **state)
{
    (void)state;
    tu_hostmem_faults_first(); /* (cmocka's SIGSEGV handler in front of each test: hostmem's goes first) */
    hm_manager *m = make("limit=2T");
    size_t size = (size_t)1 << 40;
    size_t before = rss();
    void *p = NULL;
    hm_status st = hm_virtual_alloc(m, NULL, size, HM_MEM_RESERVE | HM_MEM_COMMIT | HM_MEM_WRITE_WATCH, HM_PAGE_READWRITE, &p);
    if (st == HM_E_NOT_ENOUGH_MEMORY) { /* an address-space limit (ulimit -v) or an old kernel's VMA size */
        print_message("1 TiB reservation refused by the system (%s): skipped\n", hm_last_detail());
        destroy_mgr(m);
        skip();
    }
    assert_int_equal(st, HM_OK);
    char *c = p;
    size_t at[] = {0, (size_t)BLOCKPAGES * PG, 12345 * PG, size / 2 + 77, size - 1}; /* (in address order) */
    for (size_t i = 0; i < sizeof at / sizeof at[0]; i++) c[at[i]] = 1;
    void *out[8];
    uintptr_t n = 8;
    uint32_t gran = 0;
    assert_int_equal(hm_get_write_watch(m, 1, p, size, out, &n, &gran), HM_OK);
    assert_int_equal(n, 5);
    for (size_t i = 0; i < 5; i++) assert_ptr_equal(out[i], c + (at[i] & ~(PG - 1)));
    /* decommit a range across blocks, protect another, in the middle of the terabyte */
    assert_int_equal(hm_virtual_free(m, c + size / 4 + 3 * PG, (size_t)3 << 30, HM_MEM_DECOMMIT), HM_OK);
    uint32_t old = 0;
    assert_int_equal(hm_virtual_protect(m, c + size / 8 + 5 * PG, (size_t)5 << 30, HM_PAGE_READONLY, &old), HM_OK);
    assert_int_equal(old, HM_PAGE_READWRITE);
    size_t grown = rss() - before;
    print_message("1 TiB committed with write watch: resident memory grew by %zu KiB\n", grown >> 10);
    /* (not under ThreadSanitizer, whose shadow of the touched metadata counts as resident too) */
    if (KERNEL_CHECK && grown > ((size_t)64 << 20))
        fail_msg("resident memory grew by %zu MiB for a terabyte's bookkeeping", grown >> 20);
    hm_region r;
    assert_int_equal(hm_virtual_query(m, c + size / 4 + 3 * PG, &r), HM_OK);
    assert_int_equal(r.state, HM_MEM_RESERVE);
    assert_int_equal(r.size, (size_t)3 << 30);
    assert_int_equal(hm_virtual_query(m, c + size / 8 + 5 * PG, &r), HM_OK);
    assert_int_equal(r.protect, HM_PAGE_READONLY);
    assert_int_equal(r.size, (size_t)5 << 30);
    assert_int_equal(hm_virtual_free(m, p, 0, HM_MEM_RELEASE), HM_OK);
    destroy_mgr(m);
}

/* A model of each page: committed, base protection, guard; written since the last report. */
typedef struct { uint8_t committed, prot, guard, written; } mpage;

static const uint32_t prots[] = {HM_PAGE_READWRITE, HM_PAGE_READONLY, HM_PAGE_NOACCESS, HM_PAGE_EXECUTE_READ,
                                 HM_PAGE_READWRITE | HM_PAGE_GUARD, HM_PAGE_READONLY | HM_PAGE_GUARD};

/* Random operations over 3.5 blocks: ranges that start and end anywhere, whole blocks, single pages;
 * after each, the map's self-check (kernel protections against the records) and queries of every
 * region against the model, and at times the write-watch report. */
static void test_random_across_blocks(void **state)
{
    (void)state;
    tu_hostmem_faults_first();
    hm_manager *m = make("limit=1G");
    const size_t npages = BLOCKPAGES * 3 + BLOCKPAGES / 2, size = npages * PG;
    static mpage model[BLOCKPAGES * 4];
    memset(model, 0, sizeof model);
    void *p = NULL;
    assert_int_equal(hm_virtual_alloc(m, NULL, size, HM_MEM_RESERVE | HM_MEM_WRITE_WATCH, HM_PAGE_READWRITE, &p), HM_OK);
    char *base = p;
    uint64_t seed = 0x9e3779b97f4a7c15ull;
    int steps = getenv("HM_STEPS") ? atoi(getenv("HM_STEPS")) : 300;
    for (int step = 0; step < steps; step++) {
        uint64_t r = next_rand(&seed);
        size_t p0, p1;
        switch (r % 4) {
        case 0: p0 = (next_rand(&seed) % 4) * BLOCKPAGES; p1 = p0 + BLOCKPAGES; break; /* a whole block */
        case 1: p0 = next_rand(&seed) % npages; p1 = p0 + 1; break;
        default: p0 = next_rand(&seed) % npages; p1 = p0 + 1 + next_rand(&seed) % (2 * BLOCKPAGES); break;
        }
        if (p1 > npages) p1 = npages;
        if (p0 >= npages) continue;
        unsigned op = (unsigned)(next_rand(&seed) % 5);
        uint32_t prot = prots[next_rand(&seed) % (sizeof prots / sizeof prots[0])];
        if (getenv("HM_TRACE")) fprintf(stderr, "step %d op %u pages [%zu, %zu) prot %#x\n", step, op, p0, p1, prot);
        if (op <= 1) { /* commit */
            void *q;
            assert_int_equal(hm_virtual_alloc(m, base + p0 * PG, (p1 - p0) * PG, HM_MEM_COMMIT, prot, &q), HM_OK);
            for (size_t i = p0; i < p1; i++) {
                model[i].committed = 1;
                model[i].prot = (uint8_t)(prot & 0xFF);
                model[i].guard = (prot & HM_PAGE_GUARD) != 0;
            }
        } else if (op == 2) { /* decommit */
            assert_int_equal(hm_virtual_free(m, base + p0 * PG, (p1 - p0) * PG, HM_MEM_DECOMMIT), HM_OK);
            for (size_t i = p0; i < p1; i++) model[i] = (mpage){0, 0, 0, 0};
        } else if (op == 3) { /* protect: only over committed pages */
            bool all = true;
            for (size_t i = p0; i < p1 && all; i++) all = model[i].committed;
            uint32_t old = 0;
            hm_status st = hm_virtual_protect(m, base + p0 * PG, (p1 - p0) * PG, prot, &old);
            if (!all) {
                assert_int_equal(st, HM_E_INVALID_ADDRESS);
            } else {
                assert_int_equal(st, HM_OK);
                assert_int_equal(old, model[p0].prot | (model[p0].guard ? HM_PAGE_GUARD : 0));
                for (size_t i = p0; i < p1; i++) {
                    model[i].prot = (uint8_t)(prot & 0xFF);
                    model[i].guard = (prot & HM_PAGE_GUARD) != 0;
                }
            }
        } else { /* write a word into a few writable, unguarded pages */
            for (size_t i = p0; i < p1 && i < p0 + 8; i++)
                if (model[i].committed && model[i].prot == HM_PAGE_READWRITE && !model[i].guard) {
                    base[i * PG + 8] = 1;
                    model[i].written = 1;
                }
        }
        if (hm_vmap_check(KERNEL_CHECK) != HM_OK) fail_msg("step %d: map check: %s", step, hm_last_detail());
        /* every region as the model sees it */
        for (size_t i = 0; i < npages;) {
            hm_region q;
            assert_int_equal(hm_virtual_query(m, base + i * PG, &q), HM_OK);
            size_t j = i + 1;
            while (j < npages && model[j].committed == model[i].committed && model[j].prot == model[i].prot &&
                   model[j].guard == model[i].guard)
                j++;
            uint32_t want = model[i].committed ? model[i].prot | (model[i].guard ? HM_PAGE_GUARD : 0) : 0;
            if (q.state != (model[i].committed ? HM_MEM_COMMIT : HM_MEM_RESERVE) || q.protect != want ||
                q.size != (j - i) * PG)
                fail_msg("step %d: page %zu: state %#x protect %#x size %#zx; expected %#x %#x %#zx", step, i, q.state,
                         q.protect, q.size, model[i].committed ? HM_MEM_COMMIT : HM_MEM_RESERVE, want, (j - i) * PG);
            i = j;
        }
        if (step % 50 == 49) { /* the report, reset */
            static void *out[BLOCKPAGES * 4];
            uintptr_t n = npages;
            uint32_t gran;
            assert_int_equal(hm_get_write_watch(m, 1, base, size, out, &n, &gran), HM_OK);
            size_t k = 0;
            for (size_t i = 0; i < npages; i++)
                if (model[i].written) {
                    if (k >= n || out[k] != base + i * PG) fail_msg("step %d: written page %zu not reported in order", step, i);
                    k++;
                    model[i].written = 0;
                }
            assert_int_equal(k, n);
        }
    }
    assert_int_equal(hm_virtual_free(m, p, 0, HM_MEM_RELEASE), HM_OK);
    destroy_mgr(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_terabyte),
        cmocka_unit_test(test_random_across_blocks),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
