/* latent.c: `glow encode`, `glow decode`, `glow interpolate` and `glow check`: exact
 * travel between images and latents. Images are encoded from the centre of their
 * quantisation bin (no noise), so decode(encode(x)) gives x back pixel for pixel when the
 * model is numerically invertible; `check` audits exactly that. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "cli.h"

/* ---- inputs: image files, or indices into a data set -------------------------------- */

static int is_index(const char *s) {
    if (!*s) return 0;
    for (; *s; s++)
        if (*s < '0' || *s > '9') return 0;
    return 1;
}

int load_inputs(inputs *in, char **args, int nargs, const char *data, const char *split,
                int count, const glow_config *cfg) {
    memset(in, 0, sizeof *in);
    size_t d = (size_t)cfg->image_h * cfg->image_w * cfg->image_c;
    glow_dataset ds = {0};
    int need_data = nargs == 0;
    for (int i = 0; i < nargs; i++) need_data |= is_index(args[i]);
    if (need_data) {
        /* Native size, or resized as training did when the model is square and smaller. */
        if (load_data(&ds, data, split, 0)) return EXIT_USER;
        if ((ds.h != cfg->image_h || ds.w != cfg->image_w) && cfg->image_h == cfg->image_w) {
            glow_dataset_free(&ds);
            if (load_data(&ds, data, split, cfg->image_h)) return EXIT_USER;
        }
        if (check_data_fits(&ds, cfg, data)) return EXIT_USER;
        if (ds.labels && ds.n_classes == 10 && strstr(data, "fashion")) glow_dataset_set_fashion_names(&ds);
    }
    in->n = nargs ? nargs : (count > 0 && count < ds.n ? count : ds.n);
    in->pixels = malloc((size_t)in->n * d);
    in->labels = malloc(sizeof(int) * in->n);
    if (!in->pixels || !in->labels) return cli_error("out of memory");
    in->has_labels = nargs == 0 && ds.labels != NULL;
    for (int i = 0; i < in->n; i++) {
        in->labels[i] = -1;
        if (nargs && !is_index(args[i])) {
            uint8_t *px;
            int h, w, c;
            if (glow_image_read(args[i], &px, &h, &w, &c) != GLOW_OK) return cli_error("%s", glow_last_error());
            if (h != cfg->image_h || w != cfg->image_w || c != cfg->image_c) {
                free(px);
                return cli_error("%s: image is %dx%dx%d but the model takes %dx%dx%d", args[i], h, w,
                                 c, cfg->image_h, cfg->image_w, cfg->image_c);
            }
            memcpy(in->pixels + i * d, px, d);
            free(px);
        } else {
            long k = nargs ? strtol(args[i], NULL, 10) : i; /* digits only: see is_index */
            if (k < 0 || k >= ds.n || (nargs && strlen(args[i]) > 9))
                return cli_error("%s: image index %s, but the %s split has %d images", data,
                                 nargs ? args[i] : "?", split, ds.n);
            memcpy(in->pixels + i * d, ds.pixels + (size_t)k * d, d);
            if (ds.labels) in->labels[i] = ds.labels[k];
        }
    }
    if (ds.n_classes) {
        in->n_classes = ds.n_classes;
        if (ds.class_names) {
            in->class_names = malloc(sizeof(*in->class_names) * ds.n_classes);
            if (in->class_names) memcpy(in->class_names, ds.class_names, sizeof(*in->class_names) * ds.n_classes);
        }
    }
    if (ds.n_attrs && nargs == 0) {
        in->n_attrs = ds.n_attrs;
        in->attr_names = malloc(sizeof(*in->attr_names) * ds.n_attrs);
        in->attrs = malloc((size_t)ds.n * ds.n_attrs);
        if (!in->attr_names || !in->attrs) return cli_error("out of memory");
        memcpy(in->attr_names, ds.attr_names, sizeof(*in->attr_names) * ds.n_attrs);
        memcpy(in->attrs, ds.attrs, (size_t)in->n * ds.n_attrs);
    }
    glow_dataset_free(&ds);
    return 0;
}

void free_inputs(inputs *in) {
    free(in->pixels), free(in->labels), free(in->class_names), free(in->attr_names), free(in->attrs);
    memset(in, 0, sizeof *in);
}

int encode_images(glow_ctx *ctx, const glow_model *m, const uint8_t *pixels, const int *labels,
                  int n, int batch, glow_real *z, double *logdet) {
    if (glow_encode_images(ctx, m, pixels, labels, n, batch, z, logdet) == GLOW_OK) return 0;
    return cli_error("%s", glow_last_error());
}

