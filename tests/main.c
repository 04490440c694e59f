/* main.c: the test runner. See test.h. */
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include "test.h"
#include "backend.h"

#define MAX_TESTS 512
typedef struct { const char *name; test_fn fn; } test_entry;
static test_entry tests[MAX_TESTS];
static int n_tests;
static int current_failed;
static char tmpdir[256];

void test_register(const char *name, test_fn fn) {
    if (n_tests < MAX_TESTS) tests[n_tests++] = (test_entry){name, fn};
}

void test_fail_at(const char *file, int line, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "    FAIL %s:%d: ", file, line);
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    current_failed = 1;
}

const char *test_tmpdir(void) {
    if (!tmpdir[0]) {
        snprintf(tmpdir, sizeof tmpdir, "/tmp/glow-test-XXXXXX");
        if (!mkdtemp(tmpdir)) { perror("mkdtemp"); exit(1); }
    }
    return tmpdir;
}

static char output[8192];

const char *test_output(void) { return output; }

int test_run(const char *fmt, ...) {
    char cmd[4096], full[4600], log[300];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    snprintf(log, sizeof log, "%s/command-output.txt", test_tmpdir());
    snprintf(full, sizeof full, "(%s) > %s 2>&1", cmd, log);
    int st = system(full);
    FILE *f = fopen(log, "r");
    /* Keep the end of long outputs: that is where the verdict is. */
    if (f && fseek(f, -(long)(sizeof output - 1), SEEK_END) != 0) rewind(f);
    size_t n = f ? fread(output, 1, sizeof output - 1, f) : 0;
    output[n] = 0;
    if (f) fclose(f);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

static int by_name(const void *a, const void *b) {
    return strcmp(((const test_entry *)a)->name, ((const test_entry *)b)->name);
}

static glow_ctx *shared_ctx;
static int ctx_made(void) { return shared_ctx != NULL; }

glow_ctx *test_ctx(void) {
    if (!shared_ctx && !(shared_ctx = glow_ctx_create(0))) {
        fprintf(stderr, "%s\n", glow_last_error());
        exit(1);
    }
    return shared_ctx;
}

const backend *test_backend(int threads) {
    static backend bes[8];
    if (threads < 1 || threads > 8) threads = 1;
    backend *be = &bes[threads - 1];
    *be = (backend){threads, GLOW_MATMUL_FP32, packed_default(), NULL};
    return be;
}

int main(int argc, char **argv) {
    glow_tune_environment(argv); /* see glow.h */
    int passed = 0, failed = 0;
    qsort(tests, n_tests, sizeof tests[0], by_name);
    printf("glow tests (%s precision)\n", IS_DOUBLE ? "double" : "float");
    for (int i = 0; i < n_tests; i++) {
        int selected = argc < 2;
        for (int a = 1; a < argc; a++) selected |= strstr(tests[i].name, argv[a]) != NULL;
        if (!selected) continue;
        current_failed = 0;
        if (ctx_made()) { /* each test starts from the default settings */
            glow_ctx_set_threads(test_ctx(), 0);
            glow_ctx_set_matmul(test_ctx(), GLOW_MATMUL_FP32);
            glow_ctx_set_activation_memory(test_ctx(), 0);
        }
        printf("  %-40s ", tests[i].name);
        fflush(stdout);
        tests[i].fn();
        printf("%s\n", current_failed ? "FAILED" : "ok");
        fflush(stdout);
        if (current_failed) failed++; else passed++;
    }
    if (tmpdir[0]) {
        char cmd[300];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
        if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", tmpdir);
    }
    glow_ctx_free(shared_ctx);
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
