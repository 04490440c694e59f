/* train.c: `glow train`: maximise the exact log-likelihood on a data set, with
 * data-dependent init, Adam/Adamax, warm-up, a Polyak average, periodic test bits/dim and
 * sample grids, a live progress line, JSONL metrics, a training-curve plot, and atomic
 * checkpoints that let a run continue exactly where it stopped. The library's trainer
 * (glow.h) does the training; this file turns options into its options and its events
 * into the progress line, metrics.jsonl, curve.png and samples/. */
#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "cli.h"

static volatile sig_atomic_t stop_requested;
static void on_signal(int sig) { stop_requested = sig; }

static const char *help =
    "Usage: glow train [OPTIONS]\n"
    "Train a multi-scale Glow by maximum likelihood. With no options: the default model on\n"
    "Fashion-MNIST (" DEFAULT_DATA ") at 28x28x1.\n\n"
    "Data:\n"
    "  --data PATH           IDX file or folder, CIFAR-10 folder, or image folder\n"
    "  --image-size N        resize (centre crop + area/linear) to NxN (default: native)\n"
    "Model (taken from the checkpoint with --resume):\n"
    "  --levels L            scales (default 2)\n"
    "  --depth K             flow steps per scale (default 8)\n"
    "  --width W             coupling network channels (default 128)\n"
    "  --coupling C          additive | affine (default affine)\n"
    "  --affine-scale S      tanh (log s = tanh(u), bounded: the default) | sigmoid\n"
    "                        (s = sigmoid(u + 2), the paper's)\n"
    "  --prior-logs P        tanh (log std = 3 tanh(v/3), bounded: the default) | free (the\n"
    "                        paper's) for the split and top priors\n"
    "  --permutation P       reverse | shuffle | invconv | invconv-lu (default invconv-lu)\n"
    "  --no-learntop         standard normal top prior instead of a learned one\n"
    "  --ycond               class-conditional top prior (needs labels)\n"
    "  --weight-y X          weight of the class loss on the top latent (default 0)\n"
    "  --n-bits N            bits per colour, 1..8 (default 8)\n"
    "Optimisation:\n"
    "  --batch B             batch size (default 64)\n"
    "  --init-batch B        images for the data-dependent init (default 256)\n"
    "  --steps N             total optimizer steps (default 10000)\n"
    "  --epochs E            total epochs instead of --steps\n"
    "  --minutes M           stop (with a checkpoint) after M minutes of training\n"
    "  --lr X                peak learning rate (default 1e-3)\n"
    "  --warmup N            linear warm-up steps (default 200)\n"
    "  --optimizer O         adam | adamax (default adam)\n"
    "  --polyak X            decay of the weight average used by eval and sample (default 0.999)\n"
    "  --grad-clip X         clip the global gradient norm (default 100; 0: off)\n"
    "  --seed S              weights, data order and noise (default 1)\n"
    "  --store-activations   keep activations for the backward pass: faster, memory grows\n"
    "                        with depth (default: rebuild them, memory flat in depth)\n"
    "  --activation-memory MiB  keep the activations of as many flow steps as fit in MiB\n"
    "                        and rebuild the others: faster, with memory bounded by MiB\n"
    "  --max-skips N         stop after N non-finite steps in a row (default 20)\n"
    "Output:\n"
    "  --out DIR             metrics.jsonl, curve.png, samples/ (default runs/train)\n"
    "  --checkpoint FILE     (default DIR/checkpoint.glow); never overwritten without --resume;\n"
    "                        FILE.best keeps the model with the best test bits/dim so far\n"
    "  --resume              continue the run in --checkpoint exactly\n"
    "  --save-every N        checkpoint every N steps (default 500)\n"
    "  --save-minutes M      and every M minutes (default 10)\n"
    "  --eval-every N        test bits/dim every N steps (default 1000; 0: only at the end)\n"
    "  --eval-n N            test images for the periodic evaluation (default 2000)\n"
    "  --sample-every N      sample grid at T=0.7 every N steps (default 1000)\n"
    "  --log-every N         progress and metrics every N steps (default 10)\n"
    "  --threads T           threads (default: all cores)\n"
    "  --matmul fp32|bf16x3  the networks' matrix products in float, or on AMX (bf16x3: about\n"
    "                        4x float's rounding error, 2x faster; docs/MODEL.md)\n";

