/* fuzz_cifar.c: a CIFAR-10 binary batch (the test split of a folder holding it). */
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char dir[256];
    snprintf(dir, sizeof dir, "%s", fuzz_path("cifar"));
    mkdir(dir, 0700);
    if (!fuzz_file("cifar/test_batch.bin", data, size)) return 0;
    glow_dataset d;
    int rc = glow_dataset_load(&d, dir, "test", 0);
    fuzz_check_message(rc);
    if (rc == GLOW_OK) {
        for (int i = 0; i < d.n; i++)
            if (d.labels[i] < 0 || d.labels[i] > 9) abort();
        glow_dataset_free(&d);
    }
    return 0;
}
