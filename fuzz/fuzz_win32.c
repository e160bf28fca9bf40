/* fuzz_win32.c — libFuzzer target: sequences of Win32 virtual-memory calls with adversarial arguments
 * (VirtualAlloc, VirtualFree, VirtualProtect, VirtualQuery, GetWriteWatch, ResetWriteWatch on the
 * process-default manager, and the same operations as hm_* calls on two more managers with small
 * budgets), each checked against a per-page model of SPEC 2 and 3.1-3.4 written for this target:
 * return value or status, last error, every MEMORY_BASIC_INFORMATION field, contents kept or zeroed,
 * access matching protection (probed through a pipe, without signals), write-watch reports, guard
 * violations, each manager's charge and address space, and hm_vmap_check.
 *
 * Input: a sequence of 8-byte operations (at most MAXOPS); see `op` below for what each byte picks.
 * Arguments come from tables of valid and invalid values and from addresses around the live
 * allocations (inside, unaligned, at the end, in the granule tail, below, NULL, under 0x10000, near
 * and above the top of the user address space, in another manager's allocation, in memory hostmem
 * does not own). Explicit-address reservations are made only where their outcome is known: over a
 * live allocation (487) or inside one of three zones set up once per process (zones below).
 *
 * Besides the calls, operations write tags into pages, read them (touching guard pages on purpose),
 * and apply memory pressure (MADV_PAGEOUT), which makes pages given up by MEM_RESET really go.
 *
 * On a disagreement the target prints the operation, what the model expected and what it got, and
 * the last operations, then aborts (libFuzzer keeps the input). Every input ends by releasing all it
 * made and destroying its extra managers, so inputs are independent; the default manager persists.
 *
 * Environment: HOSTMEM_WRITE_WATCH=fallback (the library's), HM_FUZZ_TOLERATE (known divergences the
 * model accepts, below), HM_FUZZ_KERNEL_CHECK (how often /proc/self/maps is compared, below),
 * HM_FUZZ_TRACE=1 (every operation on stderr), HM_FUZZ_STATS=1 (outcome counts at exit).
 * The seed corpus comes from fuzz/corpus/make_win32_seeds.py. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <hostmem/hostmem.h>
#include <hostmem/win32.h>

#include "vmap/vmap.h"

#ifndef MAP_FIXED_NOREPLACE
#define MAP_FIXED_NOREPLACE 0x100000
#endif
#ifndef MADV_PAGEOUT
#define MADV_PAGEOUT 21
#endif

#define PAGE ((uintptr_t)4096)
#define GRAN ((uintptr_t)65536)
#define MAXA 6                    /* live allocations at most (all managers) */
#define MAXP 80                   /* pages of an allocation at most (explicit addresses round down) */
#define NEWP 64                   /* pages of a NULL-address reservation at most */
#define MAXOPS 64                 /* operations per input */
#define OPBYTES 8
#define ZONE ((uintptr_t)2 << 20) /* size of each zone for explicit-address reservations */
#define NZONES 3
#define NMGR 3                    /* 0: the process-default manager; 1, 2: made by the input */
#define MODS (HM_PAGE_NOCACHE | HM_PAGE_WRITECOMBINE)
#define POISON ((DWORD)0xdeadbeef)
#define WWCAP 128                 /* GetWriteWatch buffer entries (the count asked is at most 69) */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The checking code is left out of libFuzzer's coverage: its loops over pages would only add
 * features that count pages, not behaviours of the library (whose own code is instrumented). */
#if defined(__clang__)
#define NOCOV __attribute__((no_sanitize("coverage")))
#else
#define NOCOV
#endif

/* ---- the model ----------------------------------------------------------------------------------- */

enum { C_ZERO, C_TAG, C_MAYBE };         /* contents: zero, our tag, zero or our tag (after MEM_RESET) */
enum { W_CLEAN, W_WRITTEN, W_MAYBE };    /* write-watch state of a page */

typedef struct mpage {
    uint8_t committed;
    uint8_t prot;    /* base protection (Win32 value) when committed, else 0 */
    uint8_t guard;   /* PAGE_GUARD armed */
    uint8_t content; /* C_* */
    uint8_t pending; /* MEM_RESET hit the committed page and no MEM_RESET_UNDO succeeded over it since */
    uint8_t ww;      /* W_* (write-watched allocations) */
    uint32_t tag;    /* the tag written last (C_TAG, C_MAYBE) */
} mpage;

typedef struct mrec {
    bool live, watch, physical;
    int owner;       /* manager index */
    uintptr_t base;
    size_t npages;
    uint32_t aprot;  /* flProtect of the reserving call, modifiers included */
    mpage pg[MAXP];
} mrec;

enum { M_ABSENT, M_RUNNING, M_SHUT };

typedef struct mmgr {
    int state;
    hm_manager *h;   /* NULL for the default manager */
    uint64_t thr[3]; /* admission thresholds by level: L - Ra - Rp, L - Rp, L */
    uint64_t va_limit;
} mmgr;

/* Extra managers: small budgets, so that admission (1455) and va.limit (8) are reached. */
static const struct {
    const char *opts;
    uint64_t limit, ra, rp, va_limit; /* va_limit 0: whatever the manager reports (RLIMIT_AS) */
} mgr_cfg[NMGR] = {
    {NULL, 0, 0, 0, 0},
    {"limit=256K,reserve.appdomain=32K,reserve.process=32K", 256 << 10, 32 << 10, 32 << 10, 0},
    {"limit=1M,va.limit=768K", 1 << 20, 0, 0, 768 << 10},
};

static mrec M[MAXA];
static mmgr MG[NMGR];
static uintptr_t top_addr, max_addr, min_addr; /* top_addr = max_addr + 1 */
static uint32_t next_tag = 1;

/* Zones for explicit-address reservations, where the outcome is predictable:
 *   0: hostmem chunk space known to be free (reserved by hostmem, then released);
 *   1: address space outside every chunk, held by our own PROT_NONE placeholder mapping except where
 *      a model allocation lies, so that reservations there get mappings of their own;
 *   2: its lower half is the top of a chunk, its upper half placeholder space above it, so that
 *      reservations there may be part chunk, part mapping of their own.
 * From zone_gap[z] up a zone lies outside every chunk. (tests/model.c has the same zones.) */
static uintptr_t zone_lo[NZONES], zone_gap[NZONES];
static bool zone_ok[NZONES];

/* memory hostmem does not own, for operations on "someone else's" address */
static uint8_t foreign[4 * 4096] __attribute__((aligned(4096)));

/* guard violations reported to our handler */
static volatile unsigned long guard_count;
static volatile uintptr_t guard_addr;
static unsigned long guard_expected;

static int pfd[2] = {-1, -1}; /* the probe pipe (non-blocking) */

/* Known divergences of the library that the model can accept, chosen by HM_FUZZ_TOLERATE (a list of
 * names; unset: "undo-watch"):
 *   undo-watch   under the fallback, MEM_RESET_UNDO's proof writes one word of each reset page
 *                (reset.c), so GetWriteWatch may list pages the program did not write (Windows would
 *                not; conservative for a collector). Under the kernel mechanism MEM_RESET keeps the
 *                data of watched pages (MADV_COLD) and the undo writes nothing;
 *   reset-watch  (fixed: kept so that old command lines work) a written page that MEM_RESET gave up
 *                and the kernel reclaimed was no longer listed under the kernel mechanism. */
static bool tol_undo_watch, tol_reset_watch;
static bool watch_kernel; /* the kernel write-watch mechanism is in use */

/* ---- reporting ----------------------------------------------------------------------------------- */

#define HIST 24
static char hist[HIST][200];
static unsigned long hist_count;
static unsigned opno;
static bool trace; /* HM_FUZZ_TRACE=1: every operation on stderr */

