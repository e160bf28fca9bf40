/* malloc.c — the C allocation functions of the drop-in malloc (dropin.h): malloc, free, calloc,
 * realloc, reallocarray, the aligned family, malloc_usable_size, C23's free_sized and
 * free_aligned_sized, glibc's __libc_* names, and the glibc extras (malloc_trim, malloc_stats,
 * mallinfo2, mallinfo, mallopt).
 *
 * Errors follow C, POSIX and glibc: a refusal is NULL with errno ENOMEM (posix_memalign returns the
 * code and leaves errno alone); calloc and reallocarray overflow is ENOMEM; posix_memalign with an
 * alignment that is not a power of two times sizeof(void *) is EINVAL, aligned_alloc with one that
 * is not a power of two is EINVAL; memalign rounds a non-power-of-two up, as glibc does. realloc(p, 0)
 * frees p and returns NULL, as glibc does. free keeps errno. */
#define _GNU_SOURCE
#include <errno.h>
#include <malloc.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../heap/heap.h"
#include "../heap/heap_internal.h"
#include "../vmap/account.h"
#include "dropin.h"

#define API HM_DROPIN_API

/* (C23's free_sized and glibc's __libc_* names have no declaration in this libc's headers) */
#pragma GCC diagnostic ignored "-Wmissing-prototypes"

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* The unwinding window (dropin.h): closed once its time has passed. */
static __attribute__((noinline)) void unwind_check(void)
{
    if (now_ms() >= hm_dropin_unwind_until) hm_account_unwinding = false;
}

static inline unsigned level_now(void)
{
    if (__builtin_expect(hm_account_unwinding, 0)) unwind_check();
    int l = hm_dropin_thread_level;
    return l >= 0 ? (unsigned)l : hm_dropin_state.level;
}

/* A request that failed: errno ENOMEM, and a budget refusal opens this thread's window to unwind. */
static __attribute__((noinline)) void *refused(hm_status st)
{
    if ((st == HM_E_COMMITMENT_LIMIT || st == HM_E_HOST_TIMEOUT) && !hm_account_unwinding &&
        hm_dropin_state.opts.malloc_unwind) {
        hm_dropin_unwind_until = now_ms() + hm_dropin_state.opts.unwind_ms;
        hm_account_unwinding = true;
    }
    errno = ENOMEM;
    return NULL;
}

unsigned hm_dropin_level(void) { return level_now(); }
void hm_dropin_refused(void) { (void)refused(HM_E_COMMITMENT_LIMIT); }

void *hm_dropin_alloc_slow(size_t size)
{
    hm_heap *h = hm_dropin_heap();
    if (__builtin_expect(!h, 0)) return hm_dropin_boot_alloc(size, 16);
    void *p;
    hm_status st;
    if (__builtin_expect(hm_dropin_state.sites, 0)) p = hm_dropin_alloc_site(h, size, level_now(), &st);
    else st = hm_heap_alloc(h, size, (hm_level)level_now(), &p);
    return __builtin_expect(st == HM_OK, 1) ? p : refused(st);
}

/* align: a power of two. */
void *hm_dropin_alloc_aligned(size_t size, size_t align)
{
    if (align <= 16) return hm_dropin_alloc(size);
    hm_heap *h = hm_dropin_heap();
    if (!h) return hm_dropin_boot_alloc(size, align);
    if (align > HM_HEAP_MAX_ALIGN) {
        errno = ENOMEM;
        return NULL;
    }
    void *p;
    hm_status st = hm_heap_alloc_aligned(h, size, align, (hm_level)level_now(), &p);
    return st == HM_OK ? p : refused(st);
}

void hm_dropin_free_slow(void *p)
{
    if (!p || hm_dropin_is_boot(p)) return; /* (bootstrap blocks stay) */
    int e = errno; /* (a large block's release may change it; free must not) */
    /* (the inline path looked already: hm_dropin_free) */
    hm_status st = hm_heap_free_slow(hm_dropin_heap(), p);
    if (st != HM_OK) hm_dropin_invalid("free", p, st);
    errno = e;
}

