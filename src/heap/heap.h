/* heap.h — IHostMalloc heaps (SPEC 4): blocks carved from segments that the heap reserves and
 * commits through its manager, so that every committed byte is charged, at the level of the request
 * that needs it.
 *
 * Layout. A segment is 4 MiB, 4 MiB aligned, reserved from the map with the heap as its tag (so
 * that any pointer leads to its segment by masking, and the map tells whether an address is a heap's
 * at all). It is cut into 64 pages of 64 KiB; page 0 holds the segment header with the metadata of
 * all pages, the others each hold blocks of one size class. Pages are committed when first used
 * (HM_COMMIT_AHEAD at a time while the budget has room) and decommitted when they have stayed empty
 * for HM_EMPTY_DELAY_MS (checked at the heap's next page operation; at once while the manager's
 * memory state is Low; hm_heap_trim does it now): a program that frees and allocates in waves
 * reuses its pages instead of paying two system calls and a TLB shootdown of every other thread for
 * each page, each time. A medium class's span that empties waits whole, as long, for the next span
 * of its length (segment.c, the span cache). Blocks above HM_MEDIUM_MAX get an
 * allocation of their own from the map ("large", tagged heap|1), page aligned. A freed large block
 * stays committed (and charged) in a small per-heap cache, for HM_EMPTY_DELAY_MS at most as an empty
 * page does (released at the cache's next use or purge after that), unless memory is short (state Low, or
 * requests waiting), marked freed by a tag in its second word, and serves the next large request it
 * fits (up to HM_LBLOCK_SLACK times its size) without a system call; the cache is bounded (HM_LCACHE_N
 * blocks, HM_LCACHE_BYTES, and an eighth of the limit or, for a thread-safe heap on a manager outside
 * a tree, the budget's free room; never so much that the cache alone would take the manager's
 * state to Low: large.c), its oldest block is released beyond that, and
 * when a request on the manager is refused (heap.c, give_back; the heap's own commits too) the oldest
 * blocks, then the oldest empty pages, as much as the request lacks (all of it if that was not enough).
 * Each thread keeps a few freed large blocks of its own (HM_TCACHE_LARGE of at most
 * HM_TCACHE_LARGE_MAX bytes, HM_TCACHE_LARGE_BYTES in all, tcache.c) the same way, taken without the
 * heap lock (a Free looks at a large block under it: a freed one may be released by another thread).
 * A large block reserves twice its size (made by realloc, or cacheable while the manager's
 * address-space budget is unlimited; a cacheable one at least HM_LBLOCK_ROOM): a later realloc grows
 * it in place by committing pages (ahead, geometrically) instead of moving it, and a request that no
 * cached block holds grows the largest cached one that can, in the heap's cache or the thread's (only
 * the difference is committed and faulted in); its usable size is its committed run.
 *
 * Executable heaps (MALLOC_EXECUTABLE) get pages that are readable, writable and executable, unless
 * the system forbids that (W^X: os.h, hm_os_wx_allowed): then the heap is "dual". Its block memory
 * is a memfd mapped twice: the execute-read view holds the blocks (the addresses Alloc returns and
 * Free takes; committed PAGE_EXECUTE_READ through the manager, so the charge is exact), and a
 * read-write view, outside the map, is where the heap writes its own words into blocks and where the
 * program writes code (hm_heap_writable gives a block's alias). A segment's header page stays
 * ordinary memory; its pages 1.. are the memfd's, and decommitting one punches its hole (the memory
 * goes back). A dual heap serves every request under its lock (no thread caches: executable heaps
 * are small and rarely hot), and keeps no freed large blocks.
 *
 * With the manager option heap.guard, the last page of every segment is never committed: a guard
 * page (PROT_NONE) between one segment's blocks and the next segment's header, so that a linear
 * overflow faults instead of corrupting metadata.
 *
 * Reserved pages of a thread-cached heap's segments read as zeros (HM_AF_READABLE: PROT_READ, never
 * writable, never resident): Free reads a block's words before it knows the block is still live
 * (the cache tag), and a second Free racing the first may do so just after the page was emptied and
 * decommitted; it then reads zeros and, looking at the live bit again, answers
 * HOST_E_INVALIDOPERATION. With heap.guard, segments stay PROT_NONE (a guard must fault on reads
 * too), and such a racing second Free faults as any access to freed memory would. The pages of such
 * a segment that never held a block (a read-write heap's) are read-write from the start
 * (HM_RESERVE_WRITABLE): committing them costs no system call; once decommitted, a page is PROT_READ
 * as above.
 *
 * Size classes: 16-byte steps to 128, then four per doubling (160, 192, 224, 256, 320, ...) up to
 * 512 KiB: at most 25% internal waste (12.5% on average), 56 classes. The small ones (up to 32 KiB)
 * are carved from one 64 KiB page each; a medium one (40 KiB to 512 KiB, multiples of 8 KiB) from a
 * span of the few contiguous pages that its blocks fill exactly (40 KiB: 8 blocks in 5 pages, 512
 * KiB: 1 in 8), whose first page's record describes it and whose others point back to it.
 *
 * Invariants of a page in use (block_size != 0): its blocks are indices [first, extent) (extent is
 * its capacity; first is 0 but for the 16-byte class, whose free bits take its first 32 blocks' room,
 * see fbits); each of them is, at any time, exactly one of
 *   free: its free bit set (on the page, for its owner to hand out); never touched by the heap;
 *   binned: in its home's bin of its class (free for the program, in use for the page);
 *   live: its live bit set, the program's;
 *   in xfree: freed by a thread that does not own the page, not yet collected: its live bit still
 *     set, its second word holding the xfree tag (page.c);
 * used counts the blocks that are not free; the page is on its home's avail list when it has a free
 * block or blocks in xfree, or is the first there, else on its full list (where blocks may arrive in
 * xfree: the owner is told through its lists' xpending). No block's memory holds the heap's books
 * but one in xfree (its link and tag): handing blocks out and taking them back reads and writes the
 * bits in the segment header only, so that a cold block costs no miss until the program touches it.
 * The live bits make Free exact: one bit per 16-byte granule of the page, set while a live block
 * starts there (every block size is a multiple of 16), so a pointer is a live block iff it is
 * 16-byte aligned in a page in use, its granule's bit is set, and the block does not carry the xfree tag (looked at only while the page's xfree is not empty). Anything
 * else (interior, already freed, never allocated, wild) is HOST_E_INVALIDOPERATION and changes
 * nothing. The owner's Free touches no word of the block: it clears the bit and bins the block.
 * Free lists are encoded (next ^ key ^ slot address), so that a simple overwrite of a free block
 * does not hand out an arbitrary address: a decoded link outside its page is reported as corruption.
 *
 * Debug blocks (DebugAlloc) carry a 16-byte header before the caller's pointer: a tag derived from
 * the heap's key and the address, the site's index, the size. Sites are counted per heap.
 *
 * Locking: a single-threaded heap takes no lock: its caller owns the heap's own pages, and allocation
 * and Free take the same inline paths as a thread's (heap_internal.h) with no atomic read-modify-write.
 * A MALLOC_THREADSAFE heap gives every thread that uses it pages of its own (tcache.c): two threads
 * never get blocks of one page, so their blocks never share a cache line. A Free of a block of one of
 * the thread's pages clears its live bit and pushes it onto the thread's bin of its class; allocation
 * pops the bin and sets the bit: no lock, no atomic read-modify-write, no access to the block (whose
 * memory may be cold). Bins go to and come from the pages' free bits half a bin at a time, also
 * without a lock. A free from another thread goes onto the page's xfree stack (one CAS), and the owner
 * takes the blocks back when it runs short. The heap's mutex is taken only to get a page (adopted from
 * the heap's ownerless ones, from the empty cache, or committed anew), to give up an empty one, for
 * large and debug blocks, and by a thread that exits (its pages become ownerless). Lock order:
 * heaps_lock (tcache.c), then the heap lock, then the manager's locks (manager.h). */
