/* dropin_threads.c — threads that end on the drop-in malloc (src/preload/dropin.h, heap.h
 * "Locking"), run preloaded: blocks allocated by a thread that then exits are freed later by the
 * main thread (their pages become ownerless), a pthread key destructor created after the first
 * malloc allocates and frees while its thread exits, and threads exit with blocks in their caches;
 * afterwards the heap hands out sound blocks and its live counts are back where they were. */
#define _GNU_SOURCE
#include <errno.h>
#include <malloc.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "dropin_util.h"

#define ROUNDS 200
#define PER_THREAD 64

static int group_setup(void **state)
{
    (void)state;
    return dropin_active() ? 0 : -1;
}

/* ---- blocks handed to the main thread ------------------------------------------------------------ */

typedef struct handoff {
    uint64_t seed;
    void *blk[PER_THREAD];
    size_t size[PER_THREAD];
    int failed;
} handoff;

static size_t pick_size(uint64_t *rng)
{
    uint64_t r = rng_next(rng);
    switch (r % 8) {
    case 0: return (size_t)(r >> 8) % (256 * KiB) + 32 * KiB + 1; /* large */
    case 1: return (size_t)(r >> 8) % (32 * KiB) + 1;
    default: return (size_t)(r >> 8) % 512 + 1;
    }
}

static void *producer(void *arg)
{
    handoff *h = arg;
    uint64_t rng = h->seed;
    for (int i = 0; i < PER_THREAD; i++) {
        h->size[i] = pick_size(&rng);
        h->blk[i] = malloc(h->size[i]);
        if (!h->blk[i]) {
            h->failed = 1;
            return NULL;
        }
        pattern_fill(h->blk[i], h->size[i], h->seed + (uint64_t)i);
    }
    /* and some churn of its own, left in its caches when it exits */
    for (int i = 0; i < 500; i++) {
        size_t n = pick_size(&rng);
        void *p = malloc(n);
        if (!p) {
            h->failed = 1;
            return NULL;
        }
        memset(p, 0x11, n < 64 ? n : 64);
        free(p);
    }
    return NULL;
}

static bool handoff_release(handoff *h)
{
    bool ok = true;
    for (int i = 0; i < PER_THREAD; i++) {
        if (!pattern_check(h->blk[i], h->size[i], h->seed + (uint64_t)i)) ok = false;
        free(h->blk[i]);
    }
    return ok;
}

static void test_blocks_outlive_thread(void **state)
{
    (void)state;
    struct mallinfo2 before = mallinfo2();
    handoff *prev = NULL;
    for (int r = 0; r < ROUNDS; r++) {
        handoff *h = calloc(1, sizeof *h);
        assert_non_null(h);
        h->seed = 0x1234567ull + (uint64_t)r * 1000003u;
        pthread_t t;
        assert_int_equal(pthread_create(&t, NULL, producer, h), 0);
        assert_int_equal(pthread_join(t, NULL), 0);
        assert_false(h->failed);
        /* the previous round's blocks: freed one round later, by this thread, their thread gone */
        if (prev) {
            assert_true(handoff_release(prev));
            free(prev);
        }
        prev = h;
    }
    assert_true(handoff_release(prev));
    free(prev);
    /* the heap is sound: many live blocks, distinct and disjoint */
    enum { N = 5000 };
    void **v = malloc(N * sizeof *v);
    assert_non_null(v);
    uint64_t rng = 42;
    for (int i = 0; i < N; i++) {
        size_t n = pick_size(&rng) % 2048 + 1;
        v[i] = malloc(n);
        assert_non_null(v[i]);
        memset(v[i], 0x5a, n);
    }
    assert_true(blocks_disjoint(v, N));
    for (int i = 0; i < N; i++) free(v[i]);
    free(v);
    /* every block went back: the live count is where it was (no thread runs now: exact) */
    struct mallinfo2 after = mallinfo2();
    assert_true(after.ordblks <= before.ordblks + 8);
    assert_true(after.uordblks <= before.uordblks + 64 * KiB);
}

/* ---- a key destructor that allocates while its thread exits --------------------------------------- */

static pthread_key_t key;
static _Atomic int dtor_runs, dtor_ok;

