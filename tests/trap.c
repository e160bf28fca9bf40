/* trap.c — the platform layer's memory-access trap (src/os/trap.h): the policy's RETRY path and the
 * access kinds; chaining to the program's handler as the kernel would deliver it (SA_SIGINFO or not,
 * sa_mask, SA_NODEFER, SA_RESETHAND, a handler that returns and one that leaves by siglongjmp);
 * hm_trap_handle for a handler installed after hostmem; SIG_DFL and SIG_IGN (the process dies; and,
 * seen from inside, the action put back and the access run again, a sent signal queued again);
 * SIGBUS; sent signals; a stack overflow on the alternate stack; AddressSanitizer's report through the
 * chain; concurrent installs and faults.
 *
 * The handler is process-wide and installed for good, and a case may kill its process, so every case
 * runs in a forked child: the test process itself never calls hm_trap_install. A child starts from
 * the SIGSEGV/SIGBUS actions the program had before cmocka put its own (AddressSanitizer's handler
 * in an ASan build, SIG_DFL otherwise), reports a failed check on stderr with its line and exits 99;
 * the parent checks how it ended and what it wrote. In a coverage build a child writes its gcov
 * counters before _exit, or just before the access or signal that is meant to kill it
 * (tu_coverage_dump): nothing of the test's runs after that, and the default action's own lines are
 * counted by the cases that see it from inside. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#include "testutil.h"
#include "os/trap.h"

#if defined(__SANITIZE_ADDRESS__)
#define ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define ASAN 1
#endif
#endif
#ifndef ASAN
#define ASAN 0
#endif

/* ThreadSanitizer runs every signal handler with errno set to 99 (to catch handlers that spoil it):
 * the errno a handler sees there is not the interrupted code's. */
#if defined(__SANITIZE_THREAD__)
#define TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define TSAN 1
#endif
#endif
#ifndef TSAN
#define TSAN 0
#endif

/* Dereferences p where UBSan's null check must not get there first (the kernel's fault is the point). */
#if defined(__clang__) || (defined(__GNUC__) && __GNUC__ >= 8)
#define NO_UBSAN __attribute__((no_sanitize("undefined")))
#else
#define NO_UBSAN
#endif

static struct sigaction initial[2]; /* SIGSEGV, SIGBUS as main() found them */
static char **self_argv;
static size_t PS;

/* ---- in the child ---------------------------------------------------------------------------- */

static void say(const char *s) { (void)!write(2, s, strlen(s)); }

/* A failed check: async-signal-safe, it may fire in a handler. */
static void child_fail(int line, const char *what)
{
    char num[16];
    int n = 0;
    for (int l = line; n < 15 && (n == 0 || l > 0); l /= 10) num[n++] = (char)('0' + l % 10);
    char buf[16];
    for (int k = 0; k < n; k++) buf[k] = num[n - 1 - k];
    buf[n] = 0;
    say("trap child: line ");
    say(buf);
    say(": check failed: ");
    say(what);
    say("\n");
    _exit(99);
}
#define CHECK(c) ((c) ? (void)0 : child_fail(__LINE__, #c))

