/* bench_crowd.c: the crowd of `sluice bench --crowd-idle N --crowd-producers
 * M --crowd-rate R`: the other connections beside a measured run
 * (tests/bench/conns.sh, #15), cheap enough that the crowd does not take
 * the CPU the run and the broker need.
 *
 * N idle connections each send one PING, read its +PONG and then nothing.
 * M producers (each answered a PING first, so `ready` means the daemon
 * took them) each publish R messages a second of --size bytes, producer k
 * to crowd.(k % 8); eight consumers, consumer k on `SUB crowd.k 256`, ACK
 * every message they get (one ACK an id), so the topics stay near empty.
 * The producers' sends are spread evenly in time: the n-th send of the
 * whole crowd is due n / (M * R) seconds after `ready`, to producer n % M,
 * so no producer bursts and none drifts behind its rate. What costs the
 * crowd its CPU is a syscall a message on each side, so a producer reads
 * its replies only on its own turns, about once a second.
 *
 * One thread, one libevent loop; non-blocking connects, a bounded number
 * at a time, each retried for 5 s as the daemon may still be starting.
 * `ready` goes to stdout once every connection is answered; at SIGTERM (or
 * SIGINT) one line of counts follows and it exits 0, or 1 if a connection
 * failed or the server refused something.
 */
#include <errno.h>
#include <event2/event.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "addr.h"
#include "bench_int.h"
#include "clock.h"

#define CROWD_TOPICS 8          /* crowd.0 .. crowd.7, a consumer each */
#define CROWD_CREDIT 256
#define CROWD_OPENING 256       /* connections being opened at once */
#define CROWD_TRIES 50          /* connect attempts, ... */
#define CROWD_RETRY_MS 100      /* ... this far apart */
#define CROWD_UNANSWERED 8      /* a producer this many PUBs behind its reads skips its turn */
#define CROWD_TICK_NS 1000000   /* the schedule wakes at most once a millisecond */
#define CROWD_READ_MIN 4096     /* read only into at least this much room */
#define CROWD_BUF_FIRST 256     /* a buffer's first allocation */
#define CROWD_FD_SPARE 32       /* descriptors beside the connections */

typedef enum crowd_kind { CROWD_IDLE, CROWD_PRODUCER, CROWD_CONSUMER } crowd_kind_t;

typedef struct crowd crowd_t;

typedef struct crowd_conn {
    crowd_t *cr;
    struct event *ev;
    int fd;
    crowd_kind_t kind;
    unsigned idx;           /* producer or consumer k */
    unsigned tries;         /* connect attempts so far */
    bool connecting;        /* the connect is in progress */
    bool up;                /* its first command was answered */
    bool quiet;             /* a producer that is up: read on its turns, not watched */
    short watching;         /* what its event waits for: EV_READ, EV_WRITE */
    unsigned turns;         /* a producer's turns so far */
    unsigned unanswered;    /* a producer's PUBs without a reply */
    bench_buf_t in, out;
} crowd_conn_t;

typedef struct crowd_counts {
    uint64_t sent, confirmed, refused, skipped;   /* producers */
    uint64_t received, acked, errors;             /* consumers */
} crowd_counts_t;

struct crowd {
    const bench_opts_t *o;
    const char *addr;
    struct event_base *base;
    struct event *tick, *sigterm, *sigint;
    struct sockaddr_storage ss;
    socklen_t sslen;
    crowd_conn_t *conns;    /* consumers, then producers, then the idle ones */
    size_t n, nopened, nopening, nup;
    crowd_conn_t *prod;     /* the producers: conns + nconsumers */
    unsigned nprod;
    char *payload;          /* --size bytes of 'x' */
    char pub[CROWD_TOPICS][PROTO_TOPIC_MAX + 32];  /* "PUB crowd.k SIZE\r\n" */
    size_t pub_len[CROWD_TOPICS];
    uint64_t t0;            /* when `ready` was said */
    uint64_t next;          /* the crowd's next send, counted from t0 */
    double step_ns;         /* 1e9 / (M * R) */
    unsigned read_every;    /* a producer reads its replies every this many turns */
    int status;             /* 1 once something failed */
    crowd_counts_t c;
};

