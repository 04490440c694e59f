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
 *     glow_ctx *ctx = glow_ctx_create(0);         // buffers and threads (all cores)
 *     float *x = malloc(sizeof(float) * B * glow_model_dim(m));
 *     glow_preprocess(x, pixels, B, glow_model_dim(m), cfg.n_bits, seed, step);
 *     glow_model_init(ctx, m, x, labels, B);      // data-dependent init, once
 *     glow_step_stats st;
 *     glow_model_train_step(ctx, m, x, labels, B, &st, NULL); // loss and every gradient
 *     // ... an optimizer step on glow_model_params(m) with glow_ctx_grads(ctx)
 *
 * or, with the trainer, which does all of that (and evaluates, samples and saves):
 *
 *     glow_trainer *t = glow_trainer_create(&cfg, &train_set, &test_set, &opts);
 *     while (glow_trainer_step(t) == GLOW_OK) {}
 *
 * Conventions. Functions that can fail return GLOW_OK (0) or a negative status and record a
 * one-line message for glow_last_error() (and for glow_ctx_error() where they take a
 * context); nothing in the library exits or aborts on bad input. Buffers are caller-owned
 * unless a function says otherwise. Floats are `glow_real`, which is float unless the
 * library is built with -DGLOW_REAL=double (the tests use a double build to check gradients
 * tightly).
 */
#ifndef GLOW_H
#define GLOW_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The library's version: GLOW_VERSION at build time, glow_version() at run time. */
#define GLOW_VERSION_MAJOR 0
#define GLOW_VERSION_MINOR 2
#define GLOW_VERSION_PATCH 0
#define GLOW_VERSION "0.2.0"

/* Everything declared here is the library's interface, and only this is visible from
 * libglow.so (the library is built with -fvisibility=hidden). */
#if defined(__GNUC__)
#pragma GCC visibility push(default)
#endif

const char *glow_version(void);

#ifndef GLOW_REAL
#define GLOW_REAL float
#endif
typedef GLOW_REAL glow_real;

/* ---------------------------------------------------------------- errors ---------- */

enum {
    GLOW_DONE = 1,    /* not a failure: glow_trainer_step has no steps left */
    GLOW_OK = 0,
    GLOW_EINVAL = -1, /* bad argument or hyperparameter */
    GLOW_ENOMEM = -2, /* allocation failed */
    GLOW_EIO = -3,    /* a file could not be read or written */
    GLOW_EFORMAT = -4, /* a file is not in the expected format, or is corrupt */
    GLOW_EDIVERGED = -5 /* training: too many non-finite steps in a row */
};

/* The message of the last failure in this thread ("" if none). */
const char *glow_last_error(void);
/* Record a failure message (printf-style) and return `status`; used across the library. */
int glow_fail(int status, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* ---------------------------------------------------------------- hyperparameters -- */

typedef enum { GLOW_ADDITIVE = 0, GLOW_AFFINE = 1 } glow_coupling;
/* The affine coupling's scale from u = h[..., 1::2], the network's scale channels:
 * sigmoid: s = sigmoid(u + 2), the paper's; s in (0, 1), and it underflows to 0 when u is
 *          very negative (the inverse then fails);
 * tanh:    log s = tanh(u), a soft clamp; s in [1/e, e], never near 0 (the default). */
typedef enum { GLOW_SCALE_SIGMOID = 0, GLOW_SCALE_TANH = 1 } glow_affine_scale;
/* The priors' log standard deviation from v, the value their layer computes (split prior:
 * the zero-initialised convolution's odd channels; top prior: the learned bias + ycond):
 * free: log std = v, the paper's; nothing stops a prior from becoming arbitrarily sharp;
 * tanh: log std = 3 tanh(v / 3), in (-3, 3) (default). */
typedef enum { GLOW_PRIOR_FREE = 0, GLOW_PRIOR_TANH = 1 } glow_prior_logs;
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
    glow_affine_scale affine_scale; /* affine coupling only */
    glow_prior_logs prior_logs;     /* the split and top priors' log std */
    int learntop;      /* 1: learned top prior (a bias per position and channel) */
    int n_classes;     /* 0: unconditional; > 0: labels in [0, n_classes) */
    int ycond;         /* 1: top prior conditioned on the label (needs n_classes) */
    double weight_y;   /* weight of the class loss (0: none; needs n_classes) */
    int n_bits;        /* 1..8 */
    uint64_t seed;     /* initial weights and fixed permutations */
} glow_config;

/* Defaults: 28x28x1 (Fashion-MNIST), L=2, K=8, width 128, affine with the tanh scale,
 * invconv-lu, learntop with tanh-bounded prior log stds, unconditional, n_bits 8, seed 1. */
void glow_config_default(glow_config *cfg);
/* The limits of a model's hyperparameters (glow_config_check; checkpoints are held to them
 * before anything is built): images up to 16384 x 16384 x 16, levels 1..16, depth up to
 * 1024 flow steps per level, width up to 8192 channels, up to 65536 classes. */
