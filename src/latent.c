/* latent.c: working in latent space, and the files latents live in.
 *
 * Latents and directions are stored as NumPy files so that any tool can read them:
 * .npy (format 1.0, little-endian, C order) for one array, and an uncompressed .npz (a zip
 * of .npy members) for the attribute directions with their names and counts. Reading
 * accepts what this file writes and the common variants NumPy writes (format 1.0-3.0). */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>
#include "glow.h"

/* ---- latent-space operations ----------------------------------------------------------- */

void glow_latent_lerp(glow_real *out, const glow_real *za, const glow_real *zb, size_t dim,
                      int steps) {
    for (int s = 0; s < steps; s++) {
        double t = steps > 1 ? (double)s / (steps - 1) : 0;
        for (size_t i = 0; i < dim; i++)
            out[s * dim + i] = (glow_real)((1 - t) * za[i] + t * zb[i]);
    }
}

void glow_latent_shift(glow_real *out, const glow_real *z, const glow_real *direction,
                       const double *alphas, int n, size_t dim) {
    for (int s = 0; s < n; s++)
        for (size_t i = 0; i < dim; i++) out[s * dim + i] = (glow_real)(z[i] + alphas[s] * direction[i]);
}

int glow_directions_compute(glow_directions *d, const glow_real *z, int n, size_t dim,
                            const int8_t *attrs, int n_attrs, const char (*names)[64]) {
    memset(d, 0, sizeof *d);
    d->n = n_attrs, d->dim = dim;
    d->names = calloc(n_attrs, sizeof *d->names);
    d->n_pos = calloc(n_attrs, sizeof *d->n_pos);
    d->n_neg = calloc(n_attrs, sizeof *d->n_neg);
    d->z = calloc((size_t)n_attrs * dim, sizeof *d->z);
    double *pos = calloc(dim, sizeof(double)), *neg = calloc(dim, sizeof(double));
    if (!d->names || !d->n_pos || !d->n_neg || !d->z || !pos || !neg) {
        free(pos), free(neg);
        glow_directions_free(d);
        return glow_fail(GLOW_ENOMEM, "out of memory for %d directions", n_attrs);
    }
    for (int a = 0; a < n_attrs; a++) {
        snprintf(d->names[a], sizeof d->names[a], "%s", names[a]);
        memset(pos, 0, sizeof(double) * dim);
        memset(neg, 0, sizeof(double) * dim);
        for (int j = 0; j < n; j++) {
            double *acc = attrs[(size_t)j * n_attrs + a] > 0 ? pos : neg;
            (attrs[(size_t)j * n_attrs + a] > 0 ? d->n_pos : d->n_neg)[a]++;
            for (size_t i = 0; i < dim; i++) acc[i] += z[(size_t)j * dim + i];
        }
        if (d->n_pos[a] == 0 || d->n_neg[a] == 0) {
            free(pos), free(neg);
            int np = (int)d->n_pos[a];
            glow_directions_free(d);
            return glow_fail(GLOW_EINVAL, "attribute '%s': no %s examples among %d", names[a],
                             np ? "negative" : "positive", n);
        }
        for (size_t i = 0; i < dim; i++)
            d->z[(size_t)a * dim + i] = (float)(pos[i] / d->n_pos[a] - neg[i] / d->n_neg[a]);
    }
    free(pos), free(neg);
    return GLOW_OK;
}

void glow_directions_free(glow_directions *d) {
    free(d->names), free(d->n_pos), free(d->n_neg), free(d->z);
    memset(d, 0, sizeof *d);
}

int glow_directions_find(const glow_directions *d, const char *name) {
    for (int a = 0; a < d->n; a++)
        if (!strcmp(d->names[a], name)) return a;
    return -1;
}

/* ---- .npy ------------------------------------------------------------------------------- */

