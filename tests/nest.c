/* nest.c — nested budgets (README, "Nested budgets"): admission at every level against the child's
 * and the parents' thresholds (a page either side), refusals by an ancestor counted and described,
 * three levels, heaps of a child charging its parents, limit=N% of the parent, bad options, memory
 * states reaching children, waiters woken by a sibling's release, destroy and shutdown rules, the
 * default manager as a parent, and two threads in two children racing for the parent's last pages
 * with no manager ever over its limit (through the map, and on the accounts alone). Every charge goes
 * back to 0. */
#define _GNU_SOURCE
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "testutil.h"
#include "vmap/account.h"
#include "vmap/vmap.h"

#define K ((uint64_t)1024)
#define PG ((uint64_t)4096)

static char root[256];      /* a fake /proc and cgroup tree: an idle system, so only budgets move states */
static char sys_opts[600];  /* "proc.root=...,cgroup.root=..." */

static int group_setup(void **state)
{
    (void)state;
    if (tu_tree_make(root, sizeof root, "nest", "MemTotal:       4194304 kB\nMemFree:  4194304 kB\nMemAvailable:   4194304 kB\n"))
        return -1;
    snprintf(sys_opts, sizeof sys_opts, "proc.root=%s/proc,cgroup.root=%s/cgroup", root, root);
    return 0;
}

static int group_teardown(void **state) { return (void)state, tu_tree_remove(root); }

/* ---- helpers ---------------------------------------------------------------------------------- */

static hm_manager *top(const char *opts)
{
    char o[1024];
    snprintf(o, sizeof o, "%s,%s", sys_opts, opts);
    hm_manager *m = NULL;
    hm_status st = hm_manager_create(o, &m);
    if (st != HM_OK) fail_msg("hm_manager_create(\"%s\") = %#x: %s", o, (unsigned)st, hm_last_detail());
    return m;
}

static hm_manager *child(hm_manager *parent, const char *opts)
{
    hm_manager *m = NULL;
    hm_status st = hm_manager_create_child(parent, opts, &m);
    if (st != HM_OK) fail_msg("hm_manager_create_child(\"%s\") = %#x: %s", opts ? opts : "", (unsigned)st, hm_last_detail());
    assert_non_null(m);
    return m;
}

static void check_books(void)
{
    hm_status st = hm_vmap_check(KERNEL_CHECK);
    if (st != HM_OK) fail_msg("hm_vmap_check: %#x: %s", (unsigned)st, hm_last_detail());
}

static char *reserve(hm_manager *m, uint64_t size)
{
    void *b = NULL;
    hm_status st = hm_virtual_alloc_level(m, NULL, size, HM_MEM_RESERVE, HM_PAGE_READWRITE, HM_LEVEL_TASK, &b);
    if (st != HM_OK) fail_msg("reserve %#" PRIx64 ": %#x: %s", size, (unsigned)st, hm_last_detail());
    return b;
}

static hm_status commit(hm_manager *m, char *p, uint64_t size, hm_level level)
{
    void *b = NULL;
    return hm_virtual_alloc_level(m, p, size, HM_MEM_COMMIT, HM_PAGE_READWRITE, level, &b);
}

static void commit_ok(hm_manager *m, char *p, uint64_t size, hm_level level)
{
    hm_status st = commit(m, p, size, level);
    if (st != HM_OK) fail_msg("commit %#" PRIx64 " at level %d: %#x: %s", size, (int)level, (unsigned)st, hm_last_detail());
}

static void decommit_ok(hm_manager *m, char *p, uint64_t size) { assert_int_equal(hm_decommit(m, p, size), HM_OK); }

/* ---- admission -------------------------------------------------------------------------------- */

/* The child's own thresholds bind (its limit and reserves are below the parent's): exactly at each
 * level's threshold is admitted, a page more refused by the child itself. */
static void test_child_thresholds(void **state)
{
    (void)state;
    hm_manager *p = top("limit=1M,reserve.appdomain=256K,reserve.process=128K");
    hm_manager *c = child(p, "limit=50%,reserve.appdomain=64K,reserve.process=32K"); /* 512K */
    const uint64_t th[3] = {512 * K - 96 * K, 512 * K - 32 * K, 512 * K};
    assert_int_equal(tu_stats(c).limit, 512 * K);
    assert_int_equal(tu_stats(c).depth, 1);
    assert_int_equal(tu_stats(p).children, 1);
    char *a = reserve(c, 1024 * K);
    for (int l = 0; l < 3; l++) {
        hm_manager_stats before = tu_stats(c);
        commit_ok(c, a, th[l], (hm_level)l);
        assert_int_equal(tu_charge(c), th[l]);
        assert_int_equal(tu_charge(p), th[l]);
        assert_int_equal(tu_stats(p).children_charge, th[l]);
        assert_int_equal(commit(c, a + th[l], PG, (hm_level)l), HM_E_COMMITMENT_LIMIT);
        assert_non_null(strstr(hm_last_detail(), "the manager's budget refuses it"));
        hm_manager_stats after = tu_stats(c);
        assert_int_equal(after.refused[l], before.refused[l] + 1);
        assert_int_equal(after.refused_by_ancestor[l], 0);
        assert_int_equal(after.granted[l], before.granted[l] + 1);
        assert_int_equal(tu_charge(c), th[l]); /* nothing charged anywhere by the refusal */
        assert_int_equal(tu_charge(p), th[l]);
        assert_int_equal(tu_stats(p).refused[l], 0); /* the parent refused nothing of its own */
        decommit_ok(c, a, th[l]);
        assert_int_equal(tu_charge(p), 0);
    }
    check_books();
    assert_int_equal(hm_release(c, a), HM_OK);
    tu_destroy(c);
    assert_int_equal(tu_stats(p).children, 0);
    tu_destroy(p);
    check_books();
}

