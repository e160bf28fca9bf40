/* query_race.c — VirtualQuery against concurrent writers (vmap.h: lock-free readers; radix.h: the
 * leaf summaries): writer threads reserve, commit, protect, decommit and release allocations
 * without pause while reader threads query addresses in and around them. Every answer must be one
 * the SPEC allows for some moment (2.5), never a mix of two:
 *   - BaseAddress is the address rounded down to a page, RegionSize a positive multiple of a page;
 *   - free memory: no allocation base, AllocationProtect 0, Protect PAGE_NOACCESS, Type 0;
 *   - else one allocation's answer: AllocationBase on a granule and at or below the address, Type
 *     MEM_PRIVATE, and a region that matches one of the states its writer puts it through.
 * Each writer's allocation says which recipe it follows by its AllocationProtect alone (the
 * recipes' protections differ), so a reader can tell what the allocation's size and its possible
 * states are from the answer itself: an answer that joins one allocation's base or protection with
 * another's size, state or protection fails. A recipe: reserve (AllocationProtect A, size S) ->
 * commit all P -> protect all Q -> decommit all -> commit the first half P -> decommit (size 0) ->
 * release. So: reserved pages report Protect 0 and a region to the end; committed pages P or Q
 * (with A's cache modifier), a region to the end, or to the half for P below it. A manager that
 * owns none of it is told HOST_E_NOT_OWNER or sees free memory (SPEC 3.1). */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <time.h>

#include "testutil.h"
#include "vmap/vmap.h"

#define PAGE ((uintptr_t)4096)
#define GRAN ((uintptr_t)65536)
#define WRITERS 2
#define READERS 2
#define SLOTS 24 /* allocations per writer */

typedef struct recipe {
    uint32_t aprot, size, p, q;
} recipe;

static const recipe recipes[] = {
    {HM_PAGE_READWRITE, 64 * 1024, HM_PAGE_READWRITE, HM_PAGE_READONLY},
    {HM_PAGE_READONLY, 120 * 1024, HM_PAGE_READONLY, HM_PAGE_READWRITE},
    {HM_PAGE_EXECUTE_READ, 8 * 1024, HM_PAGE_EXECUTE_READ, HM_PAGE_READONLY}, /* a granule's free tail */
    {HM_PAGE_NOACCESS, 192 * 1024, HM_PAGE_READWRITE, HM_PAGE_NOACCESS},
    {HM_PAGE_READWRITE | HM_PAGE_NOCACHE, 256 * 1024, HM_PAGE_READWRITE, HM_PAGE_READONLY},
    {HM_PAGE_EXECUTE_READWRITE, 20 * 1024 * 1024, HM_PAGE_READWRITE, HM_PAGE_EXECUTE_READ}, /* too big for a summary */
};
#define NRECIPES (sizeof recipes / sizeof recipes[0])

static hm_manager *M, *OTHER; /* the writers' manager, and one that owns none of it (SPEC 3.1) */
static _Atomic uintptr_t bases[WRITERS][SLOTS]; /* where the writers' allocations are (0: none yet) */
static atomic_bool stop;
static _Atomic unsigned long answers, checked_alloc;

static uint64_t now_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000000ull + (uint64_t)t.tv_nsec;
}

static const recipe *recipe_of(uint32_t aprot)
{
    for (size_t i = 0; i < NRECIPES; i++)
        if (recipes[i].aprot == aprot) return &recipes[i];
    return NULL;
}

static uint32_t modifier(uint32_t aprot) { return aprot & (HM_PAGE_NOCACHE | HM_PAGE_WRITECOMBINE); }

static void ok(hm_status st, const char *what)
{
    if (st != HM_OK) record_failure("%s: %s (%s)", what, hm_status_name(st), hm_last_detail());
}

static void *writer(void *arg)
{
    int w = (int)(intptr_t)arg;
    uint64_t x = 0x9E3779B97F4A7C15ull * (uint64_t)(w + 1);
    unsigned long rounds = 0;
    while (!atomic_load(&stop) && !failed()) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        int slot = (int)(x % SLOTS);
        const recipe *r = &recipes[(x >> 8) % NRECIPES];
        void *p, *q;
        uint32_t old;
        ok(hm_virtual_alloc(M, NULL, r->size, HM_MEM_RESERVE, r->aprot, &p), "reserve");
        if (!p) break;
        atomic_store(&bases[w][slot], (uintptr_t)p);
        ok(hm_virtual_alloc(M, p, r->size, HM_MEM_COMMIT, r->p, &q), "commit all");
        ok(hm_virtual_protect(M, p, r->size, r->q, &old), "protect all");
        ok(hm_virtual_free(M, p, r->size, HM_MEM_DECOMMIT), "decommit all");
        ok(hm_virtual_alloc(M, p, r->size / 2, HM_MEM_COMMIT, r->p, &q), "commit half");
        ok(hm_virtual_free(M, p, 0, HM_MEM_DECOMMIT), "decommit (size 0)");
        ok(hm_virtual_free(M, p, 0, HM_MEM_RELEASE), "release");
        rounds++;
    }
    return (void *)rounds;
}

