/* plot.c: line plots as PNGs (training curves): axes, "nice" ticks, a built-in 5x7 bitmap
 * font, a legend, and a y range that stops at robust fences so that one far-off value does
 * not flatten the rest. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "glow.h"

/* ---------------------------------------------------------------- plots ------------ */

/* A 5x7 font: 7 rows per glyph, bit 4 the leftmost pixel. Characters 32..95 (digits,
 * upper-case letters, punctuation); lower case prints as upper case, others as blank. */
static const uint8_t font5x7[64][7] = {
    ['!' - 32] = {4, 4, 4, 4, 4, 0, 4},
    ['#' - 32] = {10, 10, 31, 10, 31, 10, 10},
    ['%' - 32] = {24, 25, 2, 4, 8, 19, 3},
    ['\'' - 32] = {4, 4, 8, 0, 0, 0, 0},
    ['(' - 32] = {2, 4, 8, 8, 8, 4, 2},
    [')' - 32] = {8, 4, 2, 2, 2, 4, 8},
    ['*' - 32] = {0, 4, 21, 14, 21, 4, 0},
    ['+' - 32] = {0, 4, 4, 31, 4, 4, 0},
    [',' - 32] = {0, 0, 0, 0, 12, 4, 8},
    ['-' - 32] = {0, 0, 0, 31, 0, 0, 0},
    ['.' - 32] = {0, 0, 0, 0, 0, 12, 12},
    ['/' - 32] = {0, 1, 2, 4, 8, 16, 0},
    ['0' - 32] = {14, 17, 19, 21, 25, 17, 14},
    ['1' - 32] = {4, 12, 4, 4, 4, 4, 14},
    ['2' - 32] = {14, 17, 1, 2, 4, 8, 31},
    ['3' - 32] = {31, 2, 4, 2, 1, 17, 14},
    ['4' - 32] = {2, 6, 10, 18, 31, 2, 2},
    ['5' - 32] = {31, 16, 30, 1, 1, 17, 14},
    ['6' - 32] = {6, 8, 16, 30, 17, 17, 14},
    ['7' - 32] = {31, 1, 2, 4, 8, 8, 8},
    ['8' - 32] = {14, 17, 17, 14, 17, 17, 14},
    ['9' - 32] = {14, 17, 17, 15, 1, 2, 12},
    [':' - 32] = {0, 12, 12, 0, 12, 12, 0},
    ['<' - 32] = {2, 4, 8, 16, 8, 4, 2},
    ['=' - 32] = {0, 0, 31, 0, 31, 0, 0},
    ['>' - 32] = {8, 4, 2, 1, 2, 4, 8},
    ['?' - 32] = {14, 17, 1, 2, 4, 0, 4},
    ['A' - 32] = {14, 17, 17, 31, 17, 17, 17},
    ['B' - 32] = {30, 17, 17, 30, 17, 17, 30},
    ['C' - 32] = {14, 17, 16, 16, 16, 17, 14},
    ['D' - 32] = {28, 18, 17, 17, 17, 18, 28},
    ['E' - 32] = {31, 16, 16, 30, 16, 16, 31},
    ['F' - 32] = {31, 16, 16, 30, 16, 16, 16},
    ['G' - 32] = {14, 17, 16, 23, 17, 17, 15},
    ['H' - 32] = {17, 17, 17, 31, 17, 17, 17},
    ['I' - 32] = {14, 4, 4, 4, 4, 4, 14},
    ['J' - 32] = {7, 2, 2, 2, 2, 18, 12},
    ['K' - 32] = {17, 18, 20, 24, 20, 18, 17},
    ['L' - 32] = {16, 16, 16, 16, 16, 16, 31},
    ['M' - 32] = {17, 27, 21, 21, 17, 17, 17},
    ['N' - 32] = {17, 17, 25, 21, 19, 17, 17},
    ['O' - 32] = {14, 17, 17, 17, 17, 17, 14},
    ['P' - 32] = {30, 17, 17, 30, 16, 16, 16},
    ['Q' - 32] = {14, 17, 17, 17, 21, 18, 13},
    ['R' - 32] = {30, 17, 17, 30, 20, 18, 17},
    ['S' - 32] = {15, 16, 16, 14, 1, 1, 30},
    ['T' - 32] = {31, 4, 4, 4, 4, 4, 4},
    ['U' - 32] = {17, 17, 17, 17, 17, 17, 14},
    ['V' - 32] = {17, 17, 17, 17, 17, 10, 4},
    ['W' - 32] = {17, 17, 17, 21, 21, 21, 10},
    ['X' - 32] = {17, 17, 10, 4, 10, 17, 17},
    ['Y' - 32] = {17, 17, 17, 10, 4, 4, 4},
    ['Z' - 32] = {31, 1, 2, 4, 8, 16, 31},
    ['[' - 32] = {14, 8, 8, 8, 8, 8, 14},
    [']' - 32] = {14, 2, 2, 2, 2, 2, 14},
    ['_' - 32] = {0, 0, 0, 0, 0, 0, 31},
};

