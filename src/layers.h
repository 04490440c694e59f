/* layers.h: the layers that are more than a backend operation: the invertible 1x1
 * convolution, whose (c, c) matrix algebra (inverse, log-determinant, LU form) runs here
 * and whose products over pixels are the backend's gemm. The other layers of a flow step
 * (actnorm, permutations, coupling, squeeze, priors) are backend operations (backend.h),
 * composed into flow steps by flow_step.c and flow_prior.c. */
#ifndef GLOW_LAYERS_H
#define GLOW_LAYERS_H

#include "backend.h"

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
int random_rotation(real *w, int c, uint64_t seed);
/* Factor W = P L (U + diag(sign * exp(log_s))) for the LU form (in double). */
int invconv_lu_factor(real *l, real *u, real *log_s, real *sign, int *perm, const real *w, int c);
/* LU form: W = P L (U + diag(sign * exp(log_s))), L unit lower, U strictly upper; perm
 * gives P as row indices: W[i, :] = (L U')[perm[i], :]. */
int invconv_lu_weight(real *w, const real *l, const real *u, const real *log_s,
                       const real *sign, const int *perm, int c);
/* Map dW to dl, du, dlog_s (+=), adding B*hw*dlogdet to dlog_s for the log-det term. */
int invconv_lu_backward(real *dl, real *du, real *dlog_s, const real *dw, const real *l,
                         const real *u, const real *log_s, const real *sign, const int *perm,
                         double dlogdet, int batch, size_t hw, int c);

#endif
