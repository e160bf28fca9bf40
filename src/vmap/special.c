/* special.c — guard pages and write watch (special.h): the per-allocation records, the trap lock,
 * the kernel protections they imply, and the fault handler's policy. */
#define _GNU_SOURCE
#include "special.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>

#include "../os/dirty.h"
#include "../os/os.h"
#include "../os/trap.h"
#include "radix.h"
#include "rules.h"
#include "vmap_internal.h"

static hm_pool special_pool = HM_POOL_INIT("special", sizeof(hm_special), 64 * 1024);

/* ---- the trap lock ----------------------------------------------------------------------------- */

static atomic_flag trap_lock = ATOMIC_FLAG_INIT;

static void spin_lock(void)
{
    while (atomic_flag_test_and_set_explicit(&trap_lock, memory_order_acquire)) {
#if defined(__x86_64__) || defined(__i386__)
        __builtin_ia32_pause();
#elif defined(__aarch64__)
        __asm__ volatile("yield");
#endif
    }
}
static void spin_unlock(void) { atomic_flag_clear_explicit(&trap_lock, memory_order_release); }

/* Outside the handler: every signal blocked while the lock is held (special.h says why). */
static void lock(sigset_t *saved)
{
    hm_trap_block_all(saved);
    spin_lock();
}
static void unlock(const sigset_t *saved)
{
    spin_unlock();
    hm_trap_restore(saved);
}

/* ---- bits -------------------------------------------------------------------------------------- */

static inline bool bit(const uint64_t *w, uint64_t p) { return (w[p / 64] >> (p % 64)) & 1u; }
static inline void set_bit(uint64_t *w, uint64_t p, bool on)
{
    if (on) w[p / 64] |= (uint64_t)1 << (p % 64);
    else w[p / 64] &= ~((uint64_t)1 << (p % 64));
}

/* Sets bits [p0, p1) to on, a word at a time; returns how many changed. */
static uint64_t set_bits(uint64_t *w, uint64_t p0, uint64_t p1, bool on)
{
    uint64_t changed = 0;
    while (p0 < p1) {
        uint64_t i = p0 / 64, lo = p0 % 64, hi = p1 - i * 64 < 64 ? p1 - i * 64 : 64;
        uint64_t mask = (hi == 64 ? ~(uint64_t)0 : ((uint64_t)1 << hi) - 1) & ~(((uint64_t)1 << lo) - 1);
        uint64_t old = w[i], now = on ? old | mask : old & ~mask;
        changed += (uint64_t)__builtin_popcountll(old ^ now);
        w[i] = now;
        p0 = i * 64 + hi;
    }
    return changed;
}

/* The first page in [p, end) whose bit differs from on (end if none), a word at a time. */
static uint64_t bits_until(const uint64_t *w, uint64_t p, uint64_t end, bool on)
{
    while (p < end) {
        if (!(p % 64) && p + 64 <= end && w[p / 64] == (on ? ~(uint64_t)0 : 0)) {
            p += 64;
            continue;
        }
        if (bit(w, p) != on) return p;
        p++;
    }
    return end;
}

/* ---- base protections, by block (special.h: bprot) --------------------------------------------- */

#define BLOCK ((uint64_t)1 << HM_SPECIAL_BLOCK_SHIFT)

static inline int get_prot(const hm_special *s, uint64_t p)
{
    uint8_t b = s->bprot[p >> HM_SPECIAL_BLOCK_SHIFT];
    return b == HM_SPECIAL_MIXED ? s->prot[p] : b;
}

/* Pages [p0, p1) get base protection v: whole blocks by their entry, the others in prot[] (a block
 * turns mixed, its per-page entries written from its old value first). Trap lock held. */
static void set_prot(hm_special *s, uint64_t p0, uint64_t p1, int v)
{
    while (p0 < p1) {
        uint64_t b = p0 >> HM_SPECIAL_BLOCK_SHIFT, bs = b << HM_SPECIAL_BLOCK_SHIFT;
        uint64_t be = bs + BLOCK < s->npages ? bs + BLOCK : s->npages, e = p1 < be ? p1 : be;
        uint8_t old = s->bprot[b];
        if (p0 == bs && e == be) {
            s->bprot[b] = (uint8_t)v;
        } else if (old != v) {
            if (old != HM_SPECIAL_MIXED) {
                memset(s->prot + bs, old, be - bs);
                s->bprot[b] = HM_SPECIAL_MIXED;
            }
            memset(s->prot + p0, v, e - p0);
        }
        p0 = e;
    }
}