#define GLOW_MAX_IMAGE_SIDE 16384
#define GLOW_MAX_IMAGE_CHANNELS 16
#define GLOW_MAX_DEPTH 1024
#define GLOW_MAX_WIDTH 8192
#define GLOW_MAX_CLASSES 65536
/* GLOW_OK or GLOW_EINVAL with a message naming the offending value. */
int glow_config_check(const glow_config *cfg);
/* Names used by the CLI and the checkpoint ("additive", "invconv-lu", ...); -1 if unknown. */
const char *glow_coupling_name(glow_coupling c);
const char *glow_permutation_name(glow_permutation p);
const char *glow_affine_scale_name(glow_affine_scale s);
const char *glow_prior_logs_name(glow_prior_logs p);
int glow_coupling_parse(const char *name);
int glow_permutation_parse(const char *name);
int glow_affine_scale_parse(const char *name);
int glow_prior_logs_parse(const char *name);

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
int glow_model_n_tensors(const glow_model *m);
const glow_tensor_info *glow_model_tensor(const glow_model *m, int i);
/* Index of the tensor with this name, or -1. */
int glow_model_find_tensor(const glow_model *m, const char *name);
/* Number of trainable scalars. */
size_t glow_model_n_trainable(const glow_model *m);

/* ---------------------------------------------------------------- compute contexts - */

/* A compute context owns what a pass over a model changes: the buffers (sized for the
 * largest batch of the model shape last used), the gradients of the last training step,
 * the thread count, the matrix-product mode and the last error. The passes below take the
 * model const, so any number of contexts (one per thread) can run on one model at once;
 * one context serves one thread at a time. */
typedef struct glow_ctx glow_ctx;

/* threads <= 0: one per core. NULL if out of memory. */
glow_ctx *glow_ctx_create(int threads);
void glow_ctx_free(glow_ctx *ctx);
void glow_ctx_set_threads(glow_ctx *ctx, int threads); /* <= 0: one per core */
int glow_ctx_threads(const glow_ctx *ctx);
/* The precision of the coupling networks' matrix products: their convolutions' outputs,
 * input gradients and weight gradients.
 *   GLOW_MATMUL_FP32    float (the default).
 *   GLOW_MATMUL_BF16X3  on the CPU's AMX tile units where the product is large enough to
 *                       gain: each float split into two bfloat16 halves, three of the four
 *                       products summed in float. About 4x float's rounding error in a
 *                       512-term product; 2-2.8x as fast on one core.
 * The coupling stays exactly invertible either way (the same products run forward and
 * inverse), but a model's likelihood differs in the 6th digit between the two. Returns
 * GLOW_OK, or GLOW_EINVAL where the CPU (AMX-BF16), the build (float) or GLOW_NO_PACKED
 * rules it out. */
typedef enum { GLOW_MATMUL_FP32 = 0, GLOW_MATMUL_BF16X3 = 1 } glow_matmul;
int glow_ctx_set_matmul(glow_ctx *ctx, glow_matmul m);
glow_matmul glow_ctx_matmul(const glow_ctx *ctx);
/* Training memory. 0 (default): the backward pass rebuilds each step's input from its
 * output and keeps nothing per step, so memory is flat in depth. SIZE_MAX: keep every
 * step's activations from the forward pass (more memory, one fewer network evaluation per
 * step). Between the two: keep the activations of as many flow steps as fit in `bytes`,
 * spread over the depth, and rebuild the others; each kept step saves a network evaluation
 * and restores its input exactly. All give the same gradients. */
void glow_ctx_set_activation_memory(glow_ctx *ctx, size_t bytes);
size_t glow_ctx_activation_memory(const glow_ctx *ctx);
/* The message of the context's last failure ("" if none). */
const char *glow_ctx_error(const glow_ctx *ctx);
/* d loss / d params of the last glow_model_train_step, in the layout of
 * glow_model_params(); NULL before the first. glow_ctx_n_grads: its length. */
glow_real *glow_ctx_grads(glow_ctx *ctx);
size_t glow_ctx_n_grads(const glow_ctx *ctx);
/* Allocate the gradients for m now (zeroed; the first training step does it otherwise):
 * for a program that measures its memory, or reduces gradients across processes. */
int glow_ctx_reserve_grads(glow_ctx *ctx, const glow_model *m);

/* Many processes (data parallelism, docs/DISTRIBUTED.md). The library does no
 * communication of its own: the program hands it an allreduce (glow's is MPI_Allreduce).
 * It combines n values (glow_real if is_real, else double) in place over every process,
 * which all call it in the same order, and returns when every process has the result; a
 * failure must end the process (MPI's default error handler does). */
typedef enum { GLOW_REDUCE_SUM = 0, GLOW_REDUCE_MAX = 1 } glow_reduce_op;
typedef struct glow_comm {
    int rank, size;   /* this process, of size (>= 1) */
    void (*allreduce)(void *data, size_t n, int is_real, glow_reduce_op op, void *user);
    void *user;
} glow_comm;
/* With a comm of size > 1 (NULL: one process): glow_model_init sums its actnorm statistics
 * over the processes, each passing its share of the images, so that the init equals one
 * process's over the union; glow_evaluate shares the images out and gathers the figures.
 * The comm must outlive its use. */
