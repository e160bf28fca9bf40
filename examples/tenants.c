/* tenants.c — three tenants under one parent budget: two Lua states and an SQLite database, each with
 * a limit of its own inside a parent of 24 MiB (nested budgets: their limits add up to more than the
 * parent's, which binds first). It prints every tenant's charge and the parent's while the first Lua
 * state grows until the parent refuses it: that state gets Lua's "not enough memory", the others go
 * on, and once it drops its table the parent has room again. */
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

static double parent_mib(hm_manager *m)
{
    hm_manager_stats s;
    return HM_SUCCEEDED(hm_manager_get_stats(m, &s)) ? (double)s.charge / (1024.0 * 1024.0) : -1.0;
}

static int open_lua(const char *name, const char *options, hm_manager *parent, lua_State **L)
{
    hm_lua_config c = {.name = name, .options = options, .parent = parent,
                       .level = HM_LEVEL_TASK, .emergency_level = HM_LEVEL_PROCESS};
    hm_status st = hm_lua_open(&c, L);
    if (HM_FAILED(st)) fprintf(stderr, "%s: %s %s\n", name, hm_status_message(st), hm_last_detail());
    else luaL_openlibs(*L);
    return HM_FAILED(st);
}

int main(void)
{
    hm_manager *parent;
    if (HM_FAILED(hm_manager_create("limit=24M,reserve.appdomain=0,reserve.process=1M", &parent))) return 1;
    hm_sqlite_config sc = {.name = "db", .options = "limit=8M", .parent = parent, .level = HM_LEVEL_TASK};
    lua_State *a, *b;
    sqlite3 *db;
    if (HM_FAILED(hm_sqlite_install(&sc)) || open_lua("lua-a", "limit=100%,reserve.process=1M", parent, &a) ||
        open_lua("lua-b", "limit=8M,reserve.process=1M", parent, &b))
        return 1;
    if (sqlite3_open(":memory:", &db) != SQLITE_OK) return 1;
    hm_sqlite_watch(db);
    sqlite3_exec(db, "CREATE TABLE log(step INTEGER, note TEXT)", NULL, NULL, NULL);
    luaL_dostring(a, "grow = {}");
    luaL_dostring(b, "cache = {}");
    printf("step  lua-a MiB  lua-b MiB  db MiB  parent MiB (limit 24)\n");
    for (int step = 1; step <= 100; step++) {
        /* a grows by a MiB-ish per step; b keeps a bounded cache; the database logs each step */
        int rc = luaL_dostring(a, "for i = 1, 4000 do grow[#grow + 1] = ('a'):rep(200) .. #grow end");
        luaL_dostring(b, "for i = 1, 2000 do cache[i % 5000] = ('b'):rep(100) .. i end");
        char sql[128];
        snprintf(sql, sizeof sql, "INSERT INTO log VALUES (%d, printf('%%.*c', 500, 'x'))", step);
        sqlite3_exec(db, sql, NULL, NULL, NULL);
        printf("%4d  %9.1f  %9.1f  %6.1f  %10.1f\n", step, mib(hm_lua_tenant(a)), mib(hm_lua_tenant(b)),
               mib(hm_sqlite_tenant()), parent_mib(parent));
        if (rc != LUA_OK) {
            hm_tenant_stats s;
            hm_tenant_get_stats(hm_lua_tenant(a), &s);
            printf("lua-a: %s (refused by the parent's budget %llu times); lua-b and db go on\n", lua_tostring(a, -1),
                   (unsigned long long)(s.refused_by_ancestor[0] + s.refused_by_ancestor[1] + s.refused_by_ancestor[2]));
            break;
        }
    }
    luaL_dostring(a, "grow = nil");
    hm_lua_collect(a);
    printf("after lua-a dropped its table: lua-a %.1f MiB, parent %.1f MiB\n", mib(hm_lua_tenant(a)), parent_mib(parent));
    int rc = luaL_dostring(b, "for i = 1, 20000 do cache[i] = ('b'):rep(100) .. i end");
    printf("lua-b grows now: %s, lua-b %.1f MiB\n", rc == LUA_OK ? "ok" : lua_tostring(b, -1), mib(hm_lua_tenant(b)));
    hm_lua_close(a);
    hm_lua_close(b);
    sqlite3_close(db);
    hm_sqlite_uninstall();
    return HM_FAILED(hm_manager_destroy(parent)); /* (after its tenants: a parent with live children stays) */
}
