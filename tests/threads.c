/* threads.c — concurrency: workers reserving/committing/protecting/decommitting/releasing while readers query racing addresses (SPEC 2.2-2.5), and VirtualQuery never waiting on the writer lock (SPEC 1.2). */
#define _GNU_SOURCE
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "testutil.h"
#include "manager/manager.h"
#include "vmap/vmap.h"

#include <hostmem/win32.h>

/* The map's writer lock (src/vmap/vmap.c; hidden visibility, resolved from the static library). */
extern pthread_mutex_t hm_map_lock;

/* hm_vmap_check(true) looks up every 64 KiB granule of every kernel mapping, ThreadSanitizer's
 * terabytes of shadow included: minutes under TSan, so the kernel half of the check is skipped there. */

#define PAGE ((uintptr_t)4096)
#define GRAN ((uintptr_t)65536)

#define NWORKERS 4
#define NREADERS 2
#define ITERS 800            /* allocations per worker */
#define OPS 8                /* state changes per allocation */
#define MAX_PAGES 48         /* the largest allocation a worker makes: 48 pages */
#define MAX_BYTES ((uintptr_t)MAX_PAGES * PAGE)
#define READER_MIN 20000     /* queries per reader, at least */
#define READER_MAX 2000000   /* ... and at most (readers stop early when the workers are done) */

/* failures from any thread: record_failure and friends, testutil.h */


/* ---- random numbers --------------------------------------------------------------------------- */

static uint64_t rnd_next(uint64_t *s)
{
    uint64_t x = *s; /* xorshift64* */
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *s = x;
    return x * 0x2545F4914F6CDD1Dull;
}

static uint64_t rnd_below(uint64_t *s, uint64_t n) { return n ? rnd_next(s) % n : 0; }

static const uint32_t base_prots[] = {HM_PAGE_NOACCESS, HM_PAGE_READONLY, HM_PAGE_READWRITE,
                                      HM_PAGE_EXECUTE, HM_PAGE_EXECUTE_READ, HM_PAGE_EXECUTE_READWRITE};

static uint32_t rnd_prot(uint64_t *s) { return base_prots[rnd_below(s, sizeof base_prots / sizeof base_prots[0])]; }

static bool prot_is_base(uint32_t p)
{
    for (size_t i = 0; i < sizeof base_prots / sizeof base_prots[0]; i++)
        if (base_prots[i] == p) return true;
    return false;
}

/* Protections under which the test reads its pattern directly. */
static bool prot_readable(uint32_t p)
{
    return p == HM_PAGE_READONLY || p == HM_PAGE_READWRITE || p == HM_PAGE_EXECUTE_READ ||
           p == HM_PAGE_EXECUTE_READWRITE;
}

/* ---- what the workers publish for the readers ------------------------------------------------- */

/* A seqlock-like slot: gen is odd while [base, base + size) is a live allocation of the worker. A
 * reader that sees the same odd gen before and after its query knows the allocation was live for the
 * whole query. */
typedef struct slot {
    _Atomic uint64_t gen;
    _Atomic uintptr_t base;
    _Atomic uintptr_t size;   /* page-rounded */
    _Atomic uint32_t aprot;
} slot;

static slot slots[NWORKERS];
static atomic_int workers_running;
static hm_system_info sysinfo;

/* ---- the worker ------------------------------------------------------------------------------- */

typedef struct worker {
    int id;
    uint64_t seed;
    uintptr_t base;
    size_t np;
    uint32_t aprot;
    uint32_t prot[MAX_PAGES];     /* 0: reserved, else the committed page's protection */
    uint64_t val[MAX_PAGES];      /* expected first and last word of each committed page */
    unsigned long queries;
} worker;

static uint64_t pattern(int id, unsigned iter, unsigned op, size_t page)
{
    uint64_t v = ((uint64_t)(id + 1) << 56) ^ ((uint64_t)iter << 32) ^ ((uint64_t)op << 24) ^ page;
    return v * 0x9E3779B97F4A7C15ull | 1; /* never 0: 0 is what a fresh commit reads */
}

static volatile uint64_t *word0(const worker *w, size_t p) { return (volatile uint64_t *)(w->base + p * PAGE); }
static volatile uint64_t *word1(const worker *w, size_t p) { return (volatile uint64_t *)(w->base + p * PAGE + PAGE - 8); }

