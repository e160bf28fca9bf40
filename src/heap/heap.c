/* heap.c — the heap API of heap.h (SPEC 4, IHostMalloc): create and destroy, Alloc and Free with
 * their checks, debug blocks, calloc and realloc, trim. The fast paths it tries first are inline in
 * heap_internal.h; pages, segments, large blocks and the threads' caches are their own files'. */
#define _GNU_SOURCE /* PTHREAD_MUTEX_ADAPTIVE_NP */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "../os/os.h"
#include "heap_internal.h"
#include "track.h"

/* Every heap, so that a stop of any manager clears their fast_id (heaps_stopped). all_lock is a leaf:
 * a stop inside a heap operation takes it under that heap's lock. */
static pthread_mutex_t all_lock = PTHREAD_MUTEX_INITIALIZER;
static hm_heap *all_heaps;

static void heaps_stopped(void);
static void hook_stops(void) { hm_manager_on_stop(heaps_stopped); }

static void heaps_stopped(void)
{
    pthread_mutex_lock(&all_lock);
    for (hm_heap *h = all_heaps; h; h = h->all_next) atomic_store_explicit(&h->fast_id, 0, memory_order_seq_cst);
    pthread_mutex_unlock(&all_lock);
}

static void all_link(hm_heap *h, bool in)
{
    pthread_mutex_lock(&all_lock);
    if (in) {
        if ((h->all_next = all_heaps)) all_heaps->all_prev = &h->all_next;
        h->all_prev = &all_heaps;
        all_heaps = h;
    } else {
        if ((*h->all_prev = h->all_next)) h->all_next->all_prev = h->all_prev;
    }
    pthread_mutex_unlock(&all_lock);
}

void hm_heap_all_lock(bool lock)
{
    if (lock) pthread_mutex_lock(&all_lock);
    else pthread_mutex_unlock(&all_lock);
}

/* Whether h's manager runs: h's fast_id says so (no manager stopped since h last saw its own running),
 * or it runs now (looked at; fast_id set again if the fast paths may serve h). A stop counts
 * hm_manager_stops up, then clears every heap's fast_id: a stop that began after stops was read here
 * either is seen by the second look (and the fast_id just set is cleared again) or clears it itself
 * after it was set (the seq_cst order of the counter's and fast_id's accesses). */
static __attribute__((noinline)) bool running_slow(hm_heap *h)
{
    unsigned stops = atomic_load_explicit(&hm_manager_stops, memory_order_seq_cst);
    if (hm_manager_enter(h->m) != HM_OK) return false;
    if (h->fast) {
        atomic_store_explicit(&h->fast_id, h->cached ? h->id : h->id | 1, memory_order_seq_cst);
        if (atomic_load_explicit(&hm_manager_stops, memory_order_seq_cst) != stops)
            atomic_store_explicit(&h->fast_id, 0, memory_order_seq_cst);
    }
    return true;
}
static inline bool running(hm_heap *h) { return atomic_load_explicit(&h->fast_id, memory_order_relaxed) || running_slow(h); }

/* A request refused on the heap's manager (or one it is nested in): the freed large blocks it keeps
 * committed (its cache and its threads') and its empty pages go back, as for a refusal of its own
 * (hm_heap_refused_give_back), unless its lock is busy (its owner is at work: then it is passed over,
 * never waited for: the refused request may be this heap's own, made under its lock). */
static bool give_back(hm_reclaimer *r, uint64_t need)
{
    hm_heap *h = (hm_heap *)((char *)r - offsetof(hm_heap, reclaimer));
    if (pthread_mutex_trylock(&h->lock)) return false;
    bool any = hm_heap_refused_give_back(h, HM_E_COMMITMENT_LIMIT, need);
    pthread_mutex_unlock(&h->lock);
    return any;
}

