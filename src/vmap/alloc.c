/* alloc.c — VirtualAlloc (SPEC 2.2): argument rules, placement of new allocations (arena chunks,
 * fixed addresses, large pages) and commit of reserved pages. MEM_RESET and MEM_RESET_UNDO are in
 * reset.c. The shape of every operation is described in vmap.c. */
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


/* ---- VirtualAlloc ----------------------------------------------------------------------------- */

/* [R2.2] argument rules, before any state is looked at: all error 87. */
static bool alloc_args_valid(void *addr, size_t size, uint32_t type, uint32_t prot)
{
    const hm_os_config *c = hm_os_cfg();
    uintptr_t a = (uintptr_t)addr;
    if (type & ~HM_ALLOC_TYPE_KNOWN) return false;
    if (!(type & (HM_MEM_COMMIT | HM_MEM_RESERVE | HM_MEM_RESET | HM_MEM_RESET_UNDO))) return false;
    if ((type & HM_MEM_RESET) && type != HM_MEM_RESET) return false;           /* RESET alone */
    if ((type & HM_MEM_RESET_UNDO) && type != HM_MEM_RESET_UNDO) return false; /* RESET_UNDO alone */
    if (size == 0) return false;
    if (!hm_prot_valid(prot)) return false;
    /* MEM_WRITE_WATCH: only on a new reservation (SPEC 2.2), and not of large pages or MEM_PHYSICAL */
    if ((type & HM_MEM_WRITE_WATCH) && (!(type & HM_MEM_RESERVE) || (type & (HM_MEM_LARGE_PAGES | HM_MEM_PHYSICAL))))
        return false;
    if ((type & HM_MEM_LARGE_PAGES) &&
        ((type & (HM_MEM_RESERVE | HM_MEM_COMMIT)) != (HM_MEM_RESERVE | HM_MEM_COMMIT) ||
         size % c->huge_page_size || a % c->huge_page_size))
        return false;
    if ((type & HM_MEM_PHYSICAL) &&
        (!(type & HM_MEM_RESERVE) || (type & HM_MEM_COMMIT) || prot != HM_PAGE_READWRITE))
        return false;
    if (size > c->max_address + 1 - c->min_address) return false;
    if (addr) {
        if (a < c->min_address || a > c->max_address) return false;
        if (size > c->max_address + 1 - a) return false; /* wraps or ends beyond user space */
    } else if (type & (HM_MEM_RESET | HM_MEM_RESET_UNDO)) {
        return false;
    }
    return true;
}

static hm_alloc *new_record(hm_account *owner, uintptr_t base, uint64_t size, uint32_t prot, uint32_t flags,
                            uint32_t attr, int *err)
{
    hm_alloc *a = hm_pool_alloc(&hm_alloc_pool, err);
    if (!a) return NULL;
    hm_account_name(owner);
    atomic_store_explicit(&a->base, base, memory_order_relaxed);
    atomic_store_explicit(&a->size, size, memory_order_relaxed);
    atomic_store_explicit(&a->alloc_protect, prot, memory_order_relaxed);
    atomic_store_explicit(&a->flags, flags, memory_order_relaxed);
    atomic_store_explicit(&a->runs, hm_runs_inline(attr), memory_order_relaxed);
    atomic_store_explicit(&a->owner, (uintptr_t)owner, memory_order_relaxed);
    atomic_store_explicit(&a->special, 0, memory_order_relaxed);
    a->chunk = NULL;
    atomic_store_explicit(&a->committed, (attr & HM_RUN_COMMIT) ? size / PAGE : 0, memory_order_relaxed);
    a->busy = false;
    return a;
}

/* Places an allocation at exactly want, across chunks and unmapped space alike. */
static int place_fixed(uintptr_t want, uint64_t bytes, uint32_t *flags, hm_chunk **chunk)
{
    hm_arena_kind kind;
    int err = hm_arena_claim(want, bytes, &kind, chunk);
    if (!err && kind == HM_ARENA_DIRECT) *flags |= HM_AF_DIRECT;
    if (!err && kind == HM_ARENA_MIXED) *flags |= HM_AF_MIXED;
    return err;
}

