/* python.c — CPython hosted by a hostmem tenant (hostmem/python.h): the RAW hooks and the arena
 * allocator, the unwind window, the collection asked for on Low, install/finalize/uninstall. The state
 * is process-wide, as CPython's hooks are. The hooks read the tenant with one relaxed load: it is set
 * before CPython makes its first request through them and cleared at uninstall, after which a request
 * (from a thread CPython started, still ending) is refused and a free ignored. Counters are relaxed
 * atomics (figures for people); the unwind credit is the one counter that decides something, and it only
 * bounds a retry. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <hostmem/python.h>

#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#define SMALL 512                  /* pymalloc's threshold: the size of the objects unwinding makes */
#define UNWIND_BYTES (64 * 1024)   /* what one unwind window may take at the emergency level */
#define ARENA ((size_t)1 << 20)    /* pymalloc's arena in 3.11 (other sizes, the frames' chunks, are not kept) */
#define KEEP_MAX 64                /* empty arenas kept for reuse, at most */
#define KEEP_NS 100000000u         /* for at most 100 ms unless reused */

static struct {
    _Atomic(hm_tenant *) t;        /* the hooks' tenant; NULL before install and after uninstall */
    hm_manager *m;                 /* its manager (the arenas') */
    hm_level level, emergency;
    bool installed;                /* once per process */
    _Atomic int64_t credit;        /* bytes the unwind window may still grant; 0: closed */
    _Atomic uint64_t arena_bytes, arena_peak, arenas, arenas_refused, windows, grants, asked, ran, arena_collected;
    _Atomic bool want;             /* Low was signalled: the next request on a Python thread asks to collect */
    _Atomic bool scheduled;        /* a pending call is queued and has not run yet */
    /* Empty arenas kept committed (and charged) for reuse, newest last; their push times rise from
     * kept[0] up, so the oldest are at the bottom. Leaf lock: no hostmem or CPython call under it. */
    pthread_mutex_t keep_lock;
    int nkept;
    struct { void *p; uint64_t t; } kept[KEEP_MAX];
    _Atomic uint64_t kept_bytes;
} g = {.keep_lock = PTHREAD_MUTEX_INITIALIZER};

static inline hm_tenant *tenant(void) { return atomic_load_explicit(&g.t, memory_order_relaxed); }
static inline void bump(_Atomic uint64_t *c) { atomic_fetch_add_explicit(c, 1, memory_order_relaxed); }

/* ---- the unwind window ---------------------------------------------------------------------------- */

static void window_open(void)
{
    atomic_store_explicit(&g.credit, UNWIND_BYTES, memory_order_relaxed);
    bump(&g.windows);
}

static bool window_take(size_t n)
{
    int64_t c = atomic_load_explicit(&g.credit, memory_order_relaxed);
    while (c >= (int64_t)n)
        if (atomic_compare_exchange_weak_explicit(&g.credit, &c, c - (int64_t)n, memory_order_relaxed, memory_order_relaxed))
            return true;
    return false;
}

/* A request refused at the ordinary level: retried once the kept arenas are released; then a small
 * one inside the window, or any one while CPython
 * starts or stops (before Py_IsInitialized, where CPython treats a refusal as a fatal error: its
 * MemoryError does not exist yet), is retried at the emergency level; any other refusal (re)opens
 * the window and becomes CPython's MemoryError. */
static int unkeep(uint64_t before);

static void *refused(hm_tenant *t, void *old, size_t n)
{
    if (unkeep(UINT64_MAX)) { /* the kept arenas go back first: they never cause a MemoryError */
        void *p = old ? hm_tenant_realloc(t, old, n, g.level) : hm_tenant_alloc(t, n, g.level);
        if (p) return p;
    }
    if (g.emergency > g.level && ((n <= SMALL && window_take(n)) || !Py_IsInitialized())) {
        void *p = old ? hm_tenant_realloc(t, old, n, g.emergency) : hm_tenant_alloc(t, n, g.emergency);
        if (p) {
            bump(&g.grants);
            return p;
        }
    }
    window_open();
    return NULL;
}

/* ---- Low: a collection on the main thread --------------------------------------------------------- */

static int collect_now(void *arg);

