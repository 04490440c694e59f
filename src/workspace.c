/* workspace.c: the buffers of a pass (see flow.h), laid out for one model shape and batch
 * and reused until a pass needs more. */
#include <stdlib.h>
#include <string.h>
#include "flow.h"

static real *alloc_real(size_t n, int *ok) {
    real *p = malloc(sizeof(real) * (n ? n : 1));
    if (!p) *ok = 0;
    return p;
}

static void workspace_release_store(workspace *ws) {
    free(ws->store_block);
    ws->store_block = NULL;
    ws->store_batch = 0;
    ws->store_memory = 0;
    for (int i = 0; i < GLOW_MAX_LEVELS; i++) {
        free(ws->store[i]);
        ws->store[i] = NULL;
    }
}

void workspace_release_inputs(workspace *ws) {
    for (int i = 0; i < GLOW_MAX_LEVELS; i++) {
        free(ws->inputs[i]);
        ws->inputs[i] = NULL;
    }
    ws->inputs_batch = 0;
}

void workspace_free(workspace *ws) {
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
    workspace_release_store(ws);
    workspace_release_inputs(ws);
    ws->batch = 0;
}

/* Whether buffers laid out for shape a fit a model of shape b. */
static int same_shape(const glow_config *a, const glow_config *b) {
    return a->image_h == b->image_h && a->image_w == b->image_w && a->image_c == b->image_c &&
           a->levels == b->levels && a->depth == b->depth && a->width == b->width &&
           a->coupling == b->coupling;
}

int workspace_reserve_inputs(glow_ctx *ctx, const glow_model *m, int batch) {
    workspace *ws = &ctx->ws;
    if (batch <= ws->inputs_batch) return GLOW_OK;
    workspace_release_inputs(ws);
    for (int i = 0; i < m->n_levels; i++) {
        const level *lv = &m->levels[i];
        size_t n = (size_t)m->cfg.depth * batch * lv->h * lv->w * lv->c;
        if (!(ws->inputs[i] = malloc(sizeof(real) * n))) {
            workspace_release_inputs(ws);
            return glow_fail(GLOW_ENOMEM, "out of memory keeping the steps' inputs for a batch of %d", batch);
        }
    }
    ws->inputs_batch = batch;
    return GLOW_OK;
}

nn_shape nn_shape_of(const glow_ctx *ctx, const glow_model *m, const level *lv, int batch) {
    return (nn_shape){batch, lv->h, lv->w, lv->c / 2, m->cfg.width,
                      coupling_nn_out(m->cfg.coupling, lv->c), &ctx->be};
}

int workspace_reserve(glow_ctx *ctx, const glow_model *m, int batch) {
    workspace *ws = &ctx->ws;
    if (batch < 1) return glow_fail(GLOW_EINVAL, "batch size %d: must be >= 1", batch);
    if (ws->batch && (!same_shape(&ws->shape, &m->cfg) || ctx->be.threads > ws->slots))
        workspace_free(ws);
    if (batch <= ws->batch) return GLOW_OK;
    workspace_free(ws);
    ws->slots = ctx->be.threads;
    size_t bd = (size_t)batch * m->dim;
    const level *l0 = &m->levels[0];
    size_t rows0 = (size_t)batch * l0->h * l0->w;
    int cmax = m->levels[m->n_levels - 1].c, ok = 1;
    size_t scratch = 0;
    for (int i = 0; i < m->n_levels; i++) {
        const level *lv = &m->levels[i];
        size_t s = coupling_nn_scratch(nn_shape_of(ctx, m, lv, batch)); /* for be.threads */
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
        workspace_free(ws);
        return glow_fail(GLOW_ENOMEM, "out of memory for a batch of %d", batch);
    }
    ws->batch = batch;
    ws->shape = m->cfg;
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

/* As many steps as fit are kept, level by level from the last (whose steps are the
 * smallest); a step keeps its activations when ws->store[level][k].a is set. Called after
 * workspace_reserve, which frees the stores of another model shape. */
int workspace_reserve_store(glow_ctx *ctx, const glow_model *m, int batch, size_t memory) {
    workspace *ws = &ctx->ws;
    if (memory == 0 || (batch <= ws->store_batch && memory == ws->store_memory)) return GLOW_OK;
    workspace_release_store(ws);
    int depth = m->cfg.depth, kept[GLOW_MAX_LEVELS];
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
        const level *lv = &m->levels[i];
        size_t rows = (size_t)batch * lv->h * lv->w;
        if (!(ws->store[i] = calloc(depth, sizeof(step_store)))) {
            workspace_release_store(ws);
            return glow_fail(GLOW_ENOMEM, "out of memory");
        }
        for (int k = 0; k < depth; k++) {
            if (!kept_here(k, kept[i], depth)) continue;
            step_store *st = &ws->store[i][k];
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

step_store *kept_step(glow_ctx *ctx, int li, int k, int keep) {
    step_store *s = ctx->ws.store[li];
    return keep & KEEP_ACTS && s && s[k].a ? &s[k] : NULL;
}

real *kept_input(glow_ctx *ctx, const glow_model *m, int li, int k, int keep, int batch) {
    const level *lv = &m->levels[li];
    size_t size = (size_t)batch * lv->h * lv->w * lv->c;
    return keep & KEEP_INPUTS && ctx->ws.inputs[li] ? ctx->ws.inputs[li] + k * size : NULL;
}
