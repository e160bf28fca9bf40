/* fuzz_options.c — libFuzzer target for the option parser (SPEC 3.7) behind hm_manager_create.
 *
 * The property: every string either creates a working manager or is HM_E_INVALIDARG with *out NULL
 * and a non-empty hm_last_detail() that names the offending key; nothing else. Each input is tried
 *   1. as a C string (cut at its first NUL), and, if it holds NULs, with every NUL removed;
 *   2. if it holds a NUL: the part after the first NUL (up to the next) as HOSTMEM_OPTIONS, under
 *      the string of 1. It must behave as the two joined with a comma, and a HOSTMEM_OPTIONS that
 *      does not parse must fail with a detail starting "HOSTMEM_OPTIONS".
 * On top of the contract, an independent model of the grammar (SPEC 3.7, and what tests/options.c
 * pins down) judges each key=value item VALID, BAD or UNSURE (what neither fixes: leading zeros,
 * case variants of names, over-long roots, zero va.limit, ...). When every item up to the first BAD
 * one is VALID, the outcome is predicted exactly: the failure and the key its detail must name, or
 * success with the manager's stats equal to the values written (percentages resolved against the
 * memory a default manager sees, unless the string moves cgroup.root or proc.root). The model knows
 * the keys of src/manager/options.c; a new key must be added to `keys` below.
 *
 * Any violation prints what differed and aborts. HOSTMEM_OPTIONS is cleared at start so that the
 * process environment cannot change the predictions; the library reads it at every creation. */
#define _GNU_SOURCE
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <hostmem/hostmem.h>

#include "manager/options.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_ITEMS_NAMED 40 /* at most this many leading bytes of a name are looked for in the detail */

/* ---- reporting ---------------------------------------------------------------------------------- */

static void print_escaped(const char *label, const char *s, size_t n)
{
    fprintf(stderr, "%s \"", label);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c < 0x7f && c != '"' && c != '\\') fputc(c, stderr);
        else fprintf(stderr, "\\x%02x", c);
    }
    fprintf(stderr, "\" (%zu bytes)\n", n);
}

static const char *cur_opts, *cur_env; /* what the failing call was given, for the report */

static void __attribute__((noreturn, format(printf, 1, 2))) violation(const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "\nfuzz_options: CONTRACT VIOLATION: ");
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    if (cur_opts) print_escaped("  options", cur_opts, strlen(cur_opts));
    if (cur_env) print_escaped("  HOSTMEM_OPTIONS", cur_env, strlen(cur_env));
    const char *d = hm_last_detail();
    print_escaped("  hm_last_detail()", d ? d : "(null)", d ? strlen(d) : 6);
    abort();
}

/* ---- what a default manager sees ---------------------------------------------------------------- */

static uint64_t memory_bytes; /* what N% is a percentage of: the default limit (SPEC 3.2) */
static uint64_t default_va;   /* va.limit when not written */

/* ---- the model ------------------------------------------------------------------------------------ */

typedef enum { V_BAD, V_OK, V_UNSURE } verdict;
typedef enum {
    T_SIZE, T_SIZE_NONZERO, T_DURATION, T_PERCENT, T_LEVEL, T_SWITCH, T_PATH,
    /* the drop-in malloc's keys (src/preload): checked, changing nothing a manager's stats show */
    T_MLEVEL, T_INVALID_FREE, T_MDURATION, T_SITES, T_REPORT, T_FORMAT, T_UNSURE
} vtype;

typedef struct size_val {
    uint64_t bytes;
    uint32_t pct;
    bool is_pct;
} size_val;

typedef struct model {
    size_val limit, ra, rp, va;
    bool limit_set, va_set, roots_set;
    uint32_t wait_ms[3], notify_low, notify_high, level, psi_some, psi_full;
} model;

