/* test_layers.c: every layer on its own: exact inverse, log-det against log|det J| of a
 * brute-force Jacobian (central differences, then LU) on tiny inputs, and gradients of the
 * input and of every parameter against central finite differences of
 *     L = sum(dy_fixed * y) + k * sum over examples of logdet
 * (double build only, where the tolerance can be tight). Plus what each layer promises
 * besides: actnorm's data-dependent init, the LU factorisation of a rotation, the squeeze's
 * channel order, the Gaussian's closed form.
 *
 * Shapes are tiny (batch 2, 2x2 pixels, 4 channels for the flow layers) so that every
 * coordinate is checked, not a sample. */
#include <stdlib.h>
#include <string.h>
#include "test.h"
#include "layers.h"

#include "layer_check.h"

/* ---- actnorm ---------------------------------------------------------------------------- */

static void actnorm_fwd(const flow_case *f, real *y, double *ld, const real *x) {
    actnorm_forward(y, ld, x, f->p[0], f->p[1], f->batch, case_hw(f), f->c);
}
static void actnorm_inv(const flow_case *f, real *x, double *ld, const real *y) {
    actnorm_inverse(x, ld, y, f->p[0], f->p[1], f->batch, case_hw(f), f->c);
}

TEST(layer_actnorm) {
    pool p = {0};
    flow_case f = new_case(&p, 1);
    f.forward = actnorm_fwd, f.inverse = actnorm_inv;
    real *b = f.p[0] = filled(&p, f.c, 3, -0.5, 0.5), *s = f.p[1] = filled(&p, f.c, 4, -0.3, 0.3);
    check_flow_case("actnorm", &f);
    /* The formula itself, one element: y = (x + b) * exp(3 s). */
    actnorm_fwd(&f, f.y, NULL, f.x);
    double want = ((double)f.x[6] + b[2]) * exp(3.0 * s[2]);
    CHECK(fabs(f.y[6] - want) < INV_TOL, "y[6] = %.12g, (x + b) exp(3 s) = %.12g", (double)f.y[6], want);
    /* In place (y aliasing x) gives the same. */
    size_t n = f.batch * case_dim(&f);
    real *inplace = pool_reals(&p, n);
    memcpy(inplace, f.x, sizeof(real) * n);
    actnorm_forward(inplace, NULL, inplace, b, s, f.batch, case_hw(&f), f.c);
    CHECK(max_abs_diff(inplace, f.y, n) == 0, "in-place forward differs");
    if (IS_DOUBLE) {
        real *dx = pool_reals(&p, n), *db = filled(&p, f.c, 5, -1, 1), *ds = filled(&p, f.c, 6, -1, 1);
        real *db0 = filled(&p, f.c, 5, -1, 1), *ds0 = filled(&p, f.c, 6, -1, 1);
        actnorm_backward(dx, db, ds, f.dy, f.y, s, f.k, f.batch, case_hw(&f), f.c);
        subtract(db, db0, f.c), subtract(ds, ds0, f.c);
        fd_var vars[] = {{"x", f.x, dx, n}, {"bias", b, db, f.c}, {"logs", s, ds, f.c}};
        check_gradients("actnorm", flow_case_loss, &f, vars, 3);
        /* dx may alias dy. */
        real *dd = pool_reals(&p, n);
        memcpy(dd, f.dy, sizeof(real) * n);
        actnorm_backward(dd, db, ds, dd, f.y, s, f.k, f.batch, case_hw(&f), f.c);
        CHECK(max_abs_diff(dd, dx, n) == 0, "backward with dx aliasing dy differs");
    }
    pool_free(&p);
}

/* After actnorm_init on a batch, the same batch comes out with zero mean and unit variance
 * per channel (statistics over batch and space), with b = -mean and
 * s = log(1 / (std + 1e-6)) / 3 exactly. */
