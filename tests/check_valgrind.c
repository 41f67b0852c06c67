/* check_valgrind.c: the real daemon under valgrind's memcheck through a
 * realistic session (publish, consume, ack, nack, redelivery on disconnect,
 * a client vanishing mid-payload, a reload, shutdown), and a beanstalk one
 * (put, reserve across tubes, release, bury, kick, the stats bodies, a
 * worker and a half-sent put vanishing): no invalid access and no leak, or
 * valgrind's exit status fails the test.
 * Built only without sanitizers (they cannot share a process).
 */
#include <check.h>
#include <stdbool.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"

#define VALGRIND                                                                            \
    "valgrind -q --error-exitcode=99 --leak-check=full --show-leak-kinds=definite,indirect " \
    "--errors-for-leak-kinds=definite,indirect --track-origins=yes"

/* The next reply that is not a push (pushes may come between replies). */
static const char *next_reply(tc_t *c)
{
    const char *line;

    while ((line = tc_reply_line(c)) != NULL && c->r.type == REPLY_MSG)
        ;
    return line;
}

START_TEST(test_session_under_valgrind)
{
    sd_t d;
    const char *conf = "log: {level: debug}\n"
                       "defaults: {ack_timeout: 300ms, max_deliveries: 3, dead_letter: dead}\n"
                       "topics:\n  small: {max_messages: 2, overflow: reject}\n";

    ck_assert_msg(system("command -v valgrind >/dev/null") == 0,
                  "valgrind is not installed (apt-get install valgrind)");
    ck_assert_int_eq(sd_start_wrapped(&d, VALGRIND, conf, NULL, NULL), 0);

    tc_t *p = tc_open(&d), *c1 = tc_open(&d), *c2 = tc_open(&d);
    ck_assert(p && c1 && c2);
    for (int i = 0; i < 20; i++)
        tc_sendf(p, "PUB work %d\r\nmsg-%05d\r\n", 9, i);
    for (int i = 0; i < 20; i++) {
        ck_assert_int_eq(tc_reply(p), 0);
        ck_assert_int_eq(p->r.type, REPLY_OK);
    }
    tc_sendf(p, "PUB small 1\r\na\r\nPUB small 1\r\nb\r\nPUB small 1\r\nc\r\n");
    tc_reply_line(p);
    tc_reply_line(p);
    ck_assert_str_eq(tc_reply_line(p), "-FULL small");

    /* c1 takes some, acks one, nacks one, then vanishes with the rest. */
    tc_sendf(c1, "SUB work 5\r\n");
    ck_assert_str_eq(tc_reply_line(c1), "+OK");
    for (int i = 0; i < 5; i++) {
        ck_assert_int_eq(tc_reply(c1), 0);
        ck_assert_int_eq(c1->r.type, REPLY_MSG);
    }
    tc_sendf(c1, "ACK 1\r\nNACK 2\r\n");
    ck_assert_str_eq(next_reply(c1), "+OK 1");
    ck_assert_str_eq(next_reply(c1), "+OK");
    tc_close(c1);

    /* c2 gets everything that is left, redeliveries included: 20 - 1 acked. */
    char ack[2048] = "ACK";
    tc_sendf(c2, "SUB work 100\r\n");
    ck_assert_str_eq(tc_reply_line(c2), "+OK");
    for (int got = 0; got < 19; got++) {
        ck_assert_int_eq(tc_reply(c2), 0);
        ck_assert_int_eq(c2->r.type, REPLY_MSG);
        snprintf(ack + strlen(ack), sizeof ack - strlen(ack), " %llu",
                 (unsigned long long)c2->r.id);
    }
    tc_sendf(c2, "%s\r\n", ack);
    ck_assert_str_eq(tc_reply_line(c2), "+OK 19");

    /* A producer that vanishes mid-payload. */
    tc_t *v = tc_open(&d);
    tc_sendf(v, "PUB work 100\r\nonly part of it");
    tc_close(v);

    sd_write_conf(&d, "defaults: {max_messages: 50}\n");
    sd_signal(&d, SIGHUP);
    tc_sendf(p, "STATS\r\nTOPICS\r\nJOIN work 5000\r\n");
    ck_assert_int_eq(tc_reply(p), 0);
    ck_assert_int_eq(p->r.type, REPLY_STATS);
    ck_assert_int_eq(tc_reply(p), 0);
    ck_assert_int_eq(p->r.type, REPLY_TOPICS);
    ck_assert_str_eq(tc_reply_line(p), "+OK");
    tc_close(p);
    tc_close(c2);
    ck_assert_int_eq(sd_stop(&d), 0);
}
END_TEST

/* One beanstalk reply line, or fail. */
static const char *bline(tc_t *c)
{
    const char *l = tc_line(c);

    ck_assert_ptr_nonnull(l);
    return l;
}

