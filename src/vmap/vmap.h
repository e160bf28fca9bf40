/* vmap.h — the address-space map: every allocation hostmem made, its pages' states and protections,
 * and the Win32 operations on them (SPEC 2.2-2.5).
 *
 * Ownership of facts: the map owns page states and protections; the kernel's mappings are kept equal
 * to it (reserved page = PROT_NONE and empty; committed page = the Linux protection of its Win32
 * one). The arena owns placement, the radix tree the address -> allocation index.
 *
 * Concurrency: one writer lock (map_lock in vmap.c) serialises every change; system calls run under
 * it, so a failure can be rolled back before anyone sees it, with one exception: the mprotect and
 * madvise of a commit, decommit or release of a plain allocation (no special pages) run with the lock
 * dropped and the record marked busy (vmap_internal.h), so that two threads changing two allocations
 * do not wait for each other's system calls. Queries take no lock at all. Most are answered by the
 * granule's query summary alone (radix.h: one word, one version, read with one load); the rest:
 *   1. the radix tree gives the allocation record for the address (atomic loads only);
 *   2. the reader notes the record's gen and its run-table pointer, and the table's gen;
 *   3. it reads what it needs (relaxed atomic loads), then re-reads the three after an acquire fence;
 *   4. if any changed, or a gen was odd, the record or table was retired or rebuilt meanwhile and it
 *      starts over from step 1.
 * A writer never modifies a reachable record's fields or a published table: it builds a new table
 * and swaps one pointer, or unlinks a record from the radix tree before retiring it. So a reader
 * retries only when a writer has made progress, never waits for one (a writer suspended anywhere
 * leaves only complete, published versions reachable), and all memory it may read stays mapped
 * (meta.h: type-stable pools). */
#ifndef HM_VMAP_H
#define HM_VMAP_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <hostmem/hostmem.h>

#include "account.h"
#include "arena.h"
#include "meta.h"
#include "runs.h"

/* allocation flags */
#define HM_AF_DIRECT   0x1u  /* own kernel mapping: munmap on release */
#define HM_AF_LARGE    0x2u  /* MEM_LARGE_PAGES */
#define HM_AF_HUGETLB  0x4u  /* backed by hugetlb pages (else transparent huge pages) */
#define HM_AF_PHYSICAL 0x8u  /* MEM_PHYSICAL reservation: cannot be committed */
#define HM_AF_MIXED    0x10u /* fixed address across chunks and mappings of its own (arena.h) */
#define HM_AF_TAGGED   0x20u /* made by a layer above for its own use (a heap's segment or large block) */
#define HM_AF_WATCH    0x40u /* MEM_WRITE_WATCH (special.h) */
#define HM_AF_READABLE 0x80u /* its reserved pages read as zeros (PROT_READ) instead of faulting: a heap's
                                segments, where a racing second Free may read a page just decommitted */
#define HM_AF_WRITABLE 0x100u /* its pages start HM_RUN_FRESH (a heap's segments: HM_RESERVE_WRITABLE) */

/* One allocation. base, size, alloc_protect, flags and owner never change while the record is
 * published; runs is swapped by writers. chunk and committed are the writer's alone. */
typedef struct hm_alloc {
    hm_meta_hdr hdr;
    _Atomic uintptr_t base;          /* 64 KiB aligned */
    _Atomic uint64_t size;           /* bytes, a multiple of the page size */
    _Atomic uint32_t alloc_protect;  /* flProtect at allocation, modifiers included */
    _Atomic uint32_t flags;          /* HM_AF_* */
    _Atomic uintptr_t runs;          /* hm_runs *: the current run table, or an inline attr (runs.h) */
    _Atomic uintptr_t owner;         /* hm_account *: the books of the manager that made it */
    _Atomic uintptr_t tag;           /* with HM_AF_TAGGED: what the layer above keeps there */
    _Atomic uintptr_t special;       /* hm_special *: guard and write-watch state (special.h), or 0 */
    hm_chunk *chunk;                 /* chunk it was carved from; NULL for direct mappings */
    _Atomic uint64_t committed;      /* committed pages (written under the map lock; lookups read it) */
    bool busy;                       /* a writer's system call on it runs without the map lock */
} hm_alloc;