TEST(layer_actnorm_init) {
    pool p = {0};
    const int batch = 3, c = 5;
    const size_t hw = 35, rows = batch * hw;
    real *x = pool_reals(&p, rows * c), *y = pool_reals(&p, rows * c);
    real *b = pool_reals(&p, c), *s = pool_reals(&p, c);
    uint64_t key = glow_rng_key(11, 0, 0, 0);
    for (size_t r = 0; r < rows; r++)
        for (int j = 0; j < c; j++)
            x[r * c + j] = (real)(0.5 * j - 1 + (0.3 + j) * glow_rng_normal(key, r * c + j));
    actnorm_init(b, s, x, rows, c, NULL);
    actnorm_forward(y, NULL, x, b, s, batch, hw, c);
    for (int j = 0; j < c; j++) {
        double mean = 0, var = 0, xm = 0, xv = 0;
        for (size_t r = 0; r < rows; r++) mean += y[r * c + j], xm += x[r * c + j];
        mean /= rows, xm /= rows;
        for (size_t r = 0; r < rows; r++) {
            var += (y[r * c + j] - mean) * (y[r * c + j] - mean);
            xv += (x[r * c + j] - xm) * (x[r * c + j] - xm);
        }
        var /= rows, xv /= rows;
        CHECK(fabs(mean) < (IS_DOUBLE ? 1e-12 : 1e-5), "channel %d: mean %.3g after init", j, mean);
        CHECK(fabs(var - 1) < 1e-5, "channel %d: variance %.8g after init", j, var);
        CHECK(fabs(b[j] + xm) < (IS_DOUBLE ? 1e-12 : 1e-5) * (1 + fabs(xm)), "channel %d: bias %.12g, -mean %.12g",
              j, (double)b[j], -xm);
        double want = log(1 / (sqrt(xv) + 1e-6)) / 3;
        CHECK(fabs(s[j] - want) < (IS_DOUBLE ? 1e-12 : 1e-5), "channel %d: logs %.12g, log(1/(std+1e-6))/3 %.12g",
              j, (double)s[j], want);
    }
    pool_free(&p);
}

/* ---- permutations ----------------------------------------------------------------------- */

static void permute_fwd(const flow_case *f, real *y, double *ld, const real *x) {
    permute_forward(y, x, f->perm, f->batch * case_hw(f), f->c);
}
static void permute_inv(const flow_case *f, real *x, double *ld, const real *y) {
    permute_inverse(x, y, f->perm, f->batch * case_hw(f), f->c);
}

static void check_permutation(const char *what, const int *perm) {
    pool p = {0};
    flow_case f = new_case(&p, 7);
    f.forward = permute_fwd, f.inverse = permute_inv;
    f.perm = (int *)perm;
    check_flow_case(what, &f);
    size_t rows = f.batch * case_hw(&f), n = rows * f.c;
    permute_fwd(&f, f.y, NULL, f.x);
    int bad = 0;
    for (size_t r = 0; r < rows; r++)
        for (int i = 0; i < f.c; i++) bad += f.y[r * f.c + i] != f.x[r * f.c + perm[i]];
    CHECK(bad == 0, "%s: %d elements are not y[:, i] = x[:, perm[i]]", what, bad);
    real *x2 = pool_reals(&p, n);
    permute_inv(&f, x2, NULL, f.y);
    CHECK(max_abs_diff(x2, f.x, n) == 0, "%s: the inverse is not exact", what);
    if (IS_DOUBLE) { /* the backward pass is the inverse applied to dy */
        real *dx = pool_reals(&p, n);
        permute_inverse(dx, f.dy, perm, rows, f.c);
        fd_var vars[] = {{"x", f.x, dx, n}};
        check_gradients(what, flow_case_loss, &f, vars, 1);
    }
    pool_free(&p);
}

TEST(layer_permute_reverse) {
    int perm[4] = {3, 2, 1, 0}; /* the model's reverse: perm[i] = c - 1 - i */
    check_permutation("reverse", perm);
}

TEST(layer_permute_shuffle) {
    int perm[4] = {2, 0, 3, 1};
    check_permutation("shuffle", perm);
}

/* ---- invertible 1x1 convolution --------------------------------------------------------- */

static void invconv_fwd(const flow_case *f, real *y, double *ld, const real *x) {
    invconv_forward(y, x, f->p[0], f->batch * case_hw(f), f->c);
    double lad = 0;
    if (ld && matrix_logdet_inverse(&lad, NULL, f->p[0], f->c) == GLOW_OK)
        for (int b = 0; b < f->batch; b++) ld[b] += case_hw(f) * lad;
}
static void invconv_inv(const flow_case *f, real *x, double *ld, const real *y) {
    real w_inv[f->c * f->c];
    double lad = 0;
    if (matrix_logdet_inverse(&lad, w_inv, f->p[0], f->c) != GLOW_OK) return;
    invconv_inverse(x, y, w_inv, f->batch * case_hw(f), f->c);
    if (ld)
        for (int b = 0; b < f->batch; b++) ld[b] -= case_hw(f) * lad;
}

