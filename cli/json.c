/* json.c: a strict JSON parser into a flat value array, and an answer builder (json.h). */
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "json.h"

typedef struct parser {
    const char *s;
    size_t n, pos;
    json_doc *doc;
    int cap;
    char *text;    /* next free byte of doc->text */
    char *error;
    size_t error_size;
} parser;

static int fail(parser *p, const char *what) {
    snprintf(p->error, p->error_size, "byte %zu: %s", p->pos, what);
    return -1;
}

static void skip_space(parser *p) {
    while (p->pos < p->n && (p->s[p->pos] == ' ' || p->s[p->pos] == '\t' ||
                             p->s[p->pos] == '\n' || p->s[p->pos] == '\r'))
        p->pos++;
}

static int new_value(parser *p, int type) {
    json_doc *d = p->doc;
    if (d->n == JSON_MAX_VALUES) return fail(p, "too many values");
    if (d->n == p->cap) {
        int cap = p->cap ? 2 * p->cap : 16;
        json_value *v = realloc(d->v, sizeof *v * (size_t)cap);
        if (!v) return fail(p, "out of memory");
        d->v = v, p->cap = cap;
    }
    json_value *v = &d->v[d->n];
    memset(v, 0, sizeof *v);
    v->type = type;
    return d->n++;
}

static int hex4(parser *p, unsigned *out) {
    if (p->n - p->pos < 4) return fail(p, "truncated \\u escape");
    unsigned v = 0;
    for (int k = 0; k < 4; k++) {
        char c = p->s[p->pos++];
        int h = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10
              : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
        if (h < 0) return fail(p, "bad hex digit in \\u escape");
        v = v * 16 + (unsigned)h;
    }
    *out = v;
    return 0;
}

