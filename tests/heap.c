/* heap.c — IHostMalloc heaps (SPEC 4, 3.2, 3.3): every hm_heap_* entry point and error, size classes, large, aligned, calloc, realloc, exact Free validation, debug sites and leak reports, destruction, decommit, budget levels, waits, executable heaps. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#include <hostmem/clrhost.h>

#include "heap/heap_internal.h"
#include "heap/track.h"
#include "testutil.h"
#include "heap_testutil.h"
#include "heap_pages.h"
#include "vmap/vmap.h"

#define KiB ((size_t)1024)
#define MiB ((size_t)1 << 20)
#define PAGE ((size_t)4096)

/* ---- helpers ---------------------------------------------------------------------------------- */

static void *alloc_ok(hm_heap *h, size_t size, hm_level level)
{
    void *p = NULL;
    hm_status st = hm_heap_alloc(h, size, level, &p);
    if (st != HM_OK) fail_msg("hm_heap_alloc(%zu, level %d) = %#x: %s", size, (int)level, (unsigned)st, hm_last_detail());
    assert_non_null(p);
    assert_int_equal((uintptr_t)p % 16, 0); /* SPEC 4: 16-byte aligned */
    return p;
}

static void free_ok(hm_heap *h, void *p)
{
    hm_status st = hm_heap_free(h, p);
    if (st != HM_OK) fail_msg("hm_heap_free(%p) = %#x: %s", p, (unsigned)st, hm_last_detail());
}

static unsigned char pat(uint32_t seed, size_t i) { return (unsigned char)(seed * 131u + i * 7u + (i >> 8)); }

static void fill(void *p, size_t n, uint32_t seed)
{
    unsigned char *c = p;
    for (size_t i = 0; i < n; i++) c[i] = pat(seed, i);
}

static void check_fill(const void *p, size_t n, uint32_t seed)
{
    const unsigned char *c = p;
    for (size_t i = 0; i < n; i++)
        if (c[i] != pat(seed, i)) fail_msg("block %p byte %zu of %zu: %#x, expected %#x", p, i, n, c[i], pat(seed, i));
}

/* (b's committed pages may be fewer: a refused request gives the empty pages back first) */
static bool stats_equal(hm_heap_stats a, hm_heap_stats b)
{
    return a.live_bytes == b.live_bytes && a.live_blocks == b.live_blocks && a.large_bytes == b.large_bytes &&
           a.segments == b.segments && b.committed_pages <= a.committed_pages;
}

static void assert_stats_equal(hm_heap_stats a, hm_heap_stats b, const char *what)
{
    if (!stats_equal(a, b))
        fail_msg("%s: heap stats changed: live %" PRIu64 "/%" PRIu64 " -> %" PRIu64 "/%" PRIu64 ", large %" PRIu64
                 " -> %" PRIu64 ", segments %" PRIu64 " -> %" PRIu64 ", pages %" PRIu64 " -> %" PRIu64,
                 what, a.live_bytes, a.live_blocks, b.live_bytes, b.live_blocks, a.large_bytes, b.large_bytes,
                 a.segments, b.segments, a.committed_pages, b.committed_pages);
}

/* A memory refusal as SPEC 1.1 / 3.2 allow it: E_OUTOFMEMORY in COM terms. */
static void assert_refusal(hm_status st, const char *what)
{
    if (st != HM_E_OUTOFMEMORY && st != HM_E_COMMITMENT_LIMIT && st != HM_E_NOT_ENOUGH_MEMORY)
        fail_msg("%s = %#x (%s): not a memory refusal", what, (unsigned)st, hm_status_name(st));
    assert_int_equal(hm_status_hresult(st), HM_E_OUTOFMEMORY);
}

/* The size-class boundaries of heap.h: 16..128 step 16, then four per doubling to 512 KiB. */
static size_t boundaries(size_t *out)
{
    size_t n = 0;
    for (size_t s = 16; s <= 128; s += 16) out[n++] = s;
    for (size_t b = 128; b < HM_MEDIUM_MAX; b *= 2)
        for (size_t k = 1; k <= 4; k++) out[n++] = b + k * (b / 4);
    return n;
}

/* ---- create ----------------------------------------------------------------------------------- */

/* SPEC 1.2, 4: CreateMalloc flags; unknown bits E_INVALIDARG; NULL out E_POINTER; shut down. */
static void test_create(void **state)
{
    (void)state;
    hm_manager *m = make("limit=64M");
    uint64_t c0 = tu_charge(m);
    for (uint32_t f = 0; f <= 3; f++) {
        hm_heap *h = mk_heap(m, f);
        void *p = alloc_ok(h, 100, HM_LEVEL_TASK);
        memset(p, 0x5a, 100);
        assert_true(hm_heap_usable_size(h, p) >= 100);
        free_ok(h, p);
        destroy_heap(h);
        assert_int_equal(tu_charge(m), c0);
    }
    const uint32_t bad[] = {4, 8, 0x10, 0x80000000u, 0xFFFFFFFFu, 0x5};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        hm_heap *h = (hm_heap *)1;
        assert_int_equal(hm_heap_create(m, bad[i], &h), HM_E_INVALIDARG); /* SPEC 1.2 */
        assert_null(h);
    }
    assert_int_equal(hm_heap_create(m, 0, NULL), HM_E_POINTER);
    assert_int_equal(hm_heap_create(m, HM_HEAP_THREADSAFE, NULL), HM_E_POINTER);

    /* the process-default manager (NULL) */
    hm_heap *hd = mk_heap(NULL, HM_HEAP_THREADSAFE);
    void *p = alloc_ok(hd, 10, HM_LEVEL_PROCESS);
    free_ok(hd, p);
    destroy_heap(hd);

    /* NULL heaps and NULL outs */
    void *q = (void *)1;
    assert_int_equal(hm_heap_alloc(NULL, 1, HM_LEVEL_TASK, &q), HM_E_POINTER);
    hm_heap *h = mk_heap(m, 0);
    assert_int_equal(hm_heap_alloc(h, 1, HM_LEVEL_TASK, NULL), HM_E_POINTER);
    assert_int_equal(hm_heap_alloc_debug(h, 1, HM_LEVEL_TASK, "x.c", 1, NULL), HM_E_POINTER);
    assert_int_equal(hm_heap_alloc_aligned(h, 1, 64, HM_LEVEL_TASK, NULL), HM_E_POINTER);
    assert_int_equal(hm_heap_calloc(h, 1, 1, HM_LEVEL_TASK, NULL), HM_E_POINTER);
    assert_int_equal(hm_heap_realloc(h, NULL, 1, HM_LEVEL_TASK, NULL), HM_E_POINTER);
    assert_int_equal(hm_heap_free(NULL, NULL), HM_E_POINTER);
    assert_int_equal(hm_heap_destroy(NULL), HM_E_POINTER);
    assert_int_equal(hm_heap_get_stats(NULL, &(hm_heap_stats){0}), HM_E_POINTER);
    assert_int_equal(hm_heap_get_stats(h, NULL), HM_E_POINTER);
    assert_int_equal(hm_heap_sites(h, NULL, NULL), HM_E_POINTER);
    assert_int_equal(hm_heap_usable_size(NULL, &q), 0);
    assert_int_equal(hm_heap_usable_size(h, NULL), 0);
    assert_int_equal(hm_heap_free(h, NULL), HM_OK); /* SPEC 1.1: Free(NULL) is S_OK */
    destroy_heap(h);
    assert_int_equal(tu_charge(m), c0);

    /* SPEC 3.4: a shut-down manager makes no heaps, and its heaps refuse calls */
    hm_heap *live = mk_heap(m, HM_HEAP_THREADSAFE);
    void *lp = alloc_ok(live, 64, HM_LEVEL_TASK);
    hm_manager *other = make("limit=64M"); /* another manager stopping changes nothing here */
    assert_int_equal(hm_manager_shutdown(other), HM_OK);
    free_ok(live, alloc_ok(live, 64, HM_LEVEL_TASK));
    /* the slow path looked at m and remembered it running: the fast paths serve again (a heap they
     * may not serve, a tracked one, keeps 0); the stop had cleared it */
    uint64_t fid = atomic_load(&live->fast_id);
    if (live->fast) assert_int_equal(fid, live->id);
    else assert_int_equal(fid, 0);
    hm_manager *third = make("limit=64M"); /* any manager's stop clears every heap's fast_id */
    assert_int_equal(hm_manager_shutdown(third), HM_OK);
    assert_int_equal(atomic_load(&live->fast_id), 0);
    destroy_mgr(third);
    free_ok(live, alloc_ok(live, 64, HM_LEVEL_TASK));
    assert_int_equal(atomic_load(&live->fast_id), live->fast ? live->id : 0);
    destroy_mgr(other);
    free_ok(live, alloc_ok(live, 100, HM_LEVEL_TASK));
    assert_int_equal(hm_manager_shutdown(m), HM_OK);
    hm_heap *x = (hm_heap *)1;
    assert_int_equal(hm_heap_create(m, 0, &x), HM_E_HOST_CLRNOTAVAILABLE);
    assert_null(x);
    assert_int_equal(hm_heap_create(m, HM_HEAP_THREADSAFE | HM_HEAP_EXECUTABLE, &x), HM_E_HOST_CLRNOTAVAILABLE);
    assert_null(x);
    q = (void *)1;
    assert_int_equal(hm_heap_alloc(live, 64, HM_LEVEL_PROCESS, &q), HM_E_HOST_CLRNOTAVAILABLE);
    assert_null(q);
    q = (void *)1;
    assert_int_equal(hm_heap_alloc_debug(live, 64, HM_LEVEL_PROCESS, "a.c", 1, &q), HM_E_HOST_CLRNOTAVAILABLE);
    assert_null(q);
    assert_int_equal(hm_heap_free(live, lp), HM_E_HOST_CLRNOTAVAILABLE);
    (void)hm_heap_destroy(live); /* after shutdown: whatever it says, no crash */
    destroy_mgr(m);
}

/* A request refused anywhere on the manager takes back what a thread-safe heap keeps committed for
 * reuse (its freed large blocks, its empty pages) before the refusal stands: a VirtualAlloc that
 * fits only without the heap's cache succeeds, and the cache is empty after it. A heap without
 * HM_HEAP_THREADSAFE is its caller's alone: its cache stays, and the request is refused. */
static void test_refusal_takes_back_cached_blocks(void **state)
{
    (void)state;
    for (int ts = 1; ts >= 0; ts--) {
        hm_manager *m = make("limit=64M");
        hm_heap *h = mk_heap(m, ts ? HM_HEAP_THREADSAFE : 0);
        void *p[3];
        for (int i = 0; i < 3; i++) p[i] = alloc_ok(h, 2 << 20, HM_LEVEL_TASK);
        for (int i = 0; i < 3; i++) free_ok(h, p[i]);
        hm_heap_stats s = hstats(h);
        if (s.cached_large_bytes < (6u << 20)) fail_msg("%s heap: %" PRIu64 " bytes of freed large blocks cached, not 6 MiB",
                                                         ts ? "thread-safe" : "single-threaded", s.cached_large_bytes);
        uint64_t charge = tu_charge(m), room = ((uint64_t)64 << 20) - charge;
        size_t want = (size_t)((room + s.cached_large_bytes - ((uint64_t)1 << 20)) & ~(uint64_t)0xffff); /* > room */
        assert_true(want > room);
        void *v = NULL;
        hm_status st = hm_virtual_alloc(m, NULL, want, HM_MEM_RESERVE | HM_MEM_COMMIT, HM_PAGE_READWRITE, &v);
        if (ts) {
            if (st != HM_OK) fail_msg("a commit that fits once the heap's cache goes: %#x: %s", (unsigned)st, hm_last_detail());
            assert_int_equal(hstats(h).cached_large_bytes, 0);
            assert_int_equal(hm_virtual_free(m, v, 0, HM_MEM_RELEASE), HM_OK);
            /* a commit that lacks less than a block takes only the oldest block: the newer ones stay */
            for (int i = 0; i < 3; i++) p[i] = alloc_ok(h, 2 << 20, HM_LEVEL_TASK);
            for (int i = 0; i < 3; i++) free_ok(h, p[i]);
            s = hstats(h);
            room = ((uint64_t)64 << 20) - tu_charge(m);
            want = (size_t)((room + ((uint64_t)1 << 20)) & ~(uint64_t)0xffff);
            st = hm_virtual_alloc(m, NULL, want, HM_MEM_RESERVE | HM_MEM_COMMIT, HM_PAGE_READWRITE, &v);
            if (st != HM_OK) fail_msg("a commit that fits once a cached block goes: %#x: %s", (unsigned)st, hm_last_detail());
            uint64_t left = hstats(h).cached_large_bytes;
            if (left == 0 || left >= s.cached_large_bytes)
                fail_msg("%" PRIu64 " bytes cached after a commit that lacked 1 MiB (%" PRIu64 " before): not only what it needed went",
                         left, s.cached_large_bytes);
            assert_int_equal(hm_virtual_free(m, v, 0, HM_MEM_RELEASE), HM_OK);
        } else {
            assert_int_equal(st, HM_E_COMMITMENT_LIMIT);
            assert_int_equal(hstats(h).cached_large_bytes, s.cached_large_bytes);
        }
        check_books();
        destroy_heap(h);
        assert_int_equal(tu_charge(m), 0);
        destroy_mgr(m);
    }
}

