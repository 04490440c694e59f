/* flow_step.c: one flow step, actnorm -> permutation -> coupling, forward, inverse and
 * backward on a context's buffers (flow.h), with the three kinds of permutation: a fixed
 * one (reverse, shuffle), the invertible 1x1 convolution, and its LU form. */
#include <math.h>
#include <string.h>
#include "flow.h"

/* ---- pieces of a step ------------------------------------------------------------------- */

/* The network of step s in the parameter (or gradient) buffer. Its weights are only read,
 * except by glow_model_init, whose model is not const. */
static coupling_nn nn_at(const real *cbase, const step_offsets *s) {
    real *base = (real *)cbase;
    return (coupling_nn){base + s->w1, base + s->an1_b, base + s->an1_s, base + s->w2,
                         base + s->an2_b, base + s->an2_s, base + s->w3, base + s->b3,
                         base + s->logs3};
}

static void fixed_perm(const glow_model *m, const step_offsets *s, int *perm, int c) {
    for (int i = 0; i < c; i++)
        perm[i] = m->cfg.permutation == GLOW_REVERSE ? c - 1 - i : (int)lrint(m->params[s->perm + i]);
}

/* The 1x1 convolution's matrix W into ws->w_mat (LU form) or a pointer to it (free form);
 * NULL if out of memory. */
static const real *conv_matrix(glow_ctx *ctx, const glow_model *m, const step_offsets *s, int c) {
    if (m->cfg.permutation == GLOW_INVCONV) return m->params + s->w;
    int perm[c];
    fixed_perm(m, s, perm, c);
    const real *p = m->params;
    if (invconv_lu_weight(ctx->ws.w_mat, p + s->lu_l, p + s->lu_u, p + s->lu_logs,
                          p + s->lu_sign, perm, c) != GLOW_OK)
        return NULL;
    return ctx->ws.w_mat;
}

/* Per-example log-det of the 1x1 convolution: hw log|det W|, or hw sum(log_s). */
static int conv_logdet(const glow_model *m, const step_offsets *s, const real *w, int c, double *ld) {
    if (m->cfg.permutation == GLOW_INVCONV) return matrix_logdet_inverse(ld, NULL, w, c);
    double t = 0;
    for (int j = 0; j < c; j++) t += m->params[s->lu_logs + j];
    *ld = t;
    return GLOW_OK;
}

static int perm_forward(glow_ctx *ctx, const glow_model *m, const step_offsets *s, real *y,
                        const real *x, double *logdet, int batch, size_t hw, int c) {
    size_t rows = (size_t)batch * hw;
    if (m->cfg.permutation <= GLOW_SHUFFLE) {
        int perm[c];
        fixed_perm(m, s, perm, c);
        permute_forward(y, x, perm, rows, c);
        return GLOW_OK;
    }
    const real *w = conv_matrix(ctx, m, s, c);
    if (!w) return GLOW_ENOMEM;
    if (logdet) {
        double ld;
        int rc = conv_logdet(m, s, w, c, &ld);
        if (rc != GLOW_OK) return rc;
        for (int b = 0; b < batch; b++) logdet[b] += hw * ld;
    }
    invconv_forward(y, x, w, rows, c);
    return GLOW_OK;
}

static int perm_inverse(glow_ctx *ctx, const glow_model *m, const step_offsets *s, real *x,
                        const real *y, double *logdet, int batch, size_t hw, int c) {
    size_t rows = (size_t)batch * hw;
    if (m->cfg.permutation <= GLOW_SHUFFLE) {
        int perm[c];
        fixed_perm(m, s, perm, c);
        permute_inverse(x, y, perm, rows, c);
        return GLOW_OK;
    }
    const real *w = conv_matrix(ctx, m, s, c);
    if (!w) return GLOW_ENOMEM;
    double ld;
    int rc = matrix_logdet_inverse(NULL, ctx->ws.w_inv, w, c);
    if (rc == GLOW_OK && logdet) rc = conv_logdet(m, s, w, c, &ld);
    if (rc != GLOW_OK) return rc;
    if (logdet)
        for (int b = 0; b < batch; b++) logdet[b] -= hw * ld;
    invconv_inverse(x, y, ctx->ws.w_inv, rows, c);
    return GLOW_OK;
}

