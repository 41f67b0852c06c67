/* server.h: listeners, the set of connections, and the work the event loop
 * does for all of them: batched flushing, the broker's timer, draining on
 * shutdown. */
#ifndef SLUICE_SERVER_H
#define SLUICE_SERVER_H

#include <event2/event.h>
#include <event2/listener.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/queue.h>

#include "broker.h"
#include "config.h"
#include "connhost.h"

struct conn;

/* What the Redis mirror says of itself, for STATS, /metrics, /stats and
 * /healthz. The server asks the mirror through a function it was given, so
 * the mirror never writes the server's fields. */
typedef struct server_mirror_status {
    bool connected;   /* Redis answers */
    uint64_t lag_ops; /* commands sent and not yet answered */
} server_mirror_status_t;
typedef server_mirror_status_t (*server_mirror_status_fn)(const void *arg);

#define SERVER_MAX_PROTOS 4

typedef struct server {
    /* What connections see of the server (connhost.h): base, broker, cfg,
     * draining, nconns and ops, also under their own names (s->cfg) for the
     * daemon, the admin endpoint and the mirror. One copy: a union. */
    union {
        connhost_t host;
        struct {
            CONNHOST_FIELDS
        };
    };

    struct server_listener **listeners; /* every listener, of every protocol */
    size_t nlisteners;
    const connproto_t *protos[SERVER_MAX_PROTOS]; /* those with connections of their own */
    size_t nprotos;
    const char *admin_addr;       /* the admin endpoint's bound address, for the port file */
    struct event *accept_retry;   /* accept backs off on EMFILE/ENFILE */
    struct tls_server *tls;       /* TLS context and relays; NULL without tls:// listeners */

    LIST_HEAD(server_conns, conn) conns;    /* every live connection */
    TAILQ_HEAD(server_flushq, conn) flushq; /* output to write this loop turn, in the
                                               order the connections got it */
    struct event *flush_ev;       /* runs after all I/O callbacks of a turn */

    struct event *timer_ev;       /* the broker's next deadline */
    uint64_t timer_at;            /* when timer_ev fires; UINT64_MAX if not armed */

    struct event *drain_ev;       /* polls until every output is written */
    struct event *drain_deadline; /* gives up on clients that do not read */

    uint64_t max_loop_stall_ms;   /* longest lateness of the stall probe */
    struct event *probe_ev;
    uint64_t probe_due;
    server_mirror_status_fn mirror_status; /* asked, never written: see server_set_mirror */
    const void *mirror_arg;
} server_t;

/* Event priorities: the base must have SERVER_NPRIORITIES. I/O runs at the
 * default (middle) one, the flush pass after all of it. */
#define SERVER_NPRIORITIES 3

/* The mirror that answers server_mirror_status (NULL: none, the answer is
 * "not connected, no lag"). */
void server_set_mirror(server_t *s, server_mirror_status_fn fn, const void *arg);
server_mirror_status_t server_mirror_status(const server_t *s);

/* Create a server on base; nothing listens yet. NULL on failure. */
server_t *server_new(struct event_base *base, broker_t *broker, const config_t *cfg);

/* Bind every address of `addrs`, serving `proto` (conn_proto, the native
 * protocol, or another) on each; may be called again for another protocol.
 * On failure logs why and returns -1. */
int server_listen(server_t *s, char *const *addrs, size_t naddrs, const connproto_t *proto);

/* Write "ADDR\n" for every bound listener to path, then "admin ADDR\n"
 * if admin_addr is set. 0 or -1. */
int server_write_port_file(const server_t *s, const char *path);

/* A new config is live: new limits for connections and the broker. */
void server_configure(server_t *s, const config_t *cfg);

/* Stop accepting and reading; flush what is owed; then break the loop
 * (at the latest after timeout_ms). */
void server_drain(server_t *s, uint64_t timeout_ms);

/* Free listeners and close every connection. */
void server_free(server_t *s);

/* For conn.c, through connhost.h's ops: a new connection joins the server's
 * list (counted against limits.max_connections), and a closing one leaves
 * it and the flush list. */
void server_conn_add(server_t *s, struct conn *c);
void server_conn_remove(server_t *s, struct conn *c);

/* For conn.c, through connhost.h's ops: queue c to be flushed at the end of
 * this loop turn. */
void server_want_flush(server_t *s, struct conn *c);

/* After any broker call outside the server's own timer (a command, a
 * Redis reply, a closed connection): the broker may have new deadlines.
 * Its timer is re-armed in one place, the end-of-turn pass that also
 * flushes the connections. */
void server_touch(server_t *s);

#endif
