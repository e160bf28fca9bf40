/* guard.c — guard pages (SPEC 2.6): read, write and execute touches fire once each, queries before
 * and after, a guard page inside a committed run, VirtualProtect setting and clearing the guard, the
 * guard handler's decisions and the default without one, and the guard's interplay with decommit. */
#include <setjmp.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "os/os.h"
#include "vmap/vmap.h"
#include "win32_testutil.h"

typedef struct hit {
    void *page;   /* the guard page */
    void *addr;   /* the faulting address the handler was given */
    hm_access access;
} hit;
static hit hits[16];
static volatile int nhits;
static hm_guard_action answer = HM_GUARD_CONTINUE;

static hm_guard_action on_guard(void *addr, hm_access access, void *arg)
{
    (void)arg;
    if (nhits < 16) hits[nhits] = (hit){(void *)((uintptr_t)addr & ~(uintptr_t)4095), addr, access};
    nhits++;
    return answer;
}

static DWORD protect_of(void *p, SIZE_T *size)
{
    MEMORY_BASIC_INFORMATION m;
    assert_int_equal(VirtualQuery(p, &m, sizeof m), sizeof m);
    if (size) *size = m.RegionSize;
    return m.Protect;
}

static void check_map(void)
{
    if (hm_vmap_check(KERNEL_CHECK) != HM_OK) fail_msg("map check: %s", hm_last_detail());
}

static int setup(void **state)
{
    (void)state;
    nhits = 0;
    answer = HM_GUARD_CONTINUE;
    hm_set_guard_handler(on_guard, NULL);
    return 0;
}

/* A read, a write and an instruction fetch each fire their page's guard once, with the right kind. */
static void test_touches_fire_once(void **state)
{
    (void)state;
    tu_hostmem_faults_first();
    char *p = ALLOC_OK(NULL, 4 * PG, MEM_RESERVE | MEM_COMMIT, PAGE_READWRITE | PAGE_GUARD, NULL);
    SIZE_T size;
    assert_int_equal(protect_of(p, &size), PAGE_READWRITE | PAGE_GUARD);
    assert_int_equal(size, 4 * PG);
    check_map();
    volatile char *v = p;
    char c = v[10]; /* read */
    assert_int_equal(c, 0);
    assert_int_equal(nhits, 1);
    assert_ptr_equal(hits[0].page, p);
    assert_ptr_equal(hits[0].addr, p + 10); /* the faulting byte, as Windows' ExceptionInformation[1] */
    assert_int_equal(hits[0].access, HM_ACCESS_READ);
    assert_int_equal(protect_of(p, &size), PAGE_READWRITE); /* fired: the base protection */
    assert_int_equal(size, PG);
    assert_int_equal(protect_of(p + PG, &size), PAGE_READWRITE | PAGE_GUARD);
    assert_int_equal(size, 3 * PG);
    v[20] = 1; /* the same page again: no report */
    (void)v[30];
    assert_int_equal(nhits, 1);
    v[PG + 5] = 7; /* write */
    assert_int_equal(nhits, 2);
    assert_ptr_equal(hits[1].page, p + PG);
    assert_ptr_equal(hits[1].addr, p + PG + 5);
    assert_int_equal(hits[1].access, HM_ACCESS_WRITE);
    assert_int_equal(v[PG + 5], 7); /* the write happened */
    check_map();
    release(p);

#if defined(__x86_64__)
    /* execute: a page holding `ret`, guarded with EXECUTE_READ */
    unsigned char *x = ALLOC_OK(NULL, PG, MEM_RESERVE | MEM_COMMIT, PAGE_READWRITE, NULL);
    x[0] = 0xC3;
    DWORD old;
    assert_true(VirtualProtect(x, PG, PAGE_EXECUTE_READ | PAGE_GUARD, &old));
    assert_int_equal(old, PAGE_READWRITE);
    assert_int_equal(protect_of(x, NULL), PAGE_EXECUTE_READ | PAGE_GUARD);
    void (*fn)(void) = (void (*)(void))(uintptr_t)x;
    fn();
    assert_int_equal(nhits, 3);
    assert_ptr_equal(hits[2].page, x);
    assert_int_equal(hits[2].access, HM_ACCESS_EXECUTE);
    assert_int_equal(protect_of(x, NULL), PAGE_EXECUTE_READ);
    fn();
    assert_int_equal(nhits, 3);
    release(x);
#endif
    assert_true(hm_guard_violations() >= 2);
}