static char *map_page(int prot)
{
    void *p = mmap(NULL, PS, prot, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    CHECK(p != MAP_FAILED);
    return p;
}

static NO_UBSAN char load(const void *p) { return *(const volatile char *)p; }
static NO_UBSAN void store(void *p, char v) { *(volatile char *)p = v; }
static int *volatile null_ptr;
static NO_UBSAN int load_null(void) { return *(volatile int *)null_ptr; }

/* Whether the trap reports the access kind here; elsewhere the checks on it are skipped. */
#if defined(__x86_64__) || defined(__i386__) || defined(__aarch64__)
#define KIND(k) (last_access == (k))
#else
#define KIND(k) (last_access == HM_TRAP_UNKNOWN)
#endif

/* The policy under test: owns `page` (any fault there: grant read-write, or read-execute for an
 * instruction fetch) and `hole` (an unmapped page: maps it back). Everything else: PASS. It sets
 * errno on purpose; the handler must restore it. */
static char *page, *hole;
static char *volatile pass_fix; /* made accessible, and the fault still passed: see retried_with */
static volatile sig_atomic_t policy_calls;
static void *volatile last_addr;
static volatile hm_trap_access last_access;
static void *volatile last_uc;

static hm_trap_action policy(void *addr, hm_trap_access access, void *uc)
{
    policy_calls++;
    last_addr = addr;
    last_access = access;
    last_uc = uc;
    char *a = addr;
    errno = EBADF;
    if (page && a >= page && a < page + PS)
        return mprotect(page, PS, access == HM_TRAP_EXEC      ? PROT_READ | PROT_EXEC
                                  : access == HM_TRAP_UNKNOWN ? PROT_READ | PROT_WRITE | PROT_EXEC
                                                              : PROT_READ | PROT_WRITE) == 0
                   ? HM_TRAP_RETRY : HM_TRAP_PASS;
    if (hole && a >= hole && a < hole + PS)
        return mmap(hole, PS, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0) == hole
                   ? HM_TRAP_RETRY : HM_TRAP_PASS;
    if (pass_fix && a >= pass_fix && a < pass_fix + PS) (void)mprotect(pass_fix, PS, PROT_READ | PROT_WRITE);
    return HM_TRAP_PASS;
}

/* The program's own handlers: they record what they saw (the signal mask included) and recover by
 * siglongjmp (prog_info) or by fixing the page and returning (prog_plain). */
static sigjmp_buf jb;
static volatile sig_atomic_t prog_calls, prog_sig, prog_code, prog_errno;
static void *volatile prog_addr;
static void *volatile prog_uc;
static volatile sig_atomic_t blocked_self, blocked_usr1, blocked_usr2;
static char *fix_page;

static void note(int sig)
{
    prog_errno = errno;
    prog_calls++;
    prog_sig = sig;
    sigset_t m;
    sigprocmask(SIG_BLOCK, NULL, &m);
    blocked_self = sigismember(&m, sig);
    blocked_usr1 = sigismember(&m, SIGUSR1);
    blocked_usr2 = sigismember(&m, SIGUSR2);
}

static void prog_info(int sig, siginfo_t *si, void *uc)
{
    note(sig);
    prog_code = si->si_code;
    prog_addr = si->si_addr;
    prog_uc = uc;
    siglongjmp(jb, 1);
}

static void prog_return(int sig, siginfo_t *si, void *uc)
{
    note(sig);
    prog_code = si->si_code;
    prog_uc = uc;
}

static void prog_plain(int sig)
{
    note(sig);
    CHECK(mprotect(fix_page, PS, PROT_READ | PROT_WRITE) == 0);
}

/* A program handler installed after hostmem: hostmem first, its own handling after. */
static void prog_after(int sig, siginfo_t *si, void *uc)
{
    if (hm_trap_handle(sig, si, uc)) return;
    prog_info(sig, si, uc);
}

static void set_action(int sig, void (*info_fn)(int, siginfo_t *, void *), void (*plain_fn)(int), int flags,
                       int masked)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    if (info_fn) sa.sa_sigaction = info_fn;
    else sa.sa_handler = plain_fn;
    sa.sa_flags = flags | (info_fn ? SA_SIGINFO : 0);
    sigemptyset(&sa.sa_mask);
    if (masked) sigaddset(&sa.sa_mask, masked);
    CHECK(sigaction(sig, &sa, NULL) == 0);
}

static void expect_no_mask_left(void)
{
    sigset_t m;
    sigprocmask(SIG_BLOCK, NULL, &m);
    CHECK(!sigismember(&m, SIGSEGV) && !sigismember(&m, SIGUSR1) && !sigismember(&m, SIGUSR2));
}

/* ---- running a child ------------------------------------------------------------------------- */

typedef struct outcome {
    int status;
    char err[1 << 15];
} outcome;

static outcome out;

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
        struct rlimit nocore = {0, 0};
        setrlimit(RLIMIT_CORE, &nocore);
        sigaction(SIGSEGV, &initial[0], NULL);
        sigaction(SIGBUS, &initial[1], NULL);
        alarm(10); /* a fault retried for ever ends as SIGALRM, not as a hung test */
        body();
        tu_coverage_dump();
        _exit(0);
    }
    close(er[1]);
    size_t n = 0;
    ssize_t k;
    while (n < sizeof out.err - 1 && (k = read(er[0], out.err + n, sizeof out.err - 1 - n)) > 0) n += (size_t)k;
    out.err[n] = 0;
    close(er[0]);
    assert_int_equal(waitpid(pid, &out.status, 0), pid);
}

