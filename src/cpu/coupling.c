/* coupling.c: the affine and additive coupling layers and their network.
 *
 * x1 = channels [0, c/2) pass through unchanged and condition h = NN(x1); x2 = [c/2, c) is
 * shifted (additive: x2 + h) or shifted and scaled (affine: (x2 + h[0::2]) * s, log-det
 * sum(log s)), with s from u = h[1::2] by one of two functions (glow_affine_scale): the
 * paper's sigmoid(u + 2), or the soft clamp log s = tanh(u). Shift and scale
 * interleave in h, as in the original implementation. */
#include <math.h>
#include <omp.h>
#include <string.h>
#include "cpu.h"

int coupling_nn_out(glow_coupling kind, int c) { return kind == GLOW_AFFINE ? c : c / 2; }

/* glibc's vector versions (libmvec) of the functions the scales need, so that the loops
 * below run 8 doubles at a time; they are within 4 ulp. */
#pragma omp declare simd notinbranch
double exp(double);
#pragma omp declare simd notinbranch
double log1p(double);
#pragma omp declare simd notinbranch
double tanh(double);

/* The scales s of n consecutive (pixel, channel) pairs from u = h[1::2], and the sum of
 * log s; d (if not NULL) receives d log s / du, which the backward pass needs.
 * sigmoid: with v = u + 2 and e = exp(-|v|), s = 1/(1+e) for v >= 0 and e/(1+e) below,
 *   log s = min(v, 0) - log1p(e) (one exp and one log1p, neither overflowing), and
 *   d log s / du = 1 - s, which stays finite where s underflows.
 * tanh: t = tanh(u) = log s, s = exp(t) in [1/e, e], d log s / du = 1 - t^2. */
CLONED static double affine_scales(double *s, double *d, const real *h, size_t n,
                            glow_affine_scale scale) {
    double log_sum = 0;
    if (scale == GLOW_SCALE_TANH) {
        #pragma omp simd reduction(+:log_sum)
        for (size_t i = 0; i < n; i++) {
            double t = tanh((double)h[2 * i + 1]);
            s[i] = exp(t);
            if (d) d[i] = 1.0 - t * t;
            log_sum += t;
        }
        return log_sum;
    }
    #pragma omp simd reduction(+:log_sum)
    for (size_t i = 0; i < n; i++) {
        double v = (double)h[2 * i + 1] + 2.0, e = exp(-fabs(v));
        s[i] = (v >= 0 ? 1.0 : e) / (1.0 + e);
        if (d) d[i] = 1.0 - s[i];
        log_sum += (v < 0 ? v : 0.0) - log1p(e);
    }
    return log_sum;
}

double coupling_log_scale(glow_affine_scale scale, double u) {
    if (scale == GLOW_SCALE_TANH) return tanh(u);
    double v = u + 2.0;
    return (v < 0 ? v : 0.0) - log1p(exp(-fabs(v)));
}

CLONED void coupling_extremes(const real *h, glow_coupling kind, glow_affine_scale scale, size_t rows,
                       int c, double *min_log_scale, double *max_shift) {
    int affine = kind == GLOW_AFFINE;
    size_t n = rows * (size_t)(c / 2);
    double lo = INFINITY, big = 0;
    int nan = 0;
    /* log s rises with u, so the smallest u gives the smallest log s. */
    #pragma omp parallel for schedule(static) reduction(min:lo) reduction(max:big) reduction(|:nan)
    for (size_t i = 0; i < n; i++) {
        double t = affine ? h[2 * i] : h[i], u = affine ? h[2 * i + 1] : 0;
        nan |= isnan(t) | isnan(u);
        if (u < lo) lo = u;
        if (fabs(t) > big) big = fabs(t);
    }
    *min_log_scale = nan ? NAN : affine && n ? coupling_log_scale(scale, lo) : 0;
    *max_shift = nan ? NAN : big;
}

/* The affine passes take an image's pixels in chunks of about SCALE_CHUNK scales. */
#define SCALE_CHUNK 512
static size_t chunk_pixels(int half) { return half < SCALE_CHUNK ? SCALE_CHUNK / half : 1; }

