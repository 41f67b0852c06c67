/* check_net_deliver.c: end-to-end tests of delivery: SUB credit and
 * round-robin, GET long polls, ACK all-or-nothing, NACK, TOUCH, ack
 * deadlines, redelivery on disconnect, dead letters, delayed PUBs, JOIN.
 */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check_net.h"

/* Credit 2 with 5 ready: exactly 2 pushes until an ACK frees credit. */
START_TEST(test_sub_credit)
{
    sd_t d;
    net_start(&d, "");
    tc_t *c = net_open(&d);

    for (int i = 0; i < 5; i++)
        ck_assert_uint_eq(NET_PUB(c, "t", "m"), (uint64_t)i + 1);
    net_puts(c, "SUB t 2\r\n");
    /* "+OK" comes before the pushes it triggers. */
    NET_EXPECT_RAW(c, "+OK\r\nMSG t 1 1 1\r\nm\r\nMSG t 2 1 1\r\nm\r\n");
    net_ping(c);
    net_puts(c, "ACK 1\r\n");
    NET_EXPECT(c, "+OK 1");
    NET_EXPECT(c, "MSG t 3 1 1");
    net_ping(c);
    net_puts(c, "ACK 2 3\r\n");
    NET_EXPECT(c, "+OK 2");
    NET_EXPECT(c, "MSG t 4 1 1");
    NET_EXPECT(c, "MSG t 5 1 1");
    net_ping(c);
    ck_assert_uint_eq(net_stat(c, "t", "in_flight"), 2);
    ck_assert_uint_eq(net_stat(c, "t", "ready"), 0);

    /* SUB again changes the credit: 0 stops pushes, in-flight stays owned. */
    net_puts(c, "SUB t 0\r\n");
    NET_EXPECT(c, "+OK");
    NET_PUB(c, "t", "n");
    net_puts(c, "ACK 4 5\r\n");
    NET_EXPECT(c, "+OK 2");
    net_ping(c);
    net_puts(c, "SUB t 3\r\n");
    NET_EXPECT(c, "+OK");
    NET_EXPECT_MSG(c, "t", 1, "n");
    net_ping(c);
    tc_close(c);
    net_stop(&d);
}
END_TEST

/* The default credit is the topic's prefetch. */
START_TEST(test_sub_default_credit_is_prefetch)
{
    sd_t d;
    net_start(&d, "topics:\n  p:\n    prefetch: 3\n");
    tc_t *c = net_open(&d);

    for (int i = 0; i < 5; i++)
        NET_PUB(c, "p", "x");
    net_puts(c, "SUB p\r\n");
    NET_EXPECT(c, "+OK");
    NET_EXPECT(c, "MSG p 1 1 1");
    NET_EXPECT(c, "MSG p 2 1 1");
    NET_EXPECT(c, "MSG p 3 1 1");
    net_ping(c);
    tc_close(c);
    net_stop(&d);
}
END_TEST

START_TEST(test_unsub_keeps_ownership)
{
    sd_t d;
    net_start(&d, "");
    tc_t *c = net_open(&d);

    NET_PUB(c, "t", "a");
    net_puts(c, "SUB t 5\r\n");
    NET_EXPECT(c, "+OK");
    NET_EXPECT(c, "MSG t 1 1 1");
    net_puts(c, "UNSUB t\r\nUNSUB never\r\n");
    NET_EXPECT(c, "+OK");
    NET_EXPECT(c, "+OK");
    NET_PUB(c, "t", "b");
    net_ping(c); /* b was not pushed */
    ck_assert_uint_eq(net_stat(c, "t", "consumers"), 0);
    net_puts(c, "ACK 1\r\n");
    NET_EXPECT(c, "+OK 1");
    ck_assert_uint_eq(net_stat(c, "t", "ready"), 1);
    tc_close(c);
    net_stop(&d);
}
END_TEST

