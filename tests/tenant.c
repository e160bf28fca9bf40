/* tenant.c — the tenant layer (hostmem/tenant.h): refusals become NULL and are counted by level, the
 * emergency level reaches the reserves, shrinks never fail, bad pointers are refused and counted, Low
 * raises the flag and calls on_low, collections are accounted, the report says it all, bad
 * configurations are refused with a detail. */
#include <pthread.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include <hostmem/tenant.h>

#define MiB (1024u * 1024u)

static hm_tenant *make(const char *options, hm_level level, hm_level emergency)
{
    hm_tenant_config c = {.name = "t", .options = options, .level = level, .emergency_level = emergency};
    hm_tenant *t = NULL;
    assert_int_equal(hm_tenant_create(&c, &t), HM_OK);
    assert_non_null(t);
    return t;
}

static void test_bad_config(void **state)
{
    (void)state;
    hm_tenant *t = (hm_tenant *)1;
    hm_tenant_config c = {.options = "limit=lots"};
    assert_int_equal(hm_tenant_create(&c, &t), HM_E_INVALIDARG);
    assert_null(t);
    assert_non_null(strstr(hm_last_detail(), "limit"));
    c.options = "limit=8M";
    c.level = 3;
    assert_int_equal(hm_tenant_create(&c, &t), HM_E_INVALIDARG);
    assert_non_null(strstr(hm_last_detail(), "level"));
    c.level = HM_LEVEL_APPDOMAIN;
    c.emergency_level = HM_LEVEL_TASK; /* below the ordinary level */
    assert_int_equal(hm_tenant_create(&c, &t), HM_E_INVALIDARG);
    assert_int_equal(hm_tenant_create(NULL, &t), HM_E_POINTER);
    assert_int_equal(hm_tenant_create(&c, NULL), HM_E_POINTER);
    assert_int_equal(hm_tenant_destroy(NULL), HM_E_POINTER);
    assert_int_equal(hm_tenant_on_low(NULL, NULL, NULL), HM_E_POINTER);
    hm_tenant_stats s;
    assert_int_equal(hm_tenant_get_stats(NULL, &s), HM_E_POINTER);
    char buf[8] = "x";
    assert_int_equal(hm_tenant_report(NULL, HM_REPORT_TEXT, buf, sizeof buf), 0);
    assert_string_equal(buf, "");
    /* a NULL tenant never crashes anything */
    assert_null(hm_tenant_alloc(NULL, 16, HM_LEVEL_TASK));
    assert_null(hm_tenant_realloc(NULL, NULL, 16, HM_LEVEL_TASK));
    hm_tenant_free(NULL, buf);
    assert_int_equal(hm_tenant_usable_size(NULL, buf), 0);
    assert_false(hm_tenant_low_pending(NULL));
    assert_false(hm_tenant_take_low(NULL));
    assert_int_equal(hm_tenant_collect_begin(NULL), 0);
    hm_tenant_collect_end(NULL, 1);
    assert_null(hm_tenant_manager(NULL));
    assert_null(hm_tenant_heap(NULL));
    assert_string_equal(hm_tenant_name(NULL), "");
    assert_int_equal(hm_tenant_level(NULL), HM_LEVEL_TASK);
    assert_int_equal(hm_tenant_emergency_level(NULL), HM_LEVEL_TASK);
}

/* A level that is not one: NULL and the heap's detail, not a refusal. */
static void test_bad_level(void **state)
{
    (void)state;
    hm_tenant *t = make("limit=8M", HM_LEVEL_TASK, HM_LEVEL_TASK);
    assert_null(hm_tenant_alloc(t, 64, (hm_level)3));
    assert_non_null(strstr(hm_last_detail(), "level"));
    void *p = hm_tenant_alloc(t, 64, HM_LEVEL_TASK);
    assert_non_null(p);
    assert_null(hm_tenant_realloc(t, p, 100000, (hm_level)-1));
    assert_true(hm_tenant_usable_size(t, p) >= 64); /* untouched */
    assert_null(hm_tenant_realloc(t, p, 16, (hm_level)7)); /* a shrink too: the level is wrong */
    assert_true(hm_tenant_usable_size(t, p) >= 64);
    hm_tenant_stats s;
    assert_int_equal(hm_tenant_get_stats(t, &s), HM_OK);
    assert_int_equal(s.refused[0] + s.refused[1] + s.refused[2], 0);
    hm_tenant_free(t, p);
    assert_int_equal(hm_tenant_destroy(t), HM_OK);
}

