/* arena.h — where allocations are placed in the address space.
 *
 * Allocations up to HM_ARENA_DIRECT_MIN bytes are carved from chunks: 1 GiB stretches of
 * PROT_NONE, MAP_NORESERVE address space that the arena maps once and keeps. Neighbours in a chunk
 * share the kernel's mappings wherever their protections agree (all reserved space is one PROT_NONE
 * mapping), so the number of allocations is not capped by vm.max_map_count: a million 64 KiB
 * reservations fit in 64 chunks, 64 kernel mappings. A chunk keeps one bit per 64 KiB granule
 * (1 = owned by an allocation, tail of its last granule included).
 *
 * Larger allocations, allocations at an address outside every chunk, and large-page allocations get
 * a mapping of their own ("direct"), unmapped when they are released.
 *
 * Space given back to a chunk is PROT_NONE and empty (vmap.c discards it first), so carving it
 * again needs no system call. All calls run under the map's writer lock. */
#ifndef HM_ARENA_H
#define HM_ARENA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define HM_CHUNK_SIZE ((size_t)1 << 30)
#define HM_CHUNK_GRANULES (HM_CHUNK_SIZE >> 16)
#define HM_ARENA_DIRECT_MIN (HM_CHUNK_SIZE / 4)

typedef struct hm_chunk hm_chunk;

/* Places ngran granules in a chunk, lowest address first (highest with top_down), at a multiple of
 * align granules (a power of two up to 512; carvings of 32 MiB and more get 512 anyway). */
int hm_arena_place(size_t ngran, size_t align, bool top_down, uintptr_t *base, hm_chunk **chunk);
/* How a fixed-address allocation is backed. */
typedef enum hm_arena_kind {
    HM_ARENA_CHUNK,   /* inside one chunk (*chunk) */
    HM_ARENA_DIRECT,  /* outside every chunk: a mapping of its own, exactly [addr, addr + bytes) */
    HM_ARENA_MIXED,   /* partly in chunks, partly in mappings of its own */
} hm_arena_kind;

/* Claims [addr, addr + bytes) (addr granule aligned, bytes page aligned) for one allocation, whatever
 * chunks it meets: granules inside chunks must be free and are marked; the rest is mapped PROT_NONE
 * at exactly its address. EEXIST if any of it is taken; nothing is claimed on failure. */
int hm_arena_claim(uintptr_t addr, size_t bytes, hm_arena_kind *kind, hm_chunk **chunk);
/* Gives back what hm_arena_claim took (used for HM_ARENA_MIXED; the others have faster paths). */
int hm_arena_unclaim(uintptr_t addr, size_t bytes);
/* The steps of hm_arena_unclaim, for a release that must stay undoable as long as possible:
 * unmap the parts outside chunks (*partial: some were unmapped before one failed), empty the parts
 * inside chunks (MADV_DONTNEED), unmark them. */
int hm_arena_unmap_gaps(uintptr_t addr, size_t bytes, bool *partial);
int hm_arena_discard_chunk_parts(uintptr_t addr, size_t bytes);
void hm_arena_unmark(uintptr_t addr, size_t bytes);
/* Leaves the chunk parts of [addr, addr + bytes) marked for good: they may still hold data. */
void hm_arena_quarantine(uintptr_t addr, size_t bytes);
/* Granules quarantined so far (used, but by no allocation). */
size_t hm_arena_quarantined(void);
/* Gives the granules back to their chunk. */
void hm_arena_unplace(hm_chunk *chunk, uintptr_t base, size_t ngran);
/* Checks: whether every granule of [addr, addr + bytes) that lies in a chunk is marked used (and how
 * many there are); the granules used in all chunks. */
bool hm_arena_owns_range(uintptr_t addr, size_t bytes, size_t *granules);
size_t hm_arena_used_granules(void);
/* Address space held in chunks. */
size_t hm_arena_bytes(void);

#endif
