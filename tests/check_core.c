/* check_core.c: tests of the broker core's semantics, driven through
 * broker.h with fake clients that record pushes and completions and a
 * clock that is a plain number the tests advance.
 */
#include <check.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ck_core.h"
#include "place.h"

/* ================= publishing and bounds ================= */

START_TEST(test_publish_ids_and_stats)
{
    start();
    fake_t *p = fake();

    ck_assert_uint_eq(broker_next_id(b), 1);
    ck_assert_uint_eq(pub_ok(p, "t", "hello"), 1);
    ck_assert_uint_eq(pub_ok(p, "t", "abc"), 2);
    ck_assert_uint_eq(pub_ok(p, "u", "x"), 3);
    topic_stats_t s = ts("t");
    ck_assert_uint_eq(s.ready, 2);
    ck_assert_uint_eq(s.bytes, 8);
    ck_assert_uint_eq(s.totals.published, 2);
    ck_assert_uint_eq(s.max_messages, 100000);
    ck_assert_int_eq(s.overflow, OVERFLOW_BLOCK);
    broker_stats_t st = ss();
    ck_assert_uint_eq(st.messages, 3);
    ck_assert_uint_eq(st.bytes, 9);
    ck_assert_uint_eq(st.topics, 2);
    ck_assert_uint_eq(st.clients, 1);
    ck_assert_uint_eq(st.totals.published, 3);
    /* observer saw each acceptance with its id */
    ck_assert_uint_eq(noev, 3);
    ck_assert_int_eq(oevs[0].kind, 'E');
    ck_assert_uint_eq(oevs[0].id, 1);
    ck_assert_str_eq(oevs[2].topic, "u");
}
END_TEST

START_TEST(test_block_park_resume_fifo)
{
    tcfg.cfg.defaults.max_messages = 2;
    start();
    fake_t *p = fake(), *q = fake(), *r = fake(), *c = fake();

    pub_ok(p, "t", "a");
    pub_ok(p, "t", "b");
    ck_assert_int_eq(pub(q, "t", "q"), BR_PENDING);
    ck_assert_int_eq(pub(r, "t", "r"), BR_PENDING);
    ck_assert_uint_eq(ts("t").blocked_producers, 2);
    ck_assert_uint_eq(ss().blocked_producers, 2);
    ck_assert_uint_eq(ts("t").ready, 2);

    sub(c, "t", 10);
    disp();
    ck_assert_uint_eq(c->ndeliv, 2);
    ck_assert_uint_eq(q->ndone + r->ndone, 0); /* in flight still counts */

    ck_assert(broker_ack(c->c, 1, now));
    ck_assert_uint_eq(q->ndone, 1);
    assert_done(q, 0, BR_OP_PUB, BR_OK, 3);
    ck_assert_uint_eq(r->ndone, 0);
    ck_assert(broker_ack(c->c, 2, now));
    assert_done(r, 0, BR_OP_PUB, BR_OK, 4);
    ck_assert_uint_eq(ts("t").blocked_producers, 0);
    disp();
    ck_assert_uint_eq(dl(c, 2)->id, 3);
    ck_assert_str_eq(dl(c, 2)->data, "q");
    ck_assert_uint_eq(dl(c, 3)->id, 4);
    ck_assert_uint_eq(ts("t").totals.published, 4);
    ck_assert_uint_eq(ts("t").totals.rejected, 0);
}
END_TEST

/* max_lag: with a subscriber, that many ready messages make the topic
 * full for its policy; deliveries make room again; without subscribers
 * the queue absorbs up to its other bounds. */
START_TEST(test_max_lag)
{
    tcfg.cfg.defaults.max_lag = 2;
    start();
    fake_t *p = fake(), *q = fake(), *c = fake();

    for (int i = 0; i < 4; i++)
        pub_ok(p, "t", "x"); /* nobody subscribed: no lag to speak of */
    sub(c, "t", 1);
    disp();
    ck_assert_uint_eq(c->ndeliv, 1);
    ck_assert_uint_eq(ts("t").ready, 3);
    ck_assert_int_eq(pub(q, "t", "q"), BR_PENDING); /* 3 ready >= 2: parked */
    ck_assert(broker_ack(c->c, 1, now));
    disp();                                          /* a delivery: 2 ready, still */
    ck_assert_uint_eq(q->ndone, 0);
    ck_assert(broker_ack(c->c, 2, now));
    disp();                                          /* 1 ready: q gets in */
    ck_assert_uint_eq(q->ndone, 1);
    assert_done(q, 0, BR_OP_PUB, BR_OK, 5);
    ck_assert_uint_eq(ts("t").ready, 2);
    ck_assert_int_eq(pub(q, "t", "r"), BR_PENDING);
    ck_assert_int_eq(broker_unsubscribe(c->c, "t", 1), BR_OK);
    disp();                                          /* no subscriber: no lag */
    ck_assert_uint_eq(q->ndone, 2);
    assert_done(q, 1, BR_OP_PUB, BR_OK, 6);
}
END_TEST

/* Under reject a lagging topic answers -FULL; under drop-oldest it keeps
 * the newest max_lag - 1 ready and takes the new one. */
START_TEST(test_max_lag_policies)
{
    topic_conf_t *r = cfg_topic(&tcfg, "r"), *d = cfg_topic(&tcfg, "d");
    r->max_lag = d->max_lag = 2;
    r->overflow = OVERFLOW_REJECT;
    d->overflow = OVERFLOW_DROP_OLDEST;
    start();
    fake_t *p = fake(), *c = fake();

    sub(c, "r", 0);
    sub(c, "d", 0);
    pub_ok(p, "r", "a");
    pub_ok(p, "r", "b");
    ck_assert_int_eq(pub(p, "r", "c"), BR_FULL);
    pub_ok(p, "d", "a");
    pub_ok(p, "d", "b");
    pub_ok(p, "d", "c");
    ck_assert_uint_eq(ts("d").ready, 2);
    ck_assert_uint_eq(ts("d").totals.dropped, 1);
}
END_TEST

START_TEST(test_block_head_blocks_the_rest)
{
    tcfg.cfg.defaults.max_bytes = 10;
    start();
    fake_t *p = fake(), *q = fake(), *r = fake(), *c = fake();

    pub_ok(p, "t", "aaaa");
    pub_ok(p, "t", "bbbb");
    ck_assert_int_eq(pub(q, "t", "1234567"), BR_PENDING);
    /* fits, but strict FIFO: it queues behind q */
    ck_assert_int_eq(pub(r, "t", "z"), BR_PENDING);
    ck_assert(get_ok(c, "t")->id == 1);
    ck_assert(get_ok(c, "t")->id == 2);
    ck_assert(broker_ack(c->c, 1, now));
    /* 4 bytes used: q's 7 does not fit and r waits behind it */
    ck_assert_uint_eq(q->ndone + r->ndone, 0);
    ck_assert(broker_ack(c->c, 2, now));
    assert_done(q, 0, BR_OP_PUB, BR_OK, 3);
    assert_done(r, 0, BR_OP_PUB, BR_OK, 4);
    ck_assert_uint_eq(ts("t").bytes, 8);
}
END_TEST

START_TEST(test_block_timeout)
{
    tcfg.cfg.defaults.max_bytes = 10;
    tcfg.cfg.defaults.block_timeout_ms = 100;
    start();
    fake_t *p = fake(), *q = fake(), *r = fake();

    pub_ok(p, "t", "12345678");
    ck_assert_int_eq(pub(q, "t", "12345"), BR_PENDING);
    ck_assert_uint_eq(broker_next_deadline(b), now + 100);
    now += 50;
    ck_assert_int_eq(pub(r, "t", "1"), BR_PENDING);
    now += 49;
    broker_tick(b, now);
    ck_assert_uint_eq(q->ndone, 0);
    now += 1;
    broker_tick(b, now);
    assert_done(q, 0, BR_OP_PUB, BR_FULL, 0);
    /* the head went: r's byte fits behind it */
    assert_done(r, 0, BR_OP_PUB, BR_OK, 2);
    ck_assert_uint_eq(ts("t").totals.rejected, 1);
    ck_assert_uint_eq(ss().totals.rejected, 1);
    ck_assert_uint_eq(ts("t").blocked_producers, 0);
    ck_assert_uint_eq(ts("t").bytes, 9);
    ck_assert_uint_eq(broker_next_deadline(b), UINT64_MAX);
}
END_TEST

START_TEST(test_block_waits_forever_without_timeout)
{
    tcfg.cfg.defaults.max_messages = 1;
    start();
    fake_t *p = fake(), *q = fake();

    pub_ok(p, "t", "a");
    ck_assert_int_eq(pub(q, "t", "b"), BR_PENDING);
    ck_assert_uint_eq(broker_next_deadline(b), UINT64_MAX);
    now += 1000000;
    broker_tick(b, now);
    ck_assert_uint_eq(q->ndone, 0);
    ck_assert_uint_eq(ts("t").blocked_producers, 1);
}
END_TEST

START_TEST(test_reject)
{
    cfg_topic(&tcfg, "t")->overflow = OVERFLOW_REJECT;
    tcfg.entries[0].conf.max_messages = 1;
    start();
    fake_t *p = fake();

    pub_ok(p, "t", "a");
    ck_assert_int_eq(pub(p, "t", "b"), BR_FULL);
    ck_assert_int_eq(pub(p, "t", "c"), BR_FULL);
    topic_stats_t s = ts("t");
    ck_assert_uint_eq(s.totals.rejected, 2);
    ck_assert_uint_eq(s.totals.published, 1);
    ck_assert_uint_eq(s.ready, 1);
    ck_assert_uint_eq(s.blocked_producers, 0);
    ck_assert_int_eq(s.overflow, OVERFLOW_REJECT);
    /* a refused PUB uses no id */
    ck_assert_uint_eq(broker_next_id(b), 2);
}
END_TEST

START_TEST(test_drop_oldest)
{
    topic_conf_t *tc = cfg_topic(&tcfg, "t");
    tc->overflow = OVERFLOW_DROP_OLDEST;
    tc->max_messages = 2;
    start();
    fake_t *p = fake(), *c = fake();

    pub_ok(p, "t", "a");
    pub_ok(p, "t", "b");
    ck_assert_uint_eq(pub_ok(p, "t", "c"), 3);
    topic_stats_t s = ts("t");
    ck_assert_uint_eq(s.ready, 2);
    ck_assert_uint_eq(s.totals.dropped, 1);
    ck_assert_uint_eq(ss().totals.dropped, 1);
    /* the eviction happens before the new message is accepted */
    ck_assert_int_eq(oevs[2].kind, 'R');
    ck_assert_uint_eq(oevs[2].id, 1);
    ck_assert_int_eq(oevs[2].why, BR_REMOVED_DROPPED);
    ck_assert_int_eq(oevs[3].kind, 'E');
    ck_assert_uint_eq(oevs[3].id, 3);
    ck_assert_uint_eq(get_ok(c, "t")->id, 2);
    ck_assert_uint_eq(get_ok(c, "t")->id, 3);
}
END_TEST

