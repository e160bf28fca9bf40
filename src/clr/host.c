/* host.c — the CLR hosting surface (clrhost.h, SPEC 1): an IHostControl that hands out one
 * IHostMemoryManager over an hm_manager. Each method is one call into the manager; statuses become
 * HRESULTs through hm_status_hresult (memory refusals are E_OUTOFMEMORY, SPEC 1.1).
 *
 * Lifetime: the host control holds one reference on the memory manager object; the hm_manager is
 * destroyed when the memory manager object's count reaches zero, i.e. when neither the runtime nor
 * the host control holds it any more. Registered ICLRMemoryNotificationCallback objects are AddRef'd
 * and released when the manager is destroyed. Objects come from a metadata pool, never from malloc. */
#include <hostmem/clrhost.h>

#include <pthread.h>
#include <stdatomic.h>
#include <string.h>

#include "../manager/manager.h"
#include "../vmap/meta.h"
#include "../vmap/vmap.h"

const IID IID_IUnknown = {0x00000000, 0x0000, 0x0000, {0xC0, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x46}};
const IID IID_IHostControl = {0x02CA073C, 0x7079, 0x4860, {0x88, 0x0A, 0xC2, 0xF7, 0xA4, 0x49, 0xC9, 0x91}};
const IID IID_IHostMemoryManager = {0x7BC698D1, 0xF9E3, 0x4460, {0x9C, 0xDE, 0xD0, 0x42, 0x48, 0xE9, 0xFA, 0x25}};
const IID IID_IHostMalloc = {0x1831991C, 0xCC53, 0x4A31, {0xB2, 0x18, 0x04, 0xE9, 0x10, 0x44, 0x64, 0x79}};
const IID IID_ICLRMemoryNotificationCallback = {0x47EB8E57, 0x0846, 0x4546,
                                                {0xAF, 0x76, 0x6F, 0x42, 0xFC, 0xFC, 0x26, 0x49}};

#define MAX_CALLBACKS HM_NOTIFY_MAX_CALLBACKS

typedef struct memory_manager {
    IHostMemoryManager iface;                        /* first: the COM pointer is the object */
    _Atomic ULONG refs;
    hm_manager *m;
    ICLRMemoryNotificationCallback *callbacks[MAX_CALLBACKS]; /* AddRef'd; released at destroy */
    _Atomic unsigned ncallbacks;
} memory_manager;

typedef struct host_control {
    IHostControl iface;
    _Atomic ULONG refs;
    memory_manager *mm;                              /* one reference held */
} host_control;

typedef struct host_malloc {
    IHostMalloc iface;
    _Atomic ULONG refs;
    hm_heap *heap;
    memory_manager *mm;                              /* one reference held: the manager outlives its heaps */
} host_malloc;

typedef union host_object {
    memory_manager mm;
    host_control hc;
    host_malloc hmalloc;
} host_object;

static pthread_mutex_t pool_lock = PTHREAD_MUTEX_INITIALIZER;
static hm_pool object_pool = HM_POOL_INIT("com-object", sizeof(hm_meta_hdr) + sizeof(host_object), 64 * 1024);

static void *object_new(void)
{
    int err = 0;
    pthread_mutex_lock(&pool_lock);
    hm_meta_hdr *h = hm_pool_alloc(&object_pool, &err);
    pthread_mutex_unlock(&pool_lock);
    if (!h) return NULL;
    void *o = h + 1;
    memset(o, 0, sizeof(host_object));
    return o;
}

static void object_free(void *o)
{
    pthread_mutex_lock(&pool_lock);
    hm_pool_free(&object_pool, (hm_meta_hdr *)o - 1);
    pthread_mutex_unlock(&pool_lock);
}

static int iid_eq(REFIID a, const IID *b) { return a && memcmp(a, b, sizeof(IID)) == 0; }

static HRESULT hr_of(hm_status st) { return (HRESULT)hm_status_hresult(st); }

/* ---- IHostMemoryManager ------------------------------------------------------------------------- */

static memory_manager *mm_of(IHostMemoryManager *This) { return (memory_manager *)This; }

static HRESULT STDMETHODCALLTYPE mm_QueryInterface(IHostMemoryManager *This, REFIID riid, void **ppv)
{
    if (!ppv) return E_POINTER;
    *ppv = NULL;
    if (!iid_eq(riid, &IID_IUnknown) && !iid_eq(riid, &IID_IHostMemoryManager)) return E_NOINTERFACE;
    atomic_fetch_add(&mm_of(This)->refs, 1);
    *ppv = This;
    return S_OK;
}

static ULONG STDMETHODCALLTYPE mm_AddRef(IHostMemoryManager *This) { return atomic_fetch_add(&mm_of(This)->refs, 1) + 1; }

