/* client.c: the blocking-style client connection used by the `sluice`
 * command-line tool and `sluice bench`: connect with a timeout (addresses
 * as addr.c parses them), optional TLS, pipelined output and a growing
 * input buffer, all on one non-blocking socket driven by poll(2).
 */
#include "client.h"
#include "addr.h"
#include "clock.h"
#include "sslerr.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <limits.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define CLIENT_READ_CHUNK (64 * 1024)
/* A reply bigger than this is not something any sluice server sends; stop
 * growing rather than let a broken peer eat all memory. */
#define CLIENT_IN_MAX ((size_t)1 << 31)

const char *client_default_addr(void)
{
    const char *e = getenv("SLUICE_ADDR");
    return e && *e ? e : CLIENT_DEFAULT_ADDR;
}

/* Wait for a non-blocking connect to finish; 0 or an errno value. */
static int client_connect_wait(int fd, int timeout_ms)
{
    struct pollfd p = { .fd = fd, .events = POLLOUT };
    int64_t deadline = timeout_ms < 0 ? -1 : (int64_t)clock_ms() + timeout_ms;

    for (;;) {
        int left = deadline < 0 ? -1 : (int)(deadline - (int64_t)clock_ms());
        if (deadline >= 0 && left < 0)
            left = 0;
        int n = poll(&p, 1, left);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return errno;
        if (n == 0)
            return ETIMEDOUT;
        int e = 0;
        socklen_t el = sizeof e;
        if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &el) < 0)
            return errno;
        return e;
    }
}

/* Start a connect on a fresh non-blocking socket; the fd, or -1 with errno. */
static int client_try(int family, const struct sockaddr *sa, socklen_t salen, int timeout_ms)
{
    int fd = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    int e = 0;
    if (connect(fd, sa, salen) < 0) {
        e = errno;
        if (e == EINPROGRESS)
            e = client_connect_wait(fd, timeout_ms);
    }
    if (e) {
        close(fd);
        errno = e;
        return -1;
    }
    if (family != AF_UNIX) {
        /* the client batches its own writes; don't let Nagle delay them */
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    }
    return fd;
}

static int client_open_unix(const addr_t *a, int timeout_ms)
{
    struct sockaddr_storage ss;
    socklen_t len;

    addr_sockaddr(a, &ss, &len); /* cannot fail for a unix address */
    return client_try(AF_UNIX, (struct sockaddr *)&ss, len, timeout_ms);
}

/* Names are resolved here, not in addr.c: getaddrinfo tries each address. */
static int client_open_inet(const addr_t *a, int default_port, int timeout_ms, char *why,
                            size_t whylen)
{
    struct addrinfo hints, *res, *ai;
    char port[8];
    int fd = -1;

    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    snprintf(port, sizeof port, "%d", a->port != 0 ? a->port : default_port);
    int g = getaddrinfo(a->host, port, &hints, &res);
    if (g != 0) {
        snprintf(why, whylen, "%s", gai_strerror(g));
        return -1;
    }
    for (ai = res; ai && fd < 0; ai = ai->ai_next)
        fd = client_try(ai->ai_family, ai->ai_addr, ai->ai_addrlen, timeout_ms);
    if (fd < 0)
        snprintf(why, whylen, "%s", strerror(errno));
    freeaddrinfo(res);
    return fd;
}

client_t *client_connect(const char *addr, int default_port, int timeout_ms, char *err)
{
    addr_t a;
    char why[CLIENT_ERR_MAX];
    const char *bad = addr_parse(addr, ADDR_CLIENT, &a);

    if (bad != NULL) {
        snprintf(err, CLIENT_ERR_MAX, "bad address '%.100s': %.120s", addr, bad);
        return NULL;
    }
    int fd;
    if (a.kind == ADDR_KIND_UNIX) {
        fd = client_open_unix(&a, timeout_ms);
        if (fd < 0)
            snprintf(why, sizeof why, "%s", strerror(errno));
    } else {
        fd = client_open_inet(&a, default_port, timeout_ms, why, sizeof why);
    }
    if (fd < 0) {
        snprintf(err, CLIENT_ERR_MAX, "cannot connect to %.100s: %.120s", addr, why);
        return NULL;
    }
    client_t *c = calloc(1, sizeof *c);
    if (!c) {
        close(fd);
        snprintf(err, CLIENT_ERR_MAX, "out of memory");
        return NULL;
    }
    c->fd = fd;
    snprintf(c->addr, sizeof c->addr, "%s", addr);
    return c;
}

