/* check_auth.c: users and ACLs against the real sluiced: what a connection
 * may do before AUTH, publish and subscribe globs, wrong and hashed
 * passwords, the delayed -NOAUTH, SIGHUP changing users under live
 * connections, and the start-up warning for listeners beyond loopback.
 *
 * Nothing here asserts how long anything took: the delay of a failed AUTH
 * is checked by its effects (replies keep their order, others are served).
 */
#include <check.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "ck_conn.h"
#include "harness.h"

#define WAIT_MS 15000

static const char *users_yaml =
    "topics:\n"
    "  jobs: {max_deliveries: 1, dead_letter: jobs.dead}\n"
    "users:\n"
    "  bob:\n"
    "    password: secret-bob\n"
    "    publish: [\"orders.*\", jobs]\n"
    "    subscribe: [\"orders.*\", audit, jobs]\n"
    "  alice:\n"
    "    password: secret-alice\n"
    "    publish: [\"*\"]\n"
    "    subscribe: [\"*\"]\n"
    "  reader:\n"
    "    password: secret-reader\n"
    "    subscribe: [\"orders.*\"]\n";

static void auth(tc_t *c, const char *user, const char *pass)
{
    ck_assert_int_eq(tc_sendf(c, "AUTH %s %s\r\n", user, pass), 0);
    ck_expect(c, "+OK");
}

/* Rewrite the config, SIGHUP, and wait for the daemon to say it took it. */
static void reload(sd_t *d, const char *yaml)
{
    int before = sd_log_count(d, "reloaded");
    uint64_t until = sd_now_ms() + WAIT_MS;

    ck_assert_int_eq(sd_write_conf(d, yaml), 0);
    sd_signal(d, SIGHUP);
    while (sd_log_count(d, "reloaded") == before && sd_now_ms() < until)
        usleep(10000);
    ck_assert_msg(sd_log_count(d, "reloaded") > before, "the daemon did not reload");
}

/* One field of a STATS body, e.g. stats_field(c, "t", "consumers"). */
static long long stats_field(tc_t *c, const char *topic, const char *field)
{
    char key[64];
    const char *p;

    ck_assert_int_eq(tc_sendf(c, "STATS %s\r\n", topic), 0);
    ck_assert_int_eq(tc_reply(c), 0);
    ck_assert_int_eq(c->r.type, REPLY_STATS);
    snprintf(key, sizeof key, "\n%s: ", field);
    p = memmem(c->r.body, c->r.body_len, key, strlen(key));
    ck_assert_msg(p != NULL, "no %s in STATS %s", field, topic);
    return atoll(p + strlen(key));
}

/* ---- before AUTH ---- */

START_TEST(test_before_auth_only_auth_ping_quit)
{
    sd_t d;
    ck_start(&d, users_yaml);
    tc_t *c = ck_open(&d);
    const char *refused[] = {"SUB orders.a", "UNSUB orders.a", "GET orders.a", "ACK 1",
                             "NACK 1",       "TOUCH 1",        "JOIN orders.a 0", "STATS",
                             "STATS jobs",   "TOPICS"};

    ck_send(c, "PING\r\n");
    ck_expect(c, "+PONG");
    for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++) {
        ck_assert_int_eq(tc_sendf(c, "%s\r\n", refused[i]), 0);
        ck_expect(c, "-NOAUTH authentication required");
    }
    /* A refused PUB's payload is skipped, never read as commands. */
    ck_send(c, "PUB orders.a 12\r\nPING\r\nPING\r\n\r\nPING\r\n");
    ck_expect(c, "-NOAUTH authentication required");
    ck_expect(c, "+PONG");
    auth(c, "bob", "secret-bob");
    ck_send(c, "PUB orders.a 1\r\nx\r\n");
    ck_expect(c, "+OK 1");
    ck_send(c, "QUIT\r\n");
    ck_expect(c, "+BYE");
    ck_assert(tc_closed(c, 5000));
    tc_close(c);

    c = ck_open(&d);
    ck_send(c, "QUIT\r\n");
    ck_expect(c, "+BYE");
    tc_close(c);
    ck_assert_int_eq(sd_stop(&d), 0);
}
END_TEST

/* ---- globs ---- */

