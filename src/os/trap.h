/* trap.h — the platform layer's memory-access trap: hostmem's one SIGSEGV/SIGBUS handler.
 *
 * PAGE_GUARD pages and the write-watch fallback work by letting an access fault and deciding, in the
 * fault handler, that the page was hostmem's: change its protection, note the event, let the access
 * run again. This file owns the signal plumbing for that and nothing else; the decision is the
 * policy's, registered as one callback (hm_trap_install).
 *
 * Rules of the handler, stated once:
 *   - Installed lazily, on the first hm_trap_install, with SA_SIGINFO | SA_ONSTACK | SA_RESTART and
 *     an empty sa_mask; never uninstalled (a program may have chained to it since). The actions it
 *     replaced are kept, one for SIGSEGV and one for SIGBUS: "the previous handler" below.
 *   - The policy is asked only about kernel-made SIGSEGV faults that carry an address (si_code
 *     SEGV_MAPERR or SEGV_ACCERR). SIGBUS, the other SIGSEGV codes (SI_KERNEL, SEGV_PKUERR, ...) and
 *     every signal sent with kill/tgkill/sigqueue (si_code <= 0) go straight to the previous handler.
 *   - Chaining behaves like a kernel delivery to the previous action: SA_SIGINFO or not, its sa_mask
 *     plus the signal (unless SA_NODEFER) blocked while it runs, SA_RESETHAND honoured (one delivery,
 *     then SIG_DFL). A previous SIG_DFL or SIG_IGN ends in the kernel's default action: a fault is
 *     re-executed with SIG_DFL in place, so the process dies of the signal with the faulting context
 *     in its core; a sent signal is ignored (SIG_IGN) or sent again (SIG_DFL).
 *   - What cannot be emulated: the previous handler runs on the alternate stack when the thread has
 *     one even if it lacked SA_ONSTACK (only ever safer), and a system call interrupted by a sent
 *     signal restarts by hostmem's SA_RESTART, not by the previous action's flags.
 *   - What hostmem never sees: an access the kernel makes for a system call (read() into a
 *     protected page fails with EFAULT, no signal: the write-watch fallback must allow for it); a
 *     fault on a thread that blocks SIGSEGV (the kernel resets the action to SIG_DFL and the process
 *     dies, handler or not). With a debugger attached every fault stops there first (gdb: "handle
 *     SIGSEGV nostop noprint", as for a JVM).
 *   - After fork the child keeps the handler and the policy; exec drops both.
 *
 * A program that installs its own SIGSEGV handler after hostmem replaces this one, and nothing can
 * make it chain. Such a program calls hm_trap_handle() first in its handler, as it would call any
 * runtime's fault entry point (HotSpot's JVM_handle_linux_signal, for one) before deciding the fault
 * is its own. */
#ifndef HM_TRAP_H
#define HM_TRAP_H

#include <signal.h>
#include <stdbool.h>

/* What kind of access faulted, from the fault's machine context: x86 page-fault error code,
 * aarch64 ESR; HM_TRAP_UNKNOWN elsewhere or when the context does not say. */
typedef enum { HM_TRAP_READ = 0, HM_TRAP_WRITE = 1, HM_TRAP_EXEC = 8, HM_TRAP_UNKNOWN = -1 } hm_trap_access;

/* The policy's answer for a fault. */
typedef enum {
    HM_TRAP_PASS = 0,  /* not hostmem's page: chain to the previous handler */
    HM_TRAP_RETRY = 1  /* handled (e.g. protection changed): return and let the access run again */
} hm_trap_action;

/* Called in signal context, on the faulting thread: async-signal-safe code only (no malloc, no lock
 * the interrupted code may hold, no stdio). It may run on several threads at once. From hostmem's
 * handler it runs with SIGSEGV blocked, so it is never re-entered on one thread: a fault inside it
 * kills the process (the kernel's rule for a fault whose signal is blocked). Through hm_trap_handle
 * the program's handler decides the mask. errno may be changed: the caller restores it. addr is
 * si_addr, the faulting byte; ucontext is the handler's third argument (ucontext_t *). */
typedef hm_trap_action (*hm_trap_fn)(void *addr, hm_trap_access access, void *ucontext);

/* Sets the policy callback (one, process-wide; NULL removes it) and, on the first call, installs the
 * SIGSEGV and SIGBUS handlers. Idempotent and thread-safe; after the first success it is one atomic
 * store. Returns 0, an errno value from sigaction, or ENOTSUP when sigaction reported success but
 * the handler is not in place (AddressSanitizer without allow_user_segv_handler=1 does that). On
 * failure nothing is installed and a later call tries again. Not async-signal-safe. */
int hm_trap_install(hm_trap_fn fn);

/* For a program whose own SIGSEGV handler runs before hostmem's (it was installed later) and wants
 * hostmem to look at a fault first: asks the policy exactly as hostmem's handler would. Returns true
 * if hostmem handled it; the program's handler should then return at once, and the access is
 * retried. false: not hostmem's, the program goes on with its own handling. Async-signal-safe;
 * errno is preserved. A handler that instead chains to the action it replaced (hostmem's) gets the
 * same answer there; calling both only asks the policy twice. Exposed later in the public header as
 * hm_handle_fault. */
bool hm_trap_handle(int sig, siginfo_t *info, void *ucontext);

/* Signal masks for the policy's own locking (special.c), so that it makes no signal call itself:
 * every signal blocked on the calling thread, or (inside the handler, around code that may touch
 * trapped pages) SIGSEGV and SIGBUS unblocked; *old gets the mask that hm_trap_restore puts back.
 * Async-signal-safe. */
void hm_trap_block_all(sigset_t *old);
void hm_trap_unblock_faults(sigset_t *old);
void hm_trap_restore(const sigset_t *old);

/* Test/diagnostic counters since start: faults the policy handled (RETRY), and signals hostmem
 * looked at and did not handle (chained to the previous handler, or false from hm_trap_handle). */
unsigned long hm_trap_handled(void);
unsigned long hm_trap_passed(void);

#endif
