/* test_cli.c: the `glow` command end to end, on real Fashion-MNIST at tiny model sizes:
 * exact resumption, checkpoints that are never overwritten or half-written, interruption,
 * non-finite steps, bad input with clear one-line errors and the documented exit codes.
 * Runs ./glow (built by make) in the float build only. */
#include <stdlib.h>
#include <string.h>
#include "test.h"

#define TINY "--depth 1 --width 8 --batch 16 --init-batch 32 --eval-n 64 --sample-every 0 " \
             "--log-every 2 --threads 2"


static const char *tmp_path(const char *name) {
    static char buf[8][512];
    static int k;
    k = (k + 1) % 8;
    snprintf(buf[k], sizeof buf[k], "%s/%s", test_tmpdir(), name);
    return buf[k];
}

/* Everything a checkpoint holds that training changes, compared exactly. */
static int same_training_state(const char *a, const char *b, char *why, size_t size) {
    glow_optimizer oa, ob;
    glow_train_state sa, sb;
    glow_model *ma = glow_checkpoint_load(a, 0, &oa, &sa), *mb = glow_checkpoint_load(b, 0, &ob, &sb);
    if (!ma || !mb) return snprintf(why, size, "load: %s", glow_last_error()), 0;
    size_t n = glow_model_n_params(ma);
    int same = n == glow_model_n_params(mb) && sa.step == sb.step && sa.epoch == sb.epoch &&
               sa.batch_in_epoch == sb.batch_in_epoch && oa.step == ob.step &&
               !memcmp(glow_model_params(ma), glow_model_params(mb), n * sizeof(glow_real)) &&
               !memcmp(oa.m, ob.m, n * sizeof(glow_real)) && !memcmp(oa.v, ob.v, n * sizeof(glow_real)) &&
               !memcmp(oa.avg, ob.avg, n * sizeof(glow_real));
    if (!same)
        snprintf(why, size, "steps %lld/%lld, weights differ by %g", (long long)sa.step,
                 (long long)sb.step, max_abs_diff(glow_model_params(ma), glow_model_params(mb), n));
    glow_optimizer_free(&oa), glow_optimizer_free(&ob);
    glow_model_free(ma), glow_model_free(mb);
    return same;
}

TEST(cli_train_resume_is_exact) {
    if (IS_DOUBLE) return;
    const char *a = tmp_path("a.glow"), *b = tmp_path("b.glow");
    REQUIRE(test_run("./glow train " TINY " --steps 8 --out %s/ra --checkpoint %s", test_tmpdir(), a) == 0,
            "train: %s", test_output());
    REQUIRE(test_run("./glow train " TINY " --steps 3 --out %s/rb --checkpoint %s", test_tmpdir(), b) == 0,
            "train: %s", test_output());
    REQUIRE(test_run("./glow train " TINY " --steps 8 --out %s/rb --checkpoint %s --resume", test_tmpdir(), b) == 0,
            "resume: %s", test_output());
    CHECK(strstr(test_output(), "resuming") != NULL, "no resume message: %s", test_output());
    char why[256] = "";
    CHECK(same_training_state(a, b, why, sizeof why), "resumed run differs: %s", why);
    /* Resuming with another model shape is refused, naming the option. */
    CHECK(test_run("./glow train " TINY " --depth 2 --steps 9 --out %s/rb --checkpoint %s --resume", test_tmpdir(), b) == 1 &&
          strstr(test_output(), "--depth"), "shape change on resume: %s", test_output());
    /* The best model so far is kept beside the checkpoint, and loads. */
    char best[600];
    snprintf(best, sizeof best, "%s.best", a);
    glow_model *bm = glow_checkpoint_load(best, 1, NULL, NULL);
    CHECK(bm != NULL, "best checkpoint: %s", glow_last_error());
    glow_model_free(bm);
    /* The metrics and the curve are there. */
    CHECK(test_run("test -s %s/ra/metrics.jsonl && test -s %s/ra/curve.png", test_tmpdir(), test_tmpdir()) == 0,
          "metrics or curve missing");
}

/* --affine-scale and --prior-logs pick the coupling's scale and the priors' log std, the
 * checkpoint keeps them (a resume with another is refused), the metrics name every level's extremes, the progress is one line per
 * log step, and glow plot draws two runs in one picture. */
