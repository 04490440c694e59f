/* api.c: the explorer's routes (api.h, docs/API.md): open the model, parse the request,
 * run the model in a borrowed compute context (api_compute.c), answer PNG or JSON. */
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include "api_internal.h"
#include "json.h"

void api_config_default(api_config *cfg) {
    memset(cfg, 0, sizeof *cfg);
    cfg->gallery_max = 1000;
    cfg->workers = 1;
    cfg->max_upload = 10 << 20;
    cfg->max_samples = 64;
    cfg->cache_bytes = 64 << 20;
    cfg->batch = 16;
}

size_t api_max_upload(const api *a) { return a->cfg.max_upload; }
int api_gallery_size(const api *a) { return a->gallery_n; }

static double now_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e3 + t.tv_nsec * 1e-6;
}

/* ---- opening --------------------------------------------------------------------------- */

void api_close(api *a) {
    if (!a) return;
    for (int i = 0; a->ctx && i < a->cfg.workers; i++) glow_ctx_free(a->ctx[i]);
    free(a->ctx);
    free(a->busy);
    pthread_mutex_destroy(&a->lock);
    pthread_cond_destroy(&a->changed);
    pthread_mutex_destroy(&a->cache_lock);
    free(a->entries);
    free(a->gallery_slot);
    free(a->latents);
    free(a->dir_z);
    glow_directions_free(&a->dirs);
    glow_dataset_free(&a->gallery);
    glow_model_free(a->m);
    free(a);
}

api *api_open(const api_config *cfg) {
    api *a = calloc(1, sizeof *a);
    if (!a) { glow_fail(GLOW_ENOMEM, "out of memory"); return NULL; }
    a->cfg = *cfg;
    pthread_mutex_init(&a->lock, NULL);
    pthread_cond_init(&a->changed, NULL);
    pthread_mutex_init(&a->cache_lock, NULL);
    if (a->cfg.workers < 1) a->cfg.workers = 1;
    if (a->cfg.batch < 1 || a->cfg.batch > API_MAX_BATCH) a->cfg.batch = a->cfg.batch < 1 ? 1 : API_MAX_BATCH;
    if (!(a->m = glow_checkpoint_load(cfg->checkpoint, 1, NULL, &a->state))) goto fail;
    a->mc = glow_model_config(a->m);
    a->dim = glow_model_dim(a->m);
    if (cfg->attributes) {
        if (glow_directions_load(cfg->attributes, &a->dirs) != GLOW_OK) goto fail;
        if (a->dirs.dim != a->dim) {
            glow_fail(GLOW_EINVAL, "%s: directions of dimension %zu, but the model's latents "
                      "have %zu", cfg->attributes, a->dirs.dim, a->dim);
            goto fail;
        }
        if (!(a->dir_z = malloc(sizeof(glow_real) * a->dirs.n * a->dim))) goto oom;
        for (size_t i = 0; i < (size_t)a->dirs.n * a->dim; i++) a->dir_z[i] = a->dirs.z[i];
    }
    if (cfg->data) {
        if (glow_dataset_load(&a->gallery, cfg->data, "test", a->mc->image_h) != GLOW_OK) goto fail;
        const glow_dataset *g = &a->gallery;
        if (g->h != a->mc->image_h || g->w != a->mc->image_w || g->c != a->mc->image_c) {
            glow_fail(GLOW_EINVAL, "%s: images are %dx%dx%d but the model takes %dx%dx%d",
                      cfg->data, g->h, g->w, g->c, a->mc->image_h, a->mc->image_w,
                      a->mc->image_c);
            goto fail;
        }
        a->gallery_n = g->n < cfg->gallery_max ? g->n : cfg->gallery_max;
        if (g->labels && g->n_classes == 10 && strstr(cfg->data, "fashion") &&
            glow_dataset_set_fashion_names(&a->gallery) != GLOW_OK)
            goto fail;
    }
    /* The cache: as many latents as fit in cache_bytes, at least 16. */
    size_t per = sizeof(glow_real) * a->dim + sizeof(entry);
    size_t n = cfg->cache_bytes / per;
    a->cache_n = n < 16 ? 16 : n > 1 << 20 ? 1 << 20 : (int)n;
    a->entries = calloc((size_t)a->cache_n, sizeof *a->entries);
    a->gallery_slot = malloc(sizeof *a->gallery_slot * (size_t)(a->gallery_n + 1));
    for (int i = 0; a->gallery_slot && i < a->gallery_n; i++) a->gallery_slot[i] = -1;
    a->latents = malloc(sizeof(glow_real) * a->dim * a->cache_n);
    a->ctx = calloc((size_t)a->cfg.workers, sizeof *a->ctx);
    a->busy = calloc((size_t)a->cfg.workers, sizeof *a->busy);
    if (!a->entries || !a->gallery_slot || !a->latents || !a->ctx || !a->busy) goto oom;
    /* One compute thread per context: the workers share the cores among requests. */
    for (int i = 0; i < a->cfg.workers; i++)
        if (!(a->ctx[i] = glow_ctx_create(1))) goto oom;
    /* Ids differ between runs of the server, so a stale page cannot pick another image. */
    a->id_key = glow_rng_key((uint64_t)time(NULL), 0x6964, (uint64_t)getpid(), 0);
    return a;
oom:
    glow_fail(GLOW_ENOMEM, "out of memory");
fail:
    api_close(a);
    return NULL;
}

