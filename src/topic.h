/* topic.h: one topic's queues: the ready FIFO, the delay heap, the in-flight
 * list ordered by deadline, messages held for the mirror, and the lists of
 * subscriptions and waiting clients that the broker walks.
 *
 * topic.c only moves messages between these structures and keeps their
 * counts; every decision (bounds, policies, who gets what) is the broker's
 * (broker.c and broker_*.c).
 */
#ifndef SLUICE_TOPIC_H
#define SLUICE_TOPIC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/queue.h>

#include "config.h"
#include "counters.h"
#include "msg.h"

typedef struct topic topic_t; /* broker.h names it too */

/* The lists are <sys/queue.h>'s (glibc's BSD lists), linked through their
 * members: a message, subscription or client is in a list without an
 * allocation, and leaves it in O(1). */

/* A queue of messages linked through msg->link, and its length. A head
 * points into itself, so an msgq_t is initialised (topic_q_init) and never
 * copied. */
typedef struct msgq {
    struct msg_list list;
    uint64_t n;
} msgq_t;

void topic_q_init(msgq_t *q);
void topic_q_push_tail(msgq_t *q, msg_t *m);
void topic_q_push_head(msgq_t *q, msg_t *m);
msg_t *topic_q_pop_head(msgq_t *q);
void topic_q_remove(msgq_t *q, msg_t *m);

/* A node of the broker's timer heap (a topic's next deadline, or a client's
 * wait timeout). */
#define TNODE_NONE SIZE_MAX
enum { TNODE_TOPIC = 1, TNODE_CLIENT };
typedef struct tnode {
    uint64_t due;  /* ms; for a topic a lower bound of its real next deadline */
    size_t idx;    /* position in the heap, TNODE_NONE when not in it */
    int kind;      /* TNODE_* */
} tnode_t;

/* The topic or client whose `member` node n is. */
#define TNODE_OWNER(n, type, member) \
    ((type *)(void *)((char *)(n) - offsetof(type, member)))

/* One client's subscription to one topic. */
typedef struct sub {
    struct client *client;
    struct topic *topic;
    uint32_t credit;   /* pushes allowed in flight at once */
    uint32_t inflight; /* MSG_F_CREDITED messages of this topic the client holds */
    bool in_room;      /* linked in topic->room */
    TAILQ_ENTRY(sub) rlink; /* topic->room while inflight < credit and not paused */
} sub_t;

/* Clients waiting on a topic (linked through client->wlink, broker.c's). */
TAILQ_HEAD(topic_waits, client);

/* A client's place in one topic's RESERVE waiters: a reserve waits in
 * every topic it reads from at once, so it needs a node per topic. */
typedef struct rwait {
    struct client *client;
    struct topic *topic;
    TAILQ_ENTRY(rwait) link;
} rwait_t;
TAILQ_HEAD(topic_rwaits, rwait);

struct topic {
    /* The broker's name table bucket chain: hand-written, as a bucket is a
     * bare pointer and a topic never leaves the table. */
    struct topic *hnext;
    const topic_conf_t *conf;   /* limits: points into the broker's current config */

    /* Ready messages by priority (msg_pri, lower first). Within one
     * priority: first deliveries FIFO, native returns at the head, and
     * beanstalk's releases and kicks by id (topic_ready_insert). */
    msgq_t ready;
    uint64_t ready_bytes;       /* payload bytes of `ready`: what drop-oldest can free */
    uint64_t ready_urgent;      /* of them with a priority below MSG_PRI_DEFAULT */
    uint64_t ready_low;         /* of them with a priority above it */
    uint64_t ready_indexed;     /* of them in the id index (the rest are found by walking) */
    msgq_t buried;              /* FIFO of burials */
    msgq_t inflight;            /* ordered by deadline, earliest at the head */
    msgq_t held;                /* confirm mode: accepted, waiting for the mirror */
    msg_t **delayed;            /* binary min-heap by (deadline, id) */
    size_t ndelayed, delayed_cap;
    uint64_t delay_seq;         /* the last msg_ext_t.delay_seq given */

    uint64_t count;             /* ready + delayed + in flight + held: max_messages */
    uint64_t bytes;             /* their payload bytes: max_bytes */

