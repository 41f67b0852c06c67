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

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void start(sd_t *d, const char *yaml)
{
    ck_assert_msg(sd_start(d, yaml) == 0, "sluiced did not start with:\n%s", yaml);
}

static tc_t *conn(const sd_t *d)
{
    tc_t *c = tc_open(d);
    ck_assert_ptr_nonnull(c);
    return c;
}

/* The next reply's first line starts with `prefix`. */
static void expect_prefix(tc_t *c, const char *prefix)
{
    const char *got = tc_reply_line(c);
    ck_assert_msg(got != NULL, "no reply (wanted \"%s...\")", prefix);
    ck_assert_msg(strncmp(got, prefix, strlen(prefix)) == 0, "got \"%s\", wanted \"%s...\"", got,
                  prefix);
}

/* The next reply's first line is exactly `want`. */
static void expect(tc_t *c, const char *want)
{
    const char *got = tc_reply_line(c);
    ck_assert_msg(got != NULL, "no reply (wanted \"%s\")", want);
    ck_assert_str_eq(got, want);
}

static void send_str(tc_t *c, const char *s)
{
    ck_assert_int_eq(tc_send(c, s, strlen(s)), 0);
}

static void auth(tc_t *c, const char *user, const char *pass)
{
    ck_assert_int_eq(tc_sendf(c, "AUTH %s %s\r\n", user, pass), 0);
    expect(c, "+OK");
}

static int log_count(const sd_t *d, const char *needle)
{
    FILE *f = fopen(d->log, "r");
    char line[4096];
    int n = 0;

    if (f == NULL)
        return 0;
    while (fgets(line, sizeof line, f))
        n += strstr(line, needle) != NULL;
    fclose(f);
    return n;
}

/* Rewrite the config, SIGHUP, and wait for the daemon to say it took it. */
static void reload(sd_t *d, const char *yaml)
{
    int before = log_count(d, "reloaded");
    uint64_t until = now_ms() + WAIT_MS;

    ck_assert_int_eq(sd_write_conf(d, yaml), 0);
    sd_signal(d, SIGHUP);
    while (log_count(d, "reloaded") == before && now_ms() < until)
        usleep(10000);
    ck_assert_msg(log_count(d, "reloaded") > before, "the daemon did not reload");
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
    start(&d, users_yaml);
    tc_t *c = conn(&d);
    const char *refused[] = {"SUB orders.a", "UNSUB orders.a", "GET orders.a", "ACK 1",
                             "NACK 1",       "TOUCH 1",        "JOIN orders.a 0", "STATS",
                             "STATS jobs",   "TOPICS"};

    send_str(c, "PING\r\n");
    expect(c, "+PONG");
    for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++) {
        ck_assert_int_eq(tc_sendf(c, "%s\r\n", refused[i]), 0);
        expect(c, "-NOAUTH authentication required");
    }
    /* A refused PUB's payload is skipped, never read as commands. */
    send_str(c, "PUB orders.a 12\r\nPING\r\nPING\r\n\r\nPING\r\n");
    expect(c, "-NOAUTH authentication required");
    expect(c, "+PONG");
    auth(c, "bob", "secret-bob");
    send_str(c, "PUB orders.a 1\r\nx\r\n");
    expect(c, "+OK 1");
    send_str(c, "QUIT\r\n");
    expect(c, "+BYE");
    ck_assert(tc_closed(c, 5000));
    tc_close(c);

    c = conn(&d);
    send_str(c, "QUIT\r\n");
    expect(c, "+BYE");
    tc_close(c);
    ck_assert_int_eq(sd_stop(&d), 0);
}
END_TEST

/* ---- globs ---- */

