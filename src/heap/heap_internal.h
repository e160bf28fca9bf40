/* heap_internal.h — what the files of src/heap share; nothing outside src/heap uses it, except the
 * drop-in malloc (src/preload), which inlines the fast paths at the end.
 *
 * Who owns what (each file's first comment says more):
 *   class.c     size classes          pools.c    metadata objects, the heap lock
 *   views.c     two-view heaps        segment.c  segments, the empty-page cache, purging, new pages
 *   page.c      blocks of a page      large.c    large blocks and their caches
 *   classify.c  what a pointer is     sites.c    debug sites
 *   tcache.c    threads' page lists   stats.c    statistics, fork
 *   heap.c      the API (heap.h)      segmap.c   the segment bitmap
 * heap.c calls into the others; tcache.c calls page.c, segment.c, large.c and pools.c, never heap.c. */
#ifndef HM_HEAP_INTERNAL_H
#define HM_HEAP_INTERNAL_H

#include "../manager/manager.h"
#include "../vmap/meta.h"
#include "../vmap/vmap.h"
#include "heap.h"

#include <stddef.h>
#include <time.h>

#define HM_BS(pg) atomic_load_explicit(&(pg)->block_size, memory_order_relaxed)
#define HM_EXTENT(pg) atomic_load_explicit(&(pg)->extent, memory_order_relaxed)
#define HM_SET(field, v) atomic_store_explicit(&(field), (v), memory_order_relaxed)
#define HM_GRANULE ((size_t)64 << 10) /* the map's allocation granularity: every reservation base is so aligned */
#define HM_LCACHE_MAGIC 0x6c63616368656421ull /* mixed into a freed large block's tag */
#define HM_XFREE_MAGIC 0x7463616368656421ull  /* mixed into the tag of a small block in xfree */
#define HM_DEBUG_MAGIC 0x6462676865617021ull  /* mixed into a debug block's tag */

/* ---- class.c ------------------------------------------------------------------------------------ */

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
extern const uint8_t hm_heap_class_span[HM_NCLASS];

/* The index of the block at offset off of a page of block size bs, with inv = ceil(2^32 / bs):
 * exact for every off < 64 KiB because off * bs < 2^32 (the error of inv is below 1, times off). */
static inline uint32_t hm_heap_block_index(uintptr_t off, uint32_t inv) { return (uint32_t)(((uint64_t)off * inv) >> 32); }
static inline uint32_t hm_heap_inverse(uint32_t bs) { return (uint32_t)((((uint64_t)1 << 32) + bs - 1) / bs); }

/* ---- pools.c ------------------------------------------------------------------------------------ */

void hm_heap_lock(hm_heap *h);
void hm_heap_unlock(hm_heap *h);
hm_heap *hm_heap_obj_get(void);
void hm_heap_obj_put(hm_heap *h);
hm_site *hm_heap_sites_get(void);     /* HM_MAX_SITES of them */
void hm_heap_sites_put(hm_site *s);
hm_view *hm_heap_view_get(void);
void hm_heap_view_put(hm_view *v);
void hm_heap_pools_fork_lock(bool lock);

/* ---- addresses ---------------------------------------------------------------------------------- */

static inline hm_segment *hm_seg_of(const void *p) { return (hm_segment *)((uintptr_t)p & ~(uintptr_t)(HM_SEG_SIZE - 1)); }
static inline size_t hm_page_index(const hm_hpage *pg) { return (size_t)(pg - hm_seg_of(pg)->page); }
static inline uintptr_t hm_page_addr(const hm_hpage *pg) { return (uintptr_t)hm_seg_of(pg) + hm_page_index(pg) * HM_HPAGE_SIZE; }
/* The bits of pages i..i+n-1 of a segment (0 < n < 64, as page 0 is never one of them: hm_segment.in_use). */
static inline uint64_t hm_page_bits(size_t i, size_t n) { return (((uint64_t)1 << n) - 1) << i; }
/* The record of the 64 KiB page holding b (inside a span for a medium class's block: not its head). */
static inline hm_hpage *hm_page_at(uintptr_t b) { return &hm_seg_of((void *)b)->page[(b >> 16) & (HM_SEG_PAGES - 1)]; }
/* The record of the page holding b: the head of its span for a medium class's. */
static inline hm_hpage *hm_page_of(uintptr_t b)
{
    hm_hpage *pg = hm_page_at(b);
    return pg - pg->back;
}
/* The index of the block at offset off of page (head) pg: the multiply for a small class (exact below
 * 64 KiB), a division for a medium one (its offsets reach 512 KiB; its paths are the slow ones). */
static inline uint32_t hm_page_block_index(const hm_hpage *pg, uintptr_t off)
{
    uint32_t bs = atomic_load_explicit(&((hm_hpage *)pg)->block_size, memory_order_relaxed);
    return bs > HM_SMALL_MAX ? (uint32_t)(off / bs) : hm_heap_block_index(off, pg->inv);
}
_Static_assert(HM_HPAGE_SIZE == (size_t)1 << 16, "page index by shift");