int decode_latents(glow_ctx *ctx, const glow_model *m, const glow_real *z, const int *labels,
                   int n, int batch, glow_real *x, double *logdet) {
    if (glow_decode_latents(ctx, m, z, labels, n, batch, x, logdet) == GLOW_OK) return 0;
    return cli_error("%s", glow_last_error());
}

/* "z.npy" -> "z_labels.npy" / "z.json" */
static void sibling(char *out, size_t size, const char *path, const char *suffix) {
    size_t n = strlen(path);
    if (n > 4 && !strcmp(path + n - 4, ".npy")) n -= 4;
    snprintf(out, size, "%.*s%s", (int)n, path, suffix);
}

/* ---- encode ------------------------------------------------------------------------- */

int cmd_encode(int argc, char **argv) {
    static const char *help =
        "Usage: glow encode --checkpoint FILE --out Z.npy [OPTIONS] [IMAGE|INDEX ...]\n"
        "Images to latents: Z.npy, float32 (N, D) in the layout of docs/MODEL.md, with\n"
        "Z_labels.npy (int32) when the data has labels and Z.json naming the model.\n"
        "With no IMAGE, the images of --data (its test split by default).\n\n"
        "  --checkpoint FILE   the model (its Polyak average unless --raw)\n"
        "  --data PATH         data set (default " DEFAULT_DATA ")\n"
        "  --split S           train | test (default test)\n"
        "  --n N               only the first N images\n"
        "  --out Z.npy         latents (default z.npy)\n"
        "  --batch B           images per pass (default 256)\n"
        "  --raw               the raw weights instead of the Polyak average\n"
        "  --threads T         threads (default: all cores)\n";
    static const struct option opts[] = {
        OPTION_CHECKPOINT, OPTION_DATA, OPTION_SPLIT, OPTION_N, OPTION_OUT, OPTION_BATCH,
        OPTION_RAW, OPTION_THREADS, OPTION_HELP, {0, 0, 0, 0}};
    common_opts co = {.data = DEFAULT_DATA, .split = "test", .out = "z.npy", .batch = 256};
    int rc = parse_command_line(argc, argv, opts, help, &co, NULL, NULL);
    if (rc) return rc < 0 ? 0 : rc;
    glow_model *m;
    glow_ctx *ctx;
    if ((rc = open_model(&co, &m, &ctx))) return rc;
    const char *checkpoint = co.checkpoint, *out = co.out;
    int batch = co.batch, raw = co.raw;
    inputs in;
    if (load_inputs(&in, argv + optind, argc - optind, co.data, co.split, co.n, glow_model_config(m)))
        return EXIT_USER;
    size_t d = glow_model_dim(m);
    glow_real *z = malloc(sizeof(glow_real) * in.n * d);
    if (!z) return cli_error("out of memory");
    int *labels = malloc(sizeof(int) * (in.n ? in.n : 1)); /* unknown labels: class 0 */
    if (!labels) return cli_error("out of memory");
    for (int i = 0; i < in.n; i++) labels[i] = in.labels[i] < 0 ? 0 : in.labels[i];
    if (encode_images(ctx, m, in.pixels, labels, in.n, batch, z, NULL)) return EXIT_USER;
    free(labels);
    if (make_dirs(out, 0)) return EXIT_USER;
    if (glow_npy_write(out, z, in.n, d) != GLOW_OK) return cli_error("%s", glow_last_error());
    char labels_path[4200] = "", meta[4200];
    if (in.has_labels) {
        sibling(labels_path, sizeof labels_path, out, "_labels.npy");
        if (glow_npy_write_labels(labels_path, in.labels, in.n) != GLOW_OK)
            return cli_error("%s", glow_last_error());
    }
    sibling(meta, sizeof meta, out, ".json");
    FILE *f = fopen(meta, "w");
    if (!f) return cli_error("%s: cannot open for writing", meta);
    fprintf(f, "{\"checkpoint\": \"%s\", \"fingerprint\": \"%08x\", \"weights\": \"%s\", \"n\": %d, "
               "\"dim\": %zu, \"labels\": \"%s\"}\n", checkpoint, glow_model_fingerprint(m),
            raw ? "raw" : "average", in.n, d, labels_path);
    fclose(f);
    printf("wrote %s: %d latents of size %zu%s%s\n", out, in.n, d, in.has_labels ? ", labels in " : "",
           labels_path);
    free(z);
    free_inputs(&in);
    glow_model_free(m);
    glow_ctx_free(ctx);
    return 0;
}

