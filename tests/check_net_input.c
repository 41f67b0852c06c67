/* check_net_input.c: end-to-end tests of the limits that protect the
 * broker (max_line, max_message, max_connections, auto_create_topics,
 * output_buffer) and of bad input: junk, NUL bytes, bad UTF-8, clients
 * that vanish mid-payload or with messages in flight.
 */
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check_net.h"

START_TEST(test_max_line)
{
    sd_t d;
    char line[256];
    net_start(&d, "limits:\n  max_line: 64B\n");
    tc_t *c = net_open(&d);

    /* Exactly max_line bytes before the terminator: a command like any other. */
    memset(line, 'q', sizeof line);
    memcpy(line, "GET ", 4);
    memcpy(line + 64, "\r\n", 2);
    net_send(c, line, 66);
    NET_EXPECT(c, "-TIMEOUT");
    memcpy(line, "PING", 4);
    memset(line + 4, ' ', 60);
    net_send(c, line, 65);
    line[64] = '\n';
    net_send(c, line + 64, 1);
    NET_EXPECT(c, "+PONG");
    /* One byte more: refused, and the connection is closed. */
    memset(line, 'q', sizeof line);
    memcpy(line, "GET ", 4);
    memcpy(line + 65, "\r\n", 2);
    net_send(c, line, 67);
    NET_EXPECT_RAW(c, "-ERR line too long\r\n");
    ck_assert(tc_closed(c, 5000));
    tc_close(c);

    /* An unterminated line is refused as soon as it is too long. */
    c = net_open(&d);
    memset(line, 'q', sizeof line);
    net_send(c, line, 100);
    NET_EXPECT(c, "-ERR line too long");
    ck_assert(tc_closed(c, 5000));
    tc_close(c);

    c = net_open(&d);
    net_ping(c);
    tc_close(c);
    net_stop(&d);
}
END_TEST

START_TEST(test_max_message)
{
    sd_t d;
    char *big = malloc(4000);
    net_start(&d, "limits:\n  max_message: 1KiB\n");
    tc_t *c = net_open(&d);

    /* The refused payload is skipped even when it looks like commands. */
    for (size_t i = 0; i + 6 <= 2000; i += 6)
        memcpy(big + i, "PING\r\n", 6);
    memset(big + 1998, 'x', 2);
    net_puts(c, "PUB t 2000\r\n");
    net_send(c, big, 1000);
    usleep(50000); /* arrives in two reads */
    net_send(c, big + 1000, 1000);
    net_puts(c, "\r\nPING\r\n");
    NET_EXPECT(c, "-TOOBIG message of 2000 bytes exceeds max_message 1024");
    NET_EXPECT(c, "+PONG");
    net_ping(c);
    net_puts(c, "TOPICS\r\n");
    NET_EXPECT(c, "+TOPICS 0");

    /* max_message itself fits. */
    memset(big, 'm', 1024);
    ck_assert_uint_eq(net_pub(c, "t", big, 1024), 1);
    net_puts(c, "GET t\r\n");
    net_expect_msg(c, "t", 1, big, 1024);
    /* A huge count is refused from the line alone. */
    net_puts(c, "PUB t 9223372036854775808\r\n");
    NET_EXPECT(c, "-TOOBIG message of 9223372036854775808 bytes exceeds max_message 1024");
    tc_close(c);
    free(big);
    net_stop(&d);
}
END_TEST

START_TEST(test_max_connections)
{
    sd_t d;
    tc_t *x = NULL;
    net_start(&d, "limits:\n  max_connections: 2\n");
    tc_t *a = net_open(&d), *b = net_open(&d);

    net_ping(a);
    net_ping(b);
    tc_t *c = net_open(&d);
    NET_EXPECT(c, "-BUSY too many connections");
    ck_assert(tc_closed(c, 5000));
    tc_close(c);
    net_ping(a);

    /* A freed slot can be taken again (once the close is seen). */
    tc_close(b);
    for (int i = 0; i < 500 && x == NULL; i++) {
        x = net_open(&d);
        net_puts(x, "PING\r\n");
        if (strcmp(net_reply(x), "+PONG") != 0) {
            tc_close(x);
            x = NULL;
            usleep(10000);
        }
    }
    ck_assert_ptr_nonnull(x);
    ck_assert_uint_eq(net_stat(x, NULL, "connections"), 2);
    tc_close(x);
    tc_close(a);
    net_stop(&d);
}
END_TEST