/* Something went wrong: say it, and end the run with status 1. */
static void crowd_fail(crowd_t *cr, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void crowd_fail(crowd_t *cr, const char *fmt, ...)
{
    va_list ap;

    if (cr->status == 0) {
        fputs("sluice: bench: crowd: ", stderr);
        va_start(ap, fmt);
        vfprintf(stderr, fmt, ap);
        va_end(ap);
        fputc('\n', stderr);
    }
    cr->status = 1;
    event_base_loopbreak(cr->base);
}

static int crowd_put(crowd_conn_t *c, const void *p, size_t n)
{
    return bench_buf_put(&c->out, p, n, CROWD_BUF_FIRST);
}

static void crowd_on_event(evutil_socket_t fd, short what, void *arg);

static void crowd_watch(crowd_conn_t *c, short what)
{
    if (what == c->watching)
        return;
    event_del(c->ev);
    c->watching = what;
    if (!what)
        return;
    event_assign(c->ev, c->cr->base, c->fd, what | EV_PERSIST, crowd_on_event, c);
    event_add(c->ev, NULL);
}

/* Watch c for reads (unless it is quiet), and for writes while output
 * waits. */
static void crowd_rewatch(crowd_conn_t *c)
{
    short what = c->quiet ? 0 : EV_READ;
    crowd_watch(c, c->out.len > c->out.off ? what | EV_WRITE : what);
}

/* Write what c owes; -1 when the connection is broken. */
static int crowd_flush(crowd_conn_t *c)
{
    if (bench_buf_write(&c->out, c->fd) < 0)
        return -1;
    crowd_rewatch(c);
    return 0;
}

static void crowd_lost(crowd_conn_t *c, const char *why)
{
    static const char *const kinds[] = { "an idle connection", "a producer", "a consumer" };
    crowd_fail(c->cr, "%s: %s", kinds[c->kind], why);
}

static void crowd_open(crowd_conn_t *c);

static void crowd_on_retry(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    crowd_open(arg);
}

/* A connect failed: again in CROWD_RETRY_MS, up to CROWD_TRIES in all. */
static void crowd_retry(crowd_conn_t *c, int err)
{
    crowd_t *cr = c->cr;
    struct timeval tv = { 0, CROWD_RETRY_MS * 1000 };

    crowd_watch(c, 0);
    close(c->fd);
    c->fd = -1;
    c->connecting = false;
    if (++c->tries >= CROWD_TRIES) {
        crowd_fail(cr, "cannot connect to %s: %s", cr->addr, strerror(err));
        return;
    }
    if (event_base_once(cr->base, -1, EV_TIMEOUT, crowd_on_retry, c, &tv) != 0)
        crowd_fail(cr, "cannot schedule a connect: out of memory");
}

static void crowd_open(crowd_conn_t *c)
{
    crowd_t *cr = c->cr;

    c->fd = socket(cr->ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->fd < 0) {
        crowd_fail(cr, "socket: %s", strerror(errno));
        return;
    }
    c->connecting = true;
    if (connect(c->fd, (struct sockaddr *)&cr->ss, cr->sslen) != 0 && errno != EINPROGRESS) {
        crowd_retry(c, errno);
        return;
    }
    crowd_watch(c, EV_WRITE);
}

/* Open connections until CROWD_OPENING are being opened or all are. */
static void crowd_open_more(crowd_t *cr)
{
    while (cr->nopened < cr->n && cr->nopening < CROWD_OPENING && cr->status == 0) {
        cr->nopening++;
        crowd_open(&cr->conns[cr->nopened++]);
    }
}

/* Connected: send the first command, whose answer makes it up. */
static void crowd_connected(crowd_conn_t *c)
{
    int err = 0;
    socklen_t len = sizeof err;
    char sub[64];

    if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0)
        err = errno;
    if (err) {
        crowd_retry(c, err);
        return;
    }
    c->connecting = false;
    if (c->cr->ss.ss_family != AF_UNIX) {
        int one = 1;
        setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    }
    int r = c->kind == CROWD_CONSUMER
                ? crowd_put(c, sub, (size_t)snprintf(sub, sizeof sub, "SUB crowd.%u %u\r\n",
                                                     c->idx, CROWD_CREDIT))
                : crowd_put(c, "PING\r\n", 6);
    if (r < 0) {
        crowd_lost(c, "out of memory");
        return;
    }
    crowd_rewatch(c);
}

static void crowd_tick_arm(crowd_t *cr, uint64_t now);

