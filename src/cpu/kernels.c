/* kernels.c: convolutions through BLAS, reductions, threads. See kernels.h.
 *
 * A 3x3 convolution is im2col + one GEMM: each output pixel's 3x3xCin neighbourhood is laid
 * out as one row of a (rows, 9*Cin) matrix whose column order (ky, kx, ci) matches the
 * weight layout (Cout, 3, 3, Cin), so out = col @ w^T. The backward pass reuses the same
 * scratch for d col = dout @ w and gathers it back (col2im) without atomics. */
#include <cblas.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include <string.h>
#include <strings.h>
#include "cpu.h"

/* OpenBLAS's own controls; declared here because cblas.h of other BLASes lacks them. */
char *openblas_get_config(void);

/* OpenMP's thread count is a setting of the calling thread, and the OpenMP build of
 * OpenBLAS follows it on each call: so contexts with different counts can run at once in
 * different threads. */
int backend_enter(const backend *be) {
    int saved = omp_get_max_threads();
    if (be->threads != saved) omp_set_num_threads(be->threads);
    return saved;
}

void backend_leave(int saved) {
    if (omp_get_max_threads() != saved) omp_set_num_threads(saved);
}

int backend_cores(void) { return omp_get_num_procs(); }

void parallel_for(int n, void (*fn)(void *arg, int i), void *arg) {
    #pragma omp parallel for schedule(dynamic, 1)
    for (int i = 0; i < n; i++) fn(arg, i);
}

const char *glow_blas_info(void) { return openblas_get_config(); }

/* The BLAS's rate on an n x n x n product in the library's precision: the best of 7 timed
 * products after one untimed (the peak; other processes only ever slow a run down). */
double gemm_gflops(int n) {
    size_t nn = (size_t)n * n;
    real *a = malloc(sizeof(real) * nn), *b = malloc(sizeof(real) * nn), *c = malloc(sizeof(real) * nn);
    double best = 0;
    if (a && b && c) {
        for (size_t i = 0; i < nn; i++) a[i] = (real)(i % 7) - 3, b[i] = (real)(i % 5) - 2;
        for (int r = -1; r < 7; r++) {
            double t0 = omp_get_wtime();
            gemm(0, 0, n, n, n, 1, a, n, b, n, 0, c, n);
            double t = omp_get_wtime() - t0;
            if (r >= 0 && 2.0 * n * nn / t / 1e9 > best) best = 2.0 * n * nn / t / 1e9;
        }
    }
    free(a), free(b), free(c);
    return best;
}

char *openblas_get_corename(void);

/* OpenBLAS picks its kernels from the CPU's model number when it loads; a CPU it does not
 * know (a virtual machine's "Intel Xeon Processor", say) gets the generic Prescott kernels,
 * 7x slower here than the AVX-512 ones the CPU supports. */
const char *glow_blas_coretype_hint(void) {
    const char *core = openblas_get_corename();
    if (!core || strcasecmp(core, "Prescott")) return NULL;
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl"))
        return "SkylakeX";
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return "Haswell";
    return NULL;
}

/* Both settings are read when the libraries load, hence the re-execution. A passive wait
 * costs nothing when the cores are ours and avoids a collapse (10x here) when another
 * process competes for them: spinning OpenMP threads then steal the time of the workers. */
void glow_tune_environment(char **argv) {
    const char *core = glow_blas_coretype_hint();
    int change = 0;
    if (core && !getenv("OPENBLAS_CORETYPE")) change = !setenv("OPENBLAS_CORETYPE", core, 1);
    if (!getenv("OMP_WAIT_POLICY")) change |= !setenv("OMP_WAIT_POLICY", "passive", 1);
    if (change) execv("/proc/self/exe", argv);
}

void gemm(int trans_a, int trans_b, int m, int n, int k, real alpha, const real *a, int lda,
          const real *b, int ldb, real beta, real *c, int ldc) {
    if (m == 0 || n == 0) return;
    enum CBLAS_TRANSPOSE ta = trans_a ? CblasTrans : CblasNoTrans;
    enum CBLAS_TRANSPOSE tb = trans_b ? CblasTrans : CblasNoTrans;
    if (sizeof(real) == sizeof(double))
        cblas_dgemm(CblasRowMajor, ta, tb, m, n, k, alpha, (const double *)a, lda,
                    (const double *)b, ldb, beta, (double *)c, ldc);
    else
        cblas_sgemm(CblasRowMajor, ta, tb, m, n, k, alpha, (const float *)a, lda,
                    (const float *)b, ldb, beta, (float *)c, ldc);
}

