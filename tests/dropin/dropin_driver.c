/* dropin_driver.c — runs programs preloaded on the drop-in malloc (LD_PRELOAD=HM_DROPIN_LIB), each
 * with the HOSTMEM_OPTIONS of its test, and judges them from outside: exit status or signal, stdout,
 * stderr, the report file. The driver itself does not run on the drop-in. One group per ctest test:
 *
 *   dropin_driver invalid   invalid frees (dropin_child invalid KIND): SIGABRT and the message by
 *                           default; with malloc.invalid_free=ignore the message, and the program goes
 *                           on with its heap intact
 *   dropin_driver exit      allocation before main and after exit (dropin_exit_prog), the report at exit
 *   dropin_driver cap       the budget (dropin_child cap, cap_small, level, malloc_level, unwind), the
 *                           JSON report's refusals, options the drop-in cannot start with */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

extern char **environ;

#define DEADLINE_S 60

typedef struct result {
    int status; /* wait status; -1: killed at the deadline */
    char *out, *err;
} result;

static char *slurp(int fd)
{
    struct stat st;
    if (fstat(fd, &st)) return strdup("");
    char *s = calloc(1, (size_t)st.st_size + 1);
    if (!s) return NULL;
    ssize_t n = pread(fd, s, (size_t)st.st_size, 0);
    if (n < 0) s[0] = 0;
    return s;
}

static char *read_file(const char *path)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return NULL;
    char *s = slurp(fd);
    close(fd);
    return s;
}