/* The parent's thresholds bind: with the parent holding some of its own, the child is admitted up
 * to the parent's level threshold exactly, and a page more is refused by the parent, counted as such
 * and said in the detail; the parent (and so the child) turns Low. */
static void test_parent_thresholds(void **state)
{
    (void)state;
    hm_manager *p = top("limit=1M,reserve.appdomain=256K,reserve.process=128K");
    hm_manager *c = child(p, NULL); /* the parent's limit, no reserves: thresholds 1M at every level */
    assert_int_equal(tu_stats(c).limit, 1024 * K);
    const uint64_t th[3] = {1024 * K - 384 * K, 1024 * K - 128 * K, 1024 * K};
    const uint64_t own = 128 * K;
    char *pa = reserve(p, own), *a = reserve(c, 1024 * K);
    commit_ok(p, pa, own, HM_LEVEL_PROCESS);
    for (int l = 0; l < 3; l++) {
        uint64_t room = th[l] - own;
        hm_manager_stats before = tu_stats(c), pbefore = tu_stats(p);
        commit_ok(c, a, room, (hm_level)l);
        assert_int_equal(tu_charge(c), room);
        assert_int_equal(tu_charge(p), th[l]);
        assert_int_equal(commit(c, a + room, PG, (hm_level)l), HM_E_COMMITMENT_LIMIT);
        const char *d = hm_last_detail();
        if (!strstr(d, "enclosing manager (1 level up, limit 0x100000)")) fail_msg("detail: %s", d);
        hm_manager_stats after = tu_stats(c), pafter = tu_stats(p);
        assert_int_equal(after.refused[l], before.refused[l] + 1);
        assert_int_equal(after.refused_by_ancestor[l], before.refused_by_ancestor[l] + 1);
        assert_int_equal(pafter.refused[l], pbefore.refused[l]); /* counted where it was asked */
        assert_int_equal(pafter.peak_charge, th[l]);            /* the refused page never counted */
        assert_int_equal(after.peak_charge, room > before.peak_charge ? room : before.peak_charge);
        assert_int_equal(tu_charge(c), room);
        assert_int_equal(tu_charge(p), th[l]);
        assert_int_equal(pafter.memory_state, HM_MEMORY_LOW); /* SPEC 3.5, at the refusing manager */
        assert_int_equal(after.memory_state, HM_MEMORY_LOW);  /* and below it */
        /* the parent's own request is refused by its own budget as before */
        assert_int_equal(commit(p, pa, own, (hm_level)l), HM_OK); /* (recommit: free) */
        decommit_ok(c, a, room);
        assert_int_equal(tu_charge(p), own);
    }
    decommit_ok(p, pa, own);
    assert_int_equal(tu_charge(p), 0);
    check_books();
    assert_int_equal(hm_release(c, a), HM_OK);
    assert_int_equal(hm_release(p, pa), HM_OK);
    tu_destroy(c);
    tu_destroy(p);
}

/* Three levels: the leaf is refused by its parent, then by the root two levels up; every charge is
 * the sum of its own and its descendants'. */