enum {
    O_DATA = 256, O_IMAGE_SIZE, O_LEVELS, O_DEPTH, O_WIDTH, O_COUPLING, O_SCALE, O_PRIOR, O_PERMUTATION,
    O_NO_LEARNTOP, O_YCOND, O_WEIGHT_Y, O_N_BITS, O_BATCH, O_INIT_BATCH, O_STEPS, O_EPOCHS,
    O_MINUTES, O_LR, O_WARMUP, O_OPTIMIZER, O_POLYAK, O_GRAD_CLIP, O_SEED, O_STORE, O_ACT_MEMORY,
    O_MAX_SKIPS, O_OUT, O_CHECKPOINT, O_RESUME, O_SAVE_EVERY, O_SAVE_MINUTES, O_EVAL_EVERY, O_EVAL_N,
    O_SAMPLE_EVERY, O_LOG_EVERY, O_THREADS, O_MATMUL, O_HELP, O_COUNT
};

static const struct option long_options[] = {
    {"data", 1, 0, O_DATA}, {"image-size", 1, 0, O_IMAGE_SIZE}, {"levels", 1, 0, O_LEVELS},
    {"depth", 1, 0, O_DEPTH}, {"width", 1, 0, O_WIDTH}, {"coupling", 1, 0, O_COUPLING},
    {"affine-scale", 1, 0, O_SCALE}, {"prior-logs", 1, 0, O_PRIOR}, {"permutation", 1, 0, O_PERMUTATION},
    {"no-learntop", 0, 0, O_NO_LEARNTOP},
    {"ycond", 0, 0, O_YCOND}, {"weight-y", 1, 0, O_WEIGHT_Y}, {"n-bits", 1, 0, O_N_BITS},
    {"batch", 1, 0, O_BATCH}, {"init-batch", 1, 0, O_INIT_BATCH}, {"steps", 1, 0, O_STEPS},
    {"epochs", 1, 0, O_EPOCHS}, {"minutes", 1, 0, O_MINUTES}, {"lr", 1, 0, O_LR},
    {"warmup", 1, 0, O_WARMUP}, {"optimizer", 1, 0, O_OPTIMIZER}, {"polyak", 1, 0, O_POLYAK},
    {"grad-clip", 1, 0, O_GRAD_CLIP}, {"seed", 1, 0, O_SEED},
    {"store-activations", 0, 0, O_STORE}, {"activation-memory", 1, 0, O_ACT_MEMORY},
    {"max-skips", 1, 0, O_MAX_SKIPS},
    {"out", 1, 0, O_OUT}, {"checkpoint", 1, 0, O_CHECKPOINT}, {"resume", 0, 0, O_RESUME},
    {"save-every", 1, 0, O_SAVE_EVERY}, {"save-minutes", 1, 0, O_SAVE_MINUTES},
    {"eval-every", 1, 0, O_EVAL_EVERY}, {"eval-n", 1, 0, O_EVAL_N},
    {"sample-every", 1, 0, O_SAMPLE_EVERY}, {"log-every", 1, 0, O_LOG_EVERY},
    {"threads", 1, 0, O_THREADS}, {"matmul", 1, 0, O_MATMUL}, {"help", 0, 0, O_HELP}, {0, 0, 0, 0}};

typedef struct train_opts {
    const char *data, *out, *matmul;
    char checkpoint[4096];
    int image_size;
    glow_config cfg;
    glow_optim_config oc;
    int batch, init_batch, resume, store, max_skips, threads;
    long long steps;
    double epochs, minutes, save_minutes, activation_mib;
    int save_every, eval_every, eval_n, sample_every, log_every;
    char given[O_COUNT]; /* which options the user set */
} train_opts;

