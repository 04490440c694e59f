/* actnorm.c: activation normalisation, y = (x + b) * exp(3 s) per channel (the scale
 * factor 3 of the original implementation). Initialised from data so that the first batch
 * comes out with zero mean and unit variance per channel. */
#include <math.h>
#include "cpu.h"

void actnorm_init(real *b, real *s, const real *x, size_t rows, int c, const glow_comm *comm) {
    double sums[2 * c + 1], *sum = sums, *sq = sums + c, n = (double)rows;
    channel_sums(sum, x, NULL, rows, c);
    channel_sums(sq, x, x, rows, c);
    sums[2 * c] = n;
    if (comm && comm->size > 1) {
        comm->allreduce(sums, 2 * c + 1, 0, GLOW_REDUCE_SUM, comm->user);
        n = sums[2 * c];
    }
    for (int j = 0; j < c; j++) {
        double mean = sum[j] / n;
        double var = sq[j] / n - mean * mean;
        b[j] = (real)-mean;
        s[j] = (real)(log(1.0 / (sqrt(var > 0 ? var : 0) + 1e-6)) / ACTNORM_SCALE);
    }
}

static double sum_s(const real *s, int c) {
    double t = 0;
    for (int j = 0; j < c; j++) t += s[j];
    return t;
}

CLONED void actnorm_forward(real *y, double *logdet, const real *x, const real *b, const real *s,
                     int batch, size_t hw, int c) {
    real scale[c];
    for (int j = 0; j < c; j++) scale[j] = (real)exp(ACTNORM_SCALE * s[j]);
    size_t rows = (size_t)batch * hw;
    #pragma omp parallel for schedule(static)
    for (size_t r = 0; r < rows; r++)
        for (int j = 0; j < c; j++) y[r * c + j] = (x[r * c + j] + b[j]) * scale[j];
    if (logdet) {
        double ld = (double)hw * ACTNORM_SCALE * sum_s(s, c);
        for (int i = 0; i < batch; i++) logdet[i] += ld;
    }
}

CLONED void actnorm_relu_forward(real *y, const real *x, const real *b, const real *s, int batch,
                          size_t hw, int c) {
    real scale[c];
    for (int j = 0; j < c; j++) scale[j] = (real)exp(ACTNORM_SCALE * s[j]);
    size_t rows = (size_t)batch * hw;
    #pragma omp parallel for schedule(static)
    for (size_t r = 0; r < rows; r++)
        for (int j = 0; j < c; j++) {
            real v = (x[r * c + j] + b[j]) * scale[j];
            y[r * c + j] = v > 0 ? v : 0;
        }
}

CLONED void actnorm_inverse(real *x, double *logdet, const real *y, const real *b, const real *s,
                     int batch, size_t hw, int c) {
    real inv[c];
    for (int j = 0; j < c; j++) inv[j] = (real)exp(-ACTNORM_SCALE * s[j]);
    size_t rows = (size_t)batch * hw;
    #pragma omp parallel for schedule(static)
    for (size_t r = 0; r < rows; r++)
        for (int j = 0; j < c; j++) x[r * c + j] = y[r * c + j] * inv[j] - b[j];
    if (logdet) {
        double ld = (double)hw * ACTNORM_SCALE * sum_s(s, c);
        for (int i = 0; i < batch; i++) logdet[i] -= ld;
    }
}

/* y = (x + b) e with e = exp(3 s), so dy/dx = dy/db = e and dy/ds = 3 y; the log-det
 * hw * 3 * sum(s) of each example adds 3 * hw * dlogdet per example to ds. */
CLONED void actnorm_backward(real *dx, real *db, real *ds, const real *dy, const real *y,
                      const real *s, double dlogdet, int batch, size_t hw, int c) {
    size_t rows = (size_t)batch * hw;
    double sum_dy[c], sum_dy_y[c];
    channel_sums2(sum_dy, sum_dy_y, dy, y, rows, c);
    real scale[c];
    for (int j = 0; j < c; j++) {
        scale[j] = (real)exp(ACTNORM_SCALE * s[j]);
        db[j] += (real)(sum_dy[j] * scale[j]);
        ds[j] += (real)(ACTNORM_SCALE * (sum_dy_y[j] + (double)batch * hw * dlogdet));
    }
    #pragma omp parallel for schedule(static)
    for (size_t r = 0; r < rows; r++)
        for (int j = 0; j < c; j++) dx[r * c + j] = dy[r * c + j] * scale[j];
}
