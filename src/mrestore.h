/* mrestore.h: reading the Redis mirror's messages back into the broker: the
 * commands to send, one at a time, and what to make of each reply. No I/O:
 * the mirror sends the commands and feeds the replies here, on a blocking
 * connection at start or on its async one when Redis comes back later.
 */
#ifndef SLUICE_MRESTORE_H
#define SLUICE_MRESTORE_H

#include <stddef.h>
#include <stdint.h>

#include <hiredis/hiredis.h>

#include "broker.h"

typedef struct mrestore mrestore_t;

/* A restore of the keys under prefix, begun at now (ms). NULL when out of
 * memory. */
mrestore_t *mrestore_new(const char *prefix, uint64_t now);
void mrestore_free(mrestore_t *rs);

/* The next command, in argv/lens (valid until the next call); returns its
 * argument count, or -1 when out of memory. */
int mrestore_command(mrestore_t *rs, const char **argv, size_t *lens);

/* Take the reply to the last command: 0 send the next one, 1 done, -1 out
 * of memory. Unexpected replies are logged and their key skipped: a
 * restore reads what it can, it never gets stuck. */
int mrestore_feed(mrestore_t *rs, const redisReply *r);

/* Put what was read into b, in id order (ids ascend in publish order),
 * with attempt counts; messages that could collide with ids b already
 * handed out (a late restore) get fresh ids. The caller dispatches. */
void mrestore_apply(mrestore_t *rs, broker_t *b, uint64_t now);

#endif