static void test_three_levels(void **state)
{
    (void)state;
    hm_manager *r = top("limit=1M");
    hm_manager *m = child(r, "limit=75%");  /* 768K */
    hm_manager *l = child(m, "limit=1536K"); /* above its parent's, which binds first */
    hm_manager *s = child(r, "limit=256K"); /* a sibling of m */
    assert_int_equal(tu_stats(l).limit, 1536 * K);
    assert_int_equal(tu_stats(l).depth, 2);
    char *a = reserve(l, 1024 * K), *b = reserve(s, 256 * K), *ra = reserve(r, 1024 * K);
    commit_ok(l, a, 768 * K, HM_LEVEL_TASK);
    assert_int_equal(commit(l, a + 768 * K, PG, HM_LEVEL_PROCESS), HM_E_COMMITMENT_LIMIT);
    assert_non_null(strstr(hm_last_detail(), "(1 level up, limit 0xc0000)"));
    decommit_ok(l, a, 768 * K);
    /* the root holds 512K of its own and the sibling 256K: 256K are left for the leaf */
    commit_ok(r, ra, 512 * K, HM_LEVEL_PROCESS);
    commit_ok(s, b, 256 * K, HM_LEVEL_PROCESS);
    commit_ok(l, a, 256 * K, HM_LEVEL_PROCESS);
    assert_int_equal(commit(l, a + 256 * K, PG, HM_LEVEL_PROCESS), HM_E_COMMITMENT_LIMIT);
    assert_non_null(strstr(hm_last_detail(), "(2 levels up, limit 0x100000)"));
    assert_int_equal(tu_stats(l).refused_by_ancestor[2], 2);
    assert_int_equal(tu_charge(l), 256 * K);
    assert_int_equal(tu_charge(m), 256 * K);
    assert_int_equal(tu_stats(m).children_charge, 256 * K);
    assert_int_equal(tu_charge(r), 1024 * K);
    assert_int_equal(tu_stats(r).children_charge, 512 * K);
    assert_int_equal(tu_stats(r).children, 2);
    assert_int_equal(tu_stats(m).children, 1);
    check_books();
    /* the sibling gives back: the leaf gets it */
    decommit_ok(s, b, 128 * K);
    commit_ok(l, a + 256 * K, 128 * K, HM_LEVEL_PROCESS);
    assert_int_equal(tu_charge(r), 1024 * K);
    /* a middle manager cannot go while the leaf lives */
    assert_int_equal(hm_manager_destroy(m), HM_E_HOST_INVALIDOPERATION);
    tu_destroy(l); /* releases its allocations: the charge leaves the whole chain */
    assert_int_equal(tu_charge(m), 0);
    assert_int_equal(tu_charge(r), 512 * K + 128 * K);
    tu_destroy(m);
    tu_destroy(s);
    assert_int_equal(tu_charge(r), 512 * K);
    assert_int_equal(hm_release(r, ra), HM_OK);
    assert_int_equal(tu_charge(r), 0);
    assert_int_equal(tu_stats(r).children, 0);
    tu_destroy(r);
    check_books();
}

/* A heap of a child charges the child and its parent; the parent's budget refuses the heap's pages
 * once full; destroying the heap gives all of it back. */
static void test_heap_on_child(void **state)
{
    (void)state;
    hm_manager *p = top("limit=4M");
    hm_manager *c = child(p, NULL);
    hm_manager *c2 = child(p, "limit=2M");
    hm_heap *h = NULL;
    assert_int_equal(hm_heap_create(c, HM_HEAP_THREADSAFE, &h), HM_OK);
    void *blk[64];
    for (int i = 0; i < 16; i++) assert_int_equal(hm_heap_alloc(h, 64 * K, HM_LEVEL_PROCESS, &blk[i]), HM_OK);
    uint64_t cc = tu_charge(c);
    assert_true(cc >= 16 * 64 * K);
    assert_int_equal(tu_charge(p), cc);
    assert_int_equal(tu_stats(p).children_charge, cc);
    /* the sibling takes the rest of the parent's budget: the heap's next pages are refused by it */
    char *b = reserve(c2, 2048 * K);
    uint64_t rest = 4096 * K - cc;
    if (rest > 2048 * K) rest = 2048 * K;
    commit_ok(c2, b, rest, HM_LEVEL_PROCESS);
    hm_status st = HM_OK;
    int n = 16;
    while (n < 64 && (st = hm_heap_alloc(h, 64 * K, HM_LEVEL_PROCESS, &blk[n])) == HM_OK) n++;
    assert_int_equal(st, HM_E_COMMITMENT_LIMIT);
    assert_true(tu_stats(c).refused_by_ancestor[2] >= 1);
    assert_true(tu_charge(p) <= 4096 * K);
    assert_int_equal(tu_charge(p), tu_charge(c) + tu_charge(c2));
    for (int i = 0; i < n; i++) assert_int_equal(hm_heap_free(h, blk[i]), HM_OK);
    assert_int_equal(hm_heap_destroy(h), HM_OK);
    assert_int_equal(tu_charge(c), 0);
    assert_int_equal(tu_charge(p), rest);
    tu_destroy(c2);
    assert_int_equal(tu_charge(p), 0);
    tu_destroy(c);
    tu_destroy(p);
    check_books();
}

/* ---- options ---------------------------------------------------------------------------------- */

static void expect_bad(hm_manager *p, const char *opts, const char *key)
{
    hm_manager *c = (hm_manager *)&c;
    assert_int_equal(hm_manager_create_child(p, opts, &c), HM_E_INVALIDARG);
    assert_null(c);
    if (!strstr(hm_last_detail(), key)) fail_msg("\"%s\": detail \"%s\" does not name %s", opts, hm_last_detail(), key);
}

