/* report.c — where the drop-in malloc writes the process's report (hm_report): at exit when the
 * options ask for it (stats=on, or report=FILE), and for malloc_stats.
 *
 * Written with write(2) from a static buffer: no stdio, no allocation (DROPIN-NOTES 10). With
 * report=FILE, the process `hostmem run` started (HOSTMEM_RUN_PID) writes FILE and every other process
 * that inherited the options (its children, forks) writes FILE.PID, so none overwrites another's
 * (unless FILE is no regular file, /dev/null say: then they write nothing).
 * Without a file the report goes to stderr, from the process `hostmem run` started only (or from every
 * process when there is no `hostmem run`: stats=on in HOSTMEM_OPTIONS). */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../core/report.h"
#include "dropin.h"

static char text[1 << 16];

static void write_all(int fd, const char *s, size_t n)
{
    while (n) {
        ssize_t w = write(fd, s, n);
        if (w <= 0) return;
        s += w;
        n -= (size_t)w;
    }
}

void hm_dropin_report_to(int fd, bool json)
{
    size_t need = hm_report(json ? HM_REPORT_JSON : HM_REPORT_TEXT, text, sizeof text);
    size_t n = need < sizeof text ? need : sizeof text - 1;
    write_all(fd, text, n);
}

void hm_dropin_report_at_exit(void)
{
    const hm_options *o = &hm_dropin_state.opts;
    if (!hm_dropin_state.m || (!o->stats && !o->report[0])) return;
    const char *run = secure_getenv("HOSTMEM_RUN_PID"), *dir = secure_getenv("HOSTMEM_RUN_DIR");
    bool first = !run || atoi(run) == (int)getpid();
    if (run && first && dir && dir[0] == '/' && strlen(dir) < 400) { /* `hostmem run` finishes the report */
        char path[512];
        snprintf(path, sizeof path, "%s/report", dir);
        int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        if (fd >= 0) {
            hm_dropin_report_to(fd, o->report_json);
            close(fd);
        }
        hm_dropin_sites_write(dir);
        hm_dropin_timeline_write(dir);
        return;
    }
    if (!o->report[0]) {
        if (first) hm_dropin_report_to(2, o->report_json);
        return;
    }
    char path[sizeof o->report + 16];
    struct stat st;
    if (!first && stat(o->report, &st) == 0 && !S_ISREG(st.st_mode)) return; /* (/dev/null.PID: no) */
    if (first) snprintf(path, sizeof path, "%s", o->report);
    else snprintf(path, sizeof path, "%s.%d", o->report, (int)getpid());
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        char msg[sizeof path + 64];
        int n = snprintf(msg, sizeof msg, "hostmem: cannot write the report to %s\n", path);
        if (n > 0) write_all(2, msg, (size_t)n < sizeof msg ? (size_t)n : sizeof msg - 1);
        return;
    }
    hm_dropin_report_to(fd, o->report_json);
    close(fd);
}
