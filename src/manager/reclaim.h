/* reclaim.h — memory a layer keeps committed for reuse and can give back at once (a heap's freed
 * large blocks and empty pages): registered with the manager it is charged to (manager.h,
 * hm_manager_reclaimer_add), asked when a request there is refused, before the refusal stands
 * (wait.c). give_back runs under the manager's reclaim_lock with no other manager lock held; it must
 * not block on a lock (it may take its own with trylock) and says whether anything went back. */
#ifndef HM_MANAGER_RECLAIM_H
#define HM_MANAGER_RECLAIM_H

#include <stdbool.h>

typedef struct hm_reclaimer {
    bool (*give_back)(struct hm_reclaimer *r);
    struct hm_reclaimer *next, *prev;
} hm_reclaimer;

#endif