/* The forward (inverse = 0) or inverse coupling of pixels [q0, q1), whose affine scales
 * are s (from affine_scales, starting at pixel q0; NULL for the additive coupling). */
CLONED static void couple_chunk(real *out, const real *in, const real *h, const double *s,
                         glow_coupling kind, size_t q0, size_t q1, int c, int inverse) {
    int half = c / 2, hc = coupling_nn_out(kind, c);
    for (size_t p = q0; p < q1; p++) {
        const real *ir = in + p * c, *hr = h + p * hc;
        real *or = out + p * c;
        if (out != in) memcpy(or, ir, sizeof(real) * half);
        for (int j = 0; j < half; j++) {
            if (kind == GLOW_ADDITIVE)
                or[half + j] = inverse ? ir[half + j] - hr[j] : ir[half + j] + hr[j];
            else if (inverse)
                or[half + j] = (real)(ir[half + j] / s[(p - q0) * half + j] - hr[2 * j]);
            else
                or[half + j] = (real)((ir[half + j] + hr[2 * j]) * s[(p - q0) * half + j]);
        }
    }
}

/* The forward or inverse coupling of one image's pixels [p0, p1); returns its log-det. */
static double couple_pixels(real *out, const real *in, const real *h, glow_coupling kind,
                            glow_affine_scale scale, size_t p0, size_t p1, int c, int inverse) {
    int half = c / 2, hc = coupling_nn_out(kind, c);
    size_t step = chunk_pixels(half);
    double s[step * half], ld = 0;
    for (size_t q0 = p0; q0 < p1; q0 += step) {
        size_t q1 = q0 + step < p1 ? q0 + step : p1;
        if (kind == GLOW_AFFINE) ld += affine_scales(s, NULL, h + q0 * hc, (q1 - q0) * half, scale);
        couple_chunk(out, in, h, kind == GLOW_AFFINE ? s : NULL, kind, q0, q1, c, inverse);
    }
    return ld;
}

void coupling_forward(real *y, double *logdet, const real *x, const real *h, glow_coupling kind,
                      glow_affine_scale scale, int batch, size_t hw, int c) {
    #pragma omp parallel for schedule(static)
    for (int b = 0; b < batch; b++) {
        double ld = couple_pixels(y, x, h, kind, scale, b * hw, (b + 1) * hw, c, 0);
        if (logdet) logdet[b] += ld;
    }
}

void coupling_inverse(real *x, double *logdet, const real *y, const real *h, glow_coupling kind,
                      glow_affine_scale scale, int batch, size_t hw, int c) {
    #pragma omp parallel for schedule(static)
    for (int b = 0; b < batch; b++) {
        double ld = couple_pixels(x, y, h, kind, scale, b * hw, (b + 1) * hw, c, 1);
        if (logdet) logdet[b] -= ld;
    }
}

/* Affine: y2 = (x2 + t) s with s = s(u). dx2 = dt = dy2 s; with d = d log s / du (from
 * affine_scales), du = (dy2 (x2 + t) s + dlogdet) d: the chain rule through log s, written
 * without a division by s so that a sigmoid scale that underflows to 0 gives a finite
 * gradient. Additive: dx2 = dh = dy2. */
/* coupling_backward on pixels [q0, q1), whose affine scales are s and d (as for
 * couple_chunk). */
CLONED static void backward_chunk(real *dx, real *dh, const real *dy, const real *x, const real *h,
                           const double *s, const double *d, glow_coupling kind, double dlogdet,
                           size_t q0, size_t q1, int c) {
    int half = c / 2, hc = coupling_nn_out(kind, c);
    for (size_t p = q0; p < q1; p++) {
        const real *dyr = dy + p * c, *xr = x + p * c, *hr = h + p * hc;
        real *dxr = dx + p * c, *dhr = dh + p * hc;
        if (dx != dy) memcpy(dxr, dyr, sizeof(real) * half);
        for (int j = 0; j < half; j++) {
            double g = dyr[half + j];
            if (kind == GLOW_ADDITIVE) {
                dhr[j] = (real)g;
                dxr[half + j] = (real)g;
            } else {
                double sj = s[(p - q0) * half + j], dj = d[(p - q0) * half + j];
                dhr[2 * j] = (real)(g * sj);
                dhr[2 * j + 1] = (real)((g * (xr[half + j] + hr[2 * j]) * sj + dlogdet) * dj);
                dxr[half + j] = (real)(g * sj);
            }
        }
    }
}

