/* make_jpeg.c: seed JPEGs for fuzz_image (seeds.sh): a 24x16 RGB image, baseline and
 * progressive, and a gray one.   make_jpeg OUT_PREFIX */
#include <stdio.h>
#include <jpeglib.h>

static int write(const char *path, int c, int progressive) {
    FILE *f = fopen(path, "wb");
    if (!f) return 1;
    unsigned char px[16 * 24 * 3];
    for (int i = 0; i < 16 * 24 * c; i++) px[i] = (unsigned char)(i * 37 + i / 24);
    struct jpeg_compress_struct ci;
    struct jpeg_error_mgr err;
    ci.err = jpeg_std_error(&err);
    jpeg_create_compress(&ci);
    jpeg_stdio_dest(&ci, f);
    ci.image_width = 24, ci.image_height = 16, ci.input_components = c;
    ci.in_color_space = c == 1 ? JCS_GRAYSCALE : JCS_RGB;
    jpeg_set_defaults(&ci);
    if (progressive) jpeg_simple_progression(&ci);
    jpeg_start_compress(&ci, TRUE);
    while (ci.next_scanline < 16) {
        JSAMPROW row = px + ci.next_scanline * 24 * c;
        jpeg_write_scanlines(&ci, &row, 1);
    }
    jpeg_finish_compress(&ci);
    jpeg_destroy_compress(&ci);
    return fclose(f) != 0;
}

int main(int argc, char **argv) {
    if (argc != 2) return 2;
    char p[4096];
    int rc = 0;
    snprintf(p, sizeof p, "%s-baseline.jpg", argv[1]), rc |= write(p, 3, 0);
    snprintf(p, sizeof p, "%s-progressive.jpg", argv[1]), rc |= write(p, 3, 1);
    snprintf(p, sizeof p, "%s-gray.jpg", argv[1]), rc |= write(p, 1, 0);
    return rc;
}
