/* squeeze.c: 2x2 space-to-depth. Input pixel (2i+dy, 2j+dx), channel c goes to output
 * pixel (i, j), channel c*4 + dy*2 + dx (the original Glow's order). A pure permutation:
 * log-det 0, and its backward pass is its inverse applied to the gradient. */
#include "layers.h"

void squeeze_forward(real *y, const real *x, int batch, int h, int w, int c) {
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

void squeeze_inverse(real *x, const real *y, int batch, int h, int w, int c) {
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
