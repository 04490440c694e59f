/* test_context.c: compute contexts and the trainer. Contexts on one const model in several
 * threads at once give the bits that one context gives running the same work in turn; a
 * context used on models of two shapes keeps their results apart; the trainer resumes
 * exactly, reports its events, and refuses what it must. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "flow.h"
#include "test.h"

#define FMNIST "/usr/share/datasets/fashion-mnist"

enum { JOB_BATCH = 4, JOBS = 4 };

/* One thread's work on a shared model: encode, log-likelihood, samples, a training step's
 * gradients, each from its own inputs. */
typedef struct job {
    const glow_model *m;
    glow_real *x;            /* (JOB_BATCH, D), this job's */
    uint64_t seed;
    glow_real *z, *samples, *grads;
    double bpd[JOB_BATCH];
    int rc;
    char error[512];
} job;

static void run_job(job *j, glow_ctx *ctx) {
    glow_step_stats st;
    j->rc = glow_model_encode(ctx, j->m, j->x, NULL, JOB_BATCH, j->z, NULL);
    if (j->rc == GLOW_OK) j->rc = glow_model_log_prob(ctx, j->m, j->x, NULL, JOB_BATCH, NULL, j->bpd);
    if (j->rc == GLOW_OK)
        j->rc = glow_model_sample(ctx, j->m, NULL, JOB_BATCH, 0.8, j->seed, j->samples);
    if (j->rc == GLOW_OK) j->rc = glow_model_train_step(ctx, j->m, j->x, NULL, JOB_BATCH, &st, NULL);
    if (j->rc == GLOW_OK) memcpy(j->grads, glow_ctx_grads(ctx), sizeof(glow_real) * glow_model_n_params(j->m));
    else snprintf(j->error, sizeof j->error, "%s", glow_ctx_error(ctx));
}

/* The threads start together and do their work three times over, so that they overlap. */
static pthread_barrier_t start_line;

static void *job_thread(void *arg) {
    job *j = arg;
    glow_ctx *ctx = glow_ctx_create(1);
    pthread_barrier_wait(&start_line);
    if (!ctx) {
        j->rc = GLOW_ENOMEM;
        return NULL;
    }
    for (int r = 0; r < 3 && j->rc == GLOW_OK; r++) run_job(j, ctx);
    glow_ctx_free(ctx);
    return NULL;
}

static void job_alloc(job *j, const glow_model *m, int k) {
    size_t d = glow_model_dim(m), n = glow_model_n_params(m);
    memset(j, 0, sizeof *j);
    j->m = m;
    j->seed = 100 + k;
    j->x = malloc(sizeof(glow_real) * JOB_BATCH * d);
    j->z = malloc(sizeof(glow_real) * JOB_BATCH * d);
    j->samples = malloc(sizeof(glow_real) * JOB_BATCH * d);
    j->grads = malloc(sizeof(glow_real) * n);
    uint64_t key = glow_rng_key(9, 3, k, 0);
    for (size_t i = 0; i < JOB_BATCH * d; i++) j->x[i] = (glow_real)(glow_rng_uniform(key, i) - 0.5);
}

static void job_free(job *j) { free(j->x), free(j->z), free(j->samples), free(j->grads); }

static int same_results(const job *a, const job *b, size_t d, size_t n) {
    return !memcmp(a->z, b->z, sizeof(glow_real) * JOB_BATCH * d) &&
           !memcmp(a->bpd, b->bpd, sizeof a->bpd) &&
           !memcmp(a->samples, b->samples, sizeof(glow_real) * JOB_BATCH * d) &&
           !memcmp(a->grads, b->grads, sizeof(glow_real) * n);
}

/* 4 threads, a context each, one model: the same bits as one context doing the four jobs in
 * turn. A shared workspace or gradient buffer would mix them up. */
TEST(context_threads_share_one_model) {
    glow_config cfg;
    glow_config_default(&cfg);
    cfg.image_h = cfg.image_w = 16, cfg.image_c = 1, cfg.depth = 2, cfg.width = 16;
    glow_model *m = glow_model_create(&cfg);
    REQUIRE(m, "%s", glow_last_error());
    size_t d = glow_model_dim(m), n = glow_model_n_params(m);
    job ref[JOBS], par[JOBS];
    for (int k = 0; k < JOBS; k++) job_alloc(&ref[k], m, k), job_alloc(&par[k], m, k);
    glow_ctx *ctx = glow_ctx_create(1);
    REQUIRE(ctx, "%s", glow_last_error());
    REQUIRE_OK(glow_model_init(ctx, m, ref[0].x, NULL, JOB_BATCH));
    for (int k = 0; k < JOBS; k++) run_job(&ref[k], ctx);
    glow_ctx_free(ctx);
    pthread_t th[JOBS];
    pthread_barrier_init(&start_line, NULL, JOBS);
    for (int k = 0; k < JOBS; k++) REQUIRE(pthread_create(&th[k], NULL, job_thread, &par[k]) == 0, "pthread_create");
    for (int k = 0; k < JOBS; k++) pthread_join(th[k], NULL);
    pthread_barrier_destroy(&start_line);
    for (int k = 0; k < JOBS; k++) {
        CHECK(ref[k].rc == GLOW_OK && par[k].rc == GLOW_OK, "job %d failed: %s %s", k, ref[k].error,
              par[k].error);
        CHECK(same_results(&ref[k], &par[k], d, n), "job %d: the threads' results differ from "
              "the sequential ones", k);
    }
    /* The jobs differ from one another: a mix-up would show. */
    CHECK(!same_results(&ref[0], &ref[1], d, n), "jobs 0 and 1 gave the same results");
    for (int k = 0; k < JOBS; k++) job_free(&ref[k]), job_free(&par[k]);
    glow_model_free(m);
}

