/* mirror_stats.c: the stats the mirror writes every redis.flush_interval
 * (the server hash, one hash per topic, the topic set, the heartbeat),
 * and what rides on the same timer: the stall check, and the look at
 * shards emptied while new ids still fell in them (mirror_check_all).
 */
#include <event2/event.h>

#include "clock.h"
#include "dec.h"
#include "counters.h"
#include "mirror_int.h"
#include "version.h"

static int mirror_put_counters(mbuf_t *b, const br_counters_t *c)
{
    int err = 0;

#define MIRROR_COUNTER(f, help) err |= mbuf_arg_str(b, #f) | mbuf_arg_u64(b, c->f);
    SLUICE_COUNTERS(MIRROR_COUNTER)
#undef MIRROR_COUNTER
    return err;
}

static void mirror_stats_topic(void *ctx, const topic_stats_t *ts)
{
    mirror_t *mi = ctx;
    mbuf_t *b = &mi->small;
    size_t klen;
    int err = 0;

    if (mbuf_open(b, mirror_room(mi, ts->name_len)) < 0)
        return;
#define MIRROR_GAUGE(f, metric, help) err |= mbuf_arg_str(b, #f) | mbuf_arg_u64(b, ts->f);
    SLUICE_TOPIC_GAUGES(MIRROR_GAUGE)
#undef MIRROR_GAUGE
    err |= mbuf_arg_str(b, "overflow") | mbuf_arg_str(b, config_overflow_name(ts->overflow)) |
           mirror_put_counters(b, &ts->totals);
    klen = mirror_key(mi, "topic:", ts->name, ts->name_len);
    if (err == 0 && klen > 0)
        mirror_send(mi, "HSET", mi->key, klen, b, mirror_req(mi, REQ_WRITE, NULL, 0));
    mbuf_done(b);
    if (mbuf_open(&mi->names, mirror_room(mi, 0)) == 0)
        mbuf_arg(&mi->names, ts->name, ts->name_len);
}

/* The server hash, every topic's hash, the topic set, the heartbeat. */
void mirror_write_stats(mirror_t *mi)
{
    broker_stats_t st;
    mbuf_t *b = &mi->small;
    size_t klen;
    char num[24], px[24];
    const char *argv[5] = {"SET", NULL, num, "PX", px};
    size_t lens[5] = {3, 0, 0, 2, 0};
    int err;

    broker_stats(mi->b, clock_ms(), &st);
    if (mbuf_open(b, mirror_room(mi, 0)) < 0)
        return;
    err = mbuf_arg_str(b, "version") | mbuf_arg_str(b, SLUICE_VERSION) |
          mbuf_arg_str(b, "uptime_s") | mbuf_arg_u64(b, st.uptime_ms / 1000) |
          mbuf_arg_str(b, "connections") | mbuf_arg_u64(b, mi->srv->nconns) |
          mbuf_arg_str(b, "topics") | mbuf_arg_u64(b, st.topics) | mbuf_arg_str(b, "messages") |
          mbuf_arg_u64(b, st.messages) | mbuf_arg_str(b, "bytes") | mbuf_arg_u64(b, st.bytes) |
          mirror_put_counters(b, &st.totals) | mbuf_arg_str(b, "blocked_producers") |
          mbuf_arg_u64(b, st.blocked_producers) | mbuf_arg_str(b, "max_loop_stall_ms") |
          mbuf_arg_u64(b, mi->srv->max_loop_stall_ms) | mbuf_arg_str(b, "redis_lag_ops") |
          mbuf_arg_u64(b, mi->lag_ops) | mbuf_arg_str(b, "updated_ms") |
          mbuf_arg_u64(b, clock_unix_ms());
    klen = mirror_key(mi, "server", NULL, 0);
    if (err == 0 && klen > 0)
        mirror_send(mi, "HSET", mi->key, klen, b, mirror_req(mi, REQ_WRITE, NULL, 0));
    mbuf_done(b);

    broker_foreach_topic(mi->b, clock_ms(), mirror_stats_topic, mi);
    if (mi->names.nargs > 0) {
        klen = mirror_key(mi, "topics", NULL, 0);
        mirror_send(mi, "SADD", mi->key, klen, &mi->names, mirror_req(mi, REQ_WRITE, NULL, 0));
    }
    mbuf_done(&mi->names);

    lens[1] = mirror_key(mi, "heartbeat", NULL, 0);
    argv[1] = mi->key;
    lens[2] = dec_u64(num, clock_unix_ms());
    lens[4] = dec_u64(px, 3 * mi->flush_ms);
    if (lens[1] > 0)
        mirror_argv(mi, mirror_req(mi, REQ_WRITE, NULL, 0), 5, argv, lens);
    mirror_put_next_id(mi);
}

void mirror_on_stats(evutil_socket_t fd, short what, void *arg)
{
    mirror_t *mi = arg;

    (void)fd;
    (void)what;
    if (mi->ac == NULL)
        return;
    if (mi->lag_ops > 0 && clock_ms() - mi->last_progress > MIRROR_STALL_MS) {
        mirror_drop(mi, "no reply for 15 s");
        return;
    }
    /* Skipped while Redis does not even read: the next one says it all. */
    if (mi->established && mi->phase != P_RESTORE && mi->phase != P_IDLE &&
        mirror_obuf(mi) <= MIRROR_OBUF_HIGH) {
        mirror_write_stats(mi);
        mirror_check_all(mi);
    }
}
