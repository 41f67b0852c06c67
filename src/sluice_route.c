/* sluice_route.c: which broker a `sluice` command goes to. The node list
 * is settled once the options are read (client_nodes.c has the
 * precedence); a command about a topic goes to the topic's owner, and a
 * broker that does not own it answers `-MOVED topic host:port`, which is
 * followed a few hops, with one line on stderr, so a stale list still
 * works while it says it is stale. And `sluice place`, which prints the
 * owners without connecting.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sluice_cli.h"

int sluice_resolve(cli_t *cli)
{
    client_nodes_opts_t o = {
        .nodes = cli->nodes_opt, .server = cli->addr, .config = cli->config,
    };
    char err[CONFIG_ERR_MAX + 64];
    int rc = client_nodes_resolve(&cli->nodes, &o, err, sizeof err);

    if (rc == CLIENT_NODES_USAGE)
        return sluice_usage_err(cli, "%s", err);
    if (rc != 0) {
        sluice_err(cli, "%s", err);
        return 1;
    }
    return 0;
}

const char *sluice_owner(const cli_t *cli, const char *topic)
{
    return client_nodes_owner(&cli->nodes, topic, strlen(topic));
}

/* Said once a run: a stale list works, slowly, and should be fixed. */
static bool sluice_warned_stale;

static void sluice_stale(const cli_t *cli, const char *topic, const char *from, const char *to)
{
    if (sluice_warned_stale)
        return;
    sluice_warned_stale = true;
    sluice_err(cli, "the node list looks stale: %s says %s is on %s (following -MOVED)", from,
               topic, to);
}

int sluice_exchange(const cli_t *cli, client_t **c, const char *topic, sluice_put_fn *put,
                    void *arg, proto_reply_t *r, int timeout_ms)
{
    char to[CLIENT_ERR_MAX], from[sizeof(*c)->addr];

    if (*c == NULL && (*c = sluice_connect(cli, sluice_owner(cli, topic))) == NULL)
        return -1;
    for (int hops = 0;; hops++) {
        if (put(*c, arg) < 0) {
            sluice_err(cli, "out of memory");
            return -1;
        }
        if (sluice_reply(cli, *c, r, timeout_ms) < 0)
            return -1;
        if (!client_moved(r, to, sizeof to))
            return 1;
        snprintf(from, sizeof from, "%s", (*c)->addr);
        if (hops == CLIENT_MAX_HOPS) {
            sluice_err(cli, "%s: still -MOVED after %d hops (%s says %s); the cluster's node "
                       "lists disagree", topic, CLIENT_MAX_HOPS, from, to);
            return -1;
        }
        sluice_stale(cli, topic, from, to);
        client_free(*c);
        if ((*c = sluice_connect(cli, to)) == NULL)
            return -1;
    }
}

/* One formatted line, for sluice_exchangef. */
typedef struct sluice_line {
    const char *p;
    size_t n;
} sluice_line_t;

static int sluice_put_line(client_t *c, void *arg)
{
    const sluice_line_t *l = arg;
    return client_put(c, l->p, l->n);
}

int sluice_exchangef(const cli_t *cli, client_t **c, const char *topic, proto_reply_t *r,
                     int timeout_ms, const char *fmt, ...)
{
    char buf[PROTO_TOPIC_MAX + 128];
    va_list ap;

    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof buf) {
        sluice_err(cli, "command too long");
        return -1;
    }
    sluice_line_t l = { buf, (size_t)n };
    return sluice_exchange(cli, c, topic, sluice_put_line, &l, r, timeout_ms);
}

/* `sluice place TOPIC...`: "TOPIC NODE" per topic, from the node list
 * alone. For operators, and for pointing a beanstalk worker at the node
 * that owns its tube. */
int sluice_place(cli_t *cli, int argc, char **argv)
{
    static const struct option opts[] = {
        SLUICE_CONN_OPTIONS,
        { NULL, 0, NULL, 0 },
    };

    if (sluice_getopt(cli, argc, argv, SLUICE_CONN_SHORT, opts) != -1)
        return sluice_bad_option();
    if (optind >= argc)
        return sluice_usage_err(cli, "missing TOPIC");
    for (int i = optind; i < argc; i++)
        if (!proto_topic_valid(argv[i], strlen(argv[i])))
            return sluice_usage_err(cli, "bad topic name '%s'", argv[i]);
    int rc = sluice_resolve(cli);
    if (rc != 0)
        return rc;
    for (int i = optind; i < argc; i++)
        printf("%s %s\n", argv[i], sluice_owner(cli, argv[i]));
    return fflush(stdout) == 0 ? 0 : 1;
}
