/* checkpoint.c: save and load checkpoints: the hyperparameters, the training counters, the
 * optimizer's settings, the tensor directory and the flat buffers (weights, Adam moments,
 * Polyak average), little-endian, ending with a CRC-32. docs/FORMAT.md is the byte layout;
 * this file and tools/glow_checkpoint.py are its two readers.
 *
 * Saving streams the file to "<path>.tmp.<pid>", flushes and fsyncs it, renames it over
 * path and fsyncs the directory, so path always holds either the old checkpoint or the
 * complete new one; the temp files of saves that were killed are removed by the next save. Loading reads the whole file, checks its length and checksum, builds
 * the model from the stored hyperparameters and compares its tensor table with the stored
 * directory before anything is handed back. Values are encoded byte by byte, so the code
 * does not depend on the host's byte order; a file written by the float build (element
 * size 4) loads into the double build and the other way round (rounded to float). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>
#include "glow.h"
#include "model.h"

#define MAGIC "GLOWCKPT"
#define VERSION 2u      /* written; version 1 (no affine scale field: sigmoid) still loads */
#define HEADER_SIZE 296 /* magic .. affine scale: the fixed part, see docs/FORMAT.md */
#define HEADER_SIZE_V1 272
static size_t header_size(uint32_t version) { return version == 1 ? HEADER_SIZE_V1 : HEADER_SIZE; }
#define NAME_FIELD 16   /* coupling, permutation and optimizer names, NUL-padded */

static const char *section_names[] = {"params", "moment1", "moment2", "average"};

/* ---- little-endian encoding ------------------------------------------------------------ */

static void put_u16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)v, p[1] = (uint8_t)(v >> 8); }
static void put_u32(uint8_t *p, uint32_t v) {
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}
static void put_u64(uint8_t *p, uint64_t v) {
    for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i));
}
static void put_f64(uint8_t *p, double v) {
    uint64_t bits;
    memcpy(&bits, &v, 8);
    put_u64(p, bits);
}
static uint16_t get_u16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }
static uint32_t get_u32(const uint8_t *p) {
    uint32_t v = 0;
    for (int i = 0; i < 4; i++) v |= (uint32_t)p[i] << (8 * i);
    return v;
}
static uint64_t get_u64(const uint8_t *p) {
    uint64_t v = 0;
    for (int i = 0; i < 8; i++) v |= (uint64_t)p[i] << (8 * i);
    return v;
}
static double get_f64(const uint8_t *p) {
    uint64_t bits = get_u64(p);
    double v;
    memcpy(&v, &bits, 8);
    return v;
}
static void put_real(uint8_t *p, glow_real v) {
    if (sizeof(glow_real) == 4) {
        float f = (float)v;
        uint32_t bits;
        memcpy(&bits, &f, 4);
        put_u32(p, bits);
    } else {
        put_f64(p, (double)v);
    }
}
/* An element of a file with element size `es` (4 or 8) as this build's real. */
static glow_real get_real(const uint8_t *p, unsigned es) {
    if (es == 4) {
        uint32_t bits = get_u32(p);
        float f;
        memcpy(&f, &bits, 4);
        return (glow_real)f;
    }
    return (glow_real)get_f64(p);
}

static void put_name(uint8_t *p, const char *name) {
    memset(p, 0, NAME_FIELD);
    strncpy((char *)p, name, NAME_FIELD - 1);
}

/* zlib's crc32 takes a uInt length: feed large blocks in pieces. */
static uLong crc_of(uLong crc, const uint8_t *p, size_t n) {
    for (size_t done = 0; done < n;) {
        uInt k = n - done > (1u << 30) ? (1u << 30) : (uInt)(n - done);
        crc = crc32(crc, p + done, k);
        done += k;
    }
    return crc;
}

/* ---- saving ----------------------------------------------------------------------------- */

/* A file being written, with the running CRC; the first failure sticks in err. */
typedef struct writer {
    FILE *f;
    uLong crc;
    uint64_t n;
    int err;
} writer;

