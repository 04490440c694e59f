/* flow.c: the passes over the model: forward (init, log-likelihood, encode), reverse
 * (decode, sample) and the training step's backward pass, which rebuilds each flow step's
 * input from its output (see model.c for the structure and the latent layout).
 *
 * Loss: mean over the batch of bits/dim, bpd_b = -log p(x_b) / (D ln 2), plus weight_y
 * times the mean class cross-entropy in bits. So d loss / d log p(x_b) = -1 / (B D ln 2)
 * for every example, and every log-det and prior term of log p(x_b) gets that gradient. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "layers.h"
#include "model.h"

#define LN2 0.69314718055994531

/* ---- workspace ------------------------------------------------------------------------- */

static real *alloc_real(size_t n, int *ok) {
    real *p = malloc(sizeof(real) * (n ? n : 1));
    if (!p) *ok = 0;
    return p;
}

static void workspace_release_store(glow_model *m) {
    free(m->ws.store_block);
    m->ws.store_block = NULL;
    m->ws.store_batch = 0;
    m->ws.store_memory = 0;
    for (int i = 0; i < m->n_levels; i++) {
        free(m->levels[i].store);
        m->levels[i].store = NULL;
    }
}

static void workspace_release_inputs(glow_model *m) {
    for (int i = 0; i < m->n_levels; i++) {
        free(m->levels[i].inputs);
        m->levels[i].inputs = NULL;
    }
    m->ws.inputs_batch = 0;
}

void workspace_free(glow_model *m) {
    workspace *ws = &m->ws;
    real **bufs[] = {&ws->cur, &ws->tmp, &ws->abuf, &ws->dcur, &ws->dtmp, &ws->z, &ws->z1,
                     &ws->dz1, &ws->r1, &ws->r2, &ws->h, &ws->dh, &ws->mean, &ws->logs,
                     &ws->dmean, &ws->dlogs, &ws->ph, &ws->dph, &ws->w_mat, &ws->w_inv,
                     &ws->dw_mat, &ws->scratch};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) {
        free(*bufs[i]);
        *bufs[i] = NULL;
    }
    free(ws->logdet);
    free(ws->logp);
    ws->logdet = ws->logp = NULL;
    workspace_release_store(m);
    workspace_release_inputs(m);
    ws->batch = 0;
}

/* Room for every step's input (c values per pixel per step, a small fraction of what its
 * activations take), for a pass that keeps them. */
static int workspace_reserve_inputs(glow_model *m, int batch) {
    if (batch <= m->ws.inputs_batch) return GLOW_OK;
    workspace_release_inputs(m);
    for (int i = 0; i < m->n_levels; i++) {
        level *lv = &m->levels[i];
        size_t n = (size_t)m->cfg.depth * batch * lv->h * lv->w * lv->c;
        if (!(lv->inputs = malloc(sizeof(real) * n))) {
            workspace_release_inputs(m);
            return glow_fail(GLOW_ENOMEM, "out of memory keeping the steps' inputs for a batch of %d", batch);
        }
    }
    m->ws.inputs_batch = batch;
    return GLOW_OK;
}

static nn_shape nn_shape_of(const glow_model *m, const level *lv, int batch) {
    return (nn_shape){batch, lv->h, lv->w, lv->c / 2, m->cfg.width,
                      coupling_nn_out(m->cfg.coupling, lv->c), m->ws.slots};
}

