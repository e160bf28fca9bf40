/* python.h — CPython 3.11 hosted by hostmem: every byte the interpreter allocates is charged to one
 * tenant (hostmem/tenant.h), a refusal is Python's MemoryError, and a Low memory state makes the
 * interpreter collect. Link hostmem_python (and libpython); libhostmem itself never needs CPython.
 *
 * Where each allocation goes. CPython's hooks are process-wide, so hm_python_install sets them once,
 * before Py_Initialize:
 *   - RAW domain (PyMem_RawMalloc, called with or without the GIL): the tenant's heap, which is
 *     thread-safe, at the ordinary level;
 *   - MEM and OBJ domains: kept on pymalloc, CPython's small-object allocator. Requests of at most
 *     512 bytes come from pymalloc's arenas, and the arena allocator (PyObject_SetArenaAllocator) is
 *     hostmem's: each arena (1 MiB in 3.11; the frames' data-stack chunks come through it too) is a
 *     hm_virtual_alloc_level(MEM_RESERVE|MEM_COMMIT) of the tenant's manager at the ordinary level,
 *     given back with hm_virtual_free(MEM_RELEASE) when pymalloc empties it: at once, or, for up to
 *     64 arenas, after 100 ms unless pymalloc takes it again first (kept committed and charged, so
 *     that a program that empties and refills arenas does not pay the kernel's page faults each
 *     time, as mimalloc keeps its pages). A refusal, a collection on Low and hm_python_trim give the
 *     kept arenas back at once: they never cause a MemoryError. Larger requests,
 *     and small ones when no arena can be had, pymalloc passes to the RAW domain: the tenant's heap.
 *     So every allocation is charged, and pymalloc's speed is kept for small objects. Where pymalloc
 *     is not in use (PYTHONMALLOC=malloc) MEM and OBJ go to the tenant's heap directly. Debug hooks
 *     (PYTHONMALLOC=pymalloc_debug, malloc_debug) are refused: they would wrap an uncharged malloc.
 *   - A refusal makes the hook return NULL, which CPython raises as MemoryError.
 *
 * Room to unwind. Raising MemoryError and unwinding allocate (the traceback, frames): CPython has
 * known crash sites when those fail (cpython issue 151763). After a RAW request was refused at the
 * ordinary level, the RAW requests of at most 512 bytes refused at that level are retried at the
 * tenant's emergency level, for at most 64 KiB in all (the unwind window); the window closes when an
 * arena is admitted at the ordinary level again. While CPython starts (until Py_IsInitialized) and
 * while it is finalized, every request refused at the ordinary level is retried at the emergency
 * level: CPython treats a refusal there as a fatal error (it aborts; its MemoryError does not exist
 * yet), so a budget too small for the interpreter to start still aborts the process (CPython 3.11
 * here needs about 5 MiB to start; `hostmem host python` turns that abort into a message and status
 * 1, a program embedding CPython gets CPython's own fatal error). Give the tenant
 * a reserve between the two levels (reserve.process with level task and emergency level process,
 * say) for the window and the start to use.
 *
 * Low, and which thread does what. On each change of the tenant's manager to Low, the manager's
 * notification thread only raises a flag of the adapter. The next request CPython makes through the
 * hooks (an arena, or a RAW request: on whichever thread makes it) sees the flag and queues a
 * collection with Py_AddPendingCall; the main thread runs it at its next bytecode boundary, holding
 * the GIL: a full collection (PyGC_Collect, even under gc.disable(), which only stops the automatic
 * ones; a full collection also empties CPython's free lists), after which the arenas pymalloc
 * emptied and the kept ones go back, and the tenant's heap is trimmed (hm_tenant_collect_begin/end:
 * the report counts the collection, and what it gave back counts both the heap's live bytes and the
 * arenas released).
 * Why not queue from the notification thread: in 3.11, Py_AddPendingCall from a thread other than the
 * main one does not set the interpreter's eval breaker (the main thread would see the call only at
 * its next GIL switch, never in a single-threaded program), and a call queued while the interpreter
 * is being finalized touches freed state. A program that allocates nothing does not grow, so the
 * flag waits for its next request; a main thread blocked in C code collects when it comes back. With
 * no_collect the tenant's Low flag is still raised (hm_tenant_take_low) for an embedder that
 * collects at points of its own.
 *
 * Lifetime: hm_python_install, then Py_InitializeFromConfig (or Py_Initialize), the embedder's work,
 * then hm_python_finalize (Py_FinalizeEx, after removing the Low callback; calling Py_FinalizeEx
 * directly is safe too). The tenant is kept, never destroyed by the adapter: CPython still holds
 * blocks after finalization (its runtime state, objects leaked at exit), and a thread CPython started
 * may still be running when Py_FinalizeEx returns (a daemon thread, or one in its last C steps,
 * reading its thread state), so its memory must stay mapped until the process exits, as CPython's
 * memory does on its default allocator. hm_python_uninstall closes the hooks (every later request is
 * refused, every free ignored) for a process that goes on without CPython; a tenant given in the
 * config may be destroyed by its owner after that, once no thread CPython started can run. One
 * install per process.
 *
 * Known fragilities of CPython 3.11 under exhaustion, which no budget policy removes: a MemoryError
 * inside threading.Thread's bootstrap (a thread started while others hold the budget) can leave
 * Thread.start() waiting for ever; a refusal during start-up, even at the emergency level, aborts
 * (above). */
