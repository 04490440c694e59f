/* model.c: hyperparameters -> the multi-scale flow and its parameters in one flat buffer
 * (the passes over it are in flow.c).
 *
 * Structure (docs/MODEL.md states it exactly): level i squeezes its input u_i to s_i
 * (h_i, w_i, c_i), runs K flow steps (actnorm -> permutation -> coupling) to t_i, and for
 * i < L-1 splits t_i into z1 = channels [0, c_i/2), which continues as u_{i+1}, and the
 * factored-out z2 with prior N(mean, exp(logs)) from a zero-initialised conv3x3 of z1. The
 * last level's t is the top latent, with the (learned, optionally class-conditional) top
 * prior. Per example the latent vector z is [z2 of level 0, ..., z2 of level L-2, top].
 *
 * Memory: the backward pass starts from the latents alone and rebuilds every step's input
 * from its output with the step's inverse, which also recomputes the coupling network's
 * activations that its backward needs; nothing is kept per step, so memory is flat in K.
 * With an activation memory (glow_ctx_set_activation_memory) the forward pass keeps some or
 * all steps' activations instead. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>
#include "layers.h"
#include "model.h"

/* ---- hyperparameters ------------------------------------------------------------------ */

void glow_config_default(glow_config *cfg) {
    memset(cfg, 0, sizeof *cfg);
    cfg->image_h = 28;
    cfg->image_w = 28;
    cfg->image_c = 1;
    cfg->levels = 2;
    cfg->depth = 8;
    cfg->width = 128;
    cfg->coupling = GLOW_AFFINE;
    cfg->permutation = GLOW_INVCONV_LU;
    cfg->affine_scale = GLOW_SCALE_TANH;
    cfg->prior_logs = GLOW_PRIOR_TANH;
    cfg->learntop = 1;
    cfg->n_bits = 8;
    cfg->seed = 1;
}

static const char *coupling_names[] = {"additive", "affine"};
static const char *permutation_names[] = {"reverse", "shuffle", "invconv", "invconv-lu"};
static const char *scale_names[] = {"sigmoid", "tanh"};
static const char *prior_names[] = {"free", "tanh"};

/* Names by code and codes by name ("?" and -1 when unknown). */
#define NAME(names, code) name_of(names, (int)(sizeof names / sizeof names[0]), code)
#define CODE(names, name) code_of(names, (int)(sizeof names / sizeof names[0]), name)
static const char *name_of(const char *const *names, int n, int code) {
    return code >= 0 && code < n ? names[code] : "?";
}
static int code_of(const char *const *names, int n, const char *name) {
    for (int i = 0; i < n; i++)
        if (!strcmp(name, names[i])) return i;
    return -1;
}
const char *glow_coupling_name(glow_coupling c) { return NAME(coupling_names, c); }
const char *glow_permutation_name(glow_permutation p) { return NAME(permutation_names, p); }
const char *glow_affine_scale_name(glow_affine_scale s) { return NAME(scale_names, s); }
const char *glow_prior_logs_name(glow_prior_logs p) { return NAME(prior_names, p); }
int glow_coupling_parse(const char *name) { return CODE(coupling_names, name); }
int glow_permutation_parse(const char *name) { return CODE(permutation_names, name); }
int glow_affine_scale_parse(const char *name) { return CODE(scale_names, name); }
int glow_prior_logs_parse(const char *name) { return CODE(prior_names, name); }

