/* trainer.c: the training loop of glow.h's trainer, and glow_evaluate. The loop's state
 * beyond the checkpoint (the log interval's sums, the clocks) only feeds the events, so a
 * resumed run takes the same steps as one that never stopped. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include "model.h"

int glow_evaluate(glow_ctx *ctx, const glow_model *m, const glow_dataset *d, int count,
                  int batch, uint64_t seed, double *bpd) {
    if (count < 0 || count > d->n)
        return glow_fail(GLOW_EINVAL, "evaluating %d images of a data set of %d", count, d->n);
    if (batch < 1) return glow_fail(GLOW_EINVAL, "batch size %d: must be >= 1", batch);
    int conditional = m->cfg.ycond || m->cfg.weight_y > 0;
    if (conditional && !d->labels)
        return glow_fail(GLOW_EINVAL, "this model is class-conditional: the data set has no labels");
    size_t dim = m->dim;
    /* With many processes, each takes a contiguous share and the shares are summed. */
    const glow_comm *comm = glow_ctx_comm(ctx);
    int first = comm ? (int)((int64_t)count * comm->rank / comm->size) : 0;
    int end = comm ? (int)((int64_t)count * (comm->rank + 1) / comm->size) : count;
    int per = end - first < batch ? (end - first > 0 ? end - first : 1) : batch;
    real *x = malloc(sizeof(real) * per * dim);
    int rc = x ? GLOW_OK : glow_fail(GLOW_ENOMEM, "out of memory");
    for (int start = first; start < end && rc == GLOW_OK; start += per) {
        int n = end - start < per ? end - start : per;
        /* The noise of image i depends only on (seed, i): the same for any batch size. */
        for (int b = 0; b < n; b++)
            glow_preprocess(x + b * dim, d->pixels + (size_t)(start + b) * dim, 1, dim,
                            m->cfg.n_bits, seed, (uint64_t)(start + b));
        rc = glow_model_log_prob(ctx, m, x, conditional ? d->labels + start : NULL, n, NULL,
                                 bpd + start);
    }
    free(x);
    if (comm) {
        double failed = rc != GLOW_OK;
        comm->allreduce(&failed, 1, 0, GLOW_REDUCE_MAX, comm->user);
        if (rc == GLOW_OK && failed)
            rc = glow_fail(GLOW_EIO, "evaluating: another process failed (its message says why)");
        if (rc != GLOW_OK) return rc;
        for (int i = 0; i < count; i++)
            if (i < first || i >= end) bpd[i] = 0;
        comm->allreduce(bpd, (size_t)count, 0, GLOW_REDUCE_SUM, comm->user);
    }
    return rc;
}

void glow_train_options_default(glow_train_options *o) {
    memset(o, 0, sizeof *o);
    o->batch = 64;
    o->init_batch = 256;
    o->steps = 10000;
    glow_optim_config_default(&o->optim);
    o->optim.warmup = 200;
    /* Healthy steps here have gradient norms of 50-160; a one-hour run without a clip
     * diverged after a step with norm 8e8 (affine scales collapsing). */
    o->optim.grad_clip = 100;
    o->max_skips = 20;
    o->log_every = 10;
    o->eval_every = 1000;
    o->eval_n = 2000;
    o->sample_every = 1000;
    o->n_samples = 64;
    o->temperature = 0.7;
    o->save_every = 500;
    o->save_seconds = 600;
}

struct glow_trainer {
    glow_train_options o;
    char checkpoint[4096], best_path[4200];
    const glow_dataset *train, *test;
    const glow_comm *comm;    /* NULL: one process */
    int rank, size, share;    /* this process of size; its images of every batch */
    glow_model *m;
    glow_ctx *ctx;
    glow_optimizer opt;
    glow_train_state st;
    int batches_per_epoch, conditional, eval_n, skips_in_row;
    uint8_t *px, *sample_px;  /* a batch's pixels; the samples' */
    int *labels, *order;      /* a batch's labels; this epoch's order */
    real *x, *samples;        /* a preprocessed batch; samples (n_samples, D) */
    double *bpd;              /* (test images) */
    double best_test;
    /* The log interval: */
    int n_interval, redone_interval;
    int64_t redone_total, start_step;
    double bpd_sum, max_step_bpd, max_drift, grad_norm;
    double step_seconds, comm_seconds; /* the steps' time, and their allreduces' */
    glow_level_stats level_interval[GLOW_MAX_LEVELS];
    /* Clocks, in seconds: */
    double t_start, t_interval, t_save, train_seconds;
    char error[512];
};

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* Keep the failure's message in the trainer and pass its status on. */
static int failed(glow_trainer *t, int rc) {
    if (rc != GLOW_OK) snprintf(t->error, sizeof t->error, "%s", glow_last_error());
    return rc;
}

