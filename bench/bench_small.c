/* bench_small.c — the heap's small-object fast path against glibc, jemalloc, mimalloc and tcmalloc,
 * measured the way issue 13 states its targets:
 *
 *   churn   alloc + free pairs of random sizes 16..512 B over 20 000 live blocks: a slot array of
 *           20 000 pointers is filled first; each step frees a random slot and allocates a block of a
 *           random size into it. The slot and the size come from one xorshift64 step, the same
 *           sequence for every contender.
 *   same64  malloc(64) + free of that block, in a tight loop.
 * Every block gets a byte written at allocation (churn reads it back before the free) and the bytes
 * go into a checksum; the contenders' checksums must agree (they do the same steps on the same data).
 *
 * Contenders, every one called the same way: one indirect call to allocate and one to free per pair,
 * through function pointers, no adapter between (a malloc-shaped wrapper around hm_heap_alloc would
 * add a call the others do not pay); the loops are written once and instantiated for both shapes.
 *   hm-ts     hm_heap_alloc(h, n, HM_LEVEL_PROCESS, &p) / hm_heap_free(h, p) on a HM_HEAP_THREADSAFE
 *             heap of a manager made with "limit=8G"
 *   hm-st     the same on a heap made with flags 0 (one thread at a time)
 *   glibc     the process's malloc / free
 *   jemalloc  libjemalloc.so.2          malloc / free        } dlopen(RTLD_NOW | RTLD_LOCAL |
 *   mimalloc  libmimalloc.so.2          mi_malloc / mi_free  } RTLD_DEEPBIND) in the child only;
 *   tcmalloc  libtcmalloc_minimal.so.4  tc_malloc / tc_free  } a missing one is reported and skipped
 *
 * Method. Time: each (contender, loop) runs in a child process of its own (fork + exec of this
 * program with --run), pinned to CPU 0; the child sets up (churn: fills the slots), runs one untimed
 * warm-up batch, then 5 timed batches of a fixed number of pairs (about 50-100 ms each for the fast
 * contenders on a 2-core VM) and prints its median batch's ns per pair. The figure is the thread's
 * CPU time (CLOCK_THREAD_CPUTIME_ID): on a shared machine a batch's wall time also counts the time
 * another process had CPU 0, which the CPU time leaves out; the wall time is printed beside it.
 * Rounds (5 by default) run every contender on both loops, the contenders' order rotating from one
 * round to the next; each figure is the median over the rounds, "spread" is (max - min) / median
 * over them (of the CPU times).
 * Instructions: with valgrind installed, each child also runs under
 *   valgrind --tool=cachegrind --cache-sim=no --cachegrind-out-file=/dev/null
 * twice, with N and 2N pairs after the same setup (N = 200 000); (I refs(2N) - I refs(N)) / N is the
 * instructions per pair, setup and loading cancelled out. The loop's own work (xorshift, slot, the
 * byte written and read, the checksum) is in every contender's count alike. Under valgrind hostmem
 * describes its blocks to memcheck only; cachegrind counts the untracked path that runs natively.
 *
 *   bench_small                the full run (about a minute on 2 cores)
 *   bench_small --quick        a tenth of the work, 1 round: a smoke test, not a measurement
 *   bench_small --reps N       rounds (default 5)
 *   bench_small --no-instr     no instruction counts (no valgrind runs)
 *   bench_small --only LOOP    only churn or only same64
 *   bench_small --run CONTENDER LOOP [--scale X] [--pairs N]
 *                              one child: prints "RESULT ns_per_pair checksum"; with --pairs, the
 *                              setup and N untimed pairs only (what valgrind runs)
 */
#define _GNU_SOURCE
#include <hostmem/hostmem.h>

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <sched.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/select.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* ---- settings ---------------------------------------------------------------------------------- */

#define SLOTS 20000            /* churn's live blocks */
#define MIN_SIZE 16            /* churn's sizes: MIN_SIZE..MAX_SIZE bytes */
#define MAX_SIZE 512
#define CHURN_PAIRS 3000000L   /* pairs per batch (--quick: a tenth) */
#define SAME64_PAIRS 6000000L
#define BATCHES 5              /* timed batches per child, after one warm-up batch */
#define INSTR_PAIRS 200000L    /* N of the cachegrind runs (--quick: a tenth) */
#define MAXREPS 15
#define SEED 0x5EED13u

/* ---- helpers ----------------------------------------------------------------------------------- */

#define BENCH_PROC_NAME "bench_small"
#include "bench_proc.h"
_Static_assert(MAXREPS <= BENCH_PROC_MAXN && BATCHES <= BENCH_PROC_MAXN, "median() looks at every figure");

