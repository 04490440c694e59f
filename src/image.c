/* image.c: pictures in and out. Decoding PNG (libpng) and JPEG (libjpeg) into uint8 NHWC
 * arrays, PNG encoding, the one resize method the data loaders use, grids of samples and
 * a small line-plot writer for training curves with a built-in bitmap font.
 *
 * Both codecs report errors by longjmp; every decoder keeps what it allocated in volatile
 * locals so that the error path can free it, and turns the codec's message into a
 * glow_fail() message that names the file. */
#include <errno.h>
#include <math.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <png.h>
#include <jpeglib.h>
#include <jerror.h>
#include "glow.h"

/* Decoded images larger than this many samples are refused (a corrupt or hostile header
 * must not make us allocate gigabytes). */
#define MAX_SAMPLES ((size_t)1 << 28)
#define MAX_FILE_BYTES ((long)1 << 30)

/* ---------------------------------------------------------------- PNG decoding ----- */

typedef struct {
    const uint8_t *data;
    size_t size, pos;
    char msg[200];
} png_ctx;

static void png_on_error(png_structp png, png_const_charp msg) {
    png_ctx *ctx = png_get_error_ptr(png);
    snprintf(ctx->msg, sizeof ctx->msg, "%s", msg);
    png_longjmp(png, 1);
}
static void png_on_warning(png_structp png, png_const_charp msg) {}

static void png_read_mem(png_structp png, png_bytep out, png_size_t len) {
    png_ctx *ctx = png_get_io_ptr(png);
    if (len > ctx->size - ctx->pos) png_error(png, "truncated file");
    memcpy(out, ctx->data + ctx->pos, len);
    ctx->pos += len;
}

static int decode_png(const char *name, const uint8_t *data, size_t size, uint8_t **pixels,
                      int *h, int *w, int *c) {
    png_ctx ctx = {data, size, 0, ""};
    png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &ctx, png_on_error,
                                             png_on_warning);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    if (!info) {
        png_destroy_read_struct(&png, NULL, NULL);
        return glow_fail(GLOW_ENOMEM, "%s: out of memory decoding PNG", name);
    }
    uint8_t *volatile raw = NULL, *volatile out = NULL;
    png_bytep *volatile rows = NULL;
    if (setjmp(png_jmpbuf(png))) {
        png_destroy_read_struct(&png, &info, NULL);
        free(raw), free(out), free(rows);
        return glow_fail(GLOW_EFORMAT, "%s: bad PNG: %s", name, ctx.msg);
    }
    png_set_read_fn(png, &ctx, png_read_mem);
    png_read_info(png, info);
    int color = png_get_color_type(png, info), depth = png_get_bit_depth(png, info);
    if (depth == 16) png_set_scale_16(png);
    if (color == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(png);
    if (color == PNG_COLOR_TYPE_GRAY && depth < 8) png_set_expand_gray_1_2_4_to_8(png);
    png_set_interlace_handling(png);
    png_read_update_info(png, info);
    size_t ih = png_get_image_height(png, info), iw = png_get_image_width(png, info);
    int ich = png_get_channels(png, info);
    size_t rowbytes = png_get_rowbytes(png, info);
    if (ich < 1 || ich > 4 || rowbytes != iw * ich) png_error(png, "unsupported pixel layout");
    if (ih * iw * ich > MAX_SAMPLES) png_error(png, "image too large");
    int oc = ich >= 3 ? 3 : 1; /* alpha dropped */
    raw = malloc(ih * rowbytes);
    rows = malloc(ih * sizeof *rows);
    out = malloc(ih * iw * oc);
    if (!raw || !rows || !out) png_error(png, "out of memory");
    for (size_t y = 0; y < ih; y++) rows[y] = raw + y * rowbytes;
    png_read_image(png, rows);
    png_read_end(png, NULL);
    for (size_t p = 0; p < ih * iw; p++)
        for (int k = 0; k < oc; k++) out[p * oc + k] = raw[p * ich + k];
    png_destroy_read_struct(&png, &info, NULL);
    free(raw), free(rows);
    *pixels = out, *h = (int)ih, *w = (int)iw, *c = oc;
    return GLOW_OK;
}

/* ---------------------------------------------------------------- JPEG decoding ---- */

typedef struct {
    struct jpeg_error_mgr mgr;
    jmp_buf jmp;
    int truncated;
} jpeg_ctx;

static void jpeg_on_error(j_common_ptr cinfo) {
    longjmp(((jpeg_ctx *)cinfo->err)->jmp, 1);
}
/* Warnings are silent, except that a premature end of data makes the decode fail:
 * libjpeg would otherwise fill the rest of the picture with gray. */
