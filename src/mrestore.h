/* mrestore.h: reading the Redis mirror's messages back into the broker: the
 * commands to send, one at a time, and what to make of each reply. No I/O:
 * the mirror sends the commands and feeds the replies here, on a blocking
 * connection at start or on its async one when Redis comes back later.
 */
#ifndef SLUICE_MRESTORE_H
#define SLUICE_MRESTORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <hiredis/hiredis.h>

#include "broker.h"
#include "msg.h"

typedef struct mrestore mrestore_t;

/* A topic's messages are spread over hashes of 65,536 ids each (a shard:
 * id >> MRESTORE_SHARD_BITS), so that a restore can read each one whole
 * with HGETALL: one small reply at a time instead of one scan of a hash
 * of millions (docs/redis.md, "Restore at scale"). The keys, under the
 * prefix P, for topic T and shard S (decimal):
 *   P:shards:T     set of the shard numbers T has
 *   P:msg:S:T      id -> payload, and the pin
 *   P:att:S:T      id -> deliveries so far
 *   P:meta:S:T     id -> the message's meta record (below)
 * The topic is always the last part of a key (names may hold ':'). */
#define MRESTORE_SHARD_BITS 16

static inline uint64_t mrestore_shard(uint64_t id)
{
    return id >> MRESTORE_SHARD_BITS;
}

/* Every P:msg:S:T hash carries this one field besides the message ids
 * (the mirror writes it when it first writes to the shard on a
 * connection). Its value is longer than Redis's hash-max-listpack-value
 * (64), so Redis keeps the hash as a hash table, and the hash never
 * empties, so it stays one. A small hash is a listpack, where every HSET
 * and HDEL field is a linear scan: with the hundred or so messages a
 * confirm window keeps in Redis, that cost Redis 2.5 us of CPU per
 * confirmed message instead of 0.75 (docs/redis.md). A restore skips it;
 * the mirror deletes a shard whose only field is the pin once no new id
 * can fall in it. */
#define MRESTORE_PIN_FIELD "pin"
#define MRESTORE_PIN_VALUE                                                                        \
    "sluice keeps this field so that Redis stores this hash as a hash table, "                   \
    "not a listpack (docs/redis.md)"

/* The meta record of a message: what survives a restart beyond its
 * payload and attempts. Written only for a message with an ext block
 * (msg.h: priority, TTR, the stats-job counts) or one that is not plainly
 * ready (delayed, buried), so the plain native path writes none. ASCII,
 * fields separated by ':':
 *   <state>:<due>                         a message without an ext block
 *   <state>:<due>:<pri>:<ttr_ms>:<delay_ms>:<created>:<releases>:<buries>:<kicks>:<timeouts>
 * state 'r' ready (in flight and held ones come back ready), 'd' delayed,
 * 'b' buried; due and created in unix ms (due 0: none). */
#define MRESTORE_META_MAX 232

static inline bool mrestore_meta_needed(const msg_t *m)
{
    if (m->flags & MSG_F_EXT)
        return true;
    return ((1u << m->state) & ((1u << MSG_DELAYED) | (1u << MSG_BURIED))) ||
           (m->state == MSG_HELD && m->deadline > 0);
}

/* m's record into out (MRESTORE_META_MAX bytes), the broker's clock at
 * `now` being `now_unix` in unix ms; its length. */
size_t mrestore_meta_format(const msg_t *m, uint64_t now, uint64_t now_unix, char *out);

/* A restore of the keys under prefix, begun at now (ms). NULL when out of
 * memory. */
mrestore_t *mrestore_new(const char *prefix, uint64_t now);
void mrestore_free(mrestore_t *rs);

/* The next command, in argv/lens (valid until the next call); returns its
 * argument count (at most MRESTORE_MAX_ARGS), or -1 when out of memory.
 * Only when mrestore_may_send (always true after mrestore_feed returned
 * 0). */
#define MRESTORE_MAX_ARGS 5
int mrestore_command(mrestore_t *rs, const char **argv, size_t *lens);

/* Take the reply to the oldest command sent: 0 send the next one, 1 done,
 * -1 out of memory. Unexpected replies are logged and their key skipped:
 * a restore reads what it can, it never gets stuck. */
int mrestore_feed(mrestore_t *rs, const redisReply *r);

/* The blocking restore's fast path. First the small replies (next id, the
 * topic set, each topic's shard set) go through mrestore_feed, one command
 * at a time; then, while mrestore_scanning, the shards (HGETALL) and any
 * old-schema hash (HSCAN) are read by a reader from mrestore_reader_new,
 * whose functions hand each reply to rs as it is parsed and build nothing.
 * Whenever mrestore_may_send, the next mrestore_command may be sent before
 * the reply in hand is complete (at most MRESTORE_WINDOW in flight; an
 * HSCAN's next page only once its cursor is in); each complete reply is
 * followed by mrestore_page_end: 0 more to come, 1 done. */
#define MRESTORE_WINDOW 4
bool mrestore_scanning(const mrestore_t *rs);
bool mrestore_may_send(const mrestore_t *rs);
redisReader *mrestore_reader_new(mrestore_t *rs);
int mrestore_page_end(mrestore_t *rs);

/* Put what was read into b, in id order (ids ascend in publish order),
 * with attempt counts, and with what their meta records say (state, due
 * time, ext block); messages that could collide with ids b already handed
 * out (a late restore) get fresh ids. now is the broker's clock (ms), and
 * now_unix the same moment in unix ms. The caller dispatches. */
void mrestore_apply(mrestore_t *rs, broker_t *b, uint64_t now, uint64_t now_unix);

/* After mrestore_apply: the next message restored without an ext block
 * but with a meta record (a delayed or buried one, say), from *pos (start
 * at 0): its record must go when it does. false past the last (and at
 * once when the messages were renumbered: a resync rewrites the records
 * then). */
bool mrestore_plain_meta(const mrestore_t *rs, size_t *pos, uint64_t *id);

/* Something was read from the single-hash schema of before the shards
 * (P:messages:T, P:attempts:T): Redis should be rewritten (a resync). */
bool mrestore_found_old(const mrestore_t *rs);

/* The i-th shard that was read and held no message (only the pin, or no
 * hash at all): its topic and number. false past the last. */
bool mrestore_empty_shard(const mrestore_t *rs, size_t i, const char **topic, uint64_t *shard);

#endif
