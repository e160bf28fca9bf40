/* vmap_internal.h — what vmap.c shares with reset.c and query.c; nothing outside src/vmap uses it. */
#ifndef HM_VMAP_INTERNAL_H
#define HM_VMAP_INTERNAL_H

#include <pthread.h>
#include <stdbool.h>

#include "../os/os.h"
#include "rules.h"
#include "vmap.h"

#define PAGE ((uintptr_t)4096)  /* the Win32 page; hm_vmap_init refuses kernels with another size */
#define GRAN ((uintptr_t)65536) /* the allocation granularity: every allocation starts on one */

/* The writer lock: every change to the map, placement and the kernel's mappings of allocations. */
extern pthread_mutex_t hm_map_lock;

/* Totals over live allocations, kept under hm_map_lock. */
typedef struct hm_books {
    size_t allocations;
    size_t runs;
    size_t reserved;   /* bytes */
    size_t committed;  /* bytes */
} hm_books;
extern hm_books hm_book;

/* Writer side helpers (hm_map_lock held). */
/* The allocation holding addr, or NULL; waits (the lock dropped meanwhile) while it is busy. */
hm_alloc *hm_find_alloc(uintptr_t addr);
/* Whether the pages up to end (exclusive, above a's base) are a's too: what hm_find_alloc(end - 1)
 * == a says, without a second walk (allocations never overlap). */
static inline bool hm_alloc_reaches(const hm_alloc *a, uintptr_t end)
{
    uintptr_t base = atomic_load_explicit(&((hm_alloc *)a)->base, memory_order_relaxed);
    return end > base && end - base <= atomic_load_explicit(&((hm_alloc *)a)->size, memory_order_relaxed);
}
/* A system call on a without the lock: hm_alloc_unlock_busy marks a busy and drops the lock;
 * hm_alloc_relock takes it back, clears the mark and wakes whoever waits. While a is busy its record,
 * run table and kernel state are the business of that writer alone: every other writer finds a
 * through hm_find_alloc and waits, and a walk of the whole map first waits for no allocation to be
 * busy (hm_map_quiesce). Not for allocations with special pages (their trap lock nests inside the
 * map lock) or direct mappings being unmapped (the kernel could hand the range out meanwhile). */
void hm_alloc_unlock_busy(hm_alloc *a);
void hm_alloc_relock(hm_alloc *a);
void hm_map_quiesce(void);
hm_runs *hm_alloc_runs(hm_alloc *a);
/* Publishes next as a's run table. Pages it commits anew must have been admitted by the caller; the
 * charge of pages it decommits goes back to a's account here. */
void hm_swap_runs(hm_alloc *a, hm_runs *next);
int hm_restore_prot(hm_alloc *a, const hm_runs *r, uint64_t p0, uint64_t p1);
bool hm_committed_span(const hm_runs *r, uint64_t npages, uint64_t p0, uint64_t p1, uint64_t *lo, uint64_t *hi);
hm_status hm_errno_status(int err, const char *what);
/* E_FAIL after a rollback failed too, with a detail naming what (SPEC 3.4). */
hm_status hm_books_broken(const char *what);
/* Decommit in the kernel: the pages must end PROT_NONE (hm_run_kernel_prot(a, 0)) and empty. Two
 * orders, chosen per call by hm_decommit_plan_for (map lock held, a not yet busy):
 *   discard, then protect: the fastest correct sequence. The protection change then walks page
 *     tables the discard emptied, and the TLB is flushed once, not twice. But a discard cannot be
 *     undone, so this order is used only where the protection after it cannot be refused for a real
 *     reason: mprotect fails (ENOMEM: vm.max_map_count, or no memory for a mapping record) only
 *     when it must split a kernel mapping (VMA), which happens only at the range's two ends, and the
 *     plan checks from the map that neither end splits one (vmap.c, protect_splits_nothing). What
 *     is left, an injected fault or a passing want of memory, is met by trying once more, and only a
 *     second refusal is E_FAIL: the contents are gone, so no failure can say "nothing changed".
 *     Where an end lies on a's boundary, what is outside could change while the map lock is dropped
 *     (another thread commits the allocation next door, and the kernel merges its mapping with
 *     a's), so the calls are made with the lock held (_LOCKED: other writers wait for them, for
 *     the discard of every page the range holds); ends inside a only have a's own pages outside,
 *     and a is busy, so there the lock is dropped as for every other kernel decommit.
 *   protect, then discard: every failure is put back and changes nothing (E_FAIL only when the
 *     put-back fails too). For the rest: an end that may split a mapping (a range that cuts a
 *     committed run, a neighbour busy in a system call), allocations with special pages (their
 *     kernel protections are not their runs'), and the layers above's allocations (HM_AF_TAGGED: a
 *     heap counts on a refused decommit keeping its pages with their data, heap.c). */
