/* dropin_rules.c — the malloc family's rules on the drop-in malloc (src/preload/malloc.c), run with
 * libhostmem-malloc.so preloaded (tests/dropin/CMakeLists.txt): malloc(0), usable sizes, every
 * power-of-two alignment up to 1 GiB, the error codes of posix_memalign, aligned_alloc, memalign,
 * calloc and reallocarray, calloc's zeroes over reused dirty memory, realloc's cases, free and errno,
 * valloc and pvalloc, C23's sized frees, glibc's __libc_* names, mallopt, mallinfo2, malloc_trim and
 * malloc_stats. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "dropin_util.h"

/* Not declared by this libc's headers (C23, and glibc's internal names); the drop-in defines them.
 * C23's are weak: this libc has no definition to link against, the preloaded drop-in provides one. */
extern void free_sized(void *p, size_t size) __attribute__((weak));
extern void free_aligned_sized(void *p, size_t align, size_t size) __attribute__((weak));
extern void *__libc_malloc(size_t size);
extern void __libc_free(void *p);
extern void *__libc_calloc(size_t n, size_t size);
extern void *__libc_realloc(void *p, size_t size);
extern void *__libc_memalign(size_t align, size_t size);

static int group_setup(void **state)
{
    (void)state;
    /* every test below is about the drop-in: refuse to run on another malloc */
    if (!dropin_active()) {
        fprintf(stderr, "not running on libhostmem-malloc.so (LD_PRELOAD=%s)\n", getenv("LD_PRELOAD") ? getenv("LD_PRELOAD") : "");
        return -1;
    }
    return 0;
}

static void test_on_dropin(void **state)
{
    (void)state;
    assert_true(hm_malloc_available());
    assert_non_null(dlsym(RTLD_DEFAULT, "hm_malloc_level_set"));
    assert_true(dropin_active());
    /* the default level is malloc.level's (process) */
    assert_int_equal(hm_malloc_get_level(), HM_LEVEL_PROCESS);
}

static void test_malloc_zero(void **state)
{
    (void)state;
    enum { N = 1000 };
    void **v = calloc(N, sizeof *v);
    assert_non_null(v);
    for (int i = 0; i < N; i++) {
        v[i] = malloc(0);
        assert_non_null(v[i]);
        assert_true(malloc_usable_size(v[i]) >= 1);
        *(volatile char *)v[i] = (char)i; /* a block of at least one byte */
    }
    assert_true(blocks_disjoint(v, N));
    for (int i = 0; i < N; i++) free(v[i]);
    free(v);
}

static void test_usable_sizes(void **state)
{
    (void)state;
    /* every size to 4 KiB, all live at once */
    enum { SMALL = 4097 };
    void **v = malloc(SMALL * sizeof *v);
    assert_non_null(v);
    for (size_t n = 0; n < SMALL; n++) {
        v[n] = malloc(n);
        assert_non_null(v[n]);
        size_t u = malloc_usable_size(v[n]);
        assert_true(u >= n);
        assert_true(u >= 1);
        memset(v[n], 0xa5, u); /* every usable byte is the program's */
        pattern_fill(v[n], n, n);
    }
    assert_true(blocks_disjoint(v, SMALL));
    for (size_t n = 0; n < SMALL; n++) {
        assert_true(pattern_check(v[n], n, n));
        free(v[n]);
    }
    /* odd sizes to 4 MiB, across the small/large boundary (32 KiB) */
    enum { MAXODD = 400 };
    void **w = malloc(MAXODD * sizeof *w);
    size_t *sz = malloc(MAXODD * sizeof *sz);
    assert_non_null(w);
    assert_non_null(sz);
    size_t k = 0;
    for (size_t n = 4097; n <= 4 * MiB && k < MAXODD; n = (n + n / 9) | 1, k++) {
        w[k] = malloc(n);
        sz[k] = n;
        assert_non_null(w[k]);
        size_t u = malloc_usable_size(w[k]);
        assert_true(u >= n);
        ((volatile unsigned char *)w[k])[u - 1] = 1; /* the last usable byte is writable */
        pattern_fill(w[k], n, k + 7);
    }
    for (size_t n = 32 * KiB - 3; n <= 32 * KiB + 3; n++, k++) { /* around the boundary */
        w[k] = malloc(n);
        sz[k] = n;
        assert_non_null(w[k]);
        assert_true(malloc_usable_size(w[k]) >= n);
        pattern_fill(w[k], n, k + 7);
    }
    w[k] = malloc(4 * MiB);
    sz[k] = 4 * MiB;
    assert_non_null(w[k]);
    assert_true(malloc_usable_size(w[k]) >= 4 * MiB);
    pattern_fill(w[k], 4 * MiB, k + 7);
    k++;
    assert_true(blocks_disjoint(w, k));
    for (size_t i = 0; i < k; i++) {
        assert_true(pattern_check(w[i], sz[i], i + 7));
        free(w[i]);
    }
    free(w);
    free(sz);
    free(v);
    assert_int_equal(malloc_usable_size(NULL), 0);
}

