/* hosted_lua.c — Lua 5.4 on a tenant (hostmem/lua.h): a workload gives the result it gives on Lua's
 * own allocator; a script past its budget gets "not enough memory" under pcall, its retry was made at
 * the emergency level, the state goes on and the charge comes back once the garbage is collected; with
 * the Low hook the same growing workload peaks lower than without; hm_lua_poll; bad arguments. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include <lauxlib.h>
#include <lualib.h>

#include <hostmem/lua.h>

#define KiB 1024u
#define MiB (1024u * 1024u)

/* Tables and strings, a third of them garbage; returns "count hash". */
static const char checksum_lua[] =
    "local n = ...\n"
    "local t, h = {}, 0\n"
    "for i = 1, n do\n"
    "  local s = string.format('%d:%s', i, string.rep(string.char(65 + i % 26), i % 50))\n"
    "  t[#t + 1] = {s = s, i = i, sub = {i * 2, s:upper()}}\n"
    "  if i % 3 == 0 then t[#t] = nil end\n"
    "  for k = 1, #s, 7 do h = (h * 31 + s:byte(k)) % 4294967296 end\n"
    "end\n"
    "local u = {}\n"
    "for _, v in ipairs(t) do u[v.s] = v.sub[1] end\n"
    "local c = 0\n"
    "for k, v in pairs(u) do c = c + v + #k end\n"
    "return string.format('%d %d %d', #t, h, c)\n";

/* Runs chunk with integer argument n under pcall; the result string (or the error) into out. */
static int run(lua_State *L, const char *chunk, long n, char *out, size_t cap)
{
    int rc = luaL_loadstring(L, chunk);
    if (rc == LUA_OK) {
        lua_pushinteger(L, n);
        rc = lua_pcall(L, 1, 1, 0);
    }
    const char *s = lua_tostring(L, -1);
    snprintf(out, cap, "%s", s ? s : "(nil)");
    lua_pop(L, 1);
    return rc;
}

static lua_State *open_state(const char *options, int hook_count)
{
    hm_lua_config c = {.name = "test", .options = options, .level = HM_LEVEL_TASK,
                       .emergency_level = HM_LEVEL_PROCESS, .hook_count = hook_count};
    lua_State *L = NULL;
    assert_int_equal(hm_lua_open(&c, &L), HM_OK);
    assert_non_null(L);
    assert_non_null(hm_lua_tenant(L));
    luaL_openlibs(L);
    return L;
}

static hm_tenant_stats stats(lua_State *L)
{
    hm_tenant_stats s;
    assert_int_equal(hm_tenant_get_stats(hm_lua_tenant(L), &s), HM_OK);
    return s;
}

static void test_same_result(void **state)
{
    (void)state;
    char want[128], got[128];
    lua_State *D = luaL_newstate(); /* Lua's own allocator (l_alloc: realloc/free) */
    luaL_openlibs(D);
    assert_int_equal(run(D, checksum_lua, 20000, want, sizeof want), LUA_OK);
    lua_close(D);
    lua_State *L = open_state("limit=64M", 0);
    assert_int_equal(run(L, checksum_lua, 20000, got, sizeof got), LUA_OK);
    assert_string_equal(got, want);
    hm_tenant_stats s = stats(L);
    assert_true(s.peak_charge > 1 * MiB); /* the work went through the tenant */
    assert_int_equal(s.refused[0] + s.refused[1] + s.refused[2], 0);
    assert_int_equal(s.bad_frees, 0);
    assert_int_equal(hm_lua_close(L), HM_OK);
}