/* Live bits (heap.h, hm_segment.live): one per 16-byte granule, set while a live block starts there,
 * found from the address alone: the row of page (b >> 16) % 64, word (b >> 10) % 64 of it, that is
 * byte (b >> 7) & 0x7ff8 of the rows. One writer per page at a time, its owner: load and store, no
 * read-modify-write; anyone may read. b must be 16-byte aligned in a segment. */
#define HM_LIVE_OFF(b) (((b) >> 7) & (uintptr_t)(HM_SEG_PAGES * HM_LIVE_WORDS * 8 - 8))
_Static_assert(HM_SEG_PAGES * HM_LIVE_WORDS * 8 == 0x8000 && HM_LIVE_WORDS == 64, "HM_LIVE_OFF's shifts");
static inline _Atomic uint64_t *hm_live_word(uintptr_t b)
{
    return (_Atomic uint64_t *)((b & ~(uintptr_t)(HM_SEG_SIZE - 1)) + offsetof(hm_segment, live) + HM_LIVE_OFF(b));
}
/* b's bit in its live word (written as shifts of a bit index, which become bt, bts and btr) */
static inline uintptr_t hm_live_bit(uintptr_t b) { return (b >> 4) & 63; }
/* v with bit (g % 64) set, or flipped: on x86-64 one bts / btc, which take the index modulo 64 by
 * themselves (the compiler masks it first when it writes them from the shift) */
static inline uint64_t hm_bit_set(uint64_t v, uintptr_t g)
{
#if defined(__x86_64__) && defined(__GNUC__)
    __asm__("btsq %1, %0" : "+r"(v) : "r"(g) : "cc");
    return v;
#else
    return v | (uint64_t)1 << (g & 63);
#endif
}
static inline uint64_t hm_bit_flip(uint64_t v, uintptr_t g)
{
#if defined(__x86_64__) && defined(__GNUC__)
    __asm__("btcq %1, %0" : "+r"(v) : "r"(g) : "cc");
    return v;
#else
    return v ^ (uint64_t)1 << (g & 63);
#endif
}
static inline bool hm_heap_live(uintptr_t b)
{
    return (atomic_load_explicit(hm_live_word(b), memory_order_relaxed) >> hm_live_bit(b)) & 1;
}
static inline void hm_set_live(uintptr_t b, bool on)
{
    _Atomic uint64_t *w = hm_live_word(b);
    uint64_t v = atomic_load_explicit(w, memory_order_relaxed), m = (uint64_t)1 << hm_live_bit(b);
    atomic_store_explicit(w, on ? v | m : v & ~m, memory_order_relaxed);
}

/* Free bits (heap.h, hm_hpage.fbits): the owner's, like the live bits (load and store). */
static inline uint32_t hm_page_nfree(const hm_hpage *pg)
{
    return HM_EXTENT(pg) - pg->first - atomic_load_explicit(&((hm_hpage *)pg)->used, memory_order_relaxed);
}
/* Block index i of pg is free on the page again (the caller counts it out of used). */
static inline void hm_page_put_free(hm_hpage *pg, uint32_t i)
{
    _Atomic uint64_t *w = pg->fbits + i / 64;
    atomic_store_explicit(w, atomic_load_explicit(w, memory_order_relaxed) | (uint64_t)1 << (i % 64), memory_order_relaxed);
    if (i / 64 < pg->fscan) pg->fscan = (uint16_t)(i / 64);
}
static inline uint32_t hm_page_index_of(const hm_hpage *pg, uintptr_t b) { return hm_page_block_index(pg, b - hm_page_addr(pg)); }

/* Tags in a block's words: a small block in xfree (second word), a freed large block (second word),
 * a debug block (first word). Derived from the heap's secret, so that program data matches one with
 * a chance of 2^-64. */
static inline uint64_t hm_xfree_tag(const hm_heap *h, uintptr_t b) { return h->key ^ b ^ HM_XFREE_MAGIC; }
static inline uint64_t hm_lcache_tag(const hm_heap *h, uintptr_t b) { return h->key ^ b ^ HM_LCACHE_MAGIC; }
static inline uint64_t hm_heap_debug_tag(const hm_heap *h, uintptr_t b) { return h->key ^ b ^ HM_DEBUG_MAGIC; }
static inline _Atomic uint64_t *hm_word1(uintptr_t b) { return (_Atomic uint64_t *)(b + 8); }
/* A free block's first word, its encoded link (next ^ key ^ b). Relaxed atomics: a second Free from
 * another thread racing the owner's allocation of the block writes it while the owner reads it (the
 * program's race, which must not be the heap's undefined behaviour). Plain moves on x86-64. */
static inline uintptr_t hm_link_get(uintptr_t b) { return __atomic_load_n((uintptr_t *)b, __ATOMIC_RELAXED); }
static inline void hm_link_set(uintptr_t b, uintptr_t v) { __atomic_store_n((uintptr_t *)b, v, __ATOMIC_RELAXED); }
#define HM_OWNER(pg) atomic_load_explicit(&(pg)->owner, memory_order_relaxed)

