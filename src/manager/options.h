/* options.h — the manager's options (SPEC 3.7): one syntax everywhere (the API string, the
 * HOSTMEM_OPTIONS environment variable, the command line's -o): key=value[,key=value]...
 *
 * Sizes: an integer with an optional binary suffix K, M, G or T (any case; KB and KiB too), or N% of
 * the physical memory (or of the cgroup's limit where that is lower). Durations: milliseconds, or an
 * integer with ms or s. Percentages (notify.*): 0 to 100, with or without %. Switches (heap.guard):
 * on/off, true/false, yes/no, 1/0.
 * A value left out of every string keeps its default; where a key appears twice, the later one wins. */
#ifndef HM_OPTIONS_H
#define HM_OPTIONS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <hostmem/hostmem.h>

/* A size as written: bytes, or a percentage resolved against memory once the roots are known. */
typedef struct hm_size_opt {
    uint64_t bytes;
    uint32_t pct;   /* with is_pct: percent of the physical (or cgroup) memory */
    bool is_pct;
} hm_size_opt;

typedef struct hm_options {
    hm_size_opt limit_opt, ra_opt, rp_opt, va_opt; /* as written */
    uint64_t limit;             /* L, bytes (after hm_options_resolve) */
    uint64_t reserve_appdomain; /* Ra, bytes */
    uint64_t reserve_process;   /* Rp, bytes */
    uint32_t wait_ms[3];        /* per level: how long an unadmitted request may wait */
    uint32_t notify_low;        /* percent: High at or below */
    uint32_t notify_high;       /* percent: Low at or above */
    uint64_t va_limit;          /* bytes of address space; UINT64_MAX = unlimited */
    uint32_t win32_level;       /* level of the Win32 names' requests */
    bool heap_guard;            /* heap.guard: a never-committed guard page closes every heap segment */
    char cgroup_root[128];      /* where cgroup files are read (tests point it at fixtures) */
    char proc_root[128];        /* where /proc files are read */
    uint32_t psi_some, psi_full; /* psi.some, psi.full: memory-stall shares (percent of the last 10 s)
                                    at which the system's load reaches notify.high; 0 ignores that line */
    bool limit_set, va_limit_set; /* written by a string, not left to the system */
    /* Read by the drop-in malloc (src/preload/) only; a manager ignores them. */
    uint32_t malloc_level;      /* malloc.level: the level of the program's requests */
    bool malloc_ignore_invalid; /* malloc.invalid_free=ignore (default abort) */
    hm_size_opt unwind_opt;     /* malloc.unwind as written */
    uint64_t malloc_unwind;     /* bytes kept below each level's threshold for unwinding (resolved) */
    bool unwind_set;
    uint32_t unwind_ms;         /* malloc.unwind_time: how long after a refusal a thread may use them */
    uint32_t malloc_sites;      /* malloc.sites: frames of the allocating stack kept per block (0: off) */
    bool malloc_mmap;           /* malloc.mmap: the program's own anonymous mappings are charged (on) */
    bool stats;                 /* stats: print the report at exit */
    bool report_json;           /* report.format=json */
    char report[256];           /* report: where the report goes (a path; empty: stderr) */
} hm_options;

/* The defaults, before any string is applied. */
void hm_options_defaults(hm_options *o);
/* Applies one option string to o. On error, HM_E_INVALIDARG with a message naming the key in err
 * (o may be partly changed: callers parse into a copy). */
hm_status hm_options_apply(hm_options *o, const char *s, char *err, size_t errlen);
/* Fills what the strings left to the system (limit, va.limit) and checks the combination
 * (Ra + Rp < L, notify.low < notify.high). */
hm_status hm_options_resolve(hm_options *o, char *err, size_t errlen);
/* The same for a nested manager: N% and the default limit are of `parent_limit`. */
hm_status hm_options_resolve_within(hm_options *o, uint64_t parent_limit, char *err, size_t errlen);
/* Physical memory and the cgroup's limit (0 if none) as read under o's roots. */
uint64_t hm_options_physical(const hm_options *o);
uint64_t hm_options_cgroup_limit(const hm_options *o);
/* The process's memory cgroup with the lowest limit (v2 memory.max / memory.current, v1
 * memory.limit_in_bytes / memory.usage_in_bytes): its limit and usage; false if it has none. */
bool hm_options_cgroup(const hm_options *o, uint64_t *limit, uint64_t *usage);
/* Memory-pressure stall information (PSI): the `avg10` of the "some" and "full" lines, in hundredths
 * of a percent, the worse of the process's v2 cgroup's memory.pressure and <proc.root>/pressure/memory
 * where they can be read; false if neither can. */
bool hm_options_psi(const hm_options *o, uint32_t *some, uint32_t *full);

#endif