static void test_refusal_and_recovery(void **state)
{
    (void)state;
    char want[128], got[128];
    lua_State *L = open_state("limit=12M,reserve.process=1M", 0);
    assert_int_equal(run(L, checksum_lua, 5000, want, sizeof want), LUA_OK);
    hm_lua_collect(L);
    hm_tenant_stats s0 = stats(L);
    /* a live set larger than the budget */
    static const char hog[] = "local t = {} for i = 1, ... do t[i] = {i, tostring(i) .. 'xxxxxxxxxxxx'} end return #t";
    assert_int_equal(run(L, hog, 10000000, got, sizeof got), LUA_ERRMEM);
    assert_string_equal(got, "not enough memory");
    hm_tenant_stats s1 = stats(L);
    assert_true(s1.refused[HM_LEVEL_TASK] >= 1);
    /* Lua's retry after its emergency collection was recognised and made at the emergency level */
    assert_true(s1.refused[HM_LEVEL_PROCESS] >= 1);
    assert_true(s1.peak_charge <= s1.limit);
    assert_true(s1.peak_charge > s1.limit - 2 * MiB);
    /* the failed work's memory collected: the charge is back to the baseline (the heap keeps no page
     * a collection emptied): within two 64 KiB heap pages, where blocks the work moved (the string
     * table, the stack) now sit */
    /* Lua halves its string table (grown by the failed work's strings) once per full collection, while
     * it is less than a quarter full: collect until the live bytes stop falling */
    hm_tenant_stats s2 = stats(L);
    for (int i = 0; i < 32; i++) {
        uint64_t before = s2.live_bytes;
        hm_lua_collect(L);
        s2 = stats(L);
        if (s2.live_bytes >= before) break;
    }
    assert_true(s2.charge <= s0.charge + 128 * KiB);
    assert_true(s2.live_bytes <= s0.live_bytes + 16 * KiB);
    assert_true(s2.collections >= 2);
    /* the same state runs the next script, with the same result */
    assert_int_equal(run(L, checksum_lua, 5000, got, sizeof got), LUA_OK);
    assert_string_equal(got, want);
    /* and an error that is no memory error stays what it is */
    assert_int_equal(run(L, "error('plain')", 0, got, sizeof got), LUA_ERRRUN);
    assert_non_null(strstr(got, "plain"));
    assert_int_equal(hm_lua_close(L), HM_OK);
}

/* A growing live set with ten times as much garbage, Lua's own collector lazy (pause 1000%): with the
 * hook, each Low at notify.high runs a full collection; without it, nothing but Lua's own pace and,
 * at the limit, its emergency collections. */
static const char grow_lua[] =
    "collectgarbage('incremental', 1000)\n"
    "local live = {}\n"
    "for i = 1, ... do\n"
    "  local g = string.rep('g', 1000) .. i\n"
    "  if i % 10 == 0 then live[#live + 1] = string.rep('l', 300) .. i end\n"
    "end\n"
    "return #live\n";

static hm_tenant_stats grow(int hook_count, char *out, size_t cap)
{
    lua_State *L = open_state("limit=24M,reserve.process=1M,notify.low=20,notify.high=40", hook_count);
    assert_int_equal(run(L, grow_lua, 60000, out, cap), LUA_OK);
    hm_tenant_stats s = stats(L);
    assert_int_equal(hm_lua_close(L), HM_OK);
    return s;
}

static void test_low_collects(void **state)
{
    (void)state;
    char a[64], b[64];
    hm_tenant_stats off = grow(-1, a, sizeof a), on = grow(0, b, sizeof b);
    assert_string_equal(a, b);
    assert_int_equal(off.collections, 0);
    assert_true(on.collections >= 1);
    assert_true(on.collected_bytes > 1 * MiB);
    print_message("peak charge: hook off %.1f MiB (low signals %llu), on %.1f MiB (%llu collections)\n",
                  off.peak_charge / 1048576.0, (unsigned long long)off.low_signals, on.peak_charge / 1048576.0,
                  (unsigned long long)on.collections);
    assert_true(on.peak_charge < off.peak_charge);
    /* the hook's collections kept the peak near notify.high (40% of 24 MiB), well under the limit */
    assert_true(on.peak_charge < on.limit * 3 / 4);
}

