/* idtab.h: an open-addressing hash table from message id to message, for
 * the messages that need a lookup by id (in flight, held for the mirror,
 * delayed, buried, and ready beanstalk jobs).
 *
 * A plain ready message is never in it, which keeps a queued message at
 * one allocation and no index entry. The same table, with no message in
 * its slots, is the id set the mirror keeps (idtab_add/has/del). Linear probing over a power-of-two
 * array of (id, msg) pairs; deletion shifts the following cluster back, so
 * there are no tombstones and lookups never slow down with churn.
 */
#ifndef SLUICE_IDTAB_H
#define SLUICE_IDTAB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "msg.h"

#define IDTAB_MIN_SLOTS 1024 /* 16 KiB: small enough to keep, big enough not to churn */

typedef struct idtab_slot {
    uint64_t id;  /* 0 = empty (ids start at 1) */
    msg_t *msg;
} idtab_slot_t;

typedef struct idtab {
    idtab_slot_t *slots;
    size_t mask;   /* slots - 1; slots is a power of two */
    size_t count;
    unsigned bits; /* log2(slots), for the multiplicative hash */
} idtab_t;

/* An empty table with IDTAB_MIN_SLOTS slots. 0, or -1 when out of memory.
 * A zeroed idtab_t is an empty table too: its slots come with the first
 * insert. */
int idtab_init(idtab_t *t);

/* Free the slot array (not the messages). */
void idtab_destroy(idtab_t *t);

/* Add m under m->id (which must be non-zero and not present). Grows at half
 * load. 0, or -1 when out of memory and the table is too full to take it. */
int idtab_insert(idtab_t *t, msg_t *m);

/* The message with this id, or NULL. */
msg_t *idtab_find(const idtab_t *t, uint64_t id);

/* Remove and return the message with this id, or NULL if absent. Shrinks
 * (best effort) when the table falls below one eighth full. */
msg_t *idtab_remove(idtab_t *t, uint64_t id);

/* As a set of ids (no messages). Add id unless present: 0, or -1 when out
 * of memory. */
int idtab_add(idtab_t *t, uint64_t id);

/* Is id present? */
bool idtab_has(const idtab_t *t, uint64_t id);

/* Remove id; was it present? */
bool idtab_del(idtab_t *t, uint64_t id);

/* Empty the table, keeping a small slot array for the next use. */
void idtab_clear(idtab_t *t);

/* The slot an id hashes to (its home before probing); for tests. */
size_t idtab_home(const idtab_t *t, uint64_t id);

/* Number of slots; for tests. */
size_t idtab_capacity(const idtab_t *t);

#endif
