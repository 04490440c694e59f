/* test_kernels.c: every optimised kernel against its plain reference: the 3x3 convolution
 * (im2col + GEMM) against conv3x3_*_ref, the 1x1 convolution and gemm against naive loops,
 * channel_sums against a naive double sum and across thread counts. The references
 * themselves are pinned down by a one-tap kernel (the orientation of the taps) and by the
 * adjoint identity that ties their forward and backward passes together.
 *
 * Tolerances are relative to the largest reference value: 1e-12 in double, 1e-5 in float
 * (the optimised kernels accumulate in glow_real, the references in double). */
#include <omp.h>
#include <stdlib.h>
#include <string.h>
#include "test.h"
#include "backend.h"

#define REL_TOL (IS_DOUBLE ? 1e-12 : 1e-5)

/* a (n) := uniform in [-1, 1), a function of the seed. */
static void fill(real *a, size_t n, uint64_t seed) {
    uint64_t key = glow_rng_key(seed, 0x6b65726e /* "kern" */, n, 0);
    for (size_t i = 0; i < n; i++) a[i] = (real)(2 * glow_rng_uniform(key, i) - 1);
}

static real *new_filled(size_t n, uint64_t seed) {
    real *a = malloc(sizeof(real) * (n ? n : 1));
    fill(a, n, seed);
    return a;
}

/* Fails the test unless max |a - ref| <= tol * max |ref| (tol absolute if ref is all zero);
 * the message gives the worst element and the first values of both. */
static void check_close(const char *what, const real *a, const real *ref, size_t n, double tol) {
    double scale = 0, worst = 0;
    size_t at = 0;
    for (size_t i = 0; i < n; i++) scale = fmax(scale, fabs((double)ref[i]));
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)ref[i]);
        if (!(d <= worst) && !isnan(worst)) worst = d, at = i; /* a NaN stays */
    }
    double rel = worst / (scale > 0 ? scale : 1);
    CHECK(rel <= tol,
          "%s: max diff %.3g (relative %.3g > %.1g) at [%zu]: %.10g vs %.10g; first values "
          "%.6g %.6g %.6g vs %.6g %.6g %.6g",
          what, worst, rel, tol, at, (double)a[at], (double)ref[at], (double)a[0],
          n > 1 ? (double)a[1] : 0.0, n > 2 ? (double)a[2] : 0.0, (double)ref[0],
          n > 1 ? (double)ref[1] : 0.0, n > 2 ? (double)ref[2] : 0.0);
}

/* check_close for an (m, n) result stored with row stride ld, whose columns [n, ld) held
 * `sentinel` and must still: rows compacted first so that the sentinel sets no scale. */
static void check_rows(const char *what, real *out, real *ref, int m, int n, int ld, real sentinel,
                       double tol) {
    int pad_ok = 1;
    for (int i = 0; i < m; i++) {
        for (int j = n; j < ld; j++) pad_ok &= out[i * ld + j] == sentinel;
        memmove(out + i * n, out + i * ld, sizeof(real) * n);
        memmove(ref + i * n, ref + i * ld, sizeof(real) * n);
    }
    check_close(what, out, ref, (size_t)m * n, tol);
    CHECK(pad_ok, "%s: wrote past n into the padding", what);
}

static double dot(const real *a, const real *b, size_t n) {
    double t = 0;
    for (size_t i = 0; i < n; i++) t += (double)a[i] * b[i];
    return t;
}

typedef struct { int batch, h, w, cin, cout; } conv_shape;

/* 1x1 spatial, odd widths, a single input channel, batch 1 to 3, and one shape big enough
 * for the threads and BLAS's blocking to matter. */
static const conv_shape conv_shapes[] = {
    {2, 5, 7, 3, 4}, {3, 1, 1, 2, 5}, {1, 1, 5, 1, 3}, {2, 4, 3, 1, 6},
    {2, 3, 5, 8, 3}, {1, 6, 1, 4, 2}, {3, 9, 11, 16, 12},
};
#define N_CONV_SHAPES (int)(sizeof conv_shapes / sizeof conv_shapes[0])

