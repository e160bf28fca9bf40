/* win32_protect.c — VirtualProtect conformance (SPEC 2.4): old protection, errors, and real page protection. */
#include <hostmem/win32.h>
#include <signal.h>
#include <stdio.h>
#include <sys/resource.h>
#include <sys/wait.h>

#include "win32_testutil.h"

/* ---- helpers ---------------------------------------------------------------------------------- */

#define PROTECT_FAILS(addr, size, prot, err) protect_fails((void *)(addr), (size), (prot), 1, (err), __LINE__)
#define PROTECT_FAILS_NULL_OLD(addr, size, prot, err) protect_fails((void *)(addr), (size), (prot), 0, (err), __LINE__)
/* SPEC 2.4 / 2.7.3: a failing VirtualProtect returns FALSE, sets the last error and changes nothing. */
static void protect_fails(void *addr, SIZE_T size, DWORD prot, int with_old, DWORD err, int line)
{
    DWORD old = POISON;
    tu_snapshot_take(&snap_before);
    SetLastError(POISON);
    BOOL r = VirtualProtect(addr, size, prot, with_old ? &old : NULL);
    DWORD e = GetLastError();
    if (r) fail_msg("line %d: VirtualProtect(%p, %#zx, %#x) succeeded, expected last error %u", line, addr, size, prot, err);
    if (e != err)
        fail_msg("line %d: VirtualProtect(%p, %#zx, %#x): last error %u (%#x), expected %u", line, addr, size, prot, e,
                 e, err);
    snap_check_unchanged(line);
}

#define PROTECT_OK(addr, size, prot, expect_old) protect_ok((void *)(addr), (size), (prot), (expect_old), __LINE__)
static void protect_ok(void *addr, SIZE_T size, DWORD prot, DWORD expect_old, int line)
{
    DWORD old = POISON;
    SetLastError(POISON);
    if (!VirtualProtect(addr, size, prot, &old))
        fail_msg("line %d: VirtualProtect(%p, %#zx, %#x) failed with %u (%s)", line, addr, size, prot, GetLastError(),
                 hm_last_detail());
    if (old != expect_old)
        fail_msg("line %d: VirtualProtect(%p, %#zx, %#x): old protection %#x, expected %#x", line, addr, size, prot, old,
                 expect_old);
}

/* SPEC 2.4: the protection changes on every page touching the range; the old protection is the first
 * page's (not a fixed value, 2.7 trap 5). */
static void test_protect_range_and_old(void **state)
{
    (void)state;
    char *p = ALLOC_OK(NULL, 8 * PG, MEM_RESERVE, PAGE_NOACCESS, NULL);
    ALLOC_OK(p, PG, MEM_COMMIT, PAGE_READONLY, p);
    ALLOC_OK(p + PG, 3 * PG, MEM_COMMIT, PAGE_READWRITE, p + PG);
    PROTECT_OK(p, 4 * PG, PAGE_EXECUTE_READ, PAGE_READONLY);
    REGION(p, p, p, PAGE_NOACCESS, 4 * PG, MEM_COMMIT, PAGE_EXECUTE_READ, MEM_PRIVATE);
    REGION(p + 4 * PG, p + 4 * PG, p, PAGE_NOACCESS, 4 * PG, MEM_RESERVE, 0, MEM_PRIVATE);
    /* rounding: a few bytes in page 1 */
    PROTECT_OK(p + PG + 0x10, 0x10, PAGE_READWRITE, PAGE_EXECUTE_READ);
    REGION(p, p, p, PAGE_NOACCESS, PG, MEM_COMMIT, PAGE_EXECUTE_READ, MEM_PRIVATE);
    REGION(p + PG, p + PG, p, PAGE_NOACCESS, PG, MEM_COMMIT, PAGE_READWRITE, MEM_PRIVATE);
    REGION(p + 2 * PG, p + 2 * PG, p, PAGE_NOACCESS, 2 * PG, MEM_COMMIT, PAGE_EXECUTE_READ, MEM_PRIVATE);
    /* straddling pages 2 and 3: old is page 2's */
    PROTECT_OK(p + 3 * PG - 1, 2, PAGE_NOACCESS, PAGE_EXECUTE_READ);
    REGION(p + 2 * PG, p + 2 * PG, p, PAGE_NOACCESS, 2 * PG, MEM_COMMIT, PAGE_NOACCESS, MEM_PRIVATE);
    /* a range starting at page 1 (RW) over pages of other protections: old is page 1's */
    PROTECT_OK(p + PG, 3 * PG, PAGE_EXECUTE_READWRITE, PAGE_READWRITE);
    REGION(p + PG, p + PG, p, PAGE_NOACCESS, 3 * PG, MEM_COMMIT, PAGE_EXECUTE_READWRITE, MEM_PRIVATE);
    /* every base value can be set and is reported */
    static const DWORD bases[] = {PAGE_NOACCESS, PAGE_READONLY, PAGE_READWRITE, PAGE_EXECUTE, PAGE_EXECUTE_READ,
                                  PAGE_EXECUTE_READWRITE};
    DWORD prev = PAGE_EXECUTE_READ;
    for (size_t i = 0; i < sizeof bases / sizeof bases[0]; i++) {
        PROTECT_OK(p, PG, bases[i], prev);
        REGION(p, p, p, PAGE_NOACCESS, ANY, MEM_COMMIT, bases[i], MEM_PRIVATE);
        prev = bases[i];
    }
    release(p);
}

