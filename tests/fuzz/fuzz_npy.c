/* fuzz_npy.c: latents (.npy, first byte even) and attribute directions (.npz, odd). */
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    const char *path = fuzz_file(data[0] % 2 ? "f.npz" : "f.npy", data + 1, size - 1);
    if (!path) return 0;
    if (data[0] % 2) {
        glow_directions d;
        int rc = glow_directions_load(path, &d);
        fuzz_check_message(rc);
        if (rc == GLOW_OK) {
            if (d.n > 0 && d.dim > 0) d.z[(size_t)d.n * d.dim - 1] += 1; /* in bounds */
            glow_directions_free(&d);
        }
        return 0;
    }
    glow_real *z = NULL;
    size_t rows, cols;
    int rc = glow_npy_read(path, &z, &rows, &cols);
    fuzz_check_message(rc);
    if (rc == GLOW_OK && rows * cols > 0) z[rows * cols - 1] += 1;
    free(z);
    return 0;
}
