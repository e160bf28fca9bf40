/* dropin_child.c — a program dropin_driver runs preloaded on the drop-in malloc, with options of the
 * test's choosing (HOSTMEM_OPTIONS), and judges from outside: its exit status or signal, stdout and
 * stderr, the report it leaves. It checks what it can itself (DROPIN_CHECK: "CHECK FAILED ..." on
 * stderr and status 1).
 *
 *   dropin_child invalid KIND   an invalid free (KIND: double, interior, stack, static, realloc_interior,
 *                               realloc_freed, realloc_static); prints "ptr=0x..." first. If the process
 *                               survives it (malloc.invalid_free=ignore), checks that the heap is intact
 *                               and prints "heap intact".
 *   dropin_child cap            limit=32M: 1 MiB blocks until ENOMEM, all freed, the same again; huge
 *                               requests refused; prints "cap ok".
 *   dropin_child cap_small      limit=32M: memory of freed small blocks serves large blocks again;
 *                               prints "cap_small ok".
 *   dropin_child level          limit=32M,reserve.process=8M: task and appdomain threads refused where
 *                               the process level is served; prints "level ok".
 *   dropin_child malloc_level   limit=32M,reserve.process=8M,malloc.level=task: the option's level,
 *                               overridden per thread; prints "malloc_level ok".
 *   dropin_child unwind         limit=32M,malloc.unwind_time=50ms: the window to unwind after a refusal,
 *                               its end, and that it is the refused thread's alone; prints "unwind ok". */
#define _GNU_SOURCE
#include <errno.h>
#include <malloc.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "dropin_util.h"

static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void say(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    fflush(stdout);
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) && errno == EINTR) {
    }
}

/* ---- invalid frees ----------------------------------------------------------------------------------- */

#define INTACT_N 10000

/* 10000 blocks live at once (half of them 64 bytes, the class of the block the invalid free was
 * about): none handed out twice, none overlapping another, each keeping what was written to it. */
static void heap_intact(void **v)
{
    uint64_t rng = 20240601;
    size_t sizes[INTACT_N];
    for (int i = 0; i < INTACT_N; i++) {
        sizes[i] = i % 2 ? 64 : (size_t)(rng_next(&rng) % 3000) + 1;
        v[i] = malloc(sizes[i]);
        DROPIN_CHECK(v[i] != NULL);
        pattern_fill(v[i], sizes[i], (uint64_t)i);
    }
    DROPIN_CHECK(blocks_disjoint(v, INTACT_N));
    for (int i = 0; i < INTACT_N; i++) DROPIN_CHECK(pattern_check(v[i], sizes[i], (uint64_t)i));
    for (int i = 0; i < INTACT_N; i++) free(v[i]);
}

static int run_invalid(const char *kind)
{
    static char never_returned[256]; /* memory malloc never returned */
    char on_stack[64];
    memset(on_stack, 0, sizeof on_stack);
    void **v = malloc(INTACT_N * sizeof *v); /* (before anything goes wrong) */
    DROPIN_CHECK(v != NULL);
    unsigned char *p = malloc(64), *other = malloc(64);
    DROPIN_CHECK(p != NULL && other != NULL);
    pattern_fill(p, 64, 1);
    pattern_fill(other, 64, 2);
    bool p_live = true;
    void *bad;
    if (!strcmp(kind, "double")) {
        bad = p;
        free(launder(p));
        p_live = false;
        say("ptr=%p\n", bad);
        free(launder(bad));
    } else if (!strcmp(kind, "interior")) {
        bad = p + 16;
        say("ptr=%p\n", bad);
        free(launder(bad));
    } else if (!strcmp(kind, "stack")) {
        bad = on_stack;
        say("ptr=%p\n", bad);
        free(launder(bad));
    } else if (!strcmp(kind, "static")) {
        bad = never_returned + 32;
        say("ptr=%p\n", bad);
        free(launder(bad));
    } else if (!strcmp(kind, "realloc_interior") || !strcmp(kind, "realloc_freed") ||
               !strcmp(kind, "realloc_static")) {
        if (!strcmp(kind, "realloc_freed")) {
            bad = p;
            free(launder(p));
            p_live = false;
        } else {
            bad = kind[8] == 'i' ? (void *)(p + 16) : (void *)never_returned;
        }
        say("ptr=%p\n", bad);
        errno = 0;
        void *r = realloc(launder(bad), 200);
        /* survived (malloc.invalid_free=ignore): refused, errno EINVAL, nothing touched */
        DROPIN_CHECK(r == NULL);
        DROPIN_CHECK(errno == EINVAL);
    } else {
        fprintf(stderr, "unknown kind %s\n", kind);
        return 64;
    }
    say("survived\n");
    /* the blocks around are as they were, and the live one is still a block free takes */
    DROPIN_CHECK(pattern_check(other, 64, 2));
    if (p_live) {
        DROPIN_CHECK(pattern_check(p, 64, 1));
        DROPIN_CHECK(malloc_usable_size(p) >= 64);
        free(p);
    }
    free(other);
    heap_intact(v);
    free(v);
    say("heap intact\n");
    return 0;
}

