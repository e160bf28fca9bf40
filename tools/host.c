/* host.c — `hostmem host RUNTIME ...`: runs a script on a runtime (Lua, SQLite, CPython) hosted by a
 * hostmem tenant, through the helper executable hostmem-host-RUNTIME (adapters/), so that this command
 * itself needs none of the runtimes' libraries. The helper is looked for beside this program, in
 * ../libexec/hostmem beside it, then in HM_LIBEXECDIR (HOSTMEM_HOST_DIR, when set, is the only place
 * looked in); it gets the arguments after RUNTIME and its
 * exit status is this command's. A runtime whose helper was not built (its development package was
 * missing at build time) is a message saying so and status 2. */
#define _GNU_SOURCE
#include "host.h"
#include "locate.h"

#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifndef HM_LIBEXECDIR
#define HM_LIBEXECDIR "/usr/local/libexec/hostmem"
#endif

static const char *const runtimes[] = {"lua", "sqlite", "python"};

static void usage(FILE *f)
{
    fprintf(f, "usage: hostmem host lua|sqlite|python [-o OPTIONS] [--level task|appdomain|process] [--report FILE]\n"
               "         [--report-format text|json] [--plot FILE.svg] [--db FILE (sqlite)] SCRIPT [ARGS...]\n"
               "  runs a Lua script, an SQL script (on :memory: or --db FILE) or a Python script on a runtime whose\n"
               "  memory comes from a hostmem tenant under OPTIONS, and prints the tenant's report at the end\n"
               "  (`hostmem host RUNTIME --help` for more)\n");
}

/* The helper's path into out, or false: only in $HOSTMEM_HOST_DIR when it is set. */
static bool find_helper(const char *rt, char *out, size_t cap)
{
    char name[64];
    snprintf(name, sizeof name, "hostmem-host-%s", rt);
    static const char *const rel[] = {"", "/../libexec/hostmem"}; /* (a build tree; an installation) */
    const char *env = getenv("HOSTMEM_HOST_DIR");
    if (env && *env) return hm_locate_beside(name, rel, 0, env, X_OK, out, cap);
    return hm_locate_beside(name, rel, sizeof rel / sizeof rel[0], HM_LIBEXECDIR, X_OK, out, cap);
}

int hm_host(int argc, char **argv)
{
    if (argc < 3 || !strcmp(argv[2], "-h") || !strcmp(argv[2], "--help")) {
        usage(argc < 3 ? stderr : stdout);
        return argc < 3 ? 2 : 0;
    }
    const char *rt = argv[2];
    bool known = false;
    for (size_t i = 0; i < sizeof runtimes / sizeof runtimes[0]; i++) known |= !strcmp(rt, runtimes[i]);
    if (!known) {
        fprintf(stderr, "hostmem host: unknown runtime '%s' (known: lua, sqlite, python)\n", rt);
        usage(stderr);
        return 2;
    }
    char helper[PATH_MAX];
    if (!find_helper(rt, helper, sizeof helper)) {
        fprintf(stderr, "hostmem host: hostmem-host-%s is not installed (looked beside this program and in "
                        HM_LIBEXECDIR "; HOSTMEM_HOST_DIR names another place): it is built when the runtime's "
                        "development package is present\n", rt);
        return 2;
    }
    argv[2] = helper; /* the helper's argv: itself, then what followed RUNTIME */
    execv(helper, argv + 2);
    fprintf(stderr, "hostmem host: cannot run %s: %s\n", helper, strerror(errno));
    return 2;
}