#ifndef HOSTMEM_PYTHON_H
#define HOSTMEM_PYTHON_H

#include <stdbool.h>
#include <stdint.h>

#include <hostmem/tenant.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct hm_python_config {
    hm_tenant *tenant;        /* host CPython in this tenant (its levels are used; see Lifetime for when
                                 its owner may destroy it); NULL: a tenant made from the fields below */
    const char *name;         /* the tenant's name; NULL: "python" */
    const char *options;      /* its manager's options (limit=64M,reserve.process=4M,notify.high=80...) */
    hm_manager *parent;       /* a parent manager (nested budgets), or NULL */
    hm_level level;           /* the level of CPython's requests */
    hm_level emergency_level; /* the unwind window's level: at least `level` */
    bool no_collect;          /* true: Low asks for no collection (the tenant's Low flag is still raised) */
} hm_python_config;

/* Installs the hooks. Call it before Py_Initialize; it pre-initializes CPython with the Python
 * configuration (PyPreConfig_InitPythonConfig) unless the embedder called Py_PreInitialize already.
 * Errors: HM_E_POINTER (cfg NULL); HM_E_HOST_INVALIDOPERATION (called twice, or CPython is
 * initialized already); HM_E_INVALIDARG (bad options or levels, or debug hooks on CPython's
 * allocators: hm_last_detail() says which); HM_E_FAIL (pre-initialization failed); the tenant's
 * (hm_tenant_create) otherwise. Nothing is installed on failure. */
hm_status hm_python_install(const hm_python_config *cfg);

/* The tenant CPython is hosted in; NULL before install and after uninstall. */
hm_tenant *hm_python_tenant(void);

/* Removes the Low callback, then Py_FinalizeEx(), then hm_python_trim(); returns Py_FinalizeEx's status
 * (0, or -1 when flushing the standard streams failed). The hooks and the tenant stay (see above). -1
 * with nothing done when not installed. */
int hm_python_finalize(void);

/* After hm_python_finalize: closes the hooks (later requests refused, frees ignored) and removes the
 * Low callback; the tenant and its memory stay (see above). HM_E_HOST_INVALIDOPERATION when not
 * installed or while CPython is initialized. */
hm_status hm_python_uninstall(void);

typedef struct hm_python_stats {
    uint64_t arena_bytes, arena_peak; /* bytes of pymalloc's arenas (and data-stack chunks) in use now, at most */
    uint64_t arena_kept;              /* bytes of empty arenas kept for reuse (charged) */
    uint64_t arenas;                  /* arenas taken (admitted, or reused from those kept) */
    uint64_t arenas_refused;          /* refused by the budget (pymalloc then falls back to RAW) */
    uint64_t unwind_windows;          /* RAW refusals that opened the unwind window */
    uint64_t unwind_grants;           /* RAW requests admitted at the emergency level (the window, start-up) */
    uint64_t collections_asked;       /* pending calls scheduled on Low */
    uint64_t collections_run;         /* of which the main thread ran */
    uint64_t arena_bytes_collected;   /* arena bytes those collections released (kept ones too), summed */
} hm_python_stats;

/* Gives back now the arenas kept for reuse and the tenant's heap's empty pages (any thread).
 * HM_E_HOST_INVALIDOPERATION when not installed. */
hm_status hm_python_trim(void);

/* HM_E_POINTER for NULL; HM_E_HOST_INVALIDOPERATION when not installed. */
hm_status hm_python_get_stats(hm_python_stats *out);

/* The figures above as one line of text, snprintf-style like hm_tenant_report. */
size_t hm_python_report(char *buf, size_t cap);

#ifdef __cplusplus
}
#endif
#endif
