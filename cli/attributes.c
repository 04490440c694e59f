/* attributes.c: `glow attributes` and `glow manipulate`: directions in latent space from
 * labelled images (mean latent of the positives minus mean latent of the negatives), and
 * images moved along them. Class labels give one-vs-rest attributes, named by the class;
 * a CelebA-style attribute file gives its own. */
#include <stdlib.h>
#include <string.h>
#include "cli.h"

enum { O_ATTR_FILE = 256, O_DIRECTIONS, O_ATTRIBUTE, O_MINUS, O_ALPHA };

static int attr_file_option(void *ctx, int c, const char *arg) {
    *(const char **)ctx = arg;
    return c == O_ATTR_FILE ? 0 : EXIT_USAGE;
}

int cmd_attributes(int argc, char **argv) {
    static const char *help =
        "Usage: glow attributes --checkpoint FILE [OPTIONS]\n"
        "For each attribute, the mean latent of images with it minus the mean latent of\n"
        "images without it, saved with the names and counts in one .npz file.\n"
        "Class labels (IDX, CIFAR-10, labels.csv) give one attribute per class (one vs rest);\n"
        "a CelebA-style list_attr_celeba.txt gives its attributes.\n\n"
        "  --checkpoint FILE   the model\n"
        "  --data PATH         labelled data set (default " DEFAULT_DATA ")\n"
        "  --split S           train | test (default train)\n"
        "  --attr-file FILE    a CelebA-style attribute file for an image folder\n"
        "  --n N               only the first N images (default 10000)\n"
        "  --out FILE          the directions (default directions.npz)\n"
        "  --batch B           images per pass (default 256)\n"
        "  --raw               the raw weights instead of the Polyak average\n"
        "  --threads T         threads (default: all cores)\n";
    static const struct option opts[] = {
        OPTION_CHECKPOINT, OPTION_DATA, OPTION_SPLIT, OPTION_N, OPTION_OUT, OPTION_BATCH,
        OPTION_RAW, OPTION_THREADS, OPTION_HELP, {"attr-file", 1, 0, O_ATTR_FILE}, {0, 0, 0, 0}};
    common_opts co = {.data = DEFAULT_DATA, .split = "train", .out = "directions.npz", .n = 10000,
                      .batch = 256};
    const char *attr_file = NULL;
    int rc = parse_command_line(argc, argv, opts, help, &co, attr_file_option, &attr_file);
    if (rc) return rc < 0 ? 0 : rc;
    if (optind < argc) return cli_usage_error("unexpected argument '%s'", argv[optind]);
    glow_model *m;
    glow_ctx *ctx;
    if ((rc = open_model(&co, &m, &ctx))) return rc;
    const char *data = co.data, *split = co.split, *out = co.out;
    int n = co.n, batch = co.batch;
    inputs in;
    if (attr_file) {
        /* Attach the attribute file to the folder, then take the images from it. */
        glow_dataset ds;
        if (load_data(&ds, data, split, glow_model_config(m)->image_h)) return EXIT_USER;
        if (glow_dataset_load_attributes(&ds, attr_file) != GLOW_OK) return cli_error("%s", glow_last_error());
        if (check_data_fits(&ds, glow_model_config(m), data)) return EXIT_USER;
        memset(&in, 0, sizeof in);
        in.n = n < ds.n ? n : ds.n;
        in.n_attrs = ds.n_attrs;
        in.pixels = ds.pixels, ds.pixels = NULL;
        in.labels = calloc(in.n, sizeof(int));
        in.attr_names = ds.attr_names, ds.attr_names = NULL;
        in.attrs = ds.attrs, ds.attrs = NULL;
        glow_dataset_free(&ds);
        if (!in.labels) return cli_error("out of memory");
    } else if (load_inputs(&in, NULL, 0, data, split, n, glow_model_config(m))) {
        return EXIT_USER;
    }
    /* Class labels become one-vs-rest attributes. */
    int n_attrs = in.n_attrs;
    int8_t *attrs = in.attrs;
    char (*names)[64] = in.attr_names;
    int8_t *own_attrs = NULL;
    char (*own_names)[64] = NULL;
    if (!n_attrs) {
        if (!in.has_labels) return cli_error("%s: no labels and no attributes (use --attr-file)", data);
        n_attrs = in.n_classes;
        own_attrs = malloc((size_t)in.n * n_attrs);
        own_names = calloc(n_attrs, sizeof *own_names);
        if (!own_attrs || !own_names) return cli_error("out of memory");
        for (int a = 0; a < n_attrs; a++) {
            if (in.class_names) snprintf(own_names[a], 64, "%s", in.class_names[a]);
            else snprintf(own_names[a], 64, "class%d", a);
            for (int i = 0; i < in.n; i++) own_attrs[(size_t)i * n_attrs + a] = in.labels[i] == a ? 1 : -1;
        }
        attrs = own_attrs, names = own_names;
    }
    size_t d = glow_model_dim(m);
    glow_real *z = malloc(sizeof(glow_real) * in.n * d);
    if (!z) return cli_error("out of memory");
    double t0 = now_seconds();
    if (encode_images(ctx, m, in.pixels, in.labels, in.n, batch, z, NULL)) return EXIT_USER;
    glow_directions dirs;
    if (glow_directions_compute(&dirs, z, in.n, d, attrs, n_attrs, (const char (*)[64])names) != GLOW_OK)
        return cli_error("%s: %s", data, glow_last_error());
    if (make_dirs(out, 0) || glow_directions_save(out, &dirs) != GLOW_OK)
        return cli_error("%s", glow_last_error());
    printf("wrote %s: %d directions from %d images (%.1f s):", out, dirs.n, in.n, now_seconds() - t0);
    for (int a = 0; a < dirs.n; a++)
        printf("%s %s (%lld+/%lld-)", a ? "," : "", dirs.names[a], (long long)dirs.n_pos[a],
               (long long)dirs.n_neg[a]);
    printf("\n");
    glow_directions_free(&dirs);
    free(z), free(own_attrs), free(own_names);
    free_inputs(&in);
    glow_model_free(m);
    glow_ctx_free(ctx);
    return 0;
}

