/* broker_internal.h: what the broker core's own files (broker.c and
 * broker_*.c) share and nothing else sees: the broker and client
 * structures, and the helpers that cross from one of them to another.
 * The core's API is broker.h; this header is not part of it.
 *
 * The small helpers of the hot path (the topic lookup, marking a topic for
 * dispatch, the observer calls, arming a topic's timer) are inline here so
 * that splitting the core into files costs no calls per message (measured
 * with callgrind: docs/benchmarks.md).
 */
#ifndef SLUICE_BROKER_INTERNAL_H
#define SLUICE_BROKER_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

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
    WAIT_RESERVE, /* in the reservers of every topic of rwaits */
};

struct client {
    broker_t *b;
    client_ops_t ops;
    void *ctx;
    LIST_ENTRY(client) link;  /* broker's client list */
    struct msg_list owned;  /* messages it owns, in delivery order (msg->olink) */
    struct msg_list held;   /* its held PUBs' messages (msg->olink; never in flight) */
    sub_t **subs;           /* sorted by topic address: O(log n) lookup on ACK */
    size_t nsubs, subs_cap;
    bool paused;            /* deliver() said its output is full: no SUB pushes */
    int wait;               /* enum client_wait */
    topic_t *wtopic;
    msg_t *wmsg;
    uint64_t wdelay;        /* WAIT_PUB: the PUB's delay, counted from acceptance */
    rwait_t *rwaits;        /* WAIT_RESERVE: one node per topic it reads from */
    rwait_t rwait1;         /* ... which is this one for a reserve from one topic */
    size_t nrwaits;
    uint64_t wsoon;         /* WAIT_RESERVE: the DEADLINE_SOON margin (ms) */
    uint64_t wdue;          /* WAIT_RESERVE: when its timeout ends (UINT64_MAX: never) */
    uint64_t due_floor;     /* at most the earliest deadline in `owned` (UINT64_MAX:
                               none); made exact only when DEADLINE_SOON asks */
    TAILQ_ENTRY(client) wlink; /* wtopic->parked, ->gets or ->joins */
    tnode_t timer;          /* in the timer heap while the wait has a timeout */
};

struct broker {
    const config_t *cfg;
    uint64_t start;
    uint64_t next_id;
    idtab_t ids;              /* messages by id: every one in flight, held, delayed
                                 or buried, and ready ones with an ext block
                                 (MSG_F_INDEXED says which; see broker_lookup) */

    topic_t **buckets;        /* name -> topic, chained through hnext */
    size_t nbuckets;          /* power of two */
    size_t ntopics;

    LIST_HEAD(broker_clients, client) clients;
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

    STAILQ_HEAD(broker_dispatchq, topic) dispatchq; /* topics that may have pushes to do */
    SLIST_HEAD(broker_joinq, topic) joinq; /* topics that became empty while JOINs wait */
    TAILQ_HEAD(broker_parked, topic) parked_topics; /* topics with parked producers,
                                                       in parking order */
    bool retry_parked;        /* something left a topic or a parked head went */
};

#define BR_COUNT(b, t, field) ((t)->totals.field++, (b)->totals.field++)

/* A delivery's time to ack: the message's own TTR, or the topic's. */
static inline uint64_t broker_ttr(const topic_t *t, const msg_t *m)
{
    const msg_ext_t *x = msg_ext(m);

    return x != NULL && x->ttr_ms > 0 ? x->ttr_ms : t->conf->ack_timeout_ms;
}

/* ---- the id index ---- */

/* Best effort outside flight: a message the index could not take is still
 * found by broker_lookup's walk (ready) or only misses lookups by id. */
static inline int broker_index(broker_t *b, msg_t *m)
{
    if (m->flags & MSG_F_INDEXED)
        return 0;
    if (idtab_insert(&b->ids, m) < 0)
        return -1;
    m->flags |= MSG_F_INDEXED;
    return 0;
}

static inline void broker_unindex(broker_t *b, msg_t *m)
{
    if (!(m->flags & MSG_F_INDEXED))
        return;
    idtab_remove(&b->ids, m->id);
    m->flags &= (uint8_t)~MSG_F_INDEXED;
}

/* The message with this id in any state (broker_bstalk.c): the index, or
 * a walk of the ready queues that hold messages it lacks. */
