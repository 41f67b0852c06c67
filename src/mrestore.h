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

typedef struct mrestore mrestore_t;

/* Every P:messages:T hash carries this one field besides the message ids
 * (the mirror writes it when it first names the topic on a connection).
 * Its value is longer than Redis's hash-max-listpack-value (64), so Redis
 * keeps the hash as a hash table, and the hash never empties, so it stays
 * one. A small hash is a listpack, where every HSET and HDEL field is a
 * linear scan: with the hundred or so messages a confirm window keeps in
 * Redis, that cost Redis 2.5 us of CPU per confirmed message instead of
 * 0.75 (docs/redis.md). A restore skips it. */
#define MRESTORE_PIN_FIELD "pin"
#define MRESTORE_PIN_VALUE                                                                        \
    "sluice keeps this field so that Redis stores this hash as a hash table, "                   \
    "not a listpack (docs/redis.md)"

/* A restore of the keys under prefix, begun at now (ms). NULL when out of
 * memory. */
mrestore_t *mrestore_new(const char *prefix, uint64_t now);
void mrestore_free(mrestore_t *rs);

/* The next command, in argv/lens (valid until the next call); returns its
 * argument count, or -1 when out of memory. Only when mrestore_may_send
 * (always true after mrestore_feed returned 0). */
int mrestore_command(mrestore_t *rs, const char **argv, size_t *lens);

/* Take the reply to the last command: 0 send the next one, 1 done, -1 out
 * of memory. Unexpected replies are logged and their key skipped: a
 * restore reads what it can, it never gets stuck. */
int mrestore_feed(mrestore_t *rs, const redisReply *r);

/* The blocking restore's fast path, once the first two replies (next id,
 * topics) went through mrestore_feed: while mrestore_scanning, replies are
 * read by a reader from mrestore_reader_new (its functions hand each page
 * to rs as it is parsed, and build nothing); whenever mrestore_may_send, the
 * next mrestore_command may be sent, before the page in hand is complete
 * (at most two in flight); each complete reply is followed by
 * mrestore_page_end: 0 more to come, 1 done. */
bool mrestore_scanning(const mrestore_t *rs);
bool mrestore_may_send(const mrestore_t *rs);
redisReader *mrestore_reader_new(mrestore_t *rs);
int mrestore_page_end(mrestore_t *rs);

/* Put what was read into b, in id order (ids ascend in publish order),
 * with attempt counts; messages that could collide with ids b already
 * handed out (a late restore) get fresh ids. The caller dispatches. */
void mrestore_apply(mrestore_t *rs, broker_t *b, uint64_t now);

#endif
