/* heap_threads.c — heaps under threads (SPEC 4, 3.2, 3.3, 3.4): a randomized 4-thread run with a reference model and cross-thread frees on a MALLOC_THREADSAFE heap (roomy and tight budgets, and with every empty page purged at once, the heap lock dropped around each decommit), a single-threaded heap handed between threads, waits released by a Free, shutdown of waiters, stops racing the inline paths, Free of another heap's block while that heap is busy, threads' caches outliving their heap, and debug sites read while written. */
#define _GNU_SOURCE
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "heap/heap_internal.h"
#include "heap/track.h"
#include "testutil.h"
#include "heap_testutil.h"
#include "vmap/vmap.h"

/* under ThreadSanitizer: fewer operations, and no comparison with the kernel's mappings (testutil.h) */
#define UNDER_TSAN (!KERNEL_CHECK)

#define KiB ((size_t)1024)
#define MiB ((size_t)1 << 20)

#define NT 4
#define SLOTS 96   /* live blocks a thread keeps at most */
#define XSLOTS 32  /* blocks in transit between threads */
#define OPS (UNDER_TSAN ? 50000 : 100000)

/* ---- helpers ---------------------------------------------------------------------------------- */

/* ---- the reference model ---------------------------------------------------------------------- */

typedef struct blk {
    unsigned char *p; /* NULL: empty slot */
    size_t size;
    unsigned char pat; /* every byte of the block's size holds it */
} blk;

/* The exchange through which threads hand blocks to each other (the caller's own lock). */
static struct {
    pthread_mutex_t lock;
    blk slot[XSLOTS];
} xchg = {.lock = PTHREAD_MUTEX_INITIALIZER};

typedef struct worker {
    hm_heap *h;
    int id;
    uint64_t rng;
    bool tight;              /* memory refusals are expected */
    blk *table;              /* SLOTS entries (shared by every thread in the handover test) */
    pthread_mutex_t *turn;   /* the handover test: held while using the heap */
    char failure[256];       /* the first model mismatch */
    uint64_t ops, allocs, frees, reallocs, given, taken, refused, checks;
} worker;

#define WFAIL(w, ...)                                                                   \
    do {                                                                                \
        if (!(w)->failure[0]) snprintf((w)->failure, sizeof (w)->failure, __VA_ARGS__); \
        return false;                                                                   \
    } while (0)

static bool verify(worker *w, const blk *b, const char *when)
{
    w->checks++;
    if (!b->size) return true;
    if (b->p[0] != b->pat || memcmp(b->p, b->p + 1, b->size - 1))
        WFAIL(w, "thread %d: block %p (%zu bytes, pattern %#x) corrupted %s", w->id, (void *)b->p, b->size, b->pat,
              when);
    return true;
}

static size_t rand_size(uint64_t *r)
{
    uint64_t x = next_rand(r), k = x % 100;
    x >>= 8;
    if (k < 70) return (size_t)(x % 257);               /* 0..256: small classes, size 0 included */
    if (k < 90) return 257 + (size_t)(x % 3840);        /* to 4 KiB */
    if (k < 98) return 4097 + (size_t)(x % 28672);      /* to 32 KiB */
    return 32769 + (size_t)(x % (UNDER_TSAN ? 60000 : 150000)); /* large */
}

static bool refusal(hm_status st) { return st == HM_E_COMMITMENT_LIMIT; }

