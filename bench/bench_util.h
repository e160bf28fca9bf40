/* bench_util.h — what the benchmarks share: a monotonic clock, medians, and the harness that
 * calibrates batches of an operation and times contenders' batches interleaved (the order rotates
 * from one round to the next, so that drift on this noisy machine falls on every contender alike).
 * Each benchmark sets reps and batch_ns (--quick shrinks them). Header-only; include once. */
#ifndef HM_BENCH_UTIL_H
#define HM_BENCH_UTIL_H

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <hostmem/hostmem.h>

static const char *bench_name = "bench"; /* for messages: set by each benchmark's main */

/* Stops the benchmark: a measurement whose setup failed measures nothing. */
__attribute__((noreturn, format(printf, 1, 2))) static inline void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "%s: ", bench_name);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\n");
    exit(2);
}

static inline void hm_check(hm_status st, const char *what)
{
    if (HM_FAILED(st))
        die("%s failed: %s (%s, 0x%08x): %s", what, hm_status_message(st), hm_status_name(st), (unsigned)st,
            hm_last_detail());
}

static int reps = 7;                 /* batches per figure; the median is printed */
static double batch_ns = 100e6;      /* wanted length of one batch */

static inline double now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static inline int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static inline double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/* ---- the timing harness ------------------------------------------------------------------------ */

/* Runs n operations; the harness divides the batch's time by n. */
typedef void (*batch_fn)(void *ctx, long n);

typedef struct contender {
    const char *name;
    batch_fn fn;
    void *ctx;
    long n;            /* operations per batch (calibrated) */
    double t[16];      /* ns per operation, one per batch */
    double med;        /* median ns per operation */
} contender;

static inline double run_batch(contender *c, long n)
{
    double t0 = now_ns();
    c->fn(c->ctx, n);
    return now_ns() - t0;
}

/* Grows the batch until it takes a tenth of the wanted time, then scales it to the wanted time.
 * Doubles as the warm-up. */
static inline void calibrate(contender *c)
{
    long n = 1;
    for (;;) {
        double t = run_batch(c, n);
        if (t >= batch_ns / 10 || n >= (1L << 30)) {
            double want = (double)n * batch_ns / (t > 1 ? t : 1);
            c->n = want < 1 ? 1 : want > (double)(1L << 32) ? (1L << 32) : (long)want;
            return;
        }
        n *= t < batch_ns / 1000 ? 16 : 4;
    }
}

/* Median ns/op of each contender over `reps` batches, their batches interleaved (order rotates). */
static inline void measure(contender *cs, int k)
{
    for (int i = 0; i < k; i++) calibrate(&cs[i]);
    for (int r = 0; r < reps; r++)
        for (int j = 0; j < k; j++) {
            contender *c = &cs[(r + j) % k];
            c->t[r] = run_batch(c, c->n) / (double)c->n;
        }
    for (int i = 0; i < k; i++) cs[i].med = median(cs[i].t, reps);
}

/* Reads the command line ([--quick]); with --quick, fewer and shorter batches. Returns whether quick,
 * or exits with a usage line. */
static inline int bench_args(int argc, char **argv)
{
    int q = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--quick")) q = 1;
        else {
            fprintf(stderr, "usage: %s [--quick]\n", argv[0]);
            exit(2);
        }
    }
    if (q) {
        reps = 3;
        batch_ns = 5e6;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    return q;
}

#endif