void hm_dropin_invalid(const char *fn, void *p, hm_status st)
{
    /* one write(2), snprintf into the stack, no stdio stream, no allocation: the program's state may
     * be broken already */
    const char *what = st == HM_E_HOST_INVALIDOPERATION && hm_dropin_in_brk(p)
                           ? "invalid pointer: it lies in the brk heap, which hostmem never uses: memory from libc's "
                             "own malloc (a library loaded with RTLD_DEEPBIND binds to it, or one that brings a "
                             "static copy)"
                       : st == HM_E_HOST_INVALIDOPERATION
                           ? "invalid pointer: not a block malloc returned, or already freed (a double free, an "
                             "interior pointer, or memory from another allocator)"
                       : st == HM_E_HOST_NOT_OWNER ? "invalid pointer: a block of another hostmem heap, not of malloc's"
                                                   : hm_status_message(st);
    const char *d = hm_last_detail();
    bool ignore = hm_dropin_state.opts.malloc_ignore_invalid;
    char buf[512];
    int n = snprintf(buf, sizeof buf, "hostmem: %s(%p): %s%s%s%s; %s\n", fn, p, what, d && *d ? " [" : "",
                     d && *d ? d : "", d && *d ? "]" : "",
                     ignore ? "ignored (malloc.invalid_free=ignore)" : "aborting (malloc.invalid_free=abort)");
    if (n > 0) {
        ssize_t w = write(2, buf, (size_t)n < sizeof buf ? (size_t)n : sizeof buf - 1);
        (void)w;
    }
    if (!ignore && st != HM_E_HOST_CLRNOTAVAILABLE) abort();
}

/* ---- the C and POSIX functions ---------------------------------------------------------------- */

API void *malloc(size_t size) { return hm_dropin_alloc(size); }

API void free(void *p) { hm_dropin_free(p); }

API void *calloc(size_t n, size_t size)
{
    size_t bytes;
    if (__builtin_mul_overflow(n, size, &bytes)) {
        errno = ENOMEM;
        return NULL;
    }
    hm_heap *h = hm_dropin_heap();
    if (!h) return hm_dropin_boot_alloc(bytes, 16); /* (static memory: zero) */
    if (hm_dropin_state.sites) {
        void *q = hm_dropin_alloc(bytes);
        if (q) memset(q, 0, bytes);
        return q;
    }
    void *p;
    hm_status st = hm_heap_calloc(h, n, size, (hm_level)level_now(), &p);
    return st == HM_OK ? p : refused(st);
}

API void *realloc(void *p, size_t size)
{
    if (!p) return hm_dropin_alloc(size);
    if (size == 0) { /* glibc: frees, returns NULL */
        hm_dropin_free(p);
        return NULL;
    }
    hm_heap *h = hm_dropin_heap();
    if (!h || hm_dropin_is_boot(p)) { /* a bootstrap block moves out (it is never given back) */
        void *q = hm_dropin_alloc(size);
        if (q && hm_dropin_is_boot(p)) {
            size_t have = hm_dropin_boot_size(p);
            memcpy(q, p, have < size ? have : size);
        }
        return q;
    }
    void *q;
    if (hm_dropin_state.sites) { /* the new block's site is this caller's */
        size_t have = hm_heap_usable_size(h, p);
        if (!have) {
            hm_dropin_invalid("realloc", p, HM_E_HOST_INVALIDOPERATION);
            errno = EINVAL;
            return NULL;
        }
        if ((q = hm_dropin_alloc(size))) {
            memcpy(q, p, have < size ? have : size);
            hm_dropin_free(p);
        }
        return q;
    }
    hm_status st = hm_heap_realloc(h, p, size, (hm_level)level_now(), &q);
    if (__builtin_expect(st == HM_OK, 1)) return q;
    if (st == HM_E_HOST_INVALIDOPERATION || st == HM_E_HOST_NOT_OWNER) {
        hm_dropin_invalid("realloc", p, st);
        errno = EINVAL;
        return NULL;
    }
    return refused(st);
}

API void *reallocarray(void *p, size_t n, size_t size)
{
    size_t bytes;
    if (__builtin_mul_overflow(n, size, &bytes)) {
        errno = ENOMEM;
        return NULL;
    }
    return realloc(p, bytes);
}

static inline bool pow2(size_t a) { return a && !(a & (a - 1)); }

API int posix_memalign(void **out, size_t align, size_t size)
{
    if (!pow2(align) || align % sizeof(void *)) return EINVAL;
    int e = errno;
    void *p = hm_dropin_alloc_aligned(size, align);
    int r = p ? 0 : ENOMEM;
    errno = e;
    if (p) *out = p;
    return r;
}

API void *aligned_alloc(size_t align, size_t size)
{
    if (!pow2(align)) {
        errno = EINVAL;
        return NULL;
    }
    return hm_dropin_alloc_aligned(size, align);
}

API void *memalign(size_t align, size_t size)
{
    if (align > SIZE_MAX / 2 + 1) { /* glibc */
        errno = EINVAL;
        return NULL;
    }
    if (!pow2(align)) { /* glibc rounds up to a power of two */
        size_t a = 1;
        while (a < align) a <<= 1;
        align = a;
    }
    return hm_dropin_alloc_aligned(size, align);
}

API void *valloc(size_t size) { return hm_dropin_alloc_aligned(size, 4096); }

API void *pvalloc(size_t size)
{
    size_t rounded = (size + 4095) & ~(size_t)4095;
    if (rounded < size) {
        errno = ENOMEM;
        return NULL;
    }
    return hm_dropin_alloc_aligned(rounded ? rounded : 4096, 4096);
}

