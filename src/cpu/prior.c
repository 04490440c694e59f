/* prior.c: diagonal Gaussian priors, log N(z; mean, exp(logs)^2), their gradients and
 * sampling. The split and top priors of the model build mean and logs, then call these. */
#include <math.h>
#include "cpu.h"

CLONED void gaussian_logp(double *logp, const real *z, const real *mean, const real *logs, int batch,
                   size_t n) {
    #pragma omp parallel for schedule(static)
    for (int b = 0; b < batch; b++) {
        double acc = 0;
        for (size_t i = b * n; i < (b + 1) * n; i++) {
            double d = (double)z[i] - mean[i];
            acc += -0.5 * (LOG_2PI + 2.0 * logs[i] + d * d * exp(-2.0 * logs[i]));
        }
        logp[b] += acc;
    }
}

/* d/dz log N = -(z - mean) e^(-2 logs) = -d/dmean; d/dlogs = -1 + (z - mean)^2 e^(-2 logs). */
CLONED void gaussian_backward(real *dz, real *dmean, real *dlogs, const real *z, const real *mean,
                       const real *logs, double g, int batch, size_t n) {
    size_t total = (size_t)batch * n;
    #pragma omp parallel for schedule(static)
    for (size_t i = 0; i < total; i++) {
        double d = (double)z[i] - mean[i];
        double prec = exp(-2.0 * logs[i]);
        if (dz) dz[i] += (real)(-g * d * prec);
        dmean[i] = (real)(g * d * prec);
        dlogs[i] = (real)(g * (-1.0 + d * d * prec));
    }
}

/* The bound of GLOW_PRIOR_TANH: |log std| < PRIOR_BOUND. */
#define PRIOR_BOUND 3.0

CLONED void prior_logs_bound(real *logs, size_t n) {
    #pragma omp parallel for schedule(static) if (n > 65536)
    for (size_t i = 0; i < n; i++) logs[i] = (real)(PRIOR_BOUND * tanh(logs[i] / PRIOR_BOUND));
}

CLONED void prior_logs_bound_backward(real *dlogs, const real *logs, size_t n) {
    #pragma omp parallel for schedule(static) if (n > 65536)
    for (size_t i = 0; i < n; i++) {
        double t = logs[i] / PRIOR_BOUND;
        dlogs[i] = (real)(dlogs[i] * (1.0 - t * t));
    }
}

CLONED void gaussian_extremes(double *min_logs, double *max_abs_z, double *max_score, const real *z,
                       const real *mean, const real *logs, size_t n) {
    double lo = INFINITY, za = 0, sc = 0;
    int nan = 0;
    #pragma omp parallel for schedule(static) reduction(min:lo) reduction(max:za, sc) \
        reduction(|:nan)
    for (size_t i = 0; i < n; i++) {
        double a = fabs((double)z[i]), d = fabs((double)z[i] - mean[i]) * exp(-(double)logs[i]);
        nan |= isnan(a) | isnan(d) | isnan((double)logs[i]);
        if (logs[i] < lo) lo = logs[i];
        if (a > za) za = a;
        if (d > sc) sc = d;
    }
    if (nan) *min_logs = *max_abs_z = *max_score = NAN;
    if (isnan(*min_logs)) return;
    if (lo < *min_logs) *min_logs = lo;
    if (za > *max_abs_z) *max_abs_z = za;
    if (sc > *max_score) *max_score = sc;
}

CLONED void gaussian_sample(real *z, const real *mean, const real *logs, double temperature,
                     uint64_t key, int batch, size_t n) {
    size_t total = (size_t)batch * n;
    #pragma omp parallel for schedule(static)
    for (size_t i = 0; i < total; i++)
        z[i] = (real)(mean[i] + temperature * exp((double)logs[i]) * glow_rng_normal(key, i));
}