static void jpeg_on_message(j_common_ptr cinfo, int level) {
    jpeg_ctx *ctx = (jpeg_ctx *)cinfo->err;
    if (level < 0 && cinfo->err->msg_code == JWRN_JPEG_EOF) ctx->truncated = 1;
}

static int decode_jpeg(const char *name, const uint8_t *data, size_t size, uint8_t **pixels,
                       int *h, int *w, int *c) {
    struct jpeg_decompress_struct cinfo;
    jpeg_ctx ctx;
    cinfo.err = jpeg_std_error(&ctx.mgr);
    ctx.mgr.error_exit = jpeg_on_error;
    ctx.mgr.emit_message = jpeg_on_message;
    ctx.truncated = 0;
    uint8_t *volatile out = NULL;
    if (setjmp(ctx.jmp)) {
        char msg[JMSG_LENGTH_MAX];
        ctx.mgr.format_message((j_common_ptr)&cinfo, msg);
        jpeg_destroy_decompress(&cinfo);
        free(out);
        return glow_fail(GLOW_EFORMAT, "%s: bad JPEG: %s", name, msg);
    }
    jpeg_create_decompress(&cinfo);
    jpeg_mem_src(&cinfo, data, (unsigned long)size);
    jpeg_read_header(&cinfo, TRUE);
    if (cinfo.jpeg_color_space == JCS_CMYK || cinfo.jpeg_color_space == JCS_YCCK) {
        jpeg_destroy_decompress(&cinfo);
        return glow_fail(GLOW_EFORMAT, "%s: unsupported image: CMYK JPEG", name);
    }
    int oc = cinfo.num_components == 1 ? 1 : 3;
    cinfo.out_color_space = oc == 1 ? JCS_GRAYSCALE : JCS_RGB;
    jpeg_start_decompress(&cinfo);
    size_t ih = cinfo.output_height, iw = cinfo.output_width;
    if (ih * iw * oc > MAX_SAMPLES || cinfo.output_components != oc) {
        jpeg_destroy_decompress(&cinfo);
        return glow_fail(GLOW_EFORMAT, "%s: unsupported image: %zux%zu JPEG with %d components",
                         name, ih, iw, cinfo.output_components);
    }
    out = malloc(ih * iw * oc);
    if (!out) {
        jpeg_destroy_decompress(&cinfo);
        return glow_fail(GLOW_ENOMEM, "%s: out of memory decoding JPEG", name);
    }
    while (cinfo.output_scanline < ih && !ctx.truncated) {
        JSAMPROW row = out + (size_t)cinfo.output_scanline * iw * oc;
        jpeg_read_scanlines(&cinfo, &row, 1);
    }
    if (ctx.truncated) {
        jpeg_destroy_decompress(&cinfo);
        free(out);
        return glow_fail(GLOW_EFORMAT, "%s: bad JPEG: truncated file", name);
    }
    jpeg_finish_decompress(&cinfo);
    jpeg_destroy_decompress(&cinfo);
    *pixels = out, *h = (int)ih, *w = (int)iw, *c = oc;
    return GLOW_OK;
}

/* ---------------------------------------------------------------- reading ---------- */

static int decode_named(const char *name, const uint8_t *data, size_t size, uint8_t **pixels,
                        int *h, int *w, int *c) {
    static const uint8_t png_sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    *pixels = NULL;
    if (size >= 8 && memcmp(data, png_sig, 8) == 0)
        return decode_png(name, data, size, pixels, h, w, c);
    if (size >= 3 && data[0] == 0xff && data[1] == 0xd8 && data[2] == 0xff)
        return decode_jpeg(name, data, size, pixels, h, w, c);
    return glow_fail(GLOW_EFORMAT, "%s: unsupported image: neither PNG nor JPEG", name);
}

int glow_image_decode(const uint8_t *data, size_t size, uint8_t **pixels, int *h, int *w,
                      int *c) {
    return decode_named("image data", data, size, pixels, h, w, c);
}

int glow_image_read(const char *path, uint8_t **pixels, int *h, int *w, int *c) {
    *pixels = NULL;
    FILE *f = fopen(path, "rb");
    if (!f) return glow_fail(GLOW_EIO, "%s: cannot open: %s", path, strerror(errno));
    long size = -1;
    if (fseek(f, 0, SEEK_END) == 0) size = ftell(f);
    if (size < 0 || size > MAX_FILE_BYTES || fseek(f, 0, SEEK_SET) != 0) {
        fclose(f);
        return glow_fail(GLOW_EIO, "%s: cannot read (size %ld)", path, size);
    }
    uint8_t *data = malloc(size ? (size_t)size : 1);
    if (!data) {
        fclose(f);
        return glow_fail(GLOW_ENOMEM, "%s: out of memory (%ld bytes)", path, size);
    }
    size_t got = fread(data, 1, (size_t)size, f);
    int err = ferror(f);
    fclose(f);
    int rc = got != (size_t)size || err
                 ? glow_fail(GLOW_EIO, "%s: read error", path)
                 : decode_named(path, data, (size_t)size, pixels, h, w, c);
    free(data);
    return rc;
}

