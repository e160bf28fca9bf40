/* dirty.c — written-page tracking with userfaultfd write protection (asynchronous) and PAGEMAP_SCAN
 * (see dirty.h for what counts as written and why).
 *
 * State: two descriptors opened once by the probe and kept for the process's life (a userfaultfd and
 * /proc/self/pagemap), the pid that opened them, and the probe's answer. Nothing else: which ranges
 * are registered, and which pages are protected, is the kernel's to know, so concurrent calls on
 * different ranges need no lock, and calls on the same range are ordered by the kernel's locks.
 *
 * Every public call saves errno, checks its arguments, asks the fault-injection seam once (os.c,
 * kind HM_OS_UFFD: an injected failure makes no kernel call at all), and restores errno. The probe
 * asks it before each of its own kernel calls instead, so that a test can refuse any one of them
 * (in a fresh process: the answer is kept for good): HM_OS_UFFD for the userfaultfd system call, the
 * open of /dev/userfaultfd and every ioctl (the self-test's register, scans and write-protect: one
 * count each), HM_OS_PROCFS for the open of /proc/self/pagemap, HM_OS_MMAP for the scratch mapping;
 * an injected failure skips that call and the probe ends as on the kernel's refusal. Calls made to
 * roll back a failure (close, munmap, UFFDIO_UNREGISTER) are not counted, like os.c's own cleanups.
 * No memory is allocated: the scan's page_region vector is a bounded array on the stack, refilled in
 * a loop. */
#define _GNU_SOURCE
#include "dirty.h"
#include "os.h"
#include "sys.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#if defined(__has_include)
#if __has_include(<linux/userfaultfd.h>)
#include <linux/userfaultfd.h>
#endif
#endif

/* ---- the kernel's interface, where the installed headers are older than the kernel ------------- */
/* Values from include/uapi/linux/userfaultfd.h and include/uapi/linux/fs.h (Linux 6.7+). */

#ifndef UFFDIO_API
struct uffdio_api {
    uint64_t api, features, ioctls;
};
struct uffdio_range {
    uint64_t start, len;
};
struct uffdio_register {
    struct uffdio_range range;
    uint64_t mode, ioctls;
};
#define UFFD_API ((uint64_t)0xAA)
#define UFFDIO 0xAA
#define _UFFDIO_REGISTER 0x00
#define _UFFDIO_UNREGISTER 0x01
#define _UFFDIO_API 0x3F
#define UFFDIO_API _IOWR(UFFDIO, _UFFDIO_API, struct uffdio_api)
#define UFFDIO_REGISTER _IOWR(UFFDIO, _UFFDIO_REGISTER, struct uffdio_register)
#define UFFDIO_UNREGISTER _IOR(UFFDIO, _UFFDIO_UNREGISTER, struct uffdio_range)
#endif
#ifndef UFFDIO_REGISTER_MODE_WP
#define UFFDIO_REGISTER_MODE_WP ((uint64_t)1 << 1)
#endif
#ifndef UFFDIO_WRITEPROTECT
struct uffdio_writeprotect {
    struct uffdio_range range;
    uint64_t mode;
};
#define _UFFDIO_WRITEPROTECT 0x06
#define UFFDIO_WRITEPROTECT _IOWR(UFFDIO, _UFFDIO_WRITEPROTECT, struct uffdio_writeprotect)
#endif
#ifndef UFFDIO_WRITEPROTECT_MODE_WP
#define UFFDIO_WRITEPROTECT_MODE_WP ((uint64_t)1 << 0)
#endif
#ifndef UFFD_FEATURE_WP_UNPOPULATED
#define UFFD_FEATURE_WP_UNPOPULATED (1 << 13)
#endif
#ifndef UFFD_FEATURE_WP_ASYNC
#define UFFD_FEATURE_WP_ASYNC (1 << 15)
#endif
#ifndef UFFD_USER_MODE_ONLY
#define UFFD_USER_MODE_ONLY 1
#endif
#ifndef USERFAULTFD_IOC_NEW
#define USERFAULTFD_IOC 0xAA
#define USERFAULTFD_IOC_NEW _IO(USERFAULTFD_IOC, 0x00)
#endif

