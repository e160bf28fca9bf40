/* dropin_fork.c — fork, posix_spawn and vfork while other threads allocate on the drop-in malloc
 * (src/preload/dropin.h, "fork"; init.c's pthread_atfork handlers), run preloaded. Every child must
 * be able to allocate at once, from its only thread and from a thread it starts, free blocks its
 * parent allocated, and exit; a child that deadlocks is killed by its alarm or by the parent's
 * deadline, and either is a failure. */
#define _GNU_SOURCE
#include <errno.h>
#include <malloc.h>
#include <pthread.h>
#include <sched.h>
#include <setjmp.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "dropin_util.h"

extern char **environ;

#define NWORKERS 4
#define FORKS 200
#define SPAWNS 100
#define VFORKS 100
#define CHILD_ALARM 20    /* seconds a child may take before SIGALRM ends it */
#define CHILD_DEADLINE 30 /* seconds the parent waits before SIGKILL */

static int group_setup(void **state)
{
    (void)state;
    return dropin_active() ? 0 : -1;
}

/* ---- threads that allocate all the time ------------------------------------------------------------ */

static _Atomic int stop, worker_failed;
static _Atomic long worker_ops;

static size_t worker_size(uint64_t *rng)
{
    uint64_t r = rng_next(rng);
    if (r % 16 == 0) return (size_t)(r >> 8) % (512 * KiB) + 1; /* now and then a large block */
    return (size_t)(r >> 8) % 2048 + 1;
}

static void *worker(void *arg)
{
    uint64_t rng = (uint64_t)(uintptr_t)arg * 0x9e3779b97f4a7c15ull + 1;
    enum { SLOTS = 64 };
    unsigned char *blk[SLOTS] = {0};
    size_t size[SLOTS] = {0};
    uint64_t seed[SLOTS] = {0};
    while (!atomic_load_explicit(&stop, memory_order_relaxed)) {
        unsigned i = (unsigned)(rng_next(&rng) % SLOTS);
        if (blk[i]) {
            if (!pattern_check(blk[i], size[i], seed[i])) atomic_store(&worker_failed, 1);
            free(blk[i]);
        }
        size[i] = worker_size(&rng);
        seed[i] = rng_next(&rng);
        blk[i] = malloc(size[i]);
        if (!blk[i]) {
            atomic_store(&worker_failed, 2);
            break;
        }
        pattern_fill(blk[i], size[i] < 256 ? size[i] : 256, seed[i]);
        size[i] = size[i] < 256 ? size[i] : 256; /* (what the check looks at) */
        atomic_fetch_add_explicit(&worker_ops, 1, memory_order_relaxed);
    }
    for (unsigned i = 0; i < SLOTS; i++) free(blk[i]);
    return NULL;
}

static pthread_t workers[NWORKERS];

static void workers_start(void)
{
    atomic_store(&stop, 0);
    atomic_store(&worker_failed, 0);
    atomic_store(&worker_ops, 0);
    for (int i = 0; i < NWORKERS; i++)
        assert_int_equal(pthread_create(&workers[i], NULL, worker, (void *)(uintptr_t)(i + 1)), 0);
    /* let them get going */
    while (atomic_load(&worker_ops) < 1000) sched_yield();
}

static void workers_stop(void)
{
    atomic_store(&stop, 1);
    for (int i = 0; i < NWORKERS; i++) assert_int_equal(pthread_join(workers[i], NULL), 0);
    assert_int_equal(atomic_load(&worker_failed), 0);
}

/* ---- waiting for a child, with a deadline ------------------------------------------------------------ */

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* The child's wait status; a child still running after the deadline is killed and reported as
 * -1 (a deadlock). */
static int wait_child(pid_t pid)
{
    double end = now_s() + CHILD_DEADLINE;
    int status;
    for (;;) {
        pid_t r = waitpid(pid, &status, WNOHANG);
        if (r == pid) return status;
        if (r < 0 && errno != EINTR) return -2;
        if (now_s() > end) {
            kill(pid, SIGKILL);
            waitpid(pid, &status, 0);
            fprintf(stderr, "child %d still running after %d s: killed (deadlock?)\n", (int)pid, CHILD_DEADLINE);
            return -1;
        }
        struct timespec ts = {0, 200 * 1000};
        nanosleep(&ts, NULL);
    }
}

static void assert_exited_zero(int status)
{
    if (!(status >= 0 && WIFEXITED(status) && WEXITSTATUS(status) == 0)) {
        if (status >= 0 && WIFSIGNALED(status))
            fprintf(stderr, "child ended by signal %d (%s)\n", WTERMSIG(status), strsignal(WTERMSIG(status)));
        else if (status >= 0 && WIFEXITED(status))
            fprintf(stderr, "child exited with status %d\n", WEXITSTATUS(status));
    }
    assert_true(status >= 0);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
}

/* ---- fork ------------------------------------------------------------------------------------------ */

