/* large.c — blocks above HM_MEDIUM_MAX (heap.h, "Layout"): each an allocation of its own from the
 * map, tagged heap|1, reserving room to grow in place; the heap's cache of freed ones kept committed,
 * bounded by count, bytes and an eighth of the limit; blocks whose release the kernel refused
 * (parked); the counters they feed. The threads' own caches of large blocks are tcache.c's. */
#include <errno.h>
#include <string.h>

#include "heap_internal.h"
#include "track.h"

/* The large-block counters (atomics: threads' caches change them without the lock). */
void hm_heap_large_count(hm_heap *h, int64_t bytes, int64_t blocks)
{
    atomic_fetch_add_explicit(&h->live_bytes, (uint64_t)bytes, memory_order_relaxed);
    atomic_fetch_add_explicit(&h->large_bytes, (uint64_t)bytes, memory_order_relaxed);
    atomic_fetch_add_explicit(&h->live_blocks, (uint64_t)blocks, memory_order_relaxed);
}

bool hm_heap_may_keep(const hm_heap *h)
{
    return atomic_load_explicit(&h->m->notify.state, memory_order_relaxed) != HM_MEMORY_LOW &&
           !atomic_load_explicit(&h->m->nwaiting, memory_order_relaxed);
}


/* A cached large block for a request of bytes (hm_lblock_fit: one that holds it, or with grow one
 * that can grow to it), taken out of the cache; false if none. Lock held. */
static bool lcache_take(hm_heap *h, uint64_t bytes, bool grow, hm_lblock *out)
{
    unsigned best = hm_lblock_fit(h->lcache, h->nlcache, bytes, grow);
    if (best == h->nlcache) return false;
    *out = h->lcache[best];
    memmove(&h->lcache[best], &h->lcache[best + 1], (h->nlcache - best - 1) * sizeof h->lcache[0]);
    h->nlcache--;
    h->lcache_bytes -= out->size;
    HM_W64(h, out->base, 1) = 0;
    return true;
}

/* Releases cached blocks from the oldest on while fewer than need bytes went (added to *went) or the
 * block aged (hm_lblock_aged); a refused release stops it, that block and the later ones staying
 * cached (the books stay exact). Lock held. */
static hm_status release_oldest(hm_heap *h, uint64_t need, uint64_t now, uint64_t *went)
{
    hm_status st = HM_OK;
    unsigned k = 0;
    for (; k < h->nlcache && (*went < need || hm_lblock_aged(&h->lcache[k], now)); k++) {
        if ((st = hm_heap_large_release(h, h->lcache[k].base))) break;
        h->lcache_bytes -= h->lcache[k].size;
        *went += h->lcache[k].size;
    }
    memmove(&h->lcache[0], &h->lcache[k], (h->nlcache - k) * sizeof h->lcache[0]); /* (oldest first still) */
    h->nlcache -= k;
    return st;
}

void hm_heap_lcache_age(hm_heap *h, uint64_t now)
{
    uint64_t went = 0;
    (void)release_oldest(h, 0, now, &went);
}

/* Keeps a freed large block committed for reuse; false if it does not fit the cache's bounds even
 * after releasing older blocks. Lock held. */
bool hm_heap_lcache_put(hm_heap *h, hm_lblock blk)
{
    uint64_t size = blk.size, now = hm_heap_now_ms();
    if (!blk.freed_ms) blk.freed_ms = now;
    /* the blocks kept long enough go first (the cache is in the order blocks came in; one a thread's
     * cache kept a while comes in with its own time, and goes when it reaches the front) */
    hm_heap_lcache_age(h, now);
    /* At most HM_LCACHE_BYTES, and an eighth of the limit; or, for a heap whose cache any refusal on
     * its manager takes back first (heap.c, give_back: a thread-safe heap) on a manager outside a tree
     * (a sibling's refusal by the parent would not reach it), what the budget has free, the cache
     * counted as free: under a tight limit a program churning large blocks then reuses them instead
     * of faulting each one in again (bench_alloc's large workload at 1.25 x its peak: 1.8 s with the
     * eighth, 70-90 ms with half the free room, 32-42 ms with all of it, as at a loose limit). */
    uint64_t limit = h->m->acct.threshold[HM_LEVEL_PROCESS], cap = limit / 8;
    uint64_t charge = atomic_load_explicit(&h->m->acct.charge, memory_order_relaxed);
    if (h->reclaimer.give_back && !atomic_load_explicit(&h->m->nested, memory_order_relaxed)) {
        uint64_t room = (limit > charge ? limit - charge : 0) + h->lcache_bytes;
        if (room > cap) cap = room;
    }
    if (cap > HM_LCACHE_BYTES) cap = HM_LCACHE_BYTES;
    /* Nor so much that what the cache keeps takes the manager's load to Low by itself: the runtime
     * would be told that memory is short, and the cache would give everything back at once, to be
     * faulted in again. At most 7/8 of what lies between the rest of the charge and Low. */
    uint64_t low = h->m->notify.low_from, others = charge > h->lcache_bytes + size ? charge - h->lcache_bytes - size : 0;
    uint64_t below_low = low > others ? (low - others) / 8 * 7 : 0;
    if (cap > below_low) cap = below_low;
    /* Not when memory is short (the state is Low) or requests wait: then it goes back now. A block up
     * to the whole bound is kept, the oldest going for it: a budget's large blocks are what a tight
     * limit's program churns, and each one released is faulted in again (a quarter of the bound, the
     * old rule, made bench_alloc's large workload 64 times slower under a limit of 1.25 x its peak) */
    if (size > cap || !hm_heap_may_keep(h) || h->dual || hm_lblock_aged(&blk, now)) return false;
    uint64_t over = h->lcache_bytes + size > cap ? h->lcache_bytes + size - cap : h->nlcache == HM_LCACHE_N, went = 0;
    if (over && (release_oldest(h, over, 0, &went) || h->nlcache == HM_LCACHE_N)) return false;
    HM_W64(h, blk.base, 1) = hm_lcache_tag(h, blk.base);
    h->lcache[h->nlcache] = blk;
    h->nlcache++;
    h->lcache_bytes += size;
    return true;
}

