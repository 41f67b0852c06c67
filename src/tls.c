/* tls.c: TLS termination for tls:// listeners.
 *
 * conn.c does raw read()/writev() on its socket and must stay that fast, so
 * TLS never enters it. Each accepted TLS socket gets a relay instead:
 *
 *   client ==TLS== [net: OpenSSL bufferevent] relay [pair: bufferevent]
 *          == socketpair == conn.c
 *
 * Bytes are copied both ways in the read callbacks. Backpressure is kept
 * end to end with watermarks: when one side's output passes
 * TLS_RELAY_HIGH the relay stops reading the other side, and resumes when
 * that output drains below TLS_RELAY_LOW. So a parked producer (conn stops
 * reading the socketpair) stops the relay reading its TLS socket, and the
 * producer's TCP window closes just as it does on a plain listener.
 *
 * The connection is handed to its protocol only after the handshake, so a
 * client that never completes one costs no broker state.
 */
#include "tls.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <unistd.h>

#include "clock.h"
#include "connhost.h"
#include "log.h"
#include "sslerr.h"

#define TLS_RELAY_HIGH (256 * 1024) /* output past this: stop reading the other side */
#define TLS_RELAY_LOW (64 * 1024)   /* ... until it drains below this */
#define TLS_HANDSHAKE_MS 10000      /* a peer that does not finish its handshake by then is dropped */
#define TLS_WHY_MAX 256

typedef struct tls_relay {
    tls_server_t *owner;
    struct bufferevent *net;  /* the client: OpenSSL over the accepted TCP socket */
    struct bufferevent *pair; /* our end of the socketpair; NULL before the handshake and once conn is gone */
    bool handshaking;         /* counted in owner->nhandshaking */
    bool net_eof;             /* the client sent its last byte: shut the pair's write side once flushed */
    bool pair_shut;           /* ... done */
    bool closing;             /* conn is gone (or refused): flush what the client is owed, then free */
    bool broken;              /* the TLS session failed: no close_notify */
    char peer[64];            /* the real TCP peer, for logs */
    const connproto_t *proto; /* what the plain end becomes */
    LIST_ENTRY(tls_relay) link; /* in owner->relays */
} tls_relay_t;

struct tls_server {
    connhost_t *host;         /* the server: the loop, limits, the connection count */
    SSL_CTX *ctx;             /* for new connections; open ones hold a reference to theirs */
    LIST_HEAD(tls_relays, tls_relay) relays; /* every relay, handshaking or not */
    uint64_t nhandshaking;
};

/* ---- the context ---- */

/* A daemon has no terminal to ask on: an encrypted key is an error. */
static int tls_no_password(char *buf, int size, int rwflag, void *arg)
{
    (void)buf;
    (void)size;
    (void)rwflag;
    (void)arg;
    return -1;
}

static SSL_CTX *tls_ctx_fail(SSL_CTX *ctx, const char *what, const char *path)
{
    char why[TLS_WHY_MAX];

    sslerr_reason(why, sizeof why, "unknown error");
    log_error("tls: cannot load %s %s: %s", what, path, why);
    SSL_CTX_free(ctx);
    return NULL;
}

static SSL_CTX *tls_ctx_new(const config_t *cfg)
{
    SSL_CTX *ctx;
    static const unsigned char sid_ctx[] = "sluice";

    ERR_clear_error();
    if (cfg->tls.cert[0] == '\0' || cfg->tls.key[0] == '\0') {
        log_error("tls: tls:// listeners need tls.cert and tls.key");
        return NULL;
    }
    ctx = SSL_CTX_new(TLS_server_method());
    if (ctx == NULL)
        return tls_ctx_fail(NULL, "a TLS context", "(out of memory?)");
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE |
                                 SSL_OP_NO_COMPRESSION);
#ifdef SSL_OP_IGNORE_UNEXPECTED_EOF
    /* A client that closes TCP without close_notify has only closed: the
     * protocol's own framing tells a cut command from a whole one. */
    SSL_CTX_set_options(ctx, SSL_OP_IGNORE_UNEXPECTED_EOF);