/* p is aligned to align, at least size usable bytes, all of which can be written and read back. */
static void check_aligned(void *p, size_t align, size_t size)
{
    assert_non_null(p);
    assert_int_equal((uintptr_t)p & (align - 1), 0);
    size_t u = malloc_usable_size(p);
    assert_true(u >= size);
    assert_true(u >= 1); /* (size 0 too: a block of its own) */
    memset(p, 0x3c, u);
    assert_int_equal(((unsigned char *)p)[0], 0x3c);
    assert_int_equal(((unsigned char *)p)[u - 1], 0x3c);
}

static void test_alignments(void **state)
{
    (void)state;
    for (unsigned shift = 0; shift <= 30; shift++) {
        size_t align = (size_t)1 << shift;
        size_t sizes[3] = {1, 100, align + 1};
        unsigned nsizes = align <= MiB ? 3 : 2; /* (a 1 GiB alignment: small sizes only) */
        for (unsigned s = 0; s < nsizes; s++) {
            size_t size = sizes[s];
            void *p;
            if (align >= sizeof(void *)) {
                p = (void *)0x1;
                errno = 4321;
                int r = posix_memalign(&p, align, size);
                assert_int_equal(r, 0);
                assert_int_equal(errno, 4321);
                check_aligned(p, align, size);
                free(p);
            }
            errno = 0;
            p = aligned_alloc(align, size);
            check_aligned(p, align, size);
            free(p);
            p = memalign(align, size);
            check_aligned(p, align, size);
            free(p);
        }
    }
    /* several 1 GiB-aligned blocks live at once, freed in another order */
    void *g[3];
    for (int i = 0; i < 3; i++) {
        assert_int_equal(posix_memalign(&g[i], GiB, 4096), 0);
        check_aligned(g[i], GiB, 4096);
    }
    assert_true(blocks_disjoint(g, 3));
    free(g[1]);
    free(g[0]);
    free(g[2]);
}

/* Size 0 with any alignment: a unique block that free takes (as malloc(0), and as glibc does), not a
 * refusal. */
static void test_aligned_size_zero(void **state)
{
    (void)state;
    for (unsigned shift = 4; shift <= 30; shift++) {
        size_t align = (size_t)1 << shift;
        void *p = NULL;
        int r = posix_memalign(&p, align, 0);
        if (r) fprintf(stderr, "posix_memalign(&p, %zu, 0) = %d\n", align, r);
        assert_int_equal(r, 0);
        check_aligned(p, align, 0);
        errno = 0;
        void *q = aligned_alloc(align, 0);
        if (!q) fprintf(stderr, "aligned_alloc(%zu, 0) = NULL, errno %d\n", align, errno);
        check_aligned(q, align, 0);
        void *m = memalign(align, 0);
        check_aligned(m, align, 0);
        assert_ptr_not_equal(p, q);
        assert_ptr_not_equal(q, m);
        free(p);
        free(q);
        free(m);
    }
}

static void test_posix_memalign_einval(void **state)
{
    (void)state;
    size_t bad[] = {0, 3, 24, sizeof(void *) / 2, 1, 2, 48, 4095, 4097, ((size_t)1 << 20) + 8, SIZE_MAX};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        void *p = (void *)0x1234;
        errno = 777;
        int r = posix_memalign(&p, bad[i], 64);
        assert_int_equal(r, EINVAL);
        assert_int_equal(errno, 777); /* errno unchanged */
        assert_true(p == (void *)0x1234 || p == NULL); /* POSIX: unchanged (or NULL) */
    }
    /* a refusal is the code ENOMEM, errno unchanged */
    void *p = (void *)0x1234;
    errno = 778;
    assert_int_equal(posix_memalign(&p, 64, SIZE_MAX / 2), ENOMEM);
    assert_int_equal(errno, 778);
}