void coupling_backward(real *dx, real *dh, const real *dy, const real *x, const real *h,
                       glow_coupling kind, glow_affine_scale scale, double dlogdet, int batch,
                       size_t hw, int c) {
    int half = c / 2, hc = coupling_nn_out(kind, c);
    size_t rows = (size_t)batch * hw, step = chunk_pixels(half);
    #pragma omp parallel for schedule(static)
    for (size_t q0 = 0; q0 < rows; q0 += step) {
        size_t q1 = q0 + step < rows ? q0 + step : rows;
        double s[step * half], d[step * half];
        if (kind == GLOW_AFFINE) affine_scales(s, d, h + q0 * hc, (q1 - q0) * half, scale);
        int affine = kind == GLOW_AFFINE;
        backward_chunk(dx, dh, dy, x, h, affine ? s : NULL, affine ? d : NULL, kind, dlogdet, q0,
                       q1, c);
    }
}

/* ---- the network ---------------------------------------------------------------------- */

/* What the two 3x3 convolutions need for the forward pass. */
static size_t forward_conv_scratch(nn_shape s) {
    size_t rows = (size_t)s.batch * s.h * s.w;
    size_t a = conv3x3_scratch(rows, s.cin, s.width), b = conv3x3_scratch(rows, s.width, s.cout);
    return a > b ? a : b;
}

/* The 3x3 convolutions' scratch for the backward pass, which also keeps a (rows, width)
 * gradient there. */
static size_t conv_scratch(nn_shape s) {
    size_t m = forward_conv_scratch(s), c = (size_t)s.batch * s.h * s.w * s.width;
    return m > c ? m : c;
}

/* ---- image groups: both passes run image group by image group, a group to a thread -------
 * The threads take the groups as they come free (OpenMP's dynamic schedule), so that a
 * faster core takes more of them: this machine's two vCPUs often differ by 2x on AMX. A
 * group's weight gradients go to a copy of its own, added in group order afterwards, so the
 * sums do not depend on which thread took which group. */

/* A group should have enough rows (pixels) for efficient GEMMs, whose weight matrices are
 * packed again for each group, while its two hidden activations (rows, width) stay within a
 * few MiB of cache. */
#define TILE_ROWS 1024
#define TILE_BYTES ((size_t)4 << 20)

static int slots_of(nn_shape s) { return s.be->threads > 0 ? s.be->threads : 1; }

/* The threads a pass runs on: one per scratch slot, at most one per image. */
static int thread_count(nn_shape s) { return slots_of(s) < s.batch ? slots_of(s) : s.batch; }

/* Images per group: TILE_ROWS rows if they fit TILE_BYTES, at least one image, and at least
 * MIN_GROUPS groups (or one per thread, if more) for the threads to share out. */
#define MIN_GROUPS 4
static int tile_images(nn_shape s) {
    size_t image = (size_t)s.h * s.w, per_image = image * s.width * 2 * sizeof(real);
    int groups = slots_of(s) > MIN_GROUPS ? slots_of(s) : MIN_GROUPS;
    int g = (int)((TILE_ROWS + image - 1) / image), most = (s.batch + groups - 1) / groups;
    if ((size_t)g * per_image > TILE_BYTES) g = (int)(TILE_BYTES / per_image);
    if (g > most) g = most;
    return g < 1 ? 1 : g;
}

/* One thread's scratch for a group of g images: r1, r2, then the convolutions' scratch. */
static size_t tile_scratch(nn_shape s, int g) {
    nn_shape group = s;
    group.batch = g;
    return 2 * (size_t)g * s.h * s.w * s.width + forward_conv_scratch(group);
}

/* nn_backward's scratch for a group: the convolutions' scratch, then a (rows, width)
 * gradient. */
