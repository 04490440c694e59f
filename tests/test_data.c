/* test_data.c: data set loaders (IDX plain and gzipped, CIFAR-10 batches, image folders
 * with CelebA attributes or labels.csv), their error messages, subsets, the epoch shuffle
 * and batch gathering. Every file is written by the test under test_tmpdir(); the real
 * Fashion-MNIST test split is read when /usr/share/datasets/fashion-mnist exists. */
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <zlib.h>
#include "test.h"

#define FASHION_DIR "/usr/share/datasets/fashion-mnist"

/* A fresh folder test_tmpdir()/name. */
static void make_dir(char *out, size_t n, const char *name) {
    snprintf(out, n, "%s/%s", test_tmpdir(), name);
    mkdir(out, 0755);
}

/* Write bytes, through gzip when the name ends in ".gz". */
static int write_file(const char *dir, const char *name, const void *data, size_t n) {
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    size_t len = strlen(name);
    if (len > 3 && strcmp(name + len - 3, ".gz") == 0) {
        gzFile f = gzopen(path, "wb");
        if (!f) return -1;
        int ok = n == 0 || gzwrite(f, data, (unsigned)n) == (int)n;
        return gzclose(f) == Z_OK && ok ? 0 : -1;
    }
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    size_t w = fwrite(data, 1, n, f);
    return fclose(f) == 0 && w == n ? 0 : -1;
}

static void put_be32(uint8_t *p, uint32_t v) {
    p[0] = v >> 24, p[1] = v >> 16 & 255, p[2] = v >> 8 & 255, p[3] = v & 255;
}

/* IDX image file bytes (magic 0x803, n x h x w) into buf; returns its length. */
static size_t idx_images(uint8_t *buf, int n, int h, int w, int seed) {
    put_be32(buf, 0x803), put_be32(buf + 4, n), put_be32(buf + 8, h), put_be32(buf + 12, w);
    for (int i = 0; i < n * h * w; i++) buf[16 + i] = (uint8_t)(i * 13 + seed);
    return 16 + (size_t)n * h * w;
}
static size_t idx_labels(uint8_t *buf, int n, int seed) {
    put_be32(buf, 0x801), put_be32(buf + 4, n);
    for (int i = 0; i < n; i++) buf[8 + i] = (uint8_t)((i + seed) % 10);
    return 8 + (size_t)n;
}

/* The loaded set must hold idx_images(n, h, w, seed) and idx_labels(n, seed). */
static int check_idx(const glow_dataset *d, int n, int h, int w, int seed, int labelled) {
    if (d->n != n || d->h != h || d->w != w || d->c != 1) return 0;
    for (int i = 0; i < n * h * w; i++)
        if (d->pixels[i] != (uint8_t)(i * 13 + seed)) return 0;
    if (!labelled) return d->labels == NULL && d->n_classes == 0;
    if (!d->labels) return 0;
    int top = 0;
    for (int i = 0; i < n; i++) {
        if (d->labels[i] != (i + seed) % 10) return 0;
        top = d->labels[i] + 1 > top ? d->labels[i] + 1 : top;
    }
    return d->n_classes == top;
}

static int message_has(const char *s) { return strstr(glow_last_error(), s) != NULL; }