static void write_bytes(writer *w, const void *data, size_t n) {
    if (w->err || n == 0) return;
    if (fwrite(data, 1, n, w->f) != n) {
        w->err = errno ? errno : EIO;
        return;
    }
    w->crc = crc_of(w->crc, data, n);
    w->n += n;
}

/* One section: its name, its byte length, then n elements of buf. */
static void write_section(writer *w, const char *name, const glow_real *buf, size_t n) {
    uint8_t head[2 + 16 + 8];
    size_t len = strlen(name);
    put_u16(head, (uint16_t)len);
    memcpy(head + 2, name, len);
    put_u64(head + 2 + len, (uint64_t)n * sizeof(glow_real));
    write_bytes(w, head, 2 + len + 8);
    uint8_t chunk[1 << 15];
    const size_t per = sizeof chunk / sizeof(glow_real);
    for (size_t i = 0; i < n && !w->err; i += per) {
        size_t k = n - i < per ? n - i : per;
        for (size_t j = 0; j < k; j++) put_real(chunk + j * sizeof(glow_real), buf[i + j]);
        write_bytes(w, chunk, k * sizeof(glow_real));
    }
}

static size_t section_size(const char *name, size_t n) {
    return 2 + strlen(name) + 8 + n * sizeof(glow_real);
}

/* The fixed header and the tensor directory, in a malloc'd buffer of *size bytes. */
static uint8_t *encode_header(size_t *size, const glow_model *m, const glow_optimizer *opt,
                              const glow_train_state *state, uint64_t file_length) {
    const glow_config *cfg = glow_model_config(m);
    int nt = glow_model_n_tensors(m);
    size_t dir = 0;
    for (int i = 0; i < nt; i++) {
        const glow_tensor_info *t = glow_model_tensor(m, i);
        dir += 2 + strlen(t->name) + 4 + 4 * (size_t)t->ndim + 4 + 4 + 8 + 8;
    }
    uint8_t *h = calloc(1, HEADER_SIZE + dir);
    if (!h) return NULL;
    memcpy(h, MAGIC, 8);
    put_u32(h + 8, VERSION);
    put_u32(h + 12, (uint32_t)sizeof(glow_real));
    put_u64(h + 16, file_length);
    int32_t ints[] = {cfg->image_h, cfg->image_w, cfg->image_c, cfg->levels, cfg->depth,
                      cfg->width, (int32_t)cfg->coupling, (int32_t)cfg->permutation};
    for (int i = 0; i < 8; i++) put_u32(h + 24 + 4 * i, (uint32_t)ints[i]);
    put_name(h + 56, glow_coupling_name(cfg->coupling));
    put_name(h + 72, glow_permutation_name(cfg->permutation));
    put_u32(h + 88, (uint32_t)cfg->learntop);
    put_u32(h + 92, (uint32_t)cfg->n_classes);
    put_u32(h + 96, (uint32_t)cfg->ycond);
    put_u32(h + 100, (uint32_t)cfg->n_bits);
    put_f64(h + 104, cfg->weight_y);
    put_u64(h + 112, cfg->seed);
    if (state) {
        put_u32(h + 120, 1);
        put_u32(h + 124, (uint32_t)state->batch);
        put_u64(h + 128, (uint64_t)state->step);
        put_u64(h + 136, (uint64_t)state->epoch);
        put_u64(h + 144, (uint64_t)state->batch_in_epoch);
        put_u64(h + 152, (uint64_t)state->skipped);
        put_u64(h + 160, state->data_seed);
    }
    if (opt) {
        const glow_optim_config *oc = &opt->cfg;
        put_u32(h + 168, 1);
        put_u32(h + 172, (uint32_t)oc->kind);
        put_name(h + 176, oc->kind == GLOW_ADAMAX ? "adamax" : "adam");
        put_f64(h + 192, oc->lr);
        put_f64(h + 200, oc->beta1);
        put_f64(h + 208, oc->beta2);
        put_f64(h + 216, oc->eps);
        put_f64(h + 224, oc->grad_clip);
        put_f64(h + 232, oc->polyak);
        put_u32(h + 240, (uint32_t)oc->warmup);
        put_u64(h + 248, (uint64_t)opt->step); /* 244..247: reserved, 0 */
    }
    put_u32(h + 256, (uint32_t)nt);
    put_u32(h + 260, opt ? 4 : 1);
    put_u64(h + 264, glow_model_n_params(m));
    put_u32(h + 272, (uint32_t)cfg->affine_scale);
    put_u32(h + 276, (uint32_t)cfg->prior_logs);
    put_name(h + 280, glow_affine_scale_name(cfg->affine_scale));
    uint8_t *p = h + HEADER_SIZE;
    for (int i = 0; i < nt; i++) {
        const glow_tensor_info *t = glow_model_tensor(m, i);
        size_t len = strlen(t->name);
        put_u16(p, (uint16_t)len), p += 2;
        memcpy(p, t->name, len), p += len;
        put_u32(p, (uint32_t)t->ndim), p += 4;
        for (int d = 0; d < t->ndim; d++) put_u32(p, (uint32_t)t->shape[d]), p += 4;
        put_u32(p, (uint32_t)t->trainable), p += 4;
        put_u32(p, (uint32_t)sizeof(glow_real)), p += 4;
        put_u64(p, t->offset), p += 8;
        put_u64(p, t->size), p += 8;
    }
    *size = HEADER_SIZE + dir;
    return h;
}

