/* test_latent.c: latent space. Library: .npy and directions files, interpolation and shifts.
 * Command line (float build): encode/decode round trips exactly on real images, the audit,
 * bad input, and the objective check that moving Fashion-MNIST images of class a toward
 * class b raises class b's probability under a nearest-class-mean classifier on pixels. */
#include <stdlib.h>
#include <string.h>
#include "test.h"

/* A small model trained briefly on Fashion-MNIST by the glow command, made once. */
static const char *trained_checkpoint(void) {
    static char path[512];
    /* GLOW_TEST_CHECKPOINT runs these tests on a model of your own (scripts/latent_figures.sh
     * does that for the figures of the README). */
    if (!path[0] && getenv("GLOW_TEST_CHECKPOINT")) snprintf(path, sizeof path, "%s", getenv("GLOW_TEST_CHECKPOINT"));
    if (!path[0]) {
        snprintf(path, sizeof path, "%s/latent-model/checkpoint.glow", test_tmpdir());
        if (test_run("./glow train --depth 2 --width 16 --steps 40 --batch 32 --eval-every 0 "
               "--sample-every 0 --eval-n 64 --out %s/latent-model", test_tmpdir()) != 0) {
            fprintf(stderr, "training failed: %s\n", test_output());
            path[0] = 0;
            return NULL;
        }
    }
    return path;
}

TEST(latent_npy_and_directions_files) {
    glow_real z[6 * 4];
    for (int i = 0; i < 24; i++) z[i] = (glow_real)(i * 0.5 - 3);
    char path[512];
    snprintf(path, sizeof path, "%s/z.npy", test_tmpdir());
    REQUIRE_OK(glow_npy_write(path, z, 6, 4));
    glow_real *back = NULL;
    size_t rows, cols;
    REQUIRE_OK(glow_npy_read(path, &back, &rows, &cols));
    CHECK(rows == 6 && cols == 4 && max_abs_diff(z, back, 24) == 0, "npy round trip");
    free(back);
    /* Directions: attribute 0 positive for rows 0-1, attribute 1 for rows 2-5. */
    int8_t attrs[6 * 2] = {1, -1, 1, -1, -1, 1, -1, 1, -1, 1, -1, 1};
    const char names[2][64] = {"first", "second"};
    glow_directions d, e;
    REQUIRE_OK(glow_directions_compute(&d, z, 6, 4, attrs, 2, names));
    /* mean(rows 0,1) - mean(rows 2..5) for column 0: (-3 + -1)/2 - (1 + 3 + 5 + 7)/4 = -6 */
    CHECK(d.n_pos[0] == 2 && d.n_neg[0] == 4 && fabs(d.z[0] + 6) < 1e-6, "direction %g", d.z[0]);
    snprintf(path, sizeof path, "%s/d.npz", test_tmpdir());
    REQUIRE_OK(glow_directions_save(path, &d));
    REQUIRE_OK(glow_directions_load(path, &e));
    CHECK(e.n == 2 && e.dim == 4 && !strcmp(e.names[1], "second") && e.n_neg[1] == 2 &&
          !memcmp(d.z, e.z, sizeof(float) * 8), "directions round trip");
    CHECK(glow_directions_find(&e, "second") == 1 && glow_directions_find(&e, "third") == -1, "find");
    glow_directions_free(&d), glow_directions_free(&e);
    int8_t none[6 * 1] = {-1, -1, -1, -1, -1, -1};
    CHECK(glow_directions_compute(&d, z, 6, 4, none, 1, names) != GLOW_OK &&
          strstr(glow_last_error(), "positive"), "no positives: %s", glow_last_error());
    /* A truncated npy is refused with its name. */
    FILE *f = fopen(path, "wb");
    fwrite("\x93NUMPY\x01\x00\x10\x00{'descr", 1, 17, f);
    fclose(f);
    CHECK(glow_npy_read(path, &back, &rows, &cols) != GLOW_OK && strstr(glow_last_error(), path),
          "truncated npy: %s", glow_last_error());
    /* Interpolation ends on its endpoints; shifts add alpha times the direction. */
    glow_real line[3 * 4], shifted[2 * 4];
    glow_latent_lerp(line, z, z + 4, 4, 3);
    CHECK(line[0] == z[0] && line[8 + 3] == z[7] && fabs(line[4] - 0.5 * (z[0] + z[4])) < 1e-6, "lerp");
    double alphas[2] = {0, 2};
    glow_latent_shift(shifted, z, z + 4, alphas, 2, 4);
    CHECK(shifted[1] == z[1] && fabs(shifted[4 + 1] - (z[1] + 2 * z[5])) < 1e-6, "shift");
}