TEST(kernel_conv3x3_forward) {
    for (int t = 0; t < N_CONV_SHAPES; t++) {
        conv_shape s = conv_shapes[t];
        size_t rows = (size_t)s.batch * s.h * s.w;
        real *x = new_filled(rows * s.cin, 10 + t), *w = new_filled((size_t)s.cout * 9 * s.cin, 20 + t);
        real *bias = new_filled(s.cout, 30 + t), *out = new_filled(rows * s.cout, 40 + t);
        real *ref = malloc(sizeof(real) * rows * s.cout);
        real *scratch = malloc(sizeof(real) * conv3x3_scratch(rows, s.cin, s.cout));
        for (int with_bias = 0; with_bias < 2; with_bias++) {
            char what[96];
            snprintf(what, sizeof what, "%dx%dx%dx%d -> %d, %s bias", s.batch, s.h, s.w, s.cin,
                     s.cout, with_bias ? "with" : "no");
            const real *b = with_bias ? bias : NULL;
            fill(out, rows * s.cout, 50 + t); /* garbage: the forward pass overwrites */
            conv3x3_forward(out, x, w, b, s.batch, s.h, s.w, s.cin, s.cout, scratch);
            conv3x3_forward_ref(ref, x, w, b, s.batch, s.h, s.w, s.cin, s.cout);
            check_close(what, out, ref, rows * s.cout, REL_TOL);
        }
        free(x), free(w), free(bias), free(out), free(ref), free(scratch);
    }
}

TEST(kernel_conv3x3_backward) {
    for (int t = 0; t < N_CONV_SHAPES; t++) {
        conv_shape s = conv_shapes[t];
        size_t rows = (size_t)s.batch * s.h * s.w, nw = (size_t)s.cout * 9 * s.cin;
        size_t nx = rows * s.cin;
        real *x = new_filled(nx, 10 + t), *w = new_filled(nw, 20 + t);
        real *dout = new_filled(rows * s.cout, 30 + t);
        real *scratch = malloc(sizeof(real) * conv3x3_scratch(rows, s.cin, s.cout));
        /* Optimised and reference gradients start from the same non-zero values, so both
         * must add to them; a third run from zero checks "added" means exactly +=. */
        real *dx = new_filled(nx, 60 + t), *dw = new_filled(nw, 61 + t), *db = new_filled(s.cout, 62 + t);
        real *dx_ref = new_filled(nx, 60 + t), *dw_ref = new_filled(nw, 61 + t),
             *db_ref = new_filled(s.cout, 62 + t);
        real *dx0 = calloc(nx, sizeof(real)), *dw0 = calloc(nw, sizeof(real)),
             *db0 = calloc(s.cout, sizeof(real));
        char what[96];
        conv3x3_backward(dx, dw, db, dout, x, w, s.batch, s.h, s.w, s.cin, s.cout, scratch);
        conv3x3_backward_ref(dx_ref, dw_ref, db_ref, dout, x, w, s.batch, s.h, s.w, s.cin, s.cout);
        conv3x3_backward(dx0, dw0, db0, dout, x, w, s.batch, s.h, s.w, s.cin, s.cout, scratch);
#define SHAPE_MSG(part) (snprintf(what, sizeof what, "%dx%dx%dx%d -> %d: %s", s.batch, s.h, s.w, \
                                  s.cin, s.cout, part), what)
        check_close(SHAPE_MSG("dx"), dx, dx_ref, nx, REL_TOL);
        check_close(SHAPE_MSG("dw"), dw, dw_ref, nw, REL_TOL);
        check_close(SHAPE_MSG("dbias"), db, db_ref, s.cout, REL_TOL);
        /* (prefilled + g) - prefill == g from zero */
        real *init = new_filled(nw, 61 + t);
        for (size_t i = 0; i < nw; i++) dw[i] -= init[i];
        check_close(SHAPE_MSG("dw accumulates"), dw, dw0, nw, 10 * REL_TOL);
        free(init);
        init = new_filled(nx, 60 + t);
        for (size_t i = 0; i < nx; i++) dx[i] -= init[i];
        check_close(SHAPE_MSG("dx accumulates"), dx, dx0, nx, 10 * REL_TOL);
        free(init);
        init = new_filled(s.cout, 62 + t);
        for (int i = 0; i < s.cout; i++) db[i] -= init[i];
        check_close(SHAPE_MSG("dbias accumulates"), db, db0, s.cout, 10 * REL_TOL);
        free(init);
        /* dx and dbias are optional: dw alone is unchanged by leaving them out. */
        memset(dw, 0, sizeof(real) * nw);
        conv3x3_backward(NULL, dw, NULL, dout, x, w, s.batch, s.h, s.w, s.cin, s.cout, scratch);
        check_close(SHAPE_MSG("dw without dx, dbias"), dw, dw0, nw, REL_TOL);
        /* dx from the weights packed for the backward pass: added to what is there, or
         * overwriting it (dx0 holds the gradient from zero). */
        if (test_backend(1)->packed) {
            real *packed = malloc(sizeof(real) * conv3x3_packed_size(s.cin, s.cout));
            conv3x3_pack(test_backend(1), packed, w, s.cin, s.cout, 1);
            fill(dx, nx, 60 + t), fill(dw, nw, 61 + t), fill(db, s.cout, 62 + t);
            conv3x3_backward_packed(test_backend(1), dx, 1, dw, db, dout, x, NULL, packed, s.batch, s.h, s.w,
                                    s.cin, s.cout, scratch);
            check_close(SHAPE_MSG("packed: dx"), dx, dx_ref, nx, REL_TOL);
            check_close(SHAPE_MSG("packed: dw"), dw, dw_ref, nw, REL_TOL);
            check_close(SHAPE_MSG("packed: dbias"), db, db_ref, s.cout, REL_TOL);
            fill(dx, nx, 60 + t);
            conv3x3_backward_packed(test_backend(1), dx, 0, dw, NULL, dout, x, NULL, packed, s.batch, s.h, s.w,
                                    s.cin, s.cout, scratch);
            check_close(SHAPE_MSG("packed: dx overwritten"), dx, dx0, nx, REL_TOL);
            free(packed);
        }