void glow_ctx_set_comm(glow_ctx *ctx, const glow_comm *comm);
/* The context's comm: NULL unless one of size > 1 was set. */
const glow_comm *glow_ctx_comm(const glow_ctx *ctx);

/* ---------------------------------------------------------------- passes ----------- */

/* Data-dependent initialisation of every actnorm from one batch of preprocessed images
 * x (B,H,W,C). Run once before training. */
int glow_model_init(glow_ctx *ctx, glow_model *m, const glow_real *x, const int *y, int batch);

/* log p(x) in nats (including the -D*log(n_bins) discretisation term) and bits/dim for
 * each example of a preprocessed batch x (B,H,W,C). Either output may be NULL. */
int glow_model_log_prob(glow_ctx *ctx, const glow_model *m, const glow_real *x, const int *y,
                        int batch, double *logp, double *bpd);

/* Encode x (B,H,W,C) to z (B,D): per example, the factored-out latents of levels
 * 0..L-2 (each h_i x w_i x c_i/2, NHWC) followed by the top latent; see docs/MODEL.md.
 * logdet (B) receives the total log-determinant if not NULL. */
int glow_model_encode(glow_ctx *ctx, const glow_model *m, const glow_real *x, const int *y,
                      int batch, glow_real *z, double *logdet);
/* Decode z (B,D) back to x (B,H,W,C): the exact inverse of encode. logdet (B), if not
 * NULL, receives the log-determinant of the forward map as the inverse pass computes it
 * (equal to encode's up to rounding: a check of numerical invertibility). */
int glow_model_decode(glow_ctx *ctx, const glow_model *m, const glow_real *z, const int *y,
                      int batch, glow_real *x, double *logdet);
/* Draw z from the priors with standard deviations scaled by `temperature` and decode it.
 * Deterministic in (seed, example index). y may be NULL (class 0 if conditional). */
int glow_model_sample(glow_ctx *ctx, const glow_model *m, const int *y, int batch,
                      double temperature, uint64_t seed, glow_real *x);

/* The most levels a model has (glow_config_check). */
#define GLOW_MAX_LEVELS 16

/* One level's extremes and terms in a forward pass over a batch, so that a loss spike
 * names its layer. Log-scales are natural logs. */
typedef struct glow_level_stats {
    double min_coupling_logs;  /* smallest log scale of any affine coupling (0: additive) */
    double max_coupling_shift; /* largest |shift| (additive: |h|) of any coupling */
    double min_actnorm_logs;   /* smallest actnorm log scale, 3 * logs (parameters) */
    double min_invconv_logs;   /* smallest log|s| of an LU 1x1 convolution (0: other kinds) */
    double min_prior_logs;     /* smallest log std of this level's prior (split or top) */
    double max_abs_z;          /* largest |z| factored out here (the top latent: last level) */
    double max_z_score;        /* largest |z - mean| / std under that prior */
    double logdet_bpd;         /* its flow steps' share of the bits/dim, -log-det / (D ln 2) */
    double prior_bpd;          /* its prior's share, -log N(z) / (D ln 2); the shares of all
                                  levels plus n_bits make the bits/dim (batch means) */
} glow_level_stats;

typedef struct glow_step_stats {
    double loss;     /* mean bits/dim + weight_y * mean class bits */
    double bpd;      /* mean bits/dim of the batch */
    double class_bits; /* mean class cross-entropy in bits (0 without a class loss) */
    double max_rebuild_error; /* largest |input rebuilt by the backward pass - input| */
    int recomputed;  /* 1: the rebuilt inputs drifted (> 1e-4), so the step was redone
                        keeping every flow step's input: exact gradients, for c values per
                        pixel per flow step more memory, given back after the step */
    int kept_steps;  /* flow steps whose activations were kept (see activation memory) */
    glow_level_stats level[GLOW_MAX_LEVELS]; /* the first `levels` are filled */
} glow_step_stats;

/* One training step's forward and backward pass on a preprocessed batch: sets
 * glow_ctx_grads(ctx) to d loss / d params (overwriting) and fills `stats` (if not NULL).
 * If dx is not NULL it receives d loss / d x (B,H,W,C). The weights are not changed. */
int glow_model_train_step(glow_ctx *ctx, const glow_model *m, const glow_real *x, const int *y,
                          int batch, glow_step_stats *stats, glow_real *dx);

/* ---------------------------------------------------------------- data ------------- */

/* Pixels to model input: x = floor(u8 / 2^(8-n_bits)) / n_bins - 0.5 + u with
 * u ~ U(0, 1/n_bins) from the counter-based generator keyed by (seed, step, example index
 * within the batch): the same on any thread count. dim = H*W*C. */
void glow_preprocess(glow_real *x, const uint8_t *pixels, int batch, size_t dim, int n_bits,
                     uint64_t seed, uint64_t step);
