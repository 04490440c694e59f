/* bench.c: `glow bench`: images/s of a training step (forward + backward + Adam), of encode
 * and of sample, the convolution GFLOP/s they reach, and peak memory, per named
 * configuration. Each configuration runs in its own child process so that its peak RSS is
 * its own. Medians over repeats; a warm-up run first. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include "cli.h"

typedef struct bench_config {
    const char *name;
    int c, h, w, levels, depth, width, batch;
} bench_config;

static const bench_config configs[] = {
    {"fmnist", 1, 32, 32, 3, 8, 128, 64},
    {"cifar-paper", 3, 32, 32, 3, 32, 512, 64},
    {"celeba64", 3, 64, 64, 4, 16, 256, 16},
    /* Sampling latency against image size, one image at a time: K=32, width 512 and one
     * level per doubling, up to the paper's 256x256 face model (L=6). */
    {"face32", 3, 32, 32, 3, 32, 512, 1},
    {"face64", 3, 64, 64, 4, 32, 512, 1},
    {"face128", 3, 128, 128, 5, 32, 512, 1},
    {"face256", 3, 256, 256, 6, 32, 512, 1},
};

static const char *help =
    "Usage: glow bench [OPTIONS]\n"
    "Images/s of train (forward + backward + Adam), encode and sample (T=0.7), convolution\n"
    "GFLOP/s (train counts 3x the forward FLOPs), peak RSS; medians over repeats.\n\n"
    "  --config NAME[,NAME]  fmnist (1x32x32 L3 K8 w128 b64), cifar-paper (3x32x32 L3 K32\n"
    "                        w512 b64), celeba64 (3x64x64 L4 K16 w256 b16) (default: these\n"
    "                        three); face32, face64, face128, face256 (3xNxN, L = 3..6, K32\n"
    "                        w512, b1: latency per image, e.g. --phases sample)\n"
    "  --phases P[,P]        train, encode, sample (default: all)\n"
    "  --repeats N           timed repeats per phase (default 5)\n"
    "  --store-activations   keep activations instead of rebuilding them\n"
    "  --activation-memory MiB  keep the activations of as many flow steps as fit in MiB\n"
    "  --mem-sweep           peak RSS of one training step at K = 4, 8, 16, 32, 64 for 28x28x1,\n"
    "                        L=2, width 128, batch 64 (in both memory modes); with --config\n"
    "                        NAME, for that configuration's shape and batch (--config fmnist:\n"
    "                        the PyTorch reference's torch_bench.py --mem-sweep model)\n"
    "  --json                one JSON object per line on stdout\n"
    "  --threads T           threads (default: all cores)\n"
    "  --matmul fp32|bf16x3  the networks' matrix products in float, or on AMX (bf16x3: about\n"
    "                        4x float's rounding error, 2x faster; docs/MODEL.md)\n";

