/* heap_pages.h — the heap's page invariants checked from outside (heap.h, "Invariants of a page in
 * use"), for tests that stop their threads first: every block of a page in use is exactly one of free
 * (its free bit), binned (in a bin of the heap's own lists or of a thread's cache), live or in xfree
 * (its live bit, at its first granule); used counts the blocks that are not free; no free bit lies
 * outside the page's blocks [first, extent) or below fscan, no live bit anywhere but at the start of
 * one of them; the fast Free's bin is the home's or none, and none while xfree holds blocks; a page on
 * the full list has more blocks used than its wake; the fast Free's bin of a page without blocks of
 * its own (the header's, unused, inside a span) is none; the segment's in_use bits are the pages with
 * blocks or inside a span. Takes
 * the heap lock; no other thread may use the heap. */
#ifndef HM_TEST_HEAP_PAGES_H
#define HM_TEST_HEAP_PAGES_H

#include <inttypes.h>

#include "heap/heap_internal.h"
#include "testutil.h"

/* Blocks of pg in the bins of lists; each must be neither free nor live. */
static inline uint64_t hp_binned(const hm_pagelists *lists, hm_hpage *pg)
{
    uint64_t n = 0;
    for (unsigned cls = 0; cls < HM_NSMALL; cls++) {
        const hm_bin *bin = &lists->bin[cls];
        if (atomic_load(&((hm_pagelists *)lists)->top[cls]) == HM_BIN_UNMADE) continue; /* (not made yet: nothing in it) */
        uint32_t nb = hm_bin_n(lists, cls), cap = hm_bin_cap(cls);
        if (bin->floor || nb > cap || bin->slot[cap] != HM_BIN_END) fail_msg("bin %u: floor %#" PRIxPTR ", %u blocks of %u, end mark %#" PRIxPTR, cls, bin->floor, nb, cap, bin->slot[cap]);
        for (uint32_t k = nb; k < cap; k++)
            if (bin->slot[k]) fail_msg("bin %u: slot %u above the top (%u) not 0", cls, k, nb);
        for (uint32_t k = 0; k < nb; k++) {
            uintptr_t b = bin->slot[k];
            if (hm_page_of(b) != pg) continue;
            uint32_t i = hm_page_index_of(pg, b);
            uint64_t bit = (uint64_t)1 << (i % 64);
            if (pg->fbits[i / 64] & bit) fail_msg("block %#" PRIxPTR " is in a bin and free on its page", b);
            if (hm_heap_live(b)) fail_msg("block %#" PRIxPTR " is in a bin and live", b);
            n++;
        }
    }
    return n;
}

