/* trap.c — hostmem's SIGSEGV/SIGBUS handler: asks the policy about faults on an address, chains
 * everything else to the action it replaced as the kernel would have delivered it (see trap.h for
 * the rules; this file says how they are kept).
 *
 * State, and who writes it:
 *   installed      false until both handlers are in place; set once, under install_mu.
 *   prev[i]        the previous action of signal i (0 SIGSEGV, 1 SIGBUS), as an atomic pointer to a
 *                  struct that is never written again once published. It points into saved[i][0]
 *                  (read before installing), saved[i][1] (what the installing exchange returned, if
 *                  a racing sigaction changed it in between) or dfl (after an SA_RESETHAND delivery).
 *   policy         the callback; any thread may store it at any time.
 *   handled/passed counters, relaxed.
 *
 * Ordering, the reason the handler needs no lock: saved[i][0] is written and prev[i] published
 * (release) before the sigaction call that installs the handler, so a handler that runs at all sees
 * a complete previous action (its acquire load pairs with that store; the kernel's sighand lock
 * orders the installation itself between CPUs). The only later writes are pointer swaps: one to
 * saved[i][1], written before its own publication, and SA_RESETHAND's compare-and-swap to dfl. No
 * published struct is written again while the handler is in place (a failed install, which leaves
 * none of ours, rewrites saved on its next attempt), so a handler that loaded an older pointer still
 * reads a consistent action.
 *
 * Async-signal safety: the handler calls sigaction, pthread_sigmask, getpid and the rt_tgsigqueueinfo
 * and gettid system calls (all async-signal-safe or plain system calls), touches only lock-free
 * atomics and its own stack, and saves errno on entry: it is restored before every return, and set
 * back before the previous handler runs, so that one sees the interrupted code's errno. */
#define _GNU_SOURCE
#include "trap.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>
#include <sys/syscall.h>
#include <ucontext.h>
#include <unistd.h>

#if ATOMIC_POINTER_LOCK_FREE != 2 || ATOMIC_LONG_LOCK_FREE != 2
#error "the trap handler needs lock-free atomic pointers and longs"
#endif

#ifndef BUS_MCEERR_AO
#define BUS_MCEERR_AO 5
#endif

static _Atomic(hm_trap_fn) policy;
static _Atomic bool installed;
static pthread_mutex_t install_mu = PTHREAD_MUTEX_INITIALIZER;
static struct sigaction saved[2][2];
static struct sigaction dfl; /* all zero: SIG_DFL (0 in the kernel's ABI), no flags, empty mask */
static _Atomic(const struct sigaction *) prev[2];
static _Atomic unsigned long handled, passed;

static int slot(int sig) { return sig == SIGBUS; }

/* ---- the access kind ------------------------------------------------------------------------ */

#if defined(__aarch64__)
/* The kernel puts the fault's ESR_EL1 in an esr_context record among the records that follow the
 * general registers (uc_mcontext.__reserved, then the extra area an extra_context record points to
 * when SVE/SME state overflows it). Record layouts from <asm/sigcontext.h>, restated here because
 * that header clashes with glibc's <signal.h>. */
#define HM_ESR_MAGIC 0x45535201u
#define HM_EXTRA_MAGIC 0x45585401u
struct hm_ctx_head { uint32_t magic, size; };
struct hm_esr_ctx { struct hm_ctx_head head; uint64_t esr; };
struct hm_extra_ctx { struct hm_ctx_head head; uint64_t datap; uint32_t size, reserved[3]; };

static uint64_t fault_esr(const ucontext_t *uc)
{
    const unsigned char *p = (const unsigned char *)uc->uc_mcontext.__reserved;
    const unsigned char *end = p + sizeof uc->uc_mcontext.__reserved;
    bool followed = false; /* one extra area at most */
    while ((size_t)(end - p) >= sizeof(struct hm_ctx_head)) {
        const struct hm_ctx_head *h = (const void *)p;
        if (h->magic == 0 || h->size < sizeof *h || h->size > (size_t)(end - p)) return 0; /* end, or malformed */
        if (h->magic == HM_ESR_MAGIC && h->size >= sizeof(struct hm_esr_ctx))
            return ((const struct hm_esr_ctx *)(const void *)p)->esr;
        if (h->magic == HM_EXTRA_MAGIC && h->size >= sizeof(struct hm_extra_ctx) && !followed) {
            const struct hm_extra_ctx *x = (const void *)p;
            p = (const unsigned char *)(uintptr_t)x->datap;
            end = p + x->size;
            followed = true;
            continue;
        }
        p += h->size;
    }
    return 0;
}