/* Forward multiply-add FLOPs (2 per MAC) of one image through every convolution. */
static double forward_flops(const glow_config *cfg) {
    double f = 0;
    int h = cfg->image_h, w = cfg->image_w, c = cfg->image_c;
    for (int i = 0; i < cfg->levels; i++) {
        h /= 2, w /= 2, c *= 4;
        double hw = (double)h * w, n = cfg->width;
        double cout = cfg->coupling == GLOW_AFFINE ? c : c / 2;
        double step = 2 * hw * (9 * (c / 2) * n + n * n + 9 * n * cout);
        if (cfg->permutation >= GLOW_INVCONV) step += 2 * hw * c * c;
        f += cfg->depth * step;
        if (i < cfg->levels - 1) {
            f += 2 * hw * 9 * (c / 2) * c; /* split prior */
            c /= 2;
        }
    }
    return f;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n) {
    qsort(v, n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

typedef struct result {
    double img_per_s, gflops, peak_rss_mib, base_rss_mib;
    int ok, recomputed; /* training steps redone from kept inputs (see glow.h) */
    int kept_steps;     /* flow steps whose activations a training step kept */
} result;

static double current_rss_mib(void) {
    FILE *f = fopen("/proc/self/statm", "r");
    long pages = 0, rss = 0;
    if (f) {
        if (fscanf(f, "%ld %ld", &pages, &rss) != 2) rss = 0;
        fclose(f);
    }
    return rss * (sysconf(_SC_PAGESIZE) / 1048576.0);
}

/* One phase of one configuration, in this (child) process. */
/* memory: bytes for kept activations in training (0: rebuild all; SIZE_MAX: keep all). */
static result run_phase(const glow_config *cfg, int batch, const char *phase, int repeats,
                        size_t memory, int threads, glow_matmul matmul) {
    result r = {0};
    glow_model *m = glow_model_create(cfg);
    glow_ctx *ctx = glow_ctx_create(threads);
    if (!m || !ctx || glow_ctx_set_matmul(ctx, matmul) != GLOW_OK) {
        fprintf(stderr, "glow bench: %s\n", glow_last_error());
        return r;
    }
    glow_ctx_set_activation_memory(ctx, memory);
    size_t d = glow_model_dim(m);
    glow_real *x = malloc(sizeof(glow_real) * batch * d), *z = malloc(sizeof(glow_real) * batch * d);
    uint8_t *px = malloc((size_t)batch * d);
    for (size_t i = 0; i < (size_t)batch * d; i++) px[i] = (uint8_t)(glow_rng_uniform(7, i) * 256);
    glow_preprocess(x, px, batch, d, 8, 1, 0);
    glow_model_init(ctx, m, x, NULL, batch);
    glow_optimizer opt;
    glow_optim_config oc;
    glow_optim_config_default(&oc);
    oc.warmup = 200; /* as in training, and as the PyTorch reference's benchmark does */
    glow_optimizer_init(&opt, &oc, glow_model_n_params(m), glow_model_params(m));
    /* The model's own state (weights, gradients, moments, average) made resident first, so
     * that base -> peak is what a pass needs beyond it: activations and workspace. */
    size_t np = glow_model_n_params(m);
    /* Zero-initialised weights can still be untouched zero pages (the compiler may turn
     * malloc + memset into calloc) until the first update writes them: write them now. */
    volatile glow_real *params = glow_model_params(m);
    for (size_t i = 0; i < np; i++) params[i] = params[i];
    if (!strcmp(phase, "train")) {
        if (glow_ctx_reserve_grads(ctx, m) != GLOW_OK) {
            fprintf(stderr, "glow bench: %s\n", glow_last_error());
            return r;
        }
        memset(glow_ctx_grads(ctx), 0, sizeof(glow_real) * np);
        memset(opt.m, 0, sizeof(glow_real) * np);
        memset(opt.v, 0, sizeof(glow_real) * np);
    }
    r.base_rss_mib = current_rss_mib();
    double times[64];
    int n = repeats < 64 ? repeats : 64;
    for (int i = -1; i < n; i++) { /* i = -1: warm-up */
        double t0 = now_seconds();
        int rc;
        if (!strcmp(phase, "train")) {
            glow_step_stats st;
            rc = glow_model_train_step(ctx, m, x, NULL, batch, &st, NULL);
            if (rc == GLOW_OK) glow_optimizer_step(&opt, glow_model_params(m), glow_ctx_grads(ctx), NULL);
            r.recomputed += st.recomputed;
            r.kept_steps = st.kept_steps;
        } else if (!strcmp(phase, "encode")) {
            rc = glow_model_encode(ctx, m, x, NULL, batch, z, NULL);
        } else {
            rc = glow_model_sample(ctx, m, NULL, batch, 0.7, (uint64_t)i + 1, z);
        }
        if (rc != GLOW_OK) {
            fprintf(stderr, "glow bench: %s\n", glow_last_error());
            return r;
        }
        if (i >= 0) times[i] = now_seconds() - t0;
    }
    double t = median(times, n);
    double mult = !strcmp(phase, "train") ? 3 : 1;
    r.img_per_s = batch / t;
    r.gflops = mult * forward_flops(cfg) * batch / t / 1e9;
    r.peak_rss_mib = peak_rss_mib();
    r.ok = 1;
    glow_optimizer_free(&opt);
    glow_model_free(m);
    glow_ctx_free(ctx);
    free(x), free(z), free(px);
    return r;
}

/* Run fn(ctx) in a child process and read back its `size`-byte result: a phase's peak RSS is
 * then its own. The parent never starts OpenMP threads, which a forked child cannot use. */
static int in_child(void (*fn)(void *ctx, void *out), void *ctx, void *out, size_t size) {
    int fd[2];
    if (pipe(fd)) return 0;
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        close(fd[0]);
        char buf[size];
        fn(ctx, buf);
        if (write(fd[1], buf, size) != (ssize_t)size) _exit(1);
        _exit(0);
    }
    close(fd[1]);
    int ok = pid > 0 && read(fd[0], out, size) == (ssize_t)size;
    close(fd[0]);
    if (pid > 0) waitpid(pid, NULL, 0);
    return ok;
}

typedef struct phase_job {
    const glow_config *cfg;
    int batch, repeats;
    size_t memory;
    const char *phase;
    const glow_ctx *settings; /* threads and matmul mode */
} phase_job;

static void phase_in_child(void *ctx, void *out) {
    phase_job *j = ctx;
    result r = run_phase(j->cfg, j->batch, j->phase, j->repeats, j->memory,
                         glow_ctx_threads(j->settings), glow_ctx_matmul(j->settings));
    memcpy(out, &r, sizeof r);
}

static result run_isolated(const glow_config *cfg, int batch, const char *phase, int repeats,
                           size_t memory, const glow_ctx *settings) {
    phase_job j = {cfg, batch, repeats, memory, phase, settings};
    result r = {0};
    if (!in_child(phase_in_child, &j, &r, sizeof r)) r.ok = 0;
    return r;
}

static void peak_in_child(void *ctx, void *out) {
    double g = glow_blas_gflops(ctx, 2048);
    memcpy(out, &g, sizeof g);
}

static void cpu_name(char *buf, size_t size) {
    snprintf(buf, size, "unknown CPU");
    FILE *f = fopen("/proc/cpuinfo", "r");
    char line[512];
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, "model name", 10)) {
            char *p = strchr(line, ':');
            if (p) snprintf(buf, size, "%s", p + 2);
            buf[strcspn(buf, "\n")] = 0;
            break;
        }
    if (f) fclose(f);
}

