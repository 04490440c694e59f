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
    "  --raw               the raw weights instead of the Polyak average\n"
    "  --threads T         threads (default: all cores)\n";

int cmd_sample(int argc, char **argv) {
    enum { O_CHECKPOINT = 256, O_N, O_TEMPERATURE, O_SEED, O_LABEL, O_OUT, O_RAW, O_THREADS, O_HELP };
    static const struct option opts[] = {
        {"checkpoint", 1, 0, O_CHECKPOINT}, {"n", 1, 0, O_N}, {"temperature", 1, 0, O_TEMPERATURE},
        {"seed", 1, 0, O_SEED}, {"label", 1, 0, O_LABEL}, {"out", 1, 0, O_OUT},
        {"raw", 0, 0, O_RAW}, {"threads", 1, 0, O_THREADS}, {"help", 0, 0, O_HELP}, {0, 0, 0, 0}};
    const char *checkpoint = NULL, *out = "samples.png";
    int n = 64, raw = 0, threads = 0, label = 0, n_temps = 1, c;
    double temps[32] = {0.7};
    long long seed = 0;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case 'h': case O_HELP: fputs(help, stdout); return 0;
        case O_CHECKPOINT: checkpoint = optarg; break;
        case O_N: if (parse_int("--n", optarg, 1, 4096, &n)) return 2; break;
        case O_TEMPERATURE:
            if (parse_doubles("--temperature", optarg, 0, 100, temps, 32, &n_temps)) return 2;
            break;
        case O_SEED: if (parse_i64("--seed", optarg, 0, 1LL << 62, &seed)) return 2; break;
        case O_LABEL: if (parse_int("--label", optarg, 0, 1 << 20, &label)) return 2; break;
        case O_OUT: out = optarg; break;
        case O_RAW: raw = 1; break;
        case O_THREADS: if (parse_int("--threads", optarg, 1, 4096, &threads)) return 2; break;
        default: return cli_usage_error("unknown option '%s'", argv[optind - 1]);
        }
    }
    if (optind < argc) return cli_usage_error("unexpected argument '%s'", argv[optind]);
    if (!checkpoint) return cli_usage_error("--checkpoint FILE is required");
    glow_set_threads(threads);
    glow_model *m = load_model(checkpoint, raw);
    if (!m) return EXIT_USER;
    const glow_config *cfg = glow_model_config(m);
    if ((cfg->ycond || cfg->weight_y > 0) && label >= cfg->n_classes)
        return cli_error("--label %d: the model has %d classes", label, cfg->n_classes);
    size_t d = glow_model_dim(m);
    glow_real *x = malloc(sizeof(glow_real) * n * n_temps * d);
    int *labels = malloc(sizeof(int) * n);
    if (!x || !labels) return cli_error("out of memory");
    for (int i = 0; i < n; i++) labels[i] = label;
    for (int t = 0; t < n_temps; t++)
        if (glow_model_sample(m, labels, n, temps[t], (uint64_t)seed, x + (size_t)t * n * d) != GLOW_OK)
            return cli_error("%s", glow_last_error());
    int cols = n_temps == 1 ? (int)ceil(sqrt(n)) : n;
    if (make_dirs(out, 0) || write_sample_grid(out, x, n * n_temps, cfg, cols)) return EXIT_USER;
    printf("wrote %s: %d samples at temperature%s", out, n * n_temps, n_temps > 1 ? "s" : "");
    for (int t = 0; t < n_temps; t++) printf("%s%g", t ? "," : " ", temps[t]);
    printf("\n");
    free(x), free(labels);
    glow_model_free(m);
    return 0;
}