/* Allocate the buffers for `batch` examples (once; again only for a larger batch). */
static int workspace_reserve(glow_model *m, int batch) {
    workspace *ws = &m->ws;
    if (batch < 1) return glow_fail(GLOW_EINVAL, "batch size %d: must be >= 1", batch);
    if (batch > ws->batch || glow_get_threads() > ws->slots) {
        workspace_free(m);
        ws->slots = glow_get_threads();
        size_t bd = (size_t)batch * m->dim;
        const level *l0 = &m->levels[0];
        size_t rows0 = (size_t)batch * l0->h * l0->w;
        int cmax = m->levels[m->n_levels - 1].c, ok = 1;
        size_t scratch = 0;
        for (int i = 0; i < m->n_levels; i++) {
            const level *lv = &m->levels[i];
            size_t s = coupling_nn_scratch(nn_shape_of(m, lv, batch));  /* uses ws->slots */
            size_t p = conv3x3_scratch((size_t)batch * lv->h * lv->w, lv->c / 2, lv->c);
            if (s > scratch) scratch = s;
            if (p > scratch) scratch = p;
        }
        real **full[] = {&ws->cur, &ws->tmp, &ws->abuf, &ws->dcur, &ws->dtmp, &ws->z, &ws->h,
                         &ws->dh, &ws->mean, &ws->logs, &ws->dmean, &ws->dlogs, &ws->ph, &ws->dph};
        for (size_t i = 0; i < sizeof full / sizeof full[0]; i++) *full[i] = alloc_real(bd, &ok);
        ws->z1 = alloc_real(bd / 2 + 1, &ok);
        ws->dz1 = alloc_real(bd / 2 + 1, &ok);
        ws->r1 = alloc_real(rows0 * m->cfg.width, &ok);
        ws->r2 = alloc_real(rows0 * m->cfg.width, &ok);
        ws->w_mat = alloc_real((size_t)cmax * cmax, &ok);
        ws->w_inv = alloc_real((size_t)cmax * cmax, &ok);
        ws->dw_mat = alloc_real((size_t)cmax * cmax, &ok);
        ws->scratch = alloc_real(scratch, &ok);
        ws->scratch_size = scratch;
        ws->logdet = malloc(sizeof(double) * batch);
        ws->logp = malloc(sizeof(double) * batch);
        if (!ok || !ws->logdet || !ws->logp) {
            workspace_free(m);
            return glow_fail(GLOW_ENOMEM, "out of memory for a batch of %d", batch);
        }
        ws->batch = batch;
    }
    return GLOW_OK;
}

/* What keeping one step of level lv costs: its actnorm output and the network's three
 * activations. */
static size_t step_store_size(const glow_model *m, const level *lv, int batch) {
    size_t rows = (size_t)batch * lv->h * lv->w;
    return rows * (lv->c + 2 * (size_t)m->cfg.width + coupling_nn_out(m->cfg.coupling, lv->c));
}

/* Whether step k is one of the n of depth kept on its level: spread evenly from step 0, so
 * that the kept steps' exact inputs also cut the rebuilt stretches short. */
static int kept_here(int k, int n, int depth) { return (long long)k * n % depth < n; }

/* Lay out the stores of the steps kept within `memory` bytes for `batch` examples (SIZE_MAX:
 * every step). As many steps as fit are kept, level by level from the last (whose steps
 * are the smallest); a step keeps its activations when lv->store[k].a is set. */
static int workspace_reserve_store(glow_model *m, int batch, size_t memory) {
    workspace *ws = &m->ws;
    if (memory == 0 || (batch <= ws->store_batch && memory == ws->store_memory)) return GLOW_OK;
    workspace_release_store(m);
    int depth = m->cfg.depth, kept[m->n_levels];
    size_t total = 0, left = memory;
    for (int i = m->n_levels - 1; i >= 0; i--) {
        size_t one = step_store_size(m, &m->levels[i], batch) * sizeof(real);
        kept[i] = left / one < (size_t)depth ? (int)(left / one) : depth;
        left -= kept[i] * one;
        total += kept[i] * one / sizeof(real);
    }
    if (total == 0) return GLOW_OK; /* not one step fits: rebuild them all */
    ws->store_block = malloc(sizeof(real) * total);
    if (!ws->store_block)
        return glow_fail(GLOW_ENOMEM, "out of memory keeping activations for a batch of %d "
                         "(%.1f GiB): keep less, or none (the memory-saving mode)", batch,
                         total * sizeof(real) / 1073741824.0);
    real *p = ws->store_block;
    for (int i = 0; i < m->n_levels; i++) {
        level *lv = &m->levels[i];
        size_t rows = (size_t)batch * lv->h * lv->w;
        if (!(lv->store = calloc(depth, sizeof(step_store)))) {
            workspace_release_store(m);
            return glow_fail(GLOW_ENOMEM, "out of memory");
        }
        for (int k = 0; k < depth; k++) {
            if (!kept_here(k, kept[i], depth)) continue;
            step_store *st = &lv->store[k];
            st->a = p, p += rows * lv->c;
            st->acts.r1 = p, p += rows * m->cfg.width;
            st->acts.r2 = p, p += rows * m->cfg.width;
            st->acts.h = p, p += rows * coupling_nn_out(m->cfg.coupling, lv->c);
        }
    }
    ws->store_batch = batch;
    ws->store_memory = memory;
    return GLOW_OK;
}

/* What a training pass keeps from its forward pass for its backward pass. */
enum { KEEP_ACTS = 1 /* the kept steps' activations */, KEEP_INPUTS = 2 /* every step's input */ };

