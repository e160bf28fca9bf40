/* heap_internal.h — what heap.c shares with tcache.c; nothing outside src/heap uses it. */
#ifndef HM_HEAP_INTERNAL_H
#define HM_HEAP_INTERNAL_H

#include "../manager/manager.h"
#include "../vmap/vmap.h"
#include "heap.h"

/* What a pointer is to a heap (heap.c: hm_heap_classify). */
typedef enum { NOT_A_BLOCK, SMALL, SMALL_DEBUG, LARGE, LARGE_DEBUG } block_kind;

typedef struct block_ref {
    block_kind kind;
    hm_hpage *page;
    uintptr_t block;   /* block start (small) or allocation base (large) */
    uint64_t size;     /* block size, or a large block's committed (usable) bytes */
    uint64_t room;     /* a large block's reservation */
} block_ref;

/* Size classes (heap.h): 16-byte steps to 128, then four per doubling. Up to 1 KiB (most requests)
 * a table indexed by ceil(size / 16) answers in one load; above, the formula. */
extern const uint8_t hm_heap_class_table[65];
static inline unsigned hm_heap_class_of(size_t size)
{
    if (size <= 1024) return hm_heap_class_table[(size + 15) >> 4];
    size_t s = size - 1;
    unsigned b = 63u - (unsigned)__builtin_clzll(s); /* 2^b <= s < 2^(b+1), b >= 7 */
    return 8 + (b - 7) * 4 + (unsigned)((s >> (b - 2)) & 3);
}
extern const uint32_t hm_heap_class_sizes[HM_NCLASS];
static inline size_t hm_heap_class_size(unsigned cls) { return hm_heap_class_sizes[cls]; }

/* The index of the block at offset off of a page of block size bs, with inv = ceil(2^32 / bs):
 * exact for every off < 64 KiB because off * bs < 2^32 (the error of inv is below 1, times off). */
static inline uint32_t hm_heap_block_index(uintptr_t off, uint32_t inv) { return (uint32_t)(((uint64_t)off * inv) >> 32); }
static inline uint32_t hm_heap_inverse(uint32_t bs) { return (uint32_t)((((uint64_t)1 << 32) + bs - 1) / bs); }
/* How long an empty page stays committed (HM_EMPTY_DELAY_MS); tests that compare runs set it beyond
 * reach, so that no page is decommitted by the clock. */
extern uint32_t hm_heap_empty_delay_ms;
void hm_heap_lock(hm_heap *h);
void hm_heap_unlock(hm_heap *h);
/* Page ownership (heap.h): "the owner of lists" is the thread whose cache they are, or whoever holds
 * the heap lock for the heap's own lists. */
/* By the owner of lists: up to want blocks of class cls from its pages (other threads' frees
 * collected on the way), into out; their live bits set. No lock, no system call. *st: HM_E_FAIL if a
 * corrupted free list stopped it (the manager has failed). */
uint32_t hm_heap_take(hm_heap *h, hm_pagelists *lists, unsigned cls, uintptr_t *out, uint32_t want, hm_status *st);
/* By the owner of lists: full pages of class cls that other threads freed blocks into get them back
 * and return to the avail list. */
void hm_heap_collect_full(hm_heap *h, hm_pagelists *lists, unsigned cls);
/* Heap lock held, and by the owner of lists: one block of class cls admitted at level; when lists has
 * none, it adopts an ownerless page or a new one (committed at level, the lock dropped meanwhile). */
hm_status hm_heap_small_alloc(hm_heap *h, hm_pagelists *lists, unsigned cls, unsigned level, uintptr_t *out);
/* A freed small block b of page pg goes back: onto pg's free list when mine is pg's home (the
 * caller owns it), else onto pg's xfree (any thread, no lock; b gets the cache tag). true: pg has no
 * block in use any more, and the caller must give it up (hm_heap_page_empty, under the heap lock). */
