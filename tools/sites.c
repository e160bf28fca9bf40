/* sites.c — `hostmem run --sites`: the program's live blocks at exit by allocating stack, read from
 * the sites file the drop-in wrote (src/preload/sites.c), resolved to function names and file:line
 * with addr2line (binutils; where it is missing, or the module has no symbols, frames stay
 * MODULE+0xOFFSET), and printed top sites first (by live bytes), as text or as a JSON array. */
#define _GNU_SOURCE
#include "sites.h"

#include <errno.h>
#include <fcntl.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

typedef struct frame {
    char *module;
    unsigned long off, addr;
    char *func, *where; /* resolved: function, file:line (NULL: not known) */
} frame;

typedef struct site {
    unsigned long long bytes, blocks, total;
    size_t first, n; /* frames[first .. first+n) */
} site;

static int by_bytes(const void *a, const void *b)
{
    const site *x = a, *y = b;
    return x->bytes < y->bytes ? 1 : x->bytes > y->bytes ? -1 : 0;
}

/* ET_EXEC (not position independent): addr2line wants the address itself. */
static int is_exec(const char *path)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return 0;
    unsigned char h[18];
    ssize_t r = read(fd, h, sizeof h);
    close(fd);
    return r == (ssize_t)sizeof h && !memcmp(h, "\177ELF", 4) && h[16] == 2 && h[17] == 0;
}

/* Resolves the frames of one module (indices idx[0..n)) with one addr2line run. */
static void resolve(frame *f, const size_t *idx, size_t n)
{
    const char *mod = f[idx[0]].module;
    if (!strcmp(mod, "?") || access(mod, R_OK)) return;
    int exec = is_exec(mod);
    char **argv = calloc(n + 6, sizeof *argv);
    char (*num)[24] = calloc(n, sizeof *num);
    if (!argv || !num) goto out;
    size_t a = 0;
    argv[a++] = "addr2line";
    argv[a++] = "-f";
    argv[a++] = "-C";
    argv[a++] = "-e";
    argv[a++] = (char *)mod;
    for (size_t i = 0; i < n; i++) { /* a return address: the call is the byte before */
        unsigned long v = exec ? f[idx[i]].addr : f[idx[i]].off;
        snprintf(num[i], sizeof num[i], "0x%lx", v ? v - 1 : 0);
        argv[a++] = num[i];
    }
    int pipefd[2];
    if (pipe(pipefd)) goto out;
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, pipefd[1], 1);
    posix_spawn_file_actions_addclose(&fa, pipefd[0]);
    posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
    pid_t pid;
    /* (the drop-in is not for addr2line: LD_PRELOAD and HOSTMEM_* were set for the program only) */
    int err = posix_spawnp(&pid, "addr2line", &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    close(pipefd[1]);
    if (err) {
        close(pipefd[0]);
        goto out;
    }
    FILE *in = fdopen(pipefd[0], "r");
    char *line = NULL;
    size_t cap = 0;
    for (size_t i = 0; in && i < n; i++) {
        if (getline(&line, &cap, in) < 0) break;
        line[strcspn(line, "\n")] = 0;
        if (strcmp(line, "??")) f[idx[i]].func = strdup(line);
        if (getline(&line, &cap, in) < 0) break;
        line[strcspn(line, "\n")] = 0;
        char *sp = strstr(line, " (discriminator");
        if (sp) *sp = 0;
        if (strncmp(line, "??", 2)) f[idx[i]].where = strdup(line);
    }
    free(line);
    if (in) fclose(in);
    else close(pipefd[0]);
    int status;
    waitpid(pid, &status, 0);
out:
    free(argv);
    free(num);
}

static void json_str(FILE *o, const char *s)
{
    fputc('"', o);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') fprintf(o, "\\%c", c);
        else if (c < 0x20) fprintf(o, "\\u%04x", c);
        else fputc(c, o);
    }
    fputc('"', o);
}

