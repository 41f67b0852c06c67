/* conn.h: one client connection: read, parse, run commands, write replies. */
#ifndef SLUICE_CONN_H
#define SLUICE_CONN_H

#include <event2/buffer.h>
#include <event2/event.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/queue.h>

#include "broker.h"
#include "cfifo.h"
#include "connhost.h"
#include "proto.h"

typedef enum conn_state {
    CONN_READING, /* normal: commands are parsed as they arrive */
    CONN_WAITING, /* a GET or JOIN waits: input is read but not parsed, so replies stay in order */
    CONN_PARKED,  /* a PUB is parked: the socket is not read at all (backpressure) */
    CONN_CONFIRMING, /* held PUBs wait for the mirror and the next command must not pass
                        them, or redis.max_unconfirmed of them wait: nothing is parsed,
                        and nothing is read once the FIFO is full (backpressure) */
    CONN_DELAYED, /* a failed AUTH's reply waits out its delay: nothing is read or parsed */
    CONN_CLOSING, /* QUIT or lost framing: flush the last replies, then close */
} conn_state_t;

typedef struct conn {
    connhost_t *host;               /* the server, as connhost.h shows it */
    int fd;
    conn_state_t state;
    client_t *client;
    proto_parser_t parser;
    const struct user_entry *user;  /* authenticated user; NULL = none yet */
    struct event *auth_delay;       /* sends a failed AUTH's -NOAUTH; made on first failure */
    char **subs;                    /* topics SUBbed (NUL-terminated), re-checked on reload */
    size_t nsubs;

    struct event *rev;              /* EV_READ | EV_PERSIST */
    struct event *wev;              /* EV_WRITE, added only while the kernel is full */
    bool reading;                   /* rev is added */
    bool peer_eof;                  /* the peer shut its side: finish what it sent, then close */

    char *in;                       /* input: in[in_off .. in_len) is unparsed; NOT NUL-terminated */
    size_t in_off, in_len, in_cap;
    size_t read_want;               /* room the next read asks for (conn.c's conn_read_learn) */
    struct evbuffer *out;           /* replies and pushes not yet written */
    cfifo_t unconfirmed;            /* confirm mode: held PUBs and the replies behind them */
    bool out_full;                  /* output passed limits.output_buffer: no reads, no pushes */
    /* A large PUB whose payload is read straight into its own message
     * (conn.c's conn_pend_begin): the rest of its command, kept here since
     * its line has left the input buffer. */
    msg_t *pend;                    /* NULL: none */
    size_t pend_have;               /* payload bytes in pend->data so far */
    uint64_t pend_delay;            /* its delay= */
    size_t pend_topic_len;
    char pend_topic[PROTO_TOPIC_MAX];
    msg_t *pub_pre;                 /* the message conn_cmd_pub takes instead of making one */
    char *ob;                       /* output after `out`, written straight from (conn.c) */
    size_t ob_len, ob_cap;

    /* The server's lists: written only by their owner, through host->ops
     * (server.c's server_conn_add, server_conn_remove, server_want_flush). */
    LIST_ENTRY(conn) link;        /* every connection */
    TAILQ_ENTRY(conn) flush_link; /* output to write this loop turn */
    bool flush_queued;
    char peer[64];                  /* for logs */
} conn_t;

/* Take over an accepted socket. NULL (and fd closed) on failure. */
conn_t *conn_new(connhost_t *host, int fd, const char *peer);

/* The native protocol, for server_listen. */
extern const connproto_t conn_proto;

/* Close now: the broker gets the client's in-flight messages back. */
void conn_free(conn_t *c);

/* Write what is pending. Returns false if the connection was closed. */
bool conn_flush(conn_t *c);

/* A new config is live: new parser limits, and the authenticated user is
 * looked up again by name (a removed user keeps the connection but loses
 * every right). SUBs the new rights no longer allow are ended; messages
 * already in flight stay owned. Call before the old config is freed. */
void conn_reconfigure(conn_t *c, const struct config *cfg);

/* Stop reading for good (shutdown). */
void conn_stop_reading(conn_t *c);

/* True when nothing is left to write. */
bool conn_drained(const conn_t *c);

/* Best-effort one-line reply on a socket that gets no conn_t (over
 * max_connections), then close it. */
void conn_refuse(int fd, const char *line);

#endif