/* On a thread making a request through the hooks, after Low was signalled: queues the collection. */
static __attribute__((noinline)) void ask(void)
{
    if (!Py_IsInitialized() || _Py_IsFinalizing()) return; /* (the flag waits for a running interpreter) */
    if (!atomic_exchange_explicit(&g.want, false, memory_order_relaxed)) return;
    if (atomic_exchange_explicit(&g.scheduled, true, memory_order_relaxed)) return; /* one queued at a time */
    if (Py_AddPendingCall(collect_now, NULL) == 0) {
        bump(&g.asked);
    } else { /* the queue is full: the next request tries again */
        atomic_store_explicit(&g.scheduled, false, memory_order_relaxed);
        atomic_store_explicit(&g.want, true, memory_order_relaxed);
    }
}

static inline void poll_low(void)
{
    if (__builtin_expect(atomic_load_explicit(&g.want, memory_order_relaxed), 0)) ask();
}

/* ---- RAW (and, without pymalloc, MEM and OBJ) ---------------------------------------------------- */

static void *raw_malloc(void *ctx, size_t n)
{
    (void)ctx;
    hm_tenant *t = tenant();
    if (!t) return NULL;
    poll_low();
    void *p = hm_tenant_alloc(t, n, g.level);
    return p ? p : refused(t, NULL, n);
}

static void *raw_calloc(void *ctx, size_t nelem, size_t elsize)
{
    if (elsize && nelem > SIZE_MAX / elsize) return NULL;
    void *p = raw_malloc(ctx, nelem * elsize);
    if (p) memset(p, 0, nelem * elsize);
    return p;
}

static void *raw_realloc(void *ctx, void *p, size_t n)
{
    (void)ctx;
    hm_tenant *t = tenant();
    if (!t) return NULL;
    if (!n) n = 1; /* PyMem_RawRealloc(p, 0) resizes to a minimal block, it does not free */
    poll_low();
    void *q = hm_tenant_realloc(t, p, n, g.level);
    return q ? q : refused(t, p, n);
}

static void raw_free(void *ctx, void *p)
{
    (void)ctx;
    hm_tenant *t = tenant();
    if (t) hm_tenant_free(t, p);
}

/* ---- arenas ------------------------------------------------------------------------------------- */

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void release(void *p) { (void)hm_virtual_free(g.m, p, 0, HM_MEM_RELEASE); }

/* Releases the kept arenas pushed before `before` (UINT64_MAX: all); the number released. */
static int unkeep(uint64_t before)
{
    void *out[KEEP_MAX];
    int k = 0;
    pthread_mutex_lock(&g.keep_lock);
    while (k < g.nkept && g.kept[k].t < before) out[k] = g.kept[k].p, k++;
    if (k) {
        memmove(g.kept, g.kept + k, sizeof g.kept[0] * (size_t)(g.nkept - k));
        g.nkept -= k;
        atomic_fetch_sub_explicit(&g.kept_bytes, (uint64_t)k * ARENA, memory_order_relaxed);
    }
    pthread_mutex_unlock(&g.keep_lock);
    for (int i = 0; i < k; i++) release(out[i]);
    return k;
}

static inline void expire(uint64_t now) { unkeep(now - KEEP_NS); }

static void arena_taken(size_t n)
{
    bump(&g.arenas);
    uint64_t now = atomic_fetch_add_explicit(&g.arena_bytes, n, memory_order_relaxed) + n;
    uint64_t peak = atomic_load_explicit(&g.arena_peak, memory_order_relaxed);
    while (now > peak && !atomic_compare_exchange_weak_explicit(&g.arena_peak, &peak, now, memory_order_relaxed, memory_order_relaxed)) {
    }
}

static void *arena_alloc(void *ctx, size_t n)
{
    (void)ctx;
    poll_low();
    if (!tenant()) return NULL;
    if (n == ARENA) { /* a kept arena: charged already, no kernel call, no page fault */
        void *p = NULL;
        pthread_mutex_lock(&g.keep_lock);
        if (g.nkept) {
            p = g.kept[--g.nkept].p;
            atomic_fetch_sub_explicit(&g.kept_bytes, ARENA, memory_order_relaxed);
        }
        pthread_mutex_unlock(&g.keep_lock);
        if (p) {
            arena_taken(n);
            expire(now_ns());
            return p;
        }
    }
    void *base;
    hm_status st;
    while (HM_FAILED(st = hm_virtual_alloc_level(g.m, NULL, n, HM_MEM_RESERVE | HM_MEM_COMMIT, HM_PAGE_READWRITE, g.level, &base)))
        if (st != HM_E_COMMITMENT_LIMIT || !unkeep(UINT64_MAX)) { /* (kept arenas go back before a refusal) */
            bump(&g.arenas_refused);
            return NULL; /* pymalloc serves the request from RAW instead */
        }
    if (atomic_load_explicit(&g.credit, memory_order_relaxed)) atomic_store_explicit(&g.credit, 0, memory_order_relaxed);
    arena_taken(n);
    return base;
}

