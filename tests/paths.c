/* paths.c — paths no other test exercises:
 *   - every hm_heap_* call after hm_manager_shutdown and in the failed state (SPEC 3.4): the status,
 *     out-pointers NULL, nothing charged, and destroy still frees everything;
 *   - the heap.guard option (heap.h): the page that closes every segment is never committed and an
 *     overrun into it faults (in a forked child), while alloc/free/realloc and the statistics work;
 *   - notification callbacks that call back into the manager while two threads allocate under a
 *     tight limit, so that the state flips Low/High again and again (SPEC 3.5): no deadlock, every
 *     change delivered once to each callback, in order, and the books exact afterwards;
 *   - hm_vm_walk and hm_heap_sites while other threads allocate, free and protect: every record
 *     self-consistent, and exact once the writers stop.
 * Cases that could hang (a corrupted heap) run in a forked child with an alarm.
 * Label threads: `make tsan` runs it under ThreadSanitizer too (fewer rounds there). */
#define _GNU_SOURCE
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "heap/heap_internal.h"
#include "heap_testutil.h"
#include "os/os.h"

#define UNDER_TSAN (!KERNEL_CHECK)
#define KiB ((size_t)1024)
#define MiB ((size_t)1 << 20)
#define PAGE64K ((uintptr_t)64 << 10)

/* ---- helpers ---------------------------------------------------------------------------------- */

/* Runs fn(arg) in a forked child that dies after `seconds`; returns its wait status. The child
 * leaves through _exit with fn's result (cmocka's assertions must not run there: they would go on
 * with the parent's remaining tests in the child). */
static int in_child(int (*fn)(void *arg), void *arg, unsigned seconds)
{
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        alarm(seconds);
        _exit(fn(arg));
    }
    int ws = 0;
    assert_int_equal(waitpid(pid, &ws, 0), pid);
    return ws;
}

static size_t baseline_allocations(void)
{
    hm_vm_stats vs;
    hm_vm_get_stats(&vs);
    return vs.allocations;
}

/* A fake /proc (all of its 1 GiB available) and an empty cgroup tree, so that the system's pressure
 * never moves the memory state: only the managers' own charge does. */
static char root[256];

static int group_setup(void **state)
{
    (void)state;
    return tu_tree_make(root, sizeof root, "paths", "MemTotal:       1048576 kB\nMemFree:        1048576 kB\nMemAvailable:   1048576 kB\n");
}

static int group_teardown(void **state) { return (void)state, tu_tree_remove(root); }

/* ==== 1. hm_heap_* in a manager that no longer runs (SPEC 3.4) ================================== */

/* Debug sites as hm_heap_sites reports them. */
typedef struct site_list {
    int n;
    hm_heap_site s[16];
    char file[16][64];
} site_list;

static void collect_site(const hm_heap_site *site, void *arg)
{
    site_list *l = arg;
    if (l->n < 16) {
        l->s[l->n] = *site;
        snprintf(l->file[l->n], sizeof l->file[0], "%s", site->file ? site->file : "(null)");
        l->s[l->n].file = l->file[l->n];
        l->n++;
    }
}

static void assert_sites_equal(const site_list *a, const site_list *b)
{
    assert_int_equal(a->n, b->n);
    for (int i = 0; i < a->n; i++) {
        assert_string_equal(a->file[i], b->file[i]);
        assert_int_equal(a->s[i].line, b->s[i].line);
        assert_int_equal(a->s[i].live_bytes, b->s[i].live_bytes);
        assert_int_equal(a->s[i].live_blocks, b->s[i].live_blocks);
        assert_int_equal(a->s[i].total_blocks, b->s[i].total_blocks);
    }
}

/* What a heap holds while its manager stops: one block of each kind, with known contents. */
typedef struct held {
    hm_heap *h;
    unsigned char *small, *large, *debug, *aligned;
    size_t small_usable, large_usable, debug_usable, aligned_usable;
    hm_heap_stats stats;
    site_list sites;
    uint64_t charge;
} held;

#define SMALL_SIZE 100
#define LARGE_SIZE 70000 /* a large block reserves twice its committed size: room to grow in place */

static void hold(hm_manager *m, hm_heap *h, held *o)
{
    memset(o, 0, sizeof *o);
    o->h = h;
    void *p;
    assert_int_equal(hm_heap_alloc(h, SMALL_SIZE, HM_LEVEL_TASK, &p), HM_OK);
    o->small = p;
    assert_int_equal(hm_heap_alloc(h, LARGE_SIZE, HM_LEVEL_TASK, &p), HM_OK);
    o->large = p;
    assert_int_equal(hm_heap_alloc_debug(h, 40, HM_LEVEL_TASK, "paths.c", 7, &p), HM_OK);
    o->debug = p;
    assert_int_equal(hm_heap_alloc_aligned(h, 300, 1024, HM_LEVEL_TASK, &p), HM_OK);
    o->aligned = p;
    assert_int_equal((uintptr_t)o->aligned % 1024, 0);
    /* (through the writable alias: an executable heap may keep two views) */
    memset(hm_heap_writable(h, o->small), 0x11, SMALL_SIZE);
    memset(hm_heap_writable(h, o->large), 0x22, LARGE_SIZE);
    memset(hm_heap_writable(h, o->debug), 0x33, 40);
    memset(hm_heap_writable(h, o->aligned), 0x44, 300);
    o->small_usable = hm_heap_usable_size(h, o->small);
    o->large_usable = hm_heap_usable_size(h, o->large);
    o->debug_usable = hm_heap_usable_size(h, o->debug);
    o->aligned_usable = hm_heap_usable_size(h, o->aligned);
    assert_true(o->small_usable >= SMALL_SIZE && o->large_usable >= LARGE_SIZE && o->debug_usable >= 40 &&
                o->aligned_usable >= 300);
    o->stats = hstats(h);
    assert_int_equal(hm_heap_sites(h, collect_site, &o->sites), HM_OK);
    assert_int_equal(o->sites.n, 1);
    o->charge = tu_charge(m);
}

static void assert_contents(const held *o)
{
    for (size_t i = 0; i < SMALL_SIZE; i++) assert_int_equal(o->small[i], 0x11);
    for (size_t i = 0; i < LARGE_SIZE; i += 997) assert_int_equal(o->large[i], 0x22);
    for (size_t i = 0; i < 40; i++) assert_int_equal(o->debug[i], 0x33);
    for (size_t i = 0; i < 300; i++) assert_int_equal(o->aligned[i], 0x44);
}

