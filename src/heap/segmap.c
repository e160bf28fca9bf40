/* segmap.c — which heap segment holds an address, in one load (the heaps' Free and usable-size path).
 *
 * A table of one word per 4 MiB of the user address space (2^25 entries, 256 MiB of address space
 * reserved once with MAP_NORESERVE: only the table pages around live segments are ever touched).
 * Entry i holds the segment at i << 22, or 0. A segment is entered when it is made, before any block
 * of it is handed out, and removed before it is released (heap destruction), so a pointer into a
 * live segment always finds it. Anything else — large blocks, wild pointers — finds 0 and takes the
 * map's lookup. Without the table (its reservation refused), everything takes the map's lookup. */
#include <pthread.h>
#include <stdatomic.h>

#include "../os/os.h"
#include "heap_internal.h"

#define SEG_SHIFT 22
#define ENTRIES ((size_t)1 << (47 - SEG_SHIFT))

_Atomic(_Atomic uintptr_t *) hm_segmap_table; /* read inline by hm_segmap_get (heap_internal.h) */
static pthread_once_t once = PTHREAD_ONCE_INIT;

static void init(void)
{
    void *p;
    size_t bytes = ENTRIES * sizeof(uintptr_t);
    if (hm_os_reserve(NULL, bytes, 4096, &p)) return;
    if (hm_os_protect(p, bytes, HM_OS_PROT_READ | HM_OS_PROT_WRITE)) {
        (void)hm_os_unmap(p, bytes);
        return;
    }
    hm_os_name(p, bytes, "hostmem-segmap");
    atomic_store_explicit(&hm_segmap_table, (_Atomic uintptr_t *)p, memory_order_release);
}

bool hm_segmap_set(uintptr_t seg, hm_segment *s)
{
    pthread_once(&once, init);
    _Atomic uintptr_t *t = atomic_load_explicit(&hm_segmap_table, memory_order_acquire);
    if (!t) return false;
    atomic_store_explicit(&t[seg >> SEG_SHIFT], (uintptr_t)s, memory_order_release);
    return true;
}
