/* check_tls.c: tls:// listeners against the real daemon (the beanstalk one too).
 *
 * The suite makes its own CAs and certificates with the `openssl` command
 * and talks TLS three ways: the `sluice` client (--tls, --ca, --cert,
 * --key), `openssl s_client` fed commands on stdin, and a small OpenSSL
 * client in this file for what needs control over each byte
 * (backpressure). Handshakes that must fail are checked on both sides:
 * the client's exit and the daemon's log line naming the peer.
 */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "ck_conn.h"
#include "harness.h"

#define TT_IO_MS 10000              /* a reply that should come: wait this long at most */
#define TT_QUIET_MS 300             /* a reply that should not come: look this long */
#define TT_FLOOD_MAX (64u << 20)    /* a relay without backpressure would take all of it */
#define TT_FLOOD_PAYLOAD (64 * 1024)

static char certs[64];              /* CAs, certificates and keys, made once in main */
static sd_t d;
static bool d_up;
static int tls_port;

/* ---- setup ---- */

static int sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int sh(const char *fmt, ...)
{
    char cmd[8192];
    va_list ap;
    int st;

    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    st = system(cmd);
    return st == -1 ? -1 : WEXITSTATUS(st);
}

/* ca (signs server, client, badname), other-ca (signs other-server). */
static int make_certs(void)
{
    static const char script[] =
        "set -e; cd '%s'\n"
        "ec='-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes'\n"
        "q() { \"$@\" >/dev/null 2>&1 || { echo \"failed: $*\" >&2; exit 1; }; }\n"
        "q openssl req -x509 $ec -keyout ca.key -out ca.pem -days 2 -subj /CN=sluice-test-ca\n"
        "q openssl req -x509 $ec -keyout other-ca.key -out other-ca.pem -days 2 "
        "-subj /CN=sluice-other-ca\n"
        "leaf() {\n"
        "  q openssl req $ec -keyout $1.key -out $1.csr -subj /CN=$2\n"
        "  printf '%%s\\n' \"$4\" > $1.ext\n"
        "  q openssl x509 -req -in $1.csr -CA $3.pem -CAkey $3.key -CAcreateserial -days 2 "
        "-extfile $1.ext -out $1.pem\n"
        "}\n"
        "leaf server localhost ca 'subjectAltName=IP:127.0.0.1,DNS:localhost'\n"
        "leaf client alice ca 'extendedKeyUsage=clientAuth'\n"
        "leaf badname elsewhere ca 'subjectAltName=DNS:elsewhere.invalid'\n"
        "leaf other-server localhost other-ca 'subjectAltName=IP:127.0.0.1,DNS:localhost'\n"
        "q openssl pkey -in server.key -aes256 -passout pass:secret -out encrypted.key\n";

    snprintf(certs, sizeof certs, "/tmp/sluice-tls-XXXXXX");
    if (mkdtemp(certs) == NULL)
        return -1;
    return sh(script, certs);
}

/* Check leaves a failed test through _exit(): no teardown, no atexit. So
 * each daemon is written down in certs/daemons, and main kills whatever
 * was not stopped. */
static void note_daemon(const char *what)
{
    char path[128];
    FILE *f;

    snprintf(path, sizeof path, "%s/daemons", certs);
    f = fopen(path, "a");
    if (f == NULL)
        return;
    fprintf(f, "%s %d %s\n", what, (int)d.pid, d.dir);
    fclose(f);
}

static int stop_daemon(void)
{
    int rc = 0;

    if (d_up) {
        note_daemon("stopped");
        rc = sd_stop(&d);
    }
    d_up = false;
    return rc;
}