/* A call that gives a block: HOST_E_CLRNOTAVAILABLE and *out NULL. */
#define REFUSED(call, out)                                                                                  \
    do {                                                                                                    \
        (out) = (void *)1;                                                                                  \
        hm_status st_ = (call);                                                                             \
        if (st_ != HM_E_HOST_CLRNOTAVAILABLE)                                                               \
            fail_msg("%s: %s = %#x (%s), expected HOST_E_CLRNOTAVAILABLE", why, #call, (unsigned)st_,       \
                     hm_status_name(st_));                                                                  \
        if ((out) != NULL) fail_msg("%s: %s left its out-pointer at %p, expected NULL", why, #call, (out)); \
    } while (0)

/* Usable size and writable alias of a held block while the manager is stopped: no crash, and either
 * the block as it was or nothing (neither has a status to say more). */
static void assert_usable_or_zero(hm_heap *h, const void *p, size_t usable, const char *why)
{
    size_t u = hm_heap_usable_size(h, p);
    if (u != 0 && u != usable) fail_msg("%s: usable size of %p = %zu, expected %zu or 0", why, p, u, usable);
    void *w = hm_heap_writable(h, p);
    if (u == 0 && w) fail_msg("%s: writable(%p) = %p although its usable size is 0", why, p, w);
}

/* Every hm_heap_* call on h, whose manager m is shut down or failed (SPEC 3.4: every later call is
 * HOST_E_CLRNOTAVAILABLE), except the reallocations that stay in place (test_realloc_in_place_stopped). */
static void assert_heap_stopped(hm_manager *m, const held *o, const char *why)
{
    hm_heap *h = o->h;
    void *q;
    REFUSED(hm_heap_alloc(h, 16, HM_LEVEL_PROCESS, &q), q);
    REFUSED(hm_heap_alloc(h, 0, HM_LEVEL_PROCESS, &q), q);
    REFUSED(hm_heap_alloc(h, SMALL_SIZE, HM_LEVEL_TASK, &q), q); /* (the class a thread cache may hold) */
    REFUSED(hm_heap_alloc(h, 1 << 20, HM_LEVEL_PROCESS, &q), q);
    REFUSED(hm_heap_calloc(h, 10, 10, HM_LEVEL_PROCESS, &q), q);
    REFUSED(hm_heap_calloc(h, 1, 200000, HM_LEVEL_PROCESS, &q), q);
    REFUSED(hm_heap_alloc_aligned(h, 100, 4096, HM_LEVEL_PROCESS, &q), q);
    REFUSED(hm_heap_alloc_debug(h, 100, HM_LEVEL_PROCESS, "paths.c", 8, &q), q);
    REFUSED(hm_heap_alloc_debug(h, 100000, HM_LEVEL_PROCESS, "paths.c", 9, &q), q);
    REFUSED(hm_heap_realloc(h, NULL, 64, HM_LEVEL_PROCESS, &q), q);
    REFUSED(hm_heap_realloc(h, o->small, 5000, HM_LEVEL_PROCESS, &q), q);  /* another class: a move */
    REFUSED(hm_heap_realloc(h, o->small, 100000, HM_LEVEL_PROCESS, &q), q); /* small to large */
    REFUSED(hm_heap_realloc(h, o->large, 4 << 20, HM_LEVEL_PROCESS, &q), q); /* past its room: a move */
    REFUSED(hm_heap_realloc(h, o->large, 64, HM_LEVEL_PROCESS, &q), q);     /* large to small: a move */
    unsigned char *blocks[4] = {o->small, o->large, o->debug, o->aligned};
    for (int i = 0; i < 4; i++) {
        hm_status st = hm_heap_free(h, blocks[i]);
        if (st != HM_E_HOST_CLRNOTAVAILABLE)
            fail_msg("%s: free of held block %d = %#x (%s), expected HOST_E_CLRNOTAVAILABLE", why, i, (unsigned)st,
                     hm_status_name(st));
    }
    int x;
    hm_status st = hm_heap_free(h, &x); /* not a block at all */
    if (st != HM_E_HOST_CLRNOTAVAILABLE) fail_msg("%s: free of a stack address = %#x", why, (unsigned)st);
    st = hm_heap_free(h, NULL); /* SPEC 4 says S_OK for NULL; SPEC 3.4 says every call refuses */
    if (st != HM_OK && st != HM_E_HOST_CLRNOTAVAILABLE) fail_msg("%s: free(NULL) = %#x", why, (unsigned)st);
    st = hm_heap_trim(h);
    if (st != HM_E_HOST_CLRNOTAVAILABLE) fail_msg("%s: trim = %#x, expected HOST_E_CLRNOTAVAILABLE", why, (unsigned)st);
    assert_usable_or_zero(h, o->small, o->small_usable, why);
    assert_usable_or_zero(h, o->large, o->large_usable, why);
    assert_usable_or_zero(h, o->debug, o->debug_usable, why);
    assert_usable_or_zero(h, o->aligned, o->aligned_usable, why);
    /* Statistics and sites: reading them is harmless, so either refused (out zeroed, fn not called)
     * or exactly what the heap held. */
    hm_heap_stats s;
    memset(&s, 0xa5, sizeof s);
    st = hm_heap_get_stats(h, &s);
    if (st == HM_OK) {
        assert_memory_equal(&s, &o->stats, sizeof s);
    } else if (st != HM_E_HOST_CLRNOTAVAILABLE) {
        fail_msg("%s: get_stats = %#x", why, (unsigned)st);
    }
    site_list sl = {0};
    st = hm_heap_sites(h, collect_site, &sl);
    if (st == HM_OK) assert_sites_equal(&sl, &o->sites);
    else if (st != HM_E_HOST_CLRNOTAVAILABLE || sl.n) fail_msg("%s: sites = %#x, %d sites", why, (unsigned)st, sl.n);
    /* no new heaps, nothing charged, nothing moved */
    hm_heap *nh = (hm_heap *)1;
    assert_int_equal(hm_heap_create(m, HM_HEAP_THREADSAFE, &nh), HM_E_HOST_CLRNOTAVAILABLE);
    assert_null(nh);
    assert_int_equal(tu_charge(m), o->charge);
    assert_contents(o); /* still mapped: the runtime may touch its memory (SPEC 3.4) */
}

/* Destroying the heap after the manager stopped gives back everything: no charge, no address
 * space (but `left` bytes of the manager's own, committed), no allocation of the manager left in the
 * map once the manager goes. */
static void destroy_stopped(hm_manager *m, hm_heap *h, void *seg_block, size_t allocs_before, uint64_t left)
{
    assert_int_equal(hm_heap_destroy(h), HM_OK);
    hm_manager_stats s = tu_stats(m);
    assert_int_equal(s.charge, left);
    assert_int_equal(s.va_used, left);
    hm_region r;
    assert_int_equal(hm_virtual_query(NULL, seg_block, &r), HM_OK); /* (the default manager: m answers no more) */
    assert_int_equal(r.state, HM_MEM_FREE);
    destroy_mgr(m);
    assert_int_equal(baseline_allocations(), allocs_before);
    check_books();
}

static const uint32_t heap_kinds[] = {0, HM_HEAP_THREADSAFE, HM_HEAP_THREADSAFE | HM_HEAP_EXECUTABLE};

/* SPEC 3.4: after shutdown every heap call is HOST_E_CLRNOTAVAILABLE; destroy frees everything. */
static void test_heap_after_shutdown(void **state)
{
    (void)state;
    for (size_t k = 0; k < sizeof heap_kinds / sizeof heap_kinds[0]; k++) {
        size_t before = baseline_allocations();
        hm_manager *m = make("limit=64M");
        hm_heap *h = mk_heap(m, heap_kinds[k]);
        held o;
        hold(m, h, &o);
        /* blocks of the thread's cache: the fast paths must look at the manager too */
        void *warm;
        assert_int_equal(hm_heap_alloc(h, SMALL_SIZE, HM_LEVEL_TASK, &warm), HM_OK);
        assert_int_equal(hm_heap_free(h, warm), HM_OK);
        o.stats = hstats(h);
        o.charge = tu_charge(m);
        assert_int_equal(hm_manager_shutdown(m), HM_OK);
        assert_int_equal(tu_stats(m).state, HM_MANAGER_SHUT_DOWN);
        char why[64];
        snprintf(why, sizeof why, "heap flags %#x after shutdown", heap_kinds[k]);
        assert_heap_stopped(m, &o, why);
        destroy_stopped(m, h, o.small, before, 0);
    }
}

/* The failed state (SPEC 3.4), reached through the platform seam: a VirtualProtect whose mprotect
 * fails and whose rollback fails too is E_FAIL, and the manager answers nothing more. */
static void fail_manager(hm_manager *m)
{
    void *p;
    assert_int_equal(hm_virtual_alloc(m, NULL, 64 * KiB, HM_MEM_RESERVE | HM_MEM_COMMIT, HM_PAGE_READWRITE, &p), HM_OK);
    uint32_t old = 0;
    hm_os_fault_inject(HM_OS_MPROTECT, 1, ENOMEM, true);
    hm_status st = hm_virtual_protect(m, p, 4096, HM_PAGE_READONLY, &old);
    hm_os_fault_clear();
    if (st != HM_E_FAIL) fail_msg("protect with mprotect failing for good = %#x (%s), expected E_FAIL", (unsigned)st, hm_status_name(st));
    assert_int_equal(tu_stats(m).state, HM_MANAGER_FAILED);
}

static void test_heap_failed_manager(void **state)
{
    (void)state;
    for (size_t k = 0; k < sizeof heap_kinds / sizeof heap_kinds[0]; k++) {
        size_t before = baseline_allocations();
        hm_manager *m = make("limit=64M");
        hm_heap *h = mk_heap(m, heap_kinds[k]);
        held o;
        hold(m, h, &o);
        uint64_t c0 = tu_charge(m);
        fail_manager(m);
        o.charge = tu_charge(m);
        assert_int_equal(o.charge, c0 + 64 * KiB); /* fail_manager's region: the failed protect changed nothing */
        char why[64];
        snprintf(why, sizeof why, "heap flags %#x, manager failed", heap_kinds[k]);
        assert_heap_stopped(m, &o, why);
        assert_int_equal(hm_manager_shutdown(m), HM_E_HOST_CLRNOTAVAILABLE);
        assert_int_equal(hm_heap_destroy(h), HM_OK);
        assert_int_equal(tu_charge(m), 64 * KiB); /* the heap's part came back; the region goes with m */
        hm_region r;
        assert_int_equal(hm_virtual_query(NULL, o.small, &r), HM_OK);
        assert_int_equal(r.state, HM_MEM_FREE);
        destroy_mgr(m);
        assert_int_equal(baseline_allocations(), before);
        check_books();
    }
}

/* A reallocation that would stay in place (a shrink within the block, or a large block that grows
 * within its reservation) is refused after shutdown or failure like any other call: it once answered
 * S_OK, and the growth committed (and charged) pages of a stopped manager. */
static void test_realloc_in_place_stopped(void **state)
{
    (void)state;
    for (int failed_state = 0; failed_state < 2; failed_state++)
        for (size_t k = 0; k < sizeof heap_kinds / sizeof heap_kinds[0]; k++) {
            size_t before = baseline_allocations();
            hm_manager *m = make("limit=64M");
            hm_heap *h = mk_heap(m, heap_kinds[k]);
            held o;
            hold(m, h, &o);
            if (failed_state) {
                fail_manager(m);
                o.charge = tu_charge(m);
            } else {
                assert_int_equal(hm_manager_shutdown(m), HM_OK);
            }
            const char *why = failed_state ? "realloc in a failed manager" : "realloc after shutdown";
            void *q;
            REFUSED(hm_heap_realloc(h, o.small, SMALL_SIZE - 8, HM_LEVEL_PROCESS, &q), q); /* same class */
            REFUSED(hm_heap_realloc(h, o.large, LARGE_SIZE - 4096, HM_LEVEL_PROCESS, &q), q); /* shrink */
            REFUSED(hm_heap_realloc(h, o.large, LARGE_SIZE + 30000, HM_LEVEL_PROCESS, &q), q); /* grow in place */
            int x;
            REFUSED(hm_heap_realloc(h, &x, 10, HM_LEVEL_PROCESS, &q), q); /* not a block */
            assert_int_equal(tu_charge(m), o.charge);
            destroy_stopped(m, h, o.small, before, failed_state ? 64 * KiB : 0); /* (fail_manager's region) */
        }
}

/* ---- corrupted heap metadata (SPEC 3.4: E_FAIL, then failed) ---------------------------------- */

/* Child exit codes of the corruption cases. */
enum { CH_OK = 0, CH_SETUP = 10, CH_WRONG_STATUS, CH_NOT_FAILED, CH_STILL_ANSWERS };

/* The free bit of the live block b set, as a stray write over the segment header would. */
static void corrupt_free_bit(uintptr_t b)
{
    hm_hpage *pg = hm_page_of(b);
    uint32_t i = (uint32_t)((b - hm_page_addr(pg)) / pg->block_size);
    pg->fbits[i / 64] |= (uint64_t)1 << (i % 64);
}

static int corrupt_single_threaded(void *arg)
{
    (void)arg;
    hm_manager *m;
    hm_heap *h;
    void *c;
    if (hm_manager_create("limit=64M", &m) || hm_heap_create(m, 0, &h)) return CH_SETUP;
    /* Past a bin's worth of 64-byte blocks freed, the oldest go back to their page's free bits (page.c,
     * hm_heap_bin_flush), which the next refills of the bin scan; p[0] stays live, its bit set. */
    enum { N = 400 };
    static void *p[N];
    for (int i = 0; i < N; i++)
        if (hm_heap_alloc(h, 64, HM_LEVEL_TASK, &p[i])) return CH_SETUP;
    for (int i = 1; i < N; i++)
        if (hm_heap_free(h, p[i])) return CH_SETUP;
    corrupt_free_bit((uintptr_t)p[0]);
    for (int i = 0; i < 4 * N; i++) { /* until a refill meets the bit: that allocation says E_FAIL */
        hm_status st = hm_heap_alloc(h, 64, HM_LEVEL_TASK, &c);
        if (st == HM_E_FAIL) break;
        if (st) return CH_WRONG_STATUS;
        if (c == p[0]) return CH_WRONG_STATUS; /* handed out twice */
        if (i == 4 * N - 1) return CH_WRONG_STATUS;
    }
    hm_manager_stats s;
    if (hm_manager_get_stats(m, &s) || s.state != HM_MANAGER_FAILED) return CH_NOT_FAILED;
    if (hm_heap_alloc(h, 64, HM_LEVEL_TASK, &c) != HM_E_HOST_CLRNOTAVAILABLE) return CH_STILL_ANSWERS;
    return CH_OK;
}

/* An allocation from a single-threaded heap (or any debug allocation, both served from the heap's own
 * page lists) whose refill meets a free bit set on a live block returns E_FAIL and fails the manager
 * (SPEC 3.4) instead of handing the block out twice. */
static void test_corrupt_free_bits_single_threaded(void **state)
{
    (void)state;
    int ws = in_child(corrupt_single_threaded, NULL, UNDER_TSAN ? 30 : 10);
    if (WIFSIGNALED(ws) && WTERMSIG(ws) == SIGALRM) fail_msg("the allocation that met the corrupted bit never returned");
    if (!WIFEXITED(ws)) fail_msg("the child died of signal %d", WTERMSIG(ws));
    if (WEXITSTATUS(ws) != CH_OK) fail_msg("child: case %d failed (10 setup, 11 not E_FAIL, 12 not failed, 13 still answers)", WEXITSTATUS(ws));
}

static int corrupt_thread_cached(void *arg)
{
    (void)arg;
    hm_manager *m;
    hm_heap *h;
    if (hm_manager_create("limit=64M", &m) || hm_heap_create(m, HM_HEAP_THREADSAFE, &h)) return CH_SETUP;
    /* A page of 16-byte blocks keeps its free bits in its own first 512 bytes (heap.h, fbits): an
     * underflow of its first block writes over them. Fill and empty this thread's cache past its
     * capacity, so that the refills scan the page's bits again from its first word. */
    enum { N = 400 };
    static void *p[N];
    for (int i = 0; i < N; i++)
        if (hm_heap_alloc(h, 16, HM_LEVEL_TASK, &p[i])) return CH_SETUP;
    for (int i = 0; i < N; i++)
        if (hm_heap_free(h, p[i])) return CH_SETUP;
    hm_hpage *pg = hm_page_of((uintptr_t)p[0]);
    if (pg->first == 0 || (uintptr_t)pg->fbits != hm_page_addr(pg)) return CH_SETUP;
    memset((void *)hm_page_addr(pg), 0xff, 16); /* the program's stray write: bits of blocks 0..31 (the bitmap's own room) */
    for (int i = 0; i < 4 * N; i++) { /* take blocks until a refill meets the bits */
        void *q;
        hm_status st = hm_heap_alloc(h, 16, HM_LEVEL_TASK, &q);
        hm_manager_stats s;
        if (hm_manager_get_stats(m, &s)) return CH_SETUP;
        if (s.state == HM_MANAGER_FAILED) return st == HM_E_FAIL ? CH_OK : CH_WRONG_STATUS;
        if (st) return CH_WRONG_STATUS;
        if ((uintptr_t)q < hm_page_addr(pg) + 512 && (uintptr_t)q >= hm_page_addr(pg)) return CH_WRONG_STATUS; /* its bitmap handed out */
    }
    return CH_NOT_FAILED;
}

/* In a thread-safe heap, the cache refill that meets free bits overwritten fails the manager and its
 * allocation returns E_FAIL (SPEC 3.4); none of the bitmap's own bytes is handed out as a block. */
static void test_corrupt_free_bits_thread_cached(void **state)
{
    (void)state;
    int ws = in_child(corrupt_thread_cached, NULL, UNDER_TSAN ? 30 : 10);
    if (WIFSIGNALED(ws)) fail_msg("the child died of signal %d", WTERMSIG(ws));
    if (WEXITSTATUS(ws) != CH_OK)
        fail_msg("child: case %d (10 setup, 11 the call that failed the manager did not return E_FAIL, 12 never failed)",
                 WEXITSTATUS(ws));
}

/* A page of 16-byte blocks keeps its free bits in its first 512 bytes (heap.h, fbits): none of them is
 * ever handed out, a Free of any of their addresses is refused without changing the books, and the
 * page's other 4064 blocks all serve. Both heap kinds. */
static void test_free_bits_room_never_a_block(void **state)
{
    (void)state;
    for (int k = 0; k < 2; k++) {
        hm_manager *m = make("limit=64M");
        hm_heap *h = mk_heap(m, k ? HM_HEAP_THREADSAFE : 0);
        enum { N = 4064 + 100 }; /* a page's blocks and some of the next page's */
        static void *p[N];
        for (int i = 0; i < N; i++) {
            assert_int_equal(hm_heap_alloc(h, 16, HM_LEVEL_TASK, &p[i]), HM_OK);
            uintptr_t off = (uintptr_t)p[i] & (HM_HPAGE_SIZE - 1);
            if (off < 512) fail_msg("block %p lies in its page's free bits (offset %lu)", p[i], (unsigned long)off);
        }
        hm_hpage *pg = hm_page_of((uintptr_t)p[0]);
        assert_int_equal(pg->first, 32);
        assert_int_equal((uintptr_t)pg->fbits, hm_page_addr(pg));
        hm_heap_stats before = hstats(h);
        uint64_t charge = tu_charge(m);
        for (uintptr_t a = hm_page_addr(pg); a < hm_page_addr(pg) + 512; a += 16) {
            assert_int_equal(hm_heap_free(h, (void *)a), HM_E_HOST_INVALIDOPERATION);
            assert_int_equal(hm_heap_usable_size(h, (void *)a), 0);
        }
        hm_heap_stats after = hstats(h);
        assert_int_equal(after.live_blocks, before.live_blocks);
        assert_int_equal(tu_charge(m), charge);
        for (int i = 0; i < N; i++) assert_int_equal(hm_heap_free(h, p[i]), HM_OK);
        assert_int_equal(hstats(h).live_blocks, 0);
        assert_int_equal(hm_heap_destroy(h), HM_OK);
        assert_int_equal(hm_manager_destroy(m), HM_OK);
    }
}

/* ==== 2. heap.guard ============================================================================= */

#define GBLOCK ((size_t)32 << 10) /* the largest class: two blocks per 64 KiB page */

/* A write at p from a forked child: what becomes of the child. */
static int write_at(void *p)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = SIG_DFL;
    sigaction(SIGSEGV, &sa, NULL); /* not cmocka's handler (nor hostmem's): the fault must kill */
    sigaction(SIGBUS, &sa, NULL);
    *(volatile unsigned char *)p = 1;
    return 42; /* the write went through */
}