msg_t *broker_lookup(const broker_t *b, uint64_t id);

static inline uint64_t broker_sat_add(uint64_t a, uint64_t b)
{
    return a > UINT64_MAX - b ? UINT64_MAX : a + b;
}

/* ---- broker_timer.c: the timer heap, and what fires from it ---- */

/* Room for `want` nodes (0 or -1): kept at ntopics + nclients. */
int broker_heap_reserve(broker_t *b, size_t want);
void broker_heap_push(broker_t *b, tnode_t *n);
void broker_heap_up(broker_t *b, size_t i);
void broker_heap_remove(broker_t *b, tnode_t *n);

/* c's wait ends at `due` unless something completes it first. */
void broker_wait_timer(client_t *c, uint64_t due);

/* The topic has something due at `due`: make sure it fires by then. */
static inline void broker_arm(broker_t *b, topic_t *t, uint64_t due)
{
    if (t->timer.idx == TNODE_NONE) {
        t->timer.due = due;
        broker_heap_push(b, &t->timer);
    } else if (due < t->timer.due) {
        t->timer.due = due;
        broker_heap_up(b, t->timer.idx);
    }
}

/* ---- broker_topics.c: the topic registry and what reads all of it ---- */

/* The name table (0 or -1 when out of memory), and its end with every topic. */
int broker_topics_init(broker_t *b);
void broker_topics_free(broker_t *b);
/* Every topic takes its limits from the current b->cfg. */
void broker_topics_reconf(broker_t *b);

topic_t *broker_find(const broker_t *b, const char *name, size_t len);
/* Create a topic with no limit checks. NULL when out of memory. */
topic_t *broker_create(broker_t *b, const char *name, size_t len);
/* A new topic if auto-creation is on and max_topics allows. NULL: BR_NOTOPIC. */
topic_t *broker_autocreate(broker_t *b, const char *name, size_t len);

/* A topic that does not exist here, named by client c (NULL: by the
 * broker itself, or for a client that does not obey placement): does the
 * cluster give it to another node? Topics that exist are this node's to
 * serve (its own, restored ones, dead-letter topics its topics feed), so
 * only a miss asks, and without a cluster the asking is one branch. */
static inline bool broker_placed_away(const broker_t *b, const client_t *c, const char *name,
                                      size_t len)
{
    return c != NULL && c->ops.placed && config_elsewhere(b->cfg, name, len);
}

/* An existing topic, or a new one if auto-creation is on, max_topics
 * allows and the cluster does not place it on another node (for c, as
 * above). NULL: broker_missing says why. (Inline: every PUB asks; c, not
 * c->ops.placed, so that the hit path reads nothing more than before.) */
static inline topic_t *broker_topic_for(broker_t *b, const char *name, size_t len,
                                        const client_t *c)
{
    topic_t *t = broker_find(b, name, len);

    if (t != NULL)
        return t;
    if (broker_placed_away(b, c, name, len))
        return NULL;
    return broker_autocreate(b, name, len);
}

/* Why broker_topic_for gave NULL: BR_MOVED or BR_NOTOPIC. */
static inline br_status_t broker_missing(const broker_t *b, const client_t *c, const char *name,
                                         size_t len)
{
    return broker_placed_away(b, c, name, len) ? BR_MOVED : BR_NOTOPIC;
}

/* Topics named in the config (in a cluster, those this node owns), and
 * their dead-letter topics, always exist. */
int broker_create_configured(broker_t *b);

/* ---- broker_deliver.c: subscriptions, credit, delivery ---- */

void broker_sub_drop(client_t *c, sub_t *s);
/* Take m out of flight: topic list, owner's list, id index, credit. */
void broker_unflight(broker_t *b, msg_t *m);
/* Push m (out of every queue) to c: -1 when out of memory for the index
 * (m is then ready again). s: the SUB it counts against, or NULL. */
int broker_deliver(client_t *c, topic_t *t, msg_t *m, sub_t *s, uint64_t now);
/* c holds message id in flight: the message, or NULL. */
msg_t *broker_owned(const client_t *c, uint64_t id);

/* ---- broker_bstalk.c ---- */

/* A reserve's wait: its timer's due time (timeout or DEADLINE_SOON), and
 * what ends it when the timer fires. */
