/* tenants.c — three tenants in one process: two Lua states and an SQLite database, each with a budget
 * of its own, printing every tenant's charge while the first Lua state grows until it runs out. The
 * others go on untouched: one tenant's exhaustion is its own.
 *
 * One parent budget for all three is one line once nested budgets (hm_manager_create_child) are in:
 * create `parent` with hm_manager_create("limit=40M", &parent) below; every config already passes
 * `.parent = parent`, and each tenant's limit then counts against the parent's too. */
#include <stdio.h>

#include <lauxlib.h>
#include <lualib.h>

#include <hostmem/lua.h>
#include <hostmem/sqlite.h>

static double mib(hm_tenant *t)
{
    hm_tenant_stats s;
    return HM_SUCCEEDED(hm_tenant_get_stats(t, &s)) ? (double)s.charge / (1024.0 * 1024.0) : -1.0;
}

static int open_lua(const char *name, hm_manager *parent, lua_State **L)
{
    hm_lua_config c = {.name = name, .options = "limit=16M,reserve.process=1M", .parent = parent,
                       .level = HM_LEVEL_TASK, .emergency_level = HM_LEVEL_PROCESS};
    hm_status st = hm_lua_open(&c, L);
    if (HM_FAILED(st)) fprintf(stderr, "%s: %s %s\n", name, hm_status_message(st), hm_last_detail());
    else luaL_openlibs(*L);
    return HM_FAILED(st);
}

int main(void)
{
    hm_manager *parent = NULL; /* nested budgets: hm_manager_create("limit=40M", &parent) */
    hm_sqlite_config sc = {.name = "db", .options = "limit=8M", .parent = parent, .level = HM_LEVEL_TASK};
    lua_State *a, *b;
    sqlite3 *db;
    if (HM_FAILED(hm_sqlite_install(&sc)) || open_lua("lua-a", parent, &a) || open_lua("lua-b", parent, &b)) return 1;
    if (sqlite3_open(":memory:", &db) != SQLITE_OK) return 1;
    hm_sqlite_watch(db);
    sqlite3_exec(db, "CREATE TABLE log(step INTEGER, note TEXT)", NULL, NULL, NULL);
    luaL_dostring(a, "grow = {}");
    luaL_dostring(b, "cache = {}");
    printf("step  lua-a MiB  lua-b MiB  db MiB\n");
    for (int step = 1; step <= 100; step++) {
        /* a grows by a MiB-ish per step; b keeps a bounded cache; the database logs each step */
        int rc = luaL_dostring(a, "for i = 1, 4000 do grow[#grow + 1] = ('a'):rep(200) .. #grow end");
        luaL_dostring(b, "for i = 1, 2000 do cache[i % 5000] = ('b'):rep(100) .. i end");
        char sql[128];
        snprintf(sql, sizeof sql, "INSERT INTO log VALUES (%d, printf('%%.*c', 500, 'x'))", step);
        sqlite3_exec(db, sql, NULL, NULL, NULL);
        printf("%4d  %9.1f  %9.1f  %6.1f\n", step, mib(hm_lua_tenant(a)), mib(hm_lua_tenant(b)), mib(hm_sqlite_tenant()));
        if (rc != LUA_OK) {
            printf("lua-a: %s; lua-b and db go on\n", lua_tostring(a, -1));
            break;
        }
    }
    luaL_dostring(a, "grow = nil");
    hm_lua_collect(a);
    printf("after lua-a dropped its table: lua-a %.1f MiB\n", mib(hm_lua_tenant(a)));
    hm_lua_close(a);
    hm_lua_close(b);
    sqlite3_close(db);
    hm_sqlite_uninstall();
    return 0;
}
