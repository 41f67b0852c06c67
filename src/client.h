/* client.h: a small client connection to a sluice server (or, for the
 * bench, to any server with a byte-stream protocol): connect, an output
 * buffer for pipelining, an input buffer that grows to hold whole replies,
 * and blocking helpers built on poll(2).
 *
 * The socket is non-blocking; the blocking helpers poll for both directions
 * so a client writing a long pipeline keeps reading what the server sends
 * meanwhile and neither side can wedge the other.
 */
#ifndef SLUICE_CLIENT_H
#define SLUICE_CLIENT_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "proto.h"

#define CLIENT_DEFAULT_ADDR "127.0.0.1:7700"
#define CLIENT_DEFAULT_PORT 7700
#define CLIENT_ERR_MAX 256

struct ssl_st;
struct ssl_ctx_st;

typedef struct client {
    int fd;
    char *in;           /* received bytes; in[in_off..in_len) not yet consumed */
    size_t in_off, in_len, in_cap;
    char *out;          /* bytes queued for the server; out[out_off..out_len) unsent */
    size_t out_off, out_len, out_cap;
    bool eof;           /* the server closed its side */
    char addr[128];     /* the address as given, for messages */
    char err[CLIENT_ERR_MAX]; /* why the last failing call failed */
    struct ssl_st *ssl;         /* TLS session after client_start_tls; NULL: plain */
    struct ssl_ctx_st *ssl_ctx;
} client_t;

/* What client_start_tls trusts and presents. */
typedef struct client_tls {
    const char *ca;     /* PEM CA bundle for the server's certificate; NULL: the system's */
    const char *cert;   /* PEM client certificate chain, or NULL */
    const char *key;    /* its private key; NULL: read from the cert file */
} client_tls_t;

/* The address to use when none is given: $SLUICE_ADDR, else the default. */
const char *client_default_addr(void);

/* Connect to `addr` ("host:port", "[v6]:port", "host" (then default_port),
 * ":port" (127.0.0.1), a bare IPv6 address or "unix:/path": addr.h's
 * ADDR_CLIENT), waiting at most timeout_ms (< 0: the system's own limit).
 * NULL on failure, with a message naming the address and the reason in err
 * (CLIENT_ERR_MAX bytes). */
client_t *client_connect(const char *addr, int default_port, int timeout_ms, char *err);

/* Speak TLS (1.2 or later) on a fresh connection: handshake within
 * timeout_ms (< 0: no limit), verifying the server's certificate chain and
 * that it names the host or IP address c was connected to. 0, or -1 with
 * c->err saying why. Every later read and write on c is encrypted. */
int client_start_tls(client_t *c, const client_tls_t *tls, int timeout_ms);

/* Close the socket and free everything. NULL is fine. */
void client_free(client_t *c);

/* Queue bytes for the server (nothing is sent until a flush or a poll
 * step). 0, or -1 when out of memory. */
int client_put(client_t *c, const void *data, size_t len);
/* Append len bytes that the caller writes at the address returned (valid
 * until the next call on c). NULL when out of memory. */
char *client_space(client_t *c, size_t len);
int client_printf(client_t *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* How many queued bytes are still unsent. */
size_t client_unsent(const client_t *c);

/* Send all queued bytes, reading whatever arrives meanwhile into the input
 * buffer. 0, or -1 on error (c->err says why). */
int client_flush(client_t *c);

/* One step of I/O: wait up to timeout_ms (< 0: forever) until the socket
 * is readable (or writable while output is queued), then move what can be
 * moved without blocking. `extra_fd` (or -1) is polled for reading too and
 * *extra_ready tells whether it is readable (may be NULL when extra_fd is
 * -1). Returns 1 if something happened, 0 on timeout, -1 on error or EOF
 * (c->err says which; c->eof is set on EOF). EINTR returns 0. */
int client_step(client_t *c, int timeout_ms, int extra_fd, bool *extra_ready);

/* Parse the next sluice reply or push from the input buffer without any
 * I/O. 1 with *r filled (valid until the next call that reads or takes
 * from the input), 0 when none is complete, -1 when the server sent
 * something that is not a sluice reply. */
int client_next(client_t *c, proto_reply_t *r);

/* Flush, then block until one whole reply or push is read, up to
 * timeout_ms (< 0: forever). 1, 0 on timeout, -1 on error/EOF/garbage. */
int client_read(client_t *c, proto_reply_t *r, int timeout_ms);

/* Raw access to the input buffer, for other protocols (the bench speaks
 * RESP and beanstalkd's protocol over the same connection code). */
static inline const char *client_data(const client_t *c) { return c->in ? c->in + c->in_off : ""; }
static inline size_t client_avail(const client_t *c) { return c->in_len - c->in_off; }
void client_consume(client_t *c, size_t n);

/* Format an error reply as "-CODE text" into out (n bytes). */
void client_reply_str(const proto_reply_t *r, char *out, size_t n);

/* If r is `-MOVED topic host:port` (the topic's owner, as the daemon's
 * node list spells it): that address into out (cap bytes, NUL-ended) and
 * true. False for any other reply, or one whose address does not fit. */
bool client_moved(const proto_reply_t *r, char *out, size_t cap);

/* How many times a command follows -MOVED before giving up. */
#define CLIENT_MAX_HOPS 3

/* ---- which brokers to talk to (client_nodes.c; docs/cli.md) ---- */

/* What the command line said; NULL for what it did not. */
typedef struct client_nodes_opts {
    const char *nodes;    /* --nodes host:port,... */
    const char *server;   /* -s ADDR: one server */
    const char *config;   /* --config FILE */
    const char *fallback; /* the address when nothing names one; NULL: $SLUICE_ADDR, else
                           * CLIENT_DEFAULT_ADDR */
    bool no_env;          /* look at no environment variable ($SLUICE_NODES, ...) */
} client_nodes_opts_t;

/* The node list a command goes by: every topic goes to its owner among
 * v[0..n) (place.h); one node is one server, as before clusters. */
typedef struct client_nodes {
    char **v;
    size_t n;
    char from[CONFIG_NODE_MAX + 32];  /* where it came from, for messages: "--nodes", "-s", ... */
    client_conf_t list;   /* what v points into */
} client_nodes_t;

enum { CLIENT_NODES_USAGE = -2, CLIENT_NODES_BAD = -1 };

/* Settle the node list by the precedence docs/cli.md gives: --nodes, -s,
 * --config FILE, $SLUICE_NODES, $SLUICE_CONFIG, $SLUICE_ADDR, the default.
 * 0; CLIENT_NODES_USAGE when the command line is wrong (-s with --nodes,
 * a bad --nodes); CLIENT_NODES_BAD when what it names is (a bad file or
 * $SLUICE_NODES). Why in err (CLIENT_ERR_MAX bytes is enough). */
int client_nodes_resolve(client_nodes_t *out, const client_nodes_opts_t *o, char *err,
                         size_t errlen);
void client_nodes_free(client_nodes_t *nl);

/* The address of topic's owner: one of nl->v. */
const char *client_nodes_owner(const client_nodes_t *nl, const char *topic, size_t len);

#endif
