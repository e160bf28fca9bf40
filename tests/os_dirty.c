/* os_dirty.c — the platform layer's written-page tracking (src/os/dirty.h): exactly the pages written
 * are listed, in order, and reset with their report; max stops the kernel without touching the rest;
 * discarded pages read clean and stay so when recommitted; mprotect neither loses nor invents a
 * written page; registration splits a larger mapping and unregistration gives it back; a range only
 * partly tracked is refused whole; a forked child is refused; several
 * writers against a scanner never lose a write (a model detects a miss); injected failures change
 * nothing; errno is preserved.
 *
 * Where the kernel lacks the mechanism (Linux older than 6.7, userfaultfd forbidden), or
 * HOSTMEM_WRITE_WATCH=fallback is set (ctest's os_dirty_fallback), the test says which mechanism it
 * found, checks that every call refuses with ENOSYS, and skips the kernel checks. */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "testutil.h"
#include "os/dirty.h"
#include "os/os.h"

#define UNDER_TSAN (!KERNEL_CHECK)
#define PG ((uintptr_t)4096)
#define MIB ((size_t)1 << 20)
#define GIB ((size_t)1 << 30)
#define SLICE (16 * MIB) /* each test works in its own 16 MiB of the chunk */

static bool have;   /* the mechanism works here */
static char *chunk; /* 1 GiB PROT_NONE, like the chunks hostmem carves allocations from */
static int next_slice;

static int setup(void **state)
{
    (void)state;
    hm_os_init();
    have = hm_dirty_available();
    print_message("write tracking: %s (%s)\n", have ? "available" : "unavailable", hm_dirty_describe());
    void *p = mmap(NULL, GIB + 2 * MIB, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED) return -1;
    chunk = (char *)(((uintptr_t)p + 2 * MIB - 1) & ~(uintptr_t)(2 * MIB - 1)); /* 2 MiB aligned */
    return 0;
}

#define NEED_KERNEL()                                                                                               \
    do {                                                                                                            \
        if (!have) {                                                                                                \
            print_message("skipped (no kernel tracking: %s)\n", hm_dirty_describe());                               \
            skip();                                                                                                 \
        }                                                                                                           \
    } while (0)

/* A fresh 16 MiB of the chunk, 2 MiB aligned, PROT_NONE and never touched. */
static char *slice(void)
{
    assert_true(next_slice < (int)(GIB / SLICE));
    return chunk + (size_t)next_slice++ * SLICE;
}

static void commit(char *p, size_t npages) { assert_int_equal(mprotect(p, npages * PG, PROT_READ | PROT_WRITE), 0); }

static void wr(char *base, size_t pg) { *(volatile uint64_t *)(base + pg * PG + 8 * (pg % 500)) = pg * 7 + 1; }
static uint64_t rd(char *base, size_t pg) { return *(volatile uint64_t *)(base + pg * PG + 8 * (pg % 500)); }

static uintptr_t out[4096];

/* Scans [base+lo, base+hi) (pages) and checks the list is exactly base + want[0..k). */
static void expect(char *base, size_t lo, size_t hi, bool reset, size_t max, const size_t *want, size_t k)
{
    size_t n = 12345;
    assert_true(max <= 4096);
    int err = hm_dirty_scan(base + lo * PG, (hi - lo) * PG, out, max, reset, &n);
    if (err) fail_msg("hm_dirty_scan: %s", strerror(err));
    if (n != k) {
        print_message("listed %zu pages, want %zu:", n, k);
        for (size_t i = 0; i < n && i < 16; i++) print_message(" %zu", (size_t)((out[i] - (uintptr_t)base) / PG));
        print_message("\n");
    }
    assert_int_equal(n, k);
    for (size_t i = 0; i < k; i++)
        if (out[i] != (uintptr_t)base + want[i] * PG)
            fail_msg("entry %zu: page %zu, want %zu", i, (size_t)((out[i] - (uintptr_t)base) / PG), want[i]);
}

static void expect_none(char *base, size_t lo, size_t hi) { expect(base, lo, hi, false, 4096, NULL, 0); }

/* Number of mappings the kernel has in [lo, hi). */
typedef struct vma_count {
    uintptr_t lo, hi;
    int n;
} vma_count;

static int count_fn(uintptr_t lo, uintptr_t hi, int prot, void *arg)
{
    (void)prot;
    vma_count *c = arg;
    if (lo < c->hi && hi > c->lo) c->n++;
    return 0;
}

static int vmas(const char *lo, size_t len)
{
    vma_count c = {(uintptr_t)lo, (uintptr_t)lo + len, 0};
    assert_int_equal(hm_os_maps_foreach(count_fn, &c), 0);
    return c.n;
}

/* ---- the probe and the fallback ---------------------------------------------------------------- */

