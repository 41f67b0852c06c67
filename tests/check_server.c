/* check_server.c: the server's connection and flush lists, which only
 * server.c writes (server_conn_add, server_conn_remove, server_want_flush;
 * <sys/queue.h> lists): order kept, a connection leaves from the head, the
 * middle or the tail, and the count follows (connections there are bare
 * structs: nothing is read or written, the loop never runs). And a second
 * protocol on listeners of its own beside the native one, through nothing
 * but a connproto_t and server_listen. */
#include <arpa/inet.h>
#include <check.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "broker.h"
#include "clock.h"
#include "config.h"
#include "conn.h"
#include "server.h"

static struct event_base *base;
static config_t *cfg;
static broker_t *broker;
static server_t *srv;

static void setup(void)
{
    base = event_base_new();
    ck_assert_ptr_nonnull(base);
    ck_assert_int_eq(event_base_priority_init(base, SERVER_NPRIORITIES), 0);
    cfg = config_default();
    broker = broker_new(cfg, clock_ms());
    srv = server_new(base, broker, cfg);
    ck_assert_ptr_nonnull(srv);
}

static void teardown(void)
{
    ck_assert(LIST_EMPTY(&srv->conns)); /* server_free would conn_free them */
    server_free(srv);
    broker_free(broker);
    config_free(cfg);
    event_base_free(base);
}

/* The flush list from head to tail as "abc", checked backwards too. */
static const char *flush_order(conn_t *v, size_t n)
{
    static char out[16];
    size_t k = 0, back = 0;
    conn_t *c;

    TAILQ_FOREACH(c, &srv->flushq, flush_link) {
        ck_assert(k < n && c->flush_queued);
        out[k++] = (char)('a' + (c - v));
    }
    out[k] = '\0';
    TAILQ_FOREACH_REVERSE(c, &srv->flushq, server_flushq, flush_link)
        ck_assert_int_eq(out[k - 1 - back++], 'a' + (c - v));
    ck_assert_uint_eq(back, k);
    return out;
}

START_TEST(test_lists_keep_order_and_unlink_anywhere)
{
    conn_t v[4] = {0};

    for (int i = 0; i < 4; i++)
        server_conn_add(srv, &v[i]);
    ck_assert_uint_eq(srv->nconns, 4);
    ck_assert_ptr_eq(LIST_FIRST(&srv->conns), &v[3]);

    server_want_flush(srv, &v[0]);
    server_want_flush(srv, &v[1]);
    server_want_flush(srv, &v[2]);
    server_want_flush(srv, &v[3]);
    server_want_flush(srv, &v[1]); /* already queued: keeps its place */
    ck_assert_str_eq(flush_order(v, 4), "abcd");

    server_conn_remove(srv, &v[1]); /* the middle */
    ck_assert_str_eq(flush_order(v, 4), "acd");
    ck_assert(!v[1].flush_queued);
    server_conn_remove(srv, &v[3]); /* the tail, and the head of the conns */
    ck_assert_str_eq(flush_order(v, 4), "ac");
    ck_assert_ptr_eq(LIST_FIRST(&srv->conns), &v[2]);
    server_conn_remove(srv, &v[0]); /* the head */
    ck_assert_str_eq(flush_order(v, 4), "c");
    ck_assert_uint_eq(srv->nconns, 1);

    server_want_flush(srv, &v[2]);
    ck_assert_str_eq(flush_order(v, 4), "c");
    server_conn_remove(srv, &v[2]);
    ck_assert_str_eq(flush_order(v, 4), "");
    ck_assert(TAILQ_EMPTY(&srv->flushq));
    ck_assert(LIST_EMPTY(&srv->conns));
    ck_assert_uint_eq(srv->nconns, 0);
}
END_TEST

START_TEST(test_removed_unqueued_connection_leaves_flush_list_alone)
{
    conn_t v[2] = {0};

    server_conn_add(srv, &v[0]);
    server_conn_add(srv, &v[1]);
    server_want_flush(srv, &v[0]);
    server_conn_remove(srv, &v[1]);
    ck_assert_str_eq(flush_order(v, 2), "a");
    server_conn_remove(srv, &v[0]);
    ck_assert_str_eq(flush_order(v, 2), "");
}
END_TEST