static inline uint64_t xorshift64(uint64_t x)
{
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return x;
}

/* ---- contenders -------------------------------------------------------------------------------- */

typedef struct contender {
    const char *name;
    const char *lib;               /* NULL: not loaded */
    const char *sym_malloc, *sym_free;
    int heap;                      /* hostmem: 1 = HM_HEAP_THREADSAFE heap, 2 = flags 0 */
} contender;

static const contender contenders[] = {
    {"hm-ts", NULL, NULL, NULL, 1},
    {"hm-st", NULL, NULL, NULL, 2},
    {"glibc", NULL, NULL, NULL, 0},
    {"jemalloc", "libjemalloc.so.2", "malloc", "free", 0},
    {"mimalloc", "libmimalloc.so.2", "mi_malloc", "mi_free", 0},
    {"tcmalloc", "libtcmalloc_minimal.so.4", "tc_malloc", "tc_free", 0},
};
#define NCONT ((int)(sizeof contenders / sizeof contenders[0]))
enum { C_HMTS, C_HMST, C_GLIBC, C_JEMALLOC, C_MIMALLOC, C_TCMALLOC };

typedef void *(*malloc_fn)(size_t);
typedef void (*free_fn)(void *);
typedef hm_status (*hm_alloc_fn)(hm_heap *, size_t, hm_level, void **);
typedef hm_status (*hm_free_fn)(hm_heap *, void *);

/* The child's allocator: malloc/free, or hm_alloc/hm_free on heap. */
typedef struct alloc_api {
    malloc_fn malloc;
    free_fn free;
    hm_alloc_fn hm_alloc;
    hm_free_fn hm_free;
    hm_heap *heap;
} alloc_api;

static alloc_api A;
static hm_manager *g_mgr;

/* Loads contender c's library; NULL with *why set if it cannot be used. */
static const char *load_lib(const contender *c, alloc_api *out)
{
    static char why[512];
    void *h = dlopen(c->lib, RTLD_NOW | RTLD_LOCAL | RTLD_DEEPBIND);
    if (!h) {
        snprintf(why, sizeof why, "%s", dlerror());
        return why;
    }
    void *f[2];
    const char *names[2] = {c->sym_malloc, c->sym_free};
    for (int i = 0; i < 2; i++) {
        f[i] = dlsym(h, names[i]);
        Dl_info info;
        if (!f[i] || !dladdr(f[i], &info) || !info.dli_fname || !strstr(info.dli_fname, c->lib)) {
            snprintf(why, sizeof why, "%s: %s not found in it (resolves to %s)", c->lib, names[i],
                     f[i] && dladdr(f[i], &info) && info.dli_fname ? info.dli_fname : "nothing");
            return why;
        }
    }
    memcpy(&out->malloc, &f[0], sizeof f[0]);
    memcpy(&out->free, &f[1], sizeof f[1]);
    return NULL;
}

/* ---- the loops --------------------------------------------------------------------------------- */

__attribute__((noinline, noreturn, cold)) static void alloc_failed(size_t n, hm_status st)
{
    if (A.heap) {
        hm_manager_stats ms;
        memset(&ms, 0, sizeof ms);
        hm_manager_get_stats(g_mgr, &ms);
        die("hm_heap_alloc(%zu) failed: %s (%s, 0x%08x): %s [charge %llu, limit %llu]", n, hm_status_message(st),
            hm_status_name(st), (unsigned)st, hm_last_detail(), (unsigned long long)ms.charge,
            (unsigned long long)ms.limit);
    }
    die("malloc(%zu) returned NULL", n);
}

__attribute__((noinline, noreturn, cold)) static void free_failed(void *p, hm_status st)
{
    die("hm_heap_free(%p) failed: %s (%s, 0x%08x): %s", p, hm_status_message(st), hm_status_name(st),
        (unsigned)st, hm_last_detail());
}

/* One allocation and one free, by shape (hm: a constant after inlining, so one shape is compiled). The
 * function pointers pass through an empty asm so that the compiler calls them as pointers, whatever
 * it could see of their values. */
typedef struct calls {
    malloc_fn m;
    free_fn f;
    hm_alloc_fn ha;
    hm_free_fn hf;
    hm_heap *h;
} calls;

static inline __attribute__((always_inline)) calls calls_of(const alloc_api *a)
{
    calls c = {a->malloc, a->free, a->hm_alloc, a->hm_free, a->heap};
    __asm__("" : "+r"(c.m), "+r"(c.f), "+r"(c.ha), "+r"(c.hf));
    return c;
}