int glow_config_check(const glow_config *cfg) {
    if (cfg->image_h < 1 || cfg->image_w < 1 || cfg->image_c < 1)
        return glow_fail(GLOW_EINVAL, "image size %dx%dx%d: every dimension must be >= 1",
                         cfg->image_h, cfg->image_w, cfg->image_c);
    if (cfg->image_h > GLOW_MAX_IMAGE_SIDE || cfg->image_w > GLOW_MAX_IMAGE_SIDE ||
        cfg->image_c > GLOW_MAX_IMAGE_CHANNELS)
        return glow_fail(GLOW_EINVAL, "image size %dx%dx%d: at most %dx%dx%d", cfg->image_h,
                         cfg->image_w, cfg->image_c, GLOW_MAX_IMAGE_SIDE, GLOW_MAX_IMAGE_SIDE,
                         GLOW_MAX_IMAGE_CHANNELS);
    if (cfg->levels < 1 || cfg->levels > GLOW_MAX_LEVELS)
        return glow_fail(GLOW_EINVAL, "levels %d: must be in 1..%d", cfg->levels, GLOW_MAX_LEVELS);
    int f = 1 << cfg->levels;
    if (cfg->image_h % f || cfg->image_w % f) {
        int lmax = 0;
        while (cfg->image_h % (2 << lmax) == 0 && cfg->image_w % (2 << lmax) == 0) lmax++;
        return glow_fail(GLOW_EINVAL,
                         "image %dx%d with %d levels: height and width must be divisible by "
                         "2^levels = %d (this size allows at most %d levels)",
                         cfg->image_h, cfg->image_w, cfg->levels, f, lmax);
    }
    if (cfg->depth < 1 || cfg->depth > GLOW_MAX_DEPTH)
        return glow_fail(GLOW_EINVAL, "depth %d: must be in 1..%d", cfg->depth, GLOW_MAX_DEPTH);
    if (cfg->width < 1 || cfg->width > GLOW_MAX_WIDTH)
        return glow_fail(GLOW_EINVAL, "width %d: must be in 1..%d", cfg->width, GLOW_MAX_WIDTH);
    if ((unsigned)cfg->learntop > 1 || (unsigned)cfg->ycond > 1)
        return glow_fail(GLOW_EINVAL, "learntop %d, ycond %d: each must be 0 or 1", cfg->learntop,
                         cfg->ycond);
    if ((unsigned)cfg->coupling > GLOW_AFFINE)
        return glow_fail(GLOW_EINVAL, "coupling %d: unknown", (int)cfg->coupling);
    if ((unsigned)cfg->affine_scale > GLOW_SCALE_TANH)
        return glow_fail(GLOW_EINVAL, "affine scale %d: unknown", (int)cfg->affine_scale);
    if ((unsigned)cfg->prior_logs > GLOW_PRIOR_TANH)
        return glow_fail(GLOW_EINVAL, "prior log-std kind %d: unknown", (int)cfg->prior_logs);
    if ((unsigned)cfg->permutation > GLOW_INVCONV_LU)
        return glow_fail(GLOW_EINVAL, "permutation %d: unknown", (int)cfg->permutation);
    if (cfg->n_bits < 1 || cfg->n_bits > 8)
        return glow_fail(GLOW_EINVAL, "n_bits %d: must be in 1..8", cfg->n_bits);
    if (cfg->n_classes < 0 || cfg->n_classes > GLOW_MAX_CLASSES)
        return glow_fail(GLOW_EINVAL, "n_classes %d: must be in 0..%d", cfg->n_classes,
                         GLOW_MAX_CLASSES);
    if (cfg->ycond && cfg->n_classes < 1)
        return glow_fail(GLOW_EINVAL, "a class-conditional prior needs n_classes >= 1");
    if (!(cfg->weight_y >= 0))
        return glow_fail(GLOW_EINVAL, "weight_y %g: must be >= 0", cfg->weight_y);
    if (cfg->weight_y > 0 && cfg->n_classes < 1)
        return glow_fail(GLOW_EINVAL, "a class loss (weight_y > 0) needs n_classes >= 1");
    /* Every squeeze gives 4C channels and every split keeps half, so channel counts stay
     * even; the check guards the invariant the couplings and splits rely on. */
    for (int i = 0, c = 4 * cfg->image_c; i < cfg->levels; i++, c *= 2)
        if (c % 2) return glow_fail(GLOW_EINVAL, "level %d has %d channels: must be even", i, c);
    return GLOW_OK;
}

/* ---- the parameter table --------------------------------------------------------------- */

static size_t add_tensor(glow_model *m, int trainable, int ndim, const int *shape,
                         const char *fmt, ...) __attribute__((format(printf, 5, 6)));


/* A tensor appended to the table, at the next offset; returns the offset. While counting
 * (m->counting) only the counts move. A failed allocation is kept in m->table_failed. */
