/* mirror_batch.c: the broker observer and the per-topic batches.
 *
 * Writes never wait for replies. Observer events append to per-topic
 * batches; once per event-loop turn (a low-priority event, like the
 * server's flush pass) each touched topic becomes at most four pipelined
 * commands per shard it touched (mrestore.h: the ids of a topic are spread
 * over hashes of 65,536 each): HSET attempts, HSET messages, HDEL
 * messages, HDEL attempts. A shard emptied for good is dropped.
 * Within a turn a message's events always run enqueued -> attempted ->
 * removed, so that command order is also each message's order.
 */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "clock.h"
#include "dec.h"
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
    mi->pending -= mt->puts.n + mt->atts.n + mt->dels.n + mt->metas.n + mt->mdels.n;
    mt->puts.n = mt->atts.n = mt->dels.n = mt->held.n = mt->metas.n = mt->mdels.n = 0;
}

static bool mirror_topic_empty(const mtopic_t *mt)
{
    return mt->puts.n == 0 && mt->atts.n == 0 && mt->dels.n == 0 && mt->metas.n == 0;
}

/* A new connection or a new resync: no topic is in the target set yet. */
void mirror_forget_topics(mirror_t *mi)
{
    for (size_t i = 0; mi->tslot != NULL && i <= mi->tmask; i++)
        if (mi->tslot[i] != NULL) {
            mi->tslot[i]->announced = false;
            mi->tslot[i]->shards.n = 0;
            mi->tslot[i]->checks.n = 0;
        }
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
    lens[2] = dec_u64(num, n);
    if (lens[1] > 0 && mirror_argv(mi, mirror_req(mi, REQ_WRITE, NULL, 0), 3, argv, lens) == 0)
        mi->next_id_sent = n;
}

/* Once per connection or resync: SADD the topic to the set naming the
 * topics with message shards; while resynchronising, to the resync set. */
void mirror_announce(mirror_t *mi, mtopic_t *mt)
{
    bool temp = mi->phase == P_RESYNC;
    const char *argv[3] = {"SADD", NULL, mt->name};
    size_t lens[3] = {4, 0, mt->nlen};

    if (mt->announced)
        return;
    lens[1] = mirror_key(mi, temp ? "resync:topics" : "message_topics", NULL, 0);
    argv[1] = mi->key;
    if (lens[1] > 0 && mirror_argv(mi, mirror_req(mi, REQ_WRITE, NULL, 0), 3, argv, lens) == 0)
        mt->announced = true;
}

/* Is s in the sorted v? If not, *at is where it would go. Nearly every
 * look is for the newest shard, the last one. */
static bool mirror_shards_find(const u64vec_t *v, uint64_t s, size_t *at)
{
    size_t lo = 0, hi = v->n;

    if (v->n > 0 && v->v[v->n - 1] == s)
        return true;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (v->v[mid] < s)
            lo = mid + 1;
        else
            hi = mid;
    }
    *at = lo;
    return lo < v->n && v->v[lo] == s;
}

static void mirror_shards_remove(u64vec_t *v, uint64_t s)
{
    size_t at = v->n;

    if (!mirror_shards_find(v, s, &at))
        return;
    if (at == v->n)
        at = v->n - 1; /* found as the last one */
    memmove(&v->v[at], &v->v[at + 1], (v->n - 1 - at) * sizeof *v->v);
    v->n--;
}

/* Before the first write to a shard on this connection (or resync): SADD
 * it to the topic's shard set and pin its message hash as a hash table
 * (MRESTORE_PIN_FIELD), both ahead of the write in the pipeline. 0, or -1
 * when out of memory. */
