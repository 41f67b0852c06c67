/* conn.c: one client connection: read, parse, run commands, write replies.
 *
 * Input is one flat buffer parsed in place, so a command costs no
 * allocation beyond its message; a read's size grows while reads fill
 * their room (bounded). Replies and pushes are formatted into a flat output
 * buffer and written once per event-loop turn by the server's flush pass,
 * straight from there, so a read that brought a hundred commands costs one
 * write and no payload is copied twice. AUTH, ACLs and remembered SUBs are
 * in conn_auth.c.
 *
 * Backpressure lives here: a parked PUB stops reads on the socket (the
 * kernel buffers fill and the producer's send() blocks), and output past
 * limits.output_buffer stops both pushes and reads until it drains.
 */
#include "conn.h"
#include "conn_int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

#include "clock.h"
#include "log.h"
#include "stats.h"

#define CONN_IN_INITIAL (16 * 1024)
#define CONN_IN_KEEP (256 * 1024)  /* larger idle input buffers are freed */
#define CONN_READ_MIN 4096         /* read only into at least this much room */
#define CONN_READ_MAX (256 * 1024) /* the most one read asks for, however much waits */
#define CONN_BUDGET 1024           /* commands per read event, for fairness */
#define CONN_DIRECT_MIN (16 * 1024) /* payloads this big that span reads go straight to their message */
#define CONN_OB_INITIAL (16 * 1024)
#define CONN_OB_KEEP (256 * 1024)  /* larger written-out output buffers are freed */
#define CONN_OB_PUSH_MAX (64 * 1024) /* larger pushes go to the evbuffer by themselves */

static void conn_on_read(evutil_socket_t fd, short what, void *arg);
static void conn_on_write(evutil_socket_t fd, short what, void *arg);
static bool conn_on_deliver(void *ctx, const topic_t *t, const msg_t *m);
static void conn_on_complete(void *ctx, br_op_t op, br_status_t st, const topic_t *t, uint64_t id);

static const client_ops_t conn_client_ops = {
    .deliver = conn_on_deliver,
    .complete = conn_on_complete,
    .placed = true, /* -MOVED sends a client to the topic's node */
};

/* Output is written once per loop turn, by the owner's flush pass. */
static void conn_want_flush(conn_t *c)
{
    if (!c->flush_queued)
        c->host->ops->want_flush(c->host, c);
}

static void conn_touch(const conn_t *c) { c->host->ops->touch(c->host); }

/* ---- the output: `ob` (flat, written straight from) after `out` ----
 *
 * Pushes and replies are formatted into ob, one copy each and no
 * allocation of their own; the flush writes ob with one write() when out
 * is empty, and only what the kernel did not take moves into out. So out
 * (an evbuffer) holds just what is waiting for a slow reader, and anything
 * that needs the evbuffer itself (cfifo's held replies, STATS bodies)
 * gets it through conn_out, which moves ob's bytes in first: the order of
 * the stream is always out, then ob. */

/* Room for n more bytes at the end of ob; NULL when it cannot grow. */
static char *conn_ob_room(conn_t *c, size_t n)
{
    size_t cap;
    char *p;

    if (c->ob_cap - c->ob_len >= n)
        return c->ob + c->ob_len;
    cap = c->ob_cap ? c->ob_cap : CONN_OB_INITIAL;
    while (cap - c->ob_len < n)
        cap *= 2;
    p = realloc(c->ob, cap);
    if (p == NULL)
        return NULL;
    c->ob = p;
    c->ob_cap = cap;
    return c->ob + c->ob_len;
}

/* The evbuffer, with ob moved into it: what is added to it now comes last. */
static struct evbuffer *conn_out(conn_t *c)
{
    if (c->ob_len > 0) {
        evbuffer_add(c->out, c->ob, c->ob_len);
        c->ob_len = 0;
    }
    return c->out;
}

static size_t conn_out_len(const conn_t *c)
{
    return evbuffer_get_length(c->out) + c->ob_len;
}

/* Append to the end of the output. */
static void conn_out_add(conn_t *c, const void *s, size_t n)
{
    char *p = conn_ob_room(c, n);

    if (p == NULL) {
        evbuffer_add(conn_out(c), s, n);
        return;
    }
    memcpy(p, s, n);
    c->ob_len += n;
}

/* Replies (not pushes) go behind any PUB still waiting for the mirror. */
static struct evbuffer *conn_rbuf(conn_t *c)
{
    return cfifo_replies(&c->unconfirmed, conn_out(c));
}

void conn_reply(conn_t *c, const char *s, size_t n)
{
    if (c->unconfirmed.n == 0)
        conn_out_add(c, s, n);
    else
        evbuffer_add(cfifo_replies(&c->unconfirmed, c->out), s, n);
    conn_want_flush(c);
}

static void conn_reply_u64(conn_t *c, uint64_t v)
{
    char buf[32];
    conn_reply(c, buf, proto_fmt_ok_u64(buf, v));
}

/* "-CODE <arg>\r\n" with a number or a topic name (both safe to echo). */
static void conn_reply_code(conn_t *c, const char *code, const char *arg, size_t n)
{
    struct evbuffer *r = conn_rbuf(c);

    evbuffer_add(r, code, strlen(code));
    evbuffer_add(r, " ", 1);
    evbuffer_add(r, arg, n);
    conn_reply_lit(c, "\r\n");
}

