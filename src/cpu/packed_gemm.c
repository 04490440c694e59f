/* packed_gemm.c: out = a W^T for the coupling network's forward pass and input gradients,
 * with W packed once per pass and the per-channel affine map (and ReLU) that follows each
 * convolution fused into the store: in float on AVX-512, or in bf16x3 on AMX (a context's matmul
 * mode), which also has the weight gradients (packed_gemm_tn). See kernels.h.
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
#include "backend.h"

#define PANEL 64  /* output channels per packed panel: four 16-float vectors */
#define TILE_M 6  /* rows per register tile: 6 x 4 accumulators + 4 weight vectors */
#define KBLOCK 32 /* k per AMX tile row: 32 bfloat16 = 64 bytes */
#define SPLIT_KMAX 1024 /* the most k whose split rows gemm_bf16x3 keeps on its stack (64 KiB) */


/* bf16x3 for a product over k terms: below 48, padding k to whole tile rows ate the gain
 * (1.0x the float kernel at k = 18 and 36 on one core; 1.0-1.5x at k = 54, the more the
 * wider the output); above SPLIT_KMAX, float. Packing and product agree on it. */
static int bf16x3_for(const backend *be, int k) {
    return be->matmul == GLOW_MATMUL_BF16X3 && k >= 48 && k <= SPLIT_KMAX;
}

/* k rounded up to whole AMX tile rows, so that both layouts fit in the same size */
static int k_padded(int k) { return (k + KBLOCK - 1) / KBLOCK * KBLOCK; }

size_t packed_size(int n, int k) { return (size_t)(n + PANEL - 1) / PANEL * PANEL * k_padded(k) + PANEL; }

/* Panels of PANEL output channels, each k rows of PANEL floats (zero beyond n), starting at
 * the first 64-byte boundary of dst (packed_size leaves room for that). */
static float *panels(real *dst) {
    return (float *)(((uintptr_t)dst + 63) & ~(uintptr_t)63);
}

static void pack_bf16x3(real *dst, const real *w, int n, int k, int transposed); /* on AMX CPUs */

void pack_weights(const backend *be, real *dst, const real *w, int n, int k, int transposed) {
    if (sizeof(real) != sizeof(float)) return;
    if (bf16x3_for(be, k)) {
        pack_bf16x3(dst, w, n, k, transposed);
        return;
    }
    float *p = panels(dst);
    size_t along_n = transposed ? 1 : k, along_k = transposed ? n : 1;
    /* in parallel over the panels where this runs outside the threads' groups (see coupling.c) */
    #pragma omp parallel for schedule(static) if ((size_t)n * k > 65536)
    for (int n0 = 0; n0 < n; n0 += PANEL) {
        float *panel = p + (size_t)n0 * k;
        for (int kk = 0; kk < k; kk++)
            for (int j = 0; j < PANEL; j++)
                panel[(size_t)kk * PANEL + j] = n0 + j < n ? (float)w[(n0 + j) * along_n + kk * along_k] : 0.0f;
    }
}

/* ---- bfloat16 x 3 on AMX -----------------------------------------------------------------
 * A float x is split into hi = bf16(x) and lo = bf16(x - hi), which together keep 16 of its
 * 24 significant bits; a b is then hi_a hi_b + hi_a lo_b + lo_a hi_b, summed in float by
 * the AMX tile units. The dropped lo_a lo_b is 2^-16 of the product, so a 512-term dot
 * product measured 4x float's rounding error (3.7e-6 against 8.9e-7 at |out| ~ 1), at 2-2.8x
 * the float kernel's speed on one core (1024 rows, 128 x 128 and 512 x 512 weights). */

/* GLOW_NO_PACKED_KERNELS leaves them out (the clang build of the fuzz harnesses). */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(GLOW_NO_PACKED_KERNELS)
#include <immintrin.h>
#include <sys/syscall.h>
#include <unistd.h>

int packed_supported(void) {
    __builtin_cpu_init();
    return sizeof(real) == sizeof(float) && __builtin_cpu_supports("avx512f");
}

