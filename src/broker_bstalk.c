/* broker_bstalk.c: what beanstalkd's protocol needs of the core, usable
 * from the native protocol too: a reserve over several topics with
 * DEADLINE_SOON, work on any message by id (reserve-job, delete, kick-job,
 * peek, stats-job), release with a priority, the buried list and kick,
 * paused topics, and the peeks.
 *
 * Lookups by id go through the broker's index, which holds every message
 * except plain (no ext block) ready ones; those are found by walking only
 * the ready queues that hold some (broker_lookup). A plain message has no
 * room for a priority of its own, so release and bury keep its 1024.
 */
#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "broker_internal.h"

/* ---- lookups ---- */

static msg_t *broker_walk_ready(const topic_t *t, uint64_t id)
{
    msg_t *m;

    TAILQ_FOREACH(m, &t->ready.list, link)
        if (m->id == id)
            return m;
    return NULL;
}

msg_t *broker_lookup(const broker_t *b, uint64_t id)
{
    msg_t *m = idtab_find(&b->ids, id);

    if (m != NULL || id == 0 || id >= b->next_id)
        return m;
    for (size_t i = 0; i < b->nbuckets; i++)
        for (const topic_t *t = b->buckets[i]; t != NULL; t = t->hnext)
            if (t->ready.n > t->ready_indexed && (m = broker_walk_ready(t, id)) != NULL)
                return m;
    return NULL;
}

/* A message waiting in its topic (ready if `ready`, delayed or buried) by
 * id, taken out of that queue; NULL if there is none in those states. */
static msg_t *broker_take_waiting(broker_t *b, uint64_t id, bool ready)
{
    msg_t *m = broker_lookup(b, id);

    if (m == NULL)
        return NULL;
    switch (m->state) {
    case MSG_READY:
        if (!ready)
            return NULL;
        topic_ready_remove(m->topic, m);
        break;
    case MSG_DELAYED:
        topic_delay_remove(m->topic, m);
        break;
    case MSG_BURIED:
        topic_unbury(m->topic, m);
        break;
    default:
        return NULL;
    }
    m->state = MSG_NEW;
    return m;
}

static void broker_set_pri(msg_t *m, uint32_t pri)
{
    msg_ext_t *x = msg_ext(m);

    if (x != NULL)
        x->pri = pri;
}

/* ---- reserve ---- */

/* Does c hold a message due within `soon` ms of now? The floor answers
 * "no" at once while it is far enough away; only near it are the held
 * messages walked, which makes the floor exact again. */
static bool broker_deadline_soon(client_t *c, uint64_t soon, uint64_t now)
{
    uint64_t limit = broker_sat_add(now, soon), min = UINT64_MAX;
    const msg_t *m;

    if (soon == 0 || c->due_floor > limit)
        return false;
    TAILQ_FOREACH(m, &c->owned, olink)
        if (m->deadline < min)
            min = m->deadline;
    c->due_floor = min;
    return min <= limit;
}

/* When c's waiting reserve must look again: its timeout, or `soon` before
 * the floor of its deadlines (UINT64_MAX: never). */
static uint64_t broker_reserve_due(const client_t *c)
{
    uint64_t due = c->wdue;

    if (c->wsoon > 0 && c->due_floor != UINT64_MAX) {
        uint64_t soon = c->due_floor > c->wsoon ? c->due_floor - c->wsoon : 0;
        if (soon < due)
            due = soon;
    }
    return due;
}

/* (priority, id) of a is before that of b. */
static bool broker_more_urgent(const msg_t *a, const msg_t *b)
{
    uint32_t pa = msg_pri(a), pb = msg_pri(b);

    return pa < pb || (pa == pb && a->id < b->id);
}

/* The topics of r, created as needed; the unpaused one whose ready head
 * is most urgent in *best (NULL if none). -1: one could not be had.
 * *any: some topic has a ready message, paused or not (beanstalkd then
 * waits rather than answer DEADLINE_SOON). */
static int broker_reserve_scan(broker_t *b, const br_reserve_t *r, uint64_t now,
                               topic_t **best, bool *any)
{
    *best = NULL;
    *any = false;
    for (size_t i = 0; i < r->n; i++) {
        topic_t *t = broker_topic_for(b, r->names[i], r->lens[i], NULL);
        msg_t *head;
        if (t == NULL)
            return -1;
        head = TAILQ_FIRST(&t->ready.list);
        *any = *any || head != NULL;
        if (head == NULL || topic_paused(t, now))
            continue;
        if (*best == NULL || broker_more_urgent(head, TAILQ_FIRST(&(*best)->ready.list)))
            *best = t;
    }
    return 0;
}