START_TEST(test_publish_and_subscribe_globs)
{
    sd_t d;
    ck_start(&d, users_yaml);
    tc_t *b = ck_open(&d), *r = ck_open(&d);

    auth(b, "bob", "secret-bob");
    auth(r, "reader", "secret-reader");

    ck_send(b, "PUB orders.eu 5\r\nhello\r\n");
    ck_expect(b, "+OK 1");
    /* Denied PUB: -DENIED <topic>, payload skipped, connection usable. */
    ck_send(b, "PUB billing 6\r\nPING\r\n\r\n");
    ck_expect(b, "-DENIED billing");
    ck_send(b, "PUB orders 1\r\nx\r\n"); /* "orders.*" does not match "orders" */
    ck_expect(b, "-DENIED orders");
    ck_send(b, "PING\r\n");
    ck_expect(b, "+PONG");
    ck_send(b, "SUB billing\r\nGET billing\r\nGET billing 100\r\n");
    ck_expect(b, "-DENIED billing");
    ck_expect(b, "-DENIED billing");
    ck_expect(b, "-DENIED billing");
    /* subscribe globs govern GET as well as SUB. */
    ck_send(b, "GET audit\r\n");
    ck_expect(b, "-TIMEOUT");

    /* reader may consume orders.* but publish nothing. */
    ck_send(r, "PUB orders.eu 1\r\nx\r\n");
    ck_expect(r, "-DENIED orders.eu");
    ck_send(r, "SUB orders.eu 10\r\n");
    ck_expect(r, "+OK");
    ck_expect(r, "MSG orders.eu 1 1 5");
    ck_send(r, "ACK 1\r\n");
    ck_expect(r, "+OK 1");

    /* Not governed by globs: STATS and TOPICS for any authenticated user. */
    ck_assert_int_eq(stats_field(r, "orders.eu", "acked"), 1);
    ck_send(r, "TOPICS\r\n");
    ck_assert_int_eq(tc_reply(r), 0);
    ck_assert_int_eq(r->r.type, REPLY_TOPICS);

    tc_close(b);
    tc_close(r);
    ck_assert_int_eq(sd_stop(&d), 0);
}
END_TEST

/* Dead-lettering is the broker's act: bob may not publish to jobs.dead,
 * yet the message he gave up on lands there. */
START_TEST(test_dead_letter_is_the_brokers_act)
{
    sd_t d;
    ck_start(&d, users_yaml);
    tc_t *b = ck_open(&d);

    auth(b, "bob", "secret-bob");
    ck_send(b, "PUB jobs.dead 1\r\nx\r\n");
    ck_expect(b, "-DENIED jobs.dead");
    ck_send(b, "PUB jobs 3\r\njob\r\nGET jobs\r\n");
    ck_expect(b, "+OK 1");
    ck_expect(b, "MSG jobs 1 1 3");
    ck_send(b, "NACK 1\r\n");
    ck_expect(b, "+OK");
    ck_assert_int_eq(stats_field(b, "jobs.dead", "ready"), 1);
    ck_assert_int_eq(stats_field(b, "jobs", "ready"), 0);
    tc_close(b);
    ck_assert_int_eq(sd_stop(&d), 0);
}
END_TEST

/* ---- passwords ---- */

START_TEST(test_wrong_password_is_slowed_not_blocking)
{
    sd_t d;
    ck_start(&d, users_yaml);
    tc_t *c = ck_open(&d), *other = ck_open(&d);

    auth(other, "alice", "secret-alice");
    /* Guesses pipelined with other commands: every reply comes, in order,
     * and the commands after the right password run as that user. */
    ck_send(c, "AUTH bob wrong-1\r\nPING\r\nAUTH nobody x\r\nAUTH bob secret-bob\r\n"
                "PUB orders.a 1\r\nx\r\n");
    /* While c waits out its delay, another connection is served. */
    ck_send(other, "PUB orders.b 1\r\ny\r\nPING\r\n");
    ck_expect_prefix(other, "+OK ");
    ck_expect(other, "+PONG");
    ck_expect(c, "-NOAUTH invalid username or password");
    ck_expect(c, "+PONG");
    ck_expect(c, "-NOAUTH invalid username or password");
    ck_expect(c, "+OK");
    ck_expect_prefix(c, "+OK ");

    /* A failed AUTH keeps the earlier login. */
    ck_send(c, "AUTH alice wrong\r\nPUB orders.a 1\r\nz\r\n");
    ck_expect(c, "-NOAUTH invalid username or password");
    ck_expect_prefix(c, "+OK ");

    /* The client shut its side after a wrong guess: it still gets every
     * reply it is owed, then the connection closes. */
    tc_t *h = ck_open(&d);
    ck_send(h, "AUTH bob wrong-2\r\nPING\r\n");
    ck_assert_int_eq(shutdown(h->fd, SHUT_WR), 0);
    ck_expect(h, "-NOAUTH invalid username or password");
    ck_expect(h, "+PONG");
    ck_assert(tc_closed(h, 5000));
    tc_close(h);

    /* Logged with the user's name, never the password. */
    ck_assert(sd_log_has(&d, "auth failed for user 'bob'"));
    ck_assert(sd_log_has(&d, "auth failed for user 'nobody'"));
    ck_assert(!sd_log_has(&d, "wrong-1"));
    ck_assert(!sd_log_has(&d, "wrong-2"));
    ck_assert(!sd_log_has(&d, "secret-bob"));
    tc_close(c);
    tc_close(other);
    ck_assert_int_eq(sd_stop(&d), 0);
}
END_TEST

