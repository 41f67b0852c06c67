/* check_route.c: the `sluice` client over a node list, against three real
 * daemons: each topic goes to its owner by rendezvous hashing (pub lands
 * there only; sub, get, join and stats reach it there), `sluice place`
 * prints place_owner's answer, stats/topics/ping/top cover every node,
 * bench --topics spreads over the nodes and loses nothing, and the node
 * list's sources keep their precedence (--nodes, -s, --config,
 * $SLUICE_NODES, $SLUICE_CONFIG, $SLUICE_ADDR) with exact errors for a
 * bad file or list. Then against daemons that know the cluster: a stale
 * list still delivers by following -MOVED (and says so once), and
 * daemons that disagree cannot send a command round for ever.
 */
#include <check.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <unistd.h>

#include "ck_conn.h"
#include "harness.h"
#include "place.h"

#define NNODES 3

static sd_t d[NNODES];
static sd_guard_t guard[NNODES];
static const char *addrs[NNODES];
static char nodes[NNODES * 100];  /* "127.0.0.1:P0,127.0.0.1:P1,127.0.0.1:P2" */

static void route_setup(void)
{
    nodes[0] = '\0';
    for (int i = 0; i < NNODES; i++) {
        ck_start(&d[i], "");
        guard[i] = sd_guard(d[i].pid);
        addrs[i] = d[i].addr;
        snprintf(nodes + strlen(nodes), sizeof nodes - strlen(nodes), "%s%s", i ? "," : "",
                 d[i].addr);
    }
}

static void route_teardown(void)
{
    for (int i = 0; i < NNODES; i++) {
        if (guard[i].pid <= 0)
            continue;  /* not started by this test */
        sd_stop(&d[i]);
        sd_guard_release(&guard[i]);
    }
}

/* Run `sluice ARGS` with none of the node list's variables set but those
 * ARGS sets itself ("SLUICE_NODES=... sluice ..." is not possible here, so
 * `env` comes first: run(&out, "SLUICE_NODES=x", "ping")). stdout in *out
 * (may be NULL); the exit status returned. */
static int run(char **out, const char *env, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int run(char **out, const char *env, const char *fmt, ...)
{
    char args[4096], pre[1024];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(args, sizeof args, fmt, ap);
    va_end(ap);
    snprintf(pre, sizeof pre, "env -u SLUICE_NODES -u SLUICE_CONFIG -u SLUICE_ADDR %s", env);
    return ck_sluice_line(out, pre, args);
}

/* The index of topic's owner among the three daemons. */
static int owner_of(const char *topic)
{
    return (int)place_owner(addrs, NNODES, topic, strlen(topic));
}

/* A topic name that node i owns: "t.K" for the first K that lands there. */
static const char *topic_on(int i)
{
    static char buf[NNODES][32];

    for (int k = 0;; k++) {
        snprintf(buf[i], sizeof buf[i], "t.%d", k);
        if (owner_of(buf[i]) == i)
            return buf[i];
    }
}

/* A top-level number of `STATS [topic]` asked of daemon dd directly; -1
 * if the topic does not exist there. */
static long stat_on(const sd_t *dd, const char *topic, const char *key)
{
    tc_t *c = ck_open(dd);
    char want[64];
    long v = -1;

    ck_assert_int_eq(tc_sendf(c, "STATS%s%s\r\n", topic ? " " : "", topic ? topic : ""), 0);
    ck_assert_int_eq(tc_reply(c), 0);
    if (c->r.type == REPLY_ERROR) {
        tc_close(c);
        return -1;
    }
    ck_assert_int_eq(c->r.type, REPLY_STATS);
    char *body = strndup(c->r.body, c->r.body_len);
    snprintf(want, sizeof want, "\n%s: ", key);
    char *at = strstr(body, want);
    if (at)
        v = strtol(at + strlen(want), NULL, 10);
    free(body);
    tc_close(c);
    return v;
}

static void write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fputs(text, f);
    fclose(f);
}

/* ---- routing ---- */