int packed_default(void) { return packed_supported() && !getenv("GLOW_NO_PACKED"); }

/* AMX-BF16 and AMX-TILE (CPUID 7.0 EDX bits 22, 24), AVX512-BF16 (7.1 EAX bit 5), and the
 * kernel's leave to use the tile registers (ARCH_REQ_XCOMP_PERM for XTILEDATA). */
static int amx_supported(void) {
    unsigned a, b, c, d;
    __asm__("cpuid" : "=a"(a), "=b"(b), "=c"(c), "=d"(d) : "a"(7), "c"(0));
    if (!(d >> 22 & 1) || !(d >> 24 & 1)) return 0;
    __asm__("cpuid" : "=a"(a), "=b"(b), "=c"(c), "=d"(d) : "a"(7), "c"(1));
    if (!(a >> 5 & 1)) return 0;
    return syscall(SYS_arch_prctl, 0x1023 /* ARCH_REQ_XCOMP_PERM */, 18 /* XTILEDATA */) == 0;
}

int backend_matmul_check(glow_matmul m, int packed) {
    if (m == GLOW_MATMUL_FP32) return GLOW_OK;
    if (m != GLOW_MATMUL_BF16X3)
        return glow_fail(GLOW_EINVAL, "unknown matrix product precision %d", (int)m);
    static int amx = -1; /* the answer never changes; a race only asks twice */
    if (amx < 0) amx = amx_supported();
    if (!packed || !amx)
        return glow_fail(GLOW_EINVAL, "bf16x3 matrix products need a float build on a CPU "
                                      "with AMX-BF16 (and GLOW_NO_PACKED unset)");
    return GLOW_OK;
}

/* All eight tile registers as 16 rows of 64 bytes (this thread's, until _tile_release). */
static __attribute__((target("amx-tile"))) void load_tile_config(void) {
    struct {
        uint8_t palette, start_row, reserved[14];
        uint16_t bytes_per_row[16];
        uint8_t rows[16];
    } cfg = {.palette = 1};
    for (int t = 0; t < 8; t++) cfg.bytes_per_row[t] = 64, cfg.rows[t] = 16;
    _tile_loadconfig(&cfg);
}

/* The first `left` of 16 columns (none if left <= 0). */
static inline __mmask16 columns_mask(int left) {
    return left >= 16 ? 0xFFFF : left > 0 ? (__mmask16)((1u << left) - 1u) : 0;
}

/* The map fused into both kernels' stores: (v + shift) * scale per column where there is a
 * shift (sh, sc hold it), then ReLU as v > 0 ? v : 0 (NaN too) with PACKED_RELU. */
static inline __attribute__((always_inline, target("avx512f"))) __m512
affine_relu(__m512 v, int affine, __m512 sh, __m512 sc, int flags) {
    if (affine) v = _mm512_mul_ps(_mm512_add_ps(v, sh), sc);
    return flags & PACKED_RELU ? _mm512_max_ps(v, _mm512_setzero_ps()) : v;
}

/* hi, lo := the split of 32 floats (v0 first), each rounded to nearest even. */
static inline __attribute__((always_inline, target("avx512f,avx512bw,avx512bf16"))) void
split32(__m512 v0, __m512 v1, __m512i *hi, __m512i *lo) {
    __m512i h = (__m512i)_mm512_cvtne2ps_pbh(v1, v0); /* v0 in the low half */
    __m512 h0 = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm512_castsi512_si256(h)), 16));
    __m512 h1 = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm512_extracti64x4_epi64(h, 1)), 16));
    *hi = h;
    *lo = (__m512i)_mm512_cvtne2ps_pbh(_mm512_sub_ps(v1, h1), _mm512_sub_ps(v0, h0));
}

