/* api_internal.h: what the explorer's API files share (api.c, the routes; api_compute.c,
 * the compute contexts and batched decodes; api_cache.c, the latent cache; api_request.c,
 * query strings and numbers). Not part of api.h: the server and the fuzzer see only that. */
#ifndef GLOW_API_INTERNAL_H
#define GLOW_API_INTERNAL_H

#include <pthread.h>
#include "api.h"
#include "glow.h"

/* An encoded image: its latent (in the cache's slab), label and bits/dim. */
typedef struct entry {
    uint64_t id;       /* 0: free */
    uint64_t used;     /* the cache's clock at the last use: the least recent goes first */
    int label;         /* the class it was encoded with (conditional models) */
    int gallery;       /* the gallery index it came from, or -1 for an upload */
    double bpd;
} entry;

struct api {
    api_config cfg;
    glow_model *m;
    const glow_config *mc;
    size_t dim;
    glow_train_state state;
    glow_directions dirs;
    glow_real *dir_z;      /* (dirs.n, dim) */
    glow_dataset gallery;
    int gallery_n;

    glow_ctx **ctx;        /* (workers): each used by one pass at a time */
    int *busy;
    pthread_mutex_t lock;  /* guards busy and the decode queue */
    pthread_cond_t changed; /* a context was given back, or queued decodes were done */
    struct decode_job *queue, *queue_tail;
    long long decodes, batches; /* (guarded by lock) for /api/info */

    pthread_mutex_t cache_lock;
    entry *entries;        /* (cache_n) */
    int *gallery_slot;     /* (gallery_n): the entry of each gallery image, or -1 */
    glow_real *latents;    /* (cache_n, dim) */
    int cache_n;
    uint64_t clock, next, id_key;
};

/* ---- api_compute.c: the compute contexts ---------------------------------------------- */

/* Borrow a free context (waiting for one) and give it back: its index in a->ctx. */
int api_ctx_take(api *a);
void api_ctx_give(api *a, int i);
/* Decode one latent z (dim) into x (dim), batched with the decodes of other requests that
 * wait at the same moment. GLOW_OK, or the failure with its message in error. */
int api_decode(api *a, const glow_real *z, int label, glow_real *x, char *error,
               size_t error_size);

/* ---- api_cache.c: the latent cache ----------------------------------------------------- */

/* Ids are 16 lower-case hex digits. api_parse_id: 0, or -1 if s is not an id. */
void api_format_id(char out[17], uint64_t id);
int api_parse_id(const char *s, uint64_t *id);
/* Store a latent (dim); returns its id. The least recently used entry makes room. */
uint64_t api_cache_put(api *a, const glow_real *z, int label, int gallery, double bpd);
/* Copy the latent of id (z, if not NULL) and its entry (e) out; -1 if not cached. */
int api_cache_get(api *a, uint64_t id, glow_real *z, entry *e);
/* The id of gallery image g's entry (and the entry), or 0 if it is not cached. */
uint64_t api_cache_find_gallery(api *a, int g, entry *e);

/* ---- api_request.c: query strings and numbers ------------------------------------------ */

/* One decoded query parameter. */
typedef struct param { char key[32], value[64]; } param;
#define MAX_PARAMS 8
/* The query string after '?' into p (MAX_PARAMS); their count, or -1 with a 400 in r. */
int api_parse_query(const char *q, param *p, api_response *r);
/* A whole-string finite number in [lo, hi]: 0, or -1. */
int api_parse_number(const char *s, double lo, double hi, double *out);
/* "12.png" with suffix ".png" -> 12, below max (digits only, no leading zeros): 0, or -1. */
int api_parse_index(const char *s, const char *suffix, long max, long *out);

#endif
