/* hostmem.h — the idiomatic C API of hostmem: Win32 virtual-memory semantics on Linux.
 *
 * Every fallible call returns an hm_status, which is an HRESULT: 0 (HM_OK) on success, a negative
 * value on failure. Errors that Win32 reports through GetLastError come back as
 * HRESULT_FROM_WIN32(error) (0x8007xxxx), so one value carries both the COM code and the Win32
 * detail: hm_status_win32_error() recovers the last-error value, hm_status_hresult() the code a COM
 * method returns (where ERROR_NOT_ENOUGH_MEMORY and ERROR_COMMITMENT_LIMIT both become
 * E_OUTOFMEMORY), hm_status_message() a sentence for people.
 *
 * Managers: every call takes an hm_manager; NULL names the process-default manager, created on first
 * use from the HOSTMEM_OPTIONS environment variable. Each manager has its own allocations and its own
 * budget; touching another manager's allocation is HM_E_HOST_NOT_OWNER.
 *
 * Constants have their Windows values (winnt.h), under the hm_ prefix; <hostmem/win32.h> gives the
 * Windows names. */
#ifndef HOSTMEM_HOSTMEM_H
#define HOSTMEM_HOSTMEM_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define HM_API __attribute__((visibility("default")))
#else
#define HM_API
#endif

/* ---- status ------------------------------------------------------------------------------- */

typedef int32_t hm_status;

#define HM_OK                      ((hm_status)0)
#define HM_SUCCEEDED(s)            ((hm_status)(s) >= 0)
#define HM_FAILED(s)               ((hm_status)(s) < 0)
#define HM_STATUS_FROM_WIN32(e)    ((hm_status)((e) <= 0 ? (uint32_t)(e) : (0x80070000u | ((uint32_t)(e) & 0xFFFFu))))

/* Win32 error values used by the virtual-memory rules (winerror.h). */
#define HM_ERROR_SUCCESS            0u
#define HM_ERROR_NOT_ENOUGH_MEMORY  8u
#define HM_ERROR_BAD_LENGTH         24u
#define HM_ERROR_NOT_SUPPORTED      50u
#define HM_ERROR_INVALID_PARAMETER  87u
#define HM_ERROR_INVALID_ADDRESS    487u
#define HM_ERROR_NOACCESS           998u
#define HM_ERROR_COMMITMENT_LIMIT   1455u

#define HM_E_NOT_ENOUGH_MEMORY      HM_STATUS_FROM_WIN32(HM_ERROR_NOT_ENOUGH_MEMORY)   /* 0x80070008 */
#define HM_E_BAD_LENGTH             HM_STATUS_FROM_WIN32(HM_ERROR_BAD_LENGTH)          /* 0x80070018 */
#define HM_E_NOT_SUPPORTED          HM_STATUS_FROM_WIN32(HM_ERROR_NOT_SUPPORTED)       /* 0x80070032 */
#define HM_E_INVALID_PARAMETER      HM_STATUS_FROM_WIN32(HM_ERROR_INVALID_PARAMETER)   /* 0x80070057 = E_INVALIDARG */
#define HM_E_INVALID_ADDRESS        HM_STATUS_FROM_WIN32(HM_ERROR_INVALID_ADDRESS)     /* 0x800701E7 */
#define HM_E_NOACCESS               HM_STATUS_FROM_WIN32(HM_ERROR_NOACCESS)            /* 0x800703E6 */
#define HM_E_COMMITMENT_LIMIT       HM_STATUS_FROM_WIN32(HM_ERROR_COMMITMENT_LIMIT)    /* 0x800705AF */

/* COM and host codes (SPEC 1.1). */
#define HM_E_NOTIMPL                ((hm_status)0x80004001)
#define HM_E_NOINTERFACE            ((hm_status)0x80004002)
#define HM_E_POINTER                ((hm_status)0x80004003)
#define HM_E_FAIL                   ((hm_status)0x80004005)
#define HM_E_OUTOFMEMORY            ((hm_status)0x8007000E)
#define HM_E_INVALIDARG             HM_E_INVALID_PARAMETER
#define HM_E_HOST_INVALIDOPERATION  ((hm_status)0x80131022)
#define HM_E_HOST_CLRNOTAVAILABLE   ((hm_status)0x80131023)
#define HM_E_HOST_TIMEOUT           ((hm_status)0x80131024)
#define HM_E_HOST_NOT_OWNER         ((hm_status)0x80131025)
#define HM_E_HOST_ABANDONED         ((hm_status)0x80131026)

