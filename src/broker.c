/* broker.c: the broker core: the topic registry, clients and their one
 * pending operation, bounds and overflow policies, delivery with credits,
 * acks and redelivery, dead letters, timers, and statistics.
 *
 * Everything here is in memory and driven by calls; time is an argument.
 * Pushes to SUB consumers are deferred to broker_dispatch() so a command's
 * reply is always written before the pushes it causes.
 */
#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "broker.h"
#include "idtab.h"
#include "topic.h"

/* The one operation a client may have pending (the network layer does not
 * read a client while it waits, so there is never a second one). Held
 * (confirm mode) PUBs are not waits: a client may have many, see `held`. */
enum client_wait {
    WAIT_NONE = 0,
    WAIT_PUB,  /* parked PUB: `wmsg` waits for room in `wtopic` */
    WAIT_GET,  /* in wtopic->gets */
    WAIT_JOIN, /* in wtopic->joins */
};

struct client {
    broker_t *b;
    client_ops_t ops;
    void *ctx;
    dlink_t link;           /* broker's client list */
    msg_t *ihead, *itail;   /* messages it owns, in delivery order (cnext/cprev) */
    msg_t *held;            /* its held PUBs' messages (cnext/cprev; they are never in flight) */
    sub_t **subs;           /* sorted by topic address: O(log n) lookup on ACK */
    size_t nsubs, subs_cap;
    bool paused;            /* deliver() said its output is full: no SUB pushes */
    int wait;               /* enum client_wait */
    topic_t *wtopic;
    msg_t *wmsg;
    uint64_t wdelay;        /* WAIT_PUB: the PUB's delay, counted from acceptance */
    dlink_t wlink;          /* wtopic->parked, ->gets or ->joins */
    tnode_t timer;          /* in the timer heap while the wait has a timeout */
};

struct broker {
    const config_t *cfg;
    uint64_t start;
    uint64_t next_id;
    idtab_t ids;              /* in-flight and held messages by id */

    topic_t **buckets;        /* name -> topic, chained through hnext */
    size_t nbuckets;          /* power of two */
    size_t ntopics;

    dlink_t clients;
    uint64_t nclients;

    uint64_t count, bytes;    /* all topics: messages and payload bytes */
    uint64_t nparked;
    br_counters_t totals;

    broker_observer_t obs;
    void *obs_ctx;
    bool confirm;

    /* Timers: each topic with in-flight or delayed messages (keyed by a
     * lower bound of its next deadline, fixed lazily when it fires) and
     * each client waiting with a timeout. Capacity is kept at
     * ntopics + nclients, so pushing never fails. */
    tnode_t **heap;
    size_t nheap, heap_cap;

    topic_t *dhead, *dtail;   /* topics that may have pushes to do */
    topic_t *joinq;           /* topics that became empty while JOINs wait */
    dlink_t parked_topics;    /* topics with parked producers, in parking order */
    bool retry_parked;        /* something left a topic or a parked head went */
};

#define BR_COUNT(b, t, field) ((t)->totals.field++, (b)->totals.field++)

static uint64_t broker_sat_add(uint64_t a, uint64_t b)
{
    return a > UINT64_MAX - b ? UINT64_MAX : a + b;
}

/* ---- timer heap ---- */

static void broker_heap_set(broker_t *b, size_t i, tnode_t *n)
{
    b->heap[i] = n;
    n->idx = i;
}

static void broker_heap_up(broker_t *b, size_t i)
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

static int broker_heap_reserve(broker_t *b, size_t want)
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

static void broker_heap_push(broker_t *b, tnode_t *n)
{
    assert(b->nheap < b->heap_cap);
    broker_heap_set(b, b->nheap++, n);
    broker_heap_up(b, n->idx);
}

static void broker_heap_remove(broker_t *b, tnode_t *n)
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

/* The topic has something due at `due`: make sure it fires by then. */
static void broker_arm(broker_t *b, topic_t *t, uint64_t due)
{
    if (t->timer.idx == TNODE_NONE) {
        t->timer.due = due;
        broker_heap_push(b, &t->timer);
    } else if (due < t->timer.due) {
        t->timer.due = due;
        broker_heap_up(b, t->timer.idx);
    }
}

/* ---- observer ---- */

static void broker_obs_enqueued(broker_t *b, const topic_t *t, const msg_t *m)
{
    if (b->obs.enqueued != NULL)
        b->obs.enqueued(b->obs_ctx, t, m);
}

static void broker_obs_attempted(broker_t *b, const topic_t *t, const msg_t *m)
{
    if (b->obs.attempted != NULL)
        b->obs.attempted(b->obs_ctx, t, m);
}

static void broker_obs_removed(broker_t *b, const topic_t *t, const msg_t *m, br_removal_t why)
{
    if (b->obs.removed != NULL)
        b->obs.removed(b->obs_ctx, t, m, why);
}

/* ---- topic registry ---- */

static size_t broker_hash(const char *s, size_t len)
{
    uint64_t h = UINT64_C(1469598103934665603); /* FNV-1a */

    for (size_t i = 0; i < len; i++) {
        h ^= (unsigned char)s[i];
        h *= UINT64_C(1099511628211);
    }
    return (size_t)h;
}

