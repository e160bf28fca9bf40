/* wait.c — waiting for memory (SPEC 3.3).
 *
 * A request the budget refuses may wait up to wait.<level> for charge to come back. Waiters queue in
 * admission order: more critical levels first, first come first served within a level. They do not
 * all rush the budget when memory returns: a single retry token walks the queue from the head, and
 * only its holder retries, under wait_lock, which a release also takes while anyone waits: so a
 * retry and a release never interleave, and the order is exact. A holder that is
 * admitted, times out or fails leaves the queue; one still refused keeps its place. Either way it
 * hands the token to the next waiter, so a small request behind a big one still gets its chance in
 * the same round. Memory that comes back while the token is out restarts the round at the head at the
 * next hand-off (and a holder that has not retried yet gives the token to the head first), so the
 * most critical waiter always sees returned memory first. A waiter that joins the queue starts a
 * round too, so that a release between its refusal and its joining is never lost.
 *
 * Nested managers: a child's request may be refused by an ancestor's budget; memory that comes back
 * anywhere in the tree (a sibling's release lowers the common ancestor's charge) starts a round at
 * every manager of the tree that has waiters (nest.c, hm_nest_memory_returned), as a release at the
 * manager itself does. tree_waiting (counted before the first retry) keeps that walk off the path of
 * trees where nobody waits.
 *
 * Shutdown wakes everyone with HOST_E_ABANDONED (SPEC 3.4); a waiter whose time runs out returns
 * HOST_E_TIMEOUT with nothing charged. */
#include <errno.h>
#include <time.h>

#include "../vmap/vmap.h"
#include "manager.h"

struct hm_waiter {
    hm_waiter *prev, *next;
    unsigned level;
    bool token;           /* this waiter may retry now */
    pthread_cond_t cond;  /* signalled when token is given or the manager leaves RUNNING */
};

/* Inserts w after every waiter of its level or a more critical one (m->wait_lock held). */
static void enqueue(hm_manager *m, hm_waiter *w)
{
    hm_waiter *after = m->tail;
    while (after && after->level < w->level) after = after->prev;
    w->prev = after;
    w->next = after ? after->next : m->head;
    if (w->next) w->next->prev = w;
    else m->tail = w;
    if (after) after->next = w;
    else m->head = w;
    atomic_fetch_add_explicit(&m->nwaiting, 1, memory_order_relaxed);
    if (atomic_load_explicit(&m->nested, memory_order_acquire)) hm_nest_waiting(m, 1);
}

static void dequeue(hm_manager *m, hm_waiter *w)
{
    if (w->prev) w->prev->next = w->next;
    else m->head = w->next;
    if (w->next) w->next->prev = w->prev;
    else m->tail = w->prev;
    atomic_fetch_sub_explicit(&m->nwaiting, 1, memory_order_relaxed);
    if (atomic_load_explicit(&m->nested, memory_order_acquire)) hm_nest_waiting(m, -1);
}

/* Gives the token to `to`; to the head instead if memory came back since the round began; none
 * (the round ends) if `to` is NULL. Lock held. */
static void hand_token(hm_manager *m, hm_waiter *to)
{
    if (m->round_returns != m->returns) {
        m->round_returns = m->returns;
        to = m->head;
    }
    m->token_out = to != NULL;
    if (to) {
        to->token = true;
        pthread_cond_signal(&to->cond);
    }
}

/* A new round from the head, unless one is under way (its next hand-off restarts it). Lock held. */
static void start_round(hm_manager *m)
{
    if (!m->token_out) {
        m->round_returns = m->returns;
        hand_token(m, m->head);
    }
}

