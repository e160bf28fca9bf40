/* host_sqlite.c — hostmem-host-sqlite, the helper of `hostmem host sqlite`: runs an SQL script file,
 * statement by statement, against :memory: (or the database --db FILE) on an SQLite whose allocator
 * is the tenant hm_host_main made (hostmem/sqlite.h). Rows print as the sqlite3 shell's list mode
 * does (columns as text, '|' between them, NULL as nothing). The first failing statement stops the
 * script (as the shell's -bail): its line and SQLite's message ("out of memory" for SQLITE_NOMEM) go
 * to stderr, the status is 1. The connection is watched: a Low releases its cache. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hostmem/sqlite.h>

#include "host_main.h"

typedef struct opts {
    const char *db;
} opts;

static int option(int argc, char **argv, int i, void *state)
{
    opts *o = state;
    if (strcmp(argv[i], "--db")) return 0;
    if (i + 1 >= argc || !argv[i + 1][0]) {
        fprintf(stderr, "hostmem host sqlite: --db wants a database file\n");
        return -1;
    }
    o->db = argv[i + 1];
    return 2;
}

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    size_t cap = 4096, n = 0;
    char *s = malloc(cap);
    for (size_t r; s && (r = fread(s + n, 1, cap - n - 1, f)) > 0;) {
        n += r;
        if (cap - n - 1 == 0) {
            char *g = realloc(s, cap *= 2);
            if (!g) free(s);
            s = g;
        }
    }
    if (s) s[n] = 0;
    if (ferror(f)) free(s), s = NULL;
    fclose(f);
    return s;
}

static int line_of(const char *text, const char *at)
{
    int line = 1;
    for (const char *p = text; p < at; p++) line += *p == '\n';
    return line;
}

/* Runs every statement of sql; 0, or 1 after saying which failed. */
static int exec_script(sqlite3 *db, const char *sql)
{
    for (const char *p = sql; *p;) {
        while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r') p++;
        if (*p == '.') {
            fprintf(stderr, "hostmem host sqlite: line %d: the shell's dot-commands are not SQL\n", line_of(sql, p));
            return 1;
        }
        sqlite3_stmt *st = NULL;
        const char *tail = p;
        int rc = sqlite3_prepare_v2(db, p, -1, &st, &tail);
        if (rc == SQLITE_OK && st) {
            int cols = sqlite3_column_count(st);
            while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
                for (int c = 0; c < cols; c++) {
                    const unsigned char *v = sqlite3_column_text(st, c);
                    if (!v && sqlite3_column_type(st, c) != SQLITE_NULL) { /* the text could not be made */
                        rc = SQLITE_NOMEM;
                        break;
                    }
                    if (c) putchar('|');
                    if (v) fwrite(v, 1, (size_t)sqlite3_column_bytes(st, c), stdout);
                }
                if (rc == SQLITE_NOMEM) break;
                putchar('\n');
            }
            if (rc == SQLITE_DONE) rc = SQLITE_OK;
        }
        if (rc != SQLITE_OK) {
            /* (errmsg before finalize: finalize repeats the code, and the message stays) */
            fprintf(stderr, "hostmem host sqlite: line %d: %s (%s)\n", line_of(sql, p),
                    rc == SQLITE_NOMEM ? "out of memory" : sqlite3_errmsg(db), sqlite3_errstr(rc));
            sqlite3_finalize(st);
            return 1;
        }
        sqlite3_finalize(st);
        hm_sqlite_poll(); /* between statements: what a Low left pending */
        if (tail == p) break;
        p = tail;
    }
    return 0;
}

static int run(hm_tenant *t, const char *script, int argc, char **argv, void *state)
{
    opts *o = state;
    if (argc > 1) { /* (the helper's options come before SCRIPT) */
        fprintf(stderr, "hostmem host sqlite: an SQL script takes no arguments ('%s' after %s)\n", argv[1], script);
        return 2;
    }
    char *sql = slurp(script);
    if (!sql) {
        fprintf(stderr, "hostmem host sqlite: cannot read %s: %s\n", script, strerror(errno));
        return 1;
    }
    hm_status hs = hm_sqlite_install_tenant(t);
    if (HM_FAILED(hs)) { /* (cannot happen in this program: nothing used SQLite before) */
        fprintf(stderr, "hostmem host sqlite: SQLite's allocator cannot be set: %s\n", hm_status_message(hs));
        free(sql);
        return 1;
    }
    sqlite3 *db = NULL;
    const char *path = o->db ? o->db : ":memory:";
    int rc = sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL);
    int status;
    if (rc != SQLITE_OK) {
        fprintf(stderr, "hostmem host sqlite: cannot open %s: %s\n", path, db ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
        status = 1;
    } else {
        hm_sqlite_watch(db); /* (a refusal here only means no release on Low) */
        status = exec_script(db, sql);
    }
    fflush(stdout);
    sqlite3_close(db);
    free(sql);
    hs = hm_sqlite_uninstall();
    if (HM_FAILED(hs)) fprintf(stderr, "hostmem host sqlite: SQLite kept memory after its shutdown\n");
    return status;
}

int main(int argc, char **argv)
{
    static const hm_host_runtime rt = {
        .name = "sqlite",
        .usage = "[--db FILE] SCRIPT.sql\n  (runs the SQL statements of SCRIPT.sql on :memory: or the database FILE; rows\n"
                 "  print as the sqlite3 shell's list mode does; the first failing statement stops the script)",
        .option = option,
        .run = run,
    };
    opts o = {0};
    return hm_host_main(&rt, &o, argc, argv);
}
