/* watch.c — write watch (SPEC 2.6) through win32.h: exact reports, reset semantics, decommit and
 * re-commit, the count limit, and a race of writers against a resetting thread checked against a
 * model. ctest runs this program twice: with the mechanism the machine offers, and with
 * HOSTMEM_WRITE_WATCH=fallback (the write-protect-and-fault fallback); it prints which one ran. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "os/os.h"
#include "vmap/vmap.h"
#include "win32_testutil.h"

#define MAXW 4096

/* GetWriteWatch that must succeed; returns the count. */
static ULONG_PTR get_ww(DWORD flags, void *base, SIZE_T size, PVOID *out, ULONG_PTR max)
{
    ULONG_PTR count = max;
    DWORD gran = 0;
    SetLastError(POISON);
    UINT r = GetWriteWatch(flags, base, size, out, &count, &gran);
    if (r != 0) fail_msg("GetWriteWatch(%#x, %p, %#zx) failed: %u (%s)", flags, base, size, GetLastError(), hm_last_detail());
    assert_int_equal(gran, PG);
    assert_true(count <= max);
    for (ULONG_PTR i = 1; i < count; i++) assert_true((char *)out[i - 1] < (char *)out[i]); /* address order */
    return count;
}

/* The pages reported for [base, base+size) equal exactly want[0..n). */
static void expect_pages(DWORD flags, void *base, SIZE_T size, char *const *want, size_t n, int line)
{
    static PVOID out[MAXW];
    ULONG_PTR c = get_ww(flags, base, size, out, MAXW);
    if (c != n) {
        fprintf(stderr, "reported:");
        for (ULONG_PTR i = 0; i < c; i++) fprintf(stderr, " %p", out[i]);
        fprintf(stderr, "\n");
        fail_msg("line %d: %lu pages reported, %zu expected", line, (unsigned long)c, n);
    }
    for (size_t i = 0; i < n; i++)
        if (out[i] != want[i]) fail_msg("line %d: page %zu is %p, expected %p", line, i, out[i], (void *)want[i]);
}
#define EXPECT(flags, base, size, ...) \
    do { \
        char *const w_[] = {__VA_ARGS__}; \
        expect_pages((flags), (base), (size), w_, sizeof w_ / sizeof w_[0] - 1, __LINE__); \
    } while (0)
/* (every list ends with a NULL sentinel, so that an empty one compiles) */

static void check_map(void)
{
    if (hm_vmap_check(KERNEL_CHECK) != HM_OK) fail_msg("map check: %s", hm_last_detail());
}

static void test_mechanism(void **state)
{
    (void)state;
    tu_hostmem_faults_first();
    const char *m = hm_write_watch_mechanism();
    const char *env = getenv("HOSTMEM_WRITE_WATCH");
    fprintf(stderr, "write watch mechanism: %s (%s)\n", m, hm_write_watch_describe());
    assert_true(!strcmp(m, "kernel") || !strcmp(m, "fallback"));
    if (env && !strcmp(env, "fallback")) assert_string_equal(m, "fallback");
}

/* Writes at page boundaries are reported exactly: the first and the last byte of a page, a write that
 * straddles two pages, nothing else; reports without reset repeat. */
static void test_exact(void **state)
{
    (void)state;
    tu_hostmem_faults_first();
    char *p = ALLOC_OK(NULL, 16 * PG, MEM_RESERVE | MEM_COMMIT | MEM_WRITE_WATCH, PAGE_READWRITE, NULL);
    EXPECT(0, p, 16 * PG, NULL);
    volatile char *v = p;
    (void)v[5 * PG]; /* reads are not writes */
    EXPECT(0, p, 16 * PG, NULL);
    v[0] = 1;               /* first byte of page 0 */
    v[3 * PG - 1] = 2;      /* last byte of page 2 */
    memset(p + 7 * PG - 4, 3, 8); /* straddles pages 6 and 7 */
    v[15 * PG + 4095] = 4;  /* last byte of the allocation */
    EXPECT(0, p, 16 * PG, p, p + 2 * PG, p + 6 * PG, p + 7 * PG, p + 15 * PG, NULL);
    EXPECT(0, p, 16 * PG, p, p + 2 * PG, p + 6 * PG, p + 7 * PG, p + 15 * PG, NULL); /* no reset: the same */
    /* partial ranges, unaligned ones included (rounded to pages) */
    EXPECT(0, p + PG, 2 * PG, p + 2 * PG, NULL);
    EXPECT(0, p + 6 * PG + 100, 10, p + 6 * PG, NULL);
    EXPECT(0, p + 3 * PG, 3 * PG, NULL);
    assert_int_equal(v[3 * PG - 1], 2); /* data intact */
    check_map();
    release(p);
}

