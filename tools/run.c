/* run.c — `hostmem run`: a program on the drop-in malloc (libhostmem-malloc.so), under options.
 *
 *   hostmem run [-o OPTIONS] [--report FILE] [--report-format text|json] [--plot FILE.svg]
 *               [--sites[=DEPTH]] -- PROGRAM [ARGS...]
 *
 * The options are checked here first (a bad one is a message naming it and status 2, before the
 * program starts), then handed to the program in HOSTMEM_OPTIONS after any it already had, with the
 * library prepended to LD_PRELOAD (in the program's environment only: the tools this command runs
 * afterwards, addr2line, run on their own malloc). The program's own exit status comes back: 128+N
 * for signal N, 127 when it cannot be found, 126 when it cannot be run.
 *
 * HOSTMEM_RUN_PID names the program's process and HOSTMEM_RUN_DIR a private directory: at exit the
 * program writes its report, its sites and its timeline there (src/preload/report.c), and this
 * command finishes them: the sites resolved to functions (sites.c), the plot drawn (plot.c), the
 * report printed on stderr or written to FILE. The processes the program starts write FILE.PID
 * themselves (nothing without --report). A program that dies by a signal leaves no report. */
#define _GNU_SOURCE
#include "run.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <hostmem/hostmem.h>

#include "locate.h"
#include "plot.h"
#include "sites.h"

#ifndef HM_LIBDIR
#define HM_LIBDIR "/usr/local/lib"
#endif
#define LIBNAME "libhostmem-malloc.so"

static void usage(FILE *f)
{
    fprintf(f, "usage: hostmem run [-o OPTIONS] [--report FILE] [--report-format text|json] [--plot FILE.svg]\n"
               "                   [--sites[=DEPTH]] -- PROGRAM [ARGS...]\n"
               "  runs PROGRAM with hostmem as its malloc, under OPTIONS (key=value,... as in HOSTMEM_OPTIONS:\n"
               "  limit, malloc.level, malloc.invalid_free, malloc.unwind, ...), and prints a report at its exit\n"
               "  (stderr, or FILE); --plot draws its charge over time; --sites lists its live blocks at exit\n"
               "  by allocating call stack (DEPTH frames, 8 by default)\n");
}

/* The drop-in library: $HOSTMEM_MALLOC_LIB, next to this program (a build tree), ../lib* beside it
 * (an installation), or the configured library directory. */
static bool find_library(char *out, size_t cap)
{
    const char *env = getenv("HOSTMEM_MALLOC_LIB");
    if (env && *env) {
        snprintf(out, cap, "%s", env);
        return access(out, R_OK) == 0;
    }
    static const char *const rel[] = {"", "/../lib", "/../lib64", "/../lib/x86_64-linux-gnu", "/../lib/aarch64-linux-gnu"};
    return hm_locate_beside(LIBNAME, rel, sizeof rel / sizeof rel[0], HM_LIBDIR, R_OK, out, cap);
}

/* What join and strdup made, freed when the command returns. */
static char *owned[16];
static size_t nowned;

static char *own(char *s)
{
    if (s && nowned < sizeof owned / sizeof owned[0]) owned[nowned++] = s;
    return s;
}

/* "a" + "," + "b", either possibly empty. */
static char *join(const char *a, const char *b, char sep)
{
    size_t la = a ? strlen(a) : 0, lb = b ? strlen(b) : 0;
    char *s = own(malloc(la + lb + 2));
    if (!s) return NULL;
    size_t n = 0;
    if (la) memcpy(s, a, la), n = la;
    if (la && lb) s[n++] = sep;
    if (lb) memcpy(s + n, b, lb), n += lb;
    s[n] = 0;
    return s;
}

static void remove_dir(const char *dir)
{
    static const char *const files[] = {"report", "sites", "timeline"};
    char path[PATH_MAX + 16];
    for (size_t k = 0; k < sizeof files / sizeof files[0]; k++) {
        snprintf(path, sizeof path, "%s/%s", dir, files[k]);
        unlink(path);
    }
    rmdir(dir);
}

