/* segment.c — a heap's segments and the pages in them: making and releasing segments, committing
 * pages for a size class (ahead, while the budget has room), the cache of empty committed pages, the
 * cache of emptied medium spans, their purge (decommit after HM_EMPTY_DELAY_MS, at once while memory
 * is short), and what a refused commit gives back first. Everything here runs under the heap lock,
 * which is dropped around commits (they may wait for memory, SPEC 3.3) and around an opportunistic
 * purge's decommits, the pages concerned marked meanwhile (hm_hpage.committed 2 and 3). */
#include <errno.h>
#include <string.h>
#include <time.h>

#include "../os/os.h"
#include "heap_internal.h"
#include "track.h"

/* Gives back a reservation of h's that nothing was committed in or handed out from, after a failed
 * step of creating a segment or a large block. The release of pages never committed makes no system
 * call that can fail, except the munmap of a mapping of its own; if that is refused, the reservation
 * stays in the map under h's tag (the books stay exact: it is reserved address space) and goes when h
 * is destroyed. */
void hm_heap_drop_reservation(hm_heap *h, void *base)
{
    (void)hm_manager_free(h->m, base, 0, HM_MEM_RELEASE); /* (a refusal keeps it recorded, as said above) */
}

/* A new segment, its header committed at level. Makes system calls and may wait for memory: the
 * heap's lock is NOT held; the caller links the segment in under it. */
static hm_status segment_new(hm_heap *h, unsigned level, hm_segment **out)
{
    void *base;
    /* Reserved pages of a thread-cached heap's segment read as zeros: a second Free racing the first
     * reads a freed block's words without the lock, and its page may be decommitted meanwhile
     * (hm_heap_small_free_unlocked looks at the live bit again afterwards). Not with guard pages (which must fault
     * on a read too), nor for the heaps whose every Free runs under the lock (no purge meanwhile).
     * Such a segment's pages that never held a block are read-write from the start (writable: no
     * system call when first committed, and so no stall of the threads faulting pages in meanwhile:
     * bench_alloc's mixed workload at two threads made 190 mprotect calls a run, 37 so); a page
     * decommitted is PROT_READ again and takes no write. */
    unsigned how = h->readable ? HM_RESERVE_READABLE | (h->prot == HM_PAGE_READWRITE ? HM_RESERVE_WRITABLE : 0)
                   : h->dual   ? HM_RESERVE_OWN
                               : 0;
    hm_status st = hm_vmap_reserve_tagged(&h->m->acct, HM_SEG_SIZE, HM_SEG_SIZE, (uintptr_t)h, how, &base);
    if (st) return st;
    size_t hdr = (sizeof(hm_segment) + 4095) & ~(size_t)4095;
    int fd = -1;
    uintptr_t rw = 0, blocks = (uintptr_t)base + HM_HPAGE_SIZE;
    if (h->dual) {
        int err = hm_views_new(blocks, HM_SEG_SIZE - HM_HPAGE_SIZE, &fd, &rw);
        if (err) {
            hm_heap_drop_reservation(h, base);
            hm_detail_set("executable heap: two views of a segment: %s", strerror(err));
            return HM_E_OUTOFMEMORY;
        }
    }
    void *b;
    st = hm_manager_alloc(h->m, level, base, hdr, HM_MEM_COMMIT, HM_PAGE_READWRITE, &b);
    if (st) {
        hm_heap_drop_reservation(h, base);
        if (h->dual) {
            hm_heap_lock(h);
            hm_views_close(h, fd, rw, HM_SEG_SIZE - HM_HPAGE_SIZE);
            hm_heap_unlock(h);
        }
        return st;
    }
    /* no poison left by whatever held these addresses before (a heap's destroy releases its large
     * blocks at once, as the map's tagged range, without looking at each) */
    if (h->tracked) hm_track_clear(base, HM_SEG_SIZE);
    hm_segment *s = base; /* fresh committed memory reads zero: every page starts unused */
    for (size_t i = 0; i < HM_SEG_PAGES; i++) atomic_store_explicit(&s->fbin[i], &hm_bin_none, memory_order_relaxed);
    atomic_store_explicit(&s->cookie, h->key ^ (uintptr_t)s, memory_order_release);
    s->heap = h;
    s->fd = fd;
    s->rw_delta = (intptr_t)rw - (intptr_t)blocks;
    *out = s;
    return HM_OK;
}