START_TEST(test_round_robin_two_consumers)
{
    sd_t d;
    uint64_t a[2], b[2];
    net_start(&d, "");
    tc_t *p = net_open(&d), *ca = net_open(&d), *cb = net_open(&d);

    net_puts(ca, "SUB rr 10\r\n");
    NET_EXPECT(ca, "+OK");
    net_puts(cb, "SUB rr 10\r\n");
    NET_EXPECT(cb, "+OK");
    for (int i = 0; i < 4; i++)
        NET_PUB(p, "rr", "job");
    /* Each push happened while its PUB ran, so all are out by now. */
    for (int i = 0; i < 2; i++) {
        a[i] = NET_EXPECT_MSG(ca, "rr", 1, "job");
        b[i] = NET_EXPECT_MSG(cb, "rr", 1, "job");
    }
    net_ping(ca);
    net_ping(cb);
    /* Alternating: one consumer got 1 and 3, the other 2 and 4. */
    ck_assert_uint_eq(a[1], a[0] + 2);
    ck_assert_uint_eq(b[1], b[0] + 2);
    ck_assert(a[0] + b[0] == 3);
    ck_assert_uint_eq(net_stat(p, "rr", "consumers"), 2);
    tc_close(ca);
    tc_close(cb);
    tc_close(p);
    net_stop(&d);
}
END_TEST

START_TEST(test_get_immediate_wait_timeout)
{
    sd_t d;
    net_start(&d, "");
    tc_t *c = net_open(&d), *p = net_open(&d);

    /* Nothing there: 0 and absent do not wait; a timeout expires. */
    net_puts(c, "GET g\r\nGET g 0\r\nGET g 150\r\nPING\r\n");
    NET_EXPECT(c, "-TIMEOUT");
    NET_EXPECT(c, "-TIMEOUT");
    NET_EXPECT(c, "-TIMEOUT");
    NET_EXPECT(c, "+PONG");

    NET_PUB(p, "g", "now");
    net_puts(c, "GET g\r\n");
    NET_EXPECT_MSG(c, "g", 1, "now");

    /* A waiting GET gets a PUB from another connection; the PING sent
     * behind it is answered only after it. */
    net_puts(c, "PING\r\nGET g 20000\r\nPING\r\n");
    /* One read brought both: once the PING is answered the GET waits. */
    NET_EXPECT(c, "+PONG");
    NET_PUB(p, "g", "later");
    NET_EXPECT_MSG(c, "g", 1, "later");
    NET_EXPECT(c, "+PONG");

    /* The same with the GET timing out. */
    net_puts(c, "GET g 200\r\nPING\r\nGET g\r\n");
    NET_EXPECT(c, "-TIMEOUT");
    NET_EXPECT(c, "+PONG");
    NET_EXPECT(c, "-TIMEOUT");
    tc_close(c);
    tc_close(p);
    net_stop(&d);
}
END_TEST

/* A waiting GET is served before SUB consumers. */
START_TEST(test_waiting_get_before_subscribers)
{
    sd_t d;
    net_start(&d, "");
    tc_t *g = net_open(&d), *s = net_open(&d), *p = net_open(&d);

    net_puts(s, "SUB w 10\r\n");
    NET_EXPECT(s, "+OK");
    net_puts(g, "PING\r\nGET w 20000\r\n");
    NET_EXPECT(g, "+PONG"); /* the GET is waiting now */
    NET_PUB(p, "w", "1");
    NET_PUB(p, "w", "2");
    NET_EXPECT_MSG(g, "w", 1, "1");
    NET_EXPECT_MSG(s, "w", 1, "2");
    net_ping(g);
    net_ping(s);
    tc_close(g);
    tc_close(s);
    tc_close(p);
    net_stop(&d);
}
END_TEST

