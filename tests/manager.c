/* manager.c — managers' budgets and ownership (SPEC 3.1, 3.2, 3.6): admission at each level around its threshold, headroom, charge bookkeeping, counters, cross-manager ownership, walks, destruction and va.limit. */
#define _GNU_SOURCE
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"
#include "vmap/vmap.h"

#define K ((size_t)1024)
#define PG ((size_t)4096)
#define GRAN ((size_t)65536)

#define OPTS "limit=1M,reserve.appdomain=256K,reserve.process=128K"
#define LIM ((size_t)1024 * K)
#define RA ((size_t)256 * K)
#define RP ((size_t)128 * K)
/* The most charge a request of each level may leave (SPEC 3.2). */
static const size_t threshold[3] = {LIM - RA - RP, LIM - RP, LIM};
static const char *level_name[3] = {"task", "appdomain", "process"};

/* ---- helpers ---------------------------------------------------------------------------------- */

static hm_manager *make(const char *opts)
{
    hm_manager *m = NULL;
    hm_status st = hm_manager_create(opts, &m);
    if (st != HM_OK) fail_msg("hm_manager_create(\"%s\") = %#x: %s", opts, (unsigned)st, hm_last_detail());
    assert_non_null(m);
    return m;
}

static void check_books(void)
{
    hm_status st = hm_vmap_check(true);
    if (st != HM_OK) fail_msg("hm_vmap_check: %#x: %s", (unsigned)st, hm_last_detail());
}

/* Reserve (and optionally commit) at level; expects success. */
static void *alloc_ok(hm_manager *m, void *addr, size_t size, uint32_t type, hm_level level)
{
    void *b = NULL;
    hm_status st = hm_virtual_alloc_level(m, addr, size, type, HM_PAGE_READWRITE, level, &b);
    if (st != HM_OK)
        fail_msg("alloc(%p, %#zx, type %#x, level %d) = %#x: %s", addr, size, type, (int)level, (unsigned)st,
                 hm_last_detail());
    assert_non_null(b);
    return b;
}

static void *reserve_commit(hm_manager *m, size_t size, hm_level level)
{
    return alloc_ok(m, NULL, size, HM_MEM_RESERVE | HM_MEM_COMMIT, level);
}

static void *reserve_only(hm_manager *m, size_t size)
{
    return alloc_ok(m, NULL, size, HM_MEM_RESERVE, HM_LEVEL_TASK);
}

static void commit_ok(hm_manager *m, void *p, size_t size, hm_level level)
{
    void *b = alloc_ok(m, p, size, HM_MEM_COMMIT, level);
    assert_ptr_equal(b, p);
}

/* Sum of the committed region sizes of m's allocations, as hm_vm_walk reports them. */
static int sum_fn(const hm_region *r, void *arg)
{
    if (r->state == HM_MEM_COMMIT) *(uint64_t *)arg += r->size;
    return 0;
}

static uint64_t walked_commit(hm_manager *m)
{
    uint64_t sum = 0;
    assert_int_equal(hm_vm_walk(m, sum_fn, &sum), HM_OK);
    return sum;
}

/* [3.2] charge = committed bytes of the manager's allocations = what the test expects. */
static void expect_charge(hm_manager *m, uint64_t expected)
{
    uint64_t c = tu_charge(m), w = walked_commit(m);
    if (c != expected || w != expected)
        fail_msg("charge %" PRIu64 ", committed by walk %" PRIu64 ", expected %" PRIu64, c, w, expected);
}

/* Snapshots of one manager's regions (walk) for "nothing changed" checks. */
static tu_snapshot snap_a, snap_b;

static void snap(hm_manager *m, tu_snapshot *s)
{
    s->n = 0;
    assert_int_equal(hm_vm_walk(m, tu_snap_fn, s), HM_OK);
}

static void assert_unchanged(hm_manager *m, const tu_snapshot *before)
{
    static tu_snapshot now;
    snap(m, &now);
    tu_snapshot_assert_equal(before, &now);
}

static hm_region query(hm_manager *m, const void *p)
{
    hm_region r;
    hm_status st = hm_virtual_query(m, p, &r);
    if (st != HM_OK) fail_msg("query(%p) = %#x: %s", p, (unsigned)st, hm_last_detail());
    return r;
}

/* ---- admission (SPEC 3.2) --------------------------------------------------------------------- */

/* One request of `n` bytes at `level` with `pre` bytes already charged (at process level): admitted
 * iff pre + n <= threshold[level]. into: commit into an existing reservation instead of
 * MEM_RESERVE|MEM_COMMIT. */