/* Decoded as arch/arm64/mm/fault.c does: an instruction abort from EL0 is an exec; a data abort is a
 * write when WnR is set and it is not a cache maintenance operation (CM, which reports WnR = 1). */
static hm_trap_access access_of(const ucontext_t *uc)
{
    uint64_t esr = fault_esr(uc);
    unsigned ec = (unsigned)(esr >> 26) & 0x3f;
    if (ec == 0x20) return HM_TRAP_EXEC;                                     /* ESR_ELx_EC_IABT_LOW */
    if (ec == 0x24) return (esr & (1u << 6)) && !(esr & (1u << 8)) ? HM_TRAP_WRITE : HM_TRAP_READ; /* DABT_LOW */
    return HM_TRAP_UNKNOWN;
}
#elif defined(__x86_64__) || defined(__i386__)
/* The page-fault error code, as the kernel saved it (trap 14, #PF): bit 1 write, bit 4 instruction
 * fetch (with NX, always on x86-64). Any other trap number: the code says nothing about the access. */
static hm_trap_access access_of(const ucontext_t *uc)
{
    if (uc->uc_mcontext.gregs[REG_TRAPNO] != 14) return HM_TRAP_UNKNOWN;
    greg_t err = uc->uc_mcontext.gregs[REG_ERR];
    if (err & 0x10) return HM_TRAP_EXEC;
    return err & 0x2 ? HM_TRAP_WRITE : HM_TRAP_READ;
}
#else
static hm_trap_access access_of(const ucontext_t *uc)
{
    (void)uc;
    return HM_TRAP_UNKNOWN;
}
#endif

/* ---- asking the policy ---------------------------------------------------------------------- */

/* A kernel-made SIGSEGV with the faulting address in si_addr: the only signals the policy sees.
 * SIGBUS is never asked: hostmem makes no page that raises it on purpose (guard and write-watch pages
 * use protection, which raises SIGSEGV), and what does raise it on hostmem memory (an exhausted
 * hugetlb pool, a memory error) is nothing a retry can fix. */
static bool for_policy(int sig, const siginfo_t *info)
{
    return sig == SIGSEGV && info && (info->si_code == SEGV_MAPERR || info->si_code == SEGV_ACCERR);
}

static bool ask(siginfo_t *info, void *uc)
{
    hm_trap_fn fn = atomic_load_explicit(&policy, memory_order_acquire);
    hm_trap_access access = uc ? access_of(uc) : HM_TRAP_UNKNOWN;
    if (!fn || fn(info->si_addr, access, uc) != HM_TRAP_RETRY) return false;
    atomic_fetch_add_explicit(&handled, 1, memory_order_relaxed);
    return true;
}

/* ---- chaining ------------------------------------------------------------------------------- */

/* The previous action for this delivery. SA_RESETHAND: the kernel resets the action to SIG_DFL as it
 * delivers, so exactly one delivery sees the handler; the compare-and-swap picks that one when
 * several threads fault at once. hostmem's own handler stays: its pages keep working. */
static const struct sigaction *take_previous(int sig)
{
    _Atomic(const struct sigaction *) *p = &prev[slot(sig)];
    const struct sigaction *a = atomic_load_explicit(p, memory_order_acquire);
    while (a && (a->sa_flags & SA_RESETHAND) && a->sa_handler != SIG_DFL && a->sa_handler != SIG_IGN) {
        if (atomic_compare_exchange_weak_explicit(p, &a, &dfl, memory_order_acq_rel, memory_order_acquire)) break;
    }
    return a ? a : &dfl;
}

