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

static _Atomic uintptr_t *table;
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
    table = p;
}

bool hm_segmap_set(uintptr_t seg, hm_segment *s)
{
    pthread_once(&once, init);
    if (!table) return false;
    atomic_store_explicit(&table[seg >> SEG_SHIFT], (uintptr_t)s, memory_order_release);
    return true;
}

hm_segment *hm_segmap_get(const void *p)
{
    uintptr_t a = (uintptr_t)p;
    if (!table || (a >> 47)) return NULL;
    return (hm_segment *)atomic_load_explicit(&table[a >> SEG_SHIFT], memory_order_acquire);
}