START_TEST(test_drop_oldest_by_bytes)
{
    topic_conf_t *tc = cfg_topic(&tcfg, "t");
    tc->overflow = OVERFLOW_DROP_OLDEST;
    tc->max_bytes = 10;
    start();
    fake_t *p = fake(), *c = fake();

    pub_ok(p, "t", "aaa");
    pub_ok(p, "t", "bbb");
    pub_ok(p, "t", "ccc");
    /* 9 used; 7 more needs two evictions, then fills max_bytes exactly */
    ck_assert_uint_eq(pub_ok(p, "t", "ddddddd"), 4);
    ck_assert_uint_eq(ts("t").totals.dropped, 2);
    ck_assert_uint_eq(ts("t").bytes, 10);
    ck_assert_uint_eq(get_ok(c, "t")->id, 3);
    ck_assert_uint_eq(get_ok(c, "t")->id, 4);
}
END_TEST

START_TEST(test_drop_oldest_full)
{
    topic_conf_t *tc = cfg_topic(&tcfg, "t");
    tc->overflow = OVERFLOW_DROP_OLDEST;
    tc->max_messages = 1;
    tc = cfg_topic(&tcfg, "u");
    tc->overflow = OVERFLOW_DROP_OLDEST;
    tc->max_bytes = 10;
    start();
    fake_t *p = fake(), *c = fake();

    /* nothing ready to drop: -FULL */
    pub_ok(p, "t", "a");
    get_ok(c, "t");
    ck_assert_int_eq(pub(p, "t", "b"), BR_FULL);
    ck_assert_uint_eq(ts("t").totals.rejected, 1);
    ck_assert_uint_eq(ts("t").totals.dropped, 0);

    /* dropping every ready message would not make room: drop nothing */
    pub_ok(p, "u", "12345678");
    get_ok(c, "u");
    pub_ok(p, "u", "x");
    ck_assert_int_eq(pub(p, "u", "12345"), BR_FULL);
    topic_stats_t s = ts("u");
    ck_assert_uint_eq(s.ready, 1);
    ck_assert_uint_eq(s.totals.dropped, 0);
    ck_assert_uint_eq(s.totals.rejected, 1);
    ck_assert_uint_eq(s.bytes, 9);
}
END_TEST

START_TEST(test_never_fits)
{
    tcfg.cfg.defaults.max_bytes = 10;
    cfg_topic(&tcfg, "big")->max_bytes = 1000;
    tcfg.cfg.limits.max_memory = 20;
    start();
    fake_t *p = fake();

    /* block policy, but it could never fit: -FULL at once, not parked */
    ck_assert_int_eq(pub(p, "t", "12345678901"), BR_FULL);
    ck_assert_uint_eq(ts("t").blocked_producers, 0);
    ck_assert_uint_eq(ts("t").totals.rejected, 1);
    ck_assert_int_eq(pub(p, "big", "123456789012345678901"), BR_FULL);
    ck_assert_uint_eq(ts("big").totals.rejected, 1);
    /* a message that fills max_bytes exactly fits */
    pub_ok(p, "t", "1234567890");
    ck_assert_uint_eq(ts("t").bytes, 10);
    ck_assert_uint_eq(ss().blocked_producers, 0);
}
END_TEST

START_TEST(test_max_memory_across_topics)
{
    tcfg.cfg.limits.max_memory = 10;
    cfg_topic(&tcfg, "r")->overflow = OVERFLOW_REJECT;
    start();
    fake_t *p = fake(), *q = fake(), *x = fake(), *c = fake();

    pub_ok(p, "a", "123456");
    ck_assert_int_eq(pub(q, "b", "12345"), BR_PENDING); /* memory, not b's bounds */
    ck_assert_int_eq(pub(x, "b", "1234"), BR_PENDING);  /* behind q */
    ck_assert_int_eq(pub(p, "r", "12345"), BR_FULL);     /* reject topic */
    ck_assert_uint_eq(ts("r").totals.rejected, 1);
    /* room freed in topic a resumes b's parked producers */
    ck_assert_uint_eq(get_ok(c, "a")->id, 1);
    ck_assert_uint_eq(q->ndone, 0);
    ck_assert(broker_ack(c->c, 1, now));
    assert_done(q, 0, BR_OP_PUB, BR_OK, 2);
    assert_done(x, 0, BR_OP_PUB, BR_OK, 3);
    ck_assert_uint_eq(ss().bytes, 9);
    ck_assert_uint_eq(ss().blocked_producers, 0);
}
END_TEST

/* Freed memory goes to the parked producers topic by topic, in the order
 * the topics got their first parked producer; JOINs finish in the order
 * they came. */
START_TEST(test_parked_topics_and_joins_in_order)
{
    tcfg.cfg.limits.max_memory = 10;
    start();
    fake_t *p = fake(), *q = fake(), *x = fake(), *y = fake(), *c = fake();
    fake_t *j1 = fake(), *j2 = fake();

    pub_ok(p, "a", "1234567890");
    ck_assert_int_eq(pub(q, "b", "12345"), BR_PENDING);
    ck_assert_int_eq(pub(x, "c", "12345"), BR_PENDING);
    ck_assert_int_eq(pub(y, "b", "123"), BR_PENDING);
    ck_assert_int_eq(join(j1, "a", -1), BR_PENDING);
    ck_assert_int_eq(join(j2, "a", -1), BR_PENDING);
    ck_assert_uint_eq(get_ok(c, "a")->id, 1);
    ck_assert(broker_ack(c->c, 1, now));
    /* b parked first: both of its producers fit (8 bytes), c's does not. */
    assert_done(q, 0, BR_OP_PUB, BR_OK, 2);
    assert_done(y, 0, BR_OP_PUB, BR_OK, 3);
    ck_assert_uint_eq(x->ndone, 0);
    ck_assert_uint_eq(ss().blocked_producers, 1);
    assert_done(j1, 0, BR_OP_JOIN, BR_OK, 0);
    assert_done(j2, 0, BR_OP_JOIN, BR_OK, 0);
    ck_assert_int_lt(done(j1, 0)->seq, done(j2, 0)->seq);
    /* b's messages leave: c's producer, the last parked topic, goes on. */
    ck_assert_uint_eq(get_ok(c, "b")->id, 2);
    ck_assert(broker_ack(c->c, 2, now));
    assert_done(x, 0, BR_OP_PUB, BR_OK, 4);
    ck_assert_uint_eq(ss().blocked_producers, 0);
}
END_TEST

START_TEST(test_memory_returns_to_zero)
{
    tcfg.cfg.defaults.max_deliveries = 2;
    tcfg.cfg.defaults.ack_timeout_ms = 100;
    cfg_topic(&tcfg, "d")->dead_letter = "dl";
    start();
    fake_t *p = fake(), *c = fake(), *k = fake();

    for (int i = 0; i < 5; i++) {
        pub_ok(p, "a", "aaaa");
        pub_ok(p, "d", "dd");
        ck_assert_int_eq(pubd(p, "a", "delayed", 50, NULL), BR_OK);
    }
    sub(c, "a", 3);
    sub(k, "d", 100);
    disp();
    now += 100;
    broker_tick(b, now); /* expiries and releases, then redelivery */
    for (int round = 0; round < 20; round++) {
        while (c->ndeliv > 0 && broker_owns(c->c, last_dl(c)->id)) {
            ck_assert(broker_ack(c->c, last_dl(c)->id, now));
            disp();
        }
        for (size_t i = 0; i < k->ndeliv; i++)
            if (broker_owns(k->c, dl(k, i)->id))
                broker_nack(k->c, dl(k, i)->id, 0, now);
        disp();
        now += 100;
        broker_tick(b, now);
    }
    fake_t *g = fake();
    while (get(g, "dl", 0) == BR_OK)
        ck_assert(broker_ack(g->c, last_dl(g)->id, now));
    broker_stats_t s = ss();
    ck_assert_uint_eq(s.messages, 0);
    ck_assert_uint_eq(s.bytes, 0);
    ck_assert_uint_eq(ts("a").bytes, 0);
    ck_assert_uint_eq(ts("d").bytes, 0);
    ck_assert_uint_eq(ts("dl").bytes, 0);
    ck_assert_uint_eq(ts("dl").totals.published, 5);
    ck_assert_uint_eq(s.totals.published, 20);
    /* every message of a and dl was acked or died; d's went to dl */
    ck_assert_uint_eq(s.totals.acked + s.totals.dead, 15);
    ck_assert_uint_eq(ts("d").totals.dead, 0);
}
END_TEST

/* ================= message states ================= */

START_TEST(test_delayed_publish)
{
    start();
    fake_t *p = fake(), *c = fake();
    uint64_t id = 0;

    ck_assert_int_eq(pubd(p, "t", "x", 100, &id), BR_OK);
    ck_assert_uint_eq(id, 1);
    topic_stats_t s = ts("t");
    ck_assert_uint_eq(s.delayed, 1);
    ck_assert_uint_eq(s.ready, 0);
    ck_assert_uint_eq(s.bytes, 1);
    ck_assert_int_eq(get(c, "t", 0), BR_TIMEOUT);
    ck_assert_uint_eq(broker_next_deadline(b), now + 100);
    now += 99;
    ck_assert_uint_eq(broker_tick(b, now), now + 1);
    ck_assert_uint_eq(ts("t").delayed, 1);
    now += 1;
    ck_assert_uint_eq(broker_tick(b, now), UINT64_MAX);
    ck_assert_uint_eq(ts("t").delayed, 0);
    ck_assert_uint_eq(ts("t").ready, 1);
    ck_assert_uint_eq(get_ok(c, "t")->id, 1);
}
END_TEST

START_TEST(test_delayed_due_order_at_head)
{
    start();
    fake_t *p = fake(), *c = fake();
    uint64_t id;

    pub_ok(p, "t", "r1");
    ck_assert_int_eq(pubd(p, "t", "d300", 300, &id), BR_OK);
    ck_assert_int_eq(pubd(p, "t", "d100", 100, &id), BR_OK);
    ck_assert_int_eq(pubd(p, "t", "d200", 200, &id), BR_OK);
    now += 300;
    broker_tick(b, now);
    /* all due at once: the earliest due first, all ahead of the ready one */
    ck_assert_str_eq(get_ok(c, "t")->data, "d100");
    ck_assert_str_eq(get_ok(c, "t")->data, "d200");
    ck_assert_str_eq(get_ok(c, "t")->data, "d300");
    ck_assert_str_eq(get_ok(c, "t")->data, "r1");
}
END_TEST

