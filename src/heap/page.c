/* page.c — the blocks of a page (or a medium class's span): its free bits, the home's bins that
 * trade with them, the blocks other threads free into it (xfree), the home's lists a page moves
 * between, and how a block goes back.
 *
 * A page's free bits, live bits and lists are its owner's (heap.h, "A page belongs to one set of
 * page lists"): the thread whose cache the home is, or the heap lock's holder for the heap's own
 * lists. Other threads only push onto xfree (CAS), after tagging the block in its second word; the
 * push that finds xfree empty then sends the owner's fast Free for the page's blocks to the slow path
 * (fbin, hm_page_arm_fbin), which looks at the tag. The order of those steps is what makes a second
 * Free exact without a lock:
 *   a foreign Free reads the tag first, then (after an acquire fence) the live bit; it is refused if
 *   the tag is there or the bit is clear;
 *   collect clears a block's live bit first, then (after a release fence) its tag;
 * so a Free that sees no tag sees the bit cleared by the collect that removed it. */
#include <string.h>

#include "heap_internal.h"
#include "track.h"

/* The wake of a page on the full list: it comes back to the avail list once an eighth of its blocks
 * (at least one) are free again, so that the allocation that finds the first page drained finds the
 * next with a run of blocks, instead of a list move on every Free into a full page and another on
 * every allocation after it. */
static inline uint32_t full_wake(const hm_hpage *pg)
{
    uint32_t k = pg->capacity / 8;
    return pg->capacity - (k ? k : 1);
}

/* A page joins an avail list: the first there no longer is its class's only one. */
static void avail_joined(hm_hpage *first, hm_hpage *pg)
{
    pg->wake = 0;
    if (first && first->wake == UINT32_MAX) first->wake = 0;
}

void hm_page_avail_first(hm_pagelists *lists, hm_hpage *pg)
{
    hm_hpage **head = &lists->avail[pg->cls];
    avail_joined(*head, pg);
    hm_list_add(head, pg);
    pg->list = 1;
}

/* Second in the list: the first is the page allocation takes from, which keeps its place. */
static void list_add_second(hm_hpage **head, hm_hpage *pg)
{
    hm_hpage *first = *head;
    avail_joined(first, pg);
    if (!first) {
        hm_list_add(head, pg);
        return;
    }
    pg->prev = first;
    pg->next = first->next;
    if (first->next) first->next->prev = pg;
    first->next = pg;
}

static inline hm_hpage **list_of(hm_hpage *pg, uint32_t which)
{
    hm_pagelists *home = atomic_load_explicit(&pg->home, memory_order_relaxed);
    return which == 1 ? &home->avail[pg->cls] : &home->full[pg->cls];
}

void hm_page_move(hm_hpage *pg, uint32_t to)
{
    if (pg->list == to) return;
    if (pg->list) hm_list_del(list_of(pg, pg->list), pg);
    pg->list = to;
    if (to == 1) avail_joined(*list_of(pg, 1), pg);
    pg->wake = to == 2 ? full_wake(pg) : 0;
    if (to) hm_list_add(list_of(pg, to), pg);
}

static hm_status corrupted(hm_heap *h, const char *what, uintptr_t at)
{
    hm_detail_set("heap %p: %s at %#lx: its metadata was overwritten", (void *)h, what, (unsigned long)at);
    hm_manager_fail(h->m); /* SPEC 3.4: books no longer trustworthy */
    return HM_E_FAIL;
}

/* Whether b may be a block of pg (a decoded xfree link is checked with this). */
static inline bool in_page(const hm_hpage *pg, uintptr_t b)
{
    uintptr_t base = hm_page_addr(pg);
    if (b < base || b >= base + pg->span * HM_HPAGE_SIZE) return false;
    uint32_t i = hm_page_block_index(pg, b - base);
    return i >= pg->first && i < HM_EXTENT(pg) && base + (uintptr_t)i * HM_BS(pg) == b;
}

