/* host_main.h — the driver every `hostmem host RUNTIME` helper executable shares (host_main.c).
 *
 *   hostmem-host-RUNTIME [-o OPTIONS] [--level task|appdomain|process] [--report FILE]
 *                        [--report-format text|json] [--plot FILE.svg] [RUNTIME'S OWN...] SCRIPT [ARGS...]
 *
 * It parses the common arguments (a bad one: a message naming it, status 2), creates the tenant from
 * the options (a bad option: hostmem's detail naming it, status 2), samples the tenant's charge for
 * --plot, runs the script through the runtime's `run`, then prints the tenant's report on stderr (or
 * writes it to FILE) and returns run's status: 0 when the script succeeded, 1 when it failed (its
 * error on stderr: an out-of-memory error is one of them), 2 for bad input to the command itself (a
 * script that cannot be read included, for every runtime alike: checked here before the tenant). */
#ifndef HM_HOST_MAIN_H
#define HM_HOST_MAIN_H

#include <hostmem/tenant.h>

typedef struct hm_host_runtime {
    const char *name;  /* "lua": the command's name and the tenant's */
    const char *usage; /* the runtime's own arguments and what SCRIPT is, for the usage text */
    /* The runtime's own argument at argv[i] (NULL when it has none): the number of arguments it took
     * (1 or 2), 0 if argv[i] is not one of its own, -1 after printing why a value is bad. */
    int (*option)(int argc, char **argv, int i, void *state);
    /* Runs script on a runtime hosted by t; args are the script's arguments (argv[0] is the script). */
    int (*run)(hm_tenant *t, const char *script, int argc, char **argv, void *state);
    /* The runtime may still touch the tenant's memory after run returned (CPython: a thread it started
     * in its last steps): the tenant is reported but not destroyed; the process exits next. */
    bool keep_tenant;
} hm_host_runtime;

int hm_host_main(const hm_host_runtime *rt, void *state, int argc, char **argv);

#endif
