/* bench_relay.c: the relay floor of `sluice bench`. `sluice bench
 * --relay-listen ADDR` runs, in its own process, a server that speaks just
 * enough of sluice's protocol to carry the bench's messages: a PUB's
 * payload is framed as a MSG push to the next subscribed connection (round
 * robin) and answered +OK, SUB and ACK are answered +OK, and that is all:
 * no queue, no ids kept, no credit, nothing acknowledged. `-T relay` drives
 * it with the sluice target's own producers and consumers, so the same run
 * measures the floor (parse a frame, copy it once, write it) beside the
 * broker, whose distance from it is the broker's own work.
 *
 * It runs until SIGINT or SIGTERM. One thread, epoll, level-triggered. Each connection has a flat input
 * buffer parsed in place by proto.c and a flat output buffer written once
 * per loop turn. Backpressure, so a slow reader cannot grow memory: while
 * the consumers' unwritten output passes RELAY_OUT_HIGH, producers are not
 * read; they are read again once it is under RELAY_OUT_LOW.
 */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "addr.h"
#include "bench_int.h"

#define RELAY_IN_INITIAL (256 * 1024)
#define RELAY_READ_MIN (64 * 1024)        /* read only into at least this much room */
#define RELAY_OUT_HIGH (4 * 1024 * 1024)  /* consumers' unwritten bytes: stop reading producers */
#define RELAY_OUT_LOW (1024 * 1024)       /* ... until under this */
#define RELAY_MAX_LINE 65536
#define RELAY_MAX_MESSAGE (64u << 20)     /* the bench's largest --size */
#define RELAY_EVENTS 64

typedef struct relay_conn {
    int fd;
    bool consumer;          /* it sent SUB: it gets the pushes */
    bool dirty;             /* output to write this turn */
    uint32_t events;        /* what epoll watches now */
    bench_buf_t in, out;
    proto_parser_t parser;
    struct relay_conn *next_dirty;
} relay_conn_t;

typedef struct relay {
    int ep, lfd;
    relay_conn_t **conns;   /* every connection, for pausing producers */
    size_t nconns, conns_cap;
    size_t rr;              /* round robin over consumers: where the next PUB goes */
    size_t out_bytes;       /* consumers' unwritten output */
    bool paused;            /* producers are not read */
    uint64_t next_id;
    relay_conn_t *dirty;
} relay_t;

static void relay_watch(relay_t *r, relay_conn_t *c, uint32_t events)
{
    if (c->events == events)
        return;
    struct epoll_event ev = { .events = events, .data.ptr = c };
    epoll_ctl(r->ep, EPOLL_CTL_MOD, c->fd, &ev);
    c->events = events;
}

/* What a connection should be watched for: reads unless it is a producer
 * while producers are paused; writes while its output waits. */
static uint32_t relay_want(const relay_t *r, const relay_conn_t *c)
{
    uint32_t ev = (r->paused && !c->consumer) ? 0 : EPOLLIN;
    return c->out.off < c->out.len ? ev | EPOLLOUT : ev;
}

static void relay_pause(relay_t *r, bool paused)
{
    if (r->paused == paused)
        return;
    r->paused = paused;
    for (size_t i = 0; i < r->nconns; i++)
        relay_watch(r, r->conns[i], relay_want(r, r->conns[i]));
}

static void relay_dirty(relay_t *r, relay_conn_t *c)
{
    if (c->dirty)
        return;
    c->dirty = true;
    c->next_dirty = r->dirty;
    r->dirty = c;
}

static void relay_close(relay_t *r, relay_conn_t *c)
{
    for (size_t i = 0; i < r->nconns; i++) {
        if (r->conns[i] == c) {
            r->conns[i] = r->conns[--r->nconns];
            break;
        }
    }
    for (relay_conn_t **d = &r->dirty; *d; d = &(*d)->next_dirty) {
        if (*d == c) {
            *d = c->next_dirty;
            break;
        }
    }
    if (c->consumer)
        r->out_bytes -= c->out.len - c->out.off;
    close(c->fd);
    bench_buf_free(&c->in);
    bench_buf_free(&c->out);
    free(c);
}

/* The next consumer, round robin; NULL when none is connected. */
static relay_conn_t *relay_pick(relay_t *r)
{
    for (size_t k = 0; k < r->nconns; k++) {
        relay_conn_t *c = r->conns[(r->rr + k) % r->nconns];
        if (c->consumer) {
            r->rr = (r->rr + k + 1) % r->nconns;
            return c;
        }
    }
    return NULL;
}

