/* heap_stress.c — trying to break the heaps' thread ownership design (heap.h, tcache.c): targeted
 * tests of the places where pages and blocks change hands, then randomized multi-threaded runs with a
 * reference model. The environment variable HM_STRESS=<factor> (default 1) multiplies the rounds
 * and run times of the randomized tests (HM_STRESS=20 for a long run). */
#define _GNU_SOURCE
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sched.h>
#include <stdarg.h>
#include <time.h>

#include "heap/heap_internal.h"
#include "manager/manager.h"
#include "testutil.h"
#include "vmap/meta.h"
#include "vmap/vmap.h"

#define KiB ((size_t)1024)
#define MiB ((size_t)1 << 20)
#define UNDER_TSAN (!KERNEL_CHECK)

/* ---- helpers ---------------------------------------------------------------------------------- */

static double scale(void)
{
    const char *e = getenv("HM_STRESS");
    double f = e ? atof(e) : 1.0;
    return f > 0 ? f : 1.0;
}

static hm_manager *make(const char *opts)
{
    hm_manager *m = NULL;
    hm_status st = hm_manager_create(opts, &m);
    if (st != HM_OK) fail_msg("hm_manager_create(\"%s\") = %#x: %s", opts, (unsigned)st, hm_last_detail());
    return m;
}

static hm_heap *mk_heap(hm_manager *m, uint32_t flags)
{
    hm_heap *h = NULL;
    hm_status st = hm_heap_create(m, flags, &h);
    if (st != HM_OK) fail_msg("hm_heap_create = %#x: %s", (unsigned)st, hm_last_detail());
    return h;
}

static hm_heap_stats hstats(hm_heap *h)
{
    hm_heap_stats s;
    assert_int_equal(hm_heap_get_stats(h, &s), HM_OK);
    return s;
}

static hm_manager_stats mstats(hm_manager *m)
{
    hm_manager_stats s;
    assert_int_equal(hm_manager_get_stats(m, &s), HM_OK);
    return s;
}

static uint64_t charge(hm_manager *m) { return mstats(m).charge; }

/* The charge a heap's pages stand for (tests/heap.c): segment headers, 64 KiB pages, large blocks. */
static uint64_t heap_charge(hm_heap *h)
{
    hm_heap_stats s = hstats(h);
    uint64_t hdr = (sizeof(hm_segment) + 4095) & ~(uint64_t)4095;
    return s.segments * hdr + (s.committed_pages - s.segments) * HM_HPAGE_SIZE + s.large_bytes + s.cached_large_bytes;
}

__attribute__((unused)) static void check_books(void)
{
    hm_status st = hm_vmap_check(!UNDER_TSAN);
    if (st != HM_OK) fail_msg("hm_vmap_check: %#x: %s", (unsigned)st, hm_last_detail());
}

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

__attribute__((unused)) static void sleep_ms(int ms)
{
    struct timespec t = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&t, NULL);
}

static uint64_t rnd(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *s = x;
    return x * 0x2545F4914F6CDD1Dull;
}

/* The first failure seen by any thread (workers must not call cmocka's fail_msg). */
static pthread_mutex_t fail_lock = PTHREAD_MUTEX_INITIALIZER;
static char fail_text[1024];
static atomic_bool any_failed;

static void bad(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void bad(const char *fmt, ...)
{
    pthread_mutex_lock(&fail_lock);
    if (!atomic_load(&any_failed)) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(fail_text, sizeof fail_text, fmt, ap);
        va_end(ap);
        atomic_store(&any_failed, true);
    }
    pthread_mutex_unlock(&fail_lock);
}

static void check_failed(void)
{
    if (atomic_load(&any_failed)) {
        atomic_store(&any_failed, false);
        fail_msg("%s", fail_text);
    }
}

/* Content patterns: blocks up to 2 KiB are filled entirely; bigger ones at their first and last
 * KiB and one word every 4 KiB (enough to see a block handed out twice or overwritten). */
static inline uint8_t patb(uint32_t seed, size_t i)
{
    uint32_t x = seed ^ (uint32_t)(i * 0x9E3779B1u);
    x ^= x >> 15;
    x *= 0x2c1b3c6du;
    return (uint8_t)(x >> 24);
}

