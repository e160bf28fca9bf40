/* hosted_sqlite.c — SQLite on a tenant (hostmem/sqlite.h): the install's rules (before initialise,
 * once, bad options); queries give the results they give on SQLite's own allocator; a query past the
 * budget gets SQLITE_NOMEM, the connection goes on and the charge comes back; every allocation of a
 * workload (open, inserts, index creation, joins, sorts, commit) failed in turn, then budgets lowered
 * step by step: each time the database stays intact and no charge leaks; a Low releases the cache of
 * a watched connection, so the same workload peaks lower than unwatched; watch rules. One process, in
 * order: SQLite's allocator is process-wide. */
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include <hostmem/sqlite.h>

#define KiB 1024u
#define MiB (1024u * 1024u)

static char g_dir[] = "/tmp/hostmem-sqlite-XXXXXX";
static char g_file[64];

static const char *const schema[] = {
    "PRAGMA synchronous = OFF",
    "CREATE TABLE IF NOT EXISTS item(id INTEGER PRIMARY KEY, name TEXT, price REAL)",
    "CREATE TABLE IF NOT EXISTS sale(id INTEGER PRIMARY KEY, item INTEGER, qty INTEGER)",
    "DELETE FROM item",
    "DELETE FROM sale",
    "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 200) "
    "INSERT INTO item SELECT x, 'item-' || (x * 7919 % 201), (x % 97) / 4.0 FROM c",
    "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 600) "
    "INSERT INTO sale SELECT x, 1 + (x * 31 % 200), x % 13 FROM c",
    NULL,
};

/* The workload: inserts, an index, joins, sorts, aggregates, an update; in a transaction that it
 * rolls back at the end, so that the database is the schema's again after it, failed or not. */
static const char *const work[] = {
    "PRAGMA journal_mode = MEMORY", /* (per connection: no journal file made and deleted in each run of */
    "PRAGMA synchronous = OFF",     /* the sweep, nothing synced: the rollback journal is SQLite's memory) */
    "BEGIN",
    "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 150) "
    "INSERT INTO sale SELECT 2000 + x, 1 + (x * 17 % 200), x % 7 FROM c",
    "CREATE INDEX sale_item ON sale(item)",
    "SELECT count(*), sum(qty), avg(price) FROM sale JOIN item ON item.id = sale.item",
    "SELECT name, sum(qty) AS n FROM sale JOIN item ON item.id = sale.item GROUP BY name ORDER BY n DESC, name LIMIT 5",
    "SELECT group_concat(name, ',') FROM (SELECT name FROM item ORDER BY price DESC, name LIMIT 8)",
    "UPDATE item SET price = price * 2 WHERE id % 3 = 0",
    "SELECT id, name, price FROM item ORDER BY price DESC, id LIMIT 3",
    "ROLLBACK",
    NULL,
};

/* Runs the statements; their rows as text into out (if not NULL); the first error code, or SQLITE_OK. */
static int exec_all(sqlite3 *db, const char *const *sql, char *out, size_t cap)
{
    size_t len = 0;
    if (out) out[0] = 0;
    for (; *sql; sql++) {
        sqlite3_stmt *st;
        int rc = sqlite3_prepare_v2(db, *sql, -1, &st, NULL);
        if (rc != SQLITE_OK) return rc;
        while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
            for (int c = 0; c < sqlite3_column_count(st); c++) {
                const unsigned char *v = sqlite3_column_text(st, c);
                if (!v && sqlite3_column_type(st, c) != SQLITE_NULL) rc = SQLITE_NOMEM;
                if (out && len < cap) len += (size_t)snprintf(out + len, cap - len, "%s%s", c ? "|" : "", v ? (const char *)v : "");
            }
            if (out && len < cap) len += (size_t)snprintf(out + len, cap - len, "\n");
            if (rc == SQLITE_NOMEM) break;
        }
        sqlite3_finalize(st);
        if (rc != SQLITE_DONE) return rc;
    }
    return SQLITE_OK;
}

static sqlite3 *open_db(const char *path)
{
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    return db;
}

static const char *const fingerprint[] = {
    "SELECT count(*), sum(qty), (SELECT total(price) FROM item), (SELECT count(*) FROM sqlite_schema) FROM sale", NULL};
static char g_fp[256]; /* the fingerprint of the schema's tables, taken once they are made */