static int relay_reply(relay_t *r, relay_conn_t *c, const char *s, size_t n)
{
    relay_dirty(r, c);
    if (c->consumer)
        r->out_bytes += n;
    return bench_buf_put(&c->out, s, n, RELAY_IN_INITIAL);
}

/* PUB: frame the payload as a push to a consumer, then answer. */
static int relay_pub(relay_t *r, relay_conn_t *c, const proto_cmd_t *cmd)
{
    static const char none[] = "-ERR relay: no consumer\r\n";
    char hdr[PROTO_MSG_HDR_MAX];
    relay_conn_t *to = relay_pick(r);
    uint64_t id = ++r->next_id;

    if (!to)
        return relay_reply(r, c, none, sizeof none - 1);
    size_t h = proto_fmt_msg_header(hdr, cmd->topic, cmd->topic_len, id, 1,
                                    (uint32_t)cmd->payload_len);
    size_t n = h + cmd->payload_len + 2;
    if (bench_buf_room(&to->out, n, RELAY_IN_INITIAL) < 0)
        return -1;
    char *p = to->out.p + to->out.len;
    memcpy(p, hdr, h);
    memcpy(p + h, cmd->payload, cmd->payload_len);
    memcpy(p + h + cmd->payload_len, "\r\n", 2);
    to->out.len += n;
    r->out_bytes += n;
    relay_dirty(r, to);
    h = proto_fmt_ok_u64(hdr, id);
    return relay_reply(r, c, hdr, h);
}

static int relay_exec(relay_t *r, relay_conn_t *c, const proto_cmd_t *cmd)
{
    char buf[32];

    switch (cmd->type) {
    case CMD_PUB:
        return relay_pub(r, c, cmd);
    case CMD_SUB:
        c->consumer = true;
        return relay_reply(r, c, "+OK\r\n", 5);
    case CMD_ACK:
        return relay_reply(r, c, buf, proto_fmt_ok_u64(buf, cmd->nids));
    case CMD_PING:
        return relay_reply(r, c, "+PONG\r\n", 7);
    default:
        return relay_reply(r, c, "-ERR relay: not supported\r\n", 27);
    }
}

/* Read once, run every whole command. -1: close it. */
static int relay_read(relay_t *r, relay_conn_t *c)
{
    if (bench_buf_room(&c->in, RELAY_READ_MIN, RELAY_IN_INITIAL) < 0)
        return -1;
    ssize_t n = read(c->fd, c->in.p + c->in.len, c->in.cap - c->in.len);
    if (n == 0)
        return -1;
    if (n < 0)
        return errno == EAGAIN || errno == EINTR ? 0 : -1;
    c->in.len += (size_t)n;
    while (c->in.off < c->in.len) {
        proto_cmd_t cmd;
        char err[PROTO_ERR_MAX];
        size_t used = 0;
        proto_result_t pr = proto_parse(&c->parser, c->in.p + c->in.off, c->in.len - c->in.off,
                                        &cmd, &used, err);
        if (pr == PROTO_CMD && relay_exec(r, c, &cmd) < 0)
            return -1;
        if (pr == PROTO_ERROR || pr == PROTO_FATAL)
            relay_reply(r, c, err, strlen(err));
        if (pr == PROTO_FATAL)
            return -1;
        c->in.off += used;
        if (pr == PROTO_NEED_MORE)
            break;
    }
    if (r->out_bytes > RELAY_OUT_HIGH)
        relay_pause(r, true);
    return 0;
}

/* Write what c owes. -1: close it. */
static int relay_write(relay_t *r, relay_conn_t *c)
{
    ssize_t n = bench_buf_write(&c->out, c->fd);

    if (n < 0)
        return -1;
    if (c->consumer)
        r->out_bytes -= (size_t)n;
    relay_watch(r, c, relay_want(r, c));
    return 0;
}