/* ---- TLS ---- */

static int client_tls_fail(client_t *c, const char *what)
{
    char why[CLIENT_ERR_MAX];

    sslerr_reason(why, sizeof why, "TLS error");
    snprintf(c->err, sizeof c->err, "%.150s: %.100s", what, why);
    return -1;
}

static int client_tls_load(client_t *c, const client_tls_t *o)
{
    char what[CLIENT_ERR_MAX];
    SSL_CTX *ctx = c->ssl_ctx;

    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
#ifdef SSL_OP_IGNORE_UNEXPECTED_EOF
    /* A server that closes without close_notify has closed: replies are
     * framed, so a cut one is still told from a whole one. */
    SSL_CTX_set_options(ctx, SSL_OP_IGNORE_UNEXPECTED_EOF);
#endif
    /* The output buffer slides and grows between retries of a write. */
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    if (o->ca != NULL ? SSL_CTX_load_verify_locations(ctx, o->ca, NULL) != 1
                      : SSL_CTX_set_default_verify_paths(ctx) != 1) {
        snprintf(what, sizeof what, "cannot load CA %.200s", o->ca ? o->ca : "(system default)");
        return client_tls_fail(c, what);
    }
    if (o->cert == NULL)
        return 0;
    if (SSL_CTX_use_certificate_chain_file(ctx, o->cert) != 1) {
        snprintf(what, sizeof what, "cannot load certificate %.200s", o->cert);
        return client_tls_fail(c, what);
    }
    if (SSL_CTX_use_PrivateKey_file(ctx, o->key ? o->key : o->cert, SSL_FILETYPE_PEM) != 1 ||
        SSL_CTX_check_private_key(ctx) != 1) {
        snprintf(what, sizeof what, "cannot load key %.200s", o->key ? o->key : o->cert);
        return client_tls_fail(c, what);
    }
    return 0;
}

/* The server's certificate must name the host we dialled (SAN DNS or IP). */
static int client_tls_expect_host(client_t *c)
{
    addr_t a;
    unsigned char ip[16];

    if (addr_parse(c->addr, ADDR_CLIENT, &a) != NULL || a.kind == ADDR_KIND_UNIX)
        return 0;
    if (inet_pton(AF_INET, a.host, ip) == 1 || inet_pton(AF_INET6, a.host, ip) == 1) {
        if (X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(c->ssl), a.host) != 1)
            return client_tls_fail(c, "cannot set the expected IP address");
        return 0;
    }
    if (SSL_set1_host(c->ssl, a.host) != 1 || SSL_set_tlsext_host_name(c->ssl, a.host) != 1)
        return client_tls_fail(c, "cannot set the expected host name");
    return 0;
}

static int client_tls_handshake(client_t *c, int timeout_ms)
{
    int64_t deadline = timeout_ms < 0 ? -1 : (int64_t)clock_ms() + timeout_ms;
    char what[CLIENT_ERR_MAX];

    for (;;) {
        int r = SSL_connect(c->ssl);
        if (r == 1)
            return 0;
        int e = SSL_get_error(c->ssl, r);
        struct pollfd p = { .fd = c->fd, .events = e == SSL_ERROR_WANT_WRITE ? POLLOUT : POLLIN };
        if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE)
            break;
        int left = deadline < 0 ? -1 : (int)(deadline - (int64_t)clock_ms());
        if (deadline >= 0 && left <= 0) {
            snprintf(c->err, sizeof c->err, "TLS handshake with %s: no answer within %d ms",
                     c->addr, timeout_ms);
            return -1;
        }
        if (poll(&p, 1, left) < 0 && errno != EINTR) {
            snprintf(c->err, sizeof c->err, "poll: %s", strerror(errno));
            return -1;
        }
    }
    long v = SSL_get_verify_result(c->ssl);
    if (v != X509_V_OK) {
        ERR_clear_error();
        snprintf(c->err, sizeof c->err, "TLS handshake with %.100s: certificate verify failed: %s",
                 c->addr, X509_verify_cert_error_string(v));
        return -1;
    }
    snprintf(what, sizeof what, "TLS handshake with %.100s failed", c->addr);
    return client_tls_fail(c, what);
}

