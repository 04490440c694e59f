/* flow.c: the passes over the model: forward (init, log-likelihood, encode), reverse
 * (decode, sample) and the training step, whose backward pass rebuilds each flow step's
 * input from its output (see model.c for the structure and the latent layout), with the
 * safety net that redoes a step whose rebuilt inputs drifted. A pass reads the model and
 * writes only its context (flow.h).
 *
 * Loss: mean over the batch of bits/dim, bpd_b = -log p(x_b) / (D ln 2), plus weight_y
 * times the mean class cross-entropy in bits. So d loss / d log p(x_b) = -1 / (B D ln 2)
 * for every example, and every log-det and prior term of log p(x_b) gets that gradient. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "flow.h"

/* The batch's sum of v (B). */
static double batch_sum(const double *v, int batch) {
    double t = 0;
    for (int b = 0; b < batch; b++) t += v[b];
    return t;
}

/* x (B,H,W,C) -> ws->z (B,D), ws->logdet and ws->logp (the prior terms) per example, and
 * each level's extremes and terms in ws->stats. */
static int flow_forward(glow_ctx *ctx, const glow_model *m, const real *x, const int *y, int batch,
                        int init, int keep) {
    workspace *ws = &ctx->ws;
    const glow_config *cfg = &m->cfg;
    double to_bits = -1.0 / (batch * m->dim * LN2);
    for (int b = 0; b < batch; b++) ws->logdet[b] = ws->logp[b] = 0;
    squeeze_forward(ws->cur, x, batch, cfg->image_h, cfg->image_w, cfg->image_c);
    for (int i = 0; i < m->n_levels; i++) {
        const level *lv = &m->levels[i];
        int c = lv->c, half = c / 2;
        size_t rows = (size_t)batch * lv->h * lv->w;
        glow_level_stats *st = &ws->stats[i];
        *st = (glow_level_stats){.min_coupling_logs = INFINITY, .min_actnorm_logs = INFINITY,
                                 .min_invconv_logs = cfg->permutation == GLOW_INVCONV_LU ? INFINITY : 0,
                                 .min_prior_logs = INFINITY};
        double logdet0 = batch_sum(ws->logdet, batch), logp0 = batch_sum(ws->logp, batch);
        for (int k = 0; k < cfg->depth; k++) {
            int rc = step_forward(ctx, m, i, k, batch, init, keep);
            if (rc != GLOW_OK) return rc;
        }
        const real *z = ws->cur;
        if (i < m->n_levels - 1) {
            copy_columns(ws->z1, half, ws->cur, c, rows, half);
            copy_columns(ws->tmp, half, ws->cur + half, c, rows, half);
            split_prior(ctx, m, i, ws->z1, batch);
            z = ws->tmp;
        } else {
            top_prior(ctx, m, y, batch);
        }
        gaussian_logp(ws->logp, z, ws->mean, ws->logs, batch, lv->z_size);
        gaussian_extremes(&st->min_prior_logs, &st->max_abs_z, &st->max_z_score, z, ws->mean,
                          ws->logs, batch * lv->z_size);
        latent_put(ws->z, z, lv, batch, m->dim);
        if (i < m->n_levels - 1) squeeze_forward(ws->cur, ws->z1, batch, lv->h, lv->w, half);
        st->logdet_bpd = (batch_sum(ws->logdet, batch) - logdet0) * to_bits;
        st->prior_bpd = (batch_sum(ws->logp, batch) - logp0) * to_bits;
    }
    return GLOW_OK;
}

/* z (B,D) -> x (B,H,W,C); with z NULL, every latent is drawn from its prior at the given
 * temperature (the split priors depend on the half decoded so far). */
static int flow_reverse(glow_ctx *ctx, const glow_model *m, const real *z, const int *y,
                        int batch, double temperature, uint64_t seed, real *x, double *logdet) {
    workspace *ws = &ctx->ws;
    const glow_config *cfg = &m->cfg;
    int top = m->n_levels - 1;
    if (logdet)
        for (int b = 0; b < batch; b++) logdet[b] = 0;
    if (z) {
        latent_get(ws->cur, z, &m->levels[top], batch, m->dim);
    } else {
        top_prior(ctx, m, y, batch);
        gaussian_sample(ws->cur, ws->mean, ws->logs, temperature,
                        glow_rng_key(seed, 0x73616d70 /* "samp" */, top, 0), batch,
                        m->levels[top].z_size);
    }
    for (int i = top; i >= 0; i--) {
        for (int k = cfg->depth - 1; k >= 0; k--) {
            int rc = step_inverse(ctx, m, i, k, batch, logdet);
            if (rc != GLOW_OK) return rc;
        }
        if (i == 0) {
            squeeze_inverse(x, ws->cur, batch, cfg->image_h, cfg->image_w, cfg->image_c);
            break;
        }
        const level *lv = &m->levels[i - 1];
        int c = lv->c, half = c / 2;
        size_t rows = (size_t)batch * lv->h * lv->w;
        squeeze_inverse(ws->z1, ws->cur, batch, lv->h, lv->w, half);
        if (z) {
            latent_get(ws->tmp, z, lv, batch, m->dim);
        } else {
            split_prior(ctx, m, i - 1, ws->z1, batch);
            gaussian_sample(ws->tmp, ws->mean, ws->logs, temperature,
                            glow_rng_key(seed, 0x73616d70, i - 1, 0), batch, lv->z_size);
        }
        copy_columns(ws->cur, c, ws->z1, half, rows, half);
        copy_columns(ws->cur + half, c, ws->tmp, half, rows, half);
    }
    return GLOW_OK;
}

