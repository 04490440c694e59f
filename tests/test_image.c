/* test_image.c: PNG/JPEG reading and writing, the resize method, grids and plots. Files
 * are written under test_tmpdir() by the tests themselves; the PNG variants the library
 * never writes (palette, 16-bit, alpha) are made here with libpng, JPEGs with libjpeg. */
#include <png.h>
#include <zlib.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "test.h"
#include <jpeglib.h> /* after stdio.h, which it needs */

static void tmp_path(char *out, size_t n, const char *name) {
    snprintf(out, n, "%s/%s", test_tmpdir(), name);
}

static int write_bytes(const char *path, const void *data, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    size_t w = fwrite(data, 1, n, f);
    return fclose(f) == 0 && w == n ? 0 : -1;
}

static uint8_t *read_bytes(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    rewind(f);
    uint8_t *b = malloc((size_t)size + 1);
    *n = fread(b, 1, (size_t)size, f);
    fclose(f);
    return b;
}

/* A PNG of any colour type and depth, rows given as raw bytes (big-endian for 16 bits). */
static int write_png_raw(const char *path, const uint8_t *rows, int h, int w, int color, int depth,
                         const png_color *palette, int n_palette) {
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
    png_infop info = png_create_info_struct(png);
    if (setjmp(png_jmpbuf(png))) {
        png_destroy_write_struct(&png, &info);
        fclose(f);
        return -1;
    }
    png_init_io(png, f);
    png_set_IHDR(png, info, w, h, depth, color, PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT,
                 PNG_FILTER_TYPE_DEFAULT);
    if (palette) png_set_PLTE(png, info, palette, n_palette);
    png_write_info(png, info);
    int ch = color == PNG_COLOR_TYPE_RGB ? 3 : color == PNG_COLOR_TYPE_RGBA ? 4
             : color == PNG_COLOR_TYPE_GRAY_ALPHA ? 2 : 1;
    size_t rowbytes = ((size_t)w * ch * depth + 7) / 8;
    for (int y = 0; y < h; y++) png_write_row(png, (png_bytep)rows + y * rowbytes);
    png_write_end(png, NULL);
    png_destroy_write_struct(&png, &info);
    return fclose(f);
}

int test_write_jpeg(const char *path, const uint8_t *px, int h, int w, int c, int quality) {
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    struct jpeg_compress_struct cinfo;
    struct jpeg_error_mgr jerr;
    cinfo.err = jpeg_std_error(&jerr);
    jpeg_create_compress(&cinfo);
    jpeg_stdio_dest(&cinfo, f);
    cinfo.image_width = w, cinfo.image_height = h, cinfo.input_components = c;
    cinfo.in_color_space = c == 1 ? JCS_GRAYSCALE : JCS_RGB;
    jpeg_set_defaults(&cinfo);
    jpeg_set_quality(&cinfo, quality, TRUE);
    jpeg_start_compress(&cinfo, TRUE);
    while (cinfo.next_scanline < (unsigned)h) {
        JSAMPROW row = (JSAMPROW)px + (size_t)cinfo.next_scanline * w * c;
        jpeg_write_scanlines(&cinfo, &row, 1);
    }
    jpeg_finish_compress(&cinfo);
    jpeg_destroy_compress(&cinfo);
    return fclose(f);
}

TEST(png_roundtrip) {
    for (int c = 1; c <= 3; c += 2) {
        int h = 13, w = 7;
        uint8_t px[13 * 7 * 3];
        for (int i = 0; i < h * w * c; i++) px[i] = (uint8_t)(i * 37 + 11);
        char path[512], tmp[520];
        snprintf(path, sizeof path, "%s/roundtrip%d.png", test_tmpdir(), c);
        REQUIRE_OK(glow_png_write(path, px, h, w, c));
        snprintf(tmp, sizeof tmp, "%s.tmp", path);
        CHECK(access(tmp, F_OK) != 0, "%s left behind", tmp);
        uint8_t *back;
        int bh, bw, bc;
        REQUIRE_OK(glow_image_read(path, &back, &bh, &bw, &bc));
        CHECK(bh == h && bw == w && bc == c, "read %dx%dx%d, wrote %dx%dx%d", bh, bw, bc, h, w, c);
        if (bh == h && bw == w && bc == c)
            CHECK(memcmp(back, px, (size_t)h * w * c) == 0, "pixels differ (c=%d)", c);
        free(back);
    }
}