/* The Win32 last-error value a status stands for (0 for success, the low word for 0x8007xxxx,
 * ERROR_NOT_SUPPORTED-like codes for the rest: see status.c). */
HM_API uint32_t hm_status_win32_error(hm_status s);
/* The HRESULT a COM method returns for this status (memory refusals become E_OUTOFMEMORY). */
HM_API int32_t hm_status_hresult(hm_status s);
/* A short English sentence describing the status; never NULL. */
HM_API const char *hm_status_message(hm_status s);
/* The symbolic name of the status ("ERROR_INVALID_ADDRESS", "E_FAIL", ...); never NULL. */
HM_API const char *hm_status_name(hm_status s);
/* This thread's detail of its last failed call, naming the argument or the system call at fault
 * ("MEM_COMMIT: [0x7f.., 0x7f..) is not inside one reserved allocation"); "" if none yet. */
HM_API const char *hm_last_detail(void);
/* Sets this thread's detail (printf-style, at most 255 bytes kept): for layers over hostmem that
 * fail for reasons of their own (the runtime adapters, hostmem/lua.h and the like), so that
 * hm_last_detail() describes their failure rather than an older one. */
HM_API void hm_set_last_detail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* ---- constants (Windows values) ----------------------------------------------------------- */

/* allocation types */
#define HM_MEM_COMMIT        0x00001000u
#define HM_MEM_RESERVE       0x00002000u
#define HM_MEM_RESET         0x00080000u
#define HM_MEM_TOP_DOWN      0x00100000u
#define HM_MEM_WRITE_WATCH   0x00200000u
#define HM_MEM_PHYSICAL      0x00400000u
#define HM_MEM_RESET_UNDO    0x01000000u
#define HM_MEM_LARGE_PAGES   0x20000000u
/* free types */
#define HM_MEM_DECOMMIT      0x00004000u
#define HM_MEM_RELEASE       0x00008000u
/* region states and types (query results) */
#define HM_MEM_FREE          0x00010000u
#define HM_MEM_PRIVATE       0x00020000u
#define HM_MEM_MAPPED        0x00040000u
#define HM_MEM_IMAGE         0x01000000u

/* protections */
#define HM_PAGE_NOACCESS           0x001u
#define HM_PAGE_READONLY           0x002u
#define HM_PAGE_READWRITE          0x004u
#define HM_PAGE_WRITECOPY          0x008u
#define HM_PAGE_EXECUTE            0x010u
#define HM_PAGE_EXECUTE_READ       0x020u
#define HM_PAGE_EXECUTE_READWRITE  0x040u
#define HM_PAGE_EXECUTE_WRITECOPY  0x080u
#define HM_PAGE_GUARD              0x100u
#define HM_PAGE_NOCACHE            0x200u
#define HM_PAGE_WRITECOMBINE       0x400u

/* ---- system ------------------------------------------------------------------------------- */

typedef struct hm_system_info {
    uint32_t page_size;              /* 4096: anything else is refused at start */
    uint32_t allocation_granularity; /* 65536 */
    uintptr_t min_address;           /* 0x10000 */
    uintptr_t max_address;           /* highest usable byte, as lpMaximumApplicationAddress */
    uint32_t processors;
    size_t large_page_minimum;       /* 2 MiB */
} hm_system_info;

/* Checks the platform once (page size, kernel features). HM_E_NOT_SUPPORTED with a message on
 * stderr when the page size is not 4 KiB. Every other call runs it on first use. */
HM_API hm_status hm_init(void);
HM_API void hm_get_system_info(hm_system_info *out);
HM_API size_t hm_large_page_minimum(void);

/* ---- address space ------------------------------------------------------------------------ */

