/* clrhost.c — the CLR hosting surface driven only through the vtables, as a runtime drives it
 * (SPEC 1): acquisition through IHostControl, every IHostMemoryManager method, the documented return
 * codes, reference counts, notifications through ICLRMemoryNotificationCallback, and destruction on
 * the last release. */
#include <hostmem/clrhost.h>
#include <pthread.h>
#include <stdatomic.h>
#include <time.h>

#include "os/os.h"
#include "testutil.h"

#define KIB ((SIZE_T)1024)

static IHostMemoryManager *acquire(const char *options, IHostControl **hc_out)
{
    IHostControl *hc = NULL;
    HRESULT hr = hm_create_host_control(options, &hc);
    if (hr != S_OK) fail_msg("hm_create_host_control(%s) = %#x: %s", options, (unsigned)hr, hm_last_detail());
    void *p = NULL;
    assert_int_equal(IHostControl_GetHostManager(hc, &IID_IHostMemoryManager, &p), S_OK);
    assert_non_null(p);
    *hc_out = hc;
    return p;
}

/* SPEC 1: the IIDs have mscoree.idl's values and the HRESULTs theirs. */
static void test_values(void **state)
{
    (void)state;
    assert_int_equal(IID_IHostMemoryManager.Data1, 0x7BC698D1);
    assert_int_equal(IID_IHostMemoryManager.Data4[7], 0x25);
    assert_int_equal(IID_IHostControl.Data1, 0x02CA073C);
    assert_int_equal(IID_IHostMalloc.Data2, 0xCC53);
    assert_int_equal(IID_ICLRMemoryNotificationCallback.Data3, 0x4546);
    assert_int_equal(IID_IUnknown.Data4[0], 0xC0);
    assert_int_equal((uint32_t)HOST_E_NOT_OWNER, 0x80131025u);
    assert_int_equal((uint32_t)E_OUTOFMEMORY, 0x8007000Eu);
    assert_int_equal((uint32_t)HRESULT_FROM_WIN32(ERROR_INVALID_ADDRESS), 0x800701E7u);
    assert_int_equal(E_INVALIDARG, HRESULT_FROM_WIN32(ERROR_INVALID_PARAMETER));
    assert_int_equal(eProcessCritical, 2);
    assert_int_equal(eMemoryAvailableHigh, 3);
    assert_int_equal(MALLOC_EXECUTABLE, 2);
}

