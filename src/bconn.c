/* bconn.c: one beanstalk connection's life: read, parse (bproto.c), run
 * (bconn_cmd.c), write; and the set of them that the server reaches through
 * bconn_proto's hooks.
 *
 * It is conn.c's model in beanstalk's words: one flat input buffer parsed in
 * place, replies collected in an evbuffer and written once per loop turn by
 * this module's own flush pass (an event at the loop's last priority, as the
 * server's), output past limits.output_buffer stops reads, a parked put
 * stops reads entirely (backpressure), and a waiting reserve or a put held
 * for the mirror stops parsing so that replies keep their order.
 */
#include "bconn_int.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "clock.h"
#include "log.h"

#define BCONN_IN_INITIAL (16 * 1024)
#define BCONN_IN_KEEP (64 * 1024) /* larger idle input buffers are freed */
#define BCONN_READ_MIN 4096       /* read only into at least this much room */
#define BCONN_BUDGET 1024         /* commands per read event, for fairness */

static bool bconn_on_deliver(void *ctx, const topic_t *t, const msg_t *m);
static void bconn_on_complete(void *ctx, br_op_t op, br_status_t st, const topic_t *t,
                              uint64_t id);
static void bconn_free(bconn_t *c);

static const client_ops_t bconn_client_ops = {
    .deliver = bconn_on_deliver,
    .complete = bconn_on_complete,
};

/* One server per process serves beanstalk (the daemon's). */
static bconn_set_t *bconn_the_set;

static const config_t *bconn_cfg(const bconn_t *c) { return c->host->cfg; }

/* ---- output ---- */

static void bconn_want_flush(bconn_t *c)
{
    bconn_set_t *s = c->set;

    if (c->flush_queued)
        return;
    c->flush_queued = true;
    TAILQ_INSERT_TAIL(&s->flushq, c, flush_link);
    event_active(s->flush_ev, EV_TIMEOUT, 0);
}

/* Small replies collect in c->stage and go into the evbuffer together (an
 * evbuffer_add costs more than the reply it carries); anything that does
 * not fit goes after what is staged, so the order is kept. */
static void bconn_stage_flush(bconn_t *c)
{
    if (c->nstage == 0)
        return;
    evbuffer_add(c->out, c->stage, c->nstage);
    c->nstage = 0;
}

static size_t bconn_out_len(const bconn_t *c)
{
    return evbuffer_get_length(c->out) + c->nstage;
}

static bool bconn_out_over(const bconn_t *c)
{
    return bconn_out_len(c) > bconn_cfg(c)->limits.output_buffer;
}

/* Room for n more staged bytes, or false (then it was all flushed). */
static bool bconn_stage_room(bconn_t *c, size_t n)
{
    if (sizeof c->stage - c->nstage >= n)
        return true;
    bconn_stage_flush(c);
    return n <= sizeof c->stage;
}

void bconn_reply(bconn_t *c, const char *s, size_t n)
{
    if (bconn_stage_room(c, n)) {
        memcpy(c->stage + c->nstage, s, n);
        c->nstage += n;
    } else {
        evbuffer_add(c->out, s, n);
    }
    bconn_want_flush(c);
}

void bconn_reply_body(bconn_t *c, const char *head, size_t hlen, const char *body, size_t blen)
{
    if (bconn_stage_room(c, hlen + blen + 2)) {
        char *o = c->stage + c->nstage;
        memcpy(o, head, hlen);
        memcpy(o + hlen, body, blen);
        memcpy(o + hlen + blen, "\r\n", 2);
        c->nstage += hlen + blen + 2;
    } else {
        evbuffer_add(c->out, head, hlen);
        evbuffer_add(c->out, body, blen);
        evbuffer_add(c->out, "\r\n", 2);
    }
    bconn_want_flush(c);
}