/* SPEC 2.4, 2.1: the old protection carries the allocation's NOCACHE / WRITECOMBINE modifier. */
static void test_protect_old_with_modifiers(void **state)
{
    (void)state;
    char *p = ALLOC_OK(NULL, 2 * PG, MEM_RESERVE | MEM_COMMIT, PAGE_READONLY | PAGE_NOCACHE, NULL);
    PROTECT_OK(p, 2 * PG, PAGE_READWRITE, PAGE_READONLY | PAGE_NOCACHE);
    PROTECT_OK(p + PG, PG, PAGE_READONLY, PAGE_READWRITE | PAGE_NOCACHE);
    REGION(p, p, p, PAGE_READONLY | PAGE_NOCACHE, PG, MEM_COMMIT, PAGE_READWRITE | PAGE_NOCACHE, MEM_PRIVATE);
    release(p);
    char *q = ALLOC_OK(NULL, PG, MEM_RESERVE | MEM_COMMIT, PAGE_EXECUTE_READWRITE | PAGE_WRITECOMBINE, NULL);
    PROTECT_OK(q, PG, PAGE_READWRITE | PAGE_WRITECOMBINE, PAGE_EXECUTE_READWRITE | PAGE_WRITECOMBINE);
    PROTECT_OK(q, PG, PAGE_READWRITE, PAGE_READWRITE | PAGE_WRITECOMBINE);
    release(q);
}

/* SPEC 2.4 table: lpflOldProtect NULL is 998, nothing changes. */
static void test_protect_null_old(void **state)
{
    (void)state;
    char *p = ALLOC_OK(NULL, 2 * PG, MEM_RESERVE | MEM_COMMIT, PAGE_READWRITE, NULL);
    PROTECT_FAILS_NULL_OLD(p, PG, PAGE_READONLY, ERROR_NOACCESS);
    PROTECT_FAILS_NULL_OLD(p, 2 * PG, PAGE_NOACCESS, ERROR_NOACCESS);
    assert_int_equal(tu_writable(p), 1);
    release(p);
}

