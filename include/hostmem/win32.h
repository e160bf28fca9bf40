/* win32.h — the Win32 virtual-memory names over hostmem (SPEC section 5).
 *
 * Code written for Windows' memoryapi.h compiles unchanged against this header and links with
 * -lhostmem. Types and constants have their Windows widths and values (DWORD and ULONG are 32 bits;
 * ULONG_PTR and SIZE_T are pointer-sized). The functions act on the process-default manager, and
 * GetLastError/SetLastError keep one value per thread, as on Windows. */
#ifndef HOSTMEM_WIN32_H
#define HOSTMEM_WIN32_H

#include <stddef.h>
#include <stdint.h>
#include <hostmem/hostmem.h>

#ifdef __cplusplus
extern "C" {
#endif

#ifndef WINAPI
#define WINAPI
#endif
#ifndef CALLBACK
#define CALLBACK
#endif
#ifndef VOID
#define VOID void
#endif

typedef int BOOL;
typedef unsigned char BYTE;
typedef uint16_t WORD;
typedef uint32_t DWORD;
typedef uint32_t ULONG;           /* the same type as DWORD, as on Windows */
typedef int32_t LONG;
typedef unsigned int UINT;
typedef int INT;
typedef char CHAR;
typedef BYTE BOOLEAN;
typedef uintptr_t ULONG_PTR;
typedef intptr_t LONG_PTR;
typedef ULONG_PTR DWORD_PTR;
typedef ULONG_PTR SIZE_T;
typedef SIZE_T *PSIZE_T;
typedef void *PVOID;
typedef void *LPVOID;
typedef const void *LPCVOID;
typedef DWORD *PDWORD;
typedef DWORD *LPDWORD;
typedef ULONG_PTR *PULONG_PTR;
typedef void *HANDLE;
typedef BYTE *PBYTE;
typedef BYTE *LPBYTE;
typedef WORD *PWORD;
typedef ULONG *PULONG;
typedef UINT *PUINT;
typedef LONG *PLONG;
typedef BOOL *PBOOL;
typedef char *LPSTR;
typedef const char *LPCSTR;
typedef uint64_t ULONGLONG;
typedef int64_t LONGLONG;
typedef uint64_t DWORD64;

#ifndef TRUE
#define TRUE 1
#endif
#ifndef FALSE
#define FALSE 0
#endif

/* allocation and free types */
#define MEM_COMMIT          0x00001000
#define MEM_RESERVE         0x00002000
#define MEM_DECOMMIT        0x00004000
#define MEM_RELEASE         0x00008000
#define MEM_FREE            0x00010000
#define MEM_PRIVATE         0x00020000
#define MEM_MAPPED          0x00040000
#define MEM_RESET           0x00080000
#define MEM_TOP_DOWN        0x00100000
#define MEM_WRITE_WATCH     0x00200000
#define MEM_PHYSICAL        0x00400000
#define MEM_IMAGE           0x01000000
#define MEM_RESET_UNDO      0x01000000
#define MEM_LARGE_PAGES     0x20000000
#define MEM_4MB_PAGES       0x80000000  /* not supported: refused with 87 */
#define AT_ROUND_TO_PAGE    0x40000000  /* not supported: VirtualAlloc refuses it with 87, as Windows x64 */

/* protections */
#define PAGE_NOACCESS           0x01
#define PAGE_READONLY           0x02
#define PAGE_READWRITE          0x04
#define PAGE_WRITECOPY          0x08
#define PAGE_EXECUTE            0x10
#define PAGE_EXECUTE_READ       0x20
#define PAGE_EXECUTE_READWRITE  0x40
#define PAGE_EXECUTE_WRITECOPY  0x80
#define PAGE_GUARD              0x100
#define PAGE_NOCACHE            0x200
#define PAGE_WRITECOMBINE       0x400

#define WRITE_WATCH_FLAG_RESET  0x01

/* winerror.h values used by these functions */
#define ERROR_SUCCESS               0L
#define NO_ERROR                    0L
#define ERROR_INVALID_FUNCTION      1L
#define ERROR_ACCESS_DENIED         5L
#define ERROR_INVALID_HANDLE        6L
#define ERROR_NOT_ENOUGH_MEMORY     8L
#define ERROR_OUTOFMEMORY           14L
#define ERROR_BAD_LENGTH            24L
#define ERROR_NOT_SUPPORTED         50L
#define ERROR_INVALID_PARAMETER     87L
#define ERROR_INVALID_ADDRESS       487L
#define ERROR_NOACCESS              998L
#define ERROR_INVALID_FLAGS         1004L
#define ERROR_PRIVILEGE_NOT_HELD    1314L
#define ERROR_NO_SYSTEM_RESOURCES   1450L
#define ERROR_COMMITMENT_LIMIT      1455L

#define STATUS_GUARD_PAGE_VIOLATION ((DWORD)0x80000001L)

typedef struct _MEMORY_BASIC_INFORMATION {
    PVOID BaseAddress;
    PVOID AllocationBase;
    DWORD AllocationProtect;
    WORD PartitionId;
    SIZE_T RegionSize;
    DWORD State;
    DWORD Protect;
    DWORD Type;
} MEMORY_BASIC_INFORMATION, *PMEMORY_BASIC_INFORMATION;

#ifndef DUMMYUNIONNAME
#ifdef NONAMELESSUNION
#define DUMMYUNIONNAME u
#define DUMMYSTRUCTNAME s
#else
#define DUMMYUNIONNAME
#define DUMMYSTRUCTNAME
#endif
#endif

#if defined(__GNUC__) && !defined(NONAMELESSUNION)
#define HM_ANON_ __extension__ /* anonymous members, as Windows headers use them, even under -pedantic C99 */
#else
#define HM_ANON_
#endif

typedef struct _SYSTEM_INFO {
    HM_ANON_ union {
        DWORD dwOemId;
        HM_ANON_ struct {
            WORD wProcessorArchitecture;
            WORD wReserved;
        } DUMMYSTRUCTNAME;
    } DUMMYUNIONNAME;
    DWORD dwPageSize;
    LPVOID lpMinimumApplicationAddress;
    LPVOID lpMaximumApplicationAddress;
    DWORD_PTR dwActiveProcessorMask;
    DWORD dwNumberOfProcessors;
    DWORD dwProcessorType;
    DWORD dwAllocationGranularity;
    WORD wProcessorLevel;
    WORD wProcessorRevision;
} SYSTEM_INFO, *LPSYSTEM_INFO;

#define PROCESSOR_ARCHITECTURE_INTEL   0
#define PROCESSOR_ARCHITECTURE_ARM     5
#define PROCESSOR_ARCHITECTURE_AMD64   9
#define PROCESSOR_ARCHITECTURE_ARM64   12
#define PROCESSOR_AMD_X8664            8664

HM_API LPVOID WINAPI VirtualAlloc(LPVOID lpAddress, SIZE_T dwSize, DWORD flAllocationType,
                                  DWORD flProtect);
HM_API BOOL WINAPI VirtualFree(LPVOID lpAddress, SIZE_T dwSize, DWORD dwFreeType);
HM_API SIZE_T WINAPI VirtualQuery(LPCVOID lpAddress, PMEMORY_BASIC_INFORMATION lpBuffer,
                                  SIZE_T dwLength);
HM_API BOOL WINAPI VirtualProtect(LPVOID lpAddress, SIZE_T dwSize, DWORD flNewProtect,
                                  PDWORD lpflOldProtect);
HM_API UINT WINAPI GetWriteWatch(DWORD dwFlags, PVOID lpBaseAddress, SIZE_T dwRegionSize,
                                 PVOID *lpAddresses, ULONG_PTR *lpdwCount,
                                 DWORD *lpdwGranularity);
HM_API UINT WINAPI ResetWriteWatch(LPVOID lpBaseAddress, SIZE_T dwRegionSize);
HM_API DWORD WINAPI GetLastError(void);
HM_API void WINAPI SetLastError(DWORD dwErrCode);
HM_API void WINAPI GetSystemInfo(LPSYSTEM_INFO lpSystemInfo);
HM_API SIZE_T WINAPI GetLargePageMinimum(void);

#ifdef __cplusplus
}
#endif
#endif
