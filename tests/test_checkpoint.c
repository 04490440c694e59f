/* test_checkpoint.c: checkpoints save and load exactly (weights, moments, average, counters,
 * hyperparameters; the same log p(x) after loading), convert between element sizes, and
 * every damaged file is refused with a message naming it: missing, truncated at many
 * offsets, a flipped byte, wrong magic, a directory that does not match the model. A failed
 * save leaves the previous checkpoint untouched and no temporary file. If python3 with
 * NumPy is installed, tools/glow_checkpoint.py reads the file and its independent NumPy
 * log p(x) matches the library's: the proof that docs/FORMAT.md is enough to use a file. */
#include <dirent.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <zlib.h>
#include "flow.h"
#include "test.h"

#define BATCH 3
#define HDR 296 /* the fixed header of format version 2 (docs/FORMAT.md) */

static const model_case cases[] = {
    {"additive reverse", 8, 8, 1, 2, 2, 4, GLOW_ADDITIVE, GLOW_REVERSE, 0, 0, 0, 0, 0},
    {"affine invconv-lu ycond", 4, 4, 3, 1, 2, 5, GLOW_AFFINE, GLOW_INVCONV_LU, 1, 3, 1, 0.5, 0},
    {"affine shuffle", 8, 8, 1, 3, 1, 3, GLOW_AFFINE, GLOW_SHUFFLE, 1, 0, 0, 0, 0},
    {"additive invconv ycond", 8, 4, 1, 2, 2, 3, GLOW_ADDITIVE, GLOW_INVCONV, 1, 4, 1, 0, 0},
};
#define N_CASES (int)(sizeof cases / sizeof cases[0])

/* A model after data-dependent init and a few Adam steps (so weights, both moments and the
 * average all differ), with its batch x (BATCH, D) and labels y. */
typedef struct {
    glow_model *m;
    glow_optimizer opt;
    glow_train_state st;
    glow_real *x;
    int y[BATCH];
    const int *labels;
} trained;

static int make_trained(trained *t, const model_case *c) {
    memset(t, 0, sizeof *t);
    glow_config cfg = model_case_config(c, 11);
    if (!(t->m = glow_model_create(&cfg))) return GLOW_EINVAL;
    size_t d = glow_model_dim(t->m);
    t->x = malloc(sizeof(glow_real) * BATCH * d);
    uint64_t key = glow_rng_key(5, 1, 0, 0);
    for (size_t i = 0; i < BATCH * d; i++) t->x[i] = (glow_real)(glow_rng_uniform(key, i) - 0.5);
    for (int b = 0; b < BATCH; b++) t->y[b] = c->n_classes ? (b + 1) % c->n_classes : 0;
    t->labels = c->n_classes ? t->y : NULL;
    int rc = glow_model_init(test_ctx(), t->m, t->x, t->labels, BATCH);
    glow_optim_config oc;
    glow_optim_config_default(&oc);
    oc.lr = 1e-2, oc.warmup = 7, oc.grad_clip = 50, oc.polyak = 0.9;
    oc.kind = c->coupling == GLOW_ADDITIVE ? GLOW_ADAMAX : GLOW_ADAM;
    if (rc == GLOW_OK)
        rc = glow_optimizer_init(&t->opt, &oc, glow_model_n_params(t->m), glow_model_params(t->m));
    for (int s = 0; s < 3 && rc == GLOW_OK; s++) {
        glow_step_stats st;
        rc = glow_model_train_step(test_ctx(), t->m, t->x, t->labels, BATCH, &st, NULL);
        if (rc == GLOW_OK)
            rc = glow_optimizer_step(&t->opt, glow_model_params(t->m), glow_ctx_grads(test_ctx()), NULL);
    }
    t->st = (glow_train_state){.step = 3, .epoch = 2, .batch_in_epoch = 17, .skipped = 1,
                               .data_seed = 0x123456789abcdef0ull, .batch = BATCH};
    return rc;
}

static void trained_free(trained *t) {
    glow_model_free(t->m);
    glow_optimizer_free(&t->opt);
    free(t->x);
}

static char *tmp_path(const char *name) {
    static char buf[8][512];
    static int k;
    char *p = buf[k++ % 8];
    snprintf(p, 512, "%s/%s", test_tmpdir(), name);
    return p;
}

static uint8_t *slurp(const char *path, size_t *size) {
    *size = 0;
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *d = malloc(n > 0 ? n : 1);
    *size = fread(d, 1, n, f);
    fclose(f);
    return d;
}

static int spit(const char *path, const uint8_t *d, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f) return 0;
    int ok = fwrite(d, 1, n, f) == n;
    return fclose(f) == 0 && ok;
}