/* The header of a version 1.0 .npy file for a C-order array, padded to 64 bytes. */
static size_t npy_header(char *buf, size_t size, const char *descr, int ndim, const size_t *shape) {
    char dict[256], dims[128] = "";
    for (int i = 0; i < ndim; i++) {
        size_t len = strlen(dims);
        snprintf(dims + len, sizeof dims - len, "%zu%s", shape[i], ndim == 1 || i < ndim - 1 ? ", " : "");
    }
    snprintf(dict, sizeof dict, "{'descr': '%s', 'fortran_order': False, 'shape': (%s), }", descr, dims);
    size_t n = strlen(dict), total = 10 + n + 1;
    size_t padded = (total + 63) / 64 * 64;
    if (padded > size) return 0;
    memcpy(buf, "\x93NUMPY\x01\x00", 8);
    size_t hlen = padded - 10;
    buf[8] = (char)(hlen & 0xff), buf[9] = (char)(hlen >> 8);
    memcpy(buf + 10, dict, n);
    memset(buf + 10 + n, ' ', padded - total);
    buf[padded - 1] = '\n';
    return padded;
}

/* Serialise one array as .npy into a malloc'd buffer. elem: 4 (f4/i4), 8 (i8), 128 (U32). */
static unsigned char *npy_encode(size_t *size, const char *descr, int ndim, const size_t *shape,
                                 const void *data, size_t elem) {
    char head[512];
    size_t h = npy_header(head, sizeof head, descr, ndim, shape), count = 1;
    for (int i = 0; i < ndim; i++) count *= shape[i];
    unsigned char *buf = malloc(h + count * elem);
    if (!buf || !h) {
        free(buf);
        return NULL;
    }
    memcpy(buf, head, h);
    memcpy(buf + h, data, count * elem);
    *size = h + count * elem;
    return buf;
}

/* Write a buffer to path through a temporary file and a rename. */
static int write_file(const char *path, const unsigned char *data, size_t size) {
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "wb");
    if (!f) return glow_fail(GLOW_EIO, "%s: cannot open for writing", path);
    int ok = fwrite(data, 1, size, f) == size;
    ok &= fclose(f) == 0;
    if (!ok || rename(tmp, path) != 0) {
        remove(tmp);
        return glow_fail(GLOW_EIO, "%s: write failed", path);
    }
    return GLOW_OK;
}

int glow_npy_write(const char *path, const glow_real *data, size_t rows, size_t cols) {
    float *f = malloc(sizeof(float) * (rows * cols > 0 ? rows * cols : 1));
    if (!f) return glow_fail(GLOW_ENOMEM, "out of memory");
    for (size_t i = 0; i < rows * cols; i++) f[i] = (float)data[i];
    size_t shape[2] = {rows, cols}, size;
    unsigned char *buf = npy_encode(&size, "<f4", 2, shape, f, 4);
    free(f);
    if (!buf) return glow_fail(GLOW_ENOMEM, "out of memory");
    int rc = write_file(path, buf, size);
    free(buf);
    return rc;
}

int glow_npy_write_labels(const char *path, const int *labels, size_t n) {
    int32_t *v = malloc(sizeof(int32_t) * (n ? n : 1));
    if (!v) return glow_fail(GLOW_ENOMEM, "out of memory");
    for (size_t i = 0; i < n; i++) v[i] = labels[i];
    size_t size;
    unsigned char *buf = npy_encode(&size, "<i4", 1, &n, v, 4);
    free(v);
    if (!buf) return glow_fail(GLOW_ENOMEM, "out of memory");
    int rc = write_file(path, buf, size);
    free(buf);
    return rc;
}

#define NPY_MAX_CHARS 1024 /* the longest unicode dtype read (<U1024) */

typedef struct npy_view {
    char descr[16];
    int ndim;
    size_t shape[4], count;
    const unsigned char *data;
} npy_view;