uint32_t hm_heap_empty_delay_ms = HM_EMPTY_DELAY_MS;

/* The empty cache: a list, newest first (reused first: its memory is the warmest), oldest last
 * (decommitted first). Lock held. */
void hm_heap_empty_push(hm_heap *h, hm_hpage *pg)
{
    pg->empty_since = hm_heap_now_ms();
    pg->in_empty = 1;
    hm_list_add(&h->empty, pg);
    if (!h->empty_tail) h->empty_tail = pg;
    h->nempty++;
}
static void empty_del(hm_heap *h, hm_hpage *pg)
{
    if (h->empty_tail == pg) h->empty_tail = pg->prev;
    hm_list_del(&h->empty, pg);
    pg->in_empty = 0;
    h->nempty--;
}

/* ---- the span cache ----------------------------------------------------------------------------
 * A medium class's span whose last block went stays whole and committed in the cache of its length,
 * rather than going to the empty cache page by page: the next span of that length takes it whole
 * (claim_span), where pages scattered through the empty cache (single pages take them first) would
 * seldom make a run again, so that a program churning medium blocks would commit fresh runs and
 * decommit the stranded pages later (bench_alloc's mixed workload: 593 mprotects and 110 discards a
 * run at two threads before, 66 MiB peak at one thread where mimalloc's is 58). A cached span keeps
 * what it had in the segment: its pages in in_use and pages_in_use, its tails' back, its head's span
 * (with block size 0: what tells a cached head, hm_page_span_cached), all committed = 1 and out of
 * the empty cache, and so nothing else claims them; the head is linked through next and prev. It
 * leaves whole: to a span of its length, or decommitted by the purge once it waited as long as an
 * empty page would (at once while memory is short, or for a refusal's need). Lock held throughout. */
void hm_heap_span_keep(hm_heap *h, hm_hpage *pg)
{
    unsigned k = pg->span;
    pg->empty_since = hm_heap_now_ms();
    hm_list_add(&h->spans[k], pg);
    if (!h->spans_tail[k]) h->spans_tail[k] = pg;
    h->nspan_pages += k;
}

static void span_unkeep(hm_heap *h, hm_hpage *pg)
{
    unsigned k = pg->span;
    if (h->spans_tail[k] == pg) h->spans_tail[k] = pg->prev;
    hm_list_del(&h->spans[k], pg);
    h->nspan_pages -= k;
}

/* The span's pages leave the segment's books of pages in use (which a span taken anew adds again). */
static void span_unuse(hm_hpage *pg, unsigned k)
{
    hm_seg_of(pg)->pages_in_use -= k;
    hm_seg_of(pg)->in_use &= ~hm_page_bits(hm_page_index(pg), k);
}

void hm_heap_span_dissolve(hm_hpage *pg, unsigned k)
{
    for (unsigned i = 1; i < k; i++) pg[i].back = 0;
    span_unuse(pg, k);
    pg->span = 0;
}

/* Whether pg sits in the empty cache and has waited long enough (or force). */
static inline bool purgeable(const hm_hpage *pg, bool force, uint64_t now)
{
    return pg->in_empty && (force || now - pg->empty_since >= hm_heap_empty_delay_ms);
}