static void crowd_up(crowd_conn_t *c)
{
    crowd_t *cr = c->cr;

    c->up = true;
    /* Its replies wait in the socket until its turn: 1,000 producers
     * watched would cost a wakeup and a read for every reply. */
    c->quiet = c->kind == CROWD_PRODUCER;
    crowd_rewatch(c);
    cr->nopening--;
    cr->nup++;
    crowd_open_more(cr);
    if (cr->nup < cr->n)
        return;
    printf("ready\n");
    fflush(stdout);
    cr->t0 = clock_ns();
    if (cr->nprod)
        crowd_tick_arm(cr, cr->t0);
}

static void crowd_ack(crowd_conn_t *c, uint64_t id)
{
    char line[PROTO_NUM_MAX + 8];
    int n = snprintf(line, sizeof line, "ACK %llu\r\n", (unsigned long long)id);

    if (crowd_put(c, line, (size_t)n) < 0) {
        crowd_lost(c, "out of memory");
        return;
    }
    c->cr->c.received++;
    c->cr->c.acked++;
}

/* One reply or push on c. */
static void crowd_reply(crowd_conn_t *c, const proto_reply_t *r)
{
    crowd_t *cr = c->cr;
    char why[PROTO_REPLY_LINE_MAX + 8];

    if (r->type == REPLY_ERROR) {
        client_reply_str(r, why, sizeof why);
        if (!c->up) {
            crowd_lost(c, why);
            return;
        }
        if (c->kind == CROWD_PRODUCER) {
            c->unanswered -= c->unanswered > 0;
            cr->c.refused++;
        } else {
            cr->c.errors++;
        }
        if (cr->c.refused + cr->c.errors == 1)
            fprintf(stderr, "sluice: bench: crowd: the server said %s\n", why);
        return;
    }
    if (!c->up) {
        crowd_up(c);
        return;
    }
    if (c->kind == CROWD_PRODUCER && r->type == REPLY_OK) {
        c->unanswered -= c->unanswered > 0;
        cr->c.confirmed++;
    } else if (c->kind == CROWD_CONSUMER && r->type == REPLY_MSG) {
        crowd_ack(c, r->id);
    }
}

/* An idle connection keeps no buffer once it is done with it: 10,000 of
 * them would hold 40 MiB of read room for nothing. */
static void crowd_trim(crowd_conn_t *c)
{
    if (c->kind != CROWD_IDLE)
        return;
    if (c->in.len == c->in.off)
        bench_buf_free(&c->in);
    if (c->out.len == c->out.off)
        bench_buf_free(&c->out);
}

/* Read once and take every whole reply; the consumers' ACKs go out in
 * one write. */
static void crowd_read(crowd_conn_t *c)
{
    if (bench_buf_room(&c->in, CROWD_READ_MIN, CROWD_BUF_FIRST) < 0) {
        crowd_lost(c, "out of memory");
        return;
    }
    ssize_t n = read(c->fd, c->in.p + c->in.len, c->in.cap - c->in.len);
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    if (n <= 0) {
        crowd_lost(c, n == 0 ? "closed by the server" : strerror(errno));
        return;
    }
    c->in.len += (size_t)n;
    while (c->in.off < c->in.len && c->cr->status == 0) {
        proto_reply_t r;
        size_t used = 0;
        int got = proto_parse_reply(c->in.p + c->in.off, c->in.len - c->in.off, &r, &used);
        if (got < 0) {
            crowd_lost(c, "the server sent something that is not a sluice reply");
            return;
        }
        if (got == 0)
            break;
        crowd_reply(c, &r);
        c->in.off += used;
    }
    if (c->in.off == c->in.len)
        c->in.off = c->in.len = 0;
    if (c->out.len > c->out.off && crowd_flush(c) < 0)
        crowd_lost(c, strerror(errno));
    crowd_trim(c);
}

static void crowd_on_event(evutil_socket_t fd, short what, void *arg)
{
    crowd_conn_t *c = arg;
    (void)fd;

    if (c->connecting) {
        crowd_connected(c);
        return;
    }
    if ((what & EV_WRITE) && crowd_flush(c) < 0) {
        crowd_lost(c, strerror(errno));
        return;
    }
    if (what & EV_READ)
        crowd_read(c);
}

/* Producer k's turn: take the replies that came (about once a second),
 * then one PUB, unless it is too far behind. */