TEST(data_idx_plain_and_gzip) {
    uint8_t buf[16 + 12 * 5 * 4];
    char dir[512], path[1024];
    glow_dataset d;
    for (int gz = 0; gz < 2; gz++) {
        make_dir(dir, sizeof dir, gz ? "idx_gz" : "idx_plain");
        const char *sfx = gz ? ".gz" : "";
        char name[64];
        snprintf(name, sizeof name, "train-images-idx3-ubyte%s", sfx);
        REQUIRE(write_file(dir, name, buf, idx_images(buf, 12, 5, 4, 1)) == 0, "write");
        snprintf(name, sizeof name, "train-labels-idx1-ubyte%s", sfx);
        REQUIRE(write_file(dir, name, buf, idx_labels(buf, 12, 1)) == 0, "write");
        snprintf(name, sizeof name, "t10k-images-idx3-ubyte%s", sfx);
        REQUIRE(write_file(dir, name, buf, idx_images(buf, 3, 5, 4, 7)) == 0, "write");
        snprintf(name, sizeof name, "t10k-labels-idx1-ubyte%s", sfx);
        REQUIRE(write_file(dir, name, buf, idx_labels(buf, 3, 7)) == 0, "write");

        /* The image file itself, then the folder by split. */
        snprintf(path, sizeof path, "%s/train-images-idx3-ubyte%s", dir, sfx);
        REQUIRE_OK(glow_dataset_load(&d, path, NULL, 0));
        CHECK(check_idx(&d, 12, 5, 4, 1, 1), "%s: contents differ", path);
        glow_dataset_free(&d);
        REQUIRE_OK(glow_dataset_load(&d, dir, "test", 0));
        CHECK(check_idx(&d, 3, 5, 4, 7, 1), "%s test split: contents differ (n %d)", dir, d.n);
        glow_dataset_free(&d);
        REQUIRE_OK(glow_dataset_load(&d, dir, "train", 0));
        CHECK(check_idx(&d, 12, 5, 4, 1, 1), "%s train split: contents differ", dir);
        glow_dataset_free(&d);
    }
    /* A gzipped image file with a plain label file next to it; and one without labels. */
    make_dir(dir, sizeof dir, "idx_mixed");
    REQUIRE(write_file(dir, "train-images-idx3-ubyte.gz", buf, idx_images(buf, 4, 2, 2, 3)) == 0, "w");
    REQUIRE(write_file(dir, "train-labels-idx1-ubyte", buf, idx_labels(buf, 4, 3)) == 0, "w");
    REQUIRE(write_file(dir, "t10k-images-idx3-ubyte", buf, idx_images(buf, 2, 2, 2, 5)) == 0, "w");
    snprintf(path, sizeof path, "%s/train-images-idx3-ubyte.gz", dir);
    REQUIRE_OK(glow_dataset_load(&d, path, NULL, 0));
    CHECK(check_idx(&d, 4, 2, 2, 3, 1), "mixed gz/plain: contents differ");
    glow_dataset_free(&d);
    REQUIRE_OK(glow_dataset_load(&d, dir, "test", 0));
    CHECK(check_idx(&d, 2, 2, 2, 5, 0), "unlabelled test split");
    glow_dataset_free(&d);
}

TEST(data_idx_resize) {
    /* 4x4 images of 10*x + 40*y fitted to 2x2: the means of the 2x2 blocks. */
    uint8_t buf[16 + 2 * 16];
    put_be32(buf, 0x803), put_be32(buf + 4, 2), put_be32(buf + 8, 4), put_be32(buf + 12, 4);
    for (int k = 0; k < 2; k++)
        for (int i = 0; i < 16; i++) buf[16 + k * 16 + i] = (uint8_t)(10 * (i % 4) + 40 * (i / 4) + k);
    char dir[512], path[1024];
    make_dir(dir, sizeof dir, "idx_resize");
    REQUIRE(write_file(dir, "x-images-idx3-ubyte", buf, sizeof buf) == 0, "write");
    snprintf(path, sizeof path, "%s/x-images-idx3-ubyte", dir);
    glow_dataset d;
    REQUIRE_OK(glow_dataset_load(&d, path, NULL, 2));
    REQUIRE(d.n == 2 && d.h == 2 && d.w == 2 && d.c == 1, "shape %dx%dx%dx%d", d.n, d.h, d.w, d.c);
    const uint8_t want[8] = {25, 45, 105, 125, 26, 46, 106, 126};
    CHECK(memcmp(d.pixels, want, 8) == 0, "resized %d %d %d %d", d.pixels[0], d.pixels[1],
          d.pixels[2], d.pixels[3]);
    glow_dataset_free(&d);
}

