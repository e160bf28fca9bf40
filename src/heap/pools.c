/* pools.c — where a heap's own objects come from (heap records, debug-site tables, view records): the
 * map's metadata pools (vmap/meta.h), never malloc, under one leaf lock; and the heap lock. */
#include "heap_internal.h"
#include "track.h"

bool hm_heap_untracked;

static pthread_mutex_t pool_lock = PTHREAD_MUTEX_INITIALIZER; /* the three pools below (a leaf) */
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

static void pool_put(hm_pool *p, void *o)
{
    pthread_mutex_lock(&pool_lock);
    hm_pool_free(p, (hm_meta_hdr *)o - 1);
    pthread_mutex_unlock(&pool_lock);
}

hm_heap *hm_heap_obj_get(void)
{
    char *o = pool_get(&heap_pool);
    return o ? (hm_heap *)(o - sizeof(hm_meta_hdr) + HEAP_AT) : NULL;
}
void hm_heap_obj_put(hm_heap *h) { pool_put(&heap_pool, (char *)h - HEAP_AT + sizeof(hm_meta_hdr)); }
hm_site *hm_heap_sites_get(void) { return pool_get(&site_pool); }
void hm_heap_sites_put(hm_site *s) { pool_put(&site_pool, s); }
hm_view *hm_heap_view_get(void) { return pool_get(&view_pool); }
void hm_heap_view_put(hm_view *v) { pool_put(&view_pool, v); }

void hm_heap_pools_fork_lock(bool lock)
{
    if (lock) pthread_mutex_lock(&pool_lock);
    else pthread_mutex_unlock(&pool_lock);
}

void hm_heap_lock(hm_heap *h)
{
    if (h->flags & HM_HEAP_THREADSAFE) pthread_mutex_lock(&h->lock);
}
void hm_heap_unlock(hm_heap *h)
{
    if (h->flags & HM_HEAP_THREADSAFE) pthread_mutex_unlock(&h->lock);
}