enum {
    K_LIMIT, K_RA, K_RP, K_VA, K_WT, K_WA, K_WP, K_NL, K_NH, K_LEVEL, K_GUARD, K_CGROUP, K_PROC,
    K_MLEVEL, K_MINVALID, K_MUNWIND, K_MUNWIND_TIME, K_MSITES, K_MMMAP, K_STATS, K_REPORT, K_RFORMAT, K_PSI_SOME,
    K_PSI_FULL, K_COUNT
};
static const struct {
    const char *name;
    vtype type;
} keys[K_COUNT] = {
    [K_LIMIT] = {"limit", T_SIZE_NONZERO},   [K_RA] = {"reserve.appdomain", T_SIZE},
    [K_RP] = {"reserve.process", T_SIZE},    [K_VA] = {"va.limit", T_SIZE_NONZERO},
    [K_WT] = {"wait.task", T_DURATION},      [K_WA] = {"wait.appdomain", T_DURATION},
    [K_WP] = {"wait.process", T_DURATION},   [K_NL] = {"notify.low", T_PERCENT},
    [K_NH] = {"notify.high", T_PERCENT},     [K_LEVEL] = {"win32.level", T_LEVEL},
    [K_GUARD] = {"heap.guard", T_SWITCH},    [K_CGROUP] = {"cgroup.root", T_PATH},
    [K_PROC] = {"proc.root", T_PATH},
    [K_MLEVEL] = {"malloc.level", T_MLEVEL}, [K_MINVALID] = {"malloc.invalid_free", T_INVALID_FREE},
    /* (an explicit malloc.unwind must stay below limit less the reserves: left to the unit tests) */
    [K_MUNWIND] = {"malloc.unwind", T_UNSURE}, [K_MUNWIND_TIME] = {"malloc.unwind_time", T_MDURATION},
    [K_MSITES] = {"malloc.sites", T_SITES},  [K_MMMAP] = {"malloc.mmap", T_SWITCH},
    [K_STATS] = {"stats", T_SWITCH},         [K_REPORT] = {"report", T_REPORT},
    [K_RFORMAT] = {"report.format", T_FORMAT},
    [K_PSI_SOME] = {"psi.some", T_PERCENT},  [K_PSI_FULL] = {"psi.full", T_PERCENT},
};

static bool is_digit(char c) { return c >= '0' && c <= '9'; }

/* Leading digits of s[0..n): their count in *nd; BAD if none or the number passes 64 bits, UNSURE
 * for a leading zero followed by more digits (decimal or not: neither SPEC nor tests say). */
static verdict number(const char *s, size_t n, uint64_t *v, size_t *nd)
{
    size_t d = 0;
    uint64_t x = 0;
    bool overflow = false;
    while (d < n && is_digit(s[d])) {
        unsigned digit = (unsigned)(s[d] - '0');
        if (x > (UINT64_MAX - digit) / 10) overflow = true;
        else x = x * 10 + digit;
        d++;
    }
    *nd = d;
    *v = x;
    if (d == 0 || overflow) return V_BAD;
    if (d > 1 && s[0] == '0') return V_UNSURE;
    return V_OK;
}

static verdict judge_size(const char *s, size_t n, size_val *out)
{
    uint64_t v;
    size_t d;
    verdict r = number(s, n, &v, &d);
    if (r == V_BAD) return V_BAD;
    const char *suf = s + d;
    size_t sn = n - d;
    if (sn == 1 && suf[0] == '%') {
        if (v > 100) return V_BAD; /* tests: 101% */
        *out = (size_val){0, (uint32_t)v, true};
        return r;
    }
    unsigned shift = 0;
    if (sn > 0) { /* K, M, G or T, then nothing, B or iB; any case (| 0x20 folds exactly these letters) */
        switch (suf[0] | 0x20) {
        case 'k': shift = 10; break;
        case 'm': shift = 20; break;
        case 'g': shift = 30; break;
        case 't': shift = 40; break;
        default: return V_BAD;
        }
        bool b = sn == 2 && (suf[1] | 0x20) == 'b';
        bool ib = sn == 3 && (suf[1] | 0x20) == 'i' && (suf[2] | 0x20) == 'b';
        if (sn != 1 && !b && !ib) return V_BAD; /* tests: 1KBB, 1Ki, 1KiBx */
    }
    if (shift && v > (UINT64_MAX >> shift)) return V_BAD; /* tests: 16777216T */
    *out = (size_val){v << shift, 0, false};
    return r;
}