__attribute__((unused)) static void pfill(void *p, size_t n, uint32_t seed)
{
    uint8_t *c = p;
    if (n <= 2048) {
        for (size_t i = 0; i < n; i++) c[i] = patb(seed, i);
        return;
    }
    for (size_t i = 0; i < 1024; i++) c[i] = patb(seed, i);
    for (size_t i = n - 1024; i < n; i++) c[i] = patb(seed, i);
    for (size_t i = 4096; i + 8 <= n - 1024; i += 4096)
        for (size_t k = 0; k < 8; k++) c[i + k] = patb(seed, i + k);
}

/* Whether the pattern pfill(p, n, seed) made is intact below limit; the first bad offset in *at. */
__attribute__((unused)) static bool pcheck(const void *p, size_t n, uint32_t seed, size_t limit, size_t *at)
{
    const uint8_t *c = p;
#define PC(i)                                                                                                         \
    do {                                                                                                              \
        size_t i_ = (i);                                                                                              \
        if (i_ < limit && c[i_] != patb(seed, i_)) {                                                                  \
            *at = i_;                                                                                                 \
            return false;                                                                                             \
        }                                                                                                             \
    } while (0)
    if (n <= 2048) {
        for (size_t i = 0; i < n; i++) PC(i);
        return true;
    }
    for (size_t i = 0; i < 1024; i++) PC(i);
    for (size_t i = n - 1024; i < n; i++) PC(i);
    for (size_t i = 4096; i + 8 <= n - 1024; i += 4096)
        for (size_t k = 0; k < 8; k++) PC(i + k);
#undef PC
    return true;
}

static const char *sname(hm_status st) { return hm_status_name(st); }

/* ---- 1. ownerless pages emptied through xfree ------------------------------------------------- */

typedef struct handoff {
    hm_heap *h;
    size_t size;
    int n;
    void **p;
    hm_status st;
} handoff;

static void *alloc_and_exit(void *arg)
{
    handoff *a = arg;
    for (int i = 0; i < a->n; i++) {
        if ((a->st = hm_heap_alloc(a->h, a->size, HM_LEVEL_TASK, &a->p[i]))) return NULL;
        memset(a->p[i], 0x5a, a->size);
    }
    return NULL; /* exits: its pages, holding live blocks, become the heap's own */
}

static void *free_and_exit(void *arg)
{
    handoff *a = arg;
    for (int i = 0; i < a->n; i++)
        if ((a->st = hm_heap_free(a->h, a->p[i]))) return NULL;
    return NULL; /* exits: its cache's blocks go onto the ownerless pages' xfree */
}

/* heap.h, hm_heap_trim: "gives back now what the heap keeps for reuse: its empty pages". A thread
 * allocates blocks and exits (its pages become ownerless with live blocks); another frees them all
 * and exits (the blocks reach the ownerless pages through their xfree, where nobody collects them).
 * Afterwards no block is live and no thread runs: every page is empty, and trim must leave no page
 * committed but the segment header. */
static void test_ownerless_pages_trimmed(void **state)
{
    (void)state;
    hm_manager *m = make("limit=256M");
    hm_heap *h = mk_heap(m, HM_HEAP_THREADSAFE);
    enum { N = 512 };
    void *p[N];
    const size_t sizes[] = {4096, 100, 20000};
    for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
        handoff a = {h, sizes[k], N, p, HM_OK};
        pthread_t t;
        assert_int_equal(pthread_create(&t, NULL, alloc_and_exit, &a), 0);
        pthread_join(t, NULL);
        assert_int_equal(a.st, HM_OK);
        assert_int_equal(pthread_create(&t, NULL, free_and_exit, &a), 0);
        pthread_join(t, NULL);
        assert_int_equal(a.st, HM_OK);
        hm_heap_stats s = hstats(h);
        assert_int_equal(s.live_blocks, 0);
        assert_int_equal(s.live_bytes, 0);
        assert_int_equal(hm_heap_trim(h), HM_OK);
        s = hstats(h);
        print_message("ownerless pages, %zu-byte blocks: after trim %" PRIu64 " pages committed in %" PRIu64
                      " segments\n", sizes[k], s.committed_pages, s.segments);
        assert_int_equal(charge(m), heap_charge(h));
        if (s.committed_pages != s.segments)
            fail_msg("%zu-byte blocks: no live block, no thread, trimmed: yet %" PRIu64 " pages stay committed "
                     "(%" PRIu64 " segment headers)", sizes[k], s.committed_pages, s.segments);
    }
    assert_int_equal(hm_heap_destroy(h), HM_OK);
    assert_int_equal(charge(m), 0);
    assert_int_equal(hm_manager_destroy(m), HM_OK);
}

/* ---- 2. a thread's caches of destroyed heaps -------------------------------------------------- */