/* Recompute the trailing CRC-32 after a deliberate edit (so only the edit is tested). */
static void fix_crc(uint8_t *d, size_t n) {
    uint32_t crc = (uint32_t)crc32(crc32(0L, Z_NULL, 0), d, (uInt)(n - 4));
    for (int i = 0; i < 4; i++) d[n - 4 + i] = (uint8_t)(crc >> (8 * i));
}

static int same_config(const glow_config *a, const glow_config *b) {
    return a->image_h == b->image_h && a->image_w == b->image_w && a->image_c == b->image_c &&
           a->levels == b->levels && a->depth == b->depth && a->width == b->width &&
           a->coupling == b->coupling && a->affine_scale == b->affine_scale &&
           a->permutation == b->permutation &&
           a->learntop == b->learntop && a->n_classes == b->n_classes && a->ycond == b->ycond &&
           a->weight_y == b->weight_y && a->n_bits == b->n_bits && a->seed == b->seed;
}

/* The load failed, and its message names the file and contains `what`. */
#define CHECK_REFUSED(model, path, what, ...)                                                 \
    do {                                                                                      \
        CHECK(!(model), __VA_ARGS__);                                                         \
        CHECK(strstr(glow_last_error(), what) && strstr(glow_last_error(), path),           \
              "message \"%s\" lacks \"%s\" or the file name", glow_last_error(), what);     \
        glow_model_free(model);                                                               \
    } while (0)

TEST(checkpoint_round_trip_exact) {
    for (int k = 0; k < N_CASES; k++) {
        trained t;
        REQUIRE(make_trained(&t, &cases[k]) == GLOW_OK, "%s: %s", cases[k].name, glow_last_error());
        const char *path = tmp_path("round.ckpt");
        REQUIRE_OK(glow_checkpoint_save(path, t.m, &t.opt, &t.st));
        glow_optimizer o;
        glow_train_state st;
        glow_model *m = glow_checkpoint_load(path, 0, &o, &st);
        REQUIRE(m, "%s: %s", cases[k].name, glow_last_error());
        size_t n = glow_model_n_params(t.m);
        REQUIRE(glow_model_n_params(m) == n && o.m && o.n == n, "%s: sizes", cases[k].name);
        CHECK(same_config(glow_model_config(m), glow_model_config(t.m)), "%s: config differs",
              cases[k].name);
        CHECK(!memcmp(glow_model_params(m), glow_model_params(t.m), sizeof(glow_real) * n),
              "%s: weights differ", cases[k].name);
        CHECK(!memcmp(o.m, t.opt.m, sizeof(glow_real) * n) &&
              !memcmp(o.v, t.opt.v, sizeof(glow_real) * n) &&
              !memcmp(o.avg, t.opt.avg, sizeof(glow_real) * n), "%s: optimizer buffers differ",
              cases[k].name);
        CHECK(!memcmp(&o.cfg, &t.opt.cfg, sizeof o.cfg) && o.step == t.opt.step,
              "%s: optimizer settings or step differ", cases[k].name);
        CHECK(!memcmp(&st, &t.st, sizeof st), "%s: train state differs", cases[k].name);
        for (int i = 0; i < glow_model_n_tensors(m); i++) {
            const glow_tensor_info *a = glow_model_tensor(m, i), *b = glow_model_tensor(t.m, i);
            CHECK(!strcmp(a->name, b->name) && a->offset == b->offset && a->size == b->size &&
                  a->trainable == b->trainable, "%s: tensor %d differs", cases[k].name, i);
        }
        /* The same model: bit-identical log-likelihoods. */
        double lp0[BATCH], lp1[BATCH];
        REQUIRE_OK(glow_model_log_prob(test_ctx(), t.m, t.x, t.labels, BATCH, lp0, NULL));
        REQUIRE_OK(glow_model_log_prob(test_ctx(), m, t.x, t.labels, BATCH, lp1, NULL));
        for (int b = 0; b < BATCH; b++)
            CHECK(lp0[b] == lp1[b], "%s: log p %.17g after loading, %.17g before",
                  cases[k].name, lp1[b], lp0[b]);
        /* Training continues identically from the loaded state. */
        glow_step_stats s0, s1;
        REQUIRE_OK(glow_model_train_step(test_ctx(), t.m, t.x, t.labels, BATCH, &s0, NULL));
        REQUIRE_OK(glow_optimizer_step(&t.opt, glow_model_params(t.m), glow_ctx_grads(test_ctx()), NULL));
        REQUIRE_OK(glow_model_train_step(test_ctx(), m, t.x, t.labels, BATCH, &s1, NULL));
        REQUIRE_OK(glow_optimizer_step(&o, glow_model_params(m), glow_ctx_grads(test_ctx()), NULL));
        CHECK(s0.loss == s1.loss && !memcmp(glow_model_params(m), glow_model_params(t.m),
                                            sizeof(glow_real) * n),
              "%s: training after loading diverges", cases[k].name);
        glow_model_free(m);
        glow_optimizer_free(&o);

        /* use_average: the Polyak average becomes the weights. */
        m = glow_checkpoint_load(path, 1, NULL, NULL);
        REQUIRE(m, "%s", glow_last_error());
        glow_optimizer o2;
        glow_model *m2 = glow_checkpoint_load(path, 0, &o2, NULL);
        REQUIRE(m2, "%s", glow_last_error());
        CHECK(!memcmp(glow_model_params(m), o2.avg, sizeof(glow_real) * n) &&
              memcmp(glow_model_params(m), glow_model_params(m2), sizeof(glow_real) * n),
              "%s: use_average did not load the average", cases[k].name);
        glow_model_free(m);
        glow_model_free(m2);
        glow_optimizer_free(&o2);
        trained_free(&t);
    }
}

