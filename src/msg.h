/* msg.h: one message, header and payload in a single allocation.
 *
 * A message is allocated once when its payload is read off a socket and
 * freed once when it is acknowledged, dropped or dead; in between it only
 * moves between intrusive lists, so the hot path never copies or allocates.
 */
#ifndef SLUICE_MSG_H
#define SLUICE_MSG_H

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
} msg_state_t;

/* Flags. */
#define MSG_F_CREDITED 0x01 /* in flight under a SUB: counts against that credit */

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

/* Allocate a message with room for `len` payload bytes (uninitialised).
 * Returns NULL when out of memory. */
msg_t *msg_new(uint32_t len);

/* Allocate a message holding a copy of `len` bytes at `data`. */
msg_t *msg_new_copy(const void *data, uint32_t len);

/* Free a message. It must not be linked anywhere. NULL is a no-op.
 * Small ones are kept for reuse by msg_new (a bounded cache). */
void msg_free(msg_t *m);

/* Give the cached blocks back to malloc (at shutdown, so leak checkers see
 * nothing held). */
void msg_cache_release(void);

#endif
