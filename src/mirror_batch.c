/* mirror_batch.c: the broker observer and the per-topic batches.
 *
 * Writes never wait for replies. Observer events append to per-topic
 * batches; once per event-loop turn (a low-priority event, like the
 * server's flush pass) each touched topic becomes at most four pipelined
 * commands: HSET messages, HSET attempts, HDEL messages, HDEL attempts.
 * Within a turn a message's events always run enqueued -> attempted ->
 * removed, so that command order is also each message's order.
 */
#include <inttypes.h>
#include <stdlib.h>

#include <event2/event.h>

#include "clock.h"
#include "log.h"
#include "mirror_int.h"
#include "topic.h"

static size_t mirror_ptr_home(const mirror_t *mi, const void *p)
{
    uint64_t x = (uint64_t)(uintptr_t)p;

    x ^= x >> 33;
    x *= UINT64_C(0xc4ceb9fe1a85ec53);
    x ^= x >> 33;
    return (size_t)x & mi->tmask;
}

static int mirror_topics_grow(mirror_t *mi)
{
    size_t oldn = mi->tslot ? mi->tmask + 1 : 0, n = oldn ? oldn * 2 : 64;
    mtopic_t **old = mi->tslot, **slot = calloc(n, sizeof *slot);

    if (slot == NULL)
        return -1;
    mi->tslot = slot;
    mi->tmask = n - 1;
    for (size_t i = 0; i < oldn; i++) {
        size_t j;
        if (old[i] == NULL)
            continue;
        for (j = mirror_ptr_home(mi, old[i]->t); slot[j] != NULL; j = (j + 1) & mi->tmask)
            ;
        slot[j] = old[i];
    }
    free(old);
    return 0;
}

/* The batch of topic t, created on first use. NULL when out of memory. */
mtopic_t *mirror_topic(mirror_t *mi, const topic_t *t)
{
    mtopic_t *mt;
    size_t i;

    if (mi->tslot != NULL) {
        for (i = mirror_ptr_home(mi, t); mi->tslot[i] != NULL; i = (i + 1) & mi->tmask)
            if (mi->tslot[i]->t == t)
                return mi->tslot[i];
    }
    if ((mi->tcount + 1) * 2 > (mi->tslot ? mi->tmask + 1 : 0) && mirror_topics_grow(mi) < 0)
        return NULL;
    mt = calloc(1, sizeof *mt);
    if (mt == NULL)
        return NULL;
    mt->t = t;
    mt->name = topic_name(t, &mt->nlen);
    for (i = mirror_ptr_home(mi, t); mi->tslot[i] != NULL; i = (i + 1) & mi->tmask)
        ;
    mi->tslot[i] = mt;
    mi->tcount++;
    return mt;
}

static void mirror_topic_clear(mirror_t *mi, mtopic_t *mt)
{
    mi->pending -= mt->puts.n + mt->atts.n + mt->dels.n;
    mt->puts.n = mt->atts.n = mt->dels.n = mt->held.n = 0;
}

static bool mirror_topic_empty(const mtopic_t *mt)
{
    return mt->puts.n == 0 && mt->atts.n == 0 && mt->dels.n == 0;
}

/* A new connection or a new resync: no topic is in the target set yet. */
void mirror_forget_topics(mirror_t *mi)
{
    for (size_t i = 0; mi->tslot != NULL && i <= mi->tmask; i++)
        if (mi->tslot[i] != NULL)
            mi->tslot[i]->announced = false;
}

/* Drop every unsent batch (the mirror is dirty and will resync). */
void mirror_discard_batches(mirror_t *mi)
{
    mtopic_t *mt;

    while ((mt = mi->qhead) != NULL) {
        mi->qhead = mt->qnext;
        mt->queued = false;
        mirror_topic_clear(mi, mt);
    }
}

/* Ids only rise in Redis before anything that could reveal them: every
 * flush of batches starts here, so an HDEL never reaches Redis ahead of a
 * next_id that covers its id. */
void mirror_put_next_id(mirror_t *mi)
{
    uint64_t n = broker_next_id(mi->b);
    char num[24];
    const char *argv[3] = {"SET", NULL, num};
    size_t lens[3] = {3, 0, 0};

    if (n <= mi->next_id_sent || !mirror_writable(mi))
        return;
    lens[1] = mirror_key(mi, "next_id", NULL, 0);
    argv[1] = mi->key;
    lens[2] = mbuf_u64_dec(num, n);
    if (lens[1] > 0 && mirror_argv(mi, mirror_req(mi, REQ_WRITE, NULL, 0), 3, argv, lens) == 0)
        mi->next_id_sent = n;
}