/* Walks the allocation with queries and compares every region with the model. */
static bool check_model(worker *w, const char *when)
{
    size_t p = 0;
    while (p < w->np) {
        hm_region r;
        uintptr_t at = w->base + p * PAGE + (uintptr_t)rnd_below(&w->seed, PAGE); /* any byte of the page */
        hm_status st = hm_virtual_query(NULL, (void *)at, &r);
        w->queries++;
        size_t q = p + 1;
        while (q < w->np && w->prot[q] == w->prot[p]) q++;
        uint32_t want_state = w->prot[p] ? HM_MEM_COMMIT : HM_MEM_RESERVE;
        if (st != HM_OK || r.base != (void *)(w->base + p * PAGE) || r.allocation_base != (void *)w->base ||
            r.allocation_protect != w->aprot || r.partition_id != 0 || r.size != (q - p) * PAGE ||
            r.state != want_state || r.protect != w->prot[p] || r.type != HM_MEM_PRIVATE) {
            record_failure("worker %d, %s: query %#" PRIxPTR " (page %zu of %zu, allocation %#" PRIxPTR
                           ") = status %s, base %p, allocation base %p, allocation protect %#x, size %zu, "
                           "state %#x, protect %#x, type %#x; expected base %#" PRIxPTR ", allocation protect %#x, "
                           "size %zu, state %#x, protect %#x, type MEM_PRIVATE",
                           w->id, when, at, p, w->np, w->base, hm_status_name(st), r.base, r.allocation_base,
                           r.allocation_protect, r.size, r.state, r.protect, r.type, w->base + p * PAGE, w->aprot,
                           (q - p) * PAGE, want_state, w->prot[p]);
            return false;
        }
        p = q;
    }
    /* The tail of the last granule reads free. */
    uintptr_t end = w->base + w->np * PAGE;
    if (end % GRAN) {
        hm_region r;
        hm_status st = hm_virtual_query(NULL, (void *)end, &r);
        w->queries++;
        uintptr_t gend = (end + GRAN - 1) & ~(GRAN - 1);
        if (st != HM_OK || r.state != HM_MEM_FREE || r.base != (void *)end || r.allocation_base != NULL ||
            r.protect != HM_PAGE_NOACCESS || r.type != 0 || r.size < gend - end || r.size % PAGE) {
            record_failure("worker %d, %s: the tail %#" PRIxPTR " of allocation %#" PRIxPTR " (%zu pages): status %s, "
                           "state %#x, base %p, allocation base %p, protect %#x, type %#x, size %zu; expected MEM_FREE "
                           "of at least %zu bytes", w->id, when, end, w->base, w->np, hm_status_name(st), r.state, r.base,
                           r.allocation_base, r.protect, r.type, r.size, (size_t)(gend - end));
            return false;
        }
    }
    return true;
}

/* Verifies the pattern of every committed page the test can read. */
static bool check_data(worker *w, const char *when)
{
    for (size_t p = 0; p < w->np; p++) {
        if (!w->prot[p]) continue;
        if (prot_readable(w->prot[p])) {
            uint64_t a = *word0(w, p), b = *word1(w, p);
            if (a != w->val[p] || b != w->val[p]) {
                record_failure("worker %d, %s: page %zu of %#" PRIxPTR " holds %#" PRIx64 "/%#" PRIx64
                               ", expected %#" PRIx64 " (protection %#x)", w->id, when, p, w->base, a, b,
                               w->val[p], w->prot[p]);
                return false;
            }
        } else if (w->prot[p] == HM_PAGE_NOACCESS && tu_readable((const void *)word0(w, p)) != 0) {
            record_failure("worker %d, %s: page %zu of %#" PRIxPTR " is PAGE_NOACCESS but readable", w->id,
                           when, p, w->base);
            return false;
        }
    }
    return true;
}

static bool call_ok(worker *w, hm_status st, const char *what)
{
    if (st == HM_OK) return true;
    record_failure("worker %d: %s on allocation %#" PRIxPTR " (%zu pages) failed: %s (%s)", w->id, what, w->base,
                   w->np, hm_status_name(st), hm_last_detail());
    return false;
}

