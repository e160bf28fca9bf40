/* meta.c — the type-stable pools of meta.h. */
#include "meta.h"

#include "../os/os.h"

hm_meta_totals hm_meta;

#define META_BIG_CHUNK ((size_t)2 << 20)

void *hm_pool_alloc(hm_pool *p, int *err)
{
    hm_meta_hdr *h = p->free_head;
    if (h) {
        p->free_head = (hm_meta_hdr *)atomic_load_explicit(&h->next, memory_order_relaxed);
        if (!p->free_head) p->free_tail = NULL;
    } else {
        if ((size_t)(p->bump_end - p->bump) < p->obj_size) {
            /* Chunks double from chunk_size up to 2 MiB as the pool grows, so a small process maps
             * little and a big map gets huge-page-sized chunks (fewer TLB misses on queries). */
            size_t chunk = p->chunk_size << (p->mapped ? p->nchunks < 5 ? p->nchunks : 5 : 0);
            if (chunk > META_BIG_CHUNK) chunk = META_BIG_CHUNK;
            if (chunk < p->chunk_size) chunk = p->chunk_size;
            if (chunk < p->obj_size) chunk = p->obj_size;
            chunk = (chunk + 4095) & ~(size_t)4095;
            void *mem;
            int e = hm_os_map_meta(chunk, &mem);
            if (e) {
                *err = e;
                return NULL;
            }
            p->bump = mem;
            p->bump_end = (char *)mem + chunk;
            p->mapped += chunk;
            p->nchunks++;
            atomic_fetch_add_explicit(&hm_meta.mapped_bytes, chunk, memory_order_relaxed);
        }
        h = (hm_meta_hdr *)p->bump;
        p->bump += p->obj_size;
        atomic_store_explicit(&h->gen, 1, memory_order_relaxed); /* fresh: odd, unpublished */
    }
    atomic_store_explicit(&h->next, 0, memory_order_relaxed);
    p->live++;
    size_t now = atomic_fetch_add_explicit(&hm_meta.live_bytes, p->obj_size, memory_order_relaxed) + p->obj_size;
    size_t peak = atomic_load_explicit(&hm_meta.peak_bytes, memory_order_relaxed);
    while (now > peak && !atomic_compare_exchange_weak_explicit(&hm_meta.peak_bytes, &peak, now, memory_order_relaxed,
                                                                memory_order_relaxed)) {
    }
    return h;
}

void hm_pool_free(hm_pool *p, void *obj)
{
    hm_meta_hdr *h = obj;
    uint64_t g = atomic_load_explicit(&h->gen, memory_order_relaxed);
    /* Make gen odd before anything else changes, so readers holding a stale pointer retry. */
    atomic_store_explicit(&h->gen, (g & 1u) ? g + 2 : g + 1, memory_order_release);
    atomic_thread_fence(memory_order_seq_cst);
    atomic_store_explicit(&h->next, 0, memory_order_relaxed);
    if (p->free_tail) atomic_store_explicit(&p->free_tail->next, (uintptr_t)h, memory_order_relaxed);
    else p->free_head = h;
    p->free_tail = h;
    p->live--;
    atomic_fetch_sub_explicit(&hm_meta.live_bytes, p->obj_size, memory_order_relaxed);
}