START_TEST(test_ack)
{
    start();
    fake_t *p = fake(), *c = fake();

    pub_ok(p, "t", "hello");
    sub(c, "t", 1);
    ck_assert_uint_eq(c->ndeliv, 0); /* SUB registers only */
    disp();
    const ev_t *e = dl(c, 0);
    ck_assert_str_eq(e->topic, "t");
    ck_assert_uint_eq(e->id, 1);
    ck_assert_uint_eq(e->attempt, 1);
    ck_assert_str_eq(e->data, "hello");
    topic_stats_t s = ts("t");
    ck_assert_uint_eq(s.in_flight, 1);
    ck_assert_uint_eq(s.ready, 0);
    ck_assert_uint_eq(s.bytes, 5);
    ck_assert_uint_eq(s.totals.delivered, 1);
    ck_assert(broker_ack(c->c, 1, now));
    s = ts("t");
    ck_assert_uint_eq(s.in_flight, 0);
    ck_assert_uint_eq(s.bytes, 0);
    ck_assert_uint_eq(s.totals.acked, 1);
    /* observer: enqueued, attempted, removed(ACKED) */
    ck_assert_uint_eq(noev, 3);
    ck_assert_int_eq(oevs[1].kind, 'A');
    ck_assert_uint_eq(oevs[1].attempt, 1);
    ck_assert_int_eq(oevs[2].kind, 'R');
    ck_assert_int_eq(oevs[2].why, BR_REMOVED_ACKED);
}
END_TEST

START_TEST(test_nack_to_head)
{
    start();
    fake_t *p = fake(), *c = fake();

    pub_ok(p, "t", "a");
    pub_ok(p, "t", "b");
    sub(c, "t", 1);
    disp();
    ck_assert_uint_eq(dl(c, 0)->id, 1);
    ck_assert_int_eq(broker_nack(c->c, 1, 0, now), BR_OK);
    ck_assert_uint_eq(ts("t").totals.redelivered, 1);
    ck_assert_uint_eq(ts("t").ready, 2);
    disp();
    /* back at the head, attempt kept and counted on the next push */
    ck_assert_uint_eq(dl(c, 1)->id, 1);
    ck_assert_uint_eq(dl(c, 1)->attempt, 2);
    ck_assert_uint_eq(ts("t").totals.delivered, 2);
    ck_assert_int_eq(broker_nack(c->c, 1, 0, now), BR_OK);
    ck_assert_int_eq(broker_nack(c->c, 1, 0, now), BR_NOTFOUND);
}
END_TEST

START_TEST(test_nack_delay)
{
    start();
    fake_t *p = fake(), *c = fake();

    pub_ok(p, "t", "a");
    pub_ok(p, "t", "b");
    ck_assert_uint_eq(get_ok(c, "t")->id, 1);
    ck_assert_int_eq(broker_nack(c->c, 1, 500, now), BR_OK);
    topic_stats_t s = ts("t");
    ck_assert_uint_eq(s.delayed, 1);
    ck_assert_uint_eq(s.in_flight, 0);
    ck_assert_uint_eq(s.bytes, 2);
    pub_ok(p, "t", "c");
    ck_assert_uint_eq(broker_next_deadline(b), now + 500);
    now += 500;
    broker_tick(b, now);
    /* due: to the head, before b and c */
    ck_assert_uint_eq(get_ok(c, "t")->id, 1);
    ck_assert_uint_eq(last_dl(c)->attempt, 2);
    ck_assert_uint_eq(get_ok(c, "t")->id, 2);
}
END_TEST

START_TEST(test_ack_deadline_redelivery)
{
    tcfg.cfg.defaults.ack_timeout_ms = 100;
    start();
    fake_t *p = fake(), *c = fake();

    pub_ok(p, "t", "a");
    pub_ok(p, "t", "b");
    sub(c, "t", 1);
    disp();
    ck_assert_uint_eq(broker_next_deadline(b), now + 100);
    now += 99;
    broker_tick(b, now);
    ck_assert_uint_eq(c->ndeliv, 1);
    now += 1;
    broker_tick(b, now);
    /* expired: ready again at the head; the tick's dispatch pushes it */
    ck_assert_uint_eq(c->ndeliv, 2);
    ck_assert_uint_eq(dl(c, 1)->id, 1);
    ck_assert_uint_eq(dl(c, 1)->attempt, 2);
    ck_assert_uint_eq(ts("t").totals.redelivered, 1);
    ck_assert_uint_eq(ts("t").ready, 1);
    ck_assert_uint_eq(broker_next_deadline(b), now + 100);
}
END_TEST

START_TEST(test_dead)
{
    tcfg.cfg.defaults.max_deliveries = 2;
    start();
    fake_t *p = fake(), *c = fake();

    pub_ok(p, "t", "a");
    sub(c, "t", 1);
    disp();
    ck_assert_int_eq(broker_nack(c->c, 1, 0, now), BR_OK);
    disp();
    ck_assert_uint_eq(dl(c, 1)->attempt, 2);
    ck_assert_int_eq(broker_nack(c->c, 1, 0, now), BR_OK);
    disp();
    ck_assert_uint_eq(c->ndeliv, 2);
    topic_stats_t s = ts("t");
    ck_assert_uint_eq(s.totals.dead, 1);
    ck_assert_uint_eq(s.totals.redelivered, 1); /* the dead one was not returned */
    ck_assert_uint_eq(s.ready + s.in_flight + s.delayed, 0);
    ck_assert_uint_eq(s.bytes, 0);
    ck_assert_uint_eq(ss().totals.dead, 1);
    ck_assert_int_eq(oevs[noev - 1].kind, 'R');
    ck_assert_int_eq(oevs[noev - 1].why, BR_REMOVED_DEAD);
}
END_TEST

START_TEST(test_dead_by_deadline_and_unlimited)
{
    tcfg.cfg.defaults.max_deliveries = 1;
    tcfg.cfg.defaults.ack_timeout_ms = 10;
    cfg_topic(&tcfg, "forever")->max_deliveries = 0;
    start();
    fake_t *p = fake(), *c = fake();

    pub_ok(p, "t", "a");
    get_ok(c, "t");
    now += 10;
    broker_tick(b, now);
    ck_assert_uint_eq(ts("t").totals.dead, 1);
    /* max_deliveries 0: never dead */
    pub_ok(p, "forever", "x");
    for (int i = 1; i <= 20; i++) {
        ck_assert_uint_eq(get_ok(c, "forever")->attempt, i);
        ck_assert_int_eq(broker_nack(c->c, last_dl(c)->id, 0, now), BR_OK);
    }
    ck_assert_uint_eq(ts("forever").totals.dead, 0);
    ck_assert_uint_eq(ts("forever").totals.redelivered, 20);
}
END_TEST

START_TEST(test_dead_lettered)
{
    topic_conf_t *tc = cfg_topic(&tcfg, "jobs");
    tc->dead_letter = "jobs.dead";
    tc->max_deliveries = 1;
    start();
    ck_assert(has_topic("jobs.dead")); /* exists from the start */
    fake_t *p = fake(), *c = fake(), *d = fake();

    pub_ok(p, "jobs", "payload");
    sub(c, "jobs", 1);
    disp();
    ck_assert_int_eq(broker_nack(c->c, 1, 0, now), BR_OK);
    topic_stats_t s = ts("jobs");
    ck_assert_uint_eq(s.totals.dead, 0);
    ck_assert_uint_eq(s.bytes, 0);
    ck_assert_uint_eq(s.ready + s.in_flight, 0);
    s = ts("jobs.dead");
    ck_assert_uint_eq(s.ready, 1);
    ck_assert_uint_eq(s.totals.published, 1);
    ck_assert_uint_eq(ss().totals.published, 2);
    ck_assert_uint_eq(ss().bytes, 7);
    /* the copy's enqueued() comes before the original's removed() */
    ck_assert_int_eq(oevs[noev - 2].kind, 'E');
    ck_assert_str_eq(oevs[noev - 2].topic, "jobs.dead");
    ck_assert_uint_eq(oevs[noev - 2].id, 2);
    ck_assert_int_eq(oevs[noev - 1].kind, 'R');
    ck_assert_uint_eq(oevs[noev - 1].id, 1);
    ck_assert_int_eq(oevs[noev - 1].why, BR_REMOVED_DEADLETTERED);
    const ev_t *e = get_ok(d, "jobs.dead");
    ck_assert_uint_eq(e->id, 2);
    ck_assert_uint_eq(e->attempt, 1);
    ck_assert_str_eq(e->data, "payload");
}
END_TEST

START_TEST(test_dead_letter_full)
{
    topic_conf_t *tc = cfg_topic(&tcfg, "jobs");
    tc->dead_letter = "dlq";
    tc->max_deliveries = 1;
    cfg_topic(&tcfg, "dlq")->max_messages = 1; /* block policy: the copy never parks */
    start();
    fake_t *p = fake(), *c = fake();

    pub_ok(p, "dlq", "old");
    pub_ok(p, "jobs", "x");
    get_ok(c, "jobs");
    ck_assert_int_eq(broker_nack(c->c, 2, 0, now), BR_OK);
    ck_assert_uint_eq(ts("jobs").totals.dead, 1);
    ck_assert_uint_eq(ts("dlq").ready, 1);
    ck_assert_uint_eq(ts("dlq").blocked_producers, 0);
    ck_assert_uint_eq(ts("dlq").totals.published, 1);
    ck_assert_uint_eq(ss().bytes, 3);
    ck_assert_int_eq(oevs[noev - 1].why, BR_REMOVED_DEAD);
}
END_TEST

START_TEST(test_dead_letter_drop_oldest)
{
    topic_conf_t *tc = cfg_topic(&tcfg, "jobs");
    tc->dead_letter = "dlq";
    tc->max_deliveries = 1;
    tc = cfg_topic(&tcfg, "dlq");
    tc->max_messages = 1;
    tc->overflow = OVERFLOW_DROP_OLDEST;
    start();
    fake_t *p = fake(), *c = fake();

    pub_ok(p, "dlq", "old");
    pub_ok(p, "jobs", "x");
    get_ok(c, "jobs");
    ck_assert_int_eq(broker_nack(c->c, 2, 0, now), BR_OK);
    ck_assert_uint_eq(ts("jobs").totals.dead, 0);
    ck_assert_uint_eq(ts("dlq").totals.dropped, 1);
    ck_assert_str_eq(get_ok(c, "dlq")->data, "x");
}
END_TEST

START_TEST(test_attempt_counting)
{
    tcfg.cfg.defaults.max_deliveries = 0;
    tcfg.cfg.defaults.ack_timeout_ms = 100;
    start();
    fake_t *p = fake(), *a = fake();

    pub_ok(p, "t", "m");
    ck_assert_uint_eq(get_ok(a, "t")->attempt, 1);
    broker_nack(a->c, 1, 0, now);                  /* NACK */
    ck_assert_uint_eq(get_ok(a, "t")->attempt, 2);
    now += 100;
    broker_tick(b, now);                           /* ack deadline */
    ck_assert_uint_eq(get_ok(a, "t")->attempt, 3);
    fake_gone(a);                                  /* disconnect */
    fake_t *z = fake();
    ck_assert_uint_eq(get_ok(z, "t")->attempt, 4);
    ck_assert_uint_eq(ts("t").totals.redelivered, 3);
    ck_assert_uint_eq(ts("t").totals.delivered, 4);
}
END_TEST

