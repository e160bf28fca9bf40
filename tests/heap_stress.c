/* heap_stress.c — trying to break the heaps' thread ownership design (heap.h, tcache.c): targeted
 * tests of the places where pages and blocks change hands, then randomized multi-threaded runs with a
 * reference model. The environment variable HM_STRESS=<factor> (default 1) multiplies the rounds
 * and run times of the randomized tests (HM_STRESS=20 for a long run); HM_STRESS_ONLY=<substring> runs
 * only the tests whose name holds it. */
#define _GNU_SOURCE
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <time.h>

#include "heap/heap_internal.h"
#include "heap/track.h"
#include "manager/manager.h"
#include "testutil.h"
#include "heap_testutil.h"
#include "heap_pages.h"
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

static void pfill(void *p, size_t n, uint32_t seed)
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
static bool pcheck(const void *p, size_t n, uint32_t seed, size_t limit, size_t *at)
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
        assert_int_equal(tu_charge(m), heap_charge(h));
        if (s.committed_pages != s.segments)
            fail_msg("%zu-byte blocks: no live block, no thread, trimmed: yet %" PRIu64 " pages stay committed "
                     "(%" PRIu64 " segment headers)", sizes[k], s.committed_pages, s.segments);
    }
    assert_int_equal(hm_heap_destroy(h), HM_OK);
    assert_int_equal(tu_charge(m), 0);
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

/* ---- 3. a double free racing the owner's allocation ------------------------------------------- */

/* Blocks that the program freed are never its again until an allocation returns them: a second
 * Free of one (from another thread: the foreign path, which reads the block's tag and then its live
 * bit) must be HOST_E_INVALIDOPERATION whatever the heap does with it meanwhile, here while the
 * owner allocates from the free list of the page that holds it. */
#define RF_N 512 /* blocks the owner cycles through */

static struct {
    hm_heap *h;
    uintptr_t blk[RF_N];
    atomic_int freed[RF_N];   /* 1: the program freed it and no allocation has returned it since */
    atomic_int go, round, stop, done, started;
    uintptr_t target[64];     /* the first free blocks of the owner's page: what its refill takes first */
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
    const unsigned cls = 0; /* 16-byte blocks */
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
        /* free a random half of the live blocks: into the bin, and past it into the page's free bits */
        for (int i = 0; i < RF_N; i++)
            if (live[i] && (next_rand(&seed) & 1)) {
                assert_int_equal(hm_heap_free(rf.h, (void *)rf.blk[i]), HM_OK);
                live[i] = false;
                atomic_store(&rf.freed[i], 1);
            }
        int freed = 0;
        for (int i = 0; i < RF_N; i++) freed += !live[i];
        if (freed < 64) continue;
        hm_tcache *c = hm_thread_caches;
        assert_int_equal(c->heap_id, rf.h->id);
        hm_hpage *pg = c->lists.avail[cls];
        assert_non_null(pg);
        rf.ntarget = 0;
        for (uint32_t i = pg->first; i < pg->extent && rf.ntarget < 64; i++) /* (lowest first: as a refill takes them) */
            if (pg->fbits[i / 64] & (uint64_t)1 << (i % 64)) rf.target[rf.ntarget++] = hm_page_addr(pg) + (uintptr_t)i * 16;
        /* the race: one allocation (the free list's head) while the other thread frees again */
        atomic_store(&rf.go, 1);
        atomic_store(&rf.round, r);
        while (atomic_load(&rf.started) != r) sched_yield();
        for (volatile int spin = (int)(next_rand(&seed) % 64); spin > 0; spin--) {
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
            live[qi] = false; /* freed by the other thread now */
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
                 "returned HM_OK while the owner allocated: the block is now free twice",
                 rf.bad_round, (unsigned long)rf.bad_block);
    /* no teardown through the heap: its blocks may be free twice; destroy takes everything */
    assert_int_equal(hm_heap_destroy(rf.h), HM_OK);
    assert_int_equal(hm_manager_destroy(m), HM_OK);
}

/* ---- 3a. a second Free of a cached large block racing its release ------------------------------ */

static struct {
    hm_heap *h;
    _Atomic uintptr_t target;
    atomic_int busy, stop;
    atomic_ulong tries, accepted;
} rr;

static void *rr_doubler(void *arg)
{
    (void)arg;
    while (!atomic_load(&rr.stop)) {
        atomic_store(&rr.busy, 1);
        uintptr_t p = atomic_load(&rr.target);
        if (p) {
            hm_status st = hm_heap_free(rr.h, (void *)p);
            atomic_fetch_add(&rr.tries, 1);
            if (st != HM_E_HOST_INVALIDOPERATION) {
                atomic_fetch_add(&rr.accepted, 1);
                bad("second Free of the freed large block %#lx = %s", (unsigned long)p, sname(st));
            }
            if (hm_heap_usable_size(rr.h, (void *)p)) bad("usable size of the freed large block %#lx", (unsigned long)p);
        }
        atomic_store(&rr.busy, 0);
        if (!p) sched_yield();
    }
    return NULL;
}

/* A large block the program freed sits in the heap's cache; another thread's hm_heap_trim (or the
 * cache's eviction, or a refused commit elsewhere) releases it. A second Free of it, racing that
 * release, must say HOST_E_INVALIDOPERATION: it must not read the block's words after the release
 * (its pages are gone: PROT_NONE or unmapped). */
static void test_double_free_racing_release(void **state)
{
    (void)state;
    hm_manager *m = make("limit=1G");
    rr.h = mk_heap(m, HM_HEAP_THREADSAFE);
    atomic_store(&rr.stop, 0);
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, rr_doubler, NULL), 0);
    uint64_t seed = 0xB7E151628AED2A6Bull;
    int rounds = (int)(3000 * scale()), r;
    double deadline = now_s() + 1.5 * scale();
    for (r = 0; r < rounds && now_s() < deadline && !atomic_load(&any_failed); r++) {
        void *p;
        assert_int_equal(hm_heap_alloc(rr.h, 2 * MiB, HM_LEVEL_TASK, &p), HM_OK); /* beyond a thread's large cache */
        memset(p, 0x77, 4096);
        assert_int_equal(hm_heap_free(rr.h, p), HM_OK); /* into the heap's cache */
        atomic_store(&rr.target, (uintptr_t)p);
        for (volatile int spin = (int)(next_rand(&seed) % 20000); spin > 0; spin--) {
        }
        assert_int_equal(hm_heap_trim(rr.h), HM_OK); /* releases it */
        for (volatile int spin = (int)(next_rand(&seed) % 2000); spin > 0; spin--) {
        }
        atomic_store(&rr.target, 0);
        while (atomic_load(&rr.busy)) sched_yield(); /* its last Free of p is over before p can be reused */
    }
    atomic_store(&rr.stop, 1);
    pthread_join(t, NULL);
    print_message("second Free racing the release of a cached large block: %d rounds, %lu second frees\n", r,
                  (unsigned long)atomic_load(&rr.tries));
    check_failed();
    assert_int_equal(tu_charge(m), heap_charge(rr.h));
    assert_int_equal(hm_heap_destroy(rr.h), HM_OK);
    assert_int_equal(hm_manager_destroy(m), HM_OK);
}

/* ---- 3d. a second Free of a small block racing its page's decommit ---------------------------- */

static struct {
    hm_heap *h;
    uintptr_t blk[128];
    int nblk;
    atomic_int ready, go, active, idle, stop, armed;
    atomic_ulong tries, paused;
} dc;

static void dc_pause(int sig)
{
    (void)sig;
    if (!atomic_load(&dc.armed)) return;
    struct timespec t = {0, 3000000}; /* what a preemption at the wrong instruction does */
    nanosleep(&t, NULL);
    atomic_fetch_add(&dc.paused, 1);
}

static void *dc_owner(void *arg)
{
    int round = (int)(intptr_t)arg;
    enum { N = 4096 }; /* one page of 16-byte blocks */
    static void *p[N];
    for (int i = 0; i < N; i++)
        if (hm_heap_alloc(dc.h, 16, HM_LEVEL_TASK, &p[i])) bad("decommit race: alloc refused");
    for (int i = 0; i < N; i++) (void)hm_heap_free(dc.h, p[i]);
    dc.nblk = 128; /* freed, on this thread's page, which its exit gives up */
    memcpy(dc.blk, p, (size_t)dc.nblk * sizeof dc.blk[0]);
    atomic_store(&dc.ready, round);
    while (atomic_load(&dc.go) != round) sched_yield();
    return NULL; /* its exit gives the blocks back: the page empties */
}

static void *dc_doubler(void *arg)
{
    (void)arg;
    while (!atomic_load(&dc.stop)) {
        /* busy before active is looked at: once the main thread has cleared active and then seen
         * idle, this thread is past its loop (it reads dc.blk, which the next owner writes) */
        atomic_store(&dc.idle, 0);
        if (!atomic_load(&dc.active)) {
            atomic_store(&dc.idle, 1);
            sched_yield();
            continue;
        }
        for (int k = 0; atomic_load(&dc.active) && k < dc.nblk; k++) {
            hm_status st = hm_heap_free(dc.h, (void *)dc.blk[k]);
            atomic_fetch_add(&dc.tries, 1);
            if (st != HM_E_HOST_INVALIDOPERATION) bad("decommit race: second Free of %#lx = %s", (unsigned long)dc.blk[k], sname(st));
        }
    }
    return NULL;
}

