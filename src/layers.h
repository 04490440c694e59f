/* layers.h: the layers of a Glow flow step and of the multi-scale structure, as plain
 * functions over NHWC buffers (rows = B*H*W pixels of C channels).
 *
 * Each layer has _forward, _inverse and _backward (and _init where it is initialised from
 * data). logdet is per example, in double: forward adds, inverse subtracts. Backward takes
 * `dlogdet`, d loss / d logdet of each example (the same for every example here), and
 * derives its input gradient from its output; parameter gradients accumulate (+=).
 * Layers call kernels, never BLAS or OpenMP directly. */
#ifndef GLOW_LAYERS_H
#define GLOW_LAYERS_H

#include "kernels.h"

/* ---- actnorm: y = (x + b) * exp(3 s) per channel -------------------------------------- */
#define ACTNORM_SCALE 3.0
/* b = -mean, s = log(1 / (std + 1e-6)) / 3 over all rows of x (rows, c). */
void actnorm_init(real *b, real *s, const real *x, size_t rows, int c);
/* y may alias x. logdet (B) += hw * 3 * sum(s) if not NULL. */
void actnorm_forward(real *y, double *logdet, const real *x, const real *b, const real *s,
                     int batch, size_t hw, int c);
/* y = max(0, actnorm(x)): the coupling network's fused actnorm and ReLU (no log-det). */
void actnorm_relu_forward(real *y, const real *x, const real *b, const real *s, int batch,
                          size_t hw, int c);
void actnorm_inverse(real *x, double *logdet, const real *y, const real *b, const real *s,
                     int batch, size_t hw, int c);
/* From the output y and dy: dx = dy * exp(3s) (overwrites; may alias dy), db, ds += ... */
void actnorm_backward(real *dx, real *db, real *ds, const real *dy, const real *y,
                      const real *s, double dlogdet, int batch, size_t hw, int c);

/* ---- channel permutations (reverse, shuffle): y[:, i] = x[:, perm[i]] ----------------- */
void permute_forward(real *y, const real *x, const int *perm, size_t rows, int c);
/* x[:, perm[i]] = y[:, i]; also the backward pass (dx from dy). */
void permute_inverse(real *x, const real *y, const int *perm, size_t rows, int c);

/* ---- invertible 1x1 convolution: y = W x per pixel, W (c, c) ----------------------------
 * The log-determinant term is hw * log|det W| per example. */
/* log|det W| and W^-1 (either may be NULL), computed in double. Fails if W is singular. */
int matrix_logdet_inverse(double *logabsdet, real *w_inv, const real *w, int c);
void invconv_forward(real *y, const real *x, const real *w, size_t rows, int c);
/* x = W^-1 y, given W^-1. */
void invconv_inverse(real *x, const real *y, const real *w_inv, size_t rows, int c);
/* dx = dy W (overwrites; must not alias dy), dw += dy^T x + B*hw*dlogdet * W^-T (the last
 * term only if w_inv is not NULL: the LU form adds its log-det gradient to log_s instead). */
void invconv_backward(real *dx, real *dw, const real *dy, const real *x, const real *w,
                      const real *w_inv, double dlogdet, int batch, size_t hw, int c);
/* A random rotation (c, c) from the seed: Gram-Schmidt on a Gaussian matrix. */
void random_rotation(real *w, int c, uint64_t seed);
/* Factor W = P L (U + diag(sign * exp(log_s))) for the LU form (in double). */
int invconv_lu_factor(real *l, real *u, real *log_s, real *sign, int *perm, const real *w, int c);
/* LU form: W = P L (U + diag(sign * exp(log_s))), L unit lower, U strictly upper; perm
 * gives P as row indices: W[i, :] = (L U')[perm[i], :]. */
void invconv_lu_weight(real *w, const real *l, const real *u, const real *log_s,
                       const real *sign, const int *perm, int c);
/* Map dW to dl, du, dlog_s (+=), adding B*hw*dlogdet to dlog_s for the log-det term. */
void invconv_lu_backward(real *dl, real *du, real *dlog_s, const real *dw, const real *l,
                         const real *u, const real *log_s, const real *sign, const int *perm,
                         double dlogdet, int batch, size_t hw, int c);

/* ---- squeeze: (B,H,W,C) -> (B,H/2,W/2,4C), pixel (2i+dy,2j+dx) ch c -> (i,j) ch c*4+dy*2+dx */
void squeeze_forward(real *y, const real *x, int batch, int h, int w, int c);
void squeeze_inverse(real *x, const real *y, int batch, int h, int w, int c); /* h,w,c of x */

/* ---- Gaussian priors, elementwise over n values per example: N(z; mean, exp(logs)^2) -- */
#define LOG_2PI 1.8378770664093453
/* logp (B) += sum log N(z; mean, exp(logs)^2). */
void gaussian_logp(double *logp, const real *z, const real *mean, const real *logs, int batch,
                   size_t n);
/* With g = d loss / d logp (per example, the same for all): dz += g * dlogp/dz (if dz is not
 * NULL); dmean, dlogs = g * dlogp/dmean, g * dlogp/dlogs (overwrite). */
void gaussian_backward(real *dz, real *dmean, real *dlogs, const real *z, const real *mean,
                       const real *logs, double g, int batch, size_t n);
/* Over n values: the smallest logs, the largest |z| and the largest |z - mean| / exp(logs)
 * folded into the three (each lowered or raised; a NaN anywhere makes it NaN). */
