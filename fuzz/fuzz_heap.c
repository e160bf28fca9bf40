/* fuzz_heap.c — libFuzzer target for the IHostMalloc heaps (SPEC 4, src/heap/heap.h): heap
 * operations with hostile pointers and sizes, checked against a shadow model after every step.
 *
 * One input is one run: a header picks the managers' options (limit, reserves, notify bands,
 * heap.guard, va.limit, a 1 ms wait) and the heaps (thread-safe, single-threaded, executable, both
 * kinds; a second manager with its own heaps optionally), then up to MAX_OPS operations follow:
 * alloc, calloc, realloc, aligned and debug allocations of sizes from 0 to several MiB and hostile
 * ones (SIZE_MAX, 2^47, ...) at levels 0..2 and invalid ones; Free, usable_size, writable and realloc
 * of live blocks, freed blocks, interior pointers, pointers into segments, large blocks' reserved
 * tails and other managers' memory, other heaps' live blocks, stack, global and malloc pointers,
 * wild, kernel and non-canonical addresses; trim; heap destroy and re-create; shutdown of the second
 * manager; any of these with one injected kernel failure (os.h: the nth next mmap, munmap, mprotect
 * or madvise); a few of them on a second thread that then exits (joined before the checks: runs stay
 * deterministic; its frees of this thread's blocks, its own blocks freed here, its exit handing its
 * cached blocks and pages back). At the end everything is freed and trimmed, the heaps and managers
 * destroyed.
 *
 * The model: each live block has a requested size, a usable size and a fill pattern unique to it
 * (written through hm_heap_writable, read back through the block). After every operation: every live
 * block keeps its pattern and usable size; a new block is 16- (and as requested) aligned, has
 * usable >= requested, and its usable range overlaps no other live block's; the heaps' statistics
 * (live blocks, live bytes, large bytes, debug sites) are exact; each manager's charge is exactly
 * its heaps' committed memory (heap.h layout) and never above its limit; the map's books check.
 * A pointer that is no live block answers HOST_E_INVALIDOPERATION, another heap's live block
 * HOST_E_NOT_OWNER (SPEC 4), and a failed operation changes no live block. Any difference is
 * printed with the last operations, then abort() (libFuzzer keeps the input).
 *
 * HM_FUZZ_HEAP_TRACE=1 prints every operation as it runs. (Two defects this target found, trim leaving
 * the calling thread's cached blocks of a heap it had not used last, and realloc growing in place on a
 * shut-down manager, are fixed; their inputs are in the corpus as regress_*.) */
#define _GNU_SOURCE
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hostmem/hostmem.h>

#include "heap/heap.h"
#include "heap/heap_internal.h"
#include "heap/track.h"
#include "os/os.h"
#include "vmap/vmap.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_OPS 100
#define MAX_BLOCKS 160
#define MAX_HEAPS 6     /* slots 0..3: manager 0's heaps; 4..5: manager 1's */
#define RING 32         /* recently freed pointers, for double and stale frees */
#define LOG_N 48
#define KiB ((size_t)1 << 10)
#define MiB ((size_t)1 << 20)
#define SPAN 64         /* bytes of pattern at each end of a block */

/* The checking code's own branches tell libFuzzer nothing about the library (and cost time in every
 * run): not instrumented for coverage where the compiler can say so. */
#if defined(__clang__)
#define NO_COVERAGE __attribute__((no_sanitize("coverage")))
#else
#define NO_COVERAGE
#endif

/* ---- state of one run ------------------------------------------------------------------------ */

typedef struct mgr_slot {
    hm_manager *m;
    bool shut;          /* hm_manager_shutdown ran: every call is HOST_E_CLRNOTAVAILABLE */
    bool waits;         /* wait.* set: a refusal may be HOST_E_TIMEOUT */
    void *region;       /* a plain VirtualAlloc of 64 KiB, its first page committed: not heap memory */
    uint64_t extra;     /* charge that is not the heaps' (the region's page) */
    uint64_t limit;
} mgr_slot;

typedef struct heap_slot {
    hm_heap *h;         /* NULL: no heap in this slot */
    int mgr;
    uint32_t flags;
    uint64_t debug_total; /* debug blocks ever made (hm_heap_sites' total_blocks) */
    bool sites_unsure;  /* a debug block was made under an injected fault (the site table may not have
                           been made: its block is then not counted by site) */
} heap_slot;

typedef struct block {
    uint8_t *p;         /* what the program holds (the debug header is before it) */
    size_t req, usable;
    uint64_t id;        /* seeds the fill pattern */
    int heap;
    bool live, debug;
} block;

static struct run {
    mgr_slot mg[2];
    heap_slot hp[MAX_HEAPS];
    block b[MAX_BLOCKS];
    uintptr_t ring[RING];
    unsigned nring;
    uint64_t next_id;
    bool fault;         /* an injected kernel failure is armed for the current operation */
    bool full;          /* check the map's books after this operation (check_all) */
    bool debug_touched; /* the operation concerned a debug block: check the heaps' sites */
    int admit[2];       /* per manager, the most critical valid level an allocation of this operation
                           asked for (-1: none): the charge may not rise above that level's threshold */
    int op;
    char log[LOG_N][160];
    unsigned nlog;
    void *mallocd;
} S;

static uint8_t g_global[64];
static bool trace;
/* Running an operation on op_thread's thread: then the main thread's cache may hold freed large blocks
 * of a heap, which a trim on this thread cannot give back (hostmem.h: the calling thread's only). */
static _Thread_local bool on_second_thread;
static size_t seg_hdr_bytes; /* a segment header's committed bytes (heap.h layout) */

/* ---- reporting ----------------------------------------------------------------------------- */

static void note(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void note(const char *fmt, ...)
{
    char *line = S.log[S.nlog++ % LOG_N];
    int n = snprintf(line, sizeof S.log[0], "#%d%s ", S.op, S.fault ? "F" : "");
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line + n, sizeof S.log[0] - (size_t)n, fmt, ap);
    va_end(ap);
    if (trace) fprintf(stderr, "fuzz_heap: %s\n", line);
}