/* ---- alloc ------------------------------------------------------------------------------------ */

/* SPEC 4: size 0 gives a unique minimal block; size 1 works. */
static void test_alloc_zero_one(void **state)
{
    (void)state;
    hm_manager *m = make("limit=64M");
    hm_heap *h = mk_heap(m, HM_HEAP_THREADSAFE);
    enum { N = 300 };
    void *z[N];
    for (int i = 0; i < N; i++) {
        z[i] = alloc_ok(h, 0, HM_LEVEL_TASK);
        assert_true(hm_heap_usable_size(h, z[i]) > 0); /* a live block of h */
        for (int j = 0; j < i; j++) assert_ptr_not_equal(z[i], z[j]);
    }
    hm_heap_stats s = hstats(h);
    assert_int_equal(s.live_blocks, N);
    void *one = alloc_ok(h, 1, HM_LEVEL_TASK);
    assert_true(hm_heap_usable_size(h, one) >= 1);
    *(volatile char *)one = 'x';
    for (int i = 0; i < N; i++) {
        if (one == z[i]) fail_msg("size-1 block %p equals a live size-0 block", one);
        free_ok(h, z[i]);
    }
    assert_int_equal(*(volatile char *)one, 'x');
    free_ok(h, one);
    assert_int_equal(hstats(h).live_blocks, 0);
    assert_int_equal(hstats(h).live_bytes, 0);
    destroy_heap(h);
    destroy_mgr(m);
}

/* SPEC 4 + heap.h size classes: s-1, s, s+1 for every boundary: aligned, usable >= request, the
 * whole usable size writable and kept across many other allocations. */
/* The reciprocal that turns a page offset into a block index (heap_internal.h) is exact for every
 * class and every offset of a page, and the class table matches the class of its own size. */
static void test_block_index(void **state)
{
    (void)state;
    for (unsigned cls = 0; cls < HM_NCLASS; cls++) {
        uint32_t bs = (uint32_t)hm_heap_class_size(cls), inv = hm_heap_inverse(bs);
        assert_int_equal(hm_heap_class_of(bs), cls);
        assert_int_equal(hm_heap_class_of(bs + 1), cls + 1 < HM_NCLASS ? cls + 1 : hm_heap_class_of(bs + 1));
        /* a medium class's span holds whole blocks exactly (heap.h) */
        assert_int_equal(hm_heap_class_span[cls] * HM_HPAGE_SIZE % bs, bs > HM_SMALL_MAX ? 0 : HM_HPAGE_SIZE % bs);
        if (bs > HM_SMALL_MAX) continue; /* (its index is a division: hm_page_block_index) */
        for (uintptr_t off = 0; off < HM_HPAGE_SIZE; off++)
            if (hm_heap_block_index(off, inv) != off / bs) fail_msg("class %u (%u B): offset %lu", cls, bs, (unsigned long)off);
    }
    /* every small size (0 counts as 1) gets the smallest class that holds it: the table up to 1 KiB
     * and the formula above agree with the class sizes */
    for (size_t size = 0, cls = 0; size <= HM_MEDIUM_MAX; size++) {
        while (hm_heap_class_size((unsigned)cls) < (size ? size : 1)) cls++;
        if (hm_heap_class_of(size) != cls) fail_msg("size %zu: class %u, expected %zu", size, hm_heap_class_of(size), cls);
    }
    /* ... and so does each heap's copy, indexed by ceil(size / 16), that Alloc's inline path reads */
    hm_manager *m = make("limit=64M");
    for (uint32_t flags = 0; flags <= HM_HEAP_THREADSAFE; flags++) {
        hm_heap *h = mk_heap(m, flags);
        for (size_t size = 0; size <= HM_SMALL_MAX; size++)
            if (h->class_of[(size + 15) >> 4] != hm_heap_class_of(size))
                fail_msg("heap flags %u, size %zu: class_of says %u, the class is %u", flags, size, h->class_of[(size + 15) >> 4],
                         hm_heap_class_of(size));
        destroy_heap(h);
    }
    destroy_mgr(m);
}

static void test_size_classes(void **state)
{
    (void)state;
    hm_manager *m = make("limit=256M");
    hm_heap *h = mk_heap(m, 0);
    size_t b[64];
    size_t nb = boundaries(b);
    assert_int_equal(nb, HM_NCLASS); /* heap.h: 56 classes */
    assert_int_equal(b[nb - 1], HM_MEDIUM_MAX);
    typedef struct { void *p; size_t req, usable; uint32_t seed; } blk;
    blk *bl = calloc(nb * 3 + 4000, sizeof *bl);
    assert_non_null(bl);
    size_t n = 0;
    for (size_t i = 0; i < nb; i++)
        for (int d = -1; d <= 1; d++) {
            size_t req = b[i] + (size_t)d;
            void *p = alloc_ok(h, req, HM_LEVEL_TASK);
            size_t u = hm_heap_usable_size(h, p);
            if (u < req) fail_msg("usable_size(%zu-byte block) = %zu", req, u);
            if (req <= HM_MEDIUM_MAX && req > 128 && u > req + req / 4)
                fail_msg("usable_size(%zu) = %zu: more than 25%% waste (heap.h)", req, u);
            if (req > HM_MEDIUM_MAX) assert_int_equal((uintptr_t)p % PAGE, 0); /* large: page aligned */
            else if (req > HM_SMALL_MAX) assert_int_equal((uintptr_t)p % (8 * KiB), 0); /* medium: 8 KiB multiples */
            fill(p, u, (uint32_t)n);
            bl[n] = (blk){p, req, u, (uint32_t)n};
            n++;
        }
    /* many other allocations (and frees) in between */
    srand(12345);
    size_t first_other = n;
    for (int i = 0; i < 4000; i++) {
        size_t req = (size_t)rand() % 3000;
        void *p = alloc_ok(h, req, HM_LEVEL_TASK);
        size_t u = hm_heap_usable_size(h, p);
        assert_true(u >= req);
        fill(p, u, (uint32_t)n);
        bl[n] = (blk){p, req, u, (uint32_t)n};
        n++;
        if (i % 3 == 2) { /* free one of the others */
            size_t k = first_other + (size_t)rand() % (n - first_other);
            if (bl[k].p) {
                check_fill(bl[k].p, bl[k].usable, bl[k].seed);
                free_ok(h, bl[k].p);
                bl[k].p = NULL;
            }
        }
    }
    for (size_t i = 0; i < n; i++)
        if (bl[i].p) {
            for (size_t j = 0; j < i && i < first_other; j++) assert_ptr_not_equal(bl[i].p, bl[j].p);
            check_fill(bl[i].p, bl[i].usable, bl[i].seed);
        }
    assert_int_equal(heap_charge(h), tu_charge(m));
    for (size_t i = 0; i < n; i++)
        if (bl[i].p) free_ok(h, bl[i].p);
    assert_int_equal(hstats(h).live_blocks, 0);
    assert_int_equal(hstats(h).live_bytes, 0);
    assert_int_equal(heap_charge(h), tu_charge(m));
    check_books();
    free(bl);
    destroy_heap(h);
    assert_int_equal(tu_charge(m), 0);
    destroy_mgr(m);
}

/* A freed large block reserves twice its size, and at least HM_LBLOCK_ROOM, while the address-space
 * budget is unlimited: cached, in the heap's cache or in a thread's, it grows in place (committing
 * only the difference) for a larger request that no cached block holds, up to its reservation.
 * Refused growth leaves it cached and the books exact; with va.limit set, blocks reserve their size
 * only and never grow. */
static void test_large_cache_grows(void **state)
{
    (void)state;
    for (int limited = 0; limited <= 1; limited++) {
        hm_manager *m = make(limited ? "limit=256M,va.limit=1G" : "limit=256M");
        hm_heap *h = mk_heap(m, 0); /* (no thread cache: the heap's own cache alone) */
        void *a = alloc_ok(h, 2 * MiB, HM_LEVEL_TASK);
        memset(a, 7, 2 * MiB);
        free_ok(h, a);
        uint64_t c0 = tu_charge(m);
        void *b = alloc_ok(h, 3 * MiB, HM_LEVEL_TASK);
        if (!limited) {
            assert_ptr_equal(b, a); /* grown in place */
            assert_int_equal(((unsigned char *)b)[MiB], 7); /* the old pages stayed committed */
        } else {
            assert_ptr_not_equal(b, a); /* a fresh block; the 2 MiB one stays cached */
            assert_int_equal(hstats(h).cached_large_bytes, 2 * MiB);
        }
        assert_int_equal(hm_heap_usable_size(h, b), 3 * MiB);
        assert_int_equal(tu_charge(m) - c0, limited ? 3 * MiB : MiB);
        assert_int_equal(tu_charge(m), heap_charge(h));
        memset(b, 1, 3 * MiB);
        free_ok(h, b);
        check_books();
        assert_int_equal(hm_heap_trim(h), HM_OK);
        assert_int_equal(tu_charge(m), heap_charge(h));
        destroy_heap(h);
        assert_int_equal(tu_charge(m), 0);
        destroy_mgr(m);
    }
    /* a small large block grows to its reservation's floor, from the heap's cache and from a thread's
     * (HM_TCACHE_LARGE_MAX at most), but not past it */
    _Static_assert(HM_LBLOCK_ROOM == 8 * MiB && HM_TCACHE_LARGE_MAX == MiB, "the sizes below");
    for (uint32_t flags = 0; flags <= HM_HEAP_THREADSAFE; flags += HM_HEAP_THREADSAFE) {
        hm_manager *m = make("limit=256M");
        hm_heap *h = mk_heap(m, flags);
        void *a = alloc_ok(h, 600 * KiB, HM_LEVEL_TASK);
        memset(a, 7, 600 * KiB);
        free_ok(h, a);
        assert_int_equal(hstats(h).cached_large_bytes, 600 * KiB);
        uint64_t c0 = tu_charge(m);
        void *b = alloc_ok(h, 6 * MiB, HM_LEVEL_TASK);
        assert_ptr_equal(b, a);
        assert_int_equal(((unsigned char *)b)[599 * KiB], 7);
        assert_int_equal(hm_heap_usable_size(h, b), 6 * MiB);
        assert_int_equal(tu_charge(m) - c0, 6 * MiB - 600 * KiB);
        assert_int_equal(hstats(h).cached_large_bytes, 0);
        free_ok(h, b);
        void *c = alloc_ok(h, 9 * MiB, HM_LEVEL_TASK); /* past its 8 MiB: a fresh block, b stays cached */
        assert_ptr_not_equal(c, b);
        assert_int_equal(hstats(h).cached_large_bytes, 6 * MiB);
        assert_int_equal(tu_charge(m), heap_charge(h));
        free_ok(h, c);
        check_books();
        destroy_heap(h);
        assert_int_equal(tu_charge(m), 0);
        destroy_mgr(m);
    }
    /* growth refused by the budget: the block goes back to the cache, the request fails cleanly */
    hm_manager *m = make("limit=7M,reserve.appdomain=0,reserve.process=0");
    hm_heap *h = mk_heap(m, 0);
    void *a = alloc_ok(h, 3 * MiB, HM_LEVEL_TASK);
    void *keep = alloc_ok(h, 3 * MiB, HM_LEVEL_TASK);
    free_ok(h, a);
    void *p = (void *)1;
    hm_status st = hm_heap_alloc(h, 5 * MiB, HM_LEVEL_TASK, &p); /* growing a: 8 MiB; fresh: 8 MiB too */
    if (st != HM_E_COMMITMENT_LIMIT) fail_msg("5 MiB under a 7 MiB limit with 3 MiB live: %s", hm_status_name(st));
    assert_null(p);
    assert_int_equal(hstats(h).cached_large_bytes, 0); /* the refused commit drained the cache */
    assert_int_equal(tu_charge(m), heap_charge(h));
    check_books();
    void *again = alloc_ok(h, 3 * MiB, HM_LEVEL_TASK); /* the cache still works (or was drained) */
    free_ok(h, again);
    free_ok(h, keep);
    destroy_heap(h);
    assert_int_equal(tu_charge(m), 0);
    destroy_mgr(m);
    /* the same for a block in the thread's cache: its refused growth sends it to the heap's cache,
     * which the refused fresh block then drains */
    m = make("limit=6656K,reserve.appdomain=0,reserve.process=0,notify.low=98,notify.high=99"); /* (not Low: kept) */
    h = mk_heap(m, HM_HEAP_THREADSAFE);
    a = alloc_ok(h, MiB, HM_LEVEL_TASK);
    keep = alloc_ok(h, 5 * MiB, HM_LEVEL_TASK);
    free_ok(h, a);
    assert_int_equal(hstats(h).cached_large_bytes, MiB);
    p = (void *)1;
    st = hm_heap_alloc(h, 2 * MiB, HM_LEVEL_TASK, &p); /* growing a: 7 MiB; fresh: 7 MiB too */
    if (st != HM_E_COMMITMENT_LIMIT) fail_msg("2 MiB under a 6.5 MiB limit with 5 MiB live: %s", hm_status_name(st));
    assert_null(p);
    assert_int_equal(hstats(h).cached_large_bytes, 0);
    assert_int_equal(tu_charge(m), heap_charge(h));
    check_books();
    again = alloc_ok(h, MiB, HM_LEVEL_TASK);
    free_ok(h, again);
    free_ok(h, keep);
    destroy_heap(h);
    assert_int_equal(tu_charge(m), 0);
    destroy_mgr(m);
}

