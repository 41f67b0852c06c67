/* check_net_basic.c: end-to-end tests of every command's reply format, the
 * spec's example session byte for byte, pipelining, STATS and TOPICS
 * bodies, AUTH, QUIT, and a unix-socket listener.
 */
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "check_net.h"

START_TEST(test_example_session)
{
    sd_t d;
    net_start(&d, "");
    tc_t *c = net_open(&d);

    net_puts(c, "PUB orders 5\r\nhello\r\n");
    NET_EXPECT_RAW(c, "+OK 1\r\n");
    net_puts(c, "SUB orders 10\r\n");
    NET_EXPECT_RAW(c, "+OK\r\nMSG orders 1 1 5\r\nhello\r\n");
    net_puts(c, "ACK 1\r\n");
    NET_EXPECT_RAW(c, "+OK 1\r\n");
    tc_close(c);
    net_stop(&d);
}
END_TEST

/* Every reply ends "\r\n" though every command ended "\n" alone. */
START_TEST(test_replies_end_crlf_after_lf)
{
    sd_t d;
    const char *l;
    net_start(&d, "");
    tc_t *c = net_open(&d);

    net_puts(c, "PING\nPUB t 1\nx\nSUB t 1\nUNSUB t\nNACK 1\nGET t\nTOUCH 1\nACK 1\n"
                "JOIN t\nBOGUS\nTOPICS\nSTATS t\nQUIT\n");
    NET_EXPECT_RAW(c, "+PONG\r\n+OK 1\r\n+OK\r\nMSG t 1 1 1\r\nx\r\n+OK\r\n+OK\r\n"
                      "MSG t 1 2 1\r\nx\r\n+OK\r\n+OK 1\r\n+OK\r\n-ERR unknown command\r\n"
                      "+TOPICS 2\r\nt\n\r\n");
    l = net_raw_line(c);
    ck_assert_msg(strncmp(l, "+STATS ", 7) == 0, "got %s", l);
    ck_assert_str_eq(l + strlen(l) - 2, "\r\n");
    size_t n = strtoul(l + 7, NULL, 10);
    const char *body = net_raw(c, n);
    /* The YAML body's own lines end "\n" alone. */
    ck_assert_ptr_null(memmem(body, n, "\r", 1));
    ck_assert_ptr_nonnull(net_yaml_field(body, n, "ready"));
    NET_EXPECT_RAW(c, "\r\n+BYE\r\n");
    ck_assert(tc_closed(c, 5000));
    tc_close(c);
    net_stop(&d);
}
END_TEST

START_TEST(test_every_command_happy_path)
{
    sd_t d;
    uint64_t id;
    net_start(&d, "");
    tc_t *c = net_open(&d);

    id = NET_PUB(c, "jobs", "one");
    ck_assert_uint_eq(id, 1);
    ck_assert_uint_eq(NET_PUB(c, "jobs", "two"), 2);
    net_puts(c, "GET jobs\r\n");
    ck_assert_uint_eq(NET_EXPECT_MSG(c, "jobs", 1, "one"), 1);
    net_puts(c, "TOUCH 1\r\n");
    NET_EXPECT(c, "+OK");
    net_puts(c, "NACK 1\r\n");
    NET_EXPECT(c, "+OK");
    net_puts(c, "GET jobs 100\r\n");
    NET_EXPECT_MSG(c, "jobs", 2, "one");
    net_puts(c, "SUB jobs\r\n");
    NET_EXPECT(c, "+OK");
    NET_EXPECT_MSG(c, "jobs", 1, "two");
    net_puts(c, "UNSUB jobs\r\n");
    NET_EXPECT(c, "+OK");
    net_puts(c, "ACK 1 2\r\n");
    NET_EXPECT(c, "+OK 2");
    net_puts(c, "JOIN jobs\r\n");
    NET_EXPECT(c, "+OK");
    net_puts(c, "JOIN jobs 0\r\n");
    NET_EXPECT(c, "+OK");
    net_puts(c, "GET jobs\r\n");
    NET_EXPECT(c, "-TIMEOUT");
    net_puts(c, "TOPICS\r\n");
    NET_EXPECT(c, "+TOPICS 5");
    ck_assert(c->r.body_len == 5 && memcmp(c->r.body, "jobs\n", 5) == 0);
    net_puts(c, "STATS\r\n");
    net_reply(c);
    ck_assert_int_eq(c->r.type, REPLY_STATS);
    net_puts(c, "STATS jobs\r\n");
    net_reply(c);
    ck_assert_int_eq(c->r.type, REPLY_STATS);
    net_puts(c, "AUTH bob secret\r\n");
    NET_EXPECT(c, "-ERR AUTH is not enabled (no users are configured)");
    net_ping(c);
    net_puts(c, "QUIT\r\n");
    NET_EXPECT(c, "+BYE");
    ck_assert(tc_closed(c, 5000));
    tc_close(c);
    net_stop(&d);
}
END_TEST