/* Decommits pages [pg, pg + n) of one segment, which their caller took out of the caches and marked
 * committed = 3 (going: neither free nor cached, so no one claims them while the lock is dropped):
 * with unlock the heap lock is dropped around the call (two system calls and a TLB shootdown of
 * every other thread: no thread that wants the lock meanwhile should sleep on it). Done, they are
 * unused (committed = 0); refused, committed again (1), and the caller puts them back. The memfd
 * keeps what a shared view drops: a dual heap's pages are punched first (they hold no block, so
 * nothing is lost if the decommit is then refused: they stay committed, empty and zero), which also
 * keeps a refused punch from leaving old words under a later commit. */
static hm_status decommit_pages(hm_heap *h, hm_hpage *pg, size_t n, bool unlock)
{
    hm_segment *s = hm_seg_of(pg);
    s->syscalls++;
    if (unlock) hm_heap_unlock(h);
    int err = h->dual ? hm_os_punch(s->fd, (hm_page_index(pg) - 1) * HM_HPAGE_SIZE, n * HM_HPAGE_SIZE) : 0;
    hm_status st = err ? HM_E_OUTOFMEMORY : hm_manager_free(h->m, (void *)hm_page_addr(pg), n * HM_HPAGE_SIZE, HM_MEM_DECOMMIT);
    if (unlock) hm_heap_lock(h);
    s->syscalls--;
    if (err) hm_detail_set("heap %p: returning empty pages of a two-view heap: %s", (void *)h, strerror(err));
    for (size_t i = 0; i < n; i++) pg[i].committed = st ? 1 : 0;
    return st;
}

/* Decommits what the caches keep (lock held): the span cache's spans, the oldest of each length
 * first, one call each, then the empty pages, oldest first, each with the neighbours in its segment
 * that are due too, in one call (a thread's exit or a trim empties many adjacent pages at once);
 * what waited long enough, or all of it with force. A refused decommit leaves its pages committed and
 * cached again, as newly emptied: the books stay exact; its status is returned (trim reports it, the
 * others go on). Stops once *went (bytes decommitted, counted up) reaches need. now: the time
 * (unused with force). unlock: decommit_pages drops the lock, which only a caller that holds no page
 * or list of the heap across the call may ask for. */
static hm_status purge(hm_heap *h, bool force, uint64_t need, uint64_t now, uint64_t *went, bool unlock)
{
    if (!h->empty_tail && !h->nspan_pages) return HM_OK;
    if (atomic_load_explicit(&h->m->notify.state, memory_order_relaxed) == HM_MEMORY_LOW) force = true;
    for (unsigned k = 2; k <= HM_SPAN_MAX; k++)
        for (hm_hpage *pg; (pg = h->spans_tail[k]) && (force || now - pg->empty_since >= hm_heap_empty_delay_ms) && *went < need;) {
            span_unkeep(h, pg);
            for (unsigned i = 0; i < k; i++) pg[i].committed = 3;
            hm_status st = decommit_pages(h, pg, k, unlock);
            if (st) {
                hm_heap_span_keep(h, pg);
                return st;
            }
            hm_heap_span_dissolve(pg, k);
            *went += k * HM_HPAGE_SIZE;
        }
    while (h->empty_tail && purgeable(h->empty_tail, force, now) && *went < need) {
        hm_hpage *page = hm_seg_of(h->empty_tail)->page;
        size_t lo = hm_page_index(h->empty_tail), hi = lo + 1;
        while (lo > 1 && purgeable(&page[lo - 1], force, now)) lo--;
        while (hi < HM_SEG_PAGES && purgeable(&page[hi], force, now)) hi++;
        for (size_t i = lo; i < hi; i++) {
            empty_del(h, &page[i]);
            page[i].committed = 3;
        }
        hm_status st = decommit_pages(h, &page[lo], hi - lo, unlock);
        if (st) {
            for (size_t i = lo; i < hi; i++) hm_heap_empty_push(h, &page[i]);
            return st;
        }
        *went += (hi - lo) * HM_HPAGE_SIZE;
    }
    return HM_OK;
}

