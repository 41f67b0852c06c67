/* top.h: `sluice top`, a live view of a broker in a terminal (and one
 * frame for scripts with --once). The frame itself is made by topview.c;
 * this module owns the terminal, the signals and the polling loop.
 */
#ifndef SLUICE_TOP_H
#define SLUICE_TOP_H

#include "client.h"

/* The connection options given after "top" (-s, -u, --tls, --ca, --cert,
 * --key); NULL or false where not given. */
typedef struct top_conn {
    const char *addr, *user;
    bool tls;
    client_tls_t tls_opt;
} top_conn_t;

/* How top reaches the broker: the caller's own connect, with `given` over
 * its own options, so AUTH and TLS work as for every other subcommand.
 * NULL after printing why. */
typedef client_t *top_connect_fn(void *ctx, const top_conn_t *given);

/* Run `sluice top` with its own arguments (argv[0] is "top"); addr is the
 * server's address as given, for the header. Returns the exit status:
 * 0 (q, Ctrl-C), 1 (error), 2 (usage), 128+N (stopped by SIGTERM/SIGHUP). */
int top_main(int argc, char **argv, const char *addr, top_connect_fn *connect, void *ctx);

#endif