static void test_options(void **state)
{
    (void)state;
    hm_manager *p = top("limit=1000K,wait.process=50,notify.low=10,notify.high=20,psi.some=30");
    hm_manager *c = child(p, "limit=25%,reserve.appdomain=10%,reserve.process=5%");
    hm_manager_stats s = tu_stats(c);
    assert_int_equal(s.limit, 250 * K);            /* of the parent's limit, not of the system's memory */
    assert_int_equal(s.reserve_appdomain, 100 * K);
    assert_int_equal(s.reserve_process, 50 * K);
    assert_int_equal(s.wait_ms[2], 0);              /* SPEC defaults, not the parent's */
    assert_int_equal(s.notify_low, 60);
    assert_int_equal(s.notify_high, 90);
    assert_int_equal(s.psi_some, 30);               /* the parent's view of the system */
    assert_int_equal(s.psi_full, 5);
    hm_manager *big = child(p, "limit=4M");        /* allowed: the parent binds first */
    char *a = reserve(big, 2048 * K);
    commit_ok(big, a, 1000 * K, HM_LEVEL_PROCESS);
    assert_int_equal(commit(big, a + 1000 * K, PG, HM_LEVEL_PROCESS), HM_E_COMMITMENT_LIMIT);
    assert_int_equal(tu_stats(big).refused_by_ancestor[2], 1);
    tu_destroy(big);
    /* HOSTMEM_OPTIONS is not read for a child */
    setenv("HOSTMEM_OPTIONS", "limit=64K,bogus=1", 1);
    hm_manager *e = child(p, NULL);
    unsetenv("HOSTMEM_OPTIONS");
    assert_int_equal(tu_stats(e).limit, 1000 * K);
    tu_destroy(e);
    expect_bad(p, "limit=lots", "'limit'");
    expect_bad(p, "limit=101%", "'limit'");
    expect_bad(p, "limit=0", "'limit'");
    expect_bad(p, "bogus=1", "'bogus'");
    expect_bad(p, "reserve.appdomain=60%,reserve.process=40%", "'reserve.appdomain'");
    expect_bad(p, "notify.low=90,notify.high=80", "'notify.low'");
    expect_bad(p, "psi.some=101", "'psi.some'");
    expect_bad(p, "psi.full=x", "'psi.full'");
    expect_bad(p, "limit=1K,", "empty option");
    assert_int_equal(hm_manager_create_child(p, NULL, NULL), HM_E_POINTER);
    assert_int_equal(tu_stats(p).children, 1);
    tu_destroy(c);
    tu_destroy(p);
}

/* ---- lifecycle -------------------------------------------------------------------------------- */

typedef struct waiter {
    hm_manager *m;
    uint64_t size;
    hm_status st;
    void *base;
} waiter;

static void *wait_alloc(void *arg)
{
    waiter *w = arg;
    w->st = hm_virtual_alloc_level(w->m, NULL, w->size, HM_MEM_RESERVE | HM_MEM_COMMIT, HM_PAGE_READWRITE,
                                   HM_LEVEL_PROCESS, &w->base);
    return NULL;
}

static void until_waiting(hm_manager *m, uint32_t n)
{
    for (int i = 0; i < 3000 && tu_stats(m).waiting < n; i++) tu_sleep_ms(1);
    assert_int_equal(tu_stats(m).waiting, n);
}

static double now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e3 + (double)t.tv_nsec / 1e6;
}

/* Destroying a parent with live children is refused and changes nothing; shutting a parent down
 * shuts its children down (their waiters abandoned) and it takes no new child; then children and
 * parent are destroyed in order. */
static void test_destroy_shutdown(void **state)
{
    (void)state;
    hm_manager *p = top("limit=1M");
    hm_manager *c1 = child(p, "wait.process=10s");
    hm_manager *c2 = child(p, NULL);
    char *a = reserve(c2, 1024 * K);
    commit_ok(c2, a, 1024 * K, HM_LEVEL_PROCESS);
    assert_int_equal(hm_manager_destroy(p), HM_E_HOST_INVALIDOPERATION);
    assert_string_equal(hm_last_detail(), "manager has 2 live child managers: destroy them first");
    assert_int_equal(tu_stats(p).state, HM_MANAGER_RUNNING); /* nothing changed */
    assert_int_equal(tu_charge(p), 1024 * K);
    /* a waiter of c1, refused by the parent, is abandoned when the parent shuts down */
    waiter w = {c1, 64 * K, HM_OK, NULL};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, wait_alloc, &w), 0);
    until_waiting(c1, 1);
    double t0 = now_ms();
    assert_int_equal(hm_manager_shutdown(p), HM_OK);
    pthread_join(t, NULL);
    assert_int_equal(w.st, HM_E_HOST_ABANDONED);
    assert_true(now_ms() - t0 < 5000);
    assert_int_equal(tu_stats(c1).abandoned[2], 1);
    assert_int_equal(tu_stats(c1).state, HM_MANAGER_SHUT_DOWN);
    assert_int_equal(tu_stats(c2).state, HM_MANAGER_SHUT_DOWN);
    assert_int_equal(commit(c2, a, PG, HM_LEVEL_PROCESS), HM_E_HOST_CLRNOTAVAILABLE);
    assert_int_equal(hm_manager_shutdown(c1), HM_E_HOST_CLRNOTAVAILABLE); /* already, by its parent */
    hm_manager *c3 = (hm_manager *)&c3;
    assert_int_equal(hm_manager_create_child(p, NULL, &c3), HM_E_HOST_CLRNOTAVAILABLE);
    assert_null(c3);
    assert_int_equal(hm_manager_destroy(p), HM_E_HOST_INVALIDOPERATION);
    assert_string_equal(hm_last_detail(), "manager has 2 live child managers: destroy them first");
    tu_destroy(c2); /* a shut-down child's memory still goes back up the chain */
    assert_int_equal(tu_charge(p), 0);
    assert_int_equal(hm_manager_destroy(p), HM_E_HOST_INVALIDOPERATION);
    assert_string_equal(hm_last_detail(), "manager has 1 live child manager: destroy them first");
    tu_destroy(c1);
    tu_destroy(p);
    /* a child's shutdown leaves the parent and the siblings running */
    p = top("limit=1M");
    c1 = child(p, NULL);
    c2 = child(p, NULL);
    assert_int_equal(hm_manager_shutdown(c1), HM_OK);
    assert_int_equal(tu_stats(p).state, HM_MANAGER_RUNNING);
    assert_int_equal(tu_stats(c2).state, HM_MANAGER_RUNNING);
    tu_destroy(c1);
    tu_destroy(c2);
    tu_destroy(p);
    check_books();
}