typedef struct {
    uint8_t *rgb; /* (h,w,3) */
    int h, w;
} canvas;

static void put(canvas *cv, int x, int y, const uint8_t col[3]) {
    if (x >= 0 && y >= 0 && x < cv->w && y < cv->h) memcpy(cv->rgb + ((size_t)y * cv->w + x) * 3, col, 3);
}
static void fill(canvas *cv, int x0, int y0, int x1, int y1, const uint8_t col[3]) {
    for (int y = y0; y <= y1; y++)
        for (int x = x0; x <= x1; x++) put(cv, x, y, col);
}
/* Each glyph cell is 6*scale wide (a blank column between letters), 7*scale high. */
static int text_width(const char *s, int scale) { return (int)strlen(s) * 6 * scale - scale; }
static void text(canvas *cv, int x, int y, const char *s, int scale, const uint8_t col[3]) {
    for (; *s; s++, x += 6 * scale) {
        int ch = (unsigned char)*s;
        if (ch >= 'a' && ch <= 'z') ch -= 'a' - 'A';
        if (ch < 32 || ch > 95) continue;
        for (int r = 0; r < 7; r++)
            for (int b = 0; b < 5; b++)
                if (font5x7[ch - 32][r] & (16 >> b))
                    fill(cv, x + b * scale, y + r * scale, x + b * scale + scale - 1,
                         y + r * scale + scale - 1, col);
    }
}
/* Pixels of the series (not background, grid, axes or text) in a box: where a legend would
 * hide the data. */
static long ink(const canvas *cv, int x0, int y0, int x1, int y1) {
    long n = 0;
    for (int y = y0 < 0 ? 0 : y0; y <= y1 && y < cv->h; y++)
        for (int x = x0 < 0 ? 0 : x0; x <= x1 && x < cv->w; x++) {
            const uint8_t *p = cv->rgb + ((size_t)y * cv->w + x) * 3;
            n += !(p[0] == p[1] && p[1] == p[2]); /* the series' colours are not grey */
        }
    return n;
}
/* A 2-pixel-wide line from (x0,y0) to (x1,y1), stepping along the longer axis. */
static void line(canvas *cv, double x0, double y0, double x1, double y1, const uint8_t col[3]) {
    double dx = x1 - x0, dy = y1 - y0;
    int steps = (int)ceil(fmax(fabs(dx), fabs(dy)));
    if (steps < 1) steps = 1;
    for (int i = 0; i <= steps; i++) {
        int x = (int)lround(x0 + dx * i / steps), y = (int)lround(y0 + dy * i / steps);
        fill(cv, x, y, x + 1, y + 1, col);
    }
}

/* Ticks at multiples of a 1-2-5 step covering [lo, hi] with about `want` intervals;
 * widens [lo, hi] to whole steps. */
static double nice_step(double *lo, double *hi, int want) {
    double raw = (*hi - *lo) / want, mag = pow(10, floor(log10(raw))), f = raw / mag;
    double step = (f < 1.5 ? 1 : f < 3.5 ? 2 : f < 7.5 ? 5 : 10) * mag;
    *lo = floor(*lo / step + 1e-9) * step;
    *hi = ceil(*hi / step - 1e-9) * step;
    return step;
}
static void tick_label(char *buf, size_t n, double v, double step) {
    int dec = step >= 1 ? 0 : (int)ceil(-log10(step) - 1e-9);
    if (fabs(v) < step * 1e-6) v = 0;
    if (fabs(v) >= 1e6 || dec > 6) snprintf(buf, n, "%.3g", v);
    else snprintf(buf, n, "%.*f", dec, v);
}

static void finite_range(const double *v, int n, double *lo, double *hi) {
    for (int i = 0; i < n; i++)
        if (isfinite(v[i])) *lo = fmin(*lo, v[i]), *hi = fmax(*hi, v[i]);
}

