/* radix.h — the address index: which allocation holds a 64 KiB granule, readable without locks.
 *
 * A four-level radix tree over granule numbers (address >> 16, 31 bits for a 47-bit user space):
 * 4 + 9 + 9 + 9 bits. Each slot is one atomic word:
 *   0          nothing of any allocation lies in the slot's span;
 *   node | 1   a child node covers the span (it may have become empty);
 *   alloc      one allocation covers the slot's whole span (at the leaves: the granule belongs to it,
 *              possibly only its first pages: the rest of a granule after an allocation's end is free).
 * An allocation that covers a whole span is stored once at that level, so a 256 GiB reservation
 * costs a handful of slots, not four million. At most one allocation touches any granule (Win32
 * starts every allocation on a granule boundary), so a slot never needs two owners.
 *
 * Nodes are never freed or moved: once a child pointer is in a slot it stays, which is what lets a
 * reader descend without any lock and without reclamation. Each node also keeps a bitmap of its
 * non-empty slots so that "the next allocation above this address" (free-region queries) skips empty
 * spans word by word.
 *
 * Writers (hm_radix_prepare, hm_radix_set) run under the map's writer lock. Readers
 * (hm_radix_lookup, hm_radix_next) may run at any time and see each slot either before or after a
 * concurrent write; the allocation records they return are validated by their generation count. */
#ifndef HM_RADIX_H
#define HM_RADIX_H

#include <stdint.h>

struct hm_alloc;

#define HM_GRANULE_SHIFT 16
#define HM_GRANULE ((uintptr_t)1 << HM_GRANULE_SHIFT)

/* The allocation holding granule g, or NULL. Lock-free. */
struct hm_alloc *hm_radix_lookup(uint64_t g);
/* The first allocation met at a granule >= g, or NULL. Lock-free; under concurrent changes it may
 * miss an allocation being created or return one being released (the caller validates). */
struct hm_alloc *hm_radix_next(uint64_t g);
/* Query summaries: each leaf slot has a second word, beside the slots of its node rather than in
 * the allocation's record, that answers VirtualQuery for an address in that granule by itself (the
 * format is the map's, vmap_internal.h; 0 means "no summary: read the record"). One word read with
 * one load is one consistent version whatever writers do meanwhile, so a query that finds a
 * summary needs neither the record, nor its generation checks, nor a second cache miss. Writers
 * (map lock) keep them equal to the records: hm_radix_set zeroes a leaf's summary before its slot
 * changes hands, and the map rewrites an allocation's summaries after every change of what a query
 * reports (hm_alloc_summarize). */
/* The summary of granule g, or 0. Lock-free. */
uint64_t hm_radix_summary(uint64_t g);
/* Sets the summary of every leaf granule g of [g0, g1) whose slot holds a to s0 + (g - g0) * step
 * (0 when s0 is 0); granules stored whole above the leaves have none. */
void hm_radix_summarize(uint64_t g0, uint64_t g1, struct hm_alloc *a, uint64_t s0, uint64_t step);
/* Creates the nodes that granules [g0, g1) need, so that hm_radix_set on that range cannot fail.
 * 0 or an errno. */
int hm_radix_prepare(uint64_t g0, uint64_t g1);
/* Points granules [g0, g1) at a (or clears them with a == NULL). pre: hm_radix_prepare succeeded on
 * the range, and for a != NULL every granule in it is empty. */
void hm_radix_set(uint64_t g0, uint64_t g1, struct hm_alloc *a);

#endif