/* The census of every page of h in use (pages and blocks counted into *pages and *free if not NULL). */
static inline void check_pages(hm_heap *h, uint64_t *pages, uint64_t *free_blocks)
{
    uint64_t np = 0, nfree = 0;
    hm_heap_lock(h);
    for (hm_segment *s = h->segments; s; s = s->next)
        for (size_t p = 0; p < HM_SEG_PAGES; p++) {
            hm_hpage *pg = &s->page[p];
            uint32_t bs = pg->block_size, first = pg->first, extent = pg->extent, used = pg->used;
            if (((s->in_use >> p) & 1) != (p && (bs || pg->back)))
                fail_msg("page %zu of segment %p (block size %u, back %u): in_use bit %u", p, (void *)s, bs, pg->back,
                         (unsigned)((s->in_use >> p) & 1));
            /* the fast Free reads no record, only the fbin row: a page without blocks of its own (the
             * header's, an unused one, one inside a span) must turn it away */
            if ((!p || !bs || pg->back) && atomic_load(hm_page_fbin(pg)) != &hm_bin_none)
                fail_msg("page %zu of segment %p (block size %u, back %u): fast Free's bin %p, not none", p, (void *)s, bs,
                         pg->back, (void *)atomic_load(hm_page_fbin(pg)));
            if (!p || !bs || pg->back) continue;
            np++;
            if (!pg->fbits || extent != pg->capacity || first >= extent)
                fail_msg("page %p: free bits %p, blocks [%u, %u) of %u", (void *)pg, (void *)pg->fbits, first, extent, pg->capacity);
            uint64_t f_count = 0, l_count = 0;
            uintptr_t base = hm_page_addr(pg);
            for (uint32_t w = 0; w < (extent + 63) / 64; w++) {
                uint64_t f = pg->fbits[w];
                uint64_t outside = 0;
                for (unsigned k = 0; k < 64; k++)
                    if (w * 64 + k < first || w * 64 + k >= extent) outside |= (uint64_t)1 << k;
                if (f & outside) fail_msg("page %p (block size %u): word %u has free bits outside its blocks", (void *)pg, bs, w);
                if (f && w < pg->fscan) fail_msg("page %p: a free bit in word %u, below fscan %u", (void *)pg, w, pg->fscan);
                for (uint64_t t = f; t; t &= t - 1)
                    if (hm_heap_live(base + (w * 64 + (uint32_t)__builtin_ctzll(t)) * (uintptr_t)bs))
                        fail_msg("page %p (block size %u): block %u is both free and live", (void *)pg, bs, w * 64 + (unsigned)__builtin_ctzll(t));
                f_count += (uint64_t)__builtin_popcountll(f);
            }
            /* the live rows of the span's pages: a set bit is a block's start in [first, extent) */
            for (unsigned sp = 0; sp < pg->span; sp++)
                for (unsigned w = 0; w < HM_LIVE_WORDS; w++)
                    for (uint64_t l = s->live[p + sp][w]; l; l &= l - 1) {
                        uintptr_t off = sp * HM_HPAGE_SIZE + (w * 64 + (unsigned)__builtin_ctzll(l)) * 16;
                        if (off % bs || off / bs < first || off / bs >= extent)
                            fail_msg("page %p (block size %u): a live bit at offset %#" PRIxPTR ", not a block's start", (void *)pg, bs, off);
                        l_count++;
                    }
            if (f_count != (uint64_t)extent - first - used)
                fail_msg("page %p (block size %u): %" PRIu64 " free bits, but extent %u - first %u - used %u", (void *)pg, bs,
                         f_count, extent, first, used);
            /* the fast Free's bin: the home's of its class, unless it may not take the page's blocks
             * (heap_internal.h, hm_page_arm_fbin); never while blocks wait in its xfree */
            hm_pagelists *home = pg->home;
            hm_bintop *fb = atomic_load(hm_page_fbin(pg)), *own_bin = home && pg->cls < HM_NSMALL && !pg->has_debug ? &home->top[pg->cls] : NULL;
            if (fb != &hm_bin_none && (fb != own_bin || pg->xfree))
                fail_msg("page %p (block size %u): fast Free's bin %p, not the home's (%p) or none (%p); xfree %#" PRIxPTR,
                         (void *)pg, bs, (void *)fb, (void *)own_bin, (void *)&hm_bin_none, (uintptr_t)pg->xfree);
            /* a page waits on the full list only while more of its blocks are used than its wake
             * (page.c, full_wake): the Free that reaches the wake moves it back to the avail list */
            if (pg->list == 2 && used <= pg->wake)
                fail_msg("page %p (block size %u): on the full list with %u blocks used, its wake %u", (void *)pg, bs, used, pg->wake);
            uint64_t b_count = hp_binned(&h->own, pg);
            for (hm_tcache *c = h->caches; c; c = c->next) b_count += hp_binned(&c->lists, pg);
            if (used != l_count + b_count)
                fail_msg("page %p (block size %u): used %u, but %" PRIu64 " live (or in xfree) and %" PRIu64 " binned", (void *)pg, bs,
                         used, l_count, b_count);
            nfree += f_count;
        }
    hm_heap_unlock(h);
    if (pages) *pages = np;
    if (free_blocks) *free_blocks = nfree;
}

#endif
