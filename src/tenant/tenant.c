/* tenant.c — a runtime hosted by hostmem (hostmem/tenant.h): its manager, its heap, the Low flag the
 * runtime's thread polls, and its report.
 *
 * The record lives on a page of its own (hm_os_map_meta), not in any heap: a tenant is made before
 * the runtime's first allocation and must not count against the budget it hosts. Counters are relaxed
 * atomics: they are figures for people, never decisions. */
#include <assert.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include <hostmem/tenant.h>

#include "../core/outbuf.h"
#include "../os/os.h"
#include "../vmap/vmap.h"

struct hm_tenant {
    hm_manager *m;
    hm_heap *h;               /* NULL once destroyed (a destroy whose manager refused is retried) */
    hm_level level, emergency;
    char name[32];
    _Atomic bool low;         /* set on each change to Low, cleared by take_low */
    _Atomic uint64_t low_signals, collections, collected, bad_frees, refused[3];
    pthread_mutex_t cb_lock;  /* the on_low pair (a leaf: fn is called after it is dropped) */
    void (*on_low)(hm_tenant *, void *);
    void *on_low_arg;
};

static_assert(sizeof(hm_tenant) <= 4096, "a tenant's record fits its page");

static void notified(hm_memory_state state, void *arg)
{
    hm_tenant *t = arg;
    if (state != HM_MEMORY_LOW) return;
    atomic_fetch_add_explicit(&t->low_signals, 1, memory_order_relaxed);
    atomic_store_explicit(&t->low, true, memory_order_release);
    pthread_mutex_lock(&t->cb_lock);
    void (*fn)(hm_tenant *, void *) = t->on_low;
    void *fn_arg = t->on_low_arg;
    pthread_mutex_unlock(&t->cb_lock);
    if (fn) fn(t, fn_arg);
}

static bool level_ok(hm_level l) { return (unsigned)l <= HM_LEVEL_PROCESS; }

hm_status hm_tenant_create(const hm_tenant_config *cfg, hm_tenant **out)
{
    if (!out) return HM_E_POINTER;
    *out = NULL;
    if (!cfg) return HM_E_POINTER;
    if (!level_ok(cfg->level) || !level_ok(cfg->emergency_level) || cfg->emergency_level < cfg->level) {
        hm_detail_set("tenant levels: level %d and emergency level %d must be 0 (task), 1 (appdomain) or 2 "
                      "(process), the emergency level at least the ordinary one",
                      (int)cfg->level, (int)cfg->emergency_level);
        return HM_E_INVALIDARG;
    }
    hm_status st = hm_init();
    if (HM_FAILED(st)) return st;
    void *page;
    if (hm_os_map_meta(4096, &page)) {
        hm_detail_set("no memory for the tenant's record");
        return HM_E_OUTOFMEMORY;
    }
    hm_tenant *t = page;
    memset(t, 0, sizeof *t);
    snprintf(t->name, sizeof t->name, "%s", cfg->name ? cfg->name : "tenant");
    t->level = cfg->level;
    t->emergency = cfg->emergency_level;
    pthread_mutex_init(&t->cb_lock, NULL);
    st = cfg->parent ? hm_manager_create_child(cfg->parent, cfg->options, &t->m) : hm_manager_create(cfg->options, &t->m);
    if (HM_FAILED(st)) goto fail; /* (the detail names the bad option) */ /* (the detail names the bad option) */
    if (HM_FAILED(st = hm_heap_create(t->m, HM_HEAP_THREADSAFE, &t->h))) goto fail;
    if (HM_FAILED(st = hm_manager_register_notification(t->m, notified, t))) goto fail;
    *out = t;
    return HM_OK;
fail:
    if (t->h) hm_heap_destroy(t->h);
    if (t->m) hm_manager_destroy(t->m);
    pthread_mutex_destroy(&t->cb_lock);
    hm_os_unmap(page, 4096);
    return st;
}

hm_status hm_tenant_destroy(hm_tenant *t)
{
    if (!t) return HM_E_POINTER;
    hm_status st;
    if (t->h) {
        if (HM_FAILED(st = hm_heap_destroy(t->h))) return st;
        t->h = NULL;
    }
    if (HM_FAILED(st = hm_manager_destroy(t->m))) return st; /* (live children, or the kernel refused: again) */
    pthread_mutex_destroy(&t->cb_lock);
    hm_os_unmap(t, 4096);
    return HM_OK;
}