/* ================= credit and consumers ================= */

START_TEST(test_credit_one)
{
    start();
    fake_t *p = fake(), *c = fake();

    pub_ok(p, "t", "a");
    pub_ok(p, "t", "b");
    sub(c, "t", 1);
    disp();
    ck_assert_uint_eq(c->ndeliv, 1);
    disp();
    ck_assert_uint_eq(c->ndeliv, 1);
    ck_assert(broker_ack(c->c, 1, now));
    ck_assert_uint_eq(c->ndeliv, 1); /* no push before dispatch */
    disp();
    ck_assert_uint_eq(c->ndeliv, 2);
    ck_assert_uint_eq(dl(c, 1)->id, 2);
}
END_TEST

START_TEST(test_credit_n_and_default)
{
    tcfg.cfg.defaults.prefetch = 2;
    start();
    fake_t *p = fake(), *c = fake(), *d = fake();

    for (int i = 0; i < 10; i++)
        pub_ok(p, "t", "m");
    sub(c, "t", 3);
    disp();
    ck_assert_uint_eq(c->ndeliv, 3);
    sub(d, "t", -1); /* the topic's prefetch */
    disp();
    ck_assert_uint_eq(d->ndeliv, 2);
    ck_assert_uint_eq(ts("t").in_flight, 5);
    ck_assert_uint_eq(ts("t").consumers, 2);
    /* publishing more does not exceed either credit */
    pub_ok(p, "t", "m");
    disp();
    ck_assert_uint_eq(c->ndeliv + d->ndeliv, 5);
}
END_TEST

START_TEST(test_credit_zero_and_resub)
{
    start();
    fake_t *p = fake(), *c = fake();

    pub_ok(p, "t", "a");
    pub_ok(p, "t", "b");
    pub_ok(p, "t", "c");
    sub(c, "t", 0);
    disp();
    ck_assert_uint_eq(c->ndeliv, 0);
    sub(c, "t", 2); /* SUB again changes the credit */
    disp();
    ck_assert_uint_eq(c->ndeliv, 2);
    ck_assert_uint_eq(ts("t").consumers, 1);
    sub(c, "t", 1); /* lowered below what is in flight: no push */
    ck_assert(broker_ack(c->c, 1, now));
    disp();
    ck_assert_uint_eq(c->ndeliv, 2);
    ck_assert(broker_ack(c->c, 2, now));
    disp();
    ck_assert_uint_eq(c->ndeliv, 3);
}
END_TEST

START_TEST(test_unsub_keeps_ownership)
{
    start();
    fake_t *p = fake(), *c = fake();

    pub_ok(p, "t", "a");
    pub_ok(p, "t", "b");
    sub(c, "t", 1);
    disp();
    ck_assert_int_eq(broker_unsubscribe(c->c, "t", 1), BR_OK);
    ck_assert_int_eq(broker_unsubscribe(c->c, "t", 1), BR_OK);
    ck_assert_int_eq(broker_unsubscribe(c->c, "nope", 4), BR_OK);
    ck_assert(!has_topic("nope"));
    ck_assert_uint_eq(ts("t").consumers, 0);
    ck_assert(broker_owns(c->c, 1));
    disp();
    ck_assert_uint_eq(c->ndeliv, 1);
    /* subscribing again: the old message no longer uses the credit */
    sub(c, "t", 1);
    disp();
    ck_assert_uint_eq(c->ndeliv, 2);
    ck_assert(broker_ack(c->c, 1, now)); /* still owned, and acking it frees no credit */
    pub_ok(p, "t", "c");
    disp();
    ck_assert_uint_eq(c->ndeliv, 2);
    ck_assert(broker_ack(c->c, 2, now));
    disp();
    ck_assert_uint_eq(c->ndeliv, 3);
}
END_TEST

START_TEST(test_get_without_credit)
{
    start();
    fake_t *p = fake(), *c = fake();

    pub_ok(p, "t", "a");
    pub_ok(p, "t", "b");
    pub_ok(p, "t", "c");
    sub(c, "t", 1);
    disp();
    ck_assert_uint_eq(c->ndeliv, 1);
    ck_assert_uint_eq(get_ok(c, "t")->id, 2); /* GET ignores the credit */
    /* acking the GET's message frees no SUB credit */
    ck_assert(broker_ack(c->c, 2, now));
    disp();
    ck_assert_uint_eq(c->ndeliv, 2);
    ck_assert(broker_ack(c->c, 1, now));
    disp();
    ck_assert_uint_eq(c->ndeliv, 3);
}
END_TEST

START_TEST(test_round_robin)
{
    start();
    fake_t *p = fake(), *x = fake(), *y = fake();

    sub(x, "t", 10);
    sub(y, "t", 10);
    for (int i = 0; i < 6; i++)
        pub_ok(p, "t", "m");
    disp();
    ck_assert_uint_eq(x->ndeliv, 3);
    ck_assert_uint_eq(y->ndeliv, 3);
    ck_assert_uint_eq(dl(x, 0)->id, 1);
    ck_assert_uint_eq(dl(y, 0)->id, 2);
    ck_assert_uint_eq(dl(x, 1)->id, 3);
    ck_assert_uint_eq(dl(y, 1)->id, 4);
    /* a consumer without credit is skipped */
    fake_t *z = fake();
    sub(z, "t", 1);
    for (int i = 0; i < 4; i++)
        pub_ok(p, "t", "m");
    disp();
    ck_assert_uint_eq(z->ndeliv, 1);
    ck_assert_uint_eq(x->ndeliv + y->ndeliv, 9);
}
END_TEST

START_TEST(test_pause_resume)
{
    start();
    fake_t *p = fake(), *c = fake(), *o = fake();

    sub(c, "t", 10);
    c->full = true;
    for (int i = 0; i < 4; i++)
        pub_ok(p, "t", "m");
    disp();
    ck_assert_uint_eq(c->ndeliv, 1); /* deliver said full: paused */
    disp();
    ck_assert_uint_eq(c->ndeliv, 1);
    /* a GET is answered even while paused */
    ck_assert_uint_eq(get_ok(c, "t")->id, 2);
    /* other consumers still get messages */
    sub(o, "t", 1);
    disp();
    ck_assert_uint_eq(o->ndeliv, 1);
    c->full = false;
    broker_client_resume(c->c, now); /* dispatches at once */
    ck_assert_uint_eq(c->ndeliv, 3);
    ck_assert_uint_eq(dl(c, 2)->id, 4);
    broker_client_resume(c->c, now);
}
END_TEST

/* ================= GET ================= */

START_TEST(test_get_immediate_and_timeout_zero)
{
    start();
    fake_t *p = fake(), *c = fake();

    ck_assert_int_eq(get(c, "t", 0), BR_TIMEOUT); /* auto-created, empty */
    ck_assert(has_topic("t"));
    pub_ok(p, "t", "a");
    const ev_t *e = get_ok(c, "t");
    ck_assert_uint_eq(e->id, 1);
    ck_assert_uint_eq(c->ndone, 0); /* the MSG is the reply: no completion */
    ck_assert_uint_eq(ts("t").in_flight, 1);
}
END_TEST

START_TEST(test_get_wait)
{
    start();
    fake_t *p = fake(), *c = fake(), *s = fake(), *g2 = fake();

    sub(s, "t", 10);
    ck_assert_int_eq(get(c, "t", 1000), BR_PENDING);
    ck_assert_int_eq(get(g2, "t", 1000), BR_PENDING);
    pub_ok(p, "t", "a");
    pub_ok(p, "t", "b");
    pub_ok(p, "t", "c");
    ck_assert_uint_eq(c->nev, 0);
    disp();
    /* waiting GETs in order, before the SUB consumer; deliver then complete */
    ck_assert_uint_eq(dl(c, 0)->id, 1);
    assert_done(c, 0, BR_OP_GET, BR_OK, 1);
    ck_assert_int_lt(dl(c, 0)->seq, done(c, 0)->seq);
    ck_assert_uint_eq(dl(g2, 0)->id, 2);
    assert_done(g2, 0, BR_OP_GET, BR_OK, 2);
    ck_assert_uint_eq(s->ndeliv, 1);
    ck_assert_uint_eq(dl(s, 0)->id, 3);
    /* the timer is gone with the wait */
    now += 1000;
    broker_tick(b, now);
    ck_assert_uint_eq(c->ndone, 1);
}
END_TEST

START_TEST(test_get_wait_timeout)
{
    start();
    fake_t *c = fake();

    ck_assert_int_eq(get(c, "t", 250), BR_PENDING);
    ck_assert_uint_eq(broker_next_deadline(b), now + 250);
    now += 249;
    broker_tick(b, now);
    ck_assert_uint_eq(c->ndone, 0);
    now += 1;
    broker_tick(b, now);
    assert_done(c, 0, BR_OP_GET, BR_TIMEOUT, 0);
    ck_assert_uint_eq(c->ndeliv, 0);
    /* a later message is not given to the gone wait */
    fake_t *p = fake();
    pub_ok(p, "t", "a");
    disp();
    ck_assert_uint_eq(c->ndeliv, 0);
    ck_assert_uint_eq(ts("t").ready, 1);
}
END_TEST

START_TEST(test_get_wait_released_delayed)
{
    start();
    fake_t *p = fake(), *c = fake();
    uint64_t id;

    ck_assert_int_eq(pubd(p, "t", "later", 100, &id), BR_OK);
    ck_assert_int_eq(get(c, "t", 1000), BR_PENDING);
    now += 100;
    broker_tick(b, now);
    assert_done(c, 0, BR_OP_GET, BR_OK, 1);
    ck_assert_str_eq(dl(c, 0)->data, "later");
}
END_TEST

/* ================= JOIN ================= */

START_TEST(test_join_immediate)
{
    start();
    fake_t *p = fake(), *j = fake();

    ck_assert_int_eq(join(j, "unknown", -1), BR_OK);
    ck_assert(!has_topic("unknown")); /* JOIN creates nothing */
    pub_ok(p, "t", "a");
    ck_assert_int_eq(join(j, "t", 0), BR_TIMEOUT);
    fake_t *c = fake();
    get_ok(c, "t");
    ck_assert_int_eq(join(j, "t", 0), BR_TIMEOUT); /* in flight counts */
    broker_ack(c->c, 1, now);
    ck_assert_int_eq(join(j, "t", 0), BR_OK);
    uint64_t id;
    ck_assert_int_eq(pubd(p, "t", "d", 100, &id), BR_OK);
    ck_assert_int_eq(join(j, "t", 0), BR_TIMEOUT); /* delayed counts */
}
END_TEST

