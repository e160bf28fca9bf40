/* classify.c — what a pointer is to a heap (SPEC 4's cases for Free, realloc and the usable size):
 * a live small or large block, a debug block, or nothing of it; another heap's block; no heap's. */
#include "heap_internal.h"

block_ref hm_heap_classify(const hm_heap *h, const hm_vmap_info *info, uintptr_t p)
{
    block_ref r = {NOT_A_BLOCK, NULL, 0, 0, 0};
    if (info->tag & 1u) { /* a large block: its allocation's base, or 16 past it for a debug one */
        uintptr_t b = info->base;
        if (!info->committed) return r; /* a reservation a failed Alloc could not give back (unreadable) */
        if (p == b) r.kind = LARGE;
        else if (p == b + HM_DEBUG_HDR && *(const uint64_t *)b == hm_heap_debug_tag(h, b)) r.kind = LARGE_DEBUG;
        if (r.kind == LARGE && *(const uint64_t *)b == hm_heap_debug_tag(h, b)) r.kind = NOT_A_BLOCK;
        if (r.kind == LARGE && ((const uint64_t *)b)[1] == hm_lcache_tag(h, b)) r.kind = NOT_A_BLOCK; /* freed, cached */
        r.block = b;
        r.size = info->committed; /* (a large block's pages are committed from its base on) */
        r.room = info->size;
        return r;
    }
    hm_segment *s = (hm_segment *)info->base;
    if (atomic_load_explicit(&s->cookie, memory_order_acquire) != (h->key ^ (uintptr_t)s)) return r;
    size_t idx = (p - info->base) / HM_HPAGE_SIZE;
    hm_hpage *pg = &s->page[idx];
    idx -= pg->back; /* (inside a medium class's span: its head) */
    pg -= pg->back;
    uint32_t bs = HM_BS(pg);
    if (idx == 0 || !bs) return r;
    uintptr_t base = info->base + idx * HM_HPAGE_SIZE, off = p - base;
    uint32_t i = bs > HM_SMALL_MAX ? (uint32_t)(off / bs) : hm_heap_block_index(off, pg->inv); /* (a multiply for a small class) */
    uintptr_t b = base + (uintptr_t)i * bs, rem = p - b;
    if (i >= HM_EXTENT(pg) || !hm_heap_live(b)) return r;
    /* (the block is read only on a page a debug block was carved from; atomic: an xfree push may
     * write a link there) */
    bool dbg = atomic_load_explicit(&pg->has_debug, memory_order_relaxed) && hm_link_get(b) == hm_heap_debug_tag(h, b);
    if (rem == 0 && !dbg) r.kind = SMALL;
    else if (rem == HM_DEBUG_HDR && dbg) r.kind = SMALL_DEBUG;
    r.page = pg;
    r.block = b;
    r.size = bs;
    return r;
}

/* What the map knows of the heap allocation (segment or large block) holding p: a segment from the
 * segment table in one load, anything else from the map. false if p is in no heap's memory. */
bool hm_heap_find(const void *p, hm_vmap_info *info)
{
    hm_segment *s = hm_segmap_get(p);
    if (s) {
        hm_heap *h = s->heap;
        *info = (hm_vmap_info){(uintptr_t)s, HM_SEG_SIZE, HM_AF_TAGGED, (uintptr_t)h, &h->m->acct, 0};
        return true;
    }
    return hm_vmap_lookup(p, info) && (info->flags & HM_AF_TAGGED);
}

/* What p is to h when the map said a large block of h holds it. A freed large block (in the heap's
 * cache or a thread's) may be released by another thread at any moment, and classify reads the
 * block's words: so the map is asked again, and the block read, under h's lock, which every release
 * of h's large blocks holds. A block found live stays so after the lock is dropped (only a Free of
 * it, the caller's, releases it). NOT_A_BLOCK if p is not h's any more (*info: what the map says). */
block_ref hm_heap_classify_large(hm_heap *h, const void *p, hm_vmap_info *info)
{
    block_ref r = {NOT_A_BLOCK, NULL, 0, 0, 0};
    hm_heap_lock(h);
    if (hm_heap_find(p, info) && (hm_heap *)(info->tag & ~(uintptr_t)1) == h && (info->tag & 1u))
        r = hm_heap_classify(h, info, (uintptr_t)p);
    hm_heap_unlock(h);
    return r;
}

/* Free of p, which the map says belongs to another heap (or nothing of a heap): SPEC 4. */
hm_status hm_heap_foreign(const hm_vmap_info *info, const void *p)
{
    hm_heap *o = (hm_heap *)(info->tag & ~(uintptr_t)1);
    hm_vmap_info again;
    block_ref r = info->tag & 1u ? hm_heap_classify_large(o, p, &again)                 /* under its lock */
                                 : hm_heap_classify(o, info, (uintptr_t)p); /* a read-only look at the other heap */
    if (r.kind == SMALL && o->cached && hm_heap_in_xfree(o, r.block)) r.kind = NOT_A_BLOCK;
    if (r.kind == NOT_A_BLOCK) {
        hm_detail_set("Free(%p): not a live block of any heap", p);
        return HM_E_HOST_INVALIDOPERATION;
    }
    hm_detail_set("Free(%p): a live block of another heap (%p)", p, (void *)o);
    return HM_E_HOST_NOT_OWNER;
}

/* The usable size of p, 0 if no live block of h. With guarded, a large block is looked at under the
 * lock (classify_large: another thread may be releasing it); realloc, whose caller holds p, needs not.
 * *out (if asked) gets the map's record of p's allocation, except for a plain block of a page or a
 * medium class's span, which is told without it (then out's tag is 0: no large block). */
size_t hm_heap_usable(hm_heap *h, const void *p, bool guarded, hm_vmap_info *out)
{
    /* the common case: a plain block of a page (or span) without debug blocks, from the segment
     * table, the page's record and its live bits, without the map's */
    uint32_t bs;
    bool start;
    if (hm_heap_block_page(h, (uintptr_t)p, &bs, &start)) {
        if (out) out->tag = 0;
        if (!start || !hm_heap_live((uintptr_t)p)) return 0;
        return h->cached && hm_heap_in_xfree(h, (uintptr_t)p) ? 0 : bs;
    }
    hm_vmap_info tmp, *info = out ? out : &tmp;
    if (!h || !p || !hm_heap_find(p, info) || (hm_heap *)(info->tag & ~(uintptr_t)1) != h)
        return 0;
    /* no lock for a small block: classify reads only what Free reads without one (atomics, the map,
     * the block); a large one may be released meanwhile (classify_large) */
    block_ref r = info->tag & 1u && guarded ? hm_heap_classify_large(h, p, info) : hm_heap_classify(h, info, (uintptr_t)p);
    if (r.kind == SMALL && h->cached && hm_heap_in_xfree(h, r.block)) r.kind = NOT_A_BLOCK;
    switch (r.kind) {
    case SMALL:
    case LARGE: return r.size;
    case SMALL_DEBUG:
    case LARGE_DEBUG: return r.size - HM_DEBUG_HDR;
    default: return 0;
    }
}