/* ---------------------------------------------------------------- PNG writing ------ */

/* Prefix the current message with a file name. The message is copied first: passing
 * glow_last_error() itself to glow_fail would format a buffer into itself. */
static int fail_with_path(int status, const char *path) {
    char msg[512];
    snprintf(msg, sizeof msg, "%s", glow_last_error());
    return glow_fail(status, "%s: %s", path, msg);
}

typedef struct {
    uint8_t *data;
    size_t size, cap;
    char msg[200];
} png_out;

static void png_write_mem(png_structp png, png_bytep in, png_size_t len) {
    png_out *o = png_get_io_ptr(png);
    if (o->size + len > o->cap) {
        size_t cap = o->cap ? o->cap : 4096;
        while (cap < o->size + len) cap *= 2;
        uint8_t *p = realloc(o->data, cap);
        if (!p) png_error(png, "out of memory");
        o->data = p, o->cap = cap;
    }
    memcpy(o->data + o->size, in, len);
    o->size += len;
}
static void png_flush_mem(png_structp png) {}
static void png_on_write_error(png_structp png, png_const_charp msg) {
    png_out *o = png_get_error_ptr(png);
    snprintf(o->msg, sizeof o->msg, "%s", msg);
    png_longjmp(png, 1);
}

int glow_png_encode(uint8_t **png_data, size_t *size, const uint8_t *pixels, int h, int w,
                    int c) {
    *png_data = NULL, *size = 0;
    if ((c != 1 && c != 3) || h < 1 || w < 1 || (size_t)h * w * c > MAX_SAMPLES)
        return glow_fail(GLOW_EINVAL, "PNG: cannot encode %dx%dx%d (channels 1 or 3)", h, w, c);
    png_out o = {0};
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, &o, png_on_write_error,
                                              png_on_warning);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    if (!info) {
        png_destroy_write_struct(&png, NULL);
        return glow_fail(GLOW_ENOMEM, "PNG: out of memory");
    }
    if (setjmp(png_jmpbuf(png))) {
        png_destroy_write_struct(&png, &info);
        free(o.data);
        return glow_fail(GLOW_ENOMEM, "PNG: encoding failed: %s", o.msg);
    }
    png_set_write_fn(png, &o, png_write_mem, png_flush_mem);
    png_set_IHDR(png, info, (png_uint_32)w, (png_uint_32)h, 8,
                 c == 1 ? PNG_COLOR_TYPE_GRAY : PNG_COLOR_TYPE_RGB, PNG_INTERLACE_NONE,
                 PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    png_write_info(png, info);
    for (int y = 0; y < h; y++) png_write_row(png, pixels + (size_t)y * w * c);
    png_write_end(png, NULL);
    png_destroy_write_struct(&png, &info);
    *png_data = o.data, *size = o.size;
    return GLOW_OK;
}

int glow_png_write(const char *path, const uint8_t *pixels, int h, int w, int c) {
    uint8_t *data;
    size_t size;
    int rc = glow_png_encode(&data, &size, pixels, h, w, c);
    if (rc != GLOW_OK) return fail_with_path(rc, path);
    size_t n = strlen(path) + 5;
    char *tmp = malloc(n);
    if (!tmp) {
        free(data);
        return glow_fail(GLOW_ENOMEM, "%s: out of memory", path);
    }
    snprintf(tmp, n, "%s.tmp", path);
    FILE *f = fopen(tmp, "wb");
    if (!f) {
        rc = glow_fail(GLOW_EIO, "%s: cannot write: %s", tmp, strerror(errno));
    } else {
        int ok = fwrite(data, 1, size, f) == size && fflush(f) == 0 && fsync(fileno(f)) == 0;
        int e = errno;
        ok &= fclose(f) == 0;
        if (!ok) rc = glow_fail(GLOW_EIO, "%s: cannot write: %s", tmp, strerror(e));
        else if (rename(tmp, path) != 0)
            rc = glow_fail(GLOW_EIO, "%s: cannot rename %s to it: %s", path, tmp,
                           strerror(errno));
        if (rc != GLOW_OK) remove(tmp);
    }
    free(tmp);
    free(data);
    return rc;
}

/* ---------------------------------------------------------------- resizing --------- */

/* The weights of one axis: output i takes sum over t < n[i] of w[i][t] * src[j[i][t]]. A
 * shrinking axis needs at most ceil(s/d) + 1 taps, an enlarging one 2. */