START_TEST(test_join_wait_forever)
{
    start();
    fake_t *p = fake(), *j = fake(), *k = fake(), *c = fake();

    pub_ok(p, "t", "a");
    pub_ok(p, "t", "b");
    ck_assert_int_eq(join(j, "t", -1), BR_PENDING);
    ck_assert_int_eq(join(k, "t", 5000), BR_PENDING);
    ck_assert_uint_eq(broker_next_deadline(b), now + 5000); /* only k's */
    get_ok(c, "t");
    get_ok(c, "t");
    broker_ack(c->c, 1, now);
    ck_assert_uint_eq(j->ndone, 0);
    broker_nack(c->c, 2, 0, now); /* back to ready: still not empty */
    ck_assert_uint_eq(j->ndone, 0);
    get_ok(c, "t");
    broker_ack(c->c, 2, now);
    assert_done(j, 0, BR_OP_JOIN, BR_OK, 0);
    assert_done(k, 0, BR_OP_JOIN, BR_OK, 0);
    ck_assert_uint_eq(broker_next_deadline(b), UINT64_MAX);
}
END_TEST

START_TEST(test_join_timeout)
{
    start();
    fake_t *p = fake(), *j = fake();

    pub_ok(p, "t", "a");
    ck_assert_int_eq(join(j, "t", 50), BR_PENDING);
    now += 50;
    broker_tick(b, now);
    assert_done(j, 0, BR_OP_JOIN, BR_TIMEOUT, 0);
    ck_assert_uint_eq(j->ndone, 1);
}
END_TEST

START_TEST(test_join_waits_for_dead_and_drop)
{
    tcfg.cfg.defaults.max_deliveries = 1;
    start();
    fake_t *p = fake(), *j = fake(), *c = fake();

    pub_ok(p, "t", "a");
    get_ok(c, "t");
    ck_assert_int_eq(join(j, "t", -1), BR_PENDING);
    broker_nack(c->c, 1, 0, now); /* dead: the topic is empty */
    assert_done(j, 0, BR_OP_JOIN, BR_OK, 0);
}
END_TEST

/* ================= ACK helpers, TOUCH, disconnect ================= */

START_TEST(test_owns_and_ack)
{
    start();
    fake_t *p = fake(), *a = fake(), *o = fake();

    pub_ok(p, "t", "a");
    pub_ok(p, "t", "b");
    get_ok(a, "t");
    ck_assert(broker_owns(a->c, 1));
    ck_assert(!broker_owns(o->c, 1)); /* another connection's */
    ck_assert(!broker_owns(a->c, 2)); /* ready, not delivered */
    ck_assert(!broker_owns(a->c, 99));
    ck_assert(!broker_owns(a->c, 0));
    ck_assert(!broker_ack(o->c, 1, now));
    ck_assert_int_eq(broker_nack(o->c, 1, 0, now), BR_NOTFOUND);
    ck_assert_int_eq(broker_touch(o->c, 1, now), BR_NOTFOUND);
    ck_assert(broker_ack(a->c, 1, now));
    ck_assert(!broker_ack(a->c, 1, now)); /* a duplicate in the same ACK list */
    ck_assert_uint_eq(ts("t").totals.acked, 1);
}
END_TEST

START_TEST(test_touch)
{
    tcfg.cfg.defaults.ack_timeout_ms = 100;
    start();
    fake_t *p = fake(), *c = fake();

    pub_ok(p, "t", "a");
    pub_ok(p, "t", "b");
    get_ok(c, "t");
    get_ok(c, "t");
    now += 50;
    ck_assert_int_eq(broker_touch(c->c, 1, now), BR_OK);
    now += 50;
    broker_tick(b, now);
    /* only 2 expired; 1's deadline moved to now + 50 */
    ck_assert(broker_owns(c->c, 1));
    ck_assert(!broker_owns(c->c, 2));
    ck_assert_uint_eq(ts("t").in_flight, 1);
    ck_assert_uint_eq(ts("t").ready, 1);
    ck_assert_uint_eq(broker_next_deadline(b), now + 50);
    now += 50;
    broker_tick(b, now);
    ck_assert(!broker_owns(c->c, 1));
    ck_assert_uint_eq(ts("t").ready, 2);
    /* each expiry goes to the head: 1 is now ahead of 2 */
    ck_assert_uint_eq(get_ok(c, "t")->id, 1);
}
END_TEST

START_TEST(test_disconnect_returns_in_order)
{
    tcfg.cfg.defaults.ack_timeout_ms = 100;
    start();
    fake_t *p = fake(), *a = fake(), *c = fake();

    for (int i = 0; i < 5; i++)
        pub_ok(p, "t", "m");
    pub_ok(p, "u", "u1");
    sub(a, "t", 3);
    sub(a, "u", 3);
    disp();
    ck_assert_uint_eq(a->ndeliv, 4);
    /* TOUCH reorders the topic's in-flight list, not the delivery order */
    ck_assert_int_eq(broker_touch(a->c, 1, now + 10), BR_OK);
    fake_gone(a);
    ck_assert_uint_eq(ts("t").consumers, 0);
    ck_assert_uint_eq(ts("t").in_flight, 0);
    ck_assert_uint_eq(ts("t").totals.redelivered, 3);
    ck_assert_uint_eq(ts("u").totals.redelivered, 1);
    ck_assert_uint_eq(ss().clients, 2);
    uint64_t want[] = {1, 2, 3, 4, 5};
    uint16_t att[] = {2, 2, 2, 1, 1};
    for (int i = 0; i < 5; i++) {
        const ev_t *e = get_ok(c, "t");
        ck_assert_uint_eq(e->id, want[i]);
        ck_assert_uint_eq(e->attempt, att[i]);
    }
    ck_assert_uint_eq(get_ok(c, "u")->id, 6);
}
END_TEST

START_TEST(test_disconnect_dispatches_to_others)
{
    start();
    fake_t *p = fake(), *a = fake(), *o = fake();

    pub_ok(p, "t", "m");
    sub(a, "t", 1);
    disp();
    sub(o, "t", 1);
    disp();
    ck_assert_uint_eq(o->ndeliv, 0);
    fake_gone(a);
    ck_assert_uint_eq(o->ndeliv, 1);
    ck_assert_uint_eq(dl(o, 0)->attempt, 2);
}
END_TEST

START_TEST(test_disconnect_cancels_waits)
{
    tcfg.cfg.defaults.max_messages = 1;
    tcfg.cfg.defaults.max_deliveries = 1;
    start();
    fake_t *p = fake(), *q = fake(), *r = fake(), *g = fake(), *j = fake(), *c = fake();

    pub_ok(p, "t", "a");
    ck_assert_int_eq(pub(q, "t", "q"), BR_PENDING);
    ck_assert_int_eq(pub(r, "t", "r"), BR_PENDING);
    ck_assert_int_eq(get(g, "empty", 100), BR_PENDING);
    ck_assert_int_eq(join(j, "t", 100), BR_PENDING);
    fake_gone(q); /* the parked head: freed, and r is next */
    fake_gone(g);
    fake_gone(j);
    ck_assert_uint_eq(ts("t").blocked_producers, 1);
    ck_assert_uint_eq(q->nev + g->nev + j->nev, 0);
    ck_assert_uint_eq(broker_next_deadline(b), UINT64_MAX);
    /* in flight at its last attempt: dead on disconnect */
    get_ok(c, "t");
    fake_gone(c);
    ck_assert_uint_eq(ts("t").totals.dead, 1);
    assert_done(r, 0, BR_OP_PUB, BR_OK, 2);
    now += 1000;
    broker_tick(b, now);
    ck_assert_uint_eq(q->nev + g->nev + j->nev, 0);
}
END_TEST

/* ================= timers ================= */

START_TEST(test_timers_across_topics)
{
    cfg_topic(&tcfg, "slow")->ack_timeout_ms = 1000;
    cfg_topic(&tcfg, "fast")->ack_timeout_ms = 100;
    start();
    fake_t *p = fake(), *c = fake();

    ck_assert_uint_eq(broker_next_deadline(b), UINT64_MAX);
    pub_ok(p, "slow", "s");
    pub_ok(p, "fast", "f");
    pub_ok(p, "fast", "g");
    get_ok(c, "slow");
    ck_assert_uint_eq(broker_next_deadline(b), now + 1000);
    get_ok(c, "fast");
    ck_assert_uint_eq(broker_next_deadline(b), now + 100);
    now += 10;
    get_ok(c, "fast");
    /* acking the head leaves a stale, earlier key: harmless */
    broker_ack(c->c, 2, now);
    now += 90;
    ck_assert_uint_eq(broker_tick(b, now), now + 10);
    ck_assert(broker_owns(c->c, 3));
    now += 10;
    ck_assert_uint_eq(broker_tick(b, now), now + 890);
    ck_assert(!broker_owns(c->c, 3));
    ck_assert(broker_owns(c->c, 1));
    now += 890;
    ck_assert_uint_eq(broker_tick(b, now), UINT64_MAX);
    ck_assert(!broker_owns(c->c, 1));
    ck_assert_uint_eq(ss().totals.redelivered, 2);
}
END_TEST

/* ================= reload, confirm, restore ================= */

static test_cfg_t tcfg2;

START_TEST(test_reload_limits)
{
    tcfg.cfg.defaults.max_messages = 1;
    start();
    fake_t *p = fake(), *q = fake(), *r = fake();

    pub_ok(p, "t", "a");
    ck_assert_int_eq(pub(q, "t", "b"), BR_PENDING);
    ck_assert_int_eq(pub(r, "t", "c"), BR_PENDING);

    cfg_defaults(&tcfg2);
    tcfg2.cfg.defaults.max_messages = 2;
    cfg_topic(&tcfg2, "newt")->overflow = OVERFLOW_REJECT;
    broker_configure(b, &tcfg2.cfg, now);
    assert_done(q, 0, BR_OP_PUB, BR_OK, 2); /* room now: resumed */
    ck_assert_uint_eq(r->ndone, 0);
    ck_assert_uint_eq(ts("t").max_messages, 2);
    ck_assert(has_topic("newt"));
    ck_assert_int_eq(ts("newt").overflow, OVERFLOW_REJECT);

    /* lowered: nothing is evicted, new PUBs wait */
    cfg_defaults(&tcfg);
    tcfg.cfg.defaults.max_messages = 1;
    broker_configure(b, &tcfg.cfg, now);
    ck_assert_uint_eq(ts("t").ready, 2);
    ck_assert_uint_eq(ts("t").totals.dropped, 0);
    ck_assert_uint_eq(r->ndone, 0);
    ck_assert(has_topic("newt")); /* topics stay */

    /* block -> reject: parked producers that do not fit get -FULL */
    cfg_defaults(&tcfg2);
    tcfg2.cfg.defaults.max_messages = 1;
    tcfg2.cfg.defaults.overflow = OVERFLOW_REJECT;
    broker_configure(b, &tcfg2.cfg, now);
    assert_done(r, 0, BR_OP_PUB, BR_FULL, 0);
    ck_assert_uint_eq(ts("t").totals.rejected, 1);
    ck_assert_uint_eq(ss().blocked_producers, 0);
    ck_assert_int_eq(pub(p, "t", "d"), BR_FULL);
}
END_TEST