TEST(layer_invconv) {
    pool p = {0};
    flow_case f = new_case(&p, 13);
    f.forward = invconv_fwd, f.inverse = invconv_inv;
    int c = f.c;
    /* A rotation moved off orthogonality, so log|det W| is not 0. */
    real *w = f.p[0] = pool_reals(&p, c * c);
    random_rotation(w, c, 5);
    real *noise = filled(&p, c * c, 14, -0.3, 0.3);
    for (int i = 0; i < c * c; i++) w[i] += noise[i];
    double lad;
    REQUIRE_OK(matrix_logdet_inverse(&lad, NULL, w, c));
    CHECK(fabs(lad) > 0.01, "test matrix too close to det 1 (%g)", lad);
    check_flow_case("invconv", &f);
    invconv_fwd(&f, f.y, NULL, f.x);
    double want = 0; /* y[5] = row 1, channel 1 = sum_j W[1, j] x[1, j] */
    for (int j = 0; j < c; j++) want += (double)w[1 * c + j] * f.x[1 * c + j];
    CHECK(fabs(f.y[5] - want) < INV_TOL, "y = W x per pixel: %.12g vs %.12g", (double)f.y[5], want);
    if (IS_DOUBLE) {
        size_t n = f.batch * case_dim(&f);
        real *dx = pool_reals(&p, n), *w_inv = pool_reals(&p, c * c);
        real *dw = filled(&p, c * c, 15, -1, 1), *dw0 = filled(&p, c * c, 15, -1, 1);
        REQUIRE_OK(matrix_logdet_inverse(NULL, w_inv, w, c));
        invconv_backward(dx, dw, f.dy, f.x, w, w_inv, f.k, f.batch, case_hw(&f), c);
        subtract(dw, dw0, c * c);
        fd_var vars[] = {{"x", f.x, dx, n}, {"weight", w, dw, c * c}};
        check_gradients("invconv", flow_case_loss, &f, vars, 2);
    }
    pool_free(&p);
}

/* Known matrices: log|det| and the inverse, with and without pivoting; singular fails. */
TEST(layer_matrix_logdet_inverse) {
    const real a[9] = {2, 1, 0, 1, 3, 1, 0, 1, 4}; /* det 18 */
    /* det 24: a cyclic permutation (even) of diag(2, 3, 4); needs pivoting at once */
    const real b[9] = {0, 2, 0, 0, 0, 3, 4, 0, 0};
    const real b_inv[9] = {0, 0, 0.25, 0.5, 0, 0, 0, 1.0 / 3, 0};
    const real swap[4] = {0, -2, 0.5, 0}; /* det 1, negative entries */
    const real singular[9] = {1, 2, 3, 2, 4, 6, 0, 1, 1};
    double ld;
    real inv[9];
    REQUIRE_OK(matrix_logdet_inverse(&ld, inv, a, 3));
    CHECK(fabs(ld - log(18.0)) < INV_TOL, "log|det| %.15g, want log 18 = %.15g", ld, log(18.0));
    for (int i = 0; i < 3; i++)
        for (int j = 0; j < 3; j++) {
            double t = 0;
            for (int k = 0; k < 3; k++) t += (double)a[i * 3 + k] * inv[k * 3 + j];
            CHECK(fabs(t - (i == j)) < INV_TOL, "(A A^-1)[%d,%d] = %.15g", i, j, t);
        }
    REQUIRE_OK(matrix_logdet_inverse(&ld, inv, b, 3));
    CHECK(fabs(ld - log(24.0)) < INV_TOL, "log|det| %.15g, want log 24", ld);
    CHECK(max_abs_diff(inv, b_inv, 9) < INV_TOL, "inverse of the permuted diagonal is off by %g",
          max_abs_diff(inv, b_inv, 9));
    REQUIRE_OK(matrix_logdet_inverse(&ld, inv, swap, 2));
    const real swap_inv[4] = {0, 2, -0.5, 0};
    CHECK(fabs(ld) < INV_TOL && max_abs_diff(inv, swap_inv, 4) < INV_TOL, "2x2: log|det| %g", ld);
    CHECK(matrix_logdet_inverse(&ld, inv, singular, 3) == GLOW_EINVAL &&
              strstr(glow_last_error(), "singular"),
          "a singular matrix was accepted (%s)", glow_last_error());
}