/* ---- the budget ------------------------------------------------------------------------------------- */

#define MAXBLK 256

/* size-byte blocks, each touched, until the budget refuses one (ENOMEM); returns how many. */
static int fill(void **v, int max, size_t size)
{
    int n = 0;
    for (; n < max; n++) {
        errno = 0;
        v[n] = malloc(size);
        if (!v[n]) break;
        memset(v[n], 0x55, size);
    }
    DROPIN_CHECK(n < max);
    DROPIN_CHECK(errno == ENOMEM);
    return n;
}

static int run_cap(void)
{
    void *v[MAXBLK];
    int n1 = fill(v, MAXBLK, MiB);
    say("first round: %d blocks of 1 MiB\n", n1);
    DROPIN_CHECK(n1 >= 16);         /* most of the budget is there */
    DROPIN_CHECK(n1 <= 32 - 1);     /* and no more than it */
    for (int i = 0; i < n1; i++) free(v[i]);
    /* the same amount again (freed blocks kept in caches are reused, or given back when refused) */
    int n2 = fill(v, MAXBLK, MiB);
    say("second round: %d blocks of 1 MiB\n", n2);
    DROPIN_CHECK(n2 >= n1);
    DROPIN_CHECK(n2 <= 32);
    for (int i = 0; i < n2; i++) free(v[i]);
    /* huge requests: refused at once */
    errno = 0;
    DROPIN_CHECK(malloc(SIZE_MAX / 2) == NULL && errno == ENOMEM);
    errno = 0;
    DROPIN_CHECK(calloc(64, MiB) == NULL && errno == ENOMEM);
    void *p = malloc(1000);
    DROPIN_CHECK(p != NULL);
    pattern_fill(p, 1000, 9);
    errno = 0;
    DROPIN_CHECK(realloc(p, 64 * MiB) == NULL && errno == ENOMEM);
    DROPIN_CHECK(pattern_check(p, 1000, 9));
    free(p);
    void *q = (void *)1;
    DROPIN_CHECK(posix_memalign(&q, 4096, 64 * MiB) == ENOMEM);
    /* and after all that, the budget serves again */
    int n3 = fill(v, MAXBLK, MiB);
    say("third round: %d blocks of 1 MiB\n", n3);
    DROPIN_CHECK(n3 >= n1);
    for (int i = 0; i < n3; i++) free(v[i]);
    say("cap ok\n");
    return 0;
}

/* Small blocks count too, and once freed their memory serves large blocks again: 1 MiB blocks until
 * refused, freed; 1000-byte blocks until refused, freed (nothing live); 1 MiB blocks again, about as
 * many as the first time (the segments' header pages and a page or two may stay). */
static int run_cap_small(void)
{
    void *v[MAXBLK];
    int n1 = fill(v, MAXBLK, MiB);
    say("1 MiB blocks: %d\n", n1);
    for (int i = 0; i < n1; i++) free(v[i]);
    enum { SMALL = 48 * 1024 };
    void **s = malloc(SMALL * sizeof *s);
    DROPIN_CHECK(s != NULL);
    int ns = 0;
    for (; ns < SMALL; ns++) {
        errno = 0;
        if (!(s[ns] = malloc(1000))) break;
        memset(s[ns], 1, 1000);
    }
    say("then small blocks: %d of 1000 bytes\n", ns);
    DROPIN_CHECK(ns < SMALL);
    DROPIN_CHECK(errno == ENOMEM);
    DROPIN_CHECK((size_t)ns * 1000 <= 32 * MiB);
    DROPIN_CHECK((size_t)ns * 1000 >= 16 * MiB);
    for (int i = 0; i < ns; i++) free(s[i]);
    free(s);
    struct mallinfo2 mi = mallinfo2();
    say("all freed: live %zu bytes in %zu blocks; small pages committed %zu bytes\n", mi.uordblks, mi.ordblks, mi.arena);
    DROPIN_CHECK(mi.uordblks < 64 * KiB);
    int n2 = fill(v, MAXBLK, MiB);
    say("then 1 MiB blocks again: %d\n", n2);
    DROPIN_CHECK(n2 >= n1 - 2);
    for (int i = 0; i < n2; i++) free(v[i]);
    say("cap_small ok\n");
    return 0;
}