#undef SHAPE_MSG
        free(x), free(w), free(dout), free(scratch), free(dx), free(dw), free(db);
        free(dx_ref), free(dw_ref), free(db_ref), free(dx0), free(dw0), free(db0);
    }
}

/* The reference's layout: a kernel whose only non-zero tap is (ky, kx), the identity over
 * channels, moves pixel (i + ky - 1, j + kx - 1) to (i, j), with zeros from outside. */
TEST(kernel_conv3x3_ref_taps) {
    const int batch = 2, h = 3, w = 4, c = 2;
    size_t n = (size_t)batch * h * w * c;
    real *x = new_filled(n, 5), *out = malloc(sizeof(real) * n), *wt = malloc(sizeof(real) * c * 9 * c);
    real *scratch = malloc(sizeof(real) * conv3x3_scratch((size_t)batch * h * w, c, c));
    real *out2 = malloc(sizeof(real) * n);
    for (int ky = 0; ky < 3; ky++)
        for (int kx = 0; kx < 3; kx++) {
            memset(wt, 0, sizeof(real) * c * 9 * c);
            for (int k = 0; k < c; k++) wt[((size_t)k * 9 + ky * 3 + kx) * c + k] = 1;
            conv3x3_forward_ref(out, x, wt, NULL, batch, h, w, c, c);
            conv3x3_forward(out2, x, wt, NULL, batch, h, w, c, c, scratch);
            int bad = 0;
            for (int b = 0; b < batch; b++)
                for (int i = 0; i < h; i++)
                    for (int j = 0; j < w; j++)
                        for (int k = 0; k < c; k++) {
                            int yi = i + ky - 1, xj = j + kx - 1;
                            real want = yi < 0 || yi >= h || xj < 0 || xj >= w
                                            ? 0 : x[(((size_t)b * h + yi) * w + xj) * c + k];
                            size_t o = (((size_t)b * h + i) * w + j) * c + k;
                            bad += out[o] != want || out2[o] != want;
                        }
            CHECK(bad == 0, "tap (%d,%d): %d outputs are not the shifted input", ky, kx, bad);
        }
    free(x), free(out), free(out2), free(wt), free(scratch);
}