static void expect_ok(void (*body)(void))
{
    run(body);
    if (!WIFEXITED(out.status) || WEXITSTATUS(out.status) != 0)
        fail_msg("child ended with status %#x; stderr:\n%s", out.status, out.err);
    if (out.err[0]) /* a sanitizer's warning: the child's _exit skips the exit status it would set */
        fail_msg("child wrote to stderr:\n%s", out.err);
}

/* Died of sig (the kernel's default action), after writing `mark` (it reached the last access). */
static void expect_killed(void (*body)(void), int sig, const char *mark)
{
    run(body);
    if (!WIFSIGNALED(out.status) || WTERMSIG(out.status) != sig)
        fail_msg("child should die of signal %d; status %#x; stderr:\n%s", sig, out.status, out.err);
    if (mark && !strstr(out.err, mark)) fail_msg("child died before \"%s\"; stderr:\n%s", mark, out.err);
}

/* ---- the policy handles its pages ------------------------------------------------------------ */

static void child_retry(void)
{
    page = map_page(PROT_NONE);
    CHECK(hm_trap_install(policy) == 0);

    errno = 4242;
    CHECK(load(page + 100) == 0); /* PROT_NONE, read */
    CHECK(errno == 4242);
    CHECK(policy_calls == 1 && last_addr == page + 100 && KIND(HM_TRAP_READ) && last_uc != NULL);

    CHECK(mprotect(page, PS, PROT_NONE) == 0);
    store(page + 200, 7); /* PROT_NONE, write */
    CHECK(policy_calls == 2 && last_addr == page + 200 && KIND(HM_TRAP_WRITE));
    CHECK(page[200] == 7);

    CHECK(mprotect(page, PS, PROT_READ) == 0);
    store(page + 300, 9); /* PROT_READ, write */
    CHECK(policy_calls == 3 && last_addr == page + 300 && KIND(HM_TRAP_WRITE) && page[300] == 9);
    CHECK(errno == 4242);

    /* a page never mapped (SEGV_MAPERR): the policy maps it */
    hole = map_page(PROT_NONE);
    CHECK(munmap(hole, PS) == 0);
    CHECK(load(hole + 8) == 0);
    CHECK(policy_calls == 4 && last_addr == hole + 8 && KIND(HM_TRAP_READ));

    CHECK(hm_trap_handled() == 4 && hm_trap_passed() == 0);
    CHECK(hm_trap_install(policy) == 0); /* again: nothing changes */
}

static void test_retry_read_write(void **state)
{
    (void)state;
    expect_ok(child_retry);
}

#if defined(__x86_64__) || defined(__i386__) || defined(__aarch64__)
#define HAVE_RET 1
#if defined(__aarch64__)
static const unsigned char ret_insn[] = {0xc0, 0x03, 0x5f, 0xd6};
#else
static const unsigned char ret_insn[] = {0xc3};
#endif

static void call_page(void)
{
    void (*fn)(void);
    void *p = page;
    memcpy(&fn, &p, sizeof fn);
    fn();
}

static void child_exec(void)
{
    page = map_page(PROT_READ | PROT_WRITE);
    memcpy(page, ret_insn, sizeof ret_insn);
    __builtin___clear_cache(page, page + sizeof ret_insn);
    CHECK(hm_trap_install(policy) == 0);

    CHECK(mprotect(page, PS, PROT_READ) == 0); /* readable, not executable */
    call_page();
    CHECK(policy_calls == 1 && last_addr == page && KIND(HM_TRAP_EXEC));

    CHECK(mprotect(page, PS, PROT_NONE) == 0);
    call_page();
    CHECK(policy_calls == 2 && last_addr == page && KIND(HM_TRAP_EXEC));
    CHECK(hm_trap_handled() == 2);
}

static void test_retry_exec(void **state)
{
    (void)state;
    expect_ok(child_exec);
}
#endif

