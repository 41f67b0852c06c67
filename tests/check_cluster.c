/* check_cluster.c: placement across real brokers (#14): three sluiced
 * processes on loopback whose configs name each other in `cluster:`. A
 * command for a topic another node owns gets "-MOVED topic owner" and the
 * connection goes on; the owner serves it; TOPICS and the config's
 * `topics:` show each node only its own; -MOVED comes after -ERR and
 * -NOAUTH and before -DENIED; commands by id are untouched; a reload keeps
 * the running node list; the beanstalk listener serves any tube; a broker
 * without a cluster section answers as it always did.
 *
 * Ports must be known before the configs are written (each names all
 * three), so each is reserved first: a socket bound with SO_REUSEADDR and
 * never listening holds the port against everyone else, yet lets the
 * daemon's listener (also SO_REUSEADDR) bind and listen on it; it is
 * closed once the daemon is up.
 */
#include <arpa/inet.h>
#include <check.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "ck_conn.h"
#include "harness.h"
#include "place.h"

#define NODES 3
#define WAIT_MS 15000
#define NCONF 12 /* topics named in every node's `topics:` */

typedef struct cluster {
    sd_t d[NODES];
    sd_guard_t guard[NODES];
    char node[NODES][32];        /* "127.0.0.1:PORT", as the configs spell them */
    const char *names[NODES];    /* node[], for place_owner */
    char mine[NODES][32];        /* an auto-created topic that node i owns */
} cluster_t;

/* A port held by a bound, never-listening SO_REUSEADDR socket (see the
 * top of the file). Returns the socket; *port gets its number. */