/* ---- invertible 1x1 convolution, LU form ------------------------------------------------ */

/* p: l, u, log_s, sign, W (scratch); perm. */
static void lu_fwd(const flow_case *f, real *y, double *ld, const real *x) {
    int c = f->c;
    invconv_lu_weight(f->p[4], f->p[0], f->p[1], f->p[2], f->p[3], f->perm, c);
    invconv_forward(y, x, f->p[4], f->batch * case_hw(f), c);
    double t = 0;
    for (int j = 0; j < c; j++) t += f->p[2][j];
    if (ld)
        for (int b = 0; b < f->batch; b++) ld[b] += case_hw(f) * t;
}
static void lu_inv(const flow_case *f, real *x, double *ld, const real *y) {
    int c = f->c;
    real w_inv[c * c];
    invconv_lu_weight(f->p[4], f->p[0], f->p[1], f->p[2], f->p[3], f->perm, c);
    if (matrix_logdet_inverse(NULL, w_inv, f->p[4], c) != GLOW_OK) return;
    invconv_inverse(x, y, w_inv, f->batch * case_hw(f), c);
    double t = 0;
    for (int j = 0; j < c; j++) t += f->p[2][j];
    if (ld)
        for (int b = 0; b < f->batch; b++) ld[b] -= case_hw(f) * t;
}

TEST(layer_invconv_lu) {
    pool p = {0};
    flow_case f = new_case(&p, 17);
    f.forward = lu_fwd, f.inverse = lu_inv;
    int c = f.c, perm[4];
    real *rot = pool_reals(&p, c * c);
    real *l = f.p[0] = pool_reals(&p, c * c), *u = f.p[1] = pool_reals(&p, c * c);
    real *log_s = f.p[2] = pool_reals(&p, c), *sign = f.p[3] = pool_reals(&p, c);
    f.p[4] = pool_reals(&p, c * c);
    f.perm = perm;
    random_rotation(rot, c, 9);
    REQUIRE_OK(invconv_lu_factor(l, u, log_s, sign, perm, rot, c));
    /* Move every free parameter off the rotation (strict parts of L and U only). */
    real *noise = filled(&p, c * c, 18, -0.2, 0.2);
    for (int i = 0; i < c; i++)
        for (int j = 0; j < c; j++) {
            if (j < i) l[i * c + j] += noise[i * c + j];
            if (j > i) u[i * c + j] += noise[i * c + j];
        }
    for (int j = 0; j < c; j++) log_s[j] += noise[j * c + j];
    check_flow_case("invconv-lu", &f);
    if (IS_DOUBLE) {
        /* The model's path: dW from invconv_backward without the log-det term, then
         * invconv_lu_backward maps it to L, U, log_s and adds the log-det's gradient. */
        size_t n = f.batch * case_dim(&f);
        real *dx = pool_reals(&p, n), *dw = pool_reals(&p, c * c);
        real *dl = filled(&p, c * c, 19, -1, 1), *du = filled(&p, c * c, 20, -1, 1);
        real *dls = filled(&p, c, 21, -1, 1);
        real *dl0 = filled(&p, c * c, 19, -1, 1), *du0 = filled(&p, c * c, 20, -1, 1);
        real *dls0 = filled(&p, c, 21, -1, 1);
        invconv_lu_weight(f.p[4], l, u, log_s, sign, perm, c);
        invconv_backward(dx, dw, f.dy, f.x, f.p[4], NULL, 0.0, f.batch, case_hw(&f), c);
        invconv_lu_backward(dl, du, dls, dw, l, u, log_s, sign, perm, f.k, f.batch, case_hw(&f), c);
        subtract(dl, dl0, c * c), subtract(du, du0, c * c), subtract(dls, dls0, c);
        /* All of L and U, so the entries that do not enter W must get exactly 0. */
        fd_var vars[] = {{"x", f.x, dx, n}, {"lower", l, dl, c * c}, {"upper", u, du, c * c},
                         {"log_s", log_s, dls, c}};
        check_gradients("invconv-lu", flow_case_loss, &f, vars, 4);
    }
    pool_free(&p);
}

