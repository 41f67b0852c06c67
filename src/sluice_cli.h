/* sluice_cli.h: what every `sluice` subcommand shares (sluice_cli.c): the
 * connection options and the one getopt prologue that takes them, connect
 * with TLS and AUTH, reply and error helpers, payload framing on stdout,
 * the stop signal; and the subcommands' entry points, one concern a file.
 */
#ifndef SLUICE_CLI_H
#define SLUICE_CLI_H

#include <getopt.h>
#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "client.h"
#include "proto.h"

#define EXIT_USAGE 2
#define EXIT_TIMEOUT 3

#define SLUICE_QUICK_MS 10000     /* reply timeout for commands that never wait */

typedef enum out_mode {
    OUT_LINES = 0,  /* payload then "\n" */
    OUT_NUL,        /* payload then "\0" */
    OUT_RAW,        /* payload bytes only */
} out_mode_t;

/* What every subcommand needs to reach the brokers. */
typedef struct cli {
    const char *addr;     /* -s: one server */
    const char *nodes_opt; /* --nodes host:port,... */
    const char *config;   /* --config FILE */
    const char *user;
    const char *cmd;      /* subcommand name, for messages */
    bool tls;             /* --tls, --ca, --cert, --key or a tls:// address */
    client_tls_t tls_opt;
    client_nodes_t nodes; /* what sluice_resolve settled */
} cli_t;

/* The connection options every subcommand takes, as the commands before
 * it do: -s, --nodes, --config, -u, --tls, --ca, --cert, --key (each of
 * the last three implies --tls). A subcommand's option table lists
 * SLUICE_CONN_OPTIONS and its short options end with SLUICE_CONN_SHORT. */
enum { OPT_TLS = 0x100, OPT_CA, OPT_CERT, OPT_KEY, OPT_NODES, OPT_CONFIG };
#define SLUICE_CONN_SHORT "s:u:"
#define SLUICE_CONN_OPTIONS                                                                   \
    { "server", required_argument, NULL, 's' }, { "user", required_argument, NULL, 'u' },    \
        { "nodes", required_argument, NULL, OPT_NODES },                                      \
        { "config", required_argument, NULL, OPT_CONFIG },                                    \
        { "tls", no_argument, NULL, OPT_TLS }, { "ca", required_argument, NULL, OPT_CA },     \
        { "cert", required_argument, NULL, OPT_CERT }, { "key", required_argument, NULL, OPT_KEY }

/* getopt_long that takes the connection options into cli itself: the next
 * other option (or '?'), -1 at the end. */
int sluice_getopt(cli_t *cli, int argc, char **argv, const char *shorts, const struct option *longs);

/* "sluice: CMD: message" on stderr. */
void sluice_err(const cli_t *cli, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* The same with a pointer to --help; returns EXIT_USAGE. */
int sluice_usage_err(const cli_t *cli, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* getopt already said what was wrong with the option; EXIT_USAGE. */
int sluice_bad_option(void);
/* Strict decimal: digits only, no sign, no overflow past `max`. */
bool sluice_num(const char *s, uint64_t max, uint64_t *out);

/* Set by SIGINT/SIGTERM once sluice_catch_signals ran. */
extern volatile sig_atomic_t sluice_stop_sig;
void sluice_catch_signals(void);

/* Connect to addr (with TLS if asked), and AUTH when a user is set. NULL
 * after printing why. */
client_t *sluice_connect(const cli_t *cli, const char *addr);

/* ---- the node list and routing (sluice_route.c) ---- */

/* Settle cli->nodes once the options are read (client_nodes_resolve's
 * precedence). 0, or the exit status after saying why: EXIT_USAGE for
 * the command line, 1 for a bad $SLUICE_NODES or config file. */
int sluice_resolve(cli_t *cli);
/* The address of topic's owner among the nodes. */
const char *sluice_owner(const cli_t *cli, const char *topic);
/* Queue one command on c; 0, or -1 out of memory. */
typedef int sluice_put_fn(client_t *c, void *arg);
/* Send a command about topic on *c (NULL: connect to the owner first) and
 * read its reply into r; while the reply is -MOVED, connect to the node it
 * names (replacing *c) and send it again, at most CLIENT_MAX_HOPS times,
 * saying once on stderr that the node list looks stale. 1 with r filled
 * (any other reply, errors too), or -1 after printing why. */
int sluice_exchange(const cli_t *cli, client_t **c, const char *topic, sluice_put_fn *put,
                    void *arg, proto_reply_t *r, int timeout_ms);
/* The same for a one-line command. */
int sluice_exchangef(const cli_t *cli, client_t **c, const char *topic, proto_reply_t *r,
                     int timeout_ms, const char *fmt, ...) __attribute__((format(printf, 6, 7)));

/* Read one reply, printing why on failure. 1 or -1. */
int sluice_reply(const cli_t *cli, client_t *c, proto_reply_t *r, int timeout_ms);
/* Say what an error reply (or an unexpected one) was. */
void sluice_err_reply(const cli_t *cli, const proto_reply_t *r);
bool sluice_is_timeout(const proto_reply_t *r);

/* Write a payload to stdout in the chosen framing. 0 or -1 (errno set). */
int sluice_print(const char *p, size_t n, out_mode_t mode);
/* Flush stdout before acknowledging: an ACK promises the bytes are out. */
int sluice_flush_stdout(const cli_t *cli);

/* ---- the subcommands: argv[0] is the subcommand; each returns the exit status ---- */

int sluice_pub(cli_t *cli, int argc, char **argv);      /* sluice_pub.c */
int sluice_sub(cli_t *cli, int argc, char **argv);      /* sluice_sub.c */
int sluice_get(cli_t *cli, int argc, char **argv);      /* sluice_sub.c */
int sluice_stats(cli_t *cli, int argc, char **argv);    /* sluice_stats.c */
int sluice_join(cli_t *cli, int argc, char **argv);     /* sluice_cmds.c */
int sluice_top(cli_t *cli, int argc, char **argv);      /* sluice_cmds.c */
int sluice_place(cli_t *cli, int argc, char **argv);    /* sluice_route.c */
/* topics and ping: no arguments, one line sent (`line`) to every node,
 * the replies printed. */
int sluice_simple(cli_t *cli, int argc, char **argv, const char *line); /* sluice_cmds.c */

#endif
