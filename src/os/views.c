/* views.c — two views of one memory, for executable heaps where the system forbids pages that are
 * writable and executable at once (W^X: SELinux's execmem denial, PaX MPROTECT, hardened kernels).
 * The memory is a memfd; hostmem maps it twice, shared: an execute-read view where the program runs
 * code, and a read-write view where it writes it. Part of the platform layer (os.h's contract). */
#define _GNU_SOURCE
#include "os.h"
#include "sys.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef MFD_CLOEXEC
#define MFD_CLOEXEC 1u
#endif
#ifndef FALLOC_FL_KEEP_SIZE
#define FALLOC_FL_KEEP_SIZE 0x01
#endif
#ifndef FALLOC_FL_PUNCH_HOLE
#define FALLOC_FL_PUNCH_HOLE 0x02
#endif

static pthread_once_t wx_once = PTHREAD_ONCE_INIT;
static bool wx_allowed;

/* One scratch page: may it be made writable and executable at once? */
static void probe_wx(void)
{
    const char *v = getenv("HOSTMEM_EXEC_VIEWS");
    if (v && !strcmp(v, "dual")) return; /* forced: behave as under W^X */
    int saved = errno;
    void *p = hm_sys_mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p != MAP_FAILED) {
        wx_allowed = hm_sys_mprotect(p, 4096, PROT_READ | PROT_WRITE | PROT_EXEC) == 0;
        hm_sys_munmap(p, 4096);
    }
    errno = saved;
}

bool hm_os_wx_allowed(void)
{
    pthread_once(&wx_once, probe_wx);
    return wx_allowed;
}

int hm_os_memfd(size_t size, int *fd)
{
    int saved = errno, err;
    if ((err = hm_os_fault_check(HM_OS_MMAP))) return err;
    int f = (int)syscall(SYS_memfd_create, "hostmem-exec", MFD_CLOEXEC);
    if (f < 0) {
        err = errno;
    } else if (ftruncate(f, (off_t)size) != 0) {
        err = errno;
        close(f);
    } else {
        *fd = f;
    }
    errno = saved;
    return err;
}

int hm_os_map_shared_at(void *addr, size_t size, int fd, uint64_t off, int prot)
{
    int saved = errno, err;
    if ((err = hm_os_fault_check(HM_OS_MMAP))) return err;
    void *p = hm_sys_mmap(addr, size, prot, MAP_SHARED | MAP_FIXED, fd, (off_t)off);
    err = p == MAP_FAILED ? errno : 0;
    errno = saved;
    return err;
}

int hm_os_map_shared(size_t size, int fd, uint64_t off, int prot, void **out)
{
    int saved = errno, err;
    if ((err = hm_os_fault_check(HM_OS_MMAP))) return err;
    void *p = hm_sys_mmap(NULL, size, prot, MAP_SHARED, fd, (off_t)off);
    if (p == MAP_FAILED) {
        err = errno;
    } else {
        hm_os_name(p, size, "hostmem-exec-rw");
        *out = p;
    }
    errno = saved;
    return err;
}

int hm_os_punch(int fd, uint64_t off, size_t size)
{
    int saved = errno, err;
    if ((err = hm_os_fault_check(HM_OS_MADVISE))) return err;
    err = fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)off, (off_t)size) ? errno : 0;
    errno = saved;
    return err;
}

int hm_os_rereserve(void *addr, size_t size)
{
    int saved = errno, err;
    if ((err = hm_os_fault_check(HM_OS_MMAP))) return err;
    void *p = hm_sys_mmap(addr, size, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED, -1, 0);
    err = p == MAP_FAILED ? errno : 0;
    errno = saved;
    return err;
}

void hm_os_close(int fd)
{
    int saved = errno;
    close(fd);
    errno = saved;
}