/* The process-default manager as a parent: its charge holds the child's. Nesting stops at 16 levels. */
static void test_default_parent_and_depth(void **state)
{
    (void)state;
    uint64_t before = tu_charge(NULL);
    hm_manager *c = child(NULL, "limit=1M");
    assert_int_equal(tu_stats(NULL).children, 1);
    char *a = reserve(c, 512 * K);
    commit_ok(c, a, 512 * K, HM_LEVEL_TASK);
    assert_int_equal(tu_charge(NULL) - before, 512 * K);
    assert_int_equal(hm_manager_destroy(NULL), HM_E_INVALIDARG); /* (never, children or not) */
    tu_destroy(c);
    assert_int_equal(tu_charge(NULL), before);
    assert_int_equal(tu_stats(NULL).children, 0);

    hm_manager *chain[16];
    chain[0] = top("limit=1M");
    for (int i = 1; i < 16; i++) chain[i] = child(chain[i - 1], NULL);
    assert_int_equal(tu_stats(chain[15]).depth, 15);
    hm_manager *x = (hm_manager *)&x;
    assert_int_equal(hm_manager_create_child(chain[15], NULL, &x), HM_E_HOST_INVALIDOPERATION);
    assert_null(x);
    assert_non_null(strstr(hm_last_detail(), "at most 16 deep"));
    char *b = reserve(chain[15], 64 * K);
    commit_ok(chain[15], b, 64 * K, HM_LEVEL_PROCESS);
    for (int i = 0; i < 16; i++) assert_int_equal(tu_charge(chain[i]), 64 * K);
    check_books();
    for (int i = 15; i >= 0; i--) tu_destroy(chain[i]);
    check_books();
}

/* A child's waiter, refused by the parent, is admitted when a sibling gives memory back. */
static void test_waiter_woken_by_sibling(void **state)
{
    (void)state;
    hm_manager *p = top("limit=1M");
    hm_manager *a = child(p, "wait.process=20s");
    hm_manager *b = child(p, NULL);
    char *x = reserve(b, 1024 * K);
    commit_ok(b, x, 1024 * K, HM_LEVEL_PROCESS);
    waiter w = {a, 64 * K, HM_OK, NULL};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, wait_alloc, &w), 0);
    until_waiting(a, 1);
    double t0 = now_ms();
    decommit_ok(b, x + 512 * K, 512 * K);
    pthread_join(t, NULL);
    assert_int_equal(w.st, HM_OK);
    assert_true(now_ms() - t0 < 10000); /* woken by the release, long before its time ran out */
    assert_int_equal(tu_stats(a).waits[2], 1);
    assert_int_equal(tu_stats(a).timeouts[2], 0);
    assert_int_equal(tu_charge(a), 64 * K);
    assert_int_equal(tu_charge(p), 512 * K + 64 * K);
    /* the same when the memory comes back at the parent itself */
    char *y = reserve(p, 512 * K);
    commit_ok(p, y, 512 * K - 64 * K, HM_LEVEL_PROCESS);
    assert_int_equal(tu_charge(p), 1024 * K);
    waiter w2 = {a, 64 * K, HM_OK, NULL};
    assert_int_equal(pthread_create(&t, NULL, wait_alloc, &w2), 0);
    until_waiting(a, 1);
    assert_int_equal(hm_release(p, y), HM_OK);
    pthread_join(t, NULL);
    assert_int_equal(w2.st, HM_OK);
    assert_int_equal(hm_release(a, w.base), HM_OK);
    assert_int_equal(hm_release(a, w2.base), HM_OK);
    tu_destroy(a);
    tu_destroy(b);
    assert_int_equal(tu_charge(p), 0);
    tu_destroy(p);
    check_books();
}

