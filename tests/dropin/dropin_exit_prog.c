/* dropin_exit_prog.c — a program dropin_driver runs preloaded on the drop-in malloc: it allocates
 * before main (a constructor of priority 101: strdup and malloc), in main, in an atexit handler that
 * runs after exit() (1 MiB allocated, checked, freed), and in destructors that run after that (one
 * frees the blocks made before main). Each stage writes one line to stdout when it did its part, so
 * the driver sees that all ran and in which order:
 *     ctor ok / main ok / atexit ok / dtor1 ok / dtor ok
 * Any failed check ends the process with a status of its own (20..). With the argument "busy", a
 * detached thread keeps allocating while the process exits. */
#define _GNU_SOURCE
#include <malloc.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dropin_util.h"

#define PRE_MAIN_TEXT "allocated before main by a constructor of priority 101"

static char *pre_main;
static unsigned char *pre_main_big;
static int ctor_ok;

static void out(const char *s)
{
    ssize_t w = write(1, s, strlen(s));
    (void)w;
}

static void fail(const char *what, int status)
{
    out("FAILED: ");
    out(what);
    out("\n");
    _exit(status);
}

static __attribute__((constructor(101))) void before_main(void)
{
    pre_main = strdup(PRE_MAIN_TEXT);
    pre_main_big = malloc(200 * KiB);
    if (!pre_main || !pre_main_big) fail("constructor: allocation", 20);
    pattern_fill(pre_main_big, 200 * KiB, 101);
    ctor_ok = 1;
    out("ctor ok\n");
}

static void at_exit(void)
{
    unsigned char *p = malloc(MiB);
    if (!p) fail("atexit: malloc(1 MiB)", 21);
    pattern_fill(p, MiB, 7);
    if (!pattern_check(p, MiB, 7)) fail("atexit: contents", 22);
    unsigned char *z = calloc(1, 100 * KiB);
    if (!z) fail("atexit: calloc", 23);
    for (size_t i = 0; i < 100 * KiB; i++)
        if (z[i]) fail("atexit: calloc not zero", 24);
    p = realloc(p, 2 * MiB);
    if (!p || !pattern_check(p, MiB, 7)) fail("atexit: realloc", 25);
    free(z);
    free(p);
    out("atexit ok\n");
}

/* (default priority: runs before the priority-101 destructor below) */
static __attribute__((destructor)) void after_exit_1(void)
{
    void *v[100];
    for (int i = 0; i < 100; i++)
        if (!(v[i] = malloc((size_t)i * 300 + 1))) fail("destructor: malloc", 26);
    if (!blocks_disjoint(v, 100)) fail("destructor: blocks overlap", 27);
    for (int i = 0; i < 100; i++) free(v[i]);
    out("dtor1 ok\n");
}

static __attribute__((destructor(101))) void after_exit_2(void)
{
    if (!pre_main || strcmp(pre_main, PRE_MAIN_TEXT)) fail("destructor: the pre-main block changed", 28);
    if (!pattern_check(pre_main_big, 200 * KiB, 101)) fail("destructor: the pre-main large block changed", 29);
    free(pre_main);
    free(pre_main_big);
    void *p = malloc(MiB);
    if (!p) fail("destructor: malloc(1 MiB)", 30);
    memset(p, 1, MiB);
    free(p);
    out("dtor ok\n");
}

static void *busy(void *arg)
{
    uint64_t rng = (uint64_t)(uintptr_t)arg;
    void *slot[16] = {0};
    for (;;) {
        unsigned i = (unsigned)(rng_next(&rng) % 16);
        free(slot[i]);
        size_t n = (size_t)(rng_next(&rng) % 100000) + 1;
        slot[i] = malloc(n);
        if (slot[i]) memset(slot[i], 0x2f, n < 64 ? n : 64);
    }
    return NULL;
}

int main(int argc, char **argv)
{
    if (!dropin_active()) fail("not running on libhostmem-malloc.so", 10);
    if (!ctor_ok) fail("the constructor did not run", 11);
    if (strcmp(pre_main, PRE_MAIN_TEXT)) fail("main: the pre-main block changed", 12);
    if (malloc_usable_size(pre_main) < sizeof PRE_MAIN_TEXT) fail("main: the pre-main block is not malloc's", 13);
    if (!pattern_check(pre_main_big, 200 * KiB, 101)) fail("main: the pre-main large block changed", 14);
    if (atexit(at_exit)) fail("atexit", 15);
    if (argc > 1 && !strcmp(argv[1], "busy")) {
        for (int i = 0; i < 2; i++) {
            pthread_t t;
            pthread_attr_t a;
            pthread_attr_init(&a);
            pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
            if (pthread_create(&t, &a, busy, (void *)(uintptr_t)(i + 1))) fail("pthread_create", 16);
            pthread_attr_destroy(&a);
        }
        usleep(2000);
    }
    char *s = malloc(100);
    if (!s) fail("main: malloc", 17);
    strcpy(s, "main ok\n");
    out(s);
    free(s);
    exit(0);
}