/* Pixels to the centre of their quantisation bin (no noise): encode/decode round trips. */
void glow_preprocess_center(glow_real *x, const uint8_t *pixels, int batch, size_t dim,
                            int n_bits);
/* Model output to pixels: clip(floor((x + 0.5) * n_bins) * 256 / n_bins, 0, 255). */
void glow_postprocess(uint8_t *pixels, const glow_real *x, int batch, size_t dim, int n_bits);

/* ---------------------------------------------------------------- data sets -------- */
/* (src/data.c) */

/* A data set in memory: n images, each h x w x c uint8, NHWC, with optional class labels,
 * optional CelebA-style binary attributes and (for image folders) the file names. Every
 * array is owned by the data set; glow_dataset_free releases them. */
typedef struct glow_dataset {
    int n, h, w, c;           /* images, each h x w x c uint8, NHWC */
    uint8_t *pixels;          /* (n,h,w,c) */
    int *labels;              /* (n) class labels, or NULL */
    int n_classes;            /* 0 if unlabelled; else 1 + the largest label */
    int n_attrs;              /* CelebA-style binary attributes: 0 if none */
    char (*attr_names)[64];   /* (n_attrs) attribute names, or NULL */
    int8_t *attrs;            /* (n,n_attrs) values in {-1, +1}, or NULL */
    char (*class_names)[32];  /* (n_classes) names of the classes, or NULL */
    char (*names)[256];       /* (n) file names (image folders only), sorted; or NULL */
} glow_dataset;

/* Load a data set into *d (zeroed first; left zeroed on failure). `path` is one of:
 *  - an IDX image file, gzipped or not (e.g. train-images-idx3-ubyte.gz): magic 0x803
 *    (n,h,w; c = 1) or 0x804 (n,h,w,c). Labels come from the matching label file
 *    (train-images-idx3-ubyte[.gz] -> train-labels-idx1-ubyte[.gz], t10k-images -> ...)
 *    when it exists; `split` is ignored.
 *  - a folder of MNIST / Fashion-MNIST IDX files: split "train" -> train-*, "test" ->
 *    t10k-*.
 *  - a CIFAR-10 binary folder (or a folder holding cifar-10-batches-bin/): "train" ->
 *    those of data_batch_1.bin .. data_batch_5.bin present, "test" -> test_batch.bin.
 *    Class names are set.
 *  - a folder of PNG / JPEG images (*.png, *.jpg, *.jpeg; not recursive), loaded in
 *    strcmp order of file name. Every split loads all the images: such a folder has no
 *    train/test split of its own (make one with glow_dataset_subset). Gray images stay
 *    one channel if all are gray; otherwise every image becomes RGB (gray replicated);
 *    alpha is dropped (see glow_image_read). Labels: list_attr_celeba.txt in the folder
 *    (CelebA attributes, see glow_dataset_load_attributes) and/or labels.csv
 *    ("filename,label" lines, integer labels >= 0, an optional header line); every image
 *    must then have an entry.
 * split NULL means "train". image_size > 0: every image (of any format) is fitted to
 * image_size x image_size by glow_image_fit (centre crop to a square, then resize);
 * image_size 0 keeps the native size, and the images of a folder must then agree.
 * Failures name the file and what is wrong (GLOW_EIO: missing or unreadable;
 * GLOW_EFORMAT: wrong magic, truncated, wrong dimensions, label count mismatch,
 * unsupported image; GLOW_EINVAL: bad argument). */
int glow_dataset_load(glow_dataset *d, const char *path, const char *split, int image_size);

/* Attach a CelebA-style attribute file to a data set loaded from an image folder, matched
 * by file name. Layout: line 1 the number of entries, line 2 the attribute names
 * separated by blanks, then one line per image: "filename v1 v2 ..." with values -1 or 1.
 * Entries for images not in the data set are ignored; every image needs an entry.
 * Replaces any attributes already attached. */
int glow_dataset_load_attributes(glow_dataset *d, const char *attr_file);

/* Name the classes with Fashion-MNIST's ten class names ("T-shirt/top", "Trouser", ...).
 * GLOW_EINVAL unless the data set has labels in 0..9. */
int glow_dataset_set_fashion_names(glow_dataset *d);

/* Release every array and zero the struct (safe on a zeroed or already freed one). */
void glow_dataset_free(glow_dataset *d);

/* A copy of images [start, start + count) of d with their labels, attributes and names
 * (for shards and held-out parts). *out is zeroed first. */
int glow_dataset_subset(glow_dataset *out, const glow_dataset *d, int start, int count);

/* order (n) := a permutation of 0..n-1 that depends only on (seed, epoch): a
 * Fisher-Yates shuffle driven by glow_rng_uniform, the same on every machine. */
void glow_dataset_shuffle_order(int *order, int n, uint64_t seed, uint64_t epoch);

/* Copy the images idx[0..count) of d into pixels (count,h,w,c) and, if labels is not
 * NULL, their labels into labels (count) (0 where d has none). Indices must be in
 * [0, d->n): a programmer error otherwise. */
