/* check.c — the map's invariants, verified on demand (tests; a debugger): every allocation's record,
 * run table, radix slots and chunk bits, the books, and, on request, the kernel's mappings.
 *
 * Invariants checked:
 *   record    gen even; base 64 KiB aligned; size a positive page multiple.
 *   radix     every granule of an allocation maps to it (sampled for huge ones), and its query
 *             summary is what the record says (hm_alloc_summary: one version, or none).
 *   runs      entry 0 starts at page 0; starts strictly ascend below the page count; neighbours
 *             differ in attr; reserved pages have protection 0 and no RESET flag (and no FRESH flag
 *             outside a writable allocation: HM_AF_WRITABLE); committed pages no FRESH flag and a
 *             valid base protection; committed pages counted equal the record's count.
 *   arena     a chunk allocation's granules are marked used; used granules = granules of chunk allocations.
 *   books     allocations, runs, reserved and committed bytes equal the sums over the records;
 *             each account's charge (less what it holds for nested accounts and outside the map) and
 *             va_used equal its allocations' committed and reserved bytes.
 *   kernel    every page of every allocation lies in a mapping whose protection is the Linux
 *             protection of its Win32 state (reserved: PROT_NONE). */
#include <stdatomic.h>
#include <stdio.h>

#include "../os/os.h"
#include "radix.h"
#include "rules.h"
#include "special.h"
#include "vmap_internal.h"


#define FAIL(...)                      \
    do {                               \
        hm_detail_set(__VA_ARGS__);    \
        return HM_E_FAIL;              \
    } while (0)

/* Sums by account, for the per-manager books. */
#define MAX_ACCOUNTS 256
typedef struct acct_sum {
    hm_account *acct;
    uint64_t committed, reserved;
} acct_sum;