TEST(png_encode_decode_memory) {
    uint8_t px[4 * 5 * 3], *png, *back;
    for (int i = 0; i < 60; i++) px[i] = (uint8_t)(255 - i * 4);
    size_t size;
    int h, w, c;
    REQUIRE_OK(glow_png_encode(&png, &size, px, 4, 5, 3));
    REQUIRE_OK(glow_image_decode(png, size, &back, &h, &w, &c));
    CHECK(h == 4 && w == 5 && c == 3 && memcmp(back, px, sizeof px) == 0, "memory round trip");
    free(back);
    /* Cut short: an error, not a crash or a half image. */
    int rc = glow_image_decode(png, size / 2, &back, &h, &w, &c);
    CHECK(rc == GLOW_EFORMAT && back == NULL, "truncated PNG in memory: rc %d", rc);
    CHECK(strstr(glow_last_error(), "image data") != NULL, "message: %s", glow_last_error());
    free(png);
    CHECK(glow_png_encode(&png, &size, px, 4, 5, 2) == GLOW_EINVAL, "2 channels accepted");
}

TEST(png_write_errors) {
    char path[512];
    tmp_path(path, sizeof path, "no-such-dir/x.png");
    uint8_t px[4] = {0};
    int rc = glow_png_write(path, px, 2, 2, 1);
    CHECK(rc == GLOW_EIO, "rc %d", rc);
    CHECK(strstr(glow_last_error(), "no-such-dir/x.png") != NULL, "message: %s", glow_last_error());
    tmp_path(path, sizeof path, "bad-channels.png");
    rc = glow_png_write(path, px, 1, 1, 4);
    CHECK(rc == GLOW_EINVAL && strstr(glow_last_error(), "bad-channels.png"), "rc %d: %s", rc,
          glow_last_error());
    CHECK(access(path, F_OK) != 0, "file written despite the error");
}

TEST(image_read_png_variants) {
    char path[512];
    uint8_t *px;
    int h, w, c;
    /* RGBA: alpha dropped. */
    uint8_t rgba[2 * 4] = {10, 20, 30, 0, 40, 50, 60, 255};
    tmp_path(path, sizeof path, "rgba.png");
    REQUIRE(write_png_raw(path, rgba, 1, 2, PNG_COLOR_TYPE_RGBA, 8, NULL, 0) == 0, "write rgba");
    REQUIRE_OK(glow_image_read(path, &px, &h, &w, &c));
    CHECK(h == 1 && w == 2 && c == 3, "rgba: %dx%dx%d", h, w, c);
    CHECK(c == 3 && px[0] == 10 && px[2] == 30 && px[3] == 40 && px[5] == 60, "rgba values");
    free(px);
    /* Gray + alpha: one channel. */
    uint8_t ga[4] = {77, 0, 99, 128};
    tmp_path(path, sizeof path, "ga.png");
    REQUIRE(write_png_raw(path, ga, 1, 2, PNG_COLOR_TYPE_GRAY_ALPHA, 8, NULL, 0) == 0, "write ga");
    REQUIRE_OK(glow_image_read(path, &px, &h, &w, &c));
    CHECK(c == 1 && px[0] == 77 && px[1] == 99, "gray+alpha: c %d, %d %d", c, px[0], px[1]);
    free(px);
    /* Palette: expanded to RGB. */
    png_color pal[3] = {{255, 0, 0}, {0, 128, 0}, {1, 2, 3}};
    uint8_t idx[3] = {2, 0, 1};
    tmp_path(path, sizeof path, "palette.png");
    REQUIRE(write_png_raw(path, idx, 1, 3, PNG_COLOR_TYPE_PALETTE, 8, pal, 3) == 0, "write pal");
    REQUIRE_OK(glow_image_read(path, &px, &h, &w, &c));
    uint8_t want_pal[9] = {1, 2, 3, 255, 0, 0, 0, 128, 0};
    CHECK(c == 3 && w == 3 && memcmp(px, want_pal, 9) == 0, "palette: c %d", c);
    free(px);
    /* 16-bit gray: scaled with rounding, v * 255 / 65535. */
    uint16_t v16[3] = {0x0000, 0x1234, 0xffff};
    uint8_t be[6];
    for (int i = 0; i < 3; i++) be[2 * i] = v16[i] >> 8, be[2 * i + 1] = v16[i] & 255;
    tmp_path(path, sizeof path, "gray16.png");
    REQUIRE(write_png_raw(path, be, 1, 3, PNG_COLOR_TYPE_GRAY, 16, NULL, 0) == 0, "write 16");
    REQUIRE_OK(glow_image_read(path, &px, &h, &w, &c));
    int mid = (int)floor(0x1234 * 255.0 / 65535 + 0.5);
    CHECK(c == 1 && px[0] == 0 && abs(px[1] - mid) <= 1 && px[2] == 255,
          "16-bit: c %d, %d %d %d (want 0 %d 255)", c, px[0], px[1], px[2], mid);
    free(px);
    /* 1-bit gray: 0 and 255. */
    uint8_t bits = 0x40; /* pixels 0 1 0 0 */
    tmp_path(path, sizeof path, "gray1.png");
    REQUIRE(write_png_raw(path, &bits, 1, 4, PNG_COLOR_TYPE_GRAY, 1, NULL, 0) == 0, "write 1");
    REQUIRE_OK(glow_image_read(path, &px, &h, &w, &c));
    CHECK(c == 1 && w == 4 && px[0] == 0 && px[1] == 255 && px[2] == 0, "1-bit: %d %d %d", px[0],
          px[1], px[2]);
    free(px);
}