TEST(data_idx_errors) {
    uint8_t buf[16 + 10 * 3 * 3];
    char dir[512], path[1024];
    glow_dataset d;
    int rc;
    make_dir(dir, sizeof dir, "idx_bad");

    /* Missing. */
    snprintf(path, sizeof path, "%s/nothing-images-idx3-ubyte", dir);
    rc = glow_dataset_load(&d, path, NULL, 0);
    CHECK(rc == GLOW_EIO && message_has("nothing-images-idx3-ubyte"), "missing: %d %s", rc,
          glow_last_error());
    CHECK(d.pixels == NULL && d.n == 0, "data set not zeroed after a failure");

    /* Truncated: one byte short, plain and gzipped. */
    size_t n = idx_images(buf, 10, 3, 3, 0);
    const char *names[2] = {"short-images-idx3-ubyte", "shortgz-images-idx3-ubyte.gz"};
    for (int k = 0; k < 2; k++) {
        REQUIRE(write_file(dir, names[k], buf, n - 1) == 0, "write");
        snprintf(path, sizeof path, "%s/%s", dir, names[k]);
        rc = glow_dataset_load(&d, path, NULL, 0);
        CHECK(rc == GLOW_EFORMAT && message_has(names[k]) && message_has("truncated"),
              "truncated: %d %s", rc, glow_last_error());
    }
    /* A gzip stream cut short (no trailer). */
    REQUIRE(write_file(dir, "whole-images-idx3-ubyte.gz", buf, n) == 0, "write");
    snprintf(path, sizeof path, "%s/whole-images-idx3-ubyte.gz", dir);
    FILE *f = fopen(path, "rb");
    uint8_t gzbytes[1024];
    size_t gzn = fread(gzbytes, 1, sizeof gzbytes, f);
    fclose(f);
    REQUIRE(write_file(dir, "cutgz-images-idx3-ubyte", gzbytes, gzn / 2) == 0, "write");
    snprintf(path, sizeof path, "%s/cutgz-images-idx3-ubyte", dir);
    rc = glow_dataset_load(&d, path, NULL, 0);
    CHECK(rc == GLOW_EFORMAT && message_has("cutgz-images"), "cut gzip: %d %s", rc,
          glow_last_error());

    /* Wrong magic: a label file given as images. */
    REQUIRE(write_file(dir, "lab-images-idx3-ubyte", buf, idx_labels(buf, 10, 0)) == 0, "write");
    snprintf(path, sizeof path, "%s/lab-images-idx3-ubyte", dir);
    rc = glow_dataset_load(&d, path, NULL, 0);
    CHECK(rc == GLOW_EFORMAT && message_has("lab-images-idx3-ubyte") && message_has("magic"),
          "wrong magic: %d %s", rc, glow_last_error());

    /* Wrong dimensions: a zero-sized side. */
    n = idx_images(buf, 10, 3, 3, 0);
    put_be32(buf + 8, 0);
    REQUIRE(write_file(dir, "zero-images-idx3-ubyte", buf, n) == 0, "write");
    snprintf(path, sizeof path, "%s/zero-images-idx3-ubyte", dir);
    rc = glow_dataset_load(&d, path, NULL, 0);
    CHECK(rc == GLOW_EFORMAT && message_has("zero-images") && message_has("dimensions"),
          "zero dims: %d %s", rc, glow_last_error());

    /* Label count mismatch: 9 labels for 10 images. */
    REQUIRE(write_file(dir, "mis-images-idx3-ubyte", buf, idx_images(buf, 10, 3, 3, 0)) == 0, "w");
    REQUIRE(write_file(dir, "mis-labels-idx1-ubyte", buf, idx_labels(buf, 9, 0)) == 0, "w");
    snprintf(path, sizeof path, "%s/mis-images-idx3-ubyte", dir);
    rc = glow_dataset_load(&d, path, NULL, 0);
    CHECK(rc == GLOW_EFORMAT && message_has("mis-labels-idx1-ubyte") && message_has("9 labels"),
          "label mismatch: %d %s", rc, glow_last_error());
    CHECK(d.pixels == NULL && d.labels == NULL, "partial data set left after a failure");

    /* A folder with train files only: the test split is missing; unknown split. */
    make_dir(dir, sizeof dir, "idx_trainonly");
    REQUIRE(write_file(dir, "train-images-idx3-ubyte", buf, idx_images(buf, 2, 3, 3, 0)) == 0, "w");
    rc = glow_dataset_load(&d, dir, "test", 0);
    CHECK(rc == GLOW_EIO && message_has("t10k-images"), "missing split: %d %s", rc, glow_last_error());
    rc = glow_dataset_load(&d, dir, "validation", 0);
    CHECK(rc == GLOW_EINVAL && message_has("validation"), "bad split: %d %s", rc, glow_last_error());

    /* An empty folder is no data set. */
    make_dir(dir, sizeof dir, "empty");
    rc = glow_dataset_load(&d, dir, "train", 0);
    CHECK(rc == GLOW_EFORMAT && message_has("empty"), "empty folder: %d %s", rc, glow_last_error());
}

/* A CIFAR record whose planes are R = 3*p + label, G = R + 1, B = R + 2 (mod 256). */
static void cifar_record(uint8_t *rec, int label) {
    rec[0] = (uint8_t)label;
    for (int k = 0; k < 3; k++)
        for (int p = 0; p < 1024; p++) rec[1 + k * 1024 + p] = (uint8_t)(3 * p + label + k);
}