static void test_aligned_alloc_einval(void **state)
{
    (void)state;
    size_t bad[] = {3, 24, 48, 100, 4095, 3 * 4096, ((size_t)1 << 20) + 1};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        errno = 0;
        void *p = aligned_alloc(bad[i], 64);
        assert_null(p);
        assert_int_equal(errno, EINVAL);
    }
}

static void test_memalign_rounds_up(void **state)
{
    (void)state;
    struct { size_t asked, pow2; } c[] = {{3, 4}, {24, 32}, {48, 64}, {100, 128}, {3000, 4096}, {5000, 8192},
                                          {40000, 65536}, {((size_t)1 << 20) + 1, (size_t)2 << 20}};
    for (size_t i = 0; i < sizeof c / sizeof c[0]; i++) {
        for (size_t size = 1; size <= 10001; size += 5000) {
            void *p = memalign(c[i].asked, size);
            check_aligned(p, c[i].pow2, size);
            free(p);
        }
    }
    /* past the largest power of two: EINVAL (glibc) */
    errno = 0;
    volatile size_t huge_align = SIZE_MAX; /* (a runtime value: clang rejects a constant one at compile time) */
    assert_null(memalign(huge_align, 16));
    assert_int_equal(errno, EINVAL);
}

static void test_overflows(void **state)
{
    (void)state;
    size_t pairs[][2] = {{SIZE_MAX / 2, 3}, {SIZE_MAX, 2}, {(size_t)1 << 33, (size_t)1 << 33}, {2, SIZE_MAX / 2 + 1}};
    for (size_t i = 0; i < sizeof pairs / sizeof pairs[0]; i++) {
        errno = 0;
        assert_null(calloc(pairs[i][0], pairs[i][1]));
        assert_int_equal(errno, ENOMEM);
        errno = 0;
        assert_null(reallocarray(NULL, pairs[i][0], pairs[i][1]));
        assert_int_equal(errno, ENOMEM);
        /* an existing block survives a failed reallocarray, contents and all */
        char *p = malloc(100);
        assert_non_null(p);
        pattern_fill(p, 100, i);
        errno = 0;
        assert_null(reallocarray(launder(p), pairs[i][0], pairs[i][1]));
        assert_int_equal(errno, ENOMEM);
        assert_true(pattern_check(p, 100, i));
        free(p);
    }
    /* a reallocarray that does not overflow is realloc */
    int *a = reallocarray(NULL, 10, sizeof(int));
    assert_non_null(a);
    for (int i = 0; i < 10; i++) a[i] = i;
    a = reallocarray(a, 100000, sizeof(int));
    assert_non_null(a);
    for (int i = 0; i < 10; i++) assert_int_equal(a[i], i);
    free(a);
    /* plain refusals */
    errno = 0;
    assert_null(malloc(SIZE_MAX / 2));
    assert_int_equal(errno, ENOMEM);
    errno = 0;
    assert_null(malloc(opaque_size(SIZE_MAX)));
    assert_int_equal(errno, ENOMEM);
    errno = 0;
    assert_null(realloc(NULL, opaque_size(SIZE_MAX - 100)));
    assert_int_equal(errno, ENOMEM);
}

static bool all_zero(const unsigned char *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i]) return false;
    return true;
}