START_TEST(test_auto_create_off)
{
    sd_t d;
    net_start(&d, "auto_create_topics: false\ntopics:\n  listed:\n    dead_letter: listed.dl\n");
    tc_t *c = net_open(&d);

    net_puts(c, "PUB other 1\r\nx\r\nSUB other\r\nGET other 5000\r\nJOIN other\r\nSTATS other\r\n");
    NET_EXPECT(c, "-ERR unknown topic (auto_create_topics is off)");
    NET_EXPECT(c, "-ERR unknown topic (auto_create_topics is off)");
    NET_EXPECT(c, "-ERR unknown topic (auto_create_topics is off)");
    NET_EXPECT(c, "+OK");
    NET_EXPECT(c, "-ERR unknown topic");
    ck_assert_uint_eq(NET_PUB(c, "listed", "x"), 1);
    ck_assert_uint_eq(NET_PUB(c, "listed.dl", "y"), 2);
    net_puts(c, "TOPICS\r\n");
    NET_EXPECT_RAW(c, "+TOPICS 17\r\nlisted\nlisted.dl\n\r\n");
    tc_close(c);
    net_stop(&d);
}
END_TEST

/* A consumer that never reads, with a huge credit, is paused once its
 * output passes output_buffer: the others still get messages and STATS. */
START_TEST(test_output_buffer_slow_consumer)
{
    enum { N = 400, SIZE = 32 * 1024 };
    sd_t d;
    unsigned got = 0;
    uint64_t id;
    char *payload = malloc(SIZE);

    net_start(&d, "limits:\n  output_buffer: 64KiB\n");
    tc_t *slow = net_open(&d), *p = net_open(&d), *c = net_open(&d);

    net_puts(slow, "SUB o 1000000\r\n");
    NET_EXPECT(slow, "+OK");
    for (int i = 0; i < N; i++) {
        memset(payload, 'a' + i % 26, SIZE);
        net_pub(p, "o", payload, SIZE);
    }
    /* 12.5 MiB cannot all sit in one client's kernel buffers. */
    ck_assert_uint_gt(net_stat(p, "o", "ready"), 0);

    /* Credit 1: each ACK brings the next message, before the STATS behind it. */
    net_puts(c, "SUB o 1\r\n");
    NET_EXPECT(c, "+OK");
    ck_assert_int_eq(tc_reply(c), 0);
    ck_assert_int_eq(c->r.type, REPLY_MSG);
    ck_assert_uint_eq(c->r.body_len, SIZE);
    id = c->r.id;
    for (;;) {
        got++;
        net_sendf(c, "ACK %llu\r\nSTATS o\r\n", (unsigned long long)id);
        NET_EXPECT(c, "+OK 1");
        ck_assert_int_eq(tc_reply(c), 0);
        if (c->r.type == REPLY_STATS)
            break;
        ck_assert_int_eq(c->r.type, REPLY_MSG);
        ck_assert_uint_eq(c->r.body_len, SIZE);
        id = c->r.id;
        ck_assert_int_eq(tc_reply(c), 0);
        ck_assert_int_eq(c->r.type, REPLY_STATS);
    }
    ck_assert_str_eq(net_yaml_field(c->r.body, c->r.body_len, "ready"), "0");
    ck_assert_uint_gt(got, 0);
    /* What the slow one holds is all that is in flight. */
    ck_assert_uint_eq(net_stat(c, "o", "in_flight"), N - got);
    ck_assert_uint_eq(net_stat(c, "o", "acked"), got);
    ck_assert_uint_gt(N - got, 0);
    net_ping(p);
    net_puts(c, "UNSUB o\r\n");
    NET_EXPECT(c, "+OK");
    /* When it reads at last, it gets all it was sent, each message once. */
    for (unsigned i = 0; i < N - got; i++) {
        ck_assert_int_eq(tc_reply(slow), 0);
        ck_assert_int_eq(slow->r.type, REPLY_MSG);
        ck_assert_uint_eq(slow->r.id, i + 1);
        ck_assert_uint_eq(slow->r.body_len, SIZE);
        ck_assert_int_eq(slow->r.body[0], 'a' + (int)i % 26);
    }
    net_ping(slow);
    /* Its close gives them back. */
    tc_close(slow);
    net_wait_stat(c, "o", "in_flight", 0);
    ck_assert_uint_eq(net_stat(c, "o", "ready"), N - got);
    free(payload);
    tc_close(p);
    tc_close(c);
    net_stop(&d);
}
END_TEST

/* A client that pipelines without reading replies is no longer read once
 * its output passes output_buffer; nothing is lost when it drains. */
/* The daemon's resident memory in KiB, from /proc; -1 when it says
 * nothing useful: a sanitizer's quarantine keeps freed memory resident. */
