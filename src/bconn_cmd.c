/* bconn_cmd.c: the beanstalk commands, run against the broker core.
 *
 * Seconds on the wire are milliseconds in the core. A put is a message with
 * an ext block (priority, TTR, creation time) published to the used tube's
 * topic; a reserve is broker_reserve over the watched tubes with
 * DEADLINE_SOON a second before a TTR ends. What the core answers maps onto
 * beanstalkd's replies here, and only here (docs/beanstalk.md has the
 * table). With users configured every tube a command touches is checked
 * against the listener's user's globs; a refusal is NOT_FOUND, as if the
 * tube or job did not exist.
 */
#include "bconn_int.h"

#include <stdlib.h>
#include <string.h>

#define BCONN_WATCH_STACK 16 /* a reserve over more watched tubes allocates its list */

static uint64_t bconn_ms(uint32_t sec) { return (uint64_t)sec * 1000; }

/* ---- rights ---- */

static bool bconn_user_may(const bconn_t *c, const char *tube, size_t len, bconn_right_t right)
{
    const user_entry_t *u = c->set->user;

    if (u == NULL)
        return false;
    return (right != BCONN_READ && config_user_allows(u, true, tube, len)) ||
           (right != BCONN_PUT && config_user_allows(u, false, tube, len));
}

bool bconn_may(const bconn_t *c, const char *tube, size_t len, bconn_right_t right)
{
    /* Without users (the common case) this is all, on every reserve. */
    return c->host->cfg->nusers == 0 || bconn_user_may(c, tube, len, right);
}

/* Job `id` exists (in any state but held) in a tube the user may `right`. */
static bool bconn_may_job(const bconn_t *c, uint64_t id, bconn_right_t right)
{
    const msg_t *m;
    const char *name;
    size_t len;

    if (c->host->cfg->nusers == 0)
        return true;
    m = broker_peek_id(c->host->broker, id);
    if (m == NULL || m->topic == NULL)
        return false;
    name = topic_name(m->topic, &len);
    return bconn_may(c, name, len, right);
}

static bool bconn_may_use(const bconn_t *c, bconn_right_t right)
{
    return bconn_may(c, c->use->name, c->use->len, right);
}

/* ---- replies ---- */

static void bconn_reply_found(bconn_t *c, const msg_t *m)
{
    char head[BPROTO_REPLY_MAX];

    if (m == NULL) {
        bconn_reply_lit(c, BPROTO_R_NOT_FOUND);
        return;
    }
    bconn_reply_job(c, head, bproto_fmt_found(head, m->id, m->len), m);
}

static void bconn_reply_num(bconn_t *c, size_t (*fmt)(char *, uint64_t), uint64_t v)
{
    char line[BPROTO_REPLY_MAX];

    bconn_reply(c, line, fmt(line, v));
}

/* A status that is not the command's success, in beanstalk's words. */
static void bconn_reply_status(bconn_t *c, br_status_t st)
{
    switch (st) {
    case BR_NOTFOUND:
        bconn_reply_lit(c, BPROTO_R_NOT_FOUND);
        break;
    case BR_TIMEOUT:
        bconn_reply_lit(c, BPROTO_R_TIMED_OUT);
        break;
    case BR_DEADLINE_SOON:
        bconn_reply_lit(c, BPROTO_R_DEADLINE_SOON);
        break;
    case BR_FULL:    /* a full tube (reject, block timeout) or server memory */
    case BR_NOTOPIC: /* max_topics reached, or auto_create_topics off */
        bconn_reply_lit(c, BPROTO_R_OUT_OF_MEMORY);
        break;
    default: /* BR_UNAVAILABLE: the mirror did not take it */
        bconn_reply_lit(c, BPROTO_R_INTERNAL_ERROR);
        break;
    }
}

/* The command's reply word when the core said BR_OK, else its status. */
static void bconn_reply_if(bconn_t *c, br_status_t st, const char *ok, size_t oklen)
{
    if (st == BR_OK)
        bconn_reply(c, ok, oklen);
    else
        bconn_reply_status(c, st);
}

#define bconn_reply_if_lit(c, st, lit) bconn_reply_if((c), (st), (lit), sizeof(lit) - 1)

/* ---- put ---- */

