/* invconv.c: the invertible 1x1 convolution of a flow step (a fixed permutation, the
 * other kind, is a backend operation), either with a free matrix W (log-det
 * hw * log|det W|, computed by an LU factorisation in double) or in the LU form
 * W = P L (U + diag(sign * exp(log_s))) whose log-det is simply hw * sum(log_s). The
 * (c, c) algebra runs here, serially; the products over pixels are the backend's. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "layers.h"

/* LU with partial pivoting of a (c, c) in place: row k of the result came from row piv[k];
 * returns 0 if singular. */
static int lu_decompose(double *a, int *piv, int c) {
    for (int i = 0; i < c; i++) piv[i] = i;
    for (int k = 0; k < c; k++) {
        int p = k;
        for (int i = k + 1; i < c; i++)
            if (fabs(a[i * c + k]) > fabs(a[p * c + k])) p = i;
        if (a[p * c + k] == 0 || !isfinite(a[p * c + k])) return 0;
        if (p != k) {
            for (int j = 0; j < c; j++) {
                double t = a[k * c + j];
                a[k * c + j] = a[p * c + j];
                a[p * c + j] = t;
            }
            int t = piv[k]; piv[k] = piv[p]; piv[p] = t;
        }
        for (int i = k + 1; i < c; i++) {
            double f = a[i * c + k] /= a[k * c + k];
            for (int j = k + 1; j < c; j++) a[i * c + j] -= f * a[k * c + j];
        }
    }
    return 1;
}

int matrix_logdet_inverse(double *logabsdet, real *w_inv, const real *w, int c) {
    double *a = malloc(sizeof(double) * c * c), *col = malloc(sizeof(double) * c);
    int *piv = malloc(sizeof(int) * c);
    int ok = a && col && piv;
    if (ok) {
        for (int i = 0; i < c * c; i++) a[i] = w[i];
        ok = lu_decompose(a, piv, c);
    }
    if (ok && logabsdet) {
        double t = 0;
        for (int k = 0; k < c; k++) t += log(fabs(a[k * c + k]));
        *logabsdet = t;
    }
    /* Column j of W^-1 solves W v = e_j: with rows permuted, L U v = e_j[piv]. */
    for (int j = 0; ok && w_inv && j < c; j++) {
        for (int i = 0; i < c; i++) col[i] = piv[i] == j;
        for (int i = 0; i < c; i++)
            for (int k = 0; k < i; k++) col[i] -= a[i * c + k] * col[k];
        for (int i = c - 1; i >= 0; i--) {
            for (int k = i + 1; k < c; k++) col[i] -= a[i * c + k] * col[k];
            col[i] /= a[i * c + i];
        }
        for (int i = 0; i < c; i++) w_inv[i * c + j] = (real)col[i];
    }
    int oom = !a || !col || !piv;
    free(a); free(col); free(piv);
    if (oom) return glow_fail(GLOW_ENOMEM, "out of memory for a %dx%d 1x1 convolution", c, c);
    return ok ? GLOW_OK : glow_fail(GLOW_EINVAL, "invertible 1x1 convolution: matrix is singular");
}

void invconv_forward(real *y, const real *x, const real *w, size_t rows, int c) {
    gemm(0, 1, (int)rows, c, c, 1, x, c, w, c, 0, y, c);
}

void invconv_inverse(real *x, const real *y, const real *w_inv, size_t rows, int c) {
    gemm(0, 1, (int)rows, c, c, 1, y, c, w_inv, c, 0, x, c);
}

/* y_r = W x_r for every pixel r: dx_r = W^T dy_r, dW = sum_r dy_r x_r^T, and the log-det
 * hw * log|det W| per example has gradient hw * W^-T. */
void invconv_backward(real *dx, real *dw, const real *dy, const real *x, const real *w,
                      const real *w_inv, double dlogdet, int batch, size_t hw, int c) {
    size_t rows = (size_t)batch * hw;
    gemm(0, 0, (int)rows, c, c, 1, dy, c, w, c, 0, dx, c);
    gemm(1, 0, c, c, (int)rows, 1, dy, c, x, c, 1, dw, c);
    if (w_inv) {
        double k = (double)batch * hw * dlogdet;
        for (int i = 0; i < c; i++)
            for (int j = 0; j < c; j++) dw[i * c + j] += (real)(k * w_inv[j * c + i]);
    }
}

/* M = L U' with L unit lower and U' = U (strictly upper) + diag(sign * exp(log_s)). */
static void lu_product(double *mat, const real *l, const real *u, const real *log_s,
                       const real *sign, int c) {
    for (int i = 0; i < c; i++)
        for (int j = 0; j < c; j++) {
            double acc = 0;
            int kmax = i < j ? i : j;
            for (int k = 0; k <= kmax; k++) {
                double lik = k == i ? 1.0 : l[i * c + k];
                double ukj = k == j ? sign[j] * exp((double)log_s[j]) : u[k * c + j];
                acc += lik * ukj;
            }
            mat[i * c + j] = acc;
        }
}