/* Releases the large block at base: its reservation, then a dual heap's views (views_new). Lock
 * held. A refusal changes nothing: the block stays whole, committed and charged. */
hm_status hm_heap_large_release(hm_heap *h, uintptr_t base)
{
    hm_vmap_info info;
    if (h->tracked && hm_heap_find((void *)base, &info)) hm_track_clear((void *)base, info.size);
    hm_view *v = h->dual ? hm_view_of(h, base) : NULL;
    hm_status st = hm_manager_free(h->m, (void *)base, 0, HM_MEM_RELEASE);
    if (st == HM_OK && v) hm_view_forget(h, v);
    return st;
}

/* Freed large blocks whose release the kernel refused, where no caller can be told (a thread cache's
 * eviction, realloc's old block), wait on the heap's parked list, threaded through their own words
 * (0: next, 1: the freed tag, so that classify says "not a block", 2: committed bytes): nothing to
 * allocate on a path already short of memory. They stay committed and charged, which is what the
 * books say; a trim, a refused commit and destroy try them again. Lock held. */
void hm_heap_park(hm_heap *h, hm_lblock blk)
{
    HM_W64(h, blk.base, 0) = h->parked;
    HM_W64(h, blk.base, 1) = hm_lcache_tag(h, blk.base);
    HM_W64(h, blk.base, 2) = blk.size;
    h->parked = blk.base;
    h->parked_bytes += blk.size;
}

/* Releases the parked blocks; stops at the first refusal (lock held). */
static hm_status unpark(hm_heap *h)
{
    while (h->parked) {
        uintptr_t b = h->parked, next = (uintptr_t)HM_W64(h, b, 0);
        uint64_t size = HM_W64(h, b, 2);
        hm_status st = hm_heap_large_release(h, b);
        if (st) return st;
        h->parked = next;
        h->parked_bytes -= size;
    }
    return HM_OK;
}

void hm_heap_large_return(hm_heap *h, hm_lblock blk)
{
    if (!hm_heap_lcache_put(h, blk) && hm_heap_large_release(h, blk.base) != HM_OK) hm_heap_park(h, blk);
}

/* Releases every cached and parked large block (lock held): trim gives them back. A refusal keeps
 * the rest. */
hm_status hm_heap_lcache_drain(hm_heap *h)
{
    uint64_t went = 0;
    hm_status st = release_oldest(h, UINT64_MAX, 0, &went);
    return st ? st : unpark(h);
}

uint64_t hm_heap_lcache_release_oldest(hm_heap *h, uint64_t need)
{
    uint64_t went = h->parked_bytes;
    if (unpark(h)) return went - h->parked_bytes;
    (void)release_oldest(h, need, 0, &went);
    return went;
}

/* A block of its own from the map, or a cached one. Called without the heap's lock (the commit may
 * wait). reserve > size asks for address space to grow into in place (realloc); only size is
 * committed and usable. */