static topic_t *broker_find(const broker_t *b, const char *name, size_t len)
{
    topic_t *t = b->buckets[broker_hash(name, len) & (b->nbuckets - 1)];

    for (; t != NULL; t = t->hnext)
        if (t->name_len == len && memcmp(t->name, name, len) == 0)
            return t;
    return NULL;
}

/* The limits for a topic: its own entry in cfg->topics, else the defaults.
 * (Read straight from the config: the core does not call config.c.) */
static const topic_conf_t *broker_conf_for(const config_t *cfg, const char *name, size_t len)
{
    for (size_t i = 0; i < cfg->ntopics; i++) {
        const char *n = cfg->topics[i].name;
        if (strlen(n) == len && memcmp(n, name, len) == 0)
            return &cfg->topics[i].conf;
    }
    return &cfg->defaults;
}

static void broker_rehash(broker_t *b)
{
    size_t n = b->nbuckets * 2;
    topic_t **nb = calloc(n, sizeof(*nb));

    /* Without memory the chains just get longer. */
    if (nb == NULL)
        return;
    for (size_t i = 0; i < b->nbuckets; i++) {
        topic_t *t = b->buckets[i], *next;
        for (; t != NULL; t = next) {
            size_t h = broker_hash(t->name, t->name_len) & (n - 1);
            next = t->hnext;
            t->hnext = nb[h];
            nb[h] = t;
        }
    }
    free(b->buckets);
    b->buckets = nb;
    b->nbuckets = n;
}

/* Create a topic with no limit checks. NULL when out of memory. */
static topic_t *broker_create(broker_t *b, const char *name, size_t len)
{
    topic_t *t;
    size_t h;

    if (broker_heap_reserve(b, b->ntopics + b->nclients + 1) < 0)
        return NULL;
    t = topic_new(name, len, broker_conf_for(b->cfg, name, len));
    if (t == NULL)
        return NULL;
    h = broker_hash(name, len) & (b->nbuckets - 1);
    t->hnext = b->buckets[h];
    b->buckets[h] = t;
    b->ntopics++;
    if (b->ntopics > b->nbuckets)
        broker_rehash(b);
    return t;
}

/* An existing topic, or a new one if `create`, auto-creation is on and
 * max_topics allows. NULL: BR_NOTOPIC. */
static topic_t *broker_topic_for(broker_t *b, const char *name, size_t len, bool create)
{
    topic_t *t = broker_find(b, name, len);

    if (t != NULL || !create)
        return t;
    if (!b->cfg->auto_create_topics || b->ntopics >= b->cfg->limits.max_topics)
        return NULL;
    return broker_create(b, name, len);
}

static int broker_ensure(broker_t *b, const char *name)
{
    size_t len = name != NULL ? strlen(name) : 0;

    if (len == 0 || broker_find(b, name, len) != NULL)
        return 0;
    return broker_create(b, name, len) != NULL ? 0 : -1;
}

/* Topics named in the config, and their dead-letter topics, always exist. */
static int broker_create_configured(broker_t *b)
{
    const config_t *cfg = b->cfg;

    for (size_t i = 0; i < cfg->ntopics; i++) {
        if (broker_ensure(b, cfg->topics[i].name) < 0 ||
            broker_ensure(b, cfg->topics[i].conf.dead_letter) < 0)
            return -1;
    }
    return broker_ensure(b, cfg->defaults.dead_letter);
}

/* ---- dispatch and join queues ---- */

static void broker_mark(broker_t *b, topic_t *t)
{
    if (t->in_dispatch)
        return;
    t->in_dispatch = true;
    t->dnext = NULL;
    if (b->dtail != NULL)
        b->dtail->dnext = t;
    else
        b->dhead = t;
    b->dtail = t;
}

static topic_t *broker_unmark(broker_t *b)
{
    topic_t *t = b->dhead;

    if (t == NULL)
        return NULL;
    b->dhead = t->dnext;
    if (b->dhead == NULL)
        b->dtail = NULL;
    t->in_dispatch = false;
    return t;
}

static void broker_ready_tail(broker_t *b, topic_t *t, msg_t *m)
{
    topic_ready_push_tail(t, m);
    broker_mark(b, t);
}

static void broker_ready_head(broker_t *b, topic_t *t, msg_t *m)
{
    topic_ready_push_head(t, m);
    broker_mark(b, t);
}

/* ---- accounting and bounds ---- */

static void broker_account_add(broker_t *b, topic_t *t, const msg_t *m)
{
    t->count++;
    t->bytes += m->len;
    b->count++;
    b->bytes += m->len;
}

/* A message left t for good: room for parked producers, maybe JOINs done. */
static void broker_account_sub(broker_t *b, topic_t *t, const msg_t *m)
{
    t->count--;
    t->bytes -= m->len;
    b->count--;
    b->bytes -= m->len;
    b->retry_parked = true;
    if (t->count == 0 && !dlink_empty(&t->joins) && !t->in_joinq) {
        t->in_joinq = true;
        t->jnext = b->joinq;
        b->joinq = t;
    }
}