hm_status hm_heap_create(hm_manager *m, uint32_t flags, hm_heap **out)
{
    if (!out) return HM_E_POINTER;
    *out = NULL;
    hm_status st = HM_OK;
    if (!(m = hm_manager_resolve(m, &st))) return st;
    if ((st = hm_manager_enter(m))) return st;
    if (flags & ~(HM_HEAP_THREADSAFE | HM_HEAP_EXECUTABLE)) {
        hm_detail_set("heap flags %#x: only MALLOC_THREADSAFE (1) and MALLOC_EXECUTABLE (2) exist", flags);
        return HM_E_INVALIDARG;
    }
    hm_heap *h = hm_heap_obj_get();
    if (!h) return HM_E_OUTOFMEMORY;
    /* all but the bins of its own lists (made on first use, hm_bin_make) and the large-block cache's
     * slots (only the first nlcache are ever read): 52 KiB most heaps never touch */
    size_t bins = offsetof(hm_heap, own.bin), past = offsetof(hm_heap, own) + sizeof h->own;
    memset(h, 0, bins);
    memset((char *)h + past, 0, offsetof(hm_heap, lcache) - past);
    memset(&h->nlcache, 0, sizeof *h - offsetof(hm_heap, nlcache));
    h->m = m;
    h->flags = flags;
    h->dual = (flags & HM_HEAP_EXECUTABLE) && !hm_os_wx_allowed();
    h->cached = (flags & HM_HEAP_THREADSAFE) && !h->dual;
    h->tracked = hm_track_wanted();
    h->readable = h->cached && !m->opts.heap_guard; /* (segment_new) */
    h->fast = !h->dual && !h->tracked;
    for (size_t i = 0; i < sizeof h->class_of; i++) h->class_of[i] = (uint8_t)hm_heap_class_of(i ? i * 16 : 1);
    h->own.owner = h->cached ? 0 : HM_OWNER_CALLER; /* (heap.h: whose the heap's own pages are) */
    hm_pagelists_init_bins(&h->own);
    h->prot = !(flags & HM_HEAP_EXECUTABLE) ? HM_PAGE_READWRITE : h->dual ? HM_PAGE_EXECUTE_READ : HM_PAGE_EXECUTE_READWRITE;
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    uint64_t k = (uint64_t)t.tv_nsec * 0x9E3779B97F4A7C15ull ^ (uintptr_t)h ^ ((uint64_t)t.tv_sec << 32);
    k ^= k >> 31;
    h->key = (k * 0xBF58476D1CE4E5B9ull) | 1u;
    h->id = hm_tcache_new_heap_id(); /* (fast_id 0: the first call looks at the manager itself, running) */
    /* adaptive: refills and flushes hold it briefly, so a waiter spins a little before it sleeps */
    pthread_mutexattr_t ma;
    pthread_mutexattr_init(&ma);
    pthread_mutexattr_settype(&ma, PTHREAD_MUTEX_ADAPTIVE_NP);
    pthread_mutex_init(&h->lock, &ma);
    pthread_mutexattr_destroy(&ma);
    /* (a heap without HM_HEAP_THREADSAFE is its caller's alone: another thread's refusal may not touch it) */
    if (flags & HM_HEAP_THREADSAFE) {
        h->reclaimer.give_back = give_back;
        hm_manager_reclaimer_add(m, &h->reclaimer);
    }
    static pthread_once_t hook_once = PTHREAD_ONCE_INIT;
    pthread_once(&hook_once, hook_stops);
    all_link(h, true);
    *out = h;
    return HM_OK;
}