/* A user name is the client's bytes: anything but printable ASCII is
 * refused before it could reach the log and forge a line there. */
START_TEST(test_hostile_user_name_never_logged_raw)
{
    sd_t d;
    ck_start(&d, users_yaml);
    tc_t *c = ck_open(&d);

    ck_send(c, "AUTH bo\x1b[31mb pw\r\n");
    ck_expect(c, "-ERR bad argument");
    ck_send(c, "AUTH bo\xc3\xa9 pw\r\nPING\r\n");
    ck_expect(c, "-ERR bad argument");
    ck_expect(c, "+PONG");
    ck_assert(!sd_log_has(&d, "\x1b"));
    ck_assert(!sd_log_has(&d, "\xc3"));
    ck_send(c, "AUTH bo'b\\n pw\r\n");
    ck_expect(c, "-NOAUTH invalid username or password");
    ck_assert(sd_log_has(&d, "auth failed for user 'bo'b\\x5cn' from 127.0.0.1:"));
    tc_close(c);
    ck_assert_int_eq(sd_stop(&d), 0);
}
END_TEST

START_TEST(test_hashed_password)
{
    sd_t d;
    int status = -1;
    char *hash = run_capture("openssl passwd -6 'hashed-pw!' 2>/dev/null", &status);
    char yaml[1024];

    /* No blank in it: AUTH's arguments are separated by spaces. */
    ck_assert_msg(hash != NULL && status == 0,
                  "openssl passwd -6 failed (apt-get install openssl)");
    hash[strcspn(hash, "\n")] = '\0';
    ck_assert_msg(strncmp(hash, "$6$", 3) == 0, "not a SHA-512 crypt hash: %s", hash);
    snprintf(yaml, sizeof yaml,
             "users:\n"
             "  carol:\n"
             "    password: \"%s\"\n"
             "    publish: [t]\n"
             "    subscribe: [t]\n",
             hash);
    ck_start(&d, yaml);
    tc_t *c = ck_open(&d);

    ck_send(c, "AUTH carol hashed-pw\r\n");
    ck_expect(c, "-NOAUTH invalid username or password");
    /* The hash itself is not a password. */
    ck_assert_int_eq(tc_sendf(c, "AUTH carol %s\r\n", hash), 0);
    ck_expect(c, "-NOAUTH invalid username or password");
    auth(c, "carol", "hashed-pw!");
    ck_send(c, "PUB t 2\r\nok\r\n");
    ck_expect(c, "+OK 1");
    ck_assert(!sd_log_has(&d, hash));
    free(hash);
    tc_close(c);
    ck_assert_int_eq(sd_stop(&d), 0);
}
END_TEST

/* ---- SIGHUP ---- */

START_TEST(test_reload_changes_users_under_live_connections)
{
    sd_t d;
    ck_start(&d, users_yaml);
    tc_t *b = ck_open(&d), *a = ck_open(&d), *p = ck_open(&d);

    auth(b, "bob", "secret-bob");
    auth(a, "alice", "secret-alice");
    auth(p, "alice", "secret-alice");
    ck_send(b, "SUB orders.a 10\r\n");
    ck_expect(b, "+OK");
    ck_assert_int_eq(stats_field(p, "orders.a", "consumers"), 1);

    /* alice removed, bob's password and globs changed, carol added. */
    reload(&d, "users:\n"
               "  bob:\n"
               "    password: new-bob\n"
               "    publish: [jobs]\n"
               "    subscribe: [jobs]\n"
               "  carol:\n"
               "    password: secret-carol\n"
               "    publish: [\"*\"]\n"
               "    subscribe: [\"*\"]\n");

    /* alice's connections stay open, with no rights left. */
    ck_send(a, "PING\r\n");
    ck_expect(a, "+PONG");
    ck_send(a, "PUB orders.a 1\r\nx\r\nSUB orders.a\r\nGET orders.a\r\n");
    ck_expect(a, "-DENIED orders.a");
    ck_expect(a, "-DENIED orders.a");
    ck_expect(a, "-DENIED orders.a");

    /* bob stays logged in (the new password is for new AUTHs) under his
     * new globs, and his SUB to orders.a, no longer allowed, has ended. */
    ck_send(b, "PUB jobs 1\r\nj\r\n");
    ck_expect(b, "+OK 1");
    ck_send(b, "PUB orders.a 1\r\nx\r\n");
    ck_expect(b, "-DENIED orders.a");
    ck_assert_int_eq(stats_field(b, "orders.a", "consumers"), 0);
    ck_assert(sd_log_has(&d, "may no longer subscribe to 'orders.a'"));

    /* New AUTHs see the new users. */
    tc_t *n = ck_open(&d);
    ck_send(n, "AUTH bob secret-bob\r\n");
    ck_expect(n, "-NOAUTH invalid username or password");
    ck_send(n, "AUTH alice secret-alice\r\n");
    ck_expect(n, "-NOAUTH invalid username or password");
    auth(n, "bob", "new-bob");
    auth(n, "carol", "secret-carol");
    ck_send(n, "PUB orders.a 1\r\nx\r\n");
    ck_expect(n, "+OK 2");

    tc_close(n);
    tc_close(a);
    tc_close(b);
    tc_close(p);
    ck_assert_int_eq(sd_stop(&d), 0);
}
END_TEST

