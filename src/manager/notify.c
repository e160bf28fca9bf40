/* notify.c — memory load, the memory state and its delivery to callbacks (notify.h, SPEC 3.5). */
#include "notify.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../os/os.h"
#include "../vmap/vmap.h"
#include "manager.h"

/* ceil(pct * limit / 100) without overflow */
static uint64_t pct_bytes(uint32_t pct, uint64_t limit)
{
    return (uint64_t)(((unsigned __int128)pct * limit + 99) / 100);
}

void hm_notify_init(hm_manager *m)
{
    hm_notifier *n = &m->notify;
    memset(n, 0, sizeof *n);
    /* floor(charge*100/L) >= high  <=>  charge >= ceil(high*L/100);
     * floor(charge*100/L) <= low   <=>  charge <  ceil((low+1)*L/100) */
    n->low_from = pct_bytes(m->opts.notify_high, m->opts.limit);
    n->high_below = pct_bytes(m->opts.notify_low + 1, m->opts.limit);
    atomic_store_explicit(&n->system_band, HM_MEMORY_HIGH, memory_order_relaxed);
    pthread_mutex_init(&n->lock, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&n->cond, &ca);
    pthread_condattr_destroy(&ca);
    atomic_store_explicit(&n->state, HM_MEMORY_HIGH, memory_order_relaxed);
    atomic_store_explicit(&n->self, HM_MEMORY_HIGH, memory_order_relaxed);
    atomic_store_explicit(&n->inherited, HM_MEMORY_HIGH, memory_order_relaxed);
    atomic_store_explicit(&n->band, HM_MEMORY_HIGH, memory_order_relaxed);
}

/* ---- load --------------------------------------------------------------------------------------- */

static uint32_t percent(uint64_t part, uint64_t whole)
{
    if (!whole) return 0;
    if (part >= whole) return 100;
    return (uint32_t)((unsigned __int128)part * 100 / whole);
}

/* The load memory stalls stand for (README, "System pressure"): notify.high when the share of the
 * last 10 s in which some task stalled on memory reaches psi.some, or the share in which all did
 * reaches psi.full; in proportion below; at most 100. 0 where PSI is off or cannot be read. */
static uint32_t psi_load(const hm_options *o)
{
    uint32_t some, full; /* hundredths of a percent */
    if ((!o->psi_some && !o->psi_full) || !hm_options_psi(o, &some, &full)) return 0;
    uint64_t l = 0, f;
    if (o->psi_some) l = (uint64_t)o->notify_high * some / (o->psi_some * 100u);
    if (o->psi_full && (f = (uint64_t)o->notify_high * full / (o->psi_full * 100u)) > l) l = f;
    return l > 100 ? 100 : (uint32_t)l;
}

/* The system's pressure and free bytes: the cgroup's usage against its limit, else /proc/meminfo;
 * the load raised to what memory stalls say, where they say more. */
static void system_usage(const hm_options *o, uint32_t *load, uint64_t *avail)
{
    uint64_t limit, usage;
    if (hm_options_cgroup(o, &limit, &usage)) {
        *load = percent(usage, limit);
        *avail = usage < limit ? limit - usage : 0;
        return;
    }
    char path[192], buf[4096];
    size_t len;
    snprintf(path, sizeof path, "%s/meminfo", o->proc_root);
    *load = 0;
    *avail = UINT64_MAX;
    if (hm_os_read_text(path, buf, sizeof buf, &len) != 0) return;
    const char *t = strstr(buf, "MemTotal:"), *a = strstr(buf, "MemAvailable:");
    if (!t || !a) return;
    uint64_t total = strtoull(t + 9, NULL, 10) * 1024, av = strtoull(a + 13, NULL, 10) * 1024;
    *load = percent(total > av ? total - av : 0, total);
    *avail = av;
}

static void system_memory(const hm_options *o, uint32_t *load, uint64_t *avail)
{
    system_usage(o, load, avail);
    uint32_t psi = psi_load(o);
    if (psi > *load) *load = psi;
}

static uint32_t own_load(hm_manager *m)
{
    return percent(atomic_load_explicit(&m->acct.charge, memory_order_relaxed), m->opts.limit);
}