/* A bin that is always empty and always full, {0, HM_BIN_END}, never written: HM_BIN_UNMADE, its top,
 * is where a bin not yet used has its top (hm_pagelists_init_bins; the inline paths find it empty
 * and full, and the slow paths make the bin on first use: hm_bin_make), and hm_bin_none, a top
 * there, is the fbin of a page whose blocks its owner's fast Free must not take (heap.h, fbin). */
extern uintptr_t hm_bin_always[2];
#define HM_BIN_UNMADE (&hm_bin_always[1])
extern hm_bintop hm_bin_none;

/* Where pg's fbin is (heap.h, hm_segment.fbin): its segment's row. */
static inline _Atomic(hm_bintop *) *hm_page_fbin(hm_hpage *pg) { return &hm_seg_of(pg)->fbin[hm_page_index(pg)]; }

/* pg's fbin for its home (NULL: none): the bin of its class there when its owner's fast Free may
 * take its blocks and its xfree is empty, else hm_bin_none. By pg's owner (or owner-to-be). With
 * hm_heap_give, whose push onto an empty xfree is followed by a store of hm_bin_none, a Dekker pair
 * (all seq_cst): the bin is stored, then xfree read, so either this sees that push or that store
 * lands after this one. Either way a nonempty xfree leaves hm_bin_none in place once the push
 * returns; a late store of it over an empty xfree only sends Frees to the slow path, which arms the
 * page again (hm_heap_small_free_unlocked). */
static inline void hm_page_arm_fbin(hm_hpage *pg, hm_pagelists *home)
{
    unsigned cls = atomic_load_explicit(&pg->cls, memory_order_relaxed);
    _Atomic(hm_bintop *) *fb = hm_page_fbin(pg);
    if (!home || cls >= HM_NSMALL || atomic_load_explicit(&pg->has_debug, memory_order_relaxed)) {
        atomic_store_explicit(fb, &hm_bin_none, memory_order_relaxed);
        return;
    }
    atomic_store_explicit(fb, &home->top[cls], memory_order_seq_cst);
    if (atomic_load_explicit(&pg->xfree, memory_order_seq_cst)) atomic_store_explicit(fb, &hm_bin_none, memory_order_relaxed);
}

/* pg's home becomes home (NULL: none), with the bin its owner's fast Free uses (heap.h, fbin). By
 * pg's owner-to-be (or the heap lock's holder for the heap's own lists); pg->cls set. */
static inline void hm_page_set_home(hm_hpage *pg, hm_pagelists *home, memory_order order)
{
    hm_page_arm_fbin(pg, home);
    atomic_store_explicit(&pg->home, home, order);
}

/* Doubly linked page lists (a home's, the heap's empty cache), through next and prev. */
static inline void hm_list_add(hm_hpage **head, hm_hpage *pg)
{
    pg->prev = NULL;
    pg->next = *head;
    if (*head) (*head)->prev = pg;
    *head = pg;
}
static inline void hm_list_del(hm_hpage **head, hm_hpage *pg)
{
    if (pg->prev) pg->prev->next = pg->next;
    else *head = pg->next;
    if (pg->next) pg->next->prev = pg->prev;
    pg->next = pg->prev = NULL;
}

/* ---- views.c ------------------------------------------------------------------------------------ */

/* Where the heap (or the program) writes the byte at b of a block of h: b itself, or its alias in
 * the read-write view of a dual heap (heap.h, "Executable heaps"). */
uintptr_t hm_heap_wr_dual(const hm_heap *h, uintptr_t b);
static inline uintptr_t hm_heap_wr(const hm_heap *h, uintptr_t b) { return h->dual ? hm_heap_wr_dual(h, b) : b; }
#define HM_W64(h, b, i) ((uint64_t *)hm_heap_wr((h), (b)))[i]
uintptr_t hm_heap_wr_locked(hm_heap *h, uintptr_t b); /* the same, for a caller without the lock */
int hm_views_new(uintptr_t base, size_t size, int *fd, uintptr_t *rw);
void hm_views_close(hm_heap *h, int fd, uintptr_t rw, size_t size);
void hm_views_retry(hm_heap *h);
hm_view *hm_view_of(const hm_heap *h, uintptr_t b);
void hm_view_forget(hm_heap *h, hm_view *v);

/* ---- segment.c ---------------------------------------------------------------------------------- */

/* How long an empty page or a freed large block stays committed (HM_EMPTY_DELAY_MS); tests that
 * compare runs set it beyond reach, so that nothing is given back by the clock. */
extern uint32_t hm_heap_empty_delay_ms;
static inline uint64_t hm_heap_now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &t);
    return (uint64_t)t.tv_sec * 1000 + (uint64_t)t.tv_nsec / 1000000;
}
/* A freed large block kept since before now - hm_heap_empty_delay_ms (now 0: none is) */
static inline bool hm_lblock_aged(const hm_lblock *b, uint64_t now)
{
    return now && b->freed_ms + hm_heap_empty_delay_ms <= now;
}
/* Heap lock held: a page for class cls on home's avail list (first), its owner token home's: an
 * empty committed one, an unused slot committed now at level, or one of a new segment (the lock is
 * dropped around commits, which may wait for memory). */