static size_t nn_backward_scratch(nn_shape s) {
    return conv_scratch(s) + (size_t)s.batch * s.h * s.w * s.width;
}

/* Each group sums its parameter gradients in a copy of the network's gradient of its own
 * (laid out as below), added to dnn at the end in group order. */
static void nn_sizes(size_t n[9], nn_shape s) {
    size_t wd = s.width;
    size_t sizes[9] = {wd * 9 * s.cin, wd, wd, wd * wd, wd, wd, (size_t)s.cout * 9 * wd,
                       s.cout, s.cout};
    memcpy(n, sizes, sizeof sizes);
}

static size_t nn_param_count(nn_shape s) {
    size_t n[9], total = 0;
    nn_sizes(n, s);
    for (int i = 0; i < 9; i++) total += n[i];
    return total;
}

/* The network's nine blocks laid out one after another from p. */
static coupling_nn nn_layout(real *p, nn_shape s) {
    size_t n[9];
    nn_sizes(n, s);
    coupling_nn nn;
    real **field[9] = {&nn.w1, &nn.an1_b, &nn.an1_s, &nn.w2, &nn.an2_b, &nn.an2_s, &nn.w3,
                       &nn.b3, &nn.logs3};
    for (int i = 0; i < 9; i++) *field[i] = p, p += n[i];
    return nn;
}

/* One thread's backward scratch for g images: nn_backward's. */
static size_t tile_backward_scratch(nn_shape s, int g) {
    nn_shape t = s;
    t.batch = g;
    return nn_backward_scratch(t);
}

static int group_count(nn_shape s, int g) { return (s.batch + g - 1) / g; }

/* The groups' gradient copies, one after another. */
static size_t group_gradients_size(nn_shape s, int g) {
    return (size_t)group_count(s, g) * nn_param_count(s);
}

/* The three weights packed for the forward pass (see kernels.h), kept at the start of the
 * scratch while the threads work through their groups. */
static size_t packed_nn_size(nn_shape s) {
    return conv3x3_packed_size(s.cin, s.width) + packed_size(s.width, s.width) +
           conv3x3_packed_size(s.width, s.cout);
}

/* coupling_rebuild_backward's scratch per thread for g images: the group's r1, r2, h and
 * dh, then room for either pass of the network. */
static size_t tile_rebuild_scratch(nn_shape s, int g) {
    nn_shape t = s;
    t.batch = g;
    size_t rows = (size_t)g * s.h * s.w, fwd = forward_conv_scratch(t), bwd = nn_backward_scratch(t);
    return 2 * rows * s.width + 2 * rows * s.cout + (fwd > bwd ? fwd : bwd);
}

/* The tiled passes need the packed weights (both packings for the rebuild), a group's
 * scratch per thread and, backward, the groups' gradient copies; the initialisation runs
 * the forward pass on the whole batch (the actnorms' statistics are the batch's). */
size_t coupling_nn_scratch(nn_shape s) {
    int g = tile_images(s);
    size_t forward = slots_of(s) * tile_scratch(s, g);
    size_t backward = slots_of(s) * tile_backward_scratch(s, g) + group_gradients_size(s, g);
    size_t tiled = packed_nn_size(s) + (forward > backward ? forward : backward);
    size_t rebuild = 2 * packed_nn_size(s) + slots_of(s) * tile_rebuild_scratch(s, g) +
                     group_gradients_size(s, g);
    if (rebuild > tiled) tiled = rebuild;
    return tiled > forward_conv_scratch(s) ? tiled : forward_conv_scratch(s);
}

/* h = (conv(r2) + b3) * exp(3 logs3) */
CLONED static void output_scale(real *h, const real *logs, size_t rows, int c) {
    real e[c];
    for (int j = 0; j < c; j++) e[j] = (real)exp(ACTNORM_SCALE * logs[j]);
    #pragma omp parallel for schedule(static)
    for (size_t r = 0; r < rows; r++)
        for (int j = 0; j < c; j++) h[r * c + j] *= e[j];
}

