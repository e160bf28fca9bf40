/* simulate.h — the `hostmem simulate` run (simulate.c) and its SVG timeline (svg.c). */
#ifndef HM_TOOLS_SIMULATE_H
#define HM_TOOLS_SIMULATE_H

#include <stddef.h>
#include <stdint.h>

#include <hostmem/hostmem.h>

typedef struct hm_sim_sample {
    float t;            /* seconds since the start */
    uint32_t held[3];   /* KiB committed by the workload of each level (task, appdomain, process) */
    uint32_t charge;    /* KiB charged to the manager */
    uint8_t state;      /* hm_memory_state */
} hm_sim_sample;

/* Runs the simulation; options are applied over the built-in ones. 0 on success. */
int hm_simulate(const char *options, double seconds, const char *svg_path);
/* Writes the timeline: charge by level, stacked, against the limit and the levels' thresholds. */
int hm_simulate_svg(const char *path, const hm_sim_sample *s, size_t n, const hm_manager_stats *ms);

#endif
