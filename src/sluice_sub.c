/* sluice_sub.c: `sluice sub` and `sluice get`: print messages as they
 * arrive (or run --exec per message) and ACK in batches only after the
 * output is flushed; --count keeps the credit within what is still
 * wanted; get takes one message.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "sluice_cli.h"

#define SUB_ACK_IDS 100        /* ids per ACK line: stays far below max_line */
#define SUB_COUNT_CREDIT 64    /* credit with --count and no --credit */

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
    uint64_t batch[SUB_ACK_IDS];
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
    char line[SUB_ACK_IDS * 22 + 8];
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
    if (s->nbatch < SUB_ACK_IDS)
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
        SLUICE_CONN_OPTIONS,
        { NULL, 0, NULL, 0 },
    };
    int o;

    while ((o = sluice_getopt(cli, argc, argv, "n:c:e:t:0" SLUICE_CONN_SHORT, opts)) != -1) {
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

int sluice_sub(cli_t *cli, int argc, char **argv)
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
        s.credit = s.count < SUB_COUNT_CREDIT ? s.count : SUB_COUNT_CREDIT;
    if (s.count && s.credit > s.count)
        s.credit = s.count;
    if ((rc = sluice_resolve(cli)) != 0)
        return rc;
    sluice_catch_signals();
    int k = s.credit ? sluice_exchangef(cli, &s.c, s.topic, &r, -1, "SUB %s %llu\r\n", s.topic,
                                        (unsigned long long)s.credit)
                     : sluice_exchangef(cli, &s.c, s.topic, &r, -1, "SUB %s\r\n", s.topic);
    if (k < 0) {
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

int sluice_get(cli_t *cli, int argc, char **argv)
{
    sub_t s = { .cli = cli, .ack = true };
    proto_reply_t r;
    uint64_t timeout = 0;
    int rc = sub_parse_opts(cli, &s, argc, argv, true, &timeout);

    if (rc)
        return rc;
    if ((rc = sluice_resolve(cli)) != 0)
        return rc;
    rc = 1;
    if (sluice_exchangef(cli, &s.c, s.topic, &r, -1, "GET %s %llu\r\n", s.topic,
                         (unsigned long long)timeout) < 0)
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
