/* fuzz_checkpoint.c: checkpoint loading. Like a deliberate attacker, the harness makes the
 * length field and the trailing CRC-32 agree with the mutated bytes, so that the fuzzer
 * reaches the hyperparameters, the directory and the sections behind them. */
#include <zlib.h>
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 28 || size > (1 << 24)) return 0;
    uint8_t *d = malloc(size);
    if (!d) return 0;
    memcpy(d, data, size);
    for (int i = 0; i < 8; i++) d[16 + i] = (uint8_t)((uint64_t)size >> (8 * i));
    uint32_t crc = (uint32_t)crc32(crc32(0L, Z_NULL, 0), d, (uInt)(size - 4));
    for (int i = 0; i < 4; i++) d[size - 4 + i] = (uint8_t)(crc >> (8 * i));
    const char *path = fuzz_file("f.glow", d, size);
    free(d);
    if (!path) return 0;
    glow_optimizer opt;
    glow_train_state st;
    glow_model *m = glow_checkpoint_load(path, 1, &opt, &st);
    if (!m) {
        fuzz_check_message(GLOW_EFORMAT);
        return 0;
    }
    glow_optimizer_free(&opt);
    glow_model_free(m);
    return 0;
}