TEST(checkpoint_weights_only) {
    trained t;
    REQUIRE(make_trained(&t, &cases[1]) == GLOW_OK, "%s", glow_last_error());
    const char *path = tmp_path("weights.ckpt");
    REQUIRE_OK(glow_checkpoint_save(path, t.m, NULL, NULL));
    glow_optimizer o;
    glow_train_state st = {.step = 99};
    glow_model *m = glow_checkpoint_load(path, 1, &o, &st);
    REQUIRE(m, "%s", glow_last_error());
    size_t n = glow_model_n_params(m);
    CHECK(o.m == NULL && o.v == NULL && o.avg == NULL, "an optimizer appeared");
    CHECK(st.step == 0 && st.epoch == 0 && st.batch == 0, "state not zeroed");
    CHECK(!memcmp(glow_model_params(m), glow_model_params(t.m), sizeof(glow_real) * n),
          "use_average without an average must load the weights");
    glow_model_free(m);
    /* An optimizer that does not fit the model is refused. */
    glow_optimizer bad = t.opt;
    bad.n = n + 1;
    CHECK(glow_checkpoint_save(path, t.m, &bad, NULL) == GLOW_EINVAL, "mismatched optimizer saved");
    trained_free(&t);
}

/* Rewrite a checkpoint with the other element size (4 <-> 8), walking the layout of
 * docs/FORMAT.md; returns the new length. */
static size_t convert_element_size(uint8_t *out, const uint8_t *in, unsigned to) {
    unsigned from = in[12];
    memcpy(out, in, HDR);
    out[12] = (uint8_t)to;
    uint32_t nt = in[256] | in[257] << 8 | in[258] << 16 | (uint32_t)in[259] << 24;
    uint32_t ns = in[260] | in[261] << 8;
    uint64_t n = 0;
    memcpy(&n, in + 264, 8); /* tests run on little-endian hosts */
    size_t ip = HDR, op = HDR;
    for (uint32_t i = 0; i < nt; i++) {
        size_t len = in[ip] | in[ip + 1] << 8;
        size_t ndim = in[ip + 2 + len];
        size_t entry = 2 + len + 4 + 4 * ndim + 4 + 4 + 8 + 8;
        memcpy(out + op, in + ip, entry);
        out[op + 2 + len + 4 + 4 * ndim + 4] = (uint8_t)to;
        ip += entry, op += entry;
    }
    for (uint32_t s = 0; s < ns; s++) {
        size_t len = in[ip] | in[ip + 1] << 8;
        memcpy(out + op, in + ip, 2 + len);
        ip += 2 + len + 8, op += 2 + len;
        uint64_t bytes = n * to;
        memcpy(out + op, &bytes, 8), op += 8;
        for (uint64_t j = 0; j < n; j++, ip += from, op += to) {
            double v;
            float f;
            if (from == 4) memcpy(&f, in + ip, 4), v = f;
            else memcpy(&v, in + ip, 8);
            if (to == 4) f = (float)v, memcpy(out + op, &f, 4);
            else memcpy(out + op, &v, 8);
        }
    }
    op += 4;
    uint64_t total = op;
    memcpy(out + 16, &total, 8);
    fix_crc(out, op);
    return op;
}