TEST(image_read_jpeg) {
    int h = 16, w = 24;
    uint8_t rgb[16 * 24 * 3], gray[16 * 24];
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            for (int k = 0; k < 3; k++) rgb[(y * w + x) * 3 + k] = (uint8_t)(40 + 4 * x + 3 * y + 30 * k);
            gray[y * w + x] = (uint8_t)(20 + 5 * x + 2 * y);
        }
    char path[512];
    uint8_t *px;
    int bh, bw, bc;
    tmp_path(path, sizeof path, "rgb.jpg");
    REQUIRE(test_write_jpeg(path, rgb, h, w, 3, 100) == 0, "write jpeg");
    REQUIRE_OK(glow_image_read(path, &px, &bh, &bw, &bc));
    REQUIRE(bh == h && bw == w && bc == 3, "rgb jpeg read as %dx%dx%d", bh, bw, bc);
    int worst = 0;
    for (int i = 0; i < h * w * 3; i++) worst = abs(px[i] - rgb[i]) > worst ? abs(px[i] - rgb[i]) : worst;
    CHECK(worst <= 6, "rgb jpeg (quality 100) differs by %d", worst);
    free(px);
    tmp_path(path, sizeof path, "gray.jpg");
    REQUIRE(test_write_jpeg(path, gray, h, w, 1, 100) == 0, "write gray jpeg");
    REQUIRE_OK(glow_image_read(path, &px, &bh, &bw, &bc));
    REQUIRE(bc == 1, "gray jpeg read with %d channels", bc);
    worst = 0;
    for (int i = 0; i < h * w; i++) worst = abs(px[i] - gray[i]) > worst ? abs(px[i] - gray[i]) : worst;
    CHECK(worst <= 3, "gray jpeg differs by %d", worst);
    free(px);
}

TEST(image_read_errors) {
    char path[512];
    uint8_t *px = (uint8_t *)"";
    int h, w, c;
    tmp_path(path, sizeof path, "missing.png");
    int rc = glow_image_read(path, &px, &h, &w, &c);
    CHECK(rc == GLOW_EIO && strstr(glow_last_error(), "missing.png"), "missing: %d %s", rc,
          glow_last_error());
    CHECK(px == NULL, "pixels not NULL after a failure");

    tmp_path(path, sizeof path, "garbage.png");
    write_bytes(path, "GIF89a not really", 17);
    rc = glow_image_read(path, &px, &h, &w, &c);
    CHECK(rc == GLOW_EFORMAT && strstr(glow_last_error(), "garbage.png") &&
              strstr(glow_last_error(), "unsupported"),
          "garbage: %d %s", rc, glow_last_error());

    /* Truncated PNG and JPEG: cut real files in half. */
    const char *names[2] = {"cut.png", "cut.jpg"};
    uint8_t img[32 * 32 * 3];
    for (int i = 0; i < (int)sizeof img; i++) img[i] = (uint8_t)(i * 7 ^ i >> 5);
    for (int k = 0; k < 2; k++) {
        tmp_path(path, sizeof path, names[k]);
        REQUIRE(k ? test_write_jpeg(path, img, 32, 32, 3, 90) == 0
                  : glow_png_write(path, img, 32, 32, 3) == GLOW_OK, "write %s", names[k]);
        size_t n;
        uint8_t *bytes = read_bytes(path, &n);
        REQUIRE(bytes && n > 100, "read back %s", names[k]);
        write_bytes(path, bytes, n / 2);
        free(bytes);
        rc = glow_image_read(path, &px, &h, &w, &c);
        CHECK(rc == GLOW_EFORMAT && strstr(glow_last_error(), names[k]), "%s: rc %d, %s",
              names[k], rc, glow_last_error());
        if (rc == GLOW_OK) free(px);
    }
}