static long net_rss_kib(pid_t pid)
{
    char path[64], line[512];
    long kib = -1;
    bool asan = false;
    FILE *f;

    snprintf(path, sizeof path, "/proc/%d/maps", (int)pid);
    f = fopen(path, "r");
    if (f == NULL)
        return -1;
    while (!asan && fgets(line, sizeof line, f))
        asan = strstr(line, "libasan") != NULL;
    fclose(f);
    if (asan)
        return -1;
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    f = fopen(path, "r");
    if (f == NULL)
        return -1;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "VmRSS: %ld kB", &kib) == 1)
            break;
    fclose(f);
    return kib;
}

/* A client that pipelines without reading replies is no longer read once
 * its output passes output_buffer: 10 MiB of replies it does not read do
 * not pile up in the broker, which still answers others; nothing is lost
 * when it finally reads. */
START_TEST(test_output_buffer_pipeliner)
{
    enum { N = 1500000 };
    sd_t d;
    int status;
    size_t len = (size_t)N * 6;
    char *cmds = malloc(len);
    net_start(&d, "limits:\n  output_buffer: 64KiB\n");
    tc_t *c = net_open(&d), *o = net_open(&d);
    long rss0, rss1;

    for (size_t i = 0; i < N; i++)
        memcpy(cmds + i * 6, "PING\r\n", 6);
    net_ping(c);
    rss0 = net_rss_kib(d.pid);
    /* A child sends; the parent reads only once it stalled. */
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0)
        _exit(tc_send(c, cmds, len) == 0 ? 0 : 1);
    usleep(300000);
    net_ping(o);
    rss1 = net_rss_kib(d.pid);
    /* The kernel holds a few MiB at most; the broker its input buffer and
     * output_buffer. Reading on would have made it hold the rest. */
    if (rss0 > 0 && rss1 > 0)
        ck_assert_msg(rss1 - rss0 < 4096, "the broker grew by %ld KiB", rss1 - rss0);
    for (int i = 0; i < N; i++) {
        const char *l = tc_line(c);
        ck_assert_msg(l != NULL && strcmp(l, "+PONG") == 0, "reply %d: %s", i, l ? l : "none");
    }
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    net_ping(c);
    free(cmds);
    tc_close(c);
    tc_close(o);
    net_stop(&d);
}
END_TEST

START_TEST(test_bad_input_keeps_connection)
{
    sd_t d;
    static const char nul_line[] = "PI\0NG\r\nSUB a\0b\r\nPUB t\0 1\r\nx\r\n";
    net_start(&d, "");
    tc_t *c = net_open(&d);

    net_puts(c, "FROB t\r\n");
    NET_EXPECT(c, "-ERR unknown command");
    net_ping(c);
    net_puts(c, "\x01\x02\xff\xfe\x7f junk\r\n");
    NET_EXPECT(c, "-ERR unknown command");
    net_ping(c);
    net_send(c, nul_line, sizeof nul_line - 1);
    NET_EXPECT(c, "-ERR unknown command");
    NET_EXPECT(c, "-ERR bad topic");
    NET_EXPECT(c, "-ERR bad topic");
    net_ping(c);
    /* Bad UTF-8 (and good UTF-8: topics are ASCII only). */
    net_puts(c, "\xc3\x28\r\nPUB caf\xc3 1\r\nx\r\nSUB caf\xc3\xa9\r\n");
    NET_EXPECT(c, "-ERR unknown command");
    NET_EXPECT(c, "-ERR bad topic");
    NET_EXPECT(c, "-ERR bad topic");
    net_ping(c);
    /* Malformed forms of good commands. */
    net_puts(c, "PUB t abc\r\nPUB t\r\nSUB\r\nSUB t -1\r\nSUB t 4294967296\r\nGET t x\r\n"
                "JOIN t 1 2\r\nSTATS a b\r\nPING x\r\n");
    NET_EXPECT(c, "-ERR bad byte count");
    NET_EXPECT(c, "-ERR wrong number of arguments for 'pub'");
    NET_EXPECT(c, "-ERR wrong number of arguments for 'sub'");
    NET_EXPECT(c, "-ERR bad credit");
    NET_EXPECT(c, "-ERR bad credit");
    NET_EXPECT(c, "-ERR bad timeout");
    NET_EXPECT(c, "-ERR wrong number of arguments for 'join'");
    NET_EXPECT(c, "-ERR wrong number of arguments for 'stats'");
    NET_EXPECT(c, "-ERR wrong number of arguments for 'ping'");
    /* A payload with a wrong trailer is not enqueued. */
    net_puts(c, "PUB t 3\r\nabcXY\r\nPING\r\n");
    NET_EXPECT(c, "-ERR payload not followed by \\r\\n");
    NET_EXPECT(c, "+PONG");
    /* Binary-safe payloads, and empty lines get no reply. */
    static const char binary[] = "\r\n\nPUB t 5\r\n\0\r\n\n\xff\r\n";
    net_send(c, binary, sizeof binary - 1);
    NET_EXPECT(c, "+OK 1");
    net_puts(c, "GET t\r\n");
    net_expect_msg(c, "t", 1, "\0\r\n\n\xff", 5);
    ck_assert_uint_eq(net_stat(c, NULL, "published"), 1);
    tc_close(c);
    net_stop(&d);
}
END_TEST