/* ---- a second protocol ---- */

static int toy_opened;

/* The toy protocol greets and hangs up: it owns the socket, as a real one
 * would, without a conn_t. */
static bool toy_open(connhost_t *h, int fd, const char *peer)
{
    ssize_t n = write(fd, "TOY\r\n", 5);

    (void)h;
    (void)peer;
    (void)n;
    close(fd);
    toy_opened++;
    return true;
}

static const connproto_t toy_proto = {.label = " (toy)", .busy = "TOYBUSY\r\n", .open = toy_open};

/* The port of the i-th listener, from the port file. */
static int bound_port(size_t i)
{
    char path[] = "/tmp/check_server_portsXXXXXX", line[128];
    int fd = mkstemp(path), port = -1;
    FILE *f;

    ck_assert_int_ge(fd, 0);
    close(fd);
    ck_assert_int_eq(server_write_port_file(srv, path), 0);
    f = fopen(path, "r");
    ck_assert_ptr_nonnull(f);
    for (size_t k = 0; k <= i && fgets(line, sizeof line, f) != NULL; k++)
        if (k == i)
            port = atoi(strrchr(line, ':') + 1);
    fclose(f);
    unlink(path);
    ck_assert_int_gt(port, 0);
    return port;
}

static int dial(int port)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    int fd = socket(AF_INET, SOCK_STREAM, 0);

    ck_assert_int_ge(fd, 0);
    inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
    ck_assert_int_eq(connect(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    return fd;
}

/* Run the loop until `want` came back on fd (bounded, not timed). */
static void expect_reply(int fd, const char *want)
{
    char buf[64] = {0};
    size_t got = 0;

    for (int i = 0; i < 2000 && got < strlen(want); i++) {
        ssize_t n;
        event_base_loop(base, EVLOOP_NONBLOCK);
        n = recv(fd, buf + got, sizeof buf - 1 - got, MSG_DONTWAIT);
        if (n > 0)
            got += (size_t)n;
        else
            usleep(2000);
    }
    ck_assert_str_eq(buf, want);
}

START_TEST(test_second_protocol)
{
    char *addr[] = {"127.0.0.1:0"};
    int toy, native, fd;

    ck_assert_int_eq(server_listen(srv, addr, 1, &toy_proto), 0);
    ck_assert_int_eq(server_listen(srv, addr, 1, &conn_proto), 0);
    toy = bound_port(0);
    native = bound_port(1);

    fd = dial(toy);
    expect_reply(fd, "TOY\r\n");
    close(fd);
    ck_assert_int_eq(toy_opened, 1);

    fd = dial(native);
    ck_assert_int_eq(send(fd, "PING\r\n", 6, 0), 6);
    expect_reply(fd, "+PONG\r\n");
    close(fd);
    for (int i = 0; i < 2000 && !LIST_EMPTY(&srv->conns); i++) {
        event_base_loop(base, EVLOOP_NONBLOCK);
        usleep(2000);
    }

    /* Each protocol refuses in its own words. */
    cfg->limits.max_connections = 0;
    fd = dial(toy);
    expect_reply(fd, "TOYBUSY\r\n");
    close(fd);
    fd = dial(native);
    expect_reply(fd, "-BUSY too many connections\r\n");
    close(fd);
    ck_assert_int_eq(toy_opened, 1);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("server");
    TCase *t = tcase_create("lists");
    SRunner *r;
    int failed;

    tcase_add_checked_fixture(t, setup, teardown);
    tcase_add_test(t, test_lists_keep_order_and_unlink_anywhere);
    tcase_add_test(t, test_removed_unqueued_connection_leaves_flush_list_alone);
    tcase_add_test(t, test_second_protocol);
    suite_add_tcase(s, t);
    r = srunner_create(s);
    srunner_run_all(r, CK_NORMAL);
    failed = srunner_ntests_failed(r);
    srunner_free(r);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
