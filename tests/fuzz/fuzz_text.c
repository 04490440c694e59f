/* fuzz_text.c: a data folder's text files, list_attr_celeba.txt (first byte even) and
 * labels.csv (odd), matched against a folder of three tiny PNG images. */
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    static int made;
    char dir[256];
    snprintf(dir, sizeof dir, "%s", fuzz_path("folder"));
    char name[300];
    if (!made) {
        mkdir(dir, 0700);
        uint8_t px[4] = {1, 2, 3, 4};
        const char *files[3] = {"a.png", "b.png", "c.png"};
        for (int i = 0; i < 3; i++) {
            snprintf(name, sizeof name, "%s/%s", dir, files[i]);
            if (glow_png_write(name, px, 2, 2, 1) != GLOW_OK) abort();
        }
        made = 1;
    }
    const char *other = data[0] % 2 ? "folder/list_attr_celeba.txt" : "folder/labels.csv";
    const char *mine = data[0] % 2 ? "folder/labels.csv" : "folder/list_attr_celeba.txt";
    unlink(fuzz_path(other));
    if (!fuzz_file(mine, data + 1, size - 1)) return 0;
    glow_dataset d;
    int rc = glow_dataset_load(&d, dir, NULL, 0);
    fuzz_check_message(rc);
    if (rc == GLOW_OK) {
        if (d.n != 3) abort();
        glow_dataset_free(&d);
    }
    return 0;
}
