/* glow.h: the public API of libglow, a C implementation of Glow (Kingma & Dhariwal, 2018),
 * the flow-based generative model with invertible 1x1 convolutions.
 *
 * Overview. A model maps an image x (uint8, H x W x C, NHWC) to latents z of the same
 * dimension D = H*W*C, exactly and invertibly, and gives the exact log-likelihood
 * log p(x). Training maximises it; the backward pass rebuilds every layer's input from its
 * output, so training memory does not grow with depth. docs/MODEL.md states every
 * convention exactly.
 *
 * Worked example (error handling shortened):
 *
 *     glow_config cfg;
 *     glow_config_default(&cfg);                  // 28x28x1, L=2, K=8, width 128, affine
 *     glow_model *m = glow_model_create(&cfg);    // NULL: see glow_last_error()
 *     float *x = malloc(sizeof(float) * B * glow_model_dim(m));
 *     glow_preprocess(x, pixels, B, glow_model_dim(m), cfg.n_bits, seed, step);
 *     glow_model_init(m, x, labels, B);           // data-dependent init, once
 *     glow_step_stats st;
 *     glow_model_train_step(m, x, labels, B, &st); // loss and every gradient
 *     // ... an optimizer step on glow_model_params(m) with glow_model_grads(m)
 *
 * Conventions. Functions that can fail return GLOW_OK (0) or a negative status and record a
 * one-line message for glow_last_error(); nothing in the library exits or aborts on bad
 * input. Buffers are caller-owned unless a function says otherwise. Floats are
 * `glow_real`, which is float unless the library is built with -DGLOW_REAL=double (the
 * tests use a double build to check gradients tightly).
 */
#ifndef GLOW_H
#define GLOW_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#ifndef GLOW_REAL
#define GLOW_REAL float
#endif
typedef GLOW_REAL glow_real;

/* ---------------------------------------------------------------- errors ---------- */

enum {
    GLOW_OK = 0,
    GLOW_EINVAL = -1, /* bad argument or hyperparameter */
    GLOW_ENOMEM = -2, /* allocation failed */
    GLOW_EIO = -3,    /* a file could not be read or written */
    GLOW_EFORMAT = -4 /* a file is not in the expected format, or is corrupt */
};

