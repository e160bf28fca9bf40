/* track.h — heaps describe their blocks to the memory checkers (README, "Debugging tools").
 *
 * Valgrind (memcheck): live blocks are described as malloc-like blocks (VALGRIND_MALLOCLIKE_BLOCK and
 * friends), so leaks and uses after free through the hm_heap_* API are reported. (Blocks still live
 * when their heap is destroyed are not told one by one: memcheck reports them as leaked.) The client
 * requests are made only when the heap was made under memcheck (h->tracked).
 * AddressSanitizer (the library built with -fsanitize=address): a freed small block is poisoned, so
 * an access to it is reported; a block handed out is unpoisoned up to its usable size (the program may
 * use all of it: hm_heap_usable_size).
 * Either way the first HM_TRACK_KEEP bytes of a freed block stay accessible: the heap keeps the
 * link and tag of a block freed by another thread (xfree) there and reads them to tell a second Free. */
#ifndef HM_HEAP_TRACK_H
#define HM_HEAP_TRACK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#if defined(__SANITIZE_ADDRESS__)
#define HM_TRACK_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define HM_TRACK_ASAN 1
#endif
#endif
#ifdef HM_TRACK_ASAN
#include <sanitizer/asan_interface.h>
#endif
#if defined(__has_include)
#if __has_include(<valgrind/memcheck.h>)
#include <valgrind/memcheck.h>
#define HM_TRACK_VALGRIND 1
#endif
#endif

#define HM_TRACK_KEEP 16
/* ASan poisons freed small blocks only: a large block's pages go back to the kernel or wait in a
 * cache that hands them out again at another size. A small block is poisoned before Free gives it
 * back (once back, another thread may hand it out again), and its page is cleared of poison when it
 * empties (page_retire), before it serves another size class. */
#define HM_TRACK_POISON_MAX ((size_t)32 << 10)

/* Tests: heaps made while this is set are described to no checker, so that an ASan build runs the
 * inline fast paths (which tracked heaps leave) as a release build does (pools.c). */
extern bool hm_heap_untracked;

/* Whether heaps made now are to be tracked. */
static inline bool hm_track_wanted(void)
{
    if (hm_heap_untracked) return false;
#ifdef HM_TRACK_ASAN
    return true;
#elif defined(HM_TRACK_VALGRIND)
    /* memcheck only (its preload is in LD_PRELOAD): cachegrind and callgrind count what runs untracked */
    const char *pre = RUNNING_ON_VALGRIND ? getenv("LD_PRELOAD") : NULL;
    return pre && strstr(pre, "vgpreload_memcheck");
#else
    return false;
#endif
}


/* Block p (size bytes asked, usable bytes in all) is the program's now. */
static inline void hm_track_lend(const void *h, void *p, size_t size, size_t usable)
{
#ifdef HM_TRACK_ASAN
    ASAN_UNPOISON_MEMORY_REGION(p, usable > size ? usable : size);
#endif
#ifdef HM_TRACK_VALGRIND
    VALGRIND_MALLOCLIKE_BLOCK(p, size, 0, 0);
#endif
    (void)h, (void)p, (void)size, (void)usable;
}

/* Block p (usable bytes; 0: not to be poisoned) came back from the program. */
static inline void hm_track_return(const void *h, void *p, size_t usable)
{
#ifdef HM_TRACK_ASAN
    if (usable > HM_TRACK_KEEP && usable <= HM_TRACK_POISON_MAX) ASAN_POISON_MEMORY_REGION((char *)p + HM_TRACK_KEEP, usable - HM_TRACK_KEEP);
#endif
#ifdef HM_TRACK_VALGRIND
    VALGRIND_FREELIKE_BLOCK(p, 0);
    VALGRIND_MAKE_MEM_DEFINED(p, HM_TRACK_KEEP);
#endif
    (void)h, (void)p, (void)usable;
}

/* Block p stays where it is with size bytes asked (realloc in place). */
static inline void hm_track_resize(const void *h, void *p, size_t size, size_t usable)
{
#ifdef HM_TRACK_ASAN
    ASAN_UNPOISON_MEMORY_REGION(p, usable > size ? usable : size);
#endif
#ifdef HM_TRACK_VALGRIND
    VALGRIND_FREELIKE_BLOCK(p, 0);              /* (its old size is not known here: the block is */
    VALGRIND_MALLOCLIKE_BLOCK(p, size, 0, 1);   /* told again, its contents taken as defined) */
#endif
    (void)h, (void)p, (void)size, (void)usable;
}

/* Memory that leaves the heap's blocks (a page emptied, a block or segment released): no poison left
 * on it for the heap's own writes when the addresses serve again. */
static inline void hm_track_clear(const void *p, size_t size)
{
#ifdef HM_TRACK_ASAN
    ASAN_UNPOISON_MEMORY_REGION(p, size);
#endif
    (void)p, (void)size;
}

#endif