static void key_destructor(void *value)
{
    atomic_fetch_add(&dtor_runs, 1);
    uint64_t *v = value;
    bool ok = v[0] == 0xfeedfacecafef00dull && pattern_check(v + 1, 1000, v[0]);
    free(value);
    /* allocate and free while the thread is being torn down, small and large */
    for (int i = 0; i < 20; i++) {
        size_t n = i % 5 == 0 ? 100 * KiB : (size_t)(i * 37 + 1);
        unsigned char *p = malloc(n);
        if (!p) {
            ok = false;
            break;
        }
        pattern_fill(p, n, (uint64_t)i);
        if (!pattern_check(p, n, (uint64_t)i)) ok = false;
        free(p);
    }
    /* a block for the next iteration of destructors: a value set again is destroyed again */
    static _Thread_local int again;
    if (!again++) {
        uint64_t *w = malloc(8 + 1000);
        if (w) {
            w[0] = 0xfeedfacecafef00dull;
            pattern_fill(w + 1, 1000, w[0]);
            pthread_setspecific(key, w);
        } else {
            ok = false;
        }
    }
    if (ok) atomic_fetch_add(&dtor_ok, 1);
}

static void *with_key(void *arg)
{
    (void)arg;
    uint64_t *v = malloc(8 + 1000);
    if (!v) return (void *)1;
    v[0] = 0xfeedfacecafef00dull;
    pattern_fill(v + 1, 1000, v[0]);
    if (pthread_setspecific(key, v)) return (void *)1;
    void *junk[32];
    for (int i = 0; i < 32; i++)
        if (!(junk[i] = malloc((size_t)i * 100 + 1))) return (void *)1;
    for (int i = 0; i < 32; i++) free(junk[i]); /* (in the thread's caches when it exits) */
    return NULL;
}

static void test_key_destructor(void **state)
{
    (void)state;
    void *first = malloc(10); /* the key is made after the first malloc */
    assert_non_null(first);
    assert_int_equal(pthread_key_create(&key, key_destructor), 0);
    for (int r = 0; r < ROUNDS; r++) {
        pthread_t t;
        void *ret = (void *)2;
        assert_int_equal(pthread_create(&t, NULL, with_key, NULL), 0);
        assert_int_equal(pthread_join(t, &ret), 0);
        assert_null(ret);
    }
    /* each thread's destructor ran twice (the value set again in the first run) and all went well */
    assert_int_equal(atomic_load(&dtor_runs), 2 * ROUNDS);
    assert_int_equal(atomic_load(&dtor_ok), 2 * ROUNDS);
    assert_int_equal(pthread_key_delete(key), 0);
    free(first);
}

/* ---- many threads at once, each exiting with blocks still cached ------------------------------------ */

static void *burst(void *arg)
{
    uint64_t rng = (uint64_t)(uintptr_t)arg;
    void *keep[16];
    for (int i = 0; i < 16; i++) {
        keep[i] = malloc(pick_size(&rng));
        if (!keep[i]) return (void *)1;
    }
    for (int i = 0; i < 16; i++) free(keep[i]);
    return NULL;
}

static void test_concurrent_exits(void **state)
{
    (void)state;
    enum { T = 16 };
    for (int r = 0; r < ROUNDS / T * 2; r++) {
        pthread_t t[T];
        for (int i = 0; i < T; i++)
            assert_int_equal(pthread_create(&t[i], NULL, burst, (void *)(uintptr_t)(r * T + i + 1)), 0);
        for (int i = 0; i < T; i++) {
            void *ret = (void *)2;
            assert_int_equal(pthread_join(t[i], &ret), 0);
            assert_null(ret);
        }
    }
    void *v[1000];
    for (int i = 0; i < 1000; i++) {
        v[i] = malloc((size_t)(i % 300) + 1);
        assert_non_null(v[i]);
    }
    assert_true(blocks_disjoint(v, 1000));
    for (int i = 0; i < 1000; i++) free(v[i]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_blocks_outlive_thread),
        cmocka_unit_test(test_key_destructor),
        cmocka_unit_test(test_concurrent_exits),
    };
    return cmocka_run_group_tests_name("dropin_threads", tests, group_setup, NULL);
}
