/* tcache.c — per-thread caches of free blocks for thread-safe heaps (heap.h, "Locking").
 *
 * A thread has one cache per thread-safe heap it has used, found through a thread-local list (the
 * most recent first). A cache holds up to cap(cls) free blocks per size class: HM_TCACHE_N small
 * ones, fewer big ones (HM_TCACHE_BYTES of them at most), so that caches pin little memory. Allocation pops
 * from the calling thread's bin; free pushes onto it, whichever thread allocated the block. An empty
 * bin is refilled, a full one flushed, half its capacity at a time under the heap's lock.
 *
 * A cached block is free for the program but live for the heap: its bit stays set and its second
 * word holds tag(b) = key ^ b ^ CACHED_MAGIC, cleared when the block is handed out again. Free of a
 * block whose second word holds its tag is a double free. (A live block whose data happens to hold
 * exactly that 64-bit secret-derived value would be refused: a chance of 2^-64.)
 *
 * Counters: each cache counts the blocks and bytes it holds in atomics that only its thread writes
 * (load and store, no read-modify-write), so statistics can sum them from any thread.
 *
 * Lifetime: a cache is made on a thread's first use of a heap and linked into the heap's list (heap
 * lock). At thread exit its blocks go back to the heap and it is freed; if the heap was destroyed
 * first, it only is freed. heaps_lock orders the two: destroy marks the heap's caches orphaned under
 * it, the exit destructor flushes only caches still attached under it. Heap ids tell a destroyed
 * heap from a new one at the same address. */
#include <pthread.h>
#include <string.h>

#include "../vmap/meta.h"
#include "heap_internal.h"

#define HM_TCACHE_N 128
#define HM_TCACHE_BYTES ((size_t)128 << 10)

/* Blocks a bin of class cls holds, and moves at a time. */
static inline uint32_t cap(size_t bs)
{
    size_t n = HM_TCACHE_BYTES / bs;
    return n > HM_TCACHE_N ? HM_TCACHE_N : n < 4 ? 4 : (uint32_t)n;
}
static inline uint32_t batch(size_t bs) { return cap(bs) / 2; }
#define CACHED_MAGIC 0x7463616368656421ull

typedef struct hm_tcache_bin {
    uint32_t n;
    uintptr_t slot[HM_TCACHE_N];
} hm_tcache_bin;

typedef struct hm_tcache {
    _Atomic(hm_heap *) heap;          /* NULL once the heap is destroyed (heaps_lock) */
    uint64_t heap_id;
    struct hm_tcache *next;           /* in the heap's list (heap lock) */
    struct hm_tcache *thread_next;    /* in its thread's list (its thread only) */
    _Atomic uint64_t cached_blocks;   /* written by its thread only */
    _Atomic uint64_t cached_bytes;
    hm_tcache_bin bin[HM_NCLASS];
} hm_tcache;

static pthread_mutex_t heaps_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_mutex_t pool_lock = PTHREAD_MUTEX_INITIALIZER;
static hm_pool cache_pool = HM_POOL_INIT("tcache", sizeof(hm_meta_hdr) + sizeof(hm_tcache), 256 * 1024);
static pthread_key_t exit_key;
static pthread_once_t key_once = PTHREAD_ONCE_INIT;
static _Thread_local hm_tcache *thread_caches;
static _Atomic uint64_t next_heap_id = 1;

uint64_t hm_tcache_new_heap_id(void) { return atomic_fetch_add(&next_heap_id, 1); }

static inline uint64_t tag(const hm_heap *h, uintptr_t b) { return h->key ^ b ^ CACHED_MAGIC; }
static inline _Atomic uint64_t *word1(uintptr_t b) { return (_Atomic uint64_t *)(b + 8); }

static inline void count(hm_tcache *c, int64_t blocks, int64_t bytes)
{
    atomic_store_explicit(&c->cached_blocks, atomic_load_explicit(&c->cached_blocks, memory_order_relaxed) + (uint64_t)blocks,
                          memory_order_relaxed);
    atomic_store_explicit(&c->cached_bytes, atomic_load_explicit(&c->cached_bytes, memory_order_relaxed) + (uint64_t)bytes,
                          memory_order_relaxed);
}

