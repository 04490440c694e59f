/* flow_prior.c: the priors of the latents (flow.h): a split's prior, a zero-initialised
 * conv3x3 of the half that continues; the top prior, a learned bias per position and
 * channel plus, if class-conditional, a row per class; the optional class loss on the top
 * latent; and where each level's latent lies in an example's latent vector. */
#include <math.h>
#include <string.h>
#include "flow.h"

/* Split prior of level li from z1 (rows, c/2): ws->ph = zeroconv(z1) (rows, c), then
 * mean = ph[:, 0::2] and logs = ph[:, 1::2] into ws->mean, ws->logs (rows, c/2). */
void split_prior(glow_ctx *ctx, const glow_model *m, int li, const real *z1, int batch) {
    workspace *ws = &ctx->ws;
    const level *lv = &m->levels[li];
    int c = lv->c, half = c / 2;
    size_t rows = (size_t)batch * lv->h * lv->w;
    const real *p = m->params;
    zeroconv_forward(ws->ph, z1, p + lv->prior_w, p + lv->prior_b, p + lv->prior_logs, batch,
                     lv->h, lv->w, half, c, ws->scratch);
    deinterleave(ws->mean, ws->logs, ws->ph, rows, half);
    if (m->cfg.prior_logs == GLOW_PRIOR_TANH) prior_logs_bound(ws->logs, rows * half);
}

void split_prior_backward(glow_ctx *ctx, const glow_model *m, int li, const real *z1,
                          const real *z2, real *dz1, real *dz2, double g, int batch) {
    workspace *ws = &ctx->ws;
    const level *lv = &m->levels[li];
    int c = lv->c, half = c / 2;
    size_t rows = (size_t)batch * lv->h * lv->w;
    split_prior(ctx, m, li, z1, batch);
    memset(dz2, 0, sizeof(real) * rows * half);
    gaussian_backward(dz2, ws->dmean, ws->dlogs, z2, ws->mean, ws->logs, g, batch, lv->z_size);
    if (m->cfg.prior_logs == GLOW_PRIOR_TANH)
        prior_logs_bound_backward(ws->dlogs, ws->logs, rows * half);
    interleave(ws->dph, ws->dmean, ws->dlogs, rows, half);
    zeroconv_backward(dz1, ctx->grads + lv->prior_w, ctx->grads + lv->prior_b,
                      ctx->grads + lv->prior_logs, ws->dph, ws->ph, z1, m->params + lv->prior_w,
                      m->params + lv->prior_logs, batch, lv->h, lv->w, half, c, ws->scratch);
}

/* Top prior into ws->mean, ws->logs (B*hw, c): the learned bias (mean = first c channels,
 * logs = last c) plus, if class-conditional, the label's row of the ycond weight. */
void top_prior(glow_ctx *ctx, const glow_model *m, const int *y, int batch) {
    workspace *ws = &ctx->ws;
    const level *lv = &m->levels[m->n_levels - 1];
    int c = lv->c;
    size_t hw = (size_t)lv->h * lv->w;
    const real *p = m->params;
    for (int b = 0; b < batch; b++)
        for (size_t q = 0; q < hw; q++)
            for (int j = 0; j < c; j++) {
                size_t i = (b * hw + q) * c + j;
                double mu = 0, ls = 0;
                if (m->top_bias != SIZE_MAX) {
                    mu += p[m->top_bias + q * 2 * c + j];
                    ls += p[m->top_bias + q * 2 * c + c + j];
                }
                if (m->top_ycond != SIZE_MAX) {
                    int cls = y ? y[b] : 0;
                    mu += p[m->top_ycond + (size_t)cls * 2 * c + j];
                    ls += p[m->top_ycond + (size_t)cls * 2 * c + c + j];
                }
                ws->mean[i] = (real)mu;
                ws->logs[i] = (real)ls;
            }
    if (m->cfg.prior_logs == GLOW_PRIOR_TANH) prior_logs_bound(ws->logs, (size_t)batch * hw * c);
}

void latent_put(real *z, const real *src, const level *lv, int batch, size_t dim) {
    for (int b = 0; b < batch; b++)
        memcpy(z + b * dim + lv->z_offset, src + b * lv->z_size, sizeof(real) * lv->z_size);
}