static double log_bins(const glow_model *m) { return m->dim * m->cfg.n_bits * LN2; }

/* Every public pass runs under the context's thread count (enter) and leaves its failure's
 * message in the context (leave). */
static int enter(glow_ctx *ctx, const glow_model *m, int batch, const int *y, int labels_required,
                 int *saved) {
    *saved = backend_enter(&ctx->be);
    int rc = workspace_reserve(ctx, m, batch);
    if (rc == GLOW_OK) rc = check_labels(m, y, batch, labels_required);
    return rc;
}

static int leave(glow_ctx *ctx, int saved, int rc) {
    backend_leave(saved);
    if (rc != GLOW_OK) snprintf(ctx->error, sizeof ctx->error, "%s", glow_last_error());
    return rc;
}

int glow_model_init(glow_ctx *ctx, glow_model *m, const glow_real *x, const int *y, int batch) {
    int saved, rc = enter(ctx, m, batch, y, 1, &saved);
    if (rc == GLOW_OK) rc = flow_forward(ctx, m, x, y, batch, 1, 0);
    return leave(ctx, saved, rc);
}

int glow_model_log_prob(glow_ctx *ctx, const glow_model *m, const glow_real *x, const int *y,
                        int batch, double *logp, double *bpd) {
    int saved, rc = enter(ctx, m, batch, y, 1, &saved);
    if (rc == GLOW_OK) rc = flow_forward(ctx, m, x, y, batch, 0, 0);
    if (rc == GLOW_OK)
        for (int b = 0; b < batch; b++) {
            double lp = ctx->ws.logdet[b] + ctx->ws.logp[b] - log_bins(m);
            if (logp) logp[b] = lp;
            if (bpd) bpd[b] = -lp / (m->dim * LN2);
        }
    return leave(ctx, saved, rc);
}

int glow_model_encode(glow_ctx *ctx, const glow_model *m, const glow_real *x, const int *y,
                      int batch, glow_real *z, double *logdet) {
    int saved, rc = enter(ctx, m, batch, y, 1, &saved);
    if (rc == GLOW_OK) rc = flow_forward(ctx, m, x, y, batch, 0, 0);
    if (rc == GLOW_OK) {
        memcpy(z, ctx->ws.z, sizeof(real) * batch * m->dim);
        if (logdet) memcpy(logdet, ctx->ws.logdet, sizeof(double) * batch);
    }
    return leave(ctx, saved, rc);
}

int glow_model_decode(glow_ctx *ctx, const glow_model *m, const glow_real *z, const int *y,
                      int batch, glow_real *x, double *logdet) {
    int saved, rc = enter(ctx, m, batch, y, 0, &saved);
    if (rc == GLOW_OK) rc = flow_reverse(ctx, m, z, y, batch, 0, 0, x, logdet);
    if (rc == GLOW_OK && logdet)
        for (int b = 0; b < batch; b++) logdet[b] = -logdet[b]; /* as the forward's */
    return leave(ctx, saved, rc);
}

int glow_model_sample(glow_ctx *ctx, const glow_model *m, const int *y, int batch,
                      double temperature, uint64_t seed, glow_real *x) {
    int saved, rc = enter(ctx, m, batch, y, 0, &saved);
    if (rc == GLOW_OK && !(temperature >= 0))
        rc = glow_fail(GLOW_EINVAL, "temperature %g: must be >= 0", temperature);
    if (rc == GLOW_OK) rc = flow_reverse(ctx, m, NULL, y, batch, temperature, seed, x, NULL);
    return leave(ctx, saved, rc);
}

/* memory: bytes for kept activations (SIZE_MAX: keep every step's); inputs: keep every
 * step's input too, so that no step is rebuilt by the inverse. */