static br_status_t broker_reserve_wait(client_t *c, const br_reserve_t *r, uint64_t now)
{
    broker_t *b = c->b;
    uint64_t due;

    /* Most workers watch one tube: no allocation per reserve for them. */
    c->rwaits = r->n == 1 ? &c->rwait1 : calloc(r->n, sizeof(*c->rwaits));
    if (c->rwaits == NULL)
        return BR_FULL;
    c->nrwaits = r->n;
    c->wait = WAIT_RESERVE;
    c->wsoon = r->soon_ms;
    c->wdue = r->timeout_ms > 0 ? broker_sat_add(now, (uint64_t)r->timeout_ms) : UINT64_MAX;
    for (size_t i = 0; i < r->n; i++) {
        rwait_t *w = &c->rwaits[i];
        w->client = c;
        w->topic = broker_find(b, r->names[i], r->lens[i]); /* the scan made it */
        TAILQ_INSERT_TAIL(&w->topic->reservers, w, link);
        w->topic->nreservers++;
    }
    due = broker_reserve_due(c);
    if (due != UINT64_MAX)
        broker_wait_timer(c, due);
    return BR_PENDING;
}

br_status_t broker_reserve(client_t *c, const br_reserve_t *r, uint64_t now)
{
    broker_t *b = c->b;
    topic_t *t;
    bool any;

    assert(c->wait == WAIT_NONE && r->n > 0);
    if (broker_reserve_scan(b, r, now, &t, &any) < 0)
        return BR_NOTOPIC;
    if (t != NULL && broker_deliver(c, t, topic_ready_pop(t), NULL, now) == 0)
        return BR_OK;
    if (!any && broker_deadline_soon(c, r->soon_ms, now))
        return BR_DEADLINE_SOON;
    if (r->timeout_ms == 0)
        return BR_TIMEOUT;
    return broker_reserve_wait(c, r, now);
}

void broker_reserve_unwait(client_t *c)
{
    for (size_t i = 0; i < c->nrwaits; i++) {
        rwait_t *w = &c->rwaits[i];
        TAILQ_REMOVE(&w->topic->reservers, w, link);
        w->topic->nreservers--;
    }
    if (c->rwaits != &c->rwait1)
        free(c->rwaits);
    c->rwaits = NULL;
    c->nrwaits = 0;
    c->wsoon = 0;
    c->wdue = UINT64_MAX;
}

br_status_t broker_reserve_expired(client_t *c, uint64_t now)
{
    if (broker_deadline_soon(c, c->wsoon, now))
        return BR_DEADLINE_SOON;
    return c->wdue <= now ? BR_TIMEOUT : BR_PENDING;
}

void broker_reserve_rearm(client_t *c)
{
    uint64_t due = broker_reserve_due(c);

    broker_heap_remove(c->b, &c->timer);
    if (due != UINT64_MAX)
        broker_wait_timer(c, due);
}

void broker_serve_reserves(topic_t *t, uint64_t now)
{
    rwait_t *w;

    while (t->ready.n > 0 && (w = TAILQ_FIRST(&t->reservers)) != NULL) {
        client_t *c = w->client;
        msg_t *m = topic_ready_pop(t);
        if (broker_deliver(c, t, m, NULL, now) < 0)
            return;
        broker_unwait(c);
        broker_complete(c, BR_OP_RESERVE, BR_OK, t, m->id);
    }
}

br_status_t broker_reserve_id(client_t *c, uint64_t id, uint64_t now)
{
    msg_t *m = broker_take_waiting(c->b, id, true);

    if (m == NULL)
        return BR_NOTFOUND;
    /* Out of memory for the index leaves it ready: the reserve still
     * happened as far as anyone can tell, but nothing was pushed. */
    return broker_deliver(c, m->topic, m, NULL, now) == 0 ? BR_OK : BR_FULL;
}

/* ---- delete, release, bury ---- */

br_status_t broker_delete(client_t *c, uint64_t id, uint64_t now)
{
    msg_t *m;

    if (broker_ack(c, id, now))
        return BR_OK;
    m = broker_take_waiting(c->b, id, true);
    if (m == NULL)
        return BR_NOTFOUND;
    broker_remove_acked(c->b, m->topic, m, now);
    return BR_OK;
}

/* A NACK that also sets the job's priority and the delay stats-job shows. */
br_status_t broker_release(client_t *c, uint64_t id, uint32_t pri, uint64_t delay_ms,
                           uint64_t now)
{
    msg_t *m = broker_owned(c, id);
    msg_ext_t *x;

    if (m == NULL)
        return BR_NOTFOUND;
    x = msg_ext(m);
    if (x != NULL) {
        x->pri = pri;
        x->delay_ms = delay_ms;
    }
    return broker_nack(c, id, delay_ms, now);
}

