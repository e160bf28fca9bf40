/* testutil.h — helpers shared by the tests: probing page access without signals, snapshots of the
 * region map for "nothing changed" checks, last-error poisoning, managers' figures, the memory
 * states a callback saw, and removing fixture trees. Header-only. */
#ifndef HM_TESTUTIL_H
#define HM_TESTUTIL_H

#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <hostmem/hostmem.h>

/* Whether hm_vmap_check may compare with the kernel's mappings: not under ThreadSanitizer, whose
 * shadow mappings make /proc/self/maps long. */
#if defined(__SANITIZE_THREAD__)
#define KERNEL_CHECK false
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define KERNEL_CHECK false
#endif
#endif
#ifndef KERNEL_CHECK
#define KERNEL_CHECK true
#endif

/* 1 if one byte at p can be read, 0 if the kernel refuses (EFAULT): write() from p into a pipe. */
static inline int tu_readable(const void *p)
{
    int fd[2];
    if (pipe(fd) != 0) return -1;
    ssize_t r = write(fd[1], p, 1);
    int e = errno;
    close(fd[0]);
    close(fd[1]);
    return r == 1 ? 1 : (e == EFAULT ? 0 : -1);
}

/* 1 if one byte at p can be written, 0 if not: read() from a pipe into p. The byte written is the
 * current value of *p when readable (so contents stay), else 0. */
static inline int tu_writable(void *p)
{
    int fd[2];
    if (pipe(fd) != 0) return -1;
    unsigned char v = 0;
    if (tu_readable(p) == 1) v = *(volatile unsigned char *)p;
    if (write(fd[1], &v, 1) != 1) return -1;
    ssize_t r = read(fd[0], p, 1);
    int e = errno;
    close(fd[0]);
    close(fd[1]);
    return r == 1 ? 1 : (e == EFAULT ? 0 : -1);
}

/* A snapshot of every region of every allocation (the process-default manager). */
#define TU_MAX_REGIONS 4096
typedef struct tu_snapshot {
    size_t n;
    hm_region r[TU_MAX_REGIONS];
} tu_snapshot;

static inline int tu_snap_fn(const hm_region *r, void *arg)
{
    tu_snapshot *s = arg;
    if (s->n >= TU_MAX_REGIONS) return 0;
    hm_region *c = &s->r[s->n++];
    memset(c, 0, sizeof *c); /* field by field, so padding compares equal */
    c->base = r->base;
    c->allocation_base = r->allocation_base;
    c->allocation_protect = r->allocation_protect;
    c->partition_id = r->partition_id;
    c->size = r->size;
    c->state = r->state;
    c->protect = r->protect;
    c->type = r->type;
    return 0;
}

static inline void tu_snapshot_take_of(hm_manager *m, tu_snapshot *s)
{
    s->n = 0;
    assert_int_equal(hm_vm_walk(m, tu_snap_fn, s), HM_OK);
}

static inline void tu_snapshot_take(tu_snapshot *s) { tu_snapshot_take_of(NULL, s); }

static inline void tu_snapshot_assert_equal(const tu_snapshot *a, const tu_snapshot *b)
{
    assert_int_equal(a->n, b->n);
    assert_memory_equal(a->r, b->r, a->n * sizeof(hm_region));
}

/* Failures seen on threads other than cmocka's: counted, the first one kept, asserted later on the
 * main thread (cmocka's assertions only work there). */
static atomic_int failures;
static pthread_mutex_t fail_mu = PTHREAD_MUTEX_INITIALIZER;
static char first_failure[1024];