static void schema_on(sqlite3 *db)
{
    assert_int_equal(exec_all(db, schema, NULL, 0), SQLITE_OK);
    assert_int_equal(exec_all(db, fingerprint, g_fp, sizeof g_fp), SQLITE_OK);
}

/* The check after a failure: integrity_check says ok and the tables hold what the schema put there. */
static void assert_intact(sqlite3 *db)
{
    char out[256];
    exec_all(db, (const char *const[]){"ROLLBACK", NULL}, NULL, 0); /* (an error if none is open) */
    assert_int_equal(exec_all(db, (const char *const[]){"PRAGMA integrity_check", NULL}, out, sizeof out), SQLITE_OK);
    assert_string_equal(out, "ok\n");
    assert_int_equal(exec_all(db, fingerprint, out, sizeof out), SQLITE_OK);
    assert_string_equal(out, g_fp);
}

static hm_tenant_stats stats(void)
{
    hm_tenant_stats s;
    assert_int_equal(hm_tenant_get_stats(hm_sqlite_tenant(), &s), HM_OK);
    return s;
}

static void install(const char *options)
{
    hm_sqlite_config c = {.name = "db", .options = options, .level = HM_LEVEL_TASK};
    assert_int_equal(hm_sqlite_install(&c), HM_OK);
    assert_non_null(hm_sqlite_tenant());
}

static void test_install_rules(void **state)
{
    (void)state;
    assert_null(hm_sqlite_tenant());
    assert_int_equal(hm_sqlite_uninstall(), HM_E_HOST_INVALIDOPERATION);
    assert_non_null(strstr(hm_last_detail(), "no tenant is installed"));
    /* SQLite initialised on its own allocator: too late */
    sqlite3 *db = open_db(":memory:");
    assert_int_equal(hm_sqlite_watch(db), HM_E_HOST_INVALIDOPERATION); /* nothing installed */
    assert_non_null(strstr(hm_last_detail(), "hm_sqlite_install first"));
    assert_int_equal(hm_sqlite_install(NULL), HM_E_HOST_INVALIDOPERATION);
    assert_non_null(strstr(hm_last_detail(), "SQLite is already initialised"));
    assert_null(hm_sqlite_tenant());
    sqlite3_close(db);
    assert_int_equal(sqlite3_shutdown(), SQLITE_OK);
    /* bad options: nothing installed */
    hm_sqlite_config c = {.options = "limit=lots"};
    assert_int_equal(hm_sqlite_install(&c), HM_E_INVALIDARG);
    assert_non_null(strstr(hm_last_detail(), "limit"));
    c = (hm_sqlite_config){.level = 7};
    assert_int_equal(hm_sqlite_install(&c), HM_E_INVALIDARG);
    assert_null(hm_sqlite_tenant());
    assert_int_equal(hm_sqlite_install_tenant(NULL), HM_E_POINTER);
    /* the defaults, once */
    assert_int_equal(hm_sqlite_install(NULL), HM_OK);
    assert_string_equal(hm_tenant_name(hm_sqlite_tenant()), "sqlite");
    assert_int_equal(hm_sqlite_install(NULL), HM_E_HOST_INVALIDOPERATION);
    assert_non_null(strstr(hm_last_detail(), "a tenant is already SQLite's allocator"));
    db = open_db(":memory:");
    assert_int_equal(hm_sqlite_watch(NULL), HM_E_POINTER);
    assert_int_equal(hm_sqlite_unwatch(NULL), HM_E_POINTER);
    assert_int_equal(hm_sqlite_unwatch(db), HM_E_INVALIDARG);
    assert_int_equal(hm_sqlite_watch(db), HM_OK);
    assert_int_equal(hm_sqlite_watch(db), HM_OK);
    /* hostmem_charge(): the tenant's charge */
    char out[64];
    assert_int_equal(exec_all(db, (const char *const[]){"SELECT hostmem_charge() > 0", NULL}, out, sizeof out), SQLITE_OK);
    assert_string_equal(out, "1\n");
    assert_int_equal(hm_sqlite_uninstall(), HM_E_HOST_INVALIDOPERATION); /* a watched connection is open */
    assert_non_null(strstr(hm_last_detail(), "watched connections are open"));
    assert_int_equal(hm_sqlite_unwatch(db), HM_OK);
    assert_int_equal(hm_sqlite_unwatch(db), HM_E_INVALIDARG);
    assert_int_equal(hm_sqlite_watch(db), HM_OK);
    sqlite3_close(db); /* unwatches it */
    assert_int_equal(hm_sqlite_poll(), 0);
    assert_int_equal(hm_sqlite_uninstall(), HM_OK);
    assert_null(hm_sqlite_tenant());
    /* a tenant the caller keeps */
    hm_tenant_config tc = {.name = "kept", .options = "limit=32M"};
    hm_tenant *t;
    assert_int_equal(hm_tenant_create(&tc, &t), HM_OK);
    assert_int_equal(hm_sqlite_install_tenant(t), HM_OK);
    assert_ptr_equal(hm_sqlite_tenant(), t);
    db = open_db(":memory:");
    assert_int_equal(exec_all(db, schema, NULL, 0), SQLITE_OK);
    sqlite3_close(db);
    assert_int_equal(hm_sqlite_uninstall(), HM_OK);
    hm_tenant_stats s;
    assert_int_equal(hm_tenant_get_stats(t, &s), HM_OK);
    assert_int_equal(s.live_bytes, 0);
    assert_true(s.peak_charge > 0);
    assert_int_equal(hm_tenant_destroy(t), HM_OK);
}

