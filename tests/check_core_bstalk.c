/* check_core_bstalk.c: tests of what the core does for beanstalk (and the
 * native BURY/KICK/PAUSE/pri=): priorities, per-message TTR, reserve over
 * several topics with DEADLINE_SOON, work by id, release, bury and kick,
 * pause, peeks, stats-job, and the restore of those states. Driven through
 * broker.h with ck_core.h's fake clients and clock.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ck_core.h"

/* A job as the beanstalk listener makes one. */
static msg_t *job(const char *data, uint32_t pri, uint64_t ttr_ms)
{
    msg_t *m = msg_new_job((uint32_t)strlen(data), pri, ttr_ms, 0, now);

    ck_assert_ptr_nonnull(m);
    memcpy(m->data, data, m->len);
    return m;
}

static uint64_t put(fake_t *f, const char *topic, const char *data, uint32_t pri,
                    uint64_t delay)
{
    uint64_t id = 0;
    msg_t *m = job(data, pri, 0);

    msg_ext(m)->delay_ms = delay;
    ck_assert_int_eq(broker_publish(f->c, topic, strlen(topic), m, delay, now, &id), BR_OK);
    return id;
}

static br_status_t reserve(fake_t *f, const char *const *names, size_t n, int64_t timeout)
{
    size_t lens[8];
    br_reserve_t r = {names, lens, n, timeout, 1000};

    for (size_t i = 0; i < n; i++)
        lens[i] = strlen(names[i]);
    return broker_reserve(f->c, &r, now);
}

static br_status_t reserve1(fake_t *f, const char *topic, int64_t timeout)
{
    const char *names[] = {topic};

    return reserve(f, names, 1, timeout);
}

/* Reserve from one topic, which must answer at once; the job's id. */
static uint64_t reserve_ok(fake_t *f, const char *topic)
{
    ck_assert_int_eq(reserve1(f, topic, 0), BR_OK);
    return last_dl(f)->id;
}

static void tick(uint64_t to)
{
    now = to;
    broker_tick(b, now);
}

static br_job_info_t info(uint64_t id)
{
    br_job_info_t j;

    ck_assert_msg(broker_job_info(b, id, now, &j), "no job %llu", (unsigned long long)id);
    return j;
}

/* ================= priorities ================= */

START_TEST(test_priority_order)
{
    start();
    fake_t *p = fake(), *c = fake();
    uint64_t a = put(p, "t", "a", 5, 0), bb = put(p, "t", "b", 1, 0);
    uint64_t plain = pub_ok(p, "t", "plain");
    uint64_t d = put(p, "t", "d", 5, 0), e = put(p, "t", "e", 0, 0);
    uint64_t low = put(p, "t", "low", 4000, 0);

    ck_assert_uint_eq(ts("t").urgent, 4);
    uint64_t want[] = {e, bb, a, d, plain, low};
    for (size_t i = 0; i < 6; i++)
        ck_assert_uint_eq(get_ok(c, "t")->id, want[i]);
    ck_assert_uint_eq(ts("t").urgent, 0);
    ck_assert_ptr_null(broker_peek_ready(b, "t", 1));
}
END_TEST

START_TEST(test_return_order)
{
    start();
    fake_t *p = fake(), *c = fake();
    /* Jobs come back in (priority, id) order; plain messages to the head. */
    uint64_t j1 = put(p, "t", "1", 10, 0), j2 = put(p, "t", "2", 10, 0);
    put(p, "t", "3", 10, 0);
    ck_assert_uint_eq(reserve_ok(c, "t"), j1);
    ck_assert_uint_eq(reserve_ok(c, "t"), j2);
    ck_assert_int_eq(broker_release(c->c, j2, 10, 0, now), BR_OK);
    ck_assert_int_eq(broker_release(c->c, j1, 10, 0, now), BR_OK);
    ck_assert_uint_eq(broker_peek_ready(b, "t", 1)->id, j1);
    ck_assert_uint_eq(info(j1).releases, 1);

    uint64_t m1 = pub_ok(p, "n", "x"), m2 = pub_ok(p, "n", "y");
    ck_assert_uint_eq(get_ok(c, "n")->id, m1);
    ck_assert_uint_eq(get_ok(c, "n")->id, m2);
    ck_assert_int_eq(broker_nack(c->c, m1, 0, now), BR_OK);
    ck_assert_int_eq(broker_nack(c->c, m2, 0, now), BR_OK);
    ck_assert_uint_eq(broker_peek_ready(b, "n", 1)->id, m2); /* the native rule */
}
END_TEST

