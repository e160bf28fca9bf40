/* views.c — the two views of an executable heap under W^X (heap.h, "Executable heaps"): a memfd
 * mapped execute-read where the blocks are and read-write elsewhere, where the heap and the program
 * write; the alias of a block's byte; read-write views whose unmap the kernel refused, retried. */
#include <string.h>

#include "../os/os.h"
#include "heap_internal.h"

hm_view *hm_view_of(const hm_heap *h, uintptr_t b)
{
    for (hm_view *v = h->views; v; v = v->next)
        if (b - v->base < v->room) return v;
    return NULL;
}

uintptr_t hm_heap_wr_dual(const hm_heap *h, uintptr_t b)
{
    hm_segment *s = hm_segmap_get((void *)b);
    if (s) return (uintptr_t)((intptr_t)b + s->rw_delta);
    hm_view *v = hm_view_of(h, b);
    return v ? v->rw + (b - v->base) : b;
}
/* hm_heap_wr for a caller without the lock (the large blocks' list may change meanwhile). */
uintptr_t hm_heap_wr_locked(hm_heap *h, uintptr_t b)
{
    if (!h->dual) return b;
    hm_heap_lock(h);
    uintptr_t r = hm_heap_wr(h, b);
    hm_heap_unlock(h);
    return r;
}

/* Two views of [base, base+size) from a new memfd: its shared execute-read view over the map's
 * reservation there (PROT_NONE until committed), its read-write view anywhere. A dual heap's
 * reservations are mappings of their own (HM_RESERVE_OWN), so the execute-read view goes with the
 * reservation's release (one munmap): no step of giving the views back can leave a shared mapping
 * inside the map's arena. On failure the caller releases the reservation, view or not. */
int hm_views_new(uintptr_t base, size_t size, int *fd, uintptr_t *rw)
{
    int err = hm_os_memfd(size, fd);
    if (err) return err;
    void *p = NULL;
    if ((err = hm_os_map_shared_at((void *)base, size, *fd, 0, HM_OS_PROT_NONE)) ||
        (err = hm_os_map_shared(size, *fd, 0, HM_OS_PROT_READ | HM_OS_PROT_WRITE, &p))) {
        hm_os_close(*fd);
        return err;
    }
    *rw = (uintptr_t)p;
    return 0;
}

/* After the reservation's release: the read-write view and the memfd go. A refused munmap (the
 * kernel needs memory to split nothing here, so only an injected fault) keeps the view on the heap's
 * list of views to unmap, retried by trim and destroy: the memory it holds is not the manager's
 * charge (that went with the release), and nothing hands its addresses out meanwhile. Lock held or
 * the heap private to the caller. */
void hm_views_close(hm_heap *h, int fd, uintptr_t rw, size_t size)
{
    hm_os_close(fd);
    if (!hm_os_unmap((void *)rw, size)) return;
    hm_view *v = hm_heap_view_get();
    if (!v) return; /* (no memory for the record either: the view stays mapped, unreferenced) */
    *v = (hm_view){0, size, rw, -1, h->stale};
    h->stale = v;
}

/* Retries the unmaps views_close could not do (lock held). */
void hm_views_retry(hm_heap *h)
{
    for (hm_view **p = &h->stale; *p;) {
        hm_view *v = *p;
        if (hm_os_unmap((void *)v->rw, v->room)) {
            p = &v->next;
            continue;
        }
        *p = v->next;
        hm_heap_view_put(v);
    }
}

/* Unlinks a large block's views after its reservation was released (heap lock held). */
void hm_view_forget(hm_heap *h, hm_view *v)
{
    for (hm_view **p = &h->views; *p; p = &(*p)->next)
        if (*p == v) {
            *p = v->next;
            break;
        }
    hm_views_close(h, v->fd, v->rw, v->room);
    hm_heap_view_put(v);
}