static int tmpfd(void)
{
    char path[512];
    snprintf(path, sizeof path, "%s/dropin_driver_XXXXXX", HM_DROPIN_TMP);
    int fd = mkstemp(path);
    if (fd >= 0) unlink(path);
    return fd;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Runs argv with the drop-in preloaded and HOSTMEM_OPTIONS=options (unset when NULL). */
static result run(const char *const *argv, const char *options)
{
    result r = {-1, NULL, NULL};
    int ofd = tmpfd(), efd = tmpfd();
    assert_true(ofd >= 0 && efd >= 0);
    /* the environment: ours without the variables that matter here, then the test's */
    size_t n = 0;
    while (environ[n]) n++;
    char **env = calloc(n + 3, sizeof *env);
    assert_non_null(env);
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (strncmp(environ[i], "LD_PRELOAD=", 11) && strncmp(environ[i], "HOSTMEM_OPTIONS=", 16) &&
            strncmp(environ[i], "HOSTMEM_RUN_PID=", 16))
            env[k++] = environ[i];
    char preload[1024], opts[1024];
    snprintf(preload, sizeof preload, "LD_PRELOAD=%s", HM_DROPIN_LIB);
    env[k++] = preload;
    if (options) {
        snprintf(opts, sizeof opts, "HOSTMEM_OPTIONS=%s", options);
        env[k++] = opts;
    }
    env[k] = NULL;
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        struct rlimit no_core = {0, 0}; /* (an abort leaves no core file behind) */
        setrlimit(RLIMIT_CORE, &no_core);
        dup2(ofd, 1);
        dup2(efd, 2);
        execve(argv[0], (char *const *)argv, env);
        _exit(127);
    }
    free(env);
    double end = now_s() + DEADLINE_S;
    int status;
    for (;;) {
        pid_t w = waitpid(pid, &status, WNOHANG);
        if (w == pid) {
            r.status = status;
            break;
        }
        assert_true(w == 0 || errno == EINTR);
        if (now_s() > end) {
            kill(pid, SIGKILL);
            waitpid(pid, &status, 0);
            r.status = -1;
            break;
        }
        struct timespec ts = {0, 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    r.out = slurp(ofd);
    r.err = slurp(efd);
    close(ofd);
    close(efd);
    assert_non_null(r.out);
    assert_non_null(r.err);
    return r;
}

static void result_free(result *r)
{
    free(r->out);
    free(r->err);
}

static void dump(const char *what, const result *r)
{
    fprintf(stderr, "---- %s: ", what);
    if (r->status == -1) fprintf(stderr, "killed after %d s\n", DEADLINE_S);
    else if (WIFEXITED(r->status)) fprintf(stderr, "exit status %d\n", WEXITSTATUS(r->status));
    else if (WIFSIGNALED(r->status)) fprintf(stderr, "signal %d (%s)\n", WTERMSIG(r->status), strsignal(WTERMSIG(r->status)));
    fprintf(stderr, "---- stdout:\n%s---- stderr:\n%s---- end\n", r->out, r->err);
}

/* A check on a child's result: shows the child's output when it fails. */
#define EXPECT(r, what, c)                                                                         \
    do {                                                                                           \
        if (!(c)) dump(what, r);                                                                   \
        assert_true(c);                                                                            \
    } while (0)

static bool exited(const result *r, int code) { return r->status >= 0 && WIFEXITED(r->status) && WEXITSTATUS(r->status) == code; }

static bool signalled(const result *r, int sig) { return r->status >= 0 && WIFSIGNALED(r->status) && WTERMSIG(r->status) == sig; }

/* ---- invalid frees ------------------------------------------------------------------------------------ */

static const char *const kinds[] = {"double", "interior", "stack", "static", "realloc_interior", "realloc_freed", "realloc_static"};
#define NKINDS (sizeof kinds / sizeof kinds[0])

/* "hostmem: free(0x...)" for the pointer the child said it passes ("ptr=0x..." on stdout). */
static void expected_message(const result *r, const char *kind, char *buf, size_t len)
{
    const char *ptr = strstr(r->out, "ptr=");
    EXPECT(r, kind, ptr != NULL);
    char addr[64] = {0};
    sscanf(ptr + 4, "%63[0-9a-fx]", addr);
    snprintf(buf, len, "hostmem: %s(%s): invalid pointer", strncmp(kind, "realloc", 7) ? "free" : "realloc", addr);
}

static void invalid_aborts(const char *options)
{
    for (size_t i = 0; i < NKINDS; i++) {
        const char *argv[] = {HM_DROPIN_CHILD, "invalid", kinds[i], NULL};
        result r = run(argv, options);
        char msg[256];
        expected_message(&r, kinds[i], msg, sizeof msg);
        EXPECT(&r, kinds[i], signalled(&r, SIGABRT));
        EXPECT(&r, kinds[i], strstr(r.err, strncmp(kinds[i], "realloc", 7) ? "hostmem: free(0x" : "hostmem: realloc(0x"));
        EXPECT(&r, kinds[i], strstr(r.err, "invalid pointer"));
        EXPECT(&r, kinds[i], strstr(r.err, msg));
        EXPECT(&r, kinds[i], strstr(r.err, "aborting (malloc.invalid_free=abort)"));
        EXPECT(&r, kinds[i], !strstr(r.out, "survived"));
        result_free(&r);
    }
}

static void test_invalid_abort_default(void **state)
{
    (void)state;
    invalid_aborts(NULL);
}

static void test_invalid_abort_explicit(void **state)
{
    (void)state;
    invalid_aborts("limit=1G,malloc.invalid_free=abort");
}

static void test_invalid_ignore(void **state)
{
    (void)state;
    for (size_t i = 0; i < NKINDS; i++) {
        const char *argv[] = {HM_DROPIN_CHILD, "invalid", kinds[i], NULL};
        result r = run(argv, "limit=1G,malloc.invalid_free=ignore");
        char msg[256];
        expected_message(&r, kinds[i], msg, sizeof msg);
        EXPECT(&r, kinds[i], exited(&r, 0));
        EXPECT(&r, kinds[i], strstr(r.err, msg));
        EXPECT(&r, kinds[i], strstr(r.err, "ignored (malloc.invalid_free=ignore)"));
        EXPECT(&r, kinds[i], !strstr(r.err, "CHECK FAILED"));
        EXPECT(&r, kinds[i], strstr(r.out, "survived"));
        EXPECT(&r, kinds[i], strstr(r.out, "heap intact"));
        /* exactly one message: the invalid call, nothing the heap check did afterwards */
        const char *first = strstr(r.err, "hostmem: ");
        EXPECT(&r, kinds[i], first && !strstr(first + 1, "hostmem: "));
        result_free(&r);
    }
}

/* ---- before main, after exit ------------------------------------------------------------------------- */

#define EXIT_LINES "ctor ok\nmain ok\natexit ok\ndtor1 ok\ndtor ok\n"

static void test_exit_plain(void **state)
{
    (void)state;
    const char *argv[] = {HM_DROPIN_EXIT_PROG, NULL};
    result r = run(argv, "limit=256M");
    EXPECT(&r, "exit", exited(&r, 0));
    EXPECT(&r, "exit", !strcmp(r.out, EXIT_LINES));
    EXPECT(&r, "exit", r.err[0] == 0);
    result_free(&r);
    /* without options */
    r = run(argv, NULL);
    EXPECT(&r, "exit, no options", exited(&r, 0));
    EXPECT(&r, "exit, no options", !strcmp(r.out, EXIT_LINES));
    result_free(&r);
}

static void test_exit_busy(void **state)
{
    (void)state;
    /* threads allocating while the process exits: it still exits 0, every stage done */
    const char *argv[] = {HM_DROPIN_EXIT_PROG, "busy", NULL};
    for (int i = 0; i < 10; i++) {
        result r = run(argv, "limit=256M");
        EXPECT(&r, "exit busy", exited(&r, 0));
        EXPECT(&r, "exit busy", !strcmp(r.out, EXIT_LINES));
        result_free(&r);
    }
}

static void test_exit_report(void **state)
{
    (void)state;
    const char *argv[] = {HM_DROPIN_EXIT_PROG, NULL};
    /* stats=on: the report on stderr, after the program's destructors */
    result r = run(argv, "limit=256M,stats=on");
    EXPECT(&r, "stats=on", exited(&r, 0));
    EXPECT(&r, "stats=on", !strcmp(r.out, EXIT_LINES));
    EXPECT(&r, "stats=on", strstr(r.err, "hostmem report"));
    EXPECT(&r, "stats=on", strstr(r.err, "dropin_exit_prog"));
    EXPECT(&r, "stats=on", strstr(r.err, "heap malloc"));
    result_free(&r);
    /* report=FILE (text) */
    char path[512], opts[700];
    snprintf(path, sizeof path, "%s/dropin_exit_report.txt", HM_DROPIN_TMP);
    unlink(path);
    snprintf(opts, sizeof opts, "limit=256M,report=%s", path);
    r = run(argv, opts);
    EXPECT(&r, "report=FILE", exited(&r, 0));
    char *text = read_file(path);
    EXPECT(&r, "report=FILE", text != NULL);
    EXPECT(&r, "report=FILE", strstr(text, "hostmem report"));
    EXPECT(&r, "report=FILE", !strstr(r.err, "hostmem report")); /* (to the file, not stderr) */
    free(text);
    unlink(path);
    result_free(&r);
}

/* ---- the budget ---------------------------------------------------------------------------------------- */

static void test_cap(void **state)
{
    (void)state;
    const char *argv[] = {HM_DROPIN_CHILD, "cap", NULL};
    result r = run(argv, "limit=32M");
    EXPECT(&r, "cap", exited(&r, 0));
    EXPECT(&r, "cap", strstr(r.out, "cap ok"));
    result_free(&r);
}

static void test_cap_small_then_large(void **state)
{
    (void)state;
    const char *argv[] = {HM_DROPIN_CHILD, "cap_small", NULL};
    result r = run(argv, "limit=32M");
    EXPECT(&r, "cap_small", exited(&r, 0));
    EXPECT(&r, "cap_small", strstr(r.out, "cap_small ok"));
    result_free(&r);
}

/* The number after "key": in the JSON object that follows `within` in text; -1 if none. */
static long long json_number(const char *text, const char *within, const char *key)
{
    const char *at = strstr(text, within);
    if (!at) return -1;
    const char *end = strchr(at, '}');
    const char *k = strstr(at, key);
    if (!k || (end && k > end)) return -1;
    return strtoll(k + strlen(key), NULL, 10);
}

static void test_cap_report(void **state)
{
    (void)state;
    char path[512], opts[700];
    snprintf(path, sizeof path, "%s/dropin_cap_report.json", HM_DROPIN_TMP);
    unlink(path);
    snprintf(opts, sizeof opts, "limit=32M,report=%s,report.format=json", path);
    const char *argv[] = {HM_DROPIN_CHILD, "cap", NULL};
    result r = run(argv, opts);
    EXPECT(&r, "cap with a JSON report", exited(&r, 0));
    char *json = read_file(path);
    EXPECT(&r, "the JSON report exists", json != NULL);
    EXPECT(&r, "JSON", json[0] == '{');
    EXPECT(&r, "JSON", strstr(json, "\"hostmem_report\":1"));
    EXPECT(&r, "JSON", strstr(json, "\"limit\":33554432"));
    long long refused = json_number(json, "\"level\":\"process\"", "\"refused\":");
    long long granted = json_number(json, "\"level\":\"process\"", "\"granted\":");
    if (refused <= 0 || granted <= 0) fprintf(stderr, "report: %s\n", json);
    assert_true(refused > 0);
    assert_true(granted > 0);
    /* nothing asked at the other levels */
    assert_int_equal(json_number(json, "\"level\":\"task\"", "\"refused\":"), 0);
    free(json);
    unlink(path);
    result_free(&r);
}

static void test_levels(void **state)
{
    (void)state;
    const char *argv[] = {HM_DROPIN_CHILD, "level", NULL};
    result r = run(argv, "limit=32M,reserve.process=8M");
    EXPECT(&r, "level", exited(&r, 0));
    EXPECT(&r, "level", strstr(r.out, "level ok"));
    result_free(&r);
    /* malloc.level=task: the main thread's requests are task requests */
    const char *argv2[] = {HM_DROPIN_CHILD, "malloc_level", NULL};
    r = run(argv2, "limit=32M,reserve.process=8M,malloc.level=task");
    EXPECT(&r, "malloc.level=task", exited(&r, 0));
    EXPECT(&r, "malloc.level=task", strstr(r.out, "malloc_level ok"));
    result_free(&r);
}

static void test_unwind(void **state)
{
    (void)state;
    const char *argv[] = {HM_DROPIN_CHILD, "unwind", NULL};
    result r = run(argv, "limit=32M,malloc.unwind_time=50ms");
    EXPECT(&r, "unwind", exited(&r, 0));
    EXPECT(&r, "unwind", strstr(r.out, "unwind ok"));
    result_free(&r);
}

static void test_bad_options(void **state)
{
    (void)state;
    /* options the drop-in cannot start with: it says why and ends the process with status 2 */
    const char *bad[] = {"limit=lots", "malloc.invalid_free=maybe", "malloc.level=urgent", "nosuchkey=1"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        const char *argv[] = {HM_DROPIN_EXIT_PROG, NULL};
        result r = run(argv, bad[i]);
        EXPECT(&r, bad[i], exited(&r, 2));
        EXPECT(&r, bad[i], strstr(r.err, "hostmem: the drop-in malloc cannot start"));
        result_free(&r);
    }
}

int main(int argc, char **argv)
{
    const struct CMUnitTest invalid[] = {
        cmocka_unit_test(test_invalid_abort_default),
        cmocka_unit_test(test_invalid_abort_explicit),
        cmocka_unit_test(test_invalid_ignore),
    };
    const struct CMUnitTest exit_tests[] = {
        cmocka_unit_test(test_exit_plain),
        cmocka_unit_test(test_exit_busy),
        cmocka_unit_test(test_exit_report),
    };
    const struct CMUnitTest cap[] = {
        cmocka_unit_test(test_cap),
        cmocka_unit_test(test_cap_report),
        cmocka_unit_test(test_cap_small_then_large),
        cmocka_unit_test(test_levels),
        cmocka_unit_test(test_unwind),
        cmocka_unit_test(test_bad_options),
    };
    const char *group = argc > 1 ? argv[1] : "";
    if (!strcmp(group, "invalid")) return cmocka_run_group_tests_name("dropin_invalid", invalid, NULL, NULL);
    if (!strcmp(group, "exit")) return cmocka_run_group_tests_name("dropin_exit", exit_tests, NULL, NULL);
    if (!strcmp(group, "cap")) return cmocka_run_group_tests_name("dropin_cap", cap, NULL, NULL);
    fprintf(stderr, "usage: dropin_driver invalid | exit | cap\n");
    return 2;
}