static void *child_thread(void *arg)
{
    uint64_t rng = (uint64_t)(uintptr_t)arg;
    void *keep[32] = {0};
    for (int i = 0; i < 1000; i++) {
        unsigned s = (unsigned)(rng_next(&rng) % 32);
        free(keep[s]);
        size_t n = worker_size(&rng);
        keep[s] = malloc(n);
        if (!keep[s]) return (void *)1;
        memset(keep[s], 0x77, n < 128 ? n : 128);
    }
    for (int i = 0; i < 32; i++) free(keep[i]);
    return NULL;
}

/* What a forked child does: exit status 0 when everything worked. */
static int child_main(unsigned char *from_parent, uint64_t seed, int round)
{
    alarm(CHILD_ALARM);
    unsigned char *p = malloc(100); /* at once */
    if (!p) return 3;
    memset(p, 0x42, 100);
    if (!pattern_check(from_parent, 300, seed)) return 4;
    free(from_parent); /* a block of the parent's, freed in the child */
    void *big = malloc(2 * MiB);
    if (!big) return 5;
    memset(big, 1, 2 * MiB);
    pthread_t t;
    if (pthread_create(&t, NULL, child_thread, (void *)(uintptr_t)(round + 1))) return 6;
    void *ret = (void *)2;
    if (pthread_join(t, &ret) || ret) return 7;
    free(big);
    free(p);
    return 0;
}

static void test_fork_while_threads_allocate(void **state)
{
    (void)state;
    workers_start();
    for (int i = 0; i < FORKS; i++) {
        uint64_t seed = (uint64_t)i * 7919 + 3;
        unsigned char *from_parent = malloc(300);
        assert_non_null(from_parent);
        pattern_fill(from_parent, 300, seed);
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) _exit(child_main(from_parent, seed, i));
        /* the parent goes on allocating while the child runs */
        void *q = malloc((size_t)i * 97 + 1);
        assert_non_null(q);
        assert_true(pattern_check(from_parent, 300, seed)); /* the child's free did not touch ours */
        free(from_parent);
        free(q);
        assert_exited_zero(wait_child(pid));
    }
    workers_stop();
}

/* fork from a thread that is not the main thread, while the main thread allocates */
static void *forker(void *arg)
{
    (void)arg;
    for (int i = 0; i < 20; i++) {
        unsigned char *b = malloc(300);
        if (!b) return (void *)1;
        pattern_fill(b, 300, 11);
        pid_t pid = fork();
        if (pid < 0) return (void *)1;
        if (pid == 0) _exit(child_main(b, 11, i));
        free(b);
        int st = wait_child(pid);
        if (st < 0 || !WIFEXITED(st) || WEXITSTATUS(st)) return (void *)1;
    }
    return NULL;
}

static void test_fork_from_thread(void **state)
{
    (void)state;
    workers_start();
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, forker, NULL), 0);
    void *ret = (void *)2;
    assert_int_equal(pthread_join(t, &ret), 0);
    assert_null(ret);
    workers_stop();
}

/* ---- posix_spawn and vfork ----------------------------------------------------------------------------- */

static void test_posix_spawn(void **state)
{
    (void)state;
    workers_start();
    char *argv[] = {(char *)"/bin/true", NULL};
    for (int i = 0; i < SPAWNS; i++) {
        pid_t pid;
        void *q = malloc(1000);
        assert_non_null(q);
        assert_int_equal(posix_spawn(&pid, "/bin/true", NULL, NULL, argv, environ), 0);
        free(q);
        assert_exited_zero(wait_child(pid));
    }
    workers_stop();
}

static __attribute__((noinline)) pid_t vfork_exit(void)
{
    pid_t pid = vfork();
    if (pid == 0) _exit(0);
    return pid;
}

static __attribute__((noinline)) pid_t vfork_exec(char *const argv[])
{
    pid_t pid = vfork();
    if (pid == 0) {
        execve(argv[0], argv, environ);
        _exit(127);
    }
    return pid;
}

static void test_vfork(void **state)
{
    (void)state;
    workers_start();
    char *argv[] = {(char *)"/bin/true", NULL};
    for (int i = 0; i < VFORKS; i++) {
        void *q = malloc((size_t)i + 1);
        assert_non_null(q);
        pid_t pid = i % 2 ? vfork_exit() : vfork_exec(argv);
        assert_true(pid > 0);
        free(q);
        assert_exited_zero(wait_child(pid));
    }
    workers_stop();
    /* the parent's heap is sound after it all */
    void *v[2000];
    for (int i = 0; i < 2000; i++) {
        v[i] = malloc((size_t)(i % 500) + 1);
        assert_non_null(v[i]);
    }
    assert_true(blocks_disjoint(v, 2000));
    for (int i = 0; i < 2000; i++) free(v[i]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fork_while_threads_allocate),
        cmocka_unit_test(test_fork_from_thread),
        cmocka_unit_test(test_posix_spawn),
        cmocka_unit_test(test_vfork),
    };
    return cmocka_run_group_tests_name("dropin_fork", tests, group_setup, NULL);
}