#ifndef PAGEMAP_SCAN
struct page_region {
    uint64_t start; /* first byte */
    uint64_t end;   /* past the last byte */
    uint64_t categories;
};
struct pm_scan_arg {
    uint64_t size;                /* sizeof(struct pm_scan_arg) */
    uint64_t flags;               /* PM_SCAN_* */
    uint64_t start, end;          /* the range walked */
    uint64_t walk_end;            /* written back: where the walk stopped (end when complete) */
    uint64_t vec, vec_len;        /* output regions */
    uint64_t max_pages;           /* at most this many pages reported (0: no limit) */
    uint64_t category_inverted;   /* PAGE_IS_* bits that match when clear */
    uint64_t category_mask;       /* every one of these must match */
    uint64_t category_anyof_mask; /* at least one of these must match (0: no condition) */
    uint64_t return_mask;         /* categories copied into page_region.categories */
};
#define PAGEMAP_SCAN _IOWR('f', 16, struct pm_scan_arg)
#endif
#ifndef PAGE_IS_WRITTEN
#define PAGE_IS_WPALLOWED (1 << 0)
#define PAGE_IS_WRITTEN (1 << 1)
#define PAGE_IS_FILE (1 << 2)
#define PAGE_IS_PRESENT (1 << 3)
#define PAGE_IS_SWAPPED (1 << 4)
#define PAGE_IS_PFNZERO (1 << 5)
#endif
#ifndef PM_SCAN_WP_MATCHING
#define PM_SCAN_WP_MATCHING (1 << 0)   /* write-protect the pages reported */
#define PM_SCAN_CHECK_WPASYNC (1 << 1) /* EPERM if part of the range is not tracked async */
#endif

/* ---- state ---------------------------------------------------------------------------------- */

static pthread_once_t probe_once = PTHREAD_ONCE_INIT;
static bool available;          /* the probe's answer; the rest is valid when true */
static int uffd = -1;           /* userfaultfd, WP_ASYNC | WP_UNPOPULATED enabled */
static int pagemap = -1;        /* /proc/self/pagemap of the process that opened it */
static pid_t owner;             /* that process: a child after fork tracks nothing */
static size_t page;             /* the kernel's page size */
static char reason[160];        /* why not, when !available */
static atomic_int thp_guard_mode = -1;

#define SCAN_VEC 256 /* page_regions per PAGEMAP_SCAN: 6 KiB of stack (128: 5 % slower at worst, 512: 1 % faster) */

/* What a written page is (dirty.h): not write-protected, and backed by memory of its own — present or
 * swapped, not the zero page. Requiring PRESENT or SWAPPED excludes empty entries and missing page
 * tables, which kernels report as written or not depending on their version; it also takes the
 * kernel off its PAGE_IS_WRITTEN-only fast path, which would report empty entries. */
#define SCAN_INVERTED PAGE_IS_PFNZERO
#define SCAN_MASK (PAGE_IS_WRITTEN | PAGE_IS_PFNZERO)
#define SCAN_ANYOF (PAGE_IS_PRESENT | PAGE_IS_SWAPPED)

static const char *errname(int e)
{
    switch (e) {
    case EPERM: return "EPERM";
    case ENOENT: return "ENOENT";
    case EINTR: return "EINTR";
    case EIO: return "EIO";
    case ENOMEM: return "ENOMEM";
    case EACCES: return "EACCES";
    case EFAULT: return "EFAULT";
    case EBUSY: return "EBUSY";
    case EEXIST: return "EEXIST";
    case EINVAL: return "EINVAL";
    case ENOTTY: return "ENOTTY";
    case ENOSPC: return "ENOSPC";
    case ENOSYS: return "ENOSYS";
    case EOPNOTSUPP: return "EOPNOTSUPP";
    default: return "errno";
    }
}

static bool thp_guard(void)
{
    int m = atomic_load_explicit(&thp_guard_mode, memory_order_relaxed);
    return m < 0 ? hm_os_cfg()->thp == 2 : m != 0;
}

void hm_dirty_set_thp_guard(int mode)
{
    atomic_store_explicit(&thp_guard_mode, mode < 0 ? -1 : mode != 0, memory_order_relaxed);
}

/* ---- kernel calls (uncounted; each returns 0 or errno and leaves errno to the caller) ---------- */

static int k_register(uintptr_t a, size_t len)
{
    struct uffdio_register r = {.range = {.start = a, .len = len}, .mode = UFFDIO_REGISTER_MODE_WP};
    if (ioctl(uffd, UFFDIO_REGISTER, &r) != 0) return errno;
    if (!(r.ioctls & ((uint64_t)1 << _UFFDIO_WRITEPROTECT))) { /* not memory write protection applies to */
        struct uffdio_range u = {.start = a, .len = len};
        (void)ioctl(uffd, UFFDIO_UNREGISTER, &u);
        return EINVAL;
    }
    return 0;
}