/* The directory that holds path ("." if none) into dir; returns path's last component,
 * or NULL if the directory's name does not fit. */
static const char *split_path(const char *path, char *dir, size_t size) {
    const char *slash = strrchr(path, '/');
    size_t len = !slash ? 0 : slash == path ? 1 : (size_t)(slash - path);
    if (len + 2 > size) return NULL;
    if (len) memcpy(dir, path, len);
    else dir[len++] = '.';
    dir[len] = 0;
    return slash ? slash + 1 : path;
}

/* Make the rename durable: fsync the directory that holds path. */
static int sync_directory(const char *path) {
    char dir[4096];
    if (!split_path(path, dir, sizeof dir)) return EINVAL;
    int fd = open(dir, O_RDONLY | O_DIRECTORY);
    if (fd < 0) return errno;
    int rc = fsync(fd) == 0 || errno == EINVAL ? 0 : errno; /* EINVAL: cannot be synced */
    close(fd);
    return rc;
}

/* A save killed before its rename leaves "<path>.tmp.<pid>" behind. Remove those whose
 * process is gone (a live one may be another run saving to the same path right now). */
static void remove_stale_temps(const char *path) {
    char dir[4096], stale[4400];
    const char *base = split_path(path, dir, sizeof dir);
    if (!base) return;
    size_t base_len = strlen(base);
    DIR *d = opendir(dir);
    if (!d) return;
    for (struct dirent *e; (e = readdir(d));) {
        const char *name = e->d_name;
        if (strncmp(name, base, base_len) != 0 || strncmp(name + base_len, ".tmp.", 5) != 0)
            continue;
        char *end;
        long pid = strtol(name + base_len + 5, &end, 10);
        if (*end || pid <= 0 || pid == (long)getpid()) continue;
        if (kill((pid_t)pid, 0) == 0 || errno != ESRCH) continue;
        if ((size_t)snprintf(stale, sizeof stale, "%s/%s", dir, name) < sizeof stale)
            remove(stale);
    }
    closedir(d);
}

