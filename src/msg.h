/* msg.h: one message, header and payload in a single allocation.
 *
 * A message is allocated once when its payload is read off a socket and
 * freed once when it is acknowledged, dropped or dead; in between it only
 * moves between intrusive lists, so the hot path never copies or allocates.
 */
#ifndef SLUICE_MSG_H
#define SLUICE_MSG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/queue.h>

struct topic;
struct client;

typedef enum msg_state {
    MSG_NEW = 0,  /* allocated, not in any topic yet (or parked with its producer) */
    MSG_READY,    /* in its topic's ready queue */
    MSG_DELAYED,  /* in its topic's delay heap until `deadline` */
    MSG_INFLIGHT, /* delivered; owned by `owner` until ack/nack/deadline/close */
    MSG_HELD,     /* confirm mode: accepted (has an id, counts against bounds) but
                     waiting for the mirror; `owner` is the producer or NULL */
    MSG_BURIED,   /* in its topic's buried list until kicked or deleted */
} msg_state_t;

/* Flags. */
#define MSG_F_CREDITED 0x01 /* in flight under a SUB: counts against that credit */
#define MSG_F_EXT 0x02      /* carries a msg_ext_t after its payload (msg_ext) */
#define MSG_F_INDEXED 0x04  /* in the broker's id index */
#define MSG_F_PINNED 0x08   /* an output buffer holds a reference to its payload */
#define MSG_F_UNPIN_FREES 0x10 /* msg_free came while pinned: msg_unpin frees it */

/* The priority of a message without an ext block (beanstalkd's default:
 * lower is more urgent; below 1024 is "urgent" in its stats). */
#define MSG_PRI_DEFAULT 1024u
#define MSG_PRI_URGENT 1024u

/* A list of messages (<sys/queue.h>'s TAILQ: O(1) at both ends and for
 * removal, and walkable from the tail). */
TAILQ_HEAD(msg_list, msg);

typedef struct msg {
    TAILQ_ENTRY(msg) link;     /* topic's ready, in-flight or held queue; msg.c's
                                  cache of freed blocks (tqe_next only) */
    TAILQ_ENTRY(msg) olink;    /* owner's in-flight or held list */
    struct client *owner;      /* MSG_INFLIGHT, and MSG_HELD while its producer lives */
    struct topic *topic;       /* set once enqueued */
    uint64_t id;               /* 0 until enqueued */
    uint64_t deadline;         /* ms: ack deadline (in flight) or due time (delayed) */
    uint32_t len;              /* payload bytes */
    uint16_t attempt;          /* deliveries so far; the next push says attempt+1 */
    uint8_t state;             /* msg_state_t */
    uint8_t flags;             /* MSG_F_* */
    char data[];               /* payload: len bytes, NOT NUL-terminated */
} msg_t;

/* What a beanstalk job carries beyond a native message: its priority, its
 * own TTR, and the numbers stats-job prints. Kept in the same allocation,
 * after the payload, and only for messages that need it (a put over the
 * beanstalk listener, a native PUB with pri= or ttr=), so a plain message
 * stays as small as before. */
typedef struct msg_ext {
    uint64_t created;   /* ms, the broker's clock: stats-job's age */
    uint64_t ttr_ms;    /* ack deadline after a delivery; 0 = the topic's ack_timeout */
    uint64_t delay_ms;  /* the last delay it was given: stats-job's delay */
    uint64_t delay_seq; /* order among delayed messages due in the same ms */
    uint32_t pri;       /* lower first */
    uint32_t timeouts;  /* deliveries that ran out of time */
    uint32_t releases;  /* returned by release (beanstalk) or NACK */
    uint32_t buries;
    uint32_t kicks;
} msg_ext_t;

/* Allocate a message with room for `len` payload bytes (uninitialised).
 * Returns NULL when out of memory. */
msg_t *msg_new(uint32_t len);

/* The same with an ext block: pri MSG_PRI_DEFAULT, everything else 0. */
msg_t *msg_new_ext(uint32_t len);

/* A job: msg_new_ext with its priority, own TTR (0: the topic's), the
 * delay it was given and its creation time (the broker's clock) set. */
msg_t *msg_new_job(uint32_t len, uint32_t pri, uint64_t ttr_ms, uint64_t delay_ms,
                   uint64_t created);

/* m's ext block, or NULL when it has none. */
static inline msg_ext_t *msg_ext(const msg_t *m)
{
    if (!(m->flags & MSG_F_EXT))
        return NULL;
    return (msg_ext_t *)(void *)((char *)(uintptr_t)m->data +
                                 (((size_t)m->len + 7) & ~(size_t)7));
}

static inline uint32_t msg_pri(const msg_t *m)
{
    const msg_ext_t *x = msg_ext(m);

    return x != NULL ? x->pri : MSG_PRI_DEFAULT;
}

/* Allocate a message holding a copy of `len` bytes at `data`. */
msg_t *msg_new_copy(const void *data, uint32_t len);

/* Free a message. It must not be linked anywhere. NULL is a no-op.
 * Small ones are kept for reuse by msg_new (a bounded cache); a pinned one
 * is freed by its msg_unpin. */
void msg_free(msg_t *m);

/* Lend m's payload to one output buffer, which writes from it instead of
 * a copy, until it calls msg_unpin; a msg_free in between (the message was
 * acknowledged or dropped before its bytes left) waits for the unpin. The
 * payload never changes once read, so the lender sees what was queued.
 * One lender at a time keeps this a flag: false when m is lent already
 * (a redelivery while the first push waits in a slow reader's buffer), and
 * the caller copies instead. */
static inline bool msg_pin(const msg_t *cm)
{
    msg_t *m = (msg_t *)(uintptr_t)cm; /* lending is bookkeeping, not a change of the message */

    if (m->flags & MSG_F_PINNED)
        return false;
    m->flags |= MSG_F_PINNED;
    return true;
}

/* The output buffer is done with m's payload (written, or its connection
 * gone); frees m if msg_free came meanwhile. */
void msg_unpin(const msg_t *m);

/* Give the cached blocks back to malloc (at shutdown, so leak checkers see
 * nothing held). */
void msg_cache_release(void);

#endif
