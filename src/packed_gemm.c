/* packed_gemm.c: out = a W^T for the coupling network's forward pass, with W packed once
 * per pass and the per-channel affine map (and ReLU) that follows each convolution fused
 * into the store. See kernels.h.
 *
 * Why not OpenBLAS here: the network runs image group by image group (coupling.c), and for
 * every group OpenBLAS packs the same weights again, zeroes the output before summing into
 * it, and leaves the actnorm and ReLU to another pass over memory. Here each 6-row x
 * 64-column tile of the output is summed in 24 AVX-512 registers, broadcasting a's
 * elements straight from memory against one packed 64-column row of W per k, then shifted,
 * scaled, rectified and stored once. On one core that measured 1.26-1.35x OpenBLAS plus a
 * separate pass on fmnist's 1x1 convolution (1024 x 128 x 128), 1.7x on its 3x3 input
 * convolution (K = 18), and 1.06-1.4x on cifar-paper's shapes. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "kernels.h"

#define PANEL 64  /* output channels per packed panel: four 16-float vectors */
#define TILE_M 6  /* rows per register tile: 6 x 4 accumulators + 4 weight vectors */

size_t packed_size(int n, int k) { return (size_t)(n + PANEL - 1) / PANEL * PANEL * k + PANEL; }

/* Panels of PANEL output channels, each k rows of PANEL floats (zero beyond n), starting at
 * the first 64-byte boundary of dst (packed_size leaves room for that). */
static float *panels(real *dst) {
    return (float *)(((uintptr_t)dst + 63) & ~(uintptr_t)63);
}

void pack_weights(real *dst, const real *w, int n, int k, int transposed) {
    if (sizeof(real) != sizeof(float)) return;
    float *p = panels(dst);
    size_t along_n = transposed ? 1 : k, along_k = transposed ? n : 1;
    for (int n0 = 0; n0 < n; n0 += PANEL, p += (size_t)PANEL * k)
        for (int kk = 0; kk < k; kk++)
            for (int j = 0; j < PANEL; j++)
                p[(size_t)kk * PANEL + j] = n0 + j < n ? (float)w[(n0 + j) * along_n + kk * along_k] : 0.0f;
}

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>

static int use_packed = -1; /* -1: not decided yet */

static int supported(void) {
    __builtin_cpu_init();
    return sizeof(real) == sizeof(float) && __builtin_cpu_supports("avx512f");
}

int packed_available(void) {
    if (use_packed < 0) use_packed = supported() && !getenv("GLOW_NO_PACKED");
    return use_packed;
}

int packed_use(int on) {
    int was = packed_available();
    use_packed = on && supported();
    return was;
}

/* One tile: mr rows x nv vectors, constants once inlined into the tile_MR_NV functions
 * below. last masks the columns of the last vector that exist. */
static inline __attribute__((always_inline, target("avx512f"))) void
tile(const int mr, const int nv, const float *a, size_t lda, const float *w, int k, float *out,
     size_t ldo, const float *shift, const float *scale, int flags, __mmask16 last) {
    __m512 acc[TILE_M][4];
    for (int i = 0; i < mr; i++)
        for (int j = 0; j < nv; j++)
            acc[i][j] = flags & PACKED_ADD
                            ? _mm512_maskz_loadu_ps(j == nv - 1 ? last : (__mmask16)0xFFFF, out + i * ldo + 16 * j)
                            : _mm512_setzero_ps();
    #pragma GCC unroll 4
    for (int kk = 0; kk < k; kk++) {
        __m512 wv[4];
        for (int j = 0; j < nv; j++) wv[j] = _mm512_load_ps(w + (size_t)kk * PANEL + 16 * j);
        for (int i = 0; i < mr; i++) {
            __m512 ai = _mm512_set1_ps(a[i * lda + kk]);
            for (int j = 0; j < nv; j++) acc[i][j] = _mm512_fmadd_ps(ai, wv[j], acc[i][j]);
        }
    }
    for (int j = 0; j < nv; j++) {
        __mmask16 m = j == nv - 1 ? last : (__mmask16)0xFFFF;
        __m512 sh = _mm512_setzero_ps(), sc = _mm512_setzero_ps(), zero = _mm512_setzero_ps();
        if (shift) sh = _mm512_maskz_loadu_ps(m, shift + 16 * j), sc = _mm512_maskz_loadu_ps(m, scale + 16 * j);
        for (int i = 0; i < mr; i++) {
            __m512 v = acc[i][j];
            if (shift) v = _mm512_mul_ps(_mm512_add_ps(v, sh), sc);
            if (flags & PACKED_RELU) v = _mm512_max_ps(v, zero); /* as v > 0 ? v : 0, NaN too */
            _mm512_mask_storeu_ps(out + i * ldo + 16 * j, m, v);
        }
    }
}

typedef void tile_fn(const float *a, size_t lda, const float *w, int k, float *out, size_t ldo,
                     const float *shift, const float *scale, int flags, __mmask16 last);
#define TILE_FN(MR, NV)                                                                        \
    static __attribute__((noinline, target("avx512f"))) void tile_##MR##_##NV(                \
        const float *a, size_t lda, const float *w, int k, float *out, size_t ldo,             \
        const float *shift, const float *scale, int flags, __mmask16 last) {                   \
        tile(MR, NV, a, lda, w, k, out, ldo, shift, scale, flags, last);                       \
    }
#define TILE_ROWS(X, NV) X(1, NV) X(2, NV) X(3, NV) X(4, NV) X(5, NV) X(6, NV)
#define ALL_TILES(X) TILE_ROWS(X, 1) TILE_ROWS(X, 2) TILE_ROWS(X, 3) TILE_ROWS(X, 4)
ALL_TILES(TILE_FN)
#define TILE_ENTRY(MR, NV) [MR][NV] = tile_##MR##_##NV,
static tile_fn *const tiles[TILE_M + 1][5] = {ALL_TILES(TILE_ENTRY)};

void packed_gemm(real *out, int ldo, const real *a, int lda, const real *packed, size_t rows,
                 int n, int k, const real *shift, const real *scale, int flags) {
    const float *p = panels((real *)packed);
    for (int n0 = 0; n0 < n; n0 += PANEL, p += (size_t)PANEL * k) {
        int cols = n - n0 < PANEL ? n - n0 : PANEL, nv = (cols + 15) / 16;
        __mmask16 last = (__mmask16)((1u << (cols - 16 * (nv - 1))) - 1u);
        for (size_t m = 0; m < rows; m += TILE_M) {
            int mr = rows - m < TILE_M ? (int)(rows - m) : TILE_M;
            tiles[mr][nv]((const float *)a + m * lda, lda, p, k, (float *)out + m * ldo + n0, ldo,
                          shift ? (const float *)shift + n0 : NULL,
                          scale ? (const float *)scale + n0 : NULL, flags, last);
        }
    }
}
#else
int packed_available(void) { return 0; }
int packed_use(int on) { return 0; }
void packed_gemm(real *out, int ldo, const real *a, int lda, const real *packed, size_t rows,
                 int n, int k, const real *shift, const real *scale, int flags) {}
#endif
