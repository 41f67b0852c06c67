/* broker.h: the broker core: topics, bounds, consumers, acks and deadlines.
 *
 * A pure in-memory state machine. It knows nothing of sockets, libevent or
 * Redis: connections are opaque clients with two callbacks, and time comes
 * in as an argument (milliseconds on any monotonic clock), so tests drive
 * deadlines without sleeping.
 *
 * Re-entrancy rule: callbacks (deliver, complete, observer) must not call
 * back into the broker; they record what to do and return.
 */
#ifndef SLUICE_BROKER_H
#define SLUICE_BROKER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "counters.h"
#include "msg.h"

typedef struct broker broker_t;
typedef struct topic topic_t;
typedef struct client client_t;

typedef enum br_status {
    BR_OK = 0,
    BR_PENDING,   /* the operation waits; ops->complete is called exactly once later */
    BR_FULL,      /* topic or server memory full (reject, block timeout, never fits): -FULL <topic> */
    BR_NOTOPIC,   /* topic unknown and auto-create off, or max_topics reached: -ERR */
    BR_NOTFOUND,  /* message id unknown or owned by another client: -NOTFOUND <id> */
    BR_TIMEOUT,   /* GET/JOIN: nothing in time: -TIMEOUT */
    BR_UNAVAILABLE, /* confirm mode: the mirror did not take the message: -ERR mirror unavailable */
    BR_HELD,      /* confirm mode: accepted with an id, held for the mirror; the PUB's
                     outcome (BR_OK or BR_UNAVAILABLE) comes later through complete() */
    BR_DEADLINE_SOON, /* RESERVE: a message the client holds is within soon_ms of its
                         deadline and nothing is ready (beanstalk's DEADLINE_SOON) */
    BR_MOVED,     /* cluster: the topic is not here and another node owns it (only for a
                     client whose ops are `placed`): -MOVED <topic> <owner> */
} br_status_t;

/* Which operation a completion finishes. */
typedef enum br_op {
    BR_OP_PUB = 1, /* a parked or held PUB: BR_OK (id set), BR_FULL (block timeout),
                      BR_UNAVAILABLE (mirror refused it), or BR_HELD (a parked PUB
                      was accepted into held: id set, its outcome follows later) */
    BR_OP_GET,     /* a waiting GET: BR_OK (message already pushed via deliver) or BR_TIMEOUT */
    BR_OP_JOIN,    /* a waiting JOIN: BR_OK or BR_TIMEOUT */
    BR_OP_RESERVE, /* a waiting RESERVE: BR_OK (pushed via deliver), BR_TIMEOUT or
                      BR_DEADLINE_SOON */
} br_op_t;

typedef struct client_ops {
    /* Push message m (now in flight to this client, attempt already counted)
     * as "MSG <topic> <id> <attempt> <bytes>". The message stays owned by the
     * broker and is valid only during the call. Return false when the
     * client's output is over its limit: it gets no more pushes until
     * broker_client_resume(). A GET reply is pushed even when paused. */
    bool (*deliver)(void *ctx, const topic_t *t, const msg_t *m);
    /* A BR_PENDING operation finished. `id` is the message id for a PUB. */
    void (*complete)(void *ctx, br_op_t op, br_status_t st, const topic_t *t, uint64_t id);
    /* The client obeys the cluster's placement (cfg->cluster): a command
     * naming a topic that does not exist here and that another node owns
     * gets BR_MOVED instead of creating it. The native protocol sets it;
     * beanstalk cannot send a client elsewhere and serves every tube. */
    bool placed;
} client_ops_t;

/* Why a message left the broker, for the observer (the Redis mirror). */
typedef enum br_removal {
    BR_REMOVED_ACKED = 1,
    BR_REMOVED_DROPPED,      /* drop-oldest eviction */
    BR_REMOVED_DEAD,         /* max_deliveries reached, no dead-letter topic (or it was full) */
    BR_REMOVED_DEADLETTERED, /* moved to the dead-letter topic as a new message */
} br_removal_t;

/* Optional watcher of every message's life (set by the Redis mirror). */
typedef struct broker_observer {
    /* accepted, id assigned; m->state says where it went (MSG_DELAYED:
     * m->deadline is its due time, MSG_HELD: it waits for the mirror) */
    void (*enqueued)(void *ctx, const topic_t *t, const msg_t *m);
    void (*attempted)(void *ctx, const topic_t *t, const msg_t *m); /* delivered: attempt changed */
    void (*removed)(void *ctx, const topic_t *t, const msg_t *m, br_removal_t why);
    /* Its state, priority, due time or a job's counts changed outside a
     * delivery: buried, kicked, released (beanstalk) or NACKed with a
     * delay, a job's TTR ran out (may be NULL). */
    void (*changed)(void *ctx, const topic_t *t, const msg_t *m);
} broker_observer_t;

