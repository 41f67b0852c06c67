/* check_net_bounds.c: end-to-end tests of bounds and backpressure: the
 * reject, drop-oldest and block policies, max_bytes and max_memory, and
 * the proof that a blocked producer's socket is really not read while the
 * broker keeps serving everyone else.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check_net.h"

START_TEST(test_reject)
{
    sd_t d;
    net_start(&d, "topics:\n  r:\n    max_messages: 2\n    overflow: reject\n");
    tc_t *c = net_open(&d);

    NET_PUB(c, "r", "a");
    NET_PUB(c, "r", "b");
    net_puts(c, "PUB r 1\r\nc\r\nPING\r\n");
    NET_EXPECT(c, "-FULL r");
    NET_EXPECT(c, "+PONG");
    ck_assert_uint_eq(net_stat(c, "r", "rejected"), 1);
    ck_assert_uint_eq(net_stat(c, "r", "ready"), 2);
    ck_assert_str_eq(net_stat_str(c, "r", "overflow"), "reject");
    /* In-flight messages count too; an ack makes room. */
    net_puts(c, "GET r\r\n");
    NET_EXPECT_MSG(c, "r", 1, "a");
    net_puts(c, "PUB r 1\r\nc\r\nACK 1\r\nPUB r 1\r\nc\r\n");
    NET_EXPECT(c, "-FULL r");
    NET_EXPECT(c, "+OK 1");
    NET_EXPECT(c, "+OK 3");
    ck_assert_uint_eq(net_stat(c, NULL, "rejected"), 2);
    tc_close(c);
    net_stop(&d);
}
END_TEST

START_TEST(test_drop_oldest)
{
    sd_t d;
    net_start(&d, "topics:\n  d:\n    max_messages: 2\n    overflow: drop-oldest\n");
    tc_t *c = net_open(&d);

    NET_PUB(c, "d", "a");
    NET_PUB(c, "d", "b");
    ck_assert_uint_eq(NET_PUB(c, "d", "c"), 3);
    ck_assert_uint_eq(net_stat(c, "d", "dropped"), 1);
    ck_assert_uint_eq(net_stat(c, "d", "ready"), 2);
    net_puts(c, "GET d\r\n");
    ck_assert_uint_eq(NET_EXPECT_MSG(c, "d", 1, "b"), 2);
    /* In flight is never dropped: only the ready "c" can go. */
    NET_PUB(c, "d", "e");
    ck_assert_uint_eq(net_stat(c, "d", "dropped"), 2);
    net_puts(c, "GET d\r\n");
    NET_EXPECT_MSG(c, "d", 1, "e");
    /* Nothing ready to drop: -FULL, nothing evicted. */
    net_puts(c, "PUB d 1\r\nf\r\n");
    NET_EXPECT(c, "-FULL d");
    ck_assert_uint_eq(net_stat(c, "d", "dropped"), 2);
    ck_assert_uint_eq(net_stat(c, "d", "rejected"), 1);
    ck_assert_uint_eq(net_stat(c, "d", "in_flight"), 2);
    ck_assert_uint_eq(net_stat(c, NULL, "dropped"), 2);
    tc_close(c);
    net_stop(&d);
}
END_TEST

START_TEST(test_max_bytes_exact_fit)
{
    sd_t d;
    net_start(&d, "topics:\n  m:\n    max_bytes: 10B\n    overflow: reject\n"
                  "  mb:\n    max_bytes: 10B\n");
    tc_t *c = net_open(&d);

    NET_PUB(c, "m", "1234");
    NET_PUB(c, "m", "123456");
    ck_assert_uint_eq(net_stat(c, "m", "bytes"), 10);
    net_puts(c, "PUB m 1\r\nx\r\n");
    NET_EXPECT(c, "-FULL m");
    net_puts(c, "GET m\r\nACK 1\r\n");
    NET_EXPECT_MSG(c, "m", 1, "1234");
    NET_EXPECT(c, "+OK 1");
    NET_PUB(c, "m", "abcd");
    ck_assert_uint_eq(net_stat(c, "m", "bytes"), 10);

    /* A message that can never fit is refused at once even under block. */
    net_puts(c, "PUB mb 11\r\n12345678901\r\nPING\r\n");
    NET_EXPECT(c, "-FULL mb");
    NET_EXPECT(c, "+PONG");
    NET_PUB(c, "mb", "1234567890");
    ck_assert_uint_eq(net_stat(c, "mb", "bytes"), 10);
    tc_close(c);
    net_stop(&d);
}
END_TEST

