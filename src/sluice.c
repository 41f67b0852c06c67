/* sluice.c: the `sluice` command-line client: publish, consume, inspect and
 * benchmark a sluice broker from a shell. One function per subcommand; the
 * connection code is in client.c and the load generator in src/bench/.
 *
 * Exit status: 0 success, 1 failure (cannot connect, refused by the server,
 * I/O error), 2 usage error, 3 nothing arrived in time (GET/JOIN -TIMEOUT),
 * 128+N when stopped by signal N.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bench/bench.h"
#include "client.h"
#include "clock.h"
#include "proto.h"
#include "top.h"
#include "topview.h"
#include "version.h"

#define EXIT_USAGE 2
#define EXIT_TIMEOUT 3

#define SLUICE_WINDOW 64          /* PUBs in flight by default */
#define SLUICE_ACK_IDS 100        /* ids per ACK line: stays far below max_line */
#define SLUICE_QUICK_MS 10000     /* reply timeout for commands that never wait */
#define SLUICE_COUNT_CREDIT 64  /* credit with --count and no --credit */
#define SLUICE_OUT_HIGH (256 * 1024) /* queued output before we stop queueing */

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

/* Long-only options every subcommand takes, like -s and -u. */
enum { OPT_TLS = 0x100, OPT_CA, OPT_CERT, OPT_KEY };
#define SLUICE_TLS_OPTIONS                                                                    \
    { "tls", no_argument, NULL, OPT_TLS }, { "ca", required_argument, NULL, OPT_CA },         \
        { "cert", required_argument, NULL, OPT_CERT }, { "key", required_argument, NULL, OPT_KEY }

static volatile sig_atomic_t sluice_stop_sig;

static const char sluice_usage_text[] =
    "usage: sluice [-s ADDR] [-u USER] [--tls [--ca FILE] [--cert FILE [--key FILE]]]\n"
    "              COMMAND [ARGS...]\n"
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
    "      --yaml              always print the raw YAML\n"
    "  topics                  list topics, one per line\n"
    "  ping                    check the broker answers\n"
    "  top [-i SECS] [-o KEY] [--once]  live view of every topic (sluice top --help)\n"
    "  bench [OPTIONS]         load generator (sluice bench --help)\n"
    "\n"
    "Options:\n"
    "  -s, --server ADDR   host:port, [v6addr]:port or unix:/path\n"
    "                      (default: $SLUICE_ADDR, else " CLIENT_DEFAULT_ADDR ")\n"
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

/* ---- small helpers ---- */