/* Factoring a random rotation (as the model initialises the LU form) and rebuilding W
 * gives the rotation back; L is strictly lower, U strictly upper, sign is +-1, perm is a
 * permutation, and sum(log_s) = log|det W| = 0. Also a matrix that needs pivoting. */
TEST(layer_invconv_lu_factor) {
    static const int sizes[] = {1, 2, 3, 6, 8, 16};
    for (size_t t = 0; t <= sizeof sizes / sizeof sizes[0]; t++) {
        int pivot_case = t == sizeof sizes / sizeof sizes[0];
        int c = pivot_case ? 3 : sizes[t];
        real w[c * c], w2[c * c], l[c * c], u[c * c], log_s[c], sign[c];
        int perm[c];
        if (pivot_case) { /* W[0,0] = 0 forces a row exchange */
            const real m[9] = {0, 1, 2, 3, 0, 1, 1, -1, 0.5};
            memcpy(w, m, sizeof m);
        } else {
            random_rotation(w, c, 100 + t);
            double orth = 0; /* W W^T = I */
            for (int i = 0; i < c; i++)
                for (int j = 0; j < c; j++)
                    orth = fmax(orth, fabs(dot(w + i * c, w + j * c, c) - (i == j)));
            CHECK(orth < (IS_DOUBLE ? 1e-12 : 1e-6), "c %d: random_rotation is off orthogonal by %g", c, orth);
        }
        REQUIRE_OK(invconv_lu_factor(l, u, log_s, sign, perm, w, c));
        invconv_lu_weight(w2, l, u, log_s, sign, perm, c);
        double err = max_abs_diff(w, w2, c * c);
        CHECK(err < (IS_DOUBLE ? 1e-12 : 1e-6), "c %d: rebuilt W differs by %g", c, err);
        int shape_ok = 1, seen[c];
        memset(seen, 0, sizeof seen);
        double sum_ls = 0, lad;
        for (int i = 0; i < c; i++) {
            for (int j = 0; j < c; j++) shape_ok &= (j >= i || u[i * c + j] == 0) && (j < i || l[i * c + j] == 0);
            shape_ok &= sign[i] == 1 || sign[i] == -1;
            shape_ok &= perm[i] >= 0 && perm[i] < c && !seen[perm[i]]++;
            sum_ls += log_s[i];
        }
        CHECK(shape_ok, "c %d: L not strictly lower, U not strictly upper, sign not +-1 or perm not a permutation", c);
        REQUIRE_OK(matrix_logdet_inverse(&lad, NULL, w, c));
        CHECK(fabs(sum_ls - lad) < (IS_DOUBLE ? 1e-12 : 1e-5), "c %d: sum(log_s) %.12g, log|det W| %.12g", c, sum_ls, lad);
        if (!pivot_case) CHECK(fabs(lad) < (IS_DOUBLE ? 1e-12 : 1e-5), "c %d: a rotation with log|det| %g", c, lad);
    }
    real a[16], b[16];
    random_rotation(a, 4, 1), random_rotation(b, 4, 1);
    CHECK(max_abs_diff(a, b, 16) == 0, "random_rotation is not a function of the seed");
    random_rotation(b, 4, 2);
    CHECK(max_abs_diff(a, b, 16) > 0.01, "seeds 1 and 2 give the same rotation");
}

/* ---- squeeze ---------------------------------------------------------------------------- */

/* f->h, w, c are those of x; y is (h/2, w/2, 4c), the same number of values. */
static void squeeze_fwd(const flow_case *f, real *y, double *ld, const real *x) {
    squeeze_forward(y, x, f->batch, f->h, f->w, f->c);
}
static void squeeze_inv(const flow_case *f, real *x, double *ld, const real *y) {
    squeeze_inverse(x, y, f->batch, f->h, f->w, f->c);
}