void bconn_reply_job(bconn_t *c, const char *head, size_t hlen, const msg_t *m)
{
    if (!connhost_lend(m)) {
        bconn_reply_body(c, head, hlen, m->data, m->len);
        return;
    }
    bconn_reply(c, head, hlen);
    bconn_stage_flush(c);
    connhost_add_lent(c->out, m);
    bconn_reply(c, "\r\n", 2);
}

/* ---- reading ---- */

static uint32_t bconn_max_job(const config_t *cfg)
{
    return cfg->limits.max_message > UINT32_MAX ? UINT32_MAX : (uint32_t)cfg->limits.max_message;
}

static size_t bconn_in_max(const bconn_t *c)
{
    /* One whole put: its line, its body, the two bytes after it, and slack. */
    return BPROTO_LINE_MAX + (size_t)c->parser.max_job_size + 2 + BCONN_READ_MIN;
}

static const char *const bconn_state_names[] = {
    [BCONN_READING] = "reading", [BCONN_WAITING] = "waiting", [BCONN_PARKED] = "parked",
    [BCONN_HELD] = "held",       [BCONN_CLOSING] = "closing",
};

void bconn_set_state(bconn_t *c, bconn_state_t st)
{
    if (c->state == st)
        return;
    log_debug("beanstalk connection from %s: %s -> %s", c->peer, bconn_state_names[c->state],
              bconn_state_names[st]);
    if (st == BCONN_WAITING)
        c->set->waiting++;
    else if (c->state == BCONN_WAITING)
        c->set->waiting--;
    c->state = st;
}

/* Reads are wanted unless parked, closing, over the output limit, or
 * waiting with no room left (a read that cannot happen would leave the
 * socket readable and the loop spinning on it). */
static void bconn_update_reading(bconn_t *c)
{
    bool room = c->in_len - c->in_off + BCONN_READ_MIN <= bconn_in_max(c);
    bool want = !c->host->draining && !c->out_full && !c->peer_eof &&
                (c->state == BCONN_READING ||
                 ((c->state == BCONN_WAITING || c->state == BCONN_HELD) && room));

    if (want == c->reading)
        return;
    if (want) {
        /* As conn.c: an event added while active would never fire again. */
        bool active = event_pending(c->rev, EV_READ, NULL) != 0;
        if (active)
            event_del(c->rev);
        event_add(c->rev, NULL);
        if (active)
            event_active(c->rev, EV_READ, 0);
    } else {
        event_del(c->rev);
    }
    c->reading = want;
}

static bool bconn_in_reserve(bconn_t *c)
{
    size_t cap, max = bconn_in_max(c);
    char *p;

    if (c->in_off > 0 &&
        (c->in_off == c->in_len || c->in_cap - c->in_len < BCONN_READ_MIN)) {
        memmove(c->in, c->in + c->in_off, c->in_len - c->in_off);
        c->in_len -= c->in_off;
        c->in_off = 0;
    }
    if (c->in_cap - c->in_len >= BCONN_READ_MIN)
        return true;
    if (c->in_cap >= max)
        return false;
    cap = c->in_cap ? c->in_cap * 2 : BCONN_IN_INITIAL;
    if (cap > max)
        cap = max;
    p = realloc(c->in, cap);
    if (p == NULL)
        return false;
    c->in = p;
    c->in_cap = cap;
    return true;
}

static void bconn_in_trim(bconn_t *c)
{
    if (c->in_off != c->in_len)
        return;
    c->in_off = c->in_len = 0;
    if (c->in_cap > BCONN_IN_KEEP) {
        free(c->in);
        c->in = NULL;
        c->in_cap = 0;
    }
}

/* Run every complete command in the input, up to the fairness budget.
 * True if input is left that could run now. */