hm_status hm_manager_free(hm_manager *m, void *addr, size_t size, uint32_t type)
{
    if (!atomic_load_explicit(&m->nwaiting, memory_order_acquire)) { /* the common case: no lock */
        hm_status st = hm_vmap_free(&m->acct, addr, size, type);
        if (st == HM_OK) {
            hm_notify_charge_changed(m);
            if (atomic_load_explicit(&m->nested, memory_order_relaxed)) hm_nest_memory_returned(m);
        }
        return st;
    }
    pthread_mutex_lock(&m->wait_lock);
    hm_status st = hm_vmap_free(&m->acct, addr, size, type);
    if (st == HM_OK) { /* charge may have come back: a new round from the head */
        m->returns++;
        start_round(m);
    }
    pthread_mutex_unlock(&m->wait_lock);
    if (st == HM_OK) {
        hm_notify_charge_changed(m);
        if (atomic_load_explicit(&m->nested, memory_order_relaxed)) hm_nest_memory_returned(m);
    }
    return st;
}

void hm_manager_kick_waiters(hm_manager *m)
{
    pthread_mutex_lock(&m->wait_lock);
    m->returns++;
    start_round(m);
    pthread_mutex_unlock(&m->wait_lock);
}

void hm_manager_abandon_waiters(hm_manager *m)
{
    pthread_mutex_lock(&m->wait_lock);
    for (hm_waiter *w = m->head; w; w = w->next) pthread_cond_signal(&w->cond);
    pthread_mutex_unlock(&m->wait_lock);
}

static struct timespec deadline_after(uint32_t ms)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    t.tv_sec += ms / 1000;
    t.tv_nsec += (long)(ms % 1000) * 1000000L;
    if (t.tv_nsec >= 1000000000L) {
        t.tv_sec++;
        t.tv_nsec -= 1000000000L;
    }
    return t;
}

static bool passed(const struct timespec *d)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return now.tv_sec > d->tv_sec || (now.tv_sec == d->tv_sec && now.tv_nsec >= d->tv_nsec);
}

void hm_manager_reclaimer_add(hm_manager *m, hm_reclaimer *r)
{
    pthread_mutex_lock(&m->reclaim_lock);
    r->prev = NULL;
    r->next = m->reclaimers;
    if (r->next) r->next->prev = r;
    m->reclaimers = r;
    pthread_mutex_unlock(&m->reclaim_lock);
}

void hm_manager_reclaimer_remove(hm_manager *m, hm_reclaimer *r)
{
    pthread_mutex_lock(&m->reclaim_lock);
    if (r->prev) r->prev->next = r->next;
    else if (m->reclaimers == r) m->reclaimers = r->next;
    if (r->next) r->next->prev = r->prev;
    r->next = r->prev = NULL;
    pthread_mutex_unlock(&m->reclaim_lock);
}

/* A request at m was refused: what the reclaimers of m and of its ancestors (whose budgets it also
 * draws on) keep for reuse goes back; true if anything went. A manager whose reclaim_lock another
 * thread holds (reclaiming already, or forking) is passed over. */
static bool reclaim(hm_manager *m, uint64_t need)
{
    bool any = false;
    for (; m; m = m->parent) {
        if (pthread_mutex_trylock(&m->reclaim_lock)) continue;
        for (hm_reclaimer *r = m->reclaimers; r; r = r->next) any |= r->give_back(r, need);
        pthread_mutex_unlock(&m->reclaim_lock);
    }
    return any;
}