START_TEST(test_commands_case_insensitive_topics_not)
{
    sd_t d;
    net_start(&d, "");
    tc_t *c = net_open(&d);

    net_puts(c, "ping\r\nPiNg\r\npub T 1\r\na\r\nPub t 1\r\nb\r\nget t\r\nGeT T\r\n"
                "topics\r\nstats T\r\n");
    NET_EXPECT(c, "+PONG");
    NET_EXPECT(c, "+PONG");
    NET_EXPECT(c, "+OK 1");
    NET_EXPECT(c, "+OK 2");
    NET_EXPECT_MSG(c, "t", 1, "b");
    NET_EXPECT_MSG(c, "T", 1, "a");
    NET_EXPECT(c, "+TOPICS 4");
    ck_assert(memcmp(c->r.body, "T\nt\n", 4) == 0);
    net_expect_stats(c);
    ck_assert_str_eq(net_yaml_field(c->r.body, c->r.body_len, "in_flight"), "1");
    net_puts(c, "ack 1 2\r\nnack 1\r\ntouch 2\r\nquit\r\n");
    NET_EXPECT(c, "+OK 2");
    NET_EXPECT(c, "-NOTFOUND 1");
    NET_EXPECT(c, "-NOTFOUND 2");
    NET_EXPECT(c, "+BYE");
    tc_close(c);
    net_stop(&d);
}
END_TEST

/* Everything in one send; the replies come back in command order. */
START_TEST(test_pipelined_replies_in_order)
{
    sd_t d;
    char big[20000];
    size_t n = 0;
    net_start(&d, "");
    tc_t *c = net_open(&d);

    for (int i = 0; i < 200; i++)
        n += (size_t)snprintf(big + n, sizeof big - n, "PUB p 3\r\n%03d\r\nPING\r\n", i);
    n += (size_t)snprintf(big + n, sizeof big - n, "SUB p 1\r\nACK 1\r\nSTATS nosuch\r\nPING\r\n");
    net_send(c, big, n);
    for (int i = 0; i < 200; i++) {
        char want[32];
        snprintf(want, sizeof want, "+OK %d", i + 1);
        NET_EXPECT(c, want);
        NET_EXPECT(c, "+PONG");
    }
    NET_EXPECT(c, "+OK");
    NET_EXPECT_MSG(c, "p", 1, "000");
    NET_EXPECT(c, "+OK 1");
    NET_EXPECT_MSG(c, "p", 1, "001");
    NET_EXPECT(c, "-ERR unknown topic");
    NET_EXPECT(c, "+PONG");
    tc_close(c);
    net_stop(&d);
}
END_TEST

START_TEST(test_quit_flushes_then_closes)
{
    sd_t d;
    net_start(&d, "");
    tc_t *c = net_open(&d);

    /* Nothing after QUIT is run. */
    net_puts(c, "PING\r\nQUIT\r\nPUB t 1\r\nx\r\n");
    NET_EXPECT_RAW(c, "+PONG\r\n+BYE\r\n");
    ck_assert(tc_closed(c, 5000));
    tc_close(c);
    c = net_open(&d);
    net_puts(c, "TOPICS\r\n");
    NET_EXPECT(c, "+TOPICS 0");
    tc_close(c);
    net_stop(&d);
}
END_TEST

/* Counters after a known history: 3 PUBs to a (5, 6, 7 bytes), one
 * delayed PUB to b (8 bytes), a SUB with credit 1, a GET, an ACK and a
 * NACK. */
