/* svg.c — the timeline picture of `hostmem simulate`: the charge of each level's workload stacked
 * over time, the limit and the task and appdomain thresholds as lines, and the memory state as a band
 * along the bottom. Plain SVG 1.1, no scripts, readable in any browser. */
#include <stdio.h>

#include "simulate.h"
#include "svg.h"

#define W 960.0
#define H 480.0
#define L 70.0   /* left margin */
#define R 190.0  /* right margin, for the labels and the legend */
#define T 40.0
#define B 60.0

int hm_simulate_svg(const char *path, const hm_sim_sample *s, size_t n, const hm_manager_stats *ms)
{
    FILE *f = fopen(path, "w");
    if (!f) return -1;
    double tmax = n ? s[n - 1].t : 1.0, ymax = (double)ms->limit / 1024.0 * 1.08; /* KiB */
    if (tmax <= 0) tmax = 1;
    double pw = W - L - R, ph = H - T - B;
#define X(t) (L + (t) / tmax * pw)
#define Y(kib) (T + ph - (kib) / ymax * ph)
    fprintf(f, "<svg xmlns='http://www.w3.org/2000/svg' width='%.0f' height='%.0f' font-family='sans-serif' "
               "font-size='12'>\n<rect width='100%%' height='100%%' fill='white'/>\n", W, H);
    fprintf(f, "<text x='%.0f' y='22' font-size='15'>hostmem simulate: charge by critical level against the "
               "limit</text>\n", L);
    static const char *fill[3] = {"#f4a259", "#5b8e7d", "#8cb369"}; /* task, appdomain, process */
    static const char *name[3] = {"task (bursty)", "appdomain (gc)", "process (steady)"};
    /* stacked areas: process at the bottom, then appdomain, then task */
    static const int order[3] = {2, 1, 0};
    for (int k = 0; k < 3; k++) {
        fprintf(f, "<path fill='%s' fill-opacity='0.85' d='M%.1f %.1f", fill[order[k]], X(0.0), Y(0.0));
        for (size_t i = 0; i < n; i++) {
            double top = 0;
            for (int j = 0; j <= k; j++) top += s[i].held[order[j]];
            fprintf(f, " L%.1f %.1f", X(s[i].t), Y(top));
        }
        for (size_t i = n; i-- > 0;) {
            double bottom = 0;
            for (int j = 0; j < k; j++) bottom += s[i].held[order[j]];
            fprintf(f, " L%.1f %.1f", X(s[i].t), Y(bottom));
        }
        fprintf(f, " Z'/>\n");
    }
    /* the manager's own charge, as a line (equals the sum of the areas, up to sampling) */
    fprintf(f, "<polyline fill='none' stroke='black' stroke-width='1' points='");
    for (size_t i = 0; i < n; i++) fprintf(f, "%.1f,%.1f ", X(s[i].t), Y((double)s[i].charge));
    fprintf(f, "'/>\n");
    /* limit and thresholds */
    double lim = (double)ms->limit / 1024, app = (double)(ms->limit - ms->reserve_process) / 1024,
           task = (double)(ms->limit - ms->reserve_process - ms->reserve_appdomain) / 1024;
    struct { double y; const char *label, *color; } lines[3] = {
        {lim, "limit (process)", "#c0392b"}, {app, "appdomain threshold", "#8e44ad"}, {task, "task threshold", "#2c3e50"}};
    for (int i = 0; i < 3; i++)
        fprintf(f, "<line x1='%.1f' x2='%.1f' y1='%.1f' y2='%.1f' stroke='%s' stroke-dasharray='6 4'/>"
                   "<text x='%.1f' y='%.1f' fill='%s'>%s %.0f MiB</text>\n",
                L, L + pw, Y(lines[i].y), Y(lines[i].y), lines[i].color, L + pw + 6, Y(lines[i].y) + 4,
                lines[i].color, lines[i].label, lines[i].y / 1024);
    for (size_t i = 0; i + 1 < n; i++) hm_svg_state_rect(f, X(s[i].t), X(s[i + 1].t), T + ph + 22, s[i].state);
    hm_svg_state_legend(f, L, T + ph + 46);
    hm_svg_axes(f, L, T, pw, ph);
    for (int i = 0; i <= 4; i++) {
        double v = ymax / 1.08 * i / 4;
        fprintf(f, "<text x='%.1f' y='%.1f' text-anchor='end'>%.0f MiB</text>\n", L - 6, Y(v) + 4, v / 1024);
    }
    for (int i = 0; i <= 5; i++)
        fprintf(f, "<text x='%.1f' y='%.1f' text-anchor='middle'>%.1f s</text>\n", X(tmax * i / 5), T + ph + 16,
                tmax * i / 5);
    for (int i = 0; i < 3; i++)
        fprintf(f, "<rect x='%.1f' y='%.1f' width='12' height='12' fill='%s'/><text x='%.1f' y='%.1f'>%s</text>\n",
                L + pw + 6, T + ph - 70 + i * 18.0, fill[i], L + pw + 22, T + ph - 60 + i * 18.0, name[i]);
    fprintf(f, "</svg>\n");
    return fclose(f) == 0 ? 0 : -1;
}

void hm_svg_state_rect(FILE *f, double x0, double x1, double y, int state)
{
    const char *c = state == HM_MEMORY_LOW ? "#e74c3c" : state == HM_MEMORY_NEUTRAL ? "#f1c40f" : "#2ecc71";
    fprintf(f, "<rect x='%.1f' y='%.1f' width='%.2f' height='8' fill='%s'/>\n", x0, y, x1 - x0 + 0.3, c);
}

void hm_svg_state_legend(FILE *f, double x, double y)
{
    fprintf(f, "<text x='%.1f' y='%.1f'>memory state: green High, yellow Neutral, red Low</text>\n", x, y);
}

void hm_svg_axes(FILE *f, double l, double t, double pw, double ph)
{
    fprintf(f, "<line x1='%.1f' x2='%.1f' y1='%.1f' y2='%.1f' stroke='black'/>\n", l, l + pw, t + ph, t + ph);
    fprintf(f, "<line x1='%.1f' x2='%.1f' y1='%.1f' y2='%.1f' stroke='black'/>\n", l, l, t, t + ph);
}