hm_status hm_heap_page_new(hm_heap *h, hm_pagelists *home, unsigned cls, unsigned level, hm_hpage **out);
/* Heap lock held: empty pages that waited long enough (or all, with force) are decommitted. */
hm_status hm_heap_purge(hm_heap *h, bool force);
/* hm_heap_purge(h, false) dropping the lock around each decommit (segment.c, purge): for a caller
 * that holds no page or list of the heap across the call (lock held on entry and on return). */
void hm_heap_purge_unlocking(hm_heap *h);
void hm_heap_empty_push(hm_heap *h, hm_hpage *pg);
/* pg, the head of a medium span whose last block went (retired: no home, block size 0), is kept
 * whole, committed, for the next span of its length (segment.c, "The span cache"). Lock held. */
void hm_heap_span_keep(hm_heap *h, hm_hpage *pg);
/* pg, the head of a span of k pages (1 for a page), stops being one: its pages leave the segment's
 * books of pages in use and point back at no head. Lock held. */
void hm_heap_span_dissolve(hm_hpage *pg, unsigned k);
/* A page record is the head of a span in the span cache. */
static inline bool hm_page_span_cached(const hm_hpage *pg) { return pg->span > 1 && !HM_BS(pg); }
/* A commit that lacks need bytes was refused (st): the threads' cached large blocks join the heap's
 * cache, then its freed large blocks and its empty pages go back, the oldest first, until at least
 * need bytes went (UINT64_MAX: all), so that the caller may try once more; true if anything went.
 * Lock held. */
bool hm_heap_refused_give_back(hm_heap *h, hm_status st, uint64_t need);
/* Whether a commit of bytes refused with st gets a give-back round (round 0, 1, ...) before it is tried
 * again, and how much it asks (*need): round 0 what the commit needs, round 1 all that is kept; a
 * commit that waited for memory (HOST_TIMEOUT) gets one round, with all (each retry may wait again). */
static inline bool hm_heap_refusal_round(hm_status st, int round, uint64_t bytes, uint64_t *need)
{
    if (st == HM_E_HOST_TIMEOUT && round == 0) *need = UINT64_MAX;
    else if (st == HM_E_COMMITMENT_LIMIT && round < 2) *need = round ? UINT64_MAX : bytes;
    else return false;
    return true;
}
hm_status hm_heap_segment_release(hm_heap *h, hm_segment *s);
void hm_heap_drop_reservation(hm_heap *h, void *base);

/* ---- page.c ------------------------------------------------------------------------------------- */

/* Lists: the owner of the lists (or the heap lock for the heap's own). */
void hm_page_move(hm_hpage *pg, uint32_t to); /* to its home's list 0 none, 1 avail, 2 full */
/* pg (on no list) first on lists' avail list of its class. */
void hm_page_avail_first(hm_pagelists *lists, hm_hpage *pg);
/* By the owner of lists: a block of class cls admitted at level, from its bin refilled (a small
 * class) or from the first avail page (a medium one); other threads' frees are collected,
 * an ownerless page adopted or a new one made (under the heap lock, taken here unless
 * lists is the heap's own, whose caller holds it). */
hm_status hm_heap_small_alloc(hm_heap *h, hm_pagelists *lists, unsigned cls, unsigned level, uintptr_t *out);
/* A freed small block b of page pg goes back: into pg's free bits when mine is pg's home (the
 * caller owns it), else onto pg's xfree (any thread, no lock; b gets the xfree tag). true: pg has no
 * block in use any more, and the caller must give it up (hm_heap_page_empty, under the heap lock). */
bool hm_heap_give(hm_heap *h, hm_pagelists *mine, hm_hpage *pg, uintptr_t b);
/* Heap lock held: a page without blocks goes to the empty cache (and due pages are purged). */
void hm_heap_page_empty(hm_heap *h, hm_hpage *pg);
void hm_heap_page_retire(hm_heap *h, hm_hpage *pg);
/* The owner's Free left pg's used count at its wake (heap.h): a full page with enough free blocks
 * moves to the avail list, and an empty page that is not its class's only one there is given up (the
 * heap lock taken for that). */
void hm_heap_settle(hm_heap *h, hm_hpage *pg);
void hm_heap_settle_locked(hm_heap *h, hm_hpage *pg); /* (the heap lock held) */
/* Free of the plain block b of page (or span) pg without the heap lock, by a thread-cached heap's
 * caller or by the caller of a heap without HM_HEAP_THREADSAFE (whose own lists it owns): refused if
 * already in xfree or not live, else into pg's bin or free bits if the caller owns pg (its thread's
 * cache, or such a heap's own lists), or onto its xfree. */