/* What a query reports about a region; the layout is MEMORY_BASIC_INFORMATION's on LP64. */
typedef struct hm_region {
    void *base;                  /* the queried address rounded down to a page */
    void *allocation_base;       /* base of the allocation holding it; NULL when free */
    uint32_t allocation_protect; /* protection given at allocation; 0 when free */
    uint16_t partition_id;       /* always 0 */
    size_t size;                 /* bytes from base with identical state, protect and type */
    uint32_t state;              /* HM_MEM_COMMIT, HM_MEM_RESERVE or HM_MEM_FREE */
    uint32_t protect;            /* with modifiers; 0 when reserved; PAGE_NOACCESS when free */
    uint32_t type;               /* HM_MEM_PRIVATE, or 0 when free */
} hm_region;

typedef struct hm_manager hm_manager; /* NULL = the process-default manager */

/* How critical a request is (EMemoryCriticalLevel): which part of the budget it may use (SPEC 3.2). */
typedef enum hm_level {
    HM_LEVEL_TASK = 0,      /* eTaskCritical: admitted while charge + n <= limit - reserve.appdomain - reserve.process */
    HM_LEVEL_APPDOMAIN = 1, /* eAppDomainCritical: while charge + n <= limit - reserve.process */
    HM_LEVEL_PROCESS = 2,   /* eProcessCritical: while charge + n <= limit */
} hm_level;

/* A new manager from an option string "key=value,..." applied over HOSTMEM_OPTIONS (SPEC 3.7):
 * limit, reserve.appdomain, reserve.process, wait.task, wait.appdomain, wait.process, notify.low,
 * notify.high, va.limit, win32.level, cgroup.root, proc.root, psi.some, psi.full. A bad option is
 * HM_E_INVALIDARG, with hm_last_detail() naming the key; nothing is created then. */
HM_API hm_status hm_manager_create(const char *options, hm_manager **out);

/* Nested budgets (README, "Nested budgets"). A child manager of `parent` (NULL: the process-default
 * manager), from options as hm_manager_create's with these differences: HOSTMEM_OPTIONS does not
 * apply (it sets the process's budgets); cgroup.root, proc.root, psi.some and psi.full default to the
 * parent's; limit defaults to the parent's limit; N% of any size is N% of the parent's limit. A limit
 * above the parent's is allowed (tenants may overcommit a shared parent) but the parent's binds first.
 *   - Charge: the child's charge counts against its own limit and every ancestor's: a request of level
 *     l raising the charge by n is admitted only if, for the child and every ancestor A,
 *     charge(A) + n <= threshold_l(A) (SPEC 3.2), and is then charged to all of them at once: the
 *     charge of no manager ever passes its threshold. A manager's charge is its own committed pages
 *     plus its children's charges (hm_manager_stats.children_charge).
 *   - A refusal by an ancestor is HM_E_COMMITMENT_LIMIT like any budget refusal, counted in the
 *     child's refused[l] and refused_by_ancestor[l], with hm_last_detail() naming the ancestor (how
 *     many levels up, its limit); the ancestor turns Low. A child's waiter (wait.*) is woken when
 *     memory comes back anywhere in the tree.
 *   - Memory state: the child's state is the worse of its own and its parent's: Low when it or any
 *     ancestor is Low (its callbacks are called then), back when neither is.
 *   - Lifecycle: shutting a manager down shuts down all its descendants; destroying a manager with
 *     live children is HM_E_HOST_INVALIDOPERATION ("manager has N live child managers: destroy them
 *     first"); a parent that is shut down or failed takes no new child (HM_E_HOST_CLRNOTAVAILABLE).
 *     Managers nest at most 16 deep (HM_E_HOST_INVALIDOPERATION beyond). */
HM_API hm_status hm_manager_create_child(hm_manager *parent, const char *options, hm_manager **out);
/* Shuts the manager down (SPEC 3.4), and every manager nested in it: every request waiting for memory
 * returns HM_E_HOST_ABANDONED at once, every later call HM_E_HOST_CLRNOTAVAILABLE. Nothing is unmapped: the runtime may still touch
 * its memory. A second shutdown is HM_E_HOST_CLRNOTAVAILABLE. Calls that only report and change
 * nothing still answer, so that a host can see what a stopped (or failed) manager holds:
 * hm_manager_get_stats (its state says which), hm_heap_get_stats, hm_heap_sites,
 * hm_heap_usable_size, hm_heap_writable; and a heap's Free(NULL) is S_OK (SPEC 1.1). Destroy works. */