typedef enum hm_decommit_plan {
    HM_DECOMMIT_PROTECT_FIRST,
    HM_DECOMMIT_DISCARD_FIRST,
    HM_DECOMMIT_DISCARD_FIRST_LOCKED,
} hm_decommit_plan;
hm_decommit_plan hm_decommit_plan_for(hm_alloc *a, const hm_runs *r, uint64_t p0, uint64_t p1);
/* Whether every page of [p0, p1) of a (table r) has kernel protection prot already. */
bool hm_runs_kernel_prot_is(hm_alloc *a, const hm_runs *r, uint64_t p0, uint64_t p1, int prot);
/* Makes pages [p0, p1) of a (table r) reserved in the kernel in the plan's order. A failure that
 * changed nothing is its errno's status (the protections of r put back); one that could not be
 * undone is E_FAIL. */
hm_status hm_kernel_decommit(hm_alloc *a, const hm_runs *r, uint64_t p0, uint64_t p1, hm_decommit_plan plan,
                             const char *what);
/* Retires a record and its run table. */
void hm_drop_record(hm_alloc *a);
/* Gives an allocation's address space back to the arena or the kernel; 0 or an errno. */
int hm_give_back(uintptr_t base, uint64_t bytes, uint32_t flags, hm_chunk *chunk);
extern hm_pool hm_alloc_pool;

/* MEM_RESET and MEM_RESET_UNDO of page-aligned [start, end) (reset.c; hm_map_lock held). */
hm_status hm_vmap_reset(hm_account *acct, uintptr_t start, uintptr_t end, void **out);
hm_status hm_vmap_reset_undo(hm_account *acct, uintptr_t start, uintptr_t end, void **out);

/* The account that owns a, and the status for touching another manager's allocation (SPEC 3.1). */
static inline hm_account *hm_alloc_owner(hm_alloc *a)
{
    return (hm_account *)atomic_load_explicit(&a->owner, memory_order_relaxed);
}
hm_status hm_not_owner(hm_alloc *a);
/* The kernel protection of a's pages of run attribute attr: the Linux protection of a committed run;
 * read-write for fresh ones (HM_RUN_FRESH); PROT_NONE for other reserved pages, PROT_READ in a
 * readable allocation (HM_AF_READABLE). */
static inline int hm_run_kernel_prot(hm_alloc *a, uint32_t attr)
{
    if (attr & HM_RUN_COMMIT) return hm_prot_linux(attr & HM_RUN_PROT_MASK);
    if (attr & HM_RUN_FRESH) return HM_OS_PROT_READ | HM_OS_PROT_WRITE;
    return atomic_load_explicit(&a->flags, memory_order_relaxed) & HM_AF_READABLE ? HM_OS_PROT_READ : HM_OS_PROT_NONE;
}
/* A query summary (radix.h) of one granule of an allocation: everything VirtualQuery answers for an
 * address in it, in one word. Only for allocations whose pages all share one attr (an inline runs
 * word: then one region runs to the allocation's end), without special pages (guard pages split
 * regions), of less than 4096 pages, whose owner has a qid:
 *   bit 0 valid, bit 1 committed, bits 2-12 Protect as reported, bits 13-23 AllocationProtect,
 *   bits 24-31 the owner's qid, bits 32-43 the allocation's size in pages, bits 44-51 the granule's
 *   index in the allocation (so AllocationBase = (g - index) << 16). */
#define HM_SUM_VALID      1u
#define HM_SUM_COMMIT     2u
#define HM_SUM_PROT(s)    ((uint32_t)((s) >> 2) & 0x7FFu)
#define HM_SUM_APROT(s)   ((uint32_t)((s) >> 13) & 0x7FFu)
#define HM_SUM_QID(s)     ((uint32_t)((s) >> 24) & 0xFFu)
#define HM_SUM_PAGES(s)   (((s) >> 32) & 0xFFFu)
#define HM_SUM_INDEX(s)   (((s) >> 44) & 0xFFu)
#define HM_SUM_INDEX_STEP ((uint64_t)1 << 44)
#define HM_SUM_MAX_PAGES  4095u
/* What a's summaries say, from its record as it stands: granule i's is this + i * HM_SUM_INDEX_STEP
 * (0: none). */
uint64_t hm_alloc_summary(hm_alloc *a);
/* Rewrites a's summaries from its record as it stands (map lock held; after every change of its runs
 * word, its special pages or its radix slots). */
void hm_alloc_summarize(hm_alloc *a);
/* Gives acct a qid if it has none and one is left (map lock held). */
void hm_account_name(hm_account *acct);

/* Committed pages in table r of an allocation of npages pages. */
uint64_t hm_runs_committed(const hm_runs *r, uint64_t npages);

#endif