/* Another thread's Free reads a small block's words (its xfree tag, the debug tag) and its live bit
 * (page.c). If the thread is preempted in between (here a signal handler that sleeps 3 ms stands in
 * for the scheduler), the block's page may empty when its owner exits and the page be decommitted
 * (at once while memory is Low, or by hm_heap_trim, or after 100 ms). A second Free of a freed block
 * must still say HOST_E_INVALIDOPERATION: the page reads as zeros (segments are reserved readable)
 * and the live bit is looked at again after the reads. Before that, the read faulted. */
static void test_double_free_racing_decommit(void **state)
{
    (void)state;
    hm_manager *m = make("limit=1G");
    dc.h = mk_heap(m, HM_HEAP_THREADSAFE);
    struct sigaction sa, old;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = dc_pause;
    sigemptyset(&sa.sa_mask);
    assert_int_equal(sigaction(SIGUSR1, &sa, &old), 0);
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, dc_doubler, NULL), 0);
    uint64_t seed = 0x452821E638D01377ull;
    int rounds = (int)(400 * scale()), r;
    for (r = 1; r <= rounds && !atomic_load(&any_failed); r++) {
        pthread_t o;
        assert_int_equal(pthread_create(&o, NULL, dc_owner, (void *)(intptr_t)r), 0);
        while (atomic_load(&dc.ready) != r) sched_yield();
        atomic_store(&dc.active, 1);
        for (volatile int spin = (int)(next_rand(&seed) % 50000); spin > 0; spin--) {
        }
        atomic_store(&dc.armed, 1);
        pthread_kill(t, SIGUSR1); /* the second Free stops wherever it is */
        atomic_store(&dc.go, r);
        pthread_join(o, NULL);
        assert_int_equal(hm_heap_trim(dc.h), HM_OK); /* the emptied page is decommitted */
        sleep_ms(5);
        atomic_store(&dc.armed, 0);
        atomic_store(&dc.active, 0);
        while (!atomic_load(&dc.idle)) sched_yield(); /* before the page can hold live blocks again */
    }
    atomic_store(&dc.stop, 1);
    pthread_join(t, NULL);
    sigaction(SIGUSR1, &old, NULL);
    print_message("second Free racing a decommit: %d rounds, %lu second frees, %lu pauses\n", r - 1,
                  (unsigned long)atomic_load(&dc.tries), (unsigned long)atomic_load(&dc.paused));
    check_failed();
    assert_int_equal(hm_heap_destroy(dc.h), HM_OK);
    assert_int_equal(hm_manager_destroy(m), HM_OK);
}

/* ---- 3b. a small allocation refused while the heap caches freed large blocks -------------------- */

/* heap.h: freed large blocks stay committed in the heap's and the threads' caches, "and all of it
 * [goes] when a commit is refused". A small allocation that needs a new page is a commit too: it
 * must not be refused while the heap itself holds megabytes of freed large blocks. */
static void test_small_refused_while_large_cached(void **state)
{
    (void)state;
    hm_manager *m = make("limit=4M");
    for (int where = 0; where < 2; where++) { /* the heap's cache (single-threaded), a thread's */
        hm_heap *h = mk_heap(m, where ? HM_HEAP_THREADSAFE : 0);
        void *big[3];
        for (int i = 0; i < 3; i++) assert_int_equal(hm_heap_alloc(h, 1 * MiB, HM_LEVEL_PROCESS, &big[i]), HM_OK);
        for (int i = 0; i < 3; i++) assert_int_equal(hm_heap_free(h, big[i]), HM_OK);
        hm_heap_stats s = hstats(h);
        print_message("%s heap: %" PRIu64 " KiB of freed large blocks cached, charge %" PRIu64 " KiB of 4096\n",
                      where ? "thread-safe" : "single-threaded", s.cached_large_bytes >> 10, tu_charge(m) >> 10);
        /* one block of each small class: a page each, 64 KiB: 40 pages, 2.5 MiB */
        int refused = 0;
        void *p[HM_NSMALL];
        for (unsigned c = 0; c < HM_NSMALL; c++) {
            hm_status st = hm_heap_alloc(h, hm_heap_class_size(c), HM_LEVEL_PROCESS, &p[c]);
            if (st) {
                p[c] = NULL;
                refused++;
            }
        }
        s = hstats(h);
        print_message("  %d of %d small allocations refused; %" PRIu64 " KiB of large blocks still cached\n", refused,
                      HM_NSMALL, s.cached_large_bytes >> 10);
        for (unsigned c = 0; c < HM_NSMALL; c++)
            if (p[c]) assert_int_equal(hm_heap_free(h, p[c]), HM_OK);
        assert_int_equal(tu_charge(m), heap_charge(h));
        assert_int_equal(hm_heap_destroy(h), HM_OK);
        if (refused)
            fail_msg("%s heap: %d small allocations refused for want of pages while %" PRIu64
                     " KiB of freed large blocks stayed cached", where ? "thread-safe" : "single-threaded", refused,
                     s.cached_large_bytes >> 10);
    }
    assert_int_equal(hm_manager_destroy(m), HM_OK);
}

/* ---- 3c. freed large blocks pinned in an idle thread's cache ------------------------------------ */

static struct {
    hm_heap *h;
    pthread_barrier_t bar;
    int n;
} pin;

static void *pin_thread(void *arg)
{
    (void)arg;
    void *p[8];
    for (int i = 0; i < pin.n; i++)
        if (hm_heap_alloc(pin.h, MiB, HM_LEVEL_PROCESS, &p[i])) bad("pin: alloc of 1 MiB refused");
    for (int i = 0; i < pin.n; i++) (void)hm_heap_free(pin.h, p[i]); /* into this thread's large cache */
    pthread_barrier_wait(&pin.bar);
    pthread_barrier_wait(&pin.bar); /* idle while the main thread runs out of memory */
    return NULL;
}

/* A thread keeps up to 8 MiB of freed large blocks (tcache.c); a commit refused to another thread
 * drains every thread's cache (hm_tcache_large_drain_all), so an idle thread that freed 8 MiB of
 * 1 MiB blocks does not make the rest of the process run out at half a 16 MiB budget. (This was a
 * bug this test found; hm_heap_trim still reaches only the calling thread's cache, as documented.) */
static void test_idle_thread_pins_large_blocks(void **state)
{
    (void)state;
    hm_manager *m = make("limit=16M");
    pin.h = mk_heap(m, HM_HEAP_THREADSAFE);
    pin.n = 8;
    pthread_barrier_init(&pin.bar, NULL, 2);
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, pin_thread, NULL), 0);
    pthread_barrier_wait(&pin.bar);
    hm_heap_stats s = hstats(pin.h);
    void *p[16];
    int got = 0;
    while (got < 16 && hm_heap_alloc(pin.h, MiB, HM_LEVEL_PROCESS, &p[got]) == HM_OK) got++;
    assert_int_equal(hm_heap_trim(pin.h), HM_OK);
    hm_heap_stats after = hstats(pin.h);
    int more = 0;
    void *q;
    if (got < 16 && hm_heap_alloc(pin.h, MiB, HM_LEVEL_PROCESS, &q) == HM_OK) {
        p[got++] = q;
        more = 1;
    }
    print_message("an idle thread caches %" PRIu64 " KiB of freed large blocks: another thread gets %d blocks of 1 MiB "
                  "under a 16 MiB budget; after hm_heap_trim %" PRIu64 " KiB stay cached%s\n",
                  s.cached_large_bytes >> 10, got - more, after.cached_large_bytes >> 10, more ? ", one more block" : "");
    pthread_barrier_wait(&pin.bar);
    pthread_join(t, NULL);
    for (int i = 0; i < got; i++) assert_int_equal(hm_heap_free(pin.h, p[i]), HM_OK);
    assert_int_equal(tu_charge(m), heap_charge(pin.h));
    pthread_barrier_destroy(&pin.bar);
    assert_int_equal(hm_heap_destroy(pin.h), HM_OK);
    assert_int_equal(hm_manager_destroy(m), HM_OK);
    check_failed();
    if (got < 14)
        fail_msg("%d of 1 MiB blocks fit a 16 MiB budget while an idle thread caches %" PRIu64 " KiB of freed ones",
                 got, s.cached_large_bytes >> 10);
}

/* ---- 4. the model: many threads, several heaps, exactness at random moments --------------------- */

/* Heaps of the model: 0 and 3 thread-safe, 1 thread-safe and executable, 2 single-threaded (used by
 * every thread under mt.h2_lock). */
#define MT_HEAPS 4
#define MT_ST 2
#define MT_SLOTS 2048
#define MT_SHARDS 64
#define MT_MAXT 8
#define MT_RING 512

typedef struct mslot {
    void *p;       /* NULL: empty */
    size_t req;    /* bytes filled with the pattern */
    size_t usable; /* hm_heap_usable_size */
    uint32_t seed;
    uint8_t heap, debug;
} mslot;

typedef struct mthread {
    pthread_t t;
    atomic_int state; /* 0 none, 1 running, 2 done with the heaps (main joins it under the write lock) */
    uint64_t rng;
    long quota;
} mthread;

static struct {
    hm_manager *m;
    hm_heap *h[MT_HEAPS];
    pthread_mutex_t h2_lock;
    pthread_rwlock_t world; /* every operation holds it shared; the checks exclusive */
    pthread_mutex_t shard[MT_SHARDS];
    mslot slot[MT_SLOTS];
    pthread_mutex_t ring_lock;
    struct {
        void *p;
        int heap;
    } ring[MT_RING]; /* recently freed pointers */
    unsigned ring_n;
    atomic_int stop;
    atomic_ulong ops, allocs, frees, reallocs, dfrees, interiors, foreigns, ring_checks, ring_xfree, ring_cached, exits,
        checks, large;
} mt;

