/* bench_manager.c — what the host memory manager adds on top of the address-space core.
 *
 *   bench_manager            the full run (a few seconds)
 *   bench_manager --quick    fewer and shorter batches, fewer crossings: a smoke test, not a measurement
 *
 * Two measurements, printed as one table each:
 *   1. The cost of admission and accounting: commit (READWRITE, no page touched) + decommit cycles of
 *      64 KiB and 1 MiB at the start of an existing 1 MiB reservation, through
 *        core      hm_vmap_alloc / hm_vmap_free directly, with a local hm_account whose thresholds and
 *                  va_limit are UINT64_MAX (level 2): no manager at all;
 *        manager   hm_virtual_alloc_level(TASK) + hm_virtual_free(DECOMMIT) on a manager created with
 *                  "limit=1G,reserve.appdomain=64M,reserve.process=64M";
 *        listening the same on a second such manager with a (do-nothing) notification callback
 *                  registered, so its notification thread runs.
 *      The three reservations lie side by side inside one arena chunk, after a spacer, so that each
 *      commit splits the chunk's PROT_NONE mapping in three and each decommit merges it back: the
 *      same kernel work for all (the first reservation of a chunk would be ~20 % cheaper).
 *      Target: manager / core <= 1.03 (and the same for listening / core).
 *   2. The latency from a threshold crossing to the callback: a manager with limit=64M, notify.low=40,
 *      notify.high=80; its callback notes CLOCK_MONOTONIC for each state it sees. t0 is taken right
 *      before the hm_virtual_alloc / hm_virtual_free call that crosses, the main thread then waits
 *      (short sleeps, bounded) until the callback has seen the new state; latency = callback time - t0.
 *      Each cycle: commit to 51 MiB (79 %: Neutral, untimed), commit 1 MiB more (81 %: Low, timed),
 *      decommit to 27 MiB (42 %: Neutral, untimed), decommit 2 MiB more (39 %: High, timed). Every
 *      crossing call is a small one (1 or 2 MiB of untouched pages), so the call itself is a small
 *      part of the latency; its own duration is printed too, and beside it the same calls where no
 *      threshold is crossed (+1 MiB and -1 MiB at 25 MiB), which shows what the crossing adds to the
 *      allocating thread (queueing the change and waking the notification thread).
 *
 * Method (as bench_vm): CLOCK_MONOTONIC around batches sized to take ~100 ms each; each figure is the
 * median of 7 batches; the contenders' batches alternate (and rotate order) so that noise spreads
 * over all. The notification thread of the listening manager exists during every contender's batches
 * (it cannot be unregistered); it wakes every 100 ms to sample the system's memory. */
#define _GNU_SOURCE
#include "bench_util.h"
#include <hostmem/hostmem.h>

#include "vmap/account.h"
#include "vmap/vmap.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define KiB ((size_t)1 << 10)
#define MiB ((size_t)1 << 20)

/* ---- settings ---------------------------------------------------------------------------------- */

static int quick;
static int crossings = 300;          /* timed threshold crossings in section 2 */
static const double ratio_target = 1.03;

/* ---- helpers ----------------------------------------------------------------------------------- */



/* The p-th percentile (nearest rank) of v, sorted in place. */
static double percentile(double *v, int n, double p)
{
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    int k = (int)(p / 100 * n + 0.999999);
    if (k < 1) k = 1;
    if (k > n) k = n;
    return v[k - 1];
}

static const char *verdict(int pass) { return pass ? "PASS" : "MISS"; }

static const char *size_name(size_t s, char *buf, size_t cap)
{
    if (s >= MiB && s % MiB == 0) snprintf(buf, cap, "%zu MiB", s / MiB);
    else snprintf(buf, cap, "%zu KiB", s / KiB);
    return buf;
}


/* ---- 1. admission and accounting: commit + decommit cycles ------------------------------------- */

#define RESERVATION MiB

static hm_account core_acct; /* the core's books: no budget, no address-space limit */

typedef struct core_ctx {
    void *base; /* a 1 MiB reservation of core_acct */
    size_t size;
} core_ctx;

typedef struct mgr_ctx {
    hm_manager *m;
    void *base; /* a 1 MiB reservation of m */
    size_t size;
} mgr_ctx;

