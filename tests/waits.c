/* waits.c — waiting for memory (SPEC 3.3) and the lifecycle (SPEC 3.4): admission after a release,
 * timeouts with nothing charged, critical levels first and first come first served within a level,
 * shutdown abandoning waiters, calls after shutdown, destroy with waiters. */
#include <pthread.h>
#include <stdatomic.h>
#include <time.h>

#include "testutil.h"

#define KIB ((size_t)1024)

static double now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e3 + (double)t.tv_nsec / 1e6;
}

static void sleep_ms(int ms)
{
    struct timespec t = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&t, NULL);
}

static uint64_t charge_of(hm_manager *m)
{
    hm_manager_stats s;
    assert_int_equal(hm_manager_get_stats(m, &s), HM_OK);
    return s.charge;
}

static uint32_t waiting_in(hm_manager *m)
{
    hm_manager_stats s;
    assert_int_equal(hm_manager_get_stats(m, &s), HM_OK);
    return s.waiting;
}

/* Waits (bounded) until n requests wait in m. */
static void until_waiting(hm_manager *m, uint32_t n)
{
    for (int i = 0; i < 2000 && waiting_in(m) < n; i++) sleep_ms(1);
    assert_int_equal(waiting_in(m), n);
}

typedef struct request {
    hm_manager *m;
    hm_level level;
    size_t size;
    void *base;
    hm_status st;
    int order;              /* when it was admitted, among the requests of a test */
} request;

static atomic_int admitted_order;

static void *run_request(void *arg)
{
    request *r = arg;
    r->st = hm_virtual_alloc_level(r->m, NULL, r->size, HM_MEM_RESERVE | HM_MEM_COMMIT, HM_PAGE_READWRITE, r->level,
                                   &r->base);
    r->order = atomic_fetch_add(&admitted_order, 1);
    return NULL;
}

/* SPEC 3.3: a refused request that may wait is admitted as soon as enough is given back. */
static void test_admitted_after_release(void **state)
{
    (void)state;
    hm_manager *m;
    assert_int_equal(hm_manager_create("limit=1M,wait.task=10s", &m), HM_OK);
    void *big;
    assert_int_equal(hm_virtual_alloc_level(m, NULL, 1024 * KIB, HM_MEM_RESERVE | HM_MEM_COMMIT, HM_PAGE_READWRITE,
                                            HM_LEVEL_PROCESS, &big),
                     HM_OK);
    request r = {m, HM_LEVEL_TASK, 64 * KIB, NULL, 1, 0};
    pthread_t t;
    pthread_create(&t, NULL, run_request, &r);
    until_waiting(m, 1);
    assert_int_equal(charge_of(m), 1024 * KIB); /* the waiter holds nothing */
    assert_int_equal(hm_decommit(m, big, 128 * KIB), HM_OK);
    pthread_join(t, NULL);
    assert_int_equal(r.st, HM_OK);
    assert_non_null(r.base);
    assert_int_equal(charge_of(m), (1024 - 128 + 64) * KIB);
    hm_manager_stats s;
    hm_manager_get_stats(m, &s);
    assert_int_equal(s.waits[HM_LEVEL_TASK], 1);
    assert_int_equal(s.timeouts[HM_LEVEL_TASK], 0);
    assert_int_equal(hm_manager_destroy(m), HM_OK);
}

/* SPEC 3.3: a waiter whose time runs out gets HOST_E_TIMEOUT, NULL, and nothing is charged. */
static void test_timeout(void **state)
{
    (void)state;
    hm_manager *m;
    assert_int_equal(hm_manager_create("limit=1M,wait.appdomain=150ms", &m), HM_OK);
    void *big, *p = (void *)1;
    assert_int_equal(hm_virtual_alloc_level(m, NULL, 1024 * KIB, HM_MEM_RESERVE | HM_MEM_COMMIT, HM_PAGE_READWRITE,
                                            HM_LEVEL_PROCESS, &big),
                     HM_OK);
    double t0 = now_ms();
    assert_int_equal(hm_virtual_alloc_level(m, NULL, 4 * KIB, HM_MEM_RESERVE | HM_MEM_COMMIT, HM_PAGE_READWRITE,
                                            HM_LEVEL_APPDOMAIN, &p),
                     HM_E_HOST_TIMEOUT);
    double waited = now_ms() - t0;
    assert_null(p);
    assert_true(waited >= 140);
    assert_int_equal(charge_of(m), 1024 * KIB);
    /* a level without a wait fails at once (default 0) */
    t0 = now_ms();
    assert_int_equal(hm_virtual_alloc_level(m, NULL, 4 * KIB, HM_MEM_RESERVE | HM_MEM_COMMIT, HM_PAGE_READWRITE,
                                            HM_LEVEL_TASK, &p),
                     HM_E_COMMITMENT_LIMIT);
    assert_true(now_ms() - t0 < 100);
    /* a commit into an existing reservation waits the same way */
    void *res;
    assert_int_equal(hm_reserve(m, 64 * KIB, &res), HM_OK);
    assert_int_equal(hm_virtual_alloc_level(m, res, 4 * KIB, HM_MEM_COMMIT, HM_PAGE_READWRITE, HM_LEVEL_APPDOMAIN, &p),
                     HM_E_HOST_TIMEOUT);
    hm_region r;
    assert_int_equal(hm_virtual_query(m, res, &r), HM_OK);
    assert_int_equal(r.state, HM_MEM_RESERVE);
    hm_manager_stats s;
    hm_manager_get_stats(m, &s);
    assert_int_equal(s.timeouts[HM_LEVEL_APPDOMAIN], 2);
    assert_int_equal(s.waiting, 0);
    assert_int_equal(hm_manager_destroy(m), HM_OK);
}