/* The kernel protection page p has (or gets) from its state: lprot its base Linux protection (0:
 * reserved), guarded, written. */
static inline int kernel_prot(const hm_special *s, int lprot, bool guarded, bool written)
{
    if (!lprot || guarded) return HM_OS_PROT_NONE;
    if (s->watch == HM_WATCH_FALLBACK && (lprot & HM_OS_PROT_WRITE) && !written) return lprot & ~HM_OS_PROT_WRITE;
    return lprot;
}
static inline int page_prot(const hm_special *s, uint64_t p)
{
    return kernel_prot(s, get_prot(s, p), bit(s->guard, p), s->written && bit(s->written, p));
}

/* ---- the mechanism ----------------------------------------------------------------------------- */

static pthread_once_t mode_once = PTHREAD_ONCE_INIT;
static int mode;
static void probe_mode(void) { mode = hm_dirty_available() ? HM_WATCH_KERNEL : HM_WATCH_FALLBACK; }
int hm_watch_mode(void)
{
    pthread_once(&mode_once, probe_mode);
    return mode;
}

/* ---- the fault handler's policy ---------------------------------------------------------------- */

static _Atomic(hm_guard_handler) guard_fn;
static _Atomic(void *) guard_arg;
static _Atomic uint64_t guard_hits;

uint64_t hm_special_guard_hits(void) { return atomic_load_explicit(&guard_hits, memory_order_relaxed); }

void hm_set_guard_handler(hm_guard_handler fn, void *arg)
{
    atomic_store_explicit(&guard_arg, arg, memory_order_relaxed);
    atomic_store_explicit(&guard_fn, fn, memory_order_release);
}

/* Async-signal-safe: the lock-free lookup, the trap lock, mprotect. */
static hm_trap_action on_fault(void *addr, hm_trap_access access, void *uc)
{
    (void)uc;
    uintptr_t at = (uintptr_t)addr & ~(PAGE - 1);
    hm_alloc *a = hm_radix_lookup(at >> 16);
    if (!a) return HM_TRAP_PASS;
    hm_special *s = (hm_special *)atomic_load_explicit(&a->special, memory_order_acquire);
    if (!s) return HM_TRAP_PASS;
    spin_lock();
    if (s->alloc != a || at < s->base || (at - s->base) / PAGE >= s->npages) {
        spin_unlock();
        return HM_TRAP_PASS;
    }
    uint64_t p = (at - s->base) / PAGE;
    int lprot = get_prot(s, p);
    bool fired = false;
    if (bit(s->guard, p)) { /* the first touch of a guard page: disarm it */
        set_bit(s->guard, p, false);
        s->guards--;
        fired = true;
    } else if (s->watch == HM_WATCH_FALLBACK && (lprot & HM_OS_PROT_WRITE) && !bit(s->written, p) &&
               access != HM_TRAP_READ && access != HM_TRAP_EXEC) { /* the first write since the reset */
        set_bit(s->written, p, true);
    } else {
        /* nothing to do for this page: a fault that the page's protection explains (the program's own
         * error) is passed on; one that raced with another thread's disarming is retried */
        int k = page_prot(s, p);
        bool allowed = access == HM_TRAP_WRITE ? (k & HM_OS_PROT_WRITE) : access == HM_TRAP_EXEC ? (k & HM_OS_PROT_EXEC) : (k != 0);
        spin_unlock();
        return allowed && access != HM_TRAP_UNKNOWN ? HM_TRAP_RETRY : HM_TRAP_PASS;
    }
    int err = hm_os_protect((void *)at, PAGE, page_prot(s, p));
    if (err == ENOMEM && !fired) {
        /* the page's own protection would split one mapping too many (vm.max_map_count): count the
         * unwritten pages of its aligned 64-page block as written too, so that the block becomes one
         * protection and merges with its neighbours. A page listed that was not written is harmless
         * to a collector; a write not listed, or a crash, would not be. */
        uint64_t lo = p & ~(uint64_t)63, hi = lo + 64 < s->npages ? lo + 64 : s->npages;
        bool same = true;
        for (uint64_t q = lo; q < hi && same; q++) same = get_prot(s, q) == lprot && !bit(s->guard, q);
        if (same) {
            set_bits(s->written, lo, hi, true);
            err = hm_os_protect((void *)(s->base + lo * PAGE), (hi - lo) * PAGE, lprot);
        }
    }
    spin_unlock();
    if (err) return HM_TRAP_PASS; /* cannot happen on a page we map; a crash beats a loop */
    if (!fired) return HM_TRAP_RETRY;
    atomic_fetch_add_explicit(&guard_hits, 1, memory_order_relaxed);
    hm_guard_handler fn = atomic_load_explicit(&guard_fn, memory_order_acquire);
    if (!fn) return HM_TRAP_RETRY; /* the documented default: the access goes on */
    hm_access kind = access == HM_TRAP_WRITE ? HM_ACCESS_WRITE : access == HM_TRAP_EXEC ? HM_ACCESS_EXECUTE
                   : access == HM_TRAP_READ ? HM_ACCESS_READ : HM_ACCESS_UNKNOWN;
    /* The program's handler may touch hostmem's special pages itself (write to the page whose guard
     * just fired, which the write-watch fallback still protects): SIGSEGV and SIGBUS are unblocked
     * while it runs, so that such a fault is handled like any other (no lock is held here). */
    sigset_t saved;
    hm_trap_unblock_faults(&saved);
    hm_guard_action act = fn(addr, kind, atomic_load_explicit(&guard_arg, memory_order_relaxed));
    hm_trap_restore(&saved);
    return act == HM_GUARD_RAISE ? HM_TRAP_PASS : HM_TRAP_RETRY;
}