/* Gives n blocks of bin back to the heap (lock held). */
static void flush(hm_heap *h, hm_tcache *c, unsigned cls, uint32_t n)
{
    hm_tcache_bin *bin = &c->bin[cls];
    size_t bs = hm_heap_class_size(cls);
    for (uint32_t k = 0; k < n; k++) {
        uintptr_t b = bin->slot[k];
        atomic_store_explicit(word1(b), 0, memory_order_relaxed);
        hm_segment *s = (hm_segment *)(b & ~(uintptr_t)(HM_SEG_SIZE - 1));
        size_t idx = (b - (uintptr_t)s) / HM_HPAGE_SIZE;
        uintptr_t base = (uintptr_t)s + idx * HM_HPAGE_SIZE;
        hm_heap_small_free(h, &s->page[idx], (uint32_t)((b - base) / bs), b);
    }
    memmove(bin->slot, bin->slot + n, (bin->n - n) * sizeof bin->slot[0]);
    bin->n -= n;
    count(c, -(int64_t)n, -(int64_t)(n * bs));
}

static void thread_exit(void *arg)
{
    (void)arg;
    hm_tcache *c = thread_caches;
    thread_caches = NULL;
    while (c) {
        hm_tcache *next = c->thread_next;
        pthread_mutex_lock(&heaps_lock);
        hm_heap *h = atomic_load_explicit(&c->heap, memory_order_relaxed);
        if (h && h->id == c->heap_id) { /* still attached: give the blocks back, leave the list */
            hm_heap_lock(h);
            for (unsigned cls = 0; cls < HM_NCLASS; cls++) flush(h, c, cls, c->bin[cls].n);
            for (hm_tcache **p = &h->caches; *p; p = &(*p)->next)
                if (*p == c) {
                    *p = c->next;
                    break;
                }
            hm_heap_unlock(h);
        }
        pthread_mutex_unlock(&heaps_lock);
        pthread_mutex_lock(&pool_lock);
        hm_pool_free(&cache_pool, (hm_meta_hdr *)c - 1);
        pthread_mutex_unlock(&pool_lock);
        c = next;
    }
}

static void make_key(void) { (void)pthread_key_create(&exit_key, thread_exit); }

static hm_tcache *my_cache_slow(hm_heap *h);

/* The common case inline: the most recently used cache is h's. */
static inline __attribute__((always_inline)) hm_tcache *my_cache(hm_heap *h)
{
    hm_tcache *c = thread_caches;
    if (c && atomic_load_explicit(&c->heap, memory_order_relaxed) == h && c->heap_id == h->id) return c;
    return my_cache_slow(h);
}

/* This thread's cache of h, made on first use; NULL if no memory for one (the caller goes locked). */
static hm_tcache *my_cache_slow(hm_heap *h)
{
    hm_tcache *prev = NULL;
    for (hm_tcache *c = thread_caches; c; prev = c, c = c->thread_next) {
        if (atomic_load_explicit(&c->heap, memory_order_relaxed) == h && c->heap_id == h->id) {
            if (prev) { /* most recent first */
                prev->thread_next = c->thread_next;
                c->thread_next = thread_caches;
                thread_caches = c;
            }
            return c;
        }
    }
    pthread_once(&key_once, make_key);
    int err = 0;
    pthread_mutex_lock(&pool_lock);
    hm_meta_hdr *m = hm_pool_alloc(&cache_pool, &err);
    pthread_mutex_unlock(&pool_lock);
    if (!m) return NULL;
    hm_tcache *c = (hm_tcache *)(m + 1);
    memset(c, 0, sizeof *c);
    atomic_store_explicit(&c->heap, h, memory_order_relaxed);
    c->heap_id = h->id;
    hm_heap_lock(h);
    c->next = h->caches;
    h->caches = c;
    hm_heap_unlock(h);
    c->thread_next = thread_caches;
    thread_caches = c;
    pthread_setspecific(exit_key, c); /* non-NULL: the destructor runs at this thread's exit */
    return c;
}