/* hi and lo (16 rows of kpad) := the split of 16 rows of a (zero beyond mr rows and k). */
static __attribute__((target("avx512f,avx512bw,avx512bf16"))) void
split_rows(uint16_t *hi, uint16_t *lo, int kpad, const float *a, size_t lda, int mr, int k) {
    for (int i = 0; i < 16; i++)
        for (int kk = 0; kk < kpad; kk += 32) {
            __m512 v0 = _mm512_setzero_ps(), v1 = _mm512_setzero_ps();
            if (i < mr) {
                v0 = _mm512_maskz_loadu_ps(columns_mask(k - kk), a + i * lda + kk);
                v1 = _mm512_maskz_loadu_ps(columns_mask(k - kk - 16), a + i * lda + kk + 16);
            }
            __m512i h, l;
            split32(v0, v1, &h, &l);
            _mm512_storeu_si512(hi + (size_t)i * kpad + kk, h);
            _mm512_storeu_si512(lo + (size_t)i * kpad + kk, l);
        }
}

/* Per panel of 64 columns, per block of 32 k: the hi tiles of the four 16-column blocks,
 * then their lo tiles. A tile is 16 rows of k pairs, each row 16 columns x 2 k (the AMX
 * "VNNI" layout), zero beyond n and k: a column's 32 k, split, are 16 pairs that go one to
 * a tile row. */
static __attribute__((target("avx512f,avx512bw,avx512bf16"))) void
pack_bf16x3(real *dst, const real *w, int n, int k, int transposed) {
    uint32_t *p = (uint32_t *)panels(dst); /* one k pair per 32-bit word */
    size_t along_n = transposed ? 1 : k, along_k = transposed ? n : 1;
    const __m512i tile_rows = _mm512_set_epi32(240, 224, 208, 192, 176, 160, 144, 128, 112, 96,
                                               80, 64, 48, 32, 16, 0);
    int kpad = k_padded(k);
    #pragma omp parallel for schedule(static) if ((size_t)n * k > 65536)
    for (int n0 = 0; n0 < n; n0 += PANEL)
        for (int k0 = 0; k0 < k; k0 += KBLOCK) {
            float col[KBLOCK];
            uint32_t *block0 = p + (size_t)n0 * kpad + (size_t)k0 * PANEL; /* as laid out above */
            for (int j = 0; j < PANEL; j++) {
                for (int kk = 0; kk < KBLOCK; kk++)
                    col[kk] = n0 + j < n && k0 + kk < k ? (float)w[(n0 + j) * along_n + (k0 + kk) * along_k] : 0.0f;
                __m512i h, l;
                split32(_mm512_loadu_ps(col), _mm512_loadu_ps(col + 16), &h, &l);
                uint32_t *block = block0 + j / 16 * 256 + j % 16;
                _mm512_i32scatter_epi32(block, tile_rows, h, 4);
                _mm512_i32scatter_epi32(block + 1024, tile_rows, l, 4); /* the lo tiles */
            }
        }
}

/* packed_gemm on weights packed by pack_bf16x3: per 16 rows, the rows are split once, then
 * each 64-column panel is summed in four 16 x 16 tiles (tile registers 0-3) from the rows'
 * hi and lo (4, 5) and a column block's hi and lo weights (6, 7), and stored through the
 * same affine map as the float kernel. */
