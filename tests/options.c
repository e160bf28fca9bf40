/* options.c — SPEC 3.7 option strings through hm_manager_create: keys, sizes, durations, percentages, malformed values, impossible sets, overrides, HOSTMEM_OPTIONS, and the default limit from cgroup/proc fixtures (SPEC 3.2). */
#define _GNU_SOURCE
#include <ftw.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>

#include "testutil.h"

#define KiB ((uint64_t)1 << 10)
#define MiB ((uint64_t)1 << 20)
#define GiB ((uint64_t)1 << 30)
#define TiB ((uint64_t)1 << 40)

static char tmp_root[64]; /* mkdtemp'd fixture directory */

/* ---- helpers ---------------------------------------------------------------------------------- */

/* Creates a manager from opts, expects success, returns its stats, destroys it. */
static hm_manager_stats stats_of(const char *opts)
{
    hm_manager *m = NULL;
    hm_status st = hm_manager_create(opts, &m);
    if (st != HM_OK) fail_msg("hm_manager_create(\"%s\") = %#x: %s", opts, (unsigned)st, hm_last_detail());
    assert_non_null(m);
    hm_manager_stats s;
    assert_int_equal(hm_manager_get_stats(m, &s), HM_OK);
    assert_int_equal(hm_manager_destroy(m), HM_OK);
    return s;
}

/* Expects hm_manager_create(opts) to fail with E_INVALIDARG, *out NULL, and a detail naming `key`
 * (and `key2` if not NULL). */
static void expect_bad2(const char *opts, const char *key, const char *key2)
{
    hm_manager *m = (hm_manager *)(uintptr_t)0x1; /* poisoned: must come back NULL */
    hm_status st = hm_manager_create(opts, &m);
    if (st != HM_E_INVALIDARG) {
        if (st == HM_OK) hm_manager_destroy(m);
        fail_msg("hm_manager_create(\"%s\") = %#x, expected E_INVALIDARG", opts, (unsigned)st);
    }
    if (m != NULL) fail_msg("hm_manager_create(\"%s\") failed but *out = %p", opts, (void *)m);
    const char *d = hm_last_detail();
    if (!d || !strstr(d, key)) fail_msg("hm_manager_create(\"%s\"): detail \"%s\" does not name '%s'", opts, d ? d : "(null)", key);
    if (key2 && !strstr(d, key2))
        fail_msg("hm_manager_create(\"%s\"): detail \"%s\" does not name '%s'", opts, d, key2);
}

static void expect_bad(const char *opts, const char *key) { expect_bad2(opts, key, NULL); }

/* Creates directories of path's parent, then writes text to path. */
static void write_file(const char *path, const char *text)
{
    char dir[512];
    snprintf(dir, sizeof dir, "%s", path);
    for (char *p = dir + 1; *p; p++) {
        if (*p != '/') continue;
        *p = 0;
        mkdir(dir, 0755); /* EEXIST is fine */
        *p = '/';
    }
    FILE *f = fopen(path, "w");
    if (!f) fail_msg("cannot create fixture %s", path);
    fputs(text, f);
    fclose(f);
}

/* A fixture <tmp>/<name>/{proc,cg}: proc/meminfo with MemTotal, proc/self/cgroup with `cgroup_lines`
 * (NULL: no file), and cg/<file> with `value` (file NULL: none). Writes
 * "cgroup.root=...,proc.root=..." into opts. */
