/* sites.c — blocks by allocating call stack, for `hostmem run --sites[=DEPTH]` (malloc.sites=DEPTH).
 *
 * With malloc.sites on, every malloc, calloc, realloc and operator new that needs no more than 16-byte
 * alignment records up to DEPTH return addresses of its caller (glibc's backtrace; loaded and primed
 * at start, so that its first use, which loads libgcc_s and allocates, does not happen inside a
 * malloc) and takes a debug block of the heap (hm_heap_alloc_debug) whose site is the stack's number
 * in `stacks`, a table mapped directly. The heap counts live blocks and bytes per site (HM_MAX_SITES
 * of them; later stacks and aligned blocks are counted only in the heap's totals). A call made while
 * the same thread records a stack (backtrace allocating) takes the plain path.
 *
 * At exit the process `hostmem run` started writes $HOSTMEM_RUN_DIR/sites: per site with live blocks,
 * "live_bytes live_blocks total_blocks" and then each frame as " MODULE+0xOFFSET@0xADDRESS" (dladdr;
 * no allocation; the offset from the module's load address, and the address itself); `hostmem run` resolves them to functions and file:line (tools/sites.c). */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <execinfo.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../os/sys.h"
#include "dropin.h"

#define MAX_STACKS 4096 /* a power of two */
#define OWN 8           /* frames kept beyond DEPTH: the drop-in's own, dropped when written */
#define MAX_DEPTH (32 + OWN)
#define SKIP 1          /* stack_id's own frame */

typedef struct stack {
    uint64_t hash;
    uint32_t depth;
    void *frame[MAX_DEPTH];
} stack;

static stack *stacks; /* open addressing by hash; depth 0: free slot */
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static _Thread_local bool capturing __attribute__((tls_model("initial-exec")));

void hm_dropin_sites_quiet(bool on) { capturing = on; }

void hm_dropin_sites_start(void)
{
    if (!hm_dropin_state.opts.malloc_sites) return;
    void *b = hm_sys_mmap(NULL, MAX_STACKS * sizeof(stack), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (b == MAP_FAILED) {
        hm_dropin_state.opts.malloc_sites = 0;
        return;
    }
    void *f[4];
    capturing = true;
    (void)backtrace(f, 4); /* (loads the unwinder now, outside any malloc) */
    capturing = false;
    stacks = b;
}

/* The number of the calling stack, or -1. */
static int stack_id(void)
{
    void *f[MAX_DEPTH + SKIP];
    unsigned depth = hm_dropin_state.opts.malloc_sites + OWN;
    capturing = true;
    int got = backtrace(f, (int)(depth + SKIP));
    capturing = false;
    if (got <= SKIP) return -1;
    unsigned d = (unsigned)got - SKIP;
    uint64_t h = 1469598103934665603ull;
    for (unsigned i = 0; i < d; i++) h = (h ^ (uintptr_t)f[SKIP + i]) * 1099511628211ull;
    int id = -1;
    pthread_mutex_lock(&lock);
    for (unsigned k = 0; k < MAX_STACKS; k++) {
        stack *s = &stacks[(h + k) & (MAX_STACKS - 1)];
        if (!s->depth) {
            s->hash = h;
            s->depth = d;
            memcpy(s->frame, f + SKIP, d * sizeof(void *));
            id = (int)((h + k) & (MAX_STACKS - 1));
            break;
        }
        if (s->hash == h && s->depth == d && !memcmp(s->frame, f + SKIP, d * sizeof(void *))) {
            id = (int)((h + k) & (MAX_STACKS - 1));
            break;
        }
    }
    pthread_mutex_unlock(&lock);
    return id;
}

void *hm_dropin_alloc_site(hm_heap *h, size_t size, unsigned level, hm_status *st)
{
    void *p = NULL;
    if (capturing || !stacks) {
        *st = hm_heap_alloc(h, size, (hm_level)level, &p);
        return p;
    }
    int id = stack_id();
    char name[16];
    snprintf(name, sizeof name, "#%d", id);
    /* (a stack the table has no room for gets a site no '#' names: counted in the totals only) */
    *st = hm_heap_alloc_debug(h, size, (hm_level)level, id < 0 ? "(stack table full)" : name, 0, &p);
    return p;
}

typedef struct writer {
    int fd;
    bool ok;
} writer;

static void put(writer *w, const char *s, size_t n)
{
    while (w->ok && n) {
        ssize_t k = write(w->fd, s, n);
        if (k <= 0) w->ok = false;
        else s += k, n -= (size_t)k;
    }
}

static void one_site(const hm_heap_site *site, void *arg)
{
    writer *w = arg;
    if (!site->live_blocks || !site->file || site->file[0] != '#') return;
    int id = atoi(site->file + 1);
    if (id < 0 || id >= MAX_STACKS || !stacks[id].depth) return;
    char line[640];
    int k = snprintf(line, sizeof line, "%llu %llu %llu", (unsigned long long)site->live_bytes,
                     (unsigned long long)site->live_blocks, (unsigned long long)site->total_blocks);
    if (k > 0) put(w, line, (size_t)k);
    Dl_info me;
    void *own_base = dladdr((void *)hm_dropin_sites_write, &me) ? me.dli_fbase : NULL;
    uint32_t i = 0, shown = 0;
    for (Dl_info di; i < stacks[id].depth && dladdr(stacks[id].frame[i], &di) && di.dli_fbase == own_base; i++) {
    } /* (the drop-in's own frames: malloc, operator new, ...) */
    for (; i < stacks[id].depth && shown < hm_dropin_state.opts.malloc_sites; i++, shown++) {
        Dl_info di;
        uintptr_t a = (uintptr_t)stacks[id].frame[i];
        if (dladdr((void *)a, &di) && di.dli_fname && di.dli_fbase)
            k = snprintf(line, sizeof line, " %s+0x%lx@0x%lx", di.dli_fname, (unsigned long)(a - (uintptr_t)di.dli_fbase),
                         (unsigned long)a);
        else
            k = snprintf(line, sizeof line, " ?+0x%lx@0x%lx", (unsigned long)a, (unsigned long)a);
        if (k > 0) put(w, line, (size_t)k < sizeof line ? (size_t)k : sizeof line - 1);
    }
    put(w, "\n", 1);
}

void hm_dropin_sites_write(const char *dir)
{
    if (!stacks) return;
    char path[512];
    snprintf(path, sizeof path, "%s/sites", dir);
    writer w = {open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600), true};
    if (w.fd < 0) return;
    hm_heap *h = atomic_load_explicit(&hm_dropin_state.heap, memory_order_acquire);
    if (h) (void)hm_heap_sites(h, one_site, &w);
    close(w.fd);
}