START_TEST(test_beanstalk_session_under_valgrind)
{
    sd_t d;

    ck_assert_int_eq(sd_start_wrapped(&d, VALGRIND,
                                      "beanstalk: {listen: [127.0.0.1:0]}\n"
                                      "defaults: {max_deliveries: 0}\n",
                                      NULL, NULL),
                     0);
    ck_assert_int_gt(d.bport, 0);
    tc_t *p = tc_open_port(&d, d.bport), *w = tc_open_port(&d, d.bport);
    ck_assert(p && w);
    tc_sendf(p, "use a\r\nput 5 0 60 2\r\na1\r\nuse b\r\nput 1 0 60 2\r\nb1\r\n"
                "put 0 100 60 2\r\nb2\r\n");
    ck_assert_str_eq(bline(p), "USING a");
    ck_assert_str_eq(bline(p), "INSERTED 1");
    ck_assert_str_eq(bline(p), "USING b");
    ck_assert_str_eq(bline(p), "INSERTED 2");
    ck_assert_str_eq(bline(p), "INSERTED 3");
    tc_sendf(w, "watch a\r\nwatch b\r\nreserve\r\nrelease 2 9 0\r\nreserve\r\nbury 1 0\r\n"
                "kick 5\r\nstats-job 1\r\n");
    ck_assert_str_eq(bline(w), "WATCHING 2");
    ck_assert_str_eq(bline(w), "WATCHING 3");
    ck_assert_str_eq(bline(w), "RESERVED 2 2");
    ck_assert_str_eq(bline(w), "b1");
    ck_assert_str_eq(bline(w), "RELEASED");
    ck_assert_str_eq(bline(w), "RESERVED 1 2"); /* pri 5 now before 9 */
    ck_assert_str_eq(bline(w), "a1");
    ck_assert_str_eq(bline(w), "BURIED");
    ck_assert_str_eq(bline(w), "KICKED 0"); /* used tube default: nothing */
    ck_assert_int_eq(strncmp(bline(w), "OK ", 3), 0);
    for (const char *l; (l = bline(w)) != NULL && strcmp(l, "kicks: 0") != 0;)
        ;
    ck_assert_str_eq(bline(w), ""); /* the body's closing CRLF */
    tc_sendf(w, "stats\r\nlist-tubes\r\nstats-tube b\r\nreserve\r\n");
    for (int i = 0; i < 3; i++) {
        size_t n = 0;
        ck_assert_int_eq(sscanf(bline(w), "OK %zu", &n), 1);
        char *yaml = malloc(n + 2);
        ck_assert_int_eq(tc_read_n(w, yaml, n + 2), 0);
        free(yaml);
    }
    /* The worker vanishes holding job 2 and waiting; a put is cut short. */
    tc_close(w);
    tc_t *v = tc_open_port(&d, d.bport);
    tc_sendf(v, "put 0 0 60 100\r\nonly part");
    tc_close(v);
    tc_sendf(p, "watch b\r\nreserve-with-timeout 10\r\n");
    ck_assert_str_eq(bline(p), "WATCHING 2");
    ck_assert_str_eq(bline(p), "RESERVED 2 2");
    ck_assert_str_eq(bline(p), "b1");
    tc_close(p);
    ck_assert_int_eq(sd_stop(&d), 0);
}
END_TEST

/* Big pushes are lent from their messages to the output buffer: two
 * acked while still lent, the rest given back when the daemon stops with
 * a reader that never read them. Nothing may leak or be read after free. */
START_TEST(test_lent_pushes_under_valgrind)
{
    enum { LEN = 256 * 1024, N = 40 };
    sd_t d;
    char *buf = malloc(LEN);
    bool acked = false;

    ck_assert_ptr_nonnull(buf);
    memset(buf, 'x', LEN);
    ck_assert_int_eq(sd_start_wrapped(&d, VALGRIND, "limits: {output_buffer: 64MiB}\n", NULL, NULL),
                     0);
    tc_t *p = tc_open(&d), *c = tc_open(&d);
    ck_assert(p && c);
    tc_sendf(c, "SUB t %d\r\n", N);
    ck_assert_str_eq(tc_reply_line(c), "+OK");
    for (int i = 0; i < N; i++) {
        tc_sendf(p, "PUB t %d\r\n", LEN);
        tc_send(p, buf, LEN);
        tc_send(p, "\r\n", 2);
        ck_assert_int_eq(tc_reply(p), 0);
        ck_assert_int_eq(p->r.type, REPLY_OK);
    }
    /* The last ones wait in the broker, behind the 4 MiB the kernel took. */
    tc_sendf(c, "ACK %d %d\r\n", N - 1, N);
    for (int tries = 0; tries < 200 && !acked; tries++) {
        tc_sendf(p, "STATS t\r\n");
        ck_assert_int_eq(tc_reply(p), 0);
        acked = memmem(p->r.body, p->r.body_len, "\nin_flight: 38\n", 15) != NULL;
        if (!acked)
            sd_sleep_ms(50);
    }
    ck_assert_msg(acked, "the ACK of two lent messages did not run");
    ck_assert_int_eq(sd_stop(&d), 0);
    tc_close(p);
    tc_close(c);
    free(buf);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("valgrind");
    TCase *t = tcase_create("memcheck");
    SRunner *sr;
    int failed;

    tcase_set_timeout(t, 300);
    tcase_add_test(t, test_session_under_valgrind);
    tcase_add_test(t, test_beanstalk_session_under_valgrind);
    tcase_add_test(t, test_lent_pushes_under_valgrind);
    suite_add_tcase(s, t);
    sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