START_TEST(test_reload_ack_timeout_keeps_order)
{
    tcfg.cfg.defaults.ack_timeout_ms = 1000;
    start();
    fake_t *p = fake(), *c = fake();

    pub_ok(p, "t", "a");
    pub_ok(p, "t", "b");
    get_ok(c, "t");
    cfg_defaults(&tcfg2);
    tcfg2.cfg.defaults.ack_timeout_ms = 100;
    broker_configure(b, &tcfg2.cfg, now);
    get_ok(c, "t"); /* deadline now+100, earlier than the first one's */
    ck_assert_uint_eq(broker_next_deadline(b), now + 100);
    now += 100;
    broker_tick(b, now);
    ck_assert(!broker_owns(c->c, 2));
    ck_assert(broker_owns(c->c, 1));
}
END_TEST

START_TEST(test_confirm_ok_and_fail)
{
    start();
    broker_set_confirm(b, true);
    fake_t *p = fake(), *c = fake(), *j = fake();
    uint64_t id = 0;

    sub(c, "t", 5);
    ck_assert_int_eq(pubd(p, "t", "x", 0, &id), BR_HELD);
    ck_assert_uint_eq(id, 1);
    ck_assert_uint_eq(noev, 1); /* enqueued with its id at once */
    ck_assert_uint_eq(oevs[0].id, 1);
    topic_stats_t s = ts("t");
    ck_assert_uint_eq(s.ready, 0);
    ck_assert_uint_eq(s.bytes, 1);
    ck_assert_uint_eq(s.totals.published, 0);
    ck_assert_uint_eq(ss().messages, 1);
    disp();
    ck_assert_uint_eq(c->ndeliv, 0); /* held: not deliverable */
    ck_assert_int_eq(join(j, "t", 0), BR_TIMEOUT);
    ck_assert(!broker_owns(c->c, 1));
    ck_assert(!broker_owns(p->c, 1));

    broker_confirm(b, 1, true, now);
    assert_done(p, 0, BR_OP_PUB, BR_OK, 1);
    disp();
    ck_assert_uint_eq(c->ndeliv, 1);
    ck_assert_uint_eq(ts("t").totals.published, 1);
    broker_confirm(b, 1, true, now); /* no longer held: ignored */
    broker_confirm(b, 77, false, now);
    ck_assert_uint_eq(p->ndone, 1);

    ck_assert_int_eq(pub(p, "t", "yy"), BR_HELD);
    size_t before = noev;
    broker_confirm(b, 2, false, now);
    assert_done(p, 1, BR_OP_PUB, BR_UNAVAILABLE, 2);
    ck_assert_uint_eq(noev, before); /* no observer call */
    ck_assert_uint_eq(ts("t").bytes, 1);
    ck_assert_uint_eq(ts("t").totals.published, 1);
}
END_TEST

START_TEST(test_confirm_many_held)
{
    start();
    broker_set_confirm(b, true);
    fake_t *p = fake(), *c = fake();

    /* one client, many PUBs held at once; outcomes in any order */
    for (int i = 0; i < 5; i++)
        ck_assert_int_eq(pub(p, "t", "m"), BR_HELD);
    ck_assert_uint_eq(ts("t").bytes, 5);
    broker_confirm(b, 2, true, now);
    broker_confirm(b, 1, false, now);
    assert_done(p, 0, BR_OP_PUB, BR_OK, 2);
    assert_done(p, 1, BR_OP_PUB, BR_UNAVAILABLE, 1);
    fake_gone(p); /* the rest stay held, then settle with nobody to tell */
    broker_confirm(b, 3, true, now);
    broker_confirm(b, 4, false, now);
    broker_confirm(b, 5, true, now);
    ck_assert_uint_eq(ts("t").ready, 3);
    ck_assert_uint_eq(ts("t").bytes, 3);
    ck_assert_uint_eq(get_ok(c, "t")->id, 2);
}
END_TEST

START_TEST(test_confirm_producer_gone_and_delay)
{
    start();
    broker_set_confirm(b, true);
    fake_t *p = fake(), *q = fake(), *c = fake();
    uint64_t id = 0;

    ck_assert_int_eq(pub(p, "t", "x"), BR_HELD);
    fake_gone(p);
    ck_assert_uint_eq(ts("t").bytes, 1); /* still held */
    broker_confirm(b, 1, true, now);
    ck_assert_uint_eq(p->nev, 0);
    ck_assert_uint_eq(get_ok(c, "t")->id, 1);

    ck_assert_int_eq(pubd(q, "t", "later", 100, &id), BR_HELD);
    now += 10;
    broker_confirm(b, 2, true, now);
    assert_done(q, 0, BR_OP_PUB, BR_OK, 2);
    ck_assert_uint_eq(ts("t").delayed, 1);
    now += 90;
    broker_tick(b, now);
    ck_assert_uint_eq(ts("t").ready, 1);
}
END_TEST

START_TEST(test_confirm_after_park)
{
    tcfg.cfg.defaults.max_messages = 1;
    start();
    fake_t *p = fake(), *q = fake(), *c = fake();

    pub_ok(p, "t", "a");
    broker_set_confirm(b, true);
    ck_assert_int_eq(pub(q, "t", "b"), BR_PENDING);
    ck_assert_uint_eq(ts("t").blocked_producers, 1);
    get_ok(c, "t");
    broker_ack(c->c, 1, now);
    /* unparked into held: the wait ends with its id, the outcome follows */
    assert_done(q, 0, BR_OP_PUB, BR_HELD, 2);
    ck_assert_uint_eq(ts("t").blocked_producers, 0);
    ck_assert_uint_eq(ts("t").bytes, 1);
    broker_confirm(b, 2, true, now);
    assert_done(q, 1, BR_OP_PUB, BR_OK, 2);
}
END_TEST

START_TEST(test_restore)
{
    tcfg.cfg.auto_create_topics = false;
    tcfg.cfg.defaults.max_messages = 1;
    start();
    fake_t *c = fake(), *p = fake();

    ck_assert_int_eq(broker_restore(b, "r", 1, msg_new_copy("ten", 3), 10, 2), BR_OK);
    ck_assert_int_eq(broker_restore(b, "r", 1, msg_new_copy("five", 4), 5, 0), BR_OK);
    ck_assert_int_eq(broker_restore(b, "r", 1, msg_new_copy("six", 3), 6, 1), BR_OK);
    ck_assert_uint_eq(broker_next_id(b), 11);
    ck_assert_uint_eq(noev, 0); /* no observer calls */
    topic_stats_t s = ts("r");
    ck_assert_uint_eq(s.ready, 3); /* bounds not applied */
    ck_assert_uint_eq(s.bytes, 10);
    ck_assert_uint_eq(s.totals.published, 0);
    const ev_t *e = get_ok(c, "r");
    ck_assert_uint_eq(e->id, 10);
    ck_assert_uint_eq(e->attempt, 3);
    ck_assert_uint_eq(get_ok(c, "r")->id, 5);
    ck_assert_uint_eq(get_ok(c, "r")->id, 6);
    for (uint64_t id = 5; id <= 10; id++)
        broker_ack(c->c, id, now);
    /* ids continue above the restored ones */
    ck_assert_uint_eq(pub_ok(p, "r", "x") , 11);
    broker_set_next_id(b, 100);
    ck_assert_uint_eq(broker_next_id(b), 100);
    broker_set_next_id(b, 50); /* never lowered */
    ck_assert_uint_eq(broker_next_id(b), 100);
}
END_TEST

static uint64_t visited[8];
static size_t nvisited;

static void visit(void *ctx, const topic_t *t, const msg_t *m)
{
    (void)ctx;
    (void)t;
    ck_assert_uint_lt(nvisited, 8);
    visited[nvisited++] = m->id;
}

START_TEST(test_foreach_message)
{
    start();
    fake_t *p = fake(), *c = fake(), *h = fake();
    uint64_t id, seen_ids = 0;

    pub_ok(p, "a", "ready");
    ck_assert_int_eq(pubd(p, "a", "delayed", 100, &id), BR_OK);
    pub_ok(p, "b", "flight");
    get_ok(c, "b");
    broker_set_confirm(b, true);
    ck_assert_int_eq(pub(h, "b", "held"), BR_HELD);
    nvisited = 0;
    broker_foreach_message(b, visit, NULL);
    ck_assert_uint_eq(nvisited, 4);
    for (size_t i = 0; i < nvisited; i++)
        seen_ids |= UINT64_C(1) << visited[i];
    ck_assert_uint_eq(seen_ids, 0x1e); /* ids 1..4, each once */
}
END_TEST

/* ================= topics ================= */

START_TEST(test_max_topics)
{
    tcfg.cfg.limits.max_topics = 2;
    start();
    fake_t *p = fake(), *c = fake();

    pub_ok(p, "a", "x");
    sub(c, "b", 1);
    ck_assert_int_eq(pub(p, "c", "x"), BR_NOTOPIC);
    ck_assert_int_eq(broker_subscribe(c->c, "c", 1, 1), BR_NOTOPIC);
    ck_assert_int_eq(get(c, "c", 0), BR_NOTOPIC);
    ck_assert_int_eq(join(c, "c", 0), BR_OK);
    ck_assert_uint_eq(ss().topics, 2);
    ck_assert_uint_eq(ss().totals.rejected, 0);
    pub_ok(p, "b", "y"); /* existing ones still work */
}
END_TEST

static char seen[8][32];
static size_t nseen;

static void collect(void *ctx, const topic_stats_t *s)
{
    (void)ctx;
    ck_assert_uint_lt(nseen, 8);
    snprintf(seen[nseen++], 32, "%.*s", (int)s->name_len, s->name);
}