static void hlock(int hi)
{
    if (hi == MT_ST) pthread_mutex_lock(&mt.h2_lock);
}
static void hunlock(int hi)
{
    if (hi == MT_ST) pthread_mutex_unlock(&mt.h2_lock);
}

static void ring_put(void *p, int hi)
{
    pthread_mutex_lock(&mt.ring_lock);
    mt.ring[mt.ring_n % MT_RING].p = p;
    mt.ring[mt.ring_n % MT_RING].heap = hi;
    mt.ring_n++;
    pthread_mutex_unlock(&mt.ring_lock);
}

static void expect(hm_status got, hm_status want, const char *what, const void *p, int hi)
{
    if (got != want) bad("%s %p (heap %d) = %s, expected %s", what, p, hi, sname(got), sname(want));
}

static size_t small_size(uint64_t *rng)
{
    unsigned cls = (unsigned)(next_rand(rng) % HM_NCLASS);
    size_t lo = cls ? hm_heap_class_size(cls - 1) + 1 : 0, hi = hm_heap_class_size(cls);
    return lo + (size_t)(next_rand(rng) % (hi - lo + 1));
}

static size_t large_size(uint64_t *rng)
{
    /* 32 KiB + 1 .. 2 MiB, about evenly over the doublings */
    unsigned d = (unsigned)(next_rand(rng) % 6); /* 32K..64K .. 1M..2M */
    size_t lo = (HM_SMALL_MAX << d) + 1, hi = HM_SMALL_MAX << (d + 1);
    return lo + (size_t)(next_rand(rng) % (hi - lo + 1));
}

/* Allocates into the empty slot sl (shard lock held). */
static void mt_alloc(mthread *w, mslot *sl)
{
    uint64_t r = next_rand(&w->rng) % 100;
    int hi = r < 40 ? 0 : r < 65 ? 1 : r < 80 ? MT_ST : 3;
    hm_heap *h = mt.h[hi];
    bool large = next_rand(&w->rng) % 100 < 4;
    size_t size = large ? large_size(&w->rng) : small_size(&w->rng), align = 16;
    void *p = NULL;
    hm_status st;
    bool debug = false, zero = false;
    uint64_t how = next_rand(&w->rng) % 100;
    hlock(hi);
    if (how < 68) {
        st = hm_heap_alloc(h, size, HM_LEVEL_TASK, &p);
    } else if (how < 78) {
        align = (size_t)32 << (next_rand(&w->rng) % 8);
        st = hm_heap_alloc_aligned(h, size, align, HM_LEVEL_APPDOMAIN, &p);
    } else if (how < 85) {
        size_t count = 1 + next_rand(&w->rng) % 8;
        size = size / count * count;
        st = hm_heap_calloc(h, count, size / count, HM_LEVEL_TASK, &p);
        zero = true;
    } else if (how < 93) {
        st = hm_heap_alloc_debug(h, size, HM_LEVEL_PROCESS, "stress.c", (int)(next_rand(&w->rng) % 50), &p);
        debug = true;
    } else {
        st = hm_heap_realloc(h, NULL, size, HM_LEVEL_TASK, &p);
    }
    if (st != HM_OK || !p) {
        hunlock(hi);
        bad("heap %d: allocation of %zu bytes (way %d) = %s: %s", hi, size, (int)how, sname(st), hm_last_detail());
        return;
    }
    if ((uintptr_t)p % align) bad("heap %d: %p is not %zu-aligned", hi, p, align);
    size_t usable = hm_heap_usable_size(h, p);
    if (usable < size) bad("heap %d: %p of %zu bytes has %zu usable", hi, p, size, usable);
    if (zero)
        for (size_t i = 0; i < size; i += (i < 4096 || i + 4096 >= size) ? 1 : 4093)
            if (((uint8_t *)p)[i]) {
                bad("heap %d: calloc %p byte %zu of %zu is %#x", hi, p, i, size, ((uint8_t *)p)[i]);
                break;
            }
    hunlock(hi);
    sl->p = p;
    sl->req = size;
    sl->usable = usable;
    sl->seed = (uint32_t)next_rand(&w->rng);
    sl->heap = (uint8_t)hi;
    sl->debug = debug;
    pfill(p, size, sl->seed);
    atomic_fetch_add(&mt.allocs, 1);
    if (large) atomic_fetch_add(&mt.large, 1);
}

static bool mt_intact(mslot *sl)
{
    size_t at;
    if (pcheck(sl->p, sl->req, sl->seed, sl->req, &at)) return true;
    bad("heap %d: block %p (%zu bytes%s) byte %zu overwritten while live", sl->heap, sl->p, sl->req,
        sl->debug ? ", debug" : "", at);
    return false;
}

static void mt_free(mthread *w, mslot *sl)
{
    int hi = sl->heap;
    hm_heap *h = mt.h[hi];
    if (!mt_intact(sl)) return;
    void *p = sl->p;
    hlock(hi);
    /* A second Free at once, of a block that no other thread can have been handed meanwhile: a plain
     * small block of a page this thread owns (back on its free list, which only this thread takes
     * from), or any block of the single-threaded heap, whose lock this thread holds. (A block of
     * another thread's page goes to its xfree, whose owner may collect it and hand it out at once:
     * test_second_free_in_xfree covers those.) */
    bool small = sl->usable <= HM_SMALL_MAX;
    bool mine = hi == MT_ST || (small && !sl->debug && hm_segmap_get(p) &&
                                HM_OWNER(hm_page_of((uintptr_t)p)) == hm_self());
    expect(hm_heap_free(h, p), HM_OK, "Free", p, hi);
    if (next_rand(&w->rng) % 4 == 0) {
        if (mine) {
            hm_status st = hm_heap_free(h, p);
            if (!(st == HM_E_HOST_INVALIDOPERATION || (hi == MT_ST && !small && st == HM_E_HOST_NOT_OWNER)))
                bad("second Free of %p (heap %d, %zu bytes%s) = %s", p, hi, sl->usable, sl->debug ? ", debug" : "",
                    sname(st));
            atomic_fetch_add(&mt.dfrees, 1);
        }
    }
    hunlock(hi);
    ring_put(p, hi);
    sl->p = NULL;
    atomic_fetch_add(&mt.frees, 1);
}

static void mt_realloc(mthread *w, mslot *sl)
{
    int hi = sl->heap;
    hm_heap *h = mt.h[hi];
    if (!mt_intact(sl)) return;
    size_t ns = next_rand(&w->rng) & 1 ? sl->req + sl->req / 2 * (1 + next_rand(&w->rng) % 6) + next_rand(&w->rng) % 64
                                 : sl->req / (2 + next_rand(&w->rng) % 3);
    if (ns > 2 * MiB) ns = 2 * MiB;
    void *q = NULL, *p = sl->p;
    hlock(hi);
    hm_status st = hm_heap_realloc(h, p, ns, HM_LEVEL_TASK, &q);
    if (st != HM_OK || !q) {
        hunlock(hi);
        bad("heap %d: realloc(%p, %zu -> %zu) = %s: %s", hi, p, sl->req, ns, sname(st), hm_last_detail());
        return;
    }
    size_t usable = hm_heap_usable_size(h, q);
    hunlock(hi);
    size_t at;
    if (!pcheck(q, sl->req, sl->seed, ns < sl->req ? ns : sl->req, &at))
        bad("heap %d: realloc(%p, %zu -> %zu) = %p: byte %zu not kept", hi, p, sl->req, ns, q, at);
    if (usable < ns) bad("heap %d: realloc to %zu: %zu usable", hi, ns, usable);
    if (q != p) {
        ring_put(p, hi);
        sl->debug = 0;
    }
    sl->p = q;
    sl->req = ns;
    sl->usable = usable;
    sl->seed = (uint32_t)next_rand(&w->rng);
    pfill(q, ns, sl->seed);
    atomic_fetch_add(&mt.reallocs, 1);
}

/* Frees of what is not a block (interior pointers, a debug block's start) and of another heap's
 * live block; the block itself stays. */
static void mt_probe(mthread *w, mslot *sl)
{
    int hi = sl->heap;
    hm_heap *h = mt.h[hi];
    uint8_t *p = sl->p;
    hlock(hi);
    size_t u = hm_heap_usable_size(h, p);
    if (u != sl->usable) bad("heap %d: usable size of %p changed: %zu -> %zu", hi, (void *)p, sl->usable, u);
    expect(hm_heap_free(h, p + 1), HM_E_HOST_INVALIDOPERATION, "Free (interior +1)", p + 1, hi);
    if (sl->usable >= 32) {
        size_t off = 16 * (1 + next_rand(&w->rng) % (sl->usable / 16 - 1));
        expect(hm_heap_free(h, p + off), HM_E_HOST_INVALIDOPERATION, "Free (interior)", p + off, hi);
    }
    if (sl->debug) expect(hm_heap_free(h, p - HM_DEBUG_HDR), HM_E_HOST_INVALIDOPERATION, "Free (debug start)", p - 16, hi);
    if (sl->usable >= 32) { /* (p + 16 of a 16-byte block is the next block) */
        void *q = (void *)1;
        expect(hm_heap_realloc(h, p + 16, 100, HM_LEVEL_TASK, &q), HM_E_HOST_INVALIDOPERATION, "realloc (interior)",
               p + 16, hi);
        if (q) bad("realloc of an interior pointer left *out = %p", q);
    }
    hunlock(hi);
    atomic_fetch_add(&mt.interiors, 1);
    int hj = (hi + 1 + (int)(next_rand(&w->rng) % (MT_HEAPS - 1))) % MT_HEAPS;
    hlock(hj);
    expect(hm_heap_free(mt.h[hj], p), HM_E_HOST_NOT_OWNER, "Free through another heap of", p, hi);
    hunlock(hj);
    atomic_fetch_add(&mt.foreigns, 1);
    (void)mt_intact(sl);
}

