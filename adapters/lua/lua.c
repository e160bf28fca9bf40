/* lua.c — Lua 5.4 on a hostmem tenant (hostmem/lua.h): the state's lua_Alloc, the retry after Lua's
 * emergency collection at the emergency level, and the collections the Low flag asks for, run on the
 * state's own thread (count hook or hm_lua_poll).
 *
 * The state's record (struct hm_lua) is the lua_Alloc's ud: hm_lua_tenant finds it with lua_getallocf,
 * so nothing is kept in the state's registry. It comes from libc, not from the tenant: it must outlive
 * the state's last free and must not count against the budget it hosts. */
#include <hostmem/lua.h>

#include <stdint.h>
#include <stdlib.h>

typedef struct hm_lua {
    hm_tenant *t;
    bool owns_tenant;
    /* The request refused last (nsize > 0), until the next request that is not a free: Lua's retry after
     * its emergency collection repeats it exactly, and the collection in between only frees. */
    bool armed;
    void *r_ptr;
    size_t r_osize, r_nsize;
} hm_lua;

static void *l_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
    hm_lua *s = ud;
    if (nsize == 0) {
        hm_tenant_free(s->t, ptr);
        return NULL;
    }
    hm_level level = hm_tenant_level(s->t);
    if (s->armed) {
        s->armed = false;
        if (ptr == s->r_ptr && osize == s->r_osize && nsize == s->r_nsize) level = hm_tenant_emergency_level(s->t);
    }
    /* (when ptr is NULL, osize is the kind of object, not a size) */
    void *q = ptr ? hm_tenant_realloc(s->t, ptr, nsize, level) : hm_tenant_alloc(s->t, nsize, level);
    if (!q) {
        s->armed = true;
        s->r_ptr = ptr;
        s->r_osize = osize;
        s->r_nsize = nsize;
    }
    return q;
}

static void collect(lua_State *L, hm_tenant *t)
{
    uint64_t token = hm_tenant_collect_begin(t);
    lua_gc(L, LUA_GCCOLLECT); /* (-1 and nothing done inside a finaliser: Lua 5.4.4 stops the GC there) */
    hm_tenant_collect_end(t, token);
}

static void hook(lua_State *L, lua_Debug *ar)
{
    (void)ar;
    hm_tenant *t = hm_lua_tenant(L);
    if (t && hm_tenant_take_low(t)) collect(L, t);
}

static hm_status newstate(hm_lua *s, int hook_count, lua_State **L)
{
    lua_State *st = lua_newstate(l_alloc, s);
    if (!st) {
        hm_set_last_detail("lua_newstate: the tenant's budget cannot hold an empty Lua state");
        return HM_E_OUTOFMEMORY;
    }
    if (hook_count >= 0) lua_sethook(st, hook, LUA_MASKCOUNT, hook_count ? hook_count : HM_LUA_HOOK_DEFAULT);
    *L = st;
    return HM_OK;
}

hm_status hm_lua_newstate(hm_tenant *t, int hook_count, lua_State **L)
{
    if (!L) return HM_E_POINTER;
    *L = NULL;
    if (!t) return HM_E_POINTER;
    hm_lua *s = calloc(1, sizeof *s);
    if (!s) return HM_E_OUTOFMEMORY;
    s->t = t;
    hm_status st = newstate(s, hook_count, L);
    if (HM_FAILED(st)) free(s);
    return st;
}

hm_status hm_lua_open(const hm_lua_config *cfg, lua_State **L)
{
    if (!L) return HM_E_POINTER;
    *L = NULL;
    hm_lua_config d = {.level = HM_LEVEL_TASK, .emergency_level = HM_LEVEL_PROCESS};
    if (!cfg) cfg = &d;
    hm_tenant_config tc = {.name = cfg->name ? cfg->name : "lua", .options = cfg->options, .parent = cfg->parent,
                           .level = cfg->level, .emergency_level = cfg->emergency_level};
    hm_tenant *t;
    hm_status st = hm_tenant_create(&tc, &t);
    if (HM_FAILED(st)) return st;
    hm_lua *s = calloc(1, sizeof *s);
    if (!s) {
        hm_tenant_destroy(t);
        return HM_E_OUTOFMEMORY;
    }
    s->t = t;
    s->owns_tenant = true;
    if (HM_FAILED(st = newstate(s, cfg->hook_count, L))) {
        free(s);
        hm_tenant_destroy(t);
    }
    return st;
}

static hm_lua *record(lua_State *L)
{
    void *ud = NULL;
    return L && lua_getallocf(L, &ud) == l_alloc ? ud : NULL;
}

hm_tenant *hm_lua_tenant(lua_State *L)
{
    hm_lua *s = record(L);
    return s ? s->t : NULL;
}

hm_status hm_lua_close(lua_State *L)
{
    hm_lua *s = record(L);
    if (!s) return HM_E_POINTER;
    lua_close(L);
    hm_status st = HM_OK;
    if (s->owns_tenant) st = hm_tenant_destroy(s->t);
    else hm_heap_trim(hm_tenant_heap(s->t)); /* the tenant goes on: the state's pages go back to its budget now */
    free(s);
    return st;
}

bool hm_lua_poll(lua_State *L)
{
    hm_tenant *t = hm_lua_tenant(L);
    if (!t || !hm_tenant_take_low(t)) return false;
    collect(L, t);
    return true;
}

void hm_lua_collect(lua_State *L)
{
    hm_tenant *t = hm_lua_tenant(L);
    if (t) collect(L, t);
}