hm_status hm_tcache_alloc(hm_heap *h, unsigned cls, unsigned level, uintptr_t *out)
{
    hm_tcache *c = my_cache(h);
    hm_status st = HM_OK;
    if (!c) { /* no cache: the locked path */
        hm_heap_lock(h);
        st = hm_heap_small_alloc(h, cls, level, out);
        hm_heap_unlock(h);
        return st;
    }
    hm_tcache_bin *bin = &c->bin[cls];
    size_t bs = hm_heap_class_size(cls);
    if (!bin->n) { /* refill a batch, admitted at this request's level */
        uintptr_t b;
        hm_heap_lock(h);
        uint32_t want = batch(bs);
        while (bin->n < want && (st = hm_heap_small_alloc(h, cls, level, &b)) == HM_OK) {
            atomic_store_explicit(word1(b), tag(h, b), memory_order_relaxed);
            bin->slot[bin->n++] = b;
        }
        hm_heap_unlock(h);
        if (!bin->n) return st;
        count(c, bin->n, (int64_t)(bin->n * bs));
    }
    uintptr_t b = bin->slot[--bin->n];
    atomic_store_explicit(word1(b), 0, memory_order_relaxed);
    count(c, -1, -(int64_t)bs);
    *out = b;
    return HM_OK;
}

uintptr_t hm_tcache_pop(hm_heap *h, unsigned cls)
{
    hm_tcache *c = thread_caches;
    if (!c || atomic_load_explicit(&c->heap, memory_order_relaxed) != h || c->heap_id != h->id || !c->bin[cls].n)
        return 0;
    hm_tcache_bin *bin = &c->bin[cls];
    uintptr_t b = bin->slot[--bin->n];
    atomic_store_explicit(word1(b), 0, memory_order_relaxed);
    count(c, -1, -(int64_t)hm_heap_class_size(cls));
    return b;
}

hm_status hm_tcache_free(hm_heap *h, const block_ref *r)
{
    return hm_tcache_push(h, r->page, r->index, r->block, r->size);
}

hm_status hm_tcache_push(hm_heap *h, hm_hpage *pg, uint32_t index, uintptr_t b, uint64_t size)
{
    if (atomic_load_explicit(word1(b), memory_order_relaxed) == tag(h, b)) return HM_E_HOST_INVALIDOPERATION;
    hm_tcache *c = my_cache(h);
    unsigned cls = pg->cls;
    if (!c) {
        hm_heap_lock(h);
        hm_heap_small_free(h, pg, index, b);
        hm_heap_unlock(h);
        return HM_OK;
    }
    hm_tcache_bin *bin = &c->bin[cls];
    if (bin->n >= cap(size)) {
        hm_heap_lock(h);
        flush(h, c, cls, batch(size));
        hm_heap_unlock(h);
    }
    atomic_store_explicit(word1(b), tag(h, b), memory_order_relaxed);
    bin->slot[bin->n++] = b;
    count(c, 1, (int64_t)size);
    return HM_OK;
}

bool hm_tcache_holds(const hm_heap *h, uintptr_t b)
{
    return atomic_load_explicit(word1(b), memory_order_relaxed) == tag(h, b);
}

void hm_tcache_cached(hm_heap *h, uint64_t *blocks, uint64_t *bytes)
{
    *blocks = *bytes = 0;
    for (hm_tcache *c = h->caches; c; c = c->next) {
        *blocks += atomic_load_explicit(&c->cached_blocks, memory_order_relaxed);
        *bytes += atomic_load_explicit(&c->cached_bytes, memory_order_relaxed);
    }
}

void hm_tcache_heap_gone(hm_heap *h)
{
    pthread_mutex_lock(&heaps_lock);
    for (hm_tcache *c = h->caches; c; c = c->next) atomic_store_explicit(&c->heap, NULL, memory_order_relaxed);
    h->caches = NULL;
    h->id = 0;
    pthread_mutex_unlock(&heaps_lock);
}
