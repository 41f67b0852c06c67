/* admin.c: the admin HTTP endpoint: /metrics (Prometheus text format
 * 0.0.4), /stats (JSON), /healthz.
 *
 * It runs on the daemon's event loop through libevent's evhttp, so every
 * answer is a consistent snapshot taken between two commands, with no
 * locks. It is read-only: nothing here changes the broker. The same
 * numbers as STATS, under Prometheus names (counters end in _total, sizes
 * in _bytes, times in _seconds); a topic is a label, never part of a name.
 * No secret is in any answer: the config is not shown, only counters.
 */
#include "admin.h"

#include <arpa/inet.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include <event2/buffer.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <event2/listener.h>
#include <event2/util.h>

#include "addr.h"
#include "broker.h"
#include "clock.h"
#include "counters.h"
#include "log.h"
#include "version.h"

#define ADMIN_TIMEOUT_S 10        /* an idle or slow admin connection is closed */
#define ADMIN_MAX_HEADERS 8192
#define ADMIN_MAX_BODY 4096       /* nothing is ever posted here */
#define ADMIN_BACKLOG 64

struct admin {
    server_t *srv;
    struct evhttp *http;
    char *asked;                  /* admin.listen as configured */
    char bound[128];              /* what it really got: "HOST:PORT" */
};

/* ---- snapshot of the broker ---- */

typedef struct admin_topics {
    topic_stats_t *v;
    size_t n, cap;
    bool oom;
} admin_topics_t;

static void admin_topics_add(void *ctx, const topic_stats_t *ts)
{
    admin_topics_t *t = ctx;

    if (t->n == t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 16;
        topic_stats_t *v = realloc(t->v, cap * sizeof *v);
        if (v == NULL) {
            t->oom = true;
            return;
        }
        t->v = v;
        t->cap = cap;
    }
    t->v[t->n++] = *ts;
}

/* Every topic's stats, in name order. The names point into the broker:
 * valid until the loop runs again, which is longer than one answer. */
static bool admin_topics_get(const server_t *s, admin_topics_t *t)
{
    memset(t, 0, sizeof *t);
    broker_foreach_topic(s->broker, clock_ms(), admin_topics_add, t);
    if (t->oom) {
        free(t->v);
        return false;
    }
    return true;
}

/* ---- /metrics ---- */

/* One metric family read from a uint64_t field of a stats struct. */
typedef struct admin_family {
    const char *name; /* after "sluice_" */
    const char *type; /* "counter" or "gauge" */
    const char *help;
    size_t off;       /* offset of the uint64_t field */
} admin_family_t;

#define ADMIN_COUNTER(T, P, f, help) {P "messages_" #f "_total", "counter", help, offsetof(T, totals.f)},
#define ADMIN_SERVER_COUNTER(f, help) ADMIN_COUNTER(broker_stats_t, "", f, help)
#define ADMIN_TOPIC_COUNTER(f, help) ADMIN_COUNTER(topic_stats_t, "topic_", f, help)
#define ADMIN_TOPIC_GAUGE(f, metric, help) {metric, "gauge", help, offsetof(topic_stats_t, f)},

static const admin_family_t admin_server_families[] = {
    {"topics", "gauge", "Topics that exist.", offsetof(broker_stats_t, topics)},
    {"messages", "gauge", "Messages held: ready, delayed, in flight or awaiting a confirm.",
     offsetof(broker_stats_t, messages)},
    {"message_bytes", "gauge", "Payload bytes held, all topics (bounded by limits.max_memory).",
     offsetof(broker_stats_t, bytes)},
    {"blocked_producers", "gauge", "PUBs parked until their topic has room.",
     offsetof(broker_stats_t, blocked_producers)},
    SLUICE_COUNTERS(ADMIN_SERVER_COUNTER)
};

static const admin_family_t admin_topic_families[] = {
    SLUICE_TOPIC_GAUGES(ADMIN_TOPIC_GAUGE)
    SLUICE_COUNTERS(ADMIN_TOPIC_COUNTER)
};