/* WRITE_WATCH_FLAG_RESET resets exactly what it reports; ResetWriteWatch resets its range only. */
static void test_reset(void **state)
{
    (void)state;
    tu_hostmem_faults_first();
    char *p = ALLOC_OK(NULL, 8 * PG, MEM_RESERVE | MEM_COMMIT | MEM_WRITE_WATCH, PAGE_READWRITE, NULL);
    for (int i = 0; i < 8; i++) p[i * PG] = (char)i;
    EXPECT(WRITE_WATCH_FLAG_RESET, p + 2 * PG, 2 * PG, p + 2 * PG, p + 3 * PG, NULL); /* resets 2, 3 */
    EXPECT(0, p, 8 * PG, p, p + PG, p + 4 * PG, p + 5 * PG, p + 6 * PG, p + 7 * PG, NULL);
    p[3 * PG + 1] = 9; /* written again after its reset */
    EXPECT(0, p, 8 * PG, p, p + PG, p + 3 * PG, p + 4 * PG, p + 5 * PG, p + 6 * PG, p + 7 * PG, NULL);
    SetLastError(POISON);
    assert_int_equal(ResetWriteWatch(p + 4 * PG, 3 * PG), 0);
    EXPECT(0, p, 8 * PG, p, p + PG, p + 3 * PG, p + 7 * PG, NULL);
    assert_int_equal(ResetWriteWatch(p, 8 * PG), 0);
    EXPECT(0, p, 8 * PG, NULL);
    for (int i = 0; i < 8; i++) assert_int_equal(p[i * PG], i == 3 ? 3 : i); /* resets keep data */
    p[7 * PG] = 1;
    EXPECT(WRITE_WATCH_FLAG_RESET, p, 8 * PG, p + 7 * PG, NULL);
    EXPECT(0, p, 8 * PG, NULL);
    check_map();
    release(p);
}

/* At most *count pages are listed, the first ones in address order; with reset only those are reset
 * and the rest come with the next call. */
static void test_count_limit(void **state)
{
    (void)state;
    tu_hostmem_faults_first();
    char *p = ALLOC_OK(NULL, 64 * PG, MEM_RESERVE | MEM_COMMIT | MEM_WRITE_WATCH, PAGE_READWRITE, NULL);
    for (int i = 0; i < 64; i += 2) p[i * PG] = 1; /* 32 pages */
    PVOID out[64];
    ULONG_PTR c = get_ww(WRITE_WATCH_FLAG_RESET, p, 64 * PG, out, 5);
    assert_int_equal(c, 5);
    for (int i = 0; i < 5; i++) assert_ptr_equal(out[i], p + 2 * i * PG);
    c = get_ww(0, p, 64 * PG, out, 64);
    assert_int_equal(c, 27);
    assert_ptr_equal(out[0], p + 10 * PG);
    c = get_ww(WRITE_WATCH_FLAG_RESET, p, 64 * PG, out, 64);
    assert_int_equal(c, 27);
    EXPECT(0, p, 64 * PG, NULL);
    /* a run of consecutive written pages cut by the limit */
    memset(p, 7, 64 * PG);
    c = get_ww(WRITE_WATCH_FLAG_RESET, p, 64 * PG, out, 10);
    assert_int_equal(c, 10);
    c = get_ww(0, p, 64 * PG, out, 64);
    assert_int_equal(c, 54);
    assert_ptr_equal(out[0], p + 10 * PG);
    check_map();
    release(p);
}

