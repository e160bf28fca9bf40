/* python_test.c — CPython hosted by hostmem (hostmem/python.h). CPython's hooks are installed once per
 * process, so each scenario runs in a child process of its own (this program with --child NAME):
 *   same      a deterministic workload gives what python3 gives on its default allocator, all charged
 *   refuse    past the budget: MemoryError caught in Python, the interpreter goes on, a later workload
 *             succeeds, the charge comes back to its baseline once the failed work is collected
 *   cycles    a growing workload with reference-cycle garbage and gc.disable(): its peak charge with
 *             collections asked on Low (on) against none (off)
 *   threads   Python threads making garbage at once while one of them runs out of the budget: the
 *             others finish with the right figures, and the collections asked on Low run
 *   parent    a tenant inside a parent budget smaller than its own: the parent's refusal is the
 *             MemoryError, counted as the ancestor's
 *   api       the API's error paths and lifetime (a cmocka group inside the child)
 *   late      install after Py_Initialize is refused
 *   debug     debug hooks on CPython's allocators are refused (PYTHONMALLOC=pymalloc_debug)
 *   malloc    PYTHONMALLOC=malloc: MEM and OBJ go to the tenant's heap directly
 * The children print "key=value" lines; the parent (cmocka) asserts on them. */
#define _GNU_SOURCE
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <errno.h>
#include <inttypes.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include <hostmem/python.h>

#define MiB (1024.0 * 1024.0)
/* no system pressure: a manager reading no /proc sees only its own load (the tests' thresholds) */
#define NOSYS "proc.root=/nonexistent-hostmem-test"

/* ---- the children -------------------------------------------------------------------------------- */

static const char workload[] =
    "import zlib\n"
    "d = {}\n"
    "for i in range(30000):\n"
    "    d[str(i)] = [i, str(i) * 3, {'k': i % 7}, (i, i * i)]\n"
    "s = sorted(d.items(), key=lambda kv: (kv[1][0] % 13, kv[0]))\n"
    "big = ''.join(k + v[1] for k, v in s)\n"
    "result = '%08x-%d-%d' % (zlib.crc32((big + repr(s[:200])).encode()), len(big), sum(v[3][1] % 1000 for k, v in s))\n";

static void install_or_die(const char *options, bool no_collect)
{
    hm_python_config c = {.options = options, .level = HM_LEVEL_TASK, .emergency_level = HM_LEVEL_PROCESS, .no_collect = no_collect};
    hm_status st = hm_python_install(&c);
    if (HM_FAILED(st)) {
        fprintf(stderr, "install: %s\n", hm_last_detail());
        exit(3);
    }
}

static void run_or_die(const char *code)
{
    if (PyRun_SimpleString(code)) {
        fprintf(stderr, "python code failed:\n%s\n", code);
        exit(3);
    }
}

/* A str variable of __main__ (NULL if missing). */
static const char *main_str(const char *name)
{
    PyObject *v = PyDict_GetItemString(PyModule_GetDict(PyImport_AddModule("__main__")), name);
    return v && PyUnicode_Check(v) ? PyUnicode_AsUTF8(v) : NULL;
}

static hm_tenant_stats tstats(void)
{
    hm_tenant_stats s;
    hm_tenant_get_stats(hm_python_tenant(), &s);
    return s;
}

/* The charge once everything collectable is collected and given back. */
static uint64_t settled_charge(void)
{
    run_or_die("import gc; gc.collect()");
    if (HM_FAILED(hm_python_trim())) exit(3); /* (the kept arenas and the heap's empty pages) */
    return tstats().charge;
}

static void print_stats(void)
{
    hm_tenant_stats s = tstats();
    hm_python_stats p;
    hm_python_get_stats(&p);
    printf("charge=%" PRIu64 "\npeak=%" PRIu64 "\nlimit=%" PRIu64 "\nlive=%" PRIu64 "\nbad_frees=%" PRIu64 "\nrefused_task=%" PRIu64
           "\nlow_signals=%" PRIu64 "\ncollections=%" PRIu64 "\ncollected=%" PRIu64 "\narena_bytes=%" PRIu64 "\narena_peak=%" PRIu64 "\narenas=%" PRIu64
           "\narenas_refused=%" PRIu64 "\nwindows=%" PRIu64 "\ngrants=%" PRIu64 "\nasked=%" PRIu64 "\nran=%" PRIu64 "\n",
           s.charge, s.peak_charge, s.limit, s.live_bytes, s.bad_frees, s.refused[0], s.low_signals, s.collections, s.collected_bytes,
           p.arena_bytes, p.arena_peak, p.arenas, p.arenas_refused, p.unwind_windows, p.unwind_grants, p.collections_asked,
           p.collections_run);
}