void latent_get(real *dst, const real *z, const level *lv, int batch, size_t dim) {
    for (int b = 0; b < batch; b++)
        memcpy(dst + b * lv->z_size, z + b * dim + lv->z_offset, sizeof(real) * lv->z_size);
}

int check_labels(const glow_model *m, const int *y, int batch, int required) {
    int needs = m->cfg.ycond || m->cfg.weight_y > 0;
    if (!needs) return GLOW_OK;
    if (!y) return required ? glow_fail(GLOW_EINVAL, "this model is class-conditional: labels "
                                        "are required") : GLOW_OK;
    for (int b = 0; b < batch; b++)
        if (y[b] < 0 || y[b] >= m->cfg.n_classes)
            return glow_fail(GLOW_EINVAL, "label %d of example %d: must be in 0..%d", y[b], b,
                             m->cfg.n_classes - 1);
    return GLOW_OK;
}

/* The class loss on the top latent: logits = mean over positions of z_top @ W + b, mean
 * cross-entropy in bits. Adds weight_y * d(class bits)/dz_top to dz (B*hw, c) and the
 * classifier's gradients; returns the mean class bits. */
double class_loss(glow_ctx *ctx, const glow_model *m, const real *z_top, real *dz, const int *y,
                  int batch) {
    const level *lv = &m->levels[m->n_levels - 1];
    int c = lv->c, n = m->cfg.n_classes;
    size_t hw = (size_t)lv->h * lv->w;
    const real *w = m->params + m->cls_w, *bias = m->params + m->cls_b;
    real *dw = ctx->grads + m->cls_w, *dbias = ctx->grads + m->cls_b;
    double total = 0, k = m->cfg.weight_y / (batch * LN2);
    for (int b = 0; b < batch; b++) {
        double feat[c], logits[n], dlogits[n], mx = -INFINITY, se = 0;
        for (int j = 0; j < c; j++) {
            double t = 0;
            for (size_t q = 0; q < hw; q++) t += z_top[(b * hw + q) * c + j];
            feat[j] = t / hw;
        }
        for (int o = 0; o < n; o++) {
            double t = bias[o];
            for (int j = 0; j < c; j++) t += feat[j] * w[j * n + o];
            logits[o] = t;
            if (t > mx) mx = t;
        }
        for (int o = 0; o < n; o++) se += exp(logits[o] - mx);
        double lse = mx + log(se);
        total += (lse - logits[y[b]]) / LN2;
        for (int o = 0; o < n; o++) {
            dlogits[o] = k * (exp(logits[o] - lse) - (o == y[b]));
            dbias[o] += (real)dlogits[o];
        }
        for (int j = 0; j < c; j++) {
            double dfeat = 0;
            for (int o = 0; o < n; o++) {
                dw[j * n + o] += (real)(feat[j] * dlogits[o]);
                dfeat += w[j * n + o] * dlogits[o];
            }
            for (size_t q = 0; q < hw; q++) dz[(b * hw + q) * c + j] += (real)(dfeat / hw);
        }
    }
    return total / batch;
}

/* Gradients of the top prior's parameters from d mean, d logs (B*hw, c). */
void top_prior_backward(glow_ctx *ctx, const glow_model *m, const int *y, int batch) {
    workspace *ws = &ctx->ws;
    const level *lv = &m->levels[m->n_levels - 1];
    int c = lv->c;
    size_t hw = (size_t)lv->h * lv->w;
    for (int b = 0; b < batch; b++)
        for (size_t q = 0; q < hw; q++)
            for (int j = 0; j < c; j++) {
                size_t i = (b * hw + q) * c + j;
                if (m->top_bias != SIZE_MAX) {
                    ctx->grads[m->top_bias + q * 2 * c + j] += ws->dmean[i];
                    ctx->grads[m->top_bias + q * 2 * c + c + j] += ws->dlogs[i];
                }
                if (m->top_ycond != SIZE_MAX) {
                    ctx->grads[m->top_ycond + (size_t)y[b] * 2 * c + j] += ws->dmean[i];
                    ctx->grads[m->top_ycond + (size_t)y[b] * 2 * c + c + j] += ws->dlogs[i];
                }
            }
}
