/* simulate.c — `hostmem simulate`: several workloads share one manager under a tight limit, each at
 * its own critical level, and the run ends with a report and an SVG timeline of the charge by level
 * against the limit and the admission thresholds.
 *
 *   gc      appdomain-critical: reserves a big heap, commits it in bursts as it allocates, collects
 *           (decommits most of it) when its heap is full, and at once when the manager says Low;
 *   steady  process-critical: a working set that changes a little all the time;
 *   bursty  task-critical: every so often grabs a lot for a short while, then lets it go. */
#include "simulate.h"

#include <hostmem/hostmem.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define MIB ((size_t)1 << 20)
#define KIB ((size_t)1 << 10)
#define MAX_SAMPLES 4096

typedef struct workload {
    const char *name;
    hm_level level;
    _Atomic size_t held;        /* bytes this workload has committed now */
    _Atomic unsigned long granted, refused, timeouts;
} workload;

static workload wl[3] = {
    {"bursty", HM_LEVEL_TASK, 0, 0, 0, 0},
    {"gc", HM_LEVEL_APPDOMAIN, 0, 0, 0, 0},
    {"steady", HM_LEVEL_PROCESS, 0, 0, 0, 0},
};

static hm_manager *mgr;
static atomic_bool stop;
static atomic_int gc_low;               /* Low notifications not yet acted on */
static atomic_ulong low_seen, lows_answered;

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static void nap_ms(unsigned ms)
{
    struct timespec t = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&t, NULL);
}

static unsigned rnd(unsigned *seed, unsigned n) { return (unsigned)(rand_r(seed) % n); }

/* Commits size bytes at p for w; counts the outcome. */
static int commit(workload *w, void *p, size_t size)
{
    void *b;
    hm_status st = hm_virtual_alloc_level(mgr, p, size, HM_MEM_COMMIT, HM_PAGE_READWRITE, w->level, &b);
    if (st == HM_OK) {
        atomic_fetch_add(&w->granted, 1);
        atomic_fetch_add(&w->held, size);
        memset(p, 1, 64); /* touch it, as a program would */
        return 1;
    }
    if (st == HM_E_HOST_TIMEOUT) atomic_fetch_add(&w->timeouts, 1);
    atomic_fetch_add(&w->refused, 1);
    return 0;
}

static void decommit(workload *w, void *p, size_t size)
{
    if (hm_decommit(mgr, p, size) == HM_OK) atomic_fetch_sub(&w->held, size);
}

static void on_notify(hm_memory_state s, void *arg)
{
    (void)arg;
    if (s == HM_MEMORY_LOW) {
        atomic_fetch_add(&low_seen, 1);
        atomic_store(&gc_low, 1);
    }
}

/* gc: a 256 MiB heap committed in 2 MiB segments; a collection keeps a quarter of the live ones. Its
 * heap is reserved with MEM_WRITE_WATCH, as a concurrent collector's is: between collections its
 * mutator writes to a few pages of live segments, and each collection asks GetWriteWatch (with reset)
 * which pages it must scan again. */
static _Atomic unsigned long gc_written, gc_rescanned, gc_scans;
static void *run_gc(void *arg)
{
    workload *w = arg;
    const size_t seg = 2 * MIB, nseg = 128;
    char *heap;
    if (hm_virtual_alloc(mgr, NULL, nseg * seg, HM_MEM_RESERVE | HM_MEM_WRITE_WATCH, HM_PAGE_READWRITE,
                         (void **)&heap) != HM_OK)
        return NULL;
    static void *dirty[4096];
    unsigned char live[128] = {0};
    unsigned seed = 7, used = 0, target = 14; /* a collection when 28 MiB are in use */
    while (!atomic_load(&stop)) {
        bool low = atomic_exchange(&gc_low, 0);
        if (used >= target || low) { /* collect: rescan what was written, decommit three quarters */
            uintptr_t n = sizeof dirty / sizeof dirty[0];
            uint32_t gran;
            if (hm_get_write_watch(mgr, HM_WRITE_WATCH_FLAG_RESET, heap, nseg * seg, dirty, &n, &gran) == HM_OK) {
                atomic_fetch_add(&gc_rescanned, n);
                atomic_fetch_add(&gc_scans, 1);
            }
            for (unsigned i = 0, kept = 0; i < nseg; i++)
                if (live[i] && kept++ % 4) {
                    decommit(w, heap + i * seg, seg);
                    live[i] = 0;
                    used--;
                }
            if (low) atomic_fetch_add(&lows_answered, 1);
            nap_ms(5);
            continue;
        }
        unsigned burst = 1 + rnd(&seed, 3); /* allocate: a burst of segments */
        for (unsigned b = 0; b < burst; b++) {
            unsigned i = rnd(&seed, nseg);
            while (live[i]) i = (i + 1) % nseg;
            if (!commit(w, heap + i * seg, seg)) break; /* (commit writes the segment's first bytes) */
            atomic_fetch_add(&gc_written, 1);
            live[i] = 1;
            used++;
        }
        for (unsigned k = 0; k < 16; k++) { /* the mutator writes to a few pages of live segments */
            unsigned i = rnd(&seed, nseg);
            if (!live[i]) continue;
            heap[i * seg + rnd(&seed, (unsigned)(seg / 4096)) * 4096] = 1;
            atomic_fetch_add(&gc_written, 1);
        }
        nap_ms(4);
    }
    hm_release(mgr, heap);
    atomic_store(&w->held, 0);
    return NULL;
}

