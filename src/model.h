/* model.h: the model's private layout, shared by model.c (structure and parameters) and
 * the passes (flow.h). Offsets are element offsets into the flat parameter buffer. A model
 * holds only what it is: hyperparameters, structure and weights; what a pass changes lives
 * in a compute context (flow.h). */
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

typedef struct level {
    int h, w, c;             /* after the squeeze */
    size_t z_offset, z_size; /* this level's part of an example's latent vector */
    step_offsets *steps;     /* depth of them */
    size_t prior_w, prior_b, prior_logs; /* split prior (every level but the last) */
} level;

struct glow_model {
    glow_config cfg;
    int n_levels;
    level *levels;
    size_t dim;
    size_t top_bias, top_ycond, cls_w, cls_b; /* SIZE_MAX when absent */
    glow_tensor_info *tensors;
    int n_tensors, cap_tensors;
    int counting;     /* laying out the table only to count it (model_count_params) */
    int table_failed; /* an allocation of the table failed */
    real *params;
    size_t n_params;
};

/* The parameter and tensor counts of the model cfg describes, worked out without building
 * it (a few hundred bytes whatever cfg says): a checkpoint's claims are checked against them
 * before anything is allocated. GLOW_EINVAL if cfg is out of range. */
int model_count_params(const glow_config *cfg, size_t *n_params, int *n_tensors);
/* glow_model_create, with the initial values (init) or with none (a checkpoint's follow). */
glow_model *model_create(const glow_config *cfg, int init);

/* GLOW_OK if every fixed permutation tensor holds a permutation (checked on load). */
int glow_model_check_fixed(const glow_model *m);

#endif
