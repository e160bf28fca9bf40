/* os.c — Linux implementation of the platform layer (see os.h for the shared contract).
 *
 * Each call first asks the fault-injection seam whether it should fail; if so it returns the
 * injected errno without touching the kernel. errno is saved and restored around every call so
 * that hostmem, used as a process's allocator, never disturbs the caller's errno. */
#define _GNU_SOURCE
#include "os.h"
#include "sys.h"

#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sched.h>
#include <time.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <pthread.h>
#include <unistd.h>

#ifndef MAP_FIXED_NOREPLACE
#define MAP_FIXED_NOREPLACE 0x100000
#endif
#ifndef MADV_FREE
#define MADV_FREE 8
#endif
#ifndef PR_SET_VMA
#define PR_SET_VMA 0x53564d41
#define PR_SET_VMA_ANON_NAME 0
#endif
#ifndef MAP_HUGE_SHIFT
#define MAP_HUGE_SHIFT 26
#endif

/* ---- fault injection ------------------------------------------------------------------------ */

typedef struct fault_slot {
    _Atomic unsigned long calls;   /* calls of this kind so far */
    _Atomic unsigned long fail_at; /* call number that fails (0: none) */
    _Atomic int err;
    _Atomic bool persistent;
} fault_slot;

static fault_slot faults[HM_OS_CALL_COUNT];
static _Atomic unsigned long faults_injected;

__attribute__((noinline)) void hm_os_fault_hit(hm_os_call_t call, int err)
{
    (void)call;
    (void)err;
    __asm__ volatile("" ::: "memory");
}

/* 0 to go on with the real call, or the errno to fail it with. */
static int fault_check(hm_os_call_t call)
{
    fault_slot *s = &faults[call];
    unsigned long n = atomic_fetch_add_explicit(&s->calls, 1, memory_order_relaxed) + 1;
    unsigned long at = atomic_load_explicit(&s->fail_at, memory_order_acquire);
    if (at == 0 || n < at) return 0;
    if (n > at && !atomic_load_explicit(&s->persistent, memory_order_relaxed)) return 0;
    int err = atomic_load_explicit(&s->err, memory_order_relaxed);
    atomic_fetch_add_explicit(&faults_injected, 1, memory_order_relaxed);
    hm_os_fault_hit(call, err);
    return err;
}

int hm_os_fault_check(hm_os_call_t call)
{
    if ((unsigned)call >= HM_OS_CALL_COUNT) return 0;
    return fault_check(call);
}

void hm_os_fault_inject(hm_os_call_t call, unsigned long nth, int err, bool persistent)
{
    if ((unsigned)call >= HM_OS_CALL_COUNT) return;
    fault_slot *s = &faults[call];
    atomic_store_explicit(&s->fail_at, 0, memory_order_release);
    if (nth == 0) return;
    atomic_store_explicit(&s->err, err ? err : ENOMEM, memory_order_relaxed);
    atomic_store_explicit(&s->persistent, persistent, memory_order_relaxed);
    unsigned long now = atomic_load_explicit(&s->calls, memory_order_relaxed);
    atomic_store_explicit(&s->fail_at, now + nth, memory_order_release);
}

void hm_os_fault_clear(void)
{
    for (int i = 0; i < HM_OS_CALL_COUNT; i++)
        atomic_store_explicit(&faults[i].fail_at, 0, memory_order_release);
}

unsigned long hm_os_calls(hm_os_call_t call)
{
    if ((unsigned)call >= HM_OS_CALL_COUNT) return 0;
    return atomic_load_explicit(&faults[call].calls, memory_order_relaxed);
}

unsigned long hm_os_faults_injected(void)
{
    return atomic_load_explicit(&faults_injected, memory_order_relaxed);
}

/* ---- probing -------------------------------------------------------------------------------- */

static hm_os_config cfg;
static pthread_once_t cfg_once = PTHREAD_ONCE_INIT;
static size_t test_page_size;

void hm_os_set_page_size_for_test(size_t page_size) { test_page_size = page_size; }

