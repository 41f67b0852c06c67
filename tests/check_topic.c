/* check_topic.c: unit tests of one topic's structures: the ready FIFO and
 * splicing at its head, the delay heap's order, the in-flight list kept in
 * deadline order, and the held list.
 */
#include <check.h>
#include <stdlib.h>

#include "broker.h" /* topic_name */
#include "topic.h"

static topic_conf_t conf = {
    .max_messages = 100, .max_bytes = 1000, .overflow = OVERFLOW_BLOCK,
    .prefetch = 1, .ack_timeout_ms = 100, .max_deliveries = 5, .dead_letter = "",
};
static topic_t *t;

static void setup(void)
{
    t = topic_new("t1", 2, &conf);
    ck_assert_ptr_nonnull(t);
}

static void teardown(void)
{
    topic_free(t);
}

static msg_t *mk(uint64_t id, uint32_t len, uint64_t deadline)
{
    msg_t *m = msg_new(len);

    ck_assert_ptr_nonnull(m);
    m->id = id;
    m->deadline = deadline;
    return m;
}

START_TEST(test_new_name)
{
    size_t len;

    ck_assert_str_eq(topic_name(t, &len), "t1");
    ck_assert_uint_eq(len, 2);
    ck_assert_uint_eq(topic_next_due(t), UINT64_MAX);
    ck_assert_ptr_null(topic_ready_pop(t));
    ck_assert_ptr_null(topic_delay_pop(t));
}
END_TEST

START_TEST(test_ready_fifo_and_head)
{
    topic_ready_push_tail(t, mk(1, 10, 0));
    topic_ready_push_tail(t, mk(2, 20, 0));
    topic_ready_push_head(t, mk(3, 5, 0));
    ck_assert_uint_eq(t->ready.n, 3);
    ck_assert_uint_eq(t->ready_bytes, 35);
    uint64_t want[] = {3, 1, 2};
    for (int i = 0; i < 3; i++) {
        msg_t *m = topic_ready_pop(t);
        ck_assert_uint_eq(m->id, want[i]);
        ck_assert_int_eq(m->state, MSG_READY);
        msg_free(m);
    }
    ck_assert_uint_eq(t->ready_bytes, 0);
    ck_assert_uint_eq(t->ready.n, 0);
}
END_TEST

/* q holds exactly ids want[0..n-1], linked the same both ways. */
static void assert_queue(msgq_t *q, const uint64_t *want, size_t n)
{
    msg_t *m;
    size_t i = 0;

    ck_assert_uint_eq(q->n, n);
    TAILQ_FOREACH(m, &q->list, link) {
        ck_assert_uint_lt(i, n);
        ck_assert_uint_eq(m->id, want[i++]);
    }
    ck_assert_uint_eq(i, n);
    TAILQ_FOREACH_REVERSE(m, &q->list, msg_list, link)
        ck_assert_uint_eq(m->id, want[--i]);
    ck_assert_uint_eq(i, 0);
}

START_TEST(test_ready_splice_head)
{
    msgq_t chain;

    topic_q_init(&chain);
    topic_ready_push_tail(t, mk(10, 1, 0));
    topic_q_push_tail(&chain, mk(1, 2, 0));
    topic_q_push_tail(&chain, mk(2, 3, 0));
    topic_ready_splice_head(t, &chain);
    ck_assert(TAILQ_EMPTY(&chain.list));
    ck_assert_uint_eq(chain.n, 0);
    ck_assert_uint_eq(t->ready_bytes, 6);
    uint64_t want[] = {1, 2, 10};
    assert_queue(&t->ready, want, 3);
    for (int i = 0; i < 3; i++) {
        msg_t *m = topic_ready_pop(t);
        ck_assert_uint_eq(m->id, want[i]);
        msg_free(m);
    }
    /* Into an empty queue, and an empty chain is a no-op. */
    topic_ready_splice_head(t, &chain);
    topic_q_push_tail(&chain, mk(5, 1, 0));
    topic_ready_splice_head(t, &chain);
    ck_assert_ptr_eq(TAILQ_FIRST(&t->ready.list), TAILQ_LAST(&t->ready.list, msg_list));
    ck_assert_uint_eq(TAILQ_FIRST(&t->ready.list)->id, 5);
    /* The chain is reusable and the queue's tail right: both take more. */
    topic_q_push_tail(&chain, mk(6, 1, 0));
    topic_ready_push_tail(t, mk(7, 1, 0));
    topic_ready_splice_head(t, &chain);
    uint64_t after[] = {6, 5, 7};
    assert_queue(&t->ready, after, 3);
}
END_TEST

START_TEST(test_delay_heap_order)
{
    uint64_t due[] = {50, 10, 40, 10, 30, 20, 60, 5};
    uint64_t want_ids[] = {8, 2, 4, 6, 5, 3, 1, 7};

    for (int i = 0; i < 8; i++)
        ck_assert_int_eq(topic_delay_push(t, mk((uint64_t)i + 1, 1, due[i])), 0);
    ck_assert_uint_eq(t->ndelayed, 8);
    ck_assert_uint_eq(topic_next_due(t), 5);
    for (int i = 0; i < 8; i++) {
        msg_t *m = topic_delay_pop(t);
        ck_assert_int_eq(m->state, MSG_DELAYED);
        /* equal due times come out in id order */
        ck_assert_uint_eq(m->id, want_ids[i]);
        msg_free(m);
    }
    ck_assert_uint_eq(topic_next_due(t), UINT64_MAX);
}
END_TEST