hm_status hm_heap_destroy(hm_heap *h)
{
    if (!h) return HM_E_POINTER;
    /* first: no refusal elsewhere may reach into the heap while it goes (taken again if it stays) */
    if (h->reclaimer.give_back) hm_manager_reclaimer_remove(h->m, &h->reclaimer);
    hm_heap_leak_report(h);
    atomic_store_explicit(&h->fast_id, 0, memory_order_relaxed); /* (set again by a call if destroy fails) */
    hm_tcache_heap_gone(h); /* threads' caches forget the heap; their blocks go with the segments */
    for (hm_segment *s = h->segments; s; s = s->next) hm_segmap_set((uintptr_t)s, false);
    hm_manager *m = h->m;
    hm_status st = HM_OK;
    /* Segments go one by one (a dual heap's each followed by its read-write view and memfd, which
     * its header names), and a dual heap's large blocks too: a refusal stops here with what is left
     * still recorded, so that destroy can be called again. */
    while (h->segments && !st) {
        hm_segment *next = h->segments->next;
        if (!(st = hm_heap_segment_release(h, h->segments))) h->segments = next;
    }
    while (h->views && !st) st = hm_heap_large_release(h, h->views->base); /* (which unlinks its views) */
    /* every other large block of this heap at once; the charge goes back with them */
    if (!st) st = hm_vmap_release_tagged(&m->acct, ~(uintptr_t)1, (uintptr_t)h);
    hm_manager_memory_returned(m);
    if (st) {
        if (h->reclaimer.give_back) hm_manager_reclaimer_add(m, &h->reclaimer);
        return hm_manager_leave(m, st);
    }
    hm_views_retry(h);
    while (h->stale) { /* still refused: the records go, the mappings stay (outside every account) */
        hm_view *v = h->stale;
        h->stale = v->next;
        hm_heap_view_put(v);
    }
    all_link(h, false);
    pthread_mutex_destroy(&h->lock);
    if (h->sites) hm_heap_sites_put(h->sites);
    hm_heap_obj_put(h);
    return HM_OK;
}

/* A block of at least size bytes at an align boundary. Thread-safe heaps serve small blocks from the
 * calling thread's pages (no lock while they have room) unless `cached` is false (debug blocks: the
 * heap's own pages); everything else runs under the heap's lock (taken here). */
static hm_status alloc_block(hm_heap *h, size_t size, size_t align, unsigned level, bool cached, uintptr_t *out)
{
    hm_status st;
    unsigned cls = HM_NCLASS;
    if (size <= HM_MEDIUM_MAX && align <= HM_SMALL_MAX) {
        cls = hm_heap_class_of(size ? size : 1);
        if (align > 16) /* every class is a multiple of 16; for more, the first class whose blocks are aligned */
            while (cls < HM_NCLASS && (hm_heap_class_size(cls) & (align - 1))) cls++;
    }
    if (cls == HM_NCLASS) return hm_heap_large_alloc(h, size, size, align, level, out, NULL);
    hm_pagelists *lists = cached && h->cached ? hm_tcache_lists(h) : NULL;
    if (lists) return hm_heap_small_alloc(h, lists, cls, level, out);
    hm_heap_lock(h);
    st = hm_heap_small_alloc(h, &h->own, cls, level, out);
    hm_heap_unlock(h);
    return st;
}

static hm_status check_level(hm_heap *h, hm_level level)
{
    if (!h) return HM_E_POINTER;
    hm_status st = hm_manager_enter(h->m);
    if (st) return st;
    if ((unsigned)level > HM_LEVEL_PROCESS) {
        hm_detail_set("critical level %d: not one of task (0), appdomain (1), process (2)", (int)level);
        return HM_E_INVALIDARG;
    }
    return HM_OK;
}

static hm_status alloc_aligned(hm_heap *h, size_t size, size_t align, hm_level level, void **out)
{
    if (!out) return HM_E_POINTER;
    *out = NULL;
    hm_status st = check_level(h, level);
    if (st) return st;
    if (!align || (align & (align - 1)) || align > HM_HEAP_MAX_ALIGN) {
        hm_detail_set("alignment %zu: a power of two up to 2^40", align);
        return HM_E_INVALIDARG;
    }
    if (align < 16) align = 16;
    uintptr_t b;
    st = alloc_block(h, size, align, (unsigned)level, true, &b);
    if (!st) *out = (void *)b;
    return hm_manager_leave(h->m, st);
}