HM_API hm_status hm_manager_shutdown(hm_manager *m);
/* Shuts down (if running), releases every allocation of the manager and frees it. The default
 * manager cannot be destroyed; a manager with live child managers is not (HM_E_HOST_INVALIDOPERATION,
 * nothing changed). If the kernel refuses a release, the call fails with what it could not
 * release still recorded (the charge and statistics exact) and the manager shut down: call it again. */
HM_API hm_status hm_manager_destroy(hm_manager *m);

typedef enum hm_manager_state {
    HM_MANAGER_RUNNING,
    HM_MANAGER_SHUT_DOWN,
    HM_MANAGER_FAILED, /* a call found the books untrustworthy and returned E_FAIL */
} hm_manager_state;

/* Memory state (EMemoryAvailable, SPEC 3.5). */
typedef enum hm_memory_state {
    HM_MEMORY_LOW = 1,     /* load reached notify.high, or a request was refused: give memory back */
    HM_MEMORY_NEUTRAL = 2,
    HM_MEMORY_HIGH = 3,    /* load at or below notify.low */
} hm_memory_state;

typedef struct hm_manager_stats {
    uint64_t limit;               /* L, bytes */
    uint64_t reserve_appdomain;   /* Ra */
    uint64_t reserve_process;     /* Rp */
    uint64_t charge;              /* bytes of committed pages the manager owns */
    uint64_t peak_charge;
    uint64_t va_limit;            /* UINT64_MAX: unlimited */
    uint64_t va_used;             /* bytes of address space its allocations hold */
    uint64_t granted[3];          /* requests that raised the charge, admitted, by level */
    uint64_t refused[3];          /* refused by the budget, by level */
    uint32_t wait_ms[3];
    uint32_t notify_low, notify_high;
    hm_level win32_level;         /* the level of calls that do not name one */
    uint64_t waits[3];            /* requests that waited for memory, by level */
    uint64_t timeouts[3];         /* of which ran out of time (HM_E_HOST_TIMEOUT) */
    uint64_t abandoned[3];        /* of which were cancelled by shutdown (HM_E_HOST_ABANDONED) */
    uint32_t waiting;             /* waiting now */
    hm_manager_state state;
    hm_memory_state memory_state;
    uint64_t state_changes;       /* changes of memory_state */
    uint64_t notifications;       /* callback calls made */
    /* Appended (the layout above is kept). Nested budgets: */
    uint64_t refused_by_ancestor[3]; /* of refused: refused by an enclosing manager's budget */
    uint64_t children_charge;     /* of charge: what child managers (and theirs) hold */
    uint32_t children;            /* live child managers */
    uint32_t depth;               /* 0 for a top-level manager, 1 for a child, ... */
    /* System pressure (psi.some, psi.full: percent; 0 = off) */
    uint32_t psi_some, psi_full;
} hm_manager_stats;

HM_API hm_status hm_manager_get_stats(hm_manager *m, hm_manager_stats *out);

typedef void (*hm_notify_fn)(hm_memory_state state, void *arg);

/* load (0..100): the larger of the manager's pressure (charge * 100 / limit; for a nested manager the
 * largest of its chain's) and the system's: the cgroup's usage against its limit, else /proc/meminfo,
 * raised by memory stalls where the kernel reports them (PSI: the cgroup's memory.pressure,
 * /proc/pressure/memory) to psi = notify.high * max(some_avg10 / psi.some, full_avg10 / psi.full),
 * at most 100 (README, "System pressure"; defaults psi.some=10, psi.full=5: stalls of 10% of the
 * last 10 s, or 5% in which every task stalled, turn the state Low). available: the smaller of
 * limit - charge (every ancestor's too) and what the system still has. Either pointer may be NULL. */