TEST(layer_squeeze) {
    pool p = {0};
    flow_case f = new_case(&p, 23);
    f.forward = squeeze_fwd, f.inverse = squeeze_inv;
    f.h = 4, f.w = 2, f.c = 2; /* (4,2,2) -> (2,1,8): the same 16 values per example */
    check_flow_case("squeeze", &f);
    if (IS_DOUBLE) { /* the backward pass is the inverse applied to dy */
        size_t n = f.batch * case_dim(&f);
        real *dx = pool_reals(&p, n);
        squeeze_inverse(dx, f.dy, f.batch, f.h, f.w, f.c);
        fd_var vars[] = {{"x", f.x, dx, n}};
        check_gradients("squeeze", flow_case_loss, &f, vars, 1);
    }
    pool_free(&p);
}

/* Input pixel (2i+dy, 2j+dx), channel c goes to output pixel (i, j), channel c*4 + dy*2 + dx. */
TEST(layer_squeeze_order) {
    enum { B = 2, H = 4, W = 6, C = 3 };
    real x[B * H * W * C], y[B * H * W * C], x2[B * H * W * C];
#define XI(b, i, j, k) ((((b) * H + (i)) * W + (j)) * C + (k))
#define YI(b, i, j, k) ((((b) * (H / 2) + (i)) * (W / 2) + (j)) * 4 * C + (k))
    for (int i = 0; i < B * H * W * C; i++) x[i] = (real)i;
    squeeze_forward(y, x, B, H, W, C);
    /* Specific elements, written out. */
    CHECK(y[YI(0, 0, 0, 0)] == x[XI(0, 0, 0, 0)], "(0,0) ch 0");
    CHECK(y[YI(0, 0, 0, 1)] == x[XI(0, 0, 1, 0)], "ch 1 must be dx = 1: (0,1) ch 0");
    CHECK(y[YI(0, 0, 0, 2)] == x[XI(0, 1, 0, 0)], "ch 2 must be dy = 1: (1,0) ch 0");
    CHECK(y[YI(0, 0, 0, 3)] == x[XI(0, 1, 1, 0)], "ch 3 must be (1,1) ch 0");
    CHECK(y[YI(0, 0, 0, 4)] == x[XI(0, 0, 0, 1)], "ch 4 must be (0,0) ch 1");
    CHECK(y[YI(0, 1, 1, 6)] == x[XI(0, 3, 2, 1)], "input (3,2) ch 1 must be output (1,1) ch 6");
    CHECK(y[YI(1, 1, 2, 11)] == x[XI(1, 3, 5, 2)], "input (3,5) ch 2 must be output (1,2) ch 11");
    int bad = 0;
    for (int b = 0; b < B; b++)
        for (int i = 0; i < H / 2; i++)
            for (int j = 0; j < W / 2; j++)
                for (int k = 0; k < C; k++)
                    for (int dy = 0; dy < 2; dy++)
                        for (int dx = 0; dx < 2; dx++)
                            bad += y[YI(b, i, j, k * 4 + dy * 2 + dx)] != x[XI(b, 2 * i + dy, 2 * j + dx, k)];
    CHECK(bad == 0, "%d elements not at channel c*4 + dy*2 + dx", bad);
    squeeze_inverse(x2, y, B, H, W, C);
    CHECK(max_abs_diff(x, x2, B * H * W * C) == 0, "the inverse is not exact");
#undef XI
#undef YI
}

/* ---- zeroconv --------------------------------------------------------------------------- */

typedef struct {
    int batch, h, w, cin, cout;
    real *x, *wt, *b, *logs, *out, *dout, *scratch;
} zc_case;

static double zc_loss(void *ctx) {
    zc_case *t = ctx;
    zeroconv_forward(t->out, t->x, t->wt, t->b, t->logs, t->batch, t->h, t->w, t->cin, t->cout, t->scratch);
    return dot(t->dout, t->out, (size_t)t->batch * t->h * t->w * t->cout);
}