static void guard_case(uint32_t flags)
{
    hm_manager *m = make("limit=64M,heap.guard=on");
    hm_heap *h = mk_heap(m, flags);
    enum { N = 130 }; /* 62 pages of 2 blocks fill a segment: a second one is started */
    static unsigned char *b[N];
    uintptr_t seg_end_block = 0;
    for (int i = 0; i < N; i++) {
        void *p;
        assert_int_equal(hm_heap_alloc(h, GBLOCK, HM_LEVEL_TASK, &p), HM_OK);
        b[i] = p;
        memset(b[i], (i + 1) & 0xff, GBLOCK);
        uintptr_t seg = (uintptr_t)p & ~(uintptr_t)(HM_SEG_SIZE - 1);
        uintptr_t guard = seg + HM_SEG_SIZE - PAGE64K;
        assert_true((uintptr_t)p + GBLOCK <= guard); /* no block reaches into the guard page */
        if ((uintptr_t)p + GBLOCK == guard) seg_end_block = (uintptr_t)p;
    }
    assert_true(seg_end_block != 0); /* the full segment's last block ends at its guard */
    hm_heap_stats s = hstats(h);
    assert_int_equal(s.live_blocks, N);
    assert_int_equal(s.live_bytes, (uint64_t)N * GBLOCK);
    assert_int_equal(s.segments, 2);
    assert_true(s.committed_pages <= s.segments * (HM_SEG_PAGES - 1)); /* never a guard page */
    assert_int_equal(tu_charge(m), heap_charge(h));
    /* The guard: reserved, and no access at all (not even the zeros of readable segments). */
    uintptr_t guard = seg_end_block + GBLOCK;
    hm_region r;
    assert_int_equal(hm_virtual_query(m, (void *)guard, &r), HM_OK);
    assert_int_equal(r.state, HM_MEM_RESERVE);
    assert_int_equal(r.size, PAGE64K);
    assert_int_equal(tu_readable((void *)guard), 0);
    assert_int_equal(tu_writable((void *)guard), 0);
    assert_int_equal(tu_writable((void *)(guard - 1)), 1); /* the block's last byte is the program's */
    /* a linear overrun of the block by one byte kills the process */
    int ws = in_child(write_at, (void *)guard, 10);
    if (WIFEXITED(ws) && WEXITSTATUS(ws) == 42) fail_msg("a write one byte past the segment's last block went through");
    if (WIFSIGNALED(ws) && WTERMSIG(ws) != SIGSEGV && WTERMSIG(ws) != SIGBUS)
        fail_msg("the overrun killed the child with signal %d, expected SIGSEGV", WTERMSIG(ws));
    /* (a sanitizer's handler may report the SEGV and exit with its own status instead) */
    assert_false(WIFEXITED(ws) && WEXITSTATUS(ws) == 0);

    /* alloc/free/realloc across the guard's segments keep blocks and contents */
    void *q;
    assert_int_equal(hm_heap_realloc(h, b[0], 200000, HM_LEVEL_TASK, &q), HM_OK); /* to a large block */
    for (size_t i = 0; i < GBLOCK; i += 511) assert_int_equal(((unsigned char *)q)[i], 1);
    b[0] = q;
    assert_int_equal(hm_heap_realloc(h, b[0], 100, HM_LEVEL_TASK, &q), HM_OK); /* back to a small one */
    for (size_t i = 0; i < 100; i++) assert_int_equal(((unsigned char *)q)[i], 1);
    b[0] = q;
    assert_int_equal(hm_heap_calloc(h, 3, 1000, HM_LEVEL_TASK, &q), HM_OK);
    for (size_t i = 0; i < 3000; i++) assert_int_equal(((unsigned char *)q)[i], 0);
    assert_int_equal(hm_heap_free(h, q), HM_OK);
    for (int i = 1; i < N; i++) {
        assert_int_equal(b[i][GBLOCK - 1], (i + 1) & 0xff);
        assert_int_equal(hm_heap_free(h, b[i]), HM_OK);
    }
    s = hstats(h);
    assert_int_equal(s.live_blocks, 1);
    assert_int_equal(s.live_bytes, hm_heap_usable_size(h, b[0]));
    assert_int_equal(hm_heap_free(h, b[0]), HM_OK);
    assert_int_equal(hm_heap_trim(h), HM_OK);
    s = hstats(h);
    assert_int_equal(s.live_blocks, 0);
    assert_int_equal(s.live_bytes, 0);
    assert_int_equal(s.large_bytes, 0);
    assert_int_equal(tu_charge(m), heap_charge(h));
    if (!(flags & HM_HEAP_THREADSAFE)) assert_int_equal(s.committed_pages, s.segments); /* headers only */
    /* A page given back is reserved again and faults (no zeros: h is not readable with guards). */
    uintptr_t seg = seg_end_block & ~(uintptr_t)(HM_SEG_SIZE - 1);
    for (uintptr_t at = seg + PAGE64K; at < seg + HM_SEG_SIZE; at += PAGE64K) {
        assert_int_equal(hm_virtual_query(m, (void *)at, &r), HM_OK);
        if (r.state == HM_MEM_RESERVE) assert_int_equal(tu_readable((void *)at), 0);
    }
    check_books();
    destroy_heap(h);
    assert_int_equal(tu_charge(m), 0);
    destroy_mgr(m);
}