typedef struct {
    int taps;   /* per output */
    int *j;     /* (d,taps) source indices */
    float *w;   /* (d,taps) weights; unused taps have weight 0 and index 0 */
} axis_weights;

static int axis_make(axis_weights *a, int d, int s) {
    a->taps = d < s ? (s + d - 1) / d + 1 : 2;
    a->j = calloc((size_t)d * a->taps, sizeof *a->j);
    a->w = calloc((size_t)d * a->taps, sizeof *a->w);
    if (!a->j || !a->w) return -1;
    for (int i = 0; i < d; i++) {
        int *j = a->j + (size_t)i * a->taps;
        float *w = a->w + (size_t)i * a->taps;
        if (d <= s) { /* area average over [i*s/d, (i+1)*s/d), in units of 1/d */
            long lo = (long)i * s, hi = (long)(i + 1) * s; /* times d */
            int t = 0;
            for (long p = lo / d; p * d < hi; p++) {
                long a0 = p * d > lo ? p * d : lo, a1 = (p + 1) * d < hi ? (p + 1) * d : hi;
                j[t] = (int)p, w[t] = (float)(a1 - a0) / (float)s;
                t++;
            }
        } else { /* linear, pixel centres aligned */
            double x = (i + 0.5) * s / d - 0.5;
            if (x < 0) x = 0;
            if (x > s - 1) x = s - 1;
            int j0 = (int)floor(x);
            int j1 = j0 + 1 < s ? j0 + 1 : j0;
            j[0] = j0, w[0] = (float)(1 - (x - j0));
            j[1] = j1, w[1] = (float)(x - j0);
        }
    }
    return 0;
}

/* src has `stride` bytes per row (the crop in glow_image_fit reads a window in place). */
static void resize_strided(uint8_t *dst, int dh, int dw, const uint8_t *src, size_t stride,
                           int sh, int sw, int c) {
    if (dh == sh && dw == sw) {
        for (int y = 0; y < dh; y++) memcpy(dst + (size_t)y * dw * c, src + y * stride, (size_t)dw * c);
        return;
    }
    axis_weights ax = {0}, ay = {0};
    float *tmp = malloc((size_t)sh * dw * c * sizeof *tmp); /* (sh,dw,c) */
    if (axis_make(&ax, dw, sw) || axis_make(&ay, dh, sh) || !tmp) {
        /* Out of memory for a few small tables: fall back to nearest neighbour rather than
         * leave dst undefined. */
        for (int y = 0; y < dh; y++)
            for (int x = 0; x < dw; x++)
                memcpy(dst + ((size_t)y * dw + x) * c,
                       src + (size_t)(y * sh / dh) * stride + (size_t)(x * sw / dw) * c, c);
        goto done;
    }
    for (int y = 0; y < sh; y++)
        for (int x = 0; x < dw; x++)
            for (int k = 0; k < c; k++) {
                float v = 0;
                for (int t = 0; t < ax.taps; t++)
                    v += ax.w[x * ax.taps + t] * src[y * stride + (size_t)ax.j[x * ax.taps + t] * c + k];
                tmp[((size_t)y * dw + x) * c + k] = v;
            }
    for (int y = 0; y < dh; y++)
        for (size_t q = 0; q < (size_t)dw * c; q++) {
            float v = 0;
            for (int t = 0; t < ay.taps; t++)
                v += ay.w[y * ay.taps + t] * tmp[(size_t)ay.j[y * ay.taps + t] * dw * c + q];
            v = floorf(v + 0.5f);
            dst[(size_t)y * dw * c + q] = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
        }
done:
    free(ax.j), free(ax.w), free(ay.j), free(ay.w), free(tmp);
}

void glow_image_resize(uint8_t *dst, int dh, int dw, const uint8_t *src, int sh, int sw,
                       int c) {
    resize_strided(dst, dh, dw, src, (size_t)sw * c, sh, sw, c);
}

void glow_image_fit(uint8_t *dst, int size, const uint8_t *src, int sh, int sw, int c) {
    int side = sh < sw ? sh : sw;
    const uint8_t *win = src + ((size_t)((sh - side) / 2) * sw + (sw - side) / 2) * c;
    resize_strided(dst, size, size, win, (size_t)sw * c, side, side, c);
}

/* ---------------------------------------------------------------- grids ------------ */

