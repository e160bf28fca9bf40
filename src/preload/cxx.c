/* cxx.c — C++'s operator new and delete for the drop-in malloc, in C, with no C++ runtime to link.
 *
 * Every form: plain, array, nothrow, sized delete, aligned (C++17 align_val_t), aligned sized and
 * aligned nothrow, by their Itanium ABI names. A throwing new that is refused calls the program's
 * new-handler while one is set and tries again (as the standard says), and otherwise throws
 * std::bad_alloc; the nothrow forms return NULL and do not call the handler (it may throw, and an
 * exception must not leave a nothrow new). Throwing takes libstdc++'s own functions and type
 * information, found as weak references when the program is C++ (it is, if it calls operator new)
 * or, for a C++ library the program loaded later, by dlsym at the moment of the throw. This file is
 * compiled with -fexceptions so that the exception passes through its frames.
 *
 * Sizes given to delete are not trusted (DROPIN-NOTES 7): the heap knows each block. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dropin.h"

#define API HM_DROPIN_API

/* (the ABI names below have no header to declare them) */
#pragma GCC diagnostic ignored "-Wmissing-prototypes"

typedef void (*new_handler)(void);
extern new_handler _ZSt15get_new_handlerv(void) __attribute__((weak));
extern void *__cxa_allocate_exception(size_t) __attribute__((weak));
extern void __cxa_throw(void *, void *, void (*)(void *)) __attribute__((weak));
extern char _ZTISt9bad_alloc[] __attribute__((weak));   /* typeinfo for std::bad_alloc */
extern void *_ZTVSt9bad_alloc[] __attribute__((weak));  /* its vtable */
extern void _ZNSt9bad_allocD1Ev(void *) __attribute__((weak)); /* its destructor */

static void *sym(void *weak, const char *name) { return weak ? weak : dlsym(RTLD_DEFAULT, name); }

static __attribute__((noinline, noreturn)) void throw_bad_alloc(void)
{
    void *(*alloc_exc)(size_t) = (void *(*)(size_t))sym((void *)__cxa_allocate_exception, "__cxa_allocate_exception");
    void (*thr)(void *, void *, void (*)(void *)) =
        (void (*)(void *, void *, void (*)(void *)))sym((void *)__cxa_throw, "__cxa_throw");
    void *ti = sym(_ZTISt9bad_alloc, "_ZTISt9bad_alloc");
    void **vt = sym(_ZTVSt9bad_alloc, "_ZTVSt9bad_alloc");
    void (*dtor)(void *) = (void (*)(void *))sym((void *)_ZNSt9bad_allocD1Ev, "_ZNSt9bad_allocD1Ev");
    if (alloc_exc && thr && ti && vt && dtor) {
        void *e = alloc_exc(sizeof(void *)); /* a std::bad_alloc is its vtable pointer */
        *(void **)e = vt + 2;                 /* (the address point: past offset-to-top and typeinfo) */
        thr(e, ti, dtor);
    }
    static const char msg[] = "hostmem: operator new: out of memory, and no C++ runtime to throw std::bad_alloc\n";
    ssize_t w = write(2, msg, sizeof msg - 1);
    (void)w;
    abort();
}

static new_handler handler(void)
{
    new_handler (*get)(void) = (new_handler(*)(void))sym((void *)_ZSt15get_new_handlerv, "_ZSt15get_new_handlerv");
    return get ? get() : NULL;
}

static __attribute__((noinline)) void *new_retry(size_t size, size_t align)
{
    for (;;) {
        new_handler nh = handler();
        if (!nh) throw_bad_alloc();
        nh();
        void *p = align ? hm_dropin_alloc_aligned(size, align) : hm_dropin_alloc(size);
        if (p) return p;
    }
}

static inline void *new_throw(size_t size)
{
    void *p = hm_dropin_alloc(size);
    return __builtin_expect(p != NULL, 1) ? p : new_retry(size, 0);
}

static inline void *new_aligned(size_t size, size_t align)
{
    if (!align || (align & (align - 1))) align = 16; /* (undefined behaviour by the caller) */
    void *p = hm_dropin_alloc_aligned(size, align);
    return p ? p : new_retry(size, align);
}

static inline void *new_aligned_nothrow(size_t size, size_t align)
{
    if (!align || (align & (align - 1))) return NULL;
    return hm_dropin_alloc_aligned(size, align);
}

typedef struct nothrow_t nothrow_t; /* std::nothrow_t, only ever passed by reference */

API void *_Znwm(size_t size) { return new_throw(size); }
API void *_Znam(size_t size) { return new_throw(size); }
API void *_ZnwmRKSt9nothrow_t(size_t size, const nothrow_t *nt) { return (void)nt, hm_dropin_alloc(size); }
API void *_ZnamRKSt9nothrow_t(size_t size, const nothrow_t *nt) { return (void)nt, hm_dropin_alloc(size); }
API void *_ZnwmSt11align_val_t(size_t size, size_t align) { return new_aligned(size, align); }
API void *_ZnamSt11align_val_t(size_t size, size_t align) { return new_aligned(size, align); }
API void *_ZnwmSt11align_val_tRKSt9nothrow_t(size_t size, size_t align, const nothrow_t *nt)
{
    return (void)nt, new_aligned_nothrow(size, align);
}
API void *_ZnamSt11align_val_tRKSt9nothrow_t(size_t size, size_t align, const nothrow_t *nt)
{
    return (void)nt, new_aligned_nothrow(size, align);
}

API void _ZdlPv(void *p) { hm_dropin_free(p); }
API void _ZdaPv(void *p) { hm_dropin_free(p); }
API void _ZdlPvm(void *p, size_t size) { (void)size, hm_dropin_free(p); }
API void _ZdaPvm(void *p, size_t size) { (void)size, hm_dropin_free(p); }
API void _ZdlPvRKSt9nothrow_t(void *p, const nothrow_t *nt) { (void)nt, hm_dropin_free(p); }
API void _ZdaPvRKSt9nothrow_t(void *p, const nothrow_t *nt) { (void)nt, hm_dropin_free(p); }
API void _ZdlPvSt11align_val_t(void *p, size_t align) { (void)align, hm_dropin_free(p); }
API void _ZdaPvSt11align_val_t(void *p, size_t align) { (void)align, hm_dropin_free(p); }
API void _ZdlPvmSt11align_val_t(void *p, size_t size, size_t align) { (void)size, (void)align, hm_dropin_free(p); }
API void _ZdaPvmSt11align_val_t(void *p, size_t size, size_t align) { (void)size, (void)align, hm_dropin_free(p); }
API void _ZdlPvSt11align_val_tRKSt9nothrow_t(void *p, size_t align, const nothrow_t *nt)
{
    (void)align, (void)nt, hm_dropin_free(p);
}
API void _ZdaPvSt11align_val_tRKSt9nothrow_t(void *p, size_t align, const nothrow_t *nt)
{
    (void)align, (void)nt, hm_dropin_free(p);
}