/* What waited long enough (or all, with force): freed large blocks age as empty pages do. */
static hm_status purge_due(hm_heap *h, bool force, bool unlock)
{
    uint64_t went = 0, now = hm_heap_now_ms();
    if (h->nlcache) hm_heap_lcache_age(h, now);
    return purge(h, force, UINT64_MAX, now, &went, unlock);
}

hm_status hm_heap_purge(hm_heap *h, bool force) { return purge_due(h, force, false); }

void hm_heap_purge_unlocking(hm_heap *h) { (void)purge_due(h, false, true); } /* (a refusal keeps the pages cached) */

/* (heap_internal.h) */
bool hm_heap_refused_give_back(hm_heap *h, hm_status st, uint64_t need)
{
    if (st != HM_E_COMMITMENT_LIMIT && st != HM_E_HOST_TIMEOUT) return false;
    bool any = h->cached && hm_tcache_large_drain_all(h); /* (into the heap's cache, or released) */
    /* the freed large blocks, then the empty pages however recently emptied, oldest first: what the
     * request does not need stays kept for the next ones (each block given back is faulted in again
     * when a block of its size is asked for next) */
    uint64_t went = hm_heap_lcache_release_oldest(h, need);
    if (went < need) (void)purge(h, true, need, 0, &went, false);
    return any || went;
}

/* Releases segment s (not linked any more, or about to be unlinked by the caller) and then a dual
 * heap's read-write view and memfd of it, which its header names: read before the release. A
 * refusal changes nothing. */
hm_status hm_heap_segment_release(hm_heap *h, hm_segment *s)
{
    if (h->tracked) hm_track_clear(s, HM_SEG_SIZE); /* (before: the header is read below) */
    int fd = s->fd;
    uintptr_t rw = (uintptr_t)((intptr_t)s + HM_HPAGE_SIZE + s->rw_delta);
    hm_status st = hm_manager_free(h->m, s, 0, HM_MEM_RELEASE);
    if (!st && h->dual) hm_views_close(h, fd, rw, HM_SEG_SIZE - HM_HPAGE_SIZE);
    return st;
}

/* A segment made for a page whose commit was then refused goes again, unless another thread took a
 * page of it while the lock was dropped (lock held). A refused release keeps it: empty, reusable. */
static void segment_drop(hm_heap *h, hm_segment *s)
{
    for (size_t i = 1; i < HM_SEG_PAGES; i++)
        if (s->page[i].committed || HM_BS(&s->page[i])) return;
    hm_segment **at = &h->segments;
    while (*at && *at != s) at = &(*at)->next;
    if (!*at) return;
    hm_segmap_set((uintptr_t)s, false);
    hm_segment *next = s->next;
    if (hm_heap_segment_release(h, s)) {
        hm_segmap_set((uintptr_t)s, true);
        return;
    }
    *at = next;
}

/* Heap lock held: a new segment linked into h (the lock dropped while it is made, which may wait for
 * memory; a refusal gives back what the caches keep, a segment's worth and then all, and tries again). */
static hm_status segment_add(hm_heap *h, unsigned level, hm_segment **out)
{
    hm_heap_unlock(h);
    hm_status st = segment_new(h, level, out);
    hm_heap_lock(h);
    uint64_t need;
    for (int round = 0; hm_heap_refusal_round(st, round, HM_SEG_SIZE, &need) && hm_heap_refused_give_back(h, st, need); round++) {
        hm_heap_unlock(h);
        st = segment_new(h, level, out);
        hm_heap_lock(h);
    }
    if (st) return st;
    (*out)->next = h->segments;
    h->segments = *out;
    hm_segmap_set((uintptr_t)*out, true); /* before any of its blocks is handed out */
    return HM_OK;
}

/* Heap lock held: n pages from pg committed at level (the lock dropped around the call, the pages
 * claimed by the caller meanwhile; a refusal gives back what the caches keep, as much as the pages
 * need, and tries once more; then all of it, and once more). */