int glow_grid_make(uint8_t **grid, int *gh, int *gw, const uint8_t *images, int n, int h,
                   int w, int c, int cols, int pad) {
    *grid = NULL;
    if (n < 1 || h < 1 || w < 1 || c < 1 || cols < 1 || pad < 0)
        return glow_fail(GLOW_EINVAL, "grid: bad layout (n %d, %dx%dx%d, cols %d, pad %d)",
                         n, h, w, c, cols, pad);
    int rows = (n + cols - 1) / cols;
    size_t H = (size_t)rows * h + (size_t)(rows - 1) * pad;
    size_t W = (size_t)cols * w + (size_t)(cols - 1) * pad;
    if (H > 1 << 16 || W > 1 << 16 || H * W * c > MAX_SAMPLES)
        return glow_fail(GLOW_EINVAL, "grid: %zux%zu is too large", H, W);
    uint8_t *g = malloc(H * W * c);
    if (!g) return glow_fail(GLOW_ENOMEM, "grid: out of memory");
    memset(g, 255, H * W * c);
    for (int k = 0; k < n; k++) {
        size_t y0 = (size_t)(k / cols) * (h + pad), x0 = (size_t)(k % cols) * (w + pad);
        for (int y = 0; y < h; y++)
            memcpy(g + ((y0 + y) * W + x0) * c, images + ((size_t)k * h + y) * w * c,
                   (size_t)w * c);
    }
    *grid = g, *gh = (int)H, *gw = (int)W;
    return GLOW_OK;
}

int glow_grid_write(const char *path, const uint8_t *images, int n, int h, int w, int c,
                    int cols, int pad) {
    uint8_t *g;
    int gh, gw;
    int rc = glow_grid_make(&g, &gh, &gw, images, n, h, w, c, cols, pad);
    if (rc != GLOW_OK) return fail_with_path(rc, path);
    rc = glow_png_write(path, g, gh, gw, c);
    free(g);
    return rc;
}

/* ---------------------------------------------------------------- plots ------------ */

/* A 5x7 font: 7 rows per glyph, bit 4 the leftmost pixel. Characters 32..95 (digits,
 * upper-case letters, punctuation); lower case prints as upper case, others as blank. */
static const uint8_t font5x7[64][7] = {
    ['!' - 32] = {4, 4, 4, 4, 4, 0, 4},
    ['#' - 32] = {10, 10, 31, 10, 31, 10, 10},
    ['%' - 32] = {24, 25, 2, 4, 8, 19, 3},
    ['\'' - 32] = {4, 4, 8, 0, 0, 0, 0},
    ['(' - 32] = {2, 4, 8, 8, 8, 4, 2},
    [')' - 32] = {8, 4, 2, 2, 2, 4, 8},
    ['*' - 32] = {0, 4, 21, 14, 21, 4, 0},
    ['+' - 32] = {0, 4, 4, 31, 4, 4, 0},
    [',' - 32] = {0, 0, 0, 0, 12, 4, 8},
    ['-' - 32] = {0, 0, 0, 31, 0, 0, 0},
    ['.' - 32] = {0, 0, 0, 0, 0, 12, 12},
    ['/' - 32] = {0, 1, 2, 4, 8, 16, 0},
    ['0' - 32] = {14, 17, 19, 21, 25, 17, 14},
    ['1' - 32] = {4, 12, 4, 4, 4, 4, 14},
    ['2' - 32] = {14, 17, 1, 2, 4, 8, 31},
    ['3' - 32] = {31, 2, 4, 2, 1, 17, 14},
    ['4' - 32] = {2, 6, 10, 18, 31, 2, 2},
    ['5' - 32] = {31, 16, 30, 1, 1, 17, 14},
    ['6' - 32] = {6, 8, 16, 30, 17, 17, 14},
    ['7' - 32] = {31, 1, 2, 4, 8, 8, 8},
    ['8' - 32] = {14, 17, 17, 14, 17, 17, 14},
    ['9' - 32] = {14, 17, 17, 15, 1, 2, 12},
    [':' - 32] = {0, 12, 12, 0, 12, 12, 0},
    ['<' - 32] = {2, 4, 8, 16, 8, 4, 2},
    ['=' - 32] = {0, 0, 31, 0, 31, 0, 0},
    ['>' - 32] = {8, 4, 2, 1, 2, 4, 8},
    ['?' - 32] = {14, 17, 1, 2, 4, 0, 4},
    ['A' - 32] = {14, 17, 17, 31, 17, 17, 17},
    ['B' - 32] = {30, 17, 17, 30, 17, 17, 30},
    ['C' - 32] = {14, 17, 16, 16, 16, 17, 14},
    ['D' - 32] = {28, 18, 17, 17, 17, 18, 28},
    ['E' - 32] = {31, 16, 16, 30, 16, 16, 31},
    ['F' - 32] = {31, 16, 16, 30, 16, 16, 16},
    ['G' - 32] = {14, 17, 16, 23, 17, 17, 15},
    ['H' - 32] = {17, 17, 17, 31, 17, 17, 17},
    ['I' - 32] = {14, 4, 4, 4, 4, 4, 14},
    ['J' - 32] = {7, 2, 2, 2, 2, 18, 12},
    ['K' - 32] = {17, 18, 20, 24, 20, 18, 17},
    ['L' - 32] = {16, 16, 16, 16, 16, 16, 31},
    ['M' - 32] = {17, 27, 21, 21, 17, 17, 17},
    ['N' - 32] = {17, 17, 25, 21, 19, 17, 17},
    ['O' - 32] = {14, 17, 17, 17, 17, 17, 14},
    ['P' - 32] = {30, 17, 17, 30, 16, 16, 16},
    ['Q' - 32] = {14, 17, 17, 17, 21, 18, 13},
    ['R' - 32] = {30, 17, 17, 30, 20, 18, 17},
    ['S' - 32] = {15, 16, 16, 14, 1, 1, 30},
    ['T' - 32] = {31, 4, 4, 4, 4, 4, 4},
    ['U' - 32] = {17, 17, 17, 17, 17, 17, 14},
    ['V' - 32] = {17, 17, 17, 17, 17, 10, 4},
    ['W' - 32] = {17, 17, 17, 21, 21, 21, 10},
    ['X' - 32] = {17, 17, 10, 4, 10, 17, 17},
    ['Y' - 32] = {17, 17, 17, 10, 4, 4, 4},
    ['Z' - 32] = {31, 1, 2, 4, 8, 16, 31},
    ['[' - 32] = {14, 8, 8, 8, 8, 8, 14},
    [']' - 32] = {14, 2, 2, 2, 2, 2, 14},
    ['_' - 32] = {0, 0, 0, 0, 0, 0, 31},
};

