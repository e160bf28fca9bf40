/* bench_proc.h — what the benchmarks that run each contender in a child process of their own share
 * (bench_alloc, bench_small): the failure exit, clocks, the median of a round's figures, and the path
 * the parent execs its children by. Each includes it once, after setting BENCH_PROC_NAME. */
#ifndef HM_BENCH_PROC_H
#define HM_BENCH_PROC_H

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define BENCH_PROC_MAXN 64 /* figures median() looks at, at most */

static const char *g_what = BENCH_PROC_NAME; /* what a child runs ("contender/workload/...") */

/* A failure: said on stderr with what this process runs, exit status 3. */
__attribute__((noreturn, format(printf, 1, 2))) static void die(const char *fmt, ...);
static void die(const char *fmt, ...)
{
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    fprintf(stderr, BENCH_PROC_NAME ": %s: %s\n", g_what, buf);
    fflush(stderr);
    _exit(3);
}

static double clock_ns(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}
static double now_ns(void) { return clock_ns(CLOCK_MONOTONIC); }

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Median of the first BENCH_PROC_MAXN values of v[0..n) that are not NAN; NAN if none. */
static double median(const double *v, int n)
{
    double t[BENCH_PROC_MAXN];
    int k = 0;
    for (int i = 0; i < n && k < BENCH_PROC_MAXN; i++)
        if (!isnan(v[i])) t[k++] = v[i];
    if (!k) return NAN;
    qsort(t, (size_t)k, sizeof *t, cmp_double);
    return k % 2 ? t[k / 2] : (t[k / 2 - 1] + t[k / 2]) / 2;
}

/* This program's path, which the parent execs its children by (bench_self_path sets it). */
static char self_path[4096];
static void bench_self_path(void)
{
    ssize_t n = readlink("/proc/self/exe", self_path, sizeof self_path - 1);
    if (n <= 0) die("readlink /proc/self/exe: %s", strerror(errno));
    self_path[n] = 0;
}

#endif
