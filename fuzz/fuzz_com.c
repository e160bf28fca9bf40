/* fuzz_com.c — libFuzzer target for the CLR hosting surface (SPEC 1): IHostControl,
 * IHostMemoryManager and IHostMalloc called only through their vtables, with arguments the input
 * chooses, bad ones mostly: NULL and poisoned out-pointers, NULL and garbage REFIIDs, unknown flag
 * bits, critical levels out of range, wild and interior pointers, odd address ranges, and a shutdown
 * of the manager part-way (after which every manager call must be HOST_E_CLRNOTAVAILABLE).
 *
 * Input: byte 0 picks the manager's options (`configs`); then one operation per opcode byte, each
 * taking the bytes it needs (zeros once the input runs out). Each input builds its own host control,
 * and at its end releases every reference it holds; then the manager must be gone (no allocation
 * left in the map) and every callback object back to the one reference the fuzzer holds.
 *
 * Checked for every call: the HRESULT is S_OK or a failure the SPEC names (never S_FALSE, never
 * HRESULT_FROM_WIN32(8) or (1455), which must be E_OUTOFMEMORY); every out-pointer of a failing
 * call is NULL/zero (SPEC 1.1; pre-filled with a poison value); E_POINTER for a required NULL
 * out-pointer; E_INVALIDARG for unknown flag bits and levels; IHostMalloc::Free(NULL) is S_OK.
 * Where the arguments decide the answer for certain (SPEC 1.1, 2.2-2.5, 3.1, 3.2, 3.6, 4), that
 * answer: ERROR_INVALID_PARAMETER cases are E_INVALIDARG, a commit outside any allocation
 * 0x800701E7, a commit larger than the limit E_OUTOFMEMORY, a Free of a live block S_OK (its
 * contents intact) or HOST_E_NOT_OWNER from another heap, anything else HOST_E_INVALIDOPERATION, ...
 * "Any allocation here?" is asked of the map itself (hm_vmap_lookup), and the map's invariants are
 * checked at the end of each input (hm_vmap_check; against /proc/self/maps for the first input and
 * every 8th). Elsewhere only success-or-a-legal-failure is checked.
 *
 * Operations never modify memory of the manager's heaps through VirtualAlloc/Free/Protect (a
 * runtime never does; Windows heaps would not survive it either): such calls are skipped.
 *
 * To fuzz past a defect that is known and not fixed yet, HM_FUZZ_COM_KNOWN (a comma-separated list)
 * turns its check into a note on stderr (once per kind and method) instead of an abort:
 *   out      a failing call left an out-pointer as it was
 *   va-wrap  a recorded mapping that does not count against va.limit (the count wrapped) */
#define _GNU_SOURCE
#include <hostmem/clrhost.h>
#include <hostmem/hostmem.h>

#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "manager/manager.h"
#include "vmap/vmap.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define POISON_PTR ((void *)(uintptr_t)0x5a5a5a5a5a5a5a5aull)
#define POISON_SIZE ((SIZE_T)0x5a5a5a5a5a5a5a5aull)
#define POISON_DWORD ((DWORD)0x5a5a5a5au)
#define PAGE ((uintptr_t)4096)
#define GRANULE ((uintptr_t)65536)
#define MIN_ADDR ((uintptr_t)0x10000)
#define HRESULT_FROM_WIN32_8 ((HRESULT)0x80070008)
#define HRESULT_FROM_WIN32_1455 ((HRESULT)0x800705AF)

/* ---- reporting -------------------------------------------------------------------------------- */

static const char *cur_op = "setup";
static unsigned cur_step;
static const char *known_defects = ""; /* HM_FUZZ_COM_KNOWN */

static void __attribute__((noreturn, format(printf, 1, 2))) violation(const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "\nfuzz_com: CONTRACT VIOLATION in %s (operation %u): ", cur_op, cur_step);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    const char *d = hm_last_detail();
    fprintf(stderr, "\n  hm_last_detail(): \"%s\"\n", d ? d : "(null)");
    abort();
}

/* A violation of a kind listed in HM_FUZZ_COM_KNOWN is only noted (once per kind and message). */
static void __attribute__((format(printf, 2, 3))) known_violation(const char *kind, const char *fmt, ...)
{
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    size_t kl = strlen(kind);
    bool known = false;
    for (const char *k = known_defects; *k;) {
        size_t n = strcspn(k, ",");
        known |= n == kl && !strncmp(k, kind, kl);
        k += n + (k[n] == ',');
    }
    if (!known) violation("%s", msg);
    static const char *seen[32][2]; /* (kind, operation) pairs noted: both static strings */
    for (int i = 0; i < 32; i++) {
        if (seen[i][0] == kind && seen[i][1] == cur_op) return;
        if (!seen[i][0]) {
            seen[i][0] = kind;
            seen[i][1] = cur_op;
            fprintf(stderr, "fuzz_com: known defect (%s), not fatal, in %s: %s\n", kind, cur_op, msg);
            return;
        }
    }
}

/* A failing call left an out-pointer as it was (SPEC 1.1: NULL whenever the call fails). */
static void out_not_cleared(const char *what, HRESULT hr, uint64_t value)
{
    known_violation("out", "%s failed (%#x) but left its out-parameter at %#" PRIx64 " (must be NULL/0)", what,
                    (unsigned)hr, value);
}

/* ---- the input ---------------------------------------------------------------------------------- */

typedef struct reader {
    const uint8_t *p;
    size_t n;
} reader;

static uint8_t rd8(reader *r)
{
    if (!r->n) return 0;
    r->n--;
    return *r->p++;
}
/* Little-endian; each read sequenced (the operands of | are not). */
static uint16_t rd16(reader *r)
{
    uint16_t lo = rd8(r);
    return (uint16_t)(lo | rd8(r) << 8);
}
static uint32_t rd32(reader *r)
{
    uint32_t lo = rd16(r);
    return lo | (uint32_t)rd16(r) << 16;
}
static uint64_t rd64(reader *r)
{
    uint64_t lo = rd32(r);
    return lo | (uint64_t)rd32(r) << 32;
}

/* ---- expected results ----------------------------------------------------------------------------- */

enum {
    X_OK = 1 << 0,
    X_POINTER = 1 << 1,
    X_INVALIDARG = 1 << 2,
    X_ADDRESS = 1 << 3, /* HRESULT_FROM_WIN32(487) */
    X_OOM = 1 << 4,
    X_TIMEOUT = 1 << 5,
    X_INVALOP = 1 << 6,
    X_NOTOWNER = 1 << 7,
    X_NOINTERFACE = 1 << 8,
    X_CLR = 1 << 9,
    X_BADLEN = 1 << 10, /* HRESULT_FROM_WIN32(24) */
    X_NOACCESS = 1 << 11, /* HRESULT_FROM_WIN32(998) */
    X_ANYFAIL = 1 << 30,  /* any failure the SPEC allows at all */
};
#define X_ANY (X_OK | X_ANYFAIL)

static unsigned bit_of(HRESULT hr)
{
    switch (hr) {
    case S_OK: return X_OK;
    case E_POINTER: return X_POINTER;
    case E_INVALIDARG: return X_INVALIDARG;
    case HRESULT_FROM_WIN32(ERROR_INVALID_ADDRESS): return X_ADDRESS;
    case E_OUTOFMEMORY: return X_OOM;
    case HOST_E_TIMEOUT: return X_TIMEOUT;
    case HOST_E_INVALIDOPERATION: return X_INVALOP;
    case HOST_E_NOT_OWNER: return X_NOTOWNER;
    case E_NOINTERFACE: return X_NOINTERFACE;
    case HOST_E_CLRNOTAVAILABLE: return X_CLR;
    case HRESULT_FROM_WIN32(ERROR_BAD_LENGTH): return X_BADLEN;
    case HRESULT_FROM_WIN32(ERROR_NOACCESS): return X_NOACCESS;
    default: return 0;
    }
}

/* SPEC 1.1: S_OK or one of its failures; a memory refusal is E_OUTOFMEMORY, never 8 or 1455. */
static bool legal(HRESULT hr)
{
    if (hr == S_OK) return true;
    if (hr > 0) return false; /* S_FALSE and friends: the runtime takes them for failures */
    if (hr == HRESULT_FROM_WIN32_8 || hr == HRESULT_FROM_WIN32_1455) return false;
    if (((uint32_t)hr >> 16) == 0x8007u) return true; /* HRESULT_FROM_WIN32 of a Win32 error */
    switch (hr) {
    case E_NOTIMPL:
    case E_NOINTERFACE:
    case E_POINTER:
    case E_FAIL:
    case HOST_E_INVALIDOPERATION:
    case HOST_E_CLRNOTAVAILABLE:
    case HOST_E_TIMEOUT:
    case HOST_E_NOT_OWNER:
    case HOST_E_ABANDONED: return true;
    default: return false;
    }
}