int invconv_lu_weight(real *w, const real *l, const real *u, const real *log_s,
                      const real *sign, const int *perm, int c) {
    double *mat = malloc(sizeof(double) * c * c);
    if (!mat) return glow_fail(GLOW_ENOMEM, "out of memory for a %dx%d 1x1 convolution", c, c);
    lu_product(mat, l, u, log_s, sign, c);
    for (int i = 0; i < c; i++)
        for (int j = 0; j < c; j++) w[i * c + j] = (real)mat[perm[i] * c + j];
    free(mat);
    return GLOW_OK;
}

/* W = P M, M = L U': dM = P^T dW, dL = dM U'^T (strictly lower part), dU' = L^T dM (strictly
 * upper part to U, the diagonal through d exp(log_s) = sign * exp(log_s)). */
int invconv_lu_backward(real *dl, real *du, real *dlog_s, const real *dw, const real *l,
                        const real *u, const real *log_s, const real *sign, const int *perm,
                        double dlogdet, int batch, size_t hw, int c) {
    double *dm = malloc(sizeof(double) * c * c);
    if (!dm) return glow_fail(GLOW_ENOMEM, "out of memory for a %dx%d 1x1 convolution", c, c);
    for (int i = 0; i < c; i++)
        for (int j = 0; j < c; j++) dm[perm[i] * c + j] = dw[i * c + j];
    for (int i = 0; i < c; i++)
        for (int j = 0; j < i; j++) { /* dL[i,j] = sum_k dM[i,k] U'[j,k], k >= j */
            double acc = dm[i * c + j] * sign[j] * exp((double)log_s[j]);
            for (int k = j + 1; k < c; k++) acc += dm[i * c + k] * u[j * c + k];
            dl[i * c + j] += (real)acc;
        }
    for (int i = 0; i < c; i++)
        for (int j = i; j < c; j++) { /* dU'[i,j] = sum_k L[k,i] dM[k,j], k >= i */
            double acc = dm[i * c + j];
            for (int k = i + 1; k < c; k++) acc += l[k * c + i] * dm[k * c + j];
            if (j > i) du[i * c + j] += (real)acc;
            else dlog_s[i] += (real)(acc * sign[i] * exp((double)log_s[i]) +
                                     (double)batch * hw * dlogdet);
        }
    free(dm);
    return GLOW_OK;
}

int random_rotation(real *w, int c, uint64_t seed) {
    double *q = malloc(sizeof(double) * c * c);
    if (!q) return glow_fail(GLOW_ENOMEM, "out of memory for a %dx%d rotation", c, c);
    uint64_t key = glow_rng_key(seed, 0x726f74, (uint64_t)c, 0);
    for (int i = 0; i < c * c; i++) q[i] = glow_rng_normal(key, i);
    /* Modified Gram-Schmidt on the rows. */
    for (int i = 0; i < c; i++) {
        for (int k = 0; k < i; k++) {
            double d = 0;
            for (int j = 0; j < c; j++) d += q[i * c + j] * q[k * c + j];
            for (int j = 0; j < c; j++) q[i * c + j] -= d * q[k * c + j];
        }
        double n = 0;
        for (int j = 0; j < c; j++) n += q[i * c + j] * q[i * c + j];
        n = sqrt(n);
        for (int j = 0; j < c; j++) q[i * c + j] /= n;
    }
    for (int i = 0; i < c * c; i++) w[i] = (real)q[i];
    free(q);
    return GLOW_OK;
}

int invconv_lu_factor(real *l, real *u, real *log_s, real *sign, int *perm, const real *w, int c) {
    double *a = malloc(sizeof(double) * c * c);
    int *piv = malloc(sizeof(int) * c);
    int ok = a && piv;
    if (ok) {
        for (int i = 0; i < c * c; i++) a[i] = w[i];
        ok = lu_decompose(a, piv, c);
    }
    if (ok) {
        /* Row k of L U is row piv[k] of W, so W[i,:] = (L U)[perm[i],:] with perm = piv^-1. */
        for (int k = 0; k < c; k++) perm[piv[k]] = k;
        for (int i = 0; i < c; i++)
            for (int j = 0; j < c; j++) {
                l[i * c + j] = j < i ? (real)a[i * c + j] : 0;
                u[i * c + j] = j > i ? (real)a[i * c + j] : 0;
            }
        for (int i = 0; i < c; i++) {
            double d = a[i * c + i];
            sign[i] = d < 0 ? -1 : 1;
            log_s[i] = (real)log(fabs(d));
        }
    }
    int oom = !a || !piv;
    free(a); free(piv);
    if (oom) return glow_fail(GLOW_ENOMEM, "out of memory for a %dx%d 1x1 convolution", c, c);
    return ok ? GLOW_OK : glow_fail(GLOW_EINVAL, "invertible 1x1 convolution: matrix is singular");
}