START_TEST(test_release_priority_and_delay)
{
    start();
    fake_t *p = fake(), *c = fake();
    uint64_t j = put(p, "t", "j", 100, 0), k = put(p, "t", "k", 100, 0);

    ck_assert_uint_eq(reserve_ok(c, "t"), j);
    noev = 0;
    ck_assert_int_eq(broker_release(c->c, j, 7, 5000, now), BR_OK);
    ck_assert_int_eq(oevs[0].kind, 'C');
    br_job_info_t i = info(j);
    ck_assert_int_eq(i.state, MSG_DELAYED);
    ck_assert_uint_eq(i.pri, 7);
    ck_assert_uint_eq(i.delay_ms, 5000);
    ck_assert_uint_eq(i.left_ms, 5000);
    ck_assert_uint_eq(ts("t").delayed, 1);
    ck_assert_uint_eq(broker_peek_delayed(b, "t", 1)->id, j);
    ck_assert_int_eq(broker_release(c->c, j, 7, 0, now), BR_NOTFOUND); /* not reserved */
    tick(now + 5000);
    ck_assert_uint_eq(broker_peek_ready(b, "t", 1)->id, j); /* pri 7 before k's 100 */
    ck_assert_uint_eq(reserve_ok(c, "t"), j);
    ck_assert_uint_eq(reserve_ok(c, "t"), k);
}
END_TEST

/* ================= TTR and DEADLINE_SOON ================= */

START_TEST(test_ttr_overrides_ack_timeout)
{
    start();
    fake_t *p = fake(), *c = fake();
    uint64_t id = 0;

    ck_assert_int_eq(broker_publish(p->c, "t", 1, job("j", 1, 2000), 0, now, &id), BR_OK);
    ck_assert_uint_eq(reserve_ok(c, "t"), id);
    ck_assert_uint_eq(info(id).ttr_ms, 2000);
    ck_assert_uint_eq(info(id).left_ms, 2000);
    ck_assert_int_eq(info(id).state, MSG_INFLIGHT);
    tick(now + 1999);
    ck_assert_uint_eq(ts("t").in_flight, 1);
    tick(now + 1);
    ck_assert_uint_eq(ts("t").ready, 1);
    ck_assert_uint_eq(ts("t").totals.timeouts, 1);
    ck_assert_uint_eq(info(id).timeouts, 1);
    ck_assert_uint_eq(info(id).reserves, 1);
    /* touch restarts the job's own TTR, not the topic's */
    ck_assert_uint_eq(reserve_ok(c, "t"), id);
    tick(now + 1500);
    ck_assert_int_eq(broker_touch(c->c, id, now), BR_OK);
    ck_assert_uint_eq(info(id).left_ms, 2000);
}
END_TEST

/* What the mirror must hear of beyond deliveries and removals. */
START_TEST(test_changes_observed)
{
    start();
    fake_t *p = fake(), *c = fake();
    uint64_t id = 0, plain = pub_ok(p, "t", "p");

    ck_assert_uint_eq(get_ok(c, "t")->id, plain);
    noev = 0;
    ck_assert_int_eq(broker_nack(c->c, plain, 5000, now), BR_OK); /* a delay: kept */
    ck_assert_uint_eq(noev, 1);
    ck_assert_int_eq(oevs[0].kind, 'C');
    ck_assert_int_eq(broker_publish(p->c, "t", 1, job("j", 1, 1000), 0, now, &id), BR_OK);
    ck_assert_uint_eq(reserve_ok(c, "t"), id);
    noev = 0;
    tick(now + 1000); /* its TTR runs out: its timeouts count changed */
    ck_assert_uint_eq(noev, 1);
    ck_assert_int_eq(oevs[0].kind, 'C');
    ck_assert_uint_eq(oevs[0].id, id);
    get_ok(c, "t");
    noev = 0;
    ck_assert_int_eq(broker_nack(c->c, id, 0, now), BR_OK); /* a job's releases count */
    ck_assert_int_eq(oevs[0].kind, 'C');
}
END_TEST