static void *mt_worker(void *arg)
{
    mthread *w = arg;
    for (long k = 0; k < w->quota && !atomic_load(&mt.stop) && !atomic_load(&any_failed); k++) {
        pthread_rwlock_rdlock(&mt.world);
        unsigned si = (unsigned)(next_rand(&w->rng) % MT_SLOTS);
        pthread_mutex_t *sh = &mt.shard[si % MT_SHARDS];
        pthread_mutex_lock(sh);
        mslot *sl = &mt.slot[si];
        uint64_t r = next_rand(&w->rng) % 100;
        if (!sl->p) mt_alloc(w, sl);
        else if (r < 60) mt_free(w, sl);
        else if (r < 80) mt_realloc(w, sl);
        else mt_probe(w, sl);
        pthread_mutex_unlock(sh);
        r = next_rand(&w->rng) % 4096;
        if (r == 0) (void)hm_heap_trim(mt.h[next_rand(&w->rng) % 2 ? 0 : 3]);
        if (r == 1) {
            hm_heap_stats s; /* racy, but must not crash */
            (void)hm_heap_get_stats(mt.h[1], &s);
        }
        pthread_rwlock_unlock(&mt.world);
        atomic_fetch_add(&mt.ops, 1);
    }
    pthread_rwlock_rdlock(&mt.world);
    atomic_store(&w->state, 2); /* from here on this thread only exits (its caches are flushed then) */
    pthread_rwlock_unlock(&mt.world);
    return NULL;
}

typedef struct live_ref {
    uintptr_t p;
    int heap;
} live_ref;

static int live_cmp(const void *a, const void *b)
{
    uintptr_t x = ((const live_ref *)a)->p, y = ((const live_ref *)b)->p;
    return x < y ? -1 : x > y;
}

/* Whether b sits on its page's xfree stack (b a small block of thread-safe heap h; no thread runs). */
static bool in_xfree(hm_heap *h, uintptr_t b)
{
    hm_segment *s = hm_segmap_get((void *)b);
    if (!s || s->heap != h) return false;
    hm_hpage *pg = &s->page[(b - (uintptr_t)s) / HM_HPAGE_SIZE];
    int steps = 0;
    for (uintptr_t x = atomic_load(&pg->xfree); x && steps < 5000; x = *(uintptr_t *)x ^ h->key ^ x, steps++)
        if (x == b) return true;
    return false;
}

/* Whether p lies in a heap page in use (committed: its words can be read). */
/* A stale pointer's second word, read on purpose: under AddressSanitizer its memory may be another
 * freed block's, poisoned (src/heap/track.h). */
__attribute__((no_sanitize("address"))) static uint64_t peek_word1(uintptr_t b)
{
    return atomic_load(hm_word1(b));
}

static bool in_use_page(const void *p)
{
    hm_segment *s = hm_segmap_get(p);
    if (!s) return false;
    size_t i = ((uintptr_t)p - (uintptr_t)s) / HM_HPAGE_SIZE;
    return i && atomic_load(&s->page[i].block_size);
}

/* No thread is inside a heap call: statistics exact, charge = committed pages, recently freed
 * pointers refused (or another heap's live block), the books consistent. */
static void mt_check(bool books)
{
    static live_ref live[MT_SLOTS];
    size_t n = 0;
    uint64_t blocks[MT_HEAPS] = {0}, bytes[MT_HEAPS] = {0};
    for (size_t i = 0; i < MT_SLOTS; i++) {
        mslot *sl = &mt.slot[i];
        if (!sl->p) continue;
        live[n++] = (live_ref){(uintptr_t)sl->p, sl->heap};
        blocks[sl->heap]++;
        bytes[sl->heap] += sl->usable + (sl->debug ? HM_DEBUG_HDR : 0);
    }
    qsort(live, n, sizeof live[0], live_cmp);
    uint64_t want = 0;
    for (int hi = 0; hi < MT_HEAPS; hi++) {
        hm_heap_stats s = hstats(mt.h[hi]);
        if (s.live_blocks != blocks[hi] || s.live_bytes != bytes[hi])
            bad("heap %d with no thread running: stats say %" PRIu64 " blocks / %" PRIu64 " bytes live, the model %" PRIu64
                " / %" PRIu64, hi, s.live_blocks, s.live_bytes, blocks[hi], bytes[hi]);
        want += heap_charge(mt.h[hi]);
    }
    uint64_t c = tu_charge(mt.m);
    if (c != want) bad("charge %" PRIu64 ", the heaps' committed pages %" PRIu64, c, want);
    unsigned rn = mt.ring_n < MT_RING ? mt.ring_n : MT_RING;
    for (unsigned k = 0; k < rn; k++) {
        void *p = mt.ring[k].p;
        int hi = mt.ring[k].heap;
        live_ref key = {(uintptr_t)p, 0}, *f = bsearch(&key, live, n, sizeof live[0], live_cmp);
        if (f && f->heap == hi) continue; /* allocated again since */
        hm_status want_st = f ? HM_E_HOST_NOT_OWNER : HM_E_HOST_INVALIDOPERATION;
        if (!f && hi != MT_ST) {
            if (in_xfree(mt.h[hi], (uintptr_t)p)) atomic_fetch_add(&mt.ring_xfree, 1);
            else if (in_use_page(p) && peek_word1((uintptr_t)p) == hm_xfree_tag(mt.h[hi], (uintptr_t)p))
                atomic_fetch_add(&mt.ring_cached, 1);
        }
        expect(hm_heap_free(mt.h[hi], p), want_st, "Free of a recently freed pointer", p, hi);
        if (!f && hm_heap_usable_size(mt.h[hi], p)) bad("usable size of freed %p (heap %d) is not 0", p, hi);
        atomic_fetch_add(&mt.ring_checks, 1);
    }
    if (books) {
        hm_status st = hm_vmap_check(!UNDER_TSAN);
        if (st != HM_OK) bad("hm_vmap_check: %s: %s", sname(st), hm_last_detail());
    }
    atomic_fetch_add(&mt.checks, 1);
}

static void *mt_free_all(void *arg)
{
    (void)arg;
    for (size_t i = 0; i < MT_SLOTS; i++) {
        mslot *sl = &mt.slot[i];
        if (!sl->p) continue;
        (void)mt_intact(sl);
        expect(hm_heap_free(mt.h[sl->heap], sl->p), HM_OK, "final Free", sl->p, sl->heap);
        sl->p = NULL;
    }
    return NULL;
}

static void mt_spawn(mthread *w, uint64_t *rng)
{
    w->rng = next_rand(rng) | 1;
    w->quota = 300 + (long)(next_rand(rng) % 4000);
    atomic_store(&w->state, 1);
    if (pthread_create(&w->t, NULL, mt_worker, w)) bad("pthread_create failed");
}

