/* plot.h — `hostmem run --plot` (plot.c). */
#ifndef HM_TOOLS_PLOT_H
#define HM_TOOLS_PLOT_H

/* Draws the timeline file (src/preload/timeline.c) as SVG at svg; the title reads "hostmem <title>". 0 on
 * success, -1 if the timeline cannot be read or the picture written. */
int hm_plot_write(const char *timeline, const char *svg, const char *title);

#endif