static inline __attribute__((always_inline)) char *do_alloc(const calls *c, int hm, size_t n)
{
    void *p;
    if (hm) {
        hm_status st = c->ha(c->h, n, HM_LEVEL_PROCESS, &p);
        if (__builtin_expect(st != HM_OK, 0)) alloc_failed(n, st);
    } else {
        p = c->m(n);
        if (__builtin_expect(!p, 0)) alloc_failed(n, HM_OK);
    }
    return p;
}

static inline __attribute__((always_inline)) void do_free(const calls *c, int hm, void *p)
{
    if (hm) {
        hm_status st = c->hf(c->h, p);
        if (__builtin_expect(st != HM_OK, 0)) free_failed(p, st);
    } else {
        c->f(p);
    }
}

/* churn's state: the slots (from mmap, never from the allocator under test) and the generator. */
static char **g_slots;
static uint64_t g_x = SEED;

/* Slot and size of one step from one xorshift64 output: the high half picks the slot, the low half
 * the size (multiply-shift, no division). */
#define STEP_SLOT(x) ((size_t)((((x) >> 32) * (uint64_t)SLOTS) >> 32))
#define STEP_SIZE(x) ((size_t)MIN_SIZE + (size_t)((((x) & 0xFFFFFFFFu) * (uint64_t)(MAX_SIZE - MIN_SIZE + 1)) >> 32))

static inline __attribute__((always_inline)) uint64_t churn_fill_body(const alloc_api *a, int hm)
{
    calls c = calls_of(a);
    uint64_t x = g_x;
    for (size_t i = 0; i < SLOTS; i++) {
        x = xorshift64(x);
        char *p = do_alloc(&c, hm, STEP_SIZE(x));
        p[0] = (char)(x >> 40);
        g_slots[i] = p;
    }
    g_x = x;
    return 0;
}

/* n steps: free a random slot's block (reading its byte first), allocate a random size into it. */
static inline __attribute__((always_inline)) uint64_t churn_body(const alloc_api *a, int hm, long n)
{
    calls c = calls_of(a);
    char **slots = g_slots;
    uint64_t x = g_x, sum = 0;
    for (long k = 0; k < n; k++) {
        x = xorshift64(x);
        size_t s = STEP_SLOT(x);
        char *old = slots[s];
        sum += (unsigned char)old[0];
        do_free(&c, hm, old);
        char *p = do_alloc(&c, hm, STEP_SIZE(x));
        p[0] = (char)(x >> 40);
        slots[s] = p;
    }
    g_x = x;
    return sum;
}

/* n times: allocate 64 B, write its first and last byte, free it. */
static inline __attribute__((always_inline)) uint64_t same64_body(const alloc_api *a, int hm, long n)
{
    calls c = calls_of(a);
    uint64_t sum = 0;
    for (long k = 0; k < n; k++) {
        char *p = do_alloc(&c, hm, 64);
        p[0] = (char)k;
        p[63] = (char)(k >> 8);
        sum += (unsigned char)p[0] + (unsigned char)p[63];
        do_free(&c, hm, p);
    }
    return sum;
}

static __attribute__((noinline)) uint64_t churn_fill_malloc(const alloc_api *a, long n) { (void)n; return churn_fill_body(a, 0); }
static __attribute__((noinline)) uint64_t churn_fill_hm(const alloc_api *a, long n) { (void)n; return churn_fill_body(a, 1); }
static __attribute__((noinline)) uint64_t churn_malloc(const alloc_api *a, long n) { return churn_body(a, 0, n); }
static __attribute__((noinline)) uint64_t churn_hm(const alloc_api *a, long n) { return churn_body(a, 1, n); }
static __attribute__((noinline)) uint64_t same64_malloc(const alloc_api *a, long n) { return same64_body(a, 0, n); }
static __attribute__((noinline)) uint64_t same64_hm(const alloc_api *a, long n) { return same64_body(a, 1, n); }

typedef uint64_t (*loop_fn)(const alloc_api *a, long n);

typedef struct loop {
    const char *name;
    const char *what;
    long pairs;              /* per batch */
    loop_fn setup[2], run[2]; /* [hm] */
} loop;

static const loop loops[] = {
    {"churn", "alloc + free of 16..512 B (random) over 20 000 live blocks, random slot", CHURN_PAIRS,
     {churn_fill_malloc, churn_fill_hm}, {churn_malloc, churn_hm}},
    {"same64", "malloc(64) + free of the same block, tight loop", SAME64_PAIRS, {NULL, NULL},
     {same64_malloc, same64_hm}},
};
#define NLOOP ((int)(sizeof loops / sizeof loops[0]))

