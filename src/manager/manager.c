/* manager.c — creating, resolving and destroying managers, nested ones included (manager.h). */
#define _GNU_SOURCE /* secure_getenv */
#include "manager.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../os/os.h"
#include "../vmap/meta.h"
#include "../vmap/vmap.h"

static pthread_mutex_t hm_manager_lock = PTHREAD_MUTEX_INITIALIZER; /* guards manager_pool */
static hm_pool manager_pool = HM_POOL_INIT("manager", sizeof(hm_meta_hdr) + sizeof(hm_manager), 64 * 1024);

static hm_manager default_manager;
static hm_status default_status;
static char default_error[256];   /* why the default manager could not start */
static pthread_once_t default_once = PTHREAD_ONCE_INIT;

/* Options from HOSTMEM_OPTIONS and then `options`, resolved and checked; err names the culprit. */
static hm_status parse(hm_options *o, const char *options, char *err, size_t errlen)
{
    hm_options_defaults(o);
    hm_status st = hm_options_apply(o, secure_getenv("HOSTMEM_OPTIONS"), err, errlen);
    if (st) {
        char inner[200];
        snprintf(inner, sizeof inner, "%s", err);
        snprintf(err, errlen, "HOSTMEM_OPTIONS: %s", inner);
        return st;
    }
    if ((st = hm_options_apply(o, options, err, errlen))) return st;
    return hm_options_resolve(o, err, errlen);
}

static hm_manager *new_record(void)
{
    int e = 0;
    pthread_mutex_lock(&hm_manager_lock);
    hm_meta_hdr *h = hm_pool_alloc(&manager_pool, &e);
    pthread_mutex_unlock(&hm_manager_lock);
    if (!h) hm_detail_set("no memory for the manager's record");
    return h ? (hm_manager *)(h + 1) : NULL;
}

/* Frees a record whose allocations are all released (its notifier stopped). */
static void free_record(hm_manager *m)
{
    pthread_mutex_destroy(&m->wait_lock);
    pthread_mutex_destroy(&m->va_lock);
    pthread_mutex_destroy(&m->reclaim_lock);
    pthread_mutex_destroy(&m->notify.lock);
    pthread_cond_destroy(&m->notify.cond);
    pthread_mutex_lock(&hm_manager_lock);
    hm_pool_free(&manager_pool, (hm_meta_hdr *)m - 1);
    pthread_mutex_unlock(&hm_manager_lock);
}

/* A manager in place (its locks must not move once made). */
static void init(hm_manager *m, const hm_options *o)
{
    memset(m, 0, sizeof *m);
    m->opts = *o;
    atomic_store_explicit(&m->state, HM_MGR_RUNNING, memory_order_relaxed);
    m->acct.threshold[0] = o->limit - o->reserve_appdomain - o->reserve_process; /* SPEC 3.2 */
    m->acct.threshold[1] = o->limit - o->reserve_process;
    m->acct.threshold[2] = o->limit;
    m->acct.va_limit = o->va_limit;
    pthread_mutex_init(&m->wait_lock, NULL);
    pthread_mutex_init(&m->va_lock, NULL);
    pthread_mutex_init(&m->reclaim_lock, NULL);
    hm_notify_init(m);
}

static void default_init(void)
{
    hm_options o;
    default_status = hm_vmap_init();
    if (!default_status) default_status = parse(&o, NULL, default_error, sizeof default_error);
    if (!default_status) init(&default_manager, &o);
    if (default_status && default_error[0]) fprintf(stderr, "hostmem: %s\n", default_error);
    default_manager.is_default = true;
    if (!default_status) atomic_store_explicit(&hm_manager_default_ready, &default_manager, memory_order_release);
}

_Atomic(hm_manager *) hm_manager_default_ready;

hm_manager *hm_manager_default(hm_status *st)
{
    pthread_once(&default_once, default_init);
    if (default_status) {
        *st = default_status;
        if (default_status == HM_E_NOT_SUPPORTED) (void)hm_vmap_init(); /* says why in the detail */
        else hm_detail_set("the process-default manager could not start: %s", default_error);
        return NULL;
    }
    return &default_manager;
}

hm_status hm_manager_create(const char *options, hm_manager **out)
{
    if (!out) return HM_E_POINTER;
    *out = NULL;
    hm_status st = hm_vmap_init();
    if (st) return st;
    char err[256] = "";
    hm_options o;
    if ((st = parse(&o, options, err, sizeof err))) {
        hm_detail_set("%s", err);
        return st;
    }
    hm_manager *m = new_record();
    if (!m) return HM_E_OUTOFMEMORY;
    init(m, &o);
    *out = m;
    return HM_OK;
}