/* Fills the budget at the ordinary level until refused; the emergency level still gets the reserve;
 * freeing everything gives the charge back after a collection's trim. */
static void test_refusal_and_emergency(void **state)
{
    (void)state;
    hm_tenant *t = make("limit=4M,reserve.appdomain=0,reserve.process=1M", HM_LEVEL_TASK, HM_LEVEL_PROCESS);
    assert_string_equal(hm_tenant_name(t), "t");
    assert_non_null(hm_tenant_manager(t));
    assert_non_null(hm_tenant_heap(t));
    hm_tenant_stats s0;
    assert_int_equal(hm_tenant_get_stats(t, &s0), HM_OK);
    assert_int_equal(s0.limit, 4 * MiB);
    enum { N = 4096 };
    static void *blocks[N];
    size_t n = 0;
    while (n < N && (blocks[n] = hm_tenant_alloc(t, 1000, hm_tenant_level(t)))) memset(blocks[n++], 0xab, 1000);
    assert_true(n > 2000 && n < N); /* about 3 MiB of 1000-byte blocks, then refused */
    hm_tenant_stats s;
    assert_int_equal(hm_tenant_get_stats(t, &s), HM_OK);
    assert_int_equal(s.refused[HM_LEVEL_TASK], 1);
    assert_true(s.peak_charge <= 3 * MiB);
    /* the emergency level reaches into reserve.process */
    void *e = hm_tenant_alloc(t, 1000, hm_tenant_emergency_level(t));
    assert_non_null(e);
    /* a shrink of a block never fails, even with the budget spent at its level */
    void *big = NULL;
    while (!big) {
        big = hm_tenant_alloc(t, 200000, HM_LEVEL_PROCESS);
        if (!big) hm_tenant_free(t, blocks[--n]); /* make room */
    }
    void *small = hm_tenant_realloc(t, big, 100, HM_LEVEL_TASK);
    assert_non_null(small);
    assert_true(hm_tenant_usable_size(t, small) >= 100);
    /* growing past everything is refused, and the block stays */
    assert_null(hm_tenant_realloc(t, small, 64 * MiB, HM_LEVEL_PROCESS));
    assert_true(hm_tenant_usable_size(t, small) >= 100);
    assert_int_equal(hm_tenant_get_stats(t, &s), HM_OK);
    assert_int_equal(s.refused[HM_LEVEL_PROCESS], 1);
    /* a collection that frees everything: accounted, and the charge falls back */
    uint64_t token = hm_tenant_collect_begin(t);
    while (n) hm_tenant_free(t, blocks[--n]);
    hm_tenant_free(t, e);
    assert_null(hm_tenant_realloc(t, small, 0, HM_LEVEL_TASK)); /* size 0 frees */
    hm_tenant_collect_end(t, token);
    assert_int_equal(hm_tenant_get_stats(t, &s), HM_OK);
    assert_int_equal(s.collections, 1);
    assert_true(s.collected_bytes >= 2000 * 1000);
    assert_int_equal(s.live_bytes, 0);
    assert_true(s.charge <= s0.charge + 64 * 1024); /* at most the heap's segment header stays */
    /* the runtime recovers: the next request at the ordinary level succeeds */
    void *again = hm_tenant_alloc(t, 1000, HM_LEVEL_TASK);
    assert_non_null(again);
    hm_tenant_free(t, again);
    assert_int_equal(hm_tenant_destroy(t), HM_OK);
}

static void test_bad_pointers(void **state)
{
    (void)state;
    hm_tenant *t = make("limit=8M", HM_LEVEL_TASK, HM_LEVEL_TASK), *u = make("limit=8M", HM_LEVEL_TASK, HM_LEVEL_TASK);
    char stack;
    hm_tenant_free(t, NULL);
    hm_tenant_free(t, &stack);
    void *p = hm_tenant_alloc(t, 64, HM_LEVEL_TASK), *q = hm_tenant_alloc(u, 64, HM_LEVEL_TASK);
    assert_non_null(p);
    hm_tenant_free(t, (char *)p + 16); /* interior */
    hm_tenant_free(t, q);              /* another tenant's */
    assert_null(hm_tenant_realloc(t, &stack, 10, HM_LEVEL_TASK));
    hm_tenant_free(t, p);
    hm_tenant_free(t, p); /* a second free */
    hm_tenant_stats s;
    assert_int_equal(hm_tenant_get_stats(t, &s), HM_OK);
    assert_int_equal(s.bad_frees, 5);
    assert_int_equal(s.live_bytes, 0);
    assert_int_equal(hm_tenant_usable_size(t, NULL), 0);
    hm_tenant_free(u, q);
    assert_int_equal(hm_tenant_get_stats(u, &s), HM_OK);
    assert_int_equal(s.bad_frees, 0);
    assert_int_equal(hm_tenant_destroy(t), HM_OK);
    assert_int_equal(hm_tenant_destroy(u), HM_OK);
}