static void fixture(const char *name, uint64_t memtotal_kb, const char *cgroup_lines, const char *file,
                    const char *value, char *opts, size_t optslen)
{
    char path[512], text[256];
    snprintf(path, sizeof path, "%s/%s/proc/meminfo", tmp_root, name);
    snprintf(text, sizeof text,
             "MemTotal:       %" PRIu64 " kB\nMemFree:         1000 kB\nMemAvailable:    2000 kB\n", memtotal_kb);
    write_file(path, text);
    if (cgroup_lines) {
        snprintf(path, sizeof path, "%s/%s/proc/self/cgroup", tmp_root, name);
        write_file(path, cgroup_lines);
    }
    snprintf(path, sizeof path, "%s/%s/cg/.keep", tmp_root, name);
    write_file(path, "");
    if (file) {
        snprintf(path, sizeof path, "%s/%s/cg/%s", tmp_root, name, file);
        write_file(path, value);
    }
    snprintf(opts, optslen, "cgroup.root=%s/%s/cg,proc.root=%s/%s/proc", tmp_root, name, tmp_root, name);
}

static int rm_fn(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(p);
}

static int group_setup(void **state)
{
    (void)state;
    snprintf(tmp_root, sizeof tmp_root, "/tmp/hm_options_XXXXXX");
    if (!mkdtemp(tmp_root)) return -1;
    unsetenv("HOSTMEM_OPTIONS");
    /* the process-default manager reads HOSTMEM_OPTIONS once: start it before any test sets it */
    hm_manager_stats s;
    return hm_manager_get_stats(NULL, &s) == HM_OK ? 0 : -1;
}

static int group_teardown(void **state)
{
    (void)state;
    unsetenv("HOSTMEM_OPTIONS");
    nftw(tmp_root, rm_fn, 16, FTW_DEPTH | FTW_PHYS);
    return 0;
}

/* ---- valid keys -------------------------------------------------------------------------------- */

static void test_defaults(void **state)
{
    (void)state;
    hm_manager_stats s = stats_of(NULL);
    assert_int_equal(s.reserve_appdomain, 0);
    assert_int_equal(s.reserve_process, 0);
    assert_true(s.limit > 0);
    assert_int_equal(s.wait_ms[0], 0); /* [3.3] default 0 */
    assert_int_equal(s.wait_ms[1], 0);
    assert_int_equal(s.wait_ms[2], 0);
    assert_int_equal(s.notify_low, 60);  /* [3.5] */
    assert_int_equal(s.notify_high, 90); /* [3.5] */
    assert_int_equal(s.win32_level, HM_LEVEL_PROCESS); /* [5] default eProcessCritical */
    struct rlimit rl;
    assert_int_equal(getrlimit(RLIMIT_AS, &rl), 0);
    uint64_t va = rl.rlim_cur == RLIM_INFINITY ? UINT64_MAX : (uint64_t)rl.rlim_cur;
    assert_int_equal(s.va_limit, va); /* [3.6] default RLIMIT_AS, else unlimited */
    hm_manager_stats e = stats_of("");
    assert_int_equal(e.limit, s.limit);
}

static void test_every_key(void **state)
{
    (void)state;
    hm_manager_stats s = stats_of("limit=64M,reserve.appdomain=8M,reserve.process=4M,wait.task=10,"
                                  "wait.appdomain=20,wait.process=30,notify.low=40,notify.high=80,"
                                  "va.limit=1G,win32.level=appdomain,cgroup.root=/nonexistent-cg,"
                                  "proc.root=/nonexistent-proc"); /* [3.7] every key */
    assert_int_equal(s.limit, 64 * MiB);
    assert_int_equal(s.reserve_appdomain, 8 * MiB);
    assert_int_equal(s.reserve_process, 4 * MiB);
    assert_int_equal(s.wait_ms[HM_LEVEL_TASK], 10);
    assert_int_equal(s.wait_ms[HM_LEVEL_APPDOMAIN], 20);
    assert_int_equal(s.wait_ms[HM_LEVEL_PROCESS], 30);
    assert_int_equal(s.notify_low, 40);
    assert_int_equal(s.notify_high, 80);
    assert_int_equal(s.va_limit, 1 * GiB);
    assert_int_equal(s.win32_level, HM_LEVEL_APPDOMAIN);
    assert_int_equal(stats_of("win32.level=task").win32_level, HM_LEVEL_TASK);
    assert_int_equal(stats_of("win32.level=appdomain").win32_level, HM_LEVEL_APPDOMAIN);
    assert_int_equal(stats_of("win32.level=process").win32_level, HM_LEVEL_PROCESS);
    assert_int_equal(stats_of("va.limit=4096").va_limit, 4096);
}