/* Once per connection or resync: SADD the topic to the set naming the
 * message hashes, and pin its message hash as a hash table (see
 * MRESTORE_PIN_FIELD); while resynchronising, both go to the resync keys. */
void mirror_announce(mirror_t *mi, mtopic_t *mt)
{
    bool temp = mi->phase == P_RESYNC;
    const char *argv[4] = {"SADD", NULL, mt->name, NULL};
    size_t lens[4] = {4, 0, mt->nlen, 0};

    if (mt->announced)
        return;
    lens[1] = mirror_key(mi, temp ? "resync:topics" : "message_topics", NULL, 0);
    argv[1] = mi->key;
    if (lens[1] == 0 || mirror_argv(mi, mirror_req(mi, REQ_WRITE, NULL, 0), 3, argv, lens) < 0)
        return;
    argv[0] = "HSET";
    lens[0] = 4;
    lens[1] = mirror_key(mi, temp ? "resync:messages:" : "messages:", mt->name, mt->nlen);
    argv[2] = MRESTORE_PIN_FIELD;
    lens[2] = sizeof MRESTORE_PIN_FIELD - 1;
    argv[3] = MRESTORE_PIN_VALUE;
    lens[3] = sizeof MRESTORE_PIN_VALUE - 1;
    if (lens[1] > 0 && mirror_argv(mi, mirror_req(mi, REQ_WRITE, NULL, 0), 4, argv, lens) == 0)
        mt->announced = true;
}

/* Send "<verb> <prefix>:<part><topic> <args in mi->cmd>" if it has args. */
static void mirror_send_cmd(mirror_t *mi, const mtopic_t *mt, const char *verb,
                            const char *part, mreq_t *req)
{
    size_t klen;

    if (mi->cmd.nargs == 0) {
        free(req);
        return;
    }
    klen = mirror_key(mi, part, mt->name, mt->nlen);
    mirror_send(mi, verb, mi->key, klen, &mi->cmd, req);
}

/* One command is big enough: a large batch becomes several. */
static bool mirror_cmd_full(const mbuf_t *b)
{
    return b->len - b->room >= MIRROR_CHUNK_BYTES || b->nargs >= 2 * MIRROR_CHUNK_MSGS;
}

static int mirror_flush_atts(mirror_t *mi, const mtopic_t *mt, const char *katt, size_t room)
{
    mbuf_t *b = &mi->cmd;

    if (mbuf_open(b, room) < 0)
        return -1;
    for (size_t i = 0; i < mt->atts.n; i++) {
        const mref_t *r = &mt->atts.v[i];
        if (idtab_has(&mi->gone, r->id))
            continue;
        if (mbuf_arg_u64(b, r->id) < 0 || mbuf_arg_u64(b, r->m->attempt) < 0)
            return -1;
        if (mirror_cmd_full(b)) {
            mirror_send_cmd(mi, mt, "HSET", katt, mirror_req(mi, REQ_WRITE, NULL, 0));
            mbuf_done(b);
            if (mbuf_open(b, room) < 0)
                return -1;
        }
    }
    mirror_send_cmd(mi, mt, "HSET", katt, mirror_req(mi, REQ_WRITE, NULL, 0));
    mbuf_done(b);
    return 0;
}

/* The held messages ride on the last command: its reply comes after the
 * others', and an error in any of them drops the connection first. */
static int mirror_flush_puts(mirror_t *mi, const mtopic_t *mt, const char *kmsg, size_t room,
                             bool temp)
{
    mbuf_t *b = &mi->cmd;
    mreq_t *req;

    if (mbuf_open(b, room) < 0)
        return -1;
    for (size_t i = 0; i < mt->puts.n; i++) {
        const mref_t *r = &mt->puts.v[i];
        if (idtab_del(&mi->gone, r->id))
            continue; /* came and went: nothing to write, nothing to delete */
        if (mbuf_arg_u64(b, r->id) < 0 || mbuf_arg(b, r->m->data, r->m->len) < 0)
            return -1;
        if (mirror_cmd_full(b) && i + 1 < mt->puts.n) {
            mirror_send_cmd(mi, mt, "HSET", kmsg, mirror_req(mi, REQ_WRITE, NULL, 0));
            mbuf_done(b);
            if (mbuf_open(b, room) < 0)
                return -1;
        }
    }
    req = mirror_req(mi, mt->held.n > 0 ? REQ_HELD : REQ_WRITE, mt->held.v, mt->held.n);
    if (req != NULL)
        req->temp = temp;
    mirror_send_cmd(mi, mt, "HSET", kmsg, req);
    mbuf_done(b);
    return 0;
}

