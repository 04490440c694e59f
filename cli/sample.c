/* sample.c: `glow sample`: draw images at one or more temperatures and write a PNG grid:
 * one row per temperature (or, for a single temperature, a square-ish grid). */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "cli.h"

static const char *help =
    "Usage: glow sample --checkpoint FILE [OPTIONS]\n"
    "Samples at temperatures T (latent standard deviations scaled by T) as a PNG grid.\n\n"
    "  --checkpoint FILE   the model (its Polyak average unless --raw)\n"
    "  --n N               images per temperature (default 64)\n"
    "  --temperature T     one value or a list, e.g. 0.5,0.7,1 (default 0.7); one row each\n"
    "  --seed S            noise seed (default 0)\n"
    "  --label Y           class for a class-conditional model (default 0)\n"
    "  --out FILE          the PNG (default samples.png)\n"
    "  --zoom N            draw each pixel as an N x N square (default 1)\n"
    "  --raw               the raw weights instead of the Polyak average\n"
    "  --threads T         threads (default: all cores)\n"
    "  --matmul fp32|bf16x3 the networks' matrix products in float, or on AMX (bf16x3: about\n"
    "                      4x float's rounding error, 2x faster; docs/MODEL.md)\n";

enum { O_TEMPERATURE = 256, O_SEED, O_LABEL };
typedef struct sample_opts {
    double temps[32];
    int n_temps, label;
    long long seed;
} sample_opts;

static int own_option(void *ctx, int c, const char *arg) {
    sample_opts *o = ctx;
    switch (c) {
    case O_TEMPERATURE:
        return parse_doubles("--temperature", arg, 0, 100, o->temps, 32, &o->n_temps) ? EXIT_USAGE : 0;
    case O_SEED: return parse_i64("--seed", arg, 0, 1LL << 62, &o->seed) ? EXIT_USAGE : 0;
    case O_LABEL: return parse_int("--label", arg, 0, 1 << 20, &o->label) ? EXIT_USAGE : 0;
    }
    return cli_usage_error("unknown option");
}

int cmd_sample(int argc, char **argv) {
    static const struct option opts[] = {
        OPTION_CHECKPOINT, OPTION_N, OPTION_OUT, OPTION_RAW, OPTION_THREADS, OPTION_MATMUL, OPTION_ZOOM,
        OPTION_HELP,
        {"temperature", 1, 0, O_TEMPERATURE}, {"seed", 1, 0, O_SEED}, {"label", 1, 0, O_LABEL},
        {0, 0, 0, 0}};
    common_opts co = {.n = 64, .out = "samples.png"};
    sample_opts o = {.temps = {0.7}, .n_temps = 1};
    int rc = parse_command_line(argc, argv, opts, help, &co, own_option, &o);
    if (rc) return rc < 0 ? 0 : rc;
    if (optind < argc) return cli_usage_error("unexpected argument '%s'", argv[optind]);
    if (co.n > 4096) return cli_usage_error("--n %d: at most 4096", co.n);
    glow_model *m;
    glow_ctx *ctx;
    if ((rc = open_model(&co, &m, &ctx))) return rc;
    const glow_config *cfg = glow_model_config(m);
    if ((cfg->ycond || cfg->weight_y > 0) && o.label >= cfg->n_classes)
        return cli_error("--label %d: the model has %d classes", o.label, cfg->n_classes);
    int n = co.n;
    size_t d = glow_model_dim(m);
    glow_real *x = malloc(sizeof(glow_real) * n * o.n_temps * d);
    int *labels = malloc(sizeof(int) * n);
    if (!x || !labels) return cli_error("out of memory");
    for (int i = 0; i < n; i++) labels[i] = o.label;
    for (int t = 0; t < o.n_temps; t++)
        if (glow_model_sample(ctx, m, labels, n, o.temps[t], (uint64_t)o.seed, x + (size_t)t * n * d) != GLOW_OK)
            return cli_error("%s", glow_last_error());
    int cols = o.n_temps == 1 ? (int)ceil(sqrt(n)) : n;
    if (make_dirs(co.out, 0) || write_sample_grid(co.out, x, n * o.n_temps, cfg, cols, co.zoom)) return EXIT_USER;
    printf("wrote %s: %d samples at temperature%s", co.out, n * o.n_temps, o.n_temps > 1 ? "s" : "");
    for (int t = 0; t < o.n_temps; t++) printf("%s%g", t ? "," : " ", o.temps[t]);
    printf("\n");
    free(x), free(labels);
    glow_model_free(m);
    glow_ctx_free(ctx);
    return 0;
}
