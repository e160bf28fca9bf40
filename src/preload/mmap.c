/* mmap.c — the program's own memory mappings under the drop-in malloc's budget (README, "What the
 * budget counts").
 *
 * A program that maps memory itself (CPython's small-object arenas, a JIT's code heap, a GC's heap)
 * would slip past a budget that only malloc sees. So mmap, munmap, mprotect and mremap are put in
 * front of libc's: private anonymous mappings are charged to the process-default manager while they
 * are writable — as committed memory is on Windows, and as the kernel itself accounts them — at the
 * level of the calling thread's requests, and refused past it (MAP_FAILED or -1 with ENOMEM, the
 * mapping unchanged). File mappings, shared mappings, MAP_NORESERVE mappings and mappings without
 * PROT_WRITE cost nothing. The charge is account.h's `outside` part. malloc.mmap=off forwards every
 * call unchanged.
 *
 * The books: `maps`, a sorted array of disjoint page ranges, each a private anonymous mapping (not
 * MAP_NORESERVE) made through these functions, with whether it is charged now. Every call takes
 * `lock` across its system call, so that the books and the kernel change together; the charge
 * changes by what the call changes: a MAP_FIXED mapping or a MREMAP_FIXED move that replaces charged
 * pages gives their charge back, munmap gives back what it unmapped, mprotect charges the pages it
 * makes writable and gives back those it makes read-only, mremap charges growth and gives back
 * shrinkage. Mappings the program made before the drop-in started, or through other paths (libc's
 * own thread stacks, the loader), are not in the books and cost nothing. The array lives in memory
 * mapped directly (never malloc). The library's own mappings go to the kernel directly (os/sys.h). */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>

#include "../manager/manager.h"
#include "../manager/notify.h"
#include "../os/sys.h"
#include "dropin.h"

#define API HM_DROPIN_API
#pragma GCC diagnostic ignored "-Wmissing-prototypes" /* (mmap64 has no declaration here) */

#define PAGE 4096u

typedef struct range {
    uintptr_t lo, hi; /* [lo, hi), page aligned */
    bool charged;     /* writable now: its bytes are in the charge */
} range;

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static range *maps;
static size_t nmaps, capmaps;

static inline uintptr_t up(uintptr_t v) { return (v + PAGE - 1) & ~(uintptr_t)(PAGE - 1); }

static bool on(void)
{
    (void)hm_dropin_heap(); /* started (the options are read) */
    return hm_dropin_state.m && hm_dropin_state.opts.malloc_mmap;
}

static hm_account *account(void) { return &hm_dropin_state.m->acct; }

static bool admit(uint64_t bytes)
{
    if (!bytes) return true;
    if (!hm_account_admit(account(), bytes, hm_dropin_level())) {
        hm_notify_refused(hm_dropin_state.m);
        hm_dropin_refused();
        return false;
    }
    atomic_fetch_add_explicit(&account()->outside, bytes, memory_order_relaxed);
    hm_notify_charge_changed(hm_dropin_state.m);
    return true;
}

static void give_back(uint64_t bytes)
{
    if (!bytes) return;
    atomic_fetch_sub_explicit(&account()->outside, bytes, memory_order_relaxed);
    hm_account_uncharge(account(), bytes);
    hm_notify_charge_changed(hm_dropin_state.m);
}

/* The first range ending after a. */
static size_t first_after(uintptr_t a)
{
    size_t lo = 0, hi = nmaps;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (maps[mid].hi <= a) lo = mid + 1;
        else hi = mid;
    }
    return lo;
}

/* Bytes of [lo, hi) in ranges: charged ones (want true) or uncharged ones (false). */
static uint64_t overlap(uintptr_t lo, uintptr_t hi, bool want)
{
    uint64_t n = 0;
    for (size_t i = first_after(lo); i < nmaps && maps[i].lo < hi; i++)
        if (maps[i].charged == want) n += (maps[i].hi < hi ? maps[i].hi : hi) - (maps[i].lo > lo ? maps[i].lo : lo);
    return n;
}