static size_t add_tensor(glow_model *m, int trainable, int ndim, const int *shape,
                         const char *fmt, ...) {
    size_t size = 1, offset = m->n_params;
    for (int i = 0; i < ndim; i++) size *= shape[i];
    if (m->counting || m->table_failed) {
        m->n_tensors++;
        m->n_params += size;
        return offset;
    }
    if (m->n_tensors == m->cap_tensors) {
        int cap = m->cap_tensors ? 2 * m->cap_tensors : 64;
        glow_tensor_info *t = realloc(m->tensors, sizeof *t * cap);
        if (!t) {
            m->table_failed = 1;
            return offset;
        }
        m->tensors = t;
        m->cap_tensors = cap;
    }
    glow_tensor_info *t = &m->tensors[m->n_tensors++];
    memset(t, 0, sizeof *t);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(t->name, sizeof t->name, fmt, ap);
    va_end(ap);
    t->ndim = ndim;
    for (int i = 0; i < ndim; i++) t->shape[i] = shape[i];
    t->size = size;
    t->offset = offset;
    t->trainable = trainable;
    m->n_params += size;
    return offset;
}

#define SHAPE(...) (int[]){__VA_ARGS__}
#define NDIM(...) (int)(sizeof((int[]){__VA_ARGS__}) / sizeof(int))
#define TENSOR(m, trainable, name_fmt, ...)                                              \
    add_tensor(m, trainable, NDIM(__VA_ARGS__), SHAPE(__VA_ARGS__), "%s", name_fmt)

/* The parameter table, and every step's offsets into it (not while counting: lv->steps is
 * then NULL). */
static void build_table(glow_model *m) {
    const glow_config *cfg = &m->cfg;
    char p[64], n[96];
    for (int i = 0; i < m->n_levels; i++) {
        level *lv = &m->levels[i];
        int c = lv->c, half = c / 2, width = cfg->width;
        int cout = coupling_nn_out(cfg->coupling, c);
        for (int k = 0; k < cfg->depth; k++) {
            step_offsets unused, *s = lv->steps ? &lv->steps[k] : &unused;
            snprintf(p, sizeof p, "level%d.step%d", i, k);
#define T(trainable, suffix, ...) (snprintf(n, sizeof n, "%s.%s", p, suffix), TENSOR(m, trainable, n, __VA_ARGS__))
            s->an_b = T(1, "actnorm.bias", c);
            s->an_s = T(1, "actnorm.logs", c);
            switch (cfg->permutation) {
            case GLOW_REVERSE: break;
            case GLOW_SHUFFLE: s->perm = T(0, "shuffle.perm", c); break;
            case GLOW_INVCONV: s->w = T(1, "invconv.weight", c, c); break;
            case GLOW_INVCONV_LU:
                s->lu_l = T(1, "invconv.lower", c, c);
                s->lu_u = T(1, "invconv.upper", c, c);
                s->lu_logs = T(1, "invconv.log_s", c);
                s->lu_sign = T(0, "invconv.sign", c);
                s->perm = T(0, "invconv.perm", c);
                break;
            }
            s->w1 = T(1, "coupling.conv1.weight", width, 3, 3, half);
            s->an1_b = T(1, "coupling.actnorm1.bias", width);
            s->an1_s = T(1, "coupling.actnorm1.logs", width);
            s->w2 = T(1, "coupling.conv2.weight", width, width);
            s->an2_b = T(1, "coupling.actnorm2.bias", width);
            s->an2_s = T(1, "coupling.actnorm2.logs", width);
            s->w3 = T(1, "coupling.conv3.weight", cout, 3, 3, width);
            s->b3 = T(1, "coupling.conv3.bias", cout);
            s->logs3 = T(1, "coupling.conv3.logs", cout);
#undef T
        }
        if (i < m->n_levels - 1) {
            snprintf(n, sizeof n, "level%d.prior.weight", i);
            lv->prior_w = TENSOR(m, 1, n, c, 3, 3, half);
            snprintf(n, sizeof n, "level%d.prior.bias", i);
            lv->prior_b = TENSOR(m, 1, n, c);
            snprintf(n, sizeof n, "level%d.prior.logs", i);
            lv->prior_logs = TENSOR(m, 1, n, c);
        }
    }
    level *top = &m->levels[m->n_levels - 1];
    m->top_bias = m->top_ycond = m->cls_w = m->cls_b = SIZE_MAX;
    if (cfg->learntop) m->top_bias = TENSOR(m, 1, "top.prior.bias", top->h, top->w, 2 * top->c);
    if (cfg->ycond) m->top_ycond = TENSOR(m, 1, "top.ycond.weight", cfg->n_classes, 2 * top->c);
    if (cfg->weight_y > 0) {
        m->cls_w = TENSOR(m, 1, "top.classifier.weight", top->c, cfg->n_classes);
        m->cls_b = TENSOR(m, 1, "top.classifier.bias", cfg->n_classes);
    }
}