static void conn_reply_notfound(conn_t *c, uint64_t id)
{
    char num[PROTO_NUM_MAX];
    conn_reply_code(c, "-NOTFOUND", num, proto_u64(num, id));
}

/* "-MOVED <topic> <host:port>": the cluster's node for the topic, as
 * cluster.nodes spells it (an address the config checked: safe to echo). */
static void conn_reply_moved(conn_t *c, const char *topic, size_t tlen)
{
    const char *owner = config_owner(conn_cfg(c), topic, tlen);
    struct evbuffer *r = conn_rbuf(c);

    evbuffer_add(r, "-MOVED ", 7);
    evbuffer_add(r, topic, tlen);
    evbuffer_add(r, " ", 1);
    evbuffer_add(r, owner, strlen(owner));
    conn_reply_lit(c, "\r\n");
}

/* A command without a client in the core (STATS, KICK, PAUSE) found no
 * such topic: another node's, or none at all. */
static void conn_reply_unknown(conn_t *c, const char *topic, size_t tlen)
{
    if (broker_moved(c->host->broker, topic, tlen))
        conn_reply_moved(c, topic, tlen);
    else
        conn_reply_lit(c, "-ERR unknown topic\r\n");
}

static void conn_reply_topic_error(conn_t *c, br_status_t st, const char *topic, size_t tlen)
{
    switch (st) {
    case BR_MOVED:
        conn_reply_moved(c, topic, tlen);
        break;
    case BR_FULL:
        conn_reply_code(c, "-FULL", topic, tlen);
        break;
    case BR_NOTOPIC:
        if (conn_cfg(c)->auto_create_topics)
            conn_reply_lit(c, "-ERR too many topics (limits.max_topics)\r\n");
        else
            conn_reply_lit(c, "-ERR unknown topic (auto_create_topics is off)\r\n");
        break;
    case BR_TIMEOUT:
        conn_reply_lit(c, "-TIMEOUT\r\n");
        break;
    case BR_UNAVAILABLE:
        conn_reply_lit(c, "-ERR mirror unavailable\r\n");
        break;
    default:
        conn_reply_lit(c, "-ERR internal error\r\n");
        break;
    }
}

/* ---- reading ---- */

static bool conn_out_over(const conn_t *c)
{
    return conn_out_len(c) + cfifo_later_len(&c->unconfirmed) > conn_cfg(c)->limits.output_buffer;
}

static bool conn_unconfirmed_full(const conn_t *c)
{
    return c->unconfirmed.n >= conn_cfg(c)->redis.max_unconfirmed;
}

static size_t conn_in_max(const conn_t *c)
{
    /* One whole PUB: its line, its payload, two terminators, and slack. */
    return (size_t)(c->parser.max_line + c->parser.max_message) + 4 + CONN_READ_MIN;
}

/* Reads are wanted unless parked, closing, over the output limit, or
 * waiting with no room for another read: a read that cannot happen would
 * leave the socket readable and the loop spinning on it. */