bool hm_heap_give(hm_heap *h, hm_pagelists *mine, hm_hpage *pg, uintptr_t b);
void hm_heap_page_empty(hm_heap *h, hm_hpage *pg);
/* Heap lock held: hm_heap_give from the heap's own lists, emptied pages given up at once. */
void hm_heap_small_free(hm_heap *h, hm_hpage *pg, uintptr_t b);
/* A thread cache's pages lose their owner: they join the heap's own lists (lock held, by the owner). */
void hm_heap_disown(hm_heap *h, hm_pagelists *lists);
block_ref hm_heap_classify(const hm_heap *h, const hm_vmap_info *info, uintptr_t p);

/* segmap.c: the segment holding an address, or NULL (then ask the map). set: mark seg live or not. */
#define HM_SEGMAP_SHIFT 22 /* log2 HM_SEG_SIZE */
#define HM_SEGMAP_WORDS (((size_t)1 << (47 - HM_SEGMAP_SHIFT)) / 64)
_Static_assert(((size_t)1 << HM_SEGMAP_SHIFT) == HM_SEG_SIZE, "one bit per segment");
void hm_segmap_set(uintptr_t seg, bool live);
extern _Atomic uint64_t hm_segmap_bits[HM_SEGMAP_WORDS];
static inline hm_segment *hm_segmap_get(const void *p)
{
    uintptr_t a = (uintptr_t)p, i = a >> HM_SEGMAP_SHIFT;
    if (a >> 47) return NULL;
    uint64_t w = atomic_load_explicit(&hm_segmap_bits[i >> 6], memory_order_acquire);
    return (w >> (i & 63)) & 1 ? (hm_segment *)(a & ~(uintptr_t)(HM_SEG_SIZE - 1)) : NULL;
}

/* tcache.c: per-thread caches of a thread-safe heap (the file's comment tells the rules). */
#define HM_TCACHE_N 128
#define HM_TCACHE_BYTES ((size_t)512 << 10)
#define HM_TCACHE_MAGIC 0x7463616368656421ull
#define HM_TCACHE_LARGE 32                       /* freed large blocks a thread keeps */
#define HM_TCACHE_LARGE_MAX ((uint64_t)1 << 20)  /* ... of at most this size each */
#define HM_TCACHE_LARGE_BYTES ((uint64_t)8 << 20) /* ... and this many bytes in all */

typedef struct hm_tcache_bin {
    _Atomic uint32_t n;               /* blocks held; written by the owning thread only */
    uint32_t cap;                     /* at most this many (HM_TCACHE_N, fewer for big blocks) */
    uintptr_t slot[HM_TCACHE_N];
} hm_tcache_bin;

typedef struct hm_tcache {
    uint64_t heap_id;                 /* the heap's id while attached; 0 never matches a live heap */
    _Atomic(hm_heap *) heap;          /* NULL once the heap is destroyed (heaps_lock) */
    struct hm_tcache *next;           /* in the heap's list (heap lock) */
    struct hm_tcache *thread_next;    /* in its thread's list (its thread only) */
    hm_pagelists lists;               /* the pages this thread owns (its thread only) */
    _Atomic uint64_t xpending;        /* bit c: a full page of class c got blocks from another thread */
    atomic_flag large_lock;           /* nlarge and large[]: its thread, or a drain from another thread
                                         (lock order: the heap lock, then this) */
    uint32_t nlarge;                  /* freed large blocks kept, oldest first */
    hm_lblock large[HM_TCACHE_LARGE];
    _Atomic uint64_t large_bytes;     /* their bytes (statistics; written by its thread only) */
    hm_tcache_bin bin[HM_NCLASS];
} hm_tcache;

/* Another thread pushed the first block onto the xfree of a page of class cls whose home is lists, a
 * thread cache's: its owner looks at its full pages of that class at its next refill. */
void hm_tcache_notify(hm_pagelists *lists, unsigned cls);

/* This thread's caches, the most recently used first (initial-exec: one load, also in the .so). */
extern _Thread_local hm_tcache *hm_thread_caches __attribute__((tls_model("initial-exec")));

/* Live bits (heap.h): one per 16-byte granule of a page, set where a live block (handed out, or held
 * in a cache) starts. Every class size is a multiple of 16, so an address is the start of a live
 * block of pg exactly when it is 16-aligned and its granule's bit is set: no division by the block
 * size, and pages not in use (the header's page[0] among them) have no bit set. */
