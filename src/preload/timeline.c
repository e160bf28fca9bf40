/* timeline.c — the charge over a program's run, for `hostmem run --plot` (tools/plot.c).
 *
 * Only in the process `hostmem run` started, and only when it asks (HOSTMEM_RUN_PLOT=1): a sampler
 * thread — the one thread the drop-in starts, for the feature that needs it — reads the manager's
 * charge, its refusals by level and its memory state every `period` microseconds (1 ms at first) into
 * a buffer mapped directly (no malloc). When the buffer is full, neighbouring samples are merged two
 * into one (the larger charge kept, so peaks stay) and the period doubles: a short program is seen
 * at a millisecond, a long one at no more than HM_TIMELINE_MAX samples. At exit the samples go to
 * $HOSTMEM_RUN_DIR/timeline as text: a header line "limit L reserve_appdomain Ra reserve_process Rp
 * unwind U", then "t_us charge refused_task refused_appdomain refused_process state" per sample. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../manager/manager.h"
#include "../os/os.h"
#include "../os/sys.h"
#include "dropin.h"

#define HM_TIMELINE_MAX 8192

typedef struct sample {
    uint64_t t_us, charge, refused[3];
    int state;
} sample;

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static sample *buf;
static size_t n;
static uint64_t period_us = 1000, start_ns;
static bool running;

static sample take(void)
{
    hm_manager *m = hm_dropin_state.m;
    sample s;
    s.t_us = (hm_os_now_ns() - start_ns) / 1000;
    s.charge = atomic_load_explicit(&m->acct.charge, memory_order_relaxed);
    for (int l = 0; l < 3; l++) s.refused[l] = atomic_load_explicit(&m->acct.refused[l], memory_order_relaxed);
    s.state = atomic_load_explicit(&m->notify.state, memory_order_relaxed);
    return s;
}

/* lock held */
static void add(sample s)
{
    if (n == HM_TIMELINE_MAX) {
        for (size_t i = 0; i < n / 2; i++) {
            sample a = buf[2 * i], b = buf[2 * i + 1];
            buf[i] = b; /* the later one's time, counts and state; the larger charge */
            if (a.charge > b.charge) buf[i].charge = a.charge;
        }
        n /= 2;
        period_us *= 2;
    }
    buf[n++] = s;
}

static void *sampler(void *arg)
{
    (void)arg;
    for (;;) {
        pthread_mutex_lock(&lock);
        uint64_t p = period_us;
        add(take());
        pthread_mutex_unlock(&lock);
        struct timespec ts = {(time_t)(p / 1000000), (long)(p % 1000000) * 1000};
        nanosleep(&ts, NULL);
    }
    return NULL;
}

void hm_dropin_timeline_start(void)
{
    const char *want = secure_getenv("HOSTMEM_RUN_PLOT"), *run = secure_getenv("HOSTMEM_RUN_PID");
    if (!want || strcmp(want, "1") || !run || atoi(run) != (int)getpid() || !hm_dropin_state.m) return;
    void *b = hm_sys_mmap(NULL, HM_TIMELINE_MAX * sizeof(sample), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (b == MAP_FAILED) return;
    buf = b;
    start_ns = hm_os_now_ns();
    pthread_attr_t a;
    pthread_attr_init(&a);
    pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
    pthread_attr_setstacksize(&a, 64 << 10);
    pthread_t t;
    hm_dropin_sites_quiet(true); /* (its stack and TLS are the drop-in's, not the program's) */
    running = pthread_create(&t, &a, sampler, NULL) == 0;
    hm_dropin_sites_quiet(false);
    pthread_attr_destroy(&a);
}

void hm_dropin_timeline_write(const char *dir)
{
    if (!running) return;
    char path[512], line[160];
    snprintf(path, sizeof path, "%s/timeline", dir);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) return;
    pthread_mutex_lock(&lock);
    add(take());
    const hm_options *o = &hm_dropin_state.m->opts;
    int k = snprintf(line, sizeof line, "limit %llu reserve_appdomain %llu reserve_process %llu unwind %llu\n",
                     (unsigned long long)o->limit, (unsigned long long)o->reserve_appdomain,
                     (unsigned long long)o->reserve_process, (unsigned long long)hm_dropin_state.m->acct.unwind);
    bool ok = k > 0 && write(fd, line, (size_t)k) == k;
    for (size_t i = 0; ok && i < n; i++) {
        k = snprintf(line, sizeof line, "%llu %llu %llu %llu %llu %d\n", (unsigned long long)buf[i].t_us,
                     (unsigned long long)buf[i].charge, (unsigned long long)buf[i].refused[0],
                     (unsigned long long)buf[i].refused[1], (unsigned long long)buf[i].refused[2], buf[i].state);
        ok = k > 0 && write(fd, line, (size_t)k) == k;
    }
    pthread_mutex_unlock(&lock); /* (held to the end: the sampler stops here, the process is exiting) */
    close(fd);
}