static void test_size_suffixes(void **state)
{
    (void)state;
    static const struct {
        const char *text;
        uint64_t bytes;
    } cases[] = {
        {"12345", 12345},          {"1k", KiB},       {"3K", 3 * KiB},     {"1m", MiB},
        {"5M", 5 * MiB},           {"1g", GiB},       {"2G", 2 * GiB},     {"1t", TiB},
        {"3T", 3 * TiB},           {"7KB", 7 * KiB},  {"7kb", 7 * KiB},    {"7Kb", 7 * KiB},
        {"7KiB", 7 * KiB},         {"7kib", 7 * KiB}, {"7KIB", 7 * KiB},   {"9MB", 9 * MiB},
        {"9MiB", 9 * MiB},         {"2GB", 2 * GiB},  {"2GiB", 2 * GiB},   {"1TB", TiB},
        {"1TiB", TiB},             {"8mib", 8 * MiB}, {"16777215T", 16777215 * TiB},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char opts[128];
        snprintf(opts, sizeof opts, "limit=%s", cases[i].text); /* [3.7] sizes */
        hm_manager_stats s = stats_of(opts);
        if (s.limit != cases[i].bytes)
            fail_msg("%s: limit %" PRIu64 ", expected %" PRIu64, opts, s.limit, cases[i].bytes);
        snprintf(opts, sizeof opts, "limit=32T,reserve.appdomain=%s", cases[i].text);
        if (cases[i].bytes < 16 * TiB) assert_int_equal(stats_of(opts).reserve_appdomain, cases[i].bytes);
        snprintf(opts, sizeof opts, "limit=32T,reserve.process=%s", cases[i].text);
        if (cases[i].bytes < 16 * TiB) assert_int_equal(stats_of(opts).reserve_process, cases[i].bytes);
        snprintf(opts, sizeof opts, "va.limit=%s", cases[i].text);
        assert_int_equal(stats_of(opts).va_limit, cases[i].bytes);
    }
}

static void test_durations(void **state)
{
    (void)state;
    static const struct {
        const char *text;
        uint32_t ms;
    } cases[] = {
        {"0", 0}, {"250", 250}, {"250ms", 250}, {"250MS", 250}, {"0ms", 0}, {"2s", 2000}, {"2S", 2000},
        {"0s", 0}, {"4294967295", 4294967295u}, {"4294967s", 4294967000u},
    };
    static const char *keys[] = {"wait.task", "wait.appdomain", "wait.process"};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        for (int k = 0; k < 3; k++) {
            char opts[128];
            snprintf(opts, sizeof opts, "%s=%s", keys[k], cases[i].text); /* [3.7] durations */
            hm_manager_stats s = stats_of(opts);
            if (s.wait_ms[k] != cases[i].ms) fail_msg("%s: wait_ms %u, expected %u", opts, s.wait_ms[k], cases[i].ms);
            for (int o = 0; o < 3; o++)
                if (o != k) assert_int_equal(s.wait_ms[o], 0);
        }
}

static void test_percentages(void **state)
{
    (void)state;
    hm_manager_stats s = stats_of("notify.low=10,notify.high=20"); /* [3.7] percentages without % */
    assert_int_equal(s.notify_low, 10);
    assert_int_equal(s.notify_high, 20);
    s = stats_of("notify.low=10%,notify.high=20%"); /* ... and with % */
    assert_int_equal(s.notify_low, 10);
    assert_int_equal(s.notify_high, 20);
    s = stats_of("notify.low=0,notify.high=100%");
    assert_int_equal(s.notify_low, 0);
    assert_int_equal(s.notify_high, 100);
    s = stats_of("notify.low=99%,notify.high=100");
    assert_int_equal(s.notify_low, 99);
    assert_int_equal(s.notify_high, 100);
}

