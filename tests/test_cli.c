/* test_cli.c: the `glow` command end to end, on real Fashion-MNIST at tiny model sizes:
 * exact resumption, checkpoints that are never overwritten or half-written, interruption,
 * non-finite steps, bad input with clear one-line errors and the documented exit codes.
 * Runs ./glow (built by make) in the float build only. */
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include "test.h"

#define TINY "--depth 1 --width 8 --batch 16 --init-batch 32 --eval-n 64 --sample-every 0 " \
             "--log-every 2 --threads 2"

static char out_text[8192];

/* Run a shell command with stdout and stderr captured into out_text; its exit status. */
static int run(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int run(const char *fmt, ...) {
    char cmd[4096], full[4500], log[300];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    snprintf(log, sizeof log, "%s/out.txt", test_tmpdir());
    snprintf(full, sizeof full, "(%s) > %s 2>&1", cmd, log);
    int st = system(full);
    FILE *f = fopen(log, "r");
    /* Keep the end of long outputs: that is where the verdict is. */
    if (f && fseek(f, -(long)(sizeof out_text - 1), SEEK_END) != 0) rewind(f);
    size_t n = f ? fread(out_text, 1, sizeof out_text - 1, f) : 0;
    out_text[n] = 0;
    if (f) fclose(f);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

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
    REQUIRE(run("./glow train " TINY " --steps 8 --out %s/ra --checkpoint %s", test_tmpdir(), a) == 0,
            "train: %s", out_text);
    REQUIRE(run("./glow train " TINY " --steps 3 --out %s/rb --checkpoint %s", test_tmpdir(), b) == 0,
            "train: %s", out_text);
    REQUIRE(run("./glow train " TINY " --steps 8 --out %s/rb --checkpoint %s --resume", test_tmpdir(), b) == 0,
            "resume: %s", out_text);
    CHECK(strstr(out_text, "resuming") != NULL, "no resume message: %s", out_text);
    char why[256] = "";
    CHECK(same_training_state(a, b, why, sizeof why), "resumed run differs: %s", why);
    /* Resuming with another model shape is refused, naming the option. */
    CHECK(run("./glow train " TINY " --depth 2 --steps 9 --out %s/rb --checkpoint %s --resume", test_tmpdir(), b) == 1 &&
          strstr(out_text, "--depth"), "shape change on resume: %s", out_text);
    /* The metrics and the curve are there. */
    CHECK(run("test -s %s/ra/metrics.jsonl && test -s %s/ra/curve.png", test_tmpdir(), test_tmpdir()) == 0,
          "metrics or curve missing");
}

TEST(cli_train_never_overwrites_a_checkpoint) {
    if (IS_DOUBLE) return;
    const char *c = tmp_path("keep.glow");
    REQUIRE(run("./glow train " TINY " --steps 2 --out %s/rk --checkpoint %s", test_tmpdir(), c) == 0,
            "train: %s", out_text);
    REQUIRE(run("cp %s %s.orig", c, c) == 0, "cp");
    CHECK(run("./glow train " TINY " --steps 2 --out %s/rk --checkpoint %s", test_tmpdir(), c) == 1 &&
          strstr(out_text, "exists") && strstr(out_text, "--resume"), "second run: %s", out_text);
    CHECK(run("cmp %s %s.orig", c, c) == 0, "checkpoint changed");
}

TEST(cli_train_interrupt_saves_and_exits_cleanly) {
    if (IS_DOUBLE) return;
    const char *c = tmp_path("int.glow");
    int rc = run("./glow train " TINY " --steps 1000000 --eval-every 0 --out %s/ri --checkpoint %s & "
                 "pid=$!; sleep 3; kill -INT $pid; wait $pid", test_tmpdir(), c);
    CHECK(rc == 0, "exit status %d after SIGINT: %s", rc, out_text);
    CHECK(strstr(out_text, "interrupted") != NULL, "no interruption message: %s", out_text);
    glow_train_state st;
    glow_model *m = glow_checkpoint_load(c, 0, NULL, &st);
    CHECK(m && st.step > 0, "checkpoint after interrupt: %s", m ? "step 0" : glow_last_error());
    glow_model_free(m);
}

TEST(cli_train_stops_on_repeated_non_finite_steps) {
    if (IS_DOUBLE) return;
    const char *c = tmp_path("nan.glow");
    /* A learning rate of 1e4 blows the weights up within a few steps. */
    int rc = run("./glow train " TINY " --lr 1e4 --warmup 0 --max-skips 3 --steps 200 --save-every 1000 "
                 "--out %s/rn --checkpoint %s", test_tmpdir(), c);
    CHECK(rc == 1, "exit status %d: %s", rc, out_text);
    CHECK(strstr(out_text, "skipped: ") && strstr(out_text, "intact"), "messages: %s", out_text);
    glow_model *m = glow_checkpoint_load(c, 0, NULL, NULL);
    CHECK(m != NULL, "last good checkpoint unreadable: %s", glow_last_error());
    glow_model_free(m);
}

TEST(cli_eval_and_sample) {
    if (IS_DOUBLE) return;
    const char *c = tmp_path("es.glow"), *png = tmp_path("s.png");
    REQUIRE(run("./glow train " TINY " --steps 4 --out %s/re --checkpoint %s", test_tmpdir(), c) == 0,
            "train: %s", out_text);
    CHECK(run("./glow eval --checkpoint %s --n 100 --json", c) == 0 && strstr(out_text, "\"bpd\":"),
          "eval: %s", out_text);
    double bpd = 0;
    const char *p = strstr(out_text, "\"bpd\":");
    if (p) bpd = atof(p + 6);
    CHECK(bpd > 1 && bpd < 9, "eval bits/dim %g", bpd);
    /* Reproducible: the same figure on a second run, whatever the batch size. */
    char first[256];
    snprintf(first, sizeof first, "%.*s", 40, p ? p : "");
    run("./glow eval --checkpoint %s --n 100 --json --batch 7", c);
    CHECK(p && strstr(out_text, first), "eval not reproducible: %s vs %s", first, out_text);
    CHECK(run("./glow sample --checkpoint %s --n 4 --temperature 0.5,1 --out %s", c, png) == 0,
          "sample: %s", out_text);
    uint8_t *img = NULL;
    int h = 0, w = 0, ch = 0;
    CHECK(glow_image_read(png, &img, &h, &w, &ch) == GLOW_OK && h == 2 * 28 + 2 && w == 4 * 28 + 3 * 2,
          "grid %dx%d: %s", h, w, glow_last_error());
    free(img);
}

TEST(cli_bad_input) {
    if (IS_DOUBLE) return;
    const char *c = tmp_path("bad.glow");
    REQUIRE(run("./glow train " TINY " --steps 1 --out %s/rbad --checkpoint %s", test_tmpdir(), c) == 0,
            "train: %s", out_text);
    CHECK(run("./glow train --bogus") == 2 && strstr(out_text, "--bogus"), "unknown option: %s", out_text);
    CHECK(run("./glow train --depth abc") == 2 && strstr(out_text, "--depth"), "bad number: %s", out_text);
    CHECK(run("./glow frobnicate") == 2, "unknown command");
    CHECK(run("./glow train --data /nonexistent/x --out %s/r0", test_tmpdir()) == 1 &&
          strstr(out_text, "/nonexistent/x"), "missing data: %s", out_text);
    CHECK(run("./glow train --levels 3 --steps 1 --out %s/r3", test_tmpdir()) == 1 &&
          strstr(out_text, "divisible"), "28x28 with 3 levels: %s", out_text);
    CHECK(run("./glow eval --checkpoint %s/missing.glow", test_tmpdir()) == 1 &&
          strstr(out_text, "missing.glow"), "missing checkpoint: %s", out_text);
    CHECK(run("head -c 1000 %s > %s.cut && ./glow eval --checkpoint %s.cut", c, c, c) == 1 &&
          strstr(out_text, "truncated"), "truncated checkpoint: %s", out_text);
    CHECK(run("./glow sample --checkpoint %s --temperature 0.7,x", c) == 2 &&
          strstr(out_text, "--temperature"), "bad temperature: %s", out_text);
    /* A corrupted data file: a truncated IDX image file. */
    CHECK(run("zcat /usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz | head -c 5000 > %s/t10k-images-idx3-ubyte && "
              "./glow eval --checkpoint %s --data %s/t10k-images-idx3-ubyte", test_tmpdir(), c, test_tmpdir()) == 1 &&
          strstr(out_text, "t10k-images-idx3-ubyte"), "truncated data: %s", out_text);
    /* Every error is one line. */
    CHECK(run("./glow eval --checkpoint %s/missing.glow", test_tmpdir()) == 1 &&
          strchr(out_text, '\n') == out_text + strlen(out_text) - 1, "not one line: %s", out_text);
}