/* Commits [a, b) read-write, writes a fresh pattern, then maybe protects it to a random protection. */
static bool op_commit(worker *w, unsigned iter, unsigned op, size_t a, size_t b)
{
    void *got = NULL;
    hm_status st = hm_virtual_alloc(NULL, (void *)(w->base + a * PAGE), (b - a) * PAGE, HM_MEM_COMMIT,
                                    HM_PAGE_READWRITE, &got);
    if (!call_ok(w, st, "MEM_COMMIT")) return false;
    if (got != (void *)(w->base + a * PAGE)) {
        record_failure("worker %d: MEM_COMMIT at page %zu returned %p, expected %#" PRIxPTR, w->id, a, got,
                       w->base + a * PAGE);
        return false;
    }
    for (size_t p = a; p < b; p++) {
        uint64_t want = w->prot[p] ? w->val[p] : 0; /* re-commit keeps data, a new commit reads zero */
        uint64_t x = *word0(w, p), y = *word1(w, p);
        if (x != want || y != want) {
            record_failure("worker %d: after MEM_COMMIT page %zu of %#" PRIxPTR " holds %#" PRIx64 "/%#" PRIx64
                           ", expected %#" PRIx64 " (it was %s)", w->id, p, w->base, x, y, want,
                           w->prot[p] ? "committed" : "reserved");
            return false;
        }
        w->prot[p] = HM_PAGE_READWRITE;
        w->val[p] = pattern(w->id, iter, op, p);
        *word0(w, p) = w->val[p];
        *word1(w, p) = w->val[p];
    }
    if (!check_model(w, "after commit")) return false;
    if (rnd_below(&w->seed, 2)) {
        uint32_t np = rnd_prot(&w->seed), old = 0;
        st = hm_virtual_protect(NULL, (void *)(w->base + a * PAGE), (b - a) * PAGE, np, &old);
        if (!call_ok(w, st, "VirtualProtect of committed pages")) return false;
        if (old != HM_PAGE_READWRITE) {
            record_failure("worker %d: VirtualProtect's old protection %#x, expected PAGE_READWRITE", w->id, old);
            return false;
        }
        for (size_t p = a; p < b; p++) w->prot[p] = np;
    }
    return true;
}

static bool op_decommit(worker *w, size_t a, size_t b)
{
    hm_status st = hm_virtual_free(NULL, (void *)(w->base + a * PAGE), (b - a) * PAGE, HM_MEM_DECOMMIT);
    if (!call_ok(w, st, "MEM_DECOMMIT")) return false;
    for (size_t p = a; p < b; p++) w->prot[p] = 0;
    return true;
}

/* VirtualProtect of [a, b): succeeds exactly when every page is committed, else 487 and no change. */
static bool op_protect(worker *w, size_t a, size_t b)
{
    bool all = true;
    for (size_t p = a; p < b; p++) all = all && w->prot[p];
    uint32_t np = rnd_prot(&w->seed), old = 0xdead;
    hm_status st = hm_virtual_protect(NULL, (void *)(w->base + a * PAGE), (b - a) * PAGE, np, &old);
    if (all) {
        if (!call_ok(w, st, "VirtualProtect")) return false;
        if (old != w->prot[a]) {
            record_failure("worker %d: VirtualProtect of page %zu returned old protection %#x, expected %#x", w->id,
                           a, old, w->prot[a]);
            return false;
        }
        for (size_t p = a; p < b; p++) w->prot[p] = np;
    } else if (st != HM_E_INVALID_ADDRESS) {
        record_failure("worker %d: VirtualProtect over reserved pages [%zu, %zu) of %#" PRIxPTR " returned %s, "
                       "expected ERROR_INVALID_ADDRESS", w->id, a, b, w->base, hm_status_name(st));
        return false;
    }
    return true;
}

static void *worker_main(void *arg)
{
    worker *w = arg;
    slot *s = &slots[w->id];
    for (unsigned iter = 0; iter < ITERS && !failed(); iter++) {
        size_t bytes = 1 + (size_t)rnd_below(&w->seed, MAX_BYTES);
        w->np = (bytes + PAGE - 1) / PAGE;
        w->aprot = rnd_prot(&w->seed);
        bool both = rnd_below(&w->seed, 4) == 0; /* MEM_RESERVE|MEM_COMMIT in one step */
        void *base = NULL;
        hm_status st = hm_virtual_alloc(NULL, NULL, bytes, HM_MEM_RESERVE | (both ? HM_MEM_COMMIT : 0), w->aprot, &base);
        w->base = (uintptr_t)base;
        if (!call_ok(w, st, both ? "MEM_RESERVE|MEM_COMMIT" : "MEM_RESERVE")) break;
        if (w->base % GRAN) {
            record_failure("worker %d: reservation at %p is not 64 KiB aligned", w->id, base);
            break;
        }
        for (size_t p = 0; p < w->np; p++) {
            w->prot[p] = both ? w->aprot : 0;
            w->val[p] = 0;
        }
        /* publish: odd gen = live */
        atomic_store_explicit(&s->base, w->base, memory_order_relaxed);
        atomic_store_explicit(&s->size, w->np * PAGE, memory_order_relaxed);
        atomic_store_explicit(&s->aprot, w->aprot, memory_order_relaxed);
        atomic_fetch_add_explicit(&s->gen, 1, memory_order_seq_cst);

        bool ok = check_model(w, "after reserve");
        for (unsigned op = 0; ok && op < OPS; op++) {
            size_t a = (size_t)rnd_below(&w->seed, w->np);
            size_t b = a + 1 + (size_t)rnd_below(&w->seed, w->np - a);
            switch (rnd_below(&w->seed, 4)) {
            case 0:
            case 1: ok = op_commit(w, iter, op, a, b); break;
            case 2: ok = op_decommit(w, a, b); break;
            default: ok = op_protect(w, a, b); break;
            }
            ok = ok && check_model(w, "after an operation") && check_data(w, "after an operation");
        }
        if (ok) { /* decommit everything (size 0 at the base), then check the pages read zero when committed again */
            ok = call_ok(w, hm_virtual_free(NULL, (void *)w->base, 0, HM_MEM_DECOMMIT), "MEM_DECOMMIT of everything");
            for (size_t p = 0; ok && p < w->np; p++) w->prot[p] = 0;
            ok = ok && check_model(w, "after decommitting everything");
            ok = ok && op_commit(w, iter, OPS, 0, w->np) && check_data(w, "after committing everything");
        }

        /* unpublish, then release */
        atomic_fetch_add_explicit(&s->gen, 1, memory_order_seq_cst);
        if (!call_ok(w, hm_release(NULL, (void *)w->base), "MEM_RELEASE")) break;
    }
    atomic_fetch_sub(&workers_running, 1);
    return NULL;
}