hm_status hm_vmap_init(void);
/* The operations, on behalf of the manager whose books are acct (never NULL): an address in another
 * account's allocation is HM_E_HOST_NOT_OWNER. level: the critical level of pages committed anew. */
hm_status hm_vmap_alloc(hm_account *acct, unsigned level, void *addr, size_t size, uint32_t type, uint32_t prot,
                        void **base);
/* An address in no allocation of any manager is HM_E_HOST_INVALIDOPERATION (SPEC 3.1). */
hm_status hm_vmap_free(hm_account *acct, void *addr, size_t size, uint32_t type);
hm_status hm_vmap_protect(hm_account *acct, void *addr, size_t size, uint32_t prot, uint32_t *old);
/* pre: hm_vmap_init succeeded (acct's manager's creation made sure). Lock-free, never waits. */
hm_status hm_vmap_query(hm_account *acct, const void *addr, hm_region *out);
hm_status hm_vmap_walk(hm_account *acct, int (*fn)(const hm_region *r, void *arg), void *arg);
/* A reservation for a layer above (heaps): at a multiple of align (a power of two, 64 KiB to
 * 32 MiB), marked HM_AF_TAGGED with tag. Reserved only; commit with hm_vmap_alloc. how: */
#define HM_RESERVE_READABLE 0x1u /* reserved pages read as zeros (HM_AF_READABLE) */
#define HM_RESERVE_OWN      0x2u /* a kernel mapping of its own (HM_AF_DIRECT): its release is one munmap,
                                    which also removes whatever the layer mapped over it (a shared view) */
#define HM_RESERVE_WRITABLE 0x4u /* its pages stay read-write in the kernel until first committed
                                    (HM_RUN_FRESH, HM_AF_WRITABLE): committing them read-write then
                                    costs no system call. Once committed, a page is as any other:
                                    decommitted, it is PROT_READ (with READABLE) or PROT_NONE again.
                                    For a layer whose pages no one else writes (a heap's segments). */
hm_status hm_vmap_reserve_tagged(hm_account *acct, size_t size, size_t align, uintptr_t tag, unsigned how, void **base);
/* GetWriteWatch and ResetWriteWatch (SPEC 2.6): argument errors as the SPEC lists them. */
hm_status hm_vmap_get_write_watch(hm_account *acct, uint32_t flags, void *base, size_t size, void **addresses,
                                  uintptr_t *count, uint32_t *granularity);
hm_status hm_vmap_reset_write_watch(hm_account *acct, void *base, size_t size);

/* What the map knows of the allocation holding p, read without a lock (the query protocol). */
typedef struct hm_vmap_info {
    uintptr_t base;
    uint64_t size;
    uint32_t flags;
    uintptr_t tag;
    hm_account *owner;
    uint64_t committed; /* bytes committed in it (a heap's large block: its usable bytes from base) */
} hm_vmap_info;
/* false if p is in no allocation. */
bool hm_vmap_lookup(const void *p, hm_vmap_info *out);

/* Releases every allocation of acct (manager destruction), or those whose tag & mask == tag. */
hm_status hm_vmap_release_all(hm_account *acct);
hm_status hm_vmap_release_tagged(hm_account *acct, uintptr_t mask, uintptr_t tag);
void hm_vmap_stats(hm_vm_stats *out);
/* Verifies the map's invariants (check.c), and with with_kernel that the kernel's mappings agree.
 * HM_OK, or HM_E_FAIL with hm_detail_get() naming the first broken one. */
hm_status hm_vmap_check(bool with_kernel);
void hm_vmap_reset_peak(void);

/* Thread-local detail of the last failure ("mprotect: Cannot allocate memory ..."), for people. */
void hm_detail_set(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
const char *hm_detail_get(void);

/* fork: the map's lock, taken once no allocation is busy in a system call (vmap.c), and released. */
void hm_vmap_fork_lock(void);
void hm_vmap_fork_unlock(void);

#endif