static void test_model_threads(void **state)
{
    (void)state;
    memset(&mt, 0, sizeof mt);
    mt.m = make("limit=1G");
    const uint32_t flags[MT_HEAPS] = {HM_HEAP_THREADSAFE, HM_HEAP_THREADSAFE | HM_HEAP_EXECUTABLE, 0, HM_HEAP_THREADSAFE};
    for (int i = 0; i < MT_HEAPS; i++) mt.h[i] = mk_heap(mt.m, flags[i]);
    pthread_mutex_init(&mt.h2_lock, NULL);
    pthread_mutex_init(&mt.ring_lock, NULL);
    for (int i = 0; i < MT_SHARDS; i++) pthread_mutex_init(&mt.shard[i], NULL);
    pthread_rwlockattr_t ra;
    pthread_rwlockattr_init(&ra);
    pthread_rwlockattr_setkind_np(&ra, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
    pthread_rwlock_init(&mt.world, &ra);
    pthread_rwlockattr_destroy(&ra);
    int nt = UNDER_TSAN ? 4 : 6;
    mthread th[MT_MAXT];
    memset(th, 0, sizeof th);
    uint64_t rng = 0x9E3779B97F4A7C15ull ^ (uint64_t)time(NULL);
    print_message("model: seed %#" PRIx64 "\n", rng);
    for (int i = 0; i < nt; i++) mt_spawn(&th[i], &rng);
    double end = now_s() + 2.5 * scale();
    while (now_s() < end && !atomic_load(&any_failed)) {
        sleep_ms(2 + (int)(next_rand(&rng) % 20));
        pthread_rwlock_wrlock(&mt.world);
        for (int i = 0; i < nt; i++)
            if (atomic_load(&th[i].state) == 2) {
                pthread_join(th[i].t, NULL); /* its exit flushed its caches and disowned its pages */
                atomic_store(&th[i].state, 0);
                atomic_fetch_add(&mt.exits, 1);
            }
        mt_check(atomic_load(&mt.checks) % 16 == 0);
        pthread_rwlock_unlock(&mt.world);
        for (int i = 0; i < nt; i++)
            if (atomic_load(&th[i].state) == 0) mt_spawn(&th[i], &rng);
    }
    atomic_store(&mt.stop, 1);
    for (int i = 0; i < nt; i++)
        if (atomic_load(&th[i].state)) pthread_join(th[i].t, NULL);
    mt_check(true);
    uint64_t census_pages = 0, census_free = 0;
    for (int i = 0; i < MT_HEAPS; i++) { /* (every thread stopped: the books of every page) */
        uint64_t np, nf;
        check_pages(mt.h[i], &np, &nf);
        census_pages += np, census_free += nf;
    }
    print_message("model: pages in use at the end %" PRIu64 ", their free blocks %" PRIu64 " (free bits, bins and live bits agree)\n",
                  census_pages, census_free);
    print_message("model: %lu ops (%lu allocs, %lu large, %lu frees, %lu reallocs), %lu second frees, %lu interior and "
                  "%lu foreign probes, %lu thread exits, %lu checks of %lu recently freed pointers (%lu found in an "
                  "xfree, %lu in a cache)\n",
                  (unsigned long)mt.ops, (unsigned long)mt.allocs, (unsigned long)mt.large, (unsigned long)mt.frees,
                  (unsigned long)mt.reallocs, (unsigned long)mt.dfrees, (unsigned long)mt.interiors,
                  (unsigned long)mt.foreigns, (unsigned long)mt.exits, (unsigned long)mt.checks,
                  (unsigned long)mt.ring_checks, (unsigned long)mt.ring_xfree, (unsigned long)mt.ring_cached);
    check_failed();
    /* everything back (by a thread that then exits): patterns intact, nothing live; trimmed, no page
     * but the segment headers stays committed and no large block cached (no block lost anywhere) */
    pthread_t fin;
    assert_int_equal(pthread_create(&fin, NULL, mt_free_all, NULL), 0);
    pthread_join(fin, NULL);
    check_failed();
    uint64_t want = 0;
    for (int i = 0; i < MT_HEAPS; i++) {
        check_pages(mt.h[i], NULL, NULL);
        assert_int_equal(hm_heap_trim(mt.h[i]), HM_OK);
        hm_heap_stats s = hstats(mt.h[i]);
        assert_int_equal(s.live_blocks, 0);
        assert_int_equal(s.live_bytes, 0);
        if (s.committed_pages != s.segments || s.cached_large_bytes || s.large_bytes)
            fail_msg("heap %d, all freed, no thread, trimmed: %" PRIu64 " pages committed in %" PRIu64 " segments, %" PRIu64
                     " bytes of large blocks cached, %" PRIu64 " live", i, s.committed_pages, s.segments,
                     s.cached_large_bytes, s.large_bytes);
        want += heap_charge(mt.h[i]);
    }
    assert_int_equal(tu_charge(mt.m), want);
    check_books();
    for (int i = 0; i < MT_HEAPS; i++) assert_int_equal(hm_heap_destroy(mt.h[i]), HM_OK);
    assert_int_equal(tu_charge(mt.m), 0);
    check_books();
    assert_int_equal(hm_manager_destroy(mt.m), HM_OK);
    pthread_rwlock_destroy(&mt.world);
}

/* ---- 5. thread exit races: pages disowned while other threads free into them, then adopted ----- */

#define XR_SEGS 64
#define XR_BLOCKS (HM_SEG_SIZE / 16)
#define XR_P 3    /* producers a round */
#define XR_C 2    /* consumers */
#define XR_A 2    /* adopters */

static const size_t xr_sizes[] = {16, 48, 100, 700, 3000, 12000};

static struct {
    hm_heap *h;
    pthread_mutex_t seg_lock;
    _Atomic uintptr_t seg[XR_SEGS];
    atomic_int nseg;
    atomic_uchar *mark; /* per 16 bytes of each segment: 1 while the program holds a block there */
    struct {
        void *p;
        size_t size;
    } *q;
    atomic_int *ready;
    int total;
    atomic_int qn, qtake;
    atomic_ulong frees, dfrees, adopted;
} xr;

static atomic_uchar *xr_mark(void *p)
{
    uintptr_t sb = (uintptr_t)p & ~(uintptr_t)(HM_SEG_SIZE - 1);
    for (;;) {
        int n = atomic_load(&xr.nseg);
        for (int i = 0; i < n; i++)
            if (atomic_load(&xr.seg[i]) == sb) return &xr.mark[(size_t)i * XR_BLOCKS + ((uintptr_t)p - sb) / 16];
        pthread_mutex_lock(&xr.seg_lock);
        if (atomic_load(&xr.nseg) == n) {
            if (n == XR_SEGS) {
                pthread_mutex_unlock(&xr.seg_lock);
                bad("more than %d segments", XR_SEGS);
                return &xr.mark[0];
            }
            atomic_store(&xr.seg[n], sb);
            atomic_store(&xr.nseg, n + 1);
        }
        pthread_mutex_unlock(&xr.seg_lock);
    }
}

static uint32_t xr_seed(void *p) { return (uint32_t)((uintptr_t)p >> 4) * 2654435761u; }

/* A block handed to the program: nobody else may hold it. */
static bool xr_take(void *p, size_t size)
{
    unsigned char zero = 0;
    if (!atomic_compare_exchange_strong(xr_mark(p), &zero, 1)) {
        bad("block %p (%zu bytes) handed out while the program still holds it", p, size);
        return false;
    }
    pfill(p, size, xr_seed(p));
    return true;
}

static bool xr_give(void *p, size_t size)
{
    size_t at;
    if (!pcheck(p, size, xr_seed(p), size, &at)) {
        bad("block %p (%zu bytes) byte %zu overwritten while live", p, size, at);
        return false;
    }
    unsigned char one = 1;
    if (!atomic_compare_exchange_strong(xr_mark(p), &one, 0)) {
        bad("block %p freed but not held", p);
        return false;
    }
    return true;
}

typedef struct xr_arg {
    uint64_t rng;
    int n;
} xr_arg;

static void *xr_producer(void *arg)
{
    xr_arg *a = arg;
    for (int k = 0; k < a->n && !atomic_load(&any_failed); k++) {
        size_t size = xr_sizes[next_rand(&a->rng) % 6];
        void *p;
        hm_status st = hm_heap_alloc(xr.h, size, HM_LEVEL_TASK, &p);
        if (st) {
            bad("producer: alloc(%zu) = %s", size, sname(st));
            break;
        }
        if (!xr_take(p, size)) break;
        int i = atomic_fetch_add(&xr.qn, 1);
        xr.q[i].p = p;
        xr.q[i].size = size;
        atomic_store_explicit(&xr.ready[i], 1, memory_order_release);
    }
    return NULL; /* at once: its pages lose their owner while the consumers free into them */
}

static void *xr_consumer(void *arg)
{
    (void)arg;
    for (;;) {
        int i = atomic_fetch_add(&xr.qtake, 1);
        if (i >= xr.total || atomic_load(&any_failed)) break;
        while (!atomic_load_explicit(&xr.ready[i], memory_order_acquire)) {
            if (atomic_load(&any_failed)) return NULL;
            sched_yield();
        }
        void *p = xr.q[i].p;
        if (!xr_give(p, xr.q[i].size)) break;
        hm_status st = hm_heap_free(xr.h, p);
        if (st) bad("consumer: Free(%p) = %s", p, sname(st));
        /* (no second Free here: once in xfree, the block may be collected and handed out again to
         * another thread at once, and a second Free would then free that thread's block; see
         * test_second_free_in_xfree) */
        atomic_fetch_add(&xr.frees, 1);
    }
    return NULL;
}

static void *xr_adopter(void *arg)
{
    xr_arg *a = arg;
    void **p = calloc((size_t)a->n, sizeof *p);
    size_t *sz = calloc((size_t)a->n, sizeof *sz);
    int n = 0;
    for (; n < a->n && !atomic_load(&any_failed); n++) {
        sz[n] = xr_sizes[next_rand(&a->rng) % 6];
        hm_status st = hm_heap_alloc(xr.h, sz[n], HM_LEVEL_TASK, &p[n]);
        if (st) {
            bad("adopter: alloc(%zu) = %s", sz[n], sname(st));
            break;
        }
        if (!xr_take(p[n], sz[n])) {
            n++;
            break;
        }
    }
    atomic_fetch_add(&xr.adopted, (unsigned long)n);
    for (int k = 0; k < n; k++) {
        if (!xr_give(p[k], sz[k])) continue;
        hm_status st = hm_heap_free(xr.h, p[k]);
        if (st) bad("adopter: Free(%p) = %s", p[k], sname(st));
    }
    free(p);
    free(sz);
    return NULL;
}

/* Producers allocate and exit at once while consumers free their blocks (disown racing xfree pushes
 * and owner notifications); adopters then allocate the same classes from the ownerless pages with
 * pending xfree while the consumers go on. No block may be handed out twice (a mark per block), none
 * overwritten (patterns), none lost: after each round no block is live, and after trim no page but
 * the segment headers stays committed. */
static void test_exit_races(void **state)
{
    (void)state;
    memset(&xr, 0, sizeof xr);
    hm_manager *m = make("limit=1G");
    xr.h = mk_heap(m, HM_HEAP_THREADSAFE);
    pthread_mutex_init(&xr.seg_lock, NULL);
    xr.mark = calloc((size_t)XR_SEGS * XR_BLOCKS, 1);
    const int per = UNDER_TSAN ? 800 : 2000;
    xr.q = calloc((size_t)XR_P * per, sizeof xr.q[0]);
    xr.ready = calloc((size_t)XR_P * per, sizeof xr.ready[0]);
    assert_non_null(xr.mark);
    assert_non_null(xr.q);
    assert_non_null(xr.ready);
    uint64_t rng = 0x243F6A8885A308D3ull ^ (uint64_t)time(NULL);
    int rounds = (int)((UNDER_TSAN ? 4 : 10) * scale());
    for (int r = 0; r < rounds && !atomic_load(&any_failed); r++) {
        xr.total = XR_P * per;
        atomic_store(&xr.qn, 0);
        atomic_store(&xr.qtake, 0);
        for (int i = 0; i < xr.total; i++) atomic_store(&xr.ready[i], 0);
        pthread_t tp[XR_P], tc[XR_C], ta[XR_A];
        xr_arg ap[XR_P], ac[XR_C], aa[XR_A];
        for (int i = 0; i < XR_C; i++) {
            ac[i] = (xr_arg){next_rand(&rng) | 1, 0};
            assert_int_equal(pthread_create(&tc[i], NULL, xr_consumer, &ac[i]), 0);
        }
        for (int i = 0; i < XR_P; i++) {
            ap[i] = (xr_arg){next_rand(&rng) | 1, per};
            assert_int_equal(pthread_create(&tp[i], NULL, xr_producer, &ap[i]), 0);
        }
        for (int i = 0; i < XR_P; i++) pthread_join(tp[i], NULL);
        for (int i = 0; i < XR_A; i++) {
            aa[i] = (xr_arg){next_rand(&rng) | 1, per};
            assert_int_equal(pthread_create(&ta[i], NULL, xr_adopter, &aa[i]), 0);
        }
        for (int i = 0; i < XR_A; i++) pthread_join(ta[i], NULL);
        for (int i = 0; i < XR_C; i++) pthread_join(tc[i], NULL);
        check_failed();
        hm_heap_stats s = hstats(xr.h);
        if (s.live_blocks || s.live_bytes)
            fail_msg("round %d: every block freed, every thread gone: stats say %" PRIu64 " blocks / %" PRIu64
                     " bytes live", r, s.live_blocks, s.live_bytes);
        assert_int_equal(tu_charge(m), heap_charge(xr.h));
        assert_int_equal(hm_heap_trim(xr.h), HM_OK);
        s = hstats(xr.h);
        if (s.committed_pages != s.segments)
            fail_msg("round %d: no block live, no thread, trimmed: %" PRIu64 " pages committed in %" PRIu64
                     " segments (a block lost in some page?)", r, s.committed_pages, s.segments);
        assert_int_equal(tu_charge(m), heap_charge(xr.h));
    }
    print_message("exit races: %d rounds, %lu cross-thread frees, %lu blocks adopters got\n", rounds,
                  (unsigned long)xr.frees, (unsigned long)xr.adopted);
    check_failed();
    check_books();
    assert_int_equal(hm_heap_destroy(xr.h), HM_OK);
    assert_int_equal(tu_charge(m), 0);
    assert_int_equal(hm_manager_destroy(m), HM_OK);
    free(xr.mark);
    free(xr.q);
    free(xr.ready);
}

/* ---- 6. budget pressure ---------------------------------------------------------------------- */

#define BT_T 4
#define BT_CAP 4096

typedef struct bthread {
    hm_heap *h;
    hm_level lv;
    uint64_t rng;
    pthread_barrier_t *bar;
    void *p[BT_CAP];
    size_t sz[BT_CAP], usable[BT_CAP];
    int n, refused, again;
} bthread;

static void bt_free(bthread *b, int k)
{
    size_t at;
    if (!pcheck(b->p[k], b->sz[k], xr_seed(b->p[k]), b->sz[k], &at))
        bad("budget: block %p (%zu bytes) byte %zu overwritten", b->p[k], b->sz[k], at);
    hm_status st = hm_heap_free(b->h, b->p[k]);
    if (st) bad("budget: Free(%p) = %s", b->p[k], sname(st));
    b->p[k] = NULL;
}

static bool bt_alloc(bthread *b, size_t size, hm_level lv)
{
    void *p = (void *)1;
    hm_status st = hm_heap_alloc(b->h, size, lv, &p);
    if (st == HM_E_COMMITMENT_LIMIT) {
        if (p) bad("budget: a refused allocation left *out = %p", p);
        b->refused++;
        return false;
    }
    if (st) {
        bad("budget: alloc(%zu, level %d) = %s: %s", size, (int)lv, sname(st), hm_last_detail());
        b->refused++;
        return false;
    }
    int k = b->n++;
    b->p[k] = p;
    b->sz[k] = size;
    b->usable[k] = hm_heap_usable_size(b->h, p);
    pfill(p, size, xr_seed(p));
    return true;
}

static size_t bt_size(bthread *b)
{
    return next_rand(&b->rng) % 100 < 75 ? small_size(&b->rng) : (size_t)(64 * KiB + next_rand(&b->rng) % (960 * KiB));
}

static void *bt_worker(void *arg)
{
    bthread *b = arg;
    /* 1: allocate at this thread's level until the budget has refused 20 times */
    while (b->refused < 20 && b->n < BT_CAP && !atomic_load(&any_failed)) (void)bt_alloc(b, bt_size(b), b->lv);
    pthread_barrier_wait(b->bar); /* main looks */
    pthread_barrier_wait(b->bar);
    /* 2: half back; then the heap serves again, at the process level */
    for (int k = 0; k < b->n; k += 2) bt_free(b, k);
    for (int k = 0; k < 20; k++) b->again += bt_alloc(b, small_size(&b->rng), HM_LEVEL_PROCESS);
    pthread_barrier_wait(b->bar); /* main looks */
    pthread_barrier_wait(b->bar);
    for (int k = 0; k < b->n; k++)
        if (b->p[k]) bt_free(b, k);
    return NULL;
}

static void bt_check(hm_manager *m, hm_heap *h, bthread *b, const char *when)
{
    uint64_t blocks = 0, bytes = 0;
    for (int t = 0; t < BT_T; t++)
        for (int k = 0; k < b[t].n; k++)
            if (b[t].p[k]) {
                blocks++;
                bytes += b[t].usable[k];
            }
    hm_heap_stats s;
    (void)hm_heap_get_stats(h, &s);
    if (s.live_blocks != blocks || s.live_bytes != bytes)
        bad("%s: stats %" PRIu64 " blocks / %" PRIu64 " bytes live, the threads hold %" PRIu64 " / %" PRIu64, when,
            s.live_blocks, s.live_bytes, blocks, bytes);
    hm_manager_stats ms;
    (void)hm_manager_get_stats(m, &ms);
    if (ms.charge != heap_charge(h) || ms.charge > ms.limit)
        bad("%s: charge %" PRIu64 ", the heap's pages %" PRIu64 ", limit %" PRIu64, when, ms.charge, heap_charge(h), ms.limit);
    hm_status st = hm_vmap_check(!UNDER_TSAN);
    if (st != HM_OK) bad("hm_vmap_check: %s: %s", sname(st), hm_last_detail());
}

/* A tight budget (16 MiB: task 12, appdomain 14, process 16) shared by four threads at different
 * levels: refusals leave the heap exact and usable; the memory state goes Low; while it is Low, a
 * freed page is decommitted at once (no empty page waits). */
static void test_budget_pressure(void **state)
{
    (void)state;
    hm_manager *m = make("limit=16M,reserve.appdomain=2M,reserve.process=2M");
    hm_heap *h = mk_heap(m, HM_HEAP_THREADSAFE);
    pthread_barrier_t bar;
    pthread_barrier_init(&bar, NULL, BT_T + 1);
    static bthread b[BT_T];
    pthread_t t[BT_T];
    const hm_level lv[BT_T] = {HM_LEVEL_TASK, HM_LEVEL_APPDOMAIN, HM_LEVEL_PROCESS, HM_LEVEL_TASK};
    uint64_t rng = 0x13198A2E03707344ull ^ (uint64_t)time(NULL);
    for (int i = 0; i < BT_T; i++) {
        memset(&b[i], 0, sizeof b[i]);
        b[i].h = h;
        b[i].lv = lv[i];
        b[i].rng = next_rand(&rng) | 1;
        b[i].bar = &bar;
        assert_int_equal(pthread_create(&t[i], NULL, bt_worker, &b[i]), 0);
    }
    pthread_barrier_wait(&bar);
    bt_check(m, h, b, "refused at every level");
    hm_manager_stats ms;
    (void)hm_manager_get_stats(m, &ms);
    for (int l = 0; l < 3; l++)
        if (!ms.refused[l]) bad("no refusal at level %d", l);
    if (ms.memory_state != HM_MEMORY_LOW) bad("memory state %d after refusals, not Low", (int)ms.memory_state);
    print_message("budget: refused at charge %" PRIu64 " KiB of %" PRIu64 " KiB (refusals by level %" PRIu64 "/%" PRIu64
                  "/%" PRIu64 ")\n",
                  ms.charge >> 10, ms.limit >> 10, ms.refused[0], ms.refused[1], ms.refused[2]);
    pthread_barrier_wait(&bar);
    pthread_barrier_wait(&bar);
    bt_check(m, h, b, "half freed, allocated again");
    /* after every thread freed half its blocks, its small allocations at the process level mostly
     * succeed: some may be refused while other threads' caches hold freed large blocks
     * (test_idle_thread_pins_large_blocks) */
    int again = 0;
    for (int i = 0; i < BT_T; i++) again += b[i].again;
    hm_heap_stats s2;
    (void)hm_heap_get_stats(h, &s2);
    print_message("budget: half freed: %d of %d small process-level allocations served (charge %" PRIu64
                  " KiB, %" PRIu64 " KiB of freed large blocks cached)\n",
                  again, 20 * BT_T, tu_charge(m) >> 10, s2.cached_large_bytes >> 10);
    if (!again) bad("no allocation served after every thread freed half its blocks");
    pthread_barrier_wait(&bar);
    for (int i = 0; i < BT_T; i++) pthread_join(t[i], NULL);
    pthread_barrier_destroy(&bar);
    check_failed();
    bt_check(m, (b[0].n = b[1].n = b[2].n = b[3].n = 0, h), b, "all freed");
    check_failed();
    assert_int_equal(hm_heap_trim(h), HM_OK);
    assert_int_equal(tu_charge(m), heap_charge(h));

    /* Low: an empty page is given back at once */
    hm_heap *g = mk_heap(m, HM_HEAP_THREADSAFE);
    enum { N = 2000 };
    static void *p[N];
    for (int i = 0; i < N; i++) assert_int_equal(hm_heap_alloc(g, 1000, HM_LEVEL_PROCESS, &p[i]), HM_OK);
    hm_heap_stats full = hstats(g);
    void *huge = (void *)1;
    assert_int_equal(hm_heap_alloc(g, 64 * MiB, HM_LEVEL_TASK, &huge), HM_E_COMMITMENT_LIMIT);
    assert_int_equal(tu_stats(m).memory_state, HM_MEMORY_LOW);
    for (int i = 0; i < N; i++) assert_int_equal(hm_heap_free(g, p[i]), HM_OK);
    hm_heap_stats after = hstats(g);
    print_message("budget: %d blocks freed while Low: committed pages %" PRIu64 " -> %" PRIu64 " (%u empty pages wait)\n", N,
                  full.committed_pages, after.committed_pages, g->nempty);
    if (tu_stats(m).memory_state != HM_MEMORY_LOW) {
        print_message("budget: the state left Low while freeing: the Low check is skipped\n");
    } else {
        if (g->nempty) fail_msg("%u empty pages wait to be decommitted while memory is Low", g->nempty);
        /* what stays: the pages of the blocks this thread's cache holds (128 of 1024 bytes), one kept page */
        if (after.committed_pages > after.segments + 4)
            fail_msg("%" PRIu64 " pages stay committed after freeing every block while Low", after.committed_pages - after.segments);
    }
    assert_int_equal(tu_charge(m), heap_charge(h) + heap_charge(g));
    assert_int_equal(hm_heap_destroy(g), HM_OK);
    assert_int_equal(hm_heap_destroy(h), HM_OK);
    assert_int_equal(tu_charge(m), 0);
    assert_int_equal(hm_manager_destroy(m), HM_OK);
}

/* ---- 7. a second Free of a block in xfree ------------------------------------------------------ */

/* Blocks another thread freed wait in their page's xfree (page.c) until the owner collects them, live
 * to the page's bits but tagged. A second Free of one, by that thread, a third or the owner (whose
 * fast path must see the non-empty xfree and look), is HOST_E_INVALIDOPERATION and changes nothing;
 * their usable size is 0; the owner's next allocations collect and hand them out again, once each. */
enum { SX_N = 300 };
static struct {
    hm_heap *h;
    void *p[SX_N];
} sx;

static void *sx_free_all(void *arg)
{
    bool second = arg != NULL;
    for (int i = 0; i < SX_N; i++) {
        hm_status st = hm_heap_free(sx.h, sx.p[i]);
        if (st != (second ? HM_E_HOST_INVALIDOPERATION : HM_OK))
            bad("%s Free(%p) by another thread = %s", second ? "second" : "first", sx.p[i], sname(st));
    }
    return NULL;
}

/* Each of sx.p freed again by the caller: refused, its usable size 0. */
static void sx_refused_again(void)
{
    for (int i = 0; i < SX_N; i++) {
        assert_int_equal(hm_heap_free(sx.h, sx.p[i]), HM_E_HOST_INVALIDOPERATION);
        assert_int_equal(hm_heap_usable_size(sx.h, sx.p[i]), 0);
    }
}

/* 64-byte allocations into q (at most qn) until every one of sx.p, and extra if not NULL, has been
 * handed out again, each once and no block twice; how many were made. */
static int sx_handed_out_again(void **q, int qn, void *extra)
{
    int want = SX_N + (extra != NULL), found = 0, nq = 0;
    while (found < want && nq < qn) {
        int i = nq++;
        assert_int_equal(hm_heap_alloc(sx.h, 64, HM_LEVEL_TASK, &q[i]), HM_OK);
        for (int k = 0; k < i; k++) assert_ptr_not_equal(q[k], q[i]);
        found += extra && q[i] == extra;
        for (int k = 0; k < SX_N; k++) found += q[i] == sx.p[k];
    }
    assert_int_equal(found, want);
    return nq;
}

/* The end of a test on sx.h: no block live, the books exact, the heap and manager destroyed. */
static void sx_done(hm_manager *m)
{
    assert_int_equal(hstats(sx.h).live_blocks, 0);
    check_books();
    assert_int_equal(hm_heap_destroy(sx.h), HM_OK);
    assert_int_equal(hm_manager_destroy(m), HM_OK);
}

static void test_second_free_in_xfree(void **state)
{
    (void)state;
    hm_manager *m = make("limit=64M");
    sx.h = mk_heap(m, HM_HEAP_THREADSAFE);
    for (int i = 0; i < SX_N; i++) assert_int_equal(hm_heap_alloc(sx.h, 64, HM_LEVEL_TASK, &sx.p[i]), HM_OK);
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, sx_free_all, NULL), 0); /* into xfree */
    pthread_join(t, NULL);
    assert_int_equal(pthread_create(&t, NULL, sx_free_all, (void *)1), 0); /* a third thread, again */
    pthread_join(t, NULL);
    check_failed();
    /* the first push onto the page's empty xfree took the page's blocks from the owner's fast Free
     * (which reads neither xfree nor the block: heap_internal.h, hm_page_arm_fbin) */
    hm_hpage *pg = hm_page_of((uintptr_t)sx.p[0]);
    assert_ptr_equal(atomic_load(hm_page_fbin(pg)), &hm_bin_none);
    check_pages(sx.h, NULL, NULL);
    sx_refused_again(); /* the owner, again */
    assert_int_equal(hstats(sx.h).live_blocks, 0);
    /* the owner's allocations collect them, each handed out once: after what its bin still holds,
     * and before the page's untouched blocks (a 64 KiB page holds 1024): xfree holds more than a
     * bin's worth (page.c, hm_heap_small_alloc) */
    enum { QN = SX_N + HM_BIN_N };
    static void *q[QN];
    int nq = sx_handed_out_again(q, QN, NULL);
    /* collected: the fast Free takes the page's blocks again */
    assert_ptr_equal(atomic_load(hm_page_fbin(pg)), &atomic_load(&pg->home)->top[pg->cls]);
    check_pages(sx.h, NULL, NULL);
    for (int i = 0; i < nq; i++) assert_int_equal(hm_heap_free(sx.h, q[i]), HM_OK);
    check_pages(sx.h, NULL, NULL);
    for (int i = 0; i < nq; i++) assert_int_equal(hm_heap_free(sx.h, q[i]), HM_E_HOST_INVALIDOPERATION);
    sx_done(m);
}