void broker_reserve_unwait(client_t *c);
br_status_t broker_reserve_expired(client_t *c, uint64_t now);
/* The timer of c's reserve fired early (its floor was stale): set it again. */
void broker_reserve_rearm(client_t *c);
/* c's deliveries' deadlines, for DEADLINE_SOON: a lower bound kept as
 * cheaply as a compare. */
static inline void broker_due_floor(client_t *c, uint64_t deadline)
{
    if (deadline < c->due_floor)
        c->due_floor = deadline;
}

/* Serve t's waiting reserves from its ready queue (after its GETs). */
void broker_serve_reserves(topic_t *t, uint64_t now);

/* ---- broker.c: bounds, waits, returns ---- */

/* m, out of every queue, leaves the broker for good (freed). */
void broker_account_sub(broker_t *b, topic_t *t, const msg_t *m);
/* ... acknowledged (counted, observed, freed, parked producers settled). */
void broker_remove_acked(broker_t *b, topic_t *t, msg_t *m, uint64_t now);
/* m becomes available: delayed until `due` if that is in the future, else
 * ready (`head`: as a return, see broker_ready_head). */
void broker_place(broker_t *b, topic_t *t, msg_t *m, uint64_t due, bool head, uint64_t now);

/* c waits (enum client_wait) on t, at the tail of the list of its kind. */
void broker_wait(client_t *c, int kind, topic_t *t);
/* End c's wait (any kind) without completing it. The caller keeps wmsg. */
void broker_unwait(client_t *c);
/* A PUB answered -FULL: counted, message freed. */
br_status_t broker_refuse(broker_t *b, topic_t *t, msg_t *m);
/* m left flight without an ack. Dead, or redelivered: true if it should go
 * back (the caller puts it where it belongs). */
bool broker_returns(broker_t *b, topic_t *t, msg_t *m, uint64_t now);
/* Finish what frees caused: JOINs on topics that became empty, then
 * parked producers (of any topic: the blocker may have been max_memory). */
void broker_settle(broker_t *b, uint64_t now);

static inline void broker_complete(client_t *c, br_op_t op, br_status_t st, const topic_t *t,
                                   uint64_t id)
{
    if (c->ops.complete != NULL)
        c->ops.complete(c->ctx, op, st, t, id);
}

/* ---- the observer ---- */

static inline void broker_obs_enqueued(broker_t *b, const topic_t *t, const msg_t *m)
{
    if (b->obs.enqueued != NULL)
        b->obs.enqueued(b->obs_ctx, t, m);
}

static inline void broker_obs_attempted(broker_t *b, const topic_t *t, const msg_t *m)
{
    if (b->obs.attempted != NULL)
        b->obs.attempted(b->obs_ctx, t, m);
}

static inline void broker_obs_removed(broker_t *b, const topic_t *t, const msg_t *m,
                                      br_removal_t why)
{
    if (b->obs.removed != NULL)
        b->obs.removed(b->obs_ctx, t, m, why);
}

static inline void broker_obs_changed(broker_t *b, const topic_t *t, const msg_t *m)
{
    if (b->obs.changed != NULL)
        b->obs.changed(b->obs_ctx, t, m);
}

/* ---- the dispatch queue: topics that may have pushes to do ---- */

static inline void broker_mark(broker_t *b, topic_t *t)
{
    if (t->in_dispatch)
        return;
    t->in_dispatch = true;
    STAILQ_INSERT_TAIL(&b->dispatchq, t, dlink);
}

/* A ready message with an ext block is a beanstalk job: found by id. */
static inline void broker_ready_tail(broker_t *b, topic_t *t, msg_t *m)
{
    if (m->flags & MSG_F_EXT)
        (void)broker_index(b, m);
    topic_ready_push_tail(t, m);
    broker_mark(b, t);
}

/* A message back from flight: a plain one to the head of its priority
 * (the native rule), a job in (priority, id) order (beanstalkd's). */
static inline void broker_ready_head(broker_t *b, topic_t *t, msg_t *m)
{
    if (m->flags & MSG_F_EXT) {
        (void)broker_index(b, m);
        topic_ready_insert(t, m);
    } else {
        topic_ready_push_head(t, m);
    }
    broker_mark(b, t);
}

#endif