/* Two ways to a 3x3 convolution, chosen by which side has fewer channels:
 * - input side (im2col): col (rows, 9*cin) holds each pixel's neighbourhood, out = col W^T;
 * - output side: Y = x W^T with W seen as (cout*9, cin), so Y[p, co*9 + tap] is pixel p's
 *   contribution through one tap, and out[q, co] = sum over taps of Y[q + d_tap, co*9 + tap].
 * Both do the same multiply-adds; the scratch is 9 times the smaller side. The backward
 * pass mirrors the choice: the output side gathers dout into (rows, cout*9) instead. */
static int output_side(int cin, int cout) { return cout < cin; }

size_t conv3x3_scratch(size_t rows, int cin, int cout) {
    return rows * 9 * (size_t)(output_side(cin, cout) ? cout : cin);
}

/* col (B*H*W, 9*cin): row (b,i,j), column (ky*3+kx)*cin + ci = x[b, i+ky-1, j+kx-1, ci].
 * The three taps of a kernel row are three neighbouring pixels, contiguous in x: one copy,
 * with zeros for the taps that fall outside the image. */
CLONED static void im2col3x3(real *col, const real *x, int batch, int h, int width, int cin) {
    #pragma omp parallel for collapse(2) schedule(static)
    for (int b = 0; b < batch; b++)
        for (int i = 0; i < h; i++)
            for (int j = 0; j < width; j++) {
                real *row = col + (((size_t)b * h + i) * width + j) * 9 * cin;
                int kx0 = j == 0, kx1 = j == width - 1 ? 2 : 3; /* taps inside: [kx0, kx1) */
                for (int ky = 0; ky < 3; ky++) {
                    int yi = i + ky - 1;
                    real *dst = row + ky * 3 * cin;
                    if (yi < 0 || yi >= h) {
                        memset(dst, 0, sizeof(real) * 3 * cin);
                        continue;
                    }
                    const real *src = x + (((size_t)b * h + yi) * width + j + kx0 - 1) * cin;
                    if (kx0) memset(dst, 0, sizeof(real) * cin);
                    memcpy(dst + kx0 * cin, src, sizeof(real) * (kx1 - kx0) * cin);
                    if (kx1 < 3) memset(dst + 2 * cin, 0, sizeof(real) * cin);
                }
            }
}

/* dx[b,i,j,:] += sum over taps of dcol[(b, i-ky+1, j-kx+1), tap, :]: a gather per input
 * pixel, so threads never write the same element. */
CLONED static void col2im3x3_add(real *dx, const real *dcol, int batch, int h, int width, int cin) {
    #pragma omp parallel for collapse(2) schedule(static)
    for (int b = 0; b < batch; b++)
        for (int i = 0; i < h; i++)
            for (int j = 0; j < width; j++) {
                real *dst = dx + (((size_t)b * h + i) * width + j) * cin;
                for (int ky = 0; ky < 3; ky++) {
                    int oi = i - ky + 1;
                    if (oi < 0 || oi >= h) continue;
                    for (int kx = 0; kx < 3; kx++) {
                        int oj = j - kx + 1;
                        if (oj < 0 || oj >= width) continue;
                        const real *src =
                            dcol + (((size_t)b * h + oi) * width + oj) * 9 * cin + (ky * 3 + kx) * cin;
                        for (int c = 0; c < cin; c++) dst[c] += src[c];
                    }
                }
            }
}

/* out[q, co] = sum over taps of y[q + d_tap, co*9 + tap] (+ bias): the output side's sum,
 * over the taps inside the image only, [ky0, ky1) x [kx0, kx1). */
CLONED static void tap_sum(real *out, const real *y, const real *bias, int batch, int h, int width,
                    int cout) {
    size_t ld = 9 * (size_t)cout;
    #pragma omp parallel for collapse(2) schedule(static)
    for (int b = 0; b < batch; b++)
        for (int i = 0; i < h; i++)
            for (int j = 0; j < width; j++) {
                real *dst = out + (((size_t)b * h + i) * width + j) * cout;
                int ky0 = i == 0, ky1 = i == h - 1 ? 2 : 3, kx0 = j == 0, kx1 = j == width - 1 ? 2 : 3;
                for (int co = 0; co < cout; co++) {
                    real acc = bias ? bias[co] : 0;
                    for (int ky = ky0; ky < ky1; ky++) {
                        const real *src = y + (((size_t)b * h + i + ky - 1) * width + j) * ld + co * 9 + ky * 3;
                        for (int kx = kx0; kx < kx1; kx++) acc += src[(kx - 1) * (ptrdiff_t)ld + kx];
                    }
                    dst[co] = acc;
                }
            }
}

