/* sqlite.c — SQLite on a hostmem tenant (hostmem/sqlite.h): the process's sqlite3_mem_methods, the
 * watched connections and what a Low does to them.
 *
 * State is process-wide, as SQLite's allocator is. g_lock guards the installed tenant and the watch
 * list; it is never held while waiting for a connection's mutex (only sqlite3_mutex_try under it),
 * because sqlite3_close holds that mutex when it calls the watch function's destructor, which takes
 * g_lock to unwatch. The watch list comes from libc: it must not count against the budget. */
#include <hostmem/sqlite.h>

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>

typedef struct watch {
    sqlite3 *db;
    bool pending; /* a Low asked for its memory and it was not released yet */
} watch;

static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;
static hm_tenant *g_t;      /* NULL: not installed. Read without g_lock by the allocator: set before
                             * SQLite can call it, cleared after sqlite3_shutdown */
static hm_level g_level;
static bool g_owns;
static sqlite3_mem_methods g_prev; /* SQLite's allocator before the install */
static watch *g_w;
static size_t g_n, g_cap;

static void *x_malloc(int n) { return n > 0 ? hm_tenant_alloc(g_t, (size_t)n, g_level) : NULL; }
static void x_free(void *p) { hm_tenant_free(g_t, p); }
static void *x_realloc(void *p, int n) { return n > 0 ? hm_tenant_realloc(g_t, p, (size_t)n, g_level) : NULL; }
static int x_size(void *p) { return (int)hm_tenant_usable_size(g_t, p); }
static int x_roundup(int n) { return (n + 15) & ~15; } /* (the heap's blocks are 16-byte multiples) */
static int x_init(void *app) { return (void)app, SQLITE_OK; }
static void x_shutdown(void *app) { (void)app; }

static const sqlite3_mem_methods methods = {x_malloc, x_free, x_realloc, x_size, x_roundup, x_init, x_shutdown, NULL};

/* Releases the memory of the pending connections it may touch now; under g_lock. from_poll: the
 * caller may use connections without a mutex. */
static int release_pending(bool from_poll)
{
    int n = 0;
    uint64_t token = 0;
    for (size_t i = 0; i < g_n; i++) {
        if (!g_w[i].pending) continue;
        sqlite3_mutex *m = sqlite3_db_mutex(g_w[i].db);
        if (m ? sqlite3_mutex_try(m) != SQLITE_OK : !from_poll) continue; /* busy, or not this thread's */
        if (!n++) token = hm_tenant_collect_begin(g_t);
        sqlite3_db_release_memory(g_w[i].db);
        if (m) sqlite3_mutex_leave(m);
        g_w[i].pending = false;
    }
    if (n) hm_tenant_collect_end(g_t, token);
    return n;
}

/* On the manager's notification thread, at each change to Low. */
static void on_low(hm_tenant *t, void *arg)
{
    (void)arg;
    pthread_mutex_lock(&g_lock);
    if (t == g_t) {
        for (size_t i = 0; i < g_n; i++) g_w[i].pending = true;
        release_pending(false);
    }
    pthread_mutex_unlock(&g_lock);
}

static hm_status install(hm_tenant *t, bool owns)
{
    pthread_mutex_lock(&g_lock);
    hm_status st = HM_E_HOST_INVALIDOPERATION;
    sqlite3_mem_methods prev;
    bool taken = g_t != NULL;
    if (!taken && sqlite3_config(SQLITE_CONFIG_GETMALLOC, &prev) == SQLITE_OK) {
        g_t = t;
        g_level = hm_tenant_level(t);
        if (sqlite3_config(SQLITE_CONFIG_MALLOC, &methods) == SQLITE_OK) {
            g_prev = prev;
            g_owns = owns;
            hm_tenant_on_low(t, on_low, NULL);
            st = HM_OK;
        } else {
            g_t = NULL;
        }
    }
    pthread_mutex_unlock(&g_lock);
    if (HM_FAILED(st))
        hm_set_last_detail("hm_sqlite_install: %s", taken ? "a tenant is already SQLite's allocator (hm_sqlite_uninstall first)"
                                                                   : "SQLite is already initialised (install before the first sqlite3_open or "
                                                                     "sqlite3_initialize, or after sqlite3_shutdown)");
    return st;
}

hm_status hm_sqlite_install_tenant(hm_tenant *t) { return t ? install(t, false) : HM_E_POINTER; }

hm_status hm_sqlite_install(const hm_sqlite_config *cfg)
{
    hm_sqlite_config d = {0};
    if (!cfg) cfg = &d;
    hm_tenant_config tc = {.name = cfg->name ? cfg->name : "sqlite", .options = cfg->options, .parent = cfg->parent,
                           .level = cfg->level, .emergency_level = cfg->level};
    hm_tenant *t;
    hm_status st = hm_tenant_create(&tc, &t);
    if (HM_FAILED(st)) return st;
    if (HM_FAILED(st = install(t, true))) hm_tenant_destroy(t);
    return st;
}