/* stats' current-producers: a connection that put (its line parsed). */
static void bconn_mark_producer(bconn_t *c)
{
    if (!c->producer) {
        c->producer = true;
        c->set->producers++;
    }
}

/* beanstalkd counts a put (cmd-put) once its line parses, before its body
 * is read, and makes a producer of a connection whose put was not too big. */
void bconn_put_refused(bconn_t *c, const char *err)
{
    bool crlf = strcmp(err, BPROTO_R_EXPECTED_CRLF) == 0;

    if (!crlf && strcmp(err, BPROTO_R_JOB_TOO_BIG) != 0)
        return;
    c->set->cmds[BCMD_PUT]++;
    if (crlf)
        bconn_mark_producer(c);
}

static void bconn_cmd_put(bconn_t *c, const bproto_cmd_t *cmd, uint64_t now)
{
    msg_t *m;
    uint64_t id = 0;
    br_status_t st;

    if (c->host->draining) {
        bconn_reply_lit(c, BPROTO_R_DRAINING);
        return;
    }
    if (!bconn_may_use(c, BCONN_PUT)) {
        bconn_reply_lit(c, BPROTO_R_NOT_FOUND);
        return;
    }
    bconn_mark_producer(c);
    m = msg_new_job((uint32_t)cmd->body_len, cmd->pri, bconn_ms(cmd->ttr), bconn_ms(cmd->delay),
                    now);
    if (m == NULL) {
        bconn_reply_lit(c, BPROTO_R_OUT_OF_MEMORY);
        return;
    }
    memcpy(m->data, cmd->body, cmd->body_len);
    st = broker_publish(c->client, c->use->name, c->use->len, m, bconn_ms(cmd->delay), now, &id);
    if (st == BR_OK)
        bconn_reply_num(c, bproto_fmt_inserted, id);
    else if (st == BR_HELD)
        bconn_set_state(c, BCONN_HELD); /* INSERTED once the mirror has it */
    else if (st == BR_PENDING)
        bconn_set_state(c, BCONN_PARKED); /* a full block tube: the socket is not read */
    else
        bconn_reply_status(c, st);
}

/* ---- reserve ---- */

static void bconn_reserve_status(bconn_t *c, br_status_t st)
{
    if (st == BR_PENDING)
        bconn_set_state(c, BCONN_WAITING);
    else if (st != BR_OK) /* BR_OK: RESERVED went out through deliver() */
        bconn_reply_status(c, st);
}

/* stats' current-workers: a connection that reserved (or reserve-job'd). */
static void bconn_mark_worker(bconn_t *c)
{
    if (!c->worker) {
        c->worker = true;
        c->set->workers++;
    }
}

static void bconn_cmd_reserve(bconn_t *c, int64_t timeout_ms, uint64_t now)
{
    const char *snames[BCONN_WATCH_STACK];
    size_t slens[BCONN_WATCH_STACK];
    const char **names = snames;
    size_t *lens = slens, n = 0;
    br_reserve_t r;

    bconn_mark_worker(c);
    if (c->nwatch > BCONN_WATCH_STACK) {
        names = malloc(c->nwatch * sizeof *names);
        lens = malloc(c->nwatch * sizeof *lens);
        if (names == NULL || lens == NULL) {
            free(names);
            free(lens);
            bconn_reply_lit(c, BPROTO_R_OUT_OF_MEMORY);
            return;
        }
    }
    /* Only the watched tubes the user may read: never a wait on the others. */
    for (size_t i = 0; i < c->nwatch; i++) {
        if (!bconn_may(c, c->watch[i]->name, c->watch[i]->len, BCONN_READ))
            continue;
        names[n] = c->watch[i]->name;
        lens[n++] = c->watch[i]->len;
    }
    r = (br_reserve_t){.names = names, .lens = lens, .n = n, .timeout_ms = timeout_ms,
                       .soon_ms = BCONN_SOON_MS};
    if (n == 0)
        bconn_reply_lit(c, BPROTO_R_NOT_FOUND);
    else
        bconn_reserve_status(c, broker_reserve(c->client, &r, now));
    if (names != snames) {
        free(names);
        free(lens);
    }
}