TEST(layer_zeroconv) {
    pool p = {0};
    zc_case t = {.batch = 2, .h = 3, .w = 4, .cin = 3, .cout = 4};
    size_t rows = (size_t)t.batch * t.h * t.w, nw = (size_t)t.cout * 9 * t.cin;
    t.x = filled(&p, rows * t.cin, 80, -1, 1);
    t.wt = pool_reals(&p, nw), t.b = pool_reals(&p, t.cout), t.logs = pool_reals(&p, t.cout);
    t.out = filled(&p, rows * t.cout, 81, -1, 1);
    t.dout = filled(&p, rows * t.cout, 82, -1, 1);
    t.scratch = pool_reals(&p, conv3x3_scratch(rows, t.cin, t.cout));
    zc_loss(&t);
    double omax = 0;
    for (size_t i = 0; i < rows * t.cout; i++) omax = fmax(omax, fabs(t.out[i]));
    CHECK(omax == 0, "zero-initialised: output up to %g", omax);
    fill(t.wt, nw, 83, -0.5, 0.5), fill(t.b, t.cout, 84, -0.5, 0.5), fill(t.logs, t.cout, 85, -0.3, 0.3);
    /* out = (conv3x3(x) + b) * exp(3 logs), one element */
    real *ref = pool_reals(&p, rows * t.cout);
    conv3x3_forward_ref(ref, t.x, t.wt, t.b, t.batch, t.h, t.w, t.cin, t.cout);
    zc_loss(&t);
    double err = 0;
    for (size_t r = 0; r < rows; r++)
        for (int j = 0; j < t.cout; j++)
            err = fmax(err, fabs(t.out[r * t.cout + j] - ref[r * t.cout + j] * exp(3.0 * t.logs[j])));
    CHECK(err < INV_TOL, "output differs from (conv + b) exp(3 logs) by %g", err);
    if (IS_DOUBLE) {
        real *dx = filled(&p, rows * t.cin, 86, -1, 1), *dw = filled(&p, nw, 87, -1, 1);
        real *db = filled(&p, t.cout, 88, -1, 1), *dl = filled(&p, t.cout, 89, -1, 1);
        real *dx0 = filled(&p, rows * t.cin, 86, -1, 1), *dw0 = filled(&p, nw, 87, -1, 1);
        real *db0 = filled(&p, t.cout, 88, -1, 1), *dl0 = filled(&p, t.cout, 89, -1, 1);
        real *dout = pool_reals(&p, rows * t.cout);
        memcpy(dout, t.dout, sizeof(real) * rows * t.cout); /* destroyed */
        zeroconv_backward(dx, dw, db, dl, dout, t.out, t.x, t.wt, t.logs, t.batch, t.h, t.w, t.cin,
                          t.cout, t.scratch);
        subtract(dx, dx0, rows * t.cin), subtract(dw, dw0, nw), subtract(db, db0, t.cout),
            subtract(dl, dl0, t.cout);
        fd_var vars[] = {{"x", t.x, dx, rows * t.cin}, {"weight", t.wt, dw, nw},
                         {"bias", t.b, db, t.cout}, {"logs", t.logs, dl, t.cout}};
        check_gradients("zeroconv", zc_loss, &t, vars, 4);
    }
    pool_free(&p);
}

/* ---- Gaussian prior --------------------------------------------------------------------- */

typedef struct {
    int batch;
    size_t n;
    real *z, *mean, *logs;
    double g;
} gauss_case;

static double gauss_loss(void *ctx) {
    gauss_case *t = ctx;
    double lp[t->batch];
    for (int b = 0; b < t->batch; b++) lp[b] = 0;
    gaussian_logp(lp, t->z, t->mean, t->logs, t->batch, t->n);
    double l = 0;
    for (int b = 0; b < t->batch; b++) l += t->g * lp[b];
    return l;
}