/* ---- decode ------------------------------------------------------------------------- */

/* Latents from a file, checked against the model: size, and the model that made them. */
static int read_latents(glow_real **z, int *n, const char *path, glow_model *m) {
    size_t rows, cols;
    if (glow_npy_read(path, z, &rows, &cols) != GLOW_OK) return cli_error("%s", glow_last_error());
    if (cols != glow_model_dim(m))
        return cli_error("%s: latents of size %zu, but the model's are %zu (another model?)", path,
                         cols, glow_model_dim(m));
    *n = (int)rows;
    char meta[4200], text[8192] = "";
    sibling(meta, sizeof meta, path, ".json");
    FILE *f = fopen(meta, "r");
    if (f) {
        size_t k = fread(text, 1, sizeof text - 1, f);
        text[k] = 0;
        fclose(f);
        char want[16];
        snprintf(want, sizeof want, "%08x", glow_model_fingerprint(m));
        const char *fp = strstr(text, "\"fingerprint\": \"");
        if (fp && strncmp(fp + 16, want, 8))
            return cli_error("%s: encoded by another model (fingerprint %.8s, this model %s; "
                             "see %s)", path, fp + 16, want, meta);
    }
    return 0;
}

enum { O_LATENTS = 256, O_GRID, O_STEPS };
typedef struct decode_opts {
    const char *latents, *grid;
} decode_opts;

static int decode_option(void *ctx, int c, const char *arg) {
    decode_opts *o = ctx;
    switch (c) {
    case O_LATENTS: o->latents = arg; return 0;
    case O_GRID: o->grid = arg; return 0;
    }
    return cli_usage_error("unknown option");
}

int cmd_decode(int argc, char **argv) {
    static const char *help =
        "Usage: glow decode --checkpoint FILE --latents Z.npy (--out DIR | --grid FILE)\n"
        "Latents to images: one PNG per latent in DIR (000000.png, ... in input order), or\n"
        "one grid.\n\n"
        "  --checkpoint FILE   the model the latents came from\n"
        "  --latents Z.npy     float32 (N, D)\n"
        "  --out DIR           one PNG per image\n"
        "  --grid FILE         one PNG grid instead\n"
        "  --zoom N            draw each pixel as an N x N square in the grid (default 1)\n"
        "  --batch B           latents per pass (default 256)\n"
        "  --raw               the raw weights instead of the Polyak average\n"
        "  --threads T         threads (default: all cores)\n";
    static const struct option opts[] = {
        OPTION_CHECKPOINT, OPTION_OUT, OPTION_BATCH, OPTION_RAW, OPTION_THREADS, OPTION_ZOOM,
        OPTION_HELP, {"latents", 1, 0, O_LATENTS}, {"grid", 1, 0, O_GRID}, {0, 0, 0, 0}};
    common_opts co = {.batch = 256};
    decode_opts o = {0};
    int rc = parse_command_line(argc, argv, opts, help, &co, decode_option, &o);
    if (rc) return rc < 0 ? 0 : rc;
    if (optind < argc) return cli_usage_error("unexpected argument '%s'", argv[optind]);
    if (!o.latents) return cli_usage_error("--latents Z.npy is required");
    if (!co.out == !o.grid) return cli_usage_error("give --out DIR or --grid FILE");
    glow_model *m;
    glow_ctx *ctx;
    if ((rc = open_model(&co, &m, &ctx))) return rc;
    const char *latents = o.latents, *out = co.out, *grid = o.grid;
    int batch = co.batch;
    const glow_config *cfg = glow_model_config(m);
    glow_real *z = NULL;
    int n = 0;
    if (read_latents(&z, &n, latents, m)) return EXIT_USER;
    size_t d = glow_model_dim(m);
    glow_real *x = malloc(sizeof(glow_real) * (n ? n : 1) * d);
    uint8_t *px = malloc((size_t)(n ? n : 1) * d);
    if (!x || !px) return cli_error("out of memory");
    /* Decoding given latents does not use the label: only the priors do. */
    if (decode_latents(ctx, m, z, NULL, n, batch, x, NULL)) return EXIT_USER;
    glow_postprocess(px, x, n, d, cfg->n_bits);
    if (grid) {
        if (make_dirs(grid, 0)) return EXIT_USER;
        if (write_grid(grid, px, n, cfg, (int)ceil(sqrt(n)), co.zoom)) return EXIT_USER;
        printf("wrote %s: %d images\n", grid, n);
    } else {
        if (make_dirs(out, 1)) return EXIT_USER;
        char path[4200];
        for (int i = 0; i < n; i++) {
            snprintf(path, sizeof path, "%s/%06d.png", out, i);
            if (glow_png_write(path, px + (size_t)i * d, cfg->image_h, cfg->image_w, cfg->image_c) != GLOW_OK)
                return cli_error("%s", glow_last_error());
        }
        printf("wrote %d images to %s/\n", n, out);
    }
    free(z), free(x), free(px);
    glow_model_free(m);
    glow_ctx_free(ctx);
    return 0;
}