static int find_contender(const char *name)
{
    for (int i = 0; i < NCONT; i++)
        if (!strcmp(contenders[i].name, name)) return i;
    return -1;
}

static int find_loop(const char *name)
{
    for (int i = 0; i < NLOOP; i++)
        if (!strcmp(loops[i].name, name)) return i;
    return -1;
}

/* ---- one run (the child) ----------------------------------------------------------------------- */

static int child_main(const char *cname, const char *lname, double scale, long count_pairs)
{
    static char what[64];
    snprintf(what, sizeof what, "%s/%s", cname, lname);
    g_what = what;
    int ci = find_contender(cname), li = find_loop(lname);
    if (ci < 0 || li < 0) die("bad --run arguments (contenders: hm-ts hm-st glibc jemalloc mimalloc tcmalloc; loops: churn same64)");
    alarm(300); /* a hang is a failure, not a stuck benchmark (valgrind runs take the longest) */
    cpu_set_t cpus;
    CPU_ZERO(&cpus);
    CPU_SET(0, &cpus);
    if (sched_setaffinity(0, sizeof cpus, &cpus)) die("sched_setaffinity(CPU 0): %s", strerror(errno));

    const contender *c = &contenders[ci];
    int hm = c->heap != 0;
    if (c->heap) {
        hm_status st = hm_manager_create("limit=8G", &g_mgr);
        if (st) die("hm_manager_create(\"limit=8G\"): %s: %s", hm_status_name(st), hm_last_detail());
        st = hm_heap_create(g_mgr, c->heap == 1 ? HM_HEAP_THREADSAFE : 0, &A.heap);
        if (st) die("hm_heap_create: %s: %s", hm_status_name(st), hm_last_detail());
        A.hm_alloc = hm_heap_alloc;
        A.hm_free = hm_heap_free;
    } else if (c->lib) {
        const char *why = load_lib(c, &A);
        if (why) die("cannot load: %s", why);
    } else {
        A.malloc = malloc;
        A.free = free;
    }

    const loop *l = &loops[li];
    void *mem = mmap(NULL, sizeof(char *) * SLOTS, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (mem == MAP_FAILED) die("mmap: %s", strerror(errno));
    g_slots = mem;
    if (l->setup[hm]) l->setup[hm](&A, 0);

    uint64_t sum = 0;
    double cpu = 0, wall = 0;
    if (count_pairs > 0) {
        sum = l->run[hm](&A, count_pairs);
    } else {
        long n = (long)((double)l->pairs * scale);
        if (n < 1) n = 1;
        double tc[BATCHES], tw[BATCHES];
        sum = l->run[hm](&A, n); /* warm-up */
        for (int b = 0; b < BATCHES; b++) {
            double c0 = clock_ns(CLOCK_THREAD_CPUTIME_ID), w0 = now_ns();
            sum += l->run[hm](&A, n);
            tw[b] = (now_ns() - w0) / (double)n;
            tc[b] = (clock_ns(CLOCK_THREAD_CPUTIME_ID) - c0) / (double)n;
        }
        cpu = median(tc, BATCHES);
        wall = median(tw, BATCHES);
    }
    if (A.heap) { /* the heap's books agree with the loop: churn leaves its slots live, same64 nothing */
        hm_heap_stats hs;
        hm_status st = hm_heap_get_stats(A.heap, &hs);
        if (st) die("hm_heap_get_stats: %s", hm_status_name(st));
        uint64_t want = l->setup[hm] ? SLOTS : 0;
        if (hs.live_blocks != want)
            die("the heap counts %llu live blocks, the loop left %llu", (unsigned long long)hs.live_blocks,
                (unsigned long long)want);
    }
    printf("RESULT %.3f %.3f %llu\n", cpu, wall, (unsigned long long)sum);
    fflush(stdout);
    _exit(0); /* no teardown: it is not what is measured */
}

/* ---- the parent -------------------------------------------------------------------------------- */

typedef struct cell {
    double t[MAXREPS];       /* CPU ns per pair, the child's median batch */
    double w[MAXREPS];       /* wall-clock ns per pair, the same */
    unsigned long long sum;  /* checksum (the same every round) */
    double instr;            /* instructions per pair; NAN if not counted */
    int failed;
    char failure[512];
} cell;

static cell cells[NLOOP][NCONT];
static int skip[NCONT];
static char skip_why[NCONT][512];
static int reps = 5, quick, no_instr, ran[NLOOP];
static char valgrind_path[4096];

/* Runs argv (argv[0] a path) with stdout and stderr captured into out/err; returns the wait status. */
static int run_capture(char *const argv[], char *out, size_t outsz, char *err, size_t errsz)
{
    int fo[2], fe[2];
    if (pipe(fo) || pipe(fe)) die("pipe: %s", strerror(errno));
    fflush(stdout);
    pid_t pid = fork();
    if (pid < 0) die("fork: %s", strerror(errno));
    if (pid == 0) {
        dup2(fo[1], 1);
        dup2(fe[1], 2);
        close(fo[0]), close(fo[1]), close(fe[0]), close(fe[1]);
        execv(argv[0], argv);
        fprintf(stderr, "exec %s: %s\n", argv[0], strerror(errno));
        _exit(127);
    }
    close(fo[1]);
    close(fe[1]);
    size_t lo = 0, le = 0;
    int open_o = 1, open_e = 1;
    while (open_o || open_e) { /* both pipes, so that neither fills while the other is read */
        fd_set rs;
        FD_ZERO(&rs);
        if (open_o) FD_SET(fo[0], &rs);
        if (open_e) FD_SET(fe[0], &rs);
        if (select((fo[0] > fe[0] ? fo[0] : fe[0]) + 1, &rs, NULL, NULL, NULL) < 0) {
            if (errno == EINTR) continue;
            die("select: %s", strerror(errno));
        }
        char junk[4096];
        if (open_o && FD_ISSET(fo[0], &rs)) {
            ssize_t k = lo + 1 < outsz ? read(fo[0], out + lo, outsz - 1 - lo) : read(fo[0], junk, sizeof junk);
            if (k <= 0) open_o = 0;
            else if (lo + 1 < outsz) lo += (size_t)k;
        }
        if (open_e && FD_ISSET(fe[0], &rs)) {
            ssize_t k = le + 1 < errsz ? read(fe[0], err + le, errsz - 1 - le) : read(fe[0], junk, sizeof junk);
            if (k <= 0) open_e = 0;
            else if (le + 1 < errsz) le += (size_t)k;
        }
    }
    out[lo] = 0;
    err[le] = 0;
    close(fo[0]);
    close(fe[0]);
    int status;
    if (waitpid(pid, &status, 0) < 0) die("waitpid: %s", strerror(errno));
    return status;
}

/* Why a child failed, in words, with the command that reproduces it and its last message. */
static void describe_failure(cell *c, int status, const char *err, const char *cmd)
{
    int n;
    if (WIFSIGNALED(status))
        n = snprintf(c->failure, sizeof c->failure, "killed by signal %d (%s)", WTERMSIG(status),
                     strsignal(WTERMSIG(status)));
    else
        n = snprintf(c->failure, sizeof c->failure, "exit status %d", WIFEXITED(status) ? WEXITSTATUS(status) : -1);
    const char *msg = strstr(err, "bench_small: ");
    if (msg && n > 0 && (size_t)n < sizeof c->failure) {
        size_t len = strcspn(msg, "\n");
        n += snprintf(c->failure + n, sizeof c->failure - (size_t)n, ": %.*s", (int)(len > 300 ? 300 : len), msg);
    }
    if (n > 0 && (size_t)n < sizeof c->failure) snprintf(c->failure + n, sizeof c->failure - (size_t)n, "; reproduce: %s", cmd);
    c->failed = 1;
}

/* "GLIBC_TUNABLES=... " for a reproduction command (see ensure_static_tls). */
static const char *tunables(void)
{
    static char buf[1100];
    const char *t = getenv("GLIBC_TUNABLES");
    snprintf(buf, sizeof buf, "%s%s%s", t ? "GLIBC_TUNABLES=" : "", t ? t : "", t ? " " : "");
    return buf;
}

/* One timed child: round r of contender ci on loop li. */
static void run_timed(int li, int ci, int r)
{
    cell *c = &cells[li][ci];
    c->t[r] = c->w[r] = NAN;
    if (c->failed) return; /* one failure is enough: it is reported with its reproduction */
    char scale[32], cmd[5400], out[256], err[4096];
    snprintf(scale, sizeof scale, "%g", quick ? 0.1 : 1.0);
    char *argv[] = {self_path, "--run", (char *)contenders[ci].name, (char *)loops[li].name, "--scale", scale, NULL};
    snprintf(cmd, sizeof cmd, "%s%s --run %s %s --scale %s", tunables(), self_path, contenders[ci].name, loops[li].name, scale);
    int status = run_capture(argv, out, sizeof out, err, sizeof err);
    double t, w;
    unsigned long long sum;
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0 && sscanf(out, "RESULT %lf %lf %llu", &t, &w, &sum) == 3) {
        c->t[r] = t;
        c->w[r] = w;
        c->sum = sum;
        return;
    }
    describe_failure(c, status, err, cmd);
    fprintf(stderr, "bench_small: %s/%s round %d: %s\n", contenders[ci].name, loops[li].name, r + 1, c->failure);
}