/* Backs a large-page allocation: hugetlb pages where reserved, else transparent huge pages. */
static int place_large(uintptr_t want, uint64_t size, uint32_t *flags, uintptr_t *base, hm_chunk **chunk)
{
    const hm_os_config *c = hm_os_cfg();
    void *p;
    if (!want && c->hugetlb_free > 0 && (uint64_t)c->hugetlb_free * c->huge_page_size >= size &&
        hm_os_map_hugetlb(size, &p) == 0) {
        *flags |= HM_AF_HUGETLB | HM_AF_DIRECT;
        *base = (uintptr_t)p;
        return 0;
    }
    if (c->thp <= 0) {
        hm_detail_set("MEM_LARGE_PAGES: no hugetlb pages are reserved (vm.nr_hugepages) and "
                      "transparent huge pages are disabled");
        return ENOMEM;
    }
    int err;
    if (want) {
        err = place_fixed(want, size, flags, chunk);
        p = (void *)want;
    } else {
        err = hm_os_reserve(NULL, size, c->huge_page_size, &p);
        *flags |= HM_AF_DIRECT;
    }
    if (err) return err;
    err = hm_os_hugepage_hint(p, size);
    if (err) {
        if (hm_give_back((uintptr_t)p, size, *flags, *chunk)) err = EFAULT; /* books and kernel differ */
        return err;
    }
    *base = (uintptr_t)p;
    return 0;
}

/* The detail of a refusal by the budget: the manager's own, or an enclosing manager's (account.h). */
static void refused_detail(hm_account *acct, const char *fresh, uint64_t bytes, unsigned level)
{
    hm_account *r = hm_account_refuser;
    if (!r || r == acct) {
        hm_detail_set("MEM_COMMIT of %#lx %sbytes at level %u: the manager's budget refuses it", (unsigned long)bytes,
                      fresh, level);
        return;
    }
    unsigned up = 0;
    for (hm_account *p = acct; p && p != r; p = p->parent) up++;
    hm_detail_set("MEM_COMMIT of %#lx %sbytes at level %u: the budget of an enclosing manager (%u level%s up, "
                  "limit %#lx) refuses it", (unsigned long)bytes, fresh, level, up, up == 1 ? "" : "s",
                  (unsigned long)r->threshold[2]);
}

/* Reserves (and with MEM_COMMIT commits) a new allocation, charged to acct at level; align (0 or a
 * power of two of 64 KiB to 32 MiB) and tag are for layers above (hm_vmap_reserve_tagged). */
