/* dirty_probe.c — the write-watch probe (src/os/dirty.c) refused at each of its steps, and the kernel
 * refusing a registration or a scan.
 *
 * The probe runs once per process and its answer is kept, so every case runs in a forked child that
 * arms a fault (os.h's seam: the probe asks it before each of its kernel calls) before anything has
 * probed, then asks for the mechanism. A refused step must leave: the mechanism "fallback"; a
 * description that names the step and the error ("UFFDIO_API: EPERM (1)"); no descriptor and no
 * mapping behind (the userfaultfd, /proc/self/pagemap and the scratch mapping are let go); write
 * watch working through the fallback (GetWriteWatch lists exactly the pages written, reset resets);
 * and the kernel calls refusing with ENOSYS. Armed one call too late, the probe succeeds as in a
 * plain process. The test process itself never probes. The steps, in the probe's order (dirty.c):
 * the userfaultfd system call (else /dev/userfaultfd and its ioctl), UFFDIO_API, the open of
 * /proc/self/pagemap, the scratch mmap, then the self-test: UFFDIO_REGISTER, four PAGEMAP_SCANs,
 * UFFDIO_WRITEPROTECT, a last PAGEMAP_SCAN.
 *
 * Where the kernel offers the mechanism, two refusals by the kernel itself, with another userfaultfd
 * of the process (another runtime's, say) owning part of a range: registration fails whole (EBUSY),
 * the other registration intact and nothing of the range registered; a scan with reset and a reset
 * over a range partly owned by the other fail (EPERM) and reset nothing.
 *
 * A child reports a failed check on stderr and exits 99; in a coverage build it writes its gcov
 * counters before _exit (tu_coverage_dump). */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "testutil.h"
#include "os/dirty.h"
#include "os/os.h"

#if defined(__has_include)
#if __has_include(<linux/userfaultfd.h>)
#include <linux/userfaultfd.h>
#endif
#endif

#define PG ((size_t)4096)

/* What the plain child found, for the parent (a shared mapping). */
typedef struct plain_probe {
    bool done, kernel;
    unsigned long uffd_calls, procfs_calls, mmap_calls; /* made by the probe */
    char describe[256];
} plain_probe;

static plain_probe *plain;
static struct sigaction initial_segv; /* as main() found it, before cmocka's */

/* ---- in the child ---------------------------------------------------------------------------- */

static void child_fail(int line, const char *what, const char *detail)
{
    fprintf(stderr, "dirty_probe child: line %d: check failed: %s%s%s\n", line, what, detail ? ": " : "",
            detail ? detail : "");
    _exit(99);
}
#define CHECK(c) ((c) ? (void)0 : child_fail(__LINE__, #c, NULL))
#define CHECK_SAY(c, detail) ((c) ? (void)0 : child_fail(__LINE__, #c, (detail)))

static int count_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    CHECK(d != NULL);
    int n = 0;
    while (readdir(d)) n++;
    closedir(d);
    return n;
}

/* Lines of /proc/self/maps, or 0 under ThreadSanitizer (its shadow mappings come and go). */
static int count_maps(void)
{
    if (!KERNEL_CHECK) return 0;
    int fd = open("/proc/self/maps", O_RDONLY | O_CLOEXEC);
    CHECK(fd >= 0);
    char buf[8192];
    int n = 0;
    ssize_t r;
    while ((r = read(fd, buf, sizeof buf)) > 0)
        for (ssize_t i = 0; i < r; i++) n += buf[i] == '\n';
    close(fd);
    return n;
}

typedef struct probe_result {
    const char *mechanism, *describe;
    bool fired;
    unsigned long uffd_calls, procfs_calls, mmap_calls;
    int fds, maps; /* after minus before */
} probe_result;

/* Probes with the nth next call of kind failing (nth 0: nothing armed). */
static probe_result probe_with(hm_os_call_t kind, unsigned long nth, int err, bool persistent)
{
    probe_result r;
    memset(&r, 0, sizeof r);
    hm_os_init(); /* its /proc reads are counted too: not inside the window */
    int fds = count_fds(), maps = count_maps();
    unsigned long uffd = hm_os_calls(HM_OS_UFFD), procfs = hm_os_calls(HM_OS_PROCFS), mm = hm_os_calls(HM_OS_MMAP);
    unsigned long injected = hm_os_faults_injected();
    int saved = errno;
    errno = 4242;
    if (nth) hm_os_fault_inject(kind, nth, err, persistent);
    r.mechanism = hm_write_watch_mechanism();
    hm_os_fault_clear();
    CHECK(errno == 4242);
    errno = saved;
    r.fired = hm_os_faults_injected() != injected;
    r.uffd_calls = hm_os_calls(HM_OS_UFFD) - uffd;
    r.procfs_calls = hm_os_calls(HM_OS_PROCFS) - procfs;
    r.mmap_calls = hm_os_calls(HM_OS_MMAP) - mm;
    r.describe = hm_write_watch_describe();
    r.fds = count_fds() - fds;
    r.maps = count_maps() - maps;
    CHECK(r.describe && r.describe[0]);
    CHECK(!strcmp(hm_write_watch_describe(), r.describe) && hm_dirty_available() == !strcmp(r.mechanism, "kernel"));
    return r;
}