static void check(const void *at, const hm_region *r)
{
    uintptr_t a = (uintptr_t)at, page = a & ~(PAGE - 1);
    if ((uintptr_t)r->base != page || r->size == 0 || r->size % PAGE || r->partition_id)
        return record_failure("%p: base %p size %zu", at, r->base, r->size);
    if (r->state == HM_MEM_FREE) {
        if (r->allocation_base || r->allocation_protect || r->protect != HM_PAGE_NOACCESS || r->type)
            record_failure("%p: free, but allocation base %p, protect %#x/%#x, type %#x", at, r->allocation_base,
                           r->allocation_protect, r->protect, r->type);
        return;
    }
    uintptr_t ab = (uintptr_t)r->allocation_base, end = page + r->size;
    const recipe *rc = recipe_of(r->allocation_protect);
    if (!rc || ab % GRAN || ab > page || r->type != HM_MEM_PRIVATE)
        return record_failure("%p: allocation base %p, AllocationProtect %#x, type %#x", at, r->allocation_base,
                              r->allocation_protect, r->type);
    uintptr_t aend = ab + rc->size, half = ab + rc->size / 2;
    if (page >= aend) return record_failure("%p: in allocation %p of %u bytes?", at, r->allocation_base, rc->size);
    uint32_t mod = modifier(rc->aprot);
    if (r->state == HM_MEM_RESERVE) {
        if (r->protect != 0 || end != aend)
            record_failure("%p: reserved, protect %#x, region to %#lx (allocation %#lx..%#lx)", at, r->protect,
                           (unsigned long)end, (unsigned long)ab, (unsigned long)aend);
    } else if (r->state == HM_MEM_COMMIT) {
        bool p_ok = r->protect == (rc->p | mod) && (end == aend || (end == half && page < half));
        bool q_ok = r->protect == (rc->q | mod) && end == aend;
        if (!p_ok && !q_ok)
            record_failure("%p: committed, protect %#x, region to %#lx (allocation %#lx..%#lx, AllocationProtect %#x)",
                           at, r->protect, (unsigned long)end, (unsigned long)ab, (unsigned long)aend, rc->aprot);
    } else {
        record_failure("%p: state %#x", at, r->state);
    }
    atomic_fetch_add_explicit(&checked_alloc, 1, memory_order_relaxed);
}

static void *reader(void *arg)
{
    uint64_t x = 0xD1B54A32D192ED03ull * ((uint64_t)(intptr_t)arg + 7);
    while (!atomic_load(&stop) && !failed()) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        uintptr_t b = atomic_load(&bases[x % WRITERS][(x >> 4) % SLOTS]);
        if (!b) continue;
        const void *at = (const void *)(b + (x >> 16) % (320 * 1024)); /* in, after and past the allocation */
        hm_region r;
        if ((x >> 40) % 8 == 0) { /* another manager sees free memory or someone else's allocation */
            hm_status st = hm_virtual_query(OTHER, at, &r);
            if (st == HM_OK && r.state != HM_MEM_FREE) record_failure("%p: another manager sees state %#x", at, r.state);
            else if (st != HM_OK && st != HM_E_HOST_NOT_OWNER) record_failure("%p: another manager: %s", at, hm_status_name(st));
            else if (st == HM_OK) check(at, &r);
            continue;
        }
        hm_status st = hm_virtual_query(M, at, &r);
        if (st != HM_OK) {
            record_failure("query %p: %s (%s)", at, hm_status_name(st), hm_last_detail());
            break;
        }
        check(at, &r);
        atomic_fetch_add_explicit(&answers, 1, memory_order_relaxed);
    }
    return NULL;
}