typedef struct {
    uint8_t *rgb; /* (h,w,3) */
    int h, w;
} canvas;

static void put(canvas *cv, int x, int y, const uint8_t col[3]) {
    if (x >= 0 && y >= 0 && x < cv->w && y < cv->h) memcpy(cv->rgb + ((size_t)y * cv->w + x) * 3, col, 3);
}
static void fill(canvas *cv, int x0, int y0, int x1, int y1, const uint8_t col[3]) {
    for (int y = y0; y <= y1; y++)
        for (int x = x0; x <= x1; x++) put(cv, x, y, col);
}
/* Each glyph cell is 6*scale wide (a blank column between letters), 7*scale high. */
static int text_width(const char *s, int scale) { return (int)strlen(s) * 6 * scale - scale; }
static void text(canvas *cv, int x, int y, const char *s, int scale, const uint8_t col[3]) {
    for (; *s; s++, x += 6 * scale) {
        int ch = (unsigned char)*s;
        if (ch >= 'a' && ch <= 'z') ch -= 'a' - 'A';
        if (ch < 32 || ch > 95) continue;
        for (int r = 0; r < 7; r++)
            for (int b = 0; b < 5; b++)
                if (font5x7[ch - 32][r] & (16 >> b))
                    fill(cv, x + b * scale, y + r * scale, x + b * scale + scale - 1,
                         y + r * scale + scale - 1, col);
    }
}
/* A 2-pixel-wide line from (x0,y0) to (x1,y1), stepping along the longer axis. */
static void line(canvas *cv, double x0, double y0, double x1, double y1, const uint8_t col[3]) {
    double dx = x1 - x0, dy = y1 - y0;
    int steps = (int)ceil(fmax(fabs(dx), fabs(dy)));
    if (steps < 1) steps = 1;
    for (int i = 0; i <= steps; i++) {
        int x = (int)lround(x0 + dx * i / steps), y = (int)lround(y0 + dy * i / steps);
        fill(cv, x, y, x + 1, y + 1, col);
    }
}

/* Ticks at multiples of a 1-2-5 step covering [lo, hi] with about `want` intervals;
 * widens [lo, hi] to whole steps. */
static double nice_step(double *lo, double *hi, int want) {
    double raw = (*hi - *lo) / want, mag = pow(10, floor(log10(raw))), f = raw / mag;
    double step = (f < 1.5 ? 1 : f < 3.5 ? 2 : f < 7.5 ? 5 : 10) * mag;
    *lo = floor(*lo / step + 1e-9) * step;
    *hi = ceil(*hi / step - 1e-9) * step;
    return step;
}
static void tick_label(char *buf, size_t n, double v, double step) {
    int dec = step >= 1 ? 0 : (int)ceil(-log10(step) - 1e-9);
    if (fabs(v) < step * 1e-6) v = 0;
    if (fabs(v) >= 1e6 || dec > 6) snprintf(buf, n, "%.3g", v);
    else snprintf(buf, n, "%.*f", dec, v);
}

