/* sqlite.h — SQLite 3 hosted by hostmem: every allocation of the process's SQLite from a tenant
 * (hostmem/tenant.h). Library hostmem_sqlite (adapters/sqlite/; libhostmem_sqlite.a over libhostmem.a),
 * linked only by programs that want it, so its functions are no HM_API of libhostmem; include
 * <sqlite3.h> (pkg-config sqlite3).
 *
 *   hm_sqlite_config c = {.options = "limit=64M,notify.high=80", .level = HM_LEVEL_TASK};
 *   if (HM_FAILED(hm_sqlite_install(&c))) ...;  // before sqlite3_initialize / the first sqlite3_open
 *   sqlite3_open(":memory:", &db); hm_sqlite_watch(db); ... sqlite3_close(db);
 *   hm_sqlite_uninstall();                       // sqlite3_shutdown, SQLite's allocator back, tenant gone
 *
 * Allocation. SQLite's allocator (SQLITE_CONFIG_MALLOC, sqlite3_mem_methods) is process-wide and can
 * only be set while SQLite is not initialised: hm_sqlite_install does it, so it must come before any
 * other use of SQLite in the process (or after sqlite3_shutdown). Every request is made at the
 * tenant's level: SQLite has no emergency path of its own. A refusal is SQLITE_NOMEM ("out of
 * memory") from the statement that needed the memory; SQLite handles it everywhere: the transaction
 * is rolled back or the statement fails, the database stays intact and the connection usable.
 *
 * Giving memory back. Debian's SQLite is built without SQLITE_ENABLE_MEMORY_MANAGEMENT, so
 * sqlite3_release_memory does nothing; sqlite3_db_release_memory frees the unused pages of one
 * connection's page cache. The adapter does it for the connections it watches (hm_sqlite_watch),
 * when the tenant's manager turns Low:
 *   - on the manager's notification thread, for each connection whose mutex it gets with
 *     sqlite3_mutex_try: in SQLite's serialized mode (the default; sqlite3_db_mutex is not NULL) a
 *     connection may be used from any thread under its mutex. It never waits for that mutex: a
 *     connection in the middle of a statement has its pages pinned (little to give), and waiting would
 *     hold up the notification thread (and every tenant's notifications) behind a long query, or
 *     deadlock with a statement waiting for memory;
 *   - the connections it could not lock, and those without a mutex (SQLITE_OPEN_NOMUTEX, single- or
 *     multi-thread mode), stay pending until hm_sqlite_poll(), which the embedder calls between
 *     statements from a thread that may use them.
 * Each pass is bracketed by hm_tenant_collect_begin/end (counted in the tenant's report; the heap's
 * emptied pages go back to the budget at once). A watched connection is unwatched by itself when it
 * closes (hm_sqlite_watch registers the SQL function hostmem_charge(), the tenant's charge in bytes,
 * whose destructor runs at close). */
#ifndef HOSTMEM_SQLITE_H
#define HOSTMEM_SQLITE_H

#include <sqlite3.h>

#include <hostmem/tenant.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct hm_sqlite_config {
    const char *name;    /* the tenant's name in reports; NULL: "sqlite" */
    const char *options; /* the tenant manager's options (HOSTMEM_OPTIONS syntax); NULL: none */
    hm_manager *parent;  /* NULL: a budget of its own; else a child budget inside parent (nested) */
    hm_level level;      /* the level of every SQLite request */
} hm_sqlite_config;

/* Creates a tenant and makes it SQLite's allocator (cfg NULL: name "sqlite", no options, task level).
 * Statuses: hm_tenant_create's (HM_E_INVALIDARG for a bad option or level, hm_last_detail() naming it;
 * a parent's, hm_manager_create_child's); HM_E_HOST_INVALIDOPERATION when SQLite is
 * already initialised (sqlite3_config said SQLITE_MISUSE: install before the first sqlite3_open, or
 * after sqlite3_shutdown) or an adapter is already installed. On failure nothing changed. */
hm_status hm_sqlite_install(const hm_sqlite_config *cfg);
/* The same on an existing tenant t (its level), which the caller keeps and destroys after
 * hm_sqlite_uninstall; until then the adapter owns t's on_low callback (hm_tenant_on_low).
 * HM_E_POINTER: t is NULL. */
hm_status hm_sqlite_install_tenant(hm_tenant *t);
/* Shuts SQLite down (sqlite3_shutdown), puts back the allocator it had before the install, and
 * destroys the tenant if hm_sqlite_install made it. Every connection must be closed first.
 * HM_E_HOST_INVALIDOPERATION: nothing installed, a watched connection is still open, or SQLite still
 * held memory after its shutdown (a connection left open: the adapter stays installed). */
hm_status hm_sqlite_uninstall(void);
/* The installed tenant, or NULL. */
hm_tenant *hm_sqlite_tenant(void);

/* Watch db: release its cache's memory when the tenant turns Low (above). Watching a watched
 * connection again is HM_OK. HM_E_POINTER: db NULL; HM_E_HOST_INVALIDOPERATION: nothing installed;
 * HM_E_OUTOFMEMORY: no memory for the watch (the budget refused registering hostmem_charge()). */
hm_status hm_sqlite_watch(sqlite3 *db);
/* Stop watching db (closing it does this too). HM_E_POINTER: db NULL; HM_E_INVALIDARG: not watched. */
hm_status hm_sqlite_unwatch(sqlite3 *db);
/* From a thread that may use the watched connections, between statements: releases the memory of the
 * connections a Low left pending. Returns how many it released (0 when none was pending). */
int hm_sqlite_poll(void);

#ifdef __cplusplus
}
#endif
#endif