int client_start_tls(client_t *c, const client_tls_t *tls, int timeout_ms)
{
    ERR_clear_error();
    c->ssl_ctx = SSL_CTX_new(TLS_client_method());
    if (c->ssl_ctx == NULL)
        return client_tls_fail(c, "cannot create a TLS context");
    if (client_tls_load(c, tls) < 0)
        return -1;
    c->ssl = SSL_new(c->ssl_ctx);
    if (c->ssl == NULL || SSL_set_fd(c->ssl, c->fd) != 1)
        return client_tls_fail(c, "cannot create a TLS session");
    if (client_tls_expect_host(c) < 0)
        return -1;
    return client_tls_handshake(c, timeout_ms);
}

/* SSL_read/SSL_write result: 1 done, 0 would block, -1 error (c->err). */
static int client_tls_result(client_t *c, int r, const char *dir)
{
    char what[CLIENT_ERR_MAX];
    int e;

    if (r > 0)
        return 1;
    e = SSL_get_error(c->ssl, r);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
        return 0;
    if (e == SSL_ERROR_ZERO_RETURN) {
        c->eof = true;
        snprintf(c->err, sizeof c->err, "connection closed by %s", c->addr);
        return -1;
    }
    if (e == SSL_ERROR_SYSCALL && ERR_peek_error() == 0) {
        if (errno == 0 || r == 0) {
            c->eof = true;
            snprintf(c->err, sizeof c->err, "connection closed by %s", c->addr);
        } else {
            snprintf(c->err, sizeof c->err, "%s %s: %s", dir, c->addr, strerror(errno));
        }
        return -1;
    }
    snprintf(what, sizeof what, "%s %.100s", dir, c->addr);
    return client_tls_fail(c, what);
}

static int client_tls_send_some(client_t *c)
{
    while (c->out_off < c->out_len) {
        size_t want = c->out_len - c->out_off;
        int n = SSL_write(c->ssl, c->out + c->out_off, want > INT_MAX ? INT_MAX : (int)want);
        int k = client_tls_result(c, n, "write to");
        if (k <= 0)
            return k;
        c->out_off += (size_t)n;
    }
    c->out_off = c->out_len = 0;
    return 0;
}

static int client_tls_recv_some(client_t *c)
{
    size_t room = c->in_cap - c->in_len;
    int n = SSL_read(c->ssl, c->in + c->in_len, room > INT_MAX ? INT_MAX : (int)room);
    int k = client_tls_result(c, n, "read from");

    if (k <= 0)
        return k;
    c->in_len += (size_t)n;
    return 1;
}

void client_free(client_t *c)
{
    if (!c)
        return;
    if (c->ssl) {
        SSL_shutdown(c->ssl);  /* best effort close_notify */
        SSL_free(c->ssl);
    }
    SSL_CTX_free(c->ssl_ctx);
    ERR_clear_error();
    if (c->fd >= 0)
        close(c->fd);
    free(c->in);
    free(c->out);
    free(c);
}

/* Make room for `need` more bytes at the end of a buffer whose live part
 * is buf[off..len): slide it to the front first, grow only if that is not
 * enough. */
