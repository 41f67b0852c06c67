/* tls.h: TLS for tls:// listeners, terminated outside the connection layer.
 *
 * Each accepted TLS socket gets a relay: OpenSSL (through a libevent
 * bufferevent) on the TCP side, a socketpair on the other, and conn.c
 * serving the socketpair's far end exactly as it serves a plain socket.
 * The plain path pays nothing for TLS.
 */
#ifndef SLUICE_TLS_H
#define SLUICE_TLS_H

#include <stdbool.h>

#include "config.h"

struct connhost;
struct connproto;

typedef struct tls_server tls_server_t;

/* Build the TLS context from cfg->tls (certificate chain, key, and with
 * verify_clients the CA bundle). NULL after logging why. */
tls_server_t *tls_server_new(struct connhost *host, const config_t *cfg);

/* A reload: build a new context from cfg and use it for new connections;
 * connections already open keep theirs. If the new files do not load, the
 * error is logged and the running context stays. 0 or -1. */
int tls_server_configure(tls_server_t *t, const config_t *cfg);

/* Take over an accepted TCP socket (closed on failure) and start the
 * handshake; once it succeeds the plain end is handed to proto's open with
 * `peer` as its name (or refused with proto's busy line at
 * max_connections). */
void tls_accept(tls_server_t *t, int fd, const char *peer, const struct connproto *proto);

/* True when no relay holds bytes owed to a client (for the shutdown drain). */
bool tls_server_drained(const tls_server_t *t);

/* Close every relay and free the context. NULL is fine. */
void tls_server_free(tls_server_t *t);

#endif