/* Parse a .npy image in memory; `what` names it in messages. */
static int npy_parse(npy_view *v, const unsigned char *buf, size_t size, const char *what) {
    memset(v, 0, sizeof *v);
    if (size < 10 || memcmp(buf, "\x93NUMPY", 6))
        return glow_fail(GLOW_EFORMAT, "%s: not a NumPy .npy file", what);
    size_t hlen, start;
    if (buf[6] == 1) hlen = buf[8] | buf[9] << 8, start = 10;
    else if (buf[6] == 2 || buf[6] == 3) {
        if (size < 12) return glow_fail(GLOW_EFORMAT, "%s: truncated .npy header", what);
        hlen = buf[8] | buf[9] << 8 | (size_t)buf[10] << 16 | (size_t)buf[11] << 24, start = 12;
    } else return glow_fail(GLOW_EFORMAT, "%s: unsupported .npy version %d", what, buf[6]);
    if (start + hlen > size || hlen > 4096) return glow_fail(GLOW_EFORMAT, "%s: truncated .npy header", what);
    char head[4100];
    memcpy(head, buf + start, hlen);
    head[hlen] = 0;
    const char *d = strstr(head, "'descr':"), *f = strstr(head, "'fortran_order':"),
               *s = strstr(head, "'shape':");
    if (!d || !f || !s) return glow_fail(GLOW_EFORMAT, "%s: malformed .npy header", what);
    if (sscanf(d + 8, " '%15[^']'", v->descr) != 1)
        return glow_fail(GLOW_EFORMAT, "%s: malformed dtype in .npy header", what);
    if (!strncmp(f + 16, " True", 5))
        return glow_fail(GLOW_EFORMAT, "%s: Fortran-order arrays are not supported", what);
    /* The element size from the dtypes glow reads: floats and integers of 4 or 8 bytes,
     * and unicode strings of up to NPY_MAX_CHARS characters (4 bytes each). */
    size_t elem = 0;
    if (!strcmp(v->descr, "<f4") || !strcmp(v->descr, "<i4")) elem = 4;
    else if (!strcmp(v->descr, "<f8") || !strcmp(v->descr, "<i8")) elem = 8;
    else if (!strncmp(v->descr, "<U", 2)) {
        char *end;
        unsigned long chars = strtoul(v->descr + 2, &end, 10);
        if (*end == 0 && chars >= 1 && chars <= NPY_MAX_CHARS) elem = 4 * chars;
    }
    if (!elem) return glow_fail(GLOW_EFORMAT, "%s: unsupported dtype '%s'", what, v->descr);
    const char *p = strchr(s, '(');
    if (!p) return glow_fail(GLOW_EFORMAT, "%s: malformed shape in .npy header", what);
    p++;
    /* The element count, checked against the bytes that follow the header before anything
     * is multiplied out: a shape like (2^62, 2) is refused here. */
    size_t room = (size - start - hlen) / elem;
    v->count = 1;
    while (*p && *p != ')') {
        char *end;
        errno = 0;
        unsigned long long dim = strtoull(p, &end, 10);
        if (end == p) break;
        if (*p == '-' || errno == ERANGE)
            return glow_fail(GLOW_EFORMAT, "%s: malformed shape in .npy header", what);
        if (v->ndim == 4) return glow_fail(GLOW_EFORMAT, "%s: more than 4 dimensions", what);
        v->shape[v->ndim++] = dim;
        if (dim == 0) room = SIZE_MAX; /* an empty array: every product stays 0 */
        else if (v->count > room / dim)
            return glow_fail(GLOW_EFORMAT, "%s: truncated: the header's shape needs more than "
                             "the file's %zu bytes of data", what, size - start - hlen);
        v->count *= dim;
        p = end;
        while (*p == ',' || *p == ' ') p++;
    }
    if (v->count > room)
        return glow_fail(GLOW_EFORMAT, "%s: truncated: the header promises %zu values", what, v->count);
    v->data = buf + start + hlen;
    return GLOW_OK;
}

