/* query.c — VirtualQuery: the lock-free read path of the map (the protocol is in vmap.h).
 *
 * Answers [R2.5]: BaseAddress is the address rounded down to a page; inside an allocation the region
 * runs while State, Protect and Type stay equal, never past the allocation's end; reserved pages
 * report Protect 0; free memory reports PAGE_NOACCESS, no allocation base, and a RegionSize that
 * reaches the next allocation (or the top of the user address space), never 0. */
#include <stdatomic.h>

#include "../os/os.h"
#include "radix.h"
#include "rules.h"
#include "special.h"
#include "vmap_internal.h"


static inline uint64_t ld(_Atomic uint64_t *p) { return atomic_load_explicit(p, memory_order_relaxed); }

/* Visible attributes of a run: what makes two neighbours one region. */
static inline uint32_t visible(uint32_t attr) { return attr & (HM_RUN_COMMIT | HM_RUN_PROT_MASK); }

/* Fills a free region from page-aligned at, up to the next allocation, searching from granule
 * `from`: at's own granule when it is empty, the one after when at lies in the unusable tail of an
 * allocation's last granule. false when an allocation appeared at `at` meanwhile (start over). */
static bool fill_free(uintptr_t at, uint64_t from, hm_region *out)
{
    const hm_os_config *c = hm_os_cfg();
    uintptr_t top = c->max_address + 1, next = top;
    for (;;) {
        hm_alloc *n = hm_radix_next(from);
        if (!n) break;
        uint64_t gen = hm_meta_gen(n);
        uintptr_t b = atomic_load_explicit(&n->base, memory_order_relaxed);
        atomic_thread_fence(memory_order_acquire);
        if ((gen & 1u) || hm_meta_gen(n) != gen) { /* retired meanwhile: look again */
            from = hm_radix_lookup(at >> 16) ? (at >> 16) + 1 : at >> 16;
            continue;
        }
        if (b <= at) return false;
        next = b < top ? b : top;
        break;
    }
    out->base = (void *)at;
    out->allocation_base = NULL;
    out->allocation_protect = 0;
    out->partition_id = 0;
    out->size = next - at;
    out->state = HM_MEM_FREE;
    out->protect = HM_PAGE_NOACCESS;
    out->type = 0;
    return true;
}

/* The query from the allocation's record and run table (the protocol of vmap.h), for what the
 * granule's summary does not answer. Not inlined: its registers and stack frame would otherwise be
 * set up on the summary's path too. */
__attribute__((noinline)) static hm_status query_record(hm_account *acct, uintptr_t at, hm_region *out)
{
    for (;;) {
        hm_alloc *a = hm_radix_lookup(at >> 16);
        if (!a) {
            if (!fill_free(at, at >> 16, out)) continue;
            return HM_OK;
        }
        uint64_t ag = hm_meta_gen(a);
        if (ag & 1u) continue;
        uintptr_t base = atomic_load_explicit(&a->base, memory_order_relaxed);
        uint64_t size = atomic_load_explicit(&a->size, memory_order_relaxed);
        uint32_t aprot = atomic_load_explicit(&a->alloc_protect, memory_order_relaxed);
        hm_account *owner = hm_alloc_owner(a);
        uintptr_t rw = atomic_load_explicit(&a->runs, memory_order_acquire);
        bool inside = at >= base && at - base < size;
        uint64_t first = 0, end = 0;
        uint32_t attr = 0;
        if (hm_runs_is_inline(rw)) { /* one run: the region reaches the allocation's end */
            attr = hm_runs_inline_attr(rw);
            first = (at - base) / PAGE;
            end = size / PAGE;
            atomic_thread_fence(memory_order_acquire);
            if (hm_meta_gen(a) != ag || atomic_load_explicit(&a->runs, memory_order_relaxed) != rw) continue;
        } else {
            hm_runs *r = (hm_runs *)rw;
            uint64_t rg = hm_meta_gen(r);
            if (rg & 1u) continue;
            uint32_t cap = atomic_load_explicit(&r->cap, memory_order_relaxed);
            uint32_t n = atomic_load_explicit(&r->n, memory_order_relaxed);
            bool sane = n >= 1 && n <= cap;
            if (inside && sane) {
                uint64_t npages = size / PAGE, p = (at - base) / PAGE;
                uint32_t i = hm_runs_find(r, n, p);
                attr = hm_run_attr(ld(&r->entry[i]));
                first = p;
                end = npages;
                for (uint32_t k = i + 1; k < n; k++) { /* coalesce runs that differ only invisibly */
                    uint64_t e = ld(&r->entry[k]);
                    if (visible(hm_run_attr(e)) != visible(attr)) {
                        end = hm_run_first(e);
                        break;
                    }
                }
            }
            atomic_thread_fence(memory_order_acquire);
            if (hm_meta_gen(a) != ag || hm_meta_gen(r) != rg ||
                atomic_load_explicit(&a->runs, memory_order_relaxed) != rw)
                continue; /* a writer retired or replaced what we read: start over */
            if (inside && (!sane || end <= first)) continue; /* cannot happen for a stable table */
        }
        if (!inside) {
            if (!fill_free(at, (at >> 16) + 1, out)) continue; /* the tail of the last granule */
            return HM_OK;
        }
        if (owner != acct) return hm_not_owner(a); /* SPEC 3.1: a manager sees its own allocations */
        bool committed = attr & HM_RUN_COMMIT, guarded = false;
        if (committed && atomic_load_explicit(&a->special, memory_order_acquire)) {
            /* guard pages split regions too; read under the trap lock, then check a is still a */
            if (hm_special_guard_run(a, first, &end, &guarded) && hm_meta_gen(a) != ag) continue;
        }
        out->base = (void *)at;
        out->allocation_base = (void *)base;
        out->allocation_protect = aprot;
        out->partition_id = 0;
        out->size = (end - first) * PAGE;
        out->state = committed ? HM_MEM_COMMIT : HM_MEM_RESERVE;
        out->protect = committed ? hm_prot_report(attr & HM_RUN_PROT_MASK, aprot) | (guarded ? HM_PAGE_GUARD : 0) : 0;
        out->type = HM_MEM_PRIVATE;
        return HM_OK;
    }
}