int hm_handle_fault(int sig, void *siginfo, void *ucontext)
{
    return hm_trap_handle(sig, (siginfo_t *)siginfo, ucontext);
}

const char *hm_write_watch_mechanism(void)
{
    return hm_watch_mode() == HM_WATCH_KERNEL ? "kernel" : "fallback";
}

const char *hm_write_watch_describe(void) { return hm_dirty_describe(); }

/* ---- records ----------------------------------------------------------------------------------- */

static hm_special *rec(hm_alloc *a) { return (hm_special *)atomic_load_explicit(&a->special, memory_order_relaxed); }

/* What a record leaves behind when the kernel refuses to let it go (hm_map_lock held throughout):
 * array mappings whose munmap failed, linked through their own first two words (next, size), and
 * ranges whose write tracking could not be ended. Both are retried at every later attach and detach,
 * before anything new is registered: a leftover registration must be gone before its addresses are
 * watched again. They are outside every manager's books (metadata, kernel state), so a refusal here
 * never fails the release that caused it. */
static void *stale_mem;
#define STALE_RANGES 64
static struct { uintptr_t base; size_t size; } stale_range[STALE_RANGES];
static unsigned nstale_range;

static void mem_unmap(void *mem, size_t bytes)
{
    if (!hm_os_unmap(mem, bytes)) return;
    ((void **)mem)[0] = stale_mem;
    ((size_t *)mem)[1] = bytes;
    stale_mem = mem;
}

static void unregister(uintptr_t base, size_t size)
{
    if (!hm_dirty_unregister((void *)base, size) || nstale_range == STALE_RANGES) return; /* (full: never seen) */
    stale_range[nstale_range].base = base;
    stale_range[nstale_range].size = size;
    nstale_range++;
}

/* Leftovers inside [base, base+size) are forgotten: a new record has registered that range itself. */
static void stale_forget(uintptr_t base, uint64_t size)
{
    for (unsigned i = 0; i < nstale_range;) {
        if (stale_range[i].base < base + size && base < stale_range[i].base + stale_range[i].size)
            stale_range[i] = stale_range[--nstale_range];
        else
            i++;
    }
}

static void stale_retry(void)
{
    for (void **at = &stale_mem; *at;) {
        void *m = *at, *next = ((void **)m)[0];
        if (hm_os_unmap(m, ((size_t *)m)[1])) at = (void **)m;
        else *at = next;
    }
    for (unsigned i = 0; i < nstale_range;)
        if (hm_dirty_unregister((void *)stale_range[i].base, stale_range[i].size)) i++;
        else stale_range[i] = stale_range[--nstale_range];
}