static void admission_case(hm_level level, bool into, size_t pre, size_t n)
{
    hm_manager *m = make(OPTS);
    if (pre) (void)reserve_commit(m, pre, HM_LEVEL_PROCESS);
    char *r = into ? reserve_only(m, 2 * LIM) : NULL;
    expect_charge(m, pre);
    hm_manager_stats before = tu_stats(m);
    snap(m, &snap_a);

    bool admit = pre + n <= threshold[level];
    void *b = (void *)(uintptr_t)0x1;
    hm_status st = into ? hm_virtual_alloc_level(m, r + GRAN, n, HM_MEM_COMMIT, HM_PAGE_READWRITE, level, &b)
                        : hm_virtual_alloc_level(m, NULL, n, HM_MEM_RESERVE | HM_MEM_COMMIT, HM_PAGE_READWRITE, level, &b);
    hm_manager_stats after = tu_stats(m);
    if (admit) {
        if (st != HM_OK)
            fail_msg("%s %s: charge %zu + %zu <= %zu refused: %#x %s", level_name[level], into ? "commit" : "reserve+commit",
                     pre, n, threshold[level], (unsigned)st, hm_last_detail());
        assert_non_null(b);
        if (into) assert_ptr_equal(b, r + GRAN);
        hm_region q = query(m, b);
        assert_int_equal(q.state, HM_MEM_COMMIT);
        assert_int_equal(q.size, n);
        assert_int_equal(tu_writable(b), 1);
        assert_int_equal(tu_writable((char *)b + n - 1), 1);
        expect_charge(m, pre + n);
        assert_int_equal(after.granted[level], before.granted[level] + 1); /* [3.2] counters */
        assert_int_equal(after.refused[level], before.refused[level]);
    } else {
        if (st != HM_E_COMMITMENT_LIMIT)
            fail_msg("%s %s: charge %zu + %zu > %zu gave %#x, expected ERROR_COMMITMENT_LIMIT", level_name[level],
                     into ? "commit" : "reserve+commit", pre, n, threshold[level], (unsigned)st);
        assert_null(b);                                   /* [2.2] *base NULL on failure */
        assert_int_equal(hm_status_hresult(st), HM_E_OUTOFMEMORY); /* [3.2] E_OUTOFMEMORY to COM */
        expect_charge(m, pre);                            /* [3.2] nothing charged */
        assert_unchanged(m, &snap_a);                     /* [2.7.3] nothing changed */
        assert_int_equal(after.va_used, before.va_used);
        assert_int_equal(after.refused[level], before.refused[level] + 1);
        assert_int_equal(after.granted[level], before.granted[level]);
    }
    for (int l = 0; l < 3; l++) {
        if (l == (int)level) continue;
        assert_int_equal(after.granted[l], before.granted[l]);
        assert_int_equal(after.refused[l], before.refused[l]);
    }
    assert_true(after.peak_charge <= LIM);
    tu_destroy(m);
}

static void test_admission_thresholds(void **state)
{
    (void)state;
    for (int level = 0; level < 3; level++)
        for (int into = 0; into < 2; into++)
            for (size_t pre = 0; pre <= 192 * K; pre += 192 * K) {
                size_t t = threshold[level] - pre;
                admission_case((hm_level)level, into, pre, t);      /* [3.2] exactly at the threshold */
                admission_case((hm_level)level, into, pre, t - PG); /* one page under */
                admission_case((hm_level)level, into, pre, t + PG); /* one page over */
            }
    /* a request larger than the whole limit, and one whose size would overflow a naive sum */
    admission_case(HM_LEVEL_PROCESS, false, 64 * K, 64 * LIM);
    admission_case(HM_LEVEL_TASK, true, 0, LIM + PG);
    check_books();
}