static void test_calloc_zeroes(void **state)
{
    (void)state;
    size_t sizes[] = {1, 16, 24, 100, 1000, 4000, 32 * KiB - 1, 32 * KiB, 32 * KiB + 1, 100 * KiB, MiB, 3 * MiB + 5};
    int reused = 0; /* calloc's blocks that were one of the dirty ones just freed */
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        size_t n = sizes[i];
        for (int round = 0; round < 3; round++) {
            /* dirty memory, freed: calloc of the same size most likely gets it back */
            unsigned char *d[4];
            for (int j = 0; j < 4; j++) {
                d[j] = malloc(n);
                assert_non_null(d[j]);
                memset(d[j], 0xab, malloc_usable_size(d[j]));
            }
            for (int j = 3; j >= 0; j--) free(d[j]);
            unsigned char *z[4];
            for (int j = 0; j < 4; j++) {
                z[j] = round == 1 ? calloc(n, 1) : round == 2 && n % 4 == 0 ? calloc(n / 4, 4) : calloc(1, n);
                assert_non_null(z[j]);
                assert_true(all_zero(z[j], n));
                for (int k = 0; k < 4; k++) reused += z[j] == d[k];
            }
            for (int j = 0; j < 4; j++) free(z[j]);
        }
    }
    /* the heap need not hand the same blocks back, but it does often: dirty memory was reused */
    assert_true(reused > 0);
    /* calloc(0, n) and calloc(n, 0): unique blocks */
    void *a = calloc(0, 10), *b = calloc(10, 0);
    assert_non_null(a);
    assert_non_null(b);
    assert_ptr_not_equal(a, b);
    free(a);
    free(b);
}

static void test_realloc_cases(void **state)
{
    (void)state;
    /* realloc(NULL, n) is malloc(n) */
    char *p = realloc(NULL, 77);
    assert_non_null(p);
    assert_true(malloc_usable_size(p) >= 77);
    memset(p, 1, 77);
    free(p);

    /* realloc(p, 0) frees p and returns NULL (glibc): the live count and bytes go back */
    size_t sizes[] = {64, 40000, 2 * MiB};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        struct mallinfo2 before = mallinfo2();
        p = malloc(sizes[i]);
        assert_non_null(p);
        memset(p, 7, sizes[i]);
        struct mallinfo2 mid = mallinfo2();
        assert_int_equal(mid.ordblks, before.ordblks + 1);
        assert_true(mid.uordblks >= before.uordblks + sizes[i]);
        errno = 0;
        assert_null(realloc(p, 0));
        struct mallinfo2 after = mallinfo2();
        assert_int_equal(after.ordblks, before.ordblks);
        assert_int_equal(after.uordblks, before.uordblks);
    }

    /* grow and shrink across 32 KiB and 1 MiB: contents kept at every step */
    size_t steps[] = {10, 100, 1000, 32 * KiB - 1, 32 * KiB, 32 * KiB + 1, 40000, MiB - 1, MiB, MiB + 1,
                      3 * MiB, MiB + 1, MiB, MiB - 1, 40000, 32 * KiB + 1, 32 * KiB, 32 * KiB - 1, 1000, 100,
                      10, 5 * MiB, 17, 1};
    size_t have = 0;
    p = NULL;
    for (size_t i = 0; i < sizeof steps / sizeof steps[0]; i++) {
        size_t n = steps[i];
        char *q = realloc(p, n);
        assert_non_null(q);
        assert_true(malloc_usable_size(q) >= n);
        size_t keep = have < n ? have : n;
        assert_true(pattern_check(q, keep, 99));
        pattern_fill(q, n, 99); /* (the same pattern: the prefix is unchanged) */
        p = q;
        have = n;
    }
    free(p);

    /* a failed realloc leaves the block as it was */
    p = malloc(5000);
    assert_non_null(p);
    pattern_fill(p, 5000, 5);
    errno = 0;
    assert_null(realloc(launder(p), SIZE_MAX / 2));
    assert_int_equal(errno, ENOMEM);
    assert_true(pattern_check(p, 5000, 5));
    free(p);
}

static void test_free_rules(void **state)
{
    (void)state;
    free(NULL);
    errno = 1234;
    free(NULL);
    assert_int_equal(errno, 1234);
    size_t sizes[] = {1, 64, 5000, 32 * KiB, 32 * KiB + 1, MiB, 8 * MiB};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        void *p = malloc(sizes[i]);
        assert_non_null(p);
        errno = 1234;
        free(p);
        assert_int_equal(errno, 1234);
        p = malloc(sizes[i]);
        assert_non_null(p);
        errno = 0; /* ... and the other way: free does not set errno */
        free(p);
        assert_int_equal(errno, 0);
    }
}

