/* heap_internal.h — what heap.c shares with tcache.c; nothing outside src/heap uses it. */
#ifndef HM_HEAP_INTERNAL_H
#define HM_HEAP_INTERNAL_H

#include "../vmap/vmap.h"
#include "heap.h"

/* What a pointer is to a heap (heap.c: hm_heap_classify). */
typedef enum { NOT_A_BLOCK, SMALL, SMALL_DEBUG, LARGE, LARGE_DEBUG } block_kind;

typedef struct block_ref {
    block_kind kind;
    hm_hpage *page;
    uint32_t index;
    uintptr_t block;   /* block start (small) or allocation base (large) */
    uint64_t size;     /* block size, or the large allocation's size */
} block_ref;

unsigned hm_heap_class_of(size_t size);
size_t hm_heap_class_size(unsigned cls);
void hm_heap_lock(hm_heap *h);
void hm_heap_unlock(hm_heap *h);
/* Under the heap lock (or on a single-threaded heap): a block of class cls admitted at level, and
 * its return. */
hm_status hm_heap_small_alloc(hm_heap *h, unsigned cls, unsigned level, uintptr_t *out);
void hm_heap_small_free(hm_heap *h, hm_hpage *pg, uint32_t i, uintptr_t b);
block_ref hm_heap_classify(const hm_heap *h, const hm_vmap_info *info, uintptr_t p);

/* segmap.c: the segment holding an address, or NULL (then ask the map). set: s, or NULL to remove. */
bool hm_segmap_set(uintptr_t seg, hm_segment *s);
hm_segment *hm_segmap_get(const void *p);

/* tcache.c: per-thread caches of a thread-safe heap. */
/* The allocation fast path: a block of class cls if this thread's most recent cache is h's and holds
 * one; 0 otherwise (then hm_tcache_alloc). */
uintptr_t hm_tcache_pop(hm_heap *h, unsigned cls);
/* A block of class cls from this thread's cache (refilled under the lock when empty). */
hm_status hm_tcache_alloc(hm_heap *h, unsigned cls, unsigned level, uintptr_t *out);
/* Takes a live SMALL block r into this thread's cache; HM_E_HOST_INVALIDOPERATION if it is cached
 * already (a double free). */
hm_status hm_tcache_free(hm_heap *h, const block_ref *r);
/* The same for block b (index in page pg, of size bytes), known to be a live small block. */
hm_status hm_tcache_push(hm_heap *h, hm_hpage *pg, uint32_t index, uintptr_t b, uint64_t size);
/* Whether the live SMALL block at b sits in some thread's cache (freed, from the caller's view). */
bool hm_tcache_holds(const hm_heap *h, uintptr_t b);
/* Blocks and bytes sitting in the caches of h (for statistics; racy reads). Lock held. */
void hm_tcache_cached(hm_heap *h, uint64_t *blocks, uint64_t *bytes);
/* The heap is going away: its caches forget it (their blocks go with its segments). */
void hm_tcache_heap_gone(hm_heap *h);
uint64_t hm_tcache_new_heap_id(void);

#endif
