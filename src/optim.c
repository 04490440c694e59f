/* optim.c: Adam and Adamax with linear warm-up, global-norm clipping and a Polyak average.
 * A step with a non-finite gradient is refused before anything changes, so a bad batch can
 * never poison the weights, the moments or the average. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "backend.h"

void glow_optim_config_default(glow_optim_config *cfg) {
    memset(cfg, 0, sizeof *cfg);
    cfg->kind = GLOW_ADAM;
    cfg->lr = 1e-3;
    cfg->beta1 = 0.9;
    cfg->beta2 = 0.999;
    cfg->eps = 1e-8;
    cfg->polyak = 0.999;
}

int glow_optimizer_init(glow_optimizer *o, const glow_optim_config *cfg, size_t n,
                        const glow_real *params) {
    memset(o, 0, sizeof *o);
    if (!(cfg->lr > 0)) return glow_fail(GLOW_EINVAL, "learning rate %g: must be > 0", cfg->lr);
    if (cfg->warmup < 0) return glow_fail(GLOW_EINVAL, "warm-up %d: must be >= 0", cfg->warmup);
    if (!(cfg->polyak >= 0 && cfg->polyak < 1))
        return glow_fail(GLOW_EINVAL, "Polyak decay %g: must be in [0, 1)", cfg->polyak);
    o->cfg = *cfg;
    o->n = n;
    o->m = calloc(n, sizeof(glow_real));
    o->v = calloc(n, sizeof(glow_real));
    o->avg = malloc(sizeof(glow_real) * n);
    if (!o->m || !o->v || !o->avg) {
        glow_optimizer_free(o);
        return glow_fail(GLOW_ENOMEM, "out of memory for the optimizer");
    }
    memcpy(o->avg, params, sizeof(glow_real) * n);
    return GLOW_OK;
}

void glow_optimizer_free(glow_optimizer *o) {
    free(o->m);
    free(o->v);
    free(o->avg);
    o->m = o->v = o->avg = NULL;
}

double glow_optimizer_lr(const glow_optimizer *o) {
    double t = (double)(o->step + 1);
    if (o->cfg.warmup > 0 && t < o->cfg.warmup) return o->cfg.lr * t / o->cfg.warmup;
    return o->cfg.lr;
}

int glow_optimizer_step(glow_optimizer *o, glow_real *params, const glow_real *grads,
                        double *grad_norm) {
    double norm = sqrt(sum_squares(grads, o->n));
    if (grad_norm) *grad_norm = norm;
    if (!isfinite(norm)) return glow_fail(GLOW_EINVAL, "non-finite gradient (norm %g)", norm);
    double clip = o->cfg.grad_clip > 0 && norm > o->cfg.grad_clip ? o->cfg.grad_clip / norm : 1.0;
    double lr = glow_optimizer_lr(o), b1 = o->cfg.beta1, b2 = o->cfg.beta2, eps = o->cfg.eps;
    double t = (double)(o->step + 1);
    double c1 = 1.0 - pow(b1, t), c2 = 1.0 - pow(b2, t);
    /* The average's decay ramps up as (1 + t) / (10 + t), so that early on it follows the
     * weights instead of staying near their initial values. */
    double decay = fmin(o->cfg.polyak, (1.0 + t) / (10.0 + t));
    optimizer_update(params, o->m, o->v, o->avg, grads, o->n, clip, lr, b1, b2, eps, c1, c2,
                     decay, o->cfg.kind == GLOW_ADAMAX);
    o->step++;
    return GLOW_OK;
}