HM_API hm_status hm_manager_get_memory_load(hm_manager *m, uint32_t *load, uint64_t *available);
/* Calls fn(state, arg) once for each change of the manager's memory state, from the manager's own
 * notification thread, never under a lock of the manager: fn may call hostmem (to free memory). */
HM_API hm_status hm_manager_register_notification(hm_manager *m, hm_notify_fn fn, void *arg);

/* VirtualAlloc: reserve, commit, reset or undo a reset (SPEC 2.2). On success *base is the start of
 * the affected range (which may lie below addr); on failure *base is NULL and nothing changed.
 * Pages committed anew are admitted at `level`; a refusal by the budget is HM_E_COMMITMENT_LIMIT. */
HM_API hm_status hm_virtual_alloc_level(hm_manager *m, void *addr, size_t size, uint32_t type,
                                        uint32_t protect, hm_level level, void **base);
/* The same at the manager's win32.level (default HM_LEVEL_PROCESS). */
HM_API hm_status hm_virtual_alloc(hm_manager *m, void *addr, size_t size, uint32_t type,
                                  uint32_t protect, void **base);
/* VirtualFree: HM_MEM_DECOMMIT or HM_MEM_RELEASE (SPEC 2.3). */
HM_API hm_status hm_virtual_free(hm_manager *m, void *addr, size_t size, uint32_t free_type);
/* VirtualProtect (SPEC 2.4); old_protect may not be NULL (HM_E_NOACCESS). */
HM_API hm_status hm_virtual_protect(hm_manager *m, void *addr, size_t size, uint32_t protect,
                                    uint32_t *old_protect);
/* VirtualQuery (SPEC 2.5). Never waits on a lock an allocating thread may hold. */
HM_API hm_status hm_virtual_query(hm_manager *m, const void *addr, hm_region *out);

/* Conveniences over the calls above. */
HM_API hm_status hm_reserve(hm_manager *m, size_t size, void **base);
HM_API hm_status hm_commit(hm_manager *m, void *addr, size_t size, uint32_t protect);
HM_API hm_status hm_decommit(hm_manager *m, void *addr, size_t size);
HM_API hm_status hm_release(hm_manager *m, void *base);

/* ---- write watch and guard pages (SPEC 2.6) ------------------------------------------------ */

#define HM_WRITE_WATCH_FLAG_RESET 0x1u

/* GetWriteWatch: the pages of [base, base+size) (inside one allocation reserved with
 * HM_MEM_WRITE_WATCH) written since the allocation was made or last reset, in address order, at
 * most *count of them; *count comes back as the number listed, *granularity as the page size. With
 * HM_WRITE_WATCH_FLAG_RESET exactly the listed pages are reset, atomically with the report: a write
 * racing the call is listed now or by the next call, never lost. Errors: HM_E_NOACCESS for a NULL
 * count, addresses or granularity (while *count > 0); HM_E_INVALID_PARAMETER for *count 0, other
 * flags, size 0, or a range outside one write-watched allocation. */
HM_API hm_status hm_get_write_watch(hm_manager *m, uint32_t flags, void *base, size_t size, void **addresses,
                                    uintptr_t *count, uint32_t *granularity);
/* ResetWriteWatch: no page of the range counts as written afterwards. (Under the fallback, a page the
 * kernel refuses to write-protect again, past vm.max_map_count, stays counted as written: listed again
 * later, never a write lost. The same holds for GetWriteWatch with WRITE_WATCH_FLAG_RESET.) */
HM_API hm_status hm_reset_write_watch(hm_manager *m, void *base, size_t size);
/* The write-watch mechanism this process uses: "kernel" (userfaultfd write-protection in asynchronous
 * mode with the PAGEMAP_SCAN ioctl: the writer never takes a signal) or "fallback" (pages are
 * write-protected and the first write to each is recorded by hostmem's fault handler). The
 * environment variable HOSTMEM_WRITE_WATCH=fallback forces the fallback. */
HM_API const char *hm_write_watch_mechanism(void);
/* Why: the mechanism's name, or what made the kernel mechanism unavailable. */
HM_API const char *hm_write_watch_describe(void);

