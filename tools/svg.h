/* svg.h — the pieces both timelines draw (svg.c): `hostmem simulate`'s and `hostmem run --plot`'s. */
#ifndef HM_TOOLS_SVG_H
#define HM_TOOLS_SVG_H

#include <stdio.h>

/* One stretch of the memory-state band (hm_memory_state colours: red Low, yellow Neutral, green High)
 * from x0 to x1, 8 high at y. */
void hm_svg_state_rect(FILE *f, double x0, double x1, double y, int state);
/* The band's legend at (x, y). */
void hm_svg_state_legend(FILE *f, double x, double y);
/* The two axis lines of a plot area whose top left is (l, t). */
void hm_svg_axes(FILE *f, double l, double t, double pw, double ph);

#endif