static void reduce(const glow_trainer *t, void *data, size_t n, int is_real, glow_reduce_op op) {
    if (t->comm) t->comm->allreduce(data, n, is_real, op, t->comm->user);
}

/* With many processes, a failure on one must stop all of them at the same point (the
 * others would wait for it in the next allreduce): every process passes its status here,
 * and all fail if any did. */
static int agree(glow_trainer *t, int rc) {
    if (!t->comm) return rc;
    double who = rc != GLOW_OK ? t->rank + 1 : 0;
    reduce(t, &who, 1, 0, GLOW_REDUCE_MAX);
    if (rc == GLOW_OK && who > 0)
        rc = glow_fail(GLOW_EIO, "process %d of %d failed (its message says why)", (int)who - 1,
                       t->size);
    return rc;
}

const char *glow_trainer_error(const glow_trainer *t) { return t->error; }

void glow_trainer_free(glow_trainer *t) {
    if (!t) return;
    glow_optimizer_free(&t->opt);
    glow_model_free(t->m);
    glow_ctx_free(t->ctx);
    free(t->px), free(t->sample_px), free(t->labels), free(t->order), free(t->x);
    free(t->samples), free(t->bpd);
    free(t);
}

/* What both ways of starting share once the model and the counters are there: the context,
 * the buffers, the checks of the data against the model. */
static int setup(glow_trainer *t, const glow_dataset *train, const glow_dataset *test,
                 const glow_train_options *o) {
    const glow_config *cfg = &t->m->cfg;
    t->train = train;
    t->test = test ? test : train;
    const glow_dataset *sets[2] = {train, t->test};
    for (int i = 0; i < 2; i++) {
        const glow_dataset *d = sets[i];
        if (d->h != cfg->image_h || d->w != cfg->image_w || d->c != cfg->image_c)
            return glow_fail(GLOW_EINVAL, "the %s images are %dx%dx%d, but the model takes "
                             "%dx%dx%d", i ? "test" : "training", d->h, d->w, d->c, cfg->image_h,
                             cfg->image_w, cfg->image_c);
    }
    t->conditional = cfg->ycond || cfg->weight_y > 0;
    if (t->conditional && (!train->labels || !t->test->labels))
        return glow_fail(GLOW_EINVAL, "this model is class-conditional: the data needs labels");
    if (t->st.batch > train->n)
        return glow_fail(GLOW_EINVAL, "%d training images, fewer than one batch of %d", train->n,
                         t->st.batch);
    if (t->st.batch % t->size)
        return glow_fail(GLOW_EINVAL, "batch %d does not divide among %d processes: give a "
                         "multiple of %d", t->st.batch, t->size, t->size);
    t->share = t->st.batch / t->size;
    if (!(t->ctx = glow_ctx_create(o->threads))) return GLOW_ENOMEM;
    glow_ctx_set_comm(t->ctx, t->comm);
    int rc = glow_ctx_set_matmul(t->ctx, o->matmul);
    if (rc != GLOW_OK) return rc;
    glow_ctx_set_activation_memory(t->ctx, o->activation_memory);
    size_t d = t->m->dim;
    int most = t->st.batch > o->init_batch ? t->st.batch : o->init_batch;
    int n_samples = o->n_samples > 0 ? o->n_samples : 1;
    t->px = malloc((size_t)most * d);
    t->labels = malloc(sizeof(int) * most);
    t->x = malloc(sizeof(real) * most * d);
    t->order = malloc(sizeof(int) * train->n);
    t->bpd = malloc(sizeof(double) * t->test->n);
    t->samples = malloc(sizeof(real) * n_samples * d);
    t->sample_px = malloc((size_t)n_samples * d);
    if (!t->px || !t->labels || !t->x || !t->order || !t->bpd || !t->samples || !t->sample_px)
        return glow_fail(GLOW_ENOMEM, "out of memory for the training buffers");
    t->batches_per_epoch = train->n / t->st.batch; /* the last partial batch is dropped */
    t->eval_n = o->eval_n < t->test->n ? o->eval_n : t->test->n;
    t->best_test = INFINITY;
    t->start_step = t->st.step;
    t->t_start = t->t_interval = t->t_save = now();
    glow_dataset_shuffle_order(t->order, train->n, t->st.data_seed, (uint64_t)t->st.epoch);
    return GLOW_OK;
}