/* SPEC 2.4 table, 2.1: a bad protection is 87, nothing changes (tests/guard.c has the valid guards). */
static void test_protect_bad_protection(void **state)
{
    (void)state;
    static const DWORD bad[] = {
        0,
        PAGE_READONLY | PAGE_READWRITE,
        PAGE_NOACCESS | PAGE_READONLY,
        PAGE_EXECUTE | PAGE_EXECUTE_READWRITE,
        PAGE_WRITECOPY,
        PAGE_EXECUTE_WRITECOPY,
        PAGE_READWRITE | PAGE_NOCACHE | PAGE_WRITECOMBINE,
        PAGE_NOACCESS | PAGE_NOCACHE,
        PAGE_NOACCESS | PAGE_WRITECOMBINE,
        PAGE_NOACCESS | PAGE_GUARD,
        PAGE_READWRITE | PAGE_GUARD | PAGE_NOCACHE,
        PAGE_READONLY | PAGE_GUARD | PAGE_WRITECOMBINE,
        PAGE_NOCACHE,
        PAGE_GUARD,
        PAGE_READWRITE | 0x800,
        PAGE_READWRITE | 0x10000,
        0x80000000u,
    };
    char *p = ALLOC_OK(NULL, 2 * PG, MEM_RESERVE | MEM_COMMIT, PAGE_READWRITE, NULL);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        PROTECT_FAILS(p, PG, bad[i], ERROR_INVALID_PARAMETER);
        PROTECT_FAILS(p, 2 * PG, bad[i], ERROR_INVALID_PARAMETER);
    }
    assert_int_equal(tu_writable(p), 1);
    release(p);
}

/* SPEC 2.4 table, 2.7.3: a reserved (uncommitted) page in the range is 487 and no page changes. */
static void test_protect_reserved_page(void **state)
{
    (void)state;
    char *p = ALLOC_OK(NULL, GRAN, MEM_RESERVE, PAGE_READWRITE, NULL);
    PROTECT_FAILS(p, PG, PAGE_READONLY, ERROR_INVALID_ADDRESS);
    PROTECT_FAILS(p, GRAN, PAGE_READWRITE, ERROR_INVALID_ADDRESS);
    ALLOC_OK(p, PG, MEM_COMMIT, PAGE_READWRITE, p);
    ALLOC_OK(p + 2 * PG, PG, MEM_COMMIT, PAGE_READWRITE, p + 2 * PG);
    PROTECT_FAILS(p, 3 * PG, PAGE_READONLY, ERROR_INVALID_ADDRESS);
    PROTECT_FAILS(p + PG - 1, 2, PAGE_READONLY, ERROR_INVALID_ADDRESS);
    PROTECT_FAILS(p + PG, PG, PAGE_READONLY, ERROR_INVALID_ADDRESS);
    PROTECT_FAILS(p + 2 * PG, 2 * PG, PAGE_NOACCESS, ERROR_INVALID_ADDRESS);
    assert_int_equal(tu_writable(p), 1);
    assert_int_equal(tu_writable(p + 2 * PG), 1);
    /* after a decommit */
    assert_true(VirtualFree(p + 2 * PG, PG, MEM_DECOMMIT));
    PROTECT_FAILS(p + 2 * PG, PG, PAGE_READONLY, ERROR_INVALID_ADDRESS);
    release(p);
}

/* SPEC 2.4 table: a range not inside one allocation, or in free memory, is 87. */
static void test_protect_outside_allocation(void **state)
{
    (void)state;
    char *x = free_range(3 * GRAN);
    ALLOC_OK(x, GRAN, MEM_RESERVE | MEM_COMMIT, PAGE_READWRITE, x);
    ALLOC_OK(x + GRAN, GRAN, MEM_RESERVE | MEM_COMMIT, PAGE_READWRITE, x + GRAN);
    PROTECT_FAILS(x + GRAN - PG, 2 * PG, PAGE_READONLY, ERROR_INVALID_PARAMETER);
    PROTECT_FAILS(x, 2 * GRAN, PAGE_READONLY, ERROR_INVALID_PARAMETER);
    PROTECT_FAILS(x + GRAN - 1, 2, PAGE_READONLY, ERROR_INVALID_PARAMETER);
    /* past the end of the second into free memory */
    PROTECT_FAILS(x + 2 * GRAN - PG, 2 * PG, PAGE_READONLY, ERROR_INVALID_PARAMETER);
    /* in free memory */
    PROTECT_FAILS(x + 2 * GRAN, PG, PAGE_READONLY, ERROR_INVALID_PARAMETER);
    PROTECT_FAILS(x + 2 * GRAN + 0x10, 0x10, PAGE_READWRITE, ERROR_INVALID_PARAMETER);
    assert_int_equal(tu_writable(x + GRAN - PG), 1);
    assert_int_equal(tu_writable(x + GRAN), 1);
    release(x);
    release(x + GRAN);
    /* the unusable tail of a short allocation's granule */
    char *s = ALLOC_OK(NULL, PG, MEM_RESERVE | MEM_COMMIT, PAGE_READWRITE, NULL);
    PROTECT_FAILS(s, 2 * PG, PAGE_READONLY, ERROR_INVALID_PARAMETER);
    PROTECT_FAILS(s + PG, PG, PAGE_READONLY, ERROR_INVALID_PARAMETER);
    release(s);
}

