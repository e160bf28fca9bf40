/* vmap.c — what the writer side of the address-space map shares: the lock, the books, records and
 * run-table swaps, kernel decommit and rollback, failure details, start-up checks, statistics.
 * The operations live in alloc.c, free.c, protect.c and reset.c (VirtualQuery: query.c).
 * Every operation has the same shape (after Wine's allocate_virtual_memory):
 *   validate and round (no lock, no state), then under map_lock: find the allocation, check the
 *   state rules, build the new run table, make the system calls, and only when they all succeeded
 *   publish the new table. A failed call rolls back what the kernel did, so the map and the kernel
 *   agree after every failure (all-or-nothing, SPEC 2.7.3). Rule tags [R2.x] point at SPEC.md.
 */
#define _GNU_SOURCE
#include "vmap.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "../os/os.h"
#include "radix.h"
#include "rules.h"
#include "special.h"
#include "vmap_internal.h"


pthread_mutex_t hm_map_lock = PTHREAD_ADAPTIVE_MUTEX_INITIALIZER_NP;
hm_books hm_book;
hm_pool hm_alloc_pool = HM_POOL_INIT("allocation", sizeof(hm_alloc), 64 * 1024);

/* ---- failure detail --------------------------------------------------------------------------- */

static _Thread_local char detail[256];
_Thread_local bool hm_account_unwinding __attribute__((tls_model("initial-exec")));

void hm_detail_set(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(detail, sizeof detail, fmt, ap);
    va_end(ap);
}

const char *hm_detail_get(void) { return detail; }

hm_status hm_errno_status(int err, const char *what)
{
    const hm_os_config *c = hm_os_cfg();
    if (err == ENOMEM && c->max_map_count > 0)
        hm_detail_set("%s: %s (the kernel may have reached vm.max_map_count = %ld mappings)", what,
                      strerror(err), c->max_map_count);
    else hm_detail_set("%s: %s", what, strerror(err));
    switch (err) {
    case EEXIST: return HM_E_INVALID_ADDRESS;
    case EINVAL: return HM_E_INVALID_PARAMETER;
    default: return HM_E_NOT_ENOUGH_MEMORY;
    }
}

/* A rollback failed too: the map no longer matches the kernel (SPEC 3.4: E_FAIL). */
hm_status hm_books_broken(const char *what)
{
    char first[sizeof detail];
    memcpy(first, detail, sizeof first);
    hm_detail_set("%s failed and could not be undone (%.160s): the map no longer matches the kernel", what, first);
    return HM_E_FAIL;
}

/* ---- init ------------------------------------------------------------------------------------ */

static hm_status init_status = 1; /* 1: not yet run */
static pthread_once_t init_once = PTHREAD_ONCE_INIT;

static void init_run(void)
{
    const hm_os_config *c = hm_os_init();
    if (c->page_size != 4096) {
        fprintf(stderr, "hostmem: this kernel uses %zu-byte pages; hostmem implements Windows' 4 KiB "
                        "pages exactly and refuses to run with any other page size.\n", c->page_size);
        init_status = HM_E_NOT_SUPPORTED;
        return;
    }
    init_status = HM_OK;
}

hm_status hm_vmap_init(void)
{
    pthread_once(&init_once, init_run);
    if (init_status != HM_OK)
        hm_detail_set("hostmem needs 4096-byte pages; this kernel uses %zu", hm_os_cfg()->page_size);
    return init_status;
}

/* ---- records ----------------------------------------------------------------------------------- */

static pthread_cond_t map_idle = PTHREAD_COND_INITIALIZER; /* a busy allocation became idle */
static unsigned nbusy;                                       /* busy allocations (map lock) */

hm_alloc *hm_find_alloc(uintptr_t addr)
{
    for (;;) {
        hm_alloc *a = hm_radix_lookup(addr >> 16);
        if (!a) return NULL;
        uintptr_t base = atomic_load_explicit(&a->base, memory_order_relaxed);
        uint64_t size = atomic_load_explicit(&a->size, memory_order_relaxed);
        if (addr < base || addr - base >= size) return NULL;
        if (!a->busy) return a;
        pthread_cond_wait(&map_idle, &hm_map_lock); /* (a may be gone when it wakes: look again) */
    }
}

void hm_alloc_unlock_busy(hm_alloc *a)
{
    a->busy = true;
    nbusy++;
    pthread_mutex_unlock(&hm_map_lock);
}

void hm_alloc_relock(hm_alloc *a)
{
    pthread_mutex_lock(&hm_map_lock);
    a->busy = false;
    nbusy--;
    pthread_cond_broadcast(&map_idle);
}