START_TEST(test_ack_all_or_nothing)
{
    sd_t d;
    uint64_t id;
    net_start(&d, "");
    tc_t *c = net_open(&d), *o = net_open(&d);

    for (int i = 0; i < 4; i++)
        NET_PUB(c, "k", "x");
    net_puts(c, "SUB k 3\r\n");
    NET_EXPECT(c, "+OK");
    for (uint64_t i = 1; i <= 3; i++)
        ck_assert_uint_eq(NET_EXPECT_MSG(c, "k", 1, "x"), i);
    net_puts(o, "GET k\r\n");
    id = NET_EXPECT_MSG(o, "k", 1, "x");
    ck_assert_uint_eq(id, 4);

    /* Unknown id in the middle: the first failing one is named, none acked. */
    net_puts(c, "ACK 1 99 2 98\r\n");
    NET_EXPECT(c, "-NOTFOUND 99");
    /* Another connection's id is not ours. */
    net_puts(c, "ACK 1 4\r\n");
    NET_EXPECT(c, "-NOTFOUND 4");
    net_puts(o, "ACK 1\r\n");
    NET_EXPECT(o, "-NOTFOUND 1");
    /* Syntax before lookups. */
    net_puts(c, "ACK 999 abc\r\nACK\r\nACK 1 -2\r\nACK 18446744073709551616\r\n");
    NET_EXPECT(c, "-ERR bad id");
    NET_EXPECT(c, "-ERR wrong number of arguments for 'ack'");
    NET_EXPECT(c, "-ERR bad id");
    NET_EXPECT(c, "-ERR bad id");
    ck_assert_uint_eq(net_stat(c, "k", "in_flight"), 4);
    ck_assert_uint_eq(net_stat(c, "k", "acked"), 0);
    net_ping(c); /* no credit was freed: nothing pushed */

    /* A duplicate in one list is acked once and counted once. */
    net_puts(c, "ACK 2 1 2\r\n");
    NET_EXPECT(c, "+OK 2");
    net_puts(c, "ACK 3\r\n");
    NET_EXPECT(c, "+OK 1");
    net_puts(c, "ACK 3\r\n");
    NET_EXPECT(c, "-NOTFOUND 3");
    net_puts(o, "ACK 4\r\n");
    NET_EXPECT(o, "+OK 1");
    ck_assert_uint_eq(net_stat(c, "k", "acked"), 4);
    ck_assert_uint_eq(net_stat(c, "k", "in_flight"), 0);
    ck_assert_uint_eq(net_stat(c, NULL, "messages"), 0);
    tc_close(c);
    tc_close(o);
    net_stop(&d);
}
END_TEST

START_TEST(test_nack_redelivers)
{
    sd_t d;
    net_start(&d, "");
    tc_t *c = net_open(&d);

    NET_PUB(c, "n", "first");
    NET_PUB(c, "n", "second");
    net_puts(c, "GET n\r\n");
    ck_assert_uint_eq(NET_EXPECT_MSG(c, "n", 1, "first"), 1);
    net_puts(c, "NACK 1\r\nGET n\r\n");
    NET_EXPECT(c, "+OK");
    /* Back at the head of the queue, attempt 2. */
    ck_assert_uint_eq(NET_EXPECT_MSG(c, "n", 2, "first"), 1);

    /* With a delay it is not deliverable until then (one batch: one clock). */
    net_puts(c, "NACK 1 1000\r\nGET n\r\nSTATS n\r\nGET n\r\n");
    NET_EXPECT(c, "+OK");
    NET_EXPECT_MSG(c, "n", 1, "second");
    net_expect_stats(c);
    ck_assert_str_eq(net_yaml_field(c->r.body, c->r.body_len, "delayed"), "1");
    NET_EXPECT(c, "-TIMEOUT");
    net_puts(c, "GET n 20000\r\n");
    ck_assert_uint_eq(NET_EXPECT_MSG(c, "n", 3, "first"), 1);
    ck_assert_uint_eq(net_stat(c, "n", "redelivered"), 2);
    ck_assert_uint_eq(net_stat(c, "n", "delivered"), 4);

    net_puts(c, "NACK 77\r\nNACK x\r\nNACK 1 y\r\n");
    NET_EXPECT(c, "-NOTFOUND 77");
    NET_EXPECT(c, "-ERR bad id");
    NET_EXPECT(c, "-ERR bad delay");
    tc_close(c);
    net_stop(&d);
}
END_TEST

/* TOUCH restarts the ack deadline: touched every 600 ms, a message with a
 * 1500 ms ack_timeout outlives it. */
