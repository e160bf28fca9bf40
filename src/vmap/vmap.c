/* vmap.c — the writer side of the address-space map: VirtualAlloc, VirtualFree, VirtualProtect
 * (SPEC 2.2-2.4). Every operation has the same shape (after Wine's allocate_virtual_memory):
 *   validate and round (no lock, no state), then under map_lock: find the allocation, check the
 *   state rules, build the new run table, make the system calls, and only when they all succeeded
 *   publish the new table. A failed call rolls back what the kernel did, so the map and the kernel
 *   agree after every failure (all-or-nothing, SPEC 2.7.3). Rule tags [R2.x] point at SPEC.md.
 * The read side (queries) is query.c; reset.c holds MEM_RESET and MEM_RESET_UNDO. */
#define _GNU_SOURCE
#include "vmap.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "../os/os.h"
#include "radix.h"
#include "rules.h"
#include "vmap_internal.h"

#define PAGE ((uintptr_t)4096)
#define GRAN ((uintptr_t)65536)

pthread_mutex_t hm_map_lock = PTHREAD_MUTEX_INITIALIZER;
hm_books hm_book;
static hm_pool alloc_pool = HM_POOL_INIT("allocation", sizeof(hm_alloc), 64 * 1024);

/* ---- failure detail --------------------------------------------------------------------------- */

static _Thread_local char detail[256];

void hm_detail_set(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(detail, sizeof detail, fmt, ap);
    va_end(ap);
}

const char *hm_detail_get(void) { return detail; }

hm_status hm_errno_status(int err, const char *what)
{
    const hm_os_config *c = hm_os_cfg();
    if (err == ENOMEM && c->max_map_count > 0)
        hm_detail_set("%s: %s (the kernel may have reached vm.max_map_count = %ld mappings)", what,
                      strerror(err), c->max_map_count);
    else hm_detail_set("%s: %s", what, strerror(err));
    switch (err) {
    case EEXIST: return HM_E_INVALID_ADDRESS;
    case EINVAL: return HM_E_INVALID_PARAMETER;
    default: return HM_E_NOT_ENOUGH_MEMORY;
    }
}

/* A rollback failed too: the map no longer matches the kernel (SPEC 3.4: E_FAIL). */
static hm_status books_broken(const char *what)
{
    char first[sizeof detail];
    memcpy(first, detail, sizeof first);
    hm_detail_set("%s failed and could not be undone (%.160s): the map no longer matches the kernel", what, first);
    return HM_E_FAIL;
}

/* ---- init ------------------------------------------------------------------------------------ */

static hm_status init_status = 1; /* 1: not yet run */
static pthread_once_t init_once = PTHREAD_ONCE_INIT;

static void init_run(void)
{
    const hm_os_config *c = hm_os_init();
    if (c->page_size != 4096) {
        fprintf(stderr, "hostmem: this kernel uses %zu-byte pages; hostmem implements Windows' 4 KiB "
                        "pages exactly and refuses to run with any other page size.\n", c->page_size);
        init_status = HM_E_NOT_SUPPORTED;
        return;
    }
    init_status = HM_OK;
}

hm_status hm_vmap_init(void)
{
    pthread_once(&init_once, init_run);
    if (init_status != HM_OK)
        hm_detail_set("hostmem needs 4096-byte pages; this kernel uses %zu", hm_os_cfg()->page_size);
    return init_status;
}

/* ---- records ----------------------------------------------------------------------------------- */

hm_alloc *hm_find_alloc(uintptr_t addr)
{
    hm_alloc *a = hm_radix_lookup(addr >> 16);
    if (!a) return NULL;
    uintptr_t base = atomic_load_explicit(&a->base, memory_order_relaxed);
    uint64_t size = atomic_load_explicit(&a->size, memory_order_relaxed);
    return addr >= base && addr - base < size ? a : NULL;
}