static void arena_free(void *ctx, void *p, size_t n)
{
    (void)ctx;
    if (!tenant()) return;
    atomic_fetch_sub_explicit(&g.arena_bytes, n, memory_order_relaxed);
    uint64_t now = now_ns();
    bool kept = false;
    if (n == ARENA) {
        pthread_mutex_lock(&g.keep_lock);
        if (g.nkept < KEEP_MAX) {
            g.kept[g.nkept].p = p;
            g.kept[g.nkept++].t = now;
            atomic_fetch_add_explicit(&g.kept_bytes, ARENA, memory_order_relaxed);
            kept = true;
        }
        pthread_mutex_unlock(&g.keep_lock);
    }
    if (!kept) release(p);
    expire(now);
}

static uint64_t held_arenas(void)
{
    return atomic_load_explicit(&g.arena_bytes, memory_order_relaxed) + atomic_load_explicit(&g.kept_bytes, memory_order_relaxed);
}

/* Runs on the main thread at a bytecode boundary, holding the GIL. */
static int collect_now(void *arg)
{
    (void)arg;
    atomic_store_explicit(&g.scheduled, false, memory_order_relaxed);
    hm_tenant *t = tenant();
    if (!t) return 0;
    hm_tenant_take_low(t);
    uint64_t a0 = held_arenas();
    uint64_t token = hm_tenant_collect_begin(t);
    int was = PyGC_Enable(); /* PyGC_Collect does nothing while gc is disabled */
    PyGC_Collect();
    if (!was) PyGC_Disable();
    unkeep(UINT64_MAX);
    uint64_t a1 = held_arenas();
    /* the token is what the runtime holds: fold in the arenas the collection released (or took) */
    if (a0 > a1) {
        atomic_fetch_add_explicit(&g.arena_collected, a0 - a1, memory_order_relaxed);
        token += a0 - a1;
    } else {
        token = token > a1 - a0 ? token - (a1 - a0) : 0;
    }
    hm_tenant_collect_end(t, token);
    bump(&g.ran);
    return 0;
}

/* The manager's notification thread: a flag only (see ask). */
static void on_low(hm_tenant *t, void *arg)
{
    (void)t, (void)arg;
    atomic_store_explicit(&g.want, true, memory_order_relaxed);
}

/* ---- install ------------------------------------------------------------------------------------ */

hm_status hm_python_install(const hm_python_config *cfg)
{
    if (!cfg) return HM_E_POINTER;
    if (g.installed || Py_IsInitialized()) {
        hm_set_last_detail(g.installed ? "python: the hooks are process-wide and installed once per process"
                                  : "python: install the hooks before Py_Initialize");
        return HM_E_HOST_INVALIDOPERATION;
    }
    PyPreConfig pre;
    PyPreConfig_InitPythonConfig(&pre);
    PyStatus ps = Py_PreInitialize(&pre); /* (nothing when the embedder pre-initialized already) */
    if (PyStatus_Exception(ps)) {
        hm_set_last_detail("python: pre-initialization failed: %s", ps.err_msg ? ps.err_msg : "?");
        return HM_E_FAIL;
    }
    PyMemAllocatorEx raw, mem, obj;
    PyMem_GetAllocator(PYMEM_DOMAIN_RAW, &raw);
    PyMem_GetAllocator(PYMEM_DOMAIN_MEM, &mem);
    PyMem_GetAllocator(PYMEM_DOMAIN_OBJ, &obj);
    /* pymalloc and malloc have no context; debug hooks (and other wrappers) have one */
    if (raw.ctx || mem.ctx || obj.ctx) {
        hm_set_last_detail("python: CPython's allocators carry hooks (PYTHONMALLOC=pymalloc_debug or malloc_debug?): "
                      "the adapter wants pymalloc or malloc under it");
        return HM_E_INVALIDARG;
    }
    bool pymalloc = obj.malloc != raw.malloc;
    hm_tenant *t = cfg->tenant;
    if (!t) {
        hm_tenant_config tc = {.name = cfg->name ? cfg->name : "python", .options = cfg->options, .parent = cfg->parent,
                               .level = cfg->level, .emergency_level = cfg->emergency_level};
        hm_status st = hm_tenant_create(&tc, &t);
        if (HM_FAILED(st)) return st;
    }
    g.m = hm_tenant_manager(t);
    g.level = hm_tenant_level(t);
    g.emergency = hm_tenant_emergency_level(t);
    g.installed = true;
    atomic_store_explicit(&g.t, t, memory_order_release);
    PyMemAllocatorEx ours = {NULL, raw_malloc, raw_calloc, raw_realloc, raw_free};
    PyMem_SetAllocator(PYMEM_DOMAIN_RAW, &ours);
    if (!pymalloc) {
        PyMem_SetAllocator(PYMEM_DOMAIN_MEM, &ours);
        PyMem_SetAllocator(PYMEM_DOMAIN_OBJ, &ours);
    }
    PyObjectArenaAllocator arenas = {NULL, arena_alloc, arena_free};
    PyObject_SetArenaAllocator(&arenas);
    if (!cfg->no_collect) hm_tenant_on_low(t, on_low, NULL);
    return HM_OK;
}

