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

/* What every subcommand needs to reach the broker. */
typedef struct cli {
    const char *addr;
    const char *user;
    const char *cmd;      /* subcommand name, for messages */
    bool tls;             /* --tls, --ca, --cert, --key or a tls:// address */
    client_tls_t tls_opt;
} cli_t;

/* The connection options every subcommand takes, as the commands before
 * it do: -s, -u, --tls, --ca, --cert, --key (each of the last three
 * implies --tls). A subcommand's option table lists SLUICE_CONN_OPTIONS
 * and its short options end with SLUICE_CONN_SHORT. */
enum { OPT_TLS = 0x100, OPT_CA, OPT_CERT, OPT_KEY };
#define SLUICE_CONN_SHORT "s:u:"
#define SLUICE_CONN_OPTIONS                                                                   \
    { "server", required_argument, NULL, 's' }, { "user", required_argument, NULL, 'u' },    \
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

/* Connect (with TLS if asked), and AUTH when a user is set. NULL after
 * printing why. */
client_t *sluice_connect(const cli_t *cli);
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
/* topics and ping: no arguments, one line sent (`line`), its reply printed. */
int sluice_simple(cli_t *cli, int argc, char **argv, const char *line); /* sluice_cmds.c */

#endif