/* SPEC 1.2: acquisition, QueryInterface, E_NOINTERFACE for what is not offered, reference counts. */
static void test_acquisition(void **state)
{
    (void)state;
    IHostControl *hc = NULL;
    assert_int_equal(hm_create_host_control("limit=1M", NULL), E_POINTER);
    assert_int_equal(hm_create_host_control("limit=banana", &hc), E_INVALIDARG);
    assert_null(hc);
    assert_int_equal(hm_create_host_control("limit=4M", &hc), S_OK);
    void *p = (void *)1;
    assert_int_equal(IHostControl_GetHostManager(hc, &IID_IHostMalloc, &p), E_NOINTERFACE);
    assert_null(p);
    p = (void *)1;
    assert_int_equal(IHostControl_GetHostManager(hc, &IID_IUnknown, &p), E_NOINTERFACE);
    assert_null(p);
    assert_int_equal(IHostControl_GetHostManager(hc, &IID_IHostMemoryManager, NULL), E_POINTER);
    assert_int_equal(IHostControl_QueryInterface(hc, &IID_IHostControl, &p), S_OK);
    assert_ptr_equal(p, hc);
    assert_int_equal(IHostControl_Release(hc), 1);
    assert_int_equal(IHostControl_QueryInterface(hc, &IID_IHostMemoryManager, &p), E_NOINTERFACE);
    assert_null(p);
    assert_int_equal(IHostControl_SetAppDomainManager(hc, 1, NULL), S_OK);

    IHostMemoryManager *mm = NULL;
    assert_int_equal(IHostControl_GetHostManager(hc, &IID_IHostMemoryManager, (void **)&mm), S_OK);
    IHostMemoryManager *mm2 = NULL;
    assert_int_equal(IHostControl_GetHostManager(hc, &IID_IHostMemoryManager, (void **)&mm2), S_OK);
    assert_ptr_equal(mm, mm2); /* one manager per host control */
    assert_int_equal(IHostMemoryManager_Release(mm2), 2);
    assert_int_equal(IHostMemoryManager_QueryInterface(mm, &IID_IUnknown, &p), S_OK);
    assert_ptr_equal(p, mm);
    assert_int_equal(IHostMemoryManager_AddRef(mm), 4);
    assert_int_equal(IHostMemoryManager_Release(mm), 3);
    assert_int_equal(IHostMemoryManager_Release(mm), 2);
    assert_int_equal(IHostMemoryManager_QueryInterface(mm, &IID_IHostControl, &p), E_NOINTERFACE);

    /* the manager lives while either holds it; the last release destroys it with its memory */
    void *mem = NULL;
    assert_int_equal(IHostMemoryManager_VirtualAlloc(mm, NULL, 64 * KIB, MEM_RESERVE | MEM_COMMIT, PAGE_READWRITE,
                                                     eTaskCritical, &mem),
                     S_OK);
    assert_int_equal(IHostControl_Release(hc), 0);
    MEMORY_BASIC_INFORMATION mbi;
    SIZE_T n = 0;
    assert_int_equal(IHostMemoryManager_VirtualQuery(mm, mem, &mbi, sizeof mbi, &n), S_OK);
    assert_int_equal(mbi.State, MEM_COMMIT);
    assert_int_equal(IHostMemoryManager_Release(mm), 0);
    assert_int_equal(VirtualQuery(mem, &mbi, sizeof mbi), sizeof mbi);
    assert_int_equal(mbi.State, MEM_FREE);
}