hm_tenant *hm_python_tenant(void) { return tenant(); }

int hm_python_finalize(void)
{
    if (!tenant()) return -1;
    hm_tenant_on_low(tenant(), NULL, NULL); /* (a late on_low only sets the flag: ask() checks the interpreter) */
    atomic_store_explicit(&g.want, false, memory_order_relaxed);
    int rc = Py_IsInitialized() ? Py_FinalizeEx() : 0;
    hm_python_trim(); /* what finalization emptied goes back to the budget now */
    return rc;
}

hm_status hm_python_uninstall(void)
{
    hm_tenant *t = tenant();
    if (!t || Py_IsInitialized()) {
        hm_set_last_detail(t ? "python: finalize CPython (hm_python_finalize) before uninstalling" : "python: not installed");
        return HM_E_HOST_INVALIDOPERATION;
    }
    hm_tenant_on_low(t, NULL, NULL);
    atomic_store_explicit(&g.t, NULL, memory_order_release); /* (the tenant and its memory stay) */
    return HM_OK;
}

hm_status hm_python_trim(void)
{
    hm_tenant *t = tenant();
    if (!t) {
        hm_set_last_detail("python: not installed");
        return HM_E_HOST_INVALIDOPERATION;
    }
    unkeep(UINT64_MAX);
    return hm_heap_trim(hm_tenant_heap(t));
}

#define LOAD(x) atomic_load_explicit(&g.x, memory_order_relaxed)

hm_status hm_python_get_stats(hm_python_stats *out)
{
    if (!out) return HM_E_POINTER;
    if (!g.installed) return HM_E_HOST_INVALIDOPERATION;
    *out = (hm_python_stats){LOAD(arena_bytes), LOAD(arena_peak), LOAD(kept_bytes), LOAD(arenas), LOAD(arenas_refused),
                             LOAD(windows), LOAD(grants), LOAD(asked), LOAD(ran), LOAD(arena_collected)};
    return HM_OK;
}

size_t hm_python_report(char *buf, size_t cap)
{
    if (cap) buf[0] = 0;
    hm_python_stats s;
    if (HM_FAILED(hm_python_get_stats(&s))) return 0;
    const double mib = 1024.0 * 1024.0;
    int n = snprintf(buf, cap,
                     "  python: arenas %.1f MiB (peak %.1f MiB, %.1f MiB kept for reuse), %" PRIu64 " taken, %" PRIu64 " refused; collections asked %" PRIu64
                     ", run %" PRIu64 ", arenas released %.1f MiB; unwind windows %" PRIu64 ", small requests granted %" PRIu64 "\n",
                     (double)s.arena_bytes / mib, (double)s.arena_peak / mib, (double)s.arena_kept / mib, s.arenas, s.arenas_refused, s.collections_asked,
                     s.collections_run, (double)s.arena_bytes_collected / mib, s.unwind_windows, s.unwind_grants);
    return n > 0 ? (size_t)n : 0;
}