static int compare_doubles(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Outliers must not flatten the rest of a plot (one loss spike of 10^5 over a curve near 4
 * would): the y range stops at the fences Q1 - FENCE * IQR and Q3 + FENCE * IQR of all the
 * finite values, quartiles by nearest rank. Points beyond are drawn at the edge and marked. */
#define FENCE 10.0
static int robust_range(const double *const *ys, int n_series, int n, double *lo, double *hi) {
    double *v = malloc(sizeof(double) * ((size_t)n_series * n + 1));
    if (!v) return GLOW_ENOMEM;
    size_t k = 0;
    for (int s = 0; s < n_series; s++)
        for (int i = 0; i < n; i++)
            if (isfinite(ys[s][i])) v[k++] = ys[s][i];
    if (k >= 4) {
        qsort(v, k, sizeof *v, compare_doubles);
        double q1 = v[(k - 1) / 4], q3 = v[3 * (k - 1) / 4], iqr = q3 - q1;
        *lo = fmax(*lo, q1 - FENCE * iqr);
        *hi = fmin(*hi, q3 + FENCE * iqr);
    }
    free(v);
    return GLOW_OK;
}

int glow_plot_write(const char *path, const char *title, const double *x,
                    const double *const *ys, const char *const *labels, int n_series,
                    int n_points, int width, int height) {
    static const uint8_t black[3] = {0, 0, 0}, grey[3] = {225, 225, 225},
                         mid[3] = {140, 140, 140}, white[3] = {255, 255, 255};
    static const uint8_t colours[8][3] = {{31, 119, 180}, {255, 127, 14}, {44, 160, 44},
                                          {214, 39, 40},  {148, 103, 189}, {140, 86, 75},
                                          {227, 119, 194}, {127, 127, 127}};
    if (width < 160 || height < 120 || width > 8192 || height > 8192 || n_series < 0 ||
        n_points < 0 || (n_series > 0 && !ys))
        return glow_fail(GLOW_EINVAL, "%s: bad plot (%dx%d, %d series of %d points)", path,
                         width, height, n_series, n_points);
    canvas cv = {malloc((size_t)width * height * 3), height, width};
    if (!cv.rgb) return glow_fail(GLOW_ENOMEM, "%s: out of memory", path);
    memset(cv.rgb, 255, (size_t)width * height * 3);
    int ts = width >= 800 ? 2 : 1; /* tick and legend text scale */
    int hs = width >= 400 ? ts + 1 : 1; /* title scale, smaller until the title fits */
    while (hs > 1 && title && text_width(title, hs) > width - 8) hs--;

    double xlo = INFINITY, xhi = -INFINITY, ylo = INFINITY, yhi = -INFINITY;
    if (x) finite_range(x, n_points, &xlo, &xhi);
    else if (n_points > 0) xlo = 0, xhi = n_points - 1;
    for (int s = 0; s < n_series; s++) finite_range(ys[s], n_points, &ylo, &yhi);
    if (robust_range(ys, n_series, n_points, &ylo, &yhi) != GLOW_OK) {
        free(cv.rgb);
        return glow_fail(GLOW_ENOMEM, "%s: out of memory", path);
    }
    double clip_lo = ylo, clip_hi = yhi; /* values beyond are clipped to these */
    if (!(xlo <= xhi)) xlo = 0, xhi = 1;
    if (!(ylo <= yhi)) ylo = 0, yhi = 1;
    if (xhi - xlo < 1e-12 * fmax(1, fabs(xhi))) xlo -= 0.5, xhi += 0.5;
    if (yhi - ylo < 1e-12 * fmax(1, fabs(yhi))) ylo -= 0.5, yhi += 0.5;
    double ystep = nice_step(&ylo, &yhi, height / 80 + 2);

    /* Margins from the widest y tick label. */
    char buf[64];
    int label_w = 0;
    for (double v = ylo; v <= yhi + ystep * 0.5; v += ystep) {
        tick_label(buf, sizeof buf, v, ystep);
        label_w = label_w > text_width(buf, ts) ? label_w : text_width(buf, ts);
    }
    int left = label_w + 10 * ts + 6, right = width - 1 - 12 * ts - 8;
    int top = (title && *title ? 7 * hs + 14 : 10), bottom = height - 1 - (7 * ts + 14);
    if (right - left < 40 || bottom - top < 40) {
        free(cv.rgb);
        return glow_fail(GLOW_EINVAL, "%s: plot %dx%d is too small for its labels", path, width,
                         height);
    }
    /* As many x ticks as fit with their labels a few characters apart. */
    double xstep = 1, x0 = xlo, x1 = xhi;
    for (int want = width / 100 + 2; want >= 1; want--) {
        xlo = x0, xhi = x1;
        xstep = nice_step(&xlo, &xhi, want);
        int widest = 0;
        for (double v = xlo; v <= xhi + xstep * 0.5; v += xstep) {
            tick_label(buf, sizeof buf, v, xstep);
            widest = widest > text_width(buf, ts) ? widest : text_width(buf, ts);
        }
        if (widest + 18 * ts < (right - left) * xstep / (xhi - xlo)) break;
    }
    double px_per_x = (right - left) / (xhi - xlo), px_per_y = (bottom - top) / (yhi - ylo);
#define PX(v) (left + ((v) - xlo) * px_per_x)
#define PY(v) (bottom - ((v) - ylo) * px_per_y)

    for (double v = xlo; v <= xhi + xstep * 0.5; v += xstep) {
        int px = (int)lround(PX(v));
        fill(&cv, px, top, px, bottom, grey);
        fill(&cv, px, bottom, px, bottom + 4, black);
        tick_label(buf, sizeof buf, v, xstep);
        int tw = text_width(buf, ts), tx = px - tw / 2;
        if (tx + tw > width - 2) tx = width - 2 - tw;
        text(&cv, tx, bottom + 7, buf, ts, black);
    }
    for (double v = ylo; v <= yhi + ystep * 0.5; v += ystep) {
        int py = (int)lround(PY(v));
        fill(&cv, left, py, right, py, grey);
        fill(&cv, left - 4, py, left, py, black);
        tick_label(buf, sizeof buf, v, ystep);
        text(&cv, left - 7 - text_width(buf, ts), py - 7 * ts / 2, buf, ts, black);
    }
    fill(&cv, left, top, left, bottom, black);
    fill(&cv, left, bottom, right, bottom, black);
    if (title && *title) text(&cv, (width - text_width(title, hs)) / 2, 6, title, hs, black);

    int clipped = 0;
    for (int s = 0; s < n_series; s++) {
        const uint8_t *col = colours[s % 8];
        int prev = -1; /* the last finite point: lines bridge non-finite gaps */
        double prev_y = 0;
        for (int i = 0; i < n_points; i++) {
            double xi = x ? x[i] : i, yi = ys[s][i];
            if (!isfinite(xi) || !isfinite(yi)) continue;
            if (yi > clip_hi || yi < clip_lo) { /* a clipped point: a bar 5 px high at the edge */
                yi = yi > clip_hi ? clip_hi : clip_lo;
                int px = (int)lround(PX(xi)), py = (int)lround(PY(yi));
                fill(&cv, px - 1, yi == clip_hi ? py : py - 4, px + 1, yi == clip_hi ? py + 4 : py, col);
                clipped++;
            }
            if (prev >= 0) line(&cv, PX(x ? x[prev] : prev), PY(prev_y), PX(xi), PY(yi), col);
            else fill(&cv, (int)PX(xi) - 1, (int)PY(yi) - 1, (int)PX(xi) + 1, (int)PY(yi) + 1, col);
            prev = i, prev_y = yi;
        }
    }
    if (clipped) { /* say so under the title */
        snprintf(buf, sizeof buf, "%d OFF SCALE, AT THE EDGE", clipped);
        text(&cv, left + 6, top + 4, buf, ts, mid);
    }
#undef PX
#undef PY

    if (labels && n_series > 0) {
        int lw = 0, lh = 9 * ts + 4;
        for (int s = 0; s < n_series; s++) {
            const char *l = labels[s] ? labels[s] : "";
            lw = lw > text_width(l, ts) ? lw : text_width(l, ts);
        }
        int bw = lw + 26 * ts + 12, bh = n_series * lh + 8;
        /* In the corner that hides the fewest points: top right, unless the data is there. */
        int xs[2] = {right - bw - 6, left + 6}, ys_[2] = {top + 6, bottom - bh - 6};
        int bx = xs[0], by = ys_[0];
        long least = -1;
        for (int corner = 0; corner < 4; corner++) {
            int cx = xs[corner & 1], cy = ys_[corner >> 1];
            long n = ink(&cv, cx, cy, cx + bw, cy + bh);
            if (least < 0 || n < least) least = n, bx = cx, by = cy;
        }
        if (bx < left + 2) bx = left + 2;
        fill(&cv, bx, by, bx + bw, by + bh, white);
        fill(&cv, bx, by, bx + bw, by, mid), fill(&cv, bx, by + bh, bx + bw, by + bh, mid);
        fill(&cv, bx, by, bx, by + bh, mid), fill(&cv, bx + bw, by, bx + bw, by + bh, mid);
        for (int s = 0; s < n_series; s++) {
            int yy = by + 6 + s * lh;
            fill(&cv, bx + 6, yy + 3 * ts - 1, bx + 6 + 18 * ts, yy + 3 * ts + 1, colours[s % 8]);
            text(&cv, bx + 12 + 20 * ts, yy, labels[s] ? labels[s] : "", ts, black);
        }
    }

    int rc = glow_png_write(path, cv.rgb, height, width, 3);
    free(cv.rgb);
    return rc;
}