typedef struct level_try {
    int level;      /* to set on the thread (-1: malloc.level) */
    int got_level;  /* what hm_malloc_get_level said then */
    int served;     /* a 1 MiB block was served */
    int err;        /* errno when not */
} level_try;

static void *try_level(void *arg)
{
    level_try *t = arg;
    int old = hm_malloc_set_level(t->level);
    DROPIN_CHECK(old == -1); /* a new thread has no level of its own */
    t->got_level = hm_malloc_get_level();
    errno = 0;
    void *p = malloc(MiB);
    t->served = p != NULL;
    t->err = errno;
    if (p) memset(p, 1, MiB);
    free(p);
    DROPIN_CHECK(hm_malloc_set_level(-1) == t->level);
    return NULL;
}

static level_try level_in_thread(int level)
{
    level_try t = {level, -9, 0, 0};
    pthread_t th;
    DROPIN_CHECK(pthread_create(&th, NULL, try_level, &t) == 0);
    DROPIN_CHECK(pthread_join(th, NULL) == 0);
    DROPIN_CHECK(t.got_level == (level >= 0 ? level : HM_LEVEL_PROCESS));
    return t;
}

static int run_level(void)
{
    DROPIN_CHECK(hm_malloc_get_level() == HM_LEVEL_PROCESS); /* malloc.level's default */
    DROPIN_CHECK(hm_malloc_set_level(3) == -2);
    DROPIN_CHECK(hm_malloc_set_level(-2) == -2);
    DROPIN_CHECK(hm_malloc_get_level() == HM_LEVEL_PROCESS);
    /* little charged: every level is served */
    for (int l = HM_LEVEL_TASK; l <= HM_LEVEL_PROCESS; l++) DROPIN_CHECK(level_in_thread(l).served);
    /* charge 26 MiB at the process level: past what task and appdomain requests may reach
     * (32M - 8M reserved for the process level), below the limit */
    void *v[MAXBLK];
    for (int i = 0; i < 26; i++) {
        v[i] = malloc(MiB);
        DROPIN_CHECK(v[i] != NULL);
        memset(v[i], 2, MiB);
    }
    level_try t = level_in_thread(HM_LEVEL_TASK);
    say("task: served %d errno %d\n", t.served, t.err);
    DROPIN_CHECK(!t.served && t.err == ENOMEM);
    t = level_in_thread(HM_LEVEL_APPDOMAIN);
    say("appdomain: served %d errno %d\n", t.served, t.err);
    DROPIN_CHECK(!t.served && t.err == ENOMEM);
    t = level_in_thread(HM_LEVEL_PROCESS);
    DROPIN_CHECK(t.served);
    t = level_in_thread(-1); /* malloc.level: process */
    DROPIN_CHECK(t.served);
    /* the main thread (process level) still gets memory; switched to task it does not */
    void *p = malloc(MiB);
    DROPIN_CHECK(p != NULL);
    memset(p, 3, MiB);
    DROPIN_CHECK(hm_malloc_set_level(HM_LEVEL_TASK) == -1);
    DROPIN_CHECK(hm_malloc_get_level() == HM_LEVEL_TASK);
    errno = 0;
    DROPIN_CHECK(malloc(MiB) == NULL && errno == ENOMEM);
    DROPIN_CHECK(hm_malloc_set_level(-1) == HM_LEVEL_TASK);
    void *p2 = malloc(MiB);
    DROPIN_CHECK(p2 != NULL);
    free(p2);
    free(p);
    for (int i = 0; i < 26; i++) free(v[i]);
    say("level ok\n");
    return 0;
}

/* malloc.level=task (limit=32M,reserve.process=8M): every thread's requests are task requests,
 * refused 8 MiB before the process level's; a thread that sets the process level gets more. */
