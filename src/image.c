/* image.c: pictures in and out. Decoding PNG (libpng) and JPEG (libjpeg) into uint8 NHWC
 * arrays, PNG encoding, the one resize method the data loaders use and grids of samples
 * (line plots are in plot.c).
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
#define JPEG_MAX_RATIO 4096 /* samples per byte of a JPEG file, at the most */
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
    /* Deflate expands at most 1032:1, so larger claims are a decompression bomb (or a
     * truncated file), refused before the pixels are allocated. */
    if (ih * (rowbytes + 1) > 1032 * (size_t)size + 65536)
        png_error(png, "more pixels than the file's bytes can hold");
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
    /* The size from the header, before jpeg_start_decompress allocates for it (a
     * progressive JPEG's coefficient buffers take 2 bytes per sample there). */
    size_t samples = (size_t)cinfo.image_height * cinfo.image_width * oc;
    if (samples > MAX_SAMPLES) {
        size_t h = cinfo.image_height, w = cinfo.image_width;
        jpeg_destroy_decompress(&cinfo);
        return glow_fail(GLOW_EFORMAT, "%s: unsupported image: %zux%zu JPEG, over the limit of "
                         "%zu samples", name, h, w, MAX_SAMPLES);
    }
    /* Real JPEGs, even flat ones, take far more than a byte per 4096 samples; a header that
     * claims more than that is not decoded (a few hundred bytes must not cost 700 MB). */
    if (samples > ((size_t)1 << 20) + JPEG_MAX_RATIO * size) {
        size_t h = cinfo.image_height, w = cinfo.image_width;
        jpeg_destroy_decompress(&cinfo);
        return glow_fail(GLOW_EFORMAT, "%s: bad JPEG: %zu bytes cannot hold a %zux%zu image",
                         name, size, h, w);
    }
    cinfo.mem->max_memory_to_use = 3 * MAX_SAMPLES; /* libjpeg's own, bounded too */
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
static int resize_strided(uint8_t *dst, int dh, int dw, const uint8_t *src, size_t stride,
                          int sh, int sw, int c) {
    if (dh == sh && dw == sw) {
        for (int y = 0; y < dh; y++) memcpy(dst + (size_t)y * dw * c, src + y * stride, (size_t)dw * c);
        return GLOW_OK;
    }
    axis_weights ax = {0}, ay = {0};
    float *tmp = malloc((size_t)sh * dw * c * sizeof *tmp); /* (sh,dw,c) */
    int rc = GLOW_OK;
    if (axis_make(&ax, dw, sw) || axis_make(&ay, dh, sh) || !tmp) {
        rc = glow_fail(GLOW_ENOMEM, "out of memory resizing %dx%d to %dx%d", sh, sw, dh, dw);
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
    return rc;
}

int glow_image_resize(uint8_t *dst, int dh, int dw, const uint8_t *src, int sh, int sw, int c) {
    return resize_strided(dst, dh, dw, src, (size_t)sw * c, sh, sw, c);
}

int glow_image_fit(uint8_t *dst, int size, const uint8_t *src, int sh, int sw, int c) {
    int side = sh < sw ? sh : sw;
    const uint8_t *win = src + ((size_t)((sh - side) / 2) * sw + (sw - side) / 2) * c;
    return resize_strided(dst, size, size, win, (size_t)sw * c, side, side, c);
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