static void cycle_core(void *arg, long n)
{
    const core_ctx *c = arg;
    for (long i = 0; i < n; i++) {
        void *q;
        hm_check(hm_vmap_alloc(&core_acct, 2, c->base, c->size, HM_MEM_COMMIT, HM_PAGE_READWRITE, &q),
                 "core commit");
        hm_check(hm_vmap_free(&core_acct, c->base, c->size, HM_MEM_DECOMMIT), "core decommit");
    }
}

static void cycle_mgr(void *arg, long n)
{
    const mgr_ctx *c = arg;
    for (long i = 0; i < n; i++) {
        void *q;
        hm_check(hm_virtual_alloc_level(c->m, c->base, c->size, HM_MEM_COMMIT, HM_PAGE_READWRITE, HM_LEVEL_TASK, &q),
                 "manager commit");
        hm_check(hm_virtual_free(c->m, c->base, c->size, HM_MEM_DECOMMIT), "manager decommit");
    }
}

static void noop_callback(hm_memory_state state, void *arg)
{
    (void)state;
    (void)arg;
}

static uint64_t mgr_charge(hm_manager *m)
{
    hm_manager_stats s;
    hm_check(hm_manager_get_stats(m, &s), "hm_manager_get_stats");
    return s.charge;
}

/* One cycle of each kind, untimed, with the books checked after the commit and after the decommit. */
static void check_cycles(const core_ctx *cc, const mgr_ctx *mc)
{
    void *q;
    hm_check(hm_vmap_alloc(&core_acct, 2, cc->base, cc->size, HM_MEM_COMMIT, HM_PAGE_READWRITE, &q), "core commit");
    if (q != cc->base || atomic_load(&core_acct.charge) != cc->size)
        die("core commit: base %p (want %p), charge %llu (want %zu)", q, cc->base,
            (unsigned long long)atomic_load(&core_acct.charge), cc->size);
    hm_check(hm_vmap_free(&core_acct, cc->base, cc->size, HM_MEM_DECOMMIT), "core decommit");
    if (atomic_load(&core_acct.charge) != 0) die("core decommit: charge %llu", (unsigned long long)atomic_load(&core_acct.charge));

    hm_check(hm_virtual_alloc_level(mc->m, mc->base, mc->size, HM_MEM_COMMIT, HM_PAGE_READWRITE, HM_LEVEL_TASK, &q),
             "manager commit");
    uint64_t ch = mgr_charge(mc->m);
    if (q != mc->base || ch != mc->size)
        die("manager commit: base %p (want %p), charge %llu (want %zu)", q, mc->base, (unsigned long long)ch, mc->size);
    hm_check(hm_virtual_free(mc->m, mc->base, mc->size, HM_MEM_DECOMMIT), "manager decommit");
    if ((ch = mgr_charge(mc->m)) != 0) die("manager decommit: charge %llu", (unsigned long long)ch);
}

/* Whether [base - 1, base + RESERVATION] lies in one PROT_NONE kernel mapping: a commit at base then
 * splits it in three and the decommit merges it back, the same kernel work for every contender. */
static int interior(void *base)
{
    FILE *f = fopen("/proc/self/maps", "r");
    if (!f) die("/proc/self/maps: %m");
    char line[512];
    int inside = 0;
    uintptr_t b = (uintptr_t)base;
    while (fgets(line, sizeof line, f)) {
        unsigned long lo, hi;
        char perms[8];
        if (sscanf(line, "%lx-%lx %7s", &lo, &hi, perms) != 3) continue;
        if (lo < b && b + RESERVATION < hi) {
            inside = !strcmp(perms, "---p");
            break;
        }
    }
    fclose(f);
    return inside;
}