/* The store of step k of level li if the pass keeps activations and this step is kept. */
static step_store *kept_step(glow_model *m, int li, int k, int keep) {
    level *lv = &m->levels[li];
    return keep & KEEP_ACTS && lv->store && lv->store[k].a ? &lv->store[k] : NULL;
}

/* Where step k of level li keeps its input, if the pass keeps inputs. */
static real *kept_input(glow_model *m, int li, int k, int keep, int batch) {
    level *lv = &m->levels[li];
    size_t size = (size_t)batch * lv->h * lv->w * lv->c;
    return keep & KEEP_INPUTS && lv->inputs ? lv->inputs + k * size : NULL;
}

/* ---- pieces of a step ------------------------------------------------------------------- */

static coupling_nn nn_at(real *base, const step_offsets *s) {
    return (coupling_nn){base + s->w1, base + s->an1_b, base + s->an1_s, base + s->w2,
                         base + s->an2_b, base + s->an2_s, base + s->w3, base + s->b3,
                         base + s->logs3};
}

static void fixed_perm(const glow_model *m, const step_offsets *s, int *perm, int c) {
    for (int i = 0; i < c; i++)
        perm[i] = m->cfg.permutation == GLOW_REVERSE ? c - 1 - i : (int)lrint(m->params[s->perm + i]);
}

/* The 1x1 convolution's matrix W into ws->w_mat (LU form) or a pointer to it (free form). */
static const real *conv_matrix(glow_model *m, const step_offsets *s, int c) {
    if (m->cfg.permutation == GLOW_INVCONV) return m->params + s->w;
    int perm[c];
    fixed_perm(m, s, perm, c);
    const real *p = m->params;
    invconv_lu_weight(m->ws.w_mat, p + s->lu_l, p + s->lu_u, p + s->lu_logs, p + s->lu_sign,
                      perm, c);
    return m->ws.w_mat;
}

/* Per-example log-det of the 1x1 convolution: hw log|det W|, or hw sum(log_s). */
static int conv_logdet(glow_model *m, const step_offsets *s, const real *w, int c, double *ld) {
    if (m->cfg.permutation == GLOW_INVCONV) return matrix_logdet_inverse(ld, NULL, w, c);
    double t = 0;
    for (int j = 0; j < c; j++) t += m->params[s->lu_logs + j];
    *ld = t;
    return GLOW_OK;
}

static int perm_forward(glow_model *m, const step_offsets *s, real *y, const real *x,
                        double *logdet, int batch, size_t hw, int c) {
    size_t rows = (size_t)batch * hw;
    if (m->cfg.permutation <= GLOW_SHUFFLE) {
        int perm[c];
        fixed_perm(m, s, perm, c);
        permute_forward(y, x, perm, rows, c);
        return GLOW_OK;
    }
    const real *w = conv_matrix(m, s, c);
    if (logdet) {
        double ld;
        int rc = conv_logdet(m, s, w, c, &ld);
        if (rc != GLOW_OK) return rc;
        for (int b = 0; b < batch; b++) logdet[b] += hw * ld;
    }
    invconv_forward(y, x, w, rows, c);
    return GLOW_OK;
}

static int perm_inverse(glow_model *m, const step_offsets *s, real *x, const real *y,
                        double *logdet, int batch, size_t hw, int c) {
    size_t rows = (size_t)batch * hw;
    if (m->cfg.permutation <= GLOW_SHUFFLE) {
        int perm[c];
        fixed_perm(m, s, perm, c);
        permute_inverse(x, y, perm, rows, c);
        return GLOW_OK;
    }
    const real *w = conv_matrix(m, s, c);
    double ld;
    int rc = matrix_logdet_inverse(NULL, m->ws.w_inv, w, c);
    if (rc == GLOW_OK && logdet) rc = conv_logdet(m, s, w, c, &ld);
    if (rc != GLOW_OK) return rc;
    if (logdet)
        for (int b = 0; b < batch; b++) logdet[b] -= hw * ld;
    invconv_inverse(x, y, m->ws.w_inv, rows, c);
    return GLOW_OK;
}

