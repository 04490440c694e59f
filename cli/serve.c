/* serve.c: `glow serve`: the explorer page (web/index.html, built into the binary) and its
 * API (api.c) over HTTP, on libmicrohttpd.
 *
 * libmicrohttpd runs a pool of threads, each multiplexing its connections, so a slow client
 * holds a socket and a little memory but never a thread; one that sends nothing for 10
 * seconds is dropped, and up to 4096 may be open at once. A request's body is collected up
 * to the upload limit (a Content-Length over it is answered 413 before the body is read),
 * then api_handle computes the answer in the connection's thread with one of the api's
 * --threads compute contexts, batching the decodes of requests that wait together. */
#include <malloc.h>
#include <microhttpd.h>
#include <netdb.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>
#include "api.h"
#include "cli.h"

/* The page, built in: the binary serves it wherever it is run from. */
__asm__(".section .rodata\n"
        "serve_page:\n"
        ".incbin \"web/index.html\"\n"
        "serve_page_end:\n"
        ".previous\n");
extern const char serve_page[], serve_page_end[];

#define IDLE_TIMEOUT_S 10
#define MAX_CONNECTIONS 4096

/* As many connections as the file limit allows, up to MAX_CONNECTIONS: raise the soft
 * limit to the hard one, so that a few hundred stalled clients cannot lock others out
 * before their timeout. */
static unsigned connection_limit(void) {
    struct rlimit r;
    if (getrlimit(RLIMIT_NOFILE, &r) != 0) return 256;
    rlim_t want = MAX_CONNECTIONS + 64;
    if (r.rlim_cur < want) {
        r.rlim_cur = r.rlim_max < want ? r.rlim_max : want;
        setrlimit(RLIMIT_NOFILE, &r);
        getrlimit(RLIMIT_NOFILE, &r);
    }
    return r.rlim_cur < 128 ? 64 : r.rlim_cur - 64 < MAX_CONNECTIONS ? (unsigned)(r.rlim_cur - 64)
                                                                   : MAX_CONNECTIONS;
}

/* One request in flight: its target as sent, and its body so far. */
typedef struct request {
    char *target;
    uint8_t *body;
    size_t size, cap;
    int started, refused;
} request;

typedef struct server {
    api *api;
    size_t max_upload;
    atomic_int open;      /* requests in flight */
    atomic_int finished;  /* requests finished since the last trim */
} server;

/* libmicrohttpd hands the request target (path and query, undecoded) here first. */
static void *on_uri(void *cls, const char *uri, struct MHD_Connection *c) {
    server *s = cls;
    request *q = calloc(1, sizeof *q);
    if (q && !(q->target = strdup(uri))) { free(q); q = NULL; }
    if (q) atomic_fetch_add(&s->open, 1);
    return q;
}

static void on_completed(void *cls, struct MHD_Connection *c, void **req_cls,
                         enum MHD_RequestTerminationCode toe) {
    server *s = cls;
    request *q = *req_cls;
    if (!q) return;
    free(q->target);
    free(q->body);
    free(q);
    *req_cls = NULL;
    /* When the server falls idle after a burst, hand the freed heap back to the system:
     * glibc keeps it otherwise (thousands of connections' buffers, fragmented). */
    int more = atomic_fetch_add(&s->finished, 1) + 1;
    if (atomic_fetch_sub(&s->open, 1) == 1 && more >= 256) {
        atomic_store(&s->finished, 0);
        malloc_trim(0);
    }
}

static enum MHD_Result send_response(struct MHD_Connection *c, api_response *r) {
    struct MHD_Response *resp =
        MHD_create_response_from_buffer(r->size, r->body, MHD_RESPMEM_MUST_FREE);
    if (!resp) { api_response_free(r); return MHD_NO; }
    r->body = NULL; /* the response owns it now */
    char timing[64];
    snprintf(timing, sizeof timing, "app;dur=%.2f", r->compute_ms);
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, r->type);
    MHD_add_response_header(resp, "Server-Timing", timing);
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    if (r->allow) MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW, r->allow);
    enum MHD_Result ok = MHD_queue_response(c, (unsigned)r->status, resp);
    MHD_destroy_response(resp);
    return ok;
}