static void test_guard_single_threaded(void **state)
{
    (void)state;
    guard_case(0);
}

static void test_guard_thread_safe(void **state)
{
    (void)state;
    guard_case(HM_HEAP_THREADSAFE);
}

/* ==== 3. callbacks that call back into the manager under a flipping state (SPEC 3.5) ============ */

#define NLOG 8192
#define NWRITERS 2
#define CHUNK (256 * KiB)
#define NCHUNKS 7 /* two writers at 7 x 256 KiB = 3.5 MiB of a 4 MiB limit: 87% >= notify.high */

typedef struct nlog {
    _Atomic int n;         /* deliveries so far (stored after the entries: release) */
    int states[NLOG];
    uint64_t seq[NLOG];    /* the order of each delivery among all callbacks' */
    pthread_t thread;
    _Atomic uint64_t refused, allocated;
} nlog;

static struct {
    hm_manager *m;
    hm_heap *h;
    nlog log[2];
    _Atomic uint64_t seq;
    _Atomic bool stop;      /* a writer gave up: the others stop too */
    _Atomic bool heap_gone; /* callbacks leave h alone from then on (it is about to be destroyed) */
    _Atomic bool token;     /* set by writer 0 twice a round: the next callback may change the charge */
    _Atomic uint64_t charging_calls;
    pthread_barrier_t phase;
} nt;
static _Thread_local bool on_writer; /* set by the allocating threads: callbacks never run there */

