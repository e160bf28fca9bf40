/* clrhost.h — the CLR hosting memory interfaces (SPEC 1), declared as MIDL declares them for C: each
 * interface is a struct whose first member lpVtbl points at a ...Vtbl struct of function pointers
 * taking This first, with the Interface_Method(This, ...) call macros. Values are mscoree.idl's.
 *
 * hm_create_host_control() makes an IHostControl whose GetHostManager(&IID_IHostMemoryManager, ...)
 * hands out a manager built from an option string (SPEC 3.7). In C, REFIID is `const IID *`. */
#ifndef HOSTMEM_CLRHOST_H
#define HOSTMEM_CLRHOST_H

#include <stdint.h>

#include <hostmem/win32.h>

#ifdef __cplusplus
extern "C" {
#endif

#ifndef STDMETHODCALLTYPE
#define STDMETHODCALLTYPE
#endif

typedef int32_t HRESULT;

typedef struct _GUID {
    uint32_t Data1;
    uint16_t Data2;
    uint16_t Data3;
    uint8_t Data4[8];
} GUID;
typedef GUID IID;
typedef const IID *REFIID;

#ifndef SUCCEEDED
#define SUCCEEDED(hr) (((HRESULT)(hr)) >= 0)
#endif
#ifndef FAILED
#define FAILED(hr) (((HRESULT)(hr)) < 0)
#endif
#ifndef HRESULT_FROM_WIN32
#define HRESULT_FROM_WIN32(x) \
    ((HRESULT)(x) <= 0 ? ((HRESULT)(x)) : ((HRESULT)(((uint32_t)(x) & 0x0000FFFFu) | 0x80070000u)))
#endif

#define S_OK                     ((HRESULT)0x00000000)
#define S_FALSE                  ((HRESULT)0x00000001)
#define E_NOTIMPL                ((HRESULT)0x80004001)
#define E_NOINTERFACE            ((HRESULT)0x80004002)
#define E_POINTER                ((HRESULT)0x80004003)
#define E_FAIL                   ((HRESULT)0x80004005)
#define E_OUTOFMEMORY            ((HRESULT)0x8007000E)
#define E_INVALIDARG             ((HRESULT)0x80070057)
#define HOST_E_INVALIDOPERATION  ((HRESULT)0x80131022)
#define HOST_E_CLRNOTAVAILABLE   ((HRESULT)0x80131023)
#define HOST_E_TIMEOUT           ((HRESULT)0x80131024)
#define HOST_E_NOT_OWNER         ((HRESULT)0x80131025)
#define HOST_E_ABANDONED         ((HRESULT)0x80131026)

typedef enum {
    eTaskCritical = 0,
    eAppDomainCritical = 1,
    eProcessCritical = 2
} EMemoryCriticalLevel;

typedef enum {
    eMemoryAvailableLow = 1,
    eMemoryAvailableNeutral = 2,
    eMemoryAvailableHigh = 3
} EMemoryAvailable;

typedef enum {
    MALLOC_THREADSAFE = 0x1,
    MALLOC_EXECUTABLE = 0x2
} MALLOC_TYPE;

HM_API extern const IID IID_IUnknown;                       /* {00000000-0000-0000-C000-000000000046} */
HM_API extern const IID IID_IHostControl;                   /* {02CA073C-7079-4860-880A-C2F7A449C991} */
HM_API extern const IID IID_IHostMemoryManager;             /* {7BC698D1-F9E3-4460-9CDE-D04248E9FA25} */
HM_API extern const IID IID_IHostMalloc;                    /* {1831991C-CC53-4A31-B218-04E910446479} */
HM_API extern const IID IID_ICLRMemoryNotificationCallback; /* {47EB8E57-0846-4546-AF76-6F42FCFC2649} */

/* ---- IUnknown --------------------------------------------------------------------------------- */
typedef struct IUnknown IUnknown;
typedef struct IUnknownVtbl {
    HRESULT(STDMETHODCALLTYPE *QueryInterface)(IUnknown *This, REFIID riid, void **ppvObject);
    ULONG(STDMETHODCALLTYPE *AddRef)(IUnknown *This);
    ULONG(STDMETHODCALLTYPE *Release)(IUnknown *This);
} IUnknownVtbl;
struct IUnknown {
    const struct IUnknownVtbl *lpVtbl;
};
#define IUnknown_QueryInterface(This, riid, ppvObject) ((This)->lpVtbl->QueryInterface(This, riid, ppvObject))
#define IUnknown_AddRef(This) ((This)->lpVtbl->AddRef(This))
#define IUnknown_Release(This) ((This)->lpVtbl->Release(This))

/* ---- ICLRMemoryNotificationCallback (implemented by the runtime, called by the host) ------------ */
typedef struct ICLRMemoryNotificationCallback ICLRMemoryNotificationCallback;
typedef struct ICLRMemoryNotificationCallbackVtbl {
    HRESULT(STDMETHODCALLTYPE *QueryInterface)(ICLRMemoryNotificationCallback *This, REFIID riid, void **ppvObject);
    ULONG(STDMETHODCALLTYPE *AddRef)(ICLRMemoryNotificationCallback *This);
    ULONG(STDMETHODCALLTYPE *Release)(ICLRMemoryNotificationCallback *This);
    HRESULT(STDMETHODCALLTYPE *OnMemoryNotification)(ICLRMemoryNotificationCallback *This,
                                                      EMemoryAvailable eMemoryAvailable);
} ICLRMemoryNotificationCallbackVtbl;
struct ICLRMemoryNotificationCallback {
    const struct ICLRMemoryNotificationCallbackVtbl *lpVtbl;
};
#define ICLRMemoryNotificationCallback_QueryInterface(This, riid, ppvObject) \
    ((This)->lpVtbl->QueryInterface(This, riid, ppvObject))
#define ICLRMemoryNotificationCallback_AddRef(This) ((This)->lpVtbl->AddRef(This))
#define ICLRMemoryNotificationCallback_Release(This) ((This)->lpVtbl->Release(This))
#define ICLRMemoryNotificationCallback_OnMemoryNotification(This, eMemoryAvailable) \
    ((This)->lpVtbl->OnMemoryNotification(This, eMemoryAvailable))

/* ---- IHostMalloc ------------------------------------------------------------------------------ */
typedef struct IHostMalloc IHostMalloc;
typedef struct IHostMallocVtbl {
    HRESULT(STDMETHODCALLTYPE *QueryInterface)(IHostMalloc *This, REFIID riid, void **ppvObject);
    ULONG(STDMETHODCALLTYPE *AddRef)(IHostMalloc *This);
    ULONG(STDMETHODCALLTYPE *Release)(IHostMalloc *This);
    HRESULT(STDMETHODCALLTYPE *Alloc)(IHostMalloc *This, SIZE_T cbSize, EMemoryCriticalLevel eCriticalLevel,
                                      void **ppMem);
    HRESULT(STDMETHODCALLTYPE *DebugAlloc)(IHostMalloc *This, SIZE_T cbSize, EMemoryCriticalLevel eCriticalLevel,
                                           char *pszFileName, int iLineNo, void **ppMem);
    HRESULT(STDMETHODCALLTYPE *Free)(IHostMalloc *This, void *pMem);
} IHostMallocVtbl;
struct IHostMalloc {
    const struct IHostMallocVtbl *lpVtbl;
};
#define IHostMalloc_QueryInterface(This, riid, ppvObject) ((This)->lpVtbl->QueryInterface(This, riid, ppvObject))
#define IHostMalloc_AddRef(This) ((This)->lpVtbl->AddRef(This))
#define IHostMalloc_Release(This) ((This)->lpVtbl->Release(This))
#define IHostMalloc_Alloc(This, cbSize, eCriticalLevel, ppMem) ((This)->lpVtbl->Alloc(This, cbSize, eCriticalLevel, ppMem))
#define IHostMalloc_DebugAlloc(This, cbSize, eCriticalLevel, pszFileName, iLineNo, ppMem) \
    ((This)->lpVtbl->DebugAlloc(This, cbSize, eCriticalLevel, pszFileName, iLineNo, ppMem))
#define IHostMalloc_Free(This, pMem) ((This)->lpVtbl->Free(This, pMem))

/* ---- IHostMemoryManager ----------------------------------------------------------------------- */
typedef struct IHostMemoryManager IHostMemoryManager;
typedef struct IHostMemoryManagerVtbl {
    HRESULT(STDMETHODCALLTYPE *QueryInterface)(IHostMemoryManager *This, REFIID riid, void **ppvObject);
    ULONG(STDMETHODCALLTYPE *AddRef)(IHostMemoryManager *This);
    ULONG(STDMETHODCALLTYPE *Release)(IHostMemoryManager *This);
    HRESULT(STDMETHODCALLTYPE *CreateMalloc)(IHostMemoryManager *This, DWORD dwMallocType, IHostMalloc **ppMalloc);
    HRESULT(STDMETHODCALLTYPE *VirtualAlloc)(IHostMemoryManager *This, void *pAddress, SIZE_T dwSize,
                                             DWORD flAllocationType, DWORD flProtect,
                                             EMemoryCriticalLevel eCriticalLevel, void **ppMem);
    HRESULT(STDMETHODCALLTYPE *VirtualFree)(IHostMemoryManager *This, LPVOID lpAddress, SIZE_T dwSize,
                                            DWORD dwFreeType);
    HRESULT(STDMETHODCALLTYPE *VirtualQuery)(IHostMemoryManager *This, void *lpAddress, void *lpBuffer,
                                             SIZE_T dwLength, SIZE_T *pResult);
    HRESULT(STDMETHODCALLTYPE *VirtualProtect)(IHostMemoryManager *This, void *lpAddress, SIZE_T dwSize,
                                               DWORD flNewProtect, DWORD *pflOldProtect);
    HRESULT(STDMETHODCALLTYPE *GetMemoryLoad)(IHostMemoryManager *This, DWORD *pMemoryLoad,
                                              SIZE_T *pAvailableBytes);
    HRESULT(STDMETHODCALLTYPE *RegisterMemoryNotificationCallback)(IHostMemoryManager *This,
                                                                   ICLRMemoryNotificationCallback *pCallback);
    HRESULT(STDMETHODCALLTYPE *NeedsVirtualAddressSpace)(IHostMemoryManager *This, LPVOID startAddress,
                                                         SIZE_T size);
    HRESULT(STDMETHODCALLTYPE *AcquiredVirtualAddressSpace)(IHostMemoryManager *This, LPVOID startAddress,
                                                            SIZE_T size);
    HRESULT(STDMETHODCALLTYPE *ReleasedVirtualAddressSpace)(IHostMemoryManager *This, LPVOID startAddress);
} IHostMemoryManagerVtbl;
struct IHostMemoryManager {
    const struct IHostMemoryManagerVtbl *lpVtbl;
};
#define IHostMemoryManager_QueryInterface(This, riid, ppvObject) ((This)->lpVtbl->QueryInterface(This, riid, ppvObject))
#define IHostMemoryManager_AddRef(This) ((This)->lpVtbl->AddRef(This))
#define IHostMemoryManager_Release(This) ((This)->lpVtbl->Release(This))
#define IHostMemoryManager_CreateMalloc(This, dwMallocType, ppMalloc) \
    ((This)->lpVtbl->CreateMalloc(This, dwMallocType, ppMalloc))
#define IHostMemoryManager_VirtualAlloc(This, pAddress, dwSize, flAllocationType, flProtect, eCriticalLevel, ppMem) \
    ((This)->lpVtbl->VirtualAlloc(This, pAddress, dwSize, flAllocationType, flProtect, eCriticalLevel, ppMem))
#define IHostMemoryManager_VirtualFree(This, lpAddress, dwSize, dwFreeType) \
    ((This)->lpVtbl->VirtualFree(This, lpAddress, dwSize, dwFreeType))
#define IHostMemoryManager_VirtualQuery(This, lpAddress, lpBuffer, dwLength, pResult) \
    ((This)->lpVtbl->VirtualQuery(This, lpAddress, lpBuffer, dwLength, pResult))
#define IHostMemoryManager_VirtualProtect(This, lpAddress, dwSize, flNewProtect, pflOldProtect) \
    ((This)->lpVtbl->VirtualProtect(This, lpAddress, dwSize, flNewProtect, pflOldProtect))
#define IHostMemoryManager_GetMemoryLoad(This, pMemoryLoad, pAvailableBytes) \
    ((This)->lpVtbl->GetMemoryLoad(This, pMemoryLoad, pAvailableBytes))
#define IHostMemoryManager_RegisterMemoryNotificationCallback(This, pCallback) \
    ((This)->lpVtbl->RegisterMemoryNotificationCallback(This, pCallback))
#define IHostMemoryManager_NeedsVirtualAddressSpace(This, startAddress, size) \
    ((This)->lpVtbl->NeedsVirtualAddressSpace(This, startAddress, size))
#define IHostMemoryManager_AcquiredVirtualAddressSpace(This, startAddress, size) \
    ((This)->lpVtbl->AcquiredVirtualAddressSpace(This, startAddress, size))
#define IHostMemoryManager_ReleasedVirtualAddressSpace(This, startAddress) \
    ((This)->lpVtbl->ReleasedVirtualAddressSpace(This, startAddress))

/* ---- IHostControl ----------------------------------------------------------------------------- */
typedef struct IHostControl IHostControl;
typedef struct IHostControlVtbl {
    HRESULT(STDMETHODCALLTYPE *QueryInterface)(IHostControl *This, REFIID riid, void **ppvObject);
    ULONG(STDMETHODCALLTYPE *AddRef)(IHostControl *This);
    ULONG(STDMETHODCALLTYPE *Release)(IHostControl *This);
    HRESULT(STDMETHODCALLTYPE *GetHostManager)(IHostControl *This, REFIID riid, void **ppObject);
    HRESULT(STDMETHODCALLTYPE *SetAppDomainManager)(IHostControl *This, DWORD dwAppDomainID,
                                                    IUnknown *pUnkAppDomainManager);
} IHostControlVtbl;
struct IHostControl {
    const struct IHostControlVtbl *lpVtbl;
};
#define IHostControl_QueryInterface(This, riid, ppvObject) ((This)->lpVtbl->QueryInterface(This, riid, ppvObject))
#define IHostControl_AddRef(This) ((This)->lpVtbl->AddRef(This))
#define IHostControl_Release(This) ((This)->lpVtbl->Release(This))
#define IHostControl_GetHostManager(This, riid, ppObject) ((This)->lpVtbl->GetHostManager(This, riid, ppObject))
#define IHostControl_SetAppDomainManager(This, dwAppDomainID, pUnkAppDomainManager) \
    ((This)->lpVtbl->SetAppDomainManager(This, dwAppDomainID, pUnkAppDomainManager))

/* A host control whose IHostMemoryManager is a new manager made from `options` (SPEC 3.7; NULL or ""
 * for the defaults over HOSTMEM_OPTIONS). Releasing the last reference to both destroys the manager.
 * E_INVALIDARG for a bad option (hm_last_detail() names it), E_POINTER for a NULL out. */
HM_API HRESULT hm_create_host_control(const char *options, IHostControl **out);
/* The manager behind a host control made by hm_create_host_control, for the host's own use of the C
 * API (hm_manager_shutdown when the runtime must stop, statistics, notifications): valid while the
 * host control or its IHostMemoryManager is referenced. NULL for NULL. */
HM_API struct hm_manager *hm_host_control_manager(IHostControl *hc);

#ifdef __cplusplus
}
#endif
#endif