br_status_t broker_bury(client_t *c, uint64_t id, uint32_t pri, uint64_t now)
{
    broker_t *b = c->b;
    msg_t *m = broker_owned(c, id);
    topic_t *t;

    (void)now;
    if (m == NULL)
        return BR_NOTFOUND;
    t = m->topic;
    broker_unflight(b, m);
    broker_set_pri(m, pri);
    if (msg_ext(m) != NULL)
        msg_ext(m)->buries++;
    BR_COUNT(b, t, buries);
    (void)broker_index(b, m);
    topic_bury(t, m);
    broker_obs_changed(b, t, m);
    return BR_OK;
}

/* ---- kick ---- */

/* m, out of the buried list or the delay heap, becomes ready in its
 * (priority, id) place. */
static void broker_kick_one(broker_t *b, topic_t *t, msg_t *m)
{
    if (msg_ext(m) != NULL)
        msg_ext(m)->kicks++;
    BR_COUNT(b, t, kicks);
    if (!(m->flags & MSG_F_EXT))
        broker_unindex(b, m);
    m->deadline = 0;
    topic_ready_insert(t, m);
    broker_mark(b, t);
    broker_obs_changed(b, t, m);
}

br_status_t broker_kick(broker_t *b, const char *topic, size_t tlen, uint64_t n, uint64_t now,
                        uint64_t *kicked)
{
    topic_t *t = broker_find(b, topic, tlen);
    uint64_t k = 0;
    msg_t *m;

    *kicked = 0;
    if (t == NULL)
        return BR_NOTOPIC;
    if (t->buried.n > 0) {
        while (k < n && (m = TAILQ_FIRST(&t->buried.list)) != NULL) {
            topic_unbury(t, m);
            broker_kick_one(b, t, m);
            k++;
        }
    } else {
        while (k < n && (m = topic_delay_pop(t)) != NULL) {
            broker_kick_one(b, t, m);
            k++;
        }
    }
    *kicked = k;
    broker_dispatch(b, now);
    return BR_OK;
}

br_status_t broker_kick_id(broker_t *b, uint64_t id, uint64_t now)
{
    msg_t *m = broker_take_waiting(b, id, false);

    if (m == NULL)
        return BR_NOTFOUND;
    broker_kick_one(b, m->topic, m);
    broker_dispatch(b, now);
    return BR_OK;
}

/* ---- pause ---- */

br_status_t broker_pause(broker_t *b, const char *topic, size_t tlen, uint64_t ms, uint64_t now)
{
    topic_t *t = broker_find(b, topic, tlen);

    if (t == NULL)
        return BR_NOTOPIC;
    BR_COUNT(b, t, pauses);
    t->pause_ms = ms;
    t->pause_until = broker_sat_add(now, ms);
    if (ms > 0)
        broker_arm(b, t, t->pause_until);
    else
        broker_mark(b, t);
    return BR_OK;
}

/* ---- peeks and stats-job ---- */

const msg_t *broker_peek_id(const broker_t *b, uint64_t id)
{
    const msg_t *m = broker_lookup(b, id);

    return m != NULL && m->state != MSG_HELD && m->state != MSG_NEW ? m : NULL;
}

const msg_t *broker_peek_ready(const broker_t *b, const char *topic, size_t tlen)
{
    const topic_t *t = broker_find(b, topic, tlen);

    return t != NULL ? TAILQ_FIRST(&t->ready.list) : NULL;
}

const msg_t *broker_peek_delayed(const broker_t *b, const char *topic, size_t tlen)
{
    const topic_t *t = broker_find(b, topic, tlen);

    return t != NULL ? topic_delay_peek(t) : NULL;
}

const msg_t *broker_peek_buried(const broker_t *b, const char *topic, size_t tlen)
{
    const topic_t *t = broker_find(b, topic, tlen);

    return t != NULL ? TAILQ_FIRST(&t->buried.list) : NULL;
}

bool broker_job_info(const broker_t *b, uint64_t id, uint64_t now, br_job_info_t *out)
{
    const msg_t *m = broker_peek_id(b, id);
    const msg_ext_t *x;

    if (m == NULL)
        return false;
    x = msg_ext(m);
    memset(out, 0, sizeof(*out));
    out->id = m->id;
    out->topic = m->topic;
    out->state = (msg_state_t)m->state;
    out->pri = msg_pri(m);
    out->ttr_ms = broker_ttr(m->topic, m);
    out->reserves = m->attempt;
    if ((m->state == MSG_DELAYED || m->state == MSG_INFLIGHT) && m->deadline > now)
        out->left_ms = m->deadline - now;
    if (x != NULL) {
        out->age_ms = now > x->created ? now - x->created : 0;
        out->delay_ms = x->delay_ms;
        out->timeouts = x->timeouts;
        out->releases = x->releases;
        out->buries = x->buries;
        out->kicks = x->kicks;
    }
    return true;
}

bool broker_ensure_topic(broker_t *b, const char *topic, size_t tlen)
{
    return broker_topic_for(b, topic, tlen, NULL) != NULL;
}
