/* heap.c — the heap allocator of heap.h: size classes, pages and segments, exact Free validation,
 * large blocks, debug sites. */
#define _GNU_SOURCE /* PTHREAD_MUTEX_ADAPTIVE_NP */
#include "heap_internal.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "../manager/manager.h"
#include "../os/os.h"
#include "../vmap/meta.h"
#include "../vmap/vmap.h"
#include "track.h"

#define LCACHE_MAGIC 0x6c63616368656421ull /* mixed into a cached large block's tag */
#define BS(pg) atomic_load_explicit(&(pg)->block_size, memory_order_relaxed)
#define EXTENT(pg) atomic_load_explicit(&(pg)->extent, memory_order_relaxed)
#define SET(field, v) atomic_store_explicit(&(field), (v), memory_order_relaxed)
#define GRANULE ((size_t)64 << 10) /* the map's allocation granularity: every reservation base is so aligned */

static pthread_mutex_t pool_lock = PTHREAD_MUTEX_INITIALIZER; /* the two pools below */
/* A heap stands 64 bytes into its pool object (the header, then padding): objects are carved from
 * page-aligned chunks in multiples of 64 bytes, so the heap's cache lines are its own (heap.h). */
#define HEAP_AT 64
_Static_assert(sizeof(struct hm_heap) % 64 == 0, "heap objects keep 64-byte alignment");
static hm_pool heap_pool = HM_POOL_INIT("heap", HEAP_AT + sizeof(struct hm_heap), 64 * 1024);
static hm_pool site_pool = HM_POOL_INIT("heap-sites", sizeof(hm_meta_hdr) + sizeof(hm_site) * HM_MAX_SITES, 128 * 1024);
static hm_pool view_pool = HM_POOL_INIT("heap-views", sizeof(hm_meta_hdr) + sizeof(hm_view), 16 * 1024);

static void *pool_get(hm_pool *p)
{
    int err = 0;
    pthread_mutex_lock(&pool_lock);
    hm_meta_hdr *h = hm_pool_alloc(p, &err);
    pthread_mutex_unlock(&pool_lock);
    return h ? h + 1 : NULL;
}

static void pool_put(hm_pool *p, void *o);
static hm_heap *heap_get(void)
{
    char *o = pool_get(&heap_pool);
    return o ? (hm_heap *)(o - sizeof(hm_meta_hdr) + HEAP_AT) : NULL;
}
static void heap_put(hm_heap *h) { pool_put(&heap_pool, (char *)h - HEAP_AT + sizeof(hm_meta_hdr)); }

static void pool_put(hm_pool *p, void *o)
{
    pthread_mutex_lock(&pool_lock);
    hm_pool_free(p, (hm_meta_hdr *)o - 1);
    pthread_mutex_unlock(&pool_lock);
}

/* ---- size classes ------------------------------------------------------------------------------ */

/* hm_heap_class_of (heap_internal.h): the class of sizes up to 1 KiB by ceil(size / 16) (0 counts
 * as 1), checked against the formula by tests/heap.c. */
const uint8_t hm_heap_class_table[65] = {0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 12, 12, 13, 13, 13, 13, 14, 14, 14, 14, 15, 15, 15, 15, 16, 16, 16, 16, 16, 16, 16, 16, 17, 17, 17, 17, 17, 17, 17, 17, 18, 18, 18, 18, 18, 18, 18, 18, 19, 19, 19, 19, 19, 19, 19, 19};

/* hm_heap_class_of (heap_internal.h) maps a size to its class; these are the classes' block sizes. */
const uint32_t hm_heap_class_sizes[HM_NCLASS] = {
    16, 32, 48, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 384, 448, 512, 640, 768, 896, 1024, 1280, 1536, 1792, 2048, 2560, 3072, 3584, 4096, 5120, 6144, 7168, 8192, 10240, 12288, 14336, 16384, 20480, 24576, 28672, 32768};

/* ---- helpers ---------------------------------------------------------------------------------- */

void hm_heap_lock(hm_heap *h)
{
    if (h->flags & HM_HEAP_THREADSAFE) pthread_mutex_lock(&h->lock);
}
void hm_heap_unlock(hm_heap *h)
{
    if (h->flags & HM_HEAP_THREADSAFE) pthread_mutex_unlock(&h->lock);
}

static inline hm_segment *seg_of(const hm_hpage *pg) { return (hm_segment *)((uintptr_t)pg & ~(uintptr_t)(HM_SEG_SIZE - 1)); }
static inline size_t page_index(const hm_hpage *pg) { return (size_t)(pg - seg_of(pg)->page); }
static inline uintptr_t page_addr(const hm_hpage *pg) { return (uintptr_t)seg_of(pg) + page_index(pg) * HM_HPAGE_SIZE; }

/* The live bit of the block at b (heap_internal.h). One writer per page at a time (its owner, or the
 * heap's lock): load and store, no RMW. */
static inline void set_live(hm_hpage *pg, uintptr_t b, bool on)
{
    uint32_t g = (uint32_t)((b & (HM_HPAGE_SIZE - 1)) >> 4);
    uint64_t w = atomic_load_explicit(&pg->live[g / 64], memory_order_relaxed), m = (uint64_t)1 << (g % 64);
    atomic_store_explicit(&pg->live[g / 64], on ? w | m : w & ~m, memory_order_relaxed);
}


/* Whether h's manager runs, for the fast paths: no manager has stopped since h last saw its own
 * running (manager.h, hm_manager_stops), or it runs now (looked at, and remembered). */
static __attribute__((noinline)) bool running_slow(hm_heap *h, unsigned stops)
{
    if (hm_manager_enter(h->m) != HM_OK) return false;
    atomic_store_explicit(&h->stops_seen, stops, memory_order_relaxed);
    return true;
}
static inline bool running(hm_heap *h)
{
    unsigned stops = atomic_load_explicit(&hm_manager_stops, memory_order_acquire);
    return stops == atomic_load_explicit(&h->stops_seen, memory_order_relaxed) || running_slow(h, stops);
}

static void list_add(hm_hpage **head, hm_hpage *pg)
{
    pg->prev = NULL;
    pg->next = *head;
    if (*head) (*head)->prev = pg;
    *head = pg;
}

static void list_del(hm_hpage **head, hm_hpage *pg)
{
    if (pg->prev) pg->prev->next = pg->next;
    else *head = pg->next;
    if (pg->next) pg->next->prev = pg->prev;
    pg->next = pg->prev = NULL;
}

static hm_status corrupted(hm_heap *h, const char *what, uintptr_t at)
{
    hm_detail_set("heap %p: %s at %#lx: its metadata was overwritten", (void *)h, what, (unsigned long)at);
    hm_manager_fail(h->m); /* SPEC 3.4: books no longer trustworthy */
    return HM_E_FAIL;
}

/* ---- two views (heap.h, "Executable heaps") ------------------------------------------------------- */

static hm_view *view_of(const hm_heap *h, uintptr_t b)
{
    for (hm_view *v = h->views; v; v = v->next)
        if (b - v->base < v->room) return v;
    return NULL;
}

/* Where the heap (or the program) writes the byte at b of a block of h: b itself, or its alias in
 * the read-write view of a dual heap. */
static inline uintptr_t wr(const hm_heap *h, uintptr_t b)
{
    if (!h->dual) return b;
    hm_segment *s = hm_segmap_get((void *)b);
    if (s) return (uintptr_t)((intptr_t)b + s->rw_delta);
    hm_view *v = view_of(h, b);
    return v ? v->rw + (b - v->base) : b;
}
#define W64(h, b, i) ((uint64_t *)wr((h), (b)))[i]
/* wr() for a caller without the lock (the large blocks' list may change meanwhile). */
static uintptr_t wr_locked(hm_heap *h, uintptr_t b)
{
    if (!h->dual) return b;
    hm_heap_lock(h);
    uintptr_t r = wr(h, b);
    hm_heap_unlock(h);
    return r;
}

/* Two views of [base, base+size) from a new memfd: its shared execute-read view over the map's
 * reservation there (PROT_NONE until committed), its read-write view anywhere. A dual heap's
 * reservations are mappings of their own (HM_RESERVE_OWN), so the execute-read view goes with the
 * reservation's release (one munmap): no step of giving the views back can leave a shared mapping
 * inside the map's arena. On failure the caller releases the reservation, view or not. */
static int views_new(uintptr_t base, size_t size, int *fd, uintptr_t *rw)
{
    int err = hm_os_memfd(size, fd);
    if (err) return err;
    void *p = NULL;
    if ((err = hm_os_map_shared_at((void *)base, size, *fd, 0, HM_OS_PROT_NONE)) ||
        (err = hm_os_map_shared(size, *fd, 0, HM_OS_PROT_READ | HM_OS_PROT_WRITE, &p))) {
        hm_os_close(*fd);
        return err;
    }
    *rw = (uintptr_t)p;
    return 0;
}

