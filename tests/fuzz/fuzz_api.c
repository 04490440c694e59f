/* fuzz_api.c: glow serve's request handling (cli/api.c, cli/json.c) without the HTTP: the
 * query strings, JSON bodies and uploads of every route, on a tiny model with directions
 * and a gallery (made by seeds.sh; GLOW_FUZZ_MODEL names their folder). The first byte
 * chooses the route; "@A" and "@B" in the rest become the ids of two encoded images, so
 * that the fuzzer gets past the id lookup. Every answer must be well formed. */
#include "../../cli/api.h"
#include "../../cli/json.h"
#include "fuzz.h"

static api *server;

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    const char *dir = getenv("GLOW_FUZZ_MODEL") ? getenv("GLOW_FUZZ_MODEL") : "build/fuzz/corpus/model";
    static char ck[512], attrs[512];
    snprintf(ck, sizeof ck, "%s/checkpoint.glow", dir);
    snprintf(attrs, sizeof attrs, "%s/dirs.npz", dir);
    api_config cfg;
    api_config_default(&cfg);
    cfg.checkpoint = ck, cfg.attributes = attrs;
    cfg.data = "/usr/share/datasets/fashion-mnist";
    cfg.gallery_max = 8, cfg.max_samples = 4, cfg.cache_bytes = 1; /* 16 entries: evictions */
    cfg.page = "<!doctype html>", cfg.page_size = 15;
    if (!(server = api_open(&cfg))) {
        fprintf(stderr, "fuzz_api: %s (run tests/fuzz/seeds.sh first)\n", glow_last_error());
        exit(1);
    }
    return 0;
}

/* The id of gallery image g (encoded again if it was evicted). */
static void gallery_id(int g, char out[17]) {
    char body[32];
    int n = snprintf(body, sizeof body, "{\"gallery\": %d}", g);
    api_response r;
    api_handle(server, "POST", "/api/encode", "application/json", (const uint8_t *)body, (size_t)n, &r);
    const char *id = r.body ? strstr((const char *)r.body, "\"id\": \"") : NULL;
    if (r.status != 200 || !id) abort();
    memcpy(out, id + 7, 16);
    out[16] = 0;
    api_response_free(&r);
}

/* data with "@A" and "@B" replaced by the ids; NUL-terminated, malloc'd. */
static char *substitute(const uint8_t *data, size_t size, size_t *out_size) {
    char a[17], b[17];
    gallery_id(0, a);
    gallery_id(1, b);
    char *out = malloc(size * 8 + 1);
    size_t o = 0;
    for (size_t i = 0; i < size; i++) {
        if (data[i] == '@' && i + 1 < size && (data[i + 1] == 'A' || data[i + 1] == 'B')) {
            memcpy(out + o, data[i + 1] == 'A' ? a : b, 16);
            o += 16, i++;
        } else {
            out[o++] = (char)data[i];
        }
    }
    out[o] = 0;
    *out_size = o;
    return out;
}

/* Every value's links stay inside the document, and counts agree with the links. */
static void check_json(const uint8_t *data, size_t size) {
    json_doc doc;
    char err[128];
    if (json_parse(&doc, (const char *)data, size, err, sizeof err)) {
        if (!err[0]) abort();
        return;
    }
    for (int i = 0; i < doc.n; i++) {
        const json_value *v = &doc.v[i];
        int count = 0;
        for (int c = v->first; c; c = doc.v[c].next) {
            if (c <= i || c >= doc.n) abort();
            count++;
        }
        if (count != v->count || (v->type == JSON_STRING && !v->str)) abort();
    }
    json_free(&doc);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    int mode = data[0] % 8;
    if (mode == 7) {
        check_json(data + 1, size - 1);
        return 0;
    }
    size_t n;
    char *rest = substitute(data + 1, size - 1, &n);
    char target[600];
    const char *method = "POST", *type = NULL, *path = NULL;
    const uint8_t *body = (const uint8_t *)rest;
    size_t body_size = n;
    switch (mode) {
    case 0: method = "GET", path = rest, body_size = 0; break;
    case 1: path = "/api/encode", type = "application/json"; break;
    case 2: path = "/api/encode", type = "image/png"; break;
    case 3: path = "/api/manipulate"; break;
    case 4: path = "/api/mix"; break;
    case 5:
        snprintf(target, sizeof target, "/api/sample?%s", rest);
        method = "GET", path = target, body_size = 0;
        break;
    case 6: method = n % 2 ? "PUT" : "HEAD", path = rest, body_size = 0; break;
    }
    api_response r;
    api_handle(server, method, path, type, body, body_size, &r);
    if (r.status < 200 || r.status > 599 || !r.type || (r.size && !r.body)) abort();
    if (r.status >= 400 && (strcmp(r.type, "application/json") || r.size < 12 ||
                            memcmp(r.body, "{\"error\": \"", 11)))
        abort();
    if (r.status == 200 && !strcmp(r.type, "image/png") && (r.size < 8 || memcmp(r.body, "\x89PNG", 4)))
        abort();
    api_response_free(&r);
    free(rest);
    return 0;
}
