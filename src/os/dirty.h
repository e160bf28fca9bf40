/* dirty.h — the kernel's record of written pages, for Win32 write watch (MEM_WRITE_WATCH,
 * GetWriteWatch, ResetWriteWatch). Part of the platform layer: os.h's contract holds here too
 * (page-aligned addr and size, 0 or an errno value, errno preserved, out-parameters untouched on
 * failure unless a function says otherwise).
 *
 * The mechanism (Linux 6.7+): userfaultfd write protection in asynchronous mode. A registered range's
 * pages carry a write-protect bit; the first write to a protected page takes a fault that the kernel
 * resolves itself by clearing the bit, with no message and no signal, so the writer never waits on
 * us. The ioctl PAGEMAP_SCAN on /proc/self/pagemap lists the pages whose bit is clear and, in the
 * same walk under the page-table lock, sets it again (PM_SCAN_WP_MATCHING): a report and its reset
 * are one step, so a write racing a scan is either listed by it or left for the next one.
 *
 * What counts as written. A page is listed when it has memory (present, or swapped out) that is not
 * the shared zero page, and its write-protect bit is clear. So:
 *   - a page never touched since registration or reset reads clean (reads map the zero page, which
 *     no write can reach: writing copies it to a fresh page first);
 *   - a page discarded (MADV_DONTNEED: hostmem's decommit) reads clean from then on, whatever it
 *     held; recommitting it (mprotect) changes nothing, and only a new write makes it written. The
 *     kernel's own rule differs, and has changed: a discard drops protect bits with the pages (for
 *     anonymous memory it never leaves markers), and the 6.18.44 kernel this was written on reports
 *     an empty page-table entry, and a missing page table, of a tracked range as written ("not
 *     protected"; so do the 2026 fixes to task_mmu.c for pte_none entries and PMD holes); earlier
 *     6.x kernels said so for empty entries on their fast scan path only. The masks dirty.c passes
 *     (PAGE_IS_PRESENT or PAGE_IS_SWAPPED, and not PAGE_IS_PFNZERO) make every kernel answer alike;
 *   - the same holds for a page whose content the kernel dropped after MADV_FREE (MEM_RESET) under
 *     memory pressure: it reads zero and clean, even if written before — its data are gone too
 *     (seen with MADV_PAGEOUT forcing the reclaim);
 *   - mprotect keeps the bit: RW -> RO -> RW neither loses nor invents a written page;
 *   - writes by the kernel on the process's behalf (read(2) into the page) count like any other.
 *
 * Transparent huge pages. A first write into a 2 MiB range that has no page table yet may be given
 * a whole huge page, which then reads as 512 written pages (a superset: never fewer). Without THP
 * ('never', or 'madvise' and no MADV_HUGEPAGE on the range) that cannot happen. Under THP 'always'
 * this layer guards against it ("THP guard"): registration and reset write-protect with
 * UFFDIO_WRITEPROTECT, which builds the page tables of the whole range and fills them with protected
 * empty entries (markers), so faults stay 4 KiB. The price: 2 MiB of page tables per GiB registered,
 * about 5 ms per GiB to build them, and a first write to a marker takes two faults instead of one
 * (measured: 2.00 minor faults a page, 1.6 times the time). Under 'madvise', a range given
 * MADV_HUGEPAGE is not guarded; hostmem gives it only to MEM_LARGE_PAGES allocations, so combining
 * those with write watch would need the guard on (hm_dirty_set_thp_guard). A discard may free a
 * page table whose entries all became empty (CONFIG_PT_RECLAIM), so after discarding pages of a
 * registered range call hm_dirty_reset on them: with the guard it builds the tables again; without
 * it, it is cheap and changes nothing that reads differently.
 *
 * Not covered: a child after fork keeps no tracking (the kernel drops its registrations; the calls
 * fail there with ECHILD); hugetlb and file mappings (registration accepts only what hostmem maps:
 * private anonymous memory). */