/* With no hook, the flag waits for the embedder: hm_lua_poll collects once per Low. */
static void test_poll(void **state)
{
    (void)state;
    lua_State *L = open_state("limit=16M,notify.low=10,notify.high=30", -1);
    assert_false(hm_lua_poll(L));
    char got[64];
    /* about 7 MiB of garbage with the collector stopped: past notify.high, short of the limit */
    assert_int_equal(run(L, "collectgarbage('stop') for i = 1, ... do local s = string.rep('x', 1000) .. i end return 1",
                         3000, got, sizeof got),
                     LUA_OK);
    hm_tenant *t = hm_lua_tenant(L);
    for (int i = 0; i < 2000 && !hm_tenant_low_pending(t); i++) nanosleep(&(struct timespec){0, 1000000}, NULL);
    assert_true(hm_tenant_low_pending(t));
    hm_tenant_stats s0 = stats(L);
    assert_true(hm_lua_poll(L));
    assert_false(hm_lua_poll(L)); /* the flag was taken */
    hm_tenant_stats s1 = stats(L);
    assert_int_equal(s1.collections, s0.collections + 1);
    assert_true(s1.collected_bytes >= 5 * MiB);
    assert_int_equal(s1.refused[0] + s1.refused[1] + s1.refused[2], 0);
    assert_true(s1.charge < s0.charge / 2);
    assert_int_equal(hm_lua_close(L), HM_OK);
}

static void test_bad_arguments(void **state)
{
    (void)state;
    lua_State *L = (lua_State *)1;
    assert_int_equal(hm_lua_open(NULL, NULL), HM_E_POINTER);
    hm_lua_config c = {.options = "limit=lots"};
    assert_int_equal(hm_lua_open(&c, &L), HM_E_INVALIDARG);
    assert_null(L);
    assert_non_null(strstr(hm_last_detail(), "limit"));
    c = (hm_lua_config){.level = HM_LEVEL_PROCESS, .emergency_level = HM_LEVEL_TASK};
    assert_int_equal(hm_lua_open(&c, &L), HM_E_INVALIDARG);
    assert_int_equal(hm_lua_newstate(NULL, 0, &L), HM_E_POINTER);
    assert_null(L);
    /* a state that is not ours: no tenant, close refused, poll and collect do nothing */
    lua_State *D = luaL_newstate();
    assert_null(hm_lua_tenant(D));
    assert_null(hm_lua_tenant(NULL));
    assert_int_equal(hm_lua_close(D), HM_E_POINTER);
    assert_int_equal(hm_lua_close(NULL), HM_E_POINTER);
    assert_false(hm_lua_poll(D));
    hm_lua_collect(D);
    lua_close(D);
    /* a budget too small for an empty state: HM_E_OUTOFMEMORY, and no tenant left behind */
    c = (hm_lua_config){.options = "limit=64K"};
    assert_int_equal(hm_lua_open(&c, &L), HM_E_OUTOFMEMORY);
    assert_null(L);
    /* NULL config: the defaults */
    assert_int_equal(hm_lua_open(NULL, &L), HM_OK);
    assert_string_equal(hm_tenant_name(hm_lua_tenant(L)), "lua");
    assert_int_equal(hm_tenant_emergency_level(hm_lua_tenant(L)), HM_LEVEL_PROCESS);
    assert_int_equal(hm_lua_close(L), HM_OK);
}

/* A state on a tenant the caller keeps: closing the state leaves the tenant, its pages trimmed. */
static void test_shared_tenant(void **state)
{
    (void)state;
    hm_tenant_config tc = {.name = "kept", .options = "limit=32M", .level = HM_LEVEL_TASK, .emergency_level = HM_LEVEL_APPDOMAIN};
    hm_tenant *t;
    assert_int_equal(hm_tenant_create(&tc, &t), HM_OK);
    hm_tenant_stats s0;
    assert_int_equal(hm_tenant_get_stats(t, &s0), HM_OK);
    for (int round = 0; round < 2; round++) {
        lua_State *L;
        assert_int_equal(hm_lua_newstate(t, -1, &L), HM_OK);
        assert_ptr_equal(hm_lua_tenant(L), t);
        luaL_openlibs(L);
        char got[128];
        assert_int_equal(run(L, checksum_lua, 3000, got, sizeof got), LUA_OK);
        assert_int_equal(hm_lua_close(L), HM_OK);
        hm_tenant_stats s;
        assert_int_equal(hm_tenant_get_stats(t, &s), HM_OK);
        assert_int_equal(s.live_bytes, 0);
        assert_true(s.charge <= s0.charge + 64 * KiB);
    }
    assert_int_equal(hm_tenant_destroy(t), HM_OK);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_same_result),   cmocka_unit_test(test_refusal_and_recovery),
        cmocka_unit_test(test_low_collects),  cmocka_unit_test(test_poll),
        cmocka_unit_test(test_bad_arguments), cmocka_unit_test(test_shared_tenant),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
