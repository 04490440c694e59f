/* test_coupling.c: the coupling layers (additive, affine with either scale) and the
 * coupling network's passes: exact inverse, log-det against a brute-force Jacobian and
 * gradients against finite differences (double build), and the network's image groups,
 * packed kernels, rebuilt backward pass and init against plain references. */
#include <stdlib.h>
#include <string.h>
#include "layer_check.h"

/* ---- coupling --------------------------------------------------------------------------- */

/* p[0] = h (rows, coupling_nn_out), fixed: the network's path is tested separately. */
static void coupling_fwd(const flow_case *f, real *y, double *ld, const real *x) {
    coupling_forward(y, ld, x, f->p[0], f->kind, f->scale, f->batch, case_hw(f), f->c);
}
static void coupling_inv(const flow_case *f, real *x, double *ld, const real *y) {
    coupling_inverse(x, ld, y, f->p[0], f->kind, f->scale, f->batch, case_hw(f), f->c);
}

/* The scale's function written out: sigmoid(u + 2), or exp(tanh(u)). */
static double scale_formula(glow_affine_scale scale, double u) {
    return scale == GLOW_SCALE_TANH ? exp(tanh(u)) : 1 / (1 + exp(-(u + 2.0)));
}

/* h in [-hmax, hmax]: 2 keeps the sigmoid's scales moderate; the soft clamp is tested into
 * its saturation too. */
static void check_coupling(const char *what, glow_coupling kind, glow_affine_scale scale,
                           double hmax) {
    pool p = {0};
    flow_case f = new_case(&p, 29);
    f.forward = coupling_fwd, f.inverse = coupling_inv, f.kind = kind, f.scale = scale;
    int hc = coupling_nn_out(kind, f.c), half = f.c / 2;
    size_t rows = f.batch * case_hw(&f), n = rows * f.c;
    real *h = f.p[0] = filled(&p, rows * hc, 30, -hmax, hmax);
    CHECK(hc == (kind == GLOW_AFFINE ? f.c : half), "%s: the network has %d outputs", what, hc);
    check_flow_case(what, &f);
    /* The formula, element by element. */
    double ld[2] = {0, 0}, want_ld[2] = {0, 0};
    coupling_fwd(&f, f.y, ld, f.x);
    double err = 0;
    for (size_t r = 0; r < rows; r++)
        for (int j = 0; j < f.c; j++) {
            double x = f.x[r * f.c + j], want = x;
            if (j >= half && kind == GLOW_ADDITIVE) want = x + h[r * hc + j - half];
            if (j >= half && kind == GLOW_AFFINE) {
                double shift = h[r * hc + 2 * (j - half)];
                double s = scale_formula(scale, h[r * hc + 2 * (j - half) + 1]);
                want = (x + shift) * s;
                want_ld[r / case_hw(&f)] += log(s);
            }
            err = fmax(err, fabs(f.y[r * f.c + j] - want));
        }
    CHECK(err < INV_TOL, "%s: y differs from the formula by %g", what, err);
    for (int b = 0; b < 2; b++)
        CHECK(fabs(ld[b] - want_ld[b]) < 1e-12 * (1 + fabs(want_ld[b])) + (IS_DOUBLE ? 0 : 1e-6),
              "%s: log-det %.12g, sum log scale %.12g", what, ld[b], want_ld[b]);
    real *inplace = pool_reals(&p, n);
    memcpy(inplace, f.x, sizeof(real) * n);
    coupling_forward(inplace, NULL, inplace, h, kind, scale, f.batch, case_hw(&f), f.c);
    CHECK(max_abs_diff(inplace, f.y, n) == 0, "%s: in-place forward differs", what);
    if (IS_DOUBLE) {
        real *dx = pool_reals(&p, n), *dh = filled(&p, rows * hc, 31, -1, 1); /* overwritten */
        coupling_backward(dx, dh, f.dy, f.x, h, kind, scale, f.k, f.batch, case_hw(&f), f.c);
        fd_var vars[] = {{"x", f.x, dx, n}, {"h", h, dh, rows * hc}};
        check_gradients(what, flow_case_loss, &f, vars, 2);
        real *dd = pool_reals(&p, n);
        memcpy(dd, f.dy, sizeof(real) * n);
        coupling_backward(dd, dh, dd, f.x, h, kind, scale, f.k, f.batch, case_hw(&f), f.c);
        CHECK(max_abs_diff(dd, dx, n) == 0, "%s: backward with dx aliasing dy differs", what);
    }
    pool_free(&p);
}