/* A one-run table stands inline in the record (vmap.h); writers see it through this scratch table,
 * valid until the next call (map lock held). */
static _Alignas(16) unsigned char scratch_mem[sizeof(hm_runs) + sizeof(uint64_t)];

hm_runs *hm_alloc_runs(hm_alloc *a)
{
    uintptr_t w = atomic_load_explicit(&a->runs, memory_order_relaxed);
    if (!hm_runs_is_inline(w)) return (hm_runs *)w;
    hm_runs *s = (hm_runs *)scratch_mem;
    atomic_store_explicit(&s->cap, 1, memory_order_relaxed);
    atomic_store_explicit(&s->n, 1, memory_order_relaxed);
    atomic_store_explicit(&s->entry[0], hm_run_make(0, hm_runs_inline_attr(w)), memory_order_relaxed);
    return s;
}

static void free_runs_word(uintptr_t w)
{
    if (!hm_runs_is_inline(w)) hm_runs_free((hm_runs *)w);
}

static uint64_t count_committed(const hm_runs *r, uint64_t npages)
{
    uint32_t n = atomic_load_explicit(&((hm_runs *)r)->n, memory_order_relaxed);
    uint64_t total = 0;
    for (uint32_t i = 0; i < n; i++) {
        uint64_t e = atomic_load_explicit(&((hm_runs *)r)->entry[i], memory_order_relaxed);
        uint64_t b = i + 1 < n ? hm_run_first(atomic_load_explicit(&((hm_runs *)r)->entry[i + 1], memory_order_relaxed)) : npages;
        if (hm_run_attr(e) & HM_RUN_COMMIT) total += b - hm_run_first(e);
    }
    return total;
}

void hm_swap_runs(hm_alloc *a, hm_runs *next)
{
    uintptr_t old_word = atomic_load_explicit(&a->runs, memory_order_relaxed);
    hm_runs *old = hm_alloc_runs(a);
    uint64_t npages = atomic_load_explicit(&a->size, memory_order_relaxed) / PAGE;
    uint64_t c = count_committed(next, npages);
    hm_book.committed = hm_book.committed - a->committed * PAGE + c * PAGE;
    a->committed = c;
    hm_book.runs += atomic_load_explicit(&next->n, memory_order_relaxed);
    hm_book.runs -= atomic_load_explicit(&old->n, memory_order_relaxed);
    uintptr_t word = (uintptr_t)next;
    if (atomic_load_explicit(&next->n, memory_order_relaxed) == 1) { /* goes inline */
        word = hm_runs_inline(hm_run_attr(atomic_load_explicit(&next->entry[0], memory_order_relaxed)));
        hm_runs_free(next);
    }
    atomic_store_explicit(&a->runs, word, memory_order_release);
    free_runs_word(old_word);
}

/* Puts the kernel's protections over pages [p0, p1) back to what table r says. */
int hm_restore_prot(hm_alloc *a, const hm_runs *r, uint64_t p0, uint64_t p1)
{
    uintptr_t base = atomic_load_explicit(&a->base, memory_order_relaxed);
    uint32_t n = atomic_load_explicit(&((hm_runs *)r)->n, memory_order_relaxed);
    int first_err = 0;
    for (uint32_t i = hm_runs_find(r, n, p0); i < n; i++) {
        uint64_t e = atomic_load_explicit(&((hm_runs *)r)->entry[i], memory_order_relaxed);
        uint64_t lo = hm_run_first(e);
        if (lo >= p1) break;
        uint64_t hi = i + 1 < n ? hm_run_first(atomic_load_explicit(&((hm_runs *)r)->entry[i + 1], memory_order_relaxed)) : p1;
        if (lo < p0) lo = p0;
        if (hi > p1) hi = p1;
        int err = hm_os_protect((void *)(base + lo * PAGE), (hi - lo) * PAGE, hm_prot_linux(hm_run_attr(e) & HM_RUN_PROT_MASK));
        if (err && !first_err) first_err = err;
    }
    return first_err;
}