/* da from dp, where p = perm(a); parameter gradients accumulate. */
static int perm_backward(glow_ctx *ctx, const glow_model *m, const step_offsets *s, real *da,
                         const real *dp, const real *a, double dlogdet, int batch, size_t hw, int c) {
    size_t rows = (size_t)batch * hw;
    if (m->cfg.permutation <= GLOW_SHUFFLE) {
        int perm[c];
        fixed_perm(m, s, perm, c);
        permute_inverse(da, dp, perm, rows, c);
        return GLOW_OK;
    }
    const real *w = conv_matrix(ctx, m, s, c);
    if (!w) return GLOW_ENOMEM;
    if (m->cfg.permutation == GLOW_INVCONV) {
        int rc = matrix_logdet_inverse(NULL, ctx->ws.w_inv, w, c);
        if (rc != GLOW_OK) return rc;
        invconv_backward(da, ctx->grads + s->w, dp, a, w, ctx->ws.w_inv, dlogdet, batch, hw, c);
        return GLOW_OK;
    }
    int perm[c];
    fixed_perm(m, s, perm, c);
    memset(ctx->ws.dw_mat, 0, sizeof(real) * c * c);
    invconv_backward(da, ctx->ws.dw_mat, dp, a, w, NULL, 0.0, batch, hw, c);
    const real *p = m->params;
    real *g = ctx->grads;
    return invconv_lu_backward(g + s->lu_l, g + s->lu_u, g + s->lu_logs, ctx->ws.dw_mat,
                               p + s->lu_l, p + s->lu_u, p + s->lu_logs, p + s->lu_sign, perm,
                               dlogdet, batch, hw, c);
}

/* *v = min(*v, x), where a NaN, once in, stays. */
static void lower(double *v, double x) {
    if (!isnan(*v) && !(x >= *v)) *v = x;
}

/* The step's parameter extremes, and its coupling's smallest log-scale and largest shift
 * from h, into the level's stats. */
static void step_extremes(glow_ctx *ctx, const glow_model *m, int li, int k, const real *h, size_t rows) {
    const level *lv = &m->levels[li];
    const step_offsets *s = &lv->steps[k];
    glow_level_stats *st = &ctx->ws.stats[li];
    const real *p = m->params;
    for (int j = 0; j < lv->c; j++) {
        lower(&st->min_actnorm_logs, ACTNORM_SCALE * p[s->an_s + j]);
        if (m->cfg.permutation == GLOW_INVCONV_LU) lower(&st->min_invconv_logs, p[s->lu_logs + j]);
    }
    double logs, shift;
    coupling_extremes(h, m->cfg.coupling, m->cfg.affine_scale, rows, lv->c, &logs, &shift);
    lower(&st->min_coupling_logs, logs);
    if (!isnan(st->max_coupling_shift) && !(shift <= st->max_coupling_shift))
        st->max_coupling_shift = shift;
}

int step_forward(glow_ctx *ctx, const glow_model *m, int li, int k, int batch, int init,
                 int keep) {
    workspace *ws = &ctx->ws;
    const level *lv = &m->levels[li];
    const step_offsets *s = &lv->steps[k];
    int c = lv->c, half = c / 2;
    size_t hw = (size_t)lv->h * lv->w, rows = batch * hw;
    real *p = (real *)m->params; /* written only by init */
    step_store *kept = kept_step(ctx, li, k, keep);
    real *input = kept_input(ctx, m, li, k, keep, batch);
    if (input) memcpy(input, ws->cur, sizeof(real) * rows * c);
    if (init) actnorm_init(p + s->an_b, p + s->an_s, ws->cur, rows, c, ctx->be.comm);
    actnorm_forward(ws->cur, ws->logdet, ws->cur, p + s->an_b, p + s->an_s, batch, hw, c);
    if (kept) memcpy(kept->a, ws->cur, sizeof(real) * rows * c);
    int rc = perm_forward(ctx, m, s, ws->tmp, ws->cur, ws->logdet, batch, hw, c);
    if (rc != GLOW_OK) return rc;
    copy_columns(ws->z1, half, ws->tmp, c, rows, half);
    coupling_acts acts = kept ? kept->acts : (coupling_acts){NULL, NULL, ws->h};
    if (init && !kept) acts = (coupling_acts){ws->r1, ws->r2, ws->h};
    coupling_nn nn = nn_at(p, s);
    if (init) coupling_nn_init(&acts, &nn, ws->z1, nn_shape_of(ctx, m, lv, batch), ws->scratch);
    else coupling_nn_forward(&acts, &nn, ws->z1, nn_shape_of(ctx, m, lv, batch), ws->scratch);
    coupling_forward(ws->cur, ws->logdet, ws->tmp, acts.h, m->cfg.coupling, m->cfg.affine_scale,
                     batch, hw, c);
    step_extremes(ctx, m, li, k, acts.h, rows);
    return GLOW_OK;
}