static int finish(void)
{
    print_stats();
    fflush(stdout);
    if (hm_python_finalize() < 0) return 3;
    return HM_FAILED(hm_python_uninstall()) ? 3 : 0;
}

static int child_same(void)
{
    install_or_die("limit=256M," NOSYS, false);
    Py_Initialize();
    run_or_die(workload);
    printf("result=%s\n", main_str("result"));
    return finish();
}

/* The sum of len(str(i)) for i < n, as the later workload computes it. */
static long digits_sum(long n)
{
    long s = 0;
    char b[32];
    for (long i = 0; i < n; i++) s += snprintf(b, sizeof b, "%ld", i);
    return s;
}

static int child_refuse(void)
{
    install_or_die("limit=48M,reserve.appdomain=0,reserve.process=4M," NOSYS, false);
    Py_Initialize();
    /* the later workload once, so that what it loads for good (code, interned names) is in the baseline */
    run_or_die("def later(n):\n"
               "    d = {i: str(i) for i in range(n)}\n"
               "    return sum(len(v) for v in d.values())\n"
               "later(1000)\n");
    uint64_t base = settled_charge();
    /* one request far past the budget (RAW), then many small objects (arenas, then RAW) */
    run_or_die("try:\n"
               "    x = bytearray(10**9)\n"
               "    big = 'no'\n"
               "except MemoryError:\n"
               "    big = 'yes'\n"
               "hog = []\n"
               "try:\n"
               "    while True:\n"
               "        hog.append(str(len(hog)) * 4)\n"
               "    small = 'no'\n"
               "except MemoryError:\n"
               "    small = 'yes'\n"
               "got = len(hog)\n"
               "del hog\n");
    printf("big_refused=%s\nsmall_refused=%s\n", main_str("big"), main_str("small"));
    hm_tenant_stats during = tstats();
    uint64_t after = settled_charge();
    run_or_die("r = str(later(300000))");
    printf("later=%s\nlater_expected=%ld\n", main_str("r"), digits_sum(300000));
    printf("base=%" PRIu64 "\nafter=%" PRIu64 "\npeak_during=%" PRIu64 "\n", base, after, during.peak_charge);
    return finish();
}

static int child_threads(void)
{
    install_or_die("limit=96M,reserve.appdomain=0,reserve.process=4M,notify.high=40,notify.low=20," NOSYS, false);
    Py_Initialize();
    /* Workers retry an iteration that raised MemoryError (the hog can take the budget while one of
     * them needs memory), and the hog starts once every worker runs: a thread started while the
     * budget is exhausted can hang in CPython's Thread.start() (python.h). */
    run_or_die("import gc, threading\n"
               "gc.disable()\n"
               "sums = [0] * 4\n"
               "oom = []\n"
               "running = threading.Semaphore(0)\n"
               "def work(k):\n"
               "    running.release()\n"
               "    i = 0\n"
               "    while i < 40000:\n"
               "        try:\n"
               "            a = []\n"
               "            a.append([a, bytearray(100 + k)])\n" /* garbage in cycles */
               "            v = sums[k] + i % 7\n"
               "            j = i + 1\n"
               "        except MemoryError:\n"
               "            continue\n"
               "        sums[k] = v\n"
               "        i = j\n"
               "def hog():\n"
               "    h = []\n"
               "    try:\n"
               "        while True:\n"
               "            h.append(str(len(h)) * 8)\n"
               "    except MemoryError:\n"
               "        oom.append(len(h))\n"
               "ts = [threading.Thread(target=work, args=(k,)) for k in range(4)]\n"
               "for t in ts: t.start()\n"
               "for t in ts: running.acquire()\n"
               "ts.append(threading.Thread(target=hog))\n"
               "ts[-1].start()\n"
               "while any(t.is_alive() for t in ts):\n" /* the main thread runs bytecode: it takes the pending calls */
               "    try:\n"
               "        x = [0] * 10\n"
               "    except MemoryError:\n"
               "        pass\n"
               "for t in ts: t.join()\n"
               "sums_ok = 'yes' if sums == [sum(i % 7 for i in range(40000))] * 4 else repr(sums)\n"
               "hog_oom = 'yes' if len(oom) == 1 and oom[0] > 1000 else repr(oom)\n");
    printf("sums_ok=%s\nhog_oom=%s\n", main_str("sums_ok"), main_str("hog_oom"));
    return finish();
}

