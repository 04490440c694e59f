/* test_alloc.c: allocation-failure injection, the SQLite way. In the build of `make asan`
 * (GLOW_ALLOC_FAILURES, linked with --wrap=malloc,calloc,realloc) the Nth allocation of a
 * path fails, for every N until the path completes: model creation, a training step,
 * checkpoint save and load, data loading, the trainer. Each failure must come back as a
 * status with a message, nothing may crash, and AddressSanitizer's leak check at exit must
 * find nothing. In other builds these tests say they are skipped. */
#include <stdlib.h>
#include <string.h>
#include <zlib.h>
#include "test.h"

#ifdef GLOW_ALLOC_FAILURES
void *__real_malloc(size_t n);
void *__real_calloc(size_t n, size_t size);
void *__real_realloc(void *p, size_t n);

static long countdown = -1; /* allocations left before the failing one; -1: none fails */
static int failed;          /* the armed failure happened */

static int fail_now(void) {
    if (countdown < 0) return 0;
    if (countdown-- > 0) return 0;
    failed = 1;
    return 1;
}
void *__wrap_malloc(size_t n) { return fail_now() ? NULL : __real_malloc(n); }
void *__wrap_calloc(size_t n, size_t size) { return fail_now() ? NULL : __real_calloc(n, size); }
void *__wrap_realloc(void *p, size_t n) { return fail_now() ? NULL : __real_realloc(p, n); }

/* Run path(arg) with allocation N failing, for N = 0, 1, ... until a run sees no failure
 * (the path then completed); every failed run must return a status other than GLOW_OK
 * with a message. Returns the number of allocations the path makes. */
typedef int (*path_fn)(void *arg);
static int every_failure(const char *name, path_fn path, void *arg) {
    for (int n = 0; n < 100000; n++) {
        failed = 0;
        glow_fail(GLOW_OK, "%s", "");
        countdown = n;
        int rc = path(arg);
        countdown = -1;
        if (!failed) {
            CHECK(rc == GLOW_OK, "%s: %d allocations, then failed without an injected failure: %s",
                  name, n, glow_last_error());
            return n;
        }
        CHECK(rc != GLOW_OK, "%s: allocation %d failed, yet the path reported success", name, n);
        CHECK(glow_last_error()[0], "%s: allocation %d failed with no message", name, n);
    }
    CHECK(0, "%s: over 100000 allocations", name);
    return -1;
}

static glow_config small_config(void) {
    glow_config cfg;
    glow_config_default(&cfg);
    cfg.image_h = cfg.image_w = 8, cfg.depth = 2, cfg.width = 8;
    return cfg;
}

static int create_model(void *arg) {
    glow_config cfg = small_config();
    glow_model *m = glow_model_create(&cfg);
    if (!m) return GLOW_ENOMEM;
    glow_model_free(m);
    return GLOW_OK;
}

typedef struct step_job {
    glow_model *m;
    glow_real x[4 * 64];
} step_job;

static int train_step(void *arg) {
    step_job *j = arg;
    glow_ctx *ctx = glow_ctx_create(1);
    if (!ctx) return GLOW_ENOMEM;
    glow_ctx_set_activation_memory(ctx, 1 << 20); /* the kept-activation path too */
    int rc = glow_model_train_step(ctx, j->m, j->x, NULL, 4, NULL, NULL);
    glow_ctx_free(ctx);
    return rc;
}

static int save_checkpoint(void *arg) {
    char path[512];
    snprintf(path, sizeof path, "%s/alloc.glow", test_tmpdir());
    return glow_checkpoint_save(path, arg, NULL, NULL);
}

static int load_checkpoint(void *arg) {
    glow_model *m = glow_checkpoint_load(arg, 0, NULL, NULL);
    if (!m) return GLOW_EFORMAT;
    glow_model_free(m);
    return GLOW_OK;
}

static int load_data(void *arg) {
    glow_dataset d;
    int rc = glow_dataset_load(&d, arg, "test", 8);
    if (rc == GLOW_OK) glow_dataset_free(&d);
    return rc;
}

