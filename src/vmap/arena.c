/* arena.c — chunked placement (arena.h). */
#include "arena.h"

#include <errno.h>

#include "../os/os.h"
#include "meta.h"

#define WORDS (HM_CHUNK_GRANULES / 64)
#define HM_ARENA_ALIGN_GRANULES ((size_t)512) /* 32 MiB: the span of one radix level-2 slot */

struct hm_chunk {
    hm_meta_hdr hdr;
    uintptr_t base;        /* 64 KiB aligned */
    size_t nfree;          /* free granules */
    size_t lo_hint;        /* no free granule below this index */
    hm_chunk *next;        /* chunks in ascending address order */
    hm_chunk *prev;
    uint64_t used[WORDS];  /* bit i: granule i belongs to an allocation */
};

static hm_pool chunk_pool = HM_POOL_INIT("chunk", sizeof(hm_chunk), 64 * 1024);
static hm_chunk *lowest, *highest;
static size_t nchunks;

static bool bit(const hm_chunk *c, size_t i) { return (c->used[i / 64] >> (i % 64)) & 1u; }

/* Bits [i, i + n) of word-array w, set or cleared a word at a time. */
static void mark(hm_chunk *c, size_t i, size_t n, bool on)
{
    if (on) c->nfree -= n;
    else c->nfree += n;
    while (n) {
        size_t off = i % 64, take = 64 - off < n ? 64 - off : n;
        uint64_t m = (take == 64 ? ~(uint64_t)0 : (((uint64_t)1 << take) - 1)) << off;
        if (on) c->used[i / 64] |= m;
        else c->used[i / 64] &= ~m;
        i += take;
        n -= take;
    }
}

/* Whether granules [i, i + n) are all free. */
static bool range_free(const hm_chunk *c, size_t i, size_t n)
{
    while (n) {
        size_t off = i % 64, take = 64 - off < n ? 64 - off : n;
        uint64_t m = (take == 64 ? ~(uint64_t)0 : (((uint64_t)1 << take) - 1)) << off;
        if (c->used[i / 64] & m) return false;
        i += take;
        n -= take;
    }
    return true;
}

/* Lowest index, a multiple of align, of a run of n free granules at or above from; SIZE_MAX if none. */
static size_t find_up(const hm_chunk *c, size_t from, size_t n, size_t align)
{
    if (align > 1) {
        for (size_t i = (from + align - 1) / align * align; i + n <= HM_CHUNK_GRANULES; i += align)
            if (range_free(c, i, n)) return i;
        return SIZE_MAX;
    }
    size_t run = 0;
    for (size_t i = from; i < HM_CHUNK_GRANULES;) {
        uint64_t w = c->used[i / 64];
        if (i % 64 == 0 && w == 0 && run + 64 < n) { /* a whole free word */
            run += 64;
            i += 64;
            continue;
        }
        if (i % 64 == 0 && w == ~(uint64_t)0) { /* a whole used word */
            run = 0;
            i += 64;
            continue;
        }
        if (bit(c, i)) run = 0;
        else if (++run == n) return i + 1 - n;
        i++;
    }
    return SIZE_MAX;
}

/* Highest index, a multiple of align, of a run of n free granules; SIZE_MAX if none. */
static size_t find_down(const hm_chunk *c, size_t n, size_t align)
{
    if (align > 1) {
        for (size_t i = (HM_CHUNK_GRANULES - n) / align * align;; i -= align) {
            if (range_free(c, i, n)) return i;
            if (i < align) return SIZE_MAX;
        }
    }
    size_t run = 0;
    for (size_t i = HM_CHUNK_GRANULES; i-- > 0;) {
        if (i % 64 == 63 && c->used[i / 64] == ~(uint64_t)0) {
            run = 0;
            i -= 63;
            continue;
        }
        if (bit(c, i)) run = 0;
        else if (++run == n) return i;
    }
    return SIZE_MAX;
}

static void link_chunk(hm_chunk *c)
{
    hm_chunk *after = NULL; /* the last chunk below c */
    for (hm_chunk *k = lowest; k && k->base < c->base; k = k->next) after = k;
    c->prev = after;
    c->next = after ? after->next : lowest;
    if (c->next) c->next->prev = c;
    else highest = c;
    if (after) after->next = c;
    else lowest = c;
    nchunks++;
}