/* ---- malformed values -------------------------------------------------------------------------- */

static void test_malformed_sizes(void **state)
{
    (void)state;
    static const char *keys[] = {"limit", "reserve.appdomain", "reserve.process", "va.limit"};
    static const char *bad[] = {
        "",                     /* empty value */
        "1X", "1KX", "1KBB", "1KiBx", "1Ki", "1iB", "1B", "1 K", " 1K", "1K ", "K", "M", "abc", "0x10", "1.5M",
        "1e6",                  /* junk suffixes */
        "-1", "-1K", "+1",      /* signs */
        "18446744073709551616", /* 2^64: overflow */
        "99999999999999999999999", "16777216T", "17179869184G", "17592186044416M", "18014398509481984K",
        "101%", "1000%", "%", "-5%", "50%%", "50 %", "5.5%",
    };
    for (size_t k = 0; k < sizeof keys / sizeof keys[0]; k++)
        for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
            char opts[128];
            snprintf(opts, sizeof opts, "%s=%s", keys[k], bad[i]); /* [3.7] malformed value */
            expect_bad(opts, keys[k]);
        }
}

static void test_malformed_other(void **state)
{
    (void)state;
    static const char *wkeys[] = {"wait.task", "wait.appdomain", "wait.process"};
    static const char *wbad[] = {"", "-1", "1m", "1min", "1h", "1 s", "1.5s", "ms", "s", "1sec", "1mss",
                                 "10x", "4294967296", "4294968s", "99999999999999999999999ms"};
    char opts[256];
    for (size_t k = 0; k < 3; k++)
        for (size_t i = 0; i < sizeof wbad / sizeof wbad[0]; i++) {
            snprintf(opts, sizeof opts, "%s=%s", wkeys[k], wbad[i]); /* [3.7] malformed duration */
            expect_bad(opts, wkeys[k]);
        }
    static const char *nkeys[] = {"notify.low", "notify.high"};
    static const char *nbad[] = {"", "-1", "101", "101%", "abc", "50%%", "%", "5.5", "10K", "99999999999999999999999"};
    for (size_t k = 0; k < 2; k++)
        for (size_t i = 0; i < sizeof nbad / sizeof nbad[0]; i++) {
            snprintf(opts, sizeof opts, "%s=%s", nkeys[k], nbad[i]); /* [3.7] malformed percentage */
            expect_bad(opts, nkeys[k]);
        }
    static const char *lbad[] = {"", "bogus", "critical", "tasks", "proc", "3", "-1"};
    for (size_t i = 0; i < sizeof lbad / sizeof lbad[0]; i++) {
        snprintf(opts, sizeof opts, "win32.level=%s", lbad[i]); /* [3.7] unknown level name */
        expect_bad(opts, "win32.level");
    }
    static const char *rkeys[] = {"cgroup.root", "proc.root"};
    static const char *rbad[] = {"", "relative/path", "proc", "./proc", "../cg", "~/x"};
    for (size_t k = 0; k < 2; k++)
        for (size_t i = 0; i < sizeof rbad / sizeof rbad[0]; i++) {
            snprintf(opts, sizeof opts, "%s=%s", rkeys[k], rbad[i]); /* [3.7] roots must be absolute */
            expect_bad(opts, rkeys[k]);
        }
}