/* The committed pages of [p0, p1) in table r lie in [*lo, *hi); false when there are none. */
bool hm_committed_span(const hm_runs *r, uint64_t npages, uint64_t p0, uint64_t p1, uint64_t *lo, uint64_t *hi)
{
    uint32_t n = atomic_load_explicit(&((hm_runs *)r)->n, memory_order_relaxed);
    bool any = false;
    for (uint32_t i = hm_runs_find(r, n, p0); i < n; i++) {
        uint64_t e = atomic_load_explicit(&((hm_runs *)r)->entry[i], memory_order_relaxed);
        uint64_t a = hm_run_first(e);
        if (a >= p1) break;
        uint64_t b = i + 1 < n ? hm_run_first(atomic_load_explicit(&((hm_runs *)r)->entry[i + 1], memory_order_relaxed)) : npages;
        if (!(hm_run_attr(e) & HM_RUN_COMMIT)) continue;
        if (a < p0) a = p0;
        if (b > p1) b = p1;
        if (!any) *lo = a;
        *hi = b;
        any = true;
    }
    return any;
}

/* Makes pages [p0, p1) reserved in the kernel: PROT_NONE first, then emptied. On failure the
 * protections are put back from table r, so nothing changed. */
static hm_status kernel_decommit(hm_alloc *a, const hm_runs *r, uint64_t p0, uint64_t p1, const char *what)
{
    uintptr_t base = atomic_load_explicit(&a->base, memory_order_relaxed);
    void *p = (void *)(base + p0 * PAGE);
    size_t len = (p1 - p0) * PAGE;
    int err = hm_os_protect(p, len, HM_OS_PROT_NONE);
    if (!err) err = hm_os_discard(p, len);
    if (!err) return HM_OK;
    hm_status st = hm_errno_status(err, what);
    if (hm_restore_prot(a, r, p0, p1)) return books_broken(what);
    return st;
}

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
    if (type & HM_MEM_WRITE_WATCH) return false; /* without RESERVE: 87; with: not implemented yet, 87 */
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

static hm_alloc *new_record(void *owner, uintptr_t base, uint64_t size, uint32_t prot, uint32_t flags,
                            uint32_t attr, int *err)
{
    hm_alloc *a = hm_pool_alloc(&alloc_pool, err);
    if (!a) return NULL;
    atomic_store_explicit(&a->base, base, memory_order_relaxed);
    atomic_store_explicit(&a->size, size, memory_order_relaxed);
    atomic_store_explicit(&a->alloc_protect, prot, memory_order_relaxed);
    atomic_store_explicit(&a->flags, flags, memory_order_relaxed);
    atomic_store_explicit(&a->runs, hm_runs_inline(attr), memory_order_relaxed);
    atomic_store_explicit(&a->owner, (uintptr_t)owner, memory_order_relaxed);
    a->chunk = NULL;
    a->committed = (attr & HM_RUN_COMMIT) ? size / PAGE : 0;
    return a;
}

static void drop_record(hm_alloc *a)
{
    free_runs_word(atomic_load_explicit(&a->runs, memory_order_relaxed));
    hm_pool_free(&alloc_pool, a);
}

/* Gives an allocation's address space back, however it was placed. */
static int give_back(uintptr_t base, uint64_t bytes, uint32_t flags, hm_chunk *chunk)
{
    if (chunk) {
        hm_arena_unplace(chunk, base, (bytes + GRAN - 1) / GRAN);
        return 0;
    }
    if (flags & HM_AF_MIXED) return hm_arena_unclaim(base, bytes);
    return hm_os_unmap((void *)base, bytes);
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
        if (give_back((uintptr_t)p, size, *flags, *chunk)) err = EFAULT; /* books and kernel differ */
        return err;
    }
    *base = (uintptr_t)p;
    return 0;
}

