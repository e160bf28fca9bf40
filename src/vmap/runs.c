/* runs.c — building run tables (runs.h). Writer side only: callers hold the map lock. */
#include "runs.h"

#define MIN_CAP_LOG 2
#define MAX_CAP_LOG 26  /* 64 Mi runs: more than a 256 TiB allocation alternating every page... nearly */
#define NCLASS (MAX_CAP_LOG - MIN_CAP_LOG + 1)

static hm_pool pools[NCLASS];

static int class_of(uint64_t need)
{
    int c = 0;
    while (((uint64_t)1 << (c + MIN_CAP_LOG)) < need) c++;
    return c;
}

static hm_runs *alloc_table(uint64_t need, int *err)
{
    int c = class_of(need);
    if (c >= NCLASS) {
        *err = 12; /* ENOMEM */
        return NULL;
    }
    hm_pool *p = &pools[c];
    uint32_t cap = (uint32_t)1 << (c + MIN_CAP_LOG);
    if (!p->obj_size) {
        p->name = "run-table";
        p->obj_size = (sizeof(hm_runs) + cap * sizeof(uint64_t) + 63) & ~(size_t)63; /* (meta.h) */
        p->chunk_size = 64 * 1024;
    }
    hm_runs *r = hm_pool_alloc(p, err);
    if (!r) return NULL;
    atomic_store_explicit(&r->cap, cap, memory_order_relaxed);
    return r;
}

void hm_runs_free(hm_runs *r)
{
    uint32_t cap = atomic_load_explicit(&r->cap, memory_order_relaxed);
    hm_pool_free(&pools[class_of(cap)], r);
}

static inline uint64_t get(const hm_runs *r, uint32_t i)
{
    return atomic_load_explicit(&((hm_runs *)r)->entry[i], memory_order_relaxed);
}

uint32_t hm_runs_find(const hm_runs *r, uint32_t n, uint64_t p)
{
    uint32_t lo = 0, hi = n; /* entry lo starts at or below p; answer in [lo, hi) */
    while (hi - lo > 1) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (hm_run_first(get(r, mid)) <= p) lo = mid;
        else hi = mid;
    }
    return lo;
}

/* Appends (first, attr) to out unless it continues the last entry. */
static void push(hm_runs *out, uint32_t *n, uint64_t first, uint32_t attr)
{
    if (*n && hm_run_attr(atomic_load_explicit(&out->entry[*n - 1], memory_order_relaxed)) == attr) return;
    atomic_store_explicit(&out->entry[*n], hm_run_make(first, attr), memory_order_relaxed);
    (*n)++;
}

static uint32_t change(uint32_t attr, hm_run_change ch)
{
    return (attr & HM_RUN_COMMIT) ? ((attr & ch.and_c) | ch.or_c) : ((attr & ch.and_r) | ch.or_r);
}

hm_runs *hm_runs_apply(const hm_runs *old, uint64_t npages, uint64_t p0, uint64_t p1,
                       hm_run_change ch, int *err)
{
    uint32_t n_old = atomic_load_explicit(&((hm_runs *)old)->n, memory_order_relaxed);
    hm_runs *out = alloc_table((uint64_t)n_old + 2, err);
    if (!out) return NULL;
    uint32_t n = 0;
    for (uint32_t i = 0; i < n_old; i++) {
        uint64_t e = get(old, i);
        uint64_t a = hm_run_first(e);
        uint64_t b = i + 1 < n_old ? hm_run_first(get(old, i + 1)) : npages;
        uint32_t attr = hm_run_attr(e);
        /* split [a, b) at p0 and p1 */
        if (a < p0) push(out, &n, a, attr);
        uint64_t lo = a > p0 ? a : p0, hi = b < p1 ? b : p1;
        if (lo < hi) push(out, &n, lo, change(attr, ch));
        if (b > p1) push(out, &n, a > p1 ? a : p1, attr);
    }
    atomic_store_explicit(&out->n, n, memory_order_relaxed);
    hm_meta_publish(out);
    return out;
}