/* A block the program gets: described to the checkers (track.h). */
static __attribute__((noinline)) void lend(hm_heap *h, void *p, size_t size)
{
    hm_track_lend(h, p, size, hm_heap_usable_size(h, p));
}

hm_status hm_heap_alloc_aligned(hm_heap *h, size_t size, size_t align, hm_level level, void **out)
{
    hm_status st = alloc_aligned(h, size, align, level, out);
    if (!st && h->tracked) lend(h, *out, size);
    return st;
}

/* The caller's first page of class cls had no free block: the page lists' slow path (other threads'
 * frees collected, another page), with the manager known to run. */
static __attribute__((noinline)) hm_status alloc_more(hm_heap *h, hm_pagelists *lists, hm_bintop *tp, hm_level level, void **out)
{
    uintptr_t b = 0;
    hm_status st = hm_heap_small_alloc(h, lists, (unsigned)(tp - lists->top), (unsigned)level, &b);
    *out = (void *)b;
    return hm_manager_leave(h->m, st);
}

/* A block from the caller's bin whose top is tp (of lists), refilled if it is empty. */
static inline __attribute__((always_inline)) hm_status alloc_from(hm_heap *h, hm_pagelists *lists, hm_bintop *tp,
                                                                  hm_level level, void **out)
{
    uintptr_t b = hm_heap_bin_take(tp);
    if (__builtin_expect(b != 0, 1)) {
        *out = (void *)b;
        return HM_OK;
    }
    return alloc_more(h, lists, tp, level, out);
}

/* Anything but a small block from the caller's bin, with every check made; h's running state
 * looked at (and remembered for the fast path) first. */
static __attribute__((noinline)) hm_status alloc_slow(hm_heap *h, size_t size, hm_level level, void **out)
{
    if (h && out && size <= HM_SMALL_MAX && (unsigned)level <= HM_LEVEL_PROCESS && running(h)) {
        /* (the fast path's first look after a stop; fast_id 0, and so no lists, for a heap the fast
         * paths may not serve) */
        hm_pagelists *lists = hm_heap_fast_lists(h, atomic_load_explicit(&h->fast_id, memory_order_relaxed));
        if (lists) return alloc_from(h, lists, &lists->top[hm_heap_class_of(size)], level, out);
    }
    return hm_heap_alloc_aligned(h, size, 16, level, out);
}

hm_status hm_heap_alloc(hm_heap *h, size_t size, hm_level level, void **out)
{
    /* the common case first (fast_id says the manager runs, the fast paths may serve h, and which
     * lists are the caller's: hm_heap_fast_lists) */
    /* (h and out tested in one: two pointers with no bit in common also go the slow way, which tells
     * them apart properly; a NULL one never passes) */
    if (__builtin_expect(((uintptr_t)h & (uintptr_t)out) && size <= HM_SMALL_MAX && (unsigned)level <= HM_LEVEL_PROCESS, 1)) {
        uint64_t k = atomic_load_explicit(&h->fast_id, memory_order_relaxed);
        unsigned cls = h->class_of[(size + 15) >> 4];
        /* (alloc_from inlined once for each heap kind: neither path computes the other's lists or
         * moves them between registers) */
        if (__builtin_expect(k & 1, 0)) return alloc_from(h, &h->own, &h->own.top[cls], level, out);
        hm_pagelists *lists = hm_heap_cached_lists(k);
        if (__builtin_expect(lists != NULL, 1)) return alloc_from(h, lists, &lists->top[cls], level, out);
    }
    return alloc_slow(h, size, level, out);
}