void conn_update_reading(conn_t *c)
{
    bool room = c->in_len - c->in_off + CONN_READ_MIN <= conn_in_max(c);
    bool want = !c->host->draining && !c->out_full && !c->peer_eof &&
                (c->state == CONN_READING || (c->state == CONN_WAITING && room) ||
                 (c->state == CONN_CONFIRMING && room && !conn_unconfirmed_full(c)));

    if (want == c->reading)
        return;
    if (want) {
        /* libevent does not watch an event that is added while it is
         * active (event_active'd, callback not run yet): the socket would
         * never be read again. Take it out and put it back, activation
         * included, so `reading` always says whether the socket is
         * watched. */
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

/* The room the next read asks for (c->read_want): CONN_READ_MIN, doubled
 * (up to CONN_READ_MAX) after each read that filled all the room it had,
 * since the socket then likely holds more. One read per wakeup then soon
 * takes a whole window of PUBs (64 of 1 KiB is 67 KiB) instead of a
 * quarter of it per loop turn, and each turn's replies and pushes go out
 * in one write. (It was asked with FIONREAD: an ioctl before every read.) */
static void conn_read_learn(conn_t *c, size_t offered, ssize_t got)
{
    if (got > 0 && (size_t)got == offered)
        c->read_want = offered * 2 < CONN_READ_MAX ? offered * 2 : CONN_READ_MAX;
    else
        c->read_want = CONN_READ_MIN;
}

/* Make room for `want` more bytes if the limit allows (up to
 * conn_in_max), and for at least CONN_READ_MIN. */
static bool conn_in_reserve(conn_t *c, size_t want)
{
    size_t cap;
    char *p;

    if (c->in_off > 0 && (c->in_off == c->in_len || c->in_cap - c->in_len < want)) {
        memmove(c->in, c->in + c->in_off, c->in_len - c->in_off);
        c->in_len -= c->in_off;
        c->in_off = 0;
    }
    if (c->in_cap - c->in_len >= want)
        return true;
    if (c->in_cap >= conn_in_max(c))
        return c->in_cap - c->in_len >= CONN_READ_MIN;
    cap = c->in_cap ? c->in_cap * 2 : CONN_IN_INITIAL;
    while (cap - c->in_len < want && cap < conn_in_max(c))
        cap *= 2;
    if (cap > conn_in_max(c))
        cap = conn_in_max(c);
    p = realloc(c->in, cap);
    if (p == NULL)
        return c->in_cap - c->in_len >= CONN_READ_MIN;
    c->in = p;
    c->in_cap = cap;
    return true;
}

/* An idle connection should not keep a megabyte it once needed. */
static void conn_in_trim(conn_t *c)
{
    if (c->in_off == c->in_len) {
        c->in_off = c->in_len = 0;
        if (c->in_cap > CONN_IN_KEEP) {
            free(c->in);
            c->in = NULL;
            c->in_cap = 0;
        }
    }
}

/* Every change of a connection's state goes through here, so a debug log
 * shows each one (why a client stopped being read is otherwise invisible). */
static const char *const conn_state_names[] = {
    [CONN_READING] = "reading", [CONN_WAITING] = "waiting", [CONN_PARKED] = "parked",
    [CONN_CONFIRMING] = "confirming", [CONN_DELAYED] = "delayed", [CONN_CLOSING] = "closing",
};

void conn_set_state(conn_t *c, conn_state_t state)
{
    if (c->state == state)
        return;
    log_debug("connection from %s: %s -> %s", c->peer, conn_state_names[c->state],
              conn_state_names[state]);
    c->state = state;
}

/* ---- commands ---- */

/* A held PUB's outcome, as its reply: straight to the output, since the
 * PUBs still waiting come after it. */
static void conn_reply_pub(conn_t *c, int st, uint64_t id)
{
    static const char unavailable[] = "-ERR mirror unavailable\r\n";
    char buf[32];

    if (st == BR_OK)
        conn_out_add(c, buf, proto_fmt_ok_u64(buf, id));
    else
        conn_out_add(c, unavailable, sizeof unavailable - 1);
}

/* Write the replies of the oldest PUBs that have their outcome, and what
 * was answered behind each. */
static void conn_unconfirmed_drain(conn_t *c)
{
    uint64_t id;
    int st;

    while (cfifo_pop(&c->unconfirmed, &id, &st)) {
        conn_reply_pub(c, st, id);
        cfifo_release(&c->unconfirmed, conn_out(c));
    }
    conn_want_flush(c);
}

/* While PUBs wait for the mirror, only commands whose whole answer is a
 * reply may run: a SUB's, GET's or JOIN's pushes, an AUTH's delay or a
 * QUIT's close would overtake the +OKs still owed. */
static bool conn_may_pass_unconfirmed(proto_cmd_type_t type)
{
    switch (type) {
    case CMD_PUB:
    case CMD_ACK:
    case CMD_NACK:
    case CMD_TOUCH:
    case CMD_BURY:
    case CMD_KICK:
    case CMD_PAUSE:
    case CMD_UNSUB:
    case CMD_STATS:
    case CMD_TOPICS:
    case CMD_PING:
        return true;
    default:
        return false;
    }
}

/* Can the broker hold this PUB (confirm mode)? Only then does it need room
 * in the FIFO, so plain producers never allocate one. */
static bool conn_may_hold(const conn_t *c)
{
    const config_t *cfg = conn_cfg(c);

    return cfg->redis.enabled && cfg->redis.confirm && cfg->redis.mirror == MIRROR_MESSAGES;
}

/* The PUB's message, its payload not filled in: plain, or with an ext
 * block for pri= and ttr=. */
static msg_t *conn_pub_alloc(const proto_cmd_t *cmd, uint64_t now)
{
    uint32_t len = (uint32_t)cmd->payload_len;

    if (!cmd->has_pri && cmd->ttr_ms == 0)
        return msg_new(len);
    return msg_new_job(len, cmd->has_pri ? cmd->pri : MSG_PRI_DEFAULT, cmd->ttr_ms,
                       cmd->delay_ms, now);
}

/* The PUB's message with its payload: the one read straight into place
 * (conn_pend_finish), or a copy out of the input buffer. */
static msg_t *conn_pub_msg(conn_t *c, const proto_cmd_t *cmd, uint64_t now)
{
    msg_t *m = c->pub_pre;

    if (m != NULL) {
        c->pub_pre = NULL;
        return m;
    }
    m = conn_pub_alloc(cmd, now);
    if (m != NULL)
        memcpy(m->data, cmd->payload, cmd->payload_len);
    return m;
}

static void conn_cmd_pub(conn_t *c, const proto_cmd_t *cmd, uint64_t now)
{
    msg_t *m;
    uint64_t id = 0;
    br_status_t st;

    /* Room first: a held PUB must always find its place in the FIFO. */
    if ((conn_may_hold(c) &&
         cfifo_reserve(&c->unconfirmed, conn_cfg(c)->redis.max_unconfirmed) < 0) ||
        (m = conn_pub_msg(c, cmd, now)) == NULL) {
        conn_reply_lit(c, "-ERR out of memory\r\n");
        return;
    }
    st = broker_publish(c->client, cmd->topic, cmd->topic_len, m, cmd->delay_ms, now, &id);
    if (st == BR_OK)
        conn_reply_u64(c, id);
    else if (st == BR_HELD)
        cfifo_push(&c->unconfirmed, id);
    else if (st == BR_PENDING)
        conn_set_state(c, CONN_PARKED);
    else
        conn_reply_topic_error(c, st, cmd->topic, cmd->topic_len);
}

static void conn_cmd_ack(conn_t *c, const proto_cmd_t *cmd, uint64_t now)
{
    size_t pos = 0;
    uint64_t id, n = 0;

    /* All or nothing: every id must be ours before any is acked. */
    while (proto_cmd_next_id(cmd, &pos, &id)) {
        if (!broker_owns(c->client, id)) {
            conn_reply_notfound(c, id);
            return;
        }
    }
    pos = 0;
    while (proto_cmd_next_id(cmd, &pos, &id))
        n += broker_ack(c->client, id, now);
    conn_reply_u64(c, n);
}

static void conn_cmd_stats(conn_t *c, const proto_cmd_t *cmd, uint64_t now)
{
    char body[STATS_BODY_MAX], head[48];
    size_t n;

    if (cmd->topic != NULL) {
        topic_stats_t ts;
        if (!broker_topic_stats(c->host->broker, cmd->topic, cmd->topic_len, now, &ts)) {
            conn_reply_unknown(c, cmd->topic, cmd->topic_len);
            return;
        }
        n = stats_yaml_topic(body, sizeof body, &ts);
    } else {
        broker_stats_t bs;
        stats_extra_t x = c->host->ops->stats(c->host);
        broker_stats(c->host->broker, now, &bs);
        n = stats_yaml_server(body, sizeof body, &bs, &x);
    }
    memcpy(head, "+STATS ", 7);
    size_t h = 7 + proto_u64(head + 7, n);
    memcpy(head + h, "\r\n", 2);
    evbuffer_add(conn_rbuf(c), head, h + 2);
    evbuffer_add(conn_rbuf(c), body, n);
    conn_reply_lit(c, "\r\n");
}

static void conn_topics_add(void *ctx, const topic_stats_t *ts)
{
    evbuffer_add(ctx, ts->name, ts->name_len);
    evbuffer_add(ctx, "\n", 1);
}

static void conn_cmd_topics(conn_t *c)
{
    struct evbuffer *body = evbuffer_new();
    char head[48];
    size_t h;

    if (body == NULL) {
        conn_reply_lit(c, "-ERR out of memory\r\n");
        return;
    }
    broker_foreach_topic(c->host->broker, clock_ms(), conn_topics_add, body);
    memcpy(head, "+TOPICS ", 8);
    h = 8 + proto_u64(head + 8, evbuffer_get_length(body));
    memcpy(head + h, "\r\n", 2);
    evbuffer_add(conn_rbuf(c), head, h + 2);
    evbuffer_add_buffer(conn_rbuf(c), body);
    evbuffer_free(body);
    conn_reply_lit(c, "\r\n");
}

/* BURY id [pri]: without a priority the message keeps its own. */
static void conn_cmd_bury(conn_t *c, const proto_cmd_t *cmd, uint64_t now)
{
    br_job_info_t j;
    uint32_t pri = MSG_PRI_DEFAULT;

    if (cmd->has_num)
        pri = (uint32_t)cmd->num;
    else if (broker_job_info(c->host->broker, cmd->id, now, &j))
        pri = j.pri;
    if (broker_bury(c->client, cmd->id, pri, now) == BR_OK)
        conn_reply_lit(c, "+OK\r\n");
    else
        conn_reply_notfound(c, cmd->id);
}

static void conn_cmd_kick(conn_t *c, const proto_cmd_t *cmd, uint64_t now)
{
    uint64_t n = 0;

    if (broker_kick(c->host->broker, cmd->topic, cmd->topic_len, cmd->num, now, &n) == BR_OK)
        conn_reply_u64(c, n);
    else
        conn_reply_unknown(c, cmd->topic, cmd->topic_len);
}

static void conn_cmd_pause(conn_t *c, const proto_cmd_t *cmd, uint64_t now)
{
    if (broker_pause(c->host->broker, cmd->topic, cmd->topic_len, cmd->num, now) == BR_OK)
        conn_reply_lit(c, "+OK\r\n");
    else
        conn_reply_unknown(c, cmd->topic, cmd->topic_len);
}

static void conn_cmd_waiting(conn_t *c, br_status_t st, const char *topic, size_t tlen)
{
    if (st == BR_PENDING)
        conn_set_state(c, CONN_WAITING);
    else if (st != BR_OK)
        conn_reply_topic_error(c, st, topic, tlen);
}

/* The commands a user needs a right on their topic for (ACLs), as bits. */
#define CONN_TOPIC_RIGHTS                                                                     \
    (1u << CMD_PUB | 1u << CMD_SUB | 1u << CMD_GET | 1u << CMD_KICK | 1u << CMD_PAUSE)

static void conn_exec(conn_t *c, const proto_cmd_t *cmd, uint64_t now)
{
    br_status_t st;

    if (conn_cfg(c)->nusers > 0 && c->user == NULL && cmd->type != CMD_AUTH &&
        cmd->type != CMD_PING && cmd->type != CMD_QUIT) {
        conn_reply_lit(c, "-NOAUTH authentication required\r\n");
        return;
    }
    /* -MOVED comes before -DENIED: a topic another node holds is that
     * node's to refuse. (Allowed commands learn it from the core, which
     * asks only when the topic is not here.) */
    if ((CONN_TOPIC_RIGHTS >> cmd->type & 1) && !conn_may(c, cmd->type, cmd->topic, cmd->topic_len)) {
        if (broker_moved(c->host->broker, cmd->topic, cmd->topic_len))
            conn_reply_moved(c, cmd->topic, cmd->topic_len);
        else
            conn_reply_code(c, "-DENIED", cmd->topic, cmd->topic_len);
        return;
    }
    switch (cmd->type) {
    case CMD_PUB:
        conn_cmd_pub(c, cmd, now);
        break;
    case CMD_SUB:
        st = broker_subscribe(c->client, cmd->topic, cmd->topic_len,
                              cmd->has_num ? (int64_t)cmd->num : -1);
        if (st == BR_OK) {
            conn_sub_add(c, cmd->topic, cmd->topic_len);
            conn_reply_lit(c, "+OK\r\n");
        } else {
            conn_reply_topic_error(c, st, cmd->topic, cmd->topic_len);
        }
        break;
    case CMD_UNSUB:
        if (broker_unsubscribe(c->client, cmd->topic, cmd->topic_len) == BR_MOVED) {
            conn_reply_moved(c, cmd->topic, cmd->topic_len);
            break;
        }
        conn_sub_forget(c, cmd->topic, cmd->topic_len);
        conn_reply_lit(c, "+OK\r\n");
        break;
    case CMD_GET:
        st = broker_get(c->client, cmd->topic, cmd->topic_len, cmd->has_num ? cmd->num : 0, now);
        conn_cmd_waiting(c, st, cmd->topic, cmd->topic_len);
        break;
    case CMD_ACK:
        conn_cmd_ack(c, cmd, now);
        break;
    case CMD_NACK:
        st = broker_nack(c->client, cmd->id, cmd->has_num ? cmd->num : 0, now);
        if (st == BR_OK)
            conn_reply_lit(c, "+OK\r\n");
        else
            conn_reply_notfound(c, cmd->id);
        break;
    case CMD_TOUCH:
        st = broker_touch(c->client, cmd->id, now);
        if (st == BR_OK)
            conn_reply_lit(c, "+OK\r\n");
        else
            conn_reply_notfound(c, cmd->id);
        break;
    case CMD_JOIN:
        st = broker_join(c->client, cmd->topic, cmd->topic_len,
                         cmd->has_num ? (int64_t)cmd->num : -1, now);
        if (st == BR_OK)
            conn_reply_lit(c, "+OK\r\n");
        else
            conn_cmd_waiting(c, st, cmd->topic, cmd->topic_len);
        break;
    case CMD_BURY:
        conn_cmd_bury(c, cmd, now);
        break;
    case CMD_KICK:
        conn_cmd_kick(c, cmd, now);
        break;
    case CMD_PAUSE:
        conn_cmd_pause(c, cmd, now);
        break;
    case CMD_STATS:
        conn_cmd_stats(c, cmd, now);
        break;
    case CMD_TOPICS:
        conn_cmd_topics(c);
        break;
    case CMD_AUTH:
        conn_cmd_auth(c, cmd);
        break;
    case CMD_PING:
        conn_reply_lit(c, "+PONG\r\n");
        break;
    case CMD_QUIT:
        conn_reply_lit(c, "+BYE\r\n");
        conn_set_state(c, CONN_CLOSING);
        break;
    case CMD_NONE:
        break;
    }
}

/* ---- large payloads, read straight into their message ---- */

/* A PUB whose payload is not all here yet (proto_parse said so): when it
 * is large, its message is made now, what has come is copied in once, and
 * the rest is read straight into it (conn_read_into), so it is neither
 * staged in the input buffer nor copied out of it, and the input buffer
 * does not grow to hold it. Smaller ones wait in the input buffer as
 * before: for them a copy costs less than the read it would save. A PUB
 * the connection may not make is left to the ordinary path, which answers
 * it once its payload is in. */
static void conn_pend_begin(conn_t *c, const proto_cmd_t *cmd, uint64_t now)
{
    size_t line, have;
    msg_t *m;

    if (cmd->type != CMD_PUB || cmd->payload_len < CONN_DIRECT_MIN ||
        (conn_cfg(c)->nusers > 0 &&
         (c->user == NULL || !conn_may(c, CMD_PUB, cmd->topic, cmd->topic_len))) ||
        (m = conn_pub_alloc(cmd, now)) == NULL)
        return;
    line = (size_t)(cmd->payload - (c->in + c->in_off));
    have = c->in_len - c->in_off - line;
    if (have > cmd->payload_len)
        have = cmd->payload_len; /* only the trailer is missing */
    memcpy(m->data, cmd->payload, have);
    memcpy(c->pend_topic, cmd->topic, cmd->topic_len);
    c->pend_topic_len = cmd->topic_len;
    c->pend_delay = cmd->delay_ms;
    c->pend = m;
    c->pend_have = have;
    c->in_off += line + have;
}

/* The pending PUB's payload is complete: check its trailer, which the
 * input buffer holds, and run it. False while bytes are missing. */
static bool conn_pend_finish(conn_t *c, uint64_t now)
{
    const char *p = c->in + c->in_off;
    size_t avail = c->in_len - c->in_off, tr;
    msg_t *m = c->pend;
    char err[PROTO_ERR_MAX];
    proto_cmd_t cmd;

    if (c->pend_have < m->len || avail == 0 || (p[0] == '\r' && avail == 1))
        return false;
    c->pend = NULL;
    tr = p[0] == '\n' ? 1 : p[0] == '\r' && p[1] == '\n' ? 2 : 0;
    if (tr == 0) {
        msg_free(m);
        proto_pub_bad_trailer(&c->parser, err);
        conn_reply(c, err, strlen(err));
        return true;
    }
    c->in_off += tr;
    cmd.type = CMD_PUB;
    cmd.topic = c->pend_topic;
    cmd.topic_len = c->pend_topic_len;
    cmd.delay_ms = c->pend_delay;
    cmd.payload = m->data;
    cmd.payload_len = m->len;
    cmd.has_pri = false; /* already in m's ext block, as are ttr= and delay= */
    cmd.ttr_ms = 0;
    c->pub_pre = m;
    conn_exec(c, &cmd, now);
    if (c->pub_pre != NULL) { /* refused before it was made (NOAUTH, DENIED) */
        msg_free(c->pub_pre);
        c->pub_pre = NULL;
    }
    broker_dispatch(c->host->broker, now);
    return true;
}

/* Run every complete command in the input, up to the fairness budget.
 * Returns true if input is left that could run now (budget spent). */
static bool conn_process(conn_t *c)
{
    uint64_t now = clock_ms();
    broker_t *b = c->host->broker;
    int budget = CONN_BUDGET;

    while (c->state == CONN_READING && !c->out_full && (c->in_off < c->in_len || c->pend)) {
        proto_cmd_t cmd;
        char err[PROTO_ERR_MAX];
        size_t used = 0;
        proto_result_t r;

        if (budget-- == 0)
            return true;
        if (c->pend && c->pend_have < c->pend->len)
            break;
        if (conn_unconfirmed_full(c)) {
            conn_set_state(c, CONN_CONFIRMING);
            break;
        }
        if (c->pend) {
            if (!conn_pend_finish(c, now))
                break;
            if (conn_out_over(c))
                c->out_full = true;
            continue;
        }
        cmd.type = CMD_NONE;
        r = proto_parse(&c->parser, c->in + c->in_off, c->in_len - c->in_off, &cmd, &used, err);
        if (c->unconfirmed.n > 0 && r != PROTO_NEED_MORE &&
            (r != PROTO_CMD || !conn_may_pass_unconfirmed(cmd.type))) {
            /* Parsing is pure: the same bytes parse again once they may run. */
            conn_set_state(c, CONN_CONFIRMING);
            break;
        }
        if (r == PROTO_CMD) {
            /* cmd points into the buffer: run it before giving the bytes up. */
            conn_exec(c, &cmd, now);
            broker_dispatch(b, now);
        } else if (r == PROTO_ERROR) {
            conn_reply(c, err, strlen(err));
        } else if (r == PROTO_FATAL) {
            conn_reply(c, err, strlen(err));
            log_info("closing %s: %.*s", c->peer, (int)strcspn(err, "\r\n"), err);
            conn_set_state(c, CONN_CLOSING);
        }
        c->in_off += used;
        if (r == PROTO_NEED_MORE) {
            conn_pend_begin(c, &cmd, now);
            break;
        }
        if (conn_out_over(c))
            c->out_full = true;
    }
    return false;
}

/* Everything that follows a batch of input: compact, flush, timers. */
static void conn_after_input(conn_t *c)
{
    conn_in_trim(c);
    if (conn_out_len(c) > 0)
        conn_want_flush(c);
    conn_touch(c);
    conn_update_reading(c);
}

/* The peer has sent all it ever will (shutdown of its side): once every
 * complete command it sent has run and been answered, and no GET, JOIN or
 * PUB of its is still waiting, the connection closes. So
 * `printf 'GET t 5000\r\n' | nc -q1 host port` waits for its message. */
static bool conn_finished(const conn_t *c, bool more)
{
    return c->peer_eof && c->state == CONN_READING && !more && !c->out_full &&
           c->unconfirmed.n == 0;
}

/* One read: the rest of a pending PUB's payload straight into its message
 * first, when one is being filled, then into the input buffer if it has
 * room. -1: the peer reset the connection. */
static int conn_read_into(conn_t *c, bool room)
{
    struct iovec iov[2];
    int k = 0;
    size_t left = 0, into;
    ssize_t n;

    if (c->pend && c->pend_have < c->pend->len) {
        left = c->pend->len - c->pend_have;
        iov[k++] = (struct iovec){ .iov_base = c->pend->data + c->pend_have, .iov_len = left };
    }
    if (room)
        iov[k++] = (struct iovec){ .iov_base = c->in + c->in_len, .iov_len = c->in_cap - c->in_len };
    n = readv(c->fd, iov, k);
    if (room)
        conn_read_learn(c, left + (c->in_cap - c->in_len), n);
    if (n > 0) {
        into = (size_t)n < left ? (size_t)n : left;
        c->pend_have += into;
        c->in_len += (size_t)n - into;
    } else if (n == 0) {
        c->peer_eof = true;
    } else if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
        return -1;
    }
    return 0;
}

static void conn_on_read(evutil_socket_t fd, short what, void *arg)
{
    conn_t *c = arg;
    bool more;

    (void)fd;
    (void)what;
    if (!c->peer_eof && (c->state == CONN_READING || c->state == CONN_WAITING ||
                         c->state == CONN_CONFIRMING)) {
        bool filling = c->pend && c->pend_have < c->pend->len;
        bool room = conn_in_reserve(c, filling ? CONN_READ_MIN : c->read_want);
        if (!room && !filling) {
            /* No room: the buffer is full of commands not run yet (a
             * waiting GET or JOIN, output over its limit, or the fairness
             * budget spent while reads kept coming). They run first; a
             * waiting connection stops reading. Only with nothing
             * buffered did the allocation itself fail. */
            if (c->in_off == c->in_len) {
                log_error("closing %s: cannot grow its input buffer", c->peer);
                conn_free(c);
                return;
            }
            conn_update_reading(c);
        } else if (conn_read_into(c, room) < 0) {
            conn_free(c); /* reset: nobody is left to answer */
            return;
        }
    }
    more = conn_process(c);
    if (more)
        event_active(c->rev, EV_READ, 0);
    if (conn_finished(c, more)) {
        conn_set_state(c, CONN_CLOSING);
        if (conn_out_len(c) == 0) {
            conn_free(c);
            return;
        }
    }
    conn_after_input(c);
}

/* ---- output ---- */

/* A big push is written from its message's own memory: ob's bytes and the
 * header go into out, then the lent payload (writev takes them together),
 * and the "\r\n" starts ob again. A credit of such pushes copied also grew
 * ob past CONN_OB_KEEP every turn. */
static void conn_push_lent(conn_t *c, const char *tname, size_t tlen, const msg_t *m)
{
    char hdr[PROTO_MSG_HDR_MAX];

    conn_out_add(c, hdr, proto_fmt_msg_header(hdr, tname, tlen, m->id, m->attempt, m->len));
    connhost_add_lent(conn_out(c), m);
    conn_out_add(c, "\r\n", 2);
}

/* A push: header, payload and "\r\n" formatted into ob, one copy of the
 * payload; a big one is lent instead (conn_push_lent), or when its message
 * is lent already goes to the evbuffer in three pieces, so ob does not
 * grow for it. */
static bool conn_on_deliver(void *ctx, const topic_t *t, const msg_t *m)
{
    conn_t *c = ctx;
    size_t tlen, n;
    const char *tname = topic_name(t, &tlen);
    char *p = NULL;

    if (connhost_lend(m))
        conn_push_lent(c, tname, tlen, m);
    else if (m->len <= CONN_OB_PUSH_MAX &&
             (p = conn_ob_room(c, PROTO_MSG_HDR_MAX + m->len + 2)) != NULL) {
        n = proto_fmt_msg_header(p, tname, tlen, m->id, m->attempt, m->len);
        memcpy(p + n, m->data, m->len);
        memcpy(p + n + m->len, "\r\n", 2);
        c->ob_len += n + m->len + 2;
    } else {
        char buf[PROTO_MSG_HDR_MAX];
        struct evbuffer *out = conn_out(c);
        n = proto_fmt_msg_header(buf, tname, tlen, m->id, m->attempt, m->len);
        evbuffer_add(out, buf, n);
        evbuffer_add(out, m->data, m->len);
        evbuffer_add(out, "\r\n", 2);
    }
    conn_want_flush(c);
    if (conn_out_over(c)) {
        c->out_full = true;
        return false;
    }
    return true;
}

static void conn_on_complete(void *ctx, br_op_t op, br_status_t st, const topic_t *t, uint64_t id)
{
    conn_t *c = ctx;
    size_t tlen = 0;
    const char *tname = t ? topic_name(t, &tlen) : "";

    if (op == BR_OP_PUB && cfifo_settle(&c->unconfirmed, id, st)) {
        /* Not the end of a wait: a parked PUB behind it stays parked. */
        conn_unconfirmed_drain(c);
        if (c->state == CONN_CONFIRMING)
            conn_set_state(c, CONN_READING);
        conn_update_reading(c);
        event_active(c->rev, EV_READ, 0);
        return;
    }
    if (op == BR_OP_PUB && st == BR_HELD) {
        /* Room was reserved before the PUB ran, unless confirm mode came
         * on (a reload) while it was parked. */
        if (cfifo_reserve(&c->unconfirmed, SIZE_MAX) == 0) {
            cfifo_push(&c->unconfirmed, id);
        } else {
            log_error("closing %s: out of memory for its confirmed PUBs", c->peer);
            conn_set_state(c, CONN_CLOSING); /* its replies could no longer stay in order */
            return;
        }
    } else if (op == BR_OP_PUB && st == BR_OK)
        conn_reply_u64(c, id);
    else if (op == BR_OP_JOIN && st == BR_OK)
        conn_reply_lit(c, "+OK\r\n");
    else if (st != BR_OK)
        conn_reply_topic_error(c, st, tname, tlen);
    /* GET's BR_OK reply was the MSG push itself. */
    if (c->state == CONN_PARKED || c->state == CONN_WAITING)
        conn_set_state(c, CONN_READING);
    /* We are inside a broker call: resume this connection's input later,
     * from the event loop, never from here. */
    conn_update_reading(c);
    event_active(c->rev, EV_READ, 0);
}

/* ob straight to the socket when nothing is ahead of it; what the kernel
 * does not take moves into out. 1: written, or moved behind out's bytes;
 * 0: the kernel took only part; -1: the peer is gone. */
static int conn_flush_ob(conn_t *c)
{
    ssize_t n;

    if (c->ob_len == 0)
        return 1;
    if (evbuffer_get_length(c->out) > 0) {
        conn_out(c);
        return 1;
    }
    n = write(c->fd, c->ob, c->ob_len);
    if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
        return -1;
    if (n < 0)
        n = 0;
    if ((size_t)n == c->ob_len) {
        c->ob_len = 0;
        return 1;
    }
    evbuffer_add(c->out, c->ob + n, c->ob_len - (size_t)n);
    c->ob_len = 0;
    return 0;
}

bool conn_flush(conn_t *c)
{
    int k = conn_flush_ob(c);

    if (k < 0) {
        conn_free(c);
        return false;
    }
    if (c->ob_cap > CONN_OB_KEEP) {
        free(c->ob);
        c->ob = NULL;
        c->ob_cap = 0;
    }
    if (k == 0) {
        event_add(c->wev, NULL); /* the kernel took part: the rest waits for room */
        return true;
    }
    k = connhost_write_out(c->out, c->fd);
    if (k == 0) {
        event_add(c->wev, NULL);
        return true;
    }
    if (k < 0) { /* the peer is gone: nothing more can reach it */
        conn_free(c);
        return false;
    }
    event_del(c->wev);
    if (c->state == CONN_CLOSING) {
        conn_free(c);
        return false;
    }
    if (c->out_full) {
        c->out_full = false;
        broker_client_resume(c->client, clock_ms());
        conn_update_reading(c);
        if (c->in_off < c->in_len || c->peer_eof)
            event_active(c->rev, EV_READ, 0);
    }
    return true;
}

static void conn_on_write(evutil_socket_t fd, short what, void *arg)
{
    conn_t *c = arg;

    (void)fd;
    (void)what;
    if (conn_flush(c))
        conn_touch(c);
}

/* ---- life ---- */

conn_t *conn_new(connhost_t *host, int fd, const char *peer)
{
    conn_t *c = calloc(1, sizeof *c);

    if (c == NULL)
        goto fail;
    c->host = host;
    c->fd = fd;
    c->state = CONN_READING; /* the start, not a change */
    c->read_want = CONN_READ_MIN;
    proto_parser_init(&c->parser, host->cfg->limits.max_line, host->cfg->limits.max_message);
    snprintf(c->peer, sizeof c->peer, "%s", peer);
    c->out = evbuffer_new();
    c->rev = event_new(host->base, fd, EV_READ | EV_PERSIST, conn_on_read, c);
    c->wev = event_new(host->base, fd, EV_WRITE | EV_PERSIST, conn_on_write, c);
    c->client = broker_client_new(host->broker, &conn_client_ops, c);
    if (c->out == NULL || c->rev == NULL || c->wev == NULL || c->client == NULL)
        goto fail;
    host->ops->conn_add(host, c);
    conn_update_reading(c);
    log_debug("connection from %s", peer);
    return c;
fail:
    log_error("cannot set up a connection from %s: out of memory", peer);
    if (c != NULL) {
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

void conn_free(conn_t *c)
{
    connhost_t *host = c->host;

    log_debug("closing connection from %s", c->peer);
    broker_client_free(c->client, clock_ms());
    host->ops->conn_remove(host, c);
    event_free(c->rev);
    event_free(c->wev);
    if (c->auth_delay)
        event_free(c->auth_delay);
    while (c->nsubs > 0)
        conn_sub_remove(c, c->nsubs - 1);
    free(c->subs);
    evbuffer_free(c->out);
    free(c->ob);
    msg_free(c->pend);
    cfifo_free(&c->unconfirmed);
    close(c->fd);
    free(c->in);
    free(c);
    /* Its messages went back to their topics: other consumers may take them. */
    broker_dispatch(host->broker, clock_ms());
    host->ops->touch(host);
}

/* Stands for a user that a reload removed: authenticated, allowed nothing. */
static const user_entry_t conn_user_removed = {.name = (char *)""};

void conn_reconfigure(conn_t *c, const config_t *cfg)
{
    const user_entry_t *u = c->user;

    /* Only the limits: a payload being skipped must go on being skipped. */
    c->parser.max_line = cfg->limits.max_line;
    c->parser.max_message = cfg->limits.max_message;
    if (u != NULL) {
        /* By name: a changed password does not matter to who is in. */
        c->user = &conn_user_removed;
        for (size_t i = 0; i < cfg->nusers; i++)
            if (strcmp(cfg->users[i].name, u->name) == 0)
                c->user = &cfg->users[i];
        if (c->user == &conn_user_removed && u != &conn_user_removed)
            log_info("%s: user '%s' is gone from the config; the connection stays, without rights",
                     c->peer, u->name);
    }
    conn_sub_recheck(c, cfg);
}

void conn_stop_reading(conn_t *c)
{
    if (c->reading) {
        event_del(c->rev);
        c->reading = false;
    }
}

bool conn_drained(const conn_t *c)
{
    return conn_out_len(c) == 0 && c->unconfirmed.n == 0;
}

static bool conn_open(connhost_t *host, int fd, const char *peer)
{
    return conn_new(host, fd, peer) != NULL;
}

const connproto_t conn_proto = {
    .label = "",
    .busy = "-BUSY too many connections\r\n",
    .open = conn_open,
};

void conn_refuse(int fd, const char *line)
{
    ssize_t n = write(fd, line, strlen(line));
    (void)n; /* best effort: the socket is closed either way */
    close(fd);
}