static glow_trainer *new_trainer(const glow_train_options *o, const char *checkpoint) {
    glow_trainer *t = calloc(1, sizeof *t);
    if (!t) {
        glow_fail(GLOW_ENOMEM, "out of memory");
        return NULL;
    }
    if (o) t->o = *o;
    else glow_train_options_default(&t->o);
    t->size = 1;
    if (t->o.comm && t->o.comm->size > 1) {
        t->comm = t->o.comm;
        t->rank = t->comm->rank, t->size = t->comm->size;
    }
    if (checkpoint && strlen(checkpoint) >= sizeof t->checkpoint) {
        free(t);
        glow_fail(GLOW_EINVAL, "checkpoint path too long");
        return NULL;
    }
    if (checkpoint) {
        strcpy(t->checkpoint, checkpoint);
        snprintf(t->best_path, sizeof t->best_path, "%s.best", checkpoint);
    }
    t->o.checkpoint = NULL; /* t->checkpoint holds it */
    return t;
}

static int check_options(const glow_train_options *o) {
    if (o->init_batch < 1 || o->log_every < 1 || o->max_skips < 1 || o->save_every < 1 ||
        o->steps < 0 || o->eval_every < 0 || o->eval_n < 1 || o->sample_every < 0 ||
        o->n_samples < 0 || !(o->temperature >= 0))
        return glow_fail(GLOW_EINVAL, "training options out of range (init_batch %d, log_every "
                         "%d, max_skips %d, save_every %d, steps %lld, eval_every %d, eval_n %d, "
                         "sample_every %d, n_samples %d, temperature %g)", o->init_batch,
                         o->log_every, o->max_skips, o->save_every, (long long)o->steps,
                         o->eval_every, o->eval_n, o->sample_every, o->n_samples, o->temperature);
    return GLOW_OK;
}

glow_trainer *glow_trainer_create(const glow_config *cfg, const glow_dataset *train,
                                  const glow_dataset *test, const glow_train_options *opts) {
    glow_trainer *t = new_trainer(opts, opts ? opts->checkpoint : NULL);
    if (!t) return NULL;
    const glow_train_options *o = &t->o;
    int rc = check_options(o);
    if (rc == GLOW_OK && o->batch < 1) rc = glow_fail(GLOW_EINVAL, "batch size %d: must be >= 1", o->batch);
    if (rc == GLOW_OK && t->checkpoint[0] && access(t->checkpoint, F_OK) == 0)
        rc = glow_fail(GLOW_EINVAL, "%s exists: a new run never overwrites a checkpoint "
                       "(resume it, or choose another)", t->checkpoint);
    glow_config c = *cfg;
    c.image_h = train->h, c.image_w = train->w, c.image_c = train->c;
    if (rc == GLOW_OK && (c.ycond || c.weight_y > 0)) {
        if (!train->labels) rc = glow_fail(GLOW_EINVAL, "a class-conditional model needs labels");
        else c.n_classes = train->n_classes;
    }
    if (rc == GLOW_OK && !(t->m = glow_model_create(&c))) rc = GLOW_EINVAL;
    t->st.data_seed = c.seed;
    t->st.batch = o->batch;
    if (rc == GLOW_OK) rc = setup(t, train, test, o);
    int n = o->init_batch < train->n ? o->init_batch : train->n;
    if (rc == GLOW_OK && n < t->size)
        rc = glow_fail(GLOW_EINVAL, "init batch %d: fewer images than the %d processes", n, t->size);
    rc = agree(t, rc);
    if (rc == GLOW_OK) { /* the data-dependent init on the first images of epoch 0's order */
        int first = (int)((int64_t)n * t->rank / t->size);
        int share = (int)((int64_t)n * (t->rank + 1) / t->size) - first;
        glow_dataset_gather(t->px, t->labels, train, t->order + first, share);
        preprocess_from(t->x, t->px, share, t->m->dim, c.n_bits, t->st.data_seed, UINT64_MAX,
                        (uint64_t)first);
        rc = glow_model_init(t->ctx, t->m, t->x, t->conditional ? t->labels : NULL, share);
    }
    if (rc == GLOW_OK) rc = glow_optimizer_init(&t->opt, &o->optim, t->m->n_params, t->m->params);
    if (rc == GLOW_OK && t->checkpoint[0]) rc = glow_trainer_save(t, NULL);
    rc = agree(t, rc);
    if (rc != GLOW_OK) {
        glow_trainer_free(t);
        return NULL;
    }
    return t;
}

