/* host.h — `hostmem host` (host.c). */
#ifndef HM_TOOLS_HOST_H
#define HM_TOOLS_HOST_H

/* argv[1] is "host"; returns the exit status for `hostmem` (on success it does not return). */
int hm_host(int argc, char **argv);

#endif