/* After the reservation's release: the read-write view and the memfd go. A refused munmap (the
 * kernel needs memory to split nothing here, so only an injected fault) keeps the view on the heap's
 * list of views to unmap, retried by trim and destroy: the memory it holds is not the manager's
 * charge (that went with the release), and nothing hands its addresses out meanwhile. Lock held or
 * the heap private to the caller. */
static void views_close(hm_heap *h, int fd, uintptr_t rw, size_t size)
{
    hm_os_close(fd);
    if (!hm_os_unmap((void *)rw, size)) return;
    hm_view *v = pool_get(&view_pool);
    if (!v) return; /* (no memory for the record either: the view stays mapped, unreferenced) */
    *v = (hm_view){0, size, rw, -1, h->stale};
    h->stale = v;
}

/* Retries the unmaps views_close could not do (lock held). */
static void views_retry(hm_heap *h)
{
    for (hm_view **p = &h->stale; *p;) {
        hm_view *v = *p;
        if (hm_os_unmap((void *)v->rw, v->room)) {
            p = &v->next;
            continue;
        }
        *p = v->next;
        pool_put(&view_pool, v);
    }
}

/* Unlinks a large block's views after its reservation was released (heap lock held). */
static void view_forget(hm_heap *h, hm_view *v)
{
    for (hm_view **p = &h->views; *p; p = &(*p)->next)
        if (*p == v) {
            *p = v->next;
            break;
        }
    views_close(h, v->fd, v->rw, v->room);
    pool_put(&view_pool, v);
}

/* ---- segments and pages ----------------------------------------------------------------------- */

/* Gives back a reservation of h's that nothing was committed in or handed out from, after a failed
 * step of creating a segment or a large block. The release of pages never committed makes no system
 * call that can fail, except the munmap of a mapping of its own; if that is refused, the reservation
 * stays in the map under h's tag (the books stay exact: it is reserved address space) and goes when h
 * is destroyed. */
static void drop_reservation(hm_heap *h, void *base)
{
    (void)hm_manager_free(h->m, base, 0, HM_MEM_RELEASE); /* (a refusal keeps it recorded, as said above) */
}

/* A new segment, its header committed at level. Makes system calls and may wait for memory: the
 * heap's lock is NOT held; the caller links the segment in under it. */
static hm_status segment_new(hm_heap *h, unsigned level, hm_segment **out)
{
    void *base;
    /* Reserved pages of a thread-cached heap's segment read as zeros: a second Free racing the first
     * reads a freed block's words without the lock, and its page may be decommitted meanwhile
     * (hm_tcache_push looks at the live bit again afterwards). Not with guard pages (which must fault
     * on a read too), nor for the heaps whose every Free runs under the lock (no purge meanwhile). */
    hm_status st = hm_vmap_reserve_tagged(&h->m->acct, HM_SEG_SIZE, HM_SEG_SIZE, (uintptr_t)h,
                                          h->readable ? HM_RESERVE_READABLE : h->dual ? HM_RESERVE_OWN : 0, &base);
    if (st) return st;
    size_t hdr = (sizeof(hm_segment) + 4095) & ~(size_t)4095;
    int fd = -1;
    uintptr_t rw = 0, blocks = (uintptr_t)base + HM_HPAGE_SIZE;
    if (h->dual) {
        int err = views_new(blocks, HM_SEG_SIZE - HM_HPAGE_SIZE, &fd, &rw);
        if (err) {
            drop_reservation(h, base);
            hm_detail_set("executable heap: two views of a segment: %s", strerror(err));
            return HM_E_OUTOFMEMORY;
        }
    }
    void *b;
    st = hm_manager_alloc(h->m, level, base, hdr, HM_MEM_COMMIT, HM_PAGE_READWRITE, &b);
    if (st) {
        drop_reservation(h, base);
        if (h->dual) {
            hm_heap_lock(h);
            views_close(h, fd, rw, HM_SEG_SIZE - HM_HPAGE_SIZE);
            hm_heap_unlock(h);
        }
        return st;
    }
    hm_segment *s = base; /* fresh committed memory reads zero: every page starts unused */
    atomic_store_explicit(&s->cookie, h->key ^ (uintptr_t)s, memory_order_release);
    s->heap = h;
    s->fd = fd;
    s->rw_delta = (intptr_t)rw - (intptr_t)blocks;
    *out = s;
    return HM_OK;
}

/* A page for class cls, on home's list: an empty committed one from the cache, else an unused slot committed now at
 * level, else one in a new segment. Called and returns with the heap's lock held, but drops it
 * around committing (which may wait for memory, SPEC 3.3): a claimed slot is marked committed = 2
 * meanwhile so that no other thread takes it. */
uint32_t hm_heap_empty_delay_ms = HM_EMPTY_DELAY_MS;

static uint64_t now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &t);
    return (uint64_t)t.tv_sec * 1000 + (uint64_t)t.tv_nsec / 1000000;
}

/* The empty cache: a list, newest first (reused first: its memory is the warmest), oldest last
 * (decommitted first). Lock held. */
static void empty_push(hm_heap *h, hm_hpage *pg)
{
    pg->empty_since = now_ms();
    pg->in_empty = 1;
    list_add(&h->empty, pg);
    if (!h->empty_tail) h->empty_tail = pg;
    h->nempty++;
}
static void empty_del(hm_heap *h, hm_hpage *pg)
{
    if (h->empty_tail == pg) h->empty_tail = pg->prev;
    list_del(&h->empty, pg);
    pg->in_empty = 0;
    h->nempty--;
}

/* Whether pg sits in the empty cache and has waited long enough (or force). */
static inline bool purgeable(const hm_hpage *pg, bool force, uint64_t now)
{
    return pg->in_empty && (force || now - pg->empty_since >= hm_heap_empty_delay_ms);
}

/* Decommits the empty pages that have waited long enough, or all of them with force (lock held):
 * oldest first, each with the neighbours in its segment that are due too, in one call (a thread's
 * exit or a trim empties many adjacent pages at once). A refused decommit keeps its pages committed
 * and cached: the books stay exact; its status is returned (trim reports it, the others go on). */
static hm_status purge(hm_heap *h, bool force)
{
    if (!h->empty_tail) return HM_OK;
    if (atomic_load_explicit(&h->m->notify.state, memory_order_relaxed) == HM_MEMORY_LOW) force = true;
    uint64_t now = force ? 0 : now_ms();
    while (h->empty_tail && purgeable(h->empty_tail, force, now)) {
        hm_hpage *pg = h->empty_tail, *page = seg_of(pg)->page;
        size_t lo = page_index(pg), hi = lo + 1;
        while (lo > 1 && purgeable(&page[lo - 1], force, now)) lo--;
        while (hi < HM_SEG_PAGES && purgeable(&page[hi], force, now)) hi++;
        /* The memfd keeps what a shared view drops: a dual heap's pages are punched first (they hold no
         * block, so nothing is lost if the decommit is then refused: they stay committed, empty and
         * zero), which also keeps a refused punch from leaving old words under a later commit. */
        int err = h->dual ? hm_os_punch(seg_of(pg)->fd, (lo - 1) * HM_HPAGE_SIZE, (hi - lo) * HM_HPAGE_SIZE) : 0;
        if (err) {
            hm_detail_set("heap %p: returning empty pages of a two-view heap: %s", (void *)h, strerror(err));
            return HM_E_OUTOFMEMORY;
        }
        hm_status st = hm_manager_free(h->m, (void *)page_addr(&page[lo]), (hi - lo) * HM_HPAGE_SIZE, HM_MEM_DECOMMIT);
        if (st) return st;
        for (size_t i = lo; i < hi; i++) {
            empty_del(h, &page[i]);
            page[i].committed = 0;
        }
    }
    return HM_OK;
}

static hm_status lcache_drain(hm_heap *h, bool *any);
static hm_status large_release(hm_heap *h, uintptr_t base);
static bool find(const void *p, hm_vmap_info *info);

/* A commit was refused: the freed large blocks kept committed (the heap's cache and every thread's)
 * go first, and the caller tries once more; true if any went. Lock held. */
static bool refused_give_back(hm_heap *h, hm_status st)
{
    if (st != HM_E_COMMITMENT_LIMIT && st != HM_E_HOST_TIMEOUT) return false;
    bool any = h->cached && hm_tcache_large_drain_all(h), kept;
    (void)lcache_drain(h, &kept); /* (what it cannot release stays cached: the retry may still pass) */
    uint32_t before = h->nempty; /* and the empty pages, however recently emptied */
    (void)purge(h, true);
    return kept || any || h->nempty < before;
}

