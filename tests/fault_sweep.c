/* fault_sweep.c — every heap and manager operation with each kind of platform call failing in turn
 * (SPEC 2.7.3 all-or-nothing, 3.2, 3.4, 4): for an operation O, a kind K of OS call (os.h) and n = 1, 2,
 * ...: a fresh, known state is built (a manager, heaps with live small, large and debug blocks holding
 * patterns, freed blocks in the caches; or allocations with committed, reserved and written pages),
 * its books are taken (manager statistics and charge, heap statistics, every block's usable size and
 * contents, the region map), the n-th next call of kind K is made to fail with ENOMEM, and O runs.
 * When no call failed, O made fewer than n calls of kind K and the sweep of K ends. When one did:
 *   - O reports the failure (ERROR_NOT_ENOUGH_MEMORY or E_OUTOFMEMORY) and nothing observable
 *     changed: the same statistics, charge and region map, every block intact with its usable size;
 *     the map agrees with the kernel (hm_vmap_check); and O run again without a fault succeeds and
 *     leaves exactly the state a run that never saw a fault leaves (the reference run);
 *   - or O succeeds because it may absorb that failure (the `absorb` masks below, each with its
 *     reason): then its result must still be right and the books exact (the heaps' statistics account
 *     for every committed byte of their allocations), with as many live blocks as the reference;
 *   - E_FAIL (SPEC 3.4: books broken, manager failed) is a probable defect for a single failed call
 *     (every rollback call succeeds then): it is counted and reported; and the manager must answer
 *     HOST_E_CLRNOTAVAILABLE afterwards.
 * Three sweeps of each operation: the n-th call fails once (the main one); the n-th and every later
 * call of the kind fail ("persistent": rollbacks fail too, so E_FAIL is allowed, everything else is
 * checked the same); and, in executable heaps, mprotect fails once with EACCES (what a system that
 * forbids executable pages answers).
 * Heap operations run in the four heap kinds (thread-safe, single-threaded, executable, executable
 * and thread-safe) with the memory state Normal and Low (Low: a manager with a tight limit whose
 * charge stays above notify.high, so freed large blocks are released rather than cached and empty
 * pages are decommitted at once). The two-view layout of executable heaps is chosen once per process
 * by HOSTMEM_EXEC_VIEWS=dual: ctest runs this program a second time with it (fault_sweep_dual), and
 * that run sweeps only the executable heaps (everything else is the same code in both runs).
 *
 * Each combination that misbehaves is printed with exactly what differs, then the test fails; one
 * line per (operation, state, heap kind) sums up the sweep. While a defect is being fixed, its
 * combinations can be listed in known_defects[] (one line each); they are skipped with a "KNOWN
 * DEFECT" line (FAULT_SWEEP_KNOWN=run runs them too, without failing, and says which entries no
 * longer fail). FAULT_SWEEP_ONLY=<substring of an operation's name> limits the run to matching
 * operations. */
#define _GNU_SOURCE
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "heap/heap.h"
#include "heap/heap_internal.h"
#include "manager/manager.h"
#include "os/os.h"
#include "testutil.h"
#include "heap_testutil.h"
#include "vmap/vmap.h"

#define KiB ((size_t)1024)
#define MiB ((size_t)1 << 20)
#define PAGE ((size_t)4096)

/* ---- known defects ---------------------------------------------------------------------------------
 * One line per (operation | memory state | heap kind | OS call kind) that is known to fail and is being
 * fixed; "*" matches anything in a field, and a plain call kind also covers its persistent ("mprotect+")
 * and other-errno ("mprotect:EACCES") sweeps. Delete a line once its defect is fixed. */
static const char *const known_defects[] = {
    NULL,
};

static const char *const kind_name[HM_OS_CALL_COUNT] = {"mmap", "munmap", "mprotect", "madvise", "procfs", "uffd"};
#define K(k) (1u << (k))
#define K_ALL (K(HM_OS_CALL_COUNT) - 1u)

/* ---- differences ------------------------------------------------------------------------------- */

#define MAXDIFF 12
static char diffs[MAXDIFF][480];
static size_t ndiffs;

static void diff(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void diff(const char *fmt, ...)
{
    if (ndiffs < MAXDIFF) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(diffs[ndiffs], sizeof diffs[0], fmt, ap);
        va_end(ap);
    }
    ndiffs++;
}

static void diffs_clear(void) { ndiffs = 0; }

static void diffs_print(bool error)
{
    for (size_t i = 0; i < ndiffs && i < MAXDIFF; i++) {
        if (error) print_error("      %s\n", diffs[i]);
        else print_message("      %s\n", diffs[i]);
    }
    if (ndiffs > MAXDIFF) {
        if (error) print_error("      ... and %zu more\n", ndiffs - MAXDIFF);
        else print_message("      ... and %zu more\n", ndiffs - MAXDIFF);
    }
}

/* ---- the fixture --------------------------------------------------------------------------------- */

enum { ST_NORMAL, ST_LOW };
static const char *const state_name[] = {"Normal", "Low"};

enum { MAXB = 24, MAXH = 3, MAXM = 2, MAXW = 64 };

typedef struct blk {
    void *p;
    int heap;          /* index in fx.h */
    size_t size;       /* as requested (a debug block: the caller's size) */
    uint64_t seed;     /* pattern */
    size_t plen;       /* the pattern was written for a block of plen bytes ... */
    size_t valid;      /* ... and its positions below valid hold it */
    size_t usable;     /* what hm_heap_usable_size must say */
    bool live, debug;
    const char *name;
} blk;

typedef struct fx {
    int state;
    uint32_t hflags;
    hm_manager *m[MAXM]; /* m[0]: the fixture's manager; m[1]: made by the operation or for it */
    hm_heap *h[MAXH];    /* h[0]: the heap with blocks; h[1]: an empty heap of the same kind; h[2]: made by the op */
    blk b[MAXB];
    int nb;
    int small, s0, large1, large2, dbg_small, dbg_large; /* indices of named blocks */
    /* address space: the ballast (and A, W, R for the manager operations), pages holding patterns */
    char *ballast, *A, *W, *R;
    uintptr_t written[MAXW];
    bool maybe[MAXW]; /* after MEM_RESET: the pattern or zero */
    int nwritten;
    void *result;     /* what the operation returned */
    uint32_t old;     /* VirtualProtect's old protection */
    uint32_t load;
    uint64_t avail;
    void *addrs[16];
    uintptr_t count;
    uint32_t gran;
    bool zombie;      /* h[0]'s destruction failed: it is only good for being destroyed again */
} fx;

static fx F;
static bool absorbing; /* the call under test succeeded though one of its platform calls failed */

static uint64_t pat(uint64_t seed, size_t off)
{
    uint64_t x = (seed + off) * 0x9E3779B97F4A7C15ull;
    return (x ^ (x >> 29)) | 1;
}

/* Pattern positions of a block of L bytes: every word up to 32 KiB; beyond, the first 256 bytes, one
 * word every 64 KiB and the last word (writing whole megabytes thousands of times would dominate). */
static size_t next_pos(size_t o, size_t L)
{
    if (L <= 32 * KiB || o + 8 < 256) return o + 8;
    size_t n = (o / (64 * KiB) + 1) * (64 * KiB), last = (L - 8) & ~(size_t)7;
    return o < last && n > last ? last : n;
}
#define FOR_POS(o, L) for (size_t o = 0; o + 8 <= (L); o = next_pos(o, (L)))

static uint64_t vm_pattern(uintptr_t page) { return (uint64_t)page * 0x9E3779B97F4A7C15ull | 1; }

static hm_manager_stats mst(hm_manager *m)
{
    hm_manager_stats s;
    if (hm_manager_get_stats(m, &s) != HM_OK) fail_msg("hm_manager_get_stats failed");
    return s;
}

static hm_heap_stats hst(hm_heap *h)
{
    hm_heap_stats s;
    if (hm_heap_get_stats(h, &s) != HM_OK) fail_msg("hm_heap_get_stats failed");
    return s;
}

static void *valloc_ok(hm_manager *m, void *addr, size_t size, uint32_t type, uint32_t prot)
{
    void *b = NULL;
    hm_status st = hm_virtual_alloc(m, addr, size, type, prot, &b);
    if (st != HM_OK) fail_msg("fixture: alloc(%p, %#zx, %#x, %#x): %s (%s)", addr, size, type, prot, hm_status_name(st), hm_last_detail());
    return b;
}

static void write_pages(fx *f, char *p, size_t npages, bool maybe)
{
    for (size_t k = 0; k < npages; k++) {
        uintptr_t pg = (uintptr_t)p + k * PAGE;
        *(volatile uint64_t *)pg = vm_pattern(pg);
        if (f->nwritten >= MAXW) fail_msg("fixture: too many written pages");
        f->maybe[f->nwritten] = maybe;
        f->written[f->nwritten++] = pg;
    }
}

static void forget_pages(fx *f, uintptr_t lo, uintptr_t hi)
{
    int k = 0;
    for (int i = 0; i < f->nwritten; i++)
        if (f->written[i] < lo || f->written[i] >= hi) {
            f->maybe[k] = f->maybe[i];
            f->written[k++] = f->written[i];
        }
    f->nwritten = k;
}

static void maybe_pages(fx *f, uintptr_t lo, uintptr_t hi, bool maybe)
{
    for (int i = 0; i < f->nwritten; i++)
        if (f->written[i] >= lo && f->written[i] < hi) f->maybe[i] = maybe;
}