/* [3.2] headroom: the less critical levels stop while the more critical ones still pass. */
static void test_headroom(void **state)
{
    (void)state;
    hm_manager *m = make(OPTS);
    char *r = reserve_only(m, 2 * LIM);
    size_t used = 0;
    /* task fills its part: up to L - Ra - Rp */
    commit_ok(m, r, threshold[0] - PG, HM_LEVEL_TASK);
    used = threshold[0] - PG;
    commit_ok(m, r + used, PG, HM_LEVEL_TASK);
    used += PG;
    expect_charge(m, threshold[0]);
    void *b;
    snap(m, &snap_a);
    assert_int_equal(hm_virtual_alloc_level(m, r + used, PG, HM_MEM_COMMIT, HM_PAGE_READWRITE, HM_LEVEL_TASK, &b),
                     HM_E_COMMITMENT_LIMIT);
    assert_int_equal(hm_virtual_alloc_level(m, NULL, PG, HM_MEM_RESERVE | HM_MEM_COMMIT, HM_PAGE_READWRITE,
                                            HM_LEVEL_TASK, &b),
                     HM_E_COMMITMENT_LIMIT);
    assert_null(b);
    assert_unchanged(m, &snap_a);
    expect_charge(m, threshold[0]);
    /* appdomain and process still admitted */
    commit_ok(m, r + used, PG, HM_LEVEL_APPDOMAIN);
    used += PG;
    void *p1 = reserve_commit(m, PG, HM_LEVEL_PROCESS);
    used += PG;
    expect_charge(m, used);
    /* appdomain fills its part */
    commit_ok(m, r + used, threshold[1] - used, HM_LEVEL_APPDOMAIN);
    used = threshold[1];
    expect_charge(m, used);
    snap(m, &snap_a);
    assert_int_equal(hm_virtual_alloc_level(m, r + used, PG, HM_MEM_COMMIT, HM_PAGE_READWRITE, HM_LEVEL_TASK, &b),
                     HM_E_COMMITMENT_LIMIT);
    assert_int_equal(hm_virtual_alloc_level(m, r + used, PG, HM_MEM_COMMIT, HM_PAGE_READWRITE, HM_LEVEL_APPDOMAIN, &b),
                     HM_E_COMMITMENT_LIMIT);
    assert_int_equal(hm_virtual_alloc_level(m, NULL, PG, HM_MEM_RESERVE | HM_MEM_COMMIT, HM_PAGE_READWRITE,
                                            HM_LEVEL_APPDOMAIN, &b),
                     HM_E_COMMITMENT_LIMIT);
    assert_unchanged(m, &snap_a);
    /* process takes the rest, to the page */
    commit_ok(m, r + used, LIM - used, HM_LEVEL_PROCESS);
    used = LIM;
    expect_charge(m, LIM);
    snap(m, &snap_a);
    for (int l = 0; l < 3; l++) {
        assert_int_equal(hm_virtual_alloc_level(m, r + used, PG, HM_MEM_COMMIT, HM_PAGE_READWRITE, (hm_level)l, &b),
                         HM_E_COMMITMENT_LIMIT);
        assert_int_equal(hm_virtual_alloc_level(m, NULL, PG, HM_MEM_RESERVE | HM_MEM_COMMIT, HM_PAGE_READWRITE,
                                                (hm_level)l, &b),
                         HM_E_COMMITMENT_LIMIT);
        assert_null(b);
    }
    assert_unchanged(m, &snap_a);
    expect_charge(m, LIM);
    /* a page given back is admitted again at process level only */
    assert_int_equal(hm_release(m, p1), HM_OK);
    expect_charge(m, LIM - PG);
    assert_int_equal(hm_virtual_alloc_level(m, NULL, PG, HM_MEM_RESERVE | HM_MEM_COMMIT, HM_PAGE_READWRITE,
                                            HM_LEVEL_APPDOMAIN, &b),
                     HM_E_COMMITMENT_LIMIT);
    p1 = reserve_commit(m, PG, HM_LEVEL_PROCESS);
    expect_charge(m, LIM);
    /* reservations cost nothing even with the budget spent */
    void *r2 = reserve_only(m, 4 * LIM);
    expect_charge(m, LIM);
    hm_manager_stats s = tu_stats(m);
    assert_int_equal(s.charge, LIM);
    assert_int_equal(s.peak_charge, LIM);
    (void)r2;
    tu_destroy(m);
    check_books();
}

/* [3.2] re-commit of committed pages costs nothing; only the reserved pages of a range are charged. */
static void test_recommit_free(void **state)
{
    (void)state;
    hm_manager *m = make(OPTS);
    char *r = reserve_only(m, 256 * K);
    commit_ok(m, r, 128 * K, HM_LEVEL_PROCESS);
    char *big = reserve_commit(m, LIM - 128 * K, HM_LEVEL_PROCESS);
    expect_charge(m, LIM);
    memset(r, 0x5a, 128 * K);
    hm_manager_stats before = tu_stats(m);
    /* the budget is spent, yet re-committing (even at task level, with a new protection) is admitted */
    void *b;
    assert_int_equal(hm_virtual_alloc_level(m, r, 128 * K, HM_MEM_COMMIT, HM_PAGE_READONLY, HM_LEVEL_TASK, &b), HM_OK);
    assert_ptr_equal(b, r);
    hm_manager_stats after = tu_stats(m);
    expect_charge(m, LIM);
    for (int l = 0; l < 3; l++) { /* a request that raised nothing is no grant */
        assert_int_equal(after.granted[l], before.granted[l]);
        assert_int_equal(after.refused[l], before.refused[l]);
    }
    hm_region q = query(m, r);
    assert_int_equal(q.protect, HM_PAGE_READONLY); /* [2.7.2] new protection, data kept */
    assert_int_equal((unsigned char)r[0], 0x5a);
    assert_int_equal((unsigned char)r[128 * K - 1], 0x5a);
    /* half committed, half reserved: refused as a whole with the budget spent */
    snap(m, &snap_a);
    b = (void *)(uintptr_t)1;
    assert_int_equal(hm_virtual_alloc_level(m, r + 64 * K, 128 * K, HM_MEM_COMMIT, HM_PAGE_READWRITE, HM_LEVEL_PROCESS, &b),
                     HM_E_COMMITMENT_LIMIT);
    assert_null(b);
    assert_unchanged(m, &snap_a);
    assert_int_equal(query(m, r + 64 * K).protect, HM_PAGE_READONLY);
    expect_charge(m, LIM);
    /* give back exactly the new half: now it fits, and only 64K is charged */
    assert_int_equal(hm_decommit(m, big, 64 * K), HM_OK);
    expect_charge(m, LIM - 64 * K);
    commit_ok(m, r + 64 * K, 128 * K, HM_LEVEL_PROCESS);
    expect_charge(m, LIM);
    assert_int_equal(query(m, r + 64 * K).protect, HM_PAGE_READWRITE);
    assert_int_equal((unsigned char)r[64 * K], 0x5a); /* re-committed pages keep their data */
    assert_int_equal((unsigned char)r[128 * K], 0);   /* new ones read zero */
    /* the same through MEM_RESERVE|MEM_COMMIT is always new pages: refused */
    assert_int_equal(hm_virtual_alloc_level(m, NULL, PG, HM_MEM_RESERVE | HM_MEM_COMMIT, HM_PAGE_READWRITE, HM_LEVEL_PROCESS, &b),
                     HM_E_COMMITMENT_LIMIT);
    tu_destroy(m);
    check_books();
}