#ifndef HM_HEAP_H
#define HM_HEAP_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include <hostmem/hostmem.h>

#include "../manager/reclaim.h"

#define HM_SEG_SIZE ((size_t)4 << 20)
#define HM_HPAGE_SIZE ((size_t)64 << 10)
#define HM_SEG_PAGES (HM_SEG_SIZE / HM_HPAGE_SIZE)
#define HM_SMALL_MAX ((size_t)32 << 10)  /* classes up to this fit a page */
#define HM_MEDIUM_MAX ((size_t)512 << 10) /* classes up to this take a span of pages (HM_SPAN_MAX at most) */
#define HM_SPAN_MAX 8
#define HM_HEAP_MAX_ALIGN ((size_t)1 << 40) /* the largest alignment hm_heap_alloc_aligned takes */
#define HM_NCLASS 56
#define HM_NSMALL 40 /* classes 0..39 are small (up to HM_SMALL_MAX), the rest medium */
#define HM_MIN_BLOCK 16
#define HM_LIVE_WORDS (HM_HPAGE_SIZE / HM_MIN_BLOCK / 64)
#define HM_COMMIT_AHEAD 32            /* pages a growing heap commits at once while the budget has room */
#define HM_EMPTY_DELAY_MS 100        /* an empty page stays committed this long for reuse (none when memory is short) */
#define HM_DEBUG_HDR 16
#define HM_MAX_SITES 1024
#define HM_LCACHE_N 1024                   /* freed large blocks a heap keeps committed for reuse */
#define HM_LCACHE_BYTES ((uint64_t)256 << 20) /* ... and at most this many bytes of them (and limit/8) */