/* ---- chaining to a handler installed before hostmem ------------------------------------------ */

/* SA_SIGINFO, sa_mask {SIGUSR1}: the handler gets the kernel's siginfo and context, runs with SIGUSR1
 * and SIGSEGV blocked (not SIGUSR2), sees the interrupted errno, and leaves by siglongjmp. hostmem's
 * own page is still handled afterwards. */
static void child_chain_siginfo(void)
{
    page = map_page(PROT_NONE);
    char *other = map_page(PROT_NONE);
    set_action(SIGSEGV, prog_info, NULL, 0, SIGUSR1);
    CHECK(hm_trap_install(policy) == 0);

    for (int round = 1; round <= 2; round++) {
        if (sigsetjmp(jb, 1) == 0) {
            errno = 777;
            (void)load(other + 5);
            CHECK(!"the access went through");
        }
        CHECK(prog_calls == round && prog_sig == SIGSEGV && prog_code == SEGV_ACCERR && prog_addr == other + 5);
        CHECK(prog_uc != NULL && (TSAN || prog_errno == 777));
        CHECK(blocked_self == 1 && blocked_usr1 == 1 && blocked_usr2 == 0);
        CHECK(policy_calls == round && last_addr == other + 5);
        expect_no_mask_left(); /* sigsetjmp(jb, 1) put the mask back */
    }
    CHECK(load(page) == 0);
    CHECK(hm_trap_handled() == 1 && hm_trap_passed() == 2 && prog_calls == 2);
}

static void test_chain_siginfo(void **state)
{
    (void)state;
    expect_ok(child_chain_siginfo);
}

/* A plain sa_handler with SA_NODEFER and sa_mask {SIGUSR2}: called with the signal number only, SIGSEGV
 * not blocked, SIGUSR2 blocked; it fixes the page and returns, and the access runs again. */
static void child_chain_plain(void)
{
    fix_page = map_page(PROT_NONE);
    set_action(SIGSEGV, NULL, prog_plain, SA_NODEFER, SIGUSR2);
    CHECK(hm_trap_install(policy) == 0);
    errno = 55;
    store(fix_page + 1, 3);
    CHECK(fix_page[1] == 3);
    CHECK(prog_calls == 1 && prog_sig == SIGSEGV && (TSAN || prog_errno == 55));
    CHECK(blocked_self == 0 && blocked_usr1 == 0 && blocked_usr2 == 1);
    CHECK(policy_calls == 1 && hm_trap_passed() == 1);
    expect_no_mask_left();
}

static void test_chain_plain(void **state)
{
    (void)state;
    expect_ok(child_chain_plain);
}

/* SA_RESETHAND: the first fault reaches the handler, the next one gets SIG_DFL and kills the process;
 * in between hostmem's handler stays and keeps handling its own page. */
static void child_chain_resethand(void)
{
    page = map_page(PROT_NONE);
    char *other = map_page(PROT_NONE);
    set_action(SIGSEGV, prog_info, NULL, SA_RESETHAND, 0);
    CHECK(hm_trap_install(policy) == 0);
    if (sigsetjmp(jb, 1) == 0) {
        (void)load(other);
        CHECK(!"the access went through");
    }
    CHECK(prog_calls == 1);
    CHECK(load(page) == 0 && hm_trap_handled() == 1);
    say("reset-ok\n");
    tu_coverage_dump();
    (void)load(other);
    CHECK(!"survived a fault after SA_RESETHAND");
}

static void test_chain_resethand(void **state)
{
    (void)state;
    expect_killed(child_chain_resethand, SIGSEGV, "reset-ok");
}

/* ---- a handler installed after hostmem ------------------------------------------------------- */