/* ---- giving pages up ---------------------------------------------------------------------------- */

void hm_heap_page_retire(hm_heap *h, hm_hpage *pg)
{
    hm_page_move(pg, 0);
    hm_page_set_home(pg, NULL, memory_order_relaxed);
    HM_SET(pg->owner, 0);
    HM_SET(pg->block_size, 0);
    HM_SET(pg->extent, 0);
    pg->fbits = NULL;
    unsigned span = pg->span;
    if (h->tracked) hm_track_clear((void *)hm_page_addr(pg), span * HM_HPAGE_SIZE); /* (carved afresh next time) */
    if (span > 1 && hm_heap_may_keep(h)) { /* (not while memory is short: then the purge takes it now) */
        hm_heap_span_keep(h, pg);
        return;
    }
    hm_heap_span_dissolve(pg, span);
    /* a span's pages go to the empty cache one by one, its head last (reused first) */
    for (unsigned k = span; k-- > 0;) hm_heap_empty_push(h, &pg[k]);
}

void hm_heap_page_empty(hm_heap *h, hm_hpage *pg)
{
    hm_heap_page_retire(h, pg);
    (void)hm_heap_purge(h, false); /* (opportunistic: a refusal keeps the pages cached) */
}

/* ---- taking blocks ------------------------------------------------------------------------------ */

/* hm_heap_collect, the blocks going into bin cls of into (pg's home, a small class's bin, made now if
 * it is not yet) while it has room, the rest into pg's free bits; into NULL: all into the free bits.
 * A binned block counts as used, as one in xfree does: used goes down by those that reach the free
 * bits only. */
static bool collect(hm_heap *h, hm_hpage *pg, hm_pagelists *into, unsigned cls)
{
    if (into) hm_bin_make(into, cls);
    uintptr_t b = atomic_exchange_explicit(&pg->xfree, 0, memory_order_acquire);
    uint32_t n = 0, freed = 0, have = into ? hm_bin_n(into, cls) : 0, cap = into ? hm_bin_cap(cls) : 0;
    bool ok = true;
    while (b) {
        uintptr_t next = hm_link_get(b) ^ h->key ^ b;
        hm_set_live(b, false);
        atomic_thread_fence(memory_order_release); /* the bit before the tag (this file's comment) */
        atomic_store_explicit(hm_word1(hm_heap_wr(h, b)), 0, memory_order_relaxed);
        if (have < cap) {
            into->bin[cls].slot[have++] = b;
        } else {
            hm_page_put_free(pg, hm_page_index_of(pg, b));
            freed++;
        }
        n++;
        if (next && !in_page(pg, next)) {
            (void)corrupted(h, "cross-thread free-list link", b);
            ok = false;
            break;
        }
        b = next;
    }
    if (into) hm_bin_set_n(into, cls, have);
    atomic_fetch_sub_explicit(&pg->xcount, n, memory_order_relaxed);
    HM_SET(pg->used, atomic_load_explicit(&pg->used, memory_order_relaxed) - freed);
    if (ok) hm_page_arm_fbin(pg, atomic_load_explicit(&pg->home, memory_order_relaxed));
    return ok;
}

bool hm_heap_collect(hm_heap *h, hm_hpage *pg) { return collect(h, pg, NULL, 0); }

/* Up to max free blocks of pg (in address order, from fscan on) into out, their free bits cleared and
 * counted into used; how many in *n. Every word is checked against the page's block range and every
 * block it gives against its live bit (clear) first: a set bit that breaks either is a write over the
 * heap's books (the 16-byte class keeps its free bits in its page, where a program's overflow can
 * reach them), and no block is handed out twice. */