/* heap.h, "Size classes": a medium class's blocks come from a span of pages in the heap's segments
 * (no mapping of their own): usable size the class's, 8 KiB aligned, never overlapping, charged as
 * the span's committed pages; interior pointers (also in the span's later pages) and second frees
 * are refused; emptied spans wait whole for spans of their length (the span cache: test_span_cache),
 * and small classes and other spans take the heap's other pages meanwhile. */
static void test_medium(void **state)
{
    (void)state;
    for (uint32_t flags = 0; flags <= HM_HEAP_THREADSAFE; flags++) {
        hm_manager *m = make("limit=512M");
        hm_heap *h = mk_heap(m, flags);
        enum { PER = 20 };
        static void *p[HM_NCLASS][PER];
        for (unsigned c = HM_NSMALL; c < HM_NCLASS; c++) {
            size_t bs = hm_heap_class_size(c);
            for (int i = 0; i < PER; i++) {
                size_t req = bs - (size_t)i * 7;
                p[c][i] = alloc_ok(h, req, HM_LEVEL_TASK);
                assert_int_equal((uintptr_t)p[c][i] % (8 * KiB), 0);
                assert_int_equal(hm_heap_usable_size(h, p[c][i]), bs);
                fill(p[c][i], bs, c * PER + (uint32_t)i);
            }
        }
        hm_heap_stats s = hstats(h);
        assert_int_equal(s.large_bytes, 0); /* none is a large block */
        assert_int_equal(s.live_blocks, (HM_NCLASS - HM_NSMALL) * PER);
        assert_int_equal(tu_charge(m), heap_charge(h));
        check_books();
        for (unsigned c = HM_NSMALL; c < HM_NCLASS; c++) {
            size_t bs = hm_heap_class_size(c);
            for (int i = 0; i < PER; i++) {
                check_fill(p[c][i], bs, c * PER + (uint32_t)i);
                char *q = p[c][i];
                size_t in[] = {8, 16, 4096, bs / 2 + 16, bs - 16}; /* interior, some in a later page of the span */
                for (size_t k = 0; k < sizeof in / sizeof in[0]; k++) {
                    assert_int_equal(hm_heap_usable_size(h, q + in[k]), 0);
                    assert_int_equal(hm_heap_free(h, q + in[k]), HM_E_HOST_INVALIDOPERATION);
                }
            }
        }
        /* every other one freed, then a second time; the rest still intact */
        for (unsigned c = HM_NSMALL; c < HM_NCLASS; c++)
            for (int i = 0; i < PER; i += 2) {
                free_ok(h, p[c][i]);
                assert_int_equal(hm_heap_free(h, p[c][i]), HM_E_HOST_INVALIDOPERATION);
                assert_int_equal(hm_heap_usable_size(h, p[c][i]), 0);
            }
        for (unsigned c = HM_NSMALL; c < HM_NCLASS; c++)
            for (int i = 1; i < PER; i += 2) check_fill(p[c][i], hm_heap_class_size(c), c * PER + (uint32_t)i);
        /* small blocks and other spans reuse what went back */
        static void *sm[2000];
        for (int i = 0; i < 2000; i++) sm[i] = alloc_ok(h, 16 + (size_t)(i % 64) * 48, HM_LEVEL_TASK);
        for (unsigned c = HM_NSMALL; c < HM_NCLASS; c++)
            for (int i = 0; i < PER; i += 2) p[c][i] = alloc_ok(h, hm_heap_class_size(HM_NCLASS - 1 - (c - HM_NSMALL)), HM_LEVEL_TASK);
        assert_int_equal(tu_charge(m), heap_charge(h));
        check_books();
        for (int i = 0; i < 2000; i++) free_ok(h, sm[i]);
        for (unsigned c = HM_NSMALL; c < HM_NCLASS; c++)
            for (int i = 0; i < PER; i++) {
                if (i % 2) check_fill(p[c][i], hm_heap_class_size(c), c * PER + (uint32_t)i);
                free_ok(h, p[c][i]);
            }
        s = hstats(h);
        assert_int_equal(s.live_blocks, 0);
        assert_int_equal(s.live_bytes, 0);
        assert_int_equal(hm_heap_trim(h), HM_OK);
        s = hstats(h);
        if (s.committed_pages != s.segments)
            fail_msg("flags %u: trimmed with nothing live, %" PRIu64 " pages stay committed in %" PRIu64 " segments", flags,
                     s.committed_pages, s.segments);
        assert_int_equal(tu_charge(m), heap_charge(h));
        /* realloc through the medium classes, keeping the bytes */
        void *r = alloc_ok(h, 1000, HM_LEVEL_TASK);
        fill(r, 1000, 99);
        for (size_t n = 2000; n <= 2 * MiB; n = n * 3 / 2) {
            void *q;
            assert_int_equal(hm_heap_realloc(h, r, n, HM_LEVEL_TASK, &q), HM_OK);
            check_fill(q, 1000, 99);
            r = q;
        }
        free_ok(h, r);
        check_books();
        destroy_heap(h);
        assert_int_equal(tu_charge(m), 0);
        destroy_mgr(m);
    }
}

/* The span cache (segment.c): a medium span whose last block went stays whole and committed, and the
 * next span of its length takes it (the same address, no commit); a span of another length does
 * not; a Free of its old block or of a pointer into it is refused while it waits; trim gives it
 * back, and so does the purge once it waited HM_EMPTY_DELAY_MS. Books and page invariants checked
 * at each step, both heap kinds. */
static void test_span_cache(void **state)
{
    (void)state;
    uint32_t delay = hm_heap_empty_delay_ms;
    size_t big = 256 * KiB, other = 160 * KiB; /* one block a span each, spans of different lengths */
    unsigned span = hm_heap_class_span[hm_heap_class_of(big)];
    assert_true(span > 1 && hm_heap_class_size(hm_heap_class_of(big)) * 2 > span * HM_HPAGE_SIZE);
    assert_int_not_equal(hm_heap_class_span[hm_heap_class_of(other)], span);
    for (uint32_t flags = 0; flags <= HM_HEAP_THREADSAFE; flags++) {
        hm_manager *m = make("limit=512M");
        hm_heap *h = mk_heap(m, flags);
        /* emptied spans: one may stay as its class's page with room (page.c, settle), the rest are cached */
        void *a = alloc_ok(h, big, HM_LEVEL_TASK), *b = alloc_ok(h, big, HM_LEVEL_TASK), *y = alloc_ok(h, big, HM_LEVEL_TASK);
        fill(y, big, 7);
        uint64_t committed = hstats(h).committed_pages, charge = tu_charge(m);
        free_ok(h, a);
        free_ok(h, b);
        assert_true(h->nspan_pages >= span);
        check_pages(h, NULL, NULL);
        assert_int_equal(hstats(h).committed_pages, committed); /* kept committed */
        assert_int_equal(tu_charge(m), charge);
        assert_int_equal(hm_heap_free(h, b), HM_E_HOST_INVALIDOPERATION); /* their blocks went */
        assert_int_equal(hm_heap_free(h, a), HM_E_HOST_INVALIDOPERATION);
        assert_int_equal(hm_heap_free(h, (char *)b + HM_HPAGE_SIZE), HM_E_HOST_INVALIDOPERATION); /* a page inside */
        assert_int_equal(hm_heap_usable_size(h, b), 0);
        uint32_t cached = h->nspan_pages;
        void *o = alloc_ok(h, other, HM_LEVEL_TASK); /* another length: not from a cached span */
        assert_int_equal(h->nspan_pages, cached);
        /* the next two of its length: the kept page and the cached spans, whole: no commit */
        void *z1 = alloc_ok(h, big, HM_LEVEL_TASK), *z2 = alloc_ok(h, big, HM_LEVEL_TASK);
        assert_true((z1 == a && z2 == b) || (z1 == b && z2 == a));
        assert_int_equal(h->nspan_pages, 0);
        assert_int_equal(tu_charge(m), heap_charge(h));
        assert_true(tu_charge(m) - charge <= hm_heap_class_span[hm_heap_class_of(other)] * HM_HPAGE_SIZE); /* (o's only) */
        fill(z2, big, 9);
        check_pages(h, NULL, NULL);
        check_books();
        /* trim decommits what the cache keeps */
        free_ok(h, z1);
        free_ok(h, z2);
        assert_true(h->nspan_pages >= span);
        committed = hstats(h).committed_pages;
        assert_int_equal(hm_heap_trim(h), HM_OK);
        assert_int_equal(h->nspan_pages, 0);
        assert_true(hstats(h).committed_pages <= committed - span);
        assert_int_equal(tu_charge(m), heap_charge(h));
        check_pages(h, NULL, NULL);
        /* ... and so does the purge, once it waited long enough */
        hm_heap_empty_delay_ms = 30;
        z1 = alloc_ok(h, big, HM_LEVEL_TASK);
        z2 = alloc_ok(h, big, HM_LEVEL_TASK);
        free_ok(h, z1);
        free_ok(h, z2);
        assert_true(h->nspan_pages >= span);
        sleep_ms(80);
        void *w = alloc_ok(h, 20000, HM_LEVEL_TASK); /* a class with no page yet: a page operation, which purges */
        hm_heap_empty_delay_ms = delay;
        assert_int_equal(h->nspan_pages, 0);
        assert_int_equal(hm_heap_usable_size(h, z2), 0);
        check_pages(h, NULL, NULL);
        assert_int_equal(tu_charge(m), heap_charge(h));
        check_fill(y, big, 7);
        free_ok(h, w);
        free_ok(h, y);
        free_ok(h, o);
        assert_int_equal(hstats(h).live_blocks, 0);
        check_pages(h, NULL, NULL);
        check_books();
        destroy_heap(h);
        assert_int_equal(tu_charge(m), 0);
        destroy_mgr(m);
    }
}

/* SPEC 4: blocks above 512 KiB are large: page aligned, charged exactly, given back on Free. */
/* Freed large blocks stay committed in caches (the thread's own, then the heap's) and serve the next
 * large request; hm_heap_trim gives them back, with the heap's empty pages. */
/* A freed large block is kept as long as an empty page (hm_heap_empty_delay_ms), no longer: the
 * cache's next use releases the blocks kept longer, the thread's cache (up to 1 MiB) and the heap's
 * alike, the oldest first; a younger one stays. */
static void test_large_cache_ages(void **state)
{
    (void)state;
    uint32_t delay = hm_heap_empty_delay_ms;
    hm_heap_empty_delay_ms = 30;
    size_t sizes[] = {768 * KiB, 2 * MiB}; /* a thread's cache; the heap's */
    for (int k = 0; k < 2; k++) {
        hm_manager *m = make("limit=256M");
        hm_heap *h = mk_heap(m, HM_HEAP_THREADSAFE);
        void *a = alloc_ok(h, sizes[k], HM_LEVEL_TASK), *b = alloc_ok(h, sizes[k], HM_LEVEL_TASK);
        free_ok(h, a);
        uint64_t kept = hstats(h).cached_large_bytes, charge = tu_charge(m);
        assert_true(kept >= sizes[k]);
        sleep_ms(80);
        free_ok(h, b); /* a, kept longer than the delay, goes; b stays */
        if (hstats(h).cached_large_bytes != kept)
            fail_msg("%zu-byte blocks: %" PRIu64 " bytes cached after the old one aged, expected %" PRIu64, sizes[k],
                     hstats(h).cached_large_bytes, kept);
        assert_true(tu_charge(m) < charge); /* (a's commit went back; b was live and is kept) */
        check_books();
        destroy_heap(h);
        destroy_mgr(m);
    }
    hm_heap_empty_delay_ms = delay;
}