void hm_map_quiesce(void)
{
    while (nbusy) pthread_cond_wait(&map_idle, &hm_map_lock);
}

void hm_vmap_fork_lock(void)
{
    pthread_mutex_lock(&hm_map_lock);
    hm_map_quiesce(); /* no allocation busy in a system call: the child's map is whole */
}

void hm_vmap_fork_unlock(void) { pthread_mutex_unlock(&hm_map_lock); }

/* A one-run table stands inline in the record (vmap.h); writers see it through this scratch table,
 * valid until the calling thread's next call. Per thread: a writer keeps using it across a system
 * call made without the map lock (hm_alloc_unlock_busy), while other writers run. */
static _Thread_local _Alignas(16) unsigned char scratch_mem[sizeof(hm_runs) + sizeof(uint64_t)]
    __attribute__((tls_model("initial-exec")));

hm_runs *hm_alloc_runs(hm_alloc *a)
{
    uintptr_t w = atomic_load_explicit(&a->runs, memory_order_relaxed);
    if (!hm_runs_is_inline(w)) return (hm_runs *)w;
    hm_runs *s = (hm_runs *)scratch_mem;
    atomic_store_explicit(&s->cap, 1, memory_order_relaxed);
    atomic_store_explicit(&s->n, 1, memory_order_relaxed);
    atomic_store_explicit(&s->entry[0], hm_run_make(0, hm_runs_inline_attr(w)), memory_order_relaxed);
    return s;
}

static void free_runs_word(uintptr_t w)
{
    if (!hm_runs_is_inline(w)) hm_runs_free((hm_runs *)w);
}

hm_status hm_not_owner(hm_alloc *a)
{
    hm_detail_set("%#lx belongs to an allocation of another manager",
                  (unsigned long)atomic_load_explicit(&a->base, memory_order_relaxed));
    return HM_E_HOST_NOT_OWNER;
}

uint64_t hm_runs_committed(const hm_runs *r, uint64_t npages)
{
    uint32_t n = atomic_load_explicit(&((hm_runs *)r)->n, memory_order_relaxed);
    uint64_t total = 0;
    for (uint32_t i = 0; i < n; i++) {
        uint64_t e = atomic_load_explicit(&((hm_runs *)r)->entry[i], memory_order_relaxed);
        uint64_t b = i + 1 < n ? hm_run_first(atomic_load_explicit(&((hm_runs *)r)->entry[i + 1], memory_order_relaxed)) : npages;
        if (hm_run_attr(e) & HM_RUN_COMMIT) total += b - hm_run_first(e);
    }
    return total;
}

void hm_swap_runs(hm_alloc *a, hm_runs *next)
{
    uintptr_t old_word = atomic_load_explicit(&a->runs, memory_order_relaxed);
    hm_runs *old = hm_alloc_runs(a);
    uint64_t npages = atomic_load_explicit(&a->size, memory_order_relaxed) / PAGE;
    uint64_t c = hm_runs_committed(next, npages);
    uint64_t was = atomic_load_explicit(&a->committed, memory_order_relaxed);
    if (c < was) hm_account_uncharge(hm_alloc_owner(a), (was - c) * PAGE);
    hm_book.committed = hm_book.committed - was * PAGE + c * PAGE;
    atomic_store_explicit(&a->committed, c, memory_order_relaxed);
    hm_book.runs += atomic_load_explicit(&next->n, memory_order_relaxed);
    hm_book.runs -= atomic_load_explicit(&old->n, memory_order_relaxed);
    uintptr_t word = (uintptr_t)next;
    if (atomic_load_explicit(&next->n, memory_order_relaxed) == 1) { /* goes inline */
        word = hm_runs_inline(hm_run_attr(atomic_load_explicit(&next->entry[0], memory_order_relaxed)));
        hm_runs_free(next);
    }
    atomic_store_explicit(&a->runs, word, memory_order_release);
    hm_alloc_summarize(a);
    free_runs_word(old_word);
}

