/* fuzz_image.c: PNG and JPEG decoding from memory, then the crop and resize of the loaders
 * to a size chosen by the first byte. */
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    int out = 1 + data[0] % 64;
    uint8_t *px = NULL;
    int h, w, c;
    int rc = glow_image_decode(data + 1, size - 1, &px, &h, &w, &c);
    fuzz_check_message(rc);
    if (rc == GLOW_OK) {
        if (h < 1 || w < 1 || (c != 1 && c != 3)) abort();
        uint8_t *fit = malloc((size_t)out * out * c);
        if (fit) glow_image_fit(fit, out, px, h, w, c);
        free(fit);
    }
    free(px);
    return 0;
}