static void test_valloc_pvalloc(void **state)
{
    (void)state;
    long page = sysconf(_SC_PAGESIZE);
    assert_int_equal(page, 4096);
    size_t sizes[] = {0, 1, 100, 4095, 4096, 4097, 10000, 40000, MiB + 3};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        void *p = valloc(sizes[i]);
        check_aligned(p, 4096, sizes[i]);
        free(p);
        p = pvalloc(sizes[i]);
        size_t rounded = sizes[i] ? (sizes[i] + 4095) & ~(size_t)4095 : 4096;
        check_aligned(p, 4096, rounded); /* pvalloc: whole pages, pvalloc(0) one page */
        free(p);
    }
    void *p = pvalloc(0);
    assert_non_null(p);
    assert_true(malloc_usable_size(p) >= 4096);
    free(p);
    errno = 0;
    assert_null(pvalloc(SIZE_MAX - 10));
    assert_int_equal(errno, ENOMEM);
}

static void test_sized_frees(void **state)
{
    (void)state;
    /* the drop-in's (bound at load time, from the preloaded library) */
    assert_non_null(free_sized);
    assert_non_null(free_aligned_sized);
    Dl_info di;
    assert_true(dladdr((void *)free_sized, &di) && strstr(di.dli_fname, "libhostmem-malloc"));
    /* wrong sizes and alignments are not trusted: the block is freed all the same */
    size_t sizes[] = {64, 1000, 40000, 2 * MiB};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        struct mallinfo2 before = mallinfo2();
        void *p = malloc(sizes[i]);
        assert_non_null(p);
        free_sized(p, sizes[i] * 3 + 1);
        struct mallinfo2 after = mallinfo2();
        assert_int_equal(after.ordblks, before.ordblks);
        assert_int_equal(after.uordblks, before.uordblks);

        p = aligned_alloc(4096, sizes[i]);
        assert_non_null(p);
        free_aligned_sized(p, 16, 1);
        after = mallinfo2();
        assert_int_equal(after.ordblks, before.ordblks);
        assert_int_equal(after.uordblks, before.uordblks);

        p = malloc(sizes[i]);
        assert_non_null(p);
        free_sized(p, 0);
        after = mallinfo2();
        assert_int_equal(after.ordblks, before.ordblks);
    }
    free_sized(NULL, 10);
    free_aligned_sized(NULL, 64, 10);
    /* and the heap is sound after them */
    enum { N = 2000 };
    void *v[N];
    for (int i = 0; i < N; i++) {
        v[i] = malloc((size_t)(i % 200) * 8 + 1);
        assert_non_null(v[i]);
    }
    assert_true(blocks_disjoint(v, N));
    for (int i = 0; i < N; i++) free_sized(v[i], 1);
}

static void test_libc_names(void **state)
{
    (void)state;
    char *p = __libc_malloc(100);
    assert_non_null(p);
    assert_true(malloc_usable_size(p) >= 100);
    pattern_fill(p, 100, 3);
    p = __libc_realloc(p, 100000);
    assert_non_null(p);
    assert_true(pattern_check(p, 100, 3));
    assert_true(malloc_usable_size(p) >= 100000);
    __libc_free(p);

    unsigned char *z = malloc(300);
    assert_non_null(z);
    memset(z, 0xee, 300);
    free(z);
    z = __libc_calloc(3, 100);
    assert_non_null(z);
    assert_true(all_zero(z, 300));
    free(z); /* blocks of __libc_* are malloc's: free takes them */

    void *a = __libc_memalign(4096, 10);
    check_aligned(a, 4096, 10);
    __libc_free(a);
    a = __libc_memalign(100, 10); /* rounded up, as memalign */
    check_aligned(a, 128, 10);
    __libc_free(a);

    p = malloc(50); /* and __libc_free takes malloc's */
    assert_non_null(p);
    __libc_free(p);
    errno = 0;
    assert_null(__libc_calloc(SIZE_MAX, 2));
    assert_int_equal(errno, ENOMEM);
}

static void test_mallopt(void **state)
{
    (void)state;
    assert_int_equal(mallopt(M_TRIM_THRESHOLD, 128 * 1024), 1);
    assert_int_equal(mallopt(M_MMAP_THRESHOLD, 256 * 1024), 1);
    assert_int_equal(mallopt(M_ARENA_MAX, 2), 1);
    assert_int_equal(mallopt(M_MXFAST, 64), 1);
    assert_int_equal(mallopt(12345, 1), 0);
    assert_int_equal(mallopt(-12345, 1), 0);
}

