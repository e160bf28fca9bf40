/* manager_stress.c — admission under load (SPEC 3.2): 6 threads, 2 per level, allocate and free under a tight limit; the charge never passes the limit, ends equal to what the threads hold, and no process-critical request fails while the process reserve has room. */
#define _GNU_SOURCE
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "testutil.h"
#include "vmap/vmap.h"

/* hm_vmap_check(true) walks every kernel mapping granule by granule: far too slow over TSan's shadow. */

#define PG ((uint64_t)4096)
#define KiB ((uint64_t)1024)
#define MiB ((uint64_t)1 << 20)

#define OPTS "limit=4M,reserve.appdomain=1M,reserve.process=1M"
#define LIMIT (4 * MiB)
#define RA (1 * MiB)
#define RP (1 * MiB)

#define NTHREADS 6 /* 0,1 task; 2,3 appdomain; 4,5 process */
#define OPS 10000
#define SLOTS 8
#define MAX_RES_PAGES 256

/* Per level: the largest MEM_RESERVE|MEM_COMMIT, the per-thread reservation, the largest commit into
 * it. The process threads' sizes bound what one of them can ever hold to 8*16K + 256K = 384K, so
 * both together stay below reserve.process (1M): each of their requests must be admitted. */
static const unsigned max_alloc_pages[3] = {64, 64, 4};
static const unsigned res_pages[3] = {256, 256, 64};
static const unsigned max_commit_pages[3] = {64, 64, 8};

static hm_manager *mgr;
static pthread_barrier_t start_line;

/* failures from any thread: record_failure and friends, testutil.h */


/* ---- a worker ---------------------------------------------------------------------------------- */

typedef struct worker {
    int id;
    hm_level level;
    uint64_t seed;
    char *res;                       /* this thread's reservation */
    bool committed[MAX_RES_PAGES];   /* its pages' states as this thread made them */
    char *slot[SLOTS];               /* MEM_RESERVE|MEM_COMMIT allocations held */
    unsigned slot_pages[SLOTS];
    uint64_t held;                   /* bytes committed by this thread right now */
    uint64_t granted, refused;       /* admitted requests that raised the charge; refusals */
    uint64_t max_held;
} worker;

static worker workers[NTHREADS];

static uint32_t rnd(worker *w)
{
    w->seed ^= w->seed << 13;
    w->seed ^= w->seed >> 7;
    w->seed ^= w->seed << 17;
    return (uint32_t)(w->seed >> 16);
}

/* A refusal is fine for task and appdomain; never for process while its reserve has room. */
static bool refusal_ok(worker *w, uint64_t grow)
{
    if (w->level != HM_LEVEL_PROCESS) return true;
    record_failure("thread %d: process-critical request of %" PRIu64 " bytes refused while the thread held %" PRIu64
                   " (the process threads hold at most %" PRIu64 " < reserve.process): %s",
                   w->id, grow, w->held, (uint64_t)2 * 384 * KiB, hm_last_detail());
    return false;
}

static bool op_reserve_commit(worker *w)
{
    int s = -1;
    for (int i = 0; i < SLOTS; i++)
        if (!w->slot[i]) {
            s = i;
            break;
        }
    if (s < 0) return true;
    unsigned pages = 1 + rnd(w) % max_alloc_pages[w->level];
    uint64_t bytes = pages * PG;
    if (w->level == HM_LEVEL_PROCESS && w->held + bytes > RP / 2) return true; /* never happens: see sizes */
    void *b = NULL;
    hm_status st = hm_virtual_alloc_level(mgr, NULL, bytes, HM_MEM_RESERVE | HM_MEM_COMMIT, HM_PAGE_READWRITE, w->level, &b);
    if (st == HM_OK) {
        unsigned char *p = b;
        if (p[0] != 0 || p[bytes - 1] != 0) {
            record_failure("thread %d: a new allocation does not read zero", w->id);
            return false;
        }
        p[0] = (unsigned char)(w->id + 1);
        w->slot[s] = b;
        w->slot_pages[s] = pages;
        w->held += bytes;
        w->granted++;
        return true;
    }
    if (b != NULL) {
        record_failure("thread %d: failed reserve+commit left *base = %p", w->id, b);
        return false;
    }
    if (st != HM_E_COMMITMENT_LIMIT) {
        record_failure("thread %d: reserve+commit of %" PRIu64 " bytes: %#x %s", w->id, bytes, (unsigned)st, hm_last_detail());
        return false;
    }
    w->refused++;
    return refusal_ok(w, bytes);
}