static long read_long(const char *path, long dflt)
{
    char buf[64];
    size_t len;
    if (hm_os_read_text(path, buf, sizeof buf, &len) != 0) return dflt;
    char *end;
    long v = strtol(buf, &end, 10);
    return end == buf ? dflt : v;
}

static long meminfo_field(const char *name)
{
    char buf[8192];
    size_t len;
    if (hm_os_read_text("/proc/meminfo", buf, sizeof buf, &len) != 0) return -1;
    const char *p = strstr(buf, name);
    if (!p) return -1;
    p += strlen(name);
    while (*p == ' ' || *p == ':') p++;
    return strtol(p, NULL, 10);
}

static void probe(void)
{
    int saved = errno;
    long ps = sysconf(_SC_PAGESIZE);
    cfg.page_size = test_page_size ? test_page_size : (ps > 0 ? (size_t)ps : 4096);
    cfg.granularity = 65536;
    cfg.min_address = 0x10000;
    cfg.max_address = ((uintptr_t)1 << 47) - 0x10000 - 1; /* 0x7FFFFFFEFFFF */
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    cfg.processors = n > 0 ? (unsigned)n : 1;
    cfg.max_map_count = read_long("/proc/sys/vm/max_map_count", -1);

    char buf[256];
    size_t len;
    cfg.thp = -1;
    if (hm_os_read_text("/sys/kernel/mm/transparent_hugepage/enabled", buf, sizeof buf, &len) == 0) {
        if (strstr(buf, "[always]")) cfg.thp = 2;
        else if (strstr(buf, "[madvise]")) cfg.thp = 1;
        else if (strstr(buf, "[never]")) cfg.thp = 0;
    }
    long hps = read_long("/sys/kernel/mm/transparent_hugepage/hpage_pmd_size", 0);
    cfg.huge_page_size = hps > 0 ? (size_t)hps : (size_t)2 << 20;
    cfg.hugetlb_free = meminfo_field("HugePages_Free");

    int fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
    cfg.pagemap = fd >= 0;
    if (fd >= 0) close(fd);
    errno = saved;
}

const hm_os_config *hm_os_init(void)
{
    pthread_once(&cfg_once, probe);
    return &cfg;
}

const hm_os_config *hm_os_cfg(void) { return &cfg; }

/* ---- mappings ------------------------------------------------------------------------------- */

#define HUGE_2M ((size_t)2 << 20)
#define RESERVE_FLAGS (MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE)

/* mmap that returns 0 or errno (errno itself is left to the caller to restore). */
static int map(void *addr, size_t size, int prot, int flags, void **out)
{
    void *p = hm_sys_mmap(addr, size, prot, flags, -1, 0);
    if (p == MAP_FAILED) return errno;
    *out = p;
    return 0;
}

/* Maps size + align - page bytes and trims them to `size` bytes at an align boundary. */
static int map_aligned(size_t size, size_t align, int prot, int flags, void **out)
{
    size_t page = cfg.page_size ? cfg.page_size : 4096;
    size_t over = size + align - page;
    if (over < size) return ENOMEM;
    void *p = NULL;
    int err = map(NULL, over, prot, flags, &p);
    if (err) return err;
    uintptr_t start = ((uintptr_t)p + align - 1) & ~(uintptr_t)(align - 1);
    size_t head = start - (uintptr_t)p, tail = over - head - size;
    if (head) hm_sys_munmap(p, head);
    if (tail) hm_sys_munmap((void *)(start + size), tail);
    *out = (void *)start;
    return 0;
}

int hm_os_reserve(void *hint, size_t size, size_t align, void **out)
{
    int saved = errno, err;
    if ((err = fault_check(HM_OS_MMAP))) return err;
    size_t page = cfg.page_size ? cfg.page_size : 4096;
    if (align < page) align = page;
    void *p = NULL;
    if (hint && ((uintptr_t)hint & (align - 1)) == 0 &&
        map(hint, size, PROT_NONE, RESERVE_FLAGS | MAP_FIXED_NOREPLACE, &p) == 0) {
        /* A free spot at the hint keeps neighbours adjacent: tried exactly first. */
        if (p == hint) {
            *out = p;
            errno = saved;
            return 0;
        }
        hm_sys_munmap(p, size); /* an old kernel took it as a plain hint */
    }
    err = map_aligned(size, align, PROT_NONE, RESERVE_FLAGS, out);
    errno = saved;
    return err;
}