    uint64_t nsubs;             /* SUBs of the topic (each client's sub_t is in its own array) */
    TAILQ_HEAD(topic_room, sub) room; /* subs that can take a push; round-robin from the head */
    struct topic_waits parked;  /* clients with a parked PUB, FIFO */
    uint64_t nparked;
    struct topic_waits gets;    /* clients with a waiting GET, FIFO */
    struct topic_waits joins;   /* clients with a waiting JOIN */
    struct topic_rwaits reservers; /* clients waiting in a RESERVE, FIFO */
    uint64_t nreservers;
    uint64_t pause_ms;          /* PAUSE given; 0 when not paused */
    uint64_t pause_until;       /* ms: no deliveries before this */

    br_counters_t totals;

    /* broker bookkeeping */
    tnode_t timer;              /* in the timer heap while it may have a deadline */
    STAILQ_ENTRY(topic) dlink;  /* dispatch queue */
    bool in_dispatch;
    SLIST_ENTRY(topic) jlink;   /* topics to check for finished JOINs */
    bool in_joinq;
    TAILQ_ENTRY(topic) plink;   /* broker's list of topics with parked producers */

    size_t name_len;
    char name[];                /* NUL-terminated */
};

/* A new empty topic, or NULL when out of memory. */
topic_t *topic_new(const char *name, size_t len, const topic_conf_t *conf);

/* Free the topic and every message in its queues. Subscriptions and waiting
 * clients belong to the broker and must be gone or abandoned already. */
void topic_free(topic_t *t);

/* Ready queue. The push functions set the message state. push_tail: last
 * of its priority; push_head: first of its priority; insert: by (priority,
 * id), as beanstalkd orders its ready jobs. Only a queue that mixes
 * priorities walks (from the end it pushes at); one priority is O(1). */
void topic_ready_push_head(topic_t *t, msg_t *m);
void topic_ready_insert(topic_t *t, msg_t *m);
void topic_ready_remove(topic_t *t, msg_t *m);
/* push_tail and pop for any message (the inline ones below take the
 * plain ones' path themselves). */
void topic_ready_place_tail(topic_t *t, msg_t *m);
msg_t *topic_ready_take_head(topic_t *t);
/* Put a whole chain (built with topic_q_push_tail) before the current head
 * of its priority, keeping its order. The chain is left empty. */
void topic_ready_splice_head(topic_t *t, msgq_t *chain);

/* Inline, so the plain FIFO path costs no more than it did before
 * priorities: a plain message (no ext block, not indexed) onto a queue
 * with nothing less urgent than 1024 in it. */
static inline void topic_ready_push_tail(topic_t *t, msg_t *m)
{
    if ((m->flags & (MSG_F_EXT | MSG_F_INDEXED)) || t->ready_low > 0) {
        topic_ready_place_tail(t, m);
        return;
    }
    m->state = MSG_READY;
    TAILQ_INSERT_TAIL(&t->ready.list, m, link);
    t->ready.n++;
    t->ready_bytes += m->len;
}

static inline msg_t *topic_ready_pop(topic_t *t)
{
    msg_t *m = TAILQ_FIRST(&t->ready.list);

    if (m == NULL || (m->flags & (MSG_F_EXT | MSG_F_INDEXED)))
        return topic_ready_take_head(t);
    TAILQ_REMOVE(&t->ready.list, m, link);
    t->ready.n--;
    t->ready_bytes -= m->len;
    return m;
}

/* Buried list: a burial goes to the tail, kicks take the head. */
void topic_bury(topic_t *t, msg_t *m);
void topic_unbury(topic_t *t, msg_t *m);

/* Paused at `now`? (A pause past its end is over even before the timer
 * clears it.) */
static inline bool topic_paused(const topic_t *t, uint64_t now)
{
    return t->pause_ms > 0 && now < t->pause_until;
}

/* In-flight list: insert by m->deadline (from the tail: usually O(1)). */
void topic_inflight_add(topic_t *t, msg_t *m);
void topic_inflight_remove(topic_t *t, msg_t *m);

/* Delay heap. topic_delay_reserve makes room for one more push (0 or -1);
 * topic_delay_push fails (-1) only if there is no room and growing fails. */
int topic_delay_reserve(topic_t *t);
int topic_delay_push(topic_t *t, msg_t *m);
msg_t *topic_delay_peek(const topic_t *t);
msg_t *topic_delay_pop(topic_t *t);

void topic_held_add(topic_t *t, msg_t *m);
void topic_held_remove(topic_t *t, msg_t *m);

/* Remove one message from the delay heap, wherever it is. */
void topic_delay_remove(topic_t *t, msg_t *m);

/* Earliest in-flight deadline, delayed due time or pause end; UINT64_MAX
 * if none. */
uint64_t topic_next_due(const topic_t *t);

void topic_fill_stats(const topic_t *t, uint64_t now, topic_stats_t *out);

#endif