/* Decommit clears the pages' watch state; re-commit starts them clean; reserved pages are never listed. */
static void test_decommit_recommit(void **state)
{
    (void)state;
    tu_hostmem_faults_first();
    char *p = ALLOC_OK(NULL, 4 * GRAN, MEM_RESERVE | MEM_WRITE_WATCH, PAGE_READWRITE, NULL);
    EXPECT(0, p, 4 * GRAN, NULL);
    ALLOC_OK(p + PG, 4 * PG, MEM_COMMIT, PAGE_READWRITE, p + PG);
    EXPECT(0, p, 4 * GRAN, NULL); /* committing is not writing */
    memset(p + PG, 1, 4 * PG);
    EXPECT(0, p, 4 * GRAN, p + PG, p + 2 * PG, p + 3 * PG, p + 4 * PG, NULL);
    assert_true(VirtualFree(p + 2 * PG, 2 * PG, MEM_DECOMMIT));
    EXPECT(0, p, 4 * GRAN, p + PG, p + 4 * PG, NULL);
    ALLOC_OK(p + 2 * PG, 2 * PG, MEM_COMMIT, PAGE_READWRITE, p + 2 * PG);
    EXPECT(0, p, 4 * GRAN, p + PG, p + 4 * PG, NULL);
    assert_int_equal(p[2 * PG], 0); /* decommitted data is gone */
    p[3 * PG] = 5;
    EXPECT(0, p, 4 * GRAN, p + PG, p + 3 * PG, p + 4 * PG, NULL);
    /* re-commit of committed pages keeps data and watch state */
    ALLOC_OK(p + PG, 4 * PG, MEM_COMMIT, PAGE_READWRITE, p + PG);
    EXPECT(0, p, 4 * GRAN, p + PG, p + 3 * PG, p + 4 * PG, NULL);
    /* protection changes neither lose nor invent writes */
    DWORD old;
    assert_true(VirtualProtect(p + PG, 4 * PG, PAGE_READONLY, &old));
    assert_int_equal(old, PAGE_READWRITE);
    EXPECT(0, p, 4 * GRAN, p + PG, p + 3 * PG, p + 4 * PG, NULL);
    assert_true(VirtualProtect(p + PG, 4 * PG, PAGE_READWRITE, &old));
    EXPECT(WRITE_WATCH_FLAG_RESET, p, 4 * GRAN, p + PG, p + 3 * PG, p + 4 * PG, NULL);
    p[2 * PG] = 1;
    EXPECT(0, p, 4 * GRAN, p + 2 * PG, NULL);
    /* decommit of everything, then commit again: clean */
    assert_true(VirtualFree(p, 0, MEM_DECOMMIT));
    ALLOC_OK(p, 4 * GRAN, MEM_COMMIT, PAGE_READWRITE, p);
    EXPECT(0, p, 4 * GRAN, NULL);
    check_map();
    release(p);
}

/* Several write-watched allocations side by side, and an ordinary one between them: each reports its own. */
static void test_several_regions(void **state)
{
    (void)state;
    tu_hostmem_faults_first();
    char *a = ALLOC_OK(NULL, GRAN, MEM_RESERVE | MEM_COMMIT | MEM_WRITE_WATCH, PAGE_READWRITE, NULL);
    char *o = ALLOC_OK(NULL, GRAN, MEM_RESERVE | MEM_COMMIT, PAGE_READWRITE, NULL);
    char *b = ALLOC_OK(NULL, 2 * GRAN, MEM_RESERVE | MEM_COMMIT | MEM_WRITE_WATCH, PAGE_EXECUTE_READWRITE, NULL);
    a[PG] = 1;
    o[0] = 1;
    b[GRAN + 5] = 1;
    b[0] = 1;
    EXPECT(0, a, GRAN, a + PG, NULL);
    EXPECT(0, b, 2 * GRAN, b, b + GRAN, NULL);
    PVOID out[4];
    ULONG_PTR count = 4;
    DWORD gran;
    SetLastError(POISON);
    assert_int_equal(GetWriteWatch(0, o, GRAN, out, &count, &gran), (UINT)-1);
    assert_int_equal(GetLastError(), ERROR_INVALID_PARAMETER);
    count = 4;
    assert_int_equal(GetWriteWatch(0, b + GRAN, 2 * GRAN, out, &count, &gran), (UINT)-1); /* runs past its end */
    assert_int_equal(GetLastError(), ERROR_INVALID_PARAMETER);
    assert_int_equal(ResetWriteWatch(b + GRAN, 2 * GRAN), (UINT)-1);
    assert_int_equal(GetLastError(), ERROR_INVALID_PARAMETER);
    /* VirtualQuery shows nothing special about watched memory */
    MEMORY_BASIC_INFORMATION m;
    assert_int_equal(VirtualQuery(b, &m, sizeof m), sizeof m);
    assert_int_equal(m.Protect, PAGE_EXECUTE_READWRITE);
    assert_int_equal(m.RegionSize, 2 * GRAN);
    check_map();
    release(a);
    release(o);
    release(b);
}