static int parse_options(train_opts *o, int argc, char **argv) {
    memset(o, 0, sizeof *o);
    glow_config_default(&o->cfg);
    glow_optim_config_default(&o->oc);
    o->oc.warmup = 200;
    /* Healthy steps here have gradient norms of 50-160; a one-hour run without a clip
     * diverged after a step with norm 8e8 (affine scales collapsing). */
    o->oc.grad_clip = 100;
    o->data = DEFAULT_DATA;
    o->out = "runs/train";
    o->batch = 64, o->init_batch = 256, o->steps = 10000, o->max_skips = 20;
    o->save_every = 500, o->save_minutes = 10, o->eval_every = 1000, o->eval_n = 2000;
    o->sample_every = 1000, o->log_every = 10;
    int c, v;
    long long ll;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":h", long_options, NULL)) != -1) {
        if (c == '?') return cli_usage_error("unknown option '%s'", argv[optind - 1]);
        if (c == ':') return cli_usage_error("option '%s' needs a value", argv[optind - 1]);
        if (c == 'h') c = O_HELP;
        if (c >= 0 && c < O_COUNT) o->given[c] = 1;
        switch (c) {
        case O_HELP: fputs(help, stdout); exit(0);
        case O_DATA: o->data = optarg; break;
        case O_IMAGE_SIZE: if (parse_int("--image-size", optarg, 1, 4096, &o->image_size)) return 2; break;
        case O_LEVELS: if (parse_int("--levels", optarg, 1, 16, &o->cfg.levels)) return 2; break;
        case O_DEPTH: if (parse_int("--depth", optarg, 1, 1024, &o->cfg.depth)) return 2; break;
        case O_WIDTH: if (parse_int("--width", optarg, 1, 8192, &o->cfg.width)) return 2; break;
        case O_COUPLING:
            if ((v = glow_coupling_parse(optarg)) < 0)
                return cli_usage_error("--coupling '%s': expected additive or affine", optarg);
            o->cfg.coupling = v;
            break;
        case O_SCALE:
            if ((v = glow_affine_scale_parse(optarg)) < 0)
                return cli_usage_error("--affine-scale '%s': expected tanh or sigmoid", optarg);
            o->cfg.affine_scale = v;
            break;
        case O_PRIOR:
            if ((v = glow_prior_logs_parse(optarg)) < 0)
                return cli_usage_error("--prior-logs '%s': expected tanh or free", optarg);
            o->cfg.prior_logs = v;
            break;
        case O_PERMUTATION:
            if ((v = glow_permutation_parse(optarg)) < 0)
                return cli_usage_error("--permutation '%s': expected reverse, shuffle, invconv or "
                                       "invconv-lu", optarg);
            o->cfg.permutation = v;
            break;
        case O_NO_LEARNTOP: o->cfg.learntop = 0; break;
        case O_YCOND: o->cfg.ycond = 1; break;
        case O_WEIGHT_Y: if (parse_double("--weight-y", optarg, 0, 1e6, &o->cfg.weight_y)) return 2; break;
        case O_N_BITS: if (parse_int("--n-bits", optarg, 1, 8, &o->cfg.n_bits)) return 2; break;
        case O_BATCH: if (parse_int("--batch", optarg, 1, 1 << 20, &o->batch)) return 2; break;
        case O_INIT_BATCH: if (parse_int("--init-batch", optarg, 1, 1 << 20, &o->init_batch)) return 2; break;
        case O_STEPS: if (parse_i64("--steps", optarg, 0, 1LL << 40, &o->steps)) return 2; break;
        case O_EPOCHS: if (parse_double("--epochs", optarg, 0, 1e9, &o->epochs)) return 2; break;
        case O_MINUTES: if (parse_double("--minutes", optarg, 0, 1e9, &o->minutes)) return 2; break;
        case O_LR: if (parse_double("--lr", optarg, 1e-12, 1e6, &o->oc.lr)) return 2; break;
        case O_WARMUP: if (parse_int("--warmup", optarg, 0, 1 << 30, &o->oc.warmup)) return 2; break;
        case O_OPTIMIZER:
            if (!strcmp(optarg, "adam")) o->oc.kind = GLOW_ADAM;
            else if (!strcmp(optarg, "adamax")) o->oc.kind = GLOW_ADAMAX;
            else return cli_usage_error("--optimizer '%s': expected adam or adamax", optarg);
            break;
        case O_POLYAK: if (parse_double("--polyak", optarg, 0, 0.999999999, &o->oc.polyak)) return 2; break;
        case O_GRAD_CLIP: if (parse_double("--grad-clip", optarg, 0, 1e12, &o->oc.grad_clip)) return 2; break;
        case O_SEED:
            if (parse_i64("--seed", optarg, 0, 1LL << 62, &ll)) return 2;
            o->cfg.seed = (uint64_t)ll;
            break;
        case O_STORE: o->store = 1; break;
        case O_ACT_MEMORY:
            if (parse_double("--activation-memory", optarg, 0, 1 << 30, &o->activation_mib)) return 2;
            break;
        case O_MAX_SKIPS: if (parse_int("--max-skips", optarg, 1, 1 << 30, &o->max_skips)) return 2; break;
        case O_OUT: o->out = optarg; break;
        case O_CHECKPOINT:
            if (strlen(optarg) >= sizeof o->checkpoint) return cli_usage_error("--checkpoint: path too long");
            strcpy(o->checkpoint, optarg);
            break;
        case O_RESUME: o->resume = 1; break;
        case O_SAVE_EVERY: if (parse_int("--save-every", optarg, 1, 1 << 30, &o->save_every)) return 2; break;
        case O_SAVE_MINUTES: if (parse_double("--save-minutes", optarg, 0.001, 1e9, &o->save_minutes)) return 2; break;
        case O_EVAL_EVERY: if (parse_int("--eval-every", optarg, 0, 1 << 30, &o->eval_every)) return 2; break;
        case O_EVAL_N: if (parse_int("--eval-n", optarg, 1, 1 << 30, &o->eval_n)) return 2; break;
        case O_SAMPLE_EVERY: if (parse_int("--sample-every", optarg, 0, 1 << 30, &o->sample_every)) return 2; break;
        case O_LOG_EVERY: if (parse_int("--log-every", optarg, 1, 1 << 30, &o->log_every)) return 2; break;
        case O_THREADS: if (parse_int("--threads", optarg, 1, 4096, &o->threads)) return 2; break;
        case O_MATMUL: if (check_matmul_option(optarg)) return 2; o->matmul = optarg; break;
        }
    }
    if (optind < argc) return cli_usage_error("unexpected argument '%s'", argv[optind]);
    if (o->given[O_STEPS] && o->given[O_EPOCHS])
        return cli_usage_error("give --steps or --epochs, not both");
    if (o->given[O_STORE] && o->given[O_ACT_MEMORY])
        return cli_usage_error("give --store-activations or --activation-memory, not both");
    if (!o->checkpoint[0]) snprintf(o->checkpoint, sizeof o->checkpoint, "%s/checkpoint.glow", o->out);
    return 0;
}

