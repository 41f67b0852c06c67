/* bench_rlist.c: the redis-lists target of `sluice bench`: producers
 * pipeline LPUSH, consumers take up to `credit` messages a round trip with
 * BLMPOP ... RIGHT COUNT. A plain list has no acknowledgement and no
 * redelivery: the row it gives is what a queue costs without them (#15's
 * table), not the same work as the other targets'. RESP goes out and
 * comes in through bench_redis.c's writer and reader.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/read.h>

#include "bench_int.h"
#include "clock.h"

#define BRL_BLOCK_S "0.1" /* BLMPOP's timeout: an empty list is asked again this often */

/* Start from an empty list, so leftovers of an earlier run are not counted. */
static int brl_setup(bench_t *b, char *err, size_t errlen)
{
    char why[CLIENT_ERR_MAX];
    client_t *c = client_connect(b->o.addr, brl_target.port, BENCH_CONNECT_MS, why);
    const char *del[] = { "DEL", b->o.topic };
    int rc = -1;

    if (c) {
        rc = brd_command(c, 2, del, why, sizeof why);
        client_free(c);
    }
    if (rc < 0)
        snprintf(err, errlen, "redis setup: %s", why);
    return rc;
}

/* ---- producer (its reader and open/close are bench_redis.c's) ---- */

static int brl_prod_put(bench_worker_t *w, const char *payload, size_t n)
{
    const char *topic = w->b->o.topic;
    const char *argv[] = { "LPUSH", topic, payload };
    size_t lens[] = { 5, strlen(topic), n };

    return brd_put_cmd(w->c, 3, argv, lens);
}

static int brl_prod_reply(bench_worker_t *w, char *err, size_t errlen)
{
    return brd_prod_answer(w, REDIS_REPLY_INTEGER, err, errlen); /* the list's new length */
}

/* ---- consumer: one BLMPOP out at a time ---- */

static void brl_take(void *arg, const char *p, size_t n)
{
    bench_worker_t *w = arg;

    if (p)
        bench_take(w, p, n);
}

static int brl_pop_cmd(bench_worker_t *w)
{
    char count[16];
    snprintf(count, sizeof count, "%u", w->b->o.credit);
    const char *argv[] = { "BLMPOP", BRL_BLOCK_S, "1", w->b->o.topic, "RIGHT", "COUNT", count };

    return brd_put_cmd(w->c, 7, argv, NULL);
}

/* Take every reply that has arrived (the values went to brl_take as they
 * were parsed). 0; -1 when the run cannot go on. */
static int brl_replies(bench_worker_t *w, brd_rd_t *rd, bool *popping)
{
    char e[64];
    int k;

    while ((k = brd_next(w->c, rd)) == 1) {
        *popping = false;
        if (rd->bad || (rd->type != REDIS_REPLY_ARRAY && rd->type != REDIS_REPLY_NIL)) {
            bench_note(w->b, true, "consumer %u: BLMPOP: %s", w->idx,
                       rd->bad ? "bad reply" : brd_errstr(rd, e, sizeof e));
            return -1;
        }
    }
    if (k < 0)
        bench_note(w->b, true, "consumer %u: not a RESP reply", w->idx);
    return k;
}

static int brl_consume(bench_worker_t *w)
{
    bench_t *b = w->b;
    const brd_sink_t sink = { .value = brl_take, .arg = w, .list = true };
    brd_rd_t *rd = brd_rd_new(&sink);
    bool popping = false;

    if (!rd) {
        bench_note(b, true, "out of memory");
        return -1;
    }
    atomic_fetch_add(&b->ready, 1);
    while (bench_running(b)) {
        if (!popping) {
            if (brl_pop_cmd(w) < 0)
                break;
            popping = true;
        }
        if (client_step(w->c, 50, -1, NULL) < 0) {
            bench_note(b, true, "consumer %u: %s", w->idx, w->c->err);
            break;
        }
        if (brl_replies(w, rd, &popping) < 0)
            break;
    }
    /* the last BLMPOP may still bring messages: they count */
    uint64_t deadline = clock_ns() + BENCH_WIND_DOWN_NS;
    while (!atomic_load(&b->abort) && popping) {
        if (brl_replies(w, rd, &popping) < 0 || !bench_wait_until(w, deadline))
            break;
    }
    brd_rd_free(rd);
    return 0;
}

const bench_target_t brl_target = {
    .name = "redis-lists",
    .port = 6379,
    .addr = "127.0.0.1:6379",
    .setup = brl_setup,
    .teardown = brd_teardown,
    .prod_open = brd_prod_open,
    .prod_close = brd_prod_close,
    .put = brl_prod_put,
    .reply = brl_prod_reply,
    .consume = brl_consume,
};
