/* broker.c: the broker core's life and producers' side: creating and
 * freeing the broker and its clients, bounds and overflow policies,
 * accepting a PUB (parked, held for the mirror, or placed), the one wait a
 * client may have, settling parked producers and JOINs after a message
 * left, ACK/NACK/TOUCH/JOIN, returns and dead letters, and the mirror's
 * confirm and restore.
 *
 * The rest of the core: broker_deliver.c (subscriptions, credit, dispatch),
 * broker_timer.c (the timer heap, deadlines, timeouts), broker_topics.c
 * (the topic registry, statistics); broker_internal.h holds what they
 * share. Everything is in memory and driven by calls; time is an argument.
 * Pushes to SUB consumers are deferred to broker_dispatch() so a command's
 * reply is always written before the pushes it causes.
 */
#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "broker_internal.h"

/* ---- accounting and bounds ---- */

static void broker_account_add(broker_t *b, topic_t *t, const msg_t *m)
{
    t->count++;
    t->bytes += m->len;
    b->count++;
    b->bytes += m->len;
}

/* A message left t for good: room for parked producers, maybe JOINs done. */
void broker_account_sub(broker_t *b, topic_t *t, const msg_t *m)
{
    t->count--;
    t->bytes -= m->len;
    b->count--;
    b->bytes -= m->len;
    b->retry_parked = true;
    if (t->count == 0 && !TAILQ_EMPTY(&t->joins) && !t->in_joinq) {
        t->in_joinq = true;
        SLIST_INSERT_HEAD(&b->joinq, t, jlink);
    }
}

static bool broker_never_fits(const broker_t *b, const topic_t *t, uint32_t len)
{
    return t->conf->max_messages == 0 || len > t->conf->max_bytes ||
           len > b->cfg->limits.max_memory;
}

/* max_lag: a topic whose subscribers are that far behind counts as full,
 * so a producer faster than its consumers feels it at once instead of
 * when max_bytes fills (docs/protocol.md, "Bounds"). */
static bool broker_lagging(const topic_t *t)
{
    return t->nsubs != 0 && t->ready.n >= t->conf->max_lag;
}