static void reenter(hm_memory_state s, void *arg)
{
    nlog *l = arg;
    int k = atomic_load_explicit(&l->n, memory_order_relaxed);
    if (k < NLOG) {
        l->states[k] = (int)s;
        l->seq[k] = atomic_fetch_add(&nt.seq, 1);
    }
    if (k == 0) l->thread = pthread_self();
    else if (!pthread_equal(l->thread, pthread_self())) record_failure("callback %d: on another thread", k);
    if (on_writer) record_failure("callback %d: on an allocating thread", k);
    if (s != HM_MEMORY_LOW && s != HM_MEMORY_NEUTRAL && s != HM_MEMORY_HIGH) record_failure("callback: state %d", (int)s);
    /* Back into the manager: VirtualAlloc, a query, VirtualFree, the load, a heap, the statistics.
     * Only a callback that got the writers' token changes the charge (commits, heap blocks): with the
     * load within 64 KiB of a threshold, a commit and its release are two changes of their own, each
     * calling both callbacks again, and the storm would never end (the writers wait for it, pace). */
    bool charging = atomic_exchange(&nt.token, false) && !atomic_load(&nt.heap_gone);
    if (charging) atomic_fetch_add(&nt.charging_calls, 1);
    void *p;
    hm_status st = hm_virtual_alloc(nt.m, NULL, 64 * KiB, HM_MEM_RESERVE | (charging ? HM_MEM_COMMIT : 0),
                                    HM_PAGE_READWRITE, &p);
    if (st == HM_OK) {
        if (charging) memset(p, 0x5a, 64 * KiB);
        hm_region r;
        st = hm_virtual_query(nt.m, p, &r);
        if (st || r.state != (charging ? HM_MEM_COMMIT : HM_MEM_RESERVE) || r.protect != (charging ? HM_PAGE_READWRITE : 0) ||
            r.size != 64 * KiB)
            record_failure("callback: query = %#x, state %#x protect %#x size %zu", (unsigned)st, r.state, r.protect, r.size);
        if ((st = hm_release(nt.m, p))) record_failure("callback: release = %#x", (unsigned)st);
        if (charging) atomic_fetch_add(&l->allocated, 1);
    } else if (st == HM_E_COMMITMENT_LIMIT) {
        atomic_fetch_add(&l->refused, 1);
    } else {
        record_failure("callback: VirtualAlloc = %#x: %s", (unsigned)st, hm_last_detail());
    }
    uint32_t load = 101;
    uint64_t avail = 0;
    st = hm_manager_get_memory_load(nt.m, &load, &avail);
    if (st || load > 100 || avail > 4 * MiB) record_failure("callback: memory load = %#x, %u%%, %" PRIu64, (unsigned)st, load, avail);
    for (size_t size = 200; charging && size <= 50000; size += 49800) { /* a small block, a large one */
        void *q = NULL;
        st = hm_heap_alloc(nt.h, size, HM_LEVEL_PROCESS, &q);
        if (st == HM_OK) {
            memset(q, 1, size);
            if ((st = hm_heap_free(nt.h, q))) record_failure("callback: heap free = %#x", (unsigned)st);
        } else if (st != HM_E_COMMITMENT_LIMIT || q) {
            record_failure("callback: heap alloc(%zu) = %#x, %p", size, (unsigned)st, q);
        }
    }
    hm_manager_stats ms;
    if ((st = hm_manager_get_stats(nt.m, &ms)) || ms.charge > ms.limit)
        record_failure("callback: stats = %#x, charge %" PRIu64, (unsigned)st, ms.charge);
    atomic_store_explicit(&l->n, k + 1, memory_order_release);
}

static int delivered(int i) { return atomic_load_explicit(&nt.log[i].n, memory_order_acquire); }

/* Keeps the writers within a few changes of the deliveries, so that the notifier's queue (notify.h:
 * HM_NOTIFY_QUEUE, older changes dropped beyond it) never overflows and every change is seen. False
 * if the callbacks stopped making progress (a deadlock on the notification thread). */
static bool pace(void)
{
    double t0 = now_s();
    for (;;) {
        hm_manager_stats s; /* (no cmocka assertion off the main thread) */
        if (hm_manager_get_stats(nt.m, &s)) {
            record_failure("get_stats refused");
            return false;
        }
        uint64_t changes = s.state_changes;
        int d = delivered(0) < delivered(1) ? delivered(0) : delivered(1);
        if (changes < (uint64_t)d + 16) return true;
        if (now_s() - t0 > 30) {
            record_failure("deliveries stalled: %" PRIu64 " changes, %d delivered", changes, d);
            return false;
        }
        sleep_ms(1);
    }
}

typedef struct nwriter {
    int id, rounds;
    char *base;
    uint64_t refused;
} nwriter;

static void *notify_writer(void *arg)
{
    nwriter *w = arg;
    on_writer = true;
    for (int round = 0; round < w->rounds; round++) {
        bool go = !atomic_load(&nt.stop);
        for (int c = 0; go && c < NCHUNKS; c++) { /* up, chunk by chunk: High, Neutral, then Low */
            if (!pace()) {
                atomic_store(&nt.stop, true);
                break;
            }
            void *p;
            hm_status st = hm_virtual_alloc(nt.m, w->base + c * CHUNK, CHUNK, HM_MEM_COMMIT, HM_PAGE_READWRITE, &p);
            if (st == HM_E_COMMITMENT_LIMIT) w->refused++; /* (the callbacks' blocks took the room) */
            else if (st) record_failure("writer %d: commit = %#x: %s", w->id, (unsigned)st, hm_last_detail());
            else memset(p, w->id, 4096);
            void *q;
            st = hm_heap_alloc(nt.h, 64 + (size_t)c * 700, HM_LEVEL_TASK, &q);
            if (st == HM_OK) st = hm_heap_free(nt.h, q);
            if (st && st != HM_E_COMMITMENT_LIMIT) record_failure("writer %d: heap = %#x", w->id, (unsigned)st);
        }
        if (w->id == 0) atomic_store(&nt.token, true);
        pthread_barrier_wait(&nt.phase); /* both at the top: the load is over notify.high */
        if (go && pace()) {
            hm_status st = hm_decommit(nt.m, w->base, NCHUNKS * CHUNK); /* down at once */
            if (st) record_failure("writer %d: decommit = %#x", w->id, (unsigned)st);
        } else {
            atomic_store(&nt.stop, true);
        }
        if (w->id == 0) atomic_store(&nt.token, true);
        pthread_barrier_wait(&nt.phase); /* both at the bottom: High */
    }
    return NULL;
}

