/* meta.h — type-stable pools for the map's own records (radix nodes, allocation records, run
 * tables, chunk records). Never malloc: pool memory comes from hm_os_map_meta and is never returned
 * to the kernel, and memory once carved for a pool stays that pool's. So a lock-free reader that
 * follows a stale pointer always lands on readable memory holding an object of the same kind,
 * possibly recycled; the generation count that opens every pooled object tells it so.
 *
 * Every pooled object starts with an hm_meta_hdr:
 *   gen  even while the object is published and stable; odd while it is free or being rebuilt.
 *        Retiring an object makes it odd, reusing it makes it even again after the new contents
 *        are written: a reader that saw the same even gen before and after its reads saw one version.
 *   next the pool's free-list link (and only that), so freeing writes no field a reader interprets.
 * Retired objects are reused in FIFO order, which keeps the window for such retries wide.
 *
 * Each pool is used under one lock of its owner's choosing (the map's pools under the map's writer
 * lock, the heaps' and the managers' under theirs). */
#ifndef HM_META_H
#define HM_META_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

typedef struct hm_meta_hdr {
    _Atomic uint64_t gen;
    _Atomic uintptr_t next;
} hm_meta_hdr;

typedef struct hm_pool {
    const char *name;
    size_t obj_size;        /* bytes per object, a multiple of 64: chunks are page aligned, so every
                               object has cache lines of its own (no false sharing between threads
                               that write neighbouring objects) */
    size_t chunk_size;      /* bytes of the first chunk; later ones double, up to 2 MiB */
    hm_meta_hdr *free_head; /* FIFO of retired objects */
    hm_meta_hdr *free_tail;
    char *bump, *bump_end;  /* uncarved rest of the newest chunk */
    size_t live;            /* objects handed out and not yet freed */
    size_t mapped;          /* bytes mapped for this pool */
    size_t nchunks;         /* chunks mapped so far */
} hm_pool;

/* Metadata totals over all pools (bytes of live objects, its high-water mark, bytes mapped). Atomic:
 * pools of different layers run under different locks. */
typedef struct hm_meta_totals {
    _Atomic size_t live_bytes;
    _Atomic size_t peak_bytes;
    _Atomic size_t mapped_bytes;
} hm_meta_totals;

extern hm_meta_totals hm_meta;

#define HM_POOL_INIT(nm, size, chunk) { .name = (nm), .obj_size = (((size) + 63) & ~(size_t)63), .chunk_size = (chunk) }

/* A fresh or recycled object with gen odd (not yet published); NULL with *err set when the kernel
 * refuses memory. The caller fills it and calls hm_meta_publish before making it reachable. */
void *hm_pool_alloc(hm_pool *p, int *err);
/* Retires obj (gen becomes odd); its memory may be reused by a later hm_pool_alloc of this pool. */
void hm_pool_free(hm_pool *p, void *obj);

static inline void hm_meta_publish(void *obj)
{
    hm_meta_hdr *h = (hm_meta_hdr *)obj;
    uint64_t g = atomic_load_explicit(&h->gen, memory_order_relaxed);
    /* odd -> the next even value; release: the contents are visible before the even gen is */
    atomic_store_explicit(&h->gen, (g | 1u) + 1, memory_order_release);
}

static inline uint64_t hm_meta_gen(const void *obj)
{
    return atomic_load_explicit(&((hm_meta_hdr *)obj)->gen, memory_order_acquire);
}

#endif