static void expect(HRESULT hr, unsigned want, const char *why)
{
    if (!legal(hr)) violation("returned %#x, which is not an HRESULT the SPEC allows here", (unsigned)hr);
    if (bit_of(hr) & want) return;
    if ((want & X_ANYFAIL) && FAILED(hr)) return;
    violation("returned %#x; expected (mask %#x): %s", (unsigned)hr, want, why);
}

/* ---- the world of one input -------------------------------------------------------------------- */

enum kind { KIND_HC, KIND_MM, KIND_HEAP, KIND_UNK };

typedef struct ref {
    void *p;          /* an interface pointer the fuzzer owns one reference to */
    enum kind kind;   /* what p is (KIND_UNK: only IUnknown's methods) */
    enum kind okind;  /* what the object behind it is */
    void *obj;        /* the object's identity: its pointer as first handed out */
} ref;

typedef struct block {
    uint8_t *p;
    size_t size;
    void *heap;       /* identity of the heap it came from */
    bool exec;        /* from an executable heap: not written (it may be execute-read only) */
    bool debug;       /* from DebugAlloc */
    uint8_t fill;
} block;

typedef struct region {
    uintptr_t base;
    size_t size;
} region;

typedef struct heapinfo {
    void *obj;
    DWORD flags;
} heapinfo;

typedef struct va_rec {
    uintptr_t start;
    SIZE_T size;
} va_rec;

#define MAX_REFS 24
#define MAX_BLOCKS 48
#define MAX_REGIONS 16
#define MAX_HEAPS 6
#define MAX_VA 16
#define MAX_FREED 8
#define MAX_OPS 200
#define FILL_MAX 1024 /* bytes of each block written and verified (and the last 16) */

static struct world {
    ref refs[MAX_REFS];
    int nrefs;
    bool cross_qi;        /* a QueryInterface handed out another interface: identities blur */
    block blocks[MAX_BLOCKS];
    int nblocks;
    uintptr_t freed[MAX_FREED]; /* recently freed blocks */
    int nfreed;
    region regions[MAX_REGIONS];
    int nregions;
    uintptr_t released[4];      /* bases of recently released regions */
    heapinfo heaps[MAX_HEAPS];
    int nheaps;
    va_rec va[MAX_VA];
    int nva;
    hm_manager *m;        /* the manager behind the COM objects (NULL once destroyed) */
    hm_manager_stats cfg; /* its settings, read at creation */
    bool stopped;         /* shut down or failed: every manager call is HOST_E_CLRNOTAVAILABLE */
    bool shutdown_done;
    bool any_wait;        /* a refused request may wait (wait.* > 0): HOST_E_TIMEOUT is a refusal too */
    int ncallbacks;       /* successful registrations */
} w;

static const char *const configs[] = {
    "limit=1M,reserve.process=256K,va.limit=64M",
    "limit=4M,reserve.appdomain=1M,reserve.process=1M,va.limit=256M",
    "limit=64M,va.limit=512M",
    "limit=256K,wait.appdomain=1ms,va.limit=64M",
    "limit=16M,reserve.appdomain=4M,reserve.process=4M,va.limit=32M,heap.guard=on",
    "limit=2M,notify.low=10,notify.high=20,va.limit=64M",
    "limit=32M,win32.level=task,va.limit=1G",
    "limit=8M,va.limit=1M",
};
#define NCONFIGS (sizeof configs / sizeof configs[0])

/* ---- the callback object (the runtime's side) ---------------------------------------------------- */

typedef struct fuzz_cb {
    ICLRMemoryNotificationCallback iface;
    atomic_int refs; /* 1: the fuzzer's own */
    atomic_int calls;
} fuzz_cb;

static fuzz_cb cbs[2];
static pthread_t fuzz_thread;

static const IID *const known_iids[] = {&IID_IUnknown, &IID_IHostControl, &IID_IHostMemoryManager, &IID_IHostMalloc,
                                        &IID_ICLRMemoryNotificationCallback};

static bool iid_is(REFIID a, const IID *b) { return a && !memcmp(a, b, sizeof(IID)); }

static HRESULT STDMETHODCALLTYPE cb_QueryInterface(ICLRMemoryNotificationCallback *This, REFIID riid, void **ppv)
{
    if (!ppv) return E_POINTER;
    *ppv = NULL;
    if (!iid_is(riid, &IID_IUnknown) && !iid_is(riid, &IID_ICLRMemoryNotificationCallback)) return E_NOINTERFACE;
    atomic_fetch_add(&((fuzz_cb *)This)->refs, 1);
    *ppv = This;
    return S_OK;
}

static ULONG STDMETHODCALLTYPE cb_AddRef(ICLRMemoryNotificationCallback *This)
{
    return (ULONG)atomic_fetch_add(&((fuzz_cb *)This)->refs, 1) + 1;
}

static ULONG STDMETHODCALLTYPE cb_Release(ICLRMemoryNotificationCallback *This)
{
    int left = atomic_fetch_sub(&((fuzz_cb *)This)->refs, 1) - 1;
    if (left < 1) violation("the host released a callback object more often than it AddRef'd it");
    return (ULONG)left;
}

/* SPEC 3.5: a state 1..3, on the manager's own thread (never the allocating one), while held. */
static HRESULT STDMETHODCALLTYPE cb_OnMemoryNotification(ICLRMemoryNotificationCallback *This, EMemoryAvailable e)
{
    fuzz_cb *c = (fuzz_cb *)This;
    if ((int)e < eMemoryAvailableLow || (int)e > eMemoryAvailableHigh)
        violation("OnMemoryNotification(%d): not an EMemoryAvailable", (int)e);
    if (pthread_equal(pthread_self(), fuzz_thread)) violation("OnMemoryNotification on the allocating thread");
    if (atomic_load(&c->refs) < 2) violation("OnMemoryNotification on a callback the host does not hold");
    atomic_fetch_add(&c->calls, 1);
    return S_OK;
}

static const ICLRMemoryNotificationCallbackVtbl cb_vtbl = {cb_QueryInterface, cb_AddRef, cb_Release,
                                                           cb_OnMemoryNotification};

/* ---- rules the arguments decide (SPEC 2.1) -------------------------------------------------------- */

static uintptr_t max_address; /* highest usable byte (GetSystemInfo) */

static bool prot_valid(DWORD p)
{
    if (p & ~(DWORD)0x7ff) return false;
    DWORD base = p & 0xff, mods = p & 0x700;
    switch (base) {
    case PAGE_NOACCESS:
    case PAGE_READONLY:
    case PAGE_READWRITE:
    case PAGE_EXECUTE:
    case PAGE_EXECUTE_READ:
    case PAGE_EXECUTE_READWRITE: break;
    default: return false; /* 0, two base bits, WRITECOPY */
    }
    if ((mods & PAGE_GUARD) && base == PAGE_NOACCESS) return false;
    if ((mods & PAGE_NOCACHE) && ((mods & (PAGE_GUARD | PAGE_WRITECOMBINE)) || base == PAGE_NOACCESS)) return false;
    if ((mods & PAGE_WRITECOMBINE) && ((mods & (PAGE_GUARD | PAGE_NOCACHE)) || base == PAGE_NOACCESS)) return false;
    return true;
}

#define KNOWN_TYPES \
    (MEM_COMMIT | MEM_RESERVE | MEM_RESET | MEM_RESET_UNDO | MEM_TOP_DOWN | MEM_WRITE_WATCH | MEM_PHYSICAL | MEM_LARGE_PAGES)

/* VirtualAlloc arguments that are ERROR_INVALID_PARAMETER whatever the address space holds (SPEC
 * 2.2), or a level out of range (E_INVALIDARG at the COM layer). */
static bool alloc_args_bad(uintptr_t addr, SIZE_T size, DWORD type, DWORD prot, int level)
{
    if ((unsigned)level > eProcessCritical) return true;
    if (size == 0 || size > max_address + 1) return true;
    if (type & ~(DWORD)KNOWN_TYPES) return true;
    if (!(type & (MEM_COMMIT | MEM_RESERVE | MEM_RESET | MEM_RESET_UNDO))) return true;
    if ((type & MEM_RESET) && type != MEM_RESET) return true; /* "must be used alone" */
    if ((type & MEM_RESET_UNDO) && type != MEM_RESET_UNDO) return true;
    if ((type & MEM_WRITE_WATCH) && !(type & MEM_RESERVE)) return true;
    if (addr && (addr < MIN_ADDR || addr > max_address || addr + size < addr)) return true;
    if (type != MEM_RESET_UNDO && !prot_valid(prot)) return true; /* "also for a pure MEM_RESERVE" */
    return false;
}

/* A valid protection whose commit nothing in the SPEC lets fail but the budget: no write-and-execute
 * (a W^X system may refuse it) and no NOCACHE/WRITECOMBINE (they belong to the allocation, SPEC 2.1). */