/* Guard pages: the first access to a page committed with HM_PAGE_GUARD disarms its guard (queries
 * show its base protection from then on) and reports a guard-page violation
 * (STATUS_GUARD_PAGE_VIOLATION) to the guard handler, on the faulting thread, in signal context
 * (async-signal-safe code only), with the faulting address (as Windows' ExceptionInformation[1]; its
 * page is the guard page) and the kind of access. The handler may touch hostmem memory, that page
 * included (SIGSEGV is unblocked while it runs). The handler returns
 * HM_GUARD_CONTINUE to let the access run again (it now succeeds if the base protection allows it),
 * or HM_GUARD_RAISE to deliver the fault as a SIGSEGV to the handler installed before hostmem's (by
 * default the process dies, as an unhandled guard-page violation ends a Windows process).
 * Without a handler (the default), the access goes on and the violation is only counted
 * (hm_guard_violations): what a Windows thread stack's guard page does. */
typedef enum hm_access { HM_ACCESS_UNKNOWN = -1, HM_ACCESS_READ = 0, HM_ACCESS_WRITE = 1, HM_ACCESS_EXECUTE = 8 } hm_access;
typedef enum hm_guard_action { HM_GUARD_CONTINUE = 0, HM_GUARD_RAISE = 1 } hm_guard_action;
typedef hm_guard_action (*hm_guard_handler)(void *addr, hm_access access, void *arg);
HM_API void hm_set_guard_handler(hm_guard_handler fn, void *arg);
HM_API uint64_t hm_guard_violations(void);

/* hostmem's SIGSEGV/SIGBUS handler is installed when the first guard page or fallback write watch
 * needs it, and passes every fault on a page that is not its own to the handler that was there
 * before. A program that installs its own handler AFTER that calls this first, from its handler,
 * with the handler's arguments (int, siginfo_t *, void *ucontext): nonzero means hostmem handled the
 * fault and the program's handler should return at once (the access is retried). */
HM_API int hm_handle_fault(int sig, void *siginfo, void *ucontext);

/* ---- heaps (IHostMalloc, SPEC 4) ---------------------------------------------------------- */

typedef struct hm_heap hm_heap;

#define HM_HEAP_THREADSAFE 0x1u  /* MALLOC_THREADSAFE: any thread at any time; else one at a time */
#define HM_HEAP_EXECUTABLE 0x2u  /* MALLOC_EXECUTABLE: its memory can hold code that runs */

/* A heap of manager m (NULL: the default). Unknown flag bits: HM_E_INVALIDARG. */
HM_API hm_status hm_heap_create(hm_manager *m, uint32_t flags, hm_heap **out);
/* Frees every block at once and gives the heap's charge back. Live debug blocks are reported on
 * stderr by site first. */
HM_API hm_status hm_heap_destroy(hm_heap *h);
/* 16-byte aligned; size 0 gives a unique minimal block. Pages the heap commits for the request are
 * admitted at `level`: HM_E_COMMITMENT_LIMIT (E_OUTOFMEMORY in COM) or HM_E_HOST_TIMEOUT. */
HM_API hm_status hm_heap_alloc(hm_heap *h, size_t size, hm_level level, void **out);
/* As hm_heap_alloc, remembering the site (file, line) for statistics and leak reports. */
HM_API hm_status hm_heap_alloc_debug(hm_heap *h, size_t size, hm_level level, const char *file, int line,
                                     void **out);
HM_API hm_status hm_heap_calloc(hm_heap *h, size_t count, size_t size, hm_level level, void **out);
/* align: any power of two up to 2^40 (1 TiB). Up to 32 KiB small blocks serve it; beyond, a block of
 * its own at a reservation aligned so (64 KiB is every reservation's alignment anyway). */
HM_API hm_status hm_heap_alloc_aligned(hm_heap *h, size_t size, size_t align, hm_level level, void **out);
/* realloc: p NULL allocates; the contents up to the smaller size are kept; on failure p is untouched. */
HM_API hm_status hm_heap_realloc(hm_heap *h, void *p, size_t size, hm_level level, void **out);
/* NULL is HM_OK. A live block of another heap: HM_E_HOST_NOT_OWNER. Anything that is not a live
 * block of any heap: HM_E_HOST_INVALIDOPERATION. Either way nothing changes. */