int hm_os_reserve_at(void *addr, size_t size)
{
    int saved = errno, err;
    if ((err = fault_check(HM_OS_MMAP))) return err;
    void *p = NULL;
    err = map(addr, size, PROT_NONE, RESERVE_FLAGS | MAP_FIXED_NOREPLACE, &p);
    if (!err && p != addr) { /* kernel without MAP_FIXED_NOREPLACE: it was only a hint */
        hm_sys_munmap(p, size);
        err = EEXIST;
    }
    errno = saved;
    return err;
}

int hm_os_map_hugetlb(size_t size, void **out)
{
    int saved = errno, err;
    if ((err = fault_check(HM_OS_MMAP))) return err;
    err = map(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB | (21 << MAP_HUGE_SHIFT),
              out);
    errno = saved;
    return err;
}

int hm_os_map_meta(size_t size, void **out)
{
    int saved = errno, err;
    if ((err = fault_check(HM_OS_MMAP))) return err;
    /* Chunks of 2 MiB and more are aligned to 2 MiB so that transparent huge pages can back them. */
    void *p = NULL;
    if (size >= HUGE_2M) {
        err = map_aligned(size, HUGE_2M, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, &p);
        if (!err) (void)hm_sys_madvise(p, size, MADV_HUGEPAGE); /* a hint; failure is fine */
    } else {
        err = map(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, &p);
    }
    if (!err) {
        hm_os_name(p, size, "hostmem-meta");
        *out = p;
    }
    errno = saved;
    return err;
}

/* errno of a failed libc call (rc != 0), else 0 */
static inline int rc_errno(int rc) { return rc == 0 ? 0 : errno; }

int hm_os_unmap(void *addr, size_t size)
{
    int saved = errno, err;
    if ((err = fault_check(HM_OS_MUNMAP))) return err;
    err = rc_errno(hm_sys_munmap(addr, size));
    errno = saved;
    return err;
}

int hm_os_protect(void *addr, size_t size, int prot)
{
    int saved = errno, err;
    if ((err = fault_check(HM_OS_MPROTECT))) return err;
    err = rc_errno(hm_sys_mprotect(addr, size, prot));
    errno = saved;
    return err;
}

static int advise(void *addr, size_t size, int advice)
{
    int saved = errno, err;
    if ((err = fault_check(HM_OS_MADVISE))) return err;
    err = rc_errno(hm_sys_madvise(addr, size, advice));
    errno = saved;
    return err;
}

int hm_os_discard(void *addr, size_t size) { return advise(addr, size, MADV_DONTNEED); }
int hm_os_lazy_free(void *addr, size_t size) { return advise(addr, size, MADV_FREE); }
#ifndef MADV_COLD
#define MADV_COLD 20
#endif
int hm_os_cold(void *addr, size_t size)
{
    int err = advise(addr, size, MADV_COLD);
    return err == EINVAL ? 0 : err; /* (before Linux 5.4: the advice is not known, and only advice) */
}
int hm_os_hugepage_hint(void *addr, size_t size) { return advise(addr, size, MADV_HUGEPAGE); }

static _Atomic bool names_unknown; /* the kernel answered EINVAL: it has no names for mappings */

void hm_os_name(void *addr, size_t size, const char *name)
{
    if (atomic_load_explicit(&names_unknown, memory_order_relaxed)) return; /* (a system call saved) */
    int saved = errno;
    if (prctl(PR_SET_VMA, PR_SET_VMA_ANON_NAME, (unsigned long)addr, size, (unsigned long)name) && errno == EINVAL)
        atomic_store_explicit(&names_unknown, true, memory_order_relaxed);
    errno = saved;
}

/* ---- /proc and /sys ------------------------------------------------------------------------- */

