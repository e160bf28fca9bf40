/* report.c — the process's report (hm_report, hostmem.h): text for people, JSON for programs.
 *
 * Built with vsnprintf into the caller's buffer (no allocation: the drop-in malloc calls this at
 * exit, when the program's state may be anything), measuring what does not fit. */
#define _GNU_SOURCE
#include "report.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "../heap/heap.h"
#include "../manager/manager.h"
#include "../os/os.h"
#include "outbuf.h"

static struct {
    _Atomic(hm_heap *) heap;
    const char *name;
} heaps[HM_REPORT_HEAPS];
static _Atomic unsigned nheaps;
static uint64_t loaded_ns; /* when the library was loaded: the report's wall time starts there */

static __attribute__((constructor)) void report_start(void) { loaded_ns = hm_os_now_ns(); }

void hm_report_register_heap(hm_heap *h, const char *name)
{
    unsigned i = atomic_fetch_add(&nheaps, 1);
    if (i >= HM_REPORT_HEAPS) return;
    heaps[i].name = name;
    atomic_store_explicit(&heaps[i].heap, h, memory_order_release);
}

/* Bytes for people: 1.5 MiB. */
static const char *human(uint64_t b, char *tmp, size_t n)
{
    static const char *unit[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
    double v = (double)b;
    unsigned u = 0;
    while (v >= 1024 && u < 5) v /= 1024, u++;
    if (u == 0) snprintf(tmp, n, "%" PRIu64 " B", b);
    else snprintf(tmp, n, "%.1f %s", v, unit[u]);
    return tmp;
}

static const char *const level_name[3] = {"task", "appdomain", "process"};

size_t hm_report(hm_report_format format, char *buf, size_t cap)
{
    hm_outbuf o = {buf, cap, 0};
    if (buf && cap) buf[0] = 0;
    hm_status st;
    int saved = errno;
    hm_manager *m = hm_manager_default(&st);
    if (!m) return 0;
    hm_manager_stats ms;
    if (hm_manager_get_stats(m, &ms)) memset(&ms, 0, sizeof ms);
    uint64_t rss_peak, rss_now;
    hm_os_resident(&rss_peak, &rss_now);
    double wall = (double)(hm_os_now_ns() - loaded_ns) / 1e9;
    const char *prog = program_invocation_short_name ? program_invocation_short_name : "?";
    bool json = format == HM_REPORT_JSON;
    char a[32], b[32], c[32];
    if (json) {
        hm_put(&o, "{\"hostmem_report\":1,\"pid\":%d,\"program\":\"", (int)getpid());
        hm_put_json_str(&o, prog);
        hm_put(&o, "\",\"wall_seconds\":%.6f,\"limit\":%" PRIu64 ",\"reserve_appdomain\":%" PRIu64
                ",\"reserve_process\":%" PRIu64 ",\"unwind\":%" PRIu64 ",\"charge\":{\"peak\":%" PRIu64
                ",\"final\":%" PRIu64 "},\"resident\":{\"peak\":%" PRIu64 ",\"final\":%" PRIu64 "},\"levels\":[",
            wall, ms.limit, ms.reserve_appdomain, ms.reserve_process, m->acct.unwind, ms.peak_charge, ms.charge,
            rss_peak, rss_now);
        for (int l = 0; l < 3; l++)
            hm_put(&o, "%s{\"level\":\"%s\",\"granted\":%" PRIu64 ",\"refused\":%" PRIu64 ",\"waits\":%" PRIu64
                    ",\"timeouts\":%" PRIu64 "}",
                l ? "," : "", level_name[l], ms.granted[l], ms.refused[l], ms.waits[l], ms.timeouts[l]);
        hm_put(&o, "],\"heaps\":[");
    } else {
        hm_put(&o, "hostmem report: %s (pid %d), %.3f s\n", prog, (int)getpid(), wall);
        hm_put(&o, "  limit          %s", human(ms.limit, a, sizeof a));
        if (ms.reserve_appdomain || ms.reserve_process)
            hm_put(&o, " (reserves: appdomain %s, process %s)", human(ms.reserve_appdomain, b, sizeof b),
                human(ms.reserve_process, c, sizeof c));
        if (m->acct.unwind) hm_put(&o, "; %s kept for unwinding after a refusal", human(m->acct.unwind, a, sizeof a));
        hm_put(&o, "\n  charge         peak %s, at exit %s\n", human(ms.peak_charge, a, sizeof a), human(ms.charge, b, sizeof b));
        hm_put(&o, "  resident       peak %s, at exit %s (as the kernel counts it)\n", human(rss_peak, a, sizeof a),
            human(rss_now, b, sizeof b));
        hm_put(&o, "  requests       %-10s %10s %10s %10s %10s\n", "level", "granted", "refused", "waits", "timeouts");
        for (int l = 0; l < 3; l++)
            hm_put(&o, "                 %-10s %10" PRIu64 " %10" PRIu64 " %10" PRIu64 " %10" PRIu64 "\n", level_name[l],
                ms.granted[l], ms.refused[l], ms.waits[l], ms.timeouts[l]);
    }
    unsigned n = atomic_load_explicit(&nheaps, memory_order_acquire);
    if (n > HM_REPORT_HEAPS) n = HM_REPORT_HEAPS;
    bool first = true;
    for (unsigned i = 0; i < n; i++) {
        hm_heap *h = atomic_load_explicit(&heaps[i].heap, memory_order_acquire);
        hm_heap_stats hs;
        hm_heap_class_stat cs[HM_NCLASS];
        if (!h || hm_heap_get_stats(h, &hs) || hm_heap_class_stats(h, cs)) continue;
        if (json) {
            hm_put(&o, "%s{\"name\":\"", first ? "" : ",");
            hm_put_json_str(&o, heaps[i].name);
            hm_put(&o, "\",\"live_bytes\":%" PRIu64 ",\"live_blocks\":%" PRIu64 ",\"large_bytes\":%" PRIu64
                    ",\"cached_large_bytes\":%" PRIu64 ",\"segments\":%" PRIu64 ",\"committed_pages\":%" PRIu64
                    ",\"classes\":[",
                hs.live_bytes, hs.live_blocks, hs.large_bytes, hs.cached_large_bytes, hs.segments, hs.committed_pages);
            bool cf = true;
            for (unsigned k = 0; k < HM_NCLASS; k++) {
                if (!cs[k].pages) continue;
                hm_put(&o, "%s{\"block_size\":%u,\"pages\":%" PRIu64 ",\"blocks\":%" PRIu64 ",\"bytes\":%" PRIu64
                        ",\"free_bytes\":%" PRIu64 "}",
                    cf ? "" : ",", cs[k].block_size, cs[k].pages, cs[k].blocks, cs[k].bytes, cs[k].free_bytes);
                cf = false;
            }
            hm_put(&o, "]}");
        } else {
            hm_put(&o, "  heap %-9s live %s in %" PRIu64 " blocks (large blocks %s; freed large blocks kept %s); "
                    "%" PRIu64 " segments, %" PRIu64 " pages of 64 KiB committed\n",
                heaps[i].name, human(hs.live_bytes, a, sizeof a), hs.live_blocks, human(hs.large_bytes, b, sizeof b),
                human(hs.cached_large_bytes, c, sizeof c), hs.segments, hs.committed_pages);
            bool any = false;
            for (unsigned k = 0; k < HM_NCLASS; k++) {
                if (!cs[k].blocks) continue; /* (JSON lists every class with pages) */
                if (!any) hm_put(&o, "    %10s %8s %12s %14s %14s\n", "block size", "pages", "blocks", "bytes", "free bytes");
                any = true;
                hm_put(&o, "    %10u %8" PRIu64 " %12" PRIu64 " %14" PRIu64 " %14" PRIu64 "\n", cs[k].block_size,
                    cs[k].pages, cs[k].blocks, cs[k].bytes, cs[k].free_bytes);
            }
        }
        first = false;
    }
    if (json) hm_put(&o, "]}\n");
    errno = saved;
    return o.len;
}