/* ---- interpolate -------------------------------------------------------------------- */

static int steps_option(void *ctx, int c, const char *arg) {
    return c == O_STEPS && !parse_int("--steps", arg, 2, 1000, ctx) ? 0 : EXIT_USAGE;
}

int cmd_interpolate(int argc, char **argv) {
    static const char *help =
        "Usage: glow interpolate A B --checkpoint FILE [OPTIONS]\n"
        "A PNG strip of the images decoded along the straight line between the latents (all\n"
        "levels) of A and B: image files, or indices into --data.\n\n"
        "  --checkpoint FILE   the model\n"
        "  --steps N           images in the strip, ends included (default 8)\n"
        "  --data PATH         data set for indices (default " DEFAULT_DATA ")\n"
        "  --split S           train | test (default test)\n"
        "  --out FILE          the strip (default interpolation.png)\n"
        "  --zoom N            draw each pixel as an N x N square (default 1)\n"
        "  --raw               the raw weights instead of the Polyak average\n"
        "  --threads T         threads (default: all cores)\n";
    static const struct option opts[] = {
        OPTION_CHECKPOINT, OPTION_DATA, OPTION_SPLIT, OPTION_OUT, OPTION_RAW, OPTION_THREADS,
        OPTION_ZOOM, OPTION_HELP, {"steps", 1, 0, O_STEPS}, {0, 0, 0, 0}};
    common_opts co = {.data = DEFAULT_DATA, .split = "test", .out = "interpolation.png"};
    int steps = 8;
    int rc = parse_command_line(argc, argv, opts, help, &co, steps_option, &steps);
    if (rc) return rc < 0 ? 0 : rc;
    if (argc - optind != 2) return cli_usage_error("expected two images A B (files or indices)");
    glow_model *m;
    glow_ctx *ctx;
    if ((rc = open_model(&co, &m, &ctx))) return rc;
    const char *out = co.out;
    const glow_config *cfg = glow_model_config(m);
    inputs in;
    if (load_inputs(&in, argv + optind, 2, co.data, co.split, 0, cfg)) return EXIT_USER;
    size_t d = glow_model_dim(m);
    glow_real *z = malloc(sizeof(glow_real) * 2 * d), *line = malloc(sizeof(glow_real) * steps * d);
    uint8_t *px = malloc((size_t)steps * d);
    int *labels = calloc(steps, sizeof(int));
    if (!z || !line || !px || !labels) return cli_error("out of memory");
    for (int i = 0; i < 2; i++) in.labels[i] = in.labels[i] < 0 ? 0 : in.labels[i];
    if (encode_images(ctx, m, in.pixels, in.labels, 2, 2, z, NULL)) return EXIT_USER;
    glow_latent_lerp(line, z, z + d, d, steps);
    for (int s = 0; s < steps; s++) labels[s] = in.labels[s * 2 < steps ? 0 : 1];
    if (decode_latents(ctx, m, line, labels, steps, steps, line, NULL)) return EXIT_USER;
    glow_postprocess(px, line, steps, d, cfg->n_bits);
    if (make_dirs(out, 0) || write_grid(out, px, steps, cfg, steps, co.zoom)) return EXIT_USER;
    printf("wrote %s: %d steps from %s to %s\n", out, steps, argv[optind], argv[optind + 1]);
    free(z), free(line), free(px), free(labels);
    free_inputs(&in);
    glow_model_free(m);
    glow_ctx_free(ctx);
    return 0;
}

/* ---- check -------------------------------------------------------------------------- */

