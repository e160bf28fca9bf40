/* host_sqlite.c — hostmem-host-sqlite, the helper of `hostmem host sqlite`: runs an SQL script file,
 * statement by statement, against :memory: (or the database --db FILE) on an SQLite whose allocator
 * is the tenant hm_host_main made (hostmem/sqlite.h). Rows print as the sqlite3 shell prints them in
 * list mode (columns as text, '|' between them, NULL as nothing), and the shell's dot-commands that
 * shape output or flow are understood (.headers, .mode list|csv|tabs, .separator, .nullvalue,
 * .print, .bail, .read, .quit (ends the file it is in), .exit [N]; .echo, .timer, .changes,
 * .width, .stats, .eqp are accepted and change nothing), so that scripts written for the shell run
 * as they are. The first failing
 * statement stops the script (as the shell's -bail; `.bail off` goes on after it, the status still
 * 1): its line and SQLite's message ("out of memory" for SQLITE_NOMEM) go to stderr, the status is
 * 1. The connection is watched: a Low releases its cache. */
#include <errno.h>
#include <stdbool.h>
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

/* How rows print (the shell's settings that the dot-commands change). */
typedef struct out_mode {
    bool headers, csv, bail;
    char sep[16], null[64];          /* column separator, NULL's text */
    const char *eol;                 /* row separator: csv's is \r\n, as the shell's */
} out_mode;

/* A field as the mode prints it: csv quotes one holding the separator, a quote or a line break. */
static void put_field(const out_mode *m, const char *v, size_t n)
{
    if (!m->csv || (!memchr(v, '"', n) && !memchr(v, '\n', n) && !memchr(v, '\r', n) && !strstr(v, m->sep))) {
        fwrite(v, 1, n, stdout);
        return;
    }
    putchar('"');
    for (size_t i = 0; i < n; i++) {
        if (v[i] == '"') putchar('"');
        putchar(v[i]);
    }
    putchar('"');
}

/* The arguments of a dot-command line (the shell's quoting: '...' literal, "..." with \ escapes
 * left as they are); at most max, their count in *n. The line is cut up in place. */
static void split_args(char *line, char **argv, int max, int *n)
{
    *n = 0;
    for (char *p = line; *p && *n < max;) {
        while (*p == ' ' || *p == '\t') p++;
        if (!*p) break;
        char q = *p == '\'' || *p == '"' ? *p++ : 0;
        argv[(*n)++] = p;
        while (*p && (q ? *p != q : *p != ' ' && *p != '\t')) p++;
        if (*p) *p++ = 0;
    }
}

static bool is_on(const char *a) { return !strcmp(a, "on") || !strcmp(a, "1") || !strcmp(a, "yes") || !strcmp(a, "true"); }

/* Runs the dot-command of line (its text, NUL-terminated, without the line break): 0, 1 (an error,
 * said on stderr), 3 (.quit: this file ends, as in the shell), 4 (.read: *path, a pointer into line)
 * or 5 (.exit: everything ends, *code the status). */
static int dot_command(out_mode *m, char *line, int lineno, int *code, const char **path)
{
    char *argv[8];
    int argc;
    split_args(line + 1, argv, 8, &argc);
    const char *c = argc ? argv[0] : "";
    if (!strcmp(c, "print")) {
        for (int i = 1; i < argc; i++) printf("%s%s", i > 1 ? " " : "", argv[i]);
        putchar('\n');
    } else if ((!strcmp(c, "headers") || !strcmp(c, "header")) && argc == 2) {
        m->headers = is_on(argv[1]);
    } else if (!strcmp(c, "bail") && argc == 2) {
        m->bail = is_on(argv[1]);
    } else if (!strcmp(c, "mode") && argc >= 2 && (!strcmp(argv[1], "list") || !strcmp(argv[1], "csv") || !strcmp(argv[1], "tabs"))) {
        m->csv = !strcmp(argv[1], "csv");
        strcpy(m->sep, m->csv ? "," : !strcmp(argv[1], "tabs") ? "\t" : "|");
        if (strcmp(argv[1], "tabs")) m->eol = m->csv ? "\r\n" : "\n"; /* (tabs keeps the row separator, as in the shell) */
    } else if (!strcmp(c, "separator") && argc >= 2 && strlen(argv[1]) < sizeof m->sep) {
        strcpy(m->sep, !strcmp(argv[1], "\\t") ? "\t" : argv[1]);
    } else if (!strcmp(c, "nullvalue") && argc == 2 && strlen(argv[1]) < sizeof m->null) {
        strcpy(m->null, argv[1]);
    } else if (!strcmp(c, "read") && argc == 2) {
        *path = argv[1];
        return 4;
    } else if (!strcmp(c, "quit")) {
        return 3;
    } else if (!strcmp(c, "exit")) {
        *code = argc == 2 ? atoi(argv[1]) : 0;
        return 5;
    } else if (!strcmp(c, "echo") || !strcmp(c, "timer") || !strcmp(c, "changes") || !strcmp(c, "width") ||
               !strcmp(c, "stats") || !strcmp(c, "eqp") || !strcmp(c, "scanstats")) {
        /* (display settings the report does not need: accepted, no effect) */
    } else {
        fprintf(stderr, "hostmem host sqlite: line %d: .%s: not a dot-command this helper runs (it knows .print, "
                        ".headers, .mode list|csv|tabs, .separator, .nullvalue, .bail, .read, .quit, .exit)\n", lineno, c);
        return 1;
    }
    return 0;
}