static bool prot_plain(DWORD p)
{
    return prot_valid(p) && (p & 0xff) != PAGE_EXECUTE_READWRITE && !(p & (PAGE_NOCACHE | PAGE_WRITECOMBINE));
}

static uintptr_t round_up_page(uintptr_t x) { return (x + PAGE - 1) & ~(PAGE - 1); }

/* The allocation holding addr, if any (the map's own answer). */
static bool lookup(uintptr_t addr, hm_vmap_info *info) { return hm_vmap_lookup((const void *)addr, info); }

/* Calls that change memory must not touch the heaps' own allocations (see the header). */
static bool in_heap(uintptr_t addr)
{
    hm_vmap_info info;
    return lookup(addr, &info) && (info.flags & HM_AF_TAGGED);
}

/* ---- references -------------------------------------------------------------------------------- */

static bool holds_obj(void *obj)
{
    for (int i = 0; i < w.nrefs; i++)
        if (w.refs[i].obj == obj) return true;
    return false;
}

static void forget_heap_blocks(void *heap);

static void add_ref(void *p, enum kind kind, enum kind okind, void *obj)
{
    if (w.nrefs == MAX_REFS) { /* no room: give it back at once */
        ((IUnknown *)p)->lpVtbl->Release((IUnknown *)p);
        if (okind == KIND_HEAP && !holds_obj(obj)) forget_heap_blocks(obj); /* that was a new heap's only one */
        return;
    }
    w.refs[w.nrefs++] = (ref){p, kind, okind, obj};
}

static ref *pick_ref(reader *r, int kind_or_minus1)
{
    int idx[MAX_REFS], n = 0;
    for (int i = 0; i < w.nrefs; i++)
        if (kind_or_minus1 < 0 || (int)w.refs[i].kind == kind_or_minus1) idx[n++] = i;
    if (!n) return NULL;
    return &w.refs[idx[rd8(r) % n]];
}

static void forget_heap_blocks(void *heap)
{
    for (int i = 0; i < w.nblocks;)
        if (w.blocks[i].heap == heap) w.blocks[i] = w.blocks[--w.nblocks];
        else i++;
    for (int i = 0; i < w.nheaps; i++)
        if (w.heaps[i].obj == heap) {
            w.heaps[i] = w.heaps[--w.nheaps];
            break;
        }
}

static void manager_gone(void);

/* Releases refs[i] and forgets it; the objects this ends go with it. */
static void release_ref(int i)
{
    ref rf = w.refs[i];
    w.refs[i] = w.refs[--w.nrefs];
    ULONG left = ((IUnknown *)rf.p)->lpVtbl->Release((IUnknown *)rf.p);
    if (left == 0 && !w.cross_qi && holds_obj(rf.obj))
        violation("Release returned 0 while the fuzzer still holds another reference to the object");
    if (rf.okind == KIND_HEAP && !holds_obj(rf.obj)) forget_heap_blocks(rf.obj); /* the heap is destroyed */
    if (w.nrefs == 0) manager_gone();
}

/* ---- choosing arguments -------------------------------------------------------------------------- */

static char static_area[8192];

static uintptr_t pick_addr(reader *r)
{
    static const uintptr_t wild[] = {
        1, 0xffff, 0x10000, 0x10001, 0x7ffffffeffffull, 0x7ffffffef000ull, 0x7fffffff0000ull, 0x800000000000ull,
        0xffff800000000000ull, UINTPTR_MAX, UINTPTR_MAX - 0xfff, 0x500000000000ull, 0x7ffffffff000ull,
    };
    uint8_t sel = rd8(r) % 12;
    if (sel >= 1 && sel <= 4 && w.nregions) {
        region *g = &w.regions[rd8(r) % w.nregions];
        switch (sel) {
        case 1: return g->base;
        case 2: return g->base + (rd16(r) % (g->size / PAGE + 17)) * PAGE; /* a page in it or just past */
        case 3: return g->base + rd16(r);
        default: return g->base - rd16(r);
        }
    }
    switch (sel) {
    case 5:
        if (w.nblocks) return (uintptr_t)w.blocks[rd8(r) % w.nblocks].p + rd8(r) % 33;
        return 0;
    case 6: return w.released[rd8(r) % 4];
    case 7: return wild[rd8(r) % (sizeof wild / sizeof wild[0])];
    case 8: return (uintptr_t)__builtin_frame_address(0) - rd8(r) * 8u; /* the stack */
    case 9: return (uintptr_t)static_area + rd8(r) * 16u;
    case 10: return (uintptr_t)rd64(r);
    case 11:
        if (w.nva) return w.va[rd8(r) % w.nva].start;
        return 0;
    default: return 0;
    }
}

static SIZE_T pick_size(reader *r)
{
    uint8_t sel = rd8(r) % 11;
    switch (sel) {
    case 0: return 0;
    case 1: return 1 + rd8(r);
    case 2: return PAGE;
    case 3: return GRANULE;
    case 4: return rd16(r);
    case 5: return rd32(r) % (16u << 20);
    case 6: return (SIZE_T)(rd8(r) % 64 + 1) * PAGE;
    case 7: {
        const SIZE_T big[] = {w.cfg.limit, w.cfg.limit + 1, w.cfg.limit + PAGE, (SIZE_T)1 << 40, (SIZE_T)1 << 47,
                              SIZE_MAX, SIZE_MAX - 0xfff, (SIZE_T)1 << 63, max_address + 1, max_address + 2};
        return big[rd8(r) % (sizeof big / sizeof big[0])];
    }
    case 8: return w.nregions ? w.regions[rd8(r) % w.nregions].size : PAGE;
    case 9: return w.cfg.limit - w.cfg.reserve_appdomain - w.cfg.reserve_process + (SIZE_T)(int8_t)rd8(r) * PAGE;
    default: return (SIZE_T)rd64(r);
    }
}

static DWORD pick_type(reader *r)
{
    static const DWORD bits[] = {MEM_COMMIT, MEM_RESERVE, MEM_RESET, MEM_RESET_UNDO, MEM_TOP_DOWN, MEM_WRITE_WATCH,
                                 MEM_PHYSICAL, MEM_LARGE_PAGES};
    DWORD t;
    switch (rd8(r) % 9) {
    case 0: t = MEM_RESERVE; break;
    case 1: t = MEM_COMMIT; break;
    case 2:
    case 3: t = MEM_RESERVE | MEM_COMMIT; break;
    case 4: t = MEM_RESET; break;
    case 5: t = MEM_RESET_UNDO; break;
    case 6: t = MEM_RESERVE | MEM_WRITE_WATCH; break;
    case 7: {
        uint8_t m = rd8(r);
        t = 0;
        for (int i = 0; i < 8; i++)
            if (m & (1u << i)) t |= bits[i];
        break;
    }
    default: t = rd32(r); break;
    }
    return t;
}

static DWORD pick_prot(reader *r)
{
    static const DWORD odd[] = {0,     PAGE_WRITECOPY, PAGE_EXECUTE_WRITECOPY, PAGE_READWRITE | PAGE_GUARD,
                                PAGE_READWRITE | PAGE_NOCACHE, PAGE_READWRITE | PAGE_WRITECOMBINE,
                                PAGE_NOACCESS | PAGE_GUARD, PAGE_READWRITE | PAGE_NOCACHE | PAGE_WRITECOMBINE,
                                PAGE_READONLY | PAGE_READWRITE, 0x800, PAGE_READONLY | PAGE_GUARD,
                                PAGE_EXECUTE_READ | PAGE_NOCACHE, 0x40000000 | PAGE_READWRITE};
    static const DWORD base[] = {PAGE_NOACCESS, PAGE_READONLY, PAGE_READWRITE, PAGE_EXECUTE, PAGE_EXECUTE_READ,
                                 PAGE_EXECUTE_READWRITE};
    uint8_t sel = rd8(r) % 10;
    if (sel < 5) return sel < 3 ? PAGE_READWRITE : base[rd8(r) % 6];
    if (sel < 9) return odd[rd8(r) % (sizeof odd / sizeof odd[0])];
    return rd32(r);
}

static int pick_level(reader *r)
{
    static const int odd[] = {3, -1, 7, 0x7fffffff, (int)0x80000000u, 255};
    uint8_t sel = rd8(r) % 8;
    if (sel < 6) return sel % 3;
    return odd[rd8(r) % (sizeof odd / sizeof odd[0])];
}

static void pick_iid(reader *r, IID *buf, REFIID *out)
{
    uint8_t sel = rd8(r) % 9;
    if (sel < 5) {
        *out = known_iids[sel];
        return;
    }
    if (sel == 5) {
        *out = NULL;
        return;
    }
    if (sel == 6) { /* a real IID with one bit flipped: certainly not offered */
        *buf = *known_iids[rd8(r) % 5];
        unsigned bit = rd8(r) % 128;
        ((uint8_t *)buf)[bit / 8] ^= (uint8_t)(1u << (bit % 8));
    } else {
        for (size_t i = 0; i < sizeof *buf; i++) ((uint8_t *)buf)[i] = rd8(r);
        for (int k = 0; k < 5; k++)
            if (iid_is(buf, known_iids[k])) buf->Data1 ^= 1; /* "garbage" stays garbage */
    }
    *out = buf;
}