/* limits.max_memory bounds all topics together; a producer blocked on it
 * resumes when another topic frees room. */
START_TEST(test_max_memory)
{
    sd_t d;
    net_start(&d, "limits:\n  max_memory: 100B\n"
                  "topics:\n  x:\n    overflow: reject\n  y: {}\n");
    tc_t *c = net_open(&d), *p = net_open(&d), *o = net_open(&d);
    char sixty[61];

    memset(sixty, 's', 60);
    sixty[60] = '\0';
    net_pub(c, "x", sixty, 60);
    net_sendf(c, "PUB x 41\r\n%.41s\r\n", sixty);
    NET_EXPECT(c, "-FULL x");
    net_sendf(p, "PUB y 41\r\n%.41s\r\n", sixty);
    net_wait_stat(o, "y", "blocked_producers", 1);
    ck_assert_uint_eq(net_stat(o, NULL, "blocked_producers"), 1);
    net_ping(o);
    net_puts(c, "GET x\r\nACK 1\r\n");
    NET_EXPECT_MSG(c, "x", 1, sixty);
    NET_EXPECT(c, "+OK 1");
    NET_EXPECT(p, "+OK 2");
    ck_assert_uint_eq(net_stat(o, NULL, "bytes"), 41);
    tc_close(c);
    tc_close(p);
    tc_close(o);
    net_stop(&d);
}
END_TEST

START_TEST(test_block_timeout)
{
    sd_t d;
    net_start(&d, "topics:\n  bt:\n    max_messages: 1\n    block_timeout: 200ms\n");
    tc_t *c = net_open(&d);

    NET_PUB(c, "bt", "x");
    net_puts(c, "PUB bt 1\r\ny\r\nPING\r\n");
    NET_EXPECT(c, "-FULL bt");
    NET_EXPECT(c, "+PONG");
    ck_assert_uint_eq(net_stat(c, "bt", "rejected"), 1);
    ck_assert_uint_eq(net_stat(c, "bt", "blocked_producers"), 0);
    ck_assert_uint_eq(net_stat(c, "bt", "ready"), 1);
    ck_assert_uint_eq(net_stat(c, NULL, "rejected"), 1);
    tc_close(c);
    net_stop(&d);
}
END_TEST

/* max_lag end to end: with a subscriber, 2 ready messages park the next
 * PUB; a delivery (credit given, no ACK yet) lets it in; STATS shows it. */
START_TEST(test_max_lag)
{
    sd_t d;
    net_start(&d, "topics:\n  l:\n    max_lag: 2\n");
    tc_t *p = net_open(&d), *c = net_open(&d);

    net_puts(c, "SUB l 0\r\n");
    NET_EXPECT(c, "+OK");
    NET_PUB(p, "l", "a");
    NET_PUB(p, "l", "b");
    net_puts(p, "PUB l 1\r\nc\r\n");
    net_wait_stat(c, "l", "blocked_producers", 1);
    ck_assert_uint_eq(net_stat(c, "l", "max_lag"), 2);
    ck_assert_uint_eq(net_stat(c, "l", "ready"), 2);
    net_puts(c, "SUB l 1\r\n");
    NET_EXPECT(c, "+OK");
    NET_EXPECT_MSG(c, "l", 1, "a");
    NET_EXPECT(p, "+OK 3");
    ck_assert_uint_eq(net_stat(c, "l", "ready"), 2);
    net_ping(p);
    tc_close(p);
    tc_close(c);
    net_stop(&d);
}
END_TEST

/* Parked producers resume strictly in the order they parked. */
START_TEST(test_block_fifo)
{
    sd_t d;
    net_start(&d, "topics:\n  f:\n    max_messages: 1\n");
    tc_t *p0 = net_open(&d), *p1 = net_open(&d), *p2 = net_open(&d), *c = net_open(&d);

    NET_PUB(p0, "f", "x");
    net_puts(p1, "PUB f 3\r\none\r\n");
    net_wait_stat(c, "f", "blocked_producers", 1);
    net_puts(p2, "PUB f 3\r\ntwo\r\n");
    net_wait_stat(c, "f", "blocked_producers", 2);
    ck_assert_uint_eq(net_stat(c, NULL, "blocked_producers"), 2);

    net_puts(c, "GET f\r\nACK 1\r\n");
    NET_EXPECT_MSG(c, "f", 1, "x");
    NET_EXPECT(c, "+OK 1");
    NET_EXPECT(p1, "+OK 2");
    net_wait_stat(c, "f", "blocked_producers", 1);
    net_puts(c, "GET f\r\nACK 2\r\n");
    NET_EXPECT_MSG(c, "f", 1, "one");
    NET_EXPECT(c, "+OK 1");
    NET_EXPECT(p2, "+OK 3");
    net_puts(c, "GET f\r\n");
    NET_EXPECT_MSG(c, "f", 1, "two");
    /* Resumed producers are read again. */
    net_ping(p1);
    net_ping(p2);
    tc_close(p0);
    tc_close(p1);
    tc_close(p2);
    tc_close(c);
    net_stop(&d);
}
END_TEST

