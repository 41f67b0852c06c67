/* sluice_cli.c: what every `sluice` subcommand shares: messages and exit
 * codes for errors, strict numbers, the stop signal, the connection
 * options with the one getopt prologue that takes them, connect (TLS,
 * AUTH), and reading replies and printing payloads. Which node a
 * command goes to is sluice_route.c's.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sluice_cli.h"

volatile sig_atomic_t sluice_stop_sig;

/* "sluice: CMD: message", without the line's end. */
static void sluice_verr(const cli_t *cli, const char *fmt, va_list ap)
{
    fprintf(stderr, "sluice: %s%s", cli->cmd ? cli->cmd : "", cli->cmd ? ": " : "");
    vfprintf(stderr, fmt, ap);
}

void sluice_err(const cli_t *cli, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    sluice_verr(cli, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

int sluice_usage_err(const cli_t *cli, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    sluice_verr(cli, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\nTry 'sluice --help'.\n");
    return EXIT_USAGE;
}

/* getopt already said what was wrong with the option. */
int sluice_bad_option(void)
{
    fprintf(stderr, "Try 'sluice --help'.\n");
    return EXIT_USAGE;
}

/* Strict decimal: digits only, no sign, no overflow past `max`. */
bool sluice_num(const char *s, uint64_t max, uint64_t *out)
{
    uint64_t v = 0;

    if (!*s)
        return false;
    for (; *s; s++) {
        if (*s < '0' || *s > '9')
            return false;
        unsigned d = (unsigned)(*s - '0');
        if (v > (max - d) / 10)
            return false;
        v = v * 10 + d;
    }
    *out = v;
    return true;
}

static void sluice_on_signal(int sig)
{
    sluice_stop_sig = sig;
}

/* SIGINT/SIGTERM only set a flag (and interrupt poll) so a consumer can
 * ACK what it already printed before leaving. */
void sluice_catch_signals(void)
{
    struct sigaction sa;

    memset(&sa, 0, sizeof sa);
    sa.sa_handler = sluice_on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
}

/* Take `o` into cli if it is a connection option (SLUICE_CONN_OPTIONS;
 * --ca, --cert and --key imply --tls). False if it is none of them. */
static bool sluice_conn_option(cli_t *cli, int o)
{
    switch (o) {
    case 's': cli->addr = optarg; return true;
    case 'u': cli->user = optarg; return true;
    case OPT_NODES: cli->nodes_opt = optarg; return true;
    case OPT_CONFIG: cli->config = optarg; return true;
    case OPT_TLS: break;
    case OPT_CA: cli->tls_opt.ca = optarg; break;
    case OPT_CERT: cli->tls_opt.cert = optarg; break;
    case OPT_KEY: cli->tls_opt.key = optarg; break;
    default: return false;
    }
    cli->tls = true;
    return true;
}

int sluice_getopt(cli_t *cli, int argc, char **argv, const char *shorts, const struct option *longs)
{
    int o;

    while ((o = getopt_long(argc, argv, shorts, longs, NULL)) != -1 && sluice_conn_option(cli, o))
        ;
    return o;
}

/* Connect to addr (with TLS if asked), and AUTH when a user is set. NULL
 * after printing why. */
client_t *sluice_connect(const cli_t *cli, const char *to)
{
    char err[CLIENT_ERR_MAX];
    /* The prefix is taken off here, not by addr_parse(ADDR_TLS): what
     * follows is the client's form, shortcuts and "unix:" included, and
     * client_connect's messages name it without the prefix. */
    static const char prefix[] = "tls://";
    bool prefixed = strncmp(to, prefix, sizeof prefix - 1) == 0;
    bool tls = cli->tls || prefixed;
    const char *addr = prefixed ? to + sizeof prefix - 1 : to;

    if (cli->tls_opt.key && !cli->tls_opt.cert) {
        sluice_err(cli, "--key needs --cert");
        return NULL;
    }
    client_t *c = client_connect(addr, CLIENT_DEFAULT_PORT, SLUICE_QUICK_MS, err);
    if (!c) {
        sluice_err(cli, "%s", err);
        return NULL;
    }
    if (tls && client_start_tls(c, &cli->tls_opt, SLUICE_QUICK_MS) < 0) {
        sluice_err(cli, "%s", c->err);
        client_free(c);
        return NULL;
    }
    if (!cli->user)
        return c;
    /* from the environment only: argv is visible to every local user */
    const char *pass = getenv("SLUICE_PASSWORD");
    if (!pass || !*pass) {
        sluice_err(cli, "user %s needs its password in $SLUICE_PASSWORD", cli->user);
        client_free(c);
        return NULL;
    }
    proto_reply_t r;
    client_printf(c, "AUTH %s %s\r\n", cli->user, pass);
    int k = client_read(c, &r, SLUICE_QUICK_MS);
    if (k == 1 && r.type == REPLY_OK)
        return c;
    if (k == 1) {
        char e[PROTO_ERR_MAX + 8];
        client_reply_str(&r, e, sizeof e);
        sluice_err(cli, "AUTH refused: %s", e);
    } else {
        sluice_err(cli, "%s", c->err);
    }
    client_free(c);
    return NULL;
}

/* Read one reply, printing why on failure. 1 or -1. */
int sluice_reply(const cli_t *cli, client_t *c, proto_reply_t *r, int timeout_ms)
{
    int k = client_read(c, r, timeout_ms);

    if (k == 1)
        return 1;
    sluice_err(cli, "%s", c->err);
    return -1;
}

void sluice_err_reply(const cli_t *cli, const proto_reply_t *r)
{
    char e[PROTO_ERR_MAX + 8];

    if (r->type != REPLY_ERROR) {
        sluice_err(cli, "unexpected reply from server");
        return;
    }
    client_reply_str(r, e, sizeof e);
    sluice_err(cli, "%s", e);
}

bool sluice_is_timeout(const proto_reply_t *r)
{
    return r->type == REPLY_ERROR && r->code_len == 7 && memcmp(r->code, "TIMEOUT", 7) == 0;
}

/* Write a payload to stdout in the chosen framing. 0 or -1 (errno set). */
int sluice_print(const char *p, size_t n, out_mode_t mode)
{
    if (n && fwrite(p, 1, n, stdout) != n)
        return -1;
    if (mode == OUT_LINES && putchar('\n') == EOF)
        return -1;
    if (mode == OUT_NUL && putchar('\0') == EOF)
        return -1;
    return 0;
}

/* Flush stdout before acknowledging: an ACK promises the bytes are out. */
int sluice_flush_stdout(const cli_t *cli)
{
    if (fflush(stdout) == 0)
        return 0;
    if (errno != EPIPE)  /* a reader that went away is not worth a message */
        sluice_err(cli, "stdout: %s", strerror(errno));
    return -1;
}