static enum kind kind_of_iid(REFIID riid)
{
    if (iid_is(riid, &IID_IHostControl)) return KIND_HC;
    if (iid_is(riid, &IID_IHostMemoryManager)) return KIND_MM;
    if (iid_is(riid, &IID_IHostMalloc)) return KIND_HEAP;
    return KIND_UNK;
}

/* ---- the manager's numbers ------------------------------------------------------------------------- */

static hm_manager_stats stats(void)
{
    hm_manager_stats s;
    if (hm_manager_get_stats(w.m, &s) != HM_OK) violation("hm_manager_get_stats failed");
    return s;
}

/* A failure that makes the manager failed (SPEC 3.4): later calls are HOST_E_CLRNOTAVAILABLE. */
static void note_fail(HRESULT hr)
{
    if (hr == E_FAIL) w.stopped = true;
}

static unsigned refusal(void) { return X_OOM | (w.any_wait ? X_TIMEOUT : 0); }

/* ---- IHostMemoryManager ------------------------------------------------------------------------------ */

static IHostMemoryManager *pick_mm(reader *r)
{
    ref *rf = pick_ref(r, KIND_MM);
    return rf ? rf->p : NULL;
}

static void add_region(uintptr_t base, size_t size)
{
    if (w.nregions == MAX_REGIONS) { /* forget the oldest */
        memmove(&w.regions[0], &w.regions[1], sizeof w.regions - sizeof w.regions[0]);
        w.nregions--;
    }
    w.regions[w.nregions++] = (region){base, size};
}

static void drop_region(uintptr_t base)
{
    for (int i = 0; i < w.nregions; i++)
        if (w.regions[i].base == base) {
            w.regions[i] = w.regions[--w.nregions];
            break;
        }
    memmove(&w.released[1], &w.released[0], sizeof w.released - sizeof w.released[0]);
    w.released[0] = base;
}

static void op_virtual_alloc(reader *r)
{
    IHostMemoryManager *mm = pick_mm(r);
    if (!mm) return;
    uintptr_t addr = rd8(r) % 3 ? 0 : pick_addr(r);
    SIZE_T size = pick_size(r);
    DWORD type = pick_type(r);
    if (rd8(r) % 8 == 0) type |= MEM_TOP_DOWN;
    DWORD prot = pick_prot(r);
    int level = pick_level(r);
    bool null_out = rd8(r) % 16 == 0;
    if (addr && !(type & MEM_RESERVE) && in_heap(addr)) return;

    unsigned want;
    const char *why;
    hm_vmap_info info = {0};
    bool found = addr && lookup(addr, &info);
    bool bad = alloc_args_bad(addr, size, type, prot, level);
    DWORD plain = type & ~(DWORD)MEM_TOP_DOWN;
    /* the range lies in the user address space (else the answer may be 87 or 487: SPEC 2.2 is loose) */
    bool in_space = addr && addr + size > addr && addr + size <= max_address + 1;
    if (w.stopped) {
        want = X_CLR | (null_out ? X_POINTER : 0), why = "HOST_E_CLRNOTAVAILABLE after shutdown (SPEC 3.4)";
    } else if (null_out) {
        want = X_POINTER | (bad ? X_INVALIDARG : 0), why = "E_POINTER for a NULL ppMem";
    } else if (bad) {
        want = X_INVALIDARG, why = "E_INVALIDARG: ERROR_INVALID_PARAMETER arguments or level (SPEC 2.2, 1.1)";
    } else if (!addr && plain == (MEM_RESERVE | MEM_COMMIT) && size > w.cfg.limit && size <= ((SIZE_T)1 << 40)) {
        want = refusal(), why = "E_OUTOFMEMORY: a commit larger than the limit (SPEC 3.2)";
    } else if (in_space && (plain == MEM_COMMIT || plain == MEM_RESET) &&
               (!found || (round_up_page(addr + size) > info.base + info.size &&
                           !(info.flags & (HM_AF_PHYSICAL | HM_AF_LARGE))))) {
        want = X_ADDRESS, why = "0x800701E7: commit or reset of a range not inside one allocation (SPEC 2.2)";
    } else if (in_space && found && (type & MEM_RESERVE) &&
               !(type & ~(DWORD)(MEM_RESERVE | MEM_COMMIT | MEM_TOP_DOWN | MEM_WRITE_WATCH))) {
        want = X_ADDRESS, why = "0x800701E7: a reservation overlapping an allocation (SPEC 2.2)";
    } else if (in_space && plain == MEM_COMMIT && found && prot_plain(prot) &&
               !(info.flags & (HM_AF_PHYSICAL | HM_AF_LARGE)) && round_up_page(addr + size) <= info.base + info.size) {
        want = X_OK | refusal(), why = "a commit inside a reservation: S_OK or a refusal";
    } else {
        want = X_ANY, why = "";
    }

    void *out = POISON_PTR;
    HRESULT hr = IHostMemoryManager_VirtualAlloc(mm, (void *)addr, size, type, prot, (EMemoryCriticalLevel)level,
                                                 null_out ? NULL : &out);
    expect(hr, want, why);
    note_fail(hr);
    if (null_out) return;
    if (FAILED(hr)) {
        if (out) out_not_cleared("VirtualAlloc(*ppMem)", hr, (uint64_t)(uintptr_t)out);
        return;
    }
    uintptr_t base = (uintptr_t)out;
    if (!base) violation("VirtualAlloc succeeded with *ppMem NULL");
    if (type & MEM_RESERVE) {
        uintptr_t want_base = addr ? addr & ~(GRANULE - 1) : base & ~(GRANULE - 1);
        if (base != want_base) violation("VirtualAlloc reserved at %p for address %p (SPEC 2.2)", out, (void *)addr);
        size_t len = addr ? round_up_page(addr + size) - base : round_up_page(size);
        add_region(base, len);
        /* SPEC 2.1: a new commit reads as zero; written only where nothing watches or guards it */
        bool plain_rw = (prot == PAGE_READWRITE || prot == PAGE_EXECUTE_READWRITE) &&
                        (type & ~(DWORD)MEM_TOP_DOWN) == (MEM_RESERVE | MEM_COMMIT);
        if (plain_rw) {
            volatile uint8_t *b = out;
            uintptr_t last = addr ? addr + size - 1 - base : size - 1;
            if (b[0] || b[last]) violation("a new commit does not read as zero");
            b[0] = 0xa5;
            b[last] = 0x5a;
        }
    } else if ((type & (MEM_COMMIT | MEM_RESET)) && addr && base != (addr & ~(PAGE - 1))) {
        violation("VirtualAlloc(%p) returned %p, not the address rounded down to a page (SPEC 2.2)", (void *)addr, out);
    }
}

static void op_virtual_free(reader *r)
{
    IHostMemoryManager *mm = pick_mm(r);
    if (!mm) return;
    uintptr_t addr = pick_addr(r);
    SIZE_T size = rd8(r) % 2 ? 0 : pick_size(r);
    static const DWORD types[] = {MEM_DECOMMIT, MEM_RELEASE, MEM_RELEASE, 0, MEM_DECOMMIT | MEM_RELEASE, MEM_FREE,
                                  MEM_COMMIT};
    uint8_t ts = rd8(r) % 8;
    DWORD type = ts < 7 ? types[ts] : rd32(r);
    if (addr && in_heap(addr)) return;

    hm_vmap_info info = {0};
    bool found = addr && lookup(addr, &info);
    bool args_bad = (type != MEM_DECOMMIT && type != MEM_RELEASE) || !addr || (type == MEM_RELEASE && size != 0);
    bool plain = found && !(info.flags & (HM_AF_LARGE | HM_AF_PHYSICAL));
    uintptr_t page = addr & ~(PAGE - 1);
    unsigned want;
    const char *why = "";
    if (w.stopped) {
        want = X_CLR, why = "HOST_E_CLRNOTAVAILABLE after shutdown (SPEC 3.4)";
    } else if (args_bad) {
        want = X_INVALIDARG | (found || !addr ? 0 : X_INVALOP), why = "E_INVALIDARG: bad free type, NULL or size (SPEC 2.3)";
    } else if (!found) { /* a range reaching out of the user address space may be 87 first */
        bool in_space = addr >= MIN_ADDR && addr <= max_address && addr + size >= addr &&
                        addr + size <= max_address + 1;
        want = X_INVALOP | (in_space ? 0 : X_INVALIDARG);
        why = "HOST_E_INVALIDOPERATION: in no allocation (SPEC 3.1)";
    } else if (!plain) {
        want = X_ANY;
    } else if (size == 0) {
        want = page == info.base ? X_OK | X_OOM : X_ADDRESS, why = "size 0: the allocation's base, else 487 (SPEC 2.3)";
    } else if (addr + size < addr || round_up_page(addr + size) > info.base + info.size) {
        want = X_INVALIDARG, why = "decommit past the allocation's end (SPEC 2.3)";
    } else {
        want = X_OK | X_OOM, why = "decommit inside one allocation (or the OS refuses: SPEC 3.2)";
    }
    HRESULT hr = IHostMemoryManager_VirtualFree(mm, (void *)addr, size, type);
    expect(hr, want, why);
    note_fail(hr);
    if (hr == S_OK && type == MEM_RELEASE) {
        hm_vmap_info after;
        if (lookup(page, &after) && after.base == info.base) violation("released allocation still in the map");
        drop_region(info.base);
    }
}