TEST(data_cifar) {
    static uint8_t buf[3 * 3073];
    char dir[512];
    make_dir(dir, sizeof dir, "cifar");
    cifar_record(buf, 3), cifar_record(buf + 3073, 9);
    REQUIRE(write_file(dir, "data_batch_1.bin", buf, 2 * 3073) == 0, "write");
    cifar_record(buf, 0);
    REQUIRE(write_file(dir, "data_batch_3.bin", buf, 3073) == 0, "write");
    cifar_record(buf, 5), cifar_record(buf + 3073, 6);
    REQUIRE(write_file(dir, "test_batch.bin", buf, 2 * 3073) == 0, "write");
    glow_dataset d;
    REQUIRE_OK(glow_dataset_load(&d, dir, "train", 0));
    REQUIRE(d.n == 3 && d.h == 32 && d.w == 32 && d.c == 3, "shape %dx%dx%dx%d", d.n, d.h, d.w, d.c);
    REQUIRE(d.labels && d.n_classes == 10, "labels");
    CHECK(d.labels[0] == 3 && d.labels[1] == 9 && d.labels[2] == 0, "labels %d %d %d", d.labels[0],
          d.labels[1], d.labels[2]);
    CHECK(d.class_names && strcmp(d.class_names[1], "automobile") == 0, "class names");
    int bad = 0;
    for (int i = 0; i < 3 && !bad; i++)
        for (int p = 0; p < 1024 && !bad; p++)
            for (int k = 0; k < 3; k++) {
                int got = d.pixels[((size_t)i * 1024 + p) * 3 + k];
                int want = (uint8_t)(3 * p + d.labels[i] + k);
                if (got != want) {
                    CHECK(0, "image %d pixel (%d,%d) channel %d: %d, want %d", i, p / 32, p % 32, k,
                          got, want);
                    bad = 1;
                    break;
                }
            }
    /* Pixel (0,1) of image 0: R = 3 + 3, G = 7, B = 8. */
    CHECK(d.pixels[3] == 6 && d.pixels[4] == 7 && d.pixels[5] == 8, "NHWC at (0,1): %d %d %d",
          d.pixels[3], d.pixels[4], d.pixels[5]);
    glow_dataset_free(&d);
    REQUIRE_OK(glow_dataset_load(&d, dir, "test", 0));
    CHECK(d.n == 2 && d.labels[0] == 5 && d.labels[1] == 6, "test split n %d", d.n);
    glow_dataset_free(&d);

    /* In a cifar-10-batches-bin subfolder, as the archive unpacks. */
    char parent[512], sub[1024];
    make_dir(parent, sizeof parent, "cifar_parent");
    snprintf(sub, sizeof sub, "%s/cifar-10-batches-bin", parent);
    mkdir(sub, 0755);
    REQUIRE(write_file(sub, "test_batch.bin", buf, 3073) == 0, "write");
    REQUIRE_OK(glow_dataset_load(&d, parent, "test", 0));
    CHECK(d.n == 1 && d.labels[0] == 5, "subfolder: n %d", d.n);
    glow_dataset_free(&d);

    /* Errors: a truncated batch, a label out of range, a missing train batch. */
    make_dir(dir, sizeof dir, "cifar_bad");
    REQUIRE(write_file(dir, "test_batch.bin", buf, 3073 + 100) == 0, "write");
    int rc = glow_dataset_load(&d, dir, "test", 0);
    CHECK(rc == GLOW_EFORMAT && message_has("test_batch.bin") && message_has("truncated"),
          "truncated: %d %s", rc, glow_last_error());
    rc = glow_dataset_load(&d, dir, "train", 0);
    CHECK(rc == GLOW_EIO && message_has("data_batch_1.bin"), "no train batches: %d %s", rc,
          glow_last_error());
    buf[0] = 10;
    REQUIRE(write_file(dir, "test_batch.bin", buf, 3073) == 0, "write");
    rc = glow_dataset_load(&d, dir, "test", 0);
    CHECK(rc == GLOW_EFORMAT && message_has("label 10"), "label 10: %d %s", rc, glow_last_error());
}

/* A folder of b.png (gray 8x8, constant 100), a.jpg (RGB 8x12, constant (200, 50, 10)),
 * c.png (RGB 16x16 constant (1, 2, 3)) and a stray notes.txt. */