static hm_status take_free(hm_heap *h, hm_hpage *pg, uintptr_t *out, uint32_t max, uint32_t *n)
{
    uint32_t k = 0, w = pg->fscan, first = pg->first, extent = HM_EXTENT(pg), nw = (extent + 63) / 64, bs = HM_BS(pg);
    uintptr_t base = hm_page_addr(pg);
    hm_status st = HM_OK;
    for (; k < max && w < nw; w++) {
        uint64_t f = atomic_load_explicit(&pg->fbits[w], memory_order_relaxed);
        if (!f) continue;
        uint64_t bad = 0;
        if (w == first / 64) bad |= f & (((uint64_t)1 << (first % 64)) - 1);
        if (w == nw - 1 && extent % 64) bad |= f >> (extent % 64) << (extent % 64);
        uintptr_t wbase = base + (uintptr_t)w * 64 * bs;
        uint32_t k0 = k;
        while (!bad) {
            uintptr_t b = wbase + (uintptr_t)__builtin_ctzll(f) * bs;
            if (hm_heap_live(b)) bad = f & -f;
            out[k++] = b;
            f &= f - 1;
            if (!f || k == max) break;
        }
        if (bad) { /* (nothing of this word taken; out[] above what is taken stays 0: a bin's slots) */
            memset(out + k0, 0, (k - k0) * sizeof *out);
            k = k0;
            st = corrupted(h, "free bits", wbase + (uintptr_t)__builtin_ctzll(bad) * bs);
            break;
        }
        atomic_store_explicit(&pg->fbits[w], f, memory_order_relaxed);
        if (f) break; /* (max reached: fscan stays at this word) */
    }
    pg->fscan = (uint16_t)w;
    HM_SET(pg->used, atomic_load_explicit(&pg->used, memory_order_relaxed) + k);
    *n = k;
    return st;
}

/* One free block of pg (a medium class's: no bin), live now. */
static hm_status pop_checked(hm_heap *h, hm_hpage *pg, uintptr_t *out)
{
    uint32_t n;
    hm_status st = take_free(h, pg, out, 1, &n);
    if (st) return st;
    if (!n) return corrupted(h, "free count", hm_page_addr(pg)); /* (the caller saw one) */
    hm_set_live(*out, true);
    return HM_OK;
}

/* Up to want - n blocks from pg's free bits into bin cls of lists (live bits stay clear: binned blocks
 * are free); want is at most the bin's cap. */
static hm_status fill_bin(hm_heap *h, hm_hpage *pg, hm_pagelists *lists, unsigned cls, uint32_t want)
{
    hm_bin_make(lists, cls);
    uint32_t n = hm_bin_n(lists, cls), got;
    if (n >= want) return HM_OK;
    hm_status st = take_free(h, pg, lists->bin[cls].slot + n, want - n, &got);
    hm_bin_set_n(lists, cls, n + got);
    if (!st && !got) st = corrupted(h, "free count", hm_page_addr(pg)); /* (the caller saw one) */
    return st;
}

/* Full pages of class cls that other threads freed blocks into take them back and return to the
 * avail list (behind the first) if that gave them free blocks; with to_bin, the blocks go into
 * lists's bin of cls first, as far as it has room (a page whose every block went there stays full). */
static bool collect_full(hm_heap *h, hm_pagelists *lists, unsigned cls, bool to_bin)
{
    for (hm_hpage *pg = lists->full[cls], *next; pg; pg = next) {
        next = pg->next;
        if (!atomic_load_explicit(&pg->xfree, memory_order_relaxed)) continue;
        if (!collect(h, pg, to_bin ? lists : NULL, cls)) return false;
        if (hm_page_nfree(pg)) {
            hm_list_del(&lists->full[cls], pg);
            pg->list = 1;
            list_add_second(&lists->avail[cls], pg);
        }
    }
    return true;
}