static hm_status reserve(hm_account *acct, unsigned level, uintptr_t want, size_t size, uint32_t type, uint32_t prot,
                         size_t align, uintptr_t tag, unsigned how, void **out)
{
    uint64_t bytes = want ? ((want + size + PAGE - 1) & ~(PAGE - 1)) - (want & ~(GRAN - 1))
                          : (size + PAGE - 1) & ~(PAGE - 1);                       /* [R2.2] rounding */
    if (want) want &= ~(GRAN - 1);
    uint64_t ngran = (bytes + GRAN - 1) / GRAN;
    bool commit = type & HM_MEM_COMMIT;
    uint32_t flags = 0;
    if (type & HM_MEM_LARGE_PAGES) flags |= HM_AF_LARGE;
    if (type & HM_MEM_PHYSICAL) flags |= HM_AF_PHYSICAL;

    if (want) { /* [R2.2] a reservation may not overlap any allocation */
        hm_alloc *next = hm_radix_next(want >> 16);
        if (next && atomic_load_explicit(&next->base, memory_order_relaxed) < want + ngran * GRAN) {
            hm_detail_set("MEM_RESERVE at %#lx: the range overlaps an existing allocation", (unsigned long)want);
            return HM_E_INVALID_ADDRESS;
        }
    }
    if (!hm_account_take_va(acct, bytes)) { /* SPEC 3.6 */
        hm_detail_set("MEM_RESERVE of %#lx bytes: the manager's address-space budget (va.limit = %#lx) is spent",
                      (unsigned long)bytes, (unsigned long)acct->va_limit);
        return HM_E_NOT_ENOUGH_MEMORY;
    }
    if (commit && !hm_account_admit(acct, bytes, level)) { /* SPEC 3.2: admission and charge, one step */
        hm_account_give_va(acct, bytes);
        refused_detail(acct, "", bytes, level);
        return HM_E_COMMITMENT_LIMIT;
    }
    int err = 0;
    bool writable = (how & HM_RESERVE_WRITABLE) && !commit;
    if (writable) flags |= HM_AF_WRITABLE;
    uint32_t attr = commit ? (HM_RUN_COMMIT | (prot & HM_RUN_PROT_MASK)) : writable ? HM_RUN_FRESH : 0;
    hm_alloc *a = new_record(acct, 0, bytes, prot, flags, attr, &err);
    if (!a) {
        hm_account_give_va(acct, bytes);
        if (commit) hm_account_uncharge(acct, bytes);
        return hm_errno_status(err, "map records");
    }

    /* place */
    uintptr_t base = 0;
    hm_chunk *chunk = NULL;
    if (flags & HM_AF_LARGE) {
        err = place_large(want, bytes, &flags, &base, &chunk);
    } else if (want) {
        err = place_fixed(want, bytes, &flags, &chunk);
        base = want;
    } else if (how & HM_RESERVE_OWN) { /* a mapping of its own at align (hm_vmap_reserve_tagged) */
        void *p;
        err = hm_os_reserve(NULL, bytes, align > GRAN ? align : GRAN, &p);
        if (!err) hm_os_name(p, bytes, "hostmem");
        base = (uintptr_t)p;
        flags |= HM_AF_DIRECT;
    } else if (ngran * GRAN <= HM_ARENA_DIRECT_MIN) {
        err = hm_arena_place(ngran, align > GRAN ? align / GRAN : 1, type & HM_MEM_TOP_DOWN, &base, &chunk);
    } else {
        /* Big: its own mapping, aligned so that the radix tree stores it in few slots. */
        size_t big_align = bytes >= ((uint64_t)128 << 30) ? ((size_t)16 << 30) : ((size_t)32 << 20);
        if (big_align < align) big_align = align;
        void *p;
        err = hm_os_reserve(NULL, bytes, big_align, &p);
        if (err) err = hm_os_reserve(NULL, bytes, align > GRAN ? align : GRAN, &p);
        if (!err) hm_os_name(p, bytes, "hostmem");
        base = (uintptr_t)p;
        flags |= HM_AF_DIRECT;
    }
    if (err) {
        hm_drop_record(a);
        hm_account_give_va(acct, bytes);
        if (commit) hm_account_uncharge(acct, bytes);
        if (err == EFAULT) return hm_books_broken("large-page reservation");
        return hm_errno_status(err, want ? "reserve at a fixed address" : "reserve address space");
    }
    if (tag) flags |= HM_AF_TAGGED;
    bool readable = how & HM_RESERVE_READABLE;
    if (readable) flags |= HM_AF_READABLE;
    atomic_store_explicit(&a->base, base, memory_order_relaxed);
    atomic_store_explicit(&a->flags, flags, memory_order_relaxed);
    atomic_store_explicit(&a->tag, tag, memory_order_relaxed);
    a->chunk = chunk;

    const char *what = NULL;
    err = hm_radix_prepare(base >> 16, (base >> 16) + ngran);
    if (err) what = "map records";
    /* write watch, and guard pages from the start: the record of special pages (special.h) */
    uint32_t watch = type & HM_MEM_WRITE_WATCH ? (uint32_t)hm_watch_mode() : HM_WATCH_NONE;
    bool special = watch || (commit && (prot & HM_PAGE_GUARD));
    if (!err && special) {
        err = hm_special_attach(a, watch, commit && (prot & HM_PAGE_GUARD));
        if (err) what = watch ? "write watch" : "guard pages";
    }
    if (!err && (readable || writable) && !commit) { /* placement leaves PROT_NONE: reserved pages read as
                                                        zeros here, or fresh ones are read-write */
        err = hm_os_protect((void *)base, bytes, hm_run_kernel_prot(a, attr));
        if (err) what = "reserve";
    }
    if (!err && commit) { /* the new pages are empty, so PROT_* alone commits them */
        err = special ? hm_special_protect(a, 0, bytes / PAGE, hm_prot_linux(prot), (prot & HM_PAGE_GUARD) != 0)
                      : hm_os_protect((void *)base, bytes, hm_prot_linux(prot));
        if (err) what = "commit";
    }
    if (err) {
        hm_status st = hm_errno_status(err, what);
        hm_special_detach(a); /* before the address space goes back */
        if (hm_give_back(base, bytes, flags, chunk)) st = hm_books_broken(what);
        hm_drop_record(a);
        hm_account_give_va(acct, bytes);
        if (commit) hm_account_uncharge(acct, bytes);
        return st;
    }
    hm_meta_publish(a);
    hm_radix_set(base >> 16, (base >> 16) + ngran, a);
    hm_alloc_summarize(a);
    hm_book.allocations++;
    hm_book.runs++;
    hm_book.reserved += bytes;
    if (commit) hm_book.committed += bytes;
    *out = (void *)base;
    return HM_OK;
}