typedef struct seen {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int calls;
    hm_tenant *t;
} seen;

static void on_low(hm_tenant *t, void *arg)
{
    seen *s = arg;
    pthread_mutex_lock(&s->lock);
    s->calls++;
    s->t = t;
    pthread_cond_broadcast(&s->cond);
    pthread_mutex_unlock(&s->lock);
}

/* A refusal turns the state Low: the flag rises (taken once) and on_low runs on the notification
 * thread. */
static void test_low_signal(void **state)
{
    (void)state;
    hm_tenant *t = make("limit=2M,notify.high=90", HM_LEVEL_TASK, HM_LEVEL_TASK);
    seen s = {.lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER};
    assert_int_equal(hm_tenant_on_low(t, on_low, &s), HM_OK);
    assert_false(hm_tenant_low_pending(t));
    assert_false(hm_tenant_take_low(t));
    assert_null(hm_tenant_alloc(t, 16 * MiB, HM_LEVEL_TASK));
    pthread_mutex_lock(&s.lock);
    while (!s.calls) pthread_cond_wait(&s.cond, &s.lock);
    pthread_mutex_unlock(&s.lock);
    assert_ptr_equal(s.t, t);
    assert_true(hm_tenant_low_pending(t));
    assert_true(hm_tenant_take_low(t));
    assert_false(hm_tenant_take_low(t));
    hm_tenant_stats st;
    assert_int_equal(hm_tenant_get_stats(t, &st), HM_OK);
    assert_int_equal(st.low_signals, 1);
    assert_int_equal(st.refused[HM_LEVEL_TASK], 1);
    assert_int_equal(hm_tenant_on_low(t, NULL, NULL), HM_OK);
    assert_int_equal(hm_tenant_destroy(t), HM_OK);
}

static void test_report(void **state)
{
    (void)state;
    hm_tenant *t = make("limit=2M", HM_LEVEL_TASK, HM_LEVEL_TASK);
    assert_null(hm_tenant_alloc(t, 16 * MiB, HM_LEVEL_TASK));
    /* the refusal's Low reaches the tenant from the notifier's thread: the reports below are compared
     * with each other, and "memory low 0 times" is a byte longer than "1 time" */
    hm_tenant_stats ls = {0};
    for (int i = 0; i < 2000 && hm_tenant_get_stats(t, &ls) == HM_OK && !ls.low_signals; i++) usleep(1000);
    char buf[1024];
    size_t n = hm_tenant_report(t, HM_REPORT_TEXT, buf, sizeof buf);
    assert_int_equal(n, strlen(buf));
    assert_non_null(strstr(buf, "tenant t: limit 2.0 MiB"));
    assert_non_null(strstr(buf, "refused: task 1, appdomain 0, process 0"));
    char small[10];
    assert_int_equal(hm_tenant_report(t, HM_REPORT_TEXT, small, sizeof small), n); /* snprintf's rule */
    assert_int_equal(strlen(small), sizeof small - 1);
    n = hm_tenant_report(t, HM_REPORT_JSON, buf, sizeof buf);
    assert_int_equal(n, strlen(buf));
    assert_non_null(strstr(buf, "\"name\":\"t\",\"limit\":2097152,"));
    assert_non_null(strstr(buf, "\"refused\":{\"task\":1,\"appdomain\":0,\"process\":0}"));
    assert_int_equal(hm_tenant_report(t, HM_REPORT_JSON, NULL, 0), n);
    assert_int_equal(hm_tenant_destroy(t), HM_OK);
    /* an embedder's name is escaped in JSON */
    hm_tenant_config c = {.name = "db \"main\"\\1"};
    assert_int_equal(hm_tenant_create(&c, &t), HM_OK);
    hm_tenant_report(t, HM_REPORT_JSON, buf, sizeof buf);
    assert_non_null(strstr(buf, "{\"name\":\"db \\\"main\\\"\\\\1\",\"limit\":"));
    assert_int_equal(hm_tenant_destroy(t), HM_OK);
}