static hm_manager *mgr_make(const char *opts)
{
    hm_manager *m = NULL;
    hm_status st = hm_manager_create(opts, &m);
    if (st != HM_OK) fail_msg("fixture: hm_manager_create(\"%s\"): %s (%s)", opts, hm_status_name(st), hm_last_detail());
    return m;
}

/* The fixture's manager and its ballast: 16 MiB committed. Low: limit 64 MiB with notify.high at 20%,
 * so the charge stays above notify.high (12.8 MiB) whatever the operations give back; Normal: 1 GiB. */
static void build_manager(fx *f, int state)
{
    memset(f, 0, sizeof *f);
    f->state = state;
    f->small = f->s0 = f->large1 = f->large2 = f->dbg_small = f->dbg_large = -1;
    f->m[0] = mgr_make(state == ST_LOW ? "limit=64M,notify.low=10,notify.high=20" : "limit=1G");
    f->ballast = valloc_ok(f->m[0], NULL, 16 * MiB, HM_MEM_RESERVE | HM_MEM_COMMIT, HM_PAGE_READWRITE);
    write_pages(f, f->ballast, 1, false);
    hm_memory_state want = state == ST_LOW ? HM_MEMORY_LOW : HM_MEMORY_HIGH;
    if (mst(f->m[0]).memory_state != want) fail_msg("fixture: memory state %d, expected %d", (int)mst(f->m[0]).memory_state, (int)want);
}

/* Writes the pattern of block i over its first plen bytes (through the writable view). */
static void blk_fill(fx *f, int i)
{
    blk *b = &f->b[i];
    char *w = hm_heap_writable(f->h[b->heap], b->p);
    if (!w) fail_msg("fixture: no writable view of block %s", b->name);
    FOR_POS(o, b->plen)
    {
        uint64_t v = pat(b->seed, o);
        memcpy(w + o, &v, 8);
    }
}

static int blk_add(fx *f, int heap, void *p, size_t size, bool debug, const char *name)
{
    if (f->nb >= MAXB) fail_msg("fixture: too many blocks");
    int i = f->nb++;
    blk *b = &f->b[i];
    *b = (blk){p, heap, size, 0x1234567ull * (uint64_t)(i + 1), size, size, 0, true, debug, name};
    b->usable = hm_heap_usable_size(f->h[heap], p);
    if (b->usable < size) fail_msg("fixture: block %s: usable %zu < %zu", name, b->usable, size);
    blk_fill(f, i);
    return i;
}

static int fx_alloc(fx *f, size_t size, const char *name)
{
    void *p = NULL;
    hm_status st = hm_heap_alloc(f->h[0], size, HM_LEVEL_TASK, &p);
    if (st != HM_OK) fail_msg("fixture: alloc %s (%zu): %s (%s)", name, size, hm_status_name(st), hm_last_detail());
    return blk_add(f, 0, p, size, false, name);
}

static int fx_alloc_debug(fx *f, size_t size, const char *name)
{
    void *p = NULL;
    hm_status st = hm_heap_alloc_debug(f->h[0], size, HM_LEVEL_TASK, "fault_sweep.c", 1000 + f->nb, &p);
    if (st != HM_OK) fail_msg("fixture: debug alloc %s (%zu): %s (%s)", name, size, hm_status_name(st), hm_last_detail());
    return blk_add(f, 0, p, size, true, name);
}

static void fx_free(fx *f, int i)
{
    hm_status st = hm_heap_free(f->h[f->b[i].heap], f->b[i].p);
    if (st != HM_OK) fail_msg("fixture: free %s: %s (%s)", f->b[i].name, hm_status_name(st), hm_last_detail());
    f->b[i].live = false;
}

static hm_heap *heap_make(hm_manager *m, uint32_t flags)
{
    hm_heap *h = NULL;
    hm_status st = hm_heap_create(m, flags, &h);
    if (st != HM_OK) fail_msg("fixture: hm_heap_create(%#x): %s (%s)", flags, hm_status_name(st), hm_last_detail());
    return h;
}

/* The heap fixture. h[0] holds: small blocks (24, 1000 bytes), four 32 KiB blocks (two to a page) of
 * which two are freed (so that freeing s0 empties its page while another page of its class has room),
 * large blocks of 1 and 2 MiB, a small and a large debug block; then a 600 KiB and a 1.5 MiB block are
 * freed: Normal keeps them committed in the caches (the thread's cache takes the first in a
 * thread-safe heap), Low (and a two-view heap always) releases them. h[1] is an empty heap. */
static void build_heap(fx *f, int state, uint32_t flags)
{
    build_manager(f, state);
    f->hflags = flags;
    f->h[0] = heap_make(f->m[0], flags);
    f->h[1] = heap_make(f->m[0], flags);
    fx_alloc(f, 24, "tiny");
    f->small = fx_alloc(f, 1000, "small");
    f->s0 = fx_alloc(f, 32 * KiB, "s0");
    int s1 = fx_alloc(f, 32 * KiB, "s1");
    fx_alloc(f, 32 * KiB, "s2");
    int s3 = fx_alloc(f, 32 * KiB, "s3");
    f->large1 = fx_alloc(f, 1 * MiB, "large1");
    f->large2 = fx_alloc(f, 2 * MiB, "large2");
    f->dbg_small = fx_alloc_debug(f, 200, "dbg_small");
    f->dbg_large = fx_alloc_debug(f, 1 * MiB + 100, "dbg_large");
    int c1 = fx_alloc(f, 600 * KiB, "c1"), c2 = fx_alloc(f, 1536 * KiB, "c2");
    fx_free(f, s1);
    fx_free(f, s3);
    fx_free(f, c1);
    fx_free(f, c2);
}

/* The manager fixture (m[0] and its ballast, with):
 *   A: 16 pages, [0,4) read-write with data, [4,8) reserved, [8,10) read-only with data, [10,12)
 *      reserved, [12] no access, [13,16) reserved;
 *   W: 16 pages reserved with MEM_WRITE_WATCH, [0,8) committed read-write, pages 0 and 2 written;
 *   R: 4 pages committed and written, then MEM_RESET (so MEM_RESET_UNDO has pages to prove). */
static void build_vm(fx *f)
{
    build_manager(f, ST_NORMAL);
    hm_manager *m = f->m[0];
    f->A = valloc_ok(m, NULL, 16 * PAGE, HM_MEM_RESERVE, HM_PAGE_READWRITE);
    valloc_ok(m, f->A, 4 * PAGE, HM_MEM_COMMIT, HM_PAGE_READWRITE);
    write_pages(f, f->A, 4, false);
    valloc_ok(m, f->A + 8 * PAGE, 2 * PAGE, HM_MEM_COMMIT, HM_PAGE_READWRITE);
    write_pages(f, f->A + 8 * PAGE, 2, false);
    uint32_t old;
    if (hm_virtual_protect(m, f->A + 8 * PAGE, 2 * PAGE, HM_PAGE_READONLY, &old) != HM_OK) fail_msg("fixture: protect");
    valloc_ok(m, f->A + 12 * PAGE, PAGE, HM_MEM_COMMIT, HM_PAGE_NOACCESS);
    f->W = valloc_ok(m, NULL, 16 * PAGE, HM_MEM_RESERVE | HM_MEM_WRITE_WATCH, HM_PAGE_READWRITE);
    valloc_ok(m, f->W, 8 * PAGE, HM_MEM_COMMIT, HM_PAGE_READWRITE);
    write_pages(f, f->W, 1, false);
    write_pages(f, f->W + 2 * PAGE, 1, false);
    f->R = valloc_ok(m, NULL, 4 * PAGE, HM_MEM_RESERVE | HM_MEM_COMMIT, HM_PAGE_READWRITE);
    write_pages(f, f->R, 4, true);
    valloc_ok(m, f->R, 4 * PAGE, HM_MEM_RESET, HM_PAGE_READWRITE);
}

/* A second manager with allocations of every sort, for its destruction. */
static void build_second(fx *f)
{
    build_vm(f);
    hm_manager *m = f->m[1] = mgr_make("limit=256M");
    char *p = valloc_ok(m, NULL, 64 * KiB, HM_MEM_RESERVE | HM_MEM_COMMIT, HM_PAGE_READWRITE);
    memset(p, 0x5a, 64 * KiB);
    p = valloc_ok(m, NULL, 1 * MiB, HM_MEM_RESERVE, HM_PAGE_READWRITE);
    valloc_ok(m, p, 4 * PAGE, HM_MEM_COMMIT, HM_PAGE_READWRITE);
    p[0] = 1;
    valloc_ok(m, p + 8 * PAGE, 2 * PAGE, HM_MEM_COMMIT, HM_PAGE_EXECUTE_READ);
    p = valloc_ok(m, NULL, 64 * KiB, HM_MEM_RESERVE | HM_MEM_WRITE_WATCH, HM_PAGE_READWRITE);
    valloc_ok(m, p, 64 * KiB, HM_MEM_COMMIT, HM_PAGE_READWRITE);
    p[PAGE] = 1;
}

/* Frees the live debug blocks (so that destroying their heap prints no leak report). */
static void free_debug_blocks(fx *f)
{
    for (int i = 0; i < f->nb; i++)
        if (f->b[i].live && f->b[i].debug && f->h[f->b[i].heap]) fx_free(f, i);
}

