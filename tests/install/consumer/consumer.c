/* consumer.c — an installed-hostmem consumer: the Win32 names of <hostmem/win32.h> and the hm_* API of <hostmem/hostmem.h>. */
#include <stdio.h>
#include <string.h>

#include <hostmem/hostmem.h>
#include <hostmem/win32.h>

static int failures;

#define CHECK(cond)                                                                          \
    do {                                                                                     \
        if (!(cond)) {                                                                       \
            fprintf(stderr, "consumer: %s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
            failures++;                                                                      \
        }                                                                                    \
    } while (0)

int main(void)
{
    SYSTEM_INFO si;
    memset(&si, 0, sizeof si);
    GetSystemInfo(&si);
    CHECK(si.dwPageSize == 4096);
    CHECK(si.dwAllocationGranularity == 65536);

    hm_vm_stats before, after;
    hm_vm_get_stats(&before);

    /* reserve 1 MiB, commit two pages in its second granule */
    char *p = VirtualAlloc(NULL, 1 << 20, MEM_RESERVE, PAGE_NOACCESS);
    CHECK(p != NULL);
    if (!p) return 1;
    CHECK(((ULONG_PTR)p & 0xFFFF) == 0);
    char *c = VirtualAlloc(p + 65536, 8192, MEM_COMMIT, PAGE_READWRITE);
    CHECK(c == p + 65536);
    if (!c) return 1;
    memset(c, 0x5A, 8192);
    CHECK(c[0] == 0x5A && c[8191] == 0x5A);

    MEMORY_BASIC_INFORMATION mbi;
    CHECK(VirtualQuery(c + 100, &mbi, sizeof mbi) == sizeof mbi);
    CHECK(mbi.BaseAddress == c);
    CHECK(mbi.AllocationBase == p);
    CHECK(mbi.AllocationProtect == PAGE_NOACCESS);
    CHECK(mbi.RegionSize == 8192);
    CHECK(mbi.State == MEM_COMMIT);
    CHECK(mbi.Protect == PAGE_READWRITE);
    CHECK(mbi.Type == MEM_PRIVATE);
    CHECK(VirtualQuery(p, &mbi, sizeof mbi) == sizeof mbi);
    CHECK(mbi.State == MEM_RESERVE && mbi.Protect == 0 && mbi.RegionSize == 65536);

    DWORD old = 0;
    CHECK(VirtualProtect(c, 4096, PAGE_READONLY, &old));
    CHECK(old == PAGE_READWRITE);
    CHECK(c[4095] == 0x5A);

    /* a bad free type fails with ERROR_INVALID_PARAMETER, through the hm_* API too */
    SetLastError(0);
    CHECK(!VirtualFree(p, 0, MEM_DECOMMIT | MEM_RELEASE));
    CHECK(GetLastError() == ERROR_INVALID_PARAMETER);
    hm_status st = hm_virtual_free(NULL, p, 0, HM_MEM_DECOMMIT | HM_MEM_RELEASE);
    CHECK(st == HM_E_INVALID_PARAMETER);
    CHECK(hm_status_win32_error(st) == ERROR_INVALID_PARAMETER);
    CHECK(strlen(hm_status_name(st)) > 0 && strlen(hm_status_message(st)) > 0);

    hm_vm_get_stats(&after);
    CHECK(after.allocations == before.allocations + 1);
    CHECK(after.committed_bytes == before.committed_bytes + 8192);

    CHECK(VirtualFree(c, 8192, MEM_DECOMMIT));
    CHECK(VirtualQuery(c, &mbi, sizeof mbi) == sizeof mbi);
    CHECK(mbi.State == MEM_RESERVE && mbi.RegionSize == (1 << 20) - 65536 && mbi.AllocationBase == p);
    CHECK(VirtualFree(p, 0, MEM_RELEASE));
    CHECK(VirtualQuery(p, &mbi, sizeof mbi) == sizeof mbi);
    CHECK(mbi.State == MEM_FREE && mbi.AllocationBase == NULL);

    hm_vm_get_stats(&after);
    CHECK(after.allocations == before.allocations);
    CHECK(after.committed_bytes == before.committed_bytes);

    if (failures) {
        fprintf(stderr, "consumer: %d check(s) failed\n", failures);
        return 1;
    }
    printf("consumer: ok\n");
    return 0;
}