TEST(layer_coupling_additive) {
    check_coupling("additive coupling", GLOW_ADDITIVE, GLOW_SCALE_TANH, 2);
}
TEST(layer_coupling_affine) {
    check_coupling("affine coupling, sigmoid scale", GLOW_AFFINE, GLOW_SCALE_SIGMOID, 2);
}
TEST(layer_coupling_affine_tanh) {
    check_coupling("affine coupling, tanh scale", GLOW_AFFINE, GLOW_SCALE_TANH, 2);
    check_coupling("affine coupling, tanh scale, saturated", GLOW_AFFINE, GLOW_SCALE_TANH, 5);
}

/* ---- the coupling network --------------------------------------------------------------- */

typedef struct {
    nn_shape s;
    coupling_nn nn;
    coupling_acts acts;
    real *z1, *dh, *scratch;
} nn_case;

/* L = sum(dh * NN(z1)) */
static double nn_loss(void *ctx) {
    nn_case *t = ctx;
    coupling_nn_forward(&t->acts, &t->nn, t->z1, t->s, t->scratch);
    return dot(t->dh, t->acts.h, (size_t)t->s.batch * t->s.h * t->s.w * t->s.cout);
}

/* Parameter blocks of a network, in coupling_nn's order, with their sizes. */
static void nn_sizes(size_t sz[9], nn_shape s) {
    size_t sizes[9] = {(size_t)s.width * 9 * s.cin, s.width, s.width, (size_t)s.width * s.width,
                       s.width, s.width, (size_t)s.cout * 9 * s.width, s.cout, s.cout};
    memcpy(sz, sizes, sizeof sizes);
}
static coupling_nn nn_alloc(pool *p, nn_shape s, uint64_t seed) {
    size_t sz[9];
    nn_sizes(sz, s);
    real *b[9];
    static const double range[9] = {0.5, 0.3, 0.2, 0.5, 0.3, 0.2, 0.3, 0.3, 0.2};
    for (int i = 0; i < 9; i++) b[i] = seed ? filled(p, sz[i], seed + i, -range[i], range[i]) : pool_reals(p, sz[i]);
    return (coupling_nn){b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8]};
}

/* A network's nine blocks laid out one after another in `block`. */
static coupling_nn nn_at_block(real *block, const size_t sz[9]) {
    real *b[9];
    for (int i = 0; i < 9; i++) b[i] = block, block += sz[i];
    return (coupling_nn){b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8]};
}

TEST(layer_coupling_nn) {
    if (!IS_DOUBLE) return; /* a gradient check only */
    pool p = {0};
    nn_case t;
    t.s = (nn_shape){2, 3, 4, 2, 5, 4, test_backend(2)};
    size_t rows = (size_t)t.s.batch * t.s.h * t.s.w;
    t.nn = nn_alloc(&p, t.s, 40);
    coupling_nn dnn = nn_alloc(&p, t.s, 60), dnn0 = nn_alloc(&p, t.s, 60);
    t.acts = (coupling_acts){pool_reals(&p, rows * t.s.width), pool_reals(&p, rows * t.s.width),
                             pool_reals(&p, rows * t.s.cout)};
    t.z1 = filled(&p, rows * t.s.cin, 41, -1, 1);
    t.dh = filled(&p, rows * t.s.cout, 42, -1, 1);
    t.scratch = pool_reals(&p, coupling_nn_scratch(t.s));
    real *dz1 = filled(&p, rows * t.s.cin, 43, -1, 1), *dz1_0 = filled(&p, rows * t.s.cin, 43, -1, 1);
    real *dh_copy = pool_reals(&p, rows * t.s.cout);
    memcpy(dh_copy, t.dh, sizeof(real) * rows * t.s.cout); /* the backward pass destroys it */
    nn_loss(&t);
    coupling_nn_backward(dz1, &dnn, dh_copy, &t.acts, &t.nn, t.z1, t.s, t.scratch);
    subtract(dz1, dz1_0, rows * t.s.cin);
    size_t sz[9];
    nn_sizes(sz, t.s);
    real **v = &t.nn.w1, **g = &dnn.w1, **g0 = &dnn0.w1; /* the struct is nine pointers */
    for (int i = 0; i < 9; i++) subtract(g[i], g0[i], sz[i]);
    static const char *names[9] = {"conv1.weight", "actnorm1.bias", "actnorm1.logs", "conv2.weight",
                                   "actnorm2.bias", "actnorm2.logs", "conv3.weight", "conv3.bias",
                                   "conv3.logs"};
    fd_var vars[10] = {{"z1", t.z1, dz1, rows * t.s.cin}};
    for (int i = 0; i < 9; i++) vars[i + 1] = (fd_var){names[i], v[i], g[i], sz[i]};
    check_gradients("coupling network", nn_loss, &t, vars, 10);
    pool_free(&p);
}

