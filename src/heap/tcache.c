/* tcache.c — a thread's share of a thread-safe heap (heap.h, "Locking"): the page lists it owns,
 * and a few freed large blocks it keeps.
 *
 * A thread has one cache per thread-safe heap it has used, found through a thread-local list (the
 * most recent first). Its pages are its own: it allocates from them and frees its blocks onto them
 * with no lock (page.c, and the inline paths of heap_internal.h); other threads' frees of their
 * blocks arrive in the pages' xfree. When the thread exits, its pages become the heap's (ownerless:
 * other threads adopt those with free blocks), its empty ones go to the heap's empty cache, and its
 * large blocks to the heap's cache.
 *
 * Lifetime: a cache is made on a thread's first use of a heap and linked into the heap's list (heap
 * lock). At thread exit its pages go back to the heap and it is freed; if the heap was destroyed
 * first, it only is freed, at the thread's exit or when the thread next looks through its caches
 * for one (my_cache), whichever comes first. heaps_lock orders the two: destroy marks the heap's
 * caches orphaned under it, the exit destructor gives back only caches still attached under it. Heap
 * ids tell a destroyed heap from a new one at the same address. Caches come from a pool and stay
 * caches (type-stable): a thread that read a page's home just before its owner exited may still set
 * a bit of the old cache's xpending (page.c, hm_heap_give), at worst a needless look for the cache
 * now at that address. */
#include <pthread.h>
#include <stddef.h>
#include <string.h>

#include "../os/os.h"
#include "../vmap/meta.h"
#include "heap_internal.h"

static pthread_mutex_t heaps_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_mutex_t pool_lock = PTHREAD_MUTEX_INITIALIZER;
static hm_pool cache_pool = HM_POOL_INIT("tcache", sizeof(hm_meta_hdr) + sizeof(hm_tcache), 256 * 1024);
static pthread_key_t exit_key;
static pthread_once_t key_once = PTHREAD_ONCE_INIT;
/* The end of every thread's list of caches, and the list of a thread that has none: a cache of no
 * heap (its id is odd; a thread-safe heap's fast_id is even or 0), so that the inline paths' one
 * compare (hm_heap_cached_lists) needs no test for NULL before it. Read-only: nothing writes it. */
static const hm_tcache no_cache = {.heap_id = 1};
#define NO_CACHE ((hm_tcache *)&no_cache)
_Thread_local hm_tcache *hm_thread_caches __attribute__((tls_model("initial-exec"))) = NO_CACHE;
static _Atomic uint64_t next_heap_id = 2;

/* even (heap.h, fast_id) and never 0 */
uint64_t hm_tcache_new_heap_id(void) { return atomic_fetch_add(&next_heap_id, 2); }

static bool large_flush(hm_heap *h, hm_tcache *c);

/* After thread_exit, a thread runs without caches: other libraries' thread-local destructors that run
 * after it still allocate and free (DROPIN-NOTES 5), and a cache made for them would be lost. */
static _Thread_local bool thread_gone __attribute__((tls_model("initial-exec")));