/* SPEC 1.2 and 3.2: VirtualAlloc/VirtualFree/VirtualQuery/VirtualProtect through the vtable. */
static void test_virtual_methods(void **state)
{
    (void)state;
    IHostControl *hc;
    IHostMemoryManager *mm = acquire("limit=1M,reserve.process=256K", &hc);
    void *res = (void *)1, *p = (void *)1;
    assert_int_equal(IHostMemoryManager_VirtualAlloc(mm, NULL, 1024 * KIB, MEM_RESERVE, PAGE_NOACCESS, eTaskCritical,
                                                     NULL),
                     E_POINTER);
    assert_int_equal(IHostMemoryManager_VirtualAlloc(mm, NULL, 1024 * KIB, MEM_RESERVE, PAGE_NOACCESS,
                                                     (EMemoryCriticalLevel)3, &res),
                     E_INVALIDARG);
    assert_null(res);
    assert_int_equal(IHostMemoryManager_VirtualAlloc(mm, NULL, 0, MEM_RESERVE, PAGE_NOACCESS, eTaskCritical, &res),
                     E_INVALIDARG);
    assert_int_equal(IHostMemoryManager_VirtualAlloc(mm, NULL, 1024 * KIB, MEM_RESERVE | MEM_WRITE_WATCH, PAGE_READWRITE,
                                                     eTaskCritical, &res),
                     S_OK); /* write watch (SPEC 2.6) through the COM surface */
    assert_int_equal(IHostMemoryManager_VirtualFree(mm, res, 0, MEM_RELEASE), S_OK);
    res = NULL;
    assert_int_equal(IHostMemoryManager_VirtualAlloc(mm, NULL, 1024 * KIB, MEM_RESERVE, PAGE_NOACCESS, eTaskCritical,
                                                     &res),
                     S_OK);
    /* task level may use 768K */
    assert_int_equal(IHostMemoryManager_VirtualAlloc(mm, res, 768 * KIB, MEM_COMMIT, PAGE_READWRITE, eTaskCritical, &p),
                     S_OK);
    assert_ptr_equal(p, res);
    p = (void *)1;
    assert_int_equal(IHostMemoryManager_VirtualAlloc(mm, (char *)res + 768 * KIB, 4 * KIB, MEM_COMMIT, PAGE_READWRITE,
                                                     eTaskCritical, &p),
                     E_OUTOFMEMORY); /* SPEC 1.1: a budget refusal */
    assert_null(p);
    assert_int_equal(IHostMemoryManager_VirtualAlloc(mm, (char *)res + 768 * KIB, 256 * KIB, MEM_COMMIT, PAGE_READWRITE,
                                                     eProcessCritical, &p),
                     S_OK);
    assert_int_equal(IHostMemoryManager_VirtualAlloc(mm, (char *)res + 2048 * KIB, 4 * KIB, MEM_COMMIT, PAGE_READWRITE,
                                                     eProcessCritical, &p),
                     HRESULT_FROM_WIN32(ERROR_INVALID_ADDRESS));

    MEMORY_BASIC_INFORMATION mbi;
    SIZE_T n = 7;
    assert_int_equal(IHostMemoryManager_VirtualQuery(mm, res, &mbi, sizeof mbi - 1, &n), HRESULT_FROM_WIN32(ERROR_BAD_LENGTH));
    assert_int_equal(IHostMemoryManager_VirtualQuery(mm, res, &mbi, sizeof mbi, NULL), E_POINTER);
    assert_int_equal(IHostMemoryManager_VirtualQuery(mm, res, &mbi, sizeof mbi, &n), S_OK);
    assert_int_equal(n, sizeof mbi);
    assert_ptr_equal(mbi.AllocationBase, res);
    assert_int_equal(mbi.RegionSize, 1024 * KIB);
    assert_int_equal(mbi.Protect, PAGE_READWRITE);
    assert_int_equal(IHostMemoryManager_VirtualQuery(mm, (void *)-1, &mbi, sizeof mbi, &n), E_INVALIDARG);

    DWORD old = 0;
    assert_int_equal(IHostMemoryManager_VirtualProtect(mm, res, 4 * KIB, PAGE_READONLY, NULL), E_POINTER);
    assert_int_equal(IHostMemoryManager_VirtualProtect(mm, res, 4 * KIB, PAGE_READONLY, &old), S_OK);
    assert_int_equal(old, PAGE_READWRITE);
    assert_int_equal(IHostMemoryManager_VirtualProtect(mm, res, 4 * KIB, 0, &old), E_INVALIDARG);

    assert_int_equal(IHostMemoryManager_VirtualFree(mm, res, 4 * KIB, MEM_RELEASE), E_INVALIDARG);
    assert_int_equal(IHostMemoryManager_VirtualFree(mm, (char *)res + 64 * KIB, 0, MEM_RELEASE),
                     HRESULT_FROM_WIN32(ERROR_INVALID_ADDRESS));
    static char not_host[8192];
    assert_int_equal(IHostMemoryManager_VirtualFree(mm, not_host, 0, MEM_RELEASE), HOST_E_INVALIDOPERATION);
    assert_int_equal(IHostMemoryManager_VirtualFree(mm, res, 64 * KIB, MEM_DECOMMIT), S_OK);
    assert_int_equal(IHostMemoryManager_VirtualFree(mm, res, 0, MEM_RELEASE), S_OK);

    /* SPEC 3.1: another host's manager does not own this one's memory */
    IHostControl *hc2;
    IHostMemoryManager *other = acquire("limit=1M", &hc2);
    void *mine = NULL;
    assert_int_equal(IHostMemoryManager_VirtualAlloc(mm, NULL, 64 * KIB, MEM_RESERVE | MEM_COMMIT, PAGE_READWRITE,
                                                     eTaskCritical, &mine),
                     S_OK);
    assert_int_equal(IHostMemoryManager_VirtualFree(other, mine, 0, MEM_RELEASE), HOST_E_NOT_OWNER);
    assert_int_equal(IHostMemoryManager_VirtualProtect(other, mine, 4096, PAGE_READONLY, &old), HOST_E_NOT_OWNER);
    assert_int_equal(IHostMemoryManager_VirtualQuery(other, mine, &mbi, sizeof mbi, &n), HOST_E_NOT_OWNER);
    assert_int_equal(IHostMemoryManager_VirtualAlloc(other, mine, 4096, MEM_COMMIT, PAGE_READWRITE, eTaskCritical, &p),
                     HOST_E_NOT_OWNER);
    assert_null(p);
    IHostMemoryManager_Release(other);
    IHostControl_Release(hc2);
    IHostMemoryManager_Release(mm);
    IHostControl_Release(hc);
}