/* A bin's top (hm_pagelists.top): the address of its first empty slot. */
typedef _Atomic(uintptr_t *) hm_bintop;

/* A page belongs to one set of page lists, its home: a thread cache's (the thread owns it: only that
 * thread allocates from it, frees into its free bits, and moves it between lists, all without the
 * lock) or the heap's own (the same under the heap lock; no thread owns them in a thread-safe heap,
 * and the caller, who serialises every call, owns them in a heap without HM_HEAP_THREADSAFE). Any
 * other thread that frees one of its blocks pushes the block onto the page's xfree stack (one CAS, no
 * lock), which the owner collects when it runs out of free blocks, when the stack holds a bin's worth,
 * or when the owner frees a block of the page.
 *
 * owner is the home's owner token (hm_pagelists.owner), what the slow paths compare with the
 * caller's; the fast Free reads neither, but the page's bin in the segment's row (hm_segment.fbin),
 * which is the home's (or always full). The record is 128 bytes (a
 * power of two: a page's record is found with a shift): the fields the fast paths read in its first
 * line, xfree (which only the slow paths read) in the second.
 * block_size, extent, used, has_debug, owner and xfree are atomics because Free and statistics read
 * them without the owner's knowledge; all but xfree have one writer at a time (relaxed load and
 * store). Its fast Free's bin is in the segment's row (hm_segment.fbin). */
typedef struct hm_hpage {
    /* (cache-line aligned: neighbouring pages belong to different threads, whose hot writes must not
     * share a line) */
    _Alignas(64) _Atomic uint64_t *fbits; /* its free bits, one per block index (set: free on the page):
                                        its row of the segment's free bits (a class of 32 bytes or
                                        more has at most 2048 blocks) or, for the 16-byte class, the
                                        page's own first 512 bytes (blocks 0..31 are never handed out).
                                        Written by its owner only; set up by page_new. */
    _Atomic uint32_t used;           /* blocks that are not free (live, in xfree, or in its home's bins) */
    _Atomic uint32_t extent;         /* block indices below this are blocks (its capacity once set up; 0 unused) */
    _Atomic uintptr_t owner;         /* its home's owner token: 0 while unused or ownerless */
    _Atomic(struct hm_pagelists *) home; /* the lists it belongs to; NULL while unused */
    uint32_t inv;                    /* ceil(2^32 / block_size): offset / block_size as a multiply */
    _Atomic uint32_t block_size;     /* 0: the page is not in use */
    _Atomic uint8_t has_debug;       /* a debug block was carved from it since it was last empty */
    uint8_t list;                    /* on its home's avail list (1: it has a free block or blocks in
                                        xfree, or is its class's current page), full list (2), or none (0) */
    _Atomic uint16_t cls;            /* (atomic: a racing second Free of a block of a page being made anew reads it) */
    uint8_t span;                    /* a page in use: the pages its blocks take (1; a medium class's span) */
    uint8_t back;                    /* a page inside another's span: how many pages back its head is (else 0) */
    uint16_t fscan;                  /* no free bit is set in fbits' words below this (where a refill looks first) */
    /* (above: the first cache line, what the fast paths read, written by the owner only and seldom
     * (fscan and used change once per half a bin). Below: what other threads write. xfree has a line
     * apart, so that a foreign Free's CAS does not take from the owner's cache the line every one of
     * its allocations reads.) */
    _Alignas(64) _Atomic uintptr_t xfree; /* encoded stack of blocks other threads freed, not yet collected */
    _Atomic uint32_t xcount;         /* blocks in xfree (statistics) */
    uint32_t capacity;               /* block indices that fit */
    uint32_t first;                  /* the first block index handed out (above: fbits) */
    uint32_t wake;                   /* a return of blocks to the page that leaves used at this settles it
                                        (page.c, hm_heap_settle): 0 on the avail list, most of capacity on
                                        the full list, none (UINT32_MAX) for an empty page kept as its
                                        class's only one */
    uint8_t committed;               /* the page is committed (heap lock; 2: claimed by a commit under way;
                                        3: its decommit under way, out of the empty cache) */
    uint8_t in_empty;                /* in the heap's empty cache (heap lock: a purge looks at the
                                        neighbours of a page, which other threads may own) */
    struct hm_hpage *next, *prev;    /* in its home's list, or the heap's empty cache */
    uint64_t empty_since;            /* in the empty cache: since when (ms, CLOCK_MONOTONIC_COARSE) */
} hm_hpage;
_Static_assert(sizeof(hm_hpage) == 128, "page records are 128 bytes: found with a shift");
_Static_assert(offsetof(hm_hpage, back) < 64, "the fast paths' fields share the record's first line");

