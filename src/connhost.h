/* connhost.h: the server as its connections see it.
 *
 * conn.c, and tls.c which hands conn.c its TLS connections, need a little
 * of whoever owns the connection set: the loop, the broker, the live config,
 * whether it is draining, how many connections there are, and a way to say
 * "add me", "remove me", "flush me this turn", "I called the broker" and
 * "what does STATS say beyond the core". That is this header.
 * server.c fills it in (server_t starts with one), so the includes point one
 * way: server -> tls -> conn -> connhost, and neither conn.c nor tls.c knows
 * server_t. A second listener type can own connections the same way.
 */
#ifndef SLUICE_CONNHOST_H
#define SLUICE_CONNHOST_H

#include <errno.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <stdbool.h>
#include <stdint.h>

#include "broker.h"
#include "config.h"
#include "msg.h"
#include "stats.h"

struct conn;
typedef struct connhost connhost_t;

typedef struct connhost_ops {
    /* c joins the owner's set (counted in nconns), or leaves it and the
     * flush queue. */
    void (*conn_add)(connhost_t *h, struct conn *c);
    void (*conn_remove)(connhost_t *h, struct conn *c);
    /* Write c's output once every I/O callback of this loop turn has run.
     * Called only while c->flush_queued is false. */
    void (*want_flush)(connhost_t *h, struct conn *c);
    /* After a broker call (a command, a closed connection): the broker may
     * have new deadlines; the owner re-arms its timer at the end of the turn. */
    void (*touch)(connhost_t *h);
    /* What the STATS body says beyond the core's counters. */
    stats_extra_t (*stats)(const connhost_t *h);
} connhost_ops_t;

/* The fields, as a macro so that server_t can also offer them under their
 * own names (see server.h) without a second copy of any of them. */
#define CONNHOST_FIELDS                                                         \
    struct event_base *base;                                                    \
    broker_t *broker;                                                           \
    const config_t *cfg;        /* the live config; owned by the daemon */      \
    bool draining;              /* shutting down: no reads (/healthz: 503) */   \
    uint64_t nconns;            /* live connections of every protocol, vs max_connections */ \
    const connhost_ops_t *ops;

struct connhost {
    CONNHOST_FIELDS
};

/* A protocol served on listeners: what an accepted connection becomes.
 * The server (and TLS) know protocols only through this, so a second one
 * (beanstalkd's: bconn.h's bconn_proto) is a connproto_t of its own handed
 * to server_listen, and server.c knows nothing of it. */
typedef struct connproto {
    const char *label; /* after "listening on ADDR" in the log; "" for the native one */
    const char *busy;  /* the line a connection refused at max_connections gets */
    /* Serve fd (nonblocking, connected to `peer`); false when it could not
     * (fd is then closed). */
    bool (*open)(connhost_t *h, int fd, const char *peer);

    /* For a protocol that keeps its own connections (the server keeps the
     * native ones, whose hooks are NULL): the server calls each of these
     * once per protocol it listens for. */
    const char *port_key;   /* its lines in the port file: "KEY ADDR"; NULL: "ADDR" */
    /* A new config is live (called before the old one is freed). */
    void (*configure)(connhost_t *h, const config_t *cfg);
    /* Shutdown: stop reading every connection for good. */
    void (*stop_reading)(connhost_t *h);
    /* Shutdown: true once no connection has output left to write. */
    bool (*drained)(const connhost_t *h);
    /* The server is freed: close every connection. */
    void (*close_all)(connhost_t *h);
} connproto_t;

/* Write a connection's pending output to its socket: 1 all of it went,
 * 0 the kernel is full (wait for EV_WRITE), -1 the peer is gone. */
static inline int connhost_write_out(struct evbuffer *out, int fd)
{
    while (evbuffer_get_length(out) > 0) {
        int n = evbuffer_write(out, fd);
        if (n > 0)
            continue;
        return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) ? 0 : -1;
    }
    return 1;
}

/* Payloads this big are written from their message instead of a copy: from
 * about 4 KiB a copy costs more than libevent's two small chains
 * (docs/benchmarks.md, "Pushes written from the message"). */
#define CONNHOST_LEND_MIN 4096

static inline void connhost_unlend(const void *data, size_t len, void *m)
{
    (void)data;
    (void)len;
    msg_unpin(m);
}

/* Should m's payload be lent rather than copied? True (and m pinned) when
 * it is big enough and not lent already; the caller then puts what comes
 * before it into out and calls connhost_add_lent. */
static inline bool connhost_lend(const msg_t *m)
{
    return m->len >= CONNHOST_LEND_MIN && msg_pin(m);
}

/* Append m's payload, which connhost_lend pinned, to out by reference:
 * writev sends it from the message, and the evbuffer unpins it when done
 * with it. If no chain can be had it is copied and unpinned now. */
static inline void connhost_add_lent(struct evbuffer *out, const msg_t *m)
{
    if (evbuffer_add_reference(out, m->data, m->len, connhost_unlend, (void *)(uintptr_t)m) == 0)
        return;
    msg_unpin(m);
    evbuffer_add(out, m->data, m->len);
}

#endif