int mirror_announce_shard(mirror_t *mi, mtopic_t *mt, uint64_t shard)
{
    bool temp = mi->phase == P_RESYNC;
    char num[24];
    const char *argv[4] = {"SADD", NULL, num, NULL};
    size_t lens[4] = {4, 0, dec_u64(num, shard), 0};
    size_t at = 0;

    if (mirror_shards_find(&mt->shards, shard, &at))
        return 0;
    mirror_announce(mi, mt);
    lens[1] = mirror_key(mi, temp ? "resync:shards:" : "shards:", mt->name, mt->nlen);
    argv[1] = mi->key;
    if (lens[1] == 0 || mirror_argv(mi, mirror_req(mi, REQ_WRITE, NULL, 0), 3, argv, lens) < 0)
        return 0; /* no connection: nothing more gets written either */
    argv[0] = "HSET";
    lens[1] = mirror_shard_key(mi, temp ? "resync:msg:" : "msg:", shard, mt->name, mt->nlen);
    argv[1] = mi->key;
    argv[2] = MRESTORE_PIN_FIELD;
    lens[2] = sizeof MRESTORE_PIN_FIELD - 1;
    argv[3] = MRESTORE_PIN_VALUE;
    lens[3] = sizeof MRESTORE_PIN_VALUE - 1;
    if (lens[1] == 0 || mirror_argv(mi, mirror_req(mi, REQ_WRITE, NULL, 0), 4, argv, lens) < 0)
        return 0;
    if (mirror_u64s_push(&mt->shards, shard) < 0)
        return -1;
    memmove(&mt->shards.v[at + 1], &mt->shards.v[at], (mt->shards.n - 1 - at) * sizeof(uint64_t));
    mt->shards.v[at] = shard;
    return 0;
}

/* Send "<verb> <prefix>:<part><shard>:<topic> <args in mi->cmd>" if it
 * has args; takes req. */
static void mirror_send_shard(mirror_t *mi, const mtopic_t *mt, const char *verb,
                              const char *part, uint64_t shard, mreq_t *req)
{
    size_t klen;

    if (mi->cmd.nargs == 0) {
        free(req);
        return;
    }
    klen = mirror_shard_key(mi, part, shard, mt->name, mt->nlen);
    mirror_send(mi, verb, mi->key, klen, &mi->cmd, req);
}

/* One command is big enough: a large batch becomes several. */
static bool mirror_cmd_full(const mbuf_t *b)
{
    return b->len - b->room >= MIRROR_CHUNK_BYTES || b->nargs >= 2 * MIRROR_CHUNK_MSGS;
}

/* A batch's next argument needs a new command: the open one (if any) is
 * sent, the shard announced, a new command opened. 0, or -1 when out of
 * memory. Called only when the shard changes or the command is full, so
 * the loops over a batch stay two compares an element. */
static int mirror_cmd_next(mirror_t *mi, mtopic_t *mt, const char *verb, const char *part,
                           uint64_t cur, uint64_t shard, size_t room)
{
    mbuf_t *b = &mi->cmd;

    if (b->nargs > 0) {
        mirror_send_shard(mi, mt, verb, part, cur, mirror_req(mi, REQ_WRITE, NULL, 0));
        mbuf_done(b);
    }
    if (mirror_announce_shard(mi, mt, shard) < 0 || mbuf_open(b, room) < 0)
        return -1;
    return 0;
}

static int mirror_cmp_ref(const void *a, const void *b)
{
    uint64_t x = ((const mref_t *)a)->id, y = ((const mref_t *)b)->id;
    return x < y ? -1 : x > y;
}

static int mirror_cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* Deliveries and removals come in any order, and one command per shard
 * wants them grouped. Almost always they are (one shard, ids rising): the
 * rest of a batch is sorted only when a lower shard turns up. */