START_TEST(test_touch)
{
    sd_t d;
    net_start(&d, "defaults:\n  ack_timeout: 1500ms\n");
    tc_t *c = net_open(&d), *o = net_open(&d);

    NET_PUB(c, "t", "x");
    net_puts(c, "GET t\r\n");
    NET_EXPECT(c, "MSG t 1 1 1");
    for (int i = 0; i < 3; i++) {
        usleep(600000);
        net_puts(c, "TOUCH 1\r\n");
        NET_EXPECT(c, "+OK");
    }
    net_puts(c, "ACK 1\r\n");
    NET_EXPECT(c, "+OK 1");
    ck_assert_uint_eq(net_stat(c, "t", "redelivered"), 0);

    net_puts(c, "TOUCH 1\r\nTOUCH 1 2\r\n");
    NET_EXPECT(c, "-NOTFOUND 1");
    NET_EXPECT(c, "-ERR wrong number of arguments for 'touch'");
    NET_PUB(c, "t", "y");
    net_puts(o, "GET t\r\n");
    NET_EXPECT(o, "MSG t 2 1 1");
    net_puts(c, "TOUCH 2\r\n");
    NET_EXPECT(c, "-NOTFOUND 2");
    tc_close(c);
    tc_close(o);
    net_stop(&d);
}
END_TEST

/* An unacked message comes back after ack_timeout with attempt 2; its old
 * owner can no longer ack it. */
START_TEST(test_ack_timeout_redelivery)
{
    sd_t d;
    net_start(&d, "defaults:\n  ack_timeout: 200ms\n");
    tc_t *a = net_open(&d), *b = net_open(&d);

    NET_PUB(a, "t", "slow");
    net_puts(a, "GET t\r\n");
    NET_EXPECT_MSG(a, "t", 1, "slow");
    net_puts(b, "GET t 20000\r\n");
    ck_assert_uint_eq(NET_EXPECT_MSG(b, "t", 2, "slow"), 1);
    net_puts(a, "ACK 1\r\n");
    NET_EXPECT(a, "-NOTFOUND 1");
    net_puts(b, "ACK 1\r\n");
    NET_EXPECT(b, "+OK 1");
    ck_assert_uint_eq(net_stat(a, "t", "redelivered"), 1);

    /* A SUB consumer that never acks gets the same message again. */
    NET_PUB(a, "u", "again");
    net_puts(b, "SUB u 1\r\n");
    NET_EXPECT(b, "+OK");
    NET_EXPECT_MSG(b, "u", 1, "again");
    NET_EXPECT_MSG(b, "u", 2, "again");
    NET_EXPECT_MSG(b, "u", 3, "again");
    tc_close(a);
    tc_close(b);
    net_stop(&d);
}
END_TEST

/* A consumer's close returns its in-flight messages at once (long before
 * the 30 s ack_timeout), in their order, with attempt 2. */
START_TEST(test_disconnect_redelivers_at_once)
{
    sd_t d;
    net_start(&d, "");
    tc_t *p = net_open(&d), *a = net_open(&d), *b = net_open(&d);

    NET_PUB(p, "t", "one");
    NET_PUB(p, "t", "two");
    NET_PUB(p, "t", "three");
    net_puts(a, "SUB t 2\r\n");
    NET_EXPECT(a, "+OK");
    NET_EXPECT_MSG(a, "t", 1, "one");
    NET_EXPECT_MSG(a, "t", 1, "two");
    net_puts(b, "SUB t 10\r\n");
    NET_EXPECT(b, "+OK");
    NET_EXPECT_MSG(b, "t", 1, "three");
    tc_close(a);
    ck_assert_uint_eq(NET_EXPECT_MSG(b, "t", 2, "one"), 1);
    ck_assert_uint_eq(NET_EXPECT_MSG(b, "t", 2, "two"), 2);
    net_ping(b);
    ck_assert_uint_eq(net_stat(p, "t", "redelivered"), 2);
    ck_assert_uint_eq(net_stat(p, "t", "consumers"), 1);
    tc_close(b);
    tc_close(p);
    net_stop(&d);
}
END_TEST