/* tcache.c: a thread's cache of a heap that is destroyed is only freed at the thread's exit. A
 * long-lived thread that makes, uses and destroys heaps (a request's arena, say) must not keep one
 * cache (about 42 KiB of metadata) per heap it ever used. */
static void test_dead_heap_caches_freed(void **state)
{
    (void)state;
    hm_manager *m = make("limit=256M");
    hm_heap *keep = mk_heap(m, HM_HEAP_THREADSAFE); /* a heap the thread uses all along */
    void *q;
    assert_int_equal(hm_heap_alloc(keep, 40, HM_LEVEL_TASK, &q), HM_OK);
    enum { ROUNDS = 300 };
    size_t before = atomic_load(&hm_meta.live_bytes);
    for (int r = 0; r < ROUNDS; r++) {
        hm_heap *h = mk_heap(m, HM_HEAP_THREADSAFE);
        void *p;
        assert_int_equal(hm_heap_alloc(h, 64, HM_LEVEL_TASK, &p), HM_OK);
        assert_int_equal(hm_heap_free(h, p), HM_OK);
        assert_int_equal(hm_heap_destroy(h), HM_OK);
        assert_int_equal(hm_heap_free(keep, q), HM_OK); /* the old heap's cache is not the first any more */
        assert_int_equal(hm_heap_alloc(keep, 40, HM_LEVEL_TASK, &q), HM_OK);
    }
    size_t after = atomic_load(&hm_meta.live_bytes);
    print_message("%d heaps made, used and destroyed by one thread: metadata %zu -> %zu bytes (a cache is %zu)\n",
                  ROUNDS, before, after, sizeof(hm_tcache));
    assert_int_equal(hm_heap_free(keep, q), HM_OK);
    assert_int_equal(hm_heap_destroy(keep), HM_OK);
    assert_int_equal(hm_manager_destroy(m), HM_OK);
    if (after > before + 8 * sizeof(hm_tcache))
        fail_msg("the thread keeps the caches of %zu destroyed heaps (%zu bytes of metadata)",
                 (after - before) / sizeof(hm_tcache), after - before);
}

/* ---- 3. a double free racing the owner's refill ----------------------------------------------- */

/* Blocks that the program freed are never its again until an allocation returns them: a second
 * Free of one must be HOST_E_INVALIDOPERATION whatever the heap does with it meanwhile, here while
 * the owner refills its cache from the page that holds it (tcache.c: the refill sets the blocks'
 * live bits before it tags them as cached). */
#define RF_N 512 /* blocks the owner cycles through */

static struct {
    hm_heap *h;
    uintptr_t blk[RF_N];
    atomic_int freed[RF_N];   /* 1: the program freed it and no allocation has returned it since */
    atomic_int go, round, stop, done, started;
    uintptr_t target[64];     /* the head of the owner's free list: what its refill takes first */
    int ntarget;
    atomic_ulong tries, hits;
    uintptr_t bad_block;
    int bad_round;
} rf;

static int rf_index(uintptr_t p)
{
    for (int i = 0; i < RF_N; i++)
        if (rf.blk[i] == p) return i;
    return -1;
}

/* The second thread: while the owner is inside an allocation, frees again every block the program
 * has freed. Any HM_OK is a block taken twice. */
static void *rf_doubler(void *arg)
{
    (void)arg;
    int seen = 0;
    while (!atomic_load(&rf.stop)) {
        int r = atomic_load(&rf.round);
        if (r == seen) {
            sched_yield();
            continue;
        }
        atomic_store(&rf.started, r);
        while (atomic_load(&rf.go)) { /* set before round: the owner is about to allocate */
            for (int k = 0; k < rf.ntarget && atomic_load(&rf.go); k++) {
                int i = rf_index(rf.target[k]);
                if (i < 0 || atomic_load(&rf.freed[i]) != 1) continue;
                atomic_fetch_add(&rf.tries, 1);
                hm_status st = hm_heap_free(rf.h, (void *)rf.blk[i]);
                if (st == HM_OK) {
                    atomic_fetch_add(&rf.hits, 1);
                    rf.bad_block = rf.blk[i];
                    rf.bad_round = r;
                    atomic_store(&rf.freed[i], 2);
                } else if (st != HM_E_HOST_INVALIDOPERATION) {
                    bad("double free of %#lx = %s", (unsigned long)rf.blk[i], sname(st));
                }
            }
        }
        seen = r;
        atomic_store(&rf.done, r);
    }
    return NULL;
}