hm_status hm_heap_small_free_unlocked(hm_heap *h, hm_hpage *pg, uintptr_t b);
/* Heap lock held: hm_heap_give from the heap's own lists, emptied pages given up at once. */
void hm_heap_small_free(hm_heap *h, hm_hpage *pg, uintptr_t b);
/* Other threads' frees of pg go back into its free bits (its owner); false if a link was overwritten. */
bool hm_heap_collect(hm_heap *h, hm_hpage *pg);
/* By the owner of lists: the n oldest blocks of its bin of class cls go back to their pages (the heap
 * lock taken for pages that empty, unless locked: the caller holds it). */
void hm_heap_bin_flush(hm_heap *h, hm_pagelists *lists, unsigned cls, uint32_t n, bool locked);
/* Sets the bins' capacities of lists (zeroed otherwise). */
void hm_pagelists_init_bins(hm_pagelists *lists);
/* Blocks and bytes in the bins of lists, added to *blocks and *bytes (statistics: racy reads). */
void hm_heap_binned(const hm_pagelists *lists, uint64_t *blocks, uint64_t *bytes);
/* Heap lock held, by the owner of lists: its bins flushed, its empty pages (kept as their classes'
 * only ones) retire. */
void hm_heap_trim_lists(hm_heap *h, hm_pagelists *lists);
/* A thread cache's pages lose their owner: they join the heap's own lists (lock held, by the owner). */
void hm_heap_disown(hm_heap *h, hm_pagelists *lists);
/* Whether the live small block b of a thread-cached heap sits in xfree (freed, from the caller's
 * view): its tag, looked at whatever the page's xfree says (a collect may have emptied it and not yet
 * reached b). */
static inline bool hm_heap_in_xfree(const hm_heap *h, uintptr_t b)
{
    return atomic_load_explicit(hm_word1(b), memory_order_relaxed) == hm_xfree_tag(h, b);
}

/* ---- large.c ------------------------------------------------------------------------------------ */

/* A block of its own from the map, or a cached one (no lock held; the commit may wait). reserve >
 * size asks for room to grow in place; *zero (if asked): its bytes read zero. */
hm_status hm_heap_large_alloc(hm_heap *h, size_t size, size_t reserve, size_t align, unsigned level, uintptr_t *out, bool *zero);
/* Heap lock held: a freed large block goes to the heap's cache, else is released, else parked. */
void hm_heap_large_return(hm_heap *h, hm_lblock blk);
bool hm_heap_lcache_put(hm_heap *h, hm_lblock blk);
hm_status hm_heap_large_release(hm_heap *h, uintptr_t base);
void hm_heap_park(hm_heap *h, hm_lblock blk);
hm_status hm_heap_lcache_drain(hm_heap *h);
/* The parked blocks, then the oldest cached ones until at least need bytes went; the bytes that went
 * (lock held; a refused release stops it). */
uint64_t hm_heap_lcache_release_oldest(hm_heap *h, uint64_t need);
/* The cached large blocks kept longer than hm_heap_empty_delay_ms are released (lock held). */
void hm_heap_lcache_age(hm_heap *h, uint64_t now);
/* Whether a large block may be kept committed now (not when memory is short). */
bool hm_heap_may_keep(const hm_heap *h);
void hm_heap_large_count(hm_heap *h, int64_t bytes, int64_t blocks);
hm_status hm_heap_grow_in_place(hm_heap *h, uintptr_t p, const hm_vmap_info *info, size_t have, size_t size, hm_level level);

/* ---- classify.c --------------------------------------------------------------------------------- */

/* What a pointer is to a heap. */
typedef enum { NOT_A_BLOCK, SMALL, SMALL_DEBUG, LARGE, LARGE_DEBUG } block_kind;
typedef struct block_ref {
    block_kind kind;
    hm_hpage *page;
    uintptr_t block;   /* block start (small) or allocation base (large) */
    uint64_t size;     /* block size, or a large block's committed (usable) bytes */
    uint64_t room;     /* a large block's reservation */
} block_ref;
block_ref hm_heap_classify(const hm_heap *h, const hm_vmap_info *info, uintptr_t p);
/* The heap allocation (segment or large block) holding p; false if p is in no heap's memory. */
bool hm_heap_find(const void *p, hm_vmap_info *info);
block_ref hm_heap_classify_large(hm_heap *h, const void *p, hm_vmap_info *info);
/* Free of p, which the map says belongs to another heap (or to no heap's block): SPEC 4. */
hm_status hm_heap_foreign(const hm_vmap_info *info, const void *p);
/* The usable size of p, 0 if no live block of h (guarded: a large block looked at under the lock);
 * *out, if asked, the map's record of its allocation, but only a tag of 0 for a plain block of a page
 * or span. */
size_t hm_heap_usable(hm_heap *h, const void *p, bool guarded, hm_vmap_info *out);

/* ---- check.c ------------------------------------------------------------------------------------ */

/* The census of every page of h in use against the page invariants (check.c), for tests and the
 * fuzzer with no other thread using h (the heap lock taken): HM_OK, or HM_E_FAIL with the detail
 * naming the first broken one. Pages in use and their free blocks counted into *pages, *free_blocks
 * (if not NULL). */
hm_status hm_heap_check_pages(hm_heap *h, uint64_t *pages, uint64_t *free_blocks);

