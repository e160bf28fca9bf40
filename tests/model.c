/* model.c — model-based randomized test: long random reserve/commit/decommit/release/reset/undo/protect/query sequences checked step by step against a per-page reference model and the real memory. */
#define _GNU_SOURCE
#include <inttypes.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>

#include "testutil.h"
#include "vmap/vmap.h"

#ifndef MAP_FIXED_NOREPLACE
#define MAP_FIXED_NOREPLACE 0x100000
#endif

#define PAGE ((uintptr_t)4096)
#define GRAN ((uintptr_t)65536)
#define MAXA 6                     /* live allocations at most */
#define MAXP 80                    /* pages per allocation at most (64 + an address offset's rounding) */
#define ZONE ((uintptr_t)4 << 20)  /* size of each zone for explicit-address reservations */
#define MODS (HM_PAGE_NOCACHE | HM_PAGE_WRITECOMBINE)
#define DEFAULT_STEPS 20000ul

/* ---- the reference model ------------------------------------------------------------------- */

enum { C_ZERO, C_TAG, C_MAYBE }; /* contents: zero, our tag, "zero or our tag" (after MEM_RESET) */

typedef struct mpage {
    uint8_t committed;
    uint8_t prot;     /* base protection (Win32 value) when committed, else 0 */
    uint8_t content;  /* C_* */
    uint8_t pending;  /* MEM_RESET hit the page and no MEM_RESET_UNDO succeeded since */
    uint32_t tag;     /* the tag written last (C_TAG, C_MAYBE) */
} mpage;

typedef struct mrec {
    bool live;
    uintptr_t base;
    size_t npages;
    uint32_t aprot;
    mpage pg[MAXP];
} mrec;

static mrec M[MAXA];
static uint64_t rng_state, cur_seed;
static unsigned long cur_step;
/* Zones for fixed-address reservations, where their outcome is predictable:
 *   0 ("playground"): hostmem chunk space known to be free (reserved by hostmem, then released);
 *   1: address space outside every chunk, held by our own PROT_NONE placeholder mapping except where
 *      a model allocation lies, so that reservations there get mappings of their own;
 *   2: the top half is the top of a chunk, the upper half placeholder space above it, so that
 *      reservations there may be part chunk, part mapping of their own ("mixed").
 * From zone_gap[z] up a zone lies outside every chunk. */
#define NZONES 3
static uintptr_t zone_lo[NZONES], zone_gap[NZONES], top_addr;
static bool zone_ok[NZONES];
static uint32_t next_tag = 1;

/* last operations, printed on failure */
#define HIST 16
static char hist[HIST][240];
static unsigned long hist_count;

/* pages an operation touched: their access rights are probed after the step */
typedef struct touched {
    mrec *a;
    size_t p0, p1;
} touched;
static touched T[MAXA];
static int nT;