/* One context on two models of different shapes, in turn: each gets its own results (the
 * workspace is laid out again for the other shape), the same as on a fresh context. */
TEST(context_two_model_shapes) {
    glow_config a, b;
    glow_config_default(&a);
    a.image_h = a.image_w = 8, a.depth = 2, a.width = 8;
    b = a;
    b.image_h = b.image_w = 16, b.levels = 3, b.width = 12;
    glow_model *ma = glow_model_create(&a), *mb = glow_model_create(&b);
    REQUIRE(ma && mb, "%s", glow_last_error());
    glow_real xa[2 * 64], xb[2 * 256], za[2 * 64], zb[2 * 256], zb_fresh[2 * 256];
    for (int i = 0; i < 2 * 256; i++) xb[i] = (glow_real)(glow_rng_uniform(5, i) - 0.5);
    for (int i = 0; i < 2 * 64; i++) xa[i] = xb[i];
    glow_ctx *shared = glow_ctx_create(1), *fresh = glow_ctx_create(1);
    REQUIRE(shared && fresh, "%s", glow_last_error());
    REQUIRE_OK(glow_model_init(shared, ma, xa, NULL, 2));
    REQUIRE_OK(glow_model_init(shared, mb, xb, NULL, 2));
    REQUIRE_OK(glow_model_encode(shared, ma, xa, NULL, 2, za, NULL));
    REQUIRE_OK(glow_model_encode(shared, mb, xb, NULL, 2, zb, NULL));
    REQUIRE_OK(glow_model_encode(fresh, mb, xb, NULL, 2, zb_fresh, NULL));
    CHECK(!memcmp(zb, zb_fresh, sizeof zb), "the shared context's latents differ from a fresh one's");
    glow_real back[2 * 64];
    REQUIRE_OK(glow_model_decode(shared, ma, za, NULL, 2, back, NULL));
    CHECK(max_abs_diff(back, xa, 2 * 64) < 1e-5, "decode after the other shape is off by %g",
          max_abs_diff(back, xa, 2 * 64));
    /* A failure is the context's to report. */
    CHECK(glow_model_encode(shared, ma, xa, NULL, 0, za, NULL) == GLOW_EINVAL &&
          strstr(glow_ctx_error(shared), "batch"), "batch 0: %s", glow_ctx_error(shared));
    glow_ctx_free(shared), glow_ctx_free(fresh);
    glow_model_free(ma), glow_model_free(mb);
}

/* ---- the trainer ------------------------------------------------------------------------ */

typedef struct events {
    int logs, evals, samples, saves, skips;
    double first_bpd, last_bpd;
    int64_t last_step;
} events;

static void count_event(const glow_train_event *e, void *user) {
    events *ev = user;
    switch (e->kind) {
    case GLOW_EVENT_LOG:
        if (!ev->logs++) ev->first_bpd = e->train_bpd;
        ev->last_bpd = e->train_bpd;
        ev->last_step = e->step;
        break;
    case GLOW_EVENT_EVAL: ev->evals++; break;
    case GLOW_EVENT_SAMPLE: ev->samples++; break;
    case GLOW_EVENT_SAVE: ev->saves++; break;
    case GLOW_EVENT_SKIP: ev->skips++; break;
    }
}

static void small_run(glow_config *cfg, glow_train_options *o, events *ev) {
    glow_config_default(cfg);
    cfg->depth = 1, cfg->width = 8;
    glow_train_options_default(o);
    o->batch = 16, o->init_batch = 32, o->steps = 6, o->log_every = 2, o->eval_every = 3;
    o->eval_n = 32, o->sample_every = 0, o->n_samples = 4, o->threads = 2;
    o->callback = count_event, o->user = ev;
}

static int same_weights(glow_trainer *a, glow_trainer *b) {
    glow_model *ma = glow_trainer_model(a), *mb = glow_trainer_model(b);
    size_t n = glow_model_n_params(ma);
    return n == glow_model_n_params(mb) &&
           !memcmp(glow_model_params(ma), glow_model_params(mb), sizeof(glow_real) * n) &&
           !memcmp(glow_trainer_optimizer(a)->avg, glow_trainer_optimizer(b)->avg, sizeof(glow_real) * n);
}

/* Six steps in one go, or three, saved, and resumed for three more: the same weights and
 * average, bit for bit; the events come on their cadence. */