static void test_malformed_syntax(void **state)
{
    (void)state;
    expect_bad("limit", "limit");                        /* [3.7] missing '=' */
    expect_bad("limit=1M,notify.low", "notify.low");     /* missing '=' in the second option */
    expect_bad("bogus=1", "bogus");                      /* unknown key */
    expect_bad("limit=1M,frobnicate=3", "frobnicate");   /* unknown key after a good one */
    expect_bad("Limit=1M", "Limit");                     /* keys are exact */
    expect_bad(" limit=1M", "limit");                    /* a space is not part of the syntax */
    expect_bad("reserve=1M", "reserve");
    expect_bad("wait=1s", "wait");
    expect_bad("wait.other=1s", "wait.other");
    expect_bad("notify.mid=50", "notify.mid");
    expect_bad("cgroup=/x", "cgroup");
    expect_bad("limit=1M=2", "limit");                   /* '=' inside the value */
    expect_bad("a.very.long.option.key.that.nobody.knows.about=1", "a.very.long.option.key.that.nobody.knows.about");
    /* Empty options name no key; the detail must still say what is wrong (non-empty). */
    static const char *empty[] = {",", ",limit=1M", "limit=1M,", "limit=1M,,notify.low=10", "limit=1M,,",
                                  "=", "=1M"};
    for (size_t i = 0; i < sizeof empty / sizeof empty[0]; i++) {
        hm_manager *m = (hm_manager *)(uintptr_t)0x1;
        hm_status st = hm_manager_create(empty[i], &m); /* [3.7] empty option, trailing comma, empty key */
        if (st != HM_E_INVALIDARG) {
            if (st == HM_OK) hm_manager_destroy(m);
            fail_msg("hm_manager_create(\"%s\") = %#x, expected E_INVALIDARG", empty[i], (unsigned)st);
        }
        assert_null(m);
        assert_true(strlen(hm_last_detail()) > 0);
    }
    /* The detail of a bad value names that key, not a neighbour. */
    expect_bad("limit=1M,notify.high=abc,notify.low=10", "notify.high");
    /* NULL out-pointer */
    assert_int_equal(hm_manager_create("limit=1M", NULL), HM_E_POINTER);
}

static void test_impossible_sets(void **state)
{
    (void)state;
    /* [3.7] Ra + Rp >= L */
    expect_bad2("limit=1M,reserve.appdomain=512K,reserve.process=512K", "reserve.appdomain", "reserve.process");
    expect_bad2("limit=1M,reserve.appdomain=1M", "reserve.appdomain", "limit");
    expect_bad2("limit=1M,reserve.process=1M", "reserve.process", "limit");
    expect_bad2("limit=1M,reserve.process=2M", "reserve.process", "limit");
    expect_bad2("limit=1M,reserve.appdomain=1T,reserve.process=1T", "reserve.appdomain", "reserve.process");
    /* overflow of Ra + Rp must not wrap into a "valid" set */
    expect_bad2("limit=1M,reserve.appdomain=16777215T,reserve.process=16777215T", "reserve.appdomain", "reserve.process");
    expect_bad2("limit=100%,reserve.appdomain=60%,reserve.process=50%", "reserve.appdomain", "reserve.process");
    expect_bad("limit=0", "limit"); /* 0 + 0 >= 0 */
    expect_bad("limit=0%", "limit");
    hm_manager_stats s = stats_of("limit=1M,reserve.appdomain=512K,reserve.process=511K");
    assert_int_equal(s.limit, MiB);
    assert_int_equal(s.reserve_appdomain, 512 * KiB);
    assert_int_equal(s.reserve_process, 511 * KiB);
    s = stats_of("limit=1M,reserve.process=1048575");
    assert_int_equal(s.reserve_process, MiB - 1);
    /* [3.7] notify.low >= notify.high */
    expect_bad2("notify.low=50,notify.high=50", "notify.low", "notify.high");
    expect_bad2("notify.low=70,notify.high=50", "notify.low", "notify.high");
    expect_bad2("notify.low=95", "notify.low", "notify.high");  /* against the default high 90 */
    expect_bad2("notify.high=60", "notify.low", "notify.high"); /* against the default low 60 */
    expect_bad2("notify.low=100,notify.high=100%", "notify.low", "notify.high");
    s = stats_of("notify.high=61");
    assert_int_equal(s.notify_low, 60);
    assert_int_equal(s.notify_high, 61);
    s = stats_of("notify.low=89");
    assert_int_equal(s.notify_low, 89);
    assert_int_equal(s.notify_high, 90);
}