START_TEST(test_reload_adds_then_removes_users)
{
    sd_t d;
    ck_start(&d, "");
    tc_t *c = ck_open(&d);

    /* No users: everything is open, and AUTH says so. */
    ck_send(c, "AUTH bob x\r\n");
    ck_expect(c, "-ERR AUTH is not enabled (no users are configured)");
    ck_send(c, "SUB t 10\r\n");
    ck_expect(c, "+OK");

    reload(&d, "users:\n  admin: {password: pw, publish: [\"*\"], subscribe: [\"*\"]}\n");
    /* The connection that never authenticated now must, and its SUB is over. */
    ck_send(c, "PUB t 1\r\nx\r\nPING\r\n");
    ck_expect(c, "-NOAUTH authentication required");
    ck_expect(c, "+PONG");
    tc_t *a = ck_open(&d);
    auth(a, "admin", "pw");
    ck_assert_int_eq(stats_field(a, "t", "consumers"), 0);

    reload(&d, "");
    ck_send(c, "PUB t 1\r\nx\r\n");
    ck_expect(c, "+OK 1");
    tc_close(a);
    tc_close(c);
    ck_assert_int_eq(sd_stop(&d), 0);
}
END_TEST

/* ---- start-up warning ---- */

START_TEST(test_warns_when_exposed)
{
    sd_t d;

    /* Loopback: no warning. */
    ck_start(&d, "");
    ck_assert(!sd_log_has(&d, "beyond loopback"));
    ck_assert_int_eq(sd_stop(&d), 0);

    /* Every interface (on a port of the kernel's choosing), no users. */
    ck_start(&d, "listen: [\"0.0.0.0:0\"]\n");
    ck_assert(sd_log_has(&d, "warn: listening beyond loopback (0.0.0.0:0) without users or TLS"));
    ck_assert_int_eq(sd_log_count(&d, "beyond loopback"), 1);
    ck_assert_int_eq(sd_stop(&d), 0);

    /* Users, but no TLS. */
    ck_start(&d, "listen: [\"127.0.0.1:0\", \"0.0.0.0:0\"]\n"
              "users:\n  u: {password: p}\n");
    ck_assert(sd_log_has(&d, "warn: listening beyond loopback (0.0.0.0:0) without TLS"));
    ck_assert_int_eq(sd_log_count(&d, "beyond loopback"), 1);
    ck_assert_int_eq(sd_stop(&d), 0);

    /* The admin endpoint beyond loopback without a token. */
    ck_start(&d, "admin: {listen: \"0.0.0.0:0\"}\n");
    ck_assert(sd_log_has(&d, "admin endpoint beyond loopback (0.0.0.0:0) without admin.token"));
    ck_assert_int_eq(sd_stop(&d), 0);
}
END_TEST

static Suite *auth_suite(void)
{
    Suite *s = suite_create("auth");
    TCase *tc = tcase_create("acl");

    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_before_auth_only_auth_ping_quit);
    tcase_add_test(tc, test_publish_and_subscribe_globs);
    tcase_add_test(tc, test_dead_letter_is_the_brokers_act);
    tcase_add_test(tc, test_wrong_password_is_slowed_not_blocking);
    tcase_add_test(tc, test_hostile_user_name_never_logged_raw);
    tcase_add_test(tc, test_hashed_password);
    tcase_add_test(tc, test_reload_changes_users_under_live_connections);
    tcase_add_test(tc, test_reload_adds_then_removes_users);
    tcase_add_test(tc, test_warns_when_exposed);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(auth_suite());
    int failed;

    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