/* n reals of scratch followed by 64 canaries, and whether they are intact. */
static real *scratch_with_canary(pool *p, size_t n) {
    real *scratch = pool_reals(p, n + 64);
    for (int i = 0; i < 64; i++) scratch[n + i] = 12345;
    return scratch;
}
static int canary_intact(const real *scratch, size_t n) {
    int intact = 1;
    for (int i = 0; i < 64; i++) intact &= scratch[n + i] == 12345;
    return intact;
}

/* The network runs image group by image group on up to `slots` threads, which take the
 * groups as they come free: its outputs and gradients must not depend on the grouping
 * (compared with one image at a time), and must be the same bits on 2 and 3 slots (each
 * group sums into its own gradient copy, added in group order; on 1 slot, OpenBLAS may use
 * threads of its own and sum differently); the passes must stay inside
 * coupling_nn_scratch (a canary after it). The shape makes groups of 16 images with a
 * short last group. */
TEST(layer_coupling_nn_groups) {
    pool p = {0};
    nn_shape s = {300, 8, 8, 2, 16, 4, test_backend(1)};
    size_t image = (size_t)s.h * s.w, rows = s.batch * image, n_params = 0, sz[9];
    nn_sizes(sz, s);
    for (int i = 0; i < 9; i++) n_params += sz[i];
    coupling_nn nn = nn_alloc(&p, s, 80);
    real *z1 = filled(&p, rows * s.cin, 81, -1, 1), *dh = filled(&p, rows * s.cout, 82, -1, 1);
    real *dh_work = pool_reals(&p, rows * s.cout);
    coupling_acts want = {pool_reals(&p, rows * s.width), pool_reals(&p, rows * s.width),
                          pool_reals(&p, rows * s.cout)};
    real *want_dz1 = pool_reals(&p, rows * s.cin), *want_grad = pool_reals(&p, n_params);
    memset(want_dz1, 0, sizeof(real) * rows * s.cin);
    memset(want_grad, 0, sizeof(real) * n_params);
    coupling_nn want_dnn = nn_at_block(want_grad, sz);
    nn_shape one = s;
    one.batch = 1;
    real *one_scratch = pool_reals(&p, coupling_nn_scratch(one));
    for (int b = 0; b < s.batch; b++) {
        size_t r0 = b * image;
        coupling_acts a = {want.r1 + r0 * s.width, want.r2 + r0 * s.width, want.h + r0 * s.cout};
        coupling_nn_forward(&a, &nn, z1 + r0 * s.cin, one, one_scratch);
        memcpy(dh_work, dh + r0 * s.cout, sizeof(real) * image * s.cout);
        coupling_nn_backward(want_dz1 + r0 * s.cin, &want_dnn, dh_work, &a, &nn, z1 + r0 * s.cin,
                             one, one_scratch);
    }
    double tol = IS_DOUBLE ? 1e-12 : 1e-4;
    real *two_slot_h = pool_reals(&p, rows * s.cout), *two_slot_dz1 = NULL, *two_slot_grad = NULL;
    for (int slots = 1; slots <= 3; slots++) {
        s.be = test_backend(slots);
        size_t n_scratch = coupling_nn_scratch(s);
        real *scratch = scratch_with_canary(&p, n_scratch);
        coupling_acts got = {pool_reals(&p, rows * s.width), pool_reals(&p, rows * s.width),
                             pool_reals(&p, rows * s.cout)}, only_h = {NULL, NULL, pool_reals(&p, rows * s.cout)};
        real *dz1 = pool_reals(&p, rows * s.cin), *grad = pool_reals(&p, n_params);
        memset(dz1, 0, sizeof(real) * rows * s.cin);
        memset(grad, 0, sizeof(real) * n_params);
        coupling_nn dnn = nn_at_block(grad, sz);
        coupling_nn_forward(&got, &nn, z1, s, scratch);
        coupling_nn_forward(&only_h, &nn, z1, s, scratch);
        memcpy(dh_work, dh, sizeof(real) * rows * s.cout);
        coupling_nn_backward(dz1, &dnn, dh_work, &got, &nn, z1, s, scratch);
        CHECK(max_abs_diff(got.r1, want.r1, rows * s.width) <= tol, "slots %d: r1 differs", slots);
        CHECK(max_abs_diff(got.h, want.h, rows * s.cout) <= tol, "slots %d: h differs", slots);
        CHECK(max_abs_diff(only_h.h, want.h, rows * s.cout) <= tol, "slots %d: h alone differs", slots);
        CHECK(max_abs_diff(dz1, want_dz1, rows * s.cin) <= tol, "slots %d: dz1 differs", slots);
        double gmax = 0;
        for (size_t i = 0; i < n_params; i++) gmax = fmax(gmax, fabs(want_grad[i]));
        CHECK(max_abs_diff(grad, want_grad, n_params) <= tol * (1 + gmax),
              "slots %d: parameter gradients differ by %g", slots, max_abs_diff(grad, want_grad, n_params));
        if (slots == 2) {
            memcpy(two_slot_h, got.h, sizeof(real) * rows * s.cout); /* the init below overwrites it */
            two_slot_dz1 = dz1, two_slot_grad = grad;
        } else if (slots == 3) {
            CHECK(memcmp(got.h, two_slot_h, sizeof(real) * rows * s.cout) == 0, "slots 3: h not the 2-slot bits");
            CHECK(memcmp(dz1, two_slot_dz1, sizeof(real) * rows * s.cin) == 0, "slots 3: dz1 not the 2-slot bits");
            CHECK(memcmp(grad, two_slot_grad, sizeof(real) * n_params) == 0,
                  "slots 3: parameter gradients not the 2-slot bits (off by %g)",
                  max_abs_diff(grad, two_slot_grad, n_params));
        }
        coupling_nn init_nn = nn_alloc(&p, s, 80);
        coupling_nn_init(&got, &init_nn, z1, s, scratch);
        CHECK(canary_intact(scratch, n_scratch), "slots %d: the passes wrote past coupling_nn_scratch", slots);
    }
    pool_free(&p);
}

