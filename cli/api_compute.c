/* api_compute.c: the explorer's compute contexts, one pass each at a time, and the decodes
 * of concurrent requests run as one batch (api_internal.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "api_internal.h"

static int free_ctx_locked(const api *a) {
    for (int i = 0; i < a->cfg.workers; i++)
        if (!a->busy[i]) return i;
    return -1;
}

int api_ctx_take(api *a) {
    pthread_mutex_lock(&a->lock);
    int i;
    while ((i = free_ctx_locked(a)) < 0) pthread_cond_wait(&a->changed, &a->lock);
    a->busy[i] = 1;
    pthread_mutex_unlock(&a->lock);
    return i;
}

void api_ctx_give(api *a, int i) {
    pthread_mutex_lock(&a->lock);
    a->busy[i] = 0;
    pthread_cond_broadcast(&a->changed);
    pthread_mutex_unlock(&a->lock);
}

/* A decode waiting to run: one request's latent, and where its image goes. */
typedef struct decode_job {
    const glow_real *z;      /* (dim) */
    int label;
    glow_real *x;            /* (dim), the output */
    int rc, done;
    char error[256];
    struct decode_job *next;
} decode_job;

/* Run n queued decodes as one batch in ctx. */
static void run_batch(api *a, glow_ctx *ctx, decode_job **jobs, int n) {
    glow_real *z = malloc(sizeof(glow_real) * a->dim * n), *x = malloc(sizeof(glow_real) * a->dim * n);
    int *y = malloc(sizeof(int) * n);
    int rc = z && x && y ? GLOW_OK : GLOW_ENOMEM;
    if (rc == GLOW_OK) {
        for (int i = 0; i < n; i++) {
            memcpy(z + a->dim * i, jobs[i]->z, sizeof(glow_real) * a->dim);
            y[i] = jobs[i]->label;
        }
        rc = glow_model_decode(ctx, a->m, z, y, n, x, NULL);
    }
    for (int i = 0; i < n; i++) {
        jobs[i]->rc = rc;
        if (rc == GLOW_OK) memcpy(jobs[i]->x, x + a->dim * i, sizeof(glow_real) * a->dim);
        else snprintf(jobs[i]->error, sizeof jobs[i]->error, "%s",
                      rc == GLOW_ENOMEM ? "out of memory" : glow_ctx_error(ctx));
    }
    free(z), free(x), free(y);
}

/* Decode one latent into x (dim), together with the decodes of other requests waiting at
 * the same moment: the request that finds a context free takes every queued decode (up to
 * cfg.batch) and runs them as one batch, while the others wait for their result. A request
 * alone decodes at once, by itself. Returns GLOW_OK, or the failure with its message in
 * error. */
int api_decode(api *a, const glow_real *z, int label, glow_real *x, char *error,
                          size_t error_size) {
    decode_job me = {z, label, x, GLOW_OK, 0, "", NULL};
    decode_job *batch[API_MAX_BATCH];
    pthread_mutex_lock(&a->lock);
    if (a->queue_tail) a->queue_tail->next = &me;
    else a->queue = &me;
    a->queue_tail = &me;
    while (!me.done) {
        int k = a->queue ? free_ctx_locked(a) : -1;
        if (k < 0) {
            pthread_cond_wait(&a->changed, &a->lock);
            continue;
        }
        a->busy[k] = 1;
        int n = 0;
        for (; a->queue && n < a->cfg.batch; n++) {
            batch[n] = a->queue;
            a->queue = a->queue->next;
        }
        if (!a->queue) a->queue_tail = NULL;
        a->decodes += n, a->batches++;
        pthread_mutex_unlock(&a->lock);
        run_batch(a, a->ctx[k], batch, n);
        pthread_mutex_lock(&a->lock);
        a->busy[k] = 0;
        for (int i = 0; i < n; i++) batch[i]->done = 1;
        pthread_cond_broadcast(&a->changed);
    }
    pthread_mutex_unlock(&a->lock);
    if (me.rc != GLOW_OK) snprintf(error, error_size, "%s", me.error);
    return me.rc;
}