static hm_status check_alloc(hm_alloc *a, hm_books *sum, size_t *chunk_granules, acct_sum *accts, size_t *naccts)
{
    uintptr_t base = atomic_load_explicit(&a->base, memory_order_relaxed);
    uint64_t size = atomic_load_explicit(&a->size, memory_order_relaxed);
    uint64_t npages = size / PAGE, ngran = (size + 0xFFFF) >> 16;
    if (hm_meta_gen(a) & 1u) FAIL("allocation %#lx: published record with odd gen", (unsigned long)base);
    if (base & 0xFFFF || !size || size % PAGE) FAIL("allocation %#lx: bad base or size %#lx", (unsigned long)base, (unsigned long)size);
    uint64_t step = ngran > 1024 ? ngran / 1024 : 1;
    for (uint64_t g = 0; g < ngran; g += step)
        if (hm_radix_lookup((base >> 16) + g) != a) FAIL("allocation %#lx: granule %lu not indexed", (unsigned long)base, (unsigned long)g);
    if (hm_radix_lookup((base >> 16) + ngran - 1) != a) FAIL("allocation %#lx: last granule not indexed", (unsigned long)base);
    uint64_t s0 = hm_alloc_summary(a);
    for (uint64_t g = 0; g < ngran; g += step) {
        uint64_t s = hm_radix_summary((base >> 16) + g), want = s0 ? s0 + g * HM_SUM_INDEX_STEP : 0;
        if (s != want)
            FAIL("allocation %#lx: granule %lu's query summary is %#lx, its record says %#lx", (unsigned long)base,
                 (unsigned long)g, (unsigned long)s, (unsigned long)want);
    }

    hm_runs *r = hm_alloc_runs(a);
    uint32_t n = atomic_load_explicit(&r->n, memory_order_relaxed);
    if (n < 1 || n > atomic_load_explicit(&r->cap, memory_order_relaxed)) FAIL("allocation %#lx: run count %u", (unsigned long)base, n);
    uint64_t committed = 0;
    for (uint32_t i = 0; i < n; i++) {
        uint64_t e = atomic_load_explicit(&r->entry[i], memory_order_relaxed);
        uint64_t lo = hm_run_first(e), hi = i + 1 < n ? hm_run_first(atomic_load_explicit(&r->entry[i + 1], memory_order_relaxed)) : npages;
        uint32_t attr = hm_run_attr(e);
        if (i == 0 && lo != 0) FAIL("allocation %#lx: first run starts at page %lu", (unsigned long)base, (unsigned long)lo);
        if (hi <= lo || hi > npages) FAIL("allocation %#lx: run %u is [%lu, %lu) of %lu pages", (unsigned long)base, i, (unsigned long)lo, (unsigned long)hi, (unsigned long)npages);
        if (i > 0 && hm_run_attr(atomic_load_explicit(&r->entry[i - 1], memory_order_relaxed)) == attr)
            FAIL("allocation %#lx: runs %u and %u not merged", (unsigned long)base, i - 1, i);
        if (attr & HM_RUN_COMMIT) {
            if (!hm_prot_valid(attr & HM_RUN_PROT_MASK) || (attr & HM_RUN_FRESH))
                FAIL("allocation %#lx: run %u has protection %#x", (unsigned long)base, i, attr);
            committed += hi - lo;
        } else if (attr && !(attr == HM_RUN_FRESH && (atomic_load_explicit(&a->flags, memory_order_relaxed) & HM_AF_WRITABLE))) {
            FAIL("allocation %#lx: reserved run %u has attr %#x", (unsigned long)base, i, attr);
        }
    }
    uint64_t recorded = atomic_load_explicit(&a->committed, memory_order_relaxed);
    if (committed != recorded) FAIL("allocation %#lx: %lu committed pages, record says %lu", (unsigned long)base, (unsigned long)committed, (unsigned long)recorded);
    size_t in_chunks = 0;
    if (!hm_arena_owns_range(base, size, &in_chunks)) FAIL("allocation %#lx: granules in chunks not marked", (unsigned long)base);
    if (a->chunk && in_chunks != ngran) FAIL("allocation %#lx: %zu of %lu granules in its chunk", (unsigned long)base, in_chunks, (unsigned long)ngran);
    *chunk_granules += in_chunks;
    hm_account *owner = hm_alloc_owner(a);
    size_t k = 0;
    while (k < *naccts && accts[k].acct != owner) k++;
    if (k == *naccts && k < MAX_ACCOUNTS) accts[(*naccts)++] = (acct_sum){owner, 0, 0};
    if (k < MAX_ACCOUNTS) {
        accts[k].committed += committed * PAGE;
        accts[k].reserved += size;
    }
    sum->allocations++;
    sum->runs += n;
    sum->reserved += size;
    sum->committed += committed * PAGE;
    return HM_OK;
}

/* Kernel check: each mapping's pages that belong to allocations must have the map's protection. */
typedef struct kcheck {
    uint64_t pages;    /* allocation pages seen inside mappings */
    hm_status status;
} kcheck;

static int check_vma(uintptr_t lo, uintptr_t hi, int prot, void *arg)
{
    kcheck *k = arg;
    for (uintptr_t at = lo; at < hi;) {
        hm_alloc *a = hm_radix_lookup(at >> 16);
        uintptr_t gend = (at | 0xFFFF) + 1;
        if (!a) { /* jump to the next allocation: sanitizers' shadow mappings span terabytes */
            hm_alloc *next = hm_radix_next(at >> 16);
            if (!next) break;
            uintptr_t nb = atomic_load_explicit(&next->base, memory_order_relaxed);
            at = nb > at ? nb : gend;
            continue;
        }
        uintptr_t base = atomic_load_explicit(&a->base, memory_order_relaxed);
        uintptr_t end = base + atomic_load_explicit(&a->size, memory_order_relaxed);
        uintptr_t stop = end < hi ? end : hi;
        if (at >= end) {
            at = gend;
            continue;
        }
        hm_runs *r = hm_alloc_runs(a);
        uint32_t n = atomic_load_explicit(&r->n, memory_order_relaxed);
        while (at < stop) {
            uint64_t p = (at - base) / PAGE;
            uint32_t i = hm_runs_find(r, n, p);
            uint64_t e = atomic_load_explicit(&r->entry[i], memory_order_relaxed);
            uint64_t rend = i + 1 < n ? hm_run_first(atomic_load_explicit(&r->entry[i + 1], memory_order_relaxed)) : (end - base) / PAGE;
            uintptr_t seg_end = base + rend * PAGE < stop ? base + rend * PAGE : stop;
            int want = hm_run_kernel_prot(a, hm_run_attr(e));
            if (atomic_load_explicit(&a->special, memory_order_relaxed)) { /* page by page (special.h) */
                want = hm_special_expected(a, p, want);
                if (want < 0) {
                    hm_detail_set("allocation %#lx: page %lu's special record disagrees with its run", (unsigned long)base,
                                  (unsigned long)p);
                    k->status = HM_E_FAIL;
                    return 1;
                }
                seg_end = at + PAGE;
            }
            if (want != prot) {
                hm_detail_set("kernel: %#lx-%#lx has protection %d, the map says %d (Win32 %#x)", (unsigned long)at,
                              (unsigned long)seg_end, prot, want, hm_run_attr(e));
                k->status = HM_E_FAIL;
                return 1;
            }
            k->pages += (seg_end - at) / PAGE;
            at = seg_end;
        }
    }
    return 0;
}

