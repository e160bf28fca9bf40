/* hostmem.c — the `hostmem` command: shows what the library does.
 *   hostmem simulate [-o OPTIONS] [--seconds N] [--svg FILE]
 *                  workloads at three critical levels share one manager under a tight limit;
 *                  a report, and the charge timeline as an SVG picture (simulate.c)
 *   hostmem map    reserve, commit and protect a demonstration layout, print its region map as
 *                  VirtualQuery reports it, then release it
 *   hostmem info   the system as hostmem sees it (GetSystemInfo, map statistics)
 *   hostmem run    a program on the drop-in malloc under options, with a report at its exit (run.c) */
#include <hostmem/hostmem.h>

#include "host.h"
#include "run.h"
#include "simulate.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *state_name(uint32_t s)
{
    switch (s) {
    case HM_MEM_COMMIT: return "COMMIT";
    case HM_MEM_RESERVE: return "RESERVE";
    case HM_MEM_FREE: return "FREE";
    default: return "?";
    }
}

static void prot_name(uint32_t p, char *buf, size_t cap)
{
    static const struct { uint32_t v; const char *n; } base[] = {
        {HM_PAGE_NOACCESS, "NOACCESS"}, {HM_PAGE_READONLY, "READONLY"}, {HM_PAGE_READWRITE, "READWRITE"},
        {HM_PAGE_EXECUTE, "EXECUTE"}, {HM_PAGE_EXECUTE_READ, "EXECUTE_READ"},
        {HM_PAGE_EXECUTE_READWRITE, "EXECUTE_READWRITE"}};
    if (p == 0) {
        snprintf(buf, cap, "0");
        return;
    }
    const char *b = "?";
    for (size_t i = 0; i < sizeof base / sizeof base[0]; i++)
        if ((p & 0xFF) == base[i].v) b = base[i].n;
    snprintf(buf, cap, "%s%s%s%s", b, p & HM_PAGE_GUARD ? "|GUARD" : "", p & HM_PAGE_NOCACHE ? "|NOCACHE" : "",
             p & HM_PAGE_WRITECOMBINE ? "|WRITECOMBINE" : "");
}

static void print_region(const hm_region *r)
{
    char prot[48], aprot[48];
    prot_name(r->protect, prot, sizeof prot);
    prot_name(r->allocation_protect, aprot, sizeof aprot);
    printf("  %14p  %10zx  %-7s  %-20s  %14p  %s\n", r->base, r->size, state_name(r->state), prot,
           r->allocation_base, r->allocation_base ? aprot : "");
}

static int fail(const char *what, hm_status st)
{
    fprintf(stderr, "hostmem: %s failed: %s (%s, 0x%08x)\n  %s\n", what, hm_status_message(st),
            hm_status_name(st), (unsigned)st, hm_last_detail());
    return 1;
}

#define TRY(what, call)                        \
    do {                                       \
        hm_status st_ = (call);                \
        if (HM_FAILED(st_)) return fail(what, st_); \
    } while (0)

static int cmp_ptr(const void *a, const void *b)
{
    uintptr_t x = *(const uintptr_t *)a, y = *(const uintptr_t *)b;
    return x < y ? -1 : x > y;
}

