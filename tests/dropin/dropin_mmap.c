/* dropin_mmap.c — the program's own mappings under the drop-in's budget (src/preload/mmap.c), run
 * preloaded with HOSTMEM_OPTIONS=limit=64M,malloc.unwind=0: private anonymous writable mappings
 * are charged while writable and refused past the limit with nothing changed; file, shared,
 * MAP_NORESERVE and PROT_NONE mappings cost nothing; munmap, mprotect and mremap move the charge by
 * exactly what they change, partial ranges and MAP_FIXED replacement included, and the charge comes
 * back to where it started. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cmocka.h>

#include <hostmem/hostmem.h>

#include "dropin_util.h"

#define KiB ((size_t)1 << 10)
#define MiB ((size_t)1 << 20)

static uint64_t charge(void)
{
    hm_manager_stats s;
    assert_int_equal(hm_manager_get_stats(NULL, &s), HM_OK);
    return s.charge;
}

static uint64_t base;

static int setup(void **state)
{
    (void)state;
    free(malloc(16)); /* started */
    base = charge();
    return 0;
}

static void expect_charge(int64_t delta, const char *what)
{
    int64_t got = (int64_t)(charge() - base);
    if (got != delta) fail_msg("%s: charge moved by %lld, expected %lld", what, (long long)got, (long long)delta);
}