/* ---- notifications ---------------------------------------------------------------------------- */

/* The parent turning Low reaches its children (their callbacks run); they come back when it does;
 * a child's own Low stays its own. */
static void test_notifications(void **state)
{
    (void)state;
    hm_manager *p = top("limit=1M,notify.low=40,notify.high=80");
    hm_manager *c = child(p, "limit=50%,notify.low=40,notify.high=80");
    hm_manager *g = child(c, NULL); /* a grandchild */
    tu_state_log lc = TU_STATE_LOG_INIT, lg = TU_STATE_LOG_INIT,
          lp = TU_STATE_LOG_INIT;
    assert_int_equal(hm_manager_register_notification(c, tu_state_record, &lc), HM_OK);
    assert_int_equal(hm_manager_register_notification(g, tu_state_record, &lg), HM_OK);
    assert_int_equal(hm_manager_register_notification(p, tu_state_record, &lp), HM_OK);
    char *pa = reserve(p, 1024 * K);
    commit_ok(p, pa, 820 * K, HM_LEVEL_PROCESS); /* 80%: the parent turns Low */
    tu_state_until(&lp, 1, HM_MEMORY_LOW);
    tu_state_until(&lc, 1, HM_MEMORY_LOW);
    tu_state_until(&lg, 1, HM_MEMORY_LOW);
    assert_int_equal(tu_stats(c).memory_state, HM_MEMORY_LOW);
    assert_int_equal(tu_stats(g).memory_state, HM_MEMORY_LOW);
    uint32_t load;
    uint64_t avail;
    assert_int_equal(hm_manager_get_memory_load(g, &load, &avail), HM_OK);
    assert_int_equal(load, 80);                 /* the chain's fullest budget */
    assert_int_equal(avail, 1024 * K - 820 * K); /* the chain's least room */
    decommit_ok(p, pa, 820 * K); /* back to High everywhere */
    tu_state_until(&lp, 2, HM_MEMORY_HIGH);
    tu_state_until(&lc, 2, HM_MEMORY_HIGH);
    tu_state_until(&lg, 2, HM_MEMORY_HIGH);
    /* the child's own Low: the child and its grandchild, not the parent (at 40%: High) */
    char *ca = reserve(c, 512 * K);
    commit_ok(c, ca, 410 * K, HM_LEVEL_PROCESS); /* 80% of 512K; the parent's 40% of 1M */
    tu_state_until(&lc, 3, HM_MEMORY_LOW);
    tu_state_until(&lg, 3, HM_MEMORY_LOW);
    assert_int_equal(tu_stats(p).memory_state, HM_MEMORY_HIGH);
    /* the parent Low as well, then back: the child stays Low on its own */
    commit_ok(p, pa, 420 * K, HM_LEVEL_PROCESS);
    tu_state_until(&lp, 3, HM_MEMORY_LOW);
    decommit_ok(p, pa, 420 * K);
    tu_state_until(&lp, 4, HM_MEMORY_HIGH);
    tu_sleep_ms(50);
    tu_state_until(&lc, 3, HM_MEMORY_LOW); /* no change delivered: it was Low and is */
    decommit_ok(c, ca, 410 * K);
    tu_state_until(&lc, 4, HM_MEMORY_HIGH);
    tu_state_until(&lg, 4, HM_MEMORY_HIGH);
    tu_destroy(g);
    tu_destroy(c);
    /* a child's charge moves its parent's state: the parent turns Low with no refusal, and the child
     * with it (its own band, at 88% of notify.high=95, is only Neutral) */
    hm_manager *d = child(p, "notify.low=40,notify.high=95");
    tu_state_log ld = TU_STATE_LOG_INIT;
    assert_int_equal(hm_manager_register_notification(d, tu_state_record, &ld), HM_OK);
    char *da = reserve(d, 1024 * K);
    commit_ok(d, da, 900 * K, HM_LEVEL_PROCESS);
    tu_state_until(&lp, 5, HM_MEMORY_LOW);
    tu_state_until_last(&ld, HM_MEMORY_LOW);
    int nd = 0;
    (void)tu_state_last(&ld, &nd);
    /* straight to Low (its parent's state goes first), unless its own sampling thread evaluated it
     * between the charge and the push down (Neutral first then: a window of microseconds) */
    assert_true(nd == 1 || (nd == 2 && ld.states[0] == HM_MEMORY_NEUTRAL));
    assert_int_equal(tu_stats(p).refused[2] + tu_stats(d).refused[2], 0);
    decommit_ok(d, da, 900 * K);
    tu_state_until(&lp, 6, HM_MEMORY_HIGH);
    tu_state_until_last(&ld, HM_MEMORY_HIGH);
    tu_destroy(d);
    tu_destroy(p);
    check_books();
}

