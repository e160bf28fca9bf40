/* init.c — the drop-in malloc's start (dropin.h, "Start"), its bootstrap area, fork handlers, the
 * per-thread level (hostmem/malloc.h) and the report at exit.
 *
 * Start protocol: `starting` goes 0 -> 1 (one thread wins with a compare-and-swap and records
 * itself in `starter`), the winner makes the manager and the heap and publishes the heap (release),
 * then registers the fork handlers; 1 -> 2 after that. A call from the winner while it starts gets
 * bootstrap memory; another thread spins (yielding) until the heap is there. A start that fails (a
 * bad HOSTMEM_OPTIONS, a kernel hostmem cannot run on) has already said why on stderr and ends the
 * process with status 2: a program cannot run without malloc, and a silent fallback to another
 * allocator would hide that the budget does not hold. */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <hostmem/malloc.h>

#include "../core/report.h"
#include "../heap/heap.h"
#include "../manager/manager.h"
#include "dropin.h"

hm_heap hm_dropin_no_heap;
hm_dropin hm_dropin_state = {.fast = &hm_dropin_no_heap};
_Thread_local int hm_dropin_thread_level __attribute__((tls_model("initial-exec"))) = -1;
_Thread_local uint64_t hm_dropin_unwind_until __attribute__((tls_model("initial-exec")));

static _Atomic int starting;          /* 0: not started, 1: starting, 2: started */
static uintptr_t brk_start;           /* the program break when the drop-in started */

/* Whether p lies between the program break at start and now: the brk heap, which only libc's own
 * malloc (or the program's sbrk) grows. */
bool hm_dropin_in_brk(const void *p)
{
    uintptr_t now = (uintptr_t)sbrk(0);
    return brk_start && (uintptr_t)p >= brk_start && (uintptr_t)p < now;
}
static _Atomic(pthread_t) starter;    /* the thread that starts (valid while starting == 1) */

/* ---- bootstrap area: a bump allocator over static memory, never given back ---------------------- */

_Alignas(4096) unsigned char hm_dropin_boot[HM_DROPIN_BOOT_BYTES];
#define boot hm_dropin_boot
#define BOOT_BYTES HM_DROPIN_BOOT_BYTES
static _Atomic size_t boot_used;

/* Each block is preceded by 16 bytes whose first word holds its size. */
void *hm_dropin_boot_alloc(size_t size, size_t align)
{
    if (align < 16) align = 16;
    size_t used = atomic_load_explicit(&boot_used, memory_order_relaxed), at, end;
    do {
        at = (used + 16 + align - 1) & ~(align - 1);
        if (size > BOOT_BYTES || at > BOOT_BYTES - size) {
            errno = ENOMEM;
            return NULL;
        }
        end = (at + size + 15) & ~(size_t)15;
    } while (!atomic_compare_exchange_weak_explicit(&boot_used, &used, end, memory_order_relaxed, memory_order_relaxed));
    ((size_t *)(boot + at))[-2] = size;
    return boot + at;
}

size_t hm_dropin_boot_size(const void *p) { return ((const size_t *)p)[-2]; }

/* ---- fork ---------------------------------------------------------------------------------------- */

static void fork_prepare(void)
{
    hm_heap *h = atomic_load_explicit(&hm_dropin_state.heap, memory_order_acquire);
    hm_manager_fork_reclaim(hm_dropin_state.m, true); /* (first: manager.h) */
    hm_heap_fork_prepare(h);
    hm_manager_fork_prepare(hm_dropin_state.m);
    hm_heap_all_lock(true); /* (a leaf: last) */
}

static void fork_parent(void)
{
    hm_heap_all_lock(false);
    hm_manager_fork_after(hm_dropin_state.m, false);
    hm_heap_fork_after(atomic_load_explicit(&hm_dropin_state.heap, memory_order_relaxed));
    hm_manager_fork_reclaim(hm_dropin_state.m, false);
}

