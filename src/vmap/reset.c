/* reset.c — MEM_RESET and an honest MEM_RESET_UNDO (SPEC 2.6).
 *
 * MEM_RESET hands the committed pages of the range to the kernel as lazily freeable (MADV_FREE): they
 * stay committed with their protection, and each keeps its data until the kernel reclaims it, after
 * which it reads zero. Runs that held populated pages (pagemap: present or swapped) when the reset
 * happened get HM_RUN_RESET; pages that were never populated read zero whatever happens, so they need
 * no proof later.
 *
 * MEM_RESET_UNDO succeeds only where every flagged page provably kept its data. For each such page
 * it finds a non-zero word w and replaces it with itself by compare-and-swap. The CAS writes the page,
 * which cancels the lazy free from then on (the kernel keeps dirty pages); and it succeeds only if
 * the word still holds w, which a page dropped and refaulted as zero does not. A page that reads all
 * zero cannot be told apart from a dropped one, and a page without write access cannot be written:
 * both make the undo fail (it fails only too often, never too rarely). Flags are cleared on success
 * only, so a failed undo keeps failing.
 *
 * Write-watched allocations under the kernel mechanism are the exception: which pages were written
 * lives in their page-table entries (dirty.h), and a page the kernel drops after MADV_FREE takes its
 * entry with it, so a write would vanish from GetWriteWatch (SPEC 2.6: only decommit clears the watch
 * state). There MEM_RESET marks the pages cold instead (MADV_COLD): the kernel reclaims them first
 * under pressure, by swapping, which keeps both their data and their written state; nothing is lost,
 * so they carry no reset flag and MEM_RESET_UNDO succeeds without writing them. */
#include <errno.h>
#include <stdatomic.h>

#include "../os/os.h"
#include "rules.h"
#include "special.h"
#include "vmap_internal.h"

#define PM_BATCH 512

/* Range checks shared by both: [R2.2] reset of a range not inside one allocation is 487. */
static hm_alloc *reset_target(hm_account *acct, uintptr_t start, uintptr_t end, const char *what, hm_status *st)
{
    hm_alloc *a = hm_find_alloc(start);
    *st = HM_E_INVALID_ADDRESS;
    if (a && hm_alloc_owner(a) != acct) {
        *st = hm_not_owner(a);
        return NULL;
    }
    if (!a || !hm_alloc_reaches(a, end)) {
        hm_detail_set("%s: [%#lx, %#lx) is not inside one allocation", what, (unsigned long)start,
                      (unsigned long)end);
        return NULL;
    }
    return a;
}

/* Lowest and highest populated page in [p0, p1) (relative to base), by pagemap. Without pagemap
 * every page counts as populated. false when none is. */
static bool populated_span(uintptr_t base, uint64_t p0, uint64_t p1, uint64_t *lo, uint64_t *hi)
{
    if (!hm_os_cfg()->pagemap) {
        *lo = p0;
        *hi = p1;
        return true;
    }
    uint64_t pm[PM_BATCH];
    bool any = false;
    for (uint64_t p = p0; p < p1; p += PM_BATCH) {
        size_t n = p1 - p < PM_BATCH ? (size_t)(p1 - p) : PM_BATCH;
        if (hm_os_pagemap((void *)(base + p * PAGE), n, pm) != 0) {
            *lo = p0; /* unreadable: assume everything was populated */
            *hi = p1;
            return true;
        }
        for (size_t i = 0; i < n; i++) {
            if (!(pm[i] & (HM_OS_PAGEMAP_PRESENT | HM_OS_PAGEMAP_SWAPPED))) continue;
            if (!any) *lo = p + i;
            *hi = p + i + 1;
            any = true;
        }
    }
    return any;
}