START_TEST(test_pub_lands_on_owner_only)
{
    for (int i = 0; i < NNODES; i++) {
        const char *t = topic_on(i);
        ck_assert_int_eq(run(NULL, "", "--nodes %s pub %s a b c", nodes, t), 0);
        for (int j = 0; j < NNODES; j++)
            ck_assert_int_eq(stat_on(&d[j], t, "ready"), j == i ? 3 : -1);
    }
    /* the same through $SLUICE_NODES, and -s after the subcommand's name */
    char env[sizeof nodes + 32];
    snprintf(env, sizeof env, "SLUICE_NODES=%s", nodes);
    const char *t = topic_on(1);
    ck_assert_int_eq(run(NULL, env, "pub %s d", t), 0);
    ck_assert_int_eq(stat_on(&d[1], t, "ready"), 4);
    ck_assert_int_eq(run(NULL, env, "pub %s -s %s e", t, d[0].addr), 0);  /* -s wins */
    ck_assert_int_eq(stat_on(&d[0], t, "ready"), 1);
}
END_TEST

START_TEST(test_sub_get_join_stats_reach_owner)
{
    char *out;

    for (int i = 0; i < NNODES; i++) {
        const char *t = topic_on(i);
        ck_assert_int_eq(run(NULL, "", "pub --nodes %s %s one two three", nodes, t), 0);
        ck_assert_int_eq(run(&out, "", "get --nodes %s %s", nodes, t), 0);
        ck_assert_str_eq(out, "one\n");
        free(out);
        ck_assert_int_eq(run(&out, "", "--nodes %s sub %s --count 2", nodes, t), 0);
        ck_assert_str_eq(out, "two\nthree\n");
        free(out);
        ck_assert_int_eq(run(NULL, "", "--nodes %s join %s --timeout 5000", nodes, t), 0);
        ck_assert_int_eq(run(&out, "", "--nodes %s stats %s --yaml", nodes, t), 0);
        ck_assert_ptr_nonnull(strstr(out, "\nacked: 3\n"));
        free(out);
        ck_assert_int_eq(stat_on(&d[i], t, "acked"), 3);
    }
}
END_TEST

START_TEST(test_place_matches_place_owner)
{
    char *out, want[8192] = "", args[4096] = "";

    for (int k = 0; k < 40; k++) {
        char t[32];
        snprintf(t, sizeof t, "orders.%d", k);
        snprintf(args + strlen(args), sizeof args - strlen(args), " %s", t);
        snprintf(want + strlen(want), sizeof want - strlen(want), "%s %s\n", t,
                 addrs[owner_of(t)]);
    }
    ck_assert_int_eq(run(&out, "", "place --nodes %s%s", nodes, args), 0);
    ck_assert_str_eq(out, want);
    free(out);
    ck_assert_int_eq(run(NULL, "", "place --nodes %s 'bad topic' 2>/dev/null", nodes), 2);
    ck_assert_int_eq(run(NULL, "", "place --nodes %s 2>/dev/null", nodes), 2);
}
END_TEST

START_TEST(test_every_node_commands)
{
    char *out, want[256];

    for (int i = 0; i < NNODES; i++)
        ck_assert_int_eq(run(NULL, "", "--nodes %s pub %s x", nodes, topic_on(i)), 0);
    /* stats: one YAML section per node, named by its address */
    ck_assert_int_eq(run(&out, "", "--nodes %s stats", nodes), 0);
    for (int i = 0; i < NNODES; i++) {
        snprintf(want, sizeof want, "\"%s\":\n  version: ", addrs[i]);
        ck_assert_msg(strstr(out, want) != NULL, "no section %s in:\n%s", addrs[i], out);
    }
    ck_assert_ptr_nonnull(strstr(out, "\n  published: 1\n"));
    free(out);
    /* a lone server's stats are as they always were */
    ck_assert_int_eq(run(&out, "", "-s %s stats", addrs[0]), 0);
    ck_assert(strncmp(out, "version: ", 9) == 0);
    free(out);
    ck_assert_int_eq(run(&out, "", "--nodes %s topics", nodes), 0);
    for (int i = 0; i < NNODES; i++) {
        snprintf(want, sizeof want, "%s\n", topic_on(i));
        ck_assert_ptr_nonnull(strstr(out, want));
    }
    free(out);
    ck_assert_int_eq(run(&out, "", "--nodes %s ping", nodes), 0);
    for (int i = 0; i < NNODES; i++) {
        snprintf(want, sizeof want, "%s PONG\n", addrs[i]);
        ck_assert_ptr_nonnull(strstr(out, want));
    }
    free(out);
    /* top: every node's topics, each with its node */
    ck_assert_int_eq(run(&out, "", "--nodes %s top --once -i 0.1", nodes), 0);
    ck_assert_ptr_nonnull(strstr(out, "3 nodes"));
    ck_assert_ptr_nonnull(strstr(out, " NODE "));
    for (int i = 0; i < NNODES; i++) {
        const char *t = topic_on(i);
        const char *row = strstr(out, t);
        ck_assert_msg(row != NULL, "no row for %s in:\n%s", t, out);
        const char *eol = strchr(row, '\n');
        const char *node = strstr(row, addrs[i]);
        ck_assert_msg(node != NULL && node < eol, "row of %s does not name %s:\n%s", t, addrs[i],
                      out);
    }
    free(out);
}
END_TEST