hm_status hm_manager_alloc(hm_manager *m, unsigned level, void *addr, size_t size, uint32_t type, uint32_t prot,
                           void **base)
{
    hm_status st = hm_vmap_alloc(&m->acct, level, addr, size, type, prot, base);
    /* memory kept for reuse goes before a refusal stands: what the request lacks at m's threshold for
     * its level (its size if it seems to fit: an ancestor refused), oldest first; if that was not
     * enough (another thread took the room meanwhile), all of it */
    for (int round = 0; st == HM_E_COMMITMENT_LIMIT && round < 2; round++) {
        uint64_t thr = m->acct.threshold[level], charge = atomic_load_explicit(&m->acct.charge, memory_order_relaxed);
        if (!reclaim(m, round ? UINT64_MAX : charge + size > thr ? charge + size - thr : size)) break;
        st = hm_vmap_alloc(&m->acct, level, addr, size, type, prot, base);
    }
    if (st == HM_OK) hm_notify_charge_changed(m);
    if (st != HM_E_COMMITMENT_LIMIT) return st;
    /* SPEC 3.5: Low at once, before any wait (3.3), so the runtime can give back: the manager whose
     * budget refused (an ancestor's refusal makes its whole subtree Low, this one included) */
    hm_manager *by = m;
    for (hm_manager *p = m->parent; p; p = p->parent)
        if (&p->acct == hm_account_refuser) by = p;
    hm_notify_refused(by);
    uint32_t ms = m->opts.wait_ms[level];
    if (ms == 0) return st;

    struct timespec deadline = deadline_after(ms);
    hm_waiter w = {.level = level};
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&w.cond, &ca);
    pthread_condattr_destroy(&ca);
    atomic_fetch_add_explicit(&m->waits[level], 1, memory_order_relaxed);

    pthread_mutex_lock(&m->wait_lock);
    enqueue(m, &w);
    start_round(m);
    bool holding = false; /* we hold the token: whoever holds it must pass it on */
    for (;;) {
        while (!w.token && hm_manager_enter(m) == HM_OK) {
            if (pthread_cond_timedwait(&w.cond, &m->wait_lock, &deadline) == ETIMEDOUT && !w.token) break;
        }
        holding = w.token;
        w.token = false;
        if (hm_manager_enter(m) != HM_OK) { /* shut down or failed: SPEC 3.4 */
            st = HM_E_HOST_ABANDONED;
            atomic_fetch_add_explicit(&m->abandoned[level], 1, memory_order_relaxed);
            break;
        }
        if (!holding) { /* time ran out while waiting */
            st = HM_E_HOST_TIMEOUT;
            atomic_fetch_add_explicit(&m->timeouts[level], 1, memory_order_relaxed);
            break;
        }
        if (m->round_returns != m->returns && m->head != &w) { /* memory came back: the head goes first */
            hand_token(m, m->head);
            holding = false;
            continue;
        }
        m->round_returns = m->returns;
        /* Retry under wait_lock: a release while anyone waits also takes it (hm_manager_free), so
         * between the check above and this admission no memory can come back unseen. */
        st = hm_vmap_alloc(&m->acct, level, addr, size, type, prot, base);
        if (st != HM_E_COMMITMENT_LIMIT) break; /* admitted, or failed for another reason */
        if (passed(&deadline)) {
            st = HM_E_HOST_TIMEOUT;
            atomic_fetch_add_explicit(&m->timeouts[level], 1, memory_order_relaxed);
            break;
        }
        hand_token(m, w.next); /* still refused: keep the place, let the next one try */
        holding = false;
    }
    hm_waiter *next = w.next;
    dequeue(m, &w);
    if (holding) hand_token(m, next);
    pthread_mutex_unlock(&m->wait_lock);
    pthread_cond_destroy(&w.cond);
    if (st == HM_OK) hm_notify_charge_changed(m);
    if (st == HM_E_HOST_TIMEOUT || st == HM_E_HOST_ABANDONED) *base = NULL;
    if (st == HM_E_HOST_TIMEOUT) hm_detail_set("the wait for memory (wait = %u ms at level %u) ran out", ms, level);
    if (st == HM_E_HOST_ABANDONED) hm_detail_set("the manager was shut down while the request waited for memory");
    return st;
}

void hm_manager_memory_returned(hm_manager *m)
{
    if (atomic_load_explicit(&m->nwaiting, memory_order_acquire)) hm_manager_kick_waiters(m);
    hm_notify_charge_changed(m);
    if (atomic_load_explicit(&m->nested, memory_order_relaxed)) hm_nest_memory_returned(m);
}