static void kill_leftovers(void)
{
    char path[128], what[16], dir[64];
    int pid, stopped[256], nstopped = 0;
    FILE *f;

    snprintf(path, sizeof path, "%s/daemons", certs);
    if ((f = fopen(path, "r")) == NULL)
        return;
    while (fscanf(f, "%15s %d %63s", what, &pid, dir) == 3)
        if (strcmp(what, "stopped") == 0 && nstopped < 256)
            stopped[nstopped++] = pid;
    rewind(f);
    while (fscanf(f, "%15s %d %63s", what, &pid, dir) == 3) {
        bool done = false;
        for (int i = 0; i < nstopped; i++)
            done = done || stopped[i] == pid;
        if (strcmp(what, "started") != 0 || done || pid <= 0)
            continue;
        kill(-pid, SIGKILL);
        if (strncmp(dir, "/tmp/sluice-test-", 17) == 0)
            sh("rm -rf '%s'", dir);
    }
    fclose(f);
}

/* The tls:// line of the port file. */
static int read_tls_port(void)
{
    char path[128], line[128];
    FILE *f;
    int port = -1;

    snprintf(path, sizeof path, "%s/ports", d.dir);
    f = fopen(path, "r");
    if (f == NULL)
        return -1;
    while (port < 0 && fgets(line, sizeof line, f))
        if (strncmp(line, "tls://127.0.0.1:", 16) == 0)
            port = atoi(line + 16);
    fclose(f);
    return port;
}

/* Start the daemon with a plain and a TLS listener; `tls_extra` goes into
 * the tls: mapping, `yaml` after it. Runs in the forked test process;
 * atexit covers a failing assertion. */
static void start_with(const char *cert, const char *tls_extra, const char *yaml)
{
    char conf[4096];

    snprintf(conf, sizeof conf,
             "listen: [127.0.0.1:0, tls://127.0.0.1:0]\n"
             "tls: {cert: %s/%s.pem, key: %s/%s.key%s}\n"
             "log: {level: debug}\n%s",
             certs, cert, certs, cert, tls_extra, yaml);
    ck_assert_int_eq(sd_start(&d, conf), 0);
    d_up = true;
    note_daemon("started");
    tls_port = read_tls_port();
    ck_assert_int_gt(tls_port, 0);
}

static void setup_plain(void) { start_with("server", "", ""); }

static void setup_verify(void)
{
    char extra[256];

    snprintf(extra, sizeof extra, ", ca: %s/ca.pem, verify_clients: true", certs);
    start_with("server", extra, "");
}

static void teardown(void)
{
    ck_assert_int_eq(stop_daemon(), 0);
}

/* ---- the sluice client and openssl s_client ---- */

/* `sluice -s tls://127.0.0.1:PORT ARGS`, stdout and stderr in *out. */
static int cli(char **out, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int cli(char **out, const char *fmt, ...)
{
    char addr[64];
    va_list ap;

    snprintf(addr, sizeof addr, "tls://127.0.0.1:%d", tls_port);
    va_start(ap, fmt);
    int status = ck_sluice(out, addr, "2>&1", fmt, ap);
    va_end(ap);
    return status;
}

/* Pipe `input` into `openssl s_client -quiet` (which keeps the connection
 * until the broker closes it: end input with QUIT). stdout in *out. */
static int sclient(char **out, const char *input, const char *opts)
{
    char path[128], cmd[4096];
    FILE *f;
    int status = -1;

    snprintf(path, sizeof path, "%s/sclient.in", d.dir);
    f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fputs(input, f);
    fclose(f);
    snprintf(cmd, sizeof cmd,
             "timeout 20 openssl s_client -quiet -connect 127.0.0.1:%d %s < '%s' 2>'%s/sclient.err'",
             tls_port, opts, path, d.dir);
    *out = run_capture(cmd, &status);
    ck_assert_ptr_nonnull(*out);
    return status;
}

/* Wait until the daemon's log has `needle`: the daemon may log a failed
 * handshake after the client has already given up, and reloads are
 * asynchronous. */
static bool wait_log(const char *needle)
{
    uint64_t until = sd_now_ms() + TT_IO_MS;

    while (sd_now_ms() < until) {
        if (sd_log_has(&d, needle))
            return true;
        usleep(10000);
    }
    return false;
}

static bool log_line_has_both(const char *a, const char *b)
{
    FILE *f = fopen(d.log, "r");
    char line[4096];
    bool found = false;

    if (f == NULL)
        return false;
    while (!found && fgets(line, sizeof line, f))
        found = strstr(line, a) != NULL && strstr(line, b) != NULL;
    fclose(f);
    return found;
}

/* A failed handshake is logged, with the peer's address and why. */
static bool wait_log_failure(const char *why)
{
    uint64_t until = sd_now_ms() + TT_IO_MS;

    while (sd_now_ms() < until) {
        if (log_line_has_both("handshake with 127.0.0.1:", why))
            return true;
        usleep(10000);
    }
    return false;
}

/* ---- a TLS client with control over each byte ---- */

typedef struct tt {
    int fd;
    SSL_CTX *ctx;
    SSL *ssl;
    char buf[1 << 16];
    size_t len;
    char line[512];
} tt_t;

/* Wait for the socket as OpenSSL asked; false on timeout. */
static bool tt_wait(tt_t *t, int ssl_ret, uint64_t until)
{
    int e = SSL_get_error(t->ssl, ssl_ret);
    struct pollfd p = {.fd = t->fd, .events = e == SSL_ERROR_WANT_WRITE ? POLLOUT : POLLIN};
    uint64_t now = sd_now_ms();

    if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE)
        ck_abort_msg("TLS error %d: %s", e, ERR_reason_error_string(ERR_get_error()));
    if (now >= until)
        return false;
    return poll(&p, 1, (int)(until - now)) > 0;
}