int glow_checkpoint_save(const char *path, const glow_model *m, const glow_optimizer *opt,
                         const glow_train_state *state) {
    if (!path || !m) return glow_fail(GLOW_EINVAL, "checkpoint save: no path or no model");
    size_t n = glow_model_n_params(m);
    /* The accessor takes a mutable model; saving only reads the buffer. */
    const glow_real *params = glow_model_params((glow_model *)m);
    if (opt && (!opt->m || !opt->v || !opt->avg || opt->n != n))
        return glow_fail(GLOW_EINVAL, "%s: the optimizer has %zu values, the model %zu", path,
                         opt->m ? opt->n : 0, n);
    uint64_t length = 0;
    size_t head_size;
    uint8_t *head = encode_header(&head_size, m, opt, state, 0);
    if (!head) return glow_fail(GLOW_ENOMEM, "%s: out of memory", path);
    length = head_size + 4;
    for (int s = 0; s < (opt ? 4 : 1); s++) length += section_size(section_names[s], n);
    put_u64(head + 16, length);

    remove_stale_temps(path);
    char tmp[4200];
    if ((size_t)snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid()) >= sizeof tmp) {
        free(head);
        return glow_fail(GLOW_EINVAL, "%s: path too long", path);
    }
    writer w = {fopen(tmp, "wb"), crc32(0L, Z_NULL, 0), 0, 0};
    if (!w.f) {
        int e = errno;
        free(head);
        return glow_fail(GLOW_EIO, "%s: cannot create %s: %s", path, tmp, strerror(e));
    }
    errno = 0;
    write_bytes(&w, head, head_size);
    free(head);
    write_section(&w, section_names[0], params, n);
    if (opt) {
        write_section(&w, section_names[1], opt->m, n);
        write_section(&w, section_names[2], opt->v, n);
        write_section(&w, section_names[3], opt->avg, n);
    }
    uint8_t crc[4];
    put_u32(crc, (uint32_t)w.crc);
    write_bytes(&w, crc, 4);
    const char *what = "writing";
    if (!w.err && w.n != length) w.err = EIO, what = "sizing"; /* a bug, not bad input */
    if (!w.err && fflush(w.f) != 0) w.err = errno, what = "flushing";
    if (!w.err && fsync(fileno(w.f)) != 0) w.err = errno, what = "syncing";
    if (fclose(w.f) != 0 && !w.err) w.err = errno, what = "closing";
    if (!w.err && rename(tmp, path) != 0) w.err = errno, what = "renaming";
    if (w.err) {
        remove(tmp);
        return glow_fail(GLOW_EIO, "%s: %s %s failed: %s (the previous file is unchanged)",
                         path, what, tmp, strerror(w.err));
    }
    int e = sync_directory(path);
    if (e) return glow_fail(GLOW_EIO, "%s: written, but syncing its directory failed: %s", path,
                            strerror(e));
    return GLOW_OK;
}

/* ---- loading ---------------------------------------------------------------------------- */

/* The whole file in memory. */
static int read_file(const char *path, uint8_t **data, size_t *size) {
    *data = NULL;
    *size = 0;
    FILE *f = fopen(path, "rb");
    if (!f) return glow_fail(GLOW_EIO, "%s: cannot open: %s", path, strerror(errno));
    size_t cap = 1 << 16, n = 0;
    uint8_t *buf = malloc(cap);
    for (;;) {
        if (!buf) {
            fclose(f);
            return glow_fail(GLOW_ENOMEM, "%s: out of memory reading the file", path);
        }
        n += fread(buf + n, 1, cap - n, f);
        if (n < cap) break;
        uint8_t *bigger = realloc(buf, cap * 2);
        if (!bigger) free(buf);
        buf = bigger;
        cap *= 2;
    }
    int failed = ferror(f);
    fclose(f);
    if (failed) {
        free(buf);
        return glow_fail(GLOW_EIO, "%s: read error", path);
    }
    *data = buf;
    *size = n;
    return GLOW_OK;
}

/* A bounds-checked cursor over the directory and sections (the checksum already matched,
 * so running off the end means a malformed file from a faulty writer). */
typedef struct cursor {
    const uint8_t *p;
    size_t pos, end;
} cursor;