TEST(checkpoint_converts_element_size) {
    trained t;
    REQUIRE(make_trained(&t, &cases[1]) == GLOW_OK, "%s", glow_last_error());
    const char *path = tmp_path("native.ckpt"), *other = tmp_path("other.ckpt");
    REQUIRE_OK(glow_checkpoint_save(path, t.m, &t.opt, &t.st));
    size_t size;
    uint8_t *d = slurp(path, &size);
    REQUIRE(d && d[12] == sizeof(glow_real), "element size byte %d", d ? d[12] : -1);
    unsigned to = IS_DOUBLE ? 4 : 8;
    uint8_t *c = malloc(size * 2 + 64);
    size_t csize = convert_element_size(c, d, to);
    REQUIRE(spit(other, c, csize), "cannot write %s", other);
    glow_optimizer o;
    glow_model *m = glow_checkpoint_load(other, 0, &o, NULL);
    REQUIRE(m, "%s", glow_last_error());
    /* float -> double is exact; double -> float must round to the nearest float. */
    size_t n = glow_model_n_params(m), bad = 0;
    const glow_real *a = glow_model_params(m), *b = glow_model_params(t.m);
    for (size_t i = 0; i < n; i++) {
        glow_real want = IS_DOUBLE ? (glow_real)(float)b[i] : b[i];
        bad += a[i] != want || o.v[i] != (IS_DOUBLE ? (glow_real)(float)t.opt.v[i] : t.opt.v[i]);
    }
    CHECK(bad == 0, "%zu values converted wrongly from element size %u", bad, to);
    glow_model_free(m);
    glow_optimizer_free(&o);
    /* An element size that is neither 4 nor 8 is refused. */
    d[12] = 2;
    fix_crc(d, size);
    REQUIRE(spit(other, d, size), "write");
    CHECK_REFUSED(glow_checkpoint_load(other, 0, NULL, NULL), other, "element size",
                  "element size 2 accepted");
    free(d), free(c);
    trained_free(&t);
}

TEST(checkpoint_truncated) {
    trained t;
    REQUIRE(make_trained(&t, &cases[0]) == GLOW_OK, "%s", glow_last_error());
    const char *path = tmp_path("full.ckpt"), *cut = tmp_path("cut.ckpt");
    REQUIRE_OK(glow_checkpoint_save(path, t.m, &t.opt, &t.st));
    size_t size;
    uint8_t *d = slurp(path, &size);
    REQUIRE(d && size > 1000, "file of %zu bytes", size);
    size_t offsets[] = {0, 3, 8, 11, 12, 20, 100, 271, 272, 280, HDR - 1, HDR, 600, size / 2, size - 5,
                        size - 4, size - 1};
    for (size_t i = 0; i < sizeof offsets / sizeof offsets[0]; i++) {
        REQUIRE(spit(cut, d, offsets[i]), "cannot write %s", cut);
        glow_model *m = glow_checkpoint_load(cut, 0, NULL, NULL);
        CHECK_REFUSED(m, cut, "truncated", "cut at %zu of %zu bytes: loaded", offsets[i], size);
    }
    /* Extra bytes at the end are refused too. */
    uint8_t *longer = malloc(size + 3);
    memcpy(longer, d, size);
    memset(longer + size, 0, 3);
    REQUIRE(spit(cut, longer, size + 3), "write");
    CHECK_REFUSED(glow_checkpoint_load(cut, 0, NULL, NULL), cut, "trailing", "trailing bytes accepted");
    free(longer);
    free(d);
    trained_free(&t);
}

TEST(checkpoint_corrupted) {
    trained t;
    REQUIRE(make_trained(&t, &cases[1]) == GLOW_OK, "%s", glow_last_error());
    const char *path = tmp_path("good.ckpt"), *bad = tmp_path("bad.ckpt");
    REQUIRE_OK(glow_checkpoint_save(path, t.m, &t.opt, &t.st));
    size_t size;
    uint8_t *d = slurp(path, &size);
    REQUIRE(d, "cannot read %s", path);
    /* Every kind of byte: element size, length, config, state, optimizer, directory,
     * each section's data, the checksum itself. */
    size_t where[] = {12, 17, 30, 60, 105, 130, 200, 256, 275, 400, size / 3, size / 2,
                      size - 100, size - 5, size - 2};
    for (size_t i = 0; i < sizeof where / sizeof where[0]; i++) {
        d[where[i]] ^= 0x10;
        REQUIRE(spit(bad, d, size), "write");
        glow_optimizer o;
        glow_model *m = glow_checkpoint_load(bad, 0, &o, NULL);
        CHECK(o.m == NULL, "byte %zu: optimizer returned from a failed load", where[i]);
        CHECK_REFUSED(m, bad, "corrupted", "byte %zu of %zu flipped: loaded", where[i], size);
        d[where[i]] ^= 0x10;
    }
    d[9] ^= 1; /* the version */
    REQUIRE(spit(bad, d, size), "write");
    CHECK_REFUSED(glow_checkpoint_load(bad, 0, NULL, NULL), bad, "unsupported checkpoint version",
                  "version 0x%02x accepted", d[9]);
    d[9] ^= 1;
    d[0] = 'X'; /* the magic */
    REQUIRE(spit(bad, d, size), "write");
    CHECK_REFUSED(glow_checkpoint_load(bad, 0, NULL, NULL), bad, "not a glow checkpoint",
                  "bad magic accepted");
    free(d);
    trained_free(&t);
}