/* With --resume, model options the user gives must agree with the checkpoint's. */
static int check_resume_options(const train_opts *o, const glow_config *ck) {
    struct { int opt; const char *name; long given, stored; } ints[] = {
        {O_LEVELS, "--levels", o->cfg.levels, ck->levels},
        {O_DEPTH, "--depth", o->cfg.depth, ck->depth},
        {O_WIDTH, "--width", o->cfg.width, ck->width},
        {O_COUPLING, "--coupling", o->cfg.coupling, ck->coupling},
        {O_SCALE, "--affine-scale", o->cfg.affine_scale, ck->affine_scale},
        {O_PRIOR, "--prior-logs", o->cfg.prior_logs, ck->prior_logs},
        {O_PERMUTATION, "--permutation", o->cfg.permutation, ck->permutation},
        {O_N_BITS, "--n-bits", o->cfg.n_bits, ck->n_bits},
        {O_NO_LEARNTOP, "--no-learntop", o->cfg.learntop, ck->learntop},
        {O_YCOND, "--ycond", o->cfg.ycond, ck->ycond},
    };
    for (size_t i = 0; i < sizeof ints / sizeof ints[0]; i++)
        if (o->given[ints[i].opt] && ints[i].given != ints[i].stored)
            return cli_error("%s holds a model with a different %s (%ld, not %ld): drop the "
                             "option or choose another --checkpoint", o->checkpoint,
                             ints[i].name, ints[i].stored, ints[i].given);
    if (o->given[O_WEIGHT_Y] && o->cfg.weight_y != ck->weight_y)
        return cli_error("%s holds a model with --weight-y %g, not %g", o->checkpoint,
                         ck->weight_y, o->cfg.weight_y);
    return 0;
}