START_TEST(test_dead_letter)
{
    sd_t d;
    uint64_t id, dead_id;
    net_start(&d, "topics:\n  dl:\n    max_deliveries: 2\n    dead_letter: dl.dead\n"
                  "  nodl:\n    max_deliveries: 1\n");
    tc_t *c = net_open(&d);

    id = NET_PUB(c, "dl", "poison");
    net_puts(c, "GET dl\r\nNACK 1\r\nGET dl\r\nNACK 1\r\nGET dl\r\n");
    NET_EXPECT_MSG(c, "dl", 1, "poison");
    NET_EXPECT(c, "+OK");
    NET_EXPECT_MSG(c, "dl", 2, "poison");
    NET_EXPECT(c, "+OK");
    NET_EXPECT(c, "-TIMEOUT");
    /* A new message (new id, attempt 1) in the dead-letter topic. */
    net_puts(c, "GET dl.dead\r\n");
    dead_id = NET_EXPECT_MSG(c, "dl.dead", 1, "poison");
    ck_assert_uint_gt(dead_id, id);
    ck_assert_uint_eq(net_stat(c, "dl", "ready"), 0);
    ck_assert_uint_eq(net_stat(c, "dl", "dead"), 0);
    ck_assert_uint_eq(net_stat(c, "dl.dead", "published"), 1);
    net_puts(c, "ACK 1\r\n");
    NET_EXPECT(c, "-NOTFOUND 1");

    /* Without a dead-letter topic: dropped and counted. */
    NET_PUB(c, "nodl", "gone");
    net_puts(c, "GET nodl\r\nNACK 3\r\nGET nodl\r\n");
    NET_EXPECT_MSG(c, "nodl", 1, "gone");
    NET_EXPECT(c, "+OK");
    NET_EXPECT(c, "-TIMEOUT");
    ck_assert_uint_eq(net_stat(c, "nodl", "dead"), 1);
    ck_assert_uint_eq(net_stat(c, "nodl", "bytes"), 0);
    ck_assert_uint_eq(net_stat(c, NULL, "dead"), 1);
    ck_assert_uint_eq(net_stat(c, NULL, "messages"), 1); /* the dead-letter copy */
    tc_close(c);
    net_stop(&d);
}
END_TEST

/* Disconnects count toward max_deliveries too. */
START_TEST(test_dead_after_disconnects)
{
    sd_t d;
    net_start(&d, "defaults:\n  max_deliveries: 2\n");
    tc_t *p = net_open(&d);

    NET_PUB(p, "t", "crashy");
    for (unsigned i = 1; i <= 2; i++) {
        tc_t *c = net_open(&d);
        net_puts(c, "GET t\r\n");
        NET_EXPECT_MSG(c, "t", i, "crashy");
        tc_close(c);
        net_wait_stat(p, NULL, "connections", 1);
    }
    net_wait_stat(p, "t", "dead", 1);
    ck_assert_uint_eq(net_stat(p, "t", "ready"), 0);
    tc_close(p);
    net_stop(&d);
}
END_TEST

START_TEST(test_pub_delay)
{
    sd_t d;
    net_start(&d, "");
    tc_t *c = net_open(&d);

    net_puts(c, "PUB t 5 delay=1000\r\nlater\r\nPUB t 3 DELAY=0\r\nnow\r\nGET t\r\nGET t\r\n"
                "STATS t\r\n");
    NET_EXPECT(c, "+OK 1");
    NET_EXPECT(c, "+OK 2");
    NET_EXPECT_MSG(c, "t", 1, "now");
    NET_EXPECT(c, "-TIMEOUT");
    net_expect_stats(c);
    ck_assert_str_eq(net_yaml_field(c->r.body, c->r.body_len, "delayed"), "1");
    ck_assert_str_eq(net_yaml_field(c->r.body, c->r.body_len, "bytes"), "8");
    net_puts(c, "GET t 20000\r\n");
    ck_assert_uint_eq(NET_EXPECT_MSG(c, "t", 1, "later"), 1);
    ck_assert_uint_eq(net_stat(c, "t", "delayed"), 0);

    /* Bad options are refused and their payload skipped. */
    net_puts(c, "PUB t 4 delay=x\r\nPING\r\nPUB t 4 wait=5\r\nPING\r\nPING\r\n");
    NET_EXPECT(c, "-ERR bad delay");
    NET_EXPECT(c, "-ERR bad option");
    NET_EXPECT(c, "+PONG");
    ck_assert_uint_eq(net_stat(c, "t", "published"), 2);
    tc_close(c);
    net_stop(&d);
}
END_TEST