/* A guard page in the middle of a committed run splits it into three regions; VirtualProtect sets
 * and clears guards and reports PAGE_GUARD in the old protection while armed. */
static void test_protect_and_query(void **state)
{
    (void)state;
    tu_hostmem_faults_first();
    char *p = ALLOC_OK(NULL, GRAN, MEM_RESERVE, PAGE_NOACCESS, NULL);
    ALLOC_OK(p, 8 * PG, MEM_COMMIT, PAGE_READWRITE, p);
    DWORD old;
    assert_true(VirtualProtect(p + 3 * PG, PG, PAGE_READWRITE | PAGE_GUARD, &old));
    assert_int_equal(old, PAGE_READWRITE);
    SIZE_T size;
    assert_int_equal(protect_of(p, &size), PAGE_READWRITE);
    assert_int_equal(size, 3 * PG);
    assert_int_equal(protect_of(p + 3 * PG, &size), PAGE_READWRITE | PAGE_GUARD);
    assert_int_equal(size, PG);
    assert_int_equal(protect_of(p + 4 * PG, &size), PAGE_READWRITE);
    assert_int_equal(size, 4 * PG);
    assert_int_equal(protect_of(p + 8 * PG, &size), 0); /* reserved */
    check_map();
    /* a neighbour's touch does not fire it */
    p[3 * PG - 1] = 1;
    p[4 * PG] = 1;
    assert_int_equal(nhits, 0);
    /* cleared by VirtualProtect without PAGE_GUARD: old says it was armed */
    assert_true(VirtualProtect(p + 3 * PG, PG, PAGE_READONLY, &old));
    assert_int_equal(old, PAGE_READWRITE | PAGE_GUARD);
    assert_int_equal(protect_of(p + 3 * PG, NULL), PAGE_READONLY);
    assert_int_equal(tu_readable(p + 3 * PG), 1);
    assert_int_equal(nhits, 0);
    /* armed on several pages with another base protection, then fired one by one */
    assert_true(VirtualProtect(p, 8 * PG, PAGE_READONLY | PAGE_GUARD, &old));
    assert_int_equal(old, PAGE_READWRITE);
    assert_int_equal(protect_of(p, &size), PAGE_READONLY | PAGE_GUARD);
    assert_int_equal(size, 8 * PG);
    (void)*(volatile char *)(p + 5 * PG);
    assert_int_equal(nhits, 1);
    assert_int_equal(protect_of(p + 5 * PG, &size), PAGE_READONLY);
    assert_int_equal(size, PG);
    assert_int_equal(protect_of(p + 6 * PG, &size), PAGE_READONLY | PAGE_GUARD);
    assert_int_equal(size, 2 * PG);
    check_map();
    /* re-commit with a guard arms it again, keeping data */
    ALLOC_OK(p + 5 * PG, PG, MEM_COMMIT, PAGE_READWRITE | PAGE_GUARD, p + 5 * PG);
    assert_int_equal(protect_of(p + 5 * PG, NULL), PAGE_READWRITE | PAGE_GUARD);
    /* decommit disarms: re-committed plainly, the page is an ordinary one */
    assert_true(VirtualFree(p + 5 * PG, PG, MEM_DECOMMIT));
    ALLOC_OK(p + 5 * PG, PG, MEM_COMMIT, PAGE_READWRITE, p + 5 * PG);
    assert_int_equal(protect_of(p + 5 * PG, NULL), PAGE_READWRITE);
    p[5 * PG] = 1;
    assert_int_equal(nhits, 1);
    /* MEM_RESET_UNDO cannot prove a guard page kept its data without touching it: it says so */
    ALLOC_OK(p + 6 * PG, PG, MEM_COMMIT, PAGE_READWRITE, p + 6 * PG); /* re-commit without a guard disarms */
    assert_int_equal(protect_of(p + 6 * PG, NULL), PAGE_READWRITE);
    memset(p + 6 * PG, 0x5a, PG);
    assert_true(VirtualProtect(p + 6 * PG, PG, PAGE_READWRITE | PAGE_GUARD, &old));
    assert_non_null(VirtualAlloc(p + 6 * PG, PG, MEM_RESET, PAGE_READWRITE));
    SetLastError(POISON);
    assert_null(VirtualAlloc(p + 6 * PG, PG, MEM_RESET_UNDO, PAGE_READWRITE));
    assert_int_equal(GetLastError(), ERROR_NOT_ENOUGH_MEMORY);
    assert_int_equal(nhits, 1);
    assert_int_equal(protect_of(p + 6 * PG, NULL), PAGE_READWRITE | PAGE_GUARD); /* still armed */
    check_map();
    release(p);
}