static ULONG STDMETHODCALLTYPE mm_Release(IHostMemoryManager *This)
{
    memory_manager *o = mm_of(This);
    ULONG left = atomic_fetch_sub(&o->refs, 1) - 1;
    if (left) return left;
    (void)hm_manager_destroy(o->m); /* stops notifications before the callbacks go */
    unsigned n = atomic_load(&o->ncallbacks);
    for (unsigned i = 0; i < n; i++) ICLRMemoryNotificationCallback_Release(o->callbacks[i]);
    object_free(o);
    return 0;
}

/* Runs a manager call after the lifecycle gate (SPEC 3.4), and fails the manager on E_FAIL. Every
 * method clears its out-parameters before it (SPEC 1.1: an out-pointer is NULL whenever a call fails,
 * a shut-down manager's refusal included). */
#define ENTER(o)                                  \
    do {                                          \
        hm_status gate_ = hm_manager_enter((o)->m); \
        if (gate_) return hr_of(gate_);           \
    } while (0)

/* ---- IHostMalloc (SPEC 4) ------------------------------------------------------------------------ */

static host_malloc *hmalloc_of(IHostMalloc *This) { return (host_malloc *)This; }

static HRESULT STDMETHODCALLTYPE hmalloc_QueryInterface(IHostMalloc *This, REFIID riid, void **ppv)
{
    if (!ppv) return E_POINTER;
    *ppv = NULL;
    if (!iid_eq(riid, &IID_IUnknown) && !iid_eq(riid, &IID_IHostMalloc)) return E_NOINTERFACE;
    atomic_fetch_add(&hmalloc_of(This)->refs, 1);
    *ppv = This;
    return S_OK;
}

static ULONG STDMETHODCALLTYPE hmalloc_AddRef(IHostMalloc *This) { return atomic_fetch_add(&hmalloc_of(This)->refs, 1) + 1; }

static ULONG STDMETHODCALLTYPE hmalloc_Release(IHostMalloc *This)
{
    host_malloc *o = hmalloc_of(This);
    ULONG left = atomic_fetch_sub(&o->refs, 1) - 1;
    if (left) return left;
    (void)hm_heap_destroy(o->heap); /* every block at once; the charge goes back */
    memory_manager *mm = o->mm;
    object_free(o);
    IHostMemoryManager_Release(&mm->iface);
    return 0;
}

static HRESULT STDMETHODCALLTYPE hmalloc_Alloc(IHostMalloc *This, SIZE_T cbSize, EMemoryCriticalLevel eCriticalLevel,
                                               void **ppMem)
{
    if (!ppMem) return E_POINTER;
    *ppMem = NULL;
    return hr_of(hm_heap_alloc(hmalloc_of(This)->heap, cbSize, (hm_level)eCriticalLevel, ppMem));
}

static HRESULT STDMETHODCALLTYPE hmalloc_DebugAlloc(IHostMalloc *This, SIZE_T cbSize, EMemoryCriticalLevel eCriticalLevel,
                                                    char *pszFileName, int iLineNo, void **ppMem)
{
    if (!ppMem) return E_POINTER;
    *ppMem = NULL;
    return hr_of(hm_heap_alloc_debug(hmalloc_of(This)->heap, cbSize, (hm_level)eCriticalLevel, pszFileName, iLineNo, ppMem));
}

static HRESULT STDMETHODCALLTYPE hmalloc_Free(IHostMalloc *This, void *pMem)
{
    return hr_of(hm_heap_free(hmalloc_of(This)->heap, pMem)); /* NULL is S_OK (SPEC 1.1) */
}

static const IHostMallocVtbl hmalloc_vtbl = {
    hmalloc_QueryInterface, hmalloc_AddRef, hmalloc_Release, hmalloc_Alloc, hmalloc_DebugAlloc, hmalloc_Free,
};

static HRESULT STDMETHODCALLTYPE mm_CreateMalloc(IHostMemoryManager *This, DWORD dwMallocType, IHostMalloc **ppMalloc)
{
    memory_manager *o = mm_of(This);
    if (!ppMalloc) return E_POINTER;
    *ppMalloc = NULL;
    ENTER(o);
    if (dwMallocType & ~(DWORD)(MALLOC_THREADSAFE | MALLOC_EXECUTABLE)) return E_INVALIDARG;
    host_malloc *hmo = object_new();
    if (!hmo) return E_OUTOFMEMORY;
    hm_status st = hm_heap_create(o->m, dwMallocType, &hmo->heap);
    if (st) {
        object_free(hmo);
        return hr_of(st);
    }
    hmo->iface.lpVtbl = &hmalloc_vtbl;
    atomic_init(&hmo->refs, 1);
    hmo->mm = o;
    IHostMemoryManager_AddRef(This);
    *ppMalloc = &hmo->iface;
    return S_OK;
}