/* The owner's Free into a page whose xfree holds blocks (its fast Free turns the page away then)
 * collects them: the page is armed again, the collected blocks are free (a second Free of one is
 * refused) and each is handed out again once; a page that was full and got room that way leaves the
 * full list (check_pages: never on it at or below its wake). */
static void test_owner_free_collects_xfree(void **state)
{
    (void)state;
    hm_manager *m = make("limit=64M");
    sx.h = mk_heap(m, HM_HEAP_THREADSAFE);
    /* 64-byte blocks until a second page is taken: the first is full then, on the full list */
    enum { AN = 1100 };
    static void *a[AN];
    int na = 0;
    assert_int_equal(hm_heap_alloc(sx.h, 64, HM_LEVEL_TASK, &a[na++]), HM_OK);
    hm_hpage *pg = hm_page_of((uintptr_t)a[0]);
    for (;;) {
        assert_true(na < AN);
        assert_int_equal(hm_heap_alloc(sx.h, 64, HM_LEVEL_TASK, &a[na]), HM_OK);
        if (hm_page_of((uintptr_t)a[na++]) != pg) break;
    }
    assert_int_equal(pg->list, 2);
    check_pages(sx.h, NULL, NULL);
    /* another thread frees SX_N of the first page's blocks (a[1..SX_N]): into its xfree */
    for (int i = 0; i < SX_N; i++) sx.p[i] = a[1 + i];
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, sx_free_all, NULL), 0);
    pthread_join(t, NULL);
    check_failed();
    assert_ptr_equal(atomic_load(hm_page_fbin(pg)), &hm_bin_none);
    assert_true(atomic_load(&pg->xfree) != 0);
    /* the owner frees a[0], of the same page: its xfree is collected */
    assert_int_equal(hm_heap_free(sx.h, a[0]), HM_OK);
    assert_true(atomic_load(&pg->xfree) == 0);
    assert_ptr_equal(atomic_load(hm_page_fbin(pg)), &atomic_load(&pg->home)->top[pg->cls]);
    assert_int_equal(pg->list, 1); /* (301 of 1024 free: past its wake) */
    check_pages(sx.h, NULL, NULL);
    sx_refused_again();
    assert_int_equal(hm_heap_free(sx.h, a[0]), HM_E_HOST_INVALIDOPERATION);
    assert_int_equal(hstats(sx.h).live_blocks, (uint64_t)(na - 1 - SX_N));
    /* the fast Free takes the page's blocks again: the next allocations hand out the collected ones
     * (and a[0]), each once */
    enum { QN = 2 * SX_N + 1024 };
    static void *q[QN];
    int nq = sx_handed_out_again(q, QN, a[0]);
    check_pages(sx.h, NULL, NULL);
    for (int i = 0; i < nq; i++) assert_int_equal(hm_heap_free(sx.h, q[i]), HM_OK);
    for (int i = 1 + SX_N; i < na; i++) assert_int_equal(hm_heap_free(sx.h, a[i]), HM_OK);
    check_pages(sx.h, NULL, NULL);
    sx_done(m);
}