void bconn_completed(bconn_t *c, br_op_t op, br_status_t st, uint64_t id)
{
    if (op == BR_OP_PUB && st == BR_HELD) {
        bconn_set_state(c, BCONN_HELD); /* a parked put taken in: now the mirror */
        return;
    }
    if (op == BR_OP_PUB && st == BR_OK)
        bconn_reply_num(c, bproto_fmt_inserted, id);
    else if (st != BR_OK) /* a reserve's BR_OK: RESERVED went out through deliver() */
        bconn_reply_status(c, st);
    if (c->state == BCONN_PARKED || c->state == BCONN_WAITING || c->state == BCONN_HELD)
        bconn_set_state(c, BCONN_READING);
}

/* ---- tubes ---- */

static void bconn_cmd_use(bconn_t *c, const bproto_cmd_t *cmd)
{
    char line[BPROTO_USING_MAX];

    if (!bconn_may(c, cmd->tube, cmd->tube_len, BCONN_LOOK)) {
        bconn_reply_lit(c, BPROTO_R_NOT_FOUND);
        return;
    }
    if (!bconn_use(c, cmd->tube, cmd->tube_len)) {
        bconn_reply_lit(c, BPROTO_R_OUT_OF_MEMORY);
        return;
    }
    bconn_reply(c, line, bproto_fmt_using(line, c->use->name, c->use->len));
}

static void bconn_cmd_watch(bconn_t *c, const bproto_cmd_t *cmd)
{
    if (!bconn_may(c, cmd->tube, cmd->tube_len, BCONN_READ))
        bconn_reply_lit(c, BPROTO_R_NOT_FOUND);
    else if (!bconn_watch(c, cmd->tube, cmd->tube_len))
        bconn_reply_lit(c, BPROTO_R_OUT_OF_MEMORY);
    else
        bconn_reply_num(c, bproto_fmt_watching, c->nwatch);
}

static void bconn_cmd_ignore(bconn_t *c, const bproto_cmd_t *cmd)
{
    if (bconn_ignore(c, cmd->tube, cmd->tube_len) == 0)
        bconn_reply_lit(c, BPROTO_R_NOT_IGNORED);
    else
        bconn_reply_num(c, bproto_fmt_watching, c->nwatch);
}

static void bconn_cmd_pause(bconn_t *c, const bproto_cmd_t *cmd, uint64_t now)
{
    broker_t *b = c->host->broker;

    if (!bconn_may(c, cmd->tube, cmd->tube_len, BCONN_LOOK) ||
        !bconn_tube_exists(c->set, cmd->tube, cmd->tube_len, now)) {
        bconn_reply_lit(c, BPROTO_R_NOT_FOUND);
        return;
    }
    /* A tube that is only used or watched has no topic yet. */
    if (!broker_ensure_topic(b, cmd->tube, cmd->tube_len)) {
        bconn_reply_lit(c, BPROTO_R_OUT_OF_MEMORY);
        return;
    }
    bconn_reply_if_lit(c, broker_pause(b, cmd->tube, cmd->tube_len, bconn_ms(cmd->delay), now),
                       BPROTO_R_PAUSED);
}

/* ---- jobs ---- */

static void bconn_cmd_peek(bconn_t *c, bproto_cmd_type_t type, uint64_t id)
{
    const broker_t *b = c->host->broker;
    const char *tube = c->use->name;
    size_t len = c->use->len;
    const msg_t *m = NULL;

    if (type == BCMD_PEEK) {
        if (bconn_may_job(c, id, BCONN_LOOK))
            m = broker_peek_id(b, id);
    } else if (bconn_may_use(c, BCONN_LOOK)) {
        m = type == BCMD_PEEK_READY     ? broker_peek_ready(b, tube, len)
            : type == BCMD_PEEK_DELAYED ? broker_peek_delayed(b, tube, len)
                                        : broker_peek_buried(b, tube, len);
    }
    bconn_reply_found(c, m);
}

static void bconn_cmd_kick(bconn_t *c, uint32_t bound, uint64_t now)
{
    uint64_t kicked = 0;

    /* A tube with no topic has nothing to kick: KICKED 0, as beanstalkd. */
    if (bconn_may_use(c, BCONN_LOOK) &&
        broker_kick(c->host->broker, c->use->name, c->use->len, bound, now, &kicked) != BR_OK)
        kicked = 0;
    bconn_reply_num(c, bproto_fmt_kicked, kicked);
}