static bool bconn_process(bconn_t *c)
{
    uint64_t now = clock_ms();
    int budget = BCONN_BUDGET;

    while (c->state == BCONN_READING && !c->out_full && c->in_off < c->in_len) {
        bproto_cmd_t cmd;
        const char *err = NULL;
        size_t used = 0;
        bproto_result_t r;

        if (budget-- == 0)
            return true;
        r = bproto_parse(&c->parser, c->in + c->in_off, c->in_len - c->in_off, &cmd, &used,
                         &err);
        if (r == BPROTO_CMD) {
            /* cmd points into the buffer: run it before giving the bytes up. */
            bconn_exec(c, &cmd, now);
            broker_dispatch(c->host->broker, now);
        } else if (r == BPROTO_ERROR) {
            bconn_put_refused(c, err);
            bconn_reply(c, err, strlen(err));
        }
        c->in_off += used;
        /* A skipped window or body may leave more to parse. */
        if (r == BPROTO_NEED_MORE && used == 0)
            break;
        if (bconn_out_over(c))
            c->out_full = true;
    }
    return false;
}

static void bconn_after_input(bconn_t *c)
{
    bconn_in_trim(c);
    if (bconn_out_len(c) > 0)
        bconn_want_flush(c);
    c->host->ops->touch(c->host);
    bconn_update_reading(c);
}

/* The peer has sent all it ever will: once what it sent has run and been
 * answered, the connection closes (a half-sent put is dropped). */
static bool bconn_finished(const bconn_t *c, bool more)
{
    return c->peer_eof && c->state == BCONN_READING && !more && !c->out_full;
}

static void bconn_on_read(evutil_socket_t fd, short what, void *arg)
{
    bconn_t *c = arg;
    bool more;
    ssize_t n;

    (void)what;
    /* Shutting down: what is buffered still runs (a put gets DRAINING),
     * nothing more is read. */
    if (!c->peer_eof && !c->host->draining && c->state != BCONN_PARKED &&
        c->state != BCONN_CLOSING) {
        if (!bconn_in_reserve(c)) {
            if (c->in_off == c->in_len) {
                log_error("closing beanstalk %s: cannot grow its input buffer", c->peer);
                bconn_free(c);
                return;
            }
            bconn_update_reading(c);
        } else {
            n = read(fd, c->in + c->in_len, c->in_cap - c->in_len);
            if (n > 0) {
                c->in_len += (size_t)n;
            } else if (n == 0) {
                c->peer_eof = true;
                /* A worker gone while it waits in reserve: as beanstalkd,
                 * the wait ends with the connection, so no job is handed
                 * to nobody. */
                if (c->state == BCONN_WAITING) {
                    bconn_free(c);
                    return;
                }
            } else if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
                bconn_free(c);
                return;
            }
        }
    }
    more = bconn_process(c);
    if (more)
        event_active(c->rev, EV_READ, 0);
    if (bconn_finished(c, more))
        bconn_set_state(c, BCONN_CLOSING);
    /* quit, or the peer's end: what is owed goes out first. */
    if (c->state == BCONN_CLOSING && bconn_out_len(c) == 0) {
        bconn_free(c);
        return;
    }
    bconn_after_input(c);
}

/* ---- the broker's calls ---- */

static bool bconn_on_deliver(void *ctx, const topic_t *t, const msg_t *m)
{
    bconn_t *c = ctx;
    char head[BPROTO_REPLY_MAX];

    (void)t;
    bconn_reply_job(c, head, bproto_fmt_reserved(head, m->id, m->len), m);
    if (bconn_out_over(c)) {
        c->out_full = true;
        return false;
    }
    return true;
}

static void bconn_on_complete(void *ctx, br_op_t op, br_status_t st, const topic_t *t,
                              uint64_t id)
{
    bconn_t *c = ctx;

    (void)t;
    bconn_completed(c, op, st, id);
    /* Inside a broker call: go on with this connection's input later,
     * from the loop, never from here. */
    bconn_update_reading(c);
    event_active(c->rev, EV_READ, 0);
}

/* ---- writing ---- */