static void child_handle_first(void)
{
    page = map_page(PROT_NONE);
    CHECK(hm_trap_install(policy) == 0);
    struct sigaction was;
    memset(&was, 0, sizeof was);
    set_action(SIGSEGV, prog_after, NULL, 0, 0);
    CHECK(hm_trap_install(policy) == 0); /* later calls do not take SIGSEGV back */
    CHECK(sigaction(SIGSEGV, NULL, &was) == 0 && was.sa_sigaction == prog_after);

    store(page + 9, 1); /* hostmem's page: handled through hm_trap_handle */
    CHECK(page[9] == 1 && prog_calls == 0 && hm_trap_handled() == 1 && KIND(HM_TRAP_WRITE));
    if (sigsetjmp(jb, 1) == 0) {
        (void)load_null();
        CHECK(!"a null load went through");
    }
    CHECK(prog_calls == 1 && prog_addr == NULL && prog_code == SEGV_MAPERR);
    CHECK(policy_calls == 2 && hm_trap_passed() == 1);
}

static void test_handle_first(void **state)
{
    (void)state;
    expect_ok(child_handle_first);
}

/* ---- SIG_DFL, SIG_IGN ------------------------------------------------------------------------ */

static void fault_with(void (*disp)(int))
{
    page = map_page(PROT_NONE);
    char *other = map_page(PROT_NONE);
    signal(SIGSEGV, disp);
    CHECK(hm_trap_install(policy) == 0);
    CHECK(load(page) == 0); /* hostmem's own page works */
    say("faulting\n");
    tu_coverage_dump();
    (void)load(other);
    CHECK(!"survived the fault");
}

static void child_dfl(void) { fault_with(SIG_DFL); }
static void child_ign(void) { fault_with(SIG_IGN); }

static void test_previous_dfl(void **state)
{
    (void)state;
    expect_killed(child_dfl, SIGSEGV, "faulting");
}

/* A fault is not ignored, by the kernel either. */
static void test_previous_ign(void **state)
{
    (void)state;
    expect_killed(child_ign, SIGSEGV, "faulting");
}

/* The same way to the default action, seen from inside: the policy makes the page accessible and
 * still passes (it is not hostmem's). hostmem puts SIG_DFL back, its handler gone for SIGSEGV, and
 * lets the access run again, which now goes through (where it would have faulted again and killed the
 * process); the interrupted errno survives. */
static void retried_with(void (*disp)(int))
{
    char *other = map_page(PROT_NONE);
    signal(SIGSEGV, disp);
    CHECK(hm_trap_install(policy) == 0);
    pass_fix = other;
    errno = 31;
    CHECK(load(other + 7) == 0);
    CHECK(errno == 31);
    CHECK(policy_calls == 1 && last_addr == other + 7 && hm_trap_passed() == 1 && hm_trap_handled() == 0);
    struct sigaction now;
    memset(&now, 0, sizeof now);
    CHECK(sigaction(SIGSEGV, NULL, &now) == 0 && !(now.sa_flags & SA_SIGINFO) && now.sa_handler == SIG_DFL);
}

static void child_dfl_retried(void) { retried_with(SIG_DFL); }
static void child_ign_retried(void) { retried_with(SIG_IGN); }

static void test_previous_dfl_retried(void **state)
{
    (void)state;
    expect_ok(child_dfl_retried);
}

static void test_previous_ign_retried(void **state)
{
    (void)state;
    expect_ok(child_ign_retried);
}

/* ---- SIGBUS ---------------------------------------------------------------------------------- */

