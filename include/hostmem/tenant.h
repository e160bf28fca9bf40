/* tenant.h — a runtime hosted by hostmem: the layer under the Lua, SQLite and CPython adapters
 * (hostmem/lua.h, hostmem/sqlite.h, hostmem/python.h), usable for any runtime with an allocator hook.
 *
 * A tenant is a manager of its own (a child of a parent manager when one is given: nested budgets,
 * hostmem.h) and one thread-safe heap of it through which every allocation of the runtime goes, at the
 * level the embedder chose for ordinary requests or, on the runtime's own emergency paths, at a higher
 * one. A refusal is the runtime's out-of-memory (the allocator hook returns NULL) and is counted by
 * level. When the manager's memory state turns Low (its own budget, an ancestor's, or the system's),
 * the tenant raises a flag that the runtime's own thread takes (hm_tenant_take_low) to collect at a
 * point where the runtime allows it, and calls an optional callback on the manager's notification
 * thread for runtimes that may be asked from another thread. The adapter brackets each collection it
 * runs with hm_tenant_collect_begin/end, so that the report says what collections gave back.
 *
 * Everything here is thread-safe; the tenant's own record is not taken from any heap. */
#ifndef HOSTMEM_TENANT_H
#define HOSTMEM_TENANT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <hostmem/hostmem.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct hm_tenant hm_tenant;

typedef struct hm_tenant_config {
    const char *name;          /* for reports ("lua", "db"); copied, at most 31 bytes kept; NULL: "tenant" */
    const char *options;       /* the manager's options (hm_manager_create); NULL: HOSTMEM_OPTIONS alone */
    hm_manager *parent;        /* NULL: a manager of its own; else a child of parent (hm_manager_create_child) */
    hm_level level;            /* the level of the runtime's ordinary requests */
    hm_level emergency_level;  /* the level of its emergency paths; at least `level` */
} hm_tenant_config;

/* A new tenant. Bad options or levels: HM_E_INVALIDARG with hm_last_detail() naming what is wrong;
 * nothing is created then. */
HM_API hm_status hm_tenant_create(const hm_tenant_config *cfg, hm_tenant **out);
/* Destroys the heap (every block the runtime still holds goes) and the manager. Call it after the
 * runtime was closed. */
HM_API hm_status hm_tenant_destroy(hm_tenant *t);
HM_API hm_manager *hm_tenant_manager(hm_tenant *t);
HM_API hm_heap *hm_tenant_heap(hm_tenant *t);
HM_API const char *hm_tenant_name(hm_tenant *t);

/* The allocator hook's calls: NULL when the budget refuses (counted at `level`, and the manager's
 * state turns Low). hm_tenant_realloc(t, NULL, n) allocates; size 0 frees and returns NULL; a shrink
 * never fails (if the block cannot move to a smaller one, it stays where it is); on failure p is
 * untouched. hm_tenant_free(t, NULL) does nothing. A pointer that is no live block of the tenant's
 * heap is refused by free and realloc (counted as a bad free; realloc returns NULL) instead of
 * corrupting anything. A NULL tenant or a level that is not one gives NULL (hm_last_detail says
 * which), never counted as a refusal; every call here takes a NULL tenant without harm. */
HM_API void *hm_tenant_alloc(hm_tenant *t, size_t size, hm_level level);
HM_API void *hm_tenant_realloc(hm_tenant *t, void *p, size_t size, hm_level level);
HM_API void hm_tenant_free(hm_tenant *t, void *p);
HM_API size_t hm_tenant_usable_size(hm_tenant *t, const void *p);
HM_API hm_level hm_tenant_level(hm_tenant *t);
HM_API hm_level hm_tenant_emergency_level(hm_tenant *t);

/* Low signalling. The flag is set on each change of the manager's state to Low; low_pending reads it
 * (one relaxed load: cheap enough for a runtime's hook or an allocator), take_low reads and clears
 * it. on_low(t, fn, arg) also calls fn(t, arg) on the manager's notification thread at each change to
 * Low (one callback per tenant; NULL removes it). */
HM_API bool hm_tenant_low_pending(hm_tenant *t);
HM_API bool hm_tenant_take_low(hm_tenant *t);
HM_API hm_status hm_tenant_on_low(hm_tenant *t, void (*fn)(hm_tenant *t, void *arg), void *arg);

/* A collection the adapter runs: begin returns a token (the heap's live bytes now), end records one
 * collection, the live bytes it gave back, and trims the heap so that the charge falls too. */
HM_API uint64_t hm_tenant_collect_begin(hm_tenant *t);
HM_API void hm_tenant_collect_end(hm_tenant *t, uint64_t token);

typedef struct hm_tenant_stats {
    uint64_t limit;             /* the manager's limit */
    uint64_t charge, peak_charge;
    uint64_t live_bytes;        /* bytes of the runtime's live blocks (block sizes) */
    uint64_t refused[3];        /* allocations refused by the budget, by level */
    uint64_t bad_frees;         /* frees and reallocs of pointers that were no live block */
    uint64_t low_signals;       /* changes of the manager's state to Low */
    uint64_t collections;       /* collections the adapter ran (collect_begin/end pairs) */
    uint64_t collected_bytes;   /* live bytes they gave back, summed */
    uint64_t refused_by_ancestor[3]; /* of the manager's budget refusals, by level, those an enclosing
                                        manager's budget made (a tenant with a parent) */
} hm_tenant_stats;
HM_API hm_status hm_tenant_get_stats(hm_tenant *t, hm_tenant_stats *out);

/* The tenant's report (stats above, and the manager's refusals and state), as text for people or one
 * JSON object; writes at most cap bytes into buf, NUL-terminated when cap > 0, and returns the length
 * the whole report needs, as snprintf does. */
HM_API size_t hm_tenant_report(hm_tenant *t, hm_report_format format, char *buf, size_t cap);

#ifdef __cplusplus
}
#endif
#endif