/* SPEC 1.2 and 3.3: a request at a level that may wait runs out of time with HOST_E_TIMEOUT. */
static void test_timeout(void **state)
{
    (void)state;
    IHostControl *hc;
    IHostMemoryManager *mm = acquire("limit=256K,wait.appdomain=50ms", &hc);
    void *p = NULL;
    assert_int_equal(IHostMemoryManager_VirtualAlloc(mm, NULL, 256 * KIB, MEM_RESERVE | MEM_COMMIT, PAGE_READWRITE,
                                                     eProcessCritical, &p),
                     S_OK);
    void *q = (void *)1;
    assert_int_equal(IHostMemoryManager_VirtualAlloc(mm, NULL, 4 * KIB, MEM_RESERVE | MEM_COMMIT, PAGE_READWRITE,
                                                     eAppDomainCritical, &q),
                     HOST_E_TIMEOUT);
    assert_null(q);
    IHostMemoryManager_Release(mm);
    IHostControl_Release(hc);
}

/* SPEC 1.2, 4: CreateMalloc gives heaps; IHostMalloc Alloc, DebugAlloc, Free with their codes; the
 * last release of a heap frees its memory, and a heap keeps its manager alive. */
static void test_create_malloc(void **state)
{
    (void)state;
    IHostControl *hc;
    IHostMemoryManager *mm = acquire("limit=8M,reserve.process=1M", &hc);
    IHostMalloc *heap = (IHostMalloc *)1, *other = NULL;
    assert_int_equal(IHostMemoryManager_CreateMalloc(mm, MALLOC_THREADSAFE, NULL), E_POINTER);
    assert_int_equal(IHostMemoryManager_CreateMalloc(mm, 0x4, &heap), E_INVALIDARG);
    assert_null(heap);
    assert_int_equal(IHostMemoryManager_CreateMalloc(mm, MALLOC_THREADSAFE, &heap), S_OK);
    assert_int_equal(IHostMemoryManager_CreateMalloc(mm, 0, &other), S_OK);
    void *p = NULL, *q = NULL, *d = NULL;
    assert_int_equal(IHostMalloc_Alloc(heap, 100, eTaskCritical, NULL), E_POINTER);
    assert_int_equal(IHostMalloc_Alloc(heap, 100, eTaskCritical, &p), S_OK);
    assert_int_equal((uintptr_t)p % 16, 0);
    memset(p, 0xab, 100);
    assert_int_equal(IHostMalloc_Alloc(heap, 0, eTaskCritical, &q), S_OK); /* size 0: a unique block */
    assert_ptr_not_equal(p, q);
    assert_int_equal(IHostMalloc_DebugAlloc(heap, 64, eAppDomainCritical, (char *)"runtime.cpp", 7, &d), S_OK);
    assert_int_equal(IHostMalloc_Free(heap, NULL), S_OK);
    assert_int_equal(IHostMalloc_Free(other, p), HOST_E_NOT_OWNER);
    assert_int_equal(IHostMalloc_Free(heap, (char *)p + 16), HOST_E_INVALIDOPERATION);
    static char not_heap[64];
    assert_int_equal(IHostMalloc_Free(heap, not_heap), HOST_E_INVALIDOPERATION);
    assert_int_equal(IHostMalloc_Free(heap, p), S_OK);
    assert_int_equal(IHostMalloc_Free(heap, p), HOST_E_INVALIDOPERATION); /* already freed */
    assert_int_equal(IHostMalloc_Free(heap, d), S_OK);
    /* the budget: task requests may use 7M; a 16M block is refused as E_OUTOFMEMORY */
    void *big = (void *)1;
    assert_int_equal(IHostMalloc_Alloc(heap, (SIZE_T)16 << 20, eTaskCritical, &big), E_OUTOFMEMORY);
    assert_null(big);
    assert_int_equal(IHostMalloc_Alloc(heap, 100, (EMemoryCriticalLevel)7, &big), E_INVALIDARG);
    /* a heap keeps its manager: the runtime may release the manager first */
    IHostMemoryManager_Release(mm);
    IHostControl_Release(hc);
    assert_int_equal(IHostMalloc_Alloc(other, 1000, eProcessCritical, &p), S_OK);
    assert_int_equal(IHostMalloc_AddRef(heap), 2);
    assert_int_equal(IHostMalloc_Release(heap), 1);
    assert_int_equal(IHostMalloc_Release(heap), 0);
    assert_int_equal(IHostMalloc_Release(other), 0); /* the last reference: heap, then manager, go */
}