/* br_counters_t and topic_stats_t are counters.h's, generated from its lists. */

typedef struct broker_stats {
    uint64_t uptime_ms;
    uint64_t clients;           /* live client handles */
    uint64_t topics;
    uint64_t messages;          /* ready + delayed + in flight (+ held), all topics */
    uint64_t bytes;             /* their payload bytes (what max_memory bounds) */
    uint64_t blocked_producers;
    br_counters_t totals;
} broker_stats_t;

/* ---- life ---- */

/* A broker with cfg's limits; topics named in cfg (and their dead-letter
 * topics) exist from the start. cfg must outlive the broker or be replaced
 * with broker_configure(). NULL when out of memory. */
broker_t *broker_new(const config_t *cfg, uint64_t now);

/* Free everything: topics, messages, and any clients still registered. */
void broker_free(broker_t *b);

/* Apply a new (validated) config: live topics take their new limits,
 * newly named topics are created, parked producers that now fit resume.
 * A lowered limit evicts nothing. A parked producer whose topic's policy is
 * no longer block, or whose message can no longer ever fit, gets BR_FULL.
 * Existing SUB credits, park deadlines and ack deadlines are kept. Ends with
 * broker_dispatch(). */
void broker_configure(broker_t *b, const config_t *cfg, uint64_t now);

void broker_set_observer(broker_t *b, const broker_observer_t *obs, void *ctx);

/* Message ids continue above `next_id` - 1 (restore from a mirror). Never
 * lowers the next id. */
void broker_set_next_id(broker_t *b, uint64_t next_id);
uint64_t broker_next_id(const broker_t *b);

/* ---- clients (one per connection) ---- */

client_t *broker_client_new(broker_t *b, const client_ops_t *ops, void *ctx);

/* The connection is gone: its wait is cancelled (no completion), a parked
 * message is freed, its in-flight messages go back to the head of their
 * ready queues at once (in their delivery order; max_deliveries applies),
 * its SUBs end, and a held message stays held. Ends with broker_dispatch(),
 * so the returned messages reach other consumers. */
void broker_client_free(client_t *c, uint64_t now);

/* Output drained below the limit: pushes may flow again (dispatched now). */
void broker_client_resume(client_t *c, uint64_t now);

/* ---- commands (each returns what the reply should say) ---- */

/* Cluster placement (cfg->cluster), for every command below that names a
 * topic: for a client whose ops are `placed`, a topic that does not exist
 * here and that another node owns is BR_MOVED, and is not created. A topic
 * that exists is served, whoever owns its name. */

/* The same test for commands without a client (STATS, KICK, PAUSE): the
 * topic does not exist here and the cluster gives it to another node. */
bool broker_moved(const broker_t *b, const char *topic, size_t tlen);

/* PUB. Takes ownership of m in every case. BR_OK: *id is set. BR_PENDING:
 * parked (block policy); the client must not be read until complete().
 * BR_HELD (confirm mode): *id is set, the message waits for the mirror and
 * complete() brings the outcome; the client may go on publishing (many PUBs
 * of one client may be held at once). While a topic has parked producers a
 * new PUB to it parks behind them even if it would fit (strict FIFO). A
 * delay counts from acceptance (for a parked PUB, from when it is
 * unparked). */
br_status_t broker_publish(client_t *c, const char *topic, size_t tlen, msg_t *m,
                           uint64_t delay_ms, uint64_t now, uint64_t *id);

/* SUB. credit < 0 means the topic's prefetch. Registers only: pushes happen
 * at the next broker_dispatch(), so "+OK" can be written first. */
br_status_t broker_subscribe(client_t *c, const char *topic, size_t tlen, int64_t credit);

/* UNSUB. BR_OK even when not subscribed (BR_MOVED as above); in-flight
 * messages stay owned. */
br_status_t broker_unsubscribe(client_t *c, const char *topic, size_t tlen);

/* GET. BR_OK: the message was pushed through deliver() (that is the reply).
 * timeout_ms 0: BR_TIMEOUT at once if nothing is ready; else BR_PENDING. */
br_status_t broker_get(client_t *c, const char *topic, size_t tlen, uint64_t timeout_ms,
                       uint64_t now);