glow_trainer *glow_trainer_resume(const char *checkpoint, const glow_dataset *train,
                                  const glow_dataset *test, const glow_train_options *opts) {
    glow_trainer *t = new_trainer(opts, opts && opts->checkpoint ? opts->checkpoint : checkpoint);
    if (!t) return NULL;
    const glow_train_options *o = &t->o;
    int rc = check_options(o);
    glow_train_state st;
    if (rc == GLOW_OK && !(t->m = glow_checkpoint_load(checkpoint, 0, &t->opt, &st))) rc = GLOW_EFORMAT;
    if (rc == GLOW_OK && (!t->opt.m || st.batch < 1 || st.step < 0 || st.epoch < 0 ||
                          st.batch_in_epoch < 0))
        rc = glow_fail(GLOW_EFORMAT, "%s has no usable training state: it cannot be resumed",
                       checkpoint);
    if (rc == GLOW_OK && o->batch > 0 && o->batch != st.batch)
        rc = glow_fail(GLOW_EINVAL, "%s was trained with batch %d: an exact resume needs the "
                       "same", checkpoint, st.batch);
    if (rc == GLOW_OK) {
        t->st = st;
        rc = setup(t, train, test, o);
    }
    rc = agree(t, rc);
    if (rc == GLOW_OK && t->comm) { /* every process must have read the same file */
        double v[4] = {glow_model_fingerprint(t->m), (double)st.step};
        v[2] = -v[0], v[3] = -v[1];
        reduce(t, v, 4, 0, GLOW_REDUCE_MAX);
        if (v[0] != -v[2] || v[1] != -v[3])
            rc = glow_fail(GLOW_EINVAL, "the processes read different versions of %s: give "
                           "them all the same file (a shared filesystem)", checkpoint);
    }
    if (rc != GLOW_OK) {
        glow_trainer_free(t);
        return NULL;
    }
    return t;
}

glow_model *glow_trainer_model(glow_trainer *t) { return t->m; }
void glow_trainer_set_steps(glow_trainer *t, int64_t steps) { t->o.steps = steps < 0 ? 0 : steps; }
glow_optimizer *glow_trainer_optimizer(glow_trainer *t) { return &t->opt; }
const glow_train_state *glow_trainer_state(const glow_trainer *t) { return &t->st; }
glow_ctx *glow_trainer_ctx(glow_trainer *t) { return t->ctx; }

int glow_trainer_save(glow_trainer *t, const char *path) {
    if (!path) path = t->checkpoint;
    if (!path[0]) return failed(t, glow_fail(GLOW_EINVAL, "no checkpoint path to save to"));
    if (t->rank != 0) return GLOW_OK; /* rank 0 writes for all: they hold the same run */
    int rc = glow_checkpoint_save(path, t->m, &t->opt, &t->st);
    if (rc != GLOW_OK) return failed(t, rc);
    if (t->o.callback) {
        glow_train_event e = {.kind = GLOW_EVENT_SAVE, .path = path};
        e.step = t->st.step, e.total = t->o.steps;
        t->o.callback(&e, t->o.user);
    }
    return GLOW_OK;
}

/* Evaluation and samples use the Polyak average: swapped in for them (no copy). */
static void swap_average(glow_trainer *t) {
    real *p = t->m->params;
    t->m->params = t->opt.avg;
    t->opt.avg = p;
}

int glow_trainer_evaluate(glow_trainer *t, int n, double *bpd) {
    if (n <= 0 || n > t->test->n) n = t->test->n;
    swap_average(t);
    int rc = glow_evaluate(t->ctx, t->m, t->test, n, t->st.batch, 0, t->bpd);
    swap_average(t);
    if (rc != GLOW_OK) return failed(t, rc);
    double s = 0;
    for (int i = 0; i < n; i++) s += t->bpd[i];
    *bpd = s / n;
    return GLOW_OK;
}

