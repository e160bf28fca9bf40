/* nest.c — the tree of nested managers (README, "Nested budgets"): linking and unlinking children,
 * pushing a manager's memory state down to its descendants, waking waiters anywhere in a tree when
 * memory comes back in it, and shutting a subtree down.
 *
 * Charges need no lock: each child's account points at its parent's, and account.h charges the whole
 * chain. hm_nest_lock guards the links (kids, sibling), nkids's changes and the walks below; inside it
 * only wait_locks (then the map's) and notifier locks are taken, one manager at a time (manager.h). */
#include <stdatomic.h>

#include "../vmap/vmap.h"
#include "manager.h"

pthread_mutex_t hm_nest_lock = PTHREAD_MUTEX_INITIALIZER;

static inline int worse(int a, int b) { return a < b ? a : b; } /* Low (1) < Neutral < High (3) */

hm_status hm_nest_link(hm_manager *m)
{
    hm_manager *p = m->parent;
    pthread_mutex_lock(&hm_nest_lock);
    if (hm_manager_enter(p) != HM_OK) { /* shut down, failed, or being destroyed (under this lock) */
        pthread_mutex_unlock(&hm_nest_lock);
        hm_detail_set("the parent manager is shut down: it takes no new child");
        return HM_E_HOST_CLRNOTAVAILABLE;
    }
    m->sibling = p->kids;
    p->kids = m;
    atomic_store_explicit(&m->nested, true, memory_order_release);
    atomic_store_explicit(&p->nested, true, memory_order_release);
    atomic_fetch_add_explicit(&p->nkids, 1, memory_order_acq_rel);
    /* The state it inherits, read under the parent's notifier lock after nkids went up: a change of
     * the parent's state either happened before (seen here) or sees nkids > 0 and pushes (notify.c). */
    pthread_mutex_lock(&p->notify.lock);
    int s = atomic_load_explicit(&p->notify.state, memory_order_relaxed);
    pthread_mutex_unlock(&p->notify.lock);
    pthread_mutex_lock(&m->notify.lock);
    atomic_store_explicit(&m->notify.inherited, s, memory_order_relaxed);
    atomic_store_explicit(&m->notify.state, worse(s, atomic_load_explicit(&m->notify.self, memory_order_relaxed)),
                          memory_order_relaxed);
    pthread_mutex_unlock(&m->notify.lock);
    pthread_mutex_unlock(&hm_nest_lock);
    return HM_OK;
}

void hm_nest_unlink(hm_manager *m)
{
    hm_manager *p = m->parent;
    pthread_mutex_lock(&hm_nest_lock);
    for (hm_manager **k = &p->kids; *k; k = &(*k)->sibling)
        if (*k == m) {
            *k = m->sibling;
            break;
        }
    atomic_fetch_sub_explicit(&p->nkids, 1, memory_order_acq_rel);
    pthread_mutex_unlock(&hm_nest_lock);
}

/* Each child takes its parent's state as it is now (not as it was when the change was made: the last
 * push after the last change then always leaves the tree right), and passes its own on. */
static void push(hm_manager *m)
{
    int s = atomic_load_explicit(&m->notify.state, memory_order_acquire);
    for (hm_manager *k = m->kids; k; k = k->sibling) {
        hm_notify_inherit(k, s);
        push(k);
    }
}

void hm_nest_state_changed(hm_manager *m)
{
    pthread_mutex_lock(&hm_nest_lock);
    push(m);
    pthread_mutex_unlock(&hm_nest_lock);
}

static void kick(hm_manager *m, hm_manager *skip)
{
    if (m != skip && atomic_load_explicit(&m->nwaiting, memory_order_acquire)) hm_manager_kick_waiters(m);
    for (hm_manager *k = m->kids; k; k = k->sibling)
        if (atomic_load_explicit(&k->tree_waiting, memory_order_acquire)) kick(k, skip);
}

/* Memory that comes back at m lowers the charge of m and of its ancestors, so a waiter anywhere under
 * m's root may be admitted now. Pairs with hm_nest_waiting: either this sees the waiter counted, or
 * the waiter's first retry (after it was counted) sees the memory back. */
void hm_nest_memory_returned(hm_manager *m)
{
    hm_manager *root = m;
    while (root->parent) root = root->parent;
    atomic_thread_fence(memory_order_seq_cst);
    if (!atomic_load_explicit(&root->tree_waiting, memory_order_relaxed)) return;
    pthread_mutex_lock(&hm_nest_lock);
    kick(root, m); /* (m's own waiters had their round from the release itself) */
    pthread_mutex_unlock(&hm_nest_lock);
}

void hm_nest_waiting(hm_manager *m, int delta)
{
    for (hm_manager *p = m; p; p = p->parent) {
        if (delta > 0) atomic_fetch_add_explicit(&p->tree_waiting, 1, memory_order_seq_cst);
        else atomic_fetch_sub_explicit(&p->tree_waiting, 1, memory_order_seq_cst);
    }
    atomic_thread_fence(memory_order_seq_cst);
}

static void shut_below(hm_manager *m)
{
    for (hm_manager *k = m->kids; k; k = k->sibling) {
        int running = HM_MGR_RUNNING;
        if (atomic_compare_exchange_strong(&k->state, &running, HM_MGR_SHUTDOWN)) {
            hm_manager_stopped();
            hm_manager_abandon_waiters(k);
        }
        shut_below(k);
    }
}

void hm_nest_shutdown_below(hm_manager *m)
{
    pthread_mutex_lock(&hm_nest_lock);
    shut_below(m);
    pthread_mutex_unlock(&hm_nest_lock);
}