START_TEST(test_join)
{
    sd_t d;
    net_start(&d, "");
    tc_t *j = net_open(&d), *c = net_open(&d);

    /* Empty (or unknown) topics: at once, whatever the timeout. */
    net_puts(j, "JOIN j\r\nJOIN j 0\r\nJOIN nosuch 100\r\n");
    NET_EXPECT(j, "+OK");
    NET_EXPECT(j, "+OK");
    NET_EXPECT(j, "+OK");

    NET_PUB(c, "j", "work");
    net_puts(j, "JOIN j 0\r\nJOIN j 150\r\n");
    NET_EXPECT(j, "-TIMEOUT");
    NET_EXPECT(j, "-TIMEOUT");

    /* Waits through delivery until the ack; the PING behind it waits too. */
    net_puts(j, "PING\r\nJOIN j\r\nPING\r\n");
    NET_EXPECT(j, "+PONG"); /* the JOIN is waiting now */
    net_puts(c, "GET j\r\n");
    NET_EXPECT_MSG(c, "j", 1, "work");
    net_ping(c);
    net_puts(c, "ACK 1\r\n");
    NET_EXPECT(c, "+OK 1");
    NET_EXPECT(j, "+OK");
    NET_EXPECT(j, "+PONG");

    /* With a timeout long enough for the ack. */
    NET_PUB(c, "j", "more");
    net_puts(j, "JOIN j 20000\r\n");
    net_puts(c, "GET j\r\n");
    NET_EXPECT_MSG(c, "j", 1, "more");
    net_puts(c, "ACK 2\r\n");
    NET_EXPECT(c, "+OK 1");
    NET_EXPECT(j, "+OK");

    /* A delayed message keeps the topic busy as well. */
    net_puts(c, "PUB j 1 delay=300\r\nz\r\n");
    NET_EXPECT(c, "+OK 3");
    net_puts(j, "JOIN j 0\r\n");
    NET_EXPECT(j, "-TIMEOUT");
    tc_close(j);
    tc_close(c);
    net_stop(&d);
}
END_TEST

/* The native spellings of beanstalk's additions: PUB pri= and ttr=,
 * BURY, KICK, PAUSE, and the STATS fields that count them. */
START_TEST(test_priorities_bury_kick_pause)
{
    sd_t d;
    net_start(&d, "");
    tc_t *c = net_open(&d), *p = net_open(&d);

    uint64_t plain = NET_PUB(p, "q", "plain");
    net_puts(p, "PUB q 3 pri=5\r\nfiv\r\nPUB q 3 pri=1 ttr=300\r\none\r\n");
    ck_assert_str_eq(net_reply(p), "+OK 2");
    ck_assert_str_eq(net_reply(p), "+OK 3");
    ck_assert_uint_eq(net_stat(c, "q", "urgent"), 2);
    net_puts(c, "GET q\r\n");
    uint64_t one = NET_EXPECT_MSG(c, "q", 1, "one");
    /* its own ttr: back after 300 ms, not the topic's 30 s */
    net_wait_stat(c, "q", "timeouts", 1);
    net_puts(c, "GET q\r\n");
    ck_assert_uint_eq(NET_EXPECT_MSG(c, "q", 2, "one"), one);
    net_puts(c, "BURY 99\r\n");
    NET_EXPECT(c, "-NOTFOUND 99");
    net_sendf(c, "BURY %llu\r\n", (unsigned long long)one);
    NET_EXPECT(c, "+OK");
    ck_assert_uint_eq(net_stat(c, "q", "buried"), 1);
    ck_assert_uint_eq(net_stat(c, "q", "buries"), 1);
    net_puts(c, "GET q\r\nGET q\r\nGET q\r\n");
    NET_EXPECT_MSG(c, "q", 1, "fiv");
    ck_assert_uint_eq(NET_EXPECT_MSG(c, "q", 1, "plain"), plain);
    NET_EXPECT(c, "-TIMEOUT");
    net_puts(c, "KICK q 10\r\nKICK nope 1\r\nKICK q 10\r\n");
    NET_EXPECT(c, "+OK 1");
    NET_EXPECT(c, "-ERR unknown topic");
    NET_EXPECT(c, "+OK 0");
    ck_assert_uint_eq(net_stat(c, "q", "kicks"), 1);
    /* paused: nothing is delivered until the pause ends */
    net_puts(c, "PAUSE q 400\r\nGET q 10000\r\n");
    NET_EXPECT(c, "+OK");
    ck_assert_uint_eq(net_stat(p, "q", "paused"), 1);
    ck_assert_uint_eq(NET_EXPECT_MSG(c, "q", 3, "one"), one);
    ck_assert_uint_eq(net_stat(c, "q", "paused"), 0);
    ck_assert_uint_eq(net_stat(c, "q", "pauses"), 1);
    tc_close(c);
    tc_close(p);
    net_stop(&d);
}
END_TEST

