/* manager.h — managers: a budget and a set of allocations (SPEC 3.1, 3.2). A manager is created from
 * an option string (options.h) over HOSTMEM_OPTIONS; the process-default manager, behind the Win32
 * names and the NULL manager of the C API, is created on first use from HOSTMEM_OPTIONS alone.
 *
 * The manager owns its options and limits; its charge and address-space use live in its hm_account,
 * which the map keeps exact (vmap/account.h). Lock order: hm_manager_lock (creation, destruction)
 * before hm_map_lock; neither is held while calling back into the program. */
#ifndef HM_MANAGER_H
#define HM_MANAGER_H

#include <hostmem/hostmem.h>

#include "../vmap/account.h"
#include "options.h"

struct hm_manager {
    hm_account acct;      /* the map's books of this manager */
    hm_options opts;      /* as resolved at creation */
    bool is_default;      /* the process-default manager: never destroyed */
};

/* The manager a public call names (NULL: the process default, created on first use). On failure
 * (HOSTMEM_OPTIONS invalid, page size refused) NULL with *st set. */
hm_manager *hm_manager_resolve(hm_manager *m, hm_status *st);

#endif