/* Reserves (and with MEM_COMMIT commits) a new allocation. */
static hm_status reserve(void *owner, uintptr_t want, size_t size, uint32_t type, uint32_t prot, void **out)
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
    int err = 0;
    uint32_t attr = commit ? (HM_RUN_COMMIT | (prot & HM_RUN_PROT_MASK)) : 0;
    hm_alloc *a = new_record(owner, 0, bytes, prot, flags, attr, &err);
    if (!a) return hm_errno_status(err, "map records");

    /* place */
    uintptr_t base = 0;
    hm_chunk *chunk = NULL;
    if (flags & HM_AF_LARGE) {
        err = place_large(want, bytes, &flags, &base, &chunk);
    } else if (want) {
        err = place_fixed(want, bytes, &flags, &chunk);
        base = want;
    } else if (ngran * GRAN <= HM_ARENA_DIRECT_MIN) {
        err = hm_arena_place(ngran, type & HM_MEM_TOP_DOWN, &base, &chunk);
    } else {
        /* Big: its own mapping, aligned so that the radix tree stores it in few slots. */
        size_t align = bytes >= ((uint64_t)128 << 30) ? ((size_t)16 << 30) : ((size_t)32 << 20);
        void *p;
        err = hm_os_reserve(NULL, bytes, align, &p);
        if (err) err = hm_os_reserve(NULL, bytes, GRAN, &p);
        if (!err) hm_os_name(p, bytes, "hostmem");
        base = (uintptr_t)p;
        flags |= HM_AF_DIRECT;
    }
    if (err) {
        drop_record(a);
        if (err == EFAULT) return books_broken("large-page reservation");
        return hm_errno_status(err, want ? "reserve at a fixed address" : "reserve address space");
    }
    atomic_store_explicit(&a->base, base, memory_order_relaxed);
    atomic_store_explicit(&a->flags, flags, memory_order_relaxed);
    a->chunk = chunk;

    const char *what = NULL;
    err = hm_radix_prepare(base >> 16, (base >> 16) + ngran);
    if (err) what = "map records";
    if (!err && commit) { /* the new pages are empty, so PROT_* alone commits them */
        err = hm_os_protect((void *)base, bytes, hm_prot_linux(prot));
        if (err) what = "commit";
    }
    if (err) {
        hm_status st = hm_errno_status(err, what);
        if (give_back(base, bytes, flags, chunk)) st = books_broken(what);
        drop_record(a);
        return st;
    }
    hm_meta_publish(a);
    hm_radix_set(base >> 16, (base >> 16) + ngran, a);
    hm_book.allocations++;
    hm_book.runs++;
    hm_book.reserved += bytes;
    if (commit) hm_book.committed += bytes;
    *out = (void *)base;
    return HM_OK;
}