TEST(image_resize_constant) {
    static const int sizes[][4] = {{7, 5, 3, 2}, {4, 4, 9, 13}, {28, 28, 32, 32}, {10, 3, 6, 6},
                                   {1, 1, 5, 3}, {5, 5, 5, 5}};
    for (int s = 0; s < 6; s++) {
        int sh = sizes[s][0], sw = sizes[s][1], dh = sizes[s][2], dw = sizes[s][3];
        for (int v = 0; v <= 255; v += 51) {
            uint8_t src[28 * 28 * 3], dst[32 * 32 * 3];
            memset(src, v, sizeof src);
            memset(dst, 1, sizeof dst);
            glow_image_resize(dst, dh, dw, src, sh, sw, 3);
            int bad = -1;
            for (int i = 0; i < dh * dw * 3 && bad < 0; i++) if (dst[i] != v) bad = i;
            CHECK(bad < 0, "%dx%d -> %dx%d of %d: dst[%d] = %d", sh, sw, dh, dw, v, bad,
                  bad >= 0 ? dst[bad] : 0);
        }
    }
}

TEST(image_resize_gradient) {
    uint8_t dst[8];
    /* Shrink by 2: area average of pairs. */
    uint8_t row4[4] = {0, 40, 80, 120};
    glow_image_resize(dst, 1, 2, row4, 1, 4, 1);
    CHECK(dst[0] == 20 && dst[1] == 100, "4->2: %d %d", dst[0], dst[1]);
    /* Shrink 3 -> 2: output 0 covers [0, 1.5): (0*1 + 90*0.5) / 1.5 = 30. */
    uint8_t row3[3] = {0, 90, 180};
    glow_image_resize(dst, 1, 2, row3, 1, 3, 1);
    CHECK(dst[0] == 30 && dst[1] == 150, "3->2: %d %d", dst[0], dst[1]);
    /* Enlarge 2 -> 4: linear at x = -0.25, 0.25, 0.75, 1.25, clamped. */
    uint8_t row2[2] = {0, 100};
    glow_image_resize(dst, 1, 4, row2, 1, 2, 1);
    CHECK(dst[0] == 0 && dst[1] == 25 && dst[2] == 75 && dst[3] == 100, "2->4: %d %d %d %d",
          dst[0], dst[1], dst[2], dst[3]);
    /* The same along columns, on a 2-channel image, and both axes at once. */
    uint8_t col4[4 * 2] = {0, 200, 40, 160, 80, 120, 120, 80};
    glow_image_resize(dst, 2, 1, col4, 4, 1, 2);
    CHECK(dst[0] == 20 && dst[1] == 180 && dst[2] == 100 && dst[3] == 100, "column 4->2: %d %d %d %d",
          dst[0], dst[1], dst[2], dst[3]);
    uint8_t sq[4 * 4];
    for (int y = 0; y < 4; y++)
        for (int x = 0; x < 4; x++) sq[y * 4 + x] = (uint8_t)(10 * x + 40 * y);
    glow_image_resize(dst, 2, 2, sq, 4, 4, 1);
    /* Mean of each 2x2 block: 10*0.5 + 40*0.5 = 25 at (0,0). */
    CHECK(dst[0] == 25 && dst[1] == 45 && dst[2] == 105 && dst[3] == 125, "4x4->2x2: %d %d %d %d",
          dst[0], dst[1], dst[2], dst[3]);
}

