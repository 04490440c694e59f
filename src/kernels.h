/* kernels.h: the numerical kernels behind the layers: convolutions as GEMMs through BLAS,
 * per-channel reductions, threads. The only place that knows about BLAS and OpenMP.
 *
 * Layout: activations are (rows, C) row-major with rows = B*H*W (NHWC). 3x3 convolution
 * weights are (Cout, 3, 3, Cin) row-major, i.e. (Cout, 9*Cin); 1x1 weights (Cout, Cin).
 * Padding is zero padding ("SAME"). Input gradients and parameter gradients accumulate
 * (+=) unless a comment says otherwise; the caller zeroes them. Every optimised kernel has
 * a plain *_ref version that the tests compare it with. */
#ifndef GLOW_KERNELS_H
#define GLOW_KERNELS_H

#include <stddef.h>
#include "glow.h"

typedef glow_real real;

/* C = alpha * op(A) @ op(B) + beta * C, row-major; op transposes when trans is nonzero. */
void gemm(int trans_a, int trans_b, int m, int n, int k, real alpha, const real *a, int lda,
          const real *b, int ldb, real beta, real *c, int ldc);

/* Scratch needed by a 3x3 convolution of `rows` pixels from cin to cout channels. */
size_t conv3x3_scratch(size_t rows, int cin, int cout);

/* out (B,H,W,cout) = conv3x3(x (B,H,W,cin), w) (+ bias (cout) if not NULL); overwrites. */
void conv3x3_forward(real *out, const real *x, const real *w, const real *bias, int batch,
                     int h, int width, int cin, int cout, real *scratch);
/* dw (cout,9*cin) += ..., dx (B,H,W,cin) += ... if not NULL, dbias (cout) += ... if not NULL. */
void conv3x3_backward(real *dx, real *dw, real *dbias, const real *dout, const real *x,
                      const real *w, int batch, int h, int width, int cin, int cout,
                      real *scratch);
void conv3x3_forward_ref(real *out, const real *x, const real *w, const real *bias, int batch,
                         int h, int width, int cin, int cout);
void conv3x3_backward_ref(real *dx, real *dw, real *dbias, const real *dout, const real *x,
                          const real *w, int batch, int h, int width, int cin, int cout);

/* out (rows,cout) = x (rows,cin) @ w^T, w (cout,cin); overwrites. */
void conv1x1_forward(real *out, const real *x, const real *w, size_t rows, int cin, int cout);
/* dw += dout^T x; dx += dout w (if dx is not NULL). */
void conv1x1_backward(real *dx, real *dw, const real *dout, const real *x, const real *w,
                      size_t rows, int cin, int cout);

/* sums[c] = sum over rows of a[r,c] (* b[r,c] if b is not NULL), in double. The sum is
 * split into a fixed number of chunks added in order, so it does not depend on threads. */
void channel_sums(double *sums, const real *a, const real *b, size_t rows, int c);
/* sum_a[c] = sum of a[r,c] and sum_ab[c] = sum of a[r,c] * b[r,c], in one pass. */
void channel_sums2(double *sum_a, double *sum_ab, const real *a, const real *b, size_t rows, int c);

/* dst[r, 0:n] = src[r, 0:n] with row strides ld_dst, ld_src. */
void copy_columns(real *dst, int ld_dst, const real *src, int ld_src, size_t rows, int n);

#endif
