/* report.h — the process's report (hm_report, hostmem.h), and the heaps it describes. */
#ifndef HM_REPORT_H
#define HM_REPORT_H

#include <hostmem/hostmem.h>

#define HM_REPORT_HEAPS 8

/* Adds h to the heaps the report describes by size class, under name (a static string). At most
 * HM_REPORT_HEAPS; later ones are left out. */
void hm_report_register_heap(hm_heap *h, const char *name);

#endif