TEST(cli_train_affine_scale_and_metrics) {
    if (IS_DOUBLE) return;
    const char *a = tmp_path("sig.glow");
    REQUIRE(test_run("./glow train " TINY " --steps 4 --affine-scale sigmoid --prior-logs free --out %s/rs "
                     "--checkpoint %s", test_tmpdir(), a) == 0, "train: %s", test_output());
    CHECK(strstr(test_output(), "affine sigmoid") && strstr(test_output(), "free prior log std"),
          "the model line does not name the scale and the prior: %s", test_output());
    int progress = 0;
    for (const char *p = test_output(); (p = strstr(p, "\nstep ")); p++) progress++;
    CHECK(progress == 2, "%d progress lines for 4 steps logged every 2: %s", progress, test_output());
    glow_model *m = glow_checkpoint_load(a, 1, NULL, NULL);
    REQUIRE(m, "%s", glow_last_error());
    CHECK(glow_model_config(m)->affine_scale == GLOW_SCALE_SIGMOID &&
          glow_model_config(m)->prior_logs == GLOW_PRIOR_FREE, "checkpoint scale %d, prior %d",
          glow_model_config(m)->affine_scale, glow_model_config(m)->prior_logs);
    glow_model_free(m);
    CHECK(test_run("./glow train " TINY " --steps 6 --affine-scale tanh --out %s/rs --checkpoint %s --resume",
                   test_tmpdir(), a) == 1 && strstr(test_output(), "--affine-scale"),
          "a resume with another scale: %s", test_output());
    CHECK(test_run("./glow train " TINY " --steps 6 --prior-logs tanh --out %s/rs --checkpoint %s --resume",
                   test_tmpdir(), a) == 1 && strstr(test_output(), "--prior-logs"),
          "a resume with another prior: %s", test_output());
    CHECK(test_run("./glow train --affine-scale cosh") == 2 && strstr(test_output(), "--affine-scale 'cosh'"),
          "bad --affine-scale: %s", test_output());
    CHECK(test_run("./glow train --prior-logs none") == 2 && strstr(test_output(), "--prior-logs 'none'"),
          "bad --prior-logs: %s", test_output());
    CHECK(test_run("grep -c '\"levels\":\\[{\"min_coupling_logs\":[-0-9.e]*,\"max_coupling_shift\"' %s/rs/metrics.jsonl",
                   test_tmpdir()) == 0 && atoi(test_output()) == 2, "metrics lines without the levels' extremes: %s",
          test_output());
    CHECK(test_run("grep -o '\"prior_bpd\"' %s/rs/metrics.jsonl | wc -l", test_tmpdir()) == 0 &&
          atoi(test_output()) == 2 * 2, "not one entry per level (2 levels, 2 lines): %s", test_output());
    REQUIRE(test_run("./glow train " TINY " --steps 4 --out %s/rt", test_tmpdir()) == 0, "train: %s", test_output());
    CHECK(test_run("./glow plot %s/rs=sigmoid %s/rt=tanh --train --out %s/both.png && test -s %s/both.png",
                   test_tmpdir(), test_tmpdir(), test_tmpdir(), test_tmpdir()) == 0 &&
          strstr(test_output(), "2 runs"), "glow plot: %s", test_output());
    CHECK(test_run("./glow plot %s/nothing --out %s/none.png", test_tmpdir(), test_tmpdir()) == 1 &&
          strstr(test_output(), "nothing/metrics.jsonl"), "plot of a missing run: %s", test_output());
}

/* --activation-memory keeps what fits (here the top level's step, 98 KiB, not the first
 * level's, 294 KiB) and says so; it excludes --store-activations. */
TEST(cli_train_activation_memory) {
    if (IS_DOUBLE) return;
    CHECK(test_run("./glow train " TINY " --steps 1 --out %s/rm --checkpoint %s --activation-memory 0.2",
                   test_tmpdir(), tmp_path("mem.glow")) == 0 &&
          strstr(test_output(), "activations of 1 of the 2 flow steps kept in 0.2 MiB"),
          "train: %s", test_output());
    CHECK(test_run("./glow train " TINY " --steps 1 --out %s/rm2 --store-activations --activation-memory 1",
                   test_tmpdir()) == 2 && strstr(test_output(), "not both"), "both: %s", test_output());
}

TEST(cli_train_never_overwrites_a_checkpoint) {
    if (IS_DOUBLE) return;
    const char *c = tmp_path("keep.glow");
    REQUIRE(test_run("./glow train " TINY " --steps 2 --out %s/rk --checkpoint %s", test_tmpdir(), c) == 0,
            "train: %s", test_output());
    REQUIRE(test_run("cp %s %s.orig", c, c) == 0, "cp");
    CHECK(test_run("./glow train " TINY " --steps 2 --out %s/rk --checkpoint %s", test_tmpdir(), c) == 1 &&
          strstr(test_output(), "exists") && strstr(test_output(), "--resume"), "second run: %s", test_output());
    CHECK(test_run("cmp %s %s.orig", c, c) == 0, "checkpoint changed");
}