hm_status hm_vmap_reset(hm_account *acct, uintptr_t start, uintptr_t end, void **out)
{
    hm_status st;
    hm_alloc *a = reset_target(acct, start, end, "MEM_RESET", &st);
    if (!a) return st;
    uintptr_t base = atomic_load_explicit(&a->base, memory_order_relaxed);
    uint64_t npages = atomic_load_explicit(&a->size, memory_order_relaxed) / PAGE;
    uint64_t p0 = (start - base) / PAGE, p1 = (end - base) / PAGE, clo, chi, lo, hi;
    hm_runs *old = hm_alloc_runs(a);
    *out = (void *)start;
    if (!hm_committed_span(old, npages, p0, p1, &clo, &chi)) return HM_OK; /* only reserved pages */
    bool watched = (atomic_load_explicit(&a->flags, memory_order_relaxed) & HM_AF_WATCH) && hm_watch_mode() == HM_WATCH_KERNEL;
    if (watched) {
        int err = hm_os_cold((void *)(base + clo * PAGE), (chi - clo) * PAGE);
        if (err) *out = NULL;
        return err ? hm_errno_status(err, "MEM_RESET") : HM_OK;
    }
    hm_runs *next = NULL;
    if (populated_span(base, clo, chi, &lo, &hi)) {
        int err = 0;
        next = hm_runs_apply(old, npages, lo, hi, (hm_run_change){~0u, HM_RUN_RESET, ~0u, 0}, &err);
        if (!next) return hm_errno_status(err, "map records");
    }
    int err = hm_os_lazy_free((void *)(base + clo * PAGE), (chi - clo) * PAGE);
    if (err) {
        if (next) hm_runs_free(next);
        *out = NULL;
        return hm_errno_status(err, "MEM_RESET");
    }
    if (next) hm_swap_runs(a, next);
    return HM_OK;
}

/* Proves that the page at p kept its data and pins it (see the file comment). */
static bool page_kept(uintptr_t p)
{
    _Atomic uint64_t *w = (_Atomic uint64_t *)p;
    for (int attempt = 0; attempt < 4; attempt++) {
        size_t i = 0;
        uint64_t v = 0;
        for (; i < PAGE / 8; i++)
            if ((v = atomic_load_explicit(&w[i], memory_order_relaxed)) != 0) break;
        if (i == PAGE / 8) return false;
        if (atomic_compare_exchange_strong(&w[i], &v, v)) return true;
        /* the word changed: either the program wrote it, or the page was dropped; look again */
    }
    return false;
}

hm_status hm_vmap_reset_undo(hm_account *acct, uintptr_t start, uintptr_t end, void **out)
{
    hm_status st;
    hm_alloc *a = reset_target(acct, start, end, "MEM_RESET_UNDO", &st);
    if (!a) return st;
    uintptr_t base = atomic_load_explicit(&a->base, memory_order_relaxed);
    uint64_t npages = atomic_load_explicit(&a->size, memory_order_relaxed) / PAGE;
    uint64_t p0 = (start - base) / PAGE, p1 = (end - base) / PAGE;
    hm_runs *r = hm_alloc_runs(a);
    uint32_t n = atomic_load_explicit(&r->n, memory_order_relaxed);
    bool flagged = false;
    for (uint32_t i = hm_runs_find(r, n, p0); i < n; i++) {
        uint64_t e = atomic_load_explicit(&r->entry[i], memory_order_relaxed);
        uint64_t lo = hm_run_first(e), hi = i + 1 < n ? hm_run_first(atomic_load_explicit(&r->entry[i + 1], memory_order_relaxed)) : npages;
        if (lo >= p1) break;
        uint32_t attr = hm_run_attr(e);
        if (!(attr & HM_RUN_RESET)) continue;
        flagged = true;
        if (lo < p0) lo = p0;
        if (hi > p1) hi = p1;
        /* proof writes the page: not possible on a guard page without firing it (nor honest) */
        bool ok = hm_prot_writable(attr & HM_RUN_PROT_MASK) && !hm_special_guarded(a, lo, hi);
        for (uint64_t p = lo; ok && p < hi; p++) ok = page_kept(base + p * PAGE);
        if (!ok) {
            hm_detail_set("MEM_RESET_UNDO: a page at or after %#lx may have lost its data after MEM_RESET",
                          (unsigned long)(base + lo * PAGE));
            return HM_E_NOT_ENOUGH_MEMORY;
        }
    }
    if (flagged) {
        int err = 0;
        hm_runs *next = hm_runs_apply(r, npages, p0, p1, (hm_run_change){~(uint32_t)HM_RUN_RESET, 0, ~0u, 0}, &err);
        if (!next) return hm_errno_status(err, "map records");
        hm_swap_runs(a, next);
    }
    *out = (void *)start;
    return HM_OK;
}
