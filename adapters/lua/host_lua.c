/* host_lua.c — hostmem-host-lua, the helper of `hostmem host lua`: runs a Lua script file on a state
 * hosted by the tenant hm_host_main made (hostmem/lua.h), with the standard libraries, the script's
 * arguments in the global `arg` (arg[0] the script, as the lua command does) and as its `...`. The
 * script's error (a memory error is "not enough memory") goes to stderr and the status is 1. */
#include <stdio.h>

#include <lauxlib.h>
#include <lualib.h>

#include <hostmem/lua.h>

#include "host_main.h"

typedef struct job {
    const char *script;
    int argc;
    char **argv;
} job;

/* Everything that allocates runs here, under lua_pcall: opening the libraries may be refused too. */
static int pmain(lua_State *L)
{
    job *j = lua_touserdata(L, 1);
    luaL_openlibs(L);
    lua_createtable(L, j->argc, 0);
    for (int i = 0; i < j->argc; i++) {
        lua_pushstring(L, j->argv[i]);
        lua_rawseti(L, -2, i);
    }
    lua_setglobal(L, "arg");
    if (luaL_loadfile(L, j->script) != LUA_OK) return lua_error(L);
    luaL_checkstack(L, j->argc, "too many arguments to the script");
    for (int i = 1; i < j->argc; i++) lua_pushstring(L, j->argv[i]);
    lua_call(L, j->argc - 1, 0);
    return 0;
}

/* The error's text, as the lua command gives it: a string, its __tostring, or its type. (Lua calls no
 * handler for a memory error: its message stays "not enough memory".) */
static int msghandler(lua_State *L)
{
    if (lua_tostring(L, 1)) return 1;
    if (luaL_callmeta(L, 1, "__tostring") && lua_type(L, -1) == LUA_TSTRING) return 1;
    lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, 1));
    return 1;
}

static int run(hm_tenant *t, const char *script, int argc, char **argv, void *state)
{
    (void)state;
    lua_State *L;
    if (HM_FAILED(hm_lua_newstate(t, 0, &L))) {
        fprintf(stderr, "hostmem host lua: not enough memory (for an empty Lua state)\n");
        return 1;
    }
    job j = {script, argc, argv};
    lua_pushcfunction(L, msghandler); /* (none of these allocates: a new state's stack has room) */
    lua_pushcfunction(L, pmain);
    lua_pushlightuserdata(L, &j);
    int rc = 0;
    if (lua_pcall(L, 1, 0, 1) != LUA_OK) {
        const char *msg = lua_tostring(L, -1);
        fprintf(stderr, "hostmem host lua: %s\n", msg ? msg : "(error object is not a string)");
        lua_pop(L, 1);
        rc = 1;
    }
    fflush(stdout);
    hm_lua_close(L);
    return rc;
}

int main(int argc, char **argv)
{
    static const hm_host_runtime rt = {
        .name = "lua",
        .usage = "SCRIPT.lua [ARGS...]\n  (the script's arguments are in `arg` and `...`, as with the lua command)",
        .run = run,
    };
    return hm_host_main(&rt, NULL, argc, argv);
}