/* Releases segment s (not linked any more, or about to be unlinked by the caller) and then a dual
 * heap's read-write view and memfd of it, which its header names: read before the release. A
 * refusal changes nothing. */
static hm_status segment_release(hm_heap *h, hm_segment *s)
{
    if (h->tracked) hm_track_clear(s, HM_SEG_SIZE); /* (before: the header is read below) */
    int fd = s->fd;
    uintptr_t rw = (uintptr_t)((intptr_t)s + HM_HPAGE_SIZE + s->rw_delta);
    hm_status st = hm_manager_free(h->m, s, 0, HM_MEM_RELEASE);
    if (!st && h->dual) views_close(h, fd, rw, HM_SEG_SIZE - HM_HPAGE_SIZE);
    return st;
}

/* A segment made for a page whose commit was then refused goes again, unless another thread took a
 * page of it while the lock was dropped (lock held). A refused release keeps it: empty, reusable. */
static void segment_drop(hm_heap *h, hm_segment *s)
{
    for (size_t i = 1; i < HM_SEG_PAGES; i++)
        if (s->page[i].committed || BS(&s->page[i])) return;
    hm_segment **at = &h->segments;
    while (*at && *at != s) at = &(*at)->next;
    if (!*at) return;
    hm_segmap_set((uintptr_t)s, false);
    hm_segment *next = s->next;
    if (segment_release(h, s)) {
        hm_segmap_set((uintptr_t)s, true);
        return;
    }
    *at = next;
}

static hm_status page_new(hm_heap *h, hm_pagelists *home, unsigned cls, unsigned level, hm_hpage **out)
{
    hm_hpage *pg = h->empty;
    bool fresh = false; /* pg is the first page of a segment made by this call */
    if (pg) {
        empty_del(h, pg);
        (void)purge(h, false); /* (opportunistic: a refusal keeps the pages cached) */
    } else {
        size_t last = h->m->opts.heap_guard ? HM_SEG_PAGES - 1 : HM_SEG_PAGES; /* the guard is never used */
        for (hm_segment *s = h->segments; s && !pg; s = s->next)
            for (size_t i = 1; i < last; i++)
                if (!BS(&s->page[i]) && !s->page[i].committed) {
                    pg = &s->page[i];
                    break;
                }
        if (!pg) {
            hm_segment *s;
            hm_heap_unlock(h);
            fresh = true;
            hm_status st = segment_new(h, level, &s);
            hm_heap_lock(h);
            if (refused_give_back(h, st)) { /* once more */
                hm_heap_unlock(h);
                st = segment_new(h, level, &s);
                hm_heap_lock(h);
            }
            if (st) return st;
            s->next = h->segments;
            h->segments = s;
            hm_segmap_set((uintptr_t)s, true); /* before any of its blocks is handed out */
            pg = &s->page[1];
        }
        /* With room to spare in the budget (the task level's threshold twice over), the unused slots
         * that follow are committed in the same call and wait in the empty cache: a growing heap
         * makes one system call per HM_COMMIT_AHEAD pages instead of one per page. */
        size_t n = 1, first = page_index(pg);
        hm_account *acct = &h->m->acct;
        if (atomic_load_explicit(&acct->charge, memory_order_relaxed) + 2 * HM_COMMIT_AHEAD * HM_HPAGE_SIZE <=
                acct->threshold[HM_LEVEL_TASK] / 2 &&
            atomic_load_explicit(&h->m->notify.state, memory_order_relaxed) != HM_MEMORY_LOW &&
            !atomic_load_explicit(&h->m->nwaiting, memory_order_relaxed))
            while (n < HM_COMMIT_AHEAD && first + n < last && !BS(&pg[n]) && !pg[n].committed) n++;
        for (size_t k = 0; k < n; k++) pg[k].committed = 2; /* claimed */
        void *b;
        hm_heap_unlock(h);
        hm_status st = hm_manager_alloc(h->m, level, (void *)page_addr(pg), n * HM_HPAGE_SIZE, HM_MEM_COMMIT, h->prot, &b);
        hm_heap_lock(h);
        if (refused_give_back(h, st)) { /* once more */
            hm_heap_unlock(h);
            st = hm_manager_alloc(h->m, level, (void *)page_addr(pg), n * HM_HPAGE_SIZE, HM_MEM_COMMIT, h->prot, &b);
            hm_heap_lock(h);
        }
        if (st) {
            for (size_t k = 0; k < n; k++) pg[k].committed = 0; /* the pages stay unused: the heap is as it was */
            if (fresh) segment_drop(h, seg_of(pg));          /* ... and so does the segment made for them */
            return st;
        }
        for (size_t k = 0; k < n; k++) pg[k].committed = 1;
        for (size_t k = n; k-- > 1;) empty_push(h, &pg[k]);
    }
    size_t bs = hm_heap_class_size(cls);
    SET(pg->block_size, (uint32_t)bs);
    pg->cls = (uint16_t)cls;
    pg->capacity = (uint32_t)(HM_HPAGE_SIZE / bs);
    pg->inv = hm_heap_inverse((uint32_t)bs);
    SET(pg->has_debug, 0);
    SET(pg->used, 0);
    SET(pg->extent, 0);
    pg->free = 0;
    atomic_store_explicit(&pg->xfree, 0, memory_order_relaxed);
    atomic_store_explicit(&pg->xcount, 0, memory_order_relaxed);
    seg_of(pg)->pages_in_use++;
    atomic_store_explicit(&pg->home, home, memory_order_relaxed);
    list_add(&home->avail[cls], pg);
    pg->list = 1;
    *out = pg;
    return HM_OK;
}

static inline hm_hpage **list_of(hm_hpage *pg)
{
    hm_pagelists *home = atomic_load_explicit(&pg->home, memory_order_relaxed);
    return pg->list == 1 ? &home->avail[pg->cls] : &home->full[pg->cls];
}

/* Moves pg to its home's list `to` (0 none, 1 avail, 2 full). Its owner, or the lock when ownerless. */
static void move(hm_hpage *pg, uint32_t to)
{
    if (pg->list == to) return;
    if (pg->list) list_del(list_of(pg), pg);
    pg->list = to;
    if (to) list_add(list_of(pg), pg);
}

/* A page whose last block went (heap lock held; the page's owner or ownerless): into the empty cache.
 * page_retire leaves the purge of due pages to its caller (a thread's exit retires many at once). */
static void page_retire(hm_heap *h, hm_hpage *pg)
{
    move(pg, 0);
    atomic_store_explicit(&pg->home, NULL, memory_order_relaxed);
    SET(pg->block_size, 0);
    SET(pg->extent, 0);
    pg->free = 0;
    seg_of(pg)->pages_in_use--;
    if (h->tracked) hm_track_clear((void *)page_addr(pg), HM_HPAGE_SIZE); /* (carved afresh next time) */
    empty_push(h, pg);
}
static void page_empty(hm_heap *h, hm_hpage *pg)
{
    page_retire(h, pg);
    (void)purge(h, false); /* (opportunistic: a refusal keeps the pages cached) */
}

/* ---- blocks ----------------------------------------------------------------------------------- */

static inline uint32_t index_of(const hm_hpage *pg, uintptr_t b) { return hm_heap_block_index(b & (HM_HPAGE_SIZE - 1), pg->inv); }

/* Whether b may be a block of pg below its extent (a decoded link is checked with this). */
static inline bool in_page(const hm_hpage *pg, uintptr_t b)
{
    uintptr_t base = page_addr(pg);
    if (b < base || b >= base + HM_HPAGE_SIZE) return false;
    uint32_t i = index_of(pg, b);
    return i < EXTENT(pg) && base + (uintptr_t)i * BS(pg) == b;
}

/* Takes back onto the free list the blocks other threads pushed onto pg's xfree (its owner, or the
 * lock when ownerless); false if a link was overwritten (the heap is failed then). */
static bool collect(hm_heap *h, hm_hpage *pg)
{
    uintptr_t b = atomic_exchange_explicit(&pg->xfree, 0, memory_order_acquire);
    uint32_t n = 0;
    bool ok = true;
    while (b) {
        uintptr_t next = *(uintptr_t *)b ^ h->key ^ b;
        set_live(pg, b, false); /* it keeps its cache tag (take_one) */
        *(uintptr_t *)wr(h, b) = pg->free ^ h->key ^ b;
        pg->free = b;
        n++;
        if (next && !in_page(pg, next)) {
            (void)corrupted(h, "cross-thread free-list link", b);
            ok = false;
            break;
        }
        b = next;
    }
    atomic_fetch_sub_explicit(&pg->xcount, n, memory_order_relaxed);
    SET(pg->used, atomic_load_explicit(&pg->used, memory_order_relaxed) - n);
    return ok;
}