START_TEST(test_deadline_soon)
{
    start();
    fake_t *p = fake(), *c = fake();
    uint64_t id = 0;

    ck_assert_int_eq(broker_publish(p->c, "t", 1, job("j", 1, 3000), 0, now, &id), BR_OK);
    ck_assert_uint_eq(reserve_ok(c, "t"), id);
    /* 3 s left: it waits, and is told 1 s before the deadline */
    ck_assert_int_eq(reserve1(c, "t", -1), BR_PENDING);
    ck_assert_uint_eq(ts("t").waiting, 1);
    tick(now + 1999);
    ck_assert_uint_eq(c->ndone, 0);
    tick(now + 1);
    assert_done(c, 0, BR_OP_RESERVE, BR_DEADLINE_SOON, 0);
    ck_assert_uint_eq(ts("t").waiting, 0);
    /* inside the margin, nothing ready: at once */
    ck_assert_int_eq(reserve1(c, "t", -1), BR_DEADLINE_SOON);
    /* something ready wins over the margin */
    uint64_t other = put(p, "t", "o", 1, 0);
    ck_assert_uint_eq(reserve_ok(c, "t"), other);
}
END_TEST

START_TEST(test_deadline_soon_after_the_earliest_went)
{
    start();
    fake_t *p = fake(), *c = fake();
    uint64_t a = 0, bb = 0;

    ck_assert_int_eq(broker_publish(p->c, "t", 1, job("a", 1, 3000), 0, now, &a), BR_OK);
    ck_assert_int_eq(broker_publish(p->c, "t", 1, job("b", 1, 10000), 0, now, &bb), BR_OK);
    ck_assert_uint_eq(reserve_ok(c, "t"), a);
    ck_assert_uint_eq(reserve_ok(c, "t"), bb);
    ck_assert_int_eq(broker_delete(c->c, a, now), BR_OK);
    /* the earliest deadline left is b's: told 1 s before it, not before a's */
    ck_assert_int_eq(reserve1(c, "t", 20000), BR_PENDING);
    tick(now + 2000);
    ck_assert_uint_eq(c->ndone, 0);
    tick(now + 6999);
    ck_assert_uint_eq(c->ndone, 0);
    tick(now + 1);
    assert_done(c, 0, BR_OP_RESERVE, BR_DEADLINE_SOON, 0);
}
END_TEST

START_TEST(test_reserve_timeouts)
{
    start();
    fake_t *c = fake(), *p = fake();

    ck_assert_int_eq(reserve1(c, "t", 0), BR_TIMEOUT);
    ck_assert_int_eq(reserve1(c, "t", 2000), BR_PENDING);
    tick(now + 2000);
    assert_done(c, 0, BR_OP_RESERVE, BR_TIMEOUT, 0);
    /* a waiting reserve gets a put at once */
    ck_assert_int_eq(reserve1(c, "t", 2000), BR_PENDING);
    uint64_t id = put(p, "t", "x", 1, 0);
    disp();
    assert_done(c, 1, BR_OP_RESERVE, BR_OK, id);
    ck_assert_uint_eq(last_dl(c)->id, id);
    tick(now + 5000); /* its timer is gone: no second completion */
    ck_assert_uint_eq(c->ndone, 2);
}
END_TEST

/* ================= several topics ================= */