/* ACK, all-or-nothing: the caller first checks every id with broker_owns(),
 * then acks each. broker_ack returns false for an id no longer owned (a
 * duplicate in the same list); it is simply not counted. */
bool broker_owns(const client_t *c, uint64_t id);
bool broker_ack(client_t *c, uint64_t id, uint64_t now);

/* NACK: ready again (after delay_ms, as delayed), attempt kept. */
br_status_t broker_nack(client_t *c, uint64_t id, uint64_t delay_ms, uint64_t now);

/* TOUCH: the ack deadline starts again from now. */
br_status_t broker_touch(client_t *c, uint64_t id, uint64_t now);

/* ---- beanstalk's commands (the native protocol has BURY, KICK, PAUSE) ---- */

/* RESERVE from the first of several topics (beanstalk's watch list) that
 * has a message: of the unpaused topics with a ready message, the most
 * urgent head (lowest priority, then lowest id) is delivered through
 * deliver() and BR_OK is returned. Otherwise, if soon_ms > 0 and a message
 * the client holds is due within soon_ms, BR_DEADLINE_SOON; else with
 * timeout_ms 0 BR_TIMEOUT; else BR_PENDING: the client waits in every one
 * of the topics (completion BR_OP_RESERVE), until a message, timeout_ms
 * (< 0: no limit) or soon_ms before its earliest held deadline. Missing
 * topics are created as SUB creates them: BR_NOTOPIC if one cannot be,
 * BR_FULL when out of memory. */
typedef struct br_reserve {
    const char *const *names;
    const size_t *lens;
    size_t n;
    int64_t timeout_ms;
    uint64_t soon_ms;
} br_reserve_t;
br_status_t broker_reserve(client_t *c, const br_reserve_t *r, uint64_t now);

/* Deliver message `id` to c whatever its topic, if it is ready, delayed or
 * buried (beanstalk's reserve-job): BR_OK (pushed) or BR_NOTFOUND. */
br_status_t broker_reserve_id(client_t *c, uint64_t id, uint64_t now);

/* Remove message `id`: one c holds, or one that is ready, delayed or
 * buried (observer: removed ACKED; counted as acked). BR_OK, BR_NOTFOUND. */
br_status_t broker_delete(client_t *c, uint64_t id, uint64_t now);

/* c's message `id` back, with priority `pri` (kept only by a message with
 * an ext block), after delay_ms (0: ready now, in priority order).
 * Counts a release; max_deliveries applies as for NACK. */
br_status_t broker_release(client_t *c, uint64_t id, uint32_t pri, uint64_t delay_ms,
                           uint64_t now);

/* c's message `id` to its topic's buried list, with priority `pri` (as for
 * release). It stays there, counted in the bounds, until kicked or deleted. */
br_status_t broker_bury(client_t *c, uint64_t id, uint32_t pri, uint64_t now);

/* Up to n buried messages of the topic back to ready, oldest burial first;
 * if it has none buried, up to n delayed ones, soonest first. *kicked is
 * how many. BR_NOTOPIC for an unknown topic. */
br_status_t broker_kick(broker_t *b, const char *topic, size_t tlen, uint64_t n, uint64_t now,
                        uint64_t *kicked);

/* One buried or delayed message back to ready: BR_OK or BR_NOTFOUND. */
br_status_t broker_kick_id(broker_t *b, uint64_t id, uint64_t now);

/* No deliveries from the topic for ms (0 ends a pause). BR_NOTOPIC if it
 * does not exist. */
br_status_t broker_pause(broker_t *b, const char *topic, size_t tlen, uint64_t ms, uint64_t now);

/* Peeks: the message (valid until the next broker call) or NULL. By id: in
 * any state but held. Ready: the next one delivered; delayed: the soonest;
 * buried: the oldest burial. */
const msg_t *broker_peek_id(const broker_t *b, uint64_t id);
const msg_t *broker_peek_ready(const broker_t *b, const char *topic, size_t tlen);
const msg_t *broker_peek_delayed(const broker_t *b, const char *topic, size_t tlen);
const msg_t *broker_peek_buried(const broker_t *b, const char *topic, size_t tlen);

/* What stats-job prints about message `id` (not held); false if none. */
typedef struct br_job_info {
    uint64_t id;
    const topic_t *topic;
    msg_state_t state;   /* MSG_READY, MSG_DELAYED, MSG_INFLIGHT or MSG_BURIED */
    uint32_t pri;
    uint64_t age_ms;     /* 0 without an ext block (no creation time kept) */
    uint64_t delay_ms;
    uint64_t ttr_ms;     /* its own, or the topic's ack_timeout */
    uint64_t left_ms;    /* delayed or in flight: until its due time; else 0 */
    uint32_t reserves;   /* deliveries (the native attempt count) */
    uint32_t timeouts, releases, buries, kicks;
} br_job_info_t;
bool broker_job_info(const broker_t *b, uint64_t id, uint64_t now, br_job_info_t *out);