static unsigned char *read_file(const char *path, size_t *size) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        glow_fail(GLOW_EIO, "%s: cannot open", path);
        return NULL;
    }
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    rewind(f);
    unsigned char *buf = n >= 0 ? malloc(n ? n : 1) : NULL;
    if (!buf || fread(buf, 1, n, f) != (size_t)n) {
        free(buf);
        fclose(f);
        glow_fail(GLOW_EIO, "%s: cannot read", path);
        return NULL;
    }
    fclose(f);
    *size = n;
    return buf;
}

int glow_npy_read(const char *path, glow_real **data, size_t *rows, size_t *cols) {
    size_t size;
    unsigned char *buf = read_file(path, &size);
    if (!buf) return GLOW_EIO;
    npy_view v;
    int rc = npy_parse(&v, buf, size, path);
    if (rc == GLOW_OK && strcmp(v.descr, "<f4") && strcmp(v.descr, "<f8"))
        rc = glow_fail(GLOW_EFORMAT, "%s: dtype %s: expected float32 latents", path, v.descr);
    if (rc == GLOW_OK && v.ndim != 2)
        rc = glow_fail(GLOW_EFORMAT, "%s: %d dimensions: expected (images, latent size)", path, v.ndim);
    if (rc == GLOW_OK) {
        *rows = v.shape[0], *cols = v.shape[1];
        *data = malloc(sizeof(glow_real) * (v.count ? v.count : 1));
        if (!*data) rc = glow_fail(GLOW_ENOMEM, "out of memory");
        for (size_t i = 0; rc == GLOW_OK && i < v.count; i++) {
            if (v.descr[2] == '4') {
                float f;
                memcpy(&f, v.data + 4 * i, 4);
                (*data)[i] = (glow_real)f;
            } else {
                double f;
                memcpy(&f, v.data + 8 * i, 8);
                (*data)[i] = (glow_real)f;
            }
        }
    }
    free(buf);
    return rc;
}

/* ---- .npz: an uncompressed zip of .npy members ----------------------------------------- */

static void put16(unsigned char *p, unsigned v) { p[0] = v & 0xff, p[1] = (v >> 8) & 0xff; }
static void put32(unsigned char *p, uint32_t v) { for (int i = 0; i < 4; i++) p[i] = (v >> (8 * i)) & 0xff; }
static uint32_t get32(const unsigned char *p) { return p[0] | p[1] << 8 | p[2] << 16 | (uint32_t)p[3] << 24; }
static unsigned get16(const unsigned char *p) { return p[0] | p[1] << 8; }

typedef struct member { const char *name; unsigned char *data; size_t size; } member;

static int write_zip(const char *path, const member *mem, int n) {
    size_t total = 22;
    for (int i = 0; i < n; i++) total += 30 + 46 + 2 * strlen(mem[i].name) + mem[i].size;
    unsigned char *buf = calloc(1, total), *p = buf;
    if (!buf) return glow_fail(GLOW_ENOMEM, "out of memory");
    uint32_t offsets[8], crcs[8];
    for (int i = 0; i < n; i++) {
        size_t len = strlen(mem[i].name);
        offsets[i] = (uint32_t)(p - buf);
        crcs[i] = (uint32_t)crc32(crc32(0L, Z_NULL, 0), mem[i].data, (uInt)mem[i].size);
        put32(p, 0x04034b50), put16(p + 4, 20), put16(p + 12, 0x21);
        put32(p + 14, crcs[i]), put32(p + 18, (uint32_t)mem[i].size), put32(p + 22, (uint32_t)mem[i].size);
        put16(p + 26, (unsigned)len);
        memcpy(p + 30, mem[i].name, len);
        memcpy(p + 30 + len, mem[i].data, mem[i].size);
        p += 30 + len + mem[i].size;
    }
    unsigned char *cd = p;
    for (int i = 0; i < n; i++) {
        size_t len = strlen(mem[i].name);
        put32(p, 0x02014b50), put16(p + 4, 20), put16(p + 6, 20), put16(p + 14, 0x21);
        put32(p + 16, crcs[i]), put32(p + 20, (uint32_t)mem[i].size), put32(p + 24, (uint32_t)mem[i].size);
        put16(p + 28, (unsigned)len), put32(p + 42, offsets[i]);
        memcpy(p + 46, mem[i].name, len);
        p += 46 + len;
    }
    put32(p, 0x06054b50), put16(p + 8, n), put16(p + 10, n);
    put32(p + 12, (uint32_t)(p - cd)), put32(p + 16, (uint32_t)(cd - buf));
    p += 22;
    int rc = write_file(path, buf, (size_t)(p - buf));
    free(buf);
    return rc;
}