static tt_t *tt_open(void)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)tls_port)};
    char ca[128];
    tt_t *t = calloc(1, sizeof *t);
    uint64_t until = sd_now_ms() + TT_IO_MS;
    int r;

    ck_assert_ptr_nonnull(t);
    inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
    t->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    ck_assert_int_eq(connect(t->fd, (struct sockaddr *)&sa, sizeof sa), 0);
    ck_assert_int_eq(fcntl(t->fd, F_SETFL, O_NONBLOCK), 0);
    snprintf(ca, sizeof ca, "%s/ca.pem", certs);
    t->ctx = SSL_CTX_new(TLS_client_method());
    ck_assert_int_eq(SSL_CTX_load_verify_locations(t->ctx, ca, NULL), 1);
    SSL_CTX_set_verify(t->ctx, SSL_VERIFY_PEER, NULL);
    SSL_CTX_set_mode(t->ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    t->ssl = SSL_new(t->ctx);
    SSL_set_fd(t->ssl, t->fd);
    while ((r = SSL_connect(t->ssl)) != 1)
        ck_assert_msg(tt_wait(t, r, until), "TLS handshake timed out");
    return t;
}

static void tt_close(tt_t *t)
{
    if (t == NULL)
        return;
    SSL_free(t->ssl);
    SSL_CTX_free(t->ctx);
    close(t->fd);
    free(t);
}

/* Write all of data, or give up once the socket has stayed full for
 * quiet_ms. Returns how many bytes OpenSSL took. */
static size_t tt_write(tt_t *t, const char *data, size_t len, int quiet_ms)
{
    size_t done = 0;

    while (done < len) {
        int n = SSL_write(t->ssl, data + done, (int)(len - done));
        if (n > 0) {
            done += (size_t)n;
            continue;
        }
        if (!tt_wait(t, n, sd_now_ms() + (uint64_t)quiet_ms))
            break;
    }
    return done;
}

static void tt_send(tt_t *t, const char *s)
{
    ck_assert_uint_eq(tt_write(t, s, strlen(s), TT_IO_MS), strlen(s));
}

/* One line (without CRLF) within timeout_ms; NULL on timeout or close. */
static const char *tt_line(tt_t *t, int timeout_ms)
{
    uint64_t until = sd_now_ms() + (uint64_t)timeout_ms;

    for (;;) {
        char *nl = memchr(t->buf, '\n', t->len);
        if (nl != NULL) {
            size_t n = (size_t)(nl - t->buf);
            size_t keep = n > 0 && nl[-1] == '\r' ? n - 1 : n;
            if (keep >= sizeof t->line)
                keep = sizeof t->line - 1;
            memcpy(t->line, t->buf, keep);
            t->line[keep] = '\0';
            memmove(t->buf, nl + 1, t->len - n - 1);
            t->len -= n + 1;
            return t->line;
        }
        ck_assert_uint_lt(t->len, sizeof t->buf);
        int r = SSL_read(t->ssl, t->buf + t->len, (int)(sizeof t->buf - t->len));
        if (r > 0)
            t->len += (size_t)r;
        else if (SSL_get_error(t->ssl, r) == SSL_ERROR_ZERO_RETURN)
            return NULL; /* the broker closed */
        else if (!tt_wait(t, r, until))
            return NULL;
    }
}