static int make_image_folder(char *dir, size_t n, const char *name) {
    make_dir(dir, n, name);
    char path[1024];
    uint8_t px[16 * 16 * 3];
    memset(px, 100, sizeof px);
    snprintf(path, sizeof path, "%s/b.png", dir);
    if (glow_png_write(path, px, 8, 8, 1) != GLOW_OK) return -1;
    for (int i = 0; i < 8 * 12; i++) px[3 * i] = 200, px[3 * i + 1] = 50, px[3 * i + 2] = 10;
    snprintf(path, sizeof path, "%s/a.jpg", dir);
    if (test_write_jpeg(path, px, 8, 12, 3, 100) != 0) return -1;
    for (int i = 0; i < 16 * 16; i++) px[3 * i] = 1, px[3 * i + 1] = 2, px[3 * i + 2] = 3;
    snprintf(path, sizeof path, "%s/c.png", dir);
    if (glow_png_write(path, px, 16, 16, 3) != GLOW_OK) return -1;
    return write_file(dir, "notes.txt", "x", 1);
}

TEST(data_folder_celeba_attributes) {
    char dir[512];
    REQUIRE(make_image_folder(dir, sizeof dir, "faces") == 0, "make folder");
    const char *attrs = "4\n"
                        "Smiling Male  Young \n"
                        "a.jpg  1 -1  1\r\n"
                        "zzz.jpg -1 -1 -1\n"
                        "c.png -1 1 -1\n"
                        "b.png  1  1 -1\n";
    REQUIRE(write_file(dir, "list_attr_celeba.txt", attrs, strlen(attrs)) == 0, "write");
    glow_dataset d;
    REQUIRE_OK(glow_dataset_load(&d, dir, "train", 4));
    REQUIRE(d.n == 3 && d.h == 4 && d.w == 4 && d.c == 3, "shape %dx%dx%dx%d", d.n, d.h, d.w, d.c);
    REQUIRE(d.names, "no file names");
    CHECK(!strcmp(d.names[0], "a.jpg") && !strcmp(d.names[1], "b.png") && !strcmp(d.names[2], "c.png"),
          "order %s %s %s", d.names[0], d.names[1], d.names[2]);
    /* a.jpg is close to (200, 50, 10); b.png gray 100 replicated; c.png exactly (1, 2, 3). */
    const uint8_t *a = d.pixels, *b = d.pixels + 48, *c = d.pixels + 96;
    CHECK(abs(a[0] - 200) <= 3 && abs(a[1] - 50) <= 3 && abs(a[2] - 10) <= 3, "a.jpg %d %d %d",
          a[0], a[1], a[2]);
    int ok_b = 1, ok_c = 1;
    for (int i = 0; i < 48; i++) ok_b &= b[i] == 100, ok_c &= c[i] == i % 3 + 1;
    CHECK(ok_b, "gray image not replicated to RGB");
    CHECK(ok_c, "RGB 16x16 -> 4x4 not constant (1,2,3)");
    REQUIRE(d.n_attrs == 3 && d.attrs && d.attr_names, "n_attrs %d", d.n_attrs);
    CHECK(!strcmp(d.attr_names[0], "Smiling") && !strcmp(d.attr_names[2], "Young"), "names");
    const int8_t want[9] = {1, -1, 1, 1, 1, -1, -1, 1, -1};
    CHECK(memcmp(d.attrs, want, 9) == 0, "attribute values");
    CHECK(d.labels == NULL, "labels without labels.csv");

    /* A subset keeps names and attributes. */
    glow_dataset s;
    REQUIRE_OK(glow_dataset_subset(&s, &d, 1, 2));
    REQUIRE(s.names && s.attrs && s.attr_names && s.pixels, "subset lost names or attributes");
    CHECK(s.n == 2 && !strcmp(s.names[0], "b.png") && s.attrs[0] == 1 && s.attrs[5] == -1 &&
              s.n_attrs == 3 && !strcmp(s.attr_names[1], "Male") &&
              memcmp(s.pixels, d.pixels + 48, 96) == 0,
          "subset of a folder");
    glow_dataset_free(&s);
    glow_dataset_free(&d);

    /* Native size: the images disagree, which is an error naming the odd one. */
    int rc = glow_dataset_load(&d, dir, "train", 0);
    CHECK(rc == GLOW_EFORMAT && message_has("b.png") && message_has("8x8"), "native sizes: %d %s",
          rc, glow_last_error());

    /* A bad attribute value and a missing entry. */
    char name[1024];
    snprintf(name, sizeof name, "%s/list_attr_celeba.txt", dir);
    const char *bad = "3\nSmiling Male Young\na.jpg 1 -1 1\nb.png 1 0 -1\nc.png -1 1 -1\n";
    REQUIRE(write_file(dir, "list_attr_celeba.txt", bad, strlen(bad)) == 0, "write");
    rc = glow_dataset_load(&d, dir, "train", 4);
    CHECK(rc == GLOW_EFORMAT && message_has("list_attr_celeba.txt:4") && message_has("Male"),
          "bad value: %d %s", rc, glow_last_error());
    const char *missing = "2\nSmiling Male Young\na.jpg 1 -1 1\nc.png -1 1 -1\n";
    REQUIRE(write_file(dir, "list_attr_celeba.txt", missing, strlen(missing)) == 0, "write");
    rc = glow_dataset_load(&d, dir, "test", 4);
    CHECK(rc == GLOW_EFORMAT && message_has("b.png") && message_has("list_attr_celeba.txt"),
          "missing entry: %d %s", rc, glow_last_error());
    const char *shortf = "5\nSmiling Male Young\na.jpg 1 -1 1\nb.png 1 1 -1\nc.png -1 1 -1\n";
    REQUIRE(write_file(dir, "list_attr_celeba.txt", shortf, strlen(shortf)) == 0, "write");
    rc = glow_dataset_load(&d, dir, "test", 4);
    CHECK(rc == GLOW_EFORMAT && message_has("truncated"), "short file: %d %s", rc, glow_last_error());
}