/* Commits pages [start, end) of an existing allocation. */
static hm_status commit(void *owner, uintptr_t start, uintptr_t end, uint32_t prot, void **out)
{
    (void)owner;
    hm_alloc *a = hm_find_alloc(start);
    if (!a || !hm_find_alloc(end - 1) || hm_find_alloc(end - 1) != a) {  /* [R2.2] inside one allocation */
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
    err = hm_os_protect((void *)start, end - start, hm_prot_linux(prot));
    if (err) {
        hm_status st = hm_errno_status(err, "commit");
        if (hm_restore_prot(a, old, p0, p1)) st = books_broken("commit");
        hm_runs_free(next);
        return st;
    }
    hm_swap_runs(a, next);
    *out = (void *)start;
    return HM_OK;
}

hm_status hm_vmap_alloc(void *owner, void *addr, size_t size, uint32_t type, uint32_t prot, void **base)
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
    if (type & HM_MEM_RESET) st = hm_vmap_reset(a & ~(PAGE - 1), (a + size + PAGE - 1) & ~(PAGE - 1), base);
    else if (type & HM_MEM_RESET_UNDO) st = hm_vmap_reset_undo(a & ~(PAGE - 1), (a + size + PAGE - 1) & ~(PAGE - 1), base);
    else if ((type & HM_MEM_RESERVE) || !addr) st = reserve(owner, a, size, type, prot, base);
    else st = commit(owner, a & ~(PAGE - 1), (a + size + PAGE - 1) & ~(PAGE - 1), prot, base);
    pthread_mutex_unlock(&hm_map_lock);
    return st;
}

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
        if (partial || (any && hm_restore_prot(a, r, lo, hi))) return books_broken("release");
        return st;
    }
    /* The chunk parts must be empty before they are free again. MADV_DONTNEED does not fail on our own
     * anonymous memory; if it ever did, the gaps are gone already, so the release goes on and the
     * chunk parts stay marked (quarantined, PROT_NONE) instead of being handed out with old data. */
    if (any && hm_arena_discard_chunk_parts(base, size)) hm_arena_quarantine(base, size);
    else hm_arena_unmark(base, size);
    return HM_OK;
}

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
    } else {
        uint64_t lo, hi;
        if (hm_committed_span(r, size / PAGE, 0, size / PAGE, &lo, &hi)) {
            hm_status st = kernel_decommit(a, r, lo, hi, "release");
            if (st) return st;
        }
        hm_arena_unplace(a->chunk, base, ngran);
    }
    hm_radix_set(base >> 16, (base >> 16) + ngran, NULL);
    hm_book.allocations--;
    hm_book.runs -= atomic_load_explicit(&r->n, memory_order_relaxed);
    hm_book.reserved -= size;
    hm_book.committed -= a->committed * PAGE;
    drop_record(a);
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
    hm_swap_runs(a, next);
    return HM_OK;
}

hm_status hm_vmap_free(void *owner, void *addr, size_t size, uint32_t type)
{
    (void)owner;
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
    if (!al) {
        hm_detail_set("VirtualFree: %p is in no allocation", addr);
        st = HM_E_INVALID_ADDRESS;
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

/* ---- VirtualProtect --------------------------------------------------------------------------- */

hm_status hm_vmap_protect(void *owner, void *addr, size_t size, uint32_t prot, uint32_t *old)
{
    (void)owner;
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
    if (!al || hm_find_alloc(end - 1) != al) {
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
    err = hm_os_protect((void *)start, end - start, hm_prot_linux(prot));
    if (err) {
        st = hm_errno_status(err, "mprotect");
        if (hm_restore_prot(al, r, p0, p1)) st = books_broken("VirtualProtect");
        hm_runs_free(next);
        goto out;
    }
    uint32_t first_attr = hm_run_attr(atomic_load_explicit(&r->entry[first], memory_order_relaxed));
    *old = hm_prot_report(first_attr & HM_RUN_PROT_MASK, atomic_load_explicit(&al->alloc_protect, memory_order_relaxed));
    hm_swap_runs(al, next);
out:
    pthread_mutex_unlock(&hm_map_lock);
    return st;
}

/* ---- introspection ---------------------------------------------------------------------------- */

void hm_vmap_stats(hm_vm_stats *out)
{
    pthread_mutex_lock(&hm_map_lock);
    out->allocations = hm_book.allocations;
    out->runs = hm_book.runs;
    out->reserved_bytes = hm_book.reserved;
    out->committed_bytes = hm_book.committed;
    out->metadata_bytes = hm_meta.live_bytes;
    out->metadata_peak = hm_meta.peak_bytes;
    out->metadata_mapped = hm_meta.mapped_bytes;
    out->arena_bytes = hm_arena_bytes();
    pthread_mutex_unlock(&hm_map_lock);
}

void hm_vmap_reset_peak(void)
{
    pthread_mutex_lock(&hm_map_lock);
    hm_meta.peak_bytes = hm_meta.live_bytes;
    pthread_mutex_unlock(&hm_map_lock);
}
