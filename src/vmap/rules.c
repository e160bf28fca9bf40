/* rules.c — protection tables (rules.h). */
#include "rules.h"

/* Linux protection of each base value; -1 marks values that are not a single base protection. */
static int base_linux(uint32_t base)
{
    switch (base) {
    case HM_PAGE_NOACCESS: return 0;
    case HM_PAGE_READONLY: return 1;                   /* PROT_READ */
    case HM_PAGE_READWRITE: return 1 | 2;              /* PROT_READ|PROT_WRITE */
    case HM_PAGE_EXECUTE: return 1 | 4;                /* PROT_EXEC, readable in practice */
    case HM_PAGE_EXECUTE_READ: return 1 | 4;
    case HM_PAGE_EXECUTE_READWRITE: return 1 | 2 | 4;
    default: return -1;                                /* 0, two base bits, WRITECOPY values */
    }
}

bool hm_prot_valid(uint32_t prot)
{
    if (prot & ~(HM_PAGE_BASE_MASK | HM_PAGE_MODIFIERS)) return false;
    uint32_t base = prot & HM_PAGE_BASE_MASK, mod = prot & HM_PAGE_MODIFIERS;
    if (base_linux(base) < 0) return false;
    if (mod && base == HM_PAGE_NOACCESS) return false;
    if ((mod & HM_PAGE_NOCACHE) && (mod & HM_PAGE_WRITECOMBINE)) return false;
    if ((mod & HM_PAGE_GUARD) && (mod & (HM_PAGE_NOCACHE | HM_PAGE_WRITECOMBINE))) return false; /* SPEC 2.1 */
    return true;
}

int hm_prot_linux(uint32_t prot)
{
    int p = base_linux(prot & HM_PAGE_BASE_MASK);
    return p < 0 ? 0 : p;
}
