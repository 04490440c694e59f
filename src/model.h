/* model.h: the model's private layout, shared by model.c (structure and parameters) and
 * flow.c (the passes). Offsets are element offsets into the flat parameter buffer. */
#ifndef GLOW_MODEL_H
#define GLOW_MODEL_H

#include "layers.h"

typedef struct step_offsets {
    size_t an_b, an_s;                          /* actnorm */
    size_t perm;                                /* shuffle / LU: fixed permutation */
    size_t w;                                   /* invconv */
    size_t lu_l, lu_u, lu_logs, lu_sign;        /* invconv-lu */
    size_t w1, an1_b, an1_s, w2, an2_b, an2_s, w3, b3, logs3; /* coupling network */
} step_offsets;

/* One step's activations kept from the forward pass (within the activation memory): a is
 * the actnorm output (rows, c), acts the coupling network's; a is NULL for a step that the
 * backward pass rebuilds. */
typedef struct step_store {
    real *a;
    coupling_acts acts;
} step_store;

typedef struct level {
    int h, w, c;             /* after the squeeze */
    size_t z_offset, z_size; /* this level's part of an example's latent vector */
    step_offsets *steps;     /* depth of them */
    size_t prior_w, prior_b, prior_logs; /* split prior (every level but the last) */
    step_store *store;       /* depth of them, when any step's activations are kept */
    real *inputs;            /* every step's input, (depth, rows, c), for the drift fallback */
} level;

/* Buffers for a batch of up to `batch` examples, allocated once and reused. */
typedef struct workspace {
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
    real *store_block;                /* all kept steps' buffers */
    int store_batch;                  /* the batch and memory the stores were laid out for */
    size_t store_memory;
    int inputs_batch;                 /* the batch the levels' inputs have room for */
    glow_level_stats stats[GLOW_MAX_LEVELS]; /* of the last forward pass */
} workspace;

struct glow_model {
    glow_config cfg;
    int n_levels;
    level *levels;
    size_t dim;
    size_t top_bias, top_ycond, cls_w, cls_b; /* SIZE_MAX when absent */
    glow_tensor_info *tensors;
    int n_tensors, cap_tensors;
    real *params, *grads;
    size_t n_params;
    size_t activation_memory; /* bytes for kept activations; SIZE_MAX: every step's */
    workspace ws;
};


void workspace_free(glow_model *m);
/* GLOW_OK if every fixed permutation tensor holds a permutation (checked on load). */
int glow_model_check_fixed(const glow_model *m);

#endif