static void test_probe(void **state)
{
    (void)state;
    const char *env = getenv("HOSTMEM_WRITE_WATCH");
    const char *d = hm_dirty_describe();
    assert_non_null(d);
    assert_true(d[0] != 0);
    assert_true(hm_dirty_available() == have); /* the answer is kept */
    if (env && !strcmp(env, "fallback")) {
        assert_false(have);
        assert_non_null(strstr(d, "HOSTMEM_WRITE_WATCH"));
    }
    if (have) {
        assert_non_null(strstr(d, "PAGEMAP_SCAN"));
        return;
    }
    /* Unavailable: every call refuses, changes nothing, keeps errno. */
    char *p = slice();
    size_t n = 77;
    errno = 4242;
    assert_int_equal(hm_dirty_register(p, 16 * PG), ENOSYS);
    assert_int_equal(hm_dirty_unregister(p, 16 * PG), ENOSYS);
    assert_int_equal(hm_dirty_reset(p, 16 * PG), ENOSYS);
    assert_int_equal(hm_dirty_scan(p, 16 * PG, out, 16, true, &n), ENOSYS);
    assert_int_equal(n, 77);
    assert_int_equal(errno, 4242);
}

/* ---- arguments ---------------------------------------------------------------------------------- */

static void test_arguments(void **state)
{
    (void)state;
    NEED_KERNEL();
    char *p = slice();
    size_t n = 77;
    errno = 4242;
    assert_int_equal(hm_dirty_register(p + 1, 16 * PG), EINVAL);
    assert_int_equal(hm_dirty_register(p, 16 * PG + 1), EINVAL);
    assert_int_equal(hm_dirty_register(p, 0), EINVAL);
    assert_int_equal(hm_dirty_register(NULL, 16 * PG), EINVAL);
    assert_int_equal(hm_dirty_register((void *)(UINTPTR_MAX & ~(PG - 1)), 2 * PG), EINVAL); /* wraps */
    assert_int_equal(hm_dirty_scan(p, 16 * PG, out, 16, false, NULL), EINVAL);
    assert_int_equal(hm_dirty_scan(p, 16 * PG, NULL, 16, false, &n), EINVAL);
    assert_int_equal(hm_dirty_scan(p + 8, 16 * PG, out, 16, false, &n), EINVAL);
    assert_int_equal(n, 77);
    /* Not registered: the kernel refuses to scan it (PM_SCAN_CHECK_WPASYNC), registration of
     * nothing mapped is refused too. */
    assert_int_equal(hm_dirty_scan(p, 16 * PG, out, 16, false, &n), EPERM);
    assert_int_equal(hm_dirty_reset(p, 16 * PG), EPERM);
    assert_int_equal(n, 77);
    void *hole = mmap(NULL, 16 * PG, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    assert_true(hole != MAP_FAILED);
    munmap(hole, 16 * PG);
    assert_int_equal(hm_dirty_register(hole, 16 * PG), EINVAL);
    assert_int_equal(errno, 4242);
}

/* ---- the basic cycle ---------------------------------------------------------------------------- */

static void test_basic(void **state)
{
    (void)state;
    NEED_KERNEL();
    char *p = slice() + 64 * PG;
    commit(p, 256);
    wr(p, 0); /* written before registration: does not count */
    wr(p, 1);
    assert_int_equal(hm_dirty_register(p, 256 * PG), 0);
    expect_none(p, 0, 256);
    assert_int_equal(rd(p, 1), 1 * 7 + 1); /* contents stay */

    size_t w[] = {3, 4, 5, 100, 255};
    for (size_t i = 0; i < 5; i++) wr(p, w[i]);
    (void)rd(p, 7); /* reads: of an untouched page (the zero page) and of a written one */
    (void)rd(p, 3);
    (void)rd(p, 0);
    expect(p, 0, 256, false, 4096, w, 5);
    expect(p, 0, 256, false, 4096, w, 5); /* without reset, the same again */
    expect(p, 0, 256, true, 4096, w, 5);
    expect_none(p, 0, 256);
    /* Part of the range: only its pages. */
    wr(p, 4);
    wr(p, 200);
    size_t w2[] = {200};
    expect(p, 100, 256, false, 4096, w2, 1);
    size_t w3[] = {4, 200};
    expect(p, 0, 256, false, 4096, w3, 2);
    /* The last byte of a page, a write spanning two pages (both count). */
    p[50 * PG - 1] = 1;
    memset(p + 60 * PG - 4, 1, 8);
    size_t w4[] = {4, 49, 59, 60, 200};
    expect(p, 0, 256, false, 4096, w4, 5);
    assert_int_equal(hm_dirty_reset(p, 256 * PG), 0);
    expect_none(p, 0, 256);
    wr(p, 4);
    size_t w5[] = {4};
    expect(p, 0, 256, true, 4096, w5, 1);
    assert_int_equal(hm_dirty_unregister(p, 256 * PG), 0);
}

/* Registered while reserved (PROT_NONE, as a MEM_RESERVE | MEM_WRITE_WATCH allocation is), then
 * committed: only the writes count. Read-only registration works the same. */
static void test_register_reserved(void **state)
{
    (void)state;
    NEED_KERNEL();
    char *p = slice();
    assert_int_equal(hm_dirty_register(p, 4 * MIB), 0);
    expect_none(p, 0, 1024);
    commit(p + 600 * PG, 100);
    expect_none(p, 0, 1024);
    wr(p, 650);
    wr(p, 699);
    size_t w[] = {650, 699};
    expect(p, 0, 1024, true, 4096, w, 2);
    assert_int_equal(mprotect(p + 800 * PG, 10 * PG, PROT_READ), 0);
    (void)rd(p, 805);
    expect_none(p, 0, 1024);
    assert_int_equal(mprotect(p + 800 * PG, 10 * PG, PROT_READ | PROT_WRITE), 0);
    wr(p, 805);
    size_t w2[] = {805};
    expect(p, 0, 1024, true, 4096, w2, 1);
    assert_int_equal(hm_dirty_unregister(p, 4 * MIB), 0);
}

/* ---- max: the kernel stops exactly, the rest keeps its state ------------------------------------ */

static void test_max(void **state)
{
    (void)state;
    NEED_KERNEL();
    char *p = slice();
    size_t np = 2048 + 1024;
    commit(p, np);
    assert_int_equal(hm_dirty_register(p, np * PG), 0);
    static size_t w[2048];

    /* One run of 64 written pages (one page_region): cut after 5, in the middle of the run. */
    for (size_t i = 10; i < 74; i++) wr(p, i);
    for (size_t i = 0; i < 64; i++) w[i] = 10 + i;
    expect(p, 0, np, true, 5, w, 5);
    expect(p, 0, np, false, 4096, w + 5, 59); /* the rest of the run is still written */
    expect(p, 0, np, true, 59, w + 5, 59);
    expect_none(p, 0, np);

    /* max 0: nothing listed, nothing reset. */
    wr(p, 3);
    size_t n = 77;
    assert_int_equal(hm_dirty_scan(p, np * PG, out, 0, true, &n), 0);
    assert_int_equal(n, 0);
    size_t w3[] = {3};
    expect(p, 0, np, true, 4096, w3, 1);

    /* 1024 runs of one page (more than one kernel call's vector): cut at 700. */
    for (size_t i = 0; i < 1024; i++) {
        wr(p, 2 * i);
        w[i] = 2 * i;
    }
    expect(p, 0, np, true, 700, w, 700);
    expect(p, 0, np, false, 4096, w + 700, 324);
    expect(p, 0, np, true, 4096, w + 700, 324);
    expect_none(p, 0, np);

    /* A run across a page-table boundary (page 512 starts the second 2 MiB), cut just after it. */
    for (size_t i = 500; i < 541; i++) wr(p, i);
    for (size_t i = 0; i < 41; i++) w[i] = 500 + i;
    expect(p, 0, np, true, 13, w, 13);
    expect(p, 0, np, false, 4096, w + 13, 28);
    expect(p, 0, np, true, 1, w + 13, 1);
    expect(p, 0, np, true, 4096, w + 14, 27);
    expect_none(p, 0, np);

    /* Every page written, out exactly full. */
    memset(p, 1, np * PG);
    for (size_t i = 0; i < 2048; i++) w[i] = i;
    expect(p, 0, 2048, true, 2048, w, 2048);
    for (size_t i = 0; i < 1024; i++) w[i] = 2048 + i;
    expect(p, 0, np, true, 4096, w, 1024);
    expect_none(p, 0, np);
    assert_int_equal(hm_dirty_unregister(p, np * PG), 0);
}

/* ---- discard, as hostmem's decommit does it ------------------------------------------------------- */

static void decommit(char *p, size_t npages)
{
    assert_int_equal(hm_os_protect(p, npages * PG, HM_OS_PROT_NONE), 0);
    assert_int_equal(hm_os_discard(p, npages * PG), 0);
}

static void test_discard(void **state)
{
    (void)state;
    NEED_KERNEL();
    char *p = slice();
    size_t np = 1024 + 32;
    commit(p, np);
    assert_int_equal(hm_dirty_register(p, np * PG), 0);
    for (size_t i = 0; i < 32; i++) wr(p, i);
    decommit(p + 8 * PG, 16);
    size_t w[] = {0, 1, 2, 3, 4, 5, 6, 7, 24, 25, 26, 27, 28, 29, 30, 31};
    expect(p, 0, np, false, 4096, w, 16); /* the discarded pages read clean at once */
    assert_int_equal(hm_dirty_reset(p + 8 * PG, 16 * PG), 0); /* what decommit will do; changes nothing here */
    expect(p, 0, np, false, 4096, w, 16);
    commit(p + 8 * PG, 16); /* recommit: still clean, and reads keep them so */
    expect(p, 0, np, false, 4096, w, 16);
    for (size_t i = 8; i < 24; i++) assert_int_equal(rd(p, i), 0);
    expect(p, 0, np, false, 4096, w, 16);
    wr(p, 10);
    size_t w2[] = {0, 1, 2, 3, 4, 5, 6, 7, 10, 24, 25, 26, 27, 28, 29, 30, 31};
    expect(p, 0, np, true, 4096, w2, 17);

    /* A whole 2 MiB discarded: its page table may be freed (CONFIG_PT_RECLAIM). After reset and
     * recommit, one write is one page. */
    /* (the slice is 2 MiB aligned: pages 512..1023 are its second 2 MiB) */
    for (size_t i = 512; i < 1024; i++) wr(p, i);
    decommit(p + 512 * PG, 512);
    expect_none(p, 0, np);
    assert_int_equal(hm_dirty_reset(p + 512 * PG, 512 * PG), 0);
    commit(p + 512 * PG, 512);
    expect_none(p, 0, np);
    wr(p, 700);
    size_t w3[] = {700};
    expect(p, 0, np, true, 4096, w3, 1);
    assert_int_equal(hm_dirty_unregister(p, np * PG), 0);
}

/* ---- mprotect --------------------------------------------------------------------------------- */

static void test_mprotect(void **state)
{
    (void)state;
    NEED_KERNEL();
    char *p = slice();
    commit(p, 64);
    assert_int_equal(hm_dirty_register(p, 64 * PG), 0);
    wr(p, 1);
    wr(p, 2);
    size_t w[] = {1, 2};
    assert_int_equal(hm_os_protect(p, 8 * PG, HM_OS_PROT_READ), 0);
    expect(p, 0, 64, false, 4096, w, 2);
    (void)rd(p, 3);
    assert_int_equal(hm_os_protect(p, 8 * PG, HM_OS_PROT_READ | HM_OS_PROT_WRITE), 0);
    expect(p, 0, 64, false, 4096, w, 2); /* neither lost nor invented */
    assert_int_equal(rd(p, 1), 1 * 7 + 1);
    wr(p, 3);
    size_t w2[] = {1, 2, 3};
    expect(p, 0, 64, true, 4096, w2, 3);
    /* Clean pages through RO, NONE and back to RW stay clean, and protected: a write counts. */
    assert_int_equal(hm_os_protect(p, 64 * PG, HM_OS_PROT_READ), 0);
    assert_int_equal(hm_os_protect(p, 64 * PG, HM_OS_PROT_NONE), 0);
    assert_int_equal(hm_os_protect(p, 64 * PG, HM_OS_PROT_READ | HM_OS_PROT_WRITE), 0);
    expect_none(p, 0, 64);
    assert_int_equal(rd(p, 2), 2 * 7 + 1);
    wr(p, 2);
    size_t w3[] = {2};
    expect(p, 0, 64, true, 4096, w3, 1);
    /* Written while RW, then RO: still written; reset while RO, then RW: clean. */
    wr(p, 5);
    assert_int_equal(hm_os_protect(p, 64 * PG, HM_OS_PROT_READ), 0);
    size_t w4[] = {5};
    expect(p, 0, 64, true, 4096, w4, 1);
    assert_int_equal(hm_os_protect(p, 64 * PG, HM_OS_PROT_READ | HM_OS_PROT_WRITE), 0);
    expect_none(p, 0, 64);
    assert_int_equal(hm_dirty_unregister(p, 64 * PG), 0);
}

/* ---- inside a larger mapping ------------------------------------------------------------------- */

static void test_split_unregister(void **state)
{
    (void)state;
    NEED_KERNEL();
    char *s = slice();
    int before = vmas(chunk, GIB);
    /* Reserved (never committed) part of the chunk: registering splits it in three, unregistering
     * merges it back into one. */
    assert_int_equal(hm_dirty_register(s + 16 * PG, 32 * PG), 0);
    assert_int_equal(vmas(chunk, GIB), before + 2);
    assert_int_equal(hm_dirty_unregister(s + 16 * PG, 32 * PG), 0);
    assert_int_equal(vmas(chunk, GIB), before);

    /* Two tracked ranges side by side in committed memory; ending one leaves the other as it was. */
    char *p = s + 2 * MIB;
    commit(p, 256);
    for (size_t i = 0; i < 256; i++) wr(p, i);
    assert_int_equal(hm_dirty_register(p, 64 * PG), 0);
    assert_int_equal(hm_dirty_register(p + 64 * PG, 64 * PG), 0);
    wr(p, 5);
    wr(p, 70);
    wr(p, 100);
    assert_int_equal(hm_dirty_unregister(p, 64 * PG), 0);
    size_t w[] = {70, 100};
    expect(p, 64, 128, false, 4096, w, 2);
    size_t n = 77;
    assert_int_equal(hm_dirty_scan(p, 64 * PG, out, 16, false, &n), EPERM); /* no longer tracked */
    assert_int_equal(n, 77);
    for (size_t i = 0; i < 256; i++) assert_int_equal(rd(p, i), i * 7 + 1); /* contents stay */
    assert_int_equal(tu_writable(p + 5 * PG), 1);

    /* Ending the middle of a tracked range: both ends keep their written pages. */
    wr(p, 65);
    wr(p, 127);
    assert_int_equal(hm_dirty_unregister(p + 80 * PG, 32 * PG), 0);
    size_t w2[] = {65, 70};
    expect(p, 64, 80, false, 4096, w2, 2);
    size_t w3[] = {127};
    expect(p, 112, 128, true, 4096, w3, 1);
    wr(p, 90); /* untracked now */
    expect(p, 112, 128, false, 4096, NULL, 0);
    assert_int_equal(hm_dirty_unregister(p + 64 * PG, 16 * PG), 0);
    assert_int_equal(hm_dirty_unregister(p + 112 * PG, 16 * PG), 0);

    /* Registered again later: clean, whatever was written meanwhile. */
    assert_int_equal(hm_dirty_register(p, 256 * PG), 0);
    expect_none(p, 0, 256);
    assert_int_equal(hm_dirty_unregister(p, 256 * PG), 0);
    assert_int_equal(hm_os_protect(p, 256 * PG, HM_OS_PROT_NONE), 0);
    assert_int_equal(hm_os_discard(p, 256 * PG), 0);
    assert_int_equal(vmas(chunk, GIB), before);
}

/* A range only partly tracked is refused whole: the kernel would protect the tracked pages before
 * the first untracked mapping and then fail, so dirty.c checks first. Nothing is reset. */
static void test_partly_tracked(void **state)
{
    (void)state;
    NEED_KERNEL();
    char *p = slice();
    commit(p, 64);
    assert_int_equal(hm_dirty_register(p, 16 * PG), 0);
    assert_int_equal(hm_dirty_register(p + 32 * PG, 16 * PG), 0);
    wr(p, 3);
    wr(p, 20);
    wr(p, 40);
    size_t n = 77;
    assert_int_equal(hm_dirty_scan(p, 64 * PG, out, 64, true, &n), EPERM);
    assert_int_equal(hm_dirty_scan(p, 48 * PG, out, 64, true, &n), EPERM);
    assert_int_equal(hm_dirty_scan(p + 8 * PG, 32 * PG, out, 64, false, &n), EPERM);
    assert_int_equal(hm_dirty_reset(p, 48 * PG), EPERM);
    assert_int_equal(n, 77);
    size_t w[] = {3};
    expect(p, 0, 16, true, 4096, w, 1);
    size_t w2[] = {40};
    expect(p, 32, 48, true, 4096, w2, 1);
    /* Unmapped holes in the range are no obstacle. */
    assert_int_equal(hm_dirty_unregister(p + 32 * PG, 16 * PG), 0);
    assert_int_equal(munmap(p + 16 * PG, 48 * PG), 0);
    wr(p, 4);
    size_t w3[] = {4};
    expect(p, 0, 64, true, 4096, w3, 1);
    assert_int_equal(hm_dirty_reset(p, 64 * PG), 0);
    assert_int_equal(hm_dirty_unregister(p, 16 * PG), 0);
    void *back = mmap(p + 16 * PG, 48 * PG, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED | MAP_NORESERVE, -1, 0);
    assert_true(back == p + 16 * PG);
}

/* A child after fork tracks nothing (the kernel drops its registrations; its copy of the pagemap
 * descriptor would read the parent): every call says ECHILD there. The parent is unaffected. */
static void test_fork(void **state)
{
    (void)state;
    NEED_KERNEL();
    char *p = slice();
    commit(p, 16);
    assert_int_equal(hm_dirty_register(p, 16 * PG), 0);
    wr(p, 1);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        size_t n = 0;
        wr(p, 2);
        int ok = hm_dirty_scan(p, 16 * PG, out, 16, true, &n) == ECHILD && hm_dirty_reset(p, 16 * PG) == ECHILD &&
                 hm_dirty_unregister(p, 16 * PG) == ECHILD && hm_dirty_register(p, 16 * PG) == ECHILD;
        _exit(ok ? 0 : 1);
    }
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    wr(p, 3); /* the parent's pages, copied on write after fork, are tracked as before */
    size_t w[] = {1, 3};
    expect(p, 0, 16, true, 4096, w, 2);
    assert_int_equal(hm_dirty_unregister(p, 16 * PG), 0);
}