static int run_malloc_level(void)
{
    DROPIN_CHECK(hm_malloc_get_level() == HM_LEVEL_TASK);
    void *v[MAXBLK];
    int n = fill(v, MAXBLK, MiB);
    say("task level: %d blocks of 1 MiB\n", n);
    DROPIN_CHECK(n >= 12 && n <= 24);
    DROPIN_CHECK(hm_malloc_set_level(HM_LEVEL_PROCESS) == -1);
    int more = 0;
    for (; more < 4; more++) {
        v[n + more] = malloc(MiB);
        DROPIN_CHECK(v[n + more] != NULL);
        memset(v[n + more], 4, MiB);
    }
    DROPIN_CHECK(hm_malloc_set_level(-1) == HM_LEVEL_PROCESS);
    DROPIN_CHECK(hm_malloc_get_level() == HM_LEVEL_TASK);
    for (int i = 0; i < n + more; i++) free(v[i]);
    say("malloc_level ok\n");
    return 0;
}

static void *other_thread_64k(void *arg)
{
    int *served = arg;
    void *p = malloc(64 * KiB);
    *served = p != NULL;
    free(p);
    return NULL;
}

static int run_unwind(void)
{
    void *big[MAXBLK], *small[MAXBLK * 16], *extra[16];
    int nb = fill(big, MAXBLK, MiB); /* refused: this thread's window opens */
    say("1 MiB blocks: %d\n", nb);
    sleep_ms(150); /* ... and closes */
    int ns = fill(small, MAXBLK * 16, 64 * KiB); /* to within 64 KiB of the threshold, refused */
    say("then 64 KiB blocks: %d\n", ns);
    /* right away: the window to unwind, 1 MiB (1/32 of the limit) above the threshold that refused a
     * 64 KiB block; a few hundred KiB of it */
    for (int i = 0; i < 4; i++) {
        errno = 0;
        extra[i] = malloc(64 * KiB);
        say("in the window: 64 KiB block %d %s\n", i, extra[i] ? "served" : "refused");
        DROPIN_CHECK(extra[i] != NULL);
        memset(extra[i], 7, 64 * KiB);
    }
    /* the window is this thread's alone: another thread is refused */
    pthread_t th;
    int served = -1;
    DROPIN_CHECK(pthread_create(&th, NULL, other_thread_64k, &served) == 0);
    DROPIN_CHECK(pthread_join(th, NULL) == 0);
    say("another thread meanwhile: %s\n", served ? "served" : "refused");
    DROPIN_CHECK(served == 0);
    /* past malloc.unwind_time: refused again */
    sleep_ms(150);
    errno = 0;
    void *p = malloc(64 * KiB);
    say("after the window: %s\n", p ? "served" : "refused");
    DROPIN_CHECK(p == NULL && errno == ENOMEM);
    /* that refusal opened a new window (its block kept: a freed one would serve the next request
     * from memory the heap has committed already, which asks the budget nothing) */
    void *in_window = malloc(64 * KiB);
    DROPIN_CHECK(in_window != NULL);
    sleep_ms(150);
    errno = 0;
    p = malloc(64 * KiB);
    DROPIN_CHECK(p == NULL && errno == ENOMEM);
    free(in_window);
    for (int i = 0; i < 4; i++) free(extra[i]);
    for (int i = 0; i < ns; i++) free(small[i]);
    for (int i = 0; i < nb; i++) free(big[i]);
    say("unwind ok\n");
    return 0;
}

int main(int argc, char **argv)
{
    if (!dropin_active()) {
        fprintf(stderr, "dropin_child: not running on libhostmem-malloc.so\n");
        return 10;
    }
    if (argc == 3 && !strcmp(argv[1], "invalid")) return run_invalid(argv[2]);
    if (argc == 2 && !strcmp(argv[1], "cap")) return run_cap();
    if (argc == 2 && !strcmp(argv[1], "cap_small")) return run_cap_small();
    if (argc == 2 && !strcmp(argv[1], "level")) return run_level();
    if (argc == 2 && !strcmp(argv[1], "unwind")) return run_unwind();
    if (argc == 2 && !strcmp(argv[1], "malloc_level")) return run_malloc_level();
    fprintf(stderr, "usage: dropin_child invalid KIND | cap | cap_small | level | malloc_level | unwind\n");
    return 64;
}
