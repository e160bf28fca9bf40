/* manager.h — managers: a budget and a set of allocations (SPEC 3.1, 3.2). A manager is created from
 * an option string (options.h) over HOSTMEM_OPTIONS; the process-default manager, behind the Win32
 * names and the NULL manager of the C API, is created on first use from HOSTMEM_OPTIONS alone.
 *
 * The manager owns its options and limits; its charge and address-space use live in its hm_account,
 * which the map keeps exact (vmap/account.h).
 *
 * Nested budgets (nest.c): a child manager's account has its parent's as `parent` (account.h), so
 * its charge counts against every ancestor's limit; the tree's links, the propagation of memory states
 * down it and the waking of waiters across it are under hm_nest_lock.
 *
 * Lock order (every lock in hostmem, outermost first):
 *   heaps_lock          heaps' destruction against threads' exits (heap/tcache.c)
 *     h->lock           a thread-safe heap's pages, segments and caches' refills (heap/heap.h); dropped
 *                       around commits, which may wait
 *       hm_manager_lock the pool of manager records (create, destroy)
 *       hm_nest_lock    the tree of nested managers (nest.c); taken with none of the locks below held
 *         m->wait_lock  a manager's waiters; held around waiters' retries and releases while anyone waits
 *           hm_map_lock the address-space map (vmap.c)
 *   (pool locks of heap.c, tcache.c, clr/host.c and the notifier's lock are leaves: nothing is taken
 *   inside them; hm_nest_lock takes the notifier's locks of the tree, one at a time.) None is held
 *   while calling back into the program. VirtualQuery takes none of them. */
#ifndef HM_MANAGER_H
#define HM_MANAGER_H

#include <pthread.h>
#include <stdatomic.h>

#include <hostmem/hostmem.h>

#include "../vmap/account.h"
#include "notify.h"
#include "options.h"
#include "reclaim.h"

#define HM_VA_MAX_RECORDS 256 /* mappings recorded at once (file views the runtime maps itself) */

/* Lifecycle (SPEC 3.4). */
enum { HM_MGR_RUNNING, HM_MGR_SHUTDOWN, HM_MGR_FAILED };

typedef struct hm_waiter hm_waiter;

struct hm_manager {
    hm_account acct;          /* the map's books of this manager */
    hm_options opts;          /* as resolved at creation */
    bool is_default;          /* the process-default manager: never destroyed */
    _Atomic int state;        /* HM_MGR_*: only ever moves away from RUNNING */
    char state_line[60];      /* every call reads state: no lock or counter shares its cache line */

    /* Requests waiting for memory (wait.c). wait_lock guards the queue and the token, and serialises
     * waiters' retries with releases while anyone waits. Lock order: wait_lock, then hm_map_lock. */
    pthread_mutex_t wait_lock;
    hm_waiter *head, *tail;   /* waiters, most critical first, first come first within a level */
    bool token_out;           /* a waiter holds the retry token (is retrying, unlocked) */
    uint64_t returns;         /* times memory came back (under wait_lock) */
    uint64_t round_returns;   /* `returns` when the current round began at the head */
    _Atomic unsigned nwaiting;/* queue length, read without the lock on the release path */
    _Atomic uint64_t waits[3], timeouts[3], abandoned[3];

    hm_notifier notify;       /* memory state and callbacks (notify.c) */

    /* Its reclaimers (wait.c), under reclaim_lock: taken before every other manager lock, and only
     * tried on the refusal path (a refusal while another thread reclaims does not wait for it). */
    pthread_mutex_t reclaim_lock;
    hm_reclaimer *reclaimers;

    /* Address space mapped outside the manager and recorded (SPEC 3.6; va.c), under va_lock. */
    pthread_mutex_t va_lock;
    struct { uintptr_t start; uint64_t size; } va_maps[HM_VA_MAX_RECORDS];
    unsigned nva_maps;

    /* Nested budgets (nest.c). parent is fixed for the manager's life; kids and sibling under
     * hm_nest_lock; nkids changes under it too, and is read without it. */
    struct hm_manager *parent;   /* NULL at the top */
    struct hm_manager *kids, *sibling;
    _Atomic unsigned nkids;      /* live children: the parent cannot be destroyed while any live */
    _Atomic bool nested;         /* has (or had) a parent or a child: memory coming back may wake
                                    waiters elsewhere in the tree. Set once, never cleared */
    _Atomic unsigned tree_waiting; /* requests waiting at this manager or below it */
    unsigned depth;              /* 0 at the top */
};

/* After m's charge changed (notify.h): nothing more to do unless m has a parent or its band moved. */
static inline void hm_notify_charge_changed(hm_manager *m)
{
    uint64_t c = atomic_load_explicit(&m->acct.charge, memory_order_relaxed);
    if (!m->parent && hm_notify_band(&m->notify, c) == atomic_load_explicit(&m->notify.band, memory_order_relaxed)) return;
    hm_notify_charge_moved(m);
}

/* nest.c: the tree of managers. */
extern pthread_mutex_t hm_nest_lock;
/* Links a new child m (its options resolved, m->parent set) under m->parent: HOST_E_CLRNOTAVAILABLE
 * if the parent no longer runs. */
