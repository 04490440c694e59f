/* common.c: helpers the subcommands share (see cli.h). */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include "cli.h"

const char *cli_command = "";

static void vreport(const char *fmt, va_list ap) {
    fprintf(stderr, "glow%s%s: ", cli_command[0] ? " " : "", cli_command);
    if (cli_size() > 1) fprintf(stderr, "process %d of %d: ", cli_rank(), cli_size());
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
}

int cli_error(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vreport(fmt, ap);
    va_end(ap);
    return EXIT_USER;
}

int cli_usage_error(const char *fmt, ...) {
    if (cli_rank() != 0) return EXIT_USAGE; /* every process has the same command line */
    va_list ap;
    va_start(ap, fmt);
    vreport(fmt, ap);
    va_end(ap);
    fprintf(stderr, "Try 'glow %s --help'.\n", cli_command);
    return EXIT_USAGE;
}

int parse_i64(const char *option, const char *s, long long lo, long long hi, long long *out) {
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi) {
        cli_usage_error("%s '%s': expected an integer in %lld..%lld", option, s, lo, hi);
        return -1;
    }
    *out = v;
    return 0;
}

int parse_int(const char *option, const char *s, long lo, long hi, int *out) {
    long long v;
    if (parse_i64(option, s, lo, hi, &v)) return -1;
    *out = (int)v;
    return 0;
}

int parse_double(const char *option, const char *s, double lo, double hi, double *out) {
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !isfinite(v) || v < lo || v > hi) {
        cli_usage_error("%s '%s': expected a number in [%g, %g]", option, s, lo, hi);
        return -1;
    }
    *out = v;
    return 0;
}

int parse_doubles(const char *option, const char *s, double lo, double hi, double *out, int max,
                  int *n) {
    char buf[256];
    if (strlen(s) >= sizeof buf) return cli_usage_error("%s: list too long", option), -1;
    strcpy(buf, s);
    *n = 0;
    for (char *save, *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        if (*n == max) return cli_usage_error("%s: at most %d values", option, max), -1;
        if (parse_double(option, tok, lo, hi, &out[*n])) return -1;
        (*n)++;
    }
    if (*n == 0) return cli_usage_error("%s '%s': expected a number or a list", option, s), -1;
    return 0;
}

double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

void format_duration(char *buf, size_t size, double s) {
    if (!isfinite(s) || s < 0) snprintf(buf, size, "?");
    else if (s >= 3600) snprintf(buf, size, "%dh%02dm", (int)(s / 3600), (int)fmod(s / 60, 60));
    else if (s >= 60) snprintf(buf, size, "%dm%02ds", (int)(s / 60), (int)fmod(s, 60));
    else snprintf(buf, size, "%ds", (int)s);
}

double peak_rss_mib(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss / 1024.0;
}

int parse_command_line(int argc, char **argv, const struct option *opts, const char *help,
                       common_opts *co, own_option_fn own, void *ctx) {
    int c;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
        int rc = 0;
        switch (c) {
        case 'h':
        case OPT_HELP: fputs(help, stdout); return -1;
        case OPT_CHECKPOINT: co->checkpoint = optarg; break;
        case OPT_DATA: co->data = optarg; break;
        case OPT_SPLIT:
            if (strcmp(optarg, "train") && strcmp(optarg, "test"))
                return cli_usage_error("--split '%s': expected train or test", optarg);
            co->split = optarg;
            break;
        case OPT_OUT: co->out = optarg; break;
        case OPT_N: rc = parse_int("--n", optarg, 1, 1 << 30, &co->n) ? EXIT_USAGE : 0; break;
        case OPT_BATCH: rc = parse_int("--batch", optarg, 1, 1 << 16, &co->batch) ? EXIT_USAGE : 0; break;
        case OPT_RAW: co->raw = 1; break;
        case OPT_THREADS: rc = parse_int("--threads", optarg, 1, 4096, &co->threads) ? EXIT_USAGE : 0; break;
        case OPT_MATMUL: rc = check_matmul_option(optarg); co->matmul = optarg; break;
        case OPT_ZOOM: rc = parse_int("--zoom", optarg, 1, 16, &co->zoom) ? EXIT_USAGE : 0; break;
        case ':': return cli_usage_error("option '%s' needs a value", argv[optind - 1]);
        case '?': return cli_usage_error("unknown option '%s'", argv[optind - 1]);
        default: rc = own ? own(ctx, c, optarg) : cli_usage_error("unknown option");
        }
        if (rc) return rc;
    }
    return 0;
}

int check_matmul_option(const char *arg) {
    if (!strcmp(arg, "fp32") || !strcmp(arg, "bf16x3")) return 0;
    return cli_usage_error("--matmul '%s': expected fp32 or bf16x3", arg);
}

int open_ctx(int threads, const char *matmul, glow_ctx **ctx) {
    if (!(*ctx = glow_ctx_create(cli_threads(threads)))) return cli_error("%s", glow_last_error());
    glow_ctx_set_comm(*ctx, cli_comm());
    glow_matmul m = matmul && !strcmp(matmul, "bf16x3") ? GLOW_MATMUL_BF16X3 : GLOW_MATMUL_FP32;
    if (glow_ctx_set_matmul(*ctx, m) == GLOW_OK) return 0;
    return cli_error("--matmul %s: %s", matmul, glow_ctx_error(*ctx));
}

int open_model(const common_opts *co, glow_model **m, glow_ctx **ctx) {
    if (!co->checkpoint) return cli_usage_error("--checkpoint FILE is required");
    int rc = open_ctx(co->threads, co->matmul, ctx);
    if (rc) return rc;
    *m = glow_checkpoint_load(co->checkpoint, !co->raw, NULL, NULL);
    return *m ? 0 : cli_error("%s", glow_last_error());
}