TEST(layer_gaussian) {
    /* Closed forms: log N(1; 0, 1) = -(log 2pi + 1) / 2; log N(m; m, 2^2) = -log 2pi / 2 - log 2. */
    const real z[2] = {1, 0.25}, mean[2] = {0, 0.25}, logs[2] = {0, (real)log(2.0)};
    double lp[2] = {0, 10};
    gaussian_logp(lp, z, mean, logs, 2, 1);
    CHECK(fabs(lp[0] + 0.5 * (log(2 * M_PI) + 1)) < 1e-12, "log N(1; 0, 1) = %.15g", lp[0]);
    CHECK(fabs(lp[1] - 10 + 0.5 * log(2 * M_PI) + log(2.0)) < (IS_DOUBLE ? 1e-12 : 1e-7),
          "log N(m; m, 4) + 10 = %.15g (logp must accumulate)", lp[1]);
    if (!IS_DOUBLE) return;
    pool p = {0};
    gauss_case t = {.batch = 2, .n = 6};
    size_t n = t.batch * t.n;
    t.z = filled(&p, n, 90, -2, 2), t.mean = filled(&p, n, 91, -1, 1), t.logs = filled(&p, n, 92, -1, 1);
    t.g = -0.7;
    real *dz = filled(&p, n, 93, -1, 1), *dz0 = filled(&p, n, 93, -1, 1);
    real *dm = filled(&p, n, 94, -1, 1), *dl = filled(&p, n, 95, -1, 1); /* overwritten */
    gaussian_backward(dz, dm, dl, t.z, t.mean, t.logs, t.g, t.batch, t.n);
    subtract(dz, dz0, n);
    fd_var vars[] = {{"z", t.z, dz, n}, {"mean", t.mean, dm, n}, {"logs", t.logs, dl, n}};
    check_gradients("gaussian", gauss_loss, &t, vars, 3);
    pool_free(&p);
}

/* The bounded prior log std (GLOW_PRIOR_TANH): logs = 3 tanh(v / 3), and the gradient of
 * log N(z; mean, exp(logs)) with respect to v through it, against finite differences, also
 * where the bound saturates. */
typedef struct {
    gauss_case g;
    const real *v;
    real *bounded;
} bound_case;

static double bound_loss(void *ctx) {
    bound_case *t = ctx;
    size_t n = t->g.batch * t->g.n;
    memcpy(t->bounded, t->v, sizeof(real) * n);
    prior_logs_bound(t->bounded, n);
    return gauss_loss(&t->g);
}

TEST(layer_prior_logs_bound) {
    pool p = {0};
    enum { N = 24 };
    real *v = filled(&p, N, 96, -7, 7), *logs = pool_reals(&p, N);
    memcpy(logs, v, sizeof(real) * N);
    prior_logs_bound(logs, N);
    double err = 0;
    for (int i = 0; i < N; i++) err = fmax(err, fabs(logs[i] - 3 * tanh(v[i] / 3)));
    CHECK(err < (IS_DOUBLE ? 1e-15 : 1e-6), "logs differs from 3 tanh(v / 3) by %g", err);
    for (int i = 0; i < N; i++) CHECK(fabs(logs[i]) < 3, "|logs| = %g, not below 3", logs[i]);
    if (!IS_DOUBLE) {
        pool_free(&p);
        return;
    }
    bound_case t = {.g = {.batch = 2, .n = N / 2, .g = -0.7}, .v = v, .bounded = logs};
    t.g.z = filled(&p, N, 97, -2, 2), t.g.mean = filled(&p, N, 98, -1, 1), t.g.logs = logs;
    bound_loss(&t);
    real *dz = pool_reals(&p, N), *dm = pool_reals(&p, N), *dv = pool_reals(&p, N);
    memset(dz, 0, sizeof(real) * N);
    gaussian_backward(dz, dm, dv, t.g.z, t.g.mean, logs, t.g.g, t.g.batch, t.g.n);
    prior_logs_bound_backward(dv, logs, N);
    fd_var vars[] = {{"v", (real *)v, dv, N}};
    check_gradients("bounded prior log std", bound_loss, &t, vars, 1);
    pool_free(&p);
}

/* z = mean + T * exp(logs) * eps with eps = glow_rng_normal(key, i): T = 0 gives the mean. */
TEST(layer_gaussian_sample) {
    enum { N = 10 };
    real mean[N], logs[N], z[N];
    fill(mean, N, 96, -1, 1), fill(logs, N, 97, -1, 1);
    uint64_t key = glow_rng_key(3, 4, 5, 6);
    gaussian_sample(z, mean, logs, 0.0, key, 2, N / 2);
    CHECK(max_abs_diff(z, mean, N) == 0, "temperature 0 is not the mean");
    gaussian_sample(z, mean, logs, 0.6, key, 2, N / 2);
    double err = 0;
    for (int i = 0; i < N; i++)
        err = fmax(err, fabs(z[i] - (mean[i] + 0.6 * exp((double)logs[i]) * glow_rng_normal(key, i))));
    CHECK(err < INV_TOL, "z differs from mean + T exp(logs) eps by %g", err);
}