static int cmd_map(void)
{
    void *heap, *code, *small, *wc, *top, *ww;
    uint32_t old;
    /* A 1 MiB reservation like a runtime's heap: committed pieces with different protections. */
    TRY("reserve 1 MiB", hm_virtual_alloc(NULL, NULL, 1 << 20, HM_MEM_RESERVE, HM_PAGE_READWRITE, &heap));
    TRY("commit 64 KiB", hm_commit(NULL, heap, 64 << 10, HM_PAGE_READWRITE));
    TRY("commit 16 KiB", hm_commit(NULL, (char *)heap + (128 << 10), 16 << 10, HM_PAGE_READWRITE));
    TRY("protect 8 KiB", hm_virtual_protect(NULL, (char *)heap + (16 << 10), 8 << 10, HM_PAGE_READONLY, &old));
    TRY("commit guard", hm_commit(NULL, (char *)heap + (256 << 10), 4 << 10, HM_PAGE_NOACCESS));
    memset(heap, 0x5a, 16 << 10); /* committed memory is ours to write */
    /* Code: reserve and commit in one call, then make it executable. */
    TRY("reserve+commit code", hm_virtual_alloc(NULL, NULL, 8 << 10, HM_MEM_RESERVE | HM_MEM_COMMIT,
                                                HM_PAGE_READWRITE, &code));
    TRY("protect code", hm_virtual_protect(NULL, code, 8 << 10, HM_PAGE_EXECUTE_READ, &old));
    /* A 4 KiB reservation still takes a 64 KiB granule; its tail queries as free. */
    TRY("reserve 4 KiB", hm_reserve(NULL, 4 << 10, &small));
    /* Cache modifiers belong to the allocation and show on every committed page. */
    TRY("write-combined", hm_virtual_alloc(NULL, NULL, 32 << 10, HM_MEM_RESERVE | HM_MEM_COMMIT,
                                           HM_PAGE_READWRITE | HM_PAGE_WRITECOMBINE, &wc));
    TRY("top-down", hm_virtual_alloc(NULL, NULL, 64 << 10, HM_MEM_RESERVE | HM_MEM_TOP_DOWN,
                                     HM_PAGE_NOACCESS, &top));
    /* A guard page below a stack-like committed run (PAGE_GUARD shows until the first touch), and a
     * second one that a read fires: it shows its base protection from then on. */
    TRY("commit stack guard", hm_commit(NULL, (char *)heap + (512 << 10), 4 << 10, HM_PAGE_READWRITE | HM_PAGE_GUARD));
    TRY("commit stack", hm_commit(NULL, (char *)heap + (516 << 10), 28 << 10, HM_PAGE_READWRITE));
    TRY("commit fired guard", hm_commit(NULL, (char *)heap + (544 << 10), 4 << 10, HM_PAGE_READONLY | HM_PAGE_GUARD));
    (void)*(volatile char *)((char *)heap + (544 << 10)); /* fires it (the default: the read goes on) */
    /* A write-watched reservation, like a concurrent GC's heap: four pages written of sixteen. */
    TRY("write watch", hm_virtual_alloc(NULL, NULL, 64 << 10, HM_MEM_RESERVE | HM_MEM_COMMIT | HM_MEM_WRITE_WATCH,
                                        HM_PAGE_READWRITE, &ww));
    for (int i = 0; i < 16; i += 5) ((char *)ww)[i * 4096 + 8] = 1;

    uintptr_t bases[] = {(uintptr_t)heap, (uintptr_t)code, (uintptr_t)small, (uintptr_t)wc, (uintptr_t)top, (uintptr_t)ww};
    size_t n = sizeof bases / sizeof bases[0];
    qsort(bases, n, sizeof bases[0], cmp_ptr);
    printf("hostmem map: a demonstration layout, region by region as VirtualQuery reports it\n");
    printf("  %14s  %10s  %-7s  %-20s  %14s  %s\n", "base", "size(hex)", "state", "protect", "alloc base",
           "alloc protect");
    for (size_t i = 0; i < n; i++) {
        uintptr_t at = bases[i];
        hm_region r;
        for (;;) { /* the allocation's regions, then the free gap after it, if any */
            TRY("query", hm_virtual_query(NULL, (void *)at, &r));
            if (r.allocation_base && (uintptr_t)r.allocation_base != bases[i]) break;
            print_region(&r);
            at += r.size;
            if (r.state == HM_MEM_FREE) break;
        }
    }
    void *written[16];
    uintptr_t count = 16;
    uint32_t gran;
    TRY("GetWriteWatch", hm_get_write_watch(NULL, HM_WRITE_WATCH_FLAG_RESET, ww, 64 << 10, written, &count, &gran));
    printf("write watch (%s mechanism): %lu pages of the %p allocation written:", hm_write_watch_mechanism(),
           (unsigned long)count, ww);
    for (uintptr_t i = 0; i < count; i++) printf(" +%#lx", (unsigned long)((char *)written[i] - (char *)ww));
    count = 16;
    TRY("GetWriteWatch", hm_get_write_watch(NULL, 0, ww, 64 << 10, written, &count, &gran));
    printf("; after the reset: %lu\n", (unsigned long)count);
    printf("guard pages fired: %lu\n", (unsigned long)hm_guard_violations());
    hm_vm_stats s;
    hm_vm_get_stats(&s);
    printf("%zu allocations, %zu page runs, %zu KiB reserved, %zu KiB committed, %zu bytes of map records\n",
           s.allocations, s.runs, s.reserved_bytes >> 10, s.committed_bytes >> 10, s.metadata_bytes);
    for (size_t i = 0; i < n; i++) TRY("release", hm_release(NULL, (void *)bases[i]));
    return 0;
}

