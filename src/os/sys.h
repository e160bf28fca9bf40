/* sys.h — the kernel's memory calls, made as system calls (private to src/os).
 *
 * Not through libc's mmap family: the drop-in malloc (src/preload/mmap.c) puts its own mmap, munmap,
 * mprotect and mremap in front of the program's, and the library's own mappings must not pass
 * through them (they are charged by the map already). errno and return values as libc's. */
#ifndef HM_OS_SYS_H
#define HM_OS_SYS_H

#include <stddef.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <unistd.h>

static inline void *hm_sys_mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
    return (void *)syscall(SYS_mmap, addr, len, prot, flags, fd, off); /* (-1 with errno: MAP_FAILED) */
}
static inline int hm_sys_munmap(void *addr, size_t len) { return (int)syscall(SYS_munmap, addr, len); }
static inline int hm_sys_mprotect(void *addr, size_t len, int prot) { return (int)syscall(SYS_mprotect, addr, len, prot); }
static inline int hm_sys_madvise(void *addr, size_t len, int advice) { return (int)syscall(SYS_madvise, addr, len, advice); }
static inline void *hm_sys_mremap(void *old, size_t oldlen, size_t newlen, int flags, void *new_addr)
{
    return (void *)syscall(SYS_mremap, old, oldlen, newlen, flags, new_addr);
}

#endif