static uint64_t admin_field(const void *base, size_t off)
{
    uint64_t v;

    memcpy(&v, (const char *)base + off, sizeof v);
    return v;
}

static void admin_head(struct evbuffer *b, const char *name, const char *type, const char *help)
{
    evbuffer_add_printf(b, "# HELP sluice_%s %s\n# TYPE sluice_%s %s\n", name, help, name, type);
}

static void admin_gauge(struct evbuffer *b, const char *name, const char *help, const char *value)
{
    admin_head(b, name, "gauge", help);
    evbuffer_add_printf(b, "sluice_%s %s\n", name, value);
}

/* A label value: backslash, double quote and newline are escaped. */
static void admin_label(struct evbuffer *b, const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '\\' || s[i] == '"')
            evbuffer_add_printf(b, "\\%c", s[i]);
        else if (s[i] == '\n')
            evbuffer_add(b, "\\n", 2);
        else
            evbuffer_add(b, &s[i], 1);
    }
}

static void admin_metrics(server_t *s, const broker_stats_t *bs, const admin_topics_t *t,
                          struct evbuffer *b)
{
    char num[32];
    size_t nf;

    admin_head(b, "build_info", "gauge", "Always 1; the version is a label.");
    evbuffer_add_printf(b, "sluice_build_info{version=\"");
    admin_label(b, SLUICE_VERSION, strlen(SLUICE_VERSION));
    evbuffer_add_printf(b, "\"} 1\n");
    snprintf(num, sizeof num, "%" PRIu64, bs->uptime_ms / 1000);
    admin_gauge(b, "uptime_seconds", "Seconds since the broker started.", num);
    snprintf(num, sizeof num, "%" PRIu64, s->nconns);
    admin_gauge(b, "connections", "Client connections open.", num);
    nf = sizeof admin_server_families / sizeof admin_server_families[0];
    for (size_t i = 0; i < nf; i++) {
        const admin_family_t *f = &admin_server_families[i];
        admin_head(b, f->name, f->type, f->help);
        evbuffer_add_printf(b, "sluice_%s %" PRIu64 "\n", f->name, admin_field(bs, f->off));
    }
    snprintf(num, sizeof num, "%" PRIu64 ".%03u", s->max_loop_stall_ms / 1000,
             (unsigned)(s->max_loop_stall_ms % 1000));
    admin_gauge(b, "max_loop_stall_seconds", "Longest the event loop was late since start.", num);
    server_mirror_status_t ms = server_mirror_status(s);
    admin_gauge(b, "redis_connected", "1 while the Redis mirror is connected, else 0.",
                ms.connected ? "1" : "0");
    snprintf(num, sizeof num, "%" PRIu64, ms.lag_ops);
    admin_gauge(b, "redis_lag_ops", "Mirror operations not yet acknowledged by Redis.", num);

    nf = sizeof admin_topic_families / sizeof admin_topic_families[0];
    for (size_t i = 0; i < nf; i++) {
        const admin_family_t *f = &admin_topic_families[i];
        admin_head(b, f->name, f->type, f->help);
        for (size_t j = 0; j < t->n; j++) {
            evbuffer_add_printf(b, "sluice_%s{topic=\"", f->name);
            admin_label(b, t->v[j].name, t->v[j].name_len);
            evbuffer_add_printf(b, "\"} %" PRIu64 "\n", admin_field(&t->v[j], f->off));
        }
    }
}

/* ---- /stats ---- */

static void admin_json_string(struct evbuffer *b, const char *s, size_t n)
{
    evbuffer_add(b, "\"", 1);
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch == '"' || ch == '\\')
            evbuffer_add_printf(b, "\\%c", ch);
        else if (ch < 0x20 || ch >= 0x7f)
            evbuffer_add_printf(b, "\\u%04x", ch);
        else
            evbuffer_add(b, &s[i], 1);
    }
    evbuffer_add(b, "\"", 1);
}