static int mirror_flush_atts(mirror_t *mi, mtopic_t *mt, const char *katt, size_t room)
{
    mbuf_t *b = &mi->cmd;
    uint64_t cur = 0;

    for (size_t i = 0; i < mt->atts.n; i++) {
        const mref_t *r = &mt->atts.v[i];
        uint64_t s = mrestore_shard(r->id);
        if (s < cur) {
            qsort(&mt->atts.v[i], mt->atts.n - i, sizeof *r, mirror_cmp_ref);
            s = mrestore_shard(r->id);
        }
        if (idtab_has(&mi->gone, r->id))
            continue;
        if (s != cur || b->nargs == 0 || mirror_cmd_full(b)) {
            if (mirror_cmd_next(mi, mt, "HSET", katt, cur, s, room) < 0)
                return -1;
            cur = s;
        }
        if (mbuf_arg_u64(b, r->id) < 0 || mbuf_arg_u64(b, r->m->attempt) < 0)
            return -1;
    }
    mirror_send_shard(mi, mt, "HSET", katt, cur, mirror_req(mi, REQ_WRITE, NULL, 0));
    mbuf_done(b);
    return 0;
}

/* The meta records (mrestore.h) of the batch's messages that have one,
 * as they are now; before their messages are written (a record without
 * its message is ignored by a restore, the other way round it would come
 * back plainly ready). */
static int mirror_flush_metas(mirror_t *mi, mtopic_t *mt, const char *kmeta, size_t room)
{
    mbuf_t *b = &mi->cmd;
    uint64_t cur = 0, now = clock_ms(), unix_now = clock_unix_ms();
    char rec[MRESTORE_META_MAX];

    for (size_t i = 0; i < mt->metas.n; i++) {
        const mref_t *r = &mt->metas.v[i];
        uint64_t s = mrestore_shard(r->id);
        if (s < cur) { /* as in mirror_flush_atts */
            qsort(&mt->metas.v[i], mt->metas.n - i, sizeof *r, mirror_cmp_ref);
            s = mrestore_shard(r->id);
        }
        if (idtab_has(&mi->gone, r->id))
            continue;
        if (s != cur || b->nargs == 0 || mirror_cmd_full(b)) {
            if (mirror_cmd_next(mi, mt, "HSET", kmeta, cur, s, room) < 0)
                return -1;
            cur = s;
        }
        if (mbuf_arg_u64(b, r->id) < 0 ||
            mbuf_arg(b, rec, mrestore_meta_format(r->m, now, unix_now, rec)) < 0)
            return -1;
    }
    mirror_send_shard(mi, mt, "HSET", kmeta, cur, mirror_req(mi, REQ_WRITE, NULL, 0));
    mbuf_done(b);
    return 0;
}

/* Puts come in id order (ids are handed out in order). The held messages
 * ride on the last command: its reply comes after the others', and an
 * error in any of them drops the connection first. */
static int mirror_flush_puts(mirror_t *mi, mtopic_t *mt, const char *kmsg, size_t room,
                             bool temp)
{
    mbuf_t *b = &mi->cmd;
    uint64_t cur = 0;
    mreq_t *req;

    for (size_t i = 0; i < mt->puts.n; i++) {
        const mref_t *r = &mt->puts.v[i];
        uint64_t s = mrestore_shard(r->id);
        if (idtab_del(&mi->gone, r->id))
            continue; /* came and went: nothing to write, nothing to delete */
        if (s != cur || b->nargs == 0 || mirror_cmd_full(b)) {
            if (mirror_cmd_next(mi, mt, "HSET", kmsg, cur, s, room) < 0)
                return -1;
            cur = s;
        }
        if (mbuf_arg_u64(b, r->id) < 0 || mbuf_arg(b, r->m->data, r->m->len) < 0)
            return -1;
    }
    req = mirror_req(mi, mt->held.n > 0 ? REQ_HELD : REQ_WRITE, mt->held.v, mt->held.n);
    if (req != NULL)
        req->temp = temp;
    mirror_send_shard(mi, mt, "HSET", kmsg, cur, req);
    mbuf_done(b);
    return 0;
}

/* s had HDELs: look at it again (mirror_check_shards). */
static int mirror_check_add(mtopic_t *mt, uint64_t s)
{
    for (size_t i = mt->checks.n; i > 0; i--)
        if (mt->checks.v[i - 1] == s)
            return 0;
    return mirror_u64s_push(&mt->checks, s);
}

