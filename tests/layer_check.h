/* layer_check.h: the checks that the layer tests (test_layers.c, test_coupling.c) share:
 * allocation pools, random fills, and for a flow layer its exact inverse, its log-det
 * against a brute-force Jacobian and its gradients against central finite differences. */
#ifndef GLOW_LAYER_CHECK_H
#define GLOW_LAYER_CHECK_H

#include <stdint.h>
#include "test.h"
#include "layers.h"

#define INV_TOL (IS_DOUBLE ? 1e-12 : 1e-5)
#define FD_EPS 1e-5
#define FD_TOL 1e-7

/* Allocations of one test, released together. */
typedef struct { void **ptr; int n; } pool;

/* A flow layer under test: x (batch, h, w, c) -> y of the same size, with its parameters in
 * p[] and perm / kind where it has them. forward adds to logdet (batch), inverse
 * subtracts; logdet may be NULL. */
typedef struct flow_case flow_case;

struct flow_case {
    void (*forward)(const flow_case *f, real *y, double *logdet, const real *x);
    void (*inverse)(const flow_case *f, real *x, double *logdet, const real *y);
    int batch, h, w, c;
    real *x, *y, *dy; /* input, output, the fixed dy of the loss */
    double k;         /* weight of the log-det in the loss */
    real *p[8];
    int *perm;
    glow_coupling kind;
    glow_affine_scale scale;
};

/* One array the loss depends on, its analytic gradient, and how many elements. */
typedef struct { const char *name; real *v; const real *grad; size_t n; } fd_var;

typedef double (*loss_fn)(void *ctx);

real *pool_reals(pool *p, size_t n);
void pool_free(pool *p);
void fill(real *a, size_t n, uint64_t seed, double lo, double hi);
real *filled(pool *p, size_t n, uint64_t seed, double lo, double hi);
double dot(const real *a, const real *b, size_t n);
double lu_logabsdet(double *a, size_t d);
size_t case_dim(const flow_case *f);
size_t case_hw(const flow_case *f);
double case_loss(const flow_case *f);
void check_flow_case(const char *what, flow_case *f);
void check_gradients(const char *what, loss_fn loss, void *ctx, const fd_var *vars, int n_vars);
double flow_case_loss(void *ctx);
flow_case new_case(pool *p, uint64_t seed);
void subtract(real *g, const real *prefill, size_t n);

#endif
