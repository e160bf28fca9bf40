/* account.c — the slow half of nested accounts (account.h): admission and give-back up the chain of
 * ancestors, taken only by accounts that have a parent. */
#include "account.h"

/* initial-exec, as hm_account_unwinding: the drop-in malloc must not reach __tls_get_addr */
_Thread_local hm_account *hm_account_refuser __attribute__((tls_model("initial-exec")));

/* Each ancestor takes the bytes in turn, nearest first; on a refusal the ones that took them, and a,
 * give them back (so no charge of the chain passed its threshold at any moment, and nothing stays
 * charged). The peaks move only once the whole chain admitted the request. */
bool hm_account_admit_up(hm_account *a, uint64_t bytes, unsigned lv, uint64_t charge_a)
{
    uint64_t now[HM_ACCOUNT_MAX_DEPTH];
    unsigned n = 0;
    hm_account *p = a->parent;
    for (; p; p = p->parent, n++) {
        if (!hm_account_take(p, bytes, lv, &now[n])) break;
        atomic_fetch_add_explicit(&p->nested, bytes, memory_order_relaxed);
    }
    if (!p) {
        hm_account_peak(a, charge_a);
        n = 0;
        for (p = a->parent; p; p = p->parent) hm_account_peak(p, now[n++]);
        return true;
    }
    for (hm_account *q = a->parent; q != p; q = q->parent) {
        atomic_fetch_sub_explicit(&q->nested, bytes, memory_order_relaxed);
        atomic_fetch_sub_explicit(&q->charge, bytes, memory_order_acq_rel);
    }
    atomic_fetch_sub_explicit(&a->charge, bytes, memory_order_acq_rel);
    atomic_fetch_add_explicit(&a->refused[lv], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&a->refused_up[lv], 1, memory_order_relaxed);
    hm_account_refuser = p;
    return false;
}

void hm_account_uncharge_up(hm_account *a, uint64_t bytes)
{
    for (hm_account *p = a->parent; p; p = p->parent) {
        atomic_fetch_sub_explicit(&p->nested, bytes, memory_order_relaxed);
        atomic_fetch_sub_explicit(&p->charge, bytes, memory_order_acq_rel);
    }
}