hm_status hm_heap_alloc_debug(hm_heap *h, size_t size, hm_level level, const char *file, int line, void **out)
{
    if (!out) return HM_E_POINTER;
    *out = NULL;
    hm_status st = check_level(h, level);
    if (st) return st;
    if (size > SIZE_MAX - HM_DEBUG_HDR) return HM_E_OUTOFMEMORY;
    uintptr_t b;
    /* at least 32 bytes, so that the caller's pointer (block + 16) lies inside its own block */
    size_t need = size + HM_DEBUG_HDR < 2 * HM_DEBUG_HDR ? 2 * HM_DEBUG_HDR : size + HM_DEBUG_HDR;
    st = alloc_block(h, need, 16, (unsigned)level, false, &b);
    hm_heap_lock(h);
    if (!st) {
        uint32_t site = hm_heap_site_of(h, file, line);
        uint64_t *hdr = (uint64_t *)hm_heap_wr(h, b);
        hm_segment *s = hm_segmap_get((void *)b);
        if (s) { /* (hm_heap_free_fast: no bin for the page's blocks any more; by the page's owner) */
            hm_hpage *pg = hm_page_of(b);
            HM_SET(pg->has_debug, 1);
            hm_page_arm_fbin(pg, atomic_load_explicit(&pg->home, memory_order_relaxed)); /* (none, with has_debug) */
        }
        hdr[0] = hm_heap_debug_tag(h, b);
        hdr[1] = (uint64_t)site << 40 | (size & (((uint64_t)1 << 40) - 1));
        if (site < HM_MAX_SITES) {
            h->sites[site].live_bytes += size;
            h->sites[site].live_blocks++;
            h->sites[site].total_blocks++;
        }
        *out = (void *)(b + HM_DEBUG_HDR);
    }
    hm_heap_unlock(h);
    if (!st && h->tracked) lend(h, *out, size);
    return hm_manager_leave(h->m, st);
}

hm_status hm_heap_calloc(hm_heap *h, size_t count, size_t size, hm_level level, void **out)
{
    if (size && count > SIZE_MAX / size) {
        if (out) *out = NULL;
        hm_detail_set("calloc: %zu x %zu overflows", count, size);
        return HM_E_OUTOFMEMORY;
    }
    size_t n = count * size;
    if (n > HM_MEDIUM_MAX && h && out) { /* a large block: a fresh one is zero already (no memset, no faults) */
        *out = NULL;
        hm_status st = check_level(h, level);
        if (st) return st;
        uintptr_t b;
        bool zero;
        st = hm_manager_leave(h->m, hm_heap_large_alloc(h, n, n, 16, (unsigned)level, &b, &zero));
        if (st) return st;
        if (!zero) memset((void *)hm_heap_wr_locked(h, b), 0, n);
        *out = (void *)b;
        if (h->tracked) lend(h, *out, n);
        return HM_OK;
    }
    hm_status st = hm_heap_alloc(h, n, level, out);
    if (!st) memset((void *)hm_heap_wr_locked(h, (uintptr_t)*out), 0, n);
    return st;
}

/* Releases a classified block (lock held). */
static hm_status release_block(hm_heap *h, const block_ref *r)
{
    switch (r->kind) {
    case SMALL:
    case SMALL_DEBUG:
        if (r->kind == SMALL_DEBUG) {
            hm_heap_site_forget(h, ((uint64_t *)r->block)[1]);
            HM_W64(h, r->block, 0) = 0; /* no longer a debug block */
        }
        hm_heap_small_free(h, r->page, r->block);
        return HM_OK;
    case LARGE:
    case LARGE_DEBUG: {
        /* A refused release returns before anything changed: the block stays whole and live, its
         * debug header and site counts too (SPEC 4: a failed Free changes nothing). */
        if (r->kind == LARGE_DEBUG || !hm_heap_lcache_put(h, (hm_lblock){r->block, r->size, r->room, 0})) {
            uint64_t info = ((uint64_t *)r->block)[1]; /* (read before the memory goes) */
            hm_status st = hm_heap_large_release(h, r->block);
            if (st) return st;
            if (r->kind == LARGE_DEBUG) hm_heap_site_forget(h, info);
        }
        hm_heap_large_count(h, -(int64_t)r->size, -1);
        return HM_OK;
    }
    default:
        return HM_E_HOST_INVALIDOPERATION;
    }
}