/* The message of the last failure in this thread ("" if none). */
const char *glow_last_error(void);
/* Record a failure message (printf-style) and return `status`; used across the library. */
int glow_fail(int status, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* ---------------------------------------------------------------- hyperparameters -- */

typedef enum { GLOW_ADDITIVE = 0, GLOW_AFFINE = 1 } glow_coupling;
typedef enum {
    GLOW_REVERSE = 0,
    GLOW_SHUFFLE = 1,
    GLOW_INVCONV = 2,
    GLOW_INVCONV_LU = 3
} glow_permutation;

typedef struct glow_config {
    int image_h, image_w, image_c; /* input image, NHWC; H and W divisible by 2^levels */
    int levels;                    /* L: number of scales */
    int depth;                     /* K: flow steps per level */
    int width;                     /* hidden channels of the coupling network */
    glow_coupling coupling;
    glow_permutation permutation;
    int learntop;      /* 1: learned top prior (a bias per position and channel) */
    int n_classes;     /* 0: unconditional; > 0: labels in [0, n_classes) */
    int ycond;         /* 1: top prior conditioned on the label (needs n_classes) */
    double weight_y;   /* weight of the class loss (0: none; needs n_classes) */
    int n_bits;        /* 1..8 */
    uint64_t seed;     /* initial weights and fixed permutations */
} glow_config;

/* Defaults: 28x28x1 (Fashion-MNIST), L=2, K=8, width 128, affine, invconv-lu, learntop,
 * unconditional, n_bits 8, seed 1. */
void glow_config_default(glow_config *cfg);
/* GLOW_OK or GLOW_EINVAL with a message naming the offending value. */
int glow_config_check(const glow_config *cfg);
/* Names used by the CLI and the checkpoint ("additive", "invconv-lu", ...); -1 if unknown. */
const char *glow_coupling_name(glow_coupling c);
const char *glow_permutation_name(glow_permutation p);
int glow_coupling_parse(const char *name);
int glow_permutation_parse(const char *name);

/* ---------------------------------------------------------------- the model -------- */

typedef struct glow_model glow_model;

/* One named tensor of the flat parameter buffer. Fixed tensors (permutations, signs) are
 * stored in the buffer for the checkpoint but never trained; their gradient stays zero. */
typedef struct glow_tensor_info {
    char name[64];     /* e.g. "level0.step3.coupling.conv1.weight" */
    int ndim;
    int shape[4];
    size_t offset;     /* in elements, into glow_model_params() */
    size_t size;       /* elements */
    int trainable;
} glow_tensor_info;

/* Build a model with freshly initialised weights (random rotations, N(0, 0.05) hidden
 * convolutions, zero-initialised output convolutions and priors). NULL on failure. */
glow_model *glow_model_create(const glow_config *cfg);
void glow_model_free(glow_model *m);
const glow_config *glow_model_config(const glow_model *m);

size_t glow_model_dim(const glow_model *m);       /* D = H*W*C, also the latent size */
size_t glow_model_n_params(const glow_model *m);  /* elements of the flat buffer */
glow_real *glow_model_params(glow_model *m);      /* the flat parameter buffer */
glow_real *glow_model_grads(glow_model *m);       /* same layout: d loss / d params */
int glow_model_n_tensors(const glow_model *m);
const glow_tensor_info *glow_model_tensor(const glow_model *m, int i);
/* Index of the tensor with this name, or -1. */
int glow_model_find_tensor(const glow_model *m, const char *name);
/* Number of trainable scalars. */
size_t glow_model_n_trainable(const glow_model *m);

/* Training memory. 0 (default): the backward pass rebuilds each step's input from its
 * output and keeps nothing per step, so memory is flat in depth. 1: keep each step's
 * activations from the forward pass (more memory, one fewer network evaluation per step).
 * Both give the same gradients. */
void glow_model_set_store_activations(glow_model *m, int store);

/* Data-dependent initialisation of every actnorm from one batch of preprocessed images
 * x (B,H,W,C). Run once before training. */
int glow_model_init(glow_model *m, const glow_real *x, const int *y, int batch);

/* log p(x) in nats (including the -D*log(n_bins) discretisation term) and bits/dim for
 * each example of a preprocessed batch x (B,H,W,C). Either output may be NULL. */
int glow_model_log_prob(glow_model *m, const glow_real *x, const int *y, int batch,
                        double *logp, double *bpd);

/* Encode x (B,H,W,C) to z (B,D): per example, the factored-out latents of levels
 * 0..L-2 (each h_i x w_i x c_i/2, NHWC) followed by the top latent; see docs/MODEL.md.
 * logdet (B) receives the total log-determinant if not NULL. */
int glow_model_encode(glow_model *m, const glow_real *x, const int *y, int batch,
                      glow_real *z, double *logdet);
/* Decode z (B,D) back to x (B,H,W,C): the exact inverse of encode. */
int glow_model_decode(glow_model *m, const glow_real *z, const int *y, int batch,
                      glow_real *x);
/* Draw z from the priors with standard deviations scaled by `temperature` and decode it.
 * Deterministic in (seed, example index). y may be NULL (class 0 if conditional). */
int glow_model_sample(glow_model *m, const int *y, int batch, double temperature,
                      uint64_t seed, glow_real *x);

typedef struct glow_step_stats {
    double loss;     /* mean bits/dim + weight_y * mean class bits */
    double bpd;      /* mean bits/dim of the batch */
    double class_bits; /* mean class cross-entropy in bits (0 without a class loss) */
    double max_rebuild_error; /* largest |input rebuilt by the backward pass - input| */
} glow_step_stats;

/* One training step's forward and backward pass on a preprocessed batch: sets
 * glow_model_grads() to d loss / d params (overwriting) and fills `stats`. If dx is not
 * NULL it receives d loss / d x (B,H,W,C). The weights are not changed. */
int glow_model_train_step(glow_model *m, const glow_real *x, const int *y, int batch,
                          glow_step_stats *stats, glow_real *dx);

/* ---------------------------------------------------------------- data ------------- */

/* Pixels to model input: x = floor(u8 / 2^(8-n_bits)) / n_bins - 0.5 + noise, with noise
 * ~ U(0, 1/n_bins) drawn from the counter-based generator keyed by (seed, step, example):
 * the same on any thread count. noise_seed 0 with step -1 means no noise: the centre of
 * each bin is NOT used; use glow_preprocess_center for that. */
void glow_preprocess(glow_real *x, const uint8_t *pixels, int batch, size_t dim, int n_bits,
                     uint64_t seed, uint64_t step);
/* Pixels to the centre of their quantisation bin (no noise): encode/decode round trips. */
void glow_preprocess_center(glow_real *x, const uint8_t *pixels, int batch, size_t dim,
                            int n_bits);
/* Model output to pixels: clip(floor((x + 0.5) * n_bins) * 256 / n_bins, 0, 255). */
void glow_postprocess(uint8_t *pixels, const glow_real *x, int batch, size_t dim, int n_bits);

/* ---------------------------------------------------------------- data sets -------- */
/* (src/data.c) */

/* ---------------------------------------------------------------- images ----------- */
/* (src/image.c) */

/* ---------------------------------------------------------------- optimizer -------- */
/* (src/optim.c) */

/* ---------------------------------------------------------------- checkpoints ------ */
/* (src/checkpoint.c) */

/* ---------------------------------------------------------------- randomness ------- */

/* A counter-based generator: every draw is a pure function of its key, so results do not
 * depend on thread count or on how a batch is shared. */
uint64_t glow_rng_key(uint64_t seed, uint64_t purpose, uint64_t a, uint64_t b);
double glow_rng_uniform(uint64_t key, uint64_t i);  /* in [0, 1) */
double glow_rng_normal(uint64_t key, uint64_t i);   /* N(0, 1) */

/* ---------------------------------------------------------------- threads ---------- */

/* One thread count for the whole library (OpenMP and BLAS); <= 0: the core count. */
void glow_set_threads(int n);
int glow_get_threads(void);
/* A short description of the BLAS in use (e.g. "OpenBLAS 0.3.21 Haswell"). */
const char *glow_blas_info(void);

#ifdef __cplusplus
}
#endif
#endif /* GLOW_H */