#endif
    /* Idle connections should not keep 34 KiB of OpenSSL buffers each. */
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
    SSL_CTX_set_default_passwd_cb(ctx, tls_no_password);
    if (SSL_CTX_use_certificate_chain_file(ctx, cfg->tls.cert) != 1)
        return tls_ctx_fail(ctx, "tls.cert", cfg->tls.cert);
    if (SSL_CTX_use_PrivateKey_file(ctx, cfg->tls.key, SSL_FILETYPE_PEM) != 1)
        return tls_ctx_fail(ctx, "tls.key", cfg->tls.key);
    if (SSL_CTX_check_private_key(ctx) != 1)
        return tls_ctx_fail(ctx, "tls.key (it does not match tls.cert)", cfg->tls.key);
    /* Session resumption with client certificates needs an id context. */
    SSL_CTX_set_session_id_context(ctx, sid_ctx, sizeof sid_ctx - 1);
    if (!cfg->tls.verify_clients)
        return ctx;
    if (SSL_CTX_load_verify_locations(ctx, cfg->tls.ca, NULL) != 1)
        return tls_ctx_fail(ctx, "tls.ca", cfg->tls.ca);
    STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(cfg->tls.ca);
    if (names == NULL)
        return tls_ctx_fail(ctx, "tls.ca", cfg->tls.ca);
    SSL_CTX_set_client_CA_list(ctx, names);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
    return ctx;
}

tls_server_t *tls_server_new(connhost_t *host, const config_t *cfg)
{
    tls_server_t *t = calloc(1, sizeof *t);

    if (t == NULL) {
        log_error("tls: out of memory");
        return NULL;
    }
    t->host = host;
    LIST_INIT(&t->relays);
    t->ctx = tls_ctx_new(cfg);
    if (t->ctx == NULL) {
        free(t);
        return NULL;
    }
    return t;
}

int tls_server_configure(tls_server_t *t, const config_t *cfg)
{
    SSL_CTX *ctx = tls_ctx_new(cfg);

    if (ctx == NULL) {
        log_error("reload: tls: keeping the certificates loaded before");
        return -1;
    }
    SSL_CTX_free(t->ctx);
    t->ctx = ctx;
    log_info("tls: certificates reloaded; open connections keep theirs");
    return 0;
}

/* ---- relays ---- */

static void tls_relay_free(tls_relay_t *r)
{
    tls_server_t *t = r->owner;

    if (r->handshaking)
        t->nhandshaking--;
    LIST_REMOVE(r, link);
    if (r->pair != NULL)
        bufferevent_free(r->pair);
    if (r->net != NULL) {
        SSL *ssl = bufferevent_openssl_get_ssl(r->net);
        /* Best effort close_notify, so the client can tell our close from
         * a cut connection. Only after the handshake: before it there is
         * no session to close. */
        if (ssl != NULL && !r->handshaking && !r->broken)
            SSL_shutdown(ssl);
        ERR_clear_error();
        bufferevent_free(r->net);
    }
    free(r);
}

static size_t tls_out_len(struct bufferevent *bev)
{
    return evbuffer_get_length(bufferevent_get_output(bev));
}

/* The client sent its last byte and conn has all of it: conn sees EOF
 * (and still sends the replies it owes, as on a plain socket). */
static void tls_relay_shut_pair(tls_relay_t *r)
{
    if (r->pair == NULL || r->pair_shut || tls_out_len(r->pair) > 0)
        return;
    shutdown(bufferevent_getfd(r->pair), SHUT_WR);
    r->pair_shut = true;
}

/* conn is gone: the client gets what is already queued for it, then the
 * TLS session is closed. */
static void tls_relay_close(tls_relay_t *r)
{
    if (r->pair != NULL) {
        bufferevent_free(r->pair);
        r->pair = NULL;
    }
    r->closing = true;
    bufferevent_disable(r->net, EV_READ);
    if (tls_out_len(r->net) == 0)
        tls_relay_free(r);
}

/* client -> conn */
static void tls_on_net_read(struct bufferevent *bev, void *arg)
{
    tls_relay_t *r = arg;

    if (r->pair == NULL) {
        /* Closing: nobody will read it. */
        evbuffer_drain(bufferevent_get_input(bev), evbuffer_get_length(bufferevent_get_input(bev)));
        return;
    }
    bufferevent_write_buffer(r->pair, bufferevent_get_input(bev));
    if (tls_out_len(r->pair) >= TLS_RELAY_HIGH)
        bufferevent_disable(bev, EV_READ);
}

/* conn -> client */
static void tls_on_pair_read(struct bufferevent *bev, void *arg)
{
    tls_relay_t *r = arg;

    bufferevent_write_buffer(r->net, bufferevent_get_input(bev));
    if (tls_out_len(r->net) >= TLS_RELAY_HIGH)
        bufferevent_disable(bev, EV_READ);
}

/* The socketpair took bytes: conn reads again, so may we. */
static void tls_on_pair_write(struct bufferevent *bev, void *arg)
{
    tls_relay_t *r = arg;

    (void)bev;
    if (r->net_eof)
        tls_relay_shut_pair(r);
    else if (!(bufferevent_get_enabled(r->net) & EV_READ))
        bufferevent_enable(r->net, EV_READ);
}