static inline bool hm_heap_live(const hm_hpage *pg, uintptr_t b)
{
    uint32_t g = (uint32_t)((b & (HM_HPAGE_SIZE - 1)) >> 4);
    return (atomic_load_explicit(&((hm_hpage *)pg)->live[g / 64], memory_order_relaxed) >> (g % 64)) & 1u;
}

static inline uint64_t hm_tcache_tag(const hm_heap *h, uintptr_t b) { return h->key ^ b ^ HM_TCACHE_MAGIC; }
static inline _Atomic uint64_t *hm_tcache_word1(uintptr_t b) { return (_Atomic uint64_t *)(b + 8); }

/* The allocation fast path: a block of class cls if this thread's most recent cache is h's and holds
 * one; 0 otherwise (then hm_tcache_alloc). */
static inline uintptr_t hm_tcache_pop(hm_heap *h, unsigned cls)
{
    hm_tcache *c = hm_thread_caches;
    if (!c || c->heap_id != h->id) return 0;
    hm_tcache_bin *bin = &c->bin[cls];
    uint32_t n = atomic_load_explicit(&bin->n, memory_order_relaxed);
    if (!n) return 0;
    uintptr_t b = bin->slot[--n];
    bin->slot[n] = 0; /* (no stale copy: a leak checker scanning the cache must not see the block) */
    atomic_store_explicit(&bin->n, n, memory_order_relaxed);
    atomic_store_explicit(hm_tcache_word1(b), 0, memory_order_relaxed);
    return b;
}
/* A block of class cls from this thread's cache (refilled under the lock when empty). */
hm_status hm_tcache_alloc(hm_heap *h, unsigned cls, unsigned level, uintptr_t *out);
/* The same for block b (index in page pg), known to be a live small block: the general case. */
hm_status hm_tcache_push_slow(hm_heap *h, hm_hpage *pg, uintptr_t b);
/* Takes the live small block b (index in page pg) into this thread's cache; HM_E_HOST_INVALIDOPERATION
 * if it is cached already or no longer live (a double free). The common case inline: room in this
 * thread's bin. */
static inline hm_status hm_tcache_push(hm_heap *h, hm_hpage *pg, uintptr_t b)
{
    _Atomic uint64_t *w1 = hm_tcache_word1(b);
    uint64_t t = hm_tcache_tag(h, b);
    atomic_thread_fence(memory_order_acquire); /* the caller saw b live: it sees the tag set before (take_one) */
    if (atomic_load_explicit(w1, memory_order_relaxed) == t) return HM_E_HOST_INVALIDOPERATION;
    /* A second Free racing the first may have seen b live just before its cache gave it back, its
     * page emptied and the page was decommitted: b's words then read zero (a heap's segments are
     * readable when reserved, HM_AF_READABLE), and its live bit, cleared before the page emptied,
     * says so when looked at again after them. A live block's bit stays set meanwhile. */
    atomic_thread_fence(memory_order_acquire);
    if (!hm_heap_live(pg, b)) return HM_E_HOST_INVALIDOPERATION;
    hm_tcache *c = hm_thread_caches;
    if (c && c->heap_id == h->id) {
        hm_tcache_bin *bin = &c->bin[pg->cls];
        uint32_t n = atomic_load_explicit(&bin->n, memory_order_relaxed);
        if (n < bin->cap) {
            atomic_store_explicit(w1, t, memory_order_relaxed);
            bin->slot[n] = b;
            atomic_store_explicit(&bin->n, n + 1, memory_order_relaxed);
            return HM_OK;
        }
    }
    return hm_tcache_push_slow(h, pg, b);
}
/* Large blocks in this thread's cache (tcache.c): take one that holds bytes (hm_lblock_fit, no
 * growth) into *out, false if none; keep the freed block blk (already tagged freed by the caller: once
 * in, another thread's drain may hand it on), false if it does not fit (then it goes to the heap).
 * No heap lock. */
