/* data.c: data sets in memory as uint8 NHWC arrays, from MNIST-style IDX files (plain or
 * gzipped), CIFAR-10 binary batches and folders of PNG/JPEG images with optional labels
 * (labels.csv) or CelebA attributes (list_attr_celeba.txt, both read by data_text.c); plus
 * subsets for shards, the per-epoch shuffle and batch gathering.
 *
 * Loaders check every size against the file before trusting it, so a corrupt header gives
 * a message ("<file>: truncated: ...") rather than a huge allocation or a crash. Every
 * failure leaves the glow_dataset zeroed. */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <zlib.h>
#include "backend.h"
#include "data.h"

/* glow_rng_key purpose of the epoch shuffle ("shuf"). */
#define RNG_PURPOSE_SHUFFLE 0x73687566u

#define PATH_MAX_LEN 4096

static int is_file(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}
static int is_dir(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

/* path := dir + "/" + name; GLOW_EINVAL if it does not fit. */
static int join(char *out, const char *dir, const char *name) {
    int n = snprintf(out, PATH_MAX_LEN, "%s/%s", dir, name);
    if (n < 0 || n >= PATH_MAX_LEN) return glow_fail(GLOW_EINVAL, "%s/%s: path too long", dir, name);
    return GLOW_OK;
}

int dataset_name_cmp(const void *a, const void *b) { return strcmp(a, b); }

void glow_dataset_free(glow_dataset *d) {
    if (!d) return;
    free(d->pixels), free(d->labels), free(d->attr_names), free(d->attrs);
    free(d->class_names), free(d->names);
    memset(d, 0, sizeof *d);
}

void dataset_count_classes(glow_dataset *d) {
    d->n_classes = 0;
    for (int i = 0; i < d->n; i++)
        if (d->labels[i] + 1 > d->n_classes) d->n_classes = d->labels[i] + 1;
}

static int set_class_names(glow_dataset *d, const char *const *names, int n) {
    free(d->class_names);
    d->class_names = calloc(n, sizeof *d->class_names);
    if (!d->class_names) return glow_fail(GLOW_ENOMEM, "out of memory");
    for (int k = 0; k < n; k++) snprintf(d->class_names[k], sizeof d->class_names[k], "%s", names[k]);
    return GLOW_OK;
}

int glow_dataset_set_fashion_names(glow_dataset *d) {
    static const char *const names[10] = {"T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                                          "Sandal",      "Shirt",   "Sneaker",  "Bag",   "Ankle boot"};
    if (!d->labels || d->n_classes < 1 || d->n_classes > 10)
        return glow_fail(GLOW_EINVAL, "Fashion-MNIST class names need labels in 0..9 (data set has "
                                      "%d classes)", d->n_classes);
    int rc = set_class_names(d, names, 10);
    if (rc == GLOW_OK) d->n_classes = 10;
    return rc;
}

/* ---------------------------------------------------------------- IDX -------------- */

/* Read exactly `size` bytes from a gz stream into a buffer grown as data arrives (so a
 * header that lies about its size cannot make us allocate more than the file holds, plus
 * a factor 2). *got receives the bytes read. */
static int gz_read_all(gzFile f, const char *path, size_t size, uint8_t **out, size_t *got) {
    size_t cap = size < ((size_t)1 << 24) ? size : (size_t)1 << 24, n = 0;
    uint8_t *buf = malloc(cap ? cap : 1);
    if (!buf) return glow_fail(GLOW_ENOMEM, "%s: out of memory", path);
    while (n < size) {
        if (n == cap) {
            cap = cap * 2 < size ? cap * 2 : size;
            uint8_t *p = realloc(buf, cap);
            if (!p) {
                free(buf);
                return glow_fail(GLOW_ENOMEM, "%s: out of memory (%zu bytes)", path, cap);
            }
            buf = p;
        }
        size_t want = cap - n < ((size_t)1 << 30) ? cap - n : (size_t)1 << 30;
        int r = gzread(f, buf + n, (unsigned)want);
        if (r <= 0) {
            int err;
            const char *msg = gzerror(f, &err);
            if (r < 0 || err == Z_DATA_ERROR) {
                free(buf);
                return glow_fail(GLOW_EFORMAT, "%s: corrupt gzip data: %s", path, msg);
            }
            break;
        }
        n += (size_t)r;
    }
    *out = buf, *got = n;
    return GLOW_OK;
}

/* The most bytes an IDX file can hold past its header: its size, or for a gzipped one
 * deflate's largest expansion (1032:1) of it. A header that claims more is refused before
 * anything is read or allocated (a gzip bomb with a lying header, say). */
static size_t idx_room(const char *path) {
    struct stat sb;
    if (stat(path, &sb) != 0) return 0;
    size_t size = (size_t)sb.st_size;
    FILE *f = fopen(path, "rb");
    unsigned char m[2] = {0, 0};
    int gz = f && fread(m, 1, 2, f) == 2 && m[0] == 0x1f && m[1] == 0x8b;
    if (f) fclose(f);
    return gz ? 1032 * size + 1024 : size;
}

/* Header of an IDX file: magic 0x00 0x00 type ndims, then ndims big-endian uint32. */
static int idx_header(gzFile f, const char *path, int want_dims_lo, int want_dims_hi,
                      const char *what, int *ndims, uint32_t dims[4]) {
    uint8_t b[4];
    int r = gzread(f, b, 4);
    uint32_t magic = r == 4 ? (uint32_t)b[0] << 24 | b[1] << 16 | b[2] << 8 | b[3] : 0;
    if (r != 4)
        return glow_fail(GLOW_EFORMAT, "%s: truncated: no IDX header (%d bytes)", path, r < 0 ? 0 : r);
    if (b[0] != 0 || b[1] != 0 || b[2] != 0x08 || b[3] < want_dims_lo || b[3] > want_dims_hi)
        return glow_fail(GLOW_EFORMAT, "%s: wrong magic 0x%08x: not an IDX %s file (expected "
                         "0x%08x)", path, magic, what, 0x800 + want_dims_lo);
    *ndims = b[3];
    for (int k = 0; k < *ndims; k++) {
        if (gzread(f, b, 4) != 4)
            return glow_fail(GLOW_EFORMAT, "%s: truncated IDX header", path);
        dims[k] = (uint32_t)b[0] << 24 | b[1] << 16 | b[2] << 8 | b[3];
    }
    return GLOW_OK;
}

static int idx_load_images(glow_dataset *d, const char *path) {
    gzFile f = gzopen(path, "rb");
    if (!f) return glow_fail(GLOW_EIO, "%s: cannot open: %s", path, strerror(errno ? errno : ENOENT));
    int ndims;
    uint32_t dims[4] = {0, 0, 0, 1};
    int rc = idx_header(f, path, 3, 4, "image", &ndims, dims);
    if (rc == GLOW_OK && (dims[0] > 1u << 30 || dims[1] < 1 || dims[2] < 1 || dims[3] < 1 ||
                          dims[1] > GLOW_MAX_IMAGE_SIDE || dims[2] > GLOW_MAX_IMAGE_SIDE ||
                          dims[3] > 4))
        rc = glow_fail(GLOW_EFORMAT, "%s: wrong dimensions %u x %u x %u x %u", path, dims[0],
                       dims[1], dims[2], dims[3]);
    size_t image = (size_t)dims[1] * dims[2] * dims[3], want = dims[0] * image, got = 0;
    uint8_t *px = NULL;
    if (rc == GLOW_OK && want > idx_room(path))
        rc = glow_fail(GLOW_EFORMAT, "%s: truncated: the header claims %u images of %ux%ux%u "
                       "(%zu bytes), more than the file can hold", path, dims[0], dims[1], dims[2], dims[3],
                       want);
    if (rc == GLOW_OK) rc = gz_read_all(f, path, want, &px, &got);
    gzclose(f);
    if (rc == GLOW_OK && got < want) {
        free(px);
        return glow_fail(GLOW_EFORMAT, "%s: truncated: header says %u images of %ux%ux%u "
                         "(%zu bytes), file holds %zu", path, dims[0], dims[1], dims[2], dims[3],
                         want, got);
    }
    if (rc != GLOW_OK) return rc;
    d->n = (int)dims[0], d->h = (int)dims[1], d->w = (int)dims[2], d->c = (int)dims[3];
    d->pixels = px;
    return GLOW_OK;
}

static int idx_load_labels(glow_dataset *d, const char *path, const char *images_path) {
    gzFile f = gzopen(path, "rb");
    if (!f) return glow_fail(GLOW_EIO, "%s: cannot open: %s", path, strerror(errno ? errno : ENOENT));
    int ndims;
    uint32_t dims[4];
    int rc = idx_header(f, path, 1, 1, "label", &ndims, dims);
    if (rc == GLOW_OK && dims[0] != (uint32_t)d->n)
        rc = glow_fail(GLOW_EFORMAT, "%s: %u labels for the %d images of %s", path, dims[0],
                       d->n, images_path);
    uint8_t *b = NULL;
    size_t got = 0;
    if (rc == GLOW_OK) rc = gz_read_all(f, path, (size_t)d->n, &b, &got);
    gzclose(f);
    if (rc == GLOW_OK && got < (size_t)d->n)
        rc = glow_fail(GLOW_EFORMAT, "%s: truncated: header says %d labels, file holds %zu",
                       path, d->n, got);
    if (rc == GLOW_OK && !(d->labels = malloc((size_t)d->n * sizeof *d->labels)))
        rc = glow_fail(GLOW_ENOMEM, "%s: out of memory", path);
    if (rc == GLOW_OK) {
        for (int i = 0; i < d->n; i++) d->labels[i] = b[i];
        dataset_count_classes(d);
    }
    free(b);
    return rc;
}

/* The label file that goes with an IDX image file: "-images-idx3" -> "-labels-idx1" in
 * the file name, first with the same .gz-ness, then the other; "" if none exists. */
static void idx_label_path(char *out, const char *images) {
    out[0] = 0;
    const char *base = strrchr(images, '/');
    base = base ? base + 1 : images;
    const char *m = strstr(base, "images-idx3");
    if (!m || strlen(images) + 4 >= PATH_MAX_LEN) return;
    char cand[PATH_MAX_LEN];
    size_t pre = (size_t)(m - images);
    snprintf(cand, sizeof cand, "%.*slabels-idx1%s", (int)pre, images, m + strlen("images-idx3"));
    if (is_file(cand)) {
        strcpy(out, cand);
        return;
    }
    size_t n = strlen(cand);
    if (n > 3 && strcmp(cand + n - 3, ".gz") == 0) cand[n - 3] = 0;
    else strcat(cand, ".gz");
    if (is_file(cand)) strcpy(out, cand);
}

static int idx_load(glow_dataset *d, const char *path) {
    int rc = idx_load_images(d, path);
    char labels[PATH_MAX_LEN];
    idx_label_path(labels, path);
    if (rc == GLOW_OK && labels[0]) rc = idx_load_labels(d, labels, path);
    return rc;
}

/* ---------------------------------------------------------------- CIFAR-10 --------- */

enum { CIFAR_SIDE = 32, CIFAR_PLANE = 32 * 32, CIFAR_RECORD = 1 + 3 * 32 * 32 };

/* Append the records of one batch file: 1 label byte, then the R, G and B planes (row
 * major), turned into NHWC. */
static int cifar_append(glow_dataset *d, const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return glow_fail(GLOW_EIO, "%s: cannot open: %s", path, strerror(errno));
    long size = -1;
    if (fseek(f, 0, SEEK_END) == 0) size = ftell(f);
    rewind(f);
    if (size <= 0 || size % CIFAR_RECORD != 0) {
        fclose(f);
        return glow_fail(GLOW_EFORMAT, "%s: truncated or not a CIFAR-10 batch: %ld bytes is not "
                         "a positive multiple of %d (1 label byte + 3072 pixel bytes)", path,
                         size, CIFAR_RECORD);
    }
    int m = (int)(size / CIFAR_RECORD);
    size_t image = (size_t)3 * CIFAR_PLANE;
    uint8_t *px = realloc(d->pixels, ((size_t)d->n + m) * image);
    if (px) d->pixels = px;
    int *lab = px ? realloc(d->labels, ((size_t)d->n + m) * sizeof *lab) : NULL;
    if (lab) d->labels = lab;
    uint8_t rec[CIFAR_RECORD];
    int rc = px && lab ? GLOW_OK : glow_fail(GLOW_ENOMEM, "%s: out of memory", path);
    for (int i = 0; i < m && rc == GLOW_OK; i++) {
        if (fread(rec, 1, CIFAR_RECORD, f) != CIFAR_RECORD) {
            rc = glow_fail(GLOW_EIO, "%s: read error at record %d", path, i);
            break;
        }
        if (rec[0] > 9) {
            rc = glow_fail(GLOW_EFORMAT, "%s: record %d has label %d; CIFAR-10 labels are 0..9",
                           path, i, rec[0]);
            break;
        }
        uint8_t *dst = d->pixels + ((size_t)d->n + i) * image;
        for (int p = 0; p < CIFAR_PLANE; p++)
            for (int k = 0; k < 3; k++) dst[p * 3 + k] = rec[1 + k * CIFAR_PLANE + p];
        d->labels[d->n + i] = rec[0];
    }
    fclose(f);
    if (rc == GLOW_OK) d->n += m;
    return rc;
}

static int cifar_dir(const char *dir) {
    char p[PATH_MAX_LEN + 64];
    if (join(p, dir, "test_batch.bin") == GLOW_OK && is_file(p)) return 1;
    for (int b = 1; b <= 5; b++) {
        snprintf(p, sizeof p, "%s/data_batch_%d.bin", dir, b);
        if (is_file(p)) return 1;
    }
    return 0;
}

static int cifar_load(glow_dataset *d, const char *dir, int train) {
    static const char *const names[10] = {"airplane", "automobile", "bird",  "cat",  "deer",
                                          "dog",      "frog",       "horse", "ship", "truck"};
    d->h = d->w = CIFAR_SIDE, d->c = 3;
    char p[PATH_MAX_LEN + 64];
    int rc = GLOW_OK;
    if (train) {
        for (int b = 1; b <= 5 && rc == GLOW_OK; b++) {
            snprintf(p, sizeof p, "%s/data_batch_%d.bin", dir, b);
            if (is_file(p)) rc = cifar_append(d, p);
        }
        if (rc == GLOW_OK && d->n == 0)
            rc = glow_fail(GLOW_EIO, "%s: no data_batch_1.bin .. data_batch_5.bin for split "
                           "train", dir);
    } else {
        rc = join(p, dir, "test_batch.bin");
        if (rc == GLOW_OK) rc = is_file(p) ? cifar_append(d, p)
                                           : glow_fail(GLOW_EIO, "%s: missing (split test)", p);
    }
    if (rc == GLOW_OK) rc = set_class_names(d, names, 10);
    d->n_classes = 10;
    return rc;
}

/* ---------------------------------------------------------------- image folders ---- */

static int has_image_ext(const char *name) {
    const char *dot = strrchr(name, '.');
    return dot && (!strcasecmp(dot, ".png") || !strcasecmp(dot, ".jpg") || !strcasecmp(dot, ".jpeg"));
}

/* The image file names of a folder, sorted by strcmp. */
static int list_images(const char *dir, char (**names)[256], int *n) {
    DIR *dp = opendir(dir);
    if (!dp) return glow_fail(GLOW_EIO, "%s: cannot open folder: %s", dir, strerror(errno));
    char(*v)[256] = NULL;
    int count = 0, cap = 0, rc = GLOW_OK;
    char p[PATH_MAX_LEN + 64];
    for (struct dirent *e; (e = readdir(dp));) {
        if (e->d_name[0] == '.' || !has_image_ext(e->d_name)) continue;
        if (strlen(e->d_name) >= sizeof *v) {
            rc = glow_fail(GLOW_EFORMAT, "%s/%s: file name too long (255 characters at most)",
                           dir, e->d_name);
            break;
        }
        if ((rc = join(p, dir, e->d_name)) != GLOW_OK) break;
        if (!is_file(p)) continue;
        if (count == cap) {
            cap = cap ? cap * 2 : 256;
            char(*q)[256] = realloc(v, (size_t)cap * sizeof *v);
            if (!q) {
                rc = glow_fail(GLOW_ENOMEM, "%s: out of memory listing files", dir);
                break;
            }
            v = q;
        }
        snprintf(v[count++], sizeof *v, "%s", e->d_name);
    }
    closedir(dp);
    if (rc != GLOW_OK) {
        free(v);
        return rc;
    }
    if (count > 1) qsort(v, count, sizeof *v, dataset_name_cmp);
    *names = v, *n = count;
    return GLOW_OK;
}

/* Decode one image and store it in a 3-channel slot (gray replicated), fitted to (h,w)
 * if size > 0, else required to be h x w. *channels receives its own channel count. */
static int folder_image(uint8_t *slot, int *channels, const char *path, int size, int h, int w) {
    uint8_t *px;
    int ih, iw, ic;
    int rc = glow_image_read(path, &px, &ih, &iw, &ic);
    if (rc != GLOW_OK) return rc;
    if (size <= 0 && (ih != h || iw != w)) {
        free(px);
        return glow_fail(GLOW_EFORMAT, "%s: wrong dimensions %dx%d; the first image is %dx%d "
                         "(give an image size to resize them all)", path, ih, iw, h, w);
    }
    uint8_t *fitted = px;
    if (size > 0 && !(fitted = malloc((size_t)h * w * ic))) {
        free(px);
        return glow_fail(GLOW_ENOMEM, "%s: out of memory", path);
    }
    if (size > 0 && glow_image_fit(fitted, size, px, ih, iw, ic) != GLOW_OK) {
        free(px), free(fitted);
        return glow_fail(GLOW_ENOMEM, "%s: %s", path, glow_last_error());
    }
    for (size_t p = 0; p < (size_t)h * w; p++)
        for (int k = 0; k < 3; k++) slot[p * 3 + k] = fitted[p * ic + (ic == 3 ? k : 0)];
    if (fitted != px) free(fitted);
    free(px);
    *channels = ic;
    return GLOW_OK;
}

/* Decoding one image of a folder, for parallel_for. */
typedef struct folder_job {
    glow_dataset *d;
    const char *dir;
    int size, h, w;
    uint8_t *chans;
    int *status;
} folder_job;

static int folder_image_at(const folder_job *j, int i) {
    char path[PATH_MAX_LEN];
    int ch = 0, r = join(path, j->dir, j->d->names[i]);
    if (r == GLOW_OK)
        r = folder_image(j->d->pixels + (size_t)j->h * j->w * 3 * i, &ch, path, j->size, j->h, j->w);
    j->chans[i] = (uint8_t)ch;
    return r;
}

static void decode_one(void *arg, int i) {
    folder_job *j = arg;
    j->status[i] = folder_image_at(j, i);
}

static int folder_load(glow_dataset *d, const char *dir, int size) {
    int rc = list_images(dir, &d->names, &d->n);
    if (rc != GLOW_OK) return rc;
    if (d->n == 0)
        return glow_fail(GLOW_EFORMAT, "%s: no data set here: no PNG or JPEG images, IDX or "
                         "CIFAR-10 files", dir);
    char p[PATH_MAX_LEN + 64];
    if ((rc = join(p, dir, d->names[0])) != GLOW_OK) return rc;
    int h = size, w = size;
    if (size <= 0) { /* the first image fixes the size */
        uint8_t *px;
        int c;
        if ((rc = glow_image_read(p, &px, &h, &w, &c)) != GLOW_OK) return rc;
        free(px);
    }
    size_t slot = (size_t)h * w * 3;
    uint8_t *chans = malloc((size_t)d->n);
    int *status = malloc(sizeof(int) * d->n);
    d->pixels = malloc(slot * d->n);
    if (!chans || !status || !d->pixels) {
        free(chans), free(status);
        return glow_fail(GLOW_ENOMEM, "%s: out of memory for %d images of %dx%d", dir, d->n, h, w);
    }
    d->h = h, d->w = w;
    /* Decoding dominates (CelebA: 200k JPEGs), so images are decoded in parallel; the
     * failure reported is the one of the first bad file in name order, decoded again here
     * for its message (the workers' messages are their threads'). */
    folder_job job = {d, dir, size, h, w, chans, status};
    parallel_for(d->n, decode_one, &job);
    for (int i = 0; i < d->n && rc == GLOW_OK; i++)
        if (status[i] != GLOW_OK) rc = folder_image_at(&job, i);
    int all_gray = 1;
    for (int i = 0; i < d->n && all_gray; i++) all_gray = chans[i] == 1;
    free(chans), free(status);
    if (rc != GLOW_OK) return rc;
    d->c = 3;
    if (all_gray) { /* keep one channel */
        for (size_t p = 0; p < (size_t)d->n * h * w; p++) d->pixels[p] = d->pixels[p * 3];
        uint8_t *q = realloc(d->pixels, (size_t)d->n * h * w);
        if (q) d->pixels = q;
        d->c = 1;
    }
    if ((rc = join(p, dir, "list_attr_celeba.txt")) != GLOW_OK) return rc;
    if (is_file(p) && (rc = glow_dataset_load_attributes(d, p)) != GLOW_OK) return rc;
    if ((rc = join(p, dir, "labels.csv")) != GLOW_OK) return rc;
    if (is_file(p) && (rc = dataset_load_labels_csv(d, p)) != GLOW_OK) return rc;
    return GLOW_OK;
}

/* ---------------------------------------------------------------- loading ---------- */

typedef struct fit_job {
    const glow_dataset *d;
    uint8_t *px;
    int size;
    volatile int failed; /* any image's resize ran out of memory */
} fit_job;

static void fit_one(void *arg, int i) {
    fit_job *j = arg;
    const glow_dataset *d = j->d;
    if (glow_image_fit(j->px + (size_t)j->size * j->size * d->c * i, j->size,
                       d->pixels + (size_t)i * d->h * d->w * d->c, d->h, d->w, d->c) != GLOW_OK)
        j->failed = 1;
}

/* Fit every image to size x size (IDX and CIFAR sets with image_size given). */
static int fit_all(glow_dataset *d, int size, const char *path) {
    if (size <= 0 || (d->h == size && d->w == size)) return GLOW_OK;
    size_t image = (size_t)size * size * d->c;
    uint8_t *px = malloc(image * d->n);
    if (!px) return glow_fail(GLOW_ENOMEM, "%s: out of memory resizing to %d", path, size);
    fit_job job = {d, px, size, 0};
    parallel_for(d->n, fit_one, &job);
    if (job.failed) {
        free(px);
        return glow_fail(GLOW_ENOMEM, "%s: out of memory resizing to %d", path, size);
    }
    free(d->pixels);
    d->pixels = px, d->h = d->w = size;
    return GLOW_OK;
}

static int dir_load(glow_dataset *d, const char *dir, const char *split, int size) {
    int train = strcmp(split, "train") == 0, test = strcmp(split, "test") == 0;
    const char *pre = train ? "train" : "t10k";
    static const char *const kinds[2] = {"train-images-idx3-ubyte", "t10k-images-idx3-ubyte"};
    char p[PATH_MAX_LEN + 64];
    int mnist = 0;
    for (int k = 0; k < 2 && !mnist; k++)
        for (int gz = 0; gz < 2 && !mnist; gz++) {
            snprintf(p, sizeof p, "%s/%s%s", dir, kinds[k], gz ? ".gz" : "");
            mnist = is_file(p);
        }
    char sub[PATH_MAX_LEN];
    int rc = join(sub, dir, "cifar-10-batches-bin");
    if (rc != GLOW_OK) return rc;
    int cifar = cifar_dir(dir) ? 1 : is_dir(sub) && cifar_dir(sub) ? 2 : 0;
    if ((mnist || cifar) && !train && !test)
        return glow_fail(GLOW_EINVAL, "%s: unknown split '%s' (train or test)", dir, split);
    if (mnist) {
        snprintf(p, sizeof p, "%s/%s-images-idx3-ubyte", dir, pre);
        if (!is_file(p)) strcat(p, ".gz");
        if (!is_file(p))
            return glow_fail(GLOW_EIO, "%s: missing (split %s)", p, split);
        return idx_load(d, p);
    }
    if (cifar) return cifar_load(d, cifar == 1 ? dir : sub, train);
    return folder_load(d, dir, size);
}

int glow_dataset_load(glow_dataset *d, const char *path, const char *split, int image_size) {
    memset(d, 0, sizeof *d);
    if (!split) split = "train";
    if (image_size < 0 || image_size > 1 << 14)
        return glow_fail(GLOW_EINVAL, "%s: bad image size %d", path, image_size);
    if (strlen(path) + 64 >= PATH_MAX_LEN) return glow_fail(GLOW_EINVAL, "%s: path too long", path);
    struct stat st;
    if (stat(path, &st) != 0) return glow_fail(GLOW_EIO, "%s: %s", path, strerror(errno));
    int rc = S_ISDIR(st.st_mode) ? dir_load(d, path, split, image_size) : idx_load(d, path);
    if (rc == GLOW_OK) rc = fit_all(d, image_size, path);
    if (rc != GLOW_OK) glow_dataset_free(d);
    return rc;
}

/* ---------------------------------------------------------------- batches ---------- */

int glow_dataset_subset(glow_dataset *out, const glow_dataset *d, int start, int count) {
    memset(out, 0, sizeof *out);
    if (start < 0 || count < 0 || start > d->n || count > d->n - start)
        return glow_fail(GLOW_EINVAL, "subset [%d, %d) is outside the %d images", start,
                         start + count, d->n);
    size_t image = (size_t)d->h * d->w * d->c;
    out->n = count, out->h = d->h, out->w = d->w, out->c = d->c;
    out->n_classes = d->n_classes, out->n_attrs = d->n_attrs;
    int ok = (out->pixels = malloc(image * count + 1)) != NULL;
#define COPY(field, first, elems)                                                          \
    if (ok && d->field) {                                                                  \
        ok = (out->field = malloc(sizeof *d->field * (elems) + 1)) != NULL;                \
        if (ok) memcpy(out->field, d->field + (first), sizeof *d->field * (elems));        \
    }
    COPY(labels, start, count)
    COPY(attrs, (size_t)start * d->n_attrs, (size_t)count * d->n_attrs)
    COPY(names, start, count)
    COPY(attr_names, 0, d->n_attrs)
    COPY(class_names, 0, d->n_classes)
#undef COPY
    if (!ok) {
        glow_dataset_free(out);
        return glow_fail(GLOW_ENOMEM, "subset: out of memory");
    }
    memcpy(out->pixels, d->pixels + image * start, image * count);
    return GLOW_OK;
}

void glow_dataset_shuffle_order(int *order, int n, uint64_t seed, uint64_t epoch) {
    uint64_t key = glow_rng_key(seed, RNG_PURPOSE_SHUFFLE, epoch, 0);
    for (int i = 0; i < n; i++) order[i] = i;
    for (int i = n - 1; i > 0; i--) {
        int j = (int)(glow_rng_uniform(key, (uint64_t)i) * (i + 1));
        int t = order[i];
        order[i] = order[j], order[j] = t;
    }
}

void glow_dataset_gather(uint8_t *pixels, int *labels, const glow_dataset *d, const int *idx,
                         int count) {
    size_t image = (size_t)d->h * d->w * d->c;
    for (int k = 0; k < count; k++) {
        memcpy(pixels + image * k, d->pixels + image * idx[k], image);
        if (labels) labels[k] = d->labels ? d->labels[idx[k]] : 0;
    }
}