/* A runtime's ICLRMemoryNotificationCallback, implemented in C. */
typedef struct runtime_cb {
    ICLRMemoryNotificationCallback iface;
    atomic_int refs;
    atomic_int calls;
    atomic_int last;
} runtime_cb;

static HRESULT STDMETHODCALLTYPE cb_qi(ICLRMemoryNotificationCallback *This, REFIID riid, void **ppv)
{
    (void)riid;
    *ppv = This;
    return S_OK;
}
static ULONG STDMETHODCALLTYPE cb_addref(ICLRMemoryNotificationCallback *This)
{
    return (ULONG)atomic_fetch_add(&((runtime_cb *)This)->refs, 1) + 1;
}
static ULONG STDMETHODCALLTYPE cb_release(ICLRMemoryNotificationCallback *This)
{
    return (ULONG)atomic_fetch_sub(&((runtime_cb *)This)->refs, 1) - 1;
}
static HRESULT STDMETHODCALLTYPE cb_notify(ICLRMemoryNotificationCallback *This, EMemoryAvailable e)
{
    runtime_cb *c = (runtime_cb *)This;
    atomic_store(&c->last, (int)e);
    atomic_fetch_add(&c->calls, 1);
    return S_OK;
}
static const ICLRMemoryNotificationCallbackVtbl cb_vtbl = {cb_qi, cb_addref, cb_release, cb_notify};

/* SPEC 1.2, 3.5, 3.6: GetMemoryLoad, notifications through the runtime's callback, address space
 * handed out elsewhere. */