START_TEST(test_reserve_several_topics)
{
    start();
    fake_t *p = fake(), *c = fake(), *c2 = fake();
    const char *w[] = {"a", "b", "c"};

    uint64_t a = put(p, "a", "a", 50, 0), bb = put(p, "b", "b", 10, 0);
    put(p, "c", "c", 10, 0);
    /* most urgent head: b's (10, lower id than c's) */
    ck_assert_int_eq(reserve(c, w, 3, 0), BR_OK);
    ck_assert_uint_eq(last_dl(c)->id, bb);
    ck_assert_str_eq(last_dl(c)->topic, "b");
    /* a paused topic is passed over */
    ck_assert_int_eq(broker_pause(b, "c", 1, 10000, now), BR_OK);
    ck_assert_int_eq(reserve(c, w, 3, 0), BR_OK);
    ck_assert_uint_eq(last_dl(c)->id, a);
    ck_assert_int_eq(reserve(c, w, 3, 0), BR_TIMEOUT);
    /* waiting in all three: the first put anywhere ends it, once */
    ck_assert_int_eq(reserve(c, w, 2, -1), BR_PENDING);
    ck_assert_int_eq(reserve(c2, w + 1, 1, -1), BR_PENDING);
    ck_assert_uint_eq(ts("a").waiting, 1);
    ck_assert_uint_eq(ts("b").waiting, 2);
    uint64_t x = put(p, "b", "x", 1, 0);
    disp();
    assert_done(c, 0, BR_OP_RESERVE, BR_OK, x);
    ck_assert_uint_eq(c2->ndone, 0); /* FIFO: c waited first */
    ck_assert_uint_eq(ts("a").waiting, 0);
    ck_assert_uint_eq(ts("b").waiting, 1);
    uint64_t y = put(p, "b", "y", 1, 0);
    disp();
    assert_done(c2, 0, BR_OP_RESERVE, BR_OK, y);
    /* the pause ends by itself */
    tick(now + 10000);
    ck_assert_int_eq(reserve(c, w, 3, 0), BR_OK);
    ck_assert_str_eq(last_dl(c)->topic, "c");
}
END_TEST

START_TEST(test_gone_while_reserving)
{
    start();
    fake_t *p = fake(), *c = fake(), *w = fake();
    const char *names[] = {"a", "b"};

    uint64_t j1 = put(p, "a", "1", 5, 0), j2 = put(p, "a", "2", 5, 0);
    ck_assert_uint_eq(reserve_ok(c, "a"), j1);
    ck_assert_uint_eq(reserve_ok(c, "a"), j2);
    ck_assert_int_eq(reserve(c, names, 2, 60000), BR_PENDING);
    fake_gone(c);
    ck_assert_uint_eq(ts("a").waiting, 0);
    ck_assert_uint_eq(ts("b").waiting, 0);
    /* its jobs are back in id order */
    ck_assert_uint_eq(reserve_ok(w, "a"), j1);
    ck_assert_uint_eq(reserve_ok(w, "a"), j2);
    tick(now + 60000); /* the dead wait's timer is gone */
}
END_TEST

/* ================= bury, kick, by id ================= */