static verdict judge_duration(const char *s, size_t n, uint32_t *ms)
{
    uint64_t v;
    size_t d;
    verdict r = number(s, n, &v, &d);
    if (r == V_BAD) return V_BAD;
    const char *suf = s + d;
    size_t sn = n - d;
    uint64_t mult;
    if (sn == 0) mult = 1;
    else if (sn == 2 && (suf[0] | 0x20) == 'm' && (suf[1] | 0x20) == 's') mult = 1;
    else if (sn == 1 && (suf[0] | 0x20) == 's') mult = 1000;
    else return V_BAD;
    if (v > UINT32_MAX / mult) return V_BAD; /* tests: 4294967296, 4294968s */
    *ms = (uint32_t)(v * mult);
    return r;
}

static verdict judge_percent(const char *s, size_t n, uint32_t *pct)
{
    if (n && s[n - 1] == '%') n--;
    uint64_t v;
    size_t d;
    verdict r = number(s, n, &v, &d);
    if (r == V_BAD || d != n || v > 100) return V_BAD;
    *pct = (uint32_t)v;
    return r;
}

/* The exact lower-case names are valid, other cases of them UNSURE (not pinned), the rest BAD. */
static verdict judge_word(const char *s, size_t n, const char *const *words, size_t nwords, size_t *which)
{
    for (size_t i = 0; i < nwords; i++) {
        if (strlen(words[i]) != n) continue;
        if (!memcmp(s, words[i], n)) {
            *which = i;
            return V_OK;
        }
        if (!strncasecmp(s, words[i], n)) return V_UNSURE;
    }
    return V_BAD;
}

/* One key=value item: its verdict, and what the detail must name if it is BAD (NULL: nothing). */
static verdict judge_item(const char *s, size_t n, model *m, const char **name, size_t *name_len)
{
    *name = NULL;
    *name_len = 0;
    if (n == 0) return V_BAD; /* an empty option names no key */
    const char *eq = memchr(s, '=', n);
    if (!eq) { /* no '=': the whole item is what the detail names (tests: "limit", "notify.low") */
        *name = s;
        *name_len = n;
        return V_BAD;
    }
    size_t klen = (size_t)(eq - s);
    if (klen == 0) return V_BAD; /* "=1M": no key to name */
    *name = s;
    *name_len = klen;
    int k = -1;
    for (int i = 0; i < K_COUNT; i++)
        if (strlen(keys[i].name) == klen && !memcmp(s, keys[i].name, klen)) k = i;
    if (k < 0) return V_BAD; /* an unknown key (exact match: "Limit" is unknown too) */
    const char *v = eq + 1;
    size_t vn = n - klen - 1;
    verdict r;
    size_val sz = {0, 0, false};
    switch (keys[k].type) {
    case T_SIZE:
    case T_SIZE_NONZERO:
        r = judge_size(v, vn, &sz);
        /* limit=0 (bytes) is refused; whether as a malformed value or as an impossible set is open
         * (it matters for "limit=0,limit=1M"); va.limit=0 is not pinned at all */
        if (r != V_BAD && keys[k].type == T_SIZE_NONZERO && !sz.is_pct && sz.bytes == 0) r = V_UNSURE;
        if (r == V_BAD) break;
        if (k == K_LIMIT) m->limit = sz, m->limit_set = true;
        else if (k == K_RA) m->ra = sz;
        else if (k == K_RP) m->rp = sz;
        else m->va = sz, m->va_set = true;
        break;
    case T_DURATION: r = judge_duration(v, vn, &m->wait_ms[k - K_WT]); break;
    case T_PERCENT:
        r = judge_percent(v, vn, k == K_NL ? &m->notify_low : k == K_NH ? &m->notify_high
                                 : k == K_PSI_SOME ? &m->psi_some : &m->psi_full);
        break;
    case T_LEVEL: {
        static const char *const levels[] = {"task", "appdomain", "process"};
        size_t which = 0;
        r = judge_word(v, vn, levels, 3, &which);
        if (r == V_OK) m->level = (uint32_t)which;
        break;
    }
    case T_SWITCH: { /* options.h's words; heap.guard changes nothing the stats show */
        static const char *const words[] = {"on", "off", "true", "false", "yes", "no", "1", "0"};
        size_t which = 0;
        r = judge_word(v, vn, words, 8, &which);
        break;
    }
    case T_PATH:
        if (vn == 0 || v[0] != '/') r = V_BAD; /* tests: empty, relative */
        else r = vn < 100 ? V_OK : V_UNSURE; /* the length bound is the implementation's */
        m->roots_set = true;                 /* either way the memory seen may change */
        break;
    case T_MLEVEL: {
        static const char *const levels[] = {"task", "appdomain", "process"};
        size_t which = 0;
        r = judge_word(v, vn, levels, 3, &which);
        break;
    }
    case T_INVALID_FREE: {
        static const char *const words[] = {"abort", "ignore"};
        size_t which = 0;
        r = judge_word(v, vn, words, 2, &which);
        break;
    }
    case T_FORMAT: {
        static const char *const words[] = {"text", "json"};
        size_t which = 0;
        r = judge_word(v, vn, words, 2, &which);
        break;
    }
    case T_MDURATION: {
        uint32_t ms;
        r = judge_duration(v, vn, &ms);
        break;
    }
    case T_SITES: { /* frames: 0 to 32 */
        uint64_t d;
        size_t nd;
        r = number(v, vn, &d, &nd);
        if (r != V_BAD && (nd != vn || d > 32)) r = V_BAD;
        break;
    }
    case T_REPORT: r = vn == 0 ? V_BAD : vn < 256 ? V_OK : V_UNSURE; break; /* (the bound is ours) */
    default: r = V_UNSURE; break;
    }
    return r;
}

