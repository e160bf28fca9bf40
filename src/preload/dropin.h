/* dropin.h — the drop-in malloc (libhostmem-malloc.so): its one state and the calls between its files.
 *
 * Every malloc-family call and every C++ operator new/delete is served by one thread-safe hm_heap of
 * the process-default manager (options from HOSTMEM_OPTIONS, read with secure_getenv: ignored in
 * setuid/setgid programs), at the level of the calling thread (hostmem/malloc.h) or else the option
 * malloc.level.
 *
 * Start. The first call makes the heap (init.c). It may come before any constructor has run (the
 * dynamic loader and libc allocate early) and on any thread; making the heap calls no malloc, but in
 * case something on that path does (a libc function on an unusual system), a call that arrives on the
 * initialising thread while it initialises is served from a static bootstrap area (boot_*) whose
 * blocks are never given back; other threads wait. No thread starts and no signal handler is
 * installed until a feature that needs it is used (a notification callback, write watch).
 *
 * fork. pthread_atfork handlers, registered at start, take the heap's lock and every lock of the
 * layers below in their order before fork and release them in both processes after it, so the child
 * finds no lock held by a thread that does not exist there (init.c). Other threads' caches are left
 * as they were in the child: their blocks stay allocated (the child's copies of those threads' blocks
 * are the program's to free, and a free reaches the heap from any thread).
 *
 * Room to unwind. A request the budget refuses starts, on its thread, a window of malloc.unwind_time
 * (default 500 ms) in which that thread's requests may also use the last malloc.unwind bytes below
 * their level's threshold (default 1/32 of the limit, at most 16 MiB), which no other request may
 * take (hm_account_unwinding, account.h): the program that was just refused can still build its
 * error and unwind. The refused request itself stays refused.
 *
 * Invalid frees (a double free, a pointer malloc never returned, an interior pointer) are told apart
 * by the heap without changing it; the drop-in writes what happened to stderr and then, by
 * malloc.invalid_free, aborts (the default, as glibc does) or returns leaving everything as it was. */
#ifndef HM_DROPIN_H
#define HM_DROPIN_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <hostmem/hostmem.h>

#include "../heap/heap_internal.h"
#include "../manager/options.h"

#define HM_DROPIN_API __attribute__((visibility("default")))

typedef struct hm_dropin {
    _Atomic(hm_heap *) heap; /* NULL until made; then fixed for the life of the process */
    _Atomic(hm_heap *) fast; /* the heap too, when its thread-cache paths serve malloc and free directly
                                (no checker tracks it, no sites); else &hm_dropin_no_heap, never NULL:
                                the fast paths then need no test before they read fast_id */
    bool sites;              /* malloc.sites: blocks carry their allocating stack (sites.c) */
    hm_manager *m;           /* the process-default manager */
    hm_options opts;         /* its options (the malloc.*, stats and report keys are the drop-in's) */
    uint32_t level;          /* malloc.level */
} hm_dropin;

/* (hidden: the entry points read them at a fixed offset from the code, not through the GOT) */
extern hm_dropin hm_dropin_state __attribute__((visibility("hidden")));
/* A heap of zeros, never used: its fast_id, 0, matches no thread's cache (heap_internal.h,
 * hm_heap_cached_lists), so that both fast paths fall through to the slow ones while the drop-in's
 * own heap may not serve them (not made yet, tracked, sites). */
extern hm_heap hm_dropin_no_heap __attribute__((visibility("hidden")));

/* The level this thread's requests use: set by hm_malloc_level_set, else -1 (malloc.level). */
extern _Thread_local int hm_dropin_thread_level __attribute__((tls_model("initial-exec")));
/* When this thread's window to unwind ends (CLOCK_MONOTONIC, ms); meaningful while
 * hm_account_unwinding is set. */
extern _Thread_local uint64_t hm_dropin_unwind_until __attribute__((tls_model("initial-exec")));

/* The heap, made on first use; NULL while this thread is making it (use the bootstrap area then). */
hm_heap *hm_dropin_start(void);

static inline hm_heap *hm_dropin_heap(void)
{
    hm_heap *h = atomic_load_explicit(&hm_dropin_state.heap, memory_order_acquire);
    return __builtin_expect(h != NULL, 1) ? h : hm_dropin_start();
}

/* The bootstrap area (init.c): blocks for calls made while the heap is being made. */
#define HM_DROPIN_BOOT_BYTES (256 << 10)
extern unsigned char hm_dropin_boot[HM_DROPIN_BOOT_BYTES];
void *hm_dropin_boot_alloc(size_t size, size_t align);
static inline bool hm_dropin_is_boot(const void *p)
{
    return (uintptr_t)p - (uintptr_t)hm_dropin_boot < HM_DROPIN_BOOT_BYTES;
}
size_t hm_dropin_boot_size(const void *p);

/* The allocation paths every entry point shares (malloc.c). NULL with errno ENOMEM on refusal. Never
 * inlined: the entry points' fast paths then need no stack frame. */
__attribute__((noinline)) void *hm_dropin_alloc_slow(size_t size);
__attribute__((noinline)) void hm_dropin_free_slow(void *p);
/* A Free the heap refused: reported, then abort or nothing (malloc.invalid_free). */
void hm_dropin_invalid(const char *fn, void *p, hm_status st);

/* The common case first, inline in every entry point (malloc, free, new, delete, calloc, realloc):
 * a small block from or to this thread's pages (heap_internal.h), with every check Free makes;
 * anything else takes the slow path (which gives the exact answer). */
static inline void *hm_dropin_alloc(size_t size)
{
    /* (the drop-in's heap is thread-cached: init.c) */
    uintptr_t b = hm_heap_alloc_fast_cached(atomic_load_explicit(&hm_dropin_state.fast, memory_order_acquire), size);
    if (__builtin_expect(b != 0, 1)) return (void *)b;
    return hm_dropin_alloc_slow(size);
}

static inline void hm_dropin_free(void *p)
{
    /* (NULL is in no segment: the fast path passes it on) */
    hm_heap *h = atomic_load_explicit(&hm_dropin_state.fast, memory_order_acquire);
    if (__builtin_expect(hm_heap_free_fast_as(h, (uintptr_t)p, true), 1)) return;
    hm_dropin_free_slow(p);
}
void *hm_dropin_alloc_aligned(size_t size, size_t align);
/* The level of this thread's requests now; a budget refusal's consequences (errno ENOMEM, the window
 * to unwind) for a request made elsewhere (mmap.c). */
unsigned hm_dropin_level(void);
void hm_dropin_refused(void);
/* Whether p lies in the brk heap (init.c): libc's own malloc's memory, never hostmem's. */
bool hm_dropin_in_brk(const void *p);

/* Sites (sites.c): started with the heap when malloc.sites asks; a block whose allocating stack is
 * recorded (st: the heap's status); the sites file for `hostmem run`. */
void hm_dropin_sites_start(void);
void *hm_dropin_alloc_site(hm_heap *h, size_t size, unsigned level, hm_status *st);
void hm_dropin_sites_write(const char *dir);
/* While on, this thread's blocks carry no site (the drop-in's own allocations, through libc). */
void hm_dropin_sites_quiet(bool on);
/* The timeline for `hostmem run --plot` (timeline.c). */
void hm_dropin_timeline_start(void);
void hm_dropin_timeline_write(const char *dir);

/* The report (report.c): written at exit when the options ask for it; malloc_stats prints it. */
void hm_dropin_report_at_exit(void);
void hm_dropin_report_to(int fd, bool json);

#endif