static void crowd_publish(crowd_t *cr, crowd_conn_t *c)
{
    unsigned t = c->idx % CROWD_TOPICS;

    if (c->turns++ % cr->read_every == 0) {
        crowd_read(c);
        if (cr->status != 0)
            return;
    }
    if (c->unanswered >= cr->read_every + CROWD_UNANSWERED) {
        cr->c.skipped++;
        return;
    }
    if (crowd_put(c, cr->pub[t], cr->pub_len[t]) < 0 ||
        crowd_put(c, cr->payload, cr->o->size) < 0 || crowd_put(c, "\r\n", 2) < 0) {
        crowd_lost(c, "out of memory");
        return;
    }
    c->unanswered++;
    cr->c.sent++;
    if (crowd_flush(c) < 0)
        crowd_lost(c, strerror(errno));
}

static uint64_t crowd_due(const crowd_t *cr, uint64_t n)
{
    return cr->t0 + (uint64_t)((double)n * cr->step_ns);
}

/* Wake for the next send that is due, but not sooner than a tick. */
static void crowd_tick_arm(crowd_t *cr, uint64_t now)
{
    uint64_t due = crowd_due(cr, cr->next);
    uint64_t wait = due > now + CROWD_TICK_NS ? due - now : CROWD_TICK_NS;
    struct timeval tv = { (time_t)(wait / 1000000000ull), (suseconds_t)(wait % 1000000000ull / 1000) };

    evtimer_add(cr->tick, &tv);
}

static void crowd_on_tick(evutil_socket_t fd, short what, void *arg)
{
    crowd_t *cr = arg;
    uint64_t now = clock_ns();
    (void)fd;
    (void)what;

    while (crowd_due(cr, cr->next) <= now && cr->status == 0) {
        crowd_publish(cr, &cr->prod[cr->next % cr->nprod]);
        cr->next++;
    }
    if (cr->status == 0)
        crowd_tick_arm(cr, now);
}

static void crowd_on_signal(evutil_socket_t sig, short what, void *arg)
{
    crowd_t *cr = arg;
    (void)sig;
    (void)what;
    event_base_loopbreak(cr->base);
}

/* The server's address, resolved once for every connection. */
static int crowd_resolve(crowd_t *cr)
{
    addr_t a;
    const char *bad = addr_parse(cr->addr, ADDR_CLIENT, &a);

    if (bad) {
        fprintf(stderr, "sluice: bench: bad address '%s': %s\n", cr->addr, bad);
        return -1;
    }
    if (a.kind == ADDR_KIND_UNIX)
        return addr_sockaddr(&a, &cr->ss, &cr->sslen);
    struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM }, *res;
    char port[8];
    snprintf(port, sizeof port, "%u", a.port ? a.port : CLIENT_DEFAULT_PORT);
    int g = getaddrinfo(a.host, port, &hints, &res);
    if (g != 0) {
        fprintf(stderr, "sluice: bench: cannot connect to %s: %s\n", cr->addr, gai_strerror(g));
        return -1;
    }
    memcpy(&cr->ss, res->ai_addr, res->ai_addrlen);
    cr->sslen = res->ai_addrlen;
    freeaddrinfo(res);
    return 0;
}

/* One descriptor a connection: the soft limit up to the hard one. */
static int crowd_rlimit(size_t n)
{
    struct rlimit rl;

    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return -1;
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
    getrlimit(RLIMIT_NOFILE, &rl);
    if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < n + CROWD_FD_SPARE) {
        fprintf(stderr, "sluice: bench: crowd: %zu connections need %zu descriptors; the limit "
                        "is %llu (ulimit -Hn)\n", n, n + CROWD_FD_SPARE,
                (unsigned long long)rl.rlim_cur);
        return -1;
    }
    return 0;
}