static void bconn_cmd_job(bconn_t *c, const bproto_cmd_t *cmd, uint64_t now)
{
    uint64_t id = cmd->id;
    br_status_t st;

    switch (cmd->type) {
    case BCMD_RESERVE_JOB:
        st = bconn_may_job(c, id, BCONN_READ) ? broker_reserve_id(c->client, id, now)
                                               : BR_NOTFOUND;
        if (st == BR_OK) /* as beanstalkd: a worker once it got one */
            bconn_mark_worker(c);
        else
            bconn_reply_status(c, st);
        break;
    case BCMD_DELETE:
        st = bconn_may_job(c, id, BCONN_READ) ? broker_delete(c->client, id, now) : BR_NOTFOUND;
        bconn_reply_if_lit(c, st, BPROTO_R_DELETED);
        break;
    case BCMD_RELEASE: /* only a job this connection holds: its rights were checked */
        st = broker_release(c->client, id, cmd->pri, bconn_ms(cmd->delay), now);
        bconn_reply_if_lit(c, st, BPROTO_R_RELEASED);
        break;
    case BCMD_BURY:
        bconn_reply_if_lit(c, broker_bury(c->client, id, cmd->pri, now), BPROTO_R_BURIED);
        break;
    case BCMD_TOUCH:
        bconn_reply_if_lit(c, broker_touch(c->client, id, now), BPROTO_R_TOUCHED);
        break;
    case BCMD_KICK_JOB:
        st = bconn_may_job(c, id, BCONN_LOOK) ? broker_kick_id(c->host->broker, id, now)
                                               : BR_NOTFOUND;
        bconn_reply_if_lit(c, st, BPROTO_R_KICKED);
        break;
    case BCMD_STATS_JOB:
        if (!bconn_may_job(c, id, BCONN_LOOK) || !bconn_stats_job(c, id, now))
            bconn_reply_lit(c, BPROTO_R_NOT_FOUND);
        break;
    default:
        break;
    }
}

/* ---- the table ---- */

void bconn_exec(bconn_t *c, const bproto_cmd_t *cmd, uint64_t now)
{
    c->set->cmds[cmd->type]++;
    switch (cmd->type) {
    case BCMD_PUT:
        bconn_cmd_put(c, cmd, now);
        break;
    case BCMD_RESERVE:
        bconn_cmd_reserve(c, -1, now);
        break;
    case BCMD_RESERVE_TIMEOUT:
        bconn_cmd_reserve(c, cmd->timeout < 0 ? -1 : (int64_t)bconn_ms((uint32_t)cmd->timeout),
                          now);
        break;
    case BCMD_USE:
        bconn_cmd_use(c, cmd);
        break;
    case BCMD_WATCH:
        bconn_cmd_watch(c, cmd);
        break;
    case BCMD_IGNORE:
        bconn_cmd_ignore(c, cmd);
        break;
    case BCMD_PEEK:
    case BCMD_PEEK_READY:
    case BCMD_PEEK_DELAYED:
    case BCMD_PEEK_BURIED:
        bconn_cmd_peek(c, cmd->type, cmd->id);
        break;
    case BCMD_KICK:
        bconn_cmd_kick(c, cmd->bound, now);
        break;
    case BCMD_PAUSE_TUBE:
        bconn_cmd_pause(c, cmd, now);
        break;
    case BCMD_STATS:
        bconn_stats(c, now);
        break;
    case BCMD_STATS_TUBE:
        if (!bconn_may(c, cmd->tube, cmd->tube_len, BCONN_LOOK) ||
            !bconn_tube_exists(c->set, cmd->tube, cmd->tube_len, now))
            bconn_reply_lit(c, BPROTO_R_NOT_FOUND);
        else
            bconn_stats_tube(c, cmd->tube, cmd->tube_len, now);
        break;
    case BCMD_LIST_TUBES:
        bconn_list_tubes(c, now);
        break;
    case BCMD_LIST_TUBE_USED: {
        char line[BPROTO_USING_MAX];
        bconn_reply(c, line, bproto_fmt_using(line, c->use->name, c->use->len));
        break;
    }
    case BCMD_LIST_TUBES_WATCHED:
        bconn_list_watched(c);
        break;
    case BCMD_QUIT:
        bconn_set_state(c, BCONN_CLOSING);
        break;
    case BCMD_NONE:
        break;
    default:
        bconn_cmd_job(c, cmd, now);
        break;
    }
}