static bool broker_never_fits(const broker_t *b, const topic_t *t, uint32_t len)
{
    return t->conf->max_messages == 0 || len > t->conf->max_bytes ||
           len > b->cfg->limits.max_memory;
}

static bool broker_fits(const broker_t *b, const topic_t *t, uint32_t len)
{
    return t->count < t->conf->max_messages && t->bytes + len <= t->conf->max_bytes &&
           b->bytes + len <= b->cfg->limits.max_memory;
}

/* Would it fit once every ready message of t were dropped? (drop-oldest
 * evicts only when eviction can make room; otherwise nothing is lost) */
static bool broker_fits_after_eviction(const broker_t *b, const topic_t *t, uint32_t len)
{
    return t->count - t->ready.n < t->conf->max_messages &&
           t->bytes - t->ready_bytes + len <= t->conf->max_bytes &&
           b->bytes - t->ready_bytes + len <= b->cfg->limits.max_memory;
}

/* Drop the oldest ready messages until `len` fits; the caller checked
 * broker_fits_after_eviction(). */
static void broker_evict(broker_t *b, topic_t *t, uint32_t len)
{
    while (!broker_fits(b, t, len)) {
        msg_t *m = topic_ready_pop(t);
        assert(m != NULL);
        BR_COUNT(b, t, dropped);
        broker_obs_removed(b, t, m, BR_REMOVED_DROPPED);
        broker_account_sub(b, t, m);
        msg_free(m);
    }
}

/* Make room for `len` under t's policy without waiting: true if it now
 * fits (drop-oldest may have evicted), false for -FULL. */
static bool broker_make_room(broker_t *b, topic_t *t, uint32_t len)
{
    if (broker_never_fits(b, t, len))
        return false;
    if (broker_fits(b, t, len))
        return true;
    if (t->conf->overflow != OVERFLOW_DROP_OLDEST || !broker_fits_after_eviction(b, t, len))
        return false;
    broker_evict(b, t, len);
    return true;
}

/* An accepted message becomes available: delayed until `due` if that is
 * in the future, else ready (at the head for a returned message). */
static void broker_place(broker_t *b, topic_t *t, msg_t *m, uint64_t due, bool head,
                         uint64_t now)
{
    /* Without memory for the heap the delay is dropped, not the message. */
    m->deadline = due;
    if (due > now && topic_delay_push(t, m) == 0) {
        broker_arm(b, t, due);
        return;
    }
    if (head)
        broker_ready_head(b, t, m);
    else
        broker_ready_tail(b, t, m);
}

/* m fits in t: give it an id and make it part of t. With `hold` (confirm
 * mode) it is held for the mirror: BR_PENDING. BR_OK when it is ready or
 * delayed; BR_FULL when out of memory for the index or the delay heap (m
 * is then untouched and still the caller's). */
static br_status_t broker_accept(broker_t *b, topic_t *t, msg_t *m, uint64_t delay, bool hold,
                                 uint64_t now)
{
    uint64_t due = delay > 0 ? broker_sat_add(now, delay) : 0;

    if (delay > 0 && topic_delay_reserve(t) < 0)
        return BR_FULL;
    m->id = b->next_id;
    m->topic = t;
    if (hold) {
        if (idtab_insert(&b->ids, m) < 0) {
            m->id = 0;
            return BR_FULL;
        }
        b->next_id++;
        broker_account_add(b, t, m);
        m->deadline = due;
        topic_held_add(t, m);
        broker_obs_enqueued(b, t, m);
        return BR_PENDING;
    }
    b->next_id++;
    broker_account_add(b, t, m);
    BR_COUNT(b, t, published);
    broker_obs_enqueued(b, t, m);
    broker_place(b, t, m, due, false, now);
    return BR_OK;
}

/* A PUB answered -FULL: counted, message freed. */
static br_status_t broker_refuse(broker_t *b, topic_t *t, msg_t *m)
{
    BR_COUNT(b, t, rejected);
    msg_free(m);
    return BR_FULL;
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

    if (room && !dlink_linked(&s->rlink)) {
        dlink_push_tail(&s->topic->room, &s->rlink);
        if (s->topic->ready.n > 0)
            broker_mark(b, s->topic);
    } else if (!room && dlink_linked(&s->rlink)) {
        dlink_remove(&s->rlink);
    }
}

