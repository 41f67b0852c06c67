/* sluice_pub.c: `sluice pub`: publish the arguments, a whole file, or one
 * message per line (or NUL-ended record) of stdin, keeping a window of
 * PUBs unanswered; a progress line on a terminal.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "clock.h"
#include "sluice_cli.h"

#define PUB_WINDOW 64          /* PUBs in flight by default */
#define PUB_OUT_HIGH (256 * 1024) /* queued output before we stop queueing */

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

/* Queue one PUB of msg[0..n) on c, uncounted. 0, or -1 out of memory. */
static int pub_put(const pub_t *p, client_t *c, const char *msg, size_t n)
{
    char hdr[PROTO_TOPIC_MAX + 64];
    int h;

    if (p->delay_ms)
        h = snprintf(hdr, sizeof hdr, "PUB %s %zu delay=%llu\r\n", p->topic, n,
                     (unsigned long long)p->delay_ms);
    else
        h = snprintf(hdr, sizeof hdr, "PUB %s %zu\r\n", p->topic, n);
    if (client_put(c, hdr, (size_t)h) < 0 || client_put(c, msg, n) < 0 ||
        client_put(c, "\r\n", 2) < 0)
        return -1;
    return 0;
}

static int pub_queue(pub_t *p, const char *msg, size_t n)
{
    if (pub_put(p, p->c, msg, n) < 0)
        return -1;
    p->inflight++;
    p->sent++;
    return 0;
}

/* The first message, for sluice_exchange (which may send it more than once). */
typedef struct pub_first {
    const pub_t *p;
    const char *msg;
    size_t n;
} pub_first_t;

static int pub_put_first(client_t *c, void *arg)
{
    const pub_first_t *f = arg;
    return pub_put(f->p, c, f->msg, f->n);
}

/* Account for one PUB's reply. */
static void pub_answered(pub_t *p, const proto_reply_t *r)
{
    if (r->type == REPLY_OK) {
        p->ok++;
        if (p->verbose)
            printf("%.*s\n", (int)r->text_len, r->text);
        return;
    }
    if (p->refused++ == 0)
        client_reply_str(r, p->first_err, sizeof p->first_err);
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
        pub_answered(p, &r);
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

/* The first message goes alone and waits for its reply: a broker that
 * does not own the topic answers -MOVED, and the message is sent again to
 * the owner before a window of others follows it there. 1 when it went
 * (accepted or refused), 0 when there is no message at all, -1 on error. */
static int pub_first(pub_t *p, pub_src_t *s)
{
    pub_first_t f = { .p = p };
    proto_reply_t r;
    int k;

    while ((k = pub_src_next(s, &f.msg, &f.n)) == 0) {
        bool ready = false;
        if (sluice_stop_sig)
            return -1;
        if (client_step(p->c, -1, STDIN_FILENO, &ready) < 0) {
            sluice_err(p->cli, "%s", p->c->err);
            return -1;
        }
        if (ready && pub_src_fill(s) < 0) {
            sluice_err(p->cli, "stdin: %s", strerror(errno));
            return -1;
        }
    }
    if (k < 0)
        return 0;
    if (sluice_exchange(p->cli, &p->c, p->topic, pub_put_first, &f, &r, -1) < 0)
        return -1;
    p->sent++;
    pub_answered(p, &r);
    return 1;
}

/* The pipelined publish loop: keep up to `window` PUBs unanswered, read
 * stdin only when it has something and the window has room. */
static int pub_run(pub_t *p, pub_src_t *s)
{
    int first = pub_first(p, s);
    bool input_left = first > 0;

    if (first < 0)
        return -1;

    for (;;) {
        while (input_left && p->refused == 0 && p->inflight < p->window &&
               client_unsent(p->c) < PUB_OUT_HIGH) {
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

int sluice_pub(cli_t *cli, int argc, char **argv)
{
    static const struct option opts[] = {
        { "file", required_argument, NULL, 'f' },
        { "delay", required_argument, NULL, 'd' },
        { "window", required_argument, NULL, 'w' },
        { "verbose", no_argument, NULL, 'v' },
        SLUICE_CONN_OPTIONS,
        { NULL, 0, NULL, 0 },
    };
    pub_t p = { .cli = cli, .window = PUB_WINDOW };
    pub_src_t s = { .kind = PUB_STDIN, .delim = '\n' };
    const char *file = NULL;
    int o;

    while ((o = sluice_getopt(cli, argc, argv, "0f:d:w:v" SLUICE_CONN_SHORT, opts)) != -1) {
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
    int rc = sluice_resolve(cli);
    if (rc != 0) {
        free(s.data);
        return rc;
    }
    /* at once, so a broker that is down is said before stdin is read */
    p.c = sluice_connect(cli, sluice_owner(cli, p.topic));
    if (!p.c) {
        free(s.data);
        return 1;
    }
    p.progress = isatty(STDERR_FILENO);
    p.t0 = clock_s();
    sluice_catch_signals();
    rc = pub_run(&p, &s);
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