int glow_trainer_sample(glow_trainer *t, int n, double temperature, uint64_t seed,
                        uint8_t *pixels) {
    size_t d = t->m->dim;
    real *x = n <= (t->o.n_samples > 0 ? t->o.n_samples : 1) ? t->samples : malloc(sizeof(real) * n * d);
    if (!x) return failed(t, glow_fail(GLOW_ENOMEM, "out of memory"));
    swap_average(t);
    int rc = glow_model_sample(t->ctx, t->m, NULL, n, temperature, seed, x);
    swap_average(t);
    if (rc == GLOW_OK) glow_postprocess(pixels, x, n, d, t->m->cfg.n_bits);
    if (x != t->samples) free(x);
    return failed(t, rc);
}

static double epoch_of(const glow_trainer *t) {
    return t->st.epoch + (double)t->st.batch_in_epoch / t->batches_per_epoch;
}

static glow_train_event event(const glow_trainer *t, glow_event_kind kind) {
    glow_train_event e = {.kind = kind};
    e.step = t->st.step, e.total = t->o.steps;
    e.epoch = epoch_of(t);
    e.seconds = now() - t->t_start;
    e.skipped = t->st.skipped;
    e.redone_total = t->redone_total;
    return e;
}

static void emit(glow_trainer *t, const glow_train_event *e) {
    if (t->o.callback) t->o.callback(e, t->o.user);
}

/* Fold one step's level stats into the interval's: extremes of the extremes, sums of the
 * terms (divided by the step count when reported). A NaN, once in, stays. */
static void fold_min(double *v, double x) { if (!isnan(*v) && !(x >= *v)) *v = x; }
static void fold_max(double *v, double x) { if (!isnan(*v) && !(x <= *v)) *v = x; }
static void fold_levels(glow_level_stats *iv, const glow_level_stats *st, int levels, int first) {
    for (int i = 0; i < levels; i++) {
        if (first) { iv[i] = st[i]; continue; }
        fold_min(&iv[i].min_coupling_logs, st[i].min_coupling_logs);
        fold_max(&iv[i].max_coupling_shift, st[i].max_coupling_shift);
        fold_min(&iv[i].min_actnorm_logs, st[i].min_actnorm_logs);
        fold_min(&iv[i].min_invconv_logs, st[i].min_invconv_logs);
        fold_min(&iv[i].min_prior_logs, st[i].min_prior_logs);
        fold_max(&iv[i].max_abs_z, st[i].max_abs_z);
        fold_max(&iv[i].max_z_score, st[i].max_z_score);
        iv[i].logdet_bpd += st[i].logdet_bpd;
        iv[i].prior_bpd += st[i].prior_bpd;
    }
}

static void log_interval(glow_trainer *t, int kept_steps) {
    glow_train_event e = event(t, GLOW_EVENT_LOG);
    int n = t->n_interval, levels = t->m->cfg.levels;
    e.n_steps = n;
    e.train_bpd = t->bpd_sum / n;
    e.max_step_bpd = t->max_step_bpd;
    e.img_per_s = n * t->st.batch / (now() - t->t_interval);
    e.step_seconds = t->train_seconds / (t->st.step - t->start_step);
    e.grad_norm = t->grad_norm;
    e.lr = glow_optimizer_lr(&t->opt);
    e.max_rebuild_error = t->max_drift;
    e.redone = t->redone_interval;
    e.kept_steps = kept_steps;
    e.comm_share = t->step_seconds > 0 ? t->comm_seconds / t->step_seconds : 0;
    memcpy(e.level, t->level_interval, sizeof(glow_level_stats) * levels);
    for (int i = 0; i < levels; i++) e.level[i].logdet_bpd /= n, e.level[i].prior_bpd /= n;
    emit(t, &e);
    t->bpd_sum = 0, t->n_interval = 0, t->redone_interval = 0;
    t->step_seconds = t->comm_seconds = 0;
    t->t_interval = now();
}

