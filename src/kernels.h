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

/* The settings every kernel runs under, one per compute context (glow_ctx): the kernels
 * read nothing global. */
typedef struct backend {
    int threads;        /* of a parallel region, >= 1 */
    glow_matmul matmul; /* the coupling networks' products on the packed path */
    int packed;         /* 1: use the packed AVX-512 kernels (packed_supported() is 1) */
} backend;
/* The calling thread's OpenMP (and so OpenBLAS) thread count set to be->threads; returns
 * the previous count for backend_leave. */
int backend_enter(const backend *be);
void backend_leave(int saved);
/* The cores of this machine. */
int backend_cores(void);
/* GLOW_OK if this build and CPU can run the matmul mode (with packed kernels where it needs
 * them), else GLOW_EINVAL with the reason. */
int backend_matmul_check(glow_matmul m, int packed);

/* C = alpha * op(A) @ op(B) + beta * C, row-major; op transposes when trans is nonzero. */
void gemm(int trans_a, int trans_b, int m, int n, int k, real alpha, const real *a, int lda,
          const real *b, int ldb, real beta, real *c, int ldc);
/* GFLOP/s of gemm on an n x n x n product (best of 7), on the calling thread's threads. */
double gemm_gflops(int n);

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

/* ---- the coupling network's convolutions on packed weights (packed_gemm.c) -------------
 * Where be->packed (the float build on an AVX-512 CPU, GLOW_NO_PACKED unset), the
 * weights are packed once per pass, and in the forward pass each output is followed in the
 * same store by out = (conv + shift) * scale per channel when shift and scale are not
 * NULL, then ReLU with PACKED_RELU: the network's actnorms and its output convolution's
 * bias and scale. The backward pass computes its input gradients on packed transposed
 * weights. The GEMMs run on the calling thread. */
enum { PACKED_RELU = 1, PACKED_ADD = 2 /* out += instead of out = */ };
/* The packed kernels run here: the float build on an AVX-512 CPU. */
int packed_supported(void);
/* Whether a new context uses them: supported, and GLOW_NO_PACKED unset. */
int packed_default(void);
/* reals that W (n, k) takes packed */
size_t packed_size(int n, int k);
/* W for out = a W^T, from W (n, k) row-major, or from (k, n) row-major when transposed. */
void pack_weights(const backend *be, real *dst, const real *w, int n, int k, int transposed);
/* out (rows, n; row stride ldo) = a (rows, k; stride lda) @ W^T, then the affine map. */
void packed_gemm(const backend *be, real *out, int ldo, const real *a, int lda,
                 const real *packed, size_t rows, int n, int k, const real *shift,
                 const real *scale, int flags);
/* c (m, n; row stride ldc) += a^T b, a (rows, m), b (rows, n): a weight gradient, summed on
 * AMX in bf16x3 where that mode is on and m, n >= 32 and rows >= 64. Returns 1, or 0 having
 * done nothing (then the caller uses BLAS). */
int packed_gemm_tn(const backend *be, real *c, int ldc, const real *a, int lda, const real *b,
                   int ldb, size_t rows, int m, int n);
/* A 3x3 convolution's weights packed for its side (see kernels.c): for the forward pass,
 * and transposed for the backward pass's dx. */
size_t conv3x3_packed_size(int cin, int cout);
void conv3x3_pack(const backend *be, real *dst, const real *w, int cin, int cout,
                  int for_backward);
void conv3x3_forward_packed(const backend *be, real *out, const real *x, const real *packed, const real *shift,
                            const real *scale, int flags, int batch, int h, int width, int cin,
                            int cout, real *scratch);
/* conv3x3_backward and conv1x1_backward with dx from the weights packed for the backward
 * pass when packed is not NULL (else from w through BLAS; be may then be NULL); dx += ...
 * with dx_add, dx = ... without (no need to zero it first). */
void conv3x3_backward_packed(const backend *be, real *dx, int dx_add, real *dw, real *dbias, const real *dout,
                             const real *x, const real *w, const real *packed, int batch,
                             int h, int width, int cin, int cout, real *scratch);
void conv1x1_backward_packed(const backend *be, real *dx, int dx_add, real *dw, const real *dout, const real *x,
                             const real *w, const real *packed, size_t rows, int cin, int cout);

/* sums[c] = sum over rows of a[r,c] (* b[r,c] if b is not NULL), in double. The sum is
 * split into a fixed number of chunks added in order, so it does not depend on threads. */
void channel_sums(double *sums, const real *a, const real *b, size_t rows, int c);
/* sum_a[c] = sum of a[r,c] and sum_ab[c] = sum of a[r,c] * b[r,c], in one pass. */
void channel_sums2(double *sum_a, double *sum_ab, const real *a, const real *b, size_t rows, int c);

/* dst[r, 0:n] = src[r, 0:n] with row strides ld_dst, ld_src. */
void copy_columns(real *dst, int ld_dst, const real *src, int ld_src, size_t rows, int n);

#endif