void zeroconv_forward(real *out, const real *x, const real *w, const real *b, const real *logs,
                      int batch, int h, int w_, int cin, int cout, real *scratch) {
    conv3x3_forward(out, x, w, b, batch, h, w_, cin, cout, scratch);
    output_scale(out, logs, (size_t)batch * h * w_, cout);
}

/* out = c e with c = conv + b and e = exp(3 logs): dlogs = 3 sum(dout out), dc = dout e.
 * dx from the weights packed for the backward pass when packed is not NULL; dx += ... with
 * dx_add, dx = ... without. */
static void zeroconv_backward_with(const backend *be, real *dx, int dx_add, real *dw,
                                   real *db, real *dlogs, real *dout, const real *out, const real *x, const real *w,
                                   const real *packed, const real *logs, int batch, int h,
                                   int w_, int cin, int cout, real *scratch) {
    size_t rows = (size_t)batch * h * w_;
    double sums[cout];
    channel_sums(sums, dout, out, rows, cout);
    for (int j = 0; j < cout; j++) dlogs[j] += (real)(ACTNORM_SCALE * sums[j]);
    output_scale(dout, logs, rows, cout);
    conv3x3_backward_packed(be, dx, dx_add, dw, db, dout, x, w, packed, batch, h, w_, cin,
                            cout, scratch);
}

void zeroconv_backward(real *dx, real *dw, real *db, real *dlogs, real *dout, const real *out,
                       const real *x, const real *w, const real *logs, int batch, int h, int w_,
                       int cin, int cout, real *scratch) {
    zeroconv_backward_with(NULL, dx, 1, dw, db, dlogs, dout, out, x, w, NULL, logs, batch, h,
                           w_, cin, cout, scratch);
}

/* Where the three weights are packed from `packed` on (see packed_nn_size). */
static void packed_parts(const real *packed, nn_shape s, const real *p[3]) {
    p[0] = packed;
    p[1] = p[0] + conv3x3_packed_size(s.cin, s.width);
    p[2] = p[1] + packed_size(s.width, s.width);
}

/* Pack the network's weights at `packed`, for the forward or the backward pass. */
static void pack_nn(real *packed, const coupling_nn *nn, nn_shape s, int for_backward) {
    const real *p[3];
    packed_parts(packed, s, p);
    conv3x3_pack(s.be, (real *)p[0], nn->w1, s.cin, s.width, for_backward);
    pack_weights(s.be, (real *)p[1], nn->w2, s.width, s.width, for_backward);
    conv3x3_pack(s.be, (real *)p[2], nn->w3, s.width, s.cout, for_backward);
}

/* nn_forward on weights packed at `packed`, with each convolution's actnorm, ReLU or output
 * scale fused into its GEMM. */
static void nn_forward_packed(coupling_acts *a, const coupling_nn *nn, const real *z1, nn_shape s,
                              const real *packed, real *scratch) {
    size_t rows = (size_t)s.batch * s.h * s.w;
    const real *p[3];
    packed_parts(packed, s, p);
    real e1[s.width], e2[s.width], e3[s.cout];
    for (int j = 0; j < s.width; j++) {
        e1[j] = (real)exp(ACTNORM_SCALE * nn->an1_s[j]);
        e2[j] = (real)exp(ACTNORM_SCALE * nn->an2_s[j]);
    }
    for (int j = 0; j < s.cout; j++) e3[j] = (real)exp(ACTNORM_SCALE * nn->logs3[j]);
    conv3x3_forward_packed(s.be, a->r1, z1, p[0], nn->an1_b, e1, PACKED_RELU, s.batch, s.h, s.w, s.cin,
                           s.width, scratch);
    packed_gemm(s.be, a->r2, s.width, a->r1, s.width, p[1], rows, s.width, s.width, nn->an2_b, e2,
                PACKED_RELU);
    conv3x3_forward_packed(s.be, a->h, a->r2, p[2], nn->b3, e3, 0, s.batch, s.h, s.w, s.width, s.cout,
                           scratch);
}

