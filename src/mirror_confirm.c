/* mirror_confirm.c: confirm mode. A PUB is held (its +OK not sent) until
 * the write carrying its message is answered by Redis, or refused with
 * -ERR mirror unavailable after redis.confirm_timeout. With
 * redis.replicas N, the answer is not enough: a WAIT N follows the
 * writes in the pipeline, and only its answer of N or more releases the
 * +OKs of the messages stored before it.
 */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "clock.h"
#include "dec.h"
#include "log.h"
#include "mirror_int.h"

static void mirror_arm_confirm(mirror_t *mi)
{
    uint64_t now, due;
    struct timeval tv;

    if (mi->hcount == 0 || evtimer_pending(mi->confirm_ev, NULL))
        return;
    now = clock_ms();
    due = mi->holds[mi->hhead].due;
    tv = clock_tv(due > now ? due - now : 0);
    evtimer_add(mi->confirm_ev, &tv);
}

static int mirror_hold_push(mirror_t *mi, const hold_t *h)
{
    if (mi->hcount == mi->hcap) {
        size_t cap = mi->hcap ? mi->hcap * 2 : 64;
        hold_t *n = malloc(cap * sizeof *n);
        if (n == NULL)
            return -1;
        for (size_t i = 0; i < mi->hcount; i++)
            n[i] = mi->holds[(mi->hhead + i) % mi->hcap];
        free(mi->holds);
        mi->holds = n;
        mi->hcap = cap;
        mi->hhead = 0;
    }
    mi->holds[(mi->hhead + mi->hcount) % mi->hcap] = *h;
    mi->hcount++;
    return 0;
}

/* A PUB is held until Redis has its message, at most confirm_timeout. */
void mirror_hold(mirror_t *mi, const topic_t *t, uint64_t id)
{
    hold_t h = {.id = id, .due = clock_ms() + mi->confirm_timeout_ms, .t = t};

    if (mirror_hold_push(mi, &h) < 0) {
        log_error("redis mirror: out of memory tracking confirmed PUB %" PRIu64, id);
        return;
    }
    if (idtab_add(&mi->held, id) < 0) {
        mi->hcount--;
        log_error("redis mirror: out of memory tracking confirmed PUB %" PRIu64, id);
        return;
    }
    mirror_arm_confirm(mi);
}

void mirror_confirm_ids(mirror_t *mi, const uint64_t *ids, size_t n)
{
    uint64_t now = clock_ms();
    bool any = false;

    for (size_t i = 0; i < n; i++) {
        if (idtab_del(&mi->held, ids[i])) {
            broker_confirm(mi->b, ids[i], true, now);
            any = true;
        }
    }
    if (any) {
        broker_dispatch(mi->b, now);
        server_touch(mi->srv);
    }
}

/* The removal of id (m, or NULL when the broker let it go already) needs
 * an HDEL of its meta record if it may have one: every message with an
 * ext block, every one without that got a record, and (not knowing) NULL.
 * 0, or -1 when out of memory. */
static int mirror_forget_meta(mirror_t *mi, mtopic_t *mt, uint64_t id, const msg_t *m)
{
    bool ext = m != NULL && (m->flags & MSG_F_EXT);

    if (!(ext || m == NULL || (mi->metaids.count > 0 && idtab_del(&mi->metaids, id))))
        return 0;
    if (mirror_u64s_push(&mt->mdels, id) < 0)
        return -1;
    mi->pending++;
    return 0;
}

/* Message id of topic t (m, or NULL when the broker let it go already) is
 * gone from the broker: delete it from Redis, with its meta record if it
 * may have one, and keep a resync from reading its freed msg_t. */
void mirror_forget(mirror_t *mi, const topic_t *t, uint64_t id, const msg_t *m)
{
    mtopic_t *mt;

    if (mi->phase == P_RESYNC && id < mi->resync_upto && idtab_add(&mi->tomb, id) < 0) {
        /* Without the tombstone the snapshot is unsafe: start over. */
        mirror_batch_failed(mi);
        return;
    }
    if (!mirror_writable(mi)) {
        mi->dirty = true;
        if (mi->metaids.count > 0)
            idtab_del(&mi->metaids, id);
        return;
    }
    mt = mirror_topic(mi, t);
    if (mt == NULL || mirror_u64s_push(&mt->dels, id) < 0 ||
        /* the plain native path: one test, and no HDEL of a meta hash */
        (__builtin_expect(m == NULL || (m->flags & MSG_F_EXT) || mi->metaids.count > 0, 0) &&
         mirror_forget_meta(mi, mt, id, m) < 0)) {
        mirror_batch_failed(mi);
        return;
    }
    /* Under confirm an ACK goes out with the turn's PUBs, not 2 ms later,
     * so a restore after a crash brings back as few acked messages as it can. */
    mirror_queue(mi, mt, mi->confirm);
}