static void test_query_under_writers(void **state)
{
    (void)state;
    assert_int_equal(hm_manager_create("", &M), HM_OK);
    assert_int_equal(hm_manager_create("", &OTHER), HM_OK);
    void *mine; /* (so that OTHER has a name in the map's summaries too) */
    assert_int_equal(hm_virtual_alloc(OTHER, NULL, GRAN, HM_MEM_RESERVE, HM_PAGE_READWRITE, &mine), HM_OK);
    pthread_t wt[WRITERS], rt[READERS];
    for (int i = 0; i < WRITERS; i++) assert_int_equal(pthread_create(&wt[i], NULL, writer, (void *)(intptr_t)i), 0);
    for (int i = 0; i < READERS; i++) assert_int_equal(pthread_create(&rt[i], NULL, reader, (void *)(intptr_t)i), 0);
    uint64_t t0 = now_ns();
    while (now_ns() - t0 < 1500000000ull && !failed()) usleep(20000);
    atomic_store(&stop, true);
    unsigned long rounds = 0;
    for (int i = 0; i < WRITERS; i++) {
        void *n;
        pthread_join(wt[i], &n);
        rounds += (unsigned long)(uintptr_t)n;
    }
    for (int i = 0; i < READERS; i++) pthread_join(rt[i], NULL);
    print_message("%lu writer rounds, %lu answers (%lu inside allocations)\n", rounds, atomic_load(&answers),
                  atomic_load(&checked_alloc));
    assert_no_thread_failures();
    assert_true(rounds > 0 && atomic_load(&checked_alloc) > 0);
    assert_int_equal(hm_manager_destroy(M), HM_OK);
    assert_int_equal(hm_manager_destroy(OTHER), HM_OK);
}


/* One allocation whose granules straddle a radix leaf (a leaf covers 512 granules, 32 MiB): its
 * summaries are written leaf by leaf (radix.c, hm_radix_summarize). After each change every page
 * of it, and the granules on both sides, must answer as the record says, and the map's own check
 * (summaries against records) must pass. */
/* (size 0: any size) */
static void expect_region(void *at, void *abase, uint32_t state, uint32_t prot, size_t size)
{
    hm_region r;
    assert_int_equal(hm_virtual_query(M, at, &r), HM_OK);
    if (r.allocation_base != abase || r.state != state || r.protect != prot || (size && r.size != size))
        fail_msg("query %p: base %p state %#x protect %#x size %zu; expected %p %#x %#x %zu", at, r.allocation_base,
                 r.state, r.protect, r.size, abase, state, prot, size);
}

static void test_summaries_across_a_leaf(void **state)
{
    (void)state;
    const uintptr_t leaf = (uintptr_t)32 << 20, size = (uintptr_t)15 << 20; /* 3840 pages: summarised */
    assert_int_equal(hm_manager_create("", &M), HM_OK);
    void *area, *p;
    assert_int_equal(hm_virtual_alloc(M, NULL, 3 * leaf, HM_MEM_RESERVE, HM_PAGE_NOACCESS, &area), HM_OK);
    assert_int_equal(hm_virtual_free(M, area, 0, HM_MEM_RELEASE), HM_OK);
    /* 8 MiB below a leaf's start and 7 MiB above it (the area was free a moment ago) */
    uintptr_t base = (((uintptr_t)area + leaf - 1) & ~(leaf - 1)) + leaf - ((uintptr_t)8 << 20);
    assert_int_equal(hm_virtual_alloc(M, (void *)base, size, HM_MEM_RESERVE, HM_PAGE_READWRITE, &p), HM_OK);
    assert_ptr_equal(p, (void *)base);
    for (int step = 0; step < 4; step++) {
        uint32_t st = HM_MEM_RESERVE, prot = 0;
        if (step == 0) {
            assert_int_equal(hm_virtual_alloc(M, p, size, HM_MEM_COMMIT, HM_PAGE_READWRITE, &p), HM_OK);
            st = HM_MEM_COMMIT, prot = HM_PAGE_READWRITE;
        } else if (step == 1) {
            uint32_t old;
            assert_int_equal(hm_virtual_protect(M, p, size, HM_PAGE_READONLY, &old), HM_OK);
            st = HM_MEM_COMMIT, prot = HM_PAGE_READONLY;
        } else if (step == 2) {
            assert_int_equal(hm_virtual_free(M, p, size, HM_MEM_DECOMMIT), HM_OK);
        }
        if (step < 3) {
            for (uintptr_t a = base; a < base + size; a += PAGE) expect_region((void *)a, p, st, prot, base + size - a);
        } else {
            assert_int_equal(hm_virtual_free(M, p, 0, HM_MEM_RELEASE), HM_OK);
            for (uintptr_t a = base; a < base + size; a += GRAN) expect_region((void *)a, NULL, HM_MEM_FREE, HM_PAGE_NOACCESS, 0);
        }
        expect_region((void *)(base - GRAN), NULL, HM_MEM_FREE, HM_PAGE_NOACCESS, 0);
        if (hm_vmap_check(false) != HM_OK) fail_msg("step %d: hm_vmap_check: %s", step, hm_last_detail());
    }
    assert_int_equal(hm_manager_destroy(M), HM_OK);
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_summaries_across_a_leaf),
                                       cmocka_unit_test(test_query_under_writers)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