/* false: the connection was closed. */
static bool bconn_flush(bconn_t *c)
{
    int k;

    bconn_stage_flush(c);
    k = connhost_write_out(c->out, c->fd);
    if (k == 0) {
        event_add(c->wev, NULL);
        return true;
    }
    if (k < 0) {
        bconn_free(c);
        return false;
    }
    event_del(c->wev);
    if (c->state == BCONN_CLOSING) {
        bconn_free(c);
        return false;
    }
    if (c->out_full) {
        c->out_full = false;
        broker_client_resume(c->client, clock_ms());
        bconn_update_reading(c);
        if (c->in_off < c->in_len || c->peer_eof)
            event_active(c->rev, EV_READ, 0);
    }
    return true;
}

static void bconn_on_write(evutil_socket_t fd, short what, void *arg)
{
    bconn_t *c = arg;

    (void)fd;
    (void)what;
    if (bconn_flush(c))
        c->host->ops->touch(c->host);
}

static void bconn_on_flush(evutil_socket_t fd, short what, void *arg)
{
    bconn_set_t *s = arg;
    bconn_t *c;

    (void)fd;
    (void)what;
    while ((c = TAILQ_FIRST(&s->flushq)) != NULL) {
        TAILQ_REMOVE(&s->flushq, c, flush_link);
        c->flush_queued = false;
        bconn_flush(c);
    }
    s->host->ops->touch(s->host);
}

/* ---- the set ---- */

static const user_entry_t *bconn_find_user(const config_t *cfg)
{
    for (size_t i = 0; i < cfg->nusers; i++)
        if (strcmp(cfg->users[i].name, cfg->beanstalk.user) == 0)
            return &cfg->users[i];
    return NULL;
}

static void bconn_random_id(char *out, size_t cap)
{
    unsigned char r[8] = {0};
    int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);

    if (fd >= 0) {
        ssize_t n = read(fd, r, sizeof r);
        (void)n; /* a zero id is still an id */
        close(fd);
    }
    for (size_t i = 0; i < sizeof r && 2 * i + 2 < cap; i++)
        snprintf(out + 2 * i, 3, "%02x", r[i]);
}

static bconn_set_t *bconn_set_get(connhost_t *h)
{
    bconn_set_t *s = bconn_the_set;

    if (s != NULL)
        return s->host == h ? s : NULL;
    s = calloc(1, sizeof *s);
    if (s == NULL)
        return NULL;
    s->host = h;
    LIST_INIT(&s->conns);
    TAILQ_INIT(&s->flushq);
    s->flush_ev = event_new(h->base, -1, 0, bconn_on_flush, s);
    if (s->flush_ev == NULL) {
        free(s);
        return NULL;
    }
    event_priority_set(s->flush_ev, event_base_get_npriorities(h->base) - 1);
    s->user = bconn_find_user(h->cfg);
    bconn_random_id(s->id, sizeof s->id);
    bconn_the_set = s;
    return s;
}

/* ---- life ---- */

static bconn_t *bconn_new(connhost_t *h, int fd, const char *peer)
{
    bconn_set_t *s = bconn_set_get(h);
    bconn_t *c = s != NULL ? calloc(1, sizeof *c) : NULL;

    if (c == NULL)
        goto fail;
    c->set = s;
    c->host = h;
    c->fd = fd;
    c->state = BCONN_READING;
    bproto_parser_init(&c->parser, bconn_max_job(h->cfg));
    snprintf(c->peer, sizeof c->peer, "%s", peer);
    c->out = evbuffer_new();
    c->rev = event_new(h->base, fd, EV_READ | EV_PERSIST, bconn_on_read, c);
    c->wev = event_new(h->base, fd, EV_WRITE | EV_PERSIST, bconn_on_write, c);
    c->client = broker_client_new(h->broker, &bconn_client_ops, c);
    if (c->out == NULL || c->rev == NULL || c->wev == NULL || c->client == NULL ||
        !bconn_use(c, "default", 7) || !bconn_watch(c, "default", 7))
        goto fail;
    LIST_INSERT_HEAD(&s->conns, c, link);
    s->nconns++;
    s->total_conns++;
    h->nconns++; /* against limits.max_connections, with the native ones */
    bconn_update_reading(c);
    log_debug("beanstalk connection from %s", peer);
    return c;
fail:
    log_error("cannot set up a beanstalk connection from %s: out of memory", peer);
    if (c != NULL) {
        bconn_tubes_drop(c);
        if (c->client)
            broker_client_free(c->client, clock_ms());
        if (c->rev)
            event_free(c->rev);
        if (c->wev)
            event_free(c->wev);
        if (c->out)
            evbuffer_free(c->out);
        free(c);
    }
    close(fd);
    return NULL;
}