/* steady: 12 MiB in 64 KiB pieces, a few of them replaced all the time. */
static void *run_steady(void *arg)
{
    workload *w = arg;
    const size_t piece = 64 * KIB, n = 192;
    char *base;
    if (hm_virtual_alloc(mgr, NULL, n * piece, HM_MEM_RESERVE, HM_PAGE_NOACCESS, (void **)&base) != HM_OK) return NULL;
    unsigned char on[192] = {0};
    unsigned seed = 11;
    for (size_t i = 0; i < n; i++) on[i] = (unsigned char)commit(w, base + i * piece, piece);
    while (!atomic_load(&stop)) {
        unsigned i = rnd(&seed, (unsigned)n);
        if (on[i]) {
            decommit(w, base + i * piece, piece);
            on[i] = 0;
        } else {
            on[i] = (unsigned char)commit(w, base + i * piece, piece);
        }
        nap_ms(1);
    }
    hm_release(mgr, base);
    atomic_store(&w->held, 0);
    return NULL;
}

/* bursty: every 150-400 ms, 16-40 MiB in 1 MiB blocks for 50-150 ms. */
static void *run_bursty(void *arg)
{
    workload *w = arg;
    unsigned seed = 13;
    void *blocks[40];
    while (!atomic_load(&stop)) {
        nap_ms(150 + rnd(&seed, 250));
        unsigned want = 16 + rnd(&seed, 25), got = 0;
        for (; got < want && !atomic_load(&stop); got++) {
            void *p;
            hm_status st = hm_virtual_alloc_level(mgr, NULL, MIB, HM_MEM_RESERVE | HM_MEM_COMMIT, HM_PAGE_READWRITE,
                                                  w->level, &p);
            if (st != HM_OK) {
                if (st == HM_E_HOST_TIMEOUT) atomic_fetch_add(&w->timeouts, 1);
                atomic_fetch_add(&w->refused, 1);
                break;
            }
            atomic_fetch_add(&w->granted, 1);
            atomic_fetch_add(&w->held, MIB);
            memset(p, 2, 64);
            blocks[got] = p;
        }
        nap_ms(50 + rnd(&seed, 100));
        for (unsigned i = 0; i < got; i++) {
            hm_release(mgr, blocks[i]);
            atomic_fetch_sub(&w->held, MIB);
        }
    }
    return NULL;
}

static hm_sim_sample samples[MAX_SAMPLES];

static const char *state_name(int s)
{
    return s == HM_MEMORY_LOW ? "Low" : s == HM_MEMORY_NEUTRAL ? "Neutral" : "High";
}

