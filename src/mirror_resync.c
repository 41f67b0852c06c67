/* mirror_resync.c: full resynchronisation of Redis with the broker.
 *
 * It runs on every connection that may have missed changes, and after
 * falling too far behind, and never leaves Redis without the messages it
 * had: the whole state is written into separate "resync" keys in chunks,
 * the live changes of that period go there too, and one Lua script then
 * swaps them in atomically. A crash at any moment leaves either the old or
 * the new complete state, never a half-deleted one.
 */
#include <inttypes.h>
#include <stdlib.h>

#include <event2/event.h>

#include "clock.h"
#include "dec.h"
#include "log.h"
#include "mirror_int.h"
#include "topic.h"

/* Lua helpers the scripts share: a shard's keys, and whether a message
 * hash holds nothing but the pin. */
#define MIRROR_LUA_KEYS                                                                         \
    "local function key(p, k, s, t) return p .. ':' .. k .. s .. ':' .. t end\n"               \
    "local function bare(m)\n"                                                                  \
    "  local n = redis.call('HLEN', m)\n"                                                       \
    "  return n == 0 or (n == 1 and redis.call('HEXISTS', m, '" MRESTORE_PIN_FIELD "') == 1)\n" \
    "end\n"

/* Delete what an interrupted resync left (in the shards' schema and in
 * the single-hash one before it), and with ARGV[2] == "1" (a new
 * connection) the stats hashes of topics from earlier runs. */
const char mirror_lua_cleanup[] =
    MIRROR_LUA_KEYS
    "local p = ARGV[1]\n"
    "local t = redis.call('SMEMBERS', p .. ':resync:topics')\n"
    "for i = 1, #t do\n"
    "  local s = redis.call('SMEMBERS', p .. ':resync:shards:' .. t[i])\n"
    "  for j = 1, #s do\n"
    "    redis.call('UNLINK', key(p, 'resync:msg:', s[j], t[i]), key(p, 'resync:att:', s[j], t[i]),\n"
    "                 key(p, 'resync:meta:', s[j], t[i]))\n"
    "  end\n"
    "  redis.call('UNLINK', p .. ':resync:shards:' .. t[i], p .. ':resync:messages:' .. t[i],\n"
    "               p .. ':resync:attempts:' .. t[i])\n"
    "end\n"
    "redis.call('UNLINK', p .. ':resync:topics')\n"
    "if ARGV[2] == '1' then\n"
    "  t = redis.call('SMEMBERS', p .. ':topics')\n"
    "  for i = 1, #t do redis.call('UNLINK', p .. ':topic:' .. t[i]) end\n"
    "  redis.call('UNLINK', p .. ':topics')\n"
    "end\n"
    "return 1\n";

/* Replace every topic's shards (and any hash of the single-hash schema)
 * by the resync copy, atomically. Resync shards below ARGV[2] (the shard
 * the next id falls in) that hold nothing but the pin are dropped, not
 * renamed: no id can fall in them any more. */
const char mirror_lua_swap[] =
    MIRROR_LUA_KEYS
    "local p, open = ARGV[1], tonumber(ARGV[2])\n"
    "local old = redis.call('SMEMBERS', p .. ':message_topics')\n"
    "for i = 1, #old do\n"
    "  local t = old[i]\n"
    "  redis.call('UNLINK', p .. ':messages:' .. t, p .. ':attempts:' .. t)\n"
    "  local s = redis.call('SMEMBERS', p .. ':shards:' .. t)\n"
    "  for j = 1, #s do\n"
    "    redis.call('UNLINK', key(p, 'msg:', s[j], t), key(p, 'att:', s[j], t),\n"
    "                 key(p, 'meta:', s[j], t))\n"
    "  end\n"
    "  redis.call('UNLINK', p .. ':shards:' .. t)\n"
    "end\n"
    "local new = redis.call('SMEMBERS', p .. ':resync:topics')\n"
    "for i = 1, #new do\n"
    "  local t = new[i]\n"
    "  local set = p .. ':resync:shards:' .. t\n"
    "  local s = redis.call('SMEMBERS', set)\n"
    "  for j = 1, #s do\n"
    "    if tonumber(s[j]) < open and bare(key(p, 'resync:msg:', s[j], t)) then\n"
    "      redis.call('UNLINK', key(p, 'resync:msg:', s[j], t), key(p, 'resync:att:', s[j], t),\n"
    "                   key(p, 'resync:meta:', s[j], t))\n"
    "      redis.call('SREM', set, s[j])\n"
    "    else\n"
    "      for _, k in ipairs({'msg:', 'att:', 'meta:'}) do\n"
    "        local src = key(p, 'resync:' .. k, s[j], t)\n"
    "        if redis.call('EXISTS', src) == 1 then\n"
    "          redis.call('RENAME', src, key(p, k, s[j], t))\n"
    "        end\n"
    "      end\n"
    "    end\n"
    "  end\n"
    "  if redis.call('EXISTS', set) == 1 then\n"
    "    redis.call('RENAME', set, p .. ':shards:' .. t)\n"
    "  end\n"
    "end\n"
    "if #new > 0 then\n"
    "  redis.call('RENAME', p .. ':resync:topics', p .. ':message_topics')\n"
    "else\n"
    "  redis.call('UNLINK', p .. ':message_topics')\n"
    "end\n"
    "return #new\n";