static int crowd_setup(crowd_t *cr)
{
    const bench_opts_t *o = cr->o;
    unsigned ncons = o->crowd_producers ? CROWD_TOPICS : 0;

    cr->n = (size_t)o->crowd_idle + o->crowd_producers + ncons;
    cr->nprod = o->crowd_producers;
    if (crowd_rlimit(cr->n) < 0 || crowd_resolve(cr) < 0)
        return -1;
    cr->base = event_base_new();
    cr->conns = calloc(cr->n, sizeof *cr->conns);
    cr->payload = malloc(o->size);
    if (!cr->base || !cr->conns || !cr->payload)
        goto oom;
    memset(cr->payload, 'x', o->size);
    for (unsigned t = 0; t < CROWD_TOPICS; t++)
        cr->pub_len[t] = (size_t)snprintf(cr->pub[t], sizeof cr->pub[t], "PUB crowd.%u %zu\r\n",
                                          t, o->size);
    cr->step_ns = 1e9 / ((double)o->crowd_producers * o->crowd_rate);
    cr->read_every = o->crowd_rate >= 2 ? (unsigned)o->crowd_rate : 1;
    cr->prod = cr->conns + ncons;
    for (size_t i = 0; i < cr->n; i++) {
        crowd_conn_t *c = &cr->conns[i];
        c->cr = cr;
        c->fd = -1;
        c->kind = i < ncons ? CROWD_CONSUMER : i < ncons + cr->nprod ? CROWD_PRODUCER : CROWD_IDLE;
        c->idx = (unsigned)(i < ncons ? i : i - ncons);
        if (!(c->ev = event_new(cr->base, -1, 0, crowd_on_event, c)))
            goto oom;
    }
    cr->tick = evtimer_new(cr->base, crowd_on_tick, cr);
    cr->sigterm = evsignal_new(cr->base, SIGTERM, crowd_on_signal, cr);
    cr->sigint = evsignal_new(cr->base, SIGINT, crowd_on_signal, cr);
    if (!cr->tick || !cr->sigterm || !cr->sigint || evsignal_add(cr->sigterm, NULL) != 0 ||
        evsignal_add(cr->sigint, NULL) != 0)
        goto oom;
    return 0;
oom:
    fprintf(stderr, "sluice: bench: crowd: out of memory\n");
    return -1;
}

static void crowd_free(crowd_t *cr)
{
    for (size_t i = 0; cr->conns && i < cr->n; i++) {
        crowd_conn_t *c = &cr->conns[i];
        if (c->ev)
            event_free(c->ev);
        if (c->fd >= 0)
            close(c->fd);
        bench_buf_free(&c->in);
        bench_buf_free(&c->out);
    }
    struct event *evs[] = { cr->tick, cr->sigterm, cr->sigint };
    for (size_t i = 0; i < sizeof evs / sizeof evs[0]; i++)
        if (evs[i])
            event_free(evs[i]);
    if (cr->base)
        event_base_free(cr->base);
    free(cr->conns);
    free(cr->payload);
}

static void crowd_report(const crowd_t *cr)
{
    const crowd_counts_t *k = &cr->c;
    double s = cr->t0 ? (double)(clock_ns() - cr->t0) / 1e9 : 0;

    printf("crowd: %u idle, %u producers at %g/s, %u consumers, %.3f s: sent %llu, confirmed %llu, "
           "refused %llu, skipped %llu, received %llu, acked %llu, errors %llu\n",
           cr->o->crowd_idle, cr->nprod, cr->nprod ? cr->o->crowd_rate : 0.0,
           cr->nprod ? CROWD_TOPICS : 0, s, (unsigned long long)k->sent,
           (unsigned long long)k->confirmed, (unsigned long long)k->refused,
           (unsigned long long)k->skipped, (unsigned long long)k->received,
           (unsigned long long)k->acked, (unsigned long long)k->errors);
    fflush(stdout);
}

static void crowd_sched(const bench_opts_t *o)
{
    struct sched_param sp = { .sched_priority = 0 };

    /* as the bench's workers: wait for the server's turn, do not preempt it */
    if (!o->sched_other)
        (void)sched_setscheduler(0, SCHED_BATCH, &sp);
}

int bench_crowd_main(const bench_opts_t *o)
{
    crowd_t cr = { .o = o, .addr = o->addr };

    signal(SIGPIPE, SIG_IGN);
    crowd_sched(o);
    if (crowd_setup(&cr) < 0) {
        crowd_free(&cr);
        return 1;
    }
    crowd_open_more(&cr);
    event_base_dispatch(cr.base);
    /* the replies that came since each producer's last turn */
    for (unsigned i = 0; i < cr.nprod && cr.status == 0 && cr.t0; i++)
        crowd_read(&cr.prod[i]);
    if (cr.status == 0 || cr.t0)
        crowd_report(&cr);
    int rc = cr.status || cr.c.refused || cr.c.errors ? 1 : 0;
    crowd_free(&cr);
    return rc;
}