/* Write watch through whichever mechanism runs: exactly the pages written are listed, reset resets. */
static void watch_works(void)
{
    void *base = NULL;
    CHECK(hm_virtual_alloc(NULL, NULL, 16 * PG, HM_MEM_RESERVE | HM_MEM_COMMIT | HM_MEM_WRITE_WATCH, HM_PAGE_READWRITE,
                           &base) == HM_OK);
    volatile char *p = base;
    void *addrs[16];
    uintptr_t count = 16;
    uint32_t gran = 0;
    (void)p[2 * PG]; /* a read is no write */
    p[1 * PG] = 1;
    p[5 * PG + 100] = 2;
    p[5 * PG + 200] = 3;
    CHECK(hm_get_write_watch(NULL, HM_WRITE_WATCH_FLAG_RESET, base, 16 * PG, addrs, &count, &gran) == HM_OK);
    CHECK(count == 2 && addrs[0] == (char *)base + PG && addrs[1] == (char *)base + 5 * PG && gran == PG);
    count = 16;
    CHECK(hm_get_write_watch(NULL, 0, base, 16 * PG, addrs, &count, &gran) == HM_OK && count == 0);
    p[5 * PG] = 4;
    count = 16;
    CHECK(hm_get_write_watch(NULL, 0, base, 16 * PG, addrs, &count, &gran) == HM_OK);
    CHECK(count == 1 && addrs[0] == (char *)base + 5 * PG && p[5 * PG + 200] == 3);
    CHECK(hm_release(NULL, base) == HM_OK);
}

/* The probe refused: fallback, the reason given, nothing left behind, the fallback at work. */
static void expect_fallback(const probe_result *r, const char *why)
{
    CHECK_SAY(!strcmp(r->mechanism, "fallback"), r->describe);
    CHECK_SAY(strstr(r->describe, why) != NULL, r->describe);
    CHECK_SAY(r->fds == 0, r->describe);
    CHECK_SAY(r->maps == 0, r->describe);
    size_t n = 77;
    uintptr_t out[4];
    void *p = mmap(NULL, 4 * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    CHECK(p != MAP_FAILED);
    CHECK(hm_dirty_register(p, 4 * PG) == ENOSYS && hm_dirty_reset(p, 4 * PG) == ENOSYS);
    CHECK(hm_dirty_scan(p, 4 * PG, out, 4, true, &n) == ENOSYS && n == 77);
    CHECK(munmap(p, 4 * PG) == 0);
    watch_works();
}

/* The probe succeeded: the two descriptors kept, the scratch mapping gone, the kernel at work. */
static void expect_kernel(const probe_result *r)
{
    CHECK_SAY(!strcmp(r->mechanism, "kernel"), r->describe);
    CHECK_SAY(strstr(r->describe, "PAGEMAP_SCAN") != NULL, r->describe);
    CHECK(r->fds == 2);
    CHECK(r->maps == 0);
    watch_works();
}

/* ---- running a child -------------------------------------------------------------------------- */

static char err_text[1 << 14];

static void run(void (*body)(void))
{
    int er[2];
    assert_int_equal(pipe(er), 0);
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(er[0]);
        dup2(er[1], 2);
        close(er[1]);
        sigaction(SIGSEGV, &initial_segv, NULL); /* hostmem's handler chains to the program's own */
        alarm(60);
        body();
        tu_coverage_dump();
        _exit(0);
    }
    close(er[1]);
    size_t n = 0;
    ssize_t k;
    while (n < sizeof err_text - 1 && (k = read(er[0], err_text + n, sizeof err_text - 1 - n)) > 0) n += (size_t)k;
    err_text[n] = 0;
    close(er[0]);
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        fail_msg("child ended with status %#x; stderr:\n%s", status, err_text);
    if (err_text[0]) fail_msg("child wrote to stderr:\n%s", err_text);
}