void hm_memory_load(hm_manager *m, uint32_t *load, uint64_t *available)
{
    uint32_t sys;
    uint64_t sys_avail;
    system_memory(&m->opts, &sys, &sys_avail);
    atomic_store_explicit(&m->notify.system_load, sys, memory_order_relaxed);
    atomic_store_explicit(&m->notify.system_band,
                          sys >= m->opts.notify_high ? HM_MEMORY_LOW : sys <= m->opts.notify_low ? HM_MEMORY_HIGH
                                                                                                : HM_MEMORY_NEUTRAL,
                          memory_order_relaxed);
    uint64_t own_avail = UINT64_MAX;
    uint32_t own = 0;
    for (hm_manager *p = m; p; p = p->parent) { /* the chain's fullest budget, its least room */
        uint64_t charge = atomic_load_explicit(&p->acct.charge, memory_order_relaxed);
        uint64_t room = charge < p->opts.limit ? p->opts.limit - charge : 0;
        uint32_t l = own_load(p);
        if (room < own_avail) own_avail = room;
        if (l > own) own = l;
    }
    if (load) *load = own > sys ? own : sys;
    if (available) *available = own_avail < sys_avail ? own_avail : sys_avail;
}

/* ---- state ---------------------------------------------------------------------------------------- */

/* Sets the delivered state to the worse of self and inherited; a change is queued for delivery.
 * Lock held. True if it changed. */
static bool settle(hm_notifier *n)
{
    int self = atomic_load_explicit(&n->self, memory_order_relaxed);
    int inh = atomic_load_explicit(&n->inherited, memory_order_relaxed);
    int s = self < inh ? self : inh;
    if (atomic_load_explicit(&n->state, memory_order_relaxed) == s) return false;
    atomic_store_explicit(&n->state, s, memory_order_relaxed);
    atomic_fetch_add_explicit(&n->changes, 1, memory_order_relaxed);
    if (n->running) {
        if (n->head - n->tail == HM_NOTIFY_QUEUE) { /* the slowest callback is far behind */
            n->tail++;
            n->dropped++;
        }
        n->queue[n->head++ % HM_NOTIFY_QUEUE] = s;
        pthread_cond_signal(&n->cond);
    }
    return true;
}

/* Moves the own state to s (from_band: to the band as it is under the lock) and queues a change of
 * the delivered state. Reading the band under the lock matters when two evaluations cross it at
 * once: the one that takes the lock last sets the state the band has then, never a stale one. A
 * change goes down to the children (nest.c) after the lock is dropped: a child linked meanwhile read
 * the new state itself, or is seen in nkids here (both under this lock: nest.c, hm_nest_link). */
static void move_state(hm_manager *m, int s, bool from_band)
{
    hm_notifier *n = &m->notify;
    pthread_mutex_lock(&n->lock);
    if (from_band) s = atomic_load_explicit(&n->band, memory_order_relaxed);
    atomic_store_explicit(&n->self, s, memory_order_relaxed);
    bool changed = settle(n);
    pthread_mutex_unlock(&n->lock);
    if (changed && atomic_load_explicit(&m->nkids, memory_order_acquire)) hm_nest_state_changed(m);
}

void hm_notify_inherit(hm_manager *m, int s)
{
    hm_notifier *n = &m->notify;
    pthread_mutex_lock(&n->lock);
    atomic_store_explicit(&n->inherited, s, memory_order_relaxed);
    (void)settle(n);
    pthread_mutex_unlock(&n->lock);
}

static int band_now(hm_manager *m) { return hm_notify_band(&m->notify, atomic_load_explicit(&m->acct.charge, memory_order_relaxed)); }

static void evaluate(hm_manager *m)
{
    int band = band_now(m);
    int old = atomic_load_explicit(&m->notify.band, memory_order_relaxed);
    if (band == old || !atomic_compare_exchange_strong(&m->notify.band, &old, band)) return;
    move_state(m, band, true);
}

/* The ancestors whose band gets worse, outermost first (nest.c pushes each change down). */
static void worse_first(hm_manager *p)
{
    if (p->parent) worse_first(p->parent);
    if (band_now(p) < atomic_load_explicit(&p->notify.band, memory_order_relaxed)) evaluate(p);
}

/* A child's charge is part of every ancestor's: their bands move with it. A charge moves the whole
 * chain the same way, and the order keeps a child from passing through a state of its own that its
 * ancestors' already overrides: on the way up the ancestors that turn worse go first (the child goes
 * straight to their Low), on the way down the child goes first (it stays Low under them until they
 * come back). */
void hm_notify_charge_moved(hm_manager *m)
{
    if (m->parent) worse_first(m->parent);
    evaluate(m);
    for (hm_manager *p = m->parent; p; p = p->parent) evaluate(p);
}

void hm_notify_refused(hm_manager *m) { move_state(m, HM_MEMORY_LOW, false); }

/* ---- delivery ------------------------------------------------------------------------------------- */