/* ---- metrics.jsonl -------------------------------------------------------------------- */

/* JSON numbers: a NaN or an infinity is written as null. */
static void put_number(FILE *f, const char *key, double v) {
    if (isfinite(v)) fprintf(f, "\"%s\":%.6g", key, v);
    else fprintf(f, "\"%s\":null", key);
}

static void write_levels(FILE *f, const glow_level_stats *iv, int levels) {
    fputs(",\"levels\":[", f);
    for (int i = 0; i < levels; i++) {
        const glow_level_stats *l = &iv[i];
        fputs(i ? ",{" : "{", f);
        put_number(f, "min_coupling_logs", l->min_coupling_logs), fputc(',', f);
        put_number(f, "max_coupling_shift", l->max_coupling_shift), fputc(',', f);
        put_number(f, "min_actnorm_logs", l->min_actnorm_logs), fputc(',', f);
        put_number(f, "min_invconv_logs", l->min_invconv_logs), fputc(',', f);
        put_number(f, "min_prior_logs", l->min_prior_logs), fputc(',', f);
        put_number(f, "max_abs_z", l->max_abs_z), fputc(',', f);
        put_number(f, "max_z_score", l->max_z_score), fputc(',', f);
        put_number(f, "logdet_bpd", l->logdet_bpd), fputc(',', f);
        put_number(f, "prior_bpd", l->prior_bpd), fputc('}', f);
    }
    fputc(']', f);
}

/* ---- the training curve, kept in memory and redrawn as a PNG ------------------------- */

static void curve_write(const curve *c, const char *path) {
    if (c->n < 2) return;
    const double *ys[2] = {c->train, c->test};
    const char *labels[2] = {"train bits/dim", "test bits/dim"};
    if (glow_plot_write(path, "glow train", c->step, ys, labels, 2, c->n, 800, 480) != GLOW_OK)
        fprintf(stderr, "\nglow train: warning: %s\n", glow_last_error());
}

/* A bits/dim figure for the progress lines; "-" before the first evaluation. */
static void format_bpd(char *buf, size_t size, double bpd) {
    if (isnan(bpd)) snprintf(buf, size, "-");
    else snprintf(buf, size, "%.3f", bpd);
}

/* ---- the trainer's events -------------------------------------------------------------- */

typedef struct run {
    const train_opts *o;
    const glow_config *cfg;
    FILE *metrics;
    curve cv;
    char curve_path[4200], samples_dir[4200];
    int tty, told_kept;
    double last_test;
    char failure[600]; /* an output that could not be written: the run stops */
} run;

static void on_log(run *r, const glow_train_event *e) {
    const train_opts *o = r->o;
    if (!r->told_kept && o->activation_mib > 0)
        fprintf(stderr, "activations of %d of the %d flow steps kept in %g MiB; the others "
                "are rebuilt\n", e->kept_steps, r->cfg->levels * r->cfg->depth, o->activation_mib);
    r->told_kept = 1;
    double eta = (e->total - e->step) * e->step_seconds;
    if (o->minutes > 0) eta = fmin(eta, o->minutes * 60 - e->seconds);
    char eta_s[32], test_s[32], redone_s[32] = "";
    format_duration(eta_s, sizeof eta_s, eta);
    format_bpd(test_s, sizeof test_s, r->last_test);
    /* Steps redone for drift (glow.h) count in the line; the details go to metrics. */
    if (e->redone_total) snprintf(redone_s, sizeof redone_s, "  redone %lld", (long long)e->redone_total);
    fprintf(stderr, "%sstep %lld/%lld  epoch %.2f  %.1f img/s  train %.3f bpd  test %s  "
            "lr %.2g%s  ETA %s%s", r->tty ? "\r" : "", (long long)e->step, (long long)e->total,
            e->epoch, e->img_per_s, e->train_bpd, test_s, e->lr, redone_s, eta_s,
            r->tty ? "   " : "\n");
    fprintf(r->metrics, "{\"step\":%lld,\"epoch\":%.4f,\"train_bpd\":%.5f,"
            "\"max_step_bpd\":%.5g,\"lr\":%.6g,\"img_per_s\":%.2f,\"grad_norm\":%.4g,"
            "\"skipped\":%lld,\"redone\":%d,\"time_s\":%.1f,", (long long)e->step, e->epoch,
            e->train_bpd, e->max_step_bpd, e->lr, e->img_per_s, e->grad_norm,
            (long long)e->skipped, e->redone, e->seconds);
    if (cli_size() > 1) fprintf(r->metrics, "\"allreduce_share\":%.4f,", e->comm_share);
    put_number(r->metrics, "max_rebuild_error", e->max_rebuild_error);
    write_levels(r->metrics, e->level, r->cfg->levels);
    fputs("}\n", r->metrics);
    fflush(r->metrics);
    curve_add(&r->cv, e->step, e->train_bpd, NAN); /* out of memory: the point is not drawn */
}