/* ---- the readers ------------------------------------------------------------------------------ */

typedef struct reader {
    int id;
    uint64_t seed;
    unsigned long queries, stable_hits, nonfree;
} reader;

/* What must hold of any query result, whatever the writers were doing. */
static bool self_consistent(const reader *rd, uintptr_t addr, hm_status st, const hm_region *r)
{
    const char *why = NULL;
    uintptr_t b = (uintptr_t)r->base, ab = (uintptr_t)r->allocation_base;
    if (st != HM_OK) why = "status";
    else if (b != (addr & ~(PAGE - 1))) why = "BaseAddress is not the address rounded down";
    else if (r->size == 0 || r->size % PAGE) why = "RegionSize is 0 or not a multiple of 4096";
    else if (r->partition_id != 0) why = "PartitionId";
    else if (r->state == HM_MEM_FREE) {
        if (r->allocation_base || r->allocation_protect || r->protect != HM_PAGE_NOACCESS || r->type != 0)
            why = "MEM_FREE with AllocationBase, AllocationProtect, Protect or Type set";
        else if (r->size > sysinfo.max_address + 1 - b) why = "MEM_FREE region beyond the user address space";
    } else if (r->state == HM_MEM_RESERVE || r->state == HM_MEM_COMMIT) {
        if (r->type != HM_MEM_PRIVATE) why = "Type is not MEM_PRIVATE";
        else if (r->state == HM_MEM_RESERVE && r->protect != 0) why = "MEM_RESERVE with Protect not 0";
        else if (r->state == HM_MEM_COMMIT && !prot_is_base(r->protect)) why = "MEM_COMMIT with a protection no worker uses";
        else if (!prot_is_base(r->allocation_protect)) why = "AllocationProtect no worker uses";
        else if (ab == 0 || ab % GRAN) why = "AllocationBase NULL or not 64 KiB aligned";
        else if (ab > b) why = "AllocationBase above BaseAddress";
        else if (b + r->size > ab + MAX_BYTES) why = "region reaches past the largest allocation";
    } else {
        why = "State is none of MEM_COMMIT, MEM_RESERVE, MEM_FREE";
    }
    if (!why) return true;
    record_failure("reader %d: query %#" PRIxPTR ": %s: status %s, base %p, allocation base %p, allocation protect "
                   "%#x, size %zu, state %#x, protect %#x, type %#x", rd->id, addr, why, hm_status_name(st), r->base,
                   r->allocation_base, r->allocation_protect, r->size, r->state, r->protect, r->type);
    return false;
}