START_TEST(test_stats_fields_and_numbers)
{
    sd_t d;
    const char *body;
    size_t len;
    net_start(&d, "");
    tc_t *c = net_open(&d);

    NET_PUB(c, "a", "11111");
    NET_PUB(c, "a", "222222");
    NET_PUB(c, "a", "3333333");
    net_puts(c, "PUB b 8 delay=600000\r\n88888888\r\n");
    NET_EXPECT(c, "+OK 4");
    net_puts(c, "SUB a 1\r\n");
    NET_EXPECT(c, "+OK");
    NET_EXPECT_MSG(c, "a", 1, "11111");
    net_puts(c, "GET a\r\n");
    NET_EXPECT_MSG(c, "a", 1, "222222");
    net_puts(c, "ACK 1\r\n");
    NET_EXPECT(c, "+OK 1");
    NET_EXPECT_MSG(c, "a", 1, "3333333");
    net_puts(c, "NACK 2\r\n"); /* ready again; the SUB has no credit left */
    NET_EXPECT(c, "+OK");
    net_ping(c);

    net_puts(c, "STATS a\r\n");
    net_expect_stats(c);
    body = c->r.body;
    len = c->r.body_len;
    static const char *const topic_want[][2] = {
        {"ready", "1"},         {"delayed", "0"},       {"in_flight", "1"},
        {"bytes", "13"},        {"consumers", "1"},     {"blocked_producers", "0"},
        {"max_messages", "100000"}, {"max_bytes", "67108864"}, {"overflow", "block"},
        {"published", "3"},     {"delivered", "3"},     {"acked", "1"},
        {"redelivered", "1"},   {"dead", "0"},          {"dropped", "0"},
        {"rejected", "0"},
    };
    for (size_t i = 0; i < sizeof topic_want / sizeof topic_want[0]; i++) {
        const char *v = net_yaml_field(body, len, topic_want[i][0]);
        ck_assert_msg(v != NULL, "STATS a lacks %s", topic_want[i][0]);
        ck_assert_msg(strcmp(v, topic_want[i][1]) == 0, "STATS a %s: %s, want %s",
                      topic_want[i][0], v, topic_want[i][1]);
    }
    ck_assert_uint_eq(net_stat(c, "b", "delayed"), 1);
    ck_assert_uint_eq(net_stat(c, "b", "ready"), 0);
    ck_assert_uint_eq(net_stat(c, "b", "bytes"), 8);
    ck_assert_uint_eq(net_stat(c, "b", "consumers"), 0);

    tc_t *c2 = net_open(&d);
    net_ping(c2);
    net_puts(c, "STATS\r\n");
    net_expect_stats(c);
    body = c->r.body;
    len = c->r.body_len;
    static const char *const server_want[][2] = {
        {"connections", "2"}, {"topics", "2"},   {"messages", "3"},  {"bytes", "21"},
        {"published", "4"},   {"delivered", "3"}, {"acked", "1"},    {"redelivered", "1"},
        {"dead", "0"},        {"dropped", "0"},  {"rejected", "0"}, {"blocked_producers", "0"},
        {"  connected", "false"}, {"  lag_ops", "0"},
    };
    for (size_t i = 0; i < sizeof server_want / sizeof server_want[0]; i++) {
        const char *v = net_yaml_field(body, len, server_want[i][0]);
        ck_assert_msg(v != NULL, "STATS lacks %s", server_want[i][0]);
        ck_assert_msg(strcmp(v, server_want[i][1]) == 0, "STATS %s: %s, want %s",
                      server_want[i][0], v, server_want[i][1]);
    }
    ck_assert_ptr_nonnull(net_yaml_field(body, len, "version"));
    ck_assert_ptr_nonnull(net_yaml_field(body, len, "uptime_s"));
    ck_assert_ptr_nonnull(net_yaml_field(body, len, "redis"));
    tc_close(c2);
    tc_close(c);
    net_stop(&d);
}
END_TEST

/* Configured topics (and their dead-letter topics) exist from start-up;
 * TOPICS lists names in order, one per "\n"-ended line. */
