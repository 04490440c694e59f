/* api_request.c: the explorer's query strings, numbers and indexes (api_internal.h). */
#include <ctype.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "api_internal.h"

static int hex_value(int c) {
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10
         : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

/* Percent-decode s[0..n) into out (size cap); -1 if malformed or too long. */
static int url_decode(char *out, size_t cap, const char *s, size_t n) {
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        int c = (unsigned char)s[i];
        if (c == '+') c = ' ';
        else if (c == '%') {
            if (i + 2 >= n) return -1;
            int h = hex_value(s[i + 1]), l = hex_value(s[i + 2]);
            if (h < 0 || l < 0) return -1;
            c = h * 16 + l;
            i += 2;
        }
        if (c == 0 || o + 1 >= cap) return -1;
        out[o++] = (char)c;
    }
    out[o] = 0;
    return 0;
}

/* The query string after '?' into params; returns their count or -1 with a message. */
int api_parse_query(const char *q, param *p, api_response *r) {
    int n = 0;
    while (q && *q) {
        const char *amp = strchr(q, '&'), *end = amp ? amp : q + strlen(q);
        const char *eq = memchr(q, '=', (size_t)(end - q));
        if (end > q) {
            if (n == MAX_PARAMS) { api_error(r, 400, "too many query parameters"); return -1; }
            if (!eq || url_decode(p[n].key, sizeof p[n].key, q, (size_t)(eq - q)) ||
                url_decode(p[n].value, sizeof p[n].value, eq + 1, (size_t)(end - eq - 1))) {
                api_error(r, 400, "malformed query parameter '%.*s'", (int)(end - q > 40 ? 40 : end - q), q);
                return -1;
            }
            n++;
        }
        q = amp ? amp + 1 : end;
    }
    return n;
}

/* A whole-string number in [lo, hi]. */
int api_parse_number(const char *s, double lo, double hi, double *out) {
    char *end;
    if (!*s || isspace((unsigned char)*s)) return -1;
    double v = strtod(s, &end);
    if (*end || !isfinite(v) || v < lo || v > hi) return -1;
    *out = v;
    return 0;
}

/* "/api/gallery/12.png" -> 12 (digits only, no sign or leading zeros beyond "0"). */
int api_parse_index(const char *s, const char *suffix, long max, long *out) {
    size_t n = strlen(s), sl = strlen(suffix);
    if (n <= sl || strcmp(s + n - sl, suffix) || n - sl > 9) return -1;
    if (s[0] == '0' && n - sl > 1) return -1;
    long v = 0;
    for (size_t i = 0; i < n - sl; i++) {
        if (s[i] < '0' || s[i] > '9') return -1;
        v = v * 10 + (s[i] - '0');
    }
    if (v >= max) return -1;
    *out = v;
    return 0;
}