void mirror_on_confirm_timer(evutil_socket_t fd, short what, void *arg)
{
    mirror_t *mi = arg;
    uint64_t now = clock_ms(), refused = 0;

    (void)fd;
    (void)what;
    while (mi->hcount > 0 && mi->holds[mi->hhead].due <= now) {
        hold_t h = mi->holds[mi->hhead];
        mi->hhead = (mi->hhead + 1) % mi->hcap;
        mi->hcount--;
        if (!idtab_del(&mi->held, h.id))
            continue;
        broker_confirm(mi->b, h.id, false, now); /* removed, no observer call */
        /* Its write may still land: delete it behind that write (and a
         * meta record, if a delay gave it one). */
        mirror_forget(mi, h.t, h.id, NULL);
        refused++;
    }
    if (refused > 0) {
        if (!mi->refuse_logged)
            log_warn("redis mirror: confirmed PUBs time out (-ERR mirror unavailable)");
        mi->refuse_logged = true;
        broker_dispatch(mi->b, now);
        server_touch(mi->srv);
    }
    mirror_arm_confirm(mi);
}

/* ---- WAIT for replicas (redis.replicas) ---- */

/* Redis has the held messages ids (a write's or the resync swap's reply).
 * Without replicas to wait for, that confirms them; else they wait for the
 * answer of the WAIT that follows them. */
void mirror_stored(mirror_t *mi, bool waited, const uint64_t *ids, size_t n)
{
    if (!waited) {
        mirror_confirm_ids(mi, ids, n);
        return;
    }
    for (size_t i = 0; i < n; i++)
        if (mirror_u64s_push(&mi->stored, ids[i]) < 0) {
            /* Untracked, they time out: nothing is confirmed that is not on the replicas. */
            log_error("redis mirror: out of memory tracking confirmed PUBs");
            return;
        }
}

/* A connection ends: what it stored is written again by the next one's
 * resync (the messages are still held), and its WAIT will not answer. */
void mirror_wait_reset(mirror_t *mi)
{
    mi->stored.n = 0;
    mi->wait_inflight = false;
    mi->wait_owed = false;
}

/* Send the WAIT owed, unless one is unanswered: Redis answers WAITs one
 * after another, and the next one, sent when this one answers, covers
 * every write sent meanwhile. Its timeout is what is left of the newest
 * held PUB's confirm_timeout (at most MIRROR_WAIT_MAX_MS: a WAIT holds up
 * the connection's later commands in Redis), never 0 (which waits forever). */
void mirror_wait_send(mirror_t *mi)
{
    uint64_t now, left = mi->confirm_timeout_ms;
    char num[24], ms[24];
    const char *argv[3] = {"WAIT", num, ms};
    size_t lens[3] = {4, 0, 0};

    if (!mi->wait_owed || mi->wait_inflight || mi->ac == NULL)
        return;
    now = clock_ms();
    if (mi->hcount > 0) {
        uint64_t due = mi->holds[(mi->hhead + mi->hcount - 1) % mi->hcap].due;
        left = due > now ? due - now : 1;
    }
    if (left > MIRROR_WAIT_MAX_MS)
        left = MIRROR_WAIT_MAX_MS;
    lens[1] = dec_u64(num, mi->replicas);
    lens[2] = dec_u64(ms, left);
    if (mirror_argv(mi, mirror_req(mi, REQ_WAIT, NULL, 0), 3, argv, lens) < 0)
        return; /* no connection: its loss resets all this */
    mi->wait_n = mi->replicas;
    mi->wait_inflight = true;
    mi->wait_owed = false;
}

/* WAIT answered with how many replicas have every write sent before it.
 * Enough: the messages stored before it are confirmed. Too few in time:
 * they stay held, and another WAIT asks again while any of them is still
 * held; those whose confirm_timeout passes get -ERR mirror unavailable
 * (mirror_on_confirm_timer), as when Redis itself does not answer. */
void mirror_wait_reply(mirror_t *mi, const redisReply *r)
{
    size_t k = 0;

    mi->wait_inflight = false;
    if (r->type == REDIS_REPLY_INTEGER && r->integer >= (long long)mi->wait_n) {
        mirror_confirm_ids(mi, mi->stored.v, mi->stored.n);
        mi->stored.n = 0;
        if (mi->wait_logged)
            log_info("redis mirror: replicas acknowledge again (%" PRIu32 " wanted)",
                     mi->wait_n);
        mi->wait_logged = false;
    } else {
        for (size_t i = 0; i < mi->stored.n; i++)
            if (idtab_has(&mi->held, mi->stored.v[i]))
                mi->stored.v[k++] = mi->stored.v[i];
        mi->stored.n = k;
        if (!mi->wait_logged)
            log_warn("redis mirror: %lld of %" PRIu32 " replicas acknowledged in time; "
                     "confirmed PUBs wait for them (then time out)",
                     r->type == REDIS_REPLY_INTEGER ? r->integer : -1LL, mi->wait_n);
        mi->wait_logged = true;
        if (k > 0)
            mi->wait_owed = true;
    }
    mirror_wait_send(mi);
}