int load_data(glow_dataset *ds, const char *path, const char *split, int image_size) {
    if (glow_dataset_load(ds, path, split, image_size) != GLOW_OK)
        return cli_error("%s", glow_last_error());
    return 0;
}

int check_data_fits(const glow_dataset *ds, const glow_config *cfg, const char *path) {
    if (ds->h != cfg->image_h || ds->w != cfg->image_w || ds->c != cfg->image_c)
        return cli_error("%s: images are %dx%dx%d but the model takes %dx%dx%d", path, ds->h,
                         ds->w, ds->c, cfg->image_h, cfg->image_w, cfg->image_c);
    if ((cfg->ycond || cfg->weight_y > 0) && !ds->labels)
        return cli_error("%s: the model is class-conditional but the data has no labels", path);
    if (ds->labels && cfg->n_classes > 0 && (cfg->ycond || cfg->weight_y > 0))
        for (int i = 0; i < ds->n; i++)
            if (ds->labels[i] < 0 || ds->labels[i] >= cfg->n_classes)
                return cli_error("%s: label %d of image %d is outside the model's %d classes",
                                 path, ds->labels[i], i, cfg->n_classes);
    return 0;
}

int write_grid(const char *path, const uint8_t *px, int n, const glow_config *cfg, int cols,
               int zoom) {
    int h = cfg->image_h, w = cfg->image_w, c = cfg->image_c;
    zoom = zoom < 1 ? 1 : zoom;
    uint8_t *big = NULL;
    if (zoom > 1) {
        size_t H = (size_t)h * zoom, W = (size_t)w * zoom, rows = (n + cols - 1) / cols;
        /* Bounds (glow_grid_make's on a side; 256 MiB of pixels) checked before the copy. */
        if (rows * H > 1 << 16 || (size_t)cols * W > 1 << 16 || n * H * W * c > 1 << 28)
            return cli_error("%s: a grid of %zux%zu pixels at --zoom %d is too large", path,
                             rows * H, cols * W, zoom);
        if (!(big = malloc((size_t)n * H * W * c))) return cli_error("%s: out of memory", path);
        for (int k = 0; k < n; k++)
            for (size_t y = 0; y < H; y++)
                for (size_t x = 0; x < W; x++)
                    memcpy(big + (((size_t)k * H + y) * W + x) * c,
                           px + (((size_t)k * h + y / zoom) * w + x / zoom) * c, c);
        px = big, h *= zoom, w *= zoom;
    }
    int rc = glow_grid_write(path, px, n, h, w, c, cols, 2);
    free(big);
    return rc == GLOW_OK ? 0 : cli_error("%s", glow_last_error());
}

int write_sample_grid(const char *path, const glow_real *x, int n, const glow_config *cfg,
                      int cols, int zoom) {
    size_t d = (size_t)cfg->image_h * cfg->image_w * cfg->image_c;
    uint8_t *px = malloc(n * d);
    if (!px) return cli_error("out of memory");
    glow_postprocess(px, x, n, d, cfg->n_bits);
    int rc = write_grid(path, px, n, cfg, cols, zoom);
    free(px);
    return rc;
}

int make_dirs(const char *path, int is_dir) {
    char buf[4096];
    if (strlen(path) >= sizeof buf) return cli_error("%s: path too long", path);
    strcpy(buf, path);
    if (!is_dir) {
        char *slash = strrchr(buf, '/');
        if (!slash) return 0;
        *slash = 0;
    }
    for (char *p = buf + 1; ; p++) {
        if (*p == '/' || *p == 0) {
            char keep = *p;
            *p = 0;
            if (mkdir(buf, 0777) && errno != EEXIST)
                return cli_error("%s: cannot create directory: %s", buf, strerror(errno));
            *p = keep;
            if (!keep) break;
        }
    }
    return 0;
}

/* ---- training curves ------------------------------------------------------------------ */

int curve_add(curve *c, double step, double train, double test) {
    if (c->n == c->cap) {
        int cap = c->cap ? 2 * c->cap : 256;
        /* Each array that grows is kept, so a failure part way loses nothing. */
        double *s = realloc(c->step, sizeof(double) * cap), *tr = NULL, *te = NULL;
        if (s) c->step = s, tr = realloc(c->train, sizeof(double) * cap);
        if (tr) c->train = tr, te = realloc(c->test, sizeof(double) * cap);
        if (!te) return -1;
        c->test = te;
        c->cap = cap;
    }
    c->step[c->n] = step, c->train[c->n] = train, c->test[c->n] = test;
    c->n++;
    return 0;
}

int curve_load(curve *c, const char *metrics, long long upto, const char *required) {
    FILE *f = fopen(metrics, "r");
    if (!f) return required ? cli_error("%s: cannot open: %s", metrics, strerror(errno)) : 0;
    char *line = NULL;
    size_t cap = 0;
    while (getline(&line, &cap, f) > 0) {
        const char *s = strstr(line, "\"step\":"), *tr = strstr(line, "\"train_bpd\":"),
                   *te = strstr(line, "\"test_bpd\":");
        if (!s) continue;
        double step = atof(s + 7);
        if (step > upto) continue;
        if (curve_add(c, step, tr ? atof(tr + 12) : NAN, te ? atof(te + 11) : NAN)) {
            free(line);
            fclose(f);
            return cli_error("%s: out of memory", metrics);
        }
    }
    free(line);
    fclose(f);
    return 0;
}

void curve_free(curve *c) {
    free(c->step), free(c->train), free(c->test);
    *c = (curve){0};
}
