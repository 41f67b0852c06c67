/* topic.c: a topic's message structures (ready FIFO, delay heap, in-flight
 * list, held list) and their counts. No policy lives here: see broker.c and
 * broker_*.c.
 */
#include <stdlib.h>
#include <string.h>

#include "topic.h"

void topic_q_init(msgq_t *q)
{
    TAILQ_INIT(&q->list);
    q->n = 0;
}

void topic_q_push_tail(msgq_t *q, msg_t *m)
{
    TAILQ_INSERT_TAIL(&q->list, m, link);
    q->n++;
}

void topic_q_push_head(msgq_t *q, msg_t *m)
{
    TAILQ_INSERT_HEAD(&q->list, m, link);
    q->n++;
}

void topic_q_remove(msgq_t *q, msg_t *m)
{
    TAILQ_REMOVE(&q->list, m, link);
    q->n--;
}

msg_t *topic_q_pop_head(msgq_t *q)
{
    msg_t *m = TAILQ_FIRST(&q->list);

    if (m != NULL)
        topic_q_remove(q, m);
    return m;
}

topic_t *topic_new(const char *name, size_t len, const topic_conf_t *conf)
{
    topic_t *t = calloc(1, sizeof(*t) + len + 1);

    if (t == NULL)
        return NULL;
    memcpy(t->name, name, len);
    t->name[len] = '\0';
    t->name_len = len;
    t->conf = conf;
    topic_q_init(&t->ready);
    topic_q_init(&t->inflight);
    topic_q_init(&t->held);
    topic_q_init(&t->buried);
    TAILQ_INIT(&t->room);
    TAILQ_INIT(&t->reservers);
    TAILQ_INIT(&t->parked);
    TAILQ_INIT(&t->gets);
    TAILQ_INIT(&t->joins);
    t->timer.idx = TNODE_NONE;
    t->timer.kind = TNODE_TOPIC;
    return t;
}

static void topic_free_queue(msgq_t *q)
{
    msg_t *m;

    while ((m = topic_q_pop_head(q)) != NULL)
        msg_free(m);
}

void topic_free(topic_t *t)
{
    if (t == NULL)
        return;
    topic_free_queue(&t->ready);
    topic_free_queue(&t->inflight);
    topic_free_queue(&t->held);
    topic_free_queue(&t->buried);
    for (size_t i = 0; i < t->ndelayed; i++)
        msg_free(t->delayed[i]);
    free(t->delayed);
    free(t);
}

/* ---- ready ---- */

/* The counts a ready message is part of; sign +1 on entry, -1 on exit.
 * A plain message (the hot path) is only bytes: no priority to look at. */
static inline void topic_ready_count(topic_t *t, const msg_t *m, int sign)
{
    uint64_t d = (uint64_t)(int64_t)sign;

    t->ready_bytes += d * m->len;
    if (!(m->flags & (MSG_F_EXT | MSG_F_INDEXED)))
        return;
    uint32_t pri = msg_pri(m);
    if (pri < MSG_PRI_DEFAULT)
        t->ready_urgent += d;
    else if (pri > MSG_PRI_DEFAULT)
        t->ready_low += d;
    if (m->flags & MSG_F_INDEXED)
        t->ready_indexed += d;
}

static inline void topic_ready_link(topic_t *t, msg_t *m, msg_t *after)
{
    m->state = MSG_READY;
    if (after == NULL)
        TAILQ_INSERT_HEAD(&t->ready.list, m, link);
    else
        TAILQ_INSERT_AFTER(&t->ready.list, after, m, link);
    t->ready.n++;
    topic_ready_count(t, m, +1);
}

void topic_ready_place_tail(topic_t *t, msg_t *m)
{
    uint32_t pri = msg_pri(m);
    msg_t *after = TAILQ_LAST(&t->ready.list, msg_list);

    while (after != NULL && msg_pri(after) > pri)
        after = TAILQ_PREV(after, msg_list, link);
    topic_ready_link(t, m, after);
}

void topic_ready_push_head(topic_t *t, msg_t *m)
{
    uint32_t pri = msg_pri(m);
    msg_t *before = TAILQ_FIRST(&t->ready.list);

    if (t->ready_urgent > 0 || pri > MSG_PRI_DEFAULT)
        while (before != NULL && msg_pri(before) < pri)
            before = TAILQ_NEXT(before, link);
    topic_ready_link(t, m, before != NULL ? TAILQ_PREV(before, msg_list, link)
                                          : TAILQ_LAST(&t->ready.list, msg_list));
}