/* Guard pages inside a write-watched allocation (whichever mechanism): the guard fires, and the touch
 * that fired it counts as a write when it was one. */
static void test_in_watched(void **state)
{
    (void)state;
    tu_hostmem_faults_first();
    char *p = ALLOC_OK(NULL, GRAN, MEM_RESERVE | MEM_COMMIT | MEM_WRITE_WATCH, PAGE_READWRITE, NULL);
    DWORD old;
    assert_true(VirtualProtect(p + PG, 2 * PG, PAGE_READWRITE | PAGE_GUARD, &old));
    assert_int_equal(protect_of(p + PG, NULL), PAGE_READWRITE | PAGE_GUARD);
    (void)*(volatile char *)(p + PG); /* a read fires the first */
    ((volatile char *)p)[2 * PG] = 1;  /* a write fires the second, and is a write (volatile: in order) */
    assert_int_equal(nhits, 2);
    assert_int_equal(hits[1].access, HM_ACCESS_WRITE);
    PVOID out[4];
    ULONG_PTR count = 4;
    DWORD gran;
    assert_int_equal(GetWriteWatch(0, p, GRAN, out, &count, &gran), 0);
    assert_int_equal(count, 1);
    assert_ptr_equal(out[0], p + 2 * PG);
    check_map();
    release(p);
}

/* Argument rules: PAGE_GUARD with NOACCESS, or alone, is 87 and changes nothing. */
static void test_invalid(void **state)
{
    (void)state;
    tu_hostmem_faults_first();
    char *p = ALLOC_OK(NULL, GRAN, MEM_RESERVE | MEM_COMMIT, PAGE_READWRITE, NULL);
    DWORD old = 0;
    SetLastError(POISON);
    assert_false(VirtualProtect(p, PG, PAGE_NOACCESS | PAGE_GUARD, &old));
    assert_int_equal(GetLastError(), ERROR_INVALID_PARAMETER);
    assert_false(VirtualProtect(p, PG, PAGE_GUARD, &old));
    assert_int_equal(GetLastError(), ERROR_INVALID_PARAMETER);
    assert_null(VirtualAlloc(p, PG, MEM_COMMIT, PAGE_NOACCESS | PAGE_GUARD));
    assert_int_equal(GetLastError(), ERROR_INVALID_PARAMETER);
    assert_int_equal(protect_of(p, NULL), PAGE_READWRITE);
    release(p);
}

/* An mprotect that fails in the middle of arming or disarming guards over pages of mixed state:
 * the call fails with nothing changed (queries and the kernel agree), or succeeds whole. */
static void test_faults(void **state)
{
    (void)state;
    tu_hostmem_faults_first();
    for (unsigned long nth = 1; nth <= 4; nth++) {
        char *p = ALLOC_OK(NULL, GRAN, MEM_RESERVE | MEM_COMMIT, PAGE_READWRITE, NULL);
        DWORD old;
        assert_true(VirtualProtect(p + 2 * PG, 2 * PG, PAGE_READONLY | PAGE_GUARD, &old));
        assert_true(VirtualProtect(p + 6 * PG, PG, PAGE_EXECUTE_READ, &old));
        static const DWORD prots[] = {PAGE_READWRITE | PAGE_GUARD, PAGE_READONLY};
        for (size_t k = 0; k < 2; k++) {
            tu_snapshot_take(&snap_before);
            hm_os_fault_inject(HM_OS_MPROTECT, nth, ENOMEM, false);
            BOOL ok = VirtualProtect(p + PG, 8 * PG, prots[k], &old);
            hm_os_fault_clear();
            if (!ok) snap_check_unchanged(__LINE__);
            else assert_int_equal(protect_of(p + PG, NULL), prots[k]);
            check_map();
        }
        tu_snapshot_take(&snap_before);
        hm_os_fault_inject(HM_OS_MPROTECT, nth, ENOMEM, false);
        char *q = VirtualAlloc(p, 4 * PG, MEM_COMMIT, PAGE_EXECUTE_READ | PAGE_GUARD);
        hm_os_fault_clear();
        if (!q) snap_check_unchanged(__LINE__);
        check_map();
        release(p);
    }
    assert_int_equal(nhits, 0);
}