/* Two tenants under one parent: each within its own limit, both within the parent's; the one that
 * hits the parent's limit is refused by it (counted and reported as such), its sibling is told Low,
 * and after the refused work is freed both go on. A parent with live tenants cannot be destroyed. */
static void test_parent(void **state)
{
    (void)state;
    hm_manager *parent;
    assert_int_equal(hm_manager_create("limit=4M,reserve.appdomain=0,reserve.process=0", &parent), HM_OK);
    hm_tenant_config ca = {.name = "a", .options = "limit=75%", .parent = parent},
                     cb = {.name = "b", .options = "limit=3M", .parent = parent};
    hm_tenant *a, *b;
    assert_int_equal(hm_tenant_create(&ca, &a), HM_OK);
    assert_int_equal(hm_tenant_create(&cb, &b), HM_OK);
    hm_tenant_stats s;
    assert_int_equal(hm_tenant_get_stats(a, &s), HM_OK);
    assert_int_equal(s.limit, 3 * MiB); /* 75 % of the parent's */
    /* b takes 2 MiB; a then gets the parent's last ~2 MiB, short of its own 3 MiB */
    void *pb = hm_tenant_alloc(b, 2 * MiB, HM_LEVEL_TASK);
    assert_non_null(pb);
    enum { N = 64 };
    void *blocks[N];
    size_t n = 0;
    while (n < N && (blocks[n] = hm_tenant_alloc(a, 100000, HM_LEVEL_TASK))) n++;
    assert_true(n > 10 && n < 21); /* about 2 MiB of the parent's room, in ~100 KB blocks */
    assert_int_equal(hm_tenant_get_stats(a, &s), HM_OK);
    assert_int_equal(s.refused[HM_LEVEL_TASK], 1);
    assert_int_equal(s.refused_by_ancestor[HM_LEVEL_TASK], 1);
    assert_true(s.charge < s.limit - 512 * 1024);
    hm_manager_stats ps;
    assert_int_equal(hm_manager_get_stats(parent, &ps), HM_OK);
    assert_true(ps.charge <= 4 * MiB && ps.peak_charge <= 4 * MiB);
    char buf[1024];
    hm_tenant_report(a, HM_REPORT_TEXT, buf, sizeof buf);
    assert_non_null(strstr(buf, "by an enclosing budget: task 1, appdomain 0, process 0"));
    hm_tenant_report(a, HM_REPORT_JSON, buf, sizeof buf);
    assert_non_null(strstr(buf, "\"refused_by_ancestor\":{\"task\":1,\"appdomain\":0,\"process\":0}"));
    /* the parent turned Low: both tenants hear it */
    for (int i = 0; i < 500 && !(hm_tenant_low_pending(a) && hm_tenant_low_pending(b)); i++) usleep(2000);
    assert_true(hm_tenant_take_low(a));
    assert_true(hm_tenant_take_low(b));
    assert_int_equal(hm_manager_destroy(parent), HM_E_HOST_INVALIDOPERATION); /* live children */
    /* the refused work goes; b's request now fits */
    uint64_t token = hm_tenant_collect_begin(a);
    while (n) hm_tenant_free(a, blocks[--n]);
    hm_tenant_collect_end(a, token);
    void *more = hm_tenant_alloc(b, 900 * 1024, HM_LEVEL_TASK);
    assert_non_null(more);
    hm_tenant_free(b, more);
    hm_tenant_free(b, pb);
    assert_int_equal(hm_tenant_destroy(a), HM_OK);
    assert_int_equal(hm_tenant_destroy(b), HM_OK);
    assert_int_equal(hm_manager_get_stats(parent, &ps), HM_OK);
    assert_int_equal(ps.charge, 0);
    assert_int_equal(hm_manager_destroy(parent), HM_OK);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bad_config),     cmocka_unit_test(test_refusal_and_emergency),
        cmocka_unit_test(test_bad_pointers),   cmocka_unit_test(test_low_signal),
        cmocka_unit_test(test_report),         cmocka_unit_test(test_parent),
        cmocka_unit_test(test_bad_level),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