uint64_t hm_alloc_summary(hm_alloc *a)
{
    uint64_t size = atomic_load_explicit(&a->size, memory_order_relaxed);
    uintptr_t w = atomic_load_explicit(&a->runs, memory_order_relaxed);
    uint32_t aprot = atomic_load_explicit(&a->alloc_protect, memory_order_relaxed);
    uint32_t qid = atomic_load_explicit(&hm_alloc_owner(a)->qid, memory_order_relaxed);
    if (size / PAGE > HM_SUM_MAX_PAGES || !qid || !hm_runs_is_inline(w) || aprot > 0x7FFu ||
        atomic_load_explicit(&a->special, memory_order_relaxed))
        return 0;
    uint32_t attr = hm_runs_inline_attr(w);
    uint32_t prot = attr & HM_RUN_COMMIT ? hm_prot_report(attr & HM_RUN_PROT_MASK, aprot) : 0;
    if (prot > 0x7FFu) return 0;
    return HM_SUM_VALID | (attr & HM_RUN_COMMIT ? HM_SUM_COMMIT : 0) | (uint64_t)prot << 2 | (uint64_t)aprot << 13 |
           (uint64_t)qid << 24 | (size / PAGE) << 32;
}

void hm_alloc_summarize(hm_alloc *a)
{
    uint64_t size = atomic_load_explicit(&a->size, memory_order_relaxed);
    /* never any summary for these (hm_radix_set left them 0): no walk over their granules */
    if (size / PAGE > HM_SUM_MAX_PAGES || !atomic_load_explicit(&hm_alloc_owner(a)->qid, memory_order_relaxed)) return;
    uintptr_t g0 = atomic_load_explicit(&a->base, memory_order_relaxed) >> 16;
    hm_radix_summarize(g0, g0 + (size + GRAN - 1) / GRAN, a, hm_alloc_summary(a), HM_SUM_INDEX_STEP);
}

void hm_account_name(hm_account *acct)
{
    static uint32_t next = 1; /* (map lock) qids are never reused: a live account keeps its own */
    if (!atomic_load_explicit(&acct->qid, memory_order_relaxed) && next <= 0xFFu)
        atomic_store_explicit(&acct->qid, next++, memory_order_relaxed);
}

/* Puts the kernel's protections over pages [p0, p1) back to what table r says. */
int hm_restore_prot(hm_alloc *a, const hm_runs *r, uint64_t p0, uint64_t p1)
{
    if (atomic_load_explicit(&a->special, memory_order_relaxed)) return hm_special_restore(a, p0, p1);
    uintptr_t base = atomic_load_explicit(&a->base, memory_order_relaxed);
    uint32_t n = atomic_load_explicit(&((hm_runs *)r)->n, memory_order_relaxed);
    int first_err = 0;
    for (uint32_t i = hm_runs_find(r, n, p0); i < n; i++) {
        uint64_t e = atomic_load_explicit(&((hm_runs *)r)->entry[i], memory_order_relaxed);
        uint64_t lo = hm_run_first(e);
        if (lo >= p1) break;
        uint64_t hi = i + 1 < n ? hm_run_first(atomic_load_explicit(&((hm_runs *)r)->entry[i + 1], memory_order_relaxed)) : p1;
        if (lo < p0) lo = p0;
        if (hi > p1) hi = p1;
        int err = hm_os_protect((void *)(base + lo * PAGE), (hi - lo) * PAGE, hm_run_kernel_prot(a, hm_run_attr(e)));
        if (err && !first_err) first_err = err;
    }
    return first_err;
}

/* The committed pages of [p0, p1) in table r lie in [*lo, *hi); false when there are none. */
bool hm_committed_span(const hm_runs *r, uint64_t npages, uint64_t p0, uint64_t p1, uint64_t *lo, uint64_t *hi)
{
    uint32_t n = atomic_load_explicit(&((hm_runs *)r)->n, memory_order_relaxed);
    bool any = false;
    for (uint32_t i = hm_runs_find(r, n, p0); i < n; i++) {
        uint64_t e = atomic_load_explicit(&((hm_runs *)r)->entry[i], memory_order_relaxed);
        uint64_t a = hm_run_first(e);
        if (a >= p1) break;
        uint64_t b = i + 1 < n ? hm_run_first(atomic_load_explicit(&((hm_runs *)r)->entry[i + 1], memory_order_relaxed)) : npages;
        if (!(hm_run_attr(e) & HM_RUN_COMMIT)) continue;
        if (a < p0) a = p0;
        if (b > p1) b = p1;
        if (!any) *lo = a;
        *hi = b;
        any = true;
    }
    return any;
}

/* ---- kernel decommit ------------------------------------------------------------------------ */

/* The kernel protection of the page at index i (0 or the last) of allocation b, read from its runs
 * word as it stands (b is not busy: only a writer holding the map lock changes it), or -1 when the
 * map cannot tell (b has special pages, whose kernel protections differ from their runs). */