/* Frees in a row of one class, more than a bin holds, on either heap kind: the Free that finds the
 * bin full flushes half of it and the next ones take the fast path again (on a heap without
 * HM_HEAP_THREADSAFE too, whose caller owns its lists); second frees are refused, the pages' books
 * stay exact, and the blocks handed out again do not overlap. Small and medium classes. */
static void test_batch_frees(void **state)
{
    (void)state;
    for (uint32_t flags = 0; flags <= HM_HEAP_THREADSAFE; flags++) {
        hm_manager *m = make("limit=256M");
        hm_heap *h = mk_heap(m, flags);
        static const size_t sizes[] = {16, 64, 1000, 4096, 40000};
        enum { BN = 3000 };
        static void *p[BN], *q[BN];
        for (size_t z = 0; z < sizeof sizes / sizeof sizes[0]; z++) {
            int n = sizes[z] > 8192 ? 200 : BN;
            for (int i = 0; i < n; i++) assert_int_equal(hm_heap_alloc(h, sizes[z], HM_LEVEL_TASK, &p[i]), HM_OK);
            for (int i = 0; i < n; i++) assert_int_equal(hm_heap_free(h, p[i]), HM_OK);
            check_pages(h, NULL, NULL);
            for (int i = 0; i < n; i += 7) assert_int_equal(hm_heap_free(h, p[i]), HM_E_HOST_INVALIDOPERATION);
            hm_heap_stats st = hstats(h);
            assert_int_equal(st.live_blocks, 0);
            /* the same number again: distinct blocks (each filled, then read back) */
            for (int i = 0; i < n; i++) {
                assert_int_equal(hm_heap_alloc(h, sizes[z], HM_LEVEL_TASK, &q[i]), HM_OK);
                memset(q[i], (int)i, sizes[z]);
            }
            check_pages(h, NULL, NULL);
            for (int i = 0; i < n; i++) {
                for (size_t k = 0; k < sizes[z]; k += 512) assert_int_equal(((unsigned char *)q[i])[k], (unsigned char)i);
                assert_int_equal(hm_heap_free(h, q[i]), HM_OK);
            }
            check_pages(h, NULL, NULL);
            st = hstats(h);
            assert_int_equal(st.live_blocks, 0);
        }
        check_books();
        assert_int_equal(hm_heap_destroy(h), HM_OK);
        assert_int_equal(hm_manager_destroy(m), HM_OK);
    }
}