static int k_unregister(uintptr_t a, size_t len)
{
    struct uffdio_range u = {.start = a, .len = len};
    return ioctl(uffd, UFFDIO_UNREGISTER, &u) == 0 ? 0 : errno;
}

/* Protects every page of the range, building its page tables and filling their empty entries with
 * markers (WP_UNPOPULATED): the THP guard's reset. */
static int k_protect(uintptr_t a, size_t len)
{
    struct uffdio_writeprotect w = {.range = {.start = a, .len = len}, .mode = UFFDIO_WRITEPROTECT_MODE_WP};
    return ioctl(uffd, UFFDIO_WRITEPROTECT, &w) == 0 ? 0 : errno;
}

/* Lists (into out, unless NULL) and with reset re-protects the written pages of [a, a+len), at most
 * max of them (SIZE_MAX: no limit); *n gets their number, on failure too (the pages listed before a
 * failing ioctl were reset by it if reset). The kernel stops each call when the vector fills or
 * max_pages is reached, never reporting (or protecting) a page it does not list, and says where it
 * stopped in walk_end; the loop goes on from there. */
static int k_scan(uintptr_t a, size_t len, uintptr_t *out, size_t max, bool reset, size_t *n)
{
    struct page_region vec[SCAN_VEC];
    uint64_t start = a, end = (uint64_t)a + len;
    size_t got = 0;
    int err = 0;
    while (start < end && got < max) {
        struct pm_scan_arg arg = {
            .size = sizeof arg,
            .flags = PM_SCAN_CHECK_WPASYNC | (reset ? PM_SCAN_WP_MATCHING : 0),
            .start = start,
            .end = end,
            .vec = (uintptr_t)vec,
            .vec_len = SCAN_VEC,
            .max_pages = max == SIZE_MAX ? 0 : (uint64_t)(max - got),
            .category_inverted = SCAN_INVERTED,
            .category_mask = SCAN_MASK,
            .category_anyof_mask = SCAN_ANYOF,
            .return_mask = PAGE_IS_WRITTEN,
        };
        long r = ioctl(pagemap, PAGEMAP_SCAN, &arg);
        if (r < 0) {
            err = errno;
            break;
        }
        for (long i = 0; i < r && i < SCAN_VEC; i++)
            for (uint64_t p = vec[i].start; p < vec[i].end && got < max; p += page) {
                if (out) out[got] = (uintptr_t)p;
                got++;
            }
        if (arg.walk_end <= start || arg.walk_end > end) { /* no progress: a kernel we do not understand */
            if (got < max && arg.walk_end != end) err = EIO;
            break;
        }
        start = arg.walk_end;
    }
    *n = got;
    return err;
}

/* 0 if every mapping in [a, a+len) is tracked, else EPERM: one PAGEMAP_SCAN that walks no page table.
 * PM_SCAN_CHECK_WPASYNC refuses an untracked mapping, and asking for the tracked ones' category
 * inverted makes the kernel skip each tracked mapping whole (pagemap_scan_test_walk), so the cost is
 * per mapping, not per page. Needed before anything that protects pages: the kernel checks each
 * mapping only when its walk reaches it, so a scan with reset (or a reset) that meets an untracked
 * mapping fails with EPERM after protecting the pages before it, and their reports would be lost. */
static int k_tracked(uintptr_t a, size_t len)
{
    struct pm_scan_arg arg = {
        .size = sizeof arg,
        .flags = PM_SCAN_CHECK_WPASYNC,
        .start = a,
        .end = (uint64_t)a + len,
        .category_inverted = PAGE_IS_WPALLOWED,
        .category_mask = PAGE_IS_WPALLOWED,
    };
    return ioctl(pagemap, PAGEMAP_SCAN, &arg) < 0 ? errno : 0;
}

/* Starts the range clean: with the THP guard, protection of every page (page tables built); without,
 * exactly the written pages are protected and empty entries stay empty (they read clean anyway, and
 * a first write to them then takes one fault, not two). */
static int k_clean(uintptr_t a, size_t len)
{
    size_t n;
    int err = k_tracked(a, len);
    if (err) return err;
    return thp_guard() ? k_protect(a, len) : k_scan(a, len, NULL, SIZE_MAX, true, &n);
}

/* ---- probe ---------------------------------------------------------------------------------- */

