/* bench_hosted_python.c — CPython object churn on three allocators: CPython's default (pymalloc over
 * glibc malloc), mimalloc (PyMem_SetAllocator on the RAW, MEM and OBJ domains to Debian's
 * libmimalloc.so.2, dlopen'ed as bench_alloc does), the hostmem adapter (hostmem/python.h: RAW
 * through a tenant's heap, pymalloc's arenas through the tenant's manager), and the adapter without
 * pymalloc (hm-heap: PYTHONMALLOC=malloc, every domain through the tenant's heap).
 *
 *   bench_hosted_python [--reps N] [--quick]
 *
 * Method: each (workload, contender) runs in a child process of its own (fork + exec of this program
 * with --run), interleaved round by round; the child times the workload alone (the interpreter is up
 * before the clock starts) and reports its peak resident memory (VmHWM) and the workload's result,
 * which must be the same for every contender. Figures are medians over the rounds; ratios are to
 * mimalloc, the reference (target: time within 1.05x). Pin it for steady figures:
 * `taskset -c 0 bench_hosted_python`. */
#define _GNU_SOURCE
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#define BENCH_PROC_NAME "bench_hosted_python"
#include "bench_proc.h"

#include <dlfcn.h>
#include <fcntl.h>
#include <sys/wait.h>

#include <hostmem/python.h>

#define MAXREPS 32

typedef struct workload {
    const char *name, *what, *code; /* code sets `result` (a str) from N, the scale */
    long n;
} workload;

static const workload workloads[] = {
    {"churn", "dicts, lists, tuples and short strings, 4096 live at a time",
     "def run(n):\n"
     "    live = [None] * 4096\n"
     "    acc = 0\n"
     "    for i in range(n):\n"
     "        d = {'a': i, 'b': str(i), 'c': [i, i + 1, i + 2]}\n"
     "        s = ('k%d' % i) * (1 + i % 8)\n"
     "        live[i % 4096] = [d, s, (i, s)]\n"
     "        acc += len(s) + len(d)\n"
     "    return str(acc)\n",
     1000000},
    {"grow", "a growing dict of lists and strings up to 500 B, dropped and rebuilt",
     "def run(n):\n"
     "    acc = 0\n"
     "    for r in range(n // 100000):\n"
     "        d = {}\n"
     "        for i in range(100000):\n"
     "            d[i] = [str(i) * (1 + i % 60), i]\n"
     "        acc += sum(len(v[0]) for v in d.values())\n"
     "    return str(acc)\n",
     1000000},
    {"large", "strings and lists past pymalloc's 512 B (RAW), 256 live at a time",
     "def run(n):\n"
     "    live = [None] * 256\n"
     "    acc = 0\n"
     "    for i in range(n // 4):\n"
     "        s = 'x' * (600 + (i * 37) % 4000)\n"
     "        l = [i] * (80 + i % 300)\n"
     "        live[i % 256] = (s, l)\n"
     "        acc += len(s) + len(l)\n"
     "    return str(acc)\n",
     1000000},
};
#define NWORK ((int)(sizeof workloads / sizeof workloads[0]))

static const char *const contenders[] = {"default", "mimalloc", "hostmem", "hm-heap"};
#define NCONT 4
enum { C_DEFAULT, C_MIMALLOC, C_HOSTMEM, C_HMHEAP };

/* ---- mimalloc behind CPython's hooks ------------------------------------------------------------ */

static void *(*mi_malloc_p)(size_t), *(*mi_calloc_p)(size_t, size_t), *(*mi_realloc_p)(void *, size_t);
static void (*mi_free_p)(void *);
static void *mi_m(void *ctx, size_t n) { (void)ctx; return mi_malloc_p(n ? n : 1); }
static void *mi_c(void *ctx, size_t a, size_t b) { (void)ctx; return mi_calloc_p(a ? a : 1, b ? b : 1); }
static void *mi_r(void *ctx, void *p, size_t n) { (void)ctx; return mi_realloc_p(p, n ? n : 1); }
static void mi_f(void *ctx, void *p) { (void)ctx; mi_free_p(p); }

static void use_mimalloc(void)
{
    void *h = dlopen("libmimalloc.so.2", RTLD_NOW | RTLD_LOCAL);
    if (!h) die("%s (Debian: libmimalloc2.0)", dlerror());
    void *f[4];
    const char *names[4] = {"mi_malloc", "mi_calloc", "mi_realloc", "mi_free"};
    for (int i = 0; i < 4; i++)
        if (!(f[i] = dlsym(h, names[i]))) die("libmimalloc.so.2 has no %s", names[i]);
    memcpy(&mi_malloc_p, &f[0], sizeof f[0]);
    memcpy(&mi_calloc_p, &f[1], sizeof f[1]);
    memcpy(&mi_realloc_p, &f[2], sizeof f[2]);
    memcpy(&mi_free_p, &f[3], sizeof f[3]);
    PyMemAllocatorEx a = {NULL, mi_m, mi_c, mi_r, mi_f};
    PyMem_SetAllocator(PYMEM_DOMAIN_RAW, &a);
    PyMem_SetAllocator(PYMEM_DOMAIN_MEM, &a);
    PyMem_SetAllocator(PYMEM_DOMAIN_OBJ, &a);
}

/* ---- one run (the child) ------------------------------------------------------------------------ */

