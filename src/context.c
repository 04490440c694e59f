/* context.c: the compute context's public functions (glow.h; the struct is in flow.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "flow.h"

glow_ctx *glow_ctx_create(int threads) {
    glow_ctx *ctx = calloc(1, sizeof *ctx);
    if (!ctx) {
        glow_fail(GLOW_ENOMEM, "out of memory creating a compute context");
        return NULL;
    }
    glow_ctx_set_threads(ctx, threads);
    ctx->be.matmul = GLOW_MATMUL_FP32;
    ctx->be.packed = packed_default();
    return ctx;
}

void glow_ctx_free(glow_ctx *ctx) {
    if (!ctx) return;
    workspace_free(&ctx->ws);
    free(ctx->grads);
    free(ctx);
}

void glow_ctx_set_threads(glow_ctx *ctx, int threads) {
    ctx->be.threads = threads > 0 ? threads : backend_cores();
}

int glow_ctx_threads(const glow_ctx *ctx) { return ctx->be.threads; }

int glow_ctx_set_matmul(glow_ctx *ctx, glow_matmul m) {
    int rc = backend_matmul_check(m, ctx->be.packed);
    if (rc != GLOW_OK) {
        snprintf(ctx->error, sizeof ctx->error, "%s", glow_last_error());
        return rc;
    }
    ctx->be.matmul = m;
    return GLOW_OK;
}

glow_matmul glow_ctx_matmul(const glow_ctx *ctx) { return ctx->be.matmul; }

void glow_ctx_set_activation_memory(glow_ctx *ctx, size_t bytes) { ctx->activation_memory = bytes; }

size_t glow_ctx_activation_memory(const glow_ctx *ctx) { return ctx->activation_memory; }

const char *glow_ctx_error(const glow_ctx *ctx) { return ctx->error; }

glow_real *glow_ctx_grads(glow_ctx *ctx) { return ctx->grads; }

int glow_ctx_reserve_grads(glow_ctx *ctx, const glow_model *m) {
    if (ctx->n_grads == m->n_params) return GLOW_OK;
    free(ctx->grads);
    ctx->n_grads = 0;
    if (!(ctx->grads = calloc(m->n_params, sizeof(real)))) {
        snprintf(ctx->error, sizeof ctx->error, "out of memory for %zu gradients", m->n_params);
        return glow_fail(GLOW_ENOMEM, "%s", ctx->error);
    }
    ctx->n_grads = m->n_params;
    return GLOW_OK;
}

size_t glow_ctx_n_grads(const glow_ctx *ctx) { return ctx->n_grads; }

double glow_blas_gflops(glow_ctx *ctx, int n) {
    int saved = backend_enter(&ctx->be);
    double rate = gemm_gflops(n);
    backend_leave(saved);
    return rate;
}

void glow_ctx_set_comm(glow_ctx *ctx, const glow_comm *comm) {
    ctx->be.comm = comm && comm->size > 1 ? comm : NULL;
}

const glow_comm *glow_ctx_comm(const glow_ctx *ctx) { return ctx->be.comm; }