/* One random operation on w's table. */
static bool step(worker *w)
{
    uint64_t r = next_rand(&w->rng);
    unsigned op = (unsigned)(r % 100);
    size_t i = (size_t)((r >> 8) % SLOTS);
    hm_level lv = (hm_level)((r >> 20) % 3);
    blk *b = &w->table[i];
    w->ops++;
    if (op < 35) { /* allocate into slot i (freeing what was there) */
        if (b->p) {
            if (!verify(w, b, "before its free")) return false;
            hm_status st = hm_heap_free(w->h, b->p);
            if (st) WFAIL(w, "thread %d: free(%p) = %#x: %s", w->id, (void *)b->p, (unsigned)st, hm_last_detail());
            b->p = NULL;
            w->frees++;
        }
        size_t size = rand_size(&w->rng);
        unsigned kind = (unsigned)((r >> 28) % 8);
        size_t align = (size_t)16 << ((r >> 32) % 9);
        void *p = NULL;
        /* (debug blocks of size 0 are left to heap.c's test_debug_zero_size) */
        hm_status st = kind == 0   ? hm_heap_alloc_debug(w->h, size ? size : 1, lv, "heap_threads.c", w->id, &p)
                       : kind == 1 ? hm_heap_calloc(w->h, 1, size, lv, &p)
                       : kind == 2 ? hm_heap_alloc_aligned(w->h, size, align, lv, &p)
                                   : hm_heap_alloc(w->h, size, lv, &p);
        if (w->tight && refusal(st)) {
            if (p) WFAIL(w, "thread %d: a refused allocation returned %p", w->id, p);
            w->refused++;
            return true;
        }
        if (st || !p) WFAIL(w, "thread %d: alloc kind %u of %zu = %#x: %s", w->id, kind, size, (unsigned)st, hm_last_detail());
        if ((uintptr_t)p % (kind == 2 ? align : 16)) WFAIL(w, "thread %d: %p misaligned (kind %u)", w->id, p, kind);
        if (hm_heap_usable_size(w->h, p) < size) WFAIL(w, "thread %d: usable size of %p below %zu", w->id, p, size);
        if (kind == 1)
            for (size_t k = 0; k < size; k++)
                if (((unsigned char *)p)[k]) WFAIL(w, "thread %d: calloc'd %p byte %zu not zero", w->id, p, k);
        *b = (blk){p, size, (unsigned char)(r >> 40)};
        memset(p, b->pat, size);
        w->allocs++;
    } else if (op < 60) { /* free */
        if (!b->p) return true;
        if (!verify(w, b, "before its free")) return false;
        hm_status st = hm_heap_free(w->h, b->p);
        if (st) WFAIL(w, "thread %d: free(%p) = %#x: %s", w->id, (void *)b->p, (unsigned)st, hm_last_detail());
        b->p = NULL;
        w->frees++;
    } else if (op < 75) { /* realloc */
        if (!b->p) return true;
        size_t size = rand_size(&w->rng);
        void *q = NULL;
        hm_status st = hm_heap_realloc(w->h, b->p, size, lv, &q);
        if (w->tight && refusal(st)) { /* the block is untouched */
            w->refused++;
            return verify(w, b, "after a refused realloc");
        }
        if (st || !q) WFAIL(w, "thread %d: realloc(%p, %zu -> %zu) = %#x: %s", w->id, (void *)b->p, b->size, size,
                            (unsigned)st, hm_last_detail());
        blk nb = {q, b->size < size ? b->size : size, b->pat};
        if (!verify(w, &nb, "after realloc")) return false;
        if (hm_heap_usable_size(w->h, q) < size) WFAIL(w, "thread %d: realloc'd %p: usable below %zu", w->id, q, size);
        *b = (blk){q, size, (unsigned char)(r >> 40)};
        memset(q, b->pat, size);
        w->reallocs++;
    } else if (op < 85) { /* check */
        if (b->p && !verify(w, b, "at a check")) return false;
        if (b->p && !hm_heap_usable_size(w->h, b->p) && b->size)
            WFAIL(w, "thread %d: live block %p has no usable size", w->id, (void *)b->p);
    } else if (op < 93) { /* hand slot i to another thread */
        if (!b->p || w->turn) return true;
        pthread_mutex_lock(&xchg.lock);
        for (size_t k = 0; k < XSLOTS; k++)
            if (!xchg.slot[k].p) {
                xchg.slot[k] = *b;
                b->p = NULL;
                w->given++;
                break;
            }
        pthread_mutex_unlock(&xchg.lock);
    } else if (op < 99) { /* take a block another thread handed over into slot i */
        if (b->p || w->turn) return true;
        pthread_mutex_lock(&xchg.lock);
        size_t k0 = (size_t)(r >> 36) % XSLOTS;
        for (size_t k = 0; k < XSLOTS; k++) {
            blk *x = &xchg.slot[(k0 + k) % XSLOTS];
            if (x->p) {
                *b = *x;
                x->p = NULL;
                w->taken++;
                break;
            }
        }
        pthread_mutex_unlock(&xchg.lock);
        if (b->p && !verify(w, b, "after a hand-over")) return false;
    } else { /* the heap's books, read concurrently */
        hm_heap_stats s;
        if (hm_heap_get_stats(w->h, &s)) WFAIL(w, "thread %d: get_stats failed", w->id);
        if (s.large_bytes > s.live_bytes) WFAIL(w, "thread %d: large bytes above live bytes", w->id);
    }
    return true;
}

