/* broker_timer.c: the broker's one timer heap and what fires from it: ack
 * deadlines and delayed messages (one node per topic, keyed by a lower
 * bound of its next deadline and fixed lazily when it fires), and the
 * timeouts of parked PUBs, GETs and JOINs (one node per waiting client).
 */
#include <assert.h>
#include <stdlib.h>

#include "broker_internal.h"

/* ---- timer heap ---- */

static void broker_heap_set(broker_t *b, size_t i, tnode_t *n)
{
    b->heap[i] = n;
    n->idx = i;
}

void broker_heap_up(broker_t *b, size_t i)
{
    tnode_t *n = b->heap[i];

    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (b->heap[parent]->due <= n->due)
            break;
        broker_heap_set(b, i, b->heap[parent]);
        i = parent;
    }
    broker_heap_set(b, i, n);
}

static void broker_heap_down(broker_t *b, size_t i)
{
    tnode_t *n = b->heap[i];

    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= b->nheap)
            break;
        if (c + 1 < b->nheap && b->heap[c + 1]->due < b->heap[c]->due)
            c++;
        if (b->heap[c]->due >= n->due)
            break;
        broker_heap_set(b, i, b->heap[c]);
        i = c;
    }
    broker_heap_set(b, i, n);
}

int broker_heap_reserve(broker_t *b, size_t want)
{
    size_t cap = b->heap_cap ? b->heap_cap : 16;
    tnode_t **h;

    if (want <= b->heap_cap)
        return 0;
    while (cap < want)
        cap *= 2;
    h = realloc(b->heap, cap * sizeof(*h));
    if (h == NULL)
        return -1;
    b->heap = h;
    b->heap_cap = cap;
    return 0;
}

void broker_heap_push(broker_t *b, tnode_t *n)
{
    assert(b->nheap < b->heap_cap);
    broker_heap_set(b, b->nheap++, n);
    broker_heap_up(b, n->idx);
}

void broker_heap_remove(broker_t *b, tnode_t *n)
{
    size_t i = n->idx;
    tnode_t *last = b->heap[--b->nheap];

    n->idx = TNODE_NONE;
    if (last == n)
        return;
    broker_heap_set(b, i, last);
    broker_heap_down(b, i);
    broker_heap_up(b, last->idx);
}

void broker_wait_timer(client_t *c, uint64_t due)
{
    c->timer.due = due;
    broker_heap_push(c->b, &c->timer);
}

/* ---- timers ---- */

/* Ack deadlines passed: back to the head of ready, earliest first (jobs
 * with an ext block in their (priority, id) place, as beanstalkd does). */
static void broker_expire_inflight(broker_t *b, topic_t *t, uint64_t now)
{
    msgq_t chain;
    msg_t *m;

    topic_q_init(&chain);
    while ((m = TAILQ_FIRST(&t->inflight.list)) != NULL && m->deadline <= now) {
        broker_unflight(b, m);
        BR_COUNT(b, t, timeouts);
        if (m->flags & MSG_F_EXT)
            msg_ext(m)->timeouts++;
        if (!broker_returns(b, t, m, now))
            continue;
        if (m->flags & MSG_F_EXT) {
            broker_ready_head(b, t, m);
            broker_obs_changed(b, t, m); /* its timeouts count, for the mirror */
        } else {
            topic_q_push_tail(&chain, m);
        }
    }
    if (chain.n > 0) {
        topic_ready_splice_head(t, &chain);
        broker_mark(b, t);
    }
}

/* Delayed messages due: to the head of ready, the earliest due first. */
static void broker_release_delayed(broker_t *b, topic_t *t, uint64_t now)
{
    msgq_t chain;
    msg_t *m;

    topic_q_init(&chain);
    while ((m = topic_delay_peek(t)) != NULL && m->deadline <= now) {
        topic_delay_pop(t);
        if (m->flags & MSG_F_EXT) {
            broker_ready_head(b, t, m);
            continue;
        }
        broker_unindex(b, m);
        topic_q_push_tail(&chain, m);
    }
    if (chain.n > 0) {
        topic_ready_splice_head(t, &chain);
        broker_mark(b, t);
    }
}

static void broker_fire_topic(broker_t *b, topic_t *t, uint64_t now)
{
    uint64_t due;

    broker_expire_inflight(b, t, now);
    broker_release_delayed(b, t, now);
    if (t->pause_ms > 0 && t->pause_until <= now) {
        t->pause_ms = 0;
        broker_mark(b, t);
    }
    /* Expiries may have taken it out of the heap already. */
    if (t->timer.idx != TNODE_NONE)
        broker_heap_remove(b, &t->timer);
    due = topic_next_due(t);
    if (due != UINT64_MAX) {
        t->timer.due = due;
        broker_heap_push(b, &t->timer);
    }
}

static void broker_fire_wait(client_t *c, uint64_t now)
{
    broker_t *b = c->b;
    topic_t *t = c->wtopic;
    msg_t *m = c->wmsg;
    int kind = c->wait;
    /* Asked before the wait ends: it looks at what c holds. */
    br_status_t st = kind == WAIT_RESERVE ? broker_reserve_expired(c, now) : BR_TIMEOUT;

    if (st == BR_PENDING) {
        broker_reserve_rearm(c);
        return;
    }
    broker_unwait(c);
    switch (kind) {
    case WAIT_PUB:
        broker_refuse(b, t, m);
        broker_complete(c, BR_OP_PUB, BR_FULL, t, 0);
        break;
    case WAIT_GET:
        broker_complete(c, BR_OP_GET, BR_TIMEOUT, t, 0);
        break;
    case WAIT_JOIN:
        broker_complete(c, BR_OP_JOIN, BR_TIMEOUT, t, 0);
        break;
    case WAIT_RESERVE:
        broker_complete(c, BR_OP_RESERVE, st, NULL, 0);
        break;
    default:
        assert(!"timer on a wait without timeout");
    }
}

uint64_t broker_tick(broker_t *b, uint64_t now)
{
    while (b->nheap > 0 && b->heap[0]->due <= now) {
        tnode_t *n = b->heap[0];
        if (n->kind == TNODE_TOPIC)
            broker_fire_topic(b, TNODE_OWNER(n, topic_t, timer), now);
        else
            broker_fire_wait(TNODE_OWNER(n, client_t, timer), now);
    }
    broker_dispatch(b, now);
    return broker_next_deadline(b);
}

uint64_t broker_next_deadline(const broker_t *b)
{
    return b->nheap > 0 ? b->heap[0]->due : UINT64_MAX;
}