static void test_later_overrides(void **state)
{
    (void)state;
    hm_manager_stats s = stats_of("limit=1M,limit=2M"); /* [3.7] the later one wins */
    assert_int_equal(s.limit, 2 * MiB);
    s = stats_of("limit=2M,limit=1M");
    assert_int_equal(s.limit, MiB);
    s = stats_of("notify.low=95,notify.low=50,win32.level=task,win32.level=appdomain,wait.task=1s,wait.task=7");
    assert_int_equal(s.notify_low, 50);
    assert_int_equal(s.win32_level, HM_LEVEL_APPDOMAIN);
    assert_int_equal(s.wait_ms[0], 7);
    /* an impossible intermediate set is fine as long as the final one is possible */
    s = stats_of("limit=1M,reserve.process=1M,limit=4M");
    assert_int_equal(s.limit, 4 * MiB);
    assert_int_equal(s.reserve_process, MiB);
    /* a later valid value does not excuse an earlier malformed one */
    expect_bad("limit=junk,limit=1M", "limit");
}

/* ---- HOSTMEM_OPTIONS ------------------------------------------------------------------------------ */

static void test_env_override(void **state)
{
    (void)state;
    assert_int_equal(setenv("HOSTMEM_OPTIONS", "limit=8M,notify.low=10,reserve.process=1M,win32.level=task", 1), 0);
    hm_manager_stats s = stats_of("limit=2M,win32.level=appdomain"); /* [3.7] explicit overrides HOSTMEM_OPTIONS */
    assert_int_equal(s.limit, 2 * MiB);
    assert_int_equal(s.win32_level, HM_LEVEL_APPDOMAIN);
    assert_int_equal(s.notify_low, 10);          /* what the explicit string leaves out comes from the variable */
    assert_int_equal(s.reserve_process, MiB);
    s = stats_of(NULL);                          /* the variable alone */
    assert_int_equal(s.limit, 8 * MiB);
    assert_int_equal(s.win32_level, HM_LEVEL_TASK);
    s = stats_of("");
    assert_int_equal(s.limit, 8 * MiB);
    /* the combination is checked after both */
    expect_bad2("limit=1M", "reserve.process", "limit");
    s = stats_of("limit=1M,reserve.process=0");
    assert_int_equal(s.limit, MiB);
    assert_int_equal(s.reserve_process, 0);

    /* [3.7] an invalid HOSTMEM_OPTIONS makes creation fail, whatever the explicit string says */
    static const char *bad_env[] = {"limit=bogus", "frobnicate=1", "limit=1M,", "notify.low"};
    for (size_t i = 0; i < sizeof bad_env / sizeof bad_env[0]; i++) {
        assert_int_equal(setenv("HOSTMEM_OPTIONS", bad_env[i], 1), 0);
        static const char *explicit[] = {NULL, "", "limit=1M", "limit=2M,notify.low=10"};
        for (size_t j = 0; j < sizeof explicit / sizeof explicit[0]; j++) {
            hm_manager *m = (hm_manager *)(uintptr_t)0x1;
            hm_status st = hm_manager_create(explicit[j], &m);
            if (st != HM_E_INVALIDARG) {
                if (st == HM_OK) hm_manager_destroy(m);
                fail_msg("HOSTMEM_OPTIONS=\"%s\", options \"%s\": %#x, expected E_INVALIDARG", bad_env[i],
                         explicit[j] ? explicit[j] : "(null)", (unsigned)st);
            }
            assert_null(m);
            const char *d = hm_last_detail();
            if (strncmp(d, "HOSTMEM_OPTIONS", 15) != 0)
                fail_msg("HOSTMEM_OPTIONS=\"%s\": detail \"%s\" does not start with HOSTMEM_OPTIONS", bad_env[i], d);
        }
    }
    assert_int_equal(setenv("HOSTMEM_OPTIONS", "limit=bogus", 1), 0);
    expect_bad("limit=bogus", "limit");
    assert_int_equal(unsetenv("HOSTMEM_OPTIONS"), 0);
    assert_int_equal(stats_of("limit=3M").limit, 3 * MiB);
    /* the default manager was started before the variable was set, and is unaffected */
    assert_int_equal(hm_manager_get_stats(NULL, &s), HM_OK);
}