/* The plain probe's findings, probing (in a child) the first time. */
static void child_plain(void)
{
    probe_result r = probe_with(HM_OS_UFFD, 0, 0, false);
    plain->kernel = !strcmp(r.mechanism, "kernel");
    plain->uffd_calls = r.uffd_calls;
    plain->procfs_calls = r.procfs_calls;
    plain->mmap_calls = r.mmap_calls;
    snprintf(plain->describe, sizeof plain->describe, "%s", r.describe);
    plain->done = true;
    if (plain->kernel) {
        expect_kernel(&r);
        CHECK(r.procfs_calls == 1 && r.mmap_calls == 1); /* every call of the probe is counted */
    } else {
        CHECK(r.fds == 0 && r.maps == 0);
        watch_works();
    }
}

static const plain_probe *need_plain(void)
{
    if (!plain->done) run(child_plain);
    return plain;
}

/* The probe's userfaultfd calls when it succeeds through the system call: the call, UFFDIO_API and
 * seven in the self-test. Through /dev/userfaultfd (the system call refused by the kernel): two more
 * before UFFDIO_API, the open and USERFAULTFD_IOC_NEW. */
#define PLAIN_CALLS 9UL
static unsigned long via_device; /* 0, or 2 when the plain probe went through /dev/userfaultfd */

/* The kernel mechanism works here: the probe's steps can be refused one by one. */
static void need_kernel(void)
{
    const plain_probe *pp = need_plain();
    if (!pp->kernel) {
        print_message("skipped: no kernel write watch here (%s)\n", pp->describe);
        skip();
    }
    if (pp->uffd_calls != PLAIN_CALLS && pp->uffd_calls != PLAIN_CALLS + 2)
        fail_msg("the probe made %lu userfaultfd calls, not %lu (or %lu through the device): update this test's list of "
                 "its steps", pp->uffd_calls, PLAIN_CALLS, PLAIN_CALLS + 2);
    via_device = pp->uffd_calls - PLAIN_CALLS;
}

/* ---- the probe plainly ------------------------------------------------------------------------ */

static void test_plain(void **state)
{
    (void)state;
    const plain_probe *pp = need_plain();
    print_message("plain probe: %s (%s); %lu userfaultfd calls\n", pp->kernel ? "kernel" : "fallback", pp->describe,
                  pp->uffd_calls);
}

/* ---- no userfaultfd at all --------------------------------------------------------------------- */

/* The system call and the device both refused (EPERM for good): both errors named, nothing open. */
static void child_no_userfaultfd(void)
{
    probe_result r = probe_with(HM_OS_UFFD, 1, EPERM, true);
    CHECK(r.fired);
#ifdef SYS_userfaultfd
    CHECK(r.uffd_calls == 2);
    expect_fallback(&r, "userfaultfd: EPERM (1); /dev/userfaultfd: EPERM (1)");
#else
    CHECK(r.uffd_calls == 1);
    expect_fallback(&r, "userfaultfd: ENOSYS (38); /dev/userfaultfd: EPERM (1)");
#endif
}

static void test_no_userfaultfd(void **state)
{
    (void)state;
    run(child_no_userfaultfd);
}

/* Only the system call refused (ENOSYS, as on a kernel built without it): the probe goes on with
 * /dev/userfaultfd, which works where it is there and open to this user (root; or the group the
 * distribution gives it), else its own error is named beside the system call's. */
static void child_syscall_refused(void)
{
    probe_result r = probe_with(HM_OS_UFFD, 1, ENOSYS, false);
    CHECK(r.fired);
    if (!strcmp(r.mechanism, "kernel")) {
        CHECK(r.uffd_calls == PLAIN_CALLS + 2); /* + the open and USERFAULTFD_IOC_NEW */
        expect_kernel(&r);
    } else {
        expect_fallback(&r, "userfaultfd: ENOSYS (38); /dev/userfaultfd: ");
        CHECK_SAY(!strstr(r.describe, "/dev/userfaultfd: ENOSYS"), r.describe);
    }
}

static void test_syscall_refused(void **state)
{
    (void)state;
    need_kernel();
    run(child_syscall_refused);
}

/* ---- UFFDIO_API refused, with every error the description names ------------------------------- */

static const struct {
    int err;
    const char *name;
} errs[] = {
    {EPERM, "EPERM"},   {ENOENT, "ENOENT"}, {EINTR, "EINTR"},   {EIO, "EIO"},         {ENOMEM, "ENOMEM"},
    {EACCES, "EACCES"}, {EFAULT, "EFAULT"}, {EBUSY, "EBUSY"},   {EEXIST, "EEXIST"},   {EINVAL, "EINVAL"},
    {ENOTTY, "ENOTTY"}, {ENOSPC, "ENOSPC"}, {ENOSYS, "ENOSYS"}, {EOPNOTSUPP, "EOPNOTSUPP"},
    {E2BIG, "errno"}, /* any other */
};
static size_t err_index;