static __attribute__((target("avx512f,avx512bw,avx512bf16,amx-tile,amx-bf16"))) void
gemm_bf16x3(float *out, int ldo, const float *a, int lda, const uint16_t *packed, size_t rows,
            int n, int k, const float *shift, const float *scale, int flags) {
    load_tile_config();
    int kpad = k_padded(k), kblocks = kpad / KBLOCK;
    uint16_t hi[16 * SPLIT_KMAX] __attribute__((aligned(64)));
    uint16_t lo[16 * SPLIT_KMAX] __attribute__((aligned(64)));
    float c[16 * 16] __attribute__((aligned(64)));
    for (size_t m = 0; m < rows; m += 16) {
        int mr = rows - m < 16 ? (int)(rows - m) : 16;
        split_rows(hi, lo, kpad, a + m * lda, lda, mr, k);
        const uint16_t *p = packed;
        for (int n0 = 0; n0 < n; n0 += PANEL) {
            int cols = n - n0 < PANEL ? n - n0 : PANEL, blocks = (cols + 15) / 16;
            _tile_zero(0); _tile_zero(1); _tile_zero(2); _tile_zero(3);
            for (int kb = 0; kb < kblocks; kb++, p += 2 * PANEL * KBLOCK) {
                _tile_loadd(4, hi + kb * KBLOCK, kpad * 2);
                _tile_loadd(5, lo + kb * KBLOCK, kpad * 2);
#define COLUMN_BLOCK(T)                                                                        \
                _tile_loadd(6, p + T * 512, 64); _tile_loadd(7, p + 2048 + T * 512, 64);       \
                _tile_dpbf16ps(T, 4, 6); _tile_dpbf16ps(T, 5, 6); _tile_dpbf16ps(T, 4, 7);
                COLUMN_BLOCK(0)
                if (blocks > 1) { COLUMN_BLOCK(1) } /* a narrow last panel skips the rest */
                if (blocks > 2) { COLUMN_BLOCK(2) }
                if (blocks > 3) { COLUMN_BLOCK(3) }
#undef COLUMN_BLOCK
            }
            for (int cb = 0; cb * 16 < cols; cb++) {
                if (cb == 0) _tile_stored(0, c, 64);
                else if (cb == 1) _tile_stored(1, c, 64);
                else if (cb == 2) _tile_stored(2, c, 64);
                else _tile_stored(3, c, 64);
                int j0 = n0 + 16 * cb;
                __mmask16 msk = columns_mask(cols - 16 * cb);
                __m512 sh = _mm512_setzero_ps(), sc = _mm512_setzero_ps();
                if (shift) sh = _mm512_maskz_loadu_ps(msk, shift + j0), sc = _mm512_maskz_loadu_ps(msk, scale + j0);
                for (int i = 0; i < mr; i++) {
                    float *o = out + (m + i) * ldo + j0;
                    __m512 v = _mm512_load_ps(c + 16 * i);
                    if (flags & PACKED_ADD) v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(msk, o));
                    _mm512_mask_storeu_ps(o, msk, affine_relu(v, shift != NULL, sh, sc, flags));
                }
            }
        }
    }
    _tile_release();
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
        __m512 sh = _mm512_setzero_ps(), sc = _mm512_setzero_ps();
        if (shift) sh = _mm512_maskz_loadu_ps(m, shift + 16 * j), sc = _mm512_maskz_loadu_ps(m, scale + 16 * j);
        for (int i = 0; i < mr; i++)
            _mm512_mask_storeu_ps(out + i * ldo + 16 * j, m, affine_relu(acc[i][j], shift != NULL, sh, sc, flags));
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