/* Commits pages [start, end) of an existing allocation; newly committed pages are admitted at level. */
static hm_status commit(hm_account *acct, unsigned level, uintptr_t start, uintptr_t end, uint32_t prot, void **out)
{
    hm_alloc *a = hm_find_alloc(start);
    if (a && hm_alloc_owner(a) != acct) return hm_not_owner(a);
    if (!a || !hm_alloc_reaches(a, end)) { /* [R2.2] inside one allocation */
        hm_detail_set("MEM_COMMIT: [%#lx, %#lx) is not inside one reserved allocation",
                      (unsigned long)start, (unsigned long)end);
        return HM_E_INVALID_ADDRESS;
    }
    if (atomic_load_explicit(&a->flags, memory_order_relaxed) & HM_AF_PHYSICAL) {
        hm_detail_set("MEM_COMMIT: the allocation was reserved with MEM_PHYSICAL");
        return HM_E_INVALID_PARAMETER;
    }
    uintptr_t base = atomic_load_explicit(&a->base, memory_order_relaxed);
    uint64_t npages = atomic_load_explicit(&a->size, memory_order_relaxed) / PAGE;
    uint64_t p0 = (start - base) / PAGE, p1 = (end - base) / PAGE;
    hm_runs *old = hm_alloc_runs(a);
    uint32_t attr = HM_RUN_COMMIT | (prot & HM_RUN_PROT_MASK);
    hm_run_change ch = {HM_RUN_RESET, attr, 0, attr}; /* [R2.7.2] committed pages keep their data */
    int err = 0;
    hm_runs *next = hm_runs_apply(old, npages, p0, p1, ch, &err);
    if (!next) return hm_errno_status(err, "map records");
    /* [R3.2] only pages that were reserved cost anything; re-commit is free */
    uint64_t grow = (hm_runs_committed(next, npages) - atomic_load_explicit(&a->committed, memory_order_relaxed)) * PAGE;
    if (!hm_account_admit(acct, grow, level)) {
        hm_runs_free(next);
        refused_detail(acct, "new ", grow, level);
        return HM_E_COMMITMENT_LIMIT;
    }
    if ((prot & HM_PAGE_GUARD) && (err = hm_special_attach(a, HM_WATCH_NONE, true))) {
        hm_runs_free(next);
        hm_account_uncharge(acct, grow);
        return hm_errno_status(err, "guard pages");
    }
    if (atomic_load_explicit(&a->special, memory_order_relaxed)) {
        err = hm_special_protect(a, p0, p1, hm_prot_linux(prot), (prot & HM_PAGE_GUARD) != 0);
    } else if (!hm_runs_kernel_prot_is(a, old, p0, p1, hm_prot_linux(prot))) { /* (fresh pages: no call) */
        hm_alloc_unlock_busy(a);
        err = hm_os_protect((void *)start, end - start, hm_prot_linux(prot));
        hm_alloc_relock(a);
    }
    if (err) {
        hm_status st = hm_errno_status(err, "commit");
        if (hm_restore_prot(a, old, p0, p1)) st = hm_books_broken("commit");
        hm_runs_free(next);
        hm_account_uncharge(acct, grow);
        return st;
    }
    hm_swap_runs(a, next);
    *out = (void *)start;
    return HM_OK;
}

hm_status hm_vmap_alloc(hm_account *acct, unsigned level, void *addr, size_t size, uint32_t type, uint32_t prot,
                        void **base)
{
    *base = NULL;
    hm_status st = hm_vmap_init();
    if (st) return st;
    if (!alloc_args_valid(addr, size, type, prot)) {
        hm_detail_set("VirtualAlloc: invalid parameter (type %#x, protection %#x, size %zu, address %p)",
                      type, prot, size, addr);
        return HM_E_INVALID_PARAMETER;
    }
    uintptr_t a = (uintptr_t)addr;
    pthread_mutex_lock(&hm_map_lock);
    uintptr_t start = a & ~(PAGE - 1), end = (a + size + PAGE - 1) & ~(PAGE - 1);
    if (type & HM_MEM_RESET) st = hm_vmap_reset(acct, start, end, base);
    else if (type & HM_MEM_RESET_UNDO) st = hm_vmap_reset_undo(acct, start, end, base);
    else if ((type & HM_MEM_RESERVE) || !addr) st = reserve(acct, level, a, size, type, prot, 0, 0, 0, base);
    else st = commit(acct, level, start, end, prot, base);
    pthread_mutex_unlock(&hm_map_lock);
    return st;
}


hm_status hm_vmap_reserve_tagged(hm_account *acct, size_t size, size_t align, uintptr_t tag, unsigned how, void **base)
{
    *base = NULL;
    hm_status st = hm_vmap_init();
    if (st) return st;
    /* (above HM_ARENA_DIRECT_MIN a reservation gets a mapping of its own, 32 MiB aligned anyway; the
     * arena's chunks are aligned to 32 MiB at most, so a larger alignment takes a mapping of its own) */
    if (!size || size > hm_os_cfg()->max_address || align < GRAN || align > hm_os_cfg()->max_address / 4 ||
        (align & (align - 1)) || !tag)
        return HM_E_INVALID_PARAMETER;
    if (align > ((size_t)32 << 20)) how |= HM_RESERVE_OWN;
    pthread_mutex_lock(&hm_map_lock);
    st = reserve(acct, 2, 0, size, HM_MEM_RESERVE, HM_PAGE_NOACCESS, align, tag, how, base);
    pthread_mutex_unlock(&hm_map_lock);
    return st;
}