/* ---- threads ---------------------------------------------------------------------------------- */

#define RACE_ROUNDS 200
#define LAST_PAGES 16

typedef struct racer {
    hm_manager *m;
    char *base;
    pthread_barrier_t *bar;
    uint64_t got[RACE_ROUNDS];
} racer;

static void *race(void *arg)
{
    racer *r = arg;
    for (int round = 0; round < RACE_ROUNDS; round++) {
        pthread_barrier_wait(r->bar);
        uint64_t n = 0;
        while (n < 2 * LAST_PAGES && commit(r->m, r->base + n * PG, PG, HM_LEVEL_PROCESS) == HM_OK) n++;
        r->got[round] = n;
        pthread_barrier_wait(r->bar); /* everyone is refused now: count, then give back */
        pthread_barrier_wait(r->bar);
        if (n) decommit_ok(r->m, r->base, n * PG);
    }
    return NULL;
}

typedef struct sampler {
    hm_manager *m[3];
    uint64_t limit[3];
    atomic_bool stop;
    atomic_int over;
    uint64_t samples;
} sampler;

static void *sample(void *arg)
{
    sampler *s = arg;
    while (!atomic_load(&s->stop)) {
        for (int i = 0; i < 3; i++) {
            hm_manager_stats st;
            if (hm_manager_get_stats(s->m[i], &st) != HM_OK || st.charge > s->limit[i]) atomic_fetch_add(&s->over, 1);
        }
        s->samples++;
    }
    return NULL;
}

/* Two threads in two children race for the parent's last 16 pages, round after round: together they
 * get exactly 16 each round, no manager is ever seen over its limit, and the charges come back to 0. */
static void test_race_for_parent(void **state)
{
    (void)state;
    hm_manager *p = top("limit=1M");
    hm_manager *a = child(p, "limit=768K"), *b = child(p, "limit=768K");
    char *own = reserve(p, 1024 * K);
    commit_ok(p, own, 1024 * K - LAST_PAGES * PG, HM_LEVEL_PROCESS);
    pthread_barrier_t bar;
    pthread_barrier_init(&bar, NULL, 3);
    racer ra = {a, reserve(a, 2 * LAST_PAGES * PG), &bar, {0}}, rb = {b, reserve(b, 2 * LAST_PAGES * PG), &bar, {0}};
    sampler s = {{p, a, b}, {1024 * K, 768 * K, 768 * K}, false, 0, 0};
    pthread_t ta, tb, ts;
    assert_int_equal(pthread_create(&ts, NULL, sample, &s), 0);
    assert_int_equal(pthread_create(&ta, NULL, race, &ra), 0);
    assert_int_equal(pthread_create(&tb, NULL, race, &rb), 0);
    uint64_t wins_a = 0, wins_b = 0;
    for (int round = 0; round < RACE_ROUNDS; round++) {
        pthread_barrier_wait(&bar);
        pthread_barrier_wait(&bar);
        assert_int_equal(tu_charge(p), 1024 * K);
        assert_int_equal(tu_charge(a) + tu_charge(b), LAST_PAGES * PG);
        assert_int_equal(tu_stats(p).children_charge, LAST_PAGES * PG);
        pthread_barrier_wait(&bar);
    }
    pthread_join(ta, NULL);
    pthread_join(tb, NULL);
    atomic_store(&s.stop, true);
    pthread_join(ts, NULL);
    for (int round = 0; round < RACE_ROUNDS; round++) {
        assert_int_equal(ra.got[round] + rb.got[round], LAST_PAGES);
        wins_a += ra.got[round];
        wins_b += rb.got[round];
    }
    assert_int_equal(atomic_load(&s.over), 0);
    assert_true(s.samples > 0);
    assert_int_equal(wins_a + wins_b, (uint64_t)RACE_ROUNDS * LAST_PAGES);
    /* every refusal of a child came from the parent, and each thread was refused once a round */
    hm_manager_stats sa = tu_stats(a), sb = tu_stats(b);
    assert_int_equal(sa.refused[2], RACE_ROUNDS);
    assert_int_equal(sa.refused_by_ancestor[2], RACE_ROUNDS);
    assert_int_equal(sb.refused_by_ancestor[2], RACE_ROUNDS);
    assert_int_equal(sa.granted[2] + sb.granted[2], wins_a + wins_b);
    assert_true(tu_stats(p).peak_charge <= 1024 * K);
    pthread_barrier_destroy(&bar);
    assert_int_equal(tu_charge(a), 0);
    assert_int_equal(tu_charge(b), 0);
    check_books();
    tu_destroy(a);
    tu_destroy(b);
    assert_int_equal(hm_release(p, own), HM_OK);
    assert_int_equal(tu_charge(p), 0);
    tu_destroy(p);
    check_books();
}

/* The accounts alone (src/vmap/account.h), where nothing serialises the threads (the map's lock
 * does, above): four threads charge and give back pages in two children of one parent and one
 * grandchild, as fast as they can; a sampler never sees an account over its threshold, and every
 * account ends at 0 with granted and refused adding up. */
