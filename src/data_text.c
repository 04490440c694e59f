/* data_text.c: the text files of a data set folder: CelebA's list_attr_celeba.txt
 * (glow_dataset_load_attributes) and labels.csv (dataset_load_labels_csv), matched to the
 * images by file name. A malformed line gives a message naming the file and the line. */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "data.h"

/* The whole file, NUL-terminated, in a malloc'd buffer. */
static int read_text(const char *path, char **out) {
    FILE *f = fopen(path, "rb");
    if (!f) return glow_fail(GLOW_EIO, "%s: cannot open: %s", path, strerror(errno));
    long size = -1;
    if (fseek(f, 0, SEEK_END) == 0) size = ftell(f);
    rewind(f);
    char *buf = size >= 0 && size < (1L << 31) ? malloc((size_t)size + 1) : NULL;
    int rc = buf ? GLOW_OK : glow_fail(GLOW_EIO, "%s: cannot read (size %ld)", path, size);
    if (rc == GLOW_OK && fread(buf, 1, (size_t)size, f) != (size_t)size)
        rc = glow_fail(GLOW_EIO, "%s: read error", path);
    fclose(f);
    if (rc != GLOW_OK) {
        free(buf);
        return rc;
    }
    buf[size] = 0;
    *out = buf;
    return GLOW_OK;
}

/* Next line of a text buffer, NUL-terminated in place with any '\r' removed; NULL at the
 * end. */
static char *next_line(char **cursor) {
    char *s = *cursor;
    if (!*s) return NULL;
    char *e = strchr(s, '\n');
    if (e) *e = 0, *cursor = e + 1;
    else *cursor = s + strlen(s);
    size_t n = strlen(s);
    while (n && (s[n - 1] == '\r' || s[n - 1] == ' ' || s[n - 1] == '\t')) s[--n] = 0;
    return s;
}

/* Whether a field starts like a number (after blanks): a sign or a digit. */
static int is_number_start(const char *s) {
    while (isspace((unsigned char)*s)) s++;
    return *s == '-' || *s == '+' || isdigit((unsigned char)*s);
}

/* Index of a file name in the (sorted) names of d, or -1. */
static int find_name(const glow_dataset *d, const char *name) {
    char key[256];
    if (strlen(name) >= sizeof key) return -1;
    snprintf(key, sizeof key, "%s", name);
    char(*hit)[256] = bsearch(key, d->names, d->n, sizeof *d->names, dataset_name_cmp);
    return hit ? (int)(hit - d->names) : -1;
}

/* ---------------------------------------------------------------- attributes ------- */

/* The most attributes a file may name (CelebA's has 40). */
#define MAX_ATTRIBUTES 4096