static enum MHD_Result too_large(struct MHD_Connection *c, server *s) {
    api_response r = {0};
    api_error(&r, 413, "the body is over the upload limit of %zu bytes", s->max_upload);
    return send_response(c, &r);
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
                                  const char *method, const char *version,
                                  const char *upload, size_t *upload_size, void **req_cls) {
    server *s = cls;
    request *q = *req_cls;
    if (!q) return MHD_NO; /* out of memory at on_uri: drop the connection */
    if (!q->started) {
        q->started = 1;
        const char *len = MHD_lookup_connection_value(c, MHD_HEADER_KIND,
                                                      MHD_HTTP_HEADER_CONTENT_LENGTH);
        if (len && strtoull(len, NULL, 10) > s->max_upload) {
            q->refused = 1; /* answered before its body is read; the connection then closes */
            return too_large(c, s);
        }
        return MHD_YES;
    }
    if (*upload_size) {
        if (q->refused) { *upload_size = 0; return MHD_YES; }
        if (*upload_size > s->max_upload - q->size) {
            /* A chunked body past the limit: close the connection rather than read on. */
            return MHD_NO;
        }
        if (q->size + *upload_size > q->cap) {
            size_t cap = q->cap ? q->cap : 65536;
            while (cap < q->size + *upload_size) cap *= 2;
            if (cap > s->max_upload) cap = s->max_upload;
            uint8_t *b = realloc(q->body, cap);
            if (!b) return MHD_NO;
            q->body = b, q->cap = cap;
        }
        memcpy(q->body + q->size, upload, *upload_size);
        q->size += *upload_size;
        *upload_size = 0;
        return MHD_YES;
    }
    if (q->refused) return MHD_YES;
    const char *type = MHD_lookup_connection_value(c, MHD_HEADER_KIND,
                                                   MHD_HTTP_HEADER_CONTENT_TYPE);
    api_response r;
    api_handle(s->api, method, q->target, type, q->body, q->size, &r);
    return send_response(c, &r);
}

static const char help[] =
    "Usage: glow serve --checkpoint FILE [options]\n"
    "The interactive explorer of a model: samples at a temperature, a gallery of test images\n"
    "and uploads, exact reconstructions with their bits/dim, attribute sliders, mixing.\n"
    "The page is at the URL printed when the server is ready; docs/API.md has its API.\n\n"
    "  --checkpoint FILE    the model (its Polyak average, as glow eval uses)\n"
    "  --attributes FILE    directions from `glow attributes` (.npz): one slider each\n"
    "  --data PATH          the gallery: this data set's test split\n"
    "  --gallery N          at most N gallery images (default 1000)\n"
    "  --host ADDR          the address to listen on (default 127.0.0.1)\n"
    "  --port P             (default 8080; 0 picks a free one)\n"
    "  --threads T          compute contexts: passes run at once (default: one per core)\n"
    "  --batch B            decodes of requests waiting at once run together, up to B\n"
    "                       (default 16; 1: each alone)\n"
    "  --max-upload MB      the largest request body (default 10)\n"
    "  --max-samples N      the most images one /api/sample draws (default 64)\n"
    "  --cache MB           memory for the latents of encoded images (default 64)\n";

typedef struct serve_opts {
    api_config api;
    const char *host;
    int port;
} serve_opts;

enum { OPT_ATTRIBUTES = 2000, OPT_GALLERY, OPT_HOST, OPT_PORT, OPT_MAX_UPLOAD, OPT_MAX_SAMPLES,
       OPT_CACHE };

static int own_option(void *ctx, int c, const char *arg) {
    serve_opts *o = ctx;
    int v;
    switch (c) {
    case OPT_ATTRIBUTES: o->api.attributes = arg; return 0;
    case OPT_GALLERY: return parse_int("--gallery", arg, 0, 1 << 24, &o->api.gallery_max) ? EXIT_USAGE : 0;
    case OPT_HOST: o->host = arg; return 0;
    case OPT_PORT: return parse_int("--port", arg, 0, 65535, &o->port) ? EXIT_USAGE : 0;
    case OPT_MAX_UPLOAD:
        if (parse_int("--max-upload", arg, 1, 1024, &v)) return EXIT_USAGE;
        o->api.max_upload = (size_t)v << 20;
        return 0;
    case OPT_MAX_SAMPLES:
        return parse_int("--max-samples", arg, 1, 1024, &o->api.max_samples) ? EXIT_USAGE : 0;
    case OPT_CACHE:
        if (parse_int("--cache", arg, 1, 1 << 20, &v)) return EXIT_USAGE;
        o->api.cache_bytes = (size_t)v << 20;
        return 0;
    }
    return EXIT_USAGE;
}