static __attribute__((noinline)) hm_status free_mapped(hm_heap *h, void *p);

/* Everything but the common case (hm_heap_free): out of line, so that the common case needs no
 * stack frame; a plain block of a page without one either (a tail call), in a thread-cached heap or
 * in one without HM_HEAP_THREADSAFE that the fast paths serve (its caller owns its lists: a Free
 * into a full bin flushes it there, as the thread caches' do, rather than through the map and lock). */
static hm_status free_general(hm_heap *h, void *p)
{
    if (h->cached || h->fast) {
        /* a live block: its bit alone says it starts one (another thread's, most often) */
        hm_hpage *pg = hm_heap_live_page(h, (uintptr_t)p);
        if (pg) return hm_heap_small_free_unlocked(h, pg, (uintptr_t)p);
        /* not live: a block's start is told "already freed" there; anything else, from the map */
        uint32_t bs;
        bool start;
        pg = hm_heap_block_page(h, (uintptr_t)p, &bs, &start);
        if (pg && start) return hm_heap_small_free_unlocked(h, pg, (uintptr_t)p);
    }
    return free_mapped(h, p);
}

/* free_general of what the page records alone do not tell: from the map's record. */
static hm_status free_mapped(hm_heap *h, void *p)
{
    hm_status st;
    hm_vmap_info info;
    if (!hm_heap_find(p, &info)) {
        hm_detail_set("Free(%p): not a block of any heap", p);
        return HM_E_HOST_INVALIDOPERATION;
    }
    if ((hm_heap *)(info.tag & ~(uintptr_t)1) != h) return hm_heap_foreign(&info, p);
    block_ref r;
    if (info.tag & 1u) { /* a large block: looked at under the lock (classify_large) */
        r = hm_heap_classify_large(h, p, &info);
        if (r.kind == NOT_A_BLOCK && info.tag && (hm_heap *)(info.tag & ~(uintptr_t)1) != h) return hm_heap_foreign(&info, p);
        if (r.kind == LARGE && r.size && h->cached) {
            /* Tagged freed before it enters this thread's cache: from then on another thread may
             * drain it to the heap's cache and hand it out (a refused commit drains every cache). */
            uint64_t word = HM_W64(h, r.block, 1); /* the program's bytes 8..15, put back if the cache says no */
            HM_W64(h, r.block, 1) = hm_lcache_tag(h, r.block);
            if (hm_tcache_large_put(h, (hm_lblock){r.block, r.size, r.room, 0})) {
                hm_heap_large_count(h, -(int64_t)r.size, -1);
                return HM_OK;
            }
            HM_W64(h, r.block, 1) = word; /* (refused: no other thread has seen it in a cache) */
        }
        hm_heap_lock(h);
        st = release_block(h, &r); /* (a live block stays live while its Free runs) */
        hm_heap_unlock(h);
        if (st == HM_E_HOST_INVALIDOPERATION) hm_detail_set("Free(%p): not a live block (already freed?)", p);
        return hm_manager_leave(h->m, st);
    }
    if (h->cached) { /* a plain small block: onto its page's list if the caller owns it, else its xfree; no lock */
        r = hm_heap_classify(h, &info, (uintptr_t)p);
        if (r.kind == SMALL) return hm_heap_small_free_unlocked(h, r.page, r.block);
    }
    hm_heap_lock(h);
    r = hm_heap_classify(h, &info, (uintptr_t)p);
    st = r.kind == SMALL && h->cached ? HM_E_HOST_INVALIDOPERATION /* changed meanwhile */
                                                           : release_block(h, &r);
    hm_heap_unlock(h);
    if (st == HM_E_HOST_INVALIDOPERATION)
        hm_detail_set("Free(%p): not a live block (interior, already freed, or never allocated)", p);
    return hm_manager_leave(h->m, st);
}

