/* bench_hosted.c — the hosted runtimes' workloads on the runtime's own allocator, on mimalloc, and
 * through the hostmem adapter (hostmem/lua.h, hostmem/sqlite.h), side by side:
 *
 *   lua     table and string churn: rounds that rebuild a 20 000-entry table of small tables and
 *           strings, concatenate a few thousand strings, and drop a third of it (Lua's GC running)
 *   sqlite  an insert/query mix on :memory:: 50 000 rows inserted in transactions of 1 000, an index
 *           built, then range queries, a GROUP BY, an ORDER BY over a join, updates and deletes
 *
 * Contenders:
 *   default   Lua: luaL_newstate (lauxlib's l_alloc: realloc/free); SQLite: its own (malloc, mem1.c)
 *   mimalloc  Debian's libmimalloc.so.2, dlopen'ed in the child: mi_realloc/mi_free for Lua's
 *             lua_Alloc, mi_malloc/mi_free/mi_realloc/mi_usable_size as SQLite's sqlite3_mem_methods
 *   hostmem   hm_lua_open (the count hook on) / hm_sqlite_install, with the manager's default budget
 *
 * Each (workload, contender) runs in a child process of its own (fork + exec of this program with
 * --run), so that its peak RSS (VmHWM at the end) is its own; rounds repeat every pair (5 by default,
 * --reps N) with the contenders' order rotating; each figure is the median over the rounds, and the
 * ratios are to mimalloc. The checksum each run prints must be the same for every contender.
 *
 *   bench_hosted [--reps N] [--only lua|sqlite]
 *   bench_hosted --run CONTENDER WORKLOAD      one run in this process: "RESULT ns peak_kb checksum" */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/wait.h>

#define BENCH_PROC_NAME "bench_hosted"
#include "bench_proc.h"

#include <lauxlib.h>
#include <lualib.h>

#include <hostmem/lua.h>
#include <hostmem/sqlite.h>

enum { C_DEFAULT, C_MIMALLOC, C_HOSTMEM, NCONT };
static const char *const cnames[NCONT] = {"default", "mimalloc", "hostmem"};
enum { W_LUA, W_SQLITE, NWORK };
static const char *const wnames[NWORK] = {"lua", "sqlite"};
#define MAXREPS 32

/* ---- mimalloc ---------------------------------------------------------------------------------- */

static void *(*mi_malloc_)(size_t);
static void (*mi_free_)(void *);
static void *(*mi_realloc_)(void *, size_t);
static size_t (*mi_usable_size_)(const void *);

static void load_mimalloc(void)
{
    void *h = dlopen("libmimalloc.so.2", RTLD_NOW | RTLD_LOCAL);
    if (!h) die("mimalloc: %s (Debian: libmimalloc2.0)", dlerror());
    void *f[4];
    static const char *const names[4] = {"mi_malloc", "mi_free", "mi_realloc", "mi_usable_size"};
    for (int i = 0; i < 4; i++)
        if (!(f[i] = dlsym(h, names[i]))) die("mimalloc: no %s", names[i]);
    memcpy(&mi_malloc_, &f[0], sizeof f[0]);
    memcpy(&mi_free_, &f[1], sizeof f[1]);
    memcpy(&mi_realloc_, &f[2], sizeof f[2]);
    memcpy(&mi_usable_size_, &f[3], sizeof f[3]);
}

static void *mi_lua_alloc(void *ud, void *p, size_t osize, size_t nsize)
{
    (void)ud, (void)osize;
    if (nsize == 0) {
        mi_free_(p);
        return NULL;
    }
    return mi_realloc_(p, nsize);
}

static void *mi_sq_malloc(int n) { return mi_malloc_((size_t)n); }
static void mi_sq_free(void *p) { mi_free_(p); }
static void *mi_sq_realloc(void *p, int n) { return mi_realloc_(p, (size_t)n); }
static int mi_sq_size(void *p) { return (int)mi_usable_size_(p); }
static int mi_sq_roundup(int n) { return (n + 7) & ~7; }
static int mi_sq_init(void *a) { return (void)a, SQLITE_OK; }
static void mi_sq_shutdown(void *a) { (void)a; }

/* ---- workloads --------------------------------------------------------------------------------- */