int cmd_check(int argc, char **argv) {
    static const char *help =
        "Usage: glow check --checkpoint FILE [OPTIONS]\n"
        "An invertibility audit: every image is encoded and decoded. Reports the largest\n"
        "reconstruction error before quantisation, the images (and pixels) not returned\n"
        "exactly, and the largest disagreement between the forward and inverse\n"
        "log-determinants. Exit status 1 if any image is not returned exactly.\n\n"
        "  --checkpoint FILE   the model\n"
        "  --data PATH         data set (default " DEFAULT_DATA ")\n"
        "  --split S           train | test (default test)\n"
        "  --n N               only the first N images\n"
        "  --batch B           images per pass (default 256)\n"
        "  --raw               the raw weights instead of the Polyak average\n"
        "  --threads T         threads (default: all cores)\n";
    static const struct option opts[] = {
        OPTION_CHECKPOINT, OPTION_DATA, OPTION_SPLIT, OPTION_N, OPTION_BATCH, OPTION_RAW,
        OPTION_THREADS, OPTION_HELP, {0, 0, 0, 0}};
    common_opts co = {.data = DEFAULT_DATA, .split = "test", .batch = 256};
    int rc = parse_command_line(argc, argv, opts, help, &co, NULL, NULL);
    if (rc) return rc < 0 ? 0 : rc;
    if (optind < argc) return cli_usage_error("unexpected argument '%s'", argv[optind]);
    glow_model *m;
    glow_ctx *ctx;
    inputs in = {0};
    rc = open_model(&co, &m, &ctx);
    if (!rc) rc = load_inputs(&in, NULL, 0, co.data, co.split, co.n, glow_model_config(m));
    if ((rc = cli_agree(rc))) return rc;
    int batch = co.batch;
    const glow_config *cfg = glow_model_config(m);
    size_t d = glow_model_dim(m);
    /* Under mpirun, each process checks a share of the images; the figures are combined. */
    int first = (int)((int64_t)in.n * cli_rank() / cli_size());
    int end = (int)((int64_t)in.n * (cli_rank() + 1) / cli_size());
    int chunk = batch;
    glow_real *x = malloc(sizeof(glow_real) * chunk * d), *z = malloc(sizeof(glow_real) * chunk * d),
              *x2 = malloc(sizeof(glow_real) * chunk * d);
    double *ld_f = malloc(sizeof(double) * chunk), *ld_i = malloc(sizeof(double) * chunk);
    uint8_t *px = malloc((size_t)chunk * d);
    if (!x || !z || !x2 || !ld_f || !ld_i || !px) return cli_error("out of memory");
    double max_err = 0, max_ld = 0, t0 = now_seconds();
    long long bad_images = 0, bad_pixels = 0;
    for (int s = first; s < end; s += chunk) {
        int k = end - s < chunk ? end - s : chunk;
        const uint8_t *orig = in.pixels + (size_t)s * d;
        glow_preprocess_center(x, orig, k, d, cfg->n_bits);
        if (encode_images(ctx, m, orig, in.labels + s, k, k, z, ld_f) ||
            decode_latents(ctx, m, z, in.labels + s, k, k, x2, ld_i))
            return EXIT_USER;
        glow_postprocess(px, x2, k, d, cfg->n_bits);
        for (int b = 0; b < k; b++) {
            long long diff = 0;
            for (size_t i = 0; i < d; i++) {
                size_t j = (size_t)b * d + i;
                double e = fabs((double)x2[j] - x[j]);
                if (!(e <= max_err) && !isnan(max_err)) max_err = e; /* NaN stays */
                /* compare at the model's bit depth */
                diff += (px[j] >> (8 - cfg->n_bits)) != (orig[j] >> (8 - cfg->n_bits));
            }
            bad_pixels += diff;
            bad_images += diff > 0;
            double e = fabs(ld_f[b] - ld_i[b]);
            if (!(e <= max_ld) && !isnan(max_ld)) max_ld = e;
        }
    }
    if (cli_size() > 1) { /* a NaN counts as the largest (MPI's MAX could drop it) */
        max_err = cli_max(isnan(max_err) ? INFINITY : max_err);
        max_ld = cli_max(isnan(max_ld) ? INFINITY : max_ld);
        bad_images = (long long)cli_sum((double)bad_images);
        bad_pixels = (long long)cli_sum((double)bad_pixels);
    }
    if (cli_rank() == 0 && !isfinite(max_err))
        printf("some images decode to non-finite values (a scale underflowed)\n");
    if (cli_rank() == 0) printf("%d images: largest reconstruction error %.3g (a quantisation bin is %.3g); %lld images "
           "(%lld pixels) not returned exactly; largest log-det disagreement %.3g nats (%.1f s)\n",
           in.n, max_err, 1.0 / (1 << cfg->n_bits), bad_images, bad_pixels, max_ld, now_seconds() - t0);
    free(x), free(z), free(x2), free(ld_f), free(ld_i), free(px);
    free_inputs(&in);
    glow_model_free(m);
    glow_ctx_free(ctx);
    return bad_images ? EXIT_USER : 0;
}
