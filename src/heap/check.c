/* check.c — the heap's page invariants verified from outside (heap.h, "Invariants of a page in use"),
 * for tests and the fuzzer, which stop their threads first: every block of a page in use is exactly
 * one of free (its free bit), binned (in a bin of the heap's own lists or of a thread's cache), live
 * or in xfree (its live bit, at its first granule); used counts the blocks that are not free; no free
 * bit lies outside the page's blocks [first, extent) or below fscan, no live bit anywhere but at the
 * start of one of them; the fast Free's bin is the home's or none, none while xfree holds blocks, and
 * none for a page without blocks of its own (the header's, unused, inside a span), since the fast
 * Free reads no record; a page on the full list has more blocks used than its wake; the segment's
 * in_use bits are its pages with blocks or inside a span (one in the span cache too), the span
 * cache holds whole committed spans of its lengths, and no segment counts a system call under way. */
#include <inttypes.h>

#include "heap_internal.h"

/* The first broken invariant: told (hm_detail_set), and the walk stops. */
#define BAD(...)                                                                                                       \
    do {                                                                                                               \
        hm_detail_set(__VA_ARGS__);                                                                                    \
        return HM_E_FAIL;                                                                                              \
    } while (0)

/* Blocks of pg in the bins of lists, added to *n; each must be neither free nor live. */
static hm_status binned(const hm_pagelists *lists, hm_hpage *pg, uint64_t *n)
{
    for (unsigned cls = 0; cls < HM_NSMALL; cls++) {
        const hm_bin *bin = &lists->bin[cls];
        if (atomic_load(&((hm_pagelists *)lists)->top[cls]) == HM_BIN_UNMADE) continue; /* (not made yet: nothing in it) */
        uint32_t nb = hm_bin_n(lists, cls), cap = hm_bin_cap(cls);
        if (bin->floor || nb > cap || bin->slot[cap] != HM_BIN_END)
            BAD("bin %u: floor %#" PRIxPTR ", %u blocks of %u, end mark %#" PRIxPTR, cls, bin->floor, nb, cap, bin->slot[cap]);
        for (uint32_t k = nb; k < cap; k++)
            if (bin->slot[k]) BAD("bin %u: slot %u above the top (%u) not 0", cls, k, nb);
        for (uint32_t k = 0; k < nb; k++) {
            uintptr_t b = bin->slot[k];
            if (hm_page_of(b) != pg) continue;
            uint32_t i = hm_page_index_of(pg, b);
            if (pg->fbits[i / 64] & (uint64_t)1 << (i % 64)) BAD("block %#" PRIxPTR " is in a bin and free on its page", b);
            if (hm_heap_live(b)) BAD("block %#" PRIxPTR " is in a bin and live", b);
            ++*n;
        }
    }
    return HM_OK;
}

/* One page (or span head) in use: its free bits, live bits, counts, fast Free's bin and list. */
static hm_status check_page(hm_heap *h, hm_segment *s, size_t p, uint64_t *nfree)
{
    hm_hpage *pg = &s->page[p];
    uint32_t bs = pg->block_size, first = pg->first, extent = pg->extent, used = pg->used;
    if (!pg->fbits || extent != pg->capacity || first >= extent)
        BAD("page %p: free bits %p, blocks [%u, %u) of %u", (void *)pg, (void *)pg->fbits, first, extent, pg->capacity);
    uint64_t f_count = 0, l_count = 0;
    uintptr_t base = hm_page_addr(pg);
    for (uint32_t w = 0; w < (extent + 63) / 64; w++) {
        uint64_t f = pg->fbits[w], outside = 0;
        for (unsigned k = 0; k < 64; k++)
            if (w * 64 + k < first || w * 64 + k >= extent) outside |= (uint64_t)1 << k;
        if (f & outside) BAD("page %p (block size %u): word %u has free bits outside its blocks", (void *)pg, bs, w);
        if (f && w < pg->fscan) BAD("page %p: a free bit in word %u, below fscan %u", (void *)pg, w, pg->fscan);
        for (uint64_t t = f; t; t &= t - 1)
            if (hm_heap_live(base + (w * 64 + (uint32_t)__builtin_ctzll(t)) * (uintptr_t)bs))
                BAD("page %p (block size %u): block %u is both free and live", (void *)pg, bs, w * 64 + (unsigned)__builtin_ctzll(t));
        f_count += (uint64_t)__builtin_popcountll(f);
    }
    /* the live rows of the span's pages: a set bit is a block's start in [first, extent) */
    for (unsigned sp = 0; sp < pg->span; sp++)
        for (unsigned w = 0; w < HM_LIVE_WORDS; w++)
            for (uint64_t l = s->live[p + sp][w]; l; l &= l - 1) {
                uintptr_t off = sp * HM_HPAGE_SIZE + (w * 64 + (unsigned)__builtin_ctzll(l)) * 16;
                if (off % bs || off / bs < first || off / bs >= extent)
                    BAD("page %p (block size %u): a live bit at offset %#" PRIxPTR ", not a block's start", (void *)pg, bs, off);
                l_count++;
            }
    if (f_count != (uint64_t)extent - first - used)
        BAD("page %p (block size %u): %" PRIu64 " free bits, but extent %u - first %u - used %u", (void *)pg, bs, f_count, extent,
            first, used);
    /* the fast Free's bin: the home's of its class, unless it may not take the page's blocks
     * (heap_internal.h, hm_page_arm_fbin); never while blocks wait in its xfree */
    hm_pagelists *home = pg->home;
    hm_bintop *fb = atomic_load(hm_page_fbin(pg)), *own_bin = home && pg->cls < HM_NSMALL && !pg->has_debug ? &home->top[pg->cls] : NULL;
    if (fb != &hm_bin_none && (fb != own_bin || pg->xfree))
        BAD("page %p (block size %u): fast Free's bin %p, not the home's (%p) or none (%p); xfree %#" PRIxPTR, (void *)pg, bs,
            (void *)fb, (void *)own_bin, (void *)&hm_bin_none, (uintptr_t)pg->xfree);
    /* a page waits on the full list only while more of its blocks are used than its wake (page.c,
     * full_wake): the Free that reaches the wake moves it back to the avail list */
    if (pg->list == 2 && used <= pg->wake)
        BAD("page %p (block size %u): on the full list with %u blocks used, its wake %u", (void *)pg, bs, used, pg->wake);
    uint64_t b_count = 0;
    hm_status st = binned(&h->own, pg, &b_count);
    for (hm_tcache *c = h->caches; c && !st; c = c->next) st = binned(&c->lists, pg, &b_count);
    if (st) return st;
    if (used != l_count + b_count)
        BAD("page %p (block size %u): used %u, but %" PRIu64 " live (or in xfree) and %" PRIu64 " binned", (void *)pg, bs, used,
            l_count, b_count);
    *nfree += f_count;
    return HM_OK;
}

