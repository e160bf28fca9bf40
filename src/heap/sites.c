/* sites.c — debug blocks' sites (hm_heap_alloc_debug): a per-heap table of (file, line) with live and
 * total counts, the report of what is still live when the heap is destroyed, and hm_heap_sites. */
#include <stdio.h>
#include <string.h>

#include "heap_internal.h"

static uint32_t site_hash(const char *file, int line)
{
    uint32_t x = 2166136261u ^ (uint32_t)line;
    for (const char *c = file; c && *c; c++) x = (x ^ (uint8_t)*c) * 16777619u;
    return x;
}

/* The index of (file, line) in h's table, made if new; HM_MAX_SITES when the table is full or cannot
 * be made (the blocks still work; they are in no site's counts). */
uint32_t hm_heap_site_of(hm_heap *h, const char *file, int line)
{
    if (!h->sites && !(h->sites = hm_heap_sites_get())) return HM_MAX_SITES;
    if (!h->nsites) memset(h->sites, 0, sizeof(hm_site) * HM_MAX_SITES);
    if (!file) file = "(unknown)";
    uint32_t x = site_hash(file, line);
    for (uint32_t k = 0; k < HM_MAX_SITES; k++) {
        hm_site *s = &h->sites[(x + k) % HM_MAX_SITES];
        if (!s->total_blocks && !s->file[0]) { /* a free slot: the site is new */
            snprintf(s->file, sizeof s->file, "%s", file);
            s->line = line;
            s->hash = x;
            h->nsites++;
            return (x + k) % HM_MAX_SITES;
        }
        if (s->hash == x && s->line == line && !strncmp(s->file, file, sizeof s->file - 1)) return (x + k) % HM_MAX_SITES;
    }
    return HM_MAX_SITES;
}

/* A debug block whose header's second word is info is no longer live: its site's counts (lock held). */
void hm_heap_site_forget(hm_heap *h, uint64_t info)
{
    uint32_t site = (uint32_t)(info >> 40);
    if (site < HM_MAX_SITES && h->sites) {
        h->sites[site].live_bytes -= info & (((uint64_t)1 << 40) - 1);
        h->sites[site].live_blocks--;
    }
}

void hm_heap_leak_report(hm_heap *h)
{
    if (!h->sites) return;
    uint64_t blocks = 0, bytes = 0;
    for (uint32_t i = 0; i < HM_MAX_SITES; i++) {
        blocks += h->sites[i].live_blocks;
        bytes += h->sites[i].live_bytes;
    }
    if (!blocks) return;
    fprintf(stderr, "hostmem: heap %p destroyed with %lu live debug blocks (%lu bytes), by site:\n", (void *)h,
            (unsigned long)blocks, (unsigned long)bytes);
    for (uint32_t i = 0; i < HM_MAX_SITES; i++)
        if (h->sites[i].live_blocks)
            fprintf(stderr, "  %s:%d: %lu blocks, %lu bytes\n", h->sites[i].file, h->sites[i].line,
                    (unsigned long)h->sites[i].live_blocks, (unsigned long)h->sites[i].live_bytes);
}

hm_status hm_heap_sites(hm_heap *h, void (*fn)(const hm_heap_site *site, void *arg), void *arg)
{
    if (!h || !fn) return HM_E_POINTER;
    hm_heap_site out[64];
    uint32_t start = 0;
    for (;;) { /* copy under the lock, call without it */
        uint32_t n = 0, i = start;
        hm_heap_lock(h);
        bool any = h->sites != NULL;
        for (; any && i < HM_MAX_SITES && n < 64; i++)
            if (h->sites[i].total_blocks)
                out[n++] = (hm_heap_site){h->sites[i].file, h->sites[i].line, h->sites[i].live_bytes,
                                          h->sites[i].live_blocks, h->sites[i].total_blocks};
        hm_heap_unlock(h);
        for (uint32_t k = 0; k < n; k++) fn(&out[k], arg);
        if (!any || i >= HM_MAX_SITES) return HM_OK;
        start = i;
    }
}