#ifndef HM_OS_DIRTY_H
#define HM_OS_DIRTY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Probes once (thread-safe; later calls return the same answer): opens a userfaultfd (the
 * userfaultfd(2) system call with UFFD_USER_MODE_ONLY, else /dev/userfaultfd's USERFAULTFD_IOC_NEW),
 * enables UFFD_FEATURE_WP_ASYNC | UFFD_FEATURE_WP_UNPOPULATED (UFFDIO_API), opens /proc/self/pagemap,
 * and runs the whole cycle on a scratch mapping (register, write, scan, reset, scan). Both
 * descriptors are close-on-exec and kept for the process's life. True if the mechanism works.
 * HOSTMEM_WRITE_WATCH=fallback in the environment (read once, here) makes it answer false without
 * trying, so that tests can run both ways. Each of the probe's own kernel calls passes the fault
 * seam (HM_OS_UFFD for userfaultfd and its ioctls, HM_OS_PROCFS for pagemap, HM_OS_MMAP for the scratch
 * mapping): its answer is kept for good, so an injected failure sticks — a test that injects faults
 * into other calls probes first (hm_write_watch_mechanism()), and tests/dirty_probe.c refuses each
 * probe step in a child process of its own. */
bool hm_dirty_available(void);
/* Why not ("userfaultfd: EPERM; /dev/userfaultfd: EACCES", "UFFDIO_API: EINVAL (no WP_ASYNC: Linux
 * older than 6.7?)", "PAGEMAP_SCAN: ENOTTY", "forced by HOSTMEM_WRITE_WATCH=fallback"...), or the
 * mechanism's name when available ("uffd-wp async + PAGEMAP_SCAN", with " + THP guard" when the
 * guard is on). Probes if needed. A static string. */
const char *hm_dirty_describe(void);

/* Registers [addr, addr+size) for tracking and starts it clean: no page counts as written, whatever
 * it held. The range is an existing private anonymous mapping (any protection, PROT_NONE included),
 * not registered yet; it may be part of a larger mapping, which the kernel then splits (the rest keeps
 * its state). On failure nothing is registered. ENOSYS when the mechanism is unavailable. */
int hm_dirty_register(void *addr, size_t size);
/* Ends tracking of [addr, addr+size) (protect bits and markers are removed, contents stay); the
 * kernel merges the range back with neighbours that are like it again. */
int hm_dirty_unregister(void *addr, size_t size);

/* Lists, in address order, the pages of [addr, addr+size) written since registration or their last
 * reset: at most max page addresses into out, *n the number listed. With reset, exactly the pages
 * listed are reset (write-protected again), each atomically with its report: a write racing the call
 * is either listed now or counts as written afterwards, never lost. When max is reached before the
 * end of the range, the rest of the range is left as it was (the kernel stops at max_pages exactly,
 * in the middle of a run of written pages if need be). max 0 lists nothing and touches nothing.
 * Every page of the range must be registered or unmapped (EPERM otherwise, and nothing is reset:
 * with reset, a first kernel call checks the whole range, since PAGEMAP_SCAN would otherwise protect
 * the pages before the first untracked mapping and then fail, losing their reports).
 * The one exception to "untouched on failure": when the kernel fails a later step of a long scan
 * (which only a fatal signal does), *n says how many pages were listed (and reset) before it, so
 * that none is lost; an injected failure or refused arguments list and reset nothing. */
int hm_dirty_scan(void *addr, size_t size, uintptr_t *out, size_t max, bool reset, size_t *n);
/* Resets every page of the range (none counts as written afterwards); EPERM, and nothing reset, if
 * part of the range is not registered. Call it after discarding pages of a registered range (see
 * "Transparent huge pages" above). */
int hm_dirty_reset(void *addr, size_t size);

/* The THP guard (see above): -1 automatic (on when THP is 'always', the default), 0 off, 1 on. Takes
 * effect for later registrations and resets: a range keeps what its registration gave it until its
 * next reset. Policy and tests set it; hm_dirty_describe names it when on. */
void hm_dirty_set_thp_guard(int mode);

#endif
