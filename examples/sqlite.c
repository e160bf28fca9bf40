/* sqlite.c — embedding SQLite on hostmem (hostmem/sqlite.h): SQLite's allocator set to a tenant with
 * an 8 MiB budget before SQLite starts; a query that needs more fails with SQLITE_NOMEM and the
 * database goes on. */
#include <stdio.h>

#include <hostmem/sqlite.h>

static int print_row(void *arg, int n, char **values, char **names)
{
    (void)arg, (void)names;
    for (int i = 0; i < n; i++) printf("%s%s", i ? "|" : "", values[i] ? values[i] : "");
    printf("\n");
    return 0;
}

static void run(sqlite3 *db, const char *sql)
{
    char *err = NULL;
    if (sqlite3_exec(db, sql, print_row, NULL, &err) != SQLITE_OK) printf("error: %s\n", err ? err : sqlite3_errmsg(db));
    sqlite3_free(err);
    hm_sqlite_poll(); /* between statements: a cache release the notification thread left to us */
}

int main(void)
{
    hm_sqlite_config c = {.name = "example", .options = "limit=8M,notify.high=70", .level = HM_LEVEL_TASK};
    hm_status st = hm_sqlite_install(&c); /* before any other use of SQLite */
    if (HM_FAILED(st)) {
        fprintf(stderr, "hm_sqlite_install: %s %s\n", hm_status_message(st), hm_last_detail());
        return 1;
    }
    sqlite3 *db;
    if (sqlite3_open(":memory:", &db) != SQLITE_OK) return 1;
    hm_sqlite_watch(db);
    run(db, "CREATE TABLE t(x INTEGER, s TEXT);"
            "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 1000) INSERT INTO t SELECT x, hex(x) FROM c;");
    run(db, "CREATE TABLE big AS WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 1e6) "
            "SELECT randomblob(1000) FROM c;"); /* error: out of memory */
    run(db, "SELECT count(*), sum(x), hostmem_charge() > 0 FROM t; PRAGMA integrity_check;");
    char report[1024];
    hm_tenant_report(hm_sqlite_tenant(), HM_REPORT_TEXT, report, sizeof report);
    fputs(report, stdout);
    sqlite3_close(db);
    return HM_FAILED(hm_sqlite_uninstall());
}