/* The open HDEL goes to a shard's message hash and to its attempts hash. */
static void mirror_send_dels(mirror_t *mi, const mtopic_t *mt, const char *kmsg,
                             const char *katt, uint64_t cur)
{
    mirror_send_shard(mi, mt, "HDEL", kmsg, cur, mirror_req(mi, REQ_WRITE, NULL, 0));
    mirror_send_shard(mi, mt, "HDEL", katt, cur, mirror_req(mi, REQ_WRITE, NULL, 0));
    mbuf_done(&mi->cmd);
}

static int mirror_flush_dels(mirror_t *mi, mtopic_t *mt, const char *kmsg, const char *katt,
                             size_t room)
{
    mbuf_t *b = &mi->cmd;
    uint64_t cur = 0;

    for (size_t i = 0; i < mt->dels.n; i++) {
        uint64_t id = mt->dels.v[i], s = mrestore_shard(id);
        if (s < cur) { /* as in mirror_flush_atts */
            qsort(&mt->dels.v[i], mt->dels.n - i, sizeof id, mirror_cmp_u64);
            id = mt->dels.v[i];
            s = mrestore_shard(id);
        }
        if (!idtab_has(&mi->gone, id))
            continue;
        if (b->nargs > 0 && (s != cur || mirror_cmd_full(b)))
            mirror_send_dels(mi, mt, kmsg, katt, cur);
        if (b->nargs == 0) {
            if (mbuf_open(b, room) < 0 || mirror_check_add(mt, s) < 0)
                return -1;
            cur = s;
        }
        if (mbuf_arg_u64(b, id) < 0)
            return -1;
    }
    mirror_send_dels(mi, mt, kmsg, katt, cur);
    return 0;
}

/* HDEL the meta records of removed messages that may have one (only those:
 * the plain native path sends no HDEL to a meta hash). */
static int mirror_flush_mdels(mirror_t *mi, mtopic_t *mt, const char *kmeta, size_t room)
{
    mbuf_t *b = &mi->cmd;
    uint64_t cur = 0;

    for (size_t i = 0; i < mt->mdels.n; i++) {
        uint64_t id = mt->mdels.v[i], s = mrestore_shard(id);
        if (s < cur) {
            qsort(&mt->mdels.v[i], mt->mdels.n - i, sizeof id, mirror_cmp_u64);
            id = mt->mdels.v[i];
            s = mrestore_shard(id);
        }
        if (!idtab_has(&mi->gone, id))
            continue; /* came and went within the batch: never written */
        if (b->nargs > 0 && (s != cur || mirror_cmd_full(b))) {
            mirror_send_shard(mi, mt, "HDEL", kmeta, cur, mirror_req(mi, REQ_WRITE, NULL, 0));
            mbuf_done(b);
        }
        if (b->nargs == 0) {
            if (mbuf_open(b, room) < 0)
                return -1;
            cur = s;
        }
        if (mbuf_arg_u64(b, id) < 0)
            return -1;
    }
    mirror_send_shard(mi, mt, "HDEL", kmeta, cur, mirror_req(mi, REQ_WRITE, NULL, 0));
    mbuf_done(b);
    return 0;
}

/* Send a topic's batch: HSET attempts, HSET messages, HDEL messages and
 * attempts, one command per shard (each split if large). A message
 * enqueued and removed within one batch is never written at all: at high
 * rates most messages live shorter than a batch, and Redis never sees
 * them. */