/* The program's report, finished: its sites resolved and added, written to FILE or stderr; the plot. */
static void finish(const char *dir, const char *file, bool json, unsigned sites, const char *plot, const char *prog)
{
    char path[PATH_MAX + 16];
    snprintf(path, sizeof path, "%s/report", dir);
    FILE *in = fopen(path, "r");
    if (!in) return; /* (no report: the program died by a signal, or _exit'ed before) */
    char *text = NULL;
    size_t cap = 0;
    ssize_t len = getdelim(&text, &cap, 0, in);
    fclose(in);
    if (len <= 0) {
        free(text);
        return;
    }
    FILE *out = file ? fopen(file, "w") : stderr;
    if (!out) {
        fprintf(stderr, "hostmem run: cannot write the report to %s: %s\n", file, strerror(errno));
        out = stderr;
    }
    snprintf(path, sizeof path, "%s/sites", dir);
    if (json) {
        while (len > 0 && (text[len - 1] == '\n' || text[len - 1] == '}')) len--; /* (reopened: sites go in) */
        fwrite(text, 1, (size_t)len, out);
        if (sites) {
            fprintf(out, ",\"sites\":");
            if (hm_sites_print(path, out, 1, 50) != 0) fprintf(out, "[]");
        }
        fprintf(out, "}\n");
    } else {
        fwrite(text, 1, (size_t)len, out);
        if (sites) {
            fprintf(out, "  live blocks at exit by allocating stack (top 20 by bytes):\n");
            if (hm_sites_print(path, out, 0, 20) != 0) fprintf(out, "    (none recorded)\n");
        }
    }
    if (out != stderr) fclose(out);
    free(text);
    if (plot) {
        snprintf(path, sizeof path, "%s/timeline", dir);
        char title[PATH_MAX + 8];
        snprintf(title, sizeof title, "run: %s", prog);
        if (hm_plot_write(path, plot, title) != 0) fprintf(stderr, "hostmem run: --plot: cannot write %s\n", plot);
    }
}

static int run(int argc, char **argv);

int hm_run(int argc, char **argv)
{
    int status = run(argc, argv);
    while (nowned) free(owned[--nowned]);
    return status;
}