static void *worker_main(void *arg)
{
    worker *w = arg;
    if (!w->turn) {
        for (int k = 0; k < OPS; k++)
            if (!step(w)) break;
    } else { /* a single-threaded heap: one thread at a time, by the caller's promise */
        for (int round = 0; round < OPS / 50 && !w->failure[0]; round++) {
            pthread_mutex_lock(w->turn);
            for (int k = 0; k < 50; k++)
                if (!step(w)) break;
            pthread_mutex_unlock(w->turn);
            sched_yield();
        }
    }
    return NULL;
}

static bool drain(worker *w, blk *table)
{
    for (size_t i = 0; i < SLOTS; i++)
        if (table[i].p) {
            if (!verify(w, &table[i], "at the end")) return false;
            hm_status st = hm_heap_free(w->h, table[i].p);
            if (st) WFAIL(w, "free(%p) at the end = %#x: %s", (void *)table[i].p, (unsigned)st, hm_last_detail());
            table[i].p = NULL;
        }
    return true;
}

/* Runs NT workers on h, then frees everything and checks the books. */
static void run_model(const char *opts, uint32_t flags, bool tight, bool handover)
{
    uint64_t seed = (uint64_t)time(NULL) * 2654435761u ^ (uint64_t)clock();
    const char *env = getenv("HM_HEAP_SEED");
    if (env) seed = strtoull(env, NULL, 0);
    if (!seed) seed = 1;
    hm_manager *m = make(opts);
    hm_heap *h = mk_heap(m, flags);
    static blk tables[NT][SLOTS], shared[SLOTS];
    memset(tables, 0, sizeof tables);
    memset(shared, 0, sizeof shared);
    memset(xchg.slot, 0, sizeof xchg.slot);
    pthread_mutex_t turn = PTHREAD_MUTEX_INITIALIZER;
    worker w[NT];
    pthread_t t[NT];
    double t0 = now_s();
    for (int i = 0; i < NT; i++) {
        w[i] = (worker){.h = h, .id = i, .rng = seed * (uint64_t)(2 * i + 1) + 0x9E3779B97F4A7C15ull, .tight = tight,
                        .table = handover ? shared : tables[i], .turn = handover ? &turn : NULL};
        assert_int_equal(pthread_create(&t[i], NULL, worker_main, &w[i]), 0);
    }
    for (int i = 0; i < NT; i++) pthread_join(t[i], NULL);
    double dt = now_s() - t0;
    worker fin = {.h = h, .id = -1};
    bool ok = true;
    for (int i = 0; i < NT && ok; i++) ok = drain(&fin, handover ? shared : tables[i]);
    for (size_t k = 0; k < XSLOTS && ok; k++)
        if (xchg.slot[k].p) {
            ok = verify(&fin, &xchg.slot[k], "in the exchange at the end");
            if (ok && hm_heap_free(h, xchg.slot[k].p)) ok = false;
            xchg.slot[k].p = NULL;
        }
    uint64_t ops = 0, allocs = 0, frees = 0, reallocs = 0, moved = 0, refused = 0;
    for (int i = 0; i < NT; i++) {
        if (w[i].failure[0]) fail_msg("seed %#" PRIx64 ": %s", seed, w[i].failure);
        ops += w[i].ops;
        allocs += w[i].allocs;
        frees += w[i].frees;
        reallocs += w[i].reallocs;
        moved += w[i].taken;
        refused += w[i].refused;
    }
    if (!ok) fail_msg("seed %#" PRIx64 ": %s", seed, fin.failure[0] ? fin.failure : "a free at the end failed");
    hm_heap_stats s = hstats(h);
    hm_manager_stats ms = tu_stats(m);
    print_message("heap_threads (%s%s): seed %#" PRIx64 ", %" PRIu64 " ops in %.2f s: %" PRIu64 " allocs, %" PRIu64
                  " frees, %" PRIu64 " reallocs, %" PRIu64 " handed over, %" PRIu64 " refused; peak charge %" PRIu64
                  ", %" PRIu64 " segments\n",
                  handover ? "handover" : "threadsafe", tight ? ", tight" : "", seed, ops, dt, allocs, frees, reallocs,
                  moved, refused, ms.peak_charge, s.segments);
    if (!tight && refused) fail_msg("seed %#" PRIx64 ": %" PRIu64 " refusals under a roomy budget", seed, refused);
    assert_int_equal(s.live_blocks, 0);
    assert_int_equal(s.live_bytes, 0);
    assert_int_equal(s.large_bytes, 0);
    if (ms.charge != heap_charge(h))
        fail_msg("seed %#" PRIx64 ": manager charge %" PRIu64 " != the heap's committed pages %" PRIu64, seed, ms.charge,
                 heap_charge(h));
    assert_true(ms.peak_charge <= ms.limit); /* SPEC 3.2 invariant */
    check_books();
    assert_int_equal(hm_heap_destroy(h), HM_OK);
    assert_int_equal(tu_stats(m).charge, 0);
    assert_int_equal(hm_manager_destroy(m), HM_OK);
}