/* One block from pg, which has one (free list or untouched room); its owner or the lock. */
static hm_status take_one(hm_heap *h, hm_hpage *pg, uintptr_t *out)
{
    uintptr_t base = page_addr(pg), bs = BS(pg), b;
    uint32_t extent = EXTENT(pg);
    if (pg->free) {
        b = pg->free;
        uintptr_t next = *(uintptr_t *)b ^ h->key ^ b;
        if (next && (!in_page(pg, next) || hm_heap_live(pg, next))) return corrupted(h, "free-list link", b);
        pg->free = next;
    } else {
        b = base + (uintptr_t)extent++ * bs;
        SET(pg->extent, extent);
    }
    /* Tagged as cached before it turns live: a block the program freed is never live and untagged
     * while the heap has it (a second Free racing this must see one or the other). Blocks handed
     * straight to the program lose the tag in their caller (alloc_block, hm_tcache_alloc). */
    atomic_store_explicit(hm_tcache_word1(wr(h, b)), hm_tcache_tag(h, b), memory_order_relaxed);
    atomic_thread_fence(memory_order_release);
    set_live(pg, b, true);
    SET(pg->used, atomic_load_explicit(&pg->used, memory_order_relaxed) + 1);
    if (!pg->free && extent == pg->capacity) {
        /* out of blocks: take what other threads gave back, else it waits on the full list */
        if (atomic_load_explicit(&pg->xfree, memory_order_relaxed) && collect(h, pg) && pg->free) {
        } else {
            move(pg, 2);
        }
    }
    *out = b;
    return HM_OK;
}

uint32_t hm_heap_take(hm_heap *h, hm_pagelists *lists, unsigned cls, uintptr_t *out, uint32_t want, hm_status *st)
{
    uint32_t n = 0;
    *st = HM_OK;
    while (n < want) {
        hm_hpage *pg = lists->avail[cls];
        if (!pg) break;
        if (!pg->free && EXTENT(pg) == pg->capacity) { /* (cannot happen: such a page is on the full list) */
            move(pg, 2);
            continue;
        }
        if ((*st = take_one(h, pg, &out[n]))) break; /* (corrupted: the manager failed) */
        n++;
    }
    return n;
}

void hm_heap_collect_full(hm_heap *h, hm_pagelists *lists, unsigned cls)
{
    for (hm_hpage *pg = lists->full[cls], *next; pg; pg = next) {
        next = pg->next;
        if (!atomic_load_explicit(&pg->xfree, memory_order_relaxed)) continue;
        if (!collect(h, pg)) return;
        if (pg->free) move(pg, 1);
    }
}

/* Adopts an ownerless page of class cls with a free block into lists (heap lock held); false if none. */
static bool adopt(hm_heap *h, hm_pagelists *lists, unsigned cls)
{
    hm_hpage *pg = h->own.avail[cls];
    if (!pg) { /* an ownerless full page that other threads freed blocks into */
        hm_heap_collect_full(h, &h->own, cls);
        pg = h->own.avail[cls];
    }
    if (!pg) return false;
    move(pg, 0);
    atomic_store_explicit(&pg->home, lists, memory_order_seq_cst); /* (hm_heap_give reads it after its push) */
    move(pg, 1);
    return true;
}

hm_status hm_heap_small_alloc(hm_heap *h, hm_pagelists *lists, unsigned cls, unsigned level, uintptr_t *out)
{
    for (;;) {
        hm_status st;
        if (hm_heap_take(h, lists, cls, out, 1, &st)) return HM_OK;
        if (st) return st;
        if (lists != &h->own) {
            if (adopt(h, lists, cls)) continue;
        } else {
            hm_heap_collect_full(h, lists, cls);
            if (lists->avail[cls]) continue;
        }
        hm_hpage *pg;
        if ((st = page_new(h, lists, cls, level, &pg))) return st;
    }
}

bool hm_heap_give(hm_heap *h, hm_pagelists *mine, hm_hpage *pg, uintptr_t b)
{
    hm_pagelists *home = atomic_load_explicit(&pg->home, memory_order_relaxed);
    if (home != mine) { /* another thread's page (or an ownerless one, the lock not held): its xfree */
        atomic_store_explicit(hm_tcache_word1(wr(h, b)), hm_tcache_tag(h, b), memory_order_relaxed);
        uintptr_t old = atomic_load_explicit(&pg->xfree, memory_order_relaxed);
        do *(uintptr_t *)wr(h, b) = old ^ h->key ^ b;
        while (!atomic_compare_exchange_weak_explicit(&pg->xfree, &old, b, memory_order_seq_cst, memory_order_relaxed));
        atomic_fetch_add_explicit(&pg->xcount, 1, memory_order_relaxed);
        if (!old) { /* the first since the owner looked: tell it (tcache.c); the owner read after the
                     * push, as the page may have been adopted meanwhile */
            home = atomic_load_explicit(&pg->home, memory_order_seq_cst);
            if (home && home != &h->own) hm_tcache_notify(home, pg->cls);
        }
        return false;
    }
    set_live(pg, b, false); /* a cached block keeps its tag (take_one) */
    *(uintptr_t *)wr(h, b) = pg->free ^ h->key ^ b; /* encoded link */
    pg->free = b;
    uint32_t used = atomic_load_explicit(&pg->used, memory_order_relaxed) - 1;
    SET(pg->used, used);
    move(pg, 1);
    /* an empty page goes, unless it is its class's only page with room: a program that frees and
     * allocates around one page's worth would otherwise decommit and commit it again and again */
    return !used && (pg->next || pg->prev);
}

void hm_heap_small_free(hm_heap *h, hm_hpage *pg, uintptr_t b)
{
    if (hm_heap_give(h, &h->own, pg, b)) page_empty(h, pg);
}

void hm_heap_page_empty(hm_heap *h, hm_hpage *pg) { page_empty(h, pg); }

void hm_heap_disown(hm_heap *h, hm_pagelists *lists)
{
    for (hm_segment *s = h->segments; s; s = s->next)
        for (size_t i = 1; i < HM_SEG_PAGES; i++) {
            hm_hpage *pg = &s->page[i];
            if (atomic_load_explicit(&pg->home, memory_order_relaxed) != lists) continue;
            if (atomic_load_explicit(&pg->xfree, memory_order_relaxed)) (void)collect(h, pg);
            uint32_t to = pg->list;
            move(pg, 0);
            atomic_store_explicit(&pg->home, &h->own, memory_order_relaxed);
            if (!atomic_load_explicit(&pg->used, memory_order_relaxed)) {
                pg->list = 0;
                page_retire(h, pg);
            } else {
                move(pg, to ? to : 2);
            }
        }
    (void)purge(h, false); /* (opportunistic: a refusal keeps the pages cached) */
}

/* The large-block counters (atomics: threads' caches change them without the lock). */
static inline void large_count(hm_heap *h, int64_t bytes, int64_t blocks)
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

static inline uint64_t lcache_tag(const hm_heap *h, uintptr_t b) { return h->key ^ b ^ LCACHE_MAGIC; }

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
    W64(h, out->base, 1) = 0;
    return true;
}

/* Keeps a freed large block committed for reuse; false if it does not fit the cache's bounds even
 * after releasing older blocks. Lock held. */
static bool lcache_put(hm_heap *h, hm_lblock blk)
{
    uint64_t size = blk.size;
    /* at most HM_LCACHE_BYTES, and an eighth of the limit: a budgeted program's freed memory goes back */
    uint64_t cap = h->m->acct.threshold[HM_LEVEL_PROCESS] / 8;
    if (cap > HM_LCACHE_BYTES) cap = HM_LCACHE_BYTES;
    /* Not when memory is short (the state is Low) or requests wait: then it goes back now. */
    if (size > cap / 4 || !hm_heap_may_keep(h) || h->dual) return false;
    while (h->nlcache && (h->nlcache == HM_LCACHE_N || h->lcache_bytes + size > cap)) {
        if (large_release(h, h->lcache[0].base) != HM_OK) return false;
        h->lcache_bytes -= h->lcache[0].size;
        memmove(&h->lcache[0], &h->lcache[1], (h->nlcache - 1) * sizeof h->lcache[0]);
        h->nlcache--;
    }
    W64(h, blk.base, 1) = lcache_tag(h, blk.base);
    h->lcache[h->nlcache] = blk;
    h->nlcache++;
    h->lcache_bytes += size;
    return true;
}

/* Releases the large block at base: its reservation, then a dual heap's views (views_new). Lock
 * held. A refusal changes nothing: the block stays whole, committed and charged. */