int hm_special_attach(hm_alloc *a, uint32_t watch, bool guards)
{
    /* the fault handler serves guard pages and the fallback's write faults, not the kernel's watch */
    bool trap = guards || watch == HM_WATCH_FALLBACK;
    hm_special *s = rec(a);
    if (s) return trap ? hm_trap_install(on_fault) : 0;
    stale_retry();
    uintptr_t base = atomic_load_explicit(&a->base, memory_order_relaxed);
    uint64_t npages = atomic_load_explicit(&a->size, memory_order_relaxed) / PAGE;
    uint64_t words = (npages + 63) / 64, nblocks = (npages + BLOCK - 1) / BLOCK;
    size_t bytes = ((npages + 7) & ~(uint64_t)7) + words * 8 * (watch == HM_WATCH_FALLBACK ? 2 : 1) + nblocks;
    bytes = (bytes + PAGE - 1) & ~(PAGE - 1);
    void *mem;
    int err = hm_os_map_meta(bytes, &mem); /* reads zero: reserved, unguarded, unwritten */
    if (err) return err;
    if ((trap && (err = hm_trap_install(on_fault))) || /* (installed for good: nothing to undo) */
        (watch == HM_WATCH_KERNEL && (err = hm_dirty_register((void *)base, npages * PAGE)))) {
        mem_unmap(mem, bytes);
        return err;
    }
    if (watch == HM_WATCH_KERNEL) stale_forget(base, npages * PAGE);
    s = hm_pool_alloc(&special_pool, &err);
    if (!s) {
        if (watch == HM_WATCH_KERNEL) unregister(base, npages * PAGE);
        mem_unmap(mem, bytes);
        return err;
    }
    sigset_t saved;
    lock(&saved);
    s->alloc = a;
    s->base = base;
    s->npages = npages;
    s->watch = watch;
    s->guards = 0;
    s->prot = mem;
    s->guard = (uint64_t *)((char *)mem + ((npages + 7) & ~(uint64_t)7));
    s->written = watch == HM_WATCH_FALLBACK ? s->guard + words : NULL;
    s->bprot = (uint8_t *)(s->guard + words * (watch == HM_WATCH_FALLBACK ? 2 : 1)); /* zero: all reserved */
    s->mem = mem;
    s->mem_size = bytes;
    /* the pages' current protections: from the run table (a new allocation's are all reserved) */
    hm_runs *r = hm_alloc_runs(a);
    uint32_t n = atomic_load_explicit(&r->n, memory_order_relaxed);
    for (uint32_t i = 0; i < n; i++) {
        uint64_t e = atomic_load_explicit(&r->entry[i], memory_order_relaxed);
        uint64_t end = i + 1 < n ? hm_run_first(atomic_load_explicit(&r->entry[i + 1], memory_order_relaxed)) : npages;
        uint32_t attr = hm_run_attr(e);
        if (attr & HM_RUN_COMMIT) set_prot(s, hm_run_first(e), end, hm_prot_linux(attr));
    }
    atomic_store_explicit(&a->special, (uintptr_t)s, memory_order_release);
    hm_alloc_summarize(a); /* queries read the record from now on (guard pages split regions) */
    unlock(&saved);
    if (watch) atomic_fetch_or_explicit(&a->flags, HM_AF_WATCH, memory_order_relaxed);
    return 0;
}

void hm_special_detach(hm_alloc *a)
{
    hm_special *s = rec(a);
    if (!s) return;
    stale_retry();
    if (s->watch == HM_WATCH_KERNEL) unregister(s->base, s->npages * PAGE);
    sigset_t saved;
    lock(&saved);
    atomic_store_explicit(&a->special, 0, memory_order_release);
    hm_alloc_summarize(a);
    s->alloc = NULL;
    void *mem = s->mem;
    size_t bytes = s->mem_size;
    s->prot = s->bprot = NULL;
    s->guard = s->written = NULL;
    unlock(&saved);
    mem_unmap(mem, bytes);
    hm_pool_free(&special_pool, &s->hdr);
}

/* The kernel protection of page p with its base lprot, guard g and written bit w replaced where
 * they are not negative (-1: the page's own). */
static inline int prot_with(const hm_special *s, uint64_t p, int lprot, int g, int w)
{
    return kernel_prot(s, lprot < 0 ? get_prot(s, p) : lprot, g < 0 ? bit(s->guard, p) : g,
                       w < 0 ? s->written && bit(s->written, p) : w);
}