/* SPEC 4: a MALLOC_THREADSAFE heap used by 4 threads at once, blocks freed by other threads. */
static void test_threadsafe_model(void **state)
{
    (void)state;
    run_model("limit=512M", HM_HEAP_THREADSAFE, false, false);
}

/* The same with no delay before an empty page or span is decommitted: every page claim and every
 * page given up purges, dropping the heap's lock around each decommit (segment.c), while the other
 * threads claim pages, spans and cached spans, and commit in other segments. */
static void test_threadsafe_model_purging(void **state)
{
    (void)state;
    uint32_t delay = hm_heap_empty_delay_ms;
    hm_heap_empty_delay_ms = 0;
    run_model("limit=512M", HM_HEAP_THREADSAFE, false, false);
    hm_heap_empty_delay_ms = delay;
}

/* SPEC 3.2, 4: the same under a tight budget at mixed levels: refusals leave blocks intact and the
 * charge never passes the limit. */
static void test_threadsafe_tight(void **state)
{
    (void)state;
    run_model("limit=6M,reserve.appdomain=1M,reserve.process=1M", HM_HEAP_THREADSAFE | HM_HEAP_EXECUTABLE, true, false);
}

/* SPEC 4: without MALLOC_THREADSAFE the caller promises one thread at a time: 4 threads take turns
 * under the caller's mutex, each freeing blocks the others allocated. */
static void test_single_threaded_handover(void **state)
{
    (void)state;
    run_model("limit=512M", 0, false, true);
}

/* ---- waits ------------------------------------------------------------------------------------ */

typedef struct releaser {
    hm_heap *h;
    void *p;
    int delay_ms;
    double free_took;
    hm_status st;
} releaser;

static void *release_later(void *arg)
{
    releaser *r = arg;
    sleep_ms(r->delay_ms);
    double t0 = now_s();
    r->st = hm_heap_free(r->h, r->p);
    r->free_took = now_s() - t0;
    return NULL;
}

/* SPEC 3.3: a heap request waiting for memory is admitted as soon as enough charge comes back, also
 * when the memory comes back through a Free on the same (thread-safe) heap. */
static void test_wait_released_by_free(void **state)
{
    (void)state;
    char report[512] = "";
    for (int same = 0; same <= 1; same++) {
        hm_manager *m = make("limit=2M,wait.task=1500ms");
        hm_heap *h = mk_heap(m, HM_HEAP_THREADSAFE), *other = mk_heap(m, HM_HEAP_THREADSAFE);
        hm_heap *holder = same ? h : other;
        void *big = NULL;
        assert_int_equal(hm_heap_alloc(holder, 1536 * KiB, HM_LEVEL_PROCESS, &big), HM_OK);
        releaser r = {holder, big, 100, 0, -1};
        pthread_t t;
        assert_int_equal(pthread_create(&t, NULL, release_later, &r), 0);
        void *p = NULL;
        double t0 = now_s();
        hm_status st = hm_heap_alloc(h, MiB, HM_LEVEL_TASK, &p);
        double dt = now_s() - t0;
        pthread_join(t, NULL);
        assert_int_equal(r.st, HM_OK);
        print_message("heap_threads: wait released by a Free on %s heap: %#x after %.3f s (the Free took %.3f s)\n",
                      same ? "the same" : "another", (unsigned)st, dt, r.free_took);
        if (st != HM_OK || dt > 1.0) {
            size_t l = strlen(report);
            snprintf(report + l, sizeof report - l,
                     " Free on %s heap after 0.1 s: the task request returned %#x (%s) after %.3f s, the Free took %.3f s;",
                     same ? "the same" : "another", (unsigned)st, hm_status_name(st), dt, r.free_took);
        }
        if (p) assert_int_equal(hm_heap_free(h, p), HM_OK);
        assert_int_equal(hm_heap_destroy(h), HM_OK);
        assert_int_equal(hm_heap_destroy(other), HM_OK);
        assert_int_equal(hm_manager_destroy(m), HM_OK);
    }
    if (report[0]) fail_msg("SPEC 3.3: a waiter must be admitted once memory comes back:%s", report);
}

