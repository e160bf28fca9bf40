/* locate.c — finding what the hostmem command ships beside itself (locate.h): a build tree puts it
 * next to the command, an installation in a directory relative to it, else the configured one. */
#define _GNU_SOURCE
#include "locate.h"

#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static bool found(char *out, size_t cap, const char *dir, const char *rel, const char *name, int mode)
{
    int l = snprintf(out, cap, "%s%s/%s", dir, rel, name);
    return l > 0 && (size_t)l < cap && access(out, mode) == 0;
}

bool hm_locate_beside(const char *name, const char *const rel[], size_t nrel, const char *fallback_dir, int mode,
                      char *out, size_t cap)
{
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    char *slash = n > 0 ? (exe[n] = 0, strrchr(exe, '/')) : NULL;
    if (slash) {
        *slash = 0;
        for (size_t i = 0; i < nrel; i++)
            if (found(out, cap, exe, rel[i], name, mode)) return true;
    }
    return found(out, cap, fallback_dir, "", name, mode);
}
