/* valgrind_heap.c — run under Valgrind's memcheck by valgrind_heap.sh: a use after free and a leak
 * through the hm_heap_* API, which memcheck must report (the heaps describe their blocks to it,
 * src/heap/track.h). Linked with the unsanitized library (memcheck cannot run ASan programs). */
#include <stdio.h>
#include <string.h>

#include <hostmem/hostmem.h>

int main(void)
{
    hm_heap *h;
    if (hm_heap_create(NULL, HM_HEAP_THREADSAFE, &h)) return 2;
    char *p, *leak;
    if (hm_heap_alloc(h, 100, HM_LEVEL_PROCESS, (void **)&p) || hm_heap_alloc(h, 300, HM_LEVEL_PROCESS, (void **)&leak))
        return 2;
    memset(p, 1, 100);
    memset(leak, 2, 300);
    if (hm_heap_free(h, p)) return 2;
    volatile char c = p[50]; /* the use after free memcheck reports */
    (void)c;
    leak = NULL;             /* the 300 bytes are lost */
    printf("done\n");
    return 0;
}