START_TEST(test_bury_and_kick)
{
    start();
    fake_t *p = fake(), *c = fake();
    uint64_t j1 = put(p, "t", "1", 5, 0), j2 = put(p, "t", "2", 5, 0);
    uint64_t d1 = put(p, "t", "d1", 5, 9000), d2 = put(p, "t", "d2", 5, 3000);
    uint64_t kicked = 99;

    ck_assert_uint_eq(reserve_ok(c, "t"), j1);
    ck_assert_uint_eq(reserve_ok(c, "t"), j2);
    noev = 0;
    ck_assert_int_eq(broker_bury(c->c, j2, 3, now), BR_OK);
    ck_assert_int_eq(broker_bury(c->c, j1, 8, now), BR_OK);
    ck_assert_int_eq(oevs[0].kind, 'C');
    ck_assert_int_eq(broker_bury(c->c, j1, 8, now), BR_NOTFOUND);
    ck_assert_uint_eq(ts("t").buried, 2);
    ck_assert_uint_eq(ts("t").totals.buries, 2);
    ck_assert_uint_eq(broker_peek_buried(b, "t", 1)->id, j2);
    ck_assert_int_eq(info(j1).state, MSG_BURIED);
    ck_assert_uint_eq(info(j1).pri, 8);
    ck_assert_uint_eq(info(j1).buries, 1);
    /* buried first, oldest burial first */
    ck_assert_int_eq(broker_kick(b, "t", 1, 1, now, &kicked), BR_OK);
    ck_assert_uint_eq(kicked, 1);
    ck_assert_int_eq(info(j2).state, MSG_READY);
    ck_assert_uint_eq(info(j2).kicks, 1);
    ck_assert_int_eq(broker_kick(b, "t", 1, 10, now, &kicked), BR_OK);
    ck_assert_uint_eq(kicked, 1);
    ck_assert_uint_eq(ts("t").buried, 0);
    /* then delayed ones, soonest first */
    ck_assert_int_eq(broker_kick(b, "t", 1, 1, now, &kicked), BR_OK);
    ck_assert_uint_eq(kicked, 1);
    ck_assert_int_eq(info(d2).state, MSG_READY);
    ck_assert_int_eq(info(d1).state, MSG_DELAYED);
    ck_assert_int_eq(broker_kick_id(b, d1, now), BR_OK);
    ck_assert_int_eq(broker_kick_id(b, d1, now), BR_NOTFOUND);
    ck_assert_int_eq(broker_kick(b, "t", 1, 1, now, &kicked), BR_OK);
    ck_assert_uint_eq(kicked, 0);
    ck_assert_int_eq(broker_kick(b, "none", 4, 1, now, &kicked), BR_NOTOPIC);
    ck_assert_uint_eq(ts("t").totals.kicks, 4);
    /* ready now in (priority, id) order: j2 (3), d1, d2 (5), j1 (8) */
    uint64_t want[] = {j2, d1, d2, j1};
    for (size_t i = 0; i < 4; i++)
        ck_assert_uint_eq(reserve_ok(c, "t"), want[i]);
    tick(now + 20000); /* nothing left in the heap fires twice */
}
END_TEST

START_TEST(test_by_id_any_state)
{
    start();
    fake_t *p = fake(), *c = fake(), *o = fake();
    uint64_t plain = pub_ok(p, "t", "plain");
    uint64_t ready = put(p, "t", "r", 5, 0), delayed = put(p, "t", "d", 5, 5000);
    uint64_t other = put(p, "t", "h", 5, 0);

    ck_assert_uint_eq(broker_peek_id(b, plain)->id, plain); /* found by the walk */
    ck_assert_uint_eq(broker_peek_id(b, delayed)->id, delayed);
    ck_assert_ptr_null(broker_peek_id(b, 999));
    ck_assert_ptr_null(broker_peek_id(b, 0));
    /* reserve-job takes a ready, delayed or buried job */
    ck_assert_int_eq(broker_reserve_id(c->c, delayed, now), BR_OK);
    ck_assert_uint_eq(last_dl(c)->id, delayed);
    ck_assert_uint_eq(ts("t").delayed, 0);
    ck_assert_int_eq(broker_reserve_id(o->c, delayed, now), BR_NOTFOUND); /* c has it */
    ck_assert_int_eq(broker_bury(c->c, delayed, 1, now), BR_OK);
    ck_assert_int_eq(broker_reserve_id(o->c, delayed, now), BR_OK);
    ck_assert_int_eq(broker_reserve_id(o->c, other, now), BR_OK);
    /* delete: any waiting job, or one of one's own */
    ck_assert_int_eq(broker_delete(c->c, other, now), BR_NOTFOUND);
    ck_assert_int_eq(broker_delete(o->c, other, now), BR_OK);
    ck_assert_int_eq(broker_delete(c->c, plain, now), BR_OK);
    ck_assert_int_eq(broker_delete(c->c, ready, now), BR_OK);
    ck_assert_int_eq(broker_delete(c->c, ready, now), BR_NOTFOUND);
    ck_assert_uint_eq(ts("t").totals.acked, 3);
    ck_assert_uint_eq(ss().messages, 1);
    ck_assert_int_eq(broker_delete(o->c, delayed, now), BR_OK);
    ck_assert_uint_eq(ss().messages, 0);
    ck_assert_uint_eq(ss().bytes, 0);
}
END_TEST