/* ---- tests ---- */

START_TEST(test_sluice_pub_sub_ack)
{
    char *out;
    tc_t *c;

    ck_assert_int_eq(cli(&out, "--ca %s/ca.pem ping", certs), 0);
    ck_assert_str_eq(out, "PONG\n");
    free(out);
    ck_assert_int_eq(cli(&out, "--ca %s/ca.pem pub t one two", certs), 0);
    free(out);
    ck_assert_int_eq(cli(&out, "--ca %s/ca.pem sub -n 2 t", certs), 0);
    ck_assert_str_eq(out, "one\ntwo\n");
    free(out);
    /* The ACKs went through the relay too: the broker holds nothing. */
    c = tc_open(&d);
    ck_assert_ptr_nonnull(c);
    ck_assert_int_eq(tc_sendf(c, "STATS t\r\n"), 0);
    ck_assert_int_eq(tc_reply(c), 0);
    ck_assert_int_eq(c->r.type, REPLY_STATS);
    ck_assert_ptr_nonnull(memmem(c->r.body, c->r.body_len, "acked: 2\n", 9));
    ck_assert_ptr_nonnull(memmem(c->r.body, c->r.body_len, "in_flight: 0\n", 13));
    tc_close(c);
    /* --tls with a tls:// address and a host name works too. */
    ck_assert_int_eq(sh("'%s' -s localhost:%d --tls --ca %s/ca.pem ping >/dev/null",
                        sd_bin("SLUICE", "../src/sluice"), tls_port, certs),
                     0);
    /* conn.c saw the real TCP peer, not the socketpair. */
    ck_assert(sd_log_has(&d, "connection from 127.0.0.1:"));
    ck_assert(!sd_log_has(&d, "connection from unix"));
    ck_assert_int_eq(stop_daemon(), 0);
}
END_TEST

START_TEST(test_s_client_session)
{
    char *out, opts[256];

    snprintf(opts, sizeof opts, "-CAfile %s/ca.pem -verify_return_error", certs);
    ck_assert_int_eq(sclient(&out, "PING\r\nPUB t 5\r\nhello\r\nGET t\r\nACK 1\r\nQUIT\r\n", opts),
                     0);
    ck_assert_str_eq(out, "+PONG\r\n+OK 1\r\nMSG t 1 1 5\r\nhello\r\n+OK 1\r\n+BYE\r\n");
    free(out);
    ck_assert_int_eq(stop_daemon(), 0);
}
END_TEST

START_TEST(test_wrong_ca_client_rejects)
{
    char *out, opts[256];

    ck_assert_int_eq(cli(&out, "--ca %s/other-ca.pem ping", certs), 1);
    ck_assert_ptr_nonnull(strstr(out, "certificate verify failed"));
    ck_assert_ptr_null(strstr(out, "PONG"));
    free(out);
    snprintf(opts, sizeof opts, "-CAfile %s/other-ca.pem -verify_return_error", certs);
    ck_assert_int_ne(sclient(&out, "PING\r\nQUIT\r\n", opts), 0);
    ck_assert_ptr_null(strstr(out, "PONG"));
    free(out);
    /* The daemon saw the client give up, and names it. */
    ck_assert(wait_log_failure("unknown ca"));
    ck_assert_int_eq(stop_daemon(), 0);
}
END_TEST

START_TEST(test_certificate_for_another_name)
{
    char *out;

    start_with("badname", "", "");
    ck_assert_int_eq(cli(&out, "--ca %s/ca.pem ping", certs), 1);
    ck_assert_ptr_nonnull(strstr(out, "mismatch"));
    free(out);
}
END_TEST