hm_status hm_sqlite_uninstall(void)
{
    pthread_mutex_lock(&g_lock);
    hm_tenant *t = g_t;
    bool owns = g_owns;
    if (!t || g_n) {
        pthread_mutex_unlock(&g_lock);
        hm_set_last_detail("hm_sqlite_uninstall: %s", !t ? "no tenant is installed"
                                                         : "watched connections are open (hm_sqlite_unwatch or close them first)");
        return HM_E_HOST_INVALIDOPERATION;
    }
    sqlite3_shutdown();
    hm_tenant_stats s;
    if (HM_FAILED(hm_tenant_get_stats(t, &s)) || s.live_bytes) { /* a connection is still open */
        pthread_mutex_unlock(&g_lock);
        hm_set_last_detail("hm_sqlite_uninstall: SQLite still holds %llu bytes of the tenant's (a connection or "
                           "statement is still open)", (unsigned long long)s.live_bytes);
        return HM_E_HOST_INVALIDOPERATION;
    }
    sqlite3_config(SQLITE_CONFIG_MALLOC, &g_prev); /* (cannot fail: SQLite is shut down) */
    hm_tenant_on_low(t, NULL, NULL);
    g_t = NULL;
    free(g_w);
    g_w = NULL;
    g_cap = 0;
    pthread_mutex_unlock(&g_lock);
    if (owns) return hm_tenant_destroy(t);
    hm_heap_trim(hm_tenant_heap(t));
    return HM_OK;
}

hm_tenant *hm_sqlite_tenant(void)
{
    pthread_mutex_lock(&g_lock);
    hm_tenant *t = g_t;
    pthread_mutex_unlock(&g_lock);
    return t;
}

static size_t find(sqlite3 *db)
{
    size_t i = 0;
    while (i < g_n && g_w[i].db != db) i++;
    return i;
}

hm_status hm_sqlite_unwatch(sqlite3 *db)
{
    if (!db) return HM_E_POINTER;
    pthread_mutex_lock(&g_lock);
    size_t i = find(db);
    hm_status st = i < g_n ? HM_OK : HM_E_INVALIDARG;
    if (i < g_n) g_w[i] = g_w[--g_n];
    pthread_mutex_unlock(&g_lock);
    return st;
}

/* hostmem_charge(): the tenant's charge; its destructor runs when the connection closes. */
static void charge_fn(sqlite3_context *ctx, int argc, sqlite3_value **argv)
{
    (void)argc, (void)argv;
    hm_tenant_stats s;
    hm_tenant *t = hm_sqlite_tenant();
    if (t && HM_SUCCEEDED(hm_tenant_get_stats(t, &s))) sqlite3_result_int64(ctx, (sqlite3_int64)s.charge);
    else sqlite3_result_null(ctx);
}
static void closed(void *db) { hm_sqlite_unwatch(db); }

hm_status hm_sqlite_watch(sqlite3 *db)
{
    if (!db) return HM_E_POINTER;
    pthread_mutex_lock(&g_lock);
    bool installed = g_t != NULL, watched = find(db) < g_n;
    pthread_mutex_unlock(&g_lock);
    if (!installed) {
        hm_set_last_detail("hm_sqlite_watch: no tenant is SQLite's allocator (hm_sqlite_install first)");
        return HM_E_HOST_INVALIDOPERATION;
    }
    if (watched) return HM_OK;
    /* (on failure SQLite calls closed(db) at once: nothing is watched yet) */
    if (sqlite3_create_function_v2(db, "hostmem_charge", 0, SQLITE_UTF8, db, charge_fn, NULL, NULL, closed) != SQLITE_OK)
        return HM_E_OUTOFMEMORY;
    pthread_mutex_lock(&g_lock);
    hm_status st = HM_OK;
    if (find(db) == g_n) {
        if (g_n == g_cap) {
            size_t cap = g_cap ? 2 * g_cap : 8;
            watch *w = realloc(g_w, cap * sizeof *w);
            if (w) g_w = w, g_cap = cap;
        }
        if (g_n < g_cap) g_w[g_n++] = (watch){db, false};
        else st = HM_E_OUTOFMEMORY;
    }
    pthread_mutex_unlock(&g_lock);
    return st;
}

int hm_sqlite_poll(void)
{
    pthread_mutex_lock(&g_lock);
    int n = g_t ? release_pending(true) : 0;
    pthread_mutex_unlock(&g_lock);
    return n;
}