/* [3.2] decommit and release give the charge back; MEM_RESET does not change it. */
static void test_give_back_and_reset(void **state)
{
    (void)state;
    hm_manager *m = make(OPTS);
    char *a = reserve_commit(m, 256 * K, HM_LEVEL_TASK);
    char *r = reserve_only(m, 512 * K);
    commit_ok(m, r + 64 * K, 128 * K, HM_LEVEL_APPDOMAIN);
    uint64_t expect = 256 * K + 128 * K;
    expect_charge(m, expect);
    memset(a, 1, 256 * K);
    /* MEM_RESET: committed pages stay committed, and nothing moves in the books */
    void *b;
    for (int l = 0; l < 3; l++) {
        assert_int_equal(hm_virtual_alloc_level(m, a, 128 * K, HM_MEM_RESET, HM_PAGE_READWRITE, (hm_level)l, &b), HM_OK);
        expect_charge(m, expect);
    }
    assert_int_equal(query(m, a).state, HM_MEM_COMMIT);
    /* MEM_RESET over reserved and committed pages of r: reserved ones stay reserved */
    assert_int_equal(hm_virtual_alloc_level(m, r, 512 * K, HM_MEM_RESET, HM_PAGE_NOACCESS, HM_LEVEL_TASK, &b), HM_OK);
    expect_charge(m, expect);
    assert_int_equal(query(m, r).state, HM_MEM_RESERVE);
    assert_int_equal(query(m, r + 64 * K).state, HM_MEM_COMMIT);
    /* a MEM_RESET with the budget spent still succeeds, even at task level */
    char *fill = reserve_commit(m, LIM - expect, HM_LEVEL_PROCESS);
    expect_charge(m, LIM);
    assert_int_equal(hm_virtual_alloc_level(m, fill, LIM - expect, HM_MEM_RESET, HM_PAGE_READWRITE, HM_LEVEL_TASK, &b), HM_OK);
    expect_charge(m, LIM);
    assert_int_equal(hm_release(m, fill), HM_OK);
    expect_charge(m, expect);
    /* decommit: only committed pages give anything back */
    assert_int_equal(hm_decommit(m, a, 64 * K), HM_OK);
    expect -= 64 * K;
    expect_charge(m, expect);
    assert_int_equal(hm_decommit(m, a + 32 * K, 64 * K), HM_OK); /* half already reserved */
    expect -= 32 * K;
    expect_charge(m, expect);
    assert_int_equal(hm_decommit(m, a, 96 * K), HM_OK); /* all reserved already */
    expect_charge(m, expect);
    assert_int_equal(hm_decommit(m, r, 512 * K), HM_OK); /* whole reservation, partly committed */
    expect -= 128 * K;
    expect_charge(m, expect);
    assert_int_equal(hm_decommit(m, r, 512 * K), HM_OK);
    expect_charge(m, expect);
    /* size-0 decommit at the base gives back the rest of a */
    commit_ok(m, a, 4 * PG, HM_LEVEL_TASK);
    expect += 4 * PG;
    expect_charge(m, expect);
    assert_int_equal(hm_virtual_free(m, a, 0, HM_MEM_DECOMMIT), HM_OK);
    expect = 0;
    expect_charge(m, expect);
    /* release of a partly committed allocation */
    commit_ok(m, a + 8 * PG, 3 * PG, HM_LEVEL_TASK);
    commit_ok(m, r + 100 * PG, 5 * PG, HM_LEVEL_TASK);
    expect_charge(m, 8 * PG);
    assert_int_equal(hm_release(m, a), HM_OK);
    expect_charge(m, 5 * PG);
    assert_int_equal(hm_release(m, r), HM_OK);
    expect_charge(m, 0);
    hm_manager_stats s = tu_stats(m);
    assert_int_equal(s.va_used, 0);
    tu_destroy(m);
    check_books();
}

/* [3.2] charge follows a long mixed sequence exactly. */
static void test_charge_matches_sequence(void **state)
{
    (void)state;
    hm_manager *m = make("limit=64M");
    enum { N = 8, PAGES = 32 };
    char *res[N];
    bool committed[N][PAGES];
    memset(committed, 0, sizeof committed);
    for (int i = 0; i < N; i++) res[i] = reserve_only(m, PAGES * PG);
    uint32_t seed = 12345;
    for (int step = 0; step < 400; step++) {
        seed = seed * 1103515245u + 12345u;
        int i = (int)((seed >> 8) % N);
        int p0 = (int)((seed >> 16) % PAGES);
        int np = 1 + (int)((seed >> 4) % (PAGES - p0 > 8 ? 8 : PAGES - p0));
        if ((seed >> 28) & 1) {
            commit_ok(m, res[i] + p0 * PG, np * PG, (hm_level)((seed >> 29) % 3));
            for (int p = p0; p < p0 + np; p++) committed[i][p] = true;
        } else {
            assert_int_equal(hm_decommit(m, res[i] + p0 * PG, np * PG), HM_OK);
            for (int p = p0; p < p0 + np; p++) committed[i][p] = false;
        }
        uint64_t expect = 0;
        for (int k = 0; k < N; k++)
            for (int p = 0; p < PAGES; p++) expect += committed[k][p] ? PG : 0;
        expect_charge(m, expect);
    }
    tu_destroy(m);
    check_books();
}

