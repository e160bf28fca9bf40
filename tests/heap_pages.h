/* heap_pages.h — the heap's page invariants (src/heap/check.c, hm_heap_check_pages) as a test
 * assertion, for tests that stop their threads first: takes the heap lock; no other thread may use
 * the heap. */
#ifndef HM_TEST_HEAP_PAGES_H
#define HM_TEST_HEAP_PAGES_H

#include "heap/heap_internal.h"
#include "testutil.h"

/* The census of every page of h in use (pages and free blocks counted into *pages and *free_blocks
 * if not NULL); a broken invariant fails the test, naming it. */
static inline void check_pages(hm_heap *h, uint64_t *pages, uint64_t *free_blocks)
{
    if (hm_heap_check_pages(h, pages, free_blocks)) fail_msg("%s", hm_last_detail());
}

#endif