static void op_virtual_query(reader *r)
{
    IHostMemoryManager *mm = pick_mm(r);
    if (!mm) return;
    uintptr_t addr = pick_addr(r);
    static const SIZE_T lens[] = {sizeof(MEMORY_BASIC_INFORMATION), sizeof(MEMORY_BASIC_INFORMATION), 0, 1, 47, 49, 64,
                                  256};
    SIZE_T len = lens[rd8(r) % 8];
    bool null_buf = rd8(r) % 16 == 0, null_res = rd8(r) % 16 == 0;
    void *buf = malloc(len ? len : 1); /* exactly len bytes: writing more is caught */
    memset(buf, 0xee, len);
    unsigned want;
    const char *why = "";
    bool beyond = addr > max_address;
    if (w.stopped) {
        want = X_CLR | (null_buf || null_res ? X_POINTER : 0), why = "HOST_E_CLRNOTAVAILABLE after shutdown";
    } else if (null_buf || null_res) {
        want = X_POINTER | (len < sizeof(MEMORY_BASIC_INFORMATION) ? X_BADLEN : 0) | (beyond ? X_INVALIDARG : 0);
        why = "E_POINTER for a NULL buffer or pResult";
    } else if (len < sizeof(MEMORY_BASIC_INFORMATION)) {
        want = X_BADLEN | (beyond ? X_INVALIDARG : 0), why = "ERROR_BAD_LENGTH for a short buffer (SPEC 2.5)";
    } else if (beyond) {
        want = X_INVALIDARG, why = "E_INVALIDARG above the user address space (SPEC 2.5)";
    } else {
        want = X_OK, why = "a query of a user address";
    }
    SIZE_T res = POISON_SIZE;
    HRESULT hr = IHostMemoryManager_VirtualQuery(mm, (void *)addr, null_buf ? NULL : buf, len, null_res ? NULL : &res);
    expect(hr, want, why);
    note_fail(hr);
    if (FAILED(hr)) {
        if (!null_res && res != 0) out_not_cleared("VirtualQuery(*pResult)", hr, res);
        free(buf);
        return;
    }
    if (res != sizeof(MEMORY_BASIC_INFORMATION)) violation("VirtualQuery *pResult = %zu", (size_t)res);
    MEMORY_BASIC_INFORMATION mbi;
    memcpy(&mbi, buf, sizeof mbi);
    free(buf);
    uintptr_t b = (uintptr_t)mbi.BaseAddress, sz = mbi.RegionSize;
    hm_vmap_info info;
    bool found = lookup(addr, &info);
    if (b != (addr & ~(PAGE - 1))) violation("query of %p: BaseAddress %p (SPEC 2.5)", (void *)addr, mbi.BaseAddress);
    if (!sz || sz % PAGE || b + sz < b || b + sz > max_address + 1)
        violation("query of %p: RegionSize %#zx (SPEC 2.5)", (void *)addr, (size_t)sz);
    if (mbi.State == MEM_FREE) {
        if (found) violation("query of %p: MEM_FREE inside an allocation at %#lx", (void *)addr, (unsigned long)info.base);
        if (mbi.AllocationBase || mbi.AllocationProtect || mbi.Type || mbi.Protect != PAGE_NOACCESS)
            violation("query of free %p: AllocationBase %p, AllocationProtect %#x, Protect %#x, Type %#x (SPEC 2.5)",
                      (void *)addr, mbi.AllocationBase, mbi.AllocationProtect, mbi.Protect, mbi.Type);
    } else if (mbi.State == MEM_RESERVE || mbi.State == MEM_COMMIT) {
        if (!found) violation("query of %p: state %#x but the map has no allocation there", (void *)addr, mbi.State);
        if ((uintptr_t)mbi.AllocationBase != info.base || b + sz > info.base + info.size)
            violation("query of %p: AllocationBase %p / region end %#lx, allocation [%#lx, +%#lx) (SPEC 2.5)",
                      (void *)addr, mbi.AllocationBase, (unsigned long)(b + sz), (unsigned long)info.base,
                      (unsigned long)info.size);
        if (mbi.Type != MEM_PRIVATE) violation("query of %p: Type %#x", (void *)addr, mbi.Type);
        if (mbi.State == MEM_RESERVE && mbi.Protect != 0) violation("reserved page with Protect %#x", mbi.Protect);
        if (mbi.State == MEM_COMMIT && !mbi.Protect) violation("committed page with Protect 0");
    } else {
        violation("query of %p: State %#x", (void *)addr, mbi.State);
    }
}

static void op_virtual_protect(reader *r)
{
    IHostMemoryManager *mm = pick_mm(r);
    if (!mm) return;
    uintptr_t addr = pick_addr(r);
    SIZE_T size = pick_size(r);
    DWORD prot = pick_prot(r);
    bool null_old = rd8(r) % 16 == 0;
    if (addr && in_heap(addr)) return;
    hm_vmap_info info = {0};
    bool found = lookup(addr, &info);
    unsigned want;
    const char *why = "";
    if (w.stopped) {
        want = X_CLR | (null_old ? X_POINTER : 0), why = "HOST_E_CLRNOTAVAILABLE after shutdown";
    } else if (null_old) {
        want = X_POINTER | X_NOACCESS, why = "E_POINTER for a NULL pflOldProtect";
    } else if (!prot_valid(prot)) {
        want = X_INVALIDARG, why = "E_INVALIDARG for a bad protection (SPEC 2.4)";
    } else if (!found) {
        want = X_INVALIDARG, why = "E_INVALIDARG: not inside an allocation (SPEC 2.4)";
    } else if (size && (addr + size < addr || round_up_page(addr + size) > info.base + info.size)) {
        want = X_INVALIDARG, why = "E_INVALIDARG: past the allocation's end (SPEC 2.4)";
    } else if (size && prot_plain(prot) && !(info.flags & (HM_AF_LARGE | HM_AF_PHYSICAL))) {
        want = X_OK | X_ADDRESS | X_OOM, why = "S_OK, or 487 for a reserved page (SPEC 2.4), or the OS refuses";
    } else {
        want = X_ANY;
    }
    DWORD old = POISON_DWORD;
    HRESULT hr = IHostMemoryManager_VirtualProtect(mm, (void *)addr, size, prot, null_old ? NULL : &old);
    expect(hr, want, why);
    note_fail(hr);
    if (null_old) return;
    if (FAILED(hr)) {
        if (old != 0) out_not_cleared("VirtualProtect(*pflOldProtect)", hr, old);
    } else if ((old & ~(DWORD)0x7ff) || !prot_valid(old & 0xff)) {
        /* (modifiers are not checked: an allocation's NOCACHE with a later GUARD shows both, SPEC 2.1) */
        violation("VirtualProtect: old protection %#x is not a protection", old);
    }
}

static void op_memory_load(reader *r)
{
    IHostMemoryManager *mm = pick_mm(r);
    if (!mm) return;
    bool null_load = rd8(r) % 4 == 0, null_avail = rd8(r) % 4 == 0;
    DWORD load = POISON_DWORD;
    SIZE_T avail = POISON_SIZE;
    unsigned want = w.stopped ? X_CLR | (null_load || null_avail ? X_POINTER : 0)
                    : (null_load || null_avail) ? X_POINTER | X_OK /* the SPEC does not say for COM */
                                                : X_OK;
    HRESULT hr = IHostMemoryManager_GetMemoryLoad(mm, null_load ? NULL : &load, null_avail ? NULL : &avail);
    expect(hr, want, "GetMemoryLoad");
    note_fail(hr);
    if (FAILED(hr)) {
        if (!null_load && load) out_not_cleared("GetMemoryLoad(*pMemoryLoad)", hr, load);
        if (!null_avail && avail) out_not_cleared("GetMemoryLoad(*pAvailableBytes)", hr, avail);
        return;
    }
    /* SPEC 3.5, against the charge read after the call (only this thread changes it) */
    hm_manager_stats s = stats();
    uint32_t own = (uint32_t)((unsigned __int128)s.charge * 100 / s.limit);
    if (!null_load && (load > 100 || load < own))
        violation("GetMemoryLoad: load %u with charge %" PRIu64 " of %" PRIu64, load, s.charge, s.limit);
    if (!null_avail && avail > s.limit - s.charge)
        violation("GetMemoryLoad: available %zu > limit - charge (%" PRIu64 ")", (size_t)avail, s.limit - s.charge);
}