static int port_reserve(int *port)
{
    struct sockaddr_in sa = {.sin_family = AF_INET};
    socklen_t len = sizeof sa;
    int one = 1, fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one), 0);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ck_assert_int_eq(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    ck_assert_int_eq(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
    *port = ntohs(sa.sin_port);
    return fd;
}

static size_t owner_of(const cluster_t *k, const char *topic)
{
    return place_owner(k->names, NODES, topic, strlen(topic));
}

/* The config of node `self`: its listener, the cluster, `extra`, and the
 * NCONF configured topics cfg-0 .. cfg-11. */
static void cluster_conf(const cluster_t *k, size_t self, const char *extra, char *out,
                         size_t cap)
{
    size_t n = (size_t)snprintf(out, cap,
                                "listen: [\"%s\"]\ncluster:\n  self: \"%s\"\n  nodes: [\"%s\", "
                                "\"%s\", \"%s\"]\ntopics:\n",
                                k->node[self], k->node[self], k->node[0], k->node[1],
                                k->node[2]);

    for (int i = 0; i < NCONF && n < cap; i++)
        n += (size_t)snprintf(out + n, cap - n, "  cfg-%d: {max_messages: 100}\n", i);
    if (n < cap)
        snprintf(out + n, cap - n, "%s", extra != NULL ? extra : "");
}

/* Three brokers naming each other; `extra` goes into every config. */
static void cluster_start(cluster_t *k, const char *extra)
{
    int fds[NODES], port;
    char yaml[4096];

    memset(k, 0, sizeof *k);
    for (size_t i = 0; i < NODES; i++) {
        fds[i] = port_reserve(&port);
        snprintf(k->node[i], sizeof k->node[i], "127.0.0.1:%d", port);
        k->names[i] = k->node[i];
    }
    for (size_t i = 0; i < NODES; i++) {
        cluster_conf(k, i, extra, yaml, sizeof yaml);
        ck_start(&k->d[i], yaml);
        k->guard[i] = sd_guard(k->d[i].pid);
        ck_assert_str_eq(k->d[i].addr, k->node[i]); /* it listens where the list says */
        snprintf(yaml, sizeof yaml, "cluster: this is %s, node %zu of %d", k->node[i], i + 1,
                 NODES);
        ck_assert_msg(sd_log_has(&k->d[i], yaml), "no \"%s\" in its log", yaml);
        ck_assert(!sd_log_has(&k->d[i], "no native listener binds"));
    }
    for (size_t i = 0; i < NODES; i++)
        close(fds[i]);
    /* A topic each node owns, for the tests to send to the others. */
    for (int t = 0, found = 0; found < NODES; t++) {
        char name[32];
        size_t o;

        snprintf(name, sizeof name, "t-%d", t);
        o = owner_of(k, name);
        if (k->mine[o][0] == '\0') {
            snprintf(k->mine[o], sizeof k->mine[o], "%s", name);
            found++;
        }
    }
}

static void cluster_stop(cluster_t *k)
{
    for (size_t i = 0; i < NODES; i++) {
        ck_assert_int_eq(sd_stop(&k->d[i]), 0);
        sd_guard_release(&k->guard[i]);
    }
}

static void expect_moved(tc_t *c, const char *topic, const char *owner)
{
    char want[128];

    snprintf(want, sizeof want, "-MOVED %s %s", topic, owner);
    ck_expect(c, want);
}

/* TOPICS' body as one string ("a\nb\n"), malloc'ed. */
static char *topics_of(tc_t *c)
{
    ck_send(c, "TOPICS\r\n");
    ck_assert_int_eq(tc_reply(c), 0);
    ck_assert_int_eq(c->r.type, REPLY_TOPICS);
    return strndup(c->r.body, c->r.body_len);
}

static bool listed(const char *body, const char *topic)
{
    size_t n = strlen(topic);

    for (const char *p = body; *p != '\0'; p = strchr(p, '\n') + 1) {
        if (strncmp(p, topic, n) == 0 && p[n] == '\n')
            return true;
        if (strchr(p, '\n') == NULL)
            break;
    }
    return false;
}

/* ---- -MOVED for every command that names a topic ---- */

START_TEST(test_every_topic_command_is_moved_by_a_non_owner)
{
    cluster_t k;

    cluster_start(&k, NULL);
    for (size_t o = 0; o < NODES; o++) {
        const char *t = k.mine[o], *owner = k.node[o];
        size_t other = (o + 1) % NODES;
        tc_t *own = ck_open(&k.d[o]), *c = ck_open(&k.d[other]);
        char *big = malloc(64 * 1024);

        /* The owner takes it. */
        ck_assert_int_eq(tc_sendf(own, "PUB %s 5\r\nhello\r\n", t), 0);
        ck_expect_prefix(own, "+OK ");

        /* The other answers -MOVED, payload read and dropped, and goes on. */
        ck_assert_int_eq(tc_sendf(c, "PUB %s 5\r\nhello\r\n", t), 0);
        expect_moved(c, t, owner);
        ck_send(c, "PING\r\n");
        ck_expect(c, "+PONG");
        /* A payload large enough to be read straight into its message. */
        memset(big, 'x', 64 * 1024);
        ck_assert_int_eq(tc_sendf(c, "PUB %s %d delay=10 pri=3 ttr=5000\r\n", t, 64 * 1024), 0);
        ck_assert_int_eq(tc_send(c, big, 64 * 1024), 0);
        ck_send(c, "\r\n");
        expect_moved(c, t, owner);
        /* Each command that names a topic, with and without its number. */
        const char *cmds[][2] = {{"SUB", ""},   {"SUB", " 5"},     {"UNSUB", ""},
                                 {"GET", ""},   {"GET", " 0"},     {"JOIN", " 0"},
                                 {"STATS", ""}, {"KICK", " 1"},    {"PAUSE", " 10"}};
        for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++) {
            ck_assert_int_eq(tc_sendf(c, "%s %s%s\r\n", cmds[i][0], t, cmds[i][1]), 0);
            expect_moved(c, t, owner);
        }
        /* Pipelined, in order, and nothing was created here. */
        ck_assert_int_eq(tc_sendf(c, "PUB %s 1\r\nx\r\nPING\r\nSTATS %s\r\n", t, t), 0);
        expect_moved(c, t, owner);
        ck_expect(c, "+PONG");
        expect_moved(c, t, owner);
        char *body = topics_of(c);
        ck_assert_msg(!listed(body, t), "%s is listed on a node that does not own it", t);
        free(body);

        /* The owner has its message and answers everything itself. */
        ck_assert_int_eq(tc_sendf(own, "STATS %s\r\n", t), 0);
        ck_expect_prefix(own, "+STATS ");
        ck_assert_int_eq(tc_sendf(own, "GET %s 0\r\n", t), 0);
        ck_expect_prefix(own, "MSG ");
        ck_assert_int_eq(tc_sendf(own, "KICK %s 1\r\nPAUSE %s 0\r\nJOIN %s 0\r\nUNSUB %s\r\n",
                                  t, t, t, t),
                         0);
        ck_expect(own, "+OK 0");
        ck_expect(own, "+OK");
        ck_expect(own, "-TIMEOUT"); /* its GET holds the message: not drained */
        ck_expect(own, "+OK");
        free(big);
        tc_close(own);
        tc_close(c);
    }
    cluster_stop(&k);
}
END_TEST