static void *reader_main(void *arg)
{
    reader *rd = arg;
    for (unsigned long i = 0; i < READER_MAX && !failed(); i++) {
        if (i >= READER_MIN && atomic_load_explicit(&workers_running, memory_order_relaxed) == 0) break;
        unsigned mode = (unsigned)rnd_below(&rd->seed, 8);
        hm_region r;
        memset(&r, 0xA5, sizeof r);
        if (mode < 5) { /* inside (or in the granule tail of) a worker's current allocation */
            slot *s = &slots[rnd_below(&rd->seed, NWORKERS)];
            uint64_t g1 = atomic_load_explicit(&s->gen, memory_order_seq_cst);
            uintptr_t base = atomic_load_explicit(&s->base, memory_order_relaxed);
            uintptr_t size = atomic_load_explicit(&s->size, memory_order_relaxed);
            uint32_t aprot = atomic_load_explicit(&s->aprot, memory_order_relaxed);
            if (!base) continue;
            uintptr_t span = (size + GRAN - 1) & ~(GRAN - 1);
            uintptr_t addr = base + (uintptr_t)rnd_below(&rd->seed, span);
            hm_status st = hm_virtual_query(NULL, (void *)addr, &r);
            atomic_thread_fence(memory_order_seq_cst);
            uint64_t g2 = atomic_load_explicit(&s->gen, memory_order_seq_cst);
            rd->queries++;
            if (!self_consistent(rd, addr, st, &r)) break;
            if (r.state != HM_MEM_FREE) rd->nonfree++;
            if (g1 != g2 || !(g1 & 1)) continue;
            /* The allocation was live during the whole query: the answer must name it. */
            rd->stable_hits++;
            bool in = addr < base + size;
            bool good = in ? (r.state != HM_MEM_FREE && r.allocation_base == (void *)base &&
                              r.allocation_protect == aprot && (uintptr_t)r.base + r.size <= base + size)
                           : (r.state == HM_MEM_FREE && (uintptr_t)r.base + r.size >= base + span);
            if (!good) {
                record_failure("reader %d: query %#" PRIxPTR " %s live allocation [%#" PRIxPTR ", +%#" PRIxPTR
                               ") (allocation protect %#x): base %p, allocation base %p, allocation protect %#x, size "
                               "%zu, state %#x, protect %#x", rd->id, addr, in ? "inside" : "in the granule tail of",
                               base, size, aprot, r.base, r.allocation_base, r.allocation_protect, r.size, r.state,
                               r.protect);
                break;
            }
        } else if (mode < 7) { /* near a worker's allocation: neighbours, gaps, other workers' memory */
            uintptr_t base = atomic_load_explicit(&slots[rnd_below(&rd->seed, NWORKERS)].base, memory_order_relaxed);
            if (!base) continue;
            uintptr_t addr = base - ((uintptr_t)2 << 20) + (uintptr_t)rnd_below(&rd->seed, (uintptr_t)4 << 20);
            hm_status st = hm_virtual_query(NULL, (void *)addr, &r);
            rd->queries++;
            if (!self_consistent(rd, addr, st, &r)) break;
            if (r.state != HM_MEM_FREE) rd->nonfree++;
        } else { /* anywhere in the user address space */
            uintptr_t addr = sysinfo.min_address +
                             (uintptr_t)rnd_below(&rd->seed, sysinfo.max_address + 1 - sysinfo.min_address);
            hm_status st = hm_virtual_query(NULL, (void *)addr, &r);
            rd->queries++;
            if (!self_consistent(rd, addr, st, &r)) break;
            if (r.state != HM_MEM_FREE) rd->nonfree++;
        }
    }
    return NULL;
}

/* ---- test 1: workers and readers -------------------------------------------------------------- */

static void test_workers_and_readers(void **state)
{
    (void)state;
    assert_int_equal(hm_init(), HM_OK);
    hm_get_system_info(&sysinfo);
    hm_vm_stats before, after;
    hm_vm_get_stats(&before);

    atomic_store(&failures, 0);
    atomic_store(&workers_running, NWORKERS);
    static worker workers[NWORKERS];
    static reader readers[NREADERS];
    pthread_t wt[NWORKERS], rt[NREADERS];
    uint64_t seed = 0x5EED0000u + (uint64_t)time(NULL) % 1000;
    const char *env = getenv("HM_TEST_SEED");
    if (env) seed = strtoull(env, NULL, 0);
    print_message("seed %#" PRIx64 " (set HM_TEST_SEED to repeat)\n", seed);
    for (int i = 0; i < NWORKERS; i++) {
        memset(&workers[i], 0, sizeof workers[i]);
        workers[i].id = i;
        workers[i].seed = seed * 1000003u + (uint64_t)i * 7919u + 1;
        atomic_store(&slots[i].gen, 0);
        atomic_store(&slots[i].base, 0);
    }
    for (int i = 0; i < NREADERS; i++) {
        memset(&readers[i], 0, sizeof readers[i]);
        readers[i].id = i;
        readers[i].seed = seed * 31337u + (uint64_t)i * 104729u + 3;
    }
    for (int i = 0; i < NREADERS; i++) assert_int_equal(pthread_create(&rt[i], NULL, reader_main, &readers[i]), 0);
    for (int i = 0; i < NWORKERS; i++) assert_int_equal(pthread_create(&wt[i], NULL, worker_main, &workers[i]), 0);
    for (int i = 0; i < NWORKERS; i++) pthread_join(wt[i], NULL);
    for (int i = 0; i < NREADERS; i++) pthread_join(rt[i], NULL);

    unsigned long wq = 0, rq = 0, stable = 0, nonfree = 0;
    for (int i = 0; i < NWORKERS; i++) wq += workers[i].queries;
    for (int i = 0; i < NREADERS; i++) {
        rq += readers[i].queries;
        stable += readers[i].stable_hits;
        nonfree += readers[i].nonfree;
    }
    print_message("workers: %d x %d allocations, %lu own queries; readers: %lu queries, %lu on a live allocation, "
                  "%lu answered non-free\n", NWORKERS, ITERS, wq, rq, stable, nonfree);
    assert_no_thread_failures();

    hm_vm_get_stats(&after);
    assert_int_equal(after.allocations, before.allocations);
    assert_int_equal(after.reserved_bytes, before.reserved_bytes);
    assert_int_equal(after.committed_bytes, before.committed_bytes);
    assert_int_equal(after.runs, before.runs);
    if (hm_vmap_check(KERNEL_CHECK) != HM_OK) fail_msg("map check: %s", hm_last_detail());
}