/* A child's options (README, "Nested budgets"): the defaults, not HOSTMEM_OPTIONS (that string sets
 * the process's budgets, not the slices a host hands out), with the parent's view of the system
 * (cgroup.root, proc.root, psi.*); then `options`, where N% is of the parent's limit and limit
 * defaults to the parent's limit. */
hm_status hm_manager_create_child(hm_manager *parent, const char *options, hm_manager **out)
{
    if (!out) return HM_E_POINTER;
    *out = NULL;
    hm_status st = HM_OK;
    if (!(parent = hm_manager_resolve(parent, &st))) return st;
    if (parent->depth + 1 >= HM_ACCOUNT_MAX_DEPTH) {
        hm_detail_set("managers nest at most %d deep: the parent is %u levels down already", HM_ACCOUNT_MAX_DEPTH,
                      parent->depth);
        return HM_E_HOST_INVALIDOPERATION;
    }
    char err[256] = "";
    hm_options o;
    hm_options_defaults(&o);
    memcpy(o.cgroup_root, parent->opts.cgroup_root, sizeof o.cgroup_root);
    memcpy(o.proc_root, parent->opts.proc_root, sizeof o.proc_root);
    o.psi_some = parent->opts.psi_some;
    o.psi_full = parent->opts.psi_full;
    if ((st = hm_options_apply(&o, options, err, sizeof err)) ||
        (st = hm_options_resolve_within(&o, parent->opts.limit, err, sizeof err))) {
        hm_detail_set("%s", err);
        return st;
    }
    hm_manager *m = new_record();
    if (!m) return HM_E_OUTOFMEMORY;
    init(m, &o);
    m->parent = parent;
    m->acct.parent = &parent->acct;
    m->depth = parent->depth + 1;
    if ((st = hm_nest_link(m))) { /* the parent stopped meanwhile */
        free_record(m);
        return st;
    }
    *out = m;
    return HM_OK;
}

_Atomic unsigned hm_manager_stops;

static void (*_Atomic stop_hook)(void);

void hm_manager_on_stop(void (*fn)(void)) { atomic_store_explicit(&stop_hook, fn, memory_order_release); }

void hm_manager_stopped(void)
{
    atomic_fetch_add_explicit(&hm_manager_stops, 1, memory_order_seq_cst);
    void (*fn)(void) = atomic_load_explicit(&stop_hook, memory_order_acquire);
    if (fn) fn();
}

void hm_manager_fail(hm_manager *m)
{
    int running = HM_MGR_RUNNING;
    if (atomic_compare_exchange_strong(&m->state, &running, HM_MGR_FAILED)) {
        hm_manager_stopped();
        hm_manager_abandon_waiters(m);
    }
}

hm_status hm_manager_shutdown(hm_manager *m)
{
    hm_status st = HM_OK;
    if (!(m = hm_manager_resolve(m, &st))) return st;
    int running = HM_MGR_RUNNING;
    if (!atomic_compare_exchange_strong(&m->state, &running, HM_MGR_SHUTDOWN)) return HM_E_HOST_CLRNOTAVAILABLE;
    hm_manager_stopped();
    hm_manager_abandon_waiters(m); /* SPEC 3.4: every waiter returns HOST_E_ABANDONED at once */
    if (atomic_load_explicit(&m->nested, memory_order_acquire)) hm_nest_shutdown_below(m); /* children too */
    return HM_OK;
}

hm_status hm_manager_destroy(hm_manager *m)
{
    if (!m || m->is_default) {
        hm_detail_set("the process-default manager cannot be destroyed");
        return HM_E_INVALIDARG;
    }
    if (hm_notify_on_thread(m)) {
        hm_detail_set("a manager cannot be destroyed from its own notification callback");
        return HM_E_HOST_INVALIDOPERATION;
    }
    /* No child may live on a destroyed budget, and none may be made once this check passed: both the
     * check and the state change are under hm_nest_lock, which hm_nest_link takes too. */
    pthread_mutex_lock(&hm_nest_lock);
    unsigned kids = atomic_load_explicit(&m->nkids, memory_order_relaxed);
    int running = HM_MGR_RUNNING;
    bool stop = !kids && atomic_compare_exchange_strong(&m->state, &running, HM_MGR_SHUTDOWN);
    pthread_mutex_unlock(&hm_nest_lock);
    if (kids) {
        hm_detail_set("manager has %u live child manager%s: destroy them first", kids, kids == 1 ? "" : "s");
        return HM_E_HOST_INVALIDOPERATION;
    }
    if (stop) {
        hm_manager_stopped();
        hm_manager_abandon_waiters(m);
    }
    hm_notify_stop(m);
    /* Waiters keep their place in m's queue until they have woken and left: wait for them. */
    for (;;) { /* leaving is under wait_lock, so an empty queue seen under it is final */
        pthread_mutex_lock(&m->wait_lock);
        bool empty = m->head == NULL;
        pthread_mutex_unlock(&m->wait_lock);
        if (empty) break;
        hm_manager_abandon_waiters(m);
        hm_os_yield();
    }
    hm_status st = hm_vmap_release_all(&m->acct);
    if (st) return st; /* shut down; what could not be released stays recorded (the books exact): the
                          caller may try again */
    if (m->parent) hm_nest_unlink(m);
    free_record(m);
    return HM_OK;
}