static int child_parent(void)
{
    hm_manager *parent;
    if (HM_FAILED(hm_manager_create("limit=40M," NOSYS, &parent))) return 3;
    hm_python_config c = {.options = "limit=256M,reserve.process=4M," NOSYS, .parent = parent, .level = HM_LEVEL_TASK,
                          .emergency_level = HM_LEVEL_PROCESS};
    if (HM_FAILED(hm_python_install(&c))) {
        fprintf(stderr, "install: %s\n", hm_last_detail());
        return 3;
    }
    Py_Initialize();
    run_or_die("hog = []\n"
               "try:\n"
               "    while True:\n"
               "        hog.append(str(len(hog)) * 4)\n"
               "    small = 'no'\n"
               "except MemoryError:\n"
               "    small = 'yes'\n"
               "del hog\n"
               "r = str(sum(len(str(i)) for i in range(100000)))\n");
    printf("refused=%s\nlater=%s\nlater_expected=%ld\n", main_str("small"), main_str("r"), digits_sum(100000));
    hm_tenant_stats s = tstats();
    hm_manager_stats ps;
    hm_manager_get_stats(parent, &ps);
    printf("by_ancestor=%" PRIu64 "\nparent_limit=%" PRIu64 "\nparent_peak=%" PRIu64 "\n",
           s.refused_by_ancestor[0] + s.refused_by_ancestor[1] + s.refused_by_ancestor[2], ps.limit, ps.peak_charge);
    return finish(); /* (the tenant, a child of parent, is kept: so is parent) */
}

static int child_cycles(bool on)
{
    install_or_die("limit=128M,notify.high=25,notify.low=10," NOSYS, !on);
    Py_Initialize();
    run_or_die("import gc\n"
               "gc.disable()\n"
               "keep = []\n"
               "for i in range(150000):\n"
               "    a = []\n"
               "    b = [a, bytearray(200)]\n"
               "    a.append(b)\n" /* a cycle: garbage only a collection frees */
               "    keep.append(i % 100)\n"
               "done = str(len(keep))\n");
    printf("done=%s\n", main_str("done"));
    return finish();
}