START_TEST(test_delete_delayed_keeps_heap)
{
    start();
    fake_t *p = fake(), *c = fake();
    uint64_t ids[64], dues[64];
    bool gone[64] = {false};

    srand(7);
    for (int i = 0; i < 64; i++) {
        dues[i] = 1 + (uint64_t)(rand() % 5000);
        ids[i] = put(p, "t", "x", 1, dues[i]);
    }
    for (int i = 0; i < 64; i += 3) {
        ck_assert_int_eq(broker_delete(c->c, ids[i], now), BR_OK);
        gone[i] = true;
    }
    /* what is left comes out in due order */
    uint64_t start_ms = now, last = 0;
    size_t n = 0;
    sub(c, "t", 100);
    for (uint64_t t = 1; t <= 5000; t++) {
        tick(start_ms + t);
        while (n < c->ndeliv) {
            const ev_t *e = dl(c, n++);
            int k = 0;
            while (ids[k] != e->id)
                k++;
            ck_assert(!gone[k]);
            ck_assert_uint_ge(dues[k], last);
            last = dues[k];
        }
    }
    ck_assert_uint_eq(n, 64 - 22);
}
END_TEST

/* ================= pause ================= */

START_TEST(test_pause)
{
    start();
    fake_t *p = fake(), *c = fake(), *s = fake();

    ck_assert_int_eq(broker_pause(b, "t", 1, 1000, now), BR_NOTOPIC);
    uint64_t id = put(p, "t", "x", 1, 0);
    ck_assert_int_eq(broker_pause(b, "t", 1, 4000, now), BR_OK);
    ck_assert_uint_eq(ts("t").pause_ms, 4000);
    ck_assert_uint_eq(ts("t").paused, 1);
    ck_assert_uint_eq(ts("t").totals.pauses, 1);
    topic_stats_t st;
    ck_assert(broker_topic_stats(b, "t", 1, now + 1500, &st));
    ck_assert_uint_eq(st.pause_left_ms, 2500);
    /* nothing leaves a paused topic: GET waits, SUB gets no push */
    ck_assert_int_eq(get(c, "t", 10000), BR_PENDING);
    sub(s, "t", 10);
    put(p, "t", "y", 1, 0);
    disp();
    ck_assert_uint_eq(c->ndeliv + s->ndeliv, 0);
    ck_assert_uint_eq(broker_peek_ready(b, "t", 1)->id, id); /* peeks still see it */
    tick(now + 4000);
    ck_assert_uint_eq(c->ndeliv, 1);
    ck_assert_uint_eq(s->ndeliv, 1);
    ck_assert_uint_eq(ts("t").pause_ms, 0);
    /* a pause of 0 ends one at once */
    ck_assert_int_eq(broker_pause(b, "t", 1, 60000, now), BR_OK);
    put(p, "t", "z", 1, 0);
    disp();
    ck_assert_uint_eq(s->ndeliv, 1);
    ck_assert_int_eq(broker_pause(b, "t", 1, 0, now), BR_OK);
    disp();
    ck_assert_uint_eq(s->ndeliv, 2);
}
END_TEST

/* ================= stats-job, restore, resync ================= */

START_TEST(test_job_info)
{
    start();
    fake_t *p = fake(), *c = fake();
    uint64_t id = 0;
    msg_t *m = job("abc", 77, 9000);

    msg_ext(m)->delay_ms = 2000;
    ck_assert_int_eq(broker_publish(p->c, "tt", 2, m, 2000, now, &id), BR_OK);
    now += 500;
    br_job_info_t i = info(id);
    ck_assert_int_eq(i.state, MSG_DELAYED);
    ck_assert_uint_eq(i.pri, 77);
    ck_assert_uint_eq(i.age_ms, 500);
    ck_assert_uint_eq(i.delay_ms, 2000);
    ck_assert_uint_eq(i.ttr_ms, 9000);
    ck_assert_uint_eq(i.left_ms, 1500);
    ck_assert_str_eq(topic_name(i.topic, NULL), "tt");
    /* a plain message: priority 1024, the topic's ack timeout, no age */
    uint64_t plain = pub_ok(p, "tt", "p");
    ck_assert_uint_eq(get_ok(c, "tt")->id, plain);
    i = info(plain);
    ck_assert_int_eq(i.state, MSG_INFLIGHT);
    ck_assert_uint_eq(i.pri, MSG_PRI_DEFAULT);
    ck_assert_uint_eq(i.ttr_ms, 30000);
    ck_assert_uint_eq(i.age_ms, 0);
    ck_assert_uint_eq(i.reserves, 1);
    /* a plain message keeps 1024 through release and bury */
    ck_assert_int_eq(broker_bury(c->c, plain, 1, now), BR_OK);
    ck_assert_uint_eq(info(plain).pri, MSG_PRI_DEFAULT);
    ck_assert_uint_eq(ts("tt").urgent, 0);
}
END_TEST