static void test_double_free_during_refill(void **state)
{
    (void)state;
    hm_manager *m = make("limit=256M");
    rf.h = mk_heap(m, HM_HEAP_THREADSAFE);
    const unsigned cls = 0; /* 16-byte blocks: a cache holds 128, a refill takes 64 */
    void *p[RF_N];
    for (int i = 0; i < RF_N; i++) {
        assert_int_equal(hm_heap_alloc(rf.h, 16, HM_LEVEL_TASK, &p[i]), HM_OK);
        rf.blk[i] = (uintptr_t)p[i];
    }
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, rf_doubler, NULL), 0);
    bool live[RF_N];
    for (int i = 0; i < RF_N; i++) live[i] = true;
    int rounds = (int)(20000 * scale()), r;
    double deadline = now_s() + 2 * scale();
    uint64_t seed = 88172645463325252ull;
    for (r = 1; r <= rounds && now_s() < deadline && !atomic_load(&rf.hits) && !atomic_load(&any_failed); r++) {
        /* free a random half of the live blocks: the cache fills and gives its oldest back to the page */
        for (int i = 0; i < RF_N; i++)
            if (live[i] && (rnd(&seed) & 1)) {
                assert_int_equal(hm_heap_free(rf.h, (void *)rf.blk[i]), HM_OK);
                live[i] = false;
                atomic_store(&rf.freed[i], 1);
            }
        /* empty this thread's bin: the next allocation refills from the page's free list */
        hm_tcache_bin *bin = &hm_thread_caches->bin[cls];
        while (atomic_load(&bin->n)) {
            void *q;
            assert_int_equal(hm_heap_alloc(rf.h, 16, HM_LEVEL_TASK, &q), HM_OK);
            int i = rf_index((uintptr_t)q);
            assert_true(i >= 0);
            atomic_store(&rf.freed[i], 0);
            live[i] = true;
        }
        int freed = 0;
        for (int i = 0; i < RF_N; i++) freed += !live[i];
        if (freed < 64) continue;
        hm_tcache *c = hm_thread_caches;
        assert_int_equal(c->heap_id, rf.h->id);
        hm_hpage *pg = c->lists.avail[cls];
        assert_non_null(pg);
        rf.ntarget = 0;
        for (uintptr_t b = pg->free; b && rf.ntarget < 64; b = *(uintptr_t *)b ^ rf.h->key ^ b)
            rf.target[rf.ntarget++] = b;
        /* the race: one allocation (a refill of up to 64 blocks) while the other thread frees again */
        atomic_store(&rf.go, 1);
        atomic_store(&rf.round, r);
        while (atomic_load(&rf.started) != r) sched_yield();
        for (volatile int spin = (int)(rnd(&seed) % 64); spin > 0; spin--) {
        }
        void *q;
        assert_int_equal(hm_heap_alloc(rf.h, 16, HM_LEVEL_TASK, &q), HM_OK);
        int qi = rf_index((uintptr_t)q);
        assert_true(qi >= 0);
        atomic_store(&rf.go, 0);
        while (atomic_load(&rf.done) != r) sched_yield();
        if (atomic_load(&rf.freed[qi]) == 2) { /* freed again after this thread got it back: not a verdict */
            atomic_store(&rf.hits, atomic_load(&rf.hits) - 1);
            atomic_store(&rf.freed[qi], 0);
            live[qi] = false; /* it is in the other thread's cache now */
            continue;
        }
        atomic_store(&rf.freed[qi], 0);
        live[qi] = true;
    }
    atomic_store(&rf.stop, 1);
    pthread_join(t, NULL);
    print_message("double free during refill: %d rounds, %lu second frees tried, %lu accepted\n", r - 1,
                  (unsigned long)atomic_load(&rf.tries), (unsigned long)atomic_load(&rf.hits));
    check_failed();
    if (atomic_load(&rf.hits))
        fail_msg("round %d: a second Free of %#lx (freed by the program, never returned by an allocation since) "
                 "returned HM_OK while the owner refilled its cache: the block is now in two threads' caches",
                 rf.bad_round, (unsigned long)rf.bad_block);
    /* no teardown through the heap: its blocks may be in two caches; destroy takes everything */
    assert_int_equal(hm_heap_destroy(rf.h), HM_OK);
    assert_int_equal(hm_manager_destroy(m), HM_OK);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ownerless_pages_trimmed),
        cmocka_unit_test(test_dead_heap_caches_freed),
        cmocka_unit_test(test_double_free_during_refill),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
