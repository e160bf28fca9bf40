/* psi.c — system pressure from memory stalls (README, "System pressure"): fixture files in the
 * kernel's PSI format drive the system load (psi = notify.high * max(some/psi.some, full/psi.full),
 * at most 100, the worse of the cgroup's memory.pressure and /proc/pressure/memory), the memory
 * state (through the notification thread's sampling), the options' defaults and validation, and the
 * files that are missing or malformed (ignored). */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "testutil.h"

static char root[256];

static void write_file(const char *rel, const char *text) { assert_int_equal(tu_tree_write(root, rel, text), 0); }

static void remove_file(const char *rel)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", root, rel);
    unlink(path);
}

/* A PSI file with the given avg10 values (as the kernel prints them: two decimals). */
static void set_psi(const char *rel, const char *some10, const char *full10)
{
    char text[256];
    snprintf(text, sizeof text,
             "some avg10=%s avg60=0.50 avg300=0.10 total=123456\nfull avg10=%s avg60=0.20 avg300=0.05 total=6543\n",
             some10, full10);
    write_file(rel, text);
}

static void mkdirs(const char *rel)
{
    char p[512];
    snprintf(p, sizeof p, "%s/%s", root, rel);
    mkdir(p, 0755);
}

static int group_setup(void **state)
{
    (void)state;
    /* an idle machine, a v2 cgroup without a limit */
    if (tu_tree_make(root, sizeof root, "psi", "MemTotal:       4194304 kB\nMemFree:  4194304 kB\nMemAvailable:   4194304 kB\n"))
        return -1;
    mkdirs("proc/pressure");
    mkdirs("cgroup/app");
    write_file("proc/self/cgroup", "0::/app\n");
    write_file("cgroup/app/memory.max", "max\n");
    return 0;
}

static int group_teardown(void **state) { return (void)state, tu_tree_remove(root); }

static int reset(void **state)
{
    (void)state;
    remove_file("proc/pressure/memory");
    remove_file("cgroup/app/memory.pressure");
    return 0;
}

static hm_manager *make(const char *extra)
{
    char opts[800];
    snprintf(opts, sizeof opts, "limit=1M,notify.low=40,notify.high=80,proc.root=%s/proc,cgroup.root=%s/cgroup%s%s", root,
             root, extra ? "," : "", extra ? extra : "");
    hm_manager *m = NULL;
    if (hm_manager_create(opts, &m) != HM_OK) fail_msg("create(%s): %s", opts, hm_last_detail());
    return m;
}

static uint32_t load_of(hm_manager *m)
{
    uint32_t load = 999;
    assert_int_equal(hm_manager_get_memory_load(m, &load, NULL), HM_OK);
    return load;
}

/* The rule with the defaults (psi.some=10, psi.full=5) and notify.high=80. */
static void test_rule(void **state)
{
    (void)state;
    hm_manager *m = make(NULL);
    hm_manager_stats s;
    assert_int_equal(hm_manager_get_stats(m, &s), HM_OK);
    assert_int_equal(s.psi_some, 10);
    assert_int_equal(s.psi_full, 5);
    assert_int_equal(load_of(m), 0); /* no PSI file: the usage alone (an idle machine) */
    set_psi("proc/pressure/memory", "0.00", "0.00");
    assert_int_equal(load_of(m), 0);
    set_psi("proc/pressure/memory", "5.00", "0.00"); /* half of psi.some: half of notify.high */
    assert_int_equal(load_of(m), 40);
    set_psi("proc/pressure/memory", "9.99", "0.00"); /* just below: 79 (floor) */
    assert_int_equal(load_of(m), 79);
    set_psi("proc/pressure/memory", "10.00", "0.00"); /* at psi.some: notify.high exactly */
    assert_int_equal(load_of(m), 80);
    set_psi("proc/pressure/memory", "0.00", "5.00"); /* at psi.full */
    assert_int_equal(load_of(m), 80);
    set_psi("proc/pressure/memory", "1.00", "2.50"); /* the worse line: full, 40 against some's 8 */
    assert_int_equal(load_of(m), 40);
    set_psi("proc/pressure/memory", "50.00", "40.00"); /* capped */
    assert_int_equal(load_of(m), 100);
    /* the own pressure still counts when it is the larger */
    set_psi("proc/pressure/memory", "5.00", "0.00");
    void *p;
    assert_int_equal(hm_virtual_alloc(m, NULL, 512 * 1024, HM_MEM_RESERVE | HM_MEM_COMMIT, HM_PAGE_READWRITE, &p), HM_OK);
    assert_int_equal(load_of(m), 50);
    assert_int_equal(hm_release(m, p), HM_OK);
    assert_int_equal(load_of(m), 40);
    assert_int_equal(hm_manager_destroy(m), HM_OK);
}