static void bconn_free(bconn_t *c)
{
    bconn_set_t *s = c->set;
    connhost_t *h = c->host;

    log_debug("closing beanstalk connection from %s", c->peer);
    bconn_set_state(c, BCONN_CLOSING); /* out of the waiting count */
    /* Its reserved jobs go back to their tubes. */
    broker_client_free(c->client, clock_ms());
    if (c->flush_queued)
        TAILQ_REMOVE(&s->flushq, c, flush_link);
    LIST_REMOVE(c, link);
    s->nconns--;
    h->nconns--;
    s->producers -= c->producer;
    s->workers -= c->worker;
    bconn_tubes_drop(c);
    event_free(c->rev);
    event_free(c->wev);
    evbuffer_free(c->out);
    close(c->fd);
    free(c->in);
    free(c);
    broker_dispatch(h->broker, clock_ms());
    h->ops->touch(h);
}

/* ---- the server's hooks (connhost.h) ---- */

static bool bconn_open(connhost_t *h, int fd, const char *peer)
{
    return bconn_new(h, fd, peer) != NULL;
}

static void bconn_configure(connhost_t *h, const config_t *cfg)
{
    bconn_set_t *s = bconn_the_set;
    bconn_t *c;

    if (s == NULL || s->host != h)
        return;
    s->user = bconn_find_user(cfg);
    LIST_FOREACH(c, &s->conns, link)
        c->parser.max_job_size = bconn_max_job(cfg);
}

static void bconn_stop_reading(connhost_t *h)
{
    bconn_set_t *s = bconn_the_set;
    bconn_t *c;

    if (s == NULL || s->host != h)
        return;
    LIST_FOREACH(c, &s->conns, link) {
        if (c->reading)
            event_del(c->rev);
        c->reading = false;
    }
}

static bool bconn_drained(const connhost_t *h)
{
    const bconn_set_t *s = bconn_the_set;
    const bconn_t *c;

    if (s == NULL || s->host != h)
        return true;
    LIST_FOREACH(c, &s->conns, link)
        if (bconn_out_len(c) > 0)
            return false;
    return true;
}

static void bconn_close_all(connhost_t *h)
{
    bconn_set_t *s = bconn_the_set;

    if (s == NULL || s->host != h)
        return;
    while (!LIST_EMPTY(&s->conns))
        bconn_free(LIST_FIRST(&s->conns));
    for (size_t i = 0; i < BCONN_TUBE_BUCKETS; i++)
        while (s->tubes[i] != NULL) {
            bconn_tube_t *t = s->tubes[i];
            s->tubes[i] = t->next;
            free(t);
        }
    event_free(s->flush_ev);
    free(s);
    bconn_the_set = NULL;
}

const connproto_t bconn_proto = {
    .label = " (beanstalk)",
    .busy = "OUT_OF_MEMORY\r\n",
    .open = bconn_open,
    .port_key = "beanstalk",
    .configure = bconn_configure,
    .stop_reading = bconn_stop_reading,
    .drained = bconn_drained,
    .close_all = bconn_close_all,
};