static void admin_json_totals(struct evbuffer *b, const br_counters_t *c)
{
    const char *sep = "";

#define ADMIN_JSON_COUNTER(f, help)                                                               \
    evbuffer_add_printf(b, "%s\"" #f "\":%" PRIu64, sep, c->f);                                  \
    sep = ",";
    SLUICE_COUNTERS(ADMIN_JSON_COUNTER)
#undef ADMIN_JSON_COUNTER
}

static void admin_json_topic(struct evbuffer *b, const topic_stats_t *t)
{
    admin_json_string(b, t->name, t->name_len);
    evbuffer_add(b, ":{", 2);
#define ADMIN_JSON_GAUGE(f, metric, help) evbuffer_add_printf(b, "\"" #f "\":%" PRIu64 ",", t->f);
    SLUICE_TOPIC_GAUGES(ADMIN_JSON_GAUGE)
#undef ADMIN_JSON_GAUGE
    evbuffer_add_printf(b, "\"overflow\":\"%s\",", config_overflow_name(t->overflow));
    admin_json_totals(b, &t->totals);
    evbuffer_add(b, "}", 1);
}

/* The STATS server body and every topic's, as one JSON object. */
static void admin_stats_json(server_t *s, const broker_stats_t *bs, const admin_topics_t *t,
                             struct evbuffer *b)
{
    server_mirror_status_t ms = server_mirror_status(s);

    evbuffer_add_printf(b, "{\"server\":{\"version\":");
    admin_json_string(b, SLUICE_VERSION, strlen(SLUICE_VERSION));
    evbuffer_add_printf(b,
                        ",\"uptime_s\":%" PRIu64 ",\"connections\":%" PRIu64
                        ",\"topics\":%" PRIu64 ",\"messages\":%" PRIu64 ",\"bytes\":%" PRIu64 ",",
                        bs->uptime_ms / 1000, s->nconns, bs->topics, bs->messages, bs->bytes);
    admin_json_totals(b, &bs->totals);
    evbuffer_add_printf(b,
                        ",\"blocked_producers\":%" PRIu64 ",\"max_loop_stall_ms\":%" PRIu64
                        ",\"redis\":{\"connected\":%s,\"lag_ops\":%" PRIu64 "}},\"topics\":{",
                        bs->blocked_producers, s->max_loop_stall_ms,
                        ms.connected ? "true" : "false", ms.lag_ops);
    for (size_t i = 0; i < t->n; i++) {
        if (i > 0)
            evbuffer_add(b, ",", 1);
        admin_json_topic(b, &t->v[i]);
    }
    evbuffer_add_printf(b, "}}\n");
}

/* ---- requests ---- */

static void admin_reply(struct evhttp_request *req, int code, const char *reason,
                        const char *ctype, struct evbuffer *body)
{
    struct evkeyvalq *h = evhttp_request_get_output_headers(req);

    evhttp_add_header(h, "Content-Type", ctype);
    evhttp_add_header(h, "Cache-Control", "no-store");
    evhttp_add_header(h, "X-Content-Type-Options", "nosniff");
    if (evhttp_request_get_command(req) == EVHTTP_REQ_HEAD) {
        /* evhttp would send the body even so: HEAD gets its length only. */
        char len[32];
        snprintf(len, sizeof len, "%zu", evbuffer_get_length(body));
        evhttp_add_header(h, "Content-Length", len);
        evhttp_send_reply(req, code, reason, NULL);
        return;
    }
    evhttp_send_reply(req, code, reason, body);
}

static void admin_reply_text(struct evhttp_request *req, int code, const char *reason,
                             const char *text)
{
    struct evbuffer *b = evbuffer_new();

    if (b == NULL) {
        evhttp_send_error(req, HTTP_INTERNAL, NULL);
        return;
    }
    evbuffer_add_printf(b, "%s\n", text);
    admin_reply(req, code, reason, "text/plain; charset=utf-8", b);
    evbuffer_free(b);
}

/* Constant-time, like AUTH's: depends on the guess's length only. */
static bool admin_secret_equal(const char *secret, size_t slen, const char *guess, size_t glen)
{
    unsigned char diff = (unsigned char)(slen != glen);

    for (size_t i = 0; i < glen; i++)
        diff |= (unsigned char)(guess[i] ^ secret[i % slen]);
    return diff == 0;
}

/* "Authorization: Bearer <admin.token>" (the scheme is case-insensitive,
 * RFC 7235), or no token configured. */
static bool admin_authorized(const admin_t *a, struct evhttp_request *req)
{
    const char *token = a->srv->cfg->admin.token;
    const char *h;

    if (token == NULL || token[0] == '\0')
        return true;
    h = evhttp_find_header(evhttp_request_get_input_headers(req), "Authorization");
    if (h == NULL || strncasecmp(h, "Bearer ", 7) != 0)
        return false;
    h += 7;
    while (*h == ' ')
        h++;
    return admin_secret_equal(token, strlen(token), h, strlen(h));
}

static void admin_peer(struct evhttp_request *req, char *out, size_t cap)
{
    struct evhttp_connection *conn = evhttp_request_get_connection(req);
    char *host = NULL;
    ev_uint16_t port = 0;

    if (conn != NULL)
        evhttp_connection_get_peer(conn, &host, &port);
    snprintf(out, cap, "%s:%u", host ? host : "?", (unsigned)port);
}

static void admin_healthz(admin_t *a, struct evhttp_request *req)
{
    const server_t *s = a->srv;

    if (s->draining)
        admin_reply_text(req, 503, "Service Unavailable", "shutting down");
    else if (s->cfg->redis.enabled && s->cfg->redis.confirm && !server_mirror_status(s).connected)
        admin_reply_text(req, 503, "Service Unavailable", "redis unreachable (confirm mode)");
    else
        admin_reply_text(req, 200, "OK", "ok");
}

static void admin_snapshot(admin_t *a, struct evhttp_request *req, bool metrics)
{
    struct evbuffer *b = evbuffer_new();
    broker_stats_t bs;
    admin_topics_t t;

    if (b == NULL || !admin_topics_get(a->srv, &t)) {
        if (b != NULL)
            evbuffer_free(b);
        admin_reply_text(req, 500, "Internal Server Error", "out of memory");
        return;
    }
    broker_stats(a->srv->broker, clock_ms(), &bs);
    if (metrics) {
        admin_metrics(a->srv, &bs, &t, b);
        admin_reply(req, 200, "OK", "text/plain; version=0.0.4; charset=utf-8", b);
    } else {
        admin_stats_json(a->srv, &bs, &t, b);
        admin_reply(req, 200, "OK", "application/json", b);
    }
    free(t.v);
    evbuffer_free(b);
}

/* Who may ask comes first: without the token nothing else is told, not
 * even which paths or methods exist. */
static void admin_on_request(struct evhttp_request *req, void *arg)
{
    admin_t *a = arg;
    const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
    enum evhttp_cmd_type m = evhttp_request_get_command(req);
    const char *path = uri ? evhttp_uri_get_path(uri) : NULL;
    char peer[96];

    if (!admin_authorized(a, req)) {
        admin_peer(req, peer, sizeof peer);
        log_warn("admin: refused a request from %s: missing or wrong bearer token", peer);
        evhttp_add_header(evhttp_request_get_output_headers(req), "WWW-Authenticate",
                          "Bearer realm=\"sluice\"");
        admin_reply_text(req, 401, "Unauthorized", "a bearer token is required");
        return;
    }
    if (m != EVHTTP_REQ_GET && m != EVHTTP_REQ_HEAD) {
        evhttp_add_header(evhttp_request_get_output_headers(req), "Allow", "GET, HEAD");
        admin_reply_text(req, 405, "Method Not Allowed", "read-only: use GET");
        return;
    }
    if (path == NULL)
        admin_reply_text(req, 400, "Bad Request", "bad request");
    else if (strcmp(path, "/metrics") == 0)
        admin_snapshot(a, req, true);
    else if (strcmp(path, "/stats") == 0)
        admin_snapshot(a, req, false);
    else if (strcmp(path, "/healthz") == 0)
        admin_healthz(a, req);
    else
        admin_reply_text(req, 404, "Not Found", "not found: try /metrics, /stats or /healthz");
}

/* ---- life ---- */

static void admin_bound_name(evutil_socket_t fd, char *out, size_t cap)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    char host[INET6_ADDRSTRLEN] = "?";

    if (getsockname(fd, (struct sockaddr *)&ss, &len) != 0) {
        snprintf(out, cap, "?");
        return;
    }
    if (ss.ss_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)&ss;
        evutil_inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof host);
        snprintf(out, cap, "[%s]:%u", host, ntohs(in6->sin6_port));
    } else {
        const struct sockaddr_in *in = (const struct sockaddr_in *)&ss;
        evutil_inet_ntop(AF_INET, &in->sin_addr, host, sizeof host);
        snprintf(out, cap, "%s:%u", host, ntohs(in->sin_port));
    }
}