int hm_os_pagemap(const void *addr, size_t npages, uint64_t *out)
{
    int saved = errno, err;
    if ((err = fault_check(HM_OS_PROCFS))) return err;
    int fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        err = errno;
        errno = saved;
        return err;
    }
    size_t page = cfg.page_size ? cfg.page_size : 4096;
    off_t off = (off_t)((uintptr_t)addr / page * 8);
    size_t want = npages * 8, got = 0;
    err = 0;
    while (got < want) {
        ssize_t r = pread(fd, (char *)out + got, want - got, off + (off_t)got);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) {
            err = r < 0 ? errno : EIO;
            break;
        }
        got += (size_t)r;
    }
    close(fd);
    errno = saved;
    return err;
}

int hm_os_read_text(const char *path, char *buf, size_t cap, size_t *len)
{
    int saved = errno, err;
    if (cap == 0) return EINVAL;
    if ((err = fault_check(HM_OS_PROCFS))) return err;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        err = errno;
        errno = saved;
        return err;
    }
    size_t got = 0;
    err = 0;
    while (got + 1 < cap) {
        ssize_t r = read(fd, buf + got, cap - 1 - got);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) {
            err = errno;
            break;
        }
        if (r == 0) break;
        got += (size_t)r;
    }
    close(fd);
    buf[got] = 0;
    if (!err) *len = got;
    errno = saved;
    return err;
}

int hm_os_maps_foreach(int (*fn)(uintptr_t lo, uintptr_t hi, int prot, void *arg), void *arg)
{
    int saved = errno, err;
    if ((err = fault_check(HM_OS_PROCFS))) return err;
    int fd = open("/proc/self/maps", O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        err = errno;
        errno = saved;
        return err;
    }
    char buf[8192];
    size_t have = 0;
    bool stop = false;
    err = 0;
    while (!stop) {
        ssize_t r = read(fd, buf + have, sizeof buf - 1 - have);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) {
            err = errno;
            break;
        }
        have += (size_t)r;
        buf[have] = 0;
        char *line = buf, *nl;
        while (!stop && (nl = strchr(line, '\n'))) { /* "lo-hi rwxp ..." */
            *nl = 0;
            char *end;
            uintptr_t lo = strtoul(line, &end, 16), hi = strtoul(end + 1, &end, 16);
            const char *perm = end + 1;
            int prot = (perm[0] == 'r' ? HM_OS_PROT_READ : 0) | (perm[1] == 'w' ? HM_OS_PROT_WRITE : 0) |
                       (perm[2] == 'x' ? HM_OS_PROT_EXEC : 0);
            stop = fn(lo, hi, prot, arg) != 0;
            line = nl + 1;
        }
        have = (size_t)(buf + have - line);
        memmove(buf, line, have);
        if (r == 0) break;
    }
    close(fd);
    errno = saved;
    return err;
}

uint64_t hm_os_physical_memory(void)
{
    int saved = errno;
    long pages = sysconf(_SC_PHYS_PAGES), ps = sysconf(_SC_PAGESIZE);
    errno = saved;
    return pages > 0 && ps > 0 ? (uint64_t)pages * (uint64_t)ps : 0;
}

uint64_t hm_os_address_space_limit(void)
{
    int saved = errno;
    struct rlimit rl;
    uint64_t v = getrlimit(RLIMIT_AS, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY ? (uint64_t)rl.rlim_cur : UINT64_MAX;
    errno = saved;
    return v;
}

void hm_os_yield(void)
{
    int saved = errno;
    sched_yield();
    errno = saved;
}

void hm_os_resident(uint64_t *peak, uint64_t *now)
{
    char buf[4096];
    size_t len;
    *peak = *now = 0;
    if (hm_os_read_text("/proc/self/status", buf, sizeof buf, &len) != 0) return;
    const char *p = strstr(buf, "VmHWM:"), *q = strstr(buf, "VmRSS:");
    if (p) *peak = strtoull(p + 6, NULL, 10) * 1024;
    if (q) *now = strtoull(q + 6, NULL, 10) * 1024;
}

uint64_t hm_os_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}