void glow_dataset_gather(uint8_t *pixels, int *labels, const glow_dataset *d, const int *idx,
                         int count);

/* ---------------------------------------------------------------- images ----------- */
/* (src/image.c) */

/* Read a PNG or JPEG file (told apart by content) into a malloc'd (h,w,c) uint8 array.
 * c is 1 for gray PNGs (with or without alpha) and gray JPEGs, 3 otherwise (RGB, RGBA,
 * palette); alpha is dropped, not composited; 16-bit samples are scaled to 8 bits with
 * rounding; gamma chunks are ignored (the stored values are returned). CMYK JPEGs,
 * truncated files and images over 2^28 samples are refused. */
int glow_image_read(const char *path, uint8_t **pixels, int *h, int *w, int *c);
/* The same from bytes in memory (e.g. an upload); messages name the image "image data". */
int glow_image_decode(const uint8_t *data, size_t size, uint8_t **pixels, int *h, int *w,
                      int *c);

/* Encode (h,w,c) pixels, c = 1 (gray) or 3 (RGB), as a PNG into a malloc'd buffer. */
int glow_png_encode(uint8_t **png, size_t *size, const uint8_t *pixels, int h, int w, int c);
/* Write a PNG file: written to "<path>.tmp", flushed and renamed, so no half-written
 * file is ever left at path. */
int glow_png_write(const char *path, const uint8_t *pixels, int h, int w, int c);

/* Resize src (sh,sw,c) to dst (dh,dw,c), each axis on its own (separable):
 *  - shrinking an axis: area average: output pixel i covers source interval
 *    [i*s/d, (i+1)*s/d) and is the mean of the source pixels weighted by their overlap;
 *  - enlarging an axis: linear interpolation at source coordinate (i+0.5)*s/d - 0.5
 *    (pixel centres aligned), clamped to the edge pixels;
 *  - equal sizes: a copy.
 * Rows first, then columns, in float; the result is rounded to nearest (x.5 up).
 * GLOW_OK, or GLOW_ENOMEM if its tables could not be allocated (dst is then unset). */
int glow_image_resize(uint8_t *dst, int dh, int dw, const uint8_t *src, int sh, int sw,
                      int c);
/* Fit src (sh,sw,c) to dst (size,size,c): crop the centred square of side min(sh, sw)
 * (offset floor((sh-side)/2), floor((sw-side)/2)), then glow_image_resize it. The data
 * set loaders use this for image_size > 0. */
int glow_image_fit(uint8_t *dst, int size, const uint8_t *src, int sh, int sw, int c);

/* Tile n images (n,h,w,c) into a malloc'd grid (gh,gw,c) of `cols` columns and
 * ceil(n/cols) rows, with `pad` white (255) pixels between neighbours (none around the
 * border): gh = rows*h + (rows-1)*pad, gw = cols*w + (cols-1)*pad. Image k sits at row
 * k / cols, column k % cols; cells without an image are white. */
int glow_grid_make(uint8_t **grid, int *gh, int *gw, const uint8_t *images, int n, int h,
                   int w, int c, int cols, int pad);
/* glow_grid_make written as a PNG (c = 1 or 3). A strip is a grid with cols = n. */
int glow_grid_write(const char *path, const uint8_t *images, int n, int h, int w, int c,
                    int cols, int pad);

/* A line plot as a width x height RGB PNG: series s is (x[i], ys[s][i]) for i < n_points,
 * in its own colour, with axes, "nice" ticks labelled in a built-in 5x7 bitmap font
 * (letters print in upper case), a title and a legend of `labels` (NULL: no legend).
 * x NULL means 0..n_points-1. Points with a non-finite x or y are skipped and the line
 * joins the finite points around them (a series measured every few steps can share x).
 * The y range ends at the fences Q1 - 10 IQR and Q3 + 10 IQR of all the finite values, so
 * that one far-off value (a loss spike) does not flatten the rest: points beyond are drawn
 * at the edge with a mark, and a note says how many. width and height in 160..8192 and
 * 120..8192. */
int glow_plot_write(const char *path, const char *title, const double *x,
                    const double *const *ys, const char *const *labels, int n_series,
                    int n_points, int width, int height);

/* ---------------------------------------------------------------- optimizer -------- */
/* (src/optim.c) */
/* Adam (default) or Adamax over the flat parameter buffer, with linear learning-rate
 * warm-up, optional clipping of the global gradient norm, and a Polyak (exponential moving)
 * average of the weights for evaluation and sampling. Moments and the average share the
 * parameter layout. Fixed tensors have zero gradients, so no update ever moves them. */
typedef enum { GLOW_ADAM = 0, GLOW_ADAMAX = 1 } glow_optimizer_kind;

typedef struct glow_optim_config {
    glow_optimizer_kind kind;
    double lr;        /* peak learning rate (default 1e-3) */
    double beta1, beta2, eps; /* 0.9, 0.999, 1e-8 */
    int warmup;       /* steps of linear warm-up from lr/warmup to lr (0: none) */
    double grad_clip; /* clip the global gradient norm to this (0: off) */
    double polyak;    /* decay of the weight average, e.g. 0.999 (0: average = weights); the
                         decay used at update t is min(polyak, (1 + t) / (10 + t)) */
} glow_optim_config;