static void test_same_result(void **state)
{
    (void)state;
    static char want[4096], got[4096];
    /* SQLite's own allocator */
    sqlite3 *db = open_db(":memory:");
    schema_on(db);
    assert_int_equal(exec_all(db, work, want, sizeof want), SQLITE_OK);
    sqlite3_close(db);
    assert_int_equal(sqlite3_shutdown(), SQLITE_OK);
    char fp[256];
    memcpy(fp, g_fp, sizeof fp);
    install("limit=64M");
    db = open_db(":memory:");
    schema_on(db);
    assert_string_equal(g_fp, fp);
    assert_int_equal(exec_all(db, work, got, sizeof got), SQLITE_OK);
    assert_string_equal(got, want);
    assert_intact(db);
    hm_tenant_stats s = stats();
    assert_true(s.peak_charge > 512 * KiB);
    assert_int_equal(s.refused[0] + s.refused[1] + s.refused[2] + s.bad_frees, 0);
    sqlite3_close(db);
    assert_int_equal(hm_sqlite_uninstall(), HM_OK);
}

static void test_nomem_and_recovery(void **state)
{
    (void)state;
    install("limit=8M");
    hm_tenant *t = hm_sqlite_tenant();
    sqlite3 *db = open_db(g_file);
    schema_on(db);
    static char want[4096], got[4096];
    assert_int_equal(exec_all(db, work, want, sizeof want), SQLITE_OK);
    /* a table in an attached in-memory database: 10 rows (the baseline: a connection that has done
     * such work), then a million, larger than the budget */
    static const char *const small[] = {
        "ATTACH ':memory:' AS m",
        "CREATE TABLE m.big AS WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 10) "
        "SELECT x, randomblob(1000) AS b FROM c",
        "DETACH m", NULL};
    assert_int_equal(exec_all(db, small, NULL, 0), SQLITE_OK);
    hm_heap_trim(hm_tenant_heap(t));
    hm_tenant_stats s0 = stats();
    assert_int_equal(exec_all(db, (const char *const[]){"ATTACH ':memory:' AS m", NULL}, NULL, 0), SQLITE_OK);
    static const char *const hog[] = {
        "CREATE TABLE m.big AS WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 1000000) "
        "SELECT x, randomblob(1000) AS b FROM c",
        NULL};
    assert_int_equal(exec_all(db, hog, NULL, 0), SQLITE_NOMEM);
    assert_string_equal(sqlite3_errmsg(db), "out of memory");
    hm_tenant_stats s1 = stats();
    assert_int_equal(exec_all(db, (const char *const[]){"DETACH m", NULL}, NULL, 0), SQLITE_OK);
    assert_true(s1.refused[HM_LEVEL_TASK] >= 1);
    assert_true(s1.peak_charge <= s1.limit && s1.peak_charge > s1.limit / 2);
    /* SQLite freed the failed work's memory at once: with the heap's emptied pages given back, the
     * charge is the baseline's (one 64 KiB heap page of difference at most, where blocks moved) */
    hm_heap_trim(hm_tenant_heap(t));
    hm_tenant_stats s2 = stats();
    assert_true(s2.live_bytes <= s0.live_bytes + 256); /* (+ the connection's error value, made at its first error) */
    assert_true(s2.charge <= s0.charge + 64 * KiB);
    /* the connection goes on: the same results, the database intact */
    assert_int_equal(exec_all(db, work, got, sizeof got), SQLITE_OK);
    assert_string_equal(got, want);
    assert_intact(db);
    sqlite3_close(db);
    assert_int_equal(hm_sqlite_uninstall(), HM_OK);
}