/* "I refs:      1,234,567" (valgrind 3.21+: "I    refs:") from cachegrind's summary; -1 if absent. */
static double parse_irefs(const char *err)
{
    for (const char *p = err; (p = strstr(p, "I")) != NULL; p++) {
        const char *q = p + 1;
        while (*q == ' ') q++;
        if (strncmp(q, "refs:", 5)) continue;
        q += 5;
        while (*q == ' ') q++;
        double v = 0;
        int digits = 0;
        for (; (*q >= '0' && *q <= '9') || *q == ','; q++)
            if (*q != ',') v = v * 10 + (*q - '0'), digits++;
        if (digits) return v;
    }
    return -1;
}

/* Instructions of one child under cachegrind with n pairs; -1 on failure (the cell says why). */
static double count_instr(int li, int ci, long n)
{
    cell *c = &cells[li][ci];
    char pairs[32], cmd[9600], out[256];
    static char err[65536];
    snprintf(pairs, sizeof pairs, "%ld", n);
    char *argv[] = {valgrind_path, "--tool=cachegrind", "--cache-sim=no", "--cachegrind-out-file=/dev/null",
                    self_path, "--run", (char *)contenders[ci].name, (char *)loops[li].name, "--pairs", pairs, NULL};
    snprintf(cmd, sizeof cmd, "%s%s --tool=cachegrind --cache-sim=no --cachegrind-out-file=/dev/null %s --run %s %s --pairs %s",
             tunables(), valgrind_path, self_path, contenders[ci].name, loops[li].name, pairs);
    int status = run_capture(argv, out, sizeof out, err, sizeof err);
    double t, w, v = parse_irefs(err);
    unsigned long long sum;
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0 && sscanf(out, "RESULT %lf %lf %llu", &t, &w, &sum) == 3 && v > 0)
        return v;
    if (!strstr(err, "bench_small: ") && WIFEXITED(status) && WEXITSTATUS(status) == 0)
        snprintf(err, sizeof err, "bench_small: no \"I refs:\" in valgrind's output\n");
    describe_failure(c, status, err, cmd);
    fprintf(stderr, "bench_small: %s/%s under cachegrind: %s\n", contenders[ci].name, loops[li].name, c->failure);
    return -1;
}