START_TEST(test_errors_noauth_and_ids_come_first_or_are_untouched)
{
    cluster_t k;
    const char *users =
        "users:\n"
        "  bob: {password: pw, publish: [\"nothing\"], subscribe: [\"nothing\"]}\n";

    cluster_start(&k, users);
    const char *t = k.mine[1], *here = k.mine[0];
    tc_t *c = ck_open(&k.d[0]);

    /* Before AUTH: -NOAUTH, not where the topic lives. */
    ck_assert_int_eq(tc_sendf(c, "PUB %s 1\r\nx\r\n", t), 0);
    ck_expect_prefix(c, "-NOAUTH");
    ck_assert_int_eq(tc_sendf(c, "STATS %s\r\n", t), 0);
    ck_expect_prefix(c, "-NOAUTH");
    ck_send(c, "AUTH bob pw\r\n");
    ck_expect(c, "+OK");
    /* A malformed line is -ERR whatever its topic. */
    ck_assert_int_eq(tc_sendf(c, "SUB %s many\r\n", t), 0);
    ck_expect_prefix(c, "-ERR ");
    ck_assert_int_eq(tc_sendf(c, "PUB %s\r\n", t), 0);
    ck_expect_prefix(c, "-ERR ");
    /* bob may not publish there, but that is the owner's to say. */
    ck_assert_int_eq(tc_sendf(c, "PUB %s 1\r\nx\r\n", t), 0);
    expect_moved(c, t, k.node[1]);
    ck_assert_int_eq(tc_sendf(c, "SUB %s\r\n", t), 0);
    expect_moved(c, t, k.node[1]);
    /* Here, the ACL answers. */
    ck_assert_int_eq(tc_sendf(c, "PUB %s 1\r\nx\r\n", here), 0);
    ck_assert_int_eq(tc_reply(c), 0);
    ck_assert_int_eq(c->r.type, REPLY_ERROR);
    ck_assert_msg(c->r.code_len == 6 && memcmp(c->r.code, "DENIED", 6) == 0, "%s", c->line);
    /* Commands by id know no topic: the node answers for its own ids. */
    ck_send(c, "ACK 12345\r\nNACK 12345\r\nTOUCH 12345\r\nBURY 12345\r\n");
    ck_expect(c, "-NOTFOUND 12345");
    ck_expect(c, "-NOTFOUND 12345");
    ck_expect(c, "-NOTFOUND 12345");
    ck_expect(c, "-NOTFOUND 12345");
    tc_close(c);
    cluster_stop(&k);
}
END_TEST

/* ---- what each node holds ---- */