/* ---- answers --------------------------------------------------------------------------- */

void api_response_free(api_response *r) {
    free(r->body);
    r->body = NULL;
}

void api_error(api_response *r, int status, const char *fmt, ...) {
    char msg[600];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    json_out o = {0};
    json_printf(&o, "{\"error\": ");
    json_string(&o, msg);
    json_printf(&o, "}\n");
    free(r->body);
    r->status = status;
    r->type = "application/json";
    r->body = (uint8_t *)o.buf;
    r->size = o.failed ? 0 : o.len;
    if (o.failed) r->status = 500;
}

static void answer_json(api_response *r, json_out *o) {
    if (o->failed) {
        free(o->buf);
        api_error(r, 500, "out of memory");
        return;
    }
    r->status = 200;
    r->type = "application/json";
    r->body = (uint8_t *)o->buf;
    r->size = o->len;
}

static void answer_png(api_response *r, const uint8_t *pixels, int h, int w, int c) {
    uint8_t *png;
    size_t size;
    if (glow_png_encode(&png, &size, pixels, h, w, c) != GLOW_OK) {
        api_error(r, 500, "%s", glow_last_error());
        return;
    }
    r->status = 200;
    r->type = "image/png";
    r->body = png;
    r->size = size;
}

/* What POST /api/encode answers. */
static void answer_encoded(api_response *r, uint64_t id, double bpd, int label) {
    char s[17];
    api_format_id(s, id);
    json_out o = {0};
    json_printf(&o, "{\"id\": \"%s\", \"bits_per_dim\": %.6f, \"label\": %d}\n", s, bpd, label);
    answer_json(r, &o);
}

/* ---- the model's work ------------------------------------------------------------------ */

/* Decode one latent and answer its PNG. */
static void decode_answer(api *a, const glow_real *z, int label, api_response *r) {
    const glow_config *mc = a->mc;
    glow_real *x = malloc(sizeof(glow_real) * a->dim);
    uint8_t *px = malloc(a->dim);
    char error[256];
    if (!x || !px) {
        api_error(r, 500, "out of memory");
    } else {
        int rc = api_decode(a, z, label, x, error, sizeof error);
        if (rc != GLOW_OK) {
            api_error(r, 500, "decoding: %s", error);
        } else {
            glow_postprocess(px, x, 1, a->dim, mc->n_bits);
            answer_png(r, px, mc->image_h, mc->image_w, mc->image_c);
        }
    }
    free(x);
    free(px);
}

/* Encode one image's pixels (the model's size), cache its latent, answer its id. */
static void encode_answer(api *a, const uint8_t *pixels, int label, int gallery,
                          api_response *r) {
    glow_real *x = malloc(sizeof(glow_real) * a->dim), *z = malloc(sizeof(glow_real) * a->dim);
    double bpd = 0;
    int rc = GLOW_ENOMEM;
    if (x && z) {
        glow_preprocess_center(x, pixels, 1, a->dim, a->mc->n_bits);
        int k = api_ctx_take(a);
        rc = glow_model_encode(a->ctx[k], a->m, x, &label, 1, z, NULL);
        if (rc == GLOW_OK) rc = glow_model_log_prob(a->ctx[k], a->m, x, &label, 1, NULL, &bpd);
        if (rc != GLOW_OK) api_error(r, 500, "encoding: %s", glow_ctx_error(a->ctx[k]));
        api_ctx_give(a, k);
    } else {
        api_error(r, 500, "out of memory");
    }
    if (rc == GLOW_OK) answer_encoded(r, api_cache_put(a, z, label, gallery, bpd), bpd, label);
    free(x);
    free(z);
}