/* Waits until every change has reached both callbacks and nothing moves any more. */
static void until_quiet(void)
{
    double t0 = now_s();
    int stable = 0;
    uint64_t last = UINT64_MAX;
    while (stable < 5) {
        assert_true(now_s() - t0 < 60);
        uint64_t changes = tu_stats(nt.m).state_changes;
        bool done = changes == (uint64_t)delivered(0) && changes == (uint64_t)delivered(1);
        stable = done && changes == last ? stable + 1 : 0;
        last = changes;
        sleep_ms(20);
    }
}

static void test_callbacks_reenter_under_load(void **state)
{
    (void)state;
    memset(&nt, 0, sizeof nt);
    char opts[700];
    snprintf(opts, sizeof opts, "limit=4M,notify.low=40,notify.high=80,proc.root=%s/proc,cgroup.root=%s/cgroup", root, root);
    nt.m = make(opts);
    nt.h = mk_heap(nt.m, HM_HEAP_THREADSAFE);
    assert_int_equal(tu_stats(nt.m).memory_state, HM_MEMORY_HIGH);
    assert_int_equal(hm_manager_register_notification(nt.m, reenter, &nt.log[0]), HM_OK);
    assert_int_equal(hm_manager_register_notification(nt.m, reenter, &nt.log[1]), HM_OK);
    pthread_barrier_init(&nt.phase, NULL, NWRITERS);
    static nwriter w[NWRITERS];
    for (int i = 0; i < NWRITERS; i++) {
        w[i] = (nwriter){i, UNDER_TSAN ? 25 : 120, NULL, 0};
        void *base;
        assert_int_equal(hm_reserve(nt.m, NCHUNKS * CHUNK, &base), HM_OK);
        w[i].base = base;
    }
    pthread_t tw[NWRITERS];
    for (int i = 0; i < NWRITERS; i++) assert_int_equal(pthread_create(&tw[i], NULL, notify_writer, &w[i]), 0);
    for (int i = 0; i < NWRITERS; i++) pthread_join(tw[i], NULL);
    pthread_barrier_destroy(&nt.phase);
    assert_no_thread_failures();
    for (int i = 0; i < NWRITERS; i++) assert_int_equal(hm_release(nt.m, w[i].base), HM_OK);
    atomic_store(&nt.heap_gone, true);
    until_quiet(); /* no callback uses the heap any more */
    destroy_heap(nt.h); /* everything is given back */
    assert_int_equal(tu_charge(nt.m), 0);
    uint32_t load;
    assert_int_equal(hm_manager_get_memory_load(nt.m, &load, NULL), HM_OK);
    assert_int_equal(load, 0);
    until_quiet();
    assert_no_thread_failures();

    hm_manager_stats s = tu_stats(nt.m);
    int n = delivered(0);
    print_message("callbacks: %" PRIu64 " state changes over %d rounds; %" PRIu64 " callbacks allocated; their "
                  "commits %" PRIu64 " admitted, %" PRIu64 " refused; writers' commits refused %" PRIu64 "\n",
                  s.state_changes, w[0].rounds, nt.charging_calls, nt.log[0].allocated + nt.log[1].allocated,
                  nt.log[0].refused + nt.log[1].refused, w[0].refused + w[1].refused);
    assert_true(n <= NLOG);
    assert_int_equal(s.state_changes, n);                         /* every change delivered ... */
    assert_int_equal(delivered(1), n);
    assert_int_equal(s.notifications, 2 * (uint64_t)n); /* ... once to each callback */
    int prev = HM_MEMORY_HIGH;                           /* the state when the first was registered */
    int lows = 0, highs = 0;
    for (int k = 0; k < n; k++) {
        lows += nt.log[0].states[k] == HM_MEMORY_LOW;
        highs += nt.log[0].states[k] == HM_MEMORY_HIGH;
        if (nt.log[0].states[k] == prev) fail_msg("delivery %d repeats state %d: a change was lost", k, prev);
        prev = nt.log[0].states[k];
        assert_int_equal(nt.log[1].states[k], nt.log[0].states[k]); /* the same changes, in the same order */
        assert_true(nt.log[0].seq[k] < nt.log[1].seq[k]);           /* in registration order */
        if (k + 1 < n) assert_true(nt.log[1].seq[k] < nt.log[0].seq[k + 1]);
    }
    if (lows < w[0].rounds || highs < w[0].rounds) /* each round goes to Low at its top, to High at its bottom */
        fail_msg("%d rounds: only %d changes to Low and %d to High", w[0].rounds, lows, highs);
    assert_int_equal(s.memory_state, prev); /* the last delivered is the state now */
    assert_int_equal(s.memory_state, HM_MEMORY_HIGH); /* nothing charged: load 0 */
    assert_true(pthread_equal(nt.log[0].thread, nt.log[1].thread));
    assert_false(pthread_equal(nt.log[0].thread, pthread_self()));
    assert_int_equal(s.charge, 0);
    assert_int_equal(s.waiting, 0);
    check_books();
    destroy_mgr(nt.m);
}

/* ==== 4. hm_vm_walk and hm_heap_sites under concurrent writers ================================== */

#define WW 2              /* writers */
#define WPAGES 64         /* pages of a writer's region */
#define WSITES 4          /* debug sites per writer */
#define WLEFT 3           /* debug blocks each site keeps live at the end */
static const uint32_t wprots[] = {HM_PAGE_READWRITE, HM_PAGE_READONLY, HM_PAGE_NOACCESS, HM_PAGE_EXECUTE_READ};

static struct {
    hm_manager *m;
    hm_heap *h;
    _Atomic bool done;
    _Atomic uint64_t walks, sites_calls, regions_seen, sites_seen, walks_during;
} wt;

/* the size of a site's blocks, so that its live bytes check against its live blocks */
static size_t site_size(int line) { return 24 + (size_t)(line % 100) * 40; }
static int site_line(int writer, int k) { return 1000 * (writer + 1) + k; }

typedef struct walk_ctx {
    hm_region prev;
    size_t n;
    char what[200]; /* the first inconsistency */
} walk_ctx;

#define WALK_BAD(c, ...)                                                                   \
    do {                                                                                   \
        if (!(c)->what[0]) snprintf((c)->what, sizeof (c)->what, __VA_ARGS__);             \
        return 1;                                                                          \
    } while (0)

static bool valid_protect(uint32_t p)
{
    uint32_t base = p & 0xffu, mods = p & ~0xffu;
    return base && !(base & (base - 1)) && !(mods & ~(HM_PAGE_GUARD | HM_PAGE_NOCACHE | HM_PAGE_WRITECOMBINE));
}

/* One region of a walk (called under the map's lock: a consistent picture, so a query, which takes
 * no lock, must answer the same). */