/* ---- big pushes are written from their message (conn.c lends it) ----
 *
 * A reader that does not read keeps pushes in the broker's output buffer,
 * which for payloads of 4 KiB and up refers to the message's own memory.
 * The message must outlive its ACK, and a redelivery to another consumer,
 * for as long as that buffer holds it: every byte the reader finally gets
 * is what was published, though newer messages took the freed memory
 * meanwhile (and under ASan, a write from a freed block fails the run). */
#define BIG_LEN (256 * 1024)
#define BIG_N 48 /* 12 MiB: more than the kernel's socket buffers take */

static void big_pub(tc_t *p, const char *topic, unsigned k, char *buf)
{
    sd_pattern(buf, BIG_LEN, k);
    net_pub(p, topic, buf, BIG_LEN);
}

/* The next reply is message k of t (published by big_pub with k = its id),
 * delivered for the attempt-th time. net_expect_msg, but a wrong byte is
 * named, not 256 KiB of it printed. */
static void big_expect(tc_t *c, const char *topic, unsigned attempt, unsigned k, char *buf)
{
    const char *got = net_reply(c);
    size_t i;

    if (k == 0) /* any: a redelivery's order is not the publisher's */
        k = (unsigned)c->r.id;
    ck_assert_msg(c->r.type == REPLY_MSG && c->r.id == k && c->r.attempt == attempt &&
                      c->r.body_len == BIG_LEN &&
                      c->r.topic_len == strlen(topic) && memcmp(c->r.topic, topic, c->r.topic_len) == 0,
                  "expected MSG %s with attempt %u and %d bytes, got: %s", topic, attempt, BIG_LEN,
                  got);
    i = sd_pattern_diff(c->r.body, BIG_LEN, k, buf);
    ck_assert_msg(i == BIG_LEN, "%s (message %u): byte %zu is '%c', not '%c'", got, k, i,
                  c->r.body[i], buf[i]);
}

/* Messages 1..BIG_N on t, all delivered (to the one sleeper on t). */
static void big_pub_all(tc_t *p, char *buf)
{
    for (unsigned k = 1; k <= BIG_N; k++)
        big_pub(p, "t", k, buf);
    net_wait_stat(p, "t", "in_flight", BIG_N);
}

/* A new consumer that gets all BIG_N back, intact, as second deliveries. */
static tc_t *big_take_again(const sd_t *d, char *buf)
{
    tc_t *c = net_open(d);

    net_sendf(c, "SUB t %u\r\n", BIG_N);
    NET_EXPECT(c, "+OK");
    for (unsigned k = 1; k <= BIG_N; k++)
        big_expect(c, "t", 2, 0, buf);
    return c;
}

static const char big_conf[] = "limits:\n  output_buffer: 64MiB\n";

/* A consumer on t that reads nothing: the kernel's buffers of a connection
 * that is not read stay near 4 MiB (the send side's) and 128 KiB (the
 * receive side's, not grown until it reads), so most pushes wait in the
 * broker. */
static tc_t *big_sleeper(const sd_t *d, tc_t *p, unsigned credit)
{
    tc_t *c = net_open(d);

    net_sendf(c, "SUB t %u\r\n", credit);
    net_ping(p); /* not proof that c's SUB ran, but the pushes wait for it */
    return c;
}

START_TEST(test_lent_push_outlives_its_ack)
{
    sd_t d;
    char *buf = malloc(BIG_LEN);
    net_start(&d, big_conf);
    tc_t *p = net_open(&d), *c = big_sleeper(&d, p, BIG_N);

    ck_assert_ptr_nonnull(buf);
    big_pub_all(p, buf);
    for (unsigned k = 1; k <= BIG_N; k++)
        net_sendf(c, "ACK %u\r\n", k);
    net_wait_stat(p, "t", "in_flight", 0);
    for (unsigned k = 1; k <= BIG_N; k++) /* into the memory the acked ones left */
        big_pub(p, "filler", 1000 + k, buf);
    NET_EXPECT(c, "+OK");
    for (unsigned k = 1; k <= BIG_N; k++)
        big_expect(c, "t", 1, k, buf);
    for (unsigned k = 1; k <= BIG_N; k++)
        NET_EXPECT(c, "+OK 1");
    net_ping(c);
    tc_close(c);
    tc_close(p);
    net_stop(&d);
    free(buf);
}
END_TEST