TEST(checkpoint_wrong_magic_and_missing) {
    const char *png = tmp_path("image.png"), *missing = tmp_path("nowhere/none.ckpt");
    static const uint8_t head[] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n', 0, 0, 0, 13};
    REQUIRE(spit(png, head, sizeof head), "write");
    CHECK_REFUSED(glow_checkpoint_load(png, 0, NULL, NULL), png, "not a glow checkpoint",
                  "a PNG loaded");
    REQUIRE(spit(png, (const uint8_t *)"GL", 2), "write"); /* a short non-checkpoint */
    CHECK_REFUSED(glow_checkpoint_load(png, 0, NULL, NULL), png, "truncated", "2 bytes loaded");
    REQUIRE(spit(png, (const uint8_t *)"hello", 5), "write");
    CHECK_REFUSED(glow_checkpoint_load(png, 0, NULL, NULL), png, "not a glow checkpoint",
                  "5 bytes loaded");
    glow_optimizer o;
    glow_model *m = glow_checkpoint_load(missing, 0, &o, NULL);
    CHECK(o.m == NULL, "optimizer set");
    CHECK_REFUSED(m, missing, "No such file", "a missing file loaded");
}

/* A valid checksum around a directory that does not match the hyperparameters. */
TEST(checkpoint_tensor_mismatch) {
    trained t;
    REQUIRE(make_trained(&t, &cases[0]) == GLOW_OK, "%s", glow_last_error());
    const char *path = tmp_path("dir.ckpt"), *bad = tmp_path("dir_bad.ckpt");
    REQUIRE_OK(glow_checkpoint_save(path, t.m, NULL, &t.st));
    size_t size;
    uint8_t *d = slurp(path, &size);
    REQUIRE(d && d[HDR] == strlen(glow_model_tensor(t.m, 0)->name), "first name length %d", d[HDR]);
    /* a renamed tensor */
    d[HDR + 2] = 'L';
    fix_crc(d, size);
    REQUIRE(spit(bad, d, size), "write");
    CHECK_REFUSED(glow_checkpoint_load(bad, 0, NULL, NULL), bad, "tensor mismatch",
                  "a renamed tensor loaded");
    d[HDR + 2] = 'l';
    /* a different shape: the first tensor's only dimension */
    size_t shape_at = HDR + 2 + d[HDR] + 4;
    d[shape_at] += 1;
    fix_crc(d, size);
    REQUIRE(spit(bad, d, size), "write");
    CHECK_REFUSED(glow_checkpoint_load(bad, 0, NULL, NULL), bad, "tensor mismatch",
                  "a reshaped tensor loaded");
    d[shape_at] -= 1;
    /* hyperparameters that build another model (width 4 -> 5) */
    d[44] = 5;
    fix_crc(d, size);
    REQUIRE(spit(bad, d, size), "write");
    CHECK_REFUSED(glow_checkpoint_load(bad, 0, NULL, NULL), bad, "tensor mismatch",
                  "another width loaded");
    d[44] = 4;
    /* hyperparameters no model accepts */
    d[36] = 0; /* levels */
    fix_crc(d, size);
    REQUIRE(spit(bad, d, size), "write");
    CHECK_REFUSED(glow_checkpoint_load(bad, 0, NULL, NULL), bad, "levels", "0 levels loaded");
    d[36] = 2;
    /* a permutation code that disagrees with its name */
    d[52] = GLOW_SHUFFLE;
    fix_crc(d, size);
    REQUIRE(spit(bad, d, size), "write");
    CHECK_REFUSED(glow_checkpoint_load(bad, 0, NULL, NULL), bad, "disagree", "code/name mismatch");
    d[52] = GLOW_REVERSE;
    fix_crc(d, size);
    REQUIRE(spit(bad, d, size), "write");
    glow_model *m = glow_checkpoint_load(bad, 0, NULL, NULL);
    CHECK(m, "the restored file does not load: %s", glow_last_error());
    glow_model_free(m);
    free(d);
    trained_free(&t);
}

static int count_temp_files(const char *dir) {
    DIR *dp = opendir(dir);
    if (!dp) return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(dp)))
        if (strstr(e->d_name, ".tmp.")) n++;
    closedir(dp);
    return n;
}