START_TEST(test_client_certificate_required)
{
    char *out, opts[512];

    /* No certificate: the broker refuses (with TLS 1.3 the client learns
     * it on its first read). */
    ck_assert_int_eq(cli(&out, "--ca %s/ca.pem ping", certs), 1);
    ck_assert_ptr_null(strstr(out, "PONG"));
    /* The alert, unless the PING already in flight made the broker's
     * close a reset that overtook it. */
    ck_assert_msg(strstr(out, "certificate required") != NULL || strstr(out, "reset by peer"),
                  "sluice said: %s", out);
    free(out);
    snprintf(opts, sizeof opts, "-CAfile %s/ca.pem", certs);
    ck_assert_int_ne(sclient(&out, "PING\r\nQUIT\r\n", opts), 0);
    ck_assert_ptr_null(strstr(out, "PONG"));
    free(out);
    ck_assert(wait_log_failure("peer did not return a certificate"));

    /* A certificate from a CA the broker does not trust. */
    ck_assert_int_eq(
        cli(&out, "--ca %s/ca.pem --cert %s/other-server.pem --key %s/other-server.key ping",
            certs, certs, certs),
        1);
    ck_assert_ptr_null(strstr(out, "PONG"));
    free(out);
    ck_assert(wait_log("certificate verify failed"));

    /* The right one, with sluice and with s_client. */
    ck_assert_int_eq(
        cli(&out, "--ca %s/ca.pem --cert %s/client.pem --key %s/client.key ping", certs, certs,
            certs),
        0);
    ck_assert_str_eq(out, "PONG\n");
    free(out);
    snprintf(opts, sizeof opts, "-CAfile %s/ca.pem -cert %s/client.pem -key %s/client.key", certs,
             certs, certs);
    ck_assert_int_eq(sclient(&out, "PING\r\nQUIT\r\n", opts), 0);
    ck_assert_str_eq(out, "+PONG\r\n+BYE\r\n");
    free(out);
    ck_assert(sd_log_has(&d, "client certificate CN=alice"));
    ck_assert_int_eq(stop_daemon(), 0);
}
END_TEST

START_TEST(test_tls_versions)
{
    char *out, opts[256];

    /* SECLEVEL=0 lets this client offer TLS 1.1 at all: the refusal must
     * come from the broker. */
    snprintf(opts, sizeof opts, "-CAfile %s/ca.pem -tls1_1 -cipher DEFAULT@SECLEVEL=0", certs);
    ck_assert_int_ne(sclient(&out, "PING\r\nQUIT\r\n", opts), 0);
    ck_assert_ptr_null(strstr(out, "PONG"));
    free(out);
    ck_assert(wait_log_failure("unsupported protocol"));

    snprintf(opts, sizeof opts, "-CAfile %s/ca.pem -tls1_2", certs);
    ck_assert_int_eq(sclient(&out, "PING\r\nQUIT\r\n", opts), 0);
    ck_assert_str_eq(out, "+PONG\r\n+BYE\r\n");
    free(out);
    snprintf(opts, sizeof opts, "-CAfile %s/ca.pem -tls1_3", certs);
    ck_assert_int_eq(sclient(&out, "PING\r\nQUIT\r\n", opts), 0);
    ck_assert_str_eq(out, "+PONG\r\n+BYE\r\n");
    free(out);
    ck_assert_int_eq(stop_daemon(), 0);
}
END_TEST

/* The client ends its side (with close_notify, or a bare TCP FIN): the
 * broker still answers everything it sent, a waiting GET included, then
 * closes. */
static void half_close(bool notify, const char *ok)
{
    tt_t *t = tt_open();

    tt_send(t, "PUB t 1\r\nx\r\nPING\r\nGET none 100\r\n");
    if (notify)
        ck_assert_int_ge(SSL_shutdown(t->ssl), 0);
    else
        ck_assert_int_eq(shutdown(t->fd, SHUT_WR), 0);
    ck_assert_str_eq(tt_line(t, TT_IO_MS), ok);
    ck_assert_str_eq(tt_line(t, TT_IO_MS), "+PONG");
    ck_assert_str_eq(tt_line(t, TT_IO_MS), "-TIMEOUT");
    ck_assert_ptr_null(tt_line(t, TT_IO_MS));
    ck_assert_uint_eq(t->len, 0);
    tt_close(t);
}