static void sluice_err(const cli_t *cli, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sluice_err(const cli_t *cli, const char *fmt, ...)
{
    va_list ap;

    fprintf(stderr, "sluice: %s%s", cli->cmd ? cli->cmd : "", cli->cmd ? ": " : "");
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

static int sluice_usage_err(const cli_t *cli, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int sluice_usage_err(const cli_t *cli, const char *fmt, ...)
{
    va_list ap;

    fprintf(stderr, "sluice: %s%s", cli->cmd ? cli->cmd : "", cli->cmd ? ": " : "");
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\nTry 'sluice --help'.\n");
    return EXIT_USAGE;
}

/* getopt already said what was wrong with the option. */
static int sluice_bad_option(void)
{
    fprintf(stderr, "Try 'sluice --help'.\n");
    return EXIT_USAGE;
}

/* Strict decimal: digits only, no sign, no overflow past `max`. */
static bool sluice_num(const char *s, uint64_t max, uint64_t *out)
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
static void sluice_catch_signals(void)
{
    struct sigaction sa;

    memset(&sa, 0, sizeof sa);
    sa.sa_handler = sluice_on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
}

/* The connection options every subcommand takes, as the commands before
 * it do: -s, -u, --tls, --ca, --cert, --key (each of the last three
 * implies --tls). False if `o` is none of them. */
static bool sluice_conn_option(cli_t *cli, int o)
{
    switch (o) {
    case 's': cli->addr = optarg; return true;
    case 'u': cli->user = optarg; return true;
    case OPT_TLS: break;
    case OPT_CA: cli->tls_opt.ca = optarg; break;
    case OPT_CERT: cli->tls_opt.cert = optarg; break;
    case OPT_KEY: cli->tls_opt.key = optarg; break;
    default: return false;
    }
    cli->tls = true;
    return true;
}

/* Connect (with TLS if asked), and AUTH when a user is set. NULL after
 * printing why. */
static client_t *sluice_connect(const cli_t *cli)
{
    char err[CLIENT_ERR_MAX];
    bool tls = cli->tls || strncmp(cli->addr, "tls://", 6) == 0;
    const char *addr = strncmp(cli->addr, "tls://", 6) == 0 ? cli->addr + 6 : cli->addr;

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
static int sluice_reply(const cli_t *cli, client_t *c, proto_reply_t *r, int timeout_ms)
{
    int k = client_read(c, r, timeout_ms);

    if (k == 1)
        return 1;
    sluice_err(cli, "%s", c->err);
    return -1;
}

static void sluice_err_reply(const cli_t *cli, const proto_reply_t *r)
{
    char e[PROTO_ERR_MAX + 8];

    if (r->type != REPLY_ERROR) {
        sluice_err(cli, "unexpected reply from server");
        return;
    }
    client_reply_str(r, e, sizeof e);
    sluice_err(cli, "%s", e);
}

static bool sluice_is_timeout(const proto_reply_t *r)
{
    return r->type == REPLY_ERROR && r->code_len == 7 && memcmp(r->code, "TIMEOUT", 7) == 0;
}

/* Write a payload to stdout in the chosen framing. 0 or -1 (errno set). */
static int sluice_print(const char *p, size_t n, out_mode_t mode)
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
static int sluice_flush_stdout(const cli_t *cli)
{
    if (fflush(stdout) == 0)
        return 0;
    if (errno != EPIPE)  /* a reader that went away is not worth a message */
        sluice_err(cli, "stdout: %s", strerror(errno));
    return -1;
}

/* ---- pub ---- */

typedef enum pub_kind { PUB_ARGS, PUB_FILE, PUB_STDIN } pub_kind_t;

/* Where pub's messages come from. */
typedef struct pub_src {
    pub_kind_t kind;
    char **args;            /* PUB_ARGS */
    int nargs, next;
    char *data;             /* PUB_FILE: the whole file; PUB_STDIN: read buffer */
    size_t off, len, cap;
    bool done;              /* PUB_FILE: sent; PUB_STDIN: EOF seen */
    char delim;             /* PUB_STDIN: '\n' or '\0' */
} pub_src_t;

/* Next message: 1 with p/n set (valid until the next fill), 0 when stdin
 * must be read first, -1 when there are no more. */
static int pub_src_next(pub_src_t *s, const char **p, size_t *n)
{
    if (s->kind == PUB_ARGS) {
        if (s->next >= s->nargs)
            return -1;
        *p = s->args[s->next];
        *n = strlen(s->args[s->next++]);
        return 1;
    }
    if (s->kind == PUB_FILE) {
        if (s->done)
            return -1;
        s->done = true;
        *p = s->data;
        *n = s->len;
        return 1;
    }
    const char *d = s->len > s->off ? memchr(s->data + s->off, s->delim, s->len - s->off) : NULL;
    if (d) {
        *p = s->data + s->off;
        *n = (size_t)(d - *p);
        s->off += *n + 1;
        return 1;
    }
    if (!s->done)
        return 0;
    if (s->off == s->len)
        return -1;
    /* a last message without a final delimiter still counts */
    *p = s->data + s->off;
    *n = s->len - s->off;
    s->off = s->len;
    return 1;
}

/* Read once from stdin. 0 or -1 (errno set). */
static int pub_src_fill(pub_src_t *s)
{
    if (s->off > 0) {
        memmove(s->data, s->data + s->off, s->len - s->off);
        s->len -= s->off;
        s->off = 0;
    }
    if (s->cap - s->len < 65536) {
        size_t ncap = s->cap ? s->cap * 2 : 131072;
        char *nd = realloc(s->data, ncap);
        if (!nd)
            return -1;
        s->data = nd;
        s->cap = ncap;
    }
    ssize_t n;
    do {
        n = read(STDIN_FILENO, s->data + s->len, s->cap - s->len);
    } while (n < 0 && errno == EINTR);
    if (n < 0)
        return -1;
    if (n == 0)
        s->done = true;
    s->len += (size_t)n;
    return 0;
}

static int pub_read_file(const cli_t *cli, const char *path, pub_src_t *s)
{
    int fd = strcmp(path, "-") == 0 ? STDIN_FILENO : open(path, O_RDONLY | O_CLOEXEC);

    if (fd < 0) {
        sluice_err(cli, "%s: %s", path, strerror(errno));
        return -1;
    }
    for (;;) {
        if (s->cap - s->len < 65536) {
            size_t ncap = s->cap ? s->cap * 2 : 131072;
            char *nd = realloc(s->data, ncap);
            if (!nd) {
                sluice_err(cli, "%s: out of memory", path);
                break;
            }
            s->data = nd;
            s->cap = ncap;
        }
        ssize_t n = read(fd, s->data + s->len, s->cap - s->len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            sluice_err(cli, "%s: %s", path, strerror(errno));
            break;
        }
        if (n == 0) {
            if (fd != STDIN_FILENO)
                close(fd);
            return 0;
        }
        s->len += (size_t)n;
    }
    if (fd != STDIN_FILENO)
        close(fd);
    return -1;
}

/* State of one pub run. */
typedef struct pub {
    const cli_t *cli;
    client_t *c;
    const char *topic;
    uint64_t delay_ms;
    uint64_t window;
    bool verbose;
    bool progress;          /* stderr is a terminal */
    uint64_t inflight;      /* PUBs sent, reply not yet read */
    uint64_t sent, ok, refused;
    char first_err[PROTO_ERR_MAX + 8];
    double t0, shown;       /* start, last progress line */
    uint64_t ok_shown;      /* p->ok at the last progress line */
} pub_t;

static int pub_queue(pub_t *p, const char *msg, size_t n)
{
    char hdr[PROTO_TOPIC_MAX + 64];
    int h;

    if (p->delay_ms)
        h = snprintf(hdr, sizeof hdr, "PUB %s %zu delay=%llu\r\n", p->topic, n,
                     (unsigned long long)p->delay_ms);
    else
        h = snprintf(hdr, sizeof hdr, "PUB %s %zu\r\n", p->topic, n);
    if (client_put(p->c, hdr, (size_t)h) < 0 || client_put(p->c, msg, n) < 0 ||
        client_put(p->c, "\r\n", 2) < 0)
        return -1;
    p->inflight++;
    p->sent++;
    return 0;
}

/* Take every reply already read. 0, or -1 when the stream is broken. */
static int pub_replies(pub_t *p)
{
    proto_reply_t r;
    int k;

    while ((k = client_next(p->c, &r)) == 1) {
        if (r.type != REPLY_OK && r.type != REPLY_ERROR) {
            sluice_err(p->cli, "unexpected reply from server");
            return -1;
        }
        if (p->inflight == 0) {
            sluice_err(p->cli, "reply without a request");
            return -1;
        }
        p->inflight--;
        if (r.type == REPLY_OK) {
            p->ok++;
            if (p->verbose)
                printf("%.*s\n", (int)r.text_len, r.text);
            continue;
        }
        if (p->refused++ == 0)
            client_reply_str(&r, p->first_err, sizeof p->first_err);
    }
    if (k < 0)
        sluice_err(p->cli, "%s", p->c->err);
    return k;
}

/* "pub t: N messages, R msg/s" on a terminal, R over the last half second
 * (an average since the start would hide a producer that is blocked now). */
static void pub_progress(pub_t *p, bool final)
{
    double now = clock_s();

    if (!p->progress)
        return;
    if (final) {
        if (p->shown > 0)
            fputs("\r\033[K", stderr);
        return;
    }
    if (now - p->t0 < 1.0 || now - p->shown < 0.5)
        return;
    double since = p->shown > 0 ? p->shown : p->t0;
    fprintf(stderr, "\r\033[Kpub %s: %llu messages, %.0f msg/s", p->topic,
            (unsigned long long)p->ok, (double)(p->ok - p->ok_shown) / (now - since));
    p->shown = now;
    p->ok_shown = p->ok;
}

/* The pipelined publish loop: keep up to `window` PUBs unanswered, read
 * stdin only when it has something and the window has room. */
static int pub_run(pub_t *p, pub_src_t *s)
{
    bool input_left = true;

    for (;;) {
        while (input_left && p->refused == 0 && p->inflight < p->window &&
               client_unsent(p->c) < SLUICE_OUT_HIGH) {
            const char *m;
            size_t n;
            int k = pub_src_next(s, &m, &n);
            if (k < 0)
                input_left = false;
            if (k <= 0)
                break;
            if (pub_queue(p, m, n) < 0) {
                sluice_err(p->cli, "out of memory");
                return -1;
            }
        }
        if (p->refused)
            input_left = false;
        if (!input_left && p->inflight == 0)
            return 0;
        if (sluice_stop_sig)
            return -1;
        bool want_stdin = input_left && s->kind == PUB_STDIN && !s->done &&
                          p->inflight < p->window;
        bool ready = false;
        if (client_step(p->c, p->progress ? 250 : -1, want_stdin ? STDIN_FILENO : -1, &ready) < 0) {
            sluice_err(p->cli, "%s", p->c->err);
            return -1;
        }
        if (ready && pub_src_fill(s) < 0) {
            sluice_err(p->cli, "stdin: %s", strerror(errno));
            return -1;
        }
        if (pub_replies(p) < 0)
            return -1;
        pub_progress(p, false);
    }
}

static int sluice_pub(cli_t *cli, int argc, char **argv)
{
    static const struct option opts[] = {
        { "file", required_argument, NULL, 'f' },
        { "delay", required_argument, NULL, 'd' },
        { "window", required_argument, NULL, 'w' },
        { "verbose", no_argument, NULL, 'v' },
        { "server", required_argument, NULL, 's' },
        { "user", required_argument, NULL, 'u' },
        SLUICE_TLS_OPTIONS,
        { NULL, 0, NULL, 0 },
    };
    pub_t p = { .cli = cli, .window = SLUICE_WINDOW };
    pub_src_t s = { .kind = PUB_STDIN, .delim = '\n' };
    const char *file = NULL;
    int o;

    while ((o = getopt_long(argc, argv, "0f:d:w:vs:u:", opts, NULL)) != -1) {
        switch (o) {
        case '0': s.delim = '\0'; break;
        case 'f': file = optarg; break;
        case 'd':
            if (!sluice_num(optarg, UINT64_MAX, &p.delay_ms))
                return sluice_usage_err(cli, "bad --delay '%s'", optarg);
            break;
        case 'w':
            if (!sluice_num(optarg, 1000000, &p.window) || p.window == 0)
                return sluice_usage_err(cli, "bad --window '%s'", optarg);
            break;
        case 'v': p.verbose = true; break;
        default:
            if (sluice_conn_option(cli, o))
                break;
            return sluice_bad_option();
        }
    }
    if (optind >= argc)
        return sluice_usage_err(cli, "missing TOPIC");
    p.topic = argv[optind++];
    if (!proto_topic_valid(p.topic, strlen(p.topic)))
        return sluice_usage_err(cli, "bad topic name '%s'", p.topic);
    if (file && optind < argc)
        return sluice_usage_err(cli, "--file and MESSAGE arguments exclude each other");
    if (optind < argc) {
        s.kind = PUB_ARGS;
        s.args = argv + optind;
        s.nargs = argc - optind;
    } else if (file) {
        s.kind = PUB_FILE;
        if (pub_read_file(cli, file, &s) < 0) {
            free(s.data);
            return 1;
        }
    }
    p.c = sluice_connect(cli);
    if (!p.c) {
        free(s.data);
        return 1;
    }
    p.progress = isatty(STDERR_FILENO);
    p.t0 = clock_s();
    sluice_catch_signals();
    int rc = pub_run(&p, &s);
    pub_progress(&p, true);
    if (p.refused) {
        sluice_err(cli, "%s", p.first_err);
        if (p.refused > 1)
            sluice_err(cli, "%llu more messages refused", (unsigned long long)p.refused - 1);
    }
    client_free(p.c);
    free(s.data);
    if (fflush(stdout) != 0)
        rc = -1;
    if (sluice_stop_sig)
        return 128 + sluice_stop_sig;
    return rc < 0 || p.refused ? 1 : 0;
}

/* ---- sub and get ---- */

typedef struct sub {
    const cli_t *cli;
    client_t *c;
    const char *topic;
    uint64_t count;          /* 0 = no limit */
    uint64_t credit;         /* 0 = the server's prefetch */
    bool ack;
    const char *exec;
    uint64_t nack_delay;
    out_mode_t mode;
    uint64_t handled;        /* messages received and dealt with */
    uint64_t released;       /* ACKed or NACKed */
    uint64_t pending;        /* commands whose reply is not read yet */
    uint64_t batch[SLUICE_ACK_IDS];
    size_t nbatch;
} sub_t;

/* With --count N, never let the broker push more than N messages in all:
 * before releasing k more, cut the credit to what is still wanted
 * (pushed = released + in flight <= N). */
static int sub_limit_credit(sub_t *s, uint64_t k)
{
    if (!s->count)
        return 0;
    uint64_t want = s->count - (s->released + k);
    if (want >= s->credit)
        return 0;
    s->credit = want;
    s->pending++;
    if (want == 0)
        return client_printf(s->c, "UNSUB %s\r\n", s->topic);
    return client_printf(s->c, "SUB %s %llu\r\n", s->topic, (unsigned long long)want);
}

static int sub_ack_batch(sub_t *s)
{
    char line[SLUICE_ACK_IDS * 22 + 8];
    size_t n = 0;

    if (s->nbatch == 0)
        return 0;
    if (sub_limit_credit(s, s->nbatch) < 0)
        return -1;
    memcpy(line, "ACK", 3);
    n = 3;
    for (size_t i = 0; i < s->nbatch; i++) {
        line[n++] = ' ';
        n += proto_u64(line + n, s->batch[i]);
    }
    line[n++] = '\r';
    line[n++] = '\n';
    s->released += s->nbatch;
    s->nbatch = 0;
    s->pending++;
    return client_put(s->c, line, n);
}

static int sub_nack(sub_t *s, uint64_t id)
{
    if (sub_limit_credit(s, 1) < 0)
        return -1;
    s->released++;
    s->pending++;
    if (s->nack_delay)
        return client_printf(s->c, "NACK %llu %llu\r\n", (unsigned long long)id,
                             (unsigned long long)s->nack_delay);
    return client_printf(s->c, "NACK %llu\r\n", (unsigned long long)id);
}

/* Write the whole payload to the child's stdin; a child that does not read
 * it all is its own business (EPIPE is fine). */
static void sub_feed(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            return;
        p += w;
        n -= (size_t)w;
    }
}

/* Run --exec for one message; true if it exited 0. */
static bool sub_exec(sub_t *s, const proto_reply_t *r)
{
    int fds[2];
    char idbuf[PROTO_NUM_MAX + 1], attbuf[16], topic[PROTO_TOPIC_MAX + 1];

    fflush(stdout);
    if (pipe2(fds, O_CLOEXEC) < 0) {
        sluice_err(s->cli, "pipe: %s", strerror(errno));
        return false;
    }
    idbuf[proto_u64(idbuf, r->id)] = '\0';
    snprintf(attbuf, sizeof attbuf, "%u", (unsigned)r->attempt);
    snprintf(topic, sizeof topic, "%.*s", (int)r->topic_len, r->topic);
    pid_t pid = fork();
    if (pid < 0) {
        sluice_err(s->cli, "fork: %s", strerror(errno));
        close(fds[0]);
        close(fds[1]);
        return false;
    }
    if (pid == 0) {
        dup2(fds[0], STDIN_FILENO);
        signal(SIGPIPE, SIG_DFL);
        signal(SIGINT, SIG_DFL);
        signal(SIGTERM, SIG_DFL);
        setenv("SLUICE_TOPIC", topic, 1);
        setenv("SLUICE_ID", idbuf, 1);
        setenv("SLUICE_ATTEMPT", attbuf, 1);
        execl("/bin/sh", "sh", "-c", s->exec, (char *)NULL);
        _exit(127);
    }
    close(fds[0]);
    sub_feed(fds[1], r->body, r->body_len);
    close(fds[1]);
    int st;
    while (waitpid(pid, &st, 0) < 0) {
        if (errno != EINTR)
            return false;
    }
    return WIFEXITED(st) && WEXITSTATUS(st) == 0;
}

/* Deal with one pushed message. 0, or -1 to stop. */
static int sub_message(sub_t *s, const proto_reply_t *r)
{
    s->handled++;
    if (s->exec) {
        bool ok = sub_exec(s, r);
        if (!s->ack)
            return 0;
        int e;
        if (ok) {
            s->batch[s->nbatch++] = r->id;
            e = sub_ack_batch(s);
        } else {
            e = sub_nack(s, r->id);
        }
        /* now, not after the next command: its ack deadline is running */
        if (e == 0 && client_flush(s->c) < 0) {
            sluice_err(s->cli, "%s", s->c->err);
            return -1;
        }
        return e;
    }
    if (sluice_print(r->body, r->body_len, s->mode) < 0) {
        if (errno != EPIPE)
            sluice_err(s->cli, "stdout: %s", strerror(errno));
        return -1;
    }
    if (!s->ack)
        return 0;
    s->batch[s->nbatch++] = r->id;
    if (s->nbatch < SLUICE_ACK_IDS)
        return 0;
    if (sluice_flush_stdout(s->cli) < 0)
        return -1;
    return sub_ack_batch(s);
}

/* A reply to one of our ACK/NACK/SUB/UNSUB: an error is worth a warning
 * (e.g. the ack deadline passed and the message went elsewhere), not a stop. */
static void sub_command_reply(sub_t *s, const proto_reply_t *r)
{
    if (s->pending)
        s->pending--;
    if (r->type == REPLY_ERROR)
        sluice_err_reply(s->cli, r);
}

/* Release what was printed and wait (briefly) for the replies, so the
 * broker has applied our ACKs before the connection closes. */
static int sub_finish(sub_t *s)
{
    proto_reply_t r;

    if (s->ack && s->nbatch) {
        if (sluice_flush_stdout(s->cli) < 0)
            s->nbatch = 0;  /* not printed: let them be redelivered */
        else if (sub_ack_batch(s) < 0)
            return -1;
    }
    while (s->pending) {
        int k = client_read(s->c, &r, SLUICE_QUICK_MS);
        if (k != 1) {
            sluice_err(s->cli, "%s", s->c->err);
            return -1;
        }
        if (r.type != REPLY_MSG)
            sub_command_reply(s, &r);
        /* a push that raced our UNSUB goes back when we close */
    }
    return 0;
}

static int sub_loop(sub_t *s)
{
    proto_reply_t r;

    while (!sluice_stop_sig && (!s->count || s->handled < s->count)) {
        int k = client_next(s->c, &r);
        if (k < 0) {
            sluice_err(s->cli, "%s", s->c->err);
            return -1;
        }
        if (k == 1) {
            if (r.type == REPLY_MSG) {
                if (sub_message(s, &r) < 0)
                    return -1;
            } else {
                sub_command_reply(s, &r);
            }
            continue;
        }
        /* input drained: acknowledge what was printed in one command */
        if (s->nbatch && (sluice_flush_stdout(s->cli) < 0 || sub_ack_batch(s) < 0))
            return -1;
        if (client_step(s->c, 500, -1, NULL) < 0) {
            sluice_err(s->cli, "%s", s->c->err);
            return -1;
        }
    }
    return 0;
}

static int sub_parse_opts(cli_t *cli, sub_t *s, int argc, char **argv, bool is_get, uint64_t *timeout)
{
    static const struct option opts[] = {
        { "count", required_argument, NULL, 'n' },
        { "credit", required_argument, NULL, 'c' },
        { "no-ack", no_argument, NULL, 'A' },
        { "exec", required_argument, NULL, 'e' },
        { "nack-delay", required_argument, NULL, 'D' },
        { "raw", no_argument, NULL, 'R' },
        { "timeout", required_argument, NULL, 't' },
        { "server", required_argument, NULL, 's' },
        { "user", required_argument, NULL, 'u' },
        SLUICE_TLS_OPTIONS,
        { NULL, 0, NULL, 0 },
    };
    int o;

    while ((o = getopt_long(argc, argv, "n:c:e:t:0s:u:", opts, NULL)) != -1) {
        bool sub_only = o == 'n' || o == 'c' || o == 'e' || o == 'D';
        if ((is_get && sub_only) || (!is_get && o == 't'))
            return sluice_usage_err(cli, "option not valid here");
        switch (o) {
        case 'n':
            if (!sluice_num(optarg, UINT64_MAX, &s->count) || s->count == 0)
                return sluice_usage_err(cli, "bad --count '%s'", optarg);
            break;
        case 'c':
            if (!sluice_num(optarg, UINT32_MAX, &s->credit) || s->credit == 0)
                return sluice_usage_err(cli, "bad --credit '%s'", optarg);
            break;
        case 'A': s->ack = false; break;
        case 'e': s->exec = optarg; break;
        case 'D':
            if (!sluice_num(optarg, UINT64_MAX, &s->nack_delay))
                return sluice_usage_err(cli, "bad --nack-delay '%s'", optarg);
            break;
        case 'R': s->mode = OUT_RAW; break;
        case '0': s->mode = OUT_NUL; break;
        case 't':
            if (!sluice_num(optarg, UINT64_MAX, timeout))
                return sluice_usage_err(cli, "bad --timeout '%s'", optarg);
            break;
        default:
            if (sluice_conn_option(cli, o))
                break;
            return sluice_bad_option();
        }
    }
    if (optind >= argc)
        return sluice_usage_err(cli, "missing TOPIC");
    s->topic = argv[optind++];
    if (optind < argc)
        return sluice_usage_err(cli, "unexpected argument '%s'", argv[optind]);
    if (!proto_topic_valid(s->topic, strlen(s->topic)))
        return sluice_usage_err(cli, "bad topic name '%s'", s->topic);
    return 0;
}

static int sluice_sub(cli_t *cli, int argc, char **argv)
{
    sub_t s = { .cli = cli, .ack = true };
    proto_reply_t r;
    uint64_t unused = 0;
    int rc = sub_parse_opts(cli, &s, argc, argv, false, &unused);

    if (rc)
        return rc;
    if (!s.credit && s.exec)
        s.credit = 1;  /* one at a time: the rest stay available to others */
    if (s.count && !s.credit)
        s.credit = s.count < SLUICE_COUNT_CREDIT ? s.count : SLUICE_COUNT_CREDIT;
    if (s.count && s.credit > s.count)
        s.credit = s.count;
    s.c = sluice_connect(cli);
    if (!s.c)
        return 1;
    sluice_catch_signals();
    if (s.credit)
        client_printf(s.c, "SUB %s %llu\r\n", s.topic, (unsigned long long)s.credit);
    else
        client_printf(s.c, "SUB %s\r\n", s.topic);
    if (sluice_reply(cli, s.c, &r, -1) < 0) {
        client_free(s.c);
        return 1;
    }
    if (r.type != REPLY_OK) {
        sluice_err_reply(cli, &r);
        client_free(s.c);
        return 1;
    }
    if (!s.credit)
        s.credit = UINT32_MAX;  /* unknown: the server's prefetch */
    rc = sub_loop(&s) < 0 ? 1 : 0;
    if (sub_finish(&s) < 0)
        rc = 1;
    client_free(s.c);
    if (sluice_stop_sig)
        return 128 + sluice_stop_sig;
    return rc;
}

static int sluice_get(cli_t *cli, int argc, char **argv)
{
    sub_t s = { .cli = cli, .ack = true };
    proto_reply_t r;
    uint64_t timeout = 0;
    int rc = sub_parse_opts(cli, &s, argc, argv, true, &timeout);

    if (rc)
        return rc;
    s.c = sluice_connect(cli);
    if (!s.c)
        return 1;
    client_printf(s.c, "GET %s %llu\r\n", s.topic, (unsigned long long)timeout);
    rc = 1;
    if (sluice_reply(cli, s.c, &r, -1) < 0)
        goto out;
    if (sluice_is_timeout(&r)) {
        sluice_err(cli, "no message in %s", s.topic);
        rc = EXIT_TIMEOUT;
        goto out;
    }
    if (r.type != REPLY_MSG) {
        sluice_err_reply(cli, &r);
        goto out;
    }
    if (sluice_print(r.body, r.body_len, s.mode) < 0 || sluice_flush_stdout(cli) < 0)
        goto out;  /* unacked: it will be delivered again */
    if (s.ack) {
        s.batch[s.nbatch++] = r.id;
        if (sub_ack_batch(&s) < 0 || sluice_reply(cli, s.c, &r, SLUICE_QUICK_MS) < 0)
            goto out;
        if (r.type != REPLY_OK) {
            sluice_err_reply(cli, &r);
            goto out;
        }
    }
    rc = 0;
out:
    client_free(s.c);
    return rc;
}

/* ---- join, stats, topics, ping ---- */

static int sluice_join(cli_t *cli, int argc, char **argv)
{
    static const struct option opts[] = {
        { "timeout", required_argument, NULL, 't' },
        { "server", required_argument, NULL, 's' },
        { "user", required_argument, NULL, 'u' },
        SLUICE_TLS_OPTIONS,
        { NULL, 0, NULL, 0 },
    };
    uint64_t timeout = 0;
    bool has_timeout = false;
    int o;

    while ((o = getopt_long(argc, argv, "t:s:u:", opts, NULL)) != -1) {
        switch (o) {
        case 't':
            if (!sluice_num(optarg, UINT64_MAX, &timeout))
                return sluice_usage_err(cli, "bad --timeout '%s'", optarg);
            has_timeout = true;
            break;
        default:
            if (sluice_conn_option(cli, o))
                break;
            return sluice_bad_option();
        }
    }
    if (optind != argc - 1)
        return sluice_usage_err(cli, "expected exactly one TOPIC");
    const char *topic = argv[optind];
    if (!proto_topic_valid(topic, strlen(topic)))
        return sluice_usage_err(cli, "bad topic name '%s'", topic);
    client_t *c = sluice_connect(cli);
    if (!c)
        return 1;
    if (has_timeout)
        client_printf(c, "JOIN %s %llu\r\n", topic, (unsigned long long)timeout);
    else
        client_printf(c, "JOIN %s\r\n", topic);
    proto_reply_t r;
    int rc = 1;
    if (sluice_reply(cli, c, &r, -1) < 0)
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

/* Value of a top-level "key: value" line of a STATS body, or NULL. */
static const char *stats_value(const char *body, size_t len, const char *key, size_t *vlen)
{
    size_t kl = strlen(key);
    const char *p = body, *end = body + len;

    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *le = nl ? nl : end;
        if ((size_t)(le - p) > kl + 1 && memcmp(p, key, kl) == 0 && p[kl] == ':') {
            const char *v = p + kl + 1;
            while (v < le && *v == ' ')
                v++;
            *vlen = (size_t)(le - v);
            if (*vlen && le[-1] == '\r')
                (*vlen)--;
            return v;
        }
        p = le + 1;
    }
    return NULL;
}

/* Print a STATS body as aligned "key  value" rows; nested mappings become
 * dotted keys (redis.connected). */
static void stats_print_pairs(const char *body, size_t len)
{
    char parent[64] = "";
    const char *p = body, *end = body + len;
    tv_line_t rows[128];
    size_t nrows = 0;
    int width = 0;

    while (nrows < sizeof rows / sizeof rows[0] &&
           tv_line_next(&p, end, parent, sizeof parent, &rows[nrows])) {
        if (rows[nrows].vl == 0 && strchr(rows[nrows].key, '.') == NULL)
            continue;  /* a mapping's head ("redis:"): its keys follow, dotted */
        int n = (int)strlen(rows[nrows].key);
        if (n > width)
            width = n;
        nrows++;
    }
    for (size_t i = 0; i < nrows; i++)
        printf("%-*s  %.*s\n", width, rows[i].key, (int)rows[i].vl, rows[i].v);
}

typedef struct topic_row {
    char name[PROTO_TOPIC_MAX + 1];
    char *body;
    size_t len;
} topic_row_t;

static const char *const stats_cols[] = {
    "ready", "delayed", "in_flight", "bytes", "consumers", "published",
    "delivered", "acked", "redelivered", "dead", "dropped", "rejected",
};
#define STATS_NCOLS (sizeof stats_cols / sizeof stats_cols[0])

/* One row per topic, one column per counter, each as wide as it needs. */
static void stats_print_topics(topic_row_t *rows, size_t n)
{
    int w[STATS_NCOLS + 1];

    w[0] = 5;
    for (size_t c = 0; c < STATS_NCOLS; c++)
        w[c + 1] = (int)strlen(stats_cols[c]);
    for (size_t i = 0; i < n; i++) {
        if ((int)strlen(rows[i].name) > w[0])
            w[0] = (int)strlen(rows[i].name);
        for (size_t c = 0; c < STATS_NCOLS; c++) {
            size_t vl = 0;
            if (stats_value(rows[i].body, rows[i].len, stats_cols[c], &vl) && (int)vl > w[c + 1])
                w[c + 1] = (int)vl;
        }
    }
    printf("\n%-*s", w[0], "topic");
    for (size_t c = 0; c < STATS_NCOLS; c++)
        printf("  %*s", w[c + 1], stats_cols[c]);
    putchar('\n');
    for (size_t i = 0; i < n; i++) {
        printf("%-*s", w[0], rows[i].name);
        for (size_t c = 0; c < STATS_NCOLS; c++) {
            size_t vl = 0;
            const char *v = stats_value(rows[i].body, rows[i].len, stats_cols[c], &vl);
            printf("  %*.*s", w[c + 1], v ? (int)vl : 1, v ? v : "-");
        }
        putchar('\n');
    }
}

/* The topic overview under the server counters: ask STATS for every topic
 * in one pipeline. */
static int stats_topics_table(const cli_t *cli, client_t *c)
{
    proto_reply_t r;
    topic_row_t *rows = NULL;
    size_t n = 0;
    int rc = -1;

    client_printf(c, "TOPICS\r\n");
    if (sluice_reply(cli, c, &r, SLUICE_QUICK_MS) < 0)
        return -1;
    if (r.type != REPLY_TOPICS) {
        sluice_err_reply(cli, &r);
        return -1;
    }
    const char *p = r.body, *end = r.body + r.body_len;
    size_t lines = 0;
    for (const char *q = p; q < end; q++)
        lines += *q == '\n';
    rows = calloc(lines + 1, sizeof *rows);
    if (!rows)
        return -1;
    while (p < end && n <= lines) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *le = nl ? nl : end;
        if (le > p && (size_t)(le - p) <= PROTO_TOPIC_MAX) {
            memcpy(rows[n].name, p, (size_t)(le - p));
            n++;
        }
        p = le + 1;
    }
    for (size_t i = 0; i < n; i++)
        client_printf(c, "STATS %s\r\n", rows[i].name);
    for (size_t i = 0; i < n; i++) {
        if (sluice_reply(cli, c, &r, SLUICE_QUICK_MS) < 0)
            goto out;
        if (r.type != REPLY_STATS)
            continue;  /* the topic went away meanwhile */
        rows[i].body = malloc(r.body_len + 1);
        if (!rows[i].body)
            goto out;
        memcpy(rows[i].body, r.body, r.body_len);
        rows[i].len = r.body_len;
    }
    if (n)
        stats_print_topics(rows, n);
    rc = 0;
out:
    for (size_t i = 0; i < n; i++)
        free(rows[i].body);
    free(rows);
    return rc;
}

static int sluice_stats(cli_t *cli, int argc, char **argv)
{
    static const struct option opts[] = {
        { "yaml", no_argument, NULL, 'y' },
        { "server", required_argument, NULL, 's' },
        { "user", required_argument, NULL, 'u' },
        SLUICE_TLS_OPTIONS,
        { NULL, 0, NULL, 0 },
    };
    bool yaml = !isatty(STDOUT_FILENO);
    int o;

    while ((o = getopt_long(argc, argv, "ys:u:", opts, NULL)) != -1) {
        switch (o) {
        case 'y': yaml = true; break;
        default:
            if (sluice_conn_option(cli, o))
                break;
            return sluice_bad_option();
        }
    }
    if (argc - optind > 1)
        return sluice_usage_err(cli, "unexpected argument '%s'", argv[optind + 1]);
    const char *topic = optind < argc ? argv[optind] : NULL;
    if (topic && !proto_topic_valid(topic, strlen(topic)))
        return sluice_usage_err(cli, "bad topic name '%s'", topic);
    client_t *c = sluice_connect(cli);
    if (!c)
        return 1;
    if (topic)
        client_printf(c, "STATS %s\r\n", topic);
    else
        client_printf(c, "STATS\r\n");
    proto_reply_t r;
    int rc = 1;
    if (sluice_reply(cli, c, &r, SLUICE_QUICK_MS) < 0)
        goto out;
    if (r.type != REPLY_STATS) {
        sluice_err_reply(cli, &r);
        goto out;
    }
    rc = 0;
    if (yaml) {
        fwrite(r.body, 1, r.body_len, stdout);
        goto out;
    }
    stats_print_pairs(r.body, r.body_len);
    if (!topic && stats_topics_table(cli, c) < 0)
        rc = 1;
out:
    client_free(c);
    return rc;
}

/* top: its own options and the connection ones, then the same connect,
 * TLS and AUTH as every command; top.c runs the view. */
static int sluice_top(cli_t *cli, int argc, char **argv)
{
    enum { OPT_ONCE = 0x200 };
    static const struct option opts[] = {
        { "interval", required_argument, NULL, 'i' },
        { "sort", required_argument, NULL, 'o' },
        { "once", no_argument, NULL, OPT_ONCE },
        { "help", no_argument, NULL, 'h' },
        { "server", required_argument, NULL, 's' },
        { "user", required_argument, NULL, 'u' },
        SLUICE_TLS_OPTIONS,
        { NULL, 0, NULL, 0 },
    };
    top_opts_t t = TOP_OPTS_DEFAULT;
    int o;

    while ((o = getopt_long(argc, argv, "i:o:hs:u:", opts, NULL)) != -1) {
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
            if (sluice_conn_option(cli, o))
                break;
            return sluice_bad_option();
        }
    }
    if (optind < argc)
        return sluice_usage_err(cli, "unexpected argument '%s'", argv[optind]);
    if (!t.once && (!isatty(STDIN_FILENO) || !isatty(STDOUT_FILENO))) {
        sluice_err(cli, "needs a terminal (for scripts: sluice top --once)");
        return 1;
    }
    client_t *c = sluice_connect(cli);
    return c ? top_run(c, cli->addr, &t) : 1;
}

/* The commands with no arguments: TOPICS and PING. */
static int sluice_simple(cli_t *cli, int argc, char **argv, const char *line)
{
    static const struct option opts[] = {
        { "server", required_argument, NULL, 's' },
        { "user", required_argument, NULL, 'u' },
        SLUICE_TLS_OPTIONS,
        { NULL, 0, NULL, 0 },
    };
    int o;

    while ((o = getopt_long(argc, argv, "s:u:", opts, NULL)) != -1) {
        switch (o) {
        default:
            if (sluice_conn_option(cli, o))
                break;
            return sluice_bad_option();
        }
    }
    if (optind < argc)
        return sluice_usage_err(cli, "unexpected argument '%s'", argv[optind]);
    client_t *c = sluice_connect(cli);
    if (!c)
        return 1;
    client_printf(c, "%s\r\n", line);
    proto_reply_t r;
    int rc = 1;
    if (sluice_reply(cli, c, &r, SLUICE_QUICK_MS) < 0)
        goto out;
    if (r.type == REPLY_PONG) {
        puts("PONG");
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

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        { "server", required_argument, NULL, 's' },
        { "user", required_argument, NULL, 'u' },
        SLUICE_TLS_OPTIONS,
        { "help", no_argument, NULL, 'h' },
        { "version", no_argument, NULL, 'V' },
        { NULL, 0, NULL, 0 },
    };
    cli_t cli = { .addr = NULL, .user = getenv("SLUICE_USER") };
    int o;

    signal(SIGPIPE, SIG_IGN);  /* a closed socket or stdout is an error to report */
    if (cli.user && !*cli.user)
        cli.user = NULL;
    while ((o = getopt_long(argc, argv, "+s:u:h", opts, NULL)) != -1) {
        switch (o) {
        case 'h': fputs(sluice_usage_text, stdout); return 0;
        case 'V': printf("sluice %s\n", SLUICE_VERSION); return 0;
        default:
            if (sluice_conn_option(&cli, o))
                break;
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
        return bench_main(argc, argv, cli.addr);
    }
    if (!cli.addr)
        cli.addr = client_default_addr();
    if (strcmp(cli.cmd, "pub") == 0)
        return sluice_pub(&cli, argc, argv);
    if (strcmp(cli.cmd, "sub") == 0)
        return sluice_sub(&cli, argc, argv);
    if (strcmp(cli.cmd, "get") == 0)
        return sluice_get(&cli, argc, argv);
    if (strcmp(cli.cmd, "join") == 0)
        return sluice_join(&cli, argc, argv);
    if (strcmp(cli.cmd, "stats") == 0)
        return sluice_stats(&cli, argc, argv);
    if (strcmp(cli.cmd, "topics") == 0)
        return sluice_simple(&cli, argc, argv, "TOPICS");
    if (strcmp(cli.cmd, "top") == 0)
        return sluice_top(&cli, argc, argv);
    if (strcmp(cli.cmd, "ping") == 0)
        return sluice_simple(&cli, argc, argv, "PING");
    if (strcmp(cli.cmd, "help") == 0) {
        fputs(sluice_usage_text, stdout);
        return 0;
    }
    const char *bad = cli.cmd;
    cli.cmd = NULL;
    return sluice_usage_err(&cli, "unknown command '%s'", bad);
}