HM_API hm_status hm_heap_free(hm_heap *h, void *p);
/* Bytes usable at p (a live block of h), or 0. */
HM_API size_t hm_heap_usable_size(hm_heap *h, const void *p);
/* Where the program writes into block p of an executable heap (code, before it runs it from p). Where
 * the system forbids memory that is writable and executable at once (W^X), an executable heap keeps
 * two views of its memory: p is executable and readable, and this returns p's alias in the writable
 * view; elsewhere it returns p. NULL if p is no live block of h. (The environment variable
 * HOSTMEM_EXEC_VIEWS=dual makes every executable heap keep two views.) */
HM_API void *hm_heap_writable(hm_heap *h, const void *p);

typedef struct hm_heap_stats {
    uint64_t live_bytes;       /* bytes of live blocks (block sizes) */
    uint64_t live_blocks;
    uint64_t large_bytes;      /* of which in large blocks */
    uint64_t cached_large_bytes; /* freed large blocks kept committed (and charged) for reuse */
    uint64_t segments;
    uint64_t committed_pages;  /* 64 KiB heap pages committed (segment headers included) */
} hm_heap_stats;
HM_API hm_status hm_heap_get_stats(hm_heap *h, hm_heap_stats *out);
/* Gives back now what the heap keeps for reuse: its empty pages (decommitted) and its freed large
 * blocks (released), the calling thread's cached large blocks included. A heap does this by itself
 * for pages that have stayed empty for 100 ms (at its next page operation) and at once while the
 * manager's memory state is Low; blocks sitting in other threads' caches stay (each thread's go back
 * when it exits). */
HM_API hm_status hm_heap_trim(hm_heap *h);

/* Debug sites of h, one call of fn per site with live or past debug blocks. */
typedef struct hm_heap_site {
    const char *file;
    int line;
    uint64_t live_bytes, live_blocks, total_blocks;
} hm_heap_site;
HM_API hm_status hm_heap_sites(hm_heap *h, void (*fn)(const hm_heap_site *site, void *arg), void *arg);

/* ---- introspection ------------------------------------------------------------------------ */

/* The process's report, as the drop-in malloc prints it at exit (option stats=on, `hostmem run`):
 * wall time since the library was loaded, the process-default manager's limit and reserves, peak and
 * final charge, resident memory as the kernel counts it (peak and now: memory hostmem does not see
 * shows as the difference), requests granted, refused, waited and timed out by level, and the heaps
 * that serve malloc by size class. HM_REPORT_JSON gives the same as one JSON object (README, "The
 * report"). Writes at most cap bytes into buf, NUL-terminated when cap > 0, and returns the length
 * the whole report needs, as snprintf does (0 if the default manager cannot start). */
typedef enum hm_report_format { HM_REPORT_TEXT = 0, HM_REPORT_JSON = 1 } hm_report_format;
HM_API size_t hm_report(hm_report_format format, char *buf, size_t cap);

typedef struct hm_vm_stats {
    size_t allocations;        /* live allocations */
    size_t runs;               /* page runs over all live allocations */
    size_t reserved_bytes;     /* sum of allocation sizes */
    size_t committed_bytes;    /* bytes of committed pages */
    size_t metadata_bytes;     /* bytes of map records in use (allocations, run tables, radix nodes:
                                  nodes, once made, stay for the life of the process) */
    size_t metadata_peak;      /* high-water mark of metadata_bytes */
    size_t metadata_mapped;    /* bytes the map has mapped for its records (never returned) */
    size_t arena_bytes;        /* address space held in arenas, used or not */
} hm_vm_stats;

HM_API void hm_vm_get_stats(hm_vm_stats *out);
/* Resets metadata_peak to the current metadata_bytes. */
HM_API void hm_vm_reset_peak(void);

/* Calls fn for every region of every allocation of the manager, in address order, as a sequence of
 * queries would report them (free gaps are not reported). Stops early when fn returns nonzero. */
HM_API hm_status hm_vm_walk(hm_manager *m, int (*fn)(const hm_region *r, void *arg), void *arg);

#ifdef __cplusplus
}
#endif
#endif