static hm_status commit_pages(hm_heap *h, unsigned level, hm_hpage *pg, size_t n)
{
    void *b;
    hm_segment *s = hm_seg_of(pg);
    s->syscalls++;
    hm_heap_unlock(h);
    hm_status st = hm_manager_alloc(h->m, level, (void *)hm_page_addr(pg), n * HM_HPAGE_SIZE, HM_MEM_COMMIT, h->prot, &b);
    hm_heap_lock(h);
    uint64_t need;
    for (int round = 0; hm_heap_refusal_round(st, round, n * HM_HPAGE_SIZE, &need) && hm_heap_refused_give_back(h, st, need); round++) {
        hm_heap_unlock(h); /* once more */
        st = hm_manager_alloc(h->m, level, (void *)hm_page_addr(pg), n * HM_HPAGE_SIZE, HM_MEM_COMMIT, h->prot, &b);
        hm_heap_lock(h);
    }
    s->syscalls--;
    return st;
}

/* With room to spare in the budget (the task level's threshold twice over), memory not short and
 * no request waiting, the unused pages that follow a claim are committed in the same call and wait
 * in the empty cache: a growing heap goes to the map once per HM_COMMIT_AHEAD pages instead of once
 * per page. Where that commit is a system call (pages a writable segment's are not: segment_new), it
 * is one call, not 32, that takes the kernel's lock on the address space from every other thread's
 * page faults. How many, from next on (at most max, below page last). */
static size_t ahead(hm_heap *h, hm_hpage *next, size_t last, size_t max)
{
    hm_account *acct = &h->m->acct;
    if (atomic_load_explicit(&acct->charge, memory_order_relaxed) + 2 * HM_COMMIT_AHEAD * HM_HPAGE_SIZE >
            acct->threshold[HM_LEVEL_TASK] / 2 ||
        atomic_load_explicit(&h->m->notify.state, memory_order_relaxed) == HM_MEMORY_LOW ||
        atomic_load_explicit(&h->m->nwaiting, memory_order_relaxed))
        return 0;
    size_t n = 0, first = hm_page_index(next);
    while (n < max && first + n < last && !HM_BS(&next[n]) && !next[n].committed) n++;
    return n;
}

/* The first unused page that was never committed (below page last), or NULL; with quiet, not in a
 * segment with a system call under way. */
static hm_hpage *unused_page(hm_heap *h, size_t last, bool quiet)
{
    for (hm_segment *s = h->segments; s; s = s->next)
        for (size_t i = 1; i < last && s->pages_in_use < last - 1 && !(quiet && s->syscalls); i++) /* (full: one look) */
            if (!HM_BS(&s->page[i]) && !s->page[i].committed) return &s->page[i];
    return NULL;
}

/* A page for class cls, first on home's avail list: an empty committed one from the cache, else an unused slot committed now
 * at level, else one in a new segment. Called and returns with the heap's lock held, but drops it
 * around committing (which may wait for memory, SPEC 3.3): a claimed slot is marked committed = 2
 * meanwhile so that no other thread takes it. */
static hm_status claim_page(hm_heap *h, unsigned level, hm_hpage **out)
{
    hm_hpage *pg = h->empty;
    bool fresh = false; /* pg is the first page of a segment made by this call */
    if (pg) empty_del(h, pg);
    hm_heap_purge_unlocking(h); /* (opportunistic; pg, if any, is this call's: no one else takes it meanwhile) */
    if (!pg) {
        size_t last = h->m->opts.heap_guard ? HM_SEG_PAGES - 1 : HM_SEG_PAGES; /* the guard is never used */
        /* Not in a segment with a system call under way: one there would wait for it; a new segment
         * rather, which another thread's next claim then passes over while this one commits. If no
         * segment can be made (a budget, the address space), a busy one after all. */
        pg = unused_page(h, last, true);
        if (!pg) {
            hm_segment *s;
            hm_status st = segment_add(h, level, &s);
            if (!st) {
                fresh = true;
                pg = &s->page[1];
            } else if (!(pg = unused_page(h, last, false))) {
                return st;
            }
        }
        size_t n = 1 + ahead(h, pg + 1, last, HM_COMMIT_AHEAD - 1);
        for (size_t k = 0; k < n; k++) pg[k].committed = 2; /* claimed */
        hm_status st = commit_pages(h, level, pg, n);
        if (st) {
            for (size_t k = 0; k < n; k++) pg[k].committed = 0; /* the pages stay unused: the heap is as it was */
            if (fresh) segment_drop(h, hm_seg_of(pg));          /* ... and so does the segment made for them */
            return st;
        }
        for (size_t k = 0; k < n; k++) pg[k].committed = 1;
        for (size_t k = n; k-- > 1;) hm_heap_empty_push(h, &pg[k]);
    }
    *out = pg;
    return HM_OK;
}

