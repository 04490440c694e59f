/* api.h: the explorer's API (docs/API.md) without the HTTP: a request (method, target,
 * body) in, a response (status, content type, bytes) out. serve.c puts it behind
 * libmicrohttpd; tests/fuzz/fuzz_api.c calls it directly.
 *
 * The model and the attribute directions are read-only after api_open. Requests may come
 * from any number of threads at once: each takes one of `workers` compute contexts for its
 * computation (waiting if all are busy); the decodes of requests that wait at the same
 * moment run as one batch. The latents of encoded images live in an LRU cache of bounded
 * size, so that clients send ids rather than latents. */
#ifndef GLOW_API_H
#define GLOW_API_H

#include <stddef.h>
#include <stdint.h>

typedef struct api_config {
    const char *checkpoint;  /* required */
    const char *attributes;  /* .npz of glow attributes, or NULL */
    const char *data;        /* the gallery: the test split of this data set, or NULL */
    int gallery_max;         /* at most this many gallery images */
    int workers;             /* compute contexts (requests computed at once) */
    size_t max_upload;       /* bytes of a request body */
    int max_samples;         /* images of one /api/sample */
    size_t cache_bytes;      /* the latent cache */
    int batch;               /* decodes of concurrent requests run together, at most */
    const char *page;        /* the HTML page served at / */
    size_t page_size;
} api_config;

/* Defaults: 10 MiB uploads, 64 samples, 1000 gallery images, 64 MiB of latents, batches
 * of up to 16 decodes. */
void api_config_default(api_config *cfg);

#define API_MAX_BATCH 256

typedef struct api api;

/* Load the checkpoint, directions and gallery. NULL on failure, with glow_last_error(). */
api *api_open(const api_config *cfg);
void api_close(api *a);

typedef struct api_response {
    int status;            /* HTTP status */
    const char *type;      /* Content-Type */
    uint8_t *body;         /* malloc'd (api_response_free) */
    size_t size;
    double compute_ms;     /* time in the model, for the Server-Timing header */
    const char *allow;     /* for 405: the methods the route takes */
} api_response;

/* Answer one request. `target` is the request target as sent ("/api/sample?n=4"); `type`
 * is the request's Content-Type or NULL. Never fails: errors are 4xx/5xx answers with a
 * JSON body {"error": "..."}. */
void api_handle(api *a, const char *method, const char *target, const char *type,
                const uint8_t *body, size_t size, api_response *r);
void api_response_free(api_response *r);

/* An answer for a request refused before it reached api_handle (serve.c: a body over the
 * limit). */
void api_error(api_response *r, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* What the server was started with, for its first line. */
size_t api_max_upload(const api *a);
int api_gallery_size(const api *a);

#endif