/* A home's freed blocks of a small class, newest last: free pushes here and allocation pops from here,
 * touching only this and the block's live bit (never the block: its memory may be cold); blocks go
 * to and come from their pages' free bits half a bin at a time. A binned block is free for the
 * program (its live bit clear) and in use for its page (counted in used). The bin's top (its
 * lists' top[cls], &slot[n]) is written by the home's owner only (statistics read it). Both ends
 * are marked, so that neither push nor pop needs a count: the word below slot[0] is 0 (a pop of an
 * empty bin reads 0), the slots above the top are 0 (a pop clears the slot it takes) but slot[cap],
 * which holds HM_BIN_END (a push onto a full bin finds it not 0). A bin is made on its first use
 * (hm_bin_make); until then its top is HM_BIN_UNMADE, which both ends find marked (heap_internal.h). */
#define HM_BIN_N 62 /* (a bin is 512 bytes: floor, HM_BIN_N slots and the end mark at most) */
#define HM_BIN_END ((uintptr_t)1) /* never a block's address */
typedef struct hm_bin {
    uintptr_t floor;                 /* 0 */
    uintptr_t slot[HM_BIN_N + 1];    /* cap <= HM_BIN_N (fewer for big blocks: HM_BIN_BYTES) */
} hm_bin;
_Static_assert(sizeof(hm_bin) == 512, "a bin is 512 bytes");
#define HM_BIN_BYTES ((size_t)64 << 10) /* a bin holds at most about this many bytes of blocks */

/* A home's page lists by class: pages with a free block (the first is where allocation takes from),
 * and pages without one; its bins. owner: the token its pages carry (tcache.c: the owning thread's;
 * the heap's own lists: HM_OWNER_CALLER without HM_HEAP_THREADSAFE, else 0). xpending, bit c: another
 * thread freed into a full page of class c (looked at when the lists run out of blocks of c). */
typedef struct hm_pagelists {
    hm_bintop top[HM_NSMALL];        /* bin[c]'s top, &bin[c].slot[n] for n blocks (first: the
                                        allocation fast path finds it with one address computation;
                                        a page whose fbin lies in here is these lists') */
    hm_hpage *avail[HM_NCLASS];
    hm_hpage *full[HM_NCLASS];
    uintptr_t owner;
    _Atomic uint64_t xpending;
    hm_bin bin[HM_NSMALL];
} hm_pagelists;
#define HM_OWNER_CALLER ((uintptr_t)1) /* never a thread's token (those are addresses) */