TEST(image_fit_center_crop) {
    /* 2 x 6, columns 0..5 valued 10*x: the centre square is columns 2..3. */
    uint8_t src[2 * 6], dst[4];
    for (int y = 0; y < 2; y++)
        for (int x = 0; x < 6; x++) src[y * 6 + x] = (uint8_t)(10 * x + y);
    glow_image_fit(dst, 2, src, 2, 6, 1);
    CHECK(dst[0] == 20 && dst[1] == 30 && dst[2] == 21 && dst[3] == 31, "wide crop: %d %d %d %d",
          dst[0], dst[1], dst[2], dst[3]);
    /* 5 x 3 tall: the square starts at row 1; then shrink 3 -> 1 is the mean. */
    uint8_t tall[5 * 3];
    for (int i = 0; i < 15; i++) tall[i] = (uint8_t)(i * 10);
    glow_image_fit(dst, 1, tall, 5, 3, 1);
    CHECK(dst[0] == 70, "tall crop then area mean: %d (want 70)", dst[0]);
}

TEST(grid_layout) {
    int n = 5, h = 2, w = 3, c = 3, cols = 3, pad = 1;
    uint8_t imgs[5 * 2 * 3 * 3];
    for (int k = 0; k < n; k++)
        for (int i = 0; i < h * w * c; i++) imgs[k * h * w * c + i] = (uint8_t)(k * 40 + i);
    uint8_t *g;
    int gh, gw;
    REQUIRE_OK(glow_grid_make(&g, &gh, &gw, imgs, n, h, w, c, cols, pad));
    CHECK(gh == 2 * 2 + 1 && gw == 3 * 3 + 2, "grid %dx%d, want 5x11", gh, gw);
    int bad = 0;
    for (int y = 0; y < gh; y++)
        for (int x = 0; x < gw; x++)
            for (int k = 0; k < c; k++) {
                int r = y / (h + pad), cc = x / (w + pad), iy = y % (h + pad), ix = x % (w + pad);
                int img = r * cols + cc;
                int want = iy >= h || ix >= w || img >= n ? 255
                                                          : imgs[((img * h + iy) * w + ix) * c + k];
                if (g[(y * gw + x) * c + k] != want && bad++ < 3)
                    CHECK(0, "grid (%d,%d,%d) = %d, want %d", y, x, k, g[(y * gw + x) * c + k], want);
            }
    /* Image 4 (row 1, column 1) top-left at (3, 4). */
    CHECK(g[(3 * gw + 4) * c] == 160, "image 4 not at (3,4): %d", g[(3 * gw + 4) * c]);
    char path[512];
    tmp_path(path, sizeof path, "grid.png");
    REQUIRE_OK(glow_grid_write(path, imgs, n, h, w, c, cols, pad));
    uint8_t *back;
    int bh, bw, bc;
    REQUIRE_OK(glow_image_read(path, &back, &bh, &bw, &bc));
    CHECK(bh == gh && bw == gw && bc == c && memcmp(back, g, (size_t)gh * gw * c) == 0,
          "grid PNG differs from glow_grid_make");
    free(back);
    free(g);
    /* A strip: one row, no padding. */
    REQUIRE_OK(glow_grid_make(&g, &gh, &gw, imgs, n, h, w, c, n, 0));
    CHECK(gh == h && gw == n * w, "strip %dx%d", gh, gw);
    CHECK(g[(0 * gw + 3 * w) * c] == 120, "strip image 3 at column 9: %d", g[3 * w * c]);
    free(g);
    CHECK(glow_grid_make(&g, &gh, &gw, imgs, n, h, w, c, 0, 0) == GLOW_EINVAL, "cols 0 accepted");
}