#define ACCT_ITERS 200000

static hm_account acc_parent, acc_kid[2], acc_grand;

typedef struct acct_racer {
    hm_account *a;
    unsigned seed;
    uint64_t held, granted, refused;
} acct_racer;

static atomic_bool acct_stop;

static void *acct_race(void *arg)
{
    acct_racer *r = arg;
    for (int i = 0; i < ACCT_ITERS; i++) {
        r->seed = r->seed * 1103515245u + 12345u;
        if (((r->seed >> 16) & 3) != 0 || !r->held) {
            if (hm_account_admit(r->a, PG, 2)) r->held++, r->granted++;
            else r->refused++;
        } else {
            hm_account_uncharge(r->a, PG);
            r->held--;
        }
    }
    hm_account_uncharge(r->a, r->held * PG);
    return NULL;
}

static void *acct_sample(void *arg)
{
    atomic_int *over = arg;
    while (!atomic_load(&acct_stop)) {
        if (atomic_load(&acc_parent.charge) > acc_parent.threshold[2]) atomic_fetch_add(over, 1);
        for (int k = 0; k < 2; k++)
            if (atomic_load(&acc_kid[k].charge) > acc_kid[k].threshold[2]) atomic_fetch_add(over, 1);
        if (atomic_load(&acc_grand.charge) > acc_grand.threshold[2]) atomic_fetch_add(over, 1);
    }
    return NULL;
}

static void test_account_race(void **state)
{
    (void)state;
    for (int l = 0; l < 3; l++) {
        acc_parent.threshold[l] = 24 * PG;
        acc_kid[0].threshold[l] = acc_kid[1].threshold[l] = 16 * PG;
        acc_grand.threshold[l] = 12 * PG;
    }
    acc_parent.va_limit = acc_kid[0].va_limit = acc_kid[1].va_limit = acc_grand.va_limit = UINT64_MAX;
    acc_kid[0].parent = acc_kid[1].parent = &acc_parent;
    acc_grand.parent = &acc_kid[1];
    acct_racer r[4] = {{&acc_kid[0], 1, 0, 0, 0}, {&acc_kid[0], 2, 0, 0, 0}, {&acc_kid[1], 3, 0, 0, 0}, {&acc_grand, 4, 0, 0, 0}};
    atomic_int over = 0;
    pthread_t t[4], ts;
    assert_int_equal(pthread_create(&ts, NULL, acct_sample, &over), 0);
    for (int i = 0; i < 4; i++) assert_int_equal(pthread_create(&t[i], NULL, acct_race, &r[i]), 0);
    for (int i = 0; i < 4; i++) pthread_join(t[i], NULL);
    atomic_store(&acct_stop, true);
    pthread_join(ts, NULL);
    assert_int_equal(atomic_load(&over), 0);
    assert_int_equal(atomic_load(&acc_parent.charge), 0);
    assert_int_equal(atomic_load(&acc_parent.nested), 0);
    assert_int_equal(atomic_load(&acc_kid[0].charge), 0);
    assert_int_equal(atomic_load(&acc_kid[1].charge), 0);
    assert_int_equal(atomic_load(&acc_kid[1].nested), 0);
    assert_int_equal(atomic_load(&acc_grand.charge), 0);
    assert_true(atomic_load(&acc_parent.peak) <= 24 * PG);
    assert_true(atomic_load(&acc_grand.peak) <= 12 * PG);
    uint64_t granted = 0, refused = 0;
    for (int i = 0; i < 4; i++) granted += r[i].granted, refused += r[i].refused;
    uint64_t g = atomic_load(&acc_kid[0].granted[2]) + atomic_load(&acc_kid[1].granted[2]) + atomic_load(&acc_grand.granted[2]);
    uint64_t f = atomic_load(&acc_kid[0].refused[2]) + atomic_load(&acc_kid[1].refused[2]) + atomic_load(&acc_grand.refused[2]);
    assert_int_equal(g, granted);
    assert_int_equal(f, refused);
    assert_true(refused > 0); /* the budgets were contended */
    assert_true(atomic_load(&acc_kid[0].refused_up[2]) + atomic_load(&acc_grand.refused_up[2]) > 0);
    assert_int_equal(atomic_load(&acc_parent.granted[2]) + atomic_load(&acc_parent.refused[2]), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_child_thresholds),
        cmocka_unit_test(test_parent_thresholds),
        cmocka_unit_test(test_three_levels),
        cmocka_unit_test(test_heap_on_child),
        cmocka_unit_test(test_options),
        cmocka_unit_test(test_destroy_shutdown),
        cmocka_unit_test(test_default_parent_and_depth),
        cmocka_unit_test(test_waiter_woken_by_sibling),
        cmocka_unit_test(test_notifications),
        cmocka_unit_test(test_race_for_parent),
        cmocka_unit_test(test_account_race),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