static void finite_range(const double *v, int n, double *lo, double *hi) {
    for (int i = 0; i < n; i++)
        if (isfinite(v[i])) *lo = fmin(*lo, v[i]), *hi = fmax(*hi, v[i]);
}

static int compare_doubles(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Outliers must not flatten the rest of a plot (one loss spike of 10^5 over a curve near 4
 * would): the y range stops at the fences Q1 - FENCE * IQR and Q3 + FENCE * IQR of all the
 * finite values, quartiles by nearest rank. Points beyond are drawn at the edge and marked. */
#define FENCE 10.0
static int robust_range(const double *const *ys, int n_series, int n, double *lo, double *hi) {
    double *v = malloc(sizeof(double) * ((size_t)n_series * n + 1));
    if (!v) return GLOW_ENOMEM;
    size_t k = 0;
    for (int s = 0; s < n_series; s++)
        for (int i = 0; i < n; i++)
            if (isfinite(ys[s][i])) v[k++] = ys[s][i];
    if (k >= 4) {
        qsort(v, k, sizeof *v, compare_doubles);
        double q1 = v[(k - 1) / 4], q3 = v[3 * (k - 1) / 4], iqr = q3 - q1;
        *lo = fmax(*lo, q1 - FENCE * iqr);
        *hi = fmin(*hi, q3 + FENCE * iqr);
    }
    free(v);
    return GLOW_OK;
}

int glow_plot_write(const char *path, const char *title, const double *x,
                    const double *const *ys, const char *const *labels, int n_series,
                    int n_points, int width, int height) {
    static const uint8_t black[3] = {0, 0, 0}, grey[3] = {225, 225, 225},
                         mid[3] = {140, 140, 140}, white[3] = {255, 255, 255};
    static const uint8_t colours[8][3] = {{31, 119, 180}, {255, 127, 14}, {44, 160, 44},
                                          {214, 39, 40},  {148, 103, 189}, {140, 86, 75},
                                          {227, 119, 194}, {127, 127, 127}};
    if (width < 160 || height < 120 || width > 8192 || height > 8192 || n_series < 0 ||
        n_points < 0 || (n_series > 0 && !ys))
        return glow_fail(GLOW_EINVAL, "%s: bad plot (%dx%d, %d series of %d points)", path,
                         width, height, n_series, n_points);
    canvas cv = {malloc((size_t)width * height * 3), height, width};
    if (!cv.rgb) return glow_fail(GLOW_ENOMEM, "%s: out of memory", path);
    memset(cv.rgb, 255, (size_t)width * height * 3);
    int ts = width >= 800 ? 2 : 1; /* tick and legend text scale */
    int hs = width >= 400 ? ts + 1 : 1; /* title scale */

    double xlo = INFINITY, xhi = -INFINITY, ylo = INFINITY, yhi = -INFINITY;
    if (x) finite_range(x, n_points, &xlo, &xhi);
    else if (n_points > 0) xlo = 0, xhi = n_points - 1;
    for (int s = 0; s < n_series; s++) finite_range(ys[s], n_points, &ylo, &yhi);
    if (robust_range(ys, n_series, n_points, &ylo, &yhi) != GLOW_OK) {
        free(cv.rgb);
        return glow_fail(GLOW_ENOMEM, "%s: out of memory", path);
    }
    double clip_lo = ylo, clip_hi = yhi; /* values beyond are clipped to these */
    if (!(xlo <= xhi)) xlo = 0, xhi = 1;
    if (!(ylo <= yhi)) ylo = 0, yhi = 1;
    if (xhi - xlo < 1e-12 * fmax(1, fabs(xhi))) xlo -= 0.5, xhi += 0.5;
    if (yhi - ylo < 1e-12 * fmax(1, fabs(yhi))) ylo -= 0.5, yhi += 0.5;
    double ystep = nice_step(&ylo, &yhi, height / 80 + 2);

    /* Margins from the widest y tick label. */
    char buf[64];
    int label_w = 0;
    for (double v = ylo; v <= yhi + ystep * 0.5; v += ystep) {
        tick_label(buf, sizeof buf, v, ystep);
        label_w = label_w > text_width(buf, ts) ? label_w : text_width(buf, ts);
    }
    int left = label_w + 10 * ts + 6, right = width - 1 - 12 * ts - 8;
    int top = (title && *title ? 7 * hs + 14 : 10), bottom = height - 1 - (7 * ts + 14);
    if (right - left < 40 || bottom - top < 40) {
        free(cv.rgb);
        return glow_fail(GLOW_EINVAL, "%s: plot %dx%d is too small for its labels", path, width,
                         height);
    }
    /* As many x ticks as fit with their labels a few characters apart. */
    double xstep = 1, x0 = xlo, x1 = xhi;
    for (int want = width / 100 + 2; want >= 1; want--) {
        xlo = x0, xhi = x1;
        xstep = nice_step(&xlo, &xhi, want);
        int widest = 0;
        for (double v = xlo; v <= xhi + xstep * 0.5; v += xstep) {
            tick_label(buf, sizeof buf, v, xstep);
            widest = widest > text_width(buf, ts) ? widest : text_width(buf, ts);
        }
        if (widest + 18 * ts < (right - left) * xstep / (xhi - xlo)) break;
    }
    double px_per_x = (right - left) / (xhi - xlo), px_per_y = (bottom - top) / (yhi - ylo);
#define PX(v) (left + ((v) - xlo) * px_per_x)
#define PY(v) (bottom - ((v) - ylo) * px_per_y)

    for (double v = xlo; v <= xhi + xstep * 0.5; v += xstep) {
        int px = (int)lround(PX(v));
        fill(&cv, px, top, px, bottom, grey);
        fill(&cv, px, bottom, px, bottom + 4, black);
        tick_label(buf, sizeof buf, v, xstep);
        int tw = text_width(buf, ts), tx = px - tw / 2;
        if (tx + tw > width - 2) tx = width - 2 - tw;
        text(&cv, tx, bottom + 7, buf, ts, black);
    }
    for (double v = ylo; v <= yhi + ystep * 0.5; v += ystep) {
        int py = (int)lround(PY(v));
        fill(&cv, left, py, right, py, grey);
        fill(&cv, left - 4, py, left, py, black);
        tick_label(buf, sizeof buf, v, ystep);
        text(&cv, left - 7 - text_width(buf, ts), py - 7 * ts / 2, buf, ts, black);
    }
    fill(&cv, left, top, left, bottom, black);
    fill(&cv, left, bottom, right, bottom, black);
    if (title && *title) text(&cv, (width - text_width(title, hs)) / 2, 6, title, hs, black);

    int clipped = 0;
    for (int s = 0; s < n_series; s++) {
        const uint8_t *col = colours[s % 8];
        int prev = -1; /* the last finite point: lines bridge non-finite gaps */
        double prev_y = 0;
        for (int i = 0; i < n_points; i++) {
            double xi = x ? x[i] : i, yi = ys[s][i];
            if (!isfinite(xi) || !isfinite(yi)) continue;
            if (yi > clip_hi || yi < clip_lo) { /* a clipped point: a bar 5 px high at the edge */
                yi = yi > clip_hi ? clip_hi : clip_lo;
                int px = (int)lround(PX(xi)), py = (int)lround(PY(yi));
                fill(&cv, px - 1, yi == clip_hi ? py : py - 4, px + 1, yi == clip_hi ? py + 4 : py, col);
                clipped++;
            }
            if (prev >= 0) line(&cv, PX(x ? x[prev] : prev), PY(prev_y), PX(xi), PY(yi), col);
            else fill(&cv, (int)PX(xi) - 1, (int)PY(yi) - 1, (int)PX(xi) + 1, (int)PY(yi) + 1, col);
            prev = i, prev_y = yi;
        }
    }
    if (clipped) { /* say so under the title */
        snprintf(buf, sizeof buf, "%d OFF SCALE, AT THE EDGE", clipped);
        text(&cv, left + 6, top + 4, buf, ts, mid);
    }
#undef PX
#undef PY

    if (labels && n_series > 0) {
        int lw = 0, lh = 9 * ts + 4;
        for (int s = 0; s < n_series; s++) {
            const char *l = labels[s] ? labels[s] : "";
            lw = lw > text_width(l, ts) ? lw : text_width(l, ts);
        }
        int bw = lw + 26 * ts + 12, bh = n_series * lh + 8;
        int bx = right - bw - 6, by = top + 6;
        if (bx < left + 2) bx = left + 2;
        fill(&cv, bx, by, bx + bw, by + bh, white);
        fill(&cv, bx, by, bx + bw, by, mid), fill(&cv, bx, by + bh, bx + bw, by + bh, mid);
        fill(&cv, bx, by, bx, by + bh, mid), fill(&cv, bx + bw, by, bx + bw, by + bh, mid);
        for (int s = 0; s < n_series; s++) {
            int yy = by + 6 + s * lh;
            fill(&cv, bx + 6, yy + 3 * ts - 1, bx + 6 + 18 * ts, yy + 3 * ts + 1, colours[s % 8]);
            text(&cv, bx + 12 + 20 * ts, yy, labels[s] ? labels[s] : "", ts, black);
        }
    }

    int rc = glow_png_write(path, cv.rgb, height, width, 3);
    free(cv.rgb);
    return rc;
}
