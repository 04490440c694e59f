/* test_faults.c: glow train when the machine fails it. A checkpoint that cannot be written
 * (the file-size limit stands in for a full disk) stops the run with a message and leaves
 * the previous checkpoint byte for byte; kill -9 at random moments of a run that saves
 * every 2 steps always leaves a checkpoint that loads and resumes. */
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include "test.h"

#define TINY "--depth 1 --width 8 --batch 16 --init-batch 32 --eval-n 64 --sample-every 0 " \
             "--log-every 2 --threads 1"

static long file_size(const char *path) {
    struct stat sb;
    return stat(path, &sb) == 0 ? (long)sb.st_size : -1;
}

TEST(faults_disk_full_stops_cleanly) {
    if (IS_DOUBLE) return;
    const char *dir = test_tmpdir();
    char ck[512];
    snprintf(ck, sizeof ck, "%s/full/checkpoint.glow", dir);
    REQUIRE(test_run("./glow train " TINY " --steps 2 --out %s/full", dir) == 0, "train: %s",
            test_output());
    REQUIRE(test_run("cp %s %s.orig", ck, ck) == 0, "cp");
    long size = file_size(ck);
    /* The shell ignores SIGXFSZ for glow: a write past the limit then fails with EFBIG, as
     * one on a full disk fails with ENOSPC. Room for half a checkpoint. */
    int rc = test_run("trap '' XFSZ; ulimit -f %ld; ./glow train " TINY " --steps 40 "
                      "--save-every 2 --out %s/full --resume", size / 2 / 512, dir);
    CHECK(rc == 1 && strstr(test_output(), ck), "a save past the limit: status %d: %s", rc,
          test_output());
    CHECK(test_run("cmp %s %s.orig", ck, ck) == 0, "the previous checkpoint changed");
    CHECK(test_run("ls %s/full | grep -c tmp", dir) != 0, "a temporary file was left: %s",
          test_output());
    CHECK(test_run("./glow train " TINY " --steps 4 --out %s/full --resume", dir) == 0,
          "the run does not resume after the failure: %s", test_output());
}

/* A real full disk: a tmpfs with room for the checkpoint and a third of another. Needs
 * the right to mount (root, as in CI); skipped where that is refused. */
TEST(faults_enospc_on_tmpfs) {
    if (IS_DOUBLE) return;
    const char *dir = test_tmpdir();
    char ck[512];
    REQUIRE(test_run("./glow train " TINY " --steps 2 --out %s/src", dir) == 0, "train: %s",
            test_output());
    snprintf(ck, sizeof ck, "%s/src/checkpoint.glow", dir);
    long size = file_size(ck);
    long kib = (size + size / 3) / 1024 + 8;
    if (test_run("mkdir -p %s/small && mount -t tmpfs -o size=%ldk tmpfs %s/small", dir, kib,
                 dir) != 0) {
        printf("(skipped: cannot mount a tmpfs: %s) ", test_output());
        return;
    }
    snprintf(ck, sizeof ck, "%s/small/checkpoint.glow", dir);
    CHECK(test_run("cp %s/src/checkpoint.glow %s/src/metrics.jsonl %s/small/ && cp %s %s/orig",
                   dir, dir, dir, ck, dir) == 0, "cp: %s", test_output());
    int rc = test_run("./glow train " TINY " --steps 40 --save-every 2 --out %s/small --resume",
                      dir);
    const char *error = strstr(test_output(), "No space left on device");
    CHECK(rc == 1 && error && !strstr(error + 1, "No space left"),
          "a save on a full disk: status %d, not one message: %s", rc, test_output());
    CHECK(test_run("cmp %s %s/orig", ck, dir) == 0, "the previous checkpoint changed");
    CHECK(test_run("ls %s/small | grep tmp", dir) != 0, "a temporary file was left: %s",
          test_output());
    test_run("umount %s/small", dir);
}

/* SOAK_KILLS kills (default 20) at moments spread over 0.05 to 1.5 s after each start. */
TEST(faults_kill_9_soak) {
    if (IS_DOUBLE) return;
    const char *dir = test_tmpdir();
    int kills = getenv("SOAK_KILLS") ? atoi(getenv("SOAK_KILLS")) : 20;
    REQUIRE(test_run("./glow train " TINY " --steps 2 --out %s/soak", dir) == 0, "train: %s",
            test_output());
    char ck[512];
    snprintf(ck, sizeof ck, "%s/soak/checkpoint.glow", dir);
    long long last = 0;
    for (int k = 0; k < kills; k++) {
        double wait = 0.05 + 1.45 * glow_rng_uniform(glow_rng_key(11, 0x6b696c6c, k, 0), 0);
        test_run("./glow train " TINY " --steps 100000 --save-every 2 --eval-every 0 --out %s/soak "
                 "--resume > /dev/null 2>&1 & pid=$!; sleep %.2f; kill -9 $pid; wait $pid", dir, wait);
        glow_train_state st;
        glow_model *m = glow_checkpoint_load(ck, 0, NULL, &st);
        CHECK(m, "kill %d (after %.2f s): the checkpoint does not load: %s", k, wait,
              glow_last_error());
        if (!m) return;
        CHECK(st.step >= last, "kill %d: the checkpoint went back from step %lld to %lld", k, last,
              (long long)st.step);
        last = st.step;
        glow_model_free(m);
    }
    CHECK(test_run("./glow train " TINY " --steps %lld --out %s/soak --resume", last + 2, dir) == 0,
          "the run does not resume after %d kills: %s", kills, test_output());
    /* Kills during a save leave temp files; the next save removes them. */
    CHECK(test_run("ls %s/soak | grep tmp", dir) != 0, "temp files of killed saves remain: %s",
          test_output());
    printf("(%d kills, the run reached step %lld) ", kills, last);
}