static int train_run(void *arg) {
    glow_config cfg = small_config();
    glow_train_options o;
    glow_train_options_default(&o);
    o.batch = 8, o.init_batch = 8, o.steps = 2, o.eval_n = 8, o.n_samples = 2, o.threads = 1;
    glow_trainer *t = glow_trainer_create(&cfg, arg, NULL, &o);
    if (!t) return GLOW_ENOMEM;
    int rc;
    while ((rc = glow_trainer_step(t)) == GLOW_OK) {}
    glow_trainer_free(t);
    return rc == GLOW_DONE ? GLOW_OK : rc;
}
#endif

TEST(alloc_failures_model_and_step) {
#ifndef GLOW_ALLOC_FAILURES
    printf("(skipped: make asan runs it) ");
#else
    int n = every_failure("model creation", create_model, NULL);
    step_job j;
    glow_config cfg = small_config();
    j.m = glow_model_create(&cfg);
    REQUIRE(j.m, "%s", glow_last_error());
    for (int i = 0; i < 4 * 64; i++) j.x[i] = (glow_real)(glow_rng_uniform(3, i) - 0.5);
    glow_ctx *ctx = glow_ctx_create(1);
    REQUIRE_OK(glow_model_init(ctx, j.m, j.x, NULL, 4));
    glow_ctx_free(ctx);
    int s = every_failure("a training step", train_step, &j);
    printf("(%d and %d allocations, each failed once) ", n, s);
    glow_model_free(j.m);
#endif
}

TEST(alloc_failures_checkpoint_and_data) {
#ifndef GLOW_ALLOC_FAILURES
    printf("(skipped: make asan runs it) ");
#else
    glow_config cfg = small_config();
    glow_model *m = glow_model_create(&cfg);
    REQUIRE(m, "%s", glow_last_error());
    int s = every_failure("checkpoint save", save_checkpoint, m);
    char path[512];
    snprintf(path, sizeof path, "%s/alloc.glow", test_tmpdir());
    REQUIRE_OK(glow_checkpoint_save(path, m, NULL, NULL));
    int l = every_failure("checkpoint load", load_checkpoint, path);
    glow_model_free(m);
    /* A gzipped IDX file of 6 images of 12x12 with its labels, fitted to 8x8 (reading,
     * inflating, resizing). */
    char idx[512], labels[512];
    snprintf(idx, sizeof idx, "%s/a-images-idx3-ubyte.gz", test_tmpdir());
    snprintf(labels, sizeof labels, "%s/a-labels-idx1-ubyte", test_tmpdir());
    unsigned char img[16 + 6 * 144] = {0, 0, 8, 3, 0, 0, 0, 6, 0, 0, 0, 12, 0, 0, 0, 12};
    unsigned char lab[8 + 6] = {0, 0, 8, 1, 0, 0, 0, 6, 1, 2, 3, 4, 5, 6};
    for (int i = 16; i < (int)sizeof img; i++) img[i] = (unsigned char)(i * 7);
    gzFile gz = gzopen(idx, "wb");
    REQUIRE(gz && gzwrite(gz, img, sizeof img) == (int)sizeof img && gzclose(gz) == Z_OK, "gz");
    FILE *f = fopen(labels, "wb");
    REQUIRE(f && fwrite(lab, 1, sizeof lab, f) == sizeof lab && fclose(f) == 0, "labels");
    int d = every_failure("data loading", load_data, idx);
    glow_dataset ds, small;
    REQUIRE_OK(glow_dataset_load(&ds, "/usr/share/datasets/fashion-mnist", "test", 8));
    REQUIRE_OK(glow_dataset_subset(&small, &ds, 0, 64));
    glow_dataset_free(&ds);
    int t = every_failure("a trainer's run", train_run, &small);
    glow_dataset_free(&small);
    printf("(save %d, load %d, data %d, trainer %d allocations) ", s, l, d, t);
#endif
}
