/* eval.c: `glow eval`: exact bits/dim of a checkpoint on a test set, with the
 * dequantisation noise drawn from a fixed seed so the figure is reproducible; the mean and
 * its standard error over images. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "cli.h"

static const char *help =
    "Usage: glow eval --checkpoint FILE [OPTIONS]\n"
    "Exact bits/dim on a test set: the mean over images and its standard error.\n\n"
    "  --checkpoint FILE   the model (its Polyak average unless --raw)\n"
    "  --data PATH         data set (default " DEFAULT_DATA ")\n"
    "  --split S           train | test (default test)\n"
    "  --image-size N      resize as in training\n"
    "  --n N               only the first N images (default: all)\n"
    "  --batch B           images per pass (default 256)\n"
    "  --seed S            dequantisation noise seed (default 0)\n"
    "  --raw               the raw weights instead of the Polyak average\n"
    "  --json              one JSON object on stdout\n"
    "  --threads T         threads (default: all cores)\n"
    "  --matmul fp32|bf16x3 the networks' matrix products in float, or on AMX (bf16x3: about\n"
    "                      4x float's rounding error, 2x faster; docs/MODEL.md)\n";

enum { O_IMAGE_SIZE = 256, O_SEED, O_JSON };
typedef struct eval_opts {
    int image_size, json;
    long long seed;
} eval_opts;

static int own_option(void *ctx, int c, const char *arg) {
    eval_opts *o = ctx;
    switch (c) {
    case O_IMAGE_SIZE: return parse_int("--image-size", arg, 1, 4096, &o->image_size) ? EXIT_USAGE : 0;
    case O_SEED: return parse_i64("--seed", arg, 0, 1LL << 62, &o->seed) ? EXIT_USAGE : 0;
    case O_JSON: o->json = 1; return 0;
    }
    return cli_usage_error("unknown option");
}

int cmd_eval(int argc, char **argv) {
    static const struct option opts[] = {
        OPTION_CHECKPOINT, OPTION_DATA, OPTION_SPLIT, OPTION_N, OPTION_BATCH, OPTION_RAW,
        OPTION_THREADS, OPTION_MATMUL, OPTION_HELP, {"image-size", 1, 0, O_IMAGE_SIZE}, {"seed", 1, 0, O_SEED},
        {"json", 0, 0, O_JSON}, {0, 0, 0, 0}};
    common_opts co = {.data = DEFAULT_DATA, .split = "test", .batch = 256};
    eval_opts o = {0};
    int rc = parse_command_line(argc, argv, opts, help, &co, own_option, &o);
    if (rc) return rc < 0 ? 0 : rc;
    if (optind < argc) return cli_usage_error("unexpected argument '%s'", argv[optind]);
    /* Under mpirun, each process evaluates a share of the images (glow_evaluate). */
    glow_model *m = NULL;
    glow_ctx *ctx;
    glow_dataset ds = {0};
    rc = open_model(&co, &m, &ctx);
    if (!rc) rc = load_data(&ds, co.data, co.split, o.image_size);
    if (!rc) rc = check_data_fits(&ds, glow_model_config(m), co.data);
    if ((rc = cli_agree(rc))) return rc;
    int count = co.n && co.n < ds.n ? co.n : ds.n;
    if (count == 0) return cli_error("%s: no images in the %s split", co.data, co.split);
    double *bpd = malloc(sizeof(double) * count), t0 = now_seconds();
    if (!bpd) return cli_error("out of memory");
    if (glow_evaluate(ctx, m, &ds, count, co.batch, (uint64_t)o.seed, bpd) != GLOW_OK)
        return cli_error("%s", glow_last_error());
    double mean = 0, var = 0;
    for (int i = 0; i < count; i++) mean += bpd[i] / count;
    for (int i = 0; i < count; i++) var += (bpd[i] - mean) * (bpd[i] - mean);
    double se = count > 1 ? sqrt(var / (count - 1) / count) : 0, dt = now_seconds() - t0;
    if (!isfinite(mean)) return cli_error("%s: bits/dim is not finite on %s", co.checkpoint, co.data);
    int report = cli_rank() == 0; /* every process has every figure: rank 0 reports */
    if (report && o.json)
        printf("{\"checkpoint\":\"%s\",\"split\":\"%s\",\"n\":%d,\"bpd\":%.6f,\"bpd_se\":%.6f,"
               "\"weights\":\"%s\",\"seconds\":%.2f}\n", co.checkpoint, co.split, count, mean, se,
               co.raw ? "raw" : "average", dt);
    else if (report)
        printf("%s bits/dim: %.4f +- %.4f (standard error, %d images, %s weights, %.1f s)\n",
               co.split, mean, se, count, co.raw ? "raw" : "averaged", dt);
    free(bpd);
    glow_dataset_free(&ds);
    glow_model_free(m);
    glow_ctx_free(ctx);
    return 0;
}