int hm_sites_print(const char *path, FILE *out, int json, unsigned top)
{
    FILE *in = fopen(path, "r");
    if (!in) return -1;
    site *s = NULL;
    frame *f = NULL;
    size_t ns = 0, nf = 0, cs = 0, cf = 0;
    char *line = NULL;
    size_t cap = 0;
    while (getline(&line, &cap, in) > 0) {
        site st = {0, 0, 0, nf, 0};
        char *p = line, *tok;
        if (sscanf(p, "%llu %llu %llu", &st.bytes, &st.blocks, &st.total) != 3) continue;
        for (int k = 0; k < 3; k++) strtok_r(k ? NULL : p, " \n", &tok);
        char *w;
        while ((w = strtok_r(NULL, " \n", &tok))) {
            char *plus = strrchr(w, '+'), *at = strrchr(w, '@');
            if (!plus || !at || at < plus) continue;
            *plus = 0;
            if (nf == cf) {
                cf = cf ? cf * 2 : 256;
                frame *g = realloc(f, cf * sizeof *f);
                if (!g) break;
                f = g;
            }
            f[nf++] = (frame){strdup(w), strtoul(plus + 1, NULL, 16), strtoul(at + 1, NULL, 16), NULL, NULL};
            st.n++;
        }
        if (ns == cs) {
            cs = cs ? cs * 2 : 64;
            site *t = realloc(s, cs * sizeof *s);
            if (!t) break;
            s = t;
        }
        s[ns++] = st;
    }
    free(line);
    fclose(in);
    qsort(s, ns, sizeof *s, by_bytes);
    if (ns > top) ns = top;
    /* resolve, one addr2line run per module, the frames of the sites shown */
    size_t *idx = malloc((nf ? nf : 1) * sizeof *idx);
    char *done = calloc(nf ? nf : 1, 1);
    for (size_t i = 0; idx && done && i < ns; i++)
        for (size_t j = s[i].first; j < s[i].first + s[i].n; j++) {
            if (done[j]) continue;
            size_t m = 0;
            for (size_t k = 0; k < ns; k++)
                for (size_t q = s[k].first; q < s[k].first + s[k].n; q++)
                    if (!done[q] && !strcmp(f[q].module, f[j].module)) idx[m++] = q, done[q] = 1;
            if (m) resolve(f, idx, m);
        }
    free(idx);
    free(done);
    if (json) fprintf(out, "[");
    for (size_t i = 0; i < ns; i++) {
        if (json) {
            fprintf(out, "%s{\"live_bytes\":%llu,\"live_blocks\":%llu,\"total_blocks\":%llu,\"frames\":[", i ? "," : "",
                    s[i].bytes, s[i].blocks, s[i].total);
            for (size_t j = 0; j < s[i].n; j++) {
                frame *g = &f[s[i].first + j];
                fprintf(out, "%s{\"module\":", j ? "," : "");
                json_str(out, g->module);
                fprintf(out, ",\"offset\":\"0x%lx\",\"function\":", g->off);
                if (g->func) json_str(out, g->func);
                else fprintf(out, "null");
                fprintf(out, ",\"source\":");
                if (g->where) json_str(out, g->where);
                else fprintf(out, "null");
                fprintf(out, "}");
            }
            fprintf(out, "]}");
        } else {
            fprintf(out, "    %llu bytes in %llu live blocks (%llu allocated here in all)\n", s[i].bytes, s[i].blocks,
                    s[i].total);
            for (size_t j = 0; j < s[i].n; j++) {
                frame *g = &f[s[i].first + j];
                const char *base = strrchr(g->module, '/');
                fprintf(out, "        %s", g->func ? g->func : "?");
                if (g->where) fprintf(out, " (%s)", g->where);
                fprintf(out, "  [%s+0x%lx]\n", base ? base + 1 : g->module, g->off);
            }
        }
    }
    if (json) fprintf(out, "]");
    for (size_t j = 0; j < nf; j++) free(f[j].module), free(f[j].func), free(f[j].where);
    free(f);
    free(s);
    return 0;
}