/* ---- test 2: a query does not wait for the writer lock ---------------------------------------- */

typedef struct lock_probe {
    void *rsv, *gone, *free_addr;   /* an allocation with committed pages; one being released; a free page */
    void *above;                    /* the first byte above the user address space */
    hm_region r[6];
    hm_status st[6];
    SIZE_T w32_len, w32_bad_len;
    DWORD w32_bad_err;
    MEMORY_BASIC_INFORMATION mbi;
    atomic_int done;
} lock_probe;

static void *probe_main(void *arg)
{
    lock_probe *pr = arg;
    pr->st[0] = hm_virtual_query(NULL, pr->rsv, &pr->r[0]);                        /* reserved page 0 */
    pr->st[1] = hm_virtual_query(NULL, (char *)pr->rsv + 4096 + 17, &pr->r[1]);    /* committed pages 1-2 */
    pr->st[2] = hm_virtual_query(NULL, (char *)pr->rsv + 3 * 4096, &pr->r[2]);     /* reserved rest */
    pr->st[3] = hm_virtual_query(NULL, pr->gone, &pr->r[3]);                       /* release pending */
    pr->st[4] = hm_virtual_query(NULL, pr->free_addr, &pr->r[4]);                  /* free */
    pr->st[5] = hm_virtual_query(NULL, pr->above, &pr->r[5]);
    pr->w32_len = VirtualQuery((char *)pr->rsv + 8192, &pr->mbi, sizeof pr->mbi);
    SetLastError(0);
    pr->w32_bad_len = VirtualQuery(pr->rsv, &pr->mbi, sizeof pr->mbi - 1);
    pr->w32_bad_err = GetLastError();
    atomic_store(&pr->done, 1);
    return NULL;
}

typedef struct blocked_writer {
    void *target;
    hm_status st;
    atomic_int started, done;
} blocked_writer;