typedef struct glow_optimizer {
    glow_optim_config cfg;
    size_t n;
    glow_real *m, *v, *avg; /* first and second moments (Adamax: the infinity norm), average */
    int64_t step;           /* updates applied so far */
} glow_optimizer;

void glow_optim_config_default(glow_optim_config *cfg);
/* Allocates the moments (zero) and the average (a copy of params). */
int glow_optimizer_init(glow_optimizer *o, const glow_optim_config *cfg, size_t n,
                        const glow_real *params);
void glow_optimizer_free(glow_optimizer *o);
/* The learning rate the next update will use. */
double glow_optimizer_lr(const glow_optimizer *o);
/* One update. If any gradient is not finite nothing changes and GLOW_EINVAL is returned
 * (the caller skips the step). grad_norm receives the global norm before clipping. */
int glow_optimizer_step(glow_optimizer *o, glow_real *params, const glow_real *grads,
                        double *grad_norm);


/* ---------------------------------------------------------------- checkpoints ------ */
/* (src/checkpoint.c) */
/* A checkpoint holds everything needed to continue training exactly: the hyperparameters,
 * the weights, the optimizer (its settings, moments, step, Polyak average) and the training
 * counters; the data order and the dequantisation noise are functions of (seed, step,
 * epoch), so the counters are the generator's state. docs/FORMAT.md describes the file.
 * Saving writes a temporary file beside the target, fsyncs it and renames it over the
 * target, so a crash never leaves a half-written checkpoint. */
typedef struct glow_train_state {
    int64_t step;          /* optimizer updates done */
    int64_t epoch;         /* current epoch (0-based) */
    int64_t batch_in_epoch; /* batches of the current epoch already consumed */
    int64_t skipped;       /* steps skipped for a non-finite loss or gradient */
    uint64_t data_seed;    /* data order and dequantisation noise */
    int batch;             /* global batch size */
} glow_train_state;

/* opt may be NULL (weights only: no optimizer section). */
int glow_checkpoint_save(const char *path, const glow_model *m, const glow_optimizer *opt,
                         const glow_train_state *state);
/* Load a checkpoint: a new model with its weights, or with the Polyak average as weights
 * if use_average is set and the file has one. opt (if not NULL) receives the optimizer when
 * the file has one (else opt->m == NULL); state (if not NULL) the counters. NULL on failure,
 * with a message naming the file and what is wrong (missing, truncated, bad magic, version,
 * checksum, sizes). Everything is checked before anything is returned. */
glow_model *glow_checkpoint_load(const char *path, int use_average, glow_optimizer *opt,
                                 glow_train_state *state);


/* ---------------------------------------------------------------- the trainer ------ */
/* (src/trainer.c) Training by maximum likelihood, the whole job: the data-dependent init,
 * the shuffled batches, the step with its skip policy (a step whose loss or gradient is not
 * finite never reaches the weights), the optimizer, and on a cadence the test bits/dim (of
 * the Polyak average), samples and atomic checkpoints, with FILE.best keeping the model
 * with the best test bits/dim. Progress goes to a callback.
 *
 * Exact resumption: the data order of epoch e is a permutation drawn from (seed, e), the
 * dequantisation noise of step s is drawn from (seed, s), and the checkpoint holds the
 * weights, the optimizer's moments and average, and the counters. So a run stopped at step
 * N and resumed reaches the same weights at step M as one that never stopped. */

/* Bits/dim of images [0, count) of a data set, per image (bpd, count of them), in batches
 * of `batch`: the dequantisation noise of image i is drawn from (seed, i) whatever the
 * batch (glow eval's convention, docs/MODEL.md). Labels are passed where the model is
 * class-conditional. With a comm on ctx, each process evaluates its share of the images
 * and every process gets all the figures. */
int glow_evaluate(glow_ctx *ctx, const glow_model *m, const glow_dataset *d, int count,
                  int batch, uint64_t seed, double *bpd);

typedef enum {
    GLOW_EVENT_LOG,    /* every log_every steps, and at the last: the interval's figures */
    GLOW_EVENT_SKIP,   /* a step was skipped: message says why */
    GLOW_EVENT_EVAL,   /* test bits/dim of the Polyak average */
    GLOW_EVENT_SAMPLE, /* samples of the Polyak average */
    GLOW_EVENT_SAVE    /* a checkpoint was written to path */
} glow_event_kind;