START_TEST(test_client_half_close)
{
    half_close(true, "+OK 1");
    half_close(false, "+OK 2");
    ck_assert_int_eq(stop_daemon(), 0);
}
END_TEST

/* Everything the peer sends until it closes (or 10 s pass). */
static size_t read_to_eof(int fd, char *buf, size_t cap, bool *closed)
{
    size_t len = 0;
    uint64_t until = sd_now_ms() + TT_IO_MS;

    *closed = false;
    while (sd_now_ms() < until && len < cap) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, (int)(until - sd_now_ms())) <= 0)
            break;
        ssize_t n = recv(fd, buf + len, cap - len, 0);
        if (n <= 0) {
            *closed = n == 0 || errno == ECONNRESET;
            break;
        }
        len += (size_t)n;
    }
    return len;
}

START_TEST(test_plain_text_on_tls_port)
{
    sd_t plain = d;
    char buf[4096], *out;
    bool closed;
    tc_t *c;

    plain.port = tls_port;
    c = tc_open(&plain);
    ck_assert_ptr_nonnull(c);
    ck_assert_int_eq(tc_sendf(c, "PING\r\nPUB t 1\r\nx\r\n"), 0);
    size_t n = read_to_eof(c->fd, buf, sizeof buf, &closed);
    ck_assert(closed);
    ck_assert_ptr_null(memmem(buf, n, "PONG", 4));
    ck_assert_ptr_null(memmem(buf, n, "+OK", 3));
    tc_close(c);
    ck_assert(wait_log_failure("wrong version number"));

    /* Still healthy on both ports, and nothing was published. */
    ck_assert_int_eq(cli(&out, "--ca %s/ca.pem ping", certs), 0);
    free(out);
    c = tc_open(&d);
    ck_assert_ptr_nonnull(c);
    ck_assert_int_eq(tc_sendf(c, "PING\r\nGET t\r\n"), 0);
    ck_assert_str_eq(tc_reply_line(c), "+PONG");
    ck_assert_str_eq(tc_reply_line(c), "-TIMEOUT");
    tc_close(c);
    ck_assert_int_eq(stop_daemon(), 0);
}
END_TEST

START_TEST(test_backpressure_through_relay)
{
    static char chunk[16 * (TT_FLOOD_PAYLOAD + 32)];
    size_t clen = 0, total = 0;
    tt_t *p;
    tc_t *c;

    start_with("server", "", "topics:\n  bp:\n    max_messages: 1\n    overflow: block\n");
    p = tt_open();
    tt_send(p, "PUB bp 1\r\na\r\n");
    ck_assert_str_eq(tt_line(p, TT_IO_MS), "+OK 1");
    /* The topic is full: this PUB is parked and its reply withheld. */
    tt_send(p, "PUB bp 1\r\nb\r\n");
    ck_assert_ptr_null(tt_line(p, TT_QUIET_MS));

    /* conn no longer reads the socketpair, so the relay must stop reading
     * the TLS socket: the producer's writes block after what the kernel
     * buffers and the relay's watermark hold, far below TT_FLOOD_MAX. */
    for (int i = 0; i < 16; i++) {
        clen += (size_t)sprintf(chunk + clen, "PUB bp %d\r\n", TT_FLOOD_PAYLOAD);
        memset(chunk + clen, 'x', TT_FLOOD_PAYLOAD);
        clen += TT_FLOOD_PAYLOAD;
        memcpy(chunk + clen, "\r\n", 2);
        clen += 2;
    }
    while (total < TT_FLOOD_MAX) {
        size_t n = tt_write(p, chunk, clen, TT_QUIET_MS);
        total += n;
        if (n < clen)
            break;
    }
    ck_assert_msg(total < TT_FLOOD_MAX, "the broker took %zu bytes from a blocked producer", total);

    /* A consumer makes room: the parked PUB is answered, in order. */
    c = tc_open(&d);
    ck_assert_ptr_nonnull(c);
    ck_assert_int_eq(tc_sendf(c, "GET bp\r\n"), 0);
    ck_assert_str_eq(tc_reply_line(c), "MSG bp 1 1 1");
    ck_assert_int_eq(tc_sendf(c, "ACK 1\r\n"), 0);
    ck_assert_str_eq(tc_reply_line(c), "+OK 1");
    ck_assert_str_eq(tt_line(p, TT_IO_MS), "+OK 2");
    tc_close(c);
    tt_close(p);
    ck_assert_int_eq(stop_daemon(), 0);
}
END_TEST