static void test_large_cache_and_trim(void **state)
{
    (void)state;
    assert_int_equal(hm_heap_trim(NULL), HM_E_POINTER);
    for (uint32_t flags = 0; flags <= HM_HEAP_THREADSAFE; flags++) {
        hm_manager *m = make("limit=256M");
        hm_heap *h = mk_heap(m, flags);
        void *a = alloc_ok(h, 700 * KiB, HM_LEVEL_TASK), *b = alloc_ok(h, 900 * KiB, HM_LEVEL_TASK);
        memset(a, 1, 700 * KiB);
        free_ok(h, a);
        free_ok(h, b);
        hm_heap_stats st = hstats(h);
        assert_int_equal(st.live_blocks, 0);
        assert_int_equal(st.cached_large_bytes, 1600 * KiB);
        assert_int_equal(tu_charge(m), heap_charge(h));
        void *c = alloc_ok(h, 600 * KiB, HM_LEVEL_TASK); /* the 700 KiB block, still committed */
        assert_ptr_equal(c, a);
        assert_int_equal(hm_heap_usable_size(h, c), 700 * KiB);
        assert_int_equal(((unsigned char *)c)[4096], 1); /* reused, not remapped */
        assert_int_equal(hstats(h).cached_large_bytes, 900 * KiB);
        free_ok(h, c);
        uint64_t before = tu_charge(m);
        assert_int_equal(hm_heap_trim(h), HM_OK);
        st = hstats(h);
        assert_int_equal(st.cached_large_bytes, 0);
        assert_int_equal(tu_charge(m), before - 1600 * KiB);
        assert_int_equal(tu_charge(m), heap_charge(h));
        assert_int_equal(hm_heap_free(h, c), HM_E_HOST_INVALIDOPERATION); /* gone for good */
        check_books();
        destroy_heap(h);
        assert_int_equal(tu_charge(m), 0);
        destroy_mgr(m);
    }
}

static void test_large(void **state)
{
    (void)state;
    hm_manager *m = make("limit=256M");
    hm_heap *h = mk_heap(m, HM_HEAP_THREADSAFE);
    const size_t sizes[] = {HM_MEDIUM_MAX + 1, 576 * KiB, 640 * KiB, 640 * KiB + 1, 700000, MiB, 3 * MiB + 5, 17 * MiB};
    enum { NS = sizeof sizes / sizeof sizes[0] };
    void *p[NS];
    uint64_t c0 = tu_charge(m), bytes = 0;
    for (size_t i = 0; i < NS; i++) {
        p[i] = alloc_ok(h, sizes[i], HM_LEVEL_APPDOMAIN);
        assert_int_equal((uintptr_t)p[i] % PAGE, 0);
        size_t u = hm_heap_usable_size(h, p[i]);
        assert_true(u >= sizes[i]);
        assert_true(u < sizes[i] + PAGE);
        fill(p[i], u, (uint32_t)i);
        bytes += (sizes[i] + PAGE - 1) & ~(PAGE - 1);
        assert_int_equal(tu_charge(m) - c0, bytes); /* SPEC 3.2: charge = committed pages */
    }
    hm_heap_stats s = hstats(h);
    assert_int_equal(s.large_bytes, bytes);
    assert_int_equal(s.live_blocks, NS);
    for (size_t i = 0; i < NS; i++) check_fill(p[i], hm_heap_usable_size(h, p[i]), (uint32_t)i);
    check_books();
    for (size_t i = 0; i < NS; i++) free_ok(h, p[i]);
    s = hstats(h);
    assert_int_equal(s.large_bytes, 0);
    assert_int_equal(s.live_blocks, 0);
    /* freed large blocks may stay committed for reuse (heap.h): still charged, and nothing else */
    assert_true(s.cached_large_bytes <= bytes);
    assert_int_equal(tu_charge(m), c0 + s.cached_large_bytes);
    if (s.cached_large_bytes) { /* a cached block serves the next request it fits, with no new charge */
        void *again = alloc_ok(h, 600 * KiB, HM_LEVEL_TASK);
        assert_true(tu_charge(m) <= c0 + s.cached_large_bytes);
        free_ok(h, again);
    }
    destroy_heap(h);
    assert_int_equal(tu_charge(m), c0);
    destroy_mgr(m);
}

/* SPEC 3.2, 4: impossible sizes fail as memory refusals (E_OUTOFMEMORY), change nothing, and the heap
 * stays usable. */
static void test_huge(void **state)
{
    (void)state;
    hm_manager *m = make("limit=64M");
    hm_heap *h = mk_heap(m, HM_HEAP_THREADSAFE);
    void *keep = alloc_ok(h, 200, HM_LEVEL_TASK);
    fill(keep, 200, 7);
    const size_t sizes[] = {SIZE_MAX, SIZE_MAX - 1, SIZE_MAX - 4095, SIZE_MAX - 16, SIZE_MAX / 2, SIZE_MAX / 2 + 1,
                            (size_t)1 << 47, (size_t)1 << 40, (size_t)64 * MiB + 1, (size_t)65 * MiB};
    hm_heap_stats s0 = hstats(h);
    uint64_t c0 = tu_charge(m);
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        for (hm_level lv = HM_LEVEL_TASK; lv <= HM_LEVEL_PROCESS; lv++) {
            char what[96];
            void *p = (void *)1;
            hm_status st = hm_heap_alloc(h, sizes[i], lv, &p);
            snprintf(what, sizeof what, "hm_heap_alloc(%#zx, level %d)", sizes[i], (int)lv);
            if (lv == HM_LEVEL_TASK) print_message("heap: %s = %#x %s\n", what, (unsigned)st, hm_status_name(st));
            assert_refusal(st, what);
            assert_null(p);
            p = (void *)1;
            st = hm_heap_alloc_debug(h, sizes[i], lv, "huge.c", 1, &p);
            snprintf(what, sizeof what, "hm_heap_alloc_debug(%#zx)", sizes[i]);
            assert_refusal(st, what);
            assert_null(p);
            p = (void *)1;
            st = hm_heap_alloc_aligned(h, sizes[i], 4096, lv, &p);
            snprintf(what, sizeof what, "hm_heap_alloc_aligned(%#zx, 4096)", sizes[i]);
            assert_refusal(st, what);
            assert_null(p);
            p = (void *)1;
            st = hm_heap_calloc(h, 1, sizes[i], lv, &p);
            assert_refusal(st, "hm_heap_calloc(1, huge)");
            assert_null(p);
            p = (void *)1;
            st = hm_heap_realloc(h, keep, sizes[i], lv, &p); /* p untouched on failure */
            assert_refusal(st, "hm_heap_realloc(huge)");
            assert_null(p);
            assert_stats_equal(s0, hstats(h), what);
            assert_true(tu_charge(m) <= c0); /* (empty pages went back, nothing else) */
        }
    }
    check_fill(keep, 200, 7);
    assert_int_equal(hm_heap_usable_size(h, keep), s0.live_bytes);
    /* still usable */
    void *q = alloc_ok(h, 5000, HM_LEVEL_TASK);
    void *r = alloc_ok(h, 5 * MiB, HM_LEVEL_TASK);
    memset(r, 1, 5 * MiB);
    free_ok(h, q);
    free_ok(h, r);
    free_ok(h, keep);
    check_books();
    destroy_heap(h);
    assert_int_equal(tu_charge(m), 0);
    destroy_mgr(m);
}

/* The level must be one of the three (SPEC 1: EMemoryCriticalLevel): E_INVALIDARG, nothing made. */
static void test_invalid_level(void **state)
{
    (void)state;
    hm_manager *m = make("limit=64M");
    hm_heap *h = mk_heap(m, 0);
    void *keep = alloc_ok(h, 48, HM_LEVEL_TASK);
    hm_heap_stats s0 = hstats(h);
    const int bad[] = {3, 4, 7, 100, -1, INT32_MIN};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        hm_level lv = (hm_level)bad[i];
        void *p = (void *)1;
        assert_int_equal(hm_heap_alloc(h, 16, lv, &p), HM_E_INVALIDARG);
        assert_null(p);
        p = (void *)1;
        assert_int_equal(hm_heap_alloc(h, 100000, lv, &p), HM_E_INVALIDARG);
        assert_null(p);
        p = (void *)1;
        assert_int_equal(hm_heap_alloc_debug(h, 16, lv, "lvl.c", 3, &p), HM_E_INVALIDARG);
        assert_null(p);
        p = (void *)1;
        assert_int_equal(hm_heap_alloc_aligned(h, 16, 256, lv, &p), HM_E_INVALIDARG);
        assert_null(p);
        p = (void *)1;
        assert_int_equal(hm_heap_calloc(h, 2, 8, lv, &p), HM_E_INVALIDARG);
        assert_null(p);
        p = (void *)1;
        assert_int_equal(hm_heap_realloc(h, NULL, 16, lv, &p), HM_E_INVALIDARG);
        assert_null(p);
        p = (void *)1;
        assert_int_equal(hm_heap_realloc(h, keep, 4000, lv, &p), HM_E_INVALIDARG);
        assert_null(p);
        assert_stats_equal(s0, hstats(h), "invalid level");
    }
    assert_true(hm_heap_usable_size(h, keep) >= 48);
    free_ok(h, keep);
    destroy_heap(h);
    destroy_mgr(m);
}

/* hm_heap_alloc_aligned: every power of two 16..4096 gives an aligned block with usable >= size, and
 * so do the larger ones up to 1 GiB (blocks of their own); other alignments are E_INVALIDARG. */
static void test_aligned(void **state)
{
    (void)state;
    hm_manager *m = make("limit=256M");
    hm_heap *h = mk_heap(m, HM_HEAP_THREADSAFE);
    void *blk[13 * 9];
    size_t usz[13 * 9];
    size_t n = 0;
    for (size_t a = 16; a <= 4096; a *= 2) {
        const size_t sizes[] = {0, 1, a - 1, a, a + 1, 3 * a, 1000, 5000, 40000};
        for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
            void *p = NULL;
            hm_status st = hm_heap_alloc_aligned(h, sizes[k], a, HM_LEVEL_TASK, &p);
            if (st != HM_OK) fail_msg("aligned(%zu, %zu) = %#x: %s", sizes[k], a, (unsigned)st, hm_last_detail());
            if ((uintptr_t)p % a) fail_msg("aligned(%zu, %zu) = %p: misaligned", sizes[k], a, p);
            size_t u = hm_heap_usable_size(h, p);
            if (u < sizes[k] || u == 0) fail_msg("aligned(%zu, %zu): usable %zu", sizes[k], a, u);
            fill(p, u, (uint32_t)n);
            usz[n] = u;
            blk[n++] = p;
        }
    }
    /* powers of two below 16 are powers of two: accepted, 16-aligned at least */
    for (size_t a = 1; a < 16; a *= 2) {
        void *p = NULL;
        assert_int_equal(hm_heap_alloc_aligned(h, 24, a, HM_LEVEL_TASK, &p), HM_OK);
        assert_int_equal((uintptr_t)p % 16, 0);
        free_ok(h, p);
    }
    for (size_t a = 8192; a <= ((size_t)1 << 30); a *= 4) {
        const size_t sizes[] = {1, a, 3 * a + 5};
        void *q[3];
        for (size_t k = 0; k < 3; k++) {
            q[k] = NULL;
            size_t want = sizes[k] > ((size_t)64 << 20) ? 4096 : sizes[k]; /* (the budget: 256M) */
            hm_status st = hm_heap_alloc_aligned(h, want, a, HM_LEVEL_TASK, &q[k]);
            if (st != HM_OK) fail_msg("aligned(%zu, %zu) = %#x: %s", want, a, (unsigned)st, hm_last_detail());
            if ((uintptr_t)q[k] % a) fail_msg("aligned(%zu, %zu) = %p: misaligned", want, a, q[k]);
            if (hm_heap_usable_size(h, q[k]) < want) fail_msg("aligned(%zu, %zu): usable too small", want, a);
            memset(q[k], 0x5a, want);
        }
        for (size_t k = 0; k < 3; k++) free_ok(h, q[k]);
    }
    for (size_t i = 0; i < n; i++) check_fill(blk[i], usz[i], (uint32_t)i);
    hm_heap_stats s0 = hstats(h);
    const size_t bad[] = {3, 5, 12, 24, 48, 96, 3000, 12288, 65537, ((size_t)1 << 40) * 2, SIZE_MAX, (size_t)1 << 63};
    char wrong[1024] = "";
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        void *p = (void *)1;
        hm_status st = hm_heap_alloc_aligned(h, 64, bad[i], HM_LEVEL_TASK, &p);
        if (st != HM_E_INVALIDARG) { /* collected, so that one report names every wrong answer */
            size_t l = strlen(wrong);
            snprintf(wrong + l, sizeof wrong - l, " align %zu: %#x (%s);", bad[i], (unsigned)st, hm_status_name(st));
            if (st == HM_OK) free_ok(h, p);
            continue;
        }
        assert_null(p);
    }
    assert_stats_equal(s0, hstats(h), "invalid alignment");
    for (size_t i = 0; i < n; i++) free_ok(h, blk[i]);
    assert_int_equal(hstats(h).live_blocks, 0);
    check_books();
    destroy_heap(h);
    destroy_mgr(m);
    if (wrong[0]) fail_msg("hm_heap_alloc_aligned(64, align) should be E_INVALIDARG for:%s", wrong);
}

