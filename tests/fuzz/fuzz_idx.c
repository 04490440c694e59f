/* fuzz_idx.c: IDX image and label files, plain or gzipped (gzip is told by its magic).
 * The first byte chooses: even, the input is an image file; odd, it is the label file of
 * a valid 4-image file. */
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    glow_dataset d;
    if (data[0] % 2 == 0) {
        unlink(fuzz_path("f-labels-idx1-ubyte")); /* before: fuzz_path's buffer is reused */
        const char *path = fuzz_file("f-images-idx3-ubyte", data + 1, size - 1);
        if (!path) return 0;
        int rc = glow_dataset_load(&d, path, NULL, 0);
        fuzz_check_message(rc);
        if (rc == GLOW_OK && d.labels) abort(); /* no label file beside it */
        if (rc == GLOW_OK && (size_t)d.n * d.h * d.w * d.c > 0) d.pixels[0] ^= 1; /* touch */
        glow_dataset_free(&d);
        return 0;
    }
    uint8_t images[16 + 4 * 2 * 2] = {0, 0, 8, 3, 0, 0, 0, 4, 0, 0, 0, 2, 0, 0, 0, 2};
    const char *written = fuzz_file("g-images-idx3-ubyte", images, sizeof images);
    if (!written) return 0;
    char path[256]; /* fuzz_file's buffer is overwritten by the next call */
    snprintf(path, sizeof path, "%s", written);
    if (!fuzz_file("g-labels-idx1-ubyte", data + 1, size - 1)) return 0;
    int rc = glow_dataset_load(&d, path, NULL, 0);
    if (rc == GLOW_OK && !d.labels) abort(); /* the label file beside it must be read */
    fuzz_check_message(rc);
    if (rc == GLOW_OK && d.labels && d.n_classes > 256) abort(); /* byte labels */
    glow_dataset_free(&d);
    return 0;
}
