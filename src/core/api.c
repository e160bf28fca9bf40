/* api.c — the public hm_* functions (hostmem.h): thin wrappers that check out-pointers, resolve the
 * manager (NULL: the process default), then call the map with the manager's books. */
#include <stdarg.h>
#include <stdio.h>

#include <hostmem/hostmem.h>

#include "../os/os.h"
#include "../manager/manager.h"
#include "../vmap/special.h"
#include "../vmap/vmap.h"

hm_status hm_init(void) { return hm_vmap_init(); }

void hm_get_system_info(hm_system_info *out)
{
    if (!out) return;
    const hm_os_config *c = hm_os_init();
    out->page_size = (uint32_t)c->page_size;
    out->allocation_granularity = (uint32_t)c->granularity;
    out->min_address = c->min_address;
    out->max_address = c->max_address;
    out->processors = c->processors;
    out->large_page_minimum = c->huge_page_size;
}

size_t hm_large_page_minimum(void) { return hm_os_init()->huge_page_size; }

hm_status hm_virtual_alloc_level(hm_manager *m, void *addr, size_t size, uint32_t type, uint32_t protect,
                                 hm_level level, void **base)
{
    if (!base) return HM_E_POINTER;
    *base = NULL;
    hm_status st = HM_OK;
    if (!(m = hm_manager_resolve(m, &st))) return st;
    if ((unsigned)level > HM_LEVEL_PROCESS) {
        hm_detail_set("critical level %d: not one of task (0), appdomain (1), process (2)", (int)level);
        return HM_E_INVALIDARG;
    }
    if ((st = hm_manager_enter(m))) return st;
    return hm_manager_leave(m, hm_manager_alloc(m, (unsigned)level, addr, size, type, protect, base));
}

hm_status hm_virtual_alloc(hm_manager *m, void *addr, size_t size, uint32_t type, uint32_t protect, void **base)
{
    if (!base) return HM_E_POINTER;
    *base = NULL;
    hm_status st = HM_OK;
    if (!(m = hm_manager_resolve(m, &st))) return st;
    if ((st = hm_manager_enter(m))) return st;
    return hm_manager_leave(m, hm_manager_alloc(m, m->opts.win32_level, addr, size, type, protect, base));
}

hm_status hm_virtual_free(hm_manager *m, void *addr, size_t size, uint32_t free_type)
{
    hm_status st = HM_OK;
    if (!(m = hm_manager_resolve(m, &st))) return st;
    if ((st = hm_manager_enter(m))) return st;
    st = hm_manager_leave(m, hm_manager_free(m, addr, size, free_type));
    return st == HM_E_HOST_INVALIDOPERATION ? HM_E_INVALID_ADDRESS : st; /* Win32: in no allocation is 487 */
}

hm_status hm_virtual_protect(hm_manager *m, void *addr, size_t size, uint32_t protect, uint32_t *old)
{
    hm_status st = HM_OK;
    if (!(m = hm_manager_resolve(m, &st))) return st;
    if ((st = hm_manager_enter(m))) return st;
    return hm_manager_leave(m, hm_vmap_protect(&m->acct, addr, size, protect, old));
}

hm_status hm_virtual_query(hm_manager *m, const void *addr, hm_region *out)
{
    if (!out) return HM_E_POINTER;
    hm_status st = HM_OK;
    if (!(m = hm_manager_resolve(m, &st))) return st;
    if ((st = hm_manager_enter(m))) return st;
    return hm_vmap_query(&m->acct, addr, out);
}

hm_status hm_get_write_watch(hm_manager *m, uint32_t flags, void *base, size_t size, void **addresses, uintptr_t *count,
                             uint32_t *granularity)
{
    hm_status st = HM_OK;
    if (!(m = hm_manager_resolve(m, &st))) return st;
    if ((st = hm_manager_enter(m))) return st;
    return hm_manager_leave(m, hm_vmap_get_write_watch(&m->acct, flags, base, size, addresses, count, granularity));
}

hm_status hm_reset_write_watch(hm_manager *m, void *base, size_t size)
{
    hm_status st = HM_OK;
    if (!(m = hm_manager_resolve(m, &st))) return st;
    if ((st = hm_manager_enter(m))) return st;
    return hm_manager_leave(m, hm_vmap_reset_write_watch(&m->acct, base, size));
}

uint64_t hm_guard_violations(void) { return hm_special_guard_hits(); }

hm_status hm_reserve(hm_manager *m, size_t size, void **base)
{
    return hm_virtual_alloc(m, NULL, size, HM_MEM_RESERVE, HM_PAGE_NOACCESS, base);
}

hm_status hm_commit(hm_manager *m, void *addr, size_t size, uint32_t protect)
{
    void *base;
    return hm_virtual_alloc(m, addr, size, HM_MEM_COMMIT, protect, &base);
}

hm_status hm_decommit(hm_manager *m, void *addr, size_t size)
{
    return hm_virtual_free(m, addr, size, HM_MEM_DECOMMIT);
}

hm_status hm_release(hm_manager *m, void *base) { return hm_virtual_free(m, base, 0, HM_MEM_RELEASE); }

void hm_vm_get_stats(hm_vm_stats *out)
{
    if (out) hm_vmap_stats(out);
}

void hm_vm_reset_peak(void) { hm_vmap_reset_peak(); }

hm_status hm_vm_walk(hm_manager *m, int (*fn)(const hm_region *r, void *arg), void *arg)
{
    if (!fn) return HM_E_POINTER;
    hm_status st = HM_OK;
    if (!(m = hm_manager_resolve(m, &st))) return st;
    if ((st = hm_manager_enter(m))) return st;
    return hm_vmap_walk(&m->acct, fn, arg);
}

const char *hm_last_detail(void) { return hm_detail_get(); }

void hm_set_last_detail(const char *fmt, ...)
{
    char buf[256] = "";
    if (fmt) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(buf, sizeof buf, fmt, ap);
        va_end(ap);
    }
    hm_detail_set("%s", buf);
}