/* hm_heap_calloc: zeroed, also when it reuses freed (dirty) blocks and pages; count*size overflow is
 * refused. */
static void test_heap_calloc(void **state)
{
    (void)state;
    hm_manager *m = make("limit=64M");
    hm_heap *h = mk_heap(m, 0);
    const size_t sizes[] = {1, 16, 100, 200, 4000, 32768, 40000, 300000};
    for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
        enum { N = 40 };
        void *p[N];
        for (int i = 0; i < N; i++) {
            p[i] = alloc_ok(h, sizes[k], HM_LEVEL_TASK);
            memset(p[i], 0xEE, hm_heap_usable_size(h, p[i]));
        }
        for (int i = 0; i < N; i++) free_ok(h, p[i]);
        for (int i = 0; i < N; i++) {
            size_t cnt = i % 2 ? sizes[k] : 1, sz = i % 2 ? 1 : sizes[k];
            assert_int_equal(hm_heap_calloc(h, cnt, sz, HM_LEVEL_TASK, &p[i]), HM_OK);
            assert_int_equal((uintptr_t)p[i] % 16, 0);
            const unsigned char *c = p[i];
            for (size_t j = 0; j < sizes[k]; j++)
                if (c[j]) fail_msg("calloc(%zu) after reuse: byte %zu is %#x", sizes[k], j, c[j]);
        }
        for (int i = 0; i < N; i++) free_ok(h, p[i]);
    }
    void *z = NULL;
    assert_int_equal(hm_heap_calloc(h, 0, 10, HM_LEVEL_TASK, &z), HM_OK);
    assert_non_null(z);
    free_ok(h, z);
    assert_int_equal(hm_heap_calloc(h, 10, 0, HM_LEVEL_TASK, &z), HM_OK);
    assert_non_null(z);
    free_ok(h, z);
    hm_heap_stats s0 = hstats(h);
    const size_t ov[][2] = {{SIZE_MAX / 2 + 1, 2}, {2, SIZE_MAX / 2 + 1}, {SIZE_MAX, SIZE_MAX},
                            {(size_t)1 << 33, (size_t)1 << 33}, {SIZE_MAX / 16 + 1, 16}, {3, SIZE_MAX / 3 + 1}};
    for (size_t i = 0; i < sizeof ov / sizeof ov[0]; i++) {
        void *p = (void *)1;
        hm_status st = hm_heap_calloc(h, ov[i][0], ov[i][1], HM_LEVEL_PROCESS, &p);
        assert_refusal(st, "hm_heap_calloc overflow");
        assert_null(p);
    }
    assert_stats_equal(s0, hstats(h), "calloc overflow");
    assert_int_equal(hstats(h).live_blocks, 0);
    destroy_heap(h);
    destroy_mgr(m);
}

/* hm_heap_realloc: NULL allocates; grows and shrinks keeping the contents up to the smaller size;
 * across the small/large boundary both ways; a pointer that is no live block fails, changing nothing. */