static int child_main(int ci, int wi, double scale)
{
    static char what[64];
    snprintf(what, sizeof what, "%s/%s", contenders[ci], workloads[wi].name);
    g_what = what;
    alarm(300);
    if (ci == C_MIMALLOC) {
        PyPreConfig pre;
        PyPreConfig_InitPythonConfig(&pre);
        pre.allocator = PYMEM_ALLOCATOR_PYMALLOC; /* (a PYTHONMALLOC of the environment would undo the hooks) */
        Py_PreInitialize(&pre);
        use_mimalloc();
    } else if (ci == C_HOSTMEM || ci == C_HMHEAP) {
        /* hm-heap: without pymalloc (PYTHONMALLOC=malloc), every domain goes to the tenant's heap */
        if (ci == C_HMHEAP) setenv("PYTHONMALLOC", "malloc", 1);
        else unsetenv("PYTHONMALLOC");
        hm_python_config c = {.options = "limit=8G,proc.root=/nonexistent-bench", .level = HM_LEVEL_TASK,
                              .emergency_level = HM_LEVEL_PROCESS};
        if (HM_FAILED(hm_python_install(&c))) die("hm_python_install: %s", hm_last_detail());
    }
    Py_Initialize();
    if (PyRun_SimpleString(workloads[wi].code)) die("the workload does not compile");
    char call[64];
    snprintf(call, sizeof call, "result = run(%ld)\n", (long)(workloads[wi].n * scale));
    double t0 = now_ns();
    if (PyRun_SimpleString(call)) die("the workload failed");
    double t = now_ns() - t0;
    PyObject *r = PyDict_GetItemString(PyModule_GetDict(PyImport_AddModule("__main__")), "result");
    const char *res = r && PyUnicode_Check(r) ? PyUnicode_AsUTF8(r) : "?";
    printf("RESULT %.0f %ld %s\n", t, vm_hwm_kb(), res);
    fflush(stdout);
    _exit(0); /* no finalization: not what is measured */
}

/* ---- the parent ---------------------------------------------------------------------------------- */

typedef struct cell {
    double t[MAXREPS], rss[MAXREPS]; /* ns, KiB */
    char result[64];
    int failed;
} cell;
static cell cells[NWORK][NCONT];

static void run_one(int wi, int ci, int r, double scale)
{
    cell *c = &cells[wi][ci];
    c->t[r] = c->rss[r] = NAN;
    if (c->failed) return;
    char wbuf[8], cbuf[8], sbuf[32];
    snprintf(wbuf, sizeof wbuf, "%d", wi);
    snprintf(cbuf, sizeof cbuf, "%d", ci);
    snprintf(sbuf, sizeof sbuf, "%g", scale);
    char *argv[] = {self_path, "--run", cbuf, wbuf, sbuf, NULL};
    char out[256];
    int status = bench_run_capture(argv, out, sizeof out);
    double t, rss;
    char res[64];
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0 && sscanf(out, "RESULT %lf %lf %63s", &t, &rss, res) == 3) {
        if (c->result[0] && strcmp(c->result, res)) die("%s/%s: result %s, then %s", contenders[ci], workloads[wi].name, c->result, res);
        snprintf(c->result, sizeof c->result, "%s", res);
        c->t[r] = t;
        c->rss[r] = rss;
        return;
    }
    c->failed = 1;
    fprintf(stderr, "%s/%s failed (status %#x): %s\n", contenders[ci], workloads[wi].name, status, out);
}

int main(int argc, char **argv)
{
    if (argc == 5 && !strcmp(argv[1], "--run")) return child_main(atoi(argv[2]), atoi(argv[3]), atof(argv[4]));
    int reps = 7;
    double scale = 1.0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--reps") && i + 1 < argc) reps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--quick")) scale = 0.1, reps = 3;
        else {
            fprintf(stderr, "usage: bench_hosted_python [--reps N] [--quick]\n");
            return 2;
        }
    }
    if (reps < 1 || reps > MAXREPS) {
        fprintf(stderr, "bench_hosted_python: --reps wants 1..%d\n", MAXREPS);
        return 2;
    }
    bench_self_path();
    printf("bench_hosted_python: CPython %s object churn, each run a child process, interleaved; median of %d rounds\n",
           Py_GetVersion(), reps);
    for (int wi = 0; wi < NWORK; wi++) printf("  %-6s %s (n = %.0f)\n", workloads[wi].name, workloads[wi].what, workloads[wi].n * scale);
    for (int r = 0; r < reps; r++)
        for (int wi = 0; wi < NWORK; wi++)
            for (int ci = 0; ci < NCONT; ci++) run_one(wi, ci, r, scale);
    for (int wi = 0; wi < NWORK; wi++)
        for (int ci = 1; ci < NCONT; ci++)
            if (cells[wi][ci].result[0] && cells[wi][0].result[0] && strcmp(cells[wi][ci].result, cells[wi][0].result))
                die("%s: %s gives %s, the default %s", workloads[wi].name, contenders[ci], cells[wi][ci].result, cells[wi][0].result);
    printf("\n| workload | allocator | time ms | x mimalloc | peak RSS MiB | x mimalloc |\n|---|---|---:|---:|---:|---:|\n");
    for (int wi = 0; wi < NWORK; wi++) {
        double mt = median(cells[wi][C_MIMALLOC].t, reps), mr = median(cells[wi][C_MIMALLOC].rss, reps);
        for (int ci = 0; ci < NCONT; ci++) {
            double t = median(cells[wi][ci].t, reps), rss = median(cells[wi][ci].rss, reps);
            printf("| %s | %s | %.1f | %.3f | %.1f | %.3f |\n", workloads[wi].name, contenders[ci], t / 1e6, t / mt, rss / 1024.0,
                   rss / mr);
        }
    }
    return 0;
}
