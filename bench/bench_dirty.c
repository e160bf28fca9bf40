/* bench_dirty.c — what the kernel's written-page tracking (src/os/dirty.h) costs.
 *
 *   bench_dirty            the full run (about 20 s; needs 1 GiB of free memory)
 *   bench_dirty --quick    3 repetitions instead of 7: a smoke test, not a measurement
 *
 * Two measurements on a 1 GiB mapping, reserved PROT_NONE and committed read-write as hostmem does:
 *   1. First touch: a loop writing one word in every page of the fresh mapping (every page faults
 *      in and is zeroed), (a) unregistered, (b) registered for tracking while reserved; and for
 *      information (c) registered with the THP guard, whose empty protected entries (markers) make
 *      each first write take two faults. Printed: ms per GiB and (b)/(a), (c)/(a). Target (b)/(a)
 *      <= 1.5.
 *   2. hm_dirty_scan with reset over the whole 1 GiB (every page present and clean before the
 *      writes), with 0 %, 1 % (every 100th page) and 50 % (every other page: the worst case for the
 *      kernel's page_region output, one region per page) of the pages written. Target <= 5 ms.
 *   And, for information: the 50 % scan without reset (what the kernel's write-protecting of 131072
 *   pages adds is the difference), registration and hm_dirty_reset of the 1 GiB.
 *
 * Method: each figure is one operation over the whole GiB, timed with CLOCK_MONOTONIC; the median of
 * 7 repetitions is printed (min and max beside it). In measurement 1 the contenders alternate, in an
 * order that rotates from one repetition to the next, each on a fresh mapping unmapped afterwards. */
#define _GNU_SOURCE
#include "bench_util.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "os/dirty.h"
#include "os/os.h"

#define MiB ((size_t)1 << 20)
#define GiB ((size_t)1 << 30)
#define PG ((size_t)4096)
#define NPAGES (GiB / PG)

/* what failed, with its errno value (bench_util.h's die) */
#define die_err(what, err) die("%s: %s", (what), strerror(err))

/* A fresh GiB, reserved (PROT_NONE, MAP_NORESERVE) at a 2 MiB boundary; map and maplen are for munmap. */
static char *reserve(void **map, size_t *maplen)
{
    *maplen = GiB + 2 * MiB;
    void *p = mmap(NULL, *maplen, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED) die_err("mmap", errno);
    *map = p;
    return (char *)(((uintptr_t)p + 2 * MiB - 1) & ~(uintptr_t)(2 * MiB - 1));
}

static void commit(char *p)
{
    if (mprotect(p, GiB, PROT_READ | PROT_WRITE) != 0) die_err("mprotect", errno);
}

static void touch(char *p, size_t step)
{
    for (size_t i = 0; i < NPAGES; i += step) *(volatile uint64_t *)(p + i * PG) = i + 1;
}

typedef struct series {
    const char *name;
    double t[16]; /* ms, one per repetition */
    double med, lo, hi;
} series;

static void summarize(series *s)
{
    double v[16];
    memcpy(v, s->t, sizeof v);
    s->med = median(v, reps);
    s->lo = v[0];
    s->hi = v[reps - 1];
}

/* ---- 1. first touch ---------------------------------------------------------------------------- */

enum { UNREG, REG, GUARD, NCONT };

static double first_touch(int kind)
{
    void *map;
    size_t maplen;
    char *p = reserve(&map, &maplen);
    hm_dirty_set_thp_guard(kind == GUARD);
    int err = kind != UNREG ? hm_dirty_register(p, GiB) : 0;
    if (err) die_err("hm_dirty_register", err);
    commit(p);
    double t0 = now_ns();
    touch(p, 1);
    double t = (now_ns() - t0) / 1e6;
    if (kind != UNREG && (err = hm_dirty_unregister(p, GiB))) die_err("hm_dirty_unregister", err);
    munmap(map, maplen);
    return t;
}

/* ---- 2. scans ------------------------------------------------------------------------------------ */

static uintptr_t *out; /* room for every page */

static double scan_ms(char *p, size_t expect, bool reset)
{
    size_t n = 0;
    double t0 = now_ns();
    int err = hm_dirty_scan(p, GiB, out, NPAGES, reset, &n);
    double t = (now_ns() - t0) / 1e6;
    if (err) die_err("hm_dirty_scan", err);
    if (n != expect) {
        fprintf(stderr, "bench_dirty: scan listed %zu pages, expected %zu\n", n, expect);
        exit(2);
    }
    return t;
}

