/* cfifo.h: the replies one connection owes, in order, while its
 * confirm-mode PUBs wait for the Redis mirror.
 *
 * A producer may have many PUBs unconfirmed at once (redis.max_unconfirmed),
 * but replies must still leave in the order the commands came. The FIFO
 * keeps the waiting PUBs' ids; the replies of commands run after the oldest
 * waiting PUB go to `later` instead of the output, each remembered behind
 * the PUB it follows, and move out as the PUBs ahead of them settle. No
 * I/O: the caller writes what cfifo_pop hands it.
 */
#ifndef SLUICE_CFIFO_H
#define SLUICE_CFIFO_H

#include <event2/buffer.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct cfifo_ent {
    uint64_t id;   /* the held message's id */
    uint64_t mark; /* bytes ever added to `later` when this PUB was taken */
    int st;        /* its br_status_t outcome, once `done` */
    bool done;
} cfifo_ent_t;

typedef struct cfifo {
    cfifo_ent_t *v;         /* a ring: v[(head + i) % cap], i < n */
    size_t head, n, cap;
    struct evbuffer *later; /* replies behind the oldest waiting PUB */
    uint64_t later_out;     /* bytes ever moved out of `later` */
} cfifo_t;

/* Make room for one more entry (the ring grows up to `max`). -1 when out of
 * memory or already `max` entries. */
int cfifo_reserve(cfifo_t *f, size_t max);

/* Append waiting PUB `id` (after cfifo_reserve succeeded). */
void cfifo_push(cfifo_t *f, uint64_t id);

/* Where a reply goes now: `out` when nothing waits, else `later`. */
struct evbuffer *cfifo_replies(cfifo_t *f, struct evbuffer *out);

/* Record the outcome of PUB `id`. False if it is not waiting
 * here (a PUB that was never held). */
bool cfifo_settle(cfifo_t *f, uint64_t id, int st);

/* Pop the oldest entry if it is settled: its id and outcome, after which
 * the caller writes its reply to `out` and then calls cfifo_release. */
bool cfifo_pop(cfifo_t *f, uint64_t *id, int *st);

/* Move the replies that followed the entry just popped into `out`. */
void cfifo_release(cfifo_t *f, struct evbuffer *out);

/* Bytes of replies held back. */
size_t cfifo_later_len(const cfifo_t *f);

void cfifo_free(cfifo_t *f);

#endif