void gaussian_extremes(double *min_logs, double *max_abs_z, double *max_score, const real *z,
                       const real *mean, const real *logs, size_t n);
/* The bounded prior log std (GLOW_PRIOR_TANH): logs = 3 tanh(v / 3) in place, and its
 * backward: d v = d logs * (1 - (logs / 3)^2), from the bounded logs, in place. */
void prior_logs_bound(real *logs, size_t n);
void prior_logs_bound_backward(real *dlogs, const real *logs, size_t n);
/* z = mean + temperature * exp(logs) * eps, eps ~ N(0,1) from (key, example index offset). */
void gaussian_sample(real *z, const real *mean, const real *logs, double temperature,
                     uint64_t key, int batch, size_t n);

/* ---- affine / additive coupling -------------------------------------------------------
 * x (rows, c): x1 = channels [0, c/2) pass through, x2 = [c/2, c) is transformed with
 * h = NN(x1): additive x2 + h (h has c/2 channels); affine (x2 + h[:, 0::2]) * s(h[:, 1::2])
 * (h has c channels), s the glow_affine_scale's function (ignored for additive). */
int coupling_nn_out(glow_coupling kind, int c);
/* log s(u) of one scale channel. */
double coupling_log_scale(glow_affine_scale scale, double u);
/* Over h (rows, for c channels of the coupling): the smallest log s (0 for additive) and
 * the largest |shift|; both NaN if h holds one. */
void coupling_extremes(const real *h, glow_coupling kind, glow_affine_scale scale, size_t rows,
                       int c, double *min_log_scale, double *max_shift);
/* y may alias x. */
void coupling_forward(real *y, double *logdet, const real *x, const real *h, glow_coupling kind,
                      glow_affine_scale scale, int batch, size_t hw, int c);
void coupling_inverse(real *x, double *logdet, const real *y, const real *h, glow_coupling kind,
                      glow_affine_scale scale, int batch, size_t hw, int c);
/* From the input x, h and dy: dx (overwrites, may alias dy; dx1 = dy1 only: the caller adds
 * the path through the NN) and dh (overwrites). */
void coupling_backward(real *dx, real *dh, const real *dy, const real *x, const real *h,
                       glow_coupling kind, glow_affine_scale scale, double dlogdet, int batch,
                       size_t hw, int c);

/* The coupling network: conv3x3 (cin -> width, no bias) + actnorm + ReLU, conv1x1 (width ->
 * width, no bias) + actnorm + ReLU, zero-initialised conv3x3 (width -> cout) + bias, times
 * exp(3 logs) per output channel. Pointers into the parameter (or gradient) buffer. */
typedef struct coupling_nn {
    real *w1, *an1_b, *an1_s, *w2, *an2_b, *an2_s, *w3, *b3, *logs3;
} coupling_nn;
/* Its activations for one step: r1, r2 (rows, width) after the ReLUs, h (rows, cout). */
typedef struct coupling_acts {
    real *r1, *r2, *h;
} coupling_acts;
/* be: the kernels' settings; its thread count is also the threads the scratch has room
 * for. */
typedef struct nn_shape {
    int batch, h, w, cin, width, cout;
    const backend *be;
} nn_shape;
size_t coupling_nn_scratch(nn_shape s);
/* z1 (rows, cin) contiguous. Runs image group by image group, one group per thread, so a
 * group's hidden activations stay in cache; a->r1 and a->r2 may be NULL when only h is
 * wanted (they then never leave the cache). */
void coupling_nn_forward(coupling_acts *a, const coupling_nn *nn, const real *z1, nn_shape s,
                         real *scratch);
/* The forward pass that also initialises both actnorms from this batch. */
void coupling_nn_init(coupling_acts *a, coupling_nn *nn, const real *z1, nn_shape s,
                      real *scratch);
/* dz1 (rows, cin) +=, dnn +=; dh is used as scratch (destroyed). */
void coupling_nn_backward(real *dz1, coupling_nn *dnn, real *dh, const coupling_acts *a,
                          const coupling_nn *nn, const real *z1, nn_shape s, real *scratch);
/* The memory-saving mode's backward pass through a coupling from its output y (rows,
 * c = 2 cin) and dy: x = the coupling's input (coupling_inverse), dx = coupling_backward's
 * (the network's part excluded), dz1 += and dnn += the network's backward pass, with z1 =
 * y's first half, contiguous. With x_known, x already holds the exact input (a kept one)
 * and y is not read. Runs image group by image group, like the network. */
void coupling_rebuild_backward(real *x, int x_known, real *dx, real *dz1, coupling_nn *dnn,
                               const real *y, const real *dy, const real *z1,
                               const coupling_nn *nn, glow_coupling kind,
                               glow_affine_scale scale, double dlogdet, nn_shape s,
                               real *scratch);

/* ---- zero-initialised conv3x3 (prior of a split): out = (conv3x3(x) + b) * exp(3 logs) -- */
void zeroconv_forward(real *out, const real *x, const real *w, const real *b, const real *logs,
                      int batch, int h, int w_, int cin, int cout, real *scratch);
/* dout is destroyed; dx (+=), dw, db, dlogs (+=). out is the forward output. */
void zeroconv_backward(real *dx, real *dw, real *db, real *dlogs, real *dout, const real *out,
                       const real *x, const real *w, const real *logs, int batch, int h, int w_,
                       int cin, int cout, real *scratch);

#endif