typedef enum { P_UNKNOWN, P_FAIL_ITEM, P_RESOLVE } prediction_kind;

typedef struct prediction {
    prediction_kind kind;
    const char *name; /* P_FAIL_ITEM: what the detail names (NULL: nothing to name) */
    size_t name_len;
    model m;          /* P_RESOLVE: the values after every item */
} prediction;

/* Runs the model over s: stops at the first BAD item, or at an UNSURE one (nothing predicted). */
static prediction predict(const char *s)
{
    prediction p;
    memset(&p, 0, sizeof p);
    p.kind = P_RESOLVE;
    p.m.notify_low = 60;
    p.m.notify_high = 90;
    p.m.psi_some = 10;
    p.m.psi_full = 5;
    p.m.level = HM_LEVEL_PROCESS;
    if (!*s) return p; /* "" is the defaults */
    for (;;) {
        const char *end = strchr(s, ',');
        size_t len = end ? (size_t)(end - s) : strlen(s);
        const char *name;
        size_t nl;
        verdict v = judge_item(s, len, &p.m, &name, &nl);
        if (v == V_UNSURE) {
            p.kind = P_UNKNOWN;
            return p;
        }
        if (v == V_BAD) {
            p.kind = P_FAIL_ITEM;
            p.name = name;
            p.name_len = nl;
            return p;
        }
        if (!end) return p;
        s = end + 1;
        if (!*s) { /* a trailing comma: an empty option */
            p.kind = P_FAIL_ITEM;
            return p;
        }
    }
}

static uint64_t resolve(const size_val *v)
{
    return v->is_pct ? (uint64_t)((unsigned __int128)memory_bytes * v->pct / 100) : v->bytes;
}

/* ---- checking one creation ---------------------------------------------------------------------- */

static bool nameable(const char *s, size_t n)
{
    if (n == 0) return false;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20 || (unsigned char)s[i] >= 0x7f) return false;
    return true;
}

static bool detail_has(const char *d, const char *name, size_t n)
{
    if (n > MAX_ITEMS_NAMED) n = MAX_ITEMS_NAMED;
    return memmem(d, strlen(d), name, n) != NULL;
}

