/* backend.h: the operations the layers and the passes are made of, over NHWC buffers, and
 * the boundary of the compute backend: src/cpu/ implements every one of them, and only its
 * files use OpenMP, BLAS or intrinsics (docs/ARCHITECTURE.md says how a second backend,
 * CUDA, would implement the same set).
 *
 * Layout: activations are (rows, C) row-major with rows = B*H*W (NHWC). 3x3 convolution
 * weights are (Cout, 3, 3, Cin) row-major, i.e. (Cout, 9*Cin); 1x1 weights (Cout, Cin).
 * Padding is zero padding ("SAME"). Input gradients and parameter gradients accumulate
 * (+=) unless a comment says otherwise; the caller zeroes them. Every optimised kernel has
 * a plain *_ref version that the tests compare it with. */
#ifndef GLOW_BACKEND_H
#define GLOW_BACKEND_H

#include <stddef.h>
#include "glow.h"

typedef glow_real real;

/* The settings every kernel runs under, one per compute context (glow_ctx): the kernels
 * read nothing global. */
typedef struct backend {
    int threads;        /* of a parallel region, >= 1 */
    glow_matmul matmul; /* the coupling networks' products on the packed path */
    int packed;         /* 1: use the packed AVX-512 kernels (packed_supported() is 1) */
    const glow_comm *comm; /* NULL, or the processes the data-dependent init spans */
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
void conv3x3_forward_packed(const backend *be, real *out, const real *x, const real *packed,
                            const real *shift, const real *scale, int flags, int batch, int h,
                            int width, int cin, int cout, real *scratch);
/* conv3x3_backward and conv1x1_backward with dx from the weights packed for the backward
 * pass when packed is not NULL (else from w through BLAS; be may then be NULL); dx += ...
 * with dx_add, dx = ... without (no need to zero it first). */
void conv3x3_backward_packed(const backend *be, real *dx, int dx_add, real *dw, real *dbias,
                             const real *dout, const real *x, const real *w, const real *packed,
                             int batch, int h, int width, int cin, int cout, real *scratch);
void conv1x1_backward_packed(const backend *be, real *dx, int dx_add, real *dw,
                             const real *dout, const real *x, const real *w, const real *packed,
                             size_t rows, int cin, int cout);

/* sums[c] = sum over rows of a[r,c] (* b[r,c] if b is not NULL), in double. The sum is
 * split into a fixed number of chunks added in order, so it does not depend on threads. */
void channel_sums(double *sums, const real *a, const real *b, size_t rows, int c);
/* sum_a[c] = sum of a[r,c] and sum_ab[c] = sum of a[r,c] * b[r,c], in one pass. */
void channel_sums2(double *sum_a, double *sum_ab, const real *a, const real *b, size_t rows, int c);

/* glow_preprocess of examples first .. first + batch - 1 of a batch: a process's share of
 * it gets the noise one process would give those examples. */
void preprocess_from(real *x, const uint8_t *pixels, int batch, size_t dim, int n_bits,
                     uint64_t seed, uint64_t step, uint64_t first);

/* dst[r, 0:n] = src[r, 0:n] with row strides ld_dst, ld_src. */
void copy_columns(real *dst, int ld_dst, const real *src, int ld_src, size_t rows, int n);

/* ---- the layers' operations ---------------------------------------------------------
 * Each layer has _forward, _inverse and _backward (and _init where it is initialised from
 * data). logdet is per example, in double: forward adds, inverse subtracts. Backward takes
 * `dlogdet`, d loss / d logdet of each example (the same for every example here), and
 * derives its input gradient from its output; parameter gradients accumulate (+=). */

/* ---- actnorm: y = (x + b) * exp(3 s) per channel -------------------------------------- */
#define ACTNORM_SCALE 3.0
/* b = -mean, s = log(1 / (std + 1e-6)) / 3 over all rows of x (rows, c), and with a comm
 * over the rows of every process (the sums are added up before the division). */
void actnorm_init(real *b, real *s, const real *x, size_t rows, int c, const glow_comm *comm);
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

/* ---- moving values ------------------------------------------------------------------- */
/* dst[r, 0:n] += src[r, 0:n] with row strides ld_dst, ld_src. */
void add_columns(real *dst, int ld_dst, const real *src, int ld_src, size_t rows, int n);
/* even, odd (rows, half) = the even and odd columns of src (rows, 2 half), and back. */
void deinterleave(real *even, real *odd, const real *src, size_t rows, int half);
void interleave(real *dst, const real *even, const real *odd, size_t rows, int half);

/* ---- threads for work that is not arithmetic ------------------------------------------ */
/* fn(arg, i) for i in [0, n), on the calling thread's OpenMP threads, taken as they come
 * free (image decoding, say): fn must not depend on the order. */
void parallel_for(int n, void (*fn)(void *arg, int i), void *arg);

/* ---- the optimizer's update (optim.c has the rule; glow.h its settings) --------------- */
/* The sum of g[i]^2 over n values, in double. */
double sum_squares(const real *g, size_t n);
/* One Adam (adamax: Adamax) update of n parameters with gradient clip * grads: the moments
 * m, v and the weight average avg (decay) move with them. */
void optimizer_update(real *params, real *m, real *v, real *avg, const real *grads, size_t n,
                      double clip, double lr, double b1, double b2, double eps, double c1,
                      double c2, double decay, int adamax);

#endif
