/* va.c — address space handed out elsewhere (SPEC 3.6): the runtime maps file views outside the
 * manager and tells it, so that va.limit covers them together with the manager's reservations. The
 * records live in a fixed table in the manager (no malloc). */
#include "../os/os.h"
#include "../vmap/vmap.h"
#include "manager.h"

hm_status hm_manager_va_needed(hm_manager *m, uint64_t size)
{
    uint64_t used = atomic_load_explicit(&m->acct.va_used, memory_order_relaxed);
    if (used > m->acct.va_limit || size > m->acct.va_limit - used) {
        hm_detail_set("%#lx more bytes of address space do not fit va.limit (%#lx used of %#lx)", (unsigned long)size,
                      (unsigned long)used, (unsigned long)m->acct.va_limit);
        return HM_E_OUTOFMEMORY;
    }
    return HM_OK;
}

hm_status hm_manager_va_acquired(hm_manager *m, void *start, uint64_t size)
{
    if (!start || !size) {
        hm_detail_set("AcquiredVirtualAddressSpace: a NULL start or a size of 0");
        return HM_E_INVALIDARG;
    }
    /* No mapping runs past the user address space: so the records (at most HM_VA_MAX_RECORDS of at
     * most 2^47 bytes) and the reservations never wrap va_used. */
    uintptr_t top = hm_os_init()->max_address;
    if ((uintptr_t)start > top || size > top + 1 - (uintptr_t)start) {
        hm_detail_set("AcquiredVirtualAddressSpace(%p, %#lx): the range runs past the user address space", start,
                      (unsigned long)size);
        return HM_E_INVALIDARG;
    }
    hm_status st = HM_OK;
    pthread_mutex_lock(&m->va_lock);
    for (unsigned i = 0; i < m->nva_maps; i++)
        if (m->va_maps[i].start == (uintptr_t)start) {
            hm_detail_set("AcquiredVirtualAddressSpace: %p is recorded already", start);
            st = HM_E_INVALIDARG;
        }
    if (!st && m->nva_maps == HM_VA_MAX_RECORDS) {
        hm_detail_set("AcquiredVirtualAddressSpace: at most %d mappings are recorded at once", HM_VA_MAX_RECORDS);
        st = HM_E_OUTOFMEMORY;
    }
    if (!st) { /* the mapping exists already: it is counted even past va.limit (Needs... said no) */
        m->va_maps[m->nva_maps].start = (uintptr_t)start;
        m->va_maps[m->nva_maps].size = size;
        m->nva_maps++;
        atomic_fetch_add_explicit(&m->acct.va_recorded, size, memory_order_relaxed);
        atomic_fetch_add_explicit(&m->acct.va_used, size, memory_order_relaxed);
    }
    pthread_mutex_unlock(&m->va_lock);
    return st;
}

hm_status hm_manager_va_released(hm_manager *m, void *start)
{
    hm_status st = HM_E_INVALIDARG;
    pthread_mutex_lock(&m->va_lock);
    for (unsigned i = 0; i < m->nva_maps; i++)
        if (m->va_maps[i].start == (uintptr_t)start) {
            uint64_t size = m->va_maps[i].size;
            m->va_maps[i] = m->va_maps[--m->nva_maps];
            atomic_fetch_sub_explicit(&m->acct.va_recorded, size, memory_order_relaxed);
            atomic_fetch_sub_explicit(&m->acct.va_used, size, memory_order_relaxed);
            st = HM_OK;
            break;
        }
    pthread_mutex_unlock(&m->va_lock);
    if (st) hm_detail_set("ReleasedVirtualAddressSpace: %p was never recorded", start);
    return st;
}