static bool topic_ready_before(const msg_t *a, uint32_t pri, uint64_t id)
{
    uint32_t p = msg_pri(a);

    return p < pri || (p == pri && a->id < id);
}

void topic_ready_insert(topic_t *t, msg_t *m)
{
    uint32_t pri = msg_pri(m);
    msg_t *e = TAILQ_LAST(&t->ready.list, msg_list);

    /* Newest of the least urgent: the tail, as for a first delivery. */
    if (e == NULL || topic_ready_before(e, pri, m->id)) {
        topic_ready_link(t, m, e);
        return;
    }
    /* Older ids (a release, a kick) belong near the head of their band. */
    e = TAILQ_FIRST(&t->ready.list);
    while (e != NULL && topic_ready_before(e, pri, m->id))
        e = TAILQ_NEXT(e, link);
    topic_ready_link(t, m, e != NULL ? TAILQ_PREV(e, msg_list, link)
                                     : TAILQ_LAST(&t->ready.list, msg_list));
}

void topic_ready_remove(topic_t *t, msg_t *m)
{
    topic_q_remove(&t->ready, m);
    topic_ready_count(t, m, -1);
}

msg_t *topic_ready_take_head(topic_t *t)
{
    msg_t *m = TAILQ_FIRST(&t->ready.list);

    if (m != NULL)
        topic_ready_remove(t, m);
    return m;
}

void topic_ready_splice_head(topic_t *t, msgq_t *chain)
{
    msg_t *m;
    bool plain = t->ready_urgent == 0;

    TAILQ_FOREACH(m, &chain->list, link)
        plain = plain && msg_pri(m) == MSG_PRI_DEFAULT;
    if (!plain) {
        /* Mixed priorities: each to the head of its own, last first. */
        while ((m = TAILQ_LAST(&chain->list, msg_list)) != NULL) {
            topic_q_remove(chain, m);
            topic_ready_push_head(t, m);
        }
        return;
    }
    TAILQ_FOREACH(m, &chain->list, link) {
        m->state = MSG_READY;
        topic_ready_count(t, m, +1);
    }
    /* chain + ready into chain (ready left empty), then all of it back. */
    TAILQ_CONCAT(&chain->list, &t->ready.list, link);
    TAILQ_CONCAT(&t->ready.list, &chain->list, link);
    t->ready.n += chain->n;
    chain->n = 0;
}

/* ---- buried ---- */

void topic_bury(topic_t *t, msg_t *m)
{
    m->state = MSG_BURIED;
    topic_q_push_tail(&t->buried, m);
}

void topic_unbury(topic_t *t, msg_t *m)
{
    topic_q_remove(&t->buried, m);
}

/* ---- in flight ---- */

void topic_inflight_add(topic_t *t, msg_t *m)
{
    msgq_t *q = &t->inflight;
    msg_t *after = TAILQ_LAST(&q->list, msg_list);

    /* The ack timeout is one value per topic, so a new deadline is almost
     * always the latest; only a reload that shortens it makes us walk. */
    while (after != NULL && after->deadline > m->deadline)
        after = TAILQ_PREV(after, msg_list, link);
    if (after == NULL)
        TAILQ_INSERT_HEAD(&q->list, m, link);
    else
        TAILQ_INSERT_AFTER(&q->list, after, m, link);
    q->n++;
}

void topic_inflight_remove(topic_t *t, msg_t *m)
{
    topic_q_remove(&t->inflight, m);
}

/* ---- delayed ---- */

/* Due time, then for jobs the order they were delayed in (beanstalkd's
 * due times are in nanoseconds, so of two due in one millisecond the one
 * delayed first comes first, whatever their ids), else the id. */
static bool topic_delay_less(const msg_t *a, const msg_t *b)
{
    const msg_ext_t *xa, *xb;

    if (a->deadline != b->deadline)
        return a->deadline < b->deadline;
    xa = msg_ext(a);
    xb = msg_ext(b);
    if (xa != NULL && xb != NULL)
        return xa->delay_seq < xb->delay_seq;
    return a->id < b->id;
}