TEST(data_folder_labels_and_attach) {
    char dir[512];
    REQUIRE(make_image_folder(dir, sizeof dir, "labelled") == 0, "make folder");
    const char *csv = "filename,label\nc.png,2\na.jpg,0\nb.png, 7\nother.png,1\n";
    REQUIRE(write_file(dir, "labels.csv", csv, strlen(csv)) == 0, "write");
    glow_dataset d;
    REQUIRE_OK(glow_dataset_load(&d, dir, NULL, 6));
    REQUIRE(d.n == 3 && d.labels, "n %d", d.n);
    CHECK(d.labels[0] == 0 && d.labels[1] == 7 && d.labels[2] == 2 && d.n_classes == 8,
          "labels %d %d %d, %d classes", d.labels[0], d.labels[1], d.labels[2], d.n_classes);
    CHECK(d.n_attrs == 0 && d.attrs == NULL, "attributes without a file");

    /* Attach attributes afterwards, from anywhere. */
    char attr[1024];
    snprintf(attr, sizeof attr, "%s/attrs.txt", test_tmpdir());
    const char *text = "3\nBangs\nc.png 1\nb.png -1\na.jpg 1\n";
    REQUIRE(write_file(test_tmpdir(), "attrs.txt", text, strlen(text)) == 0, "write");
    REQUIRE_OK(glow_dataset_load_attributes(&d, attr));
    CHECK(d.n_attrs == 1 && d.attrs[0] == 1 && d.attrs[1] == -1 && d.attrs[2] == 1, "attached");
    glow_dataset_free(&d);

    /* A label missing for b.png. */
    const char *partial = "a.jpg,0\nc.png,1\n";
    REQUIRE(write_file(dir, "labels.csv", partial, strlen(partial)) == 0, "write");
    int rc = glow_dataset_load(&d, dir, NULL, 6);
    CHECK(rc == GLOW_EFORMAT && message_has("labels.csv") && message_has("b.png"),
          "missing label: %d %s", rc, glow_last_error());
    const char *junk = "a.jpg,0\nb.png,seven\nc.png,1\n";
    REQUIRE(write_file(dir, "labels.csv", junk, strlen(junk)) == 0, "write");
    rc = glow_dataset_load(&d, dir, NULL, 6);
    CHECK(rc == GLOW_EFORMAT && message_has("labels.csv:2"), "bad label: %d %s", rc,
          glow_last_error());
    /* A first line that is an image's entry with a bad label is an error, not a header;
     * so is a negative or too large label there; a text header is skipped. */
    static const char *first[] = {"a.jpg,seven\nb.png,0\nc.png,1\n", "a.jpg,-3\nb.png,0\nc.png,1\n",
                                  "x.png,99999999\na.jpg,0\nb.png,0\nc.png,1\n"};
    for (int k = 0; k < 3; k++) {
        REQUIRE(write_file(dir, "labels.csv", first[k], strlen(first[k])) == 0, "write");
        rc = glow_dataset_load(&d, dir, NULL, 6);
        CHECK(rc == GLOW_EFORMAT && message_has("labels.csv:1"), "first line %s: %d %s",
              first[k], rc, glow_last_error());
    }
    const char *header = "file,class\na.jpg,2\nb.png,0\nc.png,1\n";
    REQUIRE(write_file(dir, "labels.csv", header, strlen(header)) == 0, "write");
    REQUIRE_OK(glow_dataset_load(&d, dir, NULL, 6));
    CHECK(d.labels && d.n_classes == 3, "with a header: %d classes", d.n_classes);
    glow_dataset_free(&d);

    /* Attributes need file names: not for an IDX set. */
    glow_dataset idx = {0};
    rc = glow_dataset_load_attributes(&idx, attr);
    CHECK(rc == GLOW_EINVAL, "attributes on a set without names: %d", rc);
}