static void op_register(reader *r)
{
    IHostMemoryManager *mm = pick_mm(r);
    if (!mm) return;
    uint8_t sel = rd8(r) % 3;
    if (sel && w.ncallbacks >= 8) return; /* well under the host's capacity */
    fuzz_cb *c = sel ? &cbs[sel - 1] : NULL;
    int before = c ? atomic_load(&c->refs) : 0;
    unsigned want = w.stopped ? X_CLR | (c ? 0 : X_POINTER) : c ? X_OK : X_POINTER;
    HRESULT hr = IHostMemoryManager_RegisterMemoryNotificationCallback(mm, c ? &c->iface : NULL);
    expect(hr, want, "RegisterMemoryNotificationCallback: S_OK, E_POINTER for NULL");
    note_fail(hr);
    if (hr == S_OK) {
        w.ncallbacks++;
        if (atomic_load(&c->refs) < before + 1) violation("a registered callback was not AddRef'd");
    }
}

static void op_needs(reader *r)
{
    IHostMemoryManager *mm = pick_mm(r);
    if (!mm) return;
    uintptr_t start = rd8(r) % 2 ? 0 : pick_addr(r);
    SIZE_T size = pick_size(r);
    unsigned want = X_ANY;
    if (w.stopped) {
        want = X_CLR;
    } else {
        hm_manager_stats s = stats();
        unsigned __int128 need = (unsigned __int128)s.va_used + size;
        want = need <= s.va_limit ? X_OK : X_OOM; /* SPEC 3.6 */
    }
    HRESULT hr = IHostMemoryManager_NeedsVirtualAddressSpace(mm, (void *)start, size);
    expect(hr, want, "NeedsVirtualAddressSpace: S_OK iff va.limit can take it (SPEC 3.6)");
    note_fail(hr);
}

static int find_va(uintptr_t start)
{
    for (int i = 0; i < w.nva; i++)
        if (w.va[i].start == start) return i;
    return -1;
}

static void op_acquired(reader *r)
{
    IHostMemoryManager *mm = pick_mm(r);
    if (!mm) return;
    uintptr_t start = pick_addr(r);
    SIZE_T size = pick_size(r);
    if (w.nva == MAX_VA && find_va(start) < 0) return;
    hm_vmap_info info;
    unsigned want;
    const char *why = "";
    if (w.stopped) want = X_CLR, why = "HOST_E_CLRNOTAVAILABLE after shutdown";
    else if (find_va(start) >= 0) want = X_ANYFAIL, why = "a mapping recorded twice";
    else if (start >= MIN_ADDR && size && start + size > start && start + size <= max_address + 1 && !lookup(start, &info))
        want = X_OK, why = "recording a plausible mapping (SPEC 3.6)";
    else want = X_ANY; /* NULL, empty, wrapping or over hostmem's own: the SPEC does not say */
    hm_manager_stats before = w.stopped ? w.cfg : stats();
    HRESULT hr = IHostMemoryManager_AcquiredVirtualAddressSpace(mm, (void *)start, size);
    expect(hr, want, why);
    note_fail(hr);
    if (hr != S_OK) return;
    w.va[w.nva++] = (va_rec){start, size};
    /* SPEC 3.6: recorded mappings count against va.limit. The next byte fits iff it did before plus
     * this mapping (computed without wrapping). */
    unsigned __int128 used = (unsigned __int128)before.va_used + size + 1;
    HRESULT h2 = IHostMemoryManager_NeedsVirtualAddressSpace(mm, NULL, 1);
    unsigned want2 = used <= before.va_limit ? X_OK : X_OOM;
    if (h2 == S_OK && want2 == X_OOM)
        known_violation("va-wrap",
                        "AcquiredVirtualAddressSpace(%p, %#zx) succeeded with %#" PRIx64 " of va.limit %#" PRIx64
                        " in use, yet NeedsVirtualAddressSpace(1) is S_OK: the mapping does not count (SPEC 3.6)",
                        (void *)start, (size_t)size, before.va_used, before.va_limit);
    else
        expect(h2, want2, "after AcquiredVirtualAddressSpace the mapping counts against va.limit (SPEC 3.6)");
}

static void op_released(reader *r)
{
    IHostMemoryManager *mm = pick_mm(r);
    if (!mm) return;
    uintptr_t start = rd8(r) % 2 && w.nva ? w.va[rd8(r) % w.nva].start : pick_addr(r);
    int i = find_va(start);
    unsigned want = w.stopped ? X_CLR : i >= 0 ? X_OK : X_ANYFAIL;
    HRESULT hr = IHostMemoryManager_ReleasedVirtualAddressSpace(mm, (void *)start);
    expect(hr, want, "ReleasedVirtualAddressSpace: S_OK for a recorded mapping, else a failure");
    note_fail(hr);
    if (hr == S_OK) w.va[i] = w.va[--w.nva];
}

static void op_create_malloc(reader *r)
{
    IHostMemoryManager *mm = pick_mm(r);
    if (!mm || w.nheaps == MAX_HEAPS) return;
    static const DWORD flags_tab[] = {0, MALLOC_THREADSAFE, MALLOC_EXECUTABLE, MALLOC_THREADSAFE | MALLOC_EXECUTABLE,
                                      0x4, 0x80000000u, 0xffffffffu};
    uint8_t fs = rd8(r) % 8;
    DWORD flags = fs < 7 ? flags_tab[fs] : rd32(r);
    bool null_out = rd8(r) % 16 == 0;
    bool unknown = flags & ~(DWORD)(MALLOC_THREADSAFE | MALLOC_EXECUTABLE);
    unsigned want;
    if (w.stopped) want = X_CLR | (null_out ? X_POINTER : 0);
    else if (null_out) want = X_POINTER | (unknown ? X_INVALIDARG : 0);
    else if (unknown) want = X_INVALIDARG;
    else want = X_OK | X_OOM;
    IHostMalloc *out = POISON_PTR;
    HRESULT hr = IHostMemoryManager_CreateMalloc(mm, flags, null_out ? NULL : &out);
    expect(hr, want, "CreateMalloc: E_INVALIDARG for unknown flag bits, E_POINTER for NULL (SPEC 1.2)");
    note_fail(hr);
    if (null_out) return;
    if (FAILED(hr)) {
        if (out) out_not_cleared("CreateMalloc(*ppMalloc)", hr, (uint64_t)(uintptr_t)out);
        return;
    }
    if (!out) violation("CreateMalloc succeeded with *ppMalloc NULL");
    w.heaps[w.nheaps++] = (heapinfo){out, flags};
    add_ref(out, KIND_HEAP, KIND_HEAP, out);
}

/* ---- IHostMalloc ---------------------------------------------------------------------------------- */

static heapinfo *heap_info(void *obj)
{
    for (int i = 0; i < w.nheaps; i++)
        if (w.heaps[i].obj == obj) return &w.heaps[i];
    return NULL;
}

static block *live_block(uintptr_t p)
{
    for (int i = 0; i < w.nblocks; i++)
        if ((uintptr_t)w.blocks[i].p == p) return &w.blocks[i];
    return NULL;
}

/* Bytes written into each block: its first FILL_MAX with `fill`, and from `tail` on (its last 16,
 * never overlapping the first part) with fill + 0x80. */
static size_t tail_of(const block *b) { return b->size > FILL_MAX + 16 ? b->size - 16 : FILL_MAX; }

static void fill_block(block *b)
{
    if (b->exec) return;
    memset(b->p, b->fill, b->size < FILL_MAX ? b->size : FILL_MAX);
    if (b->size > FILL_MAX) memset(b->p + tail_of(b), (uint8_t)(b->fill + 0x80), b->size - tail_of(b));
}

/* SPEC 4: a live block's bytes are the program's; no other call may change them. */
static void verify_block(const block *b)
{
    if (b->exec) return;
    for (size_t i = 0; i < b->size && i < FILL_MAX; i++)
        if (b->p[i] != b->fill)
            violation("live block %p (%zu bytes): byte %zu is %#x, was written %#x", (void *)b->p, b->size, i, b->p[i],
                      b->fill);
    for (size_t i = tail_of(b); i < b->size; i++)
        if (b->p[i] != (uint8_t)(b->fill + 0x80))
            violation("live block %p (%zu bytes): byte %zu is %#x, was written %#x", (void *)b->p, b->size, i, b->p[i],
                      (uint8_t)(b->fill + 0x80));
}

