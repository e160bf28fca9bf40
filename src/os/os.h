/* os.h — the platform layer: the only code in hostmem that calls the kernel (mmap family, madvise,
 * prctl, /proc and /sys). Everything above it reads as policy.
 *
 * On every function below, unless it says otherwise:
 *   addr != NULL and page aligned; size > 0 and a multiple of the page size;
 *   the return value is 0 on success or an errno value (never -1), and errno itself is preserved;
 *   results come back through out-parameters, which are left untouched on failure.
 *
 * Fault injection: every kernel call goes through one counted entry (hm_os_call_t). A test may ask
 * that the n-th next call of a kind fail with a chosen errno, once or for good; the call is then not
 * made at all, so the kernel's state is exactly as before it. hm_os_fault_hit() is one NOINLINE
 * function that runs on every injected fault: the one place for a debugger breakpoint. */
#ifndef HM_OS_H
#define HM_OS_H

#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>

typedef enum hm_os_call {
    HM_OS_MMAP,      /* every mapping: reserve, reserve_at, aligned, hugetlb */
    HM_OS_MUNMAP,
    HM_OS_MPROTECT,
    HM_OS_MADVISE,   /* discard (DONTNEED), lazy free (FREE), huge-page hint */
    HM_OS_PROCFS,    /* reads of /proc and /sys, pagemap included */
    HM_OS_UFFD,      /* write tracking (dirty.h): the userfaultfd system call or /dev/userfaultfd, its
                        ioctls and PAGEMAP_SCAN, one count per call */
    HM_OS_CALL_COUNT
} hm_os_call_t;

/* What the platform offers, probed once (hm_os_init). Policy reads these fields, never #ifdefs. */
typedef struct hm_os_config {
    size_t page_size;          /* the kernel's page size; hostmem runs only where it is 4096 */
    size_t granularity;        /* 65536: Windows' allocation granularity, kept on Linux */
    uintptr_t min_address;     /* 0x10000 */
    uintptr_t max_address;     /* highest usable byte (0x7FFFFFFEFFFF, Windows' value on x64) */
    unsigned processors;
    long max_map_count;        /* vm.max_map_count, or -1 when unreadable */
    int thp;                   /* transparent huge pages: 0 never, 1 madvise, 2 always, -1 unknown */
    size_t huge_page_size;     /* PMD huge page size (2 MiB on x86-64) */
    long hugetlb_free;         /* HugePages_Free from /proc/meminfo, -1 when unreadable */
    bool pagemap;              /* /proc/self/pagemap is readable */
} hm_os_config;

/* Probes once; later calls return the same result. */
const hm_os_config *hm_os_init(void);
const hm_os_config *hm_os_cfg(void); /* pre: hm_os_init ran */

/* Linux protection bits for mapping calls (PROT_* values, kept out of the headers above). */
enum { HM_OS_PROT_NONE = 0, HM_OS_PROT_READ = 1, HM_OS_PROT_WRITE = 2, HM_OS_PROT_EXEC = 4 };

/* New PROT_NONE, MAP_NORESERVE anonymous memory anywhere, aligned to `align` (a power of two, at
 * least the page size). `hint`, if not NULL, is where the kernel is asked to place it first. */
int hm_os_reserve(void *hint, size_t size, size_t align, void **out);
/* The same at exactly addr, never replacing anything there (MAP_FIXED_NOREPLACE): EEXIST if any
 * byte of [addr, addr+size) is already mapped. */
int hm_os_reserve_at(void *addr, size_t size);
/* Read-write memory backed by hugetlb pages (MAP_HUGETLB), aligned to the huge page size;
 * size is a multiple of it. Fails (ENOMEM) where no huge pages are reserved. */
int hm_os_map_hugetlb(size_t size, void **out);
/* Read-write metadata memory for the map's own records (never part of an allocation). */
int hm_os_map_meta(size_t size, void **out);
int hm_os_unmap(void *addr, size_t size);
int hm_os_protect(void *addr, size_t size, int prot);
/* Pages read as zero afterwards (MADV_DONTNEED on private anonymous memory). */
int hm_os_discard(void *addr, size_t size);
/* Contents may be dropped lazily by the kernel (MADV_FREE). */
int hm_os_lazy_free(void *addr, size_t size);
/* Contents are kept, but the pages are the first the kernel reclaims (swaps out) under pressure
 * (MADV_COLD; a kernel without it ignores the advice). */