/* [3.2] counters per level; an invalid level is E_INVALIDARG. */
static void test_counters_and_invalid_level(void **state)
{
    (void)state;
    hm_manager *m = make(OPTS);
    uint64_t g[3] = {0}, f[3] = {0};
    char *r = reserve_only(m, 2 * LIM); /* reservation only: no grant */
    hm_manager_stats s = tu_stats(m);
    assert_memory_equal(s.granted, g, sizeof g);
    assert_memory_equal(s.refused, f, sizeof f);
    commit_ok(m, r, PG, HM_LEVEL_TASK), g[0]++;
    (void)reserve_commit(m, PG, HM_LEVEL_TASK), g[0]++;
    commit_ok(m, r + PG, PG, HM_LEVEL_APPDOMAIN), g[1]++;
    commit_ok(m, r + 2 * PG, PG, HM_LEVEL_PROCESS), g[2]++;
    (void)reserve_commit(m, PG, HM_LEVEL_PROCESS), g[2]++;
    commit_ok(m, r, 3 * PG, HM_LEVEL_APPDOMAIN); /* all committed: no grant */
    void *b;
    assert_int_equal(hm_virtual_alloc_level(m, r + 4 * PG, LIM, HM_MEM_COMMIT, HM_PAGE_READWRITE, HM_LEVEL_TASK, &b),
                     HM_E_COMMITMENT_LIMIT), f[0]++;
    assert_int_equal(hm_virtual_alloc_level(m, r + 4 * PG, LIM, HM_MEM_COMMIT, HM_PAGE_READWRITE, HM_LEVEL_TASK, &b),
                     HM_E_COMMITMENT_LIMIT), f[0]++;
    assert_int_equal(hm_virtual_alloc_level(m, NULL, LIM, HM_MEM_RESERVE | HM_MEM_COMMIT, HM_PAGE_READWRITE,
                                            HM_LEVEL_APPDOMAIN, &b),
                     HM_E_COMMITMENT_LIMIT), f[1]++;
    assert_int_equal(hm_virtual_alloc_level(m, r + 4 * PG, LIM, HM_MEM_COMMIT, HM_PAGE_READWRITE, HM_LEVEL_PROCESS, &b),
                     HM_E_COMMITMENT_LIMIT), f[2]++;
    s = tu_stats(m);
    assert_memory_equal(s.granted, g, sizeof g);
    assert_memory_equal(s.refused, f, sizeof f);
    expect_charge(m, 5 * PG);

    /* [3.2] the level must be one of the three */
    snap(m, &snap_a);
    static const int bad_levels[] = {3, 4, -1, 1000};
    for (size_t i = 0; i < sizeof bad_levels / sizeof bad_levels[0]; i++) {
        b = (void *)(uintptr_t)1;
        assert_int_equal(hm_virtual_alloc_level(m, NULL, PG, HM_MEM_RESERVE | HM_MEM_COMMIT, HM_PAGE_READWRITE,
                                                (hm_level)bad_levels[i], &b),
                         HM_E_INVALIDARG);
        assert_null(b);
        b = (void *)(uintptr_t)1;
        assert_int_equal(hm_virtual_alloc_level(m, r + 8 * PG, PG, HM_MEM_COMMIT, HM_PAGE_READWRITE,
                                                (hm_level)bad_levels[i], &b),
                         HM_E_INVALIDARG);
        assert_null(b);
    }
    assert_unchanged(m, &snap_a);
    s = tu_stats(m);
    assert_memory_equal(s.granted, g, sizeof g);
    assert_memory_equal(s.refused, f, sizeof f);
    expect_charge(m, 5 * PG);
    tu_destroy(m);
    check_books();
}

/* [5] the calls that name no level use win32.level. */
static void test_win32_level(void **state)
{
    (void)state;
    for (int l = 0; l < 3; l++) {
        char opts[128];
        snprintf(opts, sizeof opts, OPTS ",win32.level=%s", level_name[l]);
        hm_manager *m = make(opts);
        assert_int_equal(tu_stats(m).win32_level, l);
        void *b;
        assert_int_equal(hm_virtual_alloc(m, NULL, threshold[l] + PG, HM_MEM_RESERVE | HM_MEM_COMMIT, HM_PAGE_READWRITE, &b),
                         HM_E_COMMITMENT_LIMIT);
        assert_int_equal(hm_virtual_alloc(m, NULL, threshold[l], HM_MEM_RESERVE | HM_MEM_COMMIT, HM_PAGE_READWRITE, &b),
                         HM_OK);
        hm_manager_stats s = tu_stats(m);
        for (int k = 0; k < 3; k++) {
            assert_int_equal(s.granted[k], k == l ? 1 : 0);
            assert_int_equal(s.refused[k], k == l ? 1 : 0);
        }
        expect_charge(m, threshold[l]);
        tu_destroy(m);
    }
    check_books();
}