/* A fault raised by the kernel for the instruction that was running, which the kernel delivers even
 * over SIG_IGN. Not: sent signals (si_code <= 0) and BUS_MCEERR_AO (an asynchronous report of a
 * memory error elsewhere, discarded under SIG_IGN like a sent signal). */
static bool is_fault(int sig, const siginfo_t *info)
{
    return info && info->si_code > 0 && !(sig == SIGBUS && info->si_code == BUS_MCEERR_AO);
}

/* The previous action was SIG_DFL or SIG_IGN: do what the kernel does. A sent signal to SIG_IGN is
 * discarded. Otherwise the default action ends the process (SIGSEGV and SIGBUS dump core), and for a
 * fault the kernel applies it even over SIG_IGN. Put SIG_DFL back and let the fault happen again:
 * the process dies of the signal, its own faulting context in the core. A signal that will not
 * recur (sent, or SI_KERNEL, which the kernel also uses for signals it forces for other reasons) is
 * queued again, same siginfo, to this thread: it stays pending while this handler runs with it
 * blocked, and is delivered, to SIG_DFL, as the handler returns. hostmem's handler is gone for this
 * signal then: the process is ending. */
static void default_action(int sig, siginfo_t *info, bool ignored)
{
    bool fault = is_fault(sig, info);
    if (ignored && !fault) return;
    (void)sigaction(sig, &dfl, NULL);
    if (fault && info->si_code != SI_KERNEL) return;
    pid_t pid = getpid(), tid = (pid_t)syscall(SYS_gettid);
    if (!info || syscall(SYS_rt_tgsigqueueinfo, pid, tid, sig, info) != 0) (void)syscall(SYS_tgkill, pid, tid, sig);
}

/* The signal mask a kernel delivery to action a would have set: the interrupted code's mask
 * (uc_sigmask) plus a's sa_mask plus the signal itself unless SA_NODEFER. Built signal by signal:
 * on x86-64 glibc's uc_sigmask is wider than the kernel's 64 bits and its tail overlays the
 * siginfo in the signal frame. */
static void delivery_mask(int sig, const struct sigaction *a, const ucontext_t *uc, sigset_t *set)
{
    sigemptyset(set);
    if (!uc) (void)pthread_sigmask(SIG_BLOCK, NULL, set);
    for (int s = 1; s < _NSIG; s++)
        if ((uc && sigismember(&uc->uc_sigmask, s) == 1) || sigismember(&a->sa_mask, s) == 1) sigaddset(set, s);
    if (!(a->sa_flags & SA_NODEFER)) sigaddset(set, sig);
}

/* Runs the previous action for this signal. errno: the interrupted code's value going in; whatever
 * the previous handler leaves coming out, as after a kernel delivery. A handler that leaves by
 * siglongjmp never comes back here, and its sigsetjmp's saved mask is what it gets. */
static void chain(int sig, siginfo_t *info, void *uc, int err)
{
    atomic_fetch_add_explicit(&passed, 1, memory_order_relaxed);
    const struct sigaction *a = take_previous(sig);
    if (a->sa_handler == SIG_DFL || a->sa_handler == SIG_IGN) {
        default_action(sig, info, a->sa_handler == SIG_IGN);
        errno = err;
        return;
    }
    sigset_t run, back;
    delivery_mask(sig, a, uc, &run);
    (void)pthread_sigmask(SIG_SETMASK, &run, &back);
    errno = err;
    if (a->sa_flags & SA_SIGINFO) a->sa_sigaction(sig, info, uc);
    else a->sa_handler(sig);
    err = errno;
    (void)pthread_sigmask(SIG_SETMASK, &back, NULL);
    errno = err;
}

/* SA_SIGINFO for the address and the context; SA_ONSTACK so that a stack overflow reaches the
 * program's handler on the thread's alternate stack; SA_RESTART as glibc's signal() would set. No
 * SA_NODEFER: SIGSEGV stays blocked while the policy runs, so a bug there ends the process instead of
 * recursing; chaining sets the previous action's own mask (delivery_mask) whatever this one is. */