static void broker_sub_drop(client_t *c, sub_t *s)
{
    size_t i = broker_sub_pos(c, s->topic);

    if (dlink_linked(&s->rlink))
        dlink_remove(&s->rlink);
    dlink_remove(&s->tlink);
    s->topic->nsubs--;
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

/* ---- clients: waits ---- */

static void broker_wait_timer(client_t *c, uint64_t due)
{
    c->timer.due = due;
    broker_heap_push(c->b, &c->timer);
}

static void broker_wait(client_t *c, int kind, topic_t *t, dlink_t *list)
{
    assert(c->wait == WAIT_NONE);
    c->wait = kind;
    c->wtopic = t;
    dlink_push_tail(list, &c->wlink);
}

/* End c's wait (any kind) without completing it. The caller keeps wmsg. */
static void broker_unwait(client_t *c)
{
    broker_t *b = c->b;
    topic_t *t = c->wtopic;

    if (c->wait == WAIT_PUB) {
        t->nparked--;
        b->nparked--;
        if (t->parked.next == &c->wlink)
            b->retry_parked = true; /* the head went: the next one may fit */
    }
    if (dlink_linked(&c->wlink))
        dlink_remove(&c->wlink);
    if (c->wait == WAIT_PUB && dlink_empty(&t->parked))
        dlink_remove(&t->plink);
    if (c->timer.idx != TNODE_NONE)
        broker_heap_remove(b, &c->timer);
    c->wait = WAIT_NONE;
    c->wtopic = NULL;
    c->wmsg = NULL;
}

static void broker_complete(client_t *c, br_op_t op, br_status_t st, const topic_t *t,
                            uint64_t id)
{
    if (c->ops.complete != NULL)
        c->ops.complete(c->ctx, op, st, t, id);
}

static void broker_park(client_t *c, topic_t *t, msg_t *m, uint64_t delay, uint64_t now)
{
    broker_t *b = c->b;

    if (dlink_empty(&t->parked))
        dlink_push_tail(&b->parked_topics, &t->plink);
    broker_wait(c, WAIT_PUB, t, &t->parked);
    c->wmsg = m;
    c->wdelay = delay;
    t->nparked++;
    b->nparked++;
    if (t->conf->block_timeout_ms > 0)
        broker_wait_timer(c, broker_sat_add(now, t->conf->block_timeout_ms));
}

/* m was accepted with hold: the PUB of c now waits for the mirror, and c
 * may go on (its completion comes from broker_confirm). */
static void broker_hold(client_t *c, msg_t *m)
{
    m->owner = c;
    m->cprev = NULL;
    m->cnext = c->held;
    if (c->held != NULL)
        c->held->cprev = m;
    c->held = m;
}

static void broker_unhold(client_t *c, msg_t *m)
{
    if (m->cprev != NULL)
        m->cprev->cnext = m->cnext;
    else
        c->held = m->cnext;
    if (m->cnext != NULL)
        m->cnext->cprev = m->cprev;
    m->cnext = m->cprev = NULL;
    m->owner = NULL;
}

/* Serve t's parked producers in order while the head fits. A head that
 * does not fit waits if the policy is (still) block; under any other
 * policy (after a reload), or if it can never fit now, it gets -FULL. */
static void broker_unpark_topic(broker_t *b, topic_t *t, uint64_t now)
{
    while (!dlink_empty(&t->parked)) {
        client_t *c = DLINK_ENTRY(t->parked.next, client_t, wlink);
        msg_t *m = c->wmsg;
        uint64_t delay = c->wdelay;
        br_status_t st;

        if (!broker_fits(b, t, m->len) && t->conf->overflow == OVERFLOW_BLOCK &&
            !broker_never_fits(b, t, m->len))
            return;
        broker_unwait(c);
        st = broker_make_room(b, t, m->len) ? broker_accept(b, t, m, delay, b->confirm, now)
                                            : BR_FULL;
        if (st == BR_PENDING) {
            broker_hold(c, m);
            broker_complete(c, BR_OP_PUB, BR_HELD, t, m->id);
        } else if (st == BR_FULL) {
            broker_refuse(b, t, m);
            broker_complete(c, BR_OP_PUB, BR_FULL, t, 0);
        } else {
            broker_complete(c, BR_OP_PUB, BR_OK, t, m->id);
        }
    }
}

static void broker_finish_joins(topic_t *t)
{
    while (!dlink_empty(&t->joins)) {
        client_t *c = DLINK_ENTRY(t->joins.next, client_t, wlink);
        broker_unwait(c);
        broker_complete(c, BR_OP_JOIN, BR_OK, t, 0);
    }
}

/* Finish what frees caused: JOINs on topics that became empty, then
 * parked producers (of any topic: the blocker may have been max_memory). */
static void broker_settle(broker_t *b, uint64_t now)
{
    topic_t *t;

    while ((t = b->joinq) != NULL) {
        b->joinq = t->jnext;
        t->in_joinq = false;
        if (t->count == 0)
            broker_finish_joins(t);
    }
    while (b->retry_parked) {
        b->retry_parked = false;
        for (dlink_t *l = b->parked_topics.next, *next; l != &b->parked_topics; l = next) {
            next = l->next; /* unparking may unlink this topic, never another */
            broker_unpark_topic(b, DLINK_ENTRY(l, topic_t, plink), now);
        }
    }
}

/* ---- delivery ---- */

static void broker_owned_append(client_t *c, msg_t *m)
{
    m->cnext = NULL;
    m->cprev = c->itail;
    if (c->itail != NULL)
        c->itail->cnext = m;
    else
        c->ihead = m;
    c->itail = m;
}

static void broker_owned_unlink(client_t *c, msg_t *m)
{
    if (m->cprev != NULL)
        m->cprev->cnext = m->cnext;
    else
        c->ihead = m->cnext;
    if (m->cnext != NULL)
        m->cnext->cprev = m->cprev;
    else
        c->itail = m->cprev;
    m->cnext = m->cprev = NULL;
}

/* Push m (just popped from t's ready queue) to c, under sub s (NULL for a
 * GET). -1 when out of memory for the id index: m is back at the head. */
static int broker_deliver(client_t *c, topic_t *t, msg_t *m, sub_t *s, uint64_t now)
{
    broker_t *b = c->b;
    bool ok;

    if (idtab_insert(&b->ids, m) < 0) {
        topic_ready_push_head(t, m);
        return -1;
    }
    m->state = MSG_INFLIGHT;
    m->owner = c;
    if (m->attempt < UINT16_MAX)
        m->attempt++;
    m->deadline = broker_sat_add(now, t->conf->ack_timeout_ms);
    topic_inflight_add(t, m);
    broker_owned_append(c, m);
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
    while (t->ready.n > 0 && !dlink_empty(&t->gets)) {
        client_t *c = DLINK_ENTRY(t->gets.next, client_t, wlink);
        msg_t *m = topic_ready_pop(t);
        if (broker_deliver(c, t, m, NULL, now) < 0)
            return;
        broker_unwait(c);
        broker_complete(c, BR_OP_GET, BR_OK, t, m->id);
    }
}

static void broker_dispatch_topic(topic_t *t, uint64_t now)
{
    broker_serve_gets(t, now);
    while (t->ready.n > 0 && !dlink_empty(&t->room) && dlink_empty(&t->gets)) {
        sub_t *s = DLINK_ENTRY(t->room.next, sub_t, rlink);
        if (broker_deliver(s->client, t, topic_ready_pop(t), s, now) < 0)
            return;
        /* Round-robin: a consumer that still has room goes to the back. */
        if (dlink_linked(&s->rlink)) {
            dlink_remove(&s->rlink);
            dlink_push_tail(&t->room, &s->rlink);
        }
    }
}

void broker_dispatch(broker_t *b, uint64_t now)
{
    topic_t *t;

    broker_settle(b, now);
    while ((t = broker_unmark(b)) != NULL)
        broker_dispatch_topic(t, now);
}

/* ---- leaving flight ---- */

/* Take m out of flight: topic list, owner's list, id index, credit. */
static void broker_unflight(broker_t *b, msg_t *m)
{
    topic_t *t = m->topic;
    client_t *c = m->owner;

    topic_inflight_remove(t, m);
    broker_owned_unlink(c, m);
    idtab_remove(&b->ids, m->id);
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
    if (t->inflight.n == 0 && t->ndelayed == 0 && t->timer.idx != TNODE_NONE)
        broker_heap_remove(b, &t->timer);
}

/* Publish a copy of dead m to the dead-letter topic, as `reject` would
 * (drop-oldest honoured, never parks). True if the copy was accepted. */
static bool broker_dead_letter(broker_t *b, const char *name, const msg_t *m, uint64_t now)
{
    topic_t *d = broker_topic_for(b, name, strlen(name), true);
    msg_t *copy;

    if (d == NULL || !broker_make_room(b, d, m->len))
        return false;
    copy = msg_new_copy(m->data, m->len);
    if (copy == NULL)
        return false;
    if (broker_accept(b, d, copy, 0, false, now) != BR_OK) {
        msg_free(copy);
        return false;
    }
    return true;
}

/* m (out of flight, still counted in t) reached max_deliveries. Its room
 * is released first so a tight max_memory cannot refuse the copy that
 * replaces it; the copy's enqueued() comes before removed() so a mirror
 * that crashes in between has a duplicate, not a loss. */
static void broker_kill(broker_t *b, topic_t *t, msg_t *m, uint64_t now)
{
    const char *dl = t->conf->dead_letter;

    broker_account_sub(b, t, m);
    if (dl != NULL && dl[0] != '\0' && broker_dead_letter(b, dl, m, now)) {
        broker_obs_removed(b, t, m, BR_REMOVED_DEADLETTERED);
    } else {
        BR_COUNT(b, t, dead);
        broker_obs_removed(b, t, m, BR_REMOVED_DEAD);
    }
    msg_free(m);
}

static bool broker_is_dead(const topic_t *t, const msg_t *m)
{
    return t->conf->max_deliveries > 0 && m->attempt >= t->conf->max_deliveries;
}

/* m left flight without an ack. Dead, or redelivered: true if it should go
 * back (the caller puts it where it belongs). */
static bool broker_returns(broker_t *b, topic_t *t, msg_t *m, uint64_t now)
{
    if (broker_is_dead(t, m)) {
        broker_kill(b, t, m, now);
        return false;
    }
    BR_COUNT(b, t, redelivered);
    return true;
}

/* ---- timers ---- */

/* Ack deadlines passed: back to the head of ready, earliest first. */
static void broker_expire_inflight(broker_t *b, topic_t *t, uint64_t now)
{
    msgq_t chain = {0};
    msg_t *m;

    while ((m = t->inflight.head) != NULL && m->deadline <= now) {
        broker_unflight(b, m);
        if (broker_returns(b, t, m, now))
            topic_q_push_tail(&chain, m);
    }
    if (chain.n > 0) {
        topic_ready_splice_head(t, &chain);
        broker_mark(b, t);
    }
}

/* Delayed messages due: to the head of ready, the earliest due first. */
static void broker_release_delayed(broker_t *b, topic_t *t, uint64_t now)
{
    msgq_t chain = {0};
    msg_t *m;

    while ((m = topic_delay_peek(t)) != NULL && m->deadline <= now)
        topic_q_push_tail(&chain, topic_delay_pop(t));
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
    /* Expiries may have taken it out of the heap already. */
    if (t->timer.idx != TNODE_NONE)
        broker_heap_remove(b, &t->timer);
    due = topic_next_due(t);
    if (due != UINT64_MAX) {
        t->timer.due = due;
        broker_heap_push(b, &t->timer);
    }
}

static void broker_fire_wait(client_t *c)
{
    broker_t *b = c->b;
    topic_t *t = c->wtopic;
    msg_t *m = c->wmsg;
    int kind = c->wait;

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
    default:
        assert(!"timer on a wait without timeout");
    }
}