static void fork_child(void)
{
    hm_heap_all_lock(false);
    hm_manager_fork_after(hm_dropin_state.m, true);
    hm_heap_fork_after(atomic_load_explicit(&hm_dropin_state.heap, memory_order_relaxed));
    hm_manager_fork_reclaim(hm_dropin_state.m, false);
}

/* ---- start --------------------------------------------------------------------------------------- */

static __attribute__((noreturn)) void cannot_start(const char *what, hm_status st)
{
    char msg[512];
    const char *d = hm_last_detail();
    int n = snprintf(msg, sizeof msg, "hostmem: the drop-in malloc cannot start: %s: %s%s%s\n", what,
                     hm_status_message(st), d && *d ? ": " : "", d ? d : "");
    if (n > 0) {
        ssize_t w = write(2, msg, (size_t)n < sizeof msg ? (size_t)n : sizeof msg - 1);
        (void)w;
    }
    _exit(2);
}

hm_heap *hm_dropin_start(void)
{
    int s = 0;
    if (atomic_compare_exchange_strong_explicit(&starting, &s, 1, memory_order_acq_rel, memory_order_acquire)) {
        atomic_store_explicit(&starter, pthread_self(), memory_order_release);
        brk_start = (uintptr_t)sbrk(0);
        hm_status st = HM_OK;
        hm_manager *m = hm_manager_default(&st);
        if (!m) cannot_start("the process-default manager (HOSTMEM_OPTIONS)", st);
        hm_dropin_state.m = m;
        hm_dropin_state.opts = m->opts;
        hm_dropin_state.level = m->opts.malloc_level;
        hm_manager_set_unwind(m, m->opts.malloc_unwind);
        hm_heap *h;
        if ((st = hm_heap_create(m, HM_HEAP_THREADSAFE, &h))) cannot_start("its heap", st);
        hm_report_register_heap(h, "malloc");
        hm_dropin_state.sites = m->opts.malloc_sites != 0;
        atomic_store_explicit(&hm_dropin_state.heap, h, memory_order_release);
        /* (dropin.h's fast paths assume a thread-cached heap) */
        if (h->fast && h->cached && !hm_dropin_state.sites) atomic_store_explicit(&hm_dropin_state.fast, h, memory_order_release);
        /* registered now, early: their prepare runs after those registered later (by libraries the
         * program loads), which may allocate in theirs; their child handler runs first */
        pthread_atfork(fork_prepare, fork_parent, fork_child);
        atomic_store_explicit(&starting, 2, memory_order_release);
        return h;
    }
    for (;;) {
        hm_heap *h = atomic_load_explicit(&hm_dropin_state.heap, memory_order_acquire);
        if (h) return h;
        if (pthread_equal(atomic_load_explicit(&starter, memory_order_acquire), pthread_self()) &&
            atomic_load_explicit(&starting, memory_order_acquire) == 1)
            return NULL; /* a call from inside the start: the bootstrap area serves it */
        sched_yield();
    }
}

/* Started before main at the latest, so that the report's clock and the fork handlers do not wait
 * for the program's first allocation. */
static __attribute__((constructor)) void dropin_constructor(void)
{
    (void)hm_dropin_heap();
    hm_dropin_sites_start();
    hm_dropin_timeline_start();
}

/* Run after the program's atexit handlers and destructors (the loader finalises a preloaded library
 * after the program); what runs later may still allocate and free: nothing is torn down. */
static __attribute__((destructor)) void dropin_destructor(void) { hm_dropin_report_at_exit(); }

/* ---- hostmem/malloc.h ---------------------------------------------------------------------------- */

HM_DROPIN_API int hm_malloc_level_set(int level)
{
    if (level < -1 || level > HM_LEVEL_PROCESS) return -2;
    int old = hm_dropin_thread_level;
    hm_dropin_thread_level = level;
    return old;
}

HM_DROPIN_API int hm_malloc_level_get(void)
{
    int l = hm_dropin_thread_level;
    if (l >= 0) return l;
    (void)hm_dropin_heap();
    return (int)hm_dropin_state.level;
}