/* ---- sites.c ------------------------------------------------------------------------------------ */

uint32_t hm_heap_site_of(hm_heap *h, const char *file, int line);
void hm_heap_site_forget(hm_heap *h, uint64_t info);
void hm_heap_leak_report(hm_heap *h);

/* ---- segmap.c: the segment holding an address, or NULL (then ask the map) ----------------------- */

#define HM_SEGMAP_SHIFT 22 /* log2 HM_SEG_SIZE */
#define HM_SEGMAP_BYTES ((size_t)1 << (47 - HM_SEGMAP_SHIFT))
_Static_assert(((size_t)1 << HM_SEGMAP_SHIFT) == HM_SEG_SIZE, "one byte per segment");
void hm_segmap_set(uintptr_t seg, bool live);
extern _Atomic uint8_t hm_segmap_bytes[HM_SEGMAP_BYTES];
static inline hm_segment *hm_segmap_get(const void *p)
{
    uintptr_t a = (uintptr_t)p;
    if (a >> 47) return NULL;
    return atomic_load_explicit(&hm_segmap_bytes[a >> HM_SEGMAP_SHIFT], memory_order_acquire)
               ? (hm_segment *)(a & ~(uintptr_t)(HM_SEG_SIZE - 1)) : NULL;
}

/* The page (the head of the span, for a medium class) of h holding p when it has blocks and no debug
 * block was carved from it (so that every block of it is plain), from the segment table and the page
 * records alone; NULL if not (then ask the map). Racy reads, as Free's: the caller decides by the
 * block's live bit (and tag), not by this; a record read while its page is made anew may say
 * anything, but never sends the reads out of the segment. */
static inline hm_hpage *hm_heap_plain_page(const hm_heap *h, uintptr_t p)
{
    hm_segment *s = hm_segmap_get((void *)p);
    if (!s || s->heap != h) return NULL;
    hm_hpage *at = hm_page_at(p);
    size_t back = at->back;
    if (back > hm_page_index(at)) return NULL;
    hm_hpage *pg = at - back;
    if (!HM_BS(pg) || atomic_load_explicit(&pg->has_debug, memory_order_relaxed)) return NULL;
    return pg;
}

/* hm_heap_plain_page, and of its blocks: *bs their size; *start whether p is one's start. */
static inline hm_hpage *hm_heap_block_page(const hm_heap *h, uintptr_t p, uint32_t *bs, bool *start)
{
    hm_hpage *pg = hm_heap_plain_page(h, p);
    if (!pg) return NULL;
    uint32_t b = HM_BS(pg);
    uintptr_t off = p - hm_page_addr(pg), i;
    if (b <= HM_SMALL_MAX) {
        if (pg != hm_page_at(p)) return NULL; /* (a small class's page is no span) */
        i = hm_heap_block_index(off, pg->inv);
    } else { /* (a medium class: a division, as hm_page_block_index) */
        if (off >= (uintptr_t)pg->span * HM_HPAGE_SIZE) return NULL;
        i = off / b;
    }
    *bs = b;
    *start = i * b == off && i < HM_EXTENT(pg);
    return pg;
}

/* hm_heap_plain_page when p is the start of a live block of it (its live bit, set only at one: no
 * division); NULL if not. The caller checks the block again (hm_heap_small_free_unlocked). */
static inline hm_hpage *hm_heap_live_page(const hm_heap *h, uintptr_t p)
{
    hm_hpage *pg = hm_heap_plain_page(h, p);
    return pg && !(p & 15) && hm_heap_live(p) ? pg : NULL; /* (p & 15: no granule's start, no bit of its own) */
}

/* ---- tcache.c: threads' caches of a thread-safe heap (the file's comment tells the rules) -------- */

#define HM_TCACHE_LARGE 32                       /* freed large blocks a thread keeps */
#define HM_TCACHE_LARGE_MAX ((uint64_t)1 << 20)  /* ... of at most this size each */
#define HM_TCACHE_LARGE_BYTES ((uint64_t)8 << 20) /* ... and this many bytes in all */

typedef struct hm_tcache {
    hm_pagelists lists;               /* the pages this thread owns (its thread only); first: the
                                         fast path's lists are the cache's address */
    uint64_t heap_id;                 /* the heap's id while attached; 0 never matches a live heap */
    _Atomic(hm_heap *) heap;          /* NULL once the heap is destroyed (heaps_lock) */
    struct hm_tcache *next;           /* in the heap's list (heap lock) */
    struct hm_tcache *thread_next;    /* in its thread's list (its thread only) */
    atomic_flag large_lock;           /* nlarge and large[]: its thread, or a drain from another thread
                                         (lock order: the heap lock, then this) */
    uint32_t nlarge;                  /* freed large blocks kept, oldest first */
    hm_lblock large[HM_TCACHE_LARGE];
    _Atomic uint64_t large_bytes;     /* their bytes (statistics; written by its thread only) */
} hm_tcache;