/* ---- the block policy is real flow control (issue 3) ---- */

#define BLK_PAYLOAD 1024
#define BLK_EXTRA 20          /* PUBs sent after the producer was stopped */
#define BLK_MAX_BYTES (64u << 20)

/* Message seq's payload: its number, then a pattern that depends on it. */
static void blk_payload(char *out, unsigned seq)
{
    int n = snprintf(out, BLK_PAYLOAD, "seq=%08u:", seq);

    for (size_t i = (size_t)n; i < BLK_PAYLOAD; i++)
        out[i] = (char)('a' + (seq + i) % 26);
}

static size_t blk_frame(char *out, unsigned seq)
{
    size_t n = (size_t)snprintf(out, 64, "PUB b %d\r\n", BLK_PAYLOAD);

    blk_payload(out + n, seq);
    memcpy(out + n + BLK_PAYLOAD, "\r\n", 2);
    return n + BLK_PAYLOAD + 2;
}

/* Send PUBs on a non-blocking socket, going on from frame *whole (*off
 * bytes of it sent), until the kernel takes no more and stays full. */
static void blk_fill(int fd, unsigned *whole, size_t *off)
{
    char frame[BLK_PAYLOAD + 64];
    size_t total = 0;

    for (;;) {
        struct pollfd pfd = {.fd = fd, .events = POLLOUT};
        size_t len = blk_frame(frame, *whole);
        ssize_t n = send(fd, frame + *off, len - *off, MSG_NOSIGNAL);

        if (n > 0) {
            *off += (size_t)n;
            total += (size_t)n;
            if (*off == len) {
                (*whole)++;
                *off = 0;
            }
            ck_assert_msg(total < BLK_MAX_BYTES, "the broker read %zu bytes of a blocked producer",
                          total);
            continue;
        }
        ck_assert_msg(n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK), "send: %s",
                      strerror(errno));
        /* EAGAIN may only mean the broker is slower than us: it must stay
         * full. */
        if (poll(&pfd, 1, 500) == 0)
            return;
    }
}

/* A child sends the rest of frame `first` (from byte off) and `count`
 * more whole frames on a blocking socket, while the parent consumes. */
static pid_t blk_send_rest(int fd, unsigned first, size_t off, unsigned count)
{
    pid_t pid = fork();

    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        char frame[BLK_PAYLOAD + 64];
        int ok = 1;
        for (unsigned i = 0; i < count && ok; i++) {
            size_t len = blk_frame(frame, first + i), from = i == 0 ? off : 0;
            for (size_t sent = from; sent < len && ok;) {
                ssize_t n = send(fd, frame + sent, len - sent, MSG_NOSIGNAL);
                if (n > 0)
                    sent += (size_t)n;
                else if (n < 0 && errno != EINTR)
                    ok = 0;
            }
        }
        _exit(ok ? 0 : 1);
    }
    return pid;
}