static void *notify_thread(void *arg)
{
    hm_manager *m = arg;
    hm_notifier *n = &m->notify;
    pthread_mutex_lock(&n->lock);
    while (!n->stop || n->tail != n->head) {
        if (n->tail == n->head) {
            struct timespec t;
            clock_gettime(CLOCK_MONOTONIC, &t);
            t.tv_nsec += HM_NOTIFY_POLL_MS * 1000000L;
            if (t.tv_nsec >= 1000000000L) {
                t.tv_sec++;
                t.tv_nsec -= 1000000000L;
            }
            int rc = pthread_cond_timedwait(&n->cond, &n->lock, &t);
            if (rc == ETIMEDOUT && !n->stop) { /* sample the system's pressure while someone listens */
                pthread_mutex_unlock(&n->lock);
                uint32_t load;
                hm_memory_load(m, &load, NULL);
                evaluate(m);
                pthread_mutex_lock(&n->lock);
            }
            continue;
        }
        int s = n->queue[n->tail++ % HM_NOTIFY_QUEUE];
        hm_notify_cb cbs[HM_NOTIFY_MAX_CALLBACKS];
        unsigned ncb = n->ncb;
        memcpy(cbs, n->cb, ncb * sizeof cbs[0]);
        pthread_mutex_unlock(&n->lock); /* SPEC 3.5: never under a lock of the manager */
        for (unsigned i = 0; i < ncb; i++) {
            cbs[i].fn((hm_memory_state)s, cbs[i].arg);
            atomic_fetch_add_explicit(&n->sent, 1, memory_order_relaxed);
        }
        pthread_mutex_lock(&n->lock);
    }
    pthread_mutex_unlock(&n->lock);
    return NULL;
}

hm_status hm_manager_register_notification(hm_manager *m, hm_notify_fn fn, void *arg)
{
    hm_status st = HM_OK;
    if (!(m = hm_manager_resolve(m, &st))) return st;
    if ((st = hm_manager_enter(m))) return st;
    if (!fn) return HM_E_POINTER;
    hm_notifier *n = &m->notify;
    pthread_mutex_lock(&n->lock);
    if (n->ncb == HM_NOTIFY_MAX_CALLBACKS) {
        pthread_mutex_unlock(&n->lock);
        hm_detail_set("a manager takes at most %d notification callbacks", HM_NOTIFY_MAX_CALLBACKS);
        return HM_E_OUTOFMEMORY;
    }
    n->cb[n->ncb++] = (hm_notify_cb){fn, arg};
    if (!n->running) {
        n->stop = false;
        if (pthread_create(&n->thread, NULL, notify_thread, m) != 0) {
            n->ncb--;
            pthread_mutex_unlock(&n->lock);
            hm_detail_set("could not start the notification thread");
            return HM_E_OUTOFMEMORY;
        }
        n->running = true;
    }
    pthread_mutex_unlock(&n->lock);
    /* start watching: take a first sample so that the state reflects the system now */
    uint32_t load;
    hm_memory_load(m, &load, NULL);
    evaluate(m);
    return HM_OK;
}

void hm_notify_stop(hm_manager *m)
{
    hm_notifier *n = &m->notify;
    pthread_mutex_lock(&n->lock);
    bool running = n->running;
    n->stop = true;
    n->running = false;
    pthread_cond_signal(&n->cond);
    pthread_mutex_unlock(&n->lock);
    if (running) pthread_join(n->thread, NULL); /* pre: not on the notification thread itself */
}

hm_status hm_manager_get_memory_load(hm_manager *m, uint32_t *load, uint64_t *available)
{
    hm_status st = HM_OK;
    if (!(m = hm_manager_resolve(m, &st))) return st;
    if ((st = hm_manager_enter(m))) return st;
    hm_memory_load(m, load, available);
    evaluate(m);
    return HM_OK;
}

void hm_notify_fork_lock(hm_manager *m) { pthread_mutex_lock(&m->notify.lock); }

void hm_notify_fork_unlock(hm_manager *m, bool child)
{
    hm_notifier *n = &m->notify;
    if (child && n->running) { /* the thread was not copied: a new one delivers the child's changes */
        n->running = false;
        if (pthread_create(&n->thread, NULL, notify_thread, m) == 0) n->running = true;
    }
    pthread_mutex_unlock(&n->lock);
}

bool hm_notify_on_thread(hm_manager *m)
{
    hm_notifier *n = &m->notify;
    pthread_mutex_lock(&n->lock);
    bool on = n->running && pthread_equal(pthread_self(), n->thread);
    pthread_mutex_unlock(&n->lock);
    return on;
}