static hm_status large_release(hm_heap *h, uintptr_t base)
{
    hm_vmap_info info;
    if (h->tracked && find((void *)base, &info)) hm_track_clear((void *)base, info.size);
    hm_view *v = h->dual ? view_of(h, base) : NULL;
    hm_status st = hm_manager_free(h->m, (void *)base, 0, HM_MEM_RELEASE);
    if (st == HM_OK && v) view_forget(h, v);
    return st;
}

/* Freed large blocks whose release the kernel refused, where no caller can be told (a thread cache's
 * eviction, realloc's old block), wait on the heap's parked list, threaded through their own words
 * (0: next, 1: the freed tag, so that classify says "not a block", 2: committed bytes): nothing to
 * allocate on a path already short of memory. They stay committed and charged, which is what the
 * books say; a trim, a refused commit and destroy try them again. Lock held. */
static void park(hm_heap *h, hm_lblock blk)
{
    W64(h, blk.base, 0) = h->parked;
    W64(h, blk.base, 1) = lcache_tag(h, blk.base);
    W64(h, blk.base, 2) = blk.size;
    h->parked = blk.base;
    h->parked_bytes += blk.size;
}

/* Releases the parked blocks; stops at the first refusal (lock held). */
static hm_status unpark(hm_heap *h)
{
    while (h->parked) {
        uintptr_t b = h->parked, next = (uintptr_t)W64(h, b, 0);
        uint64_t size = W64(h, b, 2);
        hm_status st = large_release(h, b);
        if (st) return st;
        h->parked = next;
        h->parked_bytes -= size;
    }
    return HM_OK;
}

void hm_heap_large_return(hm_heap *h, hm_lblock blk)
{
    if (!lcache_put(h, blk) && large_release(h, blk.base) != HM_OK) park(h, blk);
}

/* Releases every cached and parked large block (lock held): when a commit is refused they are the
 * first to go, and trim gives them back. *any: there were some. A refusal keeps the rest. */
static hm_status lcache_drain(hm_heap *h, bool *any)
{
    *any = h->nlcache != 0 || h->parked;
    while (h->nlcache) {
        if (h->tracked) hm_track_clear((void *)h->lcache[h->nlcache - 1].base, h->lcache[h->nlcache - 1].room);
        hm_status st = hm_manager_free(h->m, (void *)h->lcache[h->nlcache - 1].base, 0, HM_MEM_RELEASE);
        if (st) return st;
        h->lcache_bytes -= h->lcache[h->nlcache - 1].size;
        h->nlcache--;
    }
    return unpark(h);
}

/* A block of its own from the map, or a cached one. Called without the heap's lock (the commit may
 * wait). reserve > size asks for address space to grow into in place (realloc); only size is
 * committed and usable. */
