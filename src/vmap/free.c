/* free.c — VirtualFree (SPEC 2.3): release of whole allocations, however they were placed, and
 * decommit of page ranges. Every step that can fail comes before the first one that cannot be undone. */
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


/* ---- VirtualFree ------------------------------------------------------------------------------ */

/* Release of an allocation that lies partly in chunks, partly in mappings of its own: every step
 * that can fail comes before the first one that cannot be undone (discarding data). */
static hm_status release_mixed(hm_alloc *a, hm_runs *r)
{
    uintptr_t base = atomic_load_explicit(&a->base, memory_order_relaxed);
    uint64_t size = atomic_load_explicit(&a->size, memory_order_relaxed), lo, hi;
    bool any = hm_committed_span(r, size / PAGE, 0, size / PAGE, &lo, &hi), partial = false;
    int err = any ? hm_os_protect((void *)(base + lo * PAGE), (hi - lo) * PAGE, HM_OS_PROT_NONE) : 0;
    if (!err) err = hm_arena_unmap_gaps(base, size, &partial);
    if (err) {
        hm_status st = hm_errno_status(err, "release");
        if (partial || (any && hm_restore_prot(a, r, lo, hi))) return hm_books_broken("release");
        return st;
    }
    /* The chunk parts must be empty before they are free again. MADV_DONTNEED does not fail on our own
     * anonymous memory; if it ever did, the gaps are gone already, so the release goes on and the
     * chunk parts stay marked (quarantined, PROT_NONE) instead of being handed out with old data. */
    if (any && hm_arena_discard_chunk_parts(base, size)) hm_arena_quarantine(base, size);
    else hm_arena_unmark(base, size);
    return HM_OK;
}

/* hm_kernel_decommit, with the map lock dropped while the calls run unless a has special pages or
 * the plan needs the neighbours to stay as they are (vmap_internal.h). */
static hm_status kernel_decommit(hm_alloc *a, const hm_runs *r, uint64_t p0, uint64_t p1, const char *what)
{
    hm_decommit_plan plan = hm_decommit_plan_for(a, r, p0, p1);
    if (plan == HM_DECOMMIT_DISCARD_FIRST_LOCKED || atomic_load_explicit(&a->special, memory_order_relaxed))
        return hm_kernel_decommit(a, r, p0, p1, plan, what);
    hm_alloc_unlock_busy(a);
    hm_status st = hm_kernel_decommit(a, r, p0, p1, plan, what);
    hm_alloc_relock(a);
    return st;
}

/* Release of a readable or writable allocation from a chunk (HM_AF_READABLE, HM_AF_WRITABLE): the
 * arena takes its granules back PROT_NONE and empty, reserved pages included. The protection first (a
 * failure puts every run back), then the committed pages' data, and a writable one's fresh pages'
 * (nothing should have written them, but nothing stopped a stray write either). */
static hm_status release_readable(hm_alloc *a, hm_runs *r)
{
    uintptr_t base = atomic_load_explicit(&a->base, memory_order_relaxed);
    uint64_t size = atomic_load_explicit(&a->size, memory_order_relaxed), lo, hi;
    bool any = hm_committed_span(r, size / PAGE, 0, size / PAGE, &lo, &hi);
    if (atomic_load_explicit(&a->flags, memory_order_relaxed) & HM_AF_WRITABLE) { /* (fresh pages took writes) */
        any = true;
        lo = 0;
        hi = size / PAGE;
    }
    int err = hm_os_protect((void *)base, size, HM_OS_PROT_NONE);
    if (!err && any) err = hm_os_discard((void *)(base + lo * PAGE), (hi - lo) * PAGE);
    if (!err) return HM_OK;
    hm_status st = hm_errno_status(err, "release");
    if (hm_restore_prot(a, r, 0, size / PAGE)) return hm_books_broken("release");
    return st;
}

/* Releases a (its owner's charge and address space go back). */
static hm_status release(hm_alloc *a)
{
    uintptr_t base = atomic_load_explicit(&a->base, memory_order_relaxed);
    uint64_t size = atomic_load_explicit(&a->size, memory_order_relaxed);
    uint64_t ngran = (size + GRAN - 1) / GRAN;
    hm_runs *r = hm_alloc_runs(a);
    uint32_t flags = atomic_load_explicit(&a->flags, memory_order_relaxed);
    if (flags & HM_AF_DIRECT) { /* munmap alone empties it; a failure leaves it whole */
        int err = hm_os_unmap((void *)base, size);
        if (err) return hm_errno_status(err, "release");
    } else if (flags & HM_AF_MIXED) {
        hm_status st = release_mixed(a, r);
        if (st) return st;
    } else if (flags & (HM_AF_READABLE | HM_AF_WRITABLE)) {
        hm_status st = release_readable(a, r);
        if (st) return st;
        hm_arena_unplace(a->chunk, base, ngran);
    } else {
        uint64_t lo, hi;
        if (hm_committed_span(r, size / PAGE, 0, size / PAGE, &lo, &hi)) {
            hm_status st = kernel_decommit(a, r, lo, hi, "release");
            if (st) return st;
        }
        hm_arena_unplace(a->chunk, base, ngran);
    }
    hm_special_detach(a); /* (the map lock keeps the address space from being reused before this) */
    hm_radix_set(base >> 16, (base >> 16) + ngran, NULL);
    hm_book.allocations--;
    hm_book.runs -= atomic_load_explicit(&r->n, memory_order_relaxed);
    hm_book.reserved -= size;
    uint64_t committed = atomic_load_explicit(&a->committed, memory_order_relaxed);
    hm_book.committed -= committed * PAGE;
    hm_account_uncharge(hm_alloc_owner(a), committed * PAGE);
    hm_account_give_va(hm_alloc_owner(a), size);
    hm_drop_record(a);
    return HM_OK;
}

