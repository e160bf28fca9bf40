/* watch.c — GetWriteWatch and ResetWriteWatch (SPEC 2.6): the argument rules and the range check;
 * the tracking itself is special.c's (the kernel's dirty bits, or the fallback's write faults). */
#include <pthread.h>

#include "../os/os.h"

#include "special.h"
#include "vmap_internal.h"

/* The write-watched allocation holding all of [start, end), or NULL with *st set. */
static hm_alloc *watched(hm_account *acct, uintptr_t start, uintptr_t end, const char *what, hm_status *st)
{
    hm_alloc *a = hm_find_alloc(start);
    if (a && hm_alloc_owner(a) != acct) {
        *st = hm_not_owner(a);
        return NULL;
    }
    if (!a || !hm_alloc_reaches(a, end) || !(atomic_load_explicit(&a->flags, memory_order_relaxed) & HM_AF_WATCH) ||
        !atomic_load_explicit(&a->special, memory_order_relaxed)) {
        hm_detail_set("%s: [%#lx, %#lx) is not inside one allocation reserved with MEM_WRITE_WATCH", what,
                      (unsigned long)start, (unsigned long)end);
        *st = HM_E_INVALID_PARAMETER;
        return NULL;
    }
    return a;
}

/* Page-rounded [*start, *end) of (base, size); false if it leaves the user address space. */
static bool page_range(void *base, size_t size, uintptr_t *start, uintptr_t *end)
{
    uintptr_t b = (uintptr_t)base;
    if (b > hm_os_cfg()->max_address || size > hm_os_cfg()->max_address + 1 - b) return false;
    *start = b & ~(PAGE - 1);
    *end = (b + size + PAGE - 1) & ~(PAGE - 1);
    return true;
}

hm_status hm_vmap_get_write_watch(hm_account *acct, uint32_t flags, void *base, size_t size, void **addresses,
                                  uintptr_t *count, uint32_t *granularity)
{
    hm_status st = hm_vmap_init();
    if (st) return st;
    uintptr_t start, end;
    if ((flags & ~(uint32_t)HM_WRITE_WATCH_FLAG_RESET) || !size || !page_range(base, size, &start, &end)) {
        hm_detail_set("GetWriteWatch: invalid parameter (flags %#x, size %zu)", flags, size);
        return HM_E_INVALID_PARAMETER;
    }
    if (!count) {
        hm_detail_set("GetWriteWatch: lpdwCount is NULL");
        return HM_E_NOACCESS;
    }
    if (!*count) {
        hm_detail_set("GetWriteWatch: *lpdwCount is 0");
        return HM_E_INVALID_PARAMETER;
    }
    if (!addresses || !granularity) {
        hm_detail_set("GetWriteWatch: %s is NULL", addresses ? "lpdwGranularity" : "lpAddresses");
        return HM_E_NOACCESS;
    }
    pthread_mutex_lock(&hm_map_lock);
    hm_alloc *a = watched(acct, start, end, "GetWriteWatch", &st);
    if (a) {
        uintptr_t abase = atomic_load_explicit(&a->base, memory_order_relaxed);
        uint64_t n = 0;
        int err = hm_special_watch_scan(a, (start - abase) / PAGE, (end - abase) / PAGE,
                                        flags & HM_WRITE_WATCH_FLAG_RESET, (uintptr_t *)addresses, *count, &n);
        if (err) {
            st = hm_errno_status(err, "GetWriteWatch");
        } else {
            *count = n;
            *granularity = (uint32_t)PAGE;
        }
    }
    pthread_mutex_unlock(&hm_map_lock);
    return st;
}

hm_status hm_vmap_reset_write_watch(hm_account *acct, void *base, size_t size)
{
    hm_status st = hm_vmap_init();
    if (st) return st;
    uintptr_t start, end;
    if (!size || !page_range(base, size, &start, &end)) {
        hm_detail_set("ResetWriteWatch: invalid parameter (size %zu)", size);
        return HM_E_INVALID_PARAMETER;
    }
    pthread_mutex_lock(&hm_map_lock);
    hm_alloc *a = watched(acct, start, end, "ResetWriteWatch", &st);
    if (a) {
        uintptr_t abase = atomic_load_explicit(&a->base, memory_order_relaxed);
        int err = hm_special_watch_reset(a, (start - abase) / PAGE, (end - abase) / PAGE);
        if (err) st = hm_errno_status(err, "ResetWriteWatch");
    }
    pthread_mutex_unlock(&hm_map_lock);
    return st;
}