/* Whether bits [q, q+n) of w (q and n multiples of 64) are all equal; their value in *v. */
static bool bits_uniform(const uint64_t *w, uint64_t q, uint64_t n, int *v)
{
    uint64_t first = w[q / 64];
    if (first && first != ~(uint64_t)0) return false;
    for (uint64_t i = q / 64 + 1; i < (q + n) / 64; i++)
        if (w[i] != first) return false;
    *v = first != 0;
    return true;
}

/* Whether pages [q, q+n) all get kernel protection k from prot_with(lprot, g, w): n is a block (q
 * at its start) or 64 pages (q a multiple of 64), looked at by block entry and bitmap word. */
static bool span_is(const hm_special *s, uint64_t q, uint64_t n, int lprot, int g, int w, int k)
{
    int base = lprot, gv = g, wv = w;
    if (base < 0) {
        uint8_t b = s->bprot[q >> HM_SPECIAL_BLOCK_SHIFT];
        if (b != HM_SPECIAL_MIXED) {
            base = b;
        } else {
            if (n > 64) return false;
            base = s->prot[q];
            for (uint64_t i = 1; i < n; i++)
                if (s->prot[q + i] != base) return false;
        }
    }
    if (gv < 0) {
        if (!s->guards) gv = 0;
        else if (!bits_uniform(s->guard, q, n, &gv)) return false;
    }
    if (wv < 0) {
        if (!s->written) wv = 0;
        else if (!bits_uniform(s->written, q, n, &wv)) return false;
    }
    return kernel_prot(s, base, gv, wv) == k;
}

/* The end of the run of pages from p (below p1) whose prot_with(lprot, g, w) is k, p's own: a block,
 * then a bitmap word, then a page at a time. */
static uint64_t run_end(const hm_special *s, uint64_t p, uint64_t p1, int lprot, int g, int w, int k)
{
    uint64_t q = p + 1;
    while (q < p1) {
        if (!(q & (BLOCK - 1)) && q + BLOCK <= p1 && span_is(s, q, BLOCK, lprot, g, w, k)) {
            q += BLOCK;
            continue;
        }
        if (!(q & 63) && q + 64 <= p1 && span_is(s, q, 64, lprot, g, w, k)) {
            q += 64;
            continue;
        }
        if (prot_with(s, q, lprot, g, w) != k) break;
        q++;
    }
    return q;
}

/* Gives pages [p0, p1) the kernel protections of prot_with(lprot, g, w), one mprotect per run of
 * equal protection; puts the old ones back on failure. Trap lock held; the arrays are the caller's
 * to update after success. */
static int apply(hm_special *s, uint64_t p0, uint64_t p1, int lprot, int g, int w)
{
    uint64_t p = p0;
    int err = 0;
    while (p < p1) {
        int k = prot_with(s, p, lprot, g, w);
        uint64_t q = run_end(s, p, p1, lprot, g, w, k);
        if ((err = hm_os_protect((void *)(s->base + p * PAGE), (q - p) * PAGE, k))) break;
        p = q;
    }
    if (!err) return 0;
    for (uint64_t u = p0; u < p;) { /* roll back what was done */
        int k = page_prot(s, u);
        uint64_t q = run_end(s, u, p, -1, -1, -1, k);
        if (hm_os_protect((void *)(s->base + u * PAGE), (q - u) * PAGE, k)) return EFAULT;
        u = q;
    }
    return err;
}

int hm_special_protect(hm_alloc *a, uint64_t p0, uint64_t p1, int lprot, int guard)
{
    hm_special *s = rec(a);
    sigset_t saved;
    lock(&saved);
    int err = apply(s, p0, p1, lprot, guard, -1);
    if (!err) {
        set_prot(s, p0, p1, lprot);
        if (guard > 0) s->guards += (uint32_t)set_bits(s->guard, p0, p1, true);
        if (guard == 0 && s->guards) s->guards -= (uint32_t)set_bits(s->guard, p0, p1, false);
    }
    unlock(&saved);
    return err;
}

int hm_special_restore(hm_alloc *a, uint64_t p0, uint64_t p1)
{
    hm_special *s = rec(a);
    sigset_t saved;
    lock(&saved);
    int err = apply(s, p0, p1, -1, -1, -1);
    unlock(&saved);
    return err;
}