TEST(trainer_resume_is_exact) {
    if (IS_DOUBLE) return; /* the float build is the one users train with */
    glow_dataset ds;
    REQUIRE_OK(glow_dataset_load(&ds, FMNIST, "test", 0));
    glow_dataset train, test;
    REQUIRE_OK(glow_dataset_subset(&train, &ds, 0, 256));
    REQUIRE_OK(glow_dataset_subset(&test, &ds, 256, 64));
    glow_config cfg;
    glow_train_options o;
    events e1 = {0}, e2 = {0};
    small_run(&cfg, &o, &e1);
    glow_trainer *whole = glow_trainer_create(&cfg, &train, &test, &o);
    REQUIRE(whole, "%s", glow_last_error());
    int rc;
    while ((rc = glow_trainer_step(whole)) == GLOW_OK) {}
    CHECK(rc == GLOW_DONE, "step: %d (%s)", rc, glow_trainer_error(whole));
    CHECK(glow_trainer_state(whole)->step == 6, "steps %lld", (long long)glow_trainer_state(whole)->step);
    CHECK(e1.logs == 3 && e1.evals == 2 && e1.samples == 1 && e1.saves == 0 && e1.last_step == 6,
          "events: %d logs, %d evals, %d samples, %d saves", e1.logs, e1.evals, e1.samples, e1.saves);
    CHECK(e1.last_bpd < e1.first_bpd, "bits/dim %g -> %g", e1.first_bpd, e1.last_bpd);

    char path[512];
    snprintf(path, sizeof path, "%s/trainer.glow", test_tmpdir());
    o.user = &e2, o.checkpoint = path, o.steps = 3;
    glow_trainer *part = glow_trainer_create(&cfg, &train, &test, &o);
    REQUIRE(part, "%s", glow_last_error());
    CHECK(access(path, F_OK) == 0 && e2.saves == 1, "the first checkpoint: %d saves", e2.saves);
    while (glow_trainer_step(part) == GLOW_OK) {}
    REQUIRE_OK(glow_trainer_save(part, NULL));
    glow_trainer_free(part);
    /* A new run never overwrites a checkpoint. */
    CHECK(!glow_trainer_create(&cfg, &train, &test, &o) && strstr(glow_last_error(), "exists"),
          "a second new run: %s", glow_last_error());
    o.steps = 6, o.batch = 0;
    glow_trainer *resumed = glow_trainer_resume(path, &train, &test, &o);
    REQUIRE(resumed, "%s", glow_last_error());
    while (glow_trainer_step(resumed) == GLOW_OK) {}
    CHECK(same_weights(whole, resumed), "resumed run differs from the whole one");
    double bpd;
    REQUIRE_OK(glow_trainer_evaluate(resumed, 0, &bpd));
    CHECK(bpd > 1 && bpd < 9, "test bits/dim %g", bpd);
    uint8_t px[2 * 784];
    REQUIRE_OK(glow_trainer_sample(resumed, 2, 0.7, 3, px));
    o.batch = 32;
    CHECK(!glow_trainer_resume(path, &train, &test, &o) && strstr(glow_last_error(), "batch 16"),
          "resume with another batch: %s", glow_last_error());
    glow_trainer_free(whole), glow_trainer_free(resumed);
    glow_dataset_free(&train), glow_dataset_free(&test), glow_dataset_free(&ds);
}

/* A learning rate that blows the weights up: steps are skipped, never applied, and after
 * max_skips in a row the trainer gives up with GLOW_EDIVERGED. */
TEST(trainer_gives_up_on_non_finite_steps) {
    if (IS_DOUBLE) return;
    glow_dataset ds, train;
    REQUIRE_OK(glow_dataset_load(&ds, FMNIST, "test", 0));
    REQUIRE_OK(glow_dataset_subset(&train, &ds, 0, 128));
    glow_config cfg;
    glow_train_options o;
    events ev = {0};
    small_run(&cfg, &o, &ev);
    o.optim.lr = 1e4, o.optim.warmup = 0, o.max_skips = 3, o.steps = 200, o.eval_every = 0;
    glow_trainer *t = glow_trainer_create(&cfg, &train, NULL, &o);
    REQUIRE(t, "%s", glow_last_error());
    int rc;
    while ((rc = glow_trainer_step(t)) == GLOW_OK) {}
    CHECK(rc == GLOW_EDIVERGED && ev.skips == 3 && strstr(glow_trainer_error(t), "in a row"),
          "rc %d, %d skips: %s", rc, ev.skips, glow_trainer_error(t));
    CHECK(glow_trainer_state(t)->skipped == 3, "skipped %lld", (long long)glow_trainer_state(t)->skipped);
    glow_trainer_free(t);
    /* Data that does not fit the model is refused. */
    glow_dataset small;
    REQUIRE_OK(glow_dataset_subset(&small, &ds, 0, 8));
    o.batch = 16;
    CHECK(!glow_trainer_create(&cfg, &small, NULL, &o) && strstr(glow_last_error(), "batch"),
          "fewer images than a batch: %s", glow_last_error());
    glow_dataset_free(&small), glow_dataset_free(&train), glow_dataset_free(&ds);
}