/* The passes on packed weights (the float build on AVX-512) give the plain path's
 * activations and gradients: both sides of each 3x3 convolution, widths past one
 * 64-channel panel. */
TEST(layer_coupling_nn_packed) {
    if (!test_backend(1)->packed) return;
    backend be[2] = {*test_backend(2), *test_backend(1)};
    const nn_shape shapes[] = {{7, 5, 5, 3, 80, 6, &be[0]}, {3, 4, 4, 8, 4, 16, &be[1]}};
    for (int t = 0; t < 2; t++) {
        pool p = {0};
        nn_shape s = shapes[t];
        size_t rows = (size_t)s.batch * s.h * s.w;
        coupling_nn nn = nn_alloc(&p, s, 90 + t);
        real *z1 = filled(&p, rows * s.cin, 95 + t, -1, 1), *scratch = pool_reals(&p, coupling_nn_scratch(s));
        coupling_acts got = {pool_reals(&p, rows * s.width), pool_reals(&p, rows * s.width),
                             pool_reals(&p, rows * s.cout)},
                      want = {pool_reals(&p, rows * s.width), pool_reals(&p, rows * s.width),
                              pool_reals(&p, rows * s.cout)};
        size_t n_params = 0, sz[9];
        nn_sizes(sz, s);
        for (int i = 0; i < 9; i++) n_params += sz[i];
        real *dh = filled(&p, rows * s.cout, 97 + t, -1, 1), *dh_work = pool_reals(&p, rows * s.cout);
        real *grads[2], *dz1[2];
        for (int plain = 0; plain < 2; plain++) {
            be[t].packed = !plain;
            coupling_acts *acts = plain ? &want : &got;
            coupling_nn_forward(acts, &nn, z1, s, scratch);
            grads[plain] = pool_reals(&p, n_params), dz1[plain] = pool_reals(&p, rows * s.cin);
            memset(grads[plain], 0, sizeof(real) * n_params);
            memset(dz1[plain], 0, sizeof(real) * rows * s.cin);
            coupling_nn dnn = nn_at_block(grads[plain], sz);
            memcpy(dh_work, dh, sizeof(real) * rows * s.cout);
            coupling_nn_backward(dz1[plain], &dnn, dh_work, acts, &nn, z1, s, scratch);
        }
        const real *g[5] = {got.r1, got.r2, got.h, dz1[0], grads[0]};
        const real *w[5] = {want.r1, want.r2, want.h, dz1[1], grads[1]};
        size_t n[5] = {rows * s.width, rows * s.width, rows * s.cout, rows * s.cin, n_params};
        for (int i = 0; i < 5; i++) {
            double scale = 0;
            for (size_t j = 0; j < n[i]; j++) scale = fmax(scale, fabs(w[i][j]));
            CHECK(max_abs_diff(g[i], w[i], n[i]) <= 1e-5 * scale, "shape %d: %s differs by %g (scale %g)",
                  t, (const char *[]){"r1", "r2", "h", "dz1", "parameter gradient"}[i],
                  max_abs_diff(g[i], w[i], n[i]), scale);
        }
        pool_free(&p);
    }
}