TEST(cli_train_interrupt_saves_and_exits_cleanly) {
    if (IS_DOUBLE) return;
    const char *c = tmp_path("int.glow");
    int rc = test_run("./glow train " TINY " --steps 1000000 --eval-every 0 --out %s/ri --checkpoint %s & "
                 "pid=$!; sleep 3; kill -INT $pid; wait $pid", test_tmpdir(), c);
    CHECK(rc == 0, "exit status %d after SIGINT: %s", rc, test_output());
    CHECK(strstr(test_output(), "interrupted") != NULL, "no interruption message: %s", test_output());
    glow_train_state st;
    glow_model *m = glow_checkpoint_load(c, 0, NULL, &st);
    CHECK(m && st.step > 0, "checkpoint after interrupt: %s", m ? "step 0" : glow_last_error());
    glow_model_free(m);
}

TEST(cli_train_stops_on_repeated_non_finite_steps) {
    if (IS_DOUBLE) return;
    const char *c = tmp_path("nan.glow");
    /* A learning rate of 1e4 blows the weights up within a few steps. */
    int rc = test_run("./glow train " TINY " --lr 1e4 --warmup 0 --max-skips 3 --steps 200 --save-every 1000 "
                 "--out %s/rn --checkpoint %s", test_tmpdir(), c);
    CHECK(rc == 1, "exit status %d: %s", rc, test_output());
    CHECK(strstr(test_output(), "skipped: ") && strstr(test_output(), "intact"), "messages: %s", test_output());
    glow_model *m = glow_checkpoint_load(c, 0, NULL, NULL);
    CHECK(m != NULL, "last good checkpoint unreadable: %s", glow_last_error());
    glow_model_free(m);
}

TEST(cli_eval_and_sample) {
    if (IS_DOUBLE) return;
    const char *c = tmp_path("es.glow"), *png = tmp_path("s.png");
    REQUIRE(test_run("./glow train " TINY " --steps 4 --out %s/re --checkpoint %s", test_tmpdir(), c) == 0,
            "train: %s", test_output());
    CHECK(test_run("./glow eval --checkpoint %s --n 100 --json", c) == 0 && strstr(test_output(), "\"bpd\":"),
          "eval: %s", test_output());
    double bpd = 0;
    const char *p = strstr(test_output(), "\"bpd\":");
    if (p) bpd = atof(p + 6);
    CHECK(bpd > 1 && bpd < 9, "eval bits/dim %g", bpd);
    /* Reproducible: the same figure on a second run, whatever the batch size. */
    char first[256];
    snprintf(first, sizeof first, "%.*s", 40, p ? p : "");
    test_run("./glow eval --checkpoint %s --n 100 --json --batch 7", c);
    CHECK(p && strstr(test_output(), first), "eval not reproducible: %s vs %s", first, test_output());
    /* The AMX products where the CPU has them (else a one-line refusal): the same figure
     * to a few times float's rounding. */
    int rc = test_run("./glow eval --checkpoint %s --n 100 --json --matmul bf16x3", c);
    const char *q = strstr(test_output(), "\"bpd\":");
    if (rc == 0) CHECK(q && fabs(atof(q + 6) - bpd) < 1e-4 * bpd, "eval --matmul bf16x3: %s", test_output());
    else CHECK(rc == 1 && strstr(test_output(), "AMX"), "eval --matmul bf16x3: %s", test_output());
    CHECK(test_run("./glow sample --checkpoint %s --n 4 --temperature 0.5,1 --out %s", c, png) == 0,
          "sample: %s", test_output());
    uint8_t *img = NULL;
    int h = 0, w = 0, ch = 0;
    CHECK(glow_image_read(png, &img, &h, &w, &ch) == GLOW_OK && h == 2 * 28 + 2 && w == 4 * 28 + 3 * 2,
          "grid %dx%d: %s", h, w, glow_last_error());
    /* --zoom 3: each image's pixel (y, x) is the unzoomed one's (y / 3, x / 3). */
    const char *big = tmp_path("s3.png");
    CHECK(test_run("./glow sample --checkpoint %s --n 4 --temperature 0.5,1 --zoom 3 --out %s", c,
                   big) == 0, "sample --zoom: %s", test_output());
    uint8_t *img3 = NULL;
    int h3 = 0, w3 = 0, c3 = 0, bad = 0;
    CHECK(glow_image_read(big, &img3, &h3, &w3, &c3) == GLOW_OK && h3 == 2 * 84 + 2 &&
          w3 == 4 * 84 + 3 * 2, "zoomed grid %dx%d: %s", h3, w3, glow_last_error());
    if (img && img3 && h3 == 2 * 84 + 2 && w3 == 4 * 84 + 3 * 2)
        for (int y = 0; y < h3; y++)
            for (int x = 0; x < w3; x++) {
                int ky = y / 86, kx = x / 86, iy = y % 86, ix = x % 86; /* cell and offset */
                if (iy >= 84 || ix >= 84) continue;                        /* the padding */
                bad += img3[y * w3 + x] != img[(ky * 30 + iy / 3) * w + kx * 30 + ix / 3];
            }
    CHECK(bad == 0, "--zoom 3: %d pixels are not their unzoomed pixel", bad);
    free(img), free(img3);
}

