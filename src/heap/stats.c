/* stats.c — a heap's figures (hm_heap_get_stats, the report's per-class table) and its locks around
 * fork (src/preload/init.c). */
#include <string.h>

#include "heap_internal.h"

void hm_heap_fork_prepare(hm_heap *h)
{
    hm_tcache_fork_lock(true);
    hm_heap_lock(h);
    hm_tcache_fork_lock(false);
    hm_heap_pools_fork_lock(true);
}

void hm_heap_fork_after(hm_heap *h)
{
    hm_heap_pools_fork_lock(false);
    hm_tcache_fork_unlock(false);
    hm_heap_unlock(h);
    hm_tcache_fork_unlock(true);
}

hm_status hm_heap_get_stats(hm_heap *h, hm_heap_stats *out)
{
    if (!h || !out) return HM_E_POINTER;
    memset(out, 0, sizeof *out);
    hm_heap_lock(h);
    /* small blocks: what the pages hand out, less what is back in xfree (racy reads of the owners'
     * counts: exact when no other thread is running) */
    uint64_t blocks = atomic_load_explicit(&h->live_blocks, memory_order_relaxed),
             bytes = atomic_load_explicit(&h->live_bytes, memory_order_relaxed);
    for (hm_segment *s = h->segments; s; s = s->next) {
        out->segments++;
        out->committed_pages++; /* the header page */
        for (size_t i = 1; i < HM_SEG_PAGES; i++) {
            hm_hpage *pg = &s->page[i];
            out->committed_pages += pg->committed & 1; /* (2: claimed, its commit under way: not yet; 3: still) */
            uint32_t bs = HM_BS(pg);
            if (!bs) continue;
            uint64_t n = atomic_load_explicit(&pg->used, memory_order_relaxed) - atomic_load_explicit(&pg->xcount, memory_order_relaxed);
            blocks += n;
            bytes += n * bs;
        }
    }
    uint64_t bblocks = 0, bbytes = 0; /* binned: free for the program, in use for their pages */
    hm_heap_binned(&h->own, &bblocks, &bbytes);
    hm_tcache_binned(h, &bblocks, &bbytes);
    out->live_bytes = bytes - bbytes;
    out->live_blocks = blocks - bblocks;
    out->large_bytes = atomic_load_explicit(&h->large_bytes, memory_order_relaxed);
    out->cached_large_bytes = h->lcache_bytes + h->parked_bytes + hm_tcache_large_cached(h);
    hm_heap_unlock(h);
    return HM_OK;
}

/* The blocks in the bins of lists move from in use to free in out (racy counts: clamped). */
static void unbin(hm_heap_class_stat out[HM_NCLASS], const hm_pagelists *lists)
{
    for (unsigned k = 0; k < HM_NSMALL; k++) {
        uint64_t n = hm_bin_n(lists, k);
        if (n > out[k].blocks) n = out[k].blocks;
        out[k].blocks -= n;
        out[k].free_bytes += n * hm_heap_class_size(k);
    }
}

hm_status hm_heap_class_stats(hm_heap *h, hm_heap_class_stat out[HM_NCLASS])
{
    if (!h || !out) return HM_E_POINTER;
    memset(out, 0, sizeof(hm_heap_class_stat) * HM_NCLASS);
    hm_heap_lock(h);
    for (hm_segment *s = h->segments; s; s = s->next)
        for (size_t i = 1; i < HM_SEG_PAGES; i++) {
            hm_hpage *pg = &s->page[i];
            uint32_t bs = HM_BS(pg);
            if (!bs || pg->cls >= HM_NCLASS) continue;
            hm_heap_class_stat *c = &out[pg->cls];
            uint64_t used = atomic_load_explicit(&pg->used, memory_order_relaxed) -
                            atomic_load_explicit(&pg->xcount, memory_order_relaxed);
            c->pages += pg->span;
            c->blocks += used;
            c->free_bytes += pg->span * HM_HPAGE_SIZE - used * bs; /* free blocks and the tail no block fits in */
        }
    unbin(out, &h->own); /* binned blocks are free */
    for (hm_tcache *c = h->caches; c; c = c->next) unbin(out, &c->lists);
    hm_heap_unlock(h);
    for (unsigned k = 0; k < HM_NCLASS; k++) {
        out[k].block_size = hm_heap_class_size(k);
        out[k].bytes = out[k].blocks * out[k].block_size;
    }
    return HM_OK;
}