/* api: the calls' error paths and the lifetime, with cmocka inside this child. */
static void test_api(void **state)
{
    (void)state;
    hm_python_stats s;
    assert_int_equal(hm_python_install(NULL), HM_E_POINTER);
    assert_null(hm_python_tenant());
    assert_int_equal(hm_python_get_stats(&s), HM_E_HOST_INVALIDOPERATION);
    assert_int_equal(hm_python_finalize(), -1);
    assert_int_equal(hm_python_uninstall(), HM_E_HOST_INVALIDOPERATION);
    assert_int_equal(hm_python_trim(), HM_E_HOST_INVALIDOPERATION);
    char buf[16] = "x";
    assert_int_equal(hm_python_report(buf, sizeof buf), 0);
    assert_string_equal(buf, "");
    hm_python_config c = {.options = "limit=lots"};
    assert_int_equal(hm_python_install(&c), HM_E_INVALIDARG);
    assert_non_null(strstr(hm_last_detail(), "limit"));
    c = (hm_python_config){.options = "limit=64M", .level = HM_LEVEL_APPDOMAIN, .emergency_level = HM_LEVEL_TASK};
    assert_int_equal(hm_python_install(&c), HM_E_INVALIDARG);
    assert_non_null(strstr(hm_last_detail(), "level"));
    assert_null(hm_python_tenant()); /* nothing installed by the failures */
    c = (hm_python_config){.name = "api", .options = "limit=64M," NOSYS, .emergency_level = HM_LEVEL_PROCESS};
    assert_int_equal(hm_python_install(&c), HM_OK);
    hm_tenant *t = hm_python_tenant();
    assert_non_null(t);
    assert_string_equal(hm_tenant_name(t), "api");
    assert_int_equal(hm_python_install(&c), HM_E_HOST_INVALIDOPERATION); /* once per process */
    assert_non_null(strstr(hm_last_detail(), "once"));
    Py_Initialize();
    assert_int_equal(PyRun_SimpleString("x = [str(i) for i in range(100000)]"), 0);
    assert_int_equal(hm_python_uninstall(), HM_E_HOST_INVALIDOPERATION); /* still running */
    assert_non_null(strstr(hm_last_detail(), "finalize"));
    assert_int_equal(hm_python_get_stats(NULL), HM_E_POINTER);
    assert_int_equal(hm_python_get_stats(&s), HM_OK);
    assert_true(s.arenas > 0 && s.arena_bytes > 0 && s.arena_peak >= s.arena_bytes);
    hm_tenant_stats ts;
    assert_int_equal(hm_tenant_get_stats(t, &ts), HM_OK);
    assert_true(ts.charge >= s.arena_bytes + ts.live_bytes / 2); /* arenas and heap both charged */
    assert_int_equal(ts.bad_frees, 0);
    /* emptied arenas are kept for reuse, charged, until trimmed (or 100 ms pass, or a refusal) */
    assert_int_equal(PyRun_SimpleString("del x; import gc; gc.collect()"), 0);
    assert_int_equal(hm_python_get_stats(&s), HM_OK);
    assert_true(s.arena_kept >= 2 * 1024 * 1024);
    uint64_t before = ts.charge;
    assert_int_equal(hm_tenant_get_stats(t, &ts), HM_OK);
    assert_true(ts.charge >= s.arena_kept); /* (charged) */
    assert_int_equal(hm_python_trim(), HM_OK);
    assert_int_equal(hm_python_get_stats(&s), HM_OK);
    assert_int_equal(s.arena_kept, 0);
    hm_tenant_stats after;
    assert_int_equal(hm_tenant_get_stats(t, &after), HM_OK);
    assert_true(after.charge + 2 * 1024 * 1024 <= ts.charge && after.charge < before);
    size_t n = hm_python_report(buf, sizeof buf);
    assert_true(n > sizeof buf && strlen(buf) == sizeof buf - 1);
    assert_int_equal(hm_python_finalize(), 0);
    assert_false(Py_IsInitialized());
    assert_int_equal(hm_python_uninstall(), HM_OK);
    assert_null(hm_python_tenant());
    assert_int_equal(hm_python_uninstall(), HM_E_HOST_INVALIDOPERATION);
    assert_int_equal(hm_python_get_stats(&s), HM_OK); /* the figures stay readable */
}

static int child_late(void)
{
    Py_Initialize();
    hm_python_config c = {.options = "limit=64M"};
    hm_status st = hm_python_install(&c);
    printf("status=%#x\ndetail=%s\n", (unsigned)st, hm_last_detail());
    Py_FinalizeEx();
    return 0;
}

static int child_debug(void)
{
    hm_python_config c = {.options = "limit=64M"};
    hm_status st = hm_python_install(&c);
    printf("status=%#x\ndetail=%s\ntenant=%s\n", (unsigned)st, hm_last_detail(), hm_python_tenant() ? "yes" : "no");
    return 0;
}

static int child_malloc(void)
{
    install_or_die("limit=256M," NOSYS, false);
    Py_Initialize();
    run_or_die(workload);
    printf("result=%s\n", main_str("result"));
    return finish();
}

static int child(const char *name)
{
    if (!strcmp(name, "same")) return child_same();
    if (!strcmp(name, "refuse")) return child_refuse();
    if (!strcmp(name, "cycles-on")) return child_cycles(true);
    if (!strcmp(name, "cycles-off")) return child_cycles(false);
    if (!strcmp(name, "threads")) return child_threads();
    if (!strcmp(name, "parent")) return child_parent();
    if (!strcmp(name, "late")) return child_late();
    if (!strcmp(name, "debug")) return child_debug();
    if (!strcmp(name, "malloc")) return child_malloc();
    if (!strcmp(name, "api")) {
        const struct CMUnitTest tests[] = {cmocka_unit_test(test_api)};
        return cmocka_run_group_tests(tests, NULL, NULL);
    }
    fprintf(stderr, "unknown child %s\n", name);
    return 3;
}

/* ---- the parent ---------------------------------------------------------------------------------- */

typedef struct out {
    char text[16384];
    int status; /* the child's exit status, or 128 + its signal */
} out;