static const char lua_churn[] =
    "local h = 0\n"
    "local keep = {}\n"
    "for r = 1, 20 do\n"
    "  local t = {}\n"
    "  for i = 1, 20000 do t[i] = {i, tostring(i * r) .. 'k', {r}} end\n"
    "  local parts = {}\n"
    "  for i = 1, 3000 do parts[i] = string.rep(string.char(97 + i % 26), i % 40) end\n"
    "  local s = table.concat(parts, ',')\n"
    "  h = (h * 31 + #s + #t[20000][2]) % 4294967296\n"
    "  for i = 1, 20000, 3 do keep[i % 7000] = t[i] end\n"
    "end\n"
    "return h\n";

static uint64_t run_lua(lua_State *L)
{
    luaL_openlibs(L);
    if (luaL_dostring(L, lua_churn) != LUA_OK) die("lua: %s", lua_tostring(L, -1));
    uint64_t h = (uint64_t)lua_tointeger(L, -1);
    lua_pop(L, 1);
    return h;
}

static uint64_t sq_exec(sqlite3 *db, const char *sql)
{
    sqlite3_stmt *st;
    uint64_t h = 0;
    for (const char *p = sql; *p;) {
        const char *tail;
        if (sqlite3_prepare_v2(db, p, -1, &st, &tail) != SQLITE_OK) die("sqlite: %s", sqlite3_errmsg(db));
        if (!st) break;
        int rc;
        while ((rc = sqlite3_step(st)) == SQLITE_ROW)
            for (int c = 0; c < sqlite3_column_count(st); c++) h = h * 31 + (uint64_t)sqlite3_column_int64(st, c);
        if (rc != SQLITE_DONE) die("sqlite: %s", sqlite3_errmsg(db));
        sqlite3_finalize(st);
        p = tail;
    }
    return h;
}

static uint64_t run_sqlite(void)
{
    sqlite3 *db;
    if (sqlite3_open(":memory:", &db) != SQLITE_OK) die("sqlite3_open");
    if (hm_sqlite_tenant()) hm_sqlite_watch(db);
    uint64_t h = sq_exec(db, "CREATE TABLE t(id INTEGER PRIMARY KEY, k INTEGER, s TEXT);"
                             "CREATE TABLE g(k INTEGER PRIMARY KEY, name TEXT);"
                             "WITH RECURSIVE c(x) AS (SELECT 0 UNION ALL SELECT x + 1 FROM c WHERE x < 999) "
                             "INSERT INTO g SELECT x, 'group-' || x FROM c;");
    sqlite3_stmt *ins;
    if (sqlite3_prepare_v2(db, "INSERT INTO t(k, s) VALUES (?1, printf('%08d-%s', ?1, hex(?2)))", -1, &ins, NULL))
        die("sqlite: %s", sqlite3_errmsg(db));
    for (int b = 0; b < 50; b++) {
        sq_exec(db, "BEGIN");
        for (int i = 0; i < 1000; i++) {
            sqlite3_bind_int(ins, 1, (b * 7919 + i * 104729) % 1000003);
            sqlite3_bind_int(ins, 2, i);
            if (sqlite3_step(ins) != SQLITE_DONE) die("sqlite: %s", sqlite3_errmsg(db));
            sqlite3_reset(ins);
        }
        sq_exec(db, "COMMIT");
    }
    sqlite3_finalize(ins);
    h += sq_exec(db, "CREATE INDEX t_k ON t(k);");
    for (int q = 0; q < 10; q++) {
        char sql[512];
        snprintf(sql, sizeof sql,
                 "SELECT count(*), sum(length(s)) FROM t WHERE k BETWEEN %d AND %d;"
                 "SELECT k %% 1000 AS m, count(*) FROM t GROUP BY m ORDER BY 2 DESC, 1 LIMIT 3;"
                 "SELECT sum(t.id) FROM (SELECT id, k FROM t ORDER BY s DESC LIMIT 2000) t JOIN g ON g.k = t.k %% 1000;"
                 "UPDATE t SET s = s || 'u' WHERE id %% 97 = %d;",
                 q * 80000, q * 80000 + 60000, q);
        h += sq_exec(db, sql);
    }
    h += sq_exec(db, "DELETE FROM t WHERE id % 3 = 0; SELECT count(*) FROM t;");
    sqlite3_close(db);
    return h;
}

/* ---- one run (the child) ----------------------------------------------------------------------- */

