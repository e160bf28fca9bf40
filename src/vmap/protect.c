/* protect.c — VirtualProtect (SPEC 2.4): all pages committed, inside one allocation; the old
 * protection is the first page's, with the allocation's cache modifier. */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "../os/os.h"
#include "radix.h"
#include "rules.h"
#include "special.h"
#include "vmap_internal.h"


/* ---- VirtualProtect --------------------------------------------------------------------------- */

hm_status hm_vmap_protect(hm_account *acct, void *addr, size_t size, uint32_t prot, uint32_t *old)
{
    hm_status st = hm_vmap_init();
    if (st) return st;
    const hm_os_config *c = hm_os_cfg();
    uintptr_t a = (uintptr_t)addr;
    if (!old) { /* [R2.4] */
        hm_detail_set("VirtualProtect: lpflOldProtect is NULL");
        return HM_E_NOACCESS;
    }
    if (!hm_prot_valid(prot) || size == 0 || a > c->max_address || size > c->max_address + 1 - a) {
        hm_detail_set("VirtualProtect: invalid parameter (protection %#x, size %zu)", prot, size);
        return HM_E_INVALID_PARAMETER;
    }
    uintptr_t start = a & ~(PAGE - 1), end = (a + size + PAGE - 1) & ~(PAGE - 1);
    pthread_mutex_lock(&hm_map_lock);
    hm_alloc *al = hm_find_alloc(start);
    if (al && hm_alloc_owner(al) != acct) {
        st = hm_not_owner(al);
        goto out;
    }
    if (!al || !hm_alloc_reaches(al, end)) {
        hm_detail_set("VirtualProtect: [%p, %p) is not inside one allocation", (void *)start, (void *)end);
        st = HM_E_INVALID_PARAMETER;
        goto out;
    }
    uintptr_t base = atomic_load_explicit(&al->base, memory_order_relaxed);
    uint64_t npages = atomic_load_explicit(&al->size, memory_order_relaxed) / PAGE;
    uint64_t p0 = (start - base) / PAGE, p1 = (end - base) / PAGE;
    hm_runs *r = hm_alloc_runs(al);
    uint32_t n = atomic_load_explicit(&r->n, memory_order_relaxed);
    uint32_t first = hm_runs_find(r, n, p0);
    for (uint32_t i = first; i < n; i++) {
        uint64_t e = atomic_load_explicit(&r->entry[i], memory_order_relaxed);
        if (hm_run_first(e) >= p1) break;
        if (!(hm_run_attr(e) & HM_RUN_COMMIT)) {
            hm_detail_set("VirtualProtect: the range holds reserved pages that are not committed");
            st = HM_E_INVALID_ADDRESS;
            goto out;
        }
    }
    int err = 0;
    hm_run_change ch = {HM_RUN_COMMIT | HM_RUN_RESET, prot & HM_RUN_PROT_MASK, 0, 0};
    hm_runs *next = hm_runs_apply(r, npages, p0, p1, ch, &err);
    if (!next) {
        st = hm_errno_status(err, "map records");
        goto out;
    }
    if ((prot & HM_PAGE_GUARD) && (err = hm_special_attach(al, HM_WATCH_NONE, true))) {
        st = hm_errno_status(err, "guard pages");
        hm_runs_free(next);
        goto out;
    }
    bool special = atomic_load_explicit(&al->special, memory_order_relaxed) != 0;
    bool was_guard = special && hm_special_guarded(al, p0, p0 + 1); /* the old protection is the first page's */
    err = special ? hm_special_protect(al, p0, p1, hm_prot_linux(prot), (prot & HM_PAGE_GUARD) != 0)
                  : hm_os_protect((void *)start, end - start, hm_prot_linux(prot));
    if (err) {
        st = hm_errno_status(err, "mprotect");
        if (hm_restore_prot(al, r, p0, p1)) st = hm_books_broken("VirtualProtect");
        hm_runs_free(next);
        goto out;
    }
    uint32_t first_attr = hm_run_attr(atomic_load_explicit(&r->entry[first], memory_order_relaxed));
    *old = hm_prot_report(first_attr & HM_RUN_PROT_MASK, atomic_load_explicit(&al->alloc_protect, memory_order_relaxed)) |
           (was_guard ? HM_PAGE_GUARD : 0);
    hm_swap_runs(al, next);
out:
    pthread_mutex_unlock(&hm_map_lock);
    return st;
}