/* SPEC 2.1 protection table: the Linux protection is real (probed without signals). */
static void test_protection_is_real(void **state)
{
    (void)state;
    char *p = ALLOC_OK(NULL, PG, MEM_RESERVE | MEM_COMMIT, PAGE_READWRITE, NULL);
    fill(p, PG);
    assert_int_equal(tu_readable(p), 1);
    assert_int_equal(tu_writable(p), 1);
    PROTECT_OK(p, PG, PAGE_READONLY, PAGE_READWRITE);
    assert_int_equal(tu_readable(p), 1);
    assert_int_equal(tu_writable(p), 0);
    assert_int_equal(tu_writable(p + PG - 1), 0);
    assert_pattern(p, PG);
    PROTECT_OK(p, PG, PAGE_NOACCESS, PAGE_READONLY);
    assert_int_equal(tu_readable(p), 0);
    assert_int_equal(tu_readable(p + PG - 1), 0);
    assert_int_equal(tu_writable(p), 0);
    PROTECT_OK(p, PG, PAGE_EXECUTE_READ, PAGE_NOACCESS);
    assert_int_equal(tu_readable(p), 1);
    assert_int_equal(tu_writable(p), 0);
    assert_pattern(p, PG);
    PROTECT_OK(p, PG, PAGE_EXECUTE, PAGE_EXECUTE_READ);
    assert_int_equal(tu_writable(p), 0);
#if defined(__x86_64__)
    assert_int_equal(tu_readable(p), 1); /* PROT_EXEC is readable in practice */
#endif
    PROTECT_OK(p, PG, PAGE_EXECUTE_READWRITE, PAGE_EXECUTE);
    assert_int_equal(tu_readable(p), 1);
    assert_int_equal(tu_writable(p), 1);
    PROTECT_OK(p, PG, PAGE_READWRITE, PAGE_EXECUTE_READWRITE);
    assert_int_equal(tu_writable(p), 1);
    assert_pattern(p, PG);
    release(p);
}

#if defined(__x86_64__)
/* SPEC 2.1: PAGE_EXECUTE_READ pages run code (x86-64: mov eax, 42; ret). */
static void test_execute_runs_code(void **state)
{
    (void)state;
    static const unsigned char code[] = {0xB8, 0x2A, 0x00, 0x00, 0x00, 0xC3};
    char *p = ALLOC_OK(NULL, PG, MEM_RESERVE | MEM_COMMIT, PAGE_READWRITE, NULL);
    memcpy(p, code, sizeof code);
    PROTECT_OK(p, PG, PAGE_EXECUTE_READ, PAGE_READWRITE);
    int (*fn)(void);
    void *vp = p;
    memcpy(&fn, &vp, sizeof fn);
    assert_int_equal(fn(), 42);
    release(p);
}
#endif

/* Forks a child that touches p (read or write) after writing a marker to a pipe; returns 1 if the child
 * reached the access and died of it: killed by SIGSEGV, or (AddressSanitizer catches SIGSEGV, reports it
 * and exits non-zero) exited non-zero after a SEGV report. 0 if the access succeeded. */