/* Runs `cmd` (a shell command) and keeps its stdout. */
static void run_cmd(const char *cmd, out *o)
{
    FILE *f = popen(cmd, "r");
    assert_non_null(f);
    size_t n = fread(o->text, 1, sizeof o->text - 1, f);
    o->text[n] = 0;
    int w = pclose(f);
    o->status = WIFEXITED(w) ? WEXITSTATUS(w) : 128 + (WIFSIGNALED(w) ? WTERMSIG(w) : 0);
    printf("--- %s (status %d)\n%s", cmd, o->status, o->text);
}

static char self[4096];

static void run_child(const char *name, const char *env, out *o)
{
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "%s '%s' --child %s", env ? env : "", self, name);
    run_cmd(cmd, o);
}

static const char *value(const out *o, const char *key)
{
    static char v[256];
    size_t k = strlen(key);
    for (const char *l = o->text; l && *l; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : NULL)
        if (!strncmp(l, key, k) && l[k] == '=') {
            size_t n = strcspn(l + k + 1, "\n");
            if (n >= sizeof v) n = sizeof v - 1;
            memcpy(v, l + k + 1, n);
            v[n] = 0;
            return v;
        }
    fail_msg("no %s in the child's output", key);
    return "";
}

static double num(const out *o, const char *key) { return strtod(value(o, key), NULL); }

/* What python3 computes for the workload on its own allocator. */
static void reference(char *ref, size_t cap)
{
    char path[] = "/tmp/hostmem-python-ref-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, workload, sizeof workload - 1), (ssize_t)(sizeof workload - 1));
    assert_int_equal(write(fd, "print(result)\n", 14), 14);
    close(fd);
    char cmd[256];
    snprintf(cmd, sizeof cmd, "python3 %s", path);
    out o;
    run_cmd(cmd, &o);
    unlink(path);
    assert_int_equal(o.status, 0);
    snprintf(ref, cap, "%.*s", (int)strcspn(o.text, "\n"), o.text);
    assert_true(strlen(ref) > 10);
}

static void test_same_result(void **state)
{
    (void)state;
    char ref[256];
    reference(ref, sizeof ref);
    out o;
    run_child("same", NULL, &o);
    assert_int_equal(o.status, 0);
    assert_string_equal(value(&o, "result"), ref);
    /* the work was charged: arenas (pymalloc) and the heap (RAW) both, and nothing freed twice */
    assert_true(num(&o, "arena_peak") >= 8 * MiB);
    assert_true(num(&o, "peak") >= num(&o, "arena_peak") + 1 * MiB);
    assert_true(num(&o, "live") > 0);
    assert_int_equal(num(&o, "bad_frees"), 0);
    assert_int_equal(num(&o, "refused_task"), 0);
}

static void test_malloc_mode(void **state)
{
    (void)state;
    char ref[256];
    reference(ref, sizeof ref);
    out o;
    run_child("malloc", "PYTHONMALLOC=malloc", &o);
    assert_int_equal(o.status, 0);
    assert_string_equal(value(&o, "result"), ref);
    /* no pymalloc: the objects are the heap's (the arena allocator still serves the frames' stack) */
    assert_true(num(&o, "arena_peak") < 1 * MiB);
    assert_true(num(&o, "peak") >= 8 * MiB);
    assert_int_equal(num(&o, "bad_frees"), 0);
}

/* Tolerance: what the failed work leaves charged once collected. pymalloc releases an arena only when
 * all of its pools are empty (and since 3.9 may keep an empty one against thrashing, bpo-37257); the
 * survivors of the failed work (the MemoryError's bookkeeping, a few interned names) and the objects
 * the later steps allocate can pin a few 1 MiB arenas; the heap keeps its segment headers. 4 MiB
 * covers that, against 40 MiB of work: a leak of the failed work would show as tens of MiB (measured:
 * 1 MiB over the baseline). */
#define REFUSE_TOLERANCE (4 * MiB)