/* Room for the ranges one call may add: each forget or mark splits at most one range into two at
 * either end (mremap with MREMAP_FIXED forgets two places and records one); false without memory for
 * it, and the call then fails with ENOMEM before the kernel is asked, as the kernel's own calls do
 * when a split would pass its limit on mappings. */
static bool reserve_slots(void)
{
    if (nmaps + 4 <= capmaps) return true;
    size_t cap = capmaps ? capmaps * 2 : 1024;
    range *m = hm_sys_mmap(NULL, cap * sizeof *m, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED) return false;
    if (maps) {
        memcpy(m, maps, nmaps * sizeof *m);
        hm_sys_munmap(maps, capmaps * sizeof *m);
    }
    maps = m;
    capmaps = cap;
    return true;
}

/* Ranges split so that none straddles a (pre: reserve_slots). */
static void split_at(uintptr_t a)
{
    size_t i = first_after(a);
    if (i < nmaps && maps[i].lo < a) {
        memmove(&maps[i + 1], &maps[i], (nmaps - i) * sizeof *maps);
        nmaps++;
        maps[i].hi = a;
        maps[i + 1].lo = a;
    }
}

/* [lo, hi) leaves the books (pre: reserve_slots). */
static void forget(uintptr_t lo, uintptr_t hi)
{
    split_at(lo);
    split_at(hi);
    size_t i = first_after(lo), j = i;
    while (j < nmaps && maps[j].hi <= hi) j++;
    memmove(&maps[i], &maps[j], (nmaps - j) * sizeof *maps);
    nmaps -= j - i;
}

/* [lo, hi) enters the books (pre: no range overlaps it, reserve_slots). */
static void record(uintptr_t lo, uintptr_t hi, bool charged)
{
    size_t i = first_after(lo);
    memmove(&maps[i + 1], &maps[i], (nmaps - i) * sizeof *maps);
    maps[i] = (range){lo, hi, charged};
    nmaps++;
}

/* Every range within [lo, hi) becomes charged or not (pre: reserve_slots). */
static void mark(uintptr_t lo, uintptr_t hi, bool charged)
{
    split_at(lo);
    split_at(hi);
    for (size_t i = first_after(lo); i < nmaps && maps[i].lo < hi; i++) maps[i].charged = charged;
}

API void *mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
    if (!len || !on()) return hm_sys_mmap(addr, len, prot, flags, fd, off);
    bool anon = (flags & MAP_ANONYMOUS) && (flags & MAP_TYPE) == MAP_PRIVATE && !(flags & MAP_NORESERVE);
    bool replaces = (flags & MAP_FIXED) && !(flags & MAP_FIXED_NOREPLACE);
    if (!anon && !replaces) return hm_sys_mmap(addr, len, prot, flags, fd, off); /* nothing to count */
    uintptr_t lo = (uintptr_t)addr, hi = up(lo + len);
    if (hi < lo) return hm_sys_mmap(addr, len, prot, flags, fd, off); /* (the kernel says EINVAL/ENOMEM) */
    uint64_t want = anon && (prot & PROT_WRITE) ? up(len) : 0;
    pthread_mutex_lock(&lock);
    uint64_t old = replaces ? overlap(lo, hi, true) : 0; /* charged pages the new mapping replaces */
    void *p = MAP_FAILED;
    if (!reserve_slots()) {
        errno = ENOMEM;
    } else if (want <= old || admit(want - old)) {
        p = hm_sys_mmap(addr, len, prot, flags, fd, off);
        if (p == MAP_FAILED) {
            int e = errno;
            if (want > old) give_back(want - old);
            errno = e;
        } else {
            uintptr_t b = (uintptr_t)p;
            if (replaces) forget(lo, hi);
            if (anon) record(b, up(b + len), want != 0);
            if (want < old) give_back(old - want);
        }
    } else {
        errno = ENOMEM;
    }
    pthread_mutex_unlock(&lock);
    return p;
}

