/* host_main.c — the driver of the `hostmem host RUNTIME` helper executables (host_main.h): arguments,
 * the tenant, the charge sampler for --plot, the report at the end.
 *
 * The sampler is a thread that reads the tenant manager's charge, refusals and state every `period`
 * (1 ms at first) into a fixed buffer; when the buffer is full, neighbouring samples merge two into
 * one (the larger charge kept, so peaks stay) and the period doubles. The samples go through the
 * timeline file format of `hostmem run --plot` (src/preload/timeline.c) to tools/plot.c. */
#define _GNU_SOURCE
#include "host_main.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/stat.h>
#include <unistd.h>

#include "plot.h"

#define SAMPLES 4096

typedef struct sample {
    uint64_t t_us, charge, refused[3];
    int state;
} sample;

typedef struct sampler {
    hm_manager *m;
    pthread_t thread;
    _Atomic bool stop;
    sample s[SAMPLES];
    size_t n;
    uint64_t period_us, t0;
} sampler;

static uint64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static void take(sampler *sp)
{
    hm_manager_stats ms;
    if (HM_FAILED(hm_manager_get_stats(sp->m, &ms))) return;
    if (sp->n == SAMPLES) { /* merge pairs: half the samples, twice the period */
        for (size_t i = 0; i < SAMPLES / 2; i++) {
            sample a = sp->s[2 * i], b = sp->s[2 * i + 1];
            sp->s[i] = b;
            if (a.charge > b.charge) sp->s[i].charge = a.charge;
            if (a.state < b.state) sp->s[i].state = a.state; /* (Low, the lowest value, stays visible) */
        }
        sp->n = SAMPLES / 2;
        sp->period_us *= 2;
    }
    sp->s[sp->n++] = (sample){now_us() - sp->t0, ms.charge, {ms.refused[0], ms.refused[1], ms.refused[2]},
                              (int)ms.memory_state};
}

static void *sample_loop(void *arg)
{
    sampler *sp = arg;
    while (!atomic_load_explicit(&sp->stop, memory_order_acquire)) {
        take(sp);
        struct timespec d = {(time_t)(sp->period_us / 1000000u), (long)(sp->period_us % 1000000u) * 1000};
        nanosleep(&d, NULL);
    }
    take(sp); /* the end state */
    return NULL;
}

static int write_plot(sampler *sp, const char *svg, const char *title)
{
    hm_manager_stats ms;
    if (HM_FAILED(hm_manager_get_stats(sp->m, &ms))) return -1;
    char path[] = "/tmp/hostmem-host-timeline-XXXXXX";
    int fd = mkstemp(path);
    if (fd < 0) return -1;
    FILE *f = fdopen(fd, "w");
    if (!f) {
        close(fd);
        unlink(path);
        return -1;
    }
    fprintf(f, "limit %" PRIu64 " reserve_appdomain %" PRIu64 " reserve_process %" PRIu64 " unwind 0\n", ms.limit,
            ms.reserve_appdomain, ms.reserve_process);
    for (size_t i = 0; i < sp->n; i++)
        fprintf(f, "%" PRIu64 " %" PRIu64 " %" PRIu64 " %" PRIu64 " %" PRIu64 " %d\n", sp->s[i].t_us, sp->s[i].charge,
                sp->s[i].refused[0], sp->s[i].refused[1], sp->s[i].refused[2], sp->s[i].state);
    int rc = fclose(f) == 0 ? hm_plot_write(path, svg, title) : -1;
    unlink(path);
    return rc;
}

/* A script may end the process itself (Lua's os.exit): the report is still owed, from atexit. */
static struct {
    hm_tenant *t; /* set while the script runs */
    FILE *out;
    hm_report_format format;
} g_running;

/* The tenant's report, once: at the end of hm_host_main, or at exit when the script ended the process
 * itself (Lua's os.exit, say). */
static void report_once(void)
{
    char buf[2048];
    if (!g_running.t) return;
    if (hm_tenant_report(g_running.t, g_running.format, buf, sizeof buf)) fputs(buf, g_running.out);
    fflush(g_running.out);
    g_running.t = NULL;
}

static void usage(const hm_host_runtime *rt, FILE *f)
{
    fprintf(f,
            "usage: hostmem host %s [-o OPTIONS] [--level task|appdomain|process] [--report FILE]\n"
            "         [--report-format text|json] [--plot FILE.svg] %s\n"
            "  runs the script on a %s runtime whose every allocation comes from a hostmem tenant under OPTIONS\n"
            "  (limit, reserve.appdomain, reserve.process, notify.high, ...: as in HOSTMEM_OPTIONS); the runtime's\n"
            "  requests are made at --level (default task), its emergency paths at process level; at the end the\n"
            "  tenant's report goes to stderr (or FILE). Status: 0 the script succeeded, 1 it failed, 2 bad input.\n",
            rt->name, rt->usage, rt->name);
}

static char *join(char *a, const char *b)
{
    size_t la = a ? strlen(a) : 0, lb = strlen(b);
    char *s = malloc(la + lb + 2);
    if (!s) return NULL;
    if (a) memcpy(s, a, la), s[la++] = ',';
    memcpy(s + la, b, lb + 1);
    free(a);
    return s;
}