START_TEST(test_node_down)
{
    char *out;
    const char *up = topic_on(0), *down = topic_on(2);

    ck_assert_int_eq(sd_stop(&d[2]), 0);
    ck_assert_int_eq(run(NULL, "", "--nodes %s pub %s x", nodes, up), 0);
    ck_assert_int_eq(run(&out, "", "--nodes %s pub %s x 2>&1", nodes, down), 1);
    ck_assert_msg(strstr(out, "cannot connect to ") && strstr(out, addrs[2]), "%s", out);
    free(out);
    /* every-node commands say which node failed and still show the rest */
    ck_assert_int_eq(run(&out, "", "--nodes %s ping 2>&1", nodes), 1);
    ck_assert_ptr_nonnull(strstr(out, "PONG"));
    ck_assert_ptr_nonnull(strstr(out, "cannot connect to "));
    free(out);
}
END_TEST

/* bench --topics over two nodes: every message arrives (exit 0), both
 * nodes carried some, and the report counts them per node. */
START_TEST(test_bench_topics_two_nodes)
{
    char two[256], prefix[32], *out;
    const char *pair[2] = { addrs[0], addrs[1] };

    snprintf(two, sizeof two, "%s,%s", addrs[0], addrs[1]);
    /* a prefix whose four topics do not all land on one node */
    for (int k = 0;; k++) {
        int on[2] = { 0, 0 };
        snprintf(prefix, sizeof prefix, "bench%d", k);
        for (int t = 0; t < 4; t++) {
            char name[64];
            snprintf(name, sizeof name, "%s.%d", prefix, t);
            on[place_owner(pair, 2, name, strlen(name))]++;
        }
        if (on[0] && on[1])
            break;
    }
    ck_assert_int_eq(run(&out, "", "bench --nodes %s --topics 4 -p 4 -c 4 -n 4000 -t %s "
                                   "--sched other 2>&1", two, prefix), 0);
    ck_assert_ptr_nonnull(strstr(out, "lost 0, duplicates 0"));
    ck_assert_ptr_nonnull(strstr(out, "per node"));
    long p0 = stat_on(&d[0], NULL, "published"), p1 = stat_on(&d[1], NULL, "published");
    ck_assert_msg(p0 > 0 && p1 > 0 && p0 + p1 == 4000, "published %ld and %ld", p0, p1);
    ck_assert_int_eq(stat_on(&d[2], NULL, "published"), 0);
    char want[128];
    snprintf(want, sizeof want, "%s %ld", addrs[0], p0);
    ck_assert_msg(strstr(out, want) != NULL, "no '%s' in:\n%s", want, out);
    free(out);
    /* more topics than consumers would leave some unread: refused */
    ck_assert_int_eq(run(NULL, "", "bench --nodes %s --topics 4 -c 2 2>/dev/null", two), 2);
    ck_assert_int_eq(run(NULL, "", "bench -T redis --nodes %s 2>/dev/null", two), 2);
}
END_TEST

/* ---- where the node list comes from ---- */

