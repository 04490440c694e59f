/* prog.c: a program outside the tree, built against the installed library with
 *     cc prog.c $(pkg-config --cflags --libs glow)
 * It trains a small model for a few steps on a synthetic data set, then checks that
 * decode(encode(x)) returns the images exactly. Prints "ok" and exits 0 on success. */
#include <glow.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int fail(const char *what) {
    fprintf(stderr, "prog: %s: %s\n", what, glow_last_error());
    return 1;
}

int main(void) {
    if (strcmp(glow_version(), GLOW_VERSION)) return fail("version");
    enum { N = 64, H = 8, D = H * H };
    uint8_t *pixels = malloc(N * D);
    for (int i = 0; i < N * D; i++) pixels[i] = (uint8_t)(glow_rng_uniform(1, i) * 256);
    glow_dataset data = {.n = N, .h = H, .w = H, .c = 1, .pixels = pixels};
    glow_config cfg;
    glow_config_default(&cfg);
    cfg.depth = 1, cfg.width = 8;
    glow_train_options opts;
    glow_train_options_default(&opts);
    opts.batch = 16, opts.init_batch = 32, opts.steps = 4, opts.eval_n = 16, opts.threads = 1;
    glow_trainer *t = glow_trainer_create(&cfg, &data, NULL, &opts);
    if (!t) return fail("trainer");
    int rc;
    while ((rc = glow_trainer_step(t)) == GLOW_OK) {}
    if (rc != GLOW_DONE) return fail("step");
    const glow_model *m = glow_trainer_model(t);
    glow_ctx *ctx = glow_ctx_create(1);
    glow_real *z = malloc(sizeof(glow_real) * N * D), *x = malloc(sizeof(glow_real) * N * D);
    uint8_t *back = malloc(N * D);
    if (glow_encode_images(ctx, m, pixels, NULL, N, 32, z, NULL) != GLOW_OK) return fail("encode");
    if (glow_decode_latents(ctx, m, z, NULL, N, 32, x, NULL) != GLOW_OK) return fail("decode");
    glow_postprocess(back, x, N, D, cfg.n_bits);
    if (memcmp(back, pixels, N * D)) return fail("round trip");
    printf("ok: glow %s, %lld steps\n", glow_version(), (long long)glow_trainer_state(t)->step);
    glow_ctx_free(ctx);
    glow_trainer_free(t);
    free(pixels), free(z), free(x), free(back);
    return 0;
}
