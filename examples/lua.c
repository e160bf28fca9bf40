/* lua.c — embedding Lua on hostmem (hostmem/lua.h): a state under a 16 MiB budget runs a script that
 * wants more, gets Lua's own "not enough memory", and goes on to run the next one. */
#include <stdio.h>

#include <lauxlib.h>
#include <lualib.h>

#include <hostmem/lua.h>

static void run(lua_State *L, const char *code)
{
    if (luaL_dostring(L, code) != LUA_OK) {
        printf("error: %s\n", lua_tostring(L, -1));
        lua_pop(L, 1);
        hm_lua_collect(L); /* the failed work's memory goes back to the budget now */
    }
    hm_lua_poll(L); /* between calls: a collection if the budget ran Low */
}

int main(void)
{
    hm_lua_config c = {.name = "example", .options = "limit=16M,reserve.process=1M,notify.high=70",
                       .level = HM_LEVEL_TASK, .emergency_level = HM_LEVEL_PROCESS};
    lua_State *L;
    hm_status st = hm_lua_open(&c, &L);
    if (HM_FAILED(st)) {
        fprintf(stderr, "hm_lua_open: %s %s\n", hm_status_message(st), hm_last_detail());
        return 1;
    }
    luaL_openlibs(L);
    run(L, "local t = {} for i = 1, 1e8 do t[i] = ('x'):rep(64) .. i end"); /* error: not enough memory */
    run(L, "local s = 0 for i = 1, 1e6 do s = s + i end print('the state goes on:', s)");
    char report[1024];
    hm_tenant_report(hm_lua_tenant(L), HM_REPORT_TEXT, report, sizeof report);
    fputs(report, stdout);
    return HM_FAILED(hm_lua_close(L));
}