API size_t malloc_usable_size(void *p)
{
    if (!p) return 0;
    if (hm_dropin_is_boot(p)) return hm_dropin_boot_size(p);
    hm_heap *h = hm_dropin_heap();
    return h ? hm_heap_usable_size(h, p) : 0;
}

/* C23: the size and alignment are not trusted (DROPIN-NOTES 7): the heap knows the block. */
API void free_sized(void *p, size_t size)
{
    (void)size;
    hm_dropin_free(p);
}

API void free_aligned_sized(void *p, size_t align, size_t size)
{
    (void)align;
    (void)size;
    hm_dropin_free(p);
}

/* glibc's own names, which some programs and libraries call directly. */
API void *__libc_malloc(size_t size) { return hm_dropin_alloc(size); }
API void __libc_free(void *p) { hm_dropin_free(p); }
API void *__libc_calloc(size_t n, size_t size) { return calloc(n, size); }
API void *__libc_realloc(void *p, size_t size) { return realloc(p, size); }
API void *__libc_memalign(size_t align, size_t size) { return memalign(align, size); }
API void *__libc_valloc(size_t size) { return valloc(size); }
API void *__libc_pvalloc(size_t size) { return pvalloc(size); }
API int __posix_memalign(void **out, size_t align, size_t size) { return posix_memalign(out, align, size); }
API void cfree(void *p) { hm_dropin_free(p); }

/* ---- glibc's extras --------------------------------------------------------------------------- */

API int malloc_trim(size_t pad)
{
    (void)pad;
    hm_heap *h = hm_dropin_heap();
    if (!h) return 0;
    hm_heap_stats before, after;
    if (hm_heap_get_stats(h, &before)) return 0;
    (void)hm_heap_trim(h);
    if (hm_heap_get_stats(h, &after)) return 0;
    return after.committed_pages < before.committed_pages || after.cached_large_bytes < before.cached_large_bytes;
}

API void malloc_stats(void) { hm_dropin_report_to(2, false); }

API struct mallinfo2 mallinfo2(void)
{
    struct mallinfo2 mi;
    memset(&mi, 0, sizeof mi);
    hm_heap *h = hm_dropin_heap();
    hm_heap_stats s;
    if (!h || hm_heap_get_stats(h, &s)) return mi;
    size_t small_committed = (size_t)s.committed_pages * HM_HPAGE_SIZE;
    mi.arena = small_committed;                      /* bytes the small blocks' pages hold */
    mi.hblks = 0;                                    /* (large blocks are counted in bytes below) */
    mi.hblkhd = (size_t)(s.large_bytes + s.cached_large_bytes); /* large blocks' memory, cached ones too */
    mi.uordblks = (size_t)s.live_bytes;              /* bytes of live blocks */
    size_t total = small_committed + (size_t)(s.large_bytes + s.cached_large_bytes);
    mi.fordblks = total > s.live_bytes ? total - (size_t)s.live_bytes : 0; /* committed, not in use */
    mi.keepcost = (size_t)s.cached_large_bytes;      /* what malloc_trim could give back at least */
    hm_manager_stats ms;
    if (!hm_manager_get_stats(hm_dropin_state.m, &ms)) mi.usmblks = (size_t)ms.peak_charge;
    mi.ordblks = (size_t)s.live_blocks;
    return mi;
}

static int clamp_int(size_t v) { return v > (size_t)__INT_MAX__ ? __INT_MAX__ : (int)v; }

API struct mallinfo mallinfo(void)
{
    struct mallinfo2 m2 = mallinfo2();
    struct mallinfo mi = {clamp_int(m2.arena), clamp_int(m2.ordblks), clamp_int(m2.smblks), clamp_int(m2.hblks),
                          clamp_int(m2.hblkhd), clamp_int(m2.usmblks), clamp_int(m2.fsmblks),
                          clamp_int(m2.uordblks), clamp_int(m2.fordblks), clamp_int(m2.keepcost)};
    return mi;
}

/* glibc's manual: 1 on success, 0 on error. hostmem has no such knobs: each known parameter with a
 * value glibc accepts is taken (and changes nothing); M_MXFAST past its maximum and unknown
 * parameters are errors, as in glibc. */
API int mallopt(int param, int value)
{
    switch (param) {
    case M_MXFAST: return value >= 0 && (size_t)value <= 80 * sizeof(size_t) / 4;
    case M_TRIM_THRESHOLD:
    case M_TOP_PAD:
    case M_MMAP_THRESHOLD:
    case M_MMAP_MAX:
    case M_CHECK_ACTION:
    case M_PERTURB:
    case M_ARENA_TEST:
    case M_ARENA_MAX: return 1;
    default: return 0;
    }
}