API void *mmap64(void *addr, size_t len, int prot, int flags, int fd, off_t off) __attribute__((alias("mmap")));

API int munmap(void *addr, size_t len)
{
    if (!len || !on()) return hm_sys_munmap(addr, len);
    uintptr_t lo = (uintptr_t)addr & ~(uintptr_t)(PAGE - 1), hi = up((uintptr_t)addr + len);
    pthread_mutex_lock(&lock);
    int r = -1;
    if (!reserve_slots()) {
        errno = ENOMEM;
    } else {
        uint64_t old = overlap(lo, hi, true);
        r = hm_sys_munmap(addr, len);
        if (r == 0) {
            int e = errno;
            forget(lo, hi);
            give_back(old);
            errno = e;
        }
    }
    pthread_mutex_unlock(&lock);
    return r;
}

API int mprotect(void *addr, size_t len, int prot)
{
    if (!len || !on()) return hm_sys_mprotect(addr, len, prot);
    uintptr_t lo = (uintptr_t)addr, hi = up(lo + len);
    if (lo & (PAGE - 1) || hi < lo) return hm_sys_mprotect(addr, len, prot); /* (EINVAL from the kernel) */
    bool w = prot & PROT_WRITE;
    pthread_mutex_lock(&lock);
    int r = -1;
    if (!reserve_slots()) {
        errno = ENOMEM;
    } else {
        uint64_t change = overlap(lo, hi, !w); /* pages that become writable, or stop being so */
        if (w && !admit(change)) {
            errno = ENOMEM;
        } else {
            r = hm_sys_mprotect(addr, len, prot);
            int e = errno;
            if (r != 0 && w) give_back(change);
            if (r == 0) {
                mark(lo, hi, w);
                if (!w) give_back(change);
            }
            errno = e;
        }
    }
    pthread_mutex_unlock(&lock);
    return r;
}

API void *mremap(void *old, size_t oldlen, size_t newlen, int flags, ...)
{
    void *want_at = NULL;
    if (flags & MREMAP_FIXED) {
        va_list ap;
        va_start(ap, flags);
        want_at = va_arg(ap, void *);
        va_end(ap);
    }
    if (!on()) return hm_sys_mremap(old, oldlen, newlen, flags, want_at);
    uintptr_t lo = (uintptr_t)old, hi = up(lo + oldlen), nhi = up(lo + newlen);
    if (lo & (PAGE - 1) || hi < lo || nhi < lo) return hm_sys_mremap(old, oldlen, newlen, flags, want_at);
    pthread_mutex_lock(&lock);
    void *p = MAP_FAILED;
    if (!reserve_slots()) {
        errno = ENOMEM;
        pthread_mutex_unlock(&lock);
        return p;
    }
    /* one kernel mapping: its pages are all charged or all not; known if any of it is in the books */
    size_t i = first_after(lo);
    bool tracked = i < nmaps && maps[i].lo < hi;
    bool charged = tracked && maps[i].charged, keep = flags & MREMAP_DONTUNMAP;
    uint64_t have = hi - lo, will = nhi - lo;
    uint64_t need = !charged ? 0 : keep ? will : will > have ? will - have : 0; /* (DONTUNMAP: the old stays) */
    uintptr_t at = (uintptr_t)want_at, at_hi = up(at + newlen);
    uint64_t replaced = flags & MREMAP_FIXED ? overlap(at, at_hi, true) : 0;
    if (!admit(need)) {
        errno = ENOMEM;
    } else {
        p = hm_sys_mremap(old, oldlen, newlen, flags, want_at);
        int e = errno;
        if (p == MAP_FAILED) {
            give_back(need);
        } else {
            if (flags & MREMAP_FIXED) forget(at, at_hi);
            if (tracked) {
                if (!keep) forget(lo, hi);
                uintptr_t b = (uintptr_t)p;
                record(b, up(b + newlen), charged);
                if (charged && !keep && will < have) give_back(have - will);
            }
            give_back(replaced);
        }
        errno = e;
    }
    pthread_mutex_unlock(&lock);
    return p;
}