/* da from dp, where p = perm(a); parameter gradients accumulate. */
static int perm_backward(glow_model *m, const step_offsets *s, real *da, const real *dp,
                         const real *a, double dlogdet, int batch, size_t hw, int c) {
    size_t rows = (size_t)batch * hw;
    if (m->cfg.permutation <= GLOW_SHUFFLE) {
        int perm[c];
        fixed_perm(m, s, perm, c);
        permute_inverse(da, dp, perm, rows, c);
        return GLOW_OK;
    }
    const real *w = conv_matrix(m, s, c);
    if (m->cfg.permutation == GLOW_INVCONV) {
        int rc = matrix_logdet_inverse(NULL, m->ws.w_inv, w, c);
        if (rc != GLOW_OK) return rc;
        invconv_backward(da, m->grads + s->w, dp, a, w, m->ws.w_inv, dlogdet, batch, hw, c);
        return GLOW_OK;
    }
    int perm[c];
    fixed_perm(m, s, perm, c);
    memset(m->ws.dw_mat, 0, sizeof(real) * c * c);
    invconv_backward(da, m->ws.dw_mat, dp, a, w, NULL, 0.0, batch, hw, c);
    const real *p = m->params;
    real *g = m->grads;
    invconv_lu_backward(g + s->lu_l, g + s->lu_u, g + s->lu_logs, m->ws.dw_mat, p + s->lu_l,
                        p + s->lu_u, p + s->lu_logs, p + s->lu_sign, perm, dlogdet, batch, hw, c);
    return GLOW_OK;
}

/* *v = min(*v, x), where a NaN, once in, stays. */
static void lower(double *v, double x) {
    if (!isnan(*v) && !(x >= *v)) *v = x;
}

/* The step's parameter extremes, and its coupling's smallest log-scale and largest shift
 * from h, into the level's stats. */