TEST(cli_encode_decode_round_trip_is_exact) {
    if (IS_DOUBLE) return;
    const char *c = trained_checkpoint();
    REQUIRE(c, "no model");
    const char *t = test_tmpdir();
    REQUIRE(test_run("./glow encode --checkpoint %s --n 1000 --out %s/enc/z.npy", c, t) == 0, "encode: %s", test_output());
    REQUIRE(test_run("./glow decode --checkpoint %s --latents %s/enc/z.npy --out %s/dec", c, t, t) == 0,
            "decode: %s", test_output());
    /* Compare every decoded PNG with the original test image. */
    glow_dataset ds;
    REQUIRE_OK(glow_dataset_load(&ds, "/usr/share/datasets/fashion-mnist", "test", 0));
    long differing = 0;
    for (int i = 0; i < 1000; i++) {
        char path[600];
        snprintf(path, sizeof path, "%s/dec/%06d.png", t, i);
        uint8_t *px;
        int h, w, ch;
        REQUIRE_OK(glow_image_read(path, &px, &h, &w, &ch));
        for (int j = 0; j < 784; j++) differing += px[j] != ds.pixels[(size_t)i * 784 + j];
        free(px);
    }
    CHECK(differing == 0, "%ld pixels differ after decode(encode(x))", differing);
    CHECK(test_run("./glow check --checkpoint %s --n 1000", c) == 0 && strstr(test_output(), " 0 images (0 pixels)"),
          "check: %s", test_output());
    CHECK(test_run("/usr/bin/python3 -c \"import numpy; z = numpy.load('%s/enc/z.npy'); "
             "l = numpy.load('%s/enc/z_labels.npy'); assert z.shape == (1000, 784) and l.shape == (1000,)\" "
             "|| ! /usr/bin/python3 -c 'import numpy'", t, t) == 0, "numpy cannot read the latents: %s", test_output());
    CHECK(test_run("./glow interpolate 0 1 --checkpoint %s --steps 5 --out %s/i.png", c, t) == 0, "interpolate: %s", test_output());
    uint8_t *px;
    int h, w, ch;
    char path[600];
    snprintf(path, sizeof path, "%s/i.png", t);
    CHECK(glow_image_read(path, &px, &h, &w, &ch) == GLOW_OK && h == 28 && w == 5 * 28 + 4 * 2, "strip %dx%d", h, w);
    if (h == 28) free(px);
    glow_dataset_free(&ds);
}

TEST(cli_latent_bad_input) {
    if (IS_DOUBLE) return;
    const char *c = trained_checkpoint();
    REQUIRE(c, "no model");
    const char *t = test_tmpdir();
    glow_real z[2 * 100] = {0};
    char path[600];
    snprintf(path, sizeof path, "%s/small.npy", t);
    REQUIRE_OK(glow_npy_write(path, z, 2, 100));
    CHECK(test_run("./glow decode --checkpoint %s --latents %s --grid %s/g.png", c, path, t) == 1 &&
          strstr(test_output(), "size 100"), "wrong latent size: %s", test_output());
    /* Latents from another model: same size, another fingerprint. */
    REQUIRE(test_run("./glow train --depth 1 --width 4 --steps 2 --eval-every 0 --sample-every 0 --eval-n 16 "
               "--out %s/other", t) == 0, "train: %s", test_output());
    REQUIRE(test_run("./glow encode --checkpoint %s/other/checkpoint.glow --n 3 --out %s/other.npy", t, t) == 0, "%s", test_output());
    CHECK(test_run("./glow decode --checkpoint %s --latents %s/other.npy --grid %s/g.png", c, t, t) == 1 &&
          strstr(test_output(), "another model"), "other model: %s", test_output());
    REQUIRE(test_run("./glow attributes --checkpoint %s --split test --n 500 --out %s/d.npz", c, t) == 0, "%s", test_output());
    CHECK(test_run("./glow manipulate 3 --checkpoint %s --directions %s/d.npz --attribute Nope", c, t) == 1 &&
          strstr(test_output(), "Nope") && strstr(test_output(), "Sneaker"), "unknown attribute: %s", test_output());
    CHECK(test_run("./glow manipulate 3 --checkpoint %s --directions %s/d.npz --attribute Bag --alpha 1,two", c, t) == 2 &&
          strstr(test_output(), "--alpha"), "bad alpha: %s", test_output());
    CHECK(test_run("./glow interpolate 0 4294967295 --checkpoint %s --out %s/i.png", c, t) == 1 &&
          strstr(test_output(), "4294967295"), "huge index: %s", test_output());
    uint8_t img[32 * 32 * 3] = {0};
    snprintf(path, sizeof path, "%s/big.png", t);
    REQUIRE_OK(glow_png_write(path, img, 32, 32, 3));
    CHECK(test_run("./glow encode --checkpoint %s --out %s/e.npy %s", c, t, path) == 1 &&
          strstr(test_output(), "32x32x3") && strstr(test_output(), "big.png"), "wrong image size: %s", test_output());
}