/* ---- default limit: cgroup and physical memory (SPEC 3.2) --------------------------------------- */

static uint64_t limit_with(const char *roots, const char *extra)
{
    char opts[512];
    snprintf(opts, sizeof opts, "%s%s%s", roots, extra ? "," : "", extra ? extra : "");
    return stats_of(opts).limit;
}

static void test_default_limit_cgroup_v2(void **state)
{
    (void)state;
    char roots[300];
    const uint64_t mem = 4 * GiB; /* MemTotal 4194304 kB */
    fixture("v2low", mem / 1024, "0::/test.slice\n", "test.slice/memory.max", "1073741824\n", roots, sizeof roots);
    assert_int_equal(limit_with(roots, NULL), 1 * GiB); /* [3.2] the cgroup's limit where lower */
    assert_int_equal(limit_with(roots, "limit=50%"), GiB / 2); /* [3.7] N% of the cgroup memory */
    assert_int_equal(limit_with(roots, "limit=100%"), GiB);
    assert_int_equal(limit_with(roots, "limit=1%"), GiB / 100);
    assert_int_equal(limit_with(roots, "limit=5M"), 5 * MiB); /* the option beats the cgroup */
    assert_int_equal(limit_with(roots, "limit=2G"), 2 * GiB);
    hm_manager_stats s;
    {
        char opts[512];
        snprintf(opts, sizeof opts, "%s,reserve.appdomain=25%%,reserve.process=10%%,va.limit=50%%", roots);
        s = stats_of(opts);
        assert_int_equal(s.limit, GiB);
        assert_int_equal(s.reserve_appdomain, GiB / 4);
        assert_int_equal(s.reserve_process, GiB / 10);
        assert_int_equal(s.va_limit, GiB / 2);
    }

    fixture("v2max", mem / 1024, "0::/test.slice\n", "test.slice/memory.max", "max\n", roots, sizeof roots);
    assert_int_equal(limit_with(roots, NULL), mem); /* "max": no cgroup limit, physical memory */
    assert_int_equal(limit_with(roots, "limit=25%"), mem / 4);

    fixture("v2high", mem / 1024, "0::/test.slice\n", "test.slice/memory.max", "8589934592\n", roots, sizeof roots);
    assert_int_equal(limit_with(roots, NULL), mem); /* cgroup higher than physical: physical */
    assert_int_equal(limit_with(roots, "limit=50%"), mem / 2);

    fixture("v2eq", mem / 1024, "0::/test.slice\n", "test.slice/memory.max", "4294967296\n", roots, sizeof roots);
    assert_int_equal(limit_with(roots, NULL), mem);

    /* exact percentages of a cgroup limit divisible by 100 */
    fixture("v2dec", mem / 1024, "0::/a/b.scope\n", "a/b.scope/memory.max", "1000000000\n", roots, sizeof roots);
    assert_int_equal(limit_with(roots, NULL), 1000000000);
    assert_int_equal(limit_with(roots, "limit=37%"), 370000000);
    /* a fractional result rounds down: 3% of 1073741824 = 32212254.72 */
    fixture("v2frac", mem / 1024, "0::/test.slice\n", "test.slice/memory.max", "1073741824\n", roots, sizeof roots);
    assert_int_equal(limit_with(roots, "limit=3%"), 32212254);

    /* the roots from HOSTMEM_OPTIONS count the same; an explicit limit still wins */
    fixture("v2env", mem / 1024, "0::/test.slice\n", "test.slice/memory.max", "1073741824\n", roots, sizeof roots);
    assert_int_equal(setenv("HOSTMEM_OPTIONS", roots, 1), 0);
    assert_int_equal(stats_of(NULL).limit, GiB);
    assert_int_equal(stats_of("limit=25%").limit, GiB / 4);
    assert_int_equal(stats_of("limit=5M").limit, 5 * MiB);
    assert_int_equal(unsetenv("HOSTMEM_OPTIONS"), 0);

    /* the root cgroup ("0::/") reads <cg>/memory.max */
    fixture("v2root", mem / 1024, "0::/\n", "memory.max", "2147483648\n", roots, sizeof roots);
    assert_int_equal(limit_with(roots, NULL), 2 * GiB);

    /* the cgroup file is missing: physical memory */
    fixture("v2none", mem / 1024, "0::/test.slice\n", NULL, NULL, roots, sizeof roots);
    assert_int_equal(limit_with(roots, NULL), mem);
    /* no /proc/self/cgroup at all */
    fixture("nocg", mem / 1024, NULL, NULL, NULL, roots, sizeof roots);
    assert_int_equal(limit_with(roots, NULL), mem);
    assert_int_equal(limit_with(roots, "limit=10%"), mem / 10);
}

