/* check_admin.c: the admin HTTP endpoint of the real sluiced: /metrics
 * checked by `promtool check metrics` and against what clients did,
 * /stats parsed as JSON, /healthz through a shutdown and with a Redis
 * that goes away in confirm mode, the bearer token, read-only methods,
 * and no secret in any answer.
 *
 * The endpoint listens on 127.0.0.1:0; the harness learns its port from
 * the daemon's port file ("admin HOST:PORT"). HTTP is spoken by hand over
 * a socket, so the test needs no HTTP client library.
 */
#include <arpa/inet.h>
#include <check.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "ck_conn.h"
#include "ck_redis.h"
#include "harness.h"

#define WAIT_MS 15000
#define ADMIN_YAML "admin: {listen: \"127.0.0.1:0\"}\n"

/* ---- a minimal HTTP/1.1 client ---- */

typedef struct http_res {
    int status;
    char *raw;    /* the whole response, NUL-terminated */
    char *body;   /* into raw */
} http_res_t;

static void http_res_free(http_res_t *r)
{
    free(r->raw);
    memset(r, 0, sizeof *r);
}

/* One request on a fresh connection; the response is read to EOF. */
static void http(const sd_t *d, const char *method, const char *path, const char *headers,
                 http_res_t *r)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)d->admin_port)};
    char req[1024];
    size_t len = 0, cap = 1 << 16;
    int fd, n;

    memset(r, 0, sizeof *r);
    ck_assert_msg(d->admin_port > 0, "the admin endpoint is not listening");
    inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
    fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(connect(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    n = snprintf(req, sizeof req,
                 "%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n%s\r\n", method,
                 path, headers ? headers : "");
    ck_assert_int_eq(send(fd, req, (size_t)n, MSG_NOSIGNAL), n);
    r->raw = malloc(cap);
    for (;;) {
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        ssize_t got;
        ck_assert_msg(poll(&pfd, 1, 10000) == 1, "no HTTP response");
        if (len + 1 == cap)
            r->raw = realloc(r->raw, cap *= 2);
        got = recv(fd, r->raw + len, cap - len - 1, 0);
        if (got <= 0)
            break;
        len += (size_t)got;
    }
    close(fd);
    r->raw[len] = '\0';
    ck_assert_msg(sscanf(r->raw, "HTTP/1.1 %d", &r->status) == 1, "not HTTP: %s", r->raw);
    r->body = strstr(r->raw, "\r\n\r\n");
    r->body = r->body ? r->body + 4 : r->raw + len;
}

static int http_status(const sd_t *d, const char *method, const char *path, const char *headers)
{
    http_res_t r;
    int st;

    http(d, method, path, headers, &r);
    st = r.status;
    http_res_free(&r);
    return st;
}

/* A response header's line, case as the daemon writes it. */
static bool http_has_header(const http_res_t *r, const char *line)
{
    const char *end = r->body ? r->body : r->raw + strlen(r->raw);
    const char *p = strstr(r->raw, line);
    return p != NULL && p < end;
}

/* ---- helpers ---- */

/* Every daemon here has its admin endpoint listening. */
static void admin_start(sd_t *d, const char *yaml)
{
    ck_start(d, yaml);
    ck_assert_int_gt(d->admin_port, 0);
}

/* One field of a STATS body, e.g. stats_field(c, "t", "in_flight"). */
static long long stats_field(tc_t *c, const char *topic, const char *field)
{
    char key[64];
    const char *p;

    ck_assert_int_eq(tc_sendf(c, "STATS %s\r\n", topic), 0);
    ck_assert_int_eq(tc_reply(c), 0);
    ck_assert_int_eq(c->r.type, REPLY_STATS);
    snprintf(key, sizeof key, "\n%s: ", field);
    p = memmem(c->r.body, c->r.body_len, key, strlen(key));
    ck_assert_msg(p != NULL, "no %s in STATS %s", field, topic);
    return atoll(p + strlen(key));
}

/* Write s to DIR/name; returns the path (static). */
static const char *write_file(const sd_t *d, const char *name, const char *s)
{
    static char path[256];
    FILE *f;

    snprintf(path, sizeof path, "%s/%s", d->dir, name);
    f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fputs(s, f);
    ck_assert_int_eq(fclose(f), 0);
    return path;
}

/* Run `cmd`; its stdout (malloc'ed) and exit status. */
static char *sh(const char *cmd, int *status)
{
    char *out = run_capture(cmd, status);
    ck_assert_msg(out != NULL, "cannot run: %s", cmd);
    return out;
}

/* The line "name value" of a metrics body holds exactly `value`. */
static void metric_is(const char *body, const char *name, const char *value)
{
    char want[256];
    const char *p = body;

    snprintf(want, sizeof want, "%s %s\n", name, value);
    while ((p = strstr(p, name)) != NULL) {
        if ((p == body || p[-1] == '\n') && strncmp(p, want, strlen(want)) == 0)
            return;
        p++;
    }
    ck_abort_msg("no line \"%s %s\" in:\n%s", name, value, body);
}

/* ---- /metrics ---- */

START_TEST(test_metrics_pass_promtool_and_follow_actions)
{
    sd_t d;
    http_res_t r;
    int status = -1;
    char cmd[512], *out;

    admin_start(&d, ADMIN_YAML "topics:\n  t: {max_messages: 10, overflow: reject}\n");
    tc_t *c = ck_open(&d);

    /* Before anything: zeros, and every declared topic is there. */
    http(&d, "GET", "/metrics", NULL, &r);
    ck_assert_int_eq(r.status, 200);
    metric_is(r.body, "sluice_messages_published_total", "0");
    metric_is(r.body, "sluice_topic_ready_messages{topic=\"t\"}", "0");
    http_res_free(&r);

    ck_send(c, "PUB t 1\r\na\r\nPUB t 2\r\nbb\r\nPUB t 3\r\nccc\r\nPUB u:v 1\r\nx\r\n");
    for (int i = 0; i < 4; i++)
        ck_expect_prefix(c, "+OK ");
    ck_send(c, "GET t\r\n");
    ck_expect_prefix(c, "MSG t 1 1 1");
    ck_send(c, "ACK 1\r\nGET t\r\n");
    ck_expect_prefix(c, "+OK 1");
    ck_expect_prefix(c, "MSG t 2 1 2");

    http(&d, "GET", "/metrics", NULL, &r);
    ck_assert_int_eq(r.status, 200);
    ck_assert(http_has_header(&r, "Content-Type: text/plain; version=0.0.4"));
    metric_is(r.body, "sluice_messages_published_total", "4");
    metric_is(r.body, "sluice_messages_delivered_total", "2");
    metric_is(r.body, "sluice_messages_acked_total", "1");
    metric_is(r.body, "sluice_messages", "3");
    metric_is(r.body, "sluice_message_bytes", "6");
    metric_is(r.body, "sluice_connections", "1");
    metric_is(r.body, "sluice_topics", "2");
    metric_is(r.body, "sluice_topic_messages_published_total{topic=\"t\"}", "3");
    metric_is(r.body, "sluice_topic_messages_published_total{topic=\"u:v\"}", "1");
    metric_is(r.body, "sluice_topic_ready_messages{topic=\"t\"}", "1");
    metric_is(r.body, "sluice_topic_in_flight_messages{topic=\"t\"}", "1");
    metric_is(r.body, "sluice_topic_max_messages{topic=\"t\"}", "10");
    metric_is(r.body, "sluice_topic_message_bytes{topic=\"t\"}", "5");
    metric_is(r.body, "sluice_redis_connected", "0");
    ck_assert_ptr_nonnull(strstr(r.body, "# TYPE sluice_messages_published_total counter\n"));
    ck_assert_ptr_nonnull(strstr(r.body, "# TYPE sluice_topic_ready_messages gauge\n"));
    ck_assert_ptr_nonnull(strstr(r.body, "# HELP sluice_topic_ready_messages "));

    /* The standard linter of the format, as Prometheus users run it. */
    snprintf(cmd, sizeof cmd, "promtool check metrics < '%s' 2>&1",
             write_file(&d, "metrics.txt", r.body));
    out = sh(cmd, &status);
    ck_assert_msg(status != 127, "promtool not found (apt-get install prometheus)");
    ck_assert_msg(status == 0, "promtool check metrics failed (%d):\n%s", status, out);
    free(out);
    http_res_free(&r);

    /* t holds 2 of its 10: the 9th PUB from here is rejected, and counted
     * in the topic and the server. */
    for (int i = 0; i < 9; i++)
        ck_send(c, "PUB t 1\r\nz\r\n");
    for (int i = 0; i < 8; i++)
        ck_expect_prefix(c, "+OK ");
    ck_expect_prefix(c, "-FULL t");
    http(&d, "GET", "/metrics", NULL, &r);
    metric_is(r.body, "sluice_topic_messages_rejected_total{topic=\"t\"}", "1");
    metric_is(r.body, "sluice_messages_rejected_total", "1");
    http_res_free(&r);

    tc_close(c);
    ck_assert_int_eq(sd_stop(&d), 0);
}
END_TEST

/* ---- /stats ---- */

START_TEST(test_stats_is_json_with_every_topic)
{
    sd_t d;
    http_res_t r;
    int status = -1;
    char cmd[768], *out;
    const char *path;

    admin_start(&d, ADMIN_YAML "topics:\n  orders: {dead_letter: orders.dead}\n");
    tc_t *c = ck_open(&d);
    ck_send(c, "PUB orders 5\r\nhello\r\nPUB orders 2\r\nhi\r\nSUB orders 1\r\n");
    ck_expect_prefix(c, "+OK 1");
    ck_expect_prefix(c, "+OK 2");
    ck_expect_prefix(c, "+OK");
    ck_expect_prefix(c, "MSG orders 1 1 5");

    http(&d, "GET", "/stats", NULL, &r);
    ck_assert_int_eq(r.status, 200);
    ck_assert(http_has_header(&r, "Content-Type: application/json"));
    path = write_file(&d, "stats.json", r.body);
    snprintf(cmd, sizeof cmd, "python3 -m json.tool < '%s' > /dev/null 2>&1", path);
    out = sh(cmd, &status);
    ck_assert_msg(status == 0, "/stats is not valid JSON:\n%s", r.body);
    free(out);
    snprintf(cmd, sizeof cmd,
             "python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); s=d[\"server\"]; "
             "t=d[\"topics\"][\"orders\"]; "
             "print(s[\"published\"], s[\"connections\"], s[\"redis\"][\"connected\"], "
             "t[\"ready\"], t[\"in_flight\"], t[\"consumers\"], t[\"bytes\"], t[\"overflow\"], "
             "sorted(d[\"topics\"]))' '%s'",
             path);
    out = sh(cmd, &status);
    ck_assert_int_eq(status, 0);
    ck_assert_str_eq(out, "2 1 False 1 1 1 7 block ['orders', 'orders.dead']\n");
    free(out);
    http_res_free(&r);
    tc_close(c);
    ck_assert_int_eq(sd_stop(&d), 0);
}
END_TEST

/* ---- /healthz ---- */

/* A client that asks for much more than it reads, through a tiny receive
 * window, so its output waits in the daemon and a shutdown must drain. */
static int slow_consumer(const sd_t *d, const char *topic)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)d->port)};
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), small = 4096;
    char line[128];
    int n;

    ck_assert_int_ge(fd, 0);
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
    inet_pton(AF_INET, d->host, &sa.sin_addr);
    ck_assert_int_eq(connect(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    n = snprintf(line, sizeof line, "SUB %s 100000\r\n", topic);
    ck_assert_int_eq(send(fd, line, (size_t)n, MSG_NOSIGNAL), n);
    return fd;
}

/* Read until the daemon closes; returns the byte count. */
static size_t read_to_eof(int fd)
{
    char buf[65536];
    size_t total = 0;
    uint64_t until = sd_now_ms() + WAIT_MS;

    while (sd_now_ms() < until) {
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        ssize_t n;
        if (poll(&pfd, 1, 1000) <= 0)
            continue;
        n = recv(fd, buf, sizeof buf, 0);
        if (n <= 0)
            break;
        total += (size_t)n;
    }
    return total;
}

START_TEST(test_healthz_503_while_shutting_down)
{
    sd_t d;
    http_res_t r;
    uint64_t until;
    int st = 0, fd;
    size_t got;
    static char payload[65536];

    admin_start(&d, ADMIN_YAML "limits: {output_buffer: 1MiB}\n");
    http(&d, "GET", "/healthz", NULL, &r);
    ck_assert_int_eq(r.status, 200);
    ck_assert_str_eq(r.body, "ok\n");
    http_res_free(&r);

    /* 16 MiB waiting for a consumer that does not read. */
    tc_t *p = ck_open(&d);
    memset(payload, 'p', sizeof payload);
    for (int i = 0; i < 256; i++) {
        ck_assert_int_eq(tc_sendf(p, "PUB big %zu\r\n", sizeof payload), 0);
        ck_assert_int_eq(tc_send(p, payload, sizeof payload), 0);
        ck_assert_int_eq(tc_send(p, "\r\n", 2), 0);
    }
    for (int i = 0; i < 256; i++)
        ck_expect_prefix(p, "+OK ");
    fd = slow_consumer(&d, "big");
    until = sd_now_ms() + WAIT_MS;
    while (stats_field(p, "big", "in_flight") == 0 && sd_now_ms() < until)
        usleep(10000);
    ck_assert_int_gt(stats_field(p, "big", "in_flight"), 0);

    sd_signal(&d, SIGTERM);
    until = sd_now_ms() + WAIT_MS;
    while (sd_now_ms() < until && (st = http_status(&d, "GET", "/healthz", NULL)) == 200)
        usleep(10000);
    ck_assert_int_eq(st, 503);
    http(&d, "GET", "/healthz", NULL, &r);
    ck_assert_int_eq(r.status, 503);
    ck_assert_str_eq(r.body, "shutting down\n");
    http_res_free(&r);
    /* Still draining: the metrics answer too. */
    ck_assert_int_eq(http_status(&d, "GET", "/metrics", NULL), 200);

    /* The consumer takes what it is owed, then the daemon exits cleanly. */
    got = read_to_eof(fd);
    ck_assert_uint_gt(got, 1u << 20);
    close(fd);
    tc_close(p);
    ck_assert_int_eq(sd_stop(&d), 0);
}
END_TEST

static int healthz_wait(const sd_t *d, int want)
{
    uint64_t until = sd_now_ms() + WAIT_MS;
    int st;

    while ((st = http_status(d, "GET", "/healthz", NULL)) != want && sd_now_ms() < until)
        usleep(20000);
    return st;
}

START_TEST(test_healthz_follows_redis_in_confirm_mode)
{
    sd_t d;
    ckr_t redis;
    char yaml[1024];
    http_res_t r;

    ckr_init(&redis, NULL, false, WAIT_MS);
    snprintf(yaml, sizeof yaml,
             ADMIN_YAML "redis:\n  enabled: true\n  address: unix:%s\n  confirm: true\n"
                        "  restore: false\n",
             redis.sock);

    /* No Redis yet: confirm mode cannot accept a PUB, so not healthy. */
    admin_start(&d, yaml);
    http(&d, "GET", "/healthz", NULL, &r);
    ck_assert_int_eq(r.status, 503);
    ck_assert_str_eq(r.body, "redis unreachable (confirm mode)\n");
    http_res_free(&r);

    ckr_spawn(&redis);
    ck_assert_int_eq(healthz_wait(&d, 200), 200);
    ckr_kill(&redis);
    ck_assert_int_eq(healthz_wait(&d, 503), 503);
    ck_assert_int_eq(sd_stop(&d), 0);

    /* Without confirm, Redis being away does not make the broker unhealthy. */
    snprintf(yaml, sizeof yaml,
             ADMIN_YAML "redis:\n  enabled: true\n  address: unix:%s\n  restore: false\n",
             redis.sock);
    admin_start(&d, yaml);
    ck_assert_int_eq(http_status(&d, "GET", "/healthz", NULL), 200);
    ck_assert_int_eq(sd_stop(&d), 0);
    ckr_stop(&redis);
}
END_TEST

/* ---- token, methods, paths ---- */

START_TEST(test_bearer_token)
{
    sd_t d;
    http_res_t r;
    const char *paths[] = {"/metrics", "/stats", "/healthz", "/nowhere"};

    admin_start(&d, "admin: {listen: \"127.0.0.1:0\", token: tok-3n}\n");
    for (size_t i = 0; i < sizeof paths / sizeof paths[0]; i++) {
        http(&d, "GET", paths[i], NULL, &r);
        ck_assert_int_eq(r.status, 401);
        ck_assert(http_has_header(&r, "WWW-Authenticate: Bearer"));
        ck_assert_ptr_null(strstr(r.raw, "tok-3n"));
        http_res_free(&r);
        ck_assert_int_eq(http_status(&d, "GET", paths[i], "Authorization: Bearer tok-3\r\n"), 401);
        ck_assert_int_eq(http_status(&d, "GET", paths[i], "Authorization: Bearer tok-3nn\r\n"),
                         401);
        ck_assert_int_eq(http_status(&d, "GET", paths[i], "Authorization: Basic tok-3n\r\n"), 401);
        /* Without the token not even the method is judged. */
        ck_assert_int_eq(http_status(&d, "POST", paths[i], NULL), 401);
    }
    ck_assert_int_eq(http_status(&d, "GET", "/metrics", "Authorization: Bearer tok-3n\r\n"), 200);
    ck_assert_int_eq(http_status(&d, "GET", "/stats", "Authorization: bearer tok-3n\r\n"), 200);
    ck_assert_int_eq(http_status(&d, "GET", "/healthz", "Authorization: Bearer tok-3n\r\n"), 200);
    ck_assert_int_eq(http_status(&d, "GET", "/nowhere", "Authorization: Bearer tok-3n\r\n"), 404);
    ck_assert_int_eq(http_status(&d, "POST", "/stats", "Authorization: Bearer tok-3n\r\n"), 405);
    ck_assert(sd_log_has(&d, "admin: refused a request from 127.0.0.1:"));
    ck_assert(!sd_log_has(&d, "tok-3n"));

    /* A reload changes the token at once. */
    sd_write_conf(&d, "admin: {listen: \"127.0.0.1:0\", token: fresh}\n");
    sd_signal(&d, SIGHUP);
    uint64_t until = sd_now_ms() + WAIT_MS;
    while (http_status(&d, "GET", "/healthz", "Authorization: Bearer fresh\r\n") != 200 &&
           sd_now_ms() < until)
        usleep(10000);
    ck_assert_int_eq(http_status(&d, "GET", "/healthz", "Authorization: Bearer fresh\r\n"), 200);
    ck_assert_int_eq(http_status(&d, "GET", "/healthz", "Authorization: Bearer tok-3n\r\n"), 401);
    ck_assert(sd_log_has(&d, "reloaded"));
    ck_assert_int_eq(sd_stop(&d), 0);
}
END_TEST

START_TEST(test_read_only)
{
    sd_t d;
    http_res_t r;
    const char *methods[] = {"POST", "PUT", "DELETE", "PATCH", "OPTIONS"};

    admin_start(&d, ADMIN_YAML);
    tc_t *c = ck_open(&d);
    ck_send(c, "PUB t 1\r\nx\r\n");
    ck_expect_prefix(c, "+OK 1");
    for (size_t i = 0; i < sizeof methods / sizeof methods[0]; i++) {
        http(&d, methods[i], "/metrics", "Content-Length: 0\r\n", &r);
        ck_assert_msg(r.status == 405, "%s: %d", methods[i], r.status);
        ck_assert(http_has_header(&r, "Allow: GET, HEAD"));
        http_res_free(&r);
    }
    http(&d, "POST", "/stats", "Content-Length: 7\r\n\r\nfoo=bar", &r);
    ck_assert_int_eq(r.status, 405);
    http_res_free(&r);
    /* HEAD: the headers alone. */
    http(&d, "HEAD", "/stats", NULL, &r);
    ck_assert_int_eq(r.status, 200);
    ck_assert_str_eq(r.body, "");
    ck_assert(http_has_header(&r, "Content-Length: "));
    http_res_free(&r);
    http(&d, "GET", "/", NULL, &r);
    ck_assert_int_eq(r.status, 404);
    http_res_free(&r);
    /* A query string does not change the path. */
    ck_assert_int_eq(http_status(&d, "GET", "/healthz?verbose=1", NULL), 200);
    /* Nothing was changed by any of it. */
    ck_send(c, "STATS t\r\n");
    ck_assert_int_eq(tc_reply(c), 0);
    ck_assert_ptr_nonnull(memmem(c->r.body, c->r.body_len, "\nready: 1\n", 10));
    tc_close(c);
    ck_assert_int_eq(sd_stop(&d), 0);
}
END_TEST

/* Passwords, the Redis password and the token never show. */
START_TEST(test_no_secret_in_any_output)
{
    sd_t d;
    http_res_t r;
    char yaml[1024], *hash;
    int status;
    const char *secrets[] = {"pw-of-bob", "redis-pw-x", "admintok-x", "$6$"};
    const char *auth = "Authorization: Bearer admintok-x\r\n";

    hash = run_capture("openssl passwd -6 hashed-pw 2>/dev/null", &status);
    ck_assert(hash != NULL && status == 0);
    hash[strcspn(hash, "\n")] = '\0';
    snprintf(yaml, sizeof yaml,
             "admin: {listen: \"127.0.0.1:0\", token: admintok-x}\n"
             "redis: {enabled: true, address: \"127.0.0.1:1\", password: redis-pw-x, "
             "restore: false}\n"
             "users:\n"
             "  bob: {password: pw-of-bob, publish: [\"*\"], subscribe: [\"*\"]}\n"
             "  eve: {password: \"%s\", publish: [\"*\"], subscribe: [\"*\"]}\n",
             hash);
    free(hash);
    admin_start(&d, yaml);
    tc_t *c = ck_open(&d);
    ck_send(c, "AUTH bob pw-of-bob\r\nAUTH eve wrong\r\nSTATS\r\n");
    ck_expect_prefix(c, "+OK");
    ck_expect_prefix(c, "-NOAUTH");
    ck_assert_int_eq(tc_reply(c), 0);
    ck_assert_int_eq(c->r.type, REPLY_STATS);
    for (size_t i = 0; i < sizeof secrets / sizeof secrets[0]; i++)
        ck_assert_ptr_null(memmem(c->r.body, c->r.body_len, secrets[i], strlen(secrets[i])));

    const char *paths[] = {"/metrics", "/stats", "/healthz"};
    for (size_t p = 0; p < sizeof paths / sizeof paths[0]; p++) {
        http(&d, "GET", paths[p], auth, &r);
        ck_assert_int_eq(r.status, 200);
        for (size_t i = 0; i < sizeof secrets / sizeof secrets[0]; i++)
            ck_assert_msg(strstr(r.raw, secrets[i]) == NULL, "%s shows %s", paths[p], secrets[i]);
        http_res_free(&r);
    }
    tc_close(c);
    ck_assert_int_eq(sd_stop(&d), 0);
}
END_TEST

START_TEST(test_no_secret_in_the_log)
{
    sd_t d;
    const char *secrets[] = {"pw-of-bob", "redis-pw-x", "admintok-x", "guess-x"};

    admin_start(&d, "admin: {listen: \"127.0.0.1:0\", token: admintok-x}\n"
              "redis: {enabled: true, address: \"127.0.0.1:1\", password: redis-pw-x, "
              "restore: false}\n"
              "log: {level: debug}\n"
              "users:\n"
              "  bob: {password: pw-of-bob, publish: [\"*\"], subscribe: [\"*\"]}\n");
    tc_t *c = ck_open(&d);
    ck_send(c, "AUTH bob guess-x\r\nAUTH bob pw-of-bob\r\n");
    ck_expect_prefix(c, "-NOAUTH");
    ck_expect_prefix(c, "+OK");
    ck_assert_int_eq(http_status(&d, "GET", "/metrics", "Authorization: Bearer nope\r\n"), 401);
    ck_assert_int_eq(http_status(&d, "GET", "/metrics", "Authorization: Bearer admintok-x\r\n"),
                     200);
    sd_signal(&d, SIGHUP);
    uint64_t until = sd_now_ms() + WAIT_MS;
    while (!sd_log_has(&d, "reloaded") && sd_now_ms() < until)
        usleep(10000);
    for (size_t i = 0; i < sizeof secrets / sizeof secrets[0]; i++)
        ck_assert_msg(!sd_log_has(&d, secrets[i]), "the log shows %s", secrets[i]);
    ck_assert(sd_log_has(&d, "auth failed for user 'bob'"));
    tc_close(c);
    ck_assert_int_eq(sd_stop(&d), 0);
}
END_TEST

START_TEST(test_off_and_port_file)
{
    sd_t d;

    /* The harness turns it off unless the test asks for it. */
    ck_assert_int_eq(sd_start(&d, ""), 0);
    ck_assert_int_eq(d.admin_port, 0);
    ck_assert(!sd_log_has(&d, "admin endpoint"));
    ck_assert_int_eq(sd_stop(&d), 0);

    /* Port 0: the port file names the port really bound. */
    admin_start(&d, ADMIN_YAML);
    ck_assert_int_ne(d.admin_port, d.port);
    ck_assert(sd_log_has(&d, "admin endpoint on http://127.0.0.1:"));
    ck_assert_int_eq(sd_stop(&d), 0);
}
END_TEST

static Suite *admin_suite(void)
{
    Suite *s = suite_create("admin");
    TCase *tc = tcase_create("http");

    tcase_set_timeout(tc, 90);
    tcase_add_test(tc, test_metrics_pass_promtool_and_follow_actions);
    tcase_add_test(tc, test_stats_is_json_with_every_topic);
    tcase_add_test(tc, test_healthz_503_while_shutting_down);
    tcase_add_test(tc, test_healthz_follows_redis_in_confirm_mode);
    tcase_add_test(tc, test_bearer_token);
    tcase_add_test(tc, test_read_only);
    tcase_add_test(tc, test_no_secret_in_any_output);
    tcase_add_test(tc, test_no_secret_in_the_log);
    tcase_add_test(tc, test_off_and_port_file);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(admin_suite());
    int failed;

    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