static int client_reserve(char **buf, size_t *off, size_t *len, size_t *cap, size_t need)
{
    if (*cap - *len >= need)
        return 0;
    if (*off > 0) {
        memmove(*buf, *buf + *off, *len - *off);
        *len -= *off;
        *off = 0;
        if (*cap - *len >= need)
            return 0;
    }
    size_t ncap = *cap ? *cap : 4096;
    while (ncap - *len < need) {
        if (ncap > CLIENT_IN_MAX)
            return -1;
        ncap *= 2;
    }
    char *nb = realloc(*buf, ncap);
    if (!nb)
        return -1;
    *buf = nb;
    *cap = ncap;
    return 0;
}

char *client_space(client_t *c, size_t len)
{
    if (client_reserve(&c->out, &c->out_off, &c->out_len, &c->out_cap, len) < 0) {
        snprintf(c->err, sizeof c->err, "out of memory");
        return NULL;
    }
    c->out_len += len;
    return c->out + c->out_len - len;
}

int client_put(client_t *c, const void *data, size_t len)
{
    char *p = client_space(c, len);

    if (p == NULL)
        return -1;
    memcpy(p, data, len);
    return 0;
}

int client_printf(client_t *c, const char *fmt, ...)
{
    char small[512];
    va_list ap;

    va_start(ap, fmt);
    int n = vsnprintf(small, sizeof small, fmt, ap);
    va_end(ap);
    if (n < 0)
        return -1;
    if ((size_t)n < sizeof small)
        return client_put(c, small, (size_t)n);
    char *big = malloc((size_t)n + 1);
    if (!big)
        return -1;
    va_start(ap, fmt);
    vsnprintf(big, (size_t)n + 1, fmt, ap);
    va_end(ap);
    int r = client_put(c, big, (size_t)n);
    free(big);
    return r;
}

size_t client_unsent(const client_t *c)
{
    return c->out_len - c->out_off;
}

void client_consume(client_t *c, size_t n)
{
    c->in_off += n;
    if (c->in_off == c->in_len)
        c->in_off = c->in_len = 0;
}