/* ---- request parsing ------------------------------------------------------------------- */

/* Answer an error and leave the route. */
#define REFUSE(...) do { api_error(r, __VA_ARGS__); return; } while (0)

/* A JSON request body, or a 400. */
static int parse_body(json_doc *doc, const uint8_t *body, size_t size, api_response *r) {
    char err[128];
    if (json_parse(doc, (const char *)body, size, err, sizeof err)) {
        api_error(r, 400, "malformed JSON: %s", err);
        return -1;
    }
    if (doc->v[0].type != JSON_OBJECT) {
        json_free(doc);
        api_error(r, 400, "the body must be a JSON object");
        return -1;
    }
    return 0;
}

/* The member `key` of the body as a cached latent, or a 400/404. */
static int body_latent(api *a, const json_doc *doc, const char *key, glow_real *z, entry *e,
                       api_response *r) {
    int i = json_member(doc, 0, key);
    uint64_t id;
    if (i < 0 || doc->v[i].type != JSON_STRING) {
        api_error(r, 400, "\"%s\": expected the id of an encoded image (a string)", key);
        return -1;
    }
    if (api_parse_id(doc->v[i].str, &id) || api_cache_get(a, id, z, e)) {
        api_error(r, 404, "\"%s\": no encoded image with id '%.40s' (unknown, or evicted "
                  "from the cache: encode it again)", key, doc->v[i].str);
        return -1;
    }
    return 0;
}

/* ---- routes ---------------------------------------------------------------------------- */

static void route_info(api *a, api_response *r) {
    const glow_config *mc = a->mc;
    const char *slash = strrchr(a->cfg.checkpoint, '/');
    json_out o = {0};
    json_printf(&o, "{\"glow\": \"%s\", \"checkpoint\": ", glow_version());
    json_string(&o, slash ? slash + 1 : a->cfg.checkpoint);
    json_printf(&o, ", \"step\": %lld, \"image\": {\"height\": %d, \"width\": %d, \"channels\": "
                "%d}, \"n_bits\": %d, \"levels\": %d, \"depth\": %d, \"width\": %d, "
                "\"coupling\": \"%s\", \"permutation\": \"%s\", \"parameters\": %zu, "
                "\"latent_dim\": %zu, \"classes\": %d, \"class_conditional\": %s, ",
                (long long)a->state.step, mc->image_h, mc->image_w, mc->image_c, mc->n_bits,
                mc->levels, mc->depth, mc->width, glow_coupling_name(mc->coupling),
                glow_permutation_name(mc->permutation), glow_model_n_trainable(a->m), a->dim,
                mc->n_classes, mc->ycond ? "true" : "false");
    json_printf(&o, "\"attributes\": [");
    for (int i = 0; i < a->dirs.n; i++) {
        if (i) json_printf(&o, ", ");
        json_string(&o, a->dirs.names[i]);
    }
    json_printf(&o, "], \"gallery\": %d, \"gallery_labels\": [", a->gallery_n);
    for (int i = 0; a->gallery.labels && i < a->gallery_n; i++)
        json_printf(&o, "%s%d", i ? ", " : "", a->gallery.labels[i]);
    json_printf(&o, "], \"class_names\": [");
    for (int i = 0; a->gallery.class_names && i < a->gallery.n_classes; i++) {
        if (i) json_printf(&o, ", ");
        json_string(&o, a->gallery.class_names[i]);
    }
    pthread_mutex_lock(&a->lock);
    long long decodes = a->decodes, batches = a->batches;
    pthread_mutex_unlock(&a->lock);
    json_printf(&o, "], \"max_samples\": %d, \"max_upload\": %zu, \"cache_entries\": %d, "
                "\"workers\": %d, \"batch\": %d, \"decodes\": %lld, \"decode_batches\": %lld}\n",
                a->cfg.max_samples, a->cfg.max_upload, a->cache_n, a->cfg.workers, a->cfg.batch,
                decodes, batches);
    answer_json(r, &o);
}