START_TEST(test_precedence)
{
    char *out, fb[256], fenv[300], all[512];

    /* files with one node each, so `place` shows which source won */
    snprintf(fb, sizeof fb, "%s/b.yaml", d[0].dir);
    write_text(fb, "nodes: [127.0.0.1:2]\n");
    snprintf(fenv, sizeof fenv, "SLUICE_CONFIG=%s", fb);
    snprintf(all, sizeof all, "SLUICE_NODES=127.0.0.1:1 SLUICE_ADDR=127.0.0.1:3 %s", fenv);
    ck_assert_int_eq(run(&out, all, "place --nodes 127.0.0.1:4 t"), 0);
    ck_assert_str_eq(out, "t 127.0.0.1:4\n");
    free(out);
    ck_assert_int_eq(run(&out, all, "-s 127.0.0.1:5 place t"), 0);
    ck_assert_str_eq(out, "t 127.0.0.1:5\n");
    free(out);
    /* --config is the command line: it goes before $SLUICE_NODES */
    write_text(fb, "nodes: [127.0.0.1:6]\n");
    ck_assert_int_eq(run(&out, "SLUICE_NODES=127.0.0.1:1", "place --config %s t", fb), 0);
    ck_assert_str_eq(out, "t 127.0.0.1:6\n");
    free(out);
    ck_assert_int_eq(run(&out, all, "place t"), 0);
    ck_assert_str_eq(out, "t 127.0.0.1:1\n");
    free(out);
    snprintf(all, sizeof all, "SLUICE_ADDR=127.0.0.1:3 %s", fenv);
    ck_assert_int_eq(run(&out, all, "place t"), 0);
    ck_assert_str_eq(out, "t 127.0.0.1:6\n");
    free(out);
    ck_assert_int_eq(run(&out, "SLUICE_ADDR=127.0.0.1:3 SLUICE_NODES=", "place t"), 0);
    ck_assert_str_eq(out, "t 127.0.0.1:3\n");
    free(out);
    ck_assert_int_eq(run(&out, "", "place t"), 0);
    ck_assert_str_eq(out, "t 127.0.0.1:7700\n");
    free(out);
    /* a config file works for every command, not only place */
    snprintf(all, sizeof all, "nodes:\n  - %s\n  - %s\n  - %s\n", addrs[0], addrs[1], addrs[2]);
    write_text(fb, all);
    const char *t = topic_on(2);
    ck_assert_int_eq(run(NULL, fenv, "pub %s x", t), 0);
    ck_assert_int_eq(stat_on(&d[2], t, "ready"), 1);
    ck_assert_int_eq(run(NULL, "", "--config %s pub %s y", fb, t), 0);
    ck_assert_int_eq(stat_on(&d[2], t, "ready"), 2);
}
END_TEST

START_TEST(test_bad_sources)
{
    char *out, f[256], want[512], env[300];

    snprintf(f, sizeof f, "%s/bad.yaml", d[0].dir);
    write_text(f, "# cluster\nnodes:\n  - 127.0.0.1:7700\n  - 127.0.0.1:0\n");
    snprintf(want, sizeof want, "sluice: ping: %s:4:5: bad node address '127.0.0.1:0': port "
             "must be 1..65535 (use host:port or [v6]:port, as the daemons' cluster.nodes spell "
             "it)\n", f);
    ck_assert_int_eq(run(&out, "", "--config %s ping 2>&1", f), 1);
    ck_assert_str_eq(out, want);
    free(out);
    snprintf(env, sizeof env, "SLUICE_CONFIG=%s", f);
    ck_assert_int_eq(run(&out, env, "ping 2>&1"), 1);
    ck_assert_str_eq(out, want);
    free(out);
    write_text(f, "nodes: [127.0.0.1:7700]\nuser: bob\n");
    snprintf(want, sizeof want, "sluice: pub: %s:2:1: unknown key 'user' in a client config "
             "file\n", f);
    ck_assert_int_eq(run(&out, "", "pub --config %s t x 2>&1", f), 1);
    ck_assert_str_eq(out, want);
    free(out);
    ck_assert_int_eq(run(&out, "", "--config /nonexistent/c.yaml ping 2>&1"), 1);
    ck_assert_str_eq(out, "sluice: ping: /nonexistent/c.yaml: cannot open: No such file or "
                          "directory\n");
    free(out);
    /* -s and --nodes together, or a bad --nodes: the command line is wrong */
    ck_assert_int_eq(run(&out, "", "-s %s --nodes %s ping 2>&1", addrs[0], nodes), 2);
    ck_assert_ptr_nonnull(strstr(out, "-s and --nodes exclude each other"));
    free(out);
    ck_assert_int_eq(run(NULL, "", "--nodes %s ping -s %s 2>/dev/null", nodes, addrs[0]), 2);
    ck_assert_int_eq(run(NULL, "", "bench -s %s --nodes %s 2>/dev/null", addrs[0], nodes), 2);
    ck_assert_int_eq(run(&out, "", "ping --nodes 127.0.0.1:1,,127.0.0.1:2 2>&1"), 2);
    ck_assert_ptr_nonnull(strstr(out, "--nodes: bad node address '': an empty entry"));
    free(out);
    /* ... a bad $SLUICE_NODES is the environment's */
    ck_assert_int_eq(run(&out, "SLUICE_NODES=127.0.0.1:1,127.0.0.1:1", "ping 2>&1"), 1);
    ck_assert_str_eq(out, "sluice: ping: $SLUICE_NODES: node '127.0.0.1:1' is listed twice\n");
    free(out);
}
END_TEST

