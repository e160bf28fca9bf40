/* win32_testutil.h — shared by the Win32/hm_* API tests: PG/GRAN/POISON/ANY, snapshot checks, ALLOC_OK, release, free_range, REGION, byte patterns. */
#ifndef HM_WIN32_TESTUTIL_H
#define HM_WIN32_TESTUTIL_H

#include <hostmem/win32.h>

#include "testutil.h"

#define PG ((SIZE_T)4096)
#define GRAN ((SIZE_T)65536)
#define POISON ((DWORD)0xdeadbeef)
#define ANY ((SIZE_T)-1)

/* Taken before a call that must fail; snap_check_unchanged() compares the map after it with this. */
static tu_snapshot snap_before, snap_after;

/* Field-wise comparison of two snapshots (hm_region has padding), naming the caller's line. */
static inline void snap_check_unchanged(int line)
{
    tu_snapshot_take(&snap_after);
    if (snap_before.n != snap_after.n)
        fail_msg("line %d: the region map changed after a failed call (%zu regions before, %zu after)", line,
                 snap_before.n, snap_after.n);
    for (size_t i = 0; i < snap_before.n; i++) {
        const hm_region *a = &snap_before.r[i], *b = &snap_after.r[i];
        if (a->base != b->base || a->allocation_base != b->allocation_base ||
            a->allocation_protect != b->allocation_protect || a->size != b->size || a->state != b->state ||
            a->protect != b->protect || a->type != b->type || a->partition_id != b->partition_id)
            fail_msg("line %d: region %zu changed after a failed call: %p+%#zx state %#x prot %#x -> %p+%#zx "
                     "state %#x prot %#x",
                     line, i, a->base, a->size, a->state, a->protect, b->base, b->size, b->state, b->protect);
    }
}

#define ALLOC_OK(addr, size, type, prot, expect) alloc_ok((void *)(addr), (size), (type), (prot), (void *)(expect), __LINE__)
/* A VirtualAlloc that must succeed; expect (unless NULL) is the base it must return. */
static inline void *alloc_ok(void *addr, SIZE_T size, DWORD type, DWORD prot, void *expect, int line)
{
    SetLastError(POISON);
    void *r = VirtualAlloc(addr, size, type, prot);
    if (r == NULL)
        fail_msg("line %d: VirtualAlloc(%p, %#zx, %#x, %#x) failed with last error %u (%s)", line, addr, size, type,
                 prot, GetLastError(), hm_last_detail());
    if (expect && r != expect)
        fail_msg("line %d: VirtualAlloc(%p, %#zx, %#x, %#x) = %p, expected %p", line, addr, size, type, prot, r,
                 expect);
    return r;
}

static inline void release(void *p)
{
    SetLastError(POISON);
    if (!VirtualFree(p, 0, MEM_RELEASE)) fail_msg("VirtualFree(%p, 0, MEM_RELEASE) failed: %u", p, GetLastError());
}

/* A 64 KiB aligned address where `size` bytes are free in the map right now. */
static inline char *free_range(SIZE_T size)
{
    void *p = VirtualAlloc(NULL, size, MEM_RESERVE, PAGE_NOACCESS);
    assert_non_null(p);
    release(p);
    return p;
}

#define REGION(addr, base, abase, aprot, size, state, prot, type) \
    check_region(__LINE__, (addr), (void *)(base), (void *)(abase), (aprot), (size), (state), (prot), (type))
/* SPEC 2.5: what VirtualQuery must say at addr. size ANY skips the size check. */
static inline void check_region(int line, const void *addr, void *base, void *abase, DWORD aprot, SIZE_T size,
                                DWORD state, DWORD prot, DWORD type)
{
    MEMORY_BASIC_INFORMATION m;
    memset(&m, 0xAB, sizeof m);
    SetLastError(POISON);
    SIZE_T n = VirtualQuery(addr, &m, sizeof m);
    if (n != sizeof m) fail_msg("line %d: VirtualQuery(%p) = %zu, last error %u", line, addr, n, GetLastError());
    if (m.BaseAddress != base || m.AllocationBase != abase || m.AllocationProtect != aprot ||
        (size != ANY && m.RegionSize != size) || m.State != state || m.Protect != prot || m.Type != type ||
        m.PartitionId != 0 || m.RegionSize == 0)
        fail_msg("line %d: VirtualQuery(%p) = {base %p, abase %p, aprot %#x, size %#zx, state %#x, prot %#x, type "
                 "%#x, part %u}; expected {%p, %p, %#x, %#zx, %#x, %#x, %#x}",
                 line, addr, m.BaseAddress, m.AllocationBase, m.AllocationProtect, m.RegionSize, m.State, m.Protect,
                 m.Type, m.PartitionId, base, abase, aprot, size, state, prot, type);
}

static inline void assert_zero(const void *p, SIZE_T n)
{
    const unsigned char *c = p;
    for (SIZE_T i = 0; i < n; i++)
        if (c[i] != 0) fail_msg("byte %zu at %p is %#x, expected 0", i, (const void *)(c + i), c[i]);
}

/* A byte pattern that differs between neighbouring bytes and between pages; fill() writes it, assert_pattern()
 * checks it. */
static inline unsigned char pattern(SIZE_T i) { return (unsigned char)(1 + (i * 7 + i / 4096) % 251); }

static inline void fill(void *p, SIZE_T n)
{
    for (SIZE_T i = 0; i < n; i++) ((unsigned char *)p)[i] = pattern(i);
}

static inline void assert_pattern(const void *p, SIZE_T n)
{
    const unsigned char *c = p;
    for (SIZE_T i = 0; i < n; i++)
        if (c[i] != pattern(i)) fail_msg("byte %zu at %p is %#x, expected %#x", i, (const void *)(c + i), c[i], pattern(i));
}

#endif