uint64_t broker_tick(broker_t *b, uint64_t now)
{
    while (b->nheap > 0 && b->heap[0]->due <= now) {
        tnode_t *n = b->heap[0];
        if (n->kind == TNODE_TOPIC)
            broker_fire_topic(b, DLINK_ENTRY(n, topic_t, timer), now);
        else
            broker_fire_wait(DLINK_ENTRY(n, client_t, timer));
    }
    broker_dispatch(b, now);
    return broker_next_deadline(b);
}

uint64_t broker_next_deadline(const broker_t *b)
{
    return b->nheap > 0 ? b->heap[0]->due : UINT64_MAX;
}

/* ---- life ---- */

broker_t *broker_new(const config_t *cfg, uint64_t now)
{
    broker_t *b = calloc(1, sizeof(*b));

    if (b == NULL)
        return NULL;
    b->cfg = cfg;
    b->start = now;
    b->next_id = 1;
    b->nbuckets = 64;
    dlink_init(&b->clients);
    dlink_init(&b->parked_topics);
    b->buckets = calloc(b->nbuckets, sizeof(*b->buckets));
    if (b->buckets == NULL || idtab_init(&b->ids) < 0 || broker_create_configured(b) < 0) {
        broker_free(b);
        return NULL;
    }
    return b;
}

