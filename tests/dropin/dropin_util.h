/* dropin_util.h — helpers shared by the drop-in malloc's tests (tests/dropin): whether this process
 * really runs on libhostmem-malloc.so, a fixed-seed generator, pointer laundering (so that the
 * compiler neither warns about nor removes a deliberate misuse), checks that blocks are distinct and
 * do not overlap, and a check macro for the helper programs that are not cmocka programs.
 * Header-only; every function static. */
#ifndef HM_DROPIN_UTIL_H
#define HM_DROPIN_UTIL_H

#include <dlfcn.h>
#include <errno.h>
#include <malloc.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <hostmem/malloc.h>

#define KiB ((size_t)1 << 10)
#define MiB ((size_t)1 << 20)
#define GiB ((size_t)1 << 30)

/* For the helper programs: a failed check says where on stderr and ends the process with status 1. */
#define DROPIN_CHECK(c)                                                                            \
    do {                                                                                           \
        if (!(c)) {                                                                                \
            fprintf(stderr, "CHECK FAILED %s:%d: %s (errno %d)\n", __FILE__, __LINE__, #c, errno); \
            fflush(stderr);                                                                        \
            _exit(1);                                                                              \
        }                                                                                          \
    } while (0)

/* 1 when malloc, free and the drop-in's own entry point all come from libhostmem-malloc.so. */
static inline int dropin_active(void)
{
    if (!hm_malloc_available()) return 0;
    if (!dlsym(RTLD_DEFAULT, "hm_malloc_level_set")) return 0;
    const char *names[] = {"malloc", "free", "calloc", "realloc", "posix_memalign", "malloc_usable_size"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        void *f = dlsym(RTLD_DEFAULT, names[i]);
        Dl_info di;
        if (!f || !dladdr(f, &di) || !di.dli_fname || !strstr(di.dli_fname, "libhostmem-malloc")) return 0;
    }
    return 1;
}

/* xorshift64*: deterministic, one state per thread. */
static inline uint64_t rng_next(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *s = x;
    return x * 0x2545F4914F6CDD1DULL;
}

/* The pointer, hidden from the optimiser (no -Wfree-nonheap-object, no -Wuse-after-free, no
 * elided allocation). */
static inline void *launder(void *p)
{
    __asm__ volatile("" : "+r"(p) : : "memory");
    return p;
}

/* The size, unknown to the compiler (no -Walloc-size-larger-than for a deliberate huge request). */
static inline size_t opaque_size(size_t n)
{
    __asm__ volatile("" : "+r"(n));
    return n;
}

/* The byte a block with this seed holds at offset i. */
static inline unsigned char pattern_byte(uint64_t seed, size_t i)
{
    return (unsigned char)((seed * 131u) ^ (i * 7u) ^ (i >> 8));
}

static inline void pattern_fill(void *p, size_t n, uint64_t seed)
{
    unsigned char *b = p;
    for (size_t i = 0; i < n; i++) b[i] = pattern_byte(seed, i);
}

/* Whether p[0..n) still holds the pattern; checks every byte up to 4 KiB, then a byte in 61. */
static inline bool pattern_check(const void *p, size_t n, uint64_t seed)
{
    const unsigned char *b = p;
    size_t step = 1;
    for (size_t i = 0; i < n; i += step) {
        if (b[i] != pattern_byte(seed, i)) return false;
        if (i >= 4096) step = 61;
    }
    return n == 0 || b[n - 1] == pattern_byte(seed, n - 1);
}

typedef struct span {
    uintptr_t at;
    size_t len;
} span;

static inline int span_cmp(const void *a, const void *b)
{
    uintptr_t x = ((const span *)a)->at, y = ((const span *)b)->at;
    return x < y ? -1 : x > y;
}

/* Whether the n blocks v[i] of usable sizes (malloc_usable_size) are all distinct and no two
 * overlap. */
static inline bool blocks_disjoint(void *const *v, size_t n)
{
    span *s = malloc(n * sizeof *s);
    if (!s) return false;
    for (size_t i = 0; i < n; i++) {
        s[i].at = (uintptr_t)v[i];
        s[i].len = malloc_usable_size(v[i]);
    }
    qsort(s, n, sizeof *s, span_cmp);
    bool ok = true;
    for (size_t i = 0; i + 1 < n && ok; i++)
        if (s[i].at == 0 || s[i].at + (s[i].len ? s[i].len : 1) > s[i + 1].at) ok = false;
    free(s);
    return ok;
}

#endif