/* A manager that was just created: its stats, its load, a small commit and release, destroyed. */
static void exercise(hm_manager *m, hm_manager_stats *out)
{
    hm_manager_stats s;
    hm_status st = hm_manager_get_stats(m, &s);
    if (st != HM_OK) violation("hm_manager_get_stats = %#x on a new manager", (unsigned)st);
    if (s.state != HM_MANAGER_RUNNING || s.charge != 0 || s.va_used != 0)
        violation("new manager: state %d, charge %" PRIu64 ", va_used %" PRIu64, (int)s.state, s.charge, s.va_used);
    if (s.limit == 0 || s.reserve_appdomain >= s.limit || s.reserve_process >= s.limit - s.reserve_appdomain)
        violation("created with an impossible set: limit %" PRIu64 ", reserves %" PRIu64 " + %" PRIu64, s.limit,
                  s.reserve_appdomain, s.reserve_process);
    if (s.notify_low >= s.notify_high || s.notify_high > 100 || s.win32_level > HM_LEVEL_PROCESS || s.va_limit == 0)
        violation("created with notify %u/%u, win32.level %d, va.limit %" PRIu64, s.notify_low, s.notify_high,
                  (int)s.win32_level, s.va_limit);
    uint32_t load = 1000;
    uint64_t avail = 0;
    if ((st = hm_manager_get_memory_load(m, &load, &avail)) != HM_OK)
        violation("hm_manager_get_memory_load = %#x on a new manager", (unsigned)st);
    if (load > 100 || avail > s.limit)
        violation("memory load %u, available %" PRIu64 " with limit %" PRIu64, load, avail, s.limit);
    if ((st = hm_manager_get_memory_load(m, NULL, NULL)) != HM_OK)
        violation("hm_manager_get_memory_load(NULL, NULL) = %#x", (unsigned)st);

    /* A 4 KiB commit at the Win32 level: admitted iff it fits that level's threshold (SPEC 3.2).
     * Never made where a refusal would wait (wait.* > 0) or where va.limit could refuse it. */
    uint64_t thr = s.win32_level == HM_LEVEL_TASK        ? s.limit - s.reserve_appdomain - s.reserve_process
                   : s.win32_level == HM_LEVEL_APPDOMAIN ? s.limit - s.reserve_process
                                                         : s.limit;
    bool fits = thr >= 4096;
    if (s.va_limit >= (1u << 20) && (fits || s.wait_ms[s.win32_level] == 0)) {
        void *p = (void *)(uintptr_t)0x1;
        st = hm_virtual_alloc(m, NULL, 4096, HM_MEM_RESERVE | HM_MEM_COMMIT, HM_PAGE_READWRITE, &p);
        if (fits) {
            if (st != HM_OK || !p) violation("4 KiB commit under threshold %" PRIu64 ": %#x, %p", thr, (unsigned)st, p);
            volatile unsigned char *b = p;
            if (b[0] || b[4095]) violation("a new commit does not read as zero");
            b[0] = 1;
            b[4095] = 2;
            hm_manager_stats s2;
            hm_manager_get_stats(m, &s2);
            if (s2.charge != 4096) violation("charge %" PRIu64 " after a 4 KiB commit", s2.charge);
            if ((st = hm_virtual_free(m, p, 0, HM_MEM_RELEASE)) != HM_OK) violation("release = %#x", (unsigned)st);
            hm_manager_get_stats(m, &s2);
            if (s2.charge != 0) violation("charge %" PRIu64 " after the release", s2.charge);
        } else if (st != HM_E_COMMITMENT_LIMIT || p) {
            violation("4 KiB commit over threshold %" PRIu64 ": %#x, %p (expected ERROR_COMMITMENT_LIMIT, NULL)", thr,
                      (unsigned)st, p);
        }
    }
    if ((st = hm_manager_destroy(m)) != HM_OK) violation("hm_manager_destroy = %#x", (unsigned)st);
    if (out) *out = s;
}

typedef struct outcome {
    hm_status st;
    hm_manager_stats s; /* on success */
} outcome;

/* hm_manager_create(opts) with the general contract checked; the manager is exercised and gone. */
static outcome create_checked(const char *opts)
{
    outcome o;
    memset(&o, 0, sizeof o);
    hm_manager *m = (hm_manager *)(uintptr_t)0x1; /* poisoned: must come back set */
    o.st = hm_manager_create(opts, &m);
    if (o.st == HM_OK) {
        if (!m) violation("success with *out NULL");
        exercise(m, &o.s);
        return o;
    }
    if (o.st != HM_E_INVALIDARG) violation("status %#x: neither success nor E_INVALIDARG", (unsigned)o.st);
    if (m != NULL) violation("failed, but *out = %p (must be NULL)", (void *)m);
    const char *d = hm_last_detail();
    if (!d || !*d) violation("failed with an empty detail");
    return o;
}

