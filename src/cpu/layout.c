/* layout.c: the CPU's operations that only move values: the 2x2 squeeze, channel
 * permutations, and the column gathers of the split priors and the coupling's halves.
 *
 * Squeeze (space-to-depth): input pixel (2i+dy, 2j+dx), channel c goes to output pixel
 * (i, j), channel c*4 + dy*2 + dx (the original Glow's order). A pure permutation: log-det
 * 0, and its backward pass is its inverse applied to the gradient. */
#include <string.h>
#include "cpu.h"

CLONED void squeeze_forward(real *y, const real *x, int batch, int h, int w, int c) {
    int h2 = h / 2, w2 = w / 2;
    #pragma omp parallel for collapse(2) schedule(static)
    for (int b = 0; b < batch; b++)
        for (int i = 0; i < h2; i++)
            for (int j = 0; j < w2; j++) {
                real *out = y + (((size_t)b * h2 + i) * w2 + j) * 4 * c;
                for (int dy = 0; dy < 2; dy++)
                    for (int dx = 0; dx < 2; dx++) {
                        const real *in = x + (((size_t)b * h + 2 * i + dy) * w + 2 * j + dx) * c;
                        for (int k = 0; k < c; k++) out[k * 4 + dy * 2 + dx] = in[k];
                    }
            }
}

CLONED void squeeze_inverse(real *x, const real *y, int batch, int h, int w, int c) {
    int h2 = h / 2, w2 = w / 2;
    #pragma omp parallel for collapse(2) schedule(static)
    for (int b = 0; b < batch; b++)
        for (int i = 0; i < h2; i++)
            for (int j = 0; j < w2; j++) {
                const real *in = y + (((size_t)b * h2 + i) * w2 + j) * 4 * c;
                for (int dy = 0; dy < 2; dy++)
                    for (int dx = 0; dx < 2; dx++) {
                        real *out = x + (((size_t)b * h + 2 * i + dy) * w + 2 * j + dx) * c;
                        for (int k = 0; k < c; k++) out[k] = in[k * 4 + dy * 2 + dx];
                    }
            }
}

CLONED void permute_forward(real *y, const real *x, const int *perm, size_t rows, int c) {
    #pragma omp parallel for schedule(static)
    for (size_t r = 0; r < rows; r++)
        for (int i = 0; i < c; i++) y[r * c + i] = x[r * c + perm[i]];
}

CLONED void permute_inverse(real *x, const real *y, const int *perm, size_t rows, int c) {
    #pragma omp parallel for schedule(static)
    for (size_t r = 0; r < rows; r++)
        for (int i = 0; i < c; i++) x[r * c + perm[i]] = y[r * c + i];
}

CLONED void copy_columns(real *dst, int ld_dst, const real *src, int ld_src, size_t rows, int n) {
    #pragma omp parallel for schedule(static)
    for (size_t r = 0; r < rows; r++) memcpy(dst + r * ld_dst, src + r * ld_src, sizeof(real) * n);
}

CLONED void add_columns(real *dst, int ld_dst, const real *src, int ld_src, size_t rows, int n) {
    #pragma omp parallel for schedule(static)
    for (size_t r = 0; r < rows; r++)
        for (int j = 0; j < n; j++) dst[r * ld_dst + j] += src[r * ld_src + j];
}

CLONED void deinterleave(real *even, real *odd, const real *src, size_t rows, int half) {
    #pragma omp parallel for schedule(static)
    for (size_t r = 0; r < rows; r++)
        for (int j = 0; j < half; j++) {
            even[r * half + j] = src[r * 2 * half + 2 * j];
            odd[r * half + j] = src[r * 2 * half + 2 * j + 1];
        }
}

CLONED void interleave(real *dst, const real *even, const real *odd, size_t rows, int half) {
    #pragma omp parallel for schedule(static)
    for (size_t r = 0; r < rows; r++)
        for (int j = 0; j < half; j++) {
            dst[r * 2 * half + 2 * j] = even[r * half + j];
            dst[r * 2 * half + 2 * j + 1] = odd[r * half + j];
        }
}