static void mirror_flush_topic(mirror_t *mi, mtopic_t *mt)
{
    bool temp = mi->phase == P_RESYNC;
    const char *kmsg = temp ? "resync:msg:" : "msg:";
    const char *katt = temp ? "resync:att:" : "att:";
    const char *kmeta = temp ? "resync:meta:" : "meta:";
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
    if (err == 0 && mt->metas.n > 0)
        err = mirror_flush_metas(mi, mt, kmeta, room);
    if (err == 0)
        err = mirror_flush_puts(mi, mt, kmsg, room, temp);
    if (err == 0)
        err = mirror_flush_dels(mi, mt, kmsg, katt, room);
    if (err == 0 && mt->mdels.n > 0)
        err = mirror_flush_mdels(mi, mt, kmeta, room);
    mbuf_done(&mi->cmd);
    /* Only this batch's removals are in the set: taking them out again is
     * O(batch), where clearing would wipe the whole table every turn. */
    for (size_t i = 0; i < mt->dels.n; i++)
        idtab_del(&mi->gone, mt->dels.v[i]);
    mirror_topic_clear(mi, mt);
    if (err != 0)
        mirror_batch_failed(mi);
}

/* ---- emptied shards ---- */

int mirror_drop_shards(mirror_t *mi, const char *name, size_t nlen, const uint64_t *shards,
                       size_t n)
{
    const char *argv[5 + MIRROR_DROP_MAX] = {"EVAL", mirror_lua_drop, "0", mi->prefix, name};
    size_t lens[5 + MIRROR_DROP_MAX] = {4, strlen(mirror_lua_drop), 1, strlen(mi->prefix), nlen};
    char nums[MIRROR_DROP_MAX][24];

    if (n > MIRROR_DROP_MAX)
        n = MIRROR_DROP_MAX;
    for (size_t i = 0; i < n; i++) {
        argv[5 + i] = nums[i];
        lens[5 + i] = dec_u64(nums[i], shards[i]);
    }
    return mirror_argv(mi, mirror_req(mi, REQ_WRITE, NULL, 0), (int)(5 + n), argv, lens);
}

/* Shards of mt that had HDELs and that no new id can fall in any more
 * (below the one the next id is in) are dropped if only the pin is left.
 * Ids only grow, so once a shard is below, nothing is written to it again
 * but the attempts and HDELs of messages it still has (and then it is not
 * empty), or the write of a message still waiting in a batch: such a
 * write finds the shard no longer in mt->shards and pins it again first.
 * Called from the stats timer, not per batch: a backlog being drained
 * has HDELs in a lower shard in every batch, and one look a flush
 * interval is enough. */
void mirror_check_shards(mirror_t *mi, mtopic_t *mt)
{
    uint64_t open = mrestore_shard(broker_next_id(mi->b)), drop[MIRROR_DROP_MAX];
    size_t n = 0, k = 0;

    if (mi->phase != P_LIVE || mt->checks.n == 0)
        return;
    for (size_t i = 0; i < mt->checks.n; i++) {
        uint64_t s = mt->checks.v[i];
        if (s >= open || n == MIRROR_DROP_MAX) {
            mt->checks.v[k++] = s;
            continue;
        }
        drop[n++] = s;
        mirror_shards_remove(&mt->shards, s); /* a later attempt write pins it again */
    }
    mt->checks.n = k;
    if (n > 0)
        mirror_drop_shards(mi, mt->name, mt->nlen, drop, n);
}

/* Every topic's checks (from the stats timer: a topic that went quiet
 * still gets its last shard dropped once other topics move the ids on). */
void mirror_check_all(mirror_t *mi)
{
    for (size_t i = 0; mi->tslot != NULL && i <= mi->tmask; i++)
        if (mi->tslot[i] != NULL)
            mirror_check_shards(mi, mi->tslot[i]);
}

/* A resync's swap dropped the empty shards below the open one (they
 * leave mt->shards, so any later write pins them again); the open ones it
 * kept are looked at again once they are below. */
void mirror_check_open(mirror_t *mi)
{
    uint64_t open = mrestore_shard(broker_next_id(mi->b));

    for (size_t i = 0; mi->tslot != NULL && i <= mi->tmask; i++) {
        mtopic_t *mt = mi->tslot[i];
        size_t k = 0;
        for (size_t j = 0; mt != NULL && j < mt->shards.n; j++) {
            if (mt->shards.v[j] < open)
                continue;
            mt->shards.v[k++] = mt->shards.v[j];
            if (mirror_check_add(mt, mt->shards.v[j]) < 0)
                break; /* out of memory: the next resync drops it */
        }
        if (mt != NULL)
            mt->shards.n = k;
    }
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
    mirror_wait_send(mi); /* after the turn's held messages, with redis.replicas */
    mirror_check_lag(mi);
}