hm_manager *hm_tenant_manager(hm_tenant *t) { return t ? t->m : NULL; }
hm_heap *hm_tenant_heap(hm_tenant *t) { return t ? t->h : NULL; }
const char *hm_tenant_name(hm_tenant *t) { return t ? t->name : ""; }
hm_level hm_tenant_level(hm_tenant *t) { return t ? t->level : HM_LEVEL_TASK; }
hm_level hm_tenant_emergency_level(hm_tenant *t) { return t ? t->emergency : HM_LEVEL_TASK; }

/* Whether a failure was the budget's (or the system's) refusal, not a bad argument. */
static bool is_refusal(hm_status st)
{
    return st == HM_E_COMMITMENT_LIMIT || st == HM_E_HOST_TIMEOUT || st == HM_E_OUTOFMEMORY ||
           st == HM_E_NOT_ENOUGH_MEMORY || st == HM_E_HOST_ABANDONED;
}

static void refused(hm_tenant *t, hm_level level, hm_status st)
{
    if (level_ok(level) && is_refusal(st)) atomic_fetch_add_explicit(&t->refused[level], 1, memory_order_relaxed);
}

void *hm_tenant_alloc(hm_tenant *t, size_t size, hm_level level)
{
    void *p;
    if (!t) return NULL;
    hm_status st = hm_heap_alloc(t->h, size, level, &p);
    if (HM_SUCCEEDED(st)) return p;
    refused(t, level, st);
    return NULL;
}

void *hm_tenant_realloc(hm_tenant *t, void *p, size_t size, hm_level level)
{
    if (!t) return NULL;
    if (p && size == 0) {
        hm_tenant_free(t, p);
        return NULL;
    }
    void *q;
    hm_status st = hm_heap_realloc(t->h, p, size, level, &q);
    if (HM_SUCCEEDED(st)) return q;
    if (st == HM_E_HOST_INVALIDOPERATION || st == HM_E_HOST_NOT_OWNER) {
        atomic_fetch_add_explicit(&t->bad_frees, 1, memory_order_relaxed);
        return NULL;
    }
    /* a shrink that could not move: the block stays (runtimes such as Lua count on shrinks succeeding) */
    if (p && is_refusal(st) && size <= hm_heap_usable_size(t->h, p)) return p;
    refused(t, level, st);
    return NULL;
}

void hm_tenant_free(hm_tenant *t, void *p)
{
    if (t && p && HM_FAILED(hm_heap_free(t->h, p))) atomic_fetch_add_explicit(&t->bad_frees, 1, memory_order_relaxed);
}

size_t hm_tenant_usable_size(hm_tenant *t, const void *p) { return t && p ? hm_heap_usable_size(t->h, p) : 0; }

bool hm_tenant_low_pending(hm_tenant *t) { return t && atomic_load_explicit(&t->low, memory_order_relaxed); }
bool hm_tenant_take_low(hm_tenant *t)
{
    return t && atomic_load_explicit(&t->low, memory_order_relaxed) && atomic_exchange_explicit(&t->low, false, memory_order_acquire);
}

hm_status hm_tenant_on_low(hm_tenant *t, void (*fn)(hm_tenant *, void *), void *arg)
{
    if (!t) return HM_E_POINTER;
    pthread_mutex_lock(&t->cb_lock);
    t->on_low = fn;
    t->on_low_arg = arg;
    pthread_mutex_unlock(&t->cb_lock);
    return HM_OK;
}

static uint64_t live_bytes(hm_tenant *t)
{
    hm_heap_stats hs;
    return t->h && HM_SUCCEEDED(hm_heap_get_stats(t->h, &hs)) ? hs.live_bytes : 0;
}

uint64_t hm_tenant_collect_begin(hm_tenant *t) { return t ? live_bytes(t) : 0; }

void hm_tenant_collect_end(hm_tenant *t, uint64_t token)
{
    if (!t) return;
    uint64_t now = live_bytes(t);
    atomic_fetch_add_explicit(&t->collections, 1, memory_order_relaxed);
    if (token > now) atomic_fetch_add_explicit(&t->collected, token - now, memory_order_relaxed);
    if (t->h) hm_heap_trim(t->h); /* the pages the collection emptied go back to the budget now */
}

