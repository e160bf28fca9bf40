/* dropin_dlopen.c — a library loaded and unloaded 50 times on the drop-in malloc (run preloaded):
 * its constructor allocates, its functions allocate and free, its destructor frees, and blocks it
 * allocated outlive it (freed by the program after dlclose). The module is HM_DROPIN_MODULE
 * (dropin_module.c). */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <malloc.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "dropin_util.h"

#define ROUNDS 50

static int group_setup(void **state)
{
    (void)state;
    return dropin_active() ? 0 : -1;
}

static void test_dlopen_dlclose(void **state)
{
    (void)state;
    void *left[ROUNDS];
    struct mallinfo2 before = mallinfo2();
    for (int r = 0; r < ROUNDS; r++) {
        void *h = dlopen(HM_DROPIN_MODULE, RTLD_NOW | RTLD_LOCAL);
        if (!h) fprintf(stderr, "dlopen: %s\n", dlerror());
        assert_non_null(h);
        int (*ran)(void) = (int (*)(void))dlsym(h, "dropin_module_ctor_ran");
        const char *(*block)(void) = (const char *(*)(void))dlsym(h, "dropin_module_ctor_block");
        int (*work)(int) = (int (*)(int))dlsym(h, "dropin_module_work");
        void *(*alloc)(size_t) = (void *(*)(size_t))dlsym(h, "dropin_module_alloc");
        assert_non_null(ran);
        assert_non_null(block);
        assert_non_null(work);
        assert_non_null(alloc);
        assert_int_equal(ran(), 1);
        assert_string_equal(block(), "allocated by dropin_module's constructor");
        assert_true(malloc_usable_size((void *)block()) >= 1000); /* the drop-in's block */
        assert_int_equal(work(200), 0);
        left[r] = alloc((size_t)r * 1000 + 10);
        assert_non_null(left[r]);
        assert_int_equal(dlclose(h), 0);
        /* the module is gone (RTLD_NOLOAD finds nothing) and its block is the program's */
        assert_null(dlopen(HM_DROPIN_MODULE, RTLD_NOW | RTLD_NOLOAD));
        assert_int_equal(((unsigned char *)left[r])[r * 1000 + 9], 0x3d);
    }
    for (int r = 0; r < ROUNDS; r++) free(left[r]);
    /* everything the constructors allocated went back with the destructors (the loader's own
     * allocations for each dlopen too) */
    struct mallinfo2 after = mallinfo2();
    assert_true(after.uordblks <= before.uordblks + 64 * KiB);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dlopen_dlclose),
    };
    return cmocka_run_group_tests_name("dropin_dlopen", tests, group_setup, NULL);
}