void packed_gemm(const backend *be, real *out, int ldo, const real *a, int lda,
                 const real *packed, size_t rows, int n, int k, const real *shift,
                 const real *scale, int flags) {
    if (bf16x3_for(be, k)) {
        gemm_bf16x3((float *)out, ldo, (const float *)a, lda, (const uint16_t *)panels((real *)packed),
                    rows, n, k, (const float *)shift, (const float *)scale, flags);
        return;
    }
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

/* ---- weight gradients: c += a^T b on AMX ---------------------------------------------------
 * The sum runs over the rows (pixels), which lie along the slow side of both a and b. The
 * rows are taken TN_ROWS at a time: b's split into AMX's pair-interleaved tiles as it lies;
 * a's split, pair-interleaved and transposed 16 x 16 words in registers, so that each of its
 * columns becomes a tile row. */
#define TN_ROWS 128

static _Thread_local uint16_t *tn_buffer; /* a thread's split rows, kept between calls */
static _Thread_local size_t tn_capacity;

/* One 32-bit word per (row pair, column): bf16(x[r]) in the low half, bf16(x[r + 1]) high.
 * h0 and h1 hold bf16 values in the high halves of 32-bit lanes. */
static inline __attribute__((always_inline, target("avx512f,avx512bw"))) __m512i
pair_words(__m512i h0, __m512i h1) {
    return _mm512_mask_blend_epi16(0xAAAAAAAA, _mm512_srli_epi32(h0, 16), h1);
}

/* hi and lo of 16 floats as bf16 in the high halves of 32-bit lanes. */
static inline __attribute__((always_inline, target("avx512f,avx512bw,avx512bf16"))) void
split16(__m512 v, __m512i *hi, __m512i *lo) {
    __m512i h = _mm512_slli_epi32(_mm512_cvtepu16_epi32((__m256i)_mm512_cvtneps_pbh(v)), 16);
    __m512 rest = _mm512_sub_ps(v, _mm512_castsi512_ps(h));
    *hi = h;
    *lo = _mm512_slli_epi32(_mm512_cvtepu16_epi32((__m256i)_mm512_cvtneps_pbh(rest)), 16);
}

/* The row pair p (rows r0 + 2p, r0 + 2p + 1 of x, zero past `rows`) of 16 columns from j0,
 * as hi and lo pair words. */
static inline __attribute__((always_inline, target("avx512f,avx512bw,avx512bf16"))) void
row_pair(const float *x, size_t ldx, size_t r, size_t rows, int j0, __mmask16 cols, __m512i *hi,
         __m512i *lo) {
    __m512 v0 = r < rows ? _mm512_maskz_loadu_ps(cols, x + r * ldx + j0) : _mm512_setzero_ps();
    __m512 v1 = r + 1 < rows ? _mm512_maskz_loadu_ps(cols, x + (r + 1) * ldx + j0) : _mm512_setzero_ps();
    __m512i h0, l0, h1, l1;
    split16(v0, &h0, &l0);
    split16(v1, &h1, &l1);
    *hi = pair_words(h0, h1);
    *lo = pair_words(l0, l1);
}

/* Transpose 16 x 16 32-bit words in place. */
static inline __attribute__((always_inline, target("avx512f"))) void transpose16(__m512i r[16]) {
    __m512i t[16], u[16], v[16];
    for (int k = 0; k < 8; k++) {
        t[2 * k] = _mm512_unpacklo_epi32(r[2 * k], r[2 * k + 1]);
        t[2 * k + 1] = _mm512_unpackhi_epi32(r[2 * k], r[2 * k + 1]);
    }
    for (int g = 0; g < 4; g++) { /* u[4g + q], lane L: rows 4g..4g+3 of column 4L + q */
        u[4 * g] = _mm512_unpacklo_epi64(t[4 * g], t[4 * g + 2]);
        u[4 * g + 1] = _mm512_unpackhi_epi64(t[4 * g], t[4 * g + 2]);
        u[4 * g + 2] = _mm512_unpacklo_epi64(t[4 * g + 1], t[4 * g + 3]);
        u[4 * g + 3] = _mm512_unpackhi_epi64(t[4 * g + 1], t[4 * g + 3]);
    }
    for (int q = 0; q < 4; q++) {
        v[q] = _mm512_shuffle_i32x4(u[q], u[4 + q], 0x88);
        v[4 + q] = _mm512_shuffle_i32x4(u[q], u[4 + q], 0xdd);
        v[8 + q] = _mm512_shuffle_i32x4(u[8 + q], u[12 + q], 0x88);
        v[12 + q] = _mm512_shuffle_i32x4(u[8 + q], u[12 + q], 0xdd);
    }
    for (int q = 0; q < 4; q++) {
        r[q] = _mm512_shuffle_i32x4(v[q], v[8 + q], 0x88);
        r[4 + q] = _mm512_shuffle_i32x4(v[4 + q], v[12 + q], 0x88);
        r[8 + q] = _mm512_shuffle_i32x4(v[q], v[8 + q], 0xdd);
        r[12 + q] = _mm512_shuffle_i32x4(v[4 + q], v[12 + q], 0xdd);
    }
}

/* a's rows [r0, r0 + TN_ROWS) (zero past `rows`), as A tiles: for each of its m columns (16
 * per block, zero past m) a row of TN_ROWS bf16, hi then lo (m_pad rows each). */
static __attribute__((target("avx512f,avx512bw,avx512bf16"))) void
split_a(uint32_t *hi, uint32_t *lo, const float *a, size_t lda, size_t r0, size_t rows, int m, int m_pad) {
    for (int i0 = 0; i0 < m_pad; i0 += 16) {
        __mmask16 cols = columns_mask(m - i0);
        for (int p0 = 0; p0 < TN_ROWS / 2; p0 += 16) {
            __m512i h[16], l[16];
            for (int p = 0; p < 16; p++)
                row_pair(a, lda, r0 + 2 * (p0 + p), rows, i0, cols, &h[p], &l[p]);
            transpose16(h), transpose16(l);
            for (int c = 0; c < 16; c++) {
                _mm512_storeu_si512(hi + (size_t)(i0 + c) * (TN_ROWS / 2) + p0, h[c]);
                _mm512_storeu_si512(lo + (size_t)(i0 + c) * (TN_ROWS / 2) + p0, l[c]);
            }
        }
    }
}

/* b's rows [r0, r0 + TN_ROWS) as B tiles: per block of 16 columns, TN_ROWS / 2 row pairs of
 * 16 pair words, hi then lo (n_pad / 16 blocks each). */
static __attribute__((target("avx512f,avx512bw,avx512bf16"))) void
split_b(uint32_t *hi, uint32_t *lo, const float *b, size_t ldb, size_t r0, size_t rows, int n, int n_pad) {
    for (int j0 = 0; j0 < n_pad; j0 += 16) {
        __mmask16 cols = columns_mask(n - j0);
        for (int p = 0; p < TN_ROWS / 2; p++) {
            __m512i h, l;
            row_pair(b, ldb, r0 + 2 * p, rows, j0, cols, &h, &l);
            size_t at = (size_t)j0 / 16 * (TN_ROWS / 2) * 16 + (size_t)p * 16;
            _mm512_storeu_si512(hi + at, h);
            _mm512_storeu_si512(lo + at, l);
        }
    }
}

static __attribute__((target("avx512f,avx512bw,avx512bf16,amx-tile,amx-bf16"))) void
gemm_tn_bf16x3(float *c, int ldc, const float *a, int lda, const float *b, int ldb, size_t rows,
               int m, int n, uint32_t *buffer) {
    int m_pad = (m + 15) / 16 * 16, n_pad = (n + 15) / 16 * 16;
    uint32_t *a_hi = buffer, *a_lo = a_hi + (size_t)m_pad * TN_ROWS / 2;
    uint32_t *b_hi = a_lo + (size_t)m_pad * TN_ROWS / 2, *b_lo = b_hi + (size_t)n_pad * TN_ROWS / 2;
    load_tile_config();
    float acc[4][16 * 16] __attribute__((aligned(64)));
    for (size_t r0 = 0; r0 < rows; r0 += TN_ROWS) {
        split_a(a_hi, a_lo, a, lda, r0, rows, m, m_pad);
        split_b(b_hi, b_lo, b, ldb, r0, rows, n, n_pad);
        int kblocks = (int)((rows - r0 < TN_ROWS ? rows - r0 : TN_ROWS) + 31) / 32;
        for (int i0 = 0; i0 < m; i0 += 16)
            for (int j0 = 0; j0 < n; j0 += 64) {
                int blocks = (n - j0 + 15) / 16 < 4 ? (n - j0 + 15) / 16 : 4;
                /* a whole 16 x 64 block of c goes to and from the tiles directly; an edge
                 * block through acc, zero outside c */
                float *at = c + (size_t)i0 * ldc + j0;
                int whole = i0 + 16 <= m && j0 + 64 <= n, stride = whole ? ldc * 4 : 64;
                float *tile_c[4] = {whole ? at : acc[0], whole ? at + 16 : acc[1],
                                    whole ? at + 32 : acc[2], whole ? at + 48 : acc[3]};
                for (int nb = 0; nb < blocks && !whole; nb++)
                    for (int i = 0; i < 16; i++)
                        _mm512_store_ps(acc[nb] + 16 * i,
                                        i0 + i < m ? _mm512_maskz_loadu_ps(columns_mask(n - j0 - 16 * nb),
                                                                           at + (size_t)i * ldc + 16 * nb)
                                                   : _mm512_setzero_ps());
                _tile_loadd(0, tile_c[0], stride);
                if (blocks > 1) _tile_loadd(1, tile_c[1], stride);
                if (blocks > 2) _tile_loadd(2, tile_c[2], stride);
                if (blocks > 3) _tile_loadd(3, tile_c[3], stride);
                for (int kb = 0; kb < kblocks; kb++) {
                    _tile_loadd(4, a_hi + (size_t)i0 * (TN_ROWS / 2) + kb * 16, TN_ROWS * 2);
                    _tile_loadd(5, a_lo + (size_t)i0 * (TN_ROWS / 2) + kb * 16, TN_ROWS * 2);
#define COLUMN_BLOCK(T)                                                                              \
                    {                                                                                \
                        size_t b_at = (size_t)(j0 / 16 + T) * (TN_ROWS / 2) * 16 + (size_t)kb * 256; \
                        _tile_loadd(6, b_hi + b_at, 64);                                             \
                        _tile_loadd(7, b_lo + b_at, 64);                                             \
                        _tile_dpbf16ps(T, 4, 6); _tile_dpbf16ps(T, 5, 6); _tile_dpbf16ps(T, 4, 7);  \
                    }
                    COLUMN_BLOCK(0)
                    if (blocks > 1) COLUMN_BLOCK(1)
                    if (blocks > 2) COLUMN_BLOCK(2)
                    if (blocks > 3) COLUMN_BLOCK(3)
#undef COLUMN_BLOCK
                }
                _tile_stored(0, tile_c[0], stride);
                if (blocks > 1) _tile_stored(1, tile_c[1], stride);
                if (blocks > 2) _tile_stored(2, tile_c[2], stride);
                if (blocks > 3) _tile_stored(3, tile_c[3], stride);
                for (int nb = 0; nb < blocks && !whole; nb++)
                    for (int i = 0; i < 16 && i0 + i < m; i++)
                        _mm512_mask_storeu_ps(at + (size_t)i * ldc + 16 * nb, columns_mask(n - j0 - 16 * nb),
                                              _mm512_load_ps(acc[nb] + 16 * i));
            }
    }
    _tile_release();
}

int packed_gemm_tn(const backend *be, real *c, int ldc, const real *a, int lda, const real *b,
                   int ldb, size_t rows, int m, int n) {
    if (be->matmul != GLOW_MATMUL_BF16X3 || m < 32 || n < 32 || rows < 64) return 0;
    size_t need = ((size_t)(m + 15) / 16 + (n + 15) / 16) * 16 * TN_ROWS * 2; /* uint16s */
    if (need > tn_capacity) {
        uint16_t *grown = aligned_alloc(64, need * sizeof(uint16_t));
        if (!grown) return 0; /* BLAS then */
        free(tn_buffer);
        tn_buffer = grown, tn_capacity = need;
    }
    gemm_tn_bf16x3((float *)c, ldc, (const float *)a, lda, (const float *)b, ldb, rows, m, n,
                   (uint32_t *)tn_buffer);
    return 1;
}
#else
int packed_supported(void) { return 0; }
int packed_default(void) { return 0; }
static void pack_bf16x3(real *dst, const real *w, int n, int k, int transposed) {}
int packed_gemm_tn(const backend *be, real *c, int ldc, const real *a, int lda, const real *b,
                   int ldb, size_t rows, int m, int n) { return 0; }
int backend_matmul_check(glow_matmul m, int packed) {
    if (m == GLOW_MATMUL_FP32) return GLOW_OK;
    return glow_fail(GLOW_EINVAL, "bf16x3 matrix products need an x86-64 build with AMX");
}
void packed_gemm(const backend *be, real *out, int ldo, const real *a, int lda,
                 const real *packed, size_t rows, int n, int k, const real *shift,
                 const real *scale, int flags) {}
#endif