int glow_dataset_load_attributes(glow_dataset *d, const char *path) {
    if (!d->names)
        return glow_fail(GLOW_EINVAL, "%s: attributes need a data set loaded from an image "
                         "folder (it has no file names)", path);
    char *text, *cur, *line;
    int rc = read_text(path, &text);
    if (rc != GLOW_OK) return rc;
    cur = text;
    char(*names)[64] = NULL;
    int8_t *attrs = NULL;
    int n_attrs = 0, cap = 0, count = 0, lines = 0;
    line = next_line(&cur);
    if (!line || sscanf(line, "%d", &count) != 1 || count < 0) {
        rc = glow_fail(GLOW_EFORMAT, "%s: line 1 should hold the number of images", path);
        goto done;
    }
    line = next_line(&cur);
    if (!line) {
        rc = glow_fail(GLOW_EFORMAT, "%s: truncated: no attribute names (line 2)", path);
        goto done;
    }
    for (char *s = line, *tok; (tok = strtok_r(s, " \t", &s));) {
        if (strlen(tok) >= sizeof *names) {
            rc = glow_fail(GLOW_EFORMAT, "%s: attribute name longer than 63 characters", path);
            goto done;
        }
        if (n_attrs == MAX_ATTRIBUTES) {
            rc = glow_fail(GLOW_EFORMAT, "%s: more than %d attribute names on line 2", path,
                           MAX_ATTRIBUTES);
            goto done;
        }
        if (n_attrs == cap) { /* grown geometrically: a long line costs linear time */
            cap = cap ? 2 * cap : 64;
            char(*p)[64] = realloc(names, (size_t)cap * sizeof *names);
            if (!p) {
                rc = glow_fail(GLOW_ENOMEM, "%s: out of memory", path);
                goto done;
            }
            names = p;
        }
        snprintf(names[n_attrs++], sizeof *names, "%s", tok);
    }
    if (n_attrs == 0) {
        rc = glow_fail(GLOW_EFORMAT, "%s: no attribute names on line 2", path);
        goto done;
    }
    attrs = calloc((size_t)d->n * n_attrs, 1); /* 0: no entry yet */
    if (!attrs) {
        rc = glow_fail(GLOW_ENOMEM, "%s: out of memory", path);
        goto done;
    }
    for (int ln = 3; (line = next_line(&cur)); ln++) {
        char *s = line, *tok = strtok_r(s, " \t", &s);
        if (!tok) continue;
        lines++;
        int i = find_name(d, tok);
        int8_t *row = i >= 0 ? attrs + (size_t)i * n_attrs : NULL;
        for (int k = 0; k < n_attrs; k++) {
            char *v = strtok_r(s, " \t", &s), *end;
            long x = v ? strtol(v, &end, 10) : 0;
            if (!v || *end || (x != -1 && x != 1)) {
                rc = glow_fail(GLOW_EFORMAT, "%s:%d: %s: attribute %d (%s) should be -1 or 1, "
                               "found '%s'", path, ln, tok, k + 1, names[k], v ? v : "nothing");
                goto done;
            }
            if (row) row[k] = (int8_t)x;
        }
        if (strtok_r(s, " \t", &s)) {
            rc = glow_fail(GLOW_EFORMAT, "%s:%d: more than %d attribute values", path, ln,
                           n_attrs);
            goto done;
        }
    }
    if (lines != count) {
        rc = glow_fail(GLOW_EFORMAT, "%s: %s: line 1 announces %d images, the file lists %d",
                       path, lines < count ? "truncated" : "too long", count, lines);
        goto done;
    }
    for (int i = 0; i < d->n; i++)
        if (attrs[(size_t)i * n_attrs] == 0) {
            rc = glow_fail(GLOW_EFORMAT, "%s: no attributes for image %s", path, d->names[i]);
            goto done;
        }
    free(d->attr_names), free(d->attrs);
    d->attr_names = names, d->attrs = attrs, d->n_attrs = n_attrs;
    names = NULL, attrs = NULL;
done:
    free(names), free(attrs), free(text);
    return rc;
}

/* labels.csv: "filename,label" per line, labels in 0..GLOW_MAX_CLASSES-1. The first line
 * may be a header: one whose label field is text (not a number) and whose file name is not
 * an image's. Any other line that does not parse is an error, the first line's too. */
int dataset_load_labels_csv(glow_dataset *d, const char *path) {
    char *text, *cur, *line;
    int rc = read_text(path, &text);
    if (rc != GLOW_OK) return rc;
    int *labels = malloc((size_t)d->n * sizeof *labels);
    if (!labels) {
        free(text);
        return glow_fail(GLOW_ENOMEM, "%s: out of memory", path);
    }
    for (int i = 0; i < d->n; i++) labels[i] = -1;
    cur = text;
    for (int ln = 1; (line = next_line(&cur)) && rc == GLOW_OK; ln++) {
        while (isspace((unsigned char)*line)) line++;
        if (!*line) continue;
        char *comma = strchr(line, ',');
        char *end = NULL;
        long v = comma ? strtol(comma + 1, &end, 10) : 0;
        int ok = comma && end != comma + 1 && !*end && v >= 0 && v < GLOW_MAX_CLASSES;
        if (comma) {
            *comma = 0;
            for (char *t = comma; t > line && isspace((unsigned char)t[-1]);) *--t = 0;
        }
        int i = comma ? find_name(d, line) : -1;
        if (!ok && ln == 1 && comma && i < 0 && !is_number_start(comma + 1)) continue; /* header */
        if (!ok) {
            rc = glow_fail(GLOW_EFORMAT, "%s:%d: expected 'filename,label' with an integer "
                           "label in 0..%d", path, ln, GLOW_MAX_CLASSES - 1);
            break;
        }
        if (i >= 0) labels[i] = (int)v;
    }
    for (int i = 0; i < d->n && rc == GLOW_OK; i++)
        if (labels[i] < 0) rc = glow_fail(GLOW_EFORMAT, "%s: no label for image %s", path, d->names[i]);
    free(text);
    if (rc != GLOW_OK) {
        free(labels);
        return rc;
    }
    free(d->labels);
    d->labels = labels;
    dataset_count_classes(d);
    return GLOW_OK;
}
