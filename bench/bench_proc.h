/* bench_proc.h — what the benchmarks that run each contender in a child process of their own share
 * (bench_alloc, bench_small, bench_hosted, bench_hosted_python): the failure exit, clocks, the median
 * of a round's figures, a child's peak resident memory, the path the parent execs its children by and the run of one.
 * Each includes it once, after setting BENCH_PROC_NAME. */
#ifndef HM_BENCH_PROC_H
#define HM_BENCH_PROC_H

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/wait.h>
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

/* The high-water mark of this process's resident memory, KiB (VmHWM: of this image only, unlike
 * ru_maxrss, which after an exec still counts the forked parent's resident set). */
static inline long vm_hwm_kb(void)
{
    char buf[4096];
    int fd = open("/proc/self/status", O_RDONLY);
    if (fd < 0) die("open /proc/self/status: %s", strerror(errno));
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0) die("read /proc/self/status");
    buf[n] = 0;
    const char *p = strstr(buf, "VmHWM:");
    if (!p) die("no VmHWM in /proc/self/status");
    return strtol(p + 6, NULL, 10);
}

/* This program's path, which the parent execs its children by (bench_self_path sets it). */
static char self_path[4096];
static void bench_self_path(void)
{
    ssize_t n = readlink("/proc/self/exe", self_path, sizeof self_path - 1);
    if (n <= 0) die("readlink /proc/self/exe: %s", strerror(errno));
    self_path[n] = 0;
}

/* Runs argv (argv[0] a path: this program, for a child run) with its stdout captured into out
 * (NUL-terminated, the rest read and dropped) and its stderr shared; returns the wait status. */
static inline int bench_run_capture(char *const argv[], char *out, size_t cap)
{
    int fd[2];
    if (pipe(fd)) die("pipe: %s", strerror(errno));
    fflush(stdout);
    pid_t pid = fork();
    if (pid < 0) die("fork: %s", strerror(errno));
    if (pid == 0) {
        dup2(fd[1], 1);
        close(fd[0]);
        close(fd[1]);
        execv(argv[0], argv);
        _exit(127);
    }
    close(fd[1]);
    size_t len = 0;
    char junk[512];
    for (ssize_t k; (k = len + 1 < cap ? read(fd[0], out + len, cap - 1 - len) : read(fd[0], junk, sizeof junk)) > 0;)
        if (len + 1 < cap) len += (size_t)k;
    out[len] = 0;
    close(fd[0]);
    int status;
    if (waitpid(pid, &status, 0) < 0) die("waitpid: %s", strerror(errno));
    return status;
}

#endif
