/* account.h — one manager's books as the map keeps them: the commit charge and the address space
 * its allocations hold, with admission by critical level (SPEC 3.2, 3.6).
 *
 * The map is the one place that knows how many pages an operation newly commits, so admission and
 * charging happen here, as one atomic step (a compare-and-swap on charge): two requests can never
 * both pass on the same headroom, and charge never exceeds threshold[2] = L. The manager sets the
 * thresholds and reads the numbers; it never keeps a second copy of them.
 *
 * Nested budgets (README, "Nested budgets"): an account may have a parent, whose charge includes the
 * account's (and so on up). A request is admitted only if every account of the chain takes it at the
 * request's level: each is charged with its own compare-and-swap, from the account up, and a refusal
 * anywhere gives back what the levels below took before it returns. So the charge of no account ever
 * passes its threshold; between the two, a level below may hold a charge for a moment that is then
 * given back (a concurrent request on it may be refused in that moment: conservative, never over).
 * An account without a parent pays one NULL check for all this.
 *
 * Invariant (checked by hm_vmap_check): charge = bytes of committed pages of the account's
 * allocations + outside + nested; va_used = bytes of its allocations + va_recorded. */
#ifndef HM_ACCOUNT_H
#define HM_ACCOUNT_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

typedef struct hm_account {
    _Atomic uint64_t charge;      /* bytes of committed pages */
    _Atomic uint64_t peak;        /* high-water mark of charge */
    uint64_t threshold[3];        /* the most charge a request of level i may leave: L-Ra-Rp, L-Rp, L */
    _Atomic uint64_t va_used;     /* bytes of address space held (reservations, recorded mappings) */
    _Atomic uint64_t va_recorded; /* of which mappings made outside the manager and recorded (SPEC 3.6) */
    uint64_t va_limit;            /* UINT64_MAX: unlimited */
    _Atomic uint64_t granted[3];  /* admitted requests that raised the charge, by level */
    _Atomic uint64_t refused[3];  /* refused ones */
    _Atomic uint64_t outside;     /* of charge: mappings made outside the map, charged by the drop-in
                                     malloc's mmap (src/preload/mmap.c) */
    uint64_t unwind;              /* bytes below each threshold that only a thread unwinding from a
                                     refusal may take (0 but in the drop-in malloc's manager) */
    _Atomic uint32_t qid;         /* the map's short name for it in query summaries (1..255, given
                                     at its first allocation under the map lock), 0 while it has none */
    struct hm_account *parent;    /* the enclosing budget, NULL at the top; fixed for the account's life */
    _Atomic uint64_t nested;      /* of charge: what the accounts below it hold */
    _Atomic uint64_t refused_up[3]; /* of refused: those an ancestor refused */
} hm_account;

/* Set by the drop-in malloc (src/preload/) on a thread for a short while after a refusal: its requests
 * may then take an account's `unwind` bytes. */
extern _Thread_local bool hm_account_unwinding __attribute__((tls_model("initial-exec")));

/* The account whose budget refused this thread's last refused request (an ancestor of the account
 * asked, or that account itself); set on refusal only. */
extern _Thread_local hm_account *hm_account_refuser __attribute__((tls_model("initial-exec")));

/* Charges `bytes` to a alone if its level-lv threshold allows it; *now: the charge it made. */
static inline bool hm_account_take(hm_account *a, uint64_t bytes, unsigned lv, uint64_t *now)
{
    uint64_t limit = a->threshold[lv];
    if (a->unwind && !hm_account_unwinding) limit = limit > a->unwind ? limit - a->unwind : 0;
    uint64_t c = atomic_load_explicit(&a->charge, memory_order_relaxed);
    do {
        if (c > limit || bytes > limit - c) return false; /* no overflow: subtract on the limit side */
    } while (!atomic_compare_exchange_weak_explicit(&a->charge, &c, c + bytes, memory_order_acq_rel,
                                                    memory_order_relaxed));
    *now = c + bytes;
    return true;
}

/* The high-water mark follows a charge that was admitted (never one given back at once after a
 * refusal higher up, which no request held). */
static inline void hm_account_peak(hm_account *a, uint64_t now)
{
    uint64_t p = atomic_load_explicit(&a->peak, memory_order_relaxed);
    while (now > p && !atomic_compare_exchange_weak_explicit(&a->peak, &p, now, memory_order_relaxed,
                                                             memory_order_relaxed)) {
    }
}

#define HM_ACCOUNT_MAX_DEPTH 16 /* accounts in a chain, the first included (manager.c enforces it) */

/* account.c: the chain above a, for accounts that have a parent (pre: a took bytes; charge_a: what
 * its charge became). */
bool hm_account_admit_up(hm_account *a, uint64_t bytes, unsigned lv, uint64_t charge_a);
void hm_account_uncharge_up(hm_account *a, uint64_t bytes);

/* Admits a request of `level` that raises the charge by `bytes`, and charges it to the account and
 * every ancestor; false (nothing charged anywhere, hm_account_refuser set) if charge + bytes would
 * pass the level's threshold of any of them. bytes 0 is always admitted. */
static inline bool hm_account_admit(hm_account *a, uint64_t bytes, unsigned level)
{
    if (bytes == 0) return true;
    unsigned lv = level > 2 ? 2 : level;
    uint64_t now;
    if (!hm_account_take(a, bytes, lv, &now)) {
        atomic_fetch_add_explicit(&a->refused[lv], 1, memory_order_relaxed);
        hm_account_refuser = a;
        return false;
    }
    if (a->parent) {
        if (!hm_account_admit_up(a, bytes, lv, now)) return false; /* (given back, counted) */
    } else {
        hm_account_peak(a, now);
    }
    atomic_fetch_add_explicit(&a->granted[lv], 1, memory_order_relaxed);
    return true;
}

/* Gives bytes of charge back, to the account and every ancestor. */
static inline void hm_account_uncharge(hm_account *a, uint64_t bytes)
{
    if (!bytes) return;
    atomic_fetch_sub_explicit(&a->charge, bytes, memory_order_acq_rel);
    if (a->parent) hm_account_uncharge_up(a, bytes);
}

/* Takes `bytes` of address space; false if va_limit would be passed. */
static inline bool hm_account_take_va(hm_account *a, uint64_t bytes)
{
    uint64_t v = atomic_load_explicit(&a->va_used, memory_order_relaxed);
    do {
        if (v > a->va_limit || bytes > a->va_limit - v) return false;
    } while (!atomic_compare_exchange_weak_explicit(&a->va_used, &v, v + bytes, memory_order_acq_rel,
                                                    memory_order_relaxed));
    return true;
}

static inline void hm_account_give_va(hm_account *a, uint64_t bytes)
{
    atomic_fetch_sub_explicit(&a->va_used, bytes, memory_order_acq_rel);
}

#endif