typedef struct waiter_arg {
    hm_heap *h;
    size_t size;
    hm_status st;
    void *p;
    double took;
} waiter_arg;

static void *wait_alloc(void *arg)
{
    waiter_arg *a = arg;
    double t0 = now_s();
    a->st = hm_heap_alloc(a->h, a->size, HM_LEVEL_TASK, &a->p);
    a->took = now_s() - t0;
    return NULL;
}

/* SPEC 3.4: shutdown makes every heap request waiting for memory return HOST_E_ABANDONED at once. */
static void test_shutdown_abandons_heap_waiters(void **state)
{
    (void)state;
    hm_manager *m = make("limit=2M,wait.task=5s");
    hm_heap *h = mk_heap(m, HM_HEAP_THREADSAFE), *h2 = mk_heap(m, 0);
    void *big = NULL;
    assert_int_equal(hm_heap_alloc(h, 2000 * KiB, HM_LEVEL_PROCESS, &big), HM_OK); /* room for a header, not a page */
    waiter_arg a[2] = {{h, MiB, -1, NULL, 0}, {h2, 300, -1, NULL, 0}}; /* a large block; a new small page */
    pthread_t t[2];
    for (int i = 0; i < 2; i++) assert_int_equal(pthread_create(&t[i], NULL, wait_alloc, &a[i]), 0);
    for (int k = 0; k < 200 && tu_stats(m).waiting < 2; k++) sleep_ms(10);
    assert_int_equal(tu_stats(m).waiting, 2);
    double t0 = now_s();
    assert_int_equal(hm_manager_shutdown(m), HM_OK);
    for (int i = 0; i < 2; i++) pthread_join(t[i], NULL);
    double dt = now_s() - t0;
    for (int i = 0; i < 2; i++) {
        if (a[i].st != HM_E_HOST_ABANDONED)
            fail_msg("waiter %d = %#x (%s), expected HOST_E_ABANDONED", i, (unsigned)a[i].st, hm_status_name(a[i].st));
        assert_null(a[i].p);
    }
    assert_true(dt < 2.0);
    void *p = (void *)1;
    assert_int_equal(hm_heap_alloc(h, 16, HM_LEVEL_PROCESS, &p), HM_E_HOST_CLRNOTAVAILABLE);
    assert_null(p);
    (void)hm_heap_destroy(h);
    (void)hm_heap_destroy(h2);
    assert_int_equal(hm_manager_destroy(m), HM_OK);
}

/* ---- Free of another heap's block while that heap works ------------------------------------- */

typedef struct churn_arg {
    hm_heap *h;
    atomic_int *go;
    int rounds;
    hm_status st;
} churn_arg;

static void *churn(void *arg) /* allocates and frees 64-byte blocks: the page of the probed block changes */
{
    churn_arg *c = arg;
    static _Thread_local void *p[1100];
    while (!atomic_load(c->go)) sched_yield();
    for (int r = 0; r < c->rounds; r++) {
        int n = 0;
        for (; n < 1100; n++)
            if ((c->st = hm_heap_alloc(c->h, 64, HM_LEVEL_TASK, &p[n]))) return NULL;
        for (int i = 0; i < n; i++)
            if ((c->st = hm_heap_free(c->h, p[i]))) return NULL;
    }
    return NULL;
}

typedef struct probe_arg {
    hm_heap *h;
    void *p;
    atomic_int *go;
    atomic_int *stop;
    uint64_t n, wrong;
    hm_status last;
} probe_arg;

static void *probe(void *arg)
{
    probe_arg *a = arg;
    atomic_store(a->go, 1);
    while (!atomic_load(a->stop)) {
        hm_status st = hm_heap_free(a->h, a->p);
        a->n++;
        if (st != HM_E_HOST_NOT_OWNER) {
            a->wrong++;
            a->last = st;
        }
    }
    return NULL;
}