static inline void record_failure(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static inline void record_failure(const char *fmt, ...)
{
    pthread_mutex_lock(&fail_mu);
    if (atomic_fetch_add(&failures, 1) == 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(first_failure, sizeof first_failure, fmt, ap);
        va_end(ap);
    }
    pthread_mutex_unlock(&fail_mu);
}

static inline bool failed(void) { return atomic_load_explicit(&failures, memory_order_relaxed) != 0; }

static inline void assert_no_thread_failures(void)
{
    int n = atomic_load(&failures);
    if (n) fail_msg("%d failure(s) in threads; first: %s", n, first_failure);
}

/* cmocka puts its own SIGSEGV handler in place for the duration of every test (and the previous
 * one back after it), so during a test hostmem's fault handler is not the first to see a fault. A
 * test that touches guard pages or fallback write-watched memory calls this first, in the test
 * itself: it does what a program that installs its handler after hostmem does (hostmem.h,
 * hm_handle_fault), asking hostmem first and handing every other fault to cmocka's handler. */
static struct sigaction tu_cmocka_segv;
static inline void tu_segv_chain(int sig, siginfo_t *info, void *uc)
{
    if (hm_handle_fault(sig, info, uc)) return;
    if (tu_cmocka_segv.sa_flags & SA_SIGINFO) tu_cmocka_segv.sa_sigaction(sig, info, uc);
    else if (tu_cmocka_segv.sa_handler != SIG_DFL && tu_cmocka_segv.sa_handler != SIG_IGN) tu_cmocka_segv.sa_handler(sig);
    else {
        signal(sig, SIG_DFL);
        raise(sig);
    }
}
static inline void tu_hostmem_faults_first(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = tu_segv_chain;
    sa.sa_flags = SA_SIGINFO | SA_NODEFER;
    sigemptyset(&sa.sa_mask);
    struct sigaction cur;
    sigaction(SIGSEGV, NULL, &cur);
    if (cur.sa_sigaction == tu_segv_chain) return; /* already first */
    sigaction(SIGSEGV, &sa, &tu_cmocka_segv);
}

/* Coverage builds (scripts/coverage.sh defines HM_COVERAGE): gcov writes a process's counters at
 * exit, so a forked child that leaves by _exit or dies of a signal loses them. Such a child calls
 * this last, where it still runs code worth counting (before _exit, before its deliberate fatal
 * fault). Counters are written once per process: whatever runs after the call is not counted. */
#ifdef HM_COVERAGE
extern void __gcov_dump(void);
static inline void tu_coverage_dump(void) { __gcov_dump(); }
#else
static inline void tu_coverage_dump(void) {}
#endif

/* ---- managers ------------------------------------------------------------------------------------ */

static inline void tu_destroy(hm_manager *m)
{
    hm_status st = hm_manager_destroy(m);
    if (st != HM_OK) fail_msg("hm_manager_destroy = %#x: %s", (unsigned)st, hm_last_detail());
}

static inline hm_manager_stats tu_stats(hm_manager *m)
{
    hm_manager_stats s;
    assert_int_equal(hm_manager_get_stats(m, &s), HM_OK);
    return s;
}

static inline uint64_t tu_charge(hm_manager *m) { return tu_stats(m).charge; }

/* ---- memory states a callback saw ---------------------------------------------------------------- */

typedef struct tu_state_log {
    pthread_mutex_t lock;
    int states[64];
    int n;
} tu_state_log;
#define TU_STATE_LOG_INIT {PTHREAD_MUTEX_INITIALIZER, {0}, 0}

/* An hm_notify_fn: appends the state to the tu_state_log arg. */
static inline void tu_state_record(hm_memory_state s, void *arg)
{
    tu_state_log *l = arg;
    pthread_mutex_lock(&l->lock);
    if (l->n < 64) l->states[l->n++] = (int)s;
    pthread_mutex_unlock(&l->lock);
}

/* The last state delivered (0 if none), and how many were, into *n. */
static inline int tu_state_last(tu_state_log *l, int *n)
{
    pthread_mutex_lock(&l->lock);
    *n = l->n;
    int s = l->n ? l->states[l->n - 1] : 0;
    pthread_mutex_unlock(&l->lock);
    return s;
}

static inline void tu_sleep_ms(int ms)
{
    struct timespec t = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&t, NULL);
}

/* Waits (up to 3 s) for n deliveries, and fails unless there are n, the last one s. */
static inline void tu_state_until(tu_state_log *l, int n, int s)
{
    int got = 0, last = 0;
    for (int i = 0; i < 3000; i++) {
        last = tu_state_last(l, &got);
        if (got >= n) break;
        tu_sleep_ms(1);
    }
    if (got != n || last != s) fail_msg("expected %d deliveries ending in %d, got %d ending in %d", n, s, got, last);
}

/* Waits (up to 3 s) for the last delivery to be s. */
static inline void tu_state_until_last(tu_state_log *l, int s)
{
    int got = 0, last = 0;
    for (int i = 0; i < 3000 && (last = tu_state_last(l, &got)) != s; i++) tu_sleep_ms(1);
    if (last != s) fail_msg("expected the last delivery to be %d, it is %d (of %d)", s, last, got);
}

/* ---- fixture trees (proc.root, cgroup.root) ------------------------------------------------------ */

/* Writes text to root/rel through a temporary file renamed over it (atomic for a poller); 0 or -1. */
static inline int tu_tree_write(const char *root, const char *rel, const char *text)
{
    char tmp[600], path[600];
    snprintf(tmp, sizeof tmp, "%s/%s.tmp", root, rel);
    snprintf(path, sizeof path, "%s/%s", root, rel);
    FILE *f = fopen(tmp, "w");
    if (!f) return -1;
    fputs(text, f);
    if (fclose(f)) return -1;
    return rename(tmp, path);
}

/* A fake /proc and cgroup tree (the managers' proc.root and cgroup.root) in a new directory
 * /tmp/hostmem-NAME-XXXXXX, its path written to root (cap bytes): proc, proc/self and cgroup, and
 * proc/meminfo holding meminfo (NULL: none yet). 0, or -1 (a cmocka group setup's result). */
static inline int tu_tree_make(char *root, size_t cap, const char *name, const char *meminfo)
{
    snprintf(root, cap, "/tmp/hostmem-%s-XXXXXX", name);
    if (!mkdtemp(root)) return -1;
    static const char *const dirs[] = {"proc", "proc/self", "cgroup"};
    for (size_t i = 0; i < sizeof dirs / sizeof dirs[0]; i++) {
        char p[600];
        snprintf(p, sizeof p, "%s/%s", root, dirs[i]);
        if (mkdir(p, 0755)) return -1;
    }
    return meminfo ? tu_tree_write(root, "proc/meminfo", meminfo) : 0;
}

/* Removes the tree a test made under root (a cmocka group teardown's result). */
static inline int tu_tree_remove(const char *root)
{
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", root);
    return system(cmd) == 0 ? 0 : -1;
}

#endif