static void route_sample(api *a, const char *query, api_response *r) {
    param p[MAX_PARAMS];
    int np = api_parse_query(query, p, r);
    if (np < 0) return;
    double t = 0.7, n = 16, seed = 0;
    for (int i = 0; i < np; i++) {
        const char *k = p[i].key, *v = p[i].value;
        if (!strcmp(k, "temperature")) {
            if (api_parse_number(v, 0, 2, &t))
                REFUSE(400, "temperature '%s': expected a number from 0 to 2", v);
        } else if (!strcmp(k, "n")) {
            if (api_parse_number(v, 1, a->cfg.max_samples, &n) || n != floor(n))
                REFUSE(400, "n '%s': expected a whole number from 1 to %d", v,
                                 a->cfg.max_samples);
        } else if (!strcmp(k, "seed")) {
            if (api_parse_number(v, 0, 9007199254740992.0, &seed) || seed != floor(seed))
                REFUSE(400, "seed '%s': expected a whole number from 0 to 2^53", v);
        } else {
            REFUSE(400, "unknown query parameter '%s' (temperature, n, seed)", k);
        }
    }
    const glow_config *mc = a->mc;
    int count = (int)n, cols = (int)ceil(sqrt(count));
    glow_real *x = malloc(sizeof(glow_real) * a->dim * count);
    uint8_t *px = malloc(a->dim * count), *grid = NULL;
    int gh, gw;
    if (!x || !px) {
        api_error(r, 500, "out of memory");
    } else {
        int k = api_ctx_take(a);
        int rc = glow_model_sample(a->ctx[k], a->m, NULL, count, t, (uint64_t)seed, x);
        if (rc != GLOW_OK) api_error(r, 500, "sampling: %s", glow_ctx_error(a->ctx[k]));
        api_ctx_give(a, k);
        if (rc == GLOW_OK) {
            glow_postprocess(px, x, count, a->dim, mc->n_bits);
            if (glow_grid_make(&grid, &gh, &gw, px, count, mc->image_h, mc->image_w,
                               mc->image_c, cols, 2) != GLOW_OK)
                api_error(r, 500, "%s", glow_last_error());
            else
                answer_png(r, grid, gh, gw, mc->image_c);
        }
    }
    free(x);
    free(px);
    free(grid);
}

static void route_gallery(api *a, const char *name, api_response *r) {
    long i;
    if (api_parse_index(name, ".png", a->gallery_n, &i))
        REFUSE(404, "no gallery image '%.40s' (the gallery has %d: 0.png to "
                         "%d.png)", name, a->gallery_n, a->gallery_n - 1);
    const glow_dataset *g = &a->gallery;
    answer_png(r, g->pixels + (size_t)i * a->dim, g->h, g->w, g->c);
}

/* Bring a decoded image to the model's shape as the loaders do (centre crop, resize),
 * and to its channels: gray replicated to RGB, RGB to gray by Rec. 601 luma. */
static uint8_t *fit_to_model(api *a, const uint8_t *px, int h, int w, int c) {
    const glow_config *mc = a->mc;
    uint8_t *conv = NULL, *out = malloc(a->dim);
    if (!out) return NULL;
    if (c != mc->image_c) {
        size_t n = (size_t)h * w;
        if (!(conv = malloc(n * mc->image_c))) { free(out); return NULL; }
        for (size_t i = 0; i < n; i++) {
            if (mc->image_c == 1)
                conv[i] = (uint8_t)((299 * px[3 * i] + 587 * px[3 * i + 1] + 114 * px[3 * i + 2]
                                     + 500) / 1000);
            else
                for (int k = 0; k < mc->image_c; k++) conv[i * mc->image_c + k] = px[i];
        }
        px = conv;
    }
    int rc = mc->image_h == mc->image_w
           ? glow_image_fit(out, mc->image_h, px, h, w, mc->image_c)
           : glow_image_resize(out, mc->image_h, mc->image_w, px, h, w, mc->image_c);
    free(conv);
    if (rc != GLOW_OK) { free(out); return NULL; }
    return out;
}