static void relay_accept(relay_t *r)
{
    for (;;) {
        int fd = accept4(r->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0)
            return;
        relay_conn_t *c = calloc(1, sizeof *c);
        if (!c) {
            close(fd);
            continue;
        }
        if (r->nconns == r->conns_cap) {
            size_t cap = r->conns_cap ? r->conns_cap * 2 : 16;
            relay_conn_t **v = realloc(r->conns, cap * sizeof *v);
            if (!v) {
                free(c);
                close(fd);
                continue;
            }
            r->conns = v;
            r->conns_cap = cap;
        }
        c->fd = fd;
        /* As sluiced does: the floor is measured on the same transport. */
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &(int){1}, sizeof(int));
        proto_parser_init(&c->parser, RELAY_MAX_LINE, RELAY_MAX_MESSAGE);
        c->events = r->paused ? 0 : EPOLLIN;
        struct epoll_event ev = { .events = c->events, .data.ptr = c };
        if (epoll_ctl(r->ep, EPOLL_CTL_ADD, fd, &ev) != 0) {
            free(c);
            close(fd);
            continue;
        }
        r->conns[r->nconns++] = c;
    }
}

/* Bind and listen on addr; the bound address is printed on stdout. */
static int relay_listen(const char *s)
{
    addr_t a;
    struct sockaddr_storage ss;
    socklen_t len;
    const char *why = addr_parse(s, ADDR_UNIX | ADDR_PORT0, &a);

    if (why) {
        fprintf(stderr, "sluice: bench: bad address '%s': %s\n", s, why);
        return -1;
    }
    if (addr_sockaddr(&a, &ss, &len) < 0) {
        fprintf(stderr, "sluice: bench: '%s': a numeric host is needed\n", s);
        return -1;
    }
    int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    if (fd < 0)
        return -1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (a.kind == ADDR_KIND_UNIX)
        unlink(a.path);
    if (bind(fd, (struct sockaddr *)&ss, len) != 0 || listen(fd, 128) != 0) {
        fprintf(stderr, "sluice: bench: cannot listen on %s: %s\n", s, strerror(errno));
        close(fd);
        return -1;
    }
    if (a.kind == ADDR_KIND_UNIX) {
        printf("relay listening on unix:%s\n", a.path);
    } else {
        len = sizeof ss;
        getsockname(fd, (struct sockaddr *)&ss, &len);
        uint16_t port = ss.ss_family == AF_INET ? ((struct sockaddr_in *)&ss)->sin_port
                                                : ((struct sockaddr_in6 *)&ss)->sin6_port;
        printf("relay listening on %s%s%s:%u\n", ss.ss_family == AF_INET6 ? "[" : "", a.host,
               ss.ss_family == AF_INET6 ? "]" : "", (unsigned)ntohs(port));
    }
    fflush(stdout);
    return fd;
}

static void relay_turn(relay_t *r, struct epoll_event *evs, int n)
{
    for (int i = 0; i < n; i++) {
        relay_conn_t *c = evs[i].data.ptr;
        if (c == NULL) {
            relay_accept(r);
            continue;
        }
        /* epoll reports each connection at most once a turn */
        if ((evs[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) && relay_read(r, c) < 0) {
            relay_close(r, c);
            continue;
        }
        if (evs[i].events & EPOLLOUT)
            relay_dirty(r, c);
    }
    while (r->dirty) {
        relay_conn_t *c = r->dirty;
        r->dirty = c->next_dirty;
        c->dirty = false;
        if (relay_write(r, c) < 0)
            relay_close(r, c);
    }
    if (r->paused && r->out_bytes < RELAY_OUT_LOW)
        relay_pause(r, false);
}

static volatile sig_atomic_t relay_stop;

static void relay_on_signal(int sig)
{
    (void)sig;
    relay_stop = 1;
}

int bench_relay_main(const char *addr)
{
    relay_t r = { .ep = -1 };
    struct epoll_event evs[RELAY_EVENTS];
    struct sigaction sa = { .sa_handler = relay_on_signal };

    signal(SIGPIPE, SIG_IGN);
    /* SIGINT too, even where the shell that started it ignores it. */
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    r.lfd = relay_listen(addr);
    if (r.lfd < 0)
        return 1;
    r.ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event lev = { .events = EPOLLIN, .data.ptr = NULL };
    if (r.ep < 0 || epoll_ctl(r.ep, EPOLL_CTL_ADD, r.lfd, &lev) != 0) {
        fprintf(stderr, "sluice: bench: epoll: %s\n", strerror(errno));
        return 1;
    }
    /* Until SIGINT or SIGTERM: a process for a benchmark script to start
     * and stop. Exiting (not dying of the signal) lets a profiler that
     * runs it write its report. */
    while (!relay_stop) {
        int n = epoll_wait(r.ep, evs, RELAY_EVENTS, -1);
        if (n < 0 && errno != EINTR)
            return 1;
        if (n > 0)
            relay_turn(&r, evs, n);
    }
    return 0;
}