/* Length of the valid UTF-8 sequence at s (at most n bytes), or 0. */
static int utf8_length(const unsigned char *s, size_t n) {
    int len = s[0] < 0x80 ? 1 : (s[0] & 0xe0) == 0xc0 ? 2 : (s[0] & 0xf0) == 0xe0 ? 3
            : (s[0] & 0xf8) == 0xf0 ? 4 : 0;
    if (!len || (size_t)len > n) return 0;
    uint32_t cp = len == 1 ? s[0] : s[0] & (0x7f >> len);
    for (int k = 1; k < len; k++) {
        if ((s[k] & 0xc0) != 0x80) return 0;
        cp = cp << 6 | (s[k] & 0x3f);
    }
    static const uint32_t least[5] = {0, 0, 0x80, 0x800, 0x10000}; /* no overlong forms */
    if (cp < least[len] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return 0;
    return len;
}

static char *put_utf8(char *o, unsigned cp) {
    if (cp < 0x80) *o++ = (char)cp;
    else if (cp < 0x800) *o++ = (char)(0xc0 | cp >> 6), *o++ = (char)(0x80 | (cp & 0x3f));
    else if (cp < 0x10000)
        *o++ = (char)(0xe0 | cp >> 12), *o++ = (char)(0x80 | (cp >> 6 & 0x3f)),
        *o++ = (char)(0x80 | (cp & 0x3f));
    else
        *o++ = (char)(0xf0 | cp >> 18), *o++ = (char)(0x80 | (cp >> 12 & 0x3f)),
        *o++ = (char)(0x80 | (cp >> 6 & 0x3f)), *o++ = (char)(0x80 | (cp & 0x3f));
    return o;
}

/* A string at p->pos (the opening quote): unescaped into p->text. An escape never
 * unescapes to more bytes than it takes, so the text buffer of the input's size is enough. */
static int parse_string(parser *p, const char **out) {
    p->pos++;
    char *start = p->text, *o = p->text;
    for (;;) {
        if (p->pos >= p->n) return fail(p, "unterminated string");
        unsigned char c = (unsigned char)p->s[p->pos];
        if (c == '"') { p->pos++; break; }
        if (c < 0x20) return fail(p, "control character in string");
        if (c != '\\') {
            int len = utf8_length((const unsigned char *)p->s + p->pos, p->n - p->pos);
            if (!len) return fail(p, "invalid UTF-8 in string");
            memcpy(o, p->s + p->pos, (size_t)len);
            o += len, p->pos += (size_t)len;
            continue;
        }
        if (++p->pos >= p->n) return fail(p, "unterminated string");
        char e = p->s[p->pos++];
        const char *plain = strchr("\"\\/bfnrt", e);
        if (e && plain) {
            static const char to[] = "\"\\/\b\f\n\r\t";
            *o++ = to[plain - "\"\\/bfnrt"];
            continue;
        }
        if (e != 'u') { p->pos--; return fail(p, "bad escape in string"); }
        unsigned cp;
        if (hex4(p, &cp)) return -1;
        if (cp >= 0xdc00 && cp <= 0xdfff) return fail(p, "lone low surrogate");
        if (cp >= 0xd800 && cp <= 0xdbff) {
            unsigned lo;
            if (p->n - p->pos < 2 || p->s[p->pos] != '\\' || p->s[p->pos + 1] != 'u')
                return fail(p, "lone high surrogate");
            p->pos += 2;
            if (hex4(p, &lo)) return -1;
            if (lo < 0xdc00 || lo > 0xdfff) return fail(p, "bad surrogate pair");
            cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
        }
        if (cp == 0) return fail(p, "NUL in string");
        o = put_utf8(o, cp);
    }
    *o++ = 0;
    p->text = o;
    *out = start;
    return 0;
}

static int parse_number(parser *p, double *out) {
    size_t start = p->pos;
    const char *s = p->s;
    if (p->pos < p->n && s[p->pos] == '-') p->pos++;
    if (p->pos < p->n && s[p->pos] == '0') p->pos++;
    else if (p->pos < p->n && s[p->pos] >= '1' && s[p->pos] <= '9')
        while (p->pos < p->n && s[p->pos] >= '0' && s[p->pos] <= '9') p->pos++;
    else return fail(p, "bad number");
    if (p->pos < p->n && s[p->pos] == '.') {
        p->pos++;
        if (p->pos >= p->n || s[p->pos] < '0' || s[p->pos] > '9') return fail(p, "bad number");
        while (p->pos < p->n && s[p->pos] >= '0' && s[p->pos] <= '9') p->pos++;
    }
    if (p->pos < p->n && (s[p->pos] == 'e' || s[p->pos] == 'E')) {
        p->pos++;
        if (p->pos < p->n && (s[p->pos] == '+' || s[p->pos] == '-')) p->pos++;
        if (p->pos >= p->n || s[p->pos] < '0' || s[p->pos] > '9') return fail(p, "bad number");
        while (p->pos < p->n && s[p->pos] >= '0' && s[p->pos] <= '9') p->pos++;
    }
    char buf[64];
    size_t len = p->pos - start;
    if (len >= sizeof buf) { p->pos = start; return fail(p, "number too long"); }
    memcpy(buf, s + start, len);
    buf[len] = 0;
    *out = strtod(buf, NULL);
    if (!isfinite(*out)) { p->pos = start; return fail(p, "number out of range"); }
    return 0;
}

static int parse_value(parser *p, int depth);

/* An array or object at p->pos; `close` is ']' or '}'. */
static int parse_container(parser *p, int depth, int type, char close) {
    int self = new_value(p, type);
    if (self < 0) return -1;
    if (depth >= JSON_MAX_DEPTH) return fail(p, "nested too deeply");
    p->pos++;
    skip_space(p);
    if (p->pos < p->n && p->s[p->pos] == close) { p->pos++; return self; }
    int prev = 0;
    for (;;) {
        const char *key = NULL;
        if (type == JSON_OBJECT) {
            if (p->pos >= p->n || p->s[p->pos] != '"') return fail(p, "expected a member name");
            if (parse_string(p, &key)) return -1;
            skip_space(p);
            if (p->pos >= p->n || p->s[p->pos] != ':') return fail(p, "expected ':'");
            p->pos++;
            skip_space(p);
        }
        int child = parse_value(p, depth + 1);
        if (child < 0) return -1;
        json_value *v = p->doc->v;
        v[child].key = key;
        if (prev) v[prev].next = child;
        else v[self].first = child;
        prev = child;
        v[self].count++;
        skip_space(p);
        if (p->pos < p->n && p->s[p->pos] == ',') { p->pos++; skip_space(p); continue; }
        if (p->pos < p->n && p->s[p->pos] == close) { p->pos++; return self; }
        return fail(p, type == JSON_OBJECT ? "expected ',' or '}'" : "expected ',' or ']'");
    }
}

static int literal(parser *p, const char *word, int type) {
    size_t len = strlen(word);
    if (p->n - p->pos < len || memcmp(p->s + p->pos, word, len)) return fail(p, "unexpected token");
    p->pos += len;
    return new_value(p, type);
}

static int parse_value(parser *p, int depth) {
    if (p->pos >= p->n) return fail(p, "unexpected end");
    char c = p->s[p->pos];
    if (c == '{') return parse_container(p, depth, JSON_OBJECT, '}');
    if (c == '[') return parse_container(p, depth, JSON_ARRAY, ']');
    if (c == 't') return literal(p, "true", JSON_TRUE);
    if (c == 'f') return literal(p, "false", JSON_FALSE);
    if (c == 'n') return literal(p, "null", JSON_NULL);
    if (c == '"') {
        const char *s;
        if (parse_string(p, &s)) return -1;
        int i = new_value(p, JSON_STRING);
        if (i >= 0) p->doc->v[i].str = s;
        return i;
    }
    double x;
    if (parse_number(p, &x)) return -1;
    int i = new_value(p, JSON_NUMBER);
    if (i >= 0) p->doc->v[i].number = x;
    return i;
}

int json_parse(json_doc *doc, const char *data, size_t size, char *error, size_t error_size) {
    memset(doc, 0, sizeof *doc);
    parser p = {data, size, 0, doc, 0, NULL, error, error_size};
    if (!(doc->text = p.text = malloc(size + 1))) {
        snprintf(error, error_size, "out of memory");
        return -1;
    }
    skip_space(&p);
    int rc = parse_value(&p, 0) < 0 ? -1 : 0;
    skip_space(&p);
    if (!rc && p.pos != size) rc = fail(&p, "unexpected data after the value");
    if (rc) json_free(doc);
    return rc;
}

void json_free(json_doc *doc) {
    free(doc->v);
    free(doc->text);
    memset(doc, 0, sizeof *doc);
}

int json_member(const json_doc *doc, int i, const char *key) {
    if (doc->v[i].type != JSON_OBJECT) return -1;
    for (int c = doc->v[i].first; c; c = doc->v[c].next)
        if (!strcmp(doc->v[c].key, key)) return c;
    return -1;
}

void json_printf(json_out *o, const char *fmt, ...) {
    if (o->failed) return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int k = vsnprintf(o->buf ? o->buf + o->len : NULL, o->buf ? o->cap - o->len : 0, fmt, ap);
        va_end(ap);
        if (k < 0) { o->failed = 1; return; }
        if (o->buf && o->len + (size_t)k < o->cap) { o->len += (size_t)k; return; }
        size_t cap = o->cap ? o->cap : 256;
        while (cap <= o->len + (size_t)k) cap *= 2;
        char *b = realloc(o->buf, cap);
        if (!b) { o->failed = 1; return; }
        o->buf = b, o->cap = cap;
    }
}

void json_string(json_out *o, const char *s) {
    json_printf(o, "\"");
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') json_printf(o, "\\%c", c);
        else if (c < 0x20) json_printf(o, "\\u%04x", c);
        else json_printf(o, "%c", c);
    }
    json_printf(o, "\"");
}