static uint64_t rnd64(void)
{
    uint64_t z = (rng_state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static size_t rnd(size_t n) { return n ? (size_t)(rnd64() % n) : 0; }

static void note(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void note(const char *fmt, ...)
{
    char *h = hist[hist_count++ % HIST];
    int n = snprintf(h, sizeof hist[0], "step %lu: ", cur_step);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(h + n, sizeof hist[0] - (size_t)n, fmt, ap);
    va_end(ap);
}

/* outcome counts per operation, printed after each sequence to show what it exercised */
enum { K_RESERVE, K_RESERVE_AT, K_COMMIT, K_DECOMMIT, K_RELEASE, K_RESET, K_UNDO, K_PROTECT, K_QUERY, K_WRITE, K_BAD, K_COUNT };
static const char *const kname[K_COUNT] = {"reserve", "reserve_at", "commit", "decommit", "release", "reset",
                                           "reset_undo", "protect", "query", "write", "bad"};
static unsigned long kcount[K_COUNT][2]; /* [op][0: success, 1: failure] */

static void count(int k, hm_status st) { kcount[k][HM_FAILED(st)]++; }

static void mfail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void mfail(const char *fmt, ...)
{
    char msg[600];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    print_error("model: seed %" PRIu64 ", failing at step %lu (reproduce: HM_MODEL_SEED=%" PRIu64
                " HM_MODEL_STEPS=%lu)\nlast operations:\n",
                cur_seed, cur_step, cur_seed, cur_step + 1);
    for (unsigned long i = hist_count > HIST ? hist_count - HIST : 0; i < hist_count; i++)
        print_error("  %s\n", hist[i % HIST]);
    fail_msg("%s", msg);
}

/* A fault while reading a page the model calls readable ends the test (cmocka catches it) without
 * context: say where we were first, then hand over to cmocka's handler. */
static void (*prev_fault[2])(int);

static void on_fault(int sig)
{
    fprintf(stderr, "model: signal %d at seed %" PRIu64 ", step %lu (reproduce: HM_MODEL_SEED=%" PRIu64
                    " HM_MODEL_STEPS=%lu)\n", sig, cur_seed, cur_step, cur_seed, cur_step + 1);
    for (unsigned long i = hist_count > HIST ? hist_count - HIST : 0; i < hist_count; i++)
        fprintf(stderr, "  %s\n", hist[i % HIST]);
    void (*prev)(int) = prev_fault[sig == SIGBUS];
    signal(SIGSEGV, prev_fault[0]);
    signal(SIGBUS, prev_fault[1]);
    if (prev != SIG_DFL && prev != SIG_IGN && prev != SIG_ERR) prev(sig);
    else raise(sig);
}

static uintptr_t round_up(uintptr_t v, uintptr_t to) { return (v + to - 1) & ~(to - 1); }
static uintptr_t a_end(const mrec *a) { return a->base + a->npages * PAGE; }
static uintptr_t gran_end(const mrec *a) { return a->base + round_up(a->npages * PAGE, GRAN); }

static mrec *find(uintptr_t addr)
{
    for (int i = 0; i < MAXA; i++)
        if (M[i].live && addr >= M[i].base && addr < a_end(&M[i])) return &M[i];
    return NULL;
}

static bool overlaps(uintptr_t lo, uintptr_t hi)
{
    for (int i = 0; i < MAXA; i++)
        if (M[i].live && lo < gran_end(&M[i]) && M[i].base < hi) return true;
    return false;
}

static int nlive(void)
{
    int n = 0;
    for (int i = 0; i < MAXA; i++) n += M[i].live;
    return n;
}

static mrec *pick(void)
{
    int n = nlive();
    if (!n) return NULL;
    size_t k = rnd((size_t)n);
    for (int i = 0; i < MAXA; i++)
        if (M[i].live && k-- == 0) return &M[i];
    return NULL;
}

static mrec *free_slot(void)
{
    for (int i = 0; i < MAXA; i++)
        if (!M[i].live) return &M[i];
    return NULL;
}

/* The zone [lo, hi) lies in, or -1 */
static int zone_of(uintptr_t lo, uintptr_t hi)
{
    for (int z = 0; z < NZONES; z++)
        if (zone_ok[z] && lo >= zone_lo[z] && hi <= zone_lo[z] + ZONE && lo < hi) return z;
    return -1;
}

/* Our placeholder off / back on over the part of [lo, hi) outside chunks in zone z. Putting it back
 * with MAP_FIXED_NOREPLACE also proves that hostmem unmapped the range. */
static bool placeholder_off(int z, uintptr_t lo, uintptr_t hi)
{
    if (lo < zone_gap[z]) lo = zone_gap[z];
    return lo >= hi || munmap((void *)lo, hi - lo) == 0;
}

static bool placeholder_on(int z, uintptr_t lo, uintptr_t hi)
{
    if (lo < zone_gap[z]) lo = zone_gap[z];
    return lo >= hi || mmap((void *)lo, hi - lo, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0) == (void *)lo;
}

static uintptr_t any_zone(void)
{
    int z;
    do z = (int)rnd(NZONES);
    while (!zone_ok[z]);
    return zone_lo[z];
}

static uintptr_t next_alloc_above(uintptr_t at)
{
    uintptr_t next = top_addr;
    for (int i = 0; i < MAXA; i++)
        if (M[i].live && M[i].base > at && M[i].base < next) next = M[i].base;
    return next;
}

static uint32_t reported(const mrec *a, uint32_t prot) { return prot | (a->aprot & MODS); }
static bool readable(uint32_t prot) { return prot != HM_PAGE_NOACCESS; }
static bool writable(uint32_t prot) { return prot == HM_PAGE_READWRITE || prot == HM_PAGE_EXECUTE_READWRITE; }

static const uint32_t base_prots[] = {HM_PAGE_NOACCESS, HM_PAGE_READONLY, HM_PAGE_READWRITE,
                                      HM_PAGE_EXECUTE, HM_PAGE_EXECUTE_READ, HM_PAGE_EXECUTE_READWRITE};

/* A valid protection, read-write half of the time; with mods, sometimes a cache modifier. */
static uint32_t pick_prot(bool mods)
{
    uint32_t p = rnd(2) ? HM_PAGE_READWRITE : base_prots[rnd(6)];
    if (mods && p != HM_PAGE_NOACCESS && rnd(6) == 0) p |= rnd(2) ? HM_PAGE_NOCACHE : HM_PAGE_WRITECOMBINE;
    return p;
}

static uint64_t tag_word(uintptr_t page, uint32_t tag, int which)
{
    uint64_t z = (uint64_t)page * 0x9E3779B97F4A7C15ull ^ ((uint64_t)tag << 20) ^ (uint64_t)which;
    z = (z ^ (z >> 31)) * 0xBF58476D1CE4E5B9ull;
    return (z ^ (z >> 29)) | 1;
}

static volatile uint64_t *word_at(uintptr_t page, int which)
{
    return (volatile uint64_t *)(page + (which ? PAGE - 8 : 0));
}

static void touch(uintptr_t s, uintptr_t e)
{
    for (int i = 0; i < MAXA; i++) {
        mrec *a = &M[i];
        if (!a->live || e <= a->base || s >= a_end(a) || nT >= MAXA) continue;
        uintptr_t lo = s > a->base ? s : a->base, hi = e < a_end(a) ? e : a_end(a);
        T[nT++] = (touched){a, (lo - a->base) / PAGE, (hi - a->base) / PAGE};
    }
}

/* ---- expectations and checks --------------------------------------------------------------- */

/* SPEC 2.5: what VirtualQuery must answer for addr, from the model. */
static void model_query(uintptr_t addr, hm_region *r)
{
    uintptr_t at = addr & ~(PAGE - 1);
    memset(r, 0, sizeof *r);
    r->base = (void *)at;
    mrec *a = find(at);
    if (!a) { /* SPEC 2.7.4 free: PAGE_NOACCESS, RegionSize up to the next allocation */
        r->size = next_alloc_above(at) - at;
        r->state = HM_MEM_FREE;
        r->protect = HM_PAGE_NOACCESS;
        return;
    }
    size_t p = (at - a->base) / PAGE, q = p + 1;
    const mpage *g = &a->pg[p];
    while (q < a->npages && a->pg[q].committed == g->committed && (!g->committed || a->pg[q].prot == g->prot)) q++;
    r->allocation_base = (void *)a->base;
    r->allocation_protect = a->aprot;
    r->size = (q - p) * PAGE; /* SPEC 2.5 regions never cross an allocation's end */
    r->state = g->committed ? HM_MEM_COMMIT : HM_MEM_RESERVE;
    r->protect = g->committed ? reported(a, g->prot) : 0; /* SPEC 2.7.4 reserved: Protect 0 */
    r->type = HM_MEM_PRIVATE;
}

static void cmp_region(const hm_region *g, const hm_region *w, const char *what)
{
    if (g->base != w->base || g->allocation_base != w->allocation_base ||
        g->allocation_protect != w->allocation_protect || g->partition_id != 0 || g->size != w->size ||
        g->state != w->state || g->protect != w->protect || g->type != w->type)
        mfail("%s: region at %p: got abase %p aprot %#x size %#zx state %#x protect %#x type %#x; "
              "model: base %p abase %p aprot %#x size %#zx state %#x protect %#x type %#x",
              what, g->base, g->allocation_base, g->allocation_protect, g->size, g->state, g->protect, g->type,
              w->base, w->allocation_base, w->allocation_protect, w->size, w->state, w->protect, w->type);
}

static void check_query(uintptr_t addr, const char *what)
{
    hm_region g, w;
    memset(&g, 0xA5, sizeof g);
    hm_status st = hm_virtual_query(NULL, (void *)addr, &g);
    if (st != HM_OK) mfail("%s: query of %#lx failed: %s (%s)", what, (unsigned long)addr, hm_status_name(st), hm_last_detail());
    model_query(addr, &w);
    cmp_region(&g, &w, what);
}

/* SPEC 2.7.2: the words we read are what the model says (re-commit keeps, decommit zeroes). */
static void check_contents(const mrec *a, size_t p)
{
    const mpage *g = &a->pg[p];
    if (!g->committed || !readable(g->prot)) return;
    uintptr_t pa = a->base + p * PAGE;
    for (int which = 0; which < 2; which++) {
        uint64_t v = *word_at(pa, which), t = tag_word(pa, g->tag, which);
        bool ok = g->content == C_ZERO ? v == 0 : g->content == C_TAG ? v == t : (v == 0 || v == t);
        if (!ok)
            mfail("contents of page %#lx (page %zu of allocation %#lx) word %d: %#" PRIx64 ", model expects %s %#" PRIx64,
                  (unsigned long)pa, p, (unsigned long)a->base, which, v,
                  g->content == C_ZERO ? "zero" : g->content == C_TAG ? "tag" : "zero or tag", t);
    }
}

/* SPEC 2.1: the Linux protection of a page is the one of its Win32 state (reserved: no access). */
static void check_access(const mrec *a, size_t p)
{
    const mpage *g = &a->pg[p];
    void *pa = (void *)(a->base + p * PAGE);
    int want_r = g->committed && readable(g->prot), r = tu_readable(pa);
    if (r != want_r)
        mfail("page %p (%s, protection %#x): readable %d, expected %d", pa, g->committed ? "committed" : "reserved",
              g->prot, r, want_r);
    if (want_r) {
        int w = tu_writable(pa), want_w = writable(g->prot);
        if (w != want_w) mfail("page %p (protection %#x): writable %d, expected %d", pa, g->prot, w, want_w);
    }
}

/* SPEC 2.7.1: the tail of an allocation's last granule is unusable and reported free. */
static void check_tail(const mrec *a, bool access)
{
    if (gran_end(a) == a_end(a)) return;
    check_query(a_end(a), "granule tail");
    if (access && tu_readable((void *)a_end(a)) != 0) mfail("granule tail %#lx is readable", (unsigned long)a_end(a));
}

static void check_stats(void)
{
    size_t n = 0, res = 0, com = 0;
    for (int i = 0; i < MAXA; i++) {
        if (!M[i].live) continue;
        n++;
        res += M[i].npages * PAGE;
        for (size_t p = 0; p < M[i].npages; p++) com += M[i].pg[p].committed ? PAGE : 0;
    }
    hm_vm_stats s;
    hm_vm_get_stats(&s);
    if (s.allocations != n || s.reserved_bytes != res || s.committed_bytes != com)
        mfail("stats: %zu allocations, %zu reserved, %zu committed bytes; model: %zu, %zu, %zu", s.allocations,
              s.reserved_bytes, s.committed_bytes, n, res, com);
}

static tu_snapshot snap;

/* hm_vm_walk reports each allocation's regions in address order, as queries would. */
static void check_walk(void)
{
    tu_snapshot_take(&snap);
    size_t k = 0;
    uintptr_t at = 0;
    for (;;) {
        mrec *a = NULL;
        for (int i = 0; i < MAXA; i++)
            if (M[i].live && M[i].base >= at && (!a || M[i].base < a->base)) a = &M[i];
        if (!a) break;
        for (uintptr_t x = a->base; x < a_end(a);) {
            hm_region w;
            model_query(x, &w);
            if (k >= snap.n) mfail("walk: %zu regions, the model has more", snap.n);
            cmp_region(&snap.r[k++], &w, "walk");
            x += w.size;
        }
        at = a->base + 1;
    }
    if (k != snap.n) mfail("walk: %zu regions, the model has %zu", snap.n, k);
}

static void check_step(bool full)
{
    check_stats();
    for (int i = 0; i < MAXA; i++) {
        mrec *a = &M[i];
        if (!a->live) continue;
        for (size_t p = 0; p < a->npages; p++) {
            check_query(a->base + p * PAGE + ((p * 1237 + cur_step) % PAGE), "query");
            check_contents(a, p);
            if (full) check_access(a, p);
        }
        check_tail(a, full);
    }
    for (int t = 0; t < nT; t++)
        for (size_t p = T[t].p0; p < T[t].p1; p++) check_access(T[t].a, p);
    /* a few pages at random besides */
    for (int k = 0; k < 3; k++) {
        mrec *a = pick();
        if (a) check_access(a, rnd(a->npages));
    }
}

/* The map's own invariants; with_kernel also compares /proc/self/maps (slow under ASan: seconds). */
static void check_vmap(bool with_kernel)
{
    if (hm_vmap_check(with_kernel) != HM_OK) mfail("hm_vmap_check: %s", hm_last_detail());
}

static void expect(hm_status got, hm_status want, const char *what)
{
    if (got != want)
        mfail("%s: %s (%#x), expected %s (%#x); detail: %s", what, hm_status_name(got), (unsigned)got,
              hm_status_name(want), (unsigned)want, hm_last_detail());
}

/* ---- operations ------------------------------------------------------------------------------ */

static void new_record(mrec *a, uintptr_t base, size_t bytes, uint32_t type, uint32_t prot)
{
    memset(a, 0, sizeof *a);
    a->live = true;
    a->base = base;
    a->npages = bytes / PAGE;
    a->aprot = prot;
    if (type & HM_MEM_COMMIT)
        for (size_t p = 0; p < a->npages; p++) a->pg[p] = (mpage){1, (uint8_t)(prot & 0xFF), C_ZERO, 0, 0};
    touch(a->base, a_end(a));
}

static void op_query(void);

/* SPEC 2.2: address NULL, size rounded up to a page, start 64 KiB aligned; MEM_COMMIT alone with
 * NULL reserves too. */
static void op_reserve_null(void)
{
    mrec *a = free_slot();
    if (!a) {
        op_query();
        return;
    }
    size_t size = (1 + rnd(64)) * PAGE;
    if (rnd(3) == 0) size -= rnd(PAGE);
    uint32_t type = HM_MEM_RESERVE;
    size_t k = rnd(8);
    if (k == 0) type = HM_MEM_RESERVE | HM_MEM_COMMIT;
    if (k == 1) type = HM_MEM_COMMIT;
    if (rnd(6) == 0) type |= HM_MEM_TOP_DOWN;
    uint32_t prot = pick_prot(true);
    void *b = (void *)1;
    hm_status st = hm_virtual_alloc(NULL, NULL, size, type, prot, &b);
    count(K_RESERVE, st);
    note("alloc(NULL, %#zx, type %#x, prot %#x) -> %s %p", size, type, prot, hm_status_name(st), b);
    expect(st, HM_OK, "reserve at NULL");
    uintptr_t base = (uintptr_t)b, bytes = round_up(size, PAGE);
    if (!b || base % GRAN) mfail("reserve at NULL returned %p: not 64 KiB aligned", b);
    if (overlaps(base, base + round_up(bytes, GRAN))) mfail("reserve at NULL returned %p over a live allocation", b);
    new_record(a, base, bytes, type, prot);
}

/* A live allocation at random for an operation to act on; with none, reserves one instead (so the step
 * still does something) and returns NULL. */
static mrec *pick_or_reserve(void)
{
    mrec *x = pick();
    if (!x) op_reserve_null();
    return x;
}

/* SPEC 2.2: explicit address: start rounded down to 64 KiB, size round_up(addr+size, 4K) - start; a
 * reservation may not overlap any allocation (487), the granule tail included (SPEC 2.7.1). */
static void op_reserve_at(void)
{
    mrec *x = pick();
    size_t pat = rnd(8);
    if ((!x && pat != 2 && pat != 7) || (pat == 7 && !zone_ok[2])) pat = 2;
    uintptr_t start = 0, addr = 0;
    size_t size = 1 + rnd(64 * PAGE);
    switch (pat) {
    case 0: /* right after x */
        start = addr = gran_end(x);
        break;
    case 1: /* right before x: the new allocation ends where x's granule starts */
        size = (1 + rnd(64)) * PAGE;
        start = addr = x->base - round_up(size, GRAN);
        break;
    case 2: /* anywhere in a zone, maybe unaligned */
        start = any_zone() + rnd(ZONE / GRAN) * GRAN;
        addr = start + (rnd(2) ? rnd(GRAN) : 0);
        break;
    case 3: /* inside x or its granule tail: 487 */
        addr = x->base + rnd(gran_end(x) - x->base);
        start = addr & ~(GRAN - 1);
        break;
    case 4: /* after x, unaligned: rounds down onto x's granule end */
        start = gran_end(x);
        addr = start + rnd(GRAN);
        break;
    case 5: /* starting a granule below x and reaching into it: 487 */
        start = addr = x->base - GRAN;
        size = GRAN + 1 + rnd(3 * PAGE);
        break;
    case 7: /* across the end of zone 2's chunk: part chunk, part a mapping of its own */
        start = addr = zone_gap[2] - (1 + rnd(2)) * GRAN;
        size = GRAN + 1 + rnd(3 * GRAN - 2 * PAGE);
        break;
    default: /* right after x's allocation end, inside its last granule's tail (rounds onto x): 487 or after */
        addr = a_end(x) + rnd(PAGE);
        start = addr & ~(GRAN - 1);
        break;
    }
    uintptr_t bytes = round_up(addr + size, PAGE) - start;
    if (bytes > MAXP * PAGE) { /* keep the model's page arrays big enough */
        size = start + MAXP * PAGE - addr;
        bytes = MAXP * PAGE;
    }
    uintptr_t ext = round_up(bytes, GRAN);
    bool ov = overlaps(start, start + ext);
    int z = zone_of(start, start + ext);
    if (!ov && (z < 0 || nlive() >= MAXA)) { /* the outcome would depend on what else is mapped there */
        op_query();
        return;
    }
    uint32_t type = rnd(4) == 0 ? HM_MEM_RESERVE | HM_MEM_COMMIT : HM_MEM_RESERVE;
    uint32_t prot = pick_prot(true);
    if (!ov && !placeholder_off(z, start, start + ext)) mfail("munmap of the placeholder failed");
    void *b = (void *)1;
    hm_status st = hm_virtual_alloc(NULL, (void *)addr, size, type, prot, &b);
    count(K_RESERVE_AT, st);
    note("alloc(%#lx, %#zx, type %#x, prot %#x) [start %#lx, %#lx pages, zone %d%s] -> %s %p", (unsigned long)addr,
         size, type, prot, (unsigned long)start, (unsigned long)(bytes / PAGE), z, ov ? ", overlaps" : "",
         hm_status_name(st), b);
    if (ov) {
        expect(st, HM_E_INVALID_ADDRESS, "reserve over an allocation"); /* SPEC 2.2 overlap: 487 */
        if (b) mfail("failed reserve returned %p", b);
        return;
    }
    if (st == HM_OK && !placeholder_on(z, start + bytes, start + ext))
        mfail("cannot put the placeholder back over the granule tail at %#lx", (unsigned long)(start + bytes));
    expect(st, HM_OK, "reserve at a free address");
    if ((uintptr_t)b != start) mfail("reserve at %#lx returned %p, expected %#lx", (unsigned long)addr, b, (unsigned long)start);
    new_record(free_slot(), start, bytes, type, prot);
}

/* A byte range around allocation a: mostly inside, sometimes crossing its end, starting below its
 * base, or in the free tail of its last granule. */
static void gen_range(const mrec *a, uintptr_t *addr, size_t *size)
{
    long np = (long)a->npages, p0, p1;
    switch (rnd(14)) {
    case 0: /* across the end: into the granule tail or the next allocation */
        p0 = (long)rnd((size_t)np);
        p1 = np + 1 + (long)rnd(3);
        break;
    case 1: /* from below the base */
        p0 = -1 - (long)rnd(2);
        p1 = 1 + (long)rnd((size_t)np);
        break;
    case 2: /* the whole allocation */
        p0 = 0;
        p1 = np;
        break;
    case 3: /* past the end */
        p0 = np + (long)rnd(3);
        p1 = p0 + 1 + (long)rnd(2);
        break;
    default:
        p0 = (long)rnd((size_t)np);
        p1 = p0 + 1 + (long)rnd(rnd(2) ? (size_t)(np - p0 < 4 ? np - p0 : 4) : (size_t)(np - p0));
        break;
    }
    uintptr_t s = a->base + (uintptr_t)(p0 * (long)PAGE) + (rnd(4) == 0 ? rnd(PAGE) : 0);
    uintptr_t e = a->base + (uintptr_t)(p1 * (long)PAGE) - (rnd(4) == 0 ? rnd(PAGE) : 0);
    if (e <= s) e = s + 1;
    *addr = s;
    *size = e - s;
}

/* The page range [s, e) a byte range touches, and the allocation holding all of it (or NULL). */
static mrec *span(uintptr_t addr, size_t size, uintptr_t *s, uintptr_t *e)
{
    *s = addr & ~(PAGE - 1);
    *e = round_up(addr + size, PAGE);
    mrec *a = find(*s);
    return a && find(*e - 1) == a ? a : NULL;
}

static void op_commit(void)
{
    mrec *x = pick_or_reserve();
    if (!x) return;
    uintptr_t addr, s, e;
    size_t size;
    gen_range(x, &addr, &size);
    uint32_t prot = pick_prot(false);
    bool bad = rnd(40) == 0;
    if (bad) {
        static const uint32_t bads[] = {0, HM_PAGE_WRITECOPY, HM_PAGE_EXECUTE_WRITECOPY, HM_PAGE_READONLY | HM_PAGE_READWRITE,
                                        HM_PAGE_NOACCESS | HM_PAGE_NOCACHE, HM_PAGE_READWRITE | HM_PAGE_NOCACHE | HM_PAGE_WRITECOMBINE};
        prot = bads[rnd(6)];
    }
    mrec *a = span(addr, size, &s, &e);
    void *b = (void *)1;
    hm_status st = hm_virtual_alloc(NULL, (void *)addr, size, HM_MEM_COMMIT, prot, &b);
    count(K_COMMIT, st);
    note("commit(%#lx, %#zx, prot %#x) -> %s %p", (unsigned long)addr, size, prot, hm_status_name(st), b);
    if (bad) {
        expect(st, HM_E_INVALID_PARAMETER, "commit with a bad protection"); /* SPEC 2.1 bad protection: 87 */
        return;
    }
    if (!a) { /* SPEC 2.2 commit of a range not inside one allocation: 487; SPEC 2.7.3 nothing changes */
        expect(st, HM_E_INVALID_ADDRESS, "commit outside one allocation");
        if (b) mfail("failed commit returned %p", b);
        return;
    }
    expect(st, HM_OK, "commit");
    if ((uintptr_t)b != s) mfail("commit at %#lx returned %p, expected %#lx", (unsigned long)addr, b, (unsigned long)s);
    for (uintptr_t p = (s - a->base) / PAGE; p < (e - a->base) / PAGE; p++) {
        mpage *g = &a->pg[p];
        if (!g->committed) *g = (mpage){1, 0, C_ZERO, 0, 0}; /* SPEC 2.1 new storage reads zero */
        g->prot = (uint8_t)prot;                             /* SPEC 2.7.2 re-commit keeps data, applies prot */
    }
    touch(s, e);
}

static void decommit_pages(mrec *a, size_t p0, size_t p1)
{
    for (size_t p = p0; p < p1; p++) a->pg[p] = (mpage){0, 0, C_ZERO, 0, 0}; /* SPEC 2.7.2 decommit discards */
}

static void op_decommit(void)
{
    mrec *x = pick_or_reserve();
    if (!x) return;
    uintptr_t addr, s, e;
    size_t size;
    if (rnd(5) == 0) { /* size 0: the whole allocation, only at its base */
        size = 0;
        addr = x->base + (rnd(3) == 0 ? rnd(x->npages + 2) * PAGE : 0);
    } else {
        gen_range(x, &addr, &size);
    }
    span(addr, size ? size : 1, &s, &e);
    mrec *a = find(addr);
    hm_status st = hm_virtual_free(NULL, (void *)addr, size, HM_MEM_DECOMMIT);
    count(K_DECOMMIT, st);
    note("decommit(%#lx, %#zx) -> %s", (unsigned long)addr, size, hm_status_name(st));
    if (!a) {
        expect(st, HM_E_INVALID_ADDRESS, "decommit in no allocation"); /* SPEC 2.3: 487 */
        return;
    }
    if (size == 0) {
        if (addr != a->base) {
            expect(st, HM_E_INVALID_ADDRESS, "size-0 decommit not at the base"); /* SPEC 2.3: 487 */
            return;
        }
        expect(st, HM_OK, "size-0 decommit at the base");
        decommit_pages(a, 0, a->npages);
        touch(a->base, a_end(a));
        return;
    }
    if (e > a_end(a)) {
        expect(st, HM_E_INVALID_PARAMETER, "decommit past the allocation's end"); /* SPEC 2.3: 87 */
        return;
    }
    expect(st, HM_OK, "decommit");
    decommit_pages(a, (s - a->base) / PAGE, (e - a->base) / PAGE);
    touch(s, e);
}

static void op_release(void)
{
    mrec *x = pick_or_reserve();
    if (!x) return;
    uintptr_t addr = x->base;
    size_t size = 0;
    switch (rnd(8)) {
    case 0: addr += rnd(PAGE); break;                        /* rounds down to the base: fine */
    case 1: addr += (1 + rnd(x->npages + 1)) * PAGE; break; /* not the base, or the tail: 487 */
    case 2: size = 1 + rnd(2 * PAGE); break;                /* size not 0: 87 */
    default: break;
    }
    mrec *a = find(addr);
    hm_status st = hm_virtual_free(NULL, (void *)addr, size, HM_MEM_RELEASE);
    count(K_RELEASE, st);
    note("release(%#lx, %#zx) -> %s", (unsigned long)addr, size, hm_status_name(st));
    if (size) {
        expect(st, HM_E_INVALID_PARAMETER, "release with a size"); /* SPEC 2.3: 87 */
        return;
    }
    if (!a || (addr & ~(PAGE - 1)) != a->base) {
        expect(st, HM_E_INVALID_ADDRESS, "release not at the base"); /* SPEC 2.3 / 2.7.5: 487 */
        return;
    }
    expect(st, HM_OK, "release");
    uintptr_t base = a->base, bytes = a->npages * PAGE;
    a->live = false;
    check_query(base, "released allocation"); /* SPEC 2.3 the whole allocation is gone */
    if (tu_readable((void *)base) != 0) mfail("released allocation %#lx is still readable", (unsigned long)base);
    int z = zone_of(base, base + bytes); /* its mappings outside chunks must be gone */
    if (z >= 0 && !placeholder_on(z, base, base + bytes))
        mfail("released allocation %#lx is still mapped in the kernel", (unsigned long)base);
}

static struct {
    mrec *a;
    uintptr_t base, addr;
    size_t size;
} last_reset;

static void op_reset(void)
{
    mrec *x = pick_or_reserve();
    if (!x) return;
    uintptr_t addr, s, e;
    size_t size;
    gen_range(x, &addr, &size);
    uint32_t prot = pick_prot(false);
    mrec *a = span(addr, size, &s, &e);
    void *b = (void *)1;
    hm_status st = hm_virtual_alloc(NULL, (void *)addr, size, HM_MEM_RESET, prot, &b);
    count(K_RESET, st);
    note("reset(%#lx, %#zx, prot %#x) -> %s %p", (unsigned long)addr, size, prot, hm_status_name(st), b);
    if (!a) {
        expect(st, HM_E_INVALID_ADDRESS, "reset outside one allocation"); /* SPEC 2.2: 487 */
        return;
    }
    expect(st, HM_OK, "reset");
    last_reset.a = a;
    last_reset.base = a->base;
    last_reset.addr = addr;
    last_reset.size = size;
    if ((uintptr_t)b != s) mfail("reset at %#lx returned %p, expected %#lx", (unsigned long)addr, b, (unsigned long)s);
    /* SPEC 2.1 MEM_RESET: pages stay committed with their protection, contents unchanged or zero;
     * reserved pages stay reserved */
    for (uintptr_t p = (s - a->base) / PAGE; p < (e - a->base) / PAGE; p++) {
        mpage *g = &a->pg[p];
        if (!g->committed) continue;
        g->pending = 1;
        if (g->content == C_TAG) g->content = C_MAYBE;
    }
    touch(s, e);
}

static void op_reset_undo(void)
{
    mrec *x = pick_or_reserve();
    if (!x) return;
    uintptr_t addr, s, e;
    size_t size;
    size_t k = rnd(3);
    if (k == 0 && last_reset.a && last_reset.a->live && last_reset.base == last_reset.a->base) {
        addr = last_reset.addr; /* the range the last MEM_RESET named */
        size = last_reset.size;
    } else if (k == 1) {
        addr = x->base;
        size = x->npages * PAGE;
    } else {
        gen_range(x, &addr, &size);
    }
    mrec *a = span(addr, size, &s, &e);
    void *b = (void *)1;
    hm_status st = hm_virtual_alloc(NULL, (void *)addr, size, HM_MEM_RESET_UNDO, HM_PAGE_READWRITE, &b);
    count(K_UNDO, st);
    note("reset_undo(%#lx, %#zx) -> %s %p", (unsigned long)addr, size, hm_status_name(st), b);
    if (!a) {
        expect(st, HM_E_INVALID_ADDRESS, "reset undo outside one allocation"); /* SPEC 2.2: 487 */
        return;
    }
    size_t p0 = (s - a->base) / PAGE, p1 = (e - a->base) / PAGE, npending = 0;
    if (st == HM_OK) { /* SPEC 2.1 MEM_RESET_UNDO: success means every byte survived */
        if ((uintptr_t)b != s) mfail("reset undo at %#lx returned %p, expected %#lx", (unsigned long)addr, b, (unsigned long)s);
        for (size_t p = p0; p < p1; p++) {
            mpage *g = &a->pg[p];
            if (g->pending && g->content == C_MAYBE) g->content = C_TAG;
            g->pending = 0;
        }
        touch(s, e);
        return;
    }
    /* SPEC 2.1/2.6: failure means some page became zero (or could not be proved to have kept its
     * data: a page reading all zero, or one the undo cannot pin because it is not writable) */
    bool excuse = false;
    for (size_t p = p0; p < p1; p++) {
        const mpage *g = &a->pg[p];
        if (!g->pending) continue;
        npending++;
        if (!writable(g->prot) || g->content == C_ZERO) excuse = true;
        else if (g->content == C_MAYBE && *word_at(a->base + p * PAGE, 0) == 0) excuse = true; /* really lost */
    }
    if (npending == 0) return; /* undo where nothing was reset: SPEC leaves the outcome open */
    if (!excuse)
        mfail("MEM_RESET_UNDO failed (%s: %s) though every reset page of the range kept its data and is writable",
              hm_status_name(st), hm_last_detail());
    if (b) mfail("failed reset undo returned %p", b);
}

static void op_protect(void)
{
    mrec *x = pick_or_reserve();
    if (!x) return;
    uintptr_t addr, s, e;
    size_t size;
    gen_range(x, &addr, &size);
    uint32_t prot = pick_prot(true), old = 0xDEAD;
    bool null_old = rnd(60) == 0;
    mrec *a = span(addr, size, &s, &e);
    hm_status st = hm_virtual_protect(NULL, (void *)addr, size, prot, null_old ? NULL : &old);
    count(K_PROTECT, st);
    note("protect(%#lx, %#zx, prot %#x%s) -> %s old %#x", (unsigned long)addr, size, prot, null_old ? ", old NULL" : "",
         hm_status_name(st), old);
    if (null_old) {
        expect(st, HM_E_NOACCESS, "protect without lpflOldProtect"); /* SPEC 2.4: 998 */
        return;
    }
    if (!a) {
        expect(st, HM_E_INVALID_PARAMETER, "protect outside one allocation"); /* SPEC 2.4: 87 */
        return;
    }
    size_t p0 = (s - a->base) / PAGE, p1 = (e - a->base) / PAGE;
    for (size_t p = p0; p < p1; p++)
        if (!a->pg[p].committed) {
            expect(st, HM_E_INVALID_ADDRESS, "protect over reserved pages"); /* SPEC 2.4: 487, nothing changes */
            return;
        }
    expect(st, HM_OK, "protect");
    uint32_t want_old = reported(a, a->pg[p0].prot); /* SPEC 2.4: the first page's, with modifiers */
    if (old != want_old) mfail("protect: old protection %#x, expected %#x", old, want_old);
    /* SPEC 2.1: a modifier belongs to the allocation: protect sets only the base protection */
    for (size_t p = p0; p < p1; p++) a->pg[p].prot = (uint8_t)(prot & 0xFF);
    touch(s, e);
}

static void op_query(void)
{
    mrec *x = pick();
    uintptr_t addr;
    size_t k = rnd(8);
    if (k == 0 || !x) addr = any_zone() + rnd(ZONE);
    else if (k == 1) addr = a_end(x) + rnd(gran_end(x) - a_end(x) + PAGE); /* tail and just after */
    else if (k == 2) addr = x->base - 1 - rnd(2 * PAGE);
    else if (k == 3) addr = gran_end(x) + rnd(2 * GRAN);
    else addr = x->base + rnd(x->npages * PAGE);
    if (rnd(100) == 0) { /* SPEC 2.5: above the user address space: 87 */
        hm_region r;
        addr = top_addr + rnd(GRAN);
        hm_status st = hm_virtual_query(NULL, (void *)addr, &r);
        count(K_QUERY, st);
        note("query(%#lx) -> %s", (unsigned long)addr, hm_status_name(st));
        expect(st, HM_E_INVALID_PARAMETER, "query above the user address space");
        return;
    }
    note("query(%#lx)", (unsigned long)addr);
    count(K_QUERY, HM_OK);
    check_query(addr, "random query");
}

static void op_write(void)
{
    mrec *x = pick_or_reserve();
    if (!x) return;
    size_t p0 = rnd(x->npages), p1 = p0 + 1 + rnd(x->npages - p0), n = 0;
    for (size_t p = p0; p < p1; p++) {
        mpage *g = &x->pg[p];
        if (!g->committed || !writable(g->prot)) continue;
        uintptr_t pa = x->base + p * PAGE;
        g->tag = next_tag++;
        g->content = C_TAG;
        *word_at(pa, 0) = tag_word(pa, g->tag, 0);
        *word_at(pa, 1) = tag_word(pa, g->tag, 1);
        n++;
    }
    count(K_WRITE, HM_OK);
    note("write tags to pages [%zu, %zu) of %#lx: %zu pages", p0, p1, (unsigned long)x->base, n);
}

/* SPEC 2.2/2.3/2.4 argument errors: 87 and nothing changes. */
static void op_bad(void)
{
    mrec *x = pick();
    void *addr = x ? (void *)x->base : (void *)zone_lo[0], *b = (void *)1;
    uint32_t old;
    hm_status st;
    size_t k = rnd(12);
    switch (k) {
    case 0: st = hm_virtual_alloc(NULL, addr, PAGE, 0, HM_PAGE_READWRITE, &b); break;
    case 1: st = hm_virtual_alloc(NULL, addr, PAGE, HM_MEM_RESET | HM_MEM_COMMIT, HM_PAGE_READWRITE, &b); break;
    case 2: st = hm_virtual_alloc(NULL, addr, 0, HM_MEM_COMMIT, HM_PAGE_READWRITE, &b); break;
    case 3: st = hm_virtual_alloc(NULL, NULL, PAGE, HM_MEM_RESERVE, HM_PAGE_WRITECOPY, &b); break;
    case 4: st = hm_virtual_alloc(NULL, addr, PAGE, HM_MEM_RESET, 0, &b); break; /* flProtect still validated */
    case 5: st = hm_virtual_alloc(NULL, addr, PAGE, HM_MEM_RESET_UNDO | HM_MEM_COMMIT, HM_PAGE_READWRITE, &b); break;
    case 6: st = hm_virtual_alloc(NULL, (void *)0x1000, PAGE, HM_MEM_RESERVE, HM_PAGE_READWRITE, &b); break;
    case 7: st = hm_virtual_alloc(NULL, NULL, (size_t)1 << 62, HM_MEM_RESERVE, HM_PAGE_READWRITE, &b); break;
    case 8: st = hm_virtual_free(NULL, addr, 0, 0); break;
    case 9: st = hm_virtual_free(NULL, addr, 0, HM_MEM_DECOMMIT | HM_MEM_RELEASE); break;
    case 10: st = hm_virtual_free(NULL, NULL, 0, HM_MEM_RELEASE); break;
    default: st = hm_virtual_protect(NULL, addr, PAGE, HM_PAGE_EXECUTE_WRITECOPY, &old); break;
    }
    count(K_BAD, st);
    note("bad call %zu at %p -> %s", k, addr, hm_status_name(st));
    expect(st, HM_E_INVALID_PARAMETER, "invalid argument");
    if (k <= 7 && b) mfail("failed VirtualAlloc returned %p", b);
}

/* ---- sequences ------------------------------------------------------------------------------- */

static void release_all(void)
{
    for (int i = 0; i < MAXA; i++) {
        if (!M[i].live) continue;
        M[i].live = false;
        assert_int_equal(hm_release(NULL, (void *)M[i].base), HM_OK);
    }
    for (int z = 0; z < NZONES; z++) {
        if (zone_ok[z] && zone_gap[z] < zone_lo[z] + ZONE) munmap((void *)zone_gap[z], zone_lo[z] + ZONE - zone_gap[z]);
        zone_ok[z] = false;
    }
}

static void run_sequence(uint64_t seed, unsigned long steps)
{
    release_all(); /* leftovers of a failed sequence */
    memset(M, 0, sizeof M);
    hist_count = 0;
    memset(kcount, 0, sizeof kcount);
    cur_seed = seed;
    rng_state = seed;
    cur_step = 0;
    prev_fault[0] = signal(SIGSEGV, on_fault); /* cmocka's handlers are in place during a test */
    prev_fault[1] = signal(SIGBUS, on_fault);
    print_message("model: seed %" PRIu64 ", %lu steps (HM_MODEL_SEED / HM_MODEL_STEPS override)\n", seed, steps);

    assert_int_equal(hm_init(), HM_OK);
    hm_system_info si;
    hm_get_system_info(&si);
    top_addr = si.max_address + 1;
    /* zone 0: chunk space that hostmem itself showed free */
    void *p = NULL;
    assert_int_equal(hm_reserve(NULL, ZONE, &p), HM_OK);
    assert_int_equal(hm_release(NULL, p), HM_OK);
    zone_lo[0] = (uintptr_t)p;
    zone_gap[0] = zone_lo[0] + ZONE;
    zone_ok[0] = true;
    /* zone 1: our placeholder outside every chunk */
    void *z = mmap(NULL, ZONE + GRAN, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    assert_true(z != MAP_FAILED);
    zone_lo[1] = zone_gap[1] = round_up((uintptr_t)z, GRAN);
    if (zone_lo[1] > (uintptr_t)z) munmap(z, zone_lo[1] - (uintptr_t)z);
    munmap((void *)(zone_lo[1] + ZONE), (uintptr_t)z + GRAN - zone_lo[1]);
    zone_ok[1] = true;
    /* zone 2: the top of the highest chunk (MEM_TOP_DOWN lands there) and our placeholder above it */
    assert_int_equal(hm_virtual_alloc(NULL, NULL, ZONE / 2, HM_MEM_RESERVE | HM_MEM_TOP_DOWN, HM_PAGE_READWRITE, &p), HM_OK);
    assert_int_equal(hm_release(NULL, p), HM_OK);
    zone_lo[2] = (uintptr_t)p;
    zone_gap[2] = zone_lo[2] + ZONE / 2;
    zone_ok[2] = placeholder_on(2, zone_gap[2], zone_lo[2] + ZONE);
    if (!zone_ok[2]) print_message("model: no free space above the highest chunk: no mixed reservations\n");

    for (cur_step = 0; cur_step < steps; cur_step++) {
        nT = 0;
        int n = nlive();
        size_t r = rnd(100);
        if (n < 2 && r < 50) r = rnd(2) ? 0 : 6; /* few allocations: reserve more */
        if (r < 6) op_reserve_null();
        else if (r < 14) op_reserve_at();
        else if (r < 30) op_commit();
        else if (r < 38) op_decommit();
        else if (r < 42) op_release();
        else if (r < 49) op_reset();
        else if (r < 56) op_reset_undo();
        else if (r < 70) op_protect();
        else if (r < 78) op_query();
        else if (r < 98) op_write();
        else op_bad();
        check_step(cur_step % 256 == 255);
        if (cur_step % 16 == 0) check_walk();
        if (cur_step % 500 == 499) check_vmap(false);
    }
    check_step(true);
    check_walk();
    check_vmap(true);
    for (int k = 0; k < K_COUNT; k++)
        print_message("  %-10s %6lu ok %6lu failed\n", kname[k], kcount[k][0], kcount[k][1]);
    release_all();
    hm_vm_stats s;
    hm_vm_get_stats(&s);
    assert_int_equal(s.allocations, 0);
    assert_int_equal(s.committed_bytes, 0);
    check_vmap(false);
    signal(SIGSEGV, prev_fault[0]);
    signal(SIGBUS, prev_fault[1]);
}

static unsigned long env_ul(const char *name, unsigned long dflt)
{
    const char *v = getenv(name);
    return v && *v ? strtoul(v, NULL, 0) : dflt;
}

static void test_seed(uint64_t seed)
{
    unsigned long steps = env_ul("HM_MODEL_STEPS", DEFAULT_STEPS);
    const char *s = getenv("HM_MODEL_SEED");
    if (s && *s) {
        if (seed != 1) skip(); /* one run with the given seed */
        seed = strtoull(s, NULL, 0);
    }
    run_sequence(seed, steps);
}

static void test_seed_1(void **state)
{
    (void)state;
    test_seed(1);
}

static void test_seed_2(void **state)
{
    (void)state;
    test_seed(0xC0FFEE);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_seed_1),
        cmocka_unit_test(test_seed_2),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