static int evaluate_now(glow_trainer *t) {
    double bpd;
    int rc = glow_trainer_evaluate(t, t->eval_n, &bpd);
    if (rc != GLOW_OK) return rc;
    glow_train_event e = event(t, GLOW_EVENT_EVAL);
    e.test_bpd = bpd;
    e.test_n = t->eval_n;
    /* Keep the best model too: a run that diverges later must not lose it. */
    if (bpd < t->best_test) {
        t->best_test = bpd;
        e.best = 1;
        if (t->checkpoint[0] && t->rank == 0)
            rc = glow_checkpoint_save(t->best_path, t->m, &t->opt, &t->st);
        if ((rc = agree(t, rc)) != GLOW_OK) return failed(t, rc);
    }
    emit(t, &e);
    t->t_interval = now();
    return GLOW_OK;
}

static int sample_now(glow_trainer *t) {
    int n = t->o.n_samples;
    if (n < 1 || t->rank != 0) return GLOW_OK;
    int rc = glow_trainer_sample(t, n, t->o.temperature, 0, t->sample_px);
    if (rc != GLOW_OK) return rc;
    glow_train_event e = event(t, GLOW_EVENT_SAMPLE);
    e.samples = t->sample_px;
    e.n_samples = n;
    emit(t, &e);
    t->t_interval = now();
    return GLOW_OK;
}

/* One step's figures combined over the processes: the means averaged, the extremes
 * extreme, and the flags (whether any process failed or must skip: then all do) the
 * largest. Mins go through the MAX reduction negated. */
enum { STEP_FATAL, STEP_SKIP, STEP_SAVE_DUE, STEP_REDONE, STEP_DRIFT, STEP_MAXES };
static void combine_stats(glow_trainer *t, glow_step_stats *ss, double *flags, int levels) {
    if (!t->comm) return;
    double sum[3 + 2 * GLOW_MAX_LEVELS], *mx = flags;
    int ns = 0, nm = STEP_MAXES;
    sum[ns++] = ss->loss, sum[ns++] = ss->bpd, sum[ns++] = ss->class_bits;
    mx[STEP_REDONE] = ss->recomputed, mx[STEP_DRIFT] = ss->max_rebuild_error;
    for (int i = 0; i < levels; i++) {
        glow_level_stats *l = &ss->level[i];
        sum[ns++] = l->logdet_bpd, sum[ns++] = l->prior_bpd;
        mx[nm++] = -l->min_coupling_logs, mx[nm++] = l->max_coupling_shift;
        mx[nm++] = -l->min_actnorm_logs, mx[nm++] = -l->min_invconv_logs;
        mx[nm++] = -l->min_prior_logs, mx[nm++] = l->max_abs_z, mx[nm++] = l->max_z_score;
    }
    reduce(t, sum, (size_t)ns, 0, GLOW_REDUCE_SUM);
    reduce(t, mx, (size_t)nm, 0, GLOW_REDUCE_MAX);
    ns = 0, nm = STEP_MAXES;
    ss->loss = sum[ns++] / t->size, ss->bpd = sum[ns++] / t->size;
    ss->class_bits = sum[ns++] / t->size;
    ss->recomputed = mx[STEP_REDONE] > 0, ss->max_rebuild_error = mx[STEP_DRIFT];
    for (int i = 0; i < levels; i++) {
        glow_level_stats *l = &ss->level[i];
        l->logdet_bpd = sum[ns++] / t->size, l->prior_bpd = sum[ns++] / t->size;
        l->min_coupling_logs = -mx[nm++], l->max_coupling_shift = mx[nm++];
        l->min_actnorm_logs = -mx[nm++], l->min_invconv_logs = -mx[nm++];
        l->min_prior_logs = -mx[nm++], l->max_abs_z = mx[nm++], l->max_z_score = mx[nm++];
    }
}

