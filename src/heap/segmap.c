/* segmap.c — whether an address lies in a live heap segment, in one load (the heaps' Free and
 * usable-size path).
 *
 * One bit per 4 MiB of the user address space (2^25 bits, 4 MiB of zero-initialised static memory:
 * only the pages around live segments are ever touched). Segments are 4 MiB aligned, so the segment
 * of an address whose bit is set is the address rounded down: the lookup needs no pointer chase, and
 * the segment header's loads do not wait for the bit's. A segment's bit is set when it is made, before
 * any block of it is handed out, and cleared before it is released (heap destruction), so a pointer
 * into a live segment always finds it. Anything else — large blocks, wild pointers — finds 0 and
 * takes the map's lookup. */
#include <stdatomic.h>

#include "heap_internal.h"

_Atomic uint64_t hm_segmap_bits[HM_SEGMAP_WORDS];

void hm_segmap_set(uintptr_t seg, bool live)
{
    size_t i = seg >> HM_SEGMAP_SHIFT;
    uint64_t bit = (uint64_t)1 << (i & 63);
    if (live) atomic_fetch_or_explicit(&hm_segmap_bits[i >> 6], bit, memory_order_release);
    else atomic_fetch_and_explicit(&hm_segmap_bits[i >> 6], ~bit, memory_order_release);
}
