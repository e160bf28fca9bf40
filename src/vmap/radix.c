/* radix.c — the address index of radix.h. */
#include "radix.h"

#include <stdatomic.h>
#include <stdbool.h>
#include <string.h>

#include "meta.h"

#define LEVELS 4
#define FANOUT 512
#define WORDS (FANOUT / 64)

typedef struct rnode {
    hm_meta_hdr hdr;               /* pool header; nodes are never freed */
    _Atomic uint64_t bits[WORDS];  /* bit i set iff slot i is an allocation or a non-empty child */
    _Atomic uintptr_t slot[FANOUT];
    _Atomic uint64_t sum[FANOUT];  /* leaves only: slot i's query summary (radix.h), 0 for none */
} rnode;

/* granule bits consumed below each level: the root indexes bits 27..30, the leaves bits 0..8 */
static const unsigned shift[LEVELS] = {27, 18, 9, 0};

static rnode root;
static hm_pool node_pool = HM_POOL_INIT("radix-node", sizeof(rnode), 256 * 1024);

static inline uint64_t span(int level) { return (uint64_t)1 << shift[level]; }
static inline unsigned idx(int level, uint64_t g) { return (unsigned)((g >> shift[level]) & (FANOUT - 1)); }
static inline uintptr_t load(_Atomic uintptr_t *s) { return atomic_load_explicit(s, memory_order_acquire); }
static inline bool is_node(uintptr_t v) { return v & 1u; }
static inline rnode *as_node(uintptr_t v) { return (rnode *)(v & ~(uintptr_t)1); }

struct hm_alloc *hm_radix_lookup(uint64_t g)
{
    rnode *n = &root;
    for (int l = 0; l < LEVELS; l++) {
        uintptr_t v = load(&n->slot[idx(l, g)]);
        if (!is_node(v)) return (struct hm_alloc *)v;
        n = as_node(v);
    }
    return NULL; /* leaves never hold child pointers */
}

uint64_t hm_radix_summary(uint64_t g)
{
    rnode *n = &root;
    for (int l = 0; l < LEVELS - 1; l++) {
        uintptr_t v = load(&n->slot[idx(l, g)]);
        if (!is_node(v)) return 0; /* empty, or an allocation stored whole above the leaves */
        n = as_node(v);
    }
    return atomic_load_explicit(&n->sum[idx(LEVELS - 1, g)], memory_order_acquire);
}

/* First set bit of n at index >= i, or FANOUT. */
static unsigned next_bit(rnode *n, unsigned i)
{
    while (i < FANOUT) {
        uint64_t w = atomic_load_explicit(&n->bits[i / 64], memory_order_acquire) >> (i % 64);
        if (w) return i + (unsigned)__builtin_ctzll(w);
        i = (i / 64 + 1) * 64;
    }
    return FANOUT;
}

/* First allocation at a granule >= g within node n of level l (g relative to the whole space). */
static struct hm_alloc *next_in(rnode *n, int l, uint64_t g, bool from_start)
{
    unsigned i = from_start ? 0 : idx(l, g);
    for (;;) {
        i = next_bit(n, i);
        if (i >= FANOUT) return NULL;
        uintptr_t v = load(&n->slot[i]);
        if (v && !is_node(v)) return (struct hm_alloc *)v;
        if (v && l + 1 < LEVELS) {
            bool inner_from_start = from_start || i != idx(l, g);
            struct hm_alloc *a = next_in(as_node(v), l + 1, g, inner_from_start);
            if (a) return a;
        }
        i++;
    }
}

struct hm_alloc *hm_radix_next(uint64_t g)
{
    if (g >> (shift[0] + 4)) return NULL;
    return next_in(&root, 0, g, false);
}

/* ---- writers -------------------------------------------------------------------------------- */