static void route_encode(api *a, const char *query, const char *type, const uint8_t *body,
                         size_t size, api_response *r) {
    param p[MAX_PARAMS];
    int np = api_parse_query(query, p, r), label = 0;
    if (np < 0) return;
    for (int i = 0; i < np; i++) {
        double v;
        if (strcmp(p[i].key, "label"))
            REFUSE(400, "unknown query parameter '%s' (label)", p[i].key);
        if (!a->mc->n_classes || api_parse_number(p[i].value, 0, a->mc->n_classes - 1, &v) ||
            v != floor(v))
            REFUSE(400, "label '%s': expected a class from 0 to %d", p[i].value,
                             a->mc->n_classes - 1);
        label = (int)v;
    }
    int is_json = type ? !strncmp(type, "application/json", 16) : size > 0 && body[0] == '{';
    if (is_json) {
        json_doc doc;
        if (parse_body(&doc, body, size, r)) return;
        int i = json_member(&doc, 0, "gallery");
        double g = i < 0 ? -1 : doc.v[i].number;
        int ok = i >= 0 && doc.v[i].type == JSON_NUMBER && g == floor(g);
        json_free(&doc);
        if (!ok) REFUSE(400, "expected {\"gallery\": I}, I a whole number");
        if (g < 0 || g >= a->gallery_n)
            REFUSE(404, "no gallery image %.0f (the gallery has %d)", g, a->gallery_n);
        int gi = (int)g;
        entry e;
        uint64_t id = api_cache_find_gallery(a, gi, &e);
        if (id) {
            answer_encoded(r, id, e.bpd, e.label);
            return;
        }
        const glow_dataset *gd = &a->gallery;
        int l = gd->labels && a->mc->n_classes && gd->labels[gi] < a->mc->n_classes ? gd->labels[gi] : 0;
        encode_answer(a, gd->pixels + (size_t)gi * a->dim, l, gi, r);
        return;
    }
    if (size == 0) REFUSE(400, "empty body: send a PNG or JPEG, or {\"gallery\": I}");
    uint8_t *px;
    int h, w, c;
    if (glow_image_decode(body, size, &px, &h, &w, &c) != GLOW_OK)
        REFUSE(400, "%s", glow_last_error());
    uint8_t *fitted = fit_to_model(a, px, h, w, c);
    free(px);
    if (!fitted) REFUSE(500, "out of memory");
    encode_answer(a, fitted, label, -1, r);
    free(fitted);
}

static void route_image(api *a, const char *name, api_response *r) {
    char id_s[17] = "";
    uint64_t id;
    if (strlen(name) == 20 && !strcmp(name + 16, ".png")) memcpy(id_s, name, 16); /* "ID.png" */
    glow_real *z = malloc(sizeof(glow_real) * a->dim);
    entry e;
    if (!z) REFUSE(500, "out of memory");
    if (api_parse_id(id_s, &id) || api_cache_get(a, id, z, &e))
        api_error(r, 404, "no encoded image '%.40s' (unknown, or evicted from the cache)", name);
    else
        decode_answer(a, z, e.label, r);
    free(z);
}

static void route_manipulate(api *a, const uint8_t *body, size_t size, api_response *r) {
    json_doc doc;
    if (parse_body(&doc, body, size, r)) return;
    glow_real *z = malloc(sizeof(glow_real) * a->dim);
    entry e;
    if (!z) api_error(r, 500, "out of memory");
    else if (!body_latent(a, &doc, "id", z, &e, r)) {
        int al = json_member(&doc, 0, "alphas"), ok = 1;
        if (al >= 0 && doc.v[al].type != JSON_OBJECT) {
            api_error(r, 400, "\"alphas\": expected an object of attribute names and numbers");
            ok = 0;
        }
        /* Check every member before moving along any of them. */
        for (int c = al >= 0 && ok ? doc.v[al].first : 0; c && ok; c = doc.v[c].next) {
            const json_value *v = &doc.v[c];
            int d = glow_directions_find(&a->dirs, v->key);
            if (d < 0) {
                api_error(r, 400, "unknown attribute '%.64s'%s", v->key,
                          a->dirs.n ? "" : " (the server has no --attributes)");
                ok = 0;
            } else if (v->type != JSON_NUMBER || fabs(v->number) > 10) {
                api_error(r, 400, "alpha of '%.64s': expected a number from -10 to 10", v->key);
                ok = 0;
            }
        }
        for (int c = al >= 0 && ok ? doc.v[al].first : 0; c; c = doc.v[c].next) {
            const glow_real *dir = a->dir_z + a->dim * glow_directions_find(&a->dirs, doc.v[c].key);
            glow_real alpha = (glow_real)doc.v[c].number;
            for (size_t j = 0; j < a->dim; j++) z[j] += alpha * dir[j];
        }
        if (ok) decode_answer(a, z, e.label, r);
    }
    free(z);
    json_free(&doc);
}