/* Free under a checker: the block's size is taken first (it is told to the checker after). */
static __attribute__((noinline)) hm_status free_tracked(hm_heap *h, void *p)
{
    /* told before the block goes: once it is back, another thread may hand it out again */
    size_t u = hm_heap_usable_size(h, p);
    /* (only a segment's blocks are poisoned: a large block's pages may go back with no one looking) */
    if (u) hm_track_return(h, p, hm_segmap_get(p) ? u : 0);
    hm_status st = free_general(h, p);
    if (st && u) hm_track_lend(h, p, u, u); /* (still the program's) */
    return st;
}

/* Anything but a plain small block of the caller's page with room in its bin: h's running state
 * looked at (and remembered for the fast path) first. */
__attribute__((noinline)) hm_status hm_heap_free_slow(hm_heap *h, void *p)
{
    if (!p) return HM_OK; /* (SPEC 1.1, whatever the manager's state) */
    if (!atomic_load_explicit(&h->fast_id, memory_order_relaxed)) {
        /* the fast path could not look (a manager stopped since h last looked, or a heap it may not
         * serve): the manager is asked, and the fast path tries again once it may (fast_id set) */
        if (!running_slow(h)) return HM_E_HOST_CLRNOTAVAILABLE; /* (SPEC 3.4; hm_manager_enter's answer) */
        if (hm_heap_free_fast(h, (uintptr_t)p)) return HM_OK; /* (fast_id stays 0 for a heap it may not serve) */
    }
    if (h->tracked) return free_tracked(h, p);
    return free_general(h, p);
}

hm_status hm_heap_free(hm_heap *h, void *p)
{
    if (!h) return HM_E_POINTER;
    /* (NULL is in no segment: the fast path passes it on) */
    if (__builtin_expect(hm_heap_free_fast(h, (uintptr_t)p), 1)) return HM_OK;
    return hm_heap_free_slow(h, p);
}

size_t hm_heap_usable_size(hm_heap *h, const void *p) { return hm_heap_usable(h, p, true, NULL); }

void *hm_heap_writable(hm_heap *h, const void *p)
{
    if (!h || !p || !hm_heap_usable_size(h, p)) return NULL;
    return (void *)hm_heap_wr_locked(h, (uintptr_t)p);
}

/* realloc's old block p goes, after its bytes moved: a Free that can only fail for a large block
 * whose release the kernel refuses (a small block's Free makes no system call). The move has been
 * made, so such a block is not the program's any more: it is parked (park), charged until a later
 * release succeeds. */
static void retire(hm_heap *h, void *p)
{
    if (hm_heap_free(h, p) == HM_OK) return;
    hm_vmap_info info;
    block_ref r = hm_heap_classify_large(h, p, &info);
    if (r.kind != LARGE && r.kind != LARGE_DEBUG) return; /* (the manager failed meanwhile: its books are void) */
    hm_heap_lock(h);
    if (r.kind == LARGE_DEBUG) hm_heap_site_forget(h, ((uint64_t *)r.block)[1]);
    hm_heap_park(h, (hm_lblock){r.block, r.size, r.room, 0});
    hm_heap_large_count(h, -(int64_t)r.size, -1);
    hm_heap_unlock(h);
}

