/* runs.h — page runs: the states and protections of one allocation's pages, one entry per run.
 *
 * A run table is an immutable (once published) array of entries in ascending page order:
 *   entry = attr << 36 | first page (page index inside the allocation, 36 bits: up to 256 TiB)
 * Entry i covers pages [first_i, first_{i+1}); the last one reaches the allocation's end. Entry 0
 * starts at page 0, and neighbours always differ in attr (the table is kept merged), so the table's
 * size is the number of distinct runs: a 256 GiB reservation with 100 committed runs has about
 * 201 entries, 1.6 KiB.
 *
 * attr = base protection (the Win32 value, 8 bits; 0 for reserved pages) | HM_RUN_COMMIT | HM_RUN_RESET.
 * Invariants: a page without HM_RUN_COMMIT has protection 0 and HM_RUN_RESET clear; in the kernel it
 * is PROT_NONE and holds no data.
 *
 * Changing pages never edits a published table: the writer builds the next table (hm_runs_apply) and
 * swaps the allocation's pointer to it, then retires the old one (meta.h says why readers are safe).
 * Tables come in power-of-two capacities, one type-stable pool per capacity. */
#ifndef HM_RUNS_H
#define HM_RUNS_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "meta.h"

#define HM_RUN_PAGE_BITS 36
#define HM_RUN_PAGE_MASK (((uint64_t)1 << HM_RUN_PAGE_BITS) - 1)
#define HM_RUN_PROT_MASK 0xFFu
#define HM_RUN_COMMIT    0x100u  /* pages are committed */
#define HM_RUN_RESET     0x200u  /* MEM_RESET hit populated pages here; MEM_RESET_UNDO must check them */
#define HM_RUN_FRESH     0x400u  /* reserved and never committed since an allocation reserved writable
                                    (HM_AF_WRITABLE) was made: read-write in the kernel already, so
                                    that committing them read-write makes no system call; a decommit
                                    or a commit takes the bit away for good (vmap_internal.h) */

typedef struct hm_runs {
    hm_meta_hdr hdr;
    _Atomic uint32_t cap;        /* entries that fit; fixed for the object's pool */
    _Atomic uint32_t n;          /* entries in use, 1..cap */
    _Atomic uint64_t entry[];
} hm_runs;

static inline uint64_t hm_run_first(uint64_t e) { return e & HM_RUN_PAGE_MASK; }
static inline uint32_t hm_run_attr(uint64_t e) { return (uint32_t)(e >> HM_RUN_PAGE_BITS); }
static inline uint64_t hm_run_make(uint64_t first, uint32_t attr) { return (uint64_t)attr << HM_RUN_PAGE_BITS | first; }

/* How hm_runs_apply changes an attr: committed pages get (attr & and_c) | or_c, the others
 * (attr & and_r) | or_r. */
typedef struct hm_run_change {
    uint32_t and_c, or_c, and_r, or_r;
} hm_run_change;

/* An allocation whose pages all share one attr (most of them: reserved only, or all committed)
 * needs no table: its record's runs word holds attr << 1 | 1 instead of a table pointer, which saves
 * a table and a cache miss on every query. */
static inline bool hm_runs_is_inline(uintptr_t w) { return w & 1u; }
static inline uintptr_t hm_runs_inline(uint32_t attr) { return (uintptr_t)attr << 1 | 1u; }
static inline uint32_t hm_runs_inline_attr(uintptr_t w) { return (uint32_t)(w >> 1); }
/* The table that results from applying ch to pages [p0, p1) of old (an allocation of npages pages).
 * old is unchanged. NULL with *err on failure. */
hm_runs *hm_runs_apply(const hm_runs *old, uint64_t npages, uint64_t p0, uint64_t p1,
                       hm_run_change ch, int *err);
void hm_runs_free(hm_runs *r);
/* Index of the entry holding page p (writer side, or a reader's validated copy). */
uint32_t hm_runs_find(const hm_runs *r, uint32_t n, uint64_t p);

#endif
