/* special.h — pages whose kernel protection is not the plain Linux image of their Win32 one
 * (SPEC 2.6): guard pages, and the pages of write-watched allocations.
 *
 *   guard page (PAGE_GUARD): PROT_NONE in the kernel until its first touch; the fault handler then
 *     disarms it (the page gets its base protection) and reports a guard-page violation once.
 *   write watch, kernel mechanism (os/dirty.h: uffd-wp async + PAGEMAP_SCAN): the kernel tracks the
 *     written pages itself; nothing here changes the protections.
 *   write watch, fallback: a writable committed page not written since the last reset is read-only
 *     in the kernel; its first write faults, the handler records it and gives the page its base
 *     protection. GetWriteWatch with reset write-protects again exactly the pages it reports.
 * So a page's kernel protection is: PROT_NONE when reserved or guarded; else its base protection,
 * minus PROT_WRITE under the fallback while the page is unwritten.
 *
 * An allocation that has such pages carries a record (hm_special, a->special): per page the Linux
 * protection of its base value (0 when reserved), a guard bit, and a written bit (fallback). The
 * record's arrays live in one metadata mapping of their own (NORESERVE: untouched parts cost no
 * memory). Every operation on a range works a 4096-page block or a 64-page bitmap word at a time
 * where the pages agree, so its cost follows the pages whose state differs, not the range's size.
 *
 * Concurrency. The fault handler runs in signal context, on any thread, possibly while that thread
 * or another is inside hostmem. It takes no mutex: it takes the trap lock, a spinlock that guards
 * every record's arrays and the kernel protections of their pages. Writers (hm_map_lock held, lock
 * order: hm_map_lock, then the trap lock) and readers (queries) take it with every signal blocked on
 * their thread, and never touch a special page while holding it, so the thread holding it never
 * faults into the handler: a handler that spins waits for another thread, which makes progress. A
 * record stays in a type-stable pool; the handler trusts its arrays only after checking, under the
 * lock, that it still belongs to the allocation it found. */
#ifndef HM_SPECIAL_H
#define HM_SPECIAL_H

#include <stdbool.h>
#include <stdint.h>

#include "vmap.h"

enum { HM_WATCH_NONE = 0, HM_WATCH_KERNEL = 1, HM_WATCH_FALLBACK = 2 };
#define HM_SPECIAL_BLOCK_SHIFT 12 /* pages per bprot entry: 4096 */
#define HM_SPECIAL_MIXED 0xFFu

typedef struct hm_special {
    hm_meta_hdr hdr;
    hm_alloc *alloc;               /* the allocation it belongs to; NULL once released (trap lock) */
    uintptr_t base;
    uint64_t npages;
    uint32_t watch;                /* HM_WATCH_* */
    uint32_t guards;               /* armed guard pages */
    uint8_t *prot;                 /* per page: Linux protection of its base value, 0 when reserved;
                                      read only in blocks that bprot marks mixed */
    uint8_t *bprot;                /* per block of 4096 pages (16 MiB): the protection of all its pages,
                                      or HM_SPECIAL_MIXED (see prot[]). So that committing or
                                      decommitting a huge watched range costs a store per block, and
                                      prot[] is touched (made resident) only where protections differ */
    uint64_t *guard;               /* bit per page: PAGE_GUARD armed */
    uint64_t *written;             /* bit per page: written since the last reset (fallback only) */
    void *mem;                     /* the mapping holding the three arrays */
    size_t mem_size;
} hm_special;

/* The write-watch mechanism in force for new MEM_WRITE_WATCH allocations (probed once). */
int hm_watch_mode(void);

/* Writers: hm_map_lock held. */
/* Gives a its record (made if missing; with watch, a new write-watched allocation's, which starts
 * clean), and installs the fault handler when guard pages (guards) or the fallback need it. 0 or an
 * errno, with nothing changed. */
int hm_special_attach(hm_alloc *a, uint32_t watch, bool guards);
/* Sets the kernel protections of pages [p0, p1) of a (all committed afterwards) for base Linux
 * protection lprot, arming (guard 1) or disarming (guard 0) their guards; the written bits stay.
 * All or nothing: 0, or an errno with every page as it was. The run table is the caller's. */
int hm_special_protect(hm_alloc *a, uint64_t p0, uint64_t p1, int lprot, int guard);
/* Pages [p0, p1) were decommitted (the kernel's part is done): they forget protection, guard and
 * written state. */
void hm_special_decommit(hm_alloc *a, uint64_t p0, uint64_t p1);
/* Puts the kernel protections of pages [p0, p1) back to what the record says (a failed change). */
int hm_special_restore(hm_alloc *a, uint64_t p0, uint64_t p1);
/* a is being released: the record goes (its kernel tracking is unregistered first). */
void hm_special_detach(hm_alloc *a);
/* Whether any guard page is armed in [p0, p1). */
bool hm_special_guarded(hm_alloc *a, uint64_t p0, uint64_t p1);

/* The kernel protection page p of a must have, given lprot, the Linux protection of its run in the
 * map; -1 if the record disagrees with the run (hm_vmap_check). */
int hm_special_expected(hm_alloc *a, uint64_t p, int lprot);

/* Readers (no lock needed): the guard state of page p of a, and through *end (in: the end of the
 * run holding p; out: possibly earlier) where it stops being the same. false when a has no record. */
bool hm_special_guard_run(hm_alloc *a, uint64_t p, uint64_t *end, bool *guarded);

/* GetWriteWatch / ResetWriteWatch on [p0, p1) of a write-watched allocation (hm_map_lock held). */
int hm_special_watch_scan(hm_alloc *a, uint64_t p0, uint64_t p1, bool reset, uintptr_t *out, uint64_t max,
                          uint64_t *n);
int hm_special_watch_reset(hm_alloc *a, uint64_t p0, uint64_t p1);

/* The fault handler's policy (installed through os/trap.h). */
uint64_t hm_special_guard_hits(void);

#endif