/* glow bench runs each phase in a child process: it must come back (a forked child cannot
 * use an OpenMP pool started by its parent, hence the timeout) with sane JSON. */
TEST(cli_bench_json) {
    if (IS_DOUBLE) return;
    REQUIRE(test_run("timeout 120 ./glow bench --config fmnist --phases encode,sample --repeats 1 --json") == 0,
            "bench: %s", test_output());
    const char *out = test_output();
    const char *keys[] = {"\"phase\":\"encode\"", "\"phase\":\"sample\"", "\"img_per_s\":",
                          "\"gflops\":", "\"blas_peak_gflops\":", "\"peak_rss_mib\":"};
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
        CHECK(strstr(out, keys[i]), "bench output lacks %s: %s", keys[i], out);
    const char *p = strstr(out, "\"img_per_s\":"), *q = strstr(out, "\"blas_peak_gflops\":");
    double rate = p ? atof(p + 12) : 0, peak = q ? atof(q + 19) : 0;
    CHECK(rate > 1 && peak > 1, "bench: %g img/s, BLAS peak %g GFLOP/s", rate, peak);
}

TEST(cli_bad_input) {
    if (IS_DOUBLE) return;
    const char *c = tmp_path("bad.glow");
    REQUIRE(test_run("./glow train " TINY " --steps 1 --out %s/rbad --checkpoint %s", test_tmpdir(), c) == 0,
            "train: %s", test_output());
    CHECK(test_run("./glow train --bogus") == 2 && strstr(test_output(), "--bogus"), "unknown option: %s", test_output());
    CHECK(test_run("./glow train --depth abc") == 2 && strstr(test_output(), "--depth"), "bad number: %s", test_output());
    CHECK(test_run("./glow frobnicate") == 2, "unknown command");
    CHECK(test_run("./glow train --matmul fp16") == 2 && strstr(test_output(), "--matmul 'fp16'"),
          "bad --matmul: %s", test_output());
    CHECK(test_run("./glow train --data /nonexistent/x --out %s/r0", test_tmpdir()) == 1 &&
          strstr(test_output(), "/nonexistent/x"), "missing data: %s", test_output());
    CHECK(test_run("./glow train --levels 3 --steps 1 --out %s/r3", test_tmpdir()) == 1 &&
          strstr(test_output(), "divisible"), "28x28 with 3 levels: %s", test_output());
    CHECK(test_run("./glow eval --checkpoint %s/missing.glow", test_tmpdir()) == 1 &&
          strstr(test_output(), "missing.glow"), "missing checkpoint: %s", test_output());
    CHECK(test_run("head -c 1000 %s > %s.cut && ./glow eval --checkpoint %s.cut", c, c, c) == 1 &&
          strstr(test_output(), "truncated"), "truncated checkpoint: %s", test_output());
    CHECK(test_run("./glow sample --checkpoint %s --temperature 0.7,x", c) == 2 &&
          strstr(test_output(), "--temperature"), "bad temperature: %s", test_output());
    /* A corrupted data file: a truncated IDX image file. */
    CHECK(test_run("zcat /usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz | head -c 5000 > %s/t10k-images-idx3-ubyte && "
              "./glow eval --checkpoint %s --data %s/t10k-images-idx3-ubyte", test_tmpdir(), c, test_tmpdir()) == 1 &&
          strstr(test_output(), "t10k-images-idx3-ubyte"), "truncated data: %s", test_output());
    /* Every error is one line. */
    CHECK(test_run("./glow eval --checkpoint %s/missing.glow", test_tmpdir()) == 1 &&
          strchr(test_output(), '\n') == test_output() + strlen(test_output()) - 1, "not one line: %s", test_output());
}