static const uint8_t *take(cursor *c, size_t n) {
    if (n > c->end - c->pos) return NULL;
    const uint8_t *p = c->p + c->pos;
    c->pos += n;
    return p;
}

/* A length-prefixed name into out (NUL-terminated); 0 if it does not fit. */
static int take_name(cursor *c, char *out, size_t cap) {
    const uint8_t *p = take(c, 2);
    if (!p) return 0;
    size_t len = get_u16(p);
    if (len >= cap || !(p = take(c, len))) return 0;
    memcpy(out, p, len);
    out[len] = 0;
    return 1;
}

static void shape_string(char *out, size_t cap, int ndim, const int *shape) {
    size_t k = (size_t)snprintf(out, cap, "(");
    for (int d = 0; d < ndim && k < cap; d++)
        k += (size_t)snprintf(out + k, cap - k, d ? ",%d" : "%d", shape[d]);
    if (k < cap) snprintf(out + k, cap - k, ")");
}

/* The fewest bytes a directory entry takes: name length, a one-letter name, ndim, one
 * dimension, trainable flag, element size, offset and size. */
#define DIRECTORY_ENTRY_MIN (2 + 1 + 4 + 4 + 4 + 4 + 8 + 8)

/* Compare the stored directory with the model's table; advances c past it. */
static int check_directory(const char *path, cursor *c, const glow_model *m, int nt,
                           unsigned es) {
    if (nt != glow_model_n_tensors(m))
        return glow_fail(GLOW_EFORMAT, "%s: tensor mismatch: the file lists %d tensors, the "
                         "model its hyperparameters build has %d", path, nt,
                         glow_model_n_tensors(m));
    for (int i = 0; i < nt; i++) {
        const glow_tensor_info *t = glow_model_tensor(m, i);
        char name[256], want[64], got[64];
        const uint8_t *p;
        if (!take_name(c, name, sizeof name) || !(p = take(c, 4)))
            return glow_fail(GLOW_EFORMAT, "%s: malformed tensor directory at entry %d", path, i);
        uint32_t ndim = get_u32(p);
        int shape[4] = {0};
        if (ndim < 1 || ndim > 4 || !(p = take(c, 4 * ndim + 4 + 4 + 8 + 8)))
            return glow_fail(GLOW_EFORMAT, "%s: malformed tensor directory at entry %d (\"%s\")",
                             path, i, name);
        for (uint32_t d = 0; d < ndim; d++) shape[d] = (int)get_u32(p + 4 * d);
        p += 4 * ndim;
        uint32_t trainable = get_u32(p), esize = get_u32(p + 4);
        uint64_t offset = get_u64(p + 8), size = get_u64(p + 16);
        shape_string(want, sizeof want, t->ndim, t->shape);
        shape_string(got, sizeof got, (int)ndim, shape);
        if (strcmp(name, t->name) || (int)ndim != t->ndim ||
            memcmp(shape, t->shape, sizeof(int) * ndim) || offset != t->offset ||
            size != t->size || trainable != (uint32_t)t->trainable)
            return glow_fail(GLOW_EFORMAT, "%s: tensor mismatch at entry %d: the file has \"%s\" "
                             "%s, the model its hyperparameters build has \"%s\" %s", path, i,
                             name, got, t->name, want);
        if (esize != es)
            return glow_fail(GLOW_EFORMAT, "%s: tensor \"%s\" has element size %u in a file of "
                             "element size %u", path, name, esize, es);
    }
    return GLOW_OK;
}