hm_status hm_tenant_get_stats(hm_tenant *t, hm_tenant_stats *out)
{
    if (!t || !out) return HM_E_POINTER;
    memset(out, 0, sizeof *out);
    hm_manager_stats ms;
    hm_status st = hm_manager_get_stats(t->m, &ms);
    if (HM_FAILED(st)) return st;
    out->limit = ms.limit;
    out->charge = ms.charge;
    out->peak_charge = ms.peak_charge;
    out->live_bytes = t->h ? live_bytes(t) : 0;
    for (int i = 0; i < 3; i++) {
        out->refused[i] = atomic_load_explicit(&t->refused[i], memory_order_relaxed);
        out->refused_by_ancestor[i] = ms.refused_by_ancestor[i];
    }
    out->bad_frees = atomic_load_explicit(&t->bad_frees, memory_order_relaxed);
    out->low_signals = atomic_load_explicit(&t->low_signals, memory_order_relaxed);
    out->collections = atomic_load_explicit(&t->collections, memory_order_relaxed);
    out->collected_bytes = atomic_load_explicit(&t->collected, memory_order_relaxed);
    return HM_OK;
}

static double mib(uint64_t b) { return (double)b / (1024.0 * 1024.0); }

size_t hm_tenant_report(hm_tenant *t, hm_report_format format, char *buf, size_t cap)
{
    if (cap) buf[0] = 0;
    hm_tenant_stats s;
    if (!t || HM_FAILED(hm_tenant_get_stats(t, &s))) return 0;
    hm_outbuf o = {buf, cap, 0};
    if (format == HM_REPORT_JSON) {
        hm_put(&o, "{\"name\":\"");
        hm_put_json_str(&o, t->name); /* (an embedder's name: escaped) */
        hm_put(&o,
            "\",\"limit\":%" PRIu64 ",\"charge\":%" PRIu64 ",\"peak_charge\":%" PRIu64
            ",\"live_bytes\":%" PRIu64 ",\"refused\":{\"task\":%" PRIu64 ",\"appdomain\":%" PRIu64 ",\"process\":%" PRIu64
            "},\"bad_frees\":%" PRIu64 ",\"low_signals\":%" PRIu64 ",\"collections\":%" PRIu64 ",\"collected_bytes\":%" PRIu64
            ",\"refused_by_ancestor\":{\"task\":%" PRIu64 ",\"appdomain\":%" PRIu64 ",\"process\":%" PRIu64 "}}\n",
            s.limit, s.charge, s.peak_charge, s.live_bytes, s.refused[0], s.refused[1], s.refused[2], s.bad_frees,
            s.low_signals, s.collections, s.collected_bytes, s.refused_by_ancestor[0], s.refused_by_ancestor[1],
            s.refused_by_ancestor[2]);
        return o.len;
    }
    hm_put(&o, "tenant %s: limit %.1f MiB, peak charge %.1f MiB (%.0f%%), charge now %.1f MiB, live %.1f MiB\n",
        t->name, mib(s.limit), mib(s.peak_charge), s.limit ? 100.0 * (double)s.peak_charge / (double)s.limit : 0.0,
        mib(s.charge), mib(s.live_bytes));
    hm_put(&o, "  refused: task %" PRIu64 ", appdomain %" PRIu64 ", process %" PRIu64 "; bad frees %" PRIu64 "\n",
        s.refused[0], s.refused[1], s.refused[2], s.bad_frees);
    uint64_t up = s.refused_by_ancestor[0] + s.refused_by_ancestor[1] + s.refused_by_ancestor[2];
    if (up)
        hm_put(&o, "  of the budget's refusals, by an enclosing budget: task %" PRIu64 ", appdomain %" PRIu64
            ", process %" PRIu64 "\n", s.refused_by_ancestor[0], s.refused_by_ancestor[1], s.refused_by_ancestor[2]);
    hm_put(&o, "  memory low %" PRIu64 " time%s; collections %" PRIu64 ", gave back %.1f MiB\n", s.low_signals,
        s.low_signals == 1 ? "" : "s", s.collections, mib(s.collected_bytes));
    return o.len;
}