/* The path of valgrind on PATH, or 0. */
static int find_valgrind(void)
{
    const char *path = getenv("PATH");
    if (!path) path = "/usr/bin:/bin";
    while (*path) {
        size_t len = strcspn(path, ":");
        snprintf(valgrind_path, sizeof valgrind_path, "%.*s/valgrind", (int)len, path);
        if (len && access(valgrind_path, X_OK) == 0) return 1;
        path += len + (path[len] == ':');
    }
    return 0;
}

static const char *verdict(int pass) { return pass ? "PASS" : "MISS"; }

static double med_t(int li, int ci) { return skip[ci] ? NAN : median(cells[li][ci].t, reps); }
static double med_w(int li, int ci) { return skip[ci] ? NAN : median(cells[li][ci].w, reps); }

static double spread(int li, int ci)
{
    double lo = INFINITY, hi = -INFINITY;
    for (int r = 0; r < reps; r++) {
        double v = cells[li][ci].t[r];
        if (isnan(v)) continue;
        if (v < lo) lo = v;
        if (v > hi) hi = v;
    }
    double m = med_t(li, ci);
    return isnan(m) || hi < lo ? NAN : (hi - lo) / m;
}

static void print_ratio(double v, double ref)
{
    if (isnan(v) || isnan(ref) || ref <= 0) printf("  %9s", "-");
    else printf("  %9.2f", v / ref);
}

