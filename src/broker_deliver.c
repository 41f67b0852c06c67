/* broker_deliver.c: consumers and delivery: a client's subscriptions and
 * their credit, the room lists (subscriptions that can take a push), GETs
 * served before SUBs, round-robin dispatch of ready messages, and taking a
 * message out of flight again (the inverse of a delivery).
 *
 * Pushes happen only in broker_dispatch(), after the command's reply.
 */
#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "broker_internal.h"

/* ---- the dispatch queue (broker_mark is in broker_internal.h) ---- */

static topic_t *broker_unmark(broker_t *b)
{
    topic_t *t = STAILQ_FIRST(&b->dispatchq);

    if (t == NULL)
        return NULL;
    STAILQ_REMOVE_HEAD(&b->dispatchq, dlink);
    t->in_dispatch = false;
    return t;
}

/* ---- clients: subscriptions ---- */

static size_t broker_sub_pos(const client_t *c, const topic_t *t)
{
    size_t lo = 0, hi = c->nsubs;

    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if ((uintptr_t)c->subs[mid]->topic < (uintptr_t)t)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

static sub_t *broker_find_sub(const client_t *c, const topic_t *t)
{
    size_t i = broker_sub_pos(c, t);

    return i < c->nsubs && c->subs[i]->topic == t ? c->subs[i] : NULL;
}

static int broker_add_sub(client_t *c, sub_t *s)
{
    size_t i;

    if (c->nsubs == c->subs_cap) {
        size_t cap = c->subs_cap ? c->subs_cap * 2 : 4;
        sub_t **n = realloc(c->subs, cap * sizeof(*n));
        if (n == NULL)
            return -1;
        c->subs = n;
        c->subs_cap = cap;
    }
    i = broker_sub_pos(c, s->topic);
    memmove(&c->subs[i + 1], &c->subs[i], (c->nsubs - i) * sizeof(*c->subs));
    c->subs[i] = s;
    c->nsubs++;
    return 0;
}

/* Keep s in its topic's room list exactly while it can take a push. */
static void broker_sub_refresh(broker_t *b, sub_t *s)
{
    bool room = s->inflight < s->credit && !s->client->paused;

    if (room && !s->in_room) {
        s->in_room = true;
        TAILQ_INSERT_TAIL(&s->topic->room, s, rlink);
        if (s->topic->ready.n > 0)
            broker_mark(b, s->topic);
    } else if (!room && s->in_room) {
        s->in_room = false;
        TAILQ_REMOVE(&s->topic->room, s, rlink);
    }
}

void broker_sub_drop(client_t *c, sub_t *s)
{
    size_t i = broker_sub_pos(c, s->topic);

    if (s->in_room)
        TAILQ_REMOVE(&s->topic->room, s, rlink);
    s->topic->nsubs--;
    if (s->topic->nparked != 0)
        c->b->retry_parked = true; /* max_lag applies only while subscribed */
    memmove(&c->subs[i], &c->subs[i + 1], (c->nsubs - i - 1) * sizeof(*c->subs));
    c->nsubs--;
    free(s);
}

static void broker_client_pause(client_t *c)
{
    c->paused = true;
    for (size_t i = 0; i < c->nsubs; i++)
        broker_sub_refresh(c->b, c->subs[i]);
}

/* ---- delivery ---- */

/* Push m (just out of t's ready queue, or any other by id) to c, under
 * sub s (NULL for a GET or a reserve). -1 when out of memory for the id
 * index: m is back at the head of ready. */
int broker_deliver(client_t *c, topic_t *t, msg_t *m, sub_t *s, uint64_t now)
{
    broker_t *b = c->b;
    bool ok;

    if (broker_index(b, m) < 0) {
        topic_ready_push_head(t, m);
        return -1;
    }
    m->state = MSG_INFLIGHT;
    m->owner = c;
    if (m->attempt < UINT16_MAX)
        m->attempt++;
    m->deadline = broker_sat_add(now, broker_ttr(t, m));
    topic_inflight_add(t, m);
    broker_due_floor(c, m->deadline);
    TAILQ_INSERT_TAIL(&c->owned, m, olink);
    if (s != NULL) {
        m->flags |= MSG_F_CREDITED;
        s->inflight++;
    }
    BR_COUNT(b, t, delivered);
    broker_arm(b, t, m->deadline);
    broker_obs_attempted(b, t, m);
    ok = c->ops.deliver == NULL || c->ops.deliver(c->ctx, t, m);
    if (s != NULL)
        broker_sub_refresh(b, s);
    if (!ok)
        broker_client_pause(c);
    return 0;
}

/* Waiting GETs come before SUB consumers. */
static void broker_serve_gets(topic_t *t, uint64_t now)
{
    client_t *c;

    while (t->ready.n > 0 && (c = TAILQ_FIRST(&t->gets)) != NULL) {
        msg_t *m = topic_ready_pop(t);
        if (broker_deliver(c, t, m, NULL, now) < 0)
            return;
        broker_unwait(c);
        broker_complete(c, BR_OP_GET, BR_OK, t, m->id);
    }
}

/* True when its deliveries shortened a max_lag topic's ready queue while
 * producers are parked on it: they may fit now (any other bound waits for
 * a message to leave). */
static bool broker_dispatch_topic(topic_t *t, uint64_t now)
{
    sub_t *s;

    /* A paused topic is marked again when its pause ends. */
    if (topic_paused(t, now))
        return false;
    broker_serve_gets(t, now);
    if (!TAILQ_EMPTY(&t->reservers))
        broker_serve_reserves(t, now);
    while (t->ready.n > 0 && (s = TAILQ_FIRST(&t->room)) != NULL && TAILQ_EMPTY(&t->gets) &&
           TAILQ_EMPTY(&t->reservers)) {
        if (broker_deliver(s->client, t, topic_ready_pop(t), s, now) < 0)
            return false;
        /* Round-robin: a consumer that still has room goes to the back. */
        if (s->in_room) {
            TAILQ_REMOVE(&t->room, s, rlink);
            TAILQ_INSERT_TAIL(&t->room, s, rlink);
        }
    }
    return t->nparked != 0 && t->conf->max_lag != 0;
}

void broker_dispatch(broker_t *b, uint64_t now)
{
    topic_t *t;

    broker_settle(b, now);
    while ((t = broker_unmark(b)) != NULL) {
        if (broker_dispatch_topic(t, now)) {
            b->retry_parked = true;
            broker_settle(b, now); /* a PUB it lets in marks t again */
        }
    }
}

/* ---- leaving flight ---- */

/* Take m out of flight: topic list, owner's list, id index, credit. */
void broker_unflight(broker_t *b, msg_t *m)
{
    topic_t *t = m->topic;
    client_t *c = m->owner;

    topic_inflight_remove(t, m);
    TAILQ_REMOVE(&c->owned, m, olink);
    broker_unindex(b, m);
    if (m->flags & MSG_F_CREDITED) {
        sub_t *s = broker_find_sub(c, t);
        assert(s != NULL && s->inflight > 0);
        s->inflight--;
        m->flags &= (uint8_t)~MSG_F_CREDITED;
        broker_sub_refresh(b, s);
    }
    m->owner = NULL;
    m->state = MSG_NEW;
    /* Nothing left to time: leave the heap now rather than wake for nothing. */
    if (t->inflight.n == 0 && t->ndelayed == 0 && t->pause_ms == 0 &&
        t->timer.idx != TNODE_NONE)
        broker_heap_remove(b, &t->timer);
}

/* ---- commands of consumers ---- */

br_status_t broker_subscribe(client_t *c, const char *topic, size_t tlen, int64_t credit)
{
    broker_t *b = c->b;
    topic_t *t = broker_topic_for(b, topic, tlen, c);
    sub_t *s;

    if (t == NULL)
        return broker_missing(b, c, topic, tlen);
    s = broker_find_sub(c, t);
    if (s == NULL) {
        s = calloc(1, sizeof(*s));
        /* Out of memory has no reply of its own; -ERR is the closest. */
        if (s == NULL)
            return BR_NOTOPIC;
        s->client = c;
        s->topic = t;
        if (broker_add_sub(c, s) < 0) {
            free(s);
            return BR_NOTOPIC;
        }
        t->nsubs++;
    }
    if (credit < 0)
        s->credit = t->conf->prefetch;
    else
        s->credit = credit > (int64_t)UINT32_MAX ? UINT32_MAX : (uint32_t)credit;
    broker_sub_refresh(b, s);
    return BR_OK;
}

br_status_t broker_unsubscribe(client_t *c, const char *topic, size_t tlen)
{
    topic_t *t = broker_find(c->b, topic, tlen);
    sub_t *s = t != NULL ? broker_find_sub(c, t) : NULL;
    msg_t *m;

    if (t == NULL && broker_placed_away(c->b, c, topic, tlen))
        return BR_MOVED;
    if (s == NULL)
        return BR_OK;
    /* Its messages stay owned but no longer count against a credit. */
    TAILQ_FOREACH(m, &c->owned, olink)
        if (m->topic == t)
            m->flags &= (uint8_t)~MSG_F_CREDITED;
    broker_sub_drop(c, s);
    return BR_OK;
}

br_status_t broker_get(client_t *c, const char *topic, size_t tlen, uint64_t timeout_ms,
                       uint64_t now)
{
    broker_t *b = c->b;
    topic_t *t;

    assert(c->wait == WAIT_NONE);
    t = broker_topic_for(b, topic, tlen, c);
    if (t == NULL)
        return broker_missing(b, c, topic, tlen);
    if (!topic_paused(t, now)) {
        broker_serve_gets(t, now);
        if (t->ready.n > 0 && broker_deliver(c, t, topic_ready_pop(t), NULL, now) == 0)
            return BR_OK;
    }
    if (timeout_ms == 0)
        return BR_TIMEOUT;
    broker_wait(c, WAIT_GET, t);
    broker_wait_timer(c, broker_sat_add(now, timeout_ms));
    return BR_PENDING;
}

void broker_client_resume(client_t *c, uint64_t now)
{
    if (!c->paused)
        return;
    c->paused = false;
    for (size_t i = 0; i < c->nsubs; i++)
        broker_sub_refresh(c->b, c->subs[i]);
    broker_dispatch(c->b, now);
}