/* SPEC 3.1, 4: Free(heap A, a live block of heap B) is HOST_E_NOT_OWNER and changes nothing, also
 * while B's own threads allocate and free in the same page (B's lock is not A's). */
static void test_foreign_free_concurrent(void **state)
{
    (void)state;
    hm_manager *m = make("limit=256M");
    hm_heap *a = mk_heap(m, HM_HEAP_THREADSAFE), *b = mk_heap(m, HM_HEAP_THREADSAFE);
    void *pb = NULL;
    assert_int_equal(hm_heap_alloc(b, 64, HM_LEVEL_TASK, &pb), HM_OK);
    memset(pb, 0x77, 64);
    atomic_int go = 0, stop = 0;
    churn_arg c = {b, &go, UNDER_TSAN ? 5 : 40, HM_OK};
    probe_arg pr = {a, pb, &go, &stop, 0, 0, HM_OK};
    pthread_t tc, tp;
    assert_int_equal(pthread_create(&tc, NULL, churn, &c), 0);
    assert_int_equal(pthread_create(&tp, NULL, probe, &pr), 0);
    pthread_join(tc, NULL);
    atomic_store(&stop, 1);
    pthread_join(tp, NULL);
    assert_int_equal(c.st, HM_OK);
    print_message("heap_threads: %" PRIu64 " foreign Frees while the owner worked, %" PRIu64 " wrong\n", pr.n, pr.wrong);
    if (pr.wrong) fail_msg("%" PRIu64 " of %" PRIu64 " foreign Frees returned other than HOST_E_NOT_OWNER (last %#x)",
                           pr.wrong, pr.n, (unsigned)pr.last);
    for (int i = 0; i < 64; i++) assert_int_equal(((unsigned char *)pb)[i], 0x77);
    assert_int_equal(hm_heap_free(b, pb), HM_OK);
    assert_int_equal(hstats(b).live_blocks, 0);
    assert_int_equal(hm_heap_destroy(a), HM_OK);
    assert_int_equal(hm_heap_destroy(b), HM_OK);
    assert_int_equal(hm_manager_destroy(m), HM_OK);
}

/* ---- threads' caches and heap lifetimes ------------------------------------------------------- */

typedef struct stage_arg {
    hm_manager *m;
    hm_heap *volatile h;    /* set by main for each stage */
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int stage, done;        /* main raises stage; the thread raises done */
    char failure[200];
} stage_arg;

static void stage_wait(stage_arg *a, int stage)
{
    pthread_mutex_lock(&a->lock);
    while (a->stage < stage) pthread_cond_wait(&a->cond, &a->lock);
    pthread_mutex_unlock(&a->lock);
}

static void stage_set(stage_arg *a, int *field, int v)
{
    pthread_mutex_lock(&a->lock);
    *field = v;
    pthread_cond_broadcast(&a->cond);
    pthread_mutex_unlock(&a->lock);
}

static void *stage_thread(void *arg)
{
    stage_arg *a = arg;
    for (int stage = 1; stage <= 3; stage++) {
        stage_wait(a, stage);
        hm_heap *h = a->h;
        void *p[64];
        for (int i = 0; i < 64 && !a->failure[0]; i++) { /* fills and leaves this thread's cache of h */
            if (hm_heap_alloc(h, 48, HM_LEVEL_TASK, &p[i]) != HM_OK)
                snprintf(a->failure, sizeof a->failure, "stage %d: alloc failed: %s", stage, hm_last_detail());
            else if (hm_heap_usable_size(h, p[i]) < 48)
                snprintf(a->failure, sizeof a->failure, "stage %d: block %p is not a live block of the heap", stage, p[i]);
            else
                memset(p[i], stage, 48);
        }
        for (int i = 0; i < 64 && !a->failure[0]; i++)
            if (hm_heap_free(h, p[i]) != HM_OK)
                snprintf(a->failure, sizeof a->failure, "stage %d: free(%p) failed: %s", stage, p[i], hm_last_detail());
        stage_set(a, &a->done, stage);
    }
    return NULL; /* exits with a cache of the stage-3 heap, destroyed or not */
}

/* heap.h (per-thread caches) against SPEC 4: a heap destroyed while a thread still caches its blocks
 * is gone for that thread too: a new heap (perhaps at the same address) never gets the old heap's
 * blocks, and the thread's exit after the destruction changes nothing. */