static void bench_admission(void)
{
    static const char *opts = "limit=1G,reserve.appdomain=64M,reserve.process=64M";
    static const size_t sizes[] = {64 * KiB, 1 * MiB};

    core_acct.threshold[0] = core_acct.threshold[1] = core_acct.threshold[2] = UINT64_MAX;
    core_acct.va_limit = UINT64_MAX;
    void *spacer, *core_base, *mgr_base, *lst_base;
    /* The spacer first: the arena places reservations lowest address first in a 1 GiB PROT_NONE chunk,
     * and the one at the chunk's start would save a VMA split and merge per cycle (~0.5 us here) over
     * the others. After it every measured reservation lies inside the chunk's mapping (checked). */
    hm_check(hm_vmap_alloc(&core_acct, 2, NULL, RESERVATION, HM_MEM_RESERVE, HM_PAGE_NOACCESS, &spacer),
             "spacer reserve");
    hm_check(hm_vmap_alloc(&core_acct, 2, NULL, RESERVATION, HM_MEM_RESERVE, HM_PAGE_NOACCESS, &core_base),
             "core reserve");

    hm_manager *mgr, *lst;
    hm_check(hm_manager_create(opts, &mgr), "hm_manager_create");
    hm_check(hm_manager_create(opts, &lst), "hm_manager_create (listening)");
    hm_check(hm_manager_register_notification(lst, noop_callback, NULL), "hm_manager_register_notification");
    hm_check(hm_virtual_alloc_level(mgr, NULL, RESERVATION, HM_MEM_RESERVE, HM_PAGE_NOACCESS, HM_LEVEL_TASK, &mgr_base),
             "manager reserve");
    hm_check(hm_virtual_alloc_level(lst, NULL, RESERVATION, HM_MEM_RESERVE, HM_PAGE_NOACCESS, HM_LEVEL_TASK, &lst_base),
             "manager reserve (listening)");

    if (!interior(core_base) || !interior(mgr_base) || !interior(lst_base))
        die("the reservations %p %p %p do not all lie inside one PROT_NONE mapping each", core_base, mgr_base, lst_base);

    printf("\n1. admission + accounting: commit(READWRITE, no touch) + decommit at the start of a 1 MiB\n"
           "   reservation: ns per cycle, median of %d\n", reps);
    printf("   core      = hm_vmap_alloc / hm_vmap_free, local hm_account (thresholds, va_limit UINT64_MAX), level 2\n");
    printf("   manager   = hm_virtual_alloc_level(TASK) + hm_virtual_free(DECOMMIT), \"%s\"\n", opts);
    printf("   listening = the same on a second such manager with a do-nothing callback registered\n\n");
    printf("   %-7s  %10s  %10s  %10s  %12s  %14s  %14s\n", "commit", "core", "manager", "listening",
           "manager/core", "listening/core", "listening/mgr");
    printf("   %-7s  %10s  %10s  %10s  %12s  %14s  %14s\n", "-------", "----------", "----------", "----------",
           "------------", "--------------", "--------------");

    double ratio_m[2], ratio_l[2];
    hm_manager_stats before, after;
    hm_check(hm_manager_get_stats(mgr, &before), "hm_manager_get_stats");
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        core_ctx cc = {core_base, sizes[i]};
        mgr_ctx mc = {mgr, mgr_base, sizes[i]}, lc = {lst, lst_base, sizes[i]};
        check_cycles(&cc, &mc);
        check_cycles(&cc, &lc);
        contender cs[3] = {{"core", cycle_core, &cc, 0, {0}, 0},
                           {"manager", cycle_mgr, &mc, 0, {0}, 0},
                           {"listening", cycle_mgr, &lc, 0, {0}, 0}};
        measure(cs, 3);
        ratio_m[i] = cs[1].med / cs[0].med;
        ratio_l[i] = cs[2].med / cs[0].med;
        char sb[32];
        printf("   %-7s  %10.0f  %10.0f  %10.0f  %12.3f  %14.3f  %14.3f\n", size_name(sizes[i], sb, sizeof sb),
               cs[0].med, cs[1].med, cs[2].med, ratio_m[i], ratio_l[i], cs[2].med / cs[1].med);
    }
    hm_check(hm_manager_get_stats(mgr, &after), "hm_manager_get_stats");
    hm_manager_stats ls;
    hm_check(hm_manager_get_stats(lst, &ls), "hm_manager_get_stats");
    if (after.charge != 0 || ls.charge != 0 || atomic_load(&core_acct.charge) != 0)
        die("charge left after the cycles: manager %llu, listening %llu, core %llu", (unsigned long long)after.charge,
            (unsigned long long)ls.charge, (unsigned long long)atomic_load(&core_acct.charge));
    if (after.refused[0] != before.refused[0]) die("the manager refused commits during the cycles");
    printf("\n   checked: one untimed cycle of each kind per size (base, charge after commit and decommit);\n"
           "   charge back to 0 everywhere; manager granted %llu task-level commits, refused none; the\n"
           "   listening manager's state %s, %llu state changes, %llu callbacks made\n",
           (unsigned long long)(after.granted[0] - before.granted[0]),
           ls.memory_state == HM_MEMORY_HIGH ? "High" : ls.memory_state == HM_MEMORY_LOW ? "Low" : "Neutral",
           (unsigned long long)ls.state_changes, (unsigned long long)ls.notifications);
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        char sb[32];
        size_name(sizes[i], sb, sizeof sb);
        printf("   target: manager/core <= %.2f at %-7s %.3f  %s;  listening/core <= %.2f: %.3f  %s\n", ratio_target, sb,
               ratio_m[i], verdict(ratio_m[i] <= ratio_target), ratio_target, ratio_l[i],
               verdict(ratio_l[i] <= ratio_target));
    }

    hm_check(hm_vmap_free(&core_acct, core_base, 0, HM_MEM_RELEASE), "core release");
    hm_check(hm_vmap_free(&core_acct, spacer, 0, HM_MEM_RELEASE), "spacer release");
    hm_check(hm_manager_destroy(mgr), "hm_manager_destroy");
    hm_check(hm_manager_destroy(lst), "hm_manager_destroy (listening)");
}

