/* flow.h: the compute context (glow_ctx) and the internals of the passes over a model,
 * shared by the files that make them up:
 *   context.c     the context's public functions (settings, error, gradients);
 *   workspace.c   the buffers of a pass, laid out for one model shape and batch;
 *   flow_step.c   one flow step (actnorm -> permutation -> coupling): forward, inverse
 *                 and backward, with the permutation's three kinds;
 *   flow_prior.c  the split and top priors, the class loss, the latent layout;
 *   flow.c        the passes (forward, reverse, training) and the public model functions.
 * A pass reads the model and writes only its context, so any number of contexts can run on
 * one model at once. */
#ifndef GLOW_FLOW_H
#define GLOW_FLOW_H

#include "model.h"

#define LN2 0.69314718055994531

/* One step's activations kept from the forward pass (within the activation memory): a is
 * the actnorm output (rows, c), acts the coupling network's; a is NULL for a step that the
 * backward pass rebuilds. */
typedef struct step_store {
    real *a;
    coupling_acts acts;
} step_store;

/* Buffers for a batch of up to `batch` examples of one model shape, allocated once and
 * reused. */
typedef struct workspace {
    glow_config shape;                /* the model shape they are laid out for */
    int batch;
    int slots;                        /* threads the scratch has room for */
    real *cur, *tmp, *abuf, *dcur, *dtmp; /* (B, D) each: activations and their gradients */
    real *z;                          /* (B, D): the latents of the last forward pass */
    real *z1, *dz1;                   /* (B, D/2): contiguous first halves */
    real *r1, *r2, *h, *dh;           /* coupling network activations (shared) */
    real *mean, *logs, *dmean, *dlogs; /* (B, D/2) or top (B, D): prior parameters */
    real *ph, *dph;                   /* (B, D): split prior conv output and its gradient */
    real *w_mat, *w_inv, *dw_mat;     /* (c, c) for the 1x1 convolutions */
    real *scratch;
    size_t scratch_size;
    double *logdet, *logp;            /* (B) */
    step_store *store[GLOW_MAX_LEVELS]; /* per level, depth of them, when any step is kept */
    real *store_block;                /* all kept steps' buffers */
    int store_batch;                  /* the batch and memory the stores were laid out for */
    size_t store_memory;
    real *inputs[GLOW_MAX_LEVELS];    /* per level every step's input (depth, rows, c), for
                                         the drift fallback */
    int inputs_batch;                 /* the batch the levels' inputs have room for */
    glow_level_stats stats[GLOW_MAX_LEVELS]; /* of the last forward pass */
} workspace;

struct glow_ctx {
    backend be;
    workspace ws;
    real *grads;              /* d loss / d params of the last training step */
    size_t n_grads;
    size_t activation_memory; /* bytes for kept activations; SIZE_MAX: every step's */
    char error[512];          /* the last failure's message */
};

/* ---- workspace.c ---- */
void workspace_free(workspace *ws);
/* Buffers for `batch` examples of m (again only for a larger batch, another model shape or
 * more threads). */
int workspace_reserve(glow_ctx *ctx, const glow_model *m, int batch);
/* The stores of the steps kept within `memory` bytes (SIZE_MAX: every step). */
int workspace_reserve_store(glow_ctx *ctx, const glow_model *m, int batch, size_t memory);
/* Room for every step's input, for a pass that keeps them; and giving it back. */
int workspace_reserve_inputs(glow_ctx *ctx, const glow_model *m, int batch);
void workspace_release_inputs(workspace *ws);
nn_shape nn_shape_of(const glow_ctx *ctx, const glow_model *m, const level *lv, int batch);

/* What a training pass keeps from its forward pass for its backward pass. */
enum { KEEP_ACTS = 1 /* the kept steps' activations */, KEEP_INPUTS = 2 /* every step's input */ };
/* The store of step k of level li if the pass keeps activations and this step is kept. */
step_store *kept_step(glow_ctx *ctx, int li, int k, int keep);
/* Where step k of level li keeps its input, if the pass keeps inputs. */
real *kept_input(glow_ctx *ctx, const glow_model *m, int li, int k, int keep, int batch);

/* ---- flow_step.c: one flow step on ws->cur in place ---- */
/* init: initialise the step's actnorms from this batch (writes the model's parameters:
 * reached only from glow_model_init, whose model is not const). */
int step_forward(glow_ctx *ctx, const glow_model *m, int li, int k, int batch, int init, int keep);
/* logdet (if not NULL) -= the step's log-det as the inverse computes it. */
int step_inverse(glow_ctx *ctx, const glow_model *m, int li, int k, int batch, double *logdet);
/* From the output y = ws->cur and dy = ws->dcur: the input x in ws->cur, dx in ws->dcur,
 * parameter gradients into ctx->grads (+=). */
int step_backward(glow_ctx *ctx, const glow_model *m, int li, int k, int batch, double g, int keep);

/* ---- flow_prior.c ---- */
/* Split prior of level li from z1 (rows, c/2) into ws->mean, ws->logs (ws->ph: the conv). */
void split_prior(glow_ctx *ctx, const glow_model *m, int li, const real *z1, int batch);
/* Top prior into ws->mean, ws->logs (B*hw, c). */
void top_prior(glow_ctx *ctx, const glow_model *m, const int *y, int batch);
/* Gradients of the top prior's parameters from ws->dmean, ws->dlogs. */
void top_prior_backward(glow_ctx *ctx, const glow_model *m, const int *y, int batch);
/* The split prior of level li in the backward pass, with g = d loss / d log p: the prior
 * again from z1 (rows, c/2), then dz2 = d loss / d z2 (overwrites), dz1 += the path through
 * the prior, and the prior's parameter gradients. */
void split_prior_backward(glow_ctx *ctx, const glow_model *m, int li, const real *z1,
                          const real *z2, real *dz1, real *dz2, double g, int batch);
/* The class loss on the top latent (its mean class bits); adds weight_y * its gradient to
 * dz and the classifier's parameter gradients. */
double class_loss(glow_ctx *ctx, const glow_model *m, const real *z_top, real *dz, const int *y,
                  int batch);
/* Level lv's part of the latents z (B, D) from or into src/dst (B, z_size). */
void latent_put(real *z, const real *src, const level *lv, int batch, size_t dim);
void latent_get(real *dst, const real *z, const level *lv, int batch, size_t dim);
/* GLOW_OK, or GLOW_EINVAL if the model needs labels and y is missing or out of range. */
int check_labels(const glow_model *m, const int *y, int batch, int required);

#endif