/* Nearest class mean on pixels, with a softmax over negative squared distances; returns
 * the predicted class. */
static int class_probs(double *p, const uint8_t *px, const double *means, double scale) {
    double dist[10], best = INFINITY, sum = 0;
    int arg = 0;
    for (int k = 0; k < 10; k++) {
        double s = 0;
        for (int j = 0; j < 784; j++) {
            double e = px[j] - means[k * 784 + j];
            s += e * e;
        }
        dist[k] = s / scale;
        if (dist[k] < best) best = dist[k], arg = k;
    }
    for (int k = 0; k < 10; k++) sum += p[k] = exp(best - dist[k]);
    for (int k = 0; k < 10; k++) p[k] /= sum;
    return arg;
}

TEST(latent_manipulation_moves_toward_class) {
    if (IS_DOUBLE) return;
    const char *c = trained_checkpoint();
    REQUIRE(c, "no model");
    glow_model *m = glow_checkpoint_load(c, 1, NULL, NULL);
    REQUIRE(m, "%s", glow_last_error());
    glow_dataset train, test;
    REQUIRE_OK(glow_dataset_load(&train, "/usr/share/datasets/fashion-mnist", "train", 0));
    REQUIRE_OK(glow_dataset_load(&test, "/usr/share/datasets/fashion-mnist", "test", 0));
    /* The classifier: class means of the training pixels. */
    double *means = calloc(10 * 784, sizeof(double)), counts[10] = {0};
    for (int i = 0; i < train.n; i++) {
        counts[train.labels[i]]++;
        for (int j = 0; j < 784; j++) means[train.labels[i] * 784 + j] += train.pixels[(size_t)i * 784 + j];
    }
    for (int k = 0; k < 10; k++)
        for (int j = 0; j < 784; j++) means[k * 784 + j] /= counts[k];
    /* Directions from 2000 training images, one vs rest. */
    enum { N = 2000 };
    glow_real *z = malloc(sizeof(glow_real) * N * 784), *x = malloc(sizeof(glow_real) * N * 784);
    int8_t *attrs = malloc(N * 10);
    char names[10][64];
    for (int k = 0; k < 10; k++) snprintf(names[k], 64, "class%d", k);
    for (int i = 0; i < N; i++)
        for (int k = 0; k < 10; k++) attrs[i * 10 + k] = train.labels[i] == k ? 1 : -1;
    glow_preprocess_center(x, train.pixels, N, 784, 8);
    REQUIRE_OK(glow_model_encode(test_ctx(), m, x, NULL, N, z, NULL));
    glow_directions dirs;
    REQUIRE_OK(glow_directions_compute(&dirs, z, N, 784, attrs, 10, (const char (*)[64])names));
    /* Move test images of class a along direction(b) - direction(a) with alpha = 1. */
    const int pairs[3][2] = {{0, 1}, {5, 7}, {2, 8}}; /* T-shirt->Trouser, Sandal->Sneaker, Pullover->Bag */
    for (int pi = 0; pi < 3; pi++) {
        int a = pairs[pi][0], b = pairs[pi][1], n = 0, before_b = 0, after_b = 0;
        double p_before = 0, p_after = 0, p[10];
        glow_real dir[784];
        for (int j = 0; j < 784; j++) dir[j] = dirs.z[b * 784 + j] - dirs.z[a * 784 + j];
        for (int i = 0; i < test.n && n < 200; i++) {
            if (test.labels[i] != a) continue;
            uint8_t out[784];
            glow_real zi[784], moved[784];
            double one = 1.0;
            glow_preprocess_center(x, test.pixels + (size_t)i * 784, 1, 784, 8);
            REQUIRE_OK(glow_model_encode(test_ctx(), m, x, NULL, 1, zi, NULL));
            glow_latent_shift(moved, zi, dir, &one, 1, 784);
            REQUIRE_OK(glow_model_decode(test_ctx(), m, moved, NULL, 1, x, NULL));
            glow_postprocess(out, x, 1, 784, 8);
            before_b += class_probs(p, test.pixels + (size_t)i * 784, means, 2e5) == b;
            p_before += p[b];
            after_b += class_probs(p, out, means, 2e5) == b;
            p_after += p[b];
            n++;
        }
        printf("(%d->%d: P(b) %.2f -> %.2f, predicted b %d -> %d of %d) ", a, b, p_before / n,
               p_after / n, before_b, after_b, n);
        CHECK(p_after / n > p_before / n + 0.3 && after_b > n / 2,
              "class %d -> %d: P(b) only %.3f -> %.3f (%d of %d predicted b)", a, b, p_before / n,
              p_after / n, after_b, n);
    }
    glow_directions_free(&dirs);
    free(means), free(z), free(x), free(attrs);
    glow_dataset_free(&train), glow_dataset_free(&test);
    glow_model_free(m);
}