static void op_heap_alloc(reader *r, bool debug)
{
    ref *rf = pick_ref(r, KIND_HEAP);
    if (!rf) return;
    IHostMalloc *h = rf->p;
    heapinfo *hi = heap_info(rf->obj);
    SIZE_T size;
    uint8_t ss = rd8(r) % 8;
    switch (ss) {
    case 0: size = 0; break;
    case 1: size = rd8(r); break;
    case 2: size = rd16(r) % 4096; break;
    case 3: size = rd32(r) % (1u << 20); break;
    case 4: size = rd32(r) % (64u << 10); break;
    default: size = pick_size(r); break;
    }
    int level = pick_level(r);
    bool null_out = rd8(r) % 16 == 0;
    static char long_name[300];
    if (!long_name[0]) memset(long_name, 'f', sizeof long_name - 1);
    char *const files[] = {"runtime.cpp", NULL, "", long_name};
    char *file = files[rd8(r) % 4];
    int line = (int)rd32(r);
    bool bad_level = (unsigned)level > eProcessCritical;
    unsigned want;
    const char *why = "";
    if (w.stopped) {
        want = X_CLR | (null_out ? X_POINTER : 0), why = "HOST_E_CLRNOTAVAILABLE after shutdown";
    } else if (null_out) {
        want = X_POINTER | (bad_level ? X_INVALIDARG : 0), why = "E_POINTER for a NULL ppMem";
    } else if (bad_level) {
        want = X_INVALIDARG, why = "E_INVALIDARG for a level out of range";
    } else if (size > w.cfg.limit) {
        want = size <= ((SIZE_T)1 << 40) ? refusal() : X_ANYFAIL, why = "a block larger than the limit is refused";
    } else {
        want = X_OK | refusal(), why = "S_OK or a refusal (SPEC 4)";
    }
    void *out = POISON_PTR;
    HRESULT hr = debug ? IHostMalloc_DebugAlloc(h, size, (EMemoryCriticalLevel)level, file, line, null_out ? NULL : &out)
                       : IHostMalloc_Alloc(h, size, (EMemoryCriticalLevel)level, null_out ? NULL : &out);
    expect(hr, want, why);
    note_fail(hr);
    if (null_out) return;
    if (FAILED(hr)) {
        if (out) out_not_cleared(debug ? "DebugAlloc(*ppMem)" : "Alloc(*ppMem)", hr, (uint64_t)(uintptr_t)out);
        return;
    }
    uintptr_t p = (uintptr_t)out;
    if (!p || p % 16) violation("Alloc(%zu) = %p: NULL or not 16-byte aligned (SPEC 4)", (size_t)size, out);
    size_t span = size ? size : 1;
    for (int i = 0; i < w.nblocks; i++) {
        uintptr_t q = (uintptr_t)w.blocks[i].p, qs = w.blocks[i].size ? w.blocks[i].size : 1;
        if (p < q + qs && q < p + span)
            violation("Alloc(%zu) = %p overlaps live block %p (%zu bytes)", (size_t)size, out, (void *)q, (size_t)qs);
    }
    block b = {out, size, rf->obj, !hi || (hi->flags & MALLOC_EXECUTABLE), debug, (uint8_t)(0x11 * (w.nblocks % 15 + 1))};
    fill_block(&b);
    if (w.nblocks < MAX_BLOCKS) {
        w.blocks[w.nblocks++] = b;
        return;
    }
    /* no room to follow it: free it now (an untracked live block would blur Free's expectations) */
    verify_block(&b);
    expect(IHostMalloc_Free(h, out), X_OK, "Free of a live block");
}

static void op_heap_free(reader *r)
{
    ref *rf = pick_ref(r, KIND_HEAP);
    if (!rf) return;
    IHostMalloc *h = rf->p;
    uintptr_t p;
    static const intptr_t offs[] = {1, 8, 15, 16, 32, 48, 64, 4096, -16, -8, -1};
    uint8_t sel = rd8(r) % 8;
    if (sel == 0 || (sel <= 3 && !w.nblocks) || (sel == 4 && !w.nfreed)) p = 0;
    else if (sel <= 2) p = (uintptr_t)w.blocks[rd8(r) % w.nblocks].p;
    else if (sel == 3) {
        block *b = &w.blocks[rd8(r) % w.nblocks];
        uint8_t o = rd8(r);
        p = (uintptr_t)b->p + (o & 1 ? (uintptr_t)b->size : (uintptr_t)offs[o / 2 % (sizeof offs / sizeof offs[0])]);
    } else if (sel == 4) p = w.freed[rd8(r) % w.nfreed];
    else p = pick_addr(r);
    block *b = p ? live_block(p) : NULL;
    unsigned want;
    const char *why;
    if (w.stopped) want = p ? X_CLR : X_CLR | X_OK, why = "HOST_E_CLRNOTAVAILABLE after shutdown";
    else if (!p) want = X_OK, why = "Free(NULL) is S_OK (SPEC 1.1)";
    else if (b && b->heap == rf->obj) want = X_OK, why = "Free of a live block";
    else if (b) want = X_NOTOWNER, why = "HOST_E_NOT_OWNER: a live block of another heap (SPEC 4)";
    else want = X_INVALOP, why = "HOST_E_INVALIDOPERATION: not a live block of any heap (SPEC 4)";
    if (b && !w.stopped && b->heap == rf->obj) verify_block(b);
    HRESULT hr = IHostMalloc_Free(h, (void *)p);
    expect(hr, want, why);
    note_fail(hr);
    if (hr == S_OK && b) {
        if (w.nfreed < MAX_FREED) w.freed[w.nfreed++] = p;
        else w.freed[rd8(r) % MAX_FREED] = p;
        *b = w.blocks[--w.nblocks];
    }
}

/* Frees the live debug blocks (while the manager runs), so that destroying their heaps does not
 * report them on stderr for every input. */
static void free_debug_blocks(void)
{
    if (w.stopped) return;
    for (int i = 0; i < w.nblocks;) {
        block *b = &w.blocks[i];
        ref *rf = NULL;
        for (int k = 0; k < w.nrefs && !rf; k++)
            if (w.refs[k].obj == b->heap && w.refs[k].kind == KIND_HEAP) rf = &w.refs[k];
        if (!b->debug || !rf) {
            i++;
            continue;
        }
        verify_block(b);
        expect(IHostMalloc_Free((IHostMalloc *)rf->p, b->p), X_OK, "Free of a live debug block");
        *b = w.blocks[--w.nblocks];
    }
}

/* ---- IUnknown and IHostControl ----------------------------------------------------------------------- */

static void op_query_interface(reader *r)
{
    ref *rf = pick_ref(r, -1);
    if (!rf) return;
    IID garbage;
    REFIID riid;
    pick_iid(r, &garbage, &riid);
    bool null_out = rd8(r) % 16 == 0;
    bool known = false;
    for (int k = 0; k < 5; k++) known |= iid_is(riid, known_iids[k]);
    bool own = iid_is(riid, &IID_IUnknown) || (known && kind_of_iid(riid) == rf->okind && rf->okind != KIND_UNK);
    unsigned want;
    if (null_out) want = X_POINTER | (riid ? 0 : X_ANYFAIL);
    else if (!riid) want = X_ANYFAIL;
    else if (own) want = X_OK; /* COM: an object answers for IUnknown and its own interface */
    else if (!known) want = X_NOINTERFACE;
    else want = X_OK | X_NOINTERFACE;
    if (w.stopped) want |= X_CLR;
    void *out = POISON_PTR;
    IUnknown *u = rf->p;
    ref copy = *rf;
    HRESULT hr = u->lpVtbl->QueryInterface(u, riid, null_out ? NULL : &out);
    expect(hr, want, "QueryInterface: S_OK for IUnknown and its own IID, E_NOINTERFACE for garbage");
    if (null_out) return;
    if (FAILED(hr)) {
        if (out) out_not_cleared("QueryInterface(*ppvObject)", hr, (uint64_t)(uintptr_t)out);
        return;
    }
    if (!out) violation("QueryInterface succeeded with *ppvObject NULL");
    if (own) add_ref(out, iid_is(riid, &IID_IUnknown) ? KIND_UNK : copy.okind, copy.okind, copy.obj);
    else {
        w.cross_qi = true;
        add_ref(out, kind_of_iid(riid), kind_of_iid(riid), out);
    }
}

static void op_addref(reader *r)
{
    ref *rf = pick_ref(r, -1);
    if (!rf) return;
    IUnknown *u = rf->p;
    ref copy = *rf;
    ULONG n = u->lpVtbl->AddRef(u);
    if (n == 0) violation("AddRef returned 0");
    add_ref(copy.p, copy.kind, copy.okind, copy.obj);
}

static void op_release(reader *r)
{
    if (!w.nrefs) return;
    release_ref(rd8(r) % w.nrefs);
}

