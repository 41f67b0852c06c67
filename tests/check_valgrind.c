/* check_valgrind.c: the real daemon under valgrind's memcheck through a
 * realistic session (publish, consume, ack, nack, redelivery on disconnect,
 * a client vanishing mid-payload, a reload, shutdown): no invalid access
 * and no leak, or valgrind's exit status fails the test.
 * Built only without sanitizers (they cannot share a process).
 */
#include <check.h>
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

int main(void)
{
    Suite *s = suite_create("valgrind");
    TCase *t = tcase_create("memcheck");
    SRunner *sr;
    int failed;

    tcase_set_timeout(t, 300);
    tcase_add_test(t, test_session_under_valgrind);
    suite_add_tcase(s, t);
    sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