/* Adopts an ownerless page of class cls with a free block into lists (heap lock held); false if none. */
static bool adopt(hm_heap *h, hm_pagelists *lists, unsigned cls)
{
    /* blocks of the heap's own pages may wait in the heap's own bin (a debug allocation's refill): they
     * go back to their pages first, so that no page changes hands with blocks in another home's bin
     * (whose owner would set their live bits as the page's new owner writes its own) */
    if (cls < HM_NSMALL) hm_heap_bin_flush(h, &h->own, cls, HM_BIN_N, true);
    hm_hpage *pg = h->own.avail[cls];
    if (!pg) { /* an ownerless full page that other threads freed blocks into */
        if (!collect_full(h, &h->own, cls, false)) return false; /* (not into the heap's bin: see above) */
        pg = h->own.avail[cls];
    }
    if (!pg) return false;
    hm_page_move(pg, 0);
    HM_SET(pg->owner, lists->owner);
    hm_page_set_home(pg, lists, memory_order_seq_cst); /* (hm_heap_give reads it after its push) */
    hm_page_move(pg, 1);
    return true;
}

hm_status hm_heap_small_alloc(hm_heap *h, hm_pagelists *lists, unsigned cls, unsigned level, uintptr_t *out)
{
    bool own = lists == &h->own; /* (its caller holds the heap lock) */
    uint64_t bit = (uint64_t)1 << cls;
    bool bin = cls < HM_NSMALL; /* a small class refills its bin, half of it */
    uint32_t want = bin ? hm_bin_cap(cls) / 2 : 1;
    for (;;) {
        hm_hpage *pg = lists->avail[cls];
        if (pg) {
            /* Other threads' frees of its blocks come back when it has none free, or before its free
             * bits once they make a bin's worth (twice what a refill takes): a page whose blocks
             * another thread frees then reuses them instead of walking on into its untouched tail
             * (bench_alloc's prodcons at two threads, every block freed by the other: 5.3 -> 4.4 MiB
             * peak, mimalloc's 4.3), and collects in batches (the same instructions). A small class's
             * go straight into the bin, as far as it has room, not through the free bits
             * (bench_dropin_churn threads, every block freed by another thread: 979 -> 920 M
             * instructions under cachegrind). */
            if (hm_page_nfree(pg) ? atomic_load_explicit(&pg->xcount, memory_order_relaxed) >= 2 * want
                                  : atomic_load_explicit(&pg->xfree, memory_order_relaxed) != 0) {
                if (!collect(h, pg, bin ? lists : NULL, cls)) return HM_E_FAIL;
                if (bin && hm_bin_n(lists, cls) >= want) break;
            }
            if (hm_page_nfree(pg)) {
                if (!bin) return pop_checked(h, pg, out);
                hm_status st = fill_bin(h, pg, lists, cls, want);
                if (st) return st;
                if (hm_bin_n(lists, cls) >= want) break;
                continue;
            }
            hm_page_move(pg, 2); /* out of blocks: it waits on the full list for frees */
            continue;
        }
        if (bin && hm_bin_n(lists, cls)) break; /* (enough for now) */
        if (atomic_load_explicit(&lists->xpending, memory_order_relaxed) & bit) {
            atomic_fetch_and_explicit(&lists->xpending, ~bit, memory_order_relaxed);
            if (!collect_full(h, lists, cls, bin)) return HM_E_FAIL;
            if (bin && hm_bin_n(lists, cls)) break;
            if (lists->avail[cls]) continue;
        }
        hm_status st = HM_OK;
        if (!own) hm_heap_lock(h);
        if (own) {
            if (!collect_full(h, lists, cls, false)) st = HM_E_FAIL;
            else if (!lists->avail[cls]) st = hm_heap_page_new(h, lists, cls, level, &pg);
        } else if (!adopt(h, lists, cls)) {
            st = atomic_load_explicit(&h->m->state, memory_order_relaxed) == HM_MGR_FAILED ? HM_E_FAIL
                                                                                           : hm_heap_page_new(h, lists, cls, level, &pg);
        }
        if (!own) hm_heap_unlock(h);
        if (st) return st;
    }
    *out = hm_heap_bin_take(&lists->top[cls]); /* (not empty: it has at least one) */
    return HM_OK;
}