/* ---- 7. a heap destroyed while other threads' caches hold its blocks ------------------------- */

#define DT_T 3
#define DT_N 300

static struct {
    hm_heap *_Atomic cur;
    hm_heap *g;
    pthread_barrier_t bar;
    void *x[DT_T][DT_N]; /* blocks handed to the next thread */
    int nx[DT_T];
} dt;

typedef struct dthread {
    int id;
    uint64_t rng;
} dthread;

/* On heap h: allocate small and large blocks, free half (the cache and the large cache fill), hand a
 * quarter to the next thread, free the next thread's (into the xfree of this one's pages). */
static void dt_work(dthread *d, hm_heap *h, bool all)
{
    void *p[DT_N];
    size_t sz[DT_N];
    for (int k = 0; k < DT_N; k++) {
        sz[k] = k % 60 == 0 ? (size_t)(33 * KiB + next_rand(&d->rng) % (990 * KiB)) : small_size(&d->rng);
        hm_status st = hm_heap_alloc(h, sz[k], HM_LEVEL_TASK, &p[k]);
        if (st) {
            bad("destroy: alloc(%zu) = %s", sz[k], sname(st));
            return;
        }
        pfill(p[k], sz[k], xr_seed(p[k]));
        void *q;
        if (k % 7 == 0 && !hm_heap_alloc(dt.g, sz[k] % 2000, HM_LEVEL_TASK, &q)) (void)hm_heap_free(dt.g, q);
    }
    int nx = 0;
    for (int k = 0; k < DT_N; k++) {
        size_t at;
        if (!pcheck(p[k], sz[k], xr_seed(p[k]), sz[k], &at)) bad("destroy: block %p byte %zu overwritten", p[k], at);
        if (k % 4 == 1) dt.x[d->id][nx++] = p[k];
        else if (k % 2 == 0 || all) {
            hm_status st = hm_heap_free(h, p[k]);
            if (st) bad("destroy: Free(%p) = %s", p[k], sname(st));
        }
    }
    dt.nx[d->id] = nx;
    pthread_barrier_wait(&dt.bar);
    int from = (d->id + 1) % DT_T;
    for (int k = 0; k < dt.nx[from]; k++) {
        hm_status st = hm_heap_free(h, dt.x[from][k]);
        if (st) bad("destroy: Free(%p) from another thread = %s", dt.x[from][k], sname(st));
    }
    pthread_barrier_wait(&dt.bar);
}

static void *dt_thread(void *arg)
{
    dthread *d = arg;
    dt_work(d, atomic_load(&dt.cur), false); /* leaves live blocks, cached blocks, pending xfree */
    pthread_barrier_wait(&dt.bar);            /* idle: main destroys the heap, makes another */
    pthread_barrier_wait(&dt.bar);
    dt_work(d, atomic_load(&dt.cur), true);
    return NULL; /* exits with a cache of the destroyed heap and one of the new */
}

static void test_destroy_under_caches(void **state)
{
    (void)state;
    hm_manager *m = make("limit=1G");
    dt.g = mk_heap(m, HM_HEAP_THREADSAFE);
    uint64_t rng = 0xA4093822299F31D0ull ^ (uint64_t)time(NULL);
    int rounds = (int)(4 * scale()), same = 0;
    for (int r = 0; r < rounds; r++) {
        hm_heap *h = mk_heap(m, HM_HEAP_THREADSAFE);
        atomic_store(&dt.cur, h);
        pthread_barrier_init(&dt.bar, NULL, DT_T + 1);
        pthread_t t[DT_T];
        dthread d[DT_T];
        for (int i = 0; i < DT_T; i++) {
            d[i] = (dthread){i, next_rand(&rng) | 1};
            assert_int_equal(pthread_create(&t[i], NULL, dt_thread, &d[i]), 0);
        }
        pthread_barrier_wait(&dt.bar);
        pthread_barrier_wait(&dt.bar);
        pthread_barrier_wait(&dt.bar); /* the threads idle, holding h's blocks in their caches */
        check_failed();
        assert_int_equal(hm_heap_destroy(h), HM_OK);
        assert_int_equal(tu_charge(m), heap_charge(dt.g));
        hm_heap *h2 = mk_heap(m, HM_HEAP_THREADSAFE);
        same += h2 == h;
        atomic_store(&dt.cur, h2);
        pthread_barrier_wait(&dt.bar);
        pthread_barrier_wait(&dt.bar);
        pthread_barrier_wait(&dt.bar);
        for (int i = 0; i < DT_T; i++) pthread_join(t[i], NULL);
        pthread_barrier_destroy(&dt.bar);
        check_failed();
        hm_heap_stats s = hstats(h2);
        assert_int_equal(s.live_blocks, 0);
        assert_int_equal(s.live_bytes, 0);
        assert_int_equal(hstats(dt.g).live_blocks, 0);
        assert_int_equal(tu_charge(m), heap_charge(h2) + heap_charge(dt.g));
        assert_int_equal(hm_heap_trim(h2), HM_OK);
        s = hstats(h2);
        if (s.committed_pages != s.segments || s.cached_large_bytes)
            fail_msg("the new heap, all threads gone, trimmed: %" PRIu64 " pages in %" PRIu64 " segments, %" PRIu64
                     " bytes of cached large blocks", s.committed_pages, s.segments, s.cached_large_bytes);
        assert_int_equal(hm_heap_destroy(h2), HM_OK);
        assert_int_equal(tu_charge(m), heap_charge(dt.g));
        check_books();
    }
    print_message("destroy under caches: %d rounds (the new heap at the old one's address %d times)\n", rounds, same);
    assert_int_equal(hm_heap_destroy(dt.g), HM_OK);
    assert_int_equal(tu_charge(m), 0);
    assert_int_equal(hm_manager_destroy(m), HM_OK);
}

int main(void)
{
    hm_heap_untracked = getenv("HM_TEST_UNTRACKED") != NULL; /* (src/heap/track.h; the *_untracked tests) */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ownerless_pages_trimmed),
        cmocka_unit_test(test_dead_heap_caches_freed),
        cmocka_unit_test(test_double_free_during_refill),
        cmocka_unit_test(test_double_free_racing_release),
        cmocka_unit_test(test_double_free_racing_decommit),
        cmocka_unit_test(test_small_refused_while_large_cached),
        cmocka_unit_test(test_idle_thread_pins_large_blocks),
        cmocka_unit_test(test_model_threads),
        cmocka_unit_test(test_exit_races),
        cmocka_unit_test(test_budget_pressure),
        cmocka_unit_test(test_second_free_in_xfree),
        cmocka_unit_test(test_owner_free_collects_xfree),
        cmocka_unit_test(test_batch_frees),
        cmocka_unit_test(test_destroy_under_caches),
    };
    /* HM_STRESS_ONLY=<substring>: only the tests whose name holds it */
    const char *only = getenv("HM_STRESS_ONLY");
    struct CMUnitTest pick[sizeof tests / sizeof tests[0]];
    size_t n = 0;
    for (size_t i = 0; i < sizeof tests / sizeof tests[0]; i++)
        if (!only || strstr(tests[i].name, only)) pick[n++] = tests[i];
    return _cmocka_run_group_tests("heap_stress", pick, n, NULL, NULL);
}
