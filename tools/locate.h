/* locate.h — finding what the hostmem command ships beside itself (locate.c): the drop-in library
 * of `hostmem run`, the helpers of `hostmem host`. */
#ifndef HM_TOOLS_LOCATE_H
#define HM_TOOLS_LOCATE_H

#include <stdbool.h>
#include <stddef.h>

/* Into out, the first of <this program's directory><rel[i]>/name (i = 0 .. nrel-1), then
 * <fallback_dir>/name, that access(path, mode) allows; false (out holds the last path tried) if none. */
bool hm_locate_beside(const char *name, const char *const rel[], size_t nrel, const char *fallback_dir, int mode,
                      char *out, size_t cap);

#endif