static void print_loop(int li, int instr)
{
    const loop *l = &loops[li];
    printf("\nLoop \"%s\": %s\n\n", l->name, l->what);
    printf("  %-10s  %8s  %6s  %9s  %9s  %8s", "contender", "ns/pair", "spread", "/mimalloc", "/tcmalloc", "wall ns");
    if (instr) printf("  %11s  %9s", "instr/pair", "/mimalloc");
    printf("\n  %-10s  %8s  %6s  %9s  %9s  %8s", "----------", "--------", "------", "---------", "---------", "--------");
    if (instr) printf("  %11s  %9s", "-----------", "---------");
    printf("\n");
    double mi = med_t(li, C_MIMALLOC), tc = med_t(li, C_TCMALLOC), mi_i = cells[li][C_MIMALLOC].instr;
    for (int ci = 0; ci < NCONT; ci++) {
        if (skip[ci]) continue;
        double v = med_t(li, ci), s = spread(li, ci);
        if (isnan(v)) printf("  %-10s  %8s  %6s  %9s  %9s  %8s", contenders[ci].name, "failed", "", "", "", "");
        else {
            printf("  %-10s  %8.2f  %5.1f%%", contenders[ci].name, v, 100 * s);
            print_ratio(v, mi);
            print_ratio(v, tc);
            printf("  %8.2f", med_w(li, ci));
        }
        if (instr) {
            double n = cells[li][ci].instr;
            if (isnan(n)) printf("  %11s  %9s", "-", "-");
            else {
                printf("  %11.1f", n);
                print_ratio(n, mi_i);
            }
        }
        printf("\n");
    }

    double ts = med_t(li, C_HMTS), st = med_t(li, C_HMST), ts_i = cells[li][C_HMTS].instr;
    printf("\n");
    if (isnan(ts) || isnan(st)) printf("  hm-st / hm-ts                       <= 1.00        -   MISS  (a run failed)\n");
    else printf("  hm-st / hm-ts                       <= 1.00   %6.2f   %s\n", st / ts, verdict(st / ts <= 1.0));
    if (isnan(ts) || isnan(mi))
        printf("  hm-ts time / mimalloc               <= 1.10        -   %s\n", skip[C_MIMALLOC] ? "not judged (no mimalloc)" : "MISS  (a run failed)");
    else printf("  hm-ts time / mimalloc               <= 1.10   %6.2f   %s\n", ts / mi, verdict(ts / mi <= 1.10));
    if (instr) {
        if (isnan(ts_i) || isnan(mi_i))
            printf("  hm-ts instr / mimalloc              <= 1.20        -   %s\n", skip[C_MIMALLOC] ? "not judged (no mimalloc)" : "MISS  (a run failed)");
        else printf("  hm-ts instr / mimalloc              <= 1.20   %6.2f   %s\n", ts_i / mi_i, verdict(ts_i / mi_i <= 1.20));
    }
}

/* Debian's jemalloc uses initial-exec TLS: dlopen'ed after start it needs static TLS to spare, which
 * glibc gives only when told at start. So the program re-executes itself once with the tunable set,
 * and every child inherits it (every contender runs with the same setting). */
static void ensure_static_tls(char **argv)
{
    const char *t = getenv("GLIBC_TUNABLES");
    if (t && strstr(t, "glibc.rtld.optional_static_tls")) return;
    char buf[1024];
    snprintf(buf, sizeof buf, "%s%sglibc.rtld.optional_static_tls=65536", t ? t : "", t && *t ? ":" : "");
    setenv("GLIBC_TUNABLES", buf, 1);
    execv("/proc/self/exe", argv);
    /* exec failed: go on; jemalloc will be reported as skipped */
}

static void usage(const char *prog)
{
    fprintf(stderr,
            "usage: %s [--quick] [--reps N] [--no-instr] [--only churn|same64]\n"
            "       %s --run CONTENDER LOOP [--scale X] [--pairs N]\n",
            prog, prog);
    exit(2);
}