/* A .npy image with the given header dict and `data` bytes of zeros after it. */
static size_t npy_bytes(unsigned char *out, const char *dict, size_t data) {
    size_t len = strlen(dict), hlen = (10 + len + 1 + 63) / 64 * 64 - 10;
    memcpy(out, "\x93NUMPY\x01\x00", 8);
    out[8] = (unsigned char)(hlen & 0xff), out[9] = (unsigned char)(hlen >> 8);
    memset(out + 10, ' ', hlen);
    memcpy(out + 10, dict, len);
    out[10 + hlen - 1] = '\n';
    memset(out + 10 + hlen, 0, data);
    return 10 + hlen + data;
}

/* One stored zip member (a local header and its data; the reader needs no more). */
static size_t zip_stored(unsigned char *out, const char *name, const unsigned char *data,
                         size_t size) {
    size_t nlen = strlen(name);
    memset(out, 0, 30);
    out[0] = 'P', out[1] = 'K', out[2] = 3, out[3] = 4;
    for (int i = 0; i < 4; i++) out[18 + i] = out[22 + i] = (unsigned char)(size >> (8 * i));
    out[26] = (unsigned char)nlen;
    memcpy(out + 30, name, nlen);
    memcpy(out + 30 + nlen, data, size);
    return 30 + nlen + size;
}

/* Shapes whose element counts overflow are refused from the header, with the file's name:
 * no allocation, no crash (the outside fuzzing found a heap overflow here). */
TEST(latent_hostile_npy_and_npz) {
    static const char *dicts[] = {
        "{'descr': '<f4', 'fortran_order': False, 'shape': (4611686018427387904, 2), }",
        "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 4611686018427387904), }",
        "{'descr': '<f4', 'fortran_order': False, 'shape': (4294967296, 4294967296), }",
        "{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999999999999999, 2), }",
        "{'descr': '<f4', 'fortran_order': False, 'shape': (-1, 2), }",
        "{'descr': '<U99999999', 'fortran_order': False, 'shape': (1, 2), }",
        "{'descr': '<U0', 'fortran_order': False, 'shape': (1, 2), }",
    };
    char path[512];
    snprintf(path, sizeof path, "%s/hostile.npy", test_tmpdir());
    unsigned char buf[1024], zip[2048];
    for (size_t i = 0; i < sizeof dicts / sizeof dicts[0]; i++) {
        size_t n = npy_bytes(buf, dicts[i], 16);
        FILE *f = fopen(path, "wb");
        REQUIRE(f && fwrite(buf, 1, n, f) == n && fclose(f) == 0, "write");
        glow_real *z = NULL;
        size_t rows = 0, cols = 0;
        CHECK(glow_npy_read(path, &z, &rows, &cols) == GLOW_EFORMAT && strstr(glow_last_error(), path),
              "%s: read as (%zu, %zu): %s", dicts[i], rows, cols, glow_last_error());
        free(z);
    }
    /* The same shape as a directions file's first member: refused, not one row of
     * dimension 4.6e18. */
    size_t n = npy_bytes(buf, dicts[1], 16);
    size_t zn = zip_stored(zip, "directions.npy", buf, n);
    snprintf(path, sizeof path, "%s/hostile.npz", test_tmpdir());
    FILE *f = fopen(path, "wb");
    REQUIRE(f && fwrite(zip, 1, zn, f) == zn && fclose(f) == 0, "write");
    glow_directions d;
    CHECK(glow_directions_load(path, &d) == GLOW_EFORMAT && strstr(glow_last_error(), "truncated"),
          "a directions file of dimension 4.6e18: %s", glow_last_error());
}