/* Whether page i of s may join a span being claimed: unused, and either never committed or waiting
 * in the empty cache (not claimed by a commit under way, not inside another span). */
static inline bool span_free(const hm_segment *s, size_t i)
{
    const hm_hpage *pg = &s->page[i];
    return !HM_BS(pg) && !pg->back && (pg->committed == 0 || (pg->committed == 1 && pg->in_empty));
}

/* The first run of span free pages of s (pages 1 .. last-1), or NULL; with quiet, only one that
 * makes no system call while one on s is under way (all its pages committed, or none under way). */
static hm_hpage *run_in(hm_segment *s, unsigned span, size_t last, bool quiet)
{
    if (s->pages_in_use + span >= last) return NULL; /* (too few unused pages) */
    /* the starts of runs of span pages not in use, from in_use's bits; each page of one checked
     * (span_free: one claimed by a commit under way is not free) */
    uint64_t m = ~s->in_use & hm_page_bits(1, last - 1), run = m;
    for (unsigned k = 1; k < span; k++) run &= m >> k;
    for (; run; run &= run - 1) {
        size_t i = (size_t)__builtin_ctzll(run), k = 0;
        bool warm = true;
        for (; k < span && span_free(s, i + k); k++) warm &= s->page[i + k].committed == 1;
        if (k == span && (!quiet || warm || !s->syscalls)) return &s->page[i];
    }
    return NULL;
}

/* The first such run in the heap's segments, or NULL. */
static hm_hpage *find_run(hm_heap *h, unsigned span, size_t last, bool quiet)
{
    hm_hpage *pg = NULL;
    for (hm_segment *s = h->segments; s && !pg; s = s->next) pg = run_in(s, span, last, quiet);
    return pg;
}

/* A run of span contiguous pages for a medium class (lock held, dropped around commits): the first
 * free run of the heap's segments, else a new segment's first pages. Its empty-cache pages leave the
 * cache, its uncommitted ones are claimed (committed = 2) and committed at level, run by run. A
 * refusal puts everything back as it was, except that pages committed before it wait in the empty
 * cache (committed and charged, which is what the books say). */