/* Inline: it is on every PUB's path, and max_lag is off unless set. */
static inline bool broker_fits(const broker_t *b, const topic_t *t, uint32_t len)
{
    return t->count < t->conf->max_messages && t->bytes + len <= t->conf->max_bytes &&
           b->bytes + len <= b->cfg->limits.max_memory &&
           (t->conf->max_lag == 0 || !broker_lagging(t));
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
        broker_unindex(b, m);
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
void broker_place(broker_t *b, topic_t *t, msg_t *m, uint64_t due, bool head, uint64_t now)
{
    /* Without memory for the heap the delay is dropped, not the message. */
    m->deadline = due;
    if (due > now && topic_delay_push(t, m) == 0) {
        (void)broker_index(b, m);
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
        if (broker_index(b, m) < 0) {
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
    broker_place(b, t, m, due, false, now);
    broker_obs_enqueued(b, t, m);
    return BR_OK;
}

/* A PUB answered -FULL: counted, message freed. */
br_status_t broker_refuse(broker_t *b, topic_t *t, msg_t *m)
{
    BR_COUNT(b, t, rejected);
    msg_free(m);
    return BR_FULL;
}

/* ---- clients: waits ---- */

/* The list of t's clients waiting as `kind` does. */
static struct topic_waits *broker_waiters(topic_t *t, int kind)
{
    switch (kind) {
    case WAIT_PUB:
        return &t->parked;
    case WAIT_GET:
        return &t->gets;
    default:
        assert(kind == WAIT_JOIN);
        return &t->joins;
    }
}

void broker_wait(client_t *c, int kind, topic_t *t)
{
    assert(c->wait == WAIT_NONE);
    c->wait = kind;
    c->wtopic = t;
    TAILQ_INSERT_TAIL(broker_waiters(t, kind), c, wlink);
}

/* End c's wait (any kind) without completing it. The caller keeps wmsg. */
void broker_unwait(client_t *c)
{
    broker_t *b = c->b;
    topic_t *t = c->wtopic;

    assert(c->wait != WAIT_NONE);
    if (c->wait == WAIT_RESERVE) {
        broker_reserve_unwait(c);
    } else if (c->wait == WAIT_PUB) {
        t->nparked--;
        b->nparked--;
        if (TAILQ_FIRST(&t->parked) == c)
            b->retry_parked = true; /* the head went: the next one may fit */
    }
    if (c->wait != WAIT_RESERVE)
        TAILQ_REMOVE(broker_waiters(t, c->wait), c, wlink);
    if (c->wait == WAIT_PUB && TAILQ_EMPTY(&t->parked))
        TAILQ_REMOVE(&b->parked_topics, t, plink);
    if (c->timer.idx != TNODE_NONE)
        broker_heap_remove(b, &c->timer);
    c->wait = WAIT_NONE;
    c->wtopic = NULL;
    c->wmsg = NULL;
}

static void broker_park(client_t *c, topic_t *t, msg_t *m, uint64_t delay, uint64_t now)
{
    broker_t *b = c->b;

    if (TAILQ_EMPTY(&t->parked))
        TAILQ_INSERT_TAIL(&b->parked_topics, t, plink);
    broker_wait(c, WAIT_PUB, t);
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
    TAILQ_INSERT_HEAD(&c->held, m, olink);
}

static void broker_unhold(client_t *c, msg_t *m)
{
    TAILQ_REMOVE(&c->held, m, olink);
    m->owner = NULL;
}

/* Serve t's parked producers in order while the head fits. A head that
 * does not fit waits if the policy is (still) block; under any other
 * policy (after a reload), or if it can never fit now, it gets -FULL. */
static void broker_unpark_topic(broker_t *b, topic_t *t, uint64_t now)
{
    client_t *c;

    while ((c = TAILQ_FIRST(&t->parked)) != NULL) {
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
    client_t *c;

    while ((c = TAILQ_FIRST(&t->joins)) != NULL) {
        broker_unwait(c);
        broker_complete(c, BR_OP_JOIN, BR_OK, t, 0);
    }
}

/* Finish what frees caused: JOINs on topics that became empty, then
 * parked producers (of any topic: the blocker may have been max_memory). */
void broker_settle(broker_t *b, uint64_t now)
{
    topic_t *t, *next;

    while ((t = SLIST_FIRST(&b->joinq)) != NULL) {
        SLIST_REMOVE_HEAD(&b->joinq, jlink);
        t->in_joinq = false;
        if (t->count == 0)
            broker_finish_joins(t);
    }
    while (b->retry_parked) {
        b->retry_parked = false;
        for (t = TAILQ_FIRST(&b->parked_topics); t != NULL; t = next) {
            next = TAILQ_NEXT(t, plink); /* unparking may unlink this topic, never another */
            broker_unpark_topic(b, t, now);
        }
    }
}

/* Publish a copy of dead m to the dead-letter topic, as `reject` would
 * (drop-oldest honoured, never parks). True if the copy was accepted. */
static bool broker_dead_letter(broker_t *b, const char *name, const msg_t *m, uint64_t now)
{
    /* No client, so no placement: a topic's dead letters stay on its node,
     * whoever owns their name. */
    topic_t *d = broker_topic_for(b, name, strlen(name), NULL);
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
bool broker_returns(broker_t *b, topic_t *t, msg_t *m, uint64_t now)
{
    if (broker_is_dead(t, m)) {
        broker_kill(b, t, m, now);
        return false;
    }
    BR_COUNT(b, t, redelivered);
    return true;
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
    LIST_INIT(&b->clients);
    STAILQ_INIT(&b->dispatchq);
    SLIST_INIT(&b->joinq);
    TAILQ_INIT(&b->parked_topics);
    if (broker_topics_init(b) < 0 || idtab_init(&b->ids) < 0 || broker_create_configured(b) < 0) {
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
    client_t *c;

    if (b == NULL)
        return;
    while ((c = LIST_FIRST(&b->clients)) != NULL) {
        LIST_REMOVE(c, link);
        broker_client_destroy(c);
    }
    broker_topics_free(b);
    free(b->heap);
    idtab_destroy(&b->ids);
    free(b);
}

void broker_configure(broker_t *b, const config_t *cfg, uint64_t now)
{
    b->cfg = cfg;
    broker_topics_reconf(b);
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
    c->due_floor = UINT64_MAX;
    TAILQ_INIT(&c->owned);
    TAILQ_INIT(&c->held);
    LIST_INSERT_HEAD(&b->clients, c, link);
    b->nclients++;
    return c;
}

void broker_client_free(client_t *c, uint64_t now)
{
    broker_t *b;
    msg_t *m;

    if (c == NULL)
        return;
    b = c->b;
    /* Held messages stay held; broker_confirm settles them. */
    while ((m = TAILQ_FIRST(&c->held)) != NULL)
        broker_unhold(c, m);
    if (c->wait != WAIT_NONE) {
        msg_t *parked = c->wait == WAIT_PUB ? c->wmsg : NULL;
        broker_unwait(c);
        msg_free(parked);
    }
    /* Paused, so returning credit does not put its subs back in rooms. */
    c->paused = true;
    /* From the tail, each to the head: they keep their original order. */
    while ((m = TAILQ_LAST(&c->owned, msg_list)) != NULL) {
        topic_t *t = m->topic;
        broker_unflight(b, m);
        if (broker_returns(b, t, m, now))
            broker_ready_head(b, t, m);
    }
    while (c->nsubs > 0)
        broker_sub_drop(c, c->subs[c->nsubs - 1]);
    LIST_REMOVE(c, link);
    b->nclients--;
    broker_client_destroy(c);
    broker_dispatch(b, now);
}

/* ---- commands ---- */

br_status_t broker_publish(client_t *c, const char *topic, size_t tlen, msg_t *m,
                           uint64_t delay_ms, uint64_t now, uint64_t *id)
{
    broker_t *b = c->b;
    topic_t *t;
    br_status_t st;

    assert(c->wait == WAIT_NONE);
    t = broker_topic_for(b, topic, tlen, c);
    if (t == NULL) {
        msg_free(m);
        return broker_missing(b, c, topic, tlen);
    }
    if (broker_never_fits(b, t, m->len))
        return broker_refuse(b, t, m);
    /* Parked producers go first: a new PUB queues behind them. */
    if (!TAILQ_EMPTY(&t->parked) || !broker_fits(b, t, m->len)) {
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

msg_t *broker_owned(const client_t *c, uint64_t id)
{
    msg_t *m = idtab_find(&c->b->ids, id);

    return m != NULL && m->state == MSG_INFLIGHT && m->owner == c ? m : NULL;
}

bool broker_owns(const client_t *c, uint64_t id)
{
    return broker_owned(c, id) != NULL;
}

/* ACK and NACK: the message c holds under id, out of flight; NULL if none. */
static msg_t *broker_take_owned(client_t *c, uint64_t id)
{
    msg_t *m = broker_owned(c, id);

    if (m != NULL)
        broker_unflight(c->b, m);
    return m;
}

/* m, out of every queue, is done with: an ACK, or beanstalk's delete. */
void broker_remove_acked(broker_t *b, topic_t *t, msg_t *m, uint64_t now)
{
    BR_COUNT(b, t, acked);
    broker_obs_removed(b, t, m, BR_REMOVED_ACKED);
    broker_unindex(b, m);
    broker_account_sub(b, t, m);
    msg_free(m);
    broker_settle(b, now);
}

bool broker_ack(client_t *c, uint64_t id, uint64_t now)
{
    msg_t *m = broker_take_owned(c, id);

    if (m == NULL)
        return false;
    broker_remove_acked(c->b, m->topic, m, now);
    return true;
}

br_status_t broker_nack(client_t *c, uint64_t id, uint64_t delay_ms, uint64_t now)
{
    broker_t *b = c->b;
    msg_t *m = broker_take_owned(c, id);
    topic_t *t;

    if (m == NULL)
        return BR_NOTFOUND;
    t = m->topic;
    if (msg_ext(m) != NULL)
        msg_ext(m)->releases++;
    if (broker_returns(b, t, m, now)) {
        broker_place(b, t, m, delay_ms > 0 ? broker_sat_add(now, delay_ms) : 0, true, now);
        /* The mirror keeps delays and a job's counts. */
        if (delay_ms > 0 || msg_ext(m) != NULL)
            broker_obs_changed(b, t, m);
    }
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
    m->deadline = broker_sat_add(now, broker_ttr(t, m));
    topic_inflight_add(t, m);
    broker_due_floor(c, m->deadline);
    broker_arm(c->b, t, m->deadline);
    return BR_OK;
}

br_status_t broker_join(client_t *c, const char *topic, size_t tlen, int64_t timeout_ms,
                        uint64_t now)
{
    topic_t *t;

    assert(c->wait == WAIT_NONE);
    t = broker_find(c->b, topic, tlen);
    if (t == NULL)
        return broker_placed_away(c->b, c, topic, tlen) ? BR_MOVED : BR_OK;
    if (t->count == 0)
        return BR_OK;
    if (timeout_ms == 0)
        return BR_TIMEOUT;
    broker_wait(c, WAIT_JOIN, t);
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
    broker_unindex(b, m);
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
    return broker_restore_as(b, topic, tlen, m, id, attempt, MSG_READY, 0);
}

br_status_t broker_restore_as(broker_t *b, const char *topic, size_t tlen, msg_t *m,
                              uint64_t id, uint16_t attempt, msg_state_t state, uint64_t due)
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
    if (state == MSG_BURIED) {
        (void)broker_index(b, m);
        topic_bury(t, m);
    } else if (state == MSG_DELAYED && due > 0) {
        /* A due time that passed while the broker was down fires at the
         * first tick. */
        m->deadline = due;
        if (topic_delay_push(t, m) == 0) {
            (void)broker_index(b, m);
            broker_arm(b, t, due);
        } else {
            broker_ready_tail(b, t, m);
        }
    } else {
        broker_ready_tail(b, t, m);
    }
    return BR_OK;
}