static int edge_prot(hm_alloc *b, bool last)
{
    if (b->busy || atomic_load_explicit(&b->special, memory_order_relaxed)) return -1;
    uintptr_t w = atomic_load_explicit(&b->runs, memory_order_relaxed);
    uint32_t attr;
    if (hm_runs_is_inline(w)) attr = hm_runs_inline_attr(w);
    else {
        hm_runs *t = (hm_runs *)w; /* (not hm_alloc_runs: the caller's table may be the scratch one) */
        uint32_t n = atomic_load_explicit(&t->n, memory_order_relaxed);
        attr = hm_run_attr(atomic_load_explicit(&t->entry[last ? n - 1 : 0], memory_order_relaxed));
    }
    return hm_run_kernel_prot(b, attr);
}

/* The kernel protection of the byte q just outside allocation a, as far as the map knows: a page of
 * another allocation (-1 while that one is busy: its protection may be changing), else PROT_NONE:
 * free chunk space is PROT_NONE and empty (arena.h), and a mapping that is not hostmem's is taken
 * for one that never shares a's kernel mapping. Where the kernel names anonymous mappings it never
 * merges one with hostmem's ("hostmem": the names differ). Where it does not, it still keeps two
 * neighbours apart unless their flags agree exactly (private, anonymous, MAP_NORESERVE, the same
 * protection) and one of them was never touched (two that were have different anon_vmas). The one
 * case left, someone else's untouched MAP_NORESERVE mapping of a's protection right against a,
 * costs a split, which fails only at vm.max_map_count; hm_kernel_decommit then says E_FAIL, never
 * something false. */
static int outside_prot(uintptr_t q, bool before)
{
    hm_alloc *b = hm_radix_lookup(q >> 16);
    if (b) {
        uintptr_t bb = atomic_load_explicit(&b->base, memory_order_relaxed);
        uint64_t bs = atomic_load_explicit(&b->size, memory_order_relaxed);
        if (q - bb < bs) return edge_prot(b, before);
    }
    return HM_OS_PROT_NONE;
}

/* Whether mprotect(target) of pages [lo, hi) of a (table r) cannot need a new kernel mapping (VMA).
 * mprotect fails for want of memory (ENOMEM, vm.max_map_count above all) only when it must split a
 * mapping, and it splits only at the range's two ends, where the page just inside changes protection
 * and the page just outside shares its mapping. Pages of different protections never share one, so
 * an end is safe when the page inside already has the target protection or the page outside has
 * another protection than the page inside. */
static bool protect_splits_nothing(hm_alloc *a, const hm_runs *r, uint64_t lo, uint64_t hi, int target)
{
    uintptr_t base = atomic_load_explicit(&a->base, memory_order_relaxed);
    uint64_t npages = atomic_load_explicit(&a->size, memory_order_relaxed) / PAGE;
    uint32_t n = atomic_load_explicit(&((hm_runs *)r)->n, memory_order_relaxed);
    for (int end = 0; end < 2; end++) {
        uint64_t in_page = end ? hi - 1 : lo;
        uint32_t i = hm_runs_find(r, n, in_page);
        int in = hm_run_kernel_prot(a, hm_run_attr(atomic_load_explicit(&((hm_runs *)r)->entry[i], memory_order_relaxed)));
        if (in == target) continue;
        int out;
        if (end ? hi < npages : lo > 0) {
            uint64_t out_page = end ? hi : lo - 1;
            uint32_t j = hm_runs_find(r, n, out_page);
            out = hm_run_kernel_prot(a, hm_run_attr(atomic_load_explicit(&((hm_runs *)r)->entry[j], memory_order_relaxed)));
        } else {
            out = outside_prot(end ? base + npages * PAGE : base - 1, !end);
        }
        if (out < 0 || out == in) return false;
    }
    return true;
}

bool hm_runs_kernel_prot_is(hm_alloc *a, const hm_runs *r, uint64_t p0, uint64_t p1, int prot)
{
    uint32_t n = atomic_load_explicit(&((hm_runs *)r)->n, memory_order_relaxed);
    for (uint32_t i = hm_runs_find(r, n, p0); i < n; i++) {
        uint64_t e = atomic_load_explicit(&((hm_runs *)r)->entry[i], memory_order_relaxed);
        if (hm_run_first(e) >= p1) break;
        if (hm_run_kernel_prot(a, hm_run_attr(e)) != prot) return false;
    }
    return true;
}