static void on_event(const glow_train_event *e, void *user) {
    run *r = user;
    if (cli_rank() != 0) return; /* rank 0 reports for all */
    switch (e->kind) {
    case GLOW_EVENT_LOG: on_log(r, e); break;
    case GLOW_EVENT_SKIP:
        fprintf(stderr, "%sglow train: step %lld skipped: %s (%lld skipped so far)\n",
                r->tty ? "\n" : "", (long long)e->step + 1, e->message, (long long)e->skipped);
        break;
    case GLOW_EVENT_EVAL:
        r->last_test = e->test_bpd;
        fprintf(r->metrics, "{\"step\":%lld,\"test_bpd\":%.5f,\"test_n\":%d}\n",
                (long long)e->step, e->test_bpd, e->test_n);
        fflush(r->metrics);
        curve_add(&r->cv, e->step, NAN, e->test_bpd);
        curve_write(&r->cv, r->curve_path);
        break;
    case GLOW_EVENT_SAMPLE: {
        char path[4400];
        snprintf(path, sizeof path, "%s/step%07lld.png", r->samples_dir, (long long)e->step);
        if (glow_grid_write(path, e->samples, e->n_samples, r->cfg->image_h, r->cfg->image_w,
                            r->cfg->image_c, 8, 2) != GLOW_OK)
            snprintf(r->failure, sizeof r->failure, "%s", glow_last_error());
        break;
    }
    case GLOW_EVENT_SAVE: break;
    }
}

/* The trainer for a fresh run or a resumed one, checked against the options. */
static glow_trainer *start(const train_opts *o, const glow_dataset *train,
                           const glow_dataset *test, glow_train_options *to) {
    glow_trainer *t;
    if (o->resume) {
        to->batch = o->given[O_BATCH] ? o->batch : 0;
        if (!(t = glow_trainer_resume(o->checkpoint, train, test, to))) {
            cli_error("%s", glow_last_error());
            return NULL;
        }
        glow_optimizer *opt = glow_trainer_optimizer(t);
        const glow_config *ck = glow_model_config(glow_trainer_model(t));
        const char *why = NULL;
        if (o->given[O_OPTIMIZER] && o->oc.kind != opt->cfg.kind) why = "another --optimizer";
        if (why || (o->given[O_SEED] && o->cfg.seed != ck->seed) || check_resume_options(o, ck)) {
            if (why) cli_error("%s was trained with %s", o->checkpoint, why);
            else if (o->given[O_SEED] && o->cfg.seed != ck->seed)
                cli_error("%s was trained with --seed %llu", o->checkpoint, (unsigned long long)ck->seed);
            glow_trainer_free(t);
            return NULL;
        }
        if (o->given[O_LR]) opt->cfg.lr = o->oc.lr;
        if (o->given[O_WARMUP]) opt->cfg.warmup = o->oc.warmup;
        if (o->given[O_GRAD_CLIP]) opt->cfg.grad_clip = o->oc.grad_clip;
        if (o->given[O_POLYAK]) opt->cfg.polyak = o->oc.polyak;
        return t;
    }
    if ((o->cfg.ycond || o->cfg.weight_y > 0) && !train->labels) {
        cli_error("%s: --ycond and --weight-y need labels", o->data);
        return NULL;
    }
    if (o->batch > train->n) {
        cli_error("%s: %d images, fewer than one batch of %d", o->data, train->n, o->batch);
        return NULL;
    }
    if (!(t = glow_trainer_create(&o->cfg, train, test, to))) cli_error("%s", glow_last_error());
    return t;
}