START_TEST(test_publish_and_subscribe_globs)
{
    sd_t d;
    start(&d, users_yaml);
    tc_t *b = conn(&d), *r = conn(&d);

    auth(b, "bob", "secret-bob");
    auth(r, "reader", "secret-reader");

    send_str(b, "PUB orders.eu 5\r\nhello\r\n");
    expect(b, "+OK 1");
    /* Denied PUB: -DENIED <topic>, payload skipped, connection usable. */
    send_str(b, "PUB billing 6\r\nPING\r\n\r\n");
    expect(b, "-DENIED billing");
    send_str(b, "PUB orders 1\r\nx\r\n"); /* "orders.*" does not match "orders" */
    expect(b, "-DENIED orders");
    send_str(b, "PING\r\n");
    expect(b, "+PONG");
    send_str(b, "SUB billing\r\nGET billing\r\nGET billing 100\r\n");
    expect(b, "-DENIED billing");
    expect(b, "-DENIED billing");
    expect(b, "-DENIED billing");
    /* subscribe globs govern GET as well as SUB. */
    send_str(b, "GET audit\r\n");
    expect(b, "-TIMEOUT");

    /* reader may consume orders.* but publish nothing. */
    send_str(r, "PUB orders.eu 1\r\nx\r\n");
    expect(r, "-DENIED orders.eu");
    send_str(r, "SUB orders.eu 10\r\n");
    expect(r, "+OK");
    expect(r, "MSG orders.eu 1 1 5");
    send_str(r, "ACK 1\r\n");
    expect(r, "+OK 1");

    /* Not governed by globs: STATS and TOPICS for any authenticated user. */
    ck_assert_int_eq(stats_field(r, "orders.eu", "acked"), 1);
    send_str(r, "TOPICS\r\n");
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
    start(&d, users_yaml);
    tc_t *b = conn(&d);

    auth(b, "bob", "secret-bob");
    send_str(b, "PUB jobs.dead 1\r\nx\r\n");
    expect(b, "-DENIED jobs.dead");
    send_str(b, "PUB jobs 3\r\njob\r\nGET jobs\r\n");
    expect(b, "+OK 1");
    expect(b, "MSG jobs 1 1 3");
    send_str(b, "NACK 1\r\n");
    expect(b, "+OK");
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
    start(&d, users_yaml);
    tc_t *c = conn(&d), *other = conn(&d);

    auth(other, "alice", "secret-alice");
    /* Guesses pipelined with other commands: every reply comes, in order,
     * and the commands after the right password run as that user. */
    send_str(c, "AUTH bob wrong-1\r\nPING\r\nAUTH nobody x\r\nAUTH bob secret-bob\r\n"
                "PUB orders.a 1\r\nx\r\n");
    /* While c waits out its delay, another connection is served. */
    send_str(other, "PUB orders.b 1\r\ny\r\nPING\r\n");
    expect_prefix(other, "+OK ");
    expect(other, "+PONG");
    expect(c, "-NOAUTH invalid username or password");
    expect(c, "+PONG");
    expect(c, "-NOAUTH invalid username or password");
    expect(c, "+OK");
    expect_prefix(c, "+OK ");

    /* A failed AUTH keeps the earlier login. */
    send_str(c, "AUTH alice wrong\r\nPUB orders.a 1\r\nz\r\n");
    expect(c, "-NOAUTH invalid username or password");
    expect_prefix(c, "+OK ");

    /* The client shut its side after a wrong guess: it still gets every
     * reply it is owed, then the connection closes. */
    tc_t *h = conn(&d);
    send_str(h, "AUTH bob wrong-2\r\nPING\r\n");
    ck_assert_int_eq(shutdown(h->fd, SHUT_WR), 0);
    expect(h, "-NOAUTH invalid username or password");
    expect(h, "+PONG");
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
    start(&d, users_yaml);
    tc_t *c = conn(&d);

    send_str(c, "AUTH bo\x1b[31mb pw\r\n");
    expect(c, "-ERR bad argument");
    send_str(c, "AUTH bo\xc3\xa9 pw\r\nPING\r\n");
    expect(c, "-ERR bad argument");
    expect(c, "+PONG");
    ck_assert(!sd_log_has(&d, "\x1b"));
    ck_assert(!sd_log_has(&d, "\xc3"));
    send_str(c, "AUTH bo'b\\n pw\r\n");
    expect(c, "-NOAUTH invalid username or password");
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
    start(&d, yaml);
    tc_t *c = conn(&d);

    send_str(c, "AUTH carol hashed-pw\r\n");
    expect(c, "-NOAUTH invalid username or password");
    /* The hash itself is not a password. */
    ck_assert_int_eq(tc_sendf(c, "AUTH carol %s\r\n", hash), 0);
    expect(c, "-NOAUTH invalid username or password");
    auth(c, "carol", "hashed-pw!");
    send_str(c, "PUB t 2\r\nok\r\n");
    expect(c, "+OK 1");
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
    start(&d, users_yaml);
    tc_t *b = conn(&d), *a = conn(&d), *p = conn(&d);

    auth(b, "bob", "secret-bob");
    auth(a, "alice", "secret-alice");
    auth(p, "alice", "secret-alice");
    send_str(b, "SUB orders.a 10\r\n");
    expect(b, "+OK");
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
    send_str(a, "PING\r\n");
    expect(a, "+PONG");
    send_str(a, "PUB orders.a 1\r\nx\r\nSUB orders.a\r\nGET orders.a\r\n");
    expect(a, "-DENIED orders.a");
    expect(a, "-DENIED orders.a");
    expect(a, "-DENIED orders.a");

    /* bob stays logged in (the new password is for new AUTHs) under his
     * new globs, and his SUB to orders.a, no longer allowed, has ended. */
    send_str(b, "PUB jobs 1\r\nj\r\n");
    expect(b, "+OK 1");
    send_str(b, "PUB orders.a 1\r\nx\r\n");
    expect(b, "-DENIED orders.a");
    ck_assert_int_eq(stats_field(b, "orders.a", "consumers"), 0);
    ck_assert(sd_log_has(&d, "may no longer subscribe to 'orders.a'"));

    /* New AUTHs see the new users. */
    tc_t *n = conn(&d);
    send_str(n, "AUTH bob secret-bob\r\n");
    expect(n, "-NOAUTH invalid username or password");
    send_str(n, "AUTH alice secret-alice\r\n");
    expect(n, "-NOAUTH invalid username or password");
    auth(n, "bob", "new-bob");
    auth(n, "carol", "secret-carol");
    send_str(n, "PUB orders.a 1\r\nx\r\n");
    expect(n, "+OK 2");

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
    start(&d, "");
    tc_t *c = conn(&d);

    /* No users: everything is open, and AUTH says so. */
    send_str(c, "AUTH bob x\r\n");
    expect(c, "-ERR AUTH is not enabled (no users are configured)");
    send_str(c, "SUB t 10\r\n");
    expect(c, "+OK");

    reload(&d, "users:\n  admin: {password: pw, publish: [\"*\"], subscribe: [\"*\"]}\n");
    /* The connection that never authenticated now must, and its SUB is over. */
    send_str(c, "PUB t 1\r\nx\r\nPING\r\n");
    expect(c, "-NOAUTH authentication required");
    expect(c, "+PONG");
    tc_t *a = conn(&d);
    auth(a, "admin", "pw");
    ck_assert_int_eq(stats_field(a, "t", "consumers"), 0);

    reload(&d, "");
    send_str(c, "PUB t 1\r\nx\r\n");
    expect(c, "+OK 1");
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
    start(&d, "");
    ck_assert(!sd_log_has(&d, "beyond loopback"));
    ck_assert_int_eq(sd_stop(&d), 0);

    /* Every interface (on a port of the kernel's choosing), no users. */
    start(&d, "listen: [\"0.0.0.0:0\"]\n");
    ck_assert(sd_log_has(&d, "warn: listening beyond loopback (0.0.0.0:0) without users or TLS"));
    ck_assert_int_eq(log_count(&d, "beyond loopback"), 1);
    ck_assert_int_eq(sd_stop(&d), 0);

    /* Users, but no TLS. */
    start(&d, "listen: [\"127.0.0.1:0\", \"0.0.0.0:0\"]\n"
              "users:\n  u: {password: p}\n");
    ck_assert(sd_log_has(&d, "warn: listening beyond loopback (0.0.0.0:0) without TLS"));
    ck_assert_int_eq(log_count(&d, "beyond loopback"), 1);
    ck_assert_int_eq(sd_stop(&d), 0);

    /* The admin endpoint beyond loopback without a token. */
    start(&d, "admin: {listen: \"0.0.0.0:0\"}\n");
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