int hm_os_cold(void *addr, size_t size);
/* Ask for transparent huge pages over the range (MADV_HUGEPAGE). */
int hm_os_hugepage_hint(void *addr, size_t size);
/* Names the mapping in /proc/PID/maps ("[anon:hostmem]"); best effort, never fails. A kernel without
 * names for anonymous mappings (EINVAL) is asked once, not on every mapping. */
void hm_os_name(void *addr, size_t size, const char *name);

/* ---- two views of one memory (views.c): executable heaps under W^X --------------------------- */

/* Whether anonymous memory may be writable and executable at once (probed once; the environment
 * variable HOSTMEM_EXEC_VIEWS=dual answers no, so that tests can run the two-view path anywhere). */
bool hm_os_wx_allowed(void);
/* A memory object of size bytes (memfd_create, close-on-exec) in *fd. */
int hm_os_memfd(size_t size, int *fd);
/* Maps [off, off+size) of fd shared at exactly addr, over hostmem's own reservation there. */
int hm_os_map_shared_at(void *addr, size_t size, int fd, uint64_t off, int prot);
/* The same wherever the kernel likes (the read-write view). */
int hm_os_map_shared(size_t size, int fd, uint64_t off, int prot, void **out);
/* Frees the memory of [off, off+size) of fd: it reads zero afterwards (fallocate PUNCH_HOLE). */
int hm_os_punch(int fd, uint64_t off, size_t size);
/* A fresh PROT_NONE anonymous reservation at exactly addr, over what is there (a shared view). */
int hm_os_rereserve(void *addr, size_t size);
void hm_os_close(int fd);

/* Pagemap entries (/proc/self/pagemap, 64 bits a page) of npages pages from addr. */
int hm_os_pagemap(const void *addr, size_t npages, uint64_t *out);
#define HM_OS_PAGEMAP_PRESENT  (1ull << 63)
#define HM_OS_PAGEMAP_SWAPPED  (1ull << 62)
#define HM_OS_PAGEMAP_PFN_MASK ((1ull << 55) - 1)

/* Calls fn for every mapping of this process (/proc/self/maps) in address order, with its bounds and
 * HM_OS_PROT_* bits; stops when fn returns nonzero. */
int hm_os_maps_foreach(int (*fn)(uintptr_t lo, uintptr_t hi, int prot, void *arg), void *arg);

/* Gives the processor to another thread (sched_yield). */
void hm_os_yield(void);

/* Physical memory in bytes (sysconf), 0 if unknown. */
uint64_t hm_os_physical_memory(void);
/* The soft RLIMIT_AS in bytes, or UINT64_MAX when unlimited. */
uint64_t hm_os_address_space_limit(void);
/* Resident memory as the kernel counts it: the process's high-water mark (VmHWM) and now (VmRSS),
 * bytes; 0 where unknown. */
void hm_os_resident(uint64_t *peak, uint64_t *now);
/* CLOCK_MONOTONIC in nanoseconds. */
uint64_t hm_os_now_ns(void);

/* Reads a small text file (from /proc or /sys) into buf, NUL-terminated; *len gets its length. */
int hm_os_read_text(const char *path, char *buf, size_t cap, size_t *len);

/* ---- fault injection (tests) ---------------------------------------------------------------- */

/* The nth next call of this kind (1 = the very next) fails with err; with persistent, that call
 * and every later one fail until hm_os_fault_clear. nth 0 disarms the kind. */
void hm_os_fault_inject(hm_os_call_t call, unsigned long nth, int err, bool persistent);
void hm_os_fault_clear(void);
/* Calls of this kind made or attempted since start (injected failures included). */
unsigned long hm_os_calls(hm_os_call_t call);
/* Injected failures so far, all kinds. */
unsigned long hm_os_faults_injected(void);
/* Runs on every injected fault; exists to be a breakpoint. */
void hm_os_fault_hit(hm_os_call_t call, int err);
/* The seam itself, for the platform files beside os.c (dirty.c): counts one call of this kind and
 * answers 0 to go on with it, or the errno to fail it with (the call is then not made at all). */
int hm_os_fault_check(hm_os_call_t call);

/* Tests only: make hm_os_init report another page size (before any other hostmem call). */
void hm_os_set_page_size_for_test(size_t page_size);

#endif