/* One summary load answers most queries (radix.h): an allocation of one run, no special pages,
 * owned by the caller. The summary is one word, so it is one version of the allocation; nothing
 * else is read, so there is nothing to validate and at most one cache miss (the summaries of a
 * million allocations are 8 MiB, against 128 MiB of records). */
hm_status hm_vmap_query(hm_account *acct, const void *addr, hm_region *out)
{
    uintptr_t at = (uintptr_t)addr & ~(PAGE - 1);
    if ((uintptr_t)addr > hm_os_cfg()->max_address) {
        hm_detail_set("VirtualQuery: %p is above the user address space", addr);
        return HM_E_INVALID_PARAMETER;
    }
    uint64_t g = at >> 16, s = hm_radix_summary(g);
    if (s & HM_SUM_VALID) {
        uintptr_t base = (uintptr_t)(g - HM_SUM_INDEX(s)) << 16;
        uint64_t size = HM_SUM_PAGES(s) * PAGE;
        if (at - base >= size) { /* the unusable tail of the allocation's last granule: free */
            if (fill_free(at, g + 1, out)) return HM_OK;
        } else if (HM_SUM_QID(s) == atomic_load_explicit(&acct->qid, memory_order_relaxed)) {
            out->base = (void *)at;
            out->allocation_base = (void *)base;
            out->allocation_protect = HM_SUM_APROT(s);
            out->partition_id = 0;
            out->size = base + size - at;
            out->state = s & HM_SUM_COMMIT ? HM_MEM_COMMIT : HM_MEM_RESERVE;
            out->protect = HM_SUM_PROT(s);
            out->type = HM_MEM_PRIVATE;
            return HM_OK;
        }
    }
    return query_record(acct, at, out);
}

/* Walk: queries from each allocation's base to its end, allocation after allocation. Holds the writer
 * lock so that the walk is one consistent picture. */
hm_status hm_vmap_walk(hm_account *acct, int (*fn)(const hm_region *r, void *arg), void *arg)
{
    hm_status st = hm_vmap_init();
    if (st) return st;
    pthread_mutex_lock(&hm_map_lock);
    hm_map_quiesce();
    for (hm_alloc *a = hm_radix_next(0); a;) {
        uintptr_t base = atomic_load_explicit(&a->base, memory_order_relaxed);
        uint64_t size = atomic_load_explicit(&a->size, memory_order_relaxed);
        if (hm_alloc_owner(a) == acct) {
            for (uintptr_t at = base; at < base + size;) {
                hm_region r;
                hm_vmap_query(acct, (void *)at, &r);
                if (fn(&r, arg)) goto out;
                at += r.size;
            }
        }
        a = hm_radix_next(((base + size - 1) >> 16) + 1);
    }
out:
    pthread_mutex_unlock(&hm_map_lock);
    return HM_OK;
}

bool hm_vmap_lookup(const void *p, hm_vmap_info *out)
{
    uintptr_t at = (uintptr_t)p;
    if (at > hm_os_cfg()->max_address) return false;
    for (;;) {
        hm_alloc *a = hm_radix_lookup(at >> 16);
        if (!a) return false;
        uint64_t g = hm_meta_gen(a);
        if (g & 1u) continue;
        hm_vmap_info i = {
            atomic_load_explicit(&a->base, memory_order_relaxed), atomic_load_explicit(&a->size, memory_order_relaxed),
            atomic_load_explicit(&a->flags, memory_order_relaxed), atomic_load_explicit(&a->tag, memory_order_relaxed),
            hm_alloc_owner(a), atomic_load_explicit(&a->committed, memory_order_relaxed) * PAGE};
        atomic_thread_fence(memory_order_acquire);
        if (hm_meta_gen(a) != g) continue; /* retired or reused meanwhile: look again */
        if (at < i.base || at - i.base >= i.size) return false;
        *out = i;
        return true;
    }
}