/* The client took bytes. */
static void tls_on_net_write(struct bufferevent *bev, void *arg)
{
    tls_relay_t *r = arg;

    if (r->closing) {
        if (tls_out_len(bev) == 0)
            tls_relay_free(r);
        return;
    }
    if (r->pair != NULL && !(bufferevent_get_enabled(r->pair) & EV_READ))
        bufferevent_enable(r->pair, EV_READ);
}

static void tls_on_pair_event(struct bufferevent *bev, short what, void *arg)
{
    tls_relay_t *r = arg;

    (void)bev;
    if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR))
        tls_relay_close(r);
}

/* Why a TLS session failed: libevent's copy of OpenSSL's errors, the
 * certificate check's verdict, or the socket's errno. */
static void tls_relay_why(tls_relay_t *r, char *out, size_t cap)
{
    SSL *ssl = bufferevent_openssl_get_ssl(r->net);
    unsigned long e;
    size_t n = 0;
    int err = EVUTIL_SOCKET_ERROR();

    out[0] = '\0';
    while ((e = bufferevent_get_openssl_error(r->net)) != 0) {
        /* libevent also queues SSL_get_error()'s small codes: no reason. */
        const char *reason = ERR_reason_error_string(e);
        if (reason != NULL && n < cap)
            n += (size_t)snprintf(out + n, cap - n, "%s%s", n ? "; " : "", reason);
    }
    ERR_clear_error();
    if (ssl != NULL && SSL_get_verify_result(ssl) != X509_V_OK && n < cap)
        n += (size_t)snprintf(out + n, cap - n, "%scertificate: %s", n ? "; " : "",
                              X509_verify_cert_error_string(SSL_get_verify_result(ssl)));
    if (n == 0)
        snprintf(out, cap, "%s", err ? strerror(err) : "connection error");
}

static void tls_log_session(tls_relay_t *r)
{
    SSL *ssl = bufferevent_openssl_get_ssl(r->net);
#if OPENSSL_VERSION_NUMBER >= 0x30000000L
    X509 *x = SSL_get1_peer_certificate(ssl);
#else
    X509 *x = SSL_get_peer_certificate(ssl);
#endif
    char cn[256] = "", safe[256] = "";

    if (x != NULL) {
        int len = X509_NAME_get_text_by_NID(X509_get_subject_name(x), NID_commonName, cn,
                                            (int)sizeof cn);
        log_escape(safe, sizeof safe, cn, len > 0 ? (size_t)len : 0);
        X509_free(x);
    }
    log_debug("tls: %s: %s %s%s%s", r->peer, SSL_get_version(ssl), SSL_get_cipher_name(ssl),
              x != NULL ? ", client certificate CN=" : "", safe);
}

/* The handshake is done: create the socketpair and the connection. */
static void tls_relay_start(tls_relay_t *r)
{
    connhost_t *host = r->owner->host;
    int sp[2];

    r->handshaking = false;
    r->owner->nhandshaking--;
    bufferevent_set_timeouts(r->net, NULL, NULL);
    tls_log_session(r);
    if (host->draining) {
        tls_relay_close(r);
        return;
    }
    if (host->nconns >= host->cfg->limits.max_connections) {
        log_warn("refusing %s: max_connections (%llu) reached", r->peer,
                 (unsigned long long)host->cfg->limits.max_connections);
        bufferevent_write(r->net, r->proto->busy, strlen(r->proto->busy));
        tls_relay_close(r);
        return;
    }
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sp) != 0) {
        log_error("tls: %s: socketpair: %s", r->peer, strerror(errno));
        tls_relay_close(r);
        return;
    }
    r->pair = bufferevent_socket_new(host->base, sp[0], BEV_OPT_CLOSE_ON_FREE);
    if (r->pair == NULL) {
        close(sp[0]);
        close(sp[1]);
        log_error("tls: %s: out of memory", r->peer);
        tls_relay_close(r);
        return;
    }
    if (!r->proto->open(host, sp[1], r->peer)) {
        tls_relay_close(r);
        return;
    }
    bufferevent_setcb(r->pair, tls_on_pair_read, tls_on_pair_write, tls_on_pair_event, r);
    bufferevent_setwatermark(r->pair, EV_WRITE, TLS_RELAY_LOW, 0);
    bufferevent_setwatermark(r->net, EV_WRITE, TLS_RELAY_LOW, 0);
    bufferevent_enable(r->pair, EV_READ | EV_WRITE);
    bufferevent_enable(r->net, EV_READ | EV_WRITE);
    /* Application data that came with the client's Finished. */
    if (evbuffer_get_length(bufferevent_get_input(r->net)) > 0)
        tls_on_net_read(r->net, r);
}