/* ---- writes the kernel makes for the process ---------------------------------------------------- */

static void test_kernel_writes(void **state)
{
    (void)state;
    NEED_KERNEL();
    char *p = slice();
    commit(p, 16);
    wr(p, 2); /* present, then protected by registration */
    assert_int_equal(hm_dirty_register(p, 16 * PG), 0);
    assert_int_equal(tu_writable(p + 2 * PG), 1); /* read(2) from a pipe into the page */
    assert_int_equal(tu_writable(p + 9 * PG), 1); /* into a page never touched */
    size_t w[] = {2, 9};
    expect(p, 0, 16, true, 4096, w, 2);
    assert_int_equal(hm_dirty_unregister(p, 16 * PG), 0);
}

/* ---- transparent huge pages ---------------------------------------------------------------------- */

static void test_thp(void **state)
{
    (void)state;
    NEED_KERNEL();
    if (hm_os_cfg()->thp <= 0) {
        print_message("skipped: transparent huge pages are off here\n");
        skip();
    }
    /* With the guard: a first write into a 2 MiB range eligible for THP is one page, also after
     * the range was discarded whole and reset. */
    hm_dirty_set_thp_guard(1);
    char *p = slice();
    assert_int_equal(madvise(p, 4 * MIB, MADV_HUGEPAGE), 0);
    assert_int_equal(hm_dirty_register(p, 4 * MIB), 0);
    commit(p, 1024);
    wr(p, 3);
    size_t w[] = {3};
    expect(p, 0, 1024, true, 4096, w, 1);
    decommit(p, 512);
    assert_int_equal(hm_dirty_reset(p, 2 * MIB), 0);
    commit(p, 512);
    wr(p, 7);
    size_t w2[] = {7};
    expect(p, 0, 1024, true, 4096, w2, 1);
    assert_int_equal(hm_dirty_unregister(p, 4 * MIB), 0);

    /* Without: the kernel may give the write a huge page, which then reads as 512 written pages
     * (a superset: never fewer). */
    hm_dirty_set_thp_guard(0);
    p = slice();
    assert_int_equal(madvise(p, 4 * MIB, MADV_HUGEPAGE), 0);
    assert_int_equal(hm_dirty_register(p, 4 * MIB), 0);
    commit(p, 1024);
    wr(p, 3);
    size_t n = 0;
    assert_int_equal(hm_dirty_scan(p, 4 * MIB, out, 4096, true, &n), 0);
    print_message("without the guard, one write into a THP-eligible 2 MiB lists %zu page(s)\n", n);
    bool found = false;
    for (size_t i = 0; i < n; i++) found |= out[i] == (uintptr_t)p + 3 * PG;
    assert_true(found);
    assert_true(n == 1 || n == 512);
    wr(p, 4); /* protected again as a huge page; the next write splits it: one page */
    size_t w3[] = {4};
    expect(p, 0, 1024, true, 4096, w3, 1);
    assert_int_equal(hm_dirty_unregister(p, 4 * MIB), 0);
    hm_dirty_set_thp_guard(-1);
}