/* The memory-saving mode's fused pass (network forward, coupling inverse and backward,
 * network backward, image group by image group) against the same passes one after another
 * over the whole batch, for both couplings, on 1-3 thread slots (the same bits on 2 and 3) with
 * a short last group, staying inside coupling_nn_scratch (a canary after it). */
TEST(layer_coupling_rebuild_backward) {
    for (int kind = 0; kind < 3; kind++) { /* additive, affine sigmoid, affine tanh */
        glow_coupling coupling = kind ? GLOW_AFFINE : GLOW_ADDITIVE;
        glow_affine_scale scale = kind == 2 ? GLOW_SCALE_TANH : GLOW_SCALE_SIGMOID;
        pool p = {0};
        int c = 4;
        nn_shape s = {300, 8, 8, c / 2, 16, coupling_nn_out(coupling, c), test_backend(1)};
        size_t rows = (size_t)s.batch * s.h * s.w, n_params = 0, sz[9];
        nn_sizes(sz, s);
        for (int i = 0; i < 9; i++) n_params += sz[i];
        coupling_nn nn = nn_alloc(&p, s, 100 + kind);
        real *y = filled(&p, rows * c, 102, -1, 1), *dy = filled(&p, rows * c, 103, -1, 1);
        real *z1 = pool_reals(&p, rows * s.cin);
        for (size_t r = 0; r < rows; r++) memcpy(z1 + r * s.cin, y + r * c, sizeof(real) * s.cin);
        /* the reference: one pass after another over the whole batch */
        coupling_acts acts = {pool_reals(&p, rows * s.width), pool_reals(&p, rows * s.width),
                              pool_reals(&p, rows * s.cout)};
        real *x_ref = pool_reals(&p, rows * c), *dx_ref = pool_reals(&p, rows * c);
        real *dh = pool_reals(&p, rows * s.cout), *dz1_ref = pool_reals(&p, rows * s.cin);
        real *grad_ref = pool_reals(&p, n_params);
        memset(dz1_ref, 0, sizeof(real) * rows * s.cin);
        memset(grad_ref, 0, sizeof(real) * n_params);
        coupling_nn dnn_ref = nn_at_block(grad_ref, sz);
        real *ref_scratch = pool_reals(&p, coupling_nn_scratch(s));
        coupling_nn_forward(&acts, &nn, z1, s, ref_scratch);
        coupling_inverse(x_ref, NULL, y, acts.h, coupling, scale, s.batch, (size_t)s.h * s.w, c);
        coupling_backward(dx_ref, dh, dy, x_ref, acts.h, coupling, scale, -0.25, s.batch,
                          (size_t)s.h * s.w, c);
        coupling_nn_backward(dz1_ref, &dnn_ref, dh, &acts, &nn, z1, s, ref_scratch);
        double gmax = 0;
        for (size_t i = 0; i < n_params; i++) gmax = fmax(gmax, fabs(grad_ref[i]));
        double tol = IS_DOUBLE ? 1e-12 : 1e-4;
        /* With the input known (a kept one), x stays as given and y is not read: NaN here. */
        real *y_unread = filled(&p, rows * c, 104, NAN, NAN);
        for (int known = 0; known < 2; known++) {
            real *two_slot_dx = NULL, *two_slot_grad = NULL;
            for (int slots = 1; slots <= 3; slots++) {
                s.be = test_backend(slots);
                size_t n_scratch = coupling_nn_scratch(s);
                real *scratch = scratch_with_canary(&p, n_scratch);
                real *x = pool_reals(&p, rows * c), *dx = pool_reals(&p, rows * c);
                real *dz1 = pool_reals(&p, rows * s.cin), *grad = pool_reals(&p, n_params);
                memset(dz1, 0, sizeof(real) * rows * s.cin);
                memset(grad, 0, sizeof(real) * n_params);
                if (known) memcpy(x, x_ref, sizeof(real) * rows * c);
                coupling_nn dnn = nn_at_block(grad, sz);
                coupling_rebuild_backward(x, known, dx, dz1, &dnn, known ? y_unread : y, dy, z1, &nn,
                                          coupling, scale, -0.25, s, scratch);
                static const char *names[3][2] = {{"additive", "additive, input known"},
                                                  {"affine", "affine, input known"},
                                                  {"affine tanh", "affine tanh, input known"}};
                const char *name = names[kind][known];
                CHECK(max_abs_diff(x, x_ref, rows * c) <= (known ? 0 : tol), "%s, slots %d: x differs",
                      name, slots);
                CHECK(max_abs_diff(dx, dx_ref, rows * c) <= tol, "%s, slots %d: dx differs", name, slots);
                CHECK(max_abs_diff(dz1, dz1_ref, rows * s.cin) <= tol, "%s, slots %d: dz1 differs", name, slots);
                CHECK(max_abs_diff(grad, grad_ref, n_params) <= tol * (1 + gmax),
                      "%s, slots %d: parameter gradients differ by %g", name, slots,
                      max_abs_diff(grad, grad_ref, n_params));
                CHECK(canary_intact(scratch, n_scratch), "%s, slots %d: the pass wrote past coupling_nn_scratch",
                      name, slots);
                if (slots == 2) {
                    two_slot_dx = dx, two_slot_grad = grad;
                } else if (slots == 3) {
                    CHECK(memcmp(dx, two_slot_dx, sizeof(real) * rows * c) == 0, "%s, slots 3: dx not the 2-slot bits",
                          name);
                    CHECK(memcmp(grad, two_slot_grad, sizeof(real) * n_params) == 0,
                          "%s, slots 3: parameter gradients not the 2-slot bits (off by %g)", name,
                          max_abs_diff(grad, two_slot_grad, n_params));
                }
            }
        }
        pool_free(&p);
    }
}