START_TEST(test_auto_create_off)
{
    tcfg.cfg.auto_create_topics = false;
    cfg_topic(&tcfg, "orders")->dead_letter = "orders.dead";
    cfg_topic(&tcfg, "b")->max_messages = 7;
    tcfg.cfg.defaults.dead_letter = "all.dead";
    start();
    fake_t *p = fake(), *c = fake();

    nseen = 0;
    broker_foreach_topic(b, 0, collect, NULL);
    ck_assert_uint_eq(nseen, 4);
    ck_assert_str_eq(seen[0], "all.dead");
    ck_assert_str_eq(seen[1], "b");
    ck_assert_str_eq(seen[2], "orders");
    ck_assert_str_eq(seen[3], "orders.dead");
    ck_assert_int_eq(pub(p, "x", "m"), BR_NOTOPIC);
    ck_assert_int_eq(broker_subscribe(c->c, "x", 1, 1), BR_NOTOPIC);
    ck_assert_int_eq(get(c, "x", 0), BR_NOTOPIC);
    ck_assert_int_eq(join(c, "x", 0), BR_OK);
    pub_ok(p, "orders", "m");
    ck_assert_uint_eq(ts("b").max_messages, 7);
    ck_assert_uint_eq(ts("orders.dead").max_messages, 100000);
    ck_assert_uint_eq(ss().topics, 4);
}
END_TEST

START_TEST(test_stats_numbers)
{
    tcfg.cfg.defaults.max_deliveries = 1;
    cfg_topic(&tcfg, "r")->overflow = OVERFLOW_REJECT;
    tcfg.entries[0].conf.max_messages = 1;
    start();
    fake_t *p = fake(), *c = fake(), *d = fake();
    uint64_t id;

    now += 5000;
    pub_ok(p, "q", "aa");
    pub_ok(p, "q", "bbb");
    ck_assert_int_eq(pubd(p, "q", "c", 10, &id), BR_OK);
    pub_ok(p, "r", "r");
    ck_assert_int_eq(pub(p, "r", "r"), BR_FULL);
    sub(c, "q", 1);
    sub(d, "r", 1);
    disp();
    broker_ack(d->c, 4, now);
    broker_nack(c->c, 1, 0, now); /* dead */
    disp();

    topic_stats_t q = ts("q"), r = ts("r");
    ck_assert_uint_eq(q.ready, 0);
    ck_assert_uint_eq(q.delayed, 1);
    ck_assert_uint_eq(q.in_flight, 1);
    ck_assert_uint_eq(q.bytes, 4);
    ck_assert_uint_eq(q.consumers, 1);
    ck_assert_uint_eq(q.totals.published, 3);
    ck_assert_uint_eq(q.totals.delivered, 2);
    ck_assert_uint_eq(q.totals.dead, 1);
    ck_assert_uint_eq(r.totals.published, 1);
    ck_assert_uint_eq(r.totals.acked, 1);
    ck_assert_uint_eq(r.totals.rejected, 1);
    broker_stats_t s = ss();
    ck_assert_uint_eq(s.uptime_ms, 5000);
    ck_assert_uint_eq(s.clients, 3);
    ck_assert_uint_eq(s.topics, 2);
    ck_assert_uint_eq(s.messages, 2);
    ck_assert_uint_eq(s.bytes, 4);
    ck_assert_uint_eq(s.totals.published, q.totals.published + r.totals.published);
    ck_assert_uint_eq(s.totals.delivered, q.totals.delivered + r.totals.delivered);
    ck_assert_uint_eq(s.totals.acked, 1);
    ck_assert_uint_eq(s.totals.dead, 1);
    ck_assert_uint_eq(s.totals.rejected, 1);
    ck_assert(!broker_topic_stats(b, "zz", 2, 0, &q));
}
END_TEST

/* ================= random operations ================= */

#define RND_CLIENTS 6
#define RND_IDS 64

typedef struct rnd_client {
    client_t *c;
    uint64_t ids[RND_IDS]; /* recently pushed ids, maybe still owned */
    size_t nids;
    bool busy;             /* has a pending operation */
    bool full;
} rnd_client_t;

static rnd_client_t rc[RND_CLIENTS];
static uint64_t rnd_removed[5], rnd_enqueued;

static bool rnd_deliver(void *ctx, const topic_t *t, const msg_t *m)
{
    rnd_client_t *r = ctx;

    (void)t;
    r->ids[r->nids++ % RND_IDS] = m->id;
    return !r->full;
}

static void rnd_complete(void *ctx, br_op_t op, br_status_t st, const topic_t *t, uint64_t id)
{
    rnd_client_t *r = ctx;

    (void)op, (void)st, (void)t, (void)id;
    ck_assert(r->busy);
    r->busy = false;
}

static void rnd_obs_enqueued(void *ctx, const topic_t *t, const msg_t *m)
{
    (void)ctx, (void)t, (void)m;
    rnd_enqueued++;
}

static void rnd_obs_removed(void *ctx, const topic_t *t, const msg_t *m, br_removal_t why)
{
    (void)ctx, (void)t, (void)m;
    rnd_removed[why]++;
}

static const client_ops_t rnd_ops = {rnd_deliver, rnd_complete, false};
static const broker_observer_t rnd_observer = {rnd_obs_enqueued, NULL, rnd_obs_removed, NULL};

static void rnd_check(void)
{
    static const char *names[] = {"a", "b", "c", "dl"};
    broker_stats_t st = ss();
    uint64_t bytes = 0, msgs = 0, published = 0, acked = 0, dead = 0, dropped = 0;

    for (size_t i = 0; i < 4; i++) {
        topic_stats_t t = ts(names[i]);
        bytes += t.bytes;
        msgs += t.ready + t.delayed + t.in_flight;
        published += t.totals.published;
        acked += t.totals.acked;
        dead += t.totals.dead;
        dropped += t.totals.dropped;
        ck_assert_uint_le(t.ready + t.delayed + t.in_flight, t.max_messages);
    }
    ck_assert_uint_eq(st.bytes, bytes);
    ck_assert_uint_eq(st.messages, msgs);
    ck_assert_uint_le(st.bytes, tcfg.cfg.limits.max_memory);
    ck_assert_uint_eq(st.totals.published, published);
    ck_assert_uint_eq(st.totals.acked, acked);
    ck_assert_uint_eq(st.totals.dead, dead);
    ck_assert_uint_eq(st.totals.dropped, dropped);
    ck_assert_uint_eq(rnd_enqueued, published);
    ck_assert_uint_eq(rnd_removed[BR_REMOVED_ACKED], acked);
    ck_assert_uint_eq(rnd_removed[BR_REMOVED_DEAD], dead);
    ck_assert_uint_eq(rnd_removed[BR_REMOVED_DROPPED], dropped);
    /* every accepted message is still here or left in exactly one way */
    ck_assert_uint_eq(published, st.messages + acked + dead + dropped +
                                     rnd_removed[BR_REMOVED_DEADLETTERED]);
}

START_TEST(test_random_operations)
{
    static const char *names[] = {"a", "b", "c"};
    unsigned seed = 20240601u + (unsigned)_i;
    topic_conf_t *tc;

    tcfg.cfg.limits.max_memory = 300;
    tcfg.cfg.defaults.max_messages = 12;
    tcfg.cfg.defaults.max_bytes = 150;
    tcfg.cfg.defaults.ack_timeout_ms = 40;
    tcfg.cfg.defaults.max_deliveries = 3;
    tcfg.cfg.defaults.block_timeout_ms = 60;
    tc = cfg_topic(&tcfg, "a");
    tc->dead_letter = "dl";
    tc = cfg_topic(&tcfg, "b");
    tc->overflow = OVERFLOW_REJECT;
    tc->dead_letter = "dl";
    tc = cfg_topic(&tcfg, "c");
    tc->overflow = OVERFLOW_DROP_OLDEST;
    tc->block_timeout_ms = 0;
    tc = cfg_topic(&tcfg, "dl");
    tc->overflow = OVERFLOW_DROP_OLDEST;
    start();
    broker_set_observer(b, &rnd_observer, NULL);
    memset(rc, 0, sizeof(rc));
    memset(rnd_removed, 0, sizeof(rnd_removed));
    rnd_enqueued = 0;
    for (int i = 0; i < RND_CLIENTS; i++)
        rc[i].c = broker_client_new(b, &rnd_ops, &rc[i]);

    for (int step = 0; step < 20000; step++) {
        rnd_client_t *r = &rc[rand_r(&seed) % RND_CLIENTS];
        const char *t = names[rand_r(&seed) % 3];
        int op = rand_r(&seed) % 16;
        size_t known = r->nids < RND_IDS ? r->nids : RND_IDS;
        uint64_t id = known ? r->ids[(size_t)rand_r(&seed) % known] : 0;
        char payload[40];
        uint32_t len = (uint32_t)(rand_r(&seed) % 40);
        br_status_t st;

        memset(payload, 'p', sizeof(payload));
        if (r->busy && op < 11)
            op = 11 + op % 5; /* a waiting client sends no commands */
        switch (op) {
        case 0: case 1: case 2: {
            uint64_t got;
            st = broker_publish(r->c, t, 1, msg_new_copy(payload, len),
                                op == 2 ? (uint64_t)(rand_r(&seed) % 50) : 0, now, &got);
            r->busy = st == BR_PENDING;
            break;
        }
        case 3:
            broker_subscribe(r->c, t, 1, rand_r(&seed) % 4);
            break;
        case 4:
            broker_unsubscribe(r->c, t, 1);
            break;
        case 5:
            st = broker_get(r->c, t, 1, (uint64_t)(rand_r(&seed) % 3) * 20, now);
            r->busy = st == BR_PENDING;
            break;
        case 6: case 7:
            if (broker_owns(r->c, id))
                ck_assert(broker_ack(r->c, id, now));
            else
                ck_assert(!broker_ack(r->c, id, now));
            break;
        case 8:
            broker_nack(r->c, id, (uint64_t)(rand_r(&seed) % 2) * 30, now);
            break;
        case 9:
            broker_touch(r->c, id, now);
            break;
        case 10:
            st = broker_join(r->c, t, 1, (int64_t)(rand_r(&seed) % 3) * 30 - 1, now);
            r->busy = st == BR_PENDING;
            break;
        case 11:
            r->full = !r->full;
            if (!r->full)
                broker_client_resume(r->c, now);
            break;
        case 12:
            now += (uint64_t)(rand_r(&seed) % 30);
            broker_tick(b, now);
            break;
        case 13:
            if (rand_r(&seed) % 8 == 0) {
                broker_client_free(r->c, now);
                memset(r, 0, sizeof(*r));
                r->c = broker_client_new(b, &rnd_ops, r);
            }
            break;
        default:
            break;
        }
        disp();
        ck_assert_uint_ge(broker_next_deadline(b), now);
        if (step % 100 == 0)
            rnd_check();
    }
    /* Drain: everyone leaves, time passes, a consumer acks everything. */
    for (int i = 0; i < RND_CLIENTS; i++)
        broker_client_free(rc[i].c, now);
    rnd_check();
    memset(rc, 0, sizeof(rc));
    rc[0].c = broker_client_new(b, &rnd_ops, &rc[0]);
    for (int round = 0; round < 1000 && ss().messages > 0; round++) {
        now += 50;
        broker_tick(b, now);
        for (size_t i = 0; i < 4; i++) {
            const char *n = i < 3 ? names[i] : "dl";
            while (broker_get(rc[0].c, n, strlen(n), 0, now) == BR_OK)
                ck_assert(broker_ack(rc[0].c, rc[0].ids[(rc[0].nids - 1) % RND_IDS], now));
        }
    }
    rnd_check();
    ck_assert_uint_eq(ss().messages, 0);
    ck_assert_uint_eq(ss().bytes, 0);
    ck_assert_uint_eq(ss().blocked_producers, 0);
}
END_TEST