static void test_load_notify_va(void **state)
{
    (void)state;
    IHostControl *hc;
    IHostMemoryManager *mm = acquire("limit=1M,va.limit=2M", &hc);
    DWORD load = 0;
    SIZE_T avail = 0;
    assert_int_equal(IHostMemoryManager_GetMemoryLoad(mm, NULL, &avail), E_POINTER);
    assert_int_equal(IHostMemoryManager_GetMemoryLoad(mm, &load, &avail), S_OK);
    assert_true(load <= 100);
    assert_true(avail <= 1024 * KIB);

    static runtime_cb cb = {.iface = {&cb_vtbl}};
    atomic_store(&cb.refs, 1);
    assert_int_equal(IHostMemoryManager_RegisterMemoryNotificationCallback(mm, NULL), E_POINTER);
    assert_int_equal(IHostMemoryManager_RegisterMemoryNotificationCallback(mm, &cb.iface), S_OK);
    assert_int_equal(atomic_load(&cb.refs), 2); /* the host holds it */
    void *p = NULL, *q = (void *)1;
    assert_int_equal(IHostMemoryManager_VirtualAlloc(mm, NULL, 1024 * KIB, MEM_RESERVE | MEM_COMMIT, PAGE_READWRITE,
                                                     eProcessCritical, &p),
                     S_OK); /* 100%: Low */
    for (int i = 0; i < 2000 && atomic_load(&cb.calls) < 1; i++) {
        struct timespec t = {0, 1000000};
        nanosleep(&t, NULL);
    }
    assert_true(atomic_load(&cb.calls) >= 1);
    assert_int_equal(atomic_load(&cb.last), eMemoryAvailableLow);
    assert_int_equal(IHostMemoryManager_GetMemoryLoad(mm, &load, &avail), S_OK);
    assert_int_equal(load, 100);
    assert_int_equal(avail, 0);

    /* va.limit 2M: 1M reserved; a 1M file view fits, then nothing more */
    assert_int_equal(IHostMemoryManager_NeedsVirtualAddressSpace(mm, NULL, 1024 * KIB), S_OK);
    assert_int_equal(IHostMemoryManager_NeedsVirtualAddressSpace(mm, NULL, 1024 * KIB + 1), E_OUTOFMEMORY);
    void *view = (void *)0x500000000000;
    assert_int_equal(IHostMemoryManager_AcquiredVirtualAddressSpace(mm, view, 1024 * KIB), S_OK);
    assert_int_equal(IHostMemoryManager_AcquiredVirtualAddressSpace(mm, view, 1024 * KIB), E_INVALIDARG);
    assert_int_equal(IHostMemoryManager_NeedsVirtualAddressSpace(mm, NULL, 4096), E_OUTOFMEMORY);
    assert_int_equal(IHostMemoryManager_VirtualAlloc(mm, NULL, 64 * KIB, MEM_RESERVE, PAGE_NOACCESS, eProcessCritical, &q),
                     E_OUTOFMEMORY); /* reservations count against the same budget */
    assert_null(q);
    assert_int_equal(IHostMemoryManager_ReleasedVirtualAddressSpace(mm, view), S_OK);
    assert_int_equal(IHostMemoryManager_ReleasedVirtualAddressSpace(mm, view), E_INVALIDARG);
    assert_int_equal(IHostMemoryManager_NeedsVirtualAddressSpace(mm, NULL, 1024 * KIB), S_OK);

    IHostMemoryManager_Release(mm);
    IHostControl_Release(hc);
    assert_int_equal(atomic_load(&cb.refs), 1); /* released with the manager */
}

/* SPEC 1.1: every out-parameter of a failing method is NULL (or 0), the refusals of a manager that is
 * shut down or failed (HOST_E_CLRNOTAVAILABLE, SPEC 3.4) included. The callers' slots start poisoned. */
static void check_stopped(IHostMemoryManager *mm, IHostMalloc *heap, const char *how)
{
    print_message("methods of a manager that is %s\n", how);
    void *mem = (void *)0x5a5a;
    assert_int_equal(IHostMemoryManager_VirtualAlloc(mm, NULL, 64 * KIB, MEM_RESERVE | MEM_COMMIT, PAGE_READWRITE,
                                                     eProcessCritical, &mem), HOST_E_CLRNOTAVAILABLE);
    assert_null(mem);
    IHostMalloc *m2 = (IHostMalloc *)0x5a5a;
    assert_int_equal(IHostMemoryManager_CreateMalloc(mm, MALLOC_THREADSAFE, &m2), HOST_E_CLRNOTAVAILABLE);
    assert_null(m2);
    MEMORY_BASIC_INFORMATION mbi;
    SIZE_T n = 77;
    assert_int_equal(IHostMemoryManager_VirtualQuery(mm, &mbi, &mbi, sizeof mbi, &n), HOST_E_CLRNOTAVAILABLE);
    assert_int_equal(n, 0);
    DWORD old = 77;
    assert_int_equal(IHostMemoryManager_VirtualProtect(mm, &mbi, 1, PAGE_READONLY, &old), HOST_E_CLRNOTAVAILABLE);
    assert_int_equal(old, 0);
    DWORD load = 77;
    SIZE_T avail = 77;
    assert_int_equal(IHostMemoryManager_GetMemoryLoad(mm, &load, &avail), HOST_E_CLRNOTAVAILABLE);
    assert_int_equal(load, 0);
    assert_int_equal(avail, 0);
    mem = (void *)0x5a5a;
    assert_int_equal(IHostMalloc_Alloc(heap, 32, eProcessCritical, &mem), HOST_E_CLRNOTAVAILABLE);
    assert_null(mem);
    mem = (void *)0x5a5a;
    assert_int_equal(IHostMalloc_DebugAlloc(heap, 32, eProcessCritical, "f.c", 1, &mem), HOST_E_CLRNOTAVAILABLE);
    assert_null(mem);
    /* a NULL out-pointer is still E_POINTER */
    assert_int_equal(IHostMemoryManager_VirtualAlloc(mm, NULL, 64 * KIB, MEM_RESERVE, PAGE_READWRITE, eTaskCritical, NULL),
                     E_POINTER);
    assert_int_equal(IHostMemoryManager_CreateMalloc(mm, 0, NULL), E_POINTER);
}