static void test_heap_realloc(void **state)
{
    (void)state;
    hm_manager *m = make("limit=256M");
    hm_heap *h = mk_heap(m, HM_HEAP_THREADSAFE);
    void *p = NULL;
    assert_int_equal(hm_heap_realloc(h, NULL, 100, HM_LEVEL_TASK, &p), HM_OK);
    assert_non_null(p);
    assert_true(hm_heap_usable_size(h, p) >= 100);
    size_t cur = 100;
    fill(p, cur, 1);
    const size_t steps[] = {1000, 30000, 32768, 32769, 40000, MiB, 3 * MiB, 50000, 33000, 32768, 20000,
                            100, 17, 16, 1, 0, 1, 5000, 200000, 64, 70000, 4096};
    for (size_t i = 0; i < sizeof steps / sizeof steps[0]; i++) {
        void *q = NULL;
        hm_status st = hm_heap_realloc(h, p, steps[i], HM_LEVEL_TASK, &q);
        if (st != HM_OK) fail_msg("realloc(%zu -> %zu) = %#x: %s", cur, steps[i], (unsigned)st, hm_last_detail());
        assert_non_null(q);
        assert_int_equal((uintptr_t)q % 16, 0);
        size_t keep = cur < steps[i] ? cur : steps[i];
        check_fill(q, keep, (uint32_t)i + 1);
        size_t u = hm_heap_usable_size(h, q);
        if (u < steps[i] || !u) fail_msg("realloc(-> %zu): usable %zu", steps[i], u);
        if (q != p) assert_int_equal(hm_heap_usable_size(h, p), 0); /* the old block went */
        assert_int_equal(hstats(h).live_blocks, 1);
        cur = steps[i];
        fill(q, cur, (uint32_t)i + 2);
        p = q;
    }
    /* small -> large and large -> small explicitly */
    void *s = alloc_ok(h, 1000, HM_LEVEL_TASK), *l = NULL;
    fill(s, 1000, 9);
    assert_int_equal(hm_heap_realloc(h, s, 100000, HM_LEVEL_TASK, &l), HM_OK);
    assert_true(hm_heap_usable_size(h, l) >= 100000);
    check_fill(l, 1000, 9);
    fill(l, 100000, 10);
    void *back = NULL;
    assert_int_equal(hm_heap_realloc(h, l, 100, HM_LEVEL_TASK, &back), HM_OK);
    assert_true(hm_heap_usable_size(h, back) >= 100);
    check_fill(back, 100, 10);

    /* failures change nothing: another heap's live block, a freed one, interior, wild */
    hm_heap *o = mk_heap(m, 0);
    void *ob = alloc_ok(o, 300, HM_LEVEL_TASK);
    fill(ob, 300, 11);
    void *dead = alloc_ok(h, 300, HM_LEVEL_TASK);
    free_ok(h, dead);
    hm_heap_stats hs = hstats(h), os = hstats(o);
    int local = 0;
    struct { void *ptr; hm_status want; const char *what; } bad[] = {
        {ob, HM_E_HOST_NOT_OWNER, "another heap's live block"},
        {dead, HM_E_HOST_INVALIDOPERATION, "a freed block"},
        {(char *)back + 16, HM_E_HOST_INVALIDOPERATION, "an interior pointer"},
        {&local, HM_E_HOST_INVALIDOPERATION, "a stack address"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        void *q = (void *)1;
        hm_status st = hm_heap_realloc(h, bad[i].ptr, 500, HM_LEVEL_TASK, &q);
        if (st != bad[i].want)
            fail_msg("realloc of %s = %#x (%s), expected %#x", bad[i].what, (unsigned)st, hm_status_name(st),
                     (unsigned)bad[i].want);
        assert_null(q);
        assert_stats_equal(hs, hstats(h), bad[i].what);
        assert_stats_equal(os, hstats(o), bad[i].what);
    }
    check_fill(ob, 300, 11);
    check_fill(back, 100, 10);
    free_ok(o, ob);
    destroy_heap(o);

    /* a debug block reallocates like any other: contents kept, its site count goes down */
    void *d = NULL;
    assert_int_equal(hm_heap_alloc_debug(h, 100, HM_LEVEL_TASK, "re.c", 1, &d), HM_OK);
    fill(d, 100, 12);
    void *d2 = NULL;
    assert_int_equal(hm_heap_realloc(h, d, 5000, HM_LEVEL_TASK, &d2), HM_OK);
    check_fill(d2, 100, 12);
    free_ok(h, d2);
    /* a zero-sized debug block is a live block too (usable size 0): realloc must keep it working */
    void *dz = NULL;
    assert_int_equal(hm_heap_alloc_debug(h, 0, HM_LEVEL_TASK, "re.c", 2, &dz), HM_OK);
    uint64_t before = hstats(h).live_blocks;
    void *dz2 = NULL;
    hm_status st = hm_heap_realloc(h, dz, 64, HM_LEVEL_TASK, &dz2);
    if (st != HM_OK)
        fail_msg("realloc of a live 0-byte debug block = %#x (%s); live blocks %" PRIu64 " -> %" PRIu64, (unsigned)st,
                 hm_status_name(st), before, hstats(h).live_blocks);
    assert_non_null(dz2);
    free_ok(h, dz2);

    free_ok(h, back);
    free_ok(h, p);
    assert_int_equal(hstats(h).live_blocks, 0);
    check_books();
    destroy_heap(h);
    destroy_mgr(m);
}

/* ---- free ------------------------------------------------------------------------------------- */

typedef struct fixture {
    hm_heap *h;
    void *small, *large, *dbg, *dbg_large;
    size_t small_n, large_n, dbg_n, dbg_large_n;
} fixture;

static void fixture_check(fixture *f, hm_heap_stats s0, const char *what)
{
    assert_stats_equal(s0, hstats(f->h), what);
    check_fill(f->small, f->small_n, 1);
    check_fill(f->large, f->large_n, 2);
    check_fill(f->dbg, f->dbg_n, 3);
    check_fill(f->dbg_large, f->dbg_large_n, 4);
}

static void bad_free(fixture *f, void *p, hm_status want, const char *what)
{
    hm_heap_stats s0 = hstats(f->h);
    hm_set_last_detail("(no detail)");
    hm_status st = hm_heap_free(f->h, p);
    if (st != want)
        fail_msg("Free(%s = %p) = %#x (%s), expected %#x (%s)", what, p, (unsigned)st, hm_status_name(st),
                 (unsigned)want, hm_status_name(want));
    /* and says why, naming the pointer (a clear message for whoever reads the failure) */
    char at[32];
    snprintf(at, sizeof at, "%p", p);
    if (!strstr(hm_last_detail(), at)) fail_msg("Free(%s = %p): detail \"%s\" does not name it", what, p, hm_last_detail());
    fixture_check(f, s0, what);
}

static int static_thing[64];

/* SPEC 4: Free of anything that is not a live block of the heap fails with the right code, changes
 * nothing in any heap, and does not crash; the blocks stay intact and free normally afterwards. */
static void free_errors(uint32_t flags)
{
    hm_manager *m = make("limit=256M");
    fixture f = {.h = mk_heap(m, flags), .small_n = 64, .large_n = 100000, .dbg_n = 40,
                 .dbg_large_n = 50000};
    f.small = alloc_ok(f.h, f.small_n, HM_LEVEL_TASK);
    f.large = alloc_ok(f.h, f.large_n, HM_LEVEL_TASK);
    assert_int_equal(hm_heap_alloc_debug(f.h, f.dbg_n, HM_LEVEL_TASK, "fx.c", 1, &f.dbg), HM_OK);
    assert_int_equal(hm_heap_alloc_debug(f.h, f.dbg_large_n, HM_LEVEL_TASK, "fx.c", 2, &f.dbg_large), HM_OK);
    fill(f.small, f.small_n, 1);
    fill(f.large, f.large_n, 2);
    fill(f.dbg, f.dbg_n, 3);
    fill(f.dbg_large, f.dbg_large_n, 4);
    char *sm = f.small, *lg = f.large, *db = f.dbg, *dl = f.dbg_large;
    const hm_status INV = HM_E_HOST_INVALIDOPERATION;

    /* interior pointers */
    bad_free(&f, sm + 1, INV, "small+1");
    bad_free(&f, sm + 8, INV, "small+8");
    bad_free(&f, sm + 16, INV, "small+16");
    bad_free(&f, sm + 48, INV, "small+48");
    bad_free(&f, sm + 63, INV, "small+63");
    bad_free(&f, lg + 1, INV, "large+1");
    bad_free(&f, lg + 16, INV, "large+16");
    bad_free(&f, lg + PAGE, INV, "large+4096");
    bad_free(&f, lg + 90000, INV, "large+90000");
    bad_free(&f, db + 1, INV, "debug+1");
    bad_free(&f, db + 16, INV, "debug+16");
    bad_free(&f, dl + PAGE, INV, "debug large+4096");
    bad_free(&f, dl + 16, INV, "debug large+16");
    /* a debug block's block start (its header) */
    bad_free(&f, db - 16, INV, "debug-16 (block start)");
    bad_free(&f, db - 8, INV, "debug-8");
    bad_free(&f, dl - 16, INV, "debug large-16 (allocation base)");

    /* never allocated: blocks of small's page beyond what was handed out, an untouched page of the
     * segment, the segment's header page */
    uintptr_t seg = (uintptr_t)sm & ~(uintptr_t)(HM_SEG_SIZE - 1);
    uintptr_t pg = (uintptr_t)sm & ~(uintptr_t)(HM_HPAGE_SIZE - 1);
    bad_free(&f, (void *)(pg + 64 * 500), INV, "a never handed-out block of a page in use");
    bad_free(&f, (void *)(pg + HM_HPAGE_SIZE - 64), INV, "the last block of a page in use");
    bad_free(&f, (void *)(seg + 40 * HM_HPAGE_SIZE), INV, "an unused page of the segment");
    bad_free(&f, (void *)(seg + HM_SEG_SIZE - 16), INV, "the end of the segment");
    bad_free(&f, (void *)seg, INV, "the segment header");
    bad_free(&f, (void *)(seg + 16), INV, "the segment header+16");
    bad_free(&f, (void *)(seg + 4096), INV, "the segment header page+4096");
    bad_free(&f, (void *)(seg + HM_HPAGE_SIZE - 16), INV, "the end of the header page");

    /* already freed: small, large, debug */
    void *x = alloc_ok(f.h, 64, HM_LEVEL_TASK);
    free_ok(f.h, x);
    bad_free(&f, x, INV, "a freed small block");
    if (!strstr(hm_last_detail(), "already freed")) fail_msg("a freed small block's second Free says: %s", hm_last_detail());
    x = alloc_ok(f.h, 70000, HM_LEVEL_TASK);
    free_ok(f.h, x);
    bad_free(&f, x, INV, "a freed large block");
    assert_int_equal(hm_heap_alloc_debug(f.h, 64, HM_LEVEL_TASK, "fx.c", 3, &x), HM_OK);
    free_ok(f.h, x);
    bad_free(&f, x, INV, "a freed debug block");
    bad_free(&f, (char *)x - 16, INV, "a freed debug block's start");

    /* wild */
    int local = 0;
    void *mal = malloc(64);
    void *mm = mmap(NULL, 65536, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    assert_true(mm != MAP_FAILED);
    void *va = NULL, *vd = NULL;
    assert_int_equal(hm_virtual_alloc(m, NULL, 65536, HM_MEM_RESERVE | HM_MEM_COMMIT, HM_PAGE_READWRITE, &va), HM_OK);
    assert_int_equal(hm_virtual_alloc(NULL, NULL, 65536, HM_MEM_RESERVE | HM_MEM_COMMIT, HM_PAGE_READWRITE, &vd), HM_OK);
    bad_free(&f, &local, INV, "a stack address");
    bad_free(&f, static_thing, INV, "a static");
    bad_free(&f, mal, INV, "a malloc'd block");
    bad_free(&f, mm, INV, "an mmap'd page");
    bad_free(&f, (void *)1, INV, "NULL+1");
    bad_free(&f, (void *)16, INV, "16");
    bad_free(&f, (void *)0x10000, INV, "0x10000");
    bad_free(&f, va, INV, "a VirtualAlloc'd address of the same manager");
    bad_free(&f, (char *)va + 16, INV, "a VirtualAlloc'd address + 16");
    bad_free(&f, vd, INV, "a VirtualAlloc'd address of the default manager");
    bad_free(&f, (void *)(uintptr_t)0x00007ffffffff000ull, INV, "the top of user space");
    bad_free(&f, (void *)(uintptr_t)0xffff800000000000ull, INV, "a kernel address");
    bad_free(&f, (void *)(UINTPTR_MAX - 15), INV, "UINTPTR_MAX-15");
    free(mal);
    munmap(mm, 65536);
    assert_int_equal(hm_virtual_free(m, va, 0, HM_MEM_RELEASE), HM_OK);
    assert_int_equal(hm_virtual_free(NULL, vd, 0, HM_MEM_RELEASE), HM_OK);

    /* SPEC 3.1, 4: a live block of another heap, same manager and another manager: HOST_E_NOT_OWNER;
     * a dead or interior one of another heap: HOST_E_INVALIDOPERATION. Neither heap changes. */
    hm_manager *m2 = make("limit=64M");
    hm_heap *others[2] = {mk_heap(m, 0), mk_heap(m2, HM_HEAP_THREADSAFE)};
    for (int k = 0; k < 2; k++) {
        hm_heap *o = others[k];
        void *ob = alloc_ok(o, 64, HM_LEVEL_TASK), *ol = alloc_ok(o, 100000, HM_LEVEL_TASK), *od = NULL, *odl = NULL;
        assert_int_equal(hm_heap_alloc_debug(o, 64, HM_LEVEL_TASK, "other.c", 1, &od), HM_OK);
        assert_int_equal(hm_heap_alloc_debug(o, 60000, HM_LEVEL_TASK, "other.c", 2, &odl), HM_OK);
        void *gone = alloc_ok(o, 64, HM_LEVEL_TASK);
        free_ok(o, gone);
        fill(ob, 64, 21);
        fill(ol, 100000, 22);
        fill(od, 64, 23);
        fill(odl, 60000, 24);
        hm_heap_stats os = hstats(o);
        bad_free(&f, ob, HM_E_HOST_NOT_OWNER, "another heap's small block");
        bad_free(&f, ol, HM_E_HOST_NOT_OWNER, "another heap's large block");
        bad_free(&f, od, HM_E_HOST_NOT_OWNER, "another heap's debug block");
        bad_free(&f, odl, HM_E_HOST_NOT_OWNER, "another heap's large debug block");
        bad_free(&f, (char *)ob + 16, INV, "another heap's block + 16");
        bad_free(&f, (char *)ol + 4096, INV, "another heap's large block + 4096");
        bad_free(&f, (char *)od - 16, INV, "another heap's debug block start");
        bad_free(&f, gone, INV, "another heap's freed block");
        /* and the other way round */
        hm_status st = hm_heap_free(o, f.small);
        assert_int_equal(st, HM_E_HOST_NOT_OWNER);
        assert_int_equal(hm_heap_free(o, f.dbg), HM_E_HOST_NOT_OWNER);
        assert_stats_equal(os, hstats(o), "the other heap");
        check_fill(ob, 64, 21);
        check_fill(ol, 100000, 22);
        check_fill(od, 64, 23);
        check_fill(odl, 60000, 24);
        free_ok(o, ob);
        free_ok(o, ol);
        free_ok(o, od);
        free_ok(o, odl);
        assert_int_equal(hstats(o).live_blocks, 0);
        destroy_heap(o);
    }
    destroy_mgr(m2);

    /* the blocks were never disturbed: each frees normally, once */
    free_ok(f.h, f.small);
    free_ok(f.h, f.large);
    free_ok(f.h, f.dbg);
    free_ok(f.h, f.dbg_large);
    assert_int_equal(hm_heap_free(f.h, f.small), INV);
    assert_int_equal(hm_heap_free(f.h, f.dbg), INV);
    hm_heap_stats s = hstats(f.h);
    assert_int_equal(s.live_blocks, 0);
    assert_int_equal(s.live_bytes, 0);
    assert_int_equal(s.large_bytes, 0);
    assert_int_equal(heap_charge(f.h), tu_charge(m));
    check_books();
    destroy_heap(f.h);
    assert_int_equal(tu_charge(m), 0);
    destroy_mgr(m);
}

static void test_free_errors(void **state)
{
    (void)state;
    free_errors(0);
    free_errors(HM_HEAP_THREADSAFE); /* small frees go through the thread's cache (heap.h) */
}

/* ---- debug blocks ----------------------------------------------------------------------------- */

typedef struct site_table {
    int n;
    hm_heap_site s[32];
    char files[32][64];
} site_table;

static void collect_site(const hm_heap_site *site, void *arg)
{
    site_table *t = arg;
    if (t->n >= 32) return;
    t->s[t->n] = *site;
    snprintf(t->files[t->n], sizeof t->files[t->n], "%s", site->file ? site->file : "(null)");
    t->s[t->n].file = t->files[t->n];
    t->n++;
}

static const hm_heap_site *find_site(site_table *t, const char *file, int line)
{
    for (int i = 0; i < t->n; i++)
        if (t->s[i].line == line && !strcmp(t->s[i].file, file)) return &t->s[i];
    return NULL;
}

static void expect_site(hm_heap *h, const char *file, int line, uint64_t bytes, uint64_t blocks, uint64_t total)
{
    site_table t = {0};
    assert_int_equal(hm_heap_sites(h, collect_site, &t), HM_OK);
    const hm_heap_site *s = find_site(&t, file, line);
    if (!s) fail_msg("site %s:%d not reported (%d sites)", file, line, t.n);
    if (s->live_bytes != bytes || s->live_blocks != blocks || s->total_blocks != total)
        fail_msg("site %s:%d: live %" PRIu64 " bytes / %" PRIu64 " blocks, total %" PRIu64 "; expected %" PRIu64
                 " / %" PRIu64 ", %" PRIu64,
                 file, line, s->live_bytes, s->live_blocks, s->total_blocks, bytes, blocks, total);
}

/* SPEC 4 DebugAlloc: as Alloc, with statistics by site that go down on Free. */
static void test_debug_sites(void **state)
{
    (void)state;
    hm_manager *m = make("limit=64M");
    hm_heap *h = mk_heap(m, HM_HEAP_THREADSAFE);
    site_table t0 = {0};
    assert_int_equal(hm_heap_sites(h, collect_site, &t0), HM_OK);
    assert_int_equal(t0.n, 0); /* no debug block yet */
    void *a[3], *b = NULL, *nf = NULL;
    const size_t asz[3] = {100, 200, 50000};
    for (int i = 0; i < 3; i++) {
        assert_int_equal(hm_heap_alloc_debug(h, asz[i], HM_LEVEL_APPDOMAIN, "alpha.c", 10, &a[i]), HM_OK);
        assert_int_equal((uintptr_t)a[i] % 16, 0);
        size_t u = hm_heap_usable_size(h, a[i]);
        assert_true(u >= asz[i]);
        fill(a[i], u, (uint32_t)i + 40);
    }
    assert_int_equal(hm_heap_alloc_debug(h, 33, HM_LEVEL_TASK, "beta.c", 20, &b), HM_OK);
    fill(b, 33, 50);
    assert_int_equal(hm_heap_alloc_debug(h, 8, HM_LEVEL_TASK, NULL, 0, &nf), HM_OK); /* no file */
    assert_non_null(nf);
    void *plain = alloc_ok(h, 100, HM_LEVEL_TASK); /* not a debug block: counted nowhere */
    expect_site(h, "alpha.c", 10, 100 + 200 + 50000, 3, 3);
    expect_site(h, "beta.c", 20, 33, 1, 1);
    site_table t = {0};
    assert_int_equal(hm_heap_sites(h, collect_site, &t), HM_OK);
    assert_int_equal(t.n, 3);
    for (int i = 0; i < 3; i++) check_fill(a[i], hm_heap_usable_size(h, a[i]), (uint32_t)i + 40);
    free_ok(h, a[1]);
    expect_site(h, "alpha.c", 10, 100 + 50000, 2, 3);
    free_ok(h, a[2]);
    expect_site(h, "alpha.c", 10, 100, 1, 3);
    assert_int_equal(hm_heap_free(h, a[2]), HM_E_HOST_INVALIDOPERATION); /* double free: counts stay */
    expect_site(h, "alpha.c", 10, 100, 1, 3);
    free_ok(h, a[0]);
    free_ok(h, b);
    free_ok(h, nf);
    expect_site(h, "alpha.c", 10, 0, 0, 3);
    expect_site(h, "beta.c", 20, 0, 0, 1);
    /* a site used again keeps counting */
    assert_int_equal(hm_heap_alloc_debug(h, 7, HM_LEVEL_TASK, "alpha.c", 10, &a[0]), HM_OK);
    expect_site(h, "alpha.c", 10, 7, 1, 4);
    free_ok(h, a[0]);
    free_ok(h, plain);
    assert_int_equal(hstats(h).live_blocks, 0);
    destroy_heap(h);
    destroy_mgr(m);
}

/* SPEC 4: DebugAlloc is as Alloc, so size 0 gives a unique minimal block: a pointer no other live
 * block has, that Free takes back (and only it). */
static void test_debug_zero_size(void **state)
{
    (void)state;
    char report[1024] = "";
    for (uint32_t flags = 0; flags <= 1; flags++) {
        hm_manager *m = make("limit=64M");
        hm_heap *h = mk_heap(m, flags);
        void *z = NULL;
        assert_int_equal(hm_heap_alloc_debug(h, 0, HM_LEVEL_TASK, "zero.c", 1, &z), HM_OK);
        assert_non_null(z);
        /* plain blocks of the smallest class, as a program would make next */
        enum { N = 64 };
        void *q[N];
        int clash = -1;
        for (int i = 0; i < N; i++) {
            q[i] = alloc_ok(h, 16, HM_LEVEL_TASK);
            memset(q[i], 0x44, 16);
            if (q[i] == z && clash < 0) clash = i;
        }
        size_t l = strlen(report);
        if (clash >= 0)
            snprintf(report + l, sizeof report - l,
                     " flags %u: DebugAlloc(0) = %p, and Alloc(16) #%d returned the same pointer;", flags, z, clash);
        hm_heap_stats s0 = hstats(h);
        hm_status st = hm_heap_free(h, z);
        hm_heap_stats s1 = hstats(h);
        site_table t = {0};
        assert_int_equal(hm_heap_sites(h, collect_site, &t), HM_OK);
        const hm_heap_site *site = find_site(&t, "zero.c", 1);
        l = strlen(report);
        if (st != HM_OK || !site || site->live_blocks != 0)
            snprintf(report + l, sizeof report - l,
                     " flags %u: Free(DebugAlloc(0)) = %#x (%s), site live blocks %" PRIu64 ", heap live blocks %" PRIu64
                     " -> %" PRIu64 ";",
                     flags, (unsigned)st, hm_status_name(st), site ? site->live_blocks : 99, s0.live_blocks, s1.live_blocks);
        for (int i = 0; i < N; i++) (void)hm_heap_free(h, q[i]); /* (one may have gone already) */
        fflush(stderr);
        int saved = dup(STDERR_FILENO), devnull = open("/dev/null", O_WRONLY);
        dup2(devnull, STDERR_FILENO);
        st = hm_heap_destroy(h);
        dup2(saved, STDERR_FILENO);
        close(saved);
        close(devnull);
        assert_int_equal(st, HM_OK);
        destroy_mgr(m);
    }
    if (report[0]) fail_msg("DebugAlloc(0):%s", report);
}

/* Runs hm_heap_destroy(h) with stderr captured; returns the text (malloc'd). */
static char *destroy_capturing_stderr(hm_heap *h)
{
    char path[] = "/tmp/hm_heap_leakXXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    unlink(path);
    fflush(stderr);
    int saved = dup(STDERR_FILENO);
    assert_true(saved >= 0);
    assert_true(dup2(fd, STDERR_FILENO) >= 0);
    hm_status st = hm_heap_destroy(h);
    fflush(stderr);
    dup2(saved, STDERR_FILENO);
    close(saved);
    assert_int_equal(st, HM_OK);
    off_t len = lseek(fd, 0, SEEK_END);
    assert_true(len >= 0);
    char *text = calloc(1, (size_t)len + 1);
    assert_non_null(text);
    assert_int_equal(pread(fd, text, (size_t)len, 0), len);
    close(fd);
    return text;
}

/* SPEC 4: destroying a heap with live debug blocks reports them by site (on stderr). */
static void test_leak_report(void **state)
{
    (void)state;
    hm_manager *m = make("limit=64M");
    hm_heap *h = mk_heap(m, 0);
    void *p;
    assert_int_equal(hm_heap_alloc_debug(h, 100, HM_LEVEL_TASK, "leaky.c", 42, &p), HM_OK);
    assert_int_equal(hm_heap_alloc_debug(h, 60000, HM_LEVEL_TASK, "leaky.c", 42, &p), HM_OK);
    assert_int_equal(hm_heap_alloc_debug(h, 24, HM_LEVEL_TASK, "other/place.cpp", 7, &p), HM_OK);
    assert_int_equal(hm_heap_alloc_debug(h, 24, HM_LEVEL_TASK, "freed.c", 99, &p), HM_OK);
    free_ok(h, p); /* not a leak */
    (void)alloc_ok(h, 500, HM_LEVEL_TASK); /* plain leaks are not debug blocks */
    char *text = destroy_capturing_stderr(h);
    print_message("heap: leak report:\n%s", text);
    if (!strstr(text, "leaky.c:42")) fail_msg("leak report does not name leaky.c:42:\n%s", text);
    if (!strstr(text, "other/place.cpp:7")) fail_msg("leak report does not name other/place.cpp:7:\n%s", text);
    if (strstr(text, "freed.c")) fail_msg("leak report names a site with no live block:\n%s", text);
    if (!strstr(text, "2 blocks")) fail_msg("leak report does not count leaky.c's 2 blocks:\n%s", text);
    if (!strstr(text, "60100")) fail_msg("leak report does not give leaky.c's 60100 bytes:\n%s", text);
    free(text);
    assert_int_equal(tu_charge(m), 0);

    /* no live debug block: nothing said */
    h = mk_heap(m, HM_HEAP_THREADSAFE);
    assert_int_equal(hm_heap_alloc_debug(h, 100, HM_LEVEL_TASK, "quiet.c", 1, &p), HM_OK);
    free_ok(h, p);
    (void)alloc_ok(h, 100, HM_LEVEL_TASK);
    text = destroy_capturing_stderr(h);
    if (text[0]) fail_msg("a heap without live debug blocks reported:\n%s", text);
    free(text);
    destroy_mgr(m);
}

/* ---- destroy and decommit --------------------------------------------------------------------- */

/* SPEC 4: releasing a heap frees all its memory at once and gives its charge back. */
static void test_destroy_returns_charge(void **state)
{
    (void)state;
    hm_manager *m = make("limit=256M");
    void *own = NULL; /* the manager's own memory, which must stay */
    assert_int_equal(hm_virtual_alloc(m, NULL, 3 * PAGE, HM_MEM_RESERVE | HM_MEM_COMMIT, HM_PAGE_READWRITE, &own), HM_OK);
    uint64_t c0 = tu_charge(m);
    hm_manager_stats ms0;
    assert_int_equal(hm_manager_get_stats(m, &ms0), HM_OK);
    for (uint32_t flags = 0; flags <= 1; flags++) {
        hm_heap *h = mk_heap(m, flags);
        void *p;
        for (size_t s = 1; s <= 32768; s = s * 3 / 2 + 1) (void)alloc_ok(h, s, HM_LEVEL_TASK);
        for (int i = 0; i < 2000; i++) (void)alloc_ok(h, 48, HM_LEVEL_TASK); /* more than one page */
        for (int i = 0; i < 5; i++) (void)alloc_ok(h, 100000 + (size_t)i * 70000, HM_LEVEL_PROCESS);
        assert_int_equal(hm_heap_alloc_debug(h, 70, HM_LEVEL_TASK, "d.c", 1, &p), HM_OK);
        assert_int_equal(hm_heap_alloc_debug(h, 80000, HM_LEVEL_TASK, "d.c", 2, &p), HM_OK);
        assert_int_equal(hm_heap_alloc_aligned(h, 100, 4096, HM_LEVEL_TASK, &p), HM_OK);
        assert_int_equal(hm_heap_calloc(h, 100, 100, HM_LEVEL_TASK, &p), HM_OK);
        assert_int_equal(hm_heap_realloc(h, NULL, 700, HM_LEVEL_TASK, &p), HM_OK);
        void *fr = alloc_ok(h, 3000, HM_LEVEL_TASK);
        free_ok(h, fr);
        assert_true(tu_charge(m) > c0);
        assert_int_equal(tu_charge(m) - c0, heap_charge(h));
        check_books();
        fflush(stderr);
        int saved = dup(STDERR_FILENO), devnull = open("/dev/null", O_WRONLY);
        dup2(devnull, STDERR_FILENO); /* the leak report of the debug blocks: tested above */
        hm_status st = hm_heap_destroy(h);
        dup2(saved, STDERR_FILENO);
        close(saved);
        close(devnull);
        assert_int_equal(st, HM_OK);
        assert_int_equal(tu_charge(m), c0);
        check_books();
    }
    hm_manager_stats ms;
    assert_int_equal(hm_manager_get_stats(m, &ms), HM_OK);
    assert_int_equal(ms.va_used, ms0.va_used); /* the reservations went too */
    assert_int_equal(hm_virtual_free(m, own, 0, HM_MEM_RELEASE), HM_OK);
    assert_int_equal(tu_charge(m), 0);
    destroy_mgr(m);
}

/* heap.h / SPEC 3.2: pages that stay empty beyond a small cache are decommitted and uncharged. */
static void test_decommit(void **state)
{
    (void)state;
    for (uint32_t flags = 0; flags <= 1; flags++) {
    hm_manager *m = make("limit=256M");
    hm_heap *h = mk_heap(m, flags);
    enum { N = 200 }; /* 32 KiB blocks: 2 per 64 KiB page, 100 pages (2 segments) */
    void *p[N];
    for (int round = 0; round < 3; round++) {
        for (int i = 0; i < N; i++) {
            p[i] = alloc_ok(h, 32768, HM_LEVEL_TASK);
            memset(p[i], 0x33, 32768);
        }
        hm_heap_stats full = hstats(h);
        uint64_t c_full = tu_charge(m);
        assert_true(full.committed_pages >= full.segments + N / 2);
        assert_int_equal(c_full, heap_charge(h));
        for (int i = 0; i < N; i++) free_ok(h, p[i]);
        hm_heap_stats kept = hstats(h);
        assert_int_equal(kept.live_blocks, 0);
        assert_int_equal(tu_charge(m), heap_charge(h));
        /* the empty pages stay committed for a while (heap.h, HM_EMPTY_DELAY_MS); when that has
         * passed, the heap's next page operation decommits them; hm_heap_trim does it at once */
        hm_heap_stats empty;
        if (round == 1) {
            struct timespec d = {0, (HM_EMPTY_DELAY_MS + 20) * 1000000L};
            nanosleep(&d, NULL);
            void *q[40]; /* more than a thread cache lends: pages come from the empty cache (page operations) */
            for (int i = 0; i < 40; i++) q[i] = alloc_ok(h, 32768, HM_LEVEL_TASK);
            for (int i = 0; i < 40; i++) free_ok(h, q[i]);
            empty = hstats(h);
        } else {
            assert_int_equal(hm_heap_trim(h), HM_OK);
            empty = hstats(h);
        }
        if (round == 0)
            print_message("heap (flags %u): %d pages of blocks freed: committed pages %" PRIu64 " -> %" PRIu64
                          " -> %" PRIu64 " trimmed\n",
                          flags, N / 2, full.committed_pages, kept.committed_pages, empty.committed_pages);
        /* what stays: for a thread-safe heap what its threads' caches lend (heap.h): at most half of
         * the pages here; for both, the 20 pages that the probe above took and gave back (and the
         * pages committed ahead with them, heap.h) */
        uint64_t keep = flags ? (full.committed_pages - full.segments) / 2 : round == 1 ? 21 + HM_COMMIT_AHEAD : 1;
        if (empty.committed_pages > empty.segments + keep)
            fail_msg("flags %u: after freeing %d pages' blocks, %" PRIu64 " pages stay committed (%" PRIu64
                     " segments)", flags, N / 2, empty.committed_pages, empty.segments);
        assert_true(tu_charge(m) < c_full);
        assert_int_equal(tu_charge(m), heap_charge(h));
        check_books();
    }
    destroy_heap(h);
    assert_int_equal(tu_charge(m), 0);
    destroy_mgr(m);
    }
}

/* ---- budget ----------------------------------------------------------------------------------- */

#define BOPTS "limit=4M,reserve.appdomain=1M,reserve.process=1M"

/* Allocates chunk-sized large blocks at lv until the budget refuses; returns how many. */
static int fill_level(hm_manager *m, hm_heap *h, hm_level lv, size_t chunk, void **out, int max)
{
    int n = 0;
    for (;;) {
        assert_true(n < max);
        void *p = (void *)1;
        uint64_t c = tu_charge(m);
        hm_status st = hm_heap_alloc(h, chunk, lv, &p);
        if (st == HM_E_COMMITMENT_LIMIT) {
            assert_null(p);
            assert_int_equal(tu_charge(m), c); /* SPEC 3.3: nothing charged */
            return n;
        }
        if (st != HM_OK) fail_msg("level %d alloc = %#x: %s", (int)lv, (unsigned)st, hm_last_detail());
        out[n++] = p;
    }
}

/* SPEC 3.2, 4: heap pages are admitted at the request's level: task requests are refused before
 * appdomain ones before process ones; refusals leave the heap usable; committed memory serves any
 * level; the charge always equals the heap's committed pages. */
static void test_budget_levels(void **state)
{
    (void)state;
    hm_manager *m = make(BOPTS);
    hm_heap *h = mk_heap(m, HM_HEAP_THREADSAFE);
    const uint64_t thr[3] = {2 * MiB, 3 * MiB, 4 * MiB};
    void *seed = alloc_ok(h, 64, HM_LEVEL_TASK); /* a committed page of class 64 with room */
    fill(seed, 64, 60);
    const size_t chunk = HM_HPAGE_SIZE; /* a large block of one heap page's size: refusal means no page fits */
    void *blk[3][80];
    int n[3];
    for (hm_level lv = HM_LEVEL_TASK; lv <= HM_LEVEL_PROCESS; lv++) {
        n[lv] = fill_level(m, h, lv, chunk, blk[lv], 80);
        uint64_t c = tu_charge(m);
        if (c > thr[lv] || c + chunk <= thr[lv])
            fail_msg("level %d refused at charge %" PRIu64 " (threshold %" PRIu64 ", request %zu)", (int)lv, c, thr[lv], chunk);
        assert_int_equal(c, heap_charge(h));
        check_books();
        /* a lower level is still refused, a higher one not yet (except process, the last) */
        if (lv < HM_LEVEL_PROCESS) {
            void *p = (void *)1;
            for (hm_level lo = HM_LEVEL_TASK; lo <= lv; lo++) {
                assert_int_equal(hm_heap_alloc(h, chunk, lo, &p), HM_E_COMMITMENT_LIMIT);
                assert_null(p);
            }
        }
        if (lv == HM_LEVEL_TASK) {
            /* memory already committed serves any level: a block in seed's page */
            void *q = alloc_ok(h, 64, HM_LEVEL_TASK);
            assert_int_equal((uintptr_t)q & ~(uintptr_t)(HM_HPAGE_SIZE - 1), (uintptr_t)seed & ~(uintptr_t)(HM_HPAGE_SIZE - 1));
            free_ok(h, q);
            /* a class with no page yet needs a new page: refused at task level */
            hm_heap_stats s0 = hstats(h);
            q = (void *)1;
            assert_int_equal(hm_heap_alloc(h, 1000, HM_LEVEL_TASK, &q), HM_E_COMMITMENT_LIMIT);
            assert_null(q);
            q = (void *)1;
            assert_int_equal(hm_heap_alloc_debug(h, 3000, HM_LEVEL_TASK, "b.c", 1, &q), HM_E_COMMITMENT_LIMIT);
            assert_null(q);
            assert_stats_equal(s0, hstats(h), "a refused small allocation");
            assert_int_equal(tu_charge(m), heap_charge(h));
        }
    }
    assert_true(n[HM_LEVEL_APPDOMAIN] > 0);
    assert_true(n[HM_LEVEL_PROCESS] > 0);
    hm_manager_stats ms;
    assert_int_equal(hm_manager_get_stats(m, &ms), HM_OK);
    assert_true(ms.charge <= ms.limit);
    assert_true(ms.peak_charge <= ms.limit);
    for (int lv = 0; lv < 3; lv++) assert_true(ms.refused[lv] > 0);
    /* a refused request left the heap usable: free one block, the same request succeeds */
    free_ok(h, blk[HM_LEVEL_TASK][0]);
    void *again = alloc_ok(h, chunk, HM_LEVEL_PROCESS);
    fill(again, chunk, 61);
    check_fill(seed, 64, 60);
    assert_int_equal(tu_charge(m), heap_charge(h));
    check_books();
    destroy_heap(h);
    assert_int_equal(tu_charge(m), 0);
    destroy_mgr(m);
}

/* SPEC 3.3: a task-level heap request that cannot fit waits wait.task, then HOST_E_TIMEOUT with
 * nothing charged; the heap stays usable. */
static void test_wait_timeout(void **state)
{
    (void)state;
    hm_manager *m = make("limit=2M,wait.task=100ms");
    hm_heap *h = mk_heap(m, HM_HEAP_THREADSAFE);
    /* 1900 KiB + a segment header + one 64 KiB page: no room left for another 64 KiB page */
    void *big = alloc_ok(h, 1900 * KiB, HM_LEVEL_PROCESS);
    void *small = alloc_ok(h, 100, HM_LEVEL_TASK);
    uint64_t c0 = tu_charge(m);
    assert_true(c0 + HM_HPAGE_SIZE > 2 * MiB);
    hm_heap_stats s0 = hstats(h);
    for (int k = 0; k < 3; k++) {
        void *p = (void *)1;
        double t0 = now_s();
        hm_status st = k == 0   ? hm_heap_alloc(h, MiB, HM_LEVEL_TASK, &p)              /* a large block */
                       : k == 1 ? hm_heap_alloc(h, 1000, HM_LEVEL_TASK, &p)             /* a new small page */
                                : hm_heap_alloc_debug(h, 3000, HM_LEVEL_TASK, "w.c", 1, &p);
        double dt = now_s() - t0;
        if (st != HM_E_HOST_TIMEOUT)
            fail_msg("task request %d over the budget = %#x (%s), expected HOST_E_TIMEOUT", k, (unsigned)st,
                     hm_status_name(st));
        assert_null(p);
        if (dt < 0.09 || dt > 5.0) fail_msg("the wait took %.3f s, wait.task is 0.1 s", dt);
        assert_int_equal(tu_charge(m), c0);
        assert_stats_equal(s0, hstats(h), "a timed-out request");
    }
    /* a block in the committed page needs no new memory: no wait */
    void *in_page = alloc_ok(h, 100, HM_LEVEL_TASK);
    free_ok(h, in_page);
    hm_manager_stats ms;
    assert_int_equal(hm_manager_get_stats(m, &ms), HM_OK);
    assert_int_equal(ms.timeouts[HM_LEVEL_TASK], 3);
    /* the process level does not wait (wait.process = 0): refused at once */
    void *p = (void *)1;
    double t0 = now_s();
    assert_int_equal(hm_heap_alloc(h, MiB, HM_LEVEL_PROCESS, &p), HM_E_COMMITMENT_LIMIT);
    assert_true(now_s() - t0 < 0.09);
    assert_null(p);
    /* usable: memory given back lets the task request through */
    free_ok(h, big);
    p = alloc_ok(h, MiB, HM_LEVEL_TASK);
    memset(p, 7, MiB);
    free_ok(h, p);
    free_ok(h, small);
    check_books();
    destroy_heap(h);
    destroy_mgr(m);
}

/* The COM face of the same rules (SPEC 1.1): memory refusals and huge sizes are E_OUTOFMEMORY, a wait
 * that runs out HOST_E_TIMEOUT, Free of wild pointers HOST_E_INVALIDOPERATION. */
static void test_com_codes(void **state)
{
    (void)state;
    IHostControl *hc = NULL;
    assert_int_equal(hm_create_host_control("limit=2M,wait.task=50ms", &hc), S_OK);
    IHostMemoryManager *mm = NULL;
    assert_int_equal(IHostControl_GetHostManager(hc, &IID_IHostMemoryManager, (void **)&mm), S_OK);
    IHostMalloc *hp = NULL;
    assert_int_equal(IHostMemoryManager_CreateMalloc(mm, MALLOC_THREADSAFE, &hp), S_OK);
    void *p = (void *)1;
    assert_int_equal(IHostMalloc_Alloc(hp, (SIZE_T)-1, eProcessCritical, &p), E_OUTOFMEMORY);
    assert_null(p);
    p = (void *)1;
    assert_int_equal(IHostMalloc_Alloc(hp, (SIZE_T)-1 / 2, eProcessCritical, &p), E_OUTOFMEMORY);
    assert_null(p);
    p = (void *)1;
    assert_int_equal(IHostMalloc_DebugAlloc(hp, (SIZE_T)-1, eProcessCritical, (char *)"c.c", 1, &p), E_OUTOFMEMORY);
    assert_null(p);
    p = (void *)1;
    assert_int_equal(IHostMalloc_Alloc(hp, (SIZE_T)3 << 20, eProcessCritical, &p), E_OUTOFMEMORY);
    assert_null(p);
    void *held = NULL;
    assert_int_equal(IHostMalloc_Alloc(hp, (SIZE_T)1 << 20, eProcessCritical, &held), S_OK);
    p = (void *)1;
    assert_int_equal(IHostMalloc_Alloc(hp, (SIZE_T)3 << 19, eTaskCritical, &p), HOST_E_TIMEOUT);
    assert_null(p);
    assert_int_equal(IHostMalloc_Free(hp, held), S_OK);
    int local;
    assert_int_equal(IHostMalloc_Free(hp, &local), HOST_E_INVALIDOPERATION);
    assert_int_equal(IHostMalloc_Free(hp, (void *)1), HOST_E_INVALIDOPERATION);
    assert_int_equal(IHostMalloc_Alloc(hp, 0, eTaskCritical, &p), S_OK);
    assert_int_equal(IHostMalloc_Free(hp, (char *)p + 1), HOST_E_INVALIDOPERATION);
    assert_int_equal(IHostMalloc_Free(hp, p), S_OK);
    IHostMalloc_Release(hp);
    IHostMemoryManager_Release(mm);
    IHostControl_Release(hc);
}

/* ---- executable heaps ------------------------------------------------------------------------- */

/* SPEC 4: MALLOC_EXECUTABLE memory holds code that runs. */
static void test_executable(void **state)
{
    (void)state;
#if defined(__x86_64__)
    static const unsigned char code[] = {0xb8, 0x2a, 0x00, 0x00, 0x00, 0xc3}; /* mov eax, 42; ret */
    hm_manager *m = make("limit=64M");
    for (uint32_t flags = HM_HEAP_EXECUTABLE; flags <= (HM_HEAP_EXECUTABLE | HM_HEAP_THREADSAFE); flags++) {
        hm_heap *h = mk_heap(m, flags);
        const size_t sizes[] = {sizeof code, 1000, 100000};
        for (size_t k = 0; k < 3; k++) {
            void *p = NULL;
            hm_status st = hm_heap_alloc(h, sizes[k], HM_LEVEL_TASK, &p);
            if (st != HM_OK)
                fail_msg("executable heap: alloc(%zu) = %#x (%s): %s — the system refuses W+X and the heap has no "
                         "second view (SPEC 4)",
                         sizes[k], (unsigned)st, hm_status_name(st), hm_last_detail());
            unsigned char *at = (unsigned char *)p + sizes[k] - sizeof code;
            memcpy(at, code, sizeof code);
            __builtin___clear_cache((char *)at, (char *)at + sizeof code);
            int (*fn)(void);
            void *addr = at;
            memcpy(&fn, &addr, sizeof fn);
            assert_int_equal(fn(), 42);
            free_ok(h, p);
        }
        destroy_heap(h);
    }
    assert_int_equal(tu_charge(m), 0);
    destroy_mgr(m);
#else
    skip();
#endif
}


#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
/* Under AddressSanitizer a freed small block is poisoned past the 16 bytes the heap keeps in it, and a
 * block handed out is the program's up to its usable size (src/heap/track.h), small and large. */
static void test_asan_poison(void **state)
{
    (void)state;
    if (hm_heap_untracked) skip(); /* (heaps described to no checker) */
    hm_manager *m = make("limit=256M");
    for (int f = 0; f < 2; f++) {
        hm_heap *h = mk_heap(m, f ? HM_HEAP_THREADSAFE : 0);
        const size_t sizes[] = {24, 256, 5000, 30000, 100000, 3 << 20};
        for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
            char *p = NULL;
            assert_int_equal(hm_heap_alloc(h, sizes[i], HM_LEVEL_PROCESS, (void **)&p), HM_OK);
            size_t u = hm_heap_usable_size(h, p);
            assert_true(u >= sizes[i]);
            assert_null(__asan_region_is_poisoned(p, u));
            memset(p, 7, u);
            free_ok(h, p);
            assert_false(__asan_address_is_poisoned(p + 15));
            if (u <= (32 << 10) && !__asan_address_is_poisoned(p + 16))
                fail_msg("size %zu: a freed block of %zu usable bytes is not poisoned", sizes[i], u);
            char *q = NULL; /* the same size again: maybe the same block, unpoisoned again */
            assert_int_equal(hm_heap_alloc(h, sizes[i], HM_LEVEL_PROCESS, (void **)&q), HM_OK);
            assert_null(__asan_region_is_poisoned(q, hm_heap_usable_size(h, q)));
            free_ok(h, q);
        }
        assert_int_equal(hm_heap_destroy(h), HM_OK);
    }
    assert_int_equal(hm_manager_destroy(m), HM_OK);
}
#endif

int main(void)
{
    hm_heap_untracked = getenv("HM_TEST_UNTRACKED") != NULL; /* (src/heap/track.h; the *_untracked tests) */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_create),
        cmocka_unit_test(test_alloc_zero_one),
        cmocka_unit_test(test_block_index),
        cmocka_unit_test(test_size_classes),
        cmocka_unit_test(test_medium),
        cmocka_unit_test(test_span_cache),
        cmocka_unit_test(test_large),
        cmocka_unit_test(test_large_cache_and_trim),
        cmocka_unit_test(test_large_cache_ages),
        cmocka_unit_test(test_large_cache_grows),
        cmocka_unit_test(test_huge),
        cmocka_unit_test(test_invalid_level),
        cmocka_unit_test(test_aligned),
        cmocka_unit_test(test_refusal_takes_back_cached_blocks),
#if defined(__SANITIZE_ADDRESS__)
        cmocka_unit_test(test_asan_poison),
#endif
        cmocka_unit_test(test_heap_calloc),
        cmocka_unit_test(test_heap_realloc),
        cmocka_unit_test(test_free_errors),
        cmocka_unit_test(test_debug_sites),
        cmocka_unit_test(test_debug_zero_size),
        cmocka_unit_test(test_leak_report),
        cmocka_unit_test(test_destroy_returns_charge),
        cmocka_unit_test(test_decommit),
        cmocka_unit_test(test_budget_levels),
        cmocka_unit_test(test_wait_timeout),
        cmocka_unit_test(test_com_codes),
        cmocka_unit_test(test_executable),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
