/* bench_opts.c: the command line of `sluice bench`: its usage text, the
 * list of targets --target picks from, and the option parser with its
 * bounds.
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_int.h"

/* Every protocol the bench speaks; a new target adds its line here. */
static const bench_target_t *const bench_targets[] = { &bsl_target, &brd_target, &brl_target,
                                                        &bbs_target, &bsl_relay_target };

static const char bench_usage_text[] =
    "usage: sluice bench [OPTIONS]\n"
    "  -T, --target NAME      sluice | redis-streams | redis-lists | beanstalkd | relay\n"
    "                         (sluice; redis-lists: LPUSH and BLMPOP, no acks)\n"
    "  -s, --server ADDR      host:port or unix:/path (sluice: $SLUICE_ADDR or\n"
    "                         127.0.0.1:7700; redis 127.0.0.1:6379; beanstalkd 127.0.0.1:11300;\n"
    "                         relay 127.0.0.1:7709)\n"
    "      --nodes LIST       sluice: host:port,host:port,... each topic on its owner\n"
    "                         (default: as every command, sluice --help)\n"
    "      --config FILE      sluice: a client config file with the node list\n"
    "  -p, --producers N      producer threads, one connection each (1)\n"
    "  -c, --consumers N      consumer threads, one connection each (1)\n"
    "  -n, --messages N       messages in all (100000)\n"
    "  -d, --duration S       publish for S seconds instead of --messages\n"
    "  -S, --size BYTES       payload size, at least 24 (64)\n"
    "  -w, --window N         unanswered publishes in flight per producer (64)\n"
    "  -C, --credit N         messages in flight per consumer: SUB credit, XREADGROUP\n"
    "                         COUNT, beanstalkd reserves in flight (256)\n"
    "  -a, --ack-batch N      ids per ACK / XACK; beanstalkd deletes per write (64)\n"
    "  -t, --topic NAME       topic, stream key or tube (bench)\n"
    "      --topics N         sluice: N topics NAME.0 .. NAME.N-1; producer and consumer k\n"
    "                         on topic k %% N, each on that topic's node (needs N consumers)\n"
    "      --drain-timeout MS after the producers finish, how long to wait for\n"
    "                         missing messages before calling them lost (5000)\n"
    "      --sched POLICY     batch: worker threads run as SCHED_BATCH, so they do not\n"
    "                         preempt the server they measure; other: leave them be (batch)\n"
    "  -j, --json             print one JSON object instead of the report\n"
    "      --relay-listen ADDR  run no bench: serve the relay floor that -T relay\n"
    "                         measures (PUB in, MSG out, nothing kept) until SIGTERM\n"
    "      --crowd-idle N     run no bench: hold N idle connections (one PING each) on\n"
    "                         -s, beside a bench run elsewhere; say ready, run until SIGTERM\n"
    "      --crowd-producers N  run no bench (or with --crowd-idle): N producers that\n"
    "                         publish --crowd-rate msg/s each of --size bytes, spread\n"
    "                         evenly, to crowd.0 .. crowd.7, and 8 consumers that ACK them\n"
    "      --crowd-rate R     messages a second per crowd producer (1)\n"
    "  -h, --help             this text\n"
    "Exit status: 0 when every message arrived once and intact; 1 otherwise.\n";

static bool bench_num(const char *s, uint64_t lo, uint64_t hi, uint64_t *out)
{
    char *end;

    if (!s[0] || s[0] < '0' || s[0] > '9')
        return false;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || *end || v < lo || v > hi)
        return false;
    *out = v;
    return true;
}

static const bench_target_t *bench_target_find(const char *name)
{
    for (size_t i = 0; i < sizeof bench_targets / sizeof bench_targets[0]; i++) {
        const bench_target_t *t = bench_targets[i];
        if (strcmp(name, t->name) == 0 || (t->alias && strcmp(name, t->alias) == 0))
            return t;
    }
    return NULL;
}

static int bench_bad(const char *what, const char *arg)
{
    fprintf(stderr, "sluice: bench: bad %s '%s'\nTry 'sluice bench --help'.\n", what, arg);
    return 2;
}