/* g[p, co*9 + tap] = dout[p - d_tap, co], zero where p - d_tap is outside the image. */
CLONED static void tap_spread(real *g, const real *dout, int batch, int h, int width, int cout) {
    #pragma omp parallel for collapse(2) schedule(static)
    for (int b = 0; b < batch; b++)
        for (int i = 0; i < h; i++)
            for (int j = 0; j < width; j++) {
                real *dst = g + (((size_t)b * h + i) * width + j) * 9 * cout;
                for (int ky = 0; ky < 3; ky++) {
                    int oi = i - ky + 1;
                    for (int kx = 0; kx < 3; kx++) {
                        int oj = j - kx + 1, tap = ky * 3 + kx;
                        if (oi < 0 || oi >= h || oj < 0 || oj >= width) {
                            for (int co = 0; co < cout; co++) dst[co * 9 + tap] = 0;
                        } else {
                            const real *src = dout + (((size_t)b * h + oi) * width + oj) * cout;
                            for (int co = 0; co < cout; co++) dst[co * 9 + tap] = src[co];
                        }
                    }
                }
            }
}

CLONED static void add_bias(real *out, const real *bias, size_t rows, int cout) {
    #pragma omp parallel for schedule(static)
    for (size_t r = 0; r < rows; r++)
        for (int c = 0; c < cout; c++) out[r * cout + c] += bias[c];
}

void conv3x3_forward(real *out, const real *x, const real *w, const real *bias, int batch,
                     int h, int width, int cin, int cout, real *scratch) {
    size_t rows = (size_t)batch * h * width;
    if (output_side(cin, cout)) {
        gemm(0, 1, (int)rows, 9 * cout, cin, 1, x, cin, w, cin, 0, scratch, 9 * cout);
        tap_sum(out, scratch, bias, batch, h, width, cout);
        return;
    }
    im2col3x3(scratch, x, batch, h, width, cin);
    gemm(0, 1, (int)rows, cout, 9 * cin, 1, scratch, 9 * cin, w, 9 * cin, 0, out, cout);
    if (bias) add_bias(out, bias, rows, cout);
}

/* The packed GEMM's (n, k): forward, W as (9*cout, cin) on the output side and (cout, 9*cin)
 * on the input side; backward, the transposes, dx = g W on the output side and
 * d col = dout W on the input side. */
static void packed_shape(int cin, int cout, int for_backward, int *n, int *k) {
    int n_fwd = output_side(cin, cout) ? 9 * cout : cout, k_fwd = output_side(cin, cout) ? cin : 9 * cin;
    *n = for_backward ? k_fwd : n_fwd;
    *k = for_backward ? n_fwd : k_fwd;
}

size_t conv3x3_packed_size(int cin, int cout) {
    int n, k;
    packed_shape(cin, cout, 0, &n, &k);
    size_t fwd = packed_size(n, k), bwd = packed_size(k, n);
    return fwd > bwd ? fwd : bwd;
}

void conv3x3_pack(const backend *be, real *dst, const real *w, int cin, int cout,
                  int for_backward) {
    int n, k;
    packed_shape(cin, cout, for_backward, &n, &k);
    pack_weights(be, dst, w, n, k, for_backward);
}

/* out = (out * scale) then ReLU, per channel: the output side's tap sums have the shift. */
CLONED static void scale_rows(real *out, const real *scale, int relu, size_t rows, int c) {
    #pragma omp parallel for schedule(static)
    for (size_t r = 0; r < rows; r++)
        for (int j = 0; j < c; j++) {
            real v = scale ? out[r * c + j] * scale[j] : out[r * c + j];
            out[r * c + j] = relu && !(v > 0) ? 0 : v;
        }
}