static int child_main(int c, int w)
{
    static char what[64];
    snprintf(what, sizeof what, "%s/%s", cnames[c], wnames[w]);
    g_what = what;
    alarm(300);
    if (c == C_MIMALLOC) load_mimalloc();
    uint64_t h;
    double t0;
    if (w == W_LUA) {
        lua_State *L = NULL;
        if (c == C_DEFAULT) L = luaL_newstate();
        else if (c == C_MIMALLOC) L = lua_newstate(mi_lua_alloc, NULL);
        else if (HM_FAILED(hm_lua_open(NULL, &L))) die("hm_lua_open");
        if (!L) die("no Lua state");
        t0 = now_ns();
        h = run_lua(L);
    } else {
        if (c == C_MIMALLOC) {
            static const sqlite3_mem_methods m = {mi_sq_malloc, mi_sq_free,  mi_sq_realloc,  mi_sq_size,
                                                  mi_sq_roundup, mi_sq_init, mi_sq_shutdown, NULL};
            if (sqlite3_config(SQLITE_CONFIG_MALLOC, &m) != SQLITE_OK) die("SQLITE_CONFIG_MALLOC");
        } else if (c == C_HOSTMEM && HM_FAILED(hm_sqlite_install(NULL))) {
            die("hm_sqlite_install");
        }
        sqlite3_initialize();
        t0 = now_ns();
        h = run_sqlite();
    }
    double ns = now_ns() - t0;
    printf("RESULT %.0f %ld %" PRIu64 "\n", ns, vm_hwm_kb(), h);
    fflush(stdout);
    _exit(0); /* no teardown: it is not what is measured */
}

/* ---- the parent -------------------------------------------------------------------------------- */

typedef struct cell {
    double ns[MAXREPS], kb[MAXREPS];
    uint64_t sum;
    int n;
} cell;

static void run_child(int c, int w, cell *out)
{
    char *argv[] = {self_path, "--run", (char *)cnames[c], (char *)wnames[w], NULL};
    char buf[256];
    int status = bench_run_capture(argv, buf, sizeof buf);
    double ns, kb;
    uint64_t sum;
    char *p = strstr(buf, "RESULT ");
    if (!WIFEXITED(status) || WEXITSTATUS(status) || !p || sscanf(p, "RESULT %lf %lf %" SCNu64, &ns, &kb, &sum) != 3)
        die("%s/%s failed (status %d)", cnames[c], wnames[w], status);
    if (out->n && out->sum != sum) die("%s/%s: checksum %" PRIu64 " after %" PRIu64, cnames[c], wnames[w], sum, out->sum);
    out->sum = sum;
    out->ns[out->n] = ns;
    out->kb[out->n++] = kb;
}

int main(int argc, char **argv)
{
    if (argc == 4 && !strcmp(argv[1], "--run")) {
        for (int c = 0; c < NCONT; c++)
            for (int w = 0; w < NWORK; w++)
                if (!strcmp(argv[2], cnames[c]) && !strcmp(argv[3], wnames[w])) return child_main(c, w);
        die("--run: unknown contender or workload");
    }
    int reps = 5, only = -1;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--reps") && i + 1 < argc) reps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--only") && i + 1 < argc) {
            const char *w = argv[++i];
            only = !strcmp(w, "lua") ? W_LUA : !strcmp(w, "sqlite") ? W_SQLITE : -2;
        } else only = -2;
        if (only == -2 || reps < 1 || reps > MAXREPS) {
            fprintf(stderr, "usage: bench_hosted [--reps 1..%d] [--only lua|sqlite]\n", MAXREPS);
            return 2;
        }
    }
    bench_self_path();
    static cell cells[NWORK][NCONT];
    for (int r = 0; r < reps; r++)
        for (int w = 0; w < NWORK; w++) {
            if (only >= 0 && w != only) continue;
            for (int k = 0; k < NCONT; k++) run_child((k + r) % NCONT, w, &cells[w][(k + r) % NCONT]);
        }
    printf("bench_hosted: medians of %d rounds (contenders interleaved, each run a process of its own)\n", reps);
    printf("%-8s %-9s %10s %8s %12s %8s %s\n", "workload", "allocator", "time ms", "x mi", "peak RSS MiB", "x mi", "checksum");
    for (int w = 0; w < NWORK; w++) {
        if (only >= 0 && w != only) continue;
        double mt = median(cells[w][C_MIMALLOC].ns, reps), mk = median(cells[w][C_MIMALLOC].kb, reps);
        for (int c = 0; c < NCONT; c++) {
            double t = median(cells[w][c].ns, reps), k = median(cells[w][c].kb, reps);
            printf("%-8s %-9s %10.1f %8.3f %12.1f %8.3f %" PRIu64 "%s\n", wnames[w], cnames[c], t / 1e6, t / mt,
                   k / 1024.0, k / mk, cells[w][c].sum, cells[w][c].sum == cells[w][0].sum ? "" : " (differs!)");
        }
    }
    return 0;
}