static int cmd_info(void)
{
    hm_system_info si;
    hm_get_system_info(&si);
    printf("page size               %u\n", si.page_size);
    printf("allocation granularity  %u\n", si.allocation_granularity);
    printf("address range           %#lx - %#lx\n", (unsigned long)si.min_address, (unsigned long)si.max_address);
    printf("processors              %u\n", si.processors);
    printf("large page minimum      %zu\n", si.large_page_minimum);
    printf("write watch             %s (%s)\n", hm_write_watch_mechanism(), hm_write_watch_describe());
    return 0;
}

static void usage(FILE *f)
{
    fprintf(f, "usage: hostmem <command>\n"
               "  simulate [-o OPTIONS] [--seconds N] [--svg FILE]\n"
               "         workloads at three critical levels share one manager under a tight limit;\n"
               "         prints a report and writes the charge timeline as SVG (default hostmem-simulate.svg)\n"
               "         OPTIONS: key=value,... as in HOSTMEM_OPTIONS (limit, reserve.appdomain, ...)\n"
               "  map    reserve, commit and protect a demonstration layout and print its region map\n"
               "  info   show the system as hostmem sees it\n"
               "  run [-o OPTIONS] [--report FILE] [--report-format text|json] -- PROGRAM [ARGS...]\n"
               "         run PROGRAM with hostmem as its malloc under OPTIONS; a report at its exit\n"
               "  host lua|sqlite|python [-o OPTIONS] [--report FILE] [--plot FILE.svg] [--db FILE] SCRIPT [ARGS...]\n"
               "         run a script on a Lua, SQLite or CPython runtime hosted by hostmem under OPTIONS; a report at the end\n");
}

static int cmd_simulate(int argc, char **argv)
{
    const char *options = NULL, *svg = "hostmem-simulate.svg";
    double seconds = 4.0;
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        if ((!strcmp(a, "-o") || !strcmp(a, "--options")) && i + 1 < argc) options = argv[++i];
        else if (!strcmp(a, "--svg") && i + 1 < argc) svg = argv[++i];
        else if (!strcmp(a, "--seconds") && i + 1 < argc) {
            char *end;
            seconds = strtod(argv[++i], &end);
            if (*end || seconds <= 0 || seconds > 3600) {
                fprintf(stderr, "hostmem simulate: --seconds wants a number of seconds from 0 to 3600, not '%s'\n",
                        argv[i]);
                return 2;
            }
        } else {
            fprintf(stderr, "hostmem simulate: unknown argument '%s'\n", a);
            usage(stderr);
            return 2;
        }
    }
    return hm_simulate(options, seconds, svg);
}

int main(int argc, char **argv)
{
    hm_status st = hm_init();
    if (HM_FAILED(st)) return fail("start", st);
    const char *cmd = argc > 1 ? argv[1] : "simulate";
    if (!strcmp(cmd, "simulate")) return cmd_simulate(argc, argv);
    if (!strcmp(cmd, "map")) return cmd_map();
    if (!strcmp(cmd, "info")) return cmd_info();
    if (!strcmp(cmd, "run")) return hm_run(argc, argv);
    if (!strcmp(cmd, "host")) return hm_host(argc, argv);
    if (!strcmp(cmd, "help") || !strcmp(cmd, "--help") || !strcmp(cmd, "-h")) {
        usage(stdout);
        return 0;
    }
    fprintf(stderr, "hostmem: unknown command '%s'\n", cmd);
    usage(stderr);
    return 2;
}