TEST(data_folder_gray_and_unsupported) {
    char dir[512], path[1024];
    make_dir(dir, sizeof dir, "grayfolder");
    uint8_t px[6 * 6];
    for (int k = 0; k < 3; k++) {
        for (int i = 0; i < 36; i++) px[i] = (uint8_t)(k * 50 + i);
        snprintf(path, sizeof path, "%s/img%d.png", dir, k);
        REQUIRE_OK(glow_png_write(path, px, 6, 6, 1));
    }
    glow_dataset d;
    REQUIRE_OK(glow_dataset_load(&d, dir, "train", 0));
    CHECK(d.n == 3 && d.h == 6 && d.w == 6 && d.c == 1, "all gray: %dx%dx%dx%d", d.n, d.h, d.w, d.c);
    CHECK(d.pixels[2 * 36 + 5] == 105, "img2 pixel 5: %d", d.pixels[2 * 36 + 5]);
    glow_dataset_free(&d);
    /* A .png that is not an image. */
    REQUIRE(write_file(dir, "img1b.png", "hello", 5) == 0, "write");
    int rc = glow_dataset_load(&d, dir, "train", 0);
    CHECK(rc == GLOW_EFORMAT && message_has("img1b.png") && message_has("unsupported image"),
          "bad image: %d %s", rc, glow_last_error());
}

TEST(data_subset_shuffle_gather) {
    uint8_t buf[16 + 20 * 2 * 2];
    char dir[512], path[1024];
    make_dir(dir, sizeof dir, "batching");
    REQUIRE(write_file(dir, "s-images-idx3-ubyte", buf, idx_images(buf, 20, 2, 2, 0)) == 0, "w");
    REQUIRE(write_file(dir, "s-labels-idx1-ubyte", buf, idx_labels(buf, 20, 0)) == 0, "w");
    snprintf(path, sizeof path, "%s/s-images-idx3-ubyte", dir);
    glow_dataset d, s;
    REQUIRE_OK(glow_dataset_load(&d, path, NULL, 0));
    REQUIRE_OK(glow_dataset_subset(&s, &d, 15, 5));
    REQUIRE(s.labels && s.pixels, "subset lost its labels");
    CHECK(s.n == 5 && s.labels[0] == 5 && memcmp(s.pixels, d.pixels + 15 * 4, 20) == 0 &&
              s.n_classes == 10,
          "subset contents");
    glow_dataset_free(&s);
    CHECK(glow_dataset_subset(&s, &d, 15, 6) == GLOW_EINVAL, "subset past the end accepted");
    REQUIRE_OK(glow_dataset_subset(&s, &d, 20, 0));
    CHECK(s.n == 0, "empty subset");
    glow_dataset_free(&s);

    int a[20], b[20], c[20], seen[20] = {0};
    glow_dataset_shuffle_order(a, 20, 42, 0);
    glow_dataset_shuffle_order(b, 20, 42, 0);
    glow_dataset_shuffle_order(c, 20, 42, 1);
    int perm = 1, fixed = 0;
    for (int i = 0; i < 20; i++) {
        perm &= a[i] >= 0 && a[i] < 20 && !seen[a[i]]++;
        fixed += a[i] == i;
    }
    CHECK(perm, "not a permutation");
    CHECK(memcmp(a, b, sizeof a) == 0, "same (seed, epoch) gave different orders");
    CHECK(memcmp(a, c, sizeof a) != 0, "epochs 0 and 1 gave the same order");
    CHECK(fixed < 10, "%d of 20 fixed points: not shuffled", fixed);
    /* Every position is reached over many epochs (a crude uniformity check). */
    int hits[20] = {0};
    for (int e = 0; e < 400; e++) {
        glow_dataset_shuffle_order(c, 20, 7, e);
        hits[c[0]]++;
    }
    int lo = 400, hi = 0;
    for (int i = 0; i < 20; i++) lo = hits[i] < lo ? hits[i] : lo, hi = hits[i] > hi ? hits[i] : hi;
    CHECK(lo >= 5 && hi <= 45, "first element counts range %d..%d over 400 epochs", lo, hi);

    int idx[3] = {7, 0, 19}, labels[3];
    uint8_t px[3 * 4];
    glow_dataset_gather(px, labels, &d, idx, 3);
    CHECK(memcmp(px, d.pixels + 28, 4) == 0 && memcmp(px + 4, d.pixels, 4) == 0 &&
              memcmp(px + 8, d.pixels + 76, 4) == 0,
          "gathered pixels");
    CHECK(labels[0] == 7 && labels[1] == 0 && labels[2] == 9, "gathered labels");
    glow_dataset_free(&d);
    glow_dataset_free(&d); /* twice is safe */
}