int cmd_train(int argc, char **argv) {
    train_opts o;
    int rc = parse_options(&o, argc, argv);
    if (rc) return rc;
    if (o.matmul && !strcmp(o.matmul, "bf16x3")) { /* refused early, with the CLI's words */
        glow_ctx *probe;
        if ((rc = open_ctx(o.threads, o.matmul, &probe))) return rc;
        glow_ctx_free(probe);
    }
    /* Every process loads the data (each takes its share of every batch); a process that
     * cannot stops them all. */
    glow_dataset train = {0}, test = {0};
    rc = load_data(&train, o.data, "train", o.image_size);
    /* An image folder or a single IDX file has one split: evaluate on it. A folder of IDX or
     * CIFAR-10 files has a test split, which must then load. */
    struct stat sb;
    int one_split = train.names != NULL || (stat(o.data, &sb) == 0 && S_ISREG(sb.st_mode));
    if (!rc && !one_split) rc = load_data(&test, o.data, "test", o.image_size);
    if (!rc && cli_rank() == 0 && (make_dirs(o.out, 1) || make_dirs(o.checkpoint, 0))) rc = EXIT_USER;

    run r = {.o = &o, .tty = isatty(2), .last_test = NAN};
    snprintf(r.curve_path, sizeof r.curve_path, "%s/curve.png", o.out);
    snprintf(r.samples_dir, sizeof r.samples_dir, "%s/samples", o.out);
    char metrics_path[4200];
    snprintf(metrics_path, sizeof metrics_path, "%s/metrics.jsonl", o.out);
    if (!rc && cli_rank() == 0 && make_dirs(r.samples_dir, 1)) rc = EXIT_USER;

    glow_train_options to;
    glow_train_options_default(&to);
    to.batch = o.batch, to.init_batch = o.init_batch, to.optim = o.oc, to.max_skips = o.max_skips;
    to.steps = o.steps, to.log_every = o.log_every, to.eval_every = o.eval_every;
    to.eval_n = o.eval_n, to.sample_every = o.sample_every, to.checkpoint = o.checkpoint;
    to.save_every = o.save_every, to.save_seconds = o.save_minutes * 60;
    to.threads = cli_threads(o.threads), to.comm = cli_comm();
    to.matmul = o.matmul && !strcmp(o.matmul, "bf16x3") ? GLOW_MATMUL_BF16X3 : GLOW_MATMUL_FP32;
    to.activation_memory = o.store ? SIZE_MAX : (size_t)(o.activation_mib * 1048576);
    to.callback = on_event, to.user = &r;
    if (!rc && cli_rank() == 0 && !o.resume && access(o.checkpoint, F_OK) == 0)
        rc = cli_error("%s exists: continue it with --resume, or choose another --checkpoint "
                       "(a checkpoint is never overwritten)", o.checkpoint);
    if ((rc = cli_agree(rc))) return rc;
    if (!o.resume && cli_rank() == 0) remove(metrics_path); /* a new run's */
    glow_trainer *t = start(&o, &train, one_split ? NULL : &test, &to);
    if (!t) return EXIT_USER;
    const glow_config *cfg = r.cfg = glow_model_config(glow_trainer_model(t));
    const glow_train_state *st = glow_trainer_state(t);
    if (o.given[O_EPOCHS]) /* the last partial batch of an epoch is dropped */
        glow_trainer_set_steps(t, (long long)ceil(o.epochs * (train.n / st->batch)));
    if (check_data_fits(&train, cfg, o.data) || (!one_split && check_data_fits(&test, cfg, o.data)))
        return EXIT_USER;
    if (cli_rank() == 0 && !(r.metrics = fopen(metrics_path, "a")))
        rc = cli_error("%s: cannot open for writing", metrics_path);
    if ((rc = cli_agree(rc))) return rc;
    if (o.resume && cli_rank() == 0) curve_load(&r.cv, metrics_path, st->step, NULL);

    char procs[96] = "", spread[128] = "";
    if (cli_size() > 1) {
        snprintf(procs, sizeof procs, " (%d per process)", st->batch / cli_size());
        snprintf(spread, sizeof spread, " each; %s", cli_mpi_info());
    }
    if (cli_rank() == 0) fprintf(stderr, "glow train: %s, %d images %dx%dx%d; model L=%d K=%d width %d %s%s%s %s, "
                    "%s prior log std, %zu parameters; batch %d%s, %d threads%s; %s\n",
            o.data, train.n, train.h, train.w, train.c, cfg->levels, cfg->depth, cfg->width,
            glow_coupling_name(cfg->coupling), cfg->coupling == GLOW_AFFINE ? " " : "",
            cfg->coupling == GLOW_AFFINE ? glow_affine_scale_name(cfg->affine_scale) : "",
            glow_permutation_name(cfg->permutation), glow_prior_logs_name(cfg->prior_logs),
            glow_model_n_trainable(glow_trainer_model(t)), st->batch, procs,
            glow_ctx_threads(glow_trainer_ctx(t)), spread, o.resume ? "resuming" : "fresh start");
    if (o.resume && cli_rank() == 0)
        fprintf(stderr, "glow train: resuming %s at step %lld (epoch %lld)\n", o.checkpoint,
                (long long)st->step, (long long)st->epoch);

    struct sigaction sa = {0};
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGUSR1, &sa, NULL); /* what mpirun passes on to every process */
    double t_start = now_seconds();
    int status = 0;
    const char *stop_reason = "done";
    for (;;) {
        /* Every process stops at the same step: a signal to any, rank 0's clock, an
         * output rank 0 could not write. */
        enum { GO, SIGNALLED, OUT_OF_TIME, OUTPUT_FAILED };
        int stop = stop_requested ? SIGNALLED : GO;
        if (cli_rank() == 0 && o.minutes > 0 && now_seconds() - t_start > o.minutes * 60)
            stop = OUT_OF_TIME;
        if (r.failure[0]) stop = OUTPUT_FAILED;
        stop = (int)cli_max(stop);
        if (stop == SIGNALLED) { stop_reason = "interrupted"; break; }
        if (stop == OUT_OF_TIME) { stop_reason = "time budget"; break; }
        if (stop == OUTPUT_FAILED) {
            status = r.failure[0] ? cli_error("%s", r.failure) : EXIT_USER;
            stop_reason = "stopped by an error";
            break;
        }
        rc = glow_trainer_step(t);
        if (rc == GLOW_DONE) break;
        if (rc == GLOW_OK) continue;
        if (rc != GLOW_EDIVERGED) {
            status = cli_error("%s", glow_trainer_error(t));
            stop_reason = "stopped by an error";
        } else {
            status = cli_error("stopping: %s; the last good checkpoint %s is intact (try a "
                               "lower --lr or --grad-clip)", glow_trainer_error(t), o.checkpoint);
            stop_reason = NULL;
        }
        break;
    }
    if (r.tty && cli_rank() == 0) fputc('\n', stderr);
    if (stop_reason) {
        /* After an error (a save that failed, most often) the last checkpoint stands. */
        if (status == 0 && glow_trainer_save(t, NULL) != GLOW_OK)
            status = cli_error("%s", glow_trainer_error(t));
        curve_write(&r.cv, r.curve_path);
        char test_s[32];
        format_bpd(test_s, sizeof test_s, r.last_test);
        if (cli_rank() == 0) fprintf(stderr, "glow train: %s at step %lld; checkpoint %s%s; test %s bits/dim; peak "
                "memory %.0f MiB; %lld steps skipped\n", stop_reason, (long long)st->step,
                o.checkpoint, status ? " (as of its last save)" : "", test_s, peak_rss_mib(),
                (long long)st->skipped);
    }
    if (r.metrics) fclose(r.metrics);
    glow_trainer_free(t);
    if (!one_split) glow_dataset_free(&test);
    glow_dataset_free(&train);
    curve_free(&r.cv);
    return status;
}