static const char default_configs[] = "fmnist,cifar-paper,celeba64",
                  config_names[] = "fmnist, cifar-paper, celeba64, face32, face64, face128, face256";

static const bench_config *find_config(const char *name) {
    for (size_t i = 0; i < sizeof configs / sizeof configs[0]; i++)
        if (!strcmp(configs[i].name, name)) return &configs[i];
    return NULL;
}

static glow_config config_of(const bench_config *b) {
    glow_config cfg;
    glow_config_default(&cfg);
    cfg.image_c = b->c, cfg.image_h = b->h, cfg.image_w = b->w;
    cfg.levels = b->levels, cfg.depth = b->depth, cfg.width = b->width;
    return cfg;
}

enum { O_CONFIG = 256, O_PHASES, O_REPEATS, O_STORE, O_ACT_MEMORY, O_MEM_SWEEP, O_JSON };
typedef struct bench_opts {
    const char *configs, *phases;
    int repeats, store, sweep, json;
    double activation_mib;
} bench_opts;

static int own_option(void *ctx, int c, const char *arg) {
    bench_opts *o = ctx;
    switch (c) {
    case O_CONFIG: o->configs = arg; return 0;
    case O_PHASES: o->phases = arg; return 0;
    case O_REPEATS: return parse_int("--repeats", arg, 1, 64, &o->repeats) ? EXIT_USAGE : 0;
    case O_STORE: o->store = 1; return 0;
    case O_ACT_MEMORY:
        return parse_double("--activation-memory", arg, 0, 1 << 30, &o->activation_mib) ? EXIT_USAGE : 0;
    case O_MEM_SWEEP: o->sweep = 1; return 0;
    case O_JSON: o->json = 1; return 0;
    }
    return cli_usage_error("unknown option");
}

