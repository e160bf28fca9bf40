/* plot.c — `hostmem run --plot FILE.svg`: the program's charge over its run against the limit and the
 * levels' thresholds, refusals marked by level, the memory state along the bottom; from the timeline
 * the drop-in sampled (src/preload/timeline.c). Plain SVG 1.1, no scripts.
 *
 * The program's requests are charged to one account, so the charge is one line; what the levels
 * change is where each request is refused, which the threshold lines and the refusal marks show. */
#define _GNU_SOURCE
#include "plot.h"
#include "svg.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hostmem/hostmem.h>

#define W 960.0
#define H 480.0
#define L 70.0
#define R 200.0
#define T 40.0
#define B 60.0

typedef struct pt {
    double t, charge;
    unsigned long long refused[3];
    int state;
} pt;

int hm_plot_write(const char *timeline, const char *svg, const char *title)
{
    FILE *in = fopen(timeline, "r");
    if (!in) return -1;
    unsigned long long lim = 0, ra = 0, rp = 0, unwind = 0;
    if (fscanf(in, "limit %llu reserve_appdomain %llu reserve_process %llu unwind %llu\n", &lim, &ra, &rp, &unwind) != 4 ||
        !lim) {
        fclose(in);
        return -1;
    }
    pt *p = NULL;
    size_t n = 0, cap = 0;
    unsigned long long t, c, r0, r1, r2;
    int st;
    while (fscanf(in, "%llu %llu %llu %llu %llu %d\n", &t, &c, &r0, &r1, &r2, &st) == 6) {
        if (n == cap) {
            cap = cap ? cap * 2 : 1024;
            pt *q = realloc(p, cap * sizeof *p);
            if (!q) break;
            p = q;
        }
        p[n++] = (pt){(double)t / 1e6, (double)c, {r0, r1, r2}, st};
    }
    fclose(in);
    FILE *f = fopen(svg, "w");
    if (!f) {
        free(p);
        return -1;
    }
    double tmax = n ? p[n - 1].t : 1.0, ymax = (double)lim * 1.08, mib = 1024.0 * 1024.0;
    if (tmax <= 0) tmax = 1e-3;
    double pw = W - L - R, ph = H - T - B;
#define X(v) (L + (v) / tmax * pw)
#define Y(v) (T + ph - (v) / ymax * ph)
    fprintf(f, "<svg xmlns='http://www.w3.org/2000/svg' width='%.0f' height='%.0f' font-family='sans-serif' "
               "font-size='12'>\n<rect width='100%%' height='100%%' fill='white'/>\n", W, H);
    fprintf(f, "<text x='%.0f' y='22' font-size='15'>hostmem ", L);
    for (const char *s = title; *s; s++) { /* (escaped for XML) */
        if (*s == '<') fputs("&lt;", f);
        else if (*s == '>') fputs("&gt;", f);
        else if (*s == '&') fputs("&amp;", f);
        else if (*s == '\'') fputs("&apos;", f);
        else fputc(*s, f);
    }
    fprintf(f, " — charge against the limit (%zu samples)</text>\n", n);
    /* the charge, as an area */
    fprintf(f, "<path fill='#5b8e7d' fill-opacity='0.6' stroke='#2f5d50' d='M%.1f %.1f", X(0.0), Y(0.0));
    for (size_t i = 0; i < n; i++) fprintf(f, " L%.1f %.1f", X(p[i].t), Y(p[i].charge));
    fprintf(f, " L%.1f %.1f Z'/>\n", X(n ? p[n - 1].t : 0.0), Y(0.0));
    /* the thresholds: a request of a level is refused above its line (less the unwinding room) */
    struct { double y; const char *label, *color; } lines[3] = {
        {(double)lim, "limit: process", "#c0392b"},
        {(double)(lim - rp), "appdomain threshold", "#8e44ad"},
        {(double)(lim - rp - ra), "task threshold", "#2c3e50"}};
    for (int i = 0; i < 3; i++) {
        if (i && lines[i].y == lines[i - 1].y) continue;
        fprintf(f, "<line x1='%.1f' x2='%.1f' y1='%.1f' y2='%.1f' stroke='%s' stroke-dasharray='6 4'/>"
                   "<text x='%.1f' y='%.1f' fill='%s'>%s %.1f MiB</text>\n",
                L, L + pw, Y(lines[i].y), Y(lines[i].y), lines[i].color, L + pw + 6, Y(lines[i].y) + 4, lines[i].color,
                lines[i].label, lines[i].y / mib);
    }
    if (unwind)
        fprintf(f, "<line x1='%.1f' x2='%.1f' y1='%.1f' y2='%.1f' stroke='#c0392b' stroke-opacity='0.4'/>"
                   "<text x='%.1f' y='%.1f' fill='#c0392b' fill-opacity='0.7'>room to unwind %.1f MiB</text>\n",
                L, L + pw, Y((double)(lim - unwind)), Y((double)(lim - unwind)), L + pw + 6, Y((double)(lim - unwind)) + 16,
                (double)unwind / mib);
    /* refusals: a mark at each sample whose count grew, by level */
    static const char *color[3] = {"#f39c12", "#8e44ad", "#c0392b"};
    static const char *name[3] = {"task", "appdomain", "process"};
    unsigned long long total[3] = {0, 0, 0};
    for (size_t i = 0; i < n; i++)
        for (int l = 0; l < 3; l++) {
            unsigned long long before = i ? p[i - 1].refused[l] : 0;
            if (p[i].refused[l] > before) {
                fprintf(f, "<path d='M%.1f %.1f l-5 -9 h10 Z' fill='%s'><title>%llu %s refusal(s) at %.3f s</title></path>\n",
                        X(p[i].t), Y(p[i].charge) - 2, color[l], p[i].refused[l] - before, name[l], p[i].t);
                total[l] += p[i].refused[l] - before;
            }
        }
    for (size_t i = 0; i + 1 < n; i++) hm_svg_state_rect(f, X(p[i].t), X(p[i + 1].t), T + ph + 22, p[i].state);
    hm_svg_state_legend(f, L, T + ph + 46);
    hm_svg_axes(f, L, T, pw, ph);
    for (int i = 0; i <= 4; i++) {
        double v = (double)lim * i / 4;
        fprintf(f, "<text x='%.1f' y='%.1f' text-anchor='end'>%.1f MiB</text>\n", L - 6, Y(v) + 4, v / mib);
    }
    for (int i = 0; i <= 5; i++)
        fprintf(f, "<text x='%.1f' y='%.1f' text-anchor='middle'>%.3g s</text>\n", X(tmax * i / 5), T + ph + 16, tmax * i / 5);
    for (int l = 0; l < 3; l++)
        fprintf(f, "<path d='M%.1f %.1f l-5 -9 h10 Z' fill='%s'/><text x='%.1f' y='%.1f'>%s refusals: %llu</text>\n",
                L + pw + 12, T + ph - 50 + l * 18.0, color[l], L + pw + 22, T + ph - 54 + l * 18.0, name[l], total[l]);
    fprintf(f, "</svg>\n");
    free(p);
    return fclose(f) == 0 ? 0 : -1;
}