/* The hm_* surface: the same rules, HRESULT-style statuses. */
static void test_c_api(void **state)
{
    (void)state;
    tu_hostmem_faults_first();
    void *p;
    assert_int_equal(hm_virtual_alloc(NULL, NULL, GRAN, HM_MEM_RESERVE | HM_MEM_COMMIT | HM_MEM_WRITE_WATCH, HM_PAGE_READWRITE, &p),
                     HM_OK);
    void *out[16];
    uintptr_t count = 16;
    uint32_t gran = 0;
    ((char *)p)[100] = 1;
    assert_int_equal(hm_get_write_watch(NULL, HM_WRITE_WATCH_FLAG_RESET, p, GRAN, out, &count, &gran), HM_OK);
    assert_int_equal(count, 1);
    assert_ptr_equal(out[0], p);
    assert_int_equal(gran, 4096);
    count = 16;
    assert_int_equal(hm_get_write_watch(NULL, 2, p, GRAN, out, &count, &gran), HM_E_INVALID_PARAMETER);
    assert_int_equal(hm_get_write_watch(NULL, 0, p, GRAN, out, NULL, &gran), HM_E_NOACCESS);
    assert_int_equal(hm_reset_write_watch(NULL, p, 0), HM_E_INVALID_PARAMETER);
    assert_int_equal(hm_reset_write_watch(NULL, p, GRAN), HM_OK);
    /* another manager's allocation */
    hm_manager *m2;
    assert_int_equal(hm_manager_create("", &m2), HM_OK);
    count = 16;
    assert_int_equal(hm_get_write_watch(m2, 0, p, GRAN, out, &count, &gran), HM_E_HOST_NOT_OWNER);
    assert_int_equal(hm_manager_destroy(m2), HM_OK);
    assert_int_equal(hm_release(NULL, p), HM_OK);
}

/* Every kernel call that making, changing or reading a write-watched allocation makes, failed once
 * in turn (the n-th call of each kind): the call either succeeds whole or fails with the map as it
 * was, and the watch state stays exact. */
static void test_faults(void **state)
{
    (void)state;
    tu_hostmem_faults_first();
    static const hm_os_call_t kinds[] = {HM_OS_MMAP, HM_OS_MPROTECT, HM_OS_MADVISE, HM_OS_UFFD};
    for (size_t k = 0; k < sizeof kinds / sizeof kinds[0]; k++)
        for (unsigned long nth = 1; nth <= 4; nth++) {
            /* reserve + commit with MEM_WRITE_WATCH */
            tu_snapshot_take(&snap_before);
            hm_os_fault_inject(kinds[k], nth, ENOMEM, false);
            char *p = VirtualAlloc(NULL, 4 * GRAN, MEM_RESERVE | MEM_COMMIT | MEM_WRITE_WATCH, PAGE_READWRITE);
            hm_os_fault_clear();
            if (!p) {
                snap_check_unchanged(__LINE__);
                check_map();
                continue;
            }
            p[PG] = 1;
            p[5 * PG] = 1;
            /* a protection change over written and unwritten pages (several kernel protections under
             * the fallback: a failure half-way is rolled back) */
            DWORD old;
            tu_snapshot_take(&snap_before);
            hm_os_fault_inject(kinds[k], nth, ENOMEM, false);
            BOOL changed = VirtualProtect(p, 8 * PG, PAGE_EXECUTE_READWRITE, &old);
            hm_os_fault_clear();
            if (!changed) snap_check_unchanged(__LINE__);
            check_map();
            EXPECT(0, p, 8 * PG, p + PG, p + 5 * PG, NULL);
            /* GetWriteWatch with reset, then decommit, each with the fault armed */
            static PVOID out[64];
            ULONG_PTR count = 64;
            DWORD gran;
            hm_os_fault_inject(kinds[k], nth, ENOMEM, false);
            UINT r = GetWriteWatch(WRITE_WATCH_FLAG_RESET, p, 4 * GRAN, out, &count, &gran);
            hm_os_fault_clear();
            if (r == 0) {
                assert_int_equal(count, 2);
                assert_ptr_equal(out[0], p + PG);
                assert_ptr_equal(out[1], p + 5 * PG);
            }
            /* whatever the outcome, no write is lost: pages 1 and 5 are listed now unless just reset */
            EXPECT(WRITE_WATCH_FLAG_RESET, p, PG, NULL);
            if (r != 0) EXPECT(WRITE_WATCH_FLAG_RESET, p + PG, 5 * PG, p + PG, p + 5 * PG, NULL);
            p[2 * PG] = 1;
            hm_os_fault_inject(kinds[k], nth, ENOMEM, false);
            BOOL ok = VirtualFree(p + 2 * PG, GRAN, MEM_DECOMMIT);
            hm_os_fault_clear();
            if (ok) EXPECT(0, p, 4 * GRAN, NULL);
            else EXPECT(0, p, 4 * GRAN, p + 2 * PG, NULL);
            check_map();
            release(p);
            check_map();
        }
}

