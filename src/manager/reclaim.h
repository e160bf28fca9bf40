/* reclaim.h — memory a layer keeps committed for reuse and can give back at once (a heap's freed
 * large blocks and empty pages): registered with the manager it is charged to (manager.h,
 * hm_manager_reclaimer_add), asked when a request there is refused, before the refusal stands
 * (wait.c). give_back runs under the manager's reclaim_lock with no other manager lock held; it must
 * not block on a lock (it may take its own with trylock) and says whether anything went back. need:
 * the bytes the refused request lacks; what goes back first is the oldest, and once at least need
 * went the rest stays kept (UINT64_MAX: all of it, the second round when the first was not enough). */
#ifndef HM_MANAGER_RECLAIM_H
#define HM_MANAGER_RECLAIM_H

#include <stdbool.h>
#include <stdint.h>

typedef struct hm_reclaimer {
    bool (*give_back)(struct hm_reclaimer *r, uint64_t need);
    struct hm_reclaimer *next, *prev;
} hm_reclaimer;

#endif