int hm_host_main(const hm_host_runtime *rt, void *state, int argc, char **argv)
{
    char *options = NULL;
    const char *report = NULL, *format = "text", *plot = NULL;
    hm_level level = HM_LEVEL_TASK;
    int i = 1;
    for (; i < argc; i++) {
        const char *a = argv[i];
        bool has_value = i + 1 < argc;
        if (!strcmp(a, "--")) {
            i++;
            break;
        }
        if ((!strcmp(a, "-o") || !strcmp(a, "--options")) && has_value) {
            if (!(options = join(options, argv[++i]))) return 2;
        } else if (!strcmp(a, "--report") && has_value) {
            report = argv[++i];
        } else if (!strcmp(a, "--report-format") && has_value) {
            format = argv[++i];
            if (strcmp(format, "text") && strcmp(format, "json")) {
                fprintf(stderr, "hostmem host %s: --report-format wants text or json, not '%s'\n", rt->name, format);
                return 2;
            }
        } else if (!strcmp(a, "--plot") && has_value) {
            plot = argv[++i];
        } else if (!strcmp(a, "--level") && has_value) {
            const char *v = argv[++i];
            if (!strcmp(v, "task")) level = HM_LEVEL_TASK;
            else if (!strcmp(v, "appdomain")) level = HM_LEVEL_APPDOMAIN;
            else if (!strcmp(v, "process")) level = HM_LEVEL_PROCESS;
            else {
                fprintf(stderr, "hostmem host %s: --level wants task, appdomain or process, not '%s'\n", rt->name, v);
                return 2;
            }
        } else if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(rt, stdout);
            return 0;
        } else if (a[0] == '-' && a[1]) {
            int took = rt->option ? rt->option(argc, argv, i, state) : 0;
            if (took < 0) return 2;
            if (took == 0) {
                fprintf(stderr, "hostmem host %s: unknown argument '%s'%s\n", rt->name, a,
                        has_value ? "" : " (or its value is missing)");
                usage(rt, stderr);
                return 2;
            }
            i += took - 1;
        } else {
            break; /* the script */
        }
    }
    if (i >= argc) {
        fprintf(stderr, "hostmem host %s: no script to run\n", rt->name);
        usage(rt, stderr);
        return 2;
    }
    /* a script that cannot be read is bad input to the command (2), for every runtime alike */
    struct stat sb;
    int fd = open(argv[i], O_RDONLY | O_CLOEXEC);
    if (fd < 0 || fstat(fd, &sb) || S_ISDIR(sb.st_mode)) {
        fprintf(stderr, "hostmem host %s: cannot read the script %s: %s\n", rt->name, argv[i],
                fd < 0 ? strerror(errno) : "it is a directory");
        if (fd >= 0) close(fd);
        free(options);
        return 2;
    }
    close(fd);
    FILE *out = stderr;
    if (report && !(out = fopen(report, "w"))) {
        fprintf(stderr, "hostmem host %s: --report: cannot write %s: %s\n", rt->name, report, strerror(errno));
        free(options);
        return 2;
    }
    hm_tenant_config cfg = {.name = rt->name, .options = options, .level = level, .emergency_level = HM_LEVEL_PROCESS};
    hm_tenant *t;
    hm_status st = hm_tenant_create(&cfg, &t);
    free(options);
    if (HM_FAILED(st)) {
        fprintf(stderr, "hostmem host %s: %s\n", rt->name, *hm_last_detail() ? hm_last_detail() : hm_status_message(st));
        if (out != stderr) fclose(out);
        return 2;
    }
    sampler *sp = NULL;
    if (plot && (sp = calloc(1, sizeof *sp))) {
        sp->m = hm_tenant_manager(t);
        sp->period_us = 1000;
        sp->t0 = now_us();
        if (pthread_create(&sp->thread, NULL, sample_loop, sp)) free(sp), sp = NULL;
    }
    if (plot && !sp) fprintf(stderr, "hostmem host %s: --plot: cannot start the sampler\n", rt->name);
    g_running.out = out;
    g_running.format = strcmp(format, "json") ? HM_REPORT_TEXT : HM_REPORT_JSON;
    g_running.t = t;
    atexit(report_once);
    int rc = rt->run(t, argv[i], argc - i, argv + i, state);
    if (sp) {
        atomic_store_explicit(&sp->stop, true, memory_order_release);
        pthread_join(sp->thread, NULL);
        char title[256];
        snprintf(title, sizeof title, "host %s %s", rt->name, argv[i]);
        if (write_plot(sp, plot, title)) fprintf(stderr, "hostmem host %s: --plot: cannot write %s\n", rt->name, plot);
        free(sp);
    }
    report_once();
    if (out != stderr && fclose(out)) fprintf(stderr, "hostmem host %s: --report: cannot write %s\n", rt->name, report);
    if (!rt->keep_tenant && HM_FAILED(st = hm_tenant_destroy(t)))
        fprintf(stderr, "hostmem host %s: %s\n", rt->name, hm_status_message(st));
    return rc;
}