int hm_simulate(const char *options, double seconds, const char *svg_path)
{
    char opts[1024];
    snprintf(opts, sizeof opts,
             "limit=64M,reserve.appdomain=8M,reserve.process=8M,wait.task=20ms,wait.appdomain=50ms,"
             "wait.process=200ms,notify.low=50,notify.high=85%s%s",
             options && *options ? "," : "", options ? options : "");
    hm_status st = hm_manager_create(opts, &mgr);
    if (st) {
        fprintf(stderr, "hostmem simulate: %s\n  %s\n", hm_status_message(st), hm_last_detail());
        return 2;
    }
    hm_manager_stats ms;
    hm_manager_get_stats(mgr, &ms);
    printf("hostmem simulate: three workloads share one manager for %.1f s\n", seconds);
    printf("  limit %lu MiB; task requests may use %lu MiB, appdomain %lu MiB, process all of it\n",
           (unsigned long)(ms.limit / MIB), (unsigned long)((ms.limit - ms.reserve_appdomain - ms.reserve_process) / MIB),
           (unsigned long)((ms.limit - ms.reserve_process) / MIB));
    printf("  bursty (task), gc (appdomain, listens for Low and collects), steady (process)\n");
    printf("  write watch: %s mechanism (%s)\n\n", hm_write_watch_mechanism(), hm_write_watch_describe());
    hm_manager_register_notification(mgr, on_notify, NULL);

    pthread_t th[3];
    void *(*run[3])(void *) = {run_bursty, run_gc, run_steady};
    for (int i = 0; i < 3; i++) pthread_create(&th[i], NULL, run[i], &wl[i]);

    double t0 = now_s(), next_print = 0;
    bool tty = isatty(STDOUT_FILENO); /* a progress line that redraws itself, else a line a second */
    size_t n = 0;
    uint64_t peak = 0;
    while (now_s() - t0 < seconds) {
        double t = now_s() - t0;
        hm_manager_get_stats(mgr, &ms);
        if (ms.charge > peak) peak = ms.charge;
        if (n < MAX_SAMPLES) {
            hm_sim_sample *s = &samples[n++];
            s->t = (float)t;
            for (int i = 0; i < 3; i++) s->held[i] = (uint32_t)(atomic_load(&wl[i].held) / KIB);
            s->charge = (uint32_t)(ms.charge / KIB);
            s->state = (uint8_t)ms.memory_state;
        }
        if (t >= next_print) {
            printf("%s  %4.1f s  charge %5.1f / %lu MiB  task %5.1f  appdomain %5.1f  process %5.1f  memory %-7s%s",
                   tty ? "\r" : "", t, (double)ms.charge / MIB, (unsigned long)(ms.limit / MIB), (double)atomic_load(&wl[0].held) / MIB,
                   (double)atomic_load(&wl[1].held) / MIB, (double)atomic_load(&wl[2].held) / MIB,
                   state_name(ms.memory_state), tty ? "" : "\n");
            fflush(stdout);
            next_print = t + (tty ? 0.25 : 1.0);
        }
        nap_ms(10);
    }
    atomic_store(&stop, 1);
    for (int i = 0; i < 3; i++) pthread_join(th[i], NULL);
    hm_manager_get_stats(mgr, &ms);
    if (ms.peak_charge > peak) peak = ms.peak_charge;

    printf("%sreport\n", tty ? "\n\n" : "\n");
    printf("  %-10s %-10s %9s %9s %7s %9s\n", "workload", "level", "granted", "refused", "waits", "timeouts");
    static const char *lname[3] = {"task", "appdomain", "process"};
    for (int i = 0; i < 3; i++)
        printf("  %-10s %-10s %9lu %9lu %7lu %9lu\n", wl[i].name, lname[i], atomic_load(&wl[i].granted),
               atomic_load(&wl[i].refused), (unsigned long)ms.waits[i], (unsigned long)ms.timeouts[i]);
    printf("  manager: admissions %lu/%lu/%lu, refusals by the budget %lu/%lu/%lu (task/appdomain/process; a waiting\n"
           "           request is refused again at each retry)\n",
           (unsigned long)ms.granted[0], (unsigned long)ms.granted[1], (unsigned long)ms.granted[2],
           (unsigned long)ms.refused[0], (unsigned long)ms.refused[1], (unsigned long)ms.refused[2]);
    printf("  memory-state changes %lu, notifications delivered %lu, Low answered by gc %lu of %lu\n",
           (unsigned long)ms.state_changes, (unsigned long)ms.notifications, atomic_load(&lows_answered),
           atomic_load(&low_seen));
    printf("  gc write watch (%s): %lu collections rescanned %lu written pages (of %lu page writes; pages written\n"
           "           twice are listed once, pages decommitted before the scan not at all)\n",
           hm_write_watch_mechanism(), atomic_load(&gc_scans), atomic_load(&gc_rescanned), atomic_load(&gc_written));
    printf("  peak charge %.1f MiB of %.1f MiB (%.0f%%); the charge never passes the limit by construction\n",
           (double)peak / MIB, (double)ms.limit / MIB, 100.0 * (double)peak / (double)ms.limit);

    int rc = 0;
    if (svg_path && *svg_path) {
        if (hm_simulate_svg(svg_path, samples, n, &ms) == 0) printf("  timeline written to %s\n", svg_path);
        else {
            fprintf(stderr, "hostmem simulate: cannot write %s\n", svg_path);
            rc = 1;
        }
    }
    hm_manager_destroy(mgr);
    return rc;
}