hm_status hm_vmap_check(bool with_kernel)
{
    hm_status st = hm_vmap_init();
    if (st) return st;
    pthread_mutex_lock(&hm_map_lock);
    hm_map_quiesce();
    hm_books sum = {0, 0, 0, 0};
    size_t chunk_granules = 0, naccts = 0;
    static acct_sum accts[MAX_ACCOUNTS]; /* under hm_map_lock */
    for (hm_alloc *a = hm_radix_next(0); a && !st;) {
        st = check_alloc(a, &sum, &chunk_granules, accts, &naccts);
        uintptr_t end = atomic_load_explicit(&a->base, memory_order_relaxed) + atomic_load_explicit(&a->size, memory_order_relaxed);
        a = hm_radix_next(((end - 1) >> 16) + 1);
    }
    if (!st && (sum.allocations != hm_book.allocations || sum.runs != hm_book.runs ||
                sum.reserved != hm_book.reserved || sum.committed != hm_book.committed)) {
        hm_detail_set("books: %zu allocations, %zu runs, %zu reserved, %zu committed; records sum to %zu, %zu, %zu, %zu",
                      hm_book.allocations, hm_book.runs, hm_book.reserved, hm_book.committed, sum.allocations,
                      sum.runs, sum.reserved, sum.committed);
        st = HM_E_FAIL;
    }
    for (size_t k = 0; !st && k < naccts; k++) {
        hm_account *ac = accts[k].acct;
        uint64_t charge = atomic_load_explicit(&ac->charge, memory_order_relaxed) -
                          atomic_load_explicit(&ac->outside, memory_order_relaxed) -
                          atomic_load_explicit(&ac->nested, memory_order_relaxed); /* (account.h) */
        uint64_t va = atomic_load_explicit(&ac->va_used, memory_order_relaxed);
        uint64_t recorded = atomic_load_explicit(&ac->va_recorded, memory_order_relaxed);
        if (charge != accts[k].committed || va != accts[k].reserved + recorded) {
            hm_detail_set("account %p: charge %lu and va_used %lu, its allocations hold %lu committed and %lu reserved",
                          (void *)ac, (unsigned long)charge, (unsigned long)va, (unsigned long)accts[k].committed,
                          (unsigned long)accts[k].reserved);
            st = HM_E_FAIL;
        }
    }
    if (!st && chunk_granules + hm_arena_quarantined() != hm_arena_used_granules()) {
        hm_detail_set("arena: %zu granules marked used, allocations hold %zu, %zu quarantined",
                      hm_arena_used_granules(), chunk_granules, hm_arena_quarantined());
        st = HM_E_FAIL;
    }
    if (!st && with_kernel) {
        kcheck k = {0, HM_OK};
        int err = hm_os_maps_foreach(check_vma, &k);
        if (err) st = hm_errno_status(err, "reading /proc/self/maps");
        else if (k.status) st = k.status;
        else if (k.pages * PAGE != sum.reserved) {
            hm_detail_set("kernel: allocations hold %zu pages, mappings cover %lu of them", sum.reserved / PAGE, (unsigned long)k.pages);
            st = HM_E_FAIL;
        }
    }
    pthread_mutex_unlock(&hm_map_lock);
    return st;
}
