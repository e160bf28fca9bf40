/* heap_testutil.h — what the heap tests share: managers and heaps that must be made, statistics, the
 * charge a heap's pages stand for, the map's self-check, a clock. */
#ifndef HM_HEAP_TESTUTIL_H
#define HM_HEAP_TESTUTIL_H

#include <time.h>

#include "heap/heap.h"
#include "testutil.h"
#include "vmap/vmap.h"

static inline hm_manager *make(const char *opts)
{
    hm_manager *m = NULL;
    hm_status st = hm_manager_create(opts, &m);
    if (st != HM_OK) fail_msg("hm_manager_create(\"%s\") = %#x: %s", opts, (unsigned)st, hm_last_detail());
    assert_non_null(m);
    return m;
}

static inline void destroy_mgr(hm_manager *m)
{
    hm_status st = hm_manager_destroy(m);
    if (st != HM_OK) fail_msg("hm_manager_destroy = %#x: %s", (unsigned)st, hm_last_detail());
}

static inline hm_heap *mk_heap(hm_manager *m, uint32_t flags)
{
    hm_heap *h = NULL;
    hm_status st = hm_heap_create(m, flags, &h);
    if (st != HM_OK) fail_msg("hm_heap_create(flags %#x) = %#x: %s", flags, (unsigned)st, hm_last_detail());
    assert_non_null(h);
    return h;
}

static inline void destroy_heap(hm_heap *h)
{
    hm_status st = hm_heap_destroy(h);
    if (st != HM_OK) fail_msg("hm_heap_destroy = %#x: %s", (unsigned)st, hm_last_detail());
}

static inline hm_heap_stats hstats(hm_heap *h)
{
    hm_heap_stats s;
    assert_int_equal(hm_heap_get_stats(h, &s), HM_OK);
    return s;
}

/* The charge a heap's pages stand for (heap.h layout): per segment its header pages (the struct,
 * rounded to 4 KiB), 64 KiB per other committed page, and the large blocks, cached ones included.
 * SPEC 3.2: every committed byte of a heap is charged to its manager. */
static inline uint64_t heap_charge(hm_heap *h)
{
    hm_heap_stats s = hstats(h);
    uint64_t hdr = (sizeof(hm_segment) + 4095) & ~(uint64_t)4095;
    return s.segments * hdr + (s.committed_pages - s.segments) * HM_HPAGE_SIZE + s.large_bytes + s.cached_large_bytes;
}

/* The map's invariants, and the kernel's mappings where that is cheap (not under ThreadSanitizer). */
static inline void check_books(void)
{
    hm_status st = hm_vmap_check(KERNEL_CHECK);
    if (st != HM_OK) fail_msg("hm_vmap_check: %#x: %s", (unsigned)st, hm_last_detail());
}

static inline double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static inline void sleep_ms(int ms)
{
    struct timespec t = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&t, NULL);
}

/* xorshift64*: a fast reproducible stream for the randomized tests */
static inline uint64_t next_rand(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *s = x;
    return x * 0x2545F4914F6CDD1Dull;
}

#endif