/* ---- writers against a resetting thread ----------------------------------------------------------
 * Each writer owns the pages p with p % WRITERS == its index. Before a write it reads the epoch (the
 * number of the resetting call that has begun last), writes, then records that epoch as the page's
 * last_epoch. The resetter numbers its calls 1, 2, ...: it publishes call k's number, then calls
 * GetWriteWatch(RESET) and records k as last_report of every page listed. A write that began after
 * call k began must be listed by call k or a later one, so at the end (after one last call) every
 * written page has last_report >= last_epoch: a write lost by a reset would break it. */
#define RACE_PAGES 1024
#define WRITERS 3

static char *race_base;
static _Atomic uint64_t epoch;
static _Atomic bool stop;
static _Atomic uint64_t last_epoch[RACE_PAGES];
static uint64_t last_report[RACE_PAGES];

static void *writer(void *arg)
{
    unsigned id = (unsigned)(uintptr_t)arg;
    uint64_t x = 0x9E3779B97F4A7C15ull * (id + 1);
    while (!atomic_load(&stop)) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        uint64_t p = (x % (RACE_PAGES / WRITERS)) * WRITERS + id;
        uint64_t e = atomic_load(&epoch);
        ((volatile uint64_t *)(race_base + p * PG))[x % 512] = x;
        atomic_store(&last_epoch[p], e + 1); /* +1: 0 means never written */
    }
    return NULL;
}

static void report(uint64_t k)
{
    static PVOID out[RACE_PAGES];
    atomic_store(&epoch, k);
    ULONG_PTR c = get_ww(WRITE_WATCH_FLAG_RESET, race_base, RACE_PAGES * PG, out, RACE_PAGES);
    for (ULONG_PTR i = 0; i < c; i++) last_report[((char *)out[i] - race_base) / PG] = k;
}

static void test_race(void **state)
{
    (void)state;
    tu_hostmem_faults_first();
    race_base = ALLOC_OK(NULL, RACE_PAGES * PG, MEM_RESERVE | MEM_COMMIT | MEM_WRITE_WATCH, PAGE_READWRITE, NULL);
    pthread_t t[WRITERS];
    for (unsigned i = 0; i < WRITERS; i++) assert_int_equal(pthread_create(&t[i], NULL, writer, (void *)(uintptr_t)i), 0);
    uint64_t k = 1;
    struct timespec t0, now;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    do {
        report(k++);
        if (k % 8 == 0) { /* a partial reset now and then */
            uint64_t from = (k * 37) % (RACE_PAGES - 64);
            atomic_store(&epoch, k);
            /* ResetWriteWatch forgets writes by definition: pages it covers restart from this epoch */
            for (uint64_t p = from; p < from + 64; p++) last_report[p] = k;
            assert_int_equal(ResetWriteWatch(race_base + from * PG, 64 * PG), 0);
            k++;
        }
        clock_gettime(CLOCK_MONOTONIC, &now);
    } while ((now.tv_sec - t0.tv_sec) * 1000000000L + (now.tv_nsec - t0.tv_nsec) < 1500000000L);
    atomic_store(&stop, true);
    for (unsigned i = 0; i < WRITERS; i++) pthread_join(t[i], NULL);
    report(k);
    unsigned long written = 0;
    for (uint64_t p = 0; p < RACE_PAGES; p++) {
        uint64_t e = atomic_load(&last_epoch[p]);
        if (!e) continue;
        written++;
        /* the write read epoch e-1 (the call that had begun); it must be listed by that call or later */
        if (last_report[p] < e - 1 || last_report[p] == 0)
            fail_msg("page %lu: written after call %lu began, last listed by call %lu", (unsigned long)p,
                     (unsigned long)(e - 1), (unsigned long)last_report[p]);
    }
    fprintf(stderr, "race: %lu calls, %lu pages written, none lost\n", (unsigned long)k, written);
    assert_true(written > RACE_PAGES / 2);
    check_map();
    release(race_base);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_mechanism),
        cmocka_unit_test(test_exact),
        cmocka_unit_test(test_reset),
        cmocka_unit_test(test_count_limit),
        cmocka_unit_test(test_decommit_recommit),
        cmocka_unit_test(test_several_regions),
        cmocka_unit_test(test_c_api),
        cmocka_unit_test(test_faults),
        cmocka_unit_test(test_race),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