static void step_extremes(glow_model *m, int li, int k, const real *h, size_t rows) {
    const level *lv = &m->levels[li];
    const step_offsets *s = &lv->steps[k];
    glow_level_stats *st = &m->ws.stats[li];
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

/* One flow step forward on ws->cur in place. */
static int step_forward(glow_model *m, int li, int k, int batch, int init, int keep) {
    workspace *ws = &m->ws;
    level *lv = &m->levels[li];
    const step_offsets *s = &lv->steps[k];
    int c = lv->c, half = c / 2;
    size_t hw = (size_t)lv->h * lv->w, rows = batch * hw;
    real *p = m->params;
    step_store *kept = kept_step(m, li, k, keep);
    real *input = kept_input(m, li, k, keep, batch);
    if (input) memcpy(input, ws->cur, sizeof(real) * rows * c);
    if (init) actnorm_init(p + s->an_b, p + s->an_s, ws->cur, rows, c);
    actnorm_forward(ws->cur, ws->logdet, ws->cur, p + s->an_b, p + s->an_s, batch, hw, c);
    if (kept) memcpy(kept->a, ws->cur, sizeof(real) * rows * c);
    int rc = perm_forward(m, s, ws->tmp, ws->cur, ws->logdet, batch, hw, c);
    if (rc != GLOW_OK) return rc;
    copy_columns(ws->z1, half, ws->tmp, c, rows, half);
    coupling_acts acts = kept ? kept->acts : (coupling_acts){NULL, NULL, ws->h};
    if (init && !kept) acts = (coupling_acts){ws->r1, ws->r2, ws->h};
    coupling_nn nn = nn_at(p, s);
    if (init) coupling_nn_init(&acts, &nn, ws->z1, nn_shape_of(m, lv, batch), ws->scratch);
    else coupling_nn_forward(&acts, &nn, ws->z1, nn_shape_of(m, lv, batch), ws->scratch);
    coupling_forward(ws->cur, ws->logdet, ws->tmp, acts.h, m->cfg.coupling, m->cfg.affine_scale,
                     batch, hw, c);
    step_extremes(m, li, k, acts.h, rows);
    return GLOW_OK;
}

/* One flow step inverted on ws->cur in place; logdet (if not NULL) -= its log-det as the
 * inverse computes it (a check of numerical invertibility). */
static int step_inverse(glow_model *m, int li, int k, int batch, double *logdet) {
    workspace *ws = &m->ws;
    level *lv = &m->levels[li];
    const step_offsets *s = &lv->steps[k];
    int c = lv->c, half = c / 2;
    size_t hw = (size_t)lv->h * lv->w, rows = batch * hw;
    copy_columns(ws->z1, half, ws->cur, c, rows, half);
    coupling_acts acts = {NULL, NULL, ws->h};
    coupling_nn nn = nn_at(m->params, s);
    coupling_nn_forward(&acts, &nn, ws->z1, nn_shape_of(m, lv, batch), ws->scratch);
    coupling_inverse(ws->tmp, logdet, ws->cur, acts.h, m->cfg.coupling, m->cfg.affine_scale, batch,
                     hw, c);
    int rc = perm_inverse(m, s, ws->cur, ws->tmp, logdet, batch, hw, c);
    if (rc != GLOW_OK) return rc;
    actnorm_inverse(ws->cur, logdet, ws->cur, m->params + s->an_b, m->params + s->an_s, batch, hw, c);
    return GLOW_OK;
}

/* One flow step backward: from its output y = ws->cur and dy = ws->dcur, leaves its input
 * x in ws->cur and dx in ws->dcur. In the memory-saving mode, x is rebuilt: the coupling's
 * inverse evaluates the network on the unchanged half, which is exactly the forward
 * evaluation the network's backward needs. */
static int step_backward(glow_model *m, int li, int k, int batch, double g, int keep) {
    workspace *ws = &m->ws;
    level *lv = &m->levels[li];
    const step_offsets *s = &lv->steps[k];
    int c = lv->c, half = c / 2, rc;
    size_t hw = (size_t)lv->h * lv->w, rows = batch * hw;
    real *p = m->params, *gr = m->grads;
    coupling_nn nn = nn_at(p, s), dnn = nn_at(gr, s);
    nn_shape shape = nn_shape_of(m, lv, batch);
    coupling_acts acts;
    const real *a; /* the actnorm's output = the permutation's input */
    step_store *kept = kept_step(m, li, k, keep);
    const real *input = kept ? NULL : kept_input(m, li, k, keep, batch);
    if (kept) {
        acts = kept->acts;
        a = kept->a;
        if ((rc = perm_forward(m, s, ws->tmp, a, NULL, batch, hw, c)) != GLOW_OK) return rc;
        copy_columns(ws->z1, half, ws->tmp, c, rows, half);
    } else if (input) { /* the coupling's input again from the kept input: exact */
        actnorm_forward(ws->abuf, NULL, input, p + s->an_b, p + s->an_s, batch, hw, c);
        a = ws->abuf;
        if ((rc = perm_forward(m, s, ws->tmp, a, NULL, batch, hw, c)) != GLOW_OK) return rc;
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
        if (!input && (rc = perm_inverse(m, s, ws->abuf, ws->tmp, NULL, batch, hw, c)) != GLOW_OK)
            return rc;
        a = ws->abuf;
    }
    #pragma omp parallel for schedule(static)
    for (size_t r = 0; r < rows; r++)
        for (int j = 0; j < half; j++) ws->dtmp[r * c + j] += ws->dz1[r * half + j];
    if ((rc = perm_backward(m, s, ws->dcur, ws->dtmp, a, g, batch, hw, c)) != GLOW_OK) return rc;
    actnorm_backward(ws->dcur, gr + s->an_b, gr + s->an_s, ws->dcur, a, p + s->an_s, g, batch,
                     hw, c);
    if (input) memcpy(ws->cur, input, sizeof(real) * rows * c);
    else actnorm_inverse(ws->cur, NULL, a, p + s->an_b, p + s->an_s, batch, hw, c);
    return GLOW_OK;
}

/* ---- priors ----------------------------------------------------------------------------- */

/* Split prior of level li from z1 (rows, c/2): ws->ph = zeroconv(z1) (rows, c), then
 * mean = ph[:, 0::2] and logs = ph[:, 1::2] into ws->mean, ws->logs (rows, c/2). */
static void split_prior(glow_model *m, int li, const real *z1, int batch) {
    workspace *ws = &m->ws;
    const level *lv = &m->levels[li];
    int c = lv->c, half = c / 2;
    size_t rows = (size_t)batch * lv->h * lv->w;
    const real *p = m->params;
    zeroconv_forward(ws->ph, z1, p + lv->prior_w, p + lv->prior_b, p + lv->prior_logs, batch,
                     lv->h, lv->w, half, c, ws->scratch);
    #pragma omp parallel for schedule(static)
    for (size_t r = 0; r < rows; r++)
        for (int j = 0; j < half; j++) {
            ws->mean[r * half + j] = ws->ph[r * c + 2 * j];
            ws->logs[r * half + j] = ws->ph[r * c + 2 * j + 1];
        }
    if (m->cfg.prior_logs == GLOW_PRIOR_TANH) prior_logs_bound(ws->logs, rows * half);
}

/* Top prior into ws->mean, ws->logs (B*hw, c): the learned bias (mean = first c channels,
 * logs = last c) plus, if class-conditional, the label's row of the ycond weight. */
static void top_prior(glow_model *m, const int *y, int batch) {
    workspace *ws = &m->ws;
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

static void latent_put(real *z, const real *src, const level *lv, int batch, size_t dim) {
    for (int b = 0; b < batch; b++)
        memcpy(z + b * dim + lv->z_offset, src + b * lv->z_size, sizeof(real) * lv->z_size);
}

static void latent_get(real *dst, const real *z, const level *lv, int batch, size_t dim) {
    for (int b = 0; b < batch; b++)
        memcpy(dst + b * lv->z_size, z + b * dim + lv->z_offset, sizeof(real) * lv->z_size);
}

/* ---- the passes ------------------------------------------------------------------------- */

static int check_labels(const glow_model *m, const int *y, int batch, int required) {
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

/* The batch's sum of v (B). */
static double batch_sum(const double *v, int batch) {
    double t = 0;
    for (int b = 0; b < batch; b++) t += v[b];
    return t;
}

/* x (B,H,W,C) -> ws->z (B,D), ws->logdet and ws->logp (the prior terms) per example, and
 * each level's extremes and terms in ws->stats. */
static int flow_forward(glow_model *m, const real *x, const int *y, int batch, int init, int keep) {
    workspace *ws = &m->ws;
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
            int rc = step_forward(m, i, k, batch, init, keep);
            if (rc != GLOW_OK) return rc;
        }
        const real *z = ws->cur;
        if (i < m->n_levels - 1) {
            copy_columns(ws->z1, half, ws->cur, c, rows, half);
            copy_columns(ws->tmp, half, ws->cur + half, c, rows, half);
            split_prior(m, i, ws->z1, batch);
            z = ws->tmp;
        } else {
            top_prior(m, y, batch);
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
static int flow_reverse(glow_model *m, const real *z, const int *y, int batch,
                        double temperature, uint64_t seed, real *x, double *logdet) {
    workspace *ws = &m->ws;
    const glow_config *cfg = &m->cfg;
    int top = m->n_levels - 1;
    if (logdet)
        for (int b = 0; b < batch; b++) logdet[b] = 0;
    if (z) {
        latent_get(ws->cur, z, &m->levels[top], batch, m->dim);
    } else {
        top_prior(m, y, batch);
        gaussian_sample(ws->cur, ws->mean, ws->logs, temperature,
                        glow_rng_key(seed, 0x73616d70 /* "samp" */, top, 0), batch,
                        m->levels[top].z_size);
    }
    for (int i = top; i >= 0; i--) {
        for (int k = cfg->depth - 1; k >= 0; k--) {
            int rc = step_inverse(m, i, k, batch, logdet);
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
            split_prior(m, i - 1, ws->z1, batch);
            gaussian_sample(ws->tmp, ws->mean, ws->logs, temperature,
                            glow_rng_key(seed, 0x73616d70, i - 1, 0), batch, lv->z_size);
        }
        copy_columns(ws->cur, c, ws->z1, half, rows, half);
        copy_columns(ws->cur + half, c, ws->tmp, half, rows, half);
    }
    return GLOW_OK;
}

static double log_bins(const glow_model *m) { return m->dim * m->cfg.n_bits * LN2; }

int glow_model_init(glow_model *m, const glow_real *x, const int *y, int batch) {
    int rc = workspace_reserve(m, batch);
    if (rc == GLOW_OK) rc = check_labels(m, y, batch, 1);
    if (rc == GLOW_OK) rc = flow_forward(m, x, y, batch, 1, 0);
    return rc;
}

int glow_model_log_prob(glow_model *m, const glow_real *x, const int *y, int batch,
                        double *logp, double *bpd) {
    int rc = workspace_reserve(m, batch);
    if (rc == GLOW_OK) rc = check_labels(m, y, batch, 1);
    if (rc == GLOW_OK) rc = flow_forward(m, x, y, batch, 0, 0);
    if (rc != GLOW_OK) return rc;
    for (int b = 0; b < batch; b++) {
        double lp = m->ws.logdet[b] + m->ws.logp[b] - log_bins(m);
        if (logp) logp[b] = lp;
        if (bpd) bpd[b] = -lp / (m->dim * LN2);
    }
    return GLOW_OK;
}

int glow_model_encode(glow_model *m, const glow_real *x, const int *y, int batch, glow_real *z,
                      double *logdet) {
    int rc = workspace_reserve(m, batch);
    if (rc == GLOW_OK) rc = check_labels(m, y, batch, 1);
    if (rc == GLOW_OK) rc = flow_forward(m, x, y, batch, 0, 0);
    if (rc != GLOW_OK) return rc;
    memcpy(z, m->ws.z, sizeof(real) * batch * m->dim);
    if (logdet) memcpy(logdet, m->ws.logdet, sizeof(double) * batch);
    return GLOW_OK;
}

int glow_model_decode(glow_model *m, const glow_real *z, const int *y, int batch, glow_real *x,
                      double *logdet) {
    int rc = workspace_reserve(m, batch);
    if (rc == GLOW_OK) rc = check_labels(m, y, batch, 0);
    if (rc == GLOW_OK) rc = flow_reverse(m, z, y, batch, 0, 0, x, logdet);
    if (rc == GLOW_OK && logdet)
        for (int b = 0; b < batch; b++) logdet[b] = -logdet[b]; /* as the forward's */
    return rc;
}

int glow_model_sample(glow_model *m, const int *y, int batch, double temperature, uint64_t seed,
                      glow_real *x) {
    int rc = workspace_reserve(m, batch);
    if (rc == GLOW_OK) rc = check_labels(m, y, batch, 0);
    if (rc == GLOW_OK && !(temperature >= 0))
        rc = glow_fail(GLOW_EINVAL, "temperature %g: must be >= 0", temperature);
    if (rc == GLOW_OK) rc = flow_reverse(m, NULL, y, batch, temperature, seed, x, NULL);
    return rc;
}

/* The class loss on the top latent: logits = mean over positions of z_top @ W + b, mean
 * cross-entropy in bits. Adds weight_y * d(class bits)/dz_top to dz (B*hw, c) and the
 * classifier's gradients; returns the mean class bits. */
static double class_loss(glow_model *m, const real *z_top, real *dz, const int *y, int batch) {
    const level *lv = &m->levels[m->n_levels - 1];
    int c = lv->c, n = m->cfg.n_classes;
    size_t hw = (size_t)lv->h * lv->w;
    const real *w = m->params + m->cls_w, *bias = m->params + m->cls_b;
    real *dw = m->grads + m->cls_w, *dbias = m->grads + m->cls_b;
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
static void top_prior_backward(glow_model *m, const int *y, int batch) {
    workspace *ws = &m->ws;
    const level *lv = &m->levels[m->n_levels - 1];
    int c = lv->c;
    size_t hw = (size_t)lv->h * lv->w;
    for (int b = 0; b < batch; b++)
        for (size_t q = 0; q < hw; q++)
            for (int j = 0; j < c; j++) {
                size_t i = (b * hw + q) * c + j;
                if (m->top_bias != SIZE_MAX) {
                    m->grads[m->top_bias + q * 2 * c + j] += ws->dmean[i];
                    m->grads[m->top_bias + q * 2 * c + c + j] += ws->dlogs[i];
                }
                if (m->top_ycond != SIZE_MAX) {
                    m->grads[m->top_ycond + (size_t)y[b] * 2 * c + j] += ws->dmean[i];
                    m->grads[m->top_ycond + (size_t)y[b] * 2 * c + c + j] += ws->dlogs[i];
                }
            }
}

/* memory: bytes for kept activations (SIZE_MAX: keep every step's); inputs: keep every
 * step's input too, so that no step is rebuilt by the inverse. */
static int train_pass(glow_model *m, const glow_real *x, const int *y, int batch, size_t memory,
                      int inputs, glow_step_stats *stats, glow_real *dx) {
    workspace *ws = &m->ws;
    const glow_config *cfg = &m->cfg;
    int rc, keep = (memory > 0 ? KEEP_ACTS : 0) | (inputs ? KEEP_INPUTS : 0);
    if ((rc = workspace_reserve(m, batch)) != GLOW_OK) return rc;
    if ((rc = workspace_reserve_store(m, batch, memory)) != GLOW_OK) return rc;
    if (inputs && (rc = workspace_reserve_inputs(m, batch)) != GLOW_OK) return rc;
    if ((rc = flow_forward(m, x, y, batch, 0, keep)) != GLOW_OK) return rc;
    glow_step_stats st = {0};
    memcpy(st.level, ws->stats, sizeof(glow_level_stats) * m->n_levels);
    for (int i = 0; i < m->n_levels; i++)
        for (int k = 0; k < cfg->depth; k++) st.kept_steps += kept_step(m, i, k, keep) != NULL;
    for (int b = 0; b < batch; b++)
        st.bpd += -(ws->logdet[b] + ws->logp[b] - log_bins(m)) / (m->dim * LN2);
    st.bpd /= batch;

    /* Backward from the top latent down. */
    double g = -1.0 / (batch * m->dim * LN2);
    memset(m->grads, 0, sizeof(real) * m->n_params);
    int top = m->n_levels - 1;
    const level *tl = &m->levels[top];
    latent_get(ws->cur, ws->z, tl, batch, m->dim);
    memset(ws->dcur, 0, sizeof(real) * batch * tl->z_size);
    top_prior(m, y, batch);
    gaussian_backward(ws->dcur, ws->dmean, ws->dlogs, ws->cur, ws->mean, ws->logs, g, batch,
                      tl->z_size);
    if (cfg->prior_logs == GLOW_PRIOR_TANH)
        prior_logs_bound_backward(ws->dlogs, ws->logs, (size_t)batch * tl->z_size);
    top_prior_backward(m, y, batch);
    if (m->cls_w != SIZE_MAX) st.class_bits = class_loss(m, ws->cur, ws->dcur, y, batch);
    st.loss = st.bpd + cfg->weight_y * st.class_bits;

    for (int i = top; i >= 0; i--) {
        for (int k = cfg->depth - 1; k >= 0; k--)
            if ((rc = step_backward(m, i, k, batch, g, keep)) != GLOW_OK) return rc;
        if (i == 0) break;
        /* Undo the squeeze, then join the factored-out half and its prior's gradient. */
        const level *lv = &m->levels[i - 1];
        int c = lv->c, half = c / 2;
        size_t rows = (size_t)batch * lv->h * lv->w;
        squeeze_inverse(ws->z1, ws->cur, batch, lv->h, lv->w, half);
        squeeze_inverse(ws->dz1, ws->dcur, batch, lv->h, lv->w, half);
        latent_get(ws->tmp, ws->z, lv, batch, m->dim);
        split_prior(m, i - 1, ws->z1, batch);
        memset(ws->dtmp, 0, sizeof(real) * rows * half);
        gaussian_backward(ws->dtmp, ws->dmean, ws->dlogs, ws->tmp, ws->mean, ws->logs, g, batch,
                          lv->z_size);
        if (cfg->prior_logs == GLOW_PRIOR_TANH)
            prior_logs_bound_backward(ws->dlogs, ws->logs, rows * half);
        #pragma omp parallel for schedule(static)
        for (size_t r = 0; r < rows; r++)
            for (int j = 0; j < half; j++) {
                ws->dph[r * c + 2 * j] = ws->dmean[r * half + j];
                ws->dph[r * c + 2 * j + 1] = ws->dlogs[r * half + j];
            }
        zeroconv_backward(ws->dz1, m->grads + lv->prior_w, m->grads + lv->prior_b,
                          m->grads + lv->prior_logs, ws->dph, ws->ph, ws->z1,
                          m->params + lv->prior_w, m->params + lv->prior_logs, batch, lv->h,
                          lv->w, half, c, ws->scratch);
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

int glow_model_train_step(glow_model *m, const glow_real *x, const int *y, int batch,
                          glow_step_stats *stats, glow_real *dx) {
    glow_step_stats st;
    int rc = check_labels(m, y, batch, 1);
    if (rc != GLOW_OK) return rc;
    int rebuilds = m->activation_memory != SIZE_MAX;
    rc = train_pass(m, x, y, batch, m->activation_memory, 0, &st, dx);
    /* The safety net: a badly conditioned layer can make the rebuilt inputs drift (the
     * paper's sigmoid scale near 0 did, often; the bounded tanh scale rarely does). Then
     * the step is done again keeping every step's input from the forward pass, which is
     * exact and costs c values per pixel per step (not the activations' 2 width more),
     * given back at once. */
    if (rc == GLOW_OK && rebuilds && isfinite(st.loss) &&
        !(st.max_rebuild_error <= REBUILD_TOLERANCE)) {
        double drift = st.max_rebuild_error;
        rc = train_pass(m, x, y, batch, m->activation_memory, 1, &st, dx);
        st.recomputed = 1;
        st.max_rebuild_error = drift;
        workspace_release_inputs(m);
    }
    if (rc != GLOW_OK) {
        workspace_release_inputs(m);
        return rc;
    }
    if (stats) *stats = st;
    return GLOW_OK;
}