static void check_prediction(const char *opts, const outcome *o)
{
    prediction p = predict(opts);
    const char *d = hm_last_detail();
    if (p.kind == P_UNKNOWN) return;
    if (p.kind == P_FAIL_ITEM) {
        if (o->st == HM_OK) violation("created, but the model says the option string is malformed");
        if (p.name && nameable(p.name, p.name_len) && !detail_has(d, p.name, p.name_len)) {
            char buf[MAX_ITEMS_NAMED + 1];
            size_t n = p.name_len < MAX_ITEMS_NAMED ? p.name_len : MAX_ITEMS_NAMED;
            memcpy(buf, p.name, n);
            buf[n] = 0;
            violation("the detail does not name the offending key '%s'", buf);
        }
        return;
    }
    if (p.m.roots_set) return; /* the memory seen (limit default, N%) is the roots' */
    /* every item is valid: the resolution decides (SPEC 3.7: impossible sets) */
    uint64_t L = p.m.limit_set ? resolve(&p.m.limit) : memory_bytes;
    uint64_t ra = resolve(&p.m.ra), rp = resolve(&p.m.rp);
    uint64_t va = p.m.va_set ? resolve(&p.m.va) : default_va;
    const char *names[6];
    int nn = 0;
    if (L == 0) names[nn++] = "limit";
    if (ra >= L || rp >= L - ra) { /* Ra + Rp >= L, without wrapping */
        names[nn++] = "limit";
        names[nn++] = "reserve.appdomain";
        names[nn++] = "reserve.process";
    }
    if (p.m.notify_low >= p.m.notify_high) {
        names[nn++] = "notify.low";
        names[nn++] = "notify.high";
    }
    if (va == 0) names[nn++] = "va.limit";
    if (nn) {
        if (o->st == HM_OK)
            violation("created an impossible set: limit %" PRIu64 ", reserves %" PRIu64 " + %" PRIu64
                      ", notify %u/%u, va.limit %" PRIu64,
                      L, ra, rp, p.m.notify_low, p.m.notify_high, va);
        for (int i = 0; i < nn; i++)
            if (strstr(d, names[i])) return;
        violation("impossible set refused, but the detail names none of its keys (%s ...)", names[0]);
    }
    if (o->st != HM_OK) violation("refused (%#x), but every option is valid and the set possible", (unsigned)o->st);
    const hm_manager_stats *s = &o->s;
    if (s->limit != L || s->reserve_appdomain != ra || s->reserve_process != rp || s->va_limit != va ||
        s->wait_ms[0] != p.m.wait_ms[0] || s->wait_ms[1] != p.m.wait_ms[1] || s->wait_ms[2] != p.m.wait_ms[2] ||
        s->notify_low != p.m.notify_low || s->notify_high != p.m.notify_high || (uint32_t)s->win32_level != p.m.level ||
        s->psi_some != p.m.psi_some || s->psi_full != p.m.psi_full)
        violation("stats differ from the options: limit %" PRIu64 "/%" PRIu64 ", Ra %" PRIu64 "/%" PRIu64
                  ", Rp %" PRIu64 "/%" PRIu64 ", va %" PRIu64 "/%" PRIu64 ", wait %u,%u,%u/%u,%u,%u, notify %u,%u/%u,%u"
                  ", level %d/%u, psi %u,%u/%u,%u (got/expected)",
                  s->limit, L, s->reserve_appdomain, ra, s->reserve_process, rp, s->va_limit, va, s->wait_ms[0],
                  s->wait_ms[1], s->wait_ms[2], p.m.wait_ms[0], p.m.wait_ms[1], p.m.wait_ms[2], s->notify_low,
                  s->notify_high, p.m.notify_low, p.m.notify_high, (int)s->win32_level, p.m.level, s->psi_some,
                  s->psi_full, p.m.psi_some, p.m.psi_full);
}

static outcome check_string(const char *opts)
{
    cur_opts = opts;
    cur_env = NULL;
    outcome o = create_checked(opts);
    check_prediction(opts, &o);
    return o;
}

/* ---- HOSTMEM_OPTIONS ------------------------------------------------------------------------------ */