typedef struct hm_segment {
    hm_hpage page[HM_SEG_PAGES];     /* page[0] is this header's own page, never used for blocks (first:
                                        a page's record is the segment's address | a shifted index) */
    _Atomic uint64_t cookie;         /* heap key ^ address: a segment header of a live heap */
    struct hm_heap *heap;
    intptr_t rw_delta;               /* two-view heaps: a block's writable alias is block + rw_delta */
    int fd;                          /* ... and the memfd behind pages 1.. (page i at (i-1) * 64 KiB) */
    uint32_t pages_in_use;           /* pages 1.. with block_size != 0 */
    uint32_t syscalls;               /* commits and decommits of its pages under way, the heap lock dropped
                                        (heap lock): the map runs one system call on a reservation at a
                                        time, so a claim looks for pages in another segment first */
    uint64_t in_use;                 /* bit i: page i has blocks or lies inside a span (heap lock; set
                                        and cleared with pages_in_use): where claim_span looks for a
                                        run of free pages, each of which it checks before it takes it */
    struct hm_segment *next;
    /* fbin[i]: where page i's owner's fast Free puts a block (hm_heap_free_fast), the top of its
     * home's bin of its class, or hm_bin_none (always full) for a medium class, a page a debug block
     * was carved from (whose pointers are not all block starts), one not in use (page 0 too), or while
     * its xfree holds blocks (stored by the Free whose push made it nonempty); never NULL. Else written
     * by the owner (hm_page_arm_fbin). A row apart from the records: a top of the caller's bins says
     * the page is the caller's (bins' tops are their lists'), so the fast Free reads no record, and
     * the row of a segment's 64 pages is 8 lines, which stay cached where the records would not. */
    _Alignas(64) _Atomic(hm_bintop *) fbin[HM_SEG_PAGES];
    /* live[i]: page i's live bits, one per 16-byte granule of the page, set while a block starting
     * there is live (heap_internal.h, hm_live_word): found from an address alone, by shifts and masks,
     * and a pointer whose bit is set is a live block's start with no division. A medium block's bit
     * lies in the row of the page of its span where it starts. Written by the page's owner only; apart
     * from the records (a record's hot fields stay one line), dense (a page of big blocks uses a few
     * bits of each word: the lines a program's frees touch stay few, and cached). */
    _Alignas(64) _Atomic uint64_t live[HM_SEG_PAGES][HM_LIVE_WORDS];
    /* free[i]: page i's free bits when its class has at most 2048 blocks (every class but the 16-byte
     * one, hm_hpage.fbits), one per block index */
    _Atomic uint64_t free[HM_SEG_PAGES][HM_LIVE_WORDS / 2];
} hm_segment;
_Static_assert(sizeof(hm_segment) <= HM_HPAGE_SIZE, "a segment's header fits its page 0");

typedef struct hm_site {
    char file[56];
    int line;
    uint32_t hash;
    uint64_t live_bytes, live_blocks, total_blocks;
} hm_site;

/* A freed large block kept committed for reuse (the heap's cache, a thread's cache). */
typedef struct hm_lblock {
    uintptr_t base;
    uint64_t size;                   /* committed (usable) bytes from base */
    uint64_t room;                   /* bytes reserved: the block may grow in place up to this */
    uint64_t freed_ms;               /* when it was freed (hm_heap_now_ms; 0: not yet stamped): a block
                                        kept longer than hm_heap_empty_delay_ms goes at the cache's next
                                        use or purge, as an empty page does */
} hm_lblock;

#define HM_LBLOCK_ROOM ((size_t)8 << 20) /* a large block reserves at least this (large.c: room to grow) */
#define HM_LBLOCK_SLACK 16 /* a cached large block serves requests down to 1/16 of its size */
/* The smallest of v[0..n) that holds bytes, up to HM_LBLOCK_SLACK times more; failing that, with
 * grow, the largest whose reservation holds bytes (committing the rest faults in less new memory
 * than a fresh block would); n if none. */
static inline unsigned hm_lblock_fit(const hm_lblock *v, unsigned n, uint64_t bytes, bool grow)
{
    unsigned best = n;
    for (unsigned i = 0; i < n; i++)
        if (v[i].size >= bytes && v[i].size / HM_LBLOCK_SLACK <= bytes && (best == n || v[i].size < v[best].size)) best = i;
    if (best < n || !grow) return best;
    for (unsigned i = 0; i < n; i++)
        if (v[i].room >= bytes && v[i].size < bytes && (best == n || v[i].size > v[best].size)) best = i;
    return best;
}

/* A large block of a two-view heap: its memfd and its writable view (heap lock). */
typedef struct hm_view {
    uintptr_t base;                  /* the block (its execute-read view) */
    uint64_t room;                   /* bytes reserved (and the memfd's size) */
    uintptr_t rw;                    /* the read-write view */
    int fd;
    struct hm_view *next;
} hm_view;

struct hm_manager;

