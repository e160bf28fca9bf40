/* lua.h — Lua 5.4 hosted by hostmem: a lua_State whose every allocation comes from a tenant
 * (hostmem/tenant.h). Library hostmem_lua (adapters/lua/; libhostmem_lua.a over libhostmem.a), linked
 * only by programs that want it, so its functions are no HM_API of libhostmem; include <lua.h> from
 * Lua 5.4 (pkg-config lua5.4).
 *
 *   lua_State *L;
 *   hm_lua_config c = {.name = "script", .options = "limit=64M,notify.high=80,reserve.process=1M",
 *                      .level = HM_LEVEL_TASK, .emergency_level = HM_LEVEL_PROCESS};
 *   if (HM_FAILED(hm_lua_open(&c, &L))) ...;   // luaL_openlibs(L), run code under lua_pcall
 *   hm_lua_close(L);                            // closes the state, then destroys the tenant
 *
 * Allocation. The state's lua_Alloc asks the tenant's heap at `level`. When it returns NULL, Lua
 * (lmem.c) runs an emergency full collection and calls the allocator again with the same block and
 * sizes; the adapter recognises that retry (the same (block, osize, nsize) as the refused request,
 * with only frees in between) and makes it at `emergency_level`, so that the reserves between the two
 * levels are there for the runtime's last try. If the retry is refused too, Lua raises LUA_ERRMEM
 * ("not enough memory"), which lua_pcall catches: the state stays usable, and once the failed work's
 * objects are collected the tenant's charge is back where it was. Shrinks never fail (Lua counts on it).
 *
 * Threads and collections. A lua_State is single-threaded and Lua forbids a collection from inside its
 * allocator (the collector may be running) or from another thread. So when the tenant's manager turns
 * Low (its budget's load reached notify.high, a request was refused, or the system is short), the
 * manager's notification thread only raises the tenant's flag; the state's own thread acts on it:
 *   - a count hook (lua_sethook, LUA_MASKCOUNT, every hook_count VM instructions) that takes the flag
 *     and runs a full collection, so that a long-running script gives memory back while it runs;
 *   - hm_lua_poll(L), for the embedder to call between calls into Lua (or when it set no hook).
 * Each collection is bracketed by hm_tenant_collect_begin/end: the tenant's report counts it and what
 * it gave back, and the heap's emptied pages return to the budget at once. The flag is the tenant's:
 * run one state per tenant if it should collect on Low (two states on one tenant share one flag). */
#ifndef HOSTMEM_LUA_H
#define HOSTMEM_LUA_H

#include <stdbool.h>

#include <lua.h>

#include <hostmem/tenant.h>

#ifdef __cplusplus
extern "C" {
#endif

#define HM_LUA_HOOK_DEFAULT 1000 /* VM instructions between two looks at the Low flag */

typedef struct hm_lua_config {
    const char *name;         /* the tenant's name in reports; NULL: "lua" */
    const char *options;      /* the tenant manager's options (HOSTMEM_OPTIONS syntax); NULL: none */
    hm_manager *parent;       /* NULL: a budget of its own; else a child budget inside parent (nested) */
    hm_level level;           /* the level of Lua's ordinary requests */
    hm_level emergency_level; /* the level of the retry after Lua's emergency collection (>= level) */
    int hook_count;           /* 0: HM_LUA_HOOK_DEFAULT; > 0: that many instructions; < 0: no hook
                               * (the embedder calls hm_lua_poll, and may set hooks of its own) */
} hm_lua_config;

/* A new state on a new tenant. cfg NULL: name "lua", no options, task level, emergency at process
 * level, the default hook. Statuses: HM_E_POINTER (L NULL), hm_tenant_create's (HM_E_INVALIDARG for a
 * bad option or level, hm_last_detail() naming it; with a parent, hm_manager_create_child's),
 * HM_E_OUTOFMEMORY when the budget cannot hold even an empty state (the tenant is destroyed
 * again). The standard libraries are not opened (luaL_openlibs(L) if wanted). */
hm_status hm_lua_open(const hm_lua_config *cfg, lua_State **L);
/* A new state on an existing tenant t, which the caller keeps and destroys after closing the state
 * (hm_lua_close leaves it); the levels are the tenant's. hook_count as in hm_lua_config. Statuses:
 * HM_E_POINTER (t or L NULL), HM_E_OUTOFMEMORY (as above). */
hm_status hm_lua_newstate(hm_tenant *t, int hook_count, lua_State **L);
/* Closes a state made by hm_lua_open or hm_lua_newstate, and destroys its tenant if hm_lua_open made
 * it. HM_E_POINTER: L is NULL or not such a state (nothing is done); else the tenant's destroy status. */
hm_status hm_lua_close(lua_State *L);
/* The tenant of a state made here; NULL for any other state (or NULL). */
hm_tenant *hm_lua_tenant(lua_State *L);

/* From the state's own thread, never inside the allocator or a finaliser: if the tenant's Low flag is
 * up, takes it and runs hm_lua_collect; returns whether it collected. */
bool hm_lua_poll(lua_State *L);
/* A full collection now (lua_gc LUA_GCCOLLECT), accounted in the tenant's report, the heap trimmed. */
void hm_lua_collect(lua_State *L);

#ifdef __cplusplus
}
#endif
#endif