/* This thread's caches, the most recently used first (initial-exec: one load, also in the .so), ended
 * by a cache of no heap (tcache.c), never NULL. Its address is the thread's owner token (hm_self):
 * distinct for every live thread, never 0 or 1. */
extern _Thread_local hm_tcache *hm_thread_caches __attribute__((tls_model("initial-exec")));
static inline uintptr_t hm_self(void) { return (uintptr_t)&hm_thread_caches; }

/* This thread's lists of h, made on first use; NULL if none can be made (the caller goes locked). */
hm_pagelists *hm_tcache_lists(hm_heap *h);
/* This thread's lists of h if it has used h, else NULL (nothing is made). */
hm_pagelists *hm_tcache_find_lists(hm_heap *h);
/* Large blocks in this thread's cache: take one that holds bytes (hm_lblock_fit; with grow, failing
 * that, one that can grow to bytes: the caller commits the rest) into *out, its freed tag cleared,
 * false if none; keep the freed block blk (already tagged freed by the caller: once in,
 * another thread's drain may hand it on), false if it does not fit (then it goes to the heap). */
bool hm_tcache_large_take(hm_heap *h, uint64_t bytes, bool grow, hm_lblock *out);
bool hm_tcache_large_put(hm_heap *h, hm_lblock blk);
/* Gives every thread's cached large blocks of h back to the heap (a commit was refused: memory kept
 * by an idle thread must not starve a busy one). Heap lock held; true if any went. */
bool hm_tcache_large_drain_all(hm_heap *h);
/* Gives this thread's cached large blocks of h back to the heap (takes the heap lock). */
void hm_tcache_large_drain(hm_heap *h);
/* Blocks and bytes in the bins of h's caches, added to *blocks, *bytes (statistics). Lock held. */
void hm_tcache_binned(hm_heap *h, uint64_t *blocks, uint64_t *bytes);
/* Bytes of large blocks in the caches of h (statistics; racy reads). Lock held. */
uint64_t hm_tcache_large_cached(hm_heap *h);
/* The heap is going away: its caches forget it (their pages go with its segments). */
void hm_tcache_heap_gone(hm_heap *h);
uint64_t hm_tcache_new_heap_id(void);
/* fork: the caches' global locks (outer: the list of heaps' caches; else the caches' pool). */
void hm_tcache_fork_lock(bool outer);
void hm_tcache_fork_unlock(bool outer);

/* ---- the fast paths, shared with the drop-in malloc (src/preload/dropin.h) ---------------------- */

/* hm_heap_free of a p that the inline fast path (hm_heap_free_fast) turned away, or that it did not
 * look at (another heap's lists were the caller's): every check, the fast path tried again only if
 * h's fast_id said it could not look. For callers that ran the inline path themselves (the drop-in's
 * free): a second look would fail again. */
hm_status hm_heap_free_slow(hm_heap *h, void *p);

/* The calling thread's page lists of h when the fast paths may use them, from k = h->fast_id: the
 * heap's own for a heap without HM_HEAP_THREADSAFE (odd k: its caller owns them), else the thread's
 * cache if its most recent one is h's (k is 0 while they may not: no cache has that id); NULL
 * otherwise (the slow path finds or makes it). */
static inline hm_pagelists *hm_heap_cached_lists(uint64_t k)
{
    hm_tcache *c = hm_thread_caches;
    return c->heap_id == k ? &c->lists : NULL;
}
static inline hm_pagelists *hm_heap_fast_lists(hm_heap *h, uint64_t k) { return __builtin_expect(k & 1, 0) ? &h->own : hm_heap_cached_lists(k); }

/* Bins (heap.h, hm_bin): how many blocks bin cls of lists holds (racy for anyone but the owner; 0 for
 * a bin not made yet), how many it may hold, and its count set (by the owner, of a bin made; the
 * slots from n on must be 0 up to cap). */
static inline uint32_t hm_bin_n(const hm_pagelists *lists, unsigned cls)
{
    uintptr_t *t = atomic_load_explicit(&((hm_pagelists *)lists)->top[cls], memory_order_relaxed);
    return t == HM_BIN_UNMADE ? 0 : (uint32_t)(t - lists->bin[cls].slot);
}
/* Bin cls of lists made if it is not yet: its slots 0, its end mark at cap, its top at slot 0 (by
 * the owner, before anything is put in it). */
void hm_bin_make_slow(hm_pagelists *lists, unsigned cls);
static inline void hm_bin_make(hm_pagelists *lists, unsigned cls)
{
    if (atomic_load_explicit(&lists->top[cls], memory_order_relaxed) == HM_BIN_UNMADE) hm_bin_make_slow(lists, cls);
}
static inline uint32_t hm_bin_cap(unsigned cls)
{
    size_t n = HM_BIN_BYTES / hm_heap_class_size(cls);
    return n > HM_BIN_N ? HM_BIN_N : n < 4 ? 4 : (uint32_t)n;
}
static inline void hm_bin_set_n(hm_pagelists *lists, unsigned cls, uint32_t n)
{
    atomic_store_explicit(&lists->top[cls], lists->bin[cls].slot + n, memory_order_relaxed);
}