/* ---- every allocation of the workload failing in turn -------------------------------------- */

static sqlite3_mem_methods g_real;
static long g_countdown; /* > 0: the allocation that brings it to 0 fails */
static long g_allocs, g_failed, g_run_allocs; /* g_run_allocs: what one_run's open and workload asked */

static bool fail_now(void)
{
    g_allocs++;
    if (g_countdown > 0 && --g_countdown == 0) {
        g_failed++;
        return true;
    }
    return false;
}
static void *f_malloc(int n) { return fail_now() ? NULL : g_real.xMalloc(n); }
static void *f_realloc(void *p, int n) { return fail_now() ? NULL : g_real.xRealloc(p, n); }

/* The workload on a fresh connection to g_file, the n-th allocation from the open on failing (0: none).
 * Returns whether a statement (or the open) failed. check: the database is checked on the same
 * connection (a failed open is tried again). */
static bool one_run(long n, char *out, size_t cap, bool check)
{
    g_countdown = n;
    long start = g_allocs;
    sqlite3 *db = NULL;
    int open_rc = sqlite3_open(g_file, &db), rc = open_rc;
    if (rc == SQLITE_OK) rc = exec_all(db, work, out, cap);
    g_countdown = 0;
    g_run_allocs = g_allocs - start;
    if (rc != SQLITE_OK) assert_int_equal(rc, SQLITE_NOMEM); /* a failed allocation is SQLITE_NOMEM, nothing else */
    if (check) {
        if (open_rc != SQLITE_OK) {
            sqlite3_close(db);
            assert_int_equal(sqlite3_open(g_file, &db), SQLITE_OK);
        }
        assert_intact(db);
    }
    assert_int_equal(sqlite3_close(db), SQLITE_OK);
    return rc != SQLITE_OK;
}

static void test_every_allocation_fails(void **state)
{
    (void)state;
    install("limit=64M");
    assert_int_equal(sqlite3_config(SQLITE_CONFIG_GETMALLOC, &g_real), SQLITE_OK);
    sqlite3_mem_methods wrap = g_real;
    wrap.xMalloc = f_malloc;
    wrap.xRealloc = f_realloc;
    assert_int_equal(sqlite3_config(SQLITE_CONFIG_MALLOC, &wrap), SQLITE_OK);
    sqlite3 *db = open_db(g_file);
    schema_on(db);
    sqlite3_close(db);
    uint64_t baseline = stats().live_bytes;
    static char want[4096], got[4096];
    assert_false(one_run(0, want, sizeof want, true));
    long total = g_run_allocs, failures = 0;
    assert_true(total > 100);
    for (long n = 1; n <= total; n++) {
        long failed = g_failed;
        bool f = one_run(n, got, sizeof got, true);
        assert_int_equal(g_failed, failed + 1); /* the n-th allocation did come and fail */
        failures += f;
        if (!f) assert_string_equal(got, want); /* SQLite got over the failure: the same rows */
        assert_int_equal(stats().live_bytes, baseline); /* nothing leaked */
    }
    print_message("%ld allocations failed in turn: %ld runs got SQLITE_NOMEM, %ld got over it\n", total, failures,
                  total - failures);
    assert_true(failures > total / 2);
    assert_int_equal(hm_sqlite_uninstall(), HM_OK); /* (SQLite's own allocator back, not the wrapper) */
}

