/* fuzz.h: what the libFuzzer harnesses share (tests/fuzz/README.md). The parsers read
 * files, so a harness writes its input to a file in a directory of its own first. */
#ifndef GLOW_FUZZ_H
#define GLOW_FUZZ_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "glow.h"

/* dir/name for this process (the directory made on first use), in a static buffer that
 * the next call overwrites: copy it to keep it. */
static inline const char *fuzz_path(const char *name) {
    static char dir[64], path[256];
    if (!dir[0]) {
        snprintf(dir, sizeof dir, "/tmp/glow-fuzz-%d", (int)getpid());
        mkdir(dir, 0700);
    }
    snprintf(path, sizeof path, "%s/%s", dir, name);
    return path;
}

/* Write data to dir/name; returns the path (NULL if the write failed). */
static inline const char *fuzz_file(const char *name, const uint8_t *data, size_t size) {
    const char *path = fuzz_path(name);
    FILE *f = fopen(path, "wb");
    if (!f) return NULL;
    int ok = fwrite(data, 1, size, f) == size;
    if (fclose(f) != 0 || !ok) return NULL;
    return path;
}

/* Every failure must leave a message (the library's promise): a silent failure aborts. */
static inline void fuzz_check_message(int rc) {
    if (rc != GLOW_OK && !glow_last_error()[0]) abort();
}

#endif