static void broker_client_destroy(client_t *c)
{
    for (size_t i = 0; i < c->nsubs; i++)
        free(c->subs[i]);
    free(c->subs);
    /* A parked message is the client's; held ones are their topics'. */
    if (c->wait == WAIT_PUB)
        msg_free(c->wmsg);
    free(c);
}

void broker_free(broker_t *b)
{
    if (b == NULL)
        return;
    while (!dlink_empty(&b->clients)) {
        client_t *c = DLINK_ENTRY(b->clients.next, client_t, link);
        dlink_remove(&c->link);
        broker_client_destroy(c);
    }
    for (size_t i = 0; b->buckets != NULL && i < b->nbuckets; i++) {
        topic_t *t = b->buckets[i], *next;
        for (; t != NULL; t = next) {
            next = t->hnext;
            topic_free(t);
        }
    }
    free(b->buckets);
    free(b->heap);
    idtab_destroy(&b->ids);
    free(b);
}

void broker_configure(broker_t *b, const config_t *cfg, uint64_t now)
{
    b->cfg = cfg;
    for (size_t i = 0; i < b->nbuckets; i++)
        for (topic_t *t = b->buckets[i]; t != NULL; t = t->hnext)
            t->conf = broker_conf_for(cfg, t->name, t->name_len);
    /* Out of memory here only means a configured topic appears later, on
     * first use, if auto-creation allows it. */
    (void)broker_create_configured(b);
    b->retry_parked = true;
    broker_dispatch(b, now);
}

void broker_set_observer(broker_t *b, const broker_observer_t *obs, void *ctx)
{
    if (obs != NULL)
        b->obs = *obs;
    else
        memset(&b->obs, 0, sizeof(b->obs));
    b->obs_ctx = ctx;
}

void broker_set_next_id(broker_t *b, uint64_t next_id)
{
    /* Never lower: an id must not be handed out twice. */
    if (next_id > b->next_id)
        b->next_id = next_id;
}

uint64_t broker_next_id(const broker_t *b)
{
    return b->next_id;
}

/* ---- clients ---- */

client_t *broker_client_new(broker_t *b, const client_ops_t *ops, void *ctx)
{
    client_t *c;

    if (broker_heap_reserve(b, b->ntopics + b->nclients + 1) < 0)
        return NULL;
    c = calloc(1, sizeof(*c));
    if (c == NULL)
        return NULL;
    c->b = b;
    c->ops = *ops;
    c->ctx = ctx;
    c->timer.idx = TNODE_NONE;
    c->timer.kind = TNODE_CLIENT;
    dlink_push_tail(&b->clients, &c->link);
    b->nclients++;
    return c;
}