START_TEST(test_restore_states)
{
    start();
    msg_t *r1 = job("r1", 9, 0), *r2 = job("r2", 2, 0), *bu = job("b", 5, 0);
    msg_t *d = job("d", 5, 4000), *late = job("l", 5, 0);

    ck_assert_int_eq(broker_restore_as(b, "t", 1, r1, 10, 1, MSG_READY, 0), BR_OK);
    ck_assert_int_eq(broker_restore_as(b, "t", 1, r2, 11, 0, MSG_READY, 0), BR_OK);
    ck_assert_int_eq(broker_restore_as(b, "t", 1, bu, 12, 2, MSG_BURIED, 0), BR_OK);
    ck_assert_int_eq(broker_restore_as(b, "t", 1, d, 13, 0, MSG_DELAYED, now + 3000), BR_OK);
    ck_assert_int_eq(broker_restore_as(b, "t", 1, late, 14, 0, MSG_DELAYED, now - 10), BR_OK);
    ck_assert_uint_eq(broker_next_id(b), 15);
    ck_assert_uint_eq(ts("t").buried, 1);
    ck_assert_uint_eq(ts("t").delayed, 2);
    ck_assert_uint_eq(broker_peek_ready(b, "t", 1)->id, 11); /* priority order */
    ck_assert_uint_eq(info(13).ttr_ms, 4000);
    tick(now);
    ck_assert_uint_eq(ts("t").delayed, 1); /* the late one is ready at the first tick */
    tick(now + 3000);
    ck_assert_uint_eq(ts("t").ready, 4);
    ck_assert_uint_eq(ss().messages, 5);
}
END_TEST

static size_t nvisited, nvisited_buried;

static void visit(void *ctx, const topic_t *t, const msg_t *m)
{
    (void)ctx;
    (void)t;
    nvisited++;
    nvisited_buried += m->state == MSG_BURIED;
}

START_TEST(test_foreach_sees_buried)
{
    start();
    fake_t *p = fake(), *c = fake();

    put(p, "t", "a", 1, 0);
    uint64_t id = put(p, "t", "b", 1, 0);
    ck_assert_uint_eq(reserve_ok(c, "t"), 1);
    ck_assert_int_eq(broker_bury(c->c, 1, 1, now), BR_OK);
    (void)id;
    broker_foreach_message(b, visit, NULL);
    ck_assert_uint_eq(nvisited, 2);
    ck_assert_uint_eq(nvisited_buried, 1);
}
END_TEST

static Suite *bstalk_suite(void)
{
    Suite *s = suite_create("core_bstalk");
    TCase *tc = tcase_create("bstalk");

    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_priority_order);
    tcase_add_test(tc, test_return_order);
    tcase_add_test(tc, test_release_priority_and_delay);
    tcase_add_test(tc, test_ttr_overrides_ack_timeout);
    tcase_add_test(tc, test_changes_observed);
    tcase_add_test(tc, test_deadline_soon);
    tcase_add_test(tc, test_deadline_soon_after_the_earliest_went);
    tcase_add_test(tc, test_reserve_timeouts);
    tcase_add_test(tc, test_reserve_several_topics);
    tcase_add_test(tc, test_gone_while_reserving);
    tcase_add_test(tc, test_bury_and_kick);
    tcase_add_test(tc, test_by_id_any_state);
    tcase_add_test(tc, test_delete_delayed_keeps_heap);
    tcase_add_test(tc, test_pause);
    tcase_add_test(tc, test_job_info);
    tcase_add_test(tc, test_restore_states);
    tcase_add_test(tc, test_foreach_sees_buried);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(bstalk_suite());
    int failed;

    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