/* A producer that vanishes mid-payload loses nothing it was told +OK for,
 * and enqueues nothing of the half-sent PUB. */
START_TEST(test_vanish_mid_payload)
{
    sd_t d;
    net_start(&d, "topics:\n  v: {}\n");
    tc_t *p = net_open(&d), *o = net_open(&d);

    NET_PUB(p, "t", "kept1");
    NET_PUB(p, "t", "kept2");
    net_puts(p, "PUB t 10\r\nhello");
    tc_close(p);
    p = net_open(&d);
    net_puts(p, "PUB v 10\r\nhello");
    tc_close(p);
    net_wait_stat(o, NULL, "connections", 1);
    ck_assert_uint_eq(net_stat(o, "v", "ready"), 0);
    ck_assert_uint_eq(net_stat(o, "v", "published"), 0);
    ck_assert_uint_eq(net_stat(o, "t", "ready"), 2);
    ck_assert_uint_eq(net_stat(o, NULL, "messages"), 2);
    net_puts(o, "GET t\r\nGET t\r\nGET t\r\n");
    NET_EXPECT_MSG(o, "t", 1, "kept1");
    NET_EXPECT_MSG(o, "t", 1, "kept2");
    NET_EXPECT(o, "-TIMEOUT");
    tc_close(o);
    net_stop(&d);
}
END_TEST

/* Large payloads that arrive across reads are read straight into their
 * message (conn.c's conn_pend_begin): sent in pieces, with every trailer
 * form split where it can be, they arrive intact; a wrong trailer is
 * refused and the connection resynchronises; a producer that vanishes
 * half-way enqueues nothing. */
static void net_send_slowly(tc_t *c, const char *p, size_t n, size_t piece)
{
    for (size_t off = 0; off < n; off += piece) {
        net_send(c, p + off, n - off < piece ? n - off : piece);
        usleep(20000);
    }
}

START_TEST(test_large_payload_in_pieces)
{
    sd_t d;
    size_t n = 100000;
    char *big = malloc(n);
    ck_assert_ptr_nonnull(big);
    for (size_t i = 0; i < n; i++)
        big[i] = (char)(i * 7 + 3);
    net_start(&d, "");
    tc_t *c = net_open(&d);

    net_sendf(c, "PUB big %zu\r\n", n);
    net_send_slowly(c, big, n, 30000);
    net_send(c, "\r", 1);
    usleep(20000);
    net_send(c, "\n", 1);
    NET_EXPECT(c, "+OK 1");
    net_sendf(c, "PUB big %zu delay=0\r\n", n);
    net_send_slowly(c, big, n, 60000);
    net_puts(c, "\nPING\r\n");
    NET_EXPECT(c, "+OK 2");
    NET_EXPECT(c, "+PONG");
    net_sendf(c, "PUB big %zu\r\n", n);
    net_send_slowly(c, big, n, 40000);
    net_puts(c, "XY\r\nPING\r\n");
    NET_EXPECT(c, "-ERR payload not followed by \\r\\n");
    NET_EXPECT(c, "+PONG");
    net_puts(c, "GET big\r\nGET big\r\n");
    net_expect_msg(c, "big", 1, big, n);
    net_expect_msg(c, "big", 1, big, n);
    ck_assert_uint_eq(net_stat(c, "big", "published"), 2);

    tc_t *p = net_open(&d);
    net_sendf(p, "PUB big %zu\r\n", n);
    net_send_slowly(p, big, n / 2, 25000);
    tc_close(p);
    net_wait_stat(c, NULL, "connections", 1);
    ck_assert_uint_eq(net_stat(c, "big", "published"), 2);
    ck_assert_uint_eq(net_stat(c, "big", "ready"), 0);
    free(big);
    tc_close(c);
    net_stop(&d);
}
END_TEST