static hm_status decommit(hm_alloc *a, uint64_t p0, uint64_t p1)
{
    uint64_t npages = atomic_load_explicit(&a->size, memory_order_relaxed) / PAGE;
    hm_runs *old = hm_alloc_runs(a);
    uint64_t lo, hi;
    if (!hm_committed_span(old, npages, p0, p1, &lo, &hi)) return HM_OK; /* all reserved already */
    int err = 0;
    hm_runs *next = hm_runs_apply(old, npages, lo, hi, (hm_run_change){0, 0, 0, 0}, &err);
    if (!next) return hm_errno_status(err, "map records");
    hm_status st = kernel_decommit(a, old, lo, hi, "decommit");
    if (st) {
        hm_runs_free(next);
        return st;
    }
    hm_special_decommit(a, lo, hi); /* guard and watch state go with the data (SPEC 2.6) */
    hm_swap_runs(a, next);
    return HM_OK;
}

hm_status hm_vmap_free(hm_account *acct, void *addr, size_t size, uint32_t type)
{
    hm_status st = hm_vmap_init();
    if (st) return st;
    uintptr_t a = (uintptr_t)addr;
    const hm_os_config *c = hm_os_cfg();
    /* [R2.3] argument rules: 87 */
    if ((type != HM_MEM_DECOMMIT && type != HM_MEM_RELEASE) || !addr ||
        (type == HM_MEM_RELEASE && size != 0) || a > c->max_address || size > c->max_address + 1 - a) {
        hm_detail_set("VirtualFree: invalid parameter (type %#x, size %zu, address %p)", type, size, addr);
        return HM_E_INVALID_PARAMETER;
    }
    pthread_mutex_lock(&hm_map_lock);
    hm_alloc *al = hm_find_alloc(a);
    if (!al) { /* SPEC 3.1: not allocated through the host (the C and Win32 surfaces say 487) */
        hm_detail_set("VirtualFree: %p is in no allocation", addr);
        st = HM_E_HOST_INVALIDOPERATION;
        goto out;
    }
    if (hm_alloc_owner(al) != acct) {
        st = hm_not_owner(al);
        goto out;
    }
    uintptr_t base = atomic_load_explicit(&al->base, memory_order_relaxed);
    uint64_t asize = atomic_load_explicit(&al->size, memory_order_relaxed);
    if (size == 0) { /* release, or decommit of the whole allocation: only at the base */
        if ((a & ~(PAGE - 1)) != base) {
            hm_detail_set("VirtualFree: %p is not the base of its allocation (%p)", addr, (void *)base);
            st = HM_E_INVALID_ADDRESS;
            goto out;
        }
        st = type == HM_MEM_RELEASE ? release(al) : decommit(al, 0, asize / PAGE);
        goto out;
    }
    uintptr_t start = a & ~(PAGE - 1), end = (a + size + PAGE - 1) & ~(PAGE - 1);
    if (end - base > asize) {
        hm_detail_set("MEM_DECOMMIT: the range runs past the end of its allocation");
        st = HM_E_INVALID_PARAMETER;
        goto out;
    }
    st = decommit(al, (start - base) / PAGE, (end - base) / PAGE);
out:
    pthread_mutex_unlock(&hm_map_lock);
    return st;
}


hm_status hm_vmap_release_all(hm_account *acct) { return hm_vmap_release_tagged(acct, 0, 0); }

hm_status hm_vmap_release_tagged(hm_account *acct, uintptr_t mask, uintptr_t tag)
{
    hm_status st = HM_OK;
    pthread_mutex_lock(&hm_map_lock);
    /* (release drops the lock for its system calls: the walk goes on from an index, not a record) */
    for (uint64_t at = 0;;) {
        hm_alloc *a = hm_radix_next(at);
        if (!a) break;
        if (a->busy) { /* another writer's: wait, then look at that index again */
            hm_map_quiesce();
            continue;
        }
        uintptr_t end = atomic_load_explicit(&a->base, memory_order_relaxed) + atomic_load_explicit(&a->size, memory_order_relaxed);
        at = ((end - 1) >> 16) + 1;
        if (hm_alloc_owner(a) == acct && (atomic_load_explicit(&a->tag, memory_order_relaxed) & mask) == tag) {
            hm_status s = release(a);
            if (s && !st) st = s;
        }
    }
    pthread_mutex_unlock(&hm_map_lock);
    return st;
}