int cmd_bench(int argc, char **argv) {
    static const struct option opts[] = {
        OPTION_THREADS, OPTION_MATMUL, OPTION_HELP, {"config", 1, 0, O_CONFIG}, {"phases", 1, 0, O_PHASES},
        {"repeats", 1, 0, O_REPEATS}, {"store-activations", 0, 0, O_STORE},
        {"activation-memory", 1, 0, O_ACT_MEMORY},
        {"mem-sweep", 0, 0, O_MEM_SWEEP}, {"json", 0, 0, O_JSON}, {0, 0, 0, 0}};
    common_opts co = {0};
    bench_opts o = {.configs = default_configs, .phases = "train,encode,sample", .repeats = 5};
    int rc = parse_command_line(argc, argv, opts, help, &co, own_option, &o);
    if (rc) return rc < 0 ? 0 : rc;
    if (optind < argc) return cli_usage_error("unexpected argument '%s'", argv[optind]);
    /* The settings only: the passes run in children, each with a context of its own. */
    glow_ctx *settings;
    if ((rc = open_ctx(co.threads, co.matmul, &settings))) return rc;
    const char *config_list = o.configs, *phases = o.phases;
    int repeats = o.repeats, store = o.store, sweep = o.sweep, json = o.json;
    if (store && o.activation_mib > 0)
        return cli_usage_error("give --store-activations or --activation-memory, not both");
    size_t memory = store ? SIZE_MAX : (size_t)(o.activation_mib * 1048576);
    char cpu[256];
    cpu_name(cpu, sizeof cpu);
    const char *matmul = glow_ctx_matmul(settings) == GLOW_MATMUL_BF16X3 ? "bf16x3" : "fp32";
    fprintf(stderr, "glow bench: %d threads; %s; %s; matrix products %s\n", glow_ctx_threads(settings),
            glow_blas_info(), cpu, matmul);
    double peak = 0;
    in_child(peak_in_child, settings, &peak, sizeof peak);
    fprintf(stderr, "BLAS GEMM 2048x2048x2048: %.1f GFLOP/s (best of 7): the peak below\n", peak);

    if (sweep) {
        glow_config base;
        glow_config_default(&base); /* 28x28x1, L=2, width 128 */
        int batch = 64;
        if (config_list != default_configs) {
            const bench_config *b = find_config(config_list);
            if (!b) return cli_usage_error("--config '%s': give one of %s", config_list, config_names);
            base = config_of(b), batch = b->batch;
        }
        fprintf(stderr, "peak RSS of training steps for %dx%dx%d, L=%d, width %d, batch %d; +step: "
                "above\nthe model's own state (weights, gradients, Adam moments, average)\n",
                base.image_h, base.image_w, base.image_c, base.levels, base.width, batch);
        fprintf(stderr, "%-8s %-6s %12s %12s %10s\n", "mode", "K", "peak MiB", "+step MiB", "img/s");
        for (int mode = 0; mode < 2; mode++)
            for (int k = 4; k <= 64; k *= 2) {
                glow_config cfg = base;
                cfg.depth = k;
                result r = run_isolated(&cfg, batch, "train", 2, mode ? SIZE_MAX : 0, settings);
                const char *name = mode ? "stored" : "rebuilt";
                if (!r.ok) return cli_error("mem-sweep K=%d failed", k);
                if (json)
                    printf("{\"config\":\"mem-sweep\",\"mode\":\"%s\",\"depth\":%d,\"peak_rss_mib\":%.1f,"
                           "\"step_rss_mib\":%.1f,\"img_per_s\":%.2f,\"recomputed\":%d}\n", name, k,
                           r.peak_rss_mib, r.peak_rss_mib - r.base_rss_mib, r.img_per_s, r.recomputed);
                fprintf(stderr, "%-8s %-6d %12.1f %12.1f %10.1f%s\n", name, k, r.peak_rss_mib,
                        r.peak_rss_mib - r.base_rss_mib, r.img_per_s,
                        r.recomputed ? "  (steps redone from kept inputs)" : "");
                fflush(stdout);
            }
        glow_ctx_free(settings);
        return 0;
    }

    fprintf(stderr, "%-12s %-7s %10s %10s %10s %8s %10s\n", "config", "phase", "img/s", "ms/img",
            "GFLOP/s", "of peak", "peak MiB");
    char list[256];
    snprintf(list, sizeof list, "%s", config_list);
    for (char *s1, *name = strtok_r(list, ",", &s1); name; name = strtok_r(NULL, ",", &s1)) {
        const bench_config *b = find_config(name);
        if (!b) return cli_usage_error("--config '%s': expected one of %s", name, config_names);
        glow_config cfg = config_of(b);
        char plist[128];
        snprintf(plist, sizeof plist, "%s", phases);
        for (char *s2, *ph = strtok_r(plist, ",", &s2); ph; ph = strtok_r(NULL, ",", &s2)) {
            if (strcmp(ph, "train") && strcmp(ph, "encode") && strcmp(ph, "sample"))
                return cli_usage_error("--phases '%s': expected train, encode or sample", ph);
            result r = run_isolated(&cfg, b->batch, ph, repeats, memory, settings);
            if (!r.ok) return cli_error("%s %s failed", b->name, ph);
            if (json)
                printf("{\"config\":\"%s\",\"phase\":\"%s\",\"batch\":%d,\"img_per_s\":%.3f,"
                       "\"ms_per_image\":%.2f,\"gflops\":%.2f,\"blas_peak_gflops\":%.1f,\"peak_rss_mib\":%.1f,\"threads\":%d,"
                       "\"store_activations\":%d,\"activation_memory_mib\":%g,\"kept_steps\":%d,"
                       "\"recomputed\":%d,\"matmul\":\"%s\"}\n", b->name, ph, b->batch, r.img_per_s,
                       1000 / r.img_per_s, r.gflops, peak, r.peak_rss_mib, glow_ctx_threads(settings), store, o.activation_mib,
                       r.kept_steps, r.recomputed, matmul);
            fprintf(stderr, "%-12s %-7s %10.2f %10.1f %10.1f %7.0f%% %10.0f", b->name, ph,
                    r.img_per_s, 1000 / r.img_per_s, r.gflops, 100 * r.gflops / peak, r.peak_rss_mib);
            if (!strcmp(ph, "train") && memory)
                fprintf(stderr, "  (activations of %d of %d flow steps kept)", r.kept_steps,
                        cfg.levels * cfg.depth);
            fputc('\n', stderr);
            fflush(stdout);
        }
    }
    glow_ctx_free(settings);
    return 0;
}