hm_status hm_nest_link(hm_manager *m);
/* Unlinks m, whose destruction is complete but for its record. */
void hm_nest_unlink(hm_manager *m);
/* m's memory state changed: pushes it down to its descendants (nkids > 0). */
void hm_nest_state_changed(hm_manager *m);
/* Memory came back at m (m->nested): a round for the waiters of every other manager of its tree. */
void hm_nest_memory_returned(hm_manager *m);
/* A waiter joined (+1) or left (-1) m's queue: tree_waiting along the chain. */
void hm_nest_waiting(hm_manager *m, int delta);
/* Shuts down every descendant of m (m already left RUNNING). */
void hm_nest_shutdown_below(hm_manager *m);

/* The manager a public call names (NULL: the process default, created on first use). On failure
 * (HOSTMEM_OPTIONS invalid, page size refused) NULL with *st set. */
hm_manager *hm_manager_default(hm_status *st);
/* The default manager once it started (else NULL): what resolve reads first, one load instead of a
 * pthread_once and two checks on every call of every hm_* function given NULL. */
extern _Atomic(hm_manager *) hm_manager_default_ready;
static inline hm_manager *hm_manager_resolve(hm_manager *m, hm_status *st)
{
    if (m) return m;
    hm_manager *d = atomic_load_explicit(&hm_manager_default_ready, memory_order_acquire);
    return d ? d : hm_manager_default(st);
}

/* Lifecycle gate: HM_OK while running, else HOST_E_CLRNOTAVAILABLE (SPEC 3.4). */
static inline hm_status hm_manager_enter(hm_manager *m)
{
    if (atomic_load_explicit(&m->state, memory_order_acquire) == HM_MGR_RUNNING) return HM_OK;
    return HM_E_HOST_CLRNOTAVAILABLE;
}
/* Passes a call's result through; E_FAIL (the books no longer match the kernel) fails the manager. */
void hm_manager_fail(hm_manager *m);
/* How many times any manager has left RUNNING, counted after the state changed (seq_cst), before
 * the stop hook runs: a layer that re-validates what the hook clears reads it before and after (heap.c,
 * running_slow), so that a stop racing the re-validation is never missed. */
extern _Atomic unsigned hm_manager_stops;
static inline hm_status hm_manager_leave(hm_manager *m, hm_status st)
{
    if (st == HM_E_FAIL) hm_manager_fail(m); /* SPEC 3.4: E_FAIL once, then HOST_E_CLRNOTAVAILABLE */
    return st;
}

/* wait.c: an allocation that waits for memory when the budget refuses it (SPEC 3.3), and the wake-up
 * of waiters when memory comes back. */
hm_status hm_manager_alloc(hm_manager *m, unsigned level, void *addr, size_t size, uint32_t type, uint32_t prot,
                           void **base);
/* After memory was given back by other means (a heap's destruction): wakes waiters, re-evaluates
 * the memory state. */
void hm_manager_memory_returned(hm_manager *m);
/* VirtualFree through the manager: while requests wait, under wait_lock, and waking them after. */
hm_status hm_manager_free(hm_manager *m, void *addr, size_t size, uint32_t type);
/* va.c (SPEC 3.6): whether size more bytes of address space fit va.limit; recording and forgetting a
 * mapping made outside the manager (they count against va.limit with the reservations). */
hm_status hm_manager_va_needed(hm_manager *m, uint64_t size);
hm_status hm_manager_va_acquired(hm_manager *m, void *start, uint64_t size);
hm_status hm_manager_va_released(hm_manager *m, void *start);

/* Wakes every waiter to return HOST_E_ABANDONED (after state left RUNNING). */
void hm_manager_abandon_waiters(hm_manager *m);
/* Memory may have come back for m's waiters (from elsewhere in its tree): a new round. */
void hm_manager_kick_waiters(hm_manager *m);
/* r joins (leaves) m's reclaimers; the removal waits for a give_back under way. */
void hm_manager_reclaimer_add(hm_manager *m, hm_reclaimer *r);
void hm_manager_reclaimer_remove(hm_manager *m, hm_reclaimer *r);
/* After m left RUNNING: every cached "running" goes stale (hm_manager_stops counted up, then the
 * hook called: the heaps clear what their fast paths check, heap.c). The hook is set once, by the
 * layer above; it may run under that layer's locks and takes only leaf locks. */
void hm_manager_stopped(void);
void hm_manager_on_stop(void (*fn)(void));

/* fork (src/preload/init.c): before fork, takes m's locks and those of the layers below in their
 * order (wait_lock, va_lock, the managers' pool, the map, the notifier); after it, releases them. In
 * the child, a notification thread that ran in the parent is started again. Waiters of other threads
 * do not exist in the child; none is left queued only if none waited at fork (the drop-in's manager
 * has no waits unless wait.* is set). */
void hm_manager_fork_prepare(hm_manager *m);
/* fork: m's reclaim_lock, taken before any heap's locks (a reclaimer holding it may wait for a lock
 * a heap's fork preparation holds) and released after them. */
void hm_manager_fork_reclaim(hm_manager *m, bool lock);
void hm_manager_fork_after(hm_manager *m, bool child);
/* Sets the bytes kept for unwinding (account.h) of m. */
static inline void hm_manager_set_unwind(hm_manager *m, uint64_t bytes) { m->acct.unwind = bytes; }

#endif
