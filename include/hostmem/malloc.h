/* hostmem/malloc.h — for programs that run on the drop-in malloc (libhostmem-malloc.so, preloaded or
 * linked): mark this thread's malloc, calloc, realloc and operator new requests as more or less
 * critical than the option malloc.level says (SPEC 3.2: a task-level request is refused first).
 *
 *     int old = hm_malloc_set_level(HM_LEVEL_TASK);   // this request's work: refused first
 *     handle_request(...);
 *     hm_malloc_set_level(old);                        // back (-1: malloc.level again)
 *
 * The functions are weak references: a program that includes this header and does not run on the
 * drop-in links and runs, and the calls answer -1 (no drop-in). Link nothing extra for them. */
#ifndef HOSTMEM_MALLOC_H
#define HOSTMEM_MALLOC_H

#include <hostmem/hostmem.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The drop-in's own entry points (libhostmem-malloc.so): level -1 restores malloc.level. Set returns
 * the thread's previous setting (-1: none), or -2 for a level that is not -1, 0, 1 or 2; get returns
 * the level this thread's requests use now. */
extern int hm_malloc_level_set(int level) __attribute__((weak));
extern int hm_malloc_level_get(void) __attribute__((weak));

/* Whether this process runs on the drop-in malloc. */
static inline int hm_malloc_available(void) { return hm_malloc_level_set != 0; }

/* Sets this thread's level (HM_LEVEL_TASK, HM_LEVEL_APPDOMAIN, HM_LEVEL_PROCESS, or -1 for
 * malloc.level); returns the previous setting, or -1 without the drop-in. */
static inline int hm_malloc_set_level(int level) { return hm_malloc_level_set ? hm_malloc_level_set(level) : -1; }

/* The level this thread's requests use now; -1 without the drop-in. */
static inline int hm_malloc_get_level(void) { return hm_malloc_level_get ? hm_malloc_level_get() : -1; }

#ifdef __cplusplus
}
#endif

#endif