START_TEST(test_lent_push_outlives_a_redelivery)
{
    sd_t d;
    char *buf = malloc(BIG_LEN);
    net_start(&d, "limits:\n  output_buffer: 64MiB\ntopics:\n  t:\n    ack_timeout: 1s\n");
    tc_t *p = net_open(&d), *slow = big_sleeper(&d, p, BIG_N), *fast;

    ck_assert_ptr_nonnull(buf);
    big_pub_all(p, buf);
    /* No more for slow; its deadlines pass with the pushes still in its
     * buffer, and fast gets the messages again (copied: they are lent),
     * acks them, and they are freed while slow's buffer points at them. */
    net_puts(slow, "SUB t 0\r\n");
    net_wait_stat(p, "t", "ready", BIG_N);
    fast = big_take_again(&d, buf);
    net_puts(fast, "ACK");
    for (unsigned k = 1; k <= BIG_N; k++)
        net_sendf(fast, " %u", k);
    net_puts(fast, "\r\n");
    NET_EXPECT(fast, "+OK 48");
    ck_assert_uint_eq(net_stat(p, "t", "in_flight"), 0);
    for (unsigned k = 1; k <= BIG_N; k++)
        big_pub(p, "filler", 1000 + k, buf);
    NET_EXPECT(slow, "+OK");
    for (unsigned k = 1; k <= BIG_N; k++)
        big_expect(slow, "t", 1, k, buf);
    NET_EXPECT(slow, "+OK");
    net_ping(slow);
    tc_close(slow);
    tc_close(fast);
    tc_close(p);
    net_stop(&d);
    free(buf);
}
END_TEST

/* A connection that goes while its buffer holds lent pushes gives them
 * back: the messages stay queued and reach the next consumer intact. */
START_TEST(test_lent_push_survives_its_reader_leaving)
{
    sd_t d;
    char *buf = malloc(BIG_LEN);
    net_start(&d, big_conf);
    tc_t *p = net_open(&d), *gone = big_sleeper(&d, p, BIG_N), *c;

    ck_assert_ptr_nonnull(buf);
    big_pub_all(p, buf);
    tc_close(gone);
    net_wait_stat(p, "t", "ready", BIG_N);
    c = big_take_again(&d, buf);
    tc_close(c);
    tc_close(p);
    net_stop(&d);
    free(buf);
}
END_TEST

Suite *net_deliver_suite(void)
{
    Suite *s = suite_create("net_deliver");
    TCase *t = tcase_create("delivery");

    tcase_set_timeout(t, NET_TIMEOUT_S);
    tcase_add_test(t, test_sub_credit);
    tcase_add_test(t, test_sub_default_credit_is_prefetch);
    tcase_add_test(t, test_unsub_keeps_ownership);
    tcase_add_test(t, test_round_robin_two_consumers);
    tcase_add_test(t, test_get_immediate_wait_timeout);
    tcase_add_test(t, test_waiting_get_before_subscribers);
    tcase_add_test(t, test_ack_all_or_nothing);
    tcase_add_test(t, test_nack_redelivers);
    tcase_add_test(t, test_touch);
    tcase_add_test(t, test_ack_timeout_redelivery);
    tcase_add_test(t, test_disconnect_redelivers_at_once);
    tcase_add_test(t, test_dead_letter);
    tcase_add_test(t, test_dead_after_disconnects);
    tcase_add_test(t, test_pub_delay);
    tcase_add_test(t, test_join);
    tcase_add_test(t, test_priorities_bury_kick_pause);
    tcase_add_test(t, test_lent_push_outlives_its_ack);
    tcase_add_test(t, test_lent_push_outlives_a_redelivery);
    tcase_add_test(t, test_lent_push_survives_its_reader_leaving);
    suite_add_tcase(s, t);
    return s;
}