static void test_mallinfo2(void **state)
{
    (void)state;
    enum { BLK = 1000, N = (10 << 20) / BLK + 1 };
    void **v = malloc(N * sizeof *v);
    assert_non_null(v);
    struct mallinfo2 before = mallinfo2();
    for (int i = 0; i < N; i++) {
        v[i] = malloc(BLK);
        assert_non_null(v[i]);
        memset(v[i], 1, BLK);
    }
    struct mallinfo2 full = mallinfo2();
    assert_true(full.uordblks >= before.uordblks + (size_t)N * BLK);
    assert_true(full.ordblks >= before.ordblks + N);
    assert_true(full.arena >= (size_t)N * BLK); /* the small blocks' committed pages hold them */
    assert_true(full.usmblks >= (size_t)N * BLK); /* (peak charge) */
    for (int i = 0; i < N; i++) free(v[i]);
    struct mallinfo2 after = mallinfo2();
    assert_true(after.uordblks < full.uordblks);
    assert_true(after.uordblks <= before.uordblks + 64 * KiB);
    assert_true(after.ordblks <= before.ordblks + 16);
    /* the old struct agrees while the numbers fit an int */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
    struct mallinfo old = mallinfo();
#pragma GCC diagnostic pop
    assert_int_equal((size_t)old.uordblks, mallinfo2().uordblks);
    free(v);
}

static void test_malloc_trim(void **state)
{
    (void)state;
    /* something to give back: freed large blocks (kept in caches) and emptied small pages */
    void *v[64];
    for (int i = 0; i < 64; i++) {
        v[i] = malloc(i % 2 ? 300 * KiB : 20000);
        assert_non_null(v[i]);
        memset(v[i], 2, 20000);
    }
    for (int i = 0; i < 64; i++) free(v[i]);
    int r = malloc_trim(0);
    assert_true(r == 0 || r == 1);
    r = malloc_trim(0);
    assert_true(r == 0 || r == 1);
    r = malloc_trim(1 << 20);
    assert_true(r == 0 || r == 1);
    /* and malloc works after it */
    void *p = malloc(300 * KiB);
    assert_non_null(p);
    memset(p, 3, 300 * KiB);
    free(p);
    struct mallinfo2 mi = mallinfo2();
    assert_true(mi.keepcost <= 300 * KiB * 2); /* the trims gave the cached large blocks back */
}

static void test_malloc_stats(void **state)
{
    (void)state;
    char path[] = "/tmp/hm_dropin_stats_XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    unlink(path);
    fflush(stderr);
    int saved = dup(2);
    assert_true(saved >= 0);
    assert_int_equal(dup2(fd, 2), 2);
    malloc_stats();
    fflush(stderr);
    assert_int_equal(dup2(saved, 2), 2);
    close(saved);
    struct stat st;
    assert_int_equal(fstat(fd, &st), 0);
    assert_true(st.st_size > 0);
    char *text = calloc(1, (size_t)st.st_size + 1);
    assert_non_null(text);
    assert_int_equal(pread(fd, text, (size_t)st.st_size, 0), st.st_size);
    close(fd);
    assert_non_null(strstr(text, "hostmem report"));
    assert_non_null(strstr(text, "heap malloc"));
    free(text);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_on_dropin),
        cmocka_unit_test(test_malloc_zero),
        cmocka_unit_test(test_usable_sizes),
        cmocka_unit_test(test_alignments),
        cmocka_unit_test(test_aligned_size_zero),
        cmocka_unit_test(test_posix_memalign_einval),
        cmocka_unit_test(test_aligned_alloc_einval),
        cmocka_unit_test(test_memalign_rounds_up),
        cmocka_unit_test(test_overflows),
        cmocka_unit_test(test_calloc_zeroes),
        cmocka_unit_test(test_realloc_cases),
        cmocka_unit_test(test_free_rules),
        cmocka_unit_test(test_valloc_pvalloc),
        cmocka_unit_test(test_sized_frees),
        cmocka_unit_test(test_libc_names),
        cmocka_unit_test(test_mallopt),
        cmocka_unit_test(test_mallinfo2),
        cmocka_unit_test(test_malloc_trim),
        cmocka_unit_test(test_malloc_stats),
    };
    return cmocka_run_group_tests_name("dropin_rules", tests, group_setup, NULL);
}