/* Initial values: hidden convolutions ~ N(0, 0.05); actnorms, output convolutions and
 * priors zero (actnorms are then set from data); 1x1 convolutions random rotations. */
static int init_params(glow_model *m) {
    const glow_config *cfg = &m->cfg;
    real *w = m->params;
    memset(w, 0, sizeof(real) * m->n_params);
    for (int i = 0; i < m->n_levels; i++) {
        level *lv = &m->levels[i];
        int c = lv->c;
        for (int k = 0; k < cfg->depth; k++) {
            step_offsets *s = &lv->steps[k];
            uint64_t key = glow_rng_key(cfg->seed, 0x696e6974 /* "init" */, i, k);
            size_t n1 = (size_t)cfg->width * 9 * (c / 2), n2 = (size_t)cfg->width * cfg->width;
            for (size_t j = 0; j < n1; j++) w[s->w1 + j] = (real)(0.05 * glow_rng_normal(key, j));
            for (size_t j = 0; j < n2; j++)
                w[s->w2 + j] = (real)(0.05 * glow_rng_normal(key, n1 + j));
            uint64_t step_seed = glow_rng_key(cfg->seed, 0x7065726d /* "perm" */, i, k);
            if (cfg->permutation == GLOW_SHUFFLE) {
                int *perm = malloc(sizeof(int) * c); /* c can be large: not on the stack */
                if (!perm) return glow_fail(GLOW_ENOMEM, "out of memory");
                for (int j = 0; j < c; j++) perm[j] = j;
                for (int j = c - 1; j > 0; j--) { /* Fisher-Yates */
                    int r = (int)(glow_rng_uniform(step_seed, j) * (j + 1));
                    int t = perm[j]; perm[j] = perm[r]; perm[r] = t;
                }
                for (int j = 0; j < c; j++) w[s->perm + j] = (real)perm[j];
                free(perm);
            } else if (cfg->permutation == GLOW_INVCONV) {
                int rc = random_rotation(w + s->w, c, step_seed);
                if (rc != GLOW_OK) return rc;
            } else if (cfg->permutation == GLOW_INVCONV_LU) {
                real *rot = malloc(sizeof(real) * c * c);
                int *perm = malloc(sizeof(int) * c);
                int rc = rot && perm ? GLOW_OK : glow_fail(GLOW_ENOMEM, "out of memory");
                if (rc == GLOW_OK) rc = random_rotation(rot, c, step_seed);
                if (rc == GLOW_OK) {
                    rc = invconv_lu_factor(w + s->lu_l, w + s->lu_u, w + s->lu_logs,
                                           w + s->lu_sign, perm, rot, c);
                }
                if (rc == GLOW_OK)
                    for (int j = 0; j < c; j++) w[s->perm + j] = (real)perm[j];
                free(rot);
                free(perm);
                if (rc != GLOW_OK) return rc;
            }
        }
    }
    return GLOW_OK;
}

/* The levels' shapes; their steps' offsets unless counting. */
static int lay_out_levels(glow_model *m) {
    const glow_config *cfg = &m->cfg;
    m->n_levels = cfg->levels;
    if (!(m->levels = calloc(cfg->levels, sizeof(level)))) return GLOW_ENOMEM;
    int h = cfg->image_h, w = cfg->image_w, c = cfg->image_c;
    size_t offset = 0;
    for (int i = 0; i < cfg->levels; i++) {
        h /= 2, w /= 2, c *= 4;
        level *lv = &m->levels[i];
        lv->h = h, lv->w = w, lv->c = c;
        lv->z_offset = offset;
        lv->z_size = (size_t)h * w * (i < cfg->levels - 1 ? c / 2 : c);
        offset += lv->z_size;
        if (!m->counting && !(lv->steps = calloc(cfg->depth, sizeof(step_offsets))))
            return GLOW_ENOMEM;
        c /= 2; /* the half that continues */
    }
    m->dim = (size_t)cfg->image_h * cfg->image_w * cfg->image_c;
    return GLOW_OK;
}