static void test_default_limit_cgroup_v1(void **state)
{
    (void)state;
    char roots[300];
    const uint64_t mem = 2 * GiB;
    fixture("v1", mem / 1024, "12:pids:/grp\n5:memory:/grp\n1:name=systemd:/grp\n", "memory/grp/memory.limit_in_bytes",
            "536870912\n", roots, sizeof roots);
    assert_int_equal(limit_with(roots, NULL), 512 * MiB); /* [3.2] v1 memory.limit_in_bytes */
    assert_int_equal(limit_with(roots, "limit=50%"), 256 * MiB);

    fixture("v1multi", mem / 1024, "4:cpu,memory:/grp\n3:cpuset:/\n", "memory/grp/memory.limit_in_bytes",
            "268435456\n", roots, sizeof roots);
    assert_int_equal(limit_with(roots, NULL), 256 * MiB); /* the controller list names several */

    fixture("v1unl", mem / 1024, "5:memory:/grp\n", "memory/grp/memory.limit_in_bytes", "9223372036854771712\n",
            roots, sizeof roots);
    assert_int_equal(limit_with(roots, NULL), mem); /* v1 "unlimited" */
    assert_int_equal(limit_with(roots, "limit=50%"), mem / 2);

    fixture("v1high", mem / 1024, "5:memory:/grp\n", "memory/grp/memory.limit_in_bytes", "4294967296\n", roots,
            sizeof roots);
    assert_int_equal(limit_with(roots, NULL), mem); /* higher than physical */

    fixture("v1nomem", mem / 1024, "4:cpu,cpuacct:/grp\n", "memory/grp/memory.limit_in_bytes", "268435456\n", roots,
            sizeof roots);
    assert_int_equal(limit_with(roots, NULL), mem); /* no memory controller line: the file is not read */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_every_key),
        cmocka_unit_test(test_size_suffixes),
        cmocka_unit_test(test_durations),
        cmocka_unit_test(test_percentages),
        cmocka_unit_test(test_malformed_sizes),
        cmocka_unit_test(test_malformed_other),
        cmocka_unit_test(test_malformed_syntax),
        cmocka_unit_test(test_impossible_sets),
        cmocka_unit_test(test_later_overrides),
        cmocka_unit_test(test_env_override),
        cmocka_unit_test(test_default_limit_cgroup_v2),
        cmocka_unit_test(test_default_limit_cgroup_v1),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