static bool op_release(worker *w)
{
    int s = (int)(rnd(w) % SLOTS);
    for (int k = 0; k < SLOTS && !w->slot[s]; k++) s = (s + 1) % SLOTS;
    if (!w->slot[s]) return true;
    if (w->slot[s][0] != (char)(w->id + 1)) {
        record_failure("thread %d: an allocation lost its contents", w->id);
        return false;
    }
    hm_status st = hm_release(mgr, w->slot[s]);
    if (st != HM_OK) {
        record_failure("thread %d: release: %#x %s", w->id, (unsigned)st, hm_last_detail());
        return false;
    }
    w->held -= w->slot_pages[s] * PG;
    w->slot[s] = NULL;
    w->slot_pages[s] = 0;
    return true;
}

static bool op_commit(worker *w)
{
    unsigned np = res_pages[w->level];
    unsigned p0 = rnd(w) % np;
    unsigned n = 1 + rnd(w) % max_commit_pages[w->level];
    if (p0 + n > np) n = np - p0;
    uint64_t grow = 0;
    for (unsigned p = p0; p < p0 + n; p++) grow += w->committed[p] ? 0 : PG;
    if (w->level == HM_LEVEL_PROCESS && w->held + grow > RP / 2) return true; /* never happens: see sizes */
    void *b = NULL;
    hm_status st = hm_virtual_alloc_level(mgr, w->res + p0 * PG, n * PG, HM_MEM_COMMIT, HM_PAGE_READWRITE, w->level, &b);
    if (st == HM_OK) {
        if (b != w->res + p0 * PG) {
            record_failure("thread %d: commit returned %p, expected %p", w->id, b, (void *)(w->res + p0 * PG));
            return false;
        }
        for (unsigned p = p0; p < p0 + n; p++) w->committed[p] = true;
        w->held += grow;
        if (grow) w->granted++;
        return true;
    }
    if (st != HM_E_COMMITMENT_LIMIT || grow == 0) {
        record_failure("thread %d: commit of %u pages (%" PRIu64 " new bytes): %#x %s", w->id, n, grow, (unsigned)st,
                       hm_last_detail());
        return false;
    }
    w->refused++;
    return refusal_ok(w, grow);
}

static bool op_decommit(worker *w)
{
    unsigned np = res_pages[w->level];
    unsigned p0 = rnd(w) % np;
    unsigned n = 1 + rnd(w) % max_commit_pages[w->level];
    if (p0 + n > np) n = np - p0;
    hm_status st = hm_decommit(mgr, w->res + p0 * PG, n * PG);
    if (st != HM_OK) {
        record_failure("thread %d: decommit: %#x %s", w->id, (unsigned)st, hm_last_detail());
        return false;
    }
    for (unsigned p = p0; p < p0 + n; p++) {
        if (w->committed[p]) w->held -= PG;
        w->committed[p] = false;
    }
    return true;
}