static void tls_on_net_event(struct bufferevent *bev, short what, void *arg)
{
    tls_relay_t *r = arg;
    char why[TLS_WHY_MAX];

    (void)bev;
    if (what & BEV_EVENT_CONNECTED) {
        tls_relay_start(r);
        return;
    }
    if (r->handshaking) {
        if (what & BEV_EVENT_TIMEOUT)
            log_info("tls: %s: no handshake within %d ms; closing", r->peer, TLS_HANDSHAKE_MS);
        else if (what & BEV_EVENT_ERROR) {
            r->broken = true;
            tls_relay_why(r, why, sizeof why);
            log_warn("tls: handshake with %s failed: %s", r->peer, why);
        } else
            log_info("tls: %s closed the connection during the handshake", r->peer);
        tls_relay_free(r);
        return;
    }
    if (what & BEV_EVENT_ERROR) {
        r->broken = true;
        tls_relay_why(r, why, sizeof why);
        log_info("tls: %s: %s; closing", r->peer, why);
    }
    if ((what & BEV_EVENT_EOF) && !(what & BEV_EVENT_ERROR) && r->pair != NULL) {
        /* A clean end: conn gets EOF after the last bytes and may still
         * answer them; we keep relaying its replies. */
        r->net_eof = true;
        bufferevent_disable(r->net, EV_READ);
        tls_relay_shut_pair(r);
        return;
    }
    /* The client is gone or broken: nothing more can reach it. */
    tls_relay_free(r);
}

void tls_accept(tls_server_t *t, int fd, const char *peer, const connproto_t *proto)
{
    connhost_t *host = t->host;
    struct timeval tv = clock_tv(TLS_HANDSHAKE_MS);
    tls_relay_t *r;
    SSL *ssl;

    /* max_connections is checked once the handshake is done, so the
     * refusal can be read; meanwhile handshakes in progress have a bound
     * of their own (the same number), or a flood of half-open sessions
     * could grow without one. */
    if (t->nhandshaking >= host->cfg->limits.max_connections) {
        log_warn("refusing %s: too many TLS handshakes in progress (max_connections %llu)", peer,
                 (unsigned long long)host->cfg->limits.max_connections);
        close(fd);
        return;
    }
    r = calloc(1, sizeof *r);
    ssl = SSL_new(t->ctx);
    if (r == NULL || ssl == NULL) {
        log_error("tls: cannot set up a connection from %s: out of memory", peer);
        SSL_free(ssl);
        free(r);
        close(fd);
        return;
    }
    r->net = bufferevent_openssl_socket_new(host->base, fd, ssl, BUFFEREVENT_SSL_ACCEPTING,
                                            BEV_OPT_CLOSE_ON_FREE);
    if (r->net == NULL) {
        log_error("tls: cannot set up a connection from %s: out of memory", peer);
        SSL_free(ssl);
        free(r);
        close(fd);
        return;
    }
    r->owner = t;
    r->proto = proto;
    r->handshaking = true;
    t->nhandshaking++;
    snprintf(r->peer, sizeof r->peer, "%s", peer);
    LIST_INSERT_HEAD(&t->relays, r, link);
    bufferevent_openssl_set_allow_dirty_shutdown(r->net, 1);
    bufferevent_setcb(r->net, tls_on_net_read, tls_on_net_write, tls_on_net_event, r);
    bufferevent_set_timeouts(r->net, &tv, &tv);
    bufferevent_enable(r->net, EV_READ | EV_WRITE);
}

bool tls_server_drained(const tls_server_t *t)
{
    const tls_relay_t *r;

    if (t == NULL)
        return true;
    LIST_FOREACH(r, &t->relays, link) {
        int unread = 0;
        if (r->handshaking)
            continue;
        if (tls_out_len(r->net) > 0)
            return false;
        if (r->pair == NULL)
            continue;
        /* Replies conn wrote that the relay has not read yet. */
        if (evbuffer_get_length(bufferevent_get_input(r->pair)) > 0)
            return false;
        if (ioctl(bufferevent_getfd(r->pair), FIONREAD, &unread) == 0 && unread > 0)
            return false;
    }
    return true;
}

void tls_server_free(tls_server_t *t)
{
    if (t == NULL)
        return;
    while (!LIST_EMPTY(&t->relays))
        tls_relay_free(LIST_FIRST(&t->relays));
    SSL_CTX_free(t->ctx);
    free(t);
}