/* Past blanks and SQL comments (a dot-command is recognised only at a statement's start). */
static const char *skip_space(const char *p)
{
    for (;;) {
        while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r') p++;
        if (p[0] == '-' && p[1] == '-') {
            while (*p && *p != '\n') p++;
        } else if (p[0] == '/' && p[1] == '*') {
            const char *e = strstr(p + 2, "*/");
            if (!e) return p; /* (SQLite says what is wrong with it) */
            p = e + 2;
        } else {
            return p;
        }
    }
}

/* Runs one prepared statement, printing its rows; SQLite's code. */
static int step_rows(sqlite3_stmt *st, const out_mode *m)
{
    int cols = sqlite3_column_count(st), rc;
    bool first = true;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (first && m->headers && cols) {
            for (int c = 0; c < cols; c++) {
                const char *name = sqlite3_column_name(st, c);
                if (!name) return SQLITE_NOMEM;
                if (c) fputs(m->sep, stdout);
                put_field(m, name, strlen(name));
            }
            fputs(m->eol, stdout);
        }
        first = false;
        for (int c = 0; c < cols; c++) {
            const unsigned char *v = sqlite3_column_text(st, c);
            if (!v && sqlite3_column_type(st, c) != SQLITE_NULL) return SQLITE_NOMEM; /* the text could not be made */
            if (c) fputs(m->sep, stdout);
            if (v) put_field(m, (const char *)v, (size_t)sqlite3_column_bytes(st, c));
            else fputs(m->null, stdout);
        }
        fputs(m->eol, stdout);
    }
    return rc == SQLITE_DONE ? SQLITE_OK : rc;
}

/* A script's run: the output settings the dot-commands change (kept across .read, as the shell
 * keeps them), how deep .read nests, whether .exit stopped it and with what status. */
typedef struct script_run {
    out_mode m;
    int depth;
    bool quit;
    int code;
} script_run;

#define READ_DEPTH 16 /* .read nesting (a file that reads itself stops here) */

/* Runs every statement and dot-command of sql (from the file name; NULL: the script itself); 0, or 1
 * after saying what failed (a failure stops it unless .bail off; the status stays 1). */
static int exec_script(sqlite3 *db, char *sql, const char *name, script_run *r);

/* .read path: its statements run as if they stood here. */
static int read_file(sqlite3 *db, const char *path, int lineno, script_run *r)
{
    if (r->depth >= READ_DEPTH) {
        fprintf(stderr, "hostmem host sqlite: line %d: .read %s: nested more than %d deep\n", lineno, path, READ_DEPTH);
        return 1;
    }
    char *sql = slurp(path);
    if (!sql) {
        fprintf(stderr, "hostmem host sqlite: line %d: .read %s: %s\n", lineno, path, strerror(errno));
        return 1;
    }
    r->depth++;
    int st = exec_script(db, sql, path, r);
    r->depth--;
    free(sql);
    return st;
}

static int exec_script(sqlite3 *db, char *sql, const char *name, script_run *r)
{
    int status = 0;
    for (const char *p = sql; *(p = skip_space(p));) {
        int failed = 0;
        if (*p == '.') {
            char *eol = strchr(p, '\n'), keep = 0;
            if (eol) keep = *eol, *eol = 0;
            size_t len = strlen(p);
            if (len && p[len - 1] == '\r') ((char *)p)[len - 1] = 0;
            const char *path = NULL;
            int code = 0, d = dot_command(&r->m, (char *)p, line_of(sql, p), &code, &path);
            if (d == 4) d = read_file(db, path, line_of(sql, p), r);
            if (eol) *eol = keep;
            if (d == 5) {
                r->quit = true;
                r->code = code;
            }
            failed = d == 1;
            if (d == 3) break; /* (.quit: the rest of this file is not read) */
            p = eol ? eol + 1 : p + len;
        } else {
            sqlite3_stmt *st = NULL;
            const char *tail = p;
            int rc = sqlite3_prepare_v2(db, p, -1, &st, &tail);
            if (rc == SQLITE_OK && st) rc = step_rows(st, &r->m);
            if (rc != SQLITE_OK) {
                /* (errmsg before finalize: finalize repeats the code, and the message stays) */
                fprintf(stderr, "hostmem host sqlite: %s%sline %d: %s (%s)\n", name ? name : "", name ? ": " : "",
                        line_of(sql, p), rc == SQLITE_NOMEM ? "out of memory" : sqlite3_errmsg(db), sqlite3_errstr(rc));
                failed = 1;
            }
            sqlite3_finalize(st);
            hm_sqlite_poll(); /* between statements: what a Low left pending */
            if (tail == p) { /* nothing taken (.bail off after an error SQLite could not delimit): past its line */
                const char *eol = strchr(p, '\n');
                tail = eol ? eol + 1 : p + strlen(p);
            }
            p = tail;
        }
        if (failed) status = 1;
        if (r->quit || (failed && r->m.bail)) break;
    }
    return status;
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
        script_run r = {.m = {.bail = true, .sep = "|", .eol = "\n"}};
        status = exec_script(db, sql, NULL, &r);
        if (r.quit) status = r.code; /* (.exit N: N, as the shell's) */
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
                 "  print as the sqlite3 shell's list mode does, and its output dot-commands work; the first\n"
                 "  failing statement stops the script, unless .bail off)",
        .option = option,
        .run = run,
    };
    opts o = {0};
    return hm_host_main(&rt, &o, argc, argv);
}