/* ---- against daemons that know the cluster (-MOVED) ---- */

/* n loopback ports that were free a moment ago: a cluster's daemons must
 * know every node's address before any of them starts. */
static void free_ports(int *port, int n)
{
    int fd[NNODES];

    for (int i = 0; i < n; i++) {
        struct sockaddr_in sin = { .sin_family = AF_INET,
                                   .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        socklen_t sl = sizeof sin;
        fd[i] = socket(AF_INET, SOCK_STREAM, 0);
        ck_assert_int_ge(fd[i], 0);
        ck_assert_int_eq(bind(fd[i], (struct sockaddr *)&sin, sizeof sin), 0);
        ck_assert_int_eq(getsockname(fd[i], (struct sockaddr *)&sin, &sl), 0);
        port[i] = ntohs(sin.sin_port);
    }
    for (int i = 0; i < n; i++)
        close(fd[i]);
}

/* Start daemon i on port[i], told it is `self` among `list` (YAML flow
 * items). */
static void start_node(int i, int port, const char *self, const char *list)
{
    char yaml[1024];

    snprintf(yaml, sizeof yaml, "listen: [127.0.0.1:%d]\ncluster:\n  self: \"%s\"\n"
             "  nodes: [%s]\n", port, self, list);
    ck_start(&d[i], yaml);
    guard[i] = sd_guard(d[i].pid);
}

/* The three daemons know the whole cluster. */
static void cluster_setup(void)
{
    int port[NNODES];
    char list[NNODES * 100] = "";

    free_ports(port, NNODES);
    nodes[0] = '\0';
    for (int i = 0; i < NNODES; i++)
        snprintf(nodes + strlen(nodes), sizeof nodes - strlen(nodes), "%s127.0.0.1:%d",
                 i ? "," : "", port[i]);
    for (int i = 0; i < NNODES; i++)
        snprintf(list + strlen(list), sizeof list - strlen(list), "%s\"127.0.0.1:%d\"",
                 i ? ", " : "", port[i]);
    for (int i = 0; i < NNODES; i++) {
        char self[64];
        snprintf(self, sizeof self, "127.0.0.1:%d", port[i]);
        start_node(i, port[i], self, list);
        addrs[i] = d[i].addr;
        ck_assert_str_eq(d[i].addr, self);
    }
}

/* A client whose list lacks the third node (the daemons have it): a topic
 * the third node owns is sent elsewhere, answered -MOVED, and delivered
 * there all the same, with one line on stderr saying the list is stale. */
START_TEST(test_stale_list_follows_moved)
{
    char stale[256], *out;
    const char *t = topic_on(2);

    snprintf(stale, sizeof stale, "%s,%s", addrs[0], addrs[1]);
    ck_assert_int_eq(run(&out, "", "--nodes %s pub %s one two three 2>&1", stale, t), 0);
    ck_assert_msg(strstr(out, "the node list looks stale") && strstr(out, addrs[2]), "%s", out);
    ck_assert_msg(strchr(out, '\n') == out + strlen(out) - 1, "more than one line: %s", out);
    free(out);
    for (int j = 0; j < NNODES; j++)
        ck_assert_int_eq(stat_on(&d[j], t, "ready"), j == 2 ? 3 : -1);
    ck_assert_int_eq(run(&out, "", "--nodes %s get %s 2>/dev/null", stale, t), 0);
    ck_assert_str_eq(out, "one\n");
    free(out);
    ck_assert_int_eq(run(&out, "", "--nodes %s sub %s --count 2 2>/dev/null", stale, t), 0);
    ck_assert_str_eq(out, "two\nthree\n");
    free(out);
    ck_assert_int_eq(run(&out, "", "--nodes %s join %s 2>&1", stale, t), 0);
    ck_assert_ptr_nonnull(strstr(out, "looks stale"));
    free(out);
    ck_assert_int_eq(run(&out, "", "--nodes %s stats %s --yaml 2>/dev/null", stale, t), 0);
    ck_assert_ptr_nonnull(strstr(out, "\nacked: 3\n"));
    free(out);
    /* the whole list: straight to the owner, nothing said */
    ck_assert_int_eq(run(&out, "", "--nodes %s pub %s four 2>&1", nodes, t), 0);
    ck_assert_str_eq(out, "");
    free(out);
    /* one server given with -s is followed too */
    ck_assert_int_eq(run(&out, "", "-s %s get %s 2>/dev/null", addrs[0], t), 0);
    ck_assert_str_eq(out, "four\n");
    free(out);
}
END_TEST

/* bench over the stale list: its consumers follow -MOVED, its producers
 * go where they went, and nothing is lost. */
START_TEST(test_bench_stale_list)
{
    char stale[256], *out, prefix[32];
    int want = 0;

    snprintf(stale, sizeof stale, "%s,%s", addrs[0], addrs[1]);
    for (int k = 0; !want; k++) {  /* a prefix with one of four topics on the third node */
        snprintf(prefix, sizeof prefix, "bs%d", k);
        for (int t = 0; t < 4; t++) {
            char name[64];
            snprintf(name, sizeof name, "%s.%d", prefix, t);
            want += owner_of(name) == 2;
        }
    }
    ck_assert_int_eq(run(&out, "", "bench --nodes %s --topics 4 -p 4 -c 4 -n 4000 -t %s "
                                   "--sched other 2>&1", stale, prefix), 0);
    ck_assert_ptr_nonnull(strstr(out, "lost 0, duplicates 0"));
    ck_assert_ptr_nonnull(strstr(out, "the node list looks stale"));
    ck_assert_int_eq(stat_on(&d[2], NULL, "published"), want * 1000);
    free(out);
}
END_TEST

/* Two daemons whose lists disagree (the second spells the first another
 * way) send a topic back and forth: the client stops after three hops. */
START_TEST(test_moved_hops_are_bounded)
{
    int port[2];
    char a[64], alias[64], b[64], la[160], lb[160], t[32], *out;

    free_ports(port, 2);
    snprintf(a, sizeof a, "127.0.0.1:%d", port[0]);
    snprintf(alias, sizeof alias, "localhost:%d", port[0]);
    snprintf(b, sizeof b, "127.0.0.1:%d", port[1]);
    const char *na[] = { a, b }, *nb[] = { alias, b };
    for (int k = 0;; k++) {  /* a thinks b owns it, b thinks "localhost" (a) does */
        snprintf(t, sizeof t, "ping.%d", k);
        if (place_owner(na, 2, t, strlen(t)) == 1 && place_owner(nb, 2, t, strlen(t)) == 0)
            break;
    }
    snprintf(la, sizeof la, "\"%s\", \"%s\"", a, b);
    snprintf(lb, sizeof lb, "\"%s\", \"%s\"", alias, b);
    start_node(0, port[0], a, la);
    start_node(1, port[1], b, lb);
    ck_assert_int_eq(run(&out, "", "-s %s pub %s x 2>&1", a, t), 1);
    ck_assert_msg(strstr(out, "still -MOVED after 3 hops"), "%s", out);
    free(out);
    ck_assert_int_eq(stat_on(&d[0], t, "ready"), -1);
    ck_assert_int_eq(stat_on(&d[1], t, "ready"), -1);
}
END_TEST

static Suite *route_suite(void)
{
    Suite *s = suite_create("route");
    TCase *t = tcase_create("route");

    tcase_add_checked_fixture(t, route_setup, route_teardown);
    tcase_set_timeout(t, 120);
    tcase_add_test(t, test_pub_lands_on_owner_only);
    tcase_add_test(t, test_sub_get_join_stats_reach_owner);
    tcase_add_test(t, test_place_matches_place_owner);
    tcase_add_test(t, test_every_node_commands);
    tcase_add_test(t, test_node_down);
    tcase_add_test(t, test_bench_topics_two_nodes);
    tcase_add_test(t, test_precedence);
    tcase_add_test(t, test_bad_sources);
    suite_add_tcase(s, t);

    TCase *c = tcase_create("cluster");
    tcase_add_checked_fixture(c, cluster_setup, route_teardown);
    tcase_set_timeout(c, 120);
    tcase_add_test(c, test_stale_list_follows_moved);
    tcase_add_test(c, test_bench_stale_list);
    suite_add_tcase(s, c);

    TCase *h = tcase_create("hops");
    tcase_add_checked_fixture(h, NULL, route_teardown);
    tcase_set_timeout(h, 60);
    tcase_add_test(h, test_moved_hops_are_bounded);
    suite_add_tcase(s, h);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(route_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