static int parse_config(const char *path, const uint8_t *h, glow_config *cfg) {
    uint32_t version = get_u32(h + 8);
    memset(cfg, 0, sizeof *cfg);
    cfg->image_h = (int32_t)get_u32(h + 24);
    cfg->image_w = (int32_t)get_u32(h + 28);
    cfg->image_c = (int32_t)get_u32(h + 32);
    cfg->levels = (int32_t)get_u32(h + 36);
    cfg->depth = (int32_t)get_u32(h + 40);
    cfg->width = (int32_t)get_u32(h + 44);
    cfg->coupling = (glow_coupling)(int32_t)get_u32(h + 48);
    cfg->permutation = (glow_permutation)(int32_t)get_u32(h + 52);
    cfg->learntop = (int32_t)get_u32(h + 88);
    cfg->n_classes = (int32_t)get_u32(h + 92);
    cfg->ycond = (int32_t)get_u32(h + 96);
    cfg->n_bits = (int32_t)get_u32(h + 100);
    cfg->weight_y = get_f64(h + 104);
    cfg->seed = get_u64(h + 112);
    /* Version 1 had only the paper's scale and free prior log stds. */
    cfg->affine_scale = version == 1 ? GLOW_SCALE_SIGMOID : (glow_affine_scale)get_u32(h + 272);
    cfg->prior_logs = version == 1 ? GLOW_PRIOR_FREE : (glow_prior_logs)get_u32(h + 276);
    /* The codes rule; the names are for readers, but they must agree. */
    char cname[NAME_FIELD + 1] = {0}, pname[NAME_FIELD + 1] = {0}, sname[NAME_FIELD + 1] = {0};
    memcpy(cname, h + 56, NAME_FIELD);
    memcpy(pname, h + 72, NAME_FIELD);
    if (version == 1) strcpy(sname, "sigmoid");
    else memcpy(sname, h + 280, NAME_FIELD);
    if (glow_coupling_parse(cname) != (int)cfg->coupling ||
        glow_permutation_parse(pname) != (int)cfg->permutation ||
        glow_affine_scale_parse(sname) != (int)cfg->affine_scale)
        return glow_fail(GLOW_EFORMAT, "%s: coupling %d \"%s\" / permutation %d \"%s\" / affine "
                         "scale %d \"%s\": codes and names disagree", path, (int)cfg->coupling,
                         cname, (int)cfg->permutation, pname, (int)cfg->affine_scale, sname);
    if (glow_config_check(cfg) != GLOW_OK)
        return glow_fail(GLOW_EFORMAT, "%s: bad hyperparameters: %s", path, glow_last_error());
    return GLOW_OK;
}

/* Check everything about the bytes that does not need the model: magic, version, length,
 * checksum, element size. */
static int check_envelope(const char *path, const uint8_t *d, size_t size) {
    if (size < 8 && memcmp(d, MAGIC, size) == 0)
        return glow_fail(GLOW_EFORMAT, "%s: truncated: %zu bytes, not even the magic", path,
                         size);
    if (size < 8 || memcmp(d, MAGIC, 8) != 0)
        return glow_fail(GLOW_EFORMAT, "%s: not a glow checkpoint (bad magic)", path);
    if (size < 12)
        return glow_fail(GLOW_EFORMAT, "%s: truncated: %zu bytes, no version", path, size);
    uint32_t version = get_u32(d + 8);
    if (version < 1 || version > VERSION)
        return glow_fail(GLOW_EFORMAT, "%s: unsupported checkpoint version %u (this build "
                         "reads versions 1 to %u)", path, version, VERSION);
    if (size < header_size(version) + 4)
        return glow_fail(GLOW_EFORMAT, "%s: truncated: %zu bytes, shorter than the %zu-byte "
                         "header", path, size, header_size(version));
    uint64_t declared = get_u64(d + 16);
    uint32_t stored = get_u32(d + size - 4);
    uLong crc = crc_of(crc32(0L, Z_NULL, 0), d, size - 4);
    if (declared != size) {
        /* If the bytes present check out with the actual length in the length field, it is
         * that field that was damaged, not the file that was cut. */
        uint8_t actual[8];
        put_u64(actual, size);
        uLong alt = crc_of(crc_of(crc_of(crc32(0L, Z_NULL, 0), d, 16), actual, 8), d + 24,
                           size - 28);
        if ((uint32_t)alt == stored)
            return glow_fail(GLOW_EFORMAT, "%s: corrupted: the length field says %llu bytes, "
                             "the file has %zu", path, (unsigned long long)declared, size);
        if (declared > size)
            return glow_fail(GLOW_EFORMAT, "%s: truncated: %zu of %llu bytes", path, size,
                             (unsigned long long)declared);
        return glow_fail(GLOW_EFORMAT, "%s: %zu bytes, but the header says %llu (trailing "
                         "data)", path, size, (unsigned long long)declared);
    }
    if ((uint32_t)crc != stored)
        return glow_fail(GLOW_EFORMAT, "%s: corrupted: checksum mismatch (stored %08x, "
                         "computed %08x)", path, stored, (uint32_t)crc);
    uint32_t es = get_u32(d + 12);
    if (es != 4 && es != 8)
        return glow_fail(GLOW_EFORMAT, "%s: unsupported element size %u (4: float32, 8: "
                         "float64)", path, es);
    return GLOW_OK;
}