void hm_heap_bin_flush(hm_heap *h, hm_pagelists *lists, unsigned cls, uint32_t n, bool locked)
{
    hm_bin *bin = &lists->bin[cls];
    uint32_t have = hm_bin_n(lists, cls);
    if (!have) return; /* (nothing to do; and an unmade bin stays so) */
    if (n > have) n = have;
    for (uint32_t k = 0; k < n; k++) {
        uintptr_t b = bin->slot[k];
        hm_hpage *pg = hm_page_at(b); /* (a small class's: never in a span) */
        hm_page_put_free(pg, hm_heap_block_index(b & (HM_HPAGE_SIZE - 1), pg->inv)); /* (the block is not touched) */
        uint32_t used = atomic_load_explicit(&pg->used, memory_order_relaxed) - 1;
        HM_SET(pg->used, used);
        if (used == pg->wake) {
            if (locked) hm_heap_settle_locked(h, pg);
            else hm_heap_settle(h, pg);
        }
    }
    memmove(bin->slot, bin->slot + n, (have - n) * sizeof bin->slot[0]);
    memset(bin->slot + (have - n), 0, n * sizeof bin->slot[0]);
    hm_bin_set_n(lists, cls, have - n);
}

uintptr_t hm_bin_always[2] = {0, HM_BIN_END};
hm_bintop hm_bin_none = HM_BIN_UNMADE;

void hm_pagelists_init_bins(hm_pagelists *lists)
{
    /* (the bins themselves stay untouched: a thread's cache or a heap makes only the bins of the
     * classes it uses, hm_bin_make) */
    for (unsigned cls = 0; cls < HM_NSMALL; cls++) atomic_store_explicit(&lists->top[cls], HM_BIN_UNMADE, memory_order_relaxed);
}

void hm_bin_make_slow(hm_pagelists *lists, unsigned cls)
{
    hm_bin *bin = &lists->bin[cls];
    memset(bin, 0, sizeof *bin);
    bin->slot[hm_bin_cap(cls)] = HM_BIN_END;
    atomic_store_explicit(&lists->top[cls], bin->slot, memory_order_relaxed);
}

void hm_heap_binned(const hm_pagelists *lists, uint64_t *blocks, uint64_t *bytes)
{
    for (unsigned cls = 0; cls < HM_NSMALL; cls++) {
        uint64_t n = hm_bin_n(lists, cls);
        *blocks += n;
        *bytes += n * hm_heap_class_size(cls);
    }
}

/* ---- giving blocks back ------------------------------------------------------------------------- */

/* b onto pg's xfree (a page of another home, or an ownerless one with the lock not held); HM_OK, so
 * that a Free's path ends in it as a tail call. */
static hm_status xfree_push(hm_heap *h, hm_hpage *pg, uintptr_t b)
{
    uintptr_t w = hm_heap_wr(h, b), key = h->key ^ b;
    atomic_store_explicit(hm_word1(w), hm_xfree_tag(h, b), memory_order_relaxed);
    uintptr_t old = atomic_load_explicit(&pg->xfree, memory_order_relaxed);
    do hm_link_set(w, old ^ key);
    while (!atomic_compare_exchange_weak_explicit(&pg->xfree, &old, b, memory_order_seq_cst, memory_order_relaxed));
    atomic_fetch_add_explicit(&pg->xcount, 1, memory_order_relaxed);
    if (__builtin_expect(!old, 0)) { /* the first since the owner looked: its fast Free stops taking
                 * the page's blocks (hm_page_arm_fbin) and it is told; the home read after the push,
                 * as the page may have been adopted meanwhile. Homes are type-stable (the heap, or a
                 * cache from a pool): at worst a cache now at that address looks needlessly. */
        atomic_store_explicit(hm_page_fbin(pg), &hm_bin_none, memory_order_seq_cst);
        hm_pagelists *home = atomic_load_explicit(&pg->home, memory_order_seq_cst);
        uint64_t bit = (uint64_t)1 << pg->cls;
        if (home && home != &h->own && !(atomic_load_explicit(&home->xpending, memory_order_relaxed) & bit))
            atomic_fetch_or_explicit(&home->xpending, bit, memory_order_relaxed);
    }
    return HM_OK;
}