/* Sift the heap's node at i down into place; i < ndelayed. */
static void topic_delay_down(topic_t *t, size_t i)
{
    size_t n = t->ndelayed;
    msg_t *m = t->delayed[i];

    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n)
            break;
        if (c + 1 < n && topic_delay_less(t->delayed[c + 1], t->delayed[c]))
            c++;
        if (!topic_delay_less(t->delayed[c], m))
            break;
        t->delayed[i] = t->delayed[c];
        i = c;
    }
    t->delayed[i] = m;
}

static void topic_delay_up(topic_t *t, size_t i)
{
    msg_t *m = t->delayed[i];

    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!topic_delay_less(m, t->delayed[parent]))
            break;
        t->delayed[i] = t->delayed[parent];
        i = parent;
    }
    t->delayed[i] = m;
}

int topic_delay_reserve(topic_t *t)
{
    size_t cap;
    msg_t **d;

    if (t->ndelayed < t->delayed_cap)
        return 0;
    cap = t->delayed_cap ? t->delayed_cap * 2 : 16;
    d = realloc(t->delayed, cap * sizeof(*d));
    if (d == NULL)
        return -1;
    t->delayed = d;
    t->delayed_cap = cap;
    return 0;
}

int topic_delay_push(topic_t *t, msg_t *m)
{
    if (topic_delay_reserve(t) < 0)
        return -1;
    m->state = MSG_DELAYED;
    if (m->flags & MSG_F_EXT)
        msg_ext(m)->delay_seq = ++t->delay_seq;
    t->delayed[t->ndelayed++] = m;
    topic_delay_up(t, t->ndelayed - 1);
    return 0;
}

msg_t *topic_delay_peek(const topic_t *t)
{
    return t->ndelayed > 0 ? t->delayed[0] : NULL;
}

msg_t *topic_delay_pop(topic_t *t)
{
    msg_t *top;

    if (t->ndelayed == 0)
        return NULL;
    top = t->delayed[0];
    t->delayed[0] = t->delayed[--t->ndelayed];
    if (t->ndelayed > 0)
        topic_delay_down(t, 0);
    return top;
}

/* A scan: only a delete, kick or reserve by id of a delayed message comes
 * here, and a message has no room for its heap position. */
void topic_delay_remove(topic_t *t, msg_t *m)
{
    size_t i = 0;

    while (i < t->ndelayed && t->delayed[i] != m)
        i++;
    if (i == t->ndelayed)
        return;
    t->delayed[i] = t->delayed[--t->ndelayed];
    if (i < t->ndelayed) {
        topic_delay_down(t, i);
        topic_delay_up(t, i);
    }
}

/* ---- held ---- */

void topic_held_add(topic_t *t, msg_t *m)
{
    m->state = MSG_HELD;
    topic_q_push_tail(&t->held, m);
}

void topic_held_remove(topic_t *t, msg_t *m)
{
    topic_q_remove(&t->held, m);
}

uint64_t topic_next_due(const topic_t *t)
{
    uint64_t due = UINT64_MAX;

    if (!TAILQ_EMPTY(&t->inflight.list))
        due = TAILQ_FIRST(&t->inflight.list)->deadline;
    if (t->ndelayed > 0 && t->delayed[0]->deadline < due)
        due = t->delayed[0]->deadline;
    if (t->pause_ms > 0 && t->pause_until < due)
        due = t->pause_until;
    return due;
}

void topic_fill_stats(const topic_t *t, uint64_t now, topic_stats_t *out)
{
    memset(out, 0, sizeof(*out));
    out->name = t->name;
    out->name_len = t->name_len;
    out->ready = t->ready.n;
    out->delayed = t->ndelayed;
    out->in_flight = t->inflight.n;
    out->bytes = t->bytes;
    out->consumers = t->nsubs;
    out->blocked_producers = t->nparked;
    out->max_messages = t->conf->max_messages;
    out->max_bytes = t->conf->max_bytes;
    out->max_lag = t->conf->max_lag;
    out->buried = t->buried.n;
    out->urgent = t->ready_urgent;
    out->waiting = t->nreservers;
    if (topic_paused(t, now)) {
        out->paused = 1;
        out->pause_ms = t->pause_ms;
        out->pause_left_ms = t->pause_until - now;
    }
    out->overflow = t->conf->overflow;
    out->totals = t->totals;
}