static void nn_forward(coupling_acts *a, coupling_nn *nn, const real *z1, nn_shape s,
                       real *scratch, int init) {
    size_t rows = (size_t)s.batch * s.h * s.w, hw = (size_t)s.h * s.w;
    conv3x3_forward(a->r1, z1, nn->w1, NULL, s.batch, s.h, s.w, s.cin, s.width, scratch);
    if (init) actnorm_init(nn->an1_b, nn->an1_s, a->r1, rows, s.width, s.be->comm);
    actnorm_relu_forward(a->r1, a->r1, nn->an1_b, nn->an1_s, s.batch, hw, s.width);
    conv1x1_forward(a->r2, a->r1, nn->w2, rows, s.width, s.width);
    if (init) actnorm_init(nn->an2_b, nn->an2_s, a->r2, rows, s.width, s.be->comm);
    actnorm_relu_forward(a->r2, a->r2, nn->an2_b, nn->an2_s, s.batch, hw, s.width);
    zeroconv_forward(a->h, a->r2, nn->w3, nn->b3, nn->logs3, s.batch, s.h, s.w, s.width, s.cout,
                     scratch);
}

/* The group of at most g images that starts at image b0: its shape and first row. The
 * kernels' own loops and OpenBLAS run on the calling thread. */
static nn_shape group_at(nn_shape s, int b0, int g, size_t *r0) {
    nn_shape group = s;
    group.batch = s.batch - b0 < g ? s.batch - b0 : g;
    *r0 = (size_t)b0 * s.h * s.w;
    return group;
}

void coupling_nn_forward(coupling_acts *a, const coupling_nn *nn, const real *z1, nn_shape s,
                         real *scratch) {
    int g = tile_images(s), slots = thread_count(s);
    size_t own_size = tile_scratch(s, g), rows = (size_t)g * s.h * s.w;
    real *packed = s.be->packed ? scratch : NULL;
    if (packed) pack_nn(packed, nn, s, 0);
    scratch += packed_nn_size(s);
    #pragma omp parallel num_threads(slots)
    {
        real *own = scratch + own_size * omp_get_thread_num();
        #pragma omp for schedule(dynamic, 1)
        for (int b0 = 0; b0 < s.batch; b0 += g) {
            size_t r0;
            nn_shape ts = group_at(s, b0, g, &r0);
            coupling_acts ta = {a->r1 ? a->r1 + r0 * s.width : own,
                                a->r2 ? a->r2 + r0 * s.width : own + rows * s.width,
                                a->h + r0 * s.cout};
            if (packed) nn_forward_packed(&ta, nn, z1 + r0 * s.cin, ts, packed, own + 2 * rows * s.width);
            else nn_forward(&ta, (coupling_nn *)nn, z1 + r0 * s.cin, ts, own + 2 * rows * s.width, 0);
        }
    }
}

void coupling_nn_init(coupling_acts *a, coupling_nn *nn, const real *z1, nn_shape s,
                      real *scratch) {
    nn_forward(a, nn, z1, s, scratch, 1);
}

/* r = relu(actnorm(conv(in))): where r > 0 the actnorm output equals r, elsewhere the ReLU
 * stops the gradient, so dy * y = dr * r and the mask is r > 0. One pass reads dr from src,
 * applies the mask, sums the actnorm's gradients (see actnorm_backward) and leaves d
 * conv-output in dr (src may be dr). It runs on one image group, on the calling thread. */
CLONED static void relu_actnorm_backward(real *dr, const real *src, real *db, real *ds, const real *r,
                                  const real *s, size_t rows, int c) {
    double sum_g[c], sum_gr[c];
    real scale[c];
    for (int j = 0; j < c; j++) {
        sum_g[j] = sum_gr[j] = 0;
        scale[j] = (real)exp(ACTNORM_SCALE * s[j]);
    }
    /* The sums run in real over blocks of SUM_ROWS rows, then in double: converting every
     * element to double cost about a sixth of this pass's time. */
    enum { SUM_ROWS = 32 };
    for (size_t i0 = 0; i0 < rows; i0 += SUM_ROWS) {
        size_t i1 = i0 + SUM_ROWS < rows ? i0 + SUM_ROWS : rows;
        real part_g[c], part_gr[c];
        for (int j = 0; j < c; j++) part_g[j] = part_gr[j] = 0;
        for (size_t i = i0; i < i1; i++) {
            real *d = dr + i * c;
            const real *ri = r + i * c, *si = src + i * c;
            /* Two loops over the row (in L1) because gcc vectorizes neither if they are one. */
            for (int j = 0; j < c; j++) {
                real dj = si[j];
                d[j] = ri[j] > 0 ? dj : 0;
            }
            for (int j = 0; j < c; j++) {
                part_g[j] += d[j];
                part_gr[j] += d[j] * ri[j];
                d[j] *= scale[j];
            }
        }
        for (int j = 0; j < c; j++) sum_g[j] += part_g[j], sum_gr[j] += part_gr[j];
    }
    for (int j = 0; j < c; j++) {
        db[j] += (real)(sum_g[j] * scale[j]);
        ds[j] += (real)(ACTNORM_SCALE * sum_gr[j]);
    }
}