START_TEST(test_busy_over_tls)
{
    char *out;
    tc_t *c;

    start_with("server", "", "limits:\n  max_connections: 1\n");
    c = tc_open(&d);
    ck_assert_ptr_nonnull(c);
    ck_assert_int_eq(tc_sendf(c, "PING\r\n"), 0);
    ck_assert_str_eq(tc_reply_line(c), "+PONG");
    /* The refusal is spoken in TLS, so the client can read it. */
    ck_assert_int_eq(cli(&out, "--ca %s/ca.pem ping", certs), 1);
    ck_assert_ptr_nonnull(strstr(out, "-BUSY"));
    free(out);
    tc_close(c);
    ck_assert_int_eq(stop_daemon(), 0);
}
END_TEST

/* The beanstalk listener behind tls://: TLS hands its plain end to the
 * beanstalk protocol as to the native one. */
START_TEST(test_beanstalk_over_tls)
{
    char path[128], line[128], *out, opts[256];
    FILE *f;
    int bport = -1;

    start_with("server", "", "beanstalk: {listen: [tls://127.0.0.1:0]}\n");
    snprintf(path, sizeof path, "%s/ports", d.dir);
    f = fopen(path, "r");
    ck_assert_ptr_nonnull(f);
    while (bport < 0 && fgets(line, sizeof line, f))
        if (strncmp(line, "beanstalk tls://127.0.0.1:", 26) == 0)
            bport = atoi(line + 26);
    fclose(f);
    ck_assert_int_gt(bport, 0);
    tls_port = bport;
    snprintf(opts, sizeof opts, "-CAfile %s/ca.pem -verify_return_error", certs);
    ck_assert_int_eq(sclient(&out, "put 0 0 60 5\r\nhello\r\nreserve\r\ndelete 1\r\nquit\r\n",
                             opts),
                     0);
    ck_assert_str_eq(out, "INSERTED 1\r\nRESERVED 1 5\r\nhello\r\nDELETED\r\n");
    free(out);
    ck_assert_int_eq(stop_daemon(), 0);
}
END_TEST

/* TLS admits a connection; with users configured it must still AUTH. */
START_TEST(test_auth_over_tls)
{
    char *out;

    start_with("server", "", "users:\n  alice:\n    password: secret\n    publish: [\"*\"]\n");
    ck_assert_int_eq(cli(&out, "--ca %s/ca.pem pub t x", certs), 1);
    ck_assert_ptr_nonnull(strstr(out, "-NOAUTH"));
    free(out);
    ck_assert_int_eq(cli(&out, "--ca %s/ca.pem -u alice pub t x", certs), 1);
    ck_assert_ptr_nonnull(strstr(out, "SLUICE_PASSWORD"));
    free(out);
    setenv("SLUICE_PASSWORD", "secret", 1);
    ck_assert_int_eq(cli(&out, "--ca %s/ca.pem -u alice pub t x", certs), 0);
    free(out);
    ck_assert(wait_log("authenticated as 'alice'"));
    ck_assert_int_eq(stop_daemon(), 0);
}
END_TEST