static void note(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
NOCOV static void note(const char *fmt, ...)
{
    char *h = hist[hist_count++ % HIST];
    int n = snprintf(h, sizeof hist[0], "op %u: ", opno);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(h + n, sizeof hist[0] - (size_t)n, fmt, ap);
    va_end(ap);
    if (trace) fprintf(stderr, "%s\n", h);
}

/* Outcome counts by operation and expected status, printed at exit with HM_FUZZ_STATS=1 (to see what
 * a corpus exercises). */
#define NSTAT 13
static const char *const stat_name[NSTAT] = {"alloc", "free",    "protect", "query",   "write",   "touch", "getww",
                                            "resetww", "manager", "pageout", "undo", "skipped", "guard"};
enum { S_UNDO = 10, S_SKIP = 11, S_GUARD = 12 };
static const hm_status stat_status[] = {HM_OK, HM_E_INVALID_PARAMETER, HM_E_INVALID_ADDRESS, HM_E_NOACCESS,
                                        HM_E_NOT_ENOUGH_MEMORY, HM_E_COMMITMENT_LIMIT, HM_E_BAD_LENGTH, HM_E_POINTER,
                                        HM_E_HOST_NOT_OWNER, HM_E_HOST_CLRNOTAVAILABLE};
#define NSTATUS (sizeof stat_status / sizeof stat_status[0])
static unsigned long stats[NSTAT][NSTATUS];

NOCOV static void tally(int what, hm_status st)
{
    for (size_t i = 0; i < NSTATUS; i++)
        if (stat_status[i] == st) stats[what][i]++;
}

NOCOV static void print_stats(void)
{
    fprintf(stderr, "fuzz_win32: outcomes (write watch: %s)\n%-9s", hm_write_watch_mechanism(), "");
    for (size_t i = 0; i < NSTATUS; i++) fprintf(stderr, " %8.8s", hm_status_name(stat_status[i]) + (i ? 0 : 0));
    fprintf(stderr, "\n");
    for (int k = 0; k < NSTAT; k++) {
        fprintf(stderr, "%-9s", stat_name[k]);
        for (size_t i = 0; i < NSTATUS; i++) fprintf(stderr, " %8lu", stats[k][i]);
        fprintf(stderr, "\n");
    }
}

static void fail(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
NOCOV static void fail(const char *fmt, ...)
{
    fprintf(stderr, "fuzz_win32: disagreement at op %u (write watch: %s)\n  ", opno, hm_write_watch_mechanism());
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\n  last library detail (may be from an earlier call): %s\nlast operations:\n", hm_last_detail());
    for (unsigned long i = hist_count > HIST ? hist_count - HIST : 0; i < hist_count; i++)
        fprintf(stderr, "  %s\n", hist[i % HIST]);
    fprintf(stderr, "live allocations:\n");
    for (int i = 0; i < MAXA; i++)
        if (M[i].live)
            fprintf(stderr, "  slot %d: %#lx, %zu pages, manager %d, aprot %#x%s%s\n", i, (unsigned long)M[i].base,
                    M[i].npages, M[i].owner, M[i].aprot, M[i].watch ? ", write watch" : "",
                    M[i].physical ? ", physical" : "");
    abort();
}

/* The Win32 last error of a status, as SPEC 2 and the library's table (status.c) give it. */
static DWORD w32_error(hm_status st)
{
    switch (st) {
    case HM_E_INVALID_PARAMETER: return 87;
    case HM_E_INVALID_ADDRESS: return 487;
    case HM_E_NOACCESS: return 998;
    case HM_E_POINTER: return 998;
    case HM_E_NOT_ENOUGH_MEMORY: return 8;
    case HM_E_COMMITMENT_LIMIT: return 1455;
    case HM_E_BAD_LENGTH: return 24;
    case HM_E_HOST_NOT_OWNER: return 288;
    case HM_E_HOST_CLRNOTAVAILABLE: return 4317;
    case HM_E_HOST_INVALIDOPERATION: return 4317;
    default: return 0xFFFFFFFFu;
    }
}

/* What a call returned: through the Win32 names (ok and the last error after it) or a status. */
typedef struct res {
    bool w32, ok;
    DWORD err;
    hm_status st;
} res;

static void expect(const res *r, hm_status want, const char *what)
{
    if (r->w32) {
        bool good = want == HM_OK ? r->ok && r->err == POISON : !r->ok && r->err == w32_error(want);
        if (!good)
            fail("%s: Win32 call %s with last error %u (%#x); expected %s with last error %u (%s)", what,
                 r->ok ? "succeeded" : "failed", r->err, r->err, want == HM_OK ? "success" : "failure",
                 want == HM_OK ? POISON : w32_error(want), hm_status_name(want));
    } else if (r->st != want) {
        fail("%s: status %s (%#x), expected %s (%#x)", what, hm_status_name(r->st), (unsigned)r->st,
             hm_status_name(want), (unsigned)want);
    }
}

static res w32_res(bool ok)
{
    res r = {true, ok, GetLastError(), HM_OK};
    return r;
}

static res hm_res(hm_status st)
{
    res r = {false, HM_SUCCEEDED(st), 0, st};
    return r;
}

/* ---- model helpers ------------------------------------------------------------------------------- */

static uintptr_t round_up(uintptr_t v, uintptr_t to) { return (v + to - 1) & ~(to - 1); }
static uintptr_t a_end(const mrec *a) { return a->base + a->npages * PAGE; }
static uintptr_t gran_end(const mrec *a) { return a->base + round_up(a->npages * PAGE, GRAN); }
static bool readable(uint32_t prot) { return prot != HM_PAGE_NOACCESS; }
static bool writable(uint32_t prot) { return prot == HM_PAGE_READWRITE || prot == HM_PAGE_EXECUTE_READWRITE; }

/* The allocation (any manager's) whose pages hold addr, or NULL (a granule's tail is not an
 * allocation's: SPEC 2.2, "queries show it free"). */
NOCOV static mrec *find(uintptr_t addr)
{
    for (int i = 0; i < MAXA; i++)
        if (M[i].live && addr >= M[i].base && addr < a_end(&M[i])) return &M[i];
    return NULL;
}

/* Whether [lo, hi) meets any allocation's granules (SPEC 2.7.1: a tail blocks its granule). */
NOCOV static bool overlaps(uintptr_t lo, uintptr_t hi)
{
    for (int i = 0; i < MAXA; i++)
        if (M[i].live && lo < gran_end(&M[i]) && M[i].base < hi) return true;
    return false;
}

static mrec *free_slot(void)
{
    for (int i = 0; i < MAXA; i++)
        if (!M[i].live) return &M[i];
    return NULL;
}

NOCOV static uintptr_t next_alloc_above(uintptr_t at)
{
    uintptr_t next = top_addr;
    for (int i = 0; i < MAXA; i++)
        if (M[i].live && M[i].base > at && M[i].base < next) next = M[i].base;
    return next;
}

NOCOV static uint64_t charge_of(int k)
{
    uint64_t c = 0;
    for (int i = 0; i < MAXA; i++)
        if (M[i].live && M[i].owner == k)
            for (size_t p = 0; p < M[i].npages; p++) c += M[i].pg[p].committed ? PAGE : 0;
    return c;
}

NOCOV static uint64_t va_of(int k)
{
    uint64_t v = 0;
    for (int i = 0; i < MAXA; i++)
        if (M[i].live && M[i].owner == k) v += M[i].npages * PAGE;
    return v;
}

/* The committed page's protection as queries report it (SPEC 2.1: the allocation's modifier). */
static uint32_t reported(const mrec *a, const mpage *g)
{
    return g->prot | (a->aprot & MODS) | (g->guard ? HM_PAGE_GUARD : 0);
}

NOCOV static bool same_region(const mpage *x, const mpage *y)
{
    return x->committed == y->committed && (!x->committed || (x->prot == y->prot && x->guard == y->guard));
}

/* SPEC 2.1 "A valid protection". */
static bool prot_valid(uint32_t prot)
{
    uint32_t base = prot & 0xFF, mod = prot & ~0xFFu;
    if (mod & ~(uint32_t)(HM_PAGE_GUARD | MODS)) return false;
    if (base != HM_PAGE_NOACCESS && base != HM_PAGE_READONLY && base != HM_PAGE_READWRITE &&
        base != HM_PAGE_EXECUTE && base != HM_PAGE_EXECUTE_READ && base != HM_PAGE_EXECUTE_READWRITE)
        return false;
    if (mod && base == HM_PAGE_NOACCESS) return false;
    if ((mod & HM_PAGE_NOCACHE) && (mod & HM_PAGE_WRITECOMBINE)) return false;
    if ((mod & HM_PAGE_GUARD) && (mod & MODS)) return false;
    return true;
}

/* Zone z holding all of [lo, hi), or -1. */
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
    if (z < 0) return true;
    if (lo < zone_gap[z]) lo = zone_gap[z];
    return lo >= hi || munmap((void *)lo, hi - lo) == 0;
}

static bool placeholder_on(int z, uintptr_t lo, uintptr_t hi)
{
    if (z < 0) return true;
    if (lo < zone_gap[z]) lo = zone_gap[z];
    return lo >= hi ||
           mmap((void *)lo, hi - lo, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED_NOREPLACE, -1, 0) ==
               (void *)lo;
}

static uint64_t tag_word(uintptr_t page, uint32_t tag, int which)
{
    uint64_t z = (uint64_t)page * 0x9E3779B97F4A7C15ull ^ ((uint64_t)tag << 20) ^ (uint64_t)which;
    z = (z ^ (z >> 31)) * 0xBF58476D1CE4E5B9ull;
    return (z ^ (z >> 29)) | 1; /* never zero: MEM_RESET_UNDO's proof needs a non-zero word */
}

static volatile uint64_t *word_at(uintptr_t page, int which)
{
    return (volatile uint64_t *)(page + (which ? PAGE - 8 : 0));
}

/* ---- probes without signals ---------------------------------------------------------------------- */

NOCOV static void drain(void)
{
    char sink[16];
    while (read(pfd[0], sink, sizeof sink) > 0) {
    }
}

/* 1 if one byte at p can be read (the kernel copies it into a pipe), 0 if EFAULT. */
NOCOV static int probe_read(const void *p)
{
    ssize_t r = write(pfd[1], p, 1);
    int e = errno;
    drain();
    return r == 1 ? 1 : e == EFAULT ? 0 : -1;
}

/* 1 if one byte at p can be written (the kernel copies a byte from the pipe to it), 0 if EFAULT.
 * The byte written is the current value when readable, so contents stay. */
NOCOV static int probe_write(void *p, bool can_read)
{
    unsigned char v = can_read ? *(volatile unsigned char *)p : 0;
    if (write(pfd[1], &v, 1) != 1) return -1;
    ssize_t r = read(pfd[0], p, 1);
    int e = errno;
    drain();
    return r == 1 ? 1 : e == EFAULT ? 0 : -1;
}

static hm_guard_action on_guard(void *addr, hm_access access, void *arg)
{
    (void)access;
    (void)arg;
    guard_addr = (uintptr_t)addr;
    guard_count = guard_count + 1;
    return HM_GUARD_CONTINUE; /* the access runs again with the base protection */
}

/* ---- operations: decoding ------------------------------------------------------------------------ */

/* One operation, 8 bytes:
 *   kind   what (op_kinds)
 *   sel    bits 0-2: the allocation slot it is about (mod MAXA); bits 3-4: the surface: 0 the Win32
 *          names (default manager), 1 hm_* on the default manager, 2 and 3 hm_* on extra managers 1
 *          and 2; bits 5-7: 0-3 hm_virtual_alloc, 4-7 hm_virtual_alloc_level with level 0-3
 *   amode  bits 0-3: address mode (op_addr); bit 4: add an unaligned bump of ((bits 5-7) + 1) * 0x2A1
 *   poff   page offset / index for the address mode
 *   smode  bits 0-3: size mode (op_size); bits 4-7: a byte adjustment; for MEM_RELEASE, bit 7 clear
 *          means size 0
 *   tflag  allocation or free type (tables), query buffer length, GetWriteWatch flags
 *   prot   protection (table); GetWriteWatch pointer variants
 *   cnt    page count; GetWriteWatch count */
typedef struct op {
    uint8_t kind, sel, amode, poff, smode, tflag, prot, cnt;
} op;

enum { K_ALLOC, K_FREE, K_PROTECT, K_QUERY, K_WRITE, K_TOUCH, K_GETWW, K_RESETWW, K_MANAGER, K_PAGEOUT, K_COUNT };
static const uint8_t op_kinds[16] = {K_ALLOC, K_ALLOC, K_ALLOC, K_ALLOC, K_FREE,  K_FREE,    K_PROTECT, K_PROTECT,
                                     K_QUERY, K_WRITE, K_WRITE, K_TOUCH, K_GETWW, K_RESETWW, K_MANAGER, K_PAGEOUT};

static const uint32_t alloc_types[32] = {
    HM_MEM_COMMIT, HM_MEM_COMMIT, HM_MEM_COMMIT, HM_MEM_COMMIT,
    HM_MEM_RESERVE, HM_MEM_RESERVE, HM_MEM_RESERVE | HM_MEM_COMMIT, HM_MEM_RESERVE | HM_MEM_COMMIT,
    HM_MEM_RESERVE | HM_MEM_WRITE_WATCH, HM_MEM_RESERVE | HM_MEM_COMMIT | HM_MEM_WRITE_WATCH,
    HM_MEM_RESERVE | HM_MEM_TOP_DOWN, HM_MEM_RESERVE | HM_MEM_COMMIT | HM_MEM_TOP_DOWN,
    HM_MEM_RESET, HM_MEM_RESET, HM_MEM_RESET_UNDO, HM_MEM_RESET_UNDO,
    HM_MEM_COMMIT | HM_MEM_TOP_DOWN, HM_MEM_RESERVE | HM_MEM_PHYSICAL, 0, HM_MEM_TOP_DOWN,
    HM_MEM_RESET | HM_MEM_COMMIT, HM_MEM_RESET_UNDO | HM_MEM_COMMIT, HM_MEM_COMMIT | HM_MEM_WRITE_WATCH,
    HM_MEM_WRITE_WATCH,
    HM_MEM_RESERVE | HM_MEM_COMMIT | HM_MEM_PHYSICAL, HM_MEM_RESERVE | HM_MEM_LARGE_PAGES,
    HM_MEM_RESERVE | HM_MEM_COMMIT | HM_MEM_LARGE_PAGES, 0x80000000u | HM_MEM_RESERVE /* MEM_4MB_PAGES */,
    0x40000000u | HM_MEM_RESERVE /* AT_ROUND_TO_PAGE */, HM_MEM_DECOMMIT, HM_MEM_RELEASE | HM_MEM_COMMIT,
    HM_MEM_RESERVE | HM_MEM_COMMIT | 0x10u};

static const uint32_t free_types[16] = {
    HM_MEM_DECOMMIT, HM_MEM_DECOMMIT, HM_MEM_DECOMMIT, HM_MEM_DECOMMIT, HM_MEM_DECOMMIT,
    HM_MEM_RELEASE, HM_MEM_RELEASE, HM_MEM_RELEASE, HM_MEM_RELEASE, HM_MEM_RELEASE,
    0, HM_MEM_FREE, HM_MEM_DECOMMIT | HM_MEM_RELEASE, HM_MEM_RESERVE, HM_MEM_COMMIT, HM_MEM_RELEASE | 0x10u};

#define RW HM_PAGE_READWRITE
static const uint32_t prots[32] = {
    RW, RW, RW, HM_PAGE_READONLY, HM_PAGE_NOACCESS, HM_PAGE_EXECUTE, HM_PAGE_EXECUTE_READ, HM_PAGE_EXECUTE_READWRITE,
    RW | HM_PAGE_GUARD, HM_PAGE_READONLY | HM_PAGE_GUARD, HM_PAGE_EXECUTE_READ | HM_PAGE_GUARD,
    HM_PAGE_EXECUTE_READWRITE | HM_PAGE_GUARD,
    RW | HM_PAGE_NOCACHE, HM_PAGE_READONLY | HM_PAGE_WRITECOMBINE, HM_PAGE_EXECUTE_READWRITE | HM_PAGE_NOCACHE,
    RW | HM_PAGE_WRITECOMBINE,
    0, HM_PAGE_WRITECOPY, HM_PAGE_EXECUTE_WRITECOPY, HM_PAGE_GUARD | HM_PAGE_NOACCESS,
    RW | HM_PAGE_NOCACHE | HM_PAGE_WRITECOMBINE, HM_PAGE_NOCACHE | HM_PAGE_NOACCESS, RW | HM_PAGE_GUARD | HM_PAGE_NOCACHE,
    HM_PAGE_READONLY | RW,
    RW | 0x800u, HM_PAGE_GUARD, HM_PAGE_NOCACHE, HM_PAGE_WRITECOMBINE | HM_PAGE_NOACCESS,
    RW, HM_PAGE_READONLY, HM_PAGE_EXECUTE | HM_PAGE_GUARD, RW | HM_PAGE_GUARD | HM_PAGE_WRITECOMBINE};
#undef RW

static int op_slot(const op *o) { return (o->sel & 7) % MAXA; }
static int op_mgr(const op *o) { return (o->sel >> 3) & 3; } /* 0, 1: default manager; 2, 3: extra 1, 2 */
static int mgr_index(int surface) { return surface < 2 ? 0 : surface - 1; }

static uintptr_t bump(const op *o)
{
    return (o->amode & 0x10) ? ((((uintptr_t)(o->amode >> 5)) + 1) * 0x2A1u) & (PAGE - 1) : 0;
}

static uintptr_t zone_addr(const op *o)
{
    int z = o->poff % NZONES;
    if (!zone_ok[z]) z = 0;
    uintptr_t a = zone_lo[z] + ((uintptr_t)(o->poff / NZONES) % (ZONE / GRAN)) * GRAN;
    if (o->amode & 0x10) a += (uintptr_t)(o->poff % 16) * PAGE + bump(o);
    return a;
}

/* The address argument: around allocation x (the op's slot) when it is live. */
static uintptr_t op_addr(const op *o, const mrec *x)
{
    unsigned mode = o->amode & 15;
    if (!x && mode <= 7) return zone_addr(o);
    switch (mode) {
    case 0:
    case 1:
    case 2: return x->base + (uintptr_t)(o->poff % (x->npages + 2)) * PAGE + bump(o); /* inside, or up to a page past */
    case 3: return x->base + bump(o);
    case 4: return a_end(x) + bump(o); /* just past the end */
    case 5: { /* the unusable tail of the last granule (the end itself when there is none) */
        size_t tail = (gran_end(x) - a_end(x)) / PAGE;
        return a_end(x) + (uintptr_t)(tail ? o->poff % tail : 0) * PAGE + bump(o);
    }
    case 6: return gran_end(x) + (uintptr_t)(o->poff % 4) * GRAN + bump(o);
    case 7: return x->base - (uintptr_t)(1 + o->poff % 4) * PAGE + bump(o);
    case 8: return 0 + bump(o) * (o->poff & 1); /* NULL, or an address in page 0 */
    case 9: return (uintptr_t)(o->poff % 16) * PAGE + bump(o); /* below 0x10000 */
    case 10:
    case 11: return zone_addr(o);
    case 12: return top_addr - (uintptr_t)(1 + o->poff % 16) * PAGE + bump(o); /* just below the top */
    case 13: return (o->poff & 1) ? top_addr + (uintptr_t)(o->poff >> 1) * PAGE : (uintptr_t)0 - (uintptr_t)(1 + o->poff % 4) * PAGE;
    case 14: { /* in another slot's allocation */
        const mrec *y = &M[o->poff % MAXA];
        if (!y->live) return zone_addr(o);
        return y->base + (uintptr_t)((o->poff >> 3) % y->npages) * PAGE + bump(o);
    }
    default: return (uintptr_t)foreign + (uintptr_t)(o->poff % 3) * PAGE + bump(o); /* not hostmem's */
    }
}

static size_t op_size(const op *o, const mrec *x, uintptr_t addr)
{
    size_t n = o->cnt % 65, adj = o->smode >> 4;
    switch (o->smode & 15) {
    case 0: return 0;
    case 1:
    case 2:
    case 3: return (n ? n : 1) * PAGE;
    case 4: return n * PAGE > 1 + adj * 0x111 ? n * PAGE - 1 - adj * 0x111 : 1; /* unaligned */
    case 5: return 1 + adj;
    case 6: return x ? x->npages * PAGE : GRAN;
    case 7: return x && addr < a_end(x) ? a_end(x) - addr : PAGE;                 /* exactly to the end */
    case 8: return x && addr < a_end(x) ? a_end(x) - addr + (1 + n % 4) * PAGE - adj : 2 * PAGE; /* past it */
    case 9: return x && addr < gran_end(x) ? gran_end(x) - addr : GRAN;
    case 10: return SIZE_MAX;
    case 11: return (size_t)1 << 62;
    case 12: return (size_t)0 - addr + (1 + n % 4) * PAGE; /* addr + size wraps */
    case 13: return addr < top_addr ? top_addr - addr : PAGE; /* exactly to the top */
    case 14: return (size_t)1 << 40;
    default: return GRAN * (1 + n % 3) + adj;
    }
}

/* ---- checks -------------------------------------------------------------------------------------- */

/* Slots an operation touched: checked page by page afterwards, and pages [lo, hi) probed. */
static bool touched[MAXA];
static size_t t_lo[MAXA], t_hi[MAXA];

NOCOV static void touch_range(uintptr_t s, uintptr_t e)
{
    for (int i = 0; i < MAXA; i++) {
        mrec *a = &M[i];
        if (!a->live || e <= a->base || s >= a_end(a)) continue;
        uintptr_t lo = s > a->base ? s : a->base, hi = e < a_end(a) ? e : a_end(a);
        size_t p0 = (lo - a->base) / PAGE, p1 = (hi - a->base + PAGE - 1) / PAGE;
        if (!touched[i] || t_lo[i] > p0) t_lo[i] = p0;
        if (!touched[i] || t_hi[i] < p1) t_hi[i] = p1;
        touched[i] = true;
    }
}

NOCOV static void touch_slot(const mrec *a)
{
    if (a && a->live) touch_range(a->base, a_end(a));
}

/* SPEC 2.5: what a query by manager k must answer for addr (a status, and the region on success). */
NOCOV static hm_status model_query(int k, uintptr_t addr, hm_region *r)
{
    memset(r, 0, sizeof *r);
    if (addr > max_addr) return HM_E_INVALID_PARAMETER;
    uintptr_t at = addr & ~(PAGE - 1);
    r->base = (void *)at;
    mrec *a = find(at);
    if (!a) { /* SPEC 2.7.4: free is PAGE_NOACCESS and reaches the next allocation */
        r->size = next_alloc_above(at) - at;
        r->state = HM_MEM_FREE;
        r->protect = HM_PAGE_NOACCESS;
        return HM_OK;
    }
    if (a->owner != k) return HM_E_HOST_NOT_OWNER; /* SPEC 3.1 */
    size_t p = (at - a->base) / PAGE, q = p + 1;
    const mpage *g = &a->pg[p];
    while (q < a->npages && same_region(&a->pg[q], g)) q++;
    r->allocation_base = (void *)a->base;
    r->allocation_protect = a->aprot;
    r->size = (q - p) * PAGE; /* regions never cross an allocation's end */
    r->state = g->committed ? HM_MEM_COMMIT : HM_MEM_RESERVE;
    r->protect = g->committed ? reported(a, g) : 0; /* SPEC 2.7.4: reserved pages report 0 */
    r->type = HM_MEM_PRIVATE;
    return HM_OK;
}

NOCOV static void cmp_region(const hm_region *g, const hm_region *w, const char *what, uintptr_t addr)
{
    if (g->base != w->base || g->allocation_base != w->allocation_base || g->allocation_protect != w->allocation_protect ||
        g->partition_id != 0 || g->size != w->size || g->state != w->state || g->protect != w->protect ||
        g->type != w->type)
        fail("%s at %#lx: got {base %p, abase %p, aprot %#x, part %u, size %#zx, state %#x, protect %#x, type %#x}; "
             "model {base %p, abase %p, aprot %#x, size %#zx, state %#x, protect %#x, type %#x}",
             what, (unsigned long)addr, g->base, g->allocation_base, g->allocation_protect, g->partition_id, g->size,
             g->state, g->protect, g->type, w->base, w->allocation_base, w->allocation_protect, w->size, w->state,
             w->protect, w->type);
}

/* A query by manager k (the Win32 name for the default manager, alternately) checked against the model. */
NOCOV static void check_query(int k, uintptr_t addr, const char *what)
{
    if (MG[k].state != M_RUNNING) return;
    hm_region w, g;
    hm_status want = model_query(k, addr, &w);
    memset(&g, 0xA5, sizeof g);
    if (k == 0 && (addr / PAGE) % 2) {
        MEMORY_BASIC_INFORMATION m;
        memset(&m, 0xA5, sizeof m);
        SetLastError(POISON);
        SIZE_T n = VirtualQuery((void *)addr, &m, sizeof m);
        res r = w32_res(n != 0);
        expect(&r, want, what);
        if (n && n != sizeof m) fail("%s: VirtualQuery returned %zu", what, (size_t)n);
        memcpy(&g, &m, sizeof g);
    } else {
        hm_status st = hm_virtual_query(MG[k].h, (void *)addr, &g);
        res r = hm_res(st);
        expect(&r, want, what);
    }
    if (want == HM_OK) cmp_region(&g, &w, what, addr);
}

/* SPEC 2.7.2: the words we read are what the model says (re-commit keeps, decommit zeroes). */
NOCOV static void check_contents(const mrec *a, size_t p, const char *what)
{
    const mpage *g = &a->pg[p];
    if (!g->committed || !readable(g->prot) || g->guard) return; /* a guard page is touched by K_TOUCH only */
    uintptr_t pa = a->base + p * PAGE;
    for (int which = 0; which < 2; which++) {
        uint64_t v = *word_at(pa, which), t = tag_word(pa, g->tag, which);
        bool ok = g->content == C_ZERO ? v == 0 : g->content == C_TAG ? v == t : (v == 0 || v == t);
        if (!ok)
            fail("%s: page %#lx (page %zu of %#lx) word %d is %#" PRIx64 ", model expects %s %#" PRIx64, what,
                 (unsigned long)pa, p, (unsigned long)a->base, which, v,
                 g->content == C_ZERO ? "zero" : g->content == C_TAG ? "tag" : "zero or tag", t);
    }
}

/* SPEC 2.1: the page's real access is the one of its Win32 state (reserved: none). Guard pages are
 * left alone; on write-watched pages a write probe is made only where it cannot change the watch
 * state (the page is not writable, or already written): under the fallback the kernel's own writes
 * into an unwritten watched page fail (README), under the kernel mechanism they count as writes. */
NOCOV static void check_access(const mrec *a, size_t p)
{
    const mpage *g = &a->pg[p];
    if (g->guard) return;
    void *pa = (void *)(a->base + p * PAGE);
    int want_r = g->committed && readable(g->prot), r = probe_read(pa);
    if (r != want_r)
        fail("page %p (page %zu of %#lx, %s, protection %#x): readable %d, expected %d", pa, p, (unsigned long)a->base,
             g->committed ? "committed" : "reserved", g->prot, r, want_r);
    if (!want_r) return;
    int want_w = writable(g->prot);
    if (a->watch && want_w && g->ww != W_WRITTEN) return;
    int w = probe_write(pa, true);
    if (w != want_w)
        fail("page %p (page %zu of %#lx, protection %#x%s): writable %d, expected %d", pa, p, (unsigned long)a->base,
             g->prot, a->watch ? ", write-watched" : "", w, want_w);
}

/* SPEC 2.6: GetWriteWatch lists written pages in order; with reset, exactly the listed ones are reset.
 * Pages in W_MAYBE (possibly written by the library itself, see op_undo) may be listed or not; what
 * the call shows of them settles their state. n pages were listed of a capacity cap. */
NOCOV static void check_listing(mrec *a, uintptr_t start, uintptr_t end, void *const *out, uintptr_t n, uintptr_t cap,
                                bool reset, const char *what)
{
    if (n > cap) fail("%s: %lu pages listed, capacity %lu", what, (unsigned long)n, (unsigned long)cap);
    for (uintptr_t i = 0; i < n; i++)
        if ((uintptr_t)out[i] % PAGE || (uintptr_t)out[i] < start || (uintptr_t)out[i] >= end ||
            (i && (uintptr_t)out[i] <= (uintptr_t)out[i - 1]))
            fail("%s: entry %lu is %p: not a page of [%#lx, %#lx) in ascending order", what, (unsigned long)i, out[i],
                 (unsigned long)start, (unsigned long)end);
    uintptr_t seen_end = n < cap ? end : (uintptr_t)out[n - 1] + PAGE; /* pages below it were all considered */
    uintptr_t k = 0;
    for (uintptr_t at = start; at < seen_end; at += PAGE) {
        mpage *g = &a->pg[(at - a->base) / PAGE];
        bool listed = k < n && (uintptr_t)out[k] == at;
        if (listed) {
            k++;
            if (g->ww == W_CLEAN)
                fail("%s: page %#lx listed as written; the model says it was not written since the allocation, "
                     "its decommit or the last reset", what, (unsigned long)at);
            g->ww = reset ? W_CLEAN : W_WRITTEN;
        } else {
            if (g->ww == W_WRITTEN) fail("%s: written page %#lx not listed (%lu listed)", what, (unsigned long)at, (unsigned long)n);
            g->ww = W_CLEAN;
        }
    }
}

/* Lists the whole allocation without reset and compares. */
NOCOV static void check_watch(mrec *a)
{
    if (!a->watch || MG[a->owner].state != M_RUNNING) return;
    void *out[WWCAP];
    uintptr_t count = MAXP;
    uint32_t gran = 0;
    hm_status st = hm_get_write_watch(MG[a->owner].h, 0, (void *)a->base, a->npages * PAGE, out, &count, &gran);
    if (st != HM_OK) fail("GetWriteWatch over the whole write-watched allocation %#lx: %s", (unsigned long)a->base, hm_status_name(st));
    if (gran != PAGE) fail("GetWriteWatch: granularity %u", gran);
    check_listing(a, a->base, a_end(a), out, count, MAXP, false, "write-watch check");
}

NOCOV static void check_stats(void)
{
    size_t n = 0, res_b = 0, com = 0;
    for (int i = 0; i < MAXA; i++) {
        if (!M[i].live) continue;
        n++;
        res_b += M[i].npages * PAGE;
        for (size_t p = 0; p < M[i].npages; p++) com += M[i].pg[p].committed ? PAGE : 0;
    }
    hm_vm_stats s;
    hm_vm_get_stats(&s);
    if (s.allocations != n || s.reserved_bytes != res_b || s.committed_bytes != com)
        fail("hm_vm_get_stats: %zu allocations, %zu reserved, %zu committed bytes; model: %zu, %zu, %zu", s.allocations,
             s.reserved_bytes, s.committed_bytes, n, res_b, com);
    for (int k = 0; k < NMGR; k++) {
        if (MG[k].state == M_ABSENT) continue;
        hm_manager_stats ms;
        hm_status st = hm_manager_get_stats(MG[k].h, &ms);
        if (st != HM_OK) fail("hm_manager_get_stats(manager %d): %s", k, hm_status_name(st));
        if (ms.charge != charge_of(k) || ms.va_used != va_of(k)) /* SPEC 3.2, 3.6 */
            fail("manager %d: charge %" PRIu64 ", va_used %" PRIu64 "; model %" PRIu64 ", %" PRIu64, k, ms.charge,
                 ms.va_used, charge_of(k), va_of(k));
        hm_manager_state want = MG[k].state == M_RUNNING ? HM_MANAGER_RUNNING : HM_MANAGER_SHUT_DOWN;
        if (ms.state != want) fail("manager %d: state %d, expected %d", k, (int)ms.state, (int)want);
    }
}

/* hm_vm_walk reports manager k's regions, allocation by allocation in address order, as queries would. */
#define WALKCAP (MAXA * MAXP)
typedef struct walk {
    size_t n;
    hm_region r[WALKCAP];
} walk;

NOCOV static int walk_fn(const hm_region *r, void *arg)
{
    walk *w = arg;
    if (w->n < WALKCAP) w->r[w->n] = *r;
    w->n++;
    return 0;
}

NOCOV static void check_walk(int k)
{
    static walk w;
    if (MG[k].state != M_RUNNING) return;
    w.n = 0;
    hm_status st = hm_vm_walk(MG[k].h, walk_fn, &w);
    if (st != HM_OK) fail("hm_vm_walk(manager %d): %s", k, hm_status_name(st));
    size_t i = 0;
    for (uintptr_t at = 0;;) {
        const mrec *a = NULL;
        for (int j = 0; j < MAXA; j++)
            if (M[j].live && M[j].owner == k && M[j].base >= at && (!a || M[j].base < a->base)) a = &M[j];
        if (!a) break;
        for (uintptr_t x = a->base; x < a_end(a);) {
            hm_region want;
            model_query(k, x, &want);
            if (i >= w.n || i >= WALKCAP) fail("hm_vm_walk(manager %d): %zu regions, the model has more", k, w.n);
            cmp_region(&w.r[i++], &want, "hm_vm_walk", x);
            x += want.size;
        }
        at = a->base + 1;
    }
    if (i != w.n) fail("hm_vm_walk(manager %d): %zu regions, the model has %zu", k, w.n, i);
}

/* hm_vmap_check(true) also compares /proc/self/maps with the map: the most expensive check (a third of
 * the time under ASan), so by default it runs after every operation that changed kernel protections
 * in the model (kchange: a successful alloc, free, protect, undo, watch reset, manager destroy, a
 * guard fired, a first write to a watched page) and at the end of each input. A failed call must
 * change nothing: the queries, probes and the map's own check after it say so, and the next kernel
 * check would find a stray protection. HM_FUZZ_KERNEL_CHECK=1: after every operation; =0: at the end
 * of each input only (faster). */
static bool kernel_check_every_op, kernel_check_at_end, kchange;

NOCOV static void check_vmap(bool with_kernel)
{
    if (hm_vmap_check(with_kernel) != HM_OK) fail("hm_vmap_check(%d): %s", (int)with_kernel, hm_last_detail());
}

/* Everything the model knows, after each operation: page by page where the operation acted, region
 * by region elsewhere (a region's size proves that its pages agree), the free space around every
 * allocation, contents, access, write watch, stats, guard reports, and the map's own check. */
NOCOV static void check_all(void)
{
    if (guard_count != guard_expected)
        fail("%lu guard violations reported, the model expects %lu", guard_count, guard_expected);
    check_stats();
    for (int i = 0; i < MAXA; i++) {
        mrec *a = &M[i];
        if (!a->live) continue;
        int k = a->owner;
        for (size_t p = 0; p < a->npages;) {
            size_t q = p + 1;
            while (q < a->npages && same_region(&a->pg[q], &a->pg[p])) q++;
            /* every region from its start (a page that differs from the model either starts a model
             * region or cuts short the library's region holding it); page by page where the operation
             * acted, at an address inside the page */
            check_query(k, a->base + p * PAGE, "query (region start)");
            if (touched[i])
                for (size_t r = p + 1 > t_lo[i] ? p + 1 : t_lo[i]; r < q && r < t_hi[i]; r++)
                    check_query(k, a->base + r * PAGE + ((r * 1237 + opno) % PAGE), "query");
            p = q;
        }
        for (size_t p = 0; p < a->npages; p++) check_contents(a, p, "contents");
        if (touched[i]) { /* the first and last page of each region the operation met */
            for (size_t p = t_lo[i]; p < t_hi[i] && p < a->npages;) {
                size_t q = p + 1;
                while (q < t_hi[i] && q < a->npages && same_region(&a->pg[q], &a->pg[p])) q++;
                check_access(a, p);
                if (q - 1 > p) check_access(a, q - 1);
                p = q;
            }
        }
        check_access(a, (opno * 7u + (unsigned)i) % a->npages);
        check_watch(a);
        /* the free space around it: the granule's tail (SPEC 2.7.1), after the granule, below the base */
        if (gran_end(a) != a_end(a)) {
            check_query(0, a_end(a), "query (granule tail)");
            if (probe_read((void *)a_end(a)) != 0) fail("the granule tail %#lx of %#lx is readable", (unsigned long)a_end(a), (unsigned long)a->base);
        }
        check_query(0, gran_end(a) + 16, "query (after the allocation)");
        check_query(0, a->base - 1, "query (below the allocation)");
    }
    for (int z = 0; z < NZONES; z++)
        if (zone_ok[z]) check_query(0, zone_lo[z] + (opno % (ZONE / GRAN)) * GRAN, "query (zone)");
    for (int k = 0; k < NMGR; k++) check_walk(k);
    check_vmap(kernel_check_every_op || (kchange && !kernel_check_at_end));
}

/* ---- operations ---------------------------------------------------------------------------------- */

static void new_record(mrec *a, int owner, uintptr_t base, size_t bytes, uint32_t type, uint32_t prot)
{
    memset(a, 0, sizeof *a);
    a->live = true;
    a->owner = owner;
    a->base = base;
    a->npages = bytes / PAGE;
    a->aprot = prot;
    a->watch = (type & HM_MEM_WRITE_WATCH) != 0;
    a->physical = (type & HM_MEM_PHYSICAL) != 0;
    if (type & HM_MEM_COMMIT)
        for (size_t p = 0; p < a->npages; p++)
            a->pg[p] = (mpage){1, (uint8_t)(prot & 0xFF), (prot & HM_PAGE_GUARD) != 0, C_ZERO, 0, W_CLEAN, 0};
    touch_slot(a);
}

/* The allocation is gone (the model already says so): its address space must be too (zones 1 and 2:
 * our placeholder fits there again). */
NOCOV static void check_gone(const mrec *a, const char *what)
{
    uintptr_t base = a->base, bytes = a->npages * PAGE;
    int z = zone_of(base, base + bytes);
    if (!placeholder_on(z, base, base + bytes)) fail("%s: allocation %#lx is still mapped in the kernel", what, (unsigned long)base);
    check_query(0, base, what);
    if (probe_read((void *)base) != 0) fail("%s: allocation %#lx is still readable", what, (unsigned long)base);
}

static void forget(mrec *a, const char *what)
{
    a->live = false;
    check_gone(a, what);
}

/* SPEC 2.2 argument rules (error 87), before any state is looked at. 1: valid; 0: 87; -1: a valid
 * MEM_LARGE_PAGES request (its outcome depends on the system's huge pages: not made). */
static int alloc_args(uintptr_t a, size_t size, uint32_t type, uint32_t prot)
{
    const uint32_t known = HM_MEM_COMMIT | HM_MEM_RESERVE | HM_MEM_RESET | HM_MEM_RESET_UNDO | HM_MEM_TOP_DOWN |
                           HM_MEM_WRITE_WATCH | HM_MEM_PHYSICAL | HM_MEM_LARGE_PAGES;
    const size_t large = 2u << 20;
    if (type & ~known) return 0;
    if (!(type & (HM_MEM_COMMIT | HM_MEM_RESERVE | HM_MEM_RESET | HM_MEM_RESET_UNDO))) return 0;
    if ((type & HM_MEM_RESET) && type != HM_MEM_RESET) return 0;           /* MEM_RESET alone */
    if ((type & HM_MEM_RESET_UNDO) && type != HM_MEM_RESET_UNDO) return 0; /* MEM_RESET_UNDO alone */
    if (size == 0 || !prot_valid(prot)) return 0;
    if ((type & HM_MEM_WRITE_WATCH) && (!(type & HM_MEM_RESERVE) || (type & (HM_MEM_LARGE_PAGES | HM_MEM_PHYSICAL)))) return 0;
    if ((type & HM_MEM_LARGE_PAGES) &&
        ((type & (HM_MEM_RESERVE | HM_MEM_COMMIT)) != (HM_MEM_RESERVE | HM_MEM_COMMIT) || size % large || a % large))
        return 0;
    if ((type & HM_MEM_PHYSICAL) && (!(type & HM_MEM_RESERVE) || (type & HM_MEM_COMMIT) || prot != HM_PAGE_READWRITE))
        return 0;
    if (size > top_addr - min_addr) return 0; /* larger than the address space */
    if (a) {
        if (a < min_addr || a > max_addr || size > top_addr - a) return 0; /* low, high, or wrapping */
    } else if (type & (HM_MEM_RESET | HM_MEM_RESET_UNDO)) {
        return 0;
    }
    return (type & HM_MEM_LARGE_PAGES) ? -1 : 1;
}

/* The allocation holding all of [s, e), or NULL. */
static mrec *holder(uintptr_t s, uintptr_t e)
{
    mrec *a = find(s);
    return a && find(e - 1) == a ? a : NULL;
}

/* One VirtualAlloc through the op's surface. */
static res do_alloc(const op *o, int k, void *addr, size_t size, uint32_t type, uint32_t prot, void **out)
{
    int surface = op_mgr(o), lv = o->sel >> 5;
    *out = (void *)1;
    if (surface == 0) {
        SetLastError(POISON);
        *out = VirtualAlloc(addr, size, type, prot);
        return w32_res(*out != NULL);
    }
    hm_status st = lv >= 4 ? hm_virtual_alloc_level(MG[k].h, addr, size, type, prot, (hm_level)(lv - 4), out)
                           : hm_virtual_alloc(MG[k].h, addr, size, type, prot, out);
    return hm_res(st);
}

/* The critical level of the op's VirtualAlloc: the Win32 names and hm_virtual_alloc use the manager's
 * win32.level (default eProcessCritical); hm_virtual_alloc_level names one (3 is invalid). */
static unsigned op_level(const op *o)
{
    return op_mgr(o) >= 1 && (o->sel >> 5) >= 4 ? (unsigned)(o->sel >> 5) - 4 : 2;
}

/* SPEC 2.2 / 2.6 MEM_RESET_UNDO on [s, e) of a by manager k. Success means every reset page kept its
 * data; failure (8) needs an excuse: a reset page in the range that lost its data, reads all zero,
 * or cannot be written (not writable, or guarded) for the library's proof (reset.c). */
static void op_undo(const op *o, int k, mrec *a, uintptr_t addr, size_t size, uint32_t prot, uintptr_t s, uintptr_t e)
{
    void *b;
    size_t p0 = (s - a->base) / PAGE, p1 = (e - a->base) / PAGE, npending = 0;
    bool excuse = false;
    for (size_t p = p0; p < p1; p++) {
        const mpage *g = &a->pg[p];
        if (!g->pending) continue;
        npending++;
        if (!writable(g->prot) || g->guard || g->content == C_ZERO) excuse = true;
        else if (g->content == C_MAYBE && *word_at(a->base + p * PAGE, 0) == 0) excuse = true; /* really lost */
    }
    res r = do_alloc(o, k, (void *)addr, size, HM_MEM_RESET_UNDO, prot, &b);
    note("reset undo(%#lx, %#zx) via %d -> %s/%u %p (%zu pending, excuse %d)", (unsigned long)addr, size, op_mgr(o),
         hm_status_name(r.st), r.err, b, npending, excuse);
    /* The proof writes a word of each reset page (reset.c): under write watch that page may now be
     * listed although the program did not write it (tol_undo_watch: the model accepts either). */
    if (a->watch && tol_undo_watch)
        for (size_t p = p0; p < p1; p++)
            if (a->pg[p].pending && writable(a->pg[p].prot) && !a->pg[p].guard && a->pg[p].ww == W_CLEAN) a->pg[p].ww = W_MAYBE;
    touch_range(s, e);
    tally(S_UNDO, r.ok ? HM_OK : HM_E_NOT_ENOUGH_MEMORY);
    kchange = true; /* the proof writes pages: under the fallback, watched pages get their write access */
    if (r.ok) {
        if ((uintptr_t)b != s) fail("reset undo at %#lx returned %p, expected %#lx", (unsigned long)addr, b, (unsigned long)s);
        for (size_t p = p0; p < p1; p++) {
            mpage *g = &a->pg[p];
            if (g->pending && g->content == C_MAYBE) g->content = C_TAG;
            g->pending = 0;
        }
        return;
    }
    if (npending == 0 || !excuse)
        fail("MEM_RESET_UNDO failed (%s, last error %u) though every reset page of the range (%zu) kept its data and is "
             "writable", hm_status_name(r.st), r.err, npending);
    expect(&r, HM_E_NOT_ENOUGH_MEMORY, "failed MEM_RESET_UNDO"); /* reset.c's status for "may have lost data" */
    if (b) fail("failed reset undo returned %p", b);
}

static void op_alloc(const op *o)
{
    int k = mgr_index(op_mgr(o)), slot = op_slot(o);
    mrec *x = M[slot].live ? &M[slot] : NULL;
    uintptr_t addr = op_addr(o, x);
    size_t size = op_size(o, x, addr);
    uint32_t type = alloc_types[o->tflag % 32], prot = prots[o->prot % 32];
    unsigned level = op_level(o);
    if (type == HM_MEM_RESET_UNDO && !prot_valid(prot)) prot = HM_PAGE_READWRITE; /* SPEC is silent on undo's flProtect */
    if (x) touch_slot(x);

    hm_status want = HM_OK;
    int valid = alloc_args(addr, size, type, prot);
    if (valid < 0) { /* large pages: the outcome depends on the system */
        tally(S_SKIP, HM_OK);
        return;
    }
    bool creates = (type & HM_MEM_RESERVE) || !addr;
    uintptr_t start = 0, bytes = 0, s = addr & ~(PAGE - 1), e = 0;
    mrec *a = NULL;
    int zone = -1;
    if (op_mgr(o) >= 1 && level > 2) want = HM_E_INVALID_PARAMETER; /* hm_virtual_alloc_level: level checked first */
    else if (MG[k].state != M_RUNNING) want = HM_E_HOST_CLRNOTAVAILABLE; /* SPEC 3.4 */
    else if (!valid) want = HM_E_INVALID_PARAMETER;
    else if (creates) {
        if (addr) { /* SPEC 2.2 rounding: start down to 64 KiB, size up to a page from addr + size */
            start = addr & ~(GRAN - 1);
            bytes = round_up(addr + size, PAGE) - start;
            if (bytes > MAXP * PAGE && !overlaps(start, start + round_up(bytes, GRAN))) { /* keep it small */
                size = start + MAXP * PAGE - addr;
                bytes = MAXP * PAGE;
            }
        } else {
            bytes = round_up(size, PAGE);
            if (bytes > NEWP * PAGE) bytes = size = NEWP * PAGE;
        }
        if (addr && overlaps(start, start + round_up(bytes, GRAN))) want = HM_E_INVALID_ADDRESS; /* SPEC 2.2 */
        else if (va_of(k) + bytes > MG[k].va_limit) want = HM_E_NOT_ENOUGH_MEMORY;                      /* SPEC 3.6 */
        else if ((type & HM_MEM_COMMIT) && charge_of(k) + bytes > MG[k].thr[level]) want = HM_E_COMMITMENT_LIMIT; /* 3.2 */
        else if (!free_slot()) { /* the model is full: not made */
            tally(S_SKIP, HM_OK);
            return;
        }
        else if (addr) {
            zone = zone_of(start, start + round_up(bytes, GRAN));
            if (zone < 0) { /* free, but what else is mapped there is unknown: not made */
                tally(S_SKIP, HM_OK);
                return;
            }
        }
    } else { /* commit, reset, undo of [s, e) */
        e = round_up(addr + size, PAGE);
        mrec *f = find(s);
        a = holder(s, e);
        if (f && f->owner != k) want = HM_E_HOST_NOT_OWNER; /* SPEC 3.1 */
        else if (!a) want = HM_E_INVALID_ADDRESS;           /* SPEC 2.2: not inside one allocation */
        else if (type == HM_MEM_RESET_UNDO) {
            op_undo(o, k, a, addr, size, prot, s, e);
            return;
        } else if (type == HM_MEM_COMMIT || type == (HM_MEM_COMMIT | HM_MEM_TOP_DOWN)) {
            uint64_t grow = 0;
            for (uintptr_t p = (s - a->base) / PAGE; p < (e - a->base) / PAGE; p++) grow += a->pg[p].committed ? 0 : PAGE;
            if (a->physical) want = HM_E_INVALID_PARAMETER; /* MEM_PHYSICAL reservations cannot be committed */
            else if (grow && charge_of(k) + grow > MG[k].thr[level]) want = HM_E_COMMITMENT_LIMIT;
        }
        if (f) touch_range(s, e);
    }

    if (zone >= 0 && want == HM_OK && !placeholder_off(zone, start, start + round_up(bytes, GRAN)))
        fail("munmap of our placeholder failed");
    void *b;
    res r = do_alloc(o, k, (void *)addr, size, type, prot, &b);
    note("alloc(%#lx, %#zx, type %#x, prot %#x, level %u) via %d -> %s/%u %p; expected %s", (unsigned long)addr, size,
         type, prot, level, op_mgr(o), hm_status_name(r.st), r.err, b, hm_status_name(want));
    if (zone >= 0) { /* our placeholder back where hostmem did not map (all of it after a failure) */
        uintptr_t from = r.ok && want == HM_OK ? start + bytes : start;
        if (!placeholder_on(zone, from, start + round_up(bytes, GRAN)))
            fail("cannot put our placeholder back over %#lx: hostmem mapped there", (unsigned long)from);
    }
    expect(&r, want, "VirtualAlloc");
    tally(K_ALLOC, want);
    kchange |= want == HM_OK;
    if (want != HM_OK) {
        if (b) fail("failed VirtualAlloc returned %p", b);
        return;
    }
    uintptr_t got = (uintptr_t)b;
    if (creates) {
        if (addr && got != start) fail("reserve at %#lx returned %p, expected %#lx", (unsigned long)addr, b, (unsigned long)start);
        if (!addr && (got % GRAN || got < min_addr || got + bytes > top_addr || overlaps(got, got + round_up(bytes, GRAN))))
            fail("reserve at NULL returned %p: not 64 KiB aligned, or over a live allocation", b);
        new_record(free_slot(), k, got, bytes, type, prot);
        return;
    }
    if (got != s) fail("%s at %#lx returned %p, expected %#lx", type == HM_MEM_RESET ? "reset" : "commit", (unsigned long)addr, b, (unsigned long)s);
    for (uintptr_t p = (s - a->base) / PAGE; p < (e - a->base) / PAGE; p++) {
        mpage *g = &a->pg[p];
        if (type == HM_MEM_RESET) { /* SPEC 2.1: stays committed with its protection; contents kept or zero */
            if (!g->committed) continue;
            g->pending = 1;
            if (g->content == C_TAG) g->content = C_MAYBE;
            continue;
        }
        if (!g->committed) *g = (mpage){1, 0, 0, C_ZERO, 0, W_CLEAN, 0}; /* new storage reads zero */
        g->prot = (uint8_t)(prot & 0xFF); /* SPEC 2.7.2: re-commit keeps data, applies the protection */
        g->guard = (prot & HM_PAGE_GUARD) != 0;
    }
}

static void decommit_pages(mrec *a, size_t p0, size_t p1)
{
    for (size_t p = p0; p < p1; p++) a->pg[p] = (mpage){0, 0, 0, C_ZERO, 0, W_CLEAN, 0}; /* SPEC 2.3, 2.6 */
}

static void op_free(const op *o)
{
    int k = mgr_index(op_mgr(o)), slot = op_slot(o);
    mrec *x = M[slot].live ? &M[slot] : NULL;
    uint32_t type = free_types[o->tflag % 16];
    uintptr_t addr = op_addr(o, x);
    size_t size = (type == HM_MEM_RELEASE && !(o->smode & 0x80)) ? 0 : op_size(o, x, addr);
    if (x) touch_slot(x);
    mrec *a = find(addr);
    hm_status want = HM_OK;
    if (MG[k].state != M_RUNNING) want = HM_E_HOST_CLRNOTAVAILABLE;
    else if ((type != HM_MEM_DECOMMIT && type != HM_MEM_RELEASE) || !addr || (type == HM_MEM_RELEASE && size) ||
             addr > max_addr || size > top_addr - addr)
        want = HM_E_INVALID_PARAMETER; /* SPEC 2.3 */
    else if (!a) want = HM_E_INVALID_ADDRESS; /* in no allocation: 487 on the C and Win32 surfaces */
    else if (a->owner != k) want = HM_E_HOST_NOT_OWNER;
    else if (size == 0 && (addr & ~(PAGE - 1)) != a->base) want = HM_E_INVALID_ADDRESS;
    else if (size && round_up(addr + size, PAGE) > a_end(a)) want = HM_E_INVALID_PARAMETER;
    if (a) touch_slot(a);

    res r;
    if (op_mgr(o) == 0) {
        SetLastError(POISON);
        r = w32_res(VirtualFree((void *)addr, size, type));
    } else {
        r = hm_res(hm_virtual_free(MG[k].h, (void *)addr, size, type));
    }
    note("free(%#lx, %#zx, type %#x) via %d -> %s/%u; expected %s", (unsigned long)addr, size, type, op_mgr(o),
         hm_status_name(r.st), r.err, hm_status_name(want));
    expect(&r, want, "VirtualFree");
    tally(K_FREE, want);
    kchange |= want == HM_OK;
    if (want != HM_OK) return;
    if (type == HM_MEM_RELEASE) { /* SPEC 2.3: the whole allocation, whatever its pages' states */
        forget(a, "released allocation");
        return;
    }
    if (size == 0) decommit_pages(a, 0, a->npages);
    else decommit_pages(a, ((addr & ~(PAGE - 1)) - a->base) / PAGE, (round_up(addr + size, PAGE) - a->base) / PAGE);
}

static void op_protect(const op *o)
{
    int k = mgr_index(op_mgr(o)), slot = op_slot(o);
    mrec *x = M[slot].live ? &M[slot] : NULL;
    uintptr_t addr = op_addr(o, x);
    size_t size = op_size(o, x, addr);
    uint32_t prot = prots[o->prot % 32];
    bool null_old = o->tflag % 16 == 15;
    if (x) touch_slot(x);
    uintptr_t s = addr & ~(PAGE - 1), e = 0;
    mrec *a = NULL, *f = find(s);
    hm_status want = HM_OK;
    if (MG[k].state != M_RUNNING) want = HM_E_HOST_CLRNOTAVAILABLE;
    else if (null_old) want = HM_E_NOACCESS; /* SPEC 2.4: 998 */
    else if (!prot_valid(prot) || size == 0 || addr > max_addr || size > top_addr - addr)
        want = HM_E_INVALID_PARAMETER; /* (size 0: the SPEC is silent; the library says 87) */
    else {
        e = round_up(addr + size, PAGE);
        a = holder(s, e);
        if (f && f->owner != k) want = HM_E_HOST_NOT_OWNER;
        else if (!a) want = HM_E_INVALID_PARAMETER; /* SPEC 2.4: not inside one allocation, or free */
        else {
            for (uintptr_t p = (s - a->base) / PAGE; p < (e - a->base) / PAGE; p++)
                if (!a->pg[p].committed) want = HM_E_INVALID_ADDRESS; /* SPEC 2.4: reserved page: 487 */
        }
    }
    if (f) touch_slot(f);
    DWORD old = 0xDEAD;
    res r;
    if (op_mgr(o) == 0) {
        SetLastError(POISON);
        r = w32_res(VirtualProtect((void *)addr, size, prot, null_old ? NULL : &old));
    } else {
        r = hm_res(hm_virtual_protect(MG[k].h, (void *)addr, size, prot, null_old ? NULL : (uint32_t *)&old));
    }
    note("protect(%#lx, %#zx, %#x%s) via %d -> %s/%u old %#x; expected %s", (unsigned long)addr, size, prot,
         null_old ? ", old NULL" : "", op_mgr(o), hm_status_name(r.st), r.err, old, hm_status_name(want));
    expect(&r, want, "VirtualProtect");
    tally(K_PROTECT, want);
    kchange |= want == HM_OK;
    if (want != HM_OK) return;
    size_t p0 = (s - a->base) / PAGE, p1 = (e - a->base) / PAGE;
    uint32_t want_old = reported(a, &a->pg[p0]); /* SPEC 2.4: the first page's, with its modifiers */
    if (old != want_old) fail("VirtualProtect: old protection %#x, expected %#x", old, want_old);
    for (size_t p = p0; p < p1; p++) { /* SPEC 2.1: only the base protection (and the guard) change */
        a->pg[p].prot = (uint8_t)(prot & 0xFF);
        a->pg[p].guard = (prot & HM_PAGE_GUARD) != 0;
    }
}

static void op_query(const op *o)
{
    int k = mgr_index(op_mgr(o)), slot = op_slot(o);
    mrec *x = M[slot].live ? &M[slot] : NULL;
    uintptr_t addr = op_addr(o, x);
    hm_region w, g;
    hm_status want = model_query(k, addr, &w);
    unsigned lv = o->tflag % 8;
    bool null_buf = o->tflag & 0x80;
    if (op_mgr(o) == 0) {
        /* SPEC 2.5: a buffer shorter than the struct is 24; NULL is 998 (checked after the length) */
        SIZE_T len = lv == 5 ? sizeof(MEMORY_BASIC_INFORMATION) - 1 : lv == 6 ? 0 : lv == 7 ? 64 : sizeof(MEMORY_BASIC_INFORMATION);
        if (len < sizeof(MEMORY_BASIC_INFORMATION)) want = HM_E_BAD_LENGTH;
        else if (null_buf) want = HM_E_NOACCESS;
        unsigned char buf[64];
        memset(buf, 0xA5, sizeof buf);
        SetLastError(POISON);
        SIZE_T n = VirtualQuery((void *)addr, null_buf ? NULL : (MEMORY_BASIC_INFORMATION *)buf, len);
        res r = w32_res(n != 0);
        note("VirtualQuery(%#lx, len %zu%s) -> %zu/%u; expected %s", (unsigned long)addr, (size_t)len,
             null_buf ? ", NULL" : "", (size_t)n, r.err, hm_status_name(want));
        expect(&r, want, "VirtualQuery");
        tally(K_QUERY, want);
        if (want != HM_OK) return;
        if (n != sizeof(MEMORY_BASIC_INFORMATION)) fail("VirtualQuery returned %zu, expected %zu", (size_t)n, sizeof(MEMORY_BASIC_INFORMATION));
        for (size_t i = sizeof(MEMORY_BASIC_INFORMATION); i < sizeof buf; i++)
            if (buf[i] != 0xA5) fail("VirtualQuery wrote byte %zu, past the structure", i);
        memcpy(&g, buf, sizeof g);
        cmp_region(&g, &w, "VirtualQuery", addr);
        return;
    }
    if (null_buf) want = HM_E_POINTER; /* before anything else */
    else if (MG[k].state != M_RUNNING) want = HM_E_HOST_CLRNOTAVAILABLE;
    hm_status st = hm_virtual_query(MG[k].h, (void *)addr, null_buf ? NULL : &g);
    note("hm_virtual_query(%d, %#lx%s) -> %s; expected %s", k, (unsigned long)addr, null_buf ? ", NULL" : "",
         hm_status_name(st), hm_status_name(want));
    res r = hm_res(st);
    expect(&r, want, "hm_virtual_query");
    tally(K_QUERY, want);
    if (want == HM_OK) cmp_region(&g, &w, "hm_virtual_query", addr);
}

/* Pages [p0, p1) of the op's allocation (any manager's: memory is memory). */
static mrec *op_pages(const op *o, size_t *p0, size_t *p1)
{
    mrec *a = NULL;
    for (int i = 0; i < MAXA && !a; i++)
        if (M[(op_slot(o) + i) % MAXA].live) a = &M[(op_slot(o) + i) % MAXA];
    if (!a) return NULL;
    *p0 = o->poff % a->npages;
    *p1 = *p0 + 1 + o->cnt % 16;
    if (*p1 > a->npages) *p1 = a->npages;
    touch_range(a->base + *p0 * PAGE, a->base + *p1 * PAGE);
    return a;
}

/* A guard page touched by the program: one report, with the address touched; then the base protection. */
static void guard_fired(mrec *a, size_t p, uintptr_t at)
{
    guard_expected++;
    if (guard_count != guard_expected || guard_addr != at)
        fail("touching guard page %#lx at %#lx: %lu reports (expected %lu), last at %#lx", (unsigned long)(a->base + p * PAGE),
             (unsigned long)at, guard_count, guard_expected, (unsigned long)guard_addr);
    a->pg[p].guard = 0;
    tally(S_GUARD, HM_OK);
    kchange = true;
}

/* Writes tags to the writable pages of the range (never through a page whose protection forbids it). */
static void op_write(const op *o)
{
    size_t p0, p1, n = 0;
    mrec *a = op_pages(o, &p0, &p1);
    if (!a) return;
    for (size_t p = p0; p < p1; p++) {
        mpage *g = &a->pg[p];
        if (!g->committed || !writable(g->prot)) continue;
        uintptr_t pa = a->base + p * PAGE;
        uint32_t tag = next_tag++;
        *word_at(pa, 0) = tag_word(pa, tag, 0);
        if (g->guard) guard_fired(a, p, pa);
        *word_at(pa, 1) = tag_word(pa, tag, 1);
        g->tag = tag;
        g->content = C_TAG;
        if (a->watch && g->ww != W_WRITTEN) {
            g->ww = W_WRITTEN;
            kchange = true; /* under the fallback the page now has its write access */
        }
        n++;
    }
    tally(K_WRITE, HM_OK);
    note("write tags to pages [%zu, %zu) of %#lx: %zu pages", p0, p1, (unsigned long)a->base, n);
}

/* Memory pressure: the kernel reclaims the pages of the range now (MADV_PAGEOUT). Pages MEM_RESET gave
 * up and nobody wrote since are dropped and read zero afterwards (the model's C_MAYBE allows it);
 * written pages keep their data (swapped out or kept). This is what makes MEM_RESET_UNDO's honesty
 * observable: a success over a dropped page would leave zeros where the model now expects the tag. */
static void op_pageout(const op *o)
{
    size_t p0, p1;
    mrec *a = op_pages(o, &p0, &p1);
    if (!a) return;
    int r = madvise((void *)(a->base + p0 * PAGE), (p1 - p0) * PAGE, MADV_PAGEOUT);
    if (a->watch && watch_kernel && tol_reset_watch) /* see tol_reset_watch */
        for (size_t p = p0; p < p1; p++)
            if (a->pg[p].pending && a->pg[p].ww == W_WRITTEN) a->pg[p].ww = W_MAYBE;
    tally(K_PAGEOUT, r == 0 ? HM_OK : HM_E_INVALID_PARAMETER);
    note("pageout pages [%zu, %zu) of %#lx -> %d", p0, p1, (unsigned long)a->base, r == 0 ? 0 : errno);
}

/* Reads the first word of the readable pages of the range, guard pages included (they fire once). */
static void op_touch(const op *o)
{
    size_t p0, p1, n = 0;
    mrec *a = op_pages(o, &p0, &p1);
    if (!a) return;
    for (size_t p = p0; p < p1; p++) {
        mpage *g = &a->pg[p];
        if (!g->committed || !readable(g->prot)) continue;
        uintptr_t pa = a->base + p * PAGE, at = pa + 8 * (o->amode % 8);
        uint64_t v = *(volatile uint64_t *)at;
        if (g->guard) guard_fired(a, p, at);
        uint64_t t = at == pa ? tag_word(pa, g->tag, 0) : 0;
        bool ok = g->content == C_ZERO ? v == 0 : g->content == C_TAG ? v == t : (v == 0 || v == t);
        if (!ok) fail("read %#lx: %#" PRIx64 ", model: %s", (unsigned long)at, v, g->content == C_ZERO ? "zero" : "tag");
        n++;
    }
    tally(K_TOUCH, HM_OK);
    note("touch pages [%zu, %zu) of %#lx: %zu read", p0, p1, (unsigned long)a->base, n);
}

static void op_getww(const op *o)
{
    int k = mgr_index(op_mgr(o)), slot = op_slot(o);
    mrec *x = M[slot].live ? &M[slot] : NULL;
    uintptr_t addr = op_addr(o, x);
    size_t size = op_size(o, x, addr);
    static const uint32_t flagv[8] = {0, 0, 0, 0, 1, 1, 2, 0xdeadbeef};
    uint32_t flags = flagv[o->tflag % 8];
    unsigned c = o->cnt % 72;
    bool null_count = c >= 70, null_addrs = o->prot % 8 == 6, null_gran = o->prot % 8 == 7;
    uintptr_t count = null_count ? 0 : c, cap = count;
    if (x) touch_slot(x);
    uintptr_t s = addr & ~(PAGE - 1), e = 0;
    mrec *a = NULL, *f = find(s);
    hm_status want = HM_OK;
    if (op_mgr(o) != 0 && MG[k].state != M_RUNNING) want = HM_E_HOST_CLRNOTAVAILABLE;
    else if ((flags & ~1u) || !size || addr > max_addr || size > top_addr - addr) want = HM_E_INVALID_PARAMETER;
    else if (null_count) want = HM_E_NOACCESS;
    else if (!count) want = HM_E_INVALID_PARAMETER;
    else if (null_addrs || null_gran) want = HM_E_NOACCESS;
    else {
        e = round_up(addr + size, PAGE);
        a = holder(s, e);
        if (f && f->owner != k) want = HM_E_HOST_NOT_OWNER;
        else if (!a || !a->watch) want = HM_E_INVALID_PARAMETER;
    }
    void *out[WWCAP];
    for (int i = 0; i < WWCAP; i++) out[i] = (void *)0x5A5A;
    DWORD gran = 0;
    res r;
    if (op_mgr(o) == 0) {
        SetLastError(POISON);
        ULONG_PTR cnt = count;
        UINT u = GetWriteWatch(flags, (void *)addr, size, null_addrs ? NULL : out, null_count ? NULL : &cnt,
                               null_gran ? NULL : &gran);
        if (u != 0 && u != (UINT)-1) fail("GetWriteWatch returned %u", u);
        r = w32_res(u == 0);
        count = cnt;
    } else {
        r = hm_res(hm_get_write_watch(MG[k].h, flags, (void *)addr, size, null_addrs ? NULL : out,
                                      null_count ? NULL : &count, null_gran ? NULL : (uint32_t *)&gran));
    }
    note("GetWriteWatch(%#x, %#lx, %#zx, count %lu%s%s%s) via %d -> %s/%u, %lu listed; expected %s", flags,
         (unsigned long)addr, size, (unsigned long)cap, null_count ? ", count NULL" : "", null_addrs ? ", addresses NULL" : "",
         null_gran ? ", granularity NULL" : "", op_mgr(o), hm_status_name(r.st), r.err, (unsigned long)count,
         hm_status_name(want));
    expect(&r, want, "GetWriteWatch");
    tally(K_GETWW, want);
    kchange |= want == HM_OK && (flags & 1);
    if (want != HM_OK) return;
    if (gran != PAGE) fail("GetWriteWatch: granularity %u", gran);
    for (uintptr_t i = count; i < WWCAP; i++)
        if (out[i] != (void *)0x5A5A) fail("GetWriteWatch wrote entry %lu, past the %lu it listed", (unsigned long)i, (unsigned long)count);
    touch_range(s, e);
    check_listing(a, s, e, out, count, cap, flags & 1, "GetWriteWatch");
}

static void op_resetww(const op *o)
{
    int k = mgr_index(op_mgr(o)), slot = op_slot(o);
    mrec *x = M[slot].live ? &M[slot] : NULL;
    uintptr_t addr = op_addr(o, x);
    size_t size = op_size(o, x, addr);
    if (x) touch_slot(x);
    uintptr_t s = addr & ~(PAGE - 1), e = 0;
    mrec *a = NULL, *f = find(s);
    hm_status want = HM_OK;
    if (op_mgr(o) != 0 && MG[k].state != M_RUNNING) want = HM_E_HOST_CLRNOTAVAILABLE;
    else if (!size || addr > max_addr || size > top_addr - addr) want = HM_E_INVALID_PARAMETER;
    else {
        e = round_up(addr + size, PAGE);
        a = holder(s, e);
        if (f && f->owner != k) want = HM_E_HOST_NOT_OWNER;
        else if (!a || !a->watch) want = HM_E_INVALID_PARAMETER;
    }
    res r;
    if (op_mgr(o) == 0) {
        SetLastError(POISON);
        UINT u = ResetWriteWatch((void *)addr, size);
        if (u != 0 && u != (UINT)-1) fail("ResetWriteWatch returned %u", u);
        r = w32_res(u == 0);
    } else {
        r = hm_res(hm_reset_write_watch(MG[k].h, (void *)addr, size));
    }
    note("ResetWriteWatch(%#lx, %#zx) via %d -> %s/%u; expected %s", (unsigned long)addr, size, op_mgr(o),
         hm_status_name(r.st), r.err, hm_status_name(want));
    expect(&r, want, "ResetWriteWatch");
    tally(K_RESETWW, want);
    kchange |= want == HM_OK;
    if (want != HM_OK) return;
    touch_range(s, e);
    for (uintptr_t p = (s - a->base) / PAGE; p < (e - a->base) / PAGE; p++) a->pg[p].ww = W_CLEAN;
}

static void mgr_create(int k)
{
    hm_manager *m = NULL;
    hm_status st = hm_manager_create(mgr_cfg[k].opts, &m);
    if (st != HM_OK || !m) fail("hm_manager_create(\"%s\"): %s (%s)", mgr_cfg[k].opts, hm_status_name(st), hm_last_detail());
    hm_manager_stats ms;
    if (hm_manager_get_stats(m, &ms) != HM_OK) fail("hm_manager_get_stats of a new manager");
    if (ms.limit != mgr_cfg[k].limit || ms.reserve_appdomain != mgr_cfg[k].ra || ms.reserve_process != mgr_cfg[k].rp ||
        (mgr_cfg[k].va_limit && ms.va_limit != mgr_cfg[k].va_limit) || ms.charge || ms.va_used)
        fail("manager %d made from \"%s\": limit %" PRIu64 ", reserves %" PRIu64 " and %" PRIu64 ", va.limit %" PRIu64
             ", charge %" PRIu64, k, mgr_cfg[k].opts, ms.limit, ms.reserve_appdomain, ms.reserve_process, ms.va_limit, ms.charge);
    MG[k].h = m;
    MG[k].state = M_RUNNING;
    MG[k].thr[0] = mgr_cfg[k].limit - mgr_cfg[k].ra - mgr_cfg[k].rp; /* SPEC 3.2 */
    MG[k].thr[1] = mgr_cfg[k].limit - mgr_cfg[k].rp;
    MG[k].thr[2] = mgr_cfg[k].limit;
    MG[k].va_limit = ms.va_limit;
    tally(K_MANAGER, HM_OK);
    note("manager %d created", k);
}

/* SPEC 3.4: destroying releases every allocation of the manager. */
static void mgr_destroy(int k)
{
    hm_status st = hm_manager_destroy(MG[k].h);
    note("manager %d destroyed -> %s", k, hm_status_name(st));
    if (st != HM_OK) fail("hm_manager_destroy(manager %d): %s", k, hm_status_name(st));
    MG[k].state = M_ABSENT;
    MG[k].h = NULL;
    kchange = true;
    bool gone[MAXA] = {false};
    for (int i = 0; i < MAXA; i++) /* all at once, so that free regions reach the next survivor */
        if (M[i].live && M[i].owner == k) {
            M[i].live = false;
            gone[i] = true;
        }
    for (int i = 0; i < MAXA; i++)
        if (gone[i]) check_gone(&M[i], "allocation of a destroyed manager");
}

static void op_manager(const op *o)
{
    int k = 1 + (o->sel & 1);
    if (MG[k].state == M_ABSENT) {
        mgr_create(k);
    } else if (MG[k].state == M_RUNNING && (o->tflag & 1)) {
        hm_status st = hm_manager_shutdown(MG[k].h); /* SPEC 3.4: nothing is unmapped */
        note("manager %d shut down -> %s", k, hm_status_name(st));
        if (st != HM_OK) fail("hm_manager_shutdown(manager %d): %s", k, hm_status_name(st));
        MG[k].state = M_SHUT;
    } else if (MG[k].state == M_SHUT && (o->tflag & 2)) {
        hm_status st = hm_manager_shutdown(MG[k].h);
        note("manager %d shut down again -> %s", k, hm_status_name(st));
        if (st != HM_E_HOST_CLRNOTAVAILABLE) fail("a second hm_manager_shutdown: %s, expected HOST_E_CLRNOTAVAILABLE", hm_status_name(st));
    } else {
        mgr_destroy(k);
    }
}

/* ---- sequences ----------------------------------------------------------------------------------- */

static void init_once(void)
{
    static bool done;
    if (done) return;
    done = true;
    if (hm_init() != HM_OK) {
        fprintf(stderr, "fuzz_win32: hm_init failed: %s\n", hm_last_detail());
        abort();
    }
    hm_system_info si;
    hm_get_system_info(&si);
    min_addr = si.min_address;
    max_addr = si.max_address;
    top_addr = max_addr + 1;
    if (pipe2(pfd, O_NONBLOCK | O_CLOEXEC) != 0) abort();
    hm_set_guard_handler(on_guard, NULL);
    const char *k = getenv("HM_FUZZ_KERNEL_CHECK");
    kernel_check_every_op = k && k[0] == '1';
    kernel_check_at_end = k && k[0] == '0';
    const char *st = getenv("HM_FUZZ_STATS");
    if (st && st[0] == '1') atexit(print_stats);
    const char *tol = getenv("HM_FUZZ_TOLERATE");
    if (!tol) tol = "undo-watch";
    tol_undo_watch = strstr(tol, "undo-watch") != NULL;
    tol_reset_watch = strstr(tol, "reset-watch") != NULL;
    watch_kernel = strcmp(hm_write_watch_mechanism(), "kernel") == 0;
    const char *t = getenv("HM_FUZZ_TRACE");
    trace = t && t[0] == '1';

    hm_manager_stats ms;
    if (hm_manager_get_stats(NULL, &ms) != HM_OK) abort();
    MG[0].state = M_RUNNING;
    MG[0].h = NULL;
    MG[0].thr[0] = ms.limit - ms.reserve_appdomain - ms.reserve_process;
    MG[0].thr[1] = ms.limit - ms.reserve_process;
    MG[0].thr[2] = ms.limit;
    MG[0].va_limit = ms.va_limit;

    /* zone 0: chunk space that hostmem itself showed free */
    void *p = NULL;
    if (hm_reserve(NULL, ZONE, &p) != HM_OK || hm_release(NULL, p) != HM_OK) abort();
    zone_lo[0] = (uintptr_t)p;
    zone_gap[0] = zone_lo[0] + ZONE;
    zone_ok[0] = true;
    /* zone 1: our placeholder outside every chunk */
    void *z = mmap(NULL, ZONE + GRAN, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (z == MAP_FAILED) abort();
    zone_lo[1] = zone_gap[1] = round_up((uintptr_t)z, GRAN);
    if (zone_lo[1] > (uintptr_t)z) munmap(z, zone_lo[1] - (uintptr_t)z);
    if ((uintptr_t)z + GRAN > zone_lo[1]) munmap((void *)(zone_lo[1] + ZONE), (uintptr_t)z + GRAN - zone_lo[1]);
    zone_ok[1] = true;
    /* zone 2: the top of the highest chunk (MEM_TOP_DOWN lands there) and our placeholder above it */
    if (hm_virtual_alloc(NULL, NULL, ZONE / 2, HM_MEM_RESERVE | HM_MEM_TOP_DOWN, HM_PAGE_READWRITE, &p) != HM_OK ||
        hm_release(NULL, p) != HM_OK)
        abort();
    zone_lo[2] = (uintptr_t)p;
    zone_gap[2] = zone_lo[2] + ZONE / 2;
    zone_ok[2] = placeholder_on(2, zone_gap[2], zone_lo[2] + ZONE);
}

/* Releases everything the input made, destroys its managers, and checks that nothing is left. */
NOCOV static void release_all(void)
{
    opno = MAXOPS + 1;
    for (int i = 0; i < MAXA; i++) {
        if (!M[i].live || M[i].owner == 0 || MG[M[i].owner].state != M_RUNNING) continue;
        hm_status st = hm_release(MG[M[i].owner].h, (void *)M[i].base);
        if (st != HM_OK) fail("cleanup: release of %#lx: %s", (unsigned long)M[i].base, hm_status_name(st));
        forget(&M[i], "cleanup");
    }
    for (int k = 1; k < NMGR; k++)
        if (MG[k].state != M_ABSENT) mgr_destroy(k);
    for (int i = 0; i < MAXA; i++) {
        if (!M[i].live) continue;
        SetLastError(POISON);
        if (!VirtualFree((void *)M[i].base, 0, HM_MEM_RELEASE))
            fail("cleanup: VirtualFree(%#lx, MEM_RELEASE): last error %u", (unsigned long)M[i].base, GetLastError());
        forget(&M[i], "cleanup");
    }
    check_stats();
    check_vmap(true);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    init_once();
    memset(M, 0, sizeof M);
    for (int k = 1; k < NMGR; k++) MG[k] = (mmgr){M_ABSENT, NULL, {0, 0, 0}, 0};
    hist_count = 0;
    guard_expected = guard_count;
    opno = 0;
    check_stats(); /* inputs are independent: nothing is left from the last one */
    size_t nops = size / OPBYTES;
    if (nops > MAXOPS) nops = MAXOPS;
    for (opno = 0; opno < nops; opno++) {
        const uint8_t *b = data + (size_t)opno * OPBYTES;
        op o = {b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]};
        memset(touched, 0, sizeof touched);
        kchange = false;
        int kind = op_kinds[o.kind % 16];
        int surface = op_mgr(&o);
        /* an extra manager an operation names comes into being when first named */
        if (surface >= 2 && kind != K_MANAGER && MG[surface - 1].state == M_ABSENT) mgr_create(surface - 1);
        switch (kind) {
        case K_ALLOC: op_alloc(&o); break;
        case K_FREE: op_free(&o); break;
        case K_PROTECT: op_protect(&o); break;
        case K_QUERY: op_query(&o); break;
        case K_WRITE: op_write(&o); break;
        case K_TOUCH: op_touch(&o); break;
        case K_GETWW: op_getww(&o); break;
        case K_RESETWW: op_resetww(&o); break;
        case K_PAGEOUT: op_pageout(&o); break;
        default: op_manager(&o); break;
        }
        check_all();
    }
    release_all();
    return 0;
}
