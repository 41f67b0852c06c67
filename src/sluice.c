/* sluice.c: the `sluice` command-line client: publish, consume, inspect and
 * benchmark a sluice broker from a shell. This file is the usage text and
 * the dispatch to the subcommands, each in its own sluice_<cmd>.c with
 * what they share in sluice_cli.c; the connection code is in client.c and
 * the load generator in src/bench/.
 *
 * Exit status: 0 success, 1 failure (cannot connect, refused by the server,
 * I/O error, a bad $SLUICE_NODES or config file), 2 usage error, 3 nothing arrived in time (GET/JOIN -TIMEOUT),
 * 128+N when stopped by signal N.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench/bench.h"
#include "sluice_cli.h"
#include "version.h"

static const char sluice_usage_text[] =
    "usage: sluice [-s ADDR | --nodes LIST | --config FILE] [-u USER]\n"
    "              [--tls [--ca FILE] [--cert FILE [--key FILE]]] COMMAND [ARGS...]\n"
    "\n"
    "Commands:\n"
    "  pub TOPIC [MESSAGE...]  publish the arguments, or one message per line of stdin\n"
    "      -0                  stdin messages are separated by NUL bytes\n"
    "      -f, --file FILE     publish the whole FILE as one message ('-': stdin)\n"
    "      -d, --delay MS      make the messages ready only after MS milliseconds\n"
    "      -w, --window N      PUBs in flight before waiting for replies (64)\n"
    "      -v, --verbose       print the id of each published message\n"
    "  sub TOPIC               print messages as they arrive, ACK each after printing\n"
    "      -n, --count N       exit after N messages\n"
    "      -c, --credit N      unacknowledged messages in flight (server prefetch;\n"
    "                          1 with --exec)\n"
    "      --no-ack            never ACK (messages return when sluice exits)\n"
    "      -e, --exec CMD      run /bin/sh -c CMD per message, payload on stdin,\n"
    "                          SLUICE_TOPIC/SLUICE_ID/SLUICE_ATTEMPT in the\n"
    "                          environment; ACK if it exits 0, else NACK\n"
    "      --nack-delay MS     with --exec: delay redelivery of a NACKed message\n"
    "      -0 | --raw          end each payload with NUL / with nothing (default: newline)\n"
    "  get TOPIC               take one message, print it, ACK it\n"
    "      -t, --timeout MS    wait up to MS for a message (default: don't wait)\n"
    "      --no-ack, -0, --raw as for sub\n"
    "  join TOPIC              wait until the topic has no ready, delayed or unacked message\n"
    "      -t, --timeout MS    give up after MS (default: wait as long as it takes)\n"
    "  stats [TOPIC]           counters: a table on a terminal, YAML otherwise\n"
    "                          (no TOPIC and a node list: every node's)\n"
    "      --yaml              always print the raw YAML\n"
    "  topics                  list topics, one per line\n"
    "  ping                    check the broker answers (every node of a list)\n"
    "  place TOPIC...          print each topic's node (from the node list alone)\n"
    "  top [-i SECS] [-o KEY] [--once]  live view of every topic (sluice top --help)\n"
    "  bench [OPTIONS]         load generator (sluice bench --help)\n"
    "\n"
    "Options:\n"
    "  -s, --server ADDR   one server: host:port, [v6addr]:port or unix:/path\n"
    "  --nodes LIST        a cluster's nodes, host:port,host:port,...: each topic's\n"
    "                      commands go to its owner (-MOVED is followed)\n"
    "  --config FILE       a client config file: nodes: [host:port, ...]\n"
    "                      (the first given of --nodes, -s, --config, $SLUICE_NODES,\n"
    "                      $SLUICE_CONFIG, $SLUICE_ADDR; else " CLIENT_DEFAULT_ADDR ")\n"
    "  -u, --user USER     authenticate as USER (default: $SLUICE_USER) with the\n"
    "                      password in $SLUICE_PASSWORD\n"
    "  --tls               connect with TLS 1.2+ (so does -s tls://host:port)\n"
    "  --ca FILE           CA bundle (PEM) to verify the server (default: the system's)\n"
    "  --cert FILE         client certificate (PEM), for servers that require one\n"
    "  --key FILE          its private key (default: read from the --cert file)\n"
    "  -h, --help          this text\n"
    "  --version           print the version\n"
    "\n"
    "Exit status: 0 ok, 1 error, 2 usage, 3 timed out (get, join).\n";

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        SLUICE_CONN_OPTIONS,
        { "help", no_argument, NULL, 'h' },
        { "version", no_argument, NULL, 'V' },
        { NULL, 0, NULL, 0 },
    };
    cli_t cli = { .addr = NULL, .user = getenv("SLUICE_USER") };
    int o;

    signal(SIGPIPE, SIG_IGN);  /* a closed socket or stdout is an error to report */
    if (cli.user && !*cli.user)
        cli.user = NULL;
    while ((o = sluice_getopt(&cli, argc, argv, "+h" SLUICE_CONN_SHORT, opts)) != -1) {
        switch (o) {
        case 'h': fputs(sluice_usage_text, stdout); return 0;
        case 'V': printf("sluice %s\n", SLUICE_VERSION); return 0;
        default:
            return sluice_bad_option();
        }
    }
    if (optind >= argc)
        return sluice_usage_err(&cli, "missing COMMAND");
    cli.cmd = argv[optind];
    argc -= optind;
    argv += optind;
    optind = 0;  /* GNU getopt: start over for the subcommand */
    if (strcmp(cli.cmd, "bench") == 0) {
        if (cli.tls)
            return sluice_usage_err(&cli, "bench does not speak TLS");
        bench_conn_t pre = { .server = cli.addr, .nodes = cli.nodes_opt, .config = cli.config };
        return bench_main(argc, argv, &pre);
    }
    /* each subcommand settles the node list itself, after its own options */
    int rc;
    if (strcmp(cli.cmd, "pub") == 0)
        rc = sluice_pub(&cli, argc, argv);
    else if (strcmp(cli.cmd, "sub") == 0)
        rc = sluice_sub(&cli, argc, argv);
    else if (strcmp(cli.cmd, "get") == 0)
        rc = sluice_get(&cli, argc, argv);
    else if (strcmp(cli.cmd, "join") == 0)
        rc = sluice_join(&cli, argc, argv);
    else if (strcmp(cli.cmd, "stats") == 0)
        rc = sluice_stats(&cli, argc, argv);
    else if (strcmp(cli.cmd, "topics") == 0)
        rc = sluice_simple(&cli, argc, argv, "TOPICS");
    else if (strcmp(cli.cmd, "top") == 0)
        rc = sluice_top(&cli, argc, argv);
    else if (strcmp(cli.cmd, "ping") == 0)
        rc = sluice_simple(&cli, argc, argv, "PING");
    else if (strcmp(cli.cmd, "place") == 0)
        rc = sluice_place(&cli, argc, argv);
    else if (strcmp(cli.cmd, "help") == 0) {
        fputs(sluice_usage_text, stdout);
        rc = 0;
    } else {
        const char *bad = cli.cmd;
        cli.cmd = NULL;
        rc = sluice_usage_err(&cli, "unknown command '%s'", bad);
    }
    client_nodes_free(&cli.nodes);
    return rc;
}
