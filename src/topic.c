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
    TAILQ_INIT(&t->room);
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
    for (size_t i = 0; i < t->ndelayed; i++)
        msg_free(t->delayed[i]);
    free(t->delayed);
    free(t);
}

/* ---- ready ---- */

void topic_ready_push_tail(topic_t *t, msg_t *m)
{
    m->state = MSG_READY;
    topic_q_push_tail(&t->ready, m);
    t->ready_bytes += m->len;
}

void topic_ready_push_head(topic_t *t, msg_t *m)
{
    m->state = MSG_READY;
    topic_q_push_head(&t->ready, m);
    t->ready_bytes += m->len;
}

msg_t *topic_ready_pop(topic_t *t)
{
    msg_t *m = topic_q_pop_head(&t->ready);

    if (m != NULL)
        t->ready_bytes -= m->len;
    return m;
}

void topic_ready_splice_head(topic_t *t, msgq_t *chain)
{
    msg_t *m;

    TAILQ_FOREACH(m, &chain->list, link) {
        m->state = MSG_READY;
        t->ready_bytes += m->len;
    }
    /* chain + ready into chain (ready left empty), then all of it back. */
    TAILQ_CONCAT(&chain->list, &t->ready.list, link);
    TAILQ_CONCAT(&t->ready.list, &chain->list, link);
    t->ready.n += chain->n;
    chain->n = 0;
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

static bool topic_delay_less(const msg_t *a, const msg_t *b)
{
    if (a->deadline != b->deadline)
        return a->deadline < b->deadline;
    return a->id < b->id;
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
    size_t i;

    if (topic_delay_reserve(t) < 0)
        return -1;
    m->state = MSG_DELAYED;
    i = t->ndelayed++;
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!topic_delay_less(m, t->delayed[parent]))
            break;
        t->delayed[i] = t->delayed[parent];
        i = parent;
    }
    t->delayed[i] = m;
    return 0;
}

msg_t *topic_delay_peek(const topic_t *t)
{
    return t->ndelayed > 0 ? t->delayed[0] : NULL;
}

msg_t *topic_delay_pop(topic_t *t)
{
    msg_t *top, *last;
    size_t i = 0, n;

    if (t->ndelayed == 0)
        return NULL;
    top = t->delayed[0];
    n = --t->ndelayed;
    if (n == 0)
        return top;
    last = t->delayed[n];
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n)
            break;
        if (c + 1 < n && topic_delay_less(t->delayed[c + 1], t->delayed[c]))
            c++;
        if (!topic_delay_less(t->delayed[c], last))
            break;
        t->delayed[i] = t->delayed[c];
        i = c;
    }
    t->delayed[i] = last;
    return top;
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
    return due;
}

void topic_fill_stats(const topic_t *t, topic_stats_t *out)
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
    out->overflow = t->conf->overflow;
    out->totals = t->totals;
}