/* conv(x, w) is linear in x and in w, so for any dout the backward pass's dx = J_x^T dout
 * and dw = J_w^T dout satisfy <dout, conv(x, w)> = <dx, x> = <dw, w>, and with the bias
 * <dout, out> = <dw, w> + <dbias, bias>. This ties the backward references to the forward
 * one without trusting either. */
TEST(kernel_conv3x3_adjoint) {
    for (int t = 0; t < N_CONV_SHAPES; t++) {
        conv_shape s = conv_shapes[t];
        size_t rows = (size_t)s.batch * s.h * s.w, nw = (size_t)s.cout * 9 * s.cin;
        real *x = new_filled(rows * s.cin, 1 + t), *w = new_filled(nw, 2 + t);
        real *bias = new_filled(s.cout, 3 + t), *dout = new_filled(rows * s.cout, 4 + t);
        real *out = malloc(sizeof(real) * rows * s.cout);
        real *dx = calloc(rows * s.cin, sizeof(real)), *dw = calloc(nw, sizeof(real)),
             *db = calloc(s.cout, sizeof(real));
        conv3x3_forward_ref(out, x, w, bias, s.batch, s.h, s.w, s.cin, s.cout);
        conv3x3_backward_ref(dx, dw, db, dout, x, w, s.batch, s.h, s.w, s.cin, s.cout);
        double lhs = dot(dout, out, rows * s.cout), bterm = dot(db, bias, s.cout);
        double via_w = dot(dw, w, nw) + bterm, via_x = dot(dx, x, rows * s.cin) + bterm;
        double mag = 0; /* the rounding scale: sum |dout * out| */
        for (size_t i = 0; i < rows * s.cout; i++) mag += fabs((double)dout[i] * out[i]);
        double tol = (IS_DOUBLE ? 1e-13 : 1e-6) * (1 + mag);
        CHECK(fabs(lhs - via_w) < tol && fabs(lhs - via_x) < tol,
              "shape %d: <dout,out> %.12g, <dw,w>+<db,b> %.12g, <dx,x>+<db,b> %.12g", t, lhs,
              via_w, via_x);
        free(x), free(w), free(bias), free(dout), free(out), free(dx), free(dw), free(db);
    }
}