static void test_cache_outlives_heap(void **state)
{
    (void)state;
    hm_manager *m = make("limit=64M");
    stage_arg a = {.m = m, .lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, stage_thread, &a), 0);
    hm_heap *prev = NULL;
    for (int stage = 1; stage <= 3; stage++) {
        a.h = mk_heap(m, HM_HEAP_THREADSAFE);
        print_message("heap_threads: stage %d heap %p%s\n", stage, (void *)a.h, a.h == prev ? " (the same address)" : "");
        prev = a.h;
        stage_set(&a, &a.stage, stage);
        pthread_mutex_lock(&a.lock);
        while (a.done < stage) pthread_cond_wait(&a.cond, &a.lock);
        pthread_mutex_unlock(&a.lock);
        hm_heap_stats s = hstats(a.h);
        assert_int_equal(s.live_blocks, 0); /* cached blocks are free for the program */
        assert_int_equal(hm_heap_destroy(a.h), HM_OK);
        assert_int_equal(tu_stats(m).charge, 0);
        check_books();
    }
    pthread_join(t, NULL);
    if (a.failure[0]) fail_msg("%s", a.failure);
    assert_int_equal(tu_stats(m).charge, 0);
    check_books();
    assert_int_equal(hm_manager_destroy(m), HM_OK);
}

/* ---- debug sites read while written ----------------------------------------------------------- */

typedef struct sites_arg {
    hm_heap *h;
    pthread_barrier_t *start;
    int rounds;
    uint64_t seen;
    hm_status st;
} sites_arg;

static void count_site(const hm_heap_site *site, void *arg)
{
    sites_arg *a = arg;
    if (site->total_blocks) a->seen++;
}

static void *sites_reader(void *arg)
{
    sites_arg *a = arg;
    pthread_barrier_wait(a->start);
    for (int i = 0; i < a->rounds && !a->st; i++) a->st = hm_heap_sites(a->h, count_site, a);
    return NULL;
}

static void *debug_writer(void *arg)
{
    sites_arg *a = arg;
    void *p[16];
    pthread_barrier_wait(a->start);
    for (int i = 0; i < a->rounds && !a->st; i++) {
        for (int k = 0; k < 16 && !a->st; k++) a->st = hm_heap_alloc_debug(a->h, 24 + (size_t)k, HM_LEVEL_TASK, "w.c", k + i % 7, &p[k]);
        for (int k = 0; k < 16 && !a->st; k++) a->st = hm_heap_free(a->h, p[k]);
    }
    return NULL;
}

/* SPEC 4 (statistics by site) on a MALLOC_THREADSAFE heap: reading the sites while another thread
 * makes the heap's first debug blocks, and more. */
static void test_sites_concurrent(void **state)
{
    (void)state;
    hm_manager *m = make("limit=64M");
    for (int round = 0; round < 20; round++) {
        hm_heap *h = mk_heap(m, HM_HEAP_THREADSAFE);
        pthread_barrier_t start;
        pthread_barrier_init(&start, NULL, 2);
        sites_arg r = {h, &start, 200, 0, HM_OK}, w = {h, &start, 50, 0, HM_OK};
        pthread_t tr, tw;
        assert_int_equal(pthread_create(&tr, NULL, sites_reader, &r), 0);
        assert_int_equal(pthread_create(&tw, NULL, debug_writer, &w), 0);
        pthread_join(tr, NULL);
        pthread_join(tw, NULL);
        pthread_barrier_destroy(&start);
        assert_int_equal(r.st, HM_OK);
        assert_int_equal(w.st, HM_OK);
        assert_int_equal(hstats(h).live_blocks, 0);
        assert_int_equal(hm_heap_destroy(h), HM_OK);
    }
    assert_int_equal(hm_manager_destroy(m), HM_OK);
}

/* SPEC 3.4 against the inline paths' one look (heap.h, fast_id): while other managers stop again and
 * again, a running manager's heaps keep serving, both kinds; once a shutdown of their own manager has
 * returned, every call that starts after it is refused (HOST_E_CLRNOTAVAILABLE), alloc and Free alike,
 * however the stops interleave with the calls that looked just before. */
static struct {
    hm_heap *ts, *st;
    atomic_int stopping, stopped, quit; /* set before the shutdown starts; after it returned */
    atomic_ulong ok, refused;
    char failure[256];
} sr;

static void sr_fail(const char *what, hm_status st)
{
    if (!sr.failure[0]) snprintf(sr.failure, sizeof sr.failure, "%s = %#x (%s)", what, (unsigned)st, hm_status_name(st));
}

