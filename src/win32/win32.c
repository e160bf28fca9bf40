/* win32.c — the Win32 names of win32.h, one line of policy each over the hm_* API: the status of the
 * call becomes the return value and, on failure, this thread's last error (status.c's table). */
#include <hostmem/win32.h>

#include <string.h>

#include "../os/os.h"

static _Thread_local DWORD last_error;

DWORD WINAPI GetLastError(void) { return last_error; }
void WINAPI SetLastError(DWORD e) { last_error = e; }

/* On failure, records the last error; returns whether the call succeeded. */
static BOOL ok(hm_status st)
{
    if (HM_FAILED(st)) last_error = hm_status_win32_error(st);
    return HM_SUCCEEDED(st);
}

LPVOID WINAPI VirtualAlloc(LPVOID lpAddress, SIZE_T dwSize, DWORD flAllocationType, DWORD flProtect)
{
    void *p = NULL;
    ok(hm_virtual_alloc(NULL, lpAddress, dwSize, flAllocationType, flProtect, &p));
    return p;
}

BOOL WINAPI VirtualFree(LPVOID lpAddress, SIZE_T dwSize, DWORD dwFreeType)
{
    return ok(hm_virtual_free(NULL, lpAddress, dwSize, dwFreeType));
}

BOOL WINAPI VirtualProtect(LPVOID lpAddress, SIZE_T dwSize, DWORD flNewProtect, PDWORD lpflOldProtect)
{
    return ok(hm_virtual_protect(NULL, lpAddress, dwSize, flNewProtect, (uint32_t *)lpflOldProtect));
}

SIZE_T WINAPI VirtualQuery(LPCVOID lpAddress, PMEMORY_BASIC_INFORMATION lpBuffer, SIZE_T dwLength)
{
    _Static_assert(sizeof(MEMORY_BASIC_INFORMATION) == sizeof(hm_region), "MBI layout");
    if (dwLength < sizeof(MEMORY_BASIC_INFORMATION)) return ok(HM_E_BAD_LENGTH), 0;
    if (!lpBuffer) return ok(HM_E_NOACCESS), 0;
    hm_region r;
    if (!ok(hm_virtual_query(NULL, lpAddress, &r))) return 0;
    memcpy(lpBuffer, &r, sizeof r);
    return sizeof(MEMORY_BASIC_INFORMATION);
}

/* Write watch (SPEC 2.6): 0 on success, (UINT)-1 with the last error otherwise. */
UINT WINAPI GetWriteWatch(DWORD dwFlags, PVOID lpBaseAddress, SIZE_T dwRegionSize, PVOID *lpAddresses,
                          ULONG_PTR *lpdwCount, DWORD *lpdwGranularity)
{
    _Static_assert(sizeof(ULONG_PTR) == sizeof(uintptr_t) && sizeof(DWORD) == sizeof(uint32_t), "types");
    return ok(hm_get_write_watch(NULL, dwFlags, lpBaseAddress, dwRegionSize, lpAddresses, (uintptr_t *)lpdwCount,
                                 (uint32_t *)lpdwGranularity)) ? 0 : (UINT)-1;
}

UINT WINAPI ResetWriteWatch(LPVOID lpBaseAddress, SIZE_T dwRegionSize)
{
    return ok(hm_reset_write_watch(NULL, lpBaseAddress, dwRegionSize)) ? 0 : (UINT)-1;
}

void WINAPI GetSystemInfo(LPSYSTEM_INFO si)
{
    if (!si) return;
    hm_system_info s;
    hm_get_system_info(&s);
    memset(si, 0, sizeof *si);
#if defined(__aarch64__)
    si->wProcessorArchitecture = PROCESSOR_ARCHITECTURE_ARM64;
#else
    si->wProcessorArchitecture = PROCESSOR_ARCHITECTURE_AMD64;
    si->dwProcessorType = PROCESSOR_AMD_X8664;
#endif
    si->dwPageSize = s.page_size;
    si->lpMinimumApplicationAddress = (LPVOID)s.min_address;
    si->lpMaximumApplicationAddress = (LPVOID)s.max_address;
    unsigned n = s.processors;
    si->dwActiveProcessorMask = n >= sizeof(DWORD_PTR) * 8 ? ~(DWORD_PTR)0 : (((DWORD_PTR)1 << n) - 1);
    si->dwNumberOfProcessors = n;
    si->dwAllocationGranularity = s.allocation_granularity;
    si->wProcessorLevel = 6;
}

SIZE_T WINAPI GetLargePageMinimum(void) { return hm_large_page_minimum(); }