typedef struct manipulate_opts {
    const char *directions, *attribute, *minus;
    double alphas[64];
    int n_alphas;
} manipulate_opts;

static int manipulate_option(void *ctx, int c, const char *arg) {
    manipulate_opts *o = ctx;
    switch (c) {
    case O_DIRECTIONS: o->directions = arg; return 0;
    case O_ATTRIBUTE: o->attribute = arg; return 0;
    case O_MINUS: o->minus = arg; return 0;
    case O_ALPHA: return parse_doubles("--alpha", arg, -1e6, 1e6, o->alphas, 64, &o->n_alphas) ? EXIT_USAGE : 0;
    }
    return cli_usage_error("unknown option");
}

int cmd_manipulate(int argc, char **argv) {
    static const char *help =
        "Usage: glow manipulate IMAGE --attribute NAME --checkpoint FILE [OPTIONS]\n"
        "A PNG strip of IMAGE (a file, or an index into --data) moved along an attribute\n"
        "direction: decode(z + alpha * direction) for each alpha.\n\n"
        "  --checkpoint FILE   the model\n"
        "  --directions FILE   from glow attributes (default directions.npz)\n"
        "  --attribute NAME    the direction to follow\n"
        "  --minus NAME        subtract this direction (e.g. --attribute Sneaker --minus Sandal)\n"
        "  --alpha A[,A...]    scales (default -1,-0.5,0,0.5,1)\n"
        "  --data PATH         data set for an index (default " DEFAULT_DATA ")\n"
        "  --split S           train | test (default test)\n"
        "  --out FILE          the strip (default manipulation.png)\n"
        "  --zoom N            draw each pixel as an N x N square (default 1)\n"
        "  --raw               the raw weights instead of the Polyak average\n"
        "  --threads T         threads (default: all cores)\n";
    static const struct option opts[] = {
        OPTION_CHECKPOINT, OPTION_DATA, OPTION_SPLIT, OPTION_OUT, OPTION_RAW, OPTION_THREADS,
        OPTION_ZOOM, OPTION_HELP, {"directions", 1, 0, O_DIRECTIONS}, {"attribute", 1, 0, O_ATTRIBUTE},
        {"minus", 1, 0, O_MINUS}, {"alpha", 1, 0, O_ALPHA}, {0, 0, 0, 0}};
    common_opts co = {.data = DEFAULT_DATA, .split = "test", .out = "manipulation.png"};
    manipulate_opts o = {.directions = "directions.npz", .alphas = {-1, -0.5, 0, 0.5, 1}, .n_alphas = 5};
    int rc = parse_command_line(argc, argv, opts, help, &co, manipulate_option, &o);
    if (rc) return rc < 0 ? 0 : rc;
    if (argc - optind != 1) return cli_usage_error("expected one IMAGE (a file or an index)");
    if (!o.attribute) return cli_usage_error("--attribute NAME is required");
    glow_model *m;
    glow_ctx *ctx;
    if ((rc = open_model(&co, &m, &ctx))) return rc;
    const char *directions = o.directions, *attribute = o.attribute, *minus = o.minus, *out = co.out;
    const double *alphas = o.alphas;
    int n_alphas = o.n_alphas;
    const glow_config *cfg = glow_model_config(m);
    glow_directions dirs;
    if (glow_directions_load(directions, &dirs) != GLOW_OK) return cli_error("%s", glow_last_error());
    size_t d = glow_model_dim(m);
    if (dirs.dim != d)
        return cli_error("%s: directions of size %zu, but the model's latents are %zu (another model?)",
                         directions, dirs.dim, d);
    int a = glow_directions_find(&dirs, attribute), b = minus ? glow_directions_find(&dirs, minus) : -2;
    const char *unknown = a < 0 ? attribute : b == -1 ? minus : NULL;
    if (unknown) {
        char known[2048] = "";
        for (int i = 0; i < dirs.n; i++) {
            size_t len = strlen(known);
            snprintf(known + len, sizeof known - len, "%s'%s'", i ? ", " : "", dirs.names[i]);
        }
        return cli_error("%s: no attribute '%s' (known: %s)", directions, unknown, known);
    }
    inputs in;
    if (load_inputs(&in, argv + optind, 1, co.data, co.split, 0, cfg)) return EXIT_USER;
    glow_real *z = malloc(sizeof(glow_real) * d), *dir = malloc(sizeof(glow_real) * d),
              *strip = malloc(sizeof(glow_real) * n_alphas * d);
    uint8_t *px = malloc((size_t)n_alphas * d);
    int *labels = malloc(sizeof(int) * n_alphas);
    if (!z || !dir || !strip || !px || !labels) return cli_error("out of memory");
    for (size_t i = 0; i < d; i++)
        dir[i] = dirs.z[(size_t)a * d + i] - (b >= 0 ? dirs.z[(size_t)b * d + i] : 0);
    int label = in.labels[0] < 0 ? 0 : in.labels[0];
    for (int s = 0; s < n_alphas; s++) labels[s] = label;
    if (encode_images(ctx, m, in.pixels, &label, 1, 1, z, NULL)) return EXIT_USER;
    glow_latent_shift(strip, z, dir, alphas, n_alphas, d);
    if (decode_latents(ctx, m, strip, labels, n_alphas, n_alphas, strip, NULL)) return EXIT_USER;
    glow_postprocess(px, strip, n_alphas, d, cfg->n_bits);
    if (make_dirs(out, 0) || write_grid(out, px, n_alphas, cfg, n_alphas, co.zoom)) return EXIT_USER;
    printf("wrote %s: %s along '%s'%s%s at alpha", out, argv[optind], attribute,
           minus ? " minus " : "", minus ? minus : "");
    for (int s = 0; s < n_alphas; s++) printf("%s%g", s ? "," : " ", alphas[s]);
    printf("\n");
    glow_directions_free(&dirs);
    free(z), free(dir), free(strip), free(px), free(labels);
    free_inputs(&in);
    glow_model_free(m);
    glow_ctx_free(ctx);
    return 0;
}
