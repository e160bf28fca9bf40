/* options.c — parsing and resolving the manager's options (options.h, SPEC 3.7). */
#define _GNU_SOURCE
#include "options.h"

#include <ctype.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "../os/os.h"

void hm_options_defaults(hm_options *o)
{
    memset(o, 0, sizeof *o);
    o->notify_low = 60;
    o->notify_high = 90;
    o->va_limit = UINT64_MAX;
    o->win32_level = 2; /* eProcessCritical */
    o->malloc_level = 2;
    o->unwind_ms = 500;
    o->malloc_mmap = true;
    o->psi_some = 10;
    o->psi_full = 5;
    snprintf(o->cgroup_root, sizeof o->cgroup_root, "/sys/fs/cgroup");
    snprintf(o->proc_root, sizeof o->proc_root, "/proc");
}

static hm_status bad(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static hm_status bad(char *err, size_t errlen, const char *fmt, ...)
{
    if (err && errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return HM_E_INVALIDARG;
}

/* Digits only, no sign, no overflow. */
static bool parse_uint(const char *s, size_t n, uint64_t *out)
{
    if (n == 0) return false;
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++) {
        if (!isdigit((unsigned char)s[i])) return false;
        unsigned d = (unsigned)(s[i] - '0');
        if (v > (UINT64_MAX - d) / 10) return false;
        v = v * 10 + d;
    }
    *out = v;
    return true;
}

/* A number and what follows it: "64K" gives 64 and "K". */
static bool split_number(const char *s, size_t n, uint64_t *v, const char **suf, size_t *sn)
{
    size_t d = 0;
    while (d < n && isdigit((unsigned char)s[d])) d++;
    if (!parse_uint(s, d, v)) return false;
    *suf = s + d;
    *sn = n - d;
    return true;
}

static bool parse_size(const char *s, size_t n, hm_size_opt *out)
{
    uint64_t v;
    const char *suf;
    size_t sn;
    if (!split_number(s, n, &v, &suf, &sn)) return false;
    if (sn == 1 && suf[0] == '%') {
        if (v > 100) return false;
        *out = (hm_size_opt){0, (uint32_t)v, true};
        return true;
    }
    unsigned shift = 0;
    if (sn > 0) {
        switch (tolower((unsigned char)suf[0])) {
        case 'k': shift = 10; break;
        case 'm': shift = 20; break;
        case 'g': shift = 30; break;
        case 't': shift = 40; break;
        default: return false;
        }
        if (!(sn == 1 || (sn == 2 && tolower((unsigned char)suf[1]) == 'b') ||
              (sn == 3 && tolower((unsigned char)suf[1]) == 'i' && tolower((unsigned char)suf[2]) == 'b')))
            return false;
    }
    if (shift && v > (UINT64_MAX >> shift)) return false;
    *out = (hm_size_opt){v << shift, 0, false};
    return true;
}

static bool parse_duration(const char *s, size_t n, uint32_t *ms)
{
    uint64_t v;
    const char *suf;
    size_t sn;
    if (!split_number(s, n, &v, &suf, &sn)) return false;
    uint64_t mult = 1;
    if (sn == 2 && !strncasecmp(suf, "ms", 2)) mult = 1;
    else if (sn == 1 && tolower((unsigned char)suf[0]) == 's') mult = 1000;
    else if (sn != 0) return false;
    if (v > UINT32_MAX / mult) return false;
    *ms = (uint32_t)(v * mult);
    return true;
}

static bool parse_percent(const char *s, size_t n, uint32_t *pct)
{
    if (n && s[n - 1] == '%') n--;
    uint64_t v;
    if (!parse_uint(s, n, &v) || v > 100) return false;
    *pct = (uint32_t)v;
    return true;
}

/* One of nwords words, any case: its index in *which. */
static bool parse_word(const char *s, size_t n, const char *const *words, uint32_t nwords, uint32_t *which)
{
    for (uint32_t i = 0; i < nwords; i++)
        if (strlen(words[i]) == n && !strncasecmp(s, words[i], n)) {
            *which = i;
            return true;
        }
    return false;
}

static bool parse_switch(const char *s, size_t n, bool *out)
{
    static const char *const words[] = {"on", "off", "true", "false", "yes", "no", "1", "0"};
    uint32_t i;
    if (!parse_word(s, n, words, 8, &i)) return false;
    *out = i % 2 == 0;
    return true;
}

static bool parse_level(const char *s, size_t n, uint32_t *level)
{
    static const char *const names[] = {"task", "appdomain", "process"};
    return parse_word(s, n, names, 3, level);
}


static bool parse_path(const char *s, size_t n, char *dst, size_t cap)
{
    if (n == 0 || n >= cap || s[0] != '/') return false;
    memcpy(dst, s, n);
    dst[n] = 0;
    return true;
}

hm_status hm_options_apply(hm_options *o, const char *s, char *err, size_t errlen)
{
    if (!s) return HM_OK;
    while (*s) {
        const char *end = strchr(s, ',');
        size_t len = end ? (size_t)(end - s) : strlen(s);
        const char *eq = memchr(s, '=', len);
        if (len == 0) return bad(err, errlen, "empty option (two commas, or a trailing comma?)");
        if (!eq) return bad(err, errlen, "option '%.*s': expected key=value", (int)len, s);
        size_t klen = (size_t)(eq - s);
        const char *v = eq + 1;
        size_t vlen = len - klen - 1;
        char key[32];
        if (klen == 0 || klen >= sizeof key) return bad(err, errlen, "option '%.*s': unknown key", (int)len, s);
        memcpy(key, s, klen);
        key[klen] = 0;
        bool ok;
        const char *what;
        if (!strcmp(key, "limit")) {
            what = "a size (bytes with K/M/G/T, or N%)";
            ok = parse_size(v, vlen, &o->limit_opt) && (o->limit_opt.is_pct || o->limit_opt.bytes > 0);
            o->limit_set = true;
        } else if (!strcmp(key, "reserve.appdomain")) {
            what = "a size (bytes with K/M/G/T, or N%)";
            ok = parse_size(v, vlen, &o->ra_opt);
        } else if (!strcmp(key, "reserve.process")) {
            what = "a size (bytes with K/M/G/T, or N%)";
            ok = parse_size(v, vlen, &o->rp_opt);
        } else if (!strcmp(key, "va.limit")) {
            what = "a size (bytes with K/M/G/T, or N%)";
            ok = parse_size(v, vlen, &o->va_opt) && (o->va_opt.is_pct || o->va_opt.bytes > 0);
            o->va_limit_set = true;
        } else if (!strcmp(key, "wait.task") || !strcmp(key, "wait.appdomain") || !strcmp(key, "wait.process")) {
            what = "a duration (milliseconds, or with ms or s)";
            uint32_t level = 0;
            parse_level(key + 5, klen - 5, &level);
            ok = parse_duration(v, vlen, &o->wait_ms[level]);
        } else if (!strcmp(key, "notify.low")) {
            what = "a percentage from 0 to 100";
            ok = parse_percent(v, vlen, &o->notify_low);
        } else if (!strcmp(key, "notify.high")) {
            what = "a percentage from 0 to 100";
            ok = parse_percent(v, vlen, &o->notify_high);
        } else if (!strcmp(key, "win32.level")) {
            what = "task, appdomain or process";
            ok = parse_level(v, vlen, &o->win32_level);
        } else if (!strcmp(key, "malloc.level")) {
            what = "task, appdomain or process";
            ok = parse_level(v, vlen, &o->malloc_level);
        } else if (!strcmp(key, "malloc.invalid_free")) {
            static const char *const modes[] = {"abort", "ignore"};
            uint32_t m = 0;
            what = "abort or ignore";
            ok = parse_word(v, vlen, modes, 2, &m);
            if (ok) o->malloc_ignore_invalid = m == 1;
        } else if (!strcmp(key, "malloc.unwind")) {
            what = "a size (bytes with K/M/G/T, or N%)";
            ok = parse_size(v, vlen, &o->unwind_opt);
            o->unwind_set = true;
        } else if (!strcmp(key, "malloc.unwind_time")) {
            what = "a duration (milliseconds, or with ms or s)";
            ok = parse_duration(v, vlen, &o->unwind_ms);
        } else if (!strcmp(key, "malloc.sites")) {
            what = "a number of stack frames from 0 to 32";
            uint64_t d = 0;
            ok = parse_uint(v, vlen, &d) && d <= 32;
            if (ok) o->malloc_sites = (uint32_t)d;
        } else if (!strcmp(key, "malloc.mmap")) {
            what = "on or off";
            ok = parse_switch(v, vlen, &o->malloc_mmap);
        } else if (!strcmp(key, "stats")) {
            what = "on or off";
            ok = parse_switch(v, vlen, &o->stats);
        } else if (!strcmp(key, "report")) {
            what = "a path shorter than 256 bytes";
            ok = vlen > 0 && vlen < sizeof o->report && !memchr(v, 0, vlen);
            if (ok) memcpy(o->report, v, vlen), o->report[vlen] = 0;
        } else if (!strcmp(key, "report.format")) {
            static const char *const formats[] = {"text", "json"};
            uint32_t f = 0;
            what = "text or json";
            ok = parse_word(v, vlen, formats, 2, &f);
            if (ok) o->report_json = f == 1;
        } else if (!strcmp(key, "heap.guard")) {
            what = "on or off";
            ok = parse_switch(v, vlen, &o->heap_guard);
        } else if (!strcmp(key, "cgroup.root")) {
            what = "an absolute path shorter than 128 bytes";
            ok = parse_path(v, vlen, o->cgroup_root, sizeof o->cgroup_root);
        } else if (!strcmp(key, "psi.some")) {
            what = "a percentage from 0 to 100 (0: off)";
            ok = parse_percent(v, vlen, &o->psi_some);
        } else if (!strcmp(key, "psi.full")) {
            what = "a percentage from 0 to 100 (0: off)";
            ok = parse_percent(v, vlen, &o->psi_full);
        } else if (!strcmp(key, "proc.root")) {
            what = "an absolute path shorter than 128 bytes";
            ok = parse_path(v, vlen, o->proc_root, sizeof o->proc_root);
        } else {
            return bad(err, errlen,
                       "unknown option key '%s' (known: limit, reserve.appdomain, reserve.process, wait.task, "
                       "wait.appdomain, wait.process, notify.low, notify.high, va.limit, win32.level, heap.guard, "
                       "cgroup.root, proc.root, psi.some, psi.full, malloc.level, malloc.invalid_free, malloc.unwind, "
                       "malloc.unwind_time, malloc.sites, malloc.mmap, stats, report, report.format)", key);
        }
        if (!ok) return bad(err, errlen, "option '%s': '%.*s' is not %s", key, (int)vlen, v, what);
        s += len;
        if (*s == ',') {
            s++;
            if (!*s) return bad(err, errlen, "empty option after the last comma");
        }
    }
    return HM_OK;
}

/* ---- the system's numbers --------------------------------------------------------------------- */

static bool read_u64(const char *path, uint64_t *out)
{
    char buf[64];
    size_t len;
    if (hm_os_read_text(path, buf, sizeof buf, &len) != 0) return false;
    char *end;
    unsigned long long v = strtoull(buf, &end, 10);
    if (end == buf) return false; /* "max" and the like: no limit */
    *out = v;
    return true;
}

uint64_t hm_options_physical(const hm_options *o)
{
    char path[192], buf[4096];
    size_t len;
    snprintf(path, sizeof path, "%s/meminfo", o->proc_root);
    if (hm_os_read_text(path, buf, sizeof buf, &len) == 0) {
        const char *p = strstr(buf, "MemTotal:");
        if (p) return (uint64_t)strtoull(p + 9, NULL, 10) * 1024;
    }
    return hm_os_physical_memory();
}

bool hm_options_cgroup(const hm_options *o, uint64_t *limit, uint64_t *usage)
{
    char path[320], buf[4096];
    size_t len;
    snprintf(path, sizeof path, "%s/self/cgroup", o->proc_root);
    if (hm_os_read_text(path, buf, sizeof buf, &len) != 0) return false;
    bool found = false;
    uint64_t v, u;
    char *save = NULL;
    for (char *line = strtok_r(buf, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        /* v2: "0::/path"; v1: "N:memory:/path" (the controller list may name several) */
        char *c1 = strchr(line, ':'), *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
        if (!c2) continue;
        const char *cg = strcmp(c2 + 1, "/") ? c2 + 1 : "";
        const char *limit_file, *usage_file, *sub;
        if (c2 == c1 + 1 && line[0] == '0') {
            sub = "", limit_file = "memory.max", usage_file = "memory.current";
        } else {
            *c2 = 0;
            bool memory = false;
            for (char *t = c1 + 1; t && *t;) {
                char *comma = strchr(t, ',');
                size_t n = comma ? (size_t)(comma - t) : strlen(t);
                if (n == 6 && !strncmp(t, "memory", 6)) memory = true;
                t = comma ? comma + 1 : NULL;
            }
            if (!memory) continue;
            sub = "/memory", limit_file = "memory.limit_in_bytes", usage_file = "memory.usage_in_bytes";
        }
        snprintf(path, sizeof path, "%s%s%s/%s", o->cgroup_root, sub, cg, limit_file);
        /* v2 says "max" for no limit; v1 a huge number (PAGE_COUNTER_MAX pages) */
        if (!read_u64(path, &v) || v >= ((uint64_t)1 << 62) || (found && v >= *limit)) continue;
        snprintf(path, sizeof path, "%s%s%s/%s", o->cgroup_root, sub, cg, usage_file);
        *limit = v;
        *usage = read_u64(path, &u) ? u : 0;
        found = true;
    }
    return found;
}

uint64_t hm_options_cgroup_limit(const hm_options *o)
{
    uint64_t limit, usage;
    return hm_options_cgroup(o, &limit, &usage) ? limit : 0;
}

/* "some avg10=1.23 avg60=..." / "full avg10=..." lines: avg10 in hundredths of a percent. */
static bool psi_file(const char *path, uint32_t *some, uint32_t *full)
{
    char buf[512];
    size_t len;
    if (hm_os_read_text(path, buf, sizeof buf, &len) != 0) return false;
    bool seen = false;
    char *save = NULL;
    for (char *line = strtok_r(buf, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        uint32_t *to = !strncmp(line, "some ", 5) ? some : !strncmp(line, "full ", 5) ? full : NULL;
        const char *a = to ? strstr(line, "avg10=") : NULL;
        if (!a) continue;
        char *end;
        unsigned long whole = strtoul(a + 6, &end, 10), frac = 0;
        if (end == a + 6 || whole > 100) continue;
        if (*end == '.' && end[1] >= '0' && end[1] <= '9') {
            frac = (unsigned long)(end[1] - '0') * 10;
            if (end[2] >= '0' && end[2] <= '9') frac += (unsigned long)(end[2] - '0');
        }
        uint32_t v = (uint32_t)(whole * 100 + frac);
        if (v > 10000) v = 10000;
        if (v > *to) *to = v;
        seen = true;
    }
    return seen;
}

bool hm_options_psi(const hm_options *o, uint32_t *some, uint32_t *full)
{
    char path[320], buf[4096];
    size_t len;
    *some = *full = 0;
    bool found = false;
    snprintf(path, sizeof path, "%s/self/cgroup", o->proc_root);
    if (hm_os_read_text(path, buf, sizeof buf, &len) == 0) {
        char *save = NULL;
        for (char *line = strtok_r(buf, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
            if (strncmp(line, "0::", 3)) continue; /* PSI is cgroup v2's */
            const char *cg = strcmp(line + 3, "/") ? line + 3 : "";
            snprintf(path, sizeof path, "%s%s/memory.pressure", o->cgroup_root, cg);
            found |= psi_file(path, some, full);
        }
    }
    snprintf(path, sizeof path, "%s/pressure/memory", o->proc_root);
    found |= psi_file(path, some, full);
    return found;
}

static uint64_t resolve_size(const hm_size_opt *s, uint64_t memory)
{
    return s->is_pct ? memory / 100 * s->pct + memory % 100 * s->pct / 100 : s->bytes;
}

static hm_status resolve(hm_options *o, uint64_t memory, char *err, size_t errlen);

hm_status hm_options_resolve(hm_options *o, char *err, size_t errlen)
{
    uint64_t phys = hm_options_physical(o), cg = hm_options_cgroup_limit(o);
    return resolve(o, cg && cg < phys ? cg : phys, err, errlen); /* SPEC 3.2: the cgroup's limit where lower */
}

hm_status hm_options_resolve_within(hm_options *o, uint64_t parent_limit, char *err, size_t errlen)
{
    return resolve(o, parent_limit, err, errlen);
}

/* memory: what N% and the default limit are of. */
static hm_status resolve(hm_options *o, uint64_t memory, char *err, size_t errlen)
{
    o->limit = o->limit_set ? resolve_size(&o->limit_opt, memory) : memory;
    o->reserve_appdomain = resolve_size(&o->ra_opt, memory);
    o->reserve_process = resolve_size(&o->rp_opt, memory);
    if (o->va_limit_set) {
        o->va_limit = resolve_size(&o->va_opt, memory);
    } else {
        o->va_limit = hm_os_address_space_limit();
    }
    if (o->limit == 0) return bad(err, errlen, "option 'limit': resolves to 0 bytes");
    if (o->reserve_appdomain >= o->limit || o->reserve_process >= o->limit - o->reserve_appdomain)
        return bad(err, errlen,
                   "options 'reserve.appdomain' + 'reserve.process' (%" PRIu64 " + %" PRIu64 ") must be below 'limit' (%" PRIu64 ")",
                   o->reserve_appdomain, o->reserve_process, o->limit);
    if (o->notify_low >= o->notify_high)
        return bad(err, errlen, "option 'notify.low' (%u) must be below 'notify.high' (%u)", o->notify_low, o->notify_high);
    if (o->va_limit == 0) return bad(err, errlen, "option 'va.limit': resolves to 0 bytes");
    o->malloc_unwind = resolve_size(&o->unwind_opt, memory);
    if (!o->unwind_set) { /* 1/32 of the limit, at most 16 MiB (src/preload/dropin.h, "Room to unwind") */
        o->malloc_unwind = o->limit / 32;
        if (o->malloc_unwind > ((uint64_t)16 << 20)) o->malloc_unwind = (uint64_t)16 << 20;
        if (o->malloc_unwind >= o->limit - o->reserve_appdomain - o->reserve_process) o->malloc_unwind = 0;
    }
    if (o->malloc_unwind >= o->limit - o->reserve_appdomain - o->reserve_process)
        return bad(err, errlen, "option 'malloc.unwind' (%" PRIu64 ") must be below 'limit' less the reserves (%" PRIu64 ")",
                   o->malloc_unwind, o->limit - o->reserve_appdomain - o->reserve_process);
    return HM_OK;
}
