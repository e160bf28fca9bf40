/* notify.c — memory load and notifications (SPEC 3.5): GetMemoryLoad from the manager's and the
 * system's pressure, band transitions with hysteresis under a scripted load, Low on refusal, delivery
 * in order on the manager's own thread, and a callback that frees memory through the manager. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <time.h>

#include "testutil.h"

#define KIB ((size_t)1024)

static char root[256];

/* A fake /proc with 1 GiB of memory of which `avail_kib` is available, and no cgroup. */
static void set_meminfo(unsigned long avail_kib)
{
    char text[256];
    snprintf(text, sizeof text, "MemTotal:       1048576 kB\nMemFree:  1000 kB\nMemAvailable:   %lu kB\n", avail_kib);
    assert_int_equal(tu_tree_write(root, "proc/meminfo", text), 0);
}

static int group_setup(void **state)
{
    (void)state;
    if (tu_tree_make(root, sizeof root, "notify", NULL)) return -1;
    set_meminfo(1048576); /* nothing used */
    return 0;
}

static int group_teardown(void **state) { return (void)state, tu_tree_remove(root); }

static hm_manager *make(const char *extra)
{
    char opts[700];
    snprintf(opts, sizeof opts, "limit=1M,notify.low=40,notify.high=80,proc.root=%s/proc,cgroup.root=%s/cgroup%s%s",
             root, root, extra ? "," : "", extra ? extra : "");
    hm_manager *m = NULL;
    if (hm_manager_create(opts, &m) != HM_OK) fail_msg("create: %s", hm_last_detail());
    return m;
}

typedef struct log {
    pthread_mutex_t lock;
    int states[64];
    int n;
    pthread_t thread;
    hm_manager *m;   /* for the callback that gives memory back */
    void *give_back; /* decommit this on Low */
    size_t give_size;
} log_t;

static void record(hm_memory_state s, void *arg)
{
    log_t *l = arg;
    pthread_mutex_lock(&l->lock);
    if (l->n < 64) l->states[l->n++] = (int)s;
    l->thread = pthread_self();
    void *g = s == HM_MEMORY_LOW ? l->give_back : NULL;
    if (g) l->give_back = NULL;
    pthread_mutex_unlock(&l->lock);
    if (g) assert_int_equal(hm_decommit(l->m, g, l->give_size), HM_OK); /* re-enters the manager */
}

static int count(log_t *l)
{
    pthread_mutex_lock(&l->lock);
    int n = l->n;
    pthread_mutex_unlock(&l->lock);
    return n;
}

static void until_count(log_t *l, int n)
{
    for (int i = 0; i < 3000 && count(l) < n; i++) {
        struct timespec t = {0, 1000000};
        nanosleep(&t, NULL);
    }
    assert_int_equal(count(l), n);
}

static void *commit_range(hm_manager *m, void *base, size_t off, size_t size)
{
    void *p;
    assert_int_equal(hm_virtual_alloc(m, (char *)base + off, size, HM_MEM_COMMIT, HM_PAGE_READWRITE, &p), HM_OK);
    return p;
}

/* SPEC 3.5: load is the larger pressure; available the smaller room. */
static void test_memory_load(void **state)
{
    (void)state;
    hm_manager *m = make(NULL);
    void *base;
    assert_int_equal(hm_reserve(m, 1024 * KIB, &base), HM_OK);
    commit_range(m, base, 0, 256 * KIB);
    uint32_t load;
    uint64_t avail;
    assert_int_equal(hm_manager_get_memory_load(m, &load, &avail), HM_OK);
    assert_int_equal(load, 25);
    assert_int_equal(avail, 768 * KIB);
    set_meminfo(1048576 / 10); /* the system is 90% used */
    assert_int_equal(hm_manager_get_memory_load(m, &load, &avail), HM_OK);
    assert_int_equal(load, 90);
    assert_int_equal(avail, 768 * KIB); /* the budget is still the smaller room */
    set_meminfo(1024); /* 1 MiB available in the system */
    assert_int_equal(hm_manager_get_memory_load(m, &load, &avail), HM_OK);
    assert_int_equal(avail, 1024 * KIB > 768 * KIB ? 768 * KIB : 1024 * KIB);
    set_meminfo(1048576);
    assert_int_equal(hm_manager_get_memory_load(m, NULL, NULL), HM_OK);
    assert_int_equal(hm_manager_destroy(m), HM_OK);
}

/* SPEC 3.5: bands with hysteresis under the manager's own scripted load; in order, once each, on
 * the manager's own thread. */