int cmd_serve(int argc, char **argv) {
    static const struct option opts[] = {
        OPTION_CHECKPOINT, OPTION_DATA, OPTION_THREADS, OPTION_BATCH, OPTION_HELP,
        {"attributes", required_argument, 0, OPT_ATTRIBUTES},
        {"gallery", required_argument, 0, OPT_GALLERY},
        {"host", required_argument, 0, OPT_HOST},
        {"port", required_argument, 0, OPT_PORT},
        {"max-upload", required_argument, 0, OPT_MAX_UPLOAD},
        {"max-samples", required_argument, 0, OPT_MAX_SAMPLES},
        {"cache", required_argument, 0, OPT_CACHE},
        {0, 0, 0, 0}};
    serve_opts o = {.host = "127.0.0.1", .port = 8080};
    api_config_default(&o.api);
    common_opts co = {0};
    int rc = parse_command_line(argc, argv, opts, help, &co, own_option, &o);
    if (rc) return rc < 0 ? 0 : rc;
    if (optind < argc) return cli_usage_error("unexpected argument '%s'", argv[optind]);
    if (!co.checkpoint) return cli_usage_error("--checkpoint FILE is required");
    o.api.checkpoint = co.checkpoint;
    o.api.data = co.data;
    o.api.workers = co.threads > 0 ? co.threads : (int)sysconf(_SC_NPROCESSORS_ONLN);
    if (co.batch > API_MAX_BATCH) return cli_usage_error("--batch %d: at most %d", co.batch, API_MAX_BATCH);
    if (co.batch > 0) o.api.batch = co.batch;
    o.api.page = serve_page;
    o.api.page_size = (size_t)(serve_page_end - serve_page);

    char port_s[8];
    snprintf(port_s, sizeof port_s, "%d", o.port);
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE | AI_NUMERICSERV}, *addr;
    int e = getaddrinfo(o.host, port_s, &hints, &addr);
    if (e) return cli_error("--host %s: %s", o.host, gai_strerror(e));

    api *a = api_open(&o.api);
    if (!a) { freeaddrinfo(addr); return cli_error("%s", glow_last_error()); }

    /* SIGINT and SIGTERM are waited for below; the server's threads inherit the mask. */
    sigset_t stop;
    sigemptyset(&stop);
    sigaddset(&stop, SIGINT);
    sigaddset(&stop, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &stop, NULL);
    signal(SIGPIPE, SIG_IGN);

    server s = {a, o.api.max_upload, 0, 0};
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_AUTO |
                     (addr->ai_family == AF_INET6 ? MHD_USE_IPv6 : 0);
    struct MHD_Daemon *d = MHD_start_daemon(
        flags, (uint16_t)o.port, NULL, NULL, on_request, &s,
        MHD_OPTION_SOCK_ADDR, addr->ai_addr,
        /* Enough connection threads that every context is busy while full batches wait:
         * fewer leave requests stuck behind a busy thread (a long 95th percentile). */
        MHD_OPTION_THREAD_POOL_SIZE, (unsigned)(o.api.workers + 4 * o.api.batch),
        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)IDLE_TIMEOUT_S,
        MHD_OPTION_CONNECTION_LIMIT, connection_limit(),
        MHD_OPTION_URI_LOG_CALLBACK, on_uri, &s,
        MHD_OPTION_NOTIFY_COMPLETED, on_completed, &s,
        MHD_OPTION_END);
    freeaddrinfo(addr);
    if (!d) {
        api_close(a);
        return cli_error("cannot listen on %s port %d (in use, or not an address of this "
                         "machine?)", o.host, o.port);
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
    int port = info ? info->port : o.port;
    int ipv6 = strchr(o.host, ':') != NULL;
    printf("glow serve: http://%s%s%s:%d/  (%s; %d gallery images; %d threads; Ctrl-C stops)\n",
           ipv6 ? "[" : "", o.host, ipv6 ? "]" : "", port, co.checkpoint, api_gallery_size(a),
           o.api.workers);
    fflush(stdout);
    int sig;
    sigwait(&stop, &sig);
    MHD_stop_daemon(d);
    api_close(a);
    fprintf(stderr, "glow serve: stopped\n");
    return 0;
}