int glow_directions_save(const char *path, const glow_directions *d) {
    size_t shape2[2] = {(size_t)d->n, d->dim}, shape1[1] = {(size_t)d->n};
    /* Names as NumPy unicode strings of 64 characters: UTF-32LE code units. */
    uint32_t *names = calloc((size_t)d->n * 64, sizeof(uint32_t));
    member mem[4] = {{"directions.npy", 0, 0}, {"names.npy", 0, 0}, {"n_pos.npy", 0, 0}, {"n_neg.npy", 0, 0}};
    if (!names) return glow_fail(GLOW_ENOMEM, "out of memory");
    for (int a = 0; a < d->n; a++)
        for (int i = 0; i < 64 && d->names[a][i]; i++) names[a * 64 + i] = (unsigned char)d->names[a][i];
    mem[0].data = npy_encode(&mem[0].size, "<f4", 2, shape2, d->z, 4);
    mem[1].data = npy_encode(&mem[1].size, "<U64", 1, shape1, names, 256);
    mem[2].data = npy_encode(&mem[2].size, "<i8", 1, shape1, d->n_pos, 8);
    mem[3].data = npy_encode(&mem[3].size, "<i8", 1, shape1, d->n_neg, 8);
    int rc = mem[0].data && mem[1].data && mem[2].data && mem[3].data
                 ? write_zip(path, mem, 4) : glow_fail(GLOW_ENOMEM, "out of memory");
    for (int i = 0; i < 4; i++) free(mem[i].data);
    free(names);
    return rc;
}

/* Find a stored member of a zip image by name. */
static int zip_member(npy_view *v, const unsigned char *buf, size_t size, const char *name,
                      const char *path) {
    size_t p = 0, len = strlen(name);
    char what[4400];
    snprintf(what, sizeof what, "%s: %s", path, name);
    while (p + 30 <= size && get32(buf + p) == 0x04034b50) {
        unsigned method = get16(buf + p + 8), nlen = get16(buf + p + 26), xlen = get16(buf + p + 28);
        size_t csize = get32(buf + p + 18), data = p + 30 + nlen + xlen;
        if (data + csize > size) return glow_fail(GLOW_EFORMAT, "%s: truncated", path);
        if (nlen == len && !memcmp(buf + p + 30, name, len)) {
            if (method != 0)
                return glow_fail(GLOW_EFORMAT, "%s: compressed members are not supported (save "
                                 "with numpy.savez, not savez_compressed)", what);
            return npy_parse(v, buf + data, csize, what);
        }
        p = data + csize;
    }
    return glow_fail(GLOW_EFORMAT, "%s: no member %s (not a directions file?)", path, name);
}