START_TEST(test_block_stops_reading_producer)
{
    sd_t d;
    int sndbuf = 16384, status;
    size_t off;
    unsigned whole = 0, total, msgs = 0, acks = 0;
    uint64_t *ids;
    char want[BLK_PAYLOAD];

    net_start(&d, "topics:\n  b:\n    max_messages: 4\n    overflow: block\n");
    tc_t *p = net_open(&d), *o = net_open(&d), *c = net_open(&d);

    /* A small send buffer so EAGAIN comes after kilobytes, not megabytes. */
    setsockopt(p->fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof sndbuf);
    fcntl(p->fd, F_SETFL, fcntl(p->fd, F_GETFL) | O_NONBLOCK);
    off = 0;
    blk_fill(p->fd, &whole, &off);
    ck_assert_uint_gt(whole, 4);
    /* Parked for sure now; then whatever the broker read before parking is
     * made up for, and the socket stays full: it is not read. */
    net_wait_stat(o, "b", "blocked_producers", 1);
    blk_fill(p->fd, &whole, &off);

    /* The broker stopped reading the producer, not serving the others. */
    net_ping(o);
    ck_assert_uint_eq(net_stat(o, "b", "blocked_producers"), 1);
    ck_assert_uint_eq(net_stat(o, "b", "ready"), 4);
    ck_assert_uint_eq(net_stat(o, NULL, "blocked_producers"), 1);
    net_ping(o);

    total = (off ? whole + 1 : whole) + BLK_EXTRA;
    ids = calloc(total, sizeof *ids);
    for (unsigned i = 0; i < 4; i++) {
        ck_assert_int_eq(tc_reply(p), 0);
        ck_assert_int_eq(p->r.type, REPLY_OK);
        ids[i] = strtoull(p->r.text, NULL, 10);
    }

    /* The producer goes on (blocking) while a consumer drains and acks. */
    fcntl(p->fd, F_SETFL, fcntl(p->fd, F_GETFL) & ~O_NONBLOCK);
    pid_t child = blk_send_rest(p->fd, whole, off, total - whole);
    net_puts(c, "SUB b 4\r\n");
    NET_EXPECT(c, "+OK");
    while (msgs < total || acks < total) {
        ck_assert_int_eq(tc_reply(c), 0);
        if (c->r.type == REPLY_OK) {
            ck_assert(c->r.text_len == 1 && c->r.text[0] == '1');
            acks++;
            continue;
        }
        ck_assert_int_eq(c->r.type, REPLY_MSG);
        ck_assert_uint_lt(msgs, total);
        ck_assert(c->r.topic_len == 1 && c->r.topic[0] == 'b');
        ck_assert_uint_eq(c->r.attempt, 1);
        ck_assert_uint_eq(c->r.body_len, BLK_PAYLOAD);
        /* Exactly once and in order: message i carries payload i. */
        blk_payload(want, msgs);
        ck_assert_msg(memcmp(c->r.body, want, BLK_PAYLOAD) == 0, "message %u: got %.14s", msgs,
                      c->r.body);
        if (msgs < 4)
            ck_assert_uint_eq(c->r.id, ids[msgs]);
        ids[msgs++] = c->r.id;
        net_sendf(c, "ACK %llu\r\n", (unsigned long long)c->r.id);
    }
    ck_assert_int_eq(waitpid(child, &status, 0), child);
    ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);

    /* Every parked PUB got its +OK, with the id its message was pushed with. */
    for (unsigned i = 4; i < total; i++) {
        char line[32];
        snprintf(line, sizeof line, "+OK %llu", (unsigned long long)ids[i]);
        NET_EXPECT(p, line);
    }
    net_ping(p);
    net_puts(c, "JOIN b 0\r\n");
    NET_EXPECT(c, "+OK");
    net_ping(c);
    ck_assert_uint_eq(net_stat(o, "b", "published"), total);
    ck_assert_uint_eq(net_stat(o, "b", "delivered"), total);
    ck_assert_uint_eq(net_stat(o, "b", "acked"), total);
    ck_assert_uint_eq(net_stat(o, "b", "redelivered"), 0);
    ck_assert_uint_eq(net_stat(o, "b", "rejected"), 0);
    ck_assert_uint_eq(net_stat(o, "b", "blocked_producers"), 0);
    ck_assert_uint_eq(net_stat(o, NULL, "messages"), 0);
    free(ids);
    tc_close(p);
    tc_close(o);
    tc_close(c);
    net_stop(&d);
}
END_TEST

Suite *net_bounds_suite(void)
{
    Suite *s = suite_create("net_bounds");
    TCase *t = tcase_create("bounds");

    tcase_set_timeout(t, NET_TIMEOUT_S);
    tcase_add_test(t, test_reject);
    tcase_add_test(t, test_drop_oldest);
    tcase_add_test(t, test_max_bytes_exact_fit);
    tcase_add_test(t, test_max_lag);
    tcase_add_test(t, test_max_memory);
    tcase_add_test(t, test_block_timeout);
    tcase_add_test(t, test_block_fifo);
    tcase_add_test(t, test_block_stops_reading_producer);
    suite_add_tcase(s, t);
    return s;
}
