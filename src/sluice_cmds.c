/* sluice_cmds.c: the `sluice` subcommands that are one request: join
 * (wait until a topic is drained), topics, ping; and top's options before
 * top.c takes over.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sluice_cli.h"
#include "top.h"
#include "topview.h"

int sluice_join(cli_t *cli, int argc, char **argv)
{
    static const struct option opts[] = {
        { "timeout", required_argument, NULL, 't' },
        SLUICE_CONN_OPTIONS,
        { NULL, 0, NULL, 0 },
    };
    uint64_t timeout = 0;
    bool has_timeout = false;
    int o;

    while ((o = sluice_getopt(cli, argc, argv, "t:" SLUICE_CONN_SHORT, opts)) != -1) {
        switch (o) {
        case 't':
            if (!sluice_num(optarg, UINT64_MAX, &timeout))
                return sluice_usage_err(cli, "bad --timeout '%s'", optarg);
            has_timeout = true;
            break;
        default:
            return sluice_bad_option();
        }
    }
    if (optind != argc - 1)
        return sluice_usage_err(cli, "expected exactly one TOPIC");
    const char *topic = argv[optind];
    if (!proto_topic_valid(topic, strlen(topic)))
        return sluice_usage_err(cli, "bad topic name '%s'", topic);
    int rc = sluice_resolve(cli);
    if (rc != 0)
        return rc;
    client_t *c = NULL;
    proto_reply_t r;
    rc = 1;
    /* the wait has no end but the topic's: no reply timeout */
    int k = has_timeout ? sluice_exchangef(cli, &c, topic, &r, -1, "JOIN %s %llu\r\n", topic,
                                           (unsigned long long)timeout)
                        : sluice_exchangef(cli, &c, topic, &r, -1, "JOIN %s\r\n", topic);
    if (k < 0)
        goto out;
    if (r.type == REPLY_OK) {
        rc = 0;
    } else if (sluice_is_timeout(&r)) {
        sluice_err(cli, "%s still has messages", topic);
        rc = EXIT_TIMEOUT;
    } else {
        sluice_err_reply(cli, &r);
    }
out:
    client_free(c);
    return rc;
}

/* top: its own options and the connection ones, then the same connect,
 * TLS and AUTH as every command; top.c runs the view. */
int sluice_top(cli_t *cli, int argc, char **argv)
{
    enum { OPT_ONCE = 0x200 };
    static const struct option opts[] = {
        { "interval", required_argument, NULL, 'i' },
        { "sort", required_argument, NULL, 'o' },
        { "once", no_argument, NULL, OPT_ONCE },
        { "help", no_argument, NULL, 'h' },
        SLUICE_CONN_OPTIONS,
        { NULL, 0, NULL, 0 },
    };
    top_opts_t t = TOP_OPTS_DEFAULT;
    int o;

    while ((o = sluice_getopt(cli, argc, argv, "i:o:h" SLUICE_CONN_SHORT, opts)) != -1) {
        switch (o) {
        case 'i':
            if (!top_interval_parse(optarg, &t.interval))
                return sluice_usage_err(cli, "bad interval '%s' (seconds, 0.1 to 3600)", optarg);
            break;
        case 'o':
            if (!tv_key_parse(optarg, &t.key))
                return sluice_usage_err(cli, "unknown sort key '%s' (sluice top --help)", optarg);
            break;
        case OPT_ONCE: t.once = true; break;
        case 'h': fputs(top_usage_text, stdout); return 0;
        default:
            return sluice_bad_option();
        }
    }
    if (optind < argc)
        return sluice_usage_err(cli, "unexpected argument '%s'", argv[optind]);
    if (!t.once && (!isatty(STDIN_FILENO) || !isatty(STDOUT_FILENO))) {
        sluice_err(cli, "needs a terminal (for scripts: sluice top --once)");
        return 1;
    }
    int rc = sluice_resolve(cli);
    if (rc != 0)
        return rc;
    client_t **cs = calloc(cli->nodes.n, sizeof *cs);
    if (!cs) {
        sluice_err(cli, "out of memory");
        return 1;
    }
    for (size_t i = 0; i < cli->nodes.n; i++) {
        if ((cs[i] = sluice_connect(cli, cli->nodes.v[i])) == NULL) {
            while (i > 0)
                client_free(cs[--i]);
            free(cs);
            return 1;
        }
    }
    rc = top_run(cs, (const char *const *)cli->nodes.v, cli->nodes.n, &t);
    free(cs);
    return rc;
}

/* TOPICS or PING to one node: 0, or 1 after saying why. */
static int sluice_simple_one(const cli_t *cli, const char *addr, const char *line, bool label)
{
    client_t *c = sluice_connect(cli, addr);
    proto_reply_t r;
    int rc = 1;

    if (!c)
        return 1;
    client_printf(c, "%s\r\n", line);
    if (sluice_reply(cli, c, &r, SLUICE_QUICK_MS) < 0)
        goto out;
    if (r.type == REPLY_PONG) {
        printf("%s%sPONG\n", label ? addr : "", label ? " " : "");
        rc = 0;
    } else if (r.type == REPLY_TOPICS) {
        fwrite(r.body, 1, r.body_len, stdout);
        rc = 0;
    } else {
        sluice_err_reply(cli, &r);
    }
out:
    client_free(c);
    return rc;
}

/* The commands with no arguments: TOPICS and PING, to every node (a topic
 * lives on one, so the cluster's list is all the nodes' lists; a ping
 * line names its node when there are several). */
int sluice_simple(cli_t *cli, int argc, char **argv, const char *line)
{
    static const struct option opts[] = {
        SLUICE_CONN_OPTIONS,
        { NULL, 0, NULL, 0 },
    };

    if (sluice_getopt(cli, argc, argv, SLUICE_CONN_SHORT, opts) != -1)
        return sluice_bad_option();
    if (optind < argc)
        return sluice_usage_err(cli, "unexpected argument '%s'", argv[optind]);
    int rc = sluice_resolve(cli);
    if (rc != 0)
        return rc;
    for (size_t i = 0; i < cli->nodes.n; i++)
        if (sluice_simple_one(cli, cli->nodes.v[i], line, cli->nodes.n > 1) != 0)
            rc = 1;
    return rc;
}
