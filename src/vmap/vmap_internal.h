/* vmap_internal.h — what vmap.c shares with reset.c and query.c; nothing outside src/vmap uses it. */
#ifndef HM_VMAP_INTERNAL_H
#define HM_VMAP_INTERNAL_H

#include <pthread.h>
#include <stdbool.h>

#include "vmap.h"

/* The writer lock: every change to the map, placement and the kernel's mappings of allocations. */
extern pthread_mutex_t hm_map_lock;

/* Totals over live allocations, kept under hm_map_lock. */
typedef struct hm_books {
    size_t allocations;
    size_t runs;
    size_t reserved;   /* bytes */
    size_t committed;  /* bytes */
} hm_books;
extern hm_books hm_book;

/* Writer side helpers (hm_map_lock held). */
hm_alloc *hm_find_alloc(uintptr_t addr);
hm_runs *hm_alloc_runs(hm_alloc *a);
void hm_swap_runs(hm_alloc *a, hm_runs *next);
int hm_restore_prot(hm_alloc *a, const hm_runs *r, uint64_t p0, uint64_t p1);
bool hm_committed_span(const hm_runs *r, uint64_t npages, uint64_t p0, uint64_t p1, uint64_t *lo, uint64_t *hi);
hm_status hm_errno_status(int err, const char *what);

/* MEM_RESET and MEM_RESET_UNDO of page-aligned [start, end) (reset.c; hm_map_lock held). */
hm_status hm_vmap_reset(uintptr_t start, uintptr_t end, void **out);
hm_status hm_vmap_reset_undo(uintptr_t start, uintptr_t end, void **out);

#endif