hm_status hm_manager_get_stats(hm_manager *m, hm_manager_stats *out)
{
    if (!out) return HM_E_POINTER;
    hm_status st = HM_OK;
    if (!(m = hm_manager_resolve(m, &st))) return st;
    memset(out, 0, sizeof *out);
    out->limit = m->opts.limit;
    out->reserve_appdomain = m->opts.reserve_appdomain;
    out->reserve_process = m->opts.reserve_process;
    out->charge = atomic_load_explicit(&m->acct.charge, memory_order_relaxed);
    out->peak_charge = atomic_load_explicit(&m->acct.peak, memory_order_relaxed);
    out->va_limit = m->opts.va_limit;
    out->va_used = atomic_load_explicit(&m->acct.va_used, memory_order_relaxed);
    for (int i = 0; i < 3; i++) {
        out->granted[i] = atomic_load_explicit(&m->acct.granted[i], memory_order_relaxed);
        out->refused[i] = atomic_load_explicit(&m->acct.refused[i], memory_order_relaxed);
        out->wait_ms[i] = m->opts.wait_ms[i];
    }
    out->notify_low = m->opts.notify_low;
    out->notify_high = m->opts.notify_high;
    out->win32_level = (hm_level)m->opts.win32_level;
    for (int i = 0; i < 3; i++) {
        out->waits[i] = atomic_load_explicit(&m->waits[i], memory_order_relaxed);
        out->timeouts[i] = atomic_load_explicit(&m->timeouts[i], memory_order_relaxed);
        out->abandoned[i] = atomic_load_explicit(&m->abandoned[i], memory_order_relaxed);
    }
    out->waiting = atomic_load_explicit(&m->nwaiting, memory_order_relaxed);
    out->memory_state = (hm_memory_state)atomic_load_explicit(&m->notify.state, memory_order_relaxed);
    out->state_changes = atomic_load_explicit(&m->notify.changes, memory_order_relaxed);
    out->notifications = atomic_load_explicit(&m->notify.sent, memory_order_relaxed);
    for (int i = 0; i < 3; i++) out->refused_by_ancestor[i] = atomic_load_explicit(&m->acct.refused_up[i], memory_order_relaxed);
    out->children_charge = atomic_load_explicit(&m->acct.nested, memory_order_relaxed);
    out->children = atomic_load_explicit(&m->nkids, memory_order_relaxed);
    out->depth = m->depth;
    out->psi_some = m->opts.psi_some;
    out->psi_full = m->opts.psi_full;
    int state = atomic_load_explicit(&m->state, memory_order_relaxed);
    out->state = state == HM_MGR_RUNNING ? HM_MANAGER_RUNNING : state == HM_MGR_SHUTDOWN ? HM_MANAGER_SHUT_DOWN : HM_MANAGER_FAILED;
    return HM_OK;
}

/* fork (manager.h): the tree's lock, the manager's locks in their order, then the map's, then the notifier's. */
void hm_manager_fork_reclaim(hm_manager *m, bool lock)
{
    if (lock) pthread_mutex_lock(&m->reclaim_lock);
    else pthread_mutex_unlock(&m->reclaim_lock);
}

void hm_manager_fork_prepare(hm_manager *m)
{
    pthread_mutex_lock(&hm_nest_lock);
    pthread_mutex_lock(&m->wait_lock);
    pthread_mutex_lock(&m->va_lock);
    pthread_mutex_lock(&hm_manager_lock);
    hm_vmap_fork_lock();
    hm_notify_fork_lock(m);
}

void hm_manager_fork_after(hm_manager *m, bool child)
{
    hm_notify_fork_unlock(m, child);
    hm_vmap_fork_unlock();
    pthread_mutex_unlock(&hm_manager_lock);
    pthread_mutex_unlock(&m->va_lock);
    pthread_mutex_unlock(&m->wait_lock);
    pthread_mutex_unlock(&hm_nest_lock);
}