static int admin_bind(admin_t *a, const char *addr)
{
    struct sockaddr_storage ss;
    struct evconnlistener *l;
    struct evhttp_bound_socket *bs;
    socklen_t len;
    addr_t where;

    if (addr_parse(addr, ADDR_ADMIN, &where) != NULL || addr_sockaddr(&where, &ss, &len) != 0) {
        log_error("admin: cannot listen on %s: not an address (host:port or [v6]:port)", addr);
        return -1;
    }
    l = evconnlistener_new_bind(a->srv->base, NULL, NULL,
                                LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC |
                                    LEV_OPT_REUSEABLE,
                                ADMIN_BACKLOG, (struct sockaddr *)&ss, (int)len);
    if (l == NULL) {
        log_error("admin: cannot listen on %s: %s", addr,
                  evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
        return -1;
    }
    bs = evhttp_bind_listener(a->http, l);
    if (bs == NULL) {
        evconnlistener_free(l);
        log_error("admin: cannot listen on %s: out of memory", addr);
        return -1;
    }
    admin_bound_name(evhttp_bound_socket_get_fd(bs), a->bound, sizeof a->bound);
    return 0;
}

admin_t *admin_new(server_t *srv, const char *addr)
{
    admin_t *a = calloc(1, sizeof *a);

    if (a == NULL || (a->asked = strdup(addr)) == NULL ||
        (a->http = evhttp_new(srv->base)) == NULL) {
        log_error("admin: cannot start the endpoint: out of memory");
        admin_free(a);
        return NULL;
    }
    a->srv = srv;
    /* Every method reaches the handler, so the refused ones get 405
     * (evhttp itself would answer 501). */
    evhttp_set_allowed_methods(a->http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_HEAD |
                                            EVHTTP_REQ_PUT | EVHTTP_REQ_DELETE |
                                            EVHTTP_REQ_OPTIONS | EVHTTP_REQ_TRACE |
                                            EVHTTP_REQ_CONNECT | EVHTTP_REQ_PATCH);
    evhttp_set_timeout(a->http, ADMIN_TIMEOUT_S);
    evhttp_set_max_headers_size(a->http, ADMIN_MAX_HEADERS);
    evhttp_set_max_body_size(a->http, ADMIN_MAX_BODY);
    evhttp_set_gencb(a->http, admin_on_request, a);
    if (admin_bind(a, addr) != 0) {
        admin_free(a);
        return NULL;
    }
    log_info("admin endpoint on http://%s (/metrics, /stats, /healthz)%s", a->bound,
             srv->cfg->admin.token[0] ? ", bearer token required" : "");
    return a;
}

const char *admin_address(const admin_t *a) { return a->bound; }

void admin_configure(admin_t *a, const config_t *cfg)
{
    if (a == NULL) {
        if (cfg->admin.listen[0] != '\0')
            log_warn("reload: admin.listen changed; it applies at the next restart");
        return;
    }
    if (strcmp(a->asked, cfg->admin.listen) != 0)
        log_warn("reload: admin.listen changed; it applies at the next restart");
}

void admin_free(admin_t *a)
{
    if (a == NULL)
        return;
    if (a->http != NULL)
        evhttp_free(a->http);
    free(a->asked);
    free(a);
}
