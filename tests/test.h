/* test.h: the one test runner's registry and checks.
 *
 * TEST(name) { ... } defines and registers a test. CHECK(cond, fmt, ...) fails the current
 * test with a message and continues; REQUIRE(...) fails and returns from the test. The
 * runner (tests/main.c) runs every test whose name contains a command-line argument (all
 * if none), and ends with "N passed, N failed" and a non-zero exit on any failure.
 * Tests are compiled against the float and the double library; IS_DOUBLE tells which. */
#ifndef GLOW_TEST_H
#define GLOW_TEST_H

#include <math.h>
#include <stdio.h>
#include "glow.h"

#define IS_DOUBLE (sizeof(glow_real) == sizeof(double))

typedef void (*test_fn)(void);
void test_register(const char *name, test_fn fn);
void test_fail_at(const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* A fresh directory for this test's files (removed at the end of the run). */
const char *test_tmpdir(void);
/* Run a shell command (printf-style) with stdout and stderr captured: its exit status
 * (128 + signal if killed); test_output() is the end of what it printed. */
int test_run(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
const char *test_output(void);
/* The tests' compute context (all cores), made on first use. */
glow_ctx *test_ctx(void);
/* Kernel settings (kernels.h) for the layer and kernel tests: `threads` threads (1..8),
 * float products, the packed kernels where the CPU has them. Copy one to change it. */
struct backend;
const struct backend *test_backend(int threads);

#define TEST(name)                                                                   \
    static void test_##name(void);                                                   \
    __attribute__((constructor)) static void register_##name(void) {                 \
        test_register(#name, test_##name);                                           \
    }                                                                                \
    static void test_##name(void)

#define CHECK(cond, ...)                                                             \
    do {                                                                             \
        if (!(cond)) test_fail_at(__FILE__, __LINE__, __VA_ARGS__);                  \
    } while (0)
#define REQUIRE(cond, ...)                                                           \
    do {                                                                             \
        if (!(cond)) {                                                               \
            test_fail_at(__FILE__, __LINE__, __VA_ARGS__);                           \
            return;                                                                  \
        }                                                                            \
    } while (0)
/* Library call that must return GLOW_OK. */
#define REQUIRE_OK(call)                                                             \
    do {                                                                             \
        int rc_ = (call);                                                            \
        if (rc_ != GLOW_OK) {                                                        \
            test_fail_at(__FILE__, __LINE__, "%s failed: %s", #call, glow_last_error()); \
            return;                                                                  \
        }                                                                            \
    } while (0)

/* A small model configuration for the whole-model tests (test_model.c, test_checkpoint.c). */
typedef struct model_case {
    const char *name;
    int h, w, c, levels, depth, width;
    glow_coupling coupling;
    glow_permutation permutation;
    int learntop, n_classes, ycond;
    double weight_y;
    int paper; /* 1: the paper's numerics (sigmoid scale, free prior log std); 0: the defaults */
} model_case;

static inline glow_config model_case_config(const model_case *t, uint64_t seed) {
    glow_config cfg;
    glow_config_default(&cfg);
    cfg.image_h = t->h, cfg.image_w = t->w, cfg.image_c = t->c;
    cfg.levels = t->levels, cfg.depth = t->depth, cfg.width = t->width;
    cfg.coupling = t->coupling, cfg.permutation = t->permutation;
    cfg.learntop = t->learntop, cfg.n_classes = t->n_classes, cfg.ycond = t->ycond;
    cfg.weight_y = t->weight_y;
    if (t->paper) cfg.affine_scale = GLOW_SCALE_SIGMOID, cfg.prior_logs = GLOW_PRIOR_FREE;
    cfg.seed = seed;
    return cfg;
}

/* Write an 8-bit JPEG (c = 1 or 3) for the loader tests; 0 on success. */
int test_write_jpeg(const char *path, const uint8_t *px, int h, int w, int c, int quality);

/* Largest absolute difference of two arrays. */
static inline double max_abs_diff(const glow_real *a, const glow_real *b, size_t n) {
    double m = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)b[i]);
        if (!(d <= m) && !isnan(m)) m = d; /* a NaN, once seen, stays */
    }
    return m;
}

#endif