/* SPEC 3.3: more critical levels first, first come first served within a level. Five waiters queue
 * (task A, task B, process C, appdomain D, process E, in that order); room for one comes back at a
 * time: they must be admitted C, E, D, A, B. */
static void test_order(void **state)
{
    (void)state;
    hm_manager *m;
    assert_int_equal(hm_manager_create("limit=1M,wait.task=20s,wait.appdomain=20s,wait.process=20s", &m), HM_OK);
    void *big;
    assert_int_equal(hm_virtual_alloc_level(m, NULL, 1024 * KIB, HM_MEM_RESERVE | HM_MEM_COMMIT, HM_PAGE_READWRITE,
                                            HM_LEVEL_PROCESS, &big),
                     HM_OK);
    hm_level levels[5] = {HM_LEVEL_TASK, HM_LEVEL_TASK, HM_LEVEL_PROCESS, HM_LEVEL_APPDOMAIN, HM_LEVEL_PROCESS};
    request r[5];
    pthread_t t[5];
    atomic_store(&admitted_order, 0);
    for (int i = 0; i < 5; i++) {
        r[i] = (request){m, levels[i], 64 * KIB, NULL, 1, -1};
        pthread_create(&t[i], NULL, run_request, &r[i]);
        until_waiting(m, (uint32_t)i + 1); /* queue them in this order */
    }
    for (int i = 0; i < 5; i++) { /* one 64 KiB slot at a time */
        assert_int_equal(hm_decommit(m, (char *)big + (size_t)i * 64 * KIB, 64 * KIB), HM_OK);
        for (int k = 0; k < 2000 && waiting_in(m) > (uint32_t)(4 - i); k++) sleep_ms(1);
        assert_int_equal(waiting_in(m), 4 - i);
        /* the admitted thread has returned and taken its place in the order before the next release */
        for (int k = 0; k < 2000 && atomic_load(&admitted_order) < i + 1; k++) sleep_ms(1);
        assert_int_equal(atomic_load(&admitted_order), i + 1);
    }
    for (int i = 0; i < 5; i++) {
        pthread_join(t[i], NULL);
        assert_int_equal(r[i].st, HM_OK);
    }
    int want[5] = {3, 4, 0, 2, 1}; /* A, B, C, D, E admitted 4th, 5th, 1st, 3rd, 2nd */
    for (int i = 0; i < 5; i++) assert_int_equal(r[i].order, want[i]);
    assert_int_equal(charge_of(m), 1024 * KIB);
    assert_int_equal(hm_manager_destroy(m), HM_OK);
}

/* SPEC 3.3: a small request behind a big one is not held up when only the small one fits. */
static void test_small_passes_big(void **state)
{
    (void)state;
    hm_manager *m;
    assert_int_equal(hm_manager_create("limit=1M,wait.process=20s", &m), HM_OK);
    void *big;
    assert_int_equal(hm_virtual_alloc_level(m, NULL, 1024 * KIB, HM_MEM_RESERVE | HM_MEM_COMMIT, HM_PAGE_READWRITE,
                                            HM_LEVEL_PROCESS, &big),
                     HM_OK);
    request a = {m, HM_LEVEL_PROCESS, 512 * KIB, NULL, 1, -1}, b = {m, HM_LEVEL_PROCESS, 64 * KIB, NULL, 1, -1};
    pthread_t ta, tb;
    pthread_create(&ta, NULL, run_request, &a);
    until_waiting(m, 1);
    pthread_create(&tb, NULL, run_request, &b);
    until_waiting(m, 2);
    assert_int_equal(hm_decommit(m, big, 64 * KIB), HM_OK);
    pthread_join(tb, NULL);
    assert_int_equal(b.st, HM_OK);
    assert_int_equal(waiting_in(m), 1);
    assert_int_equal(hm_manager_shutdown(m), HM_OK); /* SPEC 3.4: the big one is abandoned */
    pthread_join(ta, NULL);
    assert_int_equal(a.st, HM_E_HOST_ABANDONED);
    assert_null(a.base);
    assert_int_equal(hm_manager_destroy(m), HM_OK);
}