static int new_chunk(bool top_down, hm_chunk **out)
{
    int err = 0;
    hm_chunk *c = hm_pool_alloc(&chunk_pool, &err);
    if (!c) return err;
    /* Ask for the spot next to the existing chunks so that the kernel can merge their mappings. */
    void *hint = NULL;
    if (top_down && highest) hint = (void *)(highest->base + HM_CHUNK_SIZE);
    else if (lowest && lowest->base > HM_CHUNK_SIZE) hint = (void *)(lowest->base - HM_CHUNK_SIZE);
    void *p;
    err = hm_os_reserve(hint, HM_CHUNK_SIZE, HM_ARENA_ALIGN_GRANULES << 16, &p);
    if (err) {
        hm_pool_free(&chunk_pool, c);
        return err;
    }
    hm_os_name(p, HM_CHUNK_SIZE, "hostmem");
    c->base = (uintptr_t)p;
    c->nfree = HM_CHUNK_GRANULES;
    c->lo_hint = 0;
    for (size_t i = 0; i < WORDS; i++) c->used[i] = 0;
    link_chunk(c);
    *out = c;
    return 0;
}

int hm_arena_place(size_t ngran, size_t align, bool top_down, uintptr_t *base, hm_chunk **chunk)
{
    if (ngran == 0 || ngran > HM_CHUNK_GRANULES) return EINVAL;
    /* 32 MiB and larger start on a 32 MiB boundary (chunks are 1 GiB aligned for this), so that the
     * radix tree indexes them with one slot per 32 MiB instead of one per granule. */
    if (ngran >= HM_ARENA_ALIGN_GRANULES) align = HM_ARENA_ALIGN_GRANULES;
    if (align == 0 || align > HM_ARENA_ALIGN_GRANULES || (align & (align - 1))) return EINVAL;
    for (int attempt = 0; attempt < 2; attempt++) {
        for (hm_chunk *c = top_down ? highest : lowest; c; c = top_down ? c->prev : c->next) {
            if (c->nfree < ngran) continue;
            size_t i = top_down ? find_down(c, ngran, align) : find_up(c, c->lo_hint, ngran, align);
            if (i == SIZE_MAX) continue;
            mark(c, i, ngran, true);
            if (!top_down && i == c->lo_hint) c->lo_hint = i + ngran;
            *base = c->base + (i << 16);
            *chunk = c;
            return 0;
        }
        if (attempt == 0) {
            hm_chunk *c;
            int err = new_chunk(top_down, &c);
            if (err) return err;
        }
    }
    return ENOMEM;
}

/* Calls fn on each piece of [addr, addr + bytes) in address order: chunk parts (c != NULL: granules
 * [i, i + n) of c) and the gaps between chunks (c == NULL: bytes [lo, hi)). Chunk parts cover whole
 * granules, so the last one may reach past addr + bytes, up to the end of its granule. */
typedef int (*piece_fn)(hm_chunk *c, size_t i, size_t n, uintptr_t lo, uintptr_t hi, void *arg);

static int for_pieces(uintptr_t addr, size_t bytes, piece_fn fn, void *arg)
{
    uintptr_t end = addr + bytes, gend = (end + 0xFFFF) & ~(uintptr_t)0xFFFF, at = addr;
    for (hm_chunk *c = lowest; c && at < end; c = c->next) {
        uintptr_t cend = c->base + HM_CHUNK_SIZE;
        if (cend <= at) continue;
        if (c->base >= end) break;
        int err;
        if (c->base > at && (err = fn(NULL, 0, 0, at, c->base, arg))) return err;
        uintptr_t lo = c->base > at ? c->base : at, hi = cend < gend ? cend : gend;
        if ((err = fn(c, (lo - c->base) >> 16, (hi - lo) >> 16, lo, hi, arg))) return err;
        at = hi;
    }
    return at < end ? fn(NULL, 0, 0, at, end, arg) : 0;
}

typedef struct claim {
    int chunks, gaps;       /* pieces of each kind */
    hm_chunk *chunk;        /* the last chunk piece */
    uintptr_t mapped_to;    /* gaps below this address are mapped (rollback) */
} claim;

static int check_piece(hm_chunk *c, size_t i, size_t n, uintptr_t lo, uintptr_t hi, void *arg)
{
    claim *cl = arg;
    (void)lo;
    (void)hi;
    if (!c) {
        cl->gaps++;
        return 0;
    }
    cl->chunks++;
    cl->chunk = c;
    return range_free(c, i, n) ? 0 : EEXIST;
}

static int map_piece(hm_chunk *c, size_t i, size_t n, uintptr_t lo, uintptr_t hi, void *arg)
{
    claim *cl = arg;
    (void)i;
    (void)n;
    if (c) return 0;
    int err = hm_os_reserve_at((void *)lo, hi - lo);
    if (!err) {
        hm_os_name((void *)lo, hi - lo, "hostmem");
        cl->mapped_to = hi;
    }
    return err;
}