static void route_mix(api *a, const uint8_t *body, size_t size, api_response *r) {
    json_doc doc;
    if (parse_body(&doc, body, size, r)) return;
    glow_real *za = malloc(sizeof(glow_real) * a->dim), *zb = malloc(sizeof(glow_real) * a->dim);
    entry ea, eb;
    int ti = json_member(&doc, 0, "t");
    if (!za || !zb) api_error(r, 500, "out of memory");
    else if (ti < 0 || doc.v[ti].type != JSON_NUMBER || doc.v[ti].number < 0 ||
             doc.v[ti].number > 1)
        api_error(r, 400, "\"t\": expected a number from 0 to 1");
    else if (!body_latent(a, &doc, "a", za, &ea, r) && !body_latent(a, &doc, "b", zb, &eb, r)) {
        double t = doc.v[ti].number;
        for (size_t j = 0; j < a->dim; j++) za[j] = (glow_real)((1 - t) * za[j] + t * zb[j]);
        decode_answer(a, za, t < 0.5 ? ea.label : eb.label, r);
    }
    free(za);
    free(zb);
    json_free(&doc);
}

void api_handle(api *a, const char *method, const char *target, const char *type,
                const uint8_t *body, size_t size, api_response *r) {
    double t0 = now_ms();
    memset(r, 0, sizeof *r);
    /* Split "path?query"; the path is matched as sent (no decoding, no dot segments). */
    char path[256];
    const char *q = strchr(target, '?');
    size_t plen = q ? (size_t)(q - target) : strlen(target);
    if (plen >= sizeof path) REFUSE(404, "no such page");
    memcpy(path, target, plen);
    path[plen] = 0;
    const char *query = q ? q + 1 : "";
    int get = !strcmp(method, "GET") || !strcmp(method, "HEAD"), post = !strcmp(method, "POST");
    const char *rest;
#define ROUTE(p) (!strcmp(path, p))
#define PREFIX(p) (!strncmp(path, p, strlen(p)) && (rest = path + strlen(p)))
#define NEEDS(ok, methods) if (!(ok)) { api_error(r, 405, "%s takes %s", path, methods); \
                                        r->allow = methods; return; }
    if (ROUTE("/") || ROUTE("/index.html")) {
        NEEDS(get, "GET");
        if (!(r->body = malloc(a->cfg.page_size + 1))) REFUSE(500, "out of memory");
        memcpy(r->body, a->cfg.page, a->cfg.page_size);
        r->status = 200, r->type = "text/html; charset=utf-8", r->size = a->cfg.page_size;
        return;
    }
    if (ROUTE("/api/info")) { NEEDS(get, "GET"); route_info(a, r); }
    else if (ROUTE("/api/sample")) { NEEDS(get, "GET"); route_sample(a, query, r); }
    else if (PREFIX("/api/gallery/")) { NEEDS(get, "GET"); route_gallery(a, rest, r); }
    else if (PREFIX("/api/image/")) { NEEDS(get, "GET"); route_image(a, rest, r); }
    else if (ROUTE("/api/encode")) { NEEDS(post, "POST"); route_encode(a, query, type, body, size, r); }
    else if (ROUTE("/api/manipulate")) { NEEDS(post, "POST"); route_manipulate(a, body, size, r); }
    else if (ROUTE("/api/mix")) { NEEDS(post, "POST"); route_mix(a, body, size, r); }
    else api_error(r, 404, "no such page '%.60s' (see docs/API.md)", path);
#undef ROUTE
#undef PREFIX
#undef NEEDS
    r->compute_ms = now_ms() - t0;
}