static void fx_teardown(fx *f)
{
    hm_os_fault_clear();
    for (int i = 0; i < f->nb; i++) /* (a damaged one may refuse: its heap's destruction takes it) */
        if (f->b[i].live && f->b[i].debug && f->h[f->b[i].heap]) (void)hm_heap_free(f->h[f->b[i].heap], f->b[i].p);
    for (int i = 0; i < MAXH; i++)
        if (f->h[i] && hm_heap_destroy(f->h[i]) != HM_OK && hm_heap_destroy(f->h[i]) != HM_OK)
            print_error("teardown: a heap could not be destroyed: %s\n", hm_last_detail());
    for (int i = 0; i < MAXM; i++)
        if (f->m[i] && hm_manager_destroy(f->m[i]) != HM_OK && hm_manager_destroy(f->m[i]) != HM_OK)
            print_error("teardown: a manager could not be destroyed: %s\n", hm_last_detail());
    memset(f, 0, sizeof *f);
}

/* ---- books and checks ------------------------------------------------------------------------------ */

typedef struct snap {
    bool have_m[MAXM], have_h[MAXH];
    hm_manager_stats ms[MAXM];
    hm_heap_stats hs[MAXH];
} snap;

static tu_snapshot regions_pre[MAXM], regions_now[MAXM];

static void snap_take(const fx *f, snap *s, tu_snapshot *regions)
{
    memset(s, 0, sizeof *s);
    for (int i = 0; i < MAXM; i++) {
        regions[i].n = 0;
        if (!(s->have_m[i] = f->m[i] != NULL)) continue;
        s->ms[i] = mst(f->m[i]);
        /* through the map, so that a manager that is shut down or failed can be looked at too */
        if (hm_vmap_walk(&f->m[i]->acct, tu_snap_fn, &regions[i]) != HM_OK) fail_msg("hm_vmap_walk failed");
    }
    for (int i = 0; i < MAXH; i++)
        if ((s->have_h[i] = f->h[i] != NULL && !(i == 0 && f->zombie))) s->hs[i] = hst(f->h[i]);
}

static bool region_equal(const hm_region *a, const hm_region *b)
{
    return a->base == b->base && a->allocation_base == b->allocation_base && a->allocation_protect == b->allocation_protect &&
           a->size == b->size && a->state == b->state && a->protect == b->protect && a->type == b->type;
}

#define CMP(what, a, b)                                                                                              \
    do {                                                                                                             \
        if ((uint64_t)(a) != (uint64_t)(b))                                                                          \
            diff("%s: %" PRIu64 " -> %" PRIu64, what, (uint64_t)(a), (uint64_t)(b));                                 \
    } while (0)