static void *worker_main(void *arg)
{
    worker *w = arg;
    pthread_barrier_wait(&start_line);
    for (int i = 0; i < OPS && atomic_load(&failures) == 0; i++) {
        uint32_t r = rnd(w) % 100;
        bool ok;
        if (r < 35) ok = op_reserve_commit(w);
        else if (r < 55) ok = op_release(w);
        else if (r < 80) ok = op_commit(w);
        else ok = op_decommit(w);
        if (!ok) break;
        if (w->held > w->max_held) w->max_held = w->held;
        hm_manager_stats s;
        if (hm_manager_get_stats(mgr, &s) != HM_OK) {
            record_failure("thread %d: hm_manager_get_stats failed", w->id);
            break;
        }
        if (s.charge > LIMIT || s.peak_charge > LIMIT) { /* [3.2] the charge never exceeds L */
            record_failure("thread %d: charge %" PRIu64 " (peak %" PRIu64 ") exceeds the limit %" PRIu64, w->id, s.charge,
                           s.peak_charge, (uint64_t)LIMIT);
            break;
        }
        if (s.charge < w->held) { /* the manager holds at least what this thread holds */
            record_failure("thread %d: charge %" PRIu64 " is below this thread's own %" PRIu64, w->id, s.charge, w->held);
            break;
        }
    }
    return NULL;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void test_admission_under_load(void **state)
{
    (void)state;
    hm_status st = hm_manager_create(OPTS, &mgr);
    if (st != HM_OK) fail_msg("hm_manager_create: %#x %s", (unsigned)st, hm_last_detail());
    assert_int_equal(pthread_barrier_init(&start_line, NULL, NTHREADS), 0);
    for (int i = 0; i < NTHREADS; i++) {
        worker *w = &workers[i];
        memset(w, 0, sizeof *w);
        w->id = i;
        w->level = (hm_level)(i / 2);
        w->seed = 0x9e3779b97f4a7c15ull * (uint64_t)(i + 1) ^ (uint64_t)time(NULL);
        void *b = NULL;
        st = hm_virtual_alloc_level(mgr, NULL, res_pages[w->level] * PG, HM_MEM_RESERVE, HM_PAGE_READWRITE, w->level, &b);
        if (st != HM_OK) fail_msg("reservation: %#x %s", (unsigned)st, hm_last_detail());
        w->res = b;
    }
    double t0 = now_s();
    pthread_t th[NTHREADS];
    for (int i = 0; i < NTHREADS; i++) assert_int_equal(pthread_create(&th[i], NULL, worker_main, &workers[i]), 0);
    for (int i = 0; i < NTHREADS; i++) assert_int_equal(pthread_join(th[i], NULL), 0);
    double t1 = now_s();
    pthread_barrier_destroy(&start_line);
    if (atomic_load(&failures)) fail_msg("%d failure(s); first: %s", atomic_load(&failures), first_failure);

    /* [3.2] the books equal what the threads hold, level by level */
    hm_manager_stats s;
    assert_int_equal(hm_manager_get_stats(mgr, &s), HM_OK);
    uint64_t held = 0, granted[3] = {0}, refused[3] = {0}, proc_max = 0;
    for (int i = 0; i < NTHREADS; i++) {
        held += workers[i].held;
        granted[workers[i].level] += workers[i].granted;
        refused[workers[i].level] += workers[i].refused;
        if (workers[i].level == HM_LEVEL_PROCESS) proc_max += workers[i].max_held;
    }
    print_message("manager_stress: %d ops in %.2f s; charge %" PRIu64 ", peak %" PRIu64 "; granted %" PRIu64 "/%" PRIu64
                  "/%" PRIu64 ", refused %" PRIu64 "/%" PRIu64 "/%" PRIu64 "\n",
                  NTHREADS * OPS, t1 - t0, s.charge, s.peak_charge, granted[0], granted[1], granted[2], refused[0],
                  refused[1], refused[2]);
    if (s.charge != held) fail_msg("charge %" PRIu64 " != %" PRIu64 " held by the threads", s.charge, held);
    assert_true(s.peak_charge <= LIMIT);
    for (int l = 0; l < 3; l++) {
        if (s.granted[l] != granted[l] || s.refused[l] != refused[l])
            fail_msg("level %d: manager counts granted %" PRIu64 " refused %" PRIu64 ", threads %" PRIu64 " / %" PRIu64, l,
                     s.granted[l], s.refused[l], granted[l], refused[l]);
    }
    assert_int_equal(s.refused[HM_LEVEL_PROCESS], 0); /* [3.2] headroom kept for process-critical requests */
    assert_true(proc_max < RP);
    /* the test only means something if the budget was actually contended */
    assert_true(refused[HM_LEVEL_TASK] > 0);
    assert_true(granted[HM_LEVEL_PROCESS] > 0);

    st = hm_vmap_check(KERNEL_CHECK);
    if (st != HM_OK) fail_msg("hm_vmap_check: %s", hm_last_detail());

    /* give everything back: charge and address space return to zero */
    for (int i = 0; i < NTHREADS; i++) {
        worker *w = &workers[i];
        for (int k = 0; k < SLOTS; k++)
            if (w->slot[k]) assert_int_equal(hm_release(mgr, w->slot[k]), HM_OK);
        assert_int_equal(hm_release(mgr, w->res), HM_OK);
    }
    assert_int_equal(hm_manager_get_stats(mgr, &s), HM_OK);
    assert_int_equal(s.charge, 0);
    assert_int_equal(s.va_used, 0);
    assert_int_equal(hm_manager_destroy(mgr), HM_OK);
    st = hm_vmap_check(KERNEL_CHECK);
    if (st != HM_OK) fail_msg("hm_vmap_check: %s", hm_last_detail());
}

/* ---- every thread at the limit ------------------------------------------------------------------- */

/* [3.2] "two threads can never both pass on the same headroom": six threads hammer a 1M limit with
 * requests at random levels, so the charge sits at the edge all the time. */
#define EDGE_LIMIT (1 * MiB)
#define EDGE_OPS 4000
#define EDGE_SLOTS 16

typedef struct edge_worker {
    int id;
    uint64_t seed;
    char *slot[EDGE_SLOTS];
    uint64_t bytes[EDGE_SLOTS];
    uint64_t held;
    uint64_t granted[3], refused[3];
} edge_worker;

static edge_worker edge[NTHREADS];

static uint32_t edge_rnd(edge_worker *w)
{
    w->seed ^= w->seed << 13;
    w->seed ^= w->seed >> 7;
    w->seed ^= w->seed << 17;
    return (uint32_t)(w->seed >> 16);
}

static void *edge_main(void *arg)
{
    edge_worker *w = arg;
    pthread_barrier_wait(&start_line);
    for (int i = 0; i < EDGE_OPS && atomic_load(&failures) == 0; i++) {
        int s = (int)(edge_rnd(w) % EDGE_SLOTS);
        if (w->slot[s]) {
            hm_status st = hm_release(mgr, w->slot[s]);
            if (st != HM_OK) {
                record_failure("edge %d: release: %#x %s", w->id, (unsigned)st, hm_last_detail());
                break;
            }
            w->held -= w->bytes[s];
            w->slot[s] = NULL;
        } else {
            hm_level level = (hm_level)(edge_rnd(w) % 3);
            uint64_t bytes = (1 + edge_rnd(w) % 16) * PG;
            void *b = NULL;
            hm_status st = hm_virtual_alloc_level(mgr, NULL, bytes, HM_MEM_RESERVE | HM_MEM_COMMIT, HM_PAGE_READWRITE, level, &b);
            if (st == HM_OK) {
                w->slot[s] = b;
                w->bytes[s] = bytes;
                w->held += bytes;
                w->granted[level]++;
            } else if (st == HM_E_COMMITMENT_LIMIT && !b) {
                w->refused[level]++;
            } else {
                record_failure("edge %d: reserve+commit: %#x %s", w->id, (unsigned)st, hm_last_detail());
                break;
            }
        }
        hm_manager_stats ms;
        if (hm_manager_get_stats(mgr, &ms) != HM_OK || ms.charge > EDGE_LIMIT || ms.peak_charge > EDGE_LIMIT ||
            ms.charge < w->held) {
            record_failure("edge %d: charge %" PRIu64 " (peak %" PRIu64 ") against limit %" PRIu64 ", own %" PRIu64, w->id,
                           ms.charge, ms.peak_charge, (uint64_t)EDGE_LIMIT, w->held);
            break;
        }
    }
    return NULL;
}

static void test_race_at_the_limit(void **state)
{
    (void)state;
    hm_status st = hm_manager_create("limit=1M,reserve.appdomain=128K,reserve.process=64K", &mgr);
    if (st != HM_OK) fail_msg("hm_manager_create: %#x %s", (unsigned)st, hm_last_detail());
    assert_int_equal(pthread_barrier_init(&start_line, NULL, NTHREADS), 0);
    for (int i = 0; i < NTHREADS; i++) {
        memset(&edge[i], 0, sizeof edge[i]);
        edge[i].id = i;
        edge[i].seed = 0x2545f4914f6cdd1dull * (uint64_t)(i + 7) ^ (uint64_t)time(NULL);
    }
    double t0 = now_s();
    pthread_t th[NTHREADS];
    for (int i = 0; i < NTHREADS; i++) assert_int_equal(pthread_create(&th[i], NULL, edge_main, &edge[i]), 0);
    for (int i = 0; i < NTHREADS; i++) assert_int_equal(pthread_join(th[i], NULL), 0);
    double t1 = now_s();
    pthread_barrier_destroy(&start_line);
    if (atomic_load(&failures)) fail_msg("%d failure(s); first: %s", atomic_load(&failures), first_failure);
    hm_manager_stats s;
    assert_int_equal(hm_manager_get_stats(mgr, &s), HM_OK);
    uint64_t held = 0, granted[3] = {0}, refused[3] = {0};
    for (int i = 0; i < NTHREADS; i++) {
        held += edge[i].held;
        for (int l = 0; l < 3; l++) granted[l] += edge[i].granted[l], refused[l] += edge[i].refused[l];
    }
    print_message("manager_stress edge: %d ops in %.2f s; charge %" PRIu64 ", peak %" PRIu64 "; refused %" PRIu64 "/%" PRIu64
                  "/%" PRIu64 "\n",
                  NTHREADS * EDGE_OPS, t1 - t0, s.charge, s.peak_charge, refused[0], refused[1], refused[2]);
    if (s.charge != held) fail_msg("charge %" PRIu64 " != %" PRIu64 " held by the threads", s.charge, held);
    assert_true(s.peak_charge <= EDGE_LIMIT);
    for (int l = 0; l < 3; l++) {
        assert_int_equal(s.granted[l], granted[l]);
        assert_int_equal(s.refused[l], refused[l]);
    }
    assert_true(refused[HM_LEVEL_PROCESS] > 0); /* the limit itself was contended */
    for (int i = 0; i < NTHREADS; i++)
        for (int k = 0; k < EDGE_SLOTS; k++)
            if (edge[i].slot[k]) assert_int_equal(hm_release(mgr, edge[i].slot[k]), HM_OK);
    assert_int_equal(hm_manager_get_stats(mgr, &s), HM_OK);
    assert_int_equal(s.charge, 0);
    assert_int_equal(hm_manager_destroy(mgr), HM_OK);
    st = hm_vmap_check(KERNEL_CHECK);
    if (st != HM_OK) fail_msg("hm_vmap_check: %s", hm_last_detail());
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_admission_under_load), cmocka_unit_test(test_race_at_the_limit)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
