/* segmap.c — whether an address lies in a live heap segment, in one load (the heaps' Free and
 * usable-size path).
 *
 * One byte per 4 MiB of the user address space (2^25 bytes, 32 MiB of zero-initialised static memory,
 * address space only: only the pages around live segments are ever touched; a byte, not a bit,
 * because the lookup is then a load and a compare, no shifts and masks). Segments are 4 MiB aligned, so the segment
 * of an address whose bit is set is the address rounded down: the lookup needs no pointer chase, and
 * the segment header's loads do not wait for the bit's. A segment's bit is set when it is made, before
 * any block of it is handed out, and cleared before it is released (heap destruction), so a pointer
 * into a live segment always finds it. Anything else — large blocks, wild pointers — finds 0 and
 * takes the map's lookup. */
#include <stdatomic.h>

#include "heap_internal.h"

_Atomic uint8_t hm_segmap_bytes[HM_SEGMAP_BYTES];

void hm_segmap_set(uintptr_t seg, bool live)
{
    atomic_store_explicit(&hm_segmap_bytes[seg >> HM_SEGMAP_SHIFT], live, memory_order_release);
}