int main(int argc, char **argv)
{
    const char *only = NULL;
    if (argc >= 2 && !strcmp(argv[1], "--run")) {
        if (argc < 4) usage(argv[0]);
        double scale = 1.0;
        long pairs = 0;
        for (int i = 4; i < argc; i += 2) {
            if (i + 1 >= argc) usage(argv[0]);
            if (!strcmp(argv[i], "--scale")) scale = atof(argv[i + 1]);
            else if (!strcmp(argv[i], "--pairs")) pairs = atol(argv[i + 1]);
            else usage(argv[0]);
        }
        if (!(scale > 0) || pairs < 0) usage(argv[0]);
        return child_main(argv[2], argv[3], scale, pairs);
    }
    ensure_static_tls(argv);
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--quick")) quick = 1;
        else if (!strcmp(argv[i], "--no-instr")) no_instr = 1;
        else if (!strcmp(argv[i], "--reps") && i + 1 < argc) reps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--only") && i + 1 < argc) only = argv[++i];
        else usage(argv[0]);
    }
    if (quick && reps == 5) reps = 1;
    if (reps < 1 || reps > MAXREPS) die("--reps: 1 to %d", MAXREPS);
    if (only && find_loop(only) < 0) die("--only: no loop '%s' (churn, same64)", only);
    bench_self_path();
    setvbuf(stdout, NULL, _IOLBF, 0);

    /* Which libraries can be used: loaded here only to look (the children exec afresh). */
    for (int ci = 0; ci < NCONT; ci++)
        if (contenders[ci].lib) {
            alloc_api a;
            const char *why = load_lib(&contenders[ci], &a);
            if (why) {
                skip[ci] = 1;
                snprintf(skip_why[ci], sizeof skip_why[ci], "%s", why);
            }
        }
    int instr = !no_instr && find_valgrind();

    hm_system_info si;
    hm_get_system_info(&si);
    long batch_div = quick ? 10 : 1;
    printf("bench_small%s: the small-object fast path, %u CPUs; each run a child process pinned to CPU 0;\n"
           "  per run: 1 warm-up + %d timed batches (churn %ld pairs, same64 %ld pairs), its median batch;\n"
           "  figures: median of %d round%s, contenders rotating\n",
           quick ? " --quick" : "", si.processors, BATCHES, CHURN_PAIRS / batch_div, SAME64_PAIRS / batch_div, reps,
           reps > 1 ? "s" : "");
    for (int ci = 0; ci < NCONT; ci++)
        if (skip[ci]) printf("  %s: skipped (%s)\n", contenders[ci].name, skip_why[ci]);
        else if (contenders[ci].lib)
            printf("  %s: %s (%s/%s)\n", contenders[ci].name, contenders[ci].lib, contenders[ci].sym_malloc,
                   contenders[ci].sym_free);
    printf("  hm-ts / hm-st: hm_heap_alloc(h, n, HM_LEVEL_PROCESS, &p) / hm_heap_free on a HM_HEAP_THREADSAFE / flags-0 heap, limit=8G\n");
    if (no_instr) printf("  instructions: not counted (--no-instr)\n");
    else if (!instr) printf("  instructions: not counted (valgrind is not installed: apt-get install valgrind)\n");

    double t0 = now_ns();
    for (int r = 0; r < reps; r++) {
        for (int li = 0; li < NLOOP; li++) {
            if (only && strcmp(only, loops[li].name)) continue;
            ran[li] = 1;
            for (int j = 0; j < NCONT; j++) {
                int ci = (j + r + li) % NCONT;
                if (!skip[ci]) run_timed(li, ci, r);
            }
        }
        printf("  round %d/%d done (%.0f s)\n", r + 1, reps, (now_ns() - t0) / 1e9);
    }

    for (int li = 0; li < NLOOP; li++)
        for (int ci = 0; ci < NCONT; ci++) cells[li][ci].instr = NAN;
    if (instr) {
        long in = INSTR_PAIRS / batch_div;
        printf("  instructions: cachegrind runs with %ld and %ld pairs ...\n", in, 2 * in);
        for (int li = 0; li < NLOOP; li++) {
            if (!ran[li]) continue;
            for (int ci = 0; ci < NCONT; ci++) {
                if (skip[ci] || cells[li][ci].failed) continue;
                double a = count_instr(li, ci, in);
                double b = a < 0 ? -1 : count_instr(li, ci, 2 * in);
                if (a >= 0 && b >= 0) cells[li][ci].instr = (b - a) / (double)in;
            }
        }
        printf("  instructions done (%.0f s)\n", (now_ns() - t0) / 1e9);
    }

    int nfail = 0, bad_sum = 0;
    for (int li = 0; li < NLOOP; li++) {
        if (!ran[li]) continue;
        print_loop(li, instr);
        /* every contender did the same steps on the same bytes: one checksum */
        int first = -1;
        for (int ci = 0; ci < NCONT; ci++) {
            if (skip[ci] || cells[li][ci].failed) continue;
            if (first < 0) first = ci;
            else if (cells[li][ci].sum != cells[li][first].sum) {
                printf("  checksum: %s %llu, %s %llu: the contenders did not do the same work\n", contenders[first].name,
                       cells[li][first].sum, contenders[ci].name, cells[li][ci].sum);
                bad_sum = 1;
            }
        }
        if (first >= 0 && !bad_sum) printf("  checksum %llu (every contender)\n", cells[li][first].sum);
    }
    for (int li = 0; li < NLOOP; li++)
        for (int ci = 0; ci < NCONT; ci++)
            if (cells[li][ci].failed) {
                if (!nfail++) printf("\nFailures:\n");
                printf("  %s %s: %s\n", contenders[ci].name, loops[li].name, cells[li][ci].failure);
            }
    if (quick) printf("\n(--quick: a smoke test with a tenth of the work, not a measurement)\n");
    printf("\ntotal %.1f s\n", (now_ns() - t0) / 1e9);
    return nfail || bad_sum ? 1 : 0;
}