START_TEST(test_topics_listing)
{
    sd_t d;
    net_start(&d, "topics:\n  orders:\n    dead_letter: orders.dead\n  audit: {}\n");
    tc_t *c = net_open(&d);

    net_puts(c, "TOPICS\r\n");
    NET_EXPECT_RAW(c, "+TOPICS 25\r\naudit\norders\norders.dead\n\r\n");
    ck_assert_uint_eq(net_stat(c, "audit", "ready"), 0);
    ck_assert_uint_eq(net_stat(c, NULL, "topics"), 3);
    NET_PUB(c, "zeta", "z");
    NET_PUB(c, "Alpha", "a");
    net_puts(c, "TOPICS\r\n");
    NET_EXPECT(c, "+TOPICS 36");
    ck_assert(memcmp(c->r.body, "Alpha\naudit\norders\norders.dead\nzeta\n", 36) == 0);
    tc_close(c);
    net_stop(&d);
}
END_TEST

START_TEST(test_unix_socket_listener)
{
    sd_t d;
    char path[108], yaml[512];
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    struct stat st;

    snprintf(path, sizeof path, "/tmp/sluice-net-%d-%ld.sock", (int)getpid(), random());
    snprintf(yaml, sizeof yaml, "listen:\n  - 127.0.0.1:0\n  - unix:%s\n", path);
    net_start(&d, yaml);
    tc_t *u = calloc(1, sizeof *u);
    u->cap = 1 << 16;
    u->buf = malloc(u->cap);
    u->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    strcpy(sa.sun_path, path);
    ck_assert_int_eq(connect(u->fd, (struct sockaddr *)&sa, sizeof sa), 0);
    net_ping(u);
    ck_assert_uint_eq(NET_PUB(u, "t", "over unix"), 1);

    tc_t *c = net_open(&d);
    net_puts(c, "GET t\r\n");
    ck_assert_uint_eq(NET_EXPECT_MSG(c, "t", 1, "over unix"), 1);
    tc_close(c);
    tc_close(u);
    net_stop(&d);
    ck_assert_msg(stat(path, &st) != 0, "the socket file was left behind");
}
END_TEST

/* With users, only AUTH, PING and QUIT work before AUTH; globs decide
 * what a user may PUB to and SUB/GET from. */
START_TEST(test_auth_and_acl)
{
    sd_t d;
    net_start(&d, "users:\n  alice:\n    password: s3cret\n    publish: [\"a.*\"]\n"
                  "    subscribe: [\"a.*\", \"b\"]\n");
    tc_t *c = net_open(&d);

    net_puts(c, "PUB a.x 1\r\nx\r\nTOPICS\r\nPING\r\nAUTH alice nope\r\nAUTH bob s3cret\r\n");
    NET_EXPECT(c, "-NOAUTH authentication required");
    NET_EXPECT(c, "-NOAUTH authentication required");
    NET_EXPECT(c, "+PONG");
    NET_EXPECT(c, "-NOAUTH invalid username or password");
    NET_EXPECT(c, "-NOAUTH invalid username or password");
    net_puts(c, "AUTH alice s3cret\r\n");
    NET_EXPECT(c, "+OK");
    ck_assert_uint_eq(NET_PUB(c, "a.x", "x"), 1);
    net_puts(c, "PUB b 1\r\ny\r\nGET c\r\nSUB c\r\nGET b\r\nGET a.x\r\n");
    NET_EXPECT(c, "-DENIED b");
    NET_EXPECT(c, "-DENIED c");
    NET_EXPECT(c, "-DENIED c");
    NET_EXPECT(c, "-TIMEOUT");
    NET_EXPECT_MSG(c, "a.x", 1, "x");
    ck_assert_uint_eq(net_stat(c, NULL, "published"), 1);
    net_puts(c, "QUIT\r\n");
    NET_EXPECT(c, "+BYE");
    tc_close(c);
    net_stop(&d);
}
END_TEST

Suite *net_basic_suite(void)
{
    Suite *s = suite_create("net_basic");
    TCase *t = tcase_create("commands");

    tcase_set_timeout(t, NET_TIMEOUT_S);
    tcase_add_test(t, test_example_session);
    tcase_add_test(t, test_replies_end_crlf_after_lf);
    tcase_add_test(t, test_every_command_happy_path);
    tcase_add_test(t, test_commands_case_insensitive_topics_not);
    tcase_add_test(t, test_pipelined_replies_in_order);
    tcase_add_test(t, test_quit_flushes_then_closes);
    tcase_add_test(t, test_stats_fields_and_numbers);
    tcase_add_test(t, test_topics_listing);
    tcase_add_test(t, test_unix_socket_listener);
    tcase_add_test(t, test_auth_and_acl);
    suite_add_tcase(s, t);
    return s;
}