int glow_trainer_step(glow_trainer *t) {
    glow_train_state *st = &t->st;
    const glow_train_options *o = &t->o;
    const glow_config *cfg = &t->m->cfg;
    if (st->step >= o->steps) return GLOW_DONE;
    if (st->batch_in_epoch >= t->batches_per_epoch) {
        st->epoch++;
        st->batch_in_epoch = 0;
        glow_dataset_shuffle_order(t->order, t->train->n, st->data_seed, (uint64_t)st->epoch);
    }
    double t0 = now();
    /* This process's share of the batch, with the noise one process would give it. */
    int batch = st->batch, share = t->share, first = t->rank * share;
    glow_dataset_gather(t->px, t->labels, t->train,
                        t->order + st->batch_in_epoch * batch + first, share);
    preprocess_from(t->x, t->px, share, t->m->dim, cfg->n_bits, st->data_seed,
                    (uint64_t)st->step, (uint64_t)first);
    st->batch_in_epoch++;
    /* A step whose loss or gradient is not finite (or whose 1x1 convolution became
     * singular) never reaches the weights: it is skipped and counted. */
    glow_step_stats ss;
    double gnorm = NAN;
    char why[512] = "";
    int rc = glow_model_train_step(t->ctx, t->m, t->x, t->conditional ? t->labels : NULL, share,
                                   &ss, NULL);
    if (rc != GLOW_OK && rc != GLOW_ENOMEM)
        snprintf(why, sizeof why, "%s", glow_ctx_error(t->ctx));
    else if (rc == GLOW_OK && !isfinite(ss.loss))
        snprintf(why, sizeof why, "non-finite loss");
    /* Rank 0's clock decides the timed saves, for all. */
    double flags[STEP_MAXES + 7 * GLOW_MAX_LEVELS] = {
        [STEP_FATAL] = rc == GLOW_ENOMEM, [STEP_SKIP] = why[0] != 0,
        [STEP_SAVE_DUE] = t->rank == 0 && now() - t->t_save > o->save_seconds};
    if (rc != GLOW_OK) memset(&ss, 0, sizeof ss);
    double t_comm = now();
    combine_stats(t, &ss, flags, cfg->levels);
    if (flags[STEP_FATAL]) { /* not the step's numbers: the run cannot go on */
        st->batch_in_epoch--;
        return failed(t, agree(t, rc == GLOW_OK ? GLOW_ENOMEM : rc));
    }
    if (flags[STEP_SKIP] && !why[0])
        snprintf(why, sizeof why, "not finite on another process");
    if (!why[0] && t->comm) { /* the mean gradient over the processes */
        real *g = glow_ctx_grads(t->ctx);
        size_t n = glow_ctx_n_grads(t->ctx);
        reduce(t, g, n, 1, GLOW_REDUCE_SUM);
        real scale = (real)(1.0 / t->size);
        for (size_t i = 0; i < n; i++) g[i] *= scale;
    }
    t->comm_seconds += now() - t_comm;
    if (!why[0] &&
        glow_optimizer_step(&t->opt, t->m->params, glow_ctx_grads(t->ctx), &gnorm) != GLOW_OK)
        snprintf(why, sizeof why, "%s", glow_last_error());
    if (why[0]) {
        st->skipped++;
        t->skips_in_row++;
        glow_train_event e = event(t, GLOW_EVENT_SKIP);
        e.message = why;
        emit(t, &e);
        if (t->skips_in_row >= o->max_skips)
            return failed(t, glow_fail(GLOW_EDIVERGED, "%d non-finite steps in a row",
                                       t->skips_in_row));
        return GLOW_OK;
    }
    t->skips_in_row = 0;
    st->step++;
    t->train_seconds += now() - t0;
    t->step_seconds += now() - t0;
    t->bpd_sum += ss.bpd;
    t->grad_norm = gnorm;
    fold_levels(t->level_interval, ss.level, cfg->levels, t->n_interval == 0);
    if (t->n_interval == 0 || ss.bpd > t->max_step_bpd) t->max_step_bpd = ss.bpd;
    if (t->n_interval == 0 || !(ss.max_rebuild_error <= t->max_drift))
        t->max_drift = ss.max_rebuild_error;
    t->n_interval++;
    t->redone_interval += ss.recomputed;
    t->redone_total += ss.recomputed;

    int last = st->step == o->steps;
    if (st->step % o->log_every == 0 || last) log_interval(t, ss.kept_steps);
    if ((o->eval_every > 0 && st->step % o->eval_every == 0) || last)
        if ((rc = evaluate_now(t)) != GLOW_OK) return rc;
    if ((o->sample_every > 0 && st->step % o->sample_every == 0) || last)
        if ((rc = sample_now(t)) != GLOW_OK) return rc;
    if (t->checkpoint[0] && (st->step % o->save_every == 0 || flags[STEP_SAVE_DUE])) {
        if ((rc = agree(t, glow_trainer_save(t, NULL))) != GLOW_OK) return failed(t, rc);
        t->t_save = now();
    }
    return GLOW_OK;
}