TEST(kernel_conv1x1) {
    static const int shapes[][3] = {{1, 1, 1}, {7, 3, 5}, {1, 4, 2}, {130, 1, 6}, {257, 17, 9}, {64, 8, 8}};
    for (size_t t = 0; t < sizeof shapes / sizeof shapes[0]; t++) {
        size_t rows = shapes[t][0];
        int cin = shapes[t][1], cout = shapes[t][2];
        real *x = new_filled(rows * cin, 70 + t), *w = new_filled((size_t)cout * cin, 71 + t);
        real *dout = new_filled(rows * cout, 72 + t), *out = new_filled(rows * cout, 73 + t);
        real *ref = malloc(sizeof(real) * rows * cout);
        real *dx = new_filled(rows * cin, 74 + t), *dw = new_filled((size_t)cout * cin, 75 + t);
        real *dx_ref = new_filled(rows * cin, 74 + t), *dw_ref = new_filled((size_t)cout * cin, 75 + t);
        char what[64];
        /* out[r, co] = sum_ci x[r, ci] w[co, ci]; dx[r, ci] += sum_co dout[r, co] w[co, ci];
         * dw[co, ci] += sum_r dout[r, co] x[r, ci]. */
        for (size_t r = 0; r < rows; r++)
            for (int co = 0; co < cout; co++) {
                double acc = 0;
                for (int ci = 0; ci < cin; ci++) acc += (double)x[r * cin + ci] * w[co * cin + ci];
                ref[r * cout + co] = (real)acc;
            }
        for (size_t r = 0; r < rows; r++)
            for (int ci = 0; ci < cin; ci++) {
                double acc = dx_ref[r * cin + ci];
                for (int co = 0; co < cout; co++) acc += (double)dout[r * cout + co] * w[co * cin + ci];
                dx_ref[r * cin + ci] = (real)acc;
            }
        for (int co = 0; co < cout; co++)
            for (int ci = 0; ci < cin; ci++) {
                double acc = dw_ref[co * cin + ci];
                for (size_t r = 0; r < rows; r++) acc += (double)dout[r * cout + co] * x[r * cin + ci];
                dw_ref[co * cin + ci] = (real)acc;
            }
        conv1x1_forward(out, x, w, rows, cin, cout);
        snprintf(what, sizeof what, "%zu x %d -> %d: forward", rows, cin, cout);
        check_close(what, out, ref, rows * cout, REL_TOL);
        conv1x1_backward(dx, dw, dout, x, w, rows, cin, cout);
        snprintf(what, sizeof what, "%zu x %d -> %d: dx", rows, cin, cout);
        check_close(what, dx, dx_ref, rows * cin, REL_TOL);
        snprintf(what, sizeof what, "%zu x %d -> %d: dw", rows, cin, cout);
        check_close(what, dw, dw_ref, (size_t)cout * cin, REL_TOL);
        /* dx is optional: dw accumulates on its own. */
        fill(dw, (size_t)cout * cin, 75 + t);
        conv1x1_backward(NULL, dw, dout, x, w, rows, cin, cout);
        snprintf(what, sizeof what, "%zu x %d -> %d: dw without dx", rows, cin, cout);
        check_close(what, dw, dw_ref, (size_t)cout * cin, REL_TOL);
        if (test_backend(1)->packed) { /* dx from the weights packed for the backward pass */
            real *packed = malloc(sizeof(real) * packed_size(cin, cout));
            pack_weights(test_backend(1), packed, w, cin, cout, 1);
            fill(dx, rows * cin, 74 + t), fill(dw, (size_t)cout * cin, 75 + t);
            conv1x1_backward_packed(test_backend(1), dx, 1, dw, dout, x, NULL, packed, rows, cin, cout);
            snprintf(what, sizeof what, "%zu x %d -> %d: packed dx", rows, cin, cout);
            check_close(what, dx, dx_ref, rows * cin, REL_TOL);
            snprintf(what, sizeof what, "%zu x %d -> %d: packed dw", rows, cin, cout);
            check_close(what, dw, dw_ref, (size_t)cout * cin, REL_TOL);
            /* without dx_add, dx = dout w: the reference's sum minus the prefill */
            real *prefill = new_filled(rows * cin, 74 + t);
            for (size_t i = 0; i < rows * cin; i++) dx_ref[i] -= prefill[i];
            conv1x1_backward_packed(test_backend(1), dx, 0, dw, dout, x, NULL, packed, rows, cin, cout);
            snprintf(what, sizeof what, "%zu x %d -> %d: packed dx overwritten", rows, cin, cout);
            check_close(what, dx, dx_ref, rows * cin, 10 * REL_TOL);
            free(prefill);
            free(packed);
        }
        free(x), free(w), free(dout), free(out), free(ref), free(dx), free(dw), free(dx_ref), free(dw_ref);
    }
}

/* The naive sums in double, and the largest sum of |terms| (the rounding scale). */
static double naive_sums(double *sums, const real *a, const real *b, size_t rows, int c) {
    double scale = 0;
    for (int j = 0; j < c; j++) {
        double t = 0, abs_t = 0;
        for (size_t r = 0; r < rows; r++) {
            double v = b ? (double)a[r * c + j] * b[r * c + j] : (double)a[r * c + j];
            t += v, abs_t += fabs(v);
        }
        sums[j] = t;
        scale = fmax(scale, abs_t);
    }
    return scale;
}

