/* layer_check.c: the shared layer checks (layer_check.h). */
#include <stdlib.h>
#include <string.h>
#include "layer_check.h"


real *pool_reals(pool *p, size_t n) {
    real *a = calloc(n ? n : 1, sizeof(real));
    void **grown = realloc(p->ptr, sizeof(void *) * (p->n + 1));
    if (!a || !grown) {
        fprintf(stderr, "test_layers: out of memory\n");
        exit(1);
    }
    p->ptr = grown;
    p->ptr[p->n++] = a;
    return a;
}
void pool_free(pool *p) {
    for (int i = 0; i < p->n; i++) free(p->ptr[i]);
    free(p->ptr);
    p->ptr = NULL;
    p->n = 0;
}

/* a (n) := uniform in [lo, hi), a function of the seed. */
void fill(real *a, size_t n, uint64_t seed, double lo, double hi) {
    uint64_t key = glow_rng_key(seed, 0x6c6179 /* "lay" */, n, 0);
    for (size_t i = 0; i < n; i++) a[i] = (real)(lo + (hi - lo) * glow_rng_uniform(key, i));
}
real *filled(pool *p, size_t n, uint64_t seed, double lo, double hi) {
    real *a = pool_reals(p, n);
    fill(a, n, seed, lo, hi);
    return a;
}

double dot(const real *a, const real *b, size_t n) {
    double t = 0;
    for (size_t i = 0; i < n; i++) t += (double)a[i] * b[i];
    return t;
}

/* log|det A| of a (d, d) by LU with partial pivoting (A is destroyed). */
double lu_logabsdet(double *a, size_t d) {
    double ld = 0;
    for (size_t k = 0; k < d; k++) {
        size_t p = k;
        for (size_t i = k + 1; i < d; i++)
            if (fabs(a[i * d + k]) > fabs(a[p * d + k])) p = i;
        for (size_t j = 0; j < d; j++) {
            double t = a[k * d + j];
            a[k * d + j] = a[p * d + j];
            a[p * d + j] = t;
        }
        ld += log(fabs(a[k * d + k]));
        for (size_t i = k + 1; i < d; i++) {
            double f = a[i * d + k] / a[k * d + k];
            for (size_t j = k; j < d; j++) a[i * d + j] -= f * a[k * d + j];
        }
    }
    return ld;
}


size_t case_dim(const flow_case *f) { return (size_t)f->h * f->w * f->c; }
size_t case_hw(const flow_case *f) { return (size_t)f->h * f->w; }

/* L = sum(dy * y) + k * sum(logdet) at the current x and parameters. */
double case_loss(const flow_case *f) {
    double ld[f->batch];
    for (int b = 0; b < f->batch; b++) ld[b] = 0;
    f->forward(f, f->y, ld, f->x);
    double l = dot(f->dy, f->y, f->batch * case_dim(f));
    for (int b = 0; b < f->batch; b++) l += f->k * ld[b];
    return l;
}

/* inverse(forward(x)) == x, the log-dets of the round trip cancel, and the log-det of
 * example 0 equals log|det| of its Jacobian by central differences (examples are
 * independent, so perturbing example 0 moves only example 0's output). */
void check_flow_case(const char *what, flow_case *f) {
    size_t d = case_dim(f), n = f->batch * d;
    real *x2 = malloc(sizeof(real) * n), *yp = malloc(sizeof(real) * n), *ym = malloc(sizeof(real) * n);
    double ld[f->batch], ld_fwd[f->batch];
    for (int b = 0; b < f->batch; b++) ld[b] = 0;
    f->forward(f, f->y, ld, f->x);
    memcpy(ld_fwd, ld, sizeof ld);
    f->inverse(f, x2, ld, f->y);
    double err = max_abs_diff(x2, f->x, n);
    CHECK(err < INV_TOL, "%s: inverse(forward(x)) differs from x by %.3g", what, err);
    for (int b = 0; b < f->batch; b++)
        CHECK(fabs(ld[b]) < 1e-12 * (1 + fabs(ld_fwd[b])),
              "%s: example %d: forward log-det %.12g, after the inverse %.3g (not 0)", what, b,
              ld_fwd[b], ld[b]);

    double *jac = malloc(sizeof(double) * d * d), eps = IS_DOUBLE ? 1e-6 : 1e-2;
    for (size_t i = 0; i < d; i++) {
        real keep = f->x[i], xp = (real)(keep + eps), xm = (real)(keep - eps);
        double delta = (double)xp - xm; /* the step actually taken in glow_real */
        f->x[i] = xp;
        f->forward(f, yp, NULL, f->x);
        f->x[i] = xm;
        f->forward(f, ym, NULL, f->x);
        f->x[i] = keep;
        for (size_t j = 0; j < d; j++) jac[j * d + i] = ((double)yp[j] - ym[j]) / delta;
    }
    double bf = lu_logabsdet(jac, d);
    double tol = IS_DOUBLE ? 1e-8 * (1 + fabs(bf)) : 1e-3 * (1 + fabs(bf));
    CHECK(fabs(ld_fwd[0] - bf) < tol, "%s: log-det %.12g, brute-force log|det J| %.12g", what,
          ld_fwd[0], bf);
    free(x2), free(yp), free(ym), free(jac);
}


/* Every element of every variable: analytic gradient against (L(v+eps) - L(v-eps)) / 2eps,
 * relative error with a floor of 1e-2 on the scale. Reports the first failure per variable
 * and how many there were. */
void check_gradients(const char *what, loss_fn loss, void *ctx, const fd_var *vars, int n_vars) {
    for (int k = 0; k < n_vars; k++) {
        int bad = 0;
        double worst = 0;
        for (size_t j = 0; j < vars[k].n; j++) {
            real keep = vars[k].v[j];
            vars[k].v[j] = (real)(keep + FD_EPS);
            double lp = loss(ctx);
            vars[k].v[j] = (real)(keep - FD_EPS);
            double lm = loss(ctx);
            vars[k].v[j] = keep;
            double fd = (lp - lm) / (2 * FD_EPS), an = vars[k].grad[j];
            double err = fabs(fd - an) / (1e-2 + fabs(fd) + fabs(an));
            if (!(err <= worst)) worst = err;
            if (!(err < FD_TOL) && bad++ == 0)
                test_fail_at(__FILE__, __LINE__, "%s: d/d %s[%zu]: analytic %.12g, finite difference %.12g",
                             what, vars[k].name, j, an, fd);
        }
        if (bad) test_fail_at(__FILE__, __LINE__, "%s: %s: %d of %zu elements wrong, worst relative error %.3g",
                              what, vars[k].name, bad, vars[k].n, worst);
    }
}

double flow_case_loss(void *ctx) { return case_loss(ctx); }

/* A flow case of batch 2, 2x2 pixels, 4 channels with x uniform in [-1, 1) and a fixed dy. */
flow_case new_case(pool *p, uint64_t seed) {
    flow_case f = {0};
    f.batch = 2, f.h = 2, f.w = 2, f.c = 4;
    size_t n = f.batch * case_dim(&f);
    f.x = filled(p, n, seed, -1, 1);
    f.y = pool_reals(p, n);
    f.dy = filled(p, n, seed + 1, -1, 1);
    f.k = 0.7;
    return f;
}

/* g - prefill: the part a backward pass added to a gradient buffer that held `prefill`. */
void subtract(real *g, const real *prefill, size_t n) {
    for (size_t i = 0; i < n; i++) g[i] -= prefill[i];
}