hm_status hm_heap_large_alloc(hm_heap *h, size_t size, size_t reserve, size_t align, unsigned level, uintptr_t *out,
                             bool *zero)
{
    if (zero) *zero = false;
    size_t bytes = (size + 4095) & ~(size_t)4095;
    if (bytes < size) return HM_E_OUTOFMEMORY;
    if (!bytes) bytes = 4096; /* (size 0 at an alignment only a block of its own serves) */
    size_t room = (reserve + 4095) & ~(size_t)4095;
    if (room < bytes) room = bytes;
    /* A block the caches may keep reserves twice its size, and at least HM_LBLOCK_ROOM, while the
     * address-space budget is unlimited (SPEC 3.6 counts reservations): cached, it can then grow in
     * place to serve a larger request, committing only the difference, where a fresh block would
     * fault in all of it (bench_alloc's large workload, 64 KiB..4 MiB: 28 MiB of fresh blocks and 5
     * of growth with twice the size alone; 11 and 17 with the floor and growth from the thread's
     * cache too, peak RSS 46.4 -> 40.9 MiB). */
    if (room == bytes && bytes <= HM_LCACHE_BYTES / 4 && h->m->acct.va_limit == UINT64_MAX && !h->dual)
        room = 2 * bytes < HM_LBLOCK_ROOM ? HM_LBLOCK_ROOM : 2 * bytes;
    hm_lblock blk;
    /* a block is its reservation's base: 64 KiB aligned; more is asked of the map, and the caches'
     * blocks (no better than 64 KiB aligned for sure) are not looked at */
    bool more = align > HM_GRANULE;
    /* one that holds bytes in this thread's cache; else in the heap's, or one there that can grow to
     * bytes; else one in this thread's cache that can */
    bool cached = !more && h->cached && hm_tcache_large_take(h, bytes, false, &blk);
    if (!cached && !more) {
        hm_heap_lock(h);
        cached = h->nlcache && lcache_take(h, bytes, true, &blk);
        hm_heap_unlock(h);
        if (!cached && h->cached) cached = hm_tcache_large_take(h, bytes, true, &blk);
    }
    if (cached && blk.size < bytes) { /* it grows to bytes: the difference is committed at level */
        void *g;
        hm_status gs = hm_manager_alloc(h->m, level, (void *)(blk.base + blk.size), bytes - blk.size, HM_MEM_COMMIT, h->prot, &g);
        if (gs == HM_OK) {
            blk.size = bytes;
        } else { /* back to the cache; a fresh block is tried (and the caches drained if refused) */
            hm_heap_lock(h);
            hm_heap_large_return(h, blk);
            hm_heap_unlock(h);
            cached = false;
        }
    }
    if (cached) { /* committed already: it serves any level */
        hm_heap_large_count(h, (int64_t)blk.size, 1);
        *out = blk.base;
        return HM_OK;
    }
    void *base, *b;
    hm_status st = hm_vmap_reserve_tagged(&h->m->acct, room, more ? align : HM_GRANULE, (uintptr_t)h | 1u,
                                          h->dual ? HM_RESERVE_OWN : 0, &base);
    if (st) return st == HM_E_INVALID_PARAMETER ? HM_E_OUTOFMEMORY : st;
    hm_view *v = NULL;
    if (h->dual) { /* its own memfd and two views (heap.h, "Executable heaps") */
        int err = ENOMEM;
        if (!(v = hm_heap_view_get()) || (err = hm_views_new((uintptr_t)base, room, &v->fd, &v->rw))) {
            if (v) hm_heap_view_put(v);
            hm_heap_drop_reservation(h, base);
            hm_detail_set("executable heap: two views of a large block: %s", strerror(err));
            return HM_E_OUTOFMEMORY;
        }
        v->base = (uintptr_t)base;
        v->room = room;
        hm_heap_lock(h);
        v->next = h->views;
        h->views = v;
        hm_heap_unlock(h);
    }
    st = hm_manager_alloc(h->m, level, base, bytes, HM_MEM_COMMIT, h->prot, &b);
    /* refused: what the caches keep goes back, as much as the block needs, and it is tried once more;
     * then all of it, and once more */
    uint64_t need;
    for (int round = 0; hm_heap_refusal_round(st, round, bytes, &need); round++) {
        hm_heap_lock(h);
        bool drained = hm_heap_refused_give_back(h, st, need);
        hm_heap_unlock(h);
        if (!drained) break;
        st = hm_manager_alloc(h->m, level, base, bytes, HM_MEM_COMMIT, h->prot, &b);
    }
    if (st) {
        hm_heap_drop_reservation(h, base); /* (the execute-read view goes with it) */
        if (v) {
            hm_heap_lock(h);
            hm_view_forget(h, v);
            hm_heap_unlock(h);
        }
        return st;
    }
    hm_heap_large_count(h, (int64_t)bytes, 1);
    *out = (uintptr_t)base;
    if (zero) *zero = true; /* (a new reservation's committed pages read as zero) */
    return HM_OK;
}


/* Grows a large block p (have usable bytes) to size within its reservation: commits the pages in
 * between at level. HM_E_OUTOFMEMORY-like statuses if it cannot (the caller moves the block then). */
hm_status hm_heap_grow_in_place(hm_heap *h, uintptr_t p, const hm_vmap_info *info, size_t have, size_t size, hm_level level)
{
    if (!(info->tag & 1u) || info->base != p) return HM_E_INVALIDARG; /* not plain large */
    size_t bytes = (size + 4095) & ~(size_t)4095;
    if (bytes < size || bytes > info->size || (unsigned)level > HM_LEVEL_PROCESS) return HM_E_INVALIDARG;
    /* a block that grows once grows again: commit ahead geometrically (within the reservation) */
    size_t ahead = have <= info->size / 2 ? have * 2 : info->size;
    if (ahead > bytes) bytes = ahead;
    void *b;
    hm_status st = hm_manager_alloc(h->m, (unsigned)level, (void *)(p + have), bytes - have, HM_MEM_COMMIT, h->prot, &b);
    if (st) return st;
    hm_heap_large_count(h, (int64_t)(bytes - have), 0);
    return HM_OK;
}