/* Each attempt asks the seam first (HM_OS_UFFD): the system call, the open of the device, its ioctl. */
static int open_uffd(void)
{
    int flags = O_CLOEXEC | O_NONBLOCK | UFFD_USER_MODE_ONLY, e1 = ENOSYS, e2;
#ifdef SYS_userfaultfd
    if (!(e1 = hm_os_fault_check(HM_OS_UFFD))) {
        int fd = (int)syscall(SYS_userfaultfd, flags);
        if (fd >= 0) return fd;
        e1 = errno;
    }
#endif
    int dev = -1;
    if (!(e2 = hm_os_fault_check(HM_OS_UFFD)) && (dev = open("/dev/userfaultfd", O_RDWR | O_CLOEXEC)) < 0) e2 = errno;
    if (dev >= 0) {
        int f = -1;
        if (!(e2 = hm_os_fault_check(HM_OS_UFFD)) && (f = ioctl(dev, USERFAULTFD_IOC_NEW, flags)) < 0) e2 = errno;
        close(dev);
        if (f >= 0) return f;
    }
    snprintf(reason, sizeof reason, "userfaultfd: %s (%d); /dev/userfaultfd: %s (%d)", errname(e1), e1, errname(e2),
             e2);
    return -1;
}

/* The self-test's kernel calls ask the seam first, one count each (HM_OS_UFFD). */
static int step(void) { return hm_os_fault_check(HM_OS_UFFD); }

/* The scratch cycle: every page listed must be exactly what was written, reset must reset, and both
 * clean-ups (scan and UFFDIO_WRITEPROTECT) must work. 0 or the reason's text. */
static const char *self_test(void)
{
    enum { NP = 8 };
    size_t len = NP * page;
    int err = hm_os_fault_check(HM_OS_MMAP);
    char *m = err ? MAP_FAILED : hm_sys_mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED) {
        if (!err) err = errno;
        snprintf(reason, sizeof reason, "scratch mapping: mmap: %s (%d)", errname(err), err);
        return reason;
    }
    uintptr_t a = (uintptr_t)m, got[NP];
    size_t n;
    const char *why = NULL;
    m[0] = 1; /* written before registration: must not count */
    if ((err = step()) || (err = k_register(a, len))) {
        snprintf(reason, sizeof reason, "UFFDIO_REGISTER (write-protect mode): %s (%d)", errname(err), err);
        hm_sys_munmap(m, len);
        return reason;
    }
    if ((err = step()) || (err = k_scan(a, len, NULL, SIZE_MAX, true, &n))) goto scan_failed;
    m[1 * page] = 1;
    m[3 * page] = 1;
    m[4 * page] = 1;
    (void)*(volatile char *)(m + 6 * page); /* a read: must not count */
    if ((err = step()) || (err = k_scan(a, len, got, NP, false, &n))) goto scan_failed;
    if (n != 3 || got[0] != a + page || got[1] != a + 3 * page || got[2] != a + 4 * page) goto wrong;
    if ((err = step()) || (err = k_scan(a, len, got, 2, true, &n))) goto scan_failed; /* max: pages 1 and 3 only */
    if (n != 2 || got[1] != a + 3 * page) goto wrong;
    if ((err = step()) || (err = k_scan(a, len, got, NP, true, &n))) goto scan_failed;
    if (n != 1 || got[0] != a + 4 * page) goto wrong;
    m[2 * page] = 1;
    if ((err = step()) || (err = k_protect(a, len))) {
        snprintf(reason, sizeof reason, "UFFDIO_WRITEPROTECT: %s (%d)", errname(err), err);
        why = reason;
        goto out;
    }
    m[5 * page] = 1;
    if ((err = step()) || (err = k_scan(a, len, got, NP, true, &n))) goto scan_failed;
    if (n != 1 || got[0] != a + 5 * page) goto wrong;
    goto out;
scan_failed:
    snprintf(reason, sizeof reason, "PAGEMAP_SCAN: %s (%d)", errname(err), err);
    why = reason;
    goto out;
wrong:
    why = "PAGEMAP_SCAN: wrong pages listed on the scratch mapping";
out:
    (void)k_unregister(a, len);
    hm_sys_munmap(m, len);
    return why;
}