static int walk_check(const hm_region *r, void *arg)
{
    walk_ctx *c = arg;
    uintptr_t b = (uintptr_t)r->base, ab = (uintptr_t)r->allocation_base;
    if (!r->size || r->size % 4096 || b % 4096) WALK_BAD(c, "region %p: size %zu", r->base, r->size);
    if (r->state != HM_MEM_COMMIT && r->state != HM_MEM_RESERVE) WALK_BAD(c, "region %p: state %#x", r->base, r->state);
    if (r->type != HM_MEM_PRIVATE) WALK_BAD(c, "region %p: type %#x", r->base, r->type);
    if (!ab || ab % (64 * 1024) || ab > b) WALK_BAD(c, "region %p: allocation base %p", r->base, r->allocation_base);
    if (r->state == HM_MEM_RESERVE && r->protect) WALK_BAD(c, "reserved region %p: protect %#x", r->base, r->protect);
    if (r->state == HM_MEM_COMMIT && !valid_protect(r->protect))
        WALK_BAD(c, "committed region %p: protect %#x", r->base, r->protect);
    if (r->partition_id) WALK_BAD(c, "region %p: partition %u", r->base, r->partition_id);
    if (c->n) {
        uintptr_t pend = (uintptr_t)c->prev.base + c->prev.size;
        if (b < pend) WALK_BAD(c, "region %p overlaps or precedes the previous one (ends %#lx)", r->base, (unsigned long)pend);
        if (r->allocation_base == c->prev.allocation_base) {
            if (b != pend) WALK_BAD(c, "region %p: a gap inside allocation %p", r->base, r->allocation_base);
            if (r->state == c->prev.state && r->protect == c->prev.protect)
                WALK_BAD(c, "region %p: same state and protection as the previous one", r->base);
        } else {
            if (b != ab) WALK_BAD(c, "region %p: allocation %p starts before it", r->base, r->allocation_base);
            hm_region e; /* the previous allocation was walked to its end */
            hm_status st = hm_virtual_query(wt.m, (void *)pend, &e);
            if (st == HM_OK && e.allocation_base == c->prev.allocation_base)
                WALK_BAD(c, "allocation %p continues at %#lx past its walked end", c->prev.allocation_base, (unsigned long)pend);
        }
    } else if (b != ab) {
        WALK_BAD(c, "first region %p is not its allocation's start %p", r->base, r->allocation_base);
    }
    hm_region q;
    hm_status st = hm_virtual_query(wt.m, r->base, &q);
    if (st || q.base != r->base || q.allocation_base != r->allocation_base || q.allocation_protect != r->allocation_protect ||
        q.size != r->size || q.state != r->state || q.protect != r->protect || q.type != r->type)
        WALK_BAD(c, "region %p: a query says %#x: %p size %zu state %#x protect %#x, the walk size %zu state %#x protect %#x",
                 r->base, (unsigned)st, q.base, q.size, q.state, q.protect, r->size, r->state, r->protect);
    c->prev = *r;
    c->n++;
    return 0;
}

typedef struct sites_ctx {
    uint64_t total[WW][WSITES]; /* the last total seen per site: it never goes down */
    bool seen[WW][WSITES];
    char what[200];
} sites_ctx;

static void sites_check(const hm_heap_site *s, void *arg)
{
    sites_ctx *c = arg;
    if (c->what[0]) return;
    int w = s->line / 1000 - 1, k = s->line % 1000;
    if (!s->file || strcmp(s->file, "paths-walk.c") || w < 0 || w >= WW || k < 0 || k >= WSITES) {
        snprintf(c->what, sizeof c->what, "a site %s:%d nobody made", s->file ? s->file : "(null)", s->line);
        return;
    }
    if (c->seen[w][k]) snprintf(c->what, sizeof c->what, "site %d reported twice", s->line);
    else if (s->live_blocks > s->total_blocks || s->live_blocks >= ((uint64_t)1 << 62))
        snprintf(c->what, sizeof c->what, "site %d: %" PRIu64 " live of %" PRIu64, s->line, s->live_blocks, s->total_blocks);
    else if (s->live_bytes != s->live_blocks * site_size(s->line))
        snprintf(c->what, sizeof c->what, "site %d: %" PRIu64 " live bytes in %" PRIu64 " blocks of %zu", s->line,
                 s->live_bytes, s->live_blocks, site_size(s->line));
    else if (s->total_blocks < c->total[w][k])
        snprintf(c->what, sizeof c->what, "site %d: total went down %" PRIu64 " -> %" PRIu64, s->line, c->total[w][k],
                 s->total_blocks);
    c->seen[w][k] = true;
    c->total[w][k] = s->total_blocks;
}

static void *walker(void *arg)
{
    (void)arg;
    sites_ctx sc;
    memset(&sc, 0, sizeof sc);
    for (uint64_t i = 0; !atomic_load(&wt.done) || i < 3; i++) {
        walk_ctx c;
        memset(&c, 0, sizeof c);
        hm_status st = hm_vm_walk(wt.m, walk_check, &c);
        if (st || c.what[0]) {
            record_failure("walk %" PRIu64 ": %#x %s", i, (unsigned)st, c.what);
            break;
        }
        atomic_fetch_add(&wt.regions_seen, c.n);
        atomic_fetch_add(&wt.walks, 1);
        if (!atomic_load(&wt.done)) atomic_fetch_add(&wt.walks_during, 1); /* the writers still ran */
        memset(sc.seen, 0, sizeof sc.seen);
        st = hm_heap_sites(wt.h, sites_check, &sc);
        if (st || sc.what[0]) {
            record_failure("sites %" PRIu64 ": %#x %s", i, (unsigned)st, sc.what);
            break;
        }
        for (int w = 0; w < WW; w++)
            for (int k = 0; k < WSITES; k++) atomic_fetch_add(&wt.sites_seen, sc.seen[w][k]);
        atomic_fetch_add(&wt.sites_calls, 1);
    }
    return NULL;
}

typedef struct wwriter {
    int id, ops;
    uint64_t rng;
    char *base;                 /* its region: WPAGES pages, reserved */
    uint32_t page[WPAGES];      /* the model: 0 reserved, else the protection it was committed with */
    void *blocks[32];
    int blocks_site[32];        /* the debug site of a block, or -1 */
    uint64_t site_total[WSITES], site_live[WSITES];
    void *final;                /* its allocation left for the exact walk */
    char failure[200];
} wwriter;

#define WFAIL(w, ...)                                                                         \
    do {                                                                                      \
        if (!(w)->failure[0]) snprintf((w)->failure, sizeof (w)->failure, __VA_ARGS__);        \
        return NULL;                                                                          \
    } while (0)

static void *walk_writer(void *arg)
{
    wwriter *w = arg;
    for (int i = 0; i < 32; i++) w->blocks_site[i] = -1;
    void *base;
    if (hm_reserve(wt.m, WPAGES * 4096, &base)) WFAIL(w, "writer %d: reserve", w->id);
    w->base = base;
    for (int op = 0; op < w->ops && !failed(); op++) {
        uint64_t r = next_rand(&w->rng);
        size_t p0 = (size_t)(r >> 8) % WPAGES, n = 1 + (size_t)(r >> 16) % 8;
        if (p0 + n > WPAGES) n = WPAGES - p0;
        uint32_t prot = wprots[(r >> 24) % 4];
        char *at = w->base + p0 * 4096;
        hm_status st = HM_OK;
        switch (r % 8) {
        case 0: case 1: /* commit */
            st = hm_commit(wt.m, at, n * 4096, prot);
            for (size_t k = 0; !st && k < n; k++) w->page[p0 + k] = prot;
            break;
        case 2: /* decommit */
            st = hm_decommit(wt.m, at, n * 4096);
            for (size_t k = 0; !st && k < n; k++) w->page[p0 + k] = 0;
            break;
        case 3: { /* protect a committed run */
            size_t k = 0;
            while (k < n && w->page[p0 + k]) k++;
            if (!k) break;
            uint32_t old;
            st = hm_virtual_protect(wt.m, at, k * 4096, prot, &old);
            if (!st && old != w->page[p0]) WFAIL(w, "writer %d: protect said old %#x, model %#x", w->id, old, w->page[p0]);
            for (size_t j = 0; !st && j < k; j++) w->page[p0 + j] = prot;
            break;
        }
        case 4: { /* the model against a query of its own region */
            hm_region q;
            st = hm_virtual_query(wt.m, at, &q);
            uint32_t want = w->page[p0];
            if (!st && (q.state != (want ? HM_MEM_COMMIT : HM_MEM_RESERVE) || q.protect != want))
                WFAIL(w, "writer %d: page %zu state %#x protect %#x, model %#x", w->id, p0, q.state, q.protect, want);
            break;
        }
        case 5: { /* release the region and start again */
            st = hm_release(wt.m, w->base);
            if (!st) st = hm_reserve(wt.m, WPAGES * 4096, &base);
            if (!st) w->base = base;
            memset(w->page, 0, sizeof w->page);
            break;
        }
        default: { /* heap blocks: debug ones of its sites, plain small and large ones */
            int slot = (int)((r >> 32) % 32);
            if (w->blocks[slot]) {
                st = hm_heap_free(wt.h, w->blocks[slot]);
                if (!st && w->blocks_site[slot] >= 0) w->site_live[w->blocks_site[slot]]--;
                w->blocks[slot] = NULL;
                w->blocks_site[slot] = -1;
            } else if ((r >> 40) % 2) {
                int k = (int)((r >> 44) % WSITES), line = site_line(w->id, k);
                st = hm_heap_alloc_debug(wt.h, site_size(line), HM_LEVEL_TASK, "paths-walk.c", line, &w->blocks[slot]);
                if (!st) {
                    w->blocks_site[slot] = k;
                    w->site_total[k]++;
                    w->site_live[k]++;
                }
            } else {
                st = hm_heap_alloc(wt.h, (r >> 44) % 3 ? 1 + (size_t)(r >> 48) % 2000 : 40000 + (size_t)(r >> 48) % 90000,
                                   HM_LEVEL_TASK, &w->blocks[slot]);
            }
            break;
        }
        }
        if (st) WFAIL(w, "writer %d op %d (kind %u): %#x %s", w->id, op, (unsigned)(r % 8), (unsigned)st, hm_last_detail());
    }
    /* the end: plain blocks freed, WLEFT live debug blocks per site, and one allocation of a known layout */
    for (int i = 0; i < 32; i++)
        if (w->blocks[i]) {
            if (hm_heap_free(wt.h, w->blocks[i])) WFAIL(w, "writer %d: final free", w->id);
            if (w->blocks_site[i] >= 0) w->site_live[w->blocks_site[i]]--;
            w->blocks[i] = NULL;
        }
    for (int k = 0; k < WSITES; k++)
        for (int j = 0; j < WLEFT; j++) {
            int line = site_line(w->id, k);
            if (hm_heap_alloc_debug(wt.h, site_size(line), HM_LEVEL_TASK, "paths-walk.c", line, &w->blocks[k * WLEFT + j]))
                WFAIL(w, "writer %d: final debug alloc", w->id);
            w->site_total[k]++;
            w->site_live[k]++;
        }
    if (hm_release(wt.m, w->base)) WFAIL(w, "writer %d: final release", w->id);
    void *f;
    if (hm_reserve(wt.m, 256 * KiB, &f) || hm_commit(wt.m, f, 64 * KiB, HM_PAGE_READWRITE) ||
        hm_commit(wt.m, (char *)f + 128 * KiB, 64 * KiB, HM_PAGE_READONLY))
        WFAIL(w, "writer %d: final layout", w->id);
    w->final = f;
    return NULL;
}