TEST(plot_write) {
    enum { N = 50 };
    double x[N], a[N], b[N];
    for (int i = 0; i < N; i++) {
        x[i] = 100.0 * i;
        a[i] = 8.0 * exp(-i / 10.0) + 1.2;
        b[i] = i == 20 ? NAN : 7.5 * exp(-i / 12.0) + 1.4;
    }
    const double *ys[2] = {a, b};
    const char *labels[2] = {"train bits/dim", "test bits/dim"};
    char path[512];
    tmp_path(path, sizeof path, "curve.png");
    REQUIRE_OK(glow_plot_write(path, "Fashion-MNIST 2x8", x, ys, labels, 2, N, 640, 400));
    uint8_t *px;
    int h, w, c;
    REQUIRE_OK(glow_image_read(path, &px, &h, &w, &c));
    CHECK(h == 400 && w == 640 && c == 3, "plot read back as %dx%dx%d", h, w, c);
    /* The first series' colour and black (axes, text) are both present. */
    int blue = 0, black = 0;
    for (int i = 0; i < h * w; i++) {
        blue += px[3 * i] == 31 && px[3 * i + 1] == 119 && px[3 * i + 2] == 180;
        black += px[3 * i] == 0 && px[3 * i + 1] == 0 && px[3 * i + 2] == 0;
    }
    CHECK(blue > 200 && black > 500, "plot looks empty: %d series pixels, %d black", blue, black);
    free(px);
    /* One spike of 10^5 must not flatten the rest: the curve still spans most of the plot's
     * height (without the fences it would be a flat line along the bottom). */
    a[30] = 1e5;
    const double *ys_spike[1] = {a};
    tmp_path(path, sizeof path, "spike.png");
    REQUIRE_OK(glow_plot_write(path, "spike", x, ys_spike, NULL, 1, N, 640, 400));
    REQUIRE_OK(glow_image_read(path, &px, &h, &w, &c));
    int top_row = h, bottom_row = -1;
    for (int i = 0; i < h * w; i++)
        if (px[3 * i] == 31 && px[3 * i + 1] == 119 && px[3 * i + 2] == 180) {
            top_row = i / w < top_row ? i / w : top_row;
            bottom_row = i / w > bottom_row ? i / w : bottom_row;
        }
    CHECK(bottom_row - top_row > h / 2, "with a spike the curve spans rows %d..%d of %d", top_row,
          bottom_row, h);
    free(px);
    a[30] = 8.0 * exp(-30 / 10.0) + 1.2;
    /* The legend goes where it hides no data: a line rising to the top right keeps all its
     * pixels with a legend (whose swatch adds some) as without one. */
    for (int i = 0; i < N; i++) a[i] = i;
    const double *rising[1] = {a};
    const char *rising_label[1] = {"rising to the top right"};
    int counts[2];
    for (int with = 0; with < 2; with++) {
        tmp_path(path, sizeof path, "rising.png");
        REQUIRE_OK(glow_plot_write(path, "a title far too long for the width of this small plot",
                                   x, rising, with ? rising_label : NULL, 1, N, 640, 400));
        REQUIRE_OK(glow_image_read(path, &px, &h, &w, &c));
        counts[with] = 0;
        for (int i = 0; i < h * w; i++)
            counts[with] += px[3 * i] == 31 && px[3 * i + 1] == 119 && px[3 * i + 2] == 180;
        free(px);
    }
    CHECK(counts[1] >= counts[0], "the legend hides the line: %d series pixels, %d without it",
          counts[1], counts[0]);
    for (int i = 0; i < N; i++) a[i] = 8.0 * exp(-i / 10.0) + 1.2;
    /* One point, no x, no labels; a constant series. */
    double one = 3.0;
    const double *ys1[1] = {&one};
    tmp_path(path, sizeof path, "one.png");
    REQUIRE_OK(glow_plot_write(path, NULL, NULL, ys1, NULL, 1, 1, 200, 150));
    int rc = glow_plot_write(path, "t", x, ys, labels, 2, N, 100, 50);
    CHECK(rc == GLOW_EINVAL && strstr(glow_last_error(), "one.png"), "tiny plot: %d %s", rc,
          glow_last_error());
}

/* The marker's segment (its first byte after the 0xFF, marker) in a JPEG, or NULL. */
static uint8_t *jpeg_segment(uint8_t *d, size_t n, uint8_t marker) {
    for (size_t i = 0; i + 1 < n; i++)
        if (d[i] == 0xFF && d[i + 1] == marker) return d + i + 2;
    return NULL;
}

static uint8_t *file_bytes(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    uint8_t *d = malloc(1 << 20);
    *n = d ? fread(d, 1, 1 << 20, f) : 0;
    fclose(f);
    return d;
}