void broker_client_free(client_t *c, uint64_t now)
{
    broker_t *b;

    if (c == NULL)
        return;
    b = c->b;
    /* Held messages stay held; broker_confirm settles them. */
    while (c->held != NULL)
        broker_unhold(c, c->held);
    if (c->wait != WAIT_NONE) {
        msg_t *parked = c->wait == WAIT_PUB ? c->wmsg : NULL;
        broker_unwait(c);
        msg_free(parked);
    }
    /* Paused, so returning credit does not put its subs back in rooms. */
    c->paused = true;
    /* From the tail, each to the head: they keep their original order. */
    while (c->itail != NULL) {
        msg_t *m = c->itail;
        topic_t *t = m->topic;
        broker_unflight(b, m);
        if (broker_returns(b, t, m, now))
            broker_ready_head(b, t, m);
    }
    while (c->nsubs > 0)
        broker_sub_drop(c, c->subs[c->nsubs - 1]);
    dlink_remove(&c->link);
    b->nclients--;
    broker_client_destroy(c);
    broker_dispatch(b, now);
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

/* ---- commands ---- */

br_status_t broker_publish(client_t *c, const char *topic, size_t tlen, msg_t *m,
                           uint64_t delay_ms, uint64_t now, uint64_t *id)
{
    broker_t *b = c->b;
    topic_t *t;
    br_status_t st;

    assert(c->wait == WAIT_NONE);
    t = broker_topic_for(b, topic, tlen, true);
    if (t == NULL) {
        msg_free(m);
        return BR_NOTOPIC;
    }
    if (broker_never_fits(b, t, m->len))
        return broker_refuse(b, t, m);
    /* Parked producers go first: a new PUB queues behind them. */
    if (!dlink_empty(&t->parked) || !broker_fits(b, t, m->len)) {
        if (t->conf->overflow == OVERFLOW_BLOCK) {
            broker_park(c, t, m, delay_ms, now);
            return BR_PENDING;
        }
        if (!broker_make_room(b, t, m->len))
            return broker_refuse(b, t, m);
    }
    st = broker_accept(b, t, m, delay_ms, b->confirm, now);
    if (st == BR_FULL)
        return broker_refuse(b, t, m);
    if (st == BR_PENDING) {
        broker_hold(c, m);
        st = BR_HELD;
    }
    if (id != NULL)
        *id = m->id;
    broker_settle(b, now);
    return st;
}

br_status_t broker_subscribe(client_t *c, const char *topic, size_t tlen, int64_t credit)
{
    broker_t *b = c->b;
    topic_t *t = broker_topic_for(b, topic, tlen, true);
    sub_t *s;

    if (t == NULL)
        return BR_NOTOPIC;
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
        dlink_push_tail(&t->subs, &s->tlink);
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

    if (s == NULL)
        return BR_OK;
    /* Its messages stay owned but no longer count against a credit. */
    for (msg_t *m = c->ihead; m != NULL; m = m->cnext)
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
    t = broker_topic_for(b, topic, tlen, true);
    if (t == NULL)
        return BR_NOTOPIC;
    broker_serve_gets(t, now);
    if (t->ready.n > 0 && broker_deliver(c, t, topic_ready_pop(t), NULL, now) == 0)
        return BR_OK;
    if (timeout_ms == 0)
        return BR_TIMEOUT;
    broker_wait(c, WAIT_GET, t, &t->gets);
    broker_wait_timer(c, broker_sat_add(now, timeout_ms));
    return BR_PENDING;
}

static msg_t *broker_owned(const client_t *c, uint64_t id)
{
    msg_t *m = idtab_find(&c->b->ids, id);

    return m != NULL && m->state == MSG_INFLIGHT && m->owner == c ? m : NULL;
}

bool broker_owns(const client_t *c, uint64_t id)
{
    return broker_owned(c, id) != NULL;
}

bool broker_ack(client_t *c, uint64_t id, uint64_t now)
{
    broker_t *b = c->b;
    msg_t *m = broker_owned(c, id);
    topic_t *t;

    if (m == NULL)
        return false;
    t = m->topic;
    broker_unflight(b, m);
    BR_COUNT(b, t, acked);
    broker_obs_removed(b, t, m, BR_REMOVED_ACKED);
    broker_account_sub(b, t, m);
    msg_free(m);
    broker_settle(b, now);
    return true;
}

br_status_t broker_nack(client_t *c, uint64_t id, uint64_t delay_ms, uint64_t now)
{
    broker_t *b = c->b;
    msg_t *m = broker_owned(c, id);
    topic_t *t;

    if (m == NULL)
        return BR_NOTFOUND;
    t = m->topic;
    broker_unflight(b, m);
    if (broker_returns(b, t, m, now))
        broker_place(b, t, m, delay_ms > 0 ? broker_sat_add(now, delay_ms) : 0, true, now);
    broker_settle(b, now);
    return BR_OK;
}

br_status_t broker_touch(client_t *c, uint64_t id, uint64_t now)
{
    msg_t *m = broker_owned(c, id);
    topic_t *t;

    if (m == NULL)
        return BR_NOTFOUND;
    t = m->topic;
    topic_inflight_remove(t, m);
    m->deadline = broker_sat_add(now, t->conf->ack_timeout_ms);
    topic_inflight_add(t, m);
    broker_arm(c->b, t, m->deadline);
    return BR_OK;
}

br_status_t broker_join(client_t *c, const char *topic, size_t tlen, int64_t timeout_ms,
                        uint64_t now)
{
    topic_t *t;

    assert(c->wait == WAIT_NONE);
    t = broker_find(c->b, topic, tlen);
    if (t == NULL || t->count == 0)
        return BR_OK;
    if (timeout_ms == 0)
        return BR_TIMEOUT;
    broker_wait(c, WAIT_JOIN, t, &t->joins);
    if (timeout_ms > 0)
        broker_wait_timer(c, broker_sat_add(now, (uint64_t)timeout_ms));
    return BR_PENDING;
}

/* ---- the mirror's side ---- */

void broker_set_confirm(broker_t *b, bool on)
{
    b->confirm = on;
}

void broker_confirm(broker_t *b, uint64_t id, bool ok, uint64_t now)
{
    msg_t *m = idtab_find(&b->ids, id);
    topic_t *t;
    client_t *c;

    if (m == NULL || m->state != MSG_HELD)
        return;
    t = m->topic;
    c = m->owner;
    idtab_remove(&b->ids, id);
    topic_held_remove(t, m);
    if (c != NULL)
        broker_unhold(c, m);
    if (ok) {
        BR_COUNT(b, t, published);
        broker_place(b, t, m, m->deadline, false, now);
    } else {
        broker_account_sub(b, t, m);
        msg_free(m);
    }
    if (c != NULL)
        broker_complete(c, BR_OP_PUB, ok ? BR_OK : BR_UNAVAILABLE, t, id);
    if (!ok)
        broker_settle(b, now); /* room was freed: parked producers may go */
}

br_status_t broker_restore(broker_t *b, const char *topic, size_t tlen, msg_t *m, uint64_t id,
                           uint16_t attempt)
{
    topic_t *t = broker_find(b, topic, tlen);

    if (t == NULL)
        t = broker_create(b, topic, tlen);
    if (t == NULL) {
        msg_free(m);
        return BR_NOTOPIC;
    }
    if (id == 0)
        id = b->next_id;
    m->id = id;
    m->attempt = attempt;
    m->topic = t;
    if (id >= b->next_id)
        b->next_id = id + 1;
    broker_account_add(b, t, m);
    broker_ready_tail(b, t, m);
    return BR_OK;
}

/* ---- introspection ---- */

void broker_stats(const broker_t *b, uint64_t now, broker_stats_t *out)
{
    memset(out, 0, sizeof(*out));
    out->uptime_ms = now > b->start ? now - b->start : 0;
    out->clients = b->nclients;
    out->topics = b->ntopics;
    out->messages = b->count;
    out->bytes = b->bytes;
    out->blocked_producers = b->nparked;
    out->totals = b->totals;
}

bool broker_topic_stats(const broker_t *b, const char *name, size_t len, topic_stats_t *out)
{
    const topic_t *t = broker_find(b, name, len);

    if (t == NULL)
        return false;
    topic_fill_stats(t, out);
    return true;
}

static int broker_cmp_topics(const void *x, const void *y)
{
    const topic_t *a = *(const topic_t *const *)x, *b = *(const topic_t *const *)y;
    size_t n = a->name_len < b->name_len ? a->name_len : b->name_len;
    int r = memcmp(a->name, b->name, n);

    if (r != 0)
        return r;
    return a->name_len < b->name_len ? -1 : a->name_len > b->name_len;
}

void broker_foreach_topic(const broker_t *b, void (*fn)(void *ctx, const topic_stats_t *ts),
                          void *ctx)
{
    topic_t **all;
    size_t n = 0;
    topic_stats_t ts;

    if (b->ntopics == 0)
        return;
    all = malloc(b->ntopics * sizeof(*all));
    if (all == NULL)
        return;
    for (size_t i = 0; i < b->nbuckets; i++)
        for (topic_t *t = b->buckets[i]; t != NULL; t = t->hnext)
            all[n++] = t;
    qsort(all, n, sizeof(*all), broker_cmp_topics);
    for (size_t i = 0; i < n; i++) {
        topic_fill_stats(all[i], &ts);
        fn(ctx, &ts);
    }
    free(all);
}

/* ---- the mirror's resynchronisation ---- */

static void broker_visit_queue(const msgq_t *q, const topic_t *t,
                               void (*fn)(void *ctx, const topic_t *t, const msg_t *m),
                               void *ctx)
{
    for (const msg_t *m = q->head; m != NULL; m = m->next)
        fn(ctx, t, m);
}

/* Read-only: fn must not change the broker (the re-entrancy rule). */
void broker_foreach_message(const broker_t *b,
                            void (*fn)(void *ctx, const topic_t *t, const msg_t *m), void *ctx)
{
    for (size_t i = 0; i < b->nbuckets; i++) {
        for (const topic_t *t = b->buckets[i]; t != NULL; t = t->hnext) {
            broker_visit_queue(&t->ready, t, fn, ctx);
            for (size_t j = 0; j < t->ndelayed; j++)
                fn(ctx, t, t->delayed[j]);
            broker_visit_queue(&t->inflight, t, fn, ctx);
            broker_visit_queue(&t->held, t, fn, ctx);
        }
    }
}