/* ---- 2. latency from a threshold crossing to the callback -------------------------------------- */

static _Atomic uint64_t cb_seq;        /* callbacks seen */
static _Atomic int cb_state;           /* the state of the last one */
static _Atomic uint64_t cb_time;       /* its CLOCK_MONOTONIC, ns */

static void timing_callback(hm_memory_state state, void *arg)
{
    (void)arg;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    atomic_store_explicit(&cb_time, (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec, memory_order_relaxed);
    atomic_store_explicit(&cb_state, (int)state, memory_order_relaxed);
    atomic_fetch_add_explicit(&cb_seq, 1, memory_order_release);
}

static uint64_t now_u64(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static const char *state_name(int s)
{
    return s == HM_MEMORY_LOW ? "Low" : s == HM_MEMORY_HIGH ? "High" : s == HM_MEMORY_NEUTRAL ? "Neutral" : "?";
}

/* Waits (sleeping 10 us at a time, at most 2 s) for the callback after number `seq` to report
 * `want`; returns its time. */
static uint64_t await_state(uint64_t seq, int want)
{
    uint64_t start = now_u64();
    const struct timespec nap = {0, 10000};
    for (;;) {
        if (atomic_load_explicit(&cb_seq, memory_order_acquire) > seq) {
            int s = atomic_load_explicit(&cb_state, memory_order_relaxed);
            if (s != want) die("callback reported %s, expected %s", state_name(s), state_name(want));
            return atomic_load_explicit(&cb_time, memory_order_relaxed);
        }
        if (now_u64() - start > 2000000000u) die("no %s callback within 2 s", state_name(want));
        nanosleep(&nap, NULL);
    }
}

/* A proc root whose meminfo says the system is idle: used when the real system is loaded above
 * notify.low, which would keep the state from ever returning to High. */
static char fixture[64];

static void make_fixture(void)
{
    snprintf(fixture, sizeof fixture, "/tmp/bench_manager.XXXXXX");
    if (!mkdtemp(fixture)) die("mkdtemp: %m");
    char path[128];
    snprintf(path, sizeof path, "%s/meminfo", fixture);
    FILE *f = fopen(path, "w");
    if (!f) die("%s: %m", path);
    fprintf(f, "MemTotal:       16777216 kB\nMemFree:        16000000 kB\nMemAvailable:   16000000 kB\n");
    fclose(f);
}

static void remove_fixture(void)
{
    if (!fixture[0]) return;
    char path[128];
    snprintf(path, sizeof path, "%s/meminfo", fixture);
    unlink(path);
    rmdir(fixture);
}

static void summary_line(const char *what, double *v, int n)
{
    double med = percentile(v, n, 50), p90 = percentile(v, n, 90), worst = v[n - 1];
    printf("   %-34s  %5d  %9.1f  %9.1f  %9.1f\n", what, n, med, p90, worst);
}

static void bench_latency(void)
{
    const char *base_opts = "limit=64M,notify.low=40,notify.high=80";
    char opts[256];
    snprintf(opts, sizeof opts, "%s", base_opts);

    /* Is the system quiet enough for the manager's own pressure to decide the state? */
    hm_manager *m;
    uint32_t load;
    hm_check(hm_manager_create(opts, &m), "hm_manager_create");
    hm_check(hm_manager_get_memory_load(m, &load, NULL), "hm_manager_get_memory_load");
    hm_check(hm_manager_destroy(m), "hm_manager_destroy");
    int use_fixture = load > 30;
    if (use_fixture) {
        make_fixture();
        snprintf(opts, sizeof opts, "%s,proc.root=%s,cgroup.root=%s", base_opts, fixture, fixture);
    }

    hm_check(hm_manager_create(opts, &m), "hm_manager_create");
    hm_check(hm_manager_register_notification(m, timing_callback, NULL), "hm_manager_register_notification");
    void *base, *q;
    hm_check(hm_virtual_alloc_level(m, NULL, 64 * MiB, HM_MEM_RESERVE, HM_PAGE_NOACCESS, HM_LEVEL_TASK, &base),
             "reserve 64 MiB");
    char *b = base;
    hm_manager_stats s0;
    hm_check(hm_manager_get_stats(m, &s0), "hm_manager_get_stats");
    if (s0.memory_state != HM_MEMORY_HIGH) die("the manager starts in state %s, not High", state_name((int)s0.memory_state));

    int ncycles = crossings / 2;
    double *lat_low = calloc((size_t)ncycles, sizeof(double)), *lat_high = calloc((size_t)ncycles, sizeof(double));
    double *lat_all = calloc((size_t)ncycles * 2, sizeof(double));
    double *call_low = calloc((size_t)ncycles, sizeof(double)), *call_high = calloc((size_t)ncycles, sizeof(double));
    double *plain_commit = calloc((size_t)ncycles, sizeof(double)), *plain_decommit = calloc((size_t)ncycles, sizeof(double));
    if (!lat_low || !lat_high || !lat_all || !call_low || !call_high || !plain_commit || !plain_decommit)
        die("out of memory");

    size_t committed = 0; /* bytes committed from b */
    double t_start = now_ns();
    for (int i = 0; i < ncycles; i++) {
        uint64_t seq;
        /* to 51 MiB (79 %): Neutral, untimed */
        seq = atomic_load(&cb_seq);
        hm_check(hm_virtual_alloc_level(m, b + committed, 51 * MiB - committed, HM_MEM_COMMIT, HM_PAGE_READWRITE,
                                        HM_LEVEL_TASK, &q), "commit to 51 MiB");
        committed = 51 * MiB;
        await_state(seq, HM_MEMORY_NEUTRAL);

        /* +1 MiB to 52 MiB (81 %): Low, timed */
        seq = atomic_load(&cb_seq);
        uint64_t t0 = now_u64();
        hm_check(hm_virtual_alloc_level(m, b + committed, MiB, HM_MEM_COMMIT, HM_PAGE_READWRITE, HM_LEVEL_TASK, &q),
                 "commit across 80 %");
        uint64_t t1 = now_u64();
        committed += MiB;
        uint64_t tc = await_state(seq, HM_MEMORY_LOW);
        lat_low[i] = (double)(tc - t0) / 1e3;
        call_low[i] = (double)(t1 - t0) / 1e3;

        /* down to 27 MiB (42 %): Neutral, untimed */
        seq = atomic_load(&cb_seq);
        hm_check(hm_virtual_free(m, b + 27 * MiB, committed - 27 * MiB, HM_MEM_DECOMMIT), "decommit to 27 MiB");
        committed = 27 * MiB;
        await_state(seq, HM_MEMORY_NEUTRAL);

        /* -2 MiB to 25 MiB (39 %): High, timed */
        seq = atomic_load(&cb_seq);
        t0 = now_u64();
        hm_check(hm_virtual_free(m, b + 25 * MiB, 2 * MiB, HM_MEM_DECOMMIT), "decommit below 40 %");
        t1 = now_u64();
        committed = 25 * MiB;
        tc = await_state(seq, HM_MEMORY_HIGH);
        lat_high[i] = (double)(tc - t0) / 1e3;
        call_high[i] = (double)(t1 - t0) / 1e3;

        /* the same calls without a crossing: +1 MiB to 26 MiB (40 %, still High) and back */
        t0 = now_u64();
        hm_check(hm_virtual_alloc_level(m, b + committed, MiB, HM_MEM_COMMIT, HM_PAGE_READWRITE, HM_LEVEL_TASK, &q),
                 "commit (no crossing)");
        t1 = now_u64();
        hm_check(hm_virtual_free(m, b + committed, MiB, HM_MEM_DECOMMIT),
                 "decommit (no crossing)");
        uint64_t t2 = now_u64();
        plain_commit[i] = (double)(t1 - t0) / 1e3;
        plain_decommit[i] = (double)(t2 - t1) / 1e3;

        lat_all[2 * i] = lat_low[i];
        lat_all[2 * i + 1] = lat_high[i];
    }
    double elapsed = (now_ns() - t_start) / 1e9;
    hm_manager_stats s1;
    hm_check(hm_manager_get_stats(m, &s1), "hm_manager_get_stats");
    uint64_t changes = s1.state_changes - s0.state_changes;

    printf("\n2. latency from a threshold crossing to the callback: \"%s\"%s\n", base_opts,
           use_fixture ? " + an idle proc.root fixture" : "");
    if (use_fixture)
        printf("   (the system's own load is %u %%, above notify.low: a fixture meminfo stands in for it so that\n"
               "   the manager's own pressure decides the state)\n", load);
    printf("   t0 just before the crossing hm_virtual_alloc/hm_virtual_free; latency = callback's CLOCK_MONOTONIC - t0\n"
           "   cycle: commit to 51 MiB (Neutral), +1 MiB to 52 MiB = 81 %% (Low, timed), decommit to 27 MiB\n"
           "   (Neutral), -2 MiB to 25 MiB = 39 %% (High, timed), then +1 MiB and -1 MiB at 25 MiB (High: no\n"
           "   crossing, the calls timed alone for comparison); the waiter sleeps 10 us at a time, at most 2 s\n\n");
    printf("   %-34s  %5s  %9s  %9s  %9s\n", "us", "n", "median", "p90", "worst");
    printf("   %-34s  %5s  %9s  %9s  %9s\n", "----------------------------------", "-----", "---------", "---------",
           "---------");
    summary_line("crossing -> callback, all", lat_all, 2 * ncycles);
    summary_line("  commit across 80 % (Low)", lat_low, ncycles);
    summary_line("  decommit below 40 % (High)", lat_high, ncycles);
    summary_line("the crossing call itself: commit", call_low, ncycles);
    summary_line("  decommit", call_high, ncycles);
    summary_line("the same calls, no crossing: commit", plain_commit, ncycles);
    summary_line("  decommit", plain_decommit, ncycles);
    printf("\n   %d crossings in %.2f s; %llu state changes (4 per cycle expected: %d), %llu callbacks made, state now %s\n",
           2 * ncycles, elapsed, (unsigned long long)changes, 4 * ncycles,
           (unsigned long long)(s1.notifications - s0.notifications), state_name((int)s1.memory_state));
    if (changes != (uint64_t)4 * (uint64_t)ncycles) die("state changes: %llu, expected %d", (unsigned long long)changes, 4 * ncycles);

    hm_check(hm_manager_destroy(m), "hm_manager_destroy");
    remove_fixture();
    free(lat_low);
    free(lat_high);
    free(lat_all);
    free(call_low);
    free(call_high);
    free(plain_commit);
    free(plain_decommit);
}

/* ---- main -------------------------------------------------------------------------------------- */

int main(int argc, char **argv)
{
    bench_name = "bench_manager";
    quick = bench_args(argc, argv);
    if (quick) crossings = 60;
    hm_check(hm_init(), "hm_init");
    hm_system_info si;
    hm_get_system_info(&si);
    printf("bench_manager%s: the host memory manager's costs over the address-space core; %u CPUs, page %u;\n"
           "median of %d batches of ~%.0f ms each, CLOCK_MONOTONIC, contenders' batches interleaved\n",
           quick ? " --quick" : "", si.processors, si.page_size, reps, batch_ns / 1e6);
    double t0 = now_ns();
    bench_admission();
    bench_latency();
    printf("\ntotal %.1f s\n", (now_ns() - t0) / 1e9);
    printf("\nto run: cmake -S . -B build/release -DCMAKE_BUILD_TYPE=Release -DHM_BUILD_TESTS=OFF -DHM_BUILD_BENCH=ON\n"
           "        cmake --build build/release -j2 --target bench_manager\n"
           "        ./build/release/bench/bench_manager [--quick]\n");
    return 0;
}