/* The newest block of the bin whose top is *tp, live now, or 0 if the bin is empty: its bit set from
 * the address alone; neither the page's record nor the block is read. pre: the heap is fast (heap.h),
 * the caller owns the bin's lists. */
static inline uintptr_t hm_heap_bin_take(hm_bintop *tp)
{
    uintptr_t *t = atomic_load_explicit(tp, memory_order_relaxed), b = t[-1];
    if (!b) return 0; /* (the floor) */
    t[-1] = 0; /* (the mark above the top; no stale copy: a leak checker scanning the bin must not see the block) */
    atomic_store_explicit(tp, t - 1, memory_order_relaxed);
    _Atomic uint64_t *w = hm_live_word(b);
    atomic_store_explicit(w, hm_bit_set(atomic_load_explicit(w, memory_order_relaxed), b >> 4), memory_order_relaxed);
    return b;
}

/* A small block for size from a thread-cached heap (h->cached: the drop-in's), or 0 (then the full
 * path, which also tells whether the manager runs). */
static inline __attribute__((always_inline)) uintptr_t hm_heap_alloc_fast_cached(hm_heap *h, size_t size)
{
    hm_pagelists *lists = hm_heap_cached_lists(atomic_load_explicit(&h->fast_id, memory_order_relaxed));
    if (size > HM_SMALL_MAX || !lists) return 0;
    return hm_heap_bin_take(&lists->top[h->class_of[(size + 15) >> 4]]);
}

/* Free of p when it is a plain small block of a page of the caller's lists (which says the page is
 * h's and the caller owns it), nothing in the page's xfree, no debug block carved from it (fbin is
 * hm_bin_none, always full, if either), and room in its bin: true, freed (its live bit cleared, the
 * block pushed onto the bin; neither the block nor the page's record is read: the segment's fbin
 * row, the live word and the bin are).
 * false: p is anything else, or the bin is full (or not made yet), or the manager not known to run,
 * and nothing changed (the full path tells what, or flushes). known_cached: the caller knows h is
 * thread-cached (else fast_id tells). */
static inline __attribute__((always_inline)) bool hm_heap_free_into(hm_pagelists *lists, uintptr_t p);
static inline __attribute__((always_inline)) bool hm_heap_free_fast_as(hm_heap *h, uintptr_t p, bool known_cached)
{
    uint64_t k = atomic_load_explicit(&h->fast_id, memory_order_relaxed);
    /* (the body inlined once for each heap kind: neither path computes the other's lists) */
    if (!known_cached && __builtin_expect(k & 1, 0)) return hm_heap_free_into(&h->own, p);
    hm_pagelists *lists = hm_heap_cached_lists(k);
    return lists && hm_heap_free_into(lists, p);
}
/* hm_heap_free_fast_as's body for the caller's lists. */
static inline __attribute__((always_inline)) bool hm_heap_free_into(hm_pagelists *lists, uintptr_t p)
{
    /* the segment table says whether p is in a segment; then the segment is p masked, and the page's
     * fbin is in its row, (p >> 16) & 63 of 8-byte entries: one of the tops of the caller's bins
     * only if the page's home is the caller's lists (no record read) */
    if (p & ~(uintptr_t)(((uintptr_t)1 << 47) - 16)) return false; /* past the table, or not a granule's start */
    if (!atomic_load_explicit(&hm_segmap_bytes[p >> HM_SEGMAP_SHIFT], memory_order_acquire)) return false;
    _Atomic(hm_bintop *) *fb = (_Atomic(hm_bintop *) *)((p & ~(uintptr_t)(HM_SEG_SIZE - 1)) + offsetof(hm_segment, fbin) + ((p >> 13) & 0x1f8));
    hm_bintop *tp = atomic_load_explicit(fb, memory_order_relaxed);
    if ((uintptr_t)tp - (uintptr_t)lists->top >= sizeof lists->top) return false; /* (hm_bin_none: never) */
    /* its live bit: set only at a live block's start, so no division tells p is one */
    _Atomic uint64_t *w = hm_live_word(p);
    uint64_t live = atomic_load_explicit(w, memory_order_relaxed);
    if (!((live >> hm_live_bit(p)) & 1)) return false;
    uintptr_t *t = atomic_load_explicit(tp, memory_order_relaxed);
    if (*t) return false; /* (HM_BIN_END: full, or the always-full bin: hm_bin_none, HM_BIN_UNMADE) */
    atomic_store_explicit(w, hm_bit_flip(live, p >> 4), memory_order_relaxed); /* (it was set: cleared) */
    *t = p;
    atomic_store_explicit(tp, t + 1, memory_order_relaxed);
    return true;
}
static inline __attribute__((always_inline)) bool hm_heap_free_fast(hm_heap *h, uintptr_t p) { return hm_heap_free_fast_as(h, p, false); }
_Static_assert(sizeof(hm_bintop *) == 8 && HM_SEG_PAGES == 64, "hm_heap_free_fast's arithmetic: a row of 64 8-byte fbins");

#endif