bool hm_tcache_large_take(hm_heap *h, uint64_t bytes, hm_lblock *out);
bool hm_tcache_large_put(hm_heap *h, hm_lblock blk);
/* Gives every thread's cached large blocks of h back to the heap (a commit was refused: memory kept
 * by an idle thread must not starve a busy one). Heap lock held; true if any went. */
bool hm_tcache_large_drain_all(hm_heap *h);
/* Gives this thread's cached large blocks of h back to the heap (hm_heap_trim; takes the heap lock). */
void hm_tcache_large_drain(hm_heap *h);
/* The same with the heap lock held; false if it had none. */
/* heap.c: a large block leaves a thread's cache for the heap's (or is released), lock held. */
void hm_heap_large_return(hm_heap *h, hm_lblock blk);
/* heap.c: whether a large block may be kept committed now (not when memory is short). */
bool hm_heap_may_keep(const hm_heap *h);

/* Whether the live SMALL block at b sits in some thread's cache (freed, from the caller's view). */
bool hm_tcache_holds(const hm_heap *h, uintptr_t b);
/* Blocks and bytes sitting in the caches of h, and their large blocks' bytes (for statistics; racy
 * reads of the counts). Lock held. */
void hm_tcache_cached(hm_heap *h, uint64_t *blocks, uint64_t *bytes, uint64_t *large_bytes);
/* The heap is going away: its caches forget it (their blocks go with its segments). */
void hm_tcache_heap_gone(hm_heap *h);
uint64_t hm_tcache_new_heap_id(void);
/* fork: the caches' global locks (outer: the list of heaps' caches; else the caches' pool). */
void hm_tcache_fork_lock(bool outer);
void hm_tcache_fork_unlock(bool outer);


/* ---- the fast paths, shared with the drop-in malloc (src/preload/malloc.c) --------------------- */

#define HM_DEBUG_MAGIC 0x6462676865617021ull /* mixed into a debug block's tag */
static inline uint64_t hm_heap_debug_tag(const hm_heap *h, uintptr_t block) { return h->key ^ block ^ HM_DEBUG_MAGIC; }

/* Whether h's manager is known to run without asking it (heap.c: running; false: ask, the slow way). */
static inline bool hm_heap_running_fast(const hm_heap *h)
{
    return atomic_load_explicit(&hm_manager_stops, memory_order_acquire) ==
           atomic_load_explicit(&((hm_heap *)h)->stops_seen, memory_order_relaxed);
}

/* A thread-cached heap's small block for size from this thread's cache, or 0 (then the full path).
 * pre: h->cached, hm_heap_running_fast(h), no checker tracks h. */
static inline uintptr_t hm_heap_alloc_cached(hm_heap *h, size_t size)
{
    return size <= HM_SMALL_MAX ? hm_tcache_pop(h, hm_heap_class_of(size)) : 0;
}

/* Free of p when it is a small block of a thread-cached heap h: true with *st its status (a block
 * already freed: HM_E_HOST_INVALIDOPERATION, nothing changed); false when p is anything else (the
 * full path tells what). pre: h->cached, h running. */
static inline __attribute__((always_inline)) bool hm_heap_free_cached(hm_heap *h, uintptr_t p, hm_status *st)
{
    hm_segment *s = hm_segmap_get((void *)p);
    if (!s || s->heap != h) return false;
    hm_hpage *pg = &s->page[(p - (uintptr_t)s) / HM_HPAGE_SIZE];
    /* A live block starts at p (heap_internal.h: its granule's bit; pages not in use have none). The
     * live bit comes first: a refill tags a block before it sets the bit, so a Free that sees the
     * bit sees the tag (hm_tcache_push), and a double Free racing the refill is caught. */
    if ((p & 15) || !hm_heap_live(pg, p)) return false;
    if (atomic_load_explicit(&pg->has_debug, memory_order_relaxed) && *(const uint64_t *)p == hm_heap_debug_tag(h, p))
        return false; /* a debug block's start */
    *st = hm_tcache_push(h, pg, p);
    return true;
}

#endif