int model_count_params(const glow_config *cfg, size_t *n_params, int *n_tensors) {
    if (glow_config_check(cfg) != GLOW_OK) return GLOW_EINVAL;
    glow_model m = {.cfg = *cfg, .counting = 1};
    int rc = lay_out_levels(&m);
    if (rc == GLOW_OK) build_table(&m);
    free(m.levels);
    if (rc != GLOW_OK) return glow_fail(GLOW_ENOMEM, "out of memory");
    *n_params = m.n_params;
    *n_tensors = m.n_tensors;
    return GLOW_OK;
}

glow_model *model_create(const glow_config *cfg, int init) {
    if (glow_config_check(cfg) != GLOW_OK) return NULL;
    glow_model *m = calloc(1, sizeof *m);
    if (!m) goto oom;
    m->cfg = *cfg;
    if (lay_out_levels(m) != GLOW_OK) goto oom;
    build_table(m);
    if (m->table_failed || m->n_tensors == 0) goto oom;
    if (!(m->params = malloc(sizeof(real) * m->n_params))) goto oom;
    if (init && init_params(m) != GLOW_OK) {
        glow_model_free(m);
        return NULL;
    }
    return m;
oom:
    glow_model_free(m);
    glow_fail(GLOW_ENOMEM, "out of memory creating the model");
    return NULL;
}

glow_model *glow_model_create(const glow_config *cfg) { return model_create(cfg, 1); }

void glow_model_free(glow_model *m) {
    if (!m) return;
    if (m->levels)
        for (int i = 0; i < m->n_levels; i++) free(m->levels[i].steps);
    free(m->levels);
    free(m->tensors);
    free(m->params);
    free(m);
}

const glow_config *glow_model_config(const glow_model *m) { return &m->cfg; }
size_t glow_model_dim(const glow_model *m) { return m->dim; }
size_t glow_model_n_params(const glow_model *m) { return m->n_params; }
glow_real *glow_model_params(glow_model *m) { return m->params; }
int glow_model_n_tensors(const glow_model *m) { return m->n_tensors; }
const glow_tensor_info *glow_model_tensor(const glow_model *m, int i) {
    return i >= 0 && i < m->n_tensors ? &m->tensors[i] : NULL;
}
int glow_model_find_tensor(const glow_model *m, const char *name) {
    for (int i = 0; i < m->n_tensors; i++)
        if (!strcmp(m->tensors[i].name, name)) return i;
    return -1;
}
size_t glow_model_n_trainable(const glow_model *m) {
    size_t n = 0;
    for (int i = 0; i < m->n_tensors; i++)
        if (m->tensors[i].trainable) n += m->tensors[i].size;
    return n;
}

int glow_model_check_fixed(const glow_model *m) {
    for (int i = 0; i < m->n_tensors; i++) {
        const glow_tensor_info *t = &m->tensors[i];
        size_t n = t->size;
        if (t->trainable || !strstr(t->name, ".perm")) continue;
        char *seen = calloc(n, 1);
        if (!seen) return glow_fail(GLOW_ENOMEM, "out of memory");
        int ok = 1;
        for (size_t j = 0; j < n && ok; j++) {
            double v = m->params[t->offset + j];
            long k = lrint(v);
            ok = fabs(v - k) < 1e-3 && k >= 0 && (size_t)k < n && !seen[k];
            if (ok) seen[k] = 1;
        }
        free(seen);
        if (!ok) return glow_fail(GLOW_EFORMAT, "tensor %s is not a permutation of 0..%zu", t->name, n - 1);
    }
    return GLOW_OK;
}

uint32_t glow_model_fingerprint(const glow_model *m) {
    uLong crc = crc32(0L, Z_NULL, 0);
    const glow_config *cfg = glow_model_config(m);
    int dims[] = {cfg->image_h, cfg->image_w, cfg->image_c, cfg->levels, cfg->depth, cfg->width,
                  (int)cfg->coupling, (int)cfg->permutation, cfg->n_bits};
    crc = crc32(crc, (const Bytef *)dims, sizeof dims);
    const real *p = m->params;
    for (size_t i = 0; i < m->n_params; i++) {
        float v = (float)p[i]; /* the same fingerprint from the float and double builds */
        crc = crc32(crc, (const Bytef *)&v, sizeof v);
    }
    return (uint32_t)crc;
}