/* ================= memory per queued message ================= */

START_TEST(test_memory_per_message)
{
    enum { N = 1000000, LEN = 64 };
    char payload[LEN];

    tcfg.cfg.defaults.max_messages = N;
    start();
    broker_set_observer(b, NULL, NULL);
    fake_t *p = fake();
    memset(payload, 'x', sizeof(payload));
    pub_ok(p, "mem", "warm");
    /* Sanitizer allocators do not report through mallinfo: nothing to
     * measure, so do not spend the time queueing a million messages. */
    struct mallinfo2 before = mallinfo2();
    msg_t *probe = msg_new(4096);
    ck_assert_ptr_nonnull(probe);
    size_t reported = mallinfo2().uordblks - before.uordblks;
    msg_free(probe);
    if (reported == 0)
        return;
    before = mallinfo2();
    for (int i = 0; i < N - 1; i++) {
        msg_t *m = msg_new_copy(payload, LEN);
        uint64_t id;
        ck_assert_int_eq(broker_publish(p->c, "mem", 3, m, 0, now, &id), BR_OK);
    }
    struct mallinfo2 after = mallinfo2();
    size_t used = after.uordblks + after.hblkhd - before.uordblks - before.hblkhd;
    ck_assert_uint_eq(ts("mem").ready, N);
    double per = (double)used / (N - 1);
    fprintf(stderr, "memory: %.1f bytes per queued %d-byte message\n", per, LEN);
    ck_assert_msg(per < 160.0, "%.1f bytes per message", per);
}
END_TEST

/* ================= cluster placement ================= */

static const char *const two_nodes[] = {"10.0.0.1:7700", "10.0.0.2:7700"};

/* This broker is node 0 of two_nodes. */
static void cfg_cluster(void)
{
    tcfg.cfg.cluster.self = (char *)two_nodes[0];
    tcfg.cfg.cluster.nodes = (char **)two_nodes;
    tcfg.cfg.cluster.nnodes = 2;
    tcfg.cfg.cluster.self_index = 0;
}

/* The first name "<prefix>N" that node `node` owns. */
static const char *owned_by(size_t node, const char *prefix)
{
    static char names[4][32];
    static int k;
    char *n = names[k++ % 4];

    for (int i = 0;; i++) {
        int len = snprintf(n, 32, "%s%d", prefix, i);
        if (place_owner(two_nodes, 2, n, (size_t)len) == node)
            return n;
    }
}

START_TEST(test_cluster_moves_only_misses_of_placed_clients)
{
    cfg_cluster();
    start();
    const char *mine = owned_by(0, "m"), *theirs = owned_by(1, "t");
    fake_t *n = fake_placed(), *bs = fake();

    ck_assert(broker_moved(b, theirs, strlen(theirs)));
    ck_assert(!broker_moved(b, mine, strlen(mine)));
    /* Every command that names a topic, and nothing is created. */
    ck_assert_int_eq(pub(n, theirs, "x"), BR_MOVED);
    ck_assert_int_eq(broker_subscribe(n->c, theirs, strlen(theirs), -1), BR_MOVED);
    ck_assert_int_eq(broker_unsubscribe(n->c, theirs, strlen(theirs)), BR_MOVED);
    ck_assert_int_eq(get(n, theirs, 0), BR_MOVED);
    ck_assert_int_eq(join(n, theirs, 0), BR_MOVED);
    ck_assert(!has_topic(theirs));
    ck_assert_uint_eq(ss().topics, 0);
    ck_assert_uint_eq(ss().totals.published, 0);
    /* Its own topics as ever. */
    ck_assert_uint_eq(pub_ok(n, mine, "x"), 1);
    ck_assert_int_eq(broker_unsubscribe(n->c, mine, strlen(mine)), BR_OK);
    ck_assert_int_eq(join(n, owned_by(0, "e"), 0), BR_OK); /* unknown and ours: empty */
    /* A client that ignores placement (beanstalk) creates it; from then on
     * it exists here and everyone is served. */
    ck_assert_uint_eq(pub_ok(bs, theirs, "y"), 2);
    ck_assert(!broker_moved(b, theirs, strlen(theirs)));
    ck_assert_uint_eq(pub_ok(n, theirs, "z"), 3);
    ck_assert_str_eq(get_ok(n, theirs)->data, "y");
}
END_TEST

START_TEST(test_cluster_config_topics_only_on_their_owner)
{
    cfg_cluster();
    const char *mine = owned_by(0, "cm"), *theirs = owned_by(1, "ct");
    const char *dl = owned_by(1, "dl"); /* a dead-letter topic node 1 owns */
    cfg_topic(&tcfg, theirs);
    topic_conf_t *tc = cfg_topic(&tcfg, mine);
    tc->dead_letter = (char *)dl;
    tc->max_deliveries = 1;
    start();
    fake_t *n = fake_placed();

    ck_assert(has_topic(mine));
    ck_assert(!has_topic(theirs));
    ck_assert(has_topic(dl)); /* beside the topic it serves */
    ck_assert_uint_eq(ss().topics, 2);
    /* A message that dies moves to it, and it is served here. */
    pub_ok(n, mine, "job");
    get_ok(n, mine);
    ck_assert_int_eq(broker_nack(n->c, 1, 0, now), BR_OK);
    ck_assert_uint_eq(ts(dl).ready, 1);
    ck_assert_str_eq(get_ok(n, dl)->data, "job");
    /* Restored topics are this node's, whoever owns the name. */
    const char *r = owned_by(1, "r");
    ck_assert_int_eq(broker_restore(b, r, strlen(r), msg_new_copy("old", 3), 10, 1), BR_OK);
    ck_assert_str_eq(get_ok(n, r)->data, "old");
    /* A reload creates none of the other node's either. */
    broker_configure(b, &tcfg.cfg, now);
    ck_assert(!has_topic(theirs));
}
END_TEST

START_TEST(test_no_cluster_nothing_moves)
{
    start();
    fake_t *n = fake_placed();

    for (int i = 0; i < 50; i++) {
        char t[16];
        snprintf(t, sizeof t, "t%d", i);
        ck_assert(!broker_moved(b, t, strlen(t)));
        pub_ok(n, t, "x");
    }
}
END_TEST

static Suite *broker_suite(void)
{
    Suite *s = suite_create("broker");
    TCase *tc;

    tc = tcase_create("bounds");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_publish_ids_and_stats);
    tcase_add_test(tc, test_block_park_resume_fifo);
    tcase_add_test(tc, test_block_head_blocks_the_rest);
    tcase_add_test(tc, test_block_timeout);
    tcase_add_test(tc, test_block_waits_forever_without_timeout);
    tcase_add_test(tc, test_reject);
    tcase_add_test(tc, test_max_lag);
    tcase_add_test(tc, test_max_lag_policies);
    tcase_add_test(tc, test_drop_oldest);
    tcase_add_test(tc, test_drop_oldest_by_bytes);
    tcase_add_test(tc, test_drop_oldest_full);
    tcase_add_test(tc, test_never_fits);
    tcase_add_test(tc, test_max_memory_across_topics);
    tcase_add_test(tc, test_parked_topics_and_joins_in_order);
    tcase_add_test(tc, test_memory_returns_to_zero);
    suite_add_tcase(s, tc);

    tc = tcase_create("states");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_delayed_publish);
    tcase_add_test(tc, test_delayed_due_order_at_head);
    tcase_add_test(tc, test_ack);
    tcase_add_test(tc, test_nack_to_head);
    tcase_add_test(tc, test_nack_delay);
    tcase_add_test(tc, test_ack_deadline_redelivery);
    tcase_add_test(tc, test_dead);
    tcase_add_test(tc, test_dead_by_deadline_and_unlimited);
    tcase_add_test(tc, test_dead_lettered);
    tcase_add_test(tc, test_dead_letter_full);
    tcase_add_test(tc, test_dead_letter_drop_oldest);
    tcase_add_test(tc, test_attempt_counting);
    suite_add_tcase(s, tc);

    tc = tcase_create("consumers");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_credit_one);
    tcase_add_test(tc, test_credit_n_and_default);
    tcase_add_test(tc, test_credit_zero_and_resub);
    tcase_add_test(tc, test_unsub_keeps_ownership);
    tcase_add_test(tc, test_get_without_credit);
    tcase_add_test(tc, test_round_robin);
    tcase_add_test(tc, test_pause_resume);
    tcase_add_test(tc, test_get_immediate_and_timeout_zero);
    tcase_add_test(tc, test_get_wait);
    tcase_add_test(tc, test_get_wait_timeout);
    tcase_add_test(tc, test_get_wait_released_delayed);
    tcase_add_test(tc, test_join_immediate);
    tcase_add_test(tc, test_join_wait_forever);
    tcase_add_test(tc, test_join_timeout);
    tcase_add_test(tc, test_join_waits_for_dead_and_drop);
    tcase_add_test(tc, test_owns_and_ack);
    tcase_add_test(tc, test_touch);
    tcase_add_test(tc, test_disconnect_returns_in_order);
    tcase_add_test(tc, test_disconnect_dispatches_to_others);
    tcase_add_test(tc, test_disconnect_cancels_waits);
    tcase_add_test(tc, test_timers_across_topics);
    suite_add_tcase(s, tc);

    tc = tcase_create("config");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_reload_limits);
    tcase_add_test(tc, test_reload_ack_timeout_keeps_order);
    tcase_add_test(tc, test_confirm_ok_and_fail);
    tcase_add_test(tc, test_confirm_many_held);
    tcase_add_test(tc, test_confirm_producer_gone_and_delay);
    tcase_add_test(tc, test_confirm_after_park);
    tcase_add_test(tc, test_restore);
    tcase_add_test(tc, test_foreach_message);
    tcase_add_test(tc, test_max_topics);
    tcase_add_test(tc, test_auto_create_off);
    tcase_add_test(tc, test_stats_numbers);
    suite_add_tcase(s, tc);

    tc = tcase_create("cluster");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_cluster_moves_only_misses_of_placed_clients);
    tcase_add_test(tc, test_cluster_config_topics_only_on_their_owner);
    tcase_add_test(tc, test_no_cluster_nothing_moves);
    suite_add_tcase(s, tc);

    tc = tcase_create("random");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_loop_test(tc, test_random_operations, 0, 4);
    suite_add_tcase(s, tc);

    tc = tcase_create("memory");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_memory_per_message);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(broker_suite());
    int failed;

    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