/* coupling_nn_init sets both actnorms from the batch (their outputs, before the ReLUs, have
 * zero mean and unit variance per channel), and with the zero-initialised output conv the
 * network outputs 0: the coupling starts as (nearly) the identity. */
TEST(layer_coupling_nn_init) {
    pool p = {0};
    nn_shape s = {3, 4, 5, 3, 6, 6, test_backend(2)};
    size_t rows = (size_t)s.batch * s.h * s.w;
    coupling_nn nn = nn_alloc(&p, s, 70);
    memset(nn.w3, 0, sizeof(real) * s.cout * 9 * s.width);
    memset(nn.b3, 0, sizeof(real) * s.cout);
    memset(nn.logs3, 0, sizeof(real) * s.cout);
    coupling_acts acts = {pool_reals(&p, rows * s.width), pool_reals(&p, rows * s.width),
                          filled(&p, rows * s.cout, 71, -1, 1)};
    real *z1 = filled(&p, rows * s.cin, 72, -1, 1), *scratch = pool_reals(&p, coupling_nn_scratch(s));
    coupling_nn_init(&acts, &nn, z1, s, scratch);
    double hmax = 0;
    for (size_t i = 0; i < rows * s.cout; i++) hmax = fmax(hmax, fabs(acts.h[i]));
    CHECK(hmax == 0, "zero-initialised output conv gives |h| up to %g", hmax);
    /* Recompute the first pre-ReLU activation with the reference conv and the new actnorm. */
    real *a1 = pool_reals(&p, rows * s.width);
    conv3x3_forward_ref(a1, z1, nn.w1, NULL, s.batch, s.h, s.w, s.cin, s.width);
    actnorm_forward(a1, NULL, a1, nn.an1_b, nn.an1_s, s.batch, (size_t)s.h * s.w, s.width);
    for (int j = 0; j < s.width; j++) {
        double mean = 0, var = 0;
        for (size_t r = 0; r < rows; r++) mean += a1[r * s.width + j];
        mean /= rows;
        for (size_t r = 0; r < rows; r++) var += pow(a1[r * s.width + j] - mean, 2);
        var /= rows;
        CHECK(fabs(mean) < 1e-5 && fabs(var - 1) < 1e-4, "actnorm1 channel %d: mean %g, variance %g", j, mean, var);
        int relu_ok = 1;
        for (size_t r = 0; r < rows; r++)
            relu_ok &= fabs(acts.r1[r * s.width + j] - fmax(a1[r * s.width + j], 0)) < INV_TOL;
        CHECK(relu_ok, "channel %d: r1 is not relu(actnorm(conv3x3(z1)))", j);
    }
    pool_free(&p);
}