hm_status hm_heap_realloc(hm_heap *h, void *p, size_t size, hm_level level, void **out)
{
    if (!out) return HM_E_POINTER;
    if (!p) return hm_heap_alloc(h, size, level, out);
    *out = NULL;
    if (!h) return HM_E_POINTER;
    if (!running(h)) return HM_E_HOST_CLRNOTAVAILABLE; /* SPEC 3.4, before anything is kept (as Free) */
    hm_vmap_info info; /* (its tag only, 0, for a block of a page or span: only a large one grows in place) */
    size_t have = hm_heap_usable(h, p, false, &info); /* (the caller holds p: no other thread releases it) */
    if (!have) { /* says why without touching anything: another heap's live block, or no block */
        if (hm_heap_find(p, &info) && (hm_heap *)(info.tag & ~(uintptr_t)1) != h)
            return hm_heap_foreign(&info, p);
        hm_detail_set("realloc(%p): not a live block of this heap", p);
        return HM_E_HOST_INVALIDOPERATION;
    }
    /* shrinking within the same class, or growing within the block: keep it */
    if (size <= have && (size > HM_MEDIUM_MAX || hm_heap_class_of(size ? size : 1) == hm_heap_class_of(have) || size * 2 > have)) {
        *out = p;
        if (h->tracked) hm_track_resize(h, p, size, have);
        return HM_OK;
    }
    hm_status st;
    if (have > HM_SMALL_MAX && size > have && (st = hm_heap_grow_in_place(h, (uintptr_t)p, &info, have, size, level)) == HM_OK) {
        *out = p;
        if (h->tracked) hm_track_resize(h, p, size, hm_heap_usable_size(h, p));
        return HM_OK;
    }
    uintptr_t nb;
    if (size > HM_MEDIUM_MAX || (size > HM_SMALL_MAX && size > have)) {
        /* a large block, with room to grow into in place next time (a block that grows by realloc
         * grows again: in place it costs a commit, a medium class's next size a copy) */
        size_t room = size <= SIZE_MAX / 2 ? size * 2 : size;
        if ((st = check_level(h, level))) return st;
        st = hm_heap_large_alloc(h, size, room, 16, (unsigned)level, &nb, NULL);
        st = hm_manager_leave(h->m, st);
    } else {
        st = hm_heap_alloc(h, size, level, (void **)&nb);
    }
    if (st) return st; /* p untouched */
    void *q = (void *)nb;
    memcpy((void *)hm_heap_wr_locked(h, (uintptr_t)q), p, size < have ? size : have);
    retire(h, p);
    *out = q;
    return HM_OK;
}

/* The ownerless pages get other threads' frees through their xfree, which nobody collects until a
 * thread adopts the page: collects them, and gives up the pages left without a block in use (lock
 * held). */
static void own_reclaim(hm_heap *h)
{
    for (unsigned cls = 0; cls < HM_NSMALL; cls++) hm_heap_bin_flush(h, &h->own, cls, HM_BIN_N, true);
    for (unsigned cls = 0; cls < HM_NCLASS; cls++)
        for (int full = 0; full < 2; full++)
            for (hm_hpage *pg = full ? h->own.full[cls] : h->own.avail[cls], *next; pg; pg = next) {
                next = pg->next;
                if (atomic_load_explicit(&pg->xfree, memory_order_relaxed) && !hm_heap_collect(h, pg)) return;
                if (!atomic_load_explicit(&pg->used, memory_order_relaxed)) hm_heap_page_empty(h, pg);
                else if (full && hm_page_nfree(pg)) hm_page_move(pg, 1);
            }
}

hm_status hm_heap_trim(hm_heap *h)
{
    if (!h) return HM_E_POINTER;
    hm_status st = hm_manager_enter(h->m);
    if (st) return st;
    hm_pagelists *mine = h->cached ? hm_tcache_find_lists(h) : NULL; /* (a thread that never used h has none) */
    if (h->cached) hm_tcache_large_drain(h); /* the calling thread's own */
    hm_heap_lock(h);
    if (mine) hm_heap_trim_lists(h, mine); /* the calling thread's empty pages too */
    own_reclaim(h);
    /* What the kernel refuses to give back stays cached (the books stay exact) and trim says so. */
    st = hm_heap_purge(h, true);
    hm_status lst = hm_heap_lcache_drain(h);
    if (!st) st = lst;
    hm_views_retry(h);
    hm_heap_unlock(h);
    hm_manager_memory_returned(h->m);
    return hm_manager_leave(h->m, st);
}