/* The cgroup's memory.pressure counts where it exists; the worse of it and the system's wins. */
static void test_cgroup_file(void **state)
{
    (void)state;
    hm_manager *m = make("psi.some=20,psi.full=0");
    set_psi("cgroup/app/memory.pressure", "10.00", "99.00"); /* full is off */
    assert_int_equal(load_of(m), 40);
    set_psi("proc/pressure/memory", "15.00", "0.00");
    assert_int_equal(load_of(m), 60);
    set_psi("proc/pressure/memory", "1.00", "0.00");
    assert_int_equal(load_of(m), 40);
    assert_int_equal(hm_manager_destroy(m), HM_OK);
    /* both off: PSI is not read at all */
    m = make("psi.some=0,psi.full=0");
    set_psi("proc/pressure/memory", "90.00", "90.00");
    assert_int_equal(load_of(m), 0);
    assert_int_equal(hm_manager_destroy(m), HM_OK);
}

/* Files that are not what the kernel writes are ignored, line by line. */
static void test_malformed(void **state)
{
    (void)state;
    hm_manager *m = make(NULL);
    write_file("proc/pressure/memory", "garbage\n");
    assert_int_equal(load_of(m), 0);
    write_file("proc/pressure/memory", "some avg10=abc avg60=0.00\nfull avg10=250.00 avg60=0.00\n");
    assert_int_equal(load_of(m), 0);
    write_file("proc/pressure/memory", "some avg60=50.00\nfull total=5\n");
    assert_int_equal(load_of(m), 0);
    write_file("proc/pressure/memory", "some avg10=7.5 avg60=0.00\n"); /* one decimal, no full line */
    assert_int_equal(load_of(m), 60);
    write_file("proc/pressure/memory", "");
    assert_int_equal(load_of(m), 0);
    assert_int_equal(hm_manager_destroy(m), HM_OK);
}

static void test_bad_options(void **state)
{
    (void)state;
    static const char *bad[][2] = {
        {"psi.some=101", "'psi.some'"}, {"psi.some=-1", "'psi.some'"}, {"psi.some=", "'psi.some'"},
        {"psi.full=1.5", "'psi.full'"}, {"psi.full=ten", "'psi.full'"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        hm_manager *m = (hm_manager *)&m;
        assert_int_equal(hm_manager_create(bad[i][0], &m), HM_E_INVALIDARG);
        assert_null(m);
        if (!strstr(hm_last_detail(), bad[i][1])) fail_msg("%s: detail \"%s\"", bad[i][0], hm_last_detail());
    }
    hm_manager *m = make("psi.some=25%,psi.full=0");
    hm_manager_stats s;
    assert_int_equal(hm_manager_get_stats(m, &s), HM_OK);
    assert_int_equal(s.psi_some, 25);
    assert_int_equal(s.psi_full, 0);
    assert_int_equal(hm_manager_destroy(m), HM_OK);
}

/* Until the last delivery is s (the child's count of deliveries depends on whether its own sampling
 * or its parent's push sees a change first). */
/* While callbacks listen, the notification thread samples the stalls: the state turns Low when they
 * reach psi.some, and High again when they are gone; a child manager inherits the parent's view of
 * the system and its Low. */
static void test_state(void **state)
{
    (void)state;
    hm_manager *m = make(NULL);
    hm_manager *c = NULL;
    assert_int_equal(hm_manager_create_child(m, "limit=50%", &c), HM_OK);
    tu_state_log lm = TU_STATE_LOG_INIT, lc = TU_STATE_LOG_INIT;
    assert_int_equal(hm_manager_register_notification(m, tu_state_record, &lm), HM_OK);
    assert_int_equal(hm_manager_register_notification(c, tu_state_record, &lc), HM_OK);
    set_psi("proc/pressure/memory", "6.00", "0.00"); /* 48: Neutral */
    tu_state_until(&lm, 1, HM_MEMORY_NEUTRAL);
    set_psi("proc/pressure/memory", "12.00", "0.00"); /* 96: Low */
    tu_state_until(&lm, 2, HM_MEMORY_LOW);
    tu_state_until_last(&lc, HM_MEMORY_LOW);
    hm_manager_stats s;
    assert_int_equal(hm_manager_get_stats(c, &s), HM_OK);
    assert_int_equal(s.memory_state, HM_MEMORY_LOW);
    assert_int_equal(s.psi_some, 10);
    set_psi("proc/pressure/memory", "0.00", "0.00");
    tu_state_until(&lm, 3, HM_MEMORY_HIGH);
    tu_state_until_last(&lc, HM_MEMORY_HIGH);
    assert_int_equal(hm_manager_destroy(c), HM_OK);
    assert_int_equal(hm_manager_destroy(m), HM_OK);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_rule, reset),
        cmocka_unit_test_setup(test_cgroup_file, reset),
        cmocka_unit_test_setup(test_malformed, reset),
        cmocka_unit_test_setup(test_bad_options, reset),
        cmocka_unit_test_setup(test_state, reset),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
