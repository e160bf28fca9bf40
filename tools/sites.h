/* sites.h — `hostmem run --sites` (sites.c). */
#ifndef HM_TOOLS_SITES_H
#define HM_TOOLS_SITES_H

#include <stdio.h>

/* Prints the top `top` sites of the sites file at path to out (text, or a JSON array). -1 if the file
 * cannot be read. */
int hm_sites_print(const char *path, FILE *out, int json, unsigned top);

#endif