/* The backward pass of one image group; dnn accumulates. The input gradients come from
 * the weights packed for the backward pass at `packed` when it is not NULL. */
static void nn_backward(real *dz1, coupling_nn *dnn, real *dh, const coupling_acts *a,
                        const coupling_nn *nn, const real *z1, nn_shape s, const real *packed,
                        real *scratch) {
    size_t rows = (size_t)s.batch * s.h * s.w;
    const real *p[3] = {NULL, NULL, NULL};
    if (packed) packed_parts(packed, s, p);
    /* dr2 and dr1 share a buffer laid after the scratch the 3x3 convolutions need. */
    real *dr = scratch + conv_scratch(s);
    zeroconv_backward_with(s.be, dr, 0, dnn->w3, dnn->b3, dnn->logs3, dh, a->h, a->r2, nn->w3, p[2],
                           nn->logs3, s.batch, s.h, s.w, s.width, s.cout, scratch);
    relu_actnorm_backward(dr, dr, dnn->an2_b, dnn->an2_s, a->r2, nn->an2_s, rows, s.width);
    /* d r1 = d conv2-output @ w2 cannot overwrite dr in place: it goes to the scratch, and
     * the next pass brings it back to dr (the 3x3 convolution's backward needs the scratch). */
    real *dr1 = scratch;
    conv1x1_backward_packed(s.be, dr1, 0, dnn->w2, dr, a->r1, nn->w2, p[1], rows, s.width, s.width);
    relu_actnorm_backward(dr, dr1, dnn->an1_b, dnn->an1_s, a->r1, nn->an1_s, rows, s.width);
    conv3x3_backward_packed(s.be, dz1, 1, dnn->w1, NULL, dr, z1, nn->w1, p[0], s.batch, s.h, s.w,
                            s.cin, s.width, scratch);
}

/* The gradient copy of the group that starts at image b0, zeroed. */
static coupling_nn zeroed_gradients(real *copies, int b0, int g, nn_shape s) {
    real *own = copies + (size_t)(b0 / g) * nn_param_count(s);
    memset(own, 0, sizeof(real) * nn_param_count(s));
    return nn_layout(own, s);
}

/* Add the groups' gradient copies into dnn, in group order: the same sums whichever thread
 * took which group. */
CLONED static void add_group_gradients(coupling_nn *dnn, const real *copies, int g, nn_shape s) {
    size_t n[9], size = nn_param_count(s), at = 0;
    int groups = group_count(s, g);
    nn_sizes(n, s);
    real *dst[9] = {dnn->w1, dnn->an1_b, dnn->an1_s, dnn->w2, dnn->an2_b, dnn->an2_s, dnn->w3,
                    dnn->b3, dnn->logs3};
    for (int i = 0; i < 9; at += n[i], i++) {
        #pragma omp parallel for schedule(static) if (n[i] * groups > 16384)
        for (size_t j = 0; j < n[i]; j++) {
            real sum = dst[i][j];
            for (int q = 0; q < groups; q++) sum += copies[q * size + at + j];
            dst[i][j] = sum;
        }
    }
}