/* ---- fault injection and errno ------------------------------------------------------------------ */

static void test_faults(void **state)
{
    (void)state;
    NEED_KERNEL();
    char *p = slice();
    commit(p, 64);
    int before = vmas(chunk, GIB);
    size_t n = 77;

    /* Registration refused: nothing registered (the kernel refuses to scan it), mapping unsplit. */
    unsigned long calls = hm_os_calls(HM_OS_UFFD);
    hm_os_fault_inject(HM_OS_UFFD, 1, ENOMEM, false);
    errno = 4242;
    assert_int_equal(hm_dirty_register(p + 8 * PG, 32 * PG), ENOMEM);
    assert_int_equal(errno, 4242);
    assert_int_equal(hm_os_calls(HM_OS_UFFD), calls + 1);
    assert_int_equal(hm_dirty_scan(p + 8 * PG, 32 * PG, out, 16, false, &n), EPERM);
    assert_int_equal(vmas(chunk, GIB), before);
    assert_int_equal(hm_dirty_register(p + 8 * PG, 32 * PG), 0);

    /* A scan with reset refused: nothing listed, nothing reset. */
    wr(p, 10);
    wr(p, 20);
    hm_os_fault_inject(HM_OS_UFFD, 1, EIO, false);
    out[0] = 0xdead;
    assert_int_equal(hm_dirty_scan(p + 8 * PG, 32 * PG, out, 16, true, &n), EIO);
    assert_int_equal(n, 77);
    assert_int_equal(out[0], 0xdead);
    assert_int_equal(errno, 4242);
    size_t w[] = {10, 20};
    expect(p, 8, 40, false, 4096, w, 2);

    /* A reset refused: still written. Persistent: every call fails until cleared. */
    hm_os_fault_inject(HM_OS_UFFD, 1, ENOMEM, true);
    assert_int_equal(hm_dirty_reset(p + 8 * PG, 32 * PG), ENOMEM);
    assert_int_equal(hm_dirty_scan(p + 8 * PG, 32 * PG, out, 16, true, &n), ENOMEM);
    assert_int_equal(hm_dirty_unregister(p + 8 * PG, 32 * PG), ENOMEM);
    hm_os_fault_clear();
    expect(p, 8, 40, true, 4096, w, 2); /* still registered, nothing reset */

    /* Unregistration refused: still tracked. The 2nd next call fails: the first goes through. */
    hm_os_fault_inject(HM_OS_UFFD, 2, ENOMEM, false);
    wr(p, 11);
    size_t w2[] = {11};
    expect(p, 8, 40, false, 4096, w2, 1);
    assert_int_equal(hm_dirty_unregister(p + 8 * PG, 32 * PG), ENOMEM);
    expect(p, 8, 40, true, 4096, w2, 1);
    assert_int_equal(hm_dirty_unregister(p + 8 * PG, 32 * PG), 0);
    assert_int_equal(vmas(chunk, GIB), before);
    assert_int_equal(errno, 4242);
}