static void child_api_refused(void)
{
    int e = errs[err_index].err;
    probe_result r = probe_with(HM_OS_UFFD, 2 + via_device, e, false); /* 1: the system call */
    CHECK(r.fired && r.uffd_calls == 2 + via_device && r.procfs_calls == 0 && r.mmap_calls == 0);
    char want[128];
    snprintf(want, sizeof want, "UFFDIO_API: %s (%d)%s", errs[err_index].name, e,
             e == EINVAL ? " (no WP_ASYNC: Linux older than 6.7?)" : "");
    CHECK_SAY(!strcmp(r.describe, want), r.describe);
    expect_fallback(&r, want);
}

static void test_api_refused(void **state)
{
    (void)state;
    need_kernel();
    for (err_index = 0; err_index < sizeof errs / sizeof errs[0]; err_index++) run(child_api_refused);
}

/* ---- /proc/self/pagemap and the scratch mapping refused ---------------------------------------- */

static void child_pagemap_refused(void)
{
    probe_result r = probe_with(HM_OS_PROCFS, 1, EACCES, false);
    CHECK(r.fired && r.procfs_calls == 1 && r.mmap_calls == 0);
    CHECK(r.uffd_calls == 2 + via_device); /* the system call, UFFDIO_API */
    expect_fallback(&r, "/proc/self/pagemap: EACCES (13)");
}

static void test_pagemap_refused(void **state)
{
    (void)state;
    need_kernel();
    run(child_pagemap_refused);
}

static void child_scratch_refused(void)
{
    probe_result r = probe_with(HM_OS_MMAP, 1, ENOMEM, false);
    CHECK(r.fired && r.mmap_calls == 1 && r.procfs_calls == 1 && r.uffd_calls == 2 + via_device);
    expect_fallback(&r, "scratch mapping: mmap: ENOMEM (12)");
}

static void test_scratch_refused(void **state)
{
    (void)state;
    need_kernel();
    run(child_scratch_refused);
}

/* ---- the self-test refused at each of its steps ------------------------------------------------- */

static unsigned long step_nth;

/* What the description says when the self-test's kth call fails (1-based): register, four scans,
 * write-protect, a last scan. */
static const char *step_reason(unsigned long k)
{
    return k == 1 ? "UFFDIO_REGISTER (write-protect mode): " : k == 6 ? "UFFDIO_WRITEPROTECT: " : "PAGEMAP_SCAN: ";
}

static void child_step_refused(void)
{
    int e = errs[step_nth % (sizeof errs / sizeof errs[0])].err;
    probe_result r = probe_with(HM_OS_UFFD, step_nth, e, false);
    if (step_nth > plain->uffd_calls) { /* armed past the probe's last call: nothing fires */
        CHECK(!r.fired && r.uffd_calls == plain->uffd_calls);
        expect_kernel(&r);
        return;
    }
    CHECK(r.fired && r.uffd_calls == step_nth && r.procfs_calls == 1 && r.mmap_calls == 1);
    char want[128];
    snprintf(want, sizeof want, "%s%s (%d)", step_reason(step_nth - 2 - via_device),
             errs[step_nth % (sizeof errs / sizeof errs[0])].name, e);
    CHECK_SAY(!strncmp(r.describe, want, strlen(want)), r.describe);
    expect_fallback(&r, want);
}

static void test_self_test_refused(void **state)
{
    (void)state;
    need_kernel();
    for (step_nth = 3 + via_device; step_nth <= plain->uffd_calls + 1; step_nth++) run(child_step_refused);
}

/* ---- the kernel refuses a registration, a scan, a reset ---------------------------------------- */

#ifdef UFFDIO_REGISTER_MODE_MISSING
/* Whether the mapping at p has these VmFlags (/proc/self/smaps: "um" missing, "uw" write-protect). */
static bool vm_flag(const void *p, const char *flag)
{
    FILE *f = fopen("/proc/self/smaps", "r");
    CHECK(f != NULL);
    char line[512];
    bool in = false, has = false;
    while (fgets(line, sizeof line, f)) {
        unsigned long lo, hi;
        if (sscanf(line, "%lx-%lx ", &lo, &hi) == 2) {
            in = (uintptr_t)p >= lo && (uintptr_t)p < hi;
            continue;
        }
        if (in && !strncmp(line, "VmFlags:", 8)) {
            char want[8];
            snprintf(want, sizeof want, " %s", flag);
            for (char *s = line + 8; (s = strstr(s, want)) != NULL; s += 3)
                if (s[3] == ' ' || s[3] == '\n') has = true;
            break;
        }
    }
    fclose(f);
    return has;
}