/* ---- ownership (SPEC 3.1) ---------------------------------------------------------------------- */

/* Every operation of `other` on p (an allocation of `owner` of 256K, first 128K committed) is
 * HOST_E_NOT_OWNER and changes nothing. */
static void touch_foreign(hm_manager *owner, hm_manager *other, char *p)
{
    tu_snapshot *so = &snap_a, *st_other = &snap_b;
    snap(owner, so);
    snap(other, st_other);
    uint64_t co = tu_charge(owner), cx = tu_charge(other);
    hm_manager_stats xs = tu_stats(other);
    void *b;
    uint32_t old = 0xdead;
    hm_region q;

    b = (void *)(uintptr_t)1;
    assert_int_equal(hm_virtual_alloc_level(other, p + 128 * K, 64 * K, HM_MEM_COMMIT, HM_PAGE_READWRITE,
                                            HM_LEVEL_PROCESS, &b),
                     HM_E_HOST_NOT_OWNER); /* [3.1] commit of reserved pages */
    assert_null(b);
    b = (void *)(uintptr_t)1;
    assert_int_equal(hm_virtual_alloc_level(other, p, 64 * K, HM_MEM_COMMIT, HM_PAGE_READONLY, HM_LEVEL_TASK, &b),
                     HM_E_HOST_NOT_OWNER); /* re-commit of committed pages */
    assert_null(b);
    assert_int_equal(hm_commit(other, p + 4 * PG, PG, HM_PAGE_READWRITE), HM_E_HOST_NOT_OWNER);
    assert_int_equal(hm_decommit(other, p, 64 * K), HM_E_HOST_NOT_OWNER);         /* decommit */
    assert_int_equal(hm_virtual_free(other, p, 0, HM_MEM_DECOMMIT), HM_E_HOST_NOT_OWNER);
    assert_int_equal(hm_decommit(other, p + 200 * K, PG), HM_E_HOST_NOT_OWNER);   /* of reserved pages */
    assert_int_equal(hm_release(other, p), HM_E_HOST_NOT_OWNER);                   /* release */
    assert_int_equal(hm_virtual_protect(other, p, PG, HM_PAGE_READONLY, &old), HM_E_HOST_NOT_OWNER); /* protect */
    assert_int_equal(hm_virtual_protect(other, p + PG, 2 * PG, HM_PAGE_NOACCESS, &old), HM_E_HOST_NOT_OWNER);
    assert_int_equal(hm_virtual_query(other, p, &q), HM_E_HOST_NOT_OWNER);          /* query */
    assert_int_equal(hm_virtual_query(other, p + 200 * K, &q), HM_E_HOST_NOT_OWNER);
    b = (void *)(uintptr_t)1;
    assert_int_equal(hm_virtual_alloc_level(other, p, 64 * K, HM_MEM_RESET, HM_PAGE_READWRITE, HM_LEVEL_PROCESS, &b),
                     HM_E_HOST_NOT_OWNER); /* MEM_RESET */
    assert_null(b);
    b = (void *)(uintptr_t)1;
    assert_int_equal(hm_virtual_alloc(other, p, 64 * K, HM_MEM_RESET_UNDO, HM_PAGE_READWRITE, &b), HM_E_HOST_NOT_OWNER);
    assert_null(b);

    assert_unchanged(owner, so);
    assert_unchanged(other, st_other);
    assert_int_equal(tu_charge(owner), co);
    assert_int_equal(tu_charge(other), cx);
    hm_manager_stats xs2 = tu_stats(other);
    assert_memory_equal(xs.granted, xs2.granted, sizeof xs.granted);
    assert_memory_equal(xs.refused, xs2.refused, sizeof xs.refused);
    assert_int_equal(xs.va_used, xs2.va_used);
    /* contents and protection intact */
    for (size_t off = 0; off < 128 * K; off += 4 * K) assert_int_equal((unsigned char)p[off], 0xc3);
    q = query(owner, p);
    assert_int_equal(q.state, HM_MEM_COMMIT);
    assert_int_equal(q.protect, HM_PAGE_READWRITE);
    assert_int_equal(q.size, 128 * K);
    assert_int_equal(query(owner, p + 128 * K).state, HM_MEM_RESERVE);
}

static char *owned_block(hm_manager *m)
{
    char *p = alloc_ok(m, NULL, 256 * K, HM_MEM_RESERVE, HM_LEVEL_PROCESS);
    commit_ok(m, p, 128 * K, HM_LEVEL_PROCESS);
    memset(p, 0xc3, 128 * K);
    return p;
}

static void test_ownership(void **state)
{
    (void)state;
    hm_manager *a = make("limit=16M");
    hm_manager *b = make("limit=16M");
    char *pa = owned_block(a);
    char *pb = owned_block(b);
    char *pd = owned_block(NULL);
    touch_foreign(a, b, pa);    /* A's allocation through B */
    touch_foreign(b, a, pb);    /* B's through A */
    touch_foreign(a, NULL, pa); /* A's through the process-default manager */
    touch_foreign(NULL, a, pd); /* the default manager's through A */
    expect_charge(a, 128 * K);
    expect_charge(b, 128 * K);
    /* the owners can still do everything */
    assert_int_equal(hm_release(a, pa), HM_OK);
    assert_int_equal(hm_release(b, pb), HM_OK);
    assert_int_equal(hm_release(NULL, pd), HM_OK);
    expect_charge(a, 0);
    expect_charge(b, 0);
    tu_destroy(a);
    tu_destroy(b);
    check_books();
}