static int mirror_flush_dels(mirror_t *mi, const mtopic_t *mt, const char *kmsg,
                             const char *katt, size_t room)
{
    mbuf_t *b = &mi->cmd;

    if (mbuf_open(b, room) < 0)
        return -1;
    for (size_t i = 0; i < mt->dels.n; i++) {
        if (!idtab_has(&mi->gone, mt->dels.v[i]))
            continue;
        if (mbuf_arg_u64(b, mt->dels.v[i]) < 0)
            return -1;
        if (mirror_cmd_full(b)) {
            mirror_send_cmd(mi, mt, "HDEL", kmsg, mirror_req(mi, REQ_WRITE, NULL, 0));
            mirror_send_cmd(mi, mt, "HDEL", katt, mirror_req(mi, REQ_WRITE, NULL, 0));
            mbuf_done(b);
            if (mbuf_open(b, room) < 0)
                return -1;
        }
    }
    mirror_send_cmd(mi, mt, "HDEL", kmsg, mirror_req(mi, REQ_WRITE, NULL, 0));
    mirror_send_cmd(mi, mt, "HDEL", katt, mirror_req(mi, REQ_WRITE, NULL, 0));
    mbuf_done(b);
    return 0;
}

/* Send a topic's batch: HSET attempts, HSET messages, HDEL messages and
 * attempts (each split if large). A message enqueued and removed within
 * one batch is never written at all: at high rates most messages live
 * shorter than a batch, and Redis never sees them. */
static void mirror_flush_topic(mirror_t *mi, mtopic_t *mt)
{
    bool temp = mi->phase == P_RESYNC;
    const char *kmsg = temp ? "resync:messages:" : "messages:";
    const char *katt = temp ? "resync:attempts:" : "attempts:";
    size_t room = mirror_room(mi, mt->nlen);
    int err = 0;

    if (mirror_topic_empty(mt))
        return;
    if (!mirror_writable(mi)) {
        mirror_topic_clear(mi, mt);
        return;
    }
    for (size_t i = 0; i < mt->dels.n; i++)
        err |= idtab_add(&mi->gone, mt->dels.v[i]);
    if (err == 0) {
        mirror_put_next_id(mi);
        mirror_announce(mi, mt);
        err = mirror_flush_atts(mi, mt, katt, room);
    }
    if (err == 0)
        err = mirror_flush_puts(mi, mt, kmsg, room, temp);
    if (err == 0)
        err = mirror_flush_dels(mi, mt, kmsg, katt, room);
    mbuf_done(&mi->cmd);
    /* Only this batch's removals are in the set: taking them out again is
     * O(batch), where clearing would wipe the whole table every turn. */
    for (size_t i = 0; i < mt->dels.n; i++)
        idtab_del(&mi->gone, mt->dels.v[i]);
    mirror_topic_clear(mi, mt);
    if (err != 0)
        mirror_batch_failed(mi);
}

/* Stop writing: what is not sent yet is dropped, not queued. A resync
 * starts once Redis has answered everything already sent. */
static void mirror_pause(mirror_t *mi)
{
    mirror_abort(mi);
    mi->phase = P_IDLE;
    mi->dirty = true;
    if (mi->lag_ops == 0)
        mirror_schedule_resync(mi);
}

/* Past the bound: pause (memory stays bounded while Redis is slow). */
static void mirror_check_lag(mirror_t *mi)
{
    if (!mirror_writable(mi))
        return;
    if (mi->lag_bytes <= MIRROR_MAX_LAG_BYTES && mi->lag_ops <= MIRROR_MAX_LAG_OPS)
        return;
    if (!mi->lag_logged) {
        log_warn("redis mirror: Redis is %" PRIu64 " commands (%" PRIu64
                 " MiB) behind; pausing the mirror, resynchronising once it catches up",
                 mi->lag_ops, mi->lag_bytes >> 20);
        mi->lag_logged = true;
    }
    mirror_pause(mi);
}