static void fail(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void fail(const char *fmt, ...)
{
    fprintf(stderr, "\nfuzz_heap: VIOLATION at op %d: ", S.op);
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\n  last detail: %s\n  last operations (oldest first):\n", hm_last_detail());
    unsigned from = S.nlog > LOG_N ? S.nlog - LOG_N : 0;
    for (unsigned i = from; i < S.nlog; i++) fprintf(stderr, "    %s\n", S.log[i % LOG_N]);
    abort();
}

static const char *sn(hm_status st) { return hm_status_name(st); }

/* ---- input ----------------------------------------------------------------------------------- */

typedef struct reader {
    const uint8_t *d;
    size_t n, i;
} reader;

static uint8_t r8(reader *r) { return r->i < r->n ? r->d[r->i++] : 0; }
static uint64_t rbytes(reader *r, int n)
{
    uint64_t v = 0;
    for (int k = 0; k < n; k++) v = v << 8 | r8(r);
    return v;
}

/* Sizes: mostly small, some medium (a span of pages), some large (over HM_MEDIUM_MAX: a mapping of
 * their own), a few of several
 * MiB, and hostile ones that no budget admits. */
static size_t pick_size(reader *r, uint64_t limit)
{
    static const size_t hostile[] = {
        0, 1, 15, 16, 17, 4095, 4096, 4097, 16383, 32752, 32767, 32768, 32769, 65536, (size_t)1 << 20,
        SIZE_MAX, SIZE_MAX - 15, SIZE_MAX - 16, SIZE_MAX - 4095, SIZE_MAX / 2, SIZE_MAX / 2 + 1,
        (size_t)1 << 47, ((size_t)1 << 47) + 1, (size_t)1 << 40, (size_t)1 << 32, (size_t)1 << 63,
        ((size_t)64 << 20) + 1, ((size_t)256 << 20) + 1, 0, 0};
    unsigned sel = r8(r) % 16;
    if (sel <= 4) return r8(r);
    if (sel <= 7) return (size_t)(rbytes(r, 2) % 2049);
    if (sel <= 9) return (size_t)(rbytes(r, 2) % 33000);
    if (sel <= 12) { /* (two reads: in separate statements, so that every compiler reads them in order) */
        size_t hi = sel <= 11 ? (size_t)(rbytes(r, 2) % 1024 + 1) * KiB : (size_t)(r8(r) % 9 + 1) * MiB;
        return hi + (size_t)(sel <= 11 ? r8(r) : rbytes(r, 2));
    }
    size_t i = r8(r) % (sizeof hostile / sizeof hostile[0]);
    if (i >= sizeof hostile / sizeof hostile[0] - 2) return i & 1 ? (size_t)limit : (size_t)limit + 1;
    return hostile[i];
}

static hm_level pick_level(reader *r)
{
    unsigned v = r8(r) % 11;
    if (v < 9) return (hm_level)(v % 3);
    return v == 9 ? (hm_level)3 : (hm_level)0x7fffffff;
}
static bool level_ok(hm_level lv) { return (unsigned)lv <= HM_LEVEL_PROCESS; }

/* ---- patterns ------------------------------------------------------------------------------ */

NO_COVERAGE static inline uint64_t mix(uint64_t id, uint64_t k)
{
    uint64_t x = id * 0x9E3779B97F4A7C15ull ^ (k + 0x632BE59BD9B4E019ull) * 0xC2B2AE3D27D4EB4Full;
    x ^= x >> 31;
    x *= 0xBF58476D1CE4E5B9ull;
    x ^= x >> 29;
    return x;
}

/* The pattern of block id over [a, b) (at most SPAN bytes) into out. */
NO_COVERAGE static void pat_bytes(uint64_t id, size_t a, size_t b, uint8_t *out)
{
    for (size_t o = a; o < b;) {
        uint64_t w = mix(id, o >> 3);
        do {
            out[o - a] = (uint8_t)(w >> ((o & 7) * 8));
            o++;
        } while (o < b && (o & 7));
    }
}

/* The spans of a block of n bytes that carry its pattern: the first and last SPAN bytes, and four
 * words in between (a big block's pages are not all touched: runs stay fast). */
typedef struct span {
    size_t a, b;
} span;
NO_COVERAGE static unsigned spans_of(size_t n, span out[6])
{
    unsigned k = 0;
    out[k++] = (span){0, n < SPAN ? n : SPAN};
    if (n > SPAN) out[k++] = (span){n - SPAN > SPAN ? n - SPAN : SPAN, n};
    for (size_t i = 1; i <= 4 && n > 3 * SPAN; i++) {
        size_t o = (n / 5 * i) & ~(size_t)7;
        if (o >= SPAN && o + 8 <= n - SPAN) out[k++] = (span){o, o + 8};
    }
    return k;
}

static uint8_t *writable_of(const block *x)
{
    if (!(S.hp[x->heap].flags & HM_HEAP_EXECUTABLE)) return x->p;
    return hm_heap_writable(S.hp[x->heap].h, x->p);
}

NO_COVERAGE static void fill(const block *x)
{
    uint8_t *w = writable_of(x), tmp[SPAN];
    if (!w) fail("hm_heap_writable(heap %d, %p) is NULL for a live block", x->heap, (void *)x->p);
    span sp[6];
    unsigned n = spans_of(x->req, sp);
    for (unsigned i = 0; i < n; i++) {
        pat_bytes(x->id, sp[i].a, sp[i].b, tmp);
        memcpy(w + sp[i].a, tmp, sp[i].b - sp[i].a);
    }
}

/* Whether the block at p holds the pattern of id over the spans of n bytes, clipped to upto bytes. */
NO_COVERAGE static bool holds(const uint8_t *p, uint64_t id, size_t n, size_t upto, size_t *bad_at)
{
    uint8_t tmp[SPAN];
    span sp[6];
    unsigned k = spans_of(n, sp);
    for (unsigned i = 0; i < k; i++) {
        size_t a = sp[i].a, b = sp[i].b < upto ? sp[i].b : upto;
        if (a >= b) continue;
        pat_bytes(id, a, b, tmp);
        if (memcmp(p + a, tmp, b - a))
            for (size_t o = a; o < b; o++)
                if (p[o] != tmp[o - a]) {
                    *bad_at = o;
                    return false;
                }
    }
    return true;
}

NO_COVERAGE static void check_block(const block *x, const char *when)
{
    size_t at;
    if (!holds(x->p, x->id, x->req, x->req, &at))
        fail("%s: live block %p (heap %d, %zu bytes%s) damaged at offset %zu: %#x, pattern %#x", when, (void *)x->p,
             x->heap, x->req, x->debug ? ", debug" : "", at, x->p[at], (unsigned)(uint8_t)(mix(x->id, at >> 3) >> ((at & 7) * 8)));
}

/* ---- the model ------------------------------------------------------------------------------- */

NO_COVERAGE static int find_live(uintptr_t q)
{
    for (int i = 0; i < MAX_BLOCKS; i++)
        if (S.b[i].live && (uintptr_t)S.b[i].p == q) return i;
    return -1;
}

static int free_slot(void)
{
    for (int i = 0; i < MAX_BLOCKS; i++)
        if (!S.b[i].live) return i;
    return -1;
}

static void ring_push(const void *p)
{
    S.ring[S.nring++ % RING] = (uintptr_t)p;
}

static void drop(int bi)
{
    S.b[bi].live = false;
    ring_push(S.b[bi].p);
}

static int live_count(int heap)
{
    int n = 0;
    for (int i = 0; i < MAX_BLOCKS; i++) n += S.b[i].live && (heap < 0 || S.b[i].heap == heap);
    return n;
}

/* The k-th live block (of heap, or of any heap with heap < 0), k taken modulo their number; -1 if none. */
static int pick_block(reader *r, int heap)
{
    int n = live_count(heap);
    if (!n) return -1;
    int k = r8(r) % n;
    for (int i = 0; i < MAX_BLOCKS; i++)
        if (S.b[i].live && (heap < 0 || S.b[i].heap == heap) && k-- == 0) return i;
    return -1;
}

static int pick_heap(reader *r)
{
    int list[MAX_HEAPS], n = 0;
    for (int i = 0; i < MAX_HEAPS; i++)
        if (S.hp[i].h) list[n++] = i;
    return n ? list[r8(r) % n] : -1;
}

static bool shut(int hs) { return S.mg[S.hp[hs].mgr].shut; }

/* An allocation call at level lv on heap hs is about to run: pages it commits are admitted at lv. */
static void admitting(int hs, hm_level lv)
{
    int mi = S.hp[hs].mgr;
    if (level_ok(lv) && (int)lv > S.admit[mi]) S.admit[mi] = (int)lv;
}

/* A refusal of memory (SPEC 3.2, 3.3): the budget, the kernel, the address-space budget, a wait
 * that ran out. */
static bool refusal(int hs, hm_status st)
{
    return st == HM_E_COMMITMENT_LIMIT || st == HM_E_NOT_ENOUGH_MEMORY || st == HM_E_OUTOFMEMORY ||
           (st == HM_E_HOST_TIMEOUT && S.mg[S.hp[hs].mgr].waits);
}

static hm_manager_stats mstats(int mi)
{
    hm_manager_stats s;
    hm_status st = hm_manager_get_stats(S.mg[mi].m, &s);
    if (st) fail("hm_manager_get_stats(manager %d) = %s", mi, sn(st));
    return s;
}

/* SPEC 3.5: a request that is not admitted raises Low at once (and a refused one is counted). The
 * state may have moved on since, if the call gave memory back after the refusal (a fresh segment's
 * header, cached blocks) and the load fell across notify.low: then it changed twice. (Nothing else
 * changes it here: the system's load is sampled only with callbacks registered.) */
static void check_refusal_books(int hs, hm_status st, const hm_manager_stats *before, hm_level lv)
{
    if (st != HM_E_COMMITMENT_LIMIT && st != HM_E_HOST_TIMEOUT) return;
    hm_manager_stats s = mstats(S.hp[hs].mgr);
    uint64_t changes = s.state_changes - before->state_changes;
    uint64_t need = (before->memory_state != HM_MEMORY_LOW) + (s.memory_state != HM_MEMORY_LOW);
    if (changes < need)
        fail("%s from heap %d: memory state %d -> %d with %" PRIu64 " change(s): the refusal did not raise Low", sn(st), hs,
             (int)before->memory_state, (int)s.memory_state, changes);
    if (level_ok(lv) && s.refused[lv] <= before->refused[lv])
        fail("%s at level %d from heap %d, yet refused[%d] stayed %" PRIu64, sn(st), (int)lv, hs, (int)lv, s.refused[lv]);
}

/* A block the heap just handed out: alignment, usable size, no overlap with any live block, zeroed
 * if calloc'd; then filled with its own pattern and added to the model. except: a block that is being
 * replaced (realloc), left out of the overlap check. */
static int adopt_block(int hs, void *pv, size_t req, size_t align, bool debug, bool zeroed, int except, const char *what)
{
    uint8_t *p = pv;
    hm_heap *h = S.hp[hs].h;
    if (!p) fail("%s on heap %d: HM_OK with a NULL block", what, hs);
    if ((uintptr_t)p % 16 || (align && (uintptr_t)p % align))
        fail("%s on heap %d: block %p is not %zu-aligned", what, hs, (void *)p, align > 16 ? align : 16);
    size_t u = hm_heap_usable_size(h, p);
    if (!u || u < req) fail("%s on heap %d: block %p of %zu bytes has usable size %zu", what, hs, (void *)p, req, u);
    if (req > S.mg[S.hp[hs].mgr].limit)
        fail("%s on heap %d: a block of %zu bytes under a limit of %" PRIu64, what, hs, req, S.mg[S.hp[hs].mgr].limit);
    uintptr_t lo = (uintptr_t)p, hi = lo + u;
    for (int i = 0; i < MAX_BLOCKS; i++) {
        const block *o = &S.b[i];
        if (!o->live || i == except) continue;
        uintptr_t olo = (uintptr_t)o->p, ohi = olo + (o->usable ? o->usable : 1);
        if (lo < ohi && olo < hi)
            fail("%s on heap %d: block [%p, +%zu) overlaps live block [%p, +%zu) of heap %d (handed out twice)", what, hs,
                 (void *)p, u, (void *)o->p, o->usable, o->heap);
    }
    void *w = hm_heap_writable(h, p);
    bool same = !(S.hp[hs].flags & HM_HEAP_EXECUTABLE) || hm_os_wx_allowed();
    if (!w || (same ? w != p : w == p))
        fail("%s on heap %d (flags %u): hm_heap_writable(%p) = %p", what, hs, S.hp[hs].flags, (void *)p, w);
    if (zeroed) {
        span sp[6];
        unsigned n = spans_of(req, sp);
        for (unsigned i = 0; i < n; i++)
            for (size_t o = sp[i].a; o < sp[i].b; o++)
                if (p[o]) fail("%s on heap %d: calloc'd block %p has %#x at offset %zu", what, hs, (void *)p, p[o], o);
    }
    int bi = except >= 0 ? except : free_slot();
    block *x = &S.b[bi];
    *x = (block){p, req, u, ++S.next_id, hs, true, debug};
    fill(x);
    return bi;
}

/* ---- checks after every operation ---------------------------------------------------------- */

typedef struct site_sum {
    uint64_t live, total;
} site_sum;
NO_COVERAGE static void site_cb(const hm_heap_site *s, void *arg)
{
    site_sum *t = arg;
    t->live += s->live_blocks;
    t->total += s->total_blocks;
}

/* The checks after an operation. The map's books (a walk of every allocation) and the debug sites (a
 * walk of each heap's site table) cost most: they run when the operation may have changed them, and
 * every 8th operation. */
NO_COVERAGE static void check_all(const char *when, bool full)
{
    uint64_t heap_bytes[2] = {0, 0};
    for (int i = 0; i < MAX_BLOCKS; i++) {
        const block *x = &S.b[i];
        if (!x->live) continue;
        check_block(x, when);
        if (shut(x->heap)) continue; /* (what a shut-down manager's heaps answer is not specified) */
        size_t u = hm_heap_usable_size(S.hp[x->heap].h, x->p);
        if (u != x->usable)
            fail("%s: live block %p (heap %d, %zu bytes%s) has usable size %zu, was %zu", when, (void *)x->p, x->heap,
                 x->req, x->debug ? ", debug" : "", u, x->usable);
    }
    for (int hs = 0; hs < MAX_HEAPS; hs++) {
        heap_slot *hp = &S.hp[hs];
        if (!hp->h) continue;
        uint64_t blocks = 0, bytes = 0, large = 0, dbg = 0;
        for (int i = 0; i < MAX_BLOCKS; i++) {
            const block *x = &S.b[i];
            if (!x->live || x->heap != hs) continue;
            uint64_t bsize = x->usable + (x->debug ? HM_DEBUG_HDR : 0); /* the block's size (heap.h) */
            blocks++;
            bytes += bsize;
            if (!hm_segmap_get(x->p)) large += bsize; /* (large: not in a segment; realloc makes growing ones large early) */
            dbg += x->debug;
        }
        hm_heap_stats s;
        hm_status st = hm_heap_get_stats(hp->h, &s);
        if (st) fail("%s: hm_heap_get_stats(heap %d) = %s", when, hs, sn(st));
        if (s.live_blocks != blocks || s.live_bytes != bytes || s.large_bytes != large)
            fail("%s: heap %d stats: %" PRIu64 " blocks, %" PRIu64 " bytes, %" PRIu64 " large bytes live; the model: %" PRIu64
                 ", %" PRIu64 ", %" PRIu64, when, hs, s.live_blocks, s.live_bytes, s.large_bytes, blocks, bytes, large);
        /* SPEC 3.2: every committed byte of a heap is charged to its manager */
        heap_bytes[hp->mgr] += s.segments * seg_hdr_bytes + (s.committed_pages - s.segments) * HM_HPAGE_SIZE +
                               s.large_bytes + s.cached_large_bytes;
        if (!hp->sites_unsure && (full || S.debug_touched)) {
            site_sum t = {0, 0};
            if ((st = hm_heap_sites(hp->h, site_cb, &t))) fail("%s: hm_heap_sites(heap %d) = %s", when, hs, sn(st));
            if (t.live != dbg || t.total != hp->debug_total)
                fail("%s: heap %d debug sites: %" PRIu64 " live / %" PRIu64 " made; the model %" PRIu64 " / %" PRIu64, when, hs,
                     t.live, t.total, dbg, hp->debug_total);
        }
    }
    for (int mi = 0; mi < 2; mi++) {
        if (!S.mg[mi].m) continue;
        hm_manager_stats s = mstats(mi);
        uint64_t want = heap_bytes[mi] + S.mg[mi].extra;
        if (s.charge != want || s.charge > s.limit || s.peak_charge < s.charge)
            fail("%s: manager %d charge %" PRIu64 " (peak %" PRIu64 ", limit %" PRIu64 "), its heaps' committed memory %" PRIu64,
                 when, mi, s.charge, s.peak_charge, s.limit, want);
        hm_manager_state want_state = S.mg[mi].shut ? HM_MANAGER_SHUT_DOWN : HM_MANAGER_RUNNING;
        if (s.state != want_state) fail("%s: manager %d state %d, expected %d", when, mi, (int)s.state, (int)want_state);
    }
    if (!full) return;
    for (int hs = 0; hs < MAX_HEAPS; hs++) /* (the pages' invariants: check.c) */
        if (S.hp[hs].h && !shut(hs) && hm_heap_check_pages(S.hp[hs].h, NULL, NULL))
            fail("%s: heap %d: %s", when, hs, hm_last_detail());
    hm_status st = hm_vmap_check(false);
    if (st) fail("%s: hm_vmap_check: %s", when, sn(st));
}

/* SPEC 3.2, 4: every rise of the charge is a commit admitted at the level of the request that needed
 * it, which leaves the charge at most that level's threshold; falls may come at any time. So after
 * an operation the charge is at most what it was before or the threshold of the most critical level
 * an allocation in it asked for (the operation raised it last then); without any, not above before. */
static void check_admission(const uint64_t before[2])
{
    for (int mi = 0; mi < 2; mi++) {
        if (!S.mg[mi].m) continue;
        hm_manager_stats s = mstats(mi);
        uint64_t thr = S.admit[mi] < 0 ? 0
                       : S.admit[mi] == HM_LEVEL_TASK ? s.limit - s.reserve_appdomain - s.reserve_process
                       : S.admit[mi] == HM_LEVEL_APPDOMAIN ? s.limit - s.reserve_process
                                                           : s.limit;
        if (s.charge > before[mi] && s.charge > thr)
            fail("manager %d: the charge rose from %" PRIu64 " to %" PRIu64 ", above %" PRIu64 " (the threshold of level %d, "
                 "the most critical one asked for; -1: none)", mi, before[mi], s.charge, thr, S.admit[mi]);
    }
}

/* ---- operations ------------------------------------------------------------------------------ */

enum { K_ALLOC, K_CALLOC, K_ALIGNED, K_DEBUG };
static const char *const kind_name[] = {"alloc", "calloc", "alloc_aligned", "alloc_debug"};

static const char *pick_file(reader *r)
{
    static const char *const files[] = {
        "fuzz_heap.c", "src/a.c", NULL, "", "x.c",
        "a/very/long/path/name/that/does/not/fit/into/the/site/table/entry/of/fifty-six/bytes.c"};
    return files[r8(r) % (sizeof files / sizeof files[0])];
}

static void op_alloc(reader *r, int hs, int kind, bool big)
{
    if (hs < 0 || free_slot() < 0) return;
    heap_slot *hp = &S.hp[hs];
    uint64_t limit = S.mg[hp->mgr].limit;
    size_t size = big ? (size_t)(r8(r) % 6 + 1) * MiB : pick_size(r, limit), count = 1, align = 16;
    if (big) size += (size_t)rbytes(r, 3) % MiB;
    hm_level lv = pick_level(r);
    const char *file = NULL;
    int line = 0;
    if (kind == K_CALLOC) { /* a few overflowing products, else at most 4 MiB (calloc writes all of it) */
        static const size_t ovf[][2] = {{SIZE_MAX / 2 + 1, 2}, {(size_t)1 << 32, (size_t)1 << 32}, {0, SIZE_MAX}, {SIZE_MAX, 0},
                                        {3, SIZE_MAX / 3 + 1}, {SIZE_MAX, SIZE_MAX}};
        unsigned sel = r8(r);
        if (sel % 8 == 0) {
            count = ovf[sel / 8 % 6][0];
            size = ovf[sel / 8 % 6][1];
        } else {
            count = sel % 64;
            size = size > 64 * KiB ? size % (64 * KiB) : size;
        }
    } else if (kind == K_ALIGNED) {
        static const size_t bad[] = {0, 3, 24, 48, 12288, SIZE_MAX, (size_t)1 << 63};
        unsigned v = r8(r) % 20;
        align = v <= 12 ? (size_t)1 << v : bad[v - 13];
    } else if (kind == K_DEBUG) {
        file = pick_file(r);
        unsigned v = r8(r);
        line = v < 240 ? (int)(v % 8) : v & 1 ? INT_MAX : -1;
    }
    bool overflow = kind == K_CALLOC && size && count > SIZE_MAX / size;
    size_t req = overflow ? SIZE_MAX : count * size;
    bool align_ok = align && !(align & (align - 1)) && align <= ((size_t)1 << 40);
    note("%s heap %d (flags %u) size %zu x %zu align %zu level %d", kind_name[kind], hs, hp->flags, count, size, align, (int)lv);
    hm_manager_stats before = mstats(hp->mgr);
    void *p = NULL;
    hm_status st;
    admitting(hs, lv);
    switch (kind) {
    case K_ALLOC: st = hm_heap_alloc(hp->h, size, lv, &p); break;
    case K_CALLOC: st = hm_heap_calloc(hp->h, count, size, lv, &p); break;
    case K_ALIGNED: st = hm_heap_alloc_aligned(hp->h, size, align, lv, &p); break;
    default: st = hm_heap_alloc_debug(hp->h, size, lv, file, line, &p); break;
    }
    note("  = %s %p", sn(st), p);
    if (shut(hs)) { /* SPEC 3.4: every later call fails (argument errors may be told first) */
        if (st == HM_OK) fail("%s on heap %d of a shut-down manager succeeded", kind_name[kind], hs);
        if (!overflow && level_ok(lv) && align_ok && st != HM_E_HOST_CLRNOTAVAILABLE)
            fail("%s on heap %d of a shut-down manager: %s, not HOST_E_CLRNOTAVAILABLE", kind_name[kind], hs, sn(st));
        return;
    }
    if (overflow) {
        if (st != HM_E_OUTOFMEMORY && !(st == HM_E_INVALIDARG && !level_ok(lv)) && !refusal(hs, st))
            fail("calloc(%zu, %zu) overflows, yet it returned %s", count, size, sn(st));
        return;
    }
    if (!level_ok(lv) || !align_ok) {
        if (st != HM_E_INVALIDARG)
            fail("%s with level %d, alignment %zu: %s, not E_INVALIDARG", kind_name[kind], (int)lv, align, sn(st));
        return;
    }
    if (st != HM_OK) {
        if (!refusal(hs, st)) fail("%s of %zu bytes at level %d on heap %d: %s", kind_name[kind], req, (int)lv, hs, sn(st));
        check_refusal_books(hs, st, &before, lv);
        return;
    }
    adopt_block(hs, p, req, align, kind == K_DEBUG, kind == K_CALLOC, -1, kind_name[kind]);
    if (kind == K_DEBUG) {
        S.debug_touched = true;
        hp->debug_total++;
        if (S.fault) hp->sites_unsure = true;
    }
}

/* Free of live block bi through its own heap. */
static void free_live(int bi, const char *what)
{
    block *x = &S.b[bi];
    int hs = x->heap;
    S.debug_touched |= x->debug;
    hm_status st = hm_heap_free(S.hp[hs].h, x->p);
    note("%s: free heap %d %p (%zu bytes%s) = %s", what, hs, (void *)x->p, x->req, x->debug ? ", debug" : "", sn(st));
    if (shut(hs)) {
        if (st != HM_E_HOST_CLRNOTAVAILABLE) fail("free of live %p on a shut-down manager's heap: %s", (void *)x->p, sn(st));
        return;
    }
    if (st == HM_OK) {
        drop(bi);
        return;
    }
    /* the kernel may refuse a release (SPEC 3.2: E_OUTOFMEMORY, the books unchanged); the block stays */
    if (S.fault && st == HM_E_NOT_ENOUGH_MEMORY) return;
    fail("free of live block %p (heap %d, %zu bytes%s): %s", (void *)x->p, hs, x->req, x->debug ? ", debug" : "", sn(st));
}

/* The operations of one live block through the wrong heap: HOST_E_NOT_OWNER, and nothing changes. */
static void wrong_heap(int bi, int hs)
{
    block *x = &S.b[bi];
    hm_heap *h = S.hp[hs].h;
    hm_status st = hm_heap_free(h, x->p);
    note("free of heap %d's %p through heap %d = %s", x->heap, (void *)x->p, hs, sn(st));
    hm_status want = shut(hs) ? HM_E_HOST_CLRNOTAVAILABLE : HM_E_HOST_NOT_OWNER;
    if (st != want) fail("free of heap %d's live block %p through heap %d: %s, not %s", x->heap, (void *)x->p, hs, sn(st), sn(want));
    if (shut(hs)) return;
    if (hm_heap_usable_size(h, x->p)) fail("usable size of heap %d's block %p through heap %d is not 0", x->heap, (void *)x->p, hs);
    if (hm_heap_writable(h, x->p)) fail("writable of heap %d's block %p through heap %d is not NULL", x->heap, (void *)x->p, hs);
    void *q = (void *)1;
    st = hm_heap_realloc(h, x->p, x->req + 1, HM_LEVEL_PROCESS, &q);
    if (st != HM_E_HOST_NOT_OWNER) fail("realloc of heap %d's block %p through heap %d: %s", x->heap, (void *)x->p, hs, sn(st));
}

/* A pointer for the hostile operations; *from is the block it was derived from (-1 if none). */
static uintptr_t hostile_ptr(reader *r, uint8_t *stack, int *from)
{
    static const uintptr_t wild[] = {
        1, 8, 16, 0x1000, 0x10000, 0x10010, 0x7ffffffeff00, 0x7ffffffff000, 0x7fffffffffff & ~(uintptr_t)15,
        (uintptr_t)1 << 47, ((uintptr_t)1 << 47) + 16, 0xffff800000000000, 0xffffffffff600000, 0xfffffffffffff000,
        UINTPTR_MAX & ~(uintptr_t)15, UINTPTR_MAX, (uintptr_t)1 << 63, (uintptr_t)1 << 46, 0x100000000};
    *from = -1;
    unsigned kind = r8(r) % 10;
    int bi = pick_block(r, -1);
    const block *x = bi >= 0 ? &S.b[bi] : NULL;
    uint8_t o = r8(r);
    if ((kind <= 3 || kind == 7) && !x) kind = 5;
    *from = kind <= 3 || kind == 7 ? bi : -1;
    switch (kind) {
    case 0: { /* interior (or just outside) of a live block */
        static const intptr_t off[] = {1, 8, 16, 32, 48, 4096, -8, -16, -32, 15, 24};
        size_t u = x->usable;
        switch (o % 16) {
        case 11: return (uintptr_t)x->p + (u / 2 & ~(size_t)15);
        case 12: return (uintptr_t)x->p + u - 16;
        case 13: return (uintptr_t)x->p + u;
        case 14: return (uintptr_t)x->p + u + 16;
        case 15: return (uintptr_t)x->p + x->req / 2;
        default: return (uintptr_t)x->p + (uintptr_t)off[o % 11];
        }
    }
    case 1: { /* anywhere in the 4 MiB segment a block lies in (its header, other pages, the guard) */
        uintptr_t seg = (uintptr_t)x->p & ~(uintptr_t)(HM_SEG_SIZE - 1);
        static const uintptr_t in_page[] = {0, 16, 8, 64, HM_HPAGE_SIZE - 16, 4096, 48, 32};
        return seg + (o % 64) * HM_HPAGE_SIZE + in_page[r8(r) % 8];
    }
    case 2: { /* a large block's pages and its reserved tail (room beyond the committed run) */
        uintptr_t a = (uintptr_t)x->p & ~(uintptr_t)4095;
        static const size_t mul[] = {1, 2, 3, 4, 8, 16, 64, 256};
        return a + (o % 4 == 0 ? x->usable : o % 4 == 1 ? 4096 * mul[o / 4 % 8] : o % 4 == 2 ? 2 * x->usable - 16 : x->usable + 4096);
    }
    case 3: return (uintptr_t)x->p; /* the block itself (free: a real free; a wrong heap: NOT_OWNER) */
    case 4: { /* recently freed, possibly reused since */
        unsigned n = S.nring < RING ? S.nring : RING;
        if (!n) return 0;
        uintptr_t q = S.ring[o % n];
        return (r8(r) & 3) == 0 ? q + 16 : q;
    }
    case 5: { /* wild addresses: small, kernel, non-canonical, top of user space, from the input */
        unsigned i = o % (sizeof wild / sizeof wild[0] + 2);
        if (i < sizeof wild / sizeof wild[0]) return wild[i];
        uint64_t v = rbytes(r, 8);
        return i & 1 ? (uintptr_t)v : (uintptr_t)(v & (((uint64_t)1 << 47) - 1) & ~(uint64_t)15);
    }
    case 6: { /* memory that is no heap's: the stack, a global, malloc, the managers' plain allocation */
        switch (o % 6) {
        case 0: return (uintptr_t)stack + 16;
        case 1: return (uintptr_t)g_global + 16;
        case 2: return (uintptr_t)S.mallocd;
        case 3: return S.mg[0].region ? (uintptr_t)S.mg[0].region : 0;
        case 4: return S.mg[0].region ? (uintptr_t)S.mg[0].region + 4096 : 0; /* reserved, not committed */
        default: return S.mg[1].region ? (uintptr_t)S.mg[1].region + 16 : (uintptr_t)stack;
        }
    }
    case 7: { /* a two-view heap's writable alias of a block (not the block) */
        void *w = hm_heap_writable(S.hp[x->heap].h, x->p);
        return w ? (uintptr_t)w + (o & 1) * 16 : (uintptr_t)x->p + 16;
    }
    case 8: { /* a debug block's header, or its second word */
        int d = -1;
        for (int i = 0; i < MAX_BLOCKS; i++)
            if (S.b[i].live && S.b[i].debug) d = i;
        if (d < 0) return (uintptr_t)stack;
        *from = d;
        S.debug_touched = true;
        return (uintptr_t)S.b[d].p - (o & 1 ? 8 : 16);
    }
    default: return 0; /* NULL */
    }
}

/* Free, usable_size, writable or realloc of a hostile pointer: a live block of the heap gets the real
 * operation, another heap's live block HOST_E_NOT_OWNER, anything else HOST_E_INVALIDOPERATION. */
static void op_realloc_block(reader *r, int bi, bool grow);

static void op_hostile(reader *r, int hs, unsigned what)
{
    if (hs < 0) return;
    uint8_t stack[64];
    memset(stack, 0x5a, sizeof stack);
    int from;
    uintptr_t q = hostile_ptr(r, stack, &from);
    hm_heap *h = S.hp[hs].h;
    int x = q ? find_live(q) : -1;
    if (x >= 0 && S.b[x].heap == hs) { /* a live block of this heap: the real thing */
        if (what == 0) free_live(x, "hostile pointer is a live block");
        else if (what == 2) op_realloc_block(r, x, false);
        else if (!shut(hs) && (hm_heap_usable_size(h, (void *)q) != S.b[x].usable || !hm_heap_writable(h, (void *)q)))
            fail("usable size / writable of live block %#" PRIxPTR " of heap %d: %zu (model %zu), %p", q, hs,
                 hm_heap_usable_size(h, (void *)q), S.b[x].usable, hm_heap_writable(h, (void *)q));
        return;
    }
    if (x >= 0) {
        wrong_heap(x, hs);
        return;
    }
    hm_status want = HM_E_HOST_INVALIDOPERATION;
    if (what == 0) {
        hm_status st = hm_heap_free(h, (void *)q);
        note("free heap %d of %#" PRIxPTR " (derived from block %d) = %s", hs, q, from, sn(st));
        if (!q) want = HM_OK;
        if (shut(hs) && q) want = HM_E_HOST_CLRNOTAVAILABLE;
        if (st != want && !(shut(hs) && !q && st == HM_E_HOST_CLRNOTAVAILABLE))
            fail("free(heap %d, %#" PRIxPTR ") of no live block: %s, not %s", hs, q, sn(st), sn(want));
    } else if (what == 1) {
        if (shut(hs)) return;
        size_t u = hm_heap_usable_size(h, (void *)q);
        void *w = hm_heap_writable(h, (void *)q);
        note("usable/writable heap %d of %#" PRIxPTR " = %zu, %p", hs, q, u, w);
        if (u || w) fail("usable size / writable of %#" PRIxPTR " (no live block) on heap %d: %zu, %p", q, hs, u, w);
    } else {
        if (!q || shut(hs)) return;
        hm_level lv = pick_level(r);
        void *out = (void *)1;
        hm_status st = hm_heap_realloc(h, (void *)q, 64, lv, &out);
        note("realloc heap %d of %#" PRIxPTR " level %d = %s %p", hs, q, (int)lv, sn(st), out);
        if (st != want && !(st == HM_E_INVALIDARG && !level_ok(lv)))
            fail("realloc(heap %d, %#" PRIxPTR ") of no live block: %s, not %s", hs, q, sn(st), sn(want));
        if (out) fail("realloc(heap %d, %#" PRIxPTR ") of no live block failed, yet *out = %p", hs, q, out);
    }
}

static void op_realloc_block(reader *r, int bi, bool grow)
{
    block *x = &S.b[bi];
    int hs = x->heap;
    uint64_t limit = S.mg[S.hp[hs].mgr].limit;
    size_t size = grow ? x->req + (size_t)(r8(r) + 1) * (x->req > 32 * KiB ? 64 * KiB : 4 * KiB) : pick_size(r, limit);
    hm_level lv = pick_level(r);
    hm_manager_stats before = mstats(S.hp[hs].mgr);
    void *q = NULL;
    uint8_t *p = x->p;
    S.debug_touched |= x->debug;
    admitting(hs, lv);
    hm_status st = hm_heap_realloc(S.hp[hs].h, p, size, lv, &q);
    note("realloc heap %d %p (%zu bytes%s, usable %zu) to %zu level %d = %s %p", hs, (void *)p, x->req,
         x->debug ? ", debug" : "", x->usable, size, (int)lv, sn(st), q);
    /* in place (nothing to admit), or refused for the level / the shutdown before anything changed */
    bool in_place_ok = st == HM_OK && q == p && size <= x->usable;
    if (shut(hs)) { /* SPEC 3.4: refused, in place or not */
        if (st != HM_E_HOST_CLRNOTAVAILABLE)
            fail("realloc on a shut-down manager's heap: %s %p", sn(st), q);
    } else if (!level_ok(lv)) {
        if (st != HM_E_INVALIDARG && !in_place_ok) fail("realloc at level %d: %s %p, not E_INVALIDARG", (int)lv, sn(st), q);
    } else if (st != HM_OK) {
        if (!refusal(hs, st)) fail("realloc of %p to %zu bytes at level %d: %s", (void *)p, size, (int)lv, sn(st));
        check_refusal_books(hs, st, &before, lv);
    }
    if (st != HM_OK) return; /* p untouched (check_all looks) */
    if (!q) fail("realloc of %p: HM_OK with a NULL block", (void *)p);
    size_t keep = x->req < size ? x->req : size, at;
    if (!holds(q, x->id, x->req, keep, &at))
        fail("realloc of %p (%zu bytes) to %zu: %p lost the old contents at offset %zu", (void *)p, x->req, size, q, at);
    if (q != p) {
        ring_push(p);
        x->debug = false; /* (a moved block is a plain one) */
    }
    adopt_block(hs, q, size, 16, x->debug, false, bi, "realloc");
}

static void op_trim(int hs)
{
    if (hs < 0) return;
    hm_status st = hm_heap_trim(S.hp[hs].h);
    note("trim heap %d = %s", hs, sn(st));
    hm_status want = shut(hs) ? HM_E_HOST_CLRNOTAVAILABLE : HM_OK;
    /* trim reports what the kernel refused to give back (which stays cached: the books stay exact) */
    if (st != want && !(S.fault && !shut(hs) && (st == HM_E_NOT_ENOUGH_MEMORY || st == HM_E_OUTOFMEMORY)))
        fail("trim of heap %d: %s, not %s", hs, sn(st), sn(want));
    if (st || S.fault) return;
    /* hostmem.h: trim releases the freed large blocks kept, this thread's included (the main thread
     * holds the only other cache; a second thread's goes back to the heap at its exit) */
    if (on_second_thread) return;
    hm_heap_stats s;
    (void)hm_heap_get_stats(S.hp[hs].h, &s);
    if (s.cached_large_bytes) fail("after trim, heap %d keeps %" PRIu64 " bytes of freed large blocks", hs, s.cached_large_bytes);
}

static void free_all(int hs, bool debug_only)
{
    for (int i = 0; i < MAX_BLOCKS; i++)
        if (S.b[i].live && S.b[i].heap == hs && (!debug_only || S.b[i].debug)) free_live(i, "free all");
}

static hm_status heap_new(int hs, int mi, uint32_t flags)
{
    heap_slot *hp = &S.hp[hs];
    *hp = (heap_slot){NULL, mi, flags, 0, false};
    hm_heap_untracked = hs & 1; /* odd slots: the inline fast paths, also in sanitizer builds (track.h) */
    hm_status st = hm_heap_create(S.mg[mi].m, flags, &hp->h);
    hm_heap_untracked = false;
    note("create heap %d in manager %d flags %u = %s", hs, mi, flags, sn(st));
    if (st && !(S.mg[mi].shut && st == HM_E_HOST_CLRNOTAVAILABLE)) fail("hm_heap_create(flags %u) = %s", flags, sn(st));
    return st;
}

/* A heap goes with its live blocks (hostmem.h: every block at once, the charge goes back), and a new
 * one of the input's kind takes its slot. (Debug blocks are freed first: a destroy with live ones
 * reports them on stderr, which would flood the fuzzer's log.) */
static void op_destroy(reader *r, int hs)
{
    if (hs < 0) return;
    if (!shut(hs)) free_all(hs, true);
    if (shut(hs)) /* (its debug blocks stay: none are made on a shut-down manager, but older ones may live) */
        for (int i = 0; i < MAX_BLOCKS; i++)
            if (S.b[i].live && S.b[i].heap == hs && S.b[i].debug) return;
    hm_status st = hm_heap_destroy(S.hp[hs].h);
    S.full = true;
    note("destroy heap %d = %s", hs, sn(st));
    if (st) fail("hm_heap_destroy(heap %d) = %s", hs, sn(st));
    S.hp[hs].h = NULL;
    for (int i = 0; i < MAX_BLOCKS; i++)
        if (S.b[i].live && S.b[i].heap == hs) drop(i);
    (void)heap_new(hs, S.hp[hs].mgr, r8(r) & 3);
}

static void op_shutdown(void)
{
    if (!S.mg[1].m) return;
    hm_status st = hm_manager_shutdown(S.mg[1].m);
    S.full = true;
    note("shutdown manager 1 = %s", sn(st));
    hm_status want = S.mg[1].shut ? HM_E_HOST_CLRNOTAVAILABLE : HM_OK;
    if (st != want) fail("hm_manager_shutdown: %s, not %s", sn(st), sn(want));
    S.mg[1].shut = true;
}

static void op_bad_create(reader *r)
{
    static const uint32_t bad[] = {4, 5, 8, 0x80000000u, 0xffffffffu, 0x10};
    hm_heap *h = (hm_heap *)&g_global;
    uint32_t flags = bad[r8(r) % 6];
    hm_status st = hm_heap_create(S.mg[0].m, flags, &h);
    note("create with flags %#x = %s", flags, sn(st));
    if (st != HM_E_INVALIDARG || h) fail("hm_heap_create(flags %#x) = %s, heap %p", flags, sn(st), (void *)h);
}

/* One operation (which = the decoded opcode); with fault, one kernel call of the input's kind fails. */
static void run_op(reader *r, unsigned which)
{
    switch (which) {
    case 0:
    case 1: op_alloc(r, pick_heap(r), K_ALLOC, false); break;
    case 2: op_alloc(r, pick_heap(r), K_CALLOC, false); break;
    case 3: op_alloc(r, pick_heap(r), K_ALIGNED, false); break;
    case 4: op_alloc(r, pick_heap(r), K_DEBUG, false); break;
    case 5: {
        int hs = pick_heap(r);
        op_alloc(r, hs, r8(r) % 4, true);
        break;
    }
    case 6:
    case 7: {
        int bi = pick_block(r, -1);
        if (bi >= 0) free_live(bi, "free");
        break;
    }
    case 8:
    case 9: {
        int bi = pick_block(r, -1);
        if (bi >= 0) op_realloc_block(r, bi, which == 9);
        break;
    }
    case 10: op_trim(pick_heap(r)); break;
    case 11: op_hostile(r, pick_heap(r), 0); break;
    case 12: op_hostile(r, pick_heap(r), 1); break;
    case 13: op_hostile(r, pick_heap(r), 2); break;
    case 14: {
        int bi = pick_block(r, -1), hs = pick_heap(r);
        if (bi >= 0 && hs >= 0 && hs != S.b[bi].heap) wrong_heap(bi, hs);
        break;
    }
    case 15: {
        int hs = pick_heap(r);
        if (hs >= 0 && !shut(hs)) free_all(hs, false);
        break;
    }
    case 16: { /* (gated by a second byte: on random input these would end most runs' state early) */
        int hs = pick_heap(r);
        if (r8(r) % 4 == 0) op_destroy(r, hs);
        break;
    }
    case 17: op_bad_create(r); break;
    case 18:
        if (r8(r) % 16 == 0) op_shutdown();
        break;
    default: break;
    }
}

/* A few operations on a new thread, which then exits; the caller waits for it (so the model, which
 * is not thread-safe, is only ever used by one thread at a time). */
typedef struct thread_job {
    reader *r;
    unsigned n;
} thread_job;

static void *thread_main(void *arg)
{
    static const unsigned ops[] = {0, 3, 4, 5, 6, 6, 8, 9, 10, 11, 14};
    thread_job *j = arg;
    on_second_thread = true;
    for (unsigned k = 0; k < j->n; k++) run_op(j->r, ops[r8(j->r) % 11]);
    return NULL; /* (its caches go back to their heaps at its exit: tcache.c, thread_exit) */
}

static void op_thread(reader *r)
{
    thread_job j = {r, 1 + r8(r) % 4};
    note("on a new thread: %u operations", j.n);
    pthread_t t;
    if (pthread_create(&t, NULL, thread_main, &j)) return; /* (no thread: nothing to check) */
    pthread_join(t, NULL);
    note("  (the thread exited)");
    S.full = S.debug_touched = true;
}

static void op_fault(reader *r)
{
    static const hm_os_call_t kinds[] = {HM_OS_MMAP, HM_OS_MUNMAP, HM_OS_MPROTECT, HM_OS_MADVISE};
    static const unsigned ops[] = {0, 2, 3, 4, 5, 6, 8, 9, 10, 15};
    hm_os_call_t kind = kinds[r8(r) % 4];
    unsigned long nth = 1 + r8(r) % 4;
    unsigned which = ops[r8(r) % 10];
    note("inject: the %lu%s next call of kind %d fails (ENOMEM), then op %u", nth, nth == 1 ? "st" : "th", (int)kind, which);
    unsigned long before = hm_os_faults_injected();
    S.fault = S.full = S.debug_touched = true;
    hm_os_fault_inject(kind, nth, ENOMEM, false);
    run_op(r, which);
    hm_os_fault_clear();
    S.fault = false;
    note("  (%lu fault(s) fired)", hm_os_faults_injected() - before);
}

/* ---- one run ------------------------------------------------------------------------------- */

static void mgr_new(int mi, reader *r)
{
    static const uint64_t limits[] = {1 * MiB, 2 * MiB, 3 * MiB, 4 * MiB, 6 * MiB, 8 * MiB, 12 * MiB, 16 * MiB,
                                      24 * MiB, 32 * MiB, 48 * MiB, 64 * MiB};
    uint8_t a = r8(r), b = r8(r);
    uint64_t limit = limits[a % 12];
    if (mi == 1 && limit > 16 * MiB) limit = 16 * MiB;
    uint64_t ra = b & 1 ? limit / 8 : b & 2 ? limit / 32 : 0, rp = b & 4 ? limit / 4 : b & 8 ? 4096 : 0;
    static const unsigned highs[] = {90, 50, 20, 100}, lows[] = {60, 10, 0, 99};
    unsigned band = a / 12 % 4;
    char opts[256];
    int n = snprintf(opts, sizeof opts, "limit=%" PRIu64 "K,reserve.appdomain=%" PRIu64 ",reserve.process=%" PRIu64
                     ",notify.high=%u,notify.low=%u,heap.guard=%s", limit / KiB, ra, rp, highs[band], lows[band],
                     b & 16 ? "on" : "off");
    if (b & 32) n += snprintf(opts + n, sizeof opts - (size_t)n, ",va.limit=%s", b & 64 ? "64M" : "1G");
    bool waits = (b & 0xc0) == 0xc0 && a >= 200;
    if (waits) n += snprintf(opts + n, sizeof opts - (size_t)n, ",wait.task=1ms,wait.process=1");
    mgr_slot *mg = &S.mg[mi];
    *mg = (mgr_slot){NULL, false, waits, NULL, 0, limit};
    hm_status st = hm_manager_create(opts, &mg->m);
    note("manager %d: \"%s\" = %s", mi, opts, sn(st));
    if (st) fail("hm_manager_create(\"%s\") = %s", opts, sn(st));
    /* memory of the manager that is no heap's: 64 KiB reserved, its first page committed */
    if ((st = hm_virtual_alloc_level(mg->m, NULL, 64 * KiB, HM_MEM_RESERVE, HM_PAGE_READWRITE, HM_LEVEL_PROCESS, &mg->region)) ||
        (st = hm_commit(mg->m, mg->region, 4096, HM_PAGE_READWRITE)))
        fail("manager %d: a plain allocation: %s", mi, sn(st));
    mg->extra = 4096;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static bool once;
    if (!once) {
        once = true;
        const char *t = getenv("HM_FUZZ_HEAP_TRACE");
        trace = t && *t && *t != '0';
        seg_hdr_bytes = (sizeof(hm_segment) + 4095) & ~(size_t)4095;
    }
    memset(&S, 0, sizeof S);
    reader rd = {data, size, 0}, *r = &rd;
    S.mallocd = malloc(64);
    /* header: the managers' options, then the heaps' kinds */
    uint8_t shape = r8(r);
    mgr_new(0, r);
    int nheaps = 1 + shape % 4;
    for (int i = 0; i < nheaps; i++) (void)heap_new(i, 0, r8(r) & 3);
    if (shape & 4) {
        mgr_new(1, r);
        for (int i = 4; i < 4 + 1 + (shape >> 3) % 2; i++) (void)heap_new(i, 1, r8(r) & 3);
    }
    check_all("after create", true);
    for (S.op = 1; S.op <= MAX_OPS && r->i < r->n; S.op++) {
        uint8_t code = r8(r);
        S.full = S.op % 8 == 0;
        S.debug_touched = false;
        uint64_t charge[2] = {0, 0};
        for (int mi = 0; mi < 2; mi++) {
            S.admit[mi] = -1;
            if (S.mg[mi].m) charge[mi] = mstats(mi).charge;
        }
        if (code % 24 == 23) op_fault(r);
        else if (code % 24 == 22) op_thread(r);
        else if (code % 24 >= 19) run_op(r, code % 2 ? 0 : 6); /* (more allocations and frees) */
        else run_op(r, code % 24);
        check_all("after the operation", S.full);
        check_admission(charge);
    }
    /* the end: everything freed, then trimmed, then the heaps go; the charge follows to 0 */
    S.op = 0;
    for (int hs = 0; hs < MAX_HEAPS; hs++)
        if (S.hp[hs].h && !shut(hs)) {
            free_all(hs, false);
            op_trim(hs);
        }
    check_all("after freeing everything", true);
    for (int hs = 0; hs < MAX_HEAPS; hs++) {
        if (!S.hp[hs].h) continue;
        hm_heap_stats s;
        (void)hm_heap_get_stats(S.hp[hs].h, &s);
        bool cached_ok = !s.cached_large_bytes;
        if (!shut(hs) && (s.live_blocks || s.live_bytes || s.large_bytes || !cached_ok))
            fail("heap %d after freeing all and trim: %" PRIu64 " blocks, %" PRIu64 " bytes, %" PRIu64 " large, %" PRIu64
                 " cached large", hs, s.live_blocks, s.live_bytes, s.large_bytes, s.cached_large_bytes);
        hm_status st = hm_heap_destroy(S.hp[hs].h);
        if (st) fail("hm_heap_destroy(heap %d) = %s", hs, sn(st));
        S.hp[hs].h = NULL;
        for (int i = 0; i < MAX_BLOCKS; i++)
            if (S.b[i].live && S.b[i].heap == hs) S.b[i].live = false;
    }
    for (int mi = 0; mi < 2; mi++) {
        mgr_slot *mg = &S.mg[mi];
        if (!mg->m) continue;
        hm_manager_stats s = mstats(mi);
        if (s.charge != mg->extra) fail("manager %d: charge %" PRIu64 " with no heap left, not %" PRIu64, mi, s.charge, mg->extra);
        if (!mg->shut) {
            hm_status st = hm_release(mg->m, mg->region);
            if (st) fail("manager %d: release of its plain allocation: %s", mi, sn(st));
            if ((s = mstats(mi)).charge) fail("manager %d: charge %" PRIu64 " with nothing left", mi, s.charge);
        }
    }
    hm_status st = hm_vmap_check(true);
    if (st) fail("hm_vmap_check(with the kernel) at the end: %s", sn(st));
    for (int mi = 0; mi < 2; mi++)
        if (S.mg[mi].m && (st = hm_manager_destroy(S.mg[mi].m))) fail("hm_manager_destroy(%d) = %s", mi, sn(st));
    free(S.mallocd);
    return 0;
}