static hm_status check_pages(hm_heap *h, uint64_t *np, uint64_t *nfree)
{
    for (hm_segment *s = h->segments; s; s = s->next) {
        if (s->syscalls) BAD("segment %p: %u system calls under way, none expected", (void *)s, s->syscalls);
        for (size_t p = 0; p < HM_SEG_PAGES; p++) {
            hm_hpage *pg = &s->page[p];
            bool own = p && pg->block_size && !pg->back; /* (blocks of its own: a page or a span's head) */
            if (((s->in_use >> p) & 1) != (p && (pg->block_size || pg->back || hm_page_span_cached(pg))))
                BAD("page %zu of segment %p (block size %u, back %u): in_use bit %u", p, (void *)s, (unsigned)pg->block_size,
                    pg->back, (unsigned)((s->in_use >> p) & 1));
            if (!own && atomic_load(hm_page_fbin(pg)) != &hm_bin_none)
                BAD("page %zu of segment %p (block size %u, back %u): fast Free's bin %p, not none", p, (void *)s,
                    (unsigned)pg->block_size, pg->back, (void *)atomic_load(hm_page_fbin(pg)));
            if (!own) continue;
            ++*np;
            hm_status st = check_page(h, s, p, nfree);
            if (st) return st;
        }
    }
    return HM_OK;
}

/* The span cache: each length's list holds heads of that length, committed, out of the empty cache,
 * with their tails pointing back at them; its pages are counted; the list's tail is its oldest. */
static hm_status check_span_cache(hm_heap *h)
{
    unsigned pages = 0;
    for (unsigned k = 2; k <= HM_SPAN_MAX; k++) {
        hm_hpage *last = NULL;
        for (hm_hpage *pg = h->spans[k]; pg; last = pg, pg = pg->next) {
            if (!hm_page_span_cached(pg) || pg->span != k || pg->committed != 1 || pg->in_empty || pg->back ||
                hm_page_index(pg) + k > HM_SEG_PAGES)
                BAD("span cache %u: page %p (span %u, block size %u, committed %u, in_empty %u, back %u)", k, (void *)pg,
                    pg->span, (unsigned)pg->block_size, pg->committed, pg->in_empty, pg->back);
            for (unsigned i = 1; i < k; i++)
                if (pg[i].back != i || pg[i].committed != 1 || pg[i].in_empty || pg[i].block_size)
                    BAD("span cache %u: page %u of the span at %p (back %u, committed %u)", k, i, (void *)pg, pg[i].back,
                        pg[i].committed);
            pages += k;
        }
        if (h->spans_tail[k] != last) BAD("span cache %u: tail %p, not the list's last %p", k, (void *)h->spans_tail[k], (void *)last);
    }
    if (pages != h->nspan_pages) BAD("span cache: %u pages listed, %u counted", pages, h->nspan_pages);
    return HM_OK;
}

hm_status hm_heap_check_pages(hm_heap *h, uint64_t *pages, uint64_t *free_blocks)
{
    uint64_t np = 0, nfree = 0;
    hm_heap_lock(h);
    hm_status st = check_pages(h, &np, &nfree);
    if (!st) st = check_span_cache(h);
    hm_heap_unlock(h);
    if (pages) *pages = np;
    if (free_blocks) *free_blocks = nfree;
    return st;
}