static int prepare(rnode *n, int l, uint64_t g0, uint64_t g1)
{
    if (l == LEVELS - 1) return 0;
    uint64_t s = span(l);
    for (uint64_t lo = g0; lo < g1;) {
        uint64_t slot_lo = lo & ~(s - 1), slot_hi = slot_lo + s;
        uint64_t hi = g1 < slot_hi ? g1 : slot_hi;
        _Atomic uintptr_t *sp = &n->slot[idx(l, lo)];
        uintptr_t v = load(sp);
        bool partial = lo != slot_lo || hi != slot_hi;
        if (partial || is_node(v)) {
            if (!v) {
                int err = 0;
                rnode *c = hm_pool_alloc(&node_pool, &err);
                if (!c) return err;
                for (int w = 0; w < WORDS; w++) atomic_store_explicit(&c->bits[w], 0, memory_order_relaxed);
                for (int k = 0; k < FANOUT; k++) {
                    atomic_store_explicit(&c->slot[k], 0, memory_order_relaxed);
                    atomic_store_explicit(&c->sum[k], 0, memory_order_relaxed);
                }
                hm_meta_publish(c);
                atomic_store_explicit(sp, (uintptr_t)c | 1u, memory_order_release);
                v = (uintptr_t)c | 1u;
            }
            if (is_node(v)) {
                int err = prepare(as_node(v), l + 1, lo, hi);
                if (err) return err;
            }
        }
        lo = hi;
    }
    return 0;
}

int hm_radix_prepare(uint64_t g0, uint64_t g1) { return prepare(&root, 0, g0, g1); }

/* Writers are serialised by the map lock, so a plain load and store suffices (no locked RMW). */
static void set_bit(rnode *n, unsigned i, bool on)
{
    uint64_t m = (uint64_t)1 << (i % 64);
    uint64_t w = atomic_load_explicit(&n->bits[i / 64], memory_order_relaxed);
    atomic_store_explicit(&n->bits[i / 64], on ? w | m : w & ~m, memory_order_release);
}

static bool node_empty(rnode *n)
{
    for (int w = 0; w < WORDS; w++)
        if (atomic_load_explicit(&n->bits[w], memory_order_relaxed)) return false;
    return true;
}

static void set(rnode *n, int l, uint64_t g0, uint64_t g1, struct hm_alloc *a)
{
    uint64_t s = span(l);
    for (uint64_t lo = g0; lo < g1;) {
        uint64_t slot_lo = lo & ~(s - 1), slot_hi = slot_lo + s;
        uint64_t hi = g1 < slot_hi ? g1 : slot_hi;
        unsigned i = idx(l, lo);
        _Atomic uintptr_t *sp = &n->slot[i];
        uintptr_t v = load(sp);
        if (is_node(v)) {
            rnode *c = as_node(v);
            set(c, l + 1, lo, hi, a);
            set_bit(n, i, !node_empty(c));
        } else {
            /* whole span (prepare made nodes for every partial one), or a leaf granule, whose
             * summary goes first: a reader that finds one never meets the slot's old owner's */
            if (l == LEVELS - 1) atomic_store_explicit(&n->sum[i], 0, memory_order_release);
            atomic_store_explicit(sp, (uintptr_t)a, memory_order_release);
            set_bit(n, i, a != NULL);
        }
        lo = hi;
    }
}

void hm_radix_set(uint64_t g0, uint64_t g1, struct hm_alloc *a) { set(&root, 0, g0, g1, a); }

/* One walk down per leaf, not per granule: a leaf covers FANOUT granules, and the walk is most of
 * the cost of a granule's store (a 1 MiB allocation's 16 summaries are written twice a commit). */
void hm_radix_summarize(uint64_t g0, uint64_t g1, struct hm_alloc *a, uint64_t s0, uint64_t step)
{
    for (uint64_t g = g0; g < g1;) {
        rnode *n = &root;
        int l = 0;
        for (; l < LEVELS - 1; l++) {
            uintptr_t v = load(&n->slot[idx(l, g)]);
            if (!is_node(v)) break;
            n = as_node(v);
        }
        if (l < LEVELS - 1) { /* stored whole above the leaves: no summaries in that span */
            g = (g | (span(l) - 1)) + 1;
            continue;
        }
        uint64_t end = (g | (FANOUT - 1)) + 1; /* (the leaf's last granule, plus one) */
        if (end > g1) end = g1;
        for (unsigned i = idx(LEVELS - 1, g); g < end; g++, i++)
            if (load(&n->slot[i]) == (uintptr_t)a)
                atomic_store_explicit(&n->sum[i], s0 ? s0 + (g - g0) * step : 0, memory_order_release);
    }
}