static hm_status large_alloc(hm_heap *h, size_t size, size_t reserve, size_t align, unsigned level, uintptr_t *out,
                             bool *zero)
{
    if (zero) *zero = false;
    size_t bytes = (size + 4095) & ~(size_t)4095;
    if (bytes < size) return HM_E_OUTOFMEMORY;
    if (!bytes) bytes = 4096; /* (size 0 at an alignment only a block of its own serves) */
    size_t room = (reserve + 4095) & ~(size_t)4095;
    if (room < bytes) room = bytes;
    /* A block the caches may keep reserves twice its size while the address-space budget is
     * unlimited (SPEC 3.6 counts reservations): cached, it can then grow in place to serve a larger
     * request, committing only the difference, where a fresh block would fault in all of it. */
    if (room == bytes && bytes <= HM_LCACHE_BYTES / 4 && h->m->acct.va_limit == UINT64_MAX && !h->dual) room = 2 * bytes;
    hm_lblock blk;
    /* a block is its reservation's base: 64 KiB aligned; more is asked of the map, and the caches'
     * blocks (no better than 64 KiB aligned for sure) are not looked at */
    bool more = align > GRANULE;
    bool cached = !more && h->cached && hm_tcache_large_take(h, bytes, &blk);
    if (cached) ((uint64_t *)blk.base)[1] = 0; /* (this thread's own, no lock) */
    if (!cached && !more) {
        hm_heap_lock(h);
        cached = h->nlcache && lcache_take(h, bytes, true, &blk);
        hm_heap_unlock(h);
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
        large_count(h, (int64_t)blk.size, 1);
        *out = blk.base;
        return HM_OK;
    }
    void *base, *b;
    hm_status st = hm_vmap_reserve_tagged(&h->m->acct, room, more ? align : GRANULE, (uintptr_t)h | 1u,
                                          h->dual ? HM_RESERVE_OWN : 0, &base);
    if (st) return st == HM_E_INVALID_PARAMETER ? HM_E_OUTOFMEMORY : st;
    hm_view *v = NULL;
    if (h->dual) { /* its own memfd and two views (heap.h, "Executable heaps") */
        int err = ENOMEM;
        if (!(v = pool_get(&view_pool)) || (err = views_new((uintptr_t)base, room, &v->fd, &v->rw))) {
            if (v) pool_put(&view_pool, v);
            drop_reservation(h, base);
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
    if (st == HM_E_COMMITMENT_LIMIT || st == HM_E_HOST_TIMEOUT) { /* give the caches back, try once more */
        hm_heap_lock(h);
        bool drained = refused_give_back(h, st);
        hm_heap_unlock(h);
        if (drained) st = hm_manager_alloc(h->m, level, base, bytes, HM_MEM_COMMIT, h->prot, &b);
    }
    if (st) {
        drop_reservation(h, base); /* (the execute-read view goes with it) */
        if (v) {
            hm_heap_lock(h);
            view_forget(h, v);
            hm_heap_unlock(h);
        }
        return st;
    }
    large_count(h, (int64_t)bytes, 1);
    *out = (uintptr_t)base;
    if (zero) *zero = true; /* (a new reservation's committed pages read as zero) */
    return HM_OK;
}


block_ref hm_heap_classify(const hm_heap *h, const hm_vmap_info *info, uintptr_t p)
{
    block_ref r = {NOT_A_BLOCK, NULL, 0, 0, 0};
    if (info->tag & 1u) { /* a large block: its allocation's base, or 16 past it for a debug one */
        uintptr_t b = info->base;
        if (!info->committed) return r; /* a reservation a failed Alloc could not give back (unreadable) */
        if (p == b) r.kind = LARGE;
        else if (p == b + HM_DEBUG_HDR && *(const uint64_t *)b == hm_heap_debug_tag(h, b)) r.kind = LARGE_DEBUG;
        if (r.kind == LARGE && *(const uint64_t *)b == hm_heap_debug_tag(h, b)) r.kind = NOT_A_BLOCK;
        if (r.kind == LARGE && ((const uint64_t *)b)[1] == lcache_tag(h, b)) r.kind = NOT_A_BLOCK; /* freed, cached */
        r.block = b;
        r.size = info->committed; /* (a large block's pages are committed from its base on) */
        r.room = info->size;
        return r;
    }
    hm_segment *s = (hm_segment *)info->base;
    if (atomic_load_explicit(&s->cookie, memory_order_acquire) != (h->key ^ (uintptr_t)s)) return r;
    size_t idx = (p - info->base) / HM_HPAGE_SIZE;
    hm_hpage *pg = &s->page[idx];
    uint32_t bs = BS(pg);
    if (idx == 0 || !bs) return r;
    uintptr_t base = info->base + idx * HM_HPAGE_SIZE, off = p - base;
    uint32_t i = (uint32_t)(off / bs);
    uintptr_t b = base + (uintptr_t)i * bs;
    if (i >= EXTENT(pg) || !hm_heap_live(pg, b)) return r;
    bool dbg = *(const uint64_t *)b == hm_heap_debug_tag(h, b);
    if (off % bs == 0 && !dbg) r.kind = SMALL;
    else if (off % bs == HM_DEBUG_HDR && dbg) r.kind = SMALL_DEBUG;
    r.page = pg;
    r.block = b;
    r.size = bs;
    return r;
}

/* ---- fork ------------------------------------------------------------------------------------- */

void hm_heap_fork_prepare(hm_heap *h)
{
    hm_tcache_fork_lock(true);
    hm_heap_lock(h);
    hm_tcache_fork_lock(false);
    pthread_mutex_lock(&pool_lock);
}

void hm_heap_fork_after(hm_heap *h)
{
    pthread_mutex_unlock(&pool_lock);
    hm_tcache_fork_unlock(false);
    hm_heap_unlock(h);
    hm_tcache_fork_unlock(true);
}

/* ---- debug sites ------------------------------------------------------------------------------ */

static uint32_t site_hash(const char *file, int line)
{
    uint32_t x = 2166136261u ^ (uint32_t)line;
    for (const char *c = file; c && *c; c++) x = (x ^ (uint8_t)*c) * 16777619u;
    return x;
}

/* The index of (file, line) in h's table, made if new; HM_MAX_SITES when the table is full or cannot
 * be made (the blocks still work; they are in no site's counts). */
static uint32_t site_of(hm_heap *h, const char *file, int line)
{
    if (!h->sites && !(h->sites = pool_get(&site_pool))) return HM_MAX_SITES;
    if (!h->nsites) memset(h->sites, 0, sizeof(hm_site) * HM_MAX_SITES);
    if (!file) file = "(unknown)";
    uint32_t x = site_hash(file, line);
    for (uint32_t k = 0; k < HM_MAX_SITES; k++) {
        hm_site *s = &h->sites[(x + k) % HM_MAX_SITES];
        if (!s->total_blocks && !s->file[0]) { /* a free slot: the site is new */
            snprintf(s->file, sizeof s->file, "%s", file);
            s->line = line;
            s->hash = x;
            h->nsites++;
            return (x + k) % HM_MAX_SITES;
        }
        if (s->hash == x && s->line == line && !strncmp(s->file, file, sizeof s->file - 1)) return (x + k) % HM_MAX_SITES;
    }
    return HM_MAX_SITES;
}

/* ---- the API ---------------------------------------------------------------------------------- */

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
    hm_heap *h = heap_get();
    if (!h) return HM_E_OUTOFMEMORY;
    memset(h, 0, sizeof *h);
    h->m = m;
    h->flags = flags;
    h->dual = (flags & HM_HEAP_EXECUTABLE) && !hm_os_wx_allowed();
    h->cached = (flags & HM_HEAP_THREADSAFE) && !h->dual;
    h->tracked = hm_track_wanted();
    h->readable = h->cached && !m->opts.heap_guard; /* (segment_new) */
    h->prot = !(flags & HM_HEAP_EXECUTABLE) ? HM_PAGE_READWRITE : h->dual ? HM_PAGE_EXECUTE_READ : HM_PAGE_EXECUTE_READWRITE;
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    uint64_t k = (uint64_t)t.tv_nsec * 0x9E3779B97F4A7C15ull ^ (uintptr_t)h ^ ((uint64_t)t.tv_sec << 32);
    k ^= k >> 31;
    h->key = (k * 0xBF58476D1CE4E5B9ull) | 1u;
    h->id = hm_tcache_new_heap_id();
    /* never the current count: the first fast path looks at the manager itself (running) */
    atomic_store_explicit(&h->stops_seen, atomic_load_explicit(&hm_manager_stops, memory_order_acquire) - 1,
                          memory_order_relaxed);
    /* adaptive: refills and flushes hold it briefly, so a waiter spins a little before it sleeps */
    pthread_mutexattr_t ma;
    pthread_mutexattr_init(&ma);
    pthread_mutexattr_settype(&ma, PTHREAD_MUTEX_ADAPTIVE_NP);
    pthread_mutex_init(&h->lock, &ma);
    pthread_mutexattr_destroy(&ma);
    *out = h;
    return HM_OK;
}

static void leak_report(hm_heap *h)
{
    if (!h->sites) return;
    uint64_t blocks = 0, bytes = 0;
    for (uint32_t i = 0; i < HM_MAX_SITES; i++) {
        blocks += h->sites[i].live_blocks;
        bytes += h->sites[i].live_bytes;
    }
    if (!blocks) return;
    fprintf(stderr, "hostmem: heap %p destroyed with %lu live debug blocks (%lu bytes), by site:\n", (void *)h,
            (unsigned long)blocks, (unsigned long)bytes);
    for (uint32_t i = 0; i < HM_MAX_SITES; i++)
        if (h->sites[i].live_blocks)
            fprintf(stderr, "  %s:%d: %lu blocks, %lu bytes\n", h->sites[i].file, h->sites[i].line,
                    (unsigned long)h->sites[i].live_blocks, (unsigned long)h->sites[i].live_bytes);
}

hm_status hm_heap_destroy(hm_heap *h)
{
    if (!h) return HM_E_POINTER;
    leak_report(h);
    hm_tcache_heap_gone(h); /* threads' caches forget the heap; their blocks go with the segments */
    for (hm_segment *s = h->segments; s; s = s->next) hm_segmap_set((uintptr_t)s, false);
    hm_manager *m = h->m;
    hm_status st = HM_OK;
    /* Segments go one by one (a dual heap's each followed by its read-write view and memfd, which
     * its header names), and a dual heap's large blocks too: a refusal stops here with what is left
     * still recorded, so that destroy can be called again. */
    while (h->segments && !st) {
        hm_segment *next = h->segments->next;
        if (!(st = segment_release(h, h->segments))) h->segments = next;
    }
    while (h->views && !st) st = large_release(h, h->views->base); /* (which unlinks its views) */
    /* every other large block of this heap at once; the charge goes back with them */
    if (!st) st = hm_vmap_release_tagged(&m->acct, ~(uintptr_t)1, (uintptr_t)h);
    hm_manager_memory_returned(m);
    if (st) return hm_manager_leave(m, st);
    views_retry(h);
    while (h->stale) { /* still refused: the records go, the mappings stay (outside every account) */
        hm_view *v = h->stale;
        h->stale = v->next;
        pool_put(&view_pool, v);
    }
    pthread_mutex_destroy(&h->lock);
    if (h->sites) pool_put(&site_pool, h->sites);
    heap_put(h);
    return HM_OK;
}

/* A block of at least size bytes at an align boundary. Thread-safe heaps serve small blocks from the
 * calling thread's cache (no lock) unless `cached` is false (debug blocks); everything else runs under
 * the heap's lock (taken here). */
static hm_status alloc_block(hm_heap *h, size_t size, size_t align, unsigned level, bool cached, uintptr_t *out)
{
    hm_status st;
    unsigned cls = HM_NCLASS;
    if (size <= HM_SMALL_MAX && align <= HM_SMALL_MAX) {
        cls = hm_heap_class_of(size ? size : 1);
        if (align > 16) /* every class is a multiple of 16; for more, the first class whose blocks are aligned */
            while (cls < HM_NCLASS && (hm_heap_class_size(cls) & (align - 1))) cls++;
    }
    if (cls == HM_NCLASS) return large_alloc(h, size, size, align, level, out, NULL);
    if (cached && h->cached) return hm_tcache_alloc(h, cls, level, out);
    hm_heap_lock(h);
    st = hm_heap_small_alloc(h, &h->own, cls, level, out);
    hm_heap_unlock(h);
    if (!st) atomic_store_explicit(hm_tcache_word1(wr(h, *out)), 0, memory_order_relaxed); /* the program's now */
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

hm_status hm_heap_alloc(hm_heap *h, size_t size, hm_level level, void **out)
{
    /* the common case first: a thread-safe heap's small block from this thread's cache */
    if (h && out && h->cached && size <= HM_SMALL_MAX && (unsigned)level <= HM_LEVEL_PROCESS &&
        running(h)) {
        uintptr_t b = hm_tcache_pop(h, hm_heap_class_of(size));
        if (b) {
            *out = (void *)b;
            if (__builtin_expect(h->tracked, 0)) lend(h, *out, size);
            return HM_OK;
        }
    }
    return hm_heap_alloc_aligned(h, size, 16, level, out);
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
        uint32_t site = site_of(h, file, line);
        uint64_t *hdr = (uint64_t *)wr(h, b);
        hm_segment *s = hm_segmap_get((void *)b);
        if (s) SET(s->page[(b - (uintptr_t)s) / HM_HPAGE_SIZE].has_debug, 1); /* (hm_heap_free_cached looks) */
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
    if (n > HM_SMALL_MAX && h && out) { /* a large block: a fresh one is zero already (no memset, no faults) */
        *out = NULL;
        hm_status st = check_level(h, level);
        if (st) return st;
        uintptr_t b;
        bool zero;
        st = hm_manager_leave(h->m, large_alloc(h, n, n, 16, (unsigned)level, &b, &zero));
        if (st) return st;
        if (!zero) memset((void *)wr_locked(h, b), 0, n);
        *out = (void *)b;
        if (h->tracked) lend(h, *out, n);
        return HM_OK;
    }
    hm_status st = hm_heap_alloc(h, n, level, out);
    if (!st) memset((void *)wr_locked(h, (uintptr_t)*out), 0, n);
    return st;
}

/* A debug block whose header's second word is info is no longer live: its site's counts (lock held). */
static void site_forget(hm_heap *h, uint64_t info)
{
    uint32_t site = (uint32_t)(info >> 40);
    if (site < HM_MAX_SITES && h->sites) {
        h->sites[site].live_bytes -= info & (((uint64_t)1 << 40) - 1);
        h->sites[site].live_blocks--;
    }
}

/* Releases a classified block (lock held). */
static hm_status release_block(hm_heap *h, const block_ref *r)
{
    switch (r->kind) {
    case SMALL:
    case SMALL_DEBUG:
        if (r->kind == SMALL_DEBUG) {
            site_forget(h, ((uint64_t *)r->block)[1]);
            W64(h, r->block, 0) = 0; /* no longer a debug block */
        }
        hm_heap_small_free(h, r->page, r->block);
        return HM_OK;
    case LARGE:
    case LARGE_DEBUG: {
        /* A refused release returns before anything changed: the block stays whole and live, its
         * debug header and site counts too (SPEC 4: a failed Free changes nothing). */
        if (r->kind == LARGE_DEBUG || !lcache_put(h, (hm_lblock){r->block, r->size, r->room})) {
            uint64_t info = ((uint64_t *)r->block)[1]; /* (read before the memory goes) */
            hm_status st = large_release(h, r->block);
            if (st) return st;
            if (r->kind == LARGE_DEBUG) site_forget(h, info);
        }
        large_count(h, -(int64_t)r->size, -1);
        return HM_OK;
    }
    default:
        return HM_E_HOST_INVALIDOPERATION;
    }
}

/* What the map knows of the heap allocation (segment or large block) holding p: a segment from the
 * segment table in one load, anything else from the map. false if p is in no heap's memory. */
static bool find(const void *p, hm_vmap_info *info)
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
static block_ref classify_large(hm_heap *h, const void *p, hm_vmap_info *info)
{
    block_ref r = {NOT_A_BLOCK, NULL, 0, 0, 0};
    hm_heap_lock(h);
    if (find(p, info) && (hm_heap *)(info->tag & ~(uintptr_t)1) == h && (info->tag & 1u))
        r = hm_heap_classify(h, info, (uintptr_t)p);
    hm_heap_unlock(h);
    return r;
}

/* Free of p, which the map says belongs to another heap (or nothing of a heap): SPEC 4. */
static hm_status foreign(const hm_vmap_info *info, const void *p)
{
    hm_heap *o = (hm_heap *)(info->tag & ~(uintptr_t)1);
    hm_vmap_info again;
    block_ref r = info->tag & 1u ? classify_large(o, p, &again)                 /* under its lock */
                                 : hm_heap_classify(o, info, (uintptr_t)p); /* a read-only look at the other heap */
    if (r.kind == SMALL && o->cached && hm_tcache_holds(o, r.block)) r.kind = NOT_A_BLOCK;
    if (r.kind == NOT_A_BLOCK) {
        hm_detail_set("Free(%p): not a live block of any heap", p);
        return HM_E_HOST_INVALIDOPERATION;
    }
    hm_detail_set("Free(%p): a live block of another heap (%p)", p, (void *)o);
    return HM_E_HOST_NOT_OWNER;
}

/* The common Free of a thread-safe heap: a plain small block in one of its own segments, checked and
 * put into this thread's cache without building the general path's records. false: not that case,
 * take the general path (which also gives the exact answer for everything else). */

/* Everything but the common case (hm_heap_free): out of line, so that the common case needs no
 * stack frame. */
static __attribute__((noinline)) hm_status free_general(hm_heap *h, void *p)
{
    hm_status st;
    hm_vmap_info info;
    if (!find(p, &info)) {
        hm_detail_set("Free(%p): not a block of any heap", p);
        return HM_E_HOST_INVALIDOPERATION;
    }
    if ((hm_heap *)(info.tag & ~(uintptr_t)1) != h) return foreign(&info, p);
    block_ref r;
    if (info.tag & 1u) { /* a large block: looked at under the lock (classify_large) */
        r = classify_large(h, p, &info);
        if (r.kind == NOT_A_BLOCK && info.tag && (hm_heap *)(info.tag & ~(uintptr_t)1) != h) return foreign(&info, p);
        if (r.kind == LARGE && r.size && h->cached) {
            /* Tagged freed before it enters this thread's cache: from then on another thread may
             * drain it to the heap's cache and hand it out (a refused commit drains every cache). */
            uint64_t word = W64(h, r.block, 1); /* the program's bytes 8..15, put back if the cache says no */
            W64(h, r.block, 1) = lcache_tag(h, r.block);
            if (hm_tcache_large_put(h, (hm_lblock){r.block, r.size, r.room})) {
                large_count(h, -(int64_t)r.size, -1);
                return HM_OK;
            }
            W64(h, r.block, 1) = word; /* (refused: no other thread has seen it in a cache) */
        }
        hm_heap_lock(h);
        st = release_block(h, &r); /* (a live block stays live while its Free runs) */
        hm_heap_unlock(h);
        if (st == HM_E_HOST_INVALIDOPERATION) hm_detail_set("Free(%p): not a live block (already freed?)", p);
        return hm_manager_leave(h->m, st);
    }
    if (h->cached) { /* a plain small block goes to this thread's cache, no lock */
        r = hm_heap_classify(h, &info, (uintptr_t)p);
        if (r.kind == SMALL) {
            st = hm_tcache_push(h, r.page, r.block);
            if (st == HM_E_HOST_INVALIDOPERATION) hm_detail_set("Free(%p): already freed", p);
            return st;
        }
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

static __attribute__((noinline)) hm_status already_freed(void *p)
{
    hm_detail_set("Free(%p): already freed", p);
    return HM_E_HOST_INVALIDOPERATION;
}

static hm_status free_untracked(hm_heap *h, void *p)
{
    hm_status st;
    if (h->cached && hm_heap_free_cached(h, (uintptr_t)p, &st))
        return st == HM_E_HOST_INVALIDOPERATION ? already_freed(p) : st;
    return free_general(h, p);
}

/* Free under a checker: the block's size is taken first (it is told to the checker after). */
static __attribute__((noinline)) hm_status free_tracked(hm_heap *h, void *p)
{
    /* told before the block goes: once it is back, another thread may hand it out again */
    size_t u = hm_heap_usable_size(h, p);
    if (u) hm_track_return(h, p, u);
    hm_status st = free_untracked(h, p);
    if (st && u) hm_track_lend(h, p, u, u); /* (still the program's) */
    return st;
}

hm_status hm_heap_free(hm_heap *h, void *p)
{
    if (!h) return HM_E_POINTER;
    if (!p) return HM_OK;
    if (!running(h)) return HM_E_HOST_CLRNOTAVAILABLE; /* (SPEC 3.4; hm_manager_enter's answer) */
    if (__builtin_expect(h->tracked, 0)) return free_tracked(h, p);
    hm_status st;
    if (h->cached && hm_heap_free_cached(h, (uintptr_t)p, &st))
        return st == HM_E_HOST_INVALIDOPERATION ? already_freed(p) : st;
    return free_general(h, p);
}

/* The usable size of p, 0 if no live block of h. With guarded, a large block is looked at under the
 * lock (classify_large: another thread may be releasing it); realloc, whose caller holds p, needs not. */
static size_t usable(hm_heap *h, const void *p, bool guarded, hm_vmap_info *out)
{
    hm_vmap_info tmp, *info = out ? out : &tmp;
    if (!h || !p || !find(p, info) || (hm_heap *)(info->tag & ~(uintptr_t)1) != h)
        return 0;
    /* no lock for a small block: classify reads only what Free reads without one (atomics, the map,
     * the block); a large one may be released meanwhile (classify_large) */
    block_ref r = info->tag & 1u && guarded ? classify_large(h, p, info) : hm_heap_classify(h, info, (uintptr_t)p);
    if (r.kind == SMALL && h->cached && hm_tcache_holds(h, r.block)) r.kind = NOT_A_BLOCK;
    switch (r.kind) {
    case SMALL:
    case LARGE: return r.size;
    case SMALL_DEBUG:
    case LARGE_DEBUG: return r.size - HM_DEBUG_HDR;
    default: return 0;
    }
}

size_t hm_heap_usable_size(hm_heap *h, const void *p) { return usable(h, p, true, NULL); }

void *hm_heap_writable(hm_heap *h, const void *p)
{
    if (!h || !p || !hm_heap_usable_size(h, p)) return NULL;
    return (void *)wr_locked(h, (uintptr_t)p);
}

/* Grows a large block p (have usable bytes) to size within its reservation: commits the pages in
 * between at level. HM_E_OUTOFMEMORY-like statuses if it cannot (the caller moves the block then). */
static hm_status grow_in_place(hm_heap *h, uintptr_t p, const hm_vmap_info *info, size_t have, size_t size, hm_level level)
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
    large_count(h, (int64_t)(bytes - have), 0);
    return HM_OK;
}

/* realloc's old block p goes, after its bytes moved: a Free that can only fail for a large block
 * whose release the kernel refuses (a small block's Free makes no system call). The move has been
 * made, so such a block is not the program's any more: it is parked (park), charged until a later
 * release succeeds. */
static void retire(hm_heap *h, void *p)
{
    if (hm_heap_free(h, p) == HM_OK) return;
    hm_vmap_info info;
    block_ref r = classify_large(h, p, &info);
    if (r.kind != LARGE && r.kind != LARGE_DEBUG) return; /* (the manager failed meanwhile: its books are void) */
    hm_heap_lock(h);
    if (r.kind == LARGE_DEBUG) site_forget(h, ((uint64_t *)r.block)[1]);
    park(h, (hm_lblock){r.block, r.size, r.room});
    large_count(h, -(int64_t)r.size, -1);
    hm_heap_unlock(h);
}

hm_status hm_heap_realloc(hm_heap *h, void *p, size_t size, hm_level level, void **out)
{
    if (!out) return HM_E_POINTER;
    if (!p) return hm_heap_alloc(h, size, level, out);
    *out = NULL;
    if (!h) return HM_E_POINTER;
    if (!running(h)) return HM_E_HOST_CLRNOTAVAILABLE; /* SPEC 3.4, before anything is kept (as Free) */
    hm_vmap_info info;
    size_t have = usable(h, p, false, &info); /* (the caller holds p: no other thread releases it) */
    if (!have) { /* says why without touching anything: another heap's live block, or no block */
        if (find(p, &info) && (hm_heap *)(info.tag & ~(uintptr_t)1) != h)
            return foreign(&info, p);
        hm_detail_set("realloc(%p): not a live block of this heap", p);
        return HM_E_HOST_INVALIDOPERATION;
    }
    /* shrinking within the same class, or growing within the block: keep it */
    if (size <= have && (size > HM_SMALL_MAX || hm_heap_class_of(size ? size : 1) == hm_heap_class_of(have) || size * 2 > have)) {
        *out = p;
        if (h->tracked) hm_track_resize(h, p, size, have);
        return HM_OK;
    }
    hm_status st;
    if (have > HM_SMALL_MAX && size > have && (st = grow_in_place(h, (uintptr_t)p, &info, have, size, level)) == HM_OK) {
        *out = p;
        if (h->tracked) hm_track_resize(h, p, size, hm_heap_usable_size(h, p));
        return HM_OK;
    }
    uintptr_t nb;
    if (size > HM_SMALL_MAX) { /* a large block, with room to grow into in place next time */
        size_t room = size <= SIZE_MAX / 2 ? size * 2 : size;
        if ((st = check_level(h, level))) return st;
        st = large_alloc(h, size, room, 16, (unsigned)level, &nb, NULL);
        st = hm_manager_leave(h->m, st);
    } else {
        st = hm_heap_alloc(h, size, level, (void **)&nb);
    }
    if (st) return st; /* p untouched */
    void *q = (void *)nb;
    memcpy((void *)wr_locked(h, (uintptr_t)q), p, size < have ? size : have);
    retire(h, p);
    *out = q;
    return HM_OK;
}

/* The ownerless pages get other threads' frees through their xfree, which nobody collects until a
 * thread adopts the page: collects them, and gives up the pages left without a block in use (lock
 * held). */
static void own_reclaim(hm_heap *h)
{
    for (unsigned cls = 0; cls < HM_NCLASS; cls++)
        for (int full = 0; full < 2; full++)
            for (hm_hpage *pg = full ? h->own.full[cls] : h->own.avail[cls], *next; pg; pg = next) {
                next = pg->next;
                if (atomic_load_explicit(&pg->xfree, memory_order_relaxed) && !collect(h, pg)) return;
                if (!atomic_load_explicit(&pg->used, memory_order_relaxed)) page_empty(h, pg);
                else if (full && pg->free) move(pg, 1);
            }
}

hm_status hm_heap_trim(hm_heap *h)
{
    if (!h) return HM_E_POINTER;
    hm_status st = hm_manager_enter(h->m);
    if (st) return st;
    if (h->cached) hm_tcache_large_drain(h); /* the calling thread's own */
    hm_heap_lock(h);
    own_reclaim(h);
    /* What the kernel refuses to give back stays cached (the books stay exact) and trim says so. */
    bool any;
    st = purge(h, true);
    hm_status lst = lcache_drain(h, &any);
    if (!st) st = lst;
    views_retry(h);
    hm_heap_unlock(h);
    hm_manager_memory_returned(h->m);
    return hm_manager_leave(h->m, st);
}

hm_status hm_heap_get_stats(hm_heap *h, hm_heap_stats *out)
{
    if (!h || !out) return HM_E_POINTER;
    memset(out, 0, sizeof *out);
    hm_heap_lock(h);
    uint64_t cached_blocks, cached_bytes, cached_large; /* lent to threads' caches: free for the program */
    hm_tcache_cached(h, &cached_blocks, &cached_bytes, &cached_large);
    /* small blocks: what the pages hand out, less what is back in caches or xfree (racy reads of the
     * owners' counts: exact when no other thread is running) */
    uint64_t blocks = atomic_load_explicit(&h->live_blocks, memory_order_relaxed),
             bytes = atomic_load_explicit(&h->live_bytes, memory_order_relaxed);
    for (hm_segment *s = h->segments; s; s = s->next) {
        out->segments++;
        out->committed_pages++; /* the header page */
        for (size_t i = 1; i < HM_SEG_PAGES; i++) {
            hm_hpage *pg = &s->page[i];
            out->committed_pages += pg->committed;
            uint32_t bs = BS(pg);
            if (!bs) continue;
            uint64_t n = atomic_load_explicit(&pg->used, memory_order_relaxed) - atomic_load_explicit(&pg->xcount, memory_order_relaxed);
            blocks += n;
            bytes += n * bs;
        }
    }
    out->live_bytes = bytes - cached_bytes;
    out->live_blocks = blocks - cached_blocks;
    out->large_bytes = atomic_load_explicit(&h->large_bytes, memory_order_relaxed);
    out->cached_large_bytes = h->lcache_bytes + h->parked_bytes + cached_large;
    hm_heap_unlock(h);
    return HM_OK;
}

hm_status hm_heap_class_stats(hm_heap *h, hm_heap_class_stat out[HM_NCLASS])
{
    if (!h || !out) return HM_E_POINTER;
    memset(out, 0, sizeof(hm_heap_class_stat) * HM_NCLASS);
    hm_heap_lock(h);
    for (hm_segment *s = h->segments; s; s = s->next)
        for (size_t i = 1; i < HM_SEG_PAGES; i++) {
            hm_hpage *pg = &s->page[i];
            uint32_t bs = BS(pg);
            if (!bs || pg->cls >= HM_NCLASS) continue;
            hm_heap_class_stat *c = &out[pg->cls];
            uint64_t used = atomic_load_explicit(&pg->used, memory_order_relaxed) -
                            atomic_load_explicit(&pg->xcount, memory_order_relaxed);
            c->pages++;
            c->blocks += used;
            c->free_bytes += HM_HPAGE_SIZE - used * bs; /* free blocks and the tail no block fits in */
        }
    for (hm_tcache *c = h->caches; c; c = c->next) /* blocks threads' caches hold are free */
        for (unsigned k = 0; k < HM_NCLASS; k++) {
            uint64_t n = atomic_load_explicit(&c->bin[k].n, memory_order_relaxed);
            if (n > out[k].blocks) n = out[k].blocks;
            out[k].blocks -= n;
            out[k].free_bytes += n * hm_heap_class_size(k);
        }
    hm_heap_unlock(h);
    for (unsigned k = 0; k < HM_NCLASS; k++) {
        out[k].block_size = hm_heap_class_size(k);
        out[k].bytes = out[k].blocks * out[k].block_size;
    }
    return HM_OK;
}

hm_status hm_heap_sites(hm_heap *h, void (*fn)(const hm_heap_site *site, void *arg), void *arg)
{
    if (!h || !fn) return HM_E_POINTER;
    hm_heap_site out[64];
    uint32_t start = 0;
    for (;;) { /* copy under the lock, call without it */
        uint32_t n = 0, i = start;
        hm_heap_lock(h);
        bool any = h->sites != NULL;
        for (; any && i < HM_MAX_SITES && n < 64; i++)
            if (h->sites[i].total_blocks)
                out[n++] = (hm_heap_site){h->sites[i].file, h->sites[i].line, h->sites[i].live_bytes,
                                          h->sites[i].live_blocks, h->sites[i].total_blocks};
        hm_heap_unlock(h);
        for (uint32_t k = 0; k < n; k++) fn(&out[k], arg);
        if (!any || i >= HM_MAX_SITES) return HM_OK;
        start = i;
    }
}