/* ARGV: prefix, topic, shard numbers. Each of those shards whose message
 * hash holds nothing but the pin is deleted, with its attempts and meta
 * hashes, and leaves the topic's shard set. The mirror sends it only for shards no
 * new id can fall in. */
const char mirror_lua_drop[] =
    MIRROR_LUA_KEYS
    "local p, t, n = ARGV[1], ARGV[2], 0\n"
    "for i = 3, #ARGV do\n"
    "  if bare(key(p, 'msg:', ARGV[i], t)) then\n"
    "    redis.call('UNLINK', key(p, 'msg:', ARGV[i], t), key(p, 'att:', ARGV[i], t),\n"
    "                 key(p, 'meta:', ARGV[i], t))\n"
    "    redis.call('SREM', p .. ':shards:' .. t, ARGV[i])\n"
    "    n = n + 1\n"
    "  end\n"
    "end\n"
    "return n\n";
/* ---- resync ---- */

void mirror_snapshot_free(mirror_t *mi)
{
    free(mi->snap);
    mi->snap = NULL;
    mi->nsnap = mi->snap_cap = mi->pos = 0;
    idtab_destroy(&mi->tomb);
}

static void mirror_snapshot_add(void *ctx, const topic_t *t, const msg_t *m)
{
    mirror_t *mi = ctx;

    (void)t;
    if (mi->snap_oom)
        return;
    if (mi->nsnap == mi->snap_cap) {
        size_t cap = mi->snap_cap ? mi->snap_cap * 2 : 1024;
        snap_ent_t *n = realloc(mi->snap, cap * sizeof *n);
        if (n == NULL) {
            mi->snap_oom = true;
            return;
        }
        mi->snap = n;
        mi->snap_cap = cap;
    }
    mi->snap[mi->nsnap].m = m;
    mi->snap[mi->nsnap].id = m->id;
    mi->nsnap++;
}

/* Disown everything in flight for the current phase. */
void mirror_abort(mirror_t *mi)
{
    mi->gen++;
    mirror_discard_batches(mi);
    mirror_snapshot_free(mi);
    mi->swap_ids.n = 0;
}

static void mirror_schedule_resync_in(mirror_t *mi, uint64_t ms)
{
    struct timeval tv = clock_tv(ms);

    /* A timer, not event_active: activating itself would run it again in
     * the same pass and starve the sockets. */
    evtimer_add(mi->resync_ev, &tv);
}

void mirror_schedule_resync(mirror_t *mi)
{
    mirror_schedule_resync_in(mi, 0);
}

/* Write one run of snapshot messages of one topic and one shard; false
 * when done or failed. */