/* No handler: the access goes on and the violation is counted. */
static void test_default(void **state)
{
    (void)state;
    tu_hostmem_faults_first();
    hm_set_guard_handler(NULL, NULL);
    uint64_t before = hm_guard_violations();
    char *p = ALLOC_OK(NULL, PG, MEM_RESERVE | MEM_COMMIT, PAGE_READWRITE | PAGE_GUARD, NULL);
    p[0] = 3;
    assert_int_equal(p[0], 3);
    assert_int_equal(hm_guard_violations(), before + 1);
    assert_int_equal(nhits, 0);
    release(p);
}

/* HM_GUARD_RAISE: the fault goes to the handler that was there before hostmem's; the guard is
 * disarmed all the same (a second touch succeeds). */
static sigjmp_buf jump;
static volatile int raised;
static void prior(int sig, siginfo_t *info, void *uc)
{
    (void)sig;
    (void)info;
    (void)uc;
    raised++;
    siglongjmp(jump, 1);
}

static void test_raise(void **state)
{
    (void)state;
    tu_hostmem_faults_first();
    struct sigaction sa = {0}, old;
    sa.sa_sigaction = prior;
    sa.sa_flags = SA_SIGINFO;
    sigemptyset(&sa.sa_mask);
    /* this test runs first, before anything installed hostmem's handler in this process: in the
     * child, ours is installed first and hostmem's, installed by the first guard page, chains to it */
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        sigaction(SIGSEGV, &sa, &old);
        answer = HM_GUARD_RAISE;
        char *p = VirtualAlloc(NULL, PG, MEM_RESERVE | MEM_COMMIT, PAGE_READWRITE | PAGE_GUARD);
        if (!p) _exit(10);
        if (sigsetjmp(jump, 1) == 0) {
            p[0] = 1;
            _exit(11); /* not raised */
        }
        if (raised != 1 || nhits != 1) _exit(12);
        p[0] = 2; /* disarmed: no fault now */
        _exit(p[0] == 2 && raised == 1 ? 0 : 13);
    }
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
}

/* A program handler installed AFTER hostmem's asks hostmem first (hm_handle_fault). */
static void after(int sig, siginfo_t *info, void *uc)
{
    if (hm_handle_fault(sig, info, uc)) return;
    raised++;
    siglongjmp(jump, 1);
}

/* The program's own faults on hostmem memory still reach its handler; guard faults do not. */
static void test_program_faults_pass(void **state)
{
    (void)state;
    tu_hostmem_faults_first();
    char *warm = VirtualAlloc(NULL, PG, MEM_RESERVE | MEM_COMMIT, PAGE_READWRITE | PAGE_GUARD); /* installs hostmem's */
    assert_non_null(warm);
    release(warm);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        struct sigaction sa = {0};
        sa.sa_sigaction = after;
        sa.sa_flags = SA_SIGINFO;
        sigemptyset(&sa.sa_mask);
        sigaction(SIGSEGV, &sa, NULL);
        char *g = VirtualAlloc(NULL, PG, MEM_RESERVE | MEM_COMMIT, PAGE_READWRITE | PAGE_GUARD);
        char *ro = VirtualAlloc(NULL, PG, MEM_RESERVE | MEM_COMMIT, PAGE_READONLY);
        if (!g || !ro) _exit(10);
        if (sigsetjmp(jump, 1) == 0) {
            *(volatile char *)ro = 1; /* a real fault on hostmem memory: not a guard, passed on */
            _exit(11);
        }
        if (raised != 1) _exit(12);
        g[0] = 1; /* a guard: handled by hostmem, never seen by the program */
        _exit(raised == 1 && nhits == 1 ? 0 : 13);
    }
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_raise, setup), /* first: see there */
        cmocka_unit_test_setup(test_touches_fire_once, setup),
        cmocka_unit_test_setup(test_protect_and_query, setup),
        cmocka_unit_test_setup(test_in_watched, setup),
        cmocka_unit_test_setup(test_invalid, setup),
        cmocka_unit_test_setup(test_faults, setup),
        cmocka_unit_test_setup(test_default, setup),
        cmocka_unit_test_setup(test_program_faults_pass, setup),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