TEST(checkpoint_failed_save_keeps_old) {
    trained t;
    REQUIRE(make_trained(&t, &cases[0]) == GLOW_OK, "%s", glow_last_error());
    char dir[512];
    snprintf(dir, sizeof dir, "%s/keep", test_tmpdir());
    REQUIRE(mkdir(dir, 0755) == 0, "mkdir %s", dir);
    char path[600];
    snprintf(path, sizeof path, "%s/model.ckpt", dir);
    REQUIRE_OK(glow_checkpoint_save(path, t.m, NULL, &t.st));
    size_t size0, size1;
    uint8_t *before = slurp(path, &size0);
    REQUIRE(before, "cannot read %s", path);

    /* A directory that does not exist. */
    const char *nodir = tmp_path("missing-dir/model.ckpt");
    CHECK(glow_checkpoint_save(nodir, t.m, &t.opt, &t.st) == GLOW_EIO, "saved into nowhere");
    CHECK(strstr(glow_last_error(), nodir), "message \"%s\" lacks the path", glow_last_error());

    /* A write that fails half-way: the file size limit stops it after size0 / 2 bytes. */
    struct rlimit old;
    getrlimit(RLIMIT_FSIZE, &old);
    void (*old_handler)(int) = signal(SIGXFSZ, SIG_IGN);
    struct rlimit small = {size0 / 2, old.rlim_max};
    REQUIRE(setrlimit(RLIMIT_FSIZE, &small) == 0, "setrlimit");
    glow_real *p = glow_model_params(t.m);
    p[0] += 1; /* a different model, so a wrong overwrite would show */
    int rc = glow_checkpoint_save(path, t.m, &t.opt, &t.st);
    setrlimit(RLIMIT_FSIZE, &old);
    signal(SIGXFSZ, old_handler);
    CHECK(rc == GLOW_EIO, "a save past the file size limit returned %d", rc);
    CHECK(strstr(glow_last_error(), path), "message \"%s\" lacks the path", glow_last_error());
    uint8_t *after = slurp(path, &size1);
    CHECK(after && size1 == size0 && !memcmp(before, after, size0),
          "the previous checkpoint changed");
    CHECK(count_temp_files(dir) == 0, "%d temporary files left in %s", count_temp_files(dir), dir);
    glow_model *m = glow_checkpoint_load(path, 0, NULL, NULL);
    CHECK(m, "the previous checkpoint no longer loads: %s", glow_last_error());
    glow_model_free(m);
    free(after);

    /* And a successful save replaces it, leaving no temporary file either. */
    REQUIRE_OK(glow_checkpoint_save(path, t.m, &t.opt, &t.st));
    after = slurp(path, &size1);
    CHECK(after && size1 > size0, "the new checkpoint was not written");
    CHECK(count_temp_files(dir) == 0, "temporary files left after a good save");
    free(before), free(after);
    trained_free(&t);
}

/* ---- the Python reader ------------------------------------------------------------------- */

/* A python3 with NumPy, or NULL. */
static const char *find_python(void) {
    static const char *candidates[] = {"/usr/bin/python3", "python3"};
    char cmd[256];
    for (int i = 0; i < 2; i++) {
        snprintf(cmd, sizeof cmd, "%s -c 'import numpy' >/dev/null 2>&1", candidates[i]);
        if (system(cmd) == 0) return candidates[i];
    }
    return NULL;
}

/* A .npy file (format 1.0) holding n_shape dimensions of `descr` values. */
static int write_npy(const char *path, const void *data, size_t elem, const char *descr,
                     const int *shape, int ndim) {
    char dict[256];
    int k = snprintf(dict, sizeof dict, "{'descr': '%s', 'fortran_order': False, 'shape': (", descr);
    size_t count = 1;
    for (int i = 0; i < ndim; i++) {
        k += snprintf(dict + k, sizeof dict - k, "%d,%s", shape[i], i + 1 < ndim ? " " : "");
        count *= shape[i];
    }
    k += snprintf(dict + k, sizeof dict - k, "), }");
    int total = 10 + k + 1, pad = (64 - total % 64) % 64;
    FILE *f = fopen(path, "wb");
    if (!f) return 0;
    uint16_t hlen = (uint16_t)(k + pad + 1);
    fwrite("\x93NUMPY\x01\x00", 1, 8, f);
    fputc(hlen & 0xff, f), fputc(hlen >> 8, f);
    fwrite(dict, 1, k, f);
    for (int i = 0; i < pad; i++) fputc(' ', f);
    fputc('\n', f);
    int ok = fwrite(data, elem, count, f) == count;
    return fclose(f) == 0 && ok;
}