START_TEST(test_delay_heap_many)
{
    unsigned seed = 7;
    uint64_t last = 0;

    for (uint64_t i = 1; i <= 1000; i++)
        ck_assert_int_eq(topic_delay_push(t, mk(i, 1, (uint64_t)rand_r(&seed) % 500)), 0);
    for (int i = 0; i < 1000; i++) {
        msg_t *m = topic_delay_pop(t);
        ck_assert_uint_ge(m->deadline, last);
        last = m->deadline;
        msg_free(m);
    }
}
END_TEST

START_TEST(test_inflight_ordered)
{
    msg_t *a = mk(1, 1, 100), *b = mk(2, 1, 200), *c = mk(3, 1, 150), *d = mk(4, 1, 50);

    topic_inflight_add(t, a);
    topic_inflight_add(t, b);
    topic_inflight_add(t, c); /* a shortened ack timeout: goes between */
    topic_inflight_add(t, d); /* earliest: goes to the head */
    uint64_t order[] = {4, 1, 3, 2};
    assert_queue(&t->inflight, order, 4);
    ck_assert_uint_eq(topic_next_due(t), 50);
    /* TOUCH-like move to the tail */
    topic_inflight_remove(t, d);
    d->deadline = 300;
    topic_inflight_add(t, d);
    uint64_t touched[] = {1, 3, 2, 4};
    assert_queue(&t->inflight, touched, 4);
    ck_assert_uint_eq(topic_next_due(t), 100);
    /* next due is the earlier of in flight and delayed */
    ck_assert_int_eq(topic_delay_push(t, mk(9, 1, 70)), 0);
    ck_assert_uint_eq(topic_next_due(t), 70);
}
END_TEST

START_TEST(test_held_and_stats)
{
    topic_stats_t ts;
    msg_t *h = mk(1, 7, 0);

    topic_held_add(t, h);
    ck_assert_int_eq(h->state, MSG_HELD);
    topic_ready_push_tail(t, mk(2, 3, 0));
    t->count = 2;
    t->bytes = 10;
    topic_fill_stats(t, 0, &ts);
    ck_assert_str_eq(ts.name, "t1");
    ck_assert_uint_eq(ts.ready, 1);
    ck_assert_uint_eq(ts.delayed, 0);
    ck_assert_uint_eq(ts.in_flight, 0);
    ck_assert_uint_eq(ts.bytes, 10);
    ck_assert_uint_eq(ts.max_messages, 100);
    ck_assert_uint_eq(ts.max_bytes, 1000);
    topic_held_remove(t, h);
    ck_assert_uint_eq(t->held.n, 0);
    msg_free(h);
}
END_TEST

START_TEST(test_msg_alloc)
{
    msg_t *m = msg_new_copy("a\0b", 3);

    ck_assert_ptr_nonnull(m);
    ck_assert_uint_eq(m->len, 3);
    ck_assert_mem_eq(m->data, "a\0b", 3);
    ck_assert_uint_eq(m->id, 0);
    ck_assert_uint_eq(m->attempt, 0);
    ck_assert_int_eq(m->state, MSG_NEW);
    ck_assert_ptr_null(TAILQ_NEXT(m, link));
    msg_free(m);
    msg_free(NULL);
    m = msg_new_copy(NULL, 0);
    ck_assert_ptr_nonnull(m);
    msg_free(m);
}
END_TEST

/* A lent message outlives its msg_free until msg_unpin, and is lent to one
 * buffer at a time. (ASan and valgrind runs see a missing or double free.) */
START_TEST(test_msg_pin)
{
    msg_t *m = msg_new_copy("lent", 4);

    ck_assert(msg_pin(m));
    ck_assert(!msg_pin(m));
    msg_unpin(m); /* not freed: no msg_free came */
    ck_assert(msg_pin(m));
    msg_free(m);
    ck_assert_mem_eq(m->data, "lent", 4);
    ck_assert(!msg_pin(m)); /* still lent, whatever was freed */
    msg_unpin(m);           /* frees it */

    m = msg_new(8192);
    ck_assert(msg_pin(m));
    msg_free(m);
    msg_unpin(m);
    msg_cache_release();
}
END_TEST

static Suite *topic_suite(void)
{
    Suite *s = suite_create("topic");
    TCase *tc = tcase_create("core");

    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_new_name);
    tcase_add_test(tc, test_ready_fifo_and_head);
    tcase_add_test(tc, test_ready_splice_head);
    tcase_add_test(tc, test_delay_heap_order);
    tcase_add_test(tc, test_delay_heap_many);
    tcase_add_test(tc, test_inflight_ordered);
    tcase_add_test(tc, test_held_and_stats);
    tcase_add_test(tc, test_msg_alloc);
    tcase_add_test(tc, test_msg_pin);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(topic_suite());
    int failed;

    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
