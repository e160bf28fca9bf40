/* run_prog.c — the program run_cli.sh runs under `hostmem run`: it keeps a 1 MiB block from a
 * function of its own (a site --sites must name), asks for more than the limit once, and starts a
 * child process (whose report must not overwrite the program's). With "libc", it frees a block of
 * libc's own malloc (as a library bound with RTLD_DEEPBIND would). */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

__attribute__((noinline)) static void *keep_a_mebibyte(void)
{
    void *p = malloc(1 << 20);
    if (p) memset(p, 1, 1 << 20);
    return p;
}

int main(int argc, char **argv)
{
    if (argc > 1 && !strcmp(argv[1], "libc")) { /* a block of libc's own malloc, freed through ours */
        void *(*libc_malloc)(size_t) = (void *(*)(size_t))dlsym(dlopen("libc.so.6", RTLD_NOW | RTLD_NOLOAD), "malloc");
        free(libc_malloc ? libc_malloc(100) : NULL);
        return 0;
    }
    static void *kept;
    kept = keep_a_mebibyte();
    void *big = malloc((size_t)200 << 20); /* over a 64M limit: refused */
    printf("kept %s, big %s\n", kept ? "yes" : "no", big ? "yes" : "no");
    fflush(stdout);
    if (argc > 1 && !strcmp(argv[1], "child") && system("/bin/true") != 0) return 3;
    return argc > 2 ? atoi(argv[2]) : 0;
}