static hm_status claim_span(hm_heap *h, unsigned span, unsigned level, hm_hpage **out)
{
    hm_hpage *kept = h->spans[span]; /* the newest of the span cache's of this length (its memory the warmest) */
    if (kept) {
        span_unkeep(h, kept);
        span_unuse(kept, span); /* (page_new counts them in use again) */
        *out = kept;
        return HM_OK;
    }
    hm_heap_purge_unlocking(h); /* (opportunistic, before runs are looked for) */
    size_t last = h->m->opts.heap_guard ? HM_SEG_PAGES - 1 : HM_SEG_PAGES;
    hm_segment *fresh = NULL; /* a segment made by this call */
    for (;;) {
        /* (a run that makes no system call where another is under way, else a new segment, else
         * one after all, as claim_page) */
        hm_hpage *pg = find_run(h, span, last, true);
        if (!pg) {
            hm_status st = segment_add(h, level, &fresh);
            if (!st) continue;
            if (!(pg = find_run(h, span, last, false))) return st;
        }
        uint8_t was[HM_SPAN_MAX]; /* 1: it came from the empty cache */
        for (unsigned k = 0; k < span; k++) {
            was[k] = pg[k].committed;
            if (was[k]) empty_del(h, &pg[k]);
            else pg[k].committed = 2; /* claimed */
        }
        hm_status st = HM_OK;
        for (unsigned k = 0; k < span && !st;) { /* commit each run of claimed pages */
            if (was[k]) {
                k++;
                continue;
            }
            unsigned e = k;
            while (e < span && !was[e]) e++;
            st = commit_pages(h, level, &pg[k], e - k);
            if (!st)
                for (unsigned j = k; j < e; j++) pg[j].committed = 1;
            k = e;
        }
        if (st) { /* as it was: committed pages (cached before, or committed now) wait in the empty cache */
            for (unsigned k = span; k-- > 0;) {
                if (pg[k].committed == 2) pg[k].committed = 0;
                else hm_heap_empty_push(h, &pg[k]);
            }
            if (fresh) segment_drop(h, fresh);
            return st;
        }
        *out = pg;
        return HM_OK;
    }
}

/* A page (or a medium class's span) for class cls, first on home's avail list, its owner token
 * home's. Heap lock held (dropped around commits). */
hm_status hm_heap_page_new(hm_heap *h, hm_pagelists *home, unsigned cls, unsigned level, hm_hpage **out)
{
    unsigned span = hm_heap_class_span[cls];
    hm_hpage *pg;
    hm_status st = span == 1 ? claim_page(h, level, &pg) : claim_span(h, span, level, &pg);
    if (st) return st;
    for (unsigned k = 1; k < span; k++) pg[k].back = (uint8_t)k;
    pg->span = (uint8_t)span;
    size_t bs = hm_heap_class_size(cls);
    HM_SET(pg->block_size, (uint32_t)bs);
    HM_SET(pg->cls, (uint16_t)cls);
    pg->capacity = (uint32_t)(span * HM_HPAGE_SIZE / bs);
    pg->inv = hm_heap_inverse((uint32_t)bs);
    HM_SET(pg->has_debug, 0);
    HM_SET(pg->used, 0);
    /* every block free: its free bits set from first (all words written: the row, or the page's own
     * first bytes, hold whatever they held before) */
    uint32_t cap = pg->capacity, words = (cap + 63) / 64;
    if (words <= HM_LIVE_WORDS / 2) {
        pg->fbits = hm_seg_of(pg)->free[hm_page_index(pg)];
        pg->first = 0;
    } else {
        pg->fbits = (_Atomic uint64_t *)hm_heap_wr(h, hm_page_addr(pg));
        pg->first = (uint32_t)((words * 8 + bs - 1) / bs);
    }
    for (uint32_t w = 0; w < words; w++) {
        uint32_t lo = w * 64, hi = lo + 64 > cap ? cap : lo + 64;
        if (lo < pg->first) lo = pg->first < hi ? pg->first : hi;
        uint64_t bits = hi > lo ? (hi - lo == 64 ? ~(uint64_t)0 : (((uint64_t)1 << (hi - lo)) - 1) << (lo % 64)) : 0;
        atomic_store_explicit(&pg->fbits[w], bits, memory_order_relaxed);
    }
    pg->fscan = (uint16_t)(pg->first / 64);
    HM_SET(pg->extent, cap);
    atomic_store_explicit(&pg->xfree, 0, memory_order_relaxed);
    atomic_store_explicit(&pg->xcount, 0, memory_order_relaxed);
    hm_seg_of(pg)->pages_in_use += span;
    hm_seg_of(pg)->in_use |= hm_page_bits(hm_page_index(pg), span);
    HM_SET(pg->owner, home->owner);
    hm_page_set_home(pg, home, memory_order_relaxed);
    hm_page_avail_first(home, pg);
    *out = pg;
    return HM_OK;
}

