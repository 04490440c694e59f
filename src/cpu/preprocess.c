/* preprocess.c: pixels <-> model input, as in the paper: with n_bins = 2^n_bits,
 * x = floor(u8 / 2^(8 - n_bits)) / n_bins - 0.5, plus uniform noise in [0, 1/n_bins) per
 * value for training (dequantisation), or plus half a bin (the bin's centre) where an exact
 * round trip is wanted. Back: clip(floor((x + 0.5) * n_bins) * 256 / n_bins, 0, 255). */
#include <math.h>
#include "cpu.h"

void glow_preprocess(glow_real *x, const uint8_t *pixels, int batch, size_t dim, int n_bits,
                     uint64_t seed, uint64_t step) {
    preprocess_from(x, pixels, batch, dim, n_bits, seed, step, 0);
}

CLONED void preprocess_from(real *x, const uint8_t *pixels, int batch, size_t dim, int n_bits,
                            uint64_t seed, uint64_t step, uint64_t first) {
    double n_bins = (double)(1 << n_bits);
    int shift = 8 - n_bits;
    #pragma omp parallel for schedule(static)
    for (int b = 0; b < batch; b++) {
        uint64_t key = glow_rng_key(seed, 0x646571 /* "deq" */, step, first + (uint64_t)b);
        for (size_t i = 0; i < dim; i++) {
            size_t j = (size_t)b * dim + i;
            double u = glow_rng_uniform(key, i);
            x[j] = (glow_real)(((pixels[j] >> shift) + u) / n_bins - 0.5);
        }
    }
}

CLONED void glow_preprocess_center(glow_real *x, const uint8_t *pixels, int batch, size_t dim,
                            int n_bits) {
    double n_bins = (double)(1 << n_bits);
    int shift = 8 - n_bits;
    #pragma omp parallel for schedule(static)
    for (size_t j = 0; j < (size_t)batch * dim; j++)
        x[j] = (glow_real)(((pixels[j] >> shift) + 0.5) / n_bins - 0.5);
}

CLONED void glow_postprocess(uint8_t *pixels, const glow_real *x, int batch, size_t dim, int n_bits) {
    double n_bins = (double)(1 << n_bits);
    #pragma omp parallel for schedule(static)
    for (size_t j = 0; j < (size_t)batch * dim; j++) {
        double v = floor(((double)x[j] + 0.5) * n_bins) * 256.0 / n_bins;
        pixels[j] = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
    }
}