static int child_faults(char *p, int do_write)
{
    int mk[2], er[2];
    assert_int_equal(pipe(mk), 0);
    assert_int_equal(pipe(er), 0);
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        /* cmocka catches SIGSEGV in the test process to report a failing test: the child must not run
         * the rest of the suite, so it gets the default action back (the kernel's SIGSEGV, or ASan's
         * report if the runtime re-installs its handler). */
        signal(SIGSEGV, SIG_DFL);
        signal(SIGBUS, SIG_DFL);
        struct rlimit nocore = {0, 0};
        setrlimit(RLIMIT_CORE, &nocore);
        close(mk[0]);
        close(er[0]);
        dup2(er[1], 2);
        if (write(mk[1], "R", 1) != 1) _exit(90);
        if (do_write) *(volatile char *)p = 1;
        else (void)*(volatile char *)p;
        if (write(mk[1], "A", 1) != 1) _exit(91);
        _exit(0);
    }
    close(mk[1]);
    close(er[1]);
    char marks[4] = {0};
    ssize_t nm = 0, k;
    while (nm < 2 && (k = read(mk[0], marks + nm, (size_t)(2 - nm))) > 0) nm += k;
    static char err[1 << 16];
    size_t ne = 0;
    while (ne < sizeof err - 1 && (k = read(er[0], err + ne, sizeof err - 1 - ne)) > 0) ne += (size_t)k;
    err[ne] = 0;
    close(mk[0]);
    close(er[0]);
    int st = 0;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    if (nm < 1 || marks[0] != 'R') fail_msg("the child did not reach the access (status %#x)", st);
    if (nm == 2 && marks[1] == 'A') {
        assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
        return 0;
    }
    if (WIFSIGNALED(st)) {
        if (WTERMSIG(st) != SIGSEGV) fail_msg("the child died of signal %d, expected SIGSEGV", WTERMSIG(st));
        return 1;
    }
    if (WIFEXITED(st) && WEXITSTATUS(st) != 0) {
        if (!strstr(err, "SEGV")) fail_msg("the child exited with %d without a SEGV report: %s", WEXITSTATUS(st), err);
        return 1;
    }
    fail_msg("the child ended with status %#x after reaching the access", st);
    return -1;
}

/* SPEC 2.1 protection table: a real fault, not just a refused system call: reading a PAGE_NOACCESS page
 * and writing a PAGE_READONLY page kill the process with SIGSEGV; the same accesses on a PAGE_READWRITE
 * page (control) succeed. */
static void test_real_fault_in_child(void **state)
{
    (void)state;
    char *p = ALLOC_OK(NULL, 2 * PG, MEM_RESERVE | MEM_COMMIT, PAGE_READWRITE, NULL);
    assert_int_equal(child_faults(p, 0), 0);
    assert_int_equal(child_faults(p, 1), 0);
    PROTECT_OK(p, PG, PAGE_NOACCESS, PAGE_READWRITE);
    PROTECT_OK(p + PG, PG, PAGE_READONLY, PAGE_READWRITE);
    assert_int_equal(child_faults(p, 0), 1);
    assert_int_equal(child_faults(p + PG, 1), 1);
    assert_int_equal(child_faults(p + PG, 0), 0);
    release(p);
    /* a reserved page faults too */
    char *r = ALLOC_OK(NULL, PG, MEM_RESERVE, PAGE_READWRITE, NULL);
    assert_int_equal(child_faults(r, 0), 1);
    release(r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_protect_range_and_old),
        cmocka_unit_test(test_protect_old_with_modifiers),
        cmocka_unit_test(test_protect_null_old),
        cmocka_unit_test(test_protect_bad_protection),
        cmocka_unit_test(test_protect_reserved_page),
        cmocka_unit_test(test_protect_outside_allocation),
        cmocka_unit_test(test_protection_is_real),
#if defined(__x86_64__)
        cmocka_unit_test(test_execute_runs_code),
#endif
        cmocka_unit_test(test_real_fault_in_child),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