static int unmap_piece(hm_chunk *c, size_t i, size_t n, uintptr_t lo, uintptr_t hi, void *arg)
{
    claim *cl = arg;
    (void)i;
    (void)n;
    if (c || lo >= cl->mapped_to) return 0;
    return hm_os_unmap((void *)lo, hi - lo);
}

static int mark_piece(hm_chunk *c, size_t i, size_t n, uintptr_t lo, uintptr_t hi, void *arg)
{
    bool on = *(bool *)arg;
    (void)lo;
    (void)hi;
    if (!c) return 0;
    mark(c, i, n, on);
    if (on && i <= c->lo_hint && c->lo_hint < i + n) c->lo_hint = i + n;
    if (!on && i < c->lo_hint) c->lo_hint = i;
    return 0;
}

int hm_arena_claim(uintptr_t addr, size_t bytes, hm_arena_kind *kind, hm_chunk **chunk)
{
    claim cl = {0, 0, NULL, 0};
    int err = for_pieces(addr, bytes, check_piece, &cl);
    if (err) return err;
    if (cl.gaps) { /* map the parts outside every chunk, exactly there, or undo */
        cl.mapped_to = addr;
        err = for_pieces(addr, bytes, map_piece, &cl);
        if (err) {
            for_pieces(addr, bytes, unmap_piece, &cl);
            return err;
        }
    }
    bool on = true;
    for_pieces(addr, bytes, mark_piece, &on);
    *kind = !cl.chunks ? HM_ARENA_DIRECT : !cl.gaps && cl.chunks == 1 ? HM_ARENA_CHUNK : HM_ARENA_MIXED;
    *chunk = *kind == HM_ARENA_CHUNK ? cl.chunk : NULL;
    return 0;
}

int hm_arena_unmap_gaps(uintptr_t addr, size_t bytes, bool *partial)
{
    claim cl = {0, 0, NULL, addr + bytes};
    int err = for_pieces(addr, bytes, unmap_piece, &cl);
    /* unmap_piece stops at the first failure; earlier gaps are gone then */
    *partial = false;
    if (err) {
        claim probe = {0, 0, NULL, 0};
        for_pieces(addr, bytes, check_piece, &probe);
        *partial = probe.gaps > 1;
    }
    return err;
}

static int discard_piece(hm_chunk *c, size_t i, size_t n, uintptr_t lo, uintptr_t hi, void *arg)
{
    (void)i;
    (void)n;
    (void)arg;
    return c ? hm_os_discard((void *)lo, hi - lo) : 0;
}

int hm_arena_discard_chunk_parts(uintptr_t addr, size_t bytes)
{
    return for_pieces(addr, bytes, discard_piece, NULL);
}

void hm_arena_unmark(uintptr_t addr, size_t bytes)
{
    bool off = false;
    for_pieces(addr, bytes, mark_piece, &off);
}

static size_t quarantined;

void hm_arena_quarantine(uintptr_t addr, size_t bytes)
{
    size_t n = 0;
    (void)hm_arena_owns_range(addr, bytes, &n);
    quarantined += n;
}

size_t hm_arena_quarantined(void) { return quarantined; }

int hm_arena_unclaim(uintptr_t addr, size_t bytes)
{
    bool partial;
    int err = hm_arena_unmap_gaps(addr, bytes, &partial);
    if (err) return err;
    hm_arena_unmark(addr, bytes);
    return 0;
}

static int count_piece(hm_chunk *c, size_t i, size_t n, uintptr_t lo, uintptr_t hi, void *arg)
{
    size_t *count = arg;
    (void)lo;
    (void)hi;
    if (!c) return 0;
    for (size_t k = i; k < i + n; k++)
        if (!bit(c, k)) return EINVAL;
    *count += n;
    return 0;
}

bool hm_arena_owns_range(uintptr_t addr, size_t bytes, size_t *granules)
{
    size_t count = 0;
    if (for_pieces(addr, bytes, count_piece, &count)) return false;
    *granules = count;
    return true;
}

void hm_arena_unplace(hm_chunk *c, uintptr_t base, size_t ngran)
{
    size_t i = (base - c->base) >> 16;
    mark(c, i, ngran, false);
    if (i < c->lo_hint) c->lo_hint = i;
}

size_t hm_arena_bytes(void) { return nchunks * HM_CHUNK_SIZE; }

size_t hm_arena_used_granules(void)
{
    size_t used = 0;
    for (hm_chunk *c = lowest; c; c = c->next) used += HM_CHUNK_GRANULES - c->nfree;
    return used;
}