static void trap_handler(int sig, siginfo_t *info, void *uc)
{
    int err = errno;
    if (for_policy(sig, info) && ask(info, uc)) {
        errno = err;
        return;
    }
    chain(sig, info, uc, err);
}

bool hm_trap_handle(int sig, siginfo_t *info, void *ucontext)
{
    int err = errno;
    bool done = for_policy(sig, info) && ask(info, ucontext);
    if (!done) atomic_fetch_add_explicit(&passed, 1, memory_order_relaxed);
    errno = err;
    return done;
}

/* ---- installing ----------------------------------------------------------------------------- */

static bool same_action(const struct sigaction *a, const struct sigaction *b)
{
    if (a->sa_handler != b->sa_handler || a->sa_flags != b->sa_flags) return false;
    for (int s = 1; s < _NSIG; s++)
        if (sigismember(&a->sa_mask, s) != sigismember(&b->sa_mask, s)) return false;
    return true;
}

static bool ours(int sig)
{
    struct sigaction now;
    memset(&now, 0, sizeof now);
    return sigaction(sig, NULL, &now) == 0 && (now.sa_flags & SA_SIGINFO) && now.sa_sigaction == trap_handler;
}

/* pre: install_mu held. Reads the previous action, publishes it, then installs the handler (see the
 * ordering note at the top). A program that calls sigaction for the same signal at the same moment
 * gets one order or the other, as with any two sigaction calls; the exchange below keeps what it
 * installed as the previous action if it went first. */
static int install_one(int sig)
{
    int i = slot(sig);
    memset(saved[i], 0, sizeof saved[i]);
    if (sigaction(sig, NULL, &saved[i][0]) != 0) return errno;
    atomic_store_explicit(&prev[i], &saved[i][0], memory_order_release);

    struct sigaction act;
    memset(&act, 0, sizeof act);
    act.sa_sigaction = trap_handler;
    sigemptyset(&act.sa_mask);
    act.sa_flags = SA_SIGINFO | SA_ONSTACK | SA_RESTART;
    if (sigaction(sig, &act, &saved[i][1]) != 0) return errno;
    if (!same_action(&saved[i][0], &saved[i][1])) atomic_store_explicit(&prev[i], &saved[i][1], memory_order_release);
    /* AddressSanitizer's sigaction, when it keeps SIGSEGV and SIGBUS for itself
     * (allow_user_segv_handler=0), reports success and installs nothing. */
    return ours(sig) ? 0 : ENOTSUP;
}

int hm_trap_install(hm_trap_fn fn)
{
    atomic_store_explicit(&policy, fn, memory_order_release);
    if (atomic_load_explicit(&installed, memory_order_acquire)) return 0;
    int keep = errno, err = 0;
    pthread_mutex_lock(&install_mu);
    if (!atomic_load_explicit(&installed, memory_order_relaxed)) {
        err = install_one(SIGSEGV);
        if (!err && (err = install_one(SIGBUS)) != 0 && ours(SIGSEGV))
            (void)sigaction(SIGSEGV, atomic_load_explicit(&prev[0], memory_order_acquire), NULL); /* both or neither */
        if (!err) atomic_store_explicit(&installed, true, memory_order_release);
    }
    pthread_mutex_unlock(&install_mu);
    errno = keep;
    return err;
}

unsigned long hm_trap_handled(void) { return atomic_load_explicit(&handled, memory_order_relaxed); }
unsigned long hm_trap_passed(void) { return atomic_load_explicit(&passed, memory_order_relaxed); }

void hm_trap_block_all(sigset_t *old)
{
    sigset_t all;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, old);
}

void hm_trap_unblock_faults(sigset_t *old)
{
    sigset_t faults;
    sigemptyset(&faults);
    sigaddset(&faults, SIGSEGV);
    sigaddset(&faults, SIGBUS);
    pthread_sigmask(SIG_UNBLOCK, &faults, old);
}

void hm_trap_restore(const sigset_t *old) { pthread_sigmask(SIG_SETMASK, old, NULL); }
