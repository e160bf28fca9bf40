/* notify.h — memory load and memory-state notifications (SPEC 3.5).
 *
 * load = max(the manager's own pressure charge*100/L, the system's: the cgroup's usage against its
 * limit, else /proc/meminfo's MemTotal against MemAvailable). The state follows the load in bands:
 * Low at or above notify.high, High at or below notify.low, Neutral between; it changes only when
 * the load crosses into another band, or when a request is refused (Low at once).
 *
 * Nested managers (nest.c): the state delivered is the worse of the manager's own (`self`, as above)
 * and its parent's delivered state (`inherited`), so a child turns Low when it or any ancestor does,
 * and comes back when neither is Low. A refusal by an ancestor's budget makes that ancestor Low (and
 * so its whole subtree), not the child alone.
 *
 * System pressure (README, "System pressure"): the system's load is the larger of the usage-based one
 * and psi_load = notify.high * max(some avg10 / psi.some, full avg10 / psi.full), capped at 100, from
 * the cgroup's memory.pressure and <proc.root>/pressure/memory where they exist (the worse of the two).
 *
 * Changes are queued and delivered by the manager's own notification thread, in order, once to each
 * callback in registration order, with no lock of the manager held, so a callback may call back into
 * the manager (to free memory, say). The thread exists while callbacks are registered and then also
 * samples the system's pressure (every HM_NOTIFY_POLL_MS). */
#ifndef HM_NOTIFY_H
#define HM_NOTIFY_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include <hostmem/hostmem.h>

#define HM_NOTIFY_MAX_CALLBACKS 64
#define HM_NOTIFY_QUEUE 64       /* state changes waiting for delivery; older ones are dropped */
#define HM_NOTIFY_POLL_MS 100

typedef struct hm_notify_cb {
    hm_notify_fn fn;
    void *arg;
} hm_notify_cb;

typedef struct hm_notifier {
    _Atomic int state;            /* hm_memory_state delivered: the worse of self and inherited */
    _Atomic int self;             /* the manager's own state (its load, its refusals) */
    _Atomic int inherited;        /* its parent's delivered state; High at the top */
    _Atomic int band;             /* the state the load alone says: changes mark a crossing */
    _Atomic uint32_t system_load; /* last sampled system pressure, percent */
    _Atomic int system_band;      /* the band the last system sample alone says */
    uint64_t low_from;            /* own band is Low when charge >= low_from (= notify.high% of L, rounded up) */
    uint64_t high_below;          /* ... High when charge < high_below (load <= notify.low); precomputed
                                     so that the allocation path compares bytes and never divides */
    pthread_mutex_t lock;         /* callbacks, queue, thread (innermost: no other lock taken inside) */
    pthread_cond_t cond;
    hm_notify_cb cb[HM_NOTIFY_MAX_CALLBACKS];
    unsigned ncb;
    int queue[HM_NOTIFY_QUEUE];
    uint64_t head, tail;          /* queue[tail % N] .. queue[head % N] wait for delivery */
    _Atomic uint64_t sent;        /* deliveries made (one per callback per change) */
    _Atomic uint64_t changes;     /* state changes */
    uint64_t dropped;
    pthread_t thread;
    bool running, stop;
} hm_notifier;

/* The band at charge c (the worse of the own and the last system sample's, Low < Neutral < High): on
 * a crossing, the state follows it. Two compares and no lock. */
static inline int hm_notify_band(const hm_notifier *n, uint64_t c)
{
    int own = c >= n->low_from ? HM_MEMORY_LOW : c < n->high_below ? HM_MEMORY_HIGH : HM_MEMORY_NEUTRAL;
    int sys = atomic_load_explicit(&((hm_notifier *)n)->system_band, memory_order_relaxed);
    return own < sys ? own : sys;
}

struct hm_manager;
/* pre: m->opts is set. */
void hm_notify_init(struct hm_manager *m);
/* After the charge changed: re-evaluates the band from the own pressure and the last system sample
 * (manager.h inlines the common case, no parent and no crossing: two compares; this is the rest). */
void hm_notify_charge_moved(struct hm_manager *m);
/* A request was refused: Low at once (SPEC 3.5). */
void hm_notify_refused(struct hm_manager *m);
/* nest.c, under hm_nest_lock: m's parent's delivered state is now s. */
void hm_notify_inherit(struct hm_manager *m, int s);
/* Stops the thread after it delivered what is queued. pre: not called from a callback. */
void hm_notify_stop(struct hm_manager *m);
/* The load now (reads the system's numbers) and the bytes still available; for a nested manager
 * the own side is the worst of its chain's (the fullest budget, the least room left). */
void hm_memory_load(struct hm_manager *m, uint32_t *load, uint64_t *available);
/* fork: the notifier's lock (innermost); in the child, a new notification thread where one ran. */
void hm_notify_fork_lock(struct hm_manager *m);
void hm_notify_fork_unlock(struct hm_manager *m, bool child);
/* Whether the calling thread is m's notification thread (inside a callback). */
bool hm_notify_on_thread(struct hm_manager *m);

#endif