int bench_opts_parse(int argc, char **argv, bench_opts_t *o)
{
    enum { OPT_NODES = 0x100, OPT_CONFIG, OPT_TOPICS, OPT_CROWD_IDLE, OPT_CROWD_PRODUCERS,
           OPT_CROWD_RATE };
    static const struct option opts[] = {
        { "target", required_argument, NULL, 'T' },
        { "server", required_argument, NULL, 's' },
        { "producers", required_argument, NULL, 'p' },
        { "consumers", required_argument, NULL, 'c' },
        { "messages", required_argument, NULL, 'n' },
        { "duration", required_argument, NULL, 'd' },
        { "size", required_argument, NULL, 'S' },
        { "window", required_argument, NULL, 'w' },
        { "credit", required_argument, NULL, 'C' },
        { "ack-batch", required_argument, NULL, 'a' },
        { "topic", required_argument, NULL, 't' },
        { "drain-timeout", required_argument, NULL, 'D' },
        { "sched", required_argument, NULL, 'P' },
        { "json", no_argument, NULL, 'j' },
        { "relay-listen", required_argument, NULL, 'R' },
        { "nodes", required_argument, NULL, OPT_NODES },
        { "config", required_argument, NULL, OPT_CONFIG },
        { "topics", required_argument, NULL, OPT_TOPICS },
        { "crowd-idle", required_argument, NULL, OPT_CROWD_IDLE },
        { "crowd-producers", required_argument, NULL, OPT_CROWD_PRODUCERS },
        { "crowd-rate", required_argument, NULL, OPT_CROWD_RATE },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    uint64_t v;
    int ch;

    while ((ch = getopt_long(argc, argv, "T:s:p:c:n:d:S:w:C:a:t:jh", opts, NULL)) != -1) {
        switch (ch) {
        case 'T':
            if (!(o->target = bench_target_find(optarg)))
                return bench_bad("--target", optarg);
            break;
        case 's': o->addr = optarg; break;
        case 'p':
            if (!bench_num(optarg, 1, 1024, &v))
                return bench_bad("--producers", optarg);
            o->producers = (unsigned)v;
            break;
        case 'c':
            if (!bench_num(optarg, 1, 1024, &v))
                return bench_bad("--consumers", optarg);
            o->consumers = (unsigned)v;
            break;
        case 'n':
            if (!bench_num(optarg, 1, (uint64_t)1 << 40, &o->messages))
                return bench_bad("--messages", optarg);
            break;
        case 'd': {
            char *end;
            o->duration = strtod(optarg, &end);
            if (*end || !(o->duration > 0) || o->duration > 86400)
                return bench_bad("--duration", optarg);
            break;
        }
        case 'S':
            if (!bench_num(optarg, BENCH_HDR_SIZE, 64u << 20, &v))
                return bench_bad("--size (24 bytes to 64 MiB)", optarg);
            o->size = (size_t)v;
            break;
        case 'w':
            if (!bench_num(optarg, 1, 1000000, &v))
                return bench_bad("--window", optarg);
            o->window = (unsigned)v;
            break;
        case 'C':
            if (!bench_num(optarg, 1, 1000000, &v))
                return bench_bad("--credit", optarg);
            o->credit = (unsigned)v;
            break;
        case 'a':
            if (!bench_num(optarg, 1, 1000000, &v))
                return bench_bad("--ack-batch", optarg);
            o->ack_batch = (unsigned)v;
            break;
        case 't':
            if (!proto_topic_valid(optarg, strlen(optarg)) || strlen(optarg) > 200)
                return bench_bad("--topic", optarg);
            o->topic = optarg;
            break;
        case 'D':
            if (!bench_num(optarg, 0, 3600000, &v))
                return bench_bad("--drain-timeout", optarg);
            o->drain_ms = (unsigned)v;
            break;
        case 'P':
            if (strcmp(optarg, "batch") != 0 && strcmp(optarg, "other") != 0)
                return bench_bad("--sched", optarg);
            o->sched_other = strcmp(optarg, "other") == 0;
            break;
        case 'j': o->json = true; break;
        case 'R': o->relay_listen = optarg; break;
        case OPT_NODES: o->nodes_opt = optarg; break;
        case OPT_CONFIG: o->config = optarg; break;
        case OPT_TOPICS:
            if (!bench_num(optarg, 1, 1024, &v))
                return bench_bad("--topics", optarg);
            o->topics = (unsigned)v;
            break;
        case OPT_CROWD_IDLE:
            if (!bench_num(optarg, 1, BENCH_CROWD_MAX, &v))
                return bench_bad("--crowd-idle", optarg);
            o->crowd_idle = (unsigned)v;
            break;
        case OPT_CROWD_PRODUCERS:
            if (!bench_num(optarg, 1, BENCH_CROWD_MAX, &v))
                return bench_bad("--crowd-producers", optarg);
            o->crowd_producers = (unsigned)v;
            break;
        case OPT_CROWD_RATE: {
            char *end;
            o->crowd_rate = strtod(optarg, &end);
            if (*end || !(o->crowd_rate > 0) || o->crowd_rate > 1e6)
                return bench_bad("--crowd-rate", optarg);
            break;
        }
        case 'h': fputs(bench_usage_text, stdout); return -1;
        default:
            fprintf(stderr, "Try 'sluice bench --help'.\n");
            return 2;
        }
    }
    if (optind < argc)
        return bench_bad("argument", argv[optind]);
    if (o->crowd_rate && !o->crowd_producers)
        return bench_bad("--crowd-rate (it needs --crowd-producers)", "");
    if (!o->crowd_rate)
        o->crowd_rate = 1;
    if (o->relay_listen && (o->crowd_idle || o->crowd_producers))
        return bench_bad("--relay-listen (not with a crowd)", o->relay_listen);
    if (!o->duration && o->messages / o->producers >= UINT32_MAX)
        return bench_bad("--messages (at most 2^32-1 per producer)", "");
    return 0;
}