/* [3.1] each manager sees its own allocations only. */
typedef struct seen {
    size_t n;
    void *bases[64];
} seen;

static int seen_fn(const hm_region *r, void *arg)
{
    seen *s = arg;
    if (s->n && s->bases[s->n - 1] == r->allocation_base) return 0;
    if (s->n < 64) s->bases[s->n++] = r->allocation_base;
    return 0;
}

static bool has(const seen *s, void *p)
{
    for (size_t i = 0; i < s->n; i++)
        if (s->bases[i] == p) return true;
    return false;
}

static void test_walk_own_only(void **state)
{
    (void)state;
    hm_manager *a = make("limit=16M");
    hm_manager *b = make("limit=16M");
    void *a1 = reserve_commit(a, 64 * K, HM_LEVEL_TASK), *a2 = reserve_only(a, 128 * K);
    void *b1 = reserve_commit(b, 64 * K, HM_LEVEL_TASK), *b2 = reserve_only(b, 3 * PG);
    void *b3 = reserve_commit(b, 5 * PG, HM_LEVEL_APPDOMAIN);
    void *d1 = reserve_only(NULL, 64 * K);
    seen sa = {0}, sb = {0}, sd = {0};
    assert_int_equal(hm_vm_walk(a, seen_fn, &sa), HM_OK);
    assert_int_equal(hm_vm_walk(b, seen_fn, &sb), HM_OK);
    assert_int_equal(hm_vm_walk(NULL, seen_fn, &sd), HM_OK);
    assert_int_equal(sa.n, 2);
    assert_true(has(&sa, a1) && has(&sa, a2));
    assert_int_equal(sb.n, 3);
    assert_true(has(&sb, b1) && has(&sb, b2) && has(&sb, b3));
    assert_true(has(&sd, d1));
    assert_false(has(&sd, a1) || has(&sd, a2) || has(&sd, b1) || has(&sd, b2) || has(&sd, b3));
    assert_int_equal(hm_release(NULL, d1), HM_OK);
    tu_destroy(a);
    tu_destroy(b);
    check_books();
}

/* [3.1][3.4] destroying a manager releases all of its allocations; the default cannot be destroyed. */
static void test_destroy_releases(void **state)
{
    (void)state;
    hm_manager *a = make("limit=64M");
    hm_manager *b = make("limit=16M");
    char *d = owned_block(NULL);
    enum { NA = 6 };
    char *pa[NA];
    size_t sz[NA] = {64 * K, 4 * PG, 1024 * K, 64 * K, 40 * 1024 * K, 200 * K};
    for (int i = 0; i < NA; i++) {
        pa[i] = i % 2 ? reserve_only(a, sz[i]) : reserve_commit(a, sz[i], HM_LEVEL_TASK);
        if (i % 2) commit_ok(a, pa[i] + PG, PG, HM_LEVEL_PROCESS);
        if (i % 3 == 0) assert_int_equal(hm_virtual_protect(a, pa[i] + PG, PG, HM_PAGE_READONLY, &(uint32_t){0}), HM_OK);
    }
    char *pb = reserve_commit(b, 64 * K, HM_LEVEL_TASK);
    memset(pb, 0x77, 64 * K);
    assert_true(tu_charge(a) > 0);
    hm_vm_stats vs0;
    hm_vm_get_stats(&vs0);
    tu_destroy(a);
    hm_vm_stats vs1;
    hm_vm_get_stats(&vs1);
    assert_int_equal(vs1.allocations, vs0.allocations - NA);
    for (int i = 0; i < NA; i++) {
        hm_region q = query(NULL, pa[i]);
        assert_int_equal(q.state, HM_MEM_FREE);
        assert_null(q.allocation_base);
        q = query(b, pa[i] + sz[i] - 1);
        assert_int_equal(q.state, HM_MEM_FREE);
        assert_int_equal(tu_readable(pa[i]), 0); /* the pages are gone too (reserved space reads as nothing) */
    }
    /* the address space is really free: another manager can reserve it at that address */
    void *again = alloc_ok(b, pa[2], 1024 * K, HM_MEM_RESERVE, HM_LEVEL_TASK);
    assert_ptr_equal(again, pa[2]);
    /* the default manager's and B's allocations are untouched */
    hm_region q = query(NULL, d);
    assert_int_equal(q.state, HM_MEM_COMMIT);
    assert_int_equal(q.size, 128 * K);
    for (size_t off = 0; off < 128 * K; off += PG) assert_int_equal((unsigned char)d[off], 0xc3);
    for (size_t off = 0; off < 64 * K; off += PG) assert_int_equal((unsigned char)pb[off], 0x77);
    expect_charge(b, 64 * K);
    /* the default manager cannot be destroyed */
    assert_int_equal(hm_manager_destroy(NULL), HM_E_INVALIDARG);
    assert_int_equal(query(NULL, d).state, HM_MEM_COMMIT);
    assert_int_equal(hm_release(NULL, d), HM_OK);
    tu_destroy(b);
    assert_int_equal(query(NULL, pb).state, HM_MEM_FREE);
    assert_int_equal(query(NULL, again).state, HM_MEM_FREE);
    /* an empty manager is destroyed as well */
    tu_destroy(make("limit=1M"));
    check_books();
}

