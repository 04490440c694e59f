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
    "  --threads T         threads (default: all cores)\n";

int cmd_eval(int argc, char **argv) {
    enum { O_CHECKPOINT = 256, O_DATA, O_SPLIT, O_IMAGE_SIZE, O_N, O_BATCH, O_SEED, O_RAW,
           O_JSON, O_THREADS, O_HELP };
    static const struct option opts[] = {
        {"checkpoint", 1, 0, O_CHECKPOINT}, {"data", 1, 0, O_DATA}, {"split", 1, 0, O_SPLIT},
        {"image-size", 1, 0, O_IMAGE_SIZE}, {"n", 1, 0, O_N}, {"batch", 1, 0, O_BATCH},
        {"seed", 1, 0, O_SEED}, {"raw", 0, 0, O_RAW}, {"json", 0, 0, O_JSON},
        {"threads", 1, 0, O_THREADS}, {"help", 0, 0, O_HELP}, {0, 0, 0, 0}};
    const char *checkpoint = NULL, *data = DEFAULT_DATA, *split = "test";
    int image_size = 0, n = 0, batch = 256, raw = 0, json = 0, threads = 0, c;
    long long seed = 0;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case 'h': case O_HELP: fputs(help, stdout); return 0;
        case O_CHECKPOINT: checkpoint = optarg; break;
        case O_DATA: data = optarg; break;
        case O_SPLIT:
            if (strcmp(optarg, "train") && strcmp(optarg, "test"))
                return cli_usage_error("--split '%s': expected train or test", optarg);
            split = optarg;
            break;
        case O_IMAGE_SIZE: if (parse_int("--image-size", optarg, 1, 4096, &image_size)) return 2; break;
        case O_N: if (parse_int("--n", optarg, 1, 1 << 30, &n)) return 2; break;
        case O_BATCH: if (parse_int("--batch", optarg, 1, 1 << 16, &batch)) return 2; break;
        case O_SEED: if (parse_i64("--seed", optarg, 0, 1LL << 62, &seed)) return 2; break;
        case O_RAW: raw = 1; break;
        case O_JSON: json = 1; break;
        case O_THREADS: if (parse_int("--threads", optarg, 1, 4096, &threads)) return 2; break;
        default: return cli_usage_error("unknown option '%s'", argv[optind - 1]);
        }
    }
    if (optind < argc) return cli_usage_error("unexpected argument '%s'", argv[optind]);
    if (!checkpoint) return cli_usage_error("--checkpoint FILE is required");
    glow_set_threads(threads);
    glow_model *m = load_model(checkpoint, raw);
    if (!m) return EXIT_USER;
    glow_dataset ds;
    if (load_data(&ds, data, split, image_size)) return EXIT_USER;
    if (check_data_fits(&ds, glow_model_config(m), data)) return EXIT_USER;
    int count = n && n < ds.n ? n : ds.n;
    double *bpd = malloc(sizeof(double) * count), t0 = now_seconds();
    if (!bpd) return cli_error("out of memory");
    if (cli_log_prob(m, &ds, count, batch, (uint64_t)seed, bpd)) return EXIT_USER;
    double mean = 0, var = 0;
    for (int i = 0; i < count; i++) mean += bpd[i] / count;
    for (int i = 0; i < count; i++) var += (bpd[i] - mean) * (bpd[i] - mean);
    double se = count > 1 ? sqrt(var / (count - 1) / count) : 0, dt = now_seconds() - t0;
    if (!isfinite(mean)) return cli_error("%s: bits/dim is not finite on %s", checkpoint, data);
    if (json)
        printf("{\"checkpoint\":\"%s\",\"split\":\"%s\",\"n\":%d,\"bpd\":%.6f,\"bpd_se\":%.6f,"
               "\"weights\":\"%s\",\"seconds\":%.2f}\n", checkpoint, split, count, mean, se,
               raw ? "raw" : "average", dt);
    else
        printf("%s bits/dim: %.4f +- %.4f (standard error, %d images, %s weights, %.1f s)\n",
               split, mean, se, count, raw ? "raw" : "averaged", dt);
    free(bpd);
    glow_dataset_free(&ds);
    glow_model_free(m);
    return 0;
}