/* A consumer that closes (even mid-command) gives its messages back. */
START_TEST(test_consumer_close_redelivers)
{
    sd_t d;
    net_start(&d, "");
    tc_t *c = net_open(&d), *o = net_open(&d);

    NET_PUB(o, "t", "a");
    NET_PUB(o, "t", "b");
    net_puts(c, "SUB t 1\r\nGET t\r\n");
    NET_EXPECT(c, "+OK");
    NET_EXPECT_MSG(c, "t", 1, "a");
    NET_EXPECT_MSG(c, "t", 1, "b");
    net_puts(c, "ACK 1 2"); /* never terminated: never run */
    shutdown(c->fd, SHUT_RDWR);
    tc_close(c);
    net_puts(o, "GET t 20000\r\nGET t 20000\r\n");
    NET_EXPECT_MSG(o, "t", 2, "a");
    NET_EXPECT_MSG(o, "t", 2, "b");
    ck_assert_uint_eq(net_stat(o, "t", "acked"), 0);
    tc_close(o);
    net_stop(&d);
}
END_TEST

/* A waiting GET holds back the commands behind it; the broker then reads
 * only one maximal command's worth of them, and runs them all after. */
START_TEST(test_waiting_get_bounded_input)
{
    enum { N = 200000 };
    sd_t d;
    int status;
    size_t len = (size_t)N * 6;
    char *cmds = malloc(len);
    net_start(&d, "limits:\n  max_message: 16KiB\n");
    tc_t *c = net_open(&d), *p = net_open(&d);

    for (size_t i = 0; i < N; i++)
        memcpy(cmds + i * 6, "PING\r\n", 6);
    net_puts(c, "PING\r\nGET w 20000\r\n");
    NET_EXPECT(c, "+PONG");
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0)
        _exit(tc_send(c, cmds, len) == 0 ? 0 : 1);
    usleep(300000);
    net_ping(p);
    NET_PUB(p, "w", "wake");
    NET_EXPECT_MSG(c, "w", 1, "wake");
    for (int i = 0; i < N; i++) {
        const char *l = tc_line(c);
        ck_assert_msg(l != NULL && strcmp(l, "+PONG") == 0, "reply %d: %s", i, l ? l : "none");
    }
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    net_ping(c);
    free(cmds);
    tc_close(c);
    tc_close(p);
    net_stop(&d);
}
END_TEST

/* A client that only shuts its sending side still gets the replies to
 * what it sent, a waiting GET included (`printf ... | nc -q1` waits for
 * its message); then the connection closes and what it did not ack
 * goes back to the topic. */
START_TEST(test_half_close)
{
    sd_t d;
    net_start(&d, "");
    tc_t *c = net_open(&d), *o = net_open(&d);

    net_puts(c, "PUB t 2\r\nhi\r\nPING\r\nGET t\r\nACK 1\r\nSTATS t");
    shutdown(c->fd, SHUT_WR);
    NET_EXPECT(c, "+OK 1");
    NET_EXPECT(c, "+PONG");
    NET_EXPECT_MSG(c, "t", 1, "hi");
    NET_EXPECT(c, "+OK 1");
    ck_assert(tc_closed(c, 5000));
    tc_close(c);

    c = net_open(&d);
    net_puts(c, "GET t 20000\r\nPING\r\n");
    shutdown(c->fd, SHUT_WR);
    net_wait_stat(o, NULL, "connections", 2);
    NET_PUB(o, "t", "later");
    NET_EXPECT_MSG(c, "t", 1, "later");
    NET_EXPECT(c, "+PONG");
    ck_assert(tc_closed(c, 5000));
    tc_close(c);
    net_wait_stat(o, NULL, "connections", 1);
    net_puts(o, "GET t\r\n");
    NET_EXPECT_MSG(o, "t", 2, "later");
    tc_close(o);
    net_stop(&d);
}
END_TEST

Suite *net_input_suite(void)
{
    Suite *s = suite_create("net_input");
    TCase *t = tcase_create("input");

    tcase_set_timeout(t, NET_TIMEOUT_S);
    tcase_add_test(t, test_max_line);
    tcase_add_test(t, test_max_message);
    tcase_add_test(t, test_max_connections);
    tcase_add_test(t, test_auto_create_off);
    tcase_add_test(t, test_output_buffer_slow_consumer);
    tcase_add_test(t, test_output_buffer_pipeliner);
    tcase_add_test(t, test_bad_input_keeps_connection);
    tcase_add_test(t, test_vanish_mid_payload);
    tcase_add_test(t, test_large_payload_in_pieces);
    tcase_add_test(t, test_consumer_close_redelivers);
    tcase_add_test(t, test_half_close);
    tcase_add_test(t, test_waiting_get_bounded_input);
    suite_add_tcase(s, t);
    return s;
}