static void test_out_pointers_when_stopped(void **state)
{
    (void)state;
    IHostControl *hc;
    IHostMemoryManager *mm = acquire("limit=64M", &hc);
    IHostMalloc *heap = NULL;
    assert_int_equal(IHostMemoryManager_CreateMalloc(mm, MALLOC_THREADSAFE, &heap), S_OK);
    assert_non_null(hm_host_control_manager(hc));
    assert_null(hm_host_control_manager(NULL));
    assert_int_equal(hm_manager_shutdown(hm_host_control_manager(hc)), HM_OK);
    check_stopped(mm, heap, "shut down");
    IHostMalloc_Release(heap);
    IHostMemoryManager_Release(mm);
    IHostControl_Release(hc);

    /* failed: a decommit whose every mprotect is refused cannot be rolled back (E_FAIL, SPEC 3.4) */
    mm = acquire("limit=64M", &hc);
    assert_int_equal(IHostMemoryManager_CreateMalloc(mm, 0, &heap), S_OK);
    void *mem = NULL;
    assert_int_equal(IHostMemoryManager_VirtualAlloc(mm, NULL, 64 * KIB, MEM_RESERVE | MEM_COMMIT, PAGE_READWRITE,
                                                     eProcessCritical, &mem), S_OK);
    hm_os_fault_inject(HM_OS_MPROTECT, 1, ENOMEM, true);
    HRESULT hr = IHostMemoryManager_VirtualFree(mm, mem, 4 * KIB, MEM_DECOMMIT);
    hm_os_fault_clear();
    assert_int_equal(hr, E_FAIL);
    check_stopped(mm, heap, "failed");
    IHostMalloc_Release(heap);
    IHostMemoryManager_Release(mm);
    IHostControl_Release(hc);
}

/* SPEC 3.6: a recorded mapping counts against va.limit; one that claims to run past the user address
 * space is refused (its size once wrapped the count around, and Needs... said yes to anything). */
static void test_va_record_wrap(void **state)
{
    (void)state;
    IHostControl *hc;
    IHostMemoryManager *mm = acquire("limit=64M,va.limit=64M", &hc);
    assert_int_equal(IHostMemoryManager_AcquiredVirtualAddressSpace(mm, (void *)0x600000000000, 64 * KIB), S_OK);
    assert_int_equal(IHostMemoryManager_AcquiredVirtualAddressSpace(mm, (void *)0x610000000000, (SIZE_T)-1), E_INVALIDARG);
    assert_int_equal(IHostMemoryManager_AcquiredVirtualAddressSpace(mm, (void *)0x7fffffff0000, 0x20000), E_INVALIDARG);
    assert_int_equal(IHostMemoryManager_NeedsVirtualAddressSpace(mm, NULL, 64 * 1024 * KIB), E_OUTOFMEMORY);
    assert_int_equal(IHostMemoryManager_NeedsVirtualAddressSpace(mm, NULL, 64 * 1024 * KIB - 64 * KIB), S_OK);
    assert_int_equal(IHostMemoryManager_ReleasedVirtualAddressSpace(mm, (void *)0x600000000000), S_OK);
    IHostMemoryManager_Release(mm);
    IHostControl_Release(hc);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_values),       cmocka_unit_test(test_acquisition),   cmocka_unit_test(test_virtual_methods),
        cmocka_unit_test(test_timeout),      cmocka_unit_test(test_create_malloc), cmocka_unit_test(test_load_notify_va),
        cmocka_unit_test(test_out_pointers_when_stopped),
        cmocka_unit_test(test_va_record_wrap),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