typedef struct glow_train_event {
    glow_event_kind kind;
    int64_t step, total;      /* optimizer steps done, and in all */
    double epoch;             /* epochs done, fractional */
    double seconds;           /* since the trainer was created */
    /* GLOW_EVENT_LOG, over the steps since the last one: */
    int n_steps;
    double train_bpd;         /* mean of the steps' bits/dim */
    double max_step_bpd;      /* the worst step's */
    double img_per_s;         /* images per second of wall time (evaluation excluded) */
    double step_seconds;      /* mean seconds per step since the trainer started (the ETA) */
    double grad_norm;         /* the last step's, before clipping */
    double lr;                /* the next step's learning rate */
    double max_rebuild_error; /* the largest over the interval (glow_step_stats) */
    int redone;               /* steps redone for drift in the interval */
    int64_t redone_total;     /* ... since the trainer was created */
    int64_t skipped;          /* steps skipped in the whole run */
    int kept_steps;           /* flow steps whose activations are kept */
    double comm_share;        /* share of the steps' time in the allreduces, waiting for the
                                 slowest process included (0 for one process) */
    glow_level_stats level[GLOW_MAX_LEVELS]; /* extremes over the interval; the bits/dim
                                                shares are the interval's means */
    /* GLOW_EVENT_EVAL: */
    double test_bpd;
    int test_n, best;         /* images; 1 if the best so far (FILE.best was written) */
    /* GLOW_EVENT_SAMPLE: n_samples images (n, H, W, C) at the temperature */
    const uint8_t *samples;
    int n_samples;
    /* GLOW_EVENT_SKIP: why; GLOW_EVENT_SAVE: where */
    const char *message, *path;
} glow_train_event;

typedef void (*glow_train_callback)(const glow_train_event *event, void *user);

typedef struct glow_train_options {
    int batch;                /* images per step (default 64); resuming: 0 takes the
                                 checkpoint's, anything else must equal it */
    int init_batch;           /* images for the data-dependent init (default 256) */
    int64_t steps;            /* total optimizer steps (default 10000) */
    glow_optim_config optim;  /* default: Adam, lr 1e-3, warm-up 200, clip 100, Polyak 0.999;
                                 resuming: the checkpoint's (change it with
                                 glow_trainer_optimizer) */
    int max_skips;            /* fail after this many skipped steps in a row (default 20) */
    int log_every;            /* a GLOW_EVENT_LOG every N steps (default 10) */
    int eval_every, eval_n;   /* test bits/dim every N steps (0: at the last only) on the
                                 first eval_n test images (defaults 1000, 2000) */
    int sample_every;         /* samples every N steps (0: at the last only; default 1000) */
    int n_samples;            /* default 64 */
    double temperature;       /* of the samples (default 0.7) */
    const char *checkpoint;   /* saved every save_every steps and save_seconds (NULL: only
                                 by glow_trainer_save); never overwritten by a new run */
    int save_every;           /* default 500 */
    double save_seconds;      /* default 600 */
    int threads;              /* <= 0: one per core */
    glow_matmul matmul;
    size_t activation_memory; /* see glow_ctx_set_activation_memory (default 0) */
    glow_train_callback callback; /* may be NULL */
    void *user;
    /* Data parallelism (NULL: one process): every process runs the same trainer on the
     * same data sets with the same options, and takes its batch / size images of every
     * batch (batch must divide); the gradients, the loss and the statistics are combined
     * over the processes, a step that is not finite on any process is skipped on all, and
     * only rank 0 writes checkpoints and draws samples. The results equal one process's up
     * to the summation order of floats, so a run resumes on any number of processes.
     * glow_trainer_create, _resume, _step and _evaluate are then collective: every
     * process calls them, in the same order. */
    const glow_comm *comm;
} glow_train_options;

void glow_train_options_default(glow_train_options *o);

typedef struct glow_trainer glow_trainer;

/* A new run: a model from cfg (its image size taken from `train`, and n_classes from its
 * labels where cfg needs them) initialised from the first init_batch images of epoch 0's
 * order, and its first checkpoint if opts->checkpoint is set. test may be NULL (evaluate
 * on train) and the data sets must outlive the trainer. NULL on failure. */
glow_trainer *glow_trainer_create(const glow_config *cfg, const glow_dataset *train,
                                  const glow_dataset *test, const glow_train_options *opts);
/* Continue the run saved in `checkpoint` exactly (opts->checkpoint NULL: save there). */
glow_trainer *glow_trainer_resume(const char *checkpoint, const glow_dataset *train,
                                  const glow_dataset *test, const glow_train_options *opts);
void glow_trainer_free(glow_trainer *t);

/* One optimizer step (or a skipped one), then what the cadence asks for: a log event, an
 * evaluation, samples, a checkpoint. GLOW_OK; GLOW_DONE once all steps are done (nothing
 * was run); or a failure (GLOW_EDIVERGED after max_skips skips in a row; the last
 * checkpoint is then intact). */
int glow_trainer_step(glow_trainer *t);
/* Change the total number of steps (to train longer, or to stop sooner). */
void glow_trainer_set_steps(glow_trainer *t, int64_t steps);
/* Save the run to path (NULL: opts->checkpoint), atomically. */
int glow_trainer_save(glow_trainer *t, const char *path);
/* Mean test bits/dim of the Polyak average over the first n test images (n <= 0: all). */
int glow_trainer_evaluate(glow_trainer *t, int n, double *bpd);
/* n samples of the Polyak average at a temperature into pixels (n, H, W, C). */
int glow_trainer_sample(glow_trainer *t, int n, double temperature, uint64_t seed,
                        uint8_t *pixels);