static void test_refusal(void **state)
{
    (void)state;
    out o;
    run_child("refuse", NULL, &o);
    assert_int_equal(o.status, 0);
    assert_string_equal(value(&o, "big_refused"), "yes");
    assert_string_equal(value(&o, "small_refused"), "yes");
    assert_string_equal(value(&o, "later"), value(&o, "later_expected"));
    assert_true(num(&o, "peak") <= num(&o, "limit"));
    assert_true(num(&o, "peak_during") >= num(&o, "limit") - 8 * MiB); /* it did fill the budget */
    assert_true(num(&o, "refused_task") >= 2);
    assert_true(num(&o, "windows") >= 2);
    double base = num(&o, "base"), after = num(&o, "after");
    printf("baseline %.1f MiB, after the refusals %.1f MiB (tolerance %.1f MiB)\n", base / MiB, after / MiB,
           REFUSE_TOLERANCE / MiB);
    assert_true(after <= base + REFUSE_TOLERANCE);
    assert_int_equal(num(&o, "bad_frees"), 0);
}

static void test_cycles(void **state)
{
    (void)state;
    out on, off;
    run_child("cycles-off", NULL, &off);
    run_child("cycles-on", NULL, &on);
    assert_int_equal(off.status, 0);
    assert_int_equal(on.status, 0);
    assert_string_equal(value(&on, "done"), "150000");
    assert_string_equal(value(&off, "done"), "150000");
    assert_int_equal(num(&off, "collections"), 0);
    assert_int_equal(num(&off, "asked"), 0);
    assert_true(num(&off, "low_signals") > 0); /* Low was signalled: nobody collected */
    assert_true(num(&on, "collections") > 0);
    assert_true(num(&on, "ran") == num(&on, "collections"));
    assert_true(num(&on, "collected") >= 8 * MiB); /* what the collections gave back, arenas included */
    double pon = num(&on, "peak"), poff = num(&off, "peak");
    printf("peak charge: %.1f MiB with collections on Low, %.1f MiB without\n", pon / MiB, poff / MiB);
    assert_true(pon < 0.75 * poff);
}

static void test_threads(void **state)
{
    (void)state;
    out o;
    run_child("threads", NULL, &o);
    assert_int_equal(o.status, 0);
    assert_string_equal(value(&o, "sums_ok"), "yes");
    assert_string_equal(value(&o, "hog_oom"), "yes");
    assert_true(num(&o, "peak") <= num(&o, "limit"));
    assert_true(num(&o, "collections") > 0);
    assert_int_equal(num(&o, "bad_frees"), 0);
}

static void test_parent(void **state)
{
    (void)state;
    out o;
    run_child("parent", NULL, &o);
    assert_int_equal(o.status, 0);
    assert_string_equal(value(&o, "refused"), "yes");
    assert_string_equal(value(&o, "later"), value(&o, "later_expected"));
    assert_true(num(&o, "by_ancestor") >= 1);
    assert_true(num(&o, "parent_peak") <= num(&o, "parent_limit"));
    assert_true(num(&o, "peak") <= num(&o, "parent_limit")); /* the tenant's own 256M never came into play */
}

static void test_api_child(void **state)
{
    (void)state;
    out o;
    run_child("api", NULL, &o);
    assert_int_equal(o.status, 0);
}

static void test_install_late(void **state)
{
    (void)state;
    out o;
    run_child("late", NULL, &o);
    assert_int_equal(o.status, 0);
    assert_int_equal((hm_status)strtoul(value(&o, "status"), NULL, 16), HM_E_HOST_INVALIDOPERATION);
    assert_non_null(strstr(value(&o, "detail"), "before Py_Initialize"));
}

static void test_debug_hooks_refused(void **state)
{
    (void)state;
    out o;
    run_child("debug", "PYTHONMALLOC=pymalloc_debug", &o);
    assert_int_equal(o.status, 0);
    assert_int_equal((hm_status)strtoul(value(&o, "status"), NULL, 16), HM_E_INVALIDARG);
    assert_non_null(strstr(value(&o, "detail"), "PYTHONMALLOC"));
    assert_string_equal(value(&o, "tenant"), "no");
}

int main(int argc, char **argv)
{
    if (argc == 3 && !strcmp(argv[1], "--child")) return child(argv[2]);
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n <= 0) return 3;
    self[n] = 0;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_api_child),
        cmocka_unit_test(test_install_late),
        cmocka_unit_test(test_debug_hooks_refused),
        cmocka_unit_test(test_same_result),
        cmocka_unit_test(test_malloc_mode),
        cmocka_unit_test(test_refusal),
        cmocka_unit_test(test_cycles),
        cmocka_unit_test(test_threads),
        cmocka_unit_test(test_parent),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