/* Headers that claim huge images are refused from the header, before any pixel (or
 * libjpeg coefficient) buffer is allocated, at once: a progressive JPEG of a few hundred
 * bytes that claims 20742 x 35338, a PNG claiming 100000 x 100000, and a PNG claiming
 * 8000 x 8000 (within the sample limit) from far fewer bytes than deflate could expand. */
TEST(image_hostile_sizes) {
    char path[512];
    snprintf(path, sizeof path, "%s/prog.jpg", test_tmpdir());
    uint8_t px[16 * 16 * 3];
    for (int i = 0; i < 16 * 16 * 3; i++) px[i] = (uint8_t)(i * 7);
    FILE *f = fopen(path, "wb");
    REQUIRE(f, "open");
    struct jpeg_compress_struct cinfo;
    struct jpeg_error_mgr jerr;
    cinfo.err = jpeg_std_error(&jerr);
    jpeg_create_compress(&cinfo);
    jpeg_stdio_dest(&cinfo, f);
    cinfo.image_width = cinfo.image_height = 16, cinfo.input_components = 3;
    cinfo.in_color_space = JCS_RGB;
    jpeg_set_defaults(&cinfo);
    jpeg_simple_progression(&cinfo);
    jpeg_start_compress(&cinfo, TRUE);
    while (cinfo.next_scanline < 16) {
        JSAMPROW row = px + (size_t)cinfo.next_scanline * 16 * 3;
        jpeg_write_scanlines(&cinfo, &row, 1);
    }
    jpeg_finish_compress(&cinfo);
    jpeg_destroy_compress(&cinfo);
    fclose(f);
    size_t n = 0;
    uint8_t *d = file_bytes(path, &n), *sof = d ? jpeg_segment(d, n, 0xC2) : NULL;
    REQUIRE(sof, "no progressive SOF in %zu bytes", n);
    sof[3] = 20742 >> 8, sof[4] = 20742 & 0xff, sof[5] = 35338 >> 8, sof[6] = 35338 & 0xff;
    uint8_t *img = NULL;
    int h, w, c;
    CHECK(glow_image_decode(d, n, &img, &h, &w, &c) == GLOW_EFORMAT &&
          strstr(glow_last_error(), "20742x35338") && strstr(glow_last_error(), "over the limit"),
          "a %zu-byte JPEG claiming 20742x35338: %s", n,
          glow_last_error());
    /* Within the sample limit (8000 x 8000 x 3), but more than the bytes can hold. */
    sof[3] = 8000 >> 8, sof[4] = 8000 & 0xff, sof[5] = 8000 >> 8, sof[6] = 8000 & 0xff;
    img = NULL;
    CHECK(glow_image_decode(d, n, &img, &h, &w, &c) == GLOW_EFORMAT &&
          strstr(glow_last_error(), "cannot hold"), "a %zu-byte JPEG claiming 8000x8000: %s", n,
          glow_last_error());
    free(img), free(d);
    /* PNGs: a 1x1 image whose header is made to claim more. */
    uint8_t one[1] = {7}, *png;
    size_t pn;
    REQUIRE_OK(glow_png_encode(&png, &pn, one, 1, 1, 1));
    static const uint32_t claims[][2] = {{100000, 100000}, {8000, 8000}};
    static const char *why[] = {"too large", "more pixels than the file's bytes can hold"};
    for (int k = 0; k < 2; k++) {
        uint8_t *ihdr = png + 12; /* "IHDR", then width and height, big-endian */
        for (int i = 0; i < 4; i++) {
            ihdr[4 + i] = (uint8_t)(claims[k][0] >> (24 - 8 * i));
            ihdr[8 + i] = (uint8_t)(claims[k][1] >> (24 - 8 * i));
        }
        uint32_t crc = (uint32_t)crc32(0, ihdr, 17);
        for (int i = 0; i < 4; i++) ihdr[17 + i] = (uint8_t)(crc >> (24 - 8 * i));
        img = NULL;
        CHECK(glow_image_decode(png, pn, &img, &h, &w, &c) == GLOW_EFORMAT &&
              strstr(glow_last_error(), why[k]), "a %zu-byte PNG claiming %ux%u: %s", pn,
              claims[k][0], claims[k][1], glow_last_error());
        free(img);
    }
    free(png);
}