/* The model (raw weights), the optimizer (its settings may be changed between steps),
 * the counters and the trainer's compute context. */
glow_model *glow_trainer_model(glow_trainer *t);
glow_optimizer *glow_trainer_optimizer(glow_trainer *t);
const glow_train_state *glow_trainer_state(const glow_trainer *t);
glow_ctx *glow_trainer_ctx(glow_trainer *t);
/* The last failure's message. */
const char *glow_trainer_error(const glow_trainer *t);

/* ---------------------------------------------------------------- latent space ----- */
/* (src/latent.c) Encode with glow_preprocess_center (no noise) so that decode(encode(x))
 * returns x exactly; latents are (N, D) per docs/MODEL.md. */

/* Encode n images (n, H, W, C) from the centre of their bins, `batch` at a time, to z
 * (n, D); logdet (n) if not NULL. labels are used where the model is class-conditional. */
int glow_encode_images(glow_ctx *ctx, const glow_model *m, const uint8_t *pixels,
                       const int *labels, int n, int batch, glow_real *z, double *logdet);
/* Decode n latents (n, D) to model outputs x (n, D), `batch` at a time
 * (glow_postprocess turns them into pixels); logdet as glow_model_decode's. */
int glow_decode_latents(glow_ctx *ctx, const glow_model *m, const glow_real *z,
                        const int *labels, int n, int batch, glow_real *x, double *logdet);
/* out (steps, D): the straight line from za to zb, ends included. */
void glow_latent_lerp(glow_real *out, const glow_real *za, const glow_real *zb, size_t dim,
                      int steps);
/* out (n, D) = z + alphas[s] * direction. */
void glow_latent_shift(glow_real *out, const glow_real *z, const glow_real *direction,
                       const double *alphas, int n, size_t dim);

/* Attribute directions: for each attribute, mean latent of its positive examples minus
 * mean latent of its negative ones, with the counts. */
typedef struct glow_directions {
    int n;                /* attributes */
    size_t dim;           /* latent size D */
    char (*names)[64];
    int64_t *n_pos, *n_neg;
    float *z;             /* (n, D) */
} glow_directions;
/* z (n, D); attrs (n, n_attrs) in {-1, +1}. Fails if an attribute has no positive or no
 * negative example. */
int glow_directions_compute(glow_directions *d, const glow_real *z, int n, size_t dim,
                            const int8_t *attrs, int n_attrs, const char (*names)[64]);
/* One .npz file (numpy.load reads it): directions (n, D) float32, names (n,) <U64,
 * n_pos and n_neg (n,) int64. */
int glow_directions_save(const char *path, const glow_directions *d);
int glow_directions_load(const char *path, glow_directions *d);
void glow_directions_free(glow_directions *d);
/* Index of the attribute with this name, or -1. */
int glow_directions_find(const glow_directions *d, const char *name);

/* NumPy .npy files: latents (rows, cols) as float32, labels as int32. */
int glow_npy_write(const char *path, const glow_real *data, size_t rows, size_t cols);
int glow_npy_write_labels(const char *path, const int *labels, size_t n);
/* Reads a 2-D float32 (or float64) array into a malloc'd buffer. */
int glow_npy_read(const char *path, glow_real **data, size_t *rows, size_t *cols);

/* A CRC-32 of the hyperparameters and weights: tells which model made a latent file. */
uint32_t glow_model_fingerprint(const glow_model *m);

/* ---------------------------------------------------------------- randomness ------- */

/* A counter-based generator: every draw is a pure function of its key, so results do not
 * depend on thread count or on how a batch is shared. */
uint64_t glow_rng_key(uint64_t seed, uint64_t purpose, uint64_t a, uint64_t b);
double glow_rng_uniform(uint64_t key, uint64_t i);  /* in [0, 1) */
double glow_rng_normal(uint64_t key, uint64_t i);   /* N(0, 1) */

/* ---------------------------------------------------------------- the machine ------ */

/* A short description of the BLAS in use (e.g. "OpenBLAS 0.3.21 ... SkylakeX"). */
const char *glow_blas_info(void);
/* GFLOP/s of the BLAS on an n x n x n matrix product in the library's precision (best of
 * 7) on the context's threads: the peak that convolution rates are measured against. */
double glow_blas_gflops(glow_ctx *ctx, int n);
/* If OpenBLAS fell back to its generic kernels on a CPU it did not recognise, the core type
 * to set in OPENBLAS_CORETYPE (it is read when the library loads, so a program sets it and
 * re-executes itself); NULL when nothing is to be gained. */
const char *glow_blas_coretype_hint(void);
/* For a program's main: if OPENBLAS_CORETYPE (see above) or OMP_WAIT_POLICY (passive) would
 * help and are unset, set them and re-execute the program with argv; otherwise return. */
void glow_tune_environment(char **argv);

#if defined(__GNUC__)
#pragma GCC visibility pop
#endif

#ifdef __cplusplus
}
#endif
#endif /* GLOW_H */
