/* run.h — `hostmem run` (run.c). */
#ifndef HM_TOOLS_RUN_H
#define HM_TOOLS_RUN_H

/* argv[1] is "run"; returns the exit status for `hostmem`. */
int hm_run(int argc, char **argv);

#endif