/* The log-det as the inverse computes it is a check of numerical invertibility. */
int step_inverse(glow_ctx *ctx, const glow_model *m, int li, int k, int batch, double *logdet) {
    workspace *ws = &ctx->ws;
    const level *lv = &m->levels[li];
    const step_offsets *s = &lv->steps[k];
    int c = lv->c, half = c / 2;
    size_t hw = (size_t)lv->h * lv->w, rows = batch * hw;
    copy_columns(ws->z1, half, ws->cur, c, rows, half);
    coupling_acts acts = {NULL, NULL, ws->h};
    coupling_nn nn = nn_at(m->params, s);
    coupling_nn_forward(&acts, &nn, ws->z1, nn_shape_of(ctx, m, lv, batch), ws->scratch);
    coupling_inverse(ws->tmp, logdet, ws->cur, acts.h, m->cfg.coupling, m->cfg.affine_scale, batch,
                     hw, c);
    int rc = perm_inverse(ctx, m, s, ws->cur, ws->tmp, logdet, batch, hw, c);
    if (rc != GLOW_OK) return rc;
    actnorm_inverse(ws->cur, logdet, ws->cur, m->params + s->an_b, m->params + s->an_s, batch, hw, c);
    return GLOW_OK;
}

/* In the memory-saving mode, x is rebuilt: the coupling's inverse evaluates the network on
 * the unchanged half, which is exactly the forward evaluation the network's backward
 * needs. */
int step_backward(glow_ctx *ctx, const glow_model *m, int li, int k, int batch, double g,
                  int keep) {
    workspace *ws = &ctx->ws;
    const level *lv = &m->levels[li];
    const step_offsets *s = &lv->steps[k];
    int c = lv->c, half = c / 2, rc;
    size_t hw = (size_t)lv->h * lv->w, rows = batch * hw;
    const real *p = m->params;
    real *gr = ctx->grads;
    coupling_nn nn = nn_at(p, s), dnn = nn_at(gr, s);
    nn_shape shape = nn_shape_of(ctx, m, lv, batch);
    coupling_acts acts;
    const real *a; /* the actnorm's output = the permutation's input */
    step_store *kept = kept_step(ctx, li, k, keep);
    const real *input = kept ? NULL : kept_input(ctx, m, li, k, keep, batch);
    if (kept) {
        acts = kept->acts;
        a = kept->a;
        if ((rc = perm_forward(ctx, m, s, ws->tmp, a, NULL, batch, hw, c)) != GLOW_OK) return rc;
        copy_columns(ws->z1, half, ws->tmp, c, rows, half);
    } else if (input) { /* the coupling's input again from the kept input: exact */
        actnorm_forward(ws->abuf, NULL, input, p + s->an_b, p + s->an_s, batch, hw, c);
        a = ws->abuf;
        if ((rc = perm_forward(ctx, m, s, ws->tmp, a, NULL, batch, hw, c)) != GLOW_OK) return rc;
    }
    /* Coupling: dp = d(coupling input) in dtmp; the network adds dz1 to the first half. */
    memset(ws->dz1, 0, sizeof(real) * rows * half);
    if (kept) {
        coupling_backward(ws->dtmp, ws->dh, ws->dcur, ws->tmp, acts.h, m->cfg.coupling,
                          m->cfg.affine_scale, g, batch, hw, c);
        coupling_nn_backward(ws->dz1, &dnn, ws->dh, &acts, &nn, ws->z1, shape, ws->scratch);
    } else { /* the network's forward pass and the coupling's inverse (unless the input is
              * kept) and backward, in one pass over image groups; z1 is the same half of
              * the output (exact when the input is kept) and of the input */
        copy_columns(ws->z1, half, ws->cur, c, rows, half);
        coupling_rebuild_backward(ws->tmp, input != NULL, ws->dtmp, ws->dz1, &dnn, ws->cur,
                                  ws->dcur, ws->z1, &nn, m->cfg.coupling, m->cfg.affine_scale, g,
                                  shape, ws->scratch);
        if (!input && (rc = perm_inverse(ctx, m, s, ws->abuf, ws->tmp, NULL, batch, hw, c)) != GLOW_OK)
            return rc;
        a = ws->abuf;
    }
    add_columns(ws->dtmp, c, ws->dz1, half, rows, half);
    if ((rc = perm_backward(ctx, m, s, ws->dcur, ws->dtmp, a, g, batch, hw, c)) != GLOW_OK) return rc;
    actnorm_backward(ws->dcur, gr + s->an_b, gr + s->an_s, ws->dcur, a, p + s->an_s, g, batch,
                     hw, c);
    if (input) memcpy(ws->cur, input, sizeof(real) * rows * c);
    else actnorm_inverse(ws->cur, NULL, a, p + s->an_b, p + s->an_s, batch, hw, c);
    return GLOW_OK;
}