/* SPEC 3.4: shutdown abandons every waiter at once; later calls are HOST_E_CLRNOTAVAILABLE, and
 * nothing is unmapped until destroy. */
static void test_shutdown(void **state)
{
    (void)state;
    hm_manager *m;
    assert_int_equal(hm_manager_create("limit=1M,wait.task=20s,wait.process=20s", &m), HM_OK);
    void *big;
    assert_int_equal(hm_virtual_alloc_level(m, NULL, 1024 * KIB, HM_MEM_RESERVE | HM_MEM_COMMIT, HM_PAGE_READWRITE,
                                            HM_LEVEL_PROCESS, &big),
                     HM_OK);
    memset(big, 0x5a, 4096);
    request r[3];
    pthread_t t[3];
    for (int i = 0; i < 3; i++) {
        r[i] = (request){m, i == 2 ? HM_LEVEL_PROCESS : HM_LEVEL_TASK, 64 * KIB, NULL, 1, -1};
        pthread_create(&t[i], NULL, run_request, &r[i]);
    }
    until_waiting(m, 3);
    double t0 = now_ms();
    assert_int_equal(hm_manager_shutdown(m), HM_OK);
    for (int i = 0; i < 3; i++) {
        pthread_join(t[i], NULL);
        assert_int_equal(r[i].st, HM_E_HOST_ABANDONED);
    }
    assert_true(now_ms() - t0 < 2000);
    hm_manager_stats s;
    hm_manager_get_stats(m, &s);
    assert_int_equal(s.state, HM_MANAGER_SHUT_DOWN);
    assert_int_equal(s.abandoned[HM_LEVEL_TASK] + s.abandoned[HM_LEVEL_PROCESS], 3);
    void *p = (void *)1;
    assert_int_equal(hm_reserve(m, 64 * KIB, &p), HM_E_HOST_CLRNOTAVAILABLE);
    assert_null(p);
    hm_region q;
    assert_int_equal(hm_virtual_query(m, big, &q), HM_E_HOST_CLRNOTAVAILABLE);
    assert_int_equal(hm_release(m, big), HM_E_HOST_CLRNOTAVAILABLE);
    assert_int_equal(hm_manager_shutdown(m), HM_E_HOST_CLRNOTAVAILABLE);
    assert_int_equal(((unsigned char *)big)[100], 0x5a); /* still mapped: the runtime may touch it */
    assert_int_equal(hm_manager_destroy(m), HM_OK);
    assert_int_equal(hm_virtual_query(NULL, big, &q), HM_OK);
    assert_int_equal(q.state, HM_MEM_FREE);
}

/* Destroy of a running manager with a waiter: the waiter is abandoned and destroy waits for it. */
static void test_destroy_with_waiter(void **state)
{
    (void)state;
    hm_manager *m;
    assert_int_equal(hm_manager_create("limit=256K,wait.task=20s", &m), HM_OK);
    void *big;
    assert_int_equal(hm_virtual_alloc_level(m, NULL, 256 * KIB, HM_MEM_RESERVE | HM_MEM_COMMIT, HM_PAGE_READWRITE,
                                            HM_LEVEL_PROCESS, &big),
                     HM_OK);
    request r = {m, HM_LEVEL_TASK, 64 * KIB, NULL, 1, -1};
    pthread_t t;
    pthread_create(&t, NULL, run_request, &r);
    until_waiting(m, 1);
    assert_int_equal(hm_manager_destroy(m), HM_OK);
    pthread_join(t, NULL);
    assert_int_equal(r.st, HM_E_HOST_ABANDONED);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_admitted_after_release), cmocka_unit_test(test_timeout),
        cmocka_unit_test(test_order),                  cmocka_unit_test(test_small_passes_big),
        cmocka_unit_test(test_shutdown),               cmocka_unit_test(test_destroy_with_waiter),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