static void test_errno(void **state)
{
    (void)state;
    NEED_KERNEL();
    char *p = slice();
    commit(p, 16);
    size_t n;
    errno = 4242;
    assert_true(hm_dirty_available());
    (void)hm_dirty_describe();
    assert_int_equal(hm_dirty_register(p, 16 * PG), 0);
    wr(p, 1);
    assert_int_equal(hm_dirty_scan(p, 16 * PG, out, 16, true, &n), 0);
    assert_int_equal(hm_dirty_reset(p, 16 * PG), 0);
    assert_int_equal(hm_dirty_register(p + 1, 16 * PG), EINVAL);
    assert_int_equal(hm_dirty_scan(p + 16 * PG, 16 * PG, out, 16, true, &n), EPERM);
    assert_int_equal(hm_dirty_unregister(p, 16 * PG), 0);
    assert_int_equal(errno, 4242);
}

/* ---- writers against a scanner: no write is ever lost ------------------------------------------
 *
 * The model. Each page belongs to one writer, which numbers its writes to it 1, 2, 3... For write v
 * it publishes intent[page] = v, fences, writes v into the page, then publishes done[page] = v.
 * The scanner, around each scan with reset of a part of the range, reads done[] before (D) and
 * intent[] after (E). When a scan lists a page, every write whose intent was published after that
 * scan returned — so after the page's reset — must be listed by a later scan. Hence, for a page a
 * scan covers but does not list: D[page] <= E[page] at the last scan that listed it (0 if none), or
 * a completed write was lost. The check is sound whatever the interleaving, and strict: a write that
 * completed after a reset is never excused. */