/* The topic exists (created as SUB would create it). false: BR_NOTOPIC. */
bool broker_ensure_topic(broker_t *b, const char *topic, size_t tlen);

/* JOIN. timeout_ms < 0 waits as long as it takes; 0 does not wait.
 * BR_OK when the topic holds no ready, delayed or in-flight message
 * (an unknown topic is empty, unless BR_MOVED as for the commands above). */
br_status_t broker_join(client_t *c, const char *topic, size_t tlen, int64_t timeout_ms,
                        uint64_t now);

/* ---- the Redis mirror's side ---- */

/* Confirm mode (redis.confirm): an accepted PUB is held: it counts against
 * the bounds and gets its id (observer->enqueued is called) but is neither
 * delivered nor answered until broker_confirm(). broker_publish returns
 * BR_HELD for it (a parked PUB completes BR_HELD when it is accepted) and
 * the completion carries the outcome. */
void broker_set_confirm(broker_t *b, bool on);

/* The mirror has (ok) or has not (!ok) stored held message `id`. ok: it
 * becomes ready and its PUB completes BR_OK. !ok: it is removed (no
 * observer call) and its PUB completes BR_UNAVAILABLE. A producer that has
 * gone meanwhile gets no completion, but its message is still readied or
 * removed. Unknown ids are ignored. A message published with a delay stays
 * delayed until acceptance + delay. Call broker_dispatch() after a batch of
 * these, once, so consumers get what became ready. */
void broker_confirm(broker_t *b, uint64_t id, bool ok, uint64_t now);

/* Restore one mirrored message at the tail of its topic's ready queue, with
 * its id and attempt count, bounds not applied (nothing restored is lost).
 * Takes ownership of m. Creates the topic if needed (auto_create_topics and
 * max_topics do not apply). Raises the next id above `id`; id 0 takes the
 * next free id. No observer call. BR_NOTOPIC only when out of memory. */
br_status_t broker_restore(broker_t *b, const char *topic, size_t tlen, msg_t *m,
                           uint64_t id, uint16_t attempt);

/* broker_restore for a message in any state a mirror keeps: MSG_READY as
 * broker_restore (but in priority order), MSG_DELAYED until `due` (ms on
 * the broker's clock; a due time already passed is ready at once), or
 * MSG_BURIED (at the tail of the buried list: restore buried messages in
 * the order they were buried). m may carry an ext block (msg_new_ext) with
 * its priority, TTR and counts. Other states: as MSG_READY. */
br_status_t broker_restore_as(broker_t *b, const char *topic, size_t tlen, msg_t *m,
                              uint64_t id, uint16_t attempt, msg_state_t state, uint64_t due);

/* Visit every message the broker holds (ready, delayed, in flight, held,
 * buried),
 * topic by topic, for a mirror's full resynchronisation. */
void broker_foreach_message(const broker_t *b,
                            void (*fn)(void *ctx, const topic_t *t, const msg_t *m), void *ctx);

/* ---- the event loop's side ---- */

/* Push ready messages to consumers with credit (round-robin). Call after
 * every command, once its reply is written. Cheap when nothing changed. */
void broker_dispatch(broker_t *b, uint64_t now);

/* Run every timer due at `now`: ack deadlines, delayed messages, block
 * timeouts, GET/JOIN timeouts; then dispatch. Returns the next deadline in
 * ms (UINT64_MAX when none). */
uint64_t broker_tick(broker_t *b, uint64_t now);

/* The earliest pending deadline (UINT64_MAX when none). */
uint64_t broker_next_deadline(const broker_t *b);

/* ---- introspection ---- */

void broker_stats(const broker_t *b, uint64_t now, broker_stats_t *out);

/* Stats of one topic; false if it does not exist. `now` is for
 * pause_left_ms. */
bool broker_topic_stats(const broker_t *b, const char *name, size_t len, uint64_t now,
                        topic_stats_t *out);

/* Visit every topic in name order; `fn` gets its stats. */
void broker_foreach_topic(const broker_t *b, uint64_t now,
                          void (*fn)(void *ctx, const topic_stats_t *ts), void *ctx);

const char *topic_name(const topic_t *t, size_t *len);

#endif