void conv3x3_forward_packed(const backend *be, real *out, const real *x, const real *packed,
                            const real *shift, const real *scale, int flags, int batch, int h,
                            int width, int cin, int cout, real *scratch) {
    size_t rows = (size_t)batch * h * width;
    int relu = flags & PACKED_RELU;
    if (output_side(cin, cout)) {
        packed_gemm(be, scratch, 9 * cout, x, cin, packed, rows, 9 * cout, cin, NULL, NULL, 0);
        tap_sum(out, scratch, shift, batch, h, width, cout);
        if (scale || relu) scale_rows(out, scale, relu, rows, cout);
        return;
    }
    im2col3x3(scratch, x, batch, h, width, cin);
    packed_gemm(be, out, cout, scratch, 9 * cin, packed, rows, cout, 9 * cin, shift, scale, relu);
}

/* dw (m, n) += a^T b over the rows: on AMX in the packed path's bf16x3 mode where the
 * shapes suit it, else through BLAS. */
static void gemm_dw(const backend *be, real *dw, const real *a, int m, const real *b, int n,
                    size_t rows, int packed) {
    if (!packed || !packed_gemm_tn(be, dw, n, a, m, b, n, rows, m, n))
        gemm(1, 0, m, n, (int)rows, 1, a, m, b, n, 1, dw, n);
}

/* dx (rows, n) (+)= a (rows, k) @ w (k, n): through BLAS, or on w packed for the backward
 * pass when packed is not NULL. */
static void gemm_dx(const backend *be, real *dx, const real *a, const real *w,
                    const real *packed, size_t rows, int n, int k, int add) {
    if (packed) packed_gemm(be, dx, n, a, k, packed, rows, n, k, NULL, NULL, add ? PACKED_ADD : 0);
    else gemm(0, 0, (int)rows, n, k, 1, a, k, w, n, add ? 1 : 0, dx, n);
}

void conv3x3_backward_packed(const backend *be, real *dx, int dx_add, real *dw, real *dbias,
                             const real *dout, const real *x, const real *w, const real *packed,
                             int batch, int h, int width, int cin, int cout, real *scratch) {
    size_t rows = (size_t)batch * h * width;
    if (dbias) {
        double sums[cout];
        channel_sums(sums, dout, NULL, rows, cout);
        for (int c = 0; c < cout; c++) dbias[c] += (real)sums[c];
    }
    if (output_side(cin, cout)) {
        /* dW[co*9 + tap, ci] = sum_p g[p, co*9 + tap] x[p, ci]; dx = g W. */
        tap_spread(scratch, dout, batch, h, width, cout);
        gemm_dw(be, dw, scratch, 9 * cout, x, cin, rows, packed != NULL);
        if (dx) gemm_dx(be, dx, scratch, w, packed, rows, cin, 9 * cout, dx_add);
        return;
    }
    im2col3x3(scratch, x, batch, h, width, cin);
    gemm_dw(be, dw, dout, cout, scratch, 9 * cin, rows, packed != NULL);
    if (dx) {
        gemm_dx(be, scratch, dout, w, packed, rows, 9 * cin, cout, 0);
        if (!dx_add) memset(dx, 0, sizeof(real) * rows * cin);
        col2im3x3_add(dx, scratch, batch, h, width, cin);
    }
}

void conv3x3_backward(real *dx, real *dw, real *dbias, const real *dout, const real *x,
                      const real *w, int batch, int h, int width, int cin, int cout,
                      real *scratch) {
    conv3x3_backward_packed(NULL, dx, 1, dw, dbias, dout, x, w, NULL, batch, h, width, cin,
                            cout, scratch);
}

void conv3x3_forward_ref(real *out, const real *x, const real *w, const real *bias, int batch,
                         int h, int width, int cin, int cout) {
    for (int b = 0; b < batch; b++)
        for (int i = 0; i < h; i++)
            for (int j = 0; j < width; j++)
                for (int co = 0; co < cout; co++) {
                    double acc = bias ? bias[co] : 0;
                    for (int ky = 0; ky < 3; ky++)
                        for (int kx = 0; kx < 3; kx++) {
                            int yi = i + ky - 1, xj = j + kx - 1;
                            if (yi < 0 || yi >= h || xj < 0 || xj >= width) continue;
                            for (int ci = 0; ci < cin; ci++)
                                acc += (double)x[(((size_t)b * h + yi) * width + xj) * cin + ci] *
                                       w[((size_t)co * 9 + ky * 3 + kx) * cin + ci];
                        }
                    out[(((size_t)b * h + i) * width + j) * cout + co] = (real)acc;
                }
}