void mirror_flush_batches(mirror_t *mi)
{
    mtopic_t *mt;

    while ((mt = mi->qhead) != NULL) {
        mi->qhead = mt->qnext;
        mt->queued = false;
        mirror_flush_topic(mi, mt);
    }
    mirror_put_next_id(mi);
    mirror_check_lag(mi);
}

void mirror_on_turn(evutil_socket_t fd, short what, void *arg)
{
    mirror_t *mi = arg;
    struct timeval tv = {0, MIRROR_COALESCE_MS * 1000};

    (void)fd;
    (void)what;
    event_del(mi->turn_ev);
    if (mirror_writable(mi) && mirror_obuf(mi) > MIRROR_OBUF_HIGH) {
        /* Redis is behind: gather (and cancel) more, look again soon. */
        evtimer_add(mi->turn_ev, &tv);
        return;
    }
    mi->turn_pending = false;
    mirror_flush_batches(mi);
}

/* mt has a new change: changes go out MIRROR_COALESCE_MS after the first
 * one of a batch (at the end of that loop turn), or at the end of this
 * turn when `urgent` (a held PUB waits for it); later while hiredis still
 * has much unwritten. Past MIRROR_MAX_PENDING the mirror pauses. */
void mirror_queue(mirror_t *mi, mtopic_t *mt, bool urgent)
{
    struct timeval tv = {0, MIRROR_COALESCE_MS * 1000};

    if (!mt->queued) {
        mt->queued = true;
        mt->qnext = mi->qhead;
        mi->qhead = mt;
    }
    if (urgent) {
        event_active(mi->turn_ev, EV_TIMEOUT, 0);
        mi->turn_pending = true;
    } else if (!mi->turn_pending) {
        evtimer_add(mi->turn_ev, &tv);
        mi->turn_pending = true;
    }
    if (++mi->pending > MIRROR_MAX_PENDING) {
        if (!mi->lag_logged)
            log_warn("redis mirror: Redis cannot keep up (%" PRIu64 " changes waiting); "
                     "pausing the mirror, resynchronising once it catches up",
                     mi->pending);
        mi->lag_logged = true;
        mirror_pause(mi);
    }
}

/* Out of memory: give the state up to a resync, a while later (retrying
 * at once would spin while memory is short). */
void mirror_batch_failed(mirror_t *mi)
{
    log_error("redis mirror: out of memory; resynchronising in %d s",
              MIRROR_BACKOFF_MAX_MS / 1000);
    mi->resync_after = clock_ms() + MIRROR_BACKOFF_MAX_MS;
    mirror_pause(mi);
}

/* ---- observer ---- */

static void mirror_on_enqueued(void *ctx, const topic_t *t, const msg_t *m)
{
    mirror_t *mi = ctx;
    mtopic_t *mt;

    if (m->state == MSG_HELD)
        mirror_hold(mi, t, m->id);
    if (!mirror_writable(mi)) {
        mi->dirty = true;
        return;
    }
    mt = mirror_topic(mi, t);
    if (mt == NULL || mirror_refs_push(&mt->puts, m) < 0 ||
        (m->state == MSG_HELD && mirror_u64s_push(&mt->held, m->id) < 0)) {
        mirror_batch_failed(mi);
        return;
    }
    mirror_queue(mi, mt, m->state == MSG_HELD);
}

static void mirror_on_attempted(void *ctx, const topic_t *t, const msg_t *m)
{
    mirror_t *mi = ctx;
    mtopic_t *mt;

    if (!mirror_writable(mi)) {
        mi->dirty = true;
        return;
    }
    mt = mirror_topic(mi, t);
    if (mt == NULL || mirror_refs_push(&mt->atts, m) < 0) {
        mirror_batch_failed(mi);
        return;
    }
    mirror_queue(mi, mt, false);
}

static void mirror_on_removed(void *ctx, const topic_t *t, const msg_t *m, br_removal_t why)
{
    (void)why;
    mirror_forget(ctx, t, m->id);
}

const broker_observer_t mirror_observer = {
    .enqueued = mirror_on_enqueued,
    .attempted = mirror_on_attempted,
    .removed = mirror_on_removed,
};