TEST(data_fashion_mnist) {
    struct stat st;
    if (stat(FASHION_DIR, &st) != 0) {
        printf("(skipped: %s absent) ", FASHION_DIR);
        return;
    }
    glow_dataset d;
    REQUIRE_OK(glow_dataset_load(&d, FASHION_DIR, "test", 0));
    CHECK(d.n == 10000 && d.h == 28 && d.w == 28 && d.c == 1, "shape %dx%dx%dx%d", d.n, d.h, d.w,
          d.c);
    REQUIRE(d.labels, "no labels");
    int counts[10] = {0}, bad = 0;
    for (int i = 0; i < d.n; i++) {
        if (d.labels[i] < 0 || d.labels[i] > 9) bad++;
        else counts[d.labels[i]]++;
    }
    CHECK(!bad && d.n_classes == 10, "%d labels outside 0..9", bad);
    CHECK(counts[0] == 1000 && counts[9] == 1000, "class counts %d, %d (want 1000)", counts[0],
          counts[9]);
    REQUIRE_OK(glow_dataset_set_fashion_names(&d));
    CHECK(!strcmp(d.class_names[0], "T-shirt/top") && !strcmp(d.class_names[9], "Ankle boot"),
          "class names");
    glow_dataset_free(&d);
}

/* Headers that claim more than the file can hold are refused before anything is inflated
 * or allocated: 2^31 images, 65535 x 65535 pixels, and a gzip bomb (1 MB of zeros, about a
 * kilobyte gzipped) whose header claims 2^30 images. */
TEST(data_idx_hostile_headers) {
    char dir[512], path[1024];
    make_dir(dir, sizeof dir, "hostile");
    static const uint32_t claims[][3] = {{0x80000000u, 28, 28}, {10, 65535, 65535}, {1u << 30, 28, 28}};
    static const char *why[] = {"wrong dimensions", "wrong dimensions", "more than the file can hold"};
    size_t n = 16 + ((size_t)1 << 20);
    uint8_t *buf = calloc(n, 1);
    REQUIRE(buf, "out of memory");
    for (int k = 0; k < 3; k++) {
        put_be32(buf, 0x803), put_be32(buf + 4, claims[k][0]);
        put_be32(buf + 8, claims[k][1]), put_be32(buf + 12, claims[k][2]);
        REQUIRE(write_file(dir, "bomb-images-idx3-ubyte.gz", buf, n) == 0, "write");
        snprintf(path, sizeof path, "%s/bomb-images-idx3-ubyte.gz", dir);
        glow_dataset d;
        int rc = glow_dataset_load(&d, path, NULL, 0);
        CHECK(rc == GLOW_EFORMAT && message_has("bomb-images") && message_has(why[k]),
              "claim %u x %u x %u: %d %s", claims[k][0], claims[k][1], claims[k][2], rc,
              glow_last_error());
    }
    free(buf);
}

/* An attribute file with a million names is refused at once, past the stated limit. */
TEST(data_attributes_too_many_names) {
    char dir[512], path[1024];
    make_dir(dir, sizeof dir, "manynames");
    uint8_t px[4] = {1, 2, 3, 4};
    snprintf(path, sizeof path, "%s/a.png", dir);
    REQUIRE_OK(glow_png_write(path, px, 2, 2, 1));
    size_t n = 1000000, size = 16 + n * 8;
    char *text = malloc(size), *p = text;
    REQUIRE(text, "out of memory");
    p += sprintf(p, "1\n");
    for (size_t i = 0; i < n; i++) p += sprintf(p, "a%zu ", i % 100000);
    p += sprintf(p, "\na.png 1\n");
    REQUIRE(write_file(dir, "list_attr_celeba.txt", text, (size_t)(p - text)) == 0, "write");
    free(text);
    glow_dataset d;
    int rc = glow_dataset_load(&d, dir, NULL, 0);
    CHECK(rc == GLOW_EFORMAT && message_has("list_attr_celeba.txt") && message_has("4096"),
          "a million attribute names: %d %s", rc, glow_last_error());
}