void coupling_nn_backward(real *dz1, coupling_nn *dnn, real *dh, const coupling_acts *a,
                          const coupling_nn *nn, const real *z1, nn_shape s, real *scratch) {
    int g = tile_images(s), slots = thread_count(s);
    size_t own_size = tile_backward_scratch(s, g);
    real *packed = s.be->packed ? scratch : NULL;
    if (packed) pack_nn(packed, nn, s, 1);
    scratch += packed_nn_size(s);
    real *copies = scratch + (size_t)slots * own_size;
    #pragma omp parallel num_threads(slots)
    {
        real *own = scratch + own_size * omp_get_thread_num();
        #pragma omp for schedule(dynamic, 1)
        for (int b0 = 0; b0 < s.batch; b0 += g) {
            size_t r0;
            nn_shape ts = group_at(s, b0, g, &r0);
            coupling_nn mine = zeroed_gradients(copies, b0, g, s);
            coupling_acts ta = {a->r1 + r0 * s.width, a->r2 + r0 * s.width, a->h + r0 * s.cout};
            nn_backward(dz1 + r0 * s.cin, &mine, dh + r0 * s.cout, &ta, nn, z1 + r0 * s.cin, ts,
                        packed, own);
        }
    }
    add_group_gradients(dnn, copies, g, s);
}

/* The memory-saving mode's backward pass through a coupling, image group by image group:
 * the network's forward pass on z1 (y's unchanged half), the coupling's inverse, its
 * backward pass and the network's, while the group's hidden activations are in cache
 * (they never exist for the whole batch). */
void coupling_rebuild_backward(real *x, int x_known, real *dx, real *dz1, coupling_nn *dnn,
                               const real *y, const real *dy, const real *z1,
                               const coupling_nn *nn, glow_coupling kind,
                               glow_affine_scale scale, double dlogdet, nn_shape s,
                               real *scratch) {
    int g = tile_images(s), slots = thread_count(s), c = 2 * s.cin;
    size_t own_size = tile_rebuild_scratch(s, g), image = (size_t)s.h * s.w;
    size_t rows = (size_t)g * image;
    real *packed = s.be->packed ? scratch : NULL;
    if (packed) {
        pack_nn(packed, nn, s, 0);
        pack_nn(packed + packed_nn_size(s), nn, s, 1);
    }
    scratch += 2 * packed_nn_size(s);
    real *copies = scratch + (size_t)slots * own_size;
    #pragma omp parallel num_threads(slots)
    {
        real *own = scratch + own_size * omp_get_thread_num();
        coupling_acts acts = {own, own + rows * s.width, own + 2 * rows * s.width};
        real *dh = acts.h + rows * s.cout, *work = dh + rows * s.cout;
        #pragma omp for schedule(dynamic, 1)
        for (int b0 = 0; b0 < s.batch; b0 += g) {
            size_t r0;
            nn_shape ts = group_at(s, b0, g, &r0);
            coupling_nn mine = zeroed_gradients(copies, b0, g, s);
            size_t n = (size_t)ts.batch * image, step = chunk_pixels(s.cin);
            if (packed) nn_forward_packed(&acts, nn, z1 + r0 * s.cin, ts, packed, work);
            else nn_forward(&acts, (coupling_nn *)nn, z1 + r0 * s.cin, ts, work, 0);
            for (size_t q = 0; q < n; q += step) { /* the scales once for both passes */
                size_t q1 = q + step < n ? q + step : n;
                double scales[step * s.cin], ds[step * s.cin], *sc = NULL, *d = NULL;
                if (kind == GLOW_AFFINE) {
                    sc = scales, d = ds;
                    affine_scales(sc, d, acts.h + q * s.cout, (q1 - q) * s.cin, scale);
                }
                if (!x_known) couple_chunk(x + r0 * c, y + r0 * c, acts.h, sc, kind, q, q1, c, 1);
                backward_chunk(dx + r0 * c, dh, dy + r0 * c, x + r0 * c, acts.h, sc, d, kind,
                               dlogdet, q, q1, c);
            }
            nn_backward(dz1 + r0 * s.cin, &mine, dh, &acts, nn, z1 + r0 * s.cin, ts,
                        packed ? packed + packed_nn_size(s) : NULL, work);
        }
    }
    add_group_gradients(dnn, copies, g, s);
}