/* Read the named section into buf (n elements), converting the element size. */
static int read_section(const char *path, cursor *c, const char *want, glow_real *buf,
                        size_t n, unsigned es) {
    char name[64];
    const uint8_t *p;
    if (!take_name(c, name, sizeof name) || !(p = take(c, 8)))
        return glow_fail(GLOW_EFORMAT, "%s: malformed section header (expected \"%s\")", path,
                         want);
    if (strcmp(name, want))
        return glow_fail(GLOW_EFORMAT, "%s: section \"%s\" where \"%s\" belongs", path, name,
                         want);
    uint64_t bytes = get_u64(p);
    if (bytes != (uint64_t)n * es || !(p = take(c, bytes)))
        return glow_fail(GLOW_EFORMAT, "%s: section \"%s\" has %llu bytes, expected %llu", path,
                         name, (unsigned long long)bytes, (unsigned long long)n * es);
    if (buf)
        for (size_t i = 0; i < n; i++) buf[i] = get_real(p + i * es, es);
    return GLOW_OK;
}

glow_model *glow_checkpoint_load(const char *path, int use_average, glow_optimizer *opt,
                                 glow_train_state *state) {
    if (opt) memset(opt, 0, sizeof *opt);
    if (!path) {
        glow_fail(GLOW_EINVAL, "checkpoint load: no path");
        return NULL;
    }
    uint8_t *d;
    size_t size;
    if (read_file(path, &d, &size) != GLOW_OK) return NULL;
    glow_model *m = NULL;
    glow_optimizer o = {0};
    glow_real *avg = NULL;
    glow_config cfg;
    if (check_envelope(path, d, size) != GLOW_OK || parse_config(path, d, &cfg) != GLOW_OK)
        goto fail;
    unsigned es = get_u32(d + 12);
    uint32_t has_state = get_u32(d + 120), has_opt = get_u32(d + 168);
    uint32_t nt = get_u32(d + 256), n_sections = get_u32(d + 260);
    uint64_t n_params = get_u64(d + 264);
    if (has_state > 1 || has_opt > 1 || n_sections != (has_opt ? 4u : 1u)) {
        glow_fail(GLOW_EFORMAT, "%s: malformed header (state flag %u, optimizer flag %u, %u "
                  "sections)", path, has_state, has_opt, n_sections);
        goto fail;
    }
    /* What the hyperparameters build, and what the file's size allows, are checked before
     * the model takes any memory: a small file cannot make glow allocate more than its
     * sections hold. */
    size_t n;
    int n_tensors;
    if (model_count_params(&cfg, &n, &n_tensors) != GLOW_OK) {
        glow_fail(GLOW_EFORMAT, "%s: bad hyperparameters: %s", path, glow_last_error());
        goto fail;
    }
    if (n_params != n) {
        glow_fail(GLOW_EFORMAT, "%s: tensor mismatch: %llu parameters in the file, %zu in the "
                  "model its hyperparameters build", path, (unsigned long long)n_params, n);
        goto fail;
    }
    if (nt != (uint32_t)n_tensors) {
        glow_fail(GLOW_EFORMAT, "%s: tensor mismatch: the file lists %u tensors, the model its "
                  "hyperparameters build has %d", path, nt, n_tensors);
        goto fail;
    }
    size_t room = size - header_size(get_u32(d + 8)) - 4, sections = has_opt ? 4 : 1;
    if (n > room / es / sections || (size_t)nt * DIRECTORY_ENTRY_MIN > room - n * es * sections) {
        glow_fail(GLOW_EFORMAT, "%s: truncated: %zu bytes cannot hold its %u tensors and %zu "
                  "parameters", path, size, nt, n);
        goto fail;
    }
    if (!(m = model_create(&cfg, 0))) {
        glow_fail(GLOW_EFORMAT, "%s: cannot build its model: %s", path, glow_last_error());
        goto fail;
    }
    cursor c = {d, header_size(get_u32(d + 8)), size - 4};
    if (check_directory(path, &c, m, (int)nt, es) != GLOW_OK) goto fail;
    if (read_section(path, &c, "params", glow_model_params(m), n, es) != GLOW_OK) goto fail;
    if (has_opt) {
        const uint8_t *h = d;
        glow_optim_config oc = {0};
        oc.kind = (glow_optimizer_kind)(int32_t)get_u32(h + 172);
        oc.lr = get_f64(h + 192);
        oc.beta1 = get_f64(h + 200);
        oc.beta2 = get_f64(h + 208);
        oc.eps = get_f64(h + 216);
        oc.grad_clip = get_f64(h + 224);
        oc.polyak = get_f64(h + 232);
        oc.warmup = (int32_t)get_u32(h + 240);
        if ((unsigned)oc.kind > GLOW_ADAMAX) {
            glow_fail(GLOW_EFORMAT, "%s: unknown optimizer kind %d", path, (int)oc.kind);
            goto fail;
        }
        if (glow_optimizer_init(&o, &oc, n, glow_model_params(m)) != GLOW_OK) {
            glow_fail(GLOW_EFORMAT, "%s: bad optimizer settings: %s", path, glow_last_error());
            goto fail;
        }
        o.step = (int64_t)get_u64(h + 248);
        if (read_section(path, &c, "moment1", o.m, n, es) != GLOW_OK ||
            read_section(path, &c, "moment2", o.v, n, es) != GLOW_OK ||
            read_section(path, &c, "average", o.avg, n, es) != GLOW_OK)
            goto fail;
        avg = o.avg;
    }
    if (c.pos != c.end) {
        glow_fail(GLOW_EFORMAT, "%s: %zu unexpected bytes after the last section", path,
                  c.end - c.pos);
        goto fail;
    }
    if (use_average && avg) memcpy(glow_model_params(m), avg, sizeof(glow_real) * n);
    if (glow_model_check_fixed(m) != GLOW_OK) {
        glow_fail(GLOW_EFORMAT, "%s: %s", path, glow_last_error());
        goto fail;
    }
    /* Offset 244 held an older build's drift window in version 1 files: ignored. */
    if (state) {
        memset(state, 0, sizeof *state);
        if (has_state) {
            state->batch = (int32_t)get_u32(d + 124);
            state->step = (int64_t)get_u64(d + 128);
            state->epoch = (int64_t)get_u64(d + 136);
            state->batch_in_epoch = (int64_t)get_u64(d + 144);
            state->skipped = (int64_t)get_u64(d + 152);
            state->data_seed = get_u64(d + 160);
        }
    }
    if (opt) *opt = o;
    else glow_optimizer_free(&o);
    free(d);
    return m;
fail:
    glow_optimizer_free(&o);
    glow_model_free(m);
    free(d);
    return NULL;
}