static void test_transitions(void **state)
{
    (void)state;
    hm_manager *m = make(NULL);
    static log_t l = {.lock = PTHREAD_MUTEX_INITIALIZER};
    l.n = 0;
    static log_t l2 = {.lock = PTHREAD_MUTEX_INITIALIZER};
    l2.n = 0;
    assert_int_equal(hm_manager_register_notification(m, record, &l), HM_OK);
    assert_int_equal(hm_manager_register_notification(m, record, &l2), HM_OK);
    void *base;
    assert_int_equal(hm_reserve(m, 1024 * KIB, &base), HM_OK);
    commit_range(m, base, 0, 512 * KIB);      /* 50%: Neutral */
    until_count(&l, 1);
    commit_range(m, base, 512 * KIB, 200 * KIB); /* 69%: still Neutral, no crossing */
    commit_range(m, base, 712 * KIB, 128 * KIB); /* 82%: Low */
    until_count(&l, 2);
    assert_int_equal(hm_decommit(m, (char *)base + 600 * KIB, 240 * KIB), HM_OK); /* 58%: Neutral */
    until_count(&l, 3);
    assert_int_equal(hm_decommit(m, base, 300 * KIB), HM_OK); /* 29%: High */
    until_count(&l, 4);
    int want[4] = {HM_MEMORY_NEUTRAL, HM_MEMORY_LOW, HM_MEMORY_NEUTRAL, HM_MEMORY_HIGH};
    for (int i = 0; i < 4; i++) assert_int_equal(l.states[i], want[i]);
    until_count(&l2, 4);
    for (int i = 0; i < 4; i++) assert_int_equal(l2.states[i], want[i]);
    assert_false(pthread_equal(l.thread, pthread_self())); /* never on the allocating thread */
    hm_manager_stats s;
    assert_int_equal(hm_manager_get_stats(m, &s), HM_OK);
    assert_int_equal(s.memory_state, HM_MEMORY_HIGH);
    assert_int_equal(s.state_changes, 4);
    assert_int_equal(s.notifications, 8);
    assert_int_equal(hm_manager_destroy(m), HM_OK);
}

/* SPEC 3.5: a refused request raises Low at once; a callback may free memory through the manager
 * (no deadlock), and the state follows the load it leaves. */
static void test_refusal_and_give_back(void **state)
{
    (void)state;
    hm_manager *m = make("reserve.process=256K");
    static log_t l = {.lock = PTHREAD_MUTEX_INITIALIZER};
    l.n = 0;
    void *base;
    assert_int_equal(hm_reserve(m, 1024 * KIB, &base), HM_OK);
    commit_range(m, base, 0, 600 * KIB); /* 58%: Neutral, before anyone listens */
    l.m = m;
    l.give_back = base;
    l.give_size = 400 * KIB;
    assert_int_equal(hm_manager_register_notification(m, record, &l), HM_OK);
    void *p = (void *)1;
    /* task level may use 768K: 600K + 256K is refused */
    assert_int_equal(hm_virtual_alloc_level(m, (char *)base + 600 * KIB, 256 * KIB, HM_MEM_COMMIT, HM_PAGE_READWRITE,
                                            HM_LEVEL_TASK, &p),
                     HM_E_COMMITMENT_LIMIT);
    until_count(&l, 2); /* Low, then High after the callback gave 400K back (20%) */
    assert_int_equal(l.states[0], HM_MEMORY_LOW);
    assert_int_equal(l.states[1], HM_MEMORY_HIGH);
    hm_manager_stats s;
    assert_int_equal(hm_manager_get_stats(m, &s), HM_OK);
    assert_int_equal(s.charge, 200 * KIB);
    assert_int_equal(hm_manager_destroy(m), HM_OK);
}

/* SPEC 3.5: system pressure is watched while callbacks are registered. */
static void test_system_pressure(void **state)
{
    (void)state;
    hm_manager *m = make(NULL);
    static log_t l = {.lock = PTHREAD_MUTEX_INITIALIZER};
    l.n = 0;
    assert_int_equal(hm_manager_register_notification(m, record, &l), HM_OK);
    set_meminfo(1048576 / 20); /* 95% used */
    until_count(&l, 1);
    assert_int_equal(l.states[0], HM_MEMORY_LOW);
    set_meminfo(1048576);
    until_count(&l, 2);
    assert_int_equal(l.states[1], HM_MEMORY_HIGH);
    assert_int_equal(hm_manager_destroy(m), HM_OK);
}

static void test_register_errors(void **state)
{
    (void)state;
    hm_manager *m = make(NULL);
    assert_int_equal(hm_manager_register_notification(m, NULL, NULL), HM_E_POINTER);
    assert_int_equal(hm_manager_shutdown(m), HM_OK);
    static log_t l = {.lock = PTHREAD_MUTEX_INITIALIZER};
    assert_int_equal(hm_manager_register_notification(m, record, &l), HM_E_HOST_CLRNOTAVAILABLE);
    uint32_t load;
    assert_int_equal(hm_manager_get_memory_load(m, &load, NULL), HM_E_HOST_CLRNOTAVAILABLE);
    assert_int_equal(hm_manager_destroy(m), HM_OK);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_memory_load),        cmocka_unit_test(test_transitions),
        cmocka_unit_test(test_refusal_and_give_back), cmocka_unit_test(test_system_pressure),
        cmocka_unit_test(test_register_errors),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