int main(int argc, char **argv)
{
    bench_name = "bench_dirty";
    bench_args(argc, argv);
    (void)measure; /* the batch harness does not fit one-shot operations of a GiB: timed one by one */
    const hm_os_config *cfg = hm_os_init();
    if (!hm_dirty_available()) {
        printf("bench_dirty: kernel write tracking unavailable here (%s): nothing to measure\n", hm_dirty_describe());
        return 0;
    }
    static const char *const thp[] = {"never", "madvise", "always"};
    printf("bench_dirty%s: %s; %u processors, THP %s; median of %d repetitions, CLOCK_MONOTONIC\n",
           reps == 3 ? " --quick" : "", hm_dirty_describe(), cfg->processors,
           cfg->thp >= 0 && cfg->thp <= 2 ? thp[cfg->thp] : "unknown", reps);

    /* 1. First touch. */
    series ft[NCONT] = {{.name = "(a) unregistered"},
                        {.name = "(b) registered"},
                        {.name = "(c) registered, THP guard (markers)"}};
    (void)first_touch(UNREG); /* warm-up: the first GiB this process touches costs more */
    for (int r = 0; r < reps; r++)
        for (int j = 0; j < NCONT; j++) {
            int k = (r + j) % NCONT;
            ft[k].t[r] = first_touch(k);
        }
    hm_dirty_set_thp_guard(-1);
    printf("\n1. first touch of 1 GiB: one word written per page, fresh mapping\n");
    printf("   %-38s %9s %9s %9s %8s\n", "", "ms", "min", "max", "/ (a)");
    for (int k = 0; k < NCONT; k++) {
        summarize(&ft[k]);
        printf("   %-38s %9.1f %9.1f %9.1f %8.2f\n", ft[k].name, ft[k].med, ft[k].lo, ft[k].hi,
               ft[k].med / ft[UNREG].med);
    }
    double ratio = ft[REG].med / ft[UNREG].med;
    printf("   (b)/(a) = %.2f   target <= 1.5: %s\n", ratio, ratio <= 1.5 ? "met" : "NOT met");

    /* 2. Scans with reset. */
    out = malloc(NPAGES * sizeof *out);
    if (!out) die_err("malloc", ENOMEM);
    void *map;
    size_t maplen;
    char *p = reserve(&map, &maplen);
    series reg = {.name = "register (reserved 1 GiB)"}, rst = {.name = "hm_dirty_reset (1 GiB, all written)"};
    int err;
    for (int r = 0; r < reps; r++) {
        double t0 = now_ns();
        if ((err = hm_dirty_register(p, GiB))) die_err("hm_dirty_register", err);
        reg.t[r] = (now_ns() - t0) / 1e6;
        if ((err = hm_dirty_unregister(p, GiB))) die_err("hm_dirty_unregister", err);
    }
    if ((err = hm_dirty_register(p, GiB))) die_err("hm_dirty_register", err);
    commit(p);
    touch(p, 1); /* every page present */
    for (int r = 0; r < reps; r++) {
        touch(p, 1);
        double t0 = now_ns();
        if ((err = hm_dirty_reset(p, GiB))) die_err("hm_dirty_reset", err);
        rst.t[r] = (now_ns() - t0) / 1e6;
    }
    static const struct {
        const char *name;
        size_t step;
    } pat[] = {{"0 % written", 0}, {"1 % written (every 100th page)", 100}, {"50 % written (every other page)", 2}};
    series sc[3];
    for (int i = 0; i < 3; i++) {
        sc[i].name = pat[i].name;
        size_t expect = pat[i].step ? (NPAGES + pat[i].step - 1) / pat[i].step : 0;
        for (int r = 0; r < reps; r++) {
            if (pat[i].step) touch(p, pat[i].step);
            sc[i].t[r] = scan_ms(p, expect, true);
        }
    }
    series nr = {.name = "50 % written, listed without reset"};
    for (int r = 0; r < reps; r++) {
        touch(p, 2);
        nr.t[r] = scan_ms(p, NPAGES / 2, false);
        if ((err = hm_dirty_reset(p, GiB))) die_err("hm_dirty_reset", err);
    }
    printf("\n2. hm_dirty_scan with reset over 1 GiB (every page present)\n");
    printf("   %-38s %9s %9s %9s\n", "", "ms", "min", "max");
    for (int i = 0; i < 3; i++) {
        summarize(&sc[i]);
        printf("   %-38s %9.2f %9.2f %9.2f   target <= 5 ms: %s\n", sc[i].name, sc[i].med, sc[i].lo, sc[i].hi,
               sc[i].med <= 5 ? "met" : "NOT met");
    }
    summarize(&reg);
    summarize(&rst);
    summarize(&nr);
    printf("\n   for information (the difference between the 50 %% lines is the kernel write-protecting the pages):\n");
    printf("   %-38s %9.2f %9.2f %9.2f\n", nr.name, nr.med, nr.lo, nr.hi);
    printf("   %-38s %9.2f %9.2f %9.2f\n", reg.name, reg.med, reg.lo, reg.hi);
    printf("   %-38s %9.2f %9.2f %9.2f\n", rst.name, rst.med, rst.lo, rst.hi);
    (void)hm_dirty_unregister(p, GiB);
    munmap(map, maplen);
    free(out);
    return 0;
}