static void cmp_heap_stats(int i, const hm_heap_stats *a, const hm_heap_stats *b, bool semantic)
{
    char w[64];
#define HF(field)                                                        \
    do {                                                                 \
        snprintf(w, sizeof w, "heap %d " #field, i);                     \
        CMP(w, a->field, b->field);                                      \
    } while (0)
    HF(live_blocks);
    if (semantic) return;
    HF(live_bytes);
    HF(large_bytes);
    HF(cached_large_bytes);
    HF(segments);
    HF(committed_pages);
#undef HF
}

/* What must not change when an operation fails (or, with semantic, what a run that absorbed a
 * failure must share with the reference). */
static void cmp_snaps(const snap *a, const snap *b, bool manager_state_changes, bool semantic)
{
    char w[64];
    for (int i = 0; i < MAXM; i++) {
        if (a->have_m[i] != b->have_m[i]) {
            diff("manager %d %s", i, b->have_m[i] ? "appeared" : "is gone");
            continue;
        }
        if (!a->have_m[i] || semantic) continue;
        snprintf(w, sizeof w, "manager %d charge", i);
        CMP(w, a->ms[i].charge, b->ms[i].charge);
        snprintf(w, sizeof w, "manager %d va_used", i);
        CMP(w, a->ms[i].va_used, b->ms[i].va_used);
        snprintf(w, sizeof w, "manager %d memory state", i);
        CMP(w, a->ms[i].memory_state, b->ms[i].memory_state);
        if (!manager_state_changes) {
            snprintf(w, sizeof w, "manager %d state", i);
            CMP(w, a->ms[i].state, b->ms[i].state);
        }
    }
    for (int i = 0; i < MAXH; i++) {
        if (a->have_h[i] != b->have_h[i]) {
            diff("heap %d %s", i, b->have_h[i] ? "appeared" : "is gone");
            continue;
        }
        if (a->have_h[i]) cmp_heap_stats(i, &a->hs[i], &b->hs[i], semantic);
    }
}

static void cmp_regions(const tu_snapshot *a, const tu_snapshot *b)
{
    for (int m = 0; m < MAXM; m++) {
        const tu_snapshot *x = &a[m], *y = &b[m];
        size_t shown = 0;
        for (size_t i = 0; (i < x->n || i < y->n) && shown < 4; i++) {
            const hm_region *r = i < x->n ? &x->r[i] : NULL, *s = i < y->n ? &y->r[i] : NULL;
            if (r && s && region_equal(r, s)) continue;
            diff("manager %d region %zu: %p+%#zx state %#x protect %#x -> %p+%#zx state %#x protect %#x", m, i,
                 r ? r->base : NULL, r ? r->size : 0, r ? r->state : 0, r ? r->protect : 0, s ? s->base : NULL,
                 s ? s->size : 0, s ? s->state : 0, s ? s->protect : 0);
            shown++;
        }
    }
}

/* The region map without its addresses (offsets in allocations, sorted): what a run in another
 * fixture, whose allocations lie elsewhere, must share with the reference. */
typedef struct nreg {
    uint64_t mgr, alloc_size, off, size;
    uint32_t state, protect, aprot, type;
} nreg;
#define MAXSIG (2 * TU_MAX_REGIONS)
typedef struct sig {
    size_t n;
    nreg r[MAXSIG];
} sig;

static int nreg_cmp(const void *a, const void *b) { return memcmp(a, b, sizeof(nreg)); }

static void sig_take(const tu_snapshot *regions, sig *s)
{
    s->n = 0;
    for (int m = 0; m < MAXM; m++) {
        const tu_snapshot *t = &regions[m];
        for (size_t i = 0; i < t->n; i++) {
            const hm_region *r = &t->r[i];
            uint64_t asize = 0; /* its allocation's size: the sum of its regions */
            for (size_t j = 0; j < t->n; j++)
                if (t->r[j].allocation_base == r->allocation_base) asize += t->r[j].size;
            nreg *n = &s->r[s->n++];
            memset(n, 0, sizeof *n);
            *n = (nreg){(uint64_t)m, asize, (uint64_t)((char *)r->base - (char *)r->allocation_base), r->size, r->state,
                        r->protect, r->allocation_protect, r->type};
        }
    }
    qsort(s->r, s->n, sizeof s->r[0], nreg_cmp);
}

static void cmp_sigs(const sig *a, const sig *b)
{
    if (a->n != b->n) diff("regions: %zu in the reference, %zu now", a->n, b->n);
    size_t shown = 0;
    for (size_t i = 0, j = 0; (i < a->n || j < b->n) && shown < 4;) {
        int c = i < a->n && j < b->n ? nreg_cmp(&a->r[i], &b->r[j]) : i < a->n ? -1 : 1;
        if (!c) {
            i++, j++;
            continue;
        }
        const nreg *r = c < 0 ? &a->r[i++] : &b->r[j++];
        diff("region only %s: manager %" PRIu64 ", allocation of %#" PRIx64 " at +%#" PRIx64 " size %#" PRIx64
             " state %#x protect %#x",
             c < 0 ? "in the reference" : "now", r->mgr, r->alloc_size, r->off, r->size, r->state, r->protect);
        shown++;
    }
}

/* Every live block: its usable size as expected, its pattern intact. */
static void check_blocks(const fx *f)
{
    for (int i = 0; i < f->nb; i++) {
        const blk *b = &f->b[i];
        if (!b->live || !f->h[b->heap]) continue;
        size_t u = hm_heap_usable_size(f->h[b->heap], b->p);
        if (u != b->usable) diff("block %s (%p): usable size %zu -> %zu", b->name, b->p, b->usable, u);
        if (!u) continue;
        FOR_POS(o, b->plen)
        {
            if (o + 8 > b->valid) break;
            if ((o % (64 * KiB)) == 0 && tu_readable((char *)b->p + o) != 1) {
                diff("block %s (%p): offset %#zx not readable", b->name, b->p, o);
                break;
            }
            uint64_t v;
            memcpy(&v, (char *)b->p + o, 8);
            if (v != pat(b->seed, o)) {
                diff("block %s (%p): offset %#zx holds %#" PRIx64 ", expected %#" PRIx64, b->name, b->p, o, v, pat(b->seed, o));
                break;
            }
        }
    }
}

/* Every written page that the map says is committed and readable holds its pattern. */
static void check_pages(const fx *f)
{
    for (int i = 0; i < f->nwritten; i++) {
        uintptr_t pg = f->written[i];
        hm_region r;
        hm_status st = hm_vmap_query(&f->m[0]->acct, (void *)pg, &r);
        if (st != HM_OK) {
            diff("page %#lx: query %s", (unsigned long)pg, hm_status_name(st));
            continue;
        }
        if (r.state != HM_MEM_COMMIT) {
            diff("page %#lx (written) is no longer committed (state %#x)", (unsigned long)pg, r.state);
            continue;
        }
        if ((r.protect & 0xFF) == HM_PAGE_NOACCESS || (r.protect & HM_PAGE_GUARD)) continue;
        if (tu_readable((void *)pg) != 1) {
            diff("page %#lx (protect %#x) is not readable", (unsigned long)pg, r.protect);
            continue;
        }
        uint64_t v = *(volatile uint64_t *)pg;
        if (v != vm_pattern(pg) && !(f->maybe[i] && v == 0))
            diff("page %#lx holds %#" PRIx64 ", expected %#" PRIx64, (unsigned long)pg, v, vm_pattern(pg));
    }
}

/* SPEC 3.2: every committed byte is charged, and every committed byte of a heap's allocations is
 * accounted for by the heap's statistics (heap_charge: headers, pages, large blocks, cached ones). */
typedef struct sum_arg {
    uint64_t committed, tagged;
} sum_arg;
static int sum_fn(const hm_region *r, void *arg)
{
    sum_arg *s = arg;
    if (r->state != HM_MEM_COMMIT) return 0;
    s->committed += r->size;
    hm_vmap_info info;
    if (hm_vmap_lookup(r->base, &info) && (info.flags & HM_AF_TAGGED)) s->tagged += r->size;
    return 0;
}

static void check_charge(const fx *f, bool heaps_too)
{
    for (int i = 0; i < MAXM; i++) {
        if (!f->m[i]) continue;
        sum_arg s = {0, 0};
        if (hm_vmap_walk(&f->m[i]->acct, sum_fn, &s) != HM_OK) fail_msg("hm_vmap_walk failed");
        uint64_t charge = mst(f->m[i]).charge, heaps = 0;
        for (int h = 0; h < MAXH && heaps_too; h++)
            if (f->h[h] && f->h[h]->m == f->m[i]) heaps += heap_charge(f->h[h]);
        if (charge != s.committed) diff("manager %d: charge %" PRIu64 " but %" PRIu64 " bytes committed", i, charge, s.committed);
        if (heaps_too && heaps != s.tagged)
            diff("manager %d: its heaps' allocations hold %" PRIu64 " committed bytes, their statistics account for %" PRIu64
                 " (%+" PRId64 ")", i, s.tagged, heaps, (int64_t)(s.tagged - heaps));
    }
}

static void check_map(void)
{
    hm_status st = hm_vmap_check(KERNEL_CHECK);
    if (st != HM_OK) diff("hm_vmap_check: %s", hm_last_detail());
}

/* The map and the kernel agree, the charge is what is committed, written pages hold their data; with
 * heaps: the live blocks are intact and the heaps' statistics account for their committed bytes. */
static void check_all(const fx *f, bool heaps)
{
    check_map();
    if (heaps) check_blocks(f);
    check_pages(f);
    check_charge(f, heaps);
}

/* ---- operations ---------------------------------------------------------------------------------- */

typedef struct opdef opdef;
struct opdef {
    const char *name;
    int fixture;                   /* FX_HEAP, FX_VM, FX_SECOND */
    void (*prep)(fx *);            /* after the fixture, before the books are taken (may be NULL) */
    hm_status (*run)(fx *);
    void (*post)(fx *);            /* after a success: checks the result, updates the fixture */
    int mgr;                       /* the manager it acts on (E_FAIL fails that one) */
    unsigned absorb;               /* kinds whose failure it may absorb (the table below says why) */
    unsigned flags;                /* OPF_* */
};
/* OPF_STATE: a failed call still changes the manager's lifecycle state (destroy shuts it down first).
 * OPF_RESULT: *out is NULL after a failure.
 * OPF_PARTIAL: not all-or-nothing by design, a failure may have given back part of what the call
 * gives back (the table below says why): then the books must be exact, the live blocks intact (but
 * for a heap's destruction: its blocks are going), and the same call without a fault must complete
 * it, leaving what the reference leaves. */
enum { OPF_STATE = 1, OPF_RESULT = 2, OPF_PARTIAL = 4 };
enum { FX_HEAP, FX_VM, FX_SECOND };

static hm_heap *H(fx *f) { return f->h[0]; }

/* A block the operation returned: aligned, at least size usable, writable through its writable view
 * (and zero with zero); it joins the fixture with a pattern of its own. */
static void new_block(fx *f, int heap, void *p, size_t size, size_t align, bool zero, bool debug, const char *name)
{
    if (!p) {
        diff("%s: the call succeeded but returned NULL", name);
        return;
    }
    if ((uintptr_t)p % align) diff("%s: %p is not %zu-aligned", name, p, align);
    size_t u = hm_heap_usable_size(f->h[heap], p);
    if (u < size) {
        diff("%s: usable size %zu < %zu", name, u, size);
        return;
    }
    if (zero)
        FOR_POS(o, size)
        {
            uint64_t v;
            memcpy(&v, (char *)p + o, 8);
            if (v) {
                diff("%s: calloc'd block holds %#" PRIx64 " at %#zx", name, v, o);
                break;
            }
        }
    if (f->nb >= MAXB) fail_msg("too many blocks");
    int i = f->nb++;
    f->b[i] = (blk){p, heap, size, 0xabcdefull * (uint64_t)(i + 7), size, size, u, true, debug, name};
    blk_fill(f, i);
}

static void freed_block(fx *f, int i)
{
    blk *b = &f->b[i];
    size_t u = hm_heap_usable_size(f->h[b->heap], b->p);
    if (u) diff("freed block %s: usable size %zu", b->name, u);
    b->live = false;
    hm_status st = hm_heap_free(f->h[b->heap], b->p);
    if (st != HM_E_HOST_INVALIDOPERATION) diff("freed block %s: a second free says %s", b->name, hm_status_name(st));
}

/* realloc of block i to size returned f->result: the contents up to the smaller size are kept. */
static void realloc_post(fx *f, int i, size_t size)
{
    blk *b = &f->b[i];
    void *q = f->result;
    if (!q) {
        diff("realloc: succeeded but returned NULL");
        return;
    }
    if (q != b->p && hm_heap_usable_size(f->h[b->heap], b->p)) diff("realloc: the old block %p is still live", b->p);
    b->p = q;
    b->size = size;
    if (b->valid > size) b->valid = size;
    b->usable = hm_heap_usable_size(f->h[b->heap], q);
    if (b->usable < size) diff("realloc: usable size %zu < %zu", b->usable, size);
}

/* heap operations */
static hm_status op_alloc_small(fx *f) { return hm_heap_alloc(H(f), 700, HM_LEVEL_TASK, &f->result); }
static void post_alloc_small(fx *f) { new_block(f, 0, f->result, 700, 16, false, false, "new small"); }
/* Gives back the empty pages the heap keeps committed ahead, so that the next small block of a new
 * class needs a commit in the Normal state too. */
static void prep_trim(fx *f)
{
    hm_status st = hm_heap_trim(H(f));
    if (st != HM_OK) fail_msg("fixture: trim: %s (%s)", hm_status_name(st), hm_last_detail());
}
static hm_status op_alloc_newseg(fx *f) { return hm_heap_alloc(f->h[1], 100, HM_LEVEL_TASK, &f->result); }
static void post_alloc_newseg(fx *f) { new_block(f, 1, f->result, 100, 16, false, false, "new small (new segment)"); }
/* (larger than any cached block's reservation, HM_LBLOCK_ROOM: a fresh block) */
static hm_status op_alloc_large(fx *f) { return hm_heap_alloc(H(f), 9 * MiB, HM_LEVEL_TASK, &f->result); }
static void post_alloc_large(fx *f) { new_block(f, 0, f->result, 9 * MiB, 4096, false, false, "new large"); }
static hm_status op_alloc_large_grow(fx *f) { return hm_heap_alloc(H(f), 2560 * KiB, HM_LEVEL_TASK, &f->result); }
static void post_alloc_large_grow(fx *f) { new_block(f, 0, f->result, 2560 * KiB, 4096, false, false, "new large (grown)"); }
static hm_status op_alloc_aligned(fx *f) { return hm_heap_alloc_aligned(H(f), 5000, 4096, HM_LEVEL_TASK, &f->result); }
static void post_alloc_aligned(fx *f) { new_block(f, 0, f->result, 5000, 4096, false, false, "new aligned"); }
static hm_status op_alloc_debug(fx *f) { return hm_heap_alloc_debug(H(f), 300, HM_LEVEL_TASK, "sweep.c", 1, &f->result); }
static void post_alloc_debug(fx *f) { new_block(f, 0, f->result, 300, 16, false, true, "new debug"); }
static hm_status op_alloc_debug_large(fx *f)
{
    return hm_heap_alloc_debug(H(f), 1 * MiB + 100, HM_LEVEL_TASK, "sweep.c", 2, &f->result);
}
static void post_alloc_debug_large(fx *f) { new_block(f, 0, f->result, 1 * MiB + 100, 16, false, true, "new debug large"); }
static hm_status op_calloc(fx *f) { return hm_heap_calloc(H(f), 100, 50, HM_LEVEL_TASK, &f->result); }
static void post_calloc(fx *f) { new_block(f, 0, f->result, 5000, 16, true, false, "new calloc"); }
static hm_status op_realloc_small_large(fx *f)
{
    return hm_heap_realloc(H(f), f->b[f->small].p, 3276 * KiB, HM_LEVEL_TASK, &f->result);
}
static void post_realloc_small_large(fx *f) { realloc_post(f, f->small, 3276 * KiB); }
static hm_status op_realloc_inplace(fx *f)
{
    return hm_heap_realloc(H(f), f->b[f->large1].p, 1536 * KiB, HM_LEVEL_TASK, &f->result);
}
static void post_realloc_inplace(fx *f) { realloc_post(f, f->large1, 1536 * KiB); }
static hm_status op_realloc_moved(fx *f)
{
    return hm_heap_realloc(H(f), f->b[f->large2].p, 5 * MiB, HM_LEVEL_TASK, &f->result);
}
static void post_realloc_moved(fx *f) { realloc_post(f, f->large2, 5 * MiB); }
static hm_status op_realloc_shrink(fx *f)
{
    return hm_heap_realloc(H(f), f->b[f->large1].p, 2000, HM_LEVEL_TASK, &f->result);
}
static void post_realloc_shrink(fx *f) { realloc_post(f, f->large1, 2000); }
static hm_status op_free_small(fx *f) { return hm_heap_free(H(f), f->b[f->s0].p); }
static void post_free_small(fx *f) { freed_block(f, f->s0); }
static hm_status op_free_large(fx *f) { return hm_heap_free(H(f), f->b[f->large1].p); }
static void post_free_large(fx *f) { freed_block(f, f->large1); }
static hm_status op_free_debug(fx *f) { return hm_heap_free(H(f), f->b[f->dbg_small].p); }
static void post_free_debug(fx *f) { freed_block(f, f->dbg_small); }
static hm_status op_free_debug_large(fx *f) { return hm_heap_free(H(f), f->b[f->dbg_large].p); }
static void post_free_debug_large(fx *f) { freed_block(f, f->dbg_large); }
static hm_status op_trim(fx *f) { return hm_heap_trim(H(f)); }
static void post_trim(fx *f)
{
    /* (every cached large block is this thread's, so a trim that gave all back leaves none) */
    hm_heap_stats s = hst(H(f));
    if (s.cached_large_bytes) diff("trim: %" PRIu64 " bytes of large blocks still cached", s.cached_large_bytes);
}
static hm_status op_destroy_heap(fx *f) { return hm_heap_destroy(H(f)); }
static void post_destroy_heap(fx *f)
{
    f->h[0] = NULL;
    for (int i = 0; i < f->nb; i++)
        if (f->b[i].heap == 0) f->b[i].live = false;
}
static hm_status op_create_heap(fx *f) { return hm_heap_create(f->m[0], f->hflags, &f->h[2]); }
static void post_create_heap(fx *f)
{
    if (!f->h[2]) {
        diff("create: succeeded but returned NULL");
        return;
    }
    hm_heap_stats s = hst(f->h[2]);
    if (s.live_blocks || s.segments || s.committed_pages) diff("create: a new heap is not empty");
}

/* manager operations (VirtualAlloc and friends) */
static void expect_region(fx *f, const void *p, uint32_t state, uint32_t protect, size_t size, const char *what)
{
    hm_region r;
    hm_status st = hm_virtual_query(f->m[0], p, &r);
    if (st != HM_OK) {
        diff("%s: query %p: %s", what, p, hm_status_name(st));
        return;
    }
    if (r.state != state || r.protect != protect || (size && r.size != size))
        diff("%s: region at %p: state %#x protect %#x size %#zx; expected %#x %#x %#zx", what, p, r.state, r.protect, r.size,
             state, protect, size);
}

static uintptr_t ww_count(fx *f, void *base, size_t size, uint32_t flags)
{
    f->count = 16;
    hm_status st = hm_get_write_watch(f->m[0], flags, base, size, f->addrs, &f->count, &f->gran);
    if (st != HM_OK) {
        diff("GetWriteWatch: %s (%s)", hm_status_name(st), hm_last_detail());
        return (uintptr_t)-1;
    }
    return f->count;
}

static hm_status op_reserve(fx *f) { return hm_virtual_alloc(f->m[0], NULL, 1 * MiB, HM_MEM_RESERVE, HM_PAGE_READWRITE, &f->result); }
static void post_reserve(fx *f) { expect_region(f, f->result, HM_MEM_RESERVE, 0, 1 * MiB, "reserve"); }
static hm_status op_reserve_commit(fx *f)
{
    return hm_virtual_alloc(f->m[0], NULL, 256 * KiB, HM_MEM_RESERVE | HM_MEM_COMMIT, HM_PAGE_READWRITE, &f->result);
}
static void post_reserve_commit(fx *f)
{
    expect_region(f, f->result, HM_MEM_COMMIT, HM_PAGE_READWRITE, 256 * KiB, "reserve+commit");
    if (f->result && tu_writable((char *)f->result + 5 * PAGE) != 1) diff("reserve+commit: page 5 not writable");
}
static hm_status op_commit(fx *f)
{
    return hm_virtual_alloc(f->m[0], f->A + 2 * PAGE, 11 * PAGE, HM_MEM_COMMIT, HM_PAGE_EXECUTE_READWRITE, &f->result);
}
static void post_commit(fx *f)
{
    expect_region(f, f->A, HM_MEM_COMMIT, HM_PAGE_READWRITE, 2 * PAGE, "commit");
    expect_region(f, f->A + 2 * PAGE, HM_MEM_COMMIT, HM_PAGE_EXECUTE_READWRITE, 11 * PAGE, "commit");
}
static hm_status op_ww_reserve(fx *f)
{
    return hm_virtual_alloc(f->m[0], NULL, 256 * KiB, HM_MEM_RESERVE | HM_MEM_WRITE_WATCH, HM_PAGE_READWRITE, &f->result);
}
static void post_ww_reserve(fx *f)
{
    expect_region(f, f->result, HM_MEM_RESERVE, 0, 256 * KiB, "write-watch reserve");
    if (f->result && ww_count(f, f->result, 256 * KiB, 0) != 0) diff("write-watch reserve: %lu pages listed", (unsigned long)f->count);
}
static hm_status op_ww_reserve_commit(fx *f)
{
    return hm_virtual_alloc(f->m[0], NULL, 256 * KiB, HM_MEM_RESERVE | HM_MEM_COMMIT | HM_MEM_WRITE_WATCH, HM_PAGE_READWRITE,
                            &f->result);
}
static void post_ww_reserve_commit(fx *f)
{
    expect_region(f, f->result, HM_MEM_COMMIT, HM_PAGE_READWRITE, 256 * KiB, "write-watch reserve+commit");
    if (!f->result) return;
    if (ww_count(f, f->result, 256 * KiB, 0) != 0) diff("write-watch reserve+commit: %lu pages listed", (unsigned long)f->count);
    ((volatile char *)f->result)[3 * PAGE] = 1;
    if (ww_count(f, f->result, 256 * KiB, 0) != 1) diff("write-watch reserve+commit: %lu pages listed after one write", (unsigned long)f->count);
}
static hm_status op_decommit(fx *f) { return hm_virtual_free(f->m[0], f->A + PAGE, 9 * PAGE, HM_MEM_DECOMMIT); }
static void post_decommit(fx *f)
{
    forget_pages(f, (uintptr_t)f->A + PAGE, (uintptr_t)f->A + 10 * PAGE);
    expect_region(f, f->A, HM_MEM_COMMIT, HM_PAGE_READWRITE, PAGE, "decommit");
    expect_region(f, f->A + PAGE, HM_MEM_RESERVE, 0, 11 * PAGE, "decommit");
}
static hm_status op_decommit_ww(fx *f) { return hm_virtual_free(f->m[0], f->W, 4 * PAGE, HM_MEM_DECOMMIT); }
static void post_decommit_ww(fx *f)
{
    forget_pages(f, (uintptr_t)f->W, (uintptr_t)f->W + 4 * PAGE);
    expect_region(f, f->W, HM_MEM_RESERVE, 0, 4 * PAGE, "decommit (write-watched)");
    expect_region(f, f->W + 4 * PAGE, HM_MEM_COMMIT, HM_PAGE_READWRITE, 4 * PAGE, "decommit (write-watched)");
    if (ww_count(f, f->W, 16 * PAGE, 0) != 0) diff("decommit (write-watched): %lu pages listed", (unsigned long)f->count);
}
static hm_status op_release(fx *f) { return hm_virtual_free(f->m[0], f->A, 0, HM_MEM_RELEASE); }
static void post_release(fx *f)
{
    forget_pages(f, (uintptr_t)f->A, (uintptr_t)f->A + 16 * PAGE);
    expect_region(f, f->A, HM_MEM_FREE, HM_PAGE_NOACCESS, 0, "release");
}
static hm_status op_release_ww(fx *f) { return hm_virtual_free(f->m[0], f->W, 0, HM_MEM_RELEASE); }
static void post_release_ww(fx *f)
{
    forget_pages(f, (uintptr_t)f->W, (uintptr_t)f->W + 16 * PAGE);
    expect_region(f, f->W, HM_MEM_FREE, HM_PAGE_NOACCESS, 0, "release (write-watched)");
}
static hm_status op_protect(fx *f) { return hm_virtual_protect(f->m[0], f->A, 4 * PAGE, HM_PAGE_READONLY, &f->old); }
static void post_protect(fx *f)
{
    if (f->old != HM_PAGE_READWRITE) diff("protect: old protection %#x", f->old);
    expect_region(f, f->A, HM_MEM_COMMIT, HM_PAGE_READONLY, 4 * PAGE, "protect");
}
static hm_status op_protect_ww(fx *f) { return hm_virtual_protect(f->m[0], f->W, 8 * PAGE, HM_PAGE_READONLY, &f->old); }
static void post_protect_ww(fx *f)
{
    if (f->old != HM_PAGE_READWRITE) diff("protect (write-watched): old protection %#x", f->old);
    expect_region(f, f->W, HM_MEM_COMMIT, HM_PAGE_READONLY, 8 * PAGE, "protect (write-watched)");
}
static hm_status op_reset(fx *f) { return hm_virtual_alloc(f->m[0], f->A, 10 * PAGE, HM_MEM_RESET, HM_PAGE_READWRITE, &f->result); }
static void post_reset(fx *f)
{
    maybe_pages(f, (uintptr_t)f->A, (uintptr_t)f->A + 10 * PAGE, true); /* SPEC 2.1: unchanged or zero */
    expect_region(f, f->A, HM_MEM_COMMIT, HM_PAGE_READWRITE, 4 * PAGE, "reset");
    expect_region(f, f->A + 4 * PAGE, HM_MEM_RESERVE, 0, 4 * PAGE, "reset");
    expect_region(f, f->A + 8 * PAGE, HM_MEM_COMMIT, HM_PAGE_READONLY, 2 * PAGE, "reset");
}
static hm_status op_reset_undo(fx *f) { return hm_virtual_alloc(f->m[0], f->R, 4 * PAGE, HM_MEM_RESET_UNDO, HM_PAGE_READWRITE, &f->result); }
static void post_reset_undo(fx *f)
{
    maybe_pages(f, (uintptr_t)f->R, (uintptr_t)f->R + 4 * PAGE, false); /* proved kept */
    expect_region(f, f->R, HM_MEM_COMMIT, HM_PAGE_READWRITE, 4 * PAGE, "reset undo");
}
static hm_region qr;
static hm_status op_query(fx *f) { return hm_virtual_query(f->m[0], f->A + 100, &qr); }
static void post_query(fx *f)
{
    if (qr.base != f->A || qr.allocation_base != f->A || qr.state != HM_MEM_COMMIT || qr.size != 4 * PAGE ||
        qr.protect != HM_PAGE_READWRITE)
        diff("query: %p %p state %#x size %#zx protect %#x", qr.base, qr.allocation_base, qr.state, qr.size, qr.protect);
}
static hm_status op_getww_reset(fx *f)
{
    f->count = 16;
    return hm_get_write_watch(f->m[0], HM_WRITE_WATCH_FLAG_RESET, f->W, 16 * PAGE, f->addrs, &f->count, &f->gran);
}
/* Pages listed after a reset: none; after a reset that absorbed a refused re-protection (the
 * fallback, F below), at most the pages written before, listed again. */
static void ww_after_reset(fx *f, const char *what)
{
    uintptr_t n = ww_count(f, f->W, 16 * PAGE, 0);
    if (n == 0 || (absorbing && n != (uintptr_t)-1 && n <= 2)) return;
    diff("%s: %lu pages listed afterwards", what, (unsigned long)n);
}
static void post_getww_reset(fx *f)
{
    if (f->count != 2 || f->addrs[0] != f->W || f->addrs[1] != f->W + 2 * PAGE || f->gran != PAGE)
        diff("GetWriteWatch: %lu pages (%p, %p), granularity %u; expected W+0 and W+2", (unsigned long)f->count, f->addrs[0],
             f->addrs[1], f->gran);
    ww_after_reset(f, "GetWriteWatch with reset");
}
static hm_status op_resetww(fx *f) { return hm_reset_write_watch(f->m[0], f->W, 16 * PAGE); }
static void post_resetww(fx *f) { ww_after_reset(f, "ResetWriteWatch"); }
static hm_status op_mgr_create(fx *f) { return hm_manager_create("limit=64M", &f->m[1]); }
static void post_mgr_create(fx *f)
{
    if (!f->m[1]) {
        diff("manager create: succeeded but returned NULL");
        return;
    }
    hm_manager_stats s = mst(f->m[1]);
    if (s.limit != 64 * MiB || s.state != HM_MANAGER_RUNNING || s.charge) diff("manager create: limit %" PRIu64 " state %d charge %" PRIu64, s.limit, (int)s.state, s.charge);
}
static hm_status op_mgr_destroy(fx *f) { return hm_manager_destroy(f->m[1]); }
static void post_mgr_destroy(fx *f) { f->m[1] = NULL; }
static hm_status op_memory_load(fx *f) { return hm_manager_get_memory_load(f->m[0], &f->load, &f->avail); }
static void post_memory_load(fx *f)
{
    hm_manager_stats s = mst(f->m[0]);
    uint32_t own = (uint32_t)(s.charge * 100 / s.limit);
    if (f->load > 100 || f->load < own) diff("memory load %u (own %u)", f->load, own);
    if (f->avail > s.limit - s.charge) diff("available %" PRIu64 " > limit - charge %" PRIu64, f->avail, s.limit - s.charge);
}

/* What each operation may absorb (succeed although one platform call failed), and why:
 *   P (purge): emptied heap pages are decommitted when they are due, at once while memory is Low
 *     (heap.h); "a refused decommit keeps its pages committed and cached: the books stay exact"
 *     (heap.c, purge; page_new and page_empty purge opportunistically). mprotect and madvise (a
 *     two-view heap's hole punch counts as madvise) may fail there under any operation that empties
 *     or takes a page: alloc small, free small, realloc (the old small block goes).
 *   G (grow): a cached large block grows to serve a larger request; a refused grow puts it back and a
 *     fresh block is made (heap.c large_alloc); realloc grows in place and, when that is refused,
 *     moves the block (hm_heap_realloc): mprotect.
 *   O (old block): realloc's old large block goes after its bytes moved; if its release is refused it
 *     is parked, charged and counted as cached, until a trim, a refused commit or destroy (heap.c
 *     retire, park): munmap (two-view heaps), mprotect, madvise.
 *   V (views): after a two-view block's or segment's release, a refused munmap of its read-write view
 *     keeps the view on the heap's list, unmapped by the next trim or destroy; it is not charged (heap.c
 *     views_close): munmap.
 *   T (trim): trim gives back what it can; a refusal kept for later (a thread cache's block parked, an
 *     empty page kept by page_empty's purge) is given back by trim's own purge and drain: every kind.
 *   D (decommit of write-watched pages): the dirty-bit reset after the discard only rebuilds page
 *     tables under the THP guard (dirty.h); without it "changes nothing that reads differently": uffd.
 *   F (write-watch fallback): a page that cannot be write-protected again stays written and is listed
 *     again next time, never lost (special.c watch scan and reset): mprotect. (So a ResetWriteWatch
 *     that says HM_OK may leave pages listed, which hostmem.h's "no page of the range counts as
 *     written afterwards" does not foresee: reported, not failed.)
 *   S (a write-watched allocation's record goes): after the release, a refused munmap of the record's
 *     arrays or a refused end of the kernel's write tracking is kept and retried at the next attach or
 *     detach (special.c stale_retry); neither is in any manager's books: munmap, uffd.
 *   R (MEM_RESET): without pagemap every page counts as populated (reset.c): procfs.
 *   C (manager create): /proc and /sys only resolve defaults and percentages; the limit is explicit and
 *     physical memory falls back to sysconf: procfs.
 *   L (memory load): the system's share of the load comes from /proc or the cgroup; unreadable, the
 *     load is the manager's own: procfs.
 *   E (emptied first): the release of an allocation's committed pages where no end of the range
 *     splits a kernel mapping discards them first, then protects them; the discard cannot be undone,
 *     so a refused protection is tried again and the release completes (vmap_internal.h,
 *     hm_decommit_plan): mprotect.
 * Not all-or-nothing by design (OPF_PARTIAL): trim ("what the kernel refuses to give back stays
 * cached (the books stay exact) and trim says so", heap.c hm_heap_trim), a heap's destruction ("a
 * refusal stops here with what is left still recorded, so that destroy can be called again"), and a
 * manager's (what it could release went, the rest stays recorded; destroy may be called again). */
#define A_S (K(HM_OS_MUNMAP) | K(HM_OS_UFFD))
#define A_P (K(HM_OS_MPROTECT) | K(HM_OS_MADVISE))
#define A_G K(HM_OS_MPROTECT)
#define A_O (K(HM_OS_MUNMAP) | K(HM_OS_MPROTECT) | K(HM_OS_MADVISE))
#define A_V K(HM_OS_MUNMAP)

static const opdef ops[] = {
    {"alloc small", FX_HEAP, NULL, op_alloc_small, post_alloc_small, 0, A_P, OPF_RESULT},
    {"alloc small (no empty page)", FX_HEAP, prep_trim, op_alloc_small, post_alloc_small, 0, A_P, OPF_RESULT},
    {"alloc small (new segment)", FX_HEAP, NULL, op_alloc_newseg, post_alloc_newseg, 0, 0, OPF_RESULT},
    {"alloc large", FX_HEAP, NULL, op_alloc_large, post_alloc_large, 0, 0, OPF_RESULT},
    {"alloc large (grows a cached block)", FX_HEAP, NULL, op_alloc_large_grow, post_alloc_large_grow, 0, A_G, OPF_RESULT},
    {"alloc aligned", FX_HEAP, NULL, op_alloc_aligned, post_alloc_aligned, 0, A_P, OPF_RESULT},
    {"alloc debug", FX_HEAP, NULL, op_alloc_debug, post_alloc_debug, 0, A_P, OPF_RESULT},
    {"alloc debug large", FX_HEAP, NULL, op_alloc_debug_large, post_alloc_debug_large, 0, 0, OPF_RESULT},
    {"calloc", FX_HEAP, NULL, op_calloc, post_calloc, 0, A_P, OPF_RESULT},
    {"realloc small->large", FX_HEAP, NULL, op_realloc_small_large, post_realloc_small_large, 0, A_P, OPF_RESULT},
    {"realloc large->larger in place", FX_HEAP, NULL, op_realloc_inplace, post_realloc_inplace, 0, A_G | A_O, OPF_RESULT},
    {"realloc large->larger moved", FX_HEAP, NULL, op_realloc_moved, post_realloc_moved, 0, A_O, OPF_RESULT},
    {"realloc shrink large->small", FX_HEAP, NULL, op_realloc_shrink, post_realloc_shrink, 0, A_P | A_O, OPF_RESULT},
    {"free small", FX_HEAP, NULL, op_free_small, post_free_small, 0, A_P, 0},
    {"free large", FX_HEAP, NULL, op_free_large, post_free_large, 0, A_V, 0},
    {"free debug", FX_HEAP, NULL, op_free_debug, post_free_debug, 0, A_P, 0},
    {"free debug large", FX_HEAP, NULL, op_free_debug_large, post_free_debug_large, 0, A_V, 0},
    {"trim", FX_HEAP, NULL, op_trim, post_trim, 0, K_ALL, OPF_PARTIAL},
    {"destroy heap", FX_HEAP, free_debug_blocks, op_destroy_heap, post_destroy_heap, 0, A_V, OPF_PARTIAL},
    {"create heap", FX_HEAP, NULL, op_create_heap, post_create_heap, 0, 0, OPF_RESULT},
    {"reserve", FX_VM, NULL, op_reserve, post_reserve, 0, 0, OPF_RESULT},
    {"reserve+commit", FX_VM, NULL, op_reserve_commit, post_reserve_commit, 0, 0, OPF_RESULT},
    {"commit", FX_VM, NULL, op_commit, post_commit, 0, 0, 0},
    {"write-watch reserve", FX_VM, NULL, op_ww_reserve, post_ww_reserve, 0, 0, OPF_RESULT},
    {"write-watch reserve+commit", FX_VM, NULL, op_ww_reserve_commit, post_ww_reserve_commit, 0, 0, OPF_RESULT},
    {"decommit", FX_VM, NULL, op_decommit, post_decommit, 0, 0, 0},
    {"decommit (write-watched)", FX_VM, NULL, op_decommit_ww, post_decommit_ww, 0, K(HM_OS_UFFD), 0},
    {"release", FX_VM, NULL, op_release, post_release, 0, 0, 0},
    {"release (write-watched)", FX_VM, NULL, op_release_ww, post_release_ww, 0, A_S, 0},
    {"protect", FX_VM, NULL, op_protect, post_protect, 0, 0, 0},
    {"protect (write-watched)", FX_VM, NULL, op_protect_ww, post_protect_ww, 0, 0, 0},
    {"reset", FX_VM, NULL, op_reset, post_reset, 0, K(HM_OS_PROCFS), 0},
    {"reset undo", FX_VM, NULL, op_reset_undo, post_reset_undo, 0, 0, 0},
    {"query", FX_VM, NULL, op_query, post_query, 0, 0, 0},
    {"GetWriteWatch with reset", FX_VM, NULL, op_getww_reset, post_getww_reset, 0, K(HM_OS_MPROTECT), 0},
    {"ResetWriteWatch", FX_VM, NULL, op_resetww, post_resetww, 0, K(HM_OS_MPROTECT), 0},
    {"manager create", FX_VM, NULL, op_mgr_create, post_mgr_create, 1, K(HM_OS_PROCFS), OPF_RESULT},
    {"manager destroy", FX_SECOND, NULL, op_mgr_destroy, post_mgr_destroy, 1, A_S | K(HM_OS_MPROTECT), OPF_STATE | OPF_PARTIAL},
    {"manager get memory load", FX_VM, NULL, op_memory_load, post_memory_load, 0, K(HM_OS_PROCFS), 0},
};
#define NOPS (sizeof ops / sizeof ops[0])

/* ---- the sweep ----------------------------------------------------------------------------------- */

typedef struct hkind {
    const char *name;
    uint32_t flags;
} hkind;

typedef struct tally {
    unsigned long calls[HM_OS_CALL_COUNT]; /* in the reference run */
    unsigned long hits, failed, absorbed, efail, bad, known, known_bad;
} tally;

typedef struct ref {
    snap post;
    sig s;
} ref;
static ref REF;
static sig SIG_NOW;
static snap PRE, NOW;

static unsigned long defects, efails_total, hits_total, runs_total;

static void build(fx *f, const opdef *op, int state, const hkind *hk)
{
    if (op->fixture == FX_HEAP) build_heap(f, state, hk->flags);
    else if (op->fixture == FX_SECOND) build_second(f);
    else build_vm(f);
    if (op->prep) op->prep(f);
}

static char label[256];
/* "op|state|heap kind|call kind": the call kind with "+" when the call and every later one of its kind
 * fail (persistent), with ":EACCES" when the error is not ENOMEM. */
static void set_label(const opdef *op, int state, const hkind *hk, int kind, int err, bool persistent)
{
    snprintf(label, sizeof label, "%s|%s|%s|%s%s%s", op->name, state_name[state], hk ? hk->name : "-",
             kind >= 0 ? kind_name[kind] : "-", persistent ? "+" : "", err == EACCES ? ":EACCES" : "");
}

/* A field of a known_defects entry against a label's: "*" matches anything; in the last field a
 * plain call kind ("mprotect") also matches its variants ("mprotect+", "mprotect:EACCES"). */
static bool field_match(const char *pat_, size_t plen, const char *s, size_t slen, bool kind)
{
    if ((plen == 1 && pat_[0] == '*') || (plen == slen && !memcmp(pat_, s, slen))) return true;
    return kind && plen < slen && !memcmp(pat_, s, plen) && !memchr(pat_, '+', plen) && !memchr(pat_, ':', plen) &&
           (s[plen] == '+' || s[plen] == ':');
}

/* Whether label (op|state|heap|kind) is listed in known_defects. */
static bool is_known(const char *l)
{
    for (size_t i = 0; i < sizeof known_defects / sizeof known_defects[0]; i++) {
        const char *e = known_defects[i], *s = l;
        if (!e) continue;
        bool match = true;
        for (int fld = 0; fld < 4 && match; fld++) {
            const char *ee = strchr(e, '|'), *se = strchr(s, '|');
            size_t el = ee ? (size_t)(ee - e) : strlen(e), sl = se ? (size_t)(se - s) : strlen(s);
            match = field_match(e, el, s, sl, fld == 3);
            e += el + (ee ? 1 : 0);
            s += sl + (se ? 1 : 0);
        }
        if (match) return true;
    }
    return false;
}

static bool known_run(void)
{
    const char *v = getenv("FAULT_SWEEP_KNOWN");
    return v && !strcmp(v, "run");
}

static char op_detail[256]; /* hm_last_detail() right after the call under test */

static void report(const char *what, unsigned long n, hm_status st, bool known)
{
    if (known) {
        print_message("  known defect still fails: %s%s n=%lu: status %s\n", label, what, n, hm_status_name(st));
        diffs_print(false);
    } else {
        print_error("DEFECT %s%s n=%lu: status %s (%s)\n", label, what, n, hm_status_name(st), op_detail);
        diffs_print(true);
        defects++;
    }
}

/* The run without a fault: what every other run of (op, state, heap kind) is compared with. */
static void run_reference(const opdef *op, int state, const hkind *hk, tally *t)
{
    fx *f = &F;
    build(f, op, state, hk);
    unsigned long before[HM_OS_CALL_COUNT];
    for (int k = 0; k < HM_OS_CALL_COUNT; k++) before[k] = hm_os_calls((hm_os_call_t)k);
    hm_status st = op->run(f);
    for (int k = 0; k < HM_OS_CALL_COUNT; k++) t->calls[k] = hm_os_calls((hm_os_call_t)k) - before[k];
    set_label(op, state, hk, -1, ENOMEM, false);
    if (st != HM_OK) fail_msg("%s: the reference run (no fault) failed: %s (%s)", label, hm_status_name(st), hm_last_detail());
    op_detail[0] = 0;
    diffs_clear();
    op->post(f);
    check_all(f, true);
    if (ndiffs) {
        report(" (reference run, no fault)", 0, st, false);
        diffs_clear();
    }
    snap_take(f, &REF.post, regions_now);
    sig_take(regions_now, &REF.s);
    fx_teardown(f);
}

/* After a successful call: what the reference left (semantic: the live blocks only, the books exact). */
static void compare_with_reference(fx *f, bool semantic)
{
    snap_take(f, &NOW, regions_now);
    cmp_snaps(&REF.post, &NOW, false, semantic);
    if (!semantic) {
        sig_take(regions_now, &SIG_NOW);
        cmp_sigs(&REF.s, &SIG_NOW);
    }
    check_all(f, true);
}

/* One run: op with the nth next call of kind failing. false when no call failed (the sweep of kind ends). */
static bool run_case(const opdef *op, int state, const hkind *hk, int kind, int err, bool persistent, unsigned long n, tally *t,
                     bool known)
{
    fx *f = &F;
    build(f, op, state, hk);
    snap_take(f, &PRE, regions_pre);
    runs_total++;
    unsigned long inj = hm_os_faults_injected();
    hm_os_fault_inject((hm_os_call_t)kind, n, err, persistent);
    hm_status st = op->run(f);
    hm_os_fault_clear();
    snprintf(op_detail, sizeof op_detail, "%s", st ? hm_last_detail() : "");
    bool hit = hm_os_faults_injected() != inj;
    set_label(op, state, hk, kind, err, persistent);
    diffs_clear();
    const char *what = "";
    if (!hit) { /* it made fewer than n calls of this kind: the plain operation, as the reference */
        if (st != HM_OK) diff("without a fault: %s (%s)", hm_status_name(st), hm_last_detail());
        else {
            op->post(f);
            compare_with_reference(f, false);
        }
        what = " (no fault fired)";
    } else {
        t->hits++;
        hits_total++;
        if (st == HM_OK) {
            bool absorb = op->absorb & K(kind);
            absorbing = absorb;
            if (absorb) t->absorbed++;
            else {
                diff("the call succeeded though its %s call %lu%s failed", kind_name[kind], n, persistent ? " and later ones" : "");
                what = " (success hides the failure)";
            }
            op->post(f);
            absorbing = false;
            compare_with_reference(f, absorb);
        } else if (st == HM_E_FAIL) {
            /* SPEC 3.4: only when a rollback fails too, which one failed call cannot cause; with every
             * later call of the kind failing it may (then the map's own invariants still hold, the
             * kernel may differ: that is what E_FAIL says) */
            t->efail++;
            efails_total++;
            if (!persistent) diff("E_FAIL for one failed %s call: probable defect (%s)", kind_name[kind], op_detail);
            hm_manager *m = f->m[op->mgr];
            uint32_t load;
            hm_status after = m ? hm_manager_get_memory_load(m, &load, NULL) : HM_E_HOST_CLRNOTAVAILABLE;
            if (after != HM_E_HOST_CLRNOTAVAILABLE) diff("after E_FAIL the manager answers %s, not HOST_E_CLRNOTAVAILABLE", hm_status_name(after));
            if (hm_vmap_check(false) != HM_OK) diff("after E_FAIL: hm_vmap_check: %s", hm_last_detail());
            what = " (E_FAIL)";
        } else { /* SPEC 3.2: E_OUTOFMEMORY / ERROR_NOT_ENOUGH_MEMORY, books unchanged (2.7.3) */
            t->failed++;
            /* a heap whose destruction failed half-way is only destroyed again (heap.c hm_heap_destroy):
             * its statistics are not looked at (a dangling segment list would crash them) */
            f->zombie = op->run == op_destroy_heap;
            if (st != HM_E_NOT_ENOUGH_MEMORY && st != HM_E_OUTOFMEMORY)
                diff("status %s (%s), expected ERROR_NOT_ENOUGH_MEMORY or E_OUTOFMEMORY", hm_status_name(st), op_detail);
            if ((op->flags & OPF_RESULT) && (f->result || f->m[1] || f->h[2]))
                diff("the failed call returned %p", f->result ? f->result : f->m[1] ? (void *)f->m[1] : (void *)f->h[2]);
            snap_take(f, &NOW, regions_now);
            if (!(op->flags & OPF_PARTIAL)) {
                cmp_snaps(&PRE, &NOW, op->flags & OPF_STATE, false);
                cmp_regions(regions_pre, regions_now);
                check_all(f, true);
            } else if (op->run == op_destroy_heap) { /* its blocks and its statistics are going */
                check_all(f, false);
            } else {
                cmp_snaps(&PRE, &NOW, op->flags & OPF_STATE, true);
                check_all(f, true);
            }
            f->result = NULL;
            f->zombie = false;
            hm_status st2 = op->run(f); /* the same call again, without a fault */
            if (st2 != HM_OK) diff("the same call again, without a fault: %s (%s)", hm_status_name(st2), hm_last_detail());
            else {
                op->post(f);
                compare_with_reference(f, false);
            }
        }
    }
    if (ndiffs) {
        if (known) t->known_bad++;
        else t->bad++;
        report(what, n, st, known);
    }
    fx_teardown(f);
    return hit;
}

/* The sweeps of one (operation, state, heap kind): each kind of call failing with ENOMEM in turn; for
 * an executable heap also mprotect failing with EACCES, as where the system forbids executable pages
 * (SELinux execmem) it does. */
static void sweep(const opdef *op, int state, const hkind *hk)
{
    tally t;
    memset(&t, 0, sizeof t);
    run_reference(op, state, hk, &t);
    for (int pass = 0; pass < 2 * HM_OS_CALL_COUNT + 1; pass++) {
        bool persistent = pass >= HM_OS_CALL_COUNT && pass < 2 * HM_OS_CALL_COUNT;
        int kind = pass < 2 * HM_OS_CALL_COUNT ? pass % HM_OS_CALL_COUNT : HM_OS_MPROTECT;
        int err = pass < 2 * HM_OS_CALL_COUNT ? ENOMEM : EACCES;
        if (err == EACCES && !(hk && (hk->flags & HM_HEAP_EXECUTABLE))) continue;
        set_label(op, state, hk, kind, err, persistent);
        bool known = is_known(label);
        if (known && !known_run()) {
            print_message("KNOWN DEFECT (skipped): %s\n", label);
            t.known++;
            continue;
        }
        unsigned long known_bad = t.known_bad, hits = t.hits;
        char kl[256];
        snprintf(kl, sizeof kl, "%s", label);
        unsigned long n = 1;
        while (run_case(op, state, hk, kind, err, persistent, n, &t, known)) {
            if (++n > 200) fail_msg("%s: more than 200 calls", label);
        }
        if (known && t.hits > hits && t.known_bad == known_bad) print_message("KNOWN DEFECT entry no longer fails: %s (delete it)\n", kl);
    }
    char calls[160] = "";
    for (int k = 0; k < HM_OS_CALL_COUNT; k++)
        if (t.calls[k]) {
            size_t l = strlen(calls);
            snprintf(calls + l, sizeof calls - l, "%s%s %lu", l ? ", " : "", kind_name[k], t.calls[k]);
        }
    print_message("%-34s %-6s %-22s calls [%s]: %lu faults, %lu failed, %lu absorbed, %lu E_FAIL, %lu bad%s\n", op->name,
                  state_name[state], hk ? hk->name : "-", calls[0] ? calls : "none", t.hits, t.failed, t.absorbed, t.efail,
                  t.bad, t.known ? " (known defects skipped)" : "");
}

static bool dual_run(void)
{
    const char *v = getenv("HOSTMEM_EXEC_VIEWS");
    return v && !strcmp(v, "dual");
}

static void test_sweep(void **state)
{
    (void)state;
    bool dual = dual_run() || !hm_os_wx_allowed();
    const char *only = getenv("FAULT_SWEEP_ONLY");
    static const hkind kinds_plain[] = {{"threadsafe", HM_HEAP_THREADSAFE}, {"single", 0}};
    hkind exec[2] = {{dual ? "exec-dual" : "exec", HM_HEAP_EXECUTABLE},
                     {dual ? "exec-dual+threadsafe" : "exec+threadsafe", HM_HEAP_EXECUTABLE | HM_HEAP_THREADSAFE}};
    print_message("fault sweep: executable heaps %s; write watch: %s\n", dual ? "in two views" : "read-write-execute",
                  hm_write_watch_describe());
    for (size_t i = 0; i < NOPS; i++) {
        const opdef *op = &ops[i];
        if (only && !strstr(op->name, only)) continue;
        if (op->fixture != FX_HEAP) {
            if (!dual_run()) sweep(op, ST_NORMAL, NULL); /* (the same in both runs: once) */
            continue;
        }
        for (int st = ST_NORMAL; st <= ST_LOW; st++) {
            if (!dual_run())
                for (size_t k = 0; k < 2; k++) sweep(op, st, &kinds_plain[k]);
            for (size_t k = 0; k < 2; k++) sweep(op, st, &exec[k]);
        }
    }
    print_message("fault sweep: %lu runs, %lu faults injected, %lu E_FAIL, %lu defective combinations\n", runs_total, hits_total,
                  efails_total, defects);
    hm_vm_stats vs;
    hm_vm_get_stats(&vs);
    if (vs.allocations) fail_msg("%zu allocations left after the sweep", vs.allocations);
    if (hm_vmap_check(KERNEL_CHECK) != HM_OK) fail_msg("hm_vmap_check after the sweep: %s", hm_last_detail());
    if (defects) fail_msg("%lu runs misbehaved (DEFECT lines above)", defects);
}

static int cleanup(void **state)
{
    (void)state;
    hm_os_fault_clear();
    fx_teardown(&F);
    return 0;
}

int main(void)
{
    if (hm_init() != HM_OK) return 1; /* (the first call probes /proc once: not while counting) */
    /* a run and its reference must not differ by what the clock decommitted in between (a loaded
     * machine takes longer than HM_EMPTY_DELAY_MS between them): no page leaves by time here */
    hm_heap_empty_delay_ms = UINT32_MAX;
    (void)hm_os_wx_allowed();
    (void)hm_write_watch_describe();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_sweep, cleanup),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