/* ---- va.limit (SPEC 3.6) ----------------------------------------------------------------------- */

static void test_va_limit(void **state)
{
    (void)state;
    hm_manager *m = make("limit=16M,va.limit=1M");
    hm_manager_stats s = tu_stats(m);
    assert_int_equal(s.va_limit, 1024 * K);
    assert_int_equal(s.va_used, 0);
    char *r1 = reserve_only(m, 512 * K);
    char *r2 = reserve_commit(m, 256 * K, HM_LEVEL_TASK);
    char *r3 = reserve_only(m, 256 * K);
    s = tu_stats(m);
    assert_int_equal(s.va_used, 1024 * K);
    expect_charge(m, 256 * K);
    snap(m, &snap_a);
    void *b = (void *)(uintptr_t)1;
    assert_int_equal(hm_virtual_alloc_level(m, NULL, 64 * K, HM_MEM_RESERVE, HM_PAGE_READWRITE, HM_LEVEL_PROCESS, &b),
                     HM_E_NOT_ENOUGH_MEMORY); /* [3.6] beyond va.limit */
    assert_null(b);
    b = (void *)(uintptr_t)1;
    assert_int_equal(hm_virtual_alloc_level(m, NULL, PG, HM_MEM_RESERVE | HM_MEM_COMMIT, HM_PAGE_READWRITE,
                                            HM_LEVEL_PROCESS, &b),
                     HM_E_NOT_ENOUGH_MEMORY);
    assert_null(b);
    assert_int_equal(hm_status_hresult(HM_E_NOT_ENOUGH_MEMORY), HM_E_OUTOFMEMORY);
    assert_unchanged(m, &snap_a);
    s = tu_stats(m);
    assert_int_equal(s.va_used, 1024 * K);
    expect_charge(m, 256 * K);
    /* commits inside existing reservations need no address space */
    commit_ok(m, r1, 512 * K, HM_LEVEL_TASK);
    expect_charge(m, 768 * K);
    assert_int_equal(tu_stats(m).va_used, 1024 * K);
    /* releasing gives the space back, decommitting does not */
    assert_int_equal(hm_decommit(m, r1, 512 * K), HM_OK);
    assert_int_equal(tu_stats(m).va_used, 1024 * K);
    assert_int_equal(hm_release(m, r1), HM_OK);
    s = tu_stats(m);
    assert_int_equal(s.va_used, 512 * K);
    char *r4 = reserve_only(m, 256 * K);
    char *r5 = reserve_commit(m, 256 * K, HM_LEVEL_PROCESS);
    assert_int_equal(tu_stats(m).va_used, 1024 * K);
    assert_int_equal(hm_virtual_alloc_level(m, NULL, 64 * K, HM_MEM_RESERVE, HM_PAGE_READWRITE, HM_LEVEL_PROCESS, &b),
                     HM_E_NOT_ENOUGH_MEMORY);
    assert_int_equal(hm_release(m, r2), HM_OK);
    assert_int_equal(hm_release(m, r3), HM_OK);
    assert_int_equal(hm_release(m, r4), HM_OK);
    assert_int_equal(hm_release(m, r5), HM_OK);
    s = tu_stats(m);
    assert_int_equal(s.va_used, 0);
    expect_charge(m, 0);
    char *all = reserve_only(m, 1024 * K); /* exactly the limit */
    assert_int_equal(tu_stats(m).va_used, 1024 * K);
    assert_int_equal(hm_release(m, all), HM_OK);
    b = (void *)(uintptr_t)1;
    assert_int_equal(hm_virtual_alloc_level(m, NULL, 1024 * K + PG, HM_MEM_RESERVE, HM_PAGE_READWRITE, HM_LEVEL_PROCESS, &b),
                     HM_E_NOT_ENOUGH_MEMORY); /* one page over */
    assert_null(b);
    assert_int_equal(tu_stats(m).va_used, 0);
    /* va.limit is per manager: another manager is not affected */
    hm_manager *o = make("limit=16M,va.limit=1M");
    char *x = reserve_only(m, 1024 * K);
    char *y = reserve_only(o, 1024 * K);
    assert_int_equal(hm_release(o, y), HM_OK);
    assert_int_equal(hm_release(m, x), HM_OK);
    tu_destroy(o);
    tu_destroy(m);
    check_books();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_admission_thresholds),
        cmocka_unit_test(test_headroom),
        cmocka_unit_test(test_recommit_free),
        cmocka_unit_test(test_give_back_and_reset),
        cmocka_unit_test(test_charge_matches_sequence),
        cmocka_unit_test(test_counters_and_invalid_level),
        cmocka_unit_test(test_win32_level),
        cmocka_unit_test(test_ownership),
        cmocka_unit_test(test_walk_own_only),
        cmocka_unit_test(test_destroy_releases),
        cmocka_unit_test(test_va_limit),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