static void test_anonymous(void **state)
{
    (void)state;
    char *p = mmap(NULL, 4 * MiB, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    assert_ptr_not_equal(p, MAP_FAILED);
    expect_charge(4 * MiB, "mmap 4M rw");
    memset(p, 1, 4 * MiB);
    assert_int_equal(munmap(p + MiB, MiB), 0); /* a hole in the middle */
    expect_charge(3 * MiB, "munmap 1M inside");
    assert_int_equal(mprotect(p, MiB, PROT_READ), 0);
    expect_charge(2 * MiB, "mprotect 1M read-only");
    assert_int_equal(mprotect(p, MiB, PROT_READ), 0); /* again: nothing changes */
    expect_charge(2 * MiB, "mprotect read-only again");
    assert_int_equal(mprotect(p, MiB, PROT_READ | PROT_WRITE), 0);
    expect_charge(3 * MiB, "mprotect writable again");
    assert_int_equal(munmap(p, 4 * MiB), 0); /* across the hole */
    expect_charge(0, "munmap all");
    /* a size that is no multiple of the page: the pages count */
    p = mmap(NULL, 5000, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    assert_ptr_not_equal(p, MAP_FAILED);
    expect_charge(8 * KiB, "mmap 5000 bytes");
    assert_int_equal(munmap(p, 5000), 0);
    expect_charge(0, "munmap 5000 bytes");
}

static void test_free_kinds(void **state)
{
    (void)state;
    char *r = mmap(NULL, 256 * MiB, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0); /* a reservation */
    assert_ptr_not_equal(r, MAP_FAILED);
    char *n = mmap(NULL, 256 * MiB, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    assert_ptr_not_equal(n, MAP_FAILED);
    char *s = mmap(NULL, 8 * MiB, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    assert_ptr_not_equal(s, MAP_FAILED);
    int fd = open("/proc/self/exe", O_RDONLY);
    assert_true(fd >= 0);
    char *f = mmap(NULL, 4096, PROT_READ, MAP_PRIVATE, fd, 0);
    assert_ptr_not_equal(f, MAP_FAILED);
    close(fd);
    expect_charge(0, "reservation, MAP_NORESERVE, shared and file mappings");
    /* committing inside the reservation: charged as it becomes writable (not the NORESERVE one) */
    assert_int_equal(mprotect(r + 16 * MiB, 2 * MiB, PROT_READ | PROT_WRITE), 0);
    expect_charge(2 * MiB, "mprotect 2M of a reservation writable");
    assert_int_equal(mprotect(n + 16 * MiB, 2 * MiB, PROT_READ), 0);
    assert_int_equal(mprotect(n + 16 * MiB, 2 * MiB, PROT_READ | PROT_WRITE), 0);
    expect_charge(2 * MiB, "mprotect of MAP_NORESERVE memory");
    assert_int_equal(munmap(r, 256 * MiB), 0);
    assert_int_equal(munmap(n, 256 * MiB), 0);
    assert_int_equal(munmap(s, 8 * MiB), 0);
    assert_int_equal(munmap(f, 4096), 0);
    expect_charge(0, "all unmapped");
}

static void test_refusal(void **state)
{
    (void)state;
    errno = 0;
    char *p = mmap(NULL, 100 * MiB, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    assert_ptr_equal(p, MAP_FAILED);
    assert_int_equal(errno, ENOMEM);
    expect_charge(0, "refused mmap");
    /* a reservation can be made, but not made writable past the limit; nothing changes */
    char *r = mmap(NULL, 100 * MiB, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    assert_ptr_not_equal(r, MAP_FAILED);
    errno = 0;
    assert_int_equal(mprotect(r, 100 * MiB, PROT_READ | PROT_WRITE), -1);
    assert_int_equal(errno, ENOMEM);
    expect_charge(0, "refused mprotect");
    assert_int_equal(mprotect(r, 8 * MiB, PROT_READ | PROT_WRITE), 0);
    expect_charge(8 * MiB, "mprotect 8M of it");
    r[8 * MiB - 1] = 1;
    /* growing past the limit is refused, the mapping as it was */
    errno = 0;
    char *q = mremap(r, 8 * MiB, 80 * MiB, 0);
    assert_ptr_equal(q, MAP_FAILED);
    expect_charge(8 * MiB, "refused mremap");
    assert_int_equal(munmap(r, 100 * MiB), 0);
    expect_charge(0, "unmapped");
}

static void test_fixed_and_mremap(void **state)
{
    (void)state;
    char *p = mmap(NULL, 8 * MiB, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    assert_ptr_not_equal(p, MAP_FAILED);
    expect_charge(8 * MiB, "mmap 8M");
    /* MAP_FIXED over the middle: a read-only mapping replaces 2M of it */
    char *q = mmap(p + 2 * MiB, 2 * MiB, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
    assert_ptr_equal(q, p + 2 * MiB);
    expect_charge(6 * MiB, "MAP_FIXED read-only over 2M");
    /* and a writable one over it again */
    q = mmap(p + 2 * MiB, 2 * MiB, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
    assert_ptr_equal(q, p + 2 * MiB);
    expect_charge(8 * MiB, "MAP_FIXED writable over it");
    /* mremap: shrink the last 2M piece, grow it, move it */
    char *t = p + 6 * MiB;
    t[0] = 5;
    char *u = mremap(t, 2 * MiB, MiB, 0);
    assert_ptr_equal(u, t);
    expect_charge(7 * MiB, "mremap shrink");
    u = mremap(t, MiB, 3 * MiB, MREMAP_MAYMOVE);
    assert_ptr_not_equal(u, MAP_FAILED);
    assert_int_equal(u[0], 5);
    expect_charge(9 * MiB, "mremap grow");
    char *dest = mmap(NULL, 4 * MiB, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    assert_ptr_not_equal(dest, MAP_FAILED);
    char *v = mremap(u, 3 * MiB, 3 * MiB, MREMAP_MAYMOVE | MREMAP_FIXED, dest);
    assert_ptr_equal(v, dest);
    assert_int_equal(v[0], 5);
    expect_charge(9 * MiB, "mremap moved");
    assert_int_equal(munmap(dest, 4 * MiB), 0);
    expect_charge(6 * MiB, "moved piece unmapped");
    assert_int_equal(munmap(p, 6 * MiB), 0);
    expect_charge(0, "all unmapped");
}

static void test_bad_arguments(void **state)
{
    (void)state;
    errno = 0;
    assert_ptr_equal(mmap(NULL, 0, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0), MAP_FAILED);
    assert_int_equal(errno, EINVAL);
    errno = 0;
    assert_int_equal(munmap((void *)4097, 4096), -1);
    assert_int_equal(errno, EINVAL);
    errno = 0;
    assert_int_equal(mprotect((void *)4097, 4096, PROT_READ), -1);
    assert_int_equal(errno, EINVAL);
    expect_charge(0, "bad arguments");
}

int main(int argc, char **argv)
{
    if (!dropin_active()) {
        fprintf(stderr, "dropin_mmap: not running on the drop-in malloc\n");
        return 1;
    }
    if (argc > 1 && !strcmp(argv[1], "off")) { /* malloc.mmap=off: nothing is counted */
        free(malloc(16));
        uint64_t c0 = charge();
        char *p = mmap(NULL, 100 * MiB, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED || charge() != c0) return 1;
        munmap(p, 100 * MiB);
        printf("off: not counted\n");
        return 0;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_anonymous),
        cmocka_unit_test(test_free_kinds),
        cmocka_unit_test(test_refusal),
        cmocka_unit_test(test_fixed_and_mremap),
        cmocka_unit_test(test_bad_arguments),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