hm_decommit_plan hm_decommit_plan_for(hm_alloc *a, const hm_runs *r, uint64_t p0, uint64_t p1)
{
    uint32_t flags = atomic_load_explicit(&a->flags, memory_order_relaxed);
    if (atomic_load_explicit(&a->special, memory_order_relaxed) || (flags & HM_AF_TAGGED))
        return HM_DECOMMIT_PROTECT_FIRST;
    if (!protect_splits_nothing(a, r, p0, p1, hm_run_kernel_prot(a, 0))) return HM_DECOMMIT_PROTECT_FIRST;
    uint64_t npages = atomic_load_explicit(&a->size, memory_order_relaxed) / PAGE;
    return p0 > 0 && p1 < npages ? HM_DECOMMIT_DISCARD_FIRST : HM_DECOMMIT_DISCARD_FIRST_LOCKED;
}

/* Makes pages [p0, p1) reserved in the kernel: hm_run_kernel_prot(a, 0) and emptied, in the order the
 * plan says (vmap_internal.h has the reasoning).
 *   Protect first: a refused protection is put back from table r, a refused discard too (the data is
 *   still there): nothing changed. Only a failed put-back is E_FAIL.
 *   Discard first: a refused discard did nothing (MADV_DONTNEED on hostmem's own mapping fails only
 *   before it starts, on a locked mapping; an injected fault makes no call at all). The protection
 *   after it is tried twice. Refused twice, the pages' contents are gone and they stay accessible:
 *   E_FAIL (SPEC 3.4: a call failed half-way and cannot be rolled back), the map left as it was and
 *   the protections of r put back where they can be, so that the kernel agrees with it but for the
 *   lost contents. */
hm_status hm_kernel_decommit(hm_alloc *a, const hm_runs *r, uint64_t p0, uint64_t p1, hm_decommit_plan plan,
                             const char *what)
{
    uintptr_t base = atomic_load_explicit(&a->base, memory_order_relaxed);
    void *p = (void *)(base + p0 * PAGE);
    size_t len = (p1 - p0) * PAGE;
    int prot = hm_run_kernel_prot(a, 0), err;
    if (plan != HM_DECOMMIT_PROTECT_FIRST) {
        if ((err = hm_os_discard(p, len))) return hm_errno_status(err, what);
        if (!hm_os_protect(p, len, prot)) return HM_OK;
        if (!(err = hm_os_protect(p, len, prot))) return HM_OK;
        char why[160];
        hm_errno_status(err, what);
        snprintf(why, sizeof why, "%.150s", hm_detail_get());
        (void)hm_restore_prot(a, r, p0, p1);
        hm_detail_set("mprotect refused twice after the pages were discarded: %s", why);
        return hm_books_broken(what);
    }
    err = hm_os_protect(p, len, prot);
    if (!err) err = hm_os_discard(p, len);
    if (!err) return HM_OK;
    hm_status st = hm_errno_status(err, what);
    if (hm_restore_prot(a, r, p0, p1)) return hm_books_broken(what);
    return st;
}

void hm_drop_record(hm_alloc *a)
{
    hm_special_detach(a);
    free_runs_word(atomic_load_explicit(&a->runs, memory_order_relaxed));
    hm_pool_free(&hm_alloc_pool, a);
}

/* Gives an allocation's address space back, however it was placed. */
int hm_give_back(uintptr_t base, uint64_t bytes, uint32_t flags, hm_chunk *chunk)
{
    if (chunk) {
        hm_arena_unplace(chunk, base, (bytes + GRAN - 1) / GRAN);
        return 0;
    }
    if (flags & HM_AF_MIXED) return hm_arena_unclaim(base, bytes);
    return hm_os_unmap((void *)base, bytes);
}

/* ---- introspection ---------------------------------------------------------------------------- */

void hm_vmap_stats(hm_vm_stats *out)
{
    pthread_mutex_lock(&hm_map_lock);
    out->allocations = hm_book.allocations;
    out->runs = hm_book.runs;
    out->reserved_bytes = hm_book.reserved;
    out->committed_bytes = hm_book.committed;
    out->metadata_bytes = atomic_load(&hm_meta.live_bytes);
    out->metadata_peak = atomic_load(&hm_meta.peak_bytes);
    out->metadata_mapped = atomic_load(&hm_meta.mapped_bytes);
    out->arena_bytes = hm_arena_bytes();
    pthread_mutex_unlock(&hm_map_lock);
}

void hm_vmap_reset_peak(void)
{
    pthread_mutex_lock(&hm_map_lock);
    atomic_store(&hm_meta.peak_bytes, atomic_load(&hm_meta.live_bytes));
    pthread_mutex_unlock(&hm_map_lock);
}