START_TEST(test_each_node_lists_only_its_topics)
{
    cluster_t k;
    tc_t *c[NODES];
    char *body[NODES];
    int owned[NODES] = {0};

    cluster_start(&k, NULL);
    for (size_t i = 0; i < NODES; i++) {
        c[i] = ck_open(&k.d[i]);
        /* Each node's own auto-created topic. */
        ck_assert_int_eq(tc_sendf(c[i], "PUB %s 1\r\nx\r\n", k.mine[i]), 0);
        ck_expect_prefix(c[i], "+OK ");
    }
    for (size_t i = 0; i < NODES; i++)
        body[i] = topics_of(c[i]);
    for (int t = 0; t < NCONF; t++) {
        char name[16];
        snprintf(name, sizeof name, "cfg-%d", t);
        size_t o = owner_of(&k, name);
        owned[o]++;
        for (size_t i = 0; i < NODES; i++)
            ck_assert_msg(listed(body[i], name) == (i == o), "%s on node %zu (owner %zu): %s",
                          name, i, o, body[i]);
        /* A configured topic elsewhere is -MOVED like any other. */
        ck_assert_int_eq(tc_sendf(c[(o + 1) % NODES], "STATS %s\r\n", name), 0);
        expect_moved(c[(o + 1) % NODES], name, k.node[o]);
    }
    for (size_t i = 0; i < NODES; i++) {
        size_t lines = 0;
        for (const char *p = body[i]; (p = strchr(p, '\n')) != NULL; p++)
            lines++;
        /* Only its configured topics and its own: nothing else exists here. */
        ck_assert_uint_eq(lines, (size_t)owned[i] + 1);
        for (size_t j = 0; j < NODES; j++)
            ck_assert(listed(body[i], k.mine[j]) == (i == j));
        free(body[i]);
        tc_close(c[i]);
    }
    cluster_stop(&k);
}
END_TEST

/* ---- reload, beanstalk, a single node ---- */

START_TEST(test_reload_keeps_the_running_node_list)
{
    cluster_t k;
    char yaml[4096];
    uint64_t until;
    const char *t = k.mine[2];

    cluster_start(&k, NULL);
    /* Node 0 is told it is alone: that waits for a restart. */
    snprintf(yaml, sizeof yaml,
             "listen: [\"%s\"]\ncluster: {self: \"%s\", nodes: [\"%s\"]}\nlog: {level: debug}\n",
             k.node[0], k.node[0], k.node[0]);
    ck_assert_int_eq(sd_write_conf(&k.d[0], yaml), 0);
    sd_signal(&k.d[0], SIGHUP);
    until = sd_now_ms() + WAIT_MS;
    while (!sd_log_has(&k.d[0], "reloaded") && sd_now_ms() < until)
        usleep(10000);
    ck_assert(sd_log_has(&k.d[0], "reloaded"));
    ck_assert(sd_log_has(&k.d[0], "the cluster section changed; it applies at the next restart"));
    tc_t *c = ck_open(&k.d[0]);
    ck_assert_int_eq(tc_sendf(c, "PUB %s 1\r\nx\r\n", t), 0);
    expect_moved(c, t, k.node[2]);
    /* The rest of the file did apply: the connection was logged at debug. */
    ck_assert(sd_log_has(&k.d[0], "debug: connection from"));
    tc_close(c);
    cluster_stop(&k);
}
END_TEST