TEST(checkpoint_python_reader) {
    const char *py = find_python();
    FILE *tool = fopen("tools/glow_checkpoint.py", "r");
    if (!py || !tool) {
        printf("(skipped: %s) ", py ? "run from the repository root" : "no python3 with NumPy");
        if (tool) fclose(tool);
        return;
    }
    fclose(tool);
    for (int k = 0; k < N_CASES; k++) {
        trained t;
        REQUIRE(make_trained(&t, &cases[k]) == GLOW_OK, "%s", glow_last_error());
        const char *path = tmp_path("py.ckpt"), *xs = tmp_path("x.npy"), *ys = tmp_path("y.npy"),
                   *out = tmp_path("py.out");
        REQUIRE_OK(glow_checkpoint_save(path, t.m, &t.opt, &t.st));
        char cmd[2048];
        snprintf(cmd, sizeof cmd, "%s tools/glow_checkpoint.py '%s' > '%s' 2>&1", py, path, out);
        CHECK(system(cmd) == 0, "%s: the reader failed on a good file: %s", cases[k].name, cmd);

        const glow_config *cfg = glow_model_config(t.m);
        int shape[4] = {BATCH, cfg->image_h, cfg->image_w, cfg->image_c};
        REQUIRE(write_npy(xs, t.x, sizeof(glow_real), IS_DOUBLE ? "<f8" : "<f4", shape, 4), "npy");
        int32_t labels[BATCH];
        for (int b = 0; b < BATCH; b++) labels[b] = t.y[b];
        REQUIRE(write_npy(ys, labels, 4, "<i4", shape, 1), "npy");
        for (int avg = 0; avg < 2; avg++) {
            glow_model *m = glow_checkpoint_load(path, avg, NULL, NULL);
            REQUIRE(m, "%s", glow_last_error());
            double lp[BATCH], bpd[BATCH];
            REQUIRE_OK(glow_model_log_prob(test_ctx(), m, t.x, t.labels, BATCH, lp, bpd));
            glow_model_free(m);
            snprintf(cmd, sizeof cmd, "%s tools/glow_checkpoint.py '%s' --logp '%s' %s %s %s > '%s'",
                     py, path, xs, t.labels ? "--labels" : "", t.labels ? ys : "",
                     avg ? "--average" : "", out);
            REQUIRE(system(cmd) == 0, "%s: %s failed", cases[k].name, cmd);
            FILE *f = fopen(out, "r");
            REQUIRE(f, "no output");
            for (int b = 0; b < BATCH; b++) {
                int i;
                double plp, pbpd;
                if (fscanf(f, "%d %lf %lf", &i, &plp, &pbpd) != 3 || i != b) {
                    CHECK(0, "%s: unreadable output line %d", cases[k].name, b);
                    break;
                }
                double tol = IS_DOUBLE ? 1e-9 : 1e-4;
                CHECK(fabs(pbpd - bpd[b]) < tol, "%s%s: example %d: NumPy bits/dim %.10f, "
                      "library %.10f", cases[k].name, avg ? " (average)" : "", b, pbpd, bpd[b]);
            }
            fclose(f);
        }
        /* The reader refuses a damaged file. */
        size_t size;
        uint8_t *d = slurp(path, &size);
        d[size / 2] ^= 1;
        REQUIRE(spit(path, d, size), "write");
        snprintf(cmd, sizeof cmd, "%s tools/glow_checkpoint.py '%s' > '%s' 2>&1", py, path, out);
        CHECK(system(cmd) != 0, "%s: the reader accepted a corrupted file", cases[k].name);
        free(d);
        trained_free(&t);
    }
}

/* A version 1 file (no affine scale field: a 272-byte header) still loads, as the sigmoid
 * model it is, with the same weights and log-likelihoods; a version 2 file says which scale. */