void hm_special_decommit(hm_alloc *a, uint64_t p0, uint64_t p1)
{
    hm_special *s = rec(a);
    if (!s) return;
    sigset_t saved;
    lock(&saved);
    set_prot(s, p0, p1, 0);
    if (s->guards) s->guards -= (uint32_t)set_bits(s->guard, p0, p1, false);
    if (s->written) set_bits(s->written, p0, p1, false);
    unlock(&saved);
    /* the kernel forgot the pages' writes with their contents; a reset rebuilds what it needs
     * (dirty.h, "Transparent huge pages") and cannot fail in a way that would list a page */
    if (s->watch == HM_WATCH_KERNEL) (void)hm_dirty_reset((void *)(s->base + p0 * PAGE), (p1 - p0) * PAGE);
}

bool hm_special_guarded(hm_alloc *a, uint64_t p0, uint64_t p1)
{
    hm_special *s = rec(a);
    if (!s) return false;
    bool any = false;
    sigset_t saved;
    lock(&saved);
    if (s->guards) any = bits_until(s->guard, p0, p1, false) < p1;
    unlock(&saved);
    return any;
}

int hm_special_expected(hm_alloc *a, uint64_t p, int lprot)
{
    hm_special *s = rec(a);
    sigset_t saved;
    lock(&saved);
    int k = get_prot(s, p) != lprot || (!lprot && bit(s->guard, p)) ? -1 : page_prot(s, p);
    unlock(&saved);
    return k;
}

bool hm_special_guard_run(hm_alloc *a, uint64_t p, uint64_t *end, bool *guarded)
{
    hm_special *s = (hm_special *)atomic_load_explicit(&a->special, memory_order_acquire);
    if (!s) return false;
    sigset_t saved;
    lock(&saved);
    bool ok = s->alloc == a && p < s->npages && *end <= s->npages;
    if (ok) {
        bool g = bit(s->guard, p);
        *end = g || s->guards ? bits_until(s->guard, p + 1, *end, g) : *end;
        *guarded = g;
    }
    unlock(&saved);
    return ok;
}

/* ---- write watch ------------------------------------------------------------------------------- */

int hm_special_watch_scan(hm_alloc *a, uint64_t p0, uint64_t p1, bool reset, uintptr_t *out, uint64_t max,
                          uint64_t *n)
{
    hm_special *s = rec(a);
    *n = 0;
    if (s->watch == HM_WATCH_KERNEL) {
        size_t got = 0;
        int err = hm_dirty_scan((void *)(s->base + p0 * PAGE), (p1 - p0) * PAGE, out, max, reset, &got);
        if (!err) *n = got;
        return err;
    }
    /* the fallback: in batches, so that a writer's fault handler never waits long; each run of
     * written pages is reported and (with reset) write-protected again in one step */
    uint64_t k = 0;
    for (uint64_t p = p0; p < p1 && k < max;) {
        sigset_t saved;
        lock(&saved);
        uint64_t stop = p + 4096 < p1 ? p + 4096 : p1;
        while (p < stop && k < max) {
            if (!(p % 64) && p + 64 <= stop && !s->written[p / 64]) { /* an empty word */
                p += 64;
                continue;
            }
            if (!bit(s->written, p)) {
                p++;
                continue;
            }
            uint64_t q = p + 1;
            while (q < stop && q - p < max - k && bit(s->written, q)) q++;
            /* a run that cannot be write-protected again (vm.max_map_count) stays written and
             * writable: listed again next time, which is harmless; a write lost would not be */
            bool again = reset && apply(s, p, q, -1, -1, 0) == 0;
            for (; p < q; p++) {
                if (again) set_bit(s->written, p, false);
                out[k++] = s->base + p * PAGE;
            }
        }
        unlock(&saved);
    }
    *n = k;
    return 0;
}

int hm_special_watch_reset(hm_alloc *a, uint64_t p0, uint64_t p1)
{
    hm_special *s = rec(a);
    if (s->watch == HM_WATCH_KERNEL) return hm_dirty_reset((void *)(s->base + p0 * PAGE), (p1 - p0) * PAGE);
    for (uint64_t p = p0; p < p1;) {
        sigset_t saved;
        lock(&saved);
        uint64_t stop = p + 4096 < p1 ? p + 4096 : p1;
        /* as in the scan: pages that cannot be protected again stay written (listed, never lost) */
        if (apply(s, p, stop, -1, -1, 0) == 0) set_bits(s->written, p, stop, false);
        p = stop;
        unlock(&saved);
    }
    return 0;
}