START_TEST(test_beanstalk_serves_any_tube)
{
    cluster_t k;
    char line[128];

    cluster_start(&k, "beanstalk: {listen: [\"127.0.0.1:0\"]}\n");
    const char *t = k.mine[1];
    tc_t *b = tc_open_port(&k.d[0], k.d[0].bport), *c = ck_open(&k.d[0]);

    ck_assert_ptr_nonnull(b);
    /* The protocol has no way to send a worker elsewhere: node 0 serves it. */
    ck_assert_int_eq(tc_sendf(b, "use %s\r\nput 0 0 60 2\r\nhi\r\n", t), 0);
    snprintf(line, sizeof line, "USING %s", t);
    ck_assert_str_eq(tc_line(b), line);
    ck_assert_str_eq(tc_line(b), "INSERTED 1");
    /* Now it exists here, so the native protocol is served here too. */
    ck_assert_int_eq(tc_sendf(c, "GET %s 0\r\n", t), 0);
    ck_expect_prefix(c, "MSG ");
    tc_close(b);
    tc_close(c);
    cluster_stop(&k);
}
END_TEST

/* -MOVED sends clients to `self`: a port nothing here listens on is
 * worth a warning (a port forward may make it right). */
START_TEST(test_self_on_a_port_not_bound_is_warned)
{
    sd_t d;

    ck_start(&d, "cluster: {self: \"127.0.0.1:1\", nodes: [\"127.0.0.1:1\", \"127.0.0.1:2\"]}\n"
                 "listen: [\"127.0.0.1:0\", \"unix:/tmp/sluice-cluster-test.sock\"]\n");
    ck_assert(!sd_log_has(&d, "no native listener binds")); /* port 0: cannot tell */
    ck_assert_int_eq(sd_stop(&d), 0);
    int port, fd = port_reserve(&port);
    char yaml[256];

    snprintf(yaml, sizeof yaml,
             "cluster: {self: \"127.0.0.1:1\", nodes: [\"127.0.0.1:1\", \"127.0.0.1:2\"]}\n"
             "listen: [\"127.0.0.1:%d\"]\n", port);
    ck_start(&d, yaml);
    close(fd);
    ck_assert(sd_log_has(&d, "cluster: this is 127.0.0.1:1, node 1 of 2"));
    ck_assert(sd_log_has(&d, "cluster.self 127.0.0.1:1: no native listener binds port 1"));
    ck_assert_int_eq(sd_stop(&d), 0);
}
END_TEST

START_TEST(test_without_a_cluster_nothing_is_moved)
{
    sd_t d;
    tc_t *c;

    ck_start(&d, "topics: {cfg-0: {}, cfg-1: {}}\n");
    c = ck_open(&d);
    for (int t = 0; t < 40; t++) {
        ck_assert_int_eq(tc_sendf(c, "PUB t-%d 1\r\nx\r\n", t), 0);
        ck_expect_prefix(c, "+OK ");
    }
    ck_send(c, "STATS nowhere\r\nKICK nowhere 1\r\nPAUSE nowhere 1\r\nUNSUB nowhere\r\n"
               "JOIN nowhere 0\r\n");
    ck_expect(c, "-ERR unknown topic");
    ck_expect(c, "-ERR unknown topic");
    ck_expect(c, "-ERR unknown topic");
    ck_expect(c, "+OK");
    ck_expect(c, "+OK");
    char *body = topics_of(c);
    ck_assert(listed(body, "cfg-0") && listed(body, "cfg-1") && listed(body, "t-39"));
    free(body);
    tc_close(c);
    ck_assert(!sd_log_has(&d, "cluster"));
    ck_assert_int_eq(sd_stop(&d), 0);
}
END_TEST

static Suite *cluster_suite(void)
{
    Suite *s = suite_create("cluster");
    TCase *tc = tcase_create("moved");

    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_every_topic_command_is_moved_by_a_non_owner);
    tcase_add_test(tc, test_errors_noauth_and_ids_come_first_or_are_untouched);
    tcase_add_test(tc, test_each_node_lists_only_its_topics);
    tcase_add_test(tc, test_reload_keeps_the_running_node_list);
    tcase_add_test(tc, test_beanstalk_serves_any_tube);
    tcase_add_test(tc, test_self_on_a_port_not_bound_is_warned);
    tcase_add_test(tc, test_without_a_cluster_nothing_is_moved);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(cluster_suite());
    int failed;

    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