/* Another userfaultfd of the process (missing mode) owns the upper half of a range. */
static void child_foreign(void)
{
    probe_result r = probe_with(HM_OS_UFFD, 0, 0, false);
    CHECK_SAY(!strcmp(r.mechanism, "kernel"), r.describe);
    char *p = mmap(NULL, 32 * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    CHECK(p != MAP_FAILED);
    memset(p, 1, 16 * PG); /* the lower half only: a fault above would wait for the other's handler */
    int other = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK | UFFD_USER_MODE_ONLY);
    CHECK(other >= 0);
    struct uffdio_api api = {.api = UFFD_API};
    CHECK(ioctl(other, UFFDIO_API, &api) == 0);
    struct uffdio_register reg = {.range = {.start = (uintptr_t)p + 16 * PG, .len = 16 * PG},
                                  .mode = UFFDIO_REGISTER_MODE_MISSING};
    CHECK(ioctl(other, UFFDIO_REGISTER, &reg) == 0);
    CHECK(vm_flag(p + 16 * PG, "um") && !vm_flag(p, "um") && !vm_flag(p, "uw"));
    int maps = count_maps();

    /* Registration over both halves: refused whole, the other's registration intact. */
    unsigned long calls = hm_os_calls(HM_OS_UFFD);
    errno = 4242;
    CHECK(hm_dirty_register(p, 32 * PG) == EBUSY);
    CHECK(errno == 4242 && hm_os_calls(HM_OS_UFFD) == calls + 1); /* one count per call, the rollback free */
    CHECK(!vm_flag(p, "uw") && vm_flag(p + 16 * PG, "um") && !vm_flag(p + 16 * PG, "uw"));
    CHECK(count_maps() == maps);
    size_t n = 77;
    uintptr_t out[32];
    CHECK(hm_dirty_scan(p, 16 * PG, out, 32, false, &n) == EPERM && n == 77); /* not registered */

    /* The lower half registered: a scan with reset and a reset over both halves are refused, and
     * reset nothing; the lower half alone is fine. */
    CHECK(hm_dirty_register(p, 16 * PG) == 0 && vm_flag(p, "uw"));
    p[3 * PG] = 2;
    p[9 * PG] = 2;
    CHECK(hm_dirty_scan(p, 32 * PG, out, 32, true, &n) == EPERM && n == 77);
    CHECK(hm_dirty_reset(p, 32 * PG) == EPERM);
    CHECK(hm_dirty_scan(p, 32 * PG, out, 32, false, &n) == EPERM && n == 77);
    CHECK(hm_dirty_scan(p, 16 * PG, out, 32, true, &n) == 0);
    CHECK(n == 2 && out[0] == (uintptr_t)p + 3 * PG && out[1] == (uintptr_t)p + 9 * PG);
    CHECK(hm_dirty_unregister(p, 16 * PG) == 0);
    CHECK(errno == 4242);

    /* The other lets go: the whole range registers. */
    CHECK(close(other) == 0);
    CHECK(!vm_flag(p + 16 * PG, "um"));
    CHECK(hm_dirty_register(p, 32 * PG) == 0);
    p[20 * PG] = 3;
    CHECK(hm_dirty_scan(p, 32 * PG, out, 32, true, &n) == 0 && n == 1 && out[0] == (uintptr_t)p + 20 * PG);
    CHECK(hm_dirty_unregister(p, 32 * PG) == 0);
    CHECK(munmap(p, 32 * PG) == 0);
}

static void test_foreign_registration(void **state)
{
    (void)state;
    need_kernel();
    if (via_device) skip(); /* (the other userfaultfd comes from the system call) */
    run(child_foreign);
}
#endif

int main(void)
{
    sigaction(SIGSEGV, NULL, &initial_segv);
    plain = mmap(NULL, sizeof *plain, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (plain == MAP_FAILED) return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_plain),
        cmocka_unit_test(test_no_userfaultfd),
        cmocka_unit_test(test_syscall_refused),
        cmocka_unit_test(test_api_refused),
        cmocka_unit_test(test_pagemap_refused),
        cmocka_unit_test(test_scratch_refused),
        cmocka_unit_test(test_self_test_refused),
#ifdef UFFDIO_REGISTER_MODE_MISSING
        cmocka_unit_test(test_foreign_registration),
#endif
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