static int train_pass(glow_ctx *ctx, const glow_model *m, const glow_real *x, const int *y,
                      int batch, size_t memory, int inputs, glow_step_stats *stats, glow_real *dx) {
    workspace *ws = &ctx->ws;
    const glow_config *cfg = &m->cfg;
    int rc, keep = (memory > 0 ? KEEP_ACTS : 0) | (inputs ? KEEP_INPUTS : 0);
    if ((rc = workspace_reserve_store(ctx, m, batch, memory)) != GLOW_OK) return rc;
    if (inputs && (rc = workspace_reserve_inputs(ctx, m, batch)) != GLOW_OK) return rc;
    if ((rc = flow_forward(ctx, m, x, y, batch, 0, keep)) != GLOW_OK) return rc;
    glow_step_stats st = {0};
    memcpy(st.level, ws->stats, sizeof(glow_level_stats) * m->n_levels);
    for (int i = 0; i < m->n_levels; i++)
        for (int k = 0; k < cfg->depth; k++) st.kept_steps += kept_step(ctx, i, k, keep) != NULL;
    for (int b = 0; b < batch; b++)
        st.bpd += -(ws->logdet[b] + ws->logp[b] - log_bins(m)) / (m->dim * LN2);
    st.bpd /= batch;

    /* Backward from the top latent down. */
    double g = -1.0 / (batch * m->dim * LN2);
    memset(ctx->grads, 0, sizeof(real) * m->n_params);
    int top = m->n_levels - 1;
    const level *tl = &m->levels[top];
    latent_get(ws->cur, ws->z, tl, batch, m->dim);
    memset(ws->dcur, 0, sizeof(real) * batch * tl->z_size);
    top_prior(ctx, m, y, batch);
    gaussian_backward(ws->dcur, ws->dmean, ws->dlogs, ws->cur, ws->mean, ws->logs, g, batch,
                      tl->z_size);
    if (cfg->prior_logs == GLOW_PRIOR_TANH)
        prior_logs_bound_backward(ws->dlogs, ws->logs, (size_t)batch * tl->z_size);
    top_prior_backward(ctx, m, y, batch);
    if (m->cls_w != SIZE_MAX) st.class_bits = class_loss(ctx, m, ws->cur, ws->dcur, y, batch);
    st.loss = st.bpd + cfg->weight_y * st.class_bits;

    for (int i = top; i >= 0; i--) {
        for (int k = cfg->depth - 1; k >= 0; k--)
            if ((rc = step_backward(ctx, m, i, k, batch, g, keep)) != GLOW_OK) return rc;
        if (i == 0) break;
        /* Undo the squeeze, then join the factored-out half and its prior's gradient. */
        const level *lv = &m->levels[i - 1];
        int c = lv->c, half = c / 2;
        size_t rows = (size_t)batch * lv->h * lv->w;
        squeeze_inverse(ws->z1, ws->cur, batch, lv->h, lv->w, half);
        squeeze_inverse(ws->dz1, ws->dcur, batch, lv->h, lv->w, half);
        latent_get(ws->tmp, ws->z, lv, batch, m->dim);
        split_prior_backward(ctx, m, i - 1, ws->z1, ws->tmp, ws->dz1, ws->dtmp, g, batch);
        copy_columns(ws->cur, c, ws->z1, half, rows, half);
        copy_columns(ws->cur + half, c, ws->tmp, half, rows, half);
        copy_columns(ws->dcur, c, ws->dz1, half, rows, half);
        copy_columns(ws->dcur + half, c, ws->dtmp, half, rows, half);
    }
    /* ws->cur now holds the rebuilt (squeezed) input: measure how exact the rebuild was. */
    squeeze_inverse(ws->tmp, ws->cur, batch, cfg->image_h, cfg->image_w, cfg->image_c);
    st.max_rebuild_error = 0;
    for (size_t i = 0; i < (size_t)batch * m->dim; i++) {
        double d = fabs((double)ws->tmp[i] - x[i]);
        if (!(d <= st.max_rebuild_error) && !isnan(st.max_rebuild_error)) st.max_rebuild_error = d; /* NaN stays */
    }
    if (dx) squeeze_inverse(dx, ws->dcur, batch, cfg->image_h, cfg->image_w, cfg->image_c);
    *stats = st;
    return GLOW_OK;
}

/* Past this, inputs rebuilt by the inverse have drifted too far for their gradients to be
 * trusted; in healthy training the drift is ~1e-6. */
#define REBUILD_TOLERANCE 1e-4

int glow_model_train_step(glow_ctx *ctx, const glow_model *m, const glow_real *x, const int *y,
                          int batch, glow_step_stats *stats, glow_real *dx) {
    glow_step_stats st;
    int saved, rc = enter(ctx, m, batch, y, 1, &saved);
    if (rc == GLOW_OK) rc = glow_ctx_reserve_grads(ctx, m);
    if (rc != GLOW_OK) return leave(ctx, saved, rc);
    int rebuilds = ctx->activation_memory != SIZE_MAX;
    rc = train_pass(ctx, m, x, y, batch, ctx->activation_memory, 0, &st, dx);
    /* The safety net: a badly conditioned layer can make the rebuilt inputs drift (the
     * paper's sigmoid scale near 0 did, often; the bounded tanh scale rarely does). Then
     * the step is done again keeping every step's input from the forward pass, which is
     * exact and costs c values per pixel per step (not the activations' 2 width more),
     * given back at once. */
    if (rc == GLOW_OK && rebuilds && isfinite(st.loss) &&
        !(st.max_rebuild_error <= REBUILD_TOLERANCE)) {
        double drift = st.max_rebuild_error;
        rc = train_pass(ctx, m, x, y, batch, ctx->activation_memory, 1, &st, dx);
        st.recomputed = 1;
        st.max_rebuild_error = drift;
    }
    workspace_release_inputs(&ctx->ws);
    if (rc == GLOW_OK && stats) *stats = st;
    return leave(ctx, saved, rc);
}