void conv3x3_backward_ref(real *dx, real *dw, real *dbias, const real *dout, const real *x,
                          const real *w, int batch, int h, int width, int cin, int cout) {
    for (int b = 0; b < batch; b++)
        for (int i = 0; i < h; i++)
            for (int j = 0; j < width; j++)
                for (int co = 0; co < cout; co++) {
                    real g = dout[(((size_t)b * h + i) * width + j) * cout + co];
                    if (dbias) dbias[co] += g;
                    for (int ky = 0; ky < 3; ky++)
                        for (int kx = 0; kx < 3; kx++) {
                            int yi = i + ky - 1, xj = j + kx - 1;
                            if (yi < 0 || yi >= h || xj < 0 || xj >= width) continue;
                            for (int ci = 0; ci < cin; ci++) {
                                size_t xi = (((size_t)b * h + yi) * width + xj) * cin + ci;
                                size_t wi = ((size_t)co * 9 + ky * 3 + kx) * cin + ci;
                                dw[wi] += g * x[xi];
                                if (dx) dx[xi] += g * w[wi];
                            }
                        }
                }
}

void conv1x1_forward(real *out, const real *x, const real *w, size_t rows, int cin, int cout) {
    gemm(0, 1, (int)rows, cout, cin, 1, x, cin, w, cin, 0, out, cout);
}

void conv1x1_backward(real *dx, real *dw, const real *dout, const real *x, const real *w,
                      size_t rows, int cin, int cout) {
    conv1x1_backward_packed(NULL, dx, 1, dw, dout, x, w, NULL, rows, cin, cout);
}

void conv1x1_backward_packed(const backend *be, real *dx, int dx_add, real *dw,
                             const real *dout, const real *x, const real *w, const real *packed,
                             size_t rows, int cin, int cout) {
    gemm_dw(be, dw, dout, cout, x, cin, rows, packed != NULL);
    if (dx) gemm_dx(be, dx, dout, w, packed, rows, cin, cout, dx_add);
}

#define SUM_CHUNKS 64

/* Both sums of channel_sums2 in one pass over the rows, in SUM_CHUNKS fixed chunks added in
 * order (the same result on any number of threads); columns in blocks of SUM_BLOCK so that
 * the partial sums stay a fixed size on the stack. */
#define SUM_BLOCK 256
CLONED static void sums_pass(double *sa, double *sab, const real *a, const real *b, size_t rows, int c) {
    double part[SUM_CHUNKS][2 * SUM_BLOCK];
    size_t per = (rows + SUM_CHUNKS - 1) / SUM_CHUNKS;
    for (int c0 = 0; c0 < c; c0 += SUM_BLOCK) {
        int nc = c - c0 < SUM_BLOCK ? c - c0 : SUM_BLOCK;
        #pragma omp parallel for schedule(static)
        for (int k = 0; k < SUM_CHUNKS; k++) {
            double *pa = part[k], *pab = part[k] + SUM_BLOCK;
            for (int j = 0; j < nc; j++) pa[j] = pab[j] = 0;
            size_t r0 = k * per, r1 = r0 + per < rows ? r0 + per : rows;
            for (size_t r = r0; r < r1; r++) {
                const real *ar = a + r * c + c0;
                if (sa)
                    for (int j = 0; j < nc; j++) pa[j] += ar[j];
                if (sab) {
                    const real *br = b + r * c + c0;
                    for (int j = 0; j < nc; j++) pab[j] += (double)ar[j] * br[j];
                }
            }
        }
        for (int j = 0; j < nc; j++) {
            double ta = 0, tab = 0;
            for (int k = 0; k < SUM_CHUNKS; k++) ta += part[k][j], tab += part[k][SUM_BLOCK + j];
            if (sa) sa[c0 + j] = ta;
            if (sab) sab[c0 + j] = tab;
        }
    }
}

void channel_sums(double *sums, const real *a, const real *b, size_t rows, int c) {
    if (b) sums_pass(NULL, sums, a, b, rows, c);
    else sums_pass(sums, NULL, a, NULL, rows, c);
}

void channel_sums2(double *sum_a, double *sum_ab, const real *a, const real *b, size_t rows, int c) {
    sums_pass(sum_a, sum_ab, a, b, rows, c);
}