#define MP 1024 /* pages: 4 MiB, two page tables */
#define WRITERS 3

typedef struct model {
    char *base;
    _Atomic uint64_t intent[MP], done[MP];
    atomic_bool stop;
    atomic_ulong writes;
} model;

static model M;

typedef struct writer_arg {
    int id;
    uint64_t seq[MP];
} writer_arg;

static void *writer(void *arg)
{
    writer_arg *w = arg;
    uint64_t x = 0x9E3779B97F4A7C15ull * (uint64_t)(w->id + 1);
    unsigned long count = 0;
    while (!atomic_load_explicit(&M.stop, memory_order_relaxed)) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        size_t pg = (size_t)(x % (MP / WRITERS)) * WRITERS + (size_t)w->id; /* its own pages */
        if (pg >= MP) continue;
        uint64_t v = ++w->seq[pg];
        atomic_store(&M.intent[pg], v);
        atomic_thread_fence(memory_order_seq_cst);
        _Atomic uint64_t *cell = (_Atomic uint64_t *)(M.base + pg * PG + 8 * (x >> 60));
        atomic_store_explicit(cell, v, memory_order_relaxed);
        atomic_store(&M.done[pg], v);
        count++;
        if ((count & 1023) == 0) hm_os_yield();
    }
    atomic_fetch_add(&M.writes, count);
    return NULL;
}