TEST(kernel_channel_sums) {
    static const size_t rows_list[] = {1, 5, 63, 64, 65, 130, 1000, 4097};
    static const int c_list[] = {1, 3, 17};
    int threads = omp_get_max_threads();
    for (size_t t = 0; t < sizeof rows_list / sizeof rows_list[0]; t++)
        for (size_t u = 0; u < sizeof c_list / sizeof c_list[0]; u++) {
            size_t rows = rows_list[t];
            int c = c_list[u];
            real *a = new_filled(rows * c, 80 + t), *b = new_filled(rows * c, 90 + u);
            double got[17], want[17], again[17];
            for (int with_b = 0; with_b < 2; with_b++) {
                const real *bb = with_b ? b : NULL;
                double scale = naive_sums(want, a, bb, rows, c), worst = 0;
                omp_set_num_threads(1);
                channel_sums(got, a, bb, rows, c);
                for (int j = 0; j < c; j++) worst = fmax(worst, fabs(got[j] - want[j]));
                CHECK(worst <= 1e-13 * (1 + scale), "rows %zu, c %d, %s b: max diff %.3g (scale %.3g)",
                      rows, c, with_b ? "with" : "no", worst, scale);
                /* Determinism: the same bits on any number of threads. */
                for (int nt = 2; nt <= 3; nt++) {
                    omp_set_num_threads(nt);
                    channel_sums(again, a, bb, rows, c);
                    CHECK(memcmp(got, again, sizeof(double) * c) == 0,
                          "rows %zu, c %d, %s b: 1 and %d threads differ (%.17g vs %.17g)", rows, c,
                          with_b ? "with" : "no", nt, got[0], again[0]);
                }
            }
            free(a), free(b);
        }
    omp_set_num_threads(threads);
}