static void op_get_host_manager(reader *r)
{
    ref *rf = pick_ref(r, KIND_HC);
    if (!rf) return;
    IID garbage;
    REFIID riid;
    pick_iid(r, &garbage, &riid);
    bool null_out = rd8(r) % 16 == 0;
    bool is_mm = iid_is(riid, &IID_IHostMemoryManager);
    unsigned want;
    if (null_out) want = X_POINTER | (riid ? 0 : X_ANYFAIL);
    else if (!riid) want = X_ANYFAIL;
    else if (is_mm) want = X_OK;
    else want = X_NOINTERFACE; /* SPEC 1.1: the host offers only its memory manager */
    if (w.stopped) want |= X_CLR;
    void *out = POISON_PTR;
    HRESULT hr = IHostControl_GetHostManager((IHostControl *)rf->p, riid, null_out ? NULL : &out);
    expect(hr, want, "GetHostManager: IHostMemoryManager only (SPEC 1.1)");
    if (null_out) return;
    if (FAILED(hr)) {
        if (out) out_not_cleared("GetHostManager(*ppObject)", hr, (uint64_t)(uintptr_t)out);
        return;
    }
    if (!out) violation("GetHostManager succeeded with *ppObject NULL");
    add_ref(out, KIND_MM, KIND_MM, out);
}

static void op_set_appdomain_manager(reader *r)
{
    ref *rf = pick_ref(r, KIND_HC);
    if (!rf) return;
    uint8_t sel = rd8(r) % 3;
    IUnknown *unk = sel == 0 ? NULL : sel == 1 ? (IUnknown *)&cbs[0].iface : (IUnknown *)rf->p;
    HRESULT hr = IHostControl_SetAppDomainManager((IHostControl *)rf->p, rd32(r), unk);
    expect(hr, X_ANY, "SetAppDomainManager");
}

static void op_shutdown(reader *r)
{
    (void)r;
    if (!w.m) return;
    free_debug_blocks();
    hm_status st = hm_manager_shutdown(w.m);
    hm_status want = w.shutdown_done || w.stopped ? HM_E_HOST_CLRNOTAVAILABLE : HM_OK;
    if (st != want) violation("hm_manager_shutdown = %#x, expected %#x", (unsigned)st, (unsigned)want);
    w.shutdown_done = w.stopped = true;
}

/* ---- one input ----------------------------------------------------------------------------------- */

static hm_vm_stats baseline;

/* The last reference went: the manager must be destroyed with everything it held (SPEC 3.4, 4). */
static void manager_gone(void)
{
    w.m = NULL;
    w.nblocks = w.nregions = w.nheaps = w.nva = 0;
    for (int i = 0; i < 2; i++)
        if (atomic_load(&cbs[i].refs) != 1)
            violation("after the last release, callback object %d has %d references (the fuzzer's own: 1)", i,
                      atomic_load(&cbs[i].refs));
    hm_vm_stats now;
    hm_vm_get_stats(&now);
    if (now.allocations != baseline.allocations || now.reserved_bytes != baseline.reserved_bytes ||
        now.committed_bytes != baseline.committed_bytes)
        violation("after the last release the map holds %zu allocations, %zu reserved, %zu committed bytes; before "
                  "the input %zu, %zu, %zu",
                  now.allocations, now.reserved_bytes, now.committed_bytes, baseline.allocations,
                  baseline.reserved_bytes, baseline.committed_bytes);
}

typedef void (*op_fn)(reader *r);
static void op_alloc(reader *r) { op_heap_alloc(r, false); }
static void op_debug_alloc(reader *r) { op_heap_alloc(r, true); }

static const struct {
    op_fn fn;
    const char *name;
    unsigned weight;
} ops[] = {
    {op_virtual_alloc, "IHostMemoryManager::VirtualAlloc", 6},
    {op_virtual_free, "IHostMemoryManager::VirtualFree", 4},
    {op_virtual_query, "IHostMemoryManager::VirtualQuery", 3},
    {op_virtual_protect, "IHostMemoryManager::VirtualProtect", 3},
    {op_memory_load, "IHostMemoryManager::GetMemoryLoad", 1},
    {op_register, "IHostMemoryManager::RegisterMemoryNotificationCallback", 1},
    {op_needs, "IHostMemoryManager::NeedsVirtualAddressSpace", 1},
    {op_acquired, "IHostMemoryManager::AcquiredVirtualAddressSpace", 1},
    {op_released, "IHostMemoryManager::ReleasedVirtualAddressSpace", 1},
    {op_create_malloc, "IHostMemoryManager::CreateMalloc", 2},
    {op_alloc, "IHostMalloc::Alloc", 5},
    {op_debug_alloc, "IHostMalloc::DebugAlloc", 2},
    {op_heap_free, "IHostMalloc::Free", 5},
    {op_query_interface, "IUnknown::QueryInterface", 2},
    {op_addref, "IUnknown::AddRef", 1},
    {op_release, "IUnknown::Release", 1},
    {op_get_host_manager, "IHostControl::GetHostManager", 1},
    {op_set_appdomain_manager, "IHostControl::SetAppDomainManager", 1},
    {op_shutdown, "hm_manager_shutdown", 1},
};
#define NOPS (sizeof ops / sizeof ops[0])

static unsigned op_table[256]; /* opcode byte -> operation, by weight */

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    const char *e = getenv("HM_FUZZ_COM_KNOWN");
    if (e) known_defects = e;
    unsetenv("HOSTMEM_OPTIONS"); /* the configs say everything */
    hm_system_info si;
    hm_get_system_info(&si);
    max_address = si.max_address;
    unsigned total = 0;
    for (size_t i = 0; i < NOPS; i++) total += ops[i].weight;
    for (unsigned b = 0, i = 0, acc = 0; b < 256; b++) {
        while (b * total >= (acc + ops[i].weight) * 256u) acc += ops[i++].weight;
        op_table[b] = i;
    }
    for (int i = 0; i < 2; i++) {
        cbs[i].iface.lpVtbl = &cb_vtbl;
        atomic_store(&cbs[i].refs, 1);
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    reader rd = {data, size};
    reader *r = &rd;
    memset(&w, 0, sizeof w);
    fuzz_thread = pthread_self();
    cur_op = "setup";
    cur_step = 0;
    hm_vm_get_stats(&baseline);

    const char *opts = configs[rd8(r) % NCONFIGS];
    IHostControl *hc = POISON_PTR;
    HRESULT hr = hm_create_host_control(opts, &hc);
    if (hr != S_OK || !hc) violation("hm_create_host_control(\"%s\") = %#x", opts, (unsigned)hr);
    void *p = POISON_PTR;
    hr = IHostControl_GetHostManager(hc, &IID_IHostMemoryManager, &p);
    if (hr != S_OK || !p) violation("GetHostManager(IID_IHostMemoryManager) = %#x", (unsigned)hr);
    IHostMemoryManager *mm = p;
    add_ref(hc, KIND_HC, KIND_HC, hc);
    add_ref(mm, KIND_MM, KIND_MM, mm);

    /* The hm_manager behind the COM objects (for shutdown and its numbers), valid while any of them is
     * referenced. A reservation made through the IHostMemoryManager must be in its books. */
    w.m = hm_host_control_manager(hc);
    void *probe = NULL;
    hr = IHostMemoryManager_VirtualAlloc(mm, NULL, PAGE, MEM_RESERVE, PAGE_NOACCESS, eProcessCritical, &probe);
    hm_vmap_info info;
    if (hr != S_OK || !lookup((uintptr_t)probe, &info)) violation("a first 4 KiB reservation: %#x", (unsigned)hr);
    if (!w.m || info.owner != &w.m->acct) violation("hm_host_control_manager is not the manager the COM object uses");
    if (IHostMemoryManager_VirtualFree(mm, probe, 0, MEM_RELEASE) != S_OK) violation("releasing the first reservation");
    w.cfg = stats();
    w.any_wait = w.cfg.wait_ms[0] || w.cfg.wait_ms[1] || w.cfg.wait_ms[2];

    for (unsigned n = 0; rd.n && n < MAX_OPS && w.nrefs; n++) {
        unsigned o = op_table[rd8(r)];
        cur_op = ops[o].name;
        cur_step = n;
        ops[o].fn(r);
    }

    cur_op = "end of input";
    if (w.m) {
        /* the map's invariants; against the kernel's mappings (a /proc read: slow) for the first input
         * and every 8th, so that a single input replayed is always checked both ways */
        static unsigned inputs;
        hm_status st = hm_vmap_check(inputs++ % 8 == 0);
        if (st != HM_OK) violation("hm_vmap_check: %#x", (unsigned)st);
        for (int i = 0; i < w.nblocks; i++) verify_block(&w.blocks[i]);
        free_debug_blocks();
    }
    while (w.nrefs) release_ref(w.nrefs - 1); /* the last one checks that all is gone */
    return 0;
}