TEST(checkpoint_version1_loads_as_sigmoid) {
    for (int sigmoid = 0; sigmoid < 2; sigmoid++) {
        model_case c = {"affine invconv-lu", 4, 4, 3, 2, 2, 5, GLOW_AFFINE, GLOW_INVCONV_LU, 1, 0, 0, 0, sigmoid};
        trained t;
        REQUIRE(make_trained(&t, &c) == GLOW_OK, "%s", glow_last_error());
        const char *path = tmp_path("v2.ckpt"), *old = tmp_path("v1.ckpt");
        REQUIRE_OK(glow_checkpoint_save(path, t.m, &t.opt, &t.st));
        glow_model *m2 = glow_checkpoint_load(path, 0, NULL, NULL);
        REQUIRE(m2, "%s", glow_last_error());
        CHECK(glow_model_config(m2)->affine_scale == glow_model_config(t.m)->affine_scale,
              "version 2 loaded scale %d, saved %d", glow_model_config(m2)->affine_scale,
              glow_model_config(t.m)->affine_scale);
        glow_model_free(m2);
        size_t size;
        uint8_t *d = slurp(path, &size);
        REQUIRE(d && d[8] == 2 && size > HDR + 4, "not a version 2 file");
        memmove(d + 272, d + HDR, size - HDR);
        size -= HDR - 272;
        d[8] = 1;
        for (int i = 0; i < 8; i++) d[16 + i] = (uint8_t)((uint64_t)size >> (8 * i));
        fix_crc(d, size);
        REQUIRE(spit(old, d, size), "write");
        glow_model *m1 = glow_checkpoint_load(old, 0, NULL, NULL);
        REQUIRE(m1, "%s: %s", old, glow_last_error());
        CHECK(glow_model_config(m1)->affine_scale == GLOW_SCALE_SIGMOID, "a version 1 file loaded "
              "with scale %d", glow_model_config(m1)->affine_scale);
        size_t n = glow_model_n_params(t.m);
        CHECK(max_abs_diff(glow_model_params(m1), glow_model_params(t.m), n) == 0,
              "version 1 weights differ");
        double lp_saved[BATCH], lp_old[BATCH];
        REQUIRE_OK(glow_model_log_prob(test_ctx(), t.m, t.x, t.labels, BATCH, lp_saved, NULL));
        REQUIRE_OK(glow_model_log_prob(test_ctx(), m1, t.x, t.labels, BATCH, lp_old, NULL));
        /* the same numbers for a sigmoid model; another model (the sigmoid one) for tanh */
        int same = 1;
        for (int b = 0; b < BATCH; b++) same &= lp_saved[b] == lp_old[b];
        CHECK(same == sigmoid, "%s model: version 1 log p %s the saved model's",
              sigmoid ? "sigmoid" : "tanh", same ? "equals" : "differs from");
        glow_model_free(m1);
        free(d);
        trained_free(&t);
    }
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void put_le(uint8_t *p, uint64_t v, int bytes) {
    for (int i = 0; i < bytes; i++) p[i] = (uint8_t)(v >> (8 * i));
}

/* Hostile hyperparameters behind a valid checksum (an attacker recomputes it): each is
 * refused from the header alone, at once, before the model takes any memory; and the
 * stored parameter count is believed only as far as the file's size backs it. */
TEST(checkpoint_hostile_hyperparameters) {
    trained t;
    REQUIRE(make_trained(&t, &cases[0]) == GLOW_OK, "%s", glow_last_error());
    const char *path = tmp_path("host.ckpt"), *bad = tmp_path("host_bad.ckpt");
    REQUIRE_OK(glow_checkpoint_save(path, t.m, NULL, &t.st));
    size_t size;
    uint8_t *orig = slurp(path, &size), *d = malloc(size);
    REQUIRE(orig && d, "read");
    struct { const char *what; int at, bytes; uint64_t value; const char *message; } cases_[] = {
        {"depth 10^6", 40, 4, 1000000, "depth"},
        {"levels 100", 36, 4, 100, "levels"},
        {"width 2^30", 44, 4, 1u << 30, "width"},
        {"image 600000 channels", 32, 4, 600000, "image size"},
        {"image 65536 x 65536", 24, 4, 65536, "image size"},
        {"ycond 2", 96, 4, 2, "ycond"},
        {"learntop 7", 88, 4, 7, "learntop"},
        {"n_classes 2^31 - 1", 92, 4, 0x7fffffff, "n_classes"},
        {"2^60 parameters", 264, 8, 1ull << 60, "parameters"},
        {"2^31 tensors", 256, 4, 0x80000000u, "tensors"},
    };
    for (size_t i = 0; i < sizeof cases_ / sizeof cases_[0]; i++) {
        memcpy(d, orig, size);
        put_le(d + cases_[i].at, cases_[i].value, cases_[i].bytes);
        fix_crc(d, size);
        REQUIRE(spit(bad, d, size), "write");
        double t0 = now_s();
        glow_model *m = glow_checkpoint_load(bad, 0, NULL, NULL);
        double dt = now_s() - t0;
        CHECK_REFUSED(m, bad, cases_[i].message, "%s loaded", cases_[i].what);
        CHECK(dt < 1, "%s: refused after %.1f s", cases_[i].what, dt);
    }
    /* Hyperparameters within the limits whose model is far larger than the file: width 8192
     * (2^26 weights per 1x1 convolution), with the stored counts made to agree. */
    glow_config cfg = *glow_model_config(t.m);
    cfg.width = 8192;
    size_t n;
    int nt;
    REQUIRE_OK(model_count_params(&cfg, &n, &nt));
    memcpy(d, orig, size);
    put_le(d + 44, 8192, 4);
    put_le(d + 264, n, 8);
    fix_crc(d, size);
    REQUIRE(spit(bad, d, size), "write");
    double t0 = now_s();
    CHECK_REFUSED(glow_checkpoint_load(bad, 0, NULL, NULL), bad, "truncated",
                  "a %zu-parameter model from a %zu-byte file", n, size);
    CHECK(now_s() - t0 < 1, "refused after %.1f s", now_s() - t0);
    free(orig), free(d);
    trained_free(&t);
}