static HRESULT STDMETHODCALLTYPE mm_VirtualAlloc(IHostMemoryManager *This, void *pAddress, SIZE_T dwSize,
                                                 DWORD flAllocationType, DWORD flProtect,
                                                 EMemoryCriticalLevel eCriticalLevel, void **ppMem)
{
    memory_manager *o = mm_of(This);
    if (!ppMem) return E_POINTER;
    *ppMem = NULL;
    ENTER(o);
    if ((unsigned)eCriticalLevel > eProcessCritical) return E_INVALIDARG;
    hm_status st = hm_manager_alloc(o->m, (unsigned)eCriticalLevel, pAddress, dwSize, flAllocationType, flProtect, ppMem);
    return hr_of(hm_manager_leave(o->m, st));
}

static HRESULT STDMETHODCALLTYPE mm_VirtualFree(IHostMemoryManager *This, LPVOID lpAddress, SIZE_T dwSize,
                                                DWORD dwFreeType)
{
    memory_manager *o = mm_of(This);
    ENTER(o);
    return hr_of(hm_manager_leave(o->m, hm_manager_free(o->m, lpAddress, dwSize, dwFreeType)));
}

static HRESULT STDMETHODCALLTYPE mm_VirtualQuery(IHostMemoryManager *This, void *lpAddress, void *lpBuffer,
                                                 SIZE_T dwLength, SIZE_T *pResult)
{
    memory_manager *o = mm_of(This);
    if (pResult) *pResult = 0;
    if (!pResult || !lpBuffer) return E_POINTER;
    ENTER(o);
    if (dwLength < sizeof(MEMORY_BASIC_INFORMATION)) return HRESULT_FROM_WIN32(ERROR_BAD_LENGTH);
    hm_region r;
    hm_status st = hm_vmap_query(&o->m->acct, lpAddress, &r); /* SPEC 1.2: never blocks */
    if (st) return hr_of(st);
    memcpy(lpBuffer, &r, sizeof r);
    *pResult = sizeof(MEMORY_BASIC_INFORMATION);
    return S_OK;
}

static HRESULT STDMETHODCALLTYPE mm_VirtualProtect(IHostMemoryManager *This, void *lpAddress, SIZE_T dwSize,
                                                   DWORD flNewProtect, DWORD *pflOldProtect)
{
    memory_manager *o = mm_of(This);
    if (!pflOldProtect) return E_POINTER;
    *pflOldProtect = 0;
    ENTER(o);
    /* (hm_vmap_protect writes the old protection only when it succeeds) */
    return hr_of(hm_manager_leave(o->m, hm_vmap_protect(&o->m->acct, lpAddress, dwSize, flNewProtect, pflOldProtect)));
}

static HRESULT STDMETHODCALLTYPE mm_GetMemoryLoad(IHostMemoryManager *This, DWORD *pMemoryLoad, SIZE_T *pAvailableBytes)
{
    memory_manager *o = mm_of(This);
    if (pMemoryLoad) *pMemoryLoad = 0;
    if (pAvailableBytes) *pAvailableBytes = 0;
    if (!pMemoryLoad || !pAvailableBytes) return E_POINTER;
    ENTER(o);
    uint32_t load;
    uint64_t avail;
    hm_status st = hm_manager_get_memory_load(o->m, &load, &avail);
    if (st) return hr_of(st);
    *pMemoryLoad = load;
    *pAvailableBytes = (SIZE_T)avail;
    return S_OK;
}

static void deliver(hm_memory_state state, void *arg)
{
    ICLRMemoryNotificationCallback *cb = arg;
    (void)ICLRMemoryNotificationCallback_OnMemoryNotification(cb, (EMemoryAvailable)state);
}

static HRESULT STDMETHODCALLTYPE mm_RegisterMemoryNotificationCallback(IHostMemoryManager *This,
                                                                       ICLRMemoryNotificationCallback *pCallback)
{
    memory_manager *o = mm_of(This);
    ENTER(o);
    if (!pCallback) return E_POINTER;
    unsigned i = atomic_fetch_add(&o->ncallbacks, 1);
    if (i >= MAX_CALLBACKS) {
        atomic_fetch_sub(&o->ncallbacks, 1);
        return E_OUTOFMEMORY;
    }
    ICLRMemoryNotificationCallback_AddRef(pCallback);
    o->callbacks[i] = pCallback;
    hm_status st = hm_manager_register_notification(o->m, deliver, pCallback);
    if (st) { /* the slot stays used but holds a released-on-destroy reference; report the failure */
        return hr_of(st);
    }
    return S_OK;
}