/* putenv'd in place (no copy, nothing kept by libc per input), and unset again after each use.
 * hostmem starts no thread here (no callback is ever registered), so nothing reads the environment
 * concurrently. */
#define ENV_PREFIX "HOSTMEM_OPTIONS="
static char env_buf[sizeof ENV_PREFIX + 4096];

static bool same_settings(const hm_manager_stats *a, const hm_manager_stats *b)
{
    return a->limit == b->limit && a->reserve_appdomain == b->reserve_appdomain &&
           a->reserve_process == b->reserve_process && a->va_limit == b->va_limit && a->wait_ms[0] == b->wait_ms[0] &&
           a->wait_ms[1] == b->wait_ms[1] && a->wait_ms[2] == b->wait_ms[2] && a->notify_low == b->notify_low &&
           a->notify_high == b->notify_high && a->win32_level == b->win32_level && a->psi_some == b->psi_some &&
           a->psi_full == b->psi_full;
}

static void check_env(const char *env, const char *opts)
{
    size_t el = strlen(env);
    if (!el || el >= sizeof env_buf - sizeof ENV_PREFIX) return;
    /* would the variable alone parse? (the library's own parser: only to know which part is at fault) */
    hm_options po;
    hm_options_defaults(&po);
    char err[256];
    bool env_parses = hm_options_apply(&po, env, err, sizeof err) == HM_OK;
    /* the equivalent explicit string: the variable's options, then the string's */
    size_t ol = strlen(opts);
    char *joined = malloc(el + ol + 2);
    memcpy(joined, env, el);
    if (ol) joined[el] = ',', memcpy(joined + el + 1, opts, ol + 1);
    else joined[el] = 0;
    outcome want = check_string(joined);

    memcpy(env_buf, ENV_PREFIX, sizeof ENV_PREFIX - 1);
    memcpy(env_buf + sizeof ENV_PREFIX - 1, env, el + 1);
    if (putenv(env_buf) != 0) abort();
    cur_opts = opts;
    cur_env = env;
    outcome got = create_checked(opts);
    const char *d = hm_last_detail();
    if (!env_parses) {
        if (got.st == HM_OK) violation("created although HOSTMEM_OPTIONS does not parse");
        if (strncmp(d, "HOSTMEM_OPTIONS", 15) != 0) violation("a bad HOSTMEM_OPTIONS, but the detail does not say so");
    } else if (got.st != want.st) {
        violation("with HOSTMEM_OPTIONS: %#x; the same options joined explicitly: %#x", (unsigned)got.st,
                  (unsigned)want.st);
    } else if (got.st == HM_OK && !same_settings(&got.s, &want.s)) {
        violation("with HOSTMEM_OPTIONS the settings differ from the same options joined explicitly");
    }
    unsetenv("HOSTMEM_OPTIONS");
    cur_env = NULL;
    free(joined);
}

/* ---- entry points ---------------------------------------------------------------------------------- */

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    unsetenv("HOSTMEM_OPTIONS"); /* the predictions assume none */
    hm_manager *m;
    if (hm_manager_create("", &m) != HM_OK) {
        fprintf(stderr, "fuzz_options: no default manager: %s\n", hm_last_detail());
        abort();
    }
    hm_manager_stats s;
    hm_manager_get_stats(m, &s);
    memory_bytes = s.limit;
    default_va = s.va_limit;
    hm_manager_destroy(m);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 4096) return 0; /* option strings are short; longer inputs only slow the search */
    char *s = malloc(size + 1);
    memcpy(s, data, size);
    s[size] = 0;
    size_t first = strlen(s);

    check_string(s);
    if (hm_manager_create(s, NULL) != HM_E_POINTER) violation("a NULL out is not E_POINTER");

    if (first < size) {
        /* the same bytes without their NULs */
        char *joined = malloc(size + 1);
        size_t n = 0;
        for (size_t i = 0; i < size; i++)
            if (data[i]) joined[n++] = (char)data[i];
        joined[n] = 0;
        check_string(joined);
        free(joined);
        /* the part after the first NUL as HOSTMEM_OPTIONS, under the part before it */
        check_env(s + first + 1, s);
    }
    free(s);
    cur_opts = cur_env = NULL;
    return 0;
}