struct hm_heap {
    /* read-only after create, read by every allocation and free: a cache line of its own, so that
     * neither the lock nor the counters below make other threads' fast paths miss */
    _Alignas(64) struct hm_manager *m;
    uint32_t flags;                  /* HM_HEAP_* */
    bool dual;                       /* executable under W^X: two views of its memory (see below) */
    bool cached;                     /* thread caches serve it: MALLOC_THREADSAFE, not dual */
    bool readable;                   /* its segments' reserved pages read as zeros (cached, no guards) */
    bool tracked;                    /* its blocks are described to Valgrind or ASan (track.h) */
    bool fast;                       /* the inline paths serve it (heap_internal.h): not dual, not tracked */
    uint32_t prot;                   /* Win32 protection of its pages */
    uint64_t key;                    /* secret for cookies, xfree links and debug tags */
    uint64_t id;                     /* unique for the process's life: tells caches a reused heap apart */
    _Atomic uint64_t fast_id;        /* what the inline paths check, one load for all they need
                                        (heap.c, running): 0 unless h is fast and m was seen running
                                        since the last stop of any manager; then id (even) if cached,
                                        its thread's cache found by it, else id | 1 (the heap's own lists) */
    uint8_t class_of[HM_SMALL_MAX / 16 + 1]; /* [ceil(size / 16)]: the class of a size up to
                                        HM_SMALL_MAX (0 counts as 1), where Alloc's inline path reads
                                        it off h, already in a register: one load for every small
                                        class (their bounds are multiples of 16), no table address */
    _Alignas(64) _Atomic uint64_t live_bytes, live_blocks, large_bytes; /* large blocks (small ones: from
                                       the pages); atomics: threads' large caches change them unlocked */
    _Alignas(64) pthread_mutex_t lock; /* with HM_HEAP_THREADSAFE; guards what follows */
    hm_pagelists own;                /* the pages no thread owns (heap lock) */
    hm_hpage *empty, *empty_tail;    /* committed pages without blocks, the most recently emptied first */
    unsigned nempty;
    hm_hpage *spans[HM_SPAN_MAX + 1], *spans_tail[HM_SPAN_MAX + 1]; /* the span cache (segment.c): emptied
                                        medium spans of each length kept whole, the newest first */
    unsigned nspan_pages;            /* pages in the span cache */
    hm_segment *segments;
    hm_site *sites;                  /* debug sites, made on the first DebugAlloc */
    uint32_t nsites;
    hm_lblock lcache[HM_LCACHE_N];   /* freed large blocks, oldest first */
    unsigned nlcache;
    uint64_t lcache_bytes;
    struct hm_tcache *caches;        /* the threads' caches of this heap (tcache.c), under the lock */
    hm_view *views;                  /* two-view heaps: their large blocks */
    uintptr_t parked;                /* freed large blocks whose release was refused (heap.c: park) */
    uint64_t parked_bytes;
    hm_view *stale;                  /* read-write views whose munmap was refused (heap.c: views_close) */
    struct hm_heap *all_next, **all_prev; /* in the list of every heap (heap.c: all_lock) */
    struct hm_reclaimer reclaimer;   /* with HM_HEAP_THREADSAFE: registered with m, so that a request
                                        refused anywhere on m takes back this heap's freed large blocks
                                        and empty pages first (heap.c: give_back) */
};

/* fork (src/preload/init.c): before fork, takes h's locks and the heaps' global ones in their order
 * (the caches' list, h, then the pools); after it, in parent and child alike, releases them. The
 * child's copies of other threads' caches stay as they were: their blocks remain allocated. */
void hm_heap_fork_prepare(hm_heap *h);
void hm_heap_fork_after(hm_heap *h);
/* The list of every heap (heap.c), a leaf lock: taken last before fork, released first after. */
void hm_heap_all_lock(bool lock);

/* A heap's small blocks by size class (the report, src/core/report.c): blocks in use (not free on
 * their pages, in other threads' frees not yet collected, or in a thread's cache), and the bytes of
 * the class's pages no block in use holds. A racy snapshot while other threads run. */
typedef struct hm_heap_class_stat {
    uint32_t block_size;
    uint64_t pages, blocks, bytes, free_bytes;
} hm_heap_class_stat;
hm_status hm_heap_class_stats(hm_heap *h, hm_heap_class_stat out[HM_NCLASS]);

#endif