bool hm_heap_give(hm_heap *h, hm_pagelists *mine, hm_hpage *pg, uintptr_t b)
{
    if (atomic_load_explicit(&pg->home, memory_order_relaxed) != mine) { /* another thread's page (or an ownerless one, the lock not held) */
        (void)xfree_push(h, pg, b);
        return false;
    }
    hm_set_live(b, false);
    hm_page_put_free(pg, hm_page_index_of(pg, b));
    uint32_t used = atomic_load_explicit(&pg->used, memory_order_relaxed) - 1;
    HM_SET(pg->used, used);
    hm_page_move(pg, 1);
    /* an empty page goes, unless it is its class's only page with room: a program that frees and
     * allocates around one page's worth would otherwise give it up and take it back again and again
     * (a span, not while memory is short: it holds up to 512 KiB) */
    return !used && (pg->next || pg->prev || (pg->span > 1 && !hm_heap_may_keep(h)));
}

void hm_heap_small_free(hm_heap *h, hm_hpage *pg, uintptr_t b)
{
    if (hm_heap_give(h, &h->own, pg, b)) hm_heap_page_empty(h, pg);
}

static void settle(hm_heap *h, hm_hpage *pg, bool locked)
{
    uint32_t used = atomic_load_explicit(&pg->used, memory_order_relaxed);
    if (pg->list != 1) { /* it was full: back behind the page allocation takes from, once it has room */
        if (used > full_wake(pg)) return;
        hm_pagelists *home = atomic_load_explicit(&pg->home, memory_order_relaxed);
        if (pg->list) hm_list_del(&home->full[pg->cls], pg);
        pg->list = 1;
        list_add_second(&home->avail[pg->cls], pg);
    }
    if (used) return;
    if (pg->next || pg->prev || (pg->span > 1 && !hm_heap_may_keep(h))) { /* (hm_heap_give says why) */
        if (locked) {
            hm_heap_page_empty(h, pg);
        } else { /* (the caller holds nothing of the heap's: the purge may drop the lock) */
            hm_heap_lock(h);
            hm_heap_page_retire(h, pg);
            hm_heap_purge_unlocking(h);
            hm_heap_unlock(h);
        }
    } else {
        pg->wake = UINT32_MAX; /* its class's only page with room stays; no more settling until another joins */
    }
}
void hm_heap_settle(hm_heap *h, hm_hpage *pg) { settle(h, pg, false); }
void hm_heap_settle_locked(hm_heap *h, hm_hpage *pg) { settle(h, pg, true); }

static __attribute__((noinline)) hm_status owner_free(hm_heap *h, hm_hpage *pg, uintptr_t b);
static __attribute__((noinline, cold)) hm_status already_freed(uintptr_t b)
{
    hm_detail_set("Free(%p): already freed", (void *)b);
    return HM_E_HOST_INVALIDOPERATION;
}

/* (the checks, then one tail call: neither path below needs a frame here) */
hm_status hm_heap_small_free_unlocked(hm_heap *h, hm_hpage *pg, uintptr_t b)
{
    /* Refused if in xfree already (its tag), or no longer live: the tag first, then the bit (this
     * file's comment). A second Free racing a decommit of b's emptied page reads zeros here (a
     * thread-cached heap's segments are readable while reserved) and then sees the bit clear. */
    if (atomic_load_explicit(hm_word1(b), memory_order_relaxed) == hm_xfree_tag(h, b)) return already_freed(b);
    atomic_thread_fence(memory_order_acquire);
    if (!hm_heap_live(b)) return already_freed(b);
    uintptr_t owner = HM_OWNER(pg);
    if (owner != hm_self() && owner != HM_OWNER_CALLER) return xfree_push(h, pg, b);
    return owner_free(h, pg, b);
}