static char *truncated_mapping(void)
{
    int fd = memfd_create("hm-trap", MFD_CLOEXEC);
    CHECK(fd >= 0 && ftruncate(fd, (off_t)PS) == 0);
    char *p = mmap(NULL, PS, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    CHECK(p != MAP_FAILED && ftruncate(fd, 0) == 0);
    close(fd);
    return p;
}

static void child_sigbus(void)
{
    char *p = truncated_mapping();
    set_action(SIGBUS, prog_info, NULL, 0, SIGUSR1);
    CHECK(hm_trap_install(policy) == 0);
    if (sigsetjmp(jb, 1) == 0) {
        (void)load(p + 3);
        CHECK(!"read past the end of the file");
    }
    CHECK(prog_calls == 1 && prog_sig == SIGBUS && prog_code == BUS_ADRERR && prog_addr == p + 3);
    CHECK(blocked_self == 1 && blocked_usr1 == 1);
    CHECK(policy_calls == 0 && hm_trap_passed() == 1); /* never asked about SIGBUS */
}

static void test_sigbus_chained(void **state)
{
    (void)state;
    expect_ok(child_sigbus);
}

static void child_sigbus_dfl(void)
{
    char *p = truncated_mapping();
    signal(SIGBUS, SIG_DFL);
    CHECK(hm_trap_install(policy) == 0);
    say("faulting\n");
    tu_coverage_dump();
    (void)load(p);
}

static void test_sigbus_dfl(void **state)
{
    (void)state;
    expect_killed(child_sigbus_dfl, SIGBUS, "faulting");
}

/* ---- sent signals ---------------------------------------------------------------------------- */

static void child_sent(void)
{
    set_action(SIGSEGV, prog_return, NULL, 0, 0);
    page = map_page(PROT_NONE);
    CHECK(hm_trap_install(policy) == 0);
    CHECK(raise(SIGSEGV) == 0);
    CHECK(prog_calls == 1 && prog_code == SI_TKILL);
    CHECK(kill(getpid(), SIGSEGV) == 0);
    CHECK(prog_calls == 2 && prog_code == SI_USER);
    union sigval v = {.sival_int = 1};
    CHECK(sigqueue(getpid(), SIGSEGV, v) == 0);
    CHECK(prog_calls == 3 && prog_code == SI_QUEUE);
    CHECK(policy_calls == 0 && hm_trap_passed() == 3);
}

static void test_sent_not_asked(void **state)
{
    (void)state;
    expect_ok(child_sent);
}

static void child_sent_dfl(void)
{
    signal(SIGSEGV, SIG_DFL);
    CHECK(hm_trap_install(policy) == 0);
    say("raising\n");
    tu_coverage_dump();
    raise(SIGSEGV);
    CHECK(!"survived SIGSEGV under SIG_DFL");
}

static void test_sent_dfl(void **state)
{
    (void)state;
    expect_killed(child_sent_dfl, SIGSEGV, "raising");
}

/* The same, seen from inside: a sent signal to SIG_DFL is queued again to the thread, same siginfo,
 * with SIG_DFL back in place. Delivered in sigsuspend while the thread otherwise blocks SIGSEGV, the
 * handler returns to that mask, so the signal queued again stays pending instead of ending the
 * process: sigtimedwait takes it, and it is the one sent. */
static void child_sent_dfl_pending(void)
{
    signal(SIGSEGV, SIG_DFL);
    CHECK(hm_trap_install(policy) == 0);
    sigset_t segv, old, none;
    sigemptyset(&segv);
    sigaddset(&segv, SIGSEGV);
    sigemptyset(&none);
    CHECK(pthread_sigmask(SIG_BLOCK, &segv, &old) == 0);
    union sigval v = {.sival_int = 4321};
    CHECK(sigqueue(getpid(), SIGSEGV, v) == 0);
    CHECK(sigsuspend(&none) == -1 && errno == EINTR);
    CHECK(hm_trap_passed() == 1 && policy_calls == 0);
    struct sigaction now;
    memset(&now, 0, sizeof now);
    CHECK(sigaction(SIGSEGV, NULL, &now) == 0 && !(now.sa_flags & SA_SIGINFO) && now.sa_handler == SIG_DFL);
    sigset_t pending;
    CHECK(sigpending(&pending) == 0 && sigismember(&pending, SIGSEGV) == 1);
    siginfo_t si;
    memset(&si, 0, sizeof si);
    struct timespec zero = {0, 0};
    CHECK(sigtimedwait(&segv, &si, &zero) == SIGSEGV);
    CHECK(si.si_code == SI_QUEUE && si.si_value.sival_int == 4321 && si.si_pid == getpid());
    CHECK(pthread_sigmask(SIG_SETMASK, &old, NULL) == 0);
}

static void test_sent_dfl_pending(void **state)
{
    (void)state;
    expect_ok(child_sent_dfl_pending);
}

/* A sent signal to SIG_IGN is discarded, as the kernel does. */
static void child_sent_ign(void)
{
    signal(SIGSEGV, SIG_IGN);
    CHECK(hm_trap_install(policy) == 0);
    CHECK(raise(SIGSEGV) == 0 && kill(getpid(), SIGSEGV) == 0);
    CHECK(policy_calls == 0 && hm_trap_passed() == 2);
}

static void test_sent_ign(void **state)
{
    (void)state;
    expect_ok(child_sent_ign);
}

/* ---- stack overflow on the alternate stack --------------------------------------------------- */

#define ALT_SIZE ((size_t)128 << 10)
static char *alt;
static volatile sig_atomic_t on_alt;

static void prog_overflow(int sig, siginfo_t *si, void *uc)
{
    char here;
    on_alt = &here >= alt && &here < alt + ALT_SIZE;
    prog_info(sig, si, uc);
}

static int recurse(int n);
static int (*volatile recurse_fn)(int) = recurse;
static int recurse(int n)
{
    volatile char buf[256];
    buf[n & 255] = (char)n;
    return recurse_fn(n + 1) + buf[(n * 7) & 255];
}

static void *overflow_thread(void *arg)
{
    (void)arg;
    stack_t ss = {.ss_sp = alt, .ss_size = ALT_SIZE, .ss_flags = 0}, old;
    CHECK(sigaltstack(&ss, &old) == 0);
    if (sigsetjmp(jb, 1) == 0) {
        (void)recurse_fn(0);
        CHECK(!"infinite recursion returned");
    }
    CHECK(sigaltstack(&old, NULL) == 0); /* the runtime's own, which it may free at thread exit */
    return NULL;
}

static void child_overflow(void)
{
    alt = mmap(NULL, ALT_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    CHECK(alt != MAP_FAILED);
    set_action(SIGSEGV, prog_overflow, NULL, SA_ONSTACK, 0);
    CHECK(hm_trap_install(policy) == 0);
    pthread_attr_t at;
    pthread_attr_init(&at);
    pthread_attr_setstacksize(&at, (size_t)256 << 10);
    pthread_t t;
    CHECK(pthread_create(&t, &at, overflow_thread, NULL) == 0);
    CHECK(pthread_join(t, NULL) == 0);
    CHECK(prog_calls == 1 && prog_sig == SIGSEGV && on_alt == 1);
    CHECK(policy_calls == 1 && hm_trap_passed() == 1); /* asked (an address fault), passed */
}

static void test_overflow_altstack(void **state)
{
    (void)state;
    expect_ok(child_overflow);
}

/* ---- AddressSanitizer ------------------------------------------------------------------------ */

/* The program's first SIGSEGV action (ASan's handler in an ASan build) is hostmem's previous one: a
 * null load still ends in its report. Without ASan it is SIG_DFL: killed by SIGSEGV. */
static void child_null(void)
{
    page = map_page(PROT_NONE);
    CHECK(hm_trap_install(policy) == 0);
    CHECK(load(page) == 0);
    say("faulting\n");
    tu_coverage_dump();
    (void)load_null();
    CHECK(!"a null load went through");
}

static void test_null_reaches_first_handler(void **state)
{
    (void)state;
    run(child_null);
    if (!strstr(out.err, "faulting")) fail_msg("child failed before the null load; stderr:\n%s", out.err);
    if (ASAN) {
        if (!WIFEXITED(out.status) || WEXITSTATUS(out.status) == 0 || !strstr(out.err, "AddressSanitizer: SEGV"))
            fail_msg("no AddressSanitizer report; status %#x; stderr:\n%s", out.status, out.err);
    } else if (!(WIFSIGNALED(out.status) && WTERMSIG(out.status) == SIGSEGV) && !strstr(out.err, "Sanitizer: SEGV")) {
        fail_msg("child should die of SIGSEGV; status %#x; stderr:\n%s", out.status, out.err);
    }
}

/* With allow_user_segv_handler=0 ASan keeps SIGSEGV: its sigaction succeeds and installs nothing.
 * hm_trap_install says so (ENOTSUP) rather than leave the policy believing in a handler. Needs a
 * fresh process with those options: the test binary again, with --asan-exclusive. */
static int asan_exclusive_main(void)
{
    PS = (size_t)sysconf(_SC_PAGESIZE);
    struct sigaction before, after;
    memset(&before, 0, sizeof before);
    memset(&after, 0, sizeof after);
    CHECK(sigaction(SIGSEGV, NULL, &before) == 0);
    CHECK(hm_trap_install(policy) == ENOTSUP);
    CHECK(sigaction(SIGSEGV, NULL, &after) == 0 && after.sa_handler == before.sa_handler);
    return 0;
}

static void child_asan_exclusive(void)
{
    setenv("ASAN_OPTIONS", "allow_user_segv_handler=0:detect_leaks=0", 1);
    char *argv[] = {self_argv[0], "--asan-exclusive", NULL};
    execv("/proc/self/exe", argv);
    CHECK(!"execv failed");
}

static void test_asan_exclusive(void **state)
{
    (void)state;
    if (!ASAN) skip();
    expect_ok(child_asan_exclusive);
}

/* ---- threads --------------------------------------------------------------------------------- */

#define NTHREADS 8
#define NPAGES 16
static char *region;
static pthread_barrier_t start;

static hm_trap_action region_policy(void *addr, hm_trap_access access, void *uc)
{
    (void)uc;
    char *a = addr;
    if (a < region || a >= region + NTHREADS * NPAGES * PS || access == HM_TRAP_READ || access == HM_TRAP_EXEC)
        return HM_TRAP_PASS; /* the threads only write */
    char *pg = region + (size_t)(a - region) / PS * PS;
    return mprotect(pg, PS, PROT_READ | PROT_WRITE) == 0 ? HM_TRAP_RETRY : HM_TRAP_PASS;
}

static void *faulting_thread(void *arg)
{
    size_t t = (size_t)(uintptr_t)arg;
    pthread_barrier_wait(&start);
    CHECK(hm_trap_install(region_policy) == 0); /* all at once: one installs, the others wait for it */
    for (size_t i = 0; i < NPAGES; i++) store(region + (t * NPAGES + i) * PS + t, (char)(t + 1));
    return NULL;
}

static void child_threads(void)
{
    region = mmap(NULL, NTHREADS * NPAGES * PS, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    CHECK(region != MAP_FAILED);
    CHECK(pthread_barrier_init(&start, NULL, NTHREADS) == 0);
    pthread_t th[NTHREADS];
    for (size_t t = 0; t < NTHREADS; t++) CHECK(pthread_create(&th[t], NULL, faulting_thread, (void *)(uintptr_t)t) == 0);
    for (size_t t = 0; t < NTHREADS; t++) CHECK(pthread_join(th[t], NULL) == 0);
    for (size_t i = 0; i < NTHREADS * NPAGES; i++) CHECK(region[i * PS + i / NPAGES] == (char)(i / NPAGES + 1));
    CHECK(hm_trap_handled() == NTHREADS * NPAGES && hm_trap_passed() == 0);
}

static void test_threads(void **state)
{
    (void)state;
    expect_ok(child_threads);
}

int main(int argc, char **argv)
{
    self_argv = argv;
    if (argc > 1 && strcmp(argv[1], "--asan-exclusive") == 0) return asan_exclusive_main();
    PS = (size_t)sysconf(_SC_PAGESIZE);
    sigaction(SIGSEGV, NULL, &initial[0]);
    sigaction(SIGBUS, NULL, &initial[1]);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_retry_read_write),
#ifdef HAVE_RET
        cmocka_unit_test(test_retry_exec),
#endif
        cmocka_unit_test(test_chain_siginfo),
        cmocka_unit_test(test_chain_plain),
        cmocka_unit_test(test_chain_resethand),
        cmocka_unit_test(test_handle_first),
        cmocka_unit_test(test_previous_dfl),
        cmocka_unit_test(test_previous_ign),
        cmocka_unit_test(test_previous_dfl_retried),
        cmocka_unit_test(test_previous_ign_retried),
        cmocka_unit_test(test_sigbus_chained),
        cmocka_unit_test(test_sigbus_dfl),
        cmocka_unit_test(test_sent_not_asked),
        cmocka_unit_test(test_sent_dfl),
        cmocka_unit_test(test_sent_dfl_pending),
        cmocka_unit_test(test_sent_ign),
        cmocka_unit_test(test_overflow_altstack),
        cmocka_unit_test(test_null_reaches_first_handler),
        cmocka_unit_test(test_asan_exclusive),
        cmocka_unit_test(test_threads),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