static int client_send_some(client_t *c)
{
    if (c->ssl)
        return client_tls_send_some(c);
    while (c->out_off < c->out_len) {
        ssize_t n = send(c->fd, c->out + c->out_off, c->out_len - c->out_off, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return 0;
        if (n < 0) {
            snprintf(c->err, sizeof c->err, "write to %s: %s", c->addr, strerror(errno));
            return -1;
        }
        c->out_off += (size_t)n;
    }
    c->out_off = c->out_len = 0;
    return 0;
}

/* One read; 1 if bytes came, 0 if none were ready, -1 on error or EOF. */
static int client_recv_some(client_t *c)
{
    if (client_reserve(&c->in, &c->in_off, &c->in_len, &c->in_cap, CLIENT_READ_CHUNK) < 0) {
        snprintf(c->err, sizeof c->err, "reply from %s too large", c->addr);
        return -1;
    }
    if (c->ssl)
        return client_tls_recv_some(c);
    for (;;) {
        ssize_t n = recv(c->fd, c->in + c->in_len, c->in_cap - c->in_len, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return 0;
        if (n < 0) {
            snprintf(c->err, sizeof c->err, "read from %s: %s", c->addr, strerror(errno));
            return -1;
        }
        if (n == 0) {
            c->eof = true;
            snprintf(c->err, sizeof c->err, "connection closed by %s", c->addr);
            return -1;
        }
        c->in_len += (size_t)n;
        return 1;
    }
}

int client_step(client_t *c, int timeout_ms, int extra_fd, bool *extra_ready)
{
    struct pollfd p[2];
    nfds_t np = 1;

    if (extra_ready)
        *extra_ready = false;
    if (c->eof) {
        snprintf(c->err, sizeof c->err, "connection closed by %s", c->addr);
        return -1;
    }
    /* Send at once: the socket almost always takes it, and a poll that
     * only says "writable" costs a system call and a turn of latency.
     * Having sent something is a step: return rather than sleep in poll
     * for input that may not come (client_flush must not wait for it). */
    size_t unsent = client_unsent(c);
    if (unsent && client_send_some(c) < 0)
        return -1;
    if (client_unsent(c) < unsent)
        return 1;
    /* Read before polling: when the peer's answer is already here (it
     * usually is, for a client that waited its turn for the CPU), the
     * poll would only say so. With an extra fd, poll decides, so that
     * fd is never starved by a busy socket. */
    if (c->ssl == NULL && extra_fd < 0) {
        int k = client_recv_some(c);
        if (k != 0)
            return k;
    }
    p[0].fd = c->fd;
    p[0].events = POLLIN | (client_unsent(c) ? POLLOUT : 0);
    p[0].revents = 0;
    if (extra_fd >= 0) {
        p[1].fd = extra_fd;
        p[1].events = POLLIN;
        p[1].revents = 0;
        np = 2;
    }
    /* Bytes OpenSSL already decrypted will not wake poll: don't sleep on them. */
    bool pending = c->ssl != NULL && SSL_pending(c->ssl) > 0;
    int n = poll(p, np, pending ? 0 : timeout_ms);
    if (n < 0 && errno == EINTR)
        return 0;
    if (n < 0) {
        snprintf(c->err, sizeof c->err, "poll: %s", strerror(errno));
        return -1;
    }
    if (n == 0 && !pending)
        return 0;
    if (np == 2 && extra_ready)
        *extra_ready = (p[1].revents & (POLLIN | POLLHUP | POLLERR)) != 0;
    if ((p[0].revents & (POLLOUT | POLLERR)) && client_send_some(c) < 0)
        return -1;
    if (((p[0].revents & (POLLIN | POLLHUP | POLLERR)) || pending) && client_recv_some(c) < 0)
        return -1;
    return 1;
}

int client_flush(client_t *c)
{
    /* try at once: most of the time the socket takes everything */
    if (client_send_some(c) < 0)
        return -1;
    while (client_unsent(c)) {
        if (client_step(c, -1, -1, NULL) < 0)
            return -1;
    }
    return 0;
}

int client_next(client_t *c, proto_reply_t *r)
{
    size_t used = 0;
    int k = proto_parse_reply(client_data(c), client_avail(c), r, &used);

    if (k < 0) {
        snprintf(c->err, sizeof c->err, "%s sent something that is not a sluice reply", c->addr);
        return -1;
    }
    if (k > 0)
        client_consume(c, used);
    return k;
}

int client_read(client_t *c, proto_reply_t *r, int timeout_ms)
{
    int64_t deadline = timeout_ms < 0 ? -1 : (int64_t)clock_ms() + timeout_ms;

    if (client_send_some(c) < 0)
        return -1;
    for (;;) {
        int k = client_next(c, r);
        if (k != 0)
            return k;
        int left = -1;
        if (deadline >= 0) {
            left = (int)(deadline - (int64_t)clock_ms());
            if (left <= 0) {
                snprintf(c->err, sizeof c->err, "no reply from %s within %d ms", c->addr, timeout_ms);
                return 0;
            }
        }
        if (client_step(c, left, -1, NULL) < 0)
            return -1;
    }
}

void client_reply_str(const proto_reply_t *r, char *out, size_t n)
{
    if (r->type != REPLY_ERROR) {
        snprintf(out, n, "unexpected reply");
        return;
    }
    snprintf(out, n, "-%.*s%s%.*s", (int)r->code_len, r->code, r->text_len ? " " : "",
             (int)r->text_len, r->text);
}

bool client_moved(const proto_reply_t *r, char *out, size_t cap)
{
    if (r->type != REPLY_ERROR || r->code_len != 5 || memcmp(r->code, "MOVED", 5) != 0)
        return false;
    /* "topic host:port": neither holds a blank */
    const char *sp = memchr(r->text, ' ', r->text_len);
    if (sp == NULL)
        return false;
    const char *a = sp + 1;
    size_t n = r->text_len - (size_t)(a - r->text);
    if (n == 0 || n >= cap || memchr(a, ' ', n) != NULL)
        return false;
    memcpy(out, a, n);
    out[n] = '\0';
    return true;
}