static bool mirror_send_chunk(mirror_t *mi, size_t *sent)
{
    const topic_t *t = NULL;
    uint64_t shard = 0, now = clock_ms(), unix_now = clock_unix_ms();
    char rec[MRESTORE_META_MAX];
    mtopic_t *mt;
    size_t n = 0, klen;
    mreq_t *req;

    mi->chunk_held.n = 0;
    while (mi->pos < mi->nsnap && n < MIRROR_CHUNK_MSGS && mi->chunk.len < MIRROR_CHUNK_BYTES) {
        const snap_ent_t *e = &mi->snap[mi->pos];
        const msg_t *m;
        if (idtab_has(&mi->tomb, e->id)) {
            mi->pos++;
            continue;
        }
        m = e->m;
        if (t != NULL && (m->topic != t || mrestore_shard(m->id) != shard))
            break;
        if (t == NULL) {
            size_t nlen;
            t = m->topic;
            shard = mrestore_shard(m->id);
            topic_name(t, &nlen);
            if (mbuf_open(&mi->chunk, mirror_room(mi, nlen)) < 0 ||
                mbuf_open(&mi->chunk_att, mirror_room(mi, nlen)) < 0 ||
                mbuf_open(&mi->chunk_meta, mirror_room(mi, nlen)) < 0)
                goto oom;
        }
        if (mbuf_arg_u64(&mi->chunk, m->id) < 0 || mbuf_arg(&mi->chunk, m->data, m->len) < 0)
            goto oom;
        if (m->attempt > 0 &&
            (mbuf_arg_u64(&mi->chunk_att, m->id) < 0 || mbuf_arg_u64(&mi->chunk_att, m->attempt) < 0))
            goto oom;
        if (m->state == MSG_HELD && mirror_u64s_push(&mi->chunk_held, m->id) < 0)
            goto oom;
        if (mrestore_meta_needed(m) &&
            (mbuf_arg_u64(&mi->chunk_meta, m->id) < 0 ||
             mbuf_arg(&mi->chunk_meta, rec, mrestore_meta_format(m, now, unix_now, rec)) < 0 ||
             (!(m->flags & MSG_F_EXT) && idtab_add(&mi->metaids, m->id) < 0)))
            goto oom;
        mi->pos++;
        n++;
    }
    if (t == NULL)
        return false;
    mt = mirror_topic(mi, t);
    if (mt == NULL || mirror_announce_shard(mi, mt, shard) < 0)
        goto oom;
    *sent += mi->chunk.len + mi->chunk_att.len + mi->chunk_meta.len;
    if (mi->chunk_meta.nargs > 0) {
        klen = mirror_shard_key(mi, "resync:meta:", shard, mt->name, mt->nlen);
        mirror_send(mi, "HSET", mi->key, klen, &mi->chunk_meta, mirror_req(mi, REQ_WRITE, NULL, 0));
    }
    req = mirror_req(mi, REQ_CHUNK, mi->chunk_held.v, mi->chunk_held.n);
    klen = mirror_shard_key(mi, "resync:msg:", shard, mt->name, mt->nlen);
    mirror_send(mi, "HSET", mi->key, klen, &mi->chunk, req);
    if (mi->chunk_att.nargs > 0) {
        klen = mirror_shard_key(mi, "resync:att:", shard, mt->name, mt->nlen);
        mirror_send(mi, "HSET", mi->key, klen, &mi->chunk_att, mirror_req(mi, REQ_WRITE, NULL, 0));
    }
    mbuf_done(&mi->chunk);
    mbuf_done(&mi->chunk_att);
    mbuf_done(&mi->chunk_meta);
    return mi->ac != NULL;
oom:
    mbuf_done(&mi->chunk);
    mbuf_done(&mi->chunk_att);
    mbuf_done(&mi->chunk_meta);
    mirror_batch_failed(mi);
    return false;
}

/* Every snapshot message is on its way: swap the resync keys in. Changes
 * from now on go to the real keys, behind the swap in the pipeline. */
static void mirror_resync_finish(mirror_t *mi)
{
    char open[24];

    mirror_flush_batches(mi);
    if (mi->phase != P_RESYNC)
        return;
    mirror_put_next_id(mi);
    open[dec_u64(open, mrestore_shard(broker_next_id(mi->b)))] = '\0';
    mirror_eval(mi, REQ_SWAP, mirror_lua_swap, open);
    mirror_wait_send(mi); /* the swap confirms held messages: with redis.replicas, after a WAIT */
    log_debug("redis mirror: resync of %zu messages sent in %" PRIu64 " ms", mi->nsnap,
              clock_ms() - mi->resync_t0);
    mirror_snapshot_free(mi);
    mi->phase = P_LIVE;
    mirror_check_open(mi);
}

void mirror_on_resync(evutil_socket_t fd, short what, void *arg)
{
    mirror_t *mi = arg;
    size_t sent = 0;

    (void)fd;
    (void)what;
    if (mi->ac == NULL)
        return;
    if (mi->phase == P_IDLE) {
        uint64_t now = clock_ms();
        if (now < mi->resync_after)
            mirror_schedule_resync_in(mi, mi->resync_after - now);
        else if (mi->lag_ops == 0)
            mirror_resync_start(mi);
        return;
    }
    if (mi->phase != P_RESYNC)
        return;
    while (mi->pos < mi->nsnap) {
        if (mi->lag_bytes >= MIRROR_RESYNC_WINDOW)
            return; /* a chunk's reply schedules the next step */
        if (mirror_obuf(mi) > MIRROR_OBUF_HIGH) {
            mirror_schedule_resync_in(mi, MIRROR_COALESCE_MS);
            return;
        }
        if (sent >= MIRROR_RESYNC_TURN) {
            mirror_schedule_resync(mi);
            return;
        }
        if (!mirror_send_chunk(mi, &sent))
            break;
    }
    if (mi->phase == P_RESYNC && mi->pos >= mi->nsnap && mi->ac != NULL)
        mirror_resync_finish(mi);
}

/* Snapshot the broker and start writing it into the resync keys. */
void mirror_resync_start(mirror_t *mi)
{
    mirror_abort(mi);
    mi->phase = P_RESYNC;
    mi->dirty = false;
    mi->resync_t0 = clock_ms();
    mirror_forget_topics(mi);
    mirror_eval(mi, REQ_WRITE, mirror_lua_cleanup, "0");
    mi->snap_oom = false;
    if (mi->mode == MIRROR_MESSAGES)
        broker_foreach_message(mi->b, mirror_snapshot_add, mi);
    if (mi->snap_oom) {
        mirror_snapshot_free(mi);
        mirror_batch_failed(mi);
        return;
    }
    mi->resync_upto = broker_next_id(mi->b);
    mirror_schedule_resync(mi);
}
