/* json.h: the JSON that the explorer's API reads and writes. A request body is parsed
 * whole into a flat array of values (RFC 8259, with a depth and a count limit); answers
 * are built in a growing buffer. */
#ifndef GLOW_JSON_H
#define GLOW_JSON_H

#include <stddef.h>

enum { JSON_NULL, JSON_FALSE, JSON_TRUE, JSON_NUMBER, JSON_STRING, JSON_ARRAY, JSON_OBJECT };

/* One value. Children of an array or object follow their parent in the array, linked by
 * `next` (the index of the next sibling, or 0 at the last); `key` is set for object
 * members. Strings are unescaped UTF-8, NUL-terminated, and may not contain NUL. */
typedef struct json_value {
    int type;
    double number;     /* JSON_NUMBER: finite */
    const char *str;   /* JSON_STRING */
    const char *key;   /* the member's name inside an object, else NULL */
    int first, next;   /* first child (0: none), next sibling (0: none) */
    int count;         /* children of an array or object */
} json_value;

#define JSON_MAX_DEPTH 16
#define JSON_MAX_VALUES 65536

typedef struct json_doc {
    json_value *v; /* v[0] is the document's value */
    int n;
    char *text;    /* the unescaped strings */
} json_doc;

/* Parse `size` bytes. Returns 0, or -1 with a message like "byte 12: expected ':'" in
 * `error` (and `doc` empty). */
int json_parse(json_doc *doc, const char *data, size_t size, char *error, size_t error_size);
void json_free(json_doc *doc);
/* The member `key` of object v[i], or -1. */
int json_member(const json_doc *doc, int i, const char *key);

/* An answer under construction; `failed` is set when memory ran out. */
typedef struct json_out {
    char *buf;
    size_t len, cap;
    int failed;
} json_out;
void json_printf(json_out *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void json_string(json_out *o, const char *s); /* quoted and escaped */

#endif