/* C = alpha op(A) op(B) + beta C with padded leading dimensions: the padding stays untouched. */
TEST(kernel_gemm) {
    static const int sizes[][3] = {{5, 7, 3}, {1, 9, 4}, {13, 2, 11}, {1, 1, 1}, {33, 40, 65}};
    const real alpha = (real)0.75, beta = (real)-1.5, sentinel = (real)12345;
    for (size_t t = 0; t < sizeof sizes / sizeof sizes[0]; t++)
        for (int ta = 0; ta < 2; ta++)
            for (int tb = 0; tb < 2; tb++) {
                int m = sizes[t][0], n = sizes[t][1], k = sizes[t][2];
                int a_rows = ta ? k : m, a_cols = ta ? m : k, b_rows = tb ? n : k, b_cols = tb ? k : n;
                int lda = a_cols + 2, ldb = b_cols + 1, ldc = n + 3;
                real *a = new_filled((size_t)a_rows * lda, 100 + t), *b = new_filled((size_t)b_rows * ldb, 110 + t);
                real *c = new_filled((size_t)m * ldc, 120 + t), *ref = new_filled((size_t)m * ldc, 120 + t);
                for (int i = 0; i < m; i++)
                    for (int j = n; j < ldc; j++) c[i * ldc + j] = ref[i * ldc + j] = sentinel;
                for (int i = 0; i < m; i++)
                    for (int j = 0; j < n; j++) {
                        double acc = 0;
                        for (int p = 0; p < k; p++) {
                            double av = ta ? a[p * lda + i] : a[i * lda + p];
                            double bv = tb ? b[j * ldb + p] : b[p * ldb + j];
                            acc += av * bv;
                        }
                        ref[i * ldc + j] = (real)(alpha * acc + beta * ref[i * ldc + j]);
                    }
                gemm(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
                char what[80];
                snprintf(what, sizeof what, "gemm(%s, %s) %dx%dx%d", ta ? "T" : "N", tb ? "T" : "N", m, n, k);
                check_rows(what, c, ref, m, n, ldc, sentinel, REL_TOL);
                free(a), free(b), free(c), free(ref);
            }
}

TEST(kernel_copy_columns) {
    const size_t rows = 37;
    const int ld_src = 9, ld_dst = 5, n = 4;
    real *src = new_filled(rows * ld_src, 130), *dst = new_filled(rows * ld_dst, 131);
    real *keep = new_filled(rows * ld_dst, 131);
    copy_columns(dst, ld_dst, src + 3, ld_src, rows, n);
    int bad = 0;
    for (size_t r = 0; r < rows; r++)
        for (int j = 0; j < ld_dst; j++)
            bad += dst[r * ld_dst + j] != (j < n ? src[r * ld_src + 3 + j] : keep[r * ld_dst + j]);
    CHECK(bad == 0, "%d elements wrong", bad);
    free(src), free(dst), free(keep);
}

/* The packed GEMM (float build on AVX-512; nothing to test elsewhere) against naive loops,
 * with weights packed from W or from its transpose, plain, with the fused shift and scale
 * (and ReLU), or adding to the output: row counts around the 6-row tile, column counts
 * around the 16-column vector and the 64-column panel, row strides wider than the matrix,
 * and nothing written past n. */
static void check_packed_gemm(glow_matmul matmul, double tol) {
    backend be = *test_backend(1);
    be.matmul = matmul;
    static const int sizes[][3] = {{1, 1, 1}, {5, 15, 3}, {6, 16, 18}, {7, 17, 128},
                                   {13, 63, 9}, {12, 64, 5}, {25, 65, 36}, {31, 130, 70},
                                   {17, 33, 64}, {9, 70, 47}, {20, 40, 48}, {40, 200, 1100}};
    static const char *modes[] = {"plain", "affine", "affine + ReLU", "adding"};
    const real sentinel = (real)12345;
    for (size_t t = 0; t < sizeof sizes / sizeof sizes[0]; t++)
        for (int mode = 0; mode < 4; mode++)
            for (int transposed = 0; transposed < 2; transposed++) {
                int m = sizes[t][0], n = sizes[t][1], k = sizes[t][2], lda = k + 3, ldo = n + 2;
                real *a = new_filled((size_t)m * lda, 200 + t), *w = new_filled((size_t)n * k, 210 + t);
                real *shift = new_filled(n, 220 + t), *scale = new_filled(n, 230 + t);
                real *out = new_filled((size_t)m * ldo, 240 + t), *ref = malloc(sizeof(real) * m * ldo);
                real *packed = malloc(sizeof(real) * packed_size(n, k));
                for (int i = 0; i < m; i++)
                    for (int j = 0; j < ldo; j++) {
                        double acc = mode == 3 && j < n ? out[i * ldo + j] : 0;
                        for (int p = 0; p < k && j < n; p++)
                            acc += (double)a[i * lda + p] * (transposed ? w[p * n + j] : w[j * k + p]);
                        real v = (real)acc;
                        if ((mode == 1 || mode == 2) && j < n) v = (v + shift[j]) * scale[j];
                        if (mode == 2) v = v > 0 ? v : 0;
                        ref[i * ldo + j] = j < n ? v : sentinel;
                        if (j >= n) out[i * ldo + j] = sentinel;
                    }
                pack_weights(&be, packed, w, n, k, transposed);
                int affine = mode == 1 || mode == 2;
                packed_gemm(&be, out, ldo, a, lda, packed, m, n, k, affine ? shift : NULL,
                            affine ? scale : NULL, mode == 2 ? PACKED_RELU : mode == 3 ? PACKED_ADD : 0);
                char what[96];
                snprintf(what, sizeof what, "%s packed gemm %dx%dx%d, %s%s",
                         matmul == GLOW_MATMUL_BF16X3 ? "bf16x3" : "float", m, n, k, modes[mode],
                         transposed ? ", transposed" : "");
                check_rows(what, out, ref, m, n, ldo, sentinel, tol);
                free(a), free(w), free(shift), free(scale), free(out), free(ref), free(packed);
            }
}

TEST(kernel_packed_gemm) {
    if (!test_backend(1)->packed) return;
    check_packed_gemm(GLOW_MATMUL_FP32, REL_TOL);
}

/* The same on AMX (where the CPU has it): rows around the 16-row tile, k around the 32-wide
 * tile row, the 48 below which float is used and the 1024 above which it is again.
 * 4e-5: bfloat16 alone (a dropped lo half) is off by ~2e-3. */
TEST(kernel_packed_gemm_bf16x3) {
    if (backend_matmul_check(GLOW_MATMUL_BF16X3, test_backend(1)->packed) != GLOW_OK) {
        printf("  (skipped: %s)\n", glow_last_error());
        return;
    }
    check_packed_gemm(GLOW_MATMUL_BF16X3, 4e-5);
}

/* Weight gradients on AMX (where the CPU has it): c += a^T b against naive sums, with row
 * counts around the 32-row tile and the 128-row chunk, columns around the 16-column tile and
 * its groups of four, strides wider than the matrices, nothing written past n; and declined
 * (0, c untouched) outside bf16x3 or on shapes too small for it. */
TEST(kernel_packed_gemm_tn_bf16x3) {
    if (backend_matmul_check(GLOW_MATMUL_BF16X3, test_backend(1)->packed) != GLOW_OK) {
        printf("  (skipped: %s)\n", glow_last_error());
        return;
    }
    backend be = *test_backend(1);
    be.matmul = GLOW_MATMUL_BF16X3;
    static const int sizes[][3] = {{64, 32, 32}, {100, 33, 47}, {129, 64, 200}, {300, 130, 70}, {31, 40, 40}};
    const real sentinel = (real)12345;
    for (size_t t = 0; t < sizeof sizes / sizeof sizes[0]; t++) {
        int rows = sizes[t][0], m = sizes[t][1], n = sizes[t][2], lda = m + 3, ldb = n + 1, ldc = n + 2;
        real *a = new_filled((size_t)rows * lda, 300 + t), *b = new_filled((size_t)rows * ldb, 310 + t);
        real *c = new_filled((size_t)m * ldc, 320 + t), *ref = malloc(sizeof(real) * m * ldc);
        for (int i = 0; i < m; i++)
            for (int j = 0; j < ldc; j++) {
                double acc = c[i * ldc + j];
                for (int r = 0; r < rows && j < n; r++) acc += (double)a[r * lda + i] * b[r * ldb + j];
                ref[i * ldc + j] = j < n ? (real)acc : sentinel;
                if (j >= n) c[i * ldc + j] = sentinel;
            }
        int done = packed_gemm_tn(&be, c, ldc, a, lda, b, ldb, rows, m, n);
        char what[96];
        snprintf(what, sizeof what, "bf16x3 c += a^T b, %d rows, %d x %d", rows, m, n);
        if (rows < 64) {
            CHECK(!done, "%s: taken on too few rows", what);
        } else {
            CHECK(done, "%s: declined", what);
            check_rows(what, c, ref, m, n, ldc, sentinel, 4e-5);
        }
        free(a), free(b), free(c), free(ref);
    }
    real a[64 * 32] = {0}, c[32 * 32] = {0};
    CHECK(!packed_gemm_tn(test_backend(1), c, 32, a, 32, a, 32, 64, 32, 32), "taken in float mode");
}

/* The packed 3x3 convolution on both of its sides against the reference convolution
 * followed by the affine map and ReLU. */
TEST(kernel_conv3x3_forward_packed) {
    if (!test_backend(1)->packed) return;
    for (int t = 0; t < N_CONV_SHAPES; t++) {
        conv_shape s = conv_shapes[t];
        size_t rows = (size_t)s.batch * s.h * s.w;
        real *x = new_filled(rows * s.cin, 10 + t), *w = new_filled((size_t)s.cout * 9 * s.cin, 20 + t);
        real *shift = new_filled(s.cout, 30 + t), *scale = new_filled(s.cout, 35 + t);
        real *out = new_filled(rows * s.cout, 40 + t), *ref = malloc(sizeof(real) * rows * s.cout);
        real *scratch = malloc(sizeof(real) * conv3x3_scratch(rows, s.cin, s.cout));
        real *packed = malloc(sizeof(real) * conv3x3_packed_size(s.cin, s.cout));
        conv3x3_pack(test_backend(1), packed, w, s.cin, s.cout, 0);
        for (int relu = 0; relu < 2; relu++) {
            conv3x3_forward_ref(ref, x, w, NULL, s.batch, s.h, s.w, s.cin, s.cout);
            for (size_t i = 0; i < rows * s.cout; i++) {
                real v = (ref[i] + shift[i % s.cout]) * scale[i % s.cout];
                ref[i] = relu && !(v > 0) ? 0 : v;
            }
            conv3x3_forward_packed(test_backend(1), out, x, packed, shift, scale, relu ? PACKED_RELU : 0, s.batch,
                                   s.h, s.w, s.cin, s.cout, scratch);
            char what[96];
            snprintf(what, sizeof what, "packed %dx%dx%dx%d -> %d%s", s.batch, s.h, s.w, s.cin,
                     s.cout, relu ? ", ReLU" : "");
            check_close(what, out, ref, rows * s.cout, REL_TOL);
        }
        free(x), free(w), free(shift), free(scale), free(out), free(ref), free(scratch), free(packed);
    }
}