int glow_directions_load(const char *path, glow_directions *d) {
    memset(d, 0, sizeof *d);
    size_t size;
    unsigned char *buf = read_file(path, &size);
    if (!buf) return GLOW_EIO;
    npy_view z, names, pos, neg;
    int rc = zip_member(&z, buf, size, "directions.npy", path);
    if (rc == GLOW_OK) rc = zip_member(&names, buf, size, "names.npy", path);
    if (rc == GLOW_OK) rc = zip_member(&pos, buf, size, "n_pos.npy", path);
    if (rc == GLOW_OK) rc = zip_member(&neg, buf, size, "n_neg.npy", path);
    if (rc == GLOW_OK && (strcmp(z.descr, "<f4") || z.ndim != 2 || strncmp(names.descr, "<U", 2) ||
                          names.count != z.shape[0] || strcmp(pos.descr, "<i8") ||
                          pos.count != z.shape[0] || strcmp(neg.descr, "<i8") || neg.count != z.shape[0]))
        rc = glow_fail(GLOW_EFORMAT, "%s: members have unexpected types or shapes", path);
    if (rc == GLOW_OK && z.shape[0] > INT_MAX)
        rc = glow_fail(GLOW_EFORMAT, "%s: %zu directions: more than glow reads", path, z.shape[0]);
    if (rc == GLOW_OK) {
        d->n = (int)z.shape[0], d->dim = z.shape[1];
        int width = atoi(names.descr + 2);
        d->names = calloc(d->n ? d->n : 1, sizeof *d->names);
        d->n_pos = malloc(sizeof(int64_t) * (d->n ? d->n : 1));
        d->n_neg = malloc(sizeof(int64_t) * (d->n ? d->n : 1));
        d->z = malloc(sizeof(float) * (z.count ? z.count : 1));
        if (!d->names || !d->n_pos || !d->n_neg || !d->z) rc = glow_fail(GLOW_ENOMEM, "out of memory");
        for (int a = 0; rc == GLOW_OK && a < d->n; a++) {
            for (int i = 0; i < width && i < 63; i++)
                d->names[a][i] = (char)get32(names.data + 4 * ((size_t)a * width + i));
            memcpy(&d->n_pos[a], pos.data + 8 * a, 8);
            memcpy(&d->n_neg[a], neg.data + 8 * a, 8);
        }
        if (rc == GLOW_OK) memcpy(d->z, z.data, sizeof(float) * z.count);
        else glow_directions_free(d);
    }
    free(buf);
    return rc;
}

int glow_encode_images(glow_ctx *ctx, const glow_model *m, const uint8_t *pixels,
                       const int *labels, int n, int batch, glow_real *z, double *logdet) {
    const glow_config *cfg = glow_model_config(m);
    size_t d = glow_model_dim(m);
    int conditional = cfg->ycond || cfg->weight_y > 0;
    if (batch < 1) return glow_fail(GLOW_EINVAL, "batch size %d: must be >= 1", batch);
    if (batch > n) batch = n > 0 ? n : 1;
    glow_real *x = malloc(sizeof(glow_real) * batch * d);
    if (!x) return glow_fail(GLOW_ENOMEM, "out of memory");
    int rc = GLOW_OK;
    for (int s = 0; s < n && rc == GLOW_OK; s += batch) {
        int k = n - s < batch ? n - s : batch;
        glow_preprocess_center(x, pixels + (size_t)s * d, k, d, cfg->n_bits);
        rc = glow_model_encode(ctx, m, x, conditional && labels ? labels + s : NULL, k,
                               z + (size_t)s * d, logdet ? logdet + s : NULL);
    }
    free(x);
    return rc;
}

int glow_decode_latents(glow_ctx *ctx, const glow_model *m, const glow_real *z,
                        const int *labels, int n, int batch, glow_real *x, double *logdet) {
    const glow_config *cfg = glow_model_config(m);
    size_t d = glow_model_dim(m);
    int conditional = cfg->ycond || cfg->weight_y > 0;
    if (batch < 1) return glow_fail(GLOW_EINVAL, "batch size %d: must be >= 1", batch);
    int rc = GLOW_OK;
    for (int s = 0; s < n && rc == GLOW_OK; s += batch) {
        int k = n - s < batch ? n - s : batch;
        rc = glow_model_decode(ctx, m, z + (size_t)s * d, conditional && labels ? labels + s : NULL,
                               k, x + (size_t)s * d, logdet ? logdet + s : NULL);
    }
    return rc;
}