START_TEST(test_reload_certificates)
{
    char *out;

    /* The daemon's own copies, so the suite's files stay as they are. */
    ck_assert_int_eq(sh("mkdir -p %s/reload && cp %s/server.pem %s/server.key %s/reload/", certs,
                        certs, certs, certs),
                     0);
    start_with("reload/server", "", "");
    ck_assert_int_eq(cli(&out, "--ca %s/ca.pem ping", certs), 0);
    free(out);

    /* A broken file on reload: the running certificate stays. */
    ck_assert_int_eq(sh("echo garbage > %s/reload/server.pem", certs), 0);
    sd_signal(&d, SIGHUP);
    ck_assert(wait_log("keeping the certificates loaded before"));
    ck_assert_int_eq(cli(&out, "--ca %s/ca.pem ping", certs), 0);
    free(out);

    /* A new certificate from another CA: new connections get it. */
    ck_assert_int_eq(sh("cp %s/other-server.pem %s/reload/server.pem && "
                        "cp %s/other-server.key %s/reload/server.key",
                        certs, certs, certs, certs),
                     0);
    sd_signal(&d, SIGHUP);
    ck_assert(wait_log("certificates reloaded"));
    ck_assert_int_eq(cli(&out, "--ca %s/other-ca.pem ping", certs), 0);
    free(out);
    ck_assert_int_eq(cli(&out, "--ca %s/ca.pem ping", certs), 1);
    free(out);
    ck_assert_int_eq(stop_daemon(), 0);
    sh("rm -rf %s/reload", certs);
}
END_TEST

START_TEST(test_unusable_certificate_refuses_to_start)
{
    char conf[1024];

    snprintf(conf, sizeof conf,
             "listen: [tls://127.0.0.1:0]\n"
             "tls: {cert: %s/missing.pem, key: %s/server.key}\n",
             certs, certs);
    ck_assert_int_eq(sd_start(&d, conf), -1);
    ck_assert(sd_log_has(&d, "cannot load tls.cert"));
    ck_assert(sd_log_has(&d, "missing.pem"));
    sd_stop(&d);

    /* An encrypted key is an error, never a prompt on a terminal. */
    snprintf(conf, sizeof conf,
             "listen: [tls://127.0.0.1:0]\n"
             "tls: {cert: %s/server.pem, key: %s/encrypted.key}\n",
             certs, certs);
    ck_assert_int_eq(sd_start(&d, conf), -1);
    ck_assert(sd_log_has(&d, "cannot load tls.key"));
    sd_stop(&d);
}
END_TEST

static Suite *tls_suite(void)
{
    Suite *s = suite_create("tls");
    TCase *t = tcase_create("server cert");
    TCase *v = tcase_create("client certs");
    TCase *o = tcase_create("own daemon");

    tcase_add_checked_fixture(t, setup_plain, teardown);
    tcase_set_timeout(t, 120);
    tcase_add_test(t, test_sluice_pub_sub_ack);
    tcase_add_test(t, test_s_client_session);
    tcase_add_test(t, test_wrong_ca_client_rejects);
    tcase_add_test(t, test_tls_versions);
    tcase_add_test(t, test_plain_text_on_tls_port);
    tcase_add_test(t, test_client_half_close);
    suite_add_tcase(s, t);

    tcase_add_checked_fixture(v, setup_verify, teardown);
    tcase_set_timeout(v, 120);
    tcase_add_test(v, test_client_certificate_required);
    suite_add_tcase(s, v);

    tcase_add_checked_fixture(o, NULL, teardown);
    tcase_set_timeout(o, 120);
    tcase_add_test(o, test_certificate_for_another_name);
    tcase_add_test(o, test_backpressure_through_relay);
    tcase_add_test(o, test_busy_over_tls);
    tcase_add_test(o, test_auth_over_tls);
    tcase_add_test(o, test_beanstalk_over_tls);
    tcase_add_test(o, test_reload_certificates);
    tcase_add_test(o, test_unusable_certificate_refuses_to_start);
    suite_add_tcase(s, o);
    return s;
}

int main(void)
{
    int failed;
    SRunner *sr;

    if (make_certs() != 0) {
        fprintf(stderr, "check_tls: cannot make test certificates with openssl\n");
        return 1;
    }
    sr = srunner_create(tls_suite());
    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    kill_leftovers();
    sh("rm -rf '%s'", certs);
    return failed == 0 ? 0 : 1;
}