static int collect_region(const hm_region *r, void *arg) { return tu_snap_fn(r, arg); }
static int stop_after_two(const hm_region *r, void *arg)
{
    (void)r;
    return ++*(int *)arg == 2;
}
static int cmp_ptr(const void *a, const void *b)
{
    uintptr_t x = *(const uintptr_t *)a, y = *(const uintptr_t *)b;
    return x < y ? -1 : x > y;
}

static void test_walk_and_sites_concurrent(void **state)
{
    (void)state;
    memset(&wt, 0, sizeof wt);
    wt.m = make("limit=512M");
    wt.h = mk_heap(wt.m, HM_HEAP_THREADSAFE);
    static wwriter w[WW];
    pthread_t tw[WW], tr;
    for (int i = 0; i < WW; i++) {
        memset(&w[i], 0, sizeof w[i]);
        w[i].id = i;
        w[i].ops = UNDER_TSAN ? 3000 : 20000;
        w[i].rng = 0x9E3779B97F4A7C15ull * (uint64_t)(i + 1);
    }
    assert_int_equal(pthread_create(&tr, NULL, walker, NULL), 0);
    for (int i = 0; i < WW; i++) assert_int_equal(pthread_create(&tw[i], NULL, walk_writer, &w[i]), 0);
    for (int i = 0; i < WW; i++) pthread_join(tw[i], NULL);
    atomic_store(&wt.done, true);
    pthread_join(tr, NULL);
    for (int i = 0; i < WW; i++)
        if (w[i].failure[0]) fail_msg("%s", w[i].failure);
    assert_no_thread_failures();
    print_message("walk: %" PRIu64 " walks (%" PRIu64 " while the writers ran; %" PRIu64 " regions) and %" PRIu64
                  " site reads (%" PRIu64 " sites)\n",
                  wt.walks, wt.walks_during, wt.regions_seen, wt.sites_calls, wt.sites_seen);
    assert_true(wt.walks >= 3);

    /* Exact once the writers stopped: the sites ... */
    sites_ctx sc;
    memset(&sc, 0, sizeof sc);
    site_list sl = {0};
    assert_int_equal(hm_heap_sites(wt.h, collect_site, &sl), HM_OK);
    assert_int_equal(sl.n, WW * WSITES);
    for (int i = 0; i < sl.n; i++) {
        sites_check(&sl.s[i], &sc);
        int wi = sl.s[i].line / 1000 - 1, k = sl.s[i].line % 1000;
        assert_int_equal(sl.s[i].live_blocks, w[wi].site_live[k]);
        assert_int_equal(sl.s[i].live_blocks, WLEFT);
        assert_int_equal(sl.s[i].total_blocks, w[wi].site_total[k]);
    }
    if (sc.what[0]) fail_msg("%s", sc.what);
    hm_heap_stats hs = hstats(wt.h);
    assert_int_equal(hs.live_blocks, WW * WSITES * WLEFT);
    destroy_heap(wt.h); /* (reports the live debug blocks by site on stderr) */

    /* ... and the walk: each writer's final allocation, regions as laid out, in address order */
    static tu_snapshot snap;
    snap.n = 0;
    assert_int_equal(hm_vm_walk(wt.m, collect_region, &snap), HM_OK);
    assert_int_equal(snap.n, 4 * WW);
    uintptr_t bases[WW];
    for (int i = 0; i < WW; i++) bases[i] = (uintptr_t)w[i].final;
    qsort(bases, WW, sizeof bases[0], cmp_ptr);
    static const struct { size_t off; uint32_t state, protect; } lay[4] = {
        {0, HM_MEM_COMMIT, HM_PAGE_READWRITE}, {64 * KiB, HM_MEM_RESERVE, 0},
        {128 * KiB, HM_MEM_COMMIT, HM_PAGE_READONLY}, {192 * KiB, HM_MEM_RESERVE, 0}};
    for (size_t i = 0; i < snap.n; i++) {
        const hm_region *r = &snap.r[i];
        uintptr_t ab = bases[i / 4];
        assert_int_equal((uintptr_t)r->allocation_base, ab);
        assert_int_equal((uintptr_t)r->base, ab + lay[i % 4].off);
        assert_int_equal(r->size, 64 * KiB);
        assert_int_equal(r->state, lay[i % 4].state);
        assert_int_equal(r->protect, lay[i % 4].protect);
        assert_int_equal(r->allocation_protect, HM_PAGE_NOACCESS);
        assert_int_equal(r->type, HM_MEM_PRIVATE);
    }
    int calls = 0;
    assert_int_equal(hm_vm_walk(wt.m, stop_after_two, &calls), HM_OK); /* stops when fn says so */
    assert_int_equal(calls, 2);
    assert_int_equal(tu_charge(wt.m), 2 * 64 * KiB * WW);
    for (int i = 0; i < WW; i++) assert_int_equal(hm_release(wt.m, w[i].final), HM_OK);
    snap.n = 0;
    assert_int_equal(hm_vm_walk(wt.m, collect_region, &snap), HM_OK);
    assert_int_equal(snap.n, 0);
    assert_int_equal(tu_charge(wt.m), 0);
    check_books();
    destroy_mgr(wt.m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        /* the forks first, while this process has no other thread */
        cmocka_unit_test(test_guard_single_threaded),
        cmocka_unit_test(test_guard_thread_safe),
        cmocka_unit_test(test_corrupt_free_bits_single_threaded),
        cmocka_unit_test(test_corrupt_free_bits_thread_cached),
        cmocka_unit_test(test_free_bits_room_never_a_block),
        cmocka_unit_test(test_heap_after_shutdown),
        cmocka_unit_test(test_heap_failed_manager),
        cmocka_unit_test(test_realloc_in_place_stopped),
        cmocka_unit_test(test_callbacks_reenter_under_load),
        cmocka_unit_test(test_walk_and_sites_concurrent),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
