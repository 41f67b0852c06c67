/* msg.c: allocation of messages: the header and the payload share one block,
 * so a queued message costs a single malloc chunk and one free.
 *
 * Freed small messages are kept for the next msg_new, by size class: the
 * broker frees a credit window of messages on one ACK and allocates as many
 * on the next batch of PUBs, and glibc's per-thread cache holds only 7
 * blocks of a size, so without this every message took malloc's slow path
 * twice. The cache is bounded (MSG_CACHE_MAX blocks of at most
 * MSG_CACHE_LEN bytes after the header, a beanstalk job's ext block
 * counted: about 4.2 MiB at worst, for JSON documents of a few KiB, which
 * are what users send most) and the daemon is
 * single-threaded, as is everything that calls this.
 */
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "msg.h"

#define MSG_CLASS 16        /* cached payload capacities are multiples of this */
#define MSG_CACHE_LEN 4096  /* larger payloads always go back to malloc */

/* Under AddressSanitizer every freed message goes back to malloc, so a
 * message used after its free is still caught there, not hidden by reuse. */
#if defined(__SANITIZE_ADDRESS__)
#define MSG_CACHE_MAX 0
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define MSG_CACHE_MAX 0
#endif
#endif
#ifndef MSG_CACHE_MAX
#define MSG_CACHE_MAX 1024  /* blocks kept in all */
#endif

static msg_t *msg_cache[MSG_CACHE_LEN / MSG_CLASS + 1];
static size_t msg_cached;

static size_t msg_class(size_t room)
{
    return (room + MSG_CLASS - 1) / MSG_CLASS;
}

/* The bytes after the header: the payload, and an ext block's room. */
static size_t msg_room(uint32_t len, bool ext)
{
    return ext ? (((size_t)len + 7) & ~(size_t)7) + sizeof(msg_ext_t) : len;
}

/* A block with `room` bytes after the header, from the cache if it has
 * one of that class (header not cleared). */
static msg_t *msg_block(size_t room)
{
    msg_t *m;

    if (room > MSG_CACHE_LEN)
        return malloc(sizeof(*m) + room);
    size_t k = msg_class(room);
    m = msg_cache[k];
    if (m == NULL)
        return malloc(sizeof(*m) + k * MSG_CLASS); /* the whole class: any of its sizes reuse it */
    msg_cache[k] = m->link.tqe_next;
    msg_cached--;
    return m;
}

msg_t *msg_new(uint32_t len)
{
    msg_t *m = msg_block(len);

    if (m == NULL)
        return NULL;
    /* Only the header is cleared: the payload is about to be overwritten. */
    memset(m, 0, sizeof(*m));
    m->len = len;
    return m;
}

msg_t *msg_new_ext(uint32_t len)
{
    msg_t *m = msg_block(msg_room(len, true));
    msg_ext_t *x;

    if (m == NULL)
        return NULL;
    memset(m, 0, sizeof(*m));
    m->len = len;
    m->flags = MSG_F_EXT;
    x = msg_ext(m);
    memset(x, 0, sizeof(*x));
    x->pri = MSG_PRI_DEFAULT;
    return m;
}

msg_t *msg_new_job(uint32_t len, uint32_t pri, uint64_t ttr_ms, uint64_t delay_ms,
                   uint64_t created)
{
    msg_t *m = msg_new_ext(len);
    msg_ext_t *x;

    if (m == NULL)
        return NULL;
    x = msg_ext(m);
    x->pri = pri;
    x->ttr_ms = ttr_ms;
    x->delay_ms = delay_ms;
    x->created = created;
    return m;
}

msg_t *msg_new_copy(const void *data, uint32_t len)
{
    msg_t *m = msg_new(len);

    if (m != NULL && len > 0)
        memcpy(m->data, data, len);
    return m;
}

void msg_free(msg_t *m)
{
    if (m == NULL)
        return;
    if (m->flags & MSG_F_PINNED) {
        m->flags |= MSG_F_UNPIN_FREES;
        return;
    }
    size_t room = msg_room(m->len, m->flags & MSG_F_EXT);

    if (room > MSG_CACHE_LEN || msg_cached == MSG_CACHE_MAX) {
        free(m);
        return;
    }
    size_t k = msg_class(room);
    m->link.tqe_next = msg_cache[k]; /* the queue link is free: m is in no queue */
    msg_cache[k] = m;
    msg_cached++;
}

void msg_unpin(const msg_t *cm)
{
    msg_t *m = (msg_t *)(uintptr_t)cm;

    m->flags &= (uint8_t)~MSG_F_PINNED;
    if (m->flags & MSG_F_UNPIN_FREES)
        msg_free(m);
}

void msg_cache_release(void)
{
    for (size_t k = 0; k < sizeof msg_cache / sizeof msg_cache[0]; k++) {
        while (msg_cache[k] != NULL) {
            msg_t *m = msg_cache[k];
            msg_cache[k] = m->link.tqe_next;
            free(m);
        }
    }
    msg_cached = 0;
}