static void *sr_user(void *arg)
{
    (void)arg;
    void *keep[2] = {NULL, NULL};
    while (!atomic_load(&sr.quit)) {
        hm_heap *hs[2] = {sr.ts, sr.st};
        for (int k = 0; k < 2; k++) {
            int was_stopped = atomic_load(&sr.stopped); /* (seq_cst: read before the calls start) */
            void *p = NULL;
            hm_status a = hm_heap_alloc(hs[k], 16 + 48 * (size_t)k, HM_LEVEL_PROCESS, &p);
            hm_status f = keep[k] ? hm_heap_free(hs[k], keep[k]) : HM_OK;
            if (!was_stopped) {
                if (atomic_load(&sr.stopping)) continue; /* (raced the shutdown: either answer) */
                if (a != HM_OK) sr_fail("alloc while running", a);
                if (f != HM_OK) sr_fail("free while running", f);
                keep[k] = p;
                atomic_fetch_add(&sr.ok, 1);
            } else {
                if (a != HM_E_HOST_CLRNOTAVAILABLE) sr_fail("alloc after shutdown", a);
                if (keep[k] && f != HM_E_HOST_CLRNOTAVAILABLE) sr_fail("free after shutdown", f);
                if (p) sr_fail("alloc after shutdown gave a block", HM_OK);
                atomic_fetch_add(&sr.refused, 1);
            }
        }
    }
    return NULL;
}

static void test_stops_race_inline_paths(void **state)
{
    (void)state;
    hm_manager *m = make("limit=256M");
    sr.ts = mk_heap(m, HM_HEAP_THREADSAFE);
    sr.st = mk_heap(m, 0); /* (used by the user thread alone) */
    atomic_store(&sr.stopping, 0);
    atomic_store(&sr.stopped, 0);
    atomic_store(&sr.quit, 0);
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, sr_user, NULL), 0);
    int rounds = UNDER_TSAN ? 60 : 300;
    for (int r = 0; r < rounds; r++) { /* other managers stop: every heap's fast_id is cleared */
        hm_manager *o = make("limit=16M");
        hm_heap *oh = mk_heap(o, r % 2 ? HM_HEAP_THREADSAFE : 0);
        void *p = NULL;
        assert_int_equal(hm_heap_alloc(oh, 64, HM_LEVEL_PROCESS, &p), HM_OK);
        assert_int_equal(hm_manager_shutdown(o), HM_OK);
        (void)hm_heap_destroy(oh);
        assert_int_equal(hm_manager_destroy(o), HM_OK);
    }
    unsigned long before = atomic_load(&sr.ok);
    for (int k = 0; k < 1000 && atomic_load(&sr.ok) < before + 100; k++) sleep_ms(1);
    atomic_store(&sr.stopping, 1);
    assert_int_equal(hm_manager_shutdown(m), HM_OK);
    atomic_store(&sr.stopped, 1);
    for (int k = 0; k < 1000 && atomic_load(&sr.refused) < 1000; k++) sleep_ms(1);
    atomic_store(&sr.quit, 1);
    pthread_join(t, NULL);
    if (sr.failure[0]) fail_msg("%s", sr.failure);
    print_message("stops racing the inline paths: %lu calls served, %lu refused after the shutdown\n",
                  (unsigned long)atomic_load(&sr.ok), (unsigned long)atomic_load(&sr.refused));
    assert_true(atomic_load(&sr.ok) > 0);
    assert_true(atomic_load(&sr.refused) >= 1000);
    (void)hm_heap_destroy(sr.ts);
    (void)hm_heap_destroy(sr.st);
    destroy_mgr(m);
}

int main(void)
{
    hm_heap_untracked = getenv("HM_TEST_UNTRACKED") != NULL; /* (src/heap/track.h; heap_threads_untracked) */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_threadsafe_model),
        cmocka_unit_test(test_threadsafe_model_purging),
        cmocka_unit_test(test_threadsafe_tight),
        cmocka_unit_test(test_single_threaded_handover),
        cmocka_unit_test(test_wait_released_by_free),
        cmocka_unit_test(test_shutdown_abandons_heap_waiters),
        cmocka_unit_test(test_foreign_free_concurrent),
        cmocka_unit_test(test_cache_outlives_heap),
        cmocka_unit_test(test_sites_concurrent),
        cmocka_unit_test(test_stops_race_inline_paths),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