static int run(int argc, char **argv)
{
    const char *options = NULL, *report = NULL, *format = NULL, *plot = NULL;
    unsigned sites = 0;
    int i = 2;
    for (; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--")) {
            i++;
            break;
        }
        if ((!strcmp(a, "-o") || !strcmp(a, "--options")) && i + 1 < argc) {
            char *o = join(options, argv[++i], ',');
            if (!o) return 2;
            options = o;
        } else if (!strcmp(a, "--report") && i + 1 < argc) {
            report = argv[++i];
        } else if (!strcmp(a, "--report-format") && i + 1 < argc) {
            format = argv[++i];
            if (strcmp(format, "text") && strcmp(format, "json")) {
                fprintf(stderr, "hostmem run: --report-format wants text or json, not '%s'\n", format);
                return 2;
            }
        } else if (!strcmp(a, "--plot") && i + 1 < argc) {
            plot = argv[++i];
        } else if (!strcmp(a, "--sites") || !strncmp(a, "--sites=", 8)) {
            sites = 8;
            if (a[7] == '=') {
                char *end;
                unsigned long d = strtoul(a + 8, &end, 10);
                if (!a[8] || *end || d < 1 || d > 32) {
                    fprintf(stderr, "hostmem run: --sites=DEPTH wants a number of frames from 1 to 32, not '%s'\n", a + 8);
                    return 2;
                }
                sites = (unsigned)d;
            }
        } else if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        } else if (a[0] == '-') {
            fprintf(stderr, "hostmem run: unknown argument '%s'\n", a);
            usage(stderr);
            return 2;
        } else {
            break; /* the program (no "--") */
        }
    }
    if (i >= argc) {
        fprintf(stderr, "hostmem run: no program to run\n");
        usage(stderr);
        return 2;
    }
    char lib[PATH_MAX];
    if (!find_library(lib, sizeof lib)) {
        fprintf(stderr, "hostmem run: cannot find " LIBNAME " (looked beside %s and in " HM_LIBDIR
                        "; HOSTMEM_MALLOC_LIB names it)\n", "this program");
        return 2;
    }

    /* What the program gets: its HOSTMEM_OPTIONS, then ours, then the report's settings. */
    char extra[PATH_MAX + 64] = "stats=on", report_path[PATH_MAX] = "";
    if (report) {
        const char *given = report;
        char abs[PATH_MAX];
        if (report[0] != '/') {
            char cwd[PATH_MAX];
            if (!getcwd(cwd, sizeof cwd)) {
                perror("hostmem run: getcwd");
                return 2;
            }
            int l = snprintf(abs, sizeof abs, "%s/%s", cwd, report);
            if (l < 0 || (size_t)l >= sizeof abs) abs[0] = 0, report = NULL;
        } else {
            snprintf(abs, sizeof abs, "%s", report);
        }
        if (!report || strlen(abs) >= 256 || strchr(abs, ',')) {
            fprintf(stderr, "hostmem run: --report: the path must be shorter than 256 bytes, without commas: %s\n", given);
            return 2;
        }
        snprintf(extra, sizeof extra, "report=%s", abs);
        snprintf(report_path, sizeof report_path, "%s", abs);
    }
    if (format) {
        size_t l = strlen(extra);
        snprintf(extra + l, sizeof extra - l, ",report.format=%s", format);
    }
    if (sites) {
        size_t l = strlen(extra);
        snprintf(extra + l, sizeof extra - l, ",malloc.sites=%u", sites);
    }
    const char *old_options = getenv("HOSTMEM_OPTIONS");
    char *saved_options = old_options ? own(strdup(old_options)) : NULL;
    char *mine = join(options, extra, ',');
    char *all = mine ? join(old_options, mine, ',') : NULL;
    char *preload = join(lib, getenv("LD_PRELOAD"), ':');
    if (!all || !preload) return 2;

    /* Checked as the program's process will read them: a manager made from them (and dropped). */
    hm_manager *check;
    if (setenv("HOSTMEM_OPTIONS", all, 1) != 0) return 2;
    hm_status st = hm_manager_create(NULL, &check);
    if (saved_options) setenv("HOSTMEM_OPTIONS", saved_options, 1);
    else unsetenv("HOSTMEM_OPTIONS");
    if (HM_FAILED(st)) {
        fprintf(stderr, "hostmem run: bad options: %s\n", hm_last_detail());
        return 2;
    }
    (void)hm_manager_destroy(check);
    const char *tmp = getenv("TMPDIR");
    char dir[PATH_MAX];
    snprintf(dir, sizeof dir, "%s/hostmem-run.XXXXXX", tmp && tmp[0] == '/' && strlen(tmp) < 300 ? tmp : "/tmp");
    if (!mkdtemp(dir)) {
        fprintf(stderr, "hostmem run: cannot make a directory for the report in %s: %s\n", tmp ? tmp : "/tmp", strerror(errno));
        return 2;
    }
    fflush(NULL);

    int pipefd[2]; /* the child tells an exec failure through it (close-on-exec: silence is success) */
    if (pipe2(pipefd, O_CLOEXEC) != 0) {
        perror("hostmem run: pipe");
        return 2;
    }
    pid_t pid = fork();
    if (pid < 0) {
        perror("hostmem run: fork");
        return 2;
    }
    if (pid == 0) {
        close(pipefd[0]);
        char me[32];
        snprintf(me, sizeof me, "%d", (int)getpid());
        int e = 0;
        if (setenv("HOSTMEM_OPTIONS", all, 1) || setenv("LD_PRELOAD", preload, 1) || setenv("HOSTMEM_RUN_PID", me, 1) ||
            setenv("HOSTMEM_RUN_DIR", dir, 1) || (plot && setenv("HOSTMEM_RUN_PLOT", "1", 1)))
            e = errno;
        if (!e) {
            execvp(argv[i], argv + i);
            e = errno;
        }
        ssize_t w = write(pipefd[1], &e, sizeof e);
        (void)w;
        _exit(127);
    }
    close(pipefd[1]);
    /* the terminal's ^C and ^\ are the program's to act on; its status tells what happened */
    signal(SIGINT, SIG_IGN);
    signal(SIGQUIT, SIG_IGN);
    int e = 0;
    ssize_t r;
    do r = read(pipefd[0], &e, sizeof e);
    while (r < 0 && errno == EINTR);
    close(pipefd[0]);
    int status;
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR) {
            perror("hostmem run: waitpid");
            return 2;
        }
    if (r == (ssize_t)sizeof e) {
        fprintf(stderr, "hostmem run: %s: %s\n", argv[i], e == ENOENT ? "command not found" : strerror(e));
        remove_dir(dir);
        return e == ENOENT ? 127 : 126;
    }
    finish(dir, report ? report_path : NULL, format && !strcmp(format, "json"), sites, plot, argv[i]);
    remove_dir(dir);
    if (WIFEXITED(status)) return WEXITSTATUS(status);
    if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
    return 2;
}