static void probe(void)
{
    int saved = errno;
    hm_os_init();
    long ps = sysconf(_SC_PAGESIZE);
    page = ps > 0 ? (size_t)ps : 4096;
    const char *env = getenv("HOSTMEM_WRITE_WATCH");
    if (env && strcmp(env, "fallback") == 0) {
        snprintf(reason, sizeof reason, "forced by HOSTMEM_WRITE_WATCH=fallback");
        goto out;
    }
    int fd = open_uffd();
    if (fd < 0) goto out;
    struct uffdio_api api = {.api = UFFD_API, .features = UFFD_FEATURE_WP_ASYNC | UFFD_FEATURE_WP_UNPOPULATED};
    int e = hm_os_fault_check(HM_OS_UFFD);
    if (e || ioctl(fd, UFFDIO_API, &api) != 0) {
        if (!e) e = errno;
        snprintf(reason, sizeof reason, "UFFDIO_API: %s (%d)%s", errname(e), e,
                 e == EINVAL ? " (no WP_ASYNC: Linux older than 6.7?)" : "");
        close(fd);
        goto out;
    }
    uint64_t need = UFFD_FEATURE_WP_ASYNC | UFFD_FEATURE_WP_UNPOPULATED;
    if ((api.features & need) != need || !(api.ioctls & ((uint64_t)1 << _UFFDIO_REGISTER))) {
        snprintf(reason, sizeof reason, "UFFDIO_API: features %#llx lack WP_ASYNC or WP_UNPOPULATED",
                 (unsigned long long)api.features);
        close(fd);
        goto out;
    }
    int pm = -1;
    if (!(e = hm_os_fault_check(HM_OS_PROCFS)) && (pm = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC)) < 0) e = errno;
    if (e) {
        snprintf(reason, sizeof reason, "/proc/self/pagemap: %s (%d)", errname(e), e);
        close(fd);
        goto out;
    }
    uffd = fd;
    pagemap = pm;
    const char *why = self_test();
    if (why) {
        if (why != reason) snprintf(reason, sizeof reason, "%s", why);
        close(fd);
        close(pm);
        uffd = pagemap = -1;
        goto out;
    }
    owner = getpid();
    available = true;
out:
    errno = saved;
}

bool hm_dirty_available(void)
{
    pthread_once(&probe_once, probe);
    return available;
}

const char *hm_dirty_describe(void)
{
    if (!hm_dirty_available()) return reason;
    return thp_guard() ? "uffd-wp async + PAGEMAP_SCAN + THP guard" : "uffd-wp async + PAGEMAP_SCAN";
}

/* ---- the calls ------------------------------------------------------------------------------ */

/* 0 when the mechanism works in this process and the range is well formed. */
static int usable(void *addr, size_t size)
{
    if (!hm_dirty_available()) return ENOSYS;
    uintptr_t a = (uintptr_t)addr;
    if (!addr || size == 0 || a % page || size % page || a + size < a) return EINVAL;
    if (getpid() != owner) return ECHILD;
    return 0;
}

/* 0 to go on with the kernel calls: usable, and no fault injected (one count per public call). */
static int enter(void *addr, size_t size)
{
    int err = usable(addr, size);
    return err ? err : hm_os_fault_check(HM_OS_UFFD);
}

int hm_dirty_register(void *addr, size_t size)
{
    int saved = errno, err;
    if ((err = enter(addr, size))) goto out;
    uintptr_t a = (uintptr_t)addr;
    err = k_register(a, size);
    if (!err) err = k_clean(a, size);
    if (err) (void)k_unregister(a, size); /* a refused registration may have taken its first VMAs */
out:
    errno = saved;
    return err;
}

int hm_dirty_unregister(void *addr, size_t size)
{
    int saved = errno, err;
    if (!(err = enter(addr, size))) err = k_unregister((uintptr_t)addr, size);
    errno = saved;
    return err;
}

int hm_dirty_scan(void *addr, size_t size, uintptr_t *out, size_t max, bool reset, size_t *n)
{
    int saved = errno, err;
    if (!n || (!out && max)) {
        err = EINVAL;
    } else if (max == 0) {
        if (!(err = usable(addr, size))) *n = 0;
    } else if (!(err = enter(addr, size))) {
        size_t got = 0;
        if (!reset || !(err = k_tracked((uintptr_t)addr, size))) {
            err = k_scan((uintptr_t)addr, size, out, max, reset, &got);
            if (!err || got) *n = got;
        }
    }
    errno = saved;
    return err;
}

int hm_dirty_reset(void *addr, size_t size)
{
    int saved = errno, err;
    if (!(err = enter(addr, size))) err = k_clean((uintptr_t)addr, size);
    errno = saved;
    return err;
}
