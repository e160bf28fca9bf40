/* rules.h — the Win32 flag rules as tables and small pure functions (SPEC 2.1): which protection
 * values are legal, what they mean to Linux, which allocation and free types are legal. No state. */
#ifndef HM_RULES_H
#define HM_RULES_H

#include <stdbool.h>
#include <stdint.h>

#include <hostmem/hostmem.h>

#define HM_PAGE_BASE_MASK  0xFFu
#define HM_PAGE_MODIFIERS  (HM_PAGE_GUARD | HM_PAGE_NOCACHE | HM_PAGE_WRITECOMBINE)

/* SPEC 2.1 "A valid protection": exactly one of the six base values for private memory, with legal
 * modifiers (none with NOACCESS). WRITECOPY values are invalid for private memory. */
bool hm_prot_valid(uint32_t prot);
/* Linux PROT_* bits for a base protection (PAGE_EXECUTE is readable in practice). */
int hm_prot_linux(uint32_t prot);
/* The base protection with the allocation's cache modifier, as queries report committed pages. */
static inline uint32_t hm_prot_report(uint32_t base, uint32_t alloc_protect)
{
    return base | (alloc_protect & (HM_PAGE_NOCACHE | HM_PAGE_WRITECOMBINE));
}
static inline bool hm_prot_writable(uint32_t base)
{
    return base == HM_PAGE_READWRITE || base == HM_PAGE_EXECUTE_READWRITE;
}

#define HM_ALLOC_TYPE_KNOWN (HM_MEM_COMMIT | HM_MEM_RESERVE | HM_MEM_RESET | HM_MEM_RESET_UNDO | \
                             HM_MEM_TOP_DOWN | HM_MEM_WRITE_WATCH | HM_MEM_PHYSICAL | HM_MEM_LARGE_PAGES)

#endif