static HRESULT STDMETHODCALLTYPE mm_NeedsVirtualAddressSpace(IHostMemoryManager *This, LPVOID startAddress, SIZE_T size)
{
    memory_manager *o = mm_of(This);
    ENTER(o);
    (void)startAddress;
    return hr_of(hm_manager_va_needed(o->m, size));
}

static HRESULT STDMETHODCALLTYPE mm_AcquiredVirtualAddressSpace(IHostMemoryManager *This, LPVOID startAddress,
                                                                SIZE_T size)
{
    memory_manager *o = mm_of(This);
    ENTER(o);
    return hr_of(hm_manager_va_acquired(o->m, startAddress, size));
}

static HRESULT STDMETHODCALLTYPE mm_ReleasedVirtualAddressSpace(IHostMemoryManager *This, LPVOID startAddress)
{
    memory_manager *o = mm_of(This);
    ENTER(o);
    return hr_of(hm_manager_va_released(o->m, startAddress));
}

static const IHostMemoryManagerVtbl mm_vtbl = {
    mm_QueryInterface,
    mm_AddRef,
    mm_Release,
    mm_CreateMalloc,
    mm_VirtualAlloc,
    mm_VirtualFree,
    mm_VirtualQuery,
    mm_VirtualProtect,
    mm_GetMemoryLoad,
    mm_RegisterMemoryNotificationCallback,
    mm_NeedsVirtualAddressSpace,
    mm_AcquiredVirtualAddressSpace,
    mm_ReleasedVirtualAddressSpace,
};

/* ---- IHostControl ------------------------------------------------------------------------------- */

static host_control *hc_of(IHostControl *This) { return (host_control *)This; }

static HRESULT STDMETHODCALLTYPE hc_QueryInterface(IHostControl *This, REFIID riid, void **ppv)
{
    if (!ppv) return E_POINTER;
    *ppv = NULL;
    if (!iid_eq(riid, &IID_IUnknown) && !iid_eq(riid, &IID_IHostControl)) return E_NOINTERFACE;
    atomic_fetch_add(&hc_of(This)->refs, 1);
    *ppv = This;
    return S_OK;
}

static ULONG STDMETHODCALLTYPE hc_AddRef(IHostControl *This) { return atomic_fetch_add(&hc_of(This)->refs, 1) + 1; }

static ULONG STDMETHODCALLTYPE hc_Release(IHostControl *This)
{
    host_control *o = hc_of(This);
    ULONG left = atomic_fetch_sub(&o->refs, 1) - 1;
    if (left) return left;
    IHostMemoryManager_Release(&o->mm->iface);
    object_free(o);
    return 0;
}

static HRESULT STDMETHODCALLTYPE hc_GetHostManager(IHostControl *This, REFIID riid, void **ppObject)
{
    if (!ppObject) return E_POINTER;
    *ppObject = NULL;
    if (!iid_eq(riid, &IID_IHostMemoryManager)) return E_NOINTERFACE; /* the other managers are not offered */
    memory_manager *mm = hc_of(This)->mm;
    IHostMemoryManager_AddRef(&mm->iface);
    *ppObject = &mm->iface;
    return S_OK;
}

static HRESULT STDMETHODCALLTYPE hc_SetAppDomainManager(IHostControl *This, DWORD dwAppDomainID,
                                                       IUnknown *pUnkAppDomainManager)
{
    (void)This;
    (void)dwAppDomainID;
    (void)pUnkAppDomainManager; /* nothing to do with it: the host does not talk to app domains */
    return S_OK;
}

static const IHostControlVtbl hc_vtbl = {
    hc_QueryInterface, hc_AddRef, hc_Release, hc_GetHostManager, hc_SetAppDomainManager,
};

HRESULT hm_create_host_control(const char *options, IHostControl **out)
{
    if (!out) return E_POINTER;
    *out = NULL;
    hm_manager *m;
    hm_status st = hm_manager_create(options, &m);
    if (st) return hr_of(st);
    memory_manager *mm = object_new();
    host_control *hc = mm ? object_new() : NULL;
    if (!hc) {
        if (mm) object_free(mm);
        (void)hm_manager_destroy(m);
        return E_OUTOFMEMORY;
    }
    mm->iface.lpVtbl = &mm_vtbl;
    atomic_init(&mm->refs, 1); /* the host control's reference */
    mm->m = m;
    hc->iface.lpVtbl = &hc_vtbl;
    atomic_init(&hc->refs, 1);
    hc->mm = mm;
    *out = &hc->iface;
    return S_OK;
}

struct hm_manager *hm_host_control_manager(IHostControl *hc) { return hc ? hc_of(hc)->mm->m : NULL; }