static void thread_exit(void *arg)
{
    (void)arg;
    hm_tcache *c = hm_thread_caches;
    hm_thread_caches = NO_CACHE;
    thread_gone = true;
    while (c != NO_CACHE) {
        hm_tcache *next = c->thread_next;
        pthread_mutex_lock(&heaps_lock);
        hm_heap *h = atomic_load_explicit(&c->heap, memory_order_relaxed);
        if (h && h->id == c->heap_id) { /* still attached: give the blocks and pages back, leave the list */
            hm_heap_lock(h);
            large_flush(h, c);
            hm_heap_disown(h, &c->lists);
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

/* fork (heap.h, "fork"): heaps_lock before any heap's lock, the pool lock (a leaf) after. */
void hm_tcache_fork_lock(bool outer)
{
    pthread_mutex_lock(outer ? &heaps_lock : &pool_lock);
}

void hm_tcache_fork_unlock(bool outer)
{
    pthread_mutex_unlock(outer ? &heaps_lock : &pool_lock);
}


/* This thread's cache of h, made on first use and moved to the front of the thread's list; NULL if
 * no memory for one (the caller goes locked). */
static hm_tcache *my_cache(hm_heap *h)
{
    hm_tcache *prev = NULL;
    for (hm_tcache *c = hm_thread_caches, *next; c != NO_CACHE; c = next) {
        next = c->thread_next;
        if (c->heap_id == h->id) {
            if (prev) { /* most recent first */
                prev->thread_next = c->thread_next;
                c->thread_next = hm_thread_caches;
                hm_thread_caches = c;
            }
            return c;
        }
        if (!atomic_load_explicit(&c->heap, memory_order_relaxed)) {
            /* its heap was destroyed (hm_tcache_heap_gone; it stays so): nothing refers to it any
             * more once hm_tcache_heap_gone has left the heap's list (heaps_lock), so it is freed
             * now rather than at this thread's exit */
            pthread_mutex_lock(&heaps_lock);
            pthread_mutex_unlock(&heaps_lock);
            if (prev) prev->thread_next = next;
            else hm_thread_caches = next;
            pthread_mutex_lock(&pool_lock);
            hm_pool_free(&cache_pool, (hm_meta_hdr *)c - 1);
            pthread_mutex_unlock(&pool_lock);
            continue;
        }
        prev = c;
    }
    if (thread_gone) return NULL; /* (the locked path) */
    pthread_once(&key_once, make_key);
    int err = 0;
    pthread_mutex_lock(&pool_lock);
    hm_meta_hdr *m = hm_pool_alloc(&cache_pool, &err);
    pthread_mutex_unlock(&pool_lock);
    if (!m) return NULL;
    hm_tcache *c = (hm_tcache *)(m + 1);
    /* all but xpending, which a thread that read a page's home before its previous owner exited may
     * still be setting (page.c, hm_heap_give): an atomic store for it, so that the two never race (a
     * bit that lands after it only costs a needless look); and but the bins, which are made on first
     * use (hm_bin_make: 20 KiB a thread mostly never touches) */
    size_t xp = offsetof(hm_tcache, lists.xpending), after = xp + sizeof c->lists.xpending;
    size_t bins = offsetof(hm_tcache, lists.bin), past = offsetof(hm_tcache, lists) + sizeof c->lists;
    _Static_assert(offsetof(hm_pagelists, xpending) < offsetof(hm_pagelists, bin) &&
                       offsetof(hm_pagelists, bin) + sizeof(((hm_pagelists *)0)->bin) == sizeof(hm_pagelists),
                   "the bins end the page lists, after xpending");
    memset(c, 0, xp);
    atomic_store_explicit(&c->lists.xpending, 0, memory_order_relaxed);
    memset((char *)c + after, 0, bins - after);
    memset((char *)c + past, 0, sizeof *c - past);
    atomic_flag_clear_explicit(&c->large_lock, memory_order_relaxed);
    c->lists.owner = hm_self();
    hm_pagelists_init_bins(&c->lists);
    atomic_store_explicit(&c->heap, h, memory_order_relaxed);
    c->heap_id = h->id;
    hm_heap_lock(h);
    c->next = h->caches;
    h->caches = c;
    hm_heap_unlock(h);
    c->thread_next = hm_thread_caches;
    hm_thread_caches = c;
    pthread_setspecific(exit_key, c); /* non-NULL: the destructor runs at this thread's exit */
    return c;
}

hm_pagelists *hm_tcache_lists(hm_heap *h)
{
    hm_tcache *c = my_cache(h);
    return c ? &c->lists : NULL;
}

void hm_tcache_binned(hm_heap *h, uint64_t *blocks, uint64_t *bytes)
{
    for (hm_tcache *c = h->caches; c; c = c->next) hm_heap_binned(&c->lists, blocks, bytes);
}

uint64_t hm_tcache_large_cached(hm_heap *h)
{
    uint64_t n = 0;
    for (hm_tcache *c = h->caches; c; c = c->next) n += atomic_load_explicit(&c->large_bytes, memory_order_relaxed);
    return n;
}

static inline void large_count(hm_tcache *c, int64_t d)
{
    atomic_store_explicit(&c->large_bytes, atomic_load_explicit(&c->large_bytes, memory_order_relaxed) + (uint64_t)d,
                          memory_order_relaxed);
}

static void large_lock(hm_tcache *c)
{
    while (atomic_flag_test_and_set_explicit(&c->large_lock, memory_order_acquire)) hm_os_yield();
}
static void large_unlock(hm_tcache *c) { atomic_flag_clear_explicit(&c->large_lock, memory_order_release); }

bool hm_tcache_large_take(hm_heap *h, uint64_t bytes, bool grow, hm_lblock *out)
{
    hm_tcache *c = hm_thread_caches;
    if (c->heap_id != h->id) return false;
    large_lock(c);
    unsigned best = hm_lblock_fit(c->large, c->nlarge, bytes, grow);
    bool found = best < c->nlarge;
    if (found) {
        *out = c->large[best];
        memmove(&c->large[best], &c->large[best + 1], (c->nlarge - best - 1) * sizeof c->large[0]); /* oldest first */
        c->nlarge--;
        large_count(c, -(int64_t)out->size);
    }
    large_unlock(c);
    if (found) ((uint64_t *)out->base)[1] = 0; /* (its freed tag; this thread's own now, no lock) */
    return found;
}

static inline bool large_full(hm_tcache *c, uint64_t size)
{
    return c->nlarge == HM_TCACHE_LARGE || atomic_load_explicit(&c->large_bytes, memory_order_relaxed) + size > HM_TCACHE_LARGE_BYTES;
}

/* The oldest block was kept longer than an empty page would be (heap.h, hm_lblock.freed_ms). */
static inline bool large_old(const hm_tcache *c, uint64_t now) { return c->nlarge && hm_lblock_aged(&c->large[0], now); }

bool hm_tcache_large_put(hm_heap *h, hm_lblock blk)
{
    uint64_t size = blk.size;
    if (size > HM_TCACHE_LARGE_MAX || !hm_heap_may_keep(h)) return false;
    hm_tcache *c = my_cache(h);
    if (!c) return false;
    uint64_t now = hm_heap_now_ms();
    if (!blk.freed_ms) blk.freed_ms = now;
    large_lock(c);
    bool evict = large_full(c, size) || large_old(c, now);
    if (evict) { /* the oldest go to the heap (lock order: the heap's, then the cache's) */
        large_unlock(c);
        hm_heap_lock(h);
        large_lock(c);
    }
    while (c->nlarge && (large_full(c, size) || large_old(c, now))) { /* (an old one is released there) */
        hm_heap_large_return(h, c->large[0]);
        large_count(c, -(int64_t)c->large[0].size);
        memmove(&c->large[0], &c->large[1], (c->nlarge - 1) * sizeof c->large[0]);
        c->nlarge--;
    }
    bool kept = !large_full(c, size);
    if (kept) {
        c->large[c->nlarge] = blk;
        c->nlarge++;
        large_count(c, (int64_t)size);
    }
    large_unlock(c);
    if (evict) hm_heap_unlock(h);
    return kept;
}

/* Gives c's large blocks of h back to the heap (heap lock held); true if there were any. */
static bool large_flush(hm_heap *h, hm_tcache *c)
{
    large_lock(c);
    bool any = c->nlarge != 0;
    for (unsigned i = 0; i < c->nlarge; i++) hm_heap_large_return(h, c->large[i]);
    c->nlarge = 0;
    atomic_store_explicit(&c->large_bytes, 0, memory_order_relaxed);
    large_unlock(c);
    return any;
}

/* This thread's cache of h wherever it stands in its list, NULL if none (none is made). */
static hm_tcache *find_cache(const hm_heap *h)
{
    hm_tcache *c = hm_thread_caches;
    while (c != NO_CACHE && c->heap_id != h->id) c = c->thread_next;
    return c != NO_CACHE ? c : NULL;
}

hm_pagelists *hm_tcache_find_lists(hm_heap *h)
{
    hm_tcache *c = find_cache(h);
    return c ? &c->lists : NULL;
}

void hm_tcache_large_drain(hm_heap *h)
{
    hm_tcache *c = find_cache(h);
    if (!c) return;
    hm_heap_lock(h);
    (void)large_flush(h, c);
    hm_heap_unlock(h);
}

bool hm_tcache_large_drain_all(hm_heap *h)
{
    bool any = false;
    for (hm_tcache *c = h->caches; c; c = c->next) any |= large_flush(h, c);
    return any;
}

void hm_tcache_heap_gone(hm_heap *h)
{
    pthread_mutex_lock(&heaps_lock);
    for (hm_tcache *c = h->caches; c; c = c->next) atomic_store_explicit(&c->heap, NULL, memory_order_relaxed);
    h->caches = NULL;
    h->id = 0;
    pthread_mutex_unlock(&heaps_lock);
}