/* Budgets lowered step by step: refusals by the tenant itself, wherever they fall. */
static void test_lowered_budgets(void **state)
{
    (void)state;
    char options[64];
    int nomem = 0, ok = 0;
    install("limit=64M");
    sqlite3 *db0 = open_db(g_file);
    schema_on(db0);
    sqlite3_close(db0);
    assert_int_equal(hm_sqlite_uninstall(), HM_OK);
    for (unsigned kib = 4096; kib >= 512; kib -= 128) {
        snprintf(options, sizeof options, "limit=%uK", kib);
        install(options);
        static char got[4096];
        bool failed = one_run(0, got, sizeof got, false);
        hm_tenant_stats s = stats();
        assert_true(s.peak_charge <= s.limit);
        if (failed) assert_true(s.refused[HM_LEVEL_TASK] >= 1);
        nomem += failed, ok += !failed;
        assert_int_equal(hm_sqlite_uninstall(), HM_OK); /* (refused if SQLite still held memory: no leak) */
        /* the database, checked under a budget that can hold the check */
        install("limit=64M");
        sqlite3 *db = open_db(g_file);
        assert_intact(db);
        sqlite3_close(db);
        assert_int_equal(hm_sqlite_uninstall(), HM_OK);
    }
    print_message("budgets 4096K..512K: %d ran the workload, %d got SQLITE_NOMEM\n", ok, nomem);
    assert_true(ok >= 1 && nomem >= 1);
}

/* ---- a Low releases a watched connection's cache ---------------------------------------------- */

/* 200 transactions of 25 rows of 2000 bytes on a file database whose cache could hold all of it:
 * about 11 MiB of clean pages by the end, unless something releases them. */
static hm_tenant_stats fill(bool watched)
{
    unlink(g_file);
    install("limit=24M,notify.low=20,notify.high=40");
    sqlite3 *db = open_db(g_file);
    if (watched) assert_int_equal(hm_sqlite_watch(db), HM_OK);
    static const char *const setup[] = {"PRAGMA synchronous = OFF", "PRAGMA cache_size = -32000",
                                        "CREATE TABLE blob(id INTEGER PRIMARY KEY, b BLOB)", NULL};
    static const char *const batch[] = {
        "BEGIN",
        "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 25) "
        "INSERT INTO blob(b) SELECT randomblob(2000) FROM c",
        "COMMIT", NULL};
    assert_int_equal(exec_all(db, setup, NULL, 0), SQLITE_OK);
    for (int i = 0; i < 200; i++) {
        assert_int_equal(exec_all(db, batch, NULL, 0), SQLITE_OK);
        hm_sqlite_poll(); /* between statements: what the notification thread could not lock */
    }
    char out[64];
    /* (a look at the last row only: a scan would bring every page back into the cache) */
    assert_int_equal(exec_all(db, (const char *const[]){"SELECT id, length(b) FROM blob WHERE id = (SELECT max(id) FROM blob)", NULL},
                              out, sizeof out),
                     SQLITE_OK);
    assert_string_equal(out, "5000|2000\n");
    hm_tenant_stats s = stats();
    sqlite3_close(db);
    assert_int_equal(hm_sqlite_uninstall(), HM_OK);
    return s;
}

static void test_low_releases_cache(void **state)
{
    (void)state;
    hm_tenant_stats off = fill(false), on = fill(true);
    print_message("peak charge: unwatched %.1f MiB (low signals %llu), watched %.1f MiB (%llu releases, %.1f MiB)\n",
                  off.peak_charge / 1048576.0, (unsigned long long)off.low_signals, on.peak_charge / 1048576.0,
                  (unsigned long long)on.collections, on.collected_bytes / 1048576.0);
    assert_int_equal(off.collections, 0);
    assert_true(on.collections >= 1);
    assert_true(on.collected_bytes > 1 * MiB);
    assert_true(on.peak_charge < off.peak_charge);
    assert_int_equal(off.refused[0] + on.refused[0], 0);
}

static int setup_dir(void **state)
{
    (void)state;
    if (!mkdtemp(g_dir)) return -1;
    snprintf(g_file, sizeof g_file, "%s/test.db", g_dir);
    return 0;
}

static int remove_dir(void **state)
{
    (void)state;
    char path[96];
    static const char *const files[] = {"test.db", "test.db-journal"};
    for (size_t i = 0; i < 2; i++) {
        snprintf(path, sizeof path, "%s/%s", g_dir, files[i]);
        unlink(path);
    }
    return rmdir(g_dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_install_rules),          cmocka_unit_test(test_same_result),
        cmocka_unit_test(test_nomem_and_recovery),     cmocka_unit_test(test_every_allocation_fails),
        cmocka_unit_test(test_lowered_budgets),        cmocka_unit_test(test_low_releases_cache),
    };
    return cmocka_run_group_tests(tests, setup_dir, remove_dir);
}