static void *writer_main(void *arg)
{
    blocked_writer *bw = arg;
    atomic_store(&bw->started, 1);
    bw->st = hm_release(NULL, bw->target); /* waits on the writer lock the test holds */
    atomic_store(&bw->done, 1);
    return NULL;
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static void test_query_without_writer_lock(void **state)
{
    (void)state;
    assert_int_equal(hm_init(), HM_OK);
    hm_vm_stats before, after;
    hm_vm_get_stats(&before);
    static lock_probe pr;
    static blocked_writer bw;
    memset(&pr, 0, sizeof pr);
    memset(&bw, 0, sizeof bw);

    void *scratch = NULL;
    assert_int_equal(hm_reserve(NULL, 65536, &scratch), HM_OK);
    assert_int_equal(hm_reserve(NULL, 256 * 1024, &pr.rsv), HM_OK);
    assert_int_equal(hm_commit(NULL, (char *)pr.rsv + 4096, 8192, HM_PAGE_READWRITE), HM_OK);
    ((volatile char *)pr.rsv)[4096] = 42;
    assert_int_equal(hm_reserve(NULL, 65536, &pr.gone), HM_OK);
    assert_int_equal(hm_release(NULL, scratch), HM_OK);
    pr.free_addr = scratch; /* nothing else allocates while the lock is held */
    bw.target = pr.gone;
    hm_system_info si;
    hm_get_system_info(&si);
    pr.above = (void *)(si.max_address + 1);

    pthread_mutex_lock(&hm_map_lock);
    pthread_t wt, pt;
    int e1 = pthread_create(&wt, NULL, writer_main, &bw);
    while (!e1 && !atomic_load(&bw.started)) sleep_ms(1);
    sleep_ms(20); /* let the writer reach the lock */
    int e2 = pthread_create(&pt, NULL, probe_main, &pr);
    int waited = 0;
    while (!e2 && !atomic_load(&pr.done) && waited < 2000) {
        sleep_ms(1);
        waited++;
    }
    int probe_done = atomic_load(&pr.done);
    int writer_done = atomic_load(&bw.done);
    pthread_mutex_unlock(&hm_map_lock);
    if (!e1) pthread_join(wt, NULL);
    if (!e2) pthread_join(pt, NULL);
    assert_int_equal(e1, 0);
    assert_int_equal(e2, 0);
    if (!probe_done) fail_msg("VirtualQuery did not return within 2 s while the writer lock was held (SPEC 1.2)");
    assert_int_equal(writer_done, 0); /* the writer really was stuck inside the library meanwhile */
    assert_int_equal(bw.st, HM_OK);

    /* what the queries saw while the writer lock was held */
    for (int i = 0; i < 5; i++) assert_int_equal(pr.st[i], HM_OK);
    assert_ptr_equal(pr.r[0].base, pr.rsv);
    assert_ptr_equal(pr.r[0].allocation_base, pr.rsv);
    assert_int_equal(pr.r[0].state, HM_MEM_RESERVE);
    assert_int_equal(pr.r[0].protect, 0);
    assert_int_equal(pr.r[0].size, 4096);
    assert_ptr_equal(pr.r[1].base, (char *)pr.rsv + 4096);
    assert_ptr_equal(pr.r[1].allocation_base, pr.rsv);
    assert_int_equal(pr.r[1].state, HM_MEM_COMMIT);
    assert_int_equal(pr.r[1].protect, HM_PAGE_READWRITE);
    assert_int_equal(pr.r[1].size, 8192);
    assert_int_equal(pr.r[1].type, HM_MEM_PRIVATE);
    assert_ptr_equal(pr.r[2].base, (char *)pr.rsv + 3 * 4096);
    assert_int_equal(pr.r[2].state, HM_MEM_RESERVE);
    assert_int_equal(pr.r[2].size, 256 * 1024 - 3 * 4096);
    assert_ptr_equal(pr.r[3].allocation_base, pr.gone); /* the release had not happened yet */
    assert_int_equal(pr.r[3].state, HM_MEM_RESERVE);
    assert_int_equal(pr.r[3].size, 65536);
    assert_ptr_equal(pr.r[4].base, pr.free_addr);
    assert_int_equal(pr.r[4].state, HM_MEM_FREE);
    assert_null(pr.r[4].allocation_base);
    assert_true(pr.r[4].size >= 65536);
    assert_int_equal(pr.st[5], HM_E_INVALID_PARAMETER); /* above the user address space */
    assert_int_equal(pr.w32_len, sizeof(MEMORY_BASIC_INFORMATION));
    assert_ptr_equal(pr.mbi.BaseAddress, (char *)pr.rsv + 8192);
    assert_int_equal(pr.mbi.State, MEM_COMMIT);
    assert_int_equal(pr.mbi.RegionSize, 4096);
    assert_int_equal(pr.w32_bad_len, 0);
    assert_int_equal(pr.w32_bad_err, ERROR_BAD_LENGTH);

    /* and afterwards the release is visible */
    hm_region r;
    assert_int_equal(hm_virtual_query(NULL, pr.gone, &r), HM_OK);
    assert_int_equal(r.state, HM_MEM_FREE);
    assert_int_equal(((volatile char *)pr.rsv)[4096], 42);
    assert_int_equal(hm_release(NULL, pr.rsv), HM_OK);
    hm_vm_get_stats(&after);
    assert_int_equal(after.allocations, before.allocations);
    assert_int_equal(after.committed_bytes, before.committed_bytes);
}

/* ---- test 3: writers sharing one allocation ---------------------------------------------------- */

/* Commit and decommit drop the writer lock around their system calls and mark the allocation busy
 * (vmap_internal.h). Here several threads commit, check and decommit pages of ONE reservation, each
 * its own range, while another runs the map's consistency check and walks: a writer that built its
 * run table from a version another writer was still changing would lose that one's pages, which the
 * owners' models and the final books catch. */
#define SHARED_THREADS 3
#define SHARED_PAGES 16   /* per thread */
#define SHARED_ROUNDS 1500

typedef struct shared_writer {
    char *base;           /* this thread's pages: [base, base + SHARED_PAGES pages) */
    int id;
    uint64_t seed;
} shared_writer;

static atomic_int shared_running;

static void *shared_main(void *arg)
{
    shared_writer *w = arg;
    bool committed[SHARED_PAGES] = {false};
    for (unsigned k = 0; k < SHARED_ROUNDS && !atomic_load(&failures); k++) {
        size_t p0 = (size_t)rnd_below(&w->seed, SHARED_PAGES), n = 1 + (size_t)rnd_below(&w->seed, SHARED_PAGES - p0);
        bool commit = rnd_below(&w->seed, 2);
        char *at = w->base + p0 * PAGE;
        hm_status st = commit ? hm_commit(NULL, at, n * PAGE, HM_PAGE_READWRITE) : hm_decommit(NULL, at, n * PAGE);
        if (st != HM_OK) {
            record_failure("writer %d: %s of pages %zu+%zu: %s", w->id, commit ? "commit" : "decommit", p0, n, hm_status_name(st));
            break;
        }
        for (size_t p = p0; p < p0 + n; p++) {
            volatile uint64_t *word = (volatile uint64_t *)(w->base + p * PAGE);
            if (commit && !committed[p]) *word = pattern(w->id, k, 0, p); /* fresh: mark it */
            committed[p] = commit;
        }
        for (size_t p = 0; p < SHARED_PAGES; p++) { /* the model against what the map says */
            hm_region r;
            if (hm_virtual_query(NULL, w->base + p * PAGE, &r) != HM_OK ||
                r.state != (committed[p] ? HM_MEM_COMMIT : HM_MEM_RESERVE)) {
                record_failure("writer %d, round %u: page %zu should be %s, the map says state %#x", w->id, k, p,
                               committed[p] ? "committed" : "reserved", r.state);
                break;
            }
            if (committed[p] && !*(volatile uint64_t *)(w->base + p * PAGE)) {
                record_failure("writer %d, round %u: committed page %zu lost its data", w->id, k, p);
                break;
            }
        }
    }
    atomic_fetch_sub(&shared_running, 1);
    return NULL;
}

static int count_region(const hm_region *r, void *arg)
{
    (void)r;
    ++*(unsigned long *)arg;
    return 0;
}

static void test_writers_share_an_allocation(void **state)
{
    (void)state;
    assert_int_equal(hm_init(), HM_OK);
    hm_vm_stats before, after;
    hm_vm_get_stats(&before);
    atomic_store(&failures, 0);
    void *base;
    assert_int_equal(hm_reserve(NULL, SHARED_THREADS * SHARED_PAGES * PAGE, &base), HM_OK);
    static shared_writer w[SHARED_THREADS];
    pthread_t t[SHARED_THREADS];
    atomic_store(&shared_running, SHARED_THREADS);
    for (int i = 0; i < SHARED_THREADS; i++) {
        w[i] = (shared_writer){(char *)base + (size_t)i * SHARED_PAGES * PAGE, i, 0xA11C0u + (uint64_t)i * 977u};
        assert_int_equal(pthread_create(&t[i], NULL, shared_main, &w[i]), 0);
    }
    unsigned long checks = 0, regions = 0;
    while (atomic_load(&shared_running)) { /* the whole-map walkers wait for busy allocations */
        if (hm_vmap_check(false) != HM_OK) record_failure("map check while writers run: %s", hm_last_detail());
        hm_manager *m = NULL;
        hm_status st = HM_OK;
        if ((m = hm_manager_default(&st))) (void)hm_vmap_walk(&m->acct, count_region, &regions);
        checks++;
    }
    for (int i = 0; i < SHARED_THREADS; i++) pthread_join(t[i], NULL);
    print_message("%d writers x %d rounds on one allocation; %lu map checks and walks (%lu regions) meanwhile\n",
                  SHARED_THREADS, SHARED_ROUNDS, checks, regions);
    assert_no_thread_failures();
    assert_int_equal(hm_release(NULL, base), HM_OK);
    hm_vm_get_stats(&after);
    assert_int_equal(after.allocations, before.allocations);
    assert_int_equal(after.committed_bytes, before.committed_bytes);
    if (hm_vmap_check(KERNEL_CHECK) != HM_OK) fail_msg("map check: %s", hm_last_detail());
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_workers_and_readers),
        cmocka_unit_test(test_query_without_writer_lock),
        cmocka_unit_test(test_writers_share_an_allocation),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