static uint64_t last_e[MP]; /* intent[] read after the last scan that listed the page */
static uint64_t dsnap[MP], esnap[MP];
static bool listed[MP];
static uintptr_t mout[MP];

/* One scan with reset of pages [lo, hi) with at most max listed; checks the model. */
static void model_scan(size_t lo, size_t hi, size_t max, unsigned long *pages)
{
    for (size_t i = lo; i < hi; i++) dsnap[i] = atomic_load(&M.done[i]);
    size_t n = 0;
    int err = hm_dirty_scan(M.base + lo * PG, (hi - lo) * PG, mout, max, true, &n);
    if (err) fail_msg("hm_dirty_scan: %s", strerror(err));
    for (size_t i = lo; i < hi; i++) esnap[i] = atomic_load(&M.intent[i]);
    memset(listed + lo, 0, hi - lo);
    uintptr_t prev = 0;
    for (size_t i = 0; i < n; i++) {
        uintptr_t a = mout[i];
        if (a < (uintptr_t)M.base + lo * PG || a >= (uintptr_t)M.base + hi * PG || a % PG || (i && a <= prev))
            fail_msg("listed address %#lx out of range or order", (unsigned long)a);
        prev = a;
        size_t pg = (a - (uintptr_t)M.base) / PG;
        if (esnap[pg] == 0) fail_msg("page %zu listed but never written", pg);
        listed[pg] = true;
    }
    /* With max reached, the kernel stopped after the last page listed: the rest was not scanned. */
    size_t covered = n == max && n ? (mout[n - 1] - (uintptr_t)M.base) / PG + 1 : hi;
    for (size_t pg = lo; pg < covered; pg++) {
        if (listed[pg]) {
            last_e[pg] = esnap[pg];
        } else if (dsnap[pg] > last_e[pg]) {
            fail_msg("page %zu: write %llu completed before the scan, after the page's last reset (intent "
                     "seen then: %llu), and the scan did not list it",
                     pg, (unsigned long long)dsnap[pg], (unsigned long long)last_e[pg]);
        }
    }
    *pages += n;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void test_threads_model(void **state)
{
    (void)state;
    NEED_KERNEL();
    memset(&M, 0, sizeof M);
    memset(last_e, 0, sizeof last_e);
    M.base = slice();
    commit(M.base, MP);
    assert_int_equal(hm_dirty_register(M.base, MP * PG), 0);
    static writer_arg wa[WRITERS];
    pthread_t t[WRITERS];
    for (int i = 0; i < WRITERS; i++) {
        memset(&wa[i], 0, sizeof wa[i]);
        wa[i].id = i;
        assert_int_equal(pthread_create(&t[i], NULL, writer, &wa[i]), 0);
    }
    uint64_t x = 88172645463325252ull;
    unsigned long scans = 0, pages = 0;
    double end = now_s() + (UNDER_TSAN ? 1.0 : 2.0);
    while (now_s() < end) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        size_t lo = 0, hi = MP, max = MP;
        switch (x % 4) {
        case 0: break;                                       /* everything */
        case 1: max = 1 + (size_t)(x >> 8) % 64; break;       /* cut by max */
        case 2:                                              /* a part, maybe cut */
            lo = (size_t)(x >> 8) % MP;
            hi = lo + 1 + (size_t)(x >> 24) % (MP - lo);
            max = (x >> 40) % 2 ? hi - lo : 1 + (size_t)(x >> 44) % 16;
            break;
        case 3: hm_os_yield(); break;
        }
        model_scan(lo, hi, max, &pages);
        scans++;
    }
    atomic_store(&M.stop, true);
    for (int i = 0; i < WRITERS; i++) pthread_join(t[i], NULL);
    model_scan(0, MP, MP, &pages); /* after the last writes: each one still unreported is listed now */
    size_t n = 77;
    assert_int_equal(hm_dirty_scan(M.base, MP * PG, mout, MP, false, &n), 0);
    assert_int_equal(n, 0);
    print_message("%lu writes by %d threads, %lu scans with reset listed %lu pages, none missed\n",
                  atomic_load(&M.writes), WRITERS, scans, pages);
    assert_true(atomic_load(&M.writes) > 0);
    assert_int_equal(hm_dirty_unregister(M.base, MP * PG), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_probe),
        cmocka_unit_test(test_arguments),
        cmocka_unit_test(test_basic),
        cmocka_unit_test(test_register_reserved),
        cmocka_unit_test(test_max),
        cmocka_unit_test(test_discard),
        cmocka_unit_test(test_mprotect),
        cmocka_unit_test(test_split_unregister),
        cmocka_unit_test(test_partly_tracked),
        cmocka_unit_test(test_fork),
        cmocka_unit_test(test_kernel_writes),
        cmocka_unit_test(test_thp),
        cmocka_unit_test(test_faults),
        cmocka_unit_test(test_errno),
        cmocka_unit_test(test_threads_model),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