/* hm_heap_small_free_unlocked of a live block of a page the caller owns. */
static hm_status owner_free(hm_heap *h, hm_hpage *pg, uintptr_t b)
{
    hm_pagelists *home = atomic_load_explicit(&pg->home, memory_order_relaxed);
    /* Blocks other threads freed into pg wait in its xfree, and while they do the owner's fast Free
     * turns every block of pg away: they are taken back now (which arms the page again), rather than
     * when an allocation runs out of pg's free blocks. b stays live meanwhile, so pg is not empty. */
    if (atomic_load_explicit(&pg->xfree, memory_order_relaxed)) {
        if (!hm_heap_collect(h, pg)) return HM_E_FAIL;
        settle(h, pg, false); /* (off the full list if that made room: used may pass its wake) */
    }
    if (pg->cls < HM_NSMALL) { /* into the bin, half of it flushed when full */
        unsigned cls = pg->cls;
        hm_bin_make(home, cls);
        /* (a late push's mark over an empty xfree: armed again) */
        if (atomic_load_explicit(hm_page_fbin(pg), memory_order_relaxed) == &hm_bin_none
            && !atomic_load_explicit(&pg->xfree, memory_order_relaxed))
            hm_page_arm_fbin(pg, home);
        if (hm_bin_n(home, cls) >= hm_bin_cap(cls)) hm_heap_bin_flush(h, home, cls, hm_bin_cap(cls) / 2, false);
        uint32_t n = hm_bin_n(home, cls);
        hm_set_live(b, false);
        home->bin[cls].slot[n] = b;
        hm_bin_set_n(home, cls, n + 1);
        return HM_OK;
    }
    hm_set_live(b, false);
    hm_page_put_free(pg, hm_page_index_of(pg, b));
    uint32_t used = atomic_load_explicit(&pg->used, memory_order_relaxed) - 1;
    HM_SET(pg->used, used);
    if (used == pg->wake) hm_heap_settle(h, pg);
    return HM_OK;
}

void hm_heap_trim_lists(hm_heap *h, hm_pagelists *lists)
{
    for (unsigned cls = 0; cls < HM_NSMALL; cls++) hm_heap_bin_flush(h, lists, cls, HM_BIN_N, true);
    for (unsigned cls = 0; cls < HM_NCLASS; cls++)
        for (hm_hpage *pg = lists->avail[cls], *next; pg; pg = next) {
            next = pg->next;
            if (atomic_load_explicit(&pg->xfree, memory_order_relaxed) && !hm_heap_collect(h, pg)) return;
            if (!atomic_load_explicit(&pg->used, memory_order_relaxed)) hm_heap_page_retire(h, pg);
        }
}

void hm_heap_disown(hm_heap *h, hm_pagelists *lists)
{
    for (unsigned cls = 0; cls < HM_NSMALL; cls++) hm_heap_bin_flush(h, lists, cls, HM_BIN_N, true);
    for (hm_segment *s = h->segments; s; s = s->next)
        for (size_t i = 1; i < HM_SEG_PAGES; i++) {
            hm_hpage *pg = &s->page[i];
            if (atomic_load_explicit(&pg->home, memory_order_relaxed) != lists) continue;
            if (atomic_load_explicit(&pg->xfree, memory_order_relaxed)) (void)hm_heap_collect(h, pg);
            uint32_t to = pg->list;
            hm_page_move(pg, 0);
            HM_SET(pg->owner, h->own.owner);
            hm_page_set_home(pg, &h->own, memory_order_relaxed);
            if (!atomic_load_explicit(&pg->used, memory_order_relaxed)) {
                pg->list = 0;
                hm_heap_page_retire(h, pg);
            } else {
                hm_page_move(pg, hm_page_nfree(pg) ? 1 : to ? to : 2);
            }
        }
    (void)hm_heap_purge(h, false); /* (opportunistic: a refusal keeps the pages cached) */
}