void mirror_on_turn(evutil_socket_t fd, short what, void *arg)
{
    mirror_t *mi = arg;
    struct timeval tv = {0, MIRROR_COALESCE_MS * 1000};

    (void)fd;
    (void)what;
    mi->turn_now = false;
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
        /* Once per loop turn: every held PUB of a batch asks. */
        if (!mi->turn_now)
            event_active(mi->turn_ev, EV_TIMEOUT, 0);
        mi->turn_now = true;
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

/* m (of topic t, batch mt) needs its meta record written: one more
 * change in the batch. A message without an ext block is remembered, so
 * that its removal deletes the record too. 0, or -1 when out of memory. */
static int mirror_meta_push(mirror_t *mi, mtopic_t *mt, const msg_t *m)
{
    if (mirror_refs_push(&mt->metas, m) < 0)
        return -1;
    mi->pending++;
    if (!(m->flags & MSG_F_EXT) && idtab_add(&mi->metaids, m->id) < 0)
        return -1;
    return 0;
}

/* t's batch for an observed change, or NULL when there is none to add
 * to: the mirror takes no change now (it is dirty, and a resync carries
 * everything) or had no memory for the batch (it failed: a resync too). */
static mtopic_t *mirror_observed(mirror_t *mi, const topic_t *t)
{
    mtopic_t *mt;

    if (!mirror_writable(mi)) {
        mi->dirty = true;
        return NULL;
    }
    mt = mirror_topic(mi, t);
    if (mt == NULL)
        mirror_batch_failed(mi);
    return mt;
}

static void mirror_on_enqueued(void *ctx, const topic_t *t, const msg_t *m)
{
    mirror_t *mi = ctx;
    mtopic_t *mt;

    if (m->state == MSG_HELD)
        mirror_hold(mi, t, m->id);
    if ((mt = mirror_observed(mi, t)) == NULL)
        return;
    if (mirror_refs_push(&mt->puts, m) < 0 ||
        (m->state == MSG_HELD && mirror_u64s_push(&mt->held, m->id) < 0) ||
        (mrestore_meta_needed(m) && mirror_meta_push(mi, mt, m) < 0)) {
        mirror_batch_failed(mi);
        return;
    }
    mirror_queue(mi, mt, m->state == MSG_HELD);
}

static void mirror_on_attempted(void *ctx, const topic_t *t, const msg_t *m)
{
    mirror_t *mi = ctx;
    mtopic_t *mt;

    if ((mt = mirror_observed(mi, t)) == NULL)
        return;
    if (mirror_refs_push(&mt->atts, m) < 0) {
        mirror_batch_failed(mi);
        return;
    }
    mirror_queue(mi, mt, false);
}

/* Buried, kicked, released or NACKed with a delay, a job's TTR ran out:
 * its meta record is written again (as it is at the flush). */
static void mirror_on_changed(void *ctx, const topic_t *t, const msg_t *m)
{
    mirror_t *mi = ctx;
    mtopic_t *mt;

    if ((mt = mirror_observed(mi, t)) == NULL)
        return;
    if (mirror_meta_push(mi, mt, m) < 0) {
        mirror_batch_failed(mi);
        return;
    }
    mi->pending--; /* mirror_queue counts this one */
    mirror_queue(mi, mt, false);
}

static void mirror_on_removed(void *ctx, const topic_t *t, const msg_t *m, br_removal_t why)
{
    (void)why;
    mirror_forget(ctx, t, m->id, m);
}

const broker_observer_t mirror_observer = {
    .enqueued = mirror_on_enqueued,
    .attempted = mirror_on_attempted,
    .removed = mirror_on_removed,
    .changed = mirror_on_changed,
};
